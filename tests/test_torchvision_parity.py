"""Parity of our EfficientNet B0-B7 and MobileNetV3 presets with torchvision's models.

Golden numbers: paper-facts §4 (torchvision weights meta ``num_params``; MACs counted with
``torch.utils.flop_counter`` at the paper resolution). Counting runs on the meta device, so
B7 at 600 px costs no memory. The weight-loading checks build real (CPU) models at a small
input size: the networks are fully convolutional, so 64 px exercises every layer.

BatchNorm is randomised before mapping (running statistics, affine parameters, var spread over
two decades), otherwise BN is close to identity and a wrong ``eps`` or ``momentum`` would hide
inside the tolerance; ``test_randomised_batchnorm_exposes_a_wrong_eps`` proves it does not.
Runs with one intra-op thread (``tests/conftest.py``).
"""

from __future__ import annotations

import copy
import functools
from collections import Counter

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import StochasticDepth

import nas
from nas.cost import build_on_meta, count_macs, count_params
from nas.ops import DropPath, MBConv

# ours, torchvision's, published params, published MACs (millions), paper resolution
GOLDEN = [
    ("efficientnet-b0", "efficientnet_b0", 5_288_548, 385.8, 224),
    ("efficientnet-b1", "efficientnet_b1", 7_794_184, 686.8, 240),
    ("efficientnet-b2", "efficientnet_b2", 9_109_994, 993.6, 260),
    ("efficientnet-b3", "efficientnet_b3", 12_233_232, 1827.1, 300),
    ("efficientnet-b4", "efficientnet_b4", 19_341_616, 4393.8, 380),
    ("efficientnet-b5", "efficientnet_b5", 30_389_784, 10266.4, 456),
    ("efficientnet-b6", "efficientnet_b6", 43_040_704, 19067.6, 528),
    ("efficientnet-b7", "efficientnet_b7", 66_347_960, 37745.9, 600),
    ("mobilenetv3-large", "mobilenet_v3_large", 5_483_032, 216.6, 224),
    ("mobilenetv3-small", "mobilenet_v3_small", 2_542_856, 56.5, 224),
]
PAIRS = {ours: torchvision_name for ours, torchvision_name, *_ in GOLDEN}
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid)


@functools.cache
def ours_on_meta(name: str, num_classes: int = 1000) -> nn.Module:
    return build_on_meta(lambda: nas.materialize(name, num_classes=num_classes))


@functools.cache
def torchvision_on_meta(name: str, num_classes: int = 1000) -> nn.Module:
    return build_on_meta(lambda: torchvision.models.get_model(name, weights=None, num_classes=num_classes))


@functools.cache
def summary(name: str) -> dict:
    return nas.summarize(name)


def shapes(tensors) -> list[tuple[int, ...]]:
    return sorted(tuple(t.shape) for t in tensors)


# ------------------------------------------------------------------ counts and shapes (meta device)


@pytest.mark.parametrize(
    ("ours", "theirs", "params", "macs_millions", "resolution"), GOLDEN, ids=[g[0] for g in GOLDEN]
)
def test_parameter_count_matches_torchvision_and_published(ours, theirs, params, macs_millions, resolution):
    assert count_params(torchvision_on_meta(theirs)) == params
    assert count_params(ours_on_meta(ours)) == params
    assert summary(ours)["params"] == params


@pytest.mark.parametrize(
    ("ours", "theirs", "params", "macs_millions", "resolution"), GOLDEN, ids=[g[0] for g in GOLDEN]
)
def test_macs_match_torchvision_and_published(ours, theirs, params, macs_millions, resolution):
    ours_summary = summary(ours)  # counted by torch.utils.flop_counter on the meta device
    assert ours_summary["resolution"] == resolution
    assert ours_summary["macs"] == count_macs(torchvision_on_meta(theirs), resolution)
    assert ours_summary["macs"] / 1e6 == pytest.approx(macs_millions, rel=0.005)


@pytest.mark.parametrize("ours", list(PAIRS))
def test_parameter_and_buffer_shapes_match_torchvision(ours):
    model, reference = ours_on_meta(ours), torchvision_on_meta(PAIRS[ours])
    assert shapes(model.parameters()) == shapes(reference.parameters())
    assert shapes(model.buffers()) == shapes(reference.buffers())


