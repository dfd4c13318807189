"""How well does a proxy evaluator setting rank NAS-Bench-201 cells? Against their 200-epoch CIFAR-10 accuracy.

NAS-Bench-201 (Dong & Yang, ICLR 2020, arXiv 2001.00326) trained every cell of the engine's ``nb201``
space for 200 epochs on CIFAR-10; its table ships as ``evaluators/tables/nb201-cifar10.csv.gz``. A
search ranks candidates with a cheap proxy instead: a reduced network (``C``, ``N``), few epochs, a
share of the images (``images_per_class``), perhaps a lower ``resolution`` -- the reduced-fidelity
settings EcoNAS studied along channels, resolution, epochs and training samples (Zhou et al., CVPR
2020, arXiv 2001.01431). What matters to a search is the *ranking* a setting gives, above all among
the good cells it has to tell apart, and what a candidate costs. This script measures both for the
``proxy`` evaluator, next to the anchors of the same tables, over the same cells.

Cells (``--cells``, ``--top-cells``, ``--sample-seed``). From the 9,445 cells NASLib scored (so that
the zero-cost anchors cover every cell of the sample) one cell per isomorphism class (a seeded
member: isomorphic cells compute the same function, and two of them would count one architecture
twice), and none below 20% ``test_200ep``: those cells (341 of 15,625, one of them NASLib's) compute
nothing, their output cut off from the input, score chance (10%) and are ranked last by any proxy
and any zero-cost score alike; they would inflate every correlation without telling two estimators
apart. Of that pool (6,284 cells), ``--cells`` (40) cells stratified by quantiles of ``test_200ep``
(the pool sorted by it and cut into equal-count bins, one seeded cell per bin: the accuracy range as
the pool covers it) and ``--top-cells`` (20) further cells from the best 10% of all 15,625 cells
(``test_200ep`` at least its 90th percentile, 92.94), where a search spends its late budget and where
the NB201 README finds even the benchmark's own 12-epoch column ranks poorly (Spearman 0.54). The
list is printed and saved as ``<out>/cells.json``.

Evaluations. Every ``--setting`` (repeatable, ``'LABEL={"epochs": 2, "C": 8, "N": 1,
"images_per_class": 500}'``; default: ``DEFAULT_SETTINGS``) evaluates every cell with
``ProxyEvaluator(space, dataset="imagefolder", data_dir=SCRATCH, seed=0, **options)``: the options
are passed through unchanged (``evaluators/proxy_options.py``; what a setting leaves out is the
evaluator's default, e.g. ``validation_fraction`` 0.2) and checked before anything runs. Trial id =
the cell's NB201 index, not its position in the sample: a cell's weights and data order, and so its
result, do not depend on which sample drew it, and a larger or reseeded sample reuses every
evaluation already made. ``--workers`` (2) processes, each with one torch thread, build the
setting's evaluator once (its data loaded once) in the pool's initializer. Each result is appended
to ``<out>/evaluations.jsonl`` as it arrives, keyed by the setting's label and options, the cell,
the data, the seed and ``--per-epoch``: a killed run resumes where it stopped, and a rerun computes
only what is missing (``--retry-failed`` also redoes failed ones; ``--report-only`` computes nothing).

Data. ``--tar`` (CIFAR-10 as JPEG, ``train/<class>/NNNN.jpg``; default ``data/cifar10-jpeg.tar`` of the
shared folder next to the repository, ``../shared``) is extracted once to ``--scratch``
(default a folder under /tmp; kept, and reused when it holds the same extraction). By default all
5,000 training images of each class; ``--max-images-per-class K`` extracts only the first K of each
class (a smaller data set on disk: for smoke tests, or as a reduced-fidelity setting of its own --
prefer the evaluator's seeded ``images_per_class``, which keeps the held-out validation split of the
full data). Only ``train/`` is extracted: the proxy validates on images held out of it
(``validation_fraction``) and never reads the test split.

Estimators and numbers. Per setting: its ``accuracy`` (the held-out validation accuracy), and
trajectory scores from the same training: minus ``final_train_loss`` (the mean training loss of the
last epoch: SoTL-E with E = 1 of Ru et al., NeurIPS 2021, arXiv 2006.04492, up to a factor that is
equal for every cell), minus the evaluator's ``sotl`` (the sum of every epoch's mean training loss,
SoTL) and, with ``--per-epoch`` (the evaluator's per-epoch report: one extra BatchNorm calibration
and validation pass per epoch, which the timings then include), the validation accuracy after each
earlier epoch (and SoTL from those reports for logs made before the evaluator returned ``sotl``).
Anchors, from the tables, over the same cells (every score as stored, higher = ranked better):
NB201's ``test_12ep_one_seed`` (its own 12-epoch training of the full network) and
``test_200ep_one_seed`` (one of the seeds averaged into ``test_200ep``: a noise ceiling, not an
independent estimate), and every zero-cost column of NASLib's table (NAS-Bench-Suite-Zero, arXiv
2210.03230; the scores of Abdelfattah et al., ICLR 2021, arXiv 2101.08134), scored at the full
network (C = 16, N = 5). For each: Spearman rho and Kendall tau (``scipy.stats``) against
``test_200ep`` and ``valid_200ep``, over all sampled cells and over the sampled top-10% cells, with
95% percentile-bootstrap intervals of rho (``BOOTSTRAP`` resamples of the cells; with 60 cells
they are about ±0.1 wide, with the ~25 top cells ±0.3: read differences smaller than that as
noise); the CPU seconds per candidate (``time.process_time`` of the worker around ``evaluate``, one
thread: on a shared machine the evaluator's wall-clock ``seconds``, also reported, grow with the
load); the thread count and the load average. The anchors are also given over the
whole pool, to show how far the sample's figures stray from the pool's.

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

Output under ``--out``: ``evaluations.jsonl``, ``cells.json``, ``results.json`` (settings, cells,
every number; ``zero_cost_combinations``: the split, the reported estimators and ``all`` of them) and
``results.md`` (the table, the command line, threads and load; the zero-cost combinations; the settings
combined with zero-cost scores).

    .venv/bin/python benchmarks/nb201_fidelity.py --out benchmarks/results/nb201_fidelity   # defaults
    .venv/bin/python benchmarks/nb201_fidelity.py --out /tmp/fid --cells 40 --top-cells 20 \\
        --setting 'e2 C8 500/class={"epochs": 2, "C": 8, "N": 1, "images_per_class": 500}' \\
        --setting 'e8 C8 500/class={"epochs": 8, "C": 8, "N": 1, "images_per_class": 500}'
    .venv/bin/python benchmarks/nb201_fidelity.py --out /tmp/fid-smoke --cells 4 --top-cells 2 \\
        --max-images-per-class 50 --setting 'tiny={"epochs": 1, "C": 4, "N": 1, "validation_fraction": 0.2}'

CIFAR-10: Krizhevsky, 2009 (here its JPEG re-encoding: see ``data/README.md`` of the shared folder).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import logging
import math
import multiprocessing
import os
import re
import shlex
import sys
import tarfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau, rankdata, spearmanr

SPACE = "nb201"
TEST, VALID = "test_200ep", "valid_200ep"
NB201_TABLE, ZERO_COST_TABLE = "nb201-cifar10", "zero-cost-cifar10-naslib"
JPEG_TAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar"  # ../shared of the repository
MEMBER = re.compile(r"train/([a-z_]+)/(\d+)\.jpg")
MIN_TEST = 20.0  # % test_200ep: below it a cell computes nothing (10%, chance)
TOP_FRACTION = 0.1  # the "top" cells: test_200ep at least the 90th percentile of all 15,625 cells
EVAL_SEED = 0
THREADS = 1
BOOTSTRAP = 2000  # resamples of the cells for the rho intervals
# The settings evaluated without --setting: the space's proxy network (C = 8, N = 1) on 500 of the
# 5,000 training images of each class (the same seeded ones for every cell), validated on the 10% held
# out of all of them (5,000 images), at 1, 4 and 12 epochs; at 4 epochs with NB201's width (C = 16);
# and 1 epoch on all 45,000 training images (about the image-epochs of the 12-epoch one: data or
# epochs). Measured here (1 thread, C = 8): training 1.1-1.7 ms per image and epoch, validation and
# BatchNorm calibration 2.5-4 s, decoding the data into memory 16 s per worker and setting. So, for
# 60 cells on 2 free cores, about 5 min, 18 min, 50 min, 1 h and 30 min: 2.7 h in all.
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "e1 C8 N1 500/class": {"epochs": 1, "C": 8, "N": 1, "images_per_class": 500, "validation_fraction": 0.1},
    "e4 C8 N1 500/class": {"epochs": 4, "C": 8, "N": 1, "images_per_class": 500, "validation_fraction": 0.1},
    "e12 C8 N1 500/class": {"epochs": 12, "C": 8, "N": 1, "images_per_class": 500, "validation_fraction": 0.1},
    "e4 C16 N1 500/class": {"epochs": 4, "C": 16, "N": 1, "images_per_class": 500, "validation_fraction": 0.1},
    "e1 C8 N1 all": {"epochs": 1, "C": 8, "N": 1, "validation_fraction": 0.1},
}
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

# ------------------------------------------------------------------------------------------- tables


def read_table(name: str) -> list[Row]:
    from evaluators.tabular_options import shipped_tables

    with gzip.open(shipped_tables()[name].open("rb"), "rt", newline="") as text:
        return list(csv.DictReader(text))


def top_threshold(nb201: Sequence[Row]) -> float:
    """``test_200ep`` of the best ``TOP_FRACTION`` of all cells of the table (its quantile)."""
    return float(np.quantile([float(row[TEST]) for row in nb201], 1 - TOP_FRACTION))


def candidate_pool(nb201: Sequence[Row], zero_cost: Mapping[str, Row], seed: int) -> list[Row]:
    """One seeded cell per isomorphism class among the zero-cost table's, at least ``MIN_TEST``; sorted by test."""
    rng = np.random.default_rng([seed, 0])
    classes: dict[str, list[Row]] = {}
    for row in nb201:
        if row["arch"] in zero_cost and float(row[TEST]) >= MIN_TEST:
            classes.setdefault(row["isomorphism_class"], []).append(row)
    pool = [members[int(rng.integers(len(members)))] for _, members in sorted(classes.items())]
    return sorted(pool, key=lambda row: (float(row[TEST]), int(row["index"])))


