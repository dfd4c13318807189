"""MobileNetV3 blocks (Howard et al., arXiv 1905.02244) and a MnasNet-style factorized space.

A genotype lists every bottleneck explicitly (kernel, expansion width, output width, SE,
activation, stride), so the published Large and Small networks are genotypes. The search
decisions are factorized per stage as in MnasNet (arXiv 1807.11626 §4.1): kernel 3/5/7,
expansion ratio, SE on/off and number of blocks, over the stage skeleton of V3-Large.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal

from nas.ir import BlockSpec, ChainNet, ClassifierSpec, conv_output_size
from nas.scaling import distribute_repeats, make_divisible, scale_resolution
from nas.space import Decision, check_choices
from nas.space_base import BN_EPS, BN_MOMENTUM, PROBABILITY, RESOLUTION, WIDTH_MULTIPLIER, Bound, SpaceBase

Nonlinearity = Literal["relu", "hardswish"]

# The valid range of every numeric field of a genotype, in one place, checked in the genotypes'
# ``__post_init__`` (so a user's JSON is refused while it is decoded, before anything is built)
# and, for ``lower()``'s ``resolution``/``width_multiplier`` overrides, in ``lower``.
#
# Why these numbers: every preset fits with margin (the widest is V3-Large: expansion 960, head
# 960, classifier 1280; 15 blocks; 224 px), and 8192 channels leave room for any width
# multiplier up to 8. At most 64 blocks (4x V3-Large, 2.7x the deepest network of the factorized
# space) bounds the layers, so the largest allowed network is built and counted on the meta device
# in about a second (``nas show``), like EfficientNet-B7. Memory grows with blocks x channels^2,
# which these ranges alone do not cap; ``nas.api.lower`` (what ``nas materialize`` builds from)
# refuses any network over ``nas.api.MAX_PARAMETERS`` weights (4 GiB of float32) before allocating it.
BOUNDS: Mapping[str, Bound] = MappingProxyType(
    {
        "blocks": Bound(1, 64),  # number of bottlenecks
        "channels": Bound(1, 8192),  # expand/out channels of a block, stem, head and classifier widths
        "resolution": RESOLUTION,
        "dropout": PROBABILITY,
        "bn_eps": BN_EPS,
        "bn_momentum": BN_MOMENTUM,
        "width_multiplier": WIDTH_MULTIPLIER,  # ``lower`` only
    }
)
KERNEL_SIZES = (3, 5, 7)
STRIDES = (1, 2)


@dataclass(frozen=True)
class MobileNetV3Block:
    """One bneck row of paper Tables 1-2: ``exp`` = ``expand_channels``, NL = ``activation``."""

    kernel_size: int
    expand_channels: int
    out_channels: int
    se: bool
    activation: Nonlinearity
    stride: int

    def __post_init__(self) -> None:  # the ranges and why: ``BOUNDS``
        for name, valid in (("kernel_size", KERNEL_SIZES), ("stride", STRIDES)):
            value = getattr(self, name)
            if isinstance(value, bool) or value not in valid:
                raise ValueError(f"{name}: must be one of {list(valid)}, got {value!r}")
        for name in ("expand_channels", "out_channels"):
            BOUNDS["channels"].check(name, getattr(self, name))


@dataclass(frozen=True)
class MobileNetV3Genotype:
    """Stem, bottlenecks, last 1x1 conv and the classifier's hidden width (paper §5.1)."""

    blocks: tuple[MobileNetV3Block, ...]
    stem_channels: int = 16
    head_channels: int = 960
    classifier_hidden: int = 1280
    resolution: int = 224
    dropout: float = 0.2
    bn_eps: float = 1e-3
    bn_momentum: float = 0.01

    def __post_init__(self) -> None:  # the ranges and why: ``BOUNDS``
        if len(self.blocks) not in BOUNDS["blocks"]:
            raise ValueError(f"blocks: a genotype holds {BOUNDS['blocks']} blocks, got {len(self.blocks)}")
        for name in ("stem_channels", "head_channels", "classifier_hidden"):
            BOUNDS["channels"].check(name, getattr(self, name))
        for name in ("resolution", "dropout", "bn_eps", "bn_momentum"):
            BOUNDS[name].check(name, getattr(self, name))


def _blocks(rows: list[tuple[int, int, int, bool, str, int]]) -> tuple[MobileNetV3Block, ...]:
    return tuple(MobileNetV3Block(k, e, o, se, nl, s) for k, e, o, se, nl, s in rows)  # type: ignore[arg-type]


