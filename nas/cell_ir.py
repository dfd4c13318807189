"""The cell IR: any cell DAG (``CellGraph``), placed cells (``CellSpec``) and the network of them (``CellNet``).

A cell is a DAG of states: its inputs (one or more earlier states of the network, each with an
optional preprocessing block), then nodes, each combining (add or concat) the results of one or
more edges, an edge being one op applied to one earlier state; the cell's output combines chosen
states. That holds NASNet's cells (2 inputs, 2 edges per node, concat of the unused states, TF
``nasnet_utils.py``), DARTS's (2 inputs, 4 nodes of 2 edges, arXiv 1806.09055 §2.1) and
NAS-Bench-201's (1 input, every node the sum of one edge from every earlier state, the last node
as output, arXiv 2001.00326 §2.1). Search spaces lower their genotypes to it; ``nas.compile``
builds any of them. ``CellNet`` is importable from ``nas.ir`` too.

Errors are ``ValueError`` naming the bad field, e.g. ``nodes[2].inputs[0].source`` or
``cells[3].inputs[1].channels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from nas.ir import (
    COMBINES,
    BlockSpec,
    ChainNet,
    ClassifierSpec,
    Combine,
    IRKind,
    NetworkPart,
    Options,
    OptionValue,
    _check_literal,
    _check_positive,
    _check_probability,
    as_block_tuple,
    check_block_chain,
    conv_output_size,
    normalize_options,
)


def _check_index(path: str, value: object, limit: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise ValueError(f"{path}: {value!r} out of range; {what} 0..{limit - 1}")


@dataclass(frozen=True)
class CellEdge:
    """One edge of a cell: op ``op`` (a registered name, resolved when compiled) applied to state ``source``.

    ``options`` are the op's own options, as ``BlockSpec.options`` (a mapping is stored sorted).
    """

    source: int
    op: str
    options: Options | Mapping[str, OptionValue] = ()  # a mapping is stored as sorted pairs (Options)

    def __post_init__(self) -> None:
        if isinstance(self.source, bool) or not isinstance(self.source, int) or self.source < 0:
            raise ValueError(f"source: must be a non-negative int, got {self.source!r}")
        if not isinstance(self.op, str) or not self.op:
            raise ValueError(f"op: must be a non-empty op name, got {self.op!r}")
        object.__setattr__(self, "options", normalize_options(self.options))

    def op_options(self) -> dict[str, OptionValue]:
        return dict(self.options)


@dataclass(frozen=True)
class CellNode:
    """A node of a cell: the results of its edges (one or more), added or concatenated."""

    inputs: tuple[CellEdge, ...]
    combine: Combine = "add"

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not self.inputs:
            raise ValueError("inputs: a node needs at least one edge")
        for j, edge in enumerate(self.inputs):
            if not isinstance(edge, CellEdge):
                raise ValueError(f"inputs[{j}]: expected a CellEdge, got {type(edge).__name__}")
        _check_literal("combine", self.combine, COMBINES)


@dataclass(frozen=True)
class CellGraph:
    """A cell as a DAG of states: 0..num_inputs-1 are the cell's inputs, ``num_inputs + k`` is node k.

    A node reads only earlier states, so the graph is acyclic by construction. The cell's output
    combines the states of ``output`` (NASNet, DARTS: concatenated; NAS-Bench-201: the last node).
    """

    num_inputs: int
    nodes: tuple[CellNode, ...]
    output: tuple[int, ...]
    output_combine: Combine = "concat"

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "output", tuple(self.output))
        if isinstance(self.num_inputs, bool) or not isinstance(self.num_inputs, int) or self.num_inputs < 1:
            raise ValueError(f"num_inputs: must be a positive int, got {self.num_inputs!r}")
        if not self.nodes:
            raise ValueError("nodes: a cell needs at least one node")
        for k, node in enumerate(self.nodes):
            if not isinstance(node, CellNode):
                raise ValueError(f"nodes[{k}]: expected a CellNode, got {type(node).__name__}")
            for j, edge in enumerate(node.inputs):
                if edge.source >= self.num_inputs + k:
                    raise ValueError(
                        f"nodes[{k}].inputs[{j}].source: state {edge.source} out of range; node {k} "
                        f"may read states 0..{self.num_inputs + k - 1}"
                    )
        if not self.output:
            raise ValueError("output: the cell output needs at least one state")
        for j, index in enumerate(self.output):
            _check_index(f"output[{j}]", index, self.num_states, "states")
        if len(set(self.output)) != len(self.output):
            raise ValueError(f"output: duplicate state indices {list(self.output)}")
        _check_literal("output_combine", self.output_combine, COMBINES)

    @property
    def num_states(self) -> int:
        return self.num_inputs + len(self.nodes)

    def edges(self) -> list[tuple[int, CellEdge]]:
        """``(node index, edge)`` for every edge, node by node: the order of the compiled cell's ops."""
        return [(k, edge) for k, node in enumerate(self.nodes) for edge in node.inputs]

    def read_states(self) -> set[int]:
        """States an edge reads or the output combines; an input outside it needs no layers."""
        return {edge.source for _, edge in self.edges()} | set(self.output)


