"""The NetAdapt controller on MobileNetV3-Small's widths, with a synthetic latency (the sum of the widths)."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest
import torch

from controllers.netadapt import NetAdapt
from nas import registry
from nas.controller import Controller, Result
from nas.spaces.widths import WidthSpace
from nas.testing import ToySpace
from search_spaces.mobilenetv3 import SMALL, MobileNetV3Space

BASE = MobileNetV3Space()
SPACE = WidthSpace(BASE, SMALL)
START_MS = float(sum(BASE.prunable_widths(SMALL).values()))  # 3256 "ms"


def latency(genotype: Any) -> float:
    return float(sum(BASE.prunable_widths(genotype).values()))


def accuracy(genotype: Any) -> float:
    """Shrinking the early layers costs more accuracy (so the choice is not simply the largest width)."""
    widths = BASE.prunable_widths(genotype)
    return sum(value * (1.0 + index / 4) for index, value in enumerate(widths.values())) / 1e4


def make(**options: Any) -> NetAdapt:
    return NetAdapt(SPACE, seed=0, **{"latency": latency, "target_ms": 0.6 * START_MS, **options})


def drive(controller: NetAdapt, steps: int | None = None, fail: set[int] = frozenset()) -> list[tuple[int, Any]]:
    seen = []
    while not controller.finished and (steps is None or len(seen) < steps):
        trial = controller.ask()
        assert trial is not None
        result = Result.failure("synthetic") if trial.id in fail else Result(reward=accuracy(trial.genotype))
        controller.tell(trial.id, result)
        seen.append((trial.id, trial.genotype))
    return seen


def test_trial_0_is_the_start_and_each_proposal_is_the_largest_width_meeting_the_constraint() -> None:
    controller = make()
    assert isinstance(controller, Controller) and registry.controllers.get("netadapt") is NetAdapt
    first = controller.ask()
    assert first.id == 0 and first.genotype == SMALL
    controller.tell(0, Result(reward=0.5))
    constraint = controller.constraint_ms
    assert constraint == pytest.approx(START_MS - 0.1 * START_MS)
    assert controller.proposals
    current = BASE.prunable_widths(SMALL)
    for proposal in controller.proposals:
        changed = {name for name, width in proposal["choices"].items() if width != current[name]}
        assert changed == {proposal["name"]}
        assert proposal["predicted_ms"] == latency(SPACE.decode(proposal["choices"])) <= constraint
        decision = next(d for d in SPACE.decisions() if d.name == proposal["name"])
        larger = [w for w in decision.choices if proposal["width"] < w < current[proposal["name"]]]
        for width in larger:  # every larger width misses the constraint or changes the structure
            with contextlib.suppress(ValueError):  # a width that changes the structure is refused
                assert latency(SPACE.decode({**current, proposal["name"]: width})) > constraint
    # The constraint removes 326 "ms": only widths of more than 326 channels can propose.
    assert {p["name"] for p in controller.proposals} == {
        "blocks.9.expand_channels",
        "blocks.10.expand_channels",
        "head_channels",
    }


def test_it_chooses_the_most_accurate_proposal_and_stops_at_the_target() -> None:
    controller = make()
    trials = drive(controller)
    assert controller.status == "met" and controller.current["latency_ms"] <= 0.6 * START_MS
    for iteration in controller.history:
        told = [p for p in iteration["proposals"] if p["accuracy"] is not None]
        assert iteration["chosen"] == max(told, key=lambda p: p["accuracy"])["trial"]
    assert controller.parent == (trials[controller.current["trial"]][1], controller.current["trial"])
    assert controller.ask() is None


def test_efficiency_selection_maximises_accuracy_gained_per_millisecond() -> None:
    controller = make(selection="efficiency")
    drive(controller, steps=1)
    before = dict(controller.current)
    proposals = [dict(p) for p in controller.proposals]
    drive(controller, steps=len(proposals))
    scores = {
        p["trial"]: (accuracy(SPACE.decode(p["choices"])) - before["accuracy"])
        / (before["latency_ms"] - p["predicted_ms"])
        for p in controller.history[0]["proposals"]
    }
    assert controller.history[0]["chosen"] == max(scores, key=scores.get)


def test_the_step_is_halved_when_no_width_can_meet_it_and_stuck_after() -> None:
    controller = make(reduction=0.5, target_ms=0.1 * START_MS)  # no single width removes half the latency
    drive(controller, steps=1)
    assert controller.halvings >= 1 and controller.proposals
    floor = make(target_ms=1.0)  # far below what the smallest widths can reach
    drive(floor)
    assert floor.status == "stuck" and floor.current["latency_ms"] > 1.0


def test_measured_latency_stops_the_run_and_calibrates_the_tables_predictions() -> None:
    """On a machine 25% slower than its table, the table alone stops early; the measurements do not."""
    slower = 1.25

    def run(**options: Any) -> NetAdapt:
        controller = make(**options)
        while not controller.finished:
            trial = controller.ask()
            measured = {"measured_ms": slower * latency(trial.genotype)}
            controller.tell(trial.id, Result(reward=accuracy(trial.genotype), metrics=measured))
        return controller

    by_table, by_measurement = run(measured=False), run()
    target = 0.6 * START_MS
    assert by_table.status == by_measurement.status == "met"
    assert by_table.current["latency_ms"] <= target < slower * by_table.current["latency_ms"]  # missed, measured
    assert by_measurement.current["measured_ms"] == by_measurement.latency_now() <= target
    assert by_measurement.latency_now() > 0.9 * target  # not overshot either: the last step aims at the target
    for iteration in by_measurement.history:
        for proposal in iteration["proposals"]:
            assert proposal["expected_ms"] == pytest.approx(slower * proposal["predicted_ms"])
            assert proposal["expected_ms"] <= iteration["constraint_ms"] + 1e-9


def test_the_calibration_is_the_median_of_recent_ratios_so_one_noisy_measurement_does_not_move_it() -> None:
    controller = make()
    controller.ratios = [1.2, 1.25, 5.0]
    assert controller.calibration() == 1.25
    controller.ratios = [9.0] + [1.1] * 20  # only the latest 20 count
    assert controller.calibration() == pytest.approx(1.1)
    resumed = make()
    resumed.load_state_dict(_round_trip(controller.state_dict()))
    assert resumed.ratios == controller.ratios


def test_a_residual_block_is_removed_when_no_width_of_it_saves_enough() -> None:
    """Block 4's expansion (240) narrowed to 8 saves 232 "ms"; removing the block saves 240."""
    controller = make()
    drive(controller, steps=1)
    found = controller._largest_width("blocks.4.expand_channels", 240, START_MS - 235)
    assert found is not None and found[0]["blocks.4.expand_channels"] == 0 and found[1] == START_MS - 240
    assert controller._largest_width("blocks.4.expand_channels", 240, START_MS - 200)[0]["blocks.4.expand_channels"] > 0


