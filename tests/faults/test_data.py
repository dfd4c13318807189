"""Data mistakes fail at load time, before the first trial, with one ``ValueError`` line naming the path.

Everything is offline: the tests write their own tiny PNGs (and corrupt files as random bytes).
"""

from __future__ import annotations

import logging
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nas
import nas.cli.app
from evaluators import ProxyEvaluator
from evaluators.datasets import images_needed
from evaluators.images import image_problem, skipped_files
from nas.data import load_dataset


def _write_pngs(folder: Path, classes: dict[str, int], size: tuple[int, int] = (12, 10)) -> None:
    rng = np.random.default_rng(len(str(folder)))
    for name, count in classes.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{k}.png")


def _corrupt(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(7).bytes(300))
    return path


def _refused(data_dir: Path, named: Path, *patterns: str) -> str:
    """The one-line ``ValueError`` that loading ``data_dir`` raises: it names ``named`` and matches ``patterns``."""
    with pytest.raises(ValueError) as raised:
        load_dataset("imagefolder", data_dir=data_dir)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("imagefolder: ")
    assert repr(str(named)) in message, message
    for pattern in patterns:
        assert pattern in message, (pattern, message)
    return message


# --- imagefolder: the folder's layout ---------------------------------------------------------------


def test_missing_data_dir(tmp_path: Path) -> None:
    _refused(tmp_path / "nowhere", tmp_path / "nowhere", "does not exist", "--data-dir")


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "images.zip").write_bytes(b"PK")
    _refused(tmp_path / "images.zip", tmp_path / "images.zip", "is not a directory")


def test_empty_folder(tmp_path: Path) -> None:
    _refused(tmp_path, tmp_path, "is empty", "one subfolder of images per class")


def test_images_without_class_folders(tmp_path: Path) -> None:
    _write_pngs(tmp_path, {"a": 3})
    for png in (tmp_path / "a").iterdir():
        png.rename(tmp_path / png.name)
    (tmp_path / "a").rmdir()
    _refused(tmp_path, tmp_path, "no class folders", "3 file(s)")


def test_class_folder_without_image_files(tmp_path: Path) -> None:
    _write_pngs(tmp_path, {"cat": 10, "dog": 10})
    (tmp_path / "emu").mkdir()
    (tmp_path / "emu" / "notes.txt").write_text("no images here")
    _refused(tmp_path, tmp_path, "class folder 'emu'", "no image files", ".png")


def test_one_class_is_refused(tmp_path: Path) -> None:
    _write_pngs(tmp_path, {"cat": 20})
    _refused(tmp_path, tmp_path, "only one class ('cat')", "at least two")


def test_one_class_under_train_is_refused(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "train", {"cat": 20})
    _refused(tmp_path, tmp_path / "train", "only one class ('cat')")


def test_one_image_per_class_names_the_class_and_the_count_needed(tmp_path: Path) -> None:
    _write_pngs(tmp_path, {"cat": 1, "dog": 1})
    message = _refused(tmp_path, tmp_path, "class 'cat'", "has 1 image(s)", "at least 7 images")
    assert images_needed(0.2, carve_test=True) == 7 and images_needed(0.2, carve_test=False) == 5
    assert "validation_fraction 0.2" in message


def test_a_class_too_small_to_reach_validation(tmp_path: Path) -> None:
    _write_pngs(tmp_path, {"cat": 30, "dog": 30, "emu": 2})
    _refused(tmp_path, tmp_path, "class 'emu'", "has 2 image(s)", "none is left for", "at least 7")


def test_the_count_needed_always_suffices(tmp_path: Path) -> None:
    _write_pngs(tmp_path, {"cat": 7, "dog": 7, "emu": 7})
    for seed in range(5):
        splits = load_dataset("imagefolder", data_dir=tmp_path, seed=seed, resolution=8)
        for split in (splits.train, splits.validation):
            assert {splits.train.dataset.targets[i] for i in split.indices} == {0, 1, 2}


def test_train_with_too_few_images_per_class(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "train", {"cat": 1, "dog": 8})
    _write_pngs(tmp_path / "val", {"cat": 2, "dog": 2})
    _refused(tmp_path, tmp_path / "train", "class 'cat'", "has 1 image(s)", "at least 5")


def test_train_and_val_with_different_classes(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "train", {"cat": 5, "dog": 5})
    _write_pngs(tmp_path / "val", {"cat": 1, "emu": 1})
    _refused(tmp_path, tmp_path / "val", "classes", "only in val/: ['emu']", "only in train/: ['dog']")


def test_val_without_train(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "val", {"cat": 5, "dog": 5})
    _refused(tmp_path, tmp_path, "val/ but no train/")


# --- imagefolder: unreadable images -----------------------------------------------------------------


@pytest.fixture
def one_corrupt(tmp_path: Path) -> tuple[Path, Path]:
    """41 images in two classes, one of them random bytes named .png."""
    _write_pngs(tmp_path / "data", {"cat": 20, "dog": 20})
    return tmp_path / "data", _corrupt(tmp_path / "data" / "dog" / "bad.png")


