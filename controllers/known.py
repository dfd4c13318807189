"""The classes of architectures a controller has already tried, so that it never pays for one twice.

Two genotypes of one class compute the same function (``nas.space.canonical_key``: a space's
``Canonical`` form, isomorphic cells and dead edges, or the choices themselves on a space without
one), so evaluating the second one teaches a search nothing. On NAS-Bench-201 15,625 cells are
6,466 classes (arXiv 2001.00326 §2.1); NAS-Bench-101 stores one entry per graph hash, and the
local search and BANANAS of White et al. (arXiv 2005.02960, 1910.11858) discard candidates already
evaluated. Every controller of ours that skips known classes keeps them here, in one place:

- ``issue`` marks the class of a trial handed out (still pending), ``tell`` records its reward
  (``None`` for a failure: its class is known and is not tried again either);
- ``first_new`` picks, from candidates drawn by the controller, the first of a class neither told
  nor pending; when none is new (a small space exhausted) the controller decides what to do;
- ``marginals`` turns the history into a first-order surrogate of the reward (each choice's mean
  standardized reward), which local search uses to order a neighbourhood;
- the state is the told history as plain lists (choice indices, rewards in trial order), which
  ``torch.load(weights_only=True)`` reads back; classes are recomputed from it on load.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from nas.space import Decision, SearchSpace, canonical_key


class KnownClasses:
    """Classes told (with their mean reward) or pending, for ``space``'s ``decisions``.

    Args:
        space: the controller's space (its ``decode`` and, if it has one, ``canonical``).
        decisions: the space's decisions, in the order the history stores their choice indices.
    """

    def __init__(self, space: SearchSpace[Any], decisions: Sequence[Decision]) -> None:
        self.space, self.decisions = space, tuple(decisions)
        self._reset()

    def _reset(self) -> None:
        self._told: dict[Hashable, list[float]] = {}  # class -> [sum of rewards, successes, tells]
        self._pending: dict[int, Hashable] = {}  # trial id -> class
        self._pending_count: Counter[Hashable] = Counter()
        self._indices = np.zeros((16, len(self.decisions)), dtype=np.int16)  # told history, grown by doubling
        self._rewards = np.zeros(16, dtype=np.float64)  # NaN: failed
        self._size = 0

    def __len__(self) -> int:
        """Number of classes told."""
        return len(self._told)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._told or key in self._pending_count

    def key(self, choices: Mapping[str, Any]) -> Hashable:
        """The class of a genotype given as choices."""
        return canonical_key(self.space, self.space.decode(choices))

    def reward(self, key: Hashable) -> float | None:
        """Mean reward the class was told, ``None`` if it never succeeded or was never told."""
        total, successes, _ = self._told.get(key, (0.0, 0, 0))
        return total / successes if successes else None

    def told(self, key: Hashable) -> bool:
        return key in self._told

    def first_new(self, candidates: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], Hashable, bool]:
        """The first candidate whose class is neither told nor pending, with its class and ``True``;
        if none is (every class drawn is known: a small space exhausted), the first candidate and ``False``."""
        first: tuple[dict[str, Any], Hashable] | None = None
        for choices in candidates:
            key = self.key(choices)
            if key not in self:
                return dict(choices), key, True
            if first is None:
                first = dict(choices), key
        if first is None:
            raise ValueError("first_new: no candidate")
        return first[0], first[1], False

    def issue(self, trial_id: int, key: Hashable) -> None:
        """``trial_id`` (of class ``key``) has been handed out."""
        self._pending[trial_id] = key
        self._pending_count[key] += 1

    def tell(self, trial_id: int, choices: Mapping[str, Any], reward: float | None) -> Hashable:
        """The result of ``trial_id`` (``reward`` ``None``: failed); returns its class."""
        key = self._pending.pop(trial_id, None)
        if key is not None:
            self._pending_count[key] -= 1
            if not self._pending_count[key]:
                del self._pending_count[key]
        else:
            key = self.key(choices)
        self._record(key, [d.index(choices[d.name]) for d in self.decisions], reward)
        return key

    def _record(self, key: Hashable, indices: Sequence[int], reward: float | None) -> None:
        pooled = self._told.setdefault(key, [0.0, 0, 0])
        if reward is not None:
            pooled[0], pooled[1] = pooled[0] + reward, pooled[1] + 1
        pooled[2] += 1
        if self._size == len(self._rewards):
            self._indices = np.concatenate([self._indices, np.zeros_like(self._indices)])
            self._rewards = np.concatenate([self._rewards, np.zeros_like(self._rewards)])
        self._indices[self._size] = indices
        self._rewards[self._size] = math.nan if reward is None else reward
        self._size += 1

    def history(self) -> tuple[np.ndarray, np.ndarray]:
        """Every told trial in order: choice indices (trials x decisions) and rewards (NaN: failed)."""
        return self._indices[: self._size], self._rewards[: self._size]

    def marginals(self, prior: float = 1.0) -> list[np.ndarray]:
        """Per decision, each choice's mean standardized reward over the successful trials that took it,
        shrunk towards 0 (the mean) by ``prior`` pseudo-trials; an untried choice scores 0.

        A first-order (additive) surrogate of the reward, the per-parameter statistics of univariate
        estimation-of-distribution algorithms (UMDA, Mühlenbein & Paaß 1996) and of TPE's independent
        densities (Bergstra et al., NeurIPS 2011): cheap, exact sums (deterministic), and scale-free.
        """
        indices, rewards = self.history()
        ok = ~np.isnan(rewards)
        indices, rewards = indices[ok], rewards[ok]
        spread = float(rewards.std()) if len(rewards) > 1 else 0.0
        scaled = (rewards - rewards.mean()) / spread if spread > 0 else np.zeros_like(rewards)
        scores = []
        for column, decision in enumerate(self.decisions):
            size = len(decision.choices)
            sums = np.bincount(indices[:, column], weights=scaled, minlength=size)
            counts = np.bincount(indices[:, column], minlength=size)
            scores.append(sums / (counts + prior))
        return scores

    def state_dict(self) -> dict[str, list[Any]]:
        """The told history as plain lists (comparable with ``==``): choice indices row after row, rewards
        (``None``: failed)."""
        indices, rewards = self.history()
        return {
            "indices": indices.reshape(-1).tolist(),
            "rewards": [None if math.isnan(r) else r for r in rewards.tolist()],
        }

    def load_state_dict(self, state: Mapping[str, Any], pending: Mapping[int, Mapping[str, Any]]) -> None:
        """Restore the told history and mark the controller's ``pending`` trials (id -> choices)."""
        self._reset()
        indices = np.asarray(state["indices"], dtype=np.int64).reshape(-1, len(self.decisions))
        for row, reward in zip(indices, state["rewards"]):
            choices = {d.name: d.choices[int(i)] for d, i in zip(self.decisions, row)}
            self._record(self.key(choices), row.tolist(), None if reward is None else float(reward))
        for trial_id, choices in sorted(pending.items()):
            self.issue(trial_id, self.key(choices))
