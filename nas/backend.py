"""Execution backends: who runs the evaluations of a search, and how many at once.

The driver (``nas.loop.Driver``: controller, journal, resume) always runs in the calling
process; a backend only executes evaluations. ``local`` (here) evaluates one trial at a time in
this process; ``ray`` (``backends/ray_tune.py``) runs up to ``workers`` at once on Ray Tune, on
a local Ray started on demand or on a cluster by ``address``, with optional early stopping
(ASHA). Backends are registered like every other plug-in (entry-point group ``nas.backends``):
a factory taking the options of ``BackendSettings`` and giving an object with
``check(job)`` (refuse what it cannot run, before anything is written; it may connect to a
cluster), ``run(driver, job)`` and ``close()`` (let go of what ``check`` started; ``run`` does
it too). The run commands call them as ``with_backend`` does.

An evaluation travels to a worker as an ``EvaluationJob``: a picklable recipe (a module-level
function and its settings) that the worker builds once and reuses for every trial it runs, so
data are loaded once per worker, not per trial. Every evaluation's metrics are a function of
``(seed, trial id, genotype)`` (``nas.evaluator``), so where it ran does not change them.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from nas import registry
from nas.loop import run_sequential

if TYPE_CHECKING:
    from nas.loop import Driver, Reward
    from nas.space import SearchSpace

# An evaluation: ``evaluate(genotype, trial_id, report=None) -> metrics``. ``report(metrics)``, if the
# evaluation takes it, is called after every epoch but the last with the metrics so far (``accuracy``
# and ``epochs`` among them): early stopping decides on those.
Evaluate = Callable[..., Mapping[str, Any]]
EARLY_STOPPERS: tuple[str, ...] = ("asha",)
MAX_WORKERS = 10_000
MAX_CPUS_PER_TRIAL = 1024  # the threads of one evaluation, as --threads


@dataclass
class EvaluationJob:
    """How to evaluate a trial, as data a worker process can rebuild.

    ``build()`` returns the evaluation (it loads data, so it runs once per process);
    ``space`` decodes the choices a worker is sent; ``threads`` is the intra-op thread count of
    one evaluation; ``epochs`` the most epochs an evaluation reports (early stopping's last rung),
    ``reports`` whether the evaluation takes ``report``; ``reward`` turns (intermediate) metrics
    into the number early stopping compares. ``prebuilt`` is the evaluation the driver already
    built for its own checks; the local backend uses it, and it is never pickled.
    """

    build: Callable[[], Evaluate]
    space: SearchSpace[Any]
    reward: Reward
    threads: int = 1
    epochs: int | None = None
    reports: bool = False
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    prebuilt: Evaluate | None = field(default=None, repr=False, compare=False)

    def evaluation(self) -> Evaluate:
        """The evaluation, built on first use in this process."""
        if self.prebuilt is None:
            self.prebuilt = self.build()
        return self.prebuilt

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "prebuilt": None}


@runtime_checkable
class Backend(Protocol):
    """What every backend implements (see the module docstring)."""

    name: str
    workers: int

    def check(self, job: EvaluationJob) -> None: ...

    def run(self, driver: Driver, job: EvaluationJob) -> None: ...

    def close(self) -> None: ...


@dataclass(kw_only=True)
class BackendSettings:
    """The execution settings every run command shares (CLI flags or YAML keys of the same names).

    ``early_stop`` / ``early_stop_options`` change what is recorded, so they belong to a run's
    identity (the commands add them); the others only say where and how fast it runs, and a run
    may be resumed with another backend.
    """

    backend: str = "local"
    workers: int = 1
    address: str | None = None
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.0
    early_stop: str | None = None
    early_stop_options: dict[str, Any] = field(default_factory=dict)
    backend_options: dict[str, Any] = field(default_factory=dict)


BACKEND_TYPES: dict[str, Any] = {
    "backend": str,
    "workers": int,
    "address": (str, type(None)),
    "cpus_per_trial": int,
    "gpus_per_trial": (float, int),
    "early_stop": (str, type(None)),
    "early_stop_options": dict,
    "backend_options": dict,
}


def check_backend_settings(settings: Any) -> None:
    """``ValueError`` naming the first bad execution setting of ``settings`` (types are checked by the caller)."""
    registry.backends.check("backend", settings.backend)
    if not 1 <= settings.workers <= MAX_WORKERS:
        raise ValueError(f"workers: must be in [1, {MAX_WORKERS}], got {settings.workers}")
    if not 1 <= settings.cpus_per_trial <= MAX_CPUS_PER_TRIAL:
        raise ValueError(
            f"cpus_per_trial: must be a positive integer, at most {MAX_CPUS_PER_TRIAL} (it is also the "
            f"evaluation's thread count), got {settings.cpus_per_trial}"
        )
    if not (math.isfinite(settings.gpus_per_trial) and settings.gpus_per_trial >= 0):
        raise ValueError(f"gpus_per_trial: must be a number >= 0, got {settings.gpus_per_trial!r}")
    if settings.early_stop is not None and settings.early_stop not in EARLY_STOPPERS:
        raise ValueError(f"early_stop: {settings.early_stop!r} is not an early stopper; valid: {list(EARLY_STOPPERS)}")
    if settings.early_stop is None and settings.early_stop_options:
        raise ValueError("early_stop_options: they set early stopping; add --early-stop asha")
    for name in ("early_stop_options", "backend_options"):
        keys = [key for key in getattr(settings, name) if not isinstance(key, str)]
        if keys:
            raise ValueError(f"{name}: option names must be strings, got {keys[0]!r}")


@contextlib.contextmanager
def with_backend(backend: Backend | None, job: EvaluationJob | None) -> Iterator[Backend | None]:
    """``backend.check(job)`` now, ``backend.close()`` however the block ends (a refused journal, say);
    nothing for a run without evaluations to run."""
    if backend is None or job is None:
        yield backend
        return
    backend.check(job)
    try:
        yield backend
    finally:
        backend.close()


def make_backend(settings: Any) -> Backend:
    """The registered backend named by ``settings.backend``, built with its execution settings."""
    factory = registry.backends.get(settings.backend)
    options = {
        "workers": settings.workers,
        "address": settings.address,
        "cpus_per_trial": settings.cpus_per_trial,
        "gpus_per_trial": settings.gpus_per_trial,
        "early_stop": settings.early_stop,
        "early_stop_options": dict(settings.early_stop_options),
        **settings.backend_options,
    }
    unknown, valid = registry.unknown_options(factory, options, ())
    if unknown:
        raise ValueError(
            f"backend_options: {unknown[0]!r} is not an option of backend {settings.backend!r}; "
            f"valid: {[v for v in valid if v not in options or v in settings.backend_options]}"
        )
    try:
        return factory(**options)
    except TypeError as error:
        raise ValueError(f"backend {settings.backend!r}: {error}") from None


class LocalBackend:
    """One evaluation at a time, in this process, with ``job.threads`` intra-op threads (the default)."""

    name = "local"

    def __init__(
        self,
        workers: int = 1,
        address: str | None = None,
        cpus_per_trial: int = 1,
        gpus_per_trial: float = 0.0,
        early_stop: str | None = None,
        early_stop_options: Mapping[str, Any] | None = None,
    ) -> None:
        for flag, given in (
            ("--workers", workers != 1),
            ("--address", address is not None),
            ("--cpus-per-trial", cpus_per_trial != 1),
            ("--gpus-per-trial", gpus_per_trial != 0),
            ("--early-stop", early_stop is not None),
        ):
            if given:
                raise ValueError(
                    f"{flag.lstrip('-').replace('-', '_')}: the local backend runs one evaluation at a "
                    f"time in this process; {flag} needs --backend ray"
                )
        self.workers = 1

    def check(self, job: EvaluationJob) -> None:
        """Nothing to refuse: the local backend runs any evaluation."""

    def close(self) -> None:
        """Nothing to let go of."""

    def run(self, driver: Driver, job: EvaluationJob) -> None:
        began = time.perf_counter()
        evaluate = job.evaluation()
        with intra_op_threads(job.threads):
            driver.stats.startup_seconds += time.perf_counter() - began  # torch's import, the first time
            run_sequential(driver, evaluate)


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the evaluations with ``count`` intra-op threads, restoring the caller's setting after."""
    import torch  # lazy: settings are validated with the backend, without torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
