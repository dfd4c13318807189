"""A compound-scaling run (``nas scale``): the grid over alpha, beta, gamma on a base network, then its family.

EfficientNet's two steps (arXiv 1905.11946 §3.3): (1) with phi = 1, a small grid search over
depth alpha, width beta and resolution gamma under alpha * beta^2 * gamma^2 ~= 2; (2) the best
(alpha, beta, gamma) scales the base by alpha^phi, beta^phi, gamma^phi for phi = 1 ... K.

Step 1 is a run like a search (``nas.run``): the ``compound-grid`` controller over a
``CompoundScalingSpace`` of the base, the evaluators and datasets of ``nas search``, the same
journal (study ``nas-scale`` in ``OUT/study.db``), lock and replay-based resume; a resumed run
with other settings is refused. Step 2 is recomputed from the journal at the end of every run
(``--phi-max`` may change), into ``scaling.json``, ``scaling.md`` and ``scaling.png``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from nas.api import Resolved, resolve
from nas.backend import BACKEND_TYPES, BackendSettings, EvaluationJob, check_backend_settings
from nas.controller import Controller, make_controller
from nas.evaluator import Evaluator, check_evaluator_options, repeated
from nas.loop import SearchStats
from nas.objective import MetricObjective
from nas.run import Loop, Run, RunKind, execute
from nas.scale.family import FAMILY_FILE, SCALE_STUDY, build_family, read_family, write_family
from nas.settings import MAX_REPEATS, EvaluationSettings, RunSettings, check_counts, check_data
from nas.spaces.scaling import CONSTRAINT_MODES, CompoundScalingSpace

TARGET = 2.0  # eq. 3: each unit of phi doubles the cost
MAX_PHI = 16
ACCURACY = MetricObjective("accuracy")  # the grid's points are compared by the proxy's accuracy (§3.3)
_OPTIONAL_INT = (int, type(None))
_NUMBER = (float, int)


@dataclass
class ScaleSettings(BackendSettings, EvaluationSettings, RunSettings):
    """Everything ``nas scale`` takes (CLI flags or a YAML ``--config``).

    ``base`` is a preset name, a genotype JSON file or a search run directory; its space must be
    ``Scalable`` (``nas.space``). ``budget`` caps the grid points evaluated (default: all of them,
    in the controller's seeded order); ``evaluator_options`` holds the evaluator's options, as in
    ``nas search``; the execution settings (``backend``, ``workers``, ``early_stop``, ...) are
    ``nas search``'s.
    """

    TYPES: ClassVar[dict[str, Any]] = {
        "out": str,
        "base": str,
        "repeats": int,
        "grid_step": _NUMBER,
        "grid_high": _NUMBER,
        "tolerance": _NUMBER,
        "constraint": str,
        "budget": _OPTIONAL_INT,
        "phi_max": int,
        **BACKEND_TYPES,
        **EvaluationSettings.EVALUATION_TYPES,
    }
    # Settings that define the grid and its evaluations; resuming with any of them changed is refused.
    IDENTITY: ClassVar[tuple[str, ...]] = (
        "base",
        "evaluator",
        "dataset",
        "epochs",
        "seed",
        "evaluator_options",
        "repeats",
        "grid_step",
        "grid_high",
        "tolerance",
        "constraint",
        "early_stop",
        "early_stop_options",
    )
    IDENTITY_DEFAULTS: ClassVar[dict[str, Any]] = {"early_stop": None, "early_stop_options": {}}
    RENAMED: ClassVar[dict[str, str]] = {"proxy": "evaluator_options"}

    out: str
    base: str = "efficientnet-b0"
    repeats: int = 1
    grid_step: float = 0.05
    grid_high: float = 2.0
    tolerance: float = 0.1
    constraint: str = "formula"
    budget: int | None = None
    phi_max: int = 4

    def check(self) -> None:
        """``ValueError`` naming the first bad setting."""
        self.check_evaluation()
        if self.constraint not in CONSTRAINT_MODES:
            raise ValueError(f"constraint: {self.constraint!r} is not a constraint; valid: {list(CONSTRAINT_MODES)}")
        check_counts(self, ("budget", "repeats", "phi_max"))
        check_counts(self, ("repeats",), high=MAX_REPEATS)
        check_counts(self, ("phi_max",), high=MAX_PHI)
        if not math.isfinite(self.tolerance) or self.tolerance < 0:
            raise ValueError(f"tolerance: must be a number >= 0, got {self.tolerance!r}")
        check_backend_settings(self)
        if self.early_stop is not None and self.repeats > 1:
            raise ValueError(
                "early_stop: a point evaluated --repeats times has no single sequence of epochs to stop "
                "early; use repeats 1"
            )

    def resolve_base(self) -> Resolved:
        try:
            return resolve(self.base)
        except ValueError as error:
            raise ValueError(f"base: {error}") from None

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must match, the base as its genotype JSON (not the spec's text)."""
        values = {**asdict(self), "base": self.resolve_base().to_json()}
        return {key: values[key] for key in self.IDENTITY}


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


class ScaleRun(RunKind[ScaleSettings, ScaleParts]):
    """``nas scale``: the grid (a run of trials), then the family written from its journal."""

    name = "scale"
    command = "nas scale"
    settings_class = ScaleSettings
    study_name = SCALE_STUDY
    outputs = (FAMILY_FILE, "scaling.md", "scaling.png")

    def __init__(self, on_grid: Callable[[int, int], None] | None = None) -> None:
        self.on_grid = on_grid  # told (points in the grid, points to evaluate) once the run holds its directory

    def check(self, settings: ScaleSettings) -> None:
        check_data(settings.dataset, settings.data_dir, settings.download)
        space = grid_space(settings, settings.resolve_base())
        check_evaluator_options(settings.evaluator, space, settings.options_with(settings.epochs))

    def build(self, settings: ScaleSettings) -> ScaleParts:
        base = settings.resolve_base()
        space = grid_space(settings, base)
        controller = make_controller(
            "compound-grid",
            space,
            seed=settings.seed,
            budget=settings.budget,
            tolerance=settings.tolerance,
            constraint=settings.constraint,
            target=TARGET,
        )
        evaluator = _build_evaluator(settings, space)
        parts = ScaleParts(base, space, controller, evaluator)
        evaluator.prepare()  # data and proxy mistakes fail here, before a run directory or a trial exists
        evaluator.prepare_repeats(settings.repeats)
        by_gamma = {point["gamma"]: point for point in controller.points}  # type: ignore[attr-defined]
        # The images at every gamma of the grid, loaded and checked before the first trial.
        evaluator.prepare_inputs([space.decode(point) for point in by_gamma.values()], settings.repeats)
        return parts

    def job(self, settings: ScaleSettings, parts: ScaleParts) -> EvaluationJob:
        return EvaluationJob(
            build=functools.partial(scale_evaluation, settings, parts.space),
            space=parts.space,
            reward=ACCURACY.reward,
            threads=settings.threads,
            epochs=parts.evaluator.epochs,
            reports=settings.repeats == 1 and parts.evaluator.reports_epochs,
            prebuilt=scale_evaluation(settings, parts.space, parts.evaluator),
        )

    def begin(self, run: Run[ScaleSettings, ScaleParts]) -> Loop:
        parts = run.parts
        budget = min(run.settings.budget or parts.grid_points, parts.grid_points)
        if self.on_grid is not None:
            self.on_grid(parts.grid_points, budget)
        # Every grid point is a proxy training: written as soon as it is told.
        return Loop(
            parts.space, parts.controller, run.settings.budget or parts.grid_points, ACCURACY, flush_seconds=0.0
        )

    def finish(self, run: Run[ScaleSettings, ScaleParts], stats: SearchStats | None) -> Any:
        assert run.journal is not None
        settings, parts = run.settings, run.parts
        grid = {
            "step": settings.grid_step,
            "high": settings.grid_high,
            "tolerance": settings.tolerance,
            "constraint": settings.constraint,
            "points": parts.grid_points,
        }
        family = build_family(
            run.journal,
            parts.space,
            parts.base,
            spec=settings.base,
            dataset=settings.dataset,
            grid=grid,
            phi_max=settings.phi_max,
        )
        write_family(run.out, family)
        return family, stats

    def space_of(self, recorded: Mapping[str, Any], where: Path) -> CompoundScalingSpace:
        try:
            base = resolve(recorded["base"])
            return CompoundScalingSpace(
                base.space, base.genotype, step=recorded["grid_step"], high=recorded["grid_high"]
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: the run's settings are unreadable; nothing to resume from") from None

    def describe(self, out: Path) -> dict[str, Any] | None:
        return read_family(out)


def grid_space(settings: ScaleSettings, base: Resolved) -> CompoundScalingSpace:
    """The points of the grid over ``base`` (``ValueError`` for a base that cannot be compound-scaled)."""
    return CompoundScalingSpace(base.space, base.genotype, step=settings.grid_step, high=settings.grid_high)


def run_scale(
    settings: ScaleSettings, on_record: Any = None, on_grid: Callable[[int, int], None] | None = None
) -> tuple[dict[str, Any], SearchStats]:
    """Run (or resume) the grid of ``settings``, then write the family; return it and the grid's timing."""
    family, stats = execute(ScaleRun(on_grid), settings, on_record)
    return family, stats


def _build_evaluator(settings: ScaleSettings, space: CompoundScalingSpace) -> Evaluator[Any]:
    evaluator = settings.build_evaluator(space, settings.epochs)
    if settings.repeats > 1 and not evaluator.repeatable:
        raise ValueError(
            f"repeats: evaluator {settings.evaluator!r} cannot evaluate a point again with independent "
            "seeds (it is not repeatable)"
        )
    return evaluator


def scale_evaluation(
    settings: ScaleSettings, space: CompoundScalingSpace, evaluator: Evaluator[Any] | None = None
) -> Callable[..., dict[str, Any]]:
    """The evaluation of one grid point: the evaluator's metrics and the point's own (built in a Ray worker, say)."""
    if evaluator is None:
        evaluator = _build_evaluator(settings, space)
        evaluator.prepare()
    evaluate_proxy = repeated(evaluator, settings.repeats)

    def evaluate(point: Any, trial_id: int, report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        own = space.point_metrics(point)
        if report is None:
            return {**evaluate_proxy(point, trial_id), **own}
        return {**evaluate_proxy(point, trial_id, report=lambda metrics: report({**metrics, **own})), **own}

    return evaluate
