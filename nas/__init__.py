"""A neural architecture search engine for PyTorch.

Search spaces are searched by controllers through evaluators; every architecture, searched or
published, compiles into a plain ``nn.Module``. This package is the ground floor: the IR, the
registries (``nas.registry``) that spaces, ops, controllers, evaluators and datasets register
into through entry points, compile, the search loop, the journal and the CLI::

    import nas
    model = nas.materialize("efficientnet-b0", num_classes=10)
    nas.summarize("mobilenetv3-large")["macs"]   # 216.6 M multiply-accumulates
"""

from nas import registry
from nas.api import Resolved, load_genotype, load_model, lower, materialize, presets, resolve, save_model
from nas.api import space_of, summarize
from nas.compile import compile, init_weights
from nas.controller import Controller, Result, Trial, make_controller
from nas.evaluator import Evaluator, make_evaluator
from nas.ops import register_op, set_drop_path_progress
from nas.serialization import genotype_json
from nas.space import Decision, SearchSpace
from nas.torchvision_weights import from_torchvision

__all__ = [
    "Controller", "Decision", "Evaluator", "Resolved", "Result", "SearchSpace", "Trial", "compile",
    "from_torchvision", "genotype_json", "init_weights", "load_genotype", "load_model", "lower",
    "make_controller", "make_evaluator", "materialize", "presets", "register_op", "registry", "resolve",
    "save_model", "set_drop_path_progress", "space_of", "summarize",
]
__version__ = "0.1.0"
