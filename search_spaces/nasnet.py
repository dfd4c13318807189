"""NASNet cells (Zoph et al., arXiv 1707.07012) on the reference macro networks.

A genotype is a normal and a reduction cell (B = 5 blocks each: two inputs, two of the 13 ops,
add or concat) plus the macro configuration of the TF-slim reference (``nasnet.py``): N normal
cells per stack, F filters in the penultimate layer ("N @ F"), a CIFAR or an ImageNet stem.
The search decisions are the paper's 2 x 5B = 50 softmax choices (§3).

``CellBlock``/``CellTopology`` are the genotype's cells (their JSON is the genotype file's);
``lower`` turns each into the general cell IR (``CellTopology.graph``, ``nas.cell_ir``) and places
it with its inputs' preprocessing and output matching as the reference does (``_Builder``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal

from nas import registry
from nas.cell_ir import CellEdge, CellGraph, CellInput, CellNet, CellNode, CellSpec
from nas.ir import COMBINES, BlockSpec, ClassifierSpec, Combine
from nas.space import Decision, check_choices
from nas.space_base import BN_EPS, PROBABILITY, RESOLUTION, Bound, SpaceBase

NUM_BLOCKS = 5
# The NASNet search space: 13 operations (arXiv 1707.07012 §3, Fig. 3 / App. A.4), all in ``nas.ops``.
NASNET_OPS: tuple[str, ...] = (
    "identity",
    "conv_1x3_3x1",
    "conv_1x7_7x1",
    "dil_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "conv_1x1",
    "conv_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)
FILTER_MULTIPLE = 24  # F = 24 x the first stack's filters (NASNet-A)

# The valid range of every numeric field of a genotype, in one place. ``__post_init__`` checks
# them, so a user's JSON is refused while it is decoded, in milliseconds and before anything is
# built, and so are ``lower()``'s overrides (``num_cells``, ``penultimate_filters``,
# ``resolution``), which go through ``dataclasses.replace`` and are re-validated.
#
# Why these numbers: they hold every published configuration with margin (NASNet-A Large is
# 6 @ 4032 at 331 px, the paper's largest CIFAR model 7 @ 2304, B = 5 blocks per cell) and they
# bound the number of layers, which is what building and counting on the meta device costs
# (``nas show``): at N = 12 and 8 blocks per cell the network has 40 cells of up to 16 ops, 4x the
# modules of NASNet-A Large, so it is built and counted in 4x Large's time (measured on a loaded
# 2-core machine: about 7 s against 1.5 s), not in the minutes that N = 100000 would take.
# Memory grows with N x F^2, which no range of a single field caps without refusing Large's
# siblings; F up to 24 x 1024 costs nothing on the meta device, and ``nas.api.lower`` (what
# ``nas materialize`` builds from) refuses any network over ``nas.api.MAX_PARAMETERS`` weights
# (4 GiB of float32) before allocating it. NASNet-A Large with every op replaced by the heaviest
# of the 13 (907M weights, 3.4 GiB) is under that limit.
BOUNDS: Mapping[str, Bound] = MappingProxyType(
    {
        "num_cells": Bound(1, 12),
        "penultimate_filters": Bound(FILTER_MULTIPLE, FILTER_MULTIPLE * 1024),
        "cell_blocks": Bound(1, 8),  # blocks per cell (normal and reduction)
        "stem_multiplier": Bound(0.125, 8.0, integer=False),
        "resolution": RESOLUTION,
        "dropout": PROBABILITY,
        "drop_path_keep_prob": Bound(0.0, 1.0, integer=False, low_open=True),
        "bn_eps": BN_EPS,
    }
)


@dataclass(frozen=True)
class CellBlock:
    """One NASNet block: two inputs, an op on each, and how the two results combine.

    Input indices follow the TF reference (``nasnet_utils.py``): 0 = h_i (the previous cell's
    output), 1 = h_{i-1} (the one before), 2 + k = the output of block k of this cell.
    """

    input_a: int
    op_a: str
    input_b: int
    op_b: str
    combine: Combine = "add"

    def __post_init__(self) -> None:
        for name in ("input_a", "input_b"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: must be a non-negative int, got {value!r}")
        for name in ("op_a", "op_b"):  # resolved against the op registry when compiled
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}: must be a non-empty op name, got {getattr(self, name)!r}")
        if self.combine not in COMBINES:
            raise ValueError(f"combine: {self.combine!r} is not valid; valid: {list(COMBINES)}")


@dataclass(frozen=True)
class CellTopology:
    """The blocks of one cell and which hidden states are concatenated into its output."""

    blocks: tuple[CellBlock, ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ValueError("blocks: a cell needs at least one block")
        for k, block in enumerate(self.blocks):
            for name in ("input_a", "input_b"):
                if getattr(block, name) >= k + 2:
                    raise ValueError(
                        f"blocks[{k}].{name}: index {getattr(block, name)} out of range; "
                        f"block {k} may read states 0..{k + 1}"
                    )
        if not self.concat:
            raise ValueError("concat: the cell output needs at least one state")
        for j, index in enumerate(self.concat):
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.blocks) + 2:
                raise ValueError(f"concat[{j}]: index {index!r} out of range 0..{len(self.blocks) + 1}")
        if len(set(self.concat)) != len(self.concat):
            raise ValueError(f"concat: duplicate state indices {list(self.concat)}")

    def read_states(self) -> set[int]:
        """States a block reads or the output concatenates; the others need no layers."""
        return {i for block in self.blocks for i in (block.input_a, block.input_b)} | set(self.concat)

    def unused_blocks(self) -> tuple[int, ...]:
        """State indices of blocks no later block reads (the paper's output rule, §3)."""
        used = {i for block in self.blocks for i in (block.input_a, block.input_b)}
        return tuple(2 + k for k in range(len(self.blocks)) if 2 + k not in used)

    def graph(self) -> CellGraph:
        """The cell as the IR's DAG: two inputs, one node per block with its two edges, the concat as output."""
        nodes = tuple(
            CellNode((CellEdge(b.input_a, b.op_a), CellEdge(b.input_b, b.op_b)), b.combine) for b in self.blocks
        )
        return CellGraph(2, nodes, self.concat, "concat")


@dataclass(frozen=True)
class NasNetGenotype:
    """Two cells and the macro network they are stacked into (TF-slim ``*_config`` names)."""

    normal: CellTopology
    reduction: CellTopology
    num_cells: int = 6
    penultimate_filters: int = 768
    stem: Literal["cifar", "imagenet"] = "cifar"
    stem_multiplier: float = 3.0
    resolution: int = 32
    dropout: float = 0.0
    drop_path_keep_prob: float = 0.6
    skip_reduction_layer_input: bool = False
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:  # the ranges and why: ``BOUNDS``
        for cell in ("normal", "reduction"):
            blocks = getattr(self, cell).blocks
            if len(blocks) not in BOUNDS["cell_blocks"]:
                raise ValueError(f"{cell}.blocks: a cell holds {BOUNDS['cell_blocks']} blocks, got {len(blocks)}")
        for name in ("num_cells", "stem_multiplier", "resolution", "dropout", "drop_path_keep_prob", "bn_eps"):
            BOUNDS[name].check(name, getattr(self, name))
        filters, bound = self.penultimate_filters, BOUNDS["penultimate_filters"]
        if filters not in bound or filters % FILTER_MULTIPLE:
            if isinstance(filters, bool) or not isinstance(filters, int):
                bound.check("penultimate_filters", filters)  # "expected an integer"
            raise ValueError(
                f"penultimate_filters: must be a multiple of {FILTER_MULTIPLE} in {bound}, got {filters!r}"
            )
        if self.stem == "imagenet" and filters < 4 * FILTER_MULTIPLE:  # its first stem cell has F / 96 filters
            raise ValueError(
                f"penultimate_filters: the imagenet stem needs at least {4 * FILTER_MULTIPLE}, got {filters!r}"
            )

    @property
    def filters(self) -> int:
        """Filters of the first stack (TF ``num_conv_filters``): F / 24 for NASNet-A."""
        return self.penultimate_filters // 24


def _cell(rows: list[tuple[int, str, int, str]], concat: tuple[int, ...]) -> CellTopology:
    return CellTopology(tuple(CellBlock(a, op_a, b, op_b) for a, op_a, b, op_b in rows), concat)


# NASNet-A (TF nasnet_utils.py: 0 = h_i, 1 = h_{i-1}); concat = states with used_hiddenstates 0.
NASNET_A_NORMAL = _cell(
    [
        (0, "sep_conv_5x5", 1, "sep_conv_3x3"),
        (1, "sep_conv_5x5", 1, "sep_conv_3x3"),
        (0, "avg_pool_3x3", 1, "identity"),
        (1, "avg_pool_3x3", 1, "avg_pool_3x3"),
        (0, "sep_conv_3x3", 0, "identity"),
    ],
    concat=(1, 2, 3, 4, 5, 6),
)
NASNET_A_REDUCTION = _cell(
    [
        (0, "sep_conv_5x5", 1, "sep_conv_7x7"),
        (0, "max_pool_3x3", 1, "sep_conv_7x7"),
        (0, "avg_pool_3x3", 1, "sep_conv_5x5"),
        (3, "identity", 2, "avg_pool_3x3"),
        (2, "sep_conv_3x3", 0, "max_pool_3x3"),
    ],
    concat=(3, 4, 5, 6),
)

# TF-slim cifar_config / mobile_imagenet_config / large_imagenet_config (paper-facts §1.4).
PRESETS: dict[str, NasNetGenotype] = {
    "nasnet-a-cifar": NasNetGenotype(NASNET_A_NORMAL, NASNET_A_REDUCTION),
    "nasnet-a-mobile": NasNetGenotype(
        NASNET_A_NORMAL,
        NASNET_A_REDUCTION,
        num_cells=4,
        penultimate_filters=1056,
        stem="imagenet",
        stem_multiplier=1.0,
        resolution=224,
        dropout=0.5,
        drop_path_keep_prob=1.0,
        bn_eps=1e-3,
    ),
    "nasnet-a-large": NasNetGenotype(
        NASNET_A_NORMAL,
        NASNET_A_REDUCTION,
        num_cells=6,
        penultimate_filters=4032,
        stem="imagenet",
        stem_multiplier=3.0,
        resolution=331,
        dropout=0.5,
        drop_path_keep_prob=0.7,
        skip_reduction_layer_input=True,
        bn_eps=1e-3,
    ),
}


class _Builder:
    """Places cells exactly as TF ``_build_nasnet_base`` does, tracking shapes as it goes."""

    def __init__(self, genotype: NasNetGenotype, stem: BlockSpec, total_cells: int) -> None:
        self.genotype, self.total_cells = genotype, total_cells
        self.channels, self.sizes = [stem.out_channels], [stem.output_size]
        self.cells: list[CellSpec] = []

    def add(self, topology: CellTopology, reduction: bool, filters: int, prev: int | None) -> int:
        i = len(self.cells)
        # ScheduledDropPath, depth part: keep = 1 - (cell + 1) / total * (1 - keep) (App. A.5, "v3").
        drop = (i + 1) / self.total_cells * (1 - self.genotype.drop_path_keep_prob)
        inputs = (self._input(i, filters), self._prev_input(i, prev, filters))
        spec = CellSpec(
            topology.graph(), reduction, filters, inputs, _matches(topology, inputs, reduction, filters), drop
        )
        self.cells.append(spec)
        self.channels.append(spec.out_channels)
        self.sizes.append(spec.output_size)
        return i + 1  # index of the new state

    def _input(self, state: int, filters: int) -> CellInput:
        """h_i: the previous cell's output through ReLU-conv1x1-BN (TF ``cell_base``'s 1x1)."""
        channels, size = self.channels[state], self.sizes[state]
        return CellInput(state, channels, size, BlockSpec("conv_1x1", channels, filters, 1, size))

    def _prev_input(self, i: int, prev: int | None, filters: int) -> CellInput:
        """h_{i-1} matched to h_i (TF ``_reduce_prev_layer``); without one (the first cell after the stem),
        the reference reuses the raw input."""
        state = i if prev is None else prev
        channels, size = self.channels[state], self.sizes[state]
        if prev is None or (size == self.sizes[i] and channels == filters):
            return CellInput(state, channels, size)
        if size != self.sizes[i]:
            return CellInput(state, channels, size, BlockSpec("factorized_reduce", channels, filters, 2, size))
        return CellInput(state, channels, size, BlockSpec("conv_1x1", channels, filters, 1, size))


def _matches(
    topology: CellTopology, inputs: tuple[CellInput, ...], reduction: bool, filters: int
) -> tuple[BlockSpec | None, ...]:
    """Cell inputs in the output are matched in size and width by FactorizedReduce without its ReLU (TF
    ``_combine_unused_states``); nothing to match gives ``()``."""
    size, stride = inputs[0].output_size, 2 if reduction else 1
    matches = tuple(
        BlockSpec("factorized_reduce", inputs[index].out_channels, filters, stride, size, {"relu": False})
        if index < 2 and (reduction or inputs[index].out_channels != filters)
        else None
        for index in topology.concat
    )
    return matches if any(match is not None for match in matches) else ()


class NasNetSpace(SpaceBase[NasNetGenotype]):
    """The NASNet cell space; decoded genotypes take the macro settings of ``defaults``."""

    name = "nasnet"
    genotype_class = NasNetGenotype
    # N = 1, F = 96: 5 cells of 4, 8 and 16 filters, the smallest network the macro structure allows
    # above 2-filter cells (NASNet searched with N = 2, App. A.6; measurements in benchmarks/README.md).
    proxy_reduction = MappingProxyType({"num_cells": 1, "penultimate_filters": 96})

    def __init__(self, defaults: NasNetGenotype = PRESETS["nasnet-a-cifar"]) -> None:
        self.defaults = defaults

    def genotype_from_dict(self, data: Mapping[str, Any]) -> NasNetGenotype:
        """Validate plain data into a genotype; every op must be registered (a user's file may name any
        op, a plug-in's included, but a misspelt one is reported here, with its field path)."""
        genotype = super().genotype_from_dict(data)
        for cell in ("normal", "reduction"):
            for k, block in enumerate(getattr(genotype, cell).blocks):
                for field in ("op_a", "op_b"):
                    registry.ops.check(f"genotype.{cell}.blocks[{k}].{field}", getattr(block, field))
        return genotype

    def decisions(self) -> list[Decision]:
        decisions = []
        for cell in ("normal", "reduction"):
            for k in range(NUM_BLOCKS):
                prefix, inputs = f"{cell}.block{k}", tuple(range(k + 2))
                decisions += [
                    Decision(f"{prefix}.input_a", inputs),
                    Decision(f"{prefix}.input_b", inputs),
                    Decision(f"{prefix}.op_a", NASNET_OPS),
                    Decision(f"{prefix}.op_b", NASNET_OPS),
                    Decision(f"{prefix}.combine", COMBINES),
                ]
        return decisions

    def decode(self, choices: Mapping[str, Any]) -> NasNetGenotype:
        check_choices(self.decisions(), choices)
        cells = {}
        for cell in ("normal", "reduction"):
            blocks = tuple(
                CellBlock(
                    *(
                        choices[f"{cell}.block{k}.{field}"]
                        for field in ("input_a", "op_a", "input_b", "op_b", "combine")
                    )
                )
                for k in range(NUM_BLOCKS)
            )
            # "All of the unused hidden states generated in the cell are concatenated" (§3).
            cells[cell] = CellTopology(blocks, CellTopology(blocks, (2,)).unused_blocks())
        return replace(self.defaults, **cells)

    def encode(self, genotype: NasNetGenotype) -> dict[str, Any]:
        choices = {}
        for cell in ("normal", "reduction"):
            topology: CellTopology = getattr(genotype, cell)
            if len(topology.blocks) != NUM_BLOCKS:
                raise ValueError(f"{cell}.blocks: the search space has {NUM_BLOCKS} blocks, got {len(topology.blocks)}")
            for k, block in enumerate(topology.blocks):
                for field in ("input_a", "input_b", "op_a", "op_b", "combine"):
                    choices[f"{cell}.block{k}.{field}"] = getattr(block, field)
        check_choices(self.decisions(), choices)
        return choices

    def presets(self) -> dict[str, NasNetGenotype]:
        return dict(PRESETS)

    def lower(
        self,
        genotype: NasNetGenotype,
        *,
        num_classes: int = 1000,
        num_cells: int | None = None,
        penultimate_filters: int | None = None,
        resolution: int | None = None,
        aux_head: bool = False,
    ) -> CellNet:
        """Place the cells as the reference does; keyword overrides shrink proxies."""
        overrides = {"num_cells": num_cells, "penultimate_filters": penultimate_filters, "resolution": resolution}
        genotype = replace(genotype, **{k: v for k, v in overrides.items() if v is not None})  # re-validated
        n, filters, imagenet = genotype.num_cells, genotype.filters, genotype.stem == "imagenet"
        stem_channels = int((32 if imagenet else filters) * genotype.stem_multiplier)
        # TF ``conv0``: ImageNet's stem is a 3x3 stride-2 VALID conv, CIFAR's a 3x3 'same' conv.
        stem = BlockSpec(
            "conv_bn",
            3,
            stem_channels,
            2 if imagenet else 1,
            genotype.resolution,
            {"kernel_size": 3, "padding": "valid" if imagenet else "same"},
        )
        total_cells = 3 * n + 2 + (2 if imagenet else 0)
        build = _Builder(genotype, stem, total_cells)
        outputs: list[int | None] = [None, 0]  # TF ``cell_outputs``; state 0 is the stem conv
        if imagenet:  # two reduction "stem cells" at 1/4 and 1/2 of the filters
            for scaling in (0.25, 0.5):
                outputs.append(build.add(genotype.reduction, True, int(filters * scaling), outputs[-2]))
        reductions = [int(k / 3 * (3 * n)) for k in (1, 2)]  # ``calc_reduction_layers``
        scaling, aux_state, prev = 1, None, outputs[-2]
        for cell_num in range(3 * n):
            if genotype.skip_reduction_layer_input:
                prev = outputs[-2]
            if cell_num in reductions:
                scaling *= 2
                outputs.append(build.add(genotype.reduction, True, filters * scaling, outputs[-2]))
            if not genotype.skip_reduction_layer_input:
                prev = outputs[-2]
            outputs.append(build.add(genotype.normal, False, filters * scaling, prev))
            if cell_num == reductions[1] - 1:
                aux_state = len(build.cells) - 1
        if aux_head and build.sizes[aux_state + 1] < 5:
            raise ValueError(
                f"aux_head: needs a feature map of at least 5x5 at cell {aux_state}, "
                f"got {build.sizes[aux_state + 1]}x{build.sizes[aux_state + 1]}"
            )
        channels, size = build.channels[-1], build.sizes[-1]
        return CellNet(
            stem=(stem,),
            cells=tuple(build.cells),
            head=(BlockSpec("activation", channels, channels, 1, size),),
            classifier=ClassifierSpec(channels, num_classes, dropout=genotype.dropout),
            resolution=genotype.resolution,
            aux_head_after=aux_state if aux_head else None,
            bn_eps=genotype.bn_eps,
        )
