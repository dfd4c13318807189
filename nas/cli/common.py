"""What the run commands share: settings from flags over a YAML file, the execution flags, progress."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nas import registry
from nas.cli.config import read_config
from nas.errors import MAX_QUOTED
from nas.journal import Record
from nas.settings import RunSettings

EXECUTION_FLAGS = ("backend", "workers", "address", "cpus_per_trial", "gpus_per_trial", "early_stop")
# Config keys that were renamed: old -> new (read with a one-line notice).
RENAMED_KEYS = {"proxy": "evaluator_options"}


def listed(known: registry.Registry, default: str) -> str:
    """Help text naming what is registered now (built-ins and installed plug-ins)."""
    return f"one of: {', '.join(known.names())} (default {default})"


def add_execution_flags(parser: argparse.ArgumentParser, early_stop: bool = True) -> None:
    """The flags of ``nas.backend.BackendSettings``, shared by the commands that run evaluations."""
    parser.add_argument(
        "--backend", help=listed(registry.backends, "local") + "; ray runs --workers evaluations at once"
    )
    parser.add_argument("--workers", type=int, help="evaluations at once (ray; default 1)")
    parser.add_argument("--address", help="an existing Ray cluster (host:port, or auto); default: start a local Ray")
    parser.add_argument(
        "--cpus-per-trial", type=int, help="CPUs, and intra-op threads, of one evaluation (ray; default 1)"
    )
    parser.add_argument(
        "--gpus-per-trial", type=float, help="GPUs of one evaluation, may be fractional (ray; default 0)"
    )
    if early_stop:
        parser.add_argument(
            "--early-stop",
            choices=("asha",),
            help="stop poor candidates early with Ray Tune's ASHA on the per-epoch validation accuracy (ray)",
        )


def load_config(path: str, settings_class: type[RunSettings]) -> dict[str, Any]:
    """Read a YAML file of ``settings_class`` fields; unknown keys and malformed, oversized or ambiguous
    files are ``ValueError``s (``nas.cli.config.read_config``).

    A key that was renamed (``proxy``, now ``evaluator_options``) is read under its new name, with a
    one-line notice on stderr.
    """
    data = read_config(path)  # bounded: size, expanded values, depth, duplicate keys (``nas.cli.config``)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings at the top level")
    valid = {f.name for f in dataclasses.fields(settings_class)}  # type: ignore[arg-type]
    for old, new in RENAMED_KEYS.items():
        if old in data and new in valid:
            if new in data:
                raise ValueError(f"{path}: both {old!r} and its new name {new!r}; keep {new!r}")
            print(f"nas: notice: {path}: the key {old!r} is now {new!r}; read as {new!r}", file=sys.stderr)
            data[new] = data.pop(old)
    unknown = sorted((key for key in data if key not in valid), key=str)
    if unknown:
        raise ValueError(f"{path}: unknown setting {str(unknown[0])[:MAX_QUOTED]!r}; valid: {sorted(valid)}")
    return data


def settings_from_args(args: argparse.Namespace, settings_class: type[RunSettings], flags: tuple[str, ...]) -> Any:
    """``settings_class`` from the config file, overridden by the ``flags`` given, validated."""
    values: dict[str, Any] = load_config(args.config, settings_class) if args.config else {}
    for name in flags + ("out",):
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = flag
    if not values.get("out"):
        raise ValueError("--out: a run directory is required (flag or config key 'out')")
    settings = settings_class(**values)
    settings.validate()
    return settings


class TrialProgress:
    """A rich progress bar on a terminal; one line per trial otherwise (logs, CI).

    ``budget`` None: the total is known later, once the run holds its directory (``begin``).
    """

    def __init__(self, budget: int | None, enabled: bool | None) -> None:
        self.budget, self.done, self.best = budget or 0, 0, None
        self.interactive = sys.stderr.isatty() if enabled is None else enabled
        self.bar: Any = None

    def __enter__(self) -> TrialProgress:
        if self.budget:
            self.begin(self.budget)
        return self

    def begin(self, total: int) -> None:
        """Start showing progress towards ``total`` finished evaluations."""
        self.budget = total
        if self.interactive and self.bar is None:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("best {task.fields[best]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("search", total=total, completed=0, best="-")
            # The candidate being evaluated, shown while it tells its progress (``nas.progress``).
            self.candidate = self.bar.add_task("candidate", total=1.0, completed=0, best="", visible=False)

    def candidate_progress(self, text: str, fraction: float) -> None:
        """Show how far the candidate being evaluated is (a ``nas.progress`` listener)."""
        if self.bar is not None:
            self.bar.update(self.candidate, description=text, completed=fraction, visible=True)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, record: Record, replayed: bool, finished: int) -> None:
        """Show the finished evaluations in the journal and the best reward told so far."""
        self.done = finished
        if not record.result.failed and (self.best is None or record.result.reward > self.best):
            self.best = record.result.reward
        best = "-" if self.best is None else f"{self.best:.4f}"
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, best=best)
            self.bar.update(self.candidate, completed=0, visible=False)
        elif not replayed:
            outcome = (
                f"failed ({record.result.error})" if record.result.failed else f"reward {record.result.reward:.4f}"
            )
            print(
                f"trial {record.trial_id}: {outcome}; {self.done}/{self.budget} done, best {best}",
                file=sys.stderr,
                flush=True,
            )
