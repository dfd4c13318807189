"""Optuna's samplers as controllers (``controllers/optuna_sampler.py``): ``tpe``, ``nsga2``, ``optuna``
and ``optuna:<SamplerName>``. The protocol itself is checked by the contract tests
(``test_controller_contract.py``); here: exact resume with trials in flight, learning, failures,
option checks, budget-derived defaults and name resolution."""

from __future__ import annotations

import inspect
import io
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from controllers import OptunaNSGAII, OptunaSampler, OptunaTPE, RandomSearch
from nas import registry
from nas.controller import Result, Trial, check_controller_name, controller_factory, make_controller
from nas.testing import ToySpace, toy_reward

NASNET = registry.spaces.get("nasnet")
ROOT = Path(__file__).resolve().parents[2]


def _round_trip(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def additive_objective(seed: int):
    """A score table of uniform [0, 1) per choice of every NASNet decision; reward = sum / best sum."""
    rng = np.random.default_rng(1000 + seed)
    table = {d.name: dict(zip(d.choices, rng.random(len(d.choices)))) for d in NASNET.decisions()}
    best = sum(max(scores.values()) for scores in table.values())

    def reward(genotype: Any) -> float:
        return sum(table[name][choice] for name, choice in NASNET.encode(genotype).items()) / best

    return reward


def _result(trial: Trial, reward) -> Result:
    if trial.id % 7 == 6:
        return Result.failure("synthetic failure")
    return Result(reward=reward(trial.genotype))


def _run(
    controller, reward, steps: int, flight: list[Trial] | None = None
) -> tuple[list[tuple[int, Any]], list[Trial]]:
    """``steps`` steps of a loop that keeps 3 trials in flight: fill up, then tell the oldest."""
    flight = list(flight or [])
    asked = []
    for _ in range(steps):
        while len(flight) < 3:
            trial = controller.ask()
            flight.append(trial)
            asked.append((trial.id, trial.genotype))
        trial = flight.pop(0)
        controller.tell(trial.id, _result(trial, reward))
    return asked, flight


@pytest.mark.parametrize("name", ["tpe", "nsga2"])
def test_resume_with_trials_in_flight_is_exact(name: str) -> None:
    """60 trials, 3 in flight, a failure every 7th: a controller restored after 35 (2 pending) goes on
    exactly as the uninterrupted one, through NSGA-II generations and TPE's constant liar."""
    reward = additive_objective(0)
    uninterrupted, _ = _run(make_controller(name, NASNET, seed=11, budget=60), reward, 58)
    controller = make_controller(name, NASNET, seed=11, budget=60)
    head, flight = _run(controller, reward, 35)
    state = _round_trip(controller.state_dict())
    assert [t["id"] for t in state["study"]["trials"]] == list(range(len(head)))  # ids are Optuna numbers
    assert [t["id"] for t in state["study"]["trials"] if t["state"] == "RUNNING"] == [t.id for t in flight]
    if name == "nsga2":
        assert state["study"]["system_attrs"], "the parent populations of past generations are saved"
    resumed = make_controller(name, NASNET, seed=11, budget=60)
    resumed.load_state_dict(state)
    again = [resumed.ask() for _ in flight]
    assert again == flight
    tail, _ = _run(resumed, reward, 58 - 35, again)
    assert head + tail == uninterrupted


@pytest.mark.parametrize("name", ["tpe", "nsga2"])
def test_learns_more_than_random_search_at_equal_budget(name: str) -> None:
    """Budget 120 on the additive objective over the 50 NASNet decisions, 3 seeds: a higher mean best."""
    learned, random = [], []
    for seed in range(3):
        reward = additive_objective(seed)
        for controller, bests in (
            (make_controller(name, NASNET, seed=seed, budget=120), learned),
            (RandomSearch(NASNET, seed=seed, budget=120), random),
        ):
            best = 0.0
            while not controller.finished:
                trial = controller.ask()
                best = max(best, reward(trial.genotype))
                controller.tell(trial.id, Result(reward=reward(trial.genotype)))
            bests.append(best)
    assert np.mean(learned) > np.mean(random) + 0.03, (learned, random)


def test_failures_reach_optuna_as_fail_and_proposals_go_on() -> None:
    space = ToySpace()
    controller = OptunaTPE(space, seed=0, sampler_options={"n_startup_trials": 2})
    for _ in range(12):  # every trial fails: TPE never leaves its random start, but keeps proposing
        trial = controller.ask()
        controller.tell(trial.id, Result.failure("out of memory"))
    for _ in range(8):
        trial = controller.ask()
        controller.tell(trial.id, Result(reward=toy_reward(space, trial.genotype)))
    states = [t["state"] for t in controller.state_dict()["study"]["trials"]]
    assert states == ["FAIL"] * 12 + ["COMPLETE"] * 8


@pytest.mark.parametrize(
    "sampler, match",
    [
        ("NoSuchSampler", r"unknown Optuna sampler 'NoSuchSampler'; valid: \[.*'NSGAIISampler'.*'TPESampler'"),
        ("BaseSampler", "unknown Optuna sampler 'BaseSampler'"),
        ("nsgaii", "unknown Optuna sampler 'nsgaii'"),
        ("CmaEsSampler", "CmaEsSampler cannot search .* categorical"),
        ("GridSampler", "GridSampler cannot search"),
        ("PartialFixedSampler", "PartialFixedSampler cannot search"),
    ],
)
def test_bad_sampler_names_are_refused(sampler: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OptunaSampler(ToySpace(), sampler=sampler)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"n_startup_trial": 3}, r"TPESampler takes no option 'n_startup_trial'; valid: \[.*'n_startup_trials'"),
        ({"seed": 3}, "no option 'seed' .*controller's seed"),
        ({"gamma": len}, r"sampler_options\['gamma'\]: must be plain data"),
        ({"group": True, "multivariate": False}, "TPESampler refuses .*group"),
    ],
)
def test_bad_sampler_options_are_refused(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OptunaSampler(ToySpace(), sampler_options=options)


def test_population_size_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="NSGAIISampler refuses .*population_size"):
        OptunaNSGAII(ToySpace(), sampler_options={"population_size": 1})


