"""``nb201``: NAS-Bench-201's cell space on its benchmark network (Dong & Yang, arXiv 2001.00326 §2.1).

The cell is a DAG of 4 nodes: node 0 is the cell's input, node j (1..3) sums one edge from every
node i < j, and node 3 is the cell's output. Each of the 6 edges is one of ``OPS`` (the benchmark's
order): 5^6 = 15,625 cells, the rows of the benchmark's tables.

- Notation (``nas.space.Notated``): the benchmark's own string, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``
  (node 1's edge; node 2's from nodes 0, 1; node 3's from nodes 0, 1, 2), as its ``Structure.tostr``.
- Canonical form (``nas.space.Canonical``): the benchmark's isomorphism string (NATS-Bench,
  arXiv 2009.00437; ``Structure.to_unique_str(consider_zero=True)`` of its code). Every node is
  written as the sorted sum of its edges' terms: ``#`` for a ``none`` edge or an edge reading a node
  that is ``#`` (zero in, zero out), the source's own string for ``skip_connect``, ``(source)@op``
  otherwise; the output node's string is the class. So the order of a node's summed inputs does
  not matter, an identity edge is no layer, and a node whose only input is cut off computes
  nothing; a zero summand is kept (``#+0`` is not ``0``), as in the benchmark, whose 6,466 classes
  this reproduces string for string (``benchmarks/nb201_space_check.py``).
- Network (``lower``): the benchmark's ``TinyNetwork``: a 3x3 conv (no bias) + BN stem to C, three
  stages of N cells at C, 2C, 4C with a residual block (``resnet_basic_block``, stride 2) between
  them, BN-ReLU, global average pooling, a linear classifier; PyTorch's BatchNorm settings (eps
  1e-5, momentum 0.1, affine, running statistics). Its ops are the engine's: ``nor_conv_kxk`` is
  ReLU-conv-BN (``conv_1x1``/``conv_3x3``), ``avg_pool_3x3`` the pool alone (the width never
  changes inside a cell), ``skip_connect`` ``identity``, ``none`` ``zero``. Every edge is built, a
  dead one too, so the parameters are the reference's (C = 16, N = 5: 0.07M to 1.53M).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

from nas.cell_ir import CellEdge, CellGraph, CellInput, CellNet, CellNode, CellSpec
from nas.ir import BlockSpec, ClassifierSpec, conv_output_size
from nas.space import Decision, check_choices
from nas.space_base import RESOLUTION, Bound, SpaceBase

Nb201Op = Literal["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
OPS: tuple[str, ...] = get_args(Nb201Op)  # the benchmark's ``NAS_BENCH_201`` list, in its order
NUM_NODES = 3  # nodes after the input
# The engine op that builds each benchmark op (``nas.cell_ops``; module for module the reference's).
ENGINE_OPS: Mapping[str, str] = MappingProxyType(
    {
        "none": "zero",
        "skip_connect": "identity",
        "nor_conv_1x1": "conv_1x1",
        "nor_conv_3x3": "conv_3x3",
        "avg_pool_3x3": "avg_pool_3x3",
    }
)
DEFAULT_RESOLUTION = 32  # CIFAR-10, the benchmark's input; a proxy evaluator passes its data's size
# ``lower``'s widths and depths: the benchmark's C = 16, N = 5 with room around them (NATS-Bench's
# size space goes from 8 to 64 channels); more would only make a slow network, not a new one.
BOUNDS: Mapping[str, Bound] = MappingProxyType({"C": Bound(1, 256), "N": Bound(1, 16), "resolution": RESOLUTION})
# The reduction between stages: one edge, the benchmark's residual block (``nas.cell_ops.ResNetBasicBlock``).
REDUCTION_GRAPH = CellGraph(1, (CellNode((CellEdge(0, "resnet_basic_block"),)),), output=(1,), output_combine="add")
FORM = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
MAX_TEXT = 1000  # the longest architecture string has 95 characters; a longer text is not one


@dataclass(frozen=True)
class Nb201Genotype:
    """The op of every edge, node by node: ``node{j}[i]`` is the op of node j's edge from node i
    (node 0 is the cell's input). Its JSON: ``{"node1": [op], "node2": [op, op], "node3": [op, op, op]}``."""

    node1: tuple[Nb201Op]
    node2: tuple[Nb201Op, Nb201Op]
    node3: tuple[Nb201Op, Nb201Op, Nb201Op]

    def __post_init__(self) -> None:
        for j, ops in enumerate(self.nodes, start=1):
            if not isinstance(ops, tuple) or len(ops) != j:
                raise ValueError(f"node{j}: expected a tuple of {j} op name(s), got {ops!r}")
            for i, op in enumerate(ops):
                if op not in OPS:
                    raise ValueError(f"node{j}[{i}]: {op!r} is not an op; valid: {list(OPS)}")

    @property
    def nodes(self) -> tuple[tuple[str, ...], ...]:
        return (self.node1, self.node2, self.node3)

    @property
    def edges(self) -> tuple[str, ...]:
        """The 6 ops in the benchmark's order: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2."""
        return self.node1 + self.node2 + self.node3

    @property
    def resolution(self) -> int:
        """The benchmark's input size (CIFAR's 32 px); the cell itself has none."""
        return DEFAULT_RESOLUTION


def decision_name(node: int, source: int) -> str:
    """``node2.from_node1``: the op of node ``node``'s edge from node ``source`` (0: the cell's input)."""
    return f"node{node}.from_node{source}"


DECISIONS: tuple[Decision, ...] = tuple(
    Decision(decision_name(j, i), OPS) for j in range(1, NUM_NODES + 1) for i in range(j)
)


def to_string(genotype: Nb201Genotype) -> str:
    """The benchmark's notation of ``genotype``."""
    return "+".join("|" + "|".join(f"{op}~{i}" for i, op in enumerate(ops)) + "|" for ops in genotype.nodes)


def from_string(text: str) -> Nb201Genotype:
    """The genotype the benchmark's string names; ``ValueError`` saying what is wrong with it."""
    if not isinstance(text, str):
        raise ValueError(f"expected an architecture string, got {type(text).__name__}")
    return _from_string(text)


@functools.lru_cache(maxsize=2**16)  # every cell of the space fits: a controller's repeats cost a lookup
def _from_string(text: str) -> Nb201Genotype:
    if len(text) > MAX_TEXT:
        raise ValueError(f"{len(text)} characters, longer than any string of the form {FORM}")
    parts = text.strip().split("+")
    if len(parts) != NUM_NODES:
        raise ValueError(f"expected {NUM_NODES} nodes joined by '+' ({FORM}), got {len(parts)}")
    nodes = []
    for j, part in enumerate(parts, start=1):
        if len(part) < 2 or part[0] != "|" or part[-1] != "|":
            raise ValueError(f"node {j}: expected '|op~0|...|' between '+', got {_short(part)}")
        entries = part[1:-1].split("|")
        if len(entries) != j:
            raise ValueError(f"node {j}: expected {j} edge(s) 'op~i' (from nodes 0..{j - 1}), got {len(entries)}")
        ops = []
        for i, entry in enumerate(entries):
            op, tilde, source = entry.partition("~")
            if not tilde or source != str(i):
                raise ValueError(f"node {j}: edge {i} must read node {i} ('op~{i}'), got {_short(entry)}")
            if op not in OPS:
                raise ValueError(f"node {j}, edge from node {i}: {_short(op)} is not an op; valid: {list(OPS)}")
            ops.append(op)
        nodes.append(tuple(ops))
    return Nb201Genotype(*nodes)  # type: ignore[arg-type]  # lengths and ops checked above


def _short(text: str, limit: int = 60) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


@functools.lru_cache(maxsize=2**16)
def canonical(genotype: Nb201Genotype) -> str:
    """The benchmark's isomorphism string of ``genotype`` (see the module docstring)."""
    nodes = ["0"]
    for ops in genotype.nodes:
        terms = []
        for source, op in enumerate(ops):
            state = nodes[source]
            terms.append("#" if op == "none" or state == "#" else state if op == "skip_connect" else f"({state})@{op}")
        nodes.append("+".join(sorted(terms)))
    return nodes[-1]


def cell_graph(genotype: Nb201Genotype) -> CellGraph:
    """The cell as the engine's general cell DAG: 1 input, 3 "add" nodes, the last one the output."""
    nodes = tuple(
        CellNode(tuple(CellEdge(source, ENGINE_OPS[op]) for source, op in enumerate(ops)), combine="add")
        for ops in genotype.nodes
    )
    return CellGraph(num_inputs=1, nodes=nodes, output=(NUM_NODES,), output_combine="add")


# Indices and accuracies: the benchmark's CIFAR-10 table (200 epochs, seed-averaged).
PRESETS: Mapping[str, Nb201Genotype] = MappingProxyType(
    {
        # Index 6111: the best validation accuracy (91.61) and the best test accuracy (94.37, tied with 13714).
        "nb201-best": from_string(
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
        ),
        # Index 11472: the benchmark's ResNet cell (two 3x3 convs and a skip; ``ResNet_CODE``), test 93.91.
        "nb201-resnet": from_string("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"),
    }
)


class Nb201Space(SpaceBase[Nb201Genotype]):
    """The op of each of the cell's 6 edges (``mutate``: one edge, ``genotype_from_dict``: typed, from
    ``SpaceBase``); the benchmark's notation and isomorphism classes (``to_string``, ``canonical``)."""

    name = "nb201"
    genotype_class = Nb201Genotype
    # The proxy keeps every decision (one cell per stage still holds all 6 edges at all three widths)
    # and shrinks what repeats: N = 1 instead of 5 cells per stage and half the width (C = 8), 10 to 16
    # times fewer MACs at 32 px, and half CIFAR's resolution (16 px: 4 times fewer again, the size of
    # NB201's own ImageNet16-120). Measured on CIFAR-10 against the 200-epoch truth of 60 cells
    # (benchmarks/nb201_fidelity.py): 10 epochs at 16 px rank at Spearman 0.87 by the training loss
    # in 18 CPU s where 4 epochs at 32 px rank at 0.49 in 32 s.
    proxy_reduction: Mapping[str, Any] = MappingProxyType({"C": 8, "N": 1, "resolution": 16})

    def decisions(self) -> list[Decision]:
        return list(DECISIONS)

    def decode(self, choices: Mapping[str, Any]) -> Nb201Genotype:
        check_choices(DECISIONS, choices)
        return Nb201Genotype(  # type: ignore[arg-type]  # ops checked against the decisions
            *(tuple(choices[decision_name(j, i)] for i in range(j)) for j in range(1, NUM_NODES + 1))
        )

    def encode(self, genotype: Nb201Genotype) -> dict[str, Any]:
        if not isinstance(genotype, Nb201Genotype):
            raise ValueError(f"expected an Nb201Genotype, got {type(genotype).__name__}")
        return {decision_name(j, i): op for j, ops in enumerate(genotype.nodes, start=1) for i, op in enumerate(ops)}

    def to_string(self, genotype: Nb201Genotype) -> str:
        """The benchmark's notation, ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
        return to_string(genotype)

    def from_string(self, text: str) -> Nb201Genotype:
        """The genotype a benchmark string names; ``ValueError`` saying what is wrong."""
        return from_string(text)

    def canonical(self, genotype: Nb201Genotype) -> str:
        """The benchmark's isomorphism class: equal strings for cells that compute the same function."""
        return canonical(genotype)

    def describe(self, genotype: Nb201Genotype) -> str:
        return to_string(genotype)

    def presets(self) -> dict[str, Nb201Genotype]:
        return dict(PRESETS)

    def lower(
        self,
        genotype: Nb201Genotype,
        *,
        num_classes: int = 10,
        resolution: int | None = None,
        C: int = 16,  # the benchmark's names
        N: int = 5,
    ) -> CellNet:
        """The benchmark's network of ``genotype``; ``C`` and ``N`` shrink proxies, ``resolution`` is the
        input size (the proxy evaluator passes its data's)."""
        self.encode(genotype)
        size = BOUNDS["resolution"].check("resolution", DEFAULT_RESOLUTION if resolution is None else resolution)
        channels = BOUNDS["C"].check("C", C)
        BOUNDS["N"].check("N", N)
        graph = cell_graph(genotype)
        stem = (BlockSpec("conv_bn", 3, channels, 1, size, {"kernel_size": 3}),)
        cells: list[CellSpec] = []  # cell i reads network state i: the previous cell's output (0: the stem's)
        for stage in range(3):
            if stage:
                cells.append(CellSpec(REDUCTION_GRAPH, True, 2 * channels, (CellInput(len(cells), channels, size),)))
                channels, size = 2 * channels, conv_output_size(size, 2)
            for _ in range(N):
                cells.append(CellSpec(graph, False, channels, (CellInput(len(cells), channels, size),)))
        head = (BlockSpec("bn_act", channels, channels, 1, size),)  # the benchmark's ``lastact``: BN-ReLU
        return CellNet(
            stem, tuple(cells), head, ClassifierSpec(channels, num_classes), stem[0].input_size, bn_eps=1e-5
        )  # PyTorch's BatchNorm defaults, as the benchmark's code
