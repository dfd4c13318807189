"""Optuna's samplers as controllers: TPE, NSGA-II or any other seeded sampler over the decisions.

These are the peers a user would pick instead of our RL controller and evolution, so they run
behind the same ask/tell protocol and contract tests (``nas.testing.ControllerContract``):

- every decision is a ``CategoricalDistribution`` over its choice *indices*, so any hashable
  choice round-trips exactly and the sampler sees an unordered categorical, as it should;
- one in-memory Optuna study lives in the controller (maximize). Proposing trial ``t`` sets a
  fresh sampler seeded with ``trial_seed(seed, t)`` as the study's sampler and calls
  ``study.ask``, so trial ``t`` is a function of the seed and the history alone; telling sets one
  seeded with ``trial_seed(seed, t, 1)`` (a sampler's ``after_trial`` then never depends on which
  trial was asked last). Optuna trial numbers are the engine's trial ids;
- ``state_dict()`` is the study as plain data (see ``OptunaSampler``), and ``load_state_dict``
  rebuilds it trial by trial, so a resumed search proposes exactly what an uninterrupted one would.

Names: ``tpe`` (``TPESampler``), ``nsga2`` (``NSGAIISampler``), ``optuna`` (any sampler, TPE by
default) and ``optuna:<SamplerName>``, e.g. ``nas search --controller optuna:RandomSampler``.
Samplers that cannot search categorical decisions on their own are refused rather than left to
fall back silently to random sampling: ``CmaEsSampler`` and ``QMCSampler`` sample numeric
parameters only (every decision here would go to their independent random sampler),
``GridSampler`` needs the whole grid and ``PartialFixedSampler`` wraps another sampler.

Options are checked at construction by a dry run (``OptunaSampler._dry_run``), so that a value of
the wrong type is one ``ValueError`` there, not a traceback once the sampler leaves its random
start. A sampler that has tried every combination (``BruteForceSampler``) ends the search: Optuna
calls ``study.stop()`` from its ``after_trial``, which outside ``study.optimize`` raises; the
controller takes that as "exhausted" (``finished``, and ``ask()`` returns ``None``).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState, create_trial

from controllers.optuna_samplers import (
    DEFAULT_SAMPLER,
    check_sampler,
    is_stop_outside_optimize,
    plain,
    quiet_optuna,
)
from nas.controller import Result
from nas.controller_base import ControllerBase
from nas.seeds import trial_seed
from nas.space import SearchSpace

logger = logging.getLogger(__name__)

_STATES = {"COMPLETE": TrialState.COMPLETE, "FAIL": TrialState.FAIL, "RUNNING": TrialState.RUNNING}
# Trials of the construction-time dry run (``OptunaSampler._dry_run``): the random start (``n_startup_trials``)
# or first generation (``population_size``) plus 2, at least 3 and at most DRY_RUN_TRIALS; DRY_RUN_TRIALS_GP for
# GPSampler. Measured on the 50 NASNet decisions, one thread: about 6 ms a trial in a random start and about
# 0.3-0.4 s for 52 trials of NSGA-II or TPE; one GP fit costs about 0.8 s, so GPSampler's dry run stays in its
# random start (3 trials, about 20 ms) unless ``n_startup_trials`` < 3.
DRY_RUN_TRIALS = 52  # Optuna's default population_size (50) + 2
DRY_RUN_TRIALS_GP = 3


class OptunaSampler(ControllerBase):
    """Any seeded Optuna sampler over the decisions of ``space``, through one in-memory study.

        Args:
            space: any ``nas.space.SearchSpace``.
            seed: root of the per-trial sampler seeds.
            sampler: name of a class in ``optuna.samplers`` (``sampler_names()``); default ``TPESampler``.
            sampler_options: keyword arguments of that class, plain data only (no ``seed``: it comes
                from ``seed`` and the trial id). Options this controller derives from the budget (below)
                are filled only where not given here.
            budget: trials after which ``finished`` is true; ``None`` never finishes (and keeps
                Optuna's defaults).
            derived_options: the budget-derived options, as the state's ``config`` recorded them when
                the search began; ``None`` derives them from ``budget``. A resumed search is rebuilt
                from that ``config``, so it keeps them whatever its new budget.
            variant: the ``optuna:<SamplerName>`` form of ``sampler`` (``nas.controller.make_controller``);
                giving both with different values is a ``ValueError``.

        Budget-derived defaults ("controllers receive the budget and choose defaults that learn at it"):

        - ``n_startup_trials`` (TPE, GP): Optuna's 10, but at most ``budget // 3`` (at least 1), so that
          at a budget of 30 two thirds of the trials are still model-guided; from a budget of 30 on
          this is Optuna's 10.
        - ``population_size`` (NSGA-II, NSGA-III): ``clamp(budget // 15, 10, 50)``, about fifteen
          generations, at least 10 individuals and at most Optuna's 50 (reached at a budget of 750).
          Optuna's fixed 50 leaves two generations at a budget of 100. Measured (NSGA-II, additive
          objective over the 50 NASNet decisions: a uniform [0, 1) score per choice, reward = sum / best
          sum; mean best of 2 seeds; random search .688 / .702 / .720 at budgets 100 / 300 / 1,000):

          ==========  ===================================  ===================================
          population  exact reward, budget 100 / 300 / 1k  reward + N(0, .02) noise, 300 / 1k
          ==========  ===================================  ===================================
          10          .780 / .879 / .975                   .785 / .868
          20          .761 / .875 / .967                   .826 / .882
          30 (33)     .733 / .822 / .966                   .797 / .914
          50          .717 / .803 / .942                   .798 / .918
          ==========  ===================================  ===================================

          Small populations win on the exact objective, but with a noisy reward (as proxy training
          gives) a population of 10 keeps lucky evaluations and stalls, and 50 is best at 1,000;
          ``budget // 15`` gives 10, 20 and 50 at these budgets.

        A setting that makes the sampler random search for the whole budget (a first generation or a
        startup phase as long as the budget) logs one warning at construction. Options the sampler
        rejects only once it runs (``{"gamma": 3}`` for TPE: not callable) are caught at construction
        by a dry run on a scratch study (``_dry_run``): ``ValueError`` naming ``sampler_options``.

        A sampler that has tried every combination (``BruteForceSampler``) exhausts the controller:
        ``ask()`` returns ``None`` and ``finished`` is true once no trial is pending, whatever the
        budget; the state keeps ``exhausted``. ``ask()`` also waits (``None``) while every combination
        has been issued and some are still pending, rather than propose a duplicate.

        ``state_dict()`` adds ``exhausted`` and ``study``: ``{"trials": [...], "system_attrs": {...}}``, every trial in
        number order as ``{"id", "choices", "state", "value", "system_attrs"}`` (``choices`` as
        ``space.encode`` gives them; ``state`` one of ``COMPLETE``, ``FAIL``, ``RUNNING`` for a pending
        trial; the sampler's trial system attrs, e.g. NSGA-II's generation and TPE's constant-liar
        parameters) and the study's system attrs (the GA samplers' cached parent populations). The
        ``config`` holds ``sampler``, ``sampler_options`` (as given) and ``derived_options`` (from the
        budget, without those given), so that the runner, which rebuilds a resumed controller from the
        config and lays the user's unchanged options over it, gets the same sampler at any new budget.

        Example:
            >>> from nas.space import get
            >>> from controllers.optuna_samplers import (
        DEFAULT_SAMPLER,
        check_sampler,
        is_stop_outside_optimize,
        plain,
        quiet_optuna,
        sampler_names,
    )
    from nas.controller import Result
            >>> controller = OptunaSampler(get("efficientnet"), seed=0, sampler="NSGAIISampler", budget=12)
            >>> while not controller.finished:
            ...     trial = controller.ask()
            ...     controller.tell(trial.id, Result(reward=float(trial.genotype.width)))
            >>> controller.state_dict()["config"]
            {'sampler': 'NSGAIISampler', 'sampler_options': {}, 'derived_options': {'population_size': 10}}
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        sampler: str | None = None,
        sampler_options: dict[str, Any] | None = None,
        budget: int | None = None,
        derived_options: dict[str, Any] | None = None,
        variant: str | None = None,
    ) -> None:
        super().__init__(space, seed=seed, budget=budget)
        if variant is not None and sampler is not None and variant != sampler:
            raise ValueError(f"sampler: {sampler!r} conflicts with the variant {variant!r} of the controller name")
        self.sampler = variant or sampler or DEFAULT_SAMPLER
        try:
            self._sampler_class = check_sampler(self.sampler)
        except ValueError as error:
            raise ValueError(f"sampler: {error}") from None
        parameters = inspect.signature(self._sampler_class).parameters
        self.sampler_options = self._check_options("sampler_options", sampler_options, parameters)
        if derived_options is None:
            derived_options = self._budget_defaults(parameters) if self.budget is not None else {}
        derived = self._check_options("derived_options", derived_options, parameters)
        self.derived_options = {k: v for k, v in derived.items() if k not in self.sampler_options}
        self.options = {**self.derived_options, **self.sampler_options}  # what the sampler is built with
        with quiet_optuna():
            try:
                probe = self._sampler_class(seed=0, **self.options)
            except (TypeError, ValueError) as error:
                raise ValueError(f"sampler_options: {self.sampler} refuses {self.options}: {error}") from None
        self._distributions = {d.name: CategoricalDistribution(list(range(len(d.choices)))) for d in self.decisions}
        self._combinations = math.prod(len(d.choices) for d in self.decisions)
        self._dry_run(probe, parameters)
        self._warn_if_random(parameters)
        self._exhausted = False  # the sampler stopped the study: it has tried every combination
        self._new_study()

    takes_variant = True  # optuna:<SamplerName>

    @classmethod
    def check_variant(cls, variant: str) -> None:
        """``ValueError`` unless ``optuna:<variant>`` names a sampler this controller runs (no study is built)."""
        check_sampler(variant)

    # ---- options ------------------------------------------------------------------------------

    def _check_options(
        self, path: str, given: Mapping[str, Any] | None, parameters: Mapping[str, inspect.Parameter]
    ) -> dict[str, Any]:
        if given is not None and not isinstance(given, Mapping):
            raise ValueError(f"{path}: expected a dict, got {type(given).__name__}")
        options = plain(dict(given or {}), path)
        valid = sorted(name for name in parameters if name != "seed")
        unknown = sorted(set(options) - set(valid))
        if unknown:
            hint = " (the seed comes from the controller's seed and the trial id)" if "seed" in unknown else ""
            raise ValueError(
                f"{path}: {self.sampler} takes no option {', '.join(map(repr, unknown))}{hint}; valid: {valid}"
            )
        return options

    def _budget_defaults(self, parameters: Mapping[str, inspect.Parameter]) -> dict[str, int]:
        """Options derived from the budget (see the class docstring), for the parameters the sampler has."""
        assert self.budget is not None
        derived = {}
        startup = parameters.get("n_startup_trials")
        if startup is not None and isinstance(startup.default, int):
            derived["n_startup_trials"] = min(startup.default, max(1, self.budget // 3))
        population = parameters.get("population_size")
        if population is not None and isinstance(population.default, int):
            derived["population_size"] = min(population.default, max(10, self.budget // 15))
        return derived

    def _warn_if_random(self, parameters: Mapping[str, inspect.Parameter]) -> None:
        if self.budget is None:
            return
        for name, what in (("population_size", "the first generation"), ("n_startup_trials", "the random start")):
            if name in parameters:
                value = self.options.get(name, parameters[name].default)
                if isinstance(value, int) and value >= self.budget:
                    logger.warning(
                        "%s: %s=%d >= budget=%d: %s covers the whole budget, so this is random search",
                        self.sampler,
                        name,
                        value,
                        self.budget,
                        what,
                    )
                    return

    def _dry_run(self, sampler: optuna.samplers.BaseSampler, parameters: Mapping[str, inspect.Parameter]) -> None:
        """Ask and tell a few trials on a scratch study; ``ValueError`` if the sampler raises.

        Enough trials to leave the random start or first generation (see ``DRY_RUN_TRIALS``), with
        rewards from a seeded uniform. ``sampler`` is a scratch instance (seed 0) and the study a
        scratch in-memory one, so the controller's study and per-trial seeds are untouched.
        """
        count = 3
        for name in ("n_startup_trials", "population_size"):
            value = self.options.get(name, parameters[name].default) if name in parameters else None
            if isinstance(value, int) and not isinstance(value, bool):
                count = max(count, value + 2)
        count = min(count, DRY_RUN_TRIALS_GP if self.sampler == "GPSampler" else DRY_RUN_TRIALS)
        rewards = np.random.default_rng(0).random(count)
        with quiet_optuna():
            try:
                study = optuna.create_study(storage=InMemoryStorage(), direction="maximize", sampler=sampler)
                for reward in rewards:
                    trial = study.ask(self._distributions)
                    try:
                        study.tell(trial.number, float(reward))
                    except RuntimeError as error:
                        if is_stop_outside_optimize(error):  # BruteForceSampler: fewer combinations than trials
                            break
                        raise
            except Exception as error:
                first = next(iter(str(error).splitlines()), "")
                raise ValueError(
                    f"sampler_options: {self.sampler} rejected {self.options}: {type(error).__name__}: {first}"
                ) from None

    def _sampler(self, trial_id: int, stream: int) -> optuna.samplers.BaseSampler:
        """A fresh sampler seeded from ``(seed, trial_id, stream)``, sharing the study's search-space cache.

        A fresh sampler would recompute the intersection search space over every trial, comparing
        every distribution of every trial: O(trials) per proposal, most of the time of a 1,000-trial
        TPE search. ``IntersectionSearchSpace`` caches a pure function of the study's trials (a
        from-scratch computation, as a resumed controller does, gives the same result), so one
        instance per attribute name is kept for the study and handed to each new sampler.
        """
        sampler = self._sampler_class(seed=trial_seed(self.seed, trial_id, stream) & 0xFFFFFFFF, **self.options)
        for name, value in vars(sampler).items():
            if isinstance(value, IntersectionSearchSpace):
                setattr(sampler, name, self._search_space_caches.setdefault(name, value))
        return sampler

    # ---- ask / tell ---------------------------------------------------------------------------

    def _new_study(self) -> None:
        self._storage = InMemoryStorage()
        self._search_space_caches: dict[str, IntersectionSearchSpace] = {}
        with quiet_optuna():
            self._study = optuna.create_study(
                storage=self._storage, direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0)
            )
        self._study_id = self._storage.get_study_id_from_name(self._study.study_name)

    @property
    def finished(self) -> bool:
        """True once ``budget`` trials have been told, or the sampler is exhausted and none is pending."""
        return super().finished or (self._exhausted and not self._pending)

    @property
    def exhausted(self) -> bool:
        """True once the sampler has stopped the study: it has tried every combination (``BruteForceSampler``)."""
        return self._exhausted

    def _all_issued(self) -> bool:
        """Every combination of choices is in the study (finished or pending); cheap while fewer trials exist."""
        if self._next_id < self._combinations:
            return False
        trials = self._study.get_trials(deepcopy=False)
        return len({tuple(t.params[d.name] for d in self.decisions) for t in trials}) >= self._combinations

    def _propose(self, trial_id: int) -> dict[str, Any] | None:
        if self._exhausted or (self.sampler == "BruteForceSampler" and self._all_issued()):
            return None  # exhausted, or waiting for the pending trials that exhaust it
        with quiet_optuna():
            self._study.sampler = self._sampler(trial_id, 0)
            trial = self._study.ask(self._distributions)
        if trial.number != trial_id:  # ids and numbers are issued in step; anything else is a bug
            raise AssertionError(f"Optuna trial number {trial.number} != engine trial id {trial_id}")
        params = trial.params  # a copy per access
        return {d.name: d.choices[params[d.name]] for d in self.decisions}

    def _given(self, trial_id: int, choices: dict[str, Any]) -> dict[str, Any]:
        """An enqueued architecture becomes the study's next trial (Optuna's ``enqueue_trial``)."""
        with quiet_optuna():
            self._study.enqueue_trial({d.name: d.index(choices[d.name]) for d in self.decisions})
            trial = self._study.ask(self._distributions)
        if trial.number != trial_id:
            raise AssertionError(f"Optuna trial number {trial.number} != engine trial id {trial_id}")
        return choices

    def _observe(self, trial_id: int, choices: dict[str, Any], result: Result) -> None:
        with quiet_optuna():
            self._study.sampler = self._sampler(trial_id, 1)
            try:
                if result.failed:
                    self._study.tell(trial_id, state=TrialState.FAIL)
                else:
                    self._study.tell(trial_id, float(result.reward))  # type: ignore[arg-type]
            except RuntimeError as error:
                if not is_stop_outside_optimize(error):
                    raise
                self._stop(trial_id, result)

    def _stop(self, trial_id: int, result: Result) -> None:
        """The sampler's ``after_trial`` called ``study.stop()``: it has tried every combination.

        Optuna 5 writes the told trial's state in a ``finally`` after ``after_trial``, so the trial is
        already COMPLETE or FAIL; it is written here only if it is still RUNNING.
        """
        storage_id = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, trial_id)
        if self._storage.get_trial(storage_id).state == TrialState.RUNNING:
            reward = None if result.failed else float(result.reward)  # type: ignore[arg-type]
            if reward is None or not math.isfinite(reward):
                self._storage.set_trial_state_values(storage_id, TrialState.FAIL, None)
            else:
                self._storage.set_trial_state_values(storage_id, TrialState.COMPLETE, [reward])
        if not self._exhausted:
            logger.info(
                "%s: %s has tried every combination after trial %d; the search ends",
                type(self).__name__,
                self.sampler,
                trial_id,
            )
        self._exhausted = True

    # ---- state --------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {
            "sampler": self.sampler,
            "sampler_options": dict(self.sampler_options),
            "derived_options": dict(self.derived_options),
        }

    def _extra_state(self) -> dict[str, Any]:
        trials = []
        for trial in self._study.get_trials(deepcopy=False):
            if trial.state.name not in _STATES:
                raise AssertionError(f"trial {trial.number} is {trial.state.name}; the controller makes no such trial")
            trials.append(
                {
                    "id": trial.number,
                    "state": trial.state.name,
                    "value": trial.value,
                    "choices": {d.name: d.choices[trial.params[d.name]] for d in self.decisions},
                    "system_attrs": plain(trial.system_attrs, f"trial {trial.number} system_attrs"),
                }
            )
        attrs = self._storage.get_study_system_attrs(self._study_id)
        return {
            "exhausted": self._exhausted,
            "study": {"trials": trials, "system_attrs": plain(attrs, "study system_attrs")},
        }

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        saved = state["study"]
        trials = list(saved["trials"])
        if [int(t["id"]) for t in trials] != list(range(self._next_id)):
            raise ValueError(f"state['study']: trials {[t['id'] for t in trials]} do not match next_id={self._next_id}")
        running = [int(t["id"]) for t in trials if t["state"] == "RUNNING"]
        if running != sorted(self._pending):
            raise ValueError(f"state['study']: running trials {running} != pending ids {sorted(self._pending)}")
        self._new_study()
        for saved_trial in trials:
            state_name = saved_trial["state"]
            if state_name not in _STATES:
                raise ValueError(f"state['study']: trial state {state_name!r}; valid: {sorted(_STATES)}")
            self._study.add_trial(
                create_trial(
                    state=_STATES[state_name],
                    value=saved_trial["value"] if state_name == "COMPLETE" else None,
                    params={d.name: d.index(saved_trial["choices"][d.name]) for d in self.decisions},
                    distributions=self._distributions,
                    system_attrs=dict(saved_trial["system_attrs"]),
                )
            )
        for key, value in saved["system_attrs"].items():
            self._storage.set_study_system_attr(self._study_id, key, value)
        self._exhausted = bool(state.get("exhausted", False))  # absent from states saved before it existed


class OptunaTPE(OptunaSampler):
    """``tpe``: Optuna's Tree-structured Parzen Estimator (Bergstra et al., NeurIPS 2011; Optuna 5's
    defaults: multivariate, constant liar), with the budget-derived ``n_startup_trials`` of ``OptunaSampler``."""

    takes_variant = False  # the sampler is in the name

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        sampler_options: dict[str, Any] | None = None,
        budget: int | None = None,
        derived_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            space,
            seed=seed,
            sampler="TPESampler",
            sampler_options=sampler_options,
            budget=budget,
            derived_options=derived_options,
        )


class OptunaNSGAII(OptunaSampler):
    """``nsga2``: Optuna's NSGA-II (Deb et al., IEEE TEC 2002), single-objective here: elitist selection,
    uniform crossover and mutation, with the budget-derived ``population_size`` of ``OptunaSampler``."""

    takes_variant = False  # the sampler is in the name

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        sampler_options: dict[str, Any] | None = None,
        budget: int | None = None,
        derived_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            space,
            seed=seed,
            sampler="NSGAIISampler",
            sampler_options=sampler_options,
            budget=budget,
            derived_options=derived_options,
        )
