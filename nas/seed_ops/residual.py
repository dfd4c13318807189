"""Residual blocks of the seed papers: the SE-ResNet / SE-ResNeXt bottleneck (SENet, arXiv 1709.01507)
and DPN's dual-path block (arXiv 1707.01629).

Registered as ``nas.ops`` entry points (``pyproject.toml``). Layers are created in timm's order
(``timm/models/resnet.py`` ``Bottleneck``, ``timm/models/dpn.py`` ``DualPathBlock``), so that timm's
state dicts map onto ours key by key (``nas.from_timm``).
"""

from __future__ import annotations

import torch
from torch import nn

from nas.ops import SqueezeExcitation, _bn
from nas.seed_ops.shuffle import check_divisible


class Bottleneck(nn.Module):
    """ResNet bottleneck 1x1 -> 3x3 (strided, ``groups``: ResNeXt's cardinality) -> 1x1, each conv + BN,
    ReLU after the first two; the SE gate rescales the residual branch before the addition (SENet
    Fig. 3); a 1x1 conv + BN projects the shortcut when the shape changes; ReLU after the sum."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        mid_channels: int,
        groups: int,
        se_channels: int,
        bn_eps: float,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        norm = (bn_eps, bn_momentum)
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.bn1 = _bn(mid_channels, *norm)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = _bn(mid_channels, *norm)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.bn3 = _bn(out_channels, *norm)
        self.se = SqueezeExcitation(out_channels, se_channels) if se_channels else None
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), _bn(out_channels, *norm))
            if stride != 1 or in_channels != out_channels
            else None
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class BnActConv(nn.Module):
    """BN -> ReLU -> conv: DPN's pre-activation layer (timm ``BnActConv2d``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        groups: int,
        bn_eps: float,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        self.bn = _bn(in_channels, bn_eps, bn_momentum)
        self.act = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.bn(x)))


class DualPathBlock(nn.Module):
    """One DPN block (paper Fig. 2e, Eq. 4): a shared bottleneck 1x1 -> grouped 3x3 -> 1x1 whose output
    is split: the first ``residual_channels`` are added to the residual path (ResNet-like re-use), the
    other ``increment`` are concatenated onto the densely connected path (DenseNet-like exploration).

    The two paths travel as one tensor, the residual path first. The first block of a stage
    (``projection``; strided when the stage downsamples) projects its input to ``residual_channels +
    2 * increment`` channels with a 1x1 conv, so its output is ``residual + 3 * increment`` wide; every
    other block grows the dense path by ``increment``.
    """

    def __init__(
        self,
        in_channels: int,
        residual_channels: int,
        increment: int,
        bottleneck_channels: int,
        groups: int,
        stride: int,
        projection: bool,
        bn_eps: float,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        norm = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        self.residual_channels = residual_channels
        self.projection = (
            BnActConv(in_channels, residual_channels + 2 * increment, 1, stride, 1, **norm) if projection else None
        )
        self.conv_a = BnActConv(in_channels, bottleneck_channels, 1, 1, 1, **norm)
        self.conv_b = BnActConv(bottleneck_channels, bottleneck_channels, 3, stride, groups, **norm)
        self.conv_c = BnActConv(bottleneck_channels, residual_channels + increment, 1, 1, 1, **norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        paths = x if self.projection is None else self.projection(x)
        out = self.conv_c(self.conv_b(self.conv_a(x)))
        split = self.residual_channels
        return torch.cat((paths[:, :split] + out[:, :split], paths[:, split:], out[:, split:]), dim=1)


# ---------------------------------------------------------------- ops (declared options)


def se_bottleneck(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    mid_channels: int = 0,
    groups: int = 1,
    se_channels: int = 0,
    bn_eps: float,
    bn_momentum: float,
) -> nn.Module:
    """ResNet / ResNeXt bottleneck with optional SE. ``mid_channels`` 0: a quarter of ``out_channels``
    (ResNet's expansion 4); ``se_channels`` 0: no SE (SENet's reduction 16 is ``out_channels // 16``)."""
    mid = mid_channels or max(1, out_channels // 4)
    check_divisible("se_bottleneck", "mid_channels", mid, groups)
    if se_channels < 0:
        raise ValueError(f"se_bottleneck: se_channels must be >= 0, got {se_channels}")
    return Bottleneck(in_channels, out_channels, stride, mid, groups, se_channels, bn_eps, bn_momentum)


def dual_path_block(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    residual_channels: int = 0,
    bottleneck_channels: int = 0,
    groups: int = 1,
    projection: bool = False,
    bn_eps: float,
    bn_momentum: float,
) -> nn.Module:
    """DPN block. A projecting block (``projection``, or any strided block) has ``increment = (out -
    residual) / 3``; ``residual_channels`` 0 gives it about half of the output. Any other block grows
    the dense path by ``out - in`` and reads its residual path from the first ``residual_channels``
    inputs (0: half of them). ``bottleneck_channels`` 0: as wide as the residual path."""
    projection = projection or stride != 1
    if projection:
        residual = residual_channels or out_channels - 3 * (out_channels // 6)
        increment, remainder = divmod(out_channels - residual, 3)
        if remainder or increment < 0:
            raise ValueError(
                f"dual_path_block: a projecting block has out = residual + 3 * increment; "
                f"{out_channels} - {residual} is not a multiple of 3"
            )
    else:
        residual = residual_channels or in_channels // 2
        increment = out_channels - in_channels
        if increment < 0 or residual > in_channels or residual < 1:
            raise ValueError(
                f"dual_path_block: a block without projection keeps its input and adds to it; got "
                f"{in_channels} -> {out_channels} with residual_channels {residual}"
            )
    bottleneck = bottleneck_channels or residual
    check_divisible("dual_path_block", "bottleneck_channels", bottleneck, groups)
    return DualPathBlock(in_channels, residual, increment, bottleneck, groups, stride, projection, bn_eps, bn_momentum)