RE, HS = "relu", "hardswish"
# Paper Table 1 (kernel, exp, out, SE, NL, stride), final version; same numbers as torchvision.
LARGE = MobileNetV3Genotype(
    _blocks(
        [
            (3, 16, 16, False, RE, 1),
            (3, 64, 24, False, RE, 2),
            (3, 72, 24, False, RE, 1),
            (5, 72, 40, True, RE, 2),
            (5, 120, 40, True, RE, 1),
            (5, 120, 40, True, RE, 1),
            (3, 240, 80, False, HS, 2),
            (3, 200, 80, False, HS, 1),
            (3, 184, 80, False, HS, 1),
            (3, 184, 80, False, HS, 1),
            (3, 480, 112, True, HS, 1),
            (3, 672, 112, True, HS, 1),
            (5, 672, 160, True, HS, 2),
            (5, 960, 160, True, HS, 1),
            (5, 960, 160, True, HS, 1),
        ]
    ),
    head_channels=960,
    classifier_hidden=1280,
)
# Paper Table 2. The table marks SE on the last 1x1 conv; the reference models have none there.
SMALL = MobileNetV3Genotype(
    _blocks(
        [
            (3, 16, 16, True, RE, 2),
            (3, 72, 24, False, RE, 2),
            (3, 88, 24, False, RE, 1),
            (5, 96, 40, True, HS, 2),
            (5, 240, 40, True, HS, 1),
            (5, 240, 40, True, HS, 1),
            (5, 120, 48, True, HS, 1),
            (5, 144, 48, True, HS, 1),
            (5, 288, 96, True, HS, 2),
            (5, 576, 96, True, HS, 1),
            (5, 576, 96, True, HS, 1),
        ]
    ),
    head_channels=576,
    classifier_hidden=1024,
)


def scale_width(genotype: MobileNetV3Genotype, multiplier: float) -> MobileNetV3Genotype:
    """Width multiplier with a fixed classifier head, as the paper's 0.75 models (paper-facts §2.5).

    Widths round to multiples of 8; each block keeps its expansion *ratio* over its (scaled)
    input, as the reference arch strings do (timm ``tf_mobilenetv3_*_075``).
    """
    old_in, new_in = genotype.stem_channels, make_divisible(genotype.stem_channels * multiplier)
    blocks = []
    for block in genotype.blocks:
        out = make_divisible(block.out_channels * multiplier)
        expand = make_divisible(new_in * block.expand_channels / old_in)
        blocks.append(replace(block, expand_channels=expand, out_channels=out))
        old_in, new_in = block.out_channels, out
    return replace(
        genotype,
        blocks=tuple(blocks),
        stem_channels=make_divisible(genotype.stem_channels * multiplier),
        head_channels=make_divisible(genotype.head_channels * multiplier),
    )


def _repeat(block: MobileNetV3Block, in_channels: int) -> MobileNetV3Block:
    """The block that repeats ``block`` (input ``in_channels``) after it: stride 1, same expansion ratio."""
    expand = (
        block.expand_channels
        if in_channels == block.out_channels
        else make_divisible(block.out_channels * block.expand_channels / in_channels)
    )
    return replace(block, expand_channels=expand, stride=1)


def scale_depth(genotype: MobileNetV3Genotype, multiplier: float) -> MobileNetV3Genotype:
    """Every stage ``multiplier`` times deeper, with the reference rounding (``nas.scaling``).

    A stage is a run of blocks with the same output width (the rows of the timm arch strings);
    inside it, a *row* is a block followed by its repeats (``_repeat``). Each stage's total is
    rounded up and spread over its rows from the last one backwards (``distribute_repeats``); a
    row grows by repeats of its last block and shrinks from its end, so the stride-2 block stays.
    """
    blocks: list[MobileNetV3Block] = []
    in_channels, index = genotype.stem_channels, 0
    while index < len(genotype.blocks):
        stage = [genotype.blocks[index]]
        while (
            index + len(stage) < len(genotype.blocks)
            and genotype.blocks[index + len(stage)].out_channels == stage[0].out_channels
        ):
            stage.append(genotype.blocks[index + len(stage)])
        rows, previous_in = [[stage[0]]], in_channels
        for block in stage[1:]:
            if block == _repeat(rows[-1][-1], previous_in):
                rows[-1].append(block)
            else:
                rows.append([block])
            previous_in = stage[0].out_channels
        for row, count in zip(rows, distribute_repeats([len(row) for row in rows], multiplier)):
            last_in = in_channels if len(row) == 1 and row is rows[0] else row[0].out_channels
            blocks += row[:count] + [_repeat(row[-1], last_in)] * (count - len(row))
        in_channels, index = stage[0].out_channels, index + len(stage)
    return replace(genotype, blocks=tuple(blocks))


