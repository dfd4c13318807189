"""Parity of the seed papers' presets (``blocks`` space) with torchvision, timm and the papers.

Golden numbers: paper-facts §6 ([counted] with torchvision 0.29.1 / timm 1.0.31; torchvision's
weights meta), ShuffleNet paper Table 1 (complexity of the 1x networks, classifier excluded),
megvii ShuffleNet-Series and mmpretrain model-zoo tables, and the CondenseNet README (4.8M params,
529M FLOPs for CondenseNet-74, C = G = 4, counted by the reference ``utils.measure_model`` after
``convert_model``). Counting runs on the meta device; output parity builds real models at 64 px
(the networks are fully convolutional) with BatchNorm randomised, as ``test_torchvision_parity``.
timm is a test-only dependency: nothing is downloaded, random weights are copied across.
"""

from __future__ import annotations

import functools

import pytest
import timm
import torch
import torchvision
from torch import nn

import nas
from nas.cost import build_on_meta, count_macs, count_params
from nas.seed_ops.condense import set_training_progress

# ours, library, reference model, params, MACs (millions, at 224)
GOLDEN = [
    ("shufflenet-v2-x0.5", "torchvision", "shufflenet_v2_x0_5", 1_366_792, 40.5),
    ("shufflenet-v2-x1.0", "torchvision", "shufflenet_v2_x1_0", 2_278_604, 144.9),
    ("shufflenet-v2-x1.5", "torchvision", "shufflenet_v2_x1_5", 3_503_624, 295.8),
    ("shufflenet-v2-x2.0", "torchvision", "shufflenet_v2_x2_0", 7_393_996, 583.3),
    ("seresnet50", "timm", "seresnet50", 28_088_024, 4091.7),
    ("seresnext50-32x4d", "timm", "seresnext50_32x4d", 27_559_896, 4233.0),
    ("dpn68", "timm", "dpn68", 12_611_602, 2326.2),
    ("dpn92", "timm", "dpn92", 37_668_392, 6501.7),
]
IDS = [g[0] for g in GOLDEN]
LISTED = [
    "shufflenet-v2-x1.0",
    "shufflenet-v1-g3-x1.0",
    "dpn68",
    "condensenet-74-condensed",
]  # a sample: each costs a count


@functools.cache
def reference(library: str, name: str, num_classes: int = 1000, meta: bool = True) -> nn.Module:
    def build() -> nn.Module:
        if library == "torchvision":
            return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        return timm.create_model(name, pretrained=False, num_classes=num_classes)

    return build_on_meta(build) if meta else build()


@pytest.mark.parametrize(("ours", "library", "theirs", "params", "macs"), GOLDEN, ids=IDS)
def test_params_and_macs_equal_the_reference(ours, library, theirs, params, macs):
    model = reference(library, theirs)
    assert count_params(model) == params
    summary = nas.summarize(ours)
    assert summary["params"] == params
    assert summary["macs"] == count_macs(model, 224)
    assert round(summary["macs"] / 1e6, 1) == macs


def _randomise_batchnorm(model: nn.Module) -> None:
    """Running statistics and affine parameters off identity, so a wrong eps or order would show."""
    generator = torch.Generator().manual_seed(1)
    for layer in model.modules():
        if isinstance(layer, nn.BatchNorm2d):
            channels = layer.num_features
            layer.running_mean.copy_(torch.randn(channels, generator=generator) * 0.2)
            layer.running_var.copy_(torch.rand(channels, generator=generator) * 2 + 0.05)
            layer.weight.data.copy_(torch.rand(channels, generator=generator) + 0.5)
            layer.bias.data.copy_(torch.randn(channels, generator=generator) * 0.1)


@pytest.mark.parametrize(("ours", "library", "theirs", "params", "macs"), GOLDEN, ids=IDS)
def test_imported_weights_give_the_reference_outputs(ours, library, theirs, params, macs):
    torch.manual_seed(0)
    model = reference(library, theirs, num_classes=10, meta=False).eval()
    _randomise_batchnorm(model)
    importer = nas.from_torchvision if library == "torchvision" else nas.from_timm
    mine = nas.materialize(ours, num_classes=10).eval()
    mine.load_state_dict(importer(theirs, model.state_dict()))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, actual = model(images), mine(images)
    assert (expected - actual).abs().max() <= 1e-5
    assert expected.std() > 1e-3  # not a degenerate comparison of near-constant logits


