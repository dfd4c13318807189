"""The ``ray`` backend: evaluations on Ray Tune, locally or on a cluster, with ASHA early stopping.

Ray only executes evaluations; the driver (``nas.loop.Driver``: controller, journal, resume)
stays in the calling process, so a Ray run writes exactly the journal of a local one and resumes
the same way, with either backend. The bridge is a Tune ``Searcher`` (as NNI and Optuna
integrations do): Tune asks it for a configuration whenever a worker is free (``suggest``: the
controller's next trial, ``None`` while it waits for pending results) and reports every finished
trial (``on_trial_complete``: recorded, told, state saved). The trainable builds the evaluation
once per worker process (``EvaluationJob``) and runs it with ``cpus_per_trial`` intra-op threads.

- Up to ``workers`` trials run at once (``max_concurrent_trials``), each reserving
  ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs; actors are reused between trials.
- ``early_stop="asha"``: the evaluation reports validation accuracy after every epoch and Tune's
  ``ASHAScheduler`` (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys
  2020) stops a trial whose reward at a rung (epochs ``grace_period * reduction_factor^k``) is not
  in the top ``1 / reduction_factor`` of those recorded there. A stopped trial is recorded with its
  last metrics (its accuracy then, ``epochs`` it ran) and ``early_stopped: true``, and the
  controller is told that reward.
- Faults: a worker that dies mid-evaluation (killed, out of memory, a lost node) makes Tune run
  the trial again, at most ``retries`` times (same seed, so the same metrics); after that the trial
  is recorded as failed with Ray's reason. A failed *evaluation* (NaN loss, time limit) is a
  result, never retried.
- ``address`` joins an existing cluster (``ray start --head``; ``"auto"`` finds a local one);
  without it a local Ray with ``workers * cpus_per_trial`` CPUs is started and shut down after.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nas.backend import EvaluationJob, intra_op_threads
from nas.errors import first_line
from nas.loop import evaluate_guarded

if TYPE_CHECKING:
    from nas.loop import Driver

logger = logging.getLogger(__name__)

METRIC = "nas_reward"  # what ASHA compares: the search's reward of the metrics so far
EPOCH = "nas_epoch"  # ASHA's time attribute: epochs trained
DEFAULT_RETRIES = 2
ASHA_DEFAULTS: dict[str, Any] = {"grace_period": 1, "reduction_factor": 2, "brackets": 1}
MAX_BRACKETS = 32  # ASHA's brackets (Hyperband's); Ray builds each up front
_JOBS: dict[str, EvaluationJob] = {}  # in a worker process: the evaluations built so far, by job key


class RayBackend:
    """Run a search's evaluations on Ray Tune (see the module docstring)."""

    name = "ray"

    def __init__(
        self,
        workers: int = 1,
        address: str | None = None,
        cpus_per_trial: int = 1,
        gpus_per_trial: float = 0.0,
        early_stop: str | None = None,
        early_stop_options: Mapping[str, Any] | None = None,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries: must be an integer >= 0 (runs of a trial whose worker died), got {retries!r}")
        options = dict(early_stop_options or {})
        unknown = sorted(set(options) - set(ASHA_DEFAULTS))
        if unknown:
            raise ValueError(
                f"early_stop_options: {unknown[0]!r} is not an ASHA option; valid: {sorted(ASHA_DEFAULTS)}"
            )
        self.asha = {**ASHA_DEFAULTS, **options}
        for key, low in (("grace_period", 1), ("brackets", 1)):
            value = self.asha[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"early_stop_options: {key} must be an integer >= {low}, got {value!r}")
        factor = self.asha["reduction_factor"]
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 1 < factor < math.inf:
            raise ValueError(f"early_stop_options: reduction_factor must be a number > 1, and finite, got {factor!r}")
        if self.asha["brackets"] > MAX_BRACKETS:  # Ray builds every bracket up front: 10**9 never starts
            raise ValueError(
                f"early_stop_options: brackets must be at most {MAX_BRACKETS}, got {self.asha['brackets']}"
            )
        if address is None and cpus_per_trial > (cores := _cores_here()):  # the local Ray is sized to the request
            raise ValueError(
                f"cpus_per_trial: a trial asks for {cpus_per_trial} CPUs and this machine has {cores}; a local "
                "Ray would run none of them faster (give --address of a cluster whose nodes have them)"
            )
        self.workers, self.address, self.retries = workers, address, retries
        self.cpus_per_trial, self.gpus_per_trial, self.early_stop = cpus_per_trial, gpus_per_trial, early_stop
        self._started_here, self._startup_seconds = False, 0.0

    def check(self, job: EvaluationJob) -> None:
        """``ValueError`` for early stopping asked of an evaluation that reports no epochs, a cluster that
        cannot be started or joined, or one no node of which can hold a trial; all before the run
        directory is touched. Connects to Ray (``close`` lets go of a Ray this backend started)."""
        if self.early_stop is not None:
            self._check_early_stop(job)
        if self.address is not None:
            _check_reachable(self.address)
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0
        import ray  # lazy: Ray only when a run uses it

        began = time.perf_counter()
        self._started_here = self._connect(ray) or self._started_here
        self._startup_seconds = time.perf_counter() - began

    def close(self) -> None:
        """Shut down the local Ray this backend started, if any."""
        if self._started_here:
            import ray  # lazy: Ray only when a run uses it

            ray.shutdown()
            self._started_here = False

    def _check_early_stop(self, job: EvaluationJob) -> None:
        if not job.reports:
            raise ValueError(
                "early_stop: this evaluation reports no per-epoch accuracy (its evaluator's evaluate() "
                "takes no 'report', or --repeats > 1), so ASHA has nothing to compare"
            )
        if not isinstance(job.epochs, int) or job.epochs < 2:
            raise ValueError(
                f"early_stop: ASHA needs evaluations of 2 epochs or more to stop one early, got {job.epochs!r}"
            )
        if self.asha["grace_period"] >= job.epochs:
            raise ValueError(
                f"early_stop_options: grace_period {self.asha['grace_period']} must be below the "
                f"evaluation's {job.epochs} epochs"
            )
        rungs = math.log(job.epochs / self.asha["grace_period"]) / math.log(self.asha["reduction_factor"])
        if rungs > job.epochs:  # Ray builds every rung up front: a factor of 1.0000001 took 15 s and grew with it
            raise ValueError(
                f"early_stop_options: reduction_factor {self.asha['reduction_factor']!r} is so close to 1 that "
                f"ASHA would compare at {rungs:,.0f} rungs within {job.epochs} epochs; use 2 or more"
            )

    def run(self, driver: Driver, job: EvaluationJob) -> None:
        """Evaluate the driver's trials on Ray until it is done; a fault of the driver's own is raised after."""
        import ray  # lazy: Ray only when a run uses it
        from ray import tune  # lazy: Ray only when a run uses it
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler  # lazy: Ray only when a run uses it

        if not ray.is_initialized():  # not checked (or closed) before: connect now
            self.check(job)
        try:
            driver.stats.startup_seconds = self._startup_seconds
            driver.stats.backend, driver.stats.workers = self.name, self.workers
            searcher = _DriverSearcher(driver, self.cpus_per_trial, report=self.early_stop is not None)
            scheduler = (
                ASHAScheduler(time_attr=EPOCH, metric=METRIC, mode="max", max_t=job.epochs, **self.asha)
                if self.early_stop == "asha"
                else FIFOScheduler()
            )
            trainable = tune.with_resources(
                tune.with_parameters(run_trial, job=job), {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}
            )
            name: Callable[[Any], str] = lambda trial: f"trial-{trial.config['nas_trial']}"  # noqa: E731
            with tempfile.TemporaryDirectory(prefix="nas-ray-") as storage:  # Tune's own files; the journal is ours
                tuner = tune.Tuner(
                    trainable,
                    tune_config=tune.TuneConfig(
                        search_alg=searcher,
                        scheduler=scheduler,
                        num_samples=-1,
                        max_concurrent_trials=self.workers,
                        reuse_actors=True,
                        trial_name_creator=name,
                        trial_dirname_creator=name,
                    ),
                    run_config=tune.RunConfig(
                        name="nas",
                        storage_path=storage,
                        verbose=0,
                        stop=_StopOnFault(searcher),
                        callbacks=[_ErrorReasons(searcher, self.retries)],
                        failure_config=tune.FailureConfig(max_failures=self.retries),
                    ),
                )
                # A failed trial is recorded with its reason: Tune's own report of it is noise.
                quiet = logging.getLogger("ray.tune")
                level = quiet.level
                quiet.setLevel(logging.CRITICAL)
                try:
                    tuner.fit()
                finally:
                    quiet.setLevel(level)
            searcher.flush()
        finally:
            self.close()
        if searcher.fault is not None:
            raise searcher.fault
        if not driver.done:  # Tune stopped early: Ctrl-C (it catches SIGINT and winds down)
            raise KeyboardInterrupt

    def _connect(self, ray: Any) -> bool:
        """Join the cluster at ``address`` or start a local Ray; True if this call started it."""
        if ray.is_initialized():
            started = False
        else:
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": True,
                "logging_level": logging.WARNING,
            }
            try:
                if self.address is not None:
                    ray.init(address=self.address, **options)
                else:
                    ray.init(num_cpus=self.workers * self.cpus_per_trial, **options)  # GPUs: those Ray detects
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
                hint = (
                    "; a cluster started by `ray start` uses token authentication: set RAY_AUTH_MODE=token here too"
                    if self.address and os.environ.get("RAY_AUTH_MODE") != "token"
                    else ""
                )
                raise ValueError(f"address: cannot start or join {where} ({first_line(error)}){hint}") from None
            started = True
        nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
        if not any(
            node.get("CPU", 0) >= self.cpus_per_trial and node.get("GPU", 0) >= self.gpus_per_trial for node in nodes
        ):  # Tune would wait for such a node forever
            largest = max(nodes, key=lambda node: (node.get("GPU", 0), node.get("CPU", 0)), default={})
            if started:
                ray.shutdown()
            raise ValueError(
                f"cpus_per_trial / gpus_per_trial: a trial asks for {self.cpus_per_trial} CPUs and "
                f"{self.gpus_per_trial:g} GPUs, and no node of the Ray cluster has them (the largest: "
                f"{largest.get('CPU', 0):g} CPUs, {largest.get('GPU', 0):g} GPUs)"
            )
        return started


def _cores_here() -> int:
    """The CPU cores this process may run on (its affinity, where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_trial(config: dict[str, Any], job: EvaluationJob) -> None:
    """The Tune trainable: evaluate one trial in a worker and report its metrics.

    Per-epoch metrics are reported when early stopping is on; the last report (``nas_final``)
    holds the evaluation's metrics. Metrics travel as JSON text, so Tune neither flattens nor
    alters them (floats survive JSON exactly).
    """
    from ray import tune  # lazy: Ray only when a run uses it

    if os.path.isdir(config.get("nas_cwd") or ""):  # Tune runs a trial in its own folder; paths are the driver's
        os.chdir(config["nas_cwd"])
    job = _JOBS.setdefault(job.key, job)  # built once per worker process
    try:
        evaluate = job.evaluation()
    except Exception as error:
        tune.report(
            {
                EPOCH: 0,
                METRIC: math.nan,
                "nas_final": True,
                "nas_fatal": f"{type(error).__name__}: {first_line(error)}",
                "nas_metrics": "{}",
            }
        )
        return
    context = dict(config.get("nas_context") or {})
    trial_id = int(config["nas_trial"])
    genotype = job.space.decode(config["nas_choices"])

    def report(metrics: Mapping[str, Any]) -> None:
        metrics = {**metrics, **context}
        tune.report(
            {
                EPOCH: int(metrics.get("epochs", 0)),
                METRIC: _score(job, metrics),
                "nas_final": False,
                "nas_metrics": json.dumps(metrics, default=str),
            }
        )

    keywords = {**(config.get("nas_inputs") or {}), **({"report": report} if config.get("nas_report") else {})}
    with intra_op_threads(int(config["nas_threads"])):
        began = time.perf_counter()
        metrics = evaluate_guarded(evaluate, genotype, trial_id, **keywords)
        seconds = time.perf_counter() - began
    tune.report(
        {
            EPOCH: int(metrics.get("epochs", job.epochs or 0) or 0),
            METRIC: _score(job, {**metrics, **context}),
            "nas_final": True,
            "nas_seconds": seconds,
            "nas_metrics": json.dumps(metrics, default=str),
        }
    )


def _score(job: EvaluationJob, metrics: Mapping[str, Any]) -> float:
    """The reward of ``metrics`` for ASHA; NaN for a failed evaluation or a missing reward, which ASHA's
    rung percentiles ignore (an infinite value would make every cutoff infinite or NaN, stopping nothing)."""
    if metrics.get("error"):
        return math.nan
    try:
        value = float(job.reward(metrics))
    except (KeyError, TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _searcher_base() -> type:
    from ray.tune.search import Searcher  # lazy: Ray only when a run uses it

    return Searcher


class _DriverSearcher(_searcher_base()):  # type: ignore[misc]
    """Tune's view of the driver: trials from ``driver.next_trial``, results to ``driver.complete``.

    A fault of the driver's own (the journal cannot be written, a replay mismatch) is kept in
    ``fault``; it ends the Tune run (``_StopOnFault``) and is raised after it.
    """

    def __init__(self, driver: Driver, threads: int, report: bool) -> None:
        super().__init__(metric=METRIC, mode="max")
        self.driver, self.threads, self.report = driver, threads, report
        self.fault: BaseException | None = None
        self.journal_fault = False  # the fault is the driver's own (the journal): nothing more can be recorded
        self.running: dict[str, int] = {}  # Tune trial id -> our trial id
        self.errored: dict[str, int] = {}  # failed for good, waiting for their reason
        self.reasons: dict[str, str] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.fault is not None:
            return self.FINISHED
        try:
            self.flush()
            trial = self.driver.next_trial()
            if trial is None:
                if self.driver.exhausted:
                    return self.FINISHED
                if not self.driver.in_flight:
                    raise RuntimeError("the controller is waiting for results, but none are pending")
                return None  # Tune asks again when a trial finishes
        except BaseException as error:
            self.fault, self.journal_fault = error, True
            return self.FINISHED
        self.running[trial_id] = trial.id
        return {
            "nas_trial": trial.id,
            "nas_choices": self.driver.space.encode(trial.genotype),
            "nas_cwd": os.getcwd(),
            "nas_context": self.driver.context.get(trial.id, {}),
            "nas_inputs": self.driver.keywords.get(trial.id, {}),
            "nas_threads": self.threads,
            "nas_report": self.report,
        }

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        ours = self.running.pop(trial_id, None)
        if ours is None or self.journal_fault:
            return
        if self.fault is not None and not (result or {}).get("nas_final"):
            return  # stopped because of the fault, not by ASHA: unfinished, a resumed run evaluates it
        if error:
            self.errored[trial_id] = ours
            if trial_id in self.reasons:
                self._fail(trial_id, self.reasons.pop(trial_id))
            return
        if result is not None and result.get("nas_fatal"):  # the trial stays unfinished: a resumed run evaluates it
            self.fault = self.fault or ValueError(
                f"a Ray worker could not prepare the evaluation ({result['nas_fatal']}); are the data and files at the "
                "same paths on every node?"
            )
            return
        if result is None or "nas_metrics" not in result:
            self._complete(ours, {"error": "stopped before it reported anything"}, None)
            return
        metrics = json.loads(result["nas_metrics"])
        if not result.get("nas_final"):  # stopped by the scheduler at a rung
            metrics["early_stopped"] = True
        self._complete(ours, metrics, result.get("nas_seconds", result.get("time_total_s")))

    def record_error(self, trial_id: str, reason: str) -> None:
        """The reason of a trial that failed for good (Tune's callbacks see it; a searcher does not)."""
        if trial_id in self.errored:
            self._fail(trial_id, reason)
        else:
            self.reasons[trial_id] = reason

    def flush(self) -> None:
        """Record failed trials whose reason never came."""
        for trial_id in list(self.errored):
            self._fail(trial_id, "its Ray worker failed")

    def _fail(self, trial_id: str, reason: str) -> None:
        self._complete(self.errored.pop(trial_id), {"error": reason}, None)

    def _complete(self, ours: int, metrics: dict[str, Any], seconds: float | None) -> None:
        try:
            self.driver.complete(ours, metrics, seconds)
        except BaseException as error:
            self.fault, self.journal_fault = error, True

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its configuration (``tuner.pkl``); the driver (journal, controller, a progress bar)
        stays in this process: a copy of the searcher has none."""
        return {**self.__dict__, "driver": None}

    def save_to_dir(self, *args: Any, **kwargs: Any) -> None:
        """Nothing: the journal and the controller state are the search's checkpoint."""

    def restore_from_dir(self, *args: Any, **kwargs: Any) -> None:
        """Nothing: a search resumes from its journal (``nas search`` again), not from Tune's files."""


def _callback_base() -> type:
    from ray import tune  # lazy: Ray only when a run uses it

    return tune.Callback


def _stopper_base() -> type:
    from ray import tune  # lazy: Ray only when a run uses it

    return tune.Stopper


class _ErrorReasons(_callback_base()):  # type: ignore[misc]
    """Hands the searcher the reason of a trial that failed for good (from Tune's error file)."""

    def __init__(self, searcher: _DriverSearcher, retries: int) -> None:
        self.searcher, self.attempts = searcher, retries + 1

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        runs = f"{self.attempts} run{'s' if self.attempts > 1 else ''}"
        self.searcher.record_error(trial.trial_id, f"its Ray worker failed ({runs}): {_error_line(trial)}")


class _StopOnFault(_stopper_base()):  # type: ignore[misc]
    """Stops every trial once the driver has a fault of its own."""

    def __init__(self, searcher: _DriverSearcher) -> None:
        self.searcher = searcher

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.searcher.fault is not None


def _error_line(trial: Any) -> str:
    """The exception line of a failed Tune trial (``ActorDiedError: The actor died ...``)."""
    path = getattr(trial, "error_file", None)
    try:
        with open(path, encoding="utf-8", errors="replace") if path else contextlib.nullcontext() as handle:
            text = handle.read() if handle is not None else ""
    except OSError:
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head and " " not in head and (head.endswith(("Error", "Exception")) or head.endswith("Exit")):
            return line.replace("ray.exceptions.", "")[:300]
    return lines[-1][:300] if lines else "no error file"


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """``ValueError`` unless something listens at a ``host:port`` address (Ray itself would retry for minutes).

    ``auto``, ``local`` and ``ray://`` (Ray Client) addresses are left to Ray.
    """
    host, colon, port = address.rpartition(":")
    if address in ("auto", "local") or "://" in address or not colon or not port.isdigit():
        return
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise ValueError(
            f"address: nothing answers at {address} ({error.strerror or error}); start the head with "
            "`ray start --head` and give its address"
        ) from None
