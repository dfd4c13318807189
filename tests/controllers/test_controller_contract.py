"""The controller contract, run over every registered controller and two spaces (Optuna-style).

Each property here is one every controller promises (``nas.controller.Controller``): seeded
reproducibility, exact resume through a real ``torch.save``/``torch.load(weights_only=True)``
round trip, re-issue of pending trials, failures tolerated, budgets honoured, ``None`` (never an
exception) while waiting.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch

import controllers
import search_spaces
from nas.controller import Controller, Result, Trial

torch.set_num_threads(1)

SPACES = ["nasnet", "mobilenetv3"]
# Small batches and populations so that updates and mutations happen within a few dozen trials.
OPTIONS: dict[str, dict[str, Any]] = {
    "reinforce": {"batch_size": 4, "learning_rate": 0.05},
    "evolution": {"population_size": 6, "sample_size": 3},
}
STEPS = 20


def build(name: str, space_name: str, seed: int = 0, **extra: Any) -> Controller:
    return controllers.make(name, search_spaces.get(space_name), seed=seed, **{**OPTIONS.get(name, {}), **extra})


def reward_of(space, genotype) -> float:
    """A deterministic objective: fraction of decisions at a fixed target choice."""
    choices = space.encode(genotype)
    decisions = space.decisions()
    hits = sum(choices[d.name] == d.choices[i % len(d.choices)] for i, d in enumerate(decisions))
    return hits / len(decisions)


def result_for(space, trial: Trial, fail_every: int | None = None) -> Result:
    if fail_every and trial.id % fail_every == fail_every - 1:
        return Result.failure("synthetic failure")
    return Result(reward=reward_of(space, trial.genotype))


def drive(controller: Controller, steps: int, fail_every: int | None = None) -> list[tuple[int, Any]]:
    """The sequential search loop: ask, evaluate, tell. Returns (id, genotype) per trial."""
    space, seen = controller.space, []
    for _ in range(steps):
        trial = controller.ask()
        assert trial is not None, "a sequential loop must never have to wait"
        controller.tell(trial.id, result_for(space, trial, fail_every))
        seen.append((trial.id, trial.genotype))
    return seen


def round_trip(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def check_plain(value: Any, path: str = "state") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, (str, int)), f"{path}: key {key!r} is a {type(key).__name__}"
            check_plain(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{path}[{i}]")
    else:
        assert value is None or isinstance(value, (str, int, float, bool, torch.Tensor)), \
            f"{path} is a {type(value).__name__}"


pytestmark = pytest.mark.parametrize("space_name", SPACES)


@pytest.fixture(params=sorted(controllers.CONTROLLERS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_implements_protocol(name: str, space_name: str) -> None:
    controller = build(name, space_name, seed=5)
    assert isinstance(controller, Controller)
    assert controller.seed == 5 and controller.finished is False


def test_same_seed_same_trials_other_seed_other_trials(name: str, space_name: str) -> None:
    first = drive(build(name, space_name, seed=3), STEPS)
    assert first == drive(build(name, space_name, seed=3), STEPS)
    assert [trial_id for trial_id, _ in first] == list(range(STEPS))
    assert [g for _, g in first] != [g for _, g in drive(build(name, space_name, seed=4), STEPS)]


@pytest.mark.parametrize("cut", [1, 13])  # before any update; mid-batch after several
def test_resume_continues_the_same_sequence(name: str, space_name: str, cut: int) -> None:
    uninterrupted = drive(build(name, space_name, seed=7), STEPS, fail_every=5)
    controller = build(name, space_name, seed=7)
    head = drive(controller, cut, fail_every=5)
    snapshot = controller.state_dict()  # in memory: the original keeps running after this
    tail = drive(controller, STEPS - cut, fail_every=5)
    assert head + tail == uninterrupted
    check_plain(snapshot)
    resumed = build(name, space_name, seed=7)
    resumed.load_state_dict(round_trip(snapshot))
    assert drive(resumed, STEPS - cut, fail_every=5) == tail


def test_pending_trials_are_reissued_after_resume(name: str, space_name: str) -> None:
    uninterrupted = drive(build(name, space_name, seed=2), 12)
    controller = build(name, space_name, seed=2)
    drive(controller, 6)
    pending = controller.ask()  # asked, then the process "crashes" before tell
    assert pending is not None
    resumed = build(name, space_name, seed=2)
    resumed.load_state_dict(round_trip(controller.state_dict()))
    again = resumed.ask()
    assert again == pending and (again.id, again.genotype) == uninterrupted[6]
    resumed.tell(again.id, result_for(resumed.space, again))
    assert drive(resumed, 5) == uninterrupted[7:]


def test_several_pending_trials_come_back_in_id_order(name: str, space_name: str) -> None:
    controller = build(name, space_name, seed=1)
    drive(controller, 4)  # a batch boundary for reinforce (batch_size 4)
    asked = [controller.ask() for _ in range(3)]
    assert all(trial is not None for trial in asked)
    controller.tell(asked[1].id, result_for(controller.space, asked[1]))
    resumed = build(name, space_name, seed=1)
    resumed.load_state_dict(round_trip(controller.state_dict()))
    assert [resumed.ask(), resumed.ask()] == [asked[0], asked[2]]


def test_failed_results_do_not_break_the_controller(name: str, space_name: str) -> None:
    drive(build(name, space_name), STEPS, fail_every=3)
    controller = build(name, space_name)
    seen = drive(controller, STEPS, fail_every=1)  # every trial fails
    assert len(seen) == STEPS and controller.num_told == STEPS


def test_every_genotype_round_trips_through_encode_decode(name: str, space_name: str) -> None:
    space = search_spaces.get(space_name)
    for _, genotype in drive(build(name, space_name), STEPS):
        choices = space.encode(genotype)
        assert space.decode(choices) == genotype
        hash(genotype)


def test_finished_honours_the_budget(name: str, space_name: str) -> None:
    controller = build(name, space_name, budget=7)
    issued: list[Trial] = []
    while not controller.finished:
        batch = []
        while (trial := controller.ask()) is not None:
            batch.append(trial)
        assert batch, "nothing pending, not finished, yet ask() returned None"
        for trial in batch:
            assert controller.finished is False
            controller.tell(trial.id, result_for(controller.space, trial))
        issued += batch
    assert [trial.id for trial in issued] == list(range(7))
    assert controller.ask() is None and controller.finished


def test_ask_returns_none_while_waiting_never_raises(name: str, space_name: str) -> None:
    controller = build(name, space_name, budget=30)
    asked = []
    for _ in range(40):
        trial = controller.ask()
        if trial is None:
            assert controller.ask() is None  # still waiting: None again, no exception
            break
        asked.append(trial)
    else:
        pytest.fail("40 asks and no wait despite a budget of 30")
    controller.tell(asked[0].id, result_for(controller.space, asked[0]))
    assert controller.finished is False


def test_tell_rejects_unknown_and_repeated_ids(name: str, space_name: str) -> None:
    controller = build(name, space_name)
    trial = controller.ask()
    with pytest.raises(ValueError, match="99"):
        controller.tell(99, Result(reward=1.0))
    controller.tell(trial.id, Result(reward=1.0))
    with pytest.raises(ValueError, match="not pending"):
        controller.tell(trial.id, Result(reward=1.0))


def test_load_rejects_a_state_from_another_seed(name: str, space_name: str) -> None:
    state = build(name, space_name, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        build(name, space_name, seed=2).load_state_dict(state)
