"""CondenseNet's learned group convolution (arXiv 1711.09224 §3) and the ``condense`` step.

A ``LearnedGroupConv`` is BN -> ReLU -> a 1x1 convolution whose output channels are split into
``groups`` groups (output ``o`` belongs to group ``o % groups``, as in the reference
``layers.py``) and whose weights are masked: during the first half of training each group drops,
at the end of each of ``condense_factor - 1`` condensing stages, ``in_channels // condense_factor``
of the inputs it still reads, the ones whose weights have the smallest L1 norm over the group's
outputs, so that each group ends reading about ``1 / condense_factor`` of the inputs. Stage ``i`` of
``C - 1`` lasts while ``2 * progress < (i + 1) / (C - 1)`` (reference ``_check_drop``); training
progress (0..1) arrives through ``set_training_progress``, as ScheduledDropPath's does.

``condense(module)`` then replaces every learned group convolution by its deployment form: an index
layer that gathers each group's kept inputs -> BN -> ReLU -> a standard grouped 1x1 convolution ->
channel shuffle (which restores the interleaved output order), with outputs identical to the masked
layer's. The mask and the stage are buffers, so a checkpoint taken mid-training resumes them. A
network condensed before half-way keeps more inputs per group than the deployment preset
(``condensenet-74-condensed``) is built for, so its state dict loads only into a module condensed alike.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nas.ops import CondensedLinear
from nas.seed_ops.shuffle import channel_shuffle, check_divisible
from nas.training import ScheduledLayer


def condensing_stage(progress: float, condense_factor: int) -> int:
    """Number of condensing stages finished at ``progress``: 0 at the start, ``C - 1`` from half-way on."""
    for stage in range(condense_factor - 1):
        if 2 * progress < (stage + 1) / (condense_factor - 1):
            return stage
    return condense_factor - 1


class LearnedGroupConv(nn.Module):
    """BN -> ReLU -> masked 1x1 conv; ``set_training_progress`` drops inputs group by group."""

    def __init__(
        self, in_channels: int, out_channels: int, groups: int, condense_factor: int, bn_eps: float, bn_momentum: float
    ) -> None:
        super().__init__()
        if groups < 1 or out_channels % groups:
            raise ValueError(f"learned group conv: out_channels {out_channels} is not divisible by groups {groups}")
        if condense_factor < 1 or (in_channels // condense_factor < 1 and condense_factor > 1):
            raise ValueError(f"learned group conv: condense_factor {condense_factor} does not fit {in_channels} inputs")
        self.groups, self.condense_factor = groups, condense_factor
        self.norm = nn.BatchNorm2d(in_channels, eps=bn_eps, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.register_buffer("mask", torch.ones(out_channels, in_channels, 1, 1))
        self.register_buffer("stage", torch.zeros((), dtype=torch.long))
        self._stages_done = 0  # ``stage`` as a Python int: reading the buffer every step would sync a GPU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.relu(self.norm(x)), self.conv.weight * self.mask)

    def set_training_progress(self, progress: float) -> None:
        """Run every condensing step due by ``progress`` (fraction of training done) that has not run."""
        target = condensing_stage(progress, self.condense_factor)
        while self._stages_done < target:
            self._drop(self.conv.in_channels // self.condense_factor)
            self.stage += 1
            self._stages_done += 1

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if not self.stage.is_meta:
            self._stages_done = int(self.stage)

    @torch.no_grad()
    def _drop(self, count: int) -> None:
        """Each group stops reading the ``count`` inputs of least summed |weight| among those it still reads."""
        weight = (self.conv.weight * self.mask).abs().squeeze(-1).squeeze(-1)
        for group in range(self.groups):
            mask = self.mask[group :: self.groups, :, 0, 0]
            kept = mask[0].nonzero().flatten()
            importance = weight[group :: self.groups][:, kept].sum(0)
            dropped = kept[importance.argsort(stable=True)[:count]]
            self.mask[group :: self.groups, dropped] = 0.0

    def kept_inputs(self) -> list[torch.Tensor]:
        """For every group, the input channels it reads (ascending)."""
        return [self.mask[group, :, 0, 0].nonzero().flatten() for group in range(self.groups)]

    def extra_repr(self) -> str:
        return f"groups={self.groups}, condense_factor={self.condense_factor}, stage={self._stages_done}"


class CondensedConv(nn.Module):
    """The deployment form (reference ``CondensingConv``): index select -> BN -> ReLU -> grouped 1x1
    conv -> channel shuffle. The BN normalises the gathered positions, each with the statistics of
    the channel it gathers, so it has ``groups * kept`` channels, as in the reference."""

    def __init__(
        self, in_channels: int, out_channels: int, groups: int, kept: int, bn_eps: float, bn_momentum: float
    ) -> None:
        super().__init__()
        self.groups = groups
        # Until weights are loaded, each group reads the first ``kept`` inputs.
        self.register_buffer("index", torch.arange(kept).repeat(groups) % in_channels)
        self.norm = nn.BatchNorm2d(groups * kept, eps=bn_eps, momentum=bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(groups * kept, out_channels, 1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.norm(x.index_select(1, self.index)))
        return channel_shuffle(self.conv(x), self.groups)

    @classmethod
    @torch.no_grad()
    def from_learned(cls, layer: LearnedGroupConv) -> CondensedConv:
        """The deployment form of ``layer``, computing exactly what it computes."""
        kept = layer.kept_inputs()
        if len({len(k) for k in kept}) != 1:
            raise ValueError("condense: the groups keep different numbers of inputs")
        out_channels, groups, norm = layer.conv.out_channels, layer.groups, layer.norm
        condensed = cls(layer.conv.in_channels, out_channels, groups, len(kept[0]), norm.eps, norm.momentum)
        condensed.to(layer.conv.weight.device, layer.conv.weight.dtype)
        index = torch.cat(kept)
        condensed.index.copy_(index)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(condensed.norm, name).copy_(getattr(norm, name)[index])
        condensed.norm.num_batches_tracked.copy_(norm.num_batches_tracked)
        condensed.train(layer.training)
        per_group = out_channels // groups
        for group, inputs in enumerate(kept):
            # Grouped-conv output ``group * per_group + j`` is original output ``j * groups + group``.
            condensed.conv.weight[group * per_group : (group + 1) * per_group] = layer.conv.weight[group::groups][
                :, inputs
            ]
        return condensed


def condense(module: nn.Module, classifier_keep: float | None = None) -> nn.Module:
    """Replace every ``LearnedGroupConv`` of ``module`` (in place) by its ``CondensedConv``; returns ``module``.

    The outputs do not change. ``classifier_keep`` (the reference converts with 0.5) also replaces
    the last ``nn.Linear`` by a ``CondensedLinear`` keeping that fraction of its inputs, which does
    change the outputs: the reference fine-tunes nothing after it, and reports its accuracy as is.
    """
    for name, child in list(module.named_modules()):
        if isinstance(child, LearnedGroupConv):
            _replace(module, name, CondensedConv.from_learned(child))
    if classifier_keep is not None:
        linears = [name for name, child in module.named_modules() if isinstance(child, (nn.Linear, CondensedLinear))]
        if not linears or isinstance(module.get_submodule(linears[-1].rpartition(".")[0]), CondensedLinear):
            raise ValueError(
                "condense: classifier_keep given, but the module has no nn.Linear classifier left to condense"
            )
        _replace(module, linears[-1], CondensedLinear.from_linear(module.get_submodule(linears[-1]), classifier_keep))
    return module


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attribute = name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, attribute, new)


def set_training_progress(module: nn.Module, progress: float) -> None:
    """Tell every layer with a training schedule (``nas.training.ScheduledLayer``: CondenseNet's condensing
    stages) how far training has come, ``progress`` in [0, 1]."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress: must be in [0, 1], got {progress}")
    for layer in module.modules():
        if layer is not module and isinstance(layer, ScheduledLayer):
            layer.set_training_progress(progress)


