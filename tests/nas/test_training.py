"""The shared training loop (nas.training), the batch transforms (nas.train.augment), FixRes's parts and
Noisy Student's pseudo-label balancing, on small tensors."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import nas
from nas.cost import build_on_meta
from nas.recipe import Recipe
from nas.train.augment import EvalView, TrainAugment, center_view, source_resolution
from nas.train.fixres import FixResMode, fixres_parts, prepare_fixres, reached_taps, unreached_convolutions
from nas.train.noisy_student import balance, pseudo_label
from nas.training import Trainer, WeightAverage, learning_rate_factor, parameter_groups


def test_warmup_then_cosine() -> None:
    factors = [learning_rate_factor(step, 100, 10) for step in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])  # linear warm-up to the peak
    assert factors[10] == 1.0 and all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert factors[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert learning_rate_factor(0, 100, 0) == 1.0 and learning_rate_factor(100, 100, 0) == pytest.approx(0.0)


def test_no_weight_decay_on_norms_and_biases() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    decay, plain = parameter_groups(model, 0.1, decay_norms_and_biases=False)
    assert [p.shape for p in decay["params"]] == [(4, 3, 3, 3), (2, 36)] and decay["weight_decay"] == 0.1
    assert len(plain["params"]) == 4 and plain["weight_decay"] == 0.0  # conv bias, BN scale + shift, linear bias
    (everything,) = parameter_groups(model, 0.1, decay_norms_and_biases=True)  # the proxy's setting
    assert len(everything["params"]) == 6


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def test_soft_targets_are_not_smoothed_again() -> None:
    from nas.train.stages import smoothed

    images, labels = torch.randn(8, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    models = []  # smoothing applies to class indices; rows of probabilities are used as given
    for targets in (labels, smoothed(nn.functional.one_hot(labels, 3).float(), 0.1)):
        model = _tiny()
        trainer = Trainer(model, Recipe(epochs=1, batch_size=4, label_smoothing=0.1), 2)
        stats = trainer.train_epoch([(images[:4], targets[:4]), (images[4:], targets[4:])])
        assert stats.steps == 2 and trainer.step == 2
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b)


def test_weight_average_follows_the_condensing_stage() -> None:
    from nas.seed_ops.condense import LearnedGroupConv

    torch.manual_seed(0)
    model = LearnedGroupConv(8, 8, groups=2, condense_factor=4, bn_eps=1e-5, bn_momentum=0.1)
    average = WeightAverage(model, 0.9)
    model.set_training_progress(0.4)  # two of three condensing stages done
    average.update(model)
    assert average.model._stages_done == model._stages_done == 2 and torch.equal(average.model.mask, model.mask)
    average.model.set_training_progress(0.4)  # a schedule driven again finds nothing left to drop
    assert torch.equal(average.model.mask, model.mask) and not average.model.training


def test_weight_average_and_trainer_state_round_trip() -> None:
    model = _tiny()
    average = WeightAverage(model, 0.5)
    before = average.model[1].weight.clone()
    with torch.no_grad():
        model[1].weight.add_(1.0)
    average.update(model)  # decay min(0.5, 2/11): mostly the new weights
    torch.testing.assert_close(average.model[1].weight, before + 1.0 - 2 / 11)
    trainer = Trainer(model, Recipe(epochs=2, batch_size=4, ema_decay=0.9, warmup_epochs=1), 10)
    trainer.train_epoch([(torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]))] * 3)
    state = trainer.state_dict()
    other = Trainer(_tiny(), Recipe(epochs=2, batch_size=4, ema_decay=0.9, warmup_epochs=1), 10)
    other.load_state_dict(state)
    assert other.step == 3 and other.ema is not None and other.ema.updates == 3
    torch.testing.assert_close(other.evaluation_model[1].weight, trainer.evaluation_model[1].weight)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"warmup_epochs": 3.0}, "warmup_epochs"),
        ({"optimizer": "lamb"}, "optimizer"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"drop_path": "sometimes"}, "drop_path"),
    ],
)
def test_recipe_refuses_bad_settings(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Recipe(epochs=2, batch_size=4, **settings)


def test_train_augment_and_test_view() -> None:
    images = torch.randn(5, 3, 20, 20)
    torch.manual_seed(0)
    augment = TrainAugment(12, normalization=((0.5,) * 3, (0.25,) * 3))
    first = augment(images)
    torch.manual_seed(0)
    assert first.shape == (5, 3, 12, 12) and torch.equal(first, augment(images))  # the global generator decides
    assert not torch.equal(first, augment(images))
    assert center_view(images, 16).shape == (5, 3, 16, 16) and EvalView(20)(images).shape == (5, 3, 20, 20)
    centred = center_view(torch.arange(64.0).view(1, 1, 8, 8), 7, 7 / 8)  # no resize: the central 7x7
    assert torch.equal(centred, torch.arange(64.0).view(1, 1, 8, 8)[..., :7, :7])
    assert source_resolution([16, 24]) == 28
    with pytest.raises(ValueError, match="normalised"):
        TrainAugment(12)


@pytest.mark.parametrize(
    "preset, family, adapting",
    [
        ("seresnet50", "ResNet rule", ("stages.3.2.bn3",)),  # the reference's layer4[2].bn3
        ("efficientnet-b0", "EfficientNet rule", ("head.1",)),  # conv_head's bn2
        ("nasnet-a-mobile", "PNASNet rule", ("cells.13", "cells.14", "cells.15", "dropout")),
    ],
)
def test_fixres_parts_per_family(preset: str, family: str, adapting: tuple) -> None:
    model = build_on_meta(lambda: nas.materialize(preset, num_classes=10))
    parts = fixres_parts(model)
    assert family in parts.family and parts.adapting == adapting
    names = dict(model.named_parameters())
    assert {"classifier.1.weight", "classifier.1.bias"} <= set(parts.trained) or "classifier.weight" in parts.trained
    if family == "ResNet rule":
        assert all(name.startswith("classifier.") for name in parts.trained)
    if family == "EfficientNet rule":
        assert "head.0.weight" in parts.trained and names["head.0.weight"].shape[2:] == (1, 1)
    if family == "PNASNet rule":
        assert all(name.startswith(("cells.13.", "cells.14.", "cells.15.", "classifier.")) for name in parts.trained)


def test_fixres_changes_only_its_parameters_and_statistics() -> None:
    torch.manual_seed(0)
    model = nas.materialize("mobilenetv3-small", num_classes=4, seed=0, width_multiplier=0.25, resolution=16)
    parts = fixres_parts(model)
    prepare_fixres(model, parts)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, Recipe(epochs=1, batch_size=8, learning_rate=0.05, gradient_clip=None), 3)
    batches = [(torch.randn(8, 3, 16, 16), torch.randint(0, 4, (8,))) for _ in range(3)]
    trainer.train_epoch(batches, transform=EvalView(20), set_mode=FixResMode(parts))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    adapting_buffers = {
        f"{m}.{b}" for m in parts.adapting for b in ("running_mean", "running_var", "num_batches_tracked")
    }
    assert set(parts.trained) <= changed  # everything it trains moved
    assert changed <= set(parts.trained) | adapting_buffers  # and nothing else did
    assert adapting_buffers <= changed  # the last BatchNorm's statistics adapted to the new resolution
    assert not model.stages.training and all(model.get_submodule(name).training for name in parts.adapting)


def test_kernel_taps_reached_through_zero_padding() -> None:
    assert reached_taps(1, 5, 1, 2) == {2}  # a 1x1 map: a 5x5 kernel multiplies pixels by its centre only
    assert reached_taps(2, 5, 1, 2) == {1, 2, 3} and reached_taps(2, 5, 2, 2) == {2, 3}
    assert reached_taps(3, 5, 2, 2) == set(range(5)) and reached_taps(4, 7, 1, 3) == set(range(7))
    assert reached_taps(5, 3, 1, 2, dilation=2) == {0, 1, 2}


def test_fixres_trains_the_whole_network_where_the_test_resolution_reaches_untrained_kernel_taps() -> None:
    """MobileNetV3-Small at 16 px has 1x1 maps from its stride-16 block on: its 5x5 depthwise kernels train
    their centre only, and at 24 px (2x2 maps) the untrained taps read the image (digits: 0.61 -> 0.92
    after FixRes, benchmarks/results/fixres_gap). A network whose maps cover its kernels at R_train keeps
    its family's rule."""
    torch.manual_seed(0)
    model = nas.materialize("mobilenetv3-small", num_classes=4, seed=0, width_multiplier=0.25, resolution=16)
    family = fixres_parts(model)
    parts = fixres_parts(model, (3, 16, 16), (3, 24, 24))
    assert parts.unreached == unreached_convolutions(model, (3, 16, 16), (3, 24, 24))
    assert parts.unreached[0] == "stages.2.0.block.1.0" and "stages.3.0.block.1.0" in parts.unreached
    assert not any(name.startswith(("stem.", "stages.0.", "stages.1.")) for name in parts.unreached)
    assert set(parts.trained) == {n for n, _ in model.named_parameters()} and "whole network" in parts.family
    assert set(parts.adapting) == {"stem", "stages", "head", "pool", "classifier"}
    assert model.training and all(m.training for m in model.modules())  # the size probe left every mode as it was
    for shapes in (((3, 16, 16), (3, 14, 14)), ((3, 224, 224), (3, 320, 320))):  # no new tap: the family's rule
        assert fixres_parts(model, *shapes) == family
    proxy = nas.materialize("nasnet-a-cifar", num_classes=4, seed=0, num_cells=1, penultimate_filters=24)
    assert fixres_parts(proxy, (3, 16, 16), (3, 24, 24)) == fixres_parts(proxy)  # 4x4 maps cover 7x7 kernels
    # and the fine-tune then moves the weights and statistics the family's rule froze
    prepare_fixres(model, parts)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, Recipe(epochs=1, batch_size=8, learning_rate=0.05, gradient_clip=None), 2)
    batches = [(torch.randn(8, 3, 24, 24), torch.randint(0, 4, (8,))) for _ in range(2)]
    trainer.train_epoch(batches, transform=EvalView(24), set_mode=FixResMode(parts))
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert {"stem.0.weight", "stages.2.0.block.1.0.weight", "stages.2.0.block.1.1.running_mean"} <= moved


