"""The report's "How sure" section: ties within the evaluator's noise shown as ties."""

from __future__ import annotations

import math

import pytest

from nas.controller import Result
from nas.journal import Record
from nas.search.report import _certainty_section, accuracy_noise


def _record(trial_id: int, accuracy: float, **metrics: object) -> Record:
    return Record(trial_id, {}, {}, Result(reward=accuracy, metrics={"accuracy": accuracy, **metrics}))


def test_noise_is_measured_over_repeats_else_binomial() -> None:
    assert accuracy_noise({"accuracy": 0.8, "repeats": 4, "accuracy_std": 0.02}) == (0.01, "measured over 4 repeats")
    error, source = accuracy_noise({"accuracy": 0.8, "validation_images": 1600})  # type: ignore[misc]
    assert error == pytest.approx(math.sqrt(0.8 * 0.2 / 1600)) and source == "binomial, 1,600 validation images"
    assert accuracy_noise({"accuracy": 0.8}) is None and accuracy_noise({"latency_ms": 3.0}) is None


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
