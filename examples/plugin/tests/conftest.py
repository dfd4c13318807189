"""One intra-op thread (tiny tensors); ``basic_block`` registered by hand when the plug-in is not installed."""

import torch
from nas import registry

from nas_example_plugin.ops import basic_block

torch.set_num_threads(1)

if "basic_block" not in registry.ops:  # a source checkout: no entry point declares the op
    registry.ops.register("basic_block", basic_block)
