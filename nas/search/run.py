"""The search kind of run (``nas search``): a controller proposes, an evaluator measures, an objective rewards.

``SearchRun`` declares what ``nas.run.execute`` needs: the parts (space, controller, evaluator,
the lookup-table latency an objective may read, the final stage's evaluator), the evaluation a
backend runs, the loop, and the outputs (``nas.search.report``). Nothing here knows a space,
controller, evaluator or dataset by name: all of them come from ``nas.registry``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas import registry
from nas.backend import EvaluationJob, intra_op_threads
from nas.controller import Controller, controller_factory, make_controller
from nas.controller_base import ControllerBase
from nas.evaluator import Evaluator, check_evaluator_options, repeated
from nas.files import atomic_write_text
from nas.journal import Journal, Record
from nas.loop import SearchStats
from nas.objective import Objective, make_objective
from nas.run import Loop, Run, RunKind, execute
from nas.search.final import FINAL_STUDY_SUFFIX, Pair, run_final_stage
from nas.search.latency import build_latency_evaluator, check_objective_metrics, with_latency
from nas.search.settings import WARM_START_EVALUATOR, SearchSettings, default_objective
from nas.search.status import BUDGET_KEY, run_status
from nas.search.warm_start import select as select_warm_start
from nas.settings import check_data
from nas.space import SearchSpace
from nas.storage import study_names

CONTROLLER_CONFIG_KEY = "nas_controller_config"  # study attribute: the options the controller began with
FinalProgress = Callable[[Pair, bool, int, int], None]


@dataclass
class SearchParts:
    """What one search runs: its space, controller, evaluator and objective, the lookup-table latency
    its objective may read, and the final stage's evaluator (its own epochs)."""

    space: SearchSpace[Any]
    controller: Controller[Any]
    evaluator: Evaluator[Any]
    objective: Objective
    latency: Evaluator[Any] | None = None
    final: Evaluator[Any] | None = None
    final_objective: Objective | None = None  # the final stage's, where its evaluator is not the search's


