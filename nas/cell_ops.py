"""The ops of cell networks: NASNet's 13 (TF ``nasnet_utils.py``, arXiv 1707.07012 App. A.4), the
preprocessing of a cell's inputs, NAS-Bench-201's residual block between its cells and its ``none`` edge
(``zero``, arXiv 2001.00326 §2.1).

ReLU -> conv -> BN, NASNet's order; a separable conv is applied twice with no BN or ReLU between its
depthwise and pointwise parts; identity and pooling get a 1x1 conv when the channel count must
change. Registered as ``nas.ops`` entry points, like every op (``nas.ops`` holds the registry).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nas.ops import OpFactory, _bn


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two offset 1x1 paths, concatenated, then BN.

    TF ``factorized_reduction``; with stride 1 it is a 1x1 conv + BN. ``relu`` adds the leading
    ReLU that ``_reduce_prev_layer`` applies (``_combine_unused_states`` applies none).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 2,
        relu: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.relu = nn.ReLU() if relu else nn.Identity()
        self.stride = stride
        if stride == 1:
            self.path1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            self.path2 = None
        else:
            half = out_channels // 2
            self.path1 = nn.Conv2d(in_channels, half, 1, bias=False)
            self.path2 = nn.Conv2d(in_channels, out_channels - half, 1, bias=False)
        self.bn = _bn(out_channels, bn_eps, bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        if self.path2 is None:
            return self.bn(self.path1(x))
        path1 = self.path1(x[:, :, :: self.stride, :: self.stride])
        # Shift by one pixel (pad right/bottom, drop the first row/column) to sample the other grid.
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        path2 = self.path2(shifted[:, :, :: self.stride, :: self.stride])
        return self.bn(torch.cat([path1, path2], dim=1))


class ReluConvBn(nn.Sequential):
    """ReLU -> conv(s) -> BN, the NASNet order (App. A.4). ``kernels`` lists (kh, kw) convs."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        kernels: tuple[tuple[int, int], ...],
        dilation: int = 1,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        layers: list[nn.Module] = [nn.ReLU()]
        channels = in_channels
        for kh, kw in kernels:
            # A 1xk then kx1 pair strides once per axis, so the pair reduces like one conv.
            conv_stride = (stride if kh > 1 or len(kernels) == 1 else 1, stride if kw > 1 or len(kernels) == 1 else 1)
            padding = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
            layers.append(
                nn.Conv2d(channels, out_channels, (kh, kw), conv_stride, padding, dilation=dilation, bias=False)
            )
            channels = out_channels
        layers.append(_bn(out_channels, bn_eps, bn_momentum))
        super().__init__(*layers)


class SepConv(nn.Sequential):
    """TF ``separable_kxk_2``: [ReLU -> depthwise -> pointwise -> BN] twice; only the first strides."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        layers: list[nn.Module] = []
        channels = in_channels
        for repeat in range(2):
            layers += [
                nn.ReLU(),
                nn.Conv2d(
                    channels,
                    channels,
                    kernel_size,
                    stride if repeat == 0 else 1,
                    kernel_size // 2,
                    groups=channels,
                    bias=False,
                ),
                nn.Conv2d(channels, out_channels, 1, bias=False),
                _bn(out_channels, bn_eps, bn_momentum),
            ]
            channels = out_channels
        super().__init__(*layers)


class Pool(nn.Module):
    """Max or average pooling ('same' padding, padding excluded from averages), then a 1x1 conv +
    BN when the channel count changes (TF ``_apply_conv_operation``)."""

    def __init__(
        self,
        kind: str,
        kernel_size: int,
        in_channels: int,
        out_channels: int,
        stride: int,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.pool = (
            nn.MaxPool2d(kernel_size, stride, padding)
            if kind == "max"
            else nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=False)
        )
        self.project = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), _bn(out_channels, bn_eps, bn_momentum))
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.pool(x))


def identity(in_channels: int, out_channels: int, stride: int, *, bn_eps: float, bn_momentum: float) -> nn.Module:
    """Identity; a ReLU -> 1x1 conv -> BN when the shape must change."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return ReluConvBn(in_channels, out_channels, stride, ((1, 1),), bn_eps=bn_eps, bn_momentum=bn_momentum)


