"""The ``zero-cost`` evaluator against NASLib's stored scores on NAS-Bench-201 (CIFAR-10).

    python benchmarks/nb201_zero_cost.py [--cells 200] [--seed 0] [--per-class 50] [--timing 10] [--out FILE]
    python benchmarks/nb201_zero_cost.py --exact-all   # params and flops of all 9,445 cells against NASLib's

NASLib (NAS-Bench-Suite-Zero, arXiv 2210.03230) scored 9,445 NB201 cells on CIFAR-10; its scores
ship as ``evaluators/tables/zero-cost-cifar10-naslib.csv.gz``. This script draws ``--cells``
of them (a seeded choice, ``--seed``), scores each with the ``zero-cost`` evaluator at the
benchmark's full network (``nb201`` with ``size: full``: C = 16, N = 5, 32 px, 10 classes; trial
id = the cell's NB201 index) on CIFAR-10 training images with their original pixels (the first
``--per-class`` of each class of ``/work/shared/data/cifar10-png-subset.tar``, extracted to a
scratch folder under /tmp and read by the ``imagefolder`` loader), and reports per score:

- Spearman rho of ours against NASLib's stored score, over the sample;
- Spearman rho of ours against ours again with new weights and a new batch (repeat 1): how far two
  draws of the same score agree, the ceiling of any agreement with NASLib's own draw;
- Spearman rho against the 200-epoch test accuracy (``test_200ep`` of the NB201 table) of ours and
  of NASLib's, over the sample, and NASLib's over all 9,445 cells;
- CPU seconds per candidate (``time.process_time``, one thread) of the score computed alone, over
  the first ``--timing`` cells of the sample, and of all scores together;
- whether ``params`` and ``flops`` equal NASLib's (to the table's 8 significant digits) on every cell.

It writes a Markdown table to stdout and, with ``--out``, the numbers and every cell's scores as JSON.
``--exact-all`` instead compares ``params`` and ``flops`` (no data) with NASLib's for all 9,445 cells
(about 0.1 s a cell).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from evaluators.tabular_options import shipped_tables
from evaluators.zero_cost_options import SCORES
from nas import registry
from nas.evaluator import make_evaluator

PNG_TAR = Path("/work/shared/data/cifar10-png-subset.tar")
MEMBER = re.compile(r"train/([a-z]+)/(\d{4})\.png")


def read_table(name: str) -> list[dict[str, str]]:
    with gzip.open(shipped_tables()[name].open("rb"), "rt", newline="") as text:
        return list(csv.DictReader(text))


def extract(tar: Path, per_class: int, into: Path) -> int:
    """The first ``per_class`` training images of every class as ``into/train/<class>/NNNN.png``."""
    with tarfile.open(tar) as archive:
        members = [m for m in archive.getmembers() if (match := MEMBER.fullmatch(m.name)) and int(match[2]) < per_class]
        archive.extractall(into, members=members, filter="data")
    return len(members)


def rho(x: list[float], y: list[float]) -> float:
    return float(spearmanr(x, y).statistic)


def cpu_seconds(evaluator: Any, genotypes: list[Any], ids: list[int]) -> float:
    """Mean CPU seconds per candidate of ``evaluator`` over ``genotypes`` (after one warm-up)."""
    evaluator.evaluate(genotypes[0], ids[0])
    started = time.process_time()
    for genotype, trial in zip(genotypes, ids):
        metrics = evaluator.evaluate(genotype, trial)
        assert "error" not in metrics, metrics
    return (time.process_time() - started) / len(genotypes)


def exact_all(tar: Path) -> None:
    """``params`` and ``flops`` of every cell NASLib scored, against its columns (8 significant digits)."""
    space = registry.spaces.get("nb201")
    with tempfile.TemporaryDirectory(prefix="nb201-zero-cost-") as scratch:
        extract(tar, 10, Path(scratch))  # CIFAR-10's 10 classes: the classifier NASLib's networks have
        evaluator = make_evaluator(
            "zero-cost", space, dataset="imagefolder", data_dir=scratch, size="full", scores=["params", "flops"]
        )
        evaluator.prepare()
        rows, differ = read_table("zero-cost-cifar10-naslib"), []
        started = time.process_time()
        for number, row in enumerate(rows):
            metrics = evaluator.evaluate(space.from_string(row["arch"]), number)  # type: ignore[attr-defined]
            exact = metrics["params"] == round(float(row["params"]) * 1e6)
            if not (exact and np.isclose(metrics["flops"], float(row["flops"]), rtol=1e-7)):
                differ.append((row["arch"], metrics, row["params"], row["flops"]))
    seconds = time.process_time() - started
    print(f"params and flops of {len(rows)} cells: {len(rows) - len(differ)} equal NASLib's, {len(differ)} differ")
    print(f"{seconds / len(rows):.3f} CPU s per cell; first differences: {differ[:3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200, help="cells drawn from NASLib's 9,445")
    parser.add_argument("--seed", type=int, default=0, help="the sample's and the evaluator's seed")
    parser.add_argument("--per-class", type=int, default=50, help="training images per class extracted")
    parser.add_argument("--timing", type=int, default=10, help="cells timed per score")
    parser.add_argument("--tar", type=Path, default=PNG_TAR)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--exact-all", action="store_true", help="check params and flops on all 9,445 cells")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.exact_all:
        exact_all(args.tar)
        return

    naslib = {row["arch"]: row for row in read_table("zero-cost-cifar10-naslib")}
    nb201 = {row["arch"]: row for row in read_table("nb201-cifar10")}
    archs = sorted(naslib, key=lambda arch: int(nb201[arch]["index"]))
    sample = [archs[i] for i in sorted(np.random.default_rng(args.seed).choice(len(archs), args.cells, replace=False))]
    space = registry.spaces.get("nb201")
    genotypes = [space.from_string(arch) for arch in sample]  # type: ignore[attr-defined]
    ids = [int(nb201[arch]["index"]) for arch in sample]

    with tempfile.TemporaryDirectory(prefix="nb201-zero-cost-") as scratch:
        images = extract(args.tar, args.per_class, Path(scratch))
        data = {"dataset": "imagefolder", "data_dir": scratch, "seed": args.seed, "size": "full"}
        evaluator = make_evaluator("zero-cost", space, **data)
        evaluator.prepare()
        print(f"{images} CIFAR-10 training images (original pixels); {evaluator.describe()}", file=sys.stderr)
        started = time.process_time()
        ours: list[dict[str, Any]] = []
        again: list[dict[str, Any]] = []
        for number, (genotype, trial) in enumerate(zip(genotypes, ids), start=1):
            metrics, redrawn = evaluator.evaluate(genotype, trial), evaluator.evaluate(genotype, trial, repeat=1)
            assert "error" not in metrics and "error" not in redrawn, (sample[number - 1], metrics, redrawn)
            ours.append(metrics)
            again.append(redrawn)
            if number % 25 == 0:
                print(f"{number}/{len(sample)} cells, {time.process_time() - started:.0f} CPU s", file=sys.stderr)
        timed = genotypes[: args.timing], ids[: args.timing]
        seconds = {
            score: cpu_seconds(make_evaluator("zero-cost", space, scores=[score], **data), *timed) for score in SCORES
        }
        seconds["all"] = cpu_seconds(evaluator, *timed)

    test = [float(nb201[arch]["test_200ep"]) for arch in sample]
    test_all = [float(nb201[arch]["test_200ep"]) for arch in archs]
    rows = {}
    for score in SCORES:
        theirs = [float(naslib[arch][score]) for arch in sample]
        mine = [float(metrics[score]) for metrics in ours]
        rows[score] = {
            "rho_naslib": rho(mine, theirs),
            "rho_redrawn": rho(mine, [float(metrics[score]) for metrics in again]),
            "rho_test_ours": rho(mine, test),
            "rho_test_naslib_sample": rho(theirs, test),
            "rho_test_naslib_all": rho([float(naslib[arch][score]) for arch in archs], test_all),
            "cpu_seconds": seconds[score],
        }
    params_exact = all(m["params"] == round(float(naslib[a]["params"]) * 1e6) for m, a in zip(ours, sample))
    flops_exact = all(np.isclose(m["flops"], float(naslib[a]["flops"]), rtol=1e-7) for m, a in zip(ours, sample))

    print(f"\n{len(sample)} NB201 cells (seed {args.seed}), C = 16, N = 5, 32 px; batch of 64 of {images} images\n")
    print(
        "| score | rho vs NASLib | rho vs ours redrawn | rho vs test_200ep (ours) | (NASLib, same cells) "
        "| (NASLib, 9,445 cells) | CPU s / candidate |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for score, row in rows.items():
        print(
            f"| `{score}` | {row['rho_naslib']:.3f} | {row['rho_redrawn']:.3f} | {row['rho_test_ours']:.3f} "
            f"| {row['rho_test_naslib_sample']:.3f} | {row['rho_test_naslib_all']:.3f} | {row['cpu_seconds']:.3f} |"
        )
    print(f"| all together | | | | | | {seconds['all']:.3f} |")
    print(f"\nparams equal to NASLib's on every cell: {params_exact}; flops equal (8 digits): {flops_exact}")
    if args.out:
        result = {
            "cells": len(sample),
            "seed": args.seed,
            "images": images,
            "scores": rows,
            "all_cpu_seconds": seconds["all"],
            "params_exact": params_exact,
            "flops_exact": flops_exact,
            "per_cell": [{"arch": a, "index": i, **m} for a, i, m in zip(sample, ids, ours)],
        }
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
