"""Start from timm's weights: map a timm state dict onto our SE-ResNe(X)t and DPN presets.

Our compiled presets create timm's layers in timm's order (``nas.seed_ops.residual``), so the state dicts
pair up key by key (``nas.weights.torchvision.map_state_dict``, every shape checked). timm is not a
dependency of the engine: it is needed only to read the reference layout (built on the meta
device; nothing is downloaded), and the tests use it to check that the outputs agree.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch

from nas.api import materialize
from nas.cost import build_on_meta
from nas.weights.torchvision import map_state_dict

TIMM_TO_PRESET: dict[str, str] = {
    "seresnet50": "seresnet50",
    "seresnext50_32x4d": "seresnext50-32x4d",
    "dpn68": "dpn68",
    "dpn92": "dpn92",
}


def from_timm(name: str, state_dict: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Our state dict for the preset matching timm model ``name`` (timm's name or ours).

    The class count is read from timm's classifier (``fc`` or ``classifier``). Load the result with
    ``nas.materialize(preset, num_classes=...).load_state_dict(...)``.
    """
    timm_name = next((t for t, ours in TIMM_TO_PRESET.items() if name in (t, ours)), None)
    if timm_name is None:
        raise ValueError(
            f"no timm model maps to {name!r}; valid: {sorted(set(TIMM_TO_PRESET) | set(TIMM_TO_PRESET.values()))}"
        )
    try:
        import timm  # lazy: timm is optional: only to read its layout
    except ImportError:
        raise ValueError("from_timm needs timm to read its layout: pip install timm") from None
    classifier_key = next((key for key in ("fc.weight", "classifier.weight") if key in state_dict), None)
    if classifier_key is None:
        raise ValueError(f"state_dict: no classifier weight (fc.weight or classifier.weight) for {timm_name}")
    num_classes = int(state_dict[classifier_key].shape[0])
    reference = build_on_meta(lambda: timm.create_model(timm_name, pretrained=False, num_classes=num_classes))
    ours = build_on_meta(lambda: materialize(TIMM_TO_PRESET[timm_name], num_classes=num_classes))
    return map_state_dict(timm_name, reference, ours, state_dict)
