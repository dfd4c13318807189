"""Image files decoded once into memory (``ImageTensors``) and the proxy's image budget (``images_per_class``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset, TensorDataset

import evaluators.datasets as datasets
from evaluators.proxy import ProxyEvaluator
from evaluators.proxy_options import ProxyOptions
from nas.data import ImageTensors, cap_per_class, iterate_batches, labels_of, load_dataset
from nas.space import get


def _write_jpegs(folder: Path, classes: dict[str, int], size: int = 12) -> None:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (folder / name).mkdir(parents=True)
        for k in range(count):
            Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(folder / name / f"{k}.jpg")


def _stack(dataset: torch.utils.data.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.stack([image for image, _ in items]), torch.as_tensor([int(label) for _, label in items])


def test_decoded_splits_hold_what_the_files_give(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In memory, every split holds exactly the images the per-file transforms give, from the same files."""
    _write_jpegs(tmp_path / "train", {"cat": 6, "dog": 6})
    _write_jpegs(tmp_path / "val", {"cat": 2, "dog": 2})
    memory = load_dataset("imagefolder", data_dir=tmp_path, resolution=8, seed=3)
    monkeypatch.setattr(datasets, "IN_MEMORY_BYTES", 0)
    files = load_dataset("imagefolder", data_dir=tmp_path, resolution=8, seed=3, augment=False)
    assert isinstance(memory.train, ImageTensors) and not isinstance(files.train, ImageTensors)
    for decoded, read in (
        (memory.train, files.train),
        (memory.validation, files.validation),
        (memory.test, files.test),
    ):
        assert isinstance(decoded, ImageTensors) and decoded.indices == list(getattr(read, "indices", range(len(read))))
        images, labels = _stack(read)
        torch.testing.assert_close(decoded.tensors[0], images, rtol=0, atol=1e-6)
        assert torch.equal(decoded.tensors[1], labels)
    assert memory.train.flip and not memory.validation.flip and memory.train.pad == 0


def test_training_batches_are_flipped_and_cropped_per_image() -> None:
    """Each training image is its own random window of the black-padded image, mirrored or not; the
    evaluation splits are never changed."""
    torch.manual_seed(0)
    images = torch.randn(64, 3, 6, 6)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    data = ImageTensors(images, torch.zeros(64, dtype=torch.long), flip=True, pad=2, fill=fill)
    augmented = data.augment(images)
    padded = fill.view(1, 3, 1, 1).expand(64, 3, 10, 10).clone()
    padded[:, :, 2:8, 2:8] = images
    shifts, flips = set(), 0
    for k in range(64):
        found = [
            (dy, dx, mirrored)
            for dy in range(5)
            for dx in range(5)
            for mirrored in (False, True)
            if torch.equal(
                augmented[k],
                (
                    padded[k, :, dy : dy + 6, dx : dx + 6].flip(-1)
                    if mirrored
                    else padded[k, :, dy : dy + 6, dx : dx + 6]
                ),
            )
        ]
        assert found, f"image {k} is no window of its padded image"
        shifts.add(found[0][:2])
        flips += found[0][2]
    assert len(shifts) > 5 and 10 < flips < 54  # drawn per image, not once per batch
    plain = ImageTensors(images, torch.zeros(64, dtype=torch.long))
    assert torch.equal(next(iterate_batches(plain, 64))[0], images)


def test_cap_per_class_is_stratified_seeded_and_keeps_the_kind_of_data_set() -> None:
    labels = torch.as_tensor(np.repeat([0, 1, 2], [10, 4, 7]))
    images = torch.arange(len(labels), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).contiguous()
    for dataset in (
        ImageTensors(images, labels, flip=True),
        TensorDataset(images, labels),
        Subset(TensorDataset(images, labels), list(range(21))),
    ):
        capped = cap_per_class(dataset, 5, seed=1)
        assert type(capped) is type(dataset)
        assert np.bincount(labels_of(capped)).tolist() == [5, 4, 5]
        again = cap_per_class(dataset, 5, seed=1)
        assert torch.equal(_stack(capped)[0], _stack(again)[0])
    other = cap_per_class(TensorDataset(images, labels), 5, seed=2)
    assert not torch.equal(_stack(other)[0], _stack(cap_per_class(TensorDataset(images, labels), 5, seed=1))[0])
    assert cap_per_class(TensorDataset(images, labels), 10, seed=1).tensors[0].shape[0] == 21  # nothing to cap
    assert cap_per_class(ImageTensors(images, labels, flip=True), 2, seed=0).flip


def test_images_per_class_caps_the_proxy_training_split_only() -> None:
    with pytest.raises(ValueError, match="images_per_class"):
        ProxyOptions(images_per_class=0)
    space = get("nasnet")
    full = ProxyEvaluator(space, dataset="digits", seed=0)
    budget = ProxyEvaluator(space, dataset="digits", seed=0, images_per_class=7)
    assert np.bincount(labels_of(budget.splits.train)).tolist() == [7] * 10
    assert len(budget.splits.validation) == len(full.splits.validation)
    assert "70 train" in budget.describe()["images"]
    both = ProxyEvaluator(space, dataset="digits", seed=0, images_per_class=7, validation_images_per_class=3)
    assert np.bincount(labels_of(both.splits.validation)).tolist() == [3] * 10
    assert torch.equal(both.splits.train.tensors[0], budget.splits.train.tensors[0])  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="validation_images_per_class"):
        ProxyOptions(validation_images_per_class=True)
