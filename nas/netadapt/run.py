"""A NetAdapt run (``nas netadapt``): shrink a trained network to a latency budget, then fine-tune it.

The parts come from the registries like any plug-in's: the ``netadapt`` controller over a
``nas.spaces.widths.WidthSpace`` of the starting network, the ``finetune`` evaluator (weights
inherited from the current network, a short fine-tune, validation accuracy) and the ``latency``
evaluator (the lookup table predicts, the harness measures). The loop is ``nas.loop``'s: one
trial per proposal, an Optuna journal (study ``nas-netadapt`` in ``OUT/study.db``), the lock,
replay on resume, so a killed run continues after its last finished proposal. The fine-tuned
weights of every proposal are written to ``OUT/weights/trial-T.pt`` before its trial is recorded;
those of proposals that were not chosen are deleted once their iteration is decided.

The starting network is trained first (``initial_steps``) unless ``weights`` are given; its
weights are kept in ``OUT/start.pt`` and its predicted latency in the study, so a resumed run
keeps its targets even if the lookup table was lost. Latency is of the network at ``resolution``
(default: the genotype's own) with the data set's classes; the images are loaded at
``train_resolution`` (default: the space's proxy resolution; the networks are fully
convolutional, so their widths are trained on small images and timed at their real size).
"""

from __future__ import annotations

import functools
import hashlib
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
from nas.controller import make_controller
from nas.evaluator import make_evaluator
from nas.backend import intra_op_threads
from nas.run import check_run_directory, open_journal
from nas.settings import MAX_SEED, MAX_THREADS, check_types
from nas.spaces.widths import DEFAULT_GRANULARITY, WidthSpace

if TYPE_CHECKING:
    from nas.journal import Record

NETADAPT_STUDY = "nas-netadapt"
START_LATENCY_KEY = "nas_start_latency_ms"
MAX_TRIALS = 100_000
SELECTIONS = ("accuracy", "efficiency")
# Settings that define the run's trials; resuming with any of them changed is refused. ``long_term_steps``
# only concerns the end, and data location, threads of training and the table file may change.
IDENTITY_FIELDS = ("start", "latency_ratio", "latency_target_ms", "dataset", "weights", "resolution",
                   "train_resolution", "short_term_steps", "initial_steps", "reduction", "decay", "selection",
                   "batch_size", "learning_rate", "initial_learning_rate", "max_iterations", "granularity", "seed",
                   "latency_threads", "latency")
_NUMBER_OR_NONE = (float, int, type(None))
_INT_OR_NONE = (int, type(None))
_TYPES: dict[str, Any] = {
    "out": str, "start": str, "latency_ratio": _NUMBER_OR_NONE, "latency_target_ms": _NUMBER_OR_NONE,
    "dataset": str, "data_dir": (str, type(None)), "download": bool, "weights": (str, type(None)),
    "resolution": _INT_OR_NONE, "train_resolution": _INT_OR_NONE, "short_term_steps": int, "long_term_steps": int,
    "initial_steps": int, "reduction": (float, int), "decay": (float, int), "selection": str, "batch_size": int,
    "learning_rate": (float, int), "initial_learning_rate": (float, int), "max_iterations": int, "granularity": int,
    "seed": int, "threads": int, "latency_threads": int, "table": (str, type(None)), "latency": dict,
    **BACKEND_TYPES,
}