def test_a_corrupt_image_is_skipped_with_a_warning(
    one_corrupt: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    data_dir, bad = one_corrupt
    with caplog.at_level(logging.WARNING, logger="evaluators.datasets"):
        splits = load_dataset("imagefolder", data_dir=data_dir, resolution=8)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(bad) in warnings[0].getMessage() and "1 unreadable" in warnings[0].getMessage()
    assert skipped_files(splits) == (str(bad),)
    folder = splits.train.dataset
    assert folder.skipped_files == (str(bad),)
    assert len(folder.samples) == len(folder.targets) == 40 and folder.imgs is folder.samples
    assert [target for _, target in folder.samples] == folder.targets
    assert str(bad) not in {path for path, _ in folder.samples}
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 40
    for split in (splits.train, splits.validation, splits.test):  # every image left decodes
        for k in range(len(split)):
            assert split[k][0].shape == (3, 8, 8)


def test_a_clean_folder_skips_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_pngs(tmp_path, {"cat": 10, "dog": 10})
    with caplog.at_level(logging.WARNING):
        splits = load_dataset("imagefolder", data_dir=tmp_path, resolution=8)
    assert skipped_files(splits) == () and not caplog.records


def test_truncated_png_and_jpeg_are_unreadable(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    for suffix in ("png", "jpg"):
        Image.fromarray(pixels).save(tmp_path / f"whole.{suffix}")
        data = (tmp_path / f"whole.{suffix}").read_bytes()
        (tmp_path / f"half.{suffix}").write_bytes(data[: len(data) // 2])
        assert image_problem(tmp_path / f"whole.{suffix}") is None
        assert image_problem(tmp_path / f"half.{suffix}") is not None
    assert "cannot identify" in image_problem(_corrupt(tmp_path / "noise.png"))


def test_corrupt_image_in_val_is_skipped_too(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "train", {"cat": 5, "dog": 5})
    _write_pngs(tmp_path / "val", {"cat": 2, "dog": 2})
    bad = _corrupt(tmp_path / "val" / "cat" / "bad.png")
    splits = load_dataset("imagefolder", data_dir=tmp_path, resolution=8)
    assert skipped_files(splits) == (str(bad),) and len(splits.test) == 4


def test_a_class_of_only_unreadable_images(tmp_path: Path) -> None:
    _write_pngs(tmp_path, {"cat": 10, "dog": 10})
    (tmp_path / "emu").mkdir()
    for k in range(3):
        _corrupt(tmp_path / "emu" / f"{k}.png")
    _refused(tmp_path, tmp_path, "class folder 'emu'", "no readable images", "all 3 image file(s) are unreadable")


def test_proxy_evaluation_succeeds_despite_a_corrupt_image(one_corrupt: tuple[Path, Path]) -> None:
    data_dir, _ = one_corrupt
    evaluator = ProxyEvaluator(
        "nasnet", dataset="imagefolder", data_dir=data_dir, epochs=1, resolution=16, num_cells=1, penultimate_filters=24
    )
    evaluator.prepare()
    metrics = evaluator.evaluate(nas.presets()["nasnet-a-cifar"], 0)
    assert "error" not in metrics and 0.0 <= metrics["accuracy"] <= 1.0


def test_the_report_counts_and_names_the_skipped_images(one_corrupt: tuple[Path, Path], tmp_path: Path) -> None:
    from nas.cli.app import main

    data_dir, bad = one_corrupt
    config = tmp_path / "small.yaml"
    config.write_text("evaluator_options: {num_cells: 1, penultimate_filters: 24, resolution: 8}\n")
    out = tmp_path / "run"
    assert (
        main(
            [
                "search",
                "--space",
                "nasnet",
                "--controller",
                "random",
                "--budget",
                "1",
                "--dataset",
                "imagefolder",
                "--data-dir",
                str(data_dir),
                "--epochs",
                "1",
                "--out",
                str(out),
                "--config",
                str(config),
                "--no-progress",
            ]
        )
        == 0
    )
    report = (out / "report.md").read_text()
    assert f"- **unreadable images skipped**: 1: {bad}" in report and "- **threads**: `1`" in report


def test_cli_search_on_one_class_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    one_class_dir = tmp_path / "data"
    _write_pngs(one_class_dir, {"cat": 20})
    code = nas.cli.app.main(
        [
            "search",
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(one_class_dir),
            "--out",
            str(tmp_path / "run"),
            "--budget",
            "1",
            "--epochs",
            "1",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1 and "only one class" in err and str(one_class_dir) in err, err
    assert not (tmp_path / "run").exists()


# --- cifar10 ------------------------------------------------------------------------------------------


def _cifar_error(data_dir: Path, **options: object) -> str:
    with pytest.raises(ValueError) as raised:
        load_dataset("cifar10", data_dir=data_dir, **options)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("cifar10: ")
    return message


def test_cifar10_without_data_names_data_dir_and_download(tmp_path: Path) -> None:
    message = _cifar_error(tmp_path)
    assert "--data-dir" in message and "--download" in message and repr(str(tmp_path)) in message


def test_cifar10_with_corrupt_files(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({"data": b"not cifar"}))
    message = _cifar_error(tmp_path)
    assert "corrupted" in message and "--download" in message and repr(str(folder)) in message


def test_cifar10_download_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import cifar

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    message = _cifar_error(tmp_path, download=True)
    assert "could not fetch" in message and "name resolution" in message and repr(str(tmp_path)) in message
