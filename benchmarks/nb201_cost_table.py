"""Write the MACs and parameters of every NAS-Bench-201 network: ``evaluators/tables/nb201-cifar10-cost.csv.gz``.

    python benchmarks/nb201_cost_table.py [--check 64] [--exhaustive] [--out FILE]

The tabular evaluator's simulated cost (``simulated_cost``, GMAC-epochs) needs the MACs of each
cell's benchmark network (``nb201`` lowered at full size: C = 16, N = 5, 32 px, 10 classes).
Counting one network with ``nas.cost`` takes about 0.4 s here, so a search would spend most of
its time counting; this script counts them once and the evaluator reads the column.

Every edge of the network is built (a dead one too) and every edge reads and writes a tensor of its
stage's shape, so a network's MACs (and parameters) are those of the network whose six edges are all
``none`` plus, for each edge, what its op adds over ``none`` in a uniform network, divided by 6.
The five uniform networks are counted with ``nas.cost.count_macs`` / ``count_params``; every cell's
figures are then sums, and ``--check K`` (default 64) counts ``K`` random cells (seed 0) in full and
stops if any differs. ``--exhaustive`` counts all 15,625 in full instead (about 1.5 hours on one
core). The parameter counts are compared with NASLib's independent ``params`` column (millions, in
``zero-cost-cifar10-naslib``) for the cells it has.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
import sys
import time
from pathlib import Path

import torch

from evaluators.tabular_options import shipped_tables
from nas.compile import compile as compile_ir
from nas.cost import build_on_meta, count_macs, count_params
from search_spaces.nb201 import OPS, Nb201Genotype, Nb201Space

OUT = Path(__file__).resolve().parent.parent / "evaluators" / "tables" / "nb201-cifar10-cost.csv.gz"
NUM_CLASSES = 10


def count(space: Nb201Space, genotype: Nb201Genotype) -> tuple[int, int]:
    """MACs of one 32 px image and trainable parameters of the full-size network, by ``nas.cost``."""
    ir = space.lower(genotype, num_classes=NUM_CLASSES)
    meta = build_on_meta(lambda: compile_ir(ir))
    return int(count_macs(meta, ir.resolution)), count_params(meta)  # type: ignore[arg-type]


def uniform(op: str) -> Nb201Genotype:
    return Nb201Genotype((op,), (op, op), (op, op, op))  # type: ignore[arg-type]


def read_table(name: str) -> list[dict[str, str]]:
    with gzip.open(shipped_tables()[name].open("rb"), "rt", newline="") as text:
        return list(csv.DictReader(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", type=int, default=64, help="random cells counted in full to check the sums")
    parser.add_argument("--exhaustive", action="store_true", help="count every cell in full")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = Nb201Space()
    archs = [row["arch"] for row in read_table("nb201-cifar10")]
    began = time.perf_counter()
    base_macs, base_params = count(space, uniform("none"))
    per_edge: dict[str, tuple[int, int]] = {}
    for op in OPS:
        macs, params = count(space, uniform(op))
        extra_macs, extra_params = macs - base_macs, params - base_params
        if extra_macs % 6 or extra_params % 6:
            sys.exit(f"{op}: the uniform network adds {extra_macs} MACs, {extra_params} params: not 6 equal edges")
        per_edge[op] = (extra_macs // 6, extra_params // 6)
    print(f"per edge over 'none' (MACs, params): {per_edge}; base {base_macs}, {base_params}")

    def summed(genotype: Nb201Genotype) -> tuple[int, int]:
        return (
            base_macs + sum(per_edge[op][0] for op in genotype.edges),
            base_params + sum(per_edge[op][1] for op in genotype.edges),
        )

    rows = []
    for arch in archs:
        genotype = space.from_string(arch)
        rows.append((arch, *(count(space, genotype) if args.exhaustive else summed(genotype))))
    checked = archs if args.exhaustive else random.Random(0).sample(archs, min(args.check, len(archs)))
    for arch in checked:
        full, total = count(space, space.from_string(arch)), summed(space.from_string(arch))
        if full != total:
            sys.exit(f"{arch}: counted {full}, summed {total}: the edges' costs do not add up")
    print(f"{len(checked)} cells counted in full equal the sums; {time.perf_counter() - began:.0f} s")

    naslib = {row["arch"]: float(row["params"]) for row in read_table("zero-cost-cifar10-naslib")}
    params = {arch: p for arch, _, p in rows}
    equal = sum(abs(params[arch] / 1e6 - value) < 5e-7 for arch, value in naslib.items())
    print(f"parameters equal NASLib's (to its 6 decimals) for {equal:,} of its {len(naslib):,} cells")

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["arch", "macs", "params"])
    writer.writerows(rows)
    args.out.write_bytes(gzip.compress(text.getvalue().encode(), compresslevel=9, mtime=0))
    macs = [m for _, m, _ in rows]
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size:,} bytes): {len(rows):,} cells, MACs {min(macs):,} to {max(macs):,}")


if __name__ == "__main__":
    main()
