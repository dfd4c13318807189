"""ProxyEvaluator: learns, is deterministic per (seed, trial_id), and turns failures into results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import evaluators
from evaluators import Evaluator, ProxyEvaluator, load_dataset
from evaluators import proxy as proxy_module
from evaluators.datasets import DatasetSplits
from nas.seeds import trial_seeds
from nas.space import get, sample_choices
from search_spaces.nasnet import CellBlock, CellTopology, NasNetGenotype

# A cheap cell: 3x3 separable convs, pools and identities (NASNet op names, TF input indices).
CHEAP = CellTopology(
    (
        CellBlock(0, "sep_conv_3x3", 1, "identity"),
        CellBlock(0, "avg_pool_3x3", 1, "conv_1x1"),
        CellBlock(2, "max_pool_3x3", 0, "identity"),
        CellBlock(3, "identity", 1, "sep_conv_3x3"),
        CellBlock(4, "conv_3x3", 2, "identity", "concat"),
    ),
    concat=(5, 6),
)


@pytest.fixture(scope="module")
def synthetic() -> DatasetSplits:
    return load_dataset("synthetic")


@pytest.fixture(scope="module")
def genotype() -> NasNetGenotype:
    return NasNetGenotype(CHEAP, CHEAP)


def _evaluator(splits: DatasetSplits, **options) -> ProxyEvaluator:
    return ProxyEvaluator("nasnet", dataset=splits, **{"epochs": 3, **options})


@pytest.fixture(scope="module")
def trained(synthetic: DatasetSplits, genotype: NasNetGenotype) -> dict:
    """The metrics of the cheap cell trained by the default proxy (trial 0), which two tests read."""
    return _evaluator(synthetic).evaluate(genotype, trial_id=0)


def test_learns_an_easy_synthetic_task(trained: dict) -> None:
    metrics = trained
    assert "error" not in metrics, metrics
    assert metrics["accuracy"] > 0.7  # measured 0.86-0.98 over three trials; chance is 0.25
    assert metrics["epochs"] == 3 and metrics["params"] > 1000 and metrics["macs"] > 10_000
    assert metrics["resolution"] == 8 and np.isfinite(metrics["final_train_loss"])
    assert 0 < metrics["train_seconds"] <= metrics["seconds"]


def test_chain_space_learns(synthetic: DatasetSplits) -> None:
    space = get("mobilenetv3")
    genotype = space.decode(sample_choices(space.decisions(), np.random.default_rng(0)))
    metrics = ProxyEvaluator(space, dataset=synthetic, epochs=3, full_cost=True).evaluate(genotype, 0)
    assert "error" not in metrics, metrics
    assert metrics["accuracy"] > 0.4  # measured 0.53-0.68 over three trials; chance is 0.25
    assert metrics["full_params"] > metrics["params"] and metrics["full_macs"] > metrics["macs"]


def test_same_trial_same_result_and_global_rng_untouched(synthetic: DatasetSplits, genotype: NasNetGenotype) -> None:
    evaluator = _evaluator(synthetic, epochs=1)
    state = torch.random.get_rng_state()
    first, again = evaluator.evaluate(genotype, 7), _evaluator(synthetic, epochs=1).evaluate(genotype, 7)
    assert torch.equal(state, torch.random.get_rng_state())
    assert (first["accuracy"], first["final_train_loss"]) == (again["accuracy"], again["final_train_loss"])
    other = evaluator.evaluate(genotype, 8)
    assert other["final_train_loss"] != first["final_train_loss"]


def test_trial_seeds_depend_on_seed_and_trial_only() -> None:
    assert trial_seeds(0, 5) == trial_seeds(0, 5)
    assert len({trial_seeds(0, 5), trial_seeds(0, 6), trial_seeds(1, 5)}) == 3
    with pytest.raises(ValueError, match="trial_id"):
        trial_seeds(0, -1)


def test_nan_loss_is_an_error_result(synthetic: DatasetSplits, genotype: NasNetGenotype) -> None:
    images, labels = synthetic.train.tensors
    poisoned = images.clone()
    poisoned[:, 0, 0, 0] = float("nan")
    splits = DatasetSplits("poisoned", TensorDataset(poisoned, labels), synthetic.validation, None, 4, 8)
    metrics = _evaluator(splits).evaluate(genotype, 0)
    assert metrics["error"] == "nan loss at epoch 1" and "accuracy" not in metrics
    assert metrics["params"] > 0 and metrics["seconds"] > 0


def test_huge_learning_rate_fails_without_raising(synthetic: DatasetSplits, genotype: NasNetGenotype) -> None:
    metrics = _evaluator(synthetic, learning_rate=1e12, gradient_clip=None).evaluate(genotype, 0)
    assert metrics["error"].startswith("nan loss at epoch"), metrics


def test_time_limit_is_an_error_result(synthetic: DatasetSplits, genotype: NasNetGenotype) -> None:
    metrics = _evaluator(synthetic, time_limit=1e-3).evaluate(genotype, 0)
    assert metrics["error"].startswith("time limit 0.001 s exceeded"), metrics
    assert "accuracy" not in metrics


def test_exceptions_and_out_of_memory_are_error_results(
    synthetic: DatasetSplits, genotype: NasNetGenotype, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluator = _evaluator(synthetic)
    assert evaluator.evaluate("not a genotype", 0)["error"].startswith("TypeError: ")

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(proxy_module, "compile_ir", out_of_memory)
    assert evaluator.evaluate(genotype, 0)["error"].startswith("out of memory: CUDA out of memory")


def test_drop_path_progress_follows_the_steps(
    synthetic: DatasetSplits, genotype: NasNetGenotype, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nas.training

    calls: list[float] = []
    monkeypatch.setattr(nas.training, "set_drop_path_progress", lambda module, progress: calls.append(progress))
    evaluator = _evaluator(synthetic, epochs=2, drop_path=True)
    evaluator.evaluate(genotype, 0)
    total = 2 * (len(synthetic.train) // evaluator.batch_size)
    assert total > 2 and calls == [step / total for step in range(total)]  # ScheduledDropPath: linear in the step
    calls.clear()
    _evaluator(synthetic, epochs=2).evaluate(genotype, 0)  # the proxy default: no drop-path
    assert calls == [0.0] * total


def test_aux_head(genotype: NasNetGenotype) -> None:
    splits = load_dataset("synthetic", resolution=16)  # the aux head needs a 5x5 map at 2/3 depth
    metrics = ProxyEvaluator("nasnet", dataset=splits, epochs=3, aux_head=True).evaluate(genotype, 0)
    assert "error" not in metrics, metrics
    assert metrics["accuracy"] > 0.6


def test_adamw_learns(synthetic: DatasetSplits, genotype: NasNetGenotype) -> None:
    metrics = _evaluator(synthetic, optimizer="adamw").evaluate(genotype, 0)
    assert metrics["accuracy"] > 0.5, metrics  # measured 0.64-0.75 over three trials; chance is 0.25


def test_no_io_in_the_constructor_and_missing_data_raises(tmp_path: Path, genotype: NasNetGenotype) -> None:
    evaluator = ProxyEvaluator("nasnet", dataset="cifar10", data_dir=tmp_path / "missing")
    with pytest.raises(ValueError, match="--download"):
        evaluator.evaluate(genotype, 0)


@pytest.mark.parametrize(
    "space, options, match",
    [
        ("mobilenetv3", {"num_cells": 2}, r"num_cells: .*valid: \['resolution', 'width_multiplier'\]"),
        ("nasnet", {"optimizer": "rmsprop"}, r"valid: \['sgd', 'adamw'\]"),
        ("nasnet", {"epochs": 0}, "epochs"),
        ("nasnet", {"time_limit": -1}, "time_limit"),
        ("nasnet", {"device": "abacus"}, "device"),
        ("hypernet", {}, "unknown search space"),
    ],
)
def test_bad_settings_raise_value_error(space: str, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ProxyEvaluator(space, **options)


def test_public_api() -> None:
    assert isinstance(ProxyEvaluator("efficientnet"), Evaluator)
    assert {"Evaluator", "ProxyEvaluator", "load_dataset", "DatasetSplits"} <= set(evaluators.__all__)


def test_the_default_time_limit_scales_with_the_candidate(
    synthetic: DatasetSplits, genotype: NasNetGenotype, trained: dict
) -> None:
    from evaluators.proxy import auto_time_limit

    metrics = trained
    expected = auto_time_limit(metrics["macs"], 3, len(synthetic.train) + 512, len(synthetic.validation))
    assert metrics["time_limit"] == pytest.approx(expected) and expected > 120
    assert auto_time_limit(10 * metrics["macs"], 3, 1000, 100) > auto_time_limit(metrics["macs"], 3, 1000, 100)
    stalled = _evaluator(synthetic, time_limit=1e-3).evaluate(genotype, trial_id=0)
    assert stalled["error"].startswith("time limit 0.001 s exceeded")


def test_a_network_that_asks_for_another_resolution_is_served_images_of_that_size() -> None:
    """``nas scale`` trains a point at the proxy resolution times gamma: the data is loaded at that size."""
    import nas
    from nas.spaces.scaling import CompoundPoint, CompoundScalingSpace
    from search_spaces.mobilenetv3 import MobileNetV3Space

    torch.set_num_threads(1)
    space = CompoundScalingSpace(MobileNetV3Space(), nas.presets()["mobilenetv3-small"], step=0.25)
    evaluator = ProxyEvaluator(space, dataset="synthetic", epochs=1, width_multiplier=0.25, resolution=16)
    evaluator.prepare()
    metrics = evaluator.evaluate(CompoundPoint(1.0, 1.0, 1.5), trial_id=0)
    assert "error" not in metrics and metrics["resolution"] == 24 and 0 <= metrics["accuracy"] <= 1
    served = evaluator.splits_of(0, 24)
    assert served.resolution == 24 and served.train[0][0].shape == (3, 24, 24)
    assert evaluator.splits.resolution == 16  # the proxy's own size is kept for the other points
    assert evaluator.evaluate(CompoundPoint(1.0, 1.0, 1.0), trial_id=1)["resolution"] == 16
    fresh = ProxyEvaluator(space, dataset="synthetic", epochs=1, width_multiplier=0.25, resolution=16)
    fresh.prepare()
    fresh.prepare_inputs([CompoundPoint(1.0, 1.0, 1.25), CompoundPoint(1.0, 1.0, 1.5)], repeats=2)
    assert sorted(key for key in fresh._splits if key[1] is not None) == [(0, 20), (0, 24), (1, 20), (1, 24)]
    # ready splits cannot be served at another size: the trial fails and says why, it does not train on 16 px
    ready = ProxyEvaluator(space, dataset=evaluator.splits, epochs=1, width_multiplier=0.25, resolution=16)
    failed = ready.evaluate(CompoundPoint(1.0, 1.0, 1.5), trial_id=0)
    assert "asks for 24 px images" in failed["error"] and "accuracy" not in failed


def test_per_epoch_reports_leave_the_final_metrics_unchanged():
    """Early stopping reads the accuracy after every epoch but the last; training is not perturbed by it,
    even where the training data draw from the global generator (random flips, as torchvision's transforms do,
    read through a DataLoader)."""
    import dataclasses

    import nas.space
    from evaluators.proxy import ProxyEvaluator
    from nas.data import load_dataset

    class Flipped(torch.utils.data.Dataset):
        def __init__(self, data):
            self.data = data

        def __len__(self):
            return len(self.data)

        def __getitem__(self, index):
            image, label = self.data[index]
            return (image.flip(-1) if torch.rand(()) < 0.5 else image), label

    splits = load_dataset("synthetic")
    splits = dataclasses.replace(splits, train=Flipped(splits.train))
    space = nas.space.get("nasnet")
    evaluator = ProxyEvaluator(space, splits, epochs=3, num_cells=1, penultimate_filters=24, calibration_examples=128)
    genotype = space.decode({d.name: d.choices[0] for d in space.decisions()})
    reports = []
    with_reports = evaluator.evaluate(genotype, 5, report=reports.append)
    plain = evaluator.evaluate(genotype, 5)
    timeless = lambda metrics: {k: v for k, v in metrics.items() if not k.endswith("seconds")}  # noqa: E731
    assert timeless(with_reports) == timeless(plain)
    assert [r["epochs"] for r in reports] == [1, 2] and all(0 <= r["accuracy"] <= 1 for r in reports)
    assert reports[0]["params"] == plain["params"]


def test_sotl_sums_every_epochs_mean_training_loss() -> None:
    """SoTL (Ru et al., arXiv 2006.04492): the per-epoch mean losses summed; the last one is final_train_loss."""
    torch.set_num_threads(1)
    evaluator = ProxyEvaluator("nb201", dataset="synthetic", seed=0, epochs=3, C=4, N=1)
    interim: list[dict] = []
    metrics = evaluator.evaluate(evaluator.space.presets()["nb201-resnet"], 2, report=interim.append)
    losses = [report["final_train_loss"] for report in interim] + [metrics["final_train_loss"]]
    assert len(losses) == 3 and metrics["sotl"] == pytest.approx(sum(losses), rel=1e-12)
    assert [report["sotl"] for report in interim] == pytest.approx([losses[0], losses[0] + losses[1]], rel=1e-12)
