"""The RNN controller of Zoph & Le (arXiv 1611.01578) and NASNet (arXiv 1707.07012), on any space.

A one-layer LSTM emits the decisions of ``space.decisions()`` one after another; the input of
each step is an embedding of the previous choice, and each decision has its own embedding table
and its own linear softmax head sized by its number of choices (space-agnostic, like NNI's
``ReinforceController`` fields). Nothing here knows what a cell or a block is.

Training follows the papers:

- Zoph & Le 2017 (§3.2): REINFORCE, ``grad = 1/m sum_k sum_t grad log P(a_t | a_<t) (R_k - b)``
  with ``b`` an exponential moving average of previous rewards; Adam.
- NASNet (App. A.2/A.3): PPO, learning rate 0.00035, entropy weight 0.00001, baseline decay 0.95,
  weights uniform in [-0.1, 0.1], one update per minibatch of 20 architectures, 100 LSTM units.
- ENAS (arXiv 1802.03268) and its reference code add an optional softmax temperature and a tanh
  constant on the logits (``controller_tanh_constant``); both are off by default here.

Bookkeeping choices, all documented because the papers leave them open:

- ``ask`` hands out the trials of one batch (``batch_size`` ids); it returns ``None`` while the
  batch's results are pending and updates once all of them are told. A final batch cut short by
  the budget is never used for an update (the search is over by then).
- Failed trials (``Result.error`` set) are left out of the update by default; with
  ``failure_reward`` set they count with that reward instead (e.g. 0.0 so the controller learns
  to avoid architectures that fail). A batch with nothing to learn from is skipped.
- The baseline starts at the mean reward of the first batch (so the first update is not one
  big push towards whatever was sampled), then moves by ``b <- decay * b + (1 - decay) * R``
  for each reward in trial-id order; advantages use the baseline before the batch.
- The sampled choice indices are kept per trial id and log-probabilities are recomputed at update
  time (never held on ``self`` between calls, style-anchors §10.1(d)).
- Trial ``t`` is sampled with a ``torch.Generator`` seeded from ``(seed, t)``, under ``no_grad``.

Budgets: the published settings were tuned for 20,000 architectures; at the 30 to 3,000 a user
can afford they are random search in disguise (lr 0.00035 on raw advantages barely moves the
policy, since accuracy differences between candidates are a few hundredths). The defaults here
follow the budget (``budget_defaults``, measured with ``benchmarks/search_efficiency.py``):

- advantages are normalised per batch, ``(R - mean) / std`` (the usual policy-gradient practice,
  e.g. OpenAI baselines' PPO), so the step size no longer depends on the scale of the reward and
  one learning rate suits accuracies, latencies and synthetic scores alike;
- an entropy bonus keeps the policy exploring instead of collapsing on its first good batch;
- batch size and learning rate are chosen for the number of updates the budget allows;
- no class is evaluated twice (``dedup``, ``controllers.known``): a draw of a class already told or
  pending is drawn again from the same policy (up to ``ATTEMPTS`` draws, then uniform ones), so a
  policy that has settled spends its trials on the untried classes around its mode instead of
  re-measuring them (on NAS-Bench-201, +0.12 test points at 100 queries, +0.15 at 300);
- priority-queue training (PQT, Abolafia et al., arXiv 1801.03526): each update also raises the
  log-probability of the ``elite_size`` = 10 best architectures told so far, with weight
  ``elite_weight`` = 1 (the paper's K = 10), so the policy does not drift from what it has found
  while a small batch's advantages are noisy (NAS-Bench-201: +0.06 at 300 queries; on the noisy
  synthetic objective of ``benchmarks/search_efficiency.py`` it cost .05 at 100 trials, README).

``preset="paper"`` restores NASNet's settings exactly (raw advantages against the moving
baseline, batch 20, lr 0.00035, entropy 0.00001, every draw evaluated, no elite); explicit options
win over either preset.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from controllers.known import KnownClasses
from controllers.reinforce_options import check_numbers
from nas.controller import Result
from nas.controller_base import ControllerBase, Preset, check_preset
from nas.seeds import trial_rng, trial_seed
from nas.space import SearchSpace, sample_choices

logger = logging.getLogger(__name__)

UpdateRule = Literal["reinforce", "ppo"]
UPDATE_RULES: tuple[str, ...] = ("reinforce", "ppo")
Advantage = Literal["normalized", "baseline"]
ADVANTAGES: tuple[str, ...] = ("normalized", "baseline")
# NASNet App. A.2/A.3: minibatches of 20, lr 0.00035, entropy weight 0.00001, raw advantages.
PAPER: dict[str, Any] = {
    "batch_size": 20,
    "learning_rate": 0.00035,
    "entropy_weight": 1e-5,
    "advantage": "baseline",
    "dedup": False,
    "elite_weight": 0.0,
}
ATTEMPTS = 64  # policy samples of known classes before a trial is drawn at random instead


def budget_defaults(budget: int | None) -> dict[str, Any]:
    """Batch size, learning rate, entropy weight and advantage that learn at ``budget`` trials.

    Measured with ``benchmarks/search_efficiency.py`` (additive, epistatic and noisy objectives over
    the 50 NASNet decisions; README, "Search efficiency"): with normalised advantages what matters
    is the total step, learning rate x number of updates, best near 0.3 at every budget from 100
    to 1,000 (at 1,000 trials: batch 20 and lr 0.005 reached .975 / .905 / .940, lr 0.02 only
    .916 / .857 / .918). So the batch is budget / 20 within [5, 20] (below 30 trials, budget / 6,
    at least 2, so that there are six updates) and the learning rate 0.3 x batch / budget within
    [0.002, 0.025] (at 30 trials larger steps did no better); entropy weight 0.01 (0.03 was no
    better). ``None`` (no budget) gives the settings of a 1,000-trial search.
    """
    budget = 1000 if budget is None else budget
    batch_size = min(20, max(5, round(budget / 20))) if budget >= 30 else max(2, budget // 6)
    learning_rate = round(min(0.025, max(0.002, 0.3 * batch_size / budget)), 5)
    return {
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "entropy_weight": 0.01,
        "advantage": "normalized",
        "dedup": True,
        "elite_weight": 1.0,
    }


_INIT_STREAM = 1  # stream of trial_seed used for the weight init, apart from the sampling streams


class ControllerPolicy(nn.Module):
    """LSTM policy over a flat list of categorical decisions (``sizes[i]`` choices at step ``i``)."""

    def __init__(
        self,
        sizes: Sequence[int],
        hidden_size: int,
        temperature: float | None = None,
        tanh_constant: float | None = None,
    ) -> None:
        super().__init__()
        self.sizes, self.temperature, self.tanh_constant = tuple(sizes), temperature, tanh_constant
        self.start = nn.Parameter(torch.zeros(1, hidden_size))  # input of the first step (ENAS g_emb)
        self.lstm = nn.LSTMCell(hidden_size, hidden_size)
        # The choice of step i is embedded as the input of step i + 1; the last one feeds nothing.
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden_size) for n in self.sizes[:-1])
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in self.sizes)

    def reset_parameters(self, init_range: float, generator: torch.Generator) -> None:
        """Every weight uniform in ``[-init_range, init_range]`` (NASNet App. A.2)."""
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-init_range, init_range, generator=generator)

    def _logits(self, hidden: torch.Tensor, step: int) -> torch.Tensor:
        logits = self.heads[step](hidden)
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:  # ENAS: bounded logits keep the policy exploring
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    @torch.no_grad()
    def sample(self, generator: torch.Generator) -> list[int]:
        """One architecture: a choice index per decision, drawn step by step."""
        # Inverse-CDF draws from one block of uniforms: same law as multinomial, half the cost.
        uniforms = torch.rand(len(self.sizes), 1, generator=generator)
        inputs, state, indices = self.start, None, []
        for step, size in enumerate(self.sizes):
            state = self.lstm(inputs, state)
            cumulative = torch.softmax(self._logits(state[0], step), dim=-1)[0].cumsum(0)
            index = min(int(torch.searchsorted(cumulative, uniforms[step])), size - 1)
            indices.append(index)
            if step + 1 < len(self.sizes):
                inputs = self.embeddings[step].weight[index : index + 1]
        return indices

    @torch.no_grad()
    def sample_many(self, count: int, generator: torch.Generator) -> list[list[int]]:
        """``count`` architectures drawn at once (one batched pass): a choice index per decision each."""
        uniforms = torch.rand(count, len(self.sizes), generator=generator)
        inputs, state, columns = self.start.expand(count, -1), None, []
        for step, size in enumerate(self.sizes):
            state = self.lstm(inputs, state)
            cumulative = torch.softmax(self._logits(state[0], step), dim=-1).cumsum(1)
            index = (
                torch.searchsorted(cumulative, uniforms[:, step : step + 1].contiguous())
                .clamp_(max=size - 1)
                .squeeze(1)
            )
            columns.append(index)
            if step + 1 < len(self.sizes):
                inputs = self.embeddings[step](index)
        return torch.stack(columns, dim=1).tolist()

    def forward(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy (summed over the decisions) of each row of ``indices``."""
        batch, widest = indices.shape[0], max(self.sizes)
        inputs, state, logits = self.start.expand(batch, -1), None, []
        for step, size in enumerate(self.sizes):
            state = self.lstm(inputs, state)
            # Pad every head to the widest one; exp(-1e4) is exactly 0, so padding has no mass.
            logits.append(F.pad(self._logits(state[0], step), (0, widest - size), value=-1e4))
            if step + 1 < len(self.sizes):
                inputs = self.embeddings[step](indices[:, step])
        log_probs = torch.log_softmax(torch.stack(logits, dim=1), dim=-1)  # batch x decisions x widest
        log_prob = log_probs.gather(2, indices.unsqueeze(2)).squeeze(2).sum(dim=1)
        entropy = -(log_probs.exp() * log_probs).sum(dim=(1, 2))
        return log_prob, entropy


