"""How well the latency lookup table predicts whole networks on this machine (issues 10 and 27).

Two sets of networks at full size (``--resolution``, default 224; 1000 classes): ``--networks``
random genotypes of a space (default: 20 of ``mobilenetv3``, seeded) and NetAdapt-like pruned ones
(``--pruned`` per start, default 10: MobileNetV3-Small and -Large, each step shrinking one prunable
width of the one before to a smaller allowed width, as ``nas netadapt`` does, so each network shares
all but a block or two with the one before). For each network, interleaved (A/B/A): it is measured
end to end (A), predicted by two tables shared by all networks and built as they come, how a search or
NetAdapt uses them (B): the ``network`` method (parts timed inside the network that first lacked them,
the default) and the ``alone`` method (parts timed by themselves, the table before issue 27), and
measured again (A). The measured latency is the mean of the two end-to-end medians; their difference
is the machine's drift within the window, printed per network. A third estimate, ``alone`` calibrated,
scales the ``alone`` prediction by the ratio measured / predicted of the first network of its set (a
per-network calibration from one end-to-end measurement). Prints one line per network and, per set and
estimate, the distribution of (predicted - measured) / measured: median and p90 of its absolute value,
max, signed mean, within 5% and 10%, with the thread count and the machine's load before and after.

    .venv/bin/python benchmarks/latency_lut.py [--networks 20] [--pruned 10] [--threads 1] [--json FILE]

``--netadapt RUN [RUN ...]``: for each finished ``nas netadapt`` run directory, its start and its result
measured end to end in turn, three times each (A/B/A/B/A/B, a fresh compile each time, the run's
resolution and classes): the result's latency against the run's target and against the start's, by a
measurement independent of the run's.

For devices that are not here: ``--hw-nas-bench [--rows 100] [--seeds 10]`` fits the latency model of
``nas latency --fit`` to a few NAS-Bench-201 cells of each HW-NAS-Bench device and predicts the rest
(``benchmarks/hw_nas_bench_fit.py``, which it runs with the flags that follow).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import nas
from evaluators.latency import device_fingerprint, measure_network
from evaluators.latency_table import LatencyTable
from nas import registry
from nas.space import sample_choices
from nas.spaces.widths import WidthSpace

# Estimate -> (the prediction's field, the measured figure it is compared with).
ESTIMATES = {
    "network": ("network_ms", "measured_ms"),
    "alone": ("alone_ms", "measured_ms"),
    "alone_calibrated": ("alone_calibrated_ms", "measured_ms"),
    "network_parent_calibrated": ("network_parent_ms", "measured_ms"),
    "alone_parent_calibrated": ("alone_parent_ms", "measured_ms"),
    "network_p10": ("network_p10_ms", "measured_p10_ms"),
    "alone_p10": ("alone_p10_ms", "measured_p10_ms"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv3")
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--pruned", type=int, default=10, help="pruned networks per start (0: none)")
    parser.add_argument("--starts", nargs="*", default=["mobilenetv3-small", "mobilenetv3-large"])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", help="lookup table file (default: a fresh one, measured here)")
    parser.add_argument("--json", help="write the per-network figures here")
    parser.add_argument("--netadapt", nargs="+", metavar="RUN", help="measure nas netadapt runs' results (A/B/A)")
    parser.add_argument(
        "--hw-nas-bench", action="store_true", help="fit-and-predict per HW-NAS-Bench device (hw_nas_bench_fit.py)"
    )
    args, rest = parser.parse_known_args()
    if args.hw_nas_bench:
        from hw_nas_bench_fit import main as fit_and_predict  # the script's folder is on sys.path

        fit_and_predict(rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.netadapt:
        for run in args.netadapt:
            print(json.dumps(_netadapt(Path(run), args.threads), indent=2))
        return

    table_path = Path(args.table) if args.table else Path(tempfile.mkdtemp()) / "latency.json"
    tables = {method: LatencyTable(table_path, threads=args.threads, method=method) for method in ("network", "alone")}
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for name, networks in _network_sets(args):
        calibration, parent = None, None
        for index, ir in enumerate(networks):
            row = _interleaved(tables, ir, args.resolution, args.threads)
            calibration = calibration or row["measured_ms"] / row["alone_ms"]  # the set's first network
            row.update(set=name, network=index, alone_calibrated_ms=row["alone_ms"] * calibration)
            if parent is not None and name.startswith("pruned"):  # NetAdapt's rule: the parent's measured / predicted
                for method in ("network", "alone"):
                    ratio = parent["measured_ms"] / parent[f"{method}_ms"]
                    row[f"{method}_parent_ms"] = row[f"{method}_ms"] * ratio
            for estimate, (field, measured) in ESTIMATES.items():
                if field in row:
                    row[f"{estimate}_error"] = (row[field] - row[measured]) / row[measured]
            rows.append(row)
            parent = row
            print(
                f"{name} {index:2d}: {row['blocks']:2d} blocks, measured {row['measured_first_ms']:7.2f} / "
                f"{row['measured_second_ms']:7.2f} ms (drift {100 * row['drift']:4.1f}%); network table "
                f"{row['network_ms']:7.2f} ({100 * row['network_error']:+5.1f}%, {row['network_new']} new; p10 "
                f"{100 * row['network_p10_error']:+5.1f}%), alone {row['alone_ms']:7.2f} "
                f"({100 * row['alone_error']:+5.1f}%; p10 {100 * row['alone_p10_error']:+5.1f}%)",
                flush=True,
            )
    summary: dict[str, Any] = {
        "space": args.space,
        "resolution": args.resolution,
        "threads": args.threads,
        "fingerprint": device_fingerprint("cpu", args.threads),
        "table_entries": {method: len(table) for method, table in tables.items()},
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    for name in dict.fromkeys(row["set"] for row in rows):
        chosen = [row for row in rows if row["set"] == name]
        summary[name] = {
            "networks": len(chosen),
            **{
                estimate: _distribution([row[f"{estimate}_error"] for row in chosen if f"{estimate}_error" in row])
                for estimate in ESTIMATES
                if any(f"{estimate}_error" in row for row in chosen)
            },
            "drift_between_A_and_A": _distribution([row["drift"] for row in chosen]),
            "drift_of_the_p10": _distribution([row["drift_p10"] for row in chosen]),
        }
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "networks": rows}, indent=2) + "\n")


def _network_sets(args: argparse.Namespace) -> list[tuple[str, list[Any]]]:
    """``random``: ``--networks`` seeded genotypes of ``--space``; ``pruned-START``: the pruning chains."""
    space = registry.spaces.get(args.space)
    rng = np.random.default_rng(args.seed)
    random = [
        space.lower(space.decode(sample_choices(space.decisions(), rng)), resolution=args.resolution)
        for _ in range(args.networks)
    ]
    sets = [("random", random)] if random else []
    for start in args.starts if args.pruned else []:
        resolved = nas.resolve(start)
        widths = WidthSpace(resolved.space, resolved.genotype)
        choices, chain = dict(widths.start_widths), [resolved.genotype]
        while len(chain) <= args.pruned:
            name = str(rng.choice(sorted(choices)))
            smaller = [
                width
                for width in next(d for d in widths.decisions() if d.name == name).choices
                if width < choices[name]
            ]
            if not smaller:
                continue
            candidate = {**choices, name: int(rng.choice(smaller[len(smaller) // 2 :]))}  # a NetAdapt-sized step
            try:
                chain.append(widths.decode(candidate))
            except ValueError:  # would change the structure: NetAdapt makes no such proposal
                continue
            choices = candidate
        sets.append((f"pruned-{start}", [resolved.space.lower(g, resolution=args.resolution) for g in chain]))
    return sets


def _interleaved(tables: dict[str, LatencyTable], ir: Any, resolution: int, threads: int) -> dict[str, Any]:
    """A (end to end), B (each table's prediction, measuring what it lacks), A again."""
    model = nas.compile(ir, seed=0)
    first = measure_network(model, resolution, threads=threads)
    row: dict[str, Any] = {"blocks": len(ir.all_blocks())}
    for method, table in tables.items():
        before = table.measured
        prediction = table.predict(ir)
        row.update({f"{method}_ms": prediction.total_ms, f"{method}_p10_ms": prediction.p10_ms})
        row[f"{method}_new"] = table.measured - before
    second = measure_network(model, resolution, threads=threads)
    measured, measured_p10 = (first.median_ms + second.median_ms) / 2, (first.p10_ms + second.p10_ms) / 2
    return {
        **row,
        "measured_ms": measured,
        "measured_p10_ms": measured_p10,
        "measured_first_ms": first.median_ms,
        "measured_second_ms": second.median_ms,
        "measured_first_p10_ms": first.p10_ms,
        "measured_second_p10_ms": second.p10_ms,
        "drift": (second.median_ms - first.median_ms) / measured,
        "drift_p10": (second.p10_ms - first.p10_ms) / measured_p10,
    }


def _netadapt(run: Path, threads: int, repeats: int = 3) -> dict[str, Any]:
    """A finished NetAdapt run's start and result, measured in turn ``repeats`` times each."""
    document = json.loads((run / "netadapt.json").read_text())
    start = nas.resolve(document["start"]["genotype"])
    final = nas.resolve(document["final"]["genotype"])
    macro = {"resolution": document["resolution"], "num_classes": document["num_classes"]}
    irs = {"start": start.space.lower(start.genotype, **macro), "final": final.space.lower(final.genotype, **macro)}
    times: dict[str, list[Any]] = {"start": [], "final": []}
    for _ in range(repeats):
        for name, ir in irs.items():
            times[name].append(measure_network(nas.compile(ir, seed=0), ir.resolution, threads=threads))
    median = {name: statistics.median(t.median_ms for t in runs) for name, runs in times.items()}
    p10 = {name: statistics.median(t.p10_ms for t in runs) for name, runs in times.items()}
    target = document["target_ms"]
    return {
        "run": str(run),
        "status": document["status"],
        "latency_source": document.get("latency_source", "table"),
        "target_ms": target,
        "target_ratio": document["settings"].get("latency_ratio"),
        "start_ms": [t.median_ms for t in times["start"]],
        "final_ms": [t.median_ms for t in times["final"]],
        "final_over_start": median["final"] / median["start"],
        "final_over_start_p10": p10["final"] / p10["start"],
        "final_off_target": median["final"] / target - 1,
        "run_measured_final_off_target": document["final"].get("measured_off_target"),
        "load": os.getloadavg(),
    }


def _distribution(signed: list[float]) -> dict[str, float]:
    errors = sorted(abs(value) for value in signed)
    return {
        "median_abs": statistics.median(errors),
        "p90_abs": float(np.quantile(errors, 0.9)),
        "max_abs": errors[-1],
        "mean_signed": statistics.fmean(signed),
        "within_10_percent": sum(e <= 0.10 for e in errors),
        "within_5_percent": sum(e <= 0.05 for e in errors),
    }


if __name__ == "__main__":
    main()