@dataclass(frozen=True)
class CellInput:
    """One input of a placed cell: the network state it reads (0 = stem output, i + 1 = cell i's
    output), that state's shape, and the block that prepares it (None: used as it is), e.g. NASNet's
    ReLU-conv1x1-BN or, after a reduction, FactorizedReduce (TF ``_reduce_prev_layer``)."""

    state: int
    channels: int
    size: int
    preprocess: BlockSpec | None = None

    def __post_init__(self) -> None:
        if isinstance(self.state, bool) or not isinstance(self.state, int) or self.state < 0:
            raise ValueError(f"state: must be a non-negative int, got {self.state!r}")
        _check_positive("channels", self.channels)
        _check_positive("size", self.size)
        if self.preprocess is not None:
            if not isinstance(self.preprocess, BlockSpec):
                raise ValueError(f"preprocess: expected a BlockSpec or None, got {type(self.preprocess).__name__}")
            check_block_chain([("preprocess", self.preprocess)], self.channels, self.size)

    @property
    def out_channels(self) -> int:
        return self.channels if self.preprocess is None else self.preprocess.out_channels

    @property
    def output_size(self) -> int:
        return self.size if self.preprocess is None else self.preprocess.output_size


@dataclass(frozen=True)
class CellSpec:
    """One placed cell: its graph, widths and inputs, every shape resolved.

    Channel rule: every edge maps its source state's channels to ``filters``; an "add" node has
    ``filters`` channels, a "concat" node ``filters`` per edge. In a ``reduction`` cell the edges
    from cell inputs have stride 2 (TF ``is_from_original_input``), the others stride 1.
    ``output_match`` (empty, or one entry per ``graph.output`` state) holds the block that matches
    that state to the output's size and width (NASNet's FactorizedReduce without ReLU for a cell
    input in the output, TF ``_combine_unused_states``), None where it already fits.
    ``drop_path`` is the drop probability of every edge but an identity (NASNet App. A.5).
    """

    graph: CellGraph
    reduction: bool
    filters: int
    inputs: tuple[CellInput, ...]
    output_match: tuple[BlockSpec | None, ...] = ()
    drop_path: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "output_match", tuple(self.output_match))
        if not isinstance(self.graph, CellGraph):
            raise ValueError(f"graph: expected a CellGraph, got {type(self.graph).__name__}")
        if not isinstance(self.reduction, bool):
            raise ValueError(f"reduction: expected true or false, got {self.reduction!r}")
        _check_positive("filters", self.filters)
        _check_probability("drop_path", self.drop_path)
        if len(self.inputs) != self.graph.num_inputs:
            raise ValueError(f"inputs: the graph takes {self.graph.num_inputs} inputs, got {len(self.inputs)}")
        for j, cell_input in enumerate(self.inputs):
            if not isinstance(cell_input, CellInput):
                raise ValueError(f"inputs[{j}]: expected a CellInput, got {type(cell_input).__name__}")
            if cell_input.output_size != self.input_size:
                raise ValueError(
                    f"inputs[{j}]: size {cell_input.output_size} after preprocessing, expected "
                    f"{self.input_size} (inputs[0]'s)"
                )
        self._check_output()

    def _check_output(self) -> None:
        if self.output_match and len(self.output_match) != len(self.graph.output):
            raise ValueError(
                f"output_match: one entry per output state ({len(self.graph.output)}), got {len(self.output_match)}"
            )
        channels, sizes = self.state_channels(), self.state_sizes()
        for j, index in enumerate(self.graph.output):
            match = self.output_match[j] if self.output_match else None
            if match is not None:
                check_block_chain([(f"output_match[{j}]", match)], channels[index], sizes[index])
            if (sizes[index] if match is None else match.output_size) != self.output_size:
                raise ValueError(
                    f"output_match[{j}]: state {index} has size {sizes[index]}, the cell's output "
                    f"{self.output_size}; it needs a matching block"
                )
        widths = set(self.output_channels())
        if self.graph.output_combine == "add" and len(widths) > 1:
            raise ValueError(f"graph.output: states added into the output need one width, got {sorted(widths)}")

    @property
    def input_size(self) -> int:
        """Spatial size of the cell's input states (after preprocessing)."""
        return self.inputs[0].output_size

    @property
    def output_size(self) -> int:
        return conv_output_size(self.input_size, 2 if self.reduction else 1)

    def edge_stride(self, source: int) -> int:
        """Only edges from the cell's inputs are strided (TF ``is_from_original_input``)."""
        return 2 if self.reduction and source < self.graph.num_inputs else 1

    def state_channels(self) -> list[int]:
        """Channels of every state: the inputs (after preprocessing), then the nodes."""
        nodes = [self.filters * (len(node.inputs) if node.combine == "concat" else 1) for node in self.graph.nodes]
        return [cell_input.out_channels for cell_input in self.inputs] + nodes

    def state_sizes(self) -> list[int]:
        return [self.input_size] * self.graph.num_inputs + [self.output_size] * len(self.graph.nodes)

    def output_channels(self) -> list[int]:
        """Channels of each output state as the output combines it (after its matching block)."""
        channels = self.state_channels()
        matches = self.output_match or (None,) * len(self.graph.output)
        return [
            channels[index] if match is None else match.out_channels for index, match in zip(self.graph.output, matches)
        ]

    @property
    def out_channels(self) -> int:
        widths = self.output_channels()
        return sum(widths) if self.graph.output_combine == "concat" else widths[0]