def draw_sample(pool: Sequence[Row], threshold: float, cells: int, top_cells: int, seed: int) -> list[Record]:
    """``cells`` cells stratified by the pool's ``test_200ep`` quantiles, then ``top_cells`` more at ``threshold``+."""
    rng = np.random.default_rng([seed, 1])
    if cells > len(pool):
        raise ValueError(f"--cells {cells}: the pool has {len(pool)} cells")
    chosen = [int(rng.choice(part)) for part in np.array_split(np.arange(len(pool)), cells)] if cells else []
    taken = set(chosen)
    top = [i for i, row in enumerate(pool) if float(row[TEST]) >= threshold and i not in taken]
    if top_cells > len(top):
        raise ValueError(f"--top-cells {top_cells}: the pool has {len(top)} more top-10% cells")
    extra = sorted(int(i) for i in rng.choice(top, top_cells, replace=False)) if top_cells else []
    return [
        {
            "arch": pool[i]["arch"],
            "index": int(pool[i]["index"]),
            "group": group,
            TEST: float(pool[i][TEST]),
            VALID: float(pool[i][VALID]),
            "top": float(pool[i][TEST]) >= threshold,
        }
        for group, positions in (("spread", chosen), ("top", extra))
        for i in positions
    ]


# --------------------------------------------------------------------------------------------- data