@pytest.mark.parametrize(
    "name, budget, expected",
    [
        ("tpe", None, {}),
        ("tpe", 12, {"n_startup_trials": 4}),
        ("tpe", 300, {"n_startup_trials": 10}),
        ("nsga2", None, {}),
        ("nsga2", 100, {"population_size": 10}),
        ("nsga2", 300, {"population_size": 20}),
        ("nsga2", 500, {"population_size": 33}),
        ("nsga2", 1000, {"population_size": 50}),
        ("nsga2", 3000, {"population_size": 50}),
        ("optuna:RandomSampler", 100, {}),
    ],
)
def test_budget_derived_defaults(name: str, budget: int | None, expected: dict) -> None:
    config = make_controller(name, ToySpace(), budget=budget).state_dict()["config"]
    assert config["derived_options"] == expected and config["sampler_options"] == {}


def test_given_options_win_and_a_random_search_setting_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="controllers.optuna_sampler"):
        controller = OptunaNSGAII(ToySpace(), budget=30, sampler_options={"population_size": 40})
        OptunaTPE(ToySpace(), budget=200)
    assert controller.options == controller.sampler_options == {"population_size": 40}
    assert controller.derived_options == {}
    assert [r.getMessage() for r in caplog.records] == [
        "NSGAIISampler: population_size=40 >= budget=30: the first generation covers the whole budget, "
        "so this is random search"
    ]


