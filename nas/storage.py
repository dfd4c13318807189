"""Where a journal lives: an ``--storage`` URL checked before anything is created, and a run
directory's ``study.db`` checked before Optuna opens it.

A file that is not an intact Optuna SQLite database stops the command (exit 2) with the damage
named, and nothing is written (``check_journal_file``); ``nas doctor`` reports and rescues it
(``nas.doctor``). One exception: a journal that never held a trial is a run's own debris, not a
user's data (``is_debris``: empty, or Optuna's schema half created when the disk filled or the
process died), so it reads as no journal and the next run replaces it. Importing this module
imports no torch: settings are validated with it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import optuna
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from nas.errors import first_line

JOURNAL_NAME = "study.db"
SQLITE_HEADER = b"SQLite format 3\x00"
OPTUNA_TABLES = {"studies", "trials", "trial_values", "trial_params", "study_user_attributes"}
# Every table Optuna's RDB storage creates: a database holding any other table is not a run's debris.
OPTUNA_SCHEMA = OPTUNA_TABLES | {
    "alembic_version",
    "version_info",
    "study_directions",
    "study_system_attributes",
    "trial_user_attributes",
    "trial_system_attributes",
    "trial_intermediate_values",
    "trial_heartbeats",
}
RUN_OUTPUTS = ("controller.pt", "best.json", "report.md")


def check_storage(url: str) -> None:
    """``ValueError`` (one line) unless ``url`` is an Optuna RDB URL whose database can be reached.

    Checked before a search creates anything: an SQLite file's folder must exist and be writable;
    another database must accept a connection.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"storage: expected an RDB URL such as sqlite:///runs/x.db, got {url!r}")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(
            f"storage: {url!r} is not a database URL; e.g. sqlite:///runs/x.db or postgresql://user@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise ValueError(f"storage: {url!r} names no database file; an in-memory journal cannot resume")
        folder = Path(database).resolve().parent
        if not folder.is_dir():
            raise ValueError(f"storage: {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise ValueError(f"storage: {folder} is not writable")
        return
    try:
        engine = create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except (SQLAlchemyError, ImportError, OSError) as error:
        raise ValueError(
            f"storage {parsed.render_as_string(hide_password=True)}: cannot connect "
            f"({first_line(error, with_type=True)})"
        ) from None


def damage(path: Path) -> str | None:
    """Why ``path`` is not an intact Optuna journal, or None if it is."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        return f"cannot be read: {error.strerror}"
    if header != SQLITE_HEADER:
        return "not an SQLite database (its first bytes are not the SQLite header)"
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            connection.close()
    except sqlite3.Error as error:
        return f"SQLite cannot read it: {error}"
    if check != "ok":
        return f"SQLite's integrity check fails: {check}"
    missing = sorted(OPTUNA_TABLES - tables)
    if missing:
        return f"an SQLite database without Optuna's tables ({', '.join(missing)})"
    return None


def is_debris(path: Path) -> bool:
    """True if ``path`` is a journal a run began and never finished creating: an empty file, or an
    SQLite database holding only Optuna's tables, not all of them, and no trial (a full disk at the
    first write, a kill while Optuna created its schema). Anything else is left to ``damage``."""
    try:
        if path.stat().st_size == 0:
            return True
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables <= OPTUNA_SCHEMA or tables >= OPTUNA_TABLES:
                return False
            return "trials" not in tables or connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 0
        finally:
            connection.close()
    except (OSError, sqlite3.Error):
        return False


def discard_debris(out: Path) -> None:
    """Remove ``out``'s journal if it is a run's debris (``is_debris``), with SQLite's side files."""
    path = out / JOURNAL_NAME
    if path.is_file() and is_debris(path):
        for suffix in ("", "-journal", "-wal", "-shm"):
            (out / f"{JOURNAL_NAME}{suffix}").unlink(missing_ok=True)


def check_journal_file(out: Path) -> None:
    """``ValueError`` (one line, exit 2) unless ``out`` may be searched into with its default journal."""
    path = out / JOURNAL_NAME
    if not path.exists():
        outputs = [name for name in RUN_OUTPUTS if (out / name).exists()]
        if outputs:
            raise ValueError(
                f"{out} holds the outputs of a search ({', '.join(outputs)}) but no {JOURNAL_NAME}; "
                "refusing to start a new journal over them: use another --out"
            )
        return
    reason = None if is_debris(path) else damage(path)
    if reason is not None:
        raise ValueError(
            f"{path} is damaged ({reason}); it was left as it is: `nas doctor {out}` reports what "
            f"is readable and `nas doctor {out} --export NEW_DIR` rescues it"
        )


def study_names(out: Path) -> list[str]:
    """The studies in the journal of run directory ``out`` (none without ``study.db``)."""
    if not (out / JOURNAL_NAME).is_file() or is_debris(out / JOURNAL_NAME):
        return []
    check_journal_file(out)  # a damaged journal is reported in one line, never opened by Optuna
    return optuna.get_all_study_names(f"sqlite:///{(out / JOURNAL_NAME).resolve()}")
