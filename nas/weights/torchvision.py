"""Start from torchvision's pretrained weights: map its state dicts onto our presets.

Our compiled EfficientNet, MobileNetV3 and ShuffleNet V2 have torchvision's layers in torchvision's order, but
under our own module names. The mapping walks torchvision's canonical key order (read off a
model built on the meta device, so nothing is allocated or downloaded) and pairs it with ours,
checking every shape; any mismatch is a ``ValueError`` naming both keys.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from nas.api import materialize
from nas.cost import build_on_meta

TORCHVISION_TO_PRESET: dict[str, str] = {
    **{f"efficientnet_b{i}": f"efficientnet-b{i}" for i in range(8)},
    "mobilenet_v3_large": "mobilenetv3-large",
    "mobilenet_v3_small": "mobilenetv3-small",
    **{f"shufflenet_v2_{size}": f"shufflenet-v2-{size.replace('_', '.')}" for size in ("x0_5", "x1_0", "x1_5", "x2_0")},
}


def _torchvision_name(name: str) -> str:
    if name in TORCHVISION_TO_PRESET:
        return name
    for tv_name, preset in TORCHVISION_TO_PRESET.items():
        if preset == name:
            return tv_name
    valid = sorted(TORCHVISION_TO_PRESET) + sorted(TORCHVISION_TO_PRESET.values())
    raise ValueError(f"no torchvision model maps to {name!r}; valid: {valid}")


def from_torchvision(name: str, state_dict: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Our state dict for the preset matching torchvision model ``name``.

    ``name`` is torchvision's (``"efficientnet_b0"``) or ours (``"efficientnet-b0"``). The class
    count is read from the classifier. Load the result with
    ``nas.materialize(preset, num_classes=...).load_state_dict(...)``.
    """
    import torchvision  # lazy: torchvision only to read its layout

    tv_name = _torchvision_name(name)
    # The class count is the row count of torchvision's last Linear ("classifier.1.weight" for
    # EfficientNet, "classifier.3.weight" for MobileNetV3), located on a meta-device build.
    default = build_on_meta(lambda: torchvision.models.get_model(tv_name, weights=None))
    classifier_key = [n for n, m in default.named_modules() if isinstance(m, nn.Linear)][-1] + ".weight"
    if classifier_key not in state_dict:
        raise ValueError(f"state_dict: missing key {classifier_key!r} for {tv_name}")
    num_classes = int(state_dict[classifier_key].shape[0])
    reference = build_on_meta(lambda: torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes))
    ours = build_on_meta(lambda: materialize(TORCHVISION_TO_PRESET[tv_name], num_classes=num_classes))
    return map_state_dict(tv_name, reference, ours, state_dict)


def map_state_dict(
    name: str, reference: nn.Module, ours: nn.Module, state_dict: Mapping[str, torch.Tensor]
) -> OrderedDict[str, torch.Tensor]:
    """``state_dict`` (of ``reference``'s layout) under ``ours``'s keys, paired in canonical key order.

    Both modules may live on the meta device. Every key of ``reference`` must be present and no other;
    shapes must agree, except that a 1x1 convolution's ``(k, c, 1, 1)`` weight fits a linear layer's
    ``(k, c)`` (timm's DPN classifies with a 1x1 conv).
    """
    reference_keys = list(reference.state_dict())
    our_items = list(ours.state_dict().items())
    missing = [key for key in reference_keys if key not in state_dict]
    if missing:
        raise ValueError(f"state_dict: missing key {missing[0]!r} ({len(missing)} missing) for {name}")
    known = set(reference_keys)
    unexpected = [key for key in state_dict if key not in known]
    if unexpected:
        raise ValueError(
            f"state_dict: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected) "
            f"for {name}; is it another model's state dict?"
        )
    if len(reference_keys) != len(our_items):
        raise ValueError(f"{name}: {len(reference_keys)} tensors in the reference, {len(our_items)} in ours")
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for reference_key, (our_key, our_tensor) in zip(reference_keys, our_items):
        tensor = state_dict[reference_key]
        if tuple(tensor.shape) != tuple(our_tensor.shape):
            if tensor.dim() == 4 and tuple(tensor.shape) == tuple(our_tensor.shape) + (1, 1):
                tensor = tensor.flatten(1)
            else:
                raise ValueError(
                    f"{reference_key} {tuple(tensor.shape)} does not fit {our_key} {tuple(our_tensor.shape)}"
                )
        mapped[our_key] = tensor
    return mapped
