"""A search run: settings, the parts they name, and the run directory they fill.

``run_search(settings)`` is what ``nas search`` calls: it opens (or resumes) the journal in
``settings.out``, builds the space, controller and evaluator by their registered names, runs the
loop and writes best.json, report.md and the pictures. Nothing here knows a space, controller,
evaluator or dataset by name: all four come from ``nas.registry``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas import registry
from nas.backend import (
    BACKEND_TYPES,
    BackendSettings,
    EvaluationJob,
    check_backend_settings,
    intra_op_threads,
    make_backend,
    with_backend,
)
from nas.controller import Controller, check_controller_name, controller_factory, make_controller
from nas.evaluator import Evaluator, accepts_repeat, accepts_report, make_evaluator, repeated
from nas.run import check_run_directory, open_journal
from nas.settings import MAX_REPEATS, MAX_SEED, MAX_THREADS, check_types
from nas.space import SearchSpace
from nas.storage import check_storage

if TYPE_CHECKING:  # the search itself imports torch and plotting; validating settings does not
    from nas.search.final import Pair
    from nas.journal import Journal, Record
    from nas.loop import Reward, SearchStats

logger = logging.getLogger(__name__)

# Settings that define a search; resuming with any of them changed is refused.
# ``budget`` may grow (continue a search), and data location, storage and threads may change.
IDENTITY_FIELDS = ("space", "controller", "evaluator", "dataset", "epochs", "seed", "proxy", "controller_options",
                   "repeats", "objective", "latency_target_ms", "latency_weight", "latency", "early_stop",
                   "early_stop_options")
# Identity settings added after runs were first written: a run that lacks one was made with this value.
IDENTITY_DEFAULTS = {"evaluator": "proxy", "repeats": 1, "objective": "accuracy", "latency_target_ms": None,
                     "latency_weight": -0.07, "latency": {}, "early_stop": None, "early_stop_options": {}}
OBJECTIVES: tuple[str, ...] = ("accuracy", "mnas")
DEFAULT_LATENCY_WEIGHT = -0.07  # MnasNet's soft constraint (arXiv 1807.11626 §3)
DEFAULT_FINAL_REPEATS = 3
CONTROLLER_CONFIG_KEY = "nas_controller_config"  # study attribute: the options the controller began with
_OPTIONAL_STR = (str, type(None))
_OPTIONAL_INT = (int, type(None))
# The type of every setting: YAML can hold anything, and a wrong type must be one clear line.
_TYPES: dict[str, Any] = {
    "out": str, "space": str, "controller": str, "evaluator": str, "budget": int, "dataset": str,
    "data_dir": _OPTIONAL_STR, "download": bool, "epochs": _OPTIONAL_INT, "seed": int, "threads": int,
    "storage": _OPTIONAL_STR, "study_name": _OPTIONAL_STR, "proxy": dict, "controller_options": dict,
    "repeats": int, "final_top": int, "final_epochs": _OPTIONAL_INT, "final_repeats": int, "objective": str,
    "latency_target_ms": (float, int, type(None)), "latency_weight": (float, int), "latency": dict,
    **BACKEND_TYPES,
}


@dataclass
class SearchSettings(BackendSettings):
    """Everything ``nas search`` takes (CLI flags or a YAML ``--config``).

    ``proxy`` holds the evaluator's options (for ``proxy``: epochs, batch size, the ``lower``
    overrides of the proxy network); ``threads`` is the intra-op thread count of the evaluations
    (one: proxy networks are too small to gain from more, DESIGN: Search loop).

    ``repeats`` evaluates every candidate that many times with independent seeds and validation
    splits; its reward is the mean (``nas.evaluator.repeated``). ``budget`` counts candidates, so
    a search costs ``budget * repeats`` evaluations. ``final_top`` > 0 adds the final selection
    stage (``nas.search.final``): the best ``final_top`` candidates are evaluated again, ``final_repeats``
    times each with fresh seeds and ``final_epochs`` epochs (default: the search's), and best.json
    is the best of that stage.

    ``objective`` ``mnas`` rewards ``accuracy * (latency_ms / latency_target_ms) ** latency_weight``
    (``nas.loop.mnas_reward``), where ``latency_ms`` is the registered ``latency`` evaluator's
    lookup-table latency of the full-size network (1000 classes, its own resolution); ``latency``
    holds that evaluator's options (``table``, ``threads``, ``batch_size``, ``resolution``,
    ``num_classes``, ``device``). Accuracy and latency are both in the journal.

    Execution (``BackendSettings``): ``backend`` ``local`` evaluates one trial at a time with
    ``threads`` threads; ``ray`` runs ``workers`` at once, each with ``cpus_per_trial`` threads,
    optionally on a cluster (``address``) and with early stopping (``early_stop: asha``).
    """

    out: str
    space: str = "nasnet"
    controller: str = "reinforce"
    evaluator: str = "proxy"
    budget: int = 20
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    epochs: int | None = None
    seed: int = 0
    threads: int = 1
    storage: str | None = None
    study_name: str | None = None
    proxy: dict[str, Any] = field(default_factory=dict)
    controller_options: dict[str, Any] = field(default_factory=dict)
    repeats: int = 1
    final_top: int = 0
    final_epochs: int | None = None
    final_repeats: int = DEFAULT_FINAL_REPEATS
    objective: str = "accuracy"
    latency_target_ms: float | None = None
    latency_weight: float = DEFAULT_LATENCY_WEIGHT
    latency: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """``ValueError`` naming the first bad setting; registered names are checked against the registries."""
        check_types(self, _TYPES)
        if not self.out:
            raise ValueError("out: a run directory is required")
        check_controller_name(self.controller)  # 'optuna:TPESampler' names the controller 'optuna' with a variant
        for name, known in (("space", registry.spaces), ("evaluator", registry.evaluators),
                            ("dataset", registry.datasets)):
            if getattr(self, name) not in known:
                raise ValueError(f"{name}: unknown {known.kind} {getattr(self, name)!r}; valid: {known.names()}")
        if self.threads > MAX_THREADS:
            raise ValueError(f"threads: must be in [1, {MAX_THREADS}], got {self.threads}")
        for name in ("proxy", "controller_options"):
            keys = [key for key in getattr(self, name) if not isinstance(key, str)]
            if keys:
                raise ValueError(f"{name}: option names must be strings, got {keys[0]!r}")
        for name in ("budget", "epochs", "threads", "repeats", "final_epochs", "final_repeats"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        for name in ("repeats", "final_repeats"):
            if getattr(self, name) > MAX_REPEATS:
                raise ValueError(f"{name}: must be in [1, {MAX_REPEATS}], got {getattr(self, name)}")
        if self.final_top < 0:
            raise ValueError(f"final_top: must be 0 (no final stage) or a positive integer, got {self.final_top}")
        if not self.final_top and (self.final_epochs is not None or self.final_repeats != DEFAULT_FINAL_REPEATS):
            raise ValueError("final_epochs / final_repeats: they set the final selection stage; add --final-top K")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: must be in [0, 2**63 - 1] (journals store it as a 64-bit integer), got {self.seed}")
        if self.storage is not None:
            check_storage(self.storage)
        check_backend_settings(self)
        if self.early_stop is not None and self.repeats > 1:
            raise ValueError("early_stop: a candidate evaluated --repeats times has no single sequence of epochs "
                             "to stop early; use repeats 1")
        self._validate_objective()

    def _validate_objective(self) -> None:
        from nas.loop import mnas_reward

        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective: {self.objective!r} is not an objective; valid: {list(OBJECTIVES)}")
        if self.objective == "mnas":
            if self.latency_target_ms is None:
                raise ValueError("latency_target_ms: the mnas objective needs a latency target (--latency-target-ms)")
            mnas_reward(self.latency_target_ms, self.latency_weight)  # validates both
        elif self.latency_target_ms is not None or self.latency or self.latency_weight != DEFAULT_LATENCY_WEIGHT:
            raise ValueError("latency_target_ms / latency_weight / latency: they set the latency objective; "
                             "add --objective mnas")
        keys = [key for key in self.latency if not isinstance(key, str)]
        if keys:
            raise ValueError(f"latency: option names must be strings, got {keys[0]!r}")

    def identity(self) -> dict[str, Any]:
        values = asdict(self)
        values["latency"] = {key: value for key, value in self.latency.items() if key not in ("table", "device")}
        return {key: values[key] for key in IDENTITY_FIELDS}

    def reward(self) -> Reward:
        """The reward of the objective: accuracy, or the MnasNet reward."""
        from nas.loop import accuracy_reward, mnas_reward

        if self.objective == "mnas":
            return mnas_reward(self.latency_target_ms, self.latency_weight)  # type: ignore[arg-type]
        return accuracy_reward


def build_parts(settings: SearchSettings) -> tuple[SearchSpace[Any], Controller[Any], Evaluator[Any]]:
    """The space, controller and evaluator of ``settings``, built through the registries."""
    space = registry.spaces.get(settings.space)
    controller = build_controller(settings, space)
    evaluator = build_evaluator(settings, space, settings.epochs)
    if settings.repeats > 1 or settings.final_top:
        name = "repeats" if settings.repeats > 1 else "final_top"
        if not accepts_repeat(evaluator.evaluate):
            raise ValueError(f"{name}: evaluator {settings.evaluator!r} cannot evaluate a candidate again with "
                             "independent seeds (its evaluate() takes no 'repeat'); drop --repeats / --final-top")
    return space, controller, evaluator


def build_controller(settings: SearchSettings, space: SearchSpace[Any],
                     config: Mapping[str, Any] | None = None) -> Controller[Any]:
    """The controller of ``settings``, given the search budget so that its defaults suit it.

    ``config`` is the ``config`` of a resumed run's controller state: the options the controller
    resolved when the run began (budget-derived defaults included). They are given back explicitly,
    so a run resumed with a larger ``--budget`` continues with the settings it started with.
    """
    if "budget" in settings.controller_options:
        raise ValueError("controller_options: 'budget' is the search's --budget, not a controller option")
    options = dict(settings.controller_options)
    if config is not None:
        factory, _ = controller_factory(settings.controller)
        _, valid = registry.unknown_options(factory, {}, ("space", "seed", "budget", "variant"))
        config = {**getattr(factory, "LEGACY_CONFIG", {}), **config}  # options older states did not record
        options = {**{key: value for key, value in config.items() if key in valid}, **options}
    return make_controller(settings.controller, space, seed=settings.seed, budget=settings.budget, **options)


def build_evaluator(settings: SearchSettings, space: SearchSpace[Any], epochs: int | None) -> Evaluator[Any]:
    """The evaluator of ``settings``; ``epochs`` (if not None) overrides its training length."""
    options = dict(settings.proxy)
    if epochs is not None:
        options["epochs"] = epochs
    return make_evaluator(settings.evaluator, space, seed=settings.seed, dataset=settings.dataset,
                          data_dir=settings.data_dir, download=settings.download, **options)


def run_search(settings: SearchSettings, on_record: Callable[[Record, bool, int], None] | None = None,
               on_final: Callable[[Pair, bool, int, int], None] | None = None) -> tuple[Record | None, SearchStats]:
    """Run (or resume) the search of ``settings``; return the best record and the timing.

    ``on_record(record, replayed, finished)`` is called after every trial told, with the number of
    finished evaluations in the journal (a progress display uses it); ``on_final(pair, replayed,
    done, total)`` after every candidate of the final stage. With a final stage the best record is
    the final stage's record of the chosen candidate.
    """
    from nas.search.final import FINAL_STUDY_SUFFIX, run_final_stage
    from nas.lock import RunLock, StudyGuard
    from nas.search.report import write_outputs
    from nas.loop import Driver

    settings.validate()
    out = Path(settings.out)
    check_run_directory(out)
    if settings.storage is None:
        from nas.storage import study_names
        from nas.netadapt.run import NETADAPT_STUDY
        from nas.scale.run import SCALE_STUDY

        for study, command in ((SCALE_STUDY, "a compound-scaling run (nas scale)"), (NETADAPT_STUDY, "a nas netadapt run")):
            if study in study_names(out):
                raise ValueError(f"{out} holds {command}; use another --out")
    space, controller, evaluator = build_parts(settings)
    backend = make_backend(settings)
    final_evaluator = _final_evaluator(settings, space)
    latency = build_latency_evaluator(settings, space)
    evaluator.prepare()  # data and proxy mistakes fail here, before a run directory or a trial exists
    prepare_repeats = getattr(evaluator, "prepare_repeats", None)
    if callable(prepare_repeats):  # every validation split the run will use, checked now
        prepare_repeats(settings.repeats + (settings.final_repeats if settings.final_top else 0))
    job = EvaluationJob(build=functools.partial(search_evaluation, settings), space=space, reward=settings.reward(),
                        threads=settings.threads, epochs=getattr(evaluator, "epochs", None),
                        reports=settings.repeats == 1 and accepts_report(evaluator.evaluate),
                        prebuilt=repeated(evaluator.evaluate, settings.repeats))
    study_name = settings.study_name or "nas-search"
    if settings.storage is None:  # other settings are refused before a backend connects
        from nas.journal import check_recorded_settings

        check_recorded_settings(out, study_name, settings.identity(), IDENTITY_DEFAULTS)
    with with_backend(backend, job):  # checked before anything is written, closed however this ends
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        with RunLock(out), contextlib.ExitStack() as stack:  # one writer: a second search here is refused
            journal = open_journal(out, created, settings.storage, study_name, settings.identity(), IDENTITY_DEFAULTS)
            if settings.storage is not None:  # a shared storage: other run directories may name the same study
                stack.enter_context(StudyGuard(journal.study))
            final = _open_final(out, settings, journal, study_name + FINAL_STUDY_SUFFIX)  # refused now, not after
            controller = _resume_controller(settings, space, controller, journal)
            report = None if on_record is None else (lambda record, replayed: on_record(record, replayed, len(journal)))
            driver = Driver(space, controller, journal, settings.budget, settings.reward(), report,
                            annotate=None if latency is None else latency.evaluate)
            backend.run(driver, job)
            stats = driver.finish()
            pairs = None
            if final_evaluator is not None and final is not None:
                final_evaluator.prepare()
                with intra_op_threads(settings.threads):
                    pairs = run_final_stage(journal, final, space, settings.final_top,
                                            with_latency(repeated(final_evaluator.evaluate, settings.final_repeats,
                                                                  first=settings.repeats), latency),
                                            reward=settings.reward(), on_final=on_final)
            describe = getattr(evaluator, "describe", None)
            best = write_outputs(out, journal, space, {**settings.identity(), "budget": settings.budget,
                                                       "threads": settings.threads, **_final_settings(settings),
                                                       **_execution(settings)},
                                 stats, describe() if callable(describe) else None, final=pairs,
                                 controller=_controller_config(controller))
        return best, stats


def search_evaluation(settings: SearchSettings) -> Callable[..., dict[str, Any]]:
    """The evaluation of a search's trials, built from its settings alone (in a Ray worker, say).

    The lookup-table latency of the mnas objective is not part of it: the driver adds it
    (``Driver(annotate=...)``), since it describes the target device, not the worker's.
    """
    space = registry.spaces.get(settings.space)
    evaluator = build_evaluator(settings, space, settings.epochs)
    evaluator.prepare()
    return repeated(evaluator.evaluate, settings.repeats)


def _execution(settings: BackendSettings) -> dict[str, Any]:
    """The execution settings worth naming in a report (the local backend's are its defaults)."""
    if settings.backend == "local":
        return {}
    return {"backend": settings.backend, "workers": settings.workers, "cpus_per_trial": settings.cpus_per_trial,
            **({"gpus_per_trial": settings.gpus_per_trial} if settings.gpus_per_trial else {}),
            **({"address": settings.address} if settings.address else {})}


def build_latency_evaluator(settings: SearchSettings, space: SearchSpace[Any]) -> Evaluator[Any] | None:
    """The registered ``latency`` evaluator of the mnas objective (``settings.latency`` its options), checked now."""
    if settings.objective != "mnas":
        return None
    try:
        latency = make_evaluator("latency", space, seed=settings.seed, **settings.latency)
        latency.prepare()
    except (TypeError, ValueError) as error:
        raise ValueError(f"latency: {error}") from None
    return latency


def with_latency(evaluate: Callable[..., Mapping[str, Any]],
                 latency: Evaluator[Any] | None) -> Callable[..., dict[str, Any]]:
    """``evaluate`` with the latency evaluator's metrics added (first: a candidate it cannot build is not
    trained); a ``report`` callback is passed on, its per-epoch metrics with the latency added too."""
    if latency is None:
        return evaluate  # type: ignore[return-value]

    def evaluate_with_latency(genotype: Any, trial_id: int, report: Callable[[dict[str, Any]], None] | None = None
                              ) -> dict[str, Any]:
        cost = latency.evaluate(genotype, trial_id)
        if cost.get("error"):
            return dict(cost)
        if report is None:
            return {**evaluate(genotype, trial_id), **cost}
        return {**evaluate(genotype, trial_id, report=lambda metrics: report({**metrics, **cost})), **cost}

    return evaluate_with_latency


def _final_evaluator(settings: SearchSettings, space: SearchSpace[Any]) -> Evaluator[Any] | None:
    """The evaluator of the final stage (its own training length), or None without one."""
    if not settings.final_top:
        return None
    try:
        return build_evaluator(settings, space, settings.final_epochs or settings.epochs)
    except ValueError as error:
        raise ValueError(f"final_epochs: {error}" if settings.final_epochs else str(error)) from None


def _open_final(out: Path, settings: SearchSettings, journal: Journal, name: str) -> Journal | None:
    """The final stage's journal, checked against its settings before the search runs.

    A run that has a final stage is refused without ``--final-top``: its best.json came from that
    stage, and a search that ignored it would silently write another.
    """
    import optuna

    from nas.journal import Journal

    if not settings.final_top:
        if name in optuna.get_all_study_names(journal.storage):
            raise ValueError(f"{out} has a final selection stage (study {name!r}); pass --final-top (and its "
                             "--final-epochs / --final-repeats) to continue it, or use another --out")
        return None
    try:
        return Journal(out, settings.storage, name, {**settings.identity(), **_final_identity(settings)},
                       defaults=IDENTITY_DEFAULTS)
    except ValueError as error:
        raise ValueError(f"final stage: {error}") from None


def _final_identity(settings: SearchSettings) -> dict[str, Any]:
    return {"final_epochs": settings.final_epochs or settings.epochs, "final_repeats": settings.final_repeats}


def _resume_controller(settings: SearchSettings, space: SearchSpace[Any], controller: Controller[Any],
                       journal: Journal) -> Controller[Any]:
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


def _final_settings(settings: SearchSettings) -> dict[str, Any]:
    if not settings.final_top:
        return {}
    return {"final_top": settings.final_top, **_final_identity(settings)}


def _controller_config(controller: Controller[Any]) -> dict[str, Any] | None:
    """The options the controller resolved (budget-derived defaults included), for the report."""
    config = controller.state_dict().get("config")
    return dict(config) if isinstance(config, Mapping) else None


