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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.files import atomic_write_text
from nas.loop import SearchStats
from nas.run import Run, RunKind, execute
from nas.settings import check_data
from nas.train.settings import TrainSettings

if TYPE_CHECKING:
    from nas.train.session import TrainParts

SETTINGS_FILE = "train.json"
MODEL = "model.pt"
Echo = Callable[[str], None]


class TrainRun(RunKind[TrainSettings, "TrainParts"]):
    """``nas train``: no journal (its identity and results are ``train.json``), no trials: one checkpointed training.

    The work (``nas.train.session``) is imported when a run starts: the kind itself is read without
    torch (``nas show``, the directory check of every run).
    """

    name = "train"
    command = "nas train"
    settings_class = TrainSettings
    identity_file = SETTINGS_FILE
    outputs = (SETTINGS_FILE, MODEL)

    def __init__(self, echo: Echo = print) -> None:
        self.echo = echo

    def check(self, settings: TrainSettings) -> None:
        check_data(settings.dataset, settings.data_dir, settings.download)

    def build(self, settings: TrainSettings) -> TrainParts:
        from nas.train.session import TrainParts, prepare  # lazy: the kind is read without torch

        document = _document(Path(settings.out))
        if document.get("status") == "done":  # a finished training reports its results, nothing is loaded
            return TrainParts(results=document["results"])
        return prepare(settings)

    def finish(self, run: Run[TrainSettings, TrainParts], stats: SearchStats | None) -> dict[str, Any]:
        from nas.train.session import train  # lazy: the kind is read without torch

        if run.parts.results is not None:
            self.echo(f"{run.out}: finished; the results:")
            _report(run.parts.results, self.echo)
            return run.parts.results
        results = train(run.out, run.settings, run.parts, self.echo)
        atomic_write_text(
            run.out / SETTINGS_FILE,
            json.dumps({"settings": run.settings.identity(), "status": "done", "results": results}, indent=2),
        )
        _report(results, self.echo)
        return results

    def describe(self, out: Path) -> dict[str, Any] | None:
        document = _document(out)
        return {"status": document.get("status"), "results": document.get("results")} if document else None


def run_train(settings: TrainSettings, echo: Echo = print) -> dict[str, Any]:
    """Run (or resume, or report) the training ``settings`` describe; the results as in ``train.json``."""
    return execute(TrainRun(echo), settings)  # type: ignore[no-any-return]


def _document(out: Path) -> dict[str, Any]:
    """``train.json`` of ``out`` ({} without one; its settings are checked before this is read)."""
    try:
        document = json.loads((out / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _report(results: Mapping[str, Any], echo: Callable[[str], None]) -> None:
    echo(
        f"validation accuracy {results['validation_accuracy']:.4f}; {results['test_split']} accuracy "
        f"{results['test_accuracy']:.4f} at {results['train_resolution']} px ({results['params']:,} parameters)"
    )
    for row in results.get("fixres", []):
        echo(f"FixRes at {row['test_resolution']} px: {row['before']:.4f} before, {row['after']:.4f} after")
