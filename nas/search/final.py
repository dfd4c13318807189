"""The final selection stage (``nas search --final-top K``): the search's best candidates evaluated
again, with more seeds or epochs, and ``best.json`` chosen from that stage.

A proxy reward is noisy: the same architecture's accuracy moves by several points between two
proxy seeds, so the single best reward of a search is partly luck. NASNet did not keep the best
child either: it retrained its top 250 candidates to convergence and picked from those
(arXiv 1707.07012 §4.1, App. A). Here the top K distinct genotypes of the search are evaluated
``repeats`` more times each, with seeds the search never used (repeat numbers after the search's
own) and optionally longer training; the reward of this stage is the mean.

The stage keeps its own Optuna study (``<study name>-final``) in the run's storage, so a killed
stage resumes without re-running a finished evaluation, and ``optuna-dashboard`` shows it beside
the search. Its records are keyed by the search's trial ids.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from nas.journal import Journal, Record
from nas.loop import Evaluate, Reward, accuracy_reward, evaluate_guarded, to_result
from nas.space import SearchSpace

logger = logging.getLogger(__name__)

FINAL_STUDY_SUFFIX = "-final"

Pair = tuple[Record, Record]  # (the search's record, the final stage's record) of one candidate


def final_candidates(journal: Journal, top: int) -> list[Record]:
    """The ``top`` best successful records of the search, one per genotype, best first."""
    chosen, seen = [], set()
    for record in journal.ranked():
        key = json.dumps(record.genotype, sort_keys=True)
        if key not in seen:
            seen.add(key)
            chosen.append(record)
        if len(chosen) == top:
            break
    return chosen


def run_final_stage(
    journal: Journal,
    final: Journal,
    space: SearchSpace[Any],
    top: int,
    evaluate: Evaluate,
    reward: Reward = accuracy_reward,
    on_final: Callable[[Pair, bool, int, int], None] | None = None,
) -> list[Pair]:
    """Evaluate the ``top`` candidates of ``journal`` into ``final`` (those it lacks); return the pairs.

    ``on_final(pair, replayed, done, total)`` is called after each candidate. A record of ``final``
    whose genotype is not the search's for that trial id means the run directory was written by
    other settings: ``RuntimeError``.
    """
    candidates = final_candidates(journal, top)
    pairs: list[Pair] = []
    for done, record in enumerate(candidates, start=1):
        kept = final.records.get(record.trial_id)
        replayed = kept is not None
        if kept is None:
            genotype = space.genotype_from_dict(record.genotype["genotype"])
            metrics = evaluate_guarded(evaluate, genotype, record.trial_id)
            kept = final.add(record.trial_id, space, genotype, record.genotype, to_result(metrics, reward))
        elif kept.genotype != record.genotype:
            raise RuntimeError(
                f"trial {record.trial_id}: the final stage holds another genotype than the search; "
                "the run directory was written by other code or settings"
            )
        pairs.append((record, kept))
        if on_final is not None:
            on_final((record, kept), replayed, done, len(candidates))
    return pairs


def final_best(pairs: list[Pair]) -> Pair | None:
    """The candidate with the best final reward (ties: the better search rank), or None if all failed."""
    scored = [(rank, pair) for rank, pair in enumerate(pairs) if not pair[1].result.failed]
    if not scored:
        return None
    return max(scored, key=lambda item: (float(item[1][1].result.reward), -item[0]))[1]  # type: ignore[arg-type]
