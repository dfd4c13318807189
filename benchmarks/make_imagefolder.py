"""Turn MNIST-style idx files into an ImageFolder of grey PNGs: ``OUT/<class name>/<i>.png``.

    python benchmarks/make_imagefolder.py IDX_DIR OUT [--per-class 125] [--seed 0] [--names fashion-mnist]

``IDX_DIR`` holds ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]`` (the
training set; the t10k files are not used). ``--per-class`` images of every class are drawn
without replacement by a seeded choice and written as 8-bit grey ('L') PNGs at their native size.
The result is one folder of class folders: the ``imagefolder`` loader carves its fixed test split
(20%) and then the seeded validation split (20% of the rest) out of it, so 125 per class gives
800 training, 200 validation and 250 test images.

Fashion-MNIST is on this machine only as a Debian package; nothing is downloaded::

    dpkg-deb -x /var/cache/apt/archives/dataset-fashion-mnist_*_all.deb /tmp/fmnist
    python benchmarks/make_imagefolder.py /tmp/fmnist/usr/share/datasets/fashion-mnist /tmp/fmnist-folder
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

NAMES = {
    # github.com/zalandoresearch/fashion-mnist, "Labels"; "/" is not allowed in a folder name
    "fashion-mnist": (
        "T-shirt_top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle_boot",
    ),
}
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally gzipped) as a numpy array (LeCun's format: 0, 0, type, ndim, big-endian sizes)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise ValueError(f"{path}: not an idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    array = np.frombuffer(data, dtype=IDX_TYPES[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, found {array.size} values")
    return array.reshape(shape)


def find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"error: no {stem}[.gz] in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("idx_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=125, help="images per class (default 125)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the choice of images")
    parser.add_argument(
        "--names",
        default="fashion-mnist",
        help="class folder names: 'fashion-mnist', 'index' (0, 1, ...) or a comma-separated list",
    )
    args = parser.parse_args()
    images = read_idx(find(args.idx_dir, "train-images-idx3-ubyte"))
    labels = read_idx(find(args.idx_dir, "train-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise SystemExit(f"error: expected N x H x W images and N labels, got {images.shape} and {labels.shape}")
    classes = np.unique(labels)
    if args.names == "index":
        names = tuple(str(c) for c in classes)
    else:
        names = NAMES.get(args.names) or tuple(args.names.split(","))
    if len(names) != len(classes):
        raise SystemExit(f"error: {len(classes)} classes but {len(names)} names")
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"error: {args.out} exists and is not empty")
    rng = np.random.default_rng(args.seed)
    for label, name in zip(classes, names):
        members = np.flatnonzero(labels == label)
        if len(members) < args.per_class:
            raise SystemExit(f"error: class {name} has {len(members)} images, fewer than {args.per_class}")
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, index in enumerate(np.sort(rng.choice(members, size=args.per_class, replace=False))):
            Image.fromarray(np.ascontiguousarray(images[index], dtype=np.uint8), mode="L").save(folder / f"{i}.png")
    height, width = images.shape[1:]
    print(
        f"wrote {len(classes)} x {args.per_class} = {len(classes) * args.per_class} grey {width}x{height} PNGs "
        f"to {args.out} (seed {args.seed})"
    )


if __name__ == "__main__":
    main()
