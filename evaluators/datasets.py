"""The built-in dataset loaders (``nas.datasets`` entry points), and batching for proxy training.

The *validation* split is always held out from the training data with a seeded, per-class
split (the NASNet controller's reward is "validation accuracy on a held-out 5,000-image split of
the CIFAR-10 training set", arXiv 1707.07012 App. A.1; MnasNet holds out 50K ImageNet training
images, arXiv 1807.11626 §4.2). The *test* split is never touched by a search.

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 grey images, 10 classes;
  nothing is downloaded), the embedded default. Kept in memory as float tensors.
- ``cifar10``: torchvision's ``CIFAR10`` from ``data_dir``; downloads only with ``download=True``.
- ``imagefolder``: torchvision's ``ImageFolder``: ``data_dir/train`` (+ optional ``val/`` or
  ``test/`` as the test split), or one folder of class subfolders split by seed. Every image file
  is checked once at load time; unreadable ones are skipped with a warning. A folder that cannot
  make a search (fewer than two classes, a class without images or too small to split) is a
  ``ValueError`` before the first trial. Default size: the images' own (at most 224 px); grey stays grey.
- ``synthetic``: fixed random class prototypes plus noise, in memory: a learnable toy task for tests.

Every split yields 3-channel, normalised float images of ``resolution`` x ``resolution``: every
stem takes RGB, so grey data (digits, a grey folder) is normalised as one channel, then repeated.
"""

from __future__ import annotations

import functools
import logging
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

from evaluators.dataset_checks import DEFAULT_DATA_DIR, check_class_folders
from evaluators.dataset_checks import cifar10 as check_cifar10
from evaluators.dataset_checks import imagefolder as check_imagefolder
from evaluators.images import (
    decoded,
    grey_statistics,
    load_image,
    native_settings,
    read_image,
    retransformed,
    with_transform,
)
from nas.data import (  # noqa: F401  (re-exported: they were defined here)
    DEFAULT_VALIDATION_FRACTION,
    DatasetSplits,
    ImageTensors,
    iterate_batches,
    load_dataset,
    stratified_split,
)
from nas.errors import first_line

logger = logging.getLogger(__name__)

# Native sizes: upsampling adds pixels, not information. For digits (8x8 source) we measured
# NASNet proxies at 8 px against 16 px on a 2-core CPU: 8 px trains an epoch about 1.7x faster
# *and* reaches higher, equally seed-consistent validation accuracy (benchmarks/README.md).
# Pass ``resolution=16`` for the NASNet aux head, which needs a 5x5 map at 2/3 depth.
DEFAULT_RESOLUTION: dict[str, int] = {"digits": 8, "cifar10": 32, "synthetic": 8}
# imagefolder's default is the images' own size, but at most 224 px (ImageNet's training size, and
# MnasNet's proxy size): training a proxy on 3,000-px photos at full size would take hours an epoch.
TEST_FRACTION = 0.2  # digits, synthetic and single-folder ImageFolder: carved once, seed-independent
TEST_SPLIT_SEED = 1707_07012  # fixed, so every search seed sees the same untouched test split
SYNTHETIC_CLASSES, SYNTHETIC_EXAMPLES, SYNTHETIC_NOISE = 4, 640, 1.0
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Image files are decoded once into memory when all of them, as float32, fit in this (per process):
# CIFAR-10 at 32 px takes 0.7 GB; beyond it (ImageNet-sized folders) every epoch reads the files.
IN_MEMORY_BYTES = 2 * 2**30
SKIPPED_SHOWN = 10  # unreadable image files named in the warning; all are in ``skipped_files``


def digits(
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    resolution: int | None = None,
    seed: int = 0,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    augment: bool = True,
) -> DatasetSplits:
    """scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images, nothing downloaded."""
    from sklearn.datasets import load_digits  # lazy: scikit-learn only for the digits

    bunch = load_digits()
    grey = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = grey.expand(-1, 3, -1, -1)  # 3 channels, as every stem in the engine expects
    return _in_memory(
        "digits",
        images,
        np.asarray(bunch.target),
        resolution or DEFAULT_RESOLUTION["digits"],
        seed,
        validation_fraction,
        tuple(str(c) for c in bunch.target_names),
    )


