"""``nas train`` end to end on the synthetic data: exact resume after kill -9, outputs, FixRes,
Noisy Student, and one-line refusals (exit 2)."""

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nas
from nas.cli.app import main
from nas.train.fit import resolve_network
from nas.train.run import TrainSettings, run_train

TINY = [
    "nasnet-a-cifar",
    "--set",
    "num_cells=1",
    "--set",
    "penultimate_filters=24",
    "--dataset",
    "synthetic",
    "--precise-bn",
    "64",
    "--batch-size",
    "32",
    "--no-progress",
]
TINY_SETTINGS = {
    "spec": "nasnet-a-cifar",
    "lowering": {"num_cells": 1, "penultimate_filters": 24},
    "dataset": "synthetic",
    "precise_bn": 64,
    "batch_size": 32,
    "progress": False,
}
RESUMED = ["--epochs", "3", "--ema", "0.9", "--fixres", "12"]


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "straight"
    assert main(["train", *TINY, *RESUMED, "--out", str(out)]) == 0
    return out


def test_killed_training_resumes_to_the_same_weights(uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "nas.cli", "train", *TINY, *RESUMED, "--out", str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:  # the checkpoint of epoch 1 is written before its line
        if line.startswith("epoch 1/3"):
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)  # whole, and weights-only loadable
    assert 1 <= checkpoint["epoch"] < 3 and not (out / "model.pt").exists()
    lines: list[str] = []
    run_train(TrainSettings(out=str(out), epochs=3, ema_decay=0.9, fixres=(12,), **TINY_SETTINGS), lines.append)
    assert any("resuming after epoch" in line for line in lines)
    for name in ("model.pt", "model-fixres-12.pt"):
        mine, straight = _state(out / name), _state(uninterrupted / name)
        assert mine.keys() == straight.keys()
        assert all(torch.equal(mine[key], straight[key]) for key in mine), name
    assert _rows(out / "log.csv", drop="seconds") == _rows(uninterrupted / "log.csv", drop="seconds")


def test_outputs_of_a_training(uninterrupted: Path, capsys: pytest.CaptureFixture) -> None:
    results = json.loads((uninterrupted / "train.json").read_text())["results"]
    rows = _rows(uninterrupted / "log.csv")
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3] and (uninterrupted / "curves.png").stat().st_size > 0
    assert float(rows[-1]["learning_rate"]) < float(rows[0]["learning_rate"])  # cosine decay
    assert results["validation_accuracy"] > 0.4  # 4 classes: chance is 0.25
    # DIR/model.pt is what nas.load_model opens (its lowering settings included), with the final weights
    model = nas.load_model(uninterrupted / "model.pt")
    from evaluators.datasets import iterate_batches
    from nas.train.fit import load_train_data
    from nas.training import evaluate

    data = load_train_data(TrainSettings(out="unused", fixres=(12,), **TINY_SETTINGS))
    assert data.crop_fraction == 1.0 and data.splits.resolution == 12  # small images are tested whole
    _, accuracy = evaluate(model, iterate_batches(data.splits.validation, 256), "cpu", data.view())
    assert accuracy == results["validation_accuracy"]
    # FixRes: accuracy at R_train, at R_test before and after. At 8 px the last cells' maps are 2x2, smaller
    # than their 5x5 and 7x7 kernels, and 12 px (3x3) reaches taps 8 px never trained: the whole network is
    # fine-tuned (nas.train.fixres); test_training covers the family rules
    (row,) = results["fixres"]
    assert row["test_resolution"] == 12 and {"before", "after", "accuracy_at_train_resolution"} <= set(row)
    assert row["unreached_convolutions"] and "whole network" in row["rule"]
    before, after = _state(uninterrupted / "model.pt"), _state(uninterrupted / "model-fixres-12.pt")
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    allowed = tuple(f"{m}." for m in row["adapting_modules"])
    assert all(key.startswith(allowed) for key in changed) and any(key.startswith("stem.") for key in changed)
    # A finished run, rerun, reports instead of training again
    assert main(["train", *TINY, *RESUMED, "--out", str(uninterrupted)]) == 0
    assert "finished; the results" in capsys.readouterr().out


def test_noisy_student_with_hidden_labels(tmp_path: Path) -> None:
    lines: list[str] = []
    results = run_train(
        TrainSettings(
            out=str(tmp_path / "ns"),
            epochs=2,
            noisy_student=True,
            unlabeled_fraction=0.75,
            iterations=1,
            **TINY_SETTINGS,
        ),
        lines.append,
    )
    document = json.loads((tmp_path / "ns" / "noisy_student.json").read_text())
    teacher, student = document["iterations"]
    assert (teacher["role"], student["role"]) == ("teacher", "student")
    assert document["labeled"] == 102 and document["unlabeled"] == 308  # 410 training images, 75% hidden
    facts = student["pseudo_labels"]
    assert facts["kept_at_threshold"] <= 308 and 0.0 <= facts["accuracy_on_hidden_labels"] <= 1.0
    used = facts["per_class_used"]
    assert sum(used) == facts["used"] and max(used) - min(c for c in used if c) <= 1  # balanced per class
    assert results["noisy_student"] == document["iterations"]
    assert (tmp_path / "ns" / "student-1" / "model.pt").exists() and (tmp_path / "ns" / "model.pt").exists()
    assert any(line.startswith("Noisy Student iteration 1 (student") for line in lines)
    assert len(_rows(tmp_path / "ns" / "log.csv")) == 2


