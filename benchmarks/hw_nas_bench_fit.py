"""A latency model fitted from a few cells' measurements on a device, against HW-NAS-Bench (issue 27).

    .venv/bin/python benchmarks/hw_nas_bench_fit.py [--rows 100] [--seeds 10] [--csv FILE] [--out DIR]

HW-NAS-Bench (Li et al., ICLR 2021, arXiv 2103.10584) timed every one of NAS-Bench-201's 15,625
cells (``nb201``, the benchmark's CIFAR-10 network) on a Jetson TX2 (``edgegpu``), a Raspberry Pi 4
(``raspi4``), an Edge TPU (``edgetpu``; 4,699 cells without a measurement, ``-1``, are left out), a
Pixel 3 (``pixel3``) and two simulated accelerators (``eyeriss``, ``fpga``). For each device and
seed the script draws ``--rows`` cells, fits ``nas.latency_model.fit`` to their latencies (the
feature set chosen by cross-validation, as ``nas latency --fit`` does) and predicts all the other
cells: the fraction of predictions within ±5% and ±10% of the measurement and Spearman's rho
between predicted and measured, mean and standard deviation over the seeds (the model's
refusals, cells with a feature the sample never varied, are counted in ``results.json`` and
predicted anyway). Then, to show what the choice rests on, the fraction within ±10% of every
feature set forced, and of models the engine does not use: plain least squares of absolute or of
relative errors or of log latency (the engine's fit is robust, on relative errors), a linear model
of the network's MACs and parameters (the engine's cost table), and pairwise terms between edges
with a ridge penalty. Last a ceiling: the set chosen most often fitted to 10,000 cells and judged
on the other 5,625, and how far apart the device puts cells with the same counts (one prediction
for all of them from any model of these features).

Writes ``results.md`` and ``results.json`` under ``--out`` (default
``benchmarks/results/hw_nas_bench_fit``) and prints the Markdown. About 80 s on one core.
"""

from __future__ import annotations

