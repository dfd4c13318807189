"""The built-in evaluators and datasets.

``ProxyEvaluator`` (registered as ``proxy``) trains a reduced candidate for a few epochs
(NASNet App. A.6) on a registered dataset (``digits``, ``synthetic``, ``cifar10``,
``imagefolder``). Both are declared as entry points in ``pyproject.toml``, the path a plug-in's
evaluators and datasets take.
"""

from evaluators.datasets import iterate_batches, stratified_split
from evaluators.proxy import ProxyEvaluator, accuracy, recalibrate_batchnorm
from nas.data import DatasetSplits, load_dataset
from nas.evaluator import Evaluator
from nas.seeds import TrialSeeds, trial_seeds

__all__ = [
    "DatasetSplits", "Evaluator", "ProxyEvaluator", "TrialSeeds", "accuracy", "iterate_batches", "load_dataset",
    "recalibrate_batchnorm", "stratified_split", "trial_seeds",
]
