"""The evaluator protocol, its optional hooks with their no-op defaults, and building one by name.

An evaluator turns a genotype into a metrics dict. It never raises for a bad *candidate*
(NaN loss, out of memory, a time limit, any exception while building or training it): it returns
``{"error": "<reason>", ...known metrics}`` so that the run records the failure and goes on (a
failed child is one data point, as in NASNet's 20,000-child search, arXiv 1707.07012 §4).
Configuration mistakes (an unknown dataset, missing files, a bad option) raise ``ValueError``
when the evaluator is built or ``prepare``-d, before the first trial. What is rewarded is the
objective's business (``nas.objective``), never the evaluator's.

Metrics are JSON values. Those whose names end in ``seconds`` are timings; every other metric is
a function of ``(genotype, seed, trial_id, repeat)`` on a given machine and library versions.

What an evaluator can do beyond ``evaluate`` is declared, not discovered (``EvaluatorBase``):

- ``repeatable``: ``evaluate(..., repeat=r)`` evaluates the candidate again with independent
  random streams (``nas search --repeats K``, the final stage); ``repeated`` combines K of them;
- ``reports_epochs``: ``evaluate(..., report=f)`` calls ``f(metrics)`` after every epoch but the
  last with the metrics so far, ``epochs`` among them, without changing the final metrics (early
  stopping); ``epochs`` is how many an evaluation trains;
- ``prepare_repeats(n)`` / ``prepare_inputs(genotypes, n)``: check now what repeats 0 ... n - 1,
  or those genotypes, will need, so that it fails before the first trial;
- ``describe()``: facts for the run's report (data sizes, files skipped);
- ``metrics()``: the names ``evaluate`` returns, so that an objective that reads another one is
  refused before the first trial;
- ``optima()``: the best value of metrics (higher is better) over every candidate, where the
  evaluator knows them all (a benchmark table does): reports give the regret to it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from nas import registry
from nas.space import SearchSpace

G = TypeVar("G")
G_in = TypeVar("G_in", contravariant=True)  # the genotype an evaluator takes
Report = Callable[[dict[str, Any]], None]


@runtime_checkable
class Evaluator(Protocol[G_in]):
    """What every evaluator implements; ``EvaluatorBase`` gives the optional parts their defaults.

    ``trial_id`` seeds the evaluation's random streams (with the evaluator's own ``seed``), so a
    re-run, a resumed search or a parallel worker gets the same metrics for the same trial.
    ``prepare()`` does the expensive, fallible set-up (loading data) and raises ``ValueError`` for
    a user's mistake; the runner calls it before the first trial.
    """

    repeatable: bool
    reports_epochs: bool
    epochs: int | None

    def prepare(self) -> None: ...

    def prepare_repeats(self, repeats: int) -> None: ...

    def prepare_inputs(self, genotypes: Iterable[G_in], repeats: int = 1) -> None: ...

    def describe(self) -> dict[str, str]: ...

    def metrics(self) -> tuple[str, ...] | None: ...

    def optima(self) -> dict[str, float]: ...

    def cheaper(self, metrics: Mapping[str, Any], factor: float) -> dict[str, Any] | None: ...

    def evaluate(self, genotype: G_in, trial_id: int) -> dict[str, Any]: ...


class EvaluatorBase(Generic[G]):
    """The optional hooks of an evaluator, written down once with no-op defaults (see the module docstring).

    A subclass implements ``evaluate`` and overrides what it offers; ``repeatable`` and
    ``reports_epochs`` promise the keywords ``repeat`` and ``report`` of its ``evaluate``.
    """

    repeatable: ClassVar[bool] = False
    reports_epochs: ClassVar[bool] = False
    epochs: int | None = None
    # The evaluator a final stage (``--final-top``) trains candidates with when this one does not train
    # them on their own (a supernet: ``proxy``), so that best.json never rests on shared weights alone.
    final_evaluator: ClassVar[str | None] = None

    def prepare(self) -> None:
        """Nothing to load or check."""

    def attach(self, out: Path) -> None:
        """Nothing kept in the run directory (a supernet trains and checkpoints itself in ``out`` here,
        called once the run holds the directory, before the first trial, and in every worker)."""

    def follow(self, controller: Any, budget: int, sequential: bool) -> None:
        """Nothing learnt from the controller (a supernet trained ENAS's way draws its paths from the
        controller's policy: ``ValueError`` here for a search it cannot run)."""

    def controller_defaults(self) -> dict[str, Any]:
        """Options the search's controller starts with, where it takes them and the search names none
        (ENAS asks the reinforce controller for on-policy samples, ``dedup: false``)."""
        return {}

    def final_options(self) -> dict[str, Any]:
        """The options of ``final_evaluator`` that follow this one's (the network's reduction, say)."""
        return {}

    def prepare_repeats(self, repeats: int) -> None:
        """Nothing that depends on the repeat to check."""

    def prepare_inputs(self, genotypes: Iterable[G], repeats: int = 1) -> None:
        """Nothing that depends on the genotype to load."""

    def describe(self) -> dict[str, str]:
        """No facts for the report."""
        return {}

    def metrics(self) -> tuple[str, ...] | None:
        """The metric names ``evaluate`` returns; None: not declared (an objective is checked on the first trial)."""
        return None

    def optima(self) -> dict[str, float]:
        """Not known: the candidates are measured, not looked up."""
        return {}

    def cheaper(self, metrics: Mapping[str, Any], factor: float) -> dict[str, Any] | None:
        """Options that would make a candidate like the one that gave ``metrics`` about ``factor`` times
        cheaper (the search's cost estimate suggests them); None: no such knob."""
        return None

    def evaluate(self, genotype: G, trial_id: int) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__}.evaluate")