class SearchRun(RunKind[SearchSettings, SearchParts]):
    """``nas search``; ``on_final(pair, replayed, done, total)`` is told every candidate of the final stage."""

    name = "search"
    command = "nas search"
    settings_class = SearchSettings
    study_name = "nas-search"
    outputs = ("best.json", "report.md")
    owns_other_studies = True

    def __init__(self, on_final: FinalProgress | None = None, on_estimate: Callable[[str], None] | None = None) -> None:
        self.on_final, self.on_estimate = on_final, on_estimate

    def study(self, settings: SearchSettings) -> str:
        return settings.study_name or self.study_name

    def storage(self, settings: SearchSettings) -> str | None:
        return settings.storage

    def check(self, settings: SearchSettings) -> None:
        space = registry.spaces.get(settings.space)
        check_data(settings.dataset, settings.data_dir, settings.download)
        check_evaluator_options(settings.evaluator, space, settings.options_with(settings.epochs))

    def build(self, settings: SearchSettings) -> SearchParts:
        space = registry.spaces.get(settings.space)
        evaluator = settings.build_evaluator(space, settings.epochs)
        objective = settings.make_objective()
        latency = build_latency_evaluator(settings, space, evaluator, objective)
        check_objective_metrics(objective, evaluator, latency, settings.evaluator)
        # The final stage evaluates its candidates again with new seeds: any --final-top needs a repeatable evaluator.
        for name, repeats in (("repeats", settings.repeats), ("final_top", settings.final_top + 1)):
            if repeats > 1 and not evaluator.repeatable:
                raise ValueError(
                    f"{name}: evaluator {settings.evaluator!r} cannot evaluate a candidate again with "
                    "independent seeds (it is not repeatable); drop --repeats / --final-top"
                )
        parts = SearchParts(
            space,
            build_controller(settings, space, defaults=controller_defaults(evaluator)),
            evaluator,
            objective,
            latency,
            _final_evaluator(settings, space, evaluator),
            _final_objective(settings, evaluator),
        )
        if settings.warm_start and not callable(getattr(parts.controller, "enqueue", None)):
            raise ValueError(
                f"warm_start: controller {settings.controller!r} cannot be handed architectures to evaluate "
                "first (it has no enqueue; subclass nas.controller_base.ControllerBase)"
            )
        follow(evaluator, parts.controller, settings)  # ENAS's mistakes fail here too
        evaluator.prepare()  # data and proxy mistakes fail here, before a run directory or a trial exists
        evaluator.prepare_repeats(settings.repeats + (settings.final_repeats if settings.final_top else 0))
        return parts

    def job(self, settings: SearchSettings, parts: SearchParts) -> EvaluationJob:
        return EvaluationJob(
            build=functools.partial(search_evaluation, settings),
            space=parts.space,
            reward=parts.objective.reward,
            threads=settings.threads,
            epochs=parts.evaluator.epochs,
            reports=settings.repeats == 1 and parts.evaluator.reports_epochs,
            prebuilt=repeated(parts.evaluator, settings.repeats),
        )

    def begin(self, run: Run[SearchSettings, SearchParts]) -> Loop:
        settings, parts = run.settings, run.parts
        assert run.journal is not None
        run.state = _open_final(run.out, settings, run.journal, self.study(settings) + FINAL_STUDY_SUFFIX)
        run.journal.study.set_user_attr(BUDGET_KEY, settings.budget)  # where it stands: ``nas show``
        parts.controller = _resume_controller(settings, parts.space, parts.controller, run.journal)
        follow(parts.evaluator, parts.controller, settings)  # the resumed controller's policy (ENAS)
        attach(parts.evaluator, run.out)  # a supernet trains (or resumes) here, in the run directory
        if settings.warm_start and not run.journal.records and not parts.controller.pending_ids:
            controller: Any = parts.controller
            if controller.issued == 0:  # a new search (a resumed one kept its queue in its state)
                controller.enqueue(warm_start(settings, parts.space, run.out, self.on_estimate))
        return Loop(
            parts.space,
            parts.controller,
            settings.budget,
            parts.objective,
            annotate=None if parts.latency is None else parts.latency.evaluate,
            on_record=None if self.on_estimate is None else cost_estimate(run, self.on_estimate),
        )

    def finish(self, run: Run[SearchSettings, SearchParts], stats: SearchStats | None) -> Any:
        settings, parts, journal, final = run.settings, run.parts, run.journal, run.state
        assert journal is not None
        pairs = None
        if parts.final is not None and final is not None:
            parts.final.prepare()
            evaluate = with_latency(
                repeated(parts.final, settings.final_repeats, first=settings.repeats), parts.latency
            )
            with intra_op_threads(settings.threads):
                pairs = run_final_stage(
                    journal,
                    final,
                    parts.space,
                    settings.final_top,
                    evaluate,
                    reward=(parts.final_objective or parts.objective).reward,
                    on_final=self.on_final,
                )
        from nas.search.report import write_outputs  # lazy: the kind is read (nas show, kind_of) without plotting

        facts = {
            **settings.identity(),
            "budget": settings.budget,
            "threads": settings.threads,
            **_final_settings(settings),
            **_execution(settings),
        }
        best = write_outputs(
            run.out,
            journal,
            parts.space,
            facts,
            stats,
            parts.evaluator.describe(),
            final=pairs,
            controller=_controller_config(parts.controller),
            objective=parts.objective,
            optima=parts.evaluator.optima(),
            final_objective=parts.final_objective,
        )
        return best, stats

    def space_of(self, recorded: Mapping[str, Any], where: Path) -> SearchSpace[Any]:
        if not isinstance(recorded.get("space"), str):
            raise ValueError(f"{where}: the run's settings are unreadable; nothing to resume from")
        return registry.spaces.get(recorded["space"])

    def describe(self, out: Path) -> dict[str, Any] | None:
        names = [name for name in study_names(out) if not name.endswith(FINAL_STUDY_SUFFIX)]
        return run_status(out, names[0] if len(names) == 1 else self.study_name)


def run_search(
    settings: SearchSettings,
    on_record: Any = None,
    on_final: FinalProgress | None = None,
    on_estimate: Callable[[str], None] | None = None,
) -> tuple[Any, SearchStats]:
    """Run (or resume) the search of ``settings``; return the best record and the timing.

    ``on_record(record, replayed, finished)`` is called after every trial told; ``on_final(pair,
    replayed, done, total)`` after every candidate of the final stage; ``on_estimate(line)`` once, with
    the cost estimate after the first candidate evaluated by this session (``cost_estimate``). With a
    final stage the best record is the final stage's record of the chosen candidate.
    """
    best, stats = execute(SearchRun(on_final, on_estimate), settings, on_record)
    return best, stats


def warm_start(
    settings: SearchSettings, space: SearchSpace[Any], out: Path, say: Callable[[str], None] | None
) -> list[dict[str, Any]]:
    """The architectures a ``--warm-start`` search evaluates first (``nas.search.warm_start``), scored by
    the ``zero-cost`` evaluator on the search's data; every candidate and its scores go to
    ``warm_start.json`` in the run directory."""
    scores = settings.warm_start_score_names()
    evaluator = settings.evaluator_on_data(WARM_START_EVALUATOR, space, scores=scores)
    began = time.perf_counter()
    with intra_op_threads(settings.threads):
        evaluator.prepare()
        chosen, scored = select_warm_start(
            space, evaluator.evaluate, settings.warm_start, settings.warm_start_size(), settings.seed, scores
        )
    seconds = time.perf_counter() - began
    record = {"candidates": len(scored), "top": len(chosen), "scores": scores, "seconds": seconds}
    atomic_write_text(out / WARM_START_FILE, json.dumps({**record, "chosen": chosen, "scored": scored}, indent=1))
    if say is not None:
        say(
            f"warm start: {len(scored)} candidates scored by {' + '.join(scores)} in {seconds:.0f} s; "
            f"the best {len(chosen)} are evaluated first ({out / WARM_START_FILE})"
        )
    return chosen


