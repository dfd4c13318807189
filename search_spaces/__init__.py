"""The built-in search spaces. Importing this package registers them with ``nas.space``."""

from nas.space import get, names
from search_spaces import efficientnet, mobilenetv3, nasnet
from search_spaces.efficientnet import EfficientNetGenotype, EfficientNetSpace
from search_spaces.mobilenetv3 import MobileNetV3Block, MobileNetV3Genotype, MobileNetV3Space
from search_spaces.nasnet import NasNetGenotype, NasNetSpace

__all__ = [
    "EfficientNetGenotype", "EfficientNetSpace", "MobileNetV3Block", "MobileNetV3Genotype",
    "MobileNetV3Space", "NasNetGenotype", "NasNetSpace", "efficientnet", "get", "mobilenetv3",
    "names", "nasnet",
]