def test_balance_duplicates_and_filters_per_class() -> None:
    classes = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.95, 0.3, 0.9, 0.8, 0.7, 0.6])
    index = balance(classes, confidence, num_classes=4, per_class=4)
    assert np.bincount(classes[index], minlength=4).tolist() == [4, 4, 4, 0]  # class 3 has none to duplicate
    assert index[:4].tolist() == [0, 1, 2, 3]  # filtered: the 4 most confident of class 0
    assert sorted(index[4:8].tolist()) == [6, 6, 7, 7]  # duplicated: class 1's two images twice each
    filtered = balance(classes, confidence, 4, per_class=4, mode="filter")
    assert np.bincount(classes[filtered], minlength=4).tolist() == [4, 2, 4, 0]
    duplicated = balance(classes, confidence, 4, per_class=3, mode="duplicate")
    assert np.bincount(classes[duplicated], minlength=4).tolist() == [6, 3, 4, 0]
    assert sorted(balance(classes, confidence, 4, mode="none").tolist()) == list(range(12))
    assert len(balance(classes, confidence, 4)) == 12  # default: the mean count (12 / 3 classes) each
    odd = balance(np.array([0, 0, 0, 1]), np.array([0.5, 0.9, 0.7, 0.8]), 2, per_class=3)
    assert odd.tolist() == [1, 2, 0, 3, 3, 3]


def test_pseudo_labels_threshold_soft_and_hard() -> None:
    probabilities = torch.tensor([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8], [0.6, 0.4]])
    labels = pseudo_label(probabilities, threshold=0.58, mode="none")
    assert labels.kept == 3 and sorted(labels.index.tolist()) == [0, 2, 3]  # 0.55 is under the threshold
    assert torch.equal(labels.targets(soft=False), torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(labels.targets(soft=True), probabilities[[0, 3, 2]])
    balanced = pseudo_label(probabilities, threshold=0.58, mode="both")
    assert np.bincount(balanced.classes[balanced.index]).tolist() == [2, 2]  # per class: round(3 / 2) = 2
    with pytest.raises(ValueError, match="threshold"):
        pseudo_label(probabilities, threshold=1.0)
