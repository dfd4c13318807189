"""Every registered controller through the controller contract of ``nas.testing``, on our spaces
and on its toy space (Optuna-style: one property per test, run for each controller)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from nas import registry
from nas.controller import make_controller
from nas.testing import ControllerContract, ToySpace

torch.set_num_threads(1)

# Small batches and populations so that updates and mutations happen within a few dozen trials.
OPTIONS: dict[str, dict[str, Any]] = {
    "reinforce": {"batch_size": 4, "learning_rate": 0.05},
    "evolution": {"population_size": 6, "sample_size": 3},
    "tpe": {"sampler_options": {"n_startup_trials": 4}},
    "nsga2": {"sampler_options": {"population_size": 4}},
}
# Registered names, plus a name:variant one (``optuna`` with the sampler named after the colon).
# ``compound-grid`` searches compound-scaling points only: its contract runs on such a space in
# tests/controllers/test_compound_grid.py. ``netadapt`` searches the widths of one network with a
# latency function and draws nothing at random (one seed or another, the same trials): its tests are
# in tests/controllers/test_netadapt.py.
NAMES = [
    *(name for name in registry.controllers.names() if name not in ("compound-grid", "netadapt")),
    "optuna:RandomSampler",
]


class TestRegisteredControllers(ControllerContract):
    @pytest.fixture(params=NAMES)
    def make_controller(self, request: pytest.FixtureRequest):
        name = request.param
        return lambda space, seed, **extra: make_controller(
            name, space, seed=seed, **{**OPTIONS.get(name, {}), **extra}
        )

    @pytest.fixture(params=["toy", *registry.spaces.names()])
    def space(self, request: pytest.FixtureRequest):
        return ToySpace() if request.param == "toy" else registry.spaces.get(request.param)


@pytest.mark.parametrize("name", NAMES)
def test_waits_with_none_never_raises(name: str) -> None:
    """Once its budget is issued and results are pending, ``ask`` says ``None``, again and again."""
    controller = make_controller(name, ToySpace(), seed=0, budget=30, **OPTIONS.get(name, {}))
    asked = []
    for _ in range(40):
        trial = controller.ask()
        if trial is None:
            assert controller.ask() is None
            break
        asked.append(trial)
    else:
        pytest.fail("40 asks and no wait despite a budget of 30")
    assert controller.finished is False


@pytest.mark.parametrize("name", NAMES)
def test_enqueued_architectures_come_first_and_survive_a_resume(name: str) -> None:
    """``enqueue`` (a warm start): the first trials are the enqueued choices, in order, learned from as the
    controller's own; a state saved half-way through the queue resumes into the same trials."""
    from nas.controller import Result
    from nas.space import sample_choices

    space = ToySpace()
    decisions = list(space.decisions())
    rng = np.random.default_rng(5)
    queued = [sample_choices(decisions, rng) for _ in range(4)]

    def reward(trial: Any) -> Result:
        return Result(reward=float(sum(hash(str(v)) % 7 for v in space.encode(trial.genotype).values())))

    def run(stop_after: int | None) -> list[dict[str, Any]]:
        controller = make_controller(name, space, seed=3, budget=12, **OPTIONS.get(name, {}))
        controller.enqueue(queued)
        seen: list[dict[str, Any]] = []
        while not controller.finished:
            if stop_after is not None and len(seen) == stop_after:
                state = controller.state_dict()
                controller = make_controller(name, space, seed=3, budget=12, **OPTIONS.get(name, {}))
                controller.load_state_dict(state)
                stop_after = None
            trial = controller.ask()
            assert trial is not None
            seen.append(space.encode(trial.genotype))
            controller.tell(trial.id, reward(trial))
        return seen

    straight = run(None)
    assert straight[:4] == queued
    assert run(2) == straight


def test_enqueue_refuses_choices_outside_the_space() -> None:
    controller = make_controller("random", ToySpace(), seed=0, budget=3)
    with pytest.raises(ValueError):
        controller.enqueue([{"no such decision": 1}])
