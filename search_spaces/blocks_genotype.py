"""The genotype of the ``blocks`` space: one dataclass per block family, told apart by ``family``,
and the network they are stacked into (``BlocksGenotype``), every field checked while it is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from nas.space_base import BN_EPS, BN_MOMENTUM, PROBABILITY, RESOLUTION, Bound

# Ranges of the numeric fields (checked while a genotype is built or decoded). The widest preset
# is DPN-92 (2,688 channels before its classifier), the deepest stage DPN-92's 20 blocks; 64 blocks
# per stage, 8 stages and 8192 channels leave room for any of them scaled up. These ranges alone let
# a file describe a network far too big to build (dense stages widen by depth x growth), which
# ``nas.api.lower`` refuses by its count on the meta device (``MAX_PARAMETERS``) before allocating it.
BOUNDS: Mapping[str, Bound] = MappingProxyType(
    {
        "channels": Bound(1, 8192),
        "depth": Bound(1, 64),
        "stages": Bound(1, 8),
        "groups": Bound(1, 256),
        "factor": Bound(1, 16),
        "resolution": RESOLUTION,
        "dropout": PROBABILITY,
        "bn_eps": BN_EPS,
        "classifier_keep": Bound(0.0, 1.0, integer=False, low_open=True),
        "bn_momentum": BN_MOMENTUM,
    }
)


def _check(stage: Any, integers: tuple[tuple[str, str], ...]) -> None:
    for name, bound in integers:
        BOUNDS[bound].check(name, getattr(stage, name))
    if getattr(stage, "stride", 1) not in (1, 2) or isinstance(stage.stride, bool):
        raise ValueError(f"stride: must be 1 or 2, got {stage.stride!r}")


@dataclass(frozen=True)
class MBConvStage:
    """Inverted bottlenecks (MobileNetV2/V3): expansion ``expand_ratio`` x input, SE of a quarter
    of the expansion (hard-sigmoid, MobileNetV3 §5.3)."""

    out_channels: int
    depth: int
    stride: int = 2
    kernel_size: Literal[3, 5, 7] = 3
    expand_ratio: int = 4
    se: bool = True
    activation: Literal["relu", "hardswish"] = "relu"
    family: Literal["mbconv"] = "mbconv"

    def __post_init__(self) -> None:
        _check(self, (("out_channels", "channels"), ("depth", "depth"), ("expand_ratio", "factor")))


@dataclass(frozen=True)
class ShuffleNetV2Stage:
    """ShuffleNet V2 units; the first downsamples (both branches), the others split (paper Fig. 3)."""

    out_channels: int
    depth: int
    stride: int = 2
    family: Literal["shufflenet_v2"] = "shufflenet_v2"

    def __post_init__(self) -> None:
        _check(self, (("out_channels", "channels"), ("depth", "depth")))
        if self.out_channels % 2:
            raise ValueError(f"out_channels: must be even (two branches), got {self.out_channels}")


@dataclass(frozen=True)
class ShuffleNetV1Stage:
    """ShuffleNet units with ``groups`` pointwise groups and bottleneck width ``out / 4`` (paper Table 1)."""

    out_channels: int
    depth: int
    groups: int = 3
    stride: int = 2
    family: Literal["shufflenet_v1"] = "shufflenet_v1"

    def __post_init__(self) -> None:
        _check(self, (("out_channels", "channels"), ("depth", "depth"), ("groups", "groups")))


@dataclass(frozen=True)
class BottleneckStage:
    """ResNet bottlenecks of width ``mid_channels`` with ``groups`` (ResNeXt cardinality) and, with
    ``se``, SENet's gate at reduction 16 (paper §6.1)."""

    out_channels: int
    depth: int
    mid_channels: int
    groups: int = 1
    se: bool = True
    stride: int = 2
    family: Literal["bottleneck"] = "bottleneck"

    def __post_init__(self) -> None:
        _check(
            self, (("out_channels", "channels"), ("depth", "depth"), ("mid_channels", "channels"), ("groups", "groups"))
        )


@dataclass(frozen=True)
class DualPathStage:
    """DPN blocks: residual path ``residual_channels`` wide, dense path growing by ``increment`` per block
    (3 x ``increment`` from the projecting first block), bottleneck ``bottleneck_channels`` with ``groups``."""

    residual_channels: int
    increment: int
    depth: int
    bottleneck_channels: int
    groups: int = 32
    stride: int = 2
    family: Literal["dual_path"] = "dual_path"

    def __post_init__(self) -> None:
        _check(
            self,
            (
                ("residual_channels", "channels"),
                ("increment", "channels"),
                ("depth", "depth"),
                ("bottleneck_channels", "channels"),
                ("groups", "groups"),
            ),
        )


@dataclass(frozen=True)
class DenseStage:
    """CondenseNet dense layers adding ``growth`` channels each; a stride-2 stage starts with the
    2x2 average-pool transition. Learned group 1x1 convs (``groups``, ``condense_factor``) to
    ``bottleneck`` x growth, then a 3x3 conv with ``groups`` groups (paper §4: G = C = 4)."""

    growth: int
    depth: int
    groups: int = 4
    condense_factor: int = 4
    bottleneck: int = 4
    stride: int = 2
    family: Literal["dense"] = "dense"

    def __post_init__(self) -> None:
        _check(
            self,
            (
                ("growth", "channels"),
                ("depth", "depth"),
                ("groups", "groups"),
                ("condense_factor", "factor"),
                ("bottleneck", "factor"),
            ),
        )


Stage = MBConvStage | ShuffleNetV2Stage | ShuffleNetV1Stage | BottleneckStage | DualPathStage | DenseStage


@dataclass(frozen=True)
class BlocksGenotype:
    """Stem (a ``stem_kernel`` conv, stride 2, with BN + ReLU unless ``stem_norm`` is off, then a 3x3/2
    max-pool if ``stem_pool``), the stages, the head (BN + ``head_norm`` activation for pre-activation
    networks, then a 1x1 conv to ``head_channels`` if non-zero) and a linear classifier.
    ``condensed``: CondenseNet's dense layers in their deployment form (``nas.condense``);
    ``classifier_keep`` < 1: its classifier reads only that fraction of the features (the reference's
    ``CondensingLinear``, which converts CondenseNet-74 with 0.5; ``nas.condense(classifier_keep=...)``)."""

    stages: tuple[Stage, ...]
    stem_channels: int = 24
    stem_kernel: Literal[3, 7] = 3
    stem_pool: bool = True
    stem_norm: bool = True
    head_norm: Literal["none", "relu"] = "none"
    head_channels: int = 0
    condensed: bool = False
    classifier_keep: float = 1.0
    resolution: int = 224
    dropout: float = 0.0
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    def __post_init__(self) -> None:
        if len(self.stages) not in BOUNDS["stages"]:
            raise ValueError(f"stages: a genotype holds {BOUNDS['stages']} stages, got {len(self.stages)}")
        BOUNDS["channels"].check("stem_channels", self.stem_channels)
        if self.head_channels:
            BOUNDS["channels"].check("head_channels", self.head_channels)
        for name in ("resolution", "dropout", "bn_eps", "bn_momentum", "classifier_keep"):
            BOUNDS[name].check(name, getattr(self, name))
