"""Batch transforms of ``nas train``: the training crop and RandAugment, and the test-time view.

Images arrive as normalised batches at a *source* resolution (the data set loaded once, without
its own augmentation). Training takes a torchvision ``RandomResizedCrop`` of each image, resized
to the training resolution, an optional mirror, and torchvision's ``RandAugment`` (Cubuk et al.,
arXiv 1909.13719: ``num_ops`` random operations at ``magnitude`` of 31 levels) on the [0, 1]
pixels. Evaluation at resolution R resizes to ``R / crop_fraction`` and takes the central R x R
crop, the standard test transform (ResNet, EfficientNet: 0.875), whose mismatch with the
training crop's apparent object size is what FixRes corrects (arXiv 1906.06423 §3).

Every random draw comes from torch's global generator, which ``nas train`` seeds and saves with
each checkpoint, so an augmented epoch is repeated exactly on resume.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nas.train.settings import DEFAULT_CROP_SCALE

DEFAULT_CROP_RATIO = (3 / 4, 4 / 3)
DEFAULT_CROP_FRACTION = 0.875  # the test transform's central crop (resize 256, crop 224)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    antialias = size < min(images.shape[-2:])
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)


def center_view(images: torch.Tensor, resolution: int, crop_fraction: float = DEFAULT_CROP_FRACTION) -> torch.Tensor:
    """Resize to ``round(resolution / crop_fraction)`` and take the central ``resolution`` square."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction: must be in (0, 1], got {crop_fraction!r}")
    resized = _resize(images, max(resolution, int(round(resolution / crop_fraction))))
    offset = (resized.shape[-1] - resolution) // 2
    return resized[..., offset : offset + resolution, offset : offset + resolution]


class EvalView:
    """The evaluation transform at one resolution (a picklable callable for ``Trainer``/``evaluate``)."""

    def __init__(self, resolution: int, crop_fraction: float = DEFAULT_CROP_FRACTION) -> None:
        self.resolution, self.crop_fraction = resolution, crop_fraction

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return center_view(images, self.resolution, self.crop_fraction)


class TrainAugment:
    """Per image: ``RandomResizedCrop(resolution, scale)``, a mirror (if ``mirror``), then RandAugment.

    ``normalization`` is the (mean, std) the batches were normalised with; RandAugment needs it
    (its operations act on [0, 1] pixels). ``randaugment_ops`` 0 turns RandAugment off.
    """

    def __init__(
        self,
        resolution: int,
        *,
        scale: tuple[float, float] = DEFAULT_CROP_SCALE,
        ratio: tuple[float, float] = DEFAULT_CROP_RATIO,
        mirror: bool = True,
        randaugment_ops: int = 2,
        randaugment_magnitude: int = 9,
        normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    ) -> None:
        from torchvision.transforms import v2  # lazy: torchvision only for the augmentation that needs it

        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"crop scale: expected 0 < min <= max <= 1, got {scale}")
        if randaugment_ops < 0 or not 0 <= randaugment_magnitude <= 30:
            raise ValueError(
                f"randaugment: ops must be >= 0 and magnitude in [0, 30], got {randaugment_ops}, "
                f"{randaugment_magnitude}"
            )
        if randaugment_ops and normalization is None:
            raise ValueError(
                "randaugment: the data set does not say how its images were normalised; pass --randaugment-ops 0"
            )
        self.resolution, self.scale, self.ratio, self.mirror = resolution, scale, ratio, mirror
        self.randaugment = (
            v2.RandAugment(num_ops=randaugment_ops, magnitude=randaugment_magnitude) if randaugment_ops else None
        )
        self.normalization = normalization

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import (
            RandomResizedCrop,  # lazy: torchvision only for the augmentation that needs it
        )
        from torchvision.transforms.v2 import (
            functional as TF,  # lazy: torchvision only for the augmentation that needs it
        )

        mean = std = None
        if self.randaugment is not None and self.normalization is not None:
            mean = torch.tensor(self.normalization[0], device=images.device).view(-1, 1, 1)
            std = torch.tensor(self.normalization[1], device=images.device).view(-1, 1, 1)
        out = []
        for image in images:
            top, left, height, width = RandomResizedCrop.get_params(image, list(self.scale), list(self.ratio))
            view = TF.resized_crop(image, top, left, height, width, [self.resolution, self.resolution], antialias=True)
            if self.mirror and bool(torch.rand(()) < 0.5):
                view = view.flip(-1)
            if self.randaugment is not None and mean is not None and std is not None:
                pixels = (view * std + mean).clamp_(0.0, 1.0)
                view = (self.randaugment(pixels) - mean) / std
            out.append(view)
        return torch.stack(out)

    def __repr__(self) -> str:
        scale = f"({self.scale[0]:g}, {self.scale[1]:g})"
        augment = (
            f"RandAugment({self.randaugment.num_ops}, {self.randaugment.magnitude})"
            if self.randaugment is not None
            else "no RandAugment"
        )
        return f"RandomResizedCrop({self.resolution}, scale={scale}){' + mirror' if self.mirror else ''} + {augment}"


def source_resolution(resolutions: list[int], crop_fraction: float = DEFAULT_CROP_FRACTION) -> int:
    """The size to load the images at: enough for the largest test view without upsampling it twice."""
    return max(math.ceil(r / crop_fraction) for r in resolutions)
