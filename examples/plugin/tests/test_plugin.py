"""The plug-in through the engine's own contract tests (``nas.testing``), plus its entry points."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, entry_points, version

import pytest
from nas.testing import ControllerContract, OpContract, SpaceContract, ToySpace

from nas_example_plugin.ops import basic_block
from nas_example_plugin.space import BasicResNetSpace
from nas_example_plugin.tpe import TPEController


class TestBasicResNetSpace(SpaceContract):
    @pytest.fixture
    def space(self):
        return BasicResNetSpace()

    @pytest.fixture
    def macro(self, space):
        return {**space.proxy_reduction, "resolution": 16}  # smaller than the proxy: faster tests


class TestBasicBlock(OpContract):
    @pytest.fixture
    def op(self):
        return basic_block  # the factory itself: works installed or not


class TestTPEController(ControllerContract):
    @pytest.fixture
    def make_controller(self):
        return lambda space, seed, **extra: TPEController(space, seed=seed, n_startup_trials=4, **extra)

    @pytest.fixture(params=["toy", "resnet-basic"])
    def space(self, request):
        return ToySpace() if request.param == "toy" else BasicResNetSpace()


def test_tpe_learns_on_a_toy_objective():
    """After its random start, TPE beats its own startup phase on ``toy_reward``."""
    from nas.controller import Result
    from nas.testing import toy_reward

    space = ToySpace()
    controller = TPEController(space, seed=0, n_startup_trials=5)
    rewards = []
    for _ in range(25):
        trial = controller.ask()
        rewards.append(toy_reward(space, trial.genotype))
        controller.tell(trial.id, Result(reward=rewards[-1]))
    assert max(rewards[5:]) == 1.0 and sum(rewards[-10:]) / 10 > sum(rewards[:5]) / 5


def test_options_are_checked_and_recorded():
    with pytest.raises(ValueError, match="n_startup_trials"):
        TPEController(ToySpace(), n_startup_trials=-1)
    assert TPEController(ToySpace(), n_startup_trials=3).state_dict()["config"] == {"n_startup_trials": 3}


def test_entry_points_when_installed():
    try:
        version("nas-example-plugin")
    except PackageNotFoundError:
        pytest.skip("nas-example-plugin is not installed (pip install -e examples/plugin)")
    from nas import registry

    declared = {
        (e.group, e.name) for group in ("nas.spaces", "nas.ops", "nas.controllers") for e in entry_points(group=group)
    }
    assert {("nas.spaces", "resnet-basic"), ("nas.ops", "basic_block"), ("nas.controllers", "example-tpe")} <= declared
    assert isinstance(registry.spaces.get("resnet-basic"), BasicResNetSpace)
    assert registry.ops.get("basic_block") is basic_block
    assert registry.controllers.get("example-tpe") is TPEController
