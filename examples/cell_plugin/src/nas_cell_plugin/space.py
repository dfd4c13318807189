"""``cell3``: a toy cell space, a 3-node DAG in the style of NAS-Bench-201 (arXiv 2001.00326 §2.1).

The cell has one input (state 0, the previous cell's output) and three nodes (states 1, 2, 3).
Node k reads *every* earlier state through one edge each (node 0: 1 edge, node 1: 2, node 2: 3;
6 edges in all), each edge one op of ``OPS``, and adds the results. The cell's output is the last
node (state 3): since node 2 reads every earlier state, every edge reaches the output, and an
"add" output keeps the width at ``filters``, so cells chain without preprocessing. That is 6
decisions of 4 ops: 4^6 = 4,096 cells.

The macro network (``lower``): a 3x3 conv-BN stem to ``filters``, ``cells_per_stage`` cells, a
reduction (NAS-Bench-201's fixed residual block, stride 2, to ``2 * filters``, placed as a
one-input, one-node, one-edge cell), ``cells_per_stage`` more cells, BN-ReLU, global pool and a
linear classifier. The proxy network has half the filters and one cell per stage
(``proxy_reduction``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

from nas.cell_ir import CellEdge, CellGraph, CellInput, CellNet, CellNode, CellSpec
from nas.ir import BlockSpec, ClassifierSpec, conv_output_size
from nas.space import Decision, check_choices
from nas.space_base import RESOLUTION, Bound, SpaceBase

CellOp = Literal["conv_3x3", "sep_conv_3x3", "avg_pool_3x3", "identity"]
OPS: tuple[str, ...] = get_args(CellOp)  # every one a registered engine op (``nas.ops``)
NUM_NODES = 3
DEFAULT_RESOLUTION = 32  # CIFAR-sized; a proxy evaluator passes its data's size instead
FILTERS = Bound(1, 1024)
CELLS_PER_STAGE = Bound(1, 16)
# The reduction between the two stages: one edge, NAS-Bench-201's residual block (``nas.ops.resnet_basic_block``).
REDUCTION_GRAPH = CellGraph(1, (CellNode((CellEdge(0, "resnet_basic_block"),)),), output=(1,), output_combine="add")


@dataclass(frozen=True)
class Cell3Genotype:
    """The op of every edge, node by node: ``node{k}[j]`` is the op of node k's edge from state j
    (state 0 is the cell's input, state j >= 1 is node j - 1)."""

    node0: tuple[CellOp] = ("conv_3x3",)
    node1: tuple[CellOp, CellOp] = ("conv_3x3", "conv_3x3")
    node2: tuple[CellOp, CellOp, CellOp] = ("conv_3x3", "conv_3x3", "conv_3x3")

    def __post_init__(self) -> None:
        for k, ops in enumerate(self.nodes):
            if not isinstance(ops, tuple) or len(ops) != k + 1:
                raise ValueError(f"node{k}: expected a tuple of {k + 1} op name(s), got {ops!r}")
            for j, op in enumerate(ops):
                if op not in OPS:
                    raise ValueError(f"node{k}[{j}]: {op!r} is not valid; valid: {list(OPS)}")

    @property
    def nodes(self) -> tuple[tuple[str, ...], ...]:
        return (self.node0, self.node1, self.node2)


def _state_name(state: int) -> str:
    return "input" if state == 0 else f"node{state - 1}"


def decision_name(node: int, state: int) -> str:
    """``node2.from_node0``: the op of node ``node``'s edge from state ``state``."""
    return f"node{node}.from_{_state_name(state)}"


def cell_graph(genotype: Cell3Genotype) -> CellGraph:
    """The genotype's cell as the engine's general cell DAG: 1 input, 3 "add" nodes, the last node as output."""
    nodes = tuple(
        CellNode(tuple(CellEdge(source, op) for source, op in enumerate(ops)), combine="add") for ops in genotype.nodes
    )
    return CellGraph(num_inputs=1, nodes=nodes, output=(NUM_NODES,), output_combine="add")


class Cell3Space(SpaceBase[Cell3Genotype]):
    """The op of each of the cell's 6 edges. ``mutate`` (one decision) and ``genotype_from_dict`` (typed, field by
    field: the ``Literal`` ops and the fixed tuple lengths) come from ``SpaceBase``."""

    name = "cell3"
    genotype_class = Cell3Genotype
    proxy_reduction: Mapping[str, Any] = MappingProxyType({"filters": 8, "cells_per_stage": 1})

    def decisions(self) -> list[Decision]:
        return [Decision(decision_name(k, j), OPS) for k in range(NUM_NODES) for j in range(k + 1)]

    def decode(self, choices: Mapping[str, Any]) -> Cell3Genotype:
        check_choices(self.decisions(), choices)
        return Cell3Genotype(*(tuple(choices[decision_name(k, j)] for j in range(k + 1)) for k in range(NUM_NODES)))

    def encode(self, genotype: Cell3Genotype) -> dict[str, Any]:
        choices = {decision_name(k, j): op for k, ops in enumerate(genotype.nodes) for j, op in enumerate(ops)}
        check_choices(self.decisions(), choices)
        return choices

    def lower(
        self,
        genotype: Cell3Genotype,
        *,
        num_classes: int = 10,
        resolution: int | None = None,
        filters: int = 16,
        cells_per_stage: int = 2,
    ) -> CellNet:
        """The ``CellNet`` of ``genotype``; ``filters`` and ``cells_per_stage`` shrink proxies, ``resolution``
        is the input size (the proxy evaluator passes its data's)."""
        self.encode(genotype)  # validates every edge against the decisions
        size = RESOLUTION.check("resolution", DEFAULT_RESOLUTION if resolution is None else resolution)
        channels = FILTERS.check("filters", filters)
        CELLS_PER_STAGE.check("cells_per_stage", cells_per_stage)
        graph = cell_graph(genotype)
        stem = (BlockSpec("conv_bn", 3, channels, 1, size, {"kernel_size": 3}),)
        cells: list[CellSpec] = []  # cell i reads network state i: the previous cell's output (0: the stem's)
        for stage in range(2):
            if stage:
                cells.append(CellSpec(REDUCTION_GRAPH, True, 2 * channels, (CellInput(len(cells), channels, size),)))
                channels, size = 2 * channels, conv_output_size(size, 2)
            for _ in range(cells_per_stage):
                cells.append(CellSpec(graph, False, channels, (CellInput(len(cells), channels, size),)))
        head = (BlockSpec("bn_act", channels, channels, 1, size),)  # NAS-Bench-201's ``lastact``: BN-ReLU
        return CellNet(
            stem, tuple(cells), head, ClassifierSpec(channels, num_classes), stem[0].input_size, bn_eps=1e-5
        )  # PyTorch's BatchNorm default, as NAS-Bench-201's code

    def presets(self) -> dict[str, Cell3Genotype]:
        return {
            "cell3-conv": Cell3Genotype(),
            "cell3-mixed": Cell3Genotype(
                ("sep_conv_3x3",), ("identity", "conv_3x3"), ("avg_pool_3x3", "identity", "sep_conv_3x3")
            ),
        }