WARM_START_FILE = "warm_start.json"
ESTIMATE_AFTER_SECONDS = 5.0  # a first candidate quicker than this: the whole search is quick, say nothing
WITHIN_SECONDS = 3600.0  # a search estimated longer is told the evaluator options that fit it in an hour


def cost_estimate(run: Run[SearchSettings, SearchParts], say: Callable[[str], None]) -> Callable[[Record, bool], None]:
    """The hook that tells, after the first candidate this session evaluates, what the rest will take.

    The first candidate's ``seconds`` times the trials still to run, over the workers (the proxy's
    cost varies between candidates, so this is an order of magnitude, and says so). Over an hour, the
    evaluator's ``cheaper`` options that would bring it within one are named (for the proxy: an image
    budget), as the ``evaluator_options`` of a ``--config`` file.
    """
    told = False

    def on_record(record: Record, replayed: bool) -> None:
        nonlocal told
        if told or replayed or record.result.failed:
            return
        told = True
        seconds = record.result.metrics.get("seconds")
        if not isinstance(seconds, (int, float)) or seconds < ESTIMATE_AFTER_SECONDS or run.journal is None:
            return
        settings = run.settings
        remaining = max(0, settings.budget - len(run.journal))
        total = seconds * remaining / settings.workers
        line = (
            f"the first candidate took {_duration(seconds)}: the {remaining} still to run take about "
            f"{_duration(total)} with {settings.workers} worker(s), more or less as candidates differ in size"
        )
        evaluator = run.parts.evaluator
        if total > WITHIN_SECONDS and evaluator is not None:
            options = evaluator.cheaper(record.result.metrics, total / WITHIN_SECONDS)
            if options:
                shown = ", ".join(f"{key}: {value}" for key, value in options.items())
                line += f"; to finish within an hour, set evaluator_options {{{shown}}} in a --config file"
        say(line)

    return on_record


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def build_controller(
    settings: SearchSettings,
    space: SearchSpace[Any],
    config: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Controller[Any]:
    """The controller of ``settings``, given the search budget so that its defaults suit it.

    ``config`` is the ``config`` of a resumed run's controller state: the options the controller
    resolved when the run began (budget-derived defaults included). They are given back explicitly,
    so a run resumed with a larger ``--budget`` continues with the settings it started with.
    ``defaults``: options the evaluator asks of a controller that takes them (``controller_defaults``),
    under the search's own ``controller_options``.
    """
    if "budget" in settings.controller_options:
        raise ValueError("controller_options: 'budget' is the search's --budget, not a controller option")
    options = dict(settings.controller_options)
    if defaults:
        factory, _ = controller_factory(settings.controller)
        _, valid = registry.unknown_options(factory, {}, ("space", "seed", "budget", "variant"))
        options = {**{key: value for key, value in defaults.items() if key in valid}, **options}
    if config is not None:
        factory, _ = controller_factory(settings.controller)
        _, valid = registry.unknown_options(factory, {}, ("space", "seed", "budget", "variant"))
        legacy = factory.LEGACY_CONFIG if isinstance(factory, type) and issubclass(factory, ControllerBase) else {}
        config = {**legacy, **config}  # options older states did not record
        options = {**{key: value for key, value in config.items() if key in valid}, **options}
    return make_controller(settings.controller, space, seed=settings.seed, budget=settings.budget, **options)


def search_evaluation(settings: SearchSettings) -> Callable[..., dict[str, Any]]:
    """The evaluation of a search's trials, built from its settings alone (in a Ray worker, say).

    The lookup-table latency is not part of it: the driver adds it (``Driver(annotate=...)``),
    since it describes the target device, not the worker's.
    """
    evaluator = settings.build_evaluator(registry.spaces.get(settings.space), settings.epochs)
    evaluator.prepare()
    attach(evaluator, Path(settings.out))  # the driver trained the supernet before the first trial: loaded
    return repeated(evaluator, settings.repeats)


def attach(evaluator: Evaluator[Any], out: Path) -> None:
    """Give ``evaluator`` the run directory (``EvaluatorBase.attach``), if it takes one."""
    hook = getattr(evaluator, "attach", None)
    if callable(hook):
        hook(out)


def controller_defaults(evaluator: Evaluator[Any]) -> dict[str, Any]:
    """The controller options ``evaluator`` asks for (``EvaluatorBase.controller_defaults``: ENAS's
    on-policy samples), if it asks for any."""
    hook = getattr(evaluator, "controller_defaults", None)
    return dict(hook()) if callable(hook) else {}


def follow(evaluator: Evaluator[Any], controller: Controller[Any], settings: SearchSettings) -> None:
    """Give ``evaluator`` the controller whose policy trains it (``EvaluatorBase.follow``: ENAS), if it
    takes one; its trials are evaluated one at a time only with one local worker."""
    hook = getattr(evaluator, "follow", None)
    if callable(hook):
        hook(controller, settings.budget, settings.backend == "local" and settings.workers == 1)


def _execution(settings: SearchSettings) -> dict[str, Any]:
    """The execution settings worth naming in a report (the local backend's are its defaults)."""
    if settings.backend == "local":
        return {}
    return {
        "backend": settings.backend,
        "workers": settings.workers,
        "cpus_per_trial": settings.cpus_per_trial,
        **({"gpus_per_trial": settings.gpus_per_trial} if settings.gpus_per_trial else {}),
        **({"address": settings.address} if settings.address else {}),
    }


def _final_evaluator(
    settings: SearchSettings, space: SearchSpace[Any], evaluator: Evaluator[Any]
) -> Evaluator[Any] | None:
    """The evaluator of the final stage (its own training length), or None without one: the search's,
    or the one the search's names to train candidates for real (a supernet's: the proxy)."""
    if not settings.final_top:
        return None
    other = getattr(evaluator, "final_evaluator", None)
    try:
        if other is not None:
            options = dict(getattr(evaluator, "final_options", dict)())
            if settings.final_epochs:
                options["epochs"] = settings.final_epochs
            return settings.evaluator_on_data(other, space, **options)
        return settings.build_evaluator(space, settings.final_epochs or settings.epochs)
    except ValueError as error:
        raise ValueError(f"final_epochs: {error}" if settings.final_epochs else str(error)) from None


def _final_objective(settings: SearchSettings, evaluator: Evaluator[Any]) -> Objective | None:
    """The final stage's objective where its evaluator is another (``final_evaluator``) and the search's
    objective is its own evaluator's default: the final evaluator's default (the proxy's training loss);
    None where the search's objective serves both (one named explicitly, say)."""
    other = getattr(evaluator, "final_evaluator", None)
    if not settings.final_top or other is None or settings.objective != default_objective(settings.evaluator):
        return None
    return make_objective(default_objective(other))


def _open_final(out: Path, settings: SearchSettings, journal: Journal, name: str) -> Journal | None:
    """The final stage's journal, checked against its settings before the search runs.

    A run that has a final stage is refused without ``--final-top``: its best.json came from that
    stage, and a search that ignored it would silently write another.
    """
    if not settings.final_top:
        if name in journal.study_names():
            raise ValueError(
                f"{out} has a final selection stage (study {name!r}); pass --final-top (and its "
                "--final-epochs / --final-repeats) to continue it, or use another --out"
            )
        return None
    try:
        return Journal(
            out,
            settings.storage,
            name,
            {**settings.identity(), **_final_identity(settings)},
            defaults=settings.IDENTITY_DEFAULTS,
            renamed=settings.RENAMED,
        )
    except ValueError as error:
        raise ValueError(f"final stage: {error}") from None


def _final_identity(settings: SearchSettings) -> dict[str, Any]:
    return {"final_epochs": settings.final_epochs or settings.epochs, "final_repeats": settings.final_repeats}


def _final_settings(settings: SearchSettings) -> dict[str, Any]:
    return {"final_top": settings.final_top, **_final_identity(settings)} if settings.final_top else {}


def _resume_controller(
    settings: SearchSettings, space: SearchSpace[Any], controller: Controller[Any], journal: Journal
) -> Controller[Any]:
    """The controller with the options the run began with (its defaults for the first budget).

    They come from the saved controller state, or, if that file is missing or torn, from the
    study, where they are recorded when the run begins: either way a run resumed with a larger
    ``--budget`` replays and continues exactly.
    """
    saved = journal.load_controller()
    config = saved.get("config") if saved is not None else None
    if not isinstance(config, Mapping):
        config = journal.study.user_attrs.get(CONTROLLER_CONFIG_KEY)
    if isinstance(config, Mapping) and config != _controller_config(controller):
        controller = build_controller(settings, space, config)
    resolved = _controller_config(controller)
    if CONTROLLER_CONFIG_KEY not in journal.study.user_attrs and resolved is not None:
        journal.study.set_user_attr(CONTROLLER_CONFIG_KEY, resolved)
    return controller


def _controller_config(controller: Controller[Any]) -> dict[str, Any] | None:
    """The options the controller resolved (budget-derived defaults included), for the report."""
    config = controller.state_dict().get("config")
    return dict(config) if isinstance(config, Mapping) else None
