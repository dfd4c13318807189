"""A neural architecture search engine for PyTorch.

Search spaces are searched by controllers through evaluators; every architecture, searched or
published, compiles into a plain ``nn.Module``. This package is the ground floor: the IR, the
registries (``nas.registry``) that spaces, ops, controllers, evaluators and datasets register
into through entry points, compile, the search loop, the journal and the CLI::

    import nas
    model = nas.materialize("efficientnet-b0", num_classes=10)
    nas.summarize("mobilenetv3-large")["macs"]   # 216.6 M multiply-accumulates

The names below are imported on first use (PEP 562), so that ``import nas`` and the command
line's validation of a user's input do not pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from nas.lazy import exports

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "Resolved",
            "load_genotype",
            "load_model",
            "lower",
            "materialize",
            "presets",
            "resolve",
            "save_model",
            "space_of",
            "summarize",
        ),
        "nas.api",
    ),
    "compile": "nas.compile",
    "init_weights": "nas.compile",
    "Controller": "nas.controller",
    "Result": "nas.controller",
    "Trial": "nas.controller",
    "make_controller": "nas.controller",
    "Evaluator": "nas.evaluator",
    "make_evaluator": "nas.evaluator",
    "register_op": "nas.ops",
    "set_drop_path_progress": "nas.ops",
    "condense": "nas.seed_ops.condense",
    "set_training_progress": "nas.seed_ops.condense",
    "genotype_json": "nas.serialization",
    "Decision": "nas.space",
    "SearchSpace": "nas.space",
    "from_torchvision": "nas.weights.torchvision",
    "from_timm": "nas.weights.timm",
}
__all__ = sorted([*_EXPORTS, "registry"])
__version__ = "0.1.0"


_exported, __dir__ = exports(__name__, {**_EXPORTS, "registry": "nas"})


def __getattr__(name: str) -> Any:
    if name == "registry":  # the module itself (imported here: ``nas.registry`` is then its attribute)
        return importlib.import_module("nas.registry")
    return _exported(name)


class _Package(types.ModuleType):
    """Keeps ``nas.compile`` the function: importing the submodule ``nas.compile`` would otherwise
    rebind the package attribute to the module (the eager import used to rebind it back)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