def test_names_resolve_to_the_sampler() -> None:
    assert isinstance(make_controller("tpe", ToySpace()), OptunaTPE)
    assert make_controller("optuna", ToySpace()).sampler == "TPESampler"
    controller = make_controller("optuna:NSGAIIISampler", ToySpace(), budget=40)
    assert type(controller) is OptunaSampler and controller.sampler == "NSGAIIISampler"
    assert controller_factory("optuna:RandomSampler") == (OptunaSampler, {"variant": "RandomSampler"})
    with pytest.raises(ValueError, match="controller 'random' takes no variant"):
        make_controller("random:fast", ToySpace())
    with pytest.raises(ValueError, match="contradicts"):
        make_controller("optuna:TPESampler", ToySpace(), variant="RandomSampler")
    with pytest.raises(ValueError, match="conflicts"):
        make_controller("optuna:TPESampler", ToySpace(), sampler="RandomSampler")


@pytest.mark.parametrize("name", ["nsga2", "optuna:NSGAIISampler"])
def test_a_resumed_search_rebuilt_from_the_config_keeps_its_settings(name: str) -> None:
    """As the runner does: rebuild from ``state["config"]`` (filtered by the factory's parameters), the
    user's unchanged options laid over it, with a larger budget: the first run's population is kept."""
    user = {"sampler_options": {"mutation_prob": 0.1}}
    controller = make_controller(name, ToySpace(), seed=3, budget=300, **user)
    for _ in range(5):
        trial = controller.ask()
        controller.tell(trial.id, Result(reward=toy_reward(ToySpace(), trial.genotype)))
    state = _round_trip(controller.state_dict())
    factory, _ = controller_factory(name)
    config = {k: v for k, v in state["config"].items() if k in inspect.signature(factory).parameters}
    resumed = make_controller(name, ToySpace(), seed=3, budget=600, **{**config, **user})
    resumed.load_state_dict(state)
    assert resumed.options == {"population_size": 20, "mutation_prob": 0.1} and resumed.ask().id == 5
    with pytest.raises(ValueError, match="config"):  # without the config: the budget-derived population differs
        make_controller(name, ToySpace(), seed=3, budget=1000, **user).load_state_dict(state)


@pytest.mark.parametrize("sampler", ["NSGAIIISampler", "BruteForceSampler", "RandomSampler"])
def test_other_samplers_resume_exactly(sampler: str) -> None:
    space = ToySpace()
    options = {"sampler_options": {"population_size": 4}} if sampler == "NSGAIIISampler" else {}
    uninterrupted, _ = _run(
        OptunaSampler(space, seed=2, sampler=sampler, **options), lambda g: toy_reward(space, g), 14
    )
    controller = OptunaSampler(space, seed=2, sampler=sampler, **options)
    head, flight = _run(controller, lambda g: toy_reward(space, g), 6)
    resumed = OptunaSampler(space, seed=2, sampler=sampler, **options)
    resumed.load_state_dict(_round_trip(controller.state_dict()))
    tail, _ = _run(resumed, lambda g: toy_reward(space, g), 8, [resumed.ask() for _ in flight])
    assert head + tail == uninterrupted


