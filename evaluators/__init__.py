"""Evaluators: datasets, proxy training and cost.

An evaluator maps ``(genotype, trial_id)`` to a metrics dict and never raises for a bad candidate
(``base.Evaluator``). ``ProxyEvaluator`` trains a reduced candidate for a few epochs
(NASNet App. A.6) on a dataset from ``load_dataset``.
"""

from evaluators.base import Evaluator, TrialSeeds, trial_seeds
from evaluators.datasets import DATASET_NAMES, DatasetSplits, load_dataset
from evaluators.proxy import PROXY_DEFAULTS, ProxyEvaluator, accuracy

__all__ = [
    "DATASET_NAMES", "DatasetSplits", "Evaluator", "PROXY_DEFAULTS", "ProxyEvaluator", "TrialSeeds", "accuracy",
    "load_dataset", "trial_seeds",
]
