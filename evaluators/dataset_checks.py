"""Torch-free checks of the data a run names, declared beside the datasets (entry-point group
``nas.dataset_checks``): a missing CIFAR-10 folder or a malformed ImageFolder tree is refused while
settings are validated, in well under two seconds, instead of after torch is imported.

They check what needs no image decoded: folders, class folders and image files by extension. The
loaders (``evaluators.datasets``) run the same checks and then read every image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

CIFAR10_FOLDER = "cifar-10-batches-py"  # torchvision's ``CIFAR10.base_folder``
DEFAULT_DATA_DIR = Path("data")
# torchvision's ``IMG_EXTENSIONS`` (tests/evaluators/test_datasets.py checks they agree).
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def cifar10(data_dir: str | Path | None, download: bool) -> None:
    """``ValueError`` unless CIFAR-10's folder is in ``data_dir`` (default ``./data``), or ``download``
    allows fetching it."""
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if not download and not (root / CIFAR10_FOLDER).is_dir():
        raise ValueError(
            f"cifar10: no {CIFAR10_FOLDER}/ in {str(root)!r}; pass --download to fetch "
            "CIFAR-10, or --data-dir to point at the folder that holds it"
        )


def imagefolder(data_dir: str | Path | None, download: bool) -> None:
    """``ValueError`` in one line for an ImageFolder tree a search cannot use (see ``check_layout``)."""
    if data_dir is None:
        raise ValueError(
            "imagefolder: needs --data-dir, a folder with train/ (and optional val/) or one subfolder per class"
        )
    root = Path(data_dir)
    if not root.exists():
        raise ValueError(f"imagefolder: {str(root)!r} does not exist; pass --data-dir with a folder of images")
    if not root.is_dir():
        raise ValueError(
            f"imagefolder: {str(root)!r} is not a directory; pass --data-dir with a folder of "
            "images (one subfolder per class)"
        )
    held = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if (root / "train").is_dir():
        classes = check_class_folders(root / "train")
        if held is not None:
            check_class_folders(held, classes)
    elif held is not None:  # data_dir/val/<class>/... read as a class named "val" would be a silent mistake
        raise ValueError(
            f"imagefolder: {str(root)!r} has {held.name}/ but no train/; put the training "
            f"images in {str(root / 'train')!r}, or point --data-dir at a folder of class folders"
        )
    else:
        check_class_folders(root)


def check_class_folders(folder: Path, like: Sequence[str] | None = None) -> list[str]:
    """The class folders of ``folder``; ``ValueError`` naming the folder if it is empty, holds no class
    folder, fewer than two, a class folder without an image file, or other classes than ``like``."""
    where = repr(str(folder))
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        classes = [entry.name for entry in entries if entry.is_dir()]
        if not entries:
            raise ValueError(f"imagefolder: {where} is empty; it needs one subfolder of images per class")
        if not classes:
            raise ValueError(
                f"imagefolder: {where} has no class folders, only {len(entries)} file(s) "
                f"such as {entries[0].name!r}; put each class's images in a subfolder named after it"
            )
        if like is not None and classes != list(like):
            raise ValueError(class_mismatch(folder, classes, list(like)))
        if len(classes) < 2:
            raise ValueError(
                f"imagefolder: {where} has only one class ({classes[0]!r}); a search needs at "
                "least two class folders (with one, every candidate scores 100%)"
            )
        seen = {os.path.realpath(folder): folder}  # the real path of every folder read so far, across classes
        empty = [name for name in classes if not _has_image(folder / name, seen)]
    except OSError as error:
        lines = str(error).strip().splitlines()
        raise ValueError(f"imagefolder: cannot read {where} ({lines[0] if lines else type(error).__name__})") from None
    if empty:
        raise ValueError(
            f"imagefolder: class folder {empty[0]!r} in {where} has no image files "
            f"({', '.join(IMAGE_EXTENSIONS)})" + (f"; so have {empty[1:]}" if len(empty) > 1 else "")
        )
    return classes


def class_mismatch(folder: Path, classes: list[str], train: list[str]) -> str:
    """The one line that says how the classes of ``folder`` (``val/``, ``test/``) differ from ``train/``'s."""

    def few(names: list[str]) -> str:
        return repr(names[:5])[:-1] + (f", ... ({len(names)} in all)]" if len(names) > 5 else "]")

    extra, missing = sorted(set(classes) - set(train)), sorted(set(train) - set(classes))
    parts = ([f"only in {folder.name}/: {few(extra)}"] if extra else []) + (
        [f"only in train/: {few(missing)}"] if missing else []
    )
    return (
        f"imagefolder: the classes of {str(folder)!r} differ from train/: "
        f"{'; '.join(parts) or 'the same names, in another order'}"
    )


def _has_image(folder: Path, seen: dict[str, Path]) -> bool:
    """Whether ``folder`` or a folder below it holds a file with an image extension (ImageFolder walks it
    following links). ``ValueError`` if a folder is reached twice (a link loop, or a link to another class's
    folder): ImageFolder would read its images again and again, under whichever class led there."""
    found = False
    for path, folders, files in os.walk(folder, followlinks=True, onerror=_raise):
        real = os.path.realpath(path)
        if real in seen:
            raise ValueError(
                f"imagefolder: {path!r} is {str(seen[real])!r} again (a symbolic link loop, or a link to a "
                "folder already read): its images would be read more than once, some under the wrong class; "
                "remove the link"
            )
        seen[real] = Path(path)
        found = found or any(name.lower().endswith(IMAGE_EXTENSIONS) for name in files)
        folders.sort()
    return found


def _raise(error: OSError) -> None:
    raise error
