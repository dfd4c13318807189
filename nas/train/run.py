"""``nas train``: train a found architecture with a standard recipe, then FixRes and Noisy Student.

One run directory ``DIR`` holds a training that survives being killed:

- ``train.json``: the settings (a rerun with other settings is refused) and, when done, the results;
- ``checkpoint.pt``: after every epoch, the ``Trainer`` state with the random-number states and
  the per-epoch history, written atomically and loadable with ``weights_only=True``; the same
  command resumes from it to the same weights as an uninterrupted run (same machine, threads and
  library versions);
- ``log.csv`` and ``curves.png``: loss and accuracy per epoch, training and validation;
- ``model.pt``: the trained network, ``nas.load_model`` opens it (the moving average with ``--ema``);
- ``fixres.json`` and ``model-fixres-R.pt`` (``--fixres R``): accuracy at R_train, at R before and
  after the FixRes fine-tune (``nas.train.fixres``);
- Noisy Student (``--noisy-student``): ``teacher/`` and ``student-K/`` are such directories, one per
  iteration; ``noisy_student.json`` and ``log.csv`` hold the accuracy of each.

The validation split is held out from the training data exactly as a search holds it out (same
seed, same fraction: the numbers compare with the proxy's); the test split is used only to report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from nas.files import atomic_write_text
from nas.train.fit import (
    MODEL,
    atomic_model_save,
    count_network,
    load_train_data,
    resolve_network,
    train_augment,
    train_network,
)
from nas.train.settings import TrainSettings  # noqa: F401  (re-exported: TrainSettings and run_train go together)
from nas.train.stages import NOISY_STUDENT_FILE, noisy_student_data, run_fixres, run_noisy_student

SETTINGS_FILE = "train.json"


def check_train_directory(out: Path, settings: TrainSettings) -> bool:
    """``True`` if ``out`` holds this training (to resume or report), ``False`` if it is new or empty;
    ``ValueError`` if it holds something else, or a training with other settings."""
    from nas.run import check_run_directory

    check_run_directory(out)
    if not out.exists() or not any(out.iterdir()):
        return False
    recorded = out / SETTINGS_FILE
    if not recorded.exists():
        raise ValueError(f"{out}: exists and is not a nas train directory; choose a new --out")
    try:
        previous = json.loads(recorded.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{recorded}: unreadable; move the directory away to start over") from None
    current = settings.identity()
    for key in sorted(set(previous) | set(current)):
        if previous.get(key) != current.get(key):
            raise ValueError(f"{out}: holds a training with {key} {previous.get(key)!r}, not {current.get(key)!r}; "
                             "rerun with the same settings to resume, or choose a new --out")
    return True


def run_train(settings: TrainSettings, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume, or report) the training ``settings`` describe; the results as in ``train.json``."""
    from nas.lock import RunLock
    from nas.backend import intra_op_threads

    settings.validate()
    out = Path(settings.out)
    existing = check_train_directory(out, settings)
    if existing:
        document = json.loads((out / SETTINGS_FILE).read_text())
        if document.get("status") == "done":
            echo(f"{out}: finished; the results:")
            _report(document["results"], echo)
            return document["results"]
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
        student = count_network(resolve_network(settings.student, settings.lowering, data.resolution),
                                data.splits.num_classes)
        if student < params:
            raise ValueError(f"--student: {student:,} parameters, fewer than the teacher's {params:,}; "
                             "Noisy Student's student is equal or larger")
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out), intra_op_threads(settings.threads):
        if not existing:
            atomic_write_text(out / SETTINGS_FILE, json.dumps({"settings": settings.identity(),
                                                               "status": "training"}, indent=2))
        started = time.perf_counter()
        if settings.noisy_student:
            assert prepared is not None
            trained = run_noisy_student(out, network, data, settings, prepared, echo)
            atomic_model_save(out / MODEL, trained.model, trained.network, data.splits.num_classes)
            labeled: Dataset = prepared[0]
        else:
            labeled = data.splits.train
            trained = train_network(out, network, data, labeled, settings, 0, echo)
        results: dict[str, Any] = {"params": trained.params, "train_resolution": data.resolution,
                                   "validation_accuracy": trained.validation_accuracy,
                                   "test_accuracy": trained.test_accuracy, "test_split": data.test_name,
                                   "epochs": len(trained.history)}
        if trained.history:
            results["final_train_loss"] = trained.history[-1]["train_loss"]
        if settings.fixres:
            results["fixres"] = run_fixres(out, trained, data, labeled, settings, echo)["rows"]
        if settings.noisy_student:
            results["noisy_student"] = json.loads((out / NOISY_STUDENT_FILE).read_text())["iterations"]
        results["seconds_this_session"] = time.perf_counter() - started
        atomic_write_text(out / SETTINGS_FILE, json.dumps({"settings": settings.identity(), "status": "done",
                                                           "results": results}, indent=2))
    _report(results, echo)
    return results


def _report(results: Mapping[str, Any], echo: Callable[[str], None]) -> None:
    echo(f"validation accuracy {results['validation_accuracy']:.4f}; {results['test_split']} accuracy "
         f"{results['test_accuracy']:.4f} at {results['train_resolution']} px ({results['params']:,} parameters)")
    for row in results.get("fixres", []):
        echo(f"FixRes at {row['test_resolution']} px: {row['before']:.4f} before, {row['after']:.4f} after")
