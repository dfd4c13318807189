"""The open objective: any metric an evaluator returns, in either direction; ``mnas`` with any latency metric."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from nas import registry
from nas.cli.app import main
from nas.evaluator import EvaluatorBase
from nas.objective import MetricObjective, MnasObjective, make_objective
from nas.search.run import run_search
from nas.search.settings import SearchSettings
from nas.testing import toy_reward


class TableEvaluator(EvaluatorBase):
    """A benchmark-table stand-in: a score that is not an accuracy, a loss to minimise, a device's latency."""

    def __init__(self, space, seed=0, dataset=None, data_dir=None, download=False, offset: float = 0.0):
        self.space, self.offset = space, offset

    def metrics(self) -> tuple[str, ...]:
        return ("score", "loss", "latency_pixel3_ms", "accuracy")

    def evaluate(self, genotype, trial_id):
        score = toy_reward(self.space, genotype) + self.offset
        return {"score": score, "loss": 1.0 - score, "latency_pixel3_ms": 10.0 + 5.0 * score, "accuracy": score}


@pytest.fixture
def table_evaluator():
    registry.evaluators.register("table-test", TableEvaluator)
    yield "table-test"
    registry.evaluators.unregister("table-test")


def test_objectives_by_name_read_their_metric_in_its_direction() -> None:
    metrics = {"accuracy": 0.9, "loss": 0.25, "latency_ms": 40.0}
    assert make_objective("accuracy") == MetricObjective("accuracy") and make_objective("accuracy").metrics == (
        "accuracy",
    )
    assert make_objective("metric:loss:min").reward(metrics) == -0.25
    assert make_objective("metric:loss:max").reward(metrics) == 0.25 == make_objective("metric:loss").reward(metrics)
    assert make_objective("metric:a:b:min").metrics == ("a:b",)  # a name may hold a colon; the direction is last
    mnas = make_objective("mnas", target_ms=40.0, latency_metric="latency_ms")
    assert isinstance(mnas, MnasObjective) and mnas.reward(metrics) == pytest.approx(0.9)
    assert mnas.metrics == ("accuracy", "latency_ms")


@pytest.mark.parametrize(
    "spec, options, message",
    [
        ("speed", {}, "unknown objective 'speed'"),
        ("metric", {}, "needs a metric name"),
        ("accuracy:top5", {}, "takes no argument"),
        ("mnas", {}, "needs a latency target"),
        ("mnas", {"target_ms": 10.0, "weight": 0.5}, "latency_weight"),
        ("accuracy", {"target_ms": 10.0}, "target_ms: not an option of objective 'accuracy'"),
    ],
)
def test_a_bad_objective_is_one_line(spec: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_objective(spec, **options)


def _rewards(out: Path) -> list[tuple[float, dict]]:
    study = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}")
    return [(trial.value, trial.user_attrs["metrics"]) for trial in study.trials]


def test_a_search_minimises_any_metric_an_evaluator_returns(tmp_path: Path, table_evaluator: str) -> None:
    out = tmp_path / "run"
    best, _ = run_search(
        SearchSettings(
            out=str(out),
            space="efficientnet",
            controller="random",
            budget=5,
            evaluator=table_evaluator,
            objective="metric:loss:min",
        )
    )
    rewards = _rewards(out)
    assert all(value == -metrics["loss"] for value, metrics in rewards)
    assert best.result.reward == max(value for value, _ in rewards)  # the smallest loss
    report = (out / "report.md").read_text()
    assert '**objective**: `"metric:loss:min"`' in report and "| loss |" in report