import argparse
import collections
import csv
import gzip
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from evaluators.tabular_options import shipped_tables
from nas.latency_model import FEATURE_SETS, LatencyModel, fit, network_features, solve
from search_spaces.nb201 import Nb201Space, from_string

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSV = ROOT.parent / "shared" / "benchmarks" / "nb201" / "hw-nas-bench-cifar10.csv"
DEVICES = ("edgegpu", "raspi4", "edgetpu", "pixel3", "eyeriss", "fpga")
CEILING_ROWS = 10_000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="HW-NAS-Bench's latencies of the NB201 cells")
    parser.add_argument("--rows", type=int, default=100, help="cells measured per fit (default 100)")
    parser.add_argument("--seeds", type=int, default=10, help="random samples per device (default 10)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hw_nas_bench_fit")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    space = Nb201Space()
    with args.csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    genotypes = [from_string(row["arch"]) for row in rows]
    irs = [space.lower(genotype) for genotype in genotypes]
    matrices = {name: _matrix([network_features(ir, name) for ir in irs]) for name in FEATURE_SETS}
    cost = _cost_features(rows)
    results: dict[str, Any] = {"rows": args.rows, "seeds": args.seeds, "devices": {}}
    for device in DEVICES:
        y = np.array([float(row[f"{device}_latency"]) for row in rows])
        measured = np.flatnonzero(y > 0)
        results["devices"][device] = _device(space, genotypes, matrices, cost, y, measured, args)
        print(f"{device}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    results["seconds"] = time.perf_counter() - started
    markdown = _markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(markdown)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(markdown)


def _device(
    space: Nb201Space,
    genotypes: list[Any],
    matrices: dict[str, tuple[list[str], np.ndarray]],
    cost: np.ndarray,
    y: np.ndarray,
    measured: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    forced: dict[str, list[float]] = collections.defaultdict(list)
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        sample = rng.choice(measured, args.rows, replace=False)
        rest = np.setdiff1d(measured, sample)
        model = fit(space, [genotypes[i] for i in sample], y[sample].tolist(), source=f"seed {seed}")
        predicted, refused = _predict(model, matrices[model.feature_set], rest)
        runs.append({"features": model.feature_set, "refused": refused, **_scores(predicted, y[rest])})
        for name, (_, x) in matrices.items():
            forced[name].append(_within(_fit_predict(x, y, sample, rest), y[rest]))
        used = matrices["used-ops"][1]
        for how in ("absolute", "relative", "log"):
            forced[f"used-ops, {how} least squares"].append(
                _within(_fit_predict(used, y, sample, rest, how=how), y[rest])
            )
        forced["MACs + params"].append(_within(_fit_predict(cost, y, sample, rest), y[rest]))
        edges = matrices["used-edges"][1]
        pairs = np.column_stack([edges, _pairs(edges)])
        forced["used-edges + pairs, ridge 10"].append(
            _within(_fit_predict(pairs, y, sample, rest, how="absolute", ridge=10.0, free=edges.shape[1]), y[rest])
        )
    summary = {
        key: (float(np.mean([run[key] for run in runs])), float(np.std([run[key] for run in runs])))
        for key in ("within_5", "within_10", "spearman")
    }
    chosen = collections.Counter(run["features"] for run in runs)
    favourite = max(chosen, key=chosen.__getitem__)
    return {
        "cells": int(len(measured)),
        "summary": summary,
        "chosen": dict(chosen.most_common()),
        "runs": runs,
        "forced_within_10": {name: float(np.mean(values)) for name, values in forced.items()},
        "ceiling": _ceiling(matrices, y, measured, favourite),
        "same_counts_within_10": _same_counts(matrices[favourite][1], y, measured),
    }


def _matrix(rows: list[dict[str, float]]) -> tuple[list[str], np.ndarray]:
    keys = sorted({key for row in rows for key in row})
    return keys, np.array([[row.get(key, 0.0) for key in keys] for row in rows])


def _predict(model: LatencyModel, matrix: tuple[list[str], np.ndarray], rest: np.ndarray) -> tuple[np.ndarray, int]:
    """The model's predictions of the cells ``rest`` from their precomputed counts (``predict_ir``'s sum),
    and how many of them ``predict_ir`` refuses (a feature the sample never varied; predicted anyway)."""
    keys, x = matrix
    columns = {key: j for j, key in enumerate(keys)}
    weights = np.zeros(len(keys))
    for key, weight in model.weights.items():
        weights[columns[key]] = weight
    refused = np.zeros(len(rest), dtype=bool)
    for key in set(keys) - set(model.weights):
        refused |= x[rest, columns[key]] != model.fixed.get(key, 0.0)
    return model.bias_ms + x[rest] @ weights, int(refused.sum())


def _design(x: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(x)), x])


def _fit_predict(
    x: np.ndarray,
    y: np.ndarray,
    sample: np.ndarray,
    rest: np.ndarray,
    *,
    how: str = "engine",
    ridge: float = 0.0,
    free: int = 0,
) -> np.ndarray:
    """A linear fit on ``sample`` predicting ``rest``: the engine's (``solve``: robust, relative errors),
    least squares of absolute or relative errors, or of log latency; ``ridge`` penalises the columns
    after the first ``free``."""
    design = _design(x)
    if how == "engine":
        return design[rest] @ solve(design[sample], y[sample])
    target = np.log(y[sample]) if how == "log" else y[sample]
    scale = 1 / y[sample] if how == "relative" else np.ones(len(sample))
    a, b = design[sample] * scale[:, None], target * scale
    if ridge:
        penalty = np.zeros(design.shape[1])
        penalty[1 + free :] = ridge
        weights = np.linalg.solve(a.T @ a + np.diag(penalty) + 1e-9 * np.eye(len(penalty)), a.T @ b)
    else:
        weights = np.linalg.lstsq(a, b, rcond=None)[0]
    predicted = design[rest] @ weights
    return np.exp(predicted) if how == "log" else predicted


def _pairs(x: np.ndarray) -> np.ndarray:
    return np.column_stack([x[:, i] * x[:, j] for i, j in itertools.combinations(range(x.shape[1]), 2)])


