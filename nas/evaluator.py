"""The evaluator protocol, and building a registered evaluator by name.

An evaluator turns a genotype into a metrics dict. It never raises for a bad *candidate*
(NaN loss, out of memory, a time limit, any exception while building or training it): it returns
``{"error": "<reason>", ...known metrics}`` so that the search loop records the failure and goes
on (a failed child is one data point, as in NASNet's 20,000-child search, arXiv 1707.07012 §4).
Configuration mistakes (an unknown dataset, missing files, a bad option) raise ``ValueError``
when the evaluator is built or ``prepare``-d, before the first trial. The reward is computed from
the metrics elsewhere (``nas.search``); an evaluator does not decide it.

Metrics are JSON values. Those whose names end in ``seconds`` are timings; every other metric is
a function of ``(genotype, seed, trial_id)`` on a given machine and library versions.
"""

from __future__ import annotations

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
    ``describe() -> dict[str, str]``: facts for the run's report (data sizes, files it skipped).
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
