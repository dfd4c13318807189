"""The MnasNet objective of ``nas search``: reward, settings, the Pareto front and a tiny run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from nas.cli.app import main
from nas.controller import Result
from nas.journal import Record
from nas.objective import make_objective
from nas.search.report import pareto_front
from nas.search.settings import SearchSettings


def mnas_reward(target_ms: float, weight: float = -0.07):
    return make_objective("mnas", target_ms=target_ms, weight=weight).reward


def test_the_mnas_reward_trades_accuracy_for_latency_as_the_paper() -> None:
    reward = mnas_reward(75.0)
    assert reward({"accuracy": 0.8, "latency_ms": 75.0}) == pytest.approx(0.8)
    # Twice the latency costs about 5% of relative accuracy at w = -0.07 (arXiv 1807.11626 §3).
    assert reward({"accuracy": 0.8, "latency_ms": 150.0}) == pytest.approx(0.8 * 2**-0.07)
    assert mnas_reward(10.0, -1.0)({"accuracy": 0.5, "latency_ms": 20.0}) == pytest.approx(0.25)
    for target, weight in ((0.0, -0.07), (float("inf"), -0.07), (10.0, 0.5), (10.0, True)):
        with pytest.raises(ValueError):
            mnas_reward(target, weight)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"objective": "mnas"}, "needs a latency target"),
        ({"latency_target_ms": 20.0}, "add --objective mnas"),
        ({"objective": "speed"}, "unknown objective 'speed'"),
        ({"objective": "mnas", "latency_target_ms": 20.0, "latency_weight": 0.3}, "latency_weight"),
    ],
)
def test_objective_settings_are_checked(tmp_path: Path, values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSettings(out=str(tmp_path / "run"), **values).validate()


def _record(trial: int, accuracy: float, latency: float) -> Record:
    return Record(trial, {}, {}, Result(reward=accuracy, metrics={"accuracy": accuracy, "latency_ms": latency}))


def test_the_pareto_front_keeps_what_nothing_beats_in_both() -> None:
    records = [
        _record(0, 0.90, 10.0),
        _record(1, 0.85, 5.0),
        _record(2, 0.80, 8.0),
        _record(3, 0.95, 20.0),
        _record(4, 0.85, 5.0),
        _record(5, 0.90, 12.0),
    ]
    assert [r.trial_id for r in pareto_front(records)] == [1, 0, 3]


def test_a_tiny_mnas_search_journals_accuracy_and_latency_and_draws_the_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "mnas.yaml"
    config.write_text(
        "evaluator_options: {width_multiplier: 0.25, resolution: 16}\n"
        f"latency: {{resolution: 32, table: {tmp_path / 'table.json'}, min_repetitions: 5, "
        "max_seconds: 0.05, rounds: 1}\n"
    )
    out = tmp_path / "run"
    argv = [
        "search",
        "--space",
        "mobilenetv3",
        "--controller",
        "random",
        "--budget",
        "2",
        "--epochs",
        "1",
        "--dataset",
        "synthetic",
        "--objective",
        "mnas",
        "--latency-target-ms",
        "2",
        "--config",
        str(config),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}")
    for trial in study.trials:
        metrics = trial.user_attrs["metrics"]
        assert metrics["latency_resolution"] == 32 and metrics["latency_ms"] > 0
        assert trial.value == pytest.approx(metrics["accuracy"] * (metrics["latency_ms"] / 2) ** -0.07)
    assert (out / "pareto.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "## Pareto front" in report and "target 2 ms" in report
    assert json.loads((out / "best.json").read_text())["space"] == "mobilenetv3"
    capsys.readouterr()
    changed = [("3" if previous == "--latency-target-ms" else value) for previous, value in zip(["", *argv], argv)]
    assert main(changed) == 2  # another target: refused
    assert "latency_target_ms" in capsys.readouterr().err