def synthetic(
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    resolution: int | None = None,
    seed: int = 0,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    augment: bool = True,
) -> DatasetSplits:
    """Smooth random prototypes (one per class) plus white noise; the task is fixed, ``seed`` splits it."""
    resolution = resolution or DEFAULT_RESOLUTION["synthetic"]
    rng = np.random.default_rng(TEST_SPLIT_SEED)
    prototypes = torch.as_tensor(rng.normal(size=(SYNTHETIC_CLASSES, 3, 4, 4)), dtype=torch.float32)
    prototypes = F.interpolate(prototypes, size=(resolution, resolution), mode="bilinear", align_corners=False)
    labels = rng.permutation(np.arange(SYNTHETIC_EXAMPLES) % SYNTHETIC_CLASSES)
    noise = torch.as_tensor(rng.normal(size=(SYNTHETIC_EXAMPLES, 3, resolution, resolution)), dtype=torch.float32)
    images = prototypes[torch.as_tensor(labels)] + SYNTHETIC_NOISE * noise
    return _in_memory(
        "synthetic",
        images,
        labels,
        resolution,
        seed,
        validation_fraction,
        tuple(f"class{c}" for c in range(SYNTHETIC_CLASSES)),
    )


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution:
        return images
    return F.interpolate(
        images,
        size=(resolution, resolution),
        mode="bilinear",
        align_corners=False,
        antialias=resolution < images.shape[-1],
    )


def _in_memory(
    name: str,
    images: torch.Tensor,
    labels: np.ndarray,
    resolution: int,
    seed: int,
    fraction: float,
    class_names: tuple[str, ...],
) -> DatasetSplits:
    """Carve the fixed test split, then the seeded validation split; normalise with train statistics."""
    rest, test = stratified_split(labels, TEST_FRACTION, TEST_SPLIT_SEED)
    kept, held = stratified_split(labels[rest], fraction, seed)
    train, validation = rest[kept], rest[held]
    images = _resize(images, resolution)
    mean = images[train].mean(dim=(0, 2, 3), keepdim=True)
    std = images[train].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    images = ((images - mean) / std).contiguous()
    targets = torch.as_tensor(labels, dtype=torch.long)

    def split(index: np.ndarray) -> TensorDataset:
        index_tensor = torch.as_tensor(index)
        return TensorDataset(images[index_tensor], targets[index_tensor])

    normalization = (tuple(mean.flatten().tolist()), tuple(std.flatten().tolist()))
    return DatasetSplits(
        name,
        split(train),
        split(validation),
        split(test),
        len(class_names),
        resolution,
        images.shape[1],
        class_names,
        normalization,
        mirror=False,
    )


