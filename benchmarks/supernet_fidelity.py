"""How well does one weight-shared supernet rank NAS-Bench-201's cells? Against their 200-epoch CIFAR-10 accuracy.

The ``supernet`` evaluator (``evaluators/supernet.py``: SPOS, one path per step, BatchNorm re-estimated
per candidate) is trained once on the CIFAR-10 JPEG tree (``../shared/data/cifar10-jpeg.tar``, extracted
as ``benchmarks/nb201_fidelity.py`` does; training on the seeded training split, scoring on the
held-out validation images, the test images never read), with its checkpoint in ``--out`` (a killed
run resumes). Then:

- ``--cells`` + ``--top-cells`` cells drawn as ``nb201_fidelity.py`` draws them (one per isomorphism
  class, none below 20%; stratified by accuracy, plus cells of the best 10%), and the 60 cells of
  ``benchmarks/results/nb201_fidelity/cells.json``, are scored with the shared weights (``--workers``
  processes, one thread each); Spearman and Kendall against ``test_200ep`` over all and over the top
  10%, beside the parameter count (NASLib's column) on the same cells and, on the 60 cells, the
  stand-alone proxy's best setting from that benchmark's log (SoTL-E of 20 epochs at 16 px); and the
  supernet's ranks averaged with a free score's (the parameter count, NASLib's jacov), whose biases
  differ (the supernet favours shallow paths, the parameter count convolutions). Per-cell scores go
  to ``OUT/scores.json``;
- each of ``--controllers`` searches ``--budget`` queries through the supernet's scores (a cell's
  score is computed once and shared by every search; seed 0), and the cell it picks is looked up in
  the table: its 200-epoch test accuracy, against the optimum 94.37 and the top-1% line 93.78.

Costs are CPU seconds of this process (training: one thread) and of the workers (scoring).

    .venv/bin/python benchmarks/supernet_fidelity.py --out /tmp/supernet-e60 \\
        --setting '{"epochs": 60, "C": 8, "N": 1, "resolution": 16}'   # + "finetune_steps": 0 / 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fidelity_stats import correlations, normalised_ranks
from nb201_fidelity import (
    JPEG_TAR,
    TEST,
    candidate_pool,
    draw_sample,
    extract,
    read_table,
    top_threshold,
)

SPACE = "nb201"
SEED = 0
CONTROLLERS = ("random", "evolution", "reinforce", "local", "tpe")
FIDELITY = Path(__file__).resolve().parent / "results" / "nb201_fidelity"
STANDALONE = "e20 C8 N1 r16 500/class"  # the stand-alone proxy's best setting in that log
OPTIMUM, TOP_ONE_PERCENT = 94.37, 93.78

_WORKER: dict[str, Any] = {}


def _evaluator(options: Mapping[str, Any], data_dir: str, out: Path) -> Any:
    import torch

    torch.set_num_threads(1)
    from evaluators.supernet import SupernetEvaluator
    from nas.space import get

    evaluator = SupernetEvaluator(get(SPACE), dataset="imagefolder", data_dir=data_dir, seed=SEED, **options)
    evaluator.prepare()
    evaluator.attach(out)  # trains, resumes, or loads the finished supernet
    return evaluator


def _init_worker(options: Mapping[str, Any], data_dir: str, out: str) -> None:
    _WORKER["evaluator"] = _evaluator(options, data_dir, Path(out))


def score_cell(arch: str) -> dict[str, Any]:
    evaluator = _WORKER["evaluator"]
    cpu = time.process_time()
    metrics = evaluator.evaluate(evaluator.space.from_string(arch), trial_id=0)
    return {
        "arch": arch,
        "accuracy": metrics.get("accuracy"),
        "error": metrics.get("error"),
        "cpu": time.process_time() - cpu,
    }


def _standalone(cells: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Minus the last epoch's training loss of the stand-alone proxy's best setting, by cell (its log)."""
    log = FIDELITY / "evaluations.jsonl"
    scores: dict[str, float] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if record.get("label") == STANDALONE and record.get("metrics", {}).get("final_train_loss") is not None:
                scores[record["arch"]] = -float(record["metrics"]["final_train_loss"])
    wanted = {cell["arch"] for cell in cells}
    return {arch: score for arch, score in scores.items() if arch in wanted}


