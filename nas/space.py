"""The search-space protocol, the flat decision list every controller works on, and the registry.

A space turns a flat mapping of categorical choices into a typed genotype (``decode``) and back
(``encode``), lowers a genotype to the IR (``lower``) and names its published architectures
(``presets``). Controllers see nothing but ``decisions()``, ``decode``, ``encode`` and ``mutate``,
so random search, evolution and the RNN controller work on every space without space-specific code
(the lesson of NNI's space-agnostic ``ReinforceController``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Hashable, Protocol, runtime_checkable

import numpy as np

from nas.ir import CellNet, ChainNet

logger = logging.getLogger(__name__)

Choice = Hashable


@dataclass(frozen=True)
class Decision:
    """One categorical decision: a name and the tuple of values it may take."""

    name: str
    choices: tuple[Choice, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Decision.name must be a non-empty string")
        if len(self.choices) < 1:
            raise ValueError(f"Decision {self.name!r} has no choices")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"Decision {self.name!r} has duplicate choices: {self.choices}")

    def index(self, value: Choice) -> int:
        """Position of ``value`` among the choices; ``ValueError`` naming the decision if absent."""
        try:
            return self.choices.index(value)
        except ValueError:
            raise ValueError(
                f"{self.name}: {value!r} is not a valid choice; valid: {list(self.choices)}"
            ) from None


@runtime_checkable
class SearchSpace(Protocol):
    """What a search space provides. See ``search_spaces/`` for the built-in ones."""

    name: str

    def decisions(self) -> Sequence[Decision]: ...

    def decode(self, choices: Mapping[str, Choice]) -> Any: ...

    def encode(self, genotype: Any) -> dict[str, Choice]: ...

    def lower(self, genotype: Any, **macro: Any) -> ChainNet | CellNet: ...

    def presets(self) -> dict[str, Any]: ...

    def mutate(self, genotype: Any, rng: np.random.Generator) -> Any: ...

    def genotype_from_dict(self, data: Mapping[str, Any]) -> Any: ...


def check_choices(decisions: Sequence[Decision], choices: Mapping[str, Choice]) -> None:
    """Validate a full choice mapping against ``decisions``; the error names the bad key."""
    names = [decision.name for decision in decisions]
    missing = [name for name in names if name not in choices]
    if missing:
        raise ValueError(f"missing decision(s): {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    unknown = sorted(set(choices) - set(names))
    if unknown:
        raise ValueError(f"unknown decision(s): {unknown[:5]}; valid names look like {names[0]!r}")
    for decision in decisions:
        decision.index(choices[decision.name])


def mutate_one_decision(space: SearchSpace, genotype: Any, rng: np.random.Generator) -> Any:
    """Change one decision of ``genotype`` to another of its values (Real et al. 2019, §2).

    Decisions with a single choice cannot change and are never picked, so the result always
    differs from the parent in exactly one decision.
    """
    decisions = [decision for decision in space.decisions() if len(decision.choices) > 1]
    if not decisions:
        raise ValueError(f"space {space.name!r} has no decision with more than one choice")
    choices = space.encode(genotype)
    decision = decisions[int(rng.integers(len(decisions)))]
    current = decision.index(choices[decision.name])
    offset = int(rng.integers(1, len(decision.choices)))
    choices[decision.name] = decision.choices[(current + offset) % len(decision.choices)]
    return space.decode(choices)


def sample_choices(decisions: Sequence[Decision], rng: np.random.Generator) -> dict[str, Choice]:
    """Uniformly random choices for every decision."""
    return {d.name: d.choices[int(rng.integers(len(d.choices)))] for d in decisions}


_SPACES: dict[str, SearchSpace] = {}
_ENTRY_POINTS_LOADED = False


def register(space: SearchSpace) -> SearchSpace:
    """Add a space to the registry; a second space under the same name raises ``ValueError``."""
    if space.name in _SPACES:
        raise ValueError(f"a search space named {space.name!r} is already registered")
    _SPACES[space.name] = space
    return space


def _load_builtin_and_plugins() -> None:
    global _ENTRY_POINTS_LOADED
    import search_spaces  # noqa: F401  (registers the built-in spaces on import)

    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for entry in entry_points(group="nas.search_spaces"):
        try:
            entry.load()
        except Exception:  # a broken plug-in must not break the engine
            logger.exception("could not load search-space plug-in %s", entry.name)


def get(name: str) -> SearchSpace:
    """The registered space called ``name``."""
    _load_builtin_and_plugins()
    try:
        return _SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; valid: {sorted(_SPACES)}") from None


def names() -> list[str]:
    """Names of every registered space."""
    _load_builtin_and_plugins()
    return sorted(_SPACES)