def _transforms(
    geometry: list[Any],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: bool,
    crop: int | None = None,
    grey: bool = False,
) -> tuple[object, object, object]:
    """``(train, evaluation, pixels)``: ``geometry`` (the resizing), for training a random ``crop`` (padded
    by 1/8) and a flip, then a tensor normalised with ``mean`` and ``std`` (grey: repeated to 3 channels);
    ``pixels`` is the geometry alone, as 8-bit tensors (``_decoded`` normalises them a batch at a time)."""
    from torchvision import transforms as T  # lazy: torchvision only for the image data sets

    tail = [T.ToTensor(), T.Normalize(mean, std)] + ([T.Lambda(_three_channels)] if grey else [])
    random = [T.RandomCrop(crop, padding=crop // 8)] if crop else []
    train = geometry + (random + [T.RandomHorizontalFlip()] if augment else []) + tail
    return T.Compose(train), T.Compose(geometry + tail), T.Compose([*geometry, T.PILToTensor()])


def _three_channels(image: torch.Tensor) -> torch.Tensor:
    return image.expand(3, -1, -1)


def _splits_from(
    name: str,
    dataset: Dataset,
    targets: list[int],
    classes: list[str],
    resolution: int,
    seed: int,
    fraction: float,
    transforms: tuple[object, object, object],
    test: Dataset | None,
    normalization: tuple[tuple[float, ...], tuple[float, ...]],
    pool: np.ndarray | None = None,
    flip: bool = False,
    pad: int = 0,
) -> DatasetSplits:
    """Split ``dataset[pool]`` (default: all of it) into train and validation with their transforms.

    When the decoded images fit in ``IN_MEMORY_BYTES`` they are decoded once, here, into
    ``ImageTensors`` (the training split flipped with ``flip`` and cropped with padding ``pad`` per
    batch, as the file transform did per image); otherwise every epoch reads the files again.
    """
    pool = np.arange(len(targets)) if pool is None else pool
    kept, held = stratified_split(np.asarray(targets)[pool], fraction, seed)
    train: Dataset = Subset(with_transform(dataset, transforms[0]), pool[kept].tolist())
    validation: Dataset = Subset(with_transform(dataset, transforms[1]), pool[held].tolist())
    count = len(pool) + (len(test) if test is not None else 0)  # type: ignore[arg-type]
    if count * 3 * resolution * resolution * 4 <= IN_MEMORY_BYTES:
        started = time.perf_counter()
        pixels = transforms[2]
        train = decoded(retransformed(train, pixels), normalization, flip, pad)
        validation = decoded(retransformed(validation, pixels), normalization)
        if test is not None:
            test = decoded(retransformed(test, pixels), normalization)
        logger.info(
            "%s: %d images decoded into memory (%.0f MB) in %.1f s",
            name,
            count,
            count * 3 * resolution * resolution * 4 / 2**20,
            time.perf_counter() - started,
        )
    return DatasetSplits(name, train, validation, test, len(classes), resolution, 3, tuple(classes), normalization)


def cifar10(
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    resolution: int | None = None,
    seed: int = 0,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    augment: bool = True,
) -> DatasetSplits:
    """torchvision's ``CIFAR10`` from ``data_dir`` (default ``./data``); downloads only with ``download``.

    ``augment`` adds random crops and flips to the training split (NASNet App. A.1).
    """
    from torchvision import transforms as T  # lazy: torchvision only for the image data sets
    from torchvision.datasets import CIFAR10  # lazy: torchvision only for the image data sets

    resolution, fraction = resolution or DEFAULT_RESOLUTION["cifar10"], validation_fraction

    check_cifar10(data_dir, download)
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    folder = root / CIFAR10.base_folder
    try:
        train_set = CIFAR10(str(root), train=True, download=download)
        test_set = CIFAR10(str(root), train=False)
    except (RuntimeError, pickle.UnpicklingError, EOFError, KeyError) as error:
        # torchvision: "Dataset not found or corrupted" (md5 mismatch); the others: unreadable pickles
        raise ValueError(
            f"cifar10: the files in {str(folder)!r} are missing or corrupted "
            f"({first_line(error)}); pass --download to fetch them again"
        ) from None
    except OSError as error:  # the download failed (no network: URLError), or root is not writable
        raise ValueError(
            f"cifar10: could not fetch or read CIFAR-10 in {str(root)!r} ({first_line(error)}); "
            f"put {CIFAR10.base_folder}/ there by hand and drop --download"
        ) from None
    logger.info("cifar10: %d training and %d test images from %s", len(train_set), len(test_set), folder)
    resize = [T.Resize((resolution, resolution), antialias=True)] if resolution != 32 else []
    transforms = _transforms(resize, CIFAR10_MEAN, CIFAR10_STD, augment, crop=resolution)
    return _splits_from(
        "cifar10",
        train_set,
        list(train_set.targets),
        list(train_set.classes),
        resolution,
        seed,
        fraction,
        transforms,
        with_transform(test_set, transforms[1]),
        (CIFAR10_MEAN, CIFAR10_STD),
        flip=augment,
        pad=resolution // 8 if augment else 0,
    )


def imagefolder(
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    resolution: int | None = None,
    seed: int = 0,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    augment: bool = True,
) -> DatasetSplits:
    """torchvision's ``ImageFolder``: ``data_dir/train`` (+ optional ``val/`` or ``test/`` as the test
    split), or one folder of class subfolders split by seed. ``augment`` adds flips.

    Every image file is checked once here (``image_problem``); unreadable ones are left out with a
    warning and listed in the ``skipped_files`` attribute of each ImageFolder (``skipped_files(splits)``
    gathers them). ``ValueError``, in one line naming the folder, for a folder that is missing, empty
    or has no class folders, a class folder without readable images, fewer than two classes, a class
    too small to give both the training and the validation split an image, and ``train/`` and
    ``val/`` with different classes.

    Size and colour come from the headers read in that check, of the images a search learns from
    (``train/``, or the folder less its fixed test split: no seed changes them); one INFO line says:

    - ``resolution`` ``None``: the shorter side of the most common (width, height), ties to the
      smaller, at most ``NATIVE_RESOLUTION_CAP`` (224) px; pass a resolution to go beyond.
    - Images are resized to a shorter side of ``resolution`` and center-cropped to a square (the
      torchvision and timm evaluation transform: aspect kept, never squashed; the chosen size is
      not resampled at all).
    - Grey when at most 1% of those images are in colour (grey modes: 1, L, LA, I, I;16, F): read as
      8-bit grey (16-bit scaled, not clipped), normalised with the mean and std of up to 256 of
      them, then repeated to the three channels every stem takes. Other folders, mixed ones too,
      are read as RGB (palette and RGBA converted), normalised with the ImageNet mean and std.
    """
    from torchvision import transforms as T  # lazy: torchvision only for the image data sets

    fraction = validation_fraction
    check_imagefolder(data_dir, download)
    root = Path(str(data_dir))
    held = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    test_set, test_index = None, None
    if (root / "train").is_dir():
        dataset = _image_folder(root / "train")
        test_set = _image_folder(held, like=dataset) if held is not None else None
        pool, _ = _check_split_sizes(root / "train", dataset, fraction, seed, carve_test=False)
    else:
        dataset = _image_folder(root)
        pool, test_index = _check_split_sizes(root, dataset, fraction, seed, carve_test=True)
    resolution, grey = native_settings(dataset, pool, resolution)
    for folder in (dataset, test_set):
        if folder is not None:
            folder.loader = functools.partial(load_image, mode="L" if grey else "RGB", resolution=resolution)
    geometry = [T.Resize(resolution, antialias=True), T.CenterCrop(resolution)]
    mean, std = grey_statistics(dataset, pool, geometry) if grey else (IMAGENET_MEAN, IMAGENET_STD)
    transforms = _transforms(geometry, mean, std, augment, grey=grey)
    test = (
        with_transform(test_set, transforms[1])
        if test_set is not None
        else None
        if test_index is None
        else Subset(with_transform(dataset, transforms[1]), test_index.tolist())
    )
    return _splits_from(
        "imagefolder",
        dataset,
        list(dataset.targets),
        dataset.classes,
        resolution,
        seed,
        fraction,
        transforms,
        test,
        (tuple(mean) * (3 if grey else 1), tuple(std) * (3 if grey else 1)),
        pool=pool,
        flip=augment,
    )


def _image_folder(folder: Path, like: Any = None) -> Any:
    """torchvision's ``ImageFolder`` of ``folder`` without its unreadable images; ``ValueError`` if unusable.

    ``like``: the training set, whose classes ``folder`` (``val/`` or ``test/``) must have. The cheap
    checks (layout, classes, class folders without image files) come before any image is read.
    ``samples``, ``imgs`` and ``targets`` stay consistent after the filtering; ``image_headers`` maps
    each readable file to its ``(width, height, grey)``.
    """
    from torchvision.datasets import ImageFolder  # lazy: torchvision only for the image data sets

    where = repr(str(folder))
    check_class_folders(folder, None if like is None else list(like.classes))  # the layout, before any image is read
    try:
        dataset = ImageFolder(str(folder), allow_empty=True)
    except OSError as error:
        raise ValueError(f"imagefolder: cannot read {where} ({first_line(error)})") from None
    counts = np.bincount(np.asarray(dataset.targets, dtype=np.int64), minlength=len(dataset.classes))
    checked = {path: read_image(path) for path, _ in dataset.samples}
    reasons = {path: why for path, (why, _) in checked.items() if why is not None}
    dataset.image_headers = {path: header for path, (_, header) in checked.items() if header is not None}
    dataset.skipped_files = tuple(reasons)
    if reasons:
        dataset.samples = [sample for sample in dataset.samples if sample[0] not in reasons]
        dataset.imgs = dataset.samples
        dataset.targets = [target for _, target in dataset.samples]
        shown = "; ".join(f"{path!r} ({why})" for path, why in list(reasons.items())[:SKIPPED_SHOWN])
        more = f"; and {len(reasons) - SKIPPED_SHOWN} more" if len(reasons) > SKIPPED_SHOWN else ""
        logger.warning(
            "imagefolder: skipped %d unreadable image file(s) of %d in %s: %s%s",
            len(reasons),
            int(counts.sum()),
            where,
            shown,
            more,
        )
        left = np.bincount(np.asarray(dataset.targets, dtype=np.int64), minlength=len(dataset.classes))
        lost = [(name, int(count)) for name, count, now in zip(dataset.classes, counts, left) if now == 0]
        if lost:
            name, count = lost[0]
            raise ValueError(
                f"imagefolder: class folder {name!r} in {where} has no readable images "
                f"(all {count} image file(s) are unreadable, e.g. {next(iter(reasons))!r})"
            )
    return dataset


def images_needed(fraction: float, carve_test: bool) -> int:
    """The fewest images of one class that always leave it at least one training and one validation
    image, after the fixed test split (``carve_test``) and the seeded ``fraction`` validation split."""
    count = 2
    while True:
        rest = count - (int(np.ceil(TEST_FRACTION * count)) if carve_test else 0)
        if np.floor(fraction * rest) >= 1 and rest - np.ceil(fraction * rest) >= 1:
            return count
        count += 1


def _check_split_sizes(
    folder: Path, dataset: Any, fraction: float, seed: int, carve_test: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(rest, test)`` indices (all and none unless ``carve_test``); ``ValueError`` naming a class
    that the splits leave without a training or a validation image."""
    labels = np.asarray(dataset.targets, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(dataset.classes))
    splits = "the test and the validation split" if carve_test else "the validation split"
    needed = f"each class needs at least {images_needed(fraction, carve_test)} images"
    try:
        rest, test = (
            stratified_split(labels, TEST_FRACTION, TEST_SPLIT_SEED)
            if carve_test
            else (np.arange(len(labels)), np.arange(0))
        )
        kept, held = stratified_split(labels[rest], fraction, seed)
    except ValueError:  # too few images in all for any split: name the smallest class
        index = int(np.argmin(counts))
        raise ValueError(
            f"imagefolder: class {dataset.classes[index]!r} in {str(folder)!r} has "
            f"{int(counts[index])} image(s), too few for {splits} (validation_fraction "
            f"{fraction:g}); {needed}"
        ) from None
    for gone, part in (("training", kept), ("validation", held)):
        present = np.bincount(labels[rest][part], minlength=len(counts))
        short = np.flatnonzero(present == 0)
        if len(short):
            index = int(short[0])
            raise ValueError(
                f"imagefolder: class {dataset.classes[index]!r} in {str(folder)!r} has "
                f"{int(counts[index])} image(s), too few: after {splits} (validation_fraction "
                f"{fraction:g}) none is left for {gone}; {needed}"
            )
    return rest, test
