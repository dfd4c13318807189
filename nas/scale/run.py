"""A compound-scaling run (``nas scale``): the grid over alpha, beta, gamma on a base network, then its family.

EfficientNet's two steps (arXiv 1905.11946 §3.3): (1) with phi = 1, a small grid search over
depth alpha, width beta and resolution gamma under alpha * beta^2 * gamma^2 ~= 2; (2) the best
(alpha, beta, gamma) scales the base by alpha^phi, beta^phi, gamma^phi for phi = 1 ... K.

Step 1 is a ``nas search`` in all but name: the ``compound-grid`` controller over a
``CompoundScalingSpace`` of the base, the proxy evaluator and datasets of ``nas search``, the
same journal (study ``nas-scale`` in ``OUT/study.db``), lock and replay-based resume; a resumed
run with other settings is refused. Step 2 is recomputed from the journal at the end of every
run (``--phi-max`` may change), into ``scaling.json``, ``scaling.md`` and ``scaling.png``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from nas import registry
from nas.backend import (
    BACKEND_TYPES,
    BackendSettings,
    EvaluationJob,
    check_backend_settings,
    make_backend,
    with_backend,
)
from nas.controller import Controller, make_controller
from nas.evaluator import Evaluator, accepts_repeat, accepts_report, make_evaluator, repeated
from nas.run import check_run_directory, open_journal
from nas.settings import MAX_REPEATS, MAX_SEED, MAX_THREADS, check_types
from nas.scale.family import SCALE_STUDY
from nas.spaces.scaling import CONSTRAINT_MODES, CompoundScalingSpace

if TYPE_CHECKING:
    from nas.api import Resolved
    from nas.journal import Record
    from nas.loop import SearchStats

TARGET = 2.0  # eq. 3: each unit of phi doubles the cost
MAX_PHI = 16
# Settings that define the grid and its evaluations; resuming with any of them changed is refused.
IDENTITY_FIELDS = ("base", "evaluator", "dataset", "epochs", "seed", "proxy", "repeats", "grid_step", "grid_high",
                   "tolerance", "constraint", "early_stop", "early_stop_options")
IDENTITY_DEFAULTS = {"early_stop": None, "early_stop_options": {}}  # runs written before they existed
_OPTIONAL_INT = (int, type(None))
_NUMBER = (float, int)
_TYPES: dict[str, Any] = {
    "out": str, "base": str, "evaluator": str, "dataset": str, "data_dir": (str, type(None)), "download": bool,
    "epochs": _OPTIONAL_INT, "seed": int, "threads": int, "proxy": dict, "repeats": int, "grid_step": _NUMBER,
    "grid_high": _NUMBER, "tolerance": _NUMBER, "constraint": str, "budget": _OPTIONAL_INT, "phi_max": int,
    **BACKEND_TYPES,
}


@dataclass
class ScaleSettings(BackendSettings):
    """Everything ``nas scale`` takes (CLI flags or a YAML ``--config``).

    ``base`` is a preset name, a genotype JSON file or a search run directory; its space must
    define ``scale`` (``nas.scaling``). ``budget`` caps the grid points evaluated (default: all of
    them, in the controller's seeded order); ``proxy`` holds the evaluator's options, as in ``nas search``;
    the execution settings (``backend``, ``workers``, ``early_stop``, ...) are ``nas search``'s.
    """

    out: str
    base: str = "efficientnet-b0"
    evaluator: str = "proxy"
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    epochs: int | None = None
    seed: int = 0
    threads: int = 1
    proxy: dict[str, Any] = field(default_factory=dict)
    repeats: int = 1
    grid_step: float = 0.05
    grid_high: float = 2.0
    tolerance: float = 0.1
    constraint: str = "formula"
    budget: int | None = None
    phi_max: int = 4

    def validate(self) -> None:
        """``ValueError`` naming the first bad setting."""
        check_types(self, _TYPES)
        if not self.out:
            raise ValueError("out: a run directory is required")
        for name, known in (("evaluator", registry.evaluators), ("dataset", registry.datasets)):
            if getattr(self, name) not in known:
                raise ValueError(f"{name}: unknown {known.kind} {getattr(self, name)!r}; valid: {known.names()}")
        if self.constraint not in CONSTRAINT_MODES:
            raise ValueError(f"constraint: {self.constraint!r} is not a constraint; valid: {list(CONSTRAINT_MODES)}")
        for name in ("budget", "epochs", "threads", "repeats", "phi_max"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        for name, high in (("threads", MAX_THREADS), ("repeats", MAX_REPEATS), ("phi_max", MAX_PHI)):
            if getattr(self, name) > high:
                raise ValueError(f"{name}: must be in [1, {high}], got {getattr(self, name)}")
        if not math.isfinite(self.tolerance) or self.tolerance < 0:
            raise ValueError(f"tolerance: must be a number >= 0, got {self.tolerance!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: must be in [0, 2**63 - 1], got {self.seed}")
        keys = [key for key in self.proxy if not isinstance(key, str)]
        if keys:
            raise ValueError(f"proxy: option names must be strings, got {keys[0]!r}")
        check_backend_settings(self)
        if self.early_stop is not None and self.repeats > 1:
            raise ValueError("early_stop: a point evaluated --repeats times has no single sequence of epochs to stop "
                             "early; use repeats 1")

    def identity(self, base: dict[str, Any]) -> dict[str, Any]:
        """The settings a resumed run must match; ``base`` is the base's genotype JSON (not the spec's text)."""
        values = {**asdict(self), "base": base}
        return {key: values[key] for key in IDENTITY_FIELDS}


def space_from_identity(identity: Any, where: Path) -> CompoundScalingSpace:
    """The points' space of a run from its recorded settings (``nas doctor --export`` of a scale run)."""
    from nas.api import resolve

    try:
        base = resolve(identity["base"])
        return CompoundScalingSpace(base.space, base.genotype, step=identity["grid_step"], high=identity["grid_high"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: the run's settings are unreadable; nothing to resume from") from None


@dataclass
class ScaleParts:
    """The base, the space of its points, the grid controller and the evaluator of one run."""

    base: Resolved
    space: CompoundScalingSpace
    controller: Controller[Any]
    evaluator: Evaluator[Any]

    @property
    def grid_points(self) -> int:
        return len(self.controller.points)  # type: ignore[attr-defined]


def build_parts(settings: ScaleSettings) -> ScaleParts:
    """Resolve the base and build the space, controller and evaluator (``ValueError`` for a mistake)."""
    from nas.api import resolve

    settings.validate()
    try:
        base = resolve(settings.base)
    except ValueError as error:
        raise ValueError(f"base: {error}") from None
    space = CompoundScalingSpace(base.space, base.genotype, step=settings.grid_step, high=settings.grid_high)
    make_backend(settings)  # its options are checked before the grid is computed
    controller = make_controller("compound-grid", space, seed=settings.seed, budget=settings.budget,
                                 tolerance=settings.tolerance, constraint=settings.constraint, target=TARGET)
    evaluator = _build_evaluator(settings, space)
    return ScaleParts(base, space, controller, evaluator)


def _build_evaluator(settings: ScaleSettings, space: CompoundScalingSpace) -> Evaluator[Any]:
    options = dict(settings.proxy)
    if settings.epochs is not None:
        options["epochs"] = settings.epochs
    evaluator = make_evaluator(settings.evaluator, space, seed=settings.seed, dataset=settings.dataset,
                               data_dir=settings.data_dir, download=settings.download, **options)
    if settings.repeats > 1 and not accepts_repeat(evaluator.evaluate):
        raise ValueError(f"repeats: evaluator {settings.evaluator!r} cannot evaluate a point again with independent "
                         "seeds (its evaluate() takes no 'repeat')")
    return evaluator


def scale_evaluation(settings: ScaleSettings, space: CompoundScalingSpace,
                     evaluator: Evaluator[Any] | None = None) -> Callable[..., dict[str, Any]]:
    """The evaluation of one grid point: the proxy's metrics and the point's own (built in a Ray worker, say)."""
    if evaluator is None:
        evaluator = _build_evaluator(settings, space)
        evaluator.prepare()
    evaluate_proxy = repeated(evaluator.evaluate, settings.repeats)

    def evaluate(point: Any, trial_id: int, report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        own = space.point_metrics(point)
        if report is None:
            return {**evaluate_proxy(point, trial_id), **own}
        return {**evaluate_proxy(point, trial_id, report=lambda metrics: report({**metrics, **own})), **own}

    return evaluate


def run_scale(settings: ScaleSettings, parts: ScaleParts | None = None,
              on_record: Callable[[Record, bool, int], None] | None = None) -> tuple[dict[str, Any], SearchStats]:
    """Run (or resume) the grid of ``settings``, then write the family; return it and the grid's timing."""
    from nas.storage import study_names
    from nas.lock import RunLock
    from nas.scale.family import build_family, write_family
    from nas.loop import Driver, accuracy_reward

    parts = parts or build_parts(settings)
    backend = make_backend(settings)
    out = Path(settings.out)
    check_run_directory(out)
    others = [name for name in study_names(out) if name != SCALE_STUDY]
    if others:
        raise ValueError(f"{out} holds another kind of run (study {others[0]!r}); use another --out")
    parts.evaluator.prepare()  # data and proxy mistakes fail here, before a run directory or a trial exists
    prepare_repeats = getattr(parts.evaluator, "prepare_repeats", None)
    if callable(prepare_repeats):
        prepare_repeats(settings.repeats)
    prepare_inputs = getattr(parts.evaluator, "prepare_inputs", None)
    if callable(prepare_inputs):  # the images at every gamma of the grid, loaded and checked before the first trial
        by_gamma = {point["gamma"]: point for point in parts.controller.points}  # type: ignore[attr-defined]
        prepare_inputs([parts.space.decode(point) for point in by_gamma.values()], settings.repeats)
    job = EvaluationJob(build=functools.partial(scale_evaluation, settings, parts.space), space=parts.space,
                        reward=accuracy_reward, threads=settings.threads, epochs=getattr(parts.evaluator, "epochs", None),
                        reports=settings.repeats == 1 and accepts_report(parts.evaluator.evaluate),
                        prebuilt=scale_evaluation(settings, parts.space, parts.evaluator))
    from nas.journal import check_recorded_settings

    check_recorded_settings(out, SCALE_STUDY, settings.identity(parts.base.to_json()), IDENTITY_DEFAULTS)
    with with_backend(backend, job):  # checked before anything is written, closed however this ends
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        with RunLock(out):
            journal = open_journal(out, created, None, SCALE_STUDY, settings.identity(parts.base.to_json()),
                                   IDENTITY_DEFAULTS)
            report = None if on_record is None else (lambda record, replayed: on_record(record, replayed, len(journal)))
            driver = Driver(parts.space, parts.controller, journal, settings.budget or parts.grid_points, on_record=report)
            backend.run(driver, job)
            stats = driver.finish()
            family = build_family(settings, parts, journal)
            write_family(out, family)
        return family, stats
