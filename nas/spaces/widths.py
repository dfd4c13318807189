"""The widths of one network as a search space: what NetAdapt searches (arXiv 1804.03230).

A space that can be pruned implements ``nas.space.Prunable``:

- ``prunable_widths(genotype) -> dict[str, int]``: the channel widths a pruner may shrink, by a
  name the space chooses (MobileNetV3: each expansion layer, each bottleneck width with the blocks
  that share it through residual connections, the head), so that every name is one layer's
  filters or a group that must shrink together;
- ``with_widths(genotype, widths) -> genotype``: the same network with those widths, the same
  layers (``ValueError`` if the widths would add or remove a layer or a residual connection).

A space may also remove blocks: ``removable_widths(genotype) -> set[str]`` names the widths whose
value 0 removes their block (MobileNetV3: a residual block's expansion width), and ``widths_of(start,
genotype)`` gives the widths of ``start`` (0 for a removed block) that make ``genotype``.

``WidthSpace(base, start)`` turns them into a ``SearchSpace`` whose decisions are the widths of
``start`` (choices: multiples of ``granularity`` below the starting width, and the starting width;
0 first where the width can remove its block)
and whose genotypes are plain genotypes of ``base`` with the same name, so that a journal of a
NetAdapt run holds genotypes that ``nas materialize`` and ``nas latency`` read like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nas.cell_ir import Network
from nas.space import Choice, Decision, Prunable, SearchSpace, check_choices, mutate_one_decision

DEFAULT_GRANULARITY = 8  # channels: the multiple MobileNet widths round to (``make_divisible``)


def width_choices(start: int, granularity: int) -> tuple[int, ...]:
    """``granularity, 2 * granularity, ...`` below ``start``, then ``start`` itself, ascending."""
    return tuple(range(granularity, start, granularity)) + (start,)


class WidthSpace:
    """The prunable widths of ``start`` (a genotype of ``base``) as decisions; genotypes are ``base``'s."""

    def __init__(self, base: SearchSpace[Any], start: Any, granularity: int = DEFAULT_GRANULARITY) -> None:
        if not isinstance(base, Prunable):
            raise ValueError(
                f"space {base.name!r} cannot be pruned: it defines no prunable_widths / with_widths "
                "(see nas.spaces.widths)"
            )
        if isinstance(granularity, bool) or not isinstance(granularity, int) or granularity < 1:
            raise ValueError(f"granularity: must be a positive integer, got {granularity!r}")
        self.base, self.start, self.granularity = base, start, granularity
        self.name = base.name
        # NetAdapt trains the network itself, not a narrower copy: of the base's proxy settings only
        # the input size stays (images are loaded at it; the networks are fully convolutional).
        self.proxy_reduction: Mapping[str, Any] = {
            key: value for key, value in dict(base.proxy_reduction).items() if key == "resolution"
        }
        self.genotype_class = base.genotype_class
        self.start_widths: dict[str, int] = dict(base.prunable_widths(start))
        removable = base.removable_widths(start) if hasattr(base, "removable_widths") else set()
        self._decisions = [
            Decision(name, ((0,) if name in removable else ()) + width_choices(width, granularity))
            for name, width in self.start_widths.items()
        ]

    def decisions(self) -> Sequence[Decision]:
        return list(self._decisions)

    def decode(self, choices: Mapping[str, Choice]) -> Any:
        check_choices(self._decisions, choices)
        return self.base.with_widths(self.start, dict(choices))

    def encode(self, genotype: Any) -> dict[str, Choice]:
        if hasattr(self.base, "widths_of"):  # names relative to the start, even with blocks removed
            widths = dict(self.base.widths_of(self.start, genotype))
        else:
            widths = dict(self.base.prunable_widths(genotype))
        check_choices(self._decisions, widths)
        if self.decode(widths) != genotype:
            raise ValueError("genotype: not the starting network with other widths")
        return widths

    def lower(self, genotype: Any, **macro: Any) -> Network:
        return self.base.lower(genotype, **macro)

    def presets(self) -> dict[str, Any]:
        return {}

    def mutate(self, genotype: Any, rng: np.random.Generator) -> Any:
        return mutate_one_decision(self, genotype, rng)

    def genotype_from_dict(self, data: Mapping[str, Any]) -> Any:
        return self.base.genotype_from_dict(data)