def test_mnas_reads_the_latency_of_any_named_metric(tmp_path: Path, table_evaluator: str) -> None:
    """A latency the evaluator returns (a device's, from a table) needs no lookup table of this machine."""
    out = tmp_path / "run"
    run_search(
        SearchSettings(
            out=str(out),
            space="efficientnet",
            controller="random",
            budget=3,
            evaluator=table_evaluator,
            objective="mnas",
            latency_target_ms=12.0,
            latency_metric="latency_pixel3_ms",
        )
    )
    for value, metrics in _rewards(out):
        assert "latency_ms" not in metrics  # no lookup-table latency was added
        assert value == pytest.approx(metrics["accuracy"] * (metrics["latency_pixel3_ms"] / 12.0) ** -0.07)


def test_an_objective_reading_a_metric_the_evaluator_does_not_return_is_refused_before_a_trial(
    tmp_path: Path, table_evaluator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = [
        "search",
        "--space",
        "efficientnet",
        "--controller",
        "random",
        "--budget",
        "2",
        "--evaluator",
        table_evaluator,
        "--objective",
        "metric:top5",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "objective: 'metric:top5:max' reads the metric 'top5'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    argv[argv.index("metric:top5")] = "metric:score"
    assert main([*argv, "--latency-weight", "-0.1"]) == 2
    assert "add --objective mnas" in capsys.readouterr().err


def test_an_old_config_with_proxy_is_read_as_evaluator_options_with_a_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "old.yaml"
    config.write_text("proxy: {num_cells: 1, penultimate_filters: 24, batch_size: 64}\n")
    out = tmp_path / "run"
    assert (
        main(
            [
                "search",
                "--controller",
                "random",
                "--budget",
                "1",
                "--dataset",
                "synthetic",
                "--epochs",
                "1",
                "--config",
                str(config),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "the key 'proxy' is now 'evaluator_options'" in err
    recorded = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}").user_attrs
    assert recorded["nas_settings"]["evaluator_options"] == {
        "num_cells": 1,
        "penultimate_filters": 24,
        "batch_size": 64,
    }
    both = tmp_path / "both.yaml"
    both.write_text("proxy: {num_cells: 1}\nevaluator_options: {num_cells: 1}\n")
    assert main(["search", "--config", str(both), "--out", str(tmp_path / "other")]) == 2
    assert "keep 'evaluator_options'" in capsys.readouterr().err


def test_a_run_recorded_with_proxy_resumes_under_evaluator_options(tmp_path: Path, table_evaluator: str) -> None:
    """Journals written before the rename hold ``proxy`` in their identity; they resume unchanged."""
    out = tmp_path / "run"
    settings = SearchSettings(
        out=str(out),
        space="efficientnet",
        controller="random",
        budget=1,
        evaluator=table_evaluator,
        evaluator_options={"offset": 0.5},
    )
    run_search(settings)
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name="nas-search", storage=storage)
    old = dict(study.user_attrs["nas_settings"])
    old["proxy"] = old.pop("evaluator_options")
    study.set_user_attr("nas_settings", old)
    best, stats = run_search(SearchSettings(**{**settings.__dict__, "budget": 2}))
    assert stats.evaluated == 1 and len(optuna.load_study(study_name="nas-search", storage=storage).trials) == 2
    assert json.loads((out / "best.json").read_text())["space"] == "efficientnet"


def test_an_unnamed_objective_is_the_evaluators_default(tmp_path: Path, table_evaluator: str) -> None:
    # The proxy's short trainings rank by the last epoch's training loss (SoTL-E); a table, any other
    # evaluator, by the accuracy; a named objective always wins, and the resolved name is the identity.
    proxy = SearchSettings(out=str(tmp_path / "p"), space="nb201")
    assert proxy.objective == "metric:final_train_loss:min" and proxy.identity()["objective"] == proxy.objective
    assert proxy.make_objective() == MetricObjective("final_train_loss", "min")
    assert SearchSettings(out=str(tmp_path / "t"), evaluator="tabular").objective == "accuracy"
    assert SearchSettings(out=str(tmp_path / "o"), evaluator=table_evaluator).objective == "accuracy"
    assert SearchSettings(out=str(tmp_path / "n"), objective="accuracy").objective == "accuracy"
