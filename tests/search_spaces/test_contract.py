"""Every registered search space (and the toy space of ``nas.testing``) through the space contract."""

import pytest
import torch

import nas
from nas import registry
from nas.testing import SpaceContract, ToySpace

# Smaller than the spaces' own proxies, so that random genotypes build and train in milliseconds.
SMALL = {
    "nasnet": {"num_cells": 1, "penultimate_filters": 48, "resolution": 16},
    "mobilenetv3": {"resolution": 32, "width_multiplier": 0.25},
    "efficientnet": {"resolution": 32, "width_multiplier": 0.25},
    "blocks": {"resolution": 16},
}


class TestRegisteredSpaces(SpaceContract):
    @pytest.fixture(params=registry.spaces.names())
    def space(self, request):
        return registry.spaces.get(request.param)

    @pytest.fixture
    def macro(self, space):
        return {**space.proxy_reduction, **SMALL.get(space.name, {})}


class TestToySpace(SpaceContract):
    @pytest.fixture
    def space(self):
        return ToySpace()


def test_registry_holds_the_three_spaces():
    assert {"nasnet", "mobilenetv3", "efficientnet"} <= set(registry.spaces.names())
    with pytest.raises(ValueError, match=r"unknown search space 'resnet'; valid: \[.*'nasnet'"):
        registry.spaces.get("resnet")


@pytest.mark.parametrize("preset", sorted(nas.presets()))
def test_every_preset_runs_forward(preset):
    """Forward pass of every preset; the big ones at a reduced resolution (counts are checked at full)."""
    resolution = min(nas.presets()[preset].resolution, 64)
    model = nas.materialize(preset, num_classes=7, resolution=resolution).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, resolution, resolution))
    assert out.shape == (1, 7) and torch.isfinite(out).all()


def test_same_seed_same_weights():
    a = nas.materialize("mobilenetv3-small", num_classes=3, seed=4)
    b = nas.materialize("mobilenetv3-small", num_classes=3, seed=4)
    c = nas.materialize("mobilenetv3-small", num_classes=3, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
