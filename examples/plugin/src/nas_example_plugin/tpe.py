"""``example-tpe``: Optuna's Tree-structured Parzen Estimator (Bergstra et al. 2011) as an engine controller.

Optuna's samplers keep their state in a study; the engine wants a controller whose state is plain
data that resumes exactly. So the state is only the history of told trials (choices, reward or
failure), and each proposal replays it into a fresh in-memory study whose ``TPESampler`` is seeded
from ``(seed, trial_id)``: trial ``t`` is a function of the seed and the history alone. Choices go
to Optuna as their indices, so any hashable choice value round-trips exactly.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import optuna
from nas.controller import Result
from nas.controller_base import ControllerBase
from nas.seeds import trial_seed
from nas.space import SearchSpace
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Drop the "new study created" INFO line and the experimental warning, here only; restored after."""
    logger = logging.getLogger("optuna.storages._in_memory")

    def quiet(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING

    logger.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        logger.removeFilter(quiet)


class TPEController(ControllerBase):
    """Multivariate TPE over the space's decisions; random for the first ``n_startup_trials``.

    ``state_dict()`` adds ``history``: every told trial as ``{"id", "choices", "reward"}``,
    ``reward`` ``None`` for a failure (failed trials reach Optuna as ``FAIL`` trials).
    """

    def __init__(
        self, space: SearchSpace, seed: int = 0, budget: int | None = None, n_startup_trials: int = 10
    ) -> None:
        super().__init__(space, seed=seed, budget=budget)
        if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int) or n_startup_trials < 0:
            raise ValueError(f"n_startup_trials: must be a non-negative integer, got {n_startup_trials!r}")
        self.n_startup_trials = n_startup_trials
        self._history: list[dict[str, Any]] = []
        self._distributions = {d.name: CategoricalDistribution(list(range(len(d.choices)))) for d in self.decisions}

    def _propose(self, trial_id: int) -> dict[str, Any]:
        with _quiet_optuna():
            sampler = optuna.samplers.TPESampler(
                seed=trial_seed(self.seed, trial_id) & 0xFFFFFFFF,
                n_startup_trials=self.n_startup_trials,
                multivariate=True,
                constant_liar=False,
            )
            study = optuna.create_study(direction="maximize", sampler=sampler)
            for told in self._history:
                failed = told["reward"] is None
                study.add_trial(
                    optuna.trial.create_trial(
                        params={d.name: d.index(told["choices"][d.name]) for d in self.decisions},
                        distributions=self._distributions,
                        value=None if failed else told["reward"],
                        state=TrialState.FAIL if failed else TrialState.COMPLETE,
                    )
                )
            params = study.ask(self._distributions).params
        return {d.name: d.choices[params[d.name]] for d in self.decisions}

    def _observe(self, trial_id: int, choices: dict[str, Any], result: Result) -> None:
        reward = None if result.failed else float(result.reward)  # type: ignore[arg-type]
        self._history.append({"id": trial_id, "choices": dict(choices), "reward": reward})

    def _config(self) -> dict[str, Any]:
        return {"n_startup_trials": self.n_startup_trials}

    def _extra_state(self) -> dict[str, Any]:
        return {"history": copy.deepcopy(self._history)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._history = copy.deepcopy(list(state["history"]))