class Zero(nn.Module):
    """Zeros of the output's shape: NAS-Bench-201's ``none`` edge (``Zero`` of its ``cell_operations.py``).

    As the reference, ``x * 0`` where the width is kept (so the graph reaches every layer, and a node
    whose every edge is ``none`` sums to zeros of its shape), a new zero tensor where it changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == self.out_channels:
            return (x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]).mul(0.0)
        size = (-(-x.shape[2] // self.stride), -(-x.shape[3] // self.stride))  # 'same' padding: ceil
        return x.new_zeros((x.shape[0], self.out_channels, *size))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def zero(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """NAS-Bench-201's ``none``: an edge that contributes nothing (``Zero``)."""
    return Zero(in_channels, out_channels, stride)


def factorized_reduce(
    in_channels: int, out_channels: int, stride: int, *, relu: bool = True, bn_eps: float, bn_momentum: float
) -> nn.Module:
    """TF ``factorized_reduction``: with its leading ReLU where it reduces a cell input (``_reduce_prev_layer``),
    without where it matches a cell input to the output (``relu`` false, ``_combine_unused_states``)."""
    return FactorizedReduce(in_channels, out_channels, stride, relu, bn_eps, bn_momentum)


def _relu_conv_bn(kernels: tuple[tuple[int, int], ...], dilation: int = 1) -> OpFactory:
    def factory(in_channels: int, out_channels: int, stride: int, *, bn_eps: float, bn_momentum: float) -> nn.Module:
        return ReluConvBn(in_channels, out_channels, stride, kernels, dilation, bn_eps, bn_momentum)

    return factory


def _separable(kernel_size: int) -> OpFactory:
    def factory(in_channels: int, out_channels: int, stride: int, *, bn_eps: float, bn_momentum: float) -> nn.Module:
        return SepConv(in_channels, out_channels, kernel_size, stride, bn_eps, bn_momentum)

    return factory


def _pool(kind: str, kernel_size: int) -> OpFactory:
    def factory(in_channels: int, out_channels: int, stride: int, *, bn_eps: float, bn_momentum: float) -> nn.Module:
        return Pool(kind, kernel_size, in_channels, out_channels, stride, bn_eps, bn_momentum)

    return factory


# Module-level names, so that each is an entry point of the ``nas.ops`` group (pyproject.toml).
conv_1x1 = _relu_conv_bn(((1, 1),))
conv_3x3 = _relu_conv_bn(((3, 3),))
conv_1x3_3x1 = _relu_conv_bn(((1, 3), (3, 1)))
conv_1x7_7x1 = _relu_conv_bn(((1, 7), (7, 1)))
dil_conv_3x3 = _relu_conv_bn(((3, 3),), dilation=2)
sep_conv_3x3, sep_conv_5x5, sep_conv_7x7 = (_separable(k) for k in (3, 5, 7))
max_pool_3x3, max_pool_5x5, max_pool_7x7 = (_pool("max", k) for k in (3, 5, 7))
avg_pool_3x3 = _pool("avg", 3)


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's residual block between stages (arXiv 2001.00326 §2.1; ``ResNetBasicblock`` of its code):
    ReLU-conv3x3-BN (strided), ReLU-conv3x3-BN, plus a shortcut: 2x2 average pool then 1x1 conv when it
    reduces, ReLU-conv1x1-BN when only the width changes. The pool rounds up (``ceil_mode``), so odd
    sizes follow the IR's rule; even ones (the reference's) are unchanged."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        norm = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        self.conv_a = ReluConvBn(in_channels, out_channels, stride, ((3, 3),), 1, **norm)
        self.conv_b = ReluConvBn(out_channels, out_channels, 1, ((3, 3),), 1, **norm)
        if stride != 1:
            self.shortcut: nn.Module = nn.Sequential(
                nn.AvgPool2d(2, stride, ceil_mode=True), nn.Conv2d(in_channels, out_channels, 1, bias=False)
            )
        elif in_channels != out_channels:
            self.shortcut = ReluConvBn(in_channels, out_channels, 1, ((1, 1),), 1, **norm)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


def resnet_basic_block(
    in_channels: int, out_channels: int, stride: int, *, bn_eps: float, bn_momentum: float
) -> nn.Module:
    """NAS-Bench-201's residual block (``ResNetBasicBlock``)."""
    return ResNetBasicBlock(in_channels, out_channels, stride, bn_eps, bn_momentum)
