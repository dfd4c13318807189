"""One run shape for every command that fills a run directory: search, scale, NetAdapt and train.

``execute(kind, settings)`` owns what they share, in an order that refuses every mistake before
anything is written and lets a killed run resume exactly:

1. the settings are validated and the directory checked: writable, and not another kind's run;
2. the run's identity (the settings a resumed run must share) is compared with the one the
   directory records, before torch is imported: a wrong flag on a resume costs a second;
3. a second writer of the directory is refused (its lock is held), the backend's options checked,
   then the kind's torch-free checks (data folders, evaluator options), its parts (data loaded,
   networks checked) and the backend (a cluster reached);
4. holding the directory's lock: the journal (an Optuna study, or the kind's identity file), the
   loop (controller and backend through ``nas.loop.Driver``), the outputs. A run that stops before
   its loop begins removes what it created (``_discard``): a journal without trials, its lock file,
   the directory if it made it.

A kind (``RunKind``) declares the rest: its settings, study, parts, loop and outputs. Kinds are
registered like plug-ins (entry-point group ``nas.runs``), so ``nas show``, ``nas doctor`` and the
directory check find the kind of a directory without naming one (``kind_of``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from nas import registry
from nas.backend import BackendSettings, EvaluationJob, make_backend, with_backend
from nas.controller import Controller
from nas.files import atomic_write_text
from nas.journal import Journal, Record, check_identity, check_recorded_settings
from nas.lock import LOCK_NAME, RunLock, StudyGuard
from nas.loop import FLUSH_SECONDS, Driver, ReplayMismatch, SearchStats
from nas.objective import Objective
from nas.settings import RunSettings
from nas.space import SearchSpace
from nas.storage import JOURNAL_NAME, is_debris, study_names

S = TypeVar("S", bound=RunSettings)
P = TypeVar("P")
Progress = Callable[[Record, bool, int], None]  # (record, replayed, finished evaluations in the journal)


@dataclass
class Loop:
    """What the driver runs for a kind: the trials' space and controller, the budget and the objective.

    ``annotate`` and ``inputs`` are the driver's hooks (``nas.loop.Driver``); ``on_record`` is the
    kind's own, called before the caller's progress display.
    """

    space: SearchSpace[Any]
    controller: Controller[Any]
    budget: int
    objective: Objective
    annotate: Callable[[Any, int], Mapping[str, Any]] | None = None
    inputs: Callable[[Any, int], Mapping[str, Any]] | None = None
    on_record: Callable[[Record, bool], None] | None = None
    mismatch_hint: str | None = None  # what to say when a replay meets another trial than the journal holds
    # How long told trials may wait to be written (``nas.loop.Driver``): 0 writes every tell, for a kind whose
    # ``on_record`` acts on files beside the journal or whose every trial is a training anyway.
    flush_seconds: float = FLUSH_SECONDS


@dataclass
class Run(Generic[S, P]):
    """A run in progress as its kind's hooks see it; ``state`` holds what ``begin`` keeps for ``finish``."""

    settings: S
    parts: P
    out: Path
    journal: Journal | None
    progress: Progress | None = None
    state: Any = None


class RunKind(Generic[S, P]):
    """A kind of run: what it declares, with the defaults of a kind that needs them not.

    ``study_name``: the study of its journal in ``OUT/study.db`` (None: no journal, and the identity
    is kept in ``identity_file``); ``outputs``: the files a finished run leaves; ``export_files``:
    what ``nas doctor --export`` copies beside the rescued journal; ``owns_other_studies``: a study
    of another name in a directory is this kind's (``nas search --study-name``).
    """

    name: ClassVar[str]
    command: ClassVar[str]
    settings_class: ClassVar[type[RunSettings]]
    study_name: ClassVar[str | None] = None
    identity_file: ClassVar[str | None] = None
    outputs: ClassVar[tuple[str, ...]] = ()
    export_files: ClassVar[tuple[str, ...]] = ()
    owns_other_studies: ClassVar[bool] = False

    def study(self, settings: S) -> str | None:
        """The study this run journals into."""
        return self.study_name

    def storage(self, settings: S) -> str | None:
        """An Optuna storage URL other directories may share (None: ``OUT/study.db``)."""
        return None

    def identity(self, settings: S) -> dict[str, Any]:
        """The settings a resumed run must share (torch-free: it is checked before anything is built)."""
        return settings.identity()

    def check(self, settings: S) -> None:
        """Torch-free checks of what the settings name (data folders, evaluator options)."""

    def build(self, settings: S) -> P:
        """Every part of the run, built and checked; nothing is written yet."""
        raise NotImplementedError

    def job(self, settings: S, parts: P) -> EvaluationJob | None:
        """The evaluation the backend runs (None: the kind has no trials to evaluate)."""
        return None

    def begin(self, run: Run[S, P]) -> Loop | None:
        """Under the lock, the journal open: the loop to run (None: no controller)."""
        return None

    def finish(self, run: Run[S, P], stats: SearchStats | None) -> Any:
        """Write the outputs; return the run's result."""
        raise NotImplementedError

    def space_of(self, recorded: Mapping[str, Any], where: Path) -> SearchSpace[Any]:
        """The space of the trials a run with these recorded settings journals (``nas doctor --export``)."""
        raise ValueError(f"{where}: a {self.command} run has no trials to rescue")

    def describe(self, out: Path) -> dict[str, Any] | None:
        """What ``nas show`` says of a run directory of this kind, finished or not (None: nothing)."""
        return None


