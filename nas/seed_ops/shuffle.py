"""ShuffleNet (arXiv 1707.01083) and ShuffleNet V2 (arXiv 1807.11164) units, channel shuffle, and the
small stem/head layers the seed papers' networks need (max-pool, plain conv, BN + activation).

Registered as ``nas.ops`` entry points (``pyproject.toml``), as a plug-in's ops are. Module and
parameter order follow the reference implementations, so that their state dicts map onto ours key
by key (``nas.from_torchvision``): torchvision ``shufflenetv2.py`` for V2, megvii-model
``ShuffleNet-Series`` for V1.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from nas.ir import Activation
from nas.ops import _bn, _odd
from nas.ops import activation as make_activation


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups (ShuffleNet §3.1, Fig. 1c): channel ``g * n + j``
    moves to ``j * groups + g``, so the next grouped layer sees inputs from every group."""
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.contiguous().view(batch, channels, height, width)


def check_divisible(op: str, name: str, value: int, groups: int) -> None:
    """``ValueError`` naming ``op`` unless ``value`` channels split into ``groups`` (>= 1) equal groups."""
    if groups < 1 or value % groups:
        raise ValueError(f"{op}: {name} {value} is not divisible by groups {groups}")


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffleNetV2Unit(nn.Module):
    """ShuffleNet V2 unit (paper Fig. 3c/d; torchvision ``InvertedResidual``).

    With stride 1 and equal widths the input is split in halves: one passes untouched, the other
    through 1x1 -> 3x3 depthwise -> 1x1 at equal width (G1: equal widths minimise memory access;
    G2: no group 1x1). Otherwise (downsampling) both branches see the whole input, the first as a
    strided depthwise + 1x1. The halves are concatenated, then shuffled with 2 groups.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"shufflenet_v2_unit: out_channels must be even (two halves), got {out_channels}")
        branch = out_channels // 2
        self.split = stride == 1 and in_channels == out_channels
        norm = (bn_eps, bn_momentum)
        self.branch1 = (
            nn.Sequential()
            if self.split
            else nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
                _bn(in_channels, *norm),
                nn.Conv2d(in_channels, branch, 1, bias=False),
                _bn(branch, *norm),
                nn.ReLU(inplace=True),
            )
        )
        branch_in = branch if self.split else in_channels
        self.branch2 = nn.Sequential(
            nn.Conv2d(branch_in, branch, 1, bias=False),
            _bn(branch, *norm),
            nn.ReLU(inplace=True),
            nn.Conv2d(branch, branch, 3, stride, 1, groups=branch, bias=False),
            _bn(branch, *norm),
            nn.Conv2d(branch, branch, 1, bias=False),
            _bn(branch, *norm),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            kept, x = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(x)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV1Unit(nn.Module):
    """ShuffleNet unit (paper Fig. 2b/c; megvii ``ShuffleV1Block``): grouped 1x1 -> BN -> ReLU ->
    channel shuffle -> 3x3 depthwise (strided) -> BN -> grouped 1x1 -> BN.

    Stride 1 with equal widths adds the input, then ReLU. Otherwise the branch produces ``out - in``
    channels and goes through ReLU, and is concatenated after the shortcut, a 3x3 average pool
    (stride 2) or the input itself (stride 1), as megvii's code does. ``group_first`` False leaves the
    first 1x1 ungrouped, as the paper does where the input is narrow (the first unit after the stem, §3.3).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        groups: int,
        mid_channels: int,
        group_first: bool,
        bn_eps: float,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        self.add = stride == 1 and in_channels == out_channels
        branch_out = out_channels if self.add else out_channels - in_channels
        if branch_out < 1:
            raise ValueError(
                f"shufflenet_v1_unit: a concatenating unit needs out_channels > in_channels, got "
                f"{in_channels} -> {out_channels}"
            )
        first_groups = groups if group_first else 1
        check_divisible("shufflenet_v1_unit", "mid_channels", mid_channels, groups)
        check_divisible("shufflenet_v1_unit", "in_channels", in_channels, first_groups)
        check_divisible(
            "shufflenet_v1_unit", "branch output (out - in)" if not self.add else "out_channels", branch_out, groups
        )
        self.groups = groups
        norm = (bn_eps, bn_momentum)
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, groups=first_groups, bias=False),
            _bn(mid_channels, *norm),
            nn.ReLU(inplace=True),
        )
        self.branch_main_2 = nn.Sequential(
            nn.Conv2d(mid_channels, mid_channels, 3, stride, 1, groups=mid_channels, bias=False),
            _bn(mid_channels, *norm),
            nn.Conv2d(mid_channels, branch_out, 1, groups=groups, bias=False),
            _bn(branch_out, *norm),
        )
        self.shortcut = nn.AvgPool2d(3, stride, 1) if stride > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch_main_1(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.branch_main_2(out)
        if self.add:
            return F.relu(out + x)
        return torch.cat((self.shortcut(x), F.relu(out)), dim=1)


class BnAct(nn.Sequential):
    """BatchNorm -> activation: the closing layer of pre-activation networks (DPN, CondenseNet)."""

    def __init__(self, channels: int, activation_name: str, bn_eps: float, bn_momentum: float) -> None:
        super().__init__(_bn(channels, bn_eps, bn_momentum), make_activation(activation_name))


# ---------------------------------------------------------------- ops (declared options)


def shufflenet_v2_unit(
    in_channels: int, out_channels: int, stride: int, *, bn_eps: float, bn_momentum: float
) -> nn.Module:
    """ShuffleNet V2 unit: half of ``out_channels`` per branch (paper Fig. 3c/d)."""
    return ShuffleNetV2Unit(in_channels, out_channels, stride, bn_eps, bn_momentum)


def shufflenet_v1_unit(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    groups: int = 3,
    mid_channels: int = 0,
    group_first: bool = True,
    bn_eps: float,
    bn_momentum: float,
) -> nn.Module:
    """ShuffleNet unit with ``groups`` pointwise groups; ``mid_channels`` 0: a quarter of
    ``out_channels``, the paper's bottleneck ratio (§3.2)."""
    mid = mid_channels or out_channels // 4
    return ShuffleNetV1Unit(in_channels, out_channels, stride, groups, mid, group_first, bn_eps, bn_momentum)


def channel_shuffle_op(in_channels: int, out_channels: int, stride: int, *, groups: int = 2) -> nn.Module:
    """Channel shuffle as a layer (widths and size unchanged)."""
    if in_channels != out_channels or stride != 1:
        raise ValueError(f"channel_shuffle: keeps shape; got {in_channels} -> {out_channels}, stride {stride}")
    check_divisible("channel_shuffle", "in_channels", in_channels, groups)
    return ChannelShuffle(groups)


def pool(
    in_channels: int, out_channels: int, stride: int, *, kind: Literal["max", "avg"] = "max", kernel_size: int = 3
) -> nn.Module:
    """Max or average pooling that keeps the width: ``kernel_size`` 3 is the stems' 3x3/2 max-pool
    (ResNet, ShuffleNet, DPN; padding 1), ``kernel_size`` 2 CondenseNet's 2x2/2 average pool. The output
    is ``ceil(size / stride)``, the IR's rule, for odd sizes too (``ceil_mode``; the same as the
    references' for the even sizes they run at)."""
    if in_channels != out_channels:
        raise ValueError(f"pool: keeps the width; got {in_channels} -> {out_channels}")
    if kernel_size < 1 or (kernel_size % 2 == 0 and (kernel_size, stride) != (2, 2)):
        raise ValueError(f"pool: kernel_size must be odd, or 2 with stride 2, got {kernel_size} with stride {stride}")
    padding = kernel_size // 2 if kernel_size % 2 else 0
    if kind == "max":
        return nn.MaxPool2d(kernel_size, stride, padding, ceil_mode=kernel_size % 2 == 0)
    return nn.AvgPool2d(kernel_size, stride, padding, ceil_mode=kernel_size % 2 == 0)


def conv(in_channels: int, out_channels: int, stride: int, *, kernel_size: int = 3) -> nn.Module:
    """A bare convolution (no bias, no BN): CondenseNet's stem, whose dense layers normalise their inputs."""
    return nn.Conv2d(in_channels, out_channels, _odd(kernel_size), stride, kernel_size // 2, bias=False)


def bn_act(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    activation: Activation = "relu",
    bn_eps: float,
    bn_momentum: float,
) -> nn.Module:
    """BatchNorm + activation over the features before pooling, for pre-activation networks (DPN, CondenseNet)."""
    if in_channels != out_channels or stride != 1:
        raise ValueError(f"bn_act: keeps shape; got {in_channels} -> {out_channels}, stride {stride}")
    return BnAct(in_channels, activation, bn_eps, bn_momentum)
