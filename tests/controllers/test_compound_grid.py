"""The compound-scaling grid (``compound-grid``): which points, in which order, when it ends, and
the controller contract on a compound-scaling space."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

import nas
from nas.controller import Result, make_controller
from nas.spaces.scaling import CompoundScalingSpace
from nas.testing import ControllerContract, ToySpace
from search_spaces.efficientnet import EfficientNetSpace


def b0_space(step: float = 0.1, high: float = 2.0) -> CompoundScalingSpace:
    return CompoundScalingSpace(EfficientNetSpace(), nas.presets()["efficientnet-b0"], step=step, high=high)


def drain(controller) -> list[tuple[float, float, float]]:
    """Ask and tell until finished; the points in the order proposed."""
    points = []
    while not controller.finished:
        trial = controller.ask()
        assert trial is not None, "not finished, nothing pending, yet no trial"
        points.append((trial.genotype.alpha, trial.genotype.beta, trial.genotype.gamma))
        controller.tell(trial.id, Result(reward=0.5))
    return points


def test_the_grid_is_every_point_within_the_tolerance_once_in_a_seeded_order():
    space = b0_space()
    # Exact arithmetic, written out here: (1.9, 1, 1) is exactly on the edge, and in (float says 0.10000000000000009).
    values = [Fraction(10 + i, 10) for i in range(11)]
    exact = {
        (a, b, g) for a, b, g in itertools.product(values, repeat=3) if abs(a * b * b * g * g - 2) <= Fraction(1, 10)
    }
    expected = {tuple(float(x) for x in point) for point in exact}
    assert len(expected) == 21 and (1.9, 1.0, 1.0) in expected
    first = drain(make_controller("compound-grid", space, seed=0))
    assert sorted(first) == sorted(expected) and len(first) == len(set(first))
    assert drain(make_controller("compound-grid", space, seed=0)) == first
    assert drain(make_controller("compound-grid", space, seed=1)) != first  # another seed, another order
    wider = make_controller("compound-grid", space, seed=0, tolerance=0.3)
    assert set(expected) < {tuple(p.values()) for p in wider.points}


def test_finished_after_the_last_point_or_the_budget():
    controller = make_controller("compound-grid", b0_space(), seed=0)
    for _ in range(20):
        trial = controller.ask()
        controller.tell(trial.id, Result(reward=0.1))
    assert not controller.finished
    last = controller.ask()
    assert not controller.finished  # asked, not told
    controller.tell(last.id, Result.failure("broke"))  # a failed point counts as evaluated
    assert controller.finished and controller.ask() is None
    capped = make_controller("compound-grid", b0_space(), seed=0, budget=5)
    assert len(drain(capped)) == 5


def test_resume_continues_the_same_order():
    space = b0_space()
    straight = drain(make_controller("compound-grid", space, seed=3))
    first = make_controller("compound-grid", space, seed=3)
    head = []
    for _ in range(7):
        trial = first.ask()
        head.append((trial.genotype.alpha, trial.genotype.beta, trial.genotype.gamma))
        first.tell(trial.id, Result(reward=0.2))
    pending = first.ask()  # asked when the process died: handed out again after the resume
    resumed = make_controller("compound-grid", space, seed=3)
    resumed.load_state_dict(first.state_dict())
    again = resumed.ask()
    assert again.id == pending.id and again.genotype == pending.genotype
    resumed.tell(again.id, Result(reward=0.2))
    assert head + [(again.genotype.alpha, again.genotype.beta, again.genotype.gamma)] + drain(resumed) == straight
    other = make_controller("compound-grid", space, seed=3, tolerance=0.2)
    with pytest.raises(ValueError, match="tolerance"):
        other.load_state_dict(first.state_dict())


def test_macs_mode_finds_exactly_the_points_a_full_count_finds():
    """The bisection over alpha (``_within_by_macs``) against counting every point of a coarse grid.
    (That cost grows with each multiplier, which the bisection relies on, is ``SpaceContract``'s
    ``test_scale_if_offered`` for every space that scales.)"""
    base_space = EfficientNetSpace()
    base = next(iter(base_space.presets().values()))
    space = CompoundScalingSpace(base_space, base, step=0.25, high=1.5)
    controller = make_controller("compound-grid", space, seed=0, constraint="macs", tolerance=0.6)
    values = space.values
    brute = {
        (a, b, g)
        for a, b, g in itertools.product(values, repeat=3)
        if abs(space.macs_ratio(space.decode({"alpha": a, "beta": b, "gamma": g})) - 2) <= 0.6
    }
    assert brute and {tuple(p.values()) for p in controller.points} == brute
    formula = make_controller("compound-grid", space, seed=0, tolerance=0.6)
    assert {tuple(p.values()) for p in formula.points} != brute  # rounding moves the real cost off the formula


def test_mistakes_are_refused_in_one_line():
    with pytest.raises(ValueError, match="compound-grid searches compound-scaling points"):
        make_controller("compound-grid", ToySpace(), seed=0)
    with pytest.raises(ValueError, match="no grid point"):
        make_controller("compound-grid", b0_space(step=0.3, high=1.9), seed=0, tolerance=0.01)
    with pytest.raises(ValueError, match="constraint"):
        make_controller("compound-grid", b0_space(), seed=0, constraint="flops")
    with pytest.raises(ValueError, match="tolerance"):
        make_controller("compound-grid", b0_space(), seed=0, tolerance=-1)
    with pytest.raises(ValueError, match="at most 41"):
        make_controller("compound-grid", b0_space(step=0.02), seed=0, constraint="macs")


class TestCompoundGridContract(ControllerContract):
    """The shared controller contract, on the points of B0's compound scaling (81 within 0.5 of 2)."""

    @pytest.fixture
    def make_controller(self):
        return lambda space, seed, **extra: make_controller(
            "compound-grid", space, seed=seed, **{"tolerance": 0.5, **extra}
        )

    @pytest.fixture
    def space(self):
        return b0_space()
