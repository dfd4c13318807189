"""The statistics of ``nb201_fidelity.py``: how well a score ranks cells, and zero-cost combinations.

Split out of the benchmark script, which keeps the command line, the cell sample, the data, the worker
pool and the evaluation log: this module holds what turns scores into numbers -- the estimators an
evaluation gives, Spearman and Kendall correlations with bootstrap intervals of rho, the tables' anchors,
normalised-rank means and majority votes, and the choice of a zero-cost combination over one half of
the pool. It reads no files and trains nothing: numpy and scipy only.

Combinations (computed from the tables and the log: no training). A combination of estimators scores a
cell by the mean of its normalised ranks (rank / n, ties sharing their mean rank) under each member,
ranked among the cells being scored (a half of the pool, the pool, the sample, or the cells a setting
evaluated) -- as a search would rank the candidates it holds. Zero-cost combinations: every single
NASLib column, every pair and every triple (``COMBINATION_SIZES``) of the columns, and the combinations
the literature names (``NAMED_COMBINATIONS``: Abdelfattah et al.'s synflow + jacov + snip, as their
pairwise majority vote -- each cell scored by the cells it beats on two of the three, its Copeland wins --
and as a rank mean; and all the columns at once, an unweighted stand-in for NAS-Bench-Suite-Zero's use
of all its scores). A column whose rho over the selection half is negative as stored (``plain``) is left
out: turning it round would be a sign chosen on the truth. The choice is made over the pool, not the
sample: picking the best of ~300 estimators over 60 cells would mostly pick noise (their intervals are
±0.1 wide). The pool is split in two seeded halves (seed ``[--sample-seed, 2]``): every estimator is
scored over the selection half and sorted by its rho there; the held-out half, which took no part in
the choice, gives the figure without selection bias; the pool's and the sample's figures follow (the
sample's cells lie in both halves, a negligible leak: ~30 of 3,142 cells). Reported: the
``BEST_COMBINATIONS`` best pairs and triples (the first is *the chosen combination*), the named ones and
the ``BEST_SINGLES`` best single columns, each with its cost class, that of its costliest member
(``COST_ORDER``: free < one pass < one batch). Settings combined with zero-cost scores: each setting's
accuracy with the chosen combination and with each of the best single columns, as the rank mean of the
two (half the weight each), over the sampled cells the setting evaluated; these rows join the main table
(``kind`` ``setting + zero-cost``; the CPU seconds are the setting's, the zero-cost scores are not timed),
as does the chosen zero-cost combination over the sample.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import kendalltau, rankdata, spearmanr

SPACE = "nb201"  # the engine's space whose cells are ranked
TEST, VALID = "test_200ep", "valid_200ep"  # the truth: NB201's 200-epoch accuracies
BOOTSTRAP = 2000  # resamples of the cells for the rho intervals
# The anchors of the NB201 table: label -> (column, cost).
NB201_ANCHORS: dict[str, tuple[str, str]] = {
    "NB201 12 epochs, one seed": ("test_12ep_one_seed", "12 epochs, full network (C=16, N=5), 50,000 images (table)"),
    "NB201 200 epochs, one seed": (
        "test_200ep_one_seed",
        "200 epochs, full network, 50,000 images (table; noise ceiling)",
    ),
}
# The cost of each of NASLib's zero-cost scores (full network, at initialisation): what it reads.
FREE, ONE_PASS, ONE_BATCH = "free", "one pass", "one batch"
ZERO_COST_COSTS: dict[str, str] = {
    "params": f"{FREE} (counted)",
    "flops": f"{FREE} (counted)",
    "l2_norm": f"{FREE} (weights at init)",
    "synflow": f"{ONE_PASS} (forward + backward, all-ones input, no data)",
    "zen": f"{ONE_PASS} (forwards of Gaussian inputs, no data)",
    "nwot": f"{ONE_BATCH} (forward)",
    "jacov": f"{ONE_BATCH} (forward + backward)",
    "snip": f"{ONE_BATCH} (forward + backward)",
    "grad_norm": f"{ONE_BATCH} (forward + backward)",
    "fisher": f"{ONE_BATCH} (forward + backward)",
    "epe_nas": f"{ONE_BATCH} (forward + backward)",
    "plain": f"{ONE_BATCH} (forward + backward)",
    "grasp": f"{ONE_BATCH} (forward + 2 backward)",
}
# Cheapest first. A one-pass score feeds one input that is no data (synflow: an all-ones image; zen: Gaussian
# noise); a one-batch score feeds a mini-batch of training images, forward and mostly backward.
COST_ORDER = (FREE, ONE_PASS, ONE_BATCH)
# Combinations of zero-cost scores: the mean of each cell's normalised rank (rank / n, among the cells ranked)
# under each member, or a pairwise majority vote (a cell's score: how many cells it beats on most members).
RANK_MEAN, VOTE = "rank mean", "vote"
COMBINATION_SIZES = (2, 3)  # every pair and triple of the zero-cost columns is tried
BEST_COMBINATIONS = 5  # reported: the best pairs/triples over the selection half of the pool ...
ZERO_COST_GOAL = 0.85  # issue 24: a zero-cost combination with rho >= 0.85 (at <= 2 s per candidate)
BEST_SINGLES = 3  # ... the best single columns there; these and the best combination are paired with each setting
# Combinations used in the literature: (members, method) -> reference.
NAMED_COMBINATIONS: dict[tuple[tuple[str, ...], str], str] = {
    (("synflow", "jacov", "snip"), VOTE): "Abdelfattah et al. 2021 (arXiv 2101.08134): majority vote",
    (("synflow", "jacov", "snip"), RANK_MEAN): "Abdelfattah et al. 2021's trio, as a rank mean",
}
ALL_COLUMNS_REFERENCE = (
    "NAS-Bench-Suite-Zero (arXiv 2210.03230) feeds all its scores to a learned surrogate; here unweighted"
)

Row = dict[str, str]
Record = dict[str, Any]

# -------------------------------------------------------------------------------------------- scores


def setting_scores(record: Record) -> dict[str, float]:
    """The estimators one evaluation gives (higher = better): accuracy and the training-loss trajectory."""
    metrics = record["metrics"]
    if "error" in metrics:
        return {}
    scores = {"accuracy": float(metrics["accuracy"]), "-train loss, last epoch (SoTL-E)": -metrics["final_train_loss"]}
    reports = record.get("epoch_reports") or []
    if "sotl" in metrics:  # the evaluator's own sum of every epoch's mean loss
        scores["-train loss, all epochs (SoTL)"] = -float(metrics["sotl"])
    elif record.get("per_epoch"):
        losses = [r["final_train_loss"] for r in reports] + [metrics["final_train_loss"]]
        scores["-train loss, all epochs (SoTL)"] = -float(sum(losses))
    if record.get("per_epoch"):
        for report in reports:
            scores[f"accuracy after epoch {report['epochs']}"] = float(report["accuracy"])
    return scores


def bootstrap_rho(x: np.ndarray, y: np.ndarray, draws: int = BOOTSTRAP) -> list[float | None]:
    """The 95% percentile-bootstrap interval of Spearman's rho (resampling the cells, seeded)."""
    if len(x) < 4:
        return [None, None]
    index = np.random.default_rng(0).integers(0, len(x), (draws, len(x)))
    rx, ry = rankdata(x[index], axis=1), rankdata(y[index], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    rho = rho[np.isfinite(rho)]
    return [finite(v) for v in np.percentile(rho, [2.5, 97.5])] if len(rho) else [None, None]


def finite(value: Any) -> float | None:
    """``value`` as a float, ``None`` for NaN (JSON has no NaN)."""
    number = float(value)
    return number if math.isfinite(number) else None


def correlations(scores: Mapping[str, float], cells: Sequence[Record], intervals: bool = True) -> dict[str, Any]:
    """Spearman and Kendall of ``scores`` (arch -> score) against test and valid, all cells and the top ones;
    with ``intervals``, the bootstrap interval of rho against test."""
    result: dict[str, Any] = {}
    for subset in ("all", "top"):
        chosen = [cell for cell in cells if cell["arch"] in scores and (subset == "all" or cell["top"])]
        result[f"n_{subset}"] = len(chosen)
        x = np.array([scores[cell["arch"]] for cell in chosen], dtype=float)
        for truth, name in ((TEST, "test"), (VALID, "valid")):
            y = np.array([cell[truth] for cell in chosen], dtype=float)
            enough = len(chosen) >= 3 and np.ptp(x) > 0
            result[f"rho_{name}_{subset}"] = finite(spearmanr(x, y).statistic) if enough else None
            result[f"tau_{name}_{subset}"] = finite(kendalltau(x, y).statistic) if enough else None
            if name == "test" and intervals:
                result[f"rho_{name}_{subset}_ci"] = bootstrap_rho(x, y) if enough else [None, None]
    return result


def anchor_scores(cells: Sequence[Record], nb201: Mapping[str, Row], zero_cost: Mapping[str, Row]) -> list[Record]:
    """The tables' anchors over ``cells``: NB201's one-seed columns and every NASLib zero-cost column."""
    rows: list[Record] = []
    for label, (column, cost) in NB201_ANCHORS.items():
        scores = {cell["arch"]: float(nb201[cell["arch"]][column]) for cell in cells}
        rows.append({"estimator": label, "kind": "anchor", "column": column, "cost": cost, "scores": scores})
    columns = [column for column in next(iter(zero_cost.values())) if column != "arch"]
    for column in columns:
        scores = {cell["arch"]: float(zero_cost[cell["arch"]][column]) for cell in cells}
        cost = ZERO_COST_COSTS.get(column, "see NASLib (NAS-Bench-Suite-Zero)")
        rows.append(
            {"estimator": f"NASLib {column}", "kind": "anchor", "column": column, "cost": cost, "scores": scores}
        )
    return rows


# ---------------------------------------------------------------------------------- combinations


def zero_cost_table(zero_cost: Mapping[str, Row]) -> dict[str, dict[str, float]]:
    """NASLib's zero-cost scores by column, then cell: ``{column: {arch: score}}`` (as stored)."""
    columns = [column for column in next(iter(zero_cost.values())) if column != "arch"]
    return {column: {arch: float(row[column]) for arch, row in zero_cost.items()} for column in columns}


def cost_class(column: str) -> str:
    """The cost class of a zero-cost column (``COST_ORDER``); an unknown one counts as ``ONE_BATCH``."""
    cost = ZERO_COST_COSTS.get(column, ONE_BATCH)
    return next((kind for kind in COST_ORDER if cost.startswith(kind)), ONE_BATCH)


def combination_cost(members: Sequence[str]) -> str:
    """The cost of computing every member: that of the costliest, naming the members in that class."""
    if len(members) == 1:
        return ZERO_COST_COSTS.get(members[0], ONE_BATCH)
    costliest = max((cost_class(member) for member in members), key=COST_ORDER.index)
    return f"{costliest} ({', '.join(m for m in members if cost_class(m) == costliest)})"


def normalised_ranks(values: np.ndarray) -> np.ndarray:
    """Each value's rank among ``values`` (ties: their mean rank) over their number: in (0, 1], higher = better."""
    return np.asarray(rankdata(values), dtype=float) / len(values)


def majority_wins(values: np.ndarray, chunk: int = 256) -> np.ndarray:
    """A pairwise majority vote turned into a score: for each cell (column of ``values``, one row per score),
    the number of cells that more than half of the scores rank strictly below it (its Copeland wins)."""
    count, cells = values.shape
    wins = np.empty(cells)
    for start in range(0, cells, chunk):
        ahead = (values[:, start : start + chunk, None] > values[:, None, :]).sum(axis=0)
        wins[start : start + chunk] = (2 * ahead > count).sum(axis=1)
    return wins


def combined_scores(
    members: Sequence[Mapping[str, float]], archs: Sequence[str], method: str = RANK_MEAN
) -> dict[str, float]:
    """One score per cell of ``archs`` from several (each ``{arch: score}``, higher = better): the mean of the
    cells' normalised ranks among ``archs`` (``RANK_MEAN``), or ``VOTE``'s majority wins; one member as it is."""
    values = np.array([[member[arch] for arch in archs] for member in members], dtype=float)
    if method == VOTE:
        combined = majority_wins(values)
    elif len(members) == 1:
        combined = values[0]
    else:
        combined = np.mean([normalised_ranks(row) for row in values], axis=0)
    return dict(zip(archs, combined.tolist(), strict=True))


def zero_cost_scores(
    estimator: Mapping[str, Any], table: Mapping[str, Mapping[str, float]], archs: Sequence[str]
) -> dict[str, float]:
    """The scores of a zero-cost estimator (a column, a rank mean or a vote of columns) over ``archs``."""
    return combined_scores([table[m] for m in estimator["members"]], archs, estimator["method"])


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    return finite(spearmanr(x, y).statistic) if len(x) >= 3 and np.ptp(x) > 0 else None


def search_combinations(
    pool_cells: Sequence[Record], table: Mapping[str, Mapping[str, float]], seed: int
) -> dict[str, Any]:
    """Every zero-cost column, pair and triple (as ``RANK_MEAN``) and the ``NAMED_COMBINATIONS``, scored over a
    seeded half of the pool (selection), the other half (held out) and the whole pool; sorted by the selection
    half's rho against ``test_200ep``. A column whose rho over the selection half is negative is left out."""
    order = np.random.default_rng([seed, 2]).permutation(len(pool_cells))
    half = len(pool_cells) // 2
    subsets = {
        "selection": [pool_cells[i] for i in sorted(order[:half])],
        "held_out": [pool_cells[i] for i in sorted(order[half:])],
        "pool": list(pool_cells),
    }
    truth = {name: np.array([cell[TEST] for cell in cells]) for name, cells in subsets.items()}
    top = {name: np.array([bool(cell["top"]) for cell in cells]) for name, cells in subsets.items()}
    archs = {name: [cell["arch"] for cell in cells] for name, cells in subsets.items()}
    ranks = {
        name: {column: normalised_ranks(np.array([scores[a] for a in archs[name]])) for column, scores in table.items()}
        for name in subsets
    }
    selection_rho = {column: spearman(ranks["selection"][column], truth["selection"]) for column in table}
    excluded = {column: rho for column, rho in selection_rho.items() if rho is None or rho < 0}
    columns = [column for column in table if column not in excluded]
    estimators: dict[tuple[frozenset[str], str], Record] = {
        (frozenset(members), RANK_MEAN): {"members": list(members), "method": RANK_MEAN, "named": None}
        for size in (1, *COMBINATION_SIZES)
        for members in itertools.combinations(columns, size)
    }
    named = {**NAMED_COMBINATIONS, (tuple(columns), RANK_MEAN): ALL_COLUMNS_REFERENCE}
    for (members, method), reference in named.items():
        if all(member in columns for member in members):
            key = (frozenset(members), method)
            estimators.setdefault(key, {"members": list(members), "method": method})["named"] = reference
    rows: list[Record] = []
    for estimator in estimators.values():
        members, method = estimator["members"], estimator["method"]
        row: Record = {
            "estimator": combination_name(members, method),
            **estimator,
            "cost": combination_cost(members),
            "cost_class": max((cost_class(m) for m in members), key=COST_ORDER.index),
        }
        for name in subsets:
            if method == VOTE:
                values = np.array([[table[m][a] for a in archs[name]] for m in members], dtype=float)
                x = majority_wins(values)
            else:
                x = np.mean([ranks[name][m] for m in members], axis=0)
            row[f"rho_{name}"] = spearman(x, truth[name])
            row[f"rho_{name}_top"] = spearman(x[top[name]], truth[name][top[name]])
        rows.append(row)
    rows.sort(key=lambda row: -(row["rho_selection"] if row["rho_selection"] is not None else -2.0))
    return {
        "seed": [seed, 2],
        "sizes": {name: len(cells) for name, cells in subsets.items()},
        "top": {name: int(mask.sum()) for name, mask in top.items()},
        "columns": columns,
        "excluded": excluded,
        "rows": rows,
    }


def reported_combinations(rows: Sequence[Record]) -> list[Record]:
    """Of ``search_combinations``' rows (best first): the ``BEST_COMBINATIONS`` best pairs and triples (the first:
    the chosen combination), the named ones, and the ``BEST_SINGLES`` best single columns; each with its role."""
    combinations = [r for r in rows if r["method"] == RANK_MEAN and len(r["members"]) in COMBINATION_SIZES]
    singles = [r for r in rows if len(r["members"]) == 1]
    reported = [
        {**r, "role": "chosen" if i == 0 else f"#{i + 1}"} for i, r in enumerate(combinations[:BEST_COMBINATIONS])
    ]
    best = {r["estimator"] for r in reported}
    reported += [{**r, "role": "named"} for r in rows if r.get("named") and r["estimator"] not in best]
    reported += [{**r, "role": f"single #{i + 1}"} for i, r in enumerate(singles[:BEST_SINGLES])]
    return reported


def combination_name(members: Sequence[str], method: str = RANK_MEAN) -> str:
    """``a + b`` for a rank mean (``all N scores`` past ``COMBINATION_SIZES``), ``vote of a, b, c`` for a vote."""
    if method == VOTE:
        return f"vote of {', '.join(members)}"
    return " + ".join(members) if len(members) <= max(COMBINATION_SIZES) else f"all {len(members)} scores"


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None