def test_the_narrowest_network_is_every_width_at_the_least_its_structure_allows() -> None:
    controller = make()
    narrowest = SPACE.decode(controller.narrowest())
    assert latency(narrowest) < 0.25 * START_MS
    for name, width in controller.narrowest().items():
        decision = next(d for d in SPACE.decisions() if d.name == name)
        for smaller in (value for value in decision.choices if value < width):  # each is as small as it can be
            with pytest.raises(ValueError):
                SPACE.decode({**controller.narrowest(), name: smaller})


def test_a_failed_start_or_a_failed_iteration_ends_the_run() -> None:
    controller = make()
    drive(controller, fail={0})
    assert controller.status == "failed" and controller.finished
    controller = make()
    drive(controller, steps=1)
    drive(controller, fail=set(range(1, 10)))
    assert controller.status == "failed" and len(controller.history) == 1 and controller.history[0]["chosen"] is None


def _round_trip(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("cut", [1, 3, 5])
def test_resume_mid_iteration_replays_the_same_trials(cut: int) -> None:
    uninterrupted = drive(make())
    controller = make()
    head = drive(controller, steps=cut)
    pending = controller.ask()  # asked, then the process dies before tell
    resumed = make()
    resumed.load_state_dict(_round_trip(controller.state_dict()))
    assert resumed.proposals == controller.proposals  # carried by the state, not recomputed from the table
    again = resumed.ask()
    assert (again.id, again.genotype) == (pending.id, pending.genotype)
    resumed.tell(again.id, Result(reward=accuracy(again.genotype)))
    tail = drive(resumed, steps=3)
    assert head + [(again.id, again.genotype)] + tail == uninterrupted[: cut + 4]


def test_the_width_space_trains_the_network_itself_at_the_bases_proxy_resolution() -> None:
    assert SPACE.proxy_reduction == {"resolution": 32}  # images at 32 px, but no width multiplier
    assert SPACE.name == "mobilenetv3" and SPACE.decode(SPACE.start_widths) == SMALL


def test_it_needs_a_width_space_and_valid_settings() -> None:
    with pytest.raises(ValueError, match="WidthSpace"):
        NetAdapt(ToySpace(), latency=latency, target_ms=1.0)
    for options in (
        {"reduction": 0.0},
        {"decay": 1.5},
        {"selection": "fastest"},
        {"target_ms": -1.0},
        {"max_iterations": 0},
    ):
        with pytest.raises(ValueError):
            make(**options)
    with pytest.raises(ValueError, match="cannot be pruned"):
        WidthSpace(ToySpace(), None)
