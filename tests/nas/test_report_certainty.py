"""The report's "How sure" section: ties within the evaluator's noise shown as ties."""

from __future__ import annotations

import math

import pytest

from nas.controller import Result
from nas.journal import Record
from nas.objective import MetricObjective, make_objective
from nas.search.report import _certainty_section, reward_noise, single_noise


def _record(trial_id: int, accuracy: float, **metrics: object) -> Record:
    return Record(trial_id, {}, {}, Result(reward=accuracy, metrics={"accuracy": accuracy, **metrics}))


def test_noise_is_measured_over_repeats_else_binomial() -> None:
    assert reward_noise({"accuracy": 0.8, "repeats": 4, "accuracy_std": 0.02}) == (0.01, "measured over 4 repeats")
    error, source = reward_noise({"accuracy": 0.8, "validation_images": 1600})  # type: ignore[misc]
    assert error == pytest.approx(math.sqrt(0.8 * 0.2 / 1600)) and source == "binomial, 1,600 validation images"
    assert reward_noise({"accuracy": 0.8}) is None and reward_noise({"latency_ms": 3.0}) is None


def test_candidates_within_the_noise_of_the_best_are_tied() -> None:
    # 1,600 images at 80%: standard error 0.01 each, so a difference under 2 * 0.01 * sqrt(2) = 0.0283 is a tie.
    ranked = [_record(7, 0.80, validation_images=1600), _record(3, 0.78, validation_images=1600)]
    ranked += [_record(k, 0.75 - 0.01 * (k - 10), validation_images=1600) for k in range(10, 14)]
    text = _certainty_section(ranked)
    assert "## How sure" in text and "span 0.0800" in text
    assert "**tied within the noise**: the best 2 (trials 7, 3)" in text and "--final-top 2" in text
    assert "true noise is larger" in text
    clear = _certainty_section(
        [_record(1, 0.90, repeats=3, accuracy_std=0.001), _record(2, 0.80, repeats=3, accuracy_std=0.001)]
    )
    assert "ahead of the others by more than the noise" in clear and "true noise is larger" not in clear


def test_no_section_without_noise_or_when_the_reward_is_not_the_accuracy() -> None:
    assert _certainty_section([_record(1, 0.9), _record(2, 0.8)]) == ""  # nothing says how noisy
    other = Record(1, {}, {}, Result(reward=0.5, metrics={"accuracy": 0.9, "validation_images": 100}))
    assert _certainty_section([other, _record(2, 0.4, validation_images=100)]) == ""  # reward is not the accuracy
    assert _certainty_section([_record(1, 0.9, validation_images=100)]) == ""  # one candidate: nothing to compare


def _loss_record(trial_id: int, loss: float, **metrics: object) -> Record:
    return Record(trial_id, {}, {}, Result(reward=-loss, metrics={"final_train_loss": loss, **metrics}))


def test_a_metric_reward_has_no_binomial_noise_but_a_measured_one() -> None:
    assert reward_noise({"final_train_loss": 0.5, "validation_images": 100}, "final_train_loss") is None
    measured = {"final_train_loss": 0.5, "repeats": 4, "final_train_loss_std": 0.04}
    assert reward_noise(measured, "final_train_loss") == (0.02, "measured over 4 repeats")


def test_the_final_stage_spread_judges_the_search_and_the_stage() -> None:
    objective = make_objective("metric:final_train_loss:min")
    ranked = [_loss_record(4, 0.60), _loss_record(9, 0.61), _loss_record(2, 0.80)]
    assert _certainty_section(ranked, objective) == ""  # one evaluation each, and no measured spread
    finals = [
        _loss_record(4, 0.62, repeats=2, final_train_loss_std=0.03),
        _loss_record(9, 0.60, repeats=2, final_train_loss_std=0.04),
    ]
    spread = single_noise(finals, "final_train_loss")
    assert spread == pytest.approx(math.sqrt((0.03**2 + 0.04**2) / 2))
    text = _certainty_section(ranked, objective, (spread, 2))
    assert "reward: metric:final_train_loss:min" in text and "final_train_loss: ±" in text
    assert (
        "the best 2 (trials 4, 9)" in text and "pooled over the repeats of 2 final-stage candidates" in text
    )  # 0.01 apart, noise ~0.035
    assert "binomial" not in text
    stage = _certainty_section(sorted(finals, key=lambda r: -float(r.result.reward or 0)), objective, (spread, 2), True)
    assert "## How sure: the final stage" in stage and "more `--final-repeats`" in stage
    apart = [_loss_record(1, 0.30, repeats=2, final_train_loss_std=0.01), _loss_record(2, 0.60, repeats=2)]
    assert "ahead of the others" in _certainty_section(apart, objective, (0.01, 1), True)


def test_no_section_for_a_reward_of_several_metrics() -> None:
    mnas = make_objective("mnas", target_ms=1.0)
    assert not isinstance(mnas, MetricObjective)
    assert (
        _certainty_section([_record(1, 0.9, validation_images=100), _record(2, 0.8, validation_images=100)], mnas) == ""
    )
