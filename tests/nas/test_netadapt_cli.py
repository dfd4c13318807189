"""``nas netadapt`` end to end on a tiny MobileNetV3: it meets its target, resumes after kill -9, refuses mistakes.

The network (two bottlenecks of expansion 192 at 128 px) is small enough to train in a second and
large enough that its latency follows its widths. One lookup table serves every run of the module,
so the later runs measure nothing new and predict exactly what the first one did.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import optuna
import pytest
import torch

import nas
from nas.api import load_model
from nas.cli.app import main
from nas.netadapt.run import NETADAPT_STUDY
from nas.serialization import genotype_json
from search_spaces.mobilenetv3 import MobileNetV3Block, MobileNetV3Genotype

TINY = MobileNetV3Genotype(
    blocks=(MobileNetV3Block(3, 192, 48, False, "relu", 2), MobileNetV3Block(5, 192, 48, True, "hardswish", 1)),
    stem_channels=16,
    head_channels=128,
    classifier_hidden=32,
    resolution=128,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("netadapt")
    (folder / "tiny.json").write_text(json.dumps(genotype_json("mobilenetv3", TINY)))
    # Few runs per measurement: the test checks the bookkeeping, benchmarks/ the figures.
    (folder / "config.yaml").write_text("latency: {min_repetitions: 5, max_seconds: 0.1, rounds: 1}\n")
    return {"genotype": folder / "tiny.json", "table": folder / "latency.json", "folder": folder}


def _args(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "netadapt",
        "--from",
        str(files["genotype"]),
        "--latency-ratio",
        "0.7",
        "--dataset",
        "synthetic",
        "--out",
        str(out),
        "--train-resolution",
        "16",
        "--short-term-steps",
        "2",
        "--long-term-steps",
        "3",
        "--initial-steps",
        "5",
        "--table",
        str(files["table"]),
        "--config",
        str(files["folder"] / "config.yaml"),
        "--latency-source",  # the table's predictions alone: the runs compared below replay each other exactly
        "table",
        *extra,
    ]


def _trials(out: Path) -> list[tuple[int, dict, float | None]]:
    """(trial id, genotype JSON, reward) of every finished trial, read from the study as it is."""
    study = optuna.load_study(study_name=NETADAPT_STUDY, storage=f"sqlite:///{out / 'study.db'}")
    return sorted((t.user_attrs["trial_id"], t.user_attrs["genotype"], t.value) for t in study.trials)


def test_netadapt_meets_its_target_and_writes_a_network_that_materializes(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = files["folder"] / "run"
    assert main(_args(files, out)) == 0, capsys.readouterr().err
    document = json.loads((out / "netadapt.json").read_text())
    assert document["status"] == "met" and document["resolution"] == 128 and document["train_resolution"] == 16
    assert (
        document["final"]["predicted_ms"] <= document["target_ms"] == pytest.approx(0.7 * document["start_latency_ms"])
    )
    assert document["start"]["accuracy"] is not None and document["start"]["measured_ms"] > 0
    for iteration in document["iterations"]:
        assert iteration["proposals"] and iteration["chosen"] in iteration["proposals"]
        assert all(p["predicted_ms"] <= iteration["constraint_ms"] for p in iteration["proposals"])
        assert iteration["chosen"]["measured_ms"] > 0 and iteration["chosen"]["accuracy"] is not None
    chosen = [iteration["chosen"]["trial"] for iteration in document["iterations"]]
    assert sorted(p.name for p in (out / "weights").iterdir()) == sorted(f"trial-{t}.pt" for t in chosen)
    assert (out / "netadapt.png").stat().st_size > 0
    best = nas.resolve(out / "best.json").genotype
    assert best != TINY and nas.materialize(out / "best.json", num_classes=10) is not None
    model = load_model(out / "best.pt")
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, document["num_classes"])
    assert "met: " in capsys.readouterr().out
    assert main(["show", str(out), "--num-classes", "4"]) == 0
    assert "nas netadapt run" in capsys.readouterr().out


def test_measured_latency_sets_the_target_and_stops_the_run(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = files["folder"] / "measured"
    assert main(_args(files, out, "--latency-source", "measured")) == 0, capsys.readouterr().err
    document = json.loads((out / "netadapt.json").read_text())
    study = optuna.load_study(study_name=NETADAPT_STUDY, storage=f"sqlite:///{out / 'study.db'}")
    start_measured = study.user_attrs["nas_start_measured_ms"]
    assert document["latency_source"] == "measured" and document["status"] == "met"
    assert document["start_latency_ms"] == start_measured  # timed end to end, not predicted
    assert document["target_ms"] == pytest.approx(0.7 * start_measured)
    ratios = [document["start"]["measured_ms"] / document["start"]["latency_ms"]]
    for iteration in document["iterations"]:  # the predictions scaled by the median measured / predicted so far
        scales = {round(p["expected_ms"] / p["predicted_ms"], 9) for p in iteration["proposals"]}
        assert scales == {round(statistics.median(ratios[-20:]), 9)}
        ratios += [p["measured_ms"] / p["predicted_ms"] for p in iteration["proposals"]]
    final = document["final"]
    assert final["lowest_reached_ms"] == pytest.approx(final["predicted_ms"] * statistics.median(ratios[-20:]))
    assert final["lowest_reached_ms"] <= document["target_ms"]
    assert "off it measured" in capsys.readouterr().out


def test_a_target_out_of_reach_is_refused_before_training_naming_the_lowest(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = files["folder"] / "unreachable"
    for source in ("measured", "table"):
        assert main(_args(files, out, "--latency-ratio", "0.05", "--latency-source", source)) == 2
        err = capsys.readouterr().err
        assert "out of reach of the widths; the narrowest network they allow is" in err
        assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_killed_run_resumes_after_its_last_finished_proposal(files: dict[str, Path], run_and_kill) -> None:
    out = files["folder"] / "killed"
    assert run_and_kill(_args(files, out), after_lines=2) == 2
    recorded = _trials(out)
    assert len(recorded) >= 2
    assert main(_args(files, out)) == 0
    resumed = _trials(out)
    assert resumed[: len(recorded)] == recorded  # nothing finished before the kill was lost or repeated
    assert resumed == _trials(files["folder"] / "run")  # and the run is the uninterrupted one
    assert _decisions(out) == _decisions(files["folder"] / "run")


def test_on_ray_the_proposals_of_an_iteration_are_fine_tuned_at_once_with_the_local_results(
    files: dict[str, Path],
) -> None:
    """NetAdapt waits for all the proposals of an iteration, so two workers choose as one process does;
    the workers read their parent's weights from, and write their own to, the run directory."""
    pytest.importorskip("ray")
    out = files["folder"] / "on-ray"
    assert main(_args(files, out, "--backend", "ray", "--workers", "2")) == 0
    assert _trials(out) == _trials(files["folder"] / "run")
    assert _decisions(out) == _decisions(files["folder"] / "run")
    assert sorted(p.name for p in (out / "weights").iterdir()) == sorted(
        p.name for p in (files["folder"] / "run" / "weights").iterdir()
    )