@pytest.mark.parametrize("ours", list(PAIRS))
def test_batchnorm_hyperparameters_match_torchvision(ours):
    """eps and momentum of every BN, in order (B5-B7 and MobileNetV3 differ from the defaults)."""

    def norms(module: nn.Module) -> list[tuple[int, float, float]]:
        return [(m.num_features, m.eps, m.momentum) for m in module.modules() if isinstance(m, nn.BatchNorm2d)]

    assert norms(ours_on_meta(ours)) == norms(torchvision_on_meta(PAIRS[ours]))


@pytest.mark.parametrize("ours", list(PAIRS))
def test_regularisation_and_activations_match_torchvision(ours):
    """Dropout rates, stochastic-depth rates (zero rates are no-ops) and activation kinds."""
    model, reference = ours_on_meta(ours), torchvision_on_meta(PAIRS[ours])
    dropout = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropout == [m.p for m in reference.modules() if isinstance(m, nn.Dropout)]
    # torchvision gives every block a StochasticDepth but applies it only on residual blocks.
    ours_depth = [
        m.drop_path.drop_prob
        for m in model.modules()
        if isinstance(m, MBConv) and isinstance(m.drop_path, DropPath) and m.drop_path.drop_prob > 0
    ]
    theirs_depth = [
        m.stochastic_depth.p
        for m in reference.modules()
        if getattr(m, "use_res_connect", False)
        and isinstance(getattr(m, "stochastic_depth", None), StochasticDepth)
        and m.stochastic_depth.p > 0
    ]
    assert ours_depth == pytest.approx(theirs_depth, abs=1e-12)

    def kinds(module: nn.Module) -> Counter:
        return Counter(type(m).__name__ for m in module.modules() if isinstance(m, ACTIVATIONS))

    assert kinds(model) == kinds(reference)


