"""How well the latency lookup table predicts whole networks on this machine (issue 10).

Draws ``--networks`` random genotypes of a space (default: 20 of ``mobilenetv3``, seeded), lowers
each at full size (``--resolution``, default 224; 1000 classes) and, for each: measures the
compiled network end to end, predicts it from a table of its own parts measured right then (the
"same window": the sum-of-parts model alone), predicts it from one table shared by all networks
and built as they come (how a search uses it: entries measured minutes apart), and measures the
network again. The measured latency is the mean of the two end-to-end medians; their difference
is the machine's drift within the window. Prints one line per network and the distributions of
|predicted - measured| / measured, with the thread count and the machine's load before and after.

    .venv/bin/python benchmarks/latency_lut.py [--networks 20] [--space mobilenetv3] [--threads 1] [--json FILE]

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
import time
from pathlib import Path

import numpy as np

import nas
from evaluators.latency import device_fingerprint, measure_network
from evaluators.latency_table import LatencyTable
from nas import registry
from nas.space import sample_choices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="mobilenetv3")
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", help="lookup table file (default: a fresh one, measured here)")
    parser.add_argument("--json", help="write the per-network figures here")
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

    space = registry.spaces.get(args.space)
    table_path = Path(args.table) if args.table else Path(tempfile.mkdtemp()) / "latency.json"
    table = LatencyTable(table_path, threads=args.threads)
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()
    rows, build_seconds = [], 0.0
    for index in range(args.networks):
        genotype = space.decode(sample_choices(space.decisions(), rng))
        ir = space.lower(genotype, resolution=args.resolution)
        model = nas.compile(ir, seed=0)
        first = measure_network(model, args.resolution, threads=args.threads)
        window = LatencyTable(table_path.with_name(f"window-{index}.json"), threads=args.threads).predict(ir).total_ms
        started = time.perf_counter()
        predicted = table.predict(ir).total_ms
        build_seconds += time.perf_counter() - started
        second = measure_network(model, args.resolution, threads=args.threads)
        measured = (first.median_ms + second.median_ms) / 2
        row = {
            "network": index,
            "blocks": len(ir.named_blocks()),
            "predicted_ms": predicted,
            "window_ms": window,
            "measured_ms": measured,
            "measured_first_ms": first.median_ms,
            "measured_second_ms": second.median_ms,
            "measured_p10_ms": first.p10_ms,
            "measured_p90_ms": first.p90_ms,
            "error": (predicted - measured) / measured,
            "window_error": (window - measured) / measured,
            "drift": abs(first.median_ms - second.median_ms) / measured,
        }
        rows.append(row)
        print(
            f"network {index:2d}: {row['blocks']:2d} blocks, measured {first.median_ms:7.2f} / {second.median_ms:7.2f} "
            f"ms (p10 {first.p10_ms:.2f}, p90 {first.p90_ms:.2f}); same-window table {window:7.2f} ms "
            f"({100 * row['window_error']:+.1f}%), shared table {predicted:7.2f} ms ({100 * row['error']:+.1f}%)",
            flush=True,
        )
    summary = {
        "space": args.space,
        "networks": len(rows),
        "resolution": args.resolution,
        "threads": args.threads,
        "fingerprint": device_fingerprint("cpu", args.threads),
        "shared_table_entries": len(table),
        "shared_table_seconds": build_seconds,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "shared_table": _distribution([row["error"] for row in rows]),
        "same_window_table": _distribution([row["window_error"] for row in rows]),
        "drift_between_two_measurements": _distribution([row["drift"] for row in rows]),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "networks": rows}, indent=2) + "\n")


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