def test_unlabeled_folder_is_read_like_the_data(tmp_path: Path) -> None:
    from PIL import Image

    from nas.train.noisy_student import load_unlabeled_folder

    (tmp_path / "u" / "deeper").mkdir(parents=True)
    Image.fromarray(np.full((10, 14), 200, dtype=np.uint8)).save(tmp_path / "u" / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "u" / "deeper" / "b.jpg")
    (tmp_path / "u" / "notes.txt").write_text("not an image")
    (tmp_path / "u" / "broken.png").write_bytes(b"not a png")
    grey = load_unlabeled_folder(tmp_path / "u", 6, ((0.5,) * 3, (0.25,) * 3))
    assert grey.shape == (2, 3, 6, 6)
    torch.testing.assert_close(grey[0], torch.full((3, 6, 6), (200 / 255 - 0.5) / 0.25))
    assert torch.allclose(grey[1], torch.tensor(-2.0))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_unlabeled_folder(empty, 6, ((0.5,) * 3, (0.25,) * 3))


def test_a_materialized_file_is_the_start(tmp_path: Path) -> None:
    path = tmp_path / "start.pt"
    assert main(["materialize", "nasnet-a-cifar", "--num-classes", "4", "--seed", "3", "--out", str(path)]) == 0
    network = resolve_network(str(path), {"num_cells": 1, "penultimate_filters": 24}, 8)
    assert network.start is not None and network.lowering["resolution"] == 8
    model = network.build(num_classes=4, seed=0)
    saved = torch.load(path, weights_only=True)["state_dict"]
    loaded = model.state_dict()
    same = [k for k in loaded if k in saved and saved[k].shape == loaded[k].shape]
    assert same and all(torch.equal(loaded[k], saved[k]) for k in same)


def test_fixres_fine_tunes_the_whole_network_where_r_test_reaches_untrained_kernel_taps(tmp_path: Path) -> None:
    """MobileNetV3-Small at 16 px: 1x1 maps from stages.2.0 on, 2x2 at 24 px (benchmarks/results/fixres_gap)."""
    out = tmp_path / "mnv3"
    settings = {**TINY_SETTINGS, "spec": "mobilenetv3-small", "lowering": {"width_multiplier": 0.25}}
    results = run_train(TrainSettings(out=str(out), epochs=1, resolution=16, fixres=(24,), **settings), lambda _: None)
    (row,) = results["fixres"]
    assert row["unreached_convolutions"][0] == "stages.2.0.block.1.0" and "whole network" in row["rule"]
    before, after = _state(out / "model.pt"), _state(out / "model-fixres-24.pt")
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert {"stem.0.weight", "stages.0.0.block.0.1.running_var", "stages.2.0.block.1.0.weight"} <= changed


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["no-such-preset"], "neither a preset nor a file"),
        (["nasnet-a-cifar", "--set", "depth=3"], "--set depth: not a setting of space 'nasnet'"),
        (["nasnet-a-cifar", "--unlabeled-fraction", "0.5"], "belong to --noisy-student"),
        (["nasnet-a-cifar", "--noisy-student"], "exactly one of --unlabeled DIR and --unlabeled-fraction"),
        (
            ["nasnet-a-cifar", "--noisy-student", "--unlabeled-fraction", "1.5"],
            "--unlabeled-fraction: must be in (0, 1)",
        ),
        (["nasnet-a-cifar", "--fixres", "0"], "--fixres: test resolutions must be in [1, 4096]"),
        (["nasnet-a-cifar", "--label-smoothing", "1"], "label_smoothing: must be in [0, 1)"),
        (["nasnet-a-cifar", "--epochs", "0"], "--epochs: must be an integer >= 1"),
        (["nasnet-a-cifar", "--optimizer", "lamb"], "invalid choice"),
        (
            ["nasnet-a-mobile", "--noisy-student", "--unlabeled-fraction", "0.5", "--student", "nasnet-a-cifar"],
            "fewer than the teacher's",
        ),
        (["nasnet-a-cifar", "--noisy-student", "--unlabeled", "MISSING"], "is not a directory of images"),
        (["nasnet-a-cifar", "--set", "num_cells=1", "--dataset", "nope"], "unknown"),
        (["nasnet-a-cifar", "--randaugment-magnitude", "31"], "magnitude in [0, 30]"),
        (["nasnet-a-cifar", "--gradient-clip", "-1"], "--gradient-clip: must be >= 0"),
        (["nasnet-a-cifar", "--fixres-learning-rate", "-1"], "--fixres-learning-rate: must be a positive number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    arguments = [a.replace("MISSING", str(tmp_path / "missing")) for a in arguments]
    assert (
        main(
            [
                "train",
                *arguments,
                "--dataset" if "--dataset" not in arguments else "--seed",
                "synthetic" if "--dataset" not in arguments else "0",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, error
    assert not (tmp_path / "run").exists()  # refused before anything is written: the same --out works once fixed


def test_a_directory_with_other_settings_or_other_files_is_refused(
    uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["train", *TINY, *RESUMED, "--epochs", "4", "--out", str(uninterrupted)]) == 2
    assert "holds a nas train run with other settings (epochs: 3 -> 4)" in capsys.readouterr().err
    (tmp_path / "mine.txt").write_text("a user's file")
    assert main(["train", *TINY, "--out", str(tmp_path)]) == 2
    assert "is not a nas train directory" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "a user's file"


def _rows(path: Path, drop: str | None = None) -> list[dict[str, str]]:
    """The rows of a ``log.csv``, without the column ``drop`` (timings differ between two runs)."""
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != drop} for row in csv.DictReader(handle)]
