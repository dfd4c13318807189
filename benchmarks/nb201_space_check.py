"""The ``nb201`` space against NAS-Bench-201's own tables: notation, isomorphism classes, parameter counts.

Over all 15,625 cells of ``nb201-cifar10.csv`` (the benchmark's rows, arXiv 2001.00326):

* notation: ``from_string`` reads every ``arch`` and ``to_string`` writes it back unchanged;
* canonical form: our ``canonical`` against the table's ``isomorphism_class`` column: equal strings,
  the number of classes (6,466 published) and whether the two partitions of the cells are the same;
* parameters: our compiled network (C = 16, N = 5, 10 classes; every parameter, BN affine and the
  classifier included) for every cell, against an independent count from the reference's layer
  shapes (``TinyNetwork``: ReLU-conv-BN, the residual block, ``lastact``, the classifier) and
  against NASLib's ``params`` column of ``zero-cost-cifar10-naslib.csv`` (9,445 cells, millions
  with 6 decimals: equal means our count / 1e6 rounds to it);
* one forward pass of the best cell's full network on a 1x3x32x32 input;
* the cost of the per-trial calls (``to_string``, ``from_string``, ``canonical``, ``decode``) in µs.

Each network is counted as the compiled module's parts: the stem, head and classifier once (the
same IR for every cell), and every edge of every placed cell as ``nas.compile.Cell`` builds it
(``build_op`` on the meta device, memoised by op and shape: compiling 15,625 whole networks takes
10 minutes here). The sum is checked against whole networks compiled on the meta device for a
random sample of cells (``--whole``).

    python benchmarks/nb201_space_check.py                       # about 20 s on one core
    python benchmarks/nb201_space_check.py --data ../shared/benchmarks/nb201 --whole 500
"""

from __future__ import annotations

import argparse
import csv
import functools
import time
import timeit
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from nas.cell_ir import CellNet, CellSpec
from nas.compile import compile as compile_ir
from nas.cost import build_on_meta, count_params
from nas.ops import build_op
from nas.space import sample_choices
from search_spaces.nb201 import Nb201Genotype, Nb201Space, _from_string, canonical, from_string

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nb201"
SPACE = Nb201Space()


