"""Compound scaling (EfficientNet, arXiv 1905.11946 §3.3): the reference rounding rules, the one
function that scales a chain genotype, and the arithmetic of eq. 3.

A space takes part by defining ``scale(genotype, *, width, depth, resolution) -> genotype``: the
same network made ``width`` times wider, ``depth`` times deeper and at ``resolution`` times the
input size, as a genotype *of the same space* (so ``nas materialize`` builds it and its JSON
round-trips). It rounds with the rules below, so every space rounds as the reference does:

- channels: ``make_divisible`` (multiples of 8, never down by more than 10%), stem and head too;
- depth: a stage of ``n`` blocks gets ``ceil(depth * n)`` (``round_repeats``); a stage made of
  several kinds of block spreads them with ``distribute_repeats`` (timm ``_scale_stage_depth``);
- resolution: the nearest pixel.

``scale_genotype`` is what the engine calls; it dispatches on that method, never on a name.
Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nas.space import Scalable, SearchSpace

# A multiplier beyond this is a typo, not a network (EfficientNet-L2 is 4.3 x wide, 5.3 x deep).
MAX_MULTIPLIER = 100.0


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


def round_repeats(repeats: int, depth: float) -> int:
    """Depth rounding of the reference (TF ``round_repeats``, torchvision ``adjust_depth``): always up."""
    return int(math.ceil(depth * repeats))


def distribute_repeats(repeats: Sequence[int], depth: float) -> list[int]:
    """Scale a stage made of rows of ``repeats[i]`` identical blocks by ``depth``.

    The stage's total becomes ``round_repeats(sum(repeats), depth)``, shared among the rows in
    proportion, from the last row backwards, each keeping at least one block: the first row (the
    one that changes stride and width) is the least likely to grow (timm ``_scale_stage_depth``).
    """
    total, target = sum(repeats), round_repeats(sum(repeats), depth)
    scaled = []
    for count in reversed(repeats):
        share = max(1, round(count / total * target))
        scaled.append(share)
        total, target = total - count, target - share
    return scaled[::-1]


def scale_resolution(resolution: int, factor: float) -> int:
    """The input size ``factor`` times ``resolution``, to the nearest pixel."""
    return int(round(resolution * factor))


def check_multiplier(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number in (0, ``MAX_MULTIPLIER``]; else ``ValueError``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= MAX_MULTIPLIER
    ):
        raise ValueError(f"{name}: must be a number in (0, {MAX_MULTIPLIER:g}], got {value!r}")
    return float(value)


def scale_genotype(
    space: SearchSpace[Any], genotype: Any, *, width: float = 1.0, depth: float = 1.0, resolution: float = 1.0
) -> Any:
    """``genotype`` scaled by the three multipliers, a genotype of ``space`` (``ValueError`` if
    ``space`` cannot scale, a multiplier is not a positive number, or the result leaves the space's
    bounds)."""
    if not isinstance(space, Scalable):
        raise ValueError(
            f"space {space.name!r} cannot be scaled: it defines no scale(genotype, *, width, depth, "
            "resolution) (see nas.scaling)"
        )
    width, depth = check_multiplier("width", width), check_multiplier("depth", depth)
    resolution = check_multiplier("resolution", resolution)
    scaled = space.scale(genotype, width=width, depth=depth, resolution=resolution)
    if not isinstance(scaled, space.genotype_class):
        raise TypeError(
            f"{type(space).__name__}.scale returned {type(scaled).__name__}, not a {space.genotype_class.__name__}"
        )
    return scaled


@dataclass(frozen=True)
class Multipliers:
    """Width, depth and resolution multipliers of one member of a compound-scaled family."""

    width: float
    depth: float
    resolution: float


def compound_multipliers(alpha: float, beta: float, gamma: float, phi: float) -> Multipliers:
    """Depth d = alpha^phi, width w = beta^phi, resolution r = gamma^phi (arXiv 1905.11946 eq. 3)."""
    return Multipliers(width=beta**phi, depth=alpha**phi, resolution=gamma**phi)


def compound_constraint(alpha: float, beta: float, gamma: float) -> float:
    """alpha * beta^2 * gamma^2: the factor by which FLOPS grow per unit of phi (arXiv 1905.11946 eq. 3)."""
    return alpha * beta**2 * gamma**2


MAX_GRID_VALUES = 101  # per multiplier: step 0.01 over [1, 2], a million points to filter (about a second)


def grid_values(step: float, high: float) -> tuple[float, ...]:
    """1, 1 + step, 1 + 2 step, ... up to ``high`` (inclusive), each rounded to 10 decimals."""
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0:
        raise ValueError(f"grid_step: must be a positive number, got {step!r}")
    if (
        isinstance(high, bool)
        or not isinstance(high, (int, float))
        or not math.isfinite(high)
        or not 1 <= high <= MAX_MULTIPLIER
    ):
        raise ValueError(f"grid_high: must be a number in [1, {MAX_MULTIPLIER:g}], got {high!r}")
    count = int(math.floor((high - 1) / step + 1e-9)) + 1
    if count > MAX_GRID_VALUES:
        raise ValueError(
            f"grid_step: {step!r} over [1, {high!r}] gives {count} values per multiplier, more than "
            f"{MAX_GRID_VALUES}; use a coarser step"
        )
    return tuple(round(1 + i * step, 10) for i in range(count))
