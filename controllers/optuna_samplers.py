"""Which of Optuna's samplers can run as a controller, and the small pieces the controller shares with them.

A sampler runs as a controller if it is concrete, takes a ``seed``, and can search categorical
decisions (``REFUSED`` says why the others cannot). ``quiet_optuna`` silences the lines a fresh
in-memory study logs; ``plain`` turns a sampler's state into what a controller state may hold.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import optuna

from nas.errors import quoted

DEFAULT_SAMPLER = "TPESampler"
REFUSED = {
    "CmaEsSampler": "it samples numeric parameters only, and every decision is categorical: it would be "
    "random search (use RandomSampler for that)",
    "QMCSampler": "it samples numeric parameters only, and every decision is categorical: it would be "
    "random search (use RandomSampler for that)",
    "GridSampler": "it needs the whole grid as its search_space (use BruteForceSampler to enumerate)",
    "PartialFixedSampler": "it wraps another sampler; fix a decision in the space instead",
}
# What ``Study.stop`` raises outside ``study.optimize`` (BruteForceSampler's ``after_trial`` calls it).
_STOP_OUTSIDE_OPTIMIZE = "`Study.stop` is supposed to be invoked inside an objective function or a callback"


def sampler_names() -> list[str]:
    """The ``optuna.samplers`` classes this controller runs: concrete, seeded, and not in ``REFUSED``."""
    return sorted(name for name in optuna.samplers.__all__ if name not in REFUSED and _seeded_class(name))


def _seeded_class(name: str) -> type[optuna.samplers.BaseSampler] | None:
    cls = getattr(optuna.samplers, name, None)
    if (
        not isinstance(cls, type)
        or not issubclass(cls, optuna.samplers.BaseSampler)
        or inspect.isabstract(cls)
        or "seed" not in inspect.signature(cls).parameters
    ):
        return None
    return cls


def check_sampler(name: object) -> type[optuna.samplers.BaseSampler]:
    """The sampler class called ``name``; ``ValueError`` naming it and the valid ones otherwise."""
    if not isinstance(name, str):
        raise ValueError(
            f"sampler: expected the name of an Optuna sampler, got {quoted(name)}; valid: {sampler_names()}"
        )
    cls = _seeded_class(name) if name in optuna.samplers.__all__ else None
    if cls is None or name in REFUSED:
        why = (
            f"{name} cannot search the engine's decisions: {REFUSED[name]}"
            if name in REFUSED
            else f"unknown Optuna sampler {name!r}"
        )
        raise ValueError(f"{why}; valid: {sampler_names()}")
    return cls


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Drop the "new study created in memory" INFO line and experimental warnings, here only."""
    study_logger = logging.getLogger("optuna.storages._in_memory")

    def quiet(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING

    study_logger.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        study_logger.removeFilter(quiet)


def is_stop_outside_optimize(error: BaseException) -> bool:
    return type(error) is RuntimeError and str(error).startswith(_STOP_OUTSIDE_OPTIMIZE)


def plain(value: Any, path: str) -> Any:
    """``value`` as plain data (tuples become lists, as Optuna's RDB storages return them)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        return {key: plain(item, f"{path}[{key!r}]") for key, item in value.items()}
    raise ValueError(
        f"{path}: must be plain data (None, bool, int, float, str, lists and dicts of them), got {type(value).__name__}"
    )
