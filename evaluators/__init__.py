"""The built-in evaluators and datasets.

``ProxyEvaluator`` (registered as ``proxy``) trains a reduced candidate for a few epochs
(NASNet App. A.6) on a registered dataset (``digits``, ``synthetic``, ``cifar10``,
``imagefolder``); ``latency`` predicts and measures latency, ``finetune`` fine-tunes inherited
weights (NetAdapt). All are declared as entry points in ``pyproject.toml``, the path a plug-in's
evaluators and datasets take, with torch-free checks of their options and data folders
(``proxy_options``, ``dataset_checks``).

The names below are imported on first use (PEP 562): loading a torch-free check imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "iterate_batches": "nas.data", "stratified_split": "nas.data", "DatasetSplits": "nas.data",
    "load_dataset": "nas.data", "ProxyEvaluator": "evaluators.proxy", "accuracy": "evaluators.proxy",
    "recalibrate_batchnorm": "nas.training", "Evaluator": "nas.evaluator", "TrialSeeds": "nas.seeds",
    "trial_seeds": "nas.seeds",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'evaluators' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
