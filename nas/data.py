"""Datasets as the engine sees them: train / validation / test splits, loaded by registered name.

A dataset loader is registered in ``nas.registry.datasets`` (entry-point group ``nas.datasets``)
and called as ``loader(data_dir=..., download=..., resolution=..., seed=..., validation_fraction=...,
augment=...)``; ``resolution`` ``None`` means the data's native size. It returns ``DatasetSplits``
and raises ``ValueError`` for missing or unusable data. The *validation* split is held out from
the training data, seeded by ``seed``; the *test* split is never touched by a search.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from nas import registry
from nas.settings import DEFAULT_VALIDATION_FRACTION

MAX_RESOLUTION = 4096  # images are resized in memory: beyond this a data set does not fit


@dataclass(frozen=True)
class DatasetSplits:
    """Train, validation (held out from training data) and test splits of one dataset."""

    name: str
    train: Dataset[Any]
    validation: Dataset[Any]
    test: Dataset[Any] | None
    num_classes: int
    resolution: int
    channels: int = 3
    class_names: tuple[str, ...] = ()
    # The per-channel (mean, std) the images were normalised with, so that an augmentation can work
    # on [0, 1] pixels (RandAugment); None: unknown (a loader that does not say).
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    # Whether a horizontal mirror image is still an example of its class (not for digits).
    mirror: bool = True


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = False,
    resolution: int | None = None,
    seed: int = 0,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    augment: bool = True,
    **options: Any,
) -> DatasetSplits:
    """Load the registered dataset ``name``; ``ValueError`` for an unknown name or bad settings."""
    loader = registry.datasets.get(name)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction: must be in (0, 1), got {validation_fraction!r}")
    if resolution is not None and (
        isinstance(resolution, bool) or not isinstance(resolution, int) or not 1 <= resolution <= MAX_RESOLUTION
    ):
        raise ValueError(f"resolution: must be an integer in [1, {MAX_RESOLUTION}], got {resolution!r}")
    splits = loader(
        data_dir=data_dir,
        download=download,
        resolution=resolution,
        seed=seed,
        validation_fraction=validation_fraction,
        augment=augment,
        **options,
    )
    if not isinstance(splits, DatasetSplits):
        raise TypeError(f"dataset loader {name!r} returned {type(splits).__name__}, not DatasetSplits")
    return splits


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices ``(kept, held_out)``, ``round(fraction * n)`` held out, stratified by class.

    Each class c gives ``floor(fraction * n_c)`` random examples; the few left to reach the total
    go to the classes with the largest remainders (ties broken by ``seed``), so even a class of two
    examples can contribute to a small held-out split.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    total = int(round(fraction * len(labels)))
    if not 0 < total < len(labels):
        raise ValueError(f"validation_fraction: {fraction!r} of {len(labels)} examples leaves an empty split")
    quotas = np.floor(fraction * counts).astype(int)
    remainders = fraction * counts - quotas + rng.uniform(0, 1e-9, size=len(counts))
    quotas[np.argsort(-remainders)[: total - quotas.sum()]] += 1
    held_out = np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quotas)])
    )
    return np.setdiff1d(np.arange(len(labels)), held_out), held_out


Batch = tuple[torch.Tensor, torch.Tensor]


class ImageTensors(TensorDataset):
    """Decoded, normalised images kept in memory, augmented a batch at a time.

    A data set read from image files is decoded once (``evaluators.datasets``) instead of once per
    epoch: a CIFAR-10 proxy then spends its time in the network, not in JPEG decoding and PIL.
    ``flip`` mirrors each training image with probability 1/2 and ``pad`` > 0 takes a random crop
    of the image padded by ``pad`` pixels of black (``fill``: black after normalisation), the
    torchvision ``RandomHorizontalFlip`` and ``RandomCrop(padding=pad)`` of the file loaders, drawn
    from the global torch generator as theirs are. Still a ``TensorDataset``: code that reads
    ``tensors`` gets the images unaugmented.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        flip: bool = False,
        pad: int = 0,
        fill: torch.Tensor | None = None,
        skipped_files: tuple[str, ...] = (),
        dataset: Dataset[Any] | None = None,
        indices: Sequence[int] = (),
    ) -> None:
        super().__init__(images, labels)
        self.flip, self.pad, self.skipped_files = flip, pad, skipped_files
        self.fill = torch.zeros(images.shape[1]) if fill is None else fill
        # Where the examples came from, as a ``Subset`` says: example i is ``dataset[indices[i]]`` decoded.
        self.dataset, self.indices = dataset, list(indices)

    def subset(self, index: torch.Tensor | np.ndarray) -> ImageTensors:
        """The examples at ``index``, augmented alike."""
        index = torch.as_tensor(index, dtype=torch.long)
        images, labels = self.tensors
        indices = [self.indices[int(i)] for i in index] if self.indices else []
        return ImageTensors(
            images[index], labels[index], self.flip, self.pad, self.fill, self.skipped_files, self.dataset, indices
        )

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of this data set's images with the training transforms applied per image."""
        count, channels, height, width = images.shape
        if self.pad:
            pad = self.pad
            size = (count, channels, height + 2 * pad, width + 2 * pad)
            padded = self.fill.to(images).view(1, channels, 1, 1).expand(size).clone()
            padded[:, :, pad : pad + height, pad : pad + width] = images
            rows = torch.randint(0, 2 * pad + 1, (count, 1)) + torch.arange(height)
            cols = torch.randint(0, 2 * pad + 1, (count, 1)) + torch.arange(width)
            images = padded[
                torch.arange(count)[:, None, None, None],
                torch.arange(channels)[None, :, None, None],
                rows[:, None, :, None].to(images.device),
                cols[:, None, None, :].to(images.device),
            ]
        if self.flip:
            mirrored = torch.rand(count) < 0.5
            images = torch.where(mirrored.view(-1, 1, 1, 1).to(images.device), images.flip(-1), images)
        return images