def test_importers_refuse_another_models_weights():
    state = reference("timm", "dpn68", num_classes=10, meta=False).state_dict()
    with pytest.raises(ValueError, match="missing key"):
        nas.from_timm("seresnet50", state)
    with pytest.raises(ValueError, match="no timm model maps to 'resnet18'"):
        nas.from_timm("resnet18", state)


# ShuffleNet paper Table 1: complexity (MFLOPs = multiply-adds, the classifier left out) of the 1x
# networks per group count; params of the networks with a bias in the classifier, as mmpretrain's
# (1.87M published for g = 3), and megvii's published totals (classifier without bias; FLOPs in M).
# megvii lists 138M for g = 3 too, where its network (and ours) counts 137.46M with the classifier.
SHUFFLENET_V1 = {
    1: (143, 1_531_936),
    2: (140, 1_733_848),
    3: (137, 1_865_728),
    4: (133, 1_968_344),
    8: (137, 2_434_768),
}
MEGVII = {3: (1.9, 137), 8: (2.4, 138)}


@pytest.mark.parametrize("groups", sorted(SHUFFLENET_V1))
def test_shufflenet_v1_matches_the_papers_table_1(groups):
    complexity, params = SHUFFLENET_V1[groups]
    model = build_on_meta(lambda: nas.materialize(f"shufflenet-v1-g{groups}-x1.0"))
    macs, by_module = count_macs(model, 224, per_module=True)
    assert round((macs - by_module["classifier"]) / 1e6) == complexity
    assert count_params(model) == params
    if groups == 3:
        assert round(params / 1e6, 2) == 1.87  # mmpretrain model zoo
    if groups in MEGVII:  # megvii's classifier has no bias: 1000 parameters fewer
        assert (round((params - 1000) / 1e6, 1), round(macs / 1e6)) == MEGVII[groups]


def _reference_flops(model: nn.Module, resolution: int) -> int:
    """CondenseNet's ``measure_model`` rule: conv and linear multiply-adds (+ linear biases), plus one
    per ReLU output element and ``C * H_out * W_out * k^2`` per average pool."""
    extra = []

    def relu(module, inputs, output):
        extra.append(output.numel())

    def pool(module, inputs, output):
        kernel = module.kernel_size if isinstance(module, nn.AvgPool2d) else inputs[0].shape[-1]
        extra.append(output.numel() * kernel * kernel)

    hooks = [m.register_forward_hook(relu) for m in model.modules() if isinstance(m, nn.ReLU)]
    hooks += [
        m.register_forward_hook(pool) for m in model.modules() if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d))
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, resolution, resolution))
    for hook in hooks:
        hook.remove()
    biases = sum(m.bias.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return count_macs(model, resolution) + sum(extra) + biases


def test_condensenet_74_after_condensing_is_the_papers_network():
    """4.8M params and 529M FLOPs (README): exactly the reference counter's 4,773,944 and 529,328,264."""
    model = nas.materialize("condensenet-74").eval()
    training_params = count_params(model)
    set_training_progress(model, 1.0)  # all three condensing stages: each group keeps 1/4 of its inputs
    nas.condense(model, classifier_keep=0.5)  # the reference converts the classifier too (CondensingLinear)
    params = count_params(model)
    assert params == 4_773_944 and abs(params / 4.8e6 - 1) < 0.02
    assert training_params > 2 * params
    assert _reference_flops(model, 224) == 529_328_264
    macs = count_macs(model, 224)  # ours counts conv and linear multiply-adds only: 2.4% below
    assert round(macs / 1e6, 1) == 516.6
    # The deployment preset is that network: the same parameters, and it loads the condensed state dict.
    deployed = nas.materialize("condensenet-74-condensed", seed=0).eval()
    assert count_params(deployed) == params == 4_773_944
    deployed.load_state_dict(model.state_dict())
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(deployed(images), model(images))


def test_presets_are_listed_with_params_macs_and_memory_access(capsys, monkeypatch):
    from nas.cli.app import main

    assert set(LISTED) | {f"shufflenet-v1-g{g}-x1.0" for g in (1, 2, 4, 8)} | set(IDS) <= set(nas.presets())
    every = nas.presets()
    monkeypatch.setattr(nas, "presets", lambda: {k: v for k, v in every.items() if k in LISTED})
    main(["presets"])
    out = capsys.readouterr().out
    for name in LISTED:
        assert name in out
    assert "memory access" in out and "2,278,604" in out
