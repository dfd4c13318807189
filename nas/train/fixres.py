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
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from nas.compile import CellModule, ChainModule

PNASNET_TRAINED_CELLS = 3  # cell_9, cell_10, cell_11 of PNASNet-5 Large's twelve


@dataclass(frozen=True)
class FixResParts:
    """What the fine-tune changes: ``trained`` parameter names, ``adapting`` module names (train mode)."""

    family: str
    trained: tuple[str, ...]
    adapting: tuple[str, ...]


def fixres_parts(model: nn.Module) -> FixResParts:
    """The parameters to train and the modules to put in train mode for ``model`` (see the module docstring)."""
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
