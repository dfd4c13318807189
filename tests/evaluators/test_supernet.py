"""Weight sharing: the bank every candidate is assembled from, SPOS training that resumes exactly, scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import nas
from evaluators import supernet as supernet_module
from evaluators.supernet import CHECKPOINT, SupernetEvaluator
from nas import space as space_registry
from nas.cli.app import main
from nas.supernet import WeightBank

SPACE = space_registry.get("nb201")
TINY = {"C": 4, "N": 1, "resolution": 8, "batch_size": 32}  # 640 synthetic images: 16 steps an epoch
A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|"
B = "|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_1x1~0|none~1|nor_conv_1x1~2|"


def _ir(text: str):
    return SPACE.lower(SPACE.from_string(text), num_classes=4, C=4, N=1, resolution=8)


def _parameters(model: torch.nn.Module) -> set[int]:
    return {id(p) for p in model.parameters()}


def test_candidates_share_the_modules_of_the_same_op_on_the_same_edge() -> None:
    bank = WeightBank(seed=3)
    first = bank.assemble(_ir(A))
    created = len(bank.parts)
    assert len(bank.take_new()) == created and bank.take_new() == []
    second = bank.assemble(_ir(B))
    shared = _parameters(first) & _parameters(second)
    assert shared and shared != _parameters(first)  # the stem, the same ops on the same edges; not the others
    assert len(bank.parts) > created  # avg_pool has no weights, but the 1x1 on edge 2->3 is new
    assert bank.assemble(_ir(A)) is not first and _parameters(bank.assemble(_ir(A))) == _parameters(first)
    # A module starts from weights its key and the seed fix, whichever candidate creates it first.
    other = WeightBank(seed=3)
    other.assemble(_ir(B))
    other.assemble(_ir(A))
    mine, theirs = bank.state_dict(), other.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    # The assembled network is the compiled one: same structure and state-dict names.
    assert first.state_dict().keys() == nas.compile(_ir(A)).state_dict().keys()


def _evaluator(**options) -> SupernetEvaluator:
    return SupernetEvaluator(SPACE, dataset="synthetic", seed=0, **{**TINY, **options})


def test_training_killed_after_an_epoch_resumes_to_the_same_weights(tmp_path: Path, monkeypatch) -> None:
    torch.set_num_threads(1)
    whole = _evaluator(epochs=2)
    whole.attach(tmp_path / "whole")
    save = supernet_module._save

    def killed_after_first(path, *args):
        save(path, *args)
        raise KeyboardInterrupt  # the process dies right after epoch 1's checkpoint

    monkeypatch.setattr(supernet_module, "_save", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        _evaluator(epochs=2).attach(tmp_path / "killed")
    monkeypatch.setattr(supernet_module, "_save", save)
    assert torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=True)["epoch"] == 1
    resumed = _evaluator(epochs=2)
    resumed.attach(tmp_path / "killed")
    assert whole.bank is not None and resumed.bank is not None
    mine, theirs = whole.bank.state_dict(), resumed.bank.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert resumed.losses == whole.losses and len(whole.losses) == 2
    # A finished checkpoint is loaded, not trained again; every candidate scores as in the first process.
    loaded = _evaluator(epochs=2)
    loaded.attach(tmp_path / "whole")
    genotype = SPACE.from_string(A)
    scored = whole.evaluate(genotype, trial_id=5)
    assert scored["weight_shared"] is True and 0.0 <= scored["accuracy"] <= 1.0 and "error" not in scored
    assert loaded.evaluate(genotype, trial_id=9)["accuracy"] == scored["accuracy"]
    # Scoring B in between changes nothing for A: its BatchNorm statistics are re-estimated each time.
    whole.evaluate(SPACE.from_string(B), trial_id=6)
    assert whole.evaluate(genotype, trial_id=5)["accuracy"] == scored["accuracy"]


def test_a_damaged_checkpoint_and_bad_options_are_refused(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable supernet checkpoint"):
        _evaluator(epochs=1).attach(tmp_path)
    with pytest.raises(ValueError, match="finetune_steps: must be a non-negative integer"):
        _evaluator(finetune_steps=-1)


def test_a_search_through_the_supernet_ends_with_a_final_stage_that_trains(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps({"evaluator_options": {**TINY, "epochs": 1}}))
    out = tmp_path / "run"
    arguments = ["search", "--space", "nb201", "--evaluator", "supernet", "--controller", "random", "--budget", "4"]
    arguments += ["--dataset", "synthetic", "--out", str(out), "--config", str(config), "--no-progress"]
    arguments += ["--final-top", "2", "--final-repeats", "2", "--final-epochs", "1"]
    assert main(arguments) == 0
    assert (out / CHECKPOINT).is_file()
    report = (out / "report.md").read_text()
    assert "weight-shared: one supernet trained for 1 epochs" in report and "## Final selection" in report
    # The final stage trained each candidate on its own, ranked by the proxy's default reward (its training loss).
    assert "## How sure: the final stage" in report and "final_train_loss" in report
    assert main(arguments) == 0  # a finished run: nothing trained again