def execute(kind: RunKind[S, P], settings: S, on_record: Progress | None = None) -> Any:
    """Run, or resume, the run of ``kind`` that ``settings`` describe; the kind's result (see the module docstring)."""
    settings.validate()
    out = Path(settings.out)
    check_run_directory(out)
    storage, study = kind.storage(settings), kind.study(settings)
    check_kind(out, kind)  # with a shared --storage too: OUT still receives this kind's outputs
    identity = kind.identity(settings)
    if storage is None:
        _check_recorded(out, kind, study, identity, settings)
    RunLock.check_free(out)  # a second writer is refused now, not after the parts are built
    backend = make_backend(settings) if isinstance(settings, BackendSettings) else None  # options checked now
    kind.check(settings)
    parts = kind.build(settings)
    job = kind.job(settings, parts)
    with with_backend(backend, job):  # checked before anything is written, closed however this ends
        created = not out.exists()
        fresh_journal = study is not None and storage is None and not (out / JOURNAL_NAME).exists()
        fresh_lock = not (out / LOCK_NAME).exists()
        out.mkdir(parents=True, exist_ok=True)
        lock, began = RunLock(out), False
        try:
            lock.acquire()  # one writer: a second run here is refused
        except ValueError:
            _discard(out, created, fresh_journal=False, fresh_lock=False)
            raise
        try:
            with contextlib.ExitStack() as stack:
                stack.callback(lock.release)
                journal = None
                if study is not None:
                    journal = open_journal(out, storage, study, identity, settings)
                    if storage is not None:  # a shared storage: other run directories may name the same study
                        stack.enter_context(StudyGuard(journal.study))
                else:
                    _record_identity(out / str(kind.identity_file), identity)
                run = Run(settings, parts, out, journal, on_record)
                loop = kind.begin(run)
                began = True
                return _run_loop(kind, run, loop, backend, job, on_record)
        except BaseException:
            if not began:  # stopped before its first trial: what this run created is its own debris
                _discard(out, created, fresh_journal, fresh_lock)
            raise


def _run_loop(
    kind: RunKind[S, P], run: Run[S, P], loop: Loop | None, backend: Any, job: EvaluationJob | None, on_record: Any
) -> Any:
    """The kind's loop through the ``Driver`` on ``backend`` (if it has one), then its outputs."""
    journal, stats = run.journal, None
    if loop is not None and journal is not None and backend is not None and job is not None:
        driver = Driver(
            loop.space,
            loop.controller,
            journal,
            loop.budget,
            loop.objective.reward,
            _progress(loop, journal, on_record),
            annotate=loop.annotate,
            inputs=loop.inputs,
            flush_seconds=loop.flush_seconds,
        )
        try:
            backend.run(driver, job)
        except ReplayMismatch as error:
            if loop.mismatch_hint is None:
                raise
            raise ValueError(f"{error}; {loop.mismatch_hint}") from None
        finally:  # trials told before an error or Ctrl-C are kept
            if journal.unwritten:
                driver.flush()
        stats = driver.finish()
    return kind.finish(run, stats)


def _discard(out: Path, created: bool, fresh_journal: bool, fresh_lock: bool) -> None:
    """What a run may leave when it stops before its first trial: nothing it created. Its journal if
    this run created it and it holds no trial, its lock file if this run created it, and ``out`` itself
    if this run created it and nothing else is in it now. Files that were there before are never touched."""
    if fresh_journal and not _holds_trials(out):
        for suffix in ("", "-journal", "-wal", "-shm"):
            (out / f"{JOURNAL_NAME}{suffix}").unlink(missing_ok=True)
    if fresh_lock:
        (out / LOCK_NAME).unlink(missing_ok=True)
    if created:
        with contextlib.suppress(OSError):
            out.rmdir()  # only if empty


