"""Progress of a candidate's training, told to a display that listens (``nas.progress``)."""

from __future__ import annotations

import pytest
import torch

import evaluators.proxy as proxy_module
from evaluators.proxy import ProxyEvaluator
from nas import progress
from nas.cli.common import TrialProgress
from nas.controller import Result
from nas.journal import Record
from nas.space import get


def test_told_only_within_listening() -> None:
    heard: list[tuple[str, float]] = []
    progress.tell("nobody", 0.1)
    assert not progress.listened()
    with progress.listening(lambda text, fraction: heard.append((text, fraction))):
        assert progress.listened()
        progress.tell("epoch 1/2", 0.5)
        with progress.listening(None):
            progress.tell("muted", 0.7)
    progress.tell("after", 1.0)
    assert heard == [("epoch 1/2", 0.5)]


def test_the_proxy_tells_its_epochs_without_changing_its_result(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.setattr(proxy_module, "PROGRESS_AFTER", 0.0)
    monkeypatch.setattr(proxy_module, "PROGRESS_SECONDS", 0.0)
    space = get("nb201")
    evaluator = ProxyEvaluator(space, dataset="synthetic", seed=0, epochs=2, batch_size=64, C=4, N=1)
    genotype = space.presets()["nb201-resnet"]
    quiet = evaluator.evaluate(genotype, 5)
    heard: list[tuple[str, float]] = []
    with progress.listening(lambda text, fraction: heard.append((text, fraction))):
        told = evaluator.evaluate(genotype, 5)
    assert told["accuracy"] == quiet["accuracy"] and told["final_train_loss"] == quiet["final_train_loss"]
    assert told["sotl"] > told["final_train_loss"] > 0  # two epochs' mean losses summed
    steps = 2 * (len(evaluator.splits.train) // 64)  # type: ignore[arg-type]
    assert len(heard) == steps
    assert heard[0][0].startswith("trial 5: epoch 1/2, ") and heard[-1][0].startswith("trial 5: epoch 2/2, ")
    assert all(text.endswith(" images/s") for text, _ in heard)
    assert [fraction for _, fraction in heard] == [(k + 1) / steps for k in range(steps)]


def test_the_search_bar_shows_the_candidate_until_its_record() -> None:
    with TrialProgress(3, True) as bar:
        bar.candidate_progress("trial 0: epoch 1/4, 900 images/s", 0.25)
        task = bar.bar.tasks[bar.candidate]
        assert task.visible and task.description.startswith("trial 0: epoch 1/4") and task.completed == 0.25
        bar.update(Record(0, {}, {}, Result(reward=0.5)), False, 1)
        assert not bar.bar.tasks[bar.candidate].visible