def make_evaluator(
    name: str,
    space: SearchSpace[Any],
    *,
    seed: int = 0,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    **options: Any,
) -> Evaluator[Any]:
    """Build the registered evaluator ``name`` for ``space``.

    A factory is called as ``factory(space, seed=..., dataset=..., data_dir=..., download=...,
    **options)``: the data settings are the search's, and an evaluator that needs no data takes
    and ignores them. An option the factory does not take is a ``ValueError`` listing those it
    does; so is an object that does not implement the protocol (subclass ``EvaluatorBase``).
    """
    factory = registry.evaluators.get(name)
    unknown, valid = registry.unknown_options(factory, options, ("space", "seed", "dataset", "data_dir", "download"))
    if unknown:
        raise ValueError(f"{unknown[0]}: not an option of evaluator {name!r}; valid: {valid}")
    evaluator = factory(space, seed=seed, dataset=dataset, data_dir=data_dir, download=download, **options)
    if not isinstance(evaluator, Evaluator):
        missing = [
            hook
            for hook in (
                "repeatable",
                "reports_epochs",
                "epochs",
                "prepare",
                "prepare_repeats",
                "prepare_inputs",
                "describe",
                "metrics",
                "optima",
                "evaluate",
            )
            if not hasattr(evaluator, hook)
        ]
        raise ValueError(
            f"evaluator {name!r}: {type(evaluator).__name__} lacks {missing}; subclass "
            "nas.evaluator.EvaluatorBase, which gives the optional hooks their defaults"
        )
    return evaluator


def check_evaluator_options(name: str, space: SearchSpace[Any], options: Mapping[str, Any]) -> None:
    """The torch-free check an evaluator declares for its options (entry-point group
    ``nas.evaluator_options``), run while settings are validated; nothing for one that declares none
    (its options are checked when it is built)."""
    if name in registry.evaluator_options:
        registry.evaluator_options.get(name)(space, dict(options))


def repeated(evaluator: Evaluator[Any], repeats: int, first: int = 0) -> Callable[..., dict[str, Any]]:
    """``evaluator.evaluate`` run ``repeats`` times per trial (repeats ``first`` ... ``first + repeats - 1``), as one.

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
    if (repeats > 1 or first > 0) and not evaluator.repeatable:
        raise ValueError(
            f"repeats: evaluator {type(evaluator).__name__} is not repeatable (it cannot evaluate a "
            "candidate again with independent seeds); use repeats 1"
        )
    evaluate = evaluator.evaluate
    if repeats == 1 and first == 0:

        def evaluate_once(genotype: Any, trial_id: int, report: Report | None = None) -> dict[str, Any]:
            if report is None:
                return dict(evaluate(genotype, trial_id))
            return dict(evaluate(genotype, trial_id, report=report))  # type: ignore[call-arg]

        return evaluate_once
    if repeats == 1:  # one evaluation at another repeat number: its metrics as they are
        return lambda genotype, trial_id: {
            **evaluate(genotype, trial_id, repeat=first),  # type: ignore[call-arg]
            "repeats": 1,
        }

    def evaluate_repeated(genotype: Any, trial_id: int) -> dict[str, Any]:
        runs = []
        for repeat in range(first, first + repeats):
            metrics = dict(evaluate(genotype, trial_id, repeat=repeat))  # type: ignore[call-arg]
            runs.append(metrics)
            if metrics.get("error"):
                return {**metrics, "error": f"repeat {repeat}: {metrics['error']}", "repeats": repeats}
        return {**combine(runs), "repeats": repeats}

    return evaluate_repeated


def combine(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The metrics of several evaluations of one candidate as one dict (see ``repeated``)."""
    combined: dict[str, Any] = {}
    for key in runs[0]:
        values = [run.get(key) for run in runs]
        measured = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        numeric = len(measured) == len(values)
        numbers = numeric and all(math.isfinite(v) for v in measured)
        if numeric and not numbers:
            combined[key] = math.nan  # one bad repeat makes the mean meaningless (a NaN reward fails the trial)
        elif numbers and key.endswith("seconds"):
            combined[key] = sum(measured)
        elif numbers and len(values) > 1 and (any(isinstance(v, float) for v in values) or len(set(values)) > 1):
            combined[key] = statistics.fmean(measured)
            combined[f"{key}_std"] = statistics.stdev(measured)
            combined[f"{key}_repeats"] = values
        else:
            combined[key] = values[0]
    return combined
