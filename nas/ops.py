"""The op registry's factories, and the layers every space shares.

Every op is a factory with one signature::

    factory(in_channels, out_channels, stride, *, <options>, bn_eps, bn_momentum) -> nn.Module

The keyword-only parameters other than ``bn_eps``/``bn_momentum`` are the op's *declared
options*: each has a type annotation and its one default, here in the signature; an IR block's
``options`` are checked against them and all of them are passed on (``build_op``).
``bn_eps``/``bn_momentum`` are the network's BatchNorm settings, passed to ops that take them.

Ops are registered by name in ``nas.registry.ops``; ours are declared as ``nas.ops`` entry points
in ``pyproject.toml``, the path a plug-in's ops take. ``build_op`` also accepts a callable, so a
user can hand in a layer without registering it (timm ``get_act_layer``).

The ops of cell networks (NASNet's 13, NAS-Bench-201's residual block) are in ``nas.cell_ops``;
the seed papers' blocks in ``nas.seed_ops``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any, get_type_hints

import torch
from torch import nn
from torch.nn import functional as F

from nas import registry
from nas.ir import Activation, BlockSpec, Gate, Padding
from nas.serialization import decode_value

OpFactory = Callable[..., nn.Module]
OPS = registry.ops
NORM_DEFAULTS: dict[str, float] = {"bn_eps": 1e-5, "bn_momentum": 0.1}  # PyTorch's BatchNorm2d defaults


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Decorator adding a factory to the op registry under ``name``; a taken name raises ``ValueError``."""
    return OPS.register(name)


def get_op(op: str | OpFactory) -> OpFactory:
    """The factory for ``op`` (a registered name, or a callable passed through)."""
    if callable(op):
        return op
    return OPS.get(op)


def check_op(path: str, name: object) -> None:
    """Raise ``ValueError`` naming ``path`` unless ``name`` is a registered op."""
    OPS.check(path, name)


def declared_options(op: str | OpFactory) -> dict[str, inspect.Parameter]:
    """The options ``op`` declares: its keyword-only parameters other than the BatchNorm settings."""
    parameters = inspect.signature(get_op(op)).parameters.values()
    return {p.name: p for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in NORM_DEFAULTS}


def option_types(op: str | OpFactory) -> dict[str, Any]:
    """The annotated type of every declared option (``typing.get_type_hints`` of the factory)."""
    hints = get_type_hints(get_op(op))
    return {name: hints.get(name) for name in declared_options(op)}


def check_options(op: str | OpFactory, options: Mapping[str, Any], path: str = "options") -> None:
    """``ValueError`` naming the option unless ``options`` are declared by ``op`` and of its types."""
    declared, types = declared_options(op), option_types(op)
    for name, value in options.items():
        if name not in declared:
            raise ValueError(
                f"{path}.{name}: op {op if isinstance(op, str) else op.__name__!r} takes no such "
                f"option; valid: {sorted(declared)}"
            )
        if types[name] is not None:
            decode_value(types[name], value, f"{path}.{name}")
    missing = [n for n, p in declared.items() if p.default is p.empty and n not in options]
    if missing:
        raise ValueError(f"{path}.{missing[0]}: op {op!r} needs this option")


def with_defaults(block: BlockSpec) -> BlockSpec:
    """``block`` with every declared option of its op spelled out, defaults included.

    Two blocks that build the same module then compare equal, so the result is the key to use for
    anything measured per block (a latency table), while the IR itself keeps what its space set.
    """
    declared = declared_options(block.op)
    defaults = {name: p.default for name, p in declared.items() if p.default is not p.empty}
    return dataclasses.replace(block, options={**defaults, **block.op_options()})


def build_op(
    op: str | OpFactory,
    in_channels: int,
    out_channels: int,
    stride: int,
    options: Mapping[str, Any] | None = None,
    **norm: float,
) -> nn.Module:
    """Call the factory of ``op`` with every one of ``options`` (checked against its declaration).

    ``norm`` holds ``bn_eps``/``bn_momentum`` (default ``NORM_DEFAULTS``); they reach factories
    that take them.
    """
    factory, options = get_op(op), dict(options or {})
    unknown_norm = sorted(set(norm) - set(NORM_DEFAULTS))
    if unknown_norm:
        raise ValueError(f"build_op: {unknown_norm[0]!r} is not a BatchNorm setting; options go in options=")
    check_options(op, options)
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    settings = {k: v for k, v in {**NORM_DEFAULTS, **norm}.items() if takes_any or k in parameters}
    return factory(in_channels, out_channels, stride, **options, **settings)


