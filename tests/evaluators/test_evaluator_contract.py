"""Every registered evaluator through the evaluator contract of ``nas.testing``."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from nas import registry
from nas.evaluator import make_evaluator
from nas.space import Notated
from nas.testing import EvaluatorContract, ToySpace

torch.set_num_threads(1)

# One short epoch on the in-memory synthetic task keeps each evaluation to a second or two; the
# chain spaces are shrunk further than their own proxies (any space not listed runs at its proxy).
# The latency evaluator measures into a table per test (below), at 32 px, with few runs per entry.
OPTIONS: dict[str, dict[str, Any]] = {
    "proxy": {"epochs": 1, "batch_size": 64},
    "latency": {"resolution": 32, "min_repetitions": 3, "max_seconds": 0.01, "warmup": 1, "rounds": 1},
    "zero-cost": {"batch_size": 16},
    "supernet": {"epochs": 1, "batch_size": 64, "calibration_examples": 64},  # trained in memory on first use
}
# ``finetune`` inherits weights from a parent network of a width space: its contract is in test_finetune.py.
NAMES = [name for name in registry.evaluators.names() if name != "finetune"]
SMALLER: dict[str, dict[str, Any]] = {
    "proxy": {
        "mobilenetv3": {"width_multiplier": 0.25, "resolution": 16},
        "efficientnet": {"width_multiplier": 0.25, "resolution": 16},
    },
    "supernet": {
        "mobilenetv3": {"width_multiplier": 0.25, "resolution": 16},
        "efficientnet": {"width_multiplier": 0.25, "resolution": 16},
    },
    "zero-cost": {
        "mobilenetv3": {"width_multiplier": 0.25, "resolution": 16},
        "efficientnet": {"width_multiplier": 0.25, "resolution": 16},
    },
}


class TestRegisteredEvaluators(EvaluatorContract):
    @pytest.fixture(params=NAMES)
    def make_evaluator(self, request: pytest.FixtureRequest, tmp_path):
        name = request.param
        table = {"table": str(tmp_path / "latency.json")} if name == "latency" else {}

        def build(space, seed):
            if name == "tabular" and not isinstance(space, Notated):  # its refusal: tests/evaluators/test_tabular.py
                pytest.skip("tabular looks architectures up by a benchmark's notation (nas.space.Notated)")
            return make_evaluator(
                name,
                space,
                seed=seed,
                dataset="synthetic",
                **OPTIONS.get(name, {}),
                **SMALLER.get(name, {}).get(space.name, {}),
                **table,
            )

        return build

    @pytest.fixture(params=["toy", *registry.spaces.names()])
    def space(self, request: pytest.FixtureRequest):
        return ToySpace() if request.param == "toy" else registry.spaces.get(request.param)


def test_unknown_option_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"epoch: not a proxy setting of space 'toy'; valid: \['resolution'\]"):
        make_evaluator("proxy", ToySpace(), dataset="synthetic", epoch=3)
