"""Noisy Student's data steps: pseudo-labels, their filtering and class balancing (arXiv 1911.04252 §2-3).

The teacher, not noised (eval mode, the test-time view), labels the unlabeled images; labels are
soft (the class probabilities) or hard (one-hot of the argmax). Images whose top probability is
below a confidence threshold are dropped (the paper: 0.3). The pseudo-labeled set is then
balanced, as the paper does for ImageNet (§3, "Data balancing"): in classes with too few images
the images are duplicated, in classes with too many only the most confident are kept, so that
every class has about the same count. The student, of equal or larger size, trains with noise
(RandAugment, dropout, stochastic depth) on the labeled and pseudo-labeled images together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from nas.train.settings import BALANCES, DEFAULT_THRESHOLD

Balance = Literal["both", "duplicate", "filter", "none"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class PseudoLabels:
    """The teacher's class probabilities of every unlabeled image, and which images the student gets.

    ``index`` lists unlabeled images by position, an image several times where it was duplicated.
    """

    probabilities: torch.Tensor
    index: np.ndarray
    kept: int  # images at or above the threshold, before balancing

    @property
    def classes(self) -> np.ndarray:
        return self.probabilities.argmax(dim=1).numpy()

    def targets(self, soft: bool) -> torch.Tensor:
        """Rows of class probabilities for ``index``: the teacher's (soft) or one-hot of its argmax (hard)."""
        chosen = self.probabilities[torch.as_tensor(self.index, dtype=torch.long)]
        if soft:
            return chosen.clone()
        return nn.functional.one_hot(chosen.argmax(dim=1), chosen.shape[1]).float()


@torch.no_grad()
def teacher_probabilities(
    teacher: nn.Module,
    images: torch.Tensor,
    view: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Softmax outputs of ``teacher`` in eval mode (no noise) on ``images`` at the test-time ``view``."""
    teacher.eval()
    rows = []
    for start in range(0, len(images), batch_size):
        batch = view(images[start : start + batch_size].to(device))
        rows.append(teacher(batch).float().softmax(dim=1).cpu())
    return torch.cat(rows) if rows else torch.empty(0, 0)


def balance(
    classes: np.ndarray, confidence: np.ndarray, num_classes: int, per_class: int | None = None, mode: Balance = "both"
) -> np.ndarray:
    """Indices into ``classes`` giving each class ``per_class`` images (default: the mean count).

    ``filter``: a class with more keeps its ``per_class`` most confident; ``duplicate``: a class with
    fewer repeats all of its images, then its most confident ones for the remainder; ``both`` does
    both; ``none`` keeps every image once. A class without images stays empty. Order: by class, then
    by decreasing confidence.
    """
    if mode not in BALANCES:
        raise ValueError(f"balance: expected one of {list(BALANCES)}, got {mode!r}")
    classes, confidence = np.asarray(classes), np.asarray(confidence)
    present = [c for c in range(num_classes) if np.any(classes == c)]
    if per_class is None:
        per_class = int(round(len(classes) / max(1, len(present))))
    chosen: list[np.ndarray] = []
    for c in range(num_classes):
        members = np.flatnonzero(classes == c)
        members = members[np.argsort(-confidence[members], kind="stable")]
        if len(members) == 0:
            continue
        if len(members) > per_class and mode in ("filter", "both"):
            members = members[:per_class]
        elif len(members) < per_class and mode in ("duplicate", "both"):
            repeats, remainder = divmod(per_class, len(members))
            members = np.concatenate([np.tile(members, repeats), members[:remainder]])
        chosen.append(members)
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def pseudo_label(
    probabilities: torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    mode: Balance = "both",
    per_class: int | None = None,
) -> PseudoLabels:
    """Drop images whose top probability is below ``threshold``, then ``balance`` the rest."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold: must be in [0, 1), got {threshold!r}")
    confidence, classes = probabilities.max(dim=1)
    confident = np.flatnonzero(confidence.numpy() >= threshold)
    chosen = balance(classes.numpy()[confident], confidence.numpy()[confident], probabilities.shape[1], per_class, mode)
    return PseudoLabels(probabilities, confident[chosen], len(confident))


def load_unlabeled_folder(
    folder: str | Path,
    resolution: int,
    normalization: tuple[tuple[float, ...], tuple[float, ...]],
    limit: int = 200_000,
) -> torch.Tensor:
    """Every image under ``folder`` (recursively), read as the data set's images are: grey data sets
    (equal statistics in every channel) read grey, others RGB; shorter side resized to
    ``resolution``, central square, normalised with ``normalization``. Unreadable files are skipped.
    """
    from torchvision.transforms import functional as TF  # lazy: torchvision only to read a folder of unlabeled images

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--unlabeled: {str(root)!r} is not a directory of images")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"--unlabeled: no image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...) under {str(root)!r}")
    if len(files) > limit:
        raise ValueError(
            f"--unlabeled: {len(files):,} images under {str(root)!r}, more than the {limit:,} held in memory"
        )
    mean, std = (torch.tensor(v).view(-1, 1, 1) for v in normalization)
    grey = len(set(normalization[0])) == 1 and len(set(normalization[1])) == 1
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                image = image.convert("L" if grey else "RGB")
                image = TF.center_crop(TF.resize(image, resolution, antialias=True), resolution)
                tensor = TF.to_tensor(image)
        except (OSError, ValueError, Image.DecompressionBombError):  # unreadable, or a decompression bomb
            continue
        images.append(((tensor.expand(3, -1, -1) if grey else tensor) - mean) / std)
    if not images:
        raise ValueError(f"--unlabeled: none of the {len(files)} image files under {str(root)!r} could be read")
    return torch.stack(images)
