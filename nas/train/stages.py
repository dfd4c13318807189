"""The stages around one ``nas train`` training: FixRes after it, Noisy Student's iterations of it."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from nas.data import stratified_split
from nas.files import atomic_write_text
from nas.recipe import Recipe
from nas.seeds import trial_seeds
from nas.train.fit import (
    EVAL_BATCH,
    Network,
    TrainData,
    Trained,
    atomic_model_save,
    batches_of,
    resolve_network,
    tensors_of,
    train_network,
    with_progress,
    write_log,
)
from nas.train.fixres import FixResMode, fixres_parts, prepare_fixres
from nas.train.noisy_student import load_unlabeled_folder, pseudo_label, teacher_probabilities
from nas.train.settings import DEFAULT_LEARNING_RATE, TrainSettings
from nas.training import Diverged, Trainer, evaluate, recalibrate_batchnorm

FIXRES_FILE, NOISY_STUDENT_FILE = "fixres.json", "noisy_student.json"
FIXRES_WEIGHT_DECAY = 1e-4  # the FixRes reference fine-tune: SGD, momentum 0.9, weight decay 1e-4


def run_fixres(
    out: Path,
    trained: Trained,
    data: TrainData,
    train_set: Dataset,
    settings: TrainSettings,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """FixRes at every ``settings.fixres`` resolution, from ``trained``, fine-tuned on the labeled
    ``train_set``; resumes per resolution. What trains is ``fixres_parts``'s rule for the network and
    the two resolutions (the whole network where R_test reaches kernel taps R_train never did). The
    adapting BatchNorm layers' statistics are re-estimated at the end on ``precise_bn`` images at
    R_test: what the reference's 56 epochs at momentum 0.1 converge to, which a short fine-tune at
    TF's momentum 0.01 would leave half-way."""

    path = out / FIXRES_FILE
    document = json.loads(path.read_text()) if path.exists() else {"train_resolution": data.resolution, "rows": []}
    done = {row["test_resolution"] for row in document["rows"]}
    device = torch.device(settings.device)
    splits = data.splits
    for r in settings.fixres:
        if r in done:
            continue
        seeds = trial_seeds(settings.seed, 0, repeat=r)
        torch.manual_seed(seeds.other)
        model = copy.deepcopy(trained.model).to(device)
        view = data.view(r)
        sample, _ = next(iter(batches_of(data.test, 1)))
        parts = fixres_parts(model, data.view()(sample).shape[1:], view(sample).shape[1:])
        prepare_fixres(model, parts)
        _, before = evaluate(model, batches_of(data.test, EVAL_BATCH), device, view)
        _, val_before = evaluate(model, batches_of(splits.validation, EVAL_BATCH), device, view)
        learning_rate = settings.fixres_learning_rate or 0.1 * (
            settings.learning_rate or DEFAULT_LEARNING_RATE[settings.optimizer]
        )
        recipe = Recipe(
            epochs=settings.fixres_epochs,
            batch_size=settings.batch_size,
            learning_rate=learning_rate,
            weight_decay=FIXRES_WEIGHT_DECAY,
            gradient_clip=None,
            amp=settings.amp,
        )
        count = len(train_set)  # type: ignore[arg-type]
        steps = max(1, count // settings.batch_size)
        trainer = Trainer(model, recipe, settings.fixres_epochs * steps, device, schedules=False)
        generator = torch.Generator().manual_seed(seeds.data_order)
        mode = FixResMode(parts)
        for epoch in range(settings.fixres_epochs):
            batches = with_progress(
                batches_of(train_set, settings.batch_size, generator),
                steps,
                f"FixRes {r} px {epoch + 1}/{settings.fixres_epochs}",
                settings.progress,
            )
            try:
                trainer.train_epoch(batches, transform=view, set_mode=mode, label=f"FixRes epoch {epoch + 1}")
            except Diverged as error:
                raise ValueError(f"FixRes at {r} px diverged ({error}); try a lower --fixres-learning-rate") from None
        if settings.precise_bn:
            recalibrate_batchnorm(
                model,
                train_set,
                settings.batch_size,
                settings.precise_bn,
                device,
                torch.Generator().manual_seed(seeds.data_order),
                view,
                within=[model.get_submodule(name) for name in parts.adapting],
            )
        _, after = evaluate(model, batches_of(data.test, EVAL_BATCH), device, view)
        _, val_after = evaluate(model, batches_of(splits.validation, EVAL_BATCH), device, view)
        fixed = Network(
            trained.network.genotype,
            {**trained.network.lowering, "resolution": r}
            if "resolution" in trained.network.lowering
            else trained.network.lowering,
        )
        atomic_model_save(out / f"model-fixres-{r}.pt", model.to("cpu"), fixed, splits.num_classes)
        row = {
            "test_resolution": r,
            "accuracy_at_train_resolution": trained.test_accuracy,
            "before": before,
            "after": after,
            "validation_before": val_before,
            "validation_after": val_after,
            "rule": parts.family,
            "trained_parameters": list(parts.trained),
            "adapting_modules": list(parts.adapting),
            "unreached_convolutions": list(parts.unreached),
        }
        document["rows"].append(row)
        atomic_write_text(path, json.dumps(document, indent=2))
        echo(
            f"FixRes {data.resolution} -> {r} px ({parts.family}): {data.test_name} accuracy at {data.resolution} px "
            f"{trained.test_accuracy:.4f}; at {r} px {before:.4f} before, {after:.4f} after fine-tuning"
        )
    return document


# --- Noisy Student ------------------------------------------------------------------------------------


def noisy_student_data(
    data: TrainData, settings: TrainSettings
) -> tuple[TensorDataset, torch.Tensor, torch.Tensor | None]:
    """``(labeled, unlabeled images, their hidden labels or None)``; ``ValueError`` for unusable ones."""
    splits = data.splits
    images, labels = tensors_of(splits.train)
    if settings.unlabeled_fraction is not None:
        labeled, hidden = stratified_split(labels.numpy(), settings.unlabeled_fraction, settings.seed)
        return (
            TensorDataset(images[torch.as_tensor(labeled)], labels[torch.as_tensor(labeled)]),
            images[torch.as_tensor(hidden)],
            labels[torch.as_tensor(hidden)],
        )
    if splits.normalization is None:
        raise ValueError(f"--unlabeled: data set {splits.name!r} does not say how its images are normalised")
    unlabeled = load_unlabeled_folder(settings.unlabeled, images.shape[-1], splits.normalization)  # type: ignore[arg-type]
    return TensorDataset(images, labels), unlabeled, None


def smoothed(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Rows of class probabilities with label smoothing applied, as cross-entropy applies it to indices."""
    return targets * (1.0 - smoothing) + smoothing / targets.shape[1]


def run_noisy_student(
    out: Path,
    network: Network,
    data: TrainData,
    settings: TrainSettings,
    prepared: tuple[TensorDataset, torch.Tensor, torch.Tensor | None],
    echo: Callable[[str], None],
) -> Trained:
    """Teacher on the labeled images, then ``iterations`` students on labeled + pseudo-labeled ones.

    Label smoothing is applied to the labeled and hard pseudo-labeled targets, not to soft ones
    (google-research/noisystudent ``main.py``)."""
    splits = data.splits
    labeled_set, unlabeled, hidden_labels = prepared
    images, labels = labeled_set.tensors
    student = (
        network if settings.student is None else resolve_network(settings.student, settings.lowering, data.resolution)
    )
    path = out / NOISY_STUDENT_FILE
    document: dict[str, Any] = {
        "labeled": len(labels),
        "unlabeled": len(unlabeled),
        "soft": settings.soft_labels,
        "threshold": settings.threshold,
        "balance": settings.balance,
        "iterations": [],
    }
    echo(
        f"Noisy Student: {len(labels):,} labeled and {len(unlabeled):,} unlabeled images, "
        f"{settings.iterations} student iteration(s)"
    )
    teacher = train_network(out / "teacher", network, data, labeled_set, settings, 0, echo)
    document["iterations"].append(_iteration_row(0, "teacher", teacher, data, None))
    _write_noisy_student(out, path, document, echo)
    one_hot = smoothed(nn.functional.one_hot(labels, splits.num_classes).float(), settings.label_smoothing)
    for iteration in range(1, settings.iterations + 1):
        probabilities = teacher_probabilities(
            teacher.model.to(settings.device), unlabeled, data.view(), device=settings.device
        )
        pseudo = pseudo_label(probabilities, settings.threshold, settings.balance)  # type: ignore[arg-type]
        teacher.model.to("cpu")
        mixed = TensorDataset(
            torch.cat([images, unlabeled[torch.as_tensor(pseudo.index, dtype=torch.long)]]),
            torch.cat(
                [
                    one_hot,
                    pseudo.targets(settings.soft_labels)
                    if settings.soft_labels
                    else smoothed(pseudo.targets(False), settings.label_smoothing),
                ]
            ),
        )
        trained = train_network(out / f"student-{iteration}", student, data, mixed, settings, iteration, echo)
        confident = probabilities.max(dim=1).values.numpy() >= settings.threshold
        facts = {
            "unlabeled": len(unlabeled),
            "kept_at_threshold": pseudo.kept,
            "used": len(pseudo.index),
            "per_class_kept": np.bincount(pseudo.classes[confident], minlength=splits.num_classes).tolist(),
            "per_class_used": np.bincount(pseudo.classes[pseudo.index], minlength=splits.num_classes).tolist(),
        }
        if hidden_labels is not None:  # how right the teacher was about the images whose labels were hidden
            facts["accuracy_on_hidden_labels"] = float((probabilities.argmax(dim=1) == hidden_labels).float().mean())
        document["iterations"].append(_iteration_row(iteration, "student", trained, data, facts))
        _write_noisy_student(out, path, document, echo)
        teacher = trained
    return teacher


def _iteration_row(
    iteration: int, role: str, trained: Trained, data: TrainData, pseudo: dict[str, Any] | None
) -> dict[str, Any]:
    row = {
        "iteration": iteration,
        "role": role,
        "params": trained.params,
        "validation_accuracy": trained.validation_accuracy,
        "test_accuracy": trained.test_accuracy,
        "test_split": data.test_name,
    }
    if pseudo is not None:
        row["pseudo_labels"] = pseudo
    return row


def _write_noisy_student(out: Path, path: Path, document: dict[str, Any], echo: Callable[[str], None]) -> None:
    atomic_write_text(path, json.dumps(document, indent=2))
    write_log(out, document["iterations"], ("iteration", "role", "params", "validation_accuracy", "test_accuracy"))
    row = document["iterations"][-1]
    extra = ""
    if "pseudo_labels" in row:
        facts = row["pseudo_labels"]
        extra = f" ({facts['used']:,} pseudo-labeled images from {facts['kept_at_threshold']:,} kept)"
    echo(
        f"Noisy Student iteration {row['iteration']} ({row['role']}{extra}): validation accuracy "
        f"{row['validation_accuracy']:.4f}, test accuracy {row['test_accuracy']:.4f}"
    )
