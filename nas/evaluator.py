"""The evaluator protocol, and building a registered evaluator by name.

An evaluator turns a genotype into a metrics dict. It never raises for a bad *candidate*
(NaN loss, out of memory, a time limit, any exception while building or training it): it returns
``{"error": "<reason>", ...known metrics}`` so that the search loop records the failure and goes
on (a failed child is one data point, as in NASNet's 20,000-child search, arXiv 1707.07012 §4).
Configuration mistakes (an unknown dataset, missing files, a bad option) raise ``ValueError``
when the evaluator is built or ``prepare``-d, before the first trial. The reward is computed from
the metrics elsewhere (``nas.loop``); an evaluator does not decide it.

Metrics are JSON values. Those whose names end in ``seconds`` are timings; every other metric is
a function of ``(genotype, seed, trial_id, repeat)`` on a given machine and library versions.

Repeats (``nas search --repeats K``): an evaluator whose ``evaluate`` takes a keyword ``repeat``
evaluates the same candidate again with independent random streams (weight init, data order and,
for the proxy evaluator, the validation split); ``repeat=0`` is the plain call. ``repeated``
turns K such evaluations into one metrics dict whose reward is their mean.

Early stopping (``--early-stop asha``): an evaluator whose ``evaluate`` takes a keyword ``report``
calls ``report(metrics)`` after every epoch but the last, with the metrics so far, ``accuracy``
(validation accuracy now) and ``epochs`` (epochs trained) among them; it must not change the
final metrics (``accepts_report``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from nas import registry
from nas.space import SearchSpace

G = TypeVar("G", contravariant=True)


@runtime_checkable
class Evaluator(Protocol[G]):
    """What every evaluator implements: ``evaluate(genotype, trial_id) -> metrics``.

    ``trial_id`` seeds the evaluation's random streams (with the evaluator's own ``seed``), so a
    re-run, a resumed search or a parallel worker gets the same metrics for the same trial.
    ``prepare()`` does the expensive, fallible set-up (loading data) and raises ``ValueError`` for
    a user's mistake; the runner calls it before the first trial. An evaluator may also offer
    ``describe() -> dict[str, str]``: facts for the run's report (data sizes, files it skipped),
    and ``prepare_repeats(n)``: check now what repeats 0 ... n - 1 will need (``--repeats``).
    """

    def prepare(self) -> None: ...

    def evaluate(self, genotype: G, trial_id: int) -> dict[str, Any]: ...


def make_evaluator(name: str, space: SearchSpace[Any], *, seed: int = 0, dataset: str | None = None,
                   data_dir: str | Path | None = None, download: bool = False, **options: Any) -> Evaluator[Any]:
    """Build the registered evaluator ``name`` for ``space``.

    A factory is called as ``factory(space, seed=..., dataset=..., data_dir=..., download=...,
    **options)``: the data settings are the search's, and an evaluator that needs no data takes
    and ignores them. An option the factory does not take is a ``ValueError`` listing those it does.
    """
    factory = registry.evaluators.get(name)
    unknown, valid = registry.unknown_options(factory, options, ("space", "seed", "dataset", "data_dir", "download"))
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of evaluator {name!r}; valid: {valid}")
    return factory(space, seed=seed, dataset=dataset, data_dir=data_dir, download=download, **options)


def accepts_repeat(evaluate: Callable[..., Any]) -> bool:
    """True if ``evaluate`` takes the keyword ``repeat`` (so ``--repeats`` can draw independent seeds)."""
    return not registry.unknown_options(evaluate, ["repeat"], ())[0]


def accepts_report(evaluate: Callable[..., Any]) -> bool:
    """True if ``evaluate`` takes the keyword ``report`` (per-epoch metrics, for early stopping)."""
    return not registry.unknown_options(evaluate, ["report"], ())[0]


def repeated(evaluate: Callable[..., Mapping[str, Any]], repeats: int,
             first: int = 0) -> Callable[..., dict[str, Any]]:
    """``evaluate`` run ``repeats`` times per trial (repeats ``first`` ... ``first + repeats - 1``), as one.

    The combined metrics: a measured number (a float, or an integer that differs between the
    repeats) becomes their mean, with
    ``<name>_std`` (sample standard deviation) and ``<name>_repeats`` (every value) beside it, so the
    reward (``accuracy``) is the mean accuracy and the report shows its spread; timings (names ending
    in ``seconds``) are summed, since they are the cost of the whole evaluation; anything else is
    the first repeat's value; a number that is not finite in some repeat becomes NaN, so a reward
    computed from it fails the trial. ``repeats`` is recorded. If one repeat fails, the trial fails
    with that repeat's error: a candidate that breaks at one seed is not a good candidate.
    ``repeats == 1`` and ``first == 0`` is exactly the plain call, and passes ``report`` on (one
    evaluation's epochs are the candidate's; repeated ones have no single sequence of epochs).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats: must be a positive integer, got {repeats!r}")
    if (repeats > 1 or first > 0) and not accepts_repeat(evaluate):
        raise ValueError("repeats: this evaluator's evaluate() takes no 'repeat' argument, so it cannot "
                         "evaluate a candidate with independent seeds; use repeats 1")
    if repeats == 1 and first == 0:
        def evaluate_once(genotype: Any, trial_id: int, report: Callable[[dict[str, Any]], None] | None = None
                          ) -> dict[str, Any]:
            if report is None:
                return dict(evaluate(genotype, trial_id))
            return dict(evaluate(genotype, trial_id, report=report))

        return evaluate_once
    if repeats == 1:  # one evaluation at another repeat number: its metrics as they are
        return lambda genotype, trial_id: {**evaluate(genotype, trial_id, repeat=first), "repeats": 1}

    def evaluate_repeated(genotype: Any, trial_id: int) -> dict[str, Any]:
        runs = []
        for repeat in range(first, first + repeats):
            metrics = dict(evaluate(genotype, trial_id, repeat=repeat))
            runs.append(metrics)
            if metrics.get("error"):
                return {**metrics, "error": f"repeat {repeat}: {metrics['error']}", "repeats": repeats}
        return {**combine(runs), "repeats": repeats}

    return evaluate_repeated


def combine(runs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The metrics of several evaluations of one candidate as one dict (see ``repeated``)."""
    combined: dict[str, Any] = {}
    for key in runs[0]:
        values = [run.get(key) for run in runs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        numbers = numeric and all(math.isfinite(v) for v in values)
        if numeric and not numbers:
            combined[key] = math.nan  # one bad repeat makes the mean meaningless (a NaN reward fails the trial)
        elif numbers and key.endswith("seconds"):
            combined[key] = float(sum(values))
        elif numbers and len(values) > 1 and (any(isinstance(v, float) for v in values) or len(set(values)) > 1):
            combined[key] = statistics.fmean(values)
            combined[f"{key}_std"] = statistics.stdev(values)
            combined[f"{key}_repeats"] = values
        else:
            combined[key] = values[0]
    return combined
