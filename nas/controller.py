"""The controller protocol: ask for a trial, tell its result, save and restore state.

Pull-based, as Optuna's ask/tell: the controller issues trial ids, the caller evaluates and tells.
``ask()`` returns ``None`` while a synchronous controller waits for pending results (an RL batch,
an evolution generation); ``finished`` says when it has nothing more to propose. No sentinels, no
stop-by-exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from nas import registry

if TYPE_CHECKING:
    from nas.space import SearchSpace

G = TypeVar("G")


@dataclass(frozen=True)
class Trial(Generic[G]):
    """One proposed architecture. ``id`` is issued by the controller, counting from 0."""

    id: int
    genotype: G


@dataclass(frozen=True)
class Result:
    """The outcome of evaluating a trial. ``error`` set means the evaluation failed."""

    reward: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        if self.error is None:
            if self.reward is None or not math.isfinite(float(self.reward)):
                raise ValueError(f"a successful Result needs a finite reward, got {self.reward!r}")

    @property
    def failed(self) -> bool:
        return self.error is not None

    @classmethod
    def failure(cls, reason: str, metrics: dict[str, Any] | None = None) -> Result:
        return cls(reward=None, metrics=dict(metrics or {}), error=reason)


@runtime_checkable
class Controller(Protocol[G]):
    """What every controller implements (see ``controllers/``; ``nas.controller_base`` does the bookkeeping)."""

    seed: int

    def ask(self) -> Trial[G] | None: ...

    def tell(self, trial_id: int, result: Result) -> None: ...

    @property
    def finished(self) -> bool: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def make_controller(name: str, space: SearchSpace[G], seed: int = 0, **options: Any) -> Controller[G]:
    """Build the registered controller ``name`` on ``space``; ``options`` go to its factory.

    A factory is called as ``factory(space, seed=seed, **options)``. ``ValueError`` for an unknown
    name (listing the valid ones) or an option the factory does not take (listing those it does),
    before anything is built.
    """
    factory = registry.controllers.get(name)
    unknown, valid = registry.unknown_options(factory, options, ("space", "seed"))
    if unknown:
        raise ValueError(f"controller {name!r} takes no option {', '.join(map(repr, unknown))}; valid: {valid}")
    return factory(space, seed=seed, **options)