def cap_per_class(dataset: Dataset[Any], per_class: int, seed: int) -> Dataset[Any]:
    """At most ``per_class`` examples of every class of ``dataset``, drawn by ``seed`` (stratified).

    The image budget of a proxy (EcoNAS, arXiv 2001.01431, trains on a fraction of the images): the
    same examples for every candidate of a search, so they are ranked on one task.
    """
    labels = labels_of(dataset)
    rng = np.random.default_rng(seed)
    keep = np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)])
    )
    if len(keep) == len(labels):
        return dataset
    if isinstance(dataset, ImageTensors):
        return dataset.subset(keep)
    if isinstance(dataset, TensorDataset):
        index = torch.as_tensor(keep)
        return TensorDataset(*(tensor[index] for tensor in dataset.tensors))
    if isinstance(dataset, Subset):
        return Subset(dataset.dataset, [dataset.indices[int(i)] for i in keep])
    return Subset(dataset, keep.tolist())


def labels_of(dataset: Dataset[Any]) -> np.ndarray:
    """The class index of every example of ``dataset``, without decoding images where it can."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].numpy()
    if isinstance(dataset, Subset):
        inner = dataset.dataset
        targets = getattr(inner, "targets", None)
        if targets is not None:
            return np.asarray(targets)[np.asarray(dataset.indices, dtype=np.int64)]
        return labels_of(inner)[np.asarray(dataset.indices, dtype=np.int64)]
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]


def iterate_batches(
    dataset: Dataset[Any],
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[Batch]:
    """``(images, labels)`` batches; in-memory ``TensorDataset``s are sliced without a DataLoader.

    ``drop_last`` drops a final partial batch only if a full one exists (BatchNorm cannot train
    on a single example, and a tiny last batch adds noise to a short proxy run).
    """
    drop_last = drop_last and len(dataset) >= batch_size  # type: ignore[arg-type]
    if isinstance(dataset, TensorDataset):
        images, labels = dataset.tensors
        count = len(labels)
        order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
        stop = count - count % batch_size if drop_last else count
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size].to(images.device)
            if isinstance(dataset, ImageTensors):  # a training split augments, as its file loader's transform did
                yield dataset.augment(images[index]), labels[index]
            else:
                yield images[index], labels[index]
        return
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last, num_workers=0
    )
    yield from loader