def reference_params(genotype: Nb201Genotype, C: int = 16, N: int = 5, num_classes: int = 10) -> int:
    """The reference network's parameters from its layer shapes (AutoDL-Projects ``TinyNetwork``)."""

    def relu_conv_bn(c_in: int, c_out: int, k: int) -> int:
        return c_in * c_out * k * k + 2 * c_out  # conv without bias, BN weight and bias

    edge = {"nor_conv_3x3": lambda c: relu_conv_bn(c, c, 3), "nor_conv_1x1": lambda c: relu_conv_bn(c, c, 1)}
    total = 3 * C * 9 + 2 * C  # stem: 3x3 conv, BN
    for stage, width in enumerate((C, 2 * C, 4 * C)):
        if stage:  # ResNetBasicblock(width / 2, width, 2): conv_a, conv_b, avg-pool + 1x1 conv shortcut
            total += relu_conv_bn(width // 2, width, 3) + relu_conv_bn(width, width, 3) + width // 2 * width
        total += N * sum(edge[op](width) for op in genotype.edges if op in edge)
    return total + 2 * 4 * C + 4 * C * num_classes + num_classes  # lastact BN, classifier


class CompiledCounter:
    """Parameters of the compiled network of an IR, part by part (see the module docstring)."""

    def __init__(self, first: CellNet) -> None:
        self.first = first
        whole = build_on_meta(functools.partial(compile_ir, first))
        self.fixed = count_params(whole) - count_params(whole.cells)  # stem, head, classifier
        self.norm = {"bn_eps": first.bn_eps, "bn_momentum": first.bn_momentum}

    @functools.cache  # noqa: B019  (one counter per run; edges are few and hashable)
    def edge(self, op: str, in_channels: int, out_channels: int, stride: int, options: tuple[object, ...]) -> int:
        return count_params(
            build_on_meta(lambda: build_op(op, in_channels, out_channels, stride, dict(options), **self.norm))
        )

    def cell(self, spec: CellSpec) -> int:
        """What ``nas.compile.Cell`` builds: one module per edge (inputs and output need none here)."""
        if any(i.preprocess is not None for i in spec.inputs) or any(m is not None for m in spec.output_match):
            raise AssertionError("a cell with preprocessing or output matching: count it whole")
        channels = spec.state_channels()
        return sum(
            self.edge(edge.op, channels[edge.source], spec.filters, spec.edge_stride(edge.source), edge.options)
            for _, edge in spec.graph.edges()
        )

    def __call__(self, ir: CellNet) -> int:
        for part in ("stem", "head", "classifier", "resolution", "bn_eps", "bn_momentum"):
            if getattr(ir, part) != getattr(self.first, part):
                raise AssertionError(f"{part} differs between cells: the fixed count would not hold")
        return self.fixed + sum(self.cell(spec) for spec in ir.cells)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def check_notation_and_classes(rows: list[dict[str, str]]) -> list[Nb201Genotype]:
    genotypes = [from_string(row["arch"]) for row in rows]
    round_trips = sum(SPACE.to_string(g) == row["arch"] for g, row in zip(genotypes, rows))
    distinct = len(set(genotypes))
    print(f"notation: {len(rows):,} rows, {distinct:,} distinct genotypes, {round_trips:,} written back unchanged")
    ours = [canonical(g) for g in genotypes]
    theirs = [row["isomorphism_class"] for row in rows]
    equal = sum(a == b for a, b in zip(ours, theirs))
    forward: dict[str, set[str]] = defaultdict(set)
    backward: dict[str, set[str]] = defaultdict(set)
    for a, b in zip(ours, theirs):
        forward[a].add(b)
        backward[b].add(a)
    same = all(len(v) == 1 for v in forward.values()) and all(len(v) == 1 for v in backward.values())
    print(
        f"canonical: {len(set(ours)):,} classes (table: {len(set(theirs)):,}); strings equal for {equal:,} of "
        f"{len(rows):,} cells; same partition: {same}"
    )
    return genotypes


def check_params(genotypes: list[Nb201Genotype], naslib: list[dict[str, str]], whole: int) -> None:
    start = time.perf_counter()
    counter = CompiledCounter(SPACE.lower(genotypes[0]))
    ours = {g: counter(SPACE.lower(g)) for g in genotypes}
    seconds = time.perf_counter() - start
    formula = sum(ours[g] == reference_params(g) for g in genotypes)
    print(
        f"params: {len(ours):,} cells counted in {seconds:.0f} s ({min(ours.values()):,} to {max(ours.values()):,}); "
        f"equal to the reference's layer shapes for {formula:,}"
    )
    rng = np.random.default_rng(0)
    sample = [genotypes[int(i)] for i in rng.choice(len(genotypes), size=min(whole, len(genotypes)), replace=False)]
    agree = sum(count_params(build_on_meta(functools.partial(compile_ir, SPACE.lower(g)))) == ours[g] for g in sample)
    print(f"params: whole compiled networks equal the part-by-part count for {agree} of {len(sample)} sampled cells")
    compared = equal = 0
    worst = 0.0
    for row in naslib:
        genotype = from_string(row["arch"])
        compared += 1
        equal += round(ours[genotype] / 1e6, 6) == float(row["params"])
        worst = max(worst, abs(ours[genotype] / 1e6 - float(row["params"])))
    difference = f"largest difference {worst * 1e6:.0f} parameters"
    print(f"params vs NASLib: {compared:,} cells compared, {equal:,} equal ({difference})")


def check_forward() -> None:
    torch.manual_seed(0)
    genotype = SPACE.presets()["nb201-best"]
    model = compile_ir(SPACE.lower(genotype), seed=0).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 32, 32))
    print(
        f"forward: nb201-best {SPACE.to_string(genotype)}: logits {tuple(logits.shape)}, "
        f"finite {bool(torch.isfinite(logits).all())}, {count_params(model):,} parameters"
    )


def check_speed(genotypes: list[Nb201Genotype]) -> None:
    rng = np.random.default_rng(1)
    choices = [sample_choices(SPACE.decisions(), rng) for _ in range(1000)]
    strings = [SPACE.to_string(g) for g in genotypes[:1000]]
    calls = {
        "to_string": lambda: [SPACE.to_string(g) for g in genotypes[:1000]],
        "from_string (cached)": lambda: [SPACE.from_string(s) for s in strings],
        "from_string (uncached)": lambda: [_from_string.__wrapped__(s) for s in strings],
        "canonical (cached)": lambda: [SPACE.canonical(g) for g in genotypes[:1000]],
        "canonical (uncached)": lambda: [canonical.__wrapped__(g) for g in genotypes[:1000]],
        "decode": lambda: [SPACE.decode(c) for c in choices],
        "encode": lambda: [SPACE.encode(g) for g in genotypes[:1000]],
    }
    for name, call in calls.items():
        seconds = min(timeit.repeat(call, number=1, repeat=5)) / 1000
        print(f"speed: {name}: {seconds * 1e6:.1f} µs per call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of nb201-cifar10.csv")
    parser.add_argument("--whole", type=int, default=300, help="random cells whose whole network is compiled too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = read_rows(args.data / "nb201-cifar10.csv")
    genotypes = check_notation_and_classes(rows)
    best = max(rows, key=lambda row: float(row["test_200ep"]))
    preset = SPACE.to_string(SPACE.presets()["nb201-best"])
    tied = [row["index"] for row in rows if row["test_200ep"] == best["test_200ep"]]
    validation = max(rows, key=lambda row: float(row["valid_200ep"]))
    print(
        f"optimum: test {best['test_200ep']} at indices {', '.join(tied)}; validation {validation['valid_200ep']} at "
        f"{validation['index']}; nb201-best is index {next(r['index'] for r in rows if r['arch'] == preset)}"
    )
    check_params(genotypes, read_rows(args.data / "zero-cost-cifar10-naslib.csv"), args.whole)
    check_forward()
    check_speed(genotypes)


if __name__ == "__main__":
    main()
