"""The built-in controllers: random search, REINFORCE/PPO RNN, regularized evolution.

Each works on any space through ``decisions()`` and the ask/tell protocol. They are registered
through the ``nas.controllers`` entry points of ``pyproject.toml``, the path a plug-in's take, and
built by name with ``nas.controller.make_controller``::

    from nas.controller import make_controller
    from nas.space import get
    controller = make_controller("evolution", get("nasnet"), seed=0, budget=500)
"""

from controllers.evolution import Member, RegularizedEvolution
from controllers.random_search import RandomSearch
from controllers.reinforce import ControllerPolicy, Reinforce

__all__ = ["ControllerPolicy", "Member", "RandomSearch", "RegularizedEvolution", "Reinforce"]
