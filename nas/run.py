"""The run directory: checked before a run is built, its journal opened without leaving debris."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from nas.journal import Journal


def open_journal(out: Path, created: bool, storage: str | None, study_name: str, identity: dict[str, Any],
                 defaults: dict[str, Any] | None = None) -> Journal:
    """The run's journal; if it is refused (a storage refused at the door, other settings) and ``out``
    was created for this run, no empty run directory is left behind."""
    from nas.journal import Journal

    try:
        return Journal(out, storage, study_name, identity, defaults=defaults)
    except ValueError:
        if created:
            (out / ".lock").unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def check_run_directory(out: Path) -> None:
    """``ValueError`` unless ``out`` is, or can become, a writable run directory."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    existing = out if out.exists() else next((p for p in out.resolve().parents if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise ValueError(f"{out}: no existing folder to create it in")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{existing}: not writable, so {out} cannot hold a search")