@dataclass
class NetAdaptSettings(BackendSettings):
    """Everything ``nas netadapt`` takes (CLI flags or a YAML ``--config``); see the module docstring.

    Exactly one of ``latency_ratio`` (the budget as a fraction of the starting network's predicted
    latency) and ``latency_target_ms`` is given. ``reduction`` / ``decay``: the schedule (each
    iteration removes ``reduction * decay^k`` of the starting latency); ``selection``: how the
    proposal of an iteration is chosen (``controllers.netadapt``). ``latency`` (config file only)
    holds options of the measurement harness (``min_repetitions``, ``max_seconds``, ``rounds``, ...).
    Execution (``backend``, ``workers``, ...) is ``nas search``'s: the proposals of an iteration are
    fine-tuned in parallel; there are no epochs to stop early.
    """

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

    def validate(self) -> None:
        """``ValueError`` naming the first bad setting."""
        check_types(self, _TYPES)
        if not self.out:
            raise ValueError("out: a run directory is required")
        if (self.latency_ratio is None) == (self.latency_target_ms is None):
            raise ValueError("latency budget: give exactly one of --latency-ratio and --latency-target-ms")
        if self.latency_ratio is not None and not 0 < self.latency_ratio < 1:
            raise ValueError(f"latency_ratio: must be in (0, 1), got {self.latency_ratio!r}")
        if self.latency_target_ms is not None and not (math.isfinite(self.latency_target_ms)
                                                       and self.latency_target_ms > 0):
            raise ValueError(f"latency_target_ms: must be a positive number, got {self.latency_target_ms!r}")
        if self.dataset not in registry.datasets:
            raise ValueError(f"dataset: unknown dataset {self.dataset!r}; valid: {registry.datasets.names()}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection: {self.selection!r} is not a selection; valid: {list(SELECTIONS)}")
        for name in ("short_term_steps", "long_term_steps", "initial_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be an integer >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "max_iterations", "granularity", "threads", "latency_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be a positive integer, got {getattr(self, name)}")
        for name in ("threads", "latency_threads"):
            if getattr(self, name) > MAX_THREADS:
                raise ValueError(f"{name}: must be in [1, {MAX_THREADS}], got {getattr(self, name)}")
        for name in ("learning_rate", "initial_learning_rate"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name}: must be a positive number, got {getattr(self, name)!r}")
        if self.weights is None and self.initial_steps == 0:
            raise ValueError("initial_steps: without --weights the starting network is trained first; give it steps")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed: must be in [0, 2**63 - 1], got {self.seed}")
        check_backend_settings(self)
        if self.early_stop is not None:
            raise ValueError("early_stop: NetAdapt's short-term fine-tunes have no epochs to stop early")

    def identity(self, start: dict[str, Any], weights_digest: str | None) -> dict[str, Any]:
        """The settings a resumed run must match: the start's genotype JSON and the weights' SHA-256, not paths."""
        values = {**asdict(self), "start": start, "weights": weights_digest}
        return {key: values[key] for key in IDENTITY_FIELDS}


def width_space_from_identity(identity: Any, where: Path) -> WidthSpace:
    """The width space of a run from its recorded settings (``nas doctor --export`` of a NetAdapt run)."""
    from nas.api import resolve

    try:
        start = resolve(identity["start"])
        return WidthSpace(start.space, start.genotype, identity["granularity"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: the run's settings are unreadable; nothing to resume from") from None


@dataclass
class NetAdaptParts:
    """The resolved start, its width space and the two evaluators of one run."""

    start: Any  # nas.api.Resolved
    space: WidthSpace
    finetune: Any
    latency: Any
    weights: dict[str, Any] | None
    weights_digest: str | None


def build_parts(settings: NetAdaptSettings) -> NetAdaptParts:
    """Resolve the start, load the data and given weights, build the evaluators (``ValueError`` for a mistake)."""
    from nas.api import resolve

    settings.validate()
    try:
        start = resolve(settings.start)
    except ValueError as error:
        raise ValueError(f"from: {error}") from None
    space = WidthSpace(start.space, start.genotype, settings.granularity)
    finetune = _make_finetune(settings, space)
    try:
        latency = make_evaluator("latency", space, seed=settings.seed, table=settings.table,
                                 resolution=settings.resolution, threads=settings.latency_threads,
                                 num_classes=finetune.splits.num_classes, measure=True, **settings.latency)
    except TypeError as error:
        raise ValueError(f"latency: {error}") from None
    latency.prepare()
    weights, digest = None, None
    if settings.weights is not None:
        weights, digest = _load_weights(settings.weights, start, finetune)
    return NetAdaptParts(start, space, finetune, latency, weights, digest)


def _make_finetune(settings: NetAdaptSettings, space: WidthSpace) -> Any:
    finetune = make_evaluator("finetune", space, seed=settings.seed, dataset=settings.dataset,
                              data_dir=settings.data_dir, download=settings.download, steps=settings.short_term_steps,
                              batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                              resolution=settings.train_resolution)
    finetune.prepare()
    return finetune


class NetAdaptEvaluation:
    """One proposal's short-term fine-tune from its parent's weights, in the driver's process or a Ray worker.

    The parent (the iteration's current network, ``parent``: its choices) and the trial whose
    weights it has (``parent_trial``; None: the start) come from the controller through the
    driver (``Driver(inputs=...)``); the weights are read from ``weights_dir`` (or are the
    start's), and the proposal's own are written there before its result is returned.
    """

    def __init__(self, space: WidthSpace, finetune: Any, weights_dir: Path, start_state: dict[str, Any]) -> None:
        self.space, self.finetune, self.weights_dir, self.start_state = space, finetune, weights_dir, start_state
        self.finetune.weights_dir = weights_dir
        self._cache: dict[int | None, dict[str, Any]] = {}

    def state(self, trial: int | None) -> dict[str, Any]:
        """The weights of the network of ``trial`` (None: the start); the last one asked is kept."""
        import torch

        if trial not in self._cache:
            self._cache.clear()
            self._cache[trial] = self.start_state if trial is None else torch.load(
                self.weights_dir / f"trial-{trial}.pt", map_location="cpu", weights_only=True)
        return self._cache[trial]

    def __call__(self, genotype: Any, trial_id: int, parent: dict[str, Any] | None = None,
                 parent_trial: int | None = None) -> dict[str, Any]:
        parent_genotype = self.space.decode(parent if parent is not None else self.space.start_widths)
        self.finetune.set_parent(parent_genotype, self.state(parent_trial))
        return self.finetune.evaluate(genotype, trial_id, steps=0 if trial_id == 0 else None)


def netadapt_evaluation(settings: NetAdaptSettings, out: Path) -> NetAdaptEvaluation:
    """A run's evaluation built from its settings and run directory alone (in a Ray worker: the
    run directory must be on a file system the workers share, for the weights)."""
    import torch

    from nas.api import resolve

    start = resolve(settings.start)
    space = WidthSpace(start.space, start.genotype, settings.granularity)
    finetune = _make_finetune(settings, space)
    if settings.weights is not None:
        state, _ = _load_weights(settings.weights, start, finetune)
    else:
        state = torch.load(out / "start.pt", map_location="cpu", weights_only=True)
    return NetAdaptEvaluation(space, finetune, out / "weights", state)


def _load_weights(path: str, start: Any, finetune: Any) -> tuple[dict[str, Any], str]:
    """The state dict in ``path`` (a ``nas materialize`` .pt file or a plain state dict) for the start network."""
    import torch

    from nas.compile import compile as compile_ir

    try:
        data = Path(path).read_bytes()
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"weights: {path}: no such file") from None
    except Exception as error:  # noqa: BLE001  (corrupt or foreign files)
        raise ValueError(f"weights: {path}: not a weights file ({type(error).__name__})") from None
    if isinstance(payload, dict) and "state_dict" in payload:
        if payload.get("genotype") != start.to_json():
            raise ValueError(f"weights: {path} holds another network than --from {start.name or 'the start'}")
        payload = payload["state_dict"]
    try:
        compile_ir(finetune.lower(start.genotype)).load_state_dict(payload)
    except (RuntimeError, TypeError, AttributeError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = (lines[1] if len(lines) > 1 else lines[0] if lines else type(error).__name__)[:200]
        raise ValueError(f"weights: {path} does not fit the starting network with "
                         f"{finetune.splits.num_classes} classes ({detail})") from None
    return payload, hashlib.sha256(data).hexdigest()


def run_netadapt(settings: NetAdaptSettings, parts: NetAdaptParts | None = None,
                 on_record: Callable[[Record, bool], None] | None = None) -> dict[str, Any]:
    """Run (or resume) NetAdapt; write best.json, best.pt, netadapt.json and netadapt.png; return the summary."""
    from nas.storage import study_names
    from nas.lock import RunLock
    from nas.netadapt.outputs import long_term, write_outputs
    from nas.loop import Driver, accuracy_reward

    parts = parts or build_parts(settings)
    backend = make_backend(settings)
    out = Path(settings.out)
    job = EvaluationJob(build=functools.partial(netadapt_evaluation, settings, out), space=parts.space,
                        reward=accuracy_reward, threads=settings.threads)
    from nas.journal import check_recorded_settings

    check_recorded_settings(out, NETADAPT_STUDY, settings.identity(parts.start.to_json(), parts.weights_digest))
    with with_backend(backend, job):  # checked before anything is written, closed however this ends
        check_run_directory(out)
        others = [name for name in study_names(out) if name != NETADAPT_STUDY]
        if others:
            raise ValueError(f"{out} holds another kind of run (study {others[0]!r}); use another --out")
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        with RunLock(out):
            journal = open_journal(out, created, None, NETADAPT_STUDY,
                                   settings.identity(parts.start.to_json(), parts.weights_digest))
            weights_dir = out / "weights"
            weights_dir.mkdir(exist_ok=True)
            with intra_op_threads(settings.threads):
                start_state = parts.weights or _trained_start(out, settings, parts)
            start_latency = journal.study.user_attrs.get(START_LATENCY_KEY)
            if start_latency is None:
                start_latency = parts.latency.predict_ms(parts.start.genotype)
                journal.study.set_user_attr(START_LATENCY_KEY, start_latency)
            target = settings.latency_target_ms or settings.latency_ratio * start_latency
            controller = make_controller(
                "netadapt", parts.space, seed=settings.seed, latency=parts.latency.predict_ms, target_ms=target,
                start_latency_ms=start_latency, reduction=settings.reduction, decay=settings.decay,
                selection=settings.selection, max_iterations=settings.max_iterations)
            evaluation = job.prebuilt = NetAdaptEvaluation(parts.space, parts.finetune, weights_dir, start_state)

            def parent(genotype: Any, trial_id: int) -> dict[str, Any]:
                current, trial = controller.parent  # the iteration's network: every proposal in flight shares it
                return {"parent": parts.space.encode(current), "parent_trial": trial}

            def recorded(record: Record, replayed: bool) -> None:
                _drop_unchosen(weights_dir, controller)
                if on_record is not None:
                    on_record(record, replayed)

            # The latency (the table's prediction, the harness's measurement) is the driver's: it describes
            # this device, not a worker's, and the table is written by one process.
            driver = Driver(parts.space, controller, journal, MAX_TRIALS, on_record=recorded,
                            annotate=parts.latency.evaluate, inputs=parent)
            try:
                backend.run(driver, job)
            except RuntimeError as error:  # replay met another proposal than the journal holds
                if "proposed another genotype" not in str(error):
                    raise
                raise ValueError(f"{error}; was the lookup table of this run changed or replaced? Give it back "
                                 "(--table) or start a new run") from None
            _drop_unchosen(weights_dir, controller)
            with intra_op_threads(settings.threads):
                final = long_term(settings, parts, controller, evaluation.state(controller.parent[1]))
            return write_outputs(out, settings, parts, controller, journal, final, target, start_latency)


def _trained_start(out: Path, settings: NetAdaptSettings, parts: NetAdaptParts) -> dict[str, Any]:
    """The starting network trained for ``initial_steps`` from scratch, kept in ``OUT/start.pt``."""
    import torch

    from nas.compile import compile as compile_ir
    from nas.files import atomic_torch_save
    from nas.seeds import trial_seeds

    path = out / "start.pt"
    if path.exists():
        return torch.load(path, map_location="cpu", weights_only=True)
    seeds = trial_seeds(settings.seed, MAX_TRIALS)  # a stream no trial uses
    model = compile_ir(parts.finetune.lower(parts.start.genotype), seed=seeds.init)
    parts.finetune.train(model, settings.initial_steps, seeds.data_order, learning_rate=settings.initial_learning_rate)
    state = model.state_dict()
    atomic_torch_save(path, state)
    return state


def _drop_unchosen(weights_dir: Path, controller: Any) -> None:
    """Delete the weights of proposals their iteration did not choose, and of the start's evaluation
    (trial 0): only the chosen ones are ever inherited from."""
    (weights_dir / "trial-0.pt").unlink(missing_ok=True)
    for iteration in controller.history:
        for proposal in iteration["proposals"]:
            if proposal["trial"] != iteration["chosen"]:
                (weights_dir / f"trial-{proposal['trial']}.pt").unlink(missing_ok=True)
