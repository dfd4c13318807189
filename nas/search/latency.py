"""The latency a search's objective may read: the lookup table's (or a fitted model's) ``latency_ms`` of
the full-size network, added to every candidate's metrics beside its evaluator's (``nas search``).

The table describes the target device, not a worker: the driver adds it to each trial
(``Driver(annotate=...)``), and the final stage adds it to each candidate (``with_latency``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nas.evaluator import Evaluator, make_evaluator
from nas.objective import TABLE_LATENCY, Objective
from nas.search.settings import SearchSettings
from nas.space import SearchSpace


def build_latency_evaluator(
    settings: SearchSettings, space: SearchSpace[Any], evaluator: Evaluator[Any], objective: Objective
) -> Evaluator[Any] | None:
    """The registered ``latency`` evaluator (``settings.latency`` its options), checked now, when the
    objective reads the lookup table's ``latency_ms`` and the search's evaluator does not return it."""
    if TABLE_LATENCY not in objective.metrics or TABLE_LATENCY in (evaluator.metrics() or ()):
        return None
    try:
        latency = make_evaluator("latency", space, seed=settings.seed, **settings.latency)
        latency.prepare()
    except (TypeError, ValueError) as error:
        raise ValueError(f"latency: {error}") from None
    return latency


def check_objective_metrics(
    objective: Objective, evaluator: Evaluator[Any], latency: Evaluator[Any] | None, name: str
) -> None:
    """``ValueError`` if the objective reads a metric the evaluators declare they do not return."""
    declared = evaluator.metrics()
    if declared is None:
        return  # not declared: a missing metric fails the first trial, with its name
    available = {*declared, *((latency.metrics() or ()) if latency is not None else ())}
    missing = [metric for metric in objective.metrics if metric not in available]
    if missing:
        raise ValueError(
            f"objective: {objective.name!r} reads the metric {missing[0]!r}, which evaluator {name!r} "
            f"does not return; it returns {sorted(available)}"
        )


def with_latency(
    evaluate: Callable[..., Mapping[str, Any]], latency: Evaluator[Any] | None
) -> Callable[..., dict[str, Any]]:
    """``evaluate`` with the latency evaluator's metrics added (first: a candidate it cannot build is not
    trained); a ``report`` callback is passed on, its per-epoch metrics with the latency added too."""
    if latency is None:
        return evaluate  # type: ignore[return-value]

    def evaluate_with_latency(
        genotype: Any, trial_id: int, report: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        cost = latency.evaluate(genotype, trial_id)
        if cost.get("error"):
            return dict(cost)
        if report is None:
            return {**evaluate(genotype, trial_id), **cost}
        return {**evaluate(genotype, trial_id, report=lambda metrics: report({**metrics, **cost})), **cost}

    return evaluate_with_latency