class Reinforce(ControllerBase):
    """The NAS/NASNet RNN controller trained by REINFORCE (default) or PPO-clip.

    Args:
        space: any ``nas.space.SearchSpace``; one LSTM step per decision.
        seed: root of the weight init and of the per-trial sampling streams.
        hidden_size: LSTM units (NASNet App. A.2: one layer of 100).
        batch_size: architectures per update (default: ``budget_defaults``; NASNet App. A.3: 20).
        learning_rate: Adam learning rate (default: ``budget_defaults``; NASNet App. A.2: 0.00035).
        entropy_weight: weight of the entropy bonus, summed over the decisions (default:
            ``budget_defaults``; NASNet App. A.2: 0.00001).
        baseline_decay: decay of the moving-average baseline (NASNet App. A.2: 0.95).
        init_range: weights start uniform in ``[-init_range, init_range]`` (NASNet App. A.2: 0.1).
        update: ``"reinforce"`` (Zoph & Le 2017) or ``"ppo"`` (clipped surrogate, NASNet App. A.2).
        ppo_clip: PPO's epsilon (Schulman et al. 2017, arXiv 1707.06347: 0.2).
        ppo_epochs: optimisation passes over each batch with PPO (Schulman et al.: 3 to 10).
        temperature: divide the logits by this (ENAS has one); ``None`` leaves them alone.
        tanh_constant: logits become ``c * tanh(logits)`` (ENAS micro-search script:
            ``controller_tanh_constant=1.10``); ``None`` leaves them alone.
        failure_reward: reward of a failed trial; ``None`` leaves failed trials out of the update.
        budget: trials after which ``finished`` is true; ``None`` never finishes. Also chooses
            the defaults (``budget_defaults``).
        advantage: ``"normalized"`` (``(R - batch mean) / batch std``) or ``"baseline"``
            (``R - b``, Zoph & Le 2017); default: ``budget_defaults``.
        preset: ``"budget"`` (defaults for ``budget``) or ``"paper"`` (NASNet's published settings).
        dedup: skip classes already tried (default: on; off with ``preset="paper"``).
        elite_size: how many of the best architectures told so far priority-queue training raises.
        elite_weight: weight of that term in the loss (default: 1; 0, none, with ``preset="paper"``).

    ``state_dict()`` adds to the base keys: ``policy`` (the LSTM's tensors), ``optimizer`` (Adam's
    state), ``baseline`` (float or None), ``num_batches`` (batches closed, updated or skipped) and
    ``batch`` (told trials of the open batch: ``{"id", "indices", "reward"}``, reward None when
    failed) and ``known`` (every trial told, ``KnownClasses.state_dict``: the classes and the elite).
    """

    # Options added after states were first saved, with the values those states were made with.
    LEGACY_CONFIG: ClassVar[dict[str, Any]] = {
        "advantage": "baseline",
        "dedup": False,
        "elite_size": 10,
        "elite_weight": 0.0,
    }

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        hidden_size: int = 100,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        entropy_weight: float | None = None,
        baseline_decay: float = 0.95,
        init_range: float = 0.1,
        update: UpdateRule = "reinforce",
        ppo_clip: float = 0.2,
        ppo_epochs: int = 4,
        temperature: float | None = None,
        tanh_constant: float | None = None,
        failure_reward: float | None = None,
        budget: int | None = None,
        advantage: Advantage | None = None,
        preset: Preset = "budget",
        dedup: bool | None = None,
        elite_size: int = 10,
        elite_weight: float | None = None,
    ) -> None:
        super().__init__(space, seed=seed, budget=budget)
        check_preset(preset)
        defaults = PAPER if preset == "paper" else budget_defaults(self.budget)
        dedup = defaults["dedup"] if dedup is None else dedup
        if not isinstance(dedup, bool):
            raise ValueError(f"dedup: must be true or false, got {dedup!r}")
        self.dedup = dedup
        elite_weight = defaults["elite_weight"] if elite_weight is None else elite_weight
        if not isinstance(elite_size, int) or isinstance(elite_size, bool) or elite_size < 1:
            raise ValueError(f"elite_size: must be a positive integer, got {elite_size!r}")
        if not isinstance(elite_weight, (int, float)) or not 0 <= elite_weight < math.inf:
            raise ValueError(f"elite_weight: must be a finite number >= 0, got {elite_weight!r}")
        self.elite_size, self.elite_weight = elite_size, float(elite_weight)
        self._known = KnownClasses(space, self.decisions)  # every trial told: the classes to skip, the elite
        batch_size = defaults["batch_size"] if batch_size is None else batch_size
        learning_rate = defaults["learning_rate"] if learning_rate is None else learning_rate
        entropy_weight = defaults["entropy_weight"] if entropy_weight is None else entropy_weight
        advantage = defaults["advantage"] if advantage is None else advantage
        if advantage not in ADVANTAGES:
            raise ValueError(f"advantage: {advantage!r} is not valid; valid: {list(ADVANTAGES)}")
        self.advantage = advantage
        if update not in UPDATE_RULES:
            raise ValueError(f"update: {update!r} is not a valid update rule; valid: {list(UPDATE_RULES)}")
        check_numbers(
            hidden_size=hidden_size,
            batch_size=batch_size,
            ppo_epochs=ppo_epochs,
            learning_rate=learning_rate,
            init_range=init_range,
            ppo_clip=ppo_clip,
            temperature=temperature,
            tanh_constant=tanh_constant,
            baseline_decay=baseline_decay,
            entropy_weight=entropy_weight,
            failure_reward=failure_reward,
        )
        self.hidden_size, self.batch_size, self.learning_rate = int(hidden_size), int(batch_size), float(learning_rate)
        self.entropy_weight, self.baseline_decay = float(entropy_weight), float(baseline_decay)
        self.init_range = float(init_range)
        self.update, self.ppo_clip, self.ppo_epochs = update, float(ppo_clip), int(ppo_epochs)
        self.temperature, self.tanh_constant, self.failure_reward = temperature, tanh_constant, failure_reward
        self.policy = ControllerPolicy(
            [len(d.choices) for d in self.decisions], self.hidden_size, temperature, tanh_constant
        )
        self.policy.reset_parameters(
            self.init_range, torch.Generator().manual_seed(trial_seed(self.seed, 0, _INIT_STREAM))
        )
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.learning_rate)
        if self.budget is not None and self.budget < 3 * self.batch_size:
            updates = max(0, -(-self.budget // self.batch_size) - 1)
            default = budget_defaults(self.budget)["batch_size"]
            advice = (
                f"for this budget the default is {default}"
                if default < self.batch_size
                else "no batch size learns much in so few trials"
            )
            logger.warning(
                "batch_size %d allows %d policy update(s) in %d trials: the search is mostly random; %s",
                self.batch_size,
                updates,
                self.budget,
                advice,
            )
        self.baseline: float | None = None
        self.num_batches = 0
        self._batch: list[dict[str, Any]] = []

    # ---- sampling and learning ---------------------------------------------------------------

    def _propose(self, trial_id: int) -> dict[str, Any] | None:
        if trial_id >= (self.num_batches + 1) * self.batch_size:
            return None  # the rest of this batch is still being evaluated
        generator = torch.Generator().manual_seed(trial_seed(self.seed, trial_id))
        if not self.dedup:
            return self._choices(self.policy.sample(generator))
        # The policy's draws first, then uniform ones, the first of a class not yet tried; if every one is known
        # (a small space exhausted), the policy's first draw again.
        # Drawn in chunks of 1, 7 and 56: most trials take the policy's first draw.
        drawn = (
            self._choices(indices)
            for count in (1, 7, ATTEMPTS - 8)
            for indices in self.policy.sample_many(count, generator)
        )
        rng = trial_rng(self.seed, trial_id, 1)
        choices, key, new = self._known.first_new(
            chain(drawn, (sample_choices(self.decisions, rng) for _ in range(ATTEMPTS)))
        )
        if not new:  # the policy's first draw again
            first = self._choices(
                self.policy.sample_many(1, torch.Generator().manual_seed(trial_seed(self.seed, trial_id)))[0]
            )
            choices, key = first, self._known.key(first)
        self._known.issue(trial_id, key)
        return choices

    def draw(self, seed: int) -> dict[str, Any]:
        """An architecture drawn from the current policy by a generator seeded with ``seed`` (as
        ``space.encode`` choices), without issuing a trial: ENAS trains its shared weights on such
        draws between the controller's steps (arXiv 1802.03268 §2.2; ``--evaluator supernet`` with
        ``training: enas``)."""
        return self._choices(self.policy.sample(torch.Generator().manual_seed(seed)))

    def _choices(self, indices: Sequence[int]) -> dict[str, Any]:
        return {d.name: d.choices[i] for d, i in zip(self.decisions, indices)}

    def _observe(self, trial_id: int, choices: dict[str, Any], result: Result) -> None:
        reward = None if result.failed else float(result.reward)  # type: ignore[arg-type]
        self._known.tell(trial_id, choices, reward)
        indices = [d.index(choices[d.name]) for d in self.decisions]
        self._batch.append({"id": trial_id, "indices": indices, "reward": reward})
        if len(self._batch) == self.batch_size:
            self._update(sorted(self._batch, key=lambda record: record["id"]))
            self._batch, self.num_batches = [], self.num_batches + 1

    def _update(self, records: list[dict[str, Any]]) -> None:
        """One policy update from a closed batch (REINFORCE step or PPO epochs)."""
        used = [(r["indices"], r["reward"] if r["reward"] is not None else self.failure_reward) for r in records]
        used = [(indices, reward) for indices, reward in used if reward is not None]
        if not used:
            logger.warning("Reinforce: batch %d has no successful trial; no update", self.num_batches)
            return
        indices = torch.tensor([item[0] for item in used], dtype=torch.long)
        rewards = torch.tensor([item[1] for item in used], dtype=torch.float32)
        baseline = float(rewards.mean()) if self.baseline is None else self.baseline
        if self.advantage == "baseline":  # Zoph & Le 2017: R - b
            advantages = rewards - baseline
        elif len(rewards) > 1:  # normalised within the batch: scale-free steps
            advantages = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
        else:
            advantages = torch.zeros_like(rewards)  # one reward says nothing about better or worse
        if self.update == "reinforce":
            entropy = self._step(indices, advantages, None)
        else:
            with torch.no_grad():
                old_log_prob = self.policy(indices)[0]
            for _ in range(self.ppo_epochs):
                entropy = self._step(indices, advantages, old_log_prob)
        for reward in rewards.tolist():
            baseline = self.baseline_decay * baseline + (1 - self.baseline_decay) * reward
        self.baseline = baseline
        logger.info(
            "Reinforce update %d: mean reward %.4f, baseline %.4f, entropy %.3f",
            self.num_batches,
            float(rewards.mean()),
            baseline,
            entropy,
        )

    def _step(self, indices: torch.Tensor, advantages: torch.Tensor, old_log_prob: torch.Tensor | None) -> float:
        """One Adam step on the policy-gradient (or PPO clipped-surrogate) loss; returns the entropy."""
        log_prob, entropy = self.policy(indices)
        if old_log_prob is None:  # Zoph & Le 2017, eq. 2 with a baseline
            objective = advantages * log_prob
        else:  # PPO-clip, Schulman et al. 2017, eq. 7
            ratio = torch.exp(log_prob - old_log_prob)
            clipped = torch.clamp(ratio, 1 - self.ppo_clip, 1 + self.ppo_clip)
            objective = torch.minimum(ratio * advantages, clipped * advantages)
        loss = -objective.mean() - self.entropy_weight * entropy.mean()
        if self.elite_weight:  # priority-queue training: the best architectures so far made more likely
            loss = loss - self.elite_weight * self.policy(self._elite())[0].mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(entropy.detach().mean())

    def _elite(self) -> torch.Tensor:
        """Choice indices of the ``elite_size`` best trials told so far (ties: the earlier trial)."""
        indices, rewards = self._known.history()
        told = np.flatnonzero(~np.isnan(rewards))
        best = told[np.argsort(-rewards[told], kind="stable")[: self.elite_size]]
        return torch.from_numpy(indices[best].astype(np.int64))

    # ---- state -------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {
            "hidden_size": self.hidden_size,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "entropy_weight": self.entropy_weight,
            "baseline_decay": self.baseline_decay,
            "init_range": self.init_range,
            "update": self.update,
            "ppo_clip": self.ppo_clip,
            "ppo_epochs": self.ppo_epochs,
            "temperature": self.temperature,
            "tanh_constant": self.tanh_constant,
            "failure_reward": self.failure_reward,
            "advantage": self.advantage,
            "dedup": self.dedup,
            "elite_size": self.elite_size,
            "elite_weight": self.elite_weight,
            "decisions": [len(d.choices) for d in self.decisions],
        }

    def _extra_state(self) -> dict[str, Any]:
        # Copies: the live tensors change in place at the next update.
        return {
            "policy": {k: v.detach().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "baseline": self.baseline,
            "num_batches": self.num_batches,
            "batch": copy.deepcopy(self._batch),
            "known": self._known.state_dict(),
        }

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.num_batches = int(state["num_batches"])
        self._batch = copy.deepcopy(list(state["batch"]))
        if "known" in state:  # absent from states saved before classes were kept (no dedup, no elite)
            self._known.load_state_dict(state["known"], self._pending)