# ------------------------------------------------------------------ from_torchvision, real weights


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Make every BN far from identity and every bias non-zero, so mapping mistakes show."""
    generator = torch.Generator().manual_seed(seed)

    def draw(tensor: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return torch.rand(tensor.shape, generator=generator) * (high - low) + low

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                # var in [0.01, 1]: an eps of 1e-3 vs 1e-5 changes a channel's scale by up to 5 %;
                # the weight absorbs sqrt(var) so activations keep their magnitude.
                var = 10 ** draw(m.running_var, -2.0, 0.0)
                m.running_var.copy_(var)
                m.running_mean.copy_(draw(m.running_mean, -0.3, 0.3))
                m.weight.copy_(draw(m.weight, 0.5, 1.5) * var.sqrt())
                m.bias.copy_(draw(m.bias, -0.3, 0.3))
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (), generator=generator)))
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(draw(m.bias, -0.1, 0.1))
    return model


@functools.cache
def _loaded_pair(ours: str, num_classes: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    reference = randomise(torchvision.models.get_model(PAIRS[ours], weights=None, num_classes=num_classes))
    model = nas.materialize(ours, num_classes=num_classes, seed=1)
    model.load_state_dict(nas.from_torchvision(PAIRS[ours], reference.state_dict()))
    return reference, model


def loaded_pair(ours: str, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """A randomised torchvision model and ours with its weights, both fresh copies."""
    reference, model = _loaded_pair(ours, num_classes)
    return copy.deepcopy(reference), copy.deepcopy(model)


def image(batch: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


EQUIVALENCE = [
    ("efficientnet-b0", 1000),
    ("efficientnet-b0", 10),
    ("efficientnet-b5", 10),  # B5-B7: BN eps 1e-3, momentum 0.01
    ("mobilenetv3-large", 1000),
    ("mobilenetv3-large", 10),
    ("mobilenetv3-small", 1000),
    ("mobilenetv3-small", 10),
]


@pytest.mark.parametrize(("ours", "num_classes"), EQUIVALENCE)
def test_from_torchvision_reproduces_outputs_in_eval_mode(ours, num_classes):
    reference, model = loaded_pair(ours, num_classes)
    reference.eval()
    model.eval()
    x = image()
    with torch.inference_mode():
        expected, actual = reference(x), model(x)
    assert actual.shape == (2, num_classes)
    assert (actual - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    ("ours", "num_classes"), [("efficientnet-b0", 10), ("mobilenetv3-large", 10), ("mobilenetv3-small", 10)]
)
def test_from_torchvision_reproduces_a_training_step(ours, num_classes):
    """Train mode, same seed: dropout and stochastic depth draw the same masks, so outputs,
    gradients and the updated BN running statistics (momentum) agree exactly."""
    reference, model = loaded_pair(ours, num_classes)
    reference.train()
    model.train()
    x = image()
    outputs = []
    for network in (reference, model):
        torch.manual_seed(123)
        out = network(x)
        out.square().mean().backward()
        outputs.append(out)
    assert (outputs[0] - outputs[1]).abs().max().item() <= 1e-5
    for (name, theirs), mine in zip(reference.named_parameters(), model.parameters()):
        assert (theirs.grad - mine.grad).abs().max().item() <= 1e-5, name
    for (name, theirs), mine in zip(reference.state_dict().items(), model.state_dict().values()):
        assert torch.allclose(theirs.double(), mine.double(), rtol=0, atol=1e-6), name
    torch.manual_seed(124)  # sanity: the masks are random, so another seed changes the output
    assert not torch.allclose(model(x), outputs[1])


@pytest.mark.parametrize("ours", ["efficientnet-b0", "efficientnet-b5", "mobilenetv3-small"])
def test_randomised_batchnorm_exposes_a_wrong_eps(ours):
    """Guard on the guard: with BN randomised, swapping 1e-5 <-> 1e-3 breaks the 1e-5 tolerance."""
    reference, model = loaded_pair(ours, 10)
    reference.eval()
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-3 if m.eps < 1e-4 else 1e-5
    with torch.inference_mode():
        assert (model(image()) - reference(image())).abs().max().item() > 1e-4


# ------------------------------------------------------------------ from_torchvision, wrong input


@functools.cache
def meta_state_dict(name: str) -> dict[str, torch.Tensor]:
    return dict(torchvision_on_meta(name).state_dict())


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("efficientnet_b0", "features.0.0.weight"),
        ("efficientnet_b0", "features.1.0.block.1.fc1.bias"),
        ("efficientnet_b0", "features.8.1.running_var"),
        ("mobilenet_v3_large", "features.4.block.2.fc2.weight"),
        ("mobilenet_v3_small", "classifier.3.weight"),
    ],
)
def test_missing_key_is_named(name, key):
    state = dict(meta_state_dict(name))
    del state[key]
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        nas.from_torchvision(name, state)


def test_missing_classifier_key_is_named():
    state = dict(meta_state_dict("efficientnet_b0"))
    del state["classifier.1.weight"]
    with pytest.raises(ValueError, match=r"classifier\.1\.weight"):
        nas.from_torchvision("efficientnet_b0", state)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("efficientnet_b0", "features.3.1.block.0.1.running_var"),
        ("efficientnet_b7", "features.6.3.block.3.0.weight"),
        ("mobilenet_v3_large", "classifier.3.weight"),
    ],
)
def test_wrong_shape_is_named(name, key):
    state = dict(meta_state_dict(name))
    state[key] = torch.empty(7, 7, device="meta")
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        nas.from_torchvision(name, state)


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b8", "efficientnet-v2-s", "mobilenet_v2"])
def test_unknown_model_is_named(name):
    with pytest.raises(ValueError, match=name):
        nas.from_torchvision(name, meta_state_dict("efficientnet_b0"))


def test_our_names_are_accepted():
    assert list(nas.from_torchvision("mobilenetv3-small", meta_state_dict("mobilenet_v3_small"))) == list(
        ours_on_meta("mobilenetv3-small").state_dict()
    )


def test_another_models_state_dict_is_rejected():
    with pytest.raises(ValueError, match=r"features\.1\.1"):
        nas.from_torchvision("efficientnet_b0", meta_state_dict("efficientnet_b1"))
