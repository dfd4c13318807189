"""The built-in search spaces: NASNet cells, MobileNetV3 blocks, EfficientNet compound scaling, the seed
papers' blocks (ShuffleNet v1/v2, SE-ResNeXt, DPN, CondenseNet).

They are registered through the ``nas.spaces`` entry points of ``pyproject.toml``, the path a
plug-in's spaces take; look them up with ``nas.space.get(name)``.
"""

from search_spaces.blocks import BlocksGenotype, BlocksSpace
from search_spaces.efficientnet import EfficientNetGenotype, EfficientNetSpace
from search_spaces.mobilenetv3 import MobileNetV3Block, MobileNetV3Genotype, MobileNetV3Space
from search_spaces.nasnet import NasNetGenotype, NasNetSpace

__all__ = [
    "BlocksGenotype",
    "BlocksSpace",
    "EfficientNetGenotype",
    "EfficientNetSpace",
    "MobileNetV3Block",
    "MobileNetV3Genotype",
    "MobileNetV3Space",
    "NasNetGenotype",
    "NasNetSpace",
]
