"""The work of one ``nas train`` run: its data and network prepared and checked, then trained
(``nas.train.fit``), fine-tuned at the test resolutions (FixRes) or iterated as Noisy Student
(``nas.train.stages``), with the results ``train.json`` keeps."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from nas.backend import intra_op_threads
from nas.train.fit import (
    MODEL,
    Network,
    TrainData,
    atomic_model_save,
    count_network,
    load_train_data,
    resolve_network,
    train_augment,
    train_network,
)
from nas.train.settings import TrainSettings
from nas.train.stages import NOISY_STUDENT_FILE, noisy_student_data, run_fixres, run_noisy_student

Echo = Callable[[str], None]


@dataclass
class TrainParts:
    """The data and the network of one training (the labelled and pseudo-labelled sets of Noisy Student);
    ``results`` instead when the directory holds a finished training."""

    data: TrainData | None = None
    network: Network | None = None
    prepared: Any = None
    results: dict[str, Any] | None = None


def prepare(settings: TrainSettings) -> TrainParts:
    """The data and network of ``settings``, every setting checked against them; nothing is written."""
    try:
        torch.device(settings.device)
        torch.empty(1, device=settings.device)
    except (RuntimeError, AssertionError, TypeError) as error:
        raise ValueError(f"--device: {settings.device!r} is not usable here ({str(error).splitlines()[0]})") from None
    data = load_train_data(settings)
    network = resolve_network(settings.spec, settings.lowering, data.resolution)
    train_augment(settings, data)  # the augmentation's settings, checked before anything is written
    prepared = noisy_student_data(data, settings) if settings.noisy_student else None
    params = count_network(network, data.splits.num_classes)  # size and settings checked now, not after loading
    if settings.noisy_student and settings.student is not None:
        student = count_network(
            resolve_network(settings.student, settings.lowering, data.resolution), data.splits.num_classes
        )
        if student < params:
            raise ValueError(
                f"--student: {student:,} parameters, fewer than the teacher's {params:,}; "
                "Noisy Student's student is equal or larger"
            )
    return TrainParts(data, network, prepared)


def train(out: Path, settings: TrainSettings, parts: TrainParts, echo: Echo) -> dict[str, Any]:
    """Train (or resume) in ``out``; the results as ``train.json`` keeps them."""
    data, network = parts.data, parts.network
    assert data is not None and network is not None
    with intra_op_threads(settings.threads):
        started = time.perf_counter()
        if settings.noisy_student:
            trained = run_noisy_student(out, network, data, settings, parts.prepared, echo)
            atomic_model_save(out / MODEL, trained.model, trained.network, data.splits.num_classes)
            labeled: Dataset = parts.prepared[0]
        else:
            labeled = data.splits.train
            trained = train_network(out, network, data, labeled, settings, 0, echo)
        results: dict[str, Any] = {
            "params": trained.params,
            "train_resolution": data.resolution,
            "validation_accuracy": trained.validation_accuracy,
            "test_accuracy": trained.test_accuracy,
            "test_split": data.test_name,
            "epochs": len(trained.history),
        }
        if trained.history:
            results["final_train_loss"] = trained.history[-1]["train_loss"]
        if settings.fixres:
            results["fixres"] = run_fixres(out, trained, data, labeled, settings, echo)["rows"]
        if settings.noisy_student:
            results["noisy_student"] = json.loads((out / NOISY_STUDENT_FILE).read_text())["iterations"]
        results["seconds_this_session"] = time.perf_counter() - started
    return results