def test_check_controller_name_imports_no_torch() -> None:
    code = (
        "import sys; from nas.controller import check_controller_name as check\n"
        "for name in ('tpe', 'nsga2', 'optuna', 'optuna:NSGAIISampler', 'random'): check(name)\n"
        "for name in ('optuna:Foo', 'optuna:CmaEsSampler', 'random:x', 'tpe:x', 'bayes', 'optuna:'):\n"
        "    try: check(name)\n"
        "    except ValueError as error: print(error)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    lines = done.stdout.splitlines()
    assert lines[-1] == "False", done.stdout + done.stderr
    assert len(lines) == 7 and all(line.startswith("controller") for line in lines[:-1]), lines
    assert "unknown Optuna sampler 'Foo'" in lines[0] and "categorical" in lines[1]
    assert "'random' takes no variant" in lines[2] and "unknown controller 'bayes'" in lines[4]


def test_check_controller_name_in_process() -> None:
    check_controller_name("optuna:TPESampler")
    with pytest.raises(ValueError, match="^controller"):
        check_controller_name("optuna:NoSuchSampler")


# ---- options that fail only once the sampler runs; a sampler that exhausts the space ----------------


@pytest.mark.filterwarnings("ignore:`gamma` has been deprecated:FutureWarning")
@pytest.mark.parametrize(
    "options, error",
    [
        ({"gamma": 3}, "TypeError: 'int' object is not callable"),  # TPE calls it once its random start is over
        ({"n_startup_trials": "x"}, "TypeError: '<' not supported"),
    ],
)
def test_options_that_fail_only_when_the_sampler_runs_are_refused_at_construction(options: dict, error: str) -> None:
    with pytest.raises(ValueError, match=r"^sampler_options: TPESampler rejected .*" + error) as info:
        OptunaTPE(ToySpace(), seed=0, sampler_options=options, budget=30)
    assert "\n" not in str(info.value)


def test_the_dry_run_leaves_the_controller_study_empty() -> None:
    controller = OptunaNSGAII(NASNET, seed=0, budget=100)  # population 10: the dry run reaches generation 1
    state = controller.state_dict()
    assert state["study"] == {"trials": [], "system_attrs": {}} and state["exhausted"] is False


def _brute_force(budget: int = 100) -> OptunaSampler:
    return OptunaSampler(ToySpace(), seed=1, sampler="BruteForceSampler", budget=budget)


def test_brute_force_ends_when_every_combination_is_tried_and_a_resume_keeps_it() -> None:
    space = ToySpace()
    controller = _brute_force()
    seen = []
    while not controller.finished:
        trial = controller.ask()
        assert trial is not None, "a sequential loop must never have to wait"
        controller.tell(trial.id, _result(trial, lambda g: toy_reward(space, g)))
        seen.append(trial.genotype)
    assert len(seen) == len(set(seen)) == 64 and controller.ask() is None and controller.exhausted
    state = _round_trip(controller.state_dict())
    assert state["exhausted"] is True and state["next_id"] == 64
    assert {t["state"] for t in state["study"]["trials"]} == {"COMPLETE", "FAIL"}  # the last tell was written
    resumed = _brute_force(budget=200)
    resumed.load_state_dict(state)
    assert resumed.finished and resumed.ask() is None and resumed.state_dict() == {**state, "budget": 200}


def test_brute_force_waits_for_pending_trials_instead_of_proposing_duplicates() -> None:
    space = ToySpace()
    controller = _brute_force()
    batch = []
    while (trial := controller.ask()) is not None:
        batch.append(trial)
    assert len({t.genotype for t in batch}) == len(batch) == 64 and not controller.finished
    for trial in batch:
        assert not controller.finished
        controller.tell(trial.id, Result(reward=toy_reward(space, trial.genotype)))
    assert controller.finished and controller.ask() is None


def test_a_stop_before_the_state_is_written_still_records_the_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should an Optuna version raise from ``study.stop()`` before it writes the told trial, the controller
    writes it."""
    controller = _brute_force()
    first, second = controller.ask(), controller.ask()

    def stop_without_writing(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("`Study.stop` is supposed to be invoked inside an objective function or a callback.")

    monkeypatch.setattr(controller._study, "tell", stop_without_writing)
    controller.tell(first.id, Result(reward=0.25))
    controller.tell(second.id, Result.failure("out of memory"))
    trials = controller.state_dict()["study"]["trials"]
    assert [(t["state"], t["value"]) for t in trials] == [("COMPLETE", 0.25), ("FAIL", None)]
    assert controller.finished and controller.ask() is None

    other = _brute_force()
    trial = other.ask()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("storage is gone")

    monkeypatch.setattr(other._study, "tell", fail)
    with pytest.raises(RuntimeError, match="storage is gone"):  # any other RuntimeError is not taken for a stop
        other.tell(trial.id, Result(reward=1.0))
    assert not other.exhausted
