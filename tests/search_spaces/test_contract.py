"""Contract tests run against every registered search space."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nas
import search_spaces
from nas.ir import CellNet, ChainNet
from nas.space import SearchSpace, sample_choices

SPACES = search_spaces.names()
# Small macro settings so that any decoded genotype compiles and trains in milliseconds.
PROXY = {
    "nasnet": {"num_cells": 1, "penultimate_filters": 48, "resolution": 16},
    "mobilenetv3": {"resolution": 32, "width_multiplier": 0.25},
    "efficientnet": {"resolution": 32, "width_multiplier": 0.25},
}


def test_registry_holds_the_three_spaces():
    assert {"nasnet", "mobilenetv3", "efficientnet"} <= set(SPACES)
    with pytest.raises(ValueError, match="unknown search space 'resnet'"):
        search_spaces.get("resnet")


@pytest.mark.parametrize("name", SPACES)
def test_space_follows_the_protocol(name):
    space = search_spaces.get(name)
    assert isinstance(space, SearchSpace)
    decisions = space.decisions()
    assert len({d.name for d in decisions}) == len(decisions)
    assert all(len(d.choices) >= 1 for d in decisions)
    assert space.presets()


@pytest.mark.parametrize("name", SPACES)
def test_decode_encode_round_trip_and_mutate(name):
    space = search_spaces.get(name)
    rng = np.random.default_rng(1)
    for _ in range(25):
        choices = sample_choices(space.decisions(), rng)
        genotype = space.decode(choices)
        assert space.encode(genotype) == choices
        child = space.mutate(genotype, rng)
        changed = [k for k, v in space.encode(child).items() if choices[k] != v]
        assert len(changed) == 1


@pytest.mark.parametrize("name", SPACES)
def test_decode_rejects_bad_choices(name):
    space = search_spaces.get(name)
    choices = sample_choices(space.decisions(), np.random.default_rng(0))
    first = space.decisions()[0].name
    with pytest.raises(ValueError, match="missing decision"):
        space.decode({k: v for k, v in choices.items() if k != first})
    with pytest.raises(ValueError, match=first.replace(".", r"\.")):
        space.decode({**choices, first: "not-a-choice"})


def _choices_strategy(space):
    return st.fixed_dictionaries({d.name: st.sampled_from(d.choices) for d in space.decisions()})


@pytest.mark.parametrize("name", SPACES)
def test_random_choices_decode_validate_compile_and_train(name):
    space = search_spaces.get(name)

    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_choices_strategy(space))
    def check(choices):
        genotype = space.decode(choices)
        ir = space.lower(genotype, num_classes=5, **PROXY[name])
        assert isinstance(ir, (ChainNet, CellNet))
        model = nas.compile(ir, seed=0).train()
        x = torch.randn(2, 3, ir.resolution, ir.resolution)
        logits = model(x)
        assert logits.shape == (2, 5) and torch.isfinite(logits).all()
        logits.logsumexp(1).mean().backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)

    check()


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
