"""The built-in controllers: random search, REINFORCE/PPO RNN, regularized evolution, local search,
Optuna's samplers, and the compound-scaling grid of ``nas scale``.

Each works on any space through ``decisions()`` and the ask/tell protocol. They are registered
through the ``nas.controllers`` entry points of ``pyproject.toml``, the path a plug-in's take, and
built by name with ``nas.controller.make_controller``::

    from nas.controller import make_controller
    from nas.space import get
    controller = make_controller("evolution", get("nasnet"), seed=0, budget=500)
    controller = make_controller("optuna:NSGAIISampler", get("nasnet"), seed=0, budget=500)

The names below are imported on first use (PEP 562): loading one controller's entry point imports
its module only, so checking ``optuna:<SamplerName>`` while validating settings imports no torch.
"""

from __future__ import annotations

from nas.lazy import exports

_EXPORTS: dict[str, str] = {
    "CompoundGrid": "controllers.compound_grid",
    "KnownClasses": "controllers.known",
    "LocalSearch": "controllers.local_search",
    "Member": "controllers.evolution",
    "RegularizedEvolution": "controllers.evolution",
    "OptunaNSGAII": "controllers.optuna_sampler",
    "OptunaSampler": "controllers.optuna_sampler",
    "OptunaTPE": "controllers.optuna_sampler",
    "RandomSearch": "controllers.random_search",
    "ControllerPolicy": "controllers.reinforce",
    "Reinforce": "controllers.reinforce",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
