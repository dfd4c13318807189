"""FixRes: fine-tune at the test resolution what the resolution change disturbs (arXiv 1906.06423 §3-4).

Training with RandomResizedCrop shows objects larger than the test transform's central crop does;
testing at a higher resolution fixes the apparent size but shifts the statistics of the pooled
features. FixRes fine-tunes, at the test resolution and with the test-time preprocessing, only the
layers after which that shift matters, as its reference code does per family
(facebookresearch/FixRes ``imnet_finetune/train.py``):

- ResNet: ``fc`` trained; ``layer4[2].bn3``, the last BatchNorm before pooling, in train mode
  (its running statistics adapt; its scale and shift stay frozen). Here: every network without a
  head convolution (SE-ResNeXt, DPN, CondenseNet, ...): the classifier, and the last BatchNorm.
- EfficientNet: ``classifier`` and ``conv_head`` trained, ``bn2`` in train mode. Here: every chain
  network whose head has a convolution (EfficientNet, MobileNetV3, ShuffleNet's conv5): the
  classifier and the head's convolutions, the head's BatchNorms in train mode. (In the reference,
  ``model.requires_grad = False`` sets a plain attribute, so it actually trains every weight of
  the EfficientNet; this follows its stated intent.)
- PNASNet: the last three cells and ``last_linear`` trained, with the final dropout. Here: NASNet
  networks, the same (the last three built cells and the classifier).

The rest of the network is in eval mode throughout: its BatchNorm statistics stay those of R_train.

**Kernel taps R_train never reached.** The rules above assume what the paper's networks have at
R_train: feature maps at least as large as the kernels, so that a larger input only enlarges the
map that global pooling averages and shifts the pooled statistics. A network whose output stride
exceeds a small R_train breaks that assumption: MobileNetV3-Small at 16 px has a 2 x 2 map before
its stride-16 block and 1 x 1 maps after it, so its global pooling averages one pixel, and its only
spatial combination is that block's 5 x 5 depthwise convolution, whose zero padding lets four taps
(one per quadrant) multiply features; the 1 x 1 maps after it train the centre tap only. The other
taps never received a gradient. At R_test the maps grow (3 x 3, then 2 x 2): the trained taps read
one corner, the rest of the frame reaches the classifier only through untrained taps (digits,
16 -> 24 px, seeds 0-2: 0.34 for the whole image, below any 16 x 16 corner window of it, 0.40-0.46,
while the central window, at the same scale, scores 0.91). No fine-tune of the classifier, the head
or the BatchNorm statistics recombines what those layers never combined (0.55-0.64). So when R_test
reaches taps that R_train did not (``unreached_convolutions``), the fine-tune trains the whole
network, every module in train mode (what the reference's EfficientNet fine-tune does in effect):
on digits, MobileNetV3-Small after FixRes goes from 0.61 to 0.92 at 24 px and from 0.84 to 0.94 at
20 px, against 0.95 at 16 px; the NASNet proxy trained at 8 px from 0.958 to 0.967 at 12 px
(benchmarks/results/fixres_gap/). A network whose maps cover its kernels at R_train (every preset at
ImageNet sizes, the NASNet proxy at 16 px) reaches no new tap, and its rule is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nas.compile import CellModule, ChainModule

PNASNET_TRAINED_CELLS = 3  # cell_9, cell_10, cell_11 of PNASNet-5 Large's twelve


@dataclass(frozen=True)
class FixResParts:
    """What the fine-tune changes: ``trained`` parameter names, ``adapting`` module names (train mode)."""

    family: str
    trained: tuple[str, ...]
    adapting: tuple[str, ...]
    unreached: tuple[str, ...] = ()  # convolutions with kernel taps reached at R_test but not at R_train


def fixres_parts(
    model: nn.Module, train_shape: Sequence[int] | None = None, test_shape: Sequence[int] | None = None
) -> FixResParts:
    """The parameters to train and the modules to put in train mode for ``model`` (see the module docstring).

    ``train_shape`` and ``test_shape`` (one image's ``(channels, height, width)`` at R_train and R_test):
    when R_test reaches kernel taps R_train never did, every parameter trains and every module adapts.
    Without them: the family's parts alone."""
    parts = _family_parts(model)
    if train_shape is None or test_shape is None:
        return parts
    unreached = unreached_convolutions(model, train_shape, test_shape)
    if not unreached:
        return parts
    return FixResParts(
        f"whole network: kernel taps reached at {test_shape[-1]} px, never at {train_shape[-1]} px",
        tuple(name for name, _ in model.named_parameters()),
        tuple(name for name, _ in model.named_children()),
        unreached,
    )


def reached_taps(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> frozenset[int]:
    """The kernel positions along one axis that multiply an input pixel (not zero padding) at some output."""
    outputs = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return frozenset(
        t for t in range(kernel) if any(0 <= o * stride - padding + t * dilation < size for o in range(outputs))
    )


def unreached_convolutions(model: nn.Module, train_shape: Sequence[int], test_shape: Sequence[int]) -> tuple[str, ...]:
    """The convolutions of ``model`` with a kernel tap that multiplies image data at ``test_shape`` but only
    zero padding at ``train_shape``: a weight that never received a gradient at R_train."""
    low, high = _conv_input_sizes(model, train_shape), _conv_input_sizes(model, test_shape)
    found = []
    for name, conv in model.named_modules():
        if not isinstance(conv, nn.Conv2d) or name not in low or name not in high:
            continue
        if isinstance(conv.padding, str):  # "same" (stride 1, odd kernels here) or "valid"
            same = conv.padding == "same"
            padding = tuple(d * (k - 1) // 2 if same else 0 for k, d in zip(conv.kernel_size, conv.dilation))
        else:
            padding = tuple(conv.padding)
        for axis in range(2):
            args = (conv.kernel_size[axis], conv.stride[axis], padding[axis], conv.dilation[axis])
            if not reached_taps(high[name][axis], *args) <= reached_taps(low[name][axis], *args):
                found.append(name)
                break
    return tuple(found)


def _conv_input_sizes(model: nn.Module, shape: Sequence[int]) -> dict[str, tuple[int, int]]:
    """Each convolution's input (height, width) for one image of ``shape``; no state of ``model`` changes."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda _, args, name=name: sizes.__setitem__(name, (args[0].shape[-2], args[0].shape[-1]))
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    modes = {module: module.training for module in model.modules()}
    parameter = next(model.parameters(), None)
    try:
        model.eval()  # BatchNorm uses, and does not update, its statistics
        with torch.no_grad():
            model(torch.zeros(1, *shape, device=None if parameter is None else parameter.device))
    finally:
        for handle in hooks:
            handle.remove()
        for module, mode in modes.items():
            module.train(mode)
    return sizes


def _family_parts(model: nn.Module) -> FixResParts:
    if isinstance(model, CellModule):
        built = [f"cells.{i}" for i, live in enumerate(model.live) if live][-PNASNET_TRAINED_CELLS:]
        trained = tuple(
            name
            for name, _ in model.named_parameters()
            if name.startswith(("classifier.",)) or any(name.startswith(cell + ".") for cell in built)
        )
        return FixResParts("nasnet (PNASNet rule: last cells + classifier)", trained, (*built, "dropout"))
    if not isinstance(model, ChainModule):
        raise ValueError(f"FixRes: no rule for a {type(model).__name__}; it knows the networks nas compiles")
    classifier = tuple(f"classifier.{name}" for name, _ in model.classifier.named_parameters())
    head = [(f"head.{name}" if name else "head", module) for name, module in model.head.named_modules()]
    convolutions = [name for name, module in head if isinstance(module, nn.Conv2d)]
    if convolutions:
        norms = tuple(name for name, module in head if isinstance(module, nn.modules.batchnorm._BatchNorm))
        trained = classifier + tuple(
            f"{name}.{p}" for name in convolutions for p, _ in model.get_submodule(name).named_parameters()
        )
        return FixResParts("head convolution (EfficientNet rule: classifier + conv_head, bn2 adapts)", trained, norms)
    features = [
        (name, module)
        for name, module in model.named_modules()
        if name.startswith(("stem", "stages", "head")) and isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]
    if not features:
        raise ValueError("FixRes: the network has no BatchNorm before its pooling")
    return FixResParts(
        "no head convolution (ResNet rule: fc, the last BatchNorm adapts)", classifier, (features[-1][0],)
    )


def prepare_fixres(model: nn.Module, parts: FixResParts) -> None:
    """Freeze every parameter but ``parts.trained`` (set ``requires_grad``)."""
    trained = set(parts.trained)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trained)


class FixResMode:
    """``model.eval()``, then the ``adapting`` modules in train mode: the ``Trainer``'s ``set_mode``."""

    def __init__(self, parts: FixResParts) -> None:
        self.parts = parts

    def __call__(self, model: nn.Module) -> None:
        model.eval()
        for name in self.parts.adapting:
            model.get_submodule(name).train()
