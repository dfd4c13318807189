"""Regularized (aging) evolution, Real et al., "Regularized Evolution for Image Classifier
Architecture Search", AAAI 2019 (arXiv 1802.01548), Algorithm 1, run asynchronously.

1. The first ``population_size`` trials are uniformly random architectures.
2. Every later trial is a child: draw ``sample_size`` distinct members of the population at random
   (Algorithm 1 builds its ``sample`` as a set; Goldberg & Deb 1991's tournament), take the one with
   the highest reward as the parent and change one decision (``space.mutate``, §2). ``preset="paper"``
   draws with replacement, as the NAS-Bench-201 reference code (``R_EA.py``) and NASLib do.
3. Each result joins the population; once it holds more than ``population_size`` members, the
   *oldest* one leaves, whatever its reward (aging, the paper's regularization).

Asynchronous by design (the paper runs 450 workers): ``ask`` never waits for a generation. It
returns ``None`` only while no trial has finished successfully yet and the initial random
population has been handed out. "Oldest" means the earliest *told*, as in the paper's
workers, where a child joins when its evaluation completes.

Failed trials (``Result.error`` set) are skipped: they never enter the population, so it keeps
its best members, and a failure ages nobody out. If every trial so far has failed and none is
pending, the controller keeps proposing random architectures instead of waiting forever.

Defaults follow the budget (``budget_defaults``): with P = 100, the paper's CIFAR-10 setting
(also NNI's default), a search of 100 trials or fewer is pure random search. ``preset="paper"``
gives P = 100, S = 25 whatever the budget; explicit values win over either. A population that
leaves fewer than a third of the budget to children is warned about at construction.

No class is evaluated twice (``dedup``, ``controllers.known``): a child of a class already told or
pending (an isomorphic cell, a mutation back to a known genotype) is drawn again, from a new
tournament, up to ``ATTEMPTS`` times, then random architectures are tried; if none of them is new
either (a space nearly exhausted), the first child is evaluated again. Real et al. evaluate a
repeated architecture again (their reward is noisy); a benchmark's or a deterministic evaluator's
answer would be the same, and a noisy one is better averaged with ``--repeats``. ``preset="paper"``
turns it off.

Rewards of one genotype are pooled: a genotype evaluated more than once (a mutation can lead back
to a genotype already tried; random initial members can coincide) competes with the mean of every
reward it received, so a lucky draw does not keep winning tournaments on its own.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any, ClassVar

import numpy as np

from controllers.known import KnownClasses
from nas.controller import Result
from nas.controller_base import ControllerBase, Preset, check_preset
from nas.seeds import trial_rng
from nas.space import SearchSpace, sample_choices

logger = logging.getLogger(__name__)

PAPER = (100, 25)  # Real et al. 2019, §3 / App. A: P = 100, S = 25 on CIFAR-10
ATTEMPTS = 64  # children drawn (a tournament and a mutation each) for a class not yet tried; then as many random


def budget_defaults(budget: int | None) -> tuple[int, int]:
    """(P, S) that learn at ``budget`` trials (``benchmarks/search_efficiency.py``, README).

    P = budget / 30 within [10, 100] (below 30 trials, budget / 3), so that most trials are
    children of well-tested parents; S = P / 2, greedier than the paper's P / 4: at budgets of
    30 to 1,000 a tournament of a quarter of the population gave up to .04 less, and a population
    of 5 found less than random search at 30 trials (README). ``None`` (no budget) gives the
    paper's values.
    """
    if budget is None:
        return PAPER
    population = min(PAPER[0], max(10, round(budget / 30))) if budget >= 30 else max(2, budget // 3)
    return population, max(2, min(population, (population + 1) // 2))


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
        population_size: P, members kept (default: ``budget_defaults``; Real et al.: 100).
        sample_size: S, tournament size (default: ``budget_defaults``; Real et al.: 25); must
            not exceed ``population_size``.
        budget: trials after which ``finished`` is true; ``None`` never finishes.
        preset: ``"budget"`` (defaults chosen for ``budget``) or ``"paper"`` (P = 100, S = 25, a
            tournament drawn with replacement, every class evaluated again when drawn again).
        dedup: skip classes already tried (default: on; off with ``preset="paper"``).
        distinct: tournaments of distinct members (default: on; off with ``preset="paper"``).

    ``state_dict()`` adds ``population``: the members, oldest first, as
    ``{"id", "choices", "reward"}`` with ``choices`` = ``space.encode(genotype)``, ``rewards`` (the
    pooled rewards) and, with ``dedup``, ``known`` (``KnownClasses.state_dict``).

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

    # States saved before these options existed were made with them off.
    LEGACY_CONFIG: ClassVar[dict[str, Any]] = {"dedup": False, "distinct": False}

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        population_size: int | None = None,
        sample_size: int | None = None,
        budget: int | None = None,
        preset: Preset = "budget",
        dedup: bool | None = None,
        distinct: bool | None = None,
    ) -> None:
        super().__init__(space, seed=seed, budget=budget)
        check_preset(preset)
        dedup = preset == "budget" if dedup is None else dedup
        distinct = preset == "budget" if distinct is None else distinct
        for name, value in (("dedup", dedup), ("distinct", distinct)):
            if not isinstance(value, bool):
                raise ValueError(f"{name}: must be true or false, got {value!r}")
        self.dedup, self.distinct = dedup, distinct
        self._known = KnownClasses(space, self.decisions)
        default_population, default_sample = PAPER if preset == "paper" else budget_defaults(self.budget)
        population_size = default_population if population_size is None else population_size
        if sample_size is None:
            sample_size = min(default_sample, population_size) if isinstance(population_size, int) else default_sample
        if not isinstance(population_size, int) or population_size < 1:
            raise ValueError(f"population_size: must be a positive integer, got {population_size!r}")
        if not isinstance(sample_size, int) or not 1 <= sample_size <= population_size:
            raise ValueError(
                f"sample_size: must be an integer in [1, population_size={population_size}], got {sample_size!r}"
            )
        self.population_size, self.sample_size = population_size, sample_size
        self._population: list[dict[str, Any]] = []  # oldest first
        self._member_keys: list[str] = []  # the reward pool's key of each member
        self._rewards: dict[str, list[float]] = {}  # genotype key -> [sum of rewards, count]
        if self.budget is not None and 3 * population_size > self.budget:
            default = budget_defaults(self.budget)[0]
            advice = (
                f"for this budget the default is {default}"
                if default < population_size
                else "no population learns much in so few trials"
            )
            logger.warning(
                "population_size %d leaves %d of the %d trials to evolve (the first %d are random); %s",
                population_size,
                max(0, self.budget - population_size),
                self.budget,
                min(population_size, self.budget),
                advice,
            )

    @property
    def population(self) -> tuple[Member, ...]:
        """The current members, oldest first."""
        return tuple(Member(m["id"], self.space.decode(m["choices"]), m["reward"]) for m in self._population)

    def _propose(self, trial_id: int) -> dict[str, Any] | None:
        rng = trial_rng(self.seed, trial_id)
        randoms = (sample_choices(self.decisions, rng) for _ in range(ATTEMPTS))
        if trial_id < self.population_size:
            candidates: Iterator[dict[str, Any]] = randoms
        elif not self._population:
            if self._pending:
                return None  # wait for the first result
            logger.warning("RegularizedEvolution: no successful trial yet; trial %d is random", trial_id)
            candidates = randoms
        else:
            candidates = chain((self._child(rng) for _ in range(ATTEMPTS)), randoms)
        if not self.dedup:
            return next(candidates)
        choices, key, _ = self._known.first_new(candidates)  # not new: every class drawn is known, repeat one
        self._known.issue(trial_id, key)
        return choices

    def _child(self, rng: np.random.Generator) -> dict[str, Any]:
        """The winner of a tournament of ``sample_size`` members, mutated once."""
        size = len(self._population)
        if self.distinct:
            picks = rng.choice(size, size=min(self.sample_size, size), replace=False)
        else:
            picks = rng.integers(size, size=self.sample_size)
        # Highest reward wins; among equal rewards the first one drawn wins (max keeps the first).
        parent = self._population[max((int(i) for i in picks), key=self._member_fitness)]
        return self.space.encode(self.space.mutate(self.space.decode(parent["choices"]), rng))

    def _observe(self, trial_id: int, choices: dict[str, Any], result: Result) -> None:
        if self.dedup:
            self._known.tell(trial_id, choices, None if result.failed else float(result.reward))  # type: ignore[arg-type]
        if result.failed:
            return  # skipped: failures never join the population (see the module docstring)
        reward = float(result.reward)  # type: ignore[arg-type]  (a successful Result has a reward)
        pooled = self._rewards.setdefault(_key(choices), [0.0, 0])
        pooled[0], pooled[1] = pooled[0] + reward, pooled[1] + 1
        self._population.append({"id": trial_id, "choices": dict(choices), "reward": reward})
        self._member_keys.append(_key(choices))
        if len(self._population) > self.population_size:
            self._population.pop(0)  # aging: the oldest member dies, not the worst
            self._member_keys.pop(0)

    def _member_fitness(self, index: int) -> float:
        total, count = self._rewards[self._member_keys[index]]
        return total / count

    def _fitness(self, member: Mapping[str, Any]) -> float:
        """The mean of every reward the member's genotype received (its own if evaluated once)."""
        total, count = self._rewards[_key(member["choices"])]
        return total / count

    def _config(self) -> dict[str, Any]:
        return {
            "population_size": self.population_size,
            "sample_size": self.sample_size,
            "dedup": self.dedup,
            "distinct": self.distinct,
        }

    def _extra_state(self) -> dict[str, Any]:
        return {
            "population": copy.deepcopy(self._population),
            "rewards": [[key, total, count] for key, (total, count) in self._rewards.items()],
            **({"known": self._known.state_dict()} if self.dedup else {}),
        }

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._population = copy.deepcopy(list(state["population"]))
        self._member_keys = [_key(member["choices"]) for member in self._population]
        if "rewards" in state:
            self._rewards = {str(key): [float(total), int(count)] for key, total, count in state["rewards"]}
        else:  # a state saved before rewards were pooled: each member's own reward
            self._rewards = {_key(m["choices"]): [float(m["reward"]), 1] for m in self._population}
        if self.dedup:
            self._known.load_state_dict(state["known"], self._pending)


def _key(choices: Mapping[str, Any]) -> str:
    """A short fingerprint of a genotype's choices (keys of the reward pool; 64 bits, no collisions
    in practice at the budgets a search can afford)."""
    text = json.dumps(sorted(choices.items()), default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
