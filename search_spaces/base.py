"""What the built-in spaces share: channel rounding and the generic protocol methods."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from nas.serialization import from_dict
from nas.space import mutate_one_decision

G = TypeVar("G")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor``, never down by more than 10%.

    The reference rule of MobileNet and EfficientNet (TF ``round_filters``, torchvision
    ``_make_divisible``, timm ``make_divisible``).
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


class SpaceBase(Generic[G]):
    """Protocol methods that follow from ``decisions``/``encode``/``decode`` and the genotype class."""

    name: ClassVar[str]
    genotype_class: ClassVar[type]

    def genotype_from_dict(self, data: Mapping[str, Any]) -> G:
        """Validate plain data into this space's genotype; errors name the bad field."""
        return from_dict(self.genotype_class, data)

    def mutate(self, genotype: G, rng: np.random.Generator) -> G:
        """Change exactly one decision (regularized evolution's mutation, Real et al. 2019)."""
        return mutate_one_decision(self, genotype, rng)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