def _decisions(out: Path) -> list[list[tuple]]:
    """Every proposal of every iteration (measured latencies are timings and differ between runs)."""
    document = json.loads((out / "netadapt.json").read_text())
    return [
        [
            (
                p["trial"],
                p["width"],
                p["channels"],
                p["predicted_ms"],
                p["accuracy"],
                p["trial"] == iteration["chosen"]["trial"],
            )
            for p in iteration["proposals"]
        ]
        for iteration in document["iterations"]
    ]


def test_given_weights_are_used_instead_of_training_the_start(files: dict[str, Path]) -> None:
    weights = files["folder"] / "tiny.pt"
    assert main(["materialize", str(files["genotype"]), "--out", str(weights), "--num-classes", "4"]) == 0  # synthetic
    out = files["folder"] / "weighted"
    assert main(_args(files, out, "--weights", str(weights), "--latency-ratio", "0.95")) == 0  # one iteration
    assert not (out / "start.pt").exists() and (out / "best.pt").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--latency-target-ms", "1"], "not allowed with argument"),
        (["--weights", "no-such.pt"], "no such file"),
        (["--short-term-steps", "-1"], "short_term_steps"),
        (["--selection", "fastest"], "invalid choice"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(
    files: dict[str, Path], extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = files["folder"] / "mistake"
    assert main(_args(files, out, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["netadapt", "--from", "nasnet-a-mobile", "--latency-ratio", "0.5"], "cannot be pruned"),
        (["netadapt", "--from", "mobilenetv3-small"], "exactly one of --latency-ratio and --latency-target-ms"),
        (["netadapt", "--from", "mobilenetv3-small", "--latency-ratio", "1.5"], "latency_ratio"),
    ],
)
def test_settings_mistakes_write_nothing(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out", str(tmp_path / "run"), "--table", str(tmp_path / "t.json")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_weights_of_another_network_and_changed_settings_are_refused(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    other = files["folder"] / "small.pt"
    assert main(["materialize", "mobilenetv3-small", "--out", str(other), "--num-classes", "4"]) == 0
    assert main(_args(files, files["folder"] / "other", "--weights", str(other))) == 2
    assert "another network" in capsys.readouterr().err
    run = files["folder"] / "run"
    before = (run / "netadapt.json").read_bytes()
    assert main(_args(files, run, "--reduction", "0.2")) == 2
    assert "other settings" in capsys.readouterr().err and (run / "netadapt.json").read_bytes() == before


def test_doctor_exports_a_netadapt_run_that_resumes_with_nothing_to_redo(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, rescued = files["folder"] / "run", files["folder"] / "rescued"
    assert main(["doctor", str(run), "--export", str(rescued)]) == 0
    assert (rescued / "start.pt").exists() and sorted((rescued / "weights").iterdir())
    assert main(_args(files, rescued)) == 0
    assert _trials(rescued) == _trials(run) and _decisions(rescued) == _decisions(run)