def _holds_trials(out: Path) -> bool:
    """True unless ``out``'s journal is certainly without trials (absent, debris, or an empty trials table)."""
    path = out / JOURNAL_NAME
    if not path.is_file() or is_debris(path):
        return False
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return bool(connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
        finally:
            connection.close()
    except sqlite3.Error:
        return True  # unreadable: keep it


def _progress(loop: Loop, journal: Journal, progress: Progress | None) -> Callable[[Record, bool], None] | None:
    """The kind's ``on_record`` hook, then the caller's progress display with the journal's count."""
    if loop.on_record is None and progress is None:
        return None

    def recorded(record: Record, replayed: bool) -> None:
        if loop.on_record is not None:
            loop.on_record(record, replayed)
        if progress is not None:
            progress(record, replayed, len(journal))

    return recorded


def kinds() -> list[RunKind[Any, Any]]:
    """Every registered kind of run (ours and plug-ins')."""
    return [registry.runs.get(name) for name in registry.runs.names()]


def kind_of(out: Path) -> RunKind[Any, Any] | None:
    """The kind of run directory ``out`` holds, or None (not a directory, or no run's journal or identity file)."""
    if not out.is_dir():
        return None
    studies = set(study_names(out))  # a damaged journal is refused in one line, never opened
    every = kinds()
    for kind in every:
        if kind.study_name in studies or (kind.identity_file is not None and (out / kind.identity_file).is_file()):
            return kind
    return next((kind for kind in every if kind.owns_other_studies), None) if studies else None


def kind_of_study(study_name: str | None) -> RunKind[Any, Any] | None:
    """The kind of run whose journal holds the study ``study_name`` (None: no kind's)."""
    if study_name is None:
        return None
    every = kinds()
    return next((kind for kind in every if kind.study_name == study_name), None) or next(
        (kind for kind in every if kind.owns_other_studies), None
    )


def check_kind(out: Path, kind: RunKind[Any, Any]) -> None:
    """``ValueError`` if ``out`` holds another kind of run, or is a foreign directory a journal-less kind would fill."""
    found = kind_of(out)
    if found is not None and found.name != kind.name:
        raise ValueError(f"{out} holds another kind of run ({found.command}); use another --out")
    if found is None and out.is_dir():  # another kind's outputs whose journal or identity file is gone
        own = {*kind.outputs, kind.identity_file}
        for other in kinds():
            names = (*other.outputs, other.identity_file)
            left = [name for name in names if name and name not in own and (out / name).exists()]
            if other.name != kind.name and left:
                raise ValueError(f"{out} holds the outputs of a {other.command} run ({left[0]}); use another --out")
    if found is None and kind.study_name is None and out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not a {kind.command} directory; choose a new --out")


def _check_recorded(
    out: Path, kind: RunKind[Any, Any], study: str | None, identity: dict[str, Any], settings: RunSettings
) -> None:
    """The refusal a resumed run with other settings gets, read without writing anything."""
    if study is not None:
        check_recorded_settings(out, study, identity, settings.IDENTITY_DEFAULTS, settings.RENAMED, kind.command)
        return
    path = out / str(kind.identity_file)
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: unreadable; move the directory away to start over") from None
    check_identity(out, recorded, identity, settings.IDENTITY_DEFAULTS, settings.RENAMED, kind.command)


def _record_identity(path: Path, identity: dict[str, Any]) -> None:
    """A journal-less run's identity file, written when the run begins (its kind adds the results)."""
    if not path.exists():
        atomic_write_text(path, json.dumps({"settings": identity, "status": "started"}, indent=2))


def open_journal(
    out: Path, storage: str | None, study_name: str, identity: dict[str, Any], settings: RunSettings
) -> Journal:
    """The run's journal (a storage refused at the door, or other settings: ``ValueError``)."""
    return Journal(out, storage, study_name, identity, defaults=settings.IDENTITY_DEFAULTS, renamed=settings.RENAMED)


def check_run_directory(out: Path) -> None:
    """``ValueError`` unless ``out`` is, or can become, a writable run directory."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    if out.is_symlink() and not out.exists():  # a loop, or a link to nothing: mkdir would fail after the set-up
        raise ValueError(f"{out}: a symbolic link that leads to no directory (a loop, or a missing target)")
    try:
        existing = out if out.exists() else next((p for p in out.resolve().parents if p.exists()), None)
    except (RuntimeError, OSError) as error:  # a loop further up the path
        raise ValueError(f"{out}: cannot be resolved ({error})") from None
    if existing is None or not existing.is_dir():
        raise ValueError(f"{out}: no existing folder to create it in")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{existing}: not writable, so {out} cannot hold a run")
