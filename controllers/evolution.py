"""Regularized (aging) evolution, Real et al., "Regularized Evolution for Image Classifier
Architecture Search", AAAI 2019 (arXiv 1802.01548), Algorithm 1, run asynchronously.

1. The first ``population_size`` trials are uniformly random architectures.
2. Every later trial is a child: draw ``sample_size`` members of the population at random (with
   replacement, as Algorithm 1's loop does), take the one with the highest reward as the parent
   and change one decision (``space.mutate``, §2).
3. Each result joins the population; once it holds more than ``population_size`` members, the
   *oldest* one leaves, whatever its reward (aging, the paper's regularization).

Asynchronous by design (the paper runs 450 workers): ``ask`` never waits for a generation. It
returns ``None`` only while no trial has finished successfully yet and the initial random
population has been handed out. "Oldest" means the earliest *told*, as in the paper's
workers, where a child joins when its evaluation completes.

Failed trials (``Result.error`` set) are skipped: they never enter the population, so it keeps
its best members, and a failure ages nobody out. If every trial so far has failed and none is
pending, the controller keeps proposing random architectures instead of waiting forever.

Defaults P = 100, S = 25 are the paper's CIFAR-10 search settings (also NNI's defaults).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nas.controller import Result
from nas.controller_base import ControllerBase
from nas.seeds import trial_rng
from nas.space import SearchSpace, sample_choices

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """One member of the population: the trial it came from, its genotype and its reward."""

    trial_id: int
    genotype: Any
    reward: float


class RegularizedEvolution(ControllerBase):
    """Aging evolution with tournament selection and one-decision mutations.

    Args:
        space: any ``nas.space.SearchSpace`` (``mutate`` must return a genotype of the space).
        seed: root of the per-trial random streams (initial samples, tournaments, mutations).
        population_size: P, members kept (Real et al.: 100).
        sample_size: S, tournament size (Real et al.: 25); must not exceed ``population_size``.
        budget: trials after which ``finished`` is true; ``None`` never finishes.

    ``state_dict()`` adds ``population``: the members, oldest first, as
    ``{"id", "choices", "reward"}`` with ``choices`` = ``space.encode(genotype)``.

    Example:
        >>> from nas.space import get
        >>> from nas.controller import Result
        >>> space = get("efficientnet")
        >>> controller = RegularizedEvolution(space, seed=0, population_size=4, sample_size=2, budget=10)
        >>> while not controller.finished:
        ...     trial = controller.ask()
        ...     controller.tell(trial.id, Result(reward=-float(trial.genotype.depth)))
        >>> len(controller.population)
        4
    """

    def __init__(self, space: SearchSpace, seed: int = 0, population_size: int = 100, sample_size: int = 25,
                 budget: int | None = None) -> None:
        super().__init__(space, seed=seed, budget=budget)
        if not isinstance(population_size, int) or population_size < 1:
            raise ValueError(f"population_size: must be a positive integer, got {population_size!r}")
        if not isinstance(sample_size, int) or not 1 <= sample_size <= population_size:
            raise ValueError(f"sample_size: must be an integer in [1, population_size={population_size}], "
                             f"got {sample_size!r}")
        self.population_size, self.sample_size = population_size, sample_size
        self._population: list[dict[str, Any]] = []  # oldest first

    @property
    def population(self) -> tuple[Member, ...]:
        """The current members, oldest first."""
        return tuple(Member(m["id"], self.space.decode(m["choices"]), m["reward"]) for m in self._population)

    def _propose(self, trial_id: int) -> dict[str, Any] | None:
        rng = trial_rng(self.seed, trial_id)
        if trial_id < self.population_size:
            return sample_choices(self.decisions, rng)
        if not self._population:
            if self._pending:
                return None  # wait for the first result
            logger.warning("RegularizedEvolution: no successful trial yet; trial %d is random", trial_id)
            return sample_choices(self.decisions, rng)
        picks = rng.integers(len(self._population), size=self.sample_size)
        # Highest reward wins; among equal rewards the first one drawn wins (max keeps the first).
        parent = max((self._population[int(i)] for i in picks), key=lambda m: m["reward"])
        child = self.space.mutate(self.space.decode(parent["choices"]), rng)
        return self.space.encode(child)

    def _observe(self, trial_id: int, choices: dict[str, Any], result: Result) -> None:
        if result.failed:
            return  # skipped: failures never join the population (see the module docstring)
        reward = float(result.reward)  # type: ignore[arg-type]  (a successful Result has a reward)
        self._population.append({"id": trial_id, "choices": dict(choices), "reward": reward})
        if len(self._population) > self.population_size:
            self._population.pop(0)  # aging: the oldest member dies, not the worst

    def _config(self) -> dict[str, Any]:
        return {"population_size": self.population_size, "sample_size": self.sample_size}

    def _extra_state(self) -> dict[str, Any]:
        return {"population": copy.deepcopy(self._population)}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._population = copy.deepcopy(list(state["population"]))
