"""A toy chain space and a toy objective, for testing controllers and evaluators apart from any real space.

``ToySpace``: two stages of conv-BN-ReLU blocks, 6 decisions, small enough to train in
milliseconds; ``toy_reward``: a deterministic objective of a genotype. ``nas.testing``'s
contracts use them, and so can a plug-in's tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.ir import BlockSpec, ChainNet, ClassifierSpec
from nas.serialization import from_dict
from nas.space import Decision, SearchSpace, check_choices, mutate_one_decision


@dataclass(frozen=True)
class ToyGenotype:
    """Per stage: output width, kernel size and number of conv blocks."""

    widths: tuple[int, ...] = (8, 16)
    kernels: tuple[int, ...] = (3, 3)
    depths: tuple[int, ...] = (1, 1)
    resolution: int = 16


class ToySpace:
    """Two stages of conv-BN-ReLU blocks; 6 decisions. Small enough to train in milliseconds."""

    name = "toy"
    genotype_class = ToyGenotype
    proxy_reduction: Mapping[str, Any] = {}
    WIDTHS, KERNELS, DEPTHS = (8, 16), (3, 5), (1, 2)

    def decisions(self) -> list[Decision]:
        return [
            Decision(f"stage{i}.{field}", choices)
            for i in range(2)
            for field, choices in (("width", self.WIDTHS), ("kernel", self.KERNELS), ("depth", self.DEPTHS))
        ]

    def decode(self, choices: Mapping[str, Any]) -> ToyGenotype:
        check_choices(self.decisions(), choices)
        widths, kernels, depths = (
            tuple(choices[f"stage{i}.{f}"] for i in range(2)) for f in ("width", "kernel", "depth")
        )
        return ToyGenotype(widths, kernels, depths)

    def encode(self, genotype: ToyGenotype) -> dict[str, Any]:
        choices = {
            f"stage{i}.{f}": getattr(genotype, f + "s")[i] for i in range(2) for f in ("width", "kernel", "depth")
        }
        check_choices(self.decisions(), choices)
        return choices

    def lower(self, genotype: ToyGenotype, *, num_classes: int = 10, resolution: int | None = None) -> ChainNet:
        size = resolution or genotype.resolution
        stem = BlockSpec("conv_bn_act", 3, 8, 1, size, {"kernel_size": 3})
        channels, stages = 8, []
        for width, kernel, depth in zip(genotype.widths, genotype.kernels, genotype.depths):
            stage = []
            for k in range(depth):
                stage.append(
                    BlockSpec("conv_bn_act", channels, width, 2 if k == 0 else 1, size, {"kernel_size": kernel})
                )
                channels, size = width, stage[-1].output_size
            stages.append(tuple(stage))
        return ChainNet(
            (stem,), tuple(stages), (), ClassifierSpec(channels, num_classes), resolution or genotype.resolution
        )

    def presets(self) -> dict[str, ToyGenotype]:
        return {"toy-default": ToyGenotype()}

    def mutate(self, genotype: ToyGenotype, rng: np.random.Generator) -> ToyGenotype:
        return mutate_one_decision(self, genotype, rng)

    def genotype_from_dict(self, data: Mapping[str, Any]) -> ToyGenotype:
        return from_dict(ToyGenotype, data)


# ---------------------------------------------------------------------------------------- spaces


def toy_reward(space: SearchSpace[Any], genotype: Any) -> float:
    """A deterministic objective: the fraction of decisions at a fixed target choice."""
    choices, decisions = space.encode(genotype), space.decisions()
    return sum(choices[d.name] == d.choices[i % len(d.choices)] for i, d in enumerate(decisions)) / len(decisions)
