"""``resnet-basic``: a small ResNet-style chain space (3 stages of ``basic_block``s).

Per stage the controller picks a width, a depth (blocks) and a kernel size: 9 decisions,
(3 x 3 x 2)^3 = 5,832 architectures. A stride-1 3x3 stem (CIFAR style, He et al. 2016 §4.2),
stride 2 at the start of stages 2 and 3. Registered through the ``nas.spaces`` entry point;
the proxy network is the same architecture at half width (``proxy_reduction``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from nas.ir import BlockSpec, ChainNet, ClassifierSpec
from nas.serialization import from_dict
from nas.space import Decision, check_choices, mutate_one_decision

WIDTHS = ((16, 24, 32), (32, 48, 64), (64, 96, 128))  # choices per stage
DEPTHS = (1, 2, 3)
KERNELS = (3, 5)
STEM_WIDTH = 16
RESOLUTION = 32


@dataclass(frozen=True)
class BasicResNetGenotype:
    """Per stage: output width, number of basic blocks and their kernel size."""

    widths: tuple[int, int, int] = (16, 32, 64)
    depths: tuple[int, int, int] = (1, 1, 1)
    kernels: tuple[int, int, int] = (3, 3, 3)


def _scale(channels: int, multiplier: float) -> int:
    """``channels * multiplier`` rounded to a multiple of 8, at least 8."""
    return max(8, int(channels * multiplier + 4) // 8 * 8)


class BasicResNetSpace:
    """Width, depth and kernel size of each of three ResNet stages."""

    name = "resnet-basic"
    genotype_class = BasicResNetGenotype
    proxy_reduction: Mapping[str, Any] = MappingProxyType({"width_multiplier": 0.5})
    FIELDS = (("width", "widths"), ("depth", "depths"), ("kernel", "kernels"))

    def decisions(self) -> list[Decision]:
        choices = {"width": WIDTHS, "depth": (DEPTHS,) * 3, "kernel": (KERNELS,) * 3}
        return [Decision(f"stage{i}.{d}", choices[d][i]) for i in range(3) for d, _ in self.FIELDS]

    def decode(self, choices: Mapping[str, Any]) -> BasicResNetGenotype:
        check_choices(self.decisions(), choices)
        return BasicResNetGenotype(**{f: tuple(choices[f"stage{i}.{d}"] for i in range(3)) for d, f in self.FIELDS})

    def encode(self, genotype: BasicResNetGenotype) -> dict[str, Any]:
        choices = {f"stage{i}.{d}": getattr(genotype, f)[i] for i in range(3) for d, f in self.FIELDS}
        check_choices(self.decisions(), choices)
        return choices

    def lower(
        self,
        genotype: BasicResNetGenotype,
        *,
        num_classes: int = 1000,
        resolution: int | None = None,
        width_multiplier: float = 1.0,
    ) -> ChainNet:
        """The ChainNet of ``genotype``; ``resolution`` and ``width_multiplier`` shrink proxies."""
        self.encode(genotype)  # validates every field against the decisions
        if not width_multiplier > 0:
            raise ValueError(f"width_multiplier: must be > 0, got {width_multiplier!r}")
        size = resolution or RESOLUTION
        channels = _scale(STEM_WIDTH, width_multiplier)
        stem = BlockSpec("conv_bn_act", 3, channels, 1, size, {"kernel_size": 3})
        stages = []
        stage_settings = zip(genotype.widths, genotype.depths, genotype.kernels, strict=True)
        for i, (width, depth, kernel) in enumerate(stage_settings):
            blocks = []
            for j in range(depth):
                out = _scale(width, width_multiplier)
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BlockSpec("basic_block", channels, out, stride, size, {"kernel_size": kernel}))
                channels, size = out, blocks[-1].output_size
            stages.append(tuple(blocks))
        return ChainNet(stem, tuple(stages), (), ClassifierSpec(channels, num_classes), resolution or RESOLUTION)

    def presets(self) -> dict[str, BasicResNetGenotype]:
        return {
            "resnet-basic-small": BasicResNetGenotype(),
            "resnet-basic-large": BasicResNetGenotype((32, 64, 128), (3, 3, 3), (3, 3, 3)),
        }

    def mutate(self, genotype: BasicResNetGenotype, rng: np.random.Generator) -> BasicResNetGenotype:
        return mutate_one_decision(self, genotype, rng)

    def genotype_from_dict(self, data: Mapping[str, Any]) -> BasicResNetGenotype:
        genotype = from_dict(BasicResNetGenotype, data)
        self.encode(genotype)  # a width or kernel outside the choices is a ValueError naming the decision
        return genotype
