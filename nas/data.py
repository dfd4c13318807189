"""Datasets as the engine sees them: train / validation / test splits, loaded by registered name.

A dataset loader is registered in ``nas.registry.datasets`` (entry-point group ``nas.datasets``)
and called as ``loader(data_dir=..., download=..., resolution=..., seed=..., validation_fraction=...,
augment=...)``; ``resolution`` ``None`` means the data's native size. It returns ``DatasetSplits``
and raises ``ValueError`` for missing or unusable data. The *validation* split is held out from
the training data, seeded by ``seed``; the *test* split is never touched by a search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from nas import registry

DEFAULT_VALIDATION_FRACTION = 0.2
MAX_RESOLUTION = 4096  # images are resized in memory: beyond this a data set does not fit


@dataclass(frozen=True)
class DatasetSplits:
    """Train, validation (held out from training data) and test splits of one dataset."""

    name: str
    train: Dataset
    validation: Dataset
    test: Dataset | None
    num_classes: int
    resolution: int
    channels: int = 3
    class_names: tuple[str, ...] = ()
    # The per-channel (mean, std) the images were normalised with, so that an augmentation can work
    # on [0, 1] pixels (RandAugment); None: unknown (a loader that does not say).
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    # Whether a horizontal mirror image is still an example of its class (not for digits).
    mirror: bool = True


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False,
                 resolution: int | None = None, seed: int = 0,
                 validation_fraction: float = DEFAULT_VALIDATION_FRACTION, augment: bool = True,
                 **options: Any) -> DatasetSplits:
    """Load the registered dataset ``name``; ``ValueError`` for an unknown name or bad settings."""
    loader = registry.datasets.get(name)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction: must be in (0, 1), got {validation_fraction!r}")
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)
                                   or not 1 <= resolution <= MAX_RESOLUTION):
        raise ValueError(f"resolution: must be an integer in [1, {MAX_RESOLUTION}], got {resolution!r}")
    splits = loader(data_dir=data_dir, download=download, resolution=resolution, seed=seed,
                    validation_fraction=validation_fraction, augment=augment, **options)
    if not isinstance(splits, DatasetSplits):
        raise TypeError(f"dataset loader {name!r} returned {type(splits).__name__}, not DatasetSplits")
    return splits
