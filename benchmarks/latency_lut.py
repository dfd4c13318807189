"""How well the latency lookup table predicts whole networks on this machine (issue 10).

Draws ``--networks`` random genotypes of a space (default: 20 of ``mobilenetv3``, seeded), lowers
each at full size (``--resolution``, default 224; 1000 classes), predicts its latency as the sum
of the table's entries (measured into a fresh table file unless ``--table`` names one) and
measures the compiled network end to end with the same harness. Prints one line per network and
the distribution of |predicted - measured| / measured, with the thread count and the machine's
load before and after (another busy process moves every number here).

    .venv/bin/python benchmarks/latency_lut.py [--networks 20] [--space mobilenetv3] [--threads 1] [--json FILE]
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
    args = parser.parse_args()

    space = registry.spaces.get(args.space)
    table_path = Path(args.table) if args.table else Path(tempfile.mkdtemp()) / "latency.json"
    table = LatencyTable(table_path, threads=args.threads)
    rng = np.random.default_rng(args.seed)
    load_before = os.getloadavg()
    rows, build_seconds = [], 0.0
    for index in range(args.networks):
        genotype = space.decode(sample_choices(space.decisions(), rng))
        ir = space.lower(genotype, resolution=args.resolution)
        started = time.perf_counter()
        predicted = table.predict(ir).total_ms
        build_seconds += time.perf_counter() - started
        measured = measure_network(nas.compile(ir, seed=0), args.resolution, threads=args.threads)
        error = (predicted - measured.median_ms) / measured.median_ms
        rows.append({"network": index, "blocks": len(ir.named_blocks()), "predicted_ms": predicted,
                     "measured_ms": measured.median_ms, "measured_p10_ms": measured.p10_ms,
                     "measured_p90_ms": measured.p90_ms, "error": error})
        print(f"network {index:2d}: {len(ir.named_blocks()):2d} blocks, predicted {predicted:7.2f} ms, measured "
              f"{measured.median_ms:7.2f} ms (p10 {measured.p10_ms:.2f}, p90 {measured.p90_ms:.2f}), "
              f"error {100 * error:+.1f}%", flush=True)
    errors = sorted(abs(row["error"]) for row in rows)
    signed = [row["error"] for row in rows]
    summary = {
        "space": args.space, "networks": len(rows), "resolution": args.resolution, "threads": args.threads,
        "fingerprint": device_fingerprint("cpu", args.threads), "table_entries": len(table),
        "table_seconds": build_seconds, "load_before": load_before, "load_after": os.getloadavg(),
        "median_abs_error": statistics.median(errors), "max_abs_error": errors[-1],
        "p90_abs_error": float(np.quantile(errors, 0.9)), "mean_signed_error": statistics.fmean(signed),
        "within_10_percent": sum(e <= 0.10 for e in errors), "within_5_percent": sum(e <= 0.05 for e in errors),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "networks": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
