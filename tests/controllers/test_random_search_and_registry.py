"""Random search, and building controllers by name (``nas.controller.make_controller``)."""

from __future__ import annotations

from collections import Counter

import pytest

import nas.space
from controllers import RandomSearch
from nas import registry
from nas.controller import Result, make_controller
from nas.seeds import trial_rng
from nas.space import sample_choices

EFFICIENTNET = nas.space.get("efficientnet")


def test_random_search_draws_every_choice_about_uniformly() -> None:
    controller = RandomSearch(EFFICIENTNET, seed=0)
    counts: Counter = Counter()
    for _ in range(800):
        trial = controller.ask()
        counts[trial.genotype.resolution] += 1
        controller.tell(trial.id, Result(reward=0.0))
    resolutions = EFFICIENTNET.decisions()[2].choices
    assert set(counts) == set(resolutions)
    expected = 800 / len(resolutions)
    assert all(abs(count - expected) < 0.35 * expected for count in counts.values())


def test_random_trial_is_a_function_of_seed_and_id_only() -> None:
    controller = RandomSearch(EFFICIENTNET, seed=9)
    trials = [controller.ask() for _ in range(5)]  # never waits, tells in any order
    for trial in trials:
        expected = sample_choices(EFFICIENTNET.decisions(), trial_rng(9, trial.id))
        assert EFFICIENTNET.encode(trial.genotype) == expected


def test_make_builds_every_registered_controller_with_options() -> None:
    from nas.spaces.scaling import CompoundScalingSpace

    nasnet = nas.space.get("nasnet")
    points = CompoundScalingSpace(EFFICIENTNET, nas.presets()["efficientnet-b0"])  # compound-grid's kind of space
    from nas.spaces.widths import WidthSpace

    small = nas.presets()["mobilenetv3-small"]
    widths = WidthSpace(nas.space.get("mobilenetv3"), small)  # netadapt's: one network's widths, and a latency
    special = {"compound-grid": (points, {}), "netadapt": (widths, {"latency": lambda g: 10.0, "target_ms": 5.0})}
    for name in registry.controllers.names():
        space, options = special.get(name, (nasnet, {}))
        controller = make_controller(name, space, seed=4, budget=3, **options)
        assert (
            isinstance(controller, registry.controllers.get(name)) and controller.seed == 4 and controller.budget == 3
        )
    assert make_controller("evolution", nasnet, population_size=7, sample_size=2).population_size == 7
    assert {"random", "reinforce", "evolution"} <= set(registry.controllers.names())


def test_make_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'bayes'.*evolution.*random.*reinforce"):
        make_controller("bayes", EFFICIENTNET)


def test_make_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"takes no option 'populaton_size'; valid: \[.*'population_size'"):
        make_controller("evolution", EFFICIENTNET, populaton_size=3)


def test_register_refuses_a_taken_name() -> None:
    with pytest.raises(ValueError, match="'random'"):
        registry.controllers.register("random", RandomSearch)


@pytest.mark.parametrize("options, match", [({"seed": -1}, "seed"), ({"budget": 0}, "budget")])
def test_bad_seed_or_budget_raise_value_error(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RandomSearch(EFFICIENTNET, **options)