class DenseLayer(nn.Module):
    """CondenseNet's dense layer (paper Fig. 5): [2x2 average pool when strided: the transition
    between blocks] -> learned group 1x1 conv to ``bottleneck * growth`` -> BN -> ReLU -> grouped 3x3
    conv to ``growth``; the result is concatenated after the input (DenseNet connectivity)."""

    def __init__(
        self,
        in_channels: int,
        growth: int,
        stride: int,
        groups_1x1: int,
        groups_3x3: int,
        condense_factor: int,
        bottleneck: int,
        condensed: bool,
        bn_eps: float,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        width = bottleneck * growth
        if growth < 1:
            raise ValueError(f"dense_layer: growth (out - in) must be positive, got {growth}")
        check_divisible("dense_layer", "growth (out - in)", growth, groups_3x3)
        check_divisible("dense_layer", "bottleneck width", width, groups_1x1)
        if stride not in (1, 2):
            raise ValueError(f"dense_layer: stride must be 1 or 2, got {stride}")
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride == 2 else None
        if condensed:
            kept = in_channels - (condense_factor - 1) * (in_channels // condense_factor)
            self.conv_1: nn.Module = CondensedConv(in_channels, width, groups_1x1, kept, bn_eps, bn_momentum)
        else:
            self.conv_1 = LearnedGroupConv(in_channels, width, groups_1x1, condense_factor, bn_eps, bn_momentum)
        self.conv_2 = nn.Sequential(
            nn.BatchNorm2d(width, eps=bn_eps, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, growth, 3, 1, 1, groups=groups_3x3, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        return torch.cat((x, self.conv_2(self.conv_1(x))), dim=1)


def dense_layer(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    groups_1x1: int = 4,
    groups_3x3: int = 4,
    condense_factor: int = 4,
    bottleneck: int = 4,
    condensed: bool = False,
    bn_eps: float,
    bn_momentum: float,
) -> nn.Module:
    """CondenseNet dense layer adding ``out - in`` channels (the growth rate); ``condensed`` builds the
    deployment form directly (load the state dict of a ``condense``d network into it)."""
    if condense_factor < 1 or bottleneck < 1:
        raise ValueError(
            f"dense_layer: condense_factor and bottleneck must be >= 1, got {condense_factor}, {bottleneck}"
        )
    return DenseLayer(
        in_channels,
        out_channels - in_channels,
        stride,
        groups_1x1,
        groups_3x3,
        condense_factor,
        bottleneck,
        condensed,
        bn_eps,
        bn_momentum,
    )