def extract(tar: Path, into: Path, per_class: int | None) -> dict[str, Any]:
    """The training images of ``tar`` (the first ``per_class`` of each class) under ``into/train``, once."""
    marker = into / "extracted.json"
    wanted = {"tar": str(tar.resolve()), "max_images_per_class": per_class}
    if marker.exists():
        found: dict[str, Any] = json.loads(marker.read_text())
        if {key: found.get(key) for key in wanted} != wanted:
            raise SystemExit(f"--scratch {into} holds another extraction ({found}): give another folder or delete it")
        return found
    started = time.perf_counter()
    counts: dict[str, int] = {}
    with tarfile.open(tar) as archive:
        members = []
        for member in archive:
            match = MEMBER.fullmatch(member.name)
            if member.isfile() and match and (per_class is None or int(match[2]) < per_class):
                members.append(member)
                counts[match[1]] = counts.get(match[1], 0) + 1
        archive.extractall(into, members=members, filter="data")
    found = {**wanted, "images": len(members), "per_class": counts, "seconds": round(time.perf_counter() - started, 1)}
    marker.write_text(json.dumps(found, indent=1))
    return found


def extracted_images(scratch: Path) -> int:
    """The training images ``extract`` put under ``scratch`` (0 before it ran)."""
    marker = scratch / "extracted.json"
    return int(json.loads(marker.read_text())["images"]) if marker.exists() else 0


# ------------------------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _init_worker(options: Mapping[str, Any], data_dir: str) -> None:
    """This process's space and the setting's evaluator, its data loaded (once per process)."""
    import torch

    torch.set_num_threads(THREADS)
    torch.set_num_interop_threads(THREADS)
    logging.basicConfig(level=logging.WARNING, format="%(processName)s %(levelname)s %(name)s: %(message)s")
    from evaluators.proxy import ProxyEvaluator
    from nas.space import get

    space = get(SPACE)
    evaluator = ProxyEvaluator(space, dataset="imagefolder", data_dir=data_dir, seed=EVAL_SEED, **options)
    evaluator.prepare()
    _WORKER.update(space=space, evaluator=evaluator)