def activation(name: str, inplace: bool = True) -> nn.Module:
    """The module for an activation name of ``nas.ir.Activation``."""
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    if name == "relu6":
        return nn.ReLU6(inplace=inplace)
    if name == "hardswish":  # h-swish, arXiv 1905.02244 §5.2
        return nn.Hardswish(inplace=inplace)
    if name == "silu":  # swish, used by EfficientNet
        return nn.SiLU(inplace=inplace)
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}")


_make_activation = activation  # for factories whose option is named ``activation``, which hides this function


def _bn(channels: int, bn_eps: float, bn_momentum: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum)


class ConvBnAct(nn.Sequential):
    """Conv (no bias, 'same' padding) -> BatchNorm -> activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation_name: str = "relu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
            ),
            _bn(out_channels, bn_eps, bn_momentum),
            activation(activation_name),
        )


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (arXiv 1709.01507): pool -> 1x1 -> act -> 1x1 -> gate -> scale."""

    def __init__(
        self, channels: int, squeeze_channels: int, gate: str = "sigmoid", activation_name: str = "relu"
    ) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.activation = activation(activation_name)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        # Not in place: hardsigmoid_'s backward needs its input, so autograd would save a copy.
        self.gate = nn.Hardsigmoid() if gate == "hardsigmoid" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = self.gate(self.fc2(self.activation(self.fc1(scale))))
        return x * scale


class DropPath(nn.Module):
    """Drops whole examples of a path in training; survivors are rescaled by 1 / keep.

    The rate is ``drop_prob * progress``. ``progress`` (0..1) is how far training has come:
    ScheduledDropPath (arXiv 1707.07012 §4, App. A.5) raises it linearly over training through
    ``set_drop_path_progress``; left at 1.0 the layer is plain DropPath / stochastic depth.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)
        self.progress = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rate = self.drop_prob * self.progress
        if not self.training or rate <= 0.0:
            return x
        keep = 1.0 - rate
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, progress={self.progress}"


def set_drop_path_progress(module: nn.Module, progress: float) -> None:
    """Set the ScheduledDropPath ``progress`` (fraction of training done) of every DropPath."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress: must be in [0, 1], got {progress}")
    for layer in module.modules():
        if isinstance(layer, DropPath):
            layer.progress = float(progress)


