"""The space ``nas scale`` searches: compound-scaling points (alpha, beta, gamma) over one base network.

A genotype here is a ``CompoundPoint``; lowering it lowers the *base* scaled by it at phi = 1
(``nas.scaling.scale_genotype``), so the proxy evaluator of ``nas search`` trains it unchanged:
at the base space's proxy reduction, with the proxy resolution multiplied by gamma on top
(arXiv 1905.11946 §4: the grid search is run on the small baseline). The space is built from a
base (space and genotype) and a grid, so it is not registered: the run directory records both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

import numpy as np

from nas.cell_ir import Network
from nas.scaling import (
    MAX_MULTIPLIER,
    compound_constraint,
    compound_multipliers,
    grid_values,
    scale_genotype,
    scale_resolution,
)
from nas.serialization import from_dict
from nas.space import Decision, Scalable, SearchSpace, check_choices, mutate_one_decision

CONSTRAINT_MODES: tuple[str, ...] = ("formula", "macs")
SPACE_NAME = "compound-scaling"
COST_CLASSES = 1000  # full-size costs are counted with ImageNet's head, as nas materialize builds by default


@dataclass(frozen=True)
class CompoundPoint:
    """Depth alpha, width beta and resolution gamma at phi = 1, each >= 1 (arXiv 1905.11946 eq. 3)."""

    alpha: float
    beta: float
    gamma: float

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not 1 <= value <= MAX_MULTIPLIER
            ):
                raise ValueError(f"{field.name}: must be a number in [1, {MAX_MULTIPLIER:g}], got {value!r}")

    @property
    def constraint(self) -> float:
        """alpha * beta^2 * gamma^2, the formula of eq. 3."""
        return compound_constraint(self.alpha, self.beta, self.gamma)


class CompoundScalingSpace:
    """Points of the grid ``grid_values(step, high)`` in each of alpha, beta, gamma, over ``base_genotype``.

    ``macs_ratio(point)`` is the measured MACs of the base scaled by ``point`` (full size, rounded
    as built) over the base's; the grid controller's ``macs`` mode holds its constraint on it.
    """

    name = SPACE_NAME
    genotype_class = CompoundPoint

    def __init__(self, base_space: SearchSpace[Any], base_genotype: Any, step: float = 0.05, high: float = 2.0) -> None:
        if not isinstance(base_space, Scalable):
            raise ValueError(
                f"base: space {base_space.name!r} cannot be compound-scaled: it defines no "
                "scale(genotype, *, width, depth, resolution) (see nas.scaling)"
            )
        if base_space.lower(base_genotype).kind != "chain":
            raise ValueError(f"base: space {base_space.name!r} does not lower to a chain network")
        self.base_space, self.base_genotype = base_space, base_genotype
        self.step, self.high = step, high
        self.values = grid_values(step, high)
        reduction = getattr(base_space, "proxy_reduction", None)
        if not isinstance(reduction, Mapping):
            raise ValueError(
                f"base: space {base_space.name!r} declares no proxy_reduction (the lower() settings of "
                "its proxy network); give it one, {} to train at full size"
            )
        self.proxy_reduction: Mapping[str, Any] = MappingProxyType(dict(reduction))
        self._costs: dict[tuple[float, float, float], dict[str, int]] = {}

    def decisions(self) -> list[Decision]:
        return [Decision(name, self.values) for name in ("alpha", "beta", "gamma")]

    def decode(self, choices: Mapping[str, Any]) -> CompoundPoint:
        check_choices(self.decisions(), choices)
        return CompoundPoint(float(choices["alpha"]), float(choices["beta"]), float(choices["gamma"]))

    def encode(self, genotype: CompoundPoint) -> dict[str, Any]:
        choices = {"alpha": genotype.alpha, "beta": genotype.beta, "gamma": genotype.gamma}
        check_choices(self.decisions(), choices)
        return choices

    def presets(self) -> dict[str, CompoundPoint]:
        return {}

    def mutate(self, genotype: CompoundPoint, rng: np.random.Generator) -> CompoundPoint:
        return mutate_one_decision(self, genotype, rng)

    def genotype_from_dict(self, data: Mapping[str, Any]) -> CompoundPoint:
        return from_dict(CompoundPoint, data)

    def scaled(self, point: CompoundPoint, phi: float = 1.0) -> Any:
        """The base genotype scaled by ``point`` at compound coefficient ``phi`` (a genotype of the base space)."""
        multipliers = compound_multipliers(point.alpha, point.beta, point.gamma, phi)
        return scale_genotype(
            self.base_space,
            self.base_genotype,
            width=multipliers.width,
            depth=multipliers.depth,
            resolution=multipliers.resolution,
        )

    def lower(
        self, genotype: CompoundPoint, *, num_classes: int = 1000, resolution: int | None = None, **macro: Any
    ) -> Network:
        """The base scaled by ``genotype`` at phi = 1; a given ``resolution`` (the proxy's) is multiplied by gamma."""
        if resolution is not None:
            macro["resolution"] = scale_resolution(resolution, genotype.gamma)
        return self.base_space.lower(self.scaled(genotype), num_classes=num_classes, **macro)

    def cost(self, point: CompoundPoint) -> dict[str, int]:
        """Parameters and MACs of the base scaled by ``point`` at phi = 1, full size (measured, cached)."""
        key = (point.alpha, point.beta, point.gamma)
        if key not in self._costs:
            self._costs[key] = full_cost(self.base_space, self.scaled(point))
        return self._costs[key]

    def macs_ratio(self, point: CompoundPoint) -> float:
        """MACs of the base scaled by ``point`` over the base's own (the real growth per unit of phi)."""
        return self.cost(point)["macs"] / self.cost(CompoundPoint(1.0, 1.0, 1.0))["macs"]

    def point_metrics(self, point: CompoundPoint) -> dict[str, float | int]:
        """What the journal records of a point beside its proxy metrics: eq. 3's value and the measured cost."""
        cost = self.cost(point)
        return {
            "alpha": point.alpha,
            "beta": point.beta,
            "gamma": point.gamma,
            "constraint": point.constraint,
            "full_params": cost["params"],
            "full_macs": cost["macs"],
            "macs_ratio": self.macs_ratio(point),
        }

    def __repr__(self) -> str:
        return (
            f"CompoundScalingSpace(base={self.base_space.name!r}, step={self.step!r}, high={self.high!r}, "
            f"{len(self.values)} values per multiplier)"
        )


def full_cost(space: SearchSpace[Any], genotype: Any, num_classes: int = COST_CLASSES) -> dict[str, int]:
    """Parameters and MACs of ``genotype`` built at full size (on the meta device: no memory)."""
    from nas.compile import compile as compile_ir  # lazy: the grid's space is built and checked without torch
    from nas.cost import (  # lazy: the grid's space is built and checked without torch
        build_on_meta,
        count_macs,
        count_params,
    )

    ir = space.lower(genotype, num_classes=num_classes)
    model = build_on_meta(lambda: compile_ir(ir))
    return {"params": count_params(model), "macs": int(count_macs(model, ir.resolution)), "resolution": ir.resolution}
