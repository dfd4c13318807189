"""imagefolder without a resolution: the images' most common size (capped), grey folders read as grey.

The tests write their own small images; the sizes, modes and counts are the point of each test.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import nas
from evaluators import ProxyEvaluator
from evaluators.datasets import iterate_batches, load_dataset
from evaluators.images import NATIVE_RESOLUTION_CAP
from nas.data import DatasetSplits

RNG = np.random.default_rng(0)


def _write(
    folder: Path, count: int, size: tuple[int, int], mode: str = "RGB", suffix: str = "png", first: int = 0
) -> None:
    """``count`` images of ``size`` (width, height) in ``mode`` into ``folder``, named from ``first``."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    for k in range(first, first + count):
        if mode == "I;16":
            image = Image.fromarray(RNG.integers(0, 65536, size=(height, width), dtype=np.uint16))
        else:
            pixels = RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            image = Image.fromarray(pixels).convert(mode)
        image.save(folder / f"{k}.{suffix}")


def _load(data_dir: Path, caplog: pytest.LogCaptureFixture, **options: object) -> tuple[DatasetSplits, str]:
    """The splits and the one INFO line that says what size and colour the folder is read at."""
    with caplog.at_level(logging.INFO, logger="evaluators.images"):
        splits = load_dataset("imagefolder", data_dir=data_dir, **options)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("imagefolder: ")]
    assert len(lines) == 1, lines
    return splits, lines[0]


def _all_images(split: Any) -> torch.Tensor:
    return torch.stack([split[k][0] for k in range(len(split))])


def test_the_most_common_size_wins_and_the_others_are_resized(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("cat", "dog"):
        _write(tmp_path / name, 8, (20, 20))
        _write(tmp_path / name, 1, (16, 16), first=8)
        _write(tmp_path / name, 1, (31, 27), first=9)
    splits, line = _load(tmp_path, caplog)
    assert splits.resolution == 20 and splits.channels == 3
    assert line == (
        "imagefolder: 16 images, most common size 20x20; training at 20 px (native), read as RGB (16 of 16 in colour)"
    )
    for split in (splits.train, splits.validation, splits.test):
        assert _all_images(split).shape[1:] == (3, 20, 20)  # the 16 and 31x27 px images too
    batch, _ = next(iter(iterate_batches(splits.train, 4, True, torch.Generator().manual_seed(0))))
    assert batch.shape == (4, 3, 20, 20)


def test_non_square_takes_the_shorter_side_and_ties_go_to_the_smaller_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("a", "b"):
        _write(tmp_path / "train" / name, 5, (24, 14))
    splits, line = _load(tmp_path, caplog)
    assert splits.resolution == 14 and "most common size 24x14; training at 14 px (the shorter side" in line
    assert splits.train[0][0].shape == (3, 14, 14)
    caplog.clear()
    for name in ("a", "b"):
        _write(tmp_path / "train" / name, 5, (18, 18), first=5)
    splits, line = _load(tmp_path, caplog)
    assert splits.resolution == 14 and "20 images, most common size 24x14" in line


def test_an_explicit_resolution_wins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("a", "b"):
        _write(tmp_path / name, 7, (20, 20), mode="L")
    splits, line = _load(tmp_path, caplog, resolution=8)
    assert splits.resolution == 8 and splits.train[0][0].shape == (3, 8, 8)
    assert "most common size 20x20; training at 8 px (the resolution asked for), read as grey" in line


def test_a_grey_folder_is_read_and_normalised_as_grey(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("a", "b", "c"):
        _write(tmp_path / "train" / name, 8, (12, 12), mode="L")
        _write(tmp_path / "train" / name, 1, (12, 12), mode="1", first=8)
        _write(tmp_path / "train" / name, 1, (12, 12), mode="L", suffix="jpg", first=9)
        _write(tmp_path / "val" / name, 2, (12, 12), mode="L")
    _write(tmp_path / "train" / "a", 1, (12, 12), mode="I;16", first=10)
    splits, line = _load(tmp_path, caplog)
    assert line.endswith("training at 12 px (native), read as grey") and splits.channels == 3
    seen = torch.cat([_all_images(splits.train), _all_images(splits.validation)])
    assert seen.shape[1:] == (3, 12, 12)
    assert torch.equal(seen[:, 0], seen[:, 1]) and torch.equal(seen[:, 0], seen[:, 2])  # one grey channel, repeated
    assert abs(float(seen.mean())) < 1e-3 and abs(float(seen.std(unbiased=False)) - 1) < 1e-3  # train statistics
    test = _all_images(splits.test)
    assert test.shape == (6, 3, 12, 12) and torch.equal(test[:, 0], test[:, 2])
    sixteen_bit = str(tmp_path / "train" / "a" / "10.png")
    raw = np.asarray(Image.open(sixteen_bit), dtype=np.float64)
    read = np.asarray(splits.train.dataset.loader(sixteen_bit), dtype=np.float64)
    assert np.abs(read - raw / 257).max() <= 1  # scaled to 8 bits, not clipped to white


@pytest.mark.parametrize("grey_images", [0, 5])
def test_colour_and_mixed_folders_are_read_as_rgb(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, grey_images: int
) -> None:
    for name in ("a", "b"):
        _write(tmp_path / name, 10 - grey_images, (10, 10), mode="RGB")
        _write(tmp_path / name, grey_images, (10, 10), mode="L", first=10)
        _write(tmp_path / name, 1, (10, 10), mode="RGBA", first=20)
        _write(tmp_path / name, 1, (10, 10), mode="P", first=21)
    splits, line = _load(tmp_path, caplog)
    colour = re.search(r"read as RGB \((\d+) of 19 in colour\)$", line)
    assert colour and (int(colour[1]) == 19 if grey_images == 0 else 9 <= int(colour[1]) <= 14), line
    images = torch.cat([_all_images(splits.train), _all_images(splits.test)])
    assert images.shape[1:] == (3, 10, 10) and not torch.equal(images[:, 0], images[:, 1])


def test_huge_images_are_capped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ramp = np.add.outer(np.arange(480), np.arange(480)).astype(np.uint8)  # smooth: small files
    for name in ("a", "b"):
        (tmp_path / "train" / name).mkdir(parents=True)
        for k in range(5):
            Image.fromarray(np.roll(ramp, 37 * k, axis=1)).convert("RGB").save(tmp_path / "train" / name / f"{k}.jpg")
    splits, line = _load(tmp_path, caplog)
    assert splits.resolution == NATIVE_RESOLUTION_CAP == 224
    assert "most common size 480x480; training at 224 px (capped at 224; pass a resolution for more)" in line
    assert splits.validation[0][0].shape == (3, 224, 224)  # JPEG decoded at half scale, 240 px, then resized
    assert load_dataset("imagefolder", data_dir=tmp_path, resolution=480).train[0][0].shape == (3, 480, 480)


def test_a_proxy_search_trains_on_a_grey_folder_at_its_native_size(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _write(tmp_path / name, 12, (12, 12), mode="L")
    evaluator = ProxyEvaluator(
        "nasnet", dataset="imagefolder", data_dir=tmp_path, epochs=1, num_cells=1, penultimate_filters=24
    )
    evaluator.prepare()
    assert evaluator.splits.resolution == 12 and evaluator.macro()["resolution"] == 12
    assert evaluator.describe()["dataset"] == "imagefolder, 2 classes at 12 px"
    metrics = evaluator.evaluate(nas.presets()["nasnet-a-cifar"], 0)
    assert "error" not in metrics and 0.0 <= metrics["accuracy"] <= 1.0