PRESETS: dict[str, MobileNetV3Genotype] = {
    "mobilenetv3-large": LARGE,
    "mobilenetv3-small": SMALL,
    "mobilenetv3-large-075": scale_width(LARGE, 0.75),
    "mobilenetv3-small-075": scale_width(SMALL, 0.75),
}

# The stage skeleton of V3-Large: (out_channels, first stride, nonlinearity).
STAGES: tuple[tuple[int, int, Nonlinearity], ...] = (
    (16, 1, "relu"),
    (24, 2, "relu"),
    (40, 2, "relu"),
    (80, 2, "hardswish"),
    (112, 1, "hardswish"),
    (160, 2, "hardswish"),
)
EXPAND_RATIOS = (1, 3, 4, 6)
DEPTHS = (1, 2, 3, 4)


class MobileNetV3Space(SpaceBase[MobileNetV3Genotype]):
    """Per-stage kernel, expansion ratio, SE and depth (MnasNet's factorized hierarchical space)."""

    name = "mobilenetv3"
    genotype_class = MobileNetV3Genotype
    # Half width at 32 px: a stride-32 backbone still has 4x4 and 2x2 maps where kernels are searched.
    proxy_reduction = MappingProxyType({"width_multiplier": 0.5, "resolution": 32})

    def decisions(self) -> list[Decision]:
        decisions = []
        for i in range(len(STAGES)):
            decisions += [
                Decision(f"stage{i}.kernel_size", KERNEL_SIZES),
                Decision(f"stage{i}.expand_ratio", EXPAND_RATIOS),
                Decision(f"stage{i}.se", (False, True)),
                Decision(f"stage{i}.depth", DEPTHS),
            ]
        return decisions

    def decode(self, choices: Mapping[str, Any]) -> MobileNetV3Genotype:
        check_choices(self.decisions(), choices)
        blocks, in_channels = [], LARGE.stem_channels
        for i, (out, stride, nonlinearity) in enumerate(STAGES):
            for repeat in range(choices[f"stage{i}.depth"]):
                expand = make_divisible(in_channels * choices[f"stage{i}.expand_ratio"])
                blocks.append(
                    MobileNetV3Block(
                        choices[f"stage{i}.kernel_size"],
                        expand,
                        out,
                        choices[f"stage{i}.se"],
                        nonlinearity,
                        stride if repeat == 0 else 1,
                    )
                )
                in_channels = out
        return MobileNetV3Genotype(tuple(blocks))

    def encode(self, genotype: MobileNetV3Genotype) -> dict[str, Any]:
        choices: dict[str, Any] = {}
        remaining, in_channels = list(genotype.blocks), genotype.stem_channels
        for i, (out, _, _) in enumerate(STAGES):
            stage = []
            while remaining and remaining[0].out_channels == out:
                stage.append(remaining.pop(0))
            if not stage:
                raise ValueError(
                    f"blocks: stage {i} (out_channels {out}) is missing; the genotype is outside the factorized space"
                )
            ratios = [r for r in EXPAND_RATIOS if make_divisible(in_channels * r) == stage[0].expand_channels]
            first = stage[0]
            choices.update(
                {
                    f"stage{i}.kernel_size": first.kernel_size,
                    f"stage{i}.se": first.se,
                    f"stage{i}.depth": len(stage),
                    f"stage{i}.expand_ratio": ratios[0] if ratios else None,
                }
            )
            if not ratios or any((b.kernel_size, b.se) != (first.kernel_size, first.se) for b in stage):
                raise ValueError(f"blocks: stage {i} is not uniform; the genotype is outside the factorized space")
            in_channels = out
        if remaining:
            raise ValueError("blocks: more blocks than the factorized space's stages")
        check_choices(self.decisions(), choices)
        if self.decode(choices) != genotype:
            raise ValueError("genotype is outside the factorized decision space")
        return choices

    def presets(self) -> dict[str, MobileNetV3Genotype]:
        return dict(PRESETS)

    def scale(
        self, genotype: MobileNetV3Genotype, *, width: float, depth: float, resolution: float
    ) -> MobileNetV3Genotype:
        """``genotype`` ``width`` times wider, ``depth`` times deeper, at ``resolution`` times its input size.

        Widths as ``scale_width`` (stem and head included, expansion ratios kept); the classifier's
        hidden layer grows with ``width`` but never shrinks below the genotype's (the paper keeps it
        fixed for its 0.75 models, torchvision scales it with the width). Depth as ``scale_depth``.
        """
        # Depth first: stages are found by their output widths, which width rounding may merge.
        scaled = genotype if depth == 1.0 else scale_depth(genotype, depth)
        scaled = scaled if width == 1.0 else scale_width(scaled, width)
        hidden = max(genotype.classifier_hidden, make_divisible(genotype.classifier_hidden * width))
        return replace(scaled, classifier_hidden=hidden, resolution=scale_resolution(genotype.resolution, resolution))

    def prunable_widths(self, genotype: MobileNetV3Genotype) -> dict[str, int]:
        """The widths NetAdapt may shrink (MobileNetV3 §4.2), by name: each expansion layer
        (``blocks.I.expand_channels``, blocks with one), and each bottleneck width with every block
        that shares it through a residual connection (``stem_channels`` or ``blocks.I.out_channels``,
        I the first block of the run), and ``head_channels``. A block without an expansion layer
        runs its depthwise conv at its input width, which it shares with that input."""
        widths = {"stem_channels": genotype.stem_channels}
        in_channels = genotype.stem_channels
        for i, block in enumerate(genotype.blocks):
            if block.expand_channels != in_channels:
                widths[f"blocks.{i}.expand_channels"] = block.expand_channels
            if not (block.stride == 1 and block.out_channels == in_channels):  # no residual: a new width
                widths[f"blocks.{i}.out_channels"] = block.out_channels
            in_channels = block.out_channels
        widths["head_channels"] = genotype.head_channels
        return widths

    def removable_widths(self, genotype: MobileNetV3Genotype) -> set[str]:
        """The widths whose value 0 removes their block: the expansion width of each residual block
        (stride 1, input width = output width, an expansion layer), whose removal leaves every other
        shape as it was. Below about 16 channels a block's latency no longer falls with its width
        (its fixed cost stays): removing it is the step left (NetAdapt extended, issue 27)."""
        names, in_channels = set(), genotype.stem_channels
        for i, block in enumerate(genotype.blocks):
            if block.expand_channels != in_channels and block.stride == 1 and block.out_channels == in_channels:
                names.add(f"blocks.{i}.expand_channels")
            in_channels = block.out_channels
        return names

    def widths_of(self, start: MobileNetV3Genotype, genotype: MobileNetV3Genotype) -> dict[str, int]:
        """The ``prunable_widths`` of ``start`` (0: a removed block, ``removable_widths``) that make it
        ``genotype``: its blocks matched to ``start``'s in order, a residual block of ``start`` that
        does not match the next one of ``genotype`` taken as removed (``ValueError`` if none fits)."""
        names, removable = self.prunable_widths(start), self.removable_widths(start)
        widths = {"stem_channels": genotype.stem_channels, "head_channels": genotype.head_channels}
        j, old_in, new_in = 0, start.stem_channels, genotype.stem_channels
        for i, block in enumerate(start.blocks):
            expand_name, out_name = f"blocks.{i}.expand_channels", f"blocks.{i}.out_channels"
            candidate = genotype.blocks[j] if j < len(genotype.blocks) else None
            residual = block.stride == 1 and block.out_channels == old_in
            if (
                candidate is not None
                and (candidate.kernel_size, candidate.se, candidate.activation, candidate.stride)
                == (block.kernel_size, block.se, block.activation, block.stride)
                and residual == (candidate.stride == 1 and candidate.out_channels == new_in)
            ):
                if expand_name in names:
                    widths[expand_name] = candidate.expand_channels
                if out_name in names:
                    widths[out_name] = candidate.out_channels
                new_in, j = candidate.out_channels, j + 1
            elif expand_name in removable:
                widths[expand_name] = 0
            else:
                raise ValueError(f"genotype: block {i} of the start is neither there nor removable")
            old_in = block.out_channels
        if j != len(genotype.blocks):
            raise ValueError("genotype: has blocks the start does not")
        return widths

    def with_widths(self, genotype: MobileNetV3Genotype, widths: Mapping[str, int]) -> MobileNetV3Genotype:
        """``genotype`` with the ``prunable_widths`` given (all of them), the same layers, only narrower or wider;
        a ``removable_widths`` name given 0 removes its residual block.

        ``ValueError`` if the widths would change the network's structure: an expansion layer that
        would vanish (its width equal to its input's) or a residual connection that would appear
        (a stride-1 block's input and output widths made equal), since NetAdapt's weights are
        inherited layer by layer.
        """
        names = self.prunable_widths(genotype)
        if set(widths) != set(names):
            missing, unknown = sorted(set(names) - set(widths)), sorted(set(widths) - set(names))
            raise ValueError(
                f"widths: need exactly the prunable widths of this genotype; missing {missing[:3]}, "
                f"unknown {unknown[:3]}"
            )
        removable = self.removable_widths(genotype)
        for name, value in widths.items():
            if not (value == 0 and name in removable):  # 0 removes a residual block
                BOUNDS["channels"].check(name, value)
        new_in, blocks = widths["stem_channels"], []
        for i, block in enumerate(genotype.blocks):
            expand_name, out_name = f"blocks.{i}.expand_channels", f"blocks.{i}.out_channels"
            if widths.get(expand_name) == 0:
                continue  # a residual block removed: its input is its output's width, every shape stays
            expand = widths.get(expand_name, new_in)
            out = widths.get(out_name, new_in)
            if expand_name in widths and expand == new_in:
                raise ValueError(
                    f"{expand_name}: {expand} equals the block's input width, so its expansion layer would vanish"
                )
            if out_name in widths and block.stride == 1 and out == new_in:
                raise ValueError(
                    f"{out_name}: {out} equals the block's input width, so a residual connection would appear"
                )
            blocks.append(replace(block, expand_channels=expand, out_channels=out))
            new_in = out
        return replace(
            genotype, blocks=tuple(blocks), stem_channels=widths["stem_channels"], head_channels=widths["head_channels"]
        )

    def lower(
        self,
        genotype: MobileNetV3Genotype,
        *,
        num_classes: int = 1000,
        resolution: int | None = None,
        width_multiplier: float = 1.0,
    ) -> ChainNet:
        """The ChainNet of ``genotype``; ``resolution``/``width_multiplier`` shrink proxies (``BOUNDS``)."""
        if resolution is not None:
            BOUNDS["resolution"].check("resolution", resolution)
        BOUNDS["width_multiplier"].check("width_multiplier", width_multiplier)
        if width_multiplier != 1.0:
            try:
                genotype = scale_width(genotype, width_multiplier)  # re-validated by ``replace``
            except ValueError as error:
                raise ValueError(
                    f"width_multiplier: {width_multiplier!r} scales a width out of range ({error})"
                ) from None
        size = resolution or genotype.resolution
        stem = BlockSpec(
            "conv_bn_act", 3, genotype.stem_channels, 2, size, {"kernel_size": 3, "activation": "hardswish"}
        )
        channels, size, blocks = stem.out_channels, stem.output_size, []
        for block in genotype.blocks:
            blocks.append(
                BlockSpec(
                    "mbconv",
                    channels,
                    block.out_channels,
                    block.stride,
                    size,
                    {
                        "kernel_size": block.kernel_size,
                        "expand_channels": block.expand_channels if block.expand_channels != channels else 0,
                        # SE squeezes to 1/4 of the expansion width, rounded to 8, hard-sigmoid gate (§5.3).
                        "se_channels": make_divisible(block.expand_channels // 4) if block.se else 0,
                        "se_gate": "hardsigmoid",
                        "se_activation": "relu",
                        "activation": block.activation,
                    },
                )
            )
            channels, size = block.out_channels, conv_output_size(size, block.stride)
        head = BlockSpec(
            "conv_bn_act", channels, genotype.head_channels, 1, size, {"kernel_size": 1, "activation": "hardswish"}
        )
        return ChainNet(
            stem=stem,
            stages=_group_stages(blocks),
            head=head,
            classifier=ClassifierSpec(
                head.out_channels, num_classes, genotype.classifier_hidden, "hardswish", genotype.dropout
            ),
            resolution=resolution or genotype.resolution,
            bn_eps=genotype.bn_eps,
            bn_momentum=genotype.bn_momentum,
        )


def _group_stages(blocks: list[BlockSpec]) -> tuple[tuple[BlockSpec, ...], ...]:
    """Split blocks into stages at every stride-2 block (for per-stage tables)."""
    stages: list[list[BlockSpec]] = []
    for block in blocks:
        if not stages or block.stride == 2:
            stages.append([])
        stages[-1].append(block)
    return tuple(tuple(stage) for stage in stages)
