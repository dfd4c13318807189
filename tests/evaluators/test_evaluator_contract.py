"""Every registered evaluator through the evaluator contract of ``nas.testing``."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from nas import registry
from nas.evaluator import make_evaluator
from nas.testing import EvaluatorContract, ToySpace

torch.set_num_threads(1)

# One short epoch on the in-memory synthetic task keeps each evaluation well under a second.
OPTIONS: dict[str, dict[str, Any]] = {"proxy": {"epochs": 1, "batch_size": 32}}


class TestRegisteredEvaluators(EvaluatorContract):
    @pytest.fixture(params=registry.evaluators.names())
    def make_evaluator(self, request: pytest.FixtureRequest):
        name = request.param
        return lambda space, seed: make_evaluator(name, space, seed=seed, dataset="synthetic", **OPTIONS.get(name, {}))

    @pytest.fixture(params=["toy", "nasnet"])
    def space(self, request: pytest.FixtureRequest):
        return ToySpace() if request.param == "toy" else registry.spaces.get(request.param)


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"epoch: not a proxy setting of space 'toy'; valid: \['resolution'\]"):
        make_evaluator("proxy", ToySpace(), dataset="synthetic", epoch=3)
