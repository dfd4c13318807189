"""A search run: settings, the parts they build, and the run directory they fill.

``run_search(settings)`` is what ``nas search`` calls: it opens (or resumes) the journal in
``settings.out``, builds the space, controller and proxy evaluator, runs the loop and writes
best.json, report.md and the pictures.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluators.datasets import DATASET_NAMES
from nas import space as space_registry
from nas.journal import Journal, Record
from nas.report import write_outputs
from nas.search import SearchStats, search

logger = logging.getLogger(__name__)

DATASETS = DATASET_NAMES  # the evaluators' loaders are the single source of the names
# Settings that define a search; resuming with any of them changed is refused.
# ``budget`` may grow (continue a search), and data location or storage may move.
IDENTITY_FIELDS = ("space", "controller", "dataset", "epochs", "seed", "proxy", "controller_options")


@dataclass
class SearchSettings:
    """Everything ``nas search`` takes (CLI flags or a YAML ``--config``)."""

    out: str
    space: str = "nasnet"
    controller: str = "reinforce"
    budget: int = 20
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    epochs: int | None = None
    seed: int = 0
    storage: str | None = None
    study_name: str | None = None
    proxy: dict[str, Any] = field(default_factory=dict)
    controller_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        from controllers import CONTROLLERS

        space_registry.get(self.space)  # ValueError names the valid spaces
        if self.controller not in CONTROLLERS:
            raise ValueError(f"controller: unknown {self.controller!r}; valid: {sorted(CONTROLLERS)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset: unknown {self.dataset!r}; valid: {list(DATASETS)}")
        for name in ("budget", "epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {self.seed!r}")
        for name in ("proxy", "controller_options"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name}: must be a mapping of option names to values")

    def identity(self) -> dict[str, Any]:
        values = asdict(self)
        return {key: values[key] for key in IDENTITY_FIELDS}


def build_parts(settings: SearchSettings) -> tuple[Any, Any, Any]:
    """The space, controller and evaluator of ``settings``."""
    from controllers import make
    from evaluators import ProxyEvaluator

    space = space_registry.get(settings.space)
    controller = make(settings.controller, space, seed=settings.seed, **settings.controller_options)
    options = dict(settings.proxy)
    if settings.epochs is not None:
        options["epochs"] = settings.epochs
    evaluator = ProxyEvaluator(space, dataset=settings.dataset, data_dir=settings.data_dir,
                               download=settings.download, seed=settings.seed, **options)
    return space, controller, evaluator


def run_search(settings: SearchSettings, progress: bool | None = None) -> tuple[Record | None, SearchStats]:
    """Run (or resume) the search of ``settings``; return the best record and the timing."""
    settings.validate()
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    space, controller, evaluator = build_parts(settings)
    out.mkdir(parents=True, exist_ok=True)
    journal = Journal(out, settings.storage, settings.study_name or "nas-search", settings.identity())
    reporter = _Progress(settings.budget, len(journal), progress)
    with reporter:
        stats = search(space, controller, evaluator.evaluate, journal, settings.budget, on_record=reporter.update)
    best = write_outputs(out, journal, {**settings.identity(), "budget": settings.budget}, stats,
                         genotype_of=lambda document: _genotype(document))
    return best, stats


def _genotype(document: dict[str, Any]) -> Any:
    from nas.api import load_genotype

    return load_genotype(document)


class _Progress:
    """A rich progress bar on a terminal; one line per trial otherwise (logs, CI)."""

    def __init__(self, budget: int, done: int, enabled: bool | None) -> None:
        self.budget, self.done, self.best = budget, done, None
        self.interactive = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None

    def __enter__(self) -> _Progress:
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("best {task.fields[best]}"), TimeElapsedColumn(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("search", total=self.budget, completed=self.done, best="-")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, record: Record, replayed: bool) -> None:
        if not record.result.failed and (self.best is None or record.result.reward > self.best):
            self.best = record.result.reward
        if replayed:
            return
        self.done += 1
        best = "-" if self.best is None else f"{self.best:.4f}"
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, best=best)
        else:
            outcome = (f"failed ({record.result.error})" if record.result.failed
                       else f"reward {record.result.reward:.4f}")
            print(f"trial {record.trial_id}: {outcome}; {self.done}/{self.budget} done, best {best}",
                  file=sys.stderr, flush=True)
