"""The search loop: ask, evaluate, tell, record. Sequential; parallel runners wrap it.

Resuming is replay: the controller restarts from its last saved state (or from scratch) and
asks again; a trial the journal already holds is told its recorded result instead of being
evaluated, after checking that the controller proposed the same genotype. Because controllers
and evaluations draw their randomness from (seed, trial id), a resumed search proposes the same
trials in the same order as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nas.controller import Controller, Result
from nas.journal import Journal, Record
from nas.serialization import genotype_json
from nas.space import SearchSpace

logger = logging.getLogger(__name__)

Evaluate = Callable[[Any, int], Mapping[str, Any]]
Reward = Callable[[Mapping[str, Any]], float]


def accuracy_reward(metrics: Mapping[str, Any]) -> float:
    """The NASNet reward: validation accuracy of the child network (arXiv 1707.07012 App. A.1)."""
    return float(metrics["accuracy"])


def mnas_reward(target_ms: float, weight: float = -0.07) -> Reward:
    """The MnasNet reward ``accuracy * (latency / target) ** weight`` (arXiv 1807.11626 eq. 2).

    With ``weight`` = alpha = beta = -0.07 the constraint is soft: doubling the latency costs about
    5% of relative accuracy (§3); MobileNetV3-Small used -0.15, and -1 with alpha = 0 is MnasNet's
    hard-constraint variant. ``latency`` is the metric ``latency_ms`` (the ``latency`` evaluator's
    lookup-table latency of the full-size network).
    """
    if not (isinstance(target_ms, (int, float)) and not isinstance(target_ms, bool) and math.isfinite(target_ms)
            and target_ms > 0):
        raise ValueError(f"latency_target_ms: must be a positive number of milliseconds, got {target_ms!r}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not -10 <= weight <= 0:
        raise ValueError(f"latency_weight: must be a number in [-10, 0] (MnasNet: -0.07), got {weight!r}")

    def reward(metrics: Mapping[str, Any]) -> float:
        return float(metrics["accuracy"]) * (float(metrics["latency_ms"]) / target_ms) ** weight

    return reward


@dataclass
class SearchStats:
    """Where the time went: evaluation versus the loop's own work (ask, tell, journal, state)."""

    evaluated: int = 0
    replayed: int = 0
    evaluation_seconds: float = 0.0
    wall_seconds: float = 0.0
    per_trial: list[float] = field(default_factory=list)

    @property
    def overhead_seconds(self) -> float:
        return max(0.0, self.wall_seconds - self.evaluation_seconds)

    @property
    def overhead_fraction(self) -> float:
        return self.overhead_seconds / self.wall_seconds if self.wall_seconds else 0.0


def to_result(metrics: Mapping[str, Any], reward: Reward) -> Result:
    """A failed evaluation (``error`` in its metrics, or no finite reward) becomes a failed Result."""
    metrics = dict(metrics)
    error = metrics.pop("error", None)
    if error:
        return Result.failure(str(error), metrics)
    try:
        value = float(reward(metrics))
    except (KeyError, TypeError, ValueError) as exc:
        return Result.failure(f"no reward: {exc.__class__.__name__}: {exc}", metrics)
    if not math.isfinite(value):
        return Result.failure(f"non-finite reward {value}", metrics)
    return Result(reward=value, metrics=metrics)


def evaluate_guarded(evaluate: Evaluate, genotype: Any, trial_id: int) -> Mapping[str, Any]:
    """``evaluate(genotype, trial_id)``, with an exception turned into a failed evaluation.

    Evaluators report a bad candidate as ``{"error": ...}``; this is the backstop for one that raises.
    """
    try:
        return evaluate(genotype, trial_id)
    except Exception as error:  # noqa: BLE001  (a failure is a result; the search goes on)
        logger.exception("evaluation of trial %d raised", trial_id)
        return {"error": f"{error.__class__.__name__}: {error}"}


def search(space: SearchSpace, controller: Controller, evaluate: Evaluate, journal: Journal, budget: int,
           reward: Reward = accuracy_reward,
           on_record: Callable[[Record, bool], None] | None = None) -> SearchStats:
    """Run until the journal holds ``budget`` finished evaluations (failed ones count as finished).

    ``on_record(record, replayed)`` is called after every tell (progress bars use it).
    """
    stats, start = SearchStats(), time.perf_counter()
    state = journal.load_controller()
    if state is not None:
        controller.load_state_dict(state)
    while len(journal) < budget and not controller.finished:
        trial = controller.ask()
        if trial is None:
            raise RuntimeError("the controller is waiting for results, but none are pending in a sequential search")
        document = genotype_json(space.name, trial.genotype)
        record = journal.records.get(trial.id)
        replayed = record is not None
        if replayed:  # finished before a crash: tell the recorded result, do not re-run
            if record.genotype != document:
                raise RuntimeError(f"trial {trial.id}: the controller proposed another genotype than the journal "
                                   "holds; the run directory was written by other code or settings")
            stats.replayed += 1
        else:
            began = time.perf_counter()
            metrics = evaluate_guarded(evaluate, trial.genotype, trial.id)
            seconds = time.perf_counter() - began
            stats.evaluation_seconds += seconds
            stats.per_trial.append(seconds)
            stats.evaluated += 1
            record = journal.add(trial.id, space, trial.genotype, document, to_result(metrics, reward))
        controller.tell(trial.id, record.result)
        journal.save_controller(controller.state_dict())
        if on_record is not None:
            on_record(record, replayed)
    stats.wall_seconds = time.perf_counter() - start
    return stats