def evaluate_cell(task: Mapping[str, Any]) -> Record:
    """One cell under the worker's setting: its metrics (and per-epoch reports), CPU time, threads and load."""
    import torch

    space, evaluator = _WORKER["space"], _WORKER["evaluator"]
    epochs: list[dict[str, Any]] = []
    cpu, wall = time.process_time(), time.perf_counter()
    metrics = evaluator.evaluate(
        space.from_string(task["arch"]), task["trial_id"], report=epochs.append if task["per_epoch"] else None
    )
    splits = evaluator.splits
    return {
        **task,
        "metrics": metrics,
        "epoch_reports": [
            {k: v for k, v in r.items() if k in ("epochs", "final_train_loss", "accuracy")} for r in epochs
        ],
        "cpu_seconds": time.process_time() - cpu,
        "wall_seconds": time.perf_counter() - wall,
        "threads": torch.get_num_threads(),
        "train_images": len(splits.train),
        "validation_images": len(splits.validation),
        "loadavg": os.getloadavg()[0],
        "pid": os.getpid(),
        "finished": time.time(),
    }


# ------------------------------------------------------------------------------------ evaluations log


def record_key(label: str, options: Mapping[str, Any], arch: str, data: Mapping[str, Any], per_epoch: bool) -> str:
    """What makes two evaluations the same: setting, cell, data, seed and whether epochs were reported."""
    return json.dumps([label, options, arch, data, EVAL_SEED, per_epoch], sort_keys=True)


def read_log(path: Path) -> dict[str, Record]:
    """The evaluations of ``path`` by key; a line cut off by a killed run is skipped (the later one wins)."""
    done: dict[str, Record] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[record["key"]] = record
    return done


def append_log(path: Path, record: Record) -> None:
    with path.open("a+") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell():  # after a line a killed run left unfinished: start a new one
            handle.seek(handle.tell() - 1)
            if handle.read(1) != "\n":
                handle.write("\n")
        handle.write(json.dumps(record) + "\n")
        handle.flush()


def run_setting(
    label: str,
    options: Mapping[str, Any],
    tasks: Sequence[Record],
    data_dir: Path,
    workers: int,
    log: Path,
) -> Iterator[Record]:
    """Evaluate ``tasks`` in ``workers`` processes; each record is appended to ``log`` and yielded."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        min(workers, len(tasks)), mp_context=context, initializer=_init_worker, initargs=(dict(options), str(data_dir))
    ) as pool:
        futures: list[Future[Record]] = [pool.submit(evaluate_cell, task) for task in tasks]
        try:
            for future in as_completed(futures):
                record = future.result()
                append_log(log, record)
                yield record
        except BaseException:  # interrupted: drop the queued cells (the log keeps every finished one)
            pool.shutdown(wait=False, cancel_futures=True)
            raise


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


def setting_cost(options: Mapping[str, Any], records: Sequence[Record]) -> str:
    """The setting's training in words: epochs, images, network and input size."""
    from evaluators.proxy_options import DEFAULT_EPOCHS
    from nas.space import get

    reduction = {**get(SPACE).proxy_reduction, **{k: v for k, v in options.items() if k in ("C", "N")}}
    train = {r["train_images"] for r in records}
    resolution = {r["metrics"].get("resolution") for r in records} - {None}
    epochs = options.get("epochs", DEFAULT_EPOCHS)
    return (
        f"{epochs} epoch{'' if epochs == 1 else 's'} × "
        + "/".join(f"{n:,}" for n in sorted(train))
        + f" images, C={reduction['C']} N={reduction['N']}"
        + (f", {'/'.join(str(r) for r in sorted(resolution))} px" if resolution else "")
    )


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


# -------------------------------------------------------------------------------------------- report


