"""The ResNet basic block (He et al. 2016, arXiv 1512.03385, Fig. 2 left) as an engine op.

Registered as ``basic_block`` through the ``nas.ops`` entry point. The engine's op convention:
``factory(in_channels, out_channels, stride, *, <typed options with defaults>, bn_eps, bn_momentum)``;
the keyword-only options are what an IR block's ``options`` may set, and each one changes the module.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

BlockActivation = Literal["relu", "hardswish"]


def _activation(name: str) -> nn.Module:
    return nn.Hardswish() if name == "hardswish" else nn.ReLU()


class BasicBlock(nn.Module):
    """conv-BN-act -> conv-BN, plus a shortcut (identity, or 1x1 conv-BN when the shape changes), then act."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        kernel_size: int,
        activation: BlockActivation,
        bn_eps: float,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act1 = _activation(activation)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:  # the paper's option B projection
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
            )
        self.act2 = _activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


def basic_block(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    kernel_size: int = 3,
    activation: BlockActivation = "relu",
    bn_eps: float,
    bn_momentum: float,
) -> nn.Module:
    """The ResNet basic block; ``kernel_size`` (odd) for both convs, ``activation`` after conv1 and the add."""
    if isinstance(kernel_size, bool) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: must be a positive odd integer, got {kernel_size!r}")
    if activation not in ("relu", "hardswish"):
        raise ValueError(f"activation: {activation!r} is not valid; valid: ['relu', 'hardswish']")
    return BasicBlock(in_channels, out_channels, stride, kernel_size, activation, bn_eps, bn_momentum)
