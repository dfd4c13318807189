"""The search's cost estimate after its first candidate, and the proxy's cheaper settings behind its advice."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from evaluators.proxy import ProxyEvaluator
from nas.controller import Result
from nas.journal import Record
from nas.search.run import cost_estimate


def _record(trial_id: int, seconds: float, train_seconds: float, failed: bool = False) -> Record:
    metrics = {"seconds": seconds, "train_seconds": train_seconds}
    result = Result.failure("boom", metrics) if failed else Result(reward=0.5, metrics=metrics)
    return Record(trial_id, {}, {}, result)


class _Journal:
    def __init__(self, finished: int) -> None:
        self.finished = finished

    def __len__(self) -> int:
        return self.finished


def _run(budget: int, workers: int, evaluator: Any, finished: int = 1) -> Any:
    settings = SimpleNamespace(budget=budget, workers=workers)
    return SimpleNamespace(settings=settings, parts=SimpleNamespace(evaluator=evaluator), journal=_Journal(finished))


@pytest.fixture(scope="module")
def proxy() -> ProxyEvaluator:
    return ProxyEvaluator("nasnet", dataset="digits", seed=0)  # 1,437 training, 360 validation images


def test_proxy_cheaper_shrinks_the_image_budget_that_dominates(proxy: ProxyEvaluator) -> None:
    per_class_train = len(proxy.splits.train) / 10  # type: ignore[arg-type]
    per_class_validation = len(proxy.splits.validation) / 10  # type: ignore[arg-type]
    # Training dominates: only the training images shrink, by the factor once the rest is paid for.
    options = proxy.cheaper({"seconds": 100.0, "train_seconds": 95.0}, 4.0)
    assert options == {"images_per_class": int(per_class_train * (25 - 5) / 95)}
    # Validation is half the time or more of the target: it is capped too.
    options = proxy.cheaper({"seconds": 100.0, "train_seconds": 50.0}, 10.0)
    assert options is not None and set(options) == {"images_per_class", "validation_images_per_class"}
    assert options["images_per_class"] == int(per_class_train * 5 / 50)
    assert options["validation_images_per_class"] == max(10, int(per_class_validation * 5 / 50))
    assert (
        proxy.cheaper({"seconds": 100.0}, 4.0) is None
        and proxy.cheaper({"seconds": 9.0, "train_seconds": 8.0}, 0.5) is None
    )


def test_the_estimate_is_said_once_after_the_first_candidate_with_advice_past_an_hour(proxy: ProxyEvaluator) -> None:
    said: list[str] = []
    hook = cost_estimate(_run(budget=101, workers=2, evaluator=proxy), said.append)
    hook(_record(0, 600.0, 500.0), True)  # replayed from the journal: this session measured nothing
    hook(_record(1, 600.0, 500.0, failed=True), False)
    assert said == []
    hook(_record(2, 600.0, 500.0), False)
    hook(_record(3, 600.0, 500.0), False)
    assert len(said) == 1
    line = said[0]
    assert "took 10 min" in line and "100 still to run take about 8.3 h with 2 worker(s)" in line
    assert (
        "to finish within an hour, set evaluator_options {images_per_class: 8, validation_images_per_class: 10}" in line
    )
    assert line.endswith("in a --config file")


def test_a_quick_or_short_search_gets_no_advice(proxy: ProxyEvaluator) -> None:
    said: list[str] = []
    cost_estimate(_run(budget=50, workers=1, evaluator=proxy), said.append)(_record(0, 2.0, 1.5), False)
    assert said == []  # a first candidate of 2 s: nothing worth saying
    cost_estimate(_run(budget=20, workers=1, evaluator=proxy), said.append)(_record(0, 60.0, 50.0), False)
    assert said == [
        "the first candidate took 60 s: the 19 still to run take about 19 min with 1 worker(s), "
        "more or less as candidates differ in size"
    ]