@dataclass(frozen=True)
class CellNet:
    """Stem blocks, a sequence of placed cells, head blocks and a classifier, at ``resolution``.

    The network's states are 0 = the stem's output and i + 1 = cell i's output; a cell's inputs
    name the states they read, and the head reads the last one. A fixed block between stages
    (NAS-Bench-201's residual blocks) is a one-input, one-node, one-edge cell. ``aux_head_after``
    puts NASNet's auxiliary classifier (TF ``_build_aux_head``) on cell i's output.
    """

    kind: ClassVar[IRKind] = "cell"
    stem: tuple[BlockSpec, ...]
    cells: tuple[CellSpec, ...]
    head: tuple[BlockSpec, ...]
    classifier: ClassifierSpec
    resolution: int
    aux_head_after: int | None = None
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1

    def __post_init__(self) -> None:
        for part in ("stem", "head"):
            object.__setattr__(self, part, as_block_tuple(getattr(self, part)))
        object.__setattr__(self, "cells", tuple(self.cells))
        for name in ("resolution", "bn_eps", "bn_momentum"):
            _check_positive(name, getattr(self, name))
        if not self.stem:
            raise ValueError("stem: need at least one block")
        if not self.cells:
            raise ValueError("cells: need at least one cell")
        shapes = [check_block_chain([(f"stem[{i}]", b) for i, b in enumerate(self.stem)], 3, self.resolution)]
        for i, cell in enumerate(self.cells):
            if not isinstance(cell, CellSpec):
                raise ValueError(f"cells[{i}]: expected a CellSpec, got {type(cell).__name__}")
            for j, cell_input in enumerate(cell.inputs):
                path = f"cells[{i}].inputs[{j}]"
                _check_index(f"{path}.state", cell_input.state, i + 1, f"cell {i} may read states")
                channels, size = shapes[cell_input.state]
                if (cell_input.channels, cell_input.size) != (channels, size):
                    name = "channels" if cell_input.channels != channels else "size"
                    raise ValueError(
                        f"{path}.{name}: expected {(channels, size)[name == 'size']} (state "
                        f"{cell_input.state}), got {getattr(cell_input, name)}"
                    )
            shapes.append((cell.out_channels, cell.output_size))
        channels, _ = check_block_chain([(f"head[{i}]", b) for i, b in enumerate(self.head)], *shapes[-1])
        if self.classifier.in_features != channels:
            raise ValueError(f"classifier.in_features: expected {channels}, got {self.classifier.in_features}")
        if self.aux_head_after is not None:
            _check_index("aux_head_after", self.aux_head_after, len(self.cells), "cells")

    @property
    def out_channels(self) -> int:
        """Channels of the classifier's input: the head's output, or the last cell's."""
        return self.classifier.in_features

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    def state_sizes(self) -> list[int]:
        """Spatial size of every network state: the stem's output, then each cell's."""
        return [self.stem[-1].output_size] + [cell.output_size for cell in self.cells]

    def live_states(self) -> set[int]:
        """States the logits or the aux head depend on; a cell whose output is not among them is not built."""
        live = {len(self.cells)} | ({self.aux_head_after + 1} if self.aux_head_after is not None else set())
        for i in reversed(range(len(self.cells))):
            if i + 1 in live:
                read = self.cells[i].graph.read_states()
                live |= {cell_input.state for j, cell_input in enumerate(self.cells[i].inputs) if j in read}
        return live

    def parts(self) -> list[NetworkPart]:
        """Stem, every cell, head (if any) and classifier, with their compiled modules' paths."""
        parts = [NetworkPart("stem", "stem", self.resolution, self.stem[-1].out_channels, len(self.stem))]
        parts += [
            NetworkPart(
                f"cell {i} ({'reduction' if cell.reduction else 'normal'})",
                f"cells.{i}",
                cell.input_size,
                cell.out_channels,
                1,
            )
            for i, cell in enumerate(self.cells)
        ]
        if self.head:
            parts.append(
                NetworkPart("head", "head", self.head[0].input_size, self.head[-1].out_channels, len(self.head))
            )
        return parts + [NetworkPart("classifier", "classifier", 1, self.num_classes, 1)]


Network = ChainNet | CellNet  # every IR; ``kind`` tells them apart