class MBConv(nn.Module):
    """Mobile inverted bottleneck (MobileNetV2/V3, EfficientNet): expand -> depthwise -> SE -> project."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        kernel_size: int,
        expand_channels: int,
        se_channels: int,
        se_gate: str,
        se_activation: str,
        activation_name: str,
        drop_path: float,
        bn_eps: float,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        hidden = expand_channels or in_channels
        layers: list[nn.Module] = []
        if hidden != in_channels:
            layers.append(
                ConvBnAct(
                    in_channels, hidden, 1, activation_name=activation_name, bn_eps=bn_eps, bn_momentum=bn_momentum
                )
            )
        layers.append(
            ConvBnAct(
                hidden,
                hidden,
                kernel_size,
                stride,
                groups=hidden,
                activation_name=activation_name,
                bn_eps=bn_eps,
                bn_momentum=bn_momentum,
            )
        )
        if se_channels:
            layers.append(SqueezeExcitation(hidden, se_channels, se_gate, se_activation))
        layers.append(
            ConvBnAct(hidden, out_channels, 1, activation_name="identity", bn_eps=bn_eps, bn_momentum=bn_momentum)
        )
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path) if self.use_residual and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if not self.use_residual:
            return out
        out = self.drop_path(out)
        # In place, as torchvision: the projection BN's output is not saved for backward, so
        # this saves one activation-sized allocation per residual block.
        out += x
        return out


# ---------------------------------------------------------------- chain ops (declared options)


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    kernel_size: int = 1,
    activation: Activation = "relu",
    bn_eps: float,
    bn_momentum: float,
) -> nn.Module:
    """Conv -> BN -> activation: stems, heads and 1x1 projections of the chain networks."""
    return ConvBnAct(
        in_channels,
        out_channels,
        _odd(kernel_size),
        stride,
        activation_name=activation,
        bn_eps=bn_eps,
        bn_momentum=bn_momentum,
    )


def conv_bn(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    kernel_size: int = 3,
    padding: Padding = "same",
    bn_eps: float,
    bn_momentum: float,
) -> nn.Module:
    """Conv -> BN, no activation: the stems of the cell networks. ``padding`` "valid" is NASNet's ImageNet
    stem (TF ``conv0``, a 3x3 stride-2 VALID conv); the IR sizes a block by the same option."""
    pad = 0 if padding == "valid" else (_odd(kernel_size) - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, bias=False),
        _bn(out_channels, bn_eps, bn_momentum),
    )


def activation_layer(in_channels: int, out_channels: int, stride: int, *, activation: Activation = "relu") -> nn.Module:
    """An activation alone (registered as ``activation``): the head of NASNet, a ReLU before the pool (TF
    ``_build_nasnet_base``). Not in place: the state it reads may be read elsewhere."""
    if in_channels != out_channels or stride != 1:
        raise ValueError(f"activation: keeps the shape; got {in_channels} -> {out_channels}, stride {stride}")
    return _make_activation(activation, inplace=False)


def mbconv(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    kernel_size: int = 3,
    expand_channels: int = 0,
    se_channels: int = 0,
    se_gate: Gate = "sigmoid",
    se_activation: Activation = "relu",
    activation: Activation = "relu",
    drop_path: float = 0.0,
    bn_eps: float,
    bn_momentum: float,
) -> nn.Module:
    """MobileNetV2/V3 and EfficientNet bottleneck. ``expand_channels`` 0: no expansion (ratio 1);
    ``se_channels`` 0: no squeeze-and-excitation; ``drop_path``: stochastic depth of the residual."""
    if expand_channels < 0 or se_channels < 0 or not 0 <= drop_path < 1:
        raise ValueError(
            f"mbconv: expand_channels and se_channels must be >= 0 and drop_path in [0, 1), got "
            f"{expand_channels}, {se_channels}, {drop_path}"
        )
    return MBConv(
        in_channels,
        out_channels,
        stride,
        _odd(kernel_size),
        expand_channels,
        se_channels,
        se_gate,
        se_activation,
        activation,
        drop_path,
        bn_eps,
        bn_momentum,
    )


def _odd(kernel_size: int) -> int:
    """'Same' padding keeps the IR's sizes only for odd kernels."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: must be a positive odd integer, got {kernel_size!r}")
    return kernel_size


class CondensedLinear(nn.Module):
    """A classifier reading only its most used inputs (reference ``CondensingLinear``): index select -> Linear."""

    def __init__(self, in_features: int, out_features: int, kept: int, bias: bool = True) -> None:
        super().__init__()
        self.register_buffer("index", torch.arange(kept) % in_features)
        self.linear = nn.Linear(kept, out_features, bias=bias)

    index: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.index_select(1, self.index))

    @classmethod
    @torch.no_grad()
    def from_linear(cls, layer: nn.Linear, keep: float) -> CondensedLinear:
        """Keep the ``int(in * keep)`` inputs of largest L1 norm over the classes, in ascending order of it."""
        kept = int(layer.in_features * keep)
        if not 0 < kept <= layer.in_features:
            raise ValueError(f"condense: classifier_keep {keep} keeps {kept} of {layer.in_features} inputs")
        index = layer.weight.abs().sum(0).argsort(stable=True)[layer.in_features - kept :]
        condensed = cls(layer.in_features, layer.out_features, kept, layer.bias is not None)
        condensed.to(layer.weight.device, layer.weight.dtype)
        condensed.index.copy_(index)
        condensed.linear.weight.copy_(layer.weight[:, index])
        if layer.bias is not None:
            condensed.linear.bias.copy_(layer.bias)
        return condensed
