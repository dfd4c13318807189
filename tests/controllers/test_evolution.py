"""Regularized evolution: aging, tournament children one mutation away, failures, waiting."""

from __future__ import annotations

import numpy as np
import pytest

import nas.space
from controllers import RandomSearch, RegularizedEvolution
from nas.controller import Result

NASNET = nas.space.get("nasnet")
DECISIONS = NASNET.decisions()


def target_reward(genotype) -> float:
    choices = NASNET.encode(genotype)
    return sum(choices[d.name] == d.choices[(3 * i) % len(d.choices)] for i, d in enumerate(DECISIONS)) / len(DECISIONS)


def distance(a, b) -> int:
    left, right = NASNET.encode(a), NASNET.encode(b)
    return sum(left[name] != right[name] for name in left)


def test_population_never_exceeds_its_size_and_the_oldest_leaves() -> None:
    controller = RegularizedEvolution(NASNET, seed=0, population_size=5, sample_size=2)
    told = []
    for _ in range(40):
        trial = controller.ask()
        controller.tell(trial.id, Result(reward=target_reward(trial.genotype)))
        told.append(trial.id)
        population = controller.population
        assert len(population) <= 5
        assert [member.trial_id for member in population] == told[-5:]  # oldest first; the oldest left


def test_children_are_one_mutation_from_a_member() -> None:
    controller = RegularizedEvolution(NASNET, seed=1, population_size=6, sample_size=3)
    for _ in range(40):
        members = controller.population
        trial = controller.ask()
        if trial.id >= 6:
            assert min(distance(trial.genotype, m.genotype) for m in members) == 1
        controller.tell(trial.id, Result(reward=target_reward(trial.genotype)))


def test_tournament_of_the_whole_population_picks_the_best_parent() -> None:
    # With S draws (with replacement) the best of P = 2 is missed with probability 2^-S.
    controller = RegularizedEvolution(NASNET, seed=0, population_size=2, sample_size=2)
    first, second = controller.ask(), controller.ask()
    controller.tell(first.id, Result(reward=0.0))
    controller.tell(second.id, Result(reward=1.0))
    parents = [
        min((distance(child.genotype, g), i) for i, g in enumerate([first.genotype, second.genotype]))[1]
        for child in (controller.ask() for _ in range(20))
    ]
    assert parents.count(1) >= 12  # expected 15 of 20 (3/4)


def test_failed_children_are_skipped() -> None:
    controller = RegularizedEvolution(NASNET, seed=0, population_size=3, sample_size=2)
    for _ in range(3):
        trial = controller.ask()
        controller.tell(trial.id, Result(reward=0.5))
    before = controller.population
    for _ in range(5):
        trial = controller.ask()
        controller.tell(trial.id, Result.failure("diverged"))
    assert controller.population == before


def test_waits_for_the_first_result_then_never_again() -> None:
    controller = RegularizedEvolution(NASNET, seed=0, population_size=3, sample_size=2)
    initial = [controller.ask() for _ in range(3)]
    assert controller.ask() is None
    controller.tell(initial[1].id, Result(reward=0.5))
    children = [controller.ask() for _ in range(5)]  # asynchronous: no generation barrier
    assert all(distance(child.genotype, initial[1].genotype) == 1 for child in children)


def test_all_failures_and_nothing_pending_keeps_sampling() -> None:
    controller = RegularizedEvolution(NASNET, seed=0, population_size=2, sample_size=1)
    for _ in range(6):
        trial = controller.ask()
        assert trial is not None
        controller.tell(trial.id, Result.failure("crash"))
    assert controller.population == ()


def test_beats_random_search_on_a_synthetic_objective() -> None:
    def mean_of_last(controller, budget: int = 300, last: int = 100) -> float:
        rewards = []
        for _ in range(budget):
            trial = controller.ask()
            rewards.append(target_reward(trial.genotype))
            controller.tell(trial.id, Result(reward=rewards[-1]))
        return float(np.mean(rewards[-last:]))

    evolution = mean_of_last(RegularizedEvolution(NASNET, seed=0, population_size=20, sample_size=5))
    random = mean_of_last(RandomSearch(NASNET, seed=0))
    assert evolution > random + 0.1, (evolution, random)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"population_size": 0}, "population_size"),
        ({"population_size": 4, "sample_size": 5}, "sample_size.*population_size=4"),
    ],
)
def test_bad_options_raise_value_error(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RegularizedEvolution(NASNET, **options)


def test_defaults_follow_the_budget_and_the_paper_is_one_option_away(caplog) -> None:
    from controllers.evolution import budget_defaults

    for budget in (12, 30, 100, 300, 1000, 3000):
        controller = RegularizedEvolution(NASNET, budget=budget)
        assert (controller.population_size, controller.sample_size) == budget_defaults(budget)
        assert 3 * controller.population_size <= budget  # at least two thirds of the trials are children
        assert 2 <= controller.sample_size <= controller.population_size
    paper = RegularizedEvolution(NASNET, budget=1000, preset="paper")
    assert (paper.population_size, paper.sample_size) == (100, 25)
    assert RegularizedEvolution(NASNET, budget=1000, population_size=4).sample_size <= 4
    caplog.clear()
    with caplog.at_level("WARNING", logger="controllers.evolution"):
        RegularizedEvolution(NASNET, budget=300)
        assert not caplog.records
        RegularizedEvolution(NASNET, budget=100, preset="paper")  # P = budget: pure random search
    assert len(caplog.records) == 1 and "population_size 100" in caplog.records[0].getMessage()


def test_a_genotype_told_twice_competes_with_its_mean_reward() -> None:
    controller = RegularizedEvolution(NASNET, seed=0, population_size=3, sample_size=3, budget=20)
    first = controller.ask()
    controller.tell(first.id, Result(reward=0.9))
    member = controller._population[0]
    assert controller._fitness(member) == 0.9
    # the same genotype observed again with a worse reward (a repeat, or a mutation back to it)
    controller._observe(99, NASNET.encode(first.genotype), Result(reward=0.5))
    assert controller._fitness(member) == pytest.approx(0.7)
    restored = RegularizedEvolution(NASNET, seed=0, population_size=3, sample_size=3, budget=20)
    restored.load_state_dict(controller.state_dict())
    assert restored._fitness(restored._population[0]) == pytest.approx(0.7)