def text(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def with_interval(row: Mapping[str, Any], key: str) -> str:
    low, high = row.get(f"{key}_ci", [None, None])
    interval = f" ({text(low, 2)}, {text(high, 2)})" if low is not None and high is not None else ""
    return text(row.get(key)) + interval


def markdown(report: Mapping[str, Any]) -> str:
    sample, machine = report["sample"], report["machine"]
    lines = [
        "# NAS-Bench-201 (CIFAR-10): proxy settings and anchors against the 200-epoch accuracy",
        "",
        f"`{report['command']}`",
        "",
        f"{sample['cells']} cells ({sample['spread']} stratified by `test_200ep` quantiles, {sample['top_drawn']} "
        f"more from the best 10%; {sample['top']} of all are top-10%: `test_200ep` ≥ {sample['threshold']:.2f}), "
        f"one per isomorphism class, `test_200ep` ≥ {MIN_TEST:.0f}%, from a pool of {sample['pool']} cells "
        f"(sample seed {sample['seed']}). Data: {report['data']['images']:,} CIFAR-10 training images "
        f"(JPEG re-encoding) extracted to `{report['data']['scratch']}`. "
        f"{machine['workers']} worker(s), {machine['threads']} torch thread each; load average at the start "
        f"{' / '.join(f'{v:.2f}' for v in machine['loadavg_start'])}, at the end "
        f"{' / '.join(f'{v:.2f}' for v in machine['loadavg_end'])} (1 / 5 / 15 min; 2 cores).",
        "",
        "ρ: Spearman, τ: Kendall, against `test_200ep` unless marked valid (`valid_200ep`); in parentheses "
        f"the 95% bootstrap interval ({BOOTSTRAP} resamples of the cells). CPU s per candidate: mean CPU time "
        "of the worker around `evaluate` (one thread); the wall-clock `seconds` are in the settings table. "
        "`setting: accuracy + X`: the setting's accuracy and the zero-cost estimator X as a mean of ranks; "
        "`zero-cost ...`: the zero-cost combination chosen over half the pool (both: see the last sections).",
        "",
        "| estimator | cost | ρ test all | ρ test top 10% | τ all | τ top 10% | ρ valid all | CPU s per candidate "
        "| n cells (top) |",
        "|---|---|---|---|---|---|---|---:|---|",
    ]
    for row in report["estimators"]:
        seconds = text(row.get("cpu_seconds"), 1)
        lines.append(
            f"| {row['estimator']} | {row['cost']} | {with_interval(row, 'rho_test_all')} "
            f"| {with_interval(row, 'rho_test_top')} | {text(row['tau_test_all'])} | {text(row['tau_test_top'])} "
            f"| {text(row['rho_valid_all'])} | {seconds} | {row['n_all']} ({row['n_top']}) |"
        )
    lines += [
        "",
        "## Settings",
        "",
        "| setting | options | evaluated | failed | CPU s | wall s (`seconds`) | train s | mean load (1 min) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, setting in report["settings"].items():
        lines.append(
            f"| {label} | `{json.dumps(setting['options'])}` | {setting['evaluated']} | {setting['failed']} "
            f"| {text(setting['cpu_seconds'], 1)} | {text(setting['seconds'], 1)} "
            f"| {text(setting['train_seconds'], 1)} | {text(setting['loadavg'], 2)} |"
        )
    failures = [f"{label}: {e}" for label, s in report["settings"].items() for e in s["errors"][:3]]
    if failures:
        lines += ["", "Failures (first 3 per setting): " + "; ".join(failures)]
    lines += [
        "",
        f"## Anchors over the whole pool ({sample['pool']} cells, {report['pool_top']} of them top-10%)",
        "",
        "| estimator | ρ test all | ρ test top 10% | τ all | ρ valid all |",
        "|---|---|---|---|---|",
    ]
    for row in report["pool_anchors"]:
        lines.append(
            f"| {row['estimator']} | {text(row['rho_test_all'])} | {text(row['rho_test_top'])} "
            f"| {text(row['tau_test_all'])} | {text(row['rho_valid_all'])} |"
        )
    return "\n".join(lines + combination_sections(report)) + "\n"


def combination_sections(report: Mapping[str, Any]) -> list[str]:
    """The markdown of the zero-cost combinations and of the settings combined with zero-cost scores."""
    search, sample = report["zero_cost_combinations"], report["sample"]
    sizes, tops = search["sizes"], search["top"]
    excluded = ", ".join(f"`{c}` (ρ {text(rho, 2)})" for c, rho in search["excluded"].items()) or "none"
    chosen = search["reported"][0]
    goal = [r for r in search["all"] if (r["rho_held_out"] or -1) >= ZERO_COST_GOAL]
    lines = [
        "",
        "## Zero-cost combinations: chosen over one half of the pool, checked on the other half and on the sample",
        "",
        f"A combination scores a cell by the mean of its normalised ranks (rank / n, ties sharing their mean rank, "
        f"among the cells being ranked: a half, the pool or the sample) under its members, NASLib's scores as "
        f"stored. Every single column, pair and triple of the {len(search['columns'])} columns "
        f"({', '.join(f'`{c}`' for c in search['columns'])}) and the named combinations -- {len(search['all'])} "
        f"estimators -- were scored over a seeded half of the pool (selection: {sizes['selection']} cells, "
        f"{tops['selection']} top-10%, seed {search['split_seed']}) and sorted by ρ there. The other half (held "
        f"out: {sizes['held_out']} cells, {tops['held_out']} top-10%) played no part in the choice: its ρ is the "
        f"figure without selection bias (the best of {len(search['all'])} over the selection half is optimistic "
        f"by construction, and more so over the {sample['cells']} sampled cells, whose intervals are ±0.1). Left "
        f"out: columns whose ρ over the selection half is negative, {excluded}: as stored they rank backwards, "
        "and turning one round would be a choice made on the truth. The vote is Abdelfattah et al.'s pairwise "
        "majority of three scores, scored by each cell's wins (Copeland). Cost: that of the costliest member "
        f"({' < '.join(COST_ORDER)}); NASLib scored the full network (C=16, N=5) -- the seconds are not measured "
        "here. Shown: the best pairs and triples (the first is the chosen one), the named ones, the best single "
        "columns; `all` in `results.json` holds every estimator.",
        "",
        "| zero-cost estimator | role | cost | ρ selection half | ρ held-out half | ρ held-out top 10% | ρ pool "
        "| ρ pool top 10% | ρ sample | ρ sample top 10% | τ sample |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in search["reported"]:
        role = row["role"] + (f": {row['named']}" if row.get("named") else "")
        ranked = row["sample"]
        lines.append(
            f"| {row['estimator']} | {role} | {row['cost']} | {text(row['rho_selection'])} "
            f"| {text(row['rho_held_out'])} | {text(row['rho_held_out_top'])} | {text(row['rho_pool'])} "
            f"| {text(row['rho_pool_top'])} | {with_interval(ranked, 'rho_test_all')} "
            f"| {with_interval(ranked, 'rho_test_top')} | {text(ranked['tau_test_all'])} |"
        )
    lines += [
        "",
        f"The chosen combination, {chosen['estimator']}, ranks the held-out half at ρ {text(chosen['rho_held_out'])} "
        f"(ρ ≥ {ZERO_COST_GOAL} asked by issue 24: {len(goal)} of the {len(search['all'])} estimators reach it "
        "there, a count, not a choice).",
        "",
        "## Settings combined with zero-cost scores",
        "",
        "A setting's accuracy and a zero-cost estimator (the chosen combination and the best single columns, "
        "chosen over the selection half of the pool, not over the sample), each ranked among the sampled cells "
        "the setting evaluated, as the mean of the two normalised ranks (half the weight each). Alone: the "
        "accuracy and the zero-cost estimator over the same cells. These rows are also in the main table.",
        "",
        "| setting | + zero-cost | cost | ρ test all | ρ test top 10% | accuracy alone: ρ all, top "
        "| zero-cost alone: ρ all, top | n cells (top) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["estimators"]:
        if row["kind"] == "setting + zero-cost":
            accuracy, partner = row["accuracy_alone"], row["partner_alone"]
            lines.append(
                f"| {row['setting']} | {row['partner']} | {row['cost']} | {with_interval(row, 'rho_test_all')} "
                f"| {with_interval(row, 'rho_test_top')} "
                f"| {text(accuracy['rho_test_all'])}, {text(accuracy['rho_test_top'])} "
                f"| {text(partner['rho_test_all'])}, {text(partner['rho_test_top'])} "
                f"| {row['n_all']} ({row['n_top']}) |"
            )
    return lines


# ---------------------------------------------------------------------------------------------- main


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    label, equals, spec = text.partition("=")
    if not equals or not label.strip():
        raise ValueError(f"--setting: expected 'LABEL={{...evaluator options}}', got {text!r}")
    options = json.loads(spec)
    if not isinstance(options, dict):
        raise ValueError(f"--setting {label!r}: the options must be a JSON object, got {spec!r}")
    reserved = sorted(set(options) & {"dataset", "data_dir", "seed", "download"})
    if reserved:
        raise ValueError(f"--setting {label!r}: {reserved} are set by the benchmark")
    return label.strip(), options


def check_setting(label: str, options: Mapping[str, Any]) -> None:
    """The evaluator's own torch-free check, so that a bad setting fails here, not in every worker."""
    from evaluators.proxy_options import check
    from nas.space import get

    try:
        check(get(SPACE), options)
    except (ValueError, TypeError) as error:
        raise SystemExit(f"--setting {label!r}: {error}") from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("nb201_fidelity"), help="folder for the log and results")
    parser.add_argument("--cells", type=int, default=40, help="cells stratified by test_200ep quantiles")
    parser.add_argument("--top-cells", type=int, default=20, help="further cells from the best 10%%")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the cell sample")
    parser.add_argument("--setting", action="append", default=[], help="LABEL={...proxy evaluator options}")
    parser.add_argument("--workers", type=int, default=2, help="processes evaluating cells side by side")
    parser.add_argument("--tar", type=Path, default=JPEG_TAR, help="CIFAR-10 as train/<class>/NNNN.jpg")
    parser.add_argument("--scratch", type=Path, default=None, help="extraction folder (default under /tmp)")
    parser.add_argument("--max-images-per-class", type=int, default=None, help="extract only the first K per class")
    parser.add_argument("--per-epoch", action="store_true", help="record every epoch (SoTL; one more validation each)")
    parser.add_argument("--retry-failed", action="store_true", help="evaluate again the cells that failed")
    parser.add_argument("--report-only", action="store_true", help="evaluate nothing: report what the log holds")
    args = parser.parse_args(argv)
    command = shlex.join([Path(sys.executable).name, *sys.argv] if argv is None else ["nb201_fidelity.py", *argv])
    try:
        settings = dict(parse_setting(text) for text in args.setting) if args.setting else dict(DEFAULT_SETTINGS)
    except (ValueError, json.JSONDecodeError) as error:
        parser.error(str(error))
    if args.setting and len(settings) != len(args.setting):
        parser.error("--setting: two settings have the same label")
    for label, options in settings.items():
        check_setting(label, options)
    loadavg_start = os.getloadavg()

    nb201_rows = read_table(NB201_TABLE)
    nb201 = {row["arch"]: row for row in nb201_rows}
    zero_cost = {row["arch"]: row for row in read_table(ZERO_COST_TABLE)}
    threshold = top_threshold(nb201_rows)
    pool = candidate_pool(nb201_rows, zero_cost, args.sample_seed)
    try:
        cells = draw_sample(pool, threshold, args.cells, args.top_cells, args.sample_seed)
    except ValueError as error:
        parser.error(str(error))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cells.json").write_text(json.dumps(cells, indent=1))
    print(f"{len(cells)} cells of a pool of {len(pool)} (top 10%: test_200ep ≥ {threshold:.2f}):")
    for number, cell in enumerate(cells):
        mark = "*" if cell["top"] else " "
        print(f"  {number:3d} #{cell['index']:5d} {cell[TEST]:6.2f}{mark} {cell['group']:6s} {cell['arch']}")

    suffix = "" if args.max_images_per_class is None else f"-{args.max_images_per_class}-per-class"
    scratch = args.scratch or Path("/tmp") / f"nb201-fidelity-cifar10{suffix}"
    data = {"tar": args.tar.name, "max_images_per_class": args.max_images_per_class}
    log = args.out / "evaluations.jsonl"
    done = read_log(log)
    if args.retry_failed:
        done = {key: record for key, record in done.items() if "error" not in record["metrics"]}
    todo: dict[str, list[Record]] = {}
    for label, options in settings.items():
        for cell in cells:
            key = record_key(label, options, cell["arch"], data, args.per_epoch)
            if key not in done:
                task = {"key": key, "label": label, "options": options, "arch": cell["arch"], "index": cell["index"]}
                task |= {"trial_id": cell["index"], "data": data, "seed": EVAL_SEED, "per_epoch": args.per_epoch}
                todo.setdefault(label, []).append(task)
    if todo and not args.report_only:
        extraction = extract(args.tar, scratch, args.max_images_per_class)
        print(f"data: {extraction['images']:,} training images under {scratch}", flush=True)
    started = time.perf_counter()
    for label, tasks in [] if args.report_only else todo.items():
        params = {arch: float(row["params"]) for arch, row in zero_cost.items()}
        tasks = sorted(tasks, key=lambda task: -params[task["arch"]])  # the largest first: an even finish
        print(f"{label}: {len(tasks)} of {len(cells)} cells to evaluate, {args.workers} worker(s)", flush=True)
        for number, record in enumerate(
            run_setting(label, settings[label], tasks, scratch, args.workers, log), start=1
        ):
            done[record["key"]] = record
            metrics, truth = record["metrics"], nb201[record["arch"]]
            outcome = metrics["error"] if "error" in metrics else f"accuracy {metrics['accuracy']:.4f}"
            print(
                f"  [{number}/{len(tasks)} {time.perf_counter() - started:6.0f}s] #{record['index']} "
                f"test {float(truth[TEST]):.2f}: {outcome} ({metrics['seconds']:.1f} s, "
                f"{record['cpu_seconds']:.1f} CPU s, load {record['loadavg']:.2f})",
                flush=True,
            )

    pool_cells: list[Record] = [
        {"arch": row["arch"], TEST: float(row[TEST]), VALID: float(row[VALID]), "top": float(row[TEST]) >= threshold}
        for row in pool
    ]
    table = zero_cost_table(zero_cost)
    search = search_combinations(pool_cells, table, args.sample_seed)
    reported = reported_combinations(search["rows"])
    sample_archs = [cell["arch"] for cell in cells]
    for row in reported:
        row["sample"] = correlations(zero_cost_scores(row, table, sample_archs), cells)
    chosen = reported[0]
    partners = [chosen] + [row for row in reported if row["role"].startswith("single")]
    estimators: list[Record] = []
    setting_facts: dict[str, Any] = {}
    per_cell: dict[str, dict[str, Any]] = {
        cell["arch"]: {"arch": cell["arch"], "index": cell["index"]} for cell in cells
    }
    for label, options in settings.items():
        keys = {record_key(label, options, cell["arch"], data, args.per_epoch): cell["arch"] for cell in cells}
        records = [done[key] for key in keys if key in done]
        good = [r for r in records if "error" not in r["metrics"]]
        setting_facts[label] = {
            "options": options,
            "evaluated": len(records),
            "failed": len(records) - len(good),
            "errors": [f"#{r['index']}: {r['metrics']['error']}" for r in records if "error" in r["metrics"]],
            "seconds": mean([r["metrics"]["seconds"] for r in records]),
            "cpu_seconds": mean([r["cpu_seconds"] for r in records]),
            "train_seconds": mean([r["metrics"]["train_seconds"] for r in good]),
            "threads": sorted({r["threads"] for r in records}),
            "train_images": sorted({r["train_images"] for r in records}),
            "validation_images": sorted({r["validation_images"] for r in records}),
            "loadavg": mean([r["loadavg"] for r in records]),
        }
        if not records:
            continue
        scored: dict[str, dict[str, float]] = {}
        for record in good:
            for name, value in setting_scores(record).items():
                scored.setdefault(name, {})[record["arch"]] = value
                per_cell[record["arch"]][f"{label}: {name}"] = value
        for name, scores in scored.items():
            estimators.append(
                {
                    "estimator": f"{label}: {name}",
                    "kind": "setting",
                    "setting": label,
                    "cost": setting_cost(options, records),
                    "seconds": setting_facts[label]["seconds"],
                    "cpu_seconds": setting_facts[label]["cpu_seconds"],
                    **correlations(scores, cells),
                }
            )
        accuracy = scored.get("accuracy", {})
        archs = [arch for arch in sample_archs if arch in accuracy]
        for partner in partners if archs else []:
            name = f"{label}: accuracy + {partner['estimator']}"
            alone = zero_cost_scores(partner, table, archs)
            scores = combined_scores([accuracy, alone], archs)
            for arch, value in scores.items():
                per_cell[arch][name] = value
            estimators.append(
                {
                    "estimator": name,
                    "kind": "setting + zero-cost",
                    "setting": label,
                    "partner": partner["estimator"],
                    "partner_alone": correlations(alone, cells, intervals=False),
                    "accuracy_alone": correlations(accuracy, cells, intervals=False),
                    "cost": f"{setting_cost(options, records)} + {partner['cost']}",
                    "seconds": setting_facts[label]["seconds"],
                    "cpu_seconds": setting_facts[label]["cpu_seconds"],
                    **correlations(scores, cells),
                }
            )
    anchors = anchor_scores(cells, nb201, zero_cost)
    for anchor in anchors:
        estimators.append(
            {**{k: v for k, v in anchor.items() if k != "scores"}, **correlations(anchor["scores"], cells)}
        )
    name = f"zero-cost {chosen['estimator']} ({RANK_MEAN}, chosen over half the pool)"
    estimators.append(
        {"estimator": name, "kind": "zero-cost combination", "members": chosen["members"], "cost": chosen["cost"]}
        | chosen["sample"]
    )
    for arch, value in zero_cost_scores(chosen, table, sample_archs).items():
        per_cell[arch][name] = value
    pool_anchors = [
        {"estimator": a["estimator"], **correlations(a["scores"], pool_cells, intervals=False)}
        for a in anchor_scores(pool_cells, nb201, zero_cost)
    ]
    for cell in cells:
        per_cell[cell["arch"]].update({TEST: cell[TEST], VALID: cell[VALID], "group": cell["group"]})
    report = {
        "command": command,
        "machine": {
            "workers": args.workers,
            "threads": THREADS,
            "cpus": os.cpu_count(),
            "loadavg_start": list(loadavg_start),
            "loadavg_end": list(os.getloadavg()),
            "wall_seconds": time.perf_counter() - started,
        },
        "data": {"scratch": str(scratch), "images": extracted_images(scratch), **data},
        "sample": {
            "seed": args.sample_seed,
            "cells": len(cells),
            "spread": args.cells,
            "top_drawn": args.top_cells,
            "top": sum(cell["top"] for cell in cells),
            "threshold": threshold,
            "pool": len(pool),
            "min_test": MIN_TEST,
            "list": cells,
        },
        "settings": setting_facts,
        "estimators": estimators,
        "pool_top": sum(cell["top"] for cell in pool_cells),
        "pool_anchors": pool_anchors,
        "zero_cost_combinations": {
            "method": f"{RANK_MEAN} of the members' normalised ranks (rank / n) among the cells ranked",
            "split_seed": search["seed"],
            "sizes": search["sizes"],
            "top": search["top"],
            "columns": search["columns"],
            "excluded": search["excluded"],
            "selected_by": f"rho against {TEST} over the selection half",
            "reported": reported,
            "all": search["rows"],
        },
        "per_cell": list(per_cell.values()),
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    (args.out / "results.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
