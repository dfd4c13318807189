"""EfficientNet: the B0 baseline and compound scaling (Tan & Le, arXiv 1905.11946).

A genotype is a set of scaling multipliers (width, depth, resolution) over the fixed B0 table,
plus the regularization rates that go with them. ``scale_stages`` applies the reference
rounding (``nas.scaling``) to B0's table once, whatever the multipliers, as TF and torchvision do;
``EfficientNetSpace.scale`` multiplies them (what ``nas scale`` calls). The published B1-B7 are a
table, not alpha^phi etc. (paper-facts §3.3), so the presets list their coefficients explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from nas.ir import BlockSpec, ChainNet, ClassifierSpec, conv_output_size
from nas.scaling import make_divisible, round_repeats, scale_resolution
from nas.space import Decision, check_choices
from nas.space_base import BN_EPS, BN_MOMENTUM, PROBABILITY, RESOLUTION, WIDTH_MULTIPLIER, Bound, SpaceBase


@dataclass(frozen=True)
class Stage:
    """One row of the B0 table: MBConv``expand_ratio``, ``kernel_size``, first-block stride."""

    expand_ratio: int
    kernel_size: int
    stride: int
    out_channels: int
    repeats: int


# EfficientNet-B0 (paper Table 1; strides and expansion from the reference `_DEFAULT_BLOCKS_ARGS`).
B0_STEM_CHANNELS = 32
B0_HEAD_CHANNELS = 1280
B0_STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 16, 1),
    Stage(6, 3, 2, 24, 2),
    Stage(6, 5, 2, 40, 2),
    Stage(6, 3, 2, 80, 3),
    Stage(6, 5, 1, 112, 3),
    Stage(6, 5, 2, 192, 4),
    Stage(6, 3, 1, 320, 1),
)


# The valid range of every field of a genotype, in one place, checked in ``__post_init__`` (so a
# user's JSON is refused while it is decoded, before anything is built) and, for ``lower()``'s
# ``resolution``/``width_multiplier`` overrides, in ``lower``.
#
# Why these numbers: they hold B0-B7 (up to width 2.0, depth 3.1, 600 px) and the largest published
# compound scaling, EfficientNet-L2 (width 4.3, depth 5.3, 800 px), with margin. Depth bounds the
# layers: at depth 8 the network has 128 blocks, 2.3x B7, still built and counted on the meta
# device in about a second (``nas show``). Resolution shares the built-in spaces' [8, 1024]: the
# former 2048 had no preset behind it. Weights grow with width^2 x depth: the corner (5, 8) has
# 928M (3.5 GiB of float32), under ``nas.api.MAX_PARAMETERS``, the limit ``nas.api.lower`` (what
# ``nas materialize`` builds from) enforces before allocating anything.
BOUNDS: Mapping[str, Bound] = MappingProxyType(
    {
        "width": Bound(0.0, 5.0, integer=False, low_open=True),
        "depth": Bound(0.0, 8.0, integer=False, low_open=True),
        "resolution": RESOLUTION,
        "dropout": PROBABILITY,
        "stochastic_depth": PROBABILITY,
        "bn_eps": BN_EPS,
        "bn_momentum": BN_MOMENTUM,
        "width_multiplier": WIDTH_MULTIPLIER,  # ``lower`` only; width x width_multiplier must be a valid width
    }
)


@dataclass(frozen=True)
class EfficientNetGenotype:
    """Multipliers over B0 and the training-time rates that belong to each model.

    ``bn_eps``/``bn_momentum`` default to the TF reference (1e-3, decay 0.99); the presets use
    torchvision's values so that its pretrained weights reproduce its outputs exactly.
    """

    width: float = 1.0
    depth: float = 1.0
    resolution: int = 224
    dropout: float = 0.2
    stochastic_depth: float = 0.2
    bn_eps: float = 1e-3
    bn_momentum: float = 0.01

    def __post_init__(self) -> None:  # the ranges and why: ``BOUNDS``
        for name in ("width", "depth", "resolution", "dropout", "stochastic_depth", "bn_eps", "bn_momentum"):
            BOUNDS[name].check(name, getattr(self, name))


def scale_stages(stages: tuple[Stage, ...], width: float, depth: float) -> tuple[Stage, ...]:
    """Compound-scale a stage table: channels x ``width`` (rounded to 8), repeats x ``depth`` (ceil)."""
    return tuple(
        replace(
            stage, out_channels=make_divisible(stage.out_channels * width), repeats=round_repeats(stage.repeats, depth)
        )
        for stage in stages
    )


# torchvision's B5-B7 use eps 1e-3 / momentum 0.01; B0-B4 use BatchNorm2d defaults.
_TV_SMALL_NORM = {"bn_eps": 1e-5, "bn_momentum": 0.1}
_TV_LARGE_NORM = {"bn_eps": 1e-3, "bn_momentum": 0.01}
# (width, depth, resolution, dropout): reference `efficientnet_params` (paper-facts §0).
_PRESET_TABLE = {
    "efficientnet-b0": (1.0, 1.0, 224, 0.2, _TV_SMALL_NORM),
    "efficientnet-b1": (1.0, 1.1, 240, 0.2, _TV_SMALL_NORM),
    "efficientnet-b2": (1.1, 1.2, 260, 0.3, _TV_SMALL_NORM),
    "efficientnet-b3": (1.2, 1.4, 300, 0.3, _TV_SMALL_NORM),
    "efficientnet-b4": (1.4, 1.8, 380, 0.4, _TV_SMALL_NORM),
    "efficientnet-b5": (1.6, 2.2, 456, 0.4, _TV_LARGE_NORM),
    "efficientnet-b6": (1.8, 2.6, 528, 0.5, _TV_LARGE_NORM),
    "efficientnet-b7": (2.0, 3.1, 600, 0.5, _TV_LARGE_NORM),
}
PRESETS: dict[str, EfficientNetGenotype] = {
    name: EfficientNetGenotype(width=w, depth=d, resolution=r, dropout=p, stochastic_depth=0.2, **norm)
    for name, (w, d, r, p, norm) in _PRESET_TABLE.items()
}


class EfficientNetSpace(SpaceBase[EfficientNetGenotype]):
    """Compound scaling of EfficientNet-B0. Decisions are the published multiplier values."""

    name = "efficientnet"
    genotype_class = EfficientNetGenotype
    # Half width at 32 px: a stride-32 backbone still has 4x4 and 2x2 maps where kernels are searched.
    proxy_reduction = MappingProxyType({"width_multiplier": 0.5, "resolution": 32})

    def decisions(self) -> list[Decision]:
        return [
            Decision("width", tuple(sorted({g.width for g in PRESETS.values()}))),
            Decision("depth", tuple(sorted({g.depth for g in PRESETS.values()}))),
            Decision("resolution", tuple(sorted({g.resolution for g in PRESETS.values()}))),
        ]

    def decode(self, choices: Mapping[str, Any]) -> EfficientNetGenotype:
        check_choices(self.decisions(), choices)
        return EfficientNetGenotype(
            width=float(choices["width"]), depth=float(choices["depth"]), resolution=int(choices["resolution"])
        )

    def encode(self, genotype: EfficientNetGenotype) -> dict[str, Any]:
        choices = {"width": genotype.width, "depth": genotype.depth, "resolution": genotype.resolution}
        check_choices(self.decisions(), choices)
        return choices

    def presets(self) -> dict[str, EfficientNetGenotype]:
        return dict(PRESETS)

    def scale(
        self, genotype: EfficientNetGenotype, *, width: float, depth: float, resolution: float
    ) -> EfficientNetGenotype:
        """``genotype`` ``width`` times wider, ``depth`` times deeper, at ``resolution`` times its input size.

        The multipliers compose with the genotype's own over B0 (rounded to 12 decimals, so that
        1.1 x 1.1 is stored as 1.21), and ``lower`` rounds B0's table once with the product: scaling
        B0 by 1.2 equals the genotype of width 1.2, as the reference builds B3 from B0. The rates
        (dropout, stochastic depth) are the genotype's own: the published ones are a table, not a rule.
        """
        return replace(
            genotype,
            width=round(genotype.width * width, 12),
            depth=round(genotype.depth * depth, 12),
            resolution=scale_resolution(genotype.resolution, resolution),
        )

    def lower(
        self,
        genotype: EfficientNetGenotype,
        *,
        num_classes: int = 1000,
        resolution: int | None = None,
        width_multiplier: float = 1.0,
    ) -> ChainNet:
        """The ChainNet of ``genotype``; ``resolution``/``width_multiplier`` shrink proxies (``BOUNDS``)."""
        if resolution is not None:
            BOUNDS["resolution"].check("resolution", resolution)
        BOUNDS["width_multiplier"].check("width_multiplier", width_multiplier)
        width = genotype.width * width_multiplier
        if width not in BOUNDS["width"]:
            raise ValueError(
                f"width_multiplier: width {genotype.width!r} x {width_multiplier!r} = {width!r} "
                f"is outside {BOUNDS['width']}"
            )
        size = resolution or genotype.resolution
        stages = scale_stages(B0_STAGES, width, genotype.depth)
        total = sum(stage.repeats for stage in stages)
        stem = BlockSpec(
            "conv_bn_act",
            3,
            make_divisible(B0_STEM_CHANNELS * width),
            2,
            size,
            {"kernel_size": 3, "activation": "silu"},
        )
        channels, size, index, lowered = stem.out_channels, stem.output_size, 0, []
        for stage in stages:
            blocks = []
            for repeat in range(stage.repeats):
                stride = stage.stride if repeat == 0 else 1
                blocks.append(
                    BlockSpec(
                        "mbconv",
                        channels,
                        stage.out_channels,
                        stride,
                        size,
                        {
                            "kernel_size": stage.kernel_size,
                            "expand_channels": make_divisible(channels * stage.expand_ratio)
                            if stage.expand_ratio != 1
                            else 0,
                            "se_channels": max(1, channels // 4),  # SE ratio 0.25 of the block *input* (§3.1)
                            "se_gate": "sigmoid",
                            "se_activation": "silu",
                            "activation": "silu",
                            # Stochastic depth grows linearly with block index (torchvision, TF drop_connect).
                            "drop_path": genotype.stochastic_depth * index / total,
                        },
                    )
                )
                channels, size, index = stage.out_channels, conv_output_size(size, stride), index + 1
            lowered.append(tuple(blocks))
        head = BlockSpec(
            "conv_bn_act",
            channels,
            make_divisible(B0_HEAD_CHANNELS * width),
            1,
            size,
            {"kernel_size": 1, "activation": "silu"},
        )
        return ChainNet(
            stem=stem,
            stages=tuple(lowered),
            head=head,
            classifier=ClassifierSpec(head.out_channels, num_classes, dropout=genotype.dropout),
            resolution=resolution or genotype.resolution,
            bn_eps=genotype.bn_eps,
            bn_momentum=genotype.bn_momentum,
        )
