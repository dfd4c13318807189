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

Combinations (computed from the tables and the log: no training): zero-cost columns and settings
combined by their mean normalised rank, chosen over one half of the pool -- see ``fidelity_stats.py``,
which holds the statistics, and ``fidelity_report.py``, which gathers the report and writes it.

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
import json
import logging
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

# Siblings of this script: Python puts the script's folder first on sys.path (and spawned workers inherit it).
from fidelity_report import analyse, markdown
from fidelity_stats import SPACE, TEST, VALID, Record, Row

NB201_TABLE, ZERO_COST_TABLE = "nb201-cifar10", "zero-cost-cifar10-naslib"
JPEG_TAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar"  # ../shared of the repository
MEMBER = re.compile(r"train/([a-z_]+)/(\d+)\.jpg")
MIN_TEST = 20.0  # % test_200ep: below it a cell computes nothing (10%, chance)
TOP_FRACTION = 0.1  # the "top" cells: test_200ep at least the 90th percentile of all 15,625 cells
EVAL_SEED = 0
THREADS = 1
# The settings evaluated without --setting: the space's proxy network (C = 8, N = 1) on 500 of the
# 5,000 training images of each class (the same seeded ones for every cell), validated on the 10% held
# out of all of them (5,000 images), at 1, 4 and 12 epochs; at 4 epochs with NB201's width (C = 16);
# and 1 epoch on all 45,000 training images (about the image-epochs of the 12-epoch one: data or
# epochs). Measured here (1 thread, C = 8): training 1.1-1.7 ms per image and epoch, validation and
# BatchNorm calibration 2.5-4 s, decoding the data into memory 16 s per worker and setting. So, for
# 60 cells on 2 free cores, about 5 min, 18 min, 50 min, 1 h and 30 min: 2.7 h in all.
_AT_32 = {"C": 8, "N": 1, "resolution": 32, "validation_fraction": 0.1}  # the data's size, as measured
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "e1 C8 N1 500/class": {"epochs": 1, **_AT_32, "images_per_class": 500},
    "e4 C8 N1 500/class": {"epochs": 4, **_AT_32, "images_per_class": 500},
    "e12 C8 N1 500/class": {"epochs": 12, **_AT_32, "images_per_class": 500},
    "e4 C16 N1 500/class": {"epochs": 4, **_AT_32, "C": 16, "images_per_class": 500},
    "e1 C8 N1 all": {"epochs": 1, **_AT_32, "images_per_class": None},
}


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


def extracted(into: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The record of the extraction ``into`` holds (``extracted.json``) if it is the ``wanted`` one, None if
    there is none; another extraction there stops the benchmark (its folder is the user's to clear)."""
    marker = into / "extracted.json"
    if not marker.exists():
        return None
    found: dict[str, Any] = json.loads(marker.read_text())
    if {key: found.get(key) for key in wanted} != wanted:
        raise SystemExit(f"--scratch {into} holds another extraction ({found}): give another folder or delete it")
    return found


def extract(tar: Path, into: Path, per_class: int | None) -> dict[str, Any]:
    """The training images of ``tar`` (the first ``per_class`` of each class) under ``into/train``, once."""
    marker = into / "extracted.json"
    wanted = {"tar": str(tar.resolve()), "max_images_per_class": per_class}
    if (found := extracted(into, wanted)) is not None:
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
    evaluated: dict[str, list[Record]] = {}
    for label, options in settings.items():
        keys = {record_key(label, options, cell["arch"], data, args.per_epoch): cell["arch"] for cell in cells}
        evaluated[label] = [done[key] for key in keys if key in done]
    analysis = analyse(settings, evaluated, cells, pool_cells, nb201, zero_cost, args.sample_seed)
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
        **analysis,
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    (args.out / "results.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