def searches(evaluator: Any, scores: dict[str, float], budget: int, table: Mapping[str, float]) -> list[dict[str, Any]]:
    """Each controller's search through the supernet (cells scored on first use, shared by every search)."""
    from nas.controller import Result, make_controller

    space, found = evaluator.space, []
    for name in CONTROLLERS:
        controller = make_controller(name, space, seed=SEED, budget=budget)
        best, best_arch = -1.0, ""
        while not controller.finished:
            trial = controller.ask()
            assert trial is not None
            arch = space.to_string(trial.genotype)
            if arch not in scores:
                scores[arch] = float(evaluator.evaluate(trial.genotype, trial_id=trial.id).get("accuracy", 0.0))
            controller.tell(trial.id, Result(reward=scores[arch], metrics={"accuracy": scores[arch]}))
            if scores[arch] > best:
                best, best_arch = scores[arch], arch
        found.append({"controller": name, "arch": best_arch, "supernet_accuracy": best, TEST: table[best_arch]})
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the checkpoint and the results")
    parser.add_argument(
        "--setting", default='{"C": 8, "N": 1, "resolution": 16}', help="supernet options (default: its defaults)"
    )
    parser.add_argument("--cells", type=int, default=160, help="cells stratified by test_200ep")
    parser.add_argument("--top-cells", type=int, default=40, help="further cells from the best 10%%")
    parser.add_argument("--budget", type=int, default=100, help="queries of each search through the supernet")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tar", type=Path, default=JPEG_TAR)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/nb201-fidelity-cifar10"))
    args = parser.parse_args(argv)
    options = json.loads(args.setting)
    args.out.mkdir(parents=True, exist_ok=True)
    extract(args.tar, args.scratch, None)
    nb201 = read_table("nb201-cifar10")
    zero_cost = {row["arch"]: row for row in read_table("zero-cost-cifar10-naslib")}
    threshold = top_threshold(nb201)
    pool = candidate_pool(nb201, zero_cost, SEED)
    cells = draw_sample(pool, threshold, args.cells, args.top_cells, SEED)
    known = {cell["arch"] for cell in cells}
    cells += [cell for cell in json.loads((FIDELITY / "cells.json").read_text()) if cell["arch"] not in known]

    cpu, wall = time.process_time(), time.perf_counter()
    evaluator = _evaluator(options, str(args.scratch), args.out)  # trains here, in this process
    training = {"cpu_seconds": time.process_time() - cpu, "wall_seconds": time.perf_counter() - wall}
    training.update(epochs=evaluator.trained_epochs, losses=evaluator.losses, seconds=evaluator.training_seconds)

    wall = time.perf_counter()
    with ProcessPoolExecutor(
        args.workers, initializer=_init_worker, initargs=(options, str(args.scratch), str(args.out))
    ) as pool_:
        scored = list(pool_.map(score_cell, [cell["arch"] for cell in cells]))
    scoring = {
        "cells": len(scored),
        "wall_seconds": time.perf_counter() - wall,
        "cpu_seconds_per_cell": float(np.mean([s["cpu"] for s in scored])),
        "failed": sum(1 for s in scored if s["error"]),
    }
    scores = {s["arch"]: float(s["accuracy"]) for s in scored if s["accuracy"] is not None}
    params = {cell["arch"]: float(zero_cost[cell["arch"]]["params"]) for cell in cells}
    jacov = {cell["arch"]: float(zero_cost[cell["arch"]]["jacov"]) for cell in cells}
    fidelity_cells = json.loads((FIDELITY / "cells.json").read_text())
    rows = {
        "supernet (all cells)": correlations(scores, cells),
        "parameter count (all cells)": correlations(params, cells),
        "supernet (the 60 fidelity cells)": correlations(scores, fidelity_cells),
        "stand-alone proxy, SoTL-E 20 epochs at 16 px (the 60 fidelity cells)": correlations(
            _standalone(fidelity_cells), fidelity_cells
        ),
        "parameter count (the 60 fidelity cells)": correlations(params, fidelity_cells),
        "supernet + parameter count, rank mean (all cells)": correlations(rank_mean(scores, params), cells),
        "supernet + jacov, rank mean (all cells)": correlations(rank_mean(scores, jacov), cells),
    }
    table = {row["arch"]: float(row[TEST]) for row in nb201}
    cpu = time.process_time()
    found = searches(evaluator, dict(scores), args.budget, table)
    search_cpu = time.process_time() - cpu
    result = {
        "setting": options,
        "training": training,
        "scoring": scoring,
        "correlations": rows,
        "searches": found,
        "search_cpu_seconds": search_cpu,
        "load": os.getloadavg(),
        "top_threshold": threshold,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    (args.out / "scores.json").write_text(json.dumps(scores, indent=0))  # arch -> accuracy with the shared weights
    print(report(result))
    (args.out / "results.md").write_text(report(result))


def rank_mean(first: Mapping[str, float], second: Mapping[str, float]) -> dict[str, float]:
    """The mean of each cell's normalised ranks under two scores (cells both score): a free prior (the
    parameter count, a zero-cost score) beside the supernet, whose errors differ in kind."""
    archs = [arch for arch in first if arch in second]
    a = normalised_ranks(np.array([first[arch] for arch in archs]))
    b = normalised_ranks(np.array([second[arch] for arch in archs]))
    return {arch: float(x + y) / 2 for arch, x, y in zip(archs, a, b)}


def report(result: Mapping[str, Any]) -> str:
    training, scoring = result["training"], result["scoring"]
    lines = [
        "# Supernet ranking of NAS-Bench-201 cells on CIFAR-10",
        "",
        f"Setting `{json.dumps(result['setting'])}`; training {training['epochs']} epochs, "
        f"{training['cpu_seconds'] / 60:.1f} CPU min in this session ({training['seconds'] / 60:.1f} min of training "
        f"in all, one thread); scoring {scoring['cells']} cells, {scoring['cpu_seconds_per_cell']:.2f} CPU s a cell, "
        f"{scoring['failed']} failed; load {', '.join(f'{v:.1f}' for v in result['load'])}.",
        "",
        "| estimator | ρ all | ρ top 10% | τ all | τ top 10% | n (top) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in result["correlations"].items():
        cells = [row.get(k) for k in ("rho_test_all", "rho_test_top", "tau_test_all", "tau_test_top")]
        shown = " | ".join("–" if v is None else f"{v:.3f}" for v in cells)
        lines.append(f"| {name} | {shown} | {row['n_all']} ({row['n_top']}) |")
    lines += [
        "",
        "| search through the supernet (seed 0) | supernet accuracy | test_200ep | top 1%? |",
        "|---|---:|---:|---|",
    ]
    for entry in result["searches"]:
        top = "yes" if entry[TEST] >= TOP_ONE_PERCENT else "no"
        lines.append(f"| {entry['controller']} | {entry['supernet_accuracy']:.4f} | {entry[TEST]:.2f} | {top} |")
    lines += [
        "",
        f"Searches: {result['search_cpu_seconds'] / 60:.1f} CPU min (cells scored once, shared). Optimum {OPTIMUM}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
