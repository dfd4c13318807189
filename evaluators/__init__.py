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

from nas.lazy import exports

_EXPORTS: dict[str, str] = {
    "iterate_batches": "nas.data",
    "stratified_split": "nas.data",
    "DatasetSplits": "nas.data",
    "load_dataset": "nas.data",
    "ProxyEvaluator": "evaluators.proxy",
    "accuracy": "evaluators.proxy",
    "recalibrate_batchnorm": "nas.training",
    "Evaluator": "nas.evaluator",
    "TrialSeeds": "nas.seeds",
    "trial_seeds": "nas.seeds",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = exports(__name__, _EXPORTS)
