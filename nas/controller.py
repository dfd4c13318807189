"""The controller protocol: ask for a trial, tell its result, save and restore state.

Pull-based, as Optuna's ask/tell: the controller issues trial ids, the caller evaluates and tells.
``ask()`` returns ``None`` while a synchronous controller waits for pending results (an RL batch,
an evolution generation); ``finished`` says when it has nothing more to propose. No sentinels, no
stop-by-exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Trial:
    """One proposed architecture. ``id`` is issued by the controller, counting from 0."""

    id: int
    genotype: Any


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
class Controller(Protocol):
    """What every controller implements (see ``controllers/``)."""

    seed: int

    def ask(self) -> Trial | None: ...

    def tell(self, trial_id: int, result: Result) -> None: ...

    @property
    def finished(self) -> bool: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
