"""What the built-in spaces share: channel rounding, field bounds and the generic protocol methods."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from nas.scaling import make_divisible  # noqa: F401  (re-exported: the spaces round with it)
from nas.serialization import from_dict
from nas.space import mutate_one_decision

G = TypeVar("G")


@dataclass(frozen=True)
class Bound:
    """The valid range of one numeric genotype field (or ``lower()`` override).

    ``check`` refuses a bool, a value of the wrong kind, a non-finite float (NaN, +-Infinity) and
    a value outside the range with one ``ValueError`` that names the field and the range, e.g.
    ``num_cells: must be in [1, 12], got 100000``. Each space keeps its bounds in one ``BOUNDS``
    table, so the limits are documented and changed in one place.
    """

    low: float
    high: float
    integer: bool = True
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        return (
            f"{'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}{')' if self.high_open else ']'}"
        )

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def check(self, name: str, value: Any) -> Any:
        """``value`` if it is in range; otherwise ``ValueError`` naming ``name`` and the range."""
        if value in self:
            return value
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            raise ValueError(
                f"{name}: expected {'an integer' if self.integer else 'a number'} in {self}, got {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: must be a finite number in {self}, got {value!r}")
        raise ValueError(f"{name}: must be in {self}, got {_short(value)}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _short(value: float) -> str:
    """``repr`` of a number, cut short for integers of absurd length (a user's file may hold one)."""
    if isinstance(value, int) and value.bit_length() > 64:  # repr of a 10**5000 would itself raise
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return repr(value)


# Shared by the built-in spaces. Resolution: 8 px is the digits proxy's native size, and 1024 is
# well above every preset (EfficientNet-B7 600, EfficientNet-L2 800, NASNet-A Large 331).
RESOLUTION = Bound(8, 1024)
PROBABILITY = Bound(0.0, 1.0, integer=False, high_open=True)  # dropout, stochastic depth
BN_EPS = Bound(0.0, 1.0, integer=False, low_open=True)
BN_MOMENTUM = Bound(0.0, 1.0, integer=False, low_open=True)
# ``lower(width_multiplier=...)`` of the chain spaces: proxies shrink (0.5 by default); 4 leaves room.
WIDTH_MULTIPLIER = Bound(0.0, 4.0, integer=False, low_open=True)


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
