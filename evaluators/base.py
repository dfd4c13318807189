"""The evaluator protocol and the per-trial random streams every evaluator derives.

An evaluator turns a genotype into a metrics dict. It never raises for a bad *candidate*
(NaN loss, out of memory, a time limit, any exception while building or training it): it returns
``{"error": "<reason>", ...known metrics}`` so that the search loop can record the failure and go
on (a failed child is one data point, as in NASNet's 20,000-child search, arXiv 1707.07012 §4).
Configuration mistakes (an unknown dataset, missing files) still raise ``ValueError``.
The reward is computed from the metrics elsewhere; an evaluator does not decide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Evaluator(Protocol):
    """What every evaluator implements: ``evaluate(genotype, trial_id) -> metrics``.

    ``trial_id`` seeds the evaluation's random streams (with the evaluator's own ``seed``), so a
    re-run, a resumed search or a parallel worker gets the same metrics for the same trial.
    A failed evaluation returns a dict with an ``"error"`` string instead of raising.
    """

    def evaluate(self, genotype: Any, trial_id: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrialSeeds:
    """Independent seeds for one trial: weight init, data order, and everything else (dropout, drop-path)."""

    init: int
    data_order: int
    other: int


def trial_seeds(seed: int, trial_id: int) -> TrialSeeds:
    """Seeds derived from ``(seed, trial_id)`` alone (``numpy.random.SeedSequence``), never a global stream.

    Two trials of one search, or one trial in two searches with different seeds, get statistically
    independent streams; the same pair always gets the same ones (DESIGN: Randomness).
    """
    if isinstance(trial_id, bool) or not isinstance(trial_id, (int, np.integer)) or trial_id < 0:
        raise ValueError(f"trial_id: must be a non-negative integer, got {trial_id!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
    init, data_order, other = np.random.SeedSequence([int(seed), int(trial_id)]).generate_state(3, dtype=np.uint32)
    return TrialSeeds(int(init), int(data_order), int(other))
