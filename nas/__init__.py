"""A neural architecture search engine for PyTorch.

Search spaces (``search_spaces``) are searched by controllers (``controllers``) through
evaluators (``evaluators``); every architecture, searched or published, compiles into a plain
``nn.Module``::

    import nas
    model = nas.materialize("efficientnet-b0", num_classes=10)
    nas.summarize("mobilenetv3-large")["macs"]   # 216.6 M multiply-accumulates
"""

from nas.api import (
    Resolved,
    load_genotype,
    load_model,
    lower,
    materialize,
    presets,
    resolve,
    save_model,
    space_of,
    summarize,
)
from nas.compile import compile, init_weights
from nas.controller import Controller, Result, Trial
from nas.ops import register_op, set_drop_path_progress
from nas.serialization import genotype_json
from nas.space import Decision, SearchSpace
from nas.torchvision_weights import from_torchvision

__all__ = [
    "Controller", "Decision", "Resolved", "Result", "SearchSpace", "Trial", "compile",
    "from_torchvision", "genotype_json", "init_weights", "load_genotype", "load_model", "lower",
    "materialize", "presets", "register_op", "resolve", "save_model", "set_drop_path_progress",
    "space_of", "summarize",
]
__version__ = "0.1.0"
