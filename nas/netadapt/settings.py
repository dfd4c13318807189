"""``nas netadapt``'s settings: every flag and config key, checked without torch, and the run's identity."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from nas import registry
from nas.api import Resolved, resolve
from nas.backend import BACKEND_TYPES, BackendSettings, check_backend_settings
from nas.settings import MAX_THREADS, RunSettings, check_counts, check_option_names, check_registered, check_seed
from nas.spaces.widths import DEFAULT_GRANULARITY

SELECTIONS = ("accuracy", "efficiency")
LATENCY_SOURCES = ("measured", "table")
_NUMBER_OR_NONE = (float, int, type(None))
_INT_OR_NONE = (int, type(None))


@dataclass
class NetAdaptSettings(BackendSettings, RunSettings):
    """Everything ``nas netadapt`` takes (CLI flags or a YAML ``--config``); see ``nas.netadapt.run``.

    Exactly one of ``latency_ratio`` (the budget as a fraction of the starting network's predicted
    latency) and ``latency_target_ms`` is given. ``reduction`` / ``decay``: the schedule (each
    iteration removes ``reduction * decay^k`` of the starting latency); ``selection``: how the
    proposal of an iteration is chosen (``controllers.netadapt``). ``latency_source``: ``measured``
    (the default) takes the start's latency, the target and the stopping rule from end-to-end
    measurements and calibrates the table's predictions by them; ``table`` uses the lookup table's
    predictions alone (a run that replays exactly on another day). ``latency`` (config file only)
    holds options of the measurement harness (``min_repetitions``, ``max_seconds``, ``rounds``, ...).
    Execution (``backend``, ``workers``, ...) is ``nas search``'s: the proposals of an iteration are
    fine-tuned in parallel; there are no epochs to stop early.
    """

    TYPES: ClassVar[dict[str, Any]] = {
        "out": str,
        "start": str,
        "latency_ratio": _NUMBER_OR_NONE,
        "latency_target_ms": _NUMBER_OR_NONE,
        "dataset": str,
        "data_dir": (str, type(None)),
        "download": bool,
        "weights": (str, type(None)),
        "resolution": _INT_OR_NONE,
        "train_resolution": _INT_OR_NONE,
        "short_term_steps": int,
        "long_term_steps": int,
        "initial_steps": int,
        "reduction": (float, int),
        "decay": (float, int),
        "selection": str,
        "latency_source": str,
        "batch_size": int,
        "learning_rate": (float, int),
        "initial_learning_rate": (float, int),
        "max_iterations": int,
        "granularity": int,
        "seed": int,
        "threads": int,
        "latency_threads": int,
        "table": (str, type(None)),
        "latency": dict,
        **BACKEND_TYPES,
    }
    # Settings that define the run's trials; resuming with any of them changed is refused. ``long_term_steps``
    # only concerns the end, and data location, threads of training and the table file may change.
    IDENTITY: ClassVar[tuple[str, ...]] = (
        "start",
        "latency_ratio",
        "latency_target_ms",
        "dataset",
        "weights",
        "resolution",
        "train_resolution",
        "short_term_steps",
        "initial_steps",
        "reduction",
        "decay",
        "selection",
        "latency_source",
        "batch_size",
        "learning_rate",
        "initial_learning_rate",
        "max_iterations",
        "granularity",
        "seed",
        "latency_threads",
        "latency",
    )

    out: str
    start: str = "mobilenetv3-small"
    latency_ratio: float | None = None
    latency_target_ms: float | None = None
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    weights: str | None = None
    resolution: int | None = None
    train_resolution: int | None = None
    short_term_steps: int = 20
    long_term_steps: int = 200
    initial_steps: int = 300
    reduction: float = 0.1
    decay: float = 1.0
    selection: str = "accuracy"
    latency_source: str = "measured"
    batch_size: int = 64
    learning_rate: float = 0.01
    initial_learning_rate: float = 0.1
    max_iterations: int = 100
    granularity: int = DEFAULT_GRANULARITY
    seed: int = 0
    threads: int = 1
    latency_threads: int = 1
    table: str | None = None
    latency: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """``ValueError`` naming the first bad setting (the schedule's too: a bad one costs no training)."""
        if (self.latency_ratio is None) == (self.latency_target_ms is None):
            raise ValueError("latency budget: give exactly one of --latency-ratio and --latency-target-ms")
        if self.latency_ratio is not None and not 0 < self.latency_ratio < 1:
            raise ValueError(f"latency_ratio: must be in (0, 1), got {self.latency_ratio!r}")
        if self.latency_target_ms is not None and not (
            math.isfinite(self.latency_target_ms) and self.latency_target_ms > 0
        ):
            raise ValueError(f"latency_target_ms: must be a positive number, got {self.latency_target_ms!r}")
        check_registered(self, {"dataset": registry.datasets})
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection: {self.selection!r} is not a selection; valid: {list(SELECTIONS)}")
        if self.latency_source not in LATENCY_SOURCES:
            raise ValueError(
                f"latency_source: {self.latency_source!r} is not a latency source; valid: {list(LATENCY_SOURCES)}"
            )
        for name in ("reduction", "decay"):  # NetAdapt's schedule (arXiv 1804.03230 §3.2)
            if not (math.isfinite(getattr(self, name)) and 0 < getattr(self, name) <= 1):
                raise ValueError(f"{name}: must be a number in (0, 1], got {getattr(self, name)!r}")
        check_counts(self, ("short_term_steps", "long_term_steps", "initial_steps"), low=0)
        check_counts(self, ("batch_size", "max_iterations", "granularity", "threads", "latency_threads"))
        check_counts(self, ("threads", "latency_threads"), high=MAX_THREADS)
        for name in ("learning_rate", "initial_learning_rate"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name}: must be a positive number, got {getattr(self, name)!r}")
        if self.weights is None and self.initial_steps == 0:
            raise ValueError("initial_steps: without --weights the starting network is trained first; give it steps")
        check_seed(self.seed)
        check_option_names(self, ("latency",))
        check_backend_settings(self)
        if self.early_stop is not None:
            raise ValueError("early_stop: NetAdapt's short-term fine-tunes have no epochs to stop early")

    def resolve_start(self) -> Resolved:
        try:
            return resolve(self.start)
        except ValueError as error:
            raise ValueError(f"from: {error}") from None

    def weights_digest(self) -> str | None:
        """The SHA-256 of the given weights file (a resumed run must start from the same weights)."""
        if self.weights is None:
            return None
        try:
            return hashlib.sha256(Path(self.weights).read_bytes()).hexdigest()
        except FileNotFoundError:
            raise ValueError(f"weights: {self.weights}: no such file") from None
        except OSError as error:
            raise ValueError(f"weights: {self.weights}: {error.strerror}") from None

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must match: the start's genotype JSON and the weights' SHA-256, not paths."""
        values = {**asdict(self), "start": self.resolve_start().to_json(), "weights": self.weights_digest()}
        return {key: values[key] for key in self.IDENTITY}
