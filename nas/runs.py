"""A search run: settings, the parts they name, and the run directory they fill.

``run_search(settings)`` is what ``nas search`` calls: it opens (or resumes) the journal in
``settings.out``, builds the space, controller and evaluator by their registered names, runs the
loop and writes best.json, report.md and the pictures. Nothing here knows a space, controller,
evaluator or dataset by name: all four come from ``nas.registry``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas import registry
from nas.controller import Controller, make_controller
from nas.doctor import check_storage
from nas.evaluator import Evaluator, make_evaluator
from nas.space import SearchSpace

if TYPE_CHECKING:  # the search itself imports torch and plotting; validating settings does not
    from nas.journal import Record
    from nas.search import SearchStats

logger = logging.getLogger(__name__)

# Settings that define a search; resuming with any of them changed is refused.
# ``budget`` may grow (continue a search), and data location, storage and threads may change.
IDENTITY_FIELDS = ("space", "controller", "evaluator", "dataset", "epochs", "seed", "proxy", "controller_options")
# Identity settings added after runs were first written: a run that lacks one was made with this value.
IDENTITY_DEFAULTS = {"evaluator": "proxy"}
MAX_SEED = 2**63 - 1
MAX_THREADS = 1024
_OPTIONAL_STR = (str, type(None))
_OPTIONAL_INT = (int, type(None))
# The type of every setting: YAML can hold anything, and a wrong type must be one clear line.
_TYPES: dict[str, Any] = {
    "out": str, "space": str, "controller": str, "evaluator": str, "budget": int, "dataset": str,
    "data_dir": _OPTIONAL_STR, "download": bool, "epochs": _OPTIONAL_INT, "seed": int, "threads": int,
    "storage": _OPTIONAL_STR, "study_name": _OPTIONAL_STR, "proxy": dict, "controller_options": dict,
}


@dataclass
class SearchSettings:
    """Everything ``nas search`` takes (CLI flags or a YAML ``--config``).

    ``proxy`` holds the evaluator's options (for ``proxy``: epochs, batch size, the ``lower``
    overrides of the proxy network); ``threads`` is the intra-op thread count of the evaluations
    (one: proxy networks are too small to gain from more, DESIGN: Search loop).
    """

    out: str
    space: str = "nasnet"
    controller: str = "reinforce"
    evaluator: str = "proxy"
    budget: int = 20
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    epochs: int | None = None
    seed: int = 0
    threads: int = 1
    storage: str | None = None
    study_name: str | None = None
    proxy: dict[str, Any] = field(default_factory=dict)
    controller_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """``ValueError`` naming the first bad setting; registered names are checked against the registries."""
        for name, kind in _TYPES.items():
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                expected = " or ".join("null" if k is type(None) else k.__name__ for k in
                                       (kind if isinstance(kind, tuple) else (kind,)))
                raise ValueError(f"{name}: expected {expected}, got {value!r}")
        if not self.out:
            raise ValueError("out: a run directory is required")
        for name, known in (("space", registry.spaces), ("controller", registry.controllers),
                            ("evaluator", registry.evaluators), ("dataset", registry.datasets)):
            if getattr(self, name) not in known:
                raise ValueError(f"{name}: unknown {known.kind} {getattr(self, name)!r}; valid: {known.names()}")
        if self.threads > MAX_THREADS:
            raise ValueError(f"threads: must be in [1, {MAX_THREADS}], got {self.threads}")
        for name in ("proxy", "controller_options"):
            keys = [key for key in getattr(self, name) if not isinstance(key, str)]
            if keys:
                raise ValueError(f"{name}: option names must be strings, got {keys[0]!r}")
        for name in ("budget", "epochs", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: must be in [0, 2**63 - 1] (journals store it as a 64-bit integer), got {self.seed}")
        if self.storage is not None:
            check_storage(self.storage)

    def identity(self) -> dict[str, Any]:
        values = asdict(self)
        return {key: values[key] for key in IDENTITY_FIELDS}


def build_parts(settings: SearchSettings) -> tuple[SearchSpace[Any], Controller[Any], Evaluator[Any]]:
    """The space, controller and evaluator of ``settings``, built through the registries."""
    space = registry.spaces.get(settings.space)
    controller = make_controller(settings.controller, space, seed=settings.seed, **settings.controller_options)
    options = dict(settings.proxy)
    if settings.epochs is not None:
        options["epochs"] = settings.epochs
    evaluator = make_evaluator(settings.evaluator, space, seed=settings.seed, dataset=settings.dataset,
                               data_dir=settings.data_dir, download=settings.download, **options)
    return space, controller, evaluator


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the evaluations with ``count`` intra-op threads, restoring the caller's setting after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_search(settings: SearchSettings,
               on_record: Callable[[Record, bool, int], None] | None = None) -> tuple[Record | None, SearchStats]:
    """Run (or resume) the search of ``settings``; return the best record and the timing.

    ``on_record(record, replayed, finished)`` is called after every trial told, with the number of
    finished evaluations in the journal (a progress display uses it).
    """
    from nas.journal import Journal
    from nas.lock import RunLock, StudyGuard
    from nas.report import write_outputs
    from nas.search import search

    settings.validate()
    out = Path(settings.out)
    check_run_directory(out)
    space, controller, evaluator = build_parts(settings)
    evaluator.prepare()  # data and proxy mistakes fail here, before a run directory or a trial exists
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out), contextlib.ExitStack() as stack:  # one writer: a second search here is refused
        try:
            journal = Journal(out, settings.storage, settings.study_name or "nas-search", settings.identity(),
                              defaults=IDENTITY_DEFAULTS)
        except ValueError:
            if created:  # a storage refused at the door: leave no empty run directory behind
                (out / ".lock").unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    out.rmdir()
            raise
        if settings.storage is not None:  # a shared storage: other run directories may name the same study
            stack.enter_context(StudyGuard(journal.study))
        report = None if on_record is None else (lambda record, replayed: on_record(record, replayed, len(journal)))
        with intra_op_threads(settings.threads):
            stats = search(space, controller, evaluator.evaluate, journal, settings.budget, on_record=report)
        describe = getattr(evaluator, "describe", None)
        best = write_outputs(out, journal, space, {**settings.identity(), "budget": settings.budget,
                                                   "threads": settings.threads}, stats,
                             describe() if callable(describe) else None)
    return best, stats


def check_run_directory(out: Path) -> None:
    """``ValueError`` unless ``out`` is, or can become, a writable run directory."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    existing = out if out.exists() else next((p for p in out.resolve().parents if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise ValueError(f"{out}: no existing folder to create it in")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{existing}: not writable, so {out} cannot hold a search")
