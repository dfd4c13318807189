"""Image files as a search reads them: each checked once from its header (unreadable ones are left
out and named), a folder's native size and colour, grey folders' statistics, a loader that
decodes large JPEGs at a reduced DCT scale, and whole splits decoded once into memory (``decoded``)."""

from __future__ import annotations

import copy
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from nas.data import DatasetSplits, ImageTensors
from nas.errors import first_line

logger = logging.getLogger(__name__)

NATIVE_RESOLUTION_CAP = 224
GREY_BANDS = ("1", "L", "I", "F")  # first band of PIL's grey modes: 1, L, LA, I, I;16*, F
COLOUR_TOLERANCE = 0.01  # a folder is grey if at most this share of its training images is in colour
GREY_STATISTICS_IMAGES = 256  # training images sampled for a grey folder's mean and std
DECODE_BATCH = 256  # images decoded into memory a batch at a time
GREY_SAMPLE_SEED = 1707_07012  # the fixed sample of a grey folder's statistics (no search seed changes them)


def native_settings(dataset: Any, pool: np.ndarray, resolution: int | None) -> tuple[int, bool]:
    """``(resolution, grey)`` from the headers of ``dataset``'s images ``pool`` (see ``imagefolder``)."""
    headers = [dataset.image_headers[dataset.samples[i][0]] for i in pool]
    colour = sum(not is_grey for _, _, is_grey in headers)
    grey = colour <= COLOUR_TOLERANCE * len(headers)
    sizes = Counter((width, height) for width, height, _ in headers)
    (width, height), _ = min(sizes.items(), key=lambda item: (-item[1], min(item[0]), item[0]))
    native = min(width, height)
    if resolution is not None:
        how = "the resolution asked for"
    elif native > NATIVE_RESOLUTION_CAP:
        resolution, how = NATIVE_RESOLUTION_CAP, f"capped at {NATIVE_RESOLUTION_CAP}; pass a resolution for more"
    else:
        resolution, how = native, "native" if width == height else "the shorter side, center-cropped"
    logger.info(
        "imagefolder: %d images, most common size %dx%d; training at %d px (%s), read as %s",
        len(headers),
        width,
        height,
        resolution,
        how,
        "grey" if grey else f"RGB ({colour} of {len(headers)} in colour)",
    )
    return resolution, grey


def grey_statistics(dataset: Any, pool: np.ndarray, geometry: list[Any]) -> tuple[tuple[float], tuple[float]]:
    """Mean and std of the pixels of up to ``GREY_STATISTICS_IMAGES`` images of ``pool`` (a fixed sample),
    as the networks see them (after ``geometry``)."""
    from torchvision import transforms as T  # lazy: torchvision only for the image data sets

    rng = np.random.default_rng(GREY_SAMPLE_SEED)
    sample = np.sort(rng.choice(pool, size=min(len(pool), GREY_STATISTICS_IMAGES), replace=False))
    to_tensor = T.Compose([*geometry, T.ToTensor()])
    moments = np.zeros(3)  # pixels, their sum, the sum of their squares
    for index in sample:
        pixels = to_tensor(dataset.loader(dataset.samples[index][0])).double()
        moments += (pixels.numel(), float(pixels.sum()), float(pixels.square().sum()))
    mean = moments[1] / moments[0]
    std = max(moments[2] / moments[0] - mean**2, 0.0) ** 0.5
    return (float(mean),), (max(float(std), 1e-6),)


def load_image(path: str, mode: str, resolution: int) -> Any:
    """``ImageFolder``'s loader: the file as an 8-bit ``mode`` ("L" or "RGB") image.

    JPEGs are decoded at the smallest DCT scale that keeps both sides at least ``resolution``
    (``draft``), so large photos cost a fraction of a full decode. 16-bit grey (modes I;16, I) is
    scaled to 8 bits, where PIL's ``convert`` would clip everything above 255 to white.
    """
    with open(path, "rb") as file, Image.open(file) as image:
        image.draft(mode, (resolution, resolution))
        if image.mode == "I" or image.mode.startswith("I;16"):
            image = Image.fromarray((np.asarray(image, dtype=np.float64) / 257).clip(0, 255).astype(np.uint8))
        return image.convert(mode)


