"""Known classes: no class is told twice as a query (evolution, REINFORCE, local search), on a space that
declares isomorphisms and on one that does not; the history, its marginals and its state; local search's
climb and restarts; the paper presets that keep every re-evaluation."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch

from controllers.known import KnownClasses
from controllers.local_search import LocalSearch
from nas.controller import Result, make_controller
from nas.space import Canonical, canonical_key
from nas.toy import ToyGenotype, ToySpace, toy_reward

torch.set_num_threads(1)

DEDUPING = ["evolution", "reinforce", "local"]
SMALL = {"reinforce": {"batch_size": 4}}  # updates within a few dozen trials


class SwappedStages(ToySpace):
    """``ToySpace`` whose two stages are interchangeable: 64 genotypes, 36 classes."""

    name = "toy-swapped"

    def canonical(self, genotype: ToyGenotype) -> str:
        stages = sorted(zip(genotype.widths, genotype.kernels, genotype.depths))
        return repr(stages)


def drive(controller: Any, space: Any, steps: int, reward: Any = None) -> list[Any]:
    told = []
    for _ in range(steps):
        trial = controller.ask()
        assert trial is not None
        controller.tell(trial.id, Result(reward=(reward or toy_reward)(space, trial.genotype)))
        told.append(trial.genotype)
    return told


def test_the_swapped_space_is_canonical_and_has_36_classes() -> None:
    space = SwappedStages()
    assert isinstance(space, Canonical) and not isinstance(ToySpace(), Canonical)
    names = [d.name for d in space.decisions()]
    keys = {
        canonical_key(space, space.decode({n: d.choices[i] for n, d, i in zip(names, space.decisions(), index)}))
        for index in np.ndindex(*(len(d.choices) for d in space.decisions()))
    }
    assert len(keys) == 36


@pytest.mark.parametrize("name", DEDUPING)
@pytest.mark.parametrize("space", [SwappedStages(), ToySpace()], ids=["canonical", "plain"])
def test_no_class_is_told_twice_until_every_class_was(name: str, space: Any) -> None:
    total = 36 if isinstance(space, Canonical) else 64
    controller = make_controller(name, space, seed=3, budget=total + 6, **SMALL.get(name, {}))
    told = [canonical_key(space, g) for g in drive(controller, space, total + 6)]
    # Three quarters of the classes without a repeat (near the end, random draws may miss the last few)
    assert len(set(told[: total * 3 // 4])) == total * 3 // 4
    assert controller.finished  # and past every class it repeats rather than waits


@pytest.mark.parametrize("name", ["evolution", "local"])
def test_trials_in_flight_are_known_too(name: str) -> None:
    space = SwappedStages()
    controller = make_controller(name, space, seed=1, budget=30)
    keys = []
    while not controller.finished:
        batch = [t for t in (controller.ask() for _ in range(3)) if t is not None]  # three workers
        keys += [canonical_key(space, t.genotype) for t in batch]
        for trial in batch:
            controller.tell(trial.id, Result(reward=toy_reward(space, trial.genotype)))
    assert len(keys) == len(set(keys)) == 30


def test_the_paper_presets_evaluate_a_class_again() -> None:
    space = ToySpace()
    evolution = make_controller("evolution", space, seed=0, budget=60, preset="paper", population_size=4, sample_size=2)
    reinforce = make_controller("reinforce", space, seed=0, budget=60, preset="paper")
    assert (evolution.dedup, evolution.distinct) == (False, False)
    assert (reinforce.dedup, reinforce.elite_weight) == (False, 0.0)
    for controller in (evolution, reinforce):
        told = drive(controller, space, 60)
        assert len(set(told)) < 60  # 64 genotypes: repeats are all but certain without skipping


def test_history_marginals_and_state_round_trip() -> None:
    space = SwappedStages()
    known = KnownClasses(space, space.decisions())
    names = [d.name for d in space.decisions()]
    first = dict(zip(names, (8, 3, 1, 16, 5, 2)))
    swapped = dict(zip(names, (16, 5, 2, 8, 3, 1)))  # the same class
    other = dict(zip(names, (8, 3, 1, 8, 3, 1)))
    known.issue(0, known.key(first))
    assert known.key(swapped) in known and not known.told(known.key(first))  # pending counts as known
    known.tell(0, first, 0.2)
    known.tell(1, other, 0.6)
    known.tell(2, swapped, None)  # a failure: known, no reward
    known.issue(3, known.key(dict(zip(names, (16, 3, 1, 16, 3, 1)))))
    assert len(known) == 2 and known.reward(known.key(swapped)) == pytest.approx(0.2)
    indices, rewards = known.history()
    assert indices.tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]]
    assert rewards[:2].tolist() == [0.2, 0.6] and math.isnan(rewards[2])
    # standardised rewards -1 and +1; choice 0 of the stage-0 width taken by both (sum 0), stage-1 width 16 by the first
    scores = known.marginals(prior=1.0)
    assert scores[0].tolist() == pytest.approx([0.0, 0.0]) and scores[3].tolist() == pytest.approx([0.5, -0.5])
    restored = KnownClasses(space, space.decisions())
    restored.load_state_dict(known.state_dict(), {3: dict(zip(names, (16, 3, 1, 16, 3, 1)))})
    assert restored.state_dict() == known.state_dict() and len(restored) == 2
    assert known.key(dict(zip(names, (16, 3, 1, 16, 3, 1)))) in restored
    assert [s.tolist() for s in restored.marginals()] == [s.tolist() for s in known.marginals()]


def test_local_search_climbs_one_decision_at_a_time_to_the_optimum() -> None:
    space = ToySpace()
    controller = LocalSearch(space, seed=0, budget=40, num_init=2)
    told = drive(controller, space, 40)
    rewards = [toy_reward(space, g) for g in told]
    assert max(rewards) == 1.0  # additive: no local optimum but the global one
    climb = told[: rewards.index(1.0) + 1]
    for previous, genotype in itertools.pairwise(climb[2:]):
        changed = sum(a != b for a, b in zip(space.encode(previous).values(), space.encode(genotype).values()))
        assert changed <= 2  # a neighbour of the centre, which is the previous trial or its centre
    assert drive(LocalSearch(space, seed=0, budget=40, num_init=2), space, 40) == told


def test_local_search_restarts_at_a_local_optimum() -> None:
    space = ToySpace()  # six two-way decisions: six neighbours
    controller = LocalSearch(space, seed=0, num_init=2)
    drive(controller, space, 8, reward=lambda s, g: 0.5)  # nothing is ever better: 2 random, 6 neighbours
    assert controller._center is not None
    trial = controller.ask()  # the neighbourhood is used up: a restart
    assert controller._center is None and controller._start == 1
    controller.tell(trial.id, Result(reward=0.5))


def test_guided_local_search_tries_the_neighbour_with_the_best_score_first() -> None:
    space = ToySpace()
    controller = LocalSearch(space, seed=5, num_init=4)
    drive(controller, space, 4)
    scores = controller._known.marginals()

    def score(choices: dict[str, Any]) -> float:  # the additive surrogate: the sum of the choices' scores
        return sum(float(scores[i][d.index(choices[d.name])]) for i, d in enumerate(space.decisions()))

    trial = controller.ask()
    center = controller._center["choices"]
    untried = [
        {**center, d.name: value}
        for d in space.decisions()
        for value in d.choices
        if value != center[d.name] and controller._known.key({**center, d.name: value}) not in controller._known
    ]
    chosen = space.encode(trial.genotype)
    assert score(chosen) == pytest.approx(max(map(score, untried + [chosen])))
    assert sum(chosen[k] != center[k] for k in center) == 1


def test_local_search_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="num_init"):
        LocalSearch(ToySpace(), num_init=0)
    with pytest.raises(ValueError, match="guided"):
        LocalSearch(ToySpace(), guided="yes")  # type: ignore[arg-type]


def test_evolution_tournaments_of_the_whole_population_take_its_best() -> None:
    space = ToySpace()
    controller = make_controller("evolution", space, seed=0, population_size=4, sample_size=4)
    drive(controller, space, 4)
    best = max(controller.population, key=lambda m: m.reward).genotype
    child = controller.ask().genotype
    assert sum(a != b for a, b in zip(space.encode(best).values(), space.encode(child).values())) == 1


def test_reinforce_elite_is_the_best_told_and_a_legacy_state_loads() -> None:
    space = ToySpace()
    controller = make_controller("reinforce", space, seed=0, batch_size=4, elite_size=3)
    told = drive(controller, space, 8)
    rewards = [toy_reward(space, g) for g in told]
    order = sorted(range(8), key=lambda i: (-rewards[i], i))[:3]
    elite = controller._elite().tolist()
    assert elite == [[d.index(space.encode(told[i])[d.name]) for d in space.decisions()] for i in order]
    state = controller.state_dict()
    legacy = {k: v for k, v in state.items() if k != "known"}
    legacy["config"] = {k: v for k, v in state["config"].items() if k not in ("dedup", "elite_size", "elite_weight")}
    old = make_controller("reinforce", space, seed=0, batch_size=4, dedup=False, elite_weight=0.0)
    old.load_state_dict(legacy)  # a state saved before known classes: no dedup, no elite
    assert old.state_dict()["known"] == {"indices": [], "rewards": []}
