"""The ``finetune`` evaluator: inherit the parent's weights, fine-tune a few steps, validate; never raise
for a candidate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from evaluators.finetune import FineTuneEvaluator
from nas import registry
from nas.compile import compile as compile_ir
from nas.evaluator import Evaluator
from nas.spaces.widths import WidthSpace
from search_spaces.mobilenetv3 import MobileNetV3Block, MobileNetV3Genotype, MobileNetV3Space

START = MobileNetV3Genotype(
    blocks=(MobileNetV3Block(3, 32, 16, False, "relu", 2), MobileNetV3Block(3, 48, 16, True, "hardswish", 1)),
    stem_channels=8,
    head_channels=32,
    classifier_hidden=16,
    resolution=32,
)
SPACE = WidthSpace(MobileNetV3Space(), START)
PRUNED = SPACE.decode({**SPACE.start_widths, "blocks.1.expand_channels": 24, "head_channels": 16})


@pytest.fixture
def evaluator() -> FineTuneEvaluator:
    made = registry.evaluators.get("finetune")(SPACE, seed=0, dataset="synthetic", steps=3, resolution=16)
    made.prepare()
    parent = compile_ir(made.lower(START), seed=0)
    made.set_parent(START, parent.state_dict())
    return made


def test_a_pruned_candidate_is_fine_tuned_and_validated_repeatably(
    evaluator: FineTuneEvaluator, tmp_path: Path
) -> None:
    assert isinstance(evaluator, Evaluator)
    evaluator.weights_dir = tmp_path
    first = evaluator.evaluate(PRUNED, 5)
    assert "error" not in first, first
    assert 0.0 <= first["accuracy"] <= 1.0 and first["steps"] == 3 and math.isfinite(first["train_loss"])
    json.dumps(first)
    state = torch.load(tmp_path / "trial-5.pt", weights_only=True)
    assert state["stages.0.1.block.0.0.weight"].shape[0] == 24  # the saved weights are the pruned network's
    second = evaluator.evaluate(PRUNED, 5)
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in second.items() if k != "seconds"}


def test_zero_steps_validates_the_inherited_weights_as_they_are(evaluator: FineTuneEvaluator) -> None:
    metrics = evaluator.evaluate(START, 0, steps=0)
    assert metrics["steps"] == 0 and "train_loss" not in metrics and "accuracy" in metrics


def test_a_broken_candidate_or_a_missing_parent_is_a_result(evaluator: FineTuneEvaluator) -> None:
    assert "error" in evaluator.evaluate(object(), 0)
    orphan = FineTuneEvaluator(SPACE, dataset="synthetic", resolution=16)
    assert "no parent" in orphan.evaluate(PRUNED, 0)["error"]


@pytest.mark.parametrize("options", [{"steps": -1}, {"learning_rate": float("nan")}, {"dataset": "nope"}])
def test_bad_settings_are_refused_when_built(options: dict) -> None:
    with pytest.raises(ValueError):
        FineTuneEvaluator(SPACE, **{"dataset": "synthetic", **options})