def skipped_files(splits: DatasetSplits) -> tuple[str, ...]:
    """The image files an ``imagefolder`` load left out as unreadable (train, validation and test)."""
    found: dict[str, None] = {}
    for split in (splits.train, splits.validation, splits.test):
        dataset = split.dataset if isinstance(split, Subset) else split
        found.update(dict.fromkeys(getattr(dataset, "skipped_files", ())))
    return tuple(found)


def image_problem(path: str | Path) -> str | None:
    """Why the image file ``path`` cannot be read, or ``None`` if it can.

    PNG: every chunk's CRC (``verify``), then a full decode, since a data stream with valid CRCs
    can still be broken. JPEG: the header, and the end-of-image marker that a truncated file
    lacks; without one, a decode at 1/8 scale decides. Other formats: a full decode.
    """
    return read_image(path)[0]


def read_image(path: str | Path) -> tuple[str | None, tuple[int, int, bool] | None]:
    """``(image_problem(path), None)``, or ``(None, (width, height, grey))`` from the header."""
    try:
        with Image.open(path) as image:
            header = (*image.size, image.getbands()[0] in GREY_BANDS)
            if image.format == "PNG":
                image.verify()
        with Image.open(path) as image:
            if image.format != "JPEG" or not _ends_with_jpeg_eoi(path):
                image.draft("RGB", (1, 1))  # JPEG: DCT scaling; a no-op for other formats
                image.load()
    except Exception as error:
        return f"{type(error).__name__}: {first_line(error)}", None
    return None, header


def _ends_with_jpeg_eoi(path: str | Path) -> bool:
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        file.seek(max(file.tell() - 2, 0))
        return file.read() == b"\xff\xd9"


def retransformed(split: Dataset, transform: object) -> Dataset:
    """``split`` (a file data set or a ``Subset`` of one) reading its files through ``transform``."""
    if isinstance(split, Subset):
        return Subset(with_transform(split.dataset, transform), split.indices)
    return with_transform(split, transform)


def decoded(
    dataset: Dataset,
    normalization: tuple[tuple[float, ...], tuple[float, ...]],
    flip: bool = False,
    pad: int = 0,
) -> ImageTensors:
    """Every example of ``dataset`` (8-bit pixels, or a ``Subset`` of them) decoded, normalised with
    ``normalization`` as ``ToTensor`` + ``Normalize`` would, grey repeated to 3 channels; the result
    names its source files as the ``Subset`` it replaces did (``dataset``, ``indices``)."""
    mean = torch.as_tensor(normalization[0]).view(1, -1, 1, 1)
    std = torch.as_tensor(normalization[1]).view(1, -1, 1, 1)
    images, labels = [], []
    for pixels, label in DataLoader(dataset, batch_size=DECODE_BATCH, num_workers=0):
        batch = pixels.float().div(255)
        if batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        images.append((batch - mean) / std)
        labels.append(label)
    targets = torch.cat(labels)
    if isinstance(dataset, Subset):
        source, positions = dataset.dataset, list(dataset.indices)
    else:
        source, positions = dataset, list(range(len(targets)))
    skipped = tuple(getattr(source, "skipped_files", ()))
    fill = (-mean / std).flatten()  # black, normalised: RandomCrop pads with 0 before normalising
    return ImageTensors(torch.cat(images).contiguous(), targets, flip, pad, fill, skipped, source, positions)


def with_transform(dataset: Dataset, transform: object) -> Dataset:
    """A shallow copy sharing the decoded data, with another transform (train vs. evaluation)."""
    clone = copy.copy(dataset)
    clone.transform = transform  # type: ignore[attr-defined]
    return clone
