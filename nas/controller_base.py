"""``ControllerBase``: the bookkeeping every controller shares (trial ids, pending trials, budget, resume).

Ours and plug-ins' controllers subclass it. A subclass says *what* to propose (``_propose``) and
*what it learns* from a result (``_observe``);
this base class owns everything the ask/tell protocol (``nas.controller.Controller``) promises:

- trial ids count from 0 and are issued here, never by the caller (Optuna ``study.ask``);
- ``ask()`` returns ``None`` while the controller waits on pending results or once ``budget``
  trials have been issued, never raises for that (the lesson of Ray's ``FINISHED`` sentinel and
  Optuna's ``study.stop()``, style-anchors §4-§5);
- every random draw of trial ``t`` comes from a generator seeded with ``(seed, t)``
  (``trial_rng``), so a resumed or parallel search draws exactly what a sequential one would;
- ``state_dict()`` holds only what ``torch.load(weights_only=True)`` reads back (dicts, lists,
  str, int, float, bool, None, tensors); genotypes are stored as ``space.encode`` choice dicts.

Resume contract: the search loop saves ``state_dict()`` after each ``tell``. A trial that was
asked but not yet told when the state was taken is *pending*; a controller restored from that
state hands it out again, same id and same genotype, before it proposes anything new. A crash in
the middle of an evaluation therefore costs that evaluation, never a trial id or a random draw.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np

from nas.controller import Result, Trial
from nas.seeds import trial_rng, trial_seed  # noqa: F401  (re-exported for subclasses)
from nas.space import Decision, SearchSpace, check_choices

logger = logging.getLogger(__name__)

STATE_VERSION = 1
G = TypeVar("G")
# Where a controller's defaults come from: the search's budget, or the published settings.
Preset = Literal["budget", "paper"]
PRESETS: tuple[str, ...] = ("budget", "paper")


def check_preset(preset: object) -> None:
    if preset not in PRESETS:
        raise ValueError(f"preset: {preset!r} is not a preset; valid: {list(PRESETS)}")


class ControllerBase(abc.ABC, Generic[G]):
    """Trial ids, pending trials, budget and resume for one controller over one space.

    Args:
        space: the search space; only ``decisions``, ``decode``, ``encode`` (and ``mutate`` for
            evolution) are used.
        seed: root of every random stream of this controller (a non-negative integer).
        budget: number of trials after which ``finished`` is true (failed ones count);
            ``None`` never finishes. At most ``budget`` trials are ever issued.
    """

    # Options a subclass added after states were first saved, with the value that reproduces how
    # those states were made (a state without the key was made with this value).
    LEGACY_CONFIG: ClassVar[dict[str, Any]] = {}
    # Whether ``name:variant`` may name this controller (``nas.controller.TakesVariant``); it then takes ``variant``.
    takes_variant: bool = False

    @classmethod
    def check_variant(cls, variant: str) -> None:
        """``ValueError`` unless ``variant`` is one this controller runs (checked without building it)."""
        raise ValueError(f"{cls.__name__} takes no variant (got {variant!r})")

    def __init__(self, space: SearchSpace[G], seed: int = 0, budget: int | None = None) -> None:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
        if budget is not None and (not isinstance(budget, (int, np.integer)) or budget < 1):
            raise ValueError(f"budget: must be a positive integer or None, got {budget!r}")
        self.space = space
        self.seed = int(seed)
        self.budget = None if budget is None else int(budget)
        self.decisions: tuple[Decision, ...] = tuple(space.decisions())
        if not self.decisions:
            raise ValueError(f"space {space.name!r} has no decisions to search")
        self._next_id = 0
        self._num_told = 0
        self._pending: dict[int, dict[str, Any]] = {}  # asked, not told: id -> encoded choices
        self._reissue: list[int] = []  # pending ids a restored controller hands out again
        self._queue: list[dict[str, Any]] = []  # enqueued choices, handed out before anything proposed

    # ---- what a subclass provides -------------------------------------------------------------

    @abc.abstractmethod
    def _propose(self, trial_id: int) -> dict[str, Any] | None:
        """Choices for the new trial ``trial_id``, or ``None`` to wait for pending results."""

    @abc.abstractmethod
    def _observe(self, trial_id: int, choices: dict[str, Any], result: Result) -> None:
        """Learn from the result of ``trial_id`` (called once per trial, failures included)."""

    def _given(self, trial_id: int, choices: dict[str, Any]) -> dict[str, Any]:
        """Trial ``trial_id`` is the enqueued ``choices``: a controller that keeps its own record of
        what it asked (Optuna's study) records them here; most have nothing to do."""
        return choices

    def _config(self) -> dict[str, Any]:
        """Hyper-parameters a saved state must agree with (compared on ``load_state_dict``)."""
        return {}

    def _extra_state(self) -> dict[str, Any]:
        """The subclass's part of ``state_dict()``."""
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``_extra_state`` saved."""

    # ---- the protocol ------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once ``budget`` trials have been told (never when ``budget`` is ``None``)."""
        return self.budget is not None and self._num_told >= self.budget

    @property
    def num_told(self) -> int:
        """Trials told so far, failed ones included."""
        return self._num_told

    @property
    def issued(self) -> int:
        """Trials handed out so far (the next trial's id)."""
        return self._next_id

    def enqueue(self, choices: Iterable[Mapping[str, Any]]) -> None:
        """Hand out these architectures (as ``space.encode`` choices) first, in order, before anything the
        controller proposes: a warm start (``nas search --warm-start``; Optuna's ``enqueue_trial``).

        Each is an ordinary trial of the controller: it gets the next id, is told its result and learns
        from it as from its own proposals (evolution's population, REINFORCE's batches, TPE's history).
        Kept in the state until handed out, so a resumed search hands out the rest.
        """
        for item in choices:
            check_choices(self.decisions, item)
            self._queue.append(dict(item))

    @property
    def pending_ids(self) -> tuple[int, ...]:
        """Ids asked but not yet told, in the order they were issued."""
        return tuple(sorted(self._pending))

    def ask(self) -> Trial[G] | None:
        """The next trial, or ``None`` while waiting on pending results or once the budget is issued.

        A restored controller first hands out, again, the trials that were pending when its state
        was saved. Call ``tell`` for every trial you ask.
        """
        while self._reissue:
            trial_id = self._reissue.pop(0)
            if trial_id in self._pending:
                return Trial(trial_id, self.space.decode(self._pending[trial_id]))
        if self.finished or (self.budget is not None and self._next_id >= self.budget):
            return None
        choices = self._given(self._next_id, self._queue.pop(0)) if self._queue else self._propose(self._next_id)
        if choices is None:
            return None
        trial_id, self._next_id = self._next_id, self._next_id + 1
        self._pending[trial_id] = dict(choices)
        return Trial(trial_id, self.space.decode(choices))

    def tell(self, trial_id: int, result: Result) -> None:
        """Report the result of a pending trial (``result.error`` set means it failed)."""
        if not isinstance(result, Result):
            raise TypeError(f"result: expected a nas.controller.Result, got {type(result).__name__}")
        if trial_id not in self._pending:
            raise ValueError(f"trial_id: {trial_id!r} is not pending; pending ids: {self.pending_ids}")
        choices = self._pending.pop(trial_id)
        self._num_told += 1
        if result.failed:
            logger.info("%s: trial %d failed: %s", type(self).__name__, trial_id, result.error)
        self._observe(trial_id, choices, result)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; plain types and tensors only."""
        return {
            "controller": type(self).__name__,
            "version": STATE_VERSION,
            "space": self.space.name,
            "seed": self.seed,
            "budget": self.budget,
            "config": self._config(),
            "next_id": self._next_id,
            "num_told": self._num_told,
            "pending": [{"id": i, "choices": dict(self._pending[i])} for i in sorted(self._pending)],
            **({"queue": [dict(item) for item in self._queue]} if self._queue else {}),
            **self._extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; pending trials in it are asked again before anything new.

        The controller must have been built with the same space, seed and hyper-parameters as the
        one that saved ``state`` (``ValueError`` names the first that differs). ``budget`` is the
        one given to this constructor, so a resumed search may be given a larger budget.
        """
        expected = {
            "controller": type(self).__name__,
            "version": STATE_VERSION,
            "space": self.space.name,
            "seed": self.seed,
            "config": self._config(),
        }
        for key, value in expected.items():
            if key not in state:
                raise ValueError(f"state: missing key {key!r}; is this a {type(self).__name__} state_dict?")
            found = (
                {**self.LEGACY_CONFIG, **state[key]}
                if key == "config" and isinstance(state[key], Mapping)
                else state[key]
            )
            if found != value:
                raise ValueError(f"state[{key!r}]: {_difference(value, found)}")
        self._next_id = int(state["next_id"])
        self._num_told = int(state["num_told"])
        self._pending = {int(item["id"]): dict(item["choices"]) for item in state["pending"]}
        self._reissue = sorted(self._pending)
        self._queue = [dict(item) for item in state.get("queue", [])]
        self._load_extra_state(state)


def _difference(expected: Any, found: Any) -> str:
    """What differs between this controller's value and the state's, in one short line."""
    if isinstance(expected, Mapping) and isinstance(found, Mapping):
        keys = sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))
        return "; ".join(
            f"{k}: this controller has {expected.get(k)!r}, the state has {found.get(k)!r}" for k in keys[:3]
        )
    return f"this controller has {expected!r}, the state has {found!r}"
