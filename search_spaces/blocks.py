"""The seed papers' blocks as one chain space: stages of MBConv, ShuffleNet v1/v2 units, SE-ResNe(X)t
bottlenecks, DPN dual-path blocks or CondenseNet dense layers.

A genotype lists its stages, each a family with that family's own settings (one dataclass per
family, told apart by its ``family`` field), plus the stem and the head; the published networks
(ShuffleNet v1/v2, SE-ResNet-50, SE-ResNeXt-50, DPN-68/92, CondenseNet-74) are genotypes of it
(``search_spaces.blocks_presets``). The search decides, for each of three stride-2 stages after a
ShuffleNet stem, the block family, a width and a depth; each family turns the width into its own
settings (``stage_for``), so every candidate compiles whatever its neighbours are.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from nas.ir import BlockSpec, ChainNet, ClassifierSpec, conv_output_size
from nas.scaling import make_divisible
from nas.space import Decision, check_choices
from nas.space_base import SpaceBase
from search_spaces.blocks_genotype import (
    BOUNDS,
    BlocksGenotype,
    BottleneckStage,
    DenseStage,
    DualPathStage,
    MBConvStage,
    ShuffleNetV1Stage,
    ShuffleNetV2Stage,
    Stage,
)
from search_spaces.blocks_presets import PRESETS

OPS = {
    "mbconv": "mbconv",
    "shufflenet_v2": "shufflenet_v2_unit",
    "shufflenet_v1": "shufflenet_v1_unit",
    "bottleneck": "se_bottleneck",
    "dual_path": "dual_path_block",
    "dense": "dense_layer",
}


def lower_stage(stage: Stage, channels: int, size: int, after_stem: bool, condensed: bool) -> list[BlockSpec]:
    """The blocks of ``stage`` reading ``channels`` x ``size`` x ``size``; ``after_stem``: its input is
    the stem's (ShuffleNet leaves that unit's first 1x1 ungrouped, paper §3.3)."""
    blocks = []
    for index in range(stage.depth):
        stride = stage.stride if index == 0 else 1
        out, options = _block(stage, index, channels, after_stem and index == 0, condensed)
        blocks.append(BlockSpec(OPS[stage.family], channels, out, stride, size, options))
        channels, size = out, conv_output_size(size, stride)
    return blocks


def _block(stage: Stage, index: int, channels: int, after_stem: bool, condensed: bool) -> tuple[int, dict[str, Any]]:
    """Output width and op options of block ``index`` of ``stage``, its input ``channels`` wide."""
    if isinstance(stage, MBConvStage):
        expand = make_divisible(channels * stage.expand_ratio)
        return stage.out_channels, {
            "kernel_size": stage.kernel_size,
            "expand_channels": expand if expand != channels else 0,
            "se_channels": make_divisible(expand // 4) if stage.se else 0,
            "se_gate": "hardsigmoid",
            "activation": stage.activation,
        }
    if isinstance(stage, ShuffleNetV2Stage):
        return stage.out_channels, {}
    if isinstance(stage, ShuffleNetV1Stage):
        return stage.out_channels, {"groups": stage.groups, "group_first": not after_stem}
    if isinstance(stage, BottleneckStage):
        return stage.out_channels, {
            "mid_channels": stage.mid_channels,
            "groups": stage.groups,
            "se_channels": stage.out_channels // 16 if stage.se else 0,
        }
    if isinstance(stage, DualPathStage):
        out = stage.residual_channels + 3 * stage.increment if index == 0 else channels + stage.increment
        return out, {
            "residual_channels": stage.residual_channels,
            "bottleneck_channels": stage.bottleneck_channels,
            "groups": stage.groups,
            "projection": index == 0,
        }
    return channels + stage.growth, {
        "groups_1x1": stage.groups,
        "groups_3x3": stage.groups,
        "condense_factor": stage.condense_factor,
        "bottleneck": stage.bottleneck,
        "condensed": condensed,
    }


def lower_genotype(genotype: BlocksGenotype, num_classes: int, resolution: int) -> ChainNet:
    """The ChainNet of ``genotype`` at ``resolution``."""
    g = genotype
    stem_op, stem_options = (
        ("conv_bn_act", {"kernel_size": g.stem_kernel, "activation": "relu"})
        if g.stem_norm
        else ("conv", {"kernel_size": g.stem_kernel})
    )
    stem = [BlockSpec(stem_op, 3, g.stem_channels, 2, resolution, stem_options)]
    if g.stem_pool:
        stem.append(BlockSpec("pool", g.stem_channels, g.stem_channels, 2, stem[0].output_size))
    channels, size, stages = g.stem_channels, stem[-1].output_size, []
    for i, stage in enumerate(g.stages):
        try:
            blocks = lower_stage(stage, channels, size, i == 0, g.condensed)
        except ValueError as error:
            raise ValueError(f"stages[{i}]: {error}") from None
        stages.append(tuple(blocks))
        channels, size = blocks[-1].out_channels, blocks[-1].output_size
    head = []
    if g.head_norm != "none":
        head.append(BlockSpec("bn_act", channels, channels, 1, size, {"activation": g.head_norm}))
    if g.head_channels:
        head.append(BlockSpec("conv_bn_act", channels, g.head_channels, 1, size, {"kernel_size": 1}))
        channels = g.head_channels
    return ChainNet(
        stem=tuple(stem),
        stages=tuple(stages),
        head=tuple(head),
        classifier=ClassifierSpec(
            channels,
            num_classes,
            dropout=g.dropout,
            kept_features=int(channels * g.classifier_keep) if g.classifier_keep < 1 else 0,
        ),
        resolution=resolution,
        bn_eps=g.bn_eps,
        bn_momentum=g.bn_momentum,
    )


# ------------------------------------------------------------------------------- the search space

FAMILIES = ("mbconv", "shufflenet_v2", "bottleneck", "dual_path", "dense")
BASE_WIDTHS = (64, 128, 256)  # stage outputs at width 1.0 (about ShuffleNet V2 0.5x-1.0x)
WIDTHS = (0.75, 1.0, 1.5)
DEPTHS = (1, 2, 3, 4)
SEARCH_STEM = 24  # ShuffleNet's stem: 3x3/2 conv to 24, 3x3/2 max-pool
SEARCH_HEAD = 512  # 1x1 conv before pooling, as ShuffleNet V2's conv5


def stage_for(family: str, width: float, depth: int) -> Stage:
    """The stage of ``family`` about ``width`` wide with ``depth`` blocks (distinct widths give distinct stages).

    SE-ResNeXt and DPN bottlenecks are half the width with 8 groups (ResNeXt's 32x4d shape, scaled
    to these widths); DPN's residual path takes 3/4 of the width and its dense path grows by a
    sixteenth per block; a dense layer adds a quarter of the width (so a 4-layer dense stage adds the width).
    """
    if family == "mbconv":
        return MBConvStage(out_channels=make_divisible(width), depth=depth)
    if family == "shufflenet_v2":
        return ShuffleNetV2Stage(out_channels=make_divisible(width), depth=depth)
    if family == "bottleneck":
        return BottleneckStage(
            out_channels=make_divisible(width), depth=depth, mid_channels=make_divisible(width / 2), groups=8
        )
    if family == "dual_path":
        return DualPathStage(
            residual_channels=make_divisible(width * 3 / 4),
            increment=make_divisible(width / 16, 4),
            depth=depth,
            bottleneck_channels=make_divisible(width / 2),
            groups=8,
        )
    if family == "dense":
        return DenseStage(growth=make_divisible(width / 4, 4), depth=depth)
    raise ValueError(f"family: {family!r} is not valid; valid: {list(FAMILIES)}")


class BlocksSpace(SpaceBase[BlocksGenotype]):
    """Per stage: block family, width and depth (``FAMILIES``, ``WIDTHS`` x ``BASE_WIDTHS``, ``DEPTHS``)."""

    name = "blocks"
    genotype_class = BlocksGenotype
    # Full width at 32 px: the stride-32 network still has 8, 4, 2 and 1 px maps for its stages.
    proxy_reduction = MappingProxyType({"resolution": 32})

    def decisions(self) -> list[Decision]:
        return [
            Decision(f"stage{i}.{name}", choices)
            for i in range(len(BASE_WIDTHS))
            for name, choices in (("family", FAMILIES), ("width", WIDTHS), ("depth", DEPTHS))
        ]

    def decode(self, choices: Mapping[str, Any]) -> BlocksGenotype:
        check_choices(self.decisions(), choices)
        stages = tuple(
            stage_for(choices[f"stage{i}.family"], base * choices[f"stage{i}.width"], choices[f"stage{i}.depth"])
            for i, base in enumerate(BASE_WIDTHS)
        )
        return BlocksGenotype(stages, stem_channels=SEARCH_STEM, head_channels=SEARCH_HEAD)

    def encode(self, genotype: BlocksGenotype) -> dict[str, Any]:
        if len(genotype.stages) != len(BASE_WIDTHS):
            raise ValueError(f"stages: the search space has {len(BASE_WIDTHS)} stages, got {len(genotype.stages)}")
        choices: dict[str, Any] = {}
        for i, (base, stage) in enumerate(zip(BASE_WIDTHS, genotype.stages)):
            matches = [
                w
                for w in WIDTHS
                if stage.family in FAMILIES
                and stage.depth in DEPTHS
                and stage_for(stage.family, base * w, stage.depth) == stage
            ]
            if not matches:
                raise ValueError(f"stages[{i}]: not a stage of the search space")
            choices.update(
                {f"stage{i}.family": stage.family, f"stage{i}.width": matches[0], f"stage{i}.depth": stage.depth}
            )
        if self.decode(choices) != genotype:
            raise ValueError("genotype is outside the search space (stem, head or settings differ)")
        return choices

    def presets(self) -> dict[str, BlocksGenotype]:
        return dict(PRESETS)

    def lower(self, genotype: BlocksGenotype, *, num_classes: int = 1000, resolution: int | None = None) -> ChainNet:
        """The ChainNet of ``genotype``, at ``resolution`` if given (the proxy's input size)."""
        if resolution is not None:
            BOUNDS["resolution"].check("resolution", resolution)
        return lower_genotype(genotype, num_classes, resolution or genotype.resolution)

    def describe(self, genotype: BlocksGenotype) -> str:
        """One line per architecture for reports: ``family x depth`` of every stage, e.g. ``dense x2 / mbconv x4``."""
        return " / ".join(f"{stage.family} x{stage.depth}" for stage in genotype.stages)
