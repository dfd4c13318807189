"""A warm start: many random architectures scored by a cheap estimator, the best few evaluated first.

Two-stage evaluation (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021,
arXiv 2101.08134, §5): a zero-cost score costs about a second, a proxy training minutes, so a search
can afford to score thousands of random architectures and spend its first real evaluations on the
best of them. Abdelfattah et al. warm up evolution (the initial population is the best by synflow of
3,000 random cells) and REINFORCE and report both reach NAS-Bench-201's best cells in fewer real
evaluations. Here the best ``top`` are handed to the controller as its first trials
(``ControllerBase.enqueue``), whatever the controller: evolution's initial population, REINFORCE's
first batches, TPE's history, local search's starting points.

The estimator: the mean of the normalised ranks (rank / n) of one or more scores (metrics of a
cheap evaluator, higher = better); ``DEFAULT_SCORES`` = jacov + params, the pair that ranked
NAS-Bench-201's cells best of every pair and triple of NASLib's scores on one half of the cells
(Spearman 0.905 against the 200-epoch test accuracy on the other half, ``benchmarks/nb201_fidelity.py``)
and costs one forward and backward pass of one batch. A candidate the estimator cannot score (an
error) ranks last. Candidates are drawn by ``(seed, index)`` and one per class (``canonical_key``),
so the choice is a function of the seed and the scores alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from nas.search.settings import WARM_START_SCORES
from nas.seeds import trial_rng
from nas.space import SearchSpace, canonical_key, sample_choices

DEFAULT_SCORES: tuple[str, ...] = WARM_START_SCORES
_STREAM = 7  # trial_rng stream of the warm start's candidates, apart from the controllers' streams

Score = Callable[[Any, int], Mapping[str, Any]]  # (genotype, candidate index) -> metrics


def candidates(space: SearchSpace[Any], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` random architectures (choices) of distinct classes, drawn by ``(seed, index)``
    (fewer if the space has fewer classes than ``count`` draws find)."""
    decisions = list(space.decisions())
    found: dict[Hashable, dict[str, Any]] = {}
    for index in range(4 * count):
        choices = sample_choices(decisions, trial_rng(seed, index, _STREAM))
        found.setdefault(canonical_key(space, space.decode(choices)), choices)
        if len(found) == count:
            break
    return list(found.values())


def rank_mean(values: Sequence[Mapping[str, Any]], scores: Sequence[str]) -> np.ndarray:
    """Per candidate, the mean over ``scores`` of its normalised rank (1 = best); missing or non-finite
    values rank last, ties share their mean rank."""
    total = np.zeros(len(values))
    for name in scores:
        column = np.array([_finite(v.get(name)) for v in values])
        column[np.isnan(column)] = -np.inf
        order = np.argsort(np.argsort(column, kind="stable"), kind="stable").astype(float)
        for value in np.unique(column):  # ties: their mean rank
            tied = column == value
            order[tied] = order[tied].mean()
        total += (order + 1) / len(values)
    return total / len(scores)


def select(
    space: SearchSpace[Any],
    score: Score,
    count: int,
    top: int,
    seed: int,
    scores: Sequence[str] = DEFAULT_SCORES,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``top`` best of ``count`` random candidates by the rank mean of ``scores``, best first, and
    every candidate's choices and scores (for the run's record)."""
    if top < 1 or count < top:
        raise ValueError(f"warm start: {top} of {count} candidates; need 1 <= top <= candidates")
    drawn = candidates(space, count, seed)
    values = [dict(score(space.decode(choices), index)) for index, choices in enumerate(drawn)]
    combined = rank_mean(values, scores)
    best = np.argsort(-combined, kind="stable")[:top]
    scored = [
        {"choices": choices, **{name: _finite(v.get(name)) for name in scores}, "rank_mean": float(rank)}
        for choices, v, rank in zip(drawn, values, combined)
    ]
    return [drawn[int(i)] for i in best], scored


def _finite(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan
