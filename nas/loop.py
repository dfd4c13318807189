"""The search loop: ask, evaluate, tell, record. ``Driver`` keeps the books; ``search`` runs it sequentially.

Resuming is replay: the controller restarts from its last saved state (or from scratch) and
asks again; a trial the journal already holds is told its recorded result instead of being
evaluated, after checking that the controller proposed the same genotype. Because controllers
and evaluations draw their randomness from (seed, trial id), a resumed search proposes the same
trials in the same order as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nas.controller import Controller, Result, Trial
from nas.controller_base import ControllerBase
from nas.journal import Journal, Record
from nas.objective import MetricObjective
from nas.serialization import genotype_json
from nas.space import SearchSpace

logger = logging.getLogger(__name__)

Evaluate = Callable[[Any, int], Mapping[str, Any]]
Reward = Callable[[Mapping[str, Any]], float]
ACCURACY = MetricObjective("accuracy")
# How long finished trials may wait in memory before they and the controller state are written. An
# evaluation that takes longer is written as soon as it is told (as every one was before batching);
# table lookups are written a few hundred at a time, so a kill -9 costs at most this much work.
FLUSH_SECONDS = 0.5


def accuracy_reward(metrics: Mapping[str, Any]) -> float:
    """The default objective's reward: the validation accuracy (``nas.objective``)."""
    return ACCURACY.reward(metrics)


@dataclass
class SearchStats:
    """Where the time went: evaluation versus the loop's own work (ask, tell, journal, state).

    ``evaluation_seconds`` sums every evaluation, so with ``workers`` > 1 it exceeds the wall time;
    ``loop_seconds`` is the driver's own work, measured; ``startup_seconds`` what a backend spent
    before the first trial (starting Ray, say).
    """

    evaluated: int = 0
    replayed: int = 0
    evaluation_seconds: float = 0.0
    wall_seconds: float = 0.0
    per_trial: list[float] = field(default_factory=list)
    loop_seconds: float = 0.0
    startup_seconds: float = 0.0
    backend: str = "local"
    workers: int = 1
    early_stopped: int = 0

    @property
    def overhead_seconds(self) -> float:
        """The loop's own time: the wall time not spent evaluating (one worker), or the driver's measured work."""
        if self.workers == 1:
            return max(0.0, self.wall_seconds - self.startup_seconds - self.evaluation_seconds)
        return self.loop_seconds

    @property
    def overhead_fraction(self) -> float:
        return self.overhead_seconds / self.wall_seconds if self.wall_seconds else 0.0


class ReplayMismatch(RuntimeError):
    """A resumed run's controller proposed another trial than its journal holds: the run directory was
    written by other code or settings (its kind may say which)."""


def to_result(metrics: Mapping[str, Any], reward: Reward) -> Result:
    """A failed evaluation (``error`` in its metrics, or no finite reward) becomes a failed Result."""
    metrics = dict(metrics)
    error = metrics.pop("error", None)
    if error:
        return Result.failure(str(error), metrics)
    try:
        value = float(reward(metrics))
    except (KeyError, TypeError, ValueError) as exc:
        return Result.failure(f"no reward: {exc.__class__.__name__}: {exc}", metrics)
    if not math.isfinite(value):
        return Result.failure(f"non-finite reward {value}", metrics)
    return Result(reward=value, metrics=metrics)


def evaluate_guarded(
    evaluate: Callable[..., Mapping[str, Any]], genotype: Any, trial_id: int, **keywords: Any
) -> dict[str, Any]:
    """``evaluate(genotype, trial_id, **keywords)``, with an exception turned into a failed evaluation.

    Evaluators report a bad candidate as ``{"error": ...}``; this is the backstop for one that raises.
    (``SystemExit`` is not caught: Ray Tune stops an early-stopped trial with it.)
    """
    try:
        return dict(evaluate(genotype, trial_id, **keywords))
    except Exception as error:
        logger.exception("evaluation of trial %d raised", trial_id)
        return {"error": f"{error.__class__.__name__}: {error}"}


class Driver:
    """The driver's side of a search, whoever runs the evaluations: propose, replay, record.

    ``next_trial()`` hands out the next trial to evaluate (``None`` while the controller waits for
    pending results, or once ``exhausted``); ``complete(trial_id, metrics)`` records its result
    in the journal, tells the controller and saves its state. Trials the journal already holds
    (finished before a crash) are told their recorded result instead of being handed out, after
    checking that the controller proposed the same genotype. A sequential loop (``search``) and a
    parallel backend (Ray Tune, ``backends/ray_tune.py``) drive the same object, so they record
    the same journal.

    ``annotate(genotype, trial_id)``: metrics the driver computes itself before a trial is handed
    out (the mnas objective's lookup-table latency: it describes the target device, not a
    worker's), added to the trial's metrics; if they hold an ``error`` the trial is recorded as
    failed without being evaluated. ``context[trial_id]`` holds them while the trial is in flight.
    ``inputs(genotype, trial_id)``: keyword arguments of the evaluation that the driver decides
    when it hands the trial out (NetAdapt: the network to inherit weights from, which the
    controller knows); a backend passes ``keywords[trial_id]`` on.

    Writes: finished trials and the controller state are written together, at every tell by
    default; with ``flush_seconds`` (runs use ``FLUSH_SECONDS``) at most that long after a trial is
    told (at once after an evaluation slower than that), and by ``flush()``: a kill -9 loses only
    the trials told since, which a resume evaluates again.

    Resume: the controller restarts from its last saved state; its pending trials (in flight at the
    crash) are asked again, and those recorded after the state was saved are told at once, in
    journal order, each after the asks that preceded it (its ``asked``). Without a readable state
    it is rebuilt by replay: a journal recorded in order (a sequential run's) replays as its trials
    are asked again, a missing record evaluated in its place; otherwise each record's ``asked``
    (how many trials had been handed out when it was told) lets the asks and tells happen again in
    their original interleaving, which a controller that learns from the order of completions
    (evolution, TPE) needs to propose the same trials again.
    """

    def __init__(
        self,
        space: SearchSpace[Any],
        controller: Controller[Any],
        journal: Journal,
        budget: int,
        reward: Reward = accuracy_reward,
        on_record: Callable[[Record, bool], None] | None = None,
        annotate: Callable[[Any, int], Mapping[str, Any]] | None = None,
        inputs: Callable[[Any, int], Mapping[str, Any]] | None = None,
        flush_seconds: float = 0.0,
    ) -> None:
        self.space, self.controller, self.journal, self.budget = space, controller, journal, budget
        self.flush_seconds = flush_seconds
        self.reward, self.on_record, self.annotate, self.inputs = reward, on_record, annotate, inputs
        self.context: dict[int, dict[str, Any]] = {}  # the annotations of the trials in flight
        self.keywords: dict[int, dict[str, Any]] = {}  # the evaluation inputs of the trials in flight
        self.stats = SearchStats()
        self.in_flight: dict[int, Trial[Any]] = {}
        self._asked = 0  # trials handed out by the controller so far (ids issued)
        self._queue: list[Trial[Any]] = []  # asked during a replay, not finished: evaluate these first
        self._started = self._flushed = time.perf_counter()
        began = time.perf_counter()
        state = journal.load_controller()
        if state is not None and (lost := _lost_records(state, journal)):
            logger.warning(
                "the journal lacks trial %s, which the controller's saved state was told; the state is set "
                "aside and the controller rebuilt from the journal (the missing trial is evaluated again)",
                lost,
            )
            state = None
        if state is not None:
            controller.load_state_dict(state)
            self._asked = int(state.get("next_id", 0)) if isinstance(state.get("next_id"), int) else 0
            self._tell_recorded_pending()
        elif 0 < len(journal) < budget and not self._recorded_in_order():
            self._replay()  # a journal recorded in order replays as its trials are asked again (``next_trial``)
        self.stats.loop_seconds += time.perf_counter() - began

    @property
    def exhausted(self) -> bool:
        """True once no more trials will be handed out: the budget is finished or in flight, or the controller done."""
        return len(self.journal) + len(self.in_flight) >= self.budget or self.controller.finished

    @property
    def done(self) -> bool:
        """True once the search is over: exhausted and nothing in flight."""
        return self.exhausted and not self.in_flight

    def next_trial(self) -> Trial[Any] | None:
        """The next trial to evaluate, or ``None`` (the controller waits for results, or nothing is left)."""
        began = time.perf_counter()
        try:
            while not self.exhausted:
                trial = self._queue.pop(0) if self._queue else self.controller.ask()
                if trial is None:
                    return None
                self._asked = max(self._asked, trial.id + 1)
                record = self.journal.records.get(trial.id)
                if record is None:
                    self.in_flight[trial.id] = trial
                    self.context[trial.id] = dict(self.annotate(trial.genotype, trial.id)) if self.annotate else {}
                    self.keywords[trial.id] = dict(self.inputs(trial.genotype, trial.id)) if self.inputs else {}
                    if not self.context[trial.id].get("error"):
                        return trial
                    self._record(trial.id, {}, None)  # the driver's own metrics failed it: nothing to evaluate
                    continue
                self._tell(trial, record)  # finished before a crash: tell the recorded result
                self._flush_if_due()
            return None
        finally:
            self.stats.loop_seconds += time.perf_counter() - began

    def complete(self, trial_id: int, metrics: Mapping[str, Any], seconds: float | None = None) -> Record:
        """Record the evaluation of an in-flight trial, tell the controller, save its state."""
        began = time.perf_counter()
        try:
            return self._record(trial_id, metrics, seconds)
        finally:
            self.stats.loop_seconds += time.perf_counter() - began

    def _record(self, trial_id: int, metrics: Mapping[str, Any], seconds: float | None) -> Record:
        trial = self.in_flight.pop(trial_id)
        self.keywords.pop(trial_id, None)
        context = self.context.pop(trial_id, {})
        metrics = dict(context) if context.get("error") else {**metrics, **context}
        if seconds is not None:
            self.stats.evaluation_seconds += seconds
            self.stats.per_trial.append(seconds)
        self.stats.evaluated += 1
        self.stats.early_stopped += bool(metrics.get("early_stopped"))
        record = self.journal.add(
            trial.id,
            self.space,
            trial.genotype,
            genotype_json(self.space.name, trial.genotype),
            to_result(metrics, self.reward),
            asked=self._asked,
            write=False,
        )
        self.controller.tell(trial.id, record.result)
        self._flush_if_due()
        if self.on_record is not None:
            self.on_record(record, False)
        return record

    def flush(self) -> None:
        """Write the trials told since the last flush, then the controller state that follows them."""
        began = time.perf_counter()
        self.journal.flush()
        self.journal.save_controller(self.controller.state_dict())
        self._flushed = time.perf_counter()
        self.stats.loop_seconds += self._flushed - began

    def _flush_if_due(self) -> None:
        if time.perf_counter() - self._flushed >= self.flush_seconds:
            self.flush()

    def finish(self) -> SearchStats:
        """Everything written; the timing of this session, with its wall time set."""
        self.flush()
        self.stats.wall_seconds = time.perf_counter() - self._started
        return self.stats

    def _check_replayed(self, trial: Trial[Any], record: Record) -> None:
        if record.genotype != genotype_json(self.space.name, trial.genotype):
            raise ReplayMismatch(
                f"trial {trial.id}: the controller proposed another genotype than the journal "
                "holds; the run directory was written by other code or settings"
            )

    def _tell(self, trial: Trial[Any], record: Record) -> None:
        """Tell ``trial`` the result ``record`` holds (it finished before a crash)."""
        self._check_replayed(trial, record)
        self.controller.tell(trial.id, record.result)
        self.stats.replayed += 1
        if self.on_record is not None:
            self.on_record(record, True)

    def _tell_recorded_pending(self) -> None:
        """Tell a restored controller the trials recorded after its state was saved (before a crash), in the
        order they were recorded, each after the asks that preceded it then.

        Those are trials pending in the state, and trials asked after it was saved. The pending ones
        are asked again first (the resume contract); then, record by record, the controller is asked
        until it has handed out as many trials as when the record was told (``asked``; a record
        without it: its own id + 1), so a controller that learns from every tell (evolution, TPE)
        proposes the same trials again. The others asked on the way are handed out first by
        ``next_trial``. Needs a ``ControllerBase`` state (``next_id``, ``pending_ids``); another
        controller's are told as they are asked again.
        """
        if not isinstance(self.controller, ControllerBase):
            return
        pending = self.controller.pending_ids
        untold = [
            record
            for record in self.journal.records.values()
            if record.trial_id in pending or record.trial_id >= self._asked
        ]
        if not untold:
            return
        asked = {trial.id: trial for trial in (self.controller.ask() for _ in pending) if trial is not None}
        for record in untold:  # in journal order
            target = record.asked if record.asked is not None else record.trial_id + 1
            while self._asked < target and (trial := self.controller.ask()) is not None:
                asked[trial.id] = trial
                self._asked = max(self._asked, trial.id + 1)
            if record.trial_id in asked:
                self._tell(asked.pop(record.trial_id), record)
        self._queue = sorted(asked.values(), key=lambda trial: trial.id)
        self.journal.save_controller(self.controller.state_dict())

    def _recorded_in_order(self) -> bool:
        """True if every result was told right after its trial was asked (a sequential run's journal)."""
        return all(record.asked in (None, record.trial_id + 1) for record in self.journal.records.values())

    def _replay(self) -> None:
        """Rebuild the controller from the journal alone, asking and telling in the recorded interleaving."""
        asked: dict[int, Trial[Any]] = {}
        for record in self.journal.records.values():  # in the order they were told
            target = record.asked if record.asked is not None else record.trial_id + 1
            while self._asked < target:
                trial = self.controller.ask()
                if trial is None:
                    break
                asked[trial.id] = trial
                self._asked = max(self._asked, trial.id + 1)
            trial = asked.pop(record.trial_id, None)
            if trial is None and target > self.budget:
                raise ValueError(
                    f"budget: this run handed out {target} trials before it stopped; resume it with "
                    f"--budget {target} or more"
                )
            if trial is None:
                raise ReplayMismatch(
                    f"trial {record.trial_id}: the controller did not propose it again in the "
                    "recorded order; the run directory was written by other code or settings"
                )
            self._tell(trial, record)
        self._queue = sorted(asked.values(), key=lambda trial: trial.id)  # in flight at the crash
        self.journal.save_controller(self.controller.state_dict())


def _lost_records(state: Mapping[str, Any], journal: Journal) -> int | None:
    """The first trial a ``ControllerBase`` state was told (issued, not pending) that the journal lacks, or None.

    A journal row deleted by hand, or left out by a rescue, would otherwise leave the restored
    controller believing that trial finished: the run would end short of its budget.
    """
    next_id, pending = state.get("next_id"), state.get("pending")
    if not isinstance(next_id, int) or not isinstance(pending, list):
        return None
    waiting = {item.get("id") for item in pending if isinstance(item, Mapping)}
    return next((i for i in range(next_id) if i not in waiting and i not in journal.records), None)


def search(
    space: SearchSpace[Any],
    controller: Controller[Any],
    evaluate: Evaluate,
    journal: Journal,
    budget: int,
    reward: Reward = accuracy_reward,
    on_record: Callable[[Record, bool], None] | None = None,
) -> SearchStats:
    """Run until the journal holds ``budget`` finished evaluations (failed ones count as finished).

    The sequential runner: one evaluation at a time, in this process. ``on_record(record,
    replayed)`` is called after every tell (progress bars use it).
    """
    driver = Driver(space, controller, journal, budget, reward, on_record, flush_seconds=FLUSH_SECONDS)
    run_sequential(driver, evaluate)
    return driver.finish()


def run_sequential(driver: Driver, evaluate: Callable[..., Mapping[str, Any]]) -> None:
    """Hand ``driver``'s trials to ``evaluate`` one at a time until it is exhausted."""
    while not driver.exhausted:
        trial = driver.next_trial()
        if trial is None:
            if driver.exhausted:
                break
            raise RuntimeError("the controller is waiting for results, but none are pending in a sequential search")
        began = time.perf_counter()
        metrics = evaluate_guarded(evaluate, trial.genotype, trial.id, **driver.keywords.get(trial.id, {}))
        driver.complete(trial.id, metrics, time.perf_counter() - began)
