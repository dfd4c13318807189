"""Objectives: the reward a controller maximises, read from the metrics an evaluator returns.

An evaluator measures (accuracy, latency, a zero-cost score, a benchmark table's entry); an
objective decides what is better. Objectives are registered like every plug-in (entry-point
group ``nas.objectives``: a factory taking an optional argument and keyword options) and named as
``NAME`` or ``NAME:ARGUMENT`` (``--objective``):

- ``accuracy``: the metric ``accuracy``, maximised: NASNet's reward, the child's validation
  accuracy (arXiv 1707.07012 App. A.1). The default.
- ``metric:NAME[:min|max]``: any metric an evaluator returns, in either direction (default max).
- ``mnas``: MnasNet's ``accuracy * (latency / target) ** weight`` (arXiv 1807.11626 eq. 2), the
  latency read from any named metric (default ``latency_ms``, the lookup table's).

Every reward is maximised: a minimised metric's reward is its negation, so controllers, early
stopping and the journal (an Optuna study that maximises) need not know the direction. An
objective is a frozen dataclass: it travels to Ray workers, and early stopping compares the
reward of the metrics an evaluation reports after each epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from nas import registry

Direction = Literal["max", "min"]
DIRECTIONS: tuple[str, ...] = ("max", "min")
DEFAULT_LATENCY_WEIGHT = -0.07  # MnasNet's soft constraint (arXiv 1807.11626 §3)
TABLE_LATENCY = "latency_ms"  # the metric of the ``latency`` evaluator (the lookup table at full size)


@runtime_checkable
class Objective(Protocol):
    """What every objective provides: its spelling, the metrics it reads, and the reward of some metrics."""

    @property
    def name(self) -> str: ...

    @property
    def metrics(self) -> tuple[str, ...]: ...

    def reward(self, metrics: Mapping[str, Any]) -> float: ...


@dataclass(frozen=True)
class MetricObjective:
    """One metric, maximised or minimised (its reward is then the negated metric)."""

    metric: str
    direction: Direction = "max"

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"objective: a metric name is required, got {self.metric!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"objective: direction {self.direction!r} is not one of {list(DIRECTIONS)}")

    @property
    def name(self) -> str:
        return (
            "accuracy"
            if (self.metric, self.direction) == ("accuracy", "max")
            else f"metric:{self.metric}:{self.direction}"
        )

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric,)

    def reward(self, metrics: Mapping[str, Any]) -> float:
        value = float(metrics[self.metric])
        return value if self.direction == "max" else -value


@dataclass(frozen=True)
class MnasObjective:
    """MnasNet's reward ``accuracy * (latency / target) ** weight`` (arXiv 1807.11626 eq. 2).

    With ``weight`` = alpha = beta = -0.07 the constraint is soft: doubling the latency costs about
    5% of relative accuracy (§3); MobileNetV3-Small used -0.15, and -1 is MnasNet's hard-constraint
    variant. The latency is the metric ``latency_metric`` in the same unit as ``target_ms``.
    """

    target_ms: float
    weight: float = DEFAULT_LATENCY_WEIGHT
    latency_metric: str = TABLE_LATENCY
    accuracy_metric: str = "accuracy"

    def __post_init__(self) -> None:
        target = self.target_ms
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target <= 0:
            raise ValueError(f"latency_target_ms: must be a positive number of milliseconds, got {target!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not -10 <= self.weight <= 0:
            raise ValueError(f"latency_weight: must be a number in [-10, 0] (MnasNet: -0.07), got {self.weight!r}")
        for name in ("latency_metric", "accuracy_metric"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}: a metric name is required, got {getattr(self, name)!r}")

    @property
    def name(self) -> str:
        return "mnas"

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.accuracy_metric, self.latency_metric)

    def reward(self, metrics: Mapping[str, Any]) -> float:
        latency = float(metrics[self.latency_metric])
        return float(metrics[self.accuracy_metric]) * (latency / self.target_ms) ** self.weight


def accuracy(argument: str | None = None) -> Objective:
    """The validation accuracy, maximised (``--objective accuracy``)."""
    if argument is not None:
        raise ValueError(
            f"objective: 'accuracy' takes no argument (got 'accuracy:{argument}'); "
            "for another metric use metric:NAME[:min|max]"
        )
    return MetricObjective("accuracy")


def metric(argument: str | None = None) -> Objective:
    """Any metric in either direction: ``metric:NAME`` (maximised) or ``metric:NAME:min``."""
    if not argument:
        raise ValueError("objective: 'metric' needs a metric name: metric:NAME[:min|max], e.g. metric:latency_ms:min")
    name, _, direction = argument.rpartition(":") if argument.endswith((":min", ":max")) else (argument, "", "max")
    return MetricObjective(name, direction)  # type: ignore[arg-type]


def mnas(
    argument: str | None = None,
    *,
    target_ms: float | None = None,
    weight: float = DEFAULT_LATENCY_WEIGHT,
    latency_metric: str = TABLE_LATENCY,
) -> Objective:
    """The MnasNet reward; ``latency_metric`` names the metric the latency is read from."""
    if argument is not None:
        raise ValueError(
            f"objective: 'mnas' takes no argument (got 'mnas:{argument}'); its latency metric is --latency-metric"
        )
    if target_ms is None:
        raise ValueError("latency_target_ms: the mnas objective needs a latency target (--latency-target-ms)")
    return MnasObjective(target_ms, weight, latency_metric)


def split_objective_name(spec: str) -> tuple[str, str | None]:
    """``"metric:loss:min"`` -> ``("metric", "loss:min")``; ``"accuracy"`` -> ``("accuracy", None)``."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"objective: must be a non-empty string, got {spec!r}")
    name, colon, argument = spec.partition(":")
    return name, argument if colon else None


def check_objective_name(spec: str) -> None:
    """``ValueError`` unless ``spec`` names a registered objective (nothing is imported)."""
    registry.objectives.check("objective", split_objective_name(spec)[0])


def make_objective(spec: str, **options: Any) -> Objective:
    """The registered objective ``spec`` (``NAME`` or ``NAME:ARGUMENT``) built with ``options``."""
    name, argument = split_objective_name(spec)
    factory = registry.objectives.get(name)
    unknown, valid = registry.unknown_options(factory, options, ("argument",))
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of objective {name!r}; valid: {valid}")
    objective = factory(argument, **options)
    if not isinstance(objective, Objective):
        raise ValueError(
            f"objective {name!r}: its factory returned {type(objective).__name__}, not an objective "
            "(name, metrics, reward(metrics))"
        )
    return objective