def _cost_features(rows: list[dict[str, str]]) -> np.ndarray:
    """MACs and parameters of each cell's network from the engine's cost table (``nas.cost``'s counts)."""
    with gzip.open(shipped_tables()["nb201-cifar10-cost"].open("rb"), "rt", newline="") as text:
        cost = {row["arch"]: (float(row["macs"]) / 1e6, float(row["params"]) / 1e6) for row in csv.DictReader(text)}
    return np.array([cost[row["arch"]] for row in rows])


def _scores(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    errors = np.abs(predicted / measured - 1)
    return {
        "within_5": float(np.mean(errors <= 0.05)),
        "within_10": float(np.mean(errors <= 0.10)),
        "spearman": float(spearmanr(predicted, measured).statistic),
        "median_error": float(np.median(errors)),
    }


def _within(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted / measured - 1) <= 0.10))


def _ceiling(
    matrices: dict[str, tuple[list[str], np.ndarray]], y: np.ndarray, measured: np.ndarray, name: str
) -> dict[str, Any]:
    """The feature set ``name`` fitted to ``CEILING_ROWS`` cells, judged on the rest: the model's own limit."""
    rng = np.random.default_rng(0)
    order = rng.permutation(measured)
    sample, rest = order[:CEILING_ROWS], order[CEILING_ROWS:]
    return {"features": name, **_scores(_fit_predict(matrices[name][1], y, sample, rest), y[rest])}


def _same_counts(x: np.ndarray, y: np.ndarray, measured: np.ndarray) -> float:
    """The fraction of cells within ±10% of the median of the other cells with the same counts: the
    limit of any model of these features (two such cells get one prediction), where groups exist."""
    members: dict[bytes, list[int]] = collections.defaultdict(list)
    for i in measured:
        members[x[i].tobytes()].append(int(i))
    hits = []
    for group in members.values():
        for i in group if len(group) > 1 else ():
            others = np.median([y[j] for j in group if j != i])
            hits.append(abs(others / y[i] - 1) <= 0.10)
    return float(np.mean(hits)) if hits else float("nan")


def _markdown(results: dict[str, Any]) -> str:
    devices = results["devices"]
    lines = [
        f"Fitted from {results['rows']} random cells, predicting all the others; mean ± standard deviation "
        f"over {results['seeds']} samples (seeds 0-{results['seeds'] - 1}).",
        "",
        "| device | cells | within ±5% | within ±10% | Spearman | feature set chosen (samples) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for device, entry in devices.items():
        summary = entry["summary"]
        chosen = ", ".join(f"{name} ({count})" for name, count in entry["chosen"].items())
        lines.append(
            f"| {device} | {entry['cells']:,} | {_pm(summary['within_5'])} | {_pm(summary['within_10'])} | "
            f"{summary['spearman'][0]:.3f} ± {summary['spearman'][1]:.3f} | {chosen} |"
        )
    names = list(next(iter(devices.values()))["forced_within_10"])
    lines += ["", "Within ±10%, every model forced (mean over the samples):", ""]
    lines += ["| model | " + " | ".join(devices) + " |", "|---|" + "---:|" * len(devices)]
    for name in names:
        cells = " | ".join(f"{100 * entry['forced_within_10'][name]:.1f}%" for entry in devices.values())
        lines.append(f"| {name} | {cells} |")
    lines += [
        "",
        f"Ceiling: the set chosen most often fitted to {CEILING_ROWS:,} cells and judged on the rest; and the cells "
        "within ±10% of the median of the other cells with the same counts (one prediction for all of them).",
        "",
        "| device | features | within ±10% | Spearman | same counts within ±10% |",
        "|---|---|---:|---:|---:|",
    ]
    for device, entry in devices.items():
        ceiling = entry["ceiling"]
        lines.append(
            f"| {device} | {ceiling['features']} | {100 * ceiling['within_10']:.1f}% | {ceiling['spearman']:.3f} | "
            f"{100 * entry['same_counts_within_10']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def _pm(pair: tuple[float, float]) -> str:
    return f"{100 * pair[0]:.1f}% ± {100 * pair[1]:.1f}"


if __name__ == "__main__":
    main()
