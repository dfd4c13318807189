"""Controllers: every one works on any space through ``decisions()`` and the ask/tell protocol.

``CONTROLLERS`` maps a name to a controller class; ``make(name, space, seed, **options)`` builds
one. Third parties add theirs with ``register`` or through the ``nas.controllers`` entry-point
group, never by editing this file::

    import controllers, search_spaces
    controller = controllers.make("evolution", search_spaces.get("nasnet"), seed=0, budget=500)
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from controllers._base import ControllerBase, trial_rng, trial_seed
from controllers.evolution import Member, RegularizedEvolution
from controllers.random_search import RandomSearch
from controllers.reinforce import ControllerPolicy, Reinforce
from nas.controller import Controller
from nas.space import SearchSpace

logger = logging.getLogger(__name__)

ControllerFactory = Callable[..., Controller]

CONTROLLERS: dict[str, ControllerFactory] = {
    "random": RandomSearch,
    "reinforce": Reinforce,
    "evolution": RegularizedEvolution,
}
_ENTRY_POINTS_LOADED = False


def register(name: str, factory: ControllerFactory) -> ControllerFactory:
    """Add a controller under ``name``; a name already taken raises ``ValueError``."""
    if name in CONTROLLERS:
        raise ValueError(f"a controller named {name!r} is already registered")
    CONTROLLERS[name] = factory
    return factory


def _load_plugins() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for entry in entry_points(group="nas.controllers"):
        try:
            register(entry.name, entry.load())
        except Exception:  # a broken plug-in must not break the engine
            logger.exception("could not load controller plug-in %s", entry.name)


def names() -> list[str]:
    """Names of every registered controller."""
    _load_plugins()
    return sorted(CONTROLLERS)


def make(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Controller:
    """Build the controller called ``name`` on ``space``; ``options`` go to its constructor.

    Raises:
        ValueError: ``name`` is not registered (the message lists the valid names), or ``options``
            holds a name the controller does not take.
    """
    _load_plugins()
    try:
        factory = CONTROLLERS[name]
    except KeyError:
        raise ValueError(f"unknown controller {name!r}; valid: {sorted(CONTROLLERS)}") from None
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a factory without a signature: let it check its own options
        parameters = {}
    if parameters and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(options) - set(parameters))
        if unknown:
            valid = sorted(n for n, p in parameters.items()
                           if n not in ("space", "seed") and p.kind is not p.VAR_POSITIONAL)
            raise ValueError(f"controller {name!r} takes no option {', '.join(map(repr, unknown))}; valid: {valid}")
    return factory(space, seed=seed, **options)


__all__ = [
    "CONTROLLERS", "ControllerBase", "ControllerPolicy", "Member", "RandomSearch", "RegularizedEvolution",
    "Reinforce", "make", "names", "register", "trial_rng", "trial_seed",
]
