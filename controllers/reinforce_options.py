"""The numeric options of the REINFORCE controller (``controllers.reinforce``), checked without torch.

A config file can hold ``.inf``, ``2.5`` or a string where a count or a rate belongs; each is one
line naming the option (issue 28), before the policy is built.
"""

from __future__ import annotations

import math

from nas.errors import quoted

MAX_COUNT = 1_000_000  # hidden units, trials per batch, PPO epochs: far above any useful setting


def _check_counts(**values: object) -> None:
    """``ValueError`` unless each value is an integer in [1, ``MAX_COUNT``] (a config can hold ``.inf`` or 2.5)."""
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
            raise ValueError(f"{name}: must be an integer in [1, {MAX_COUNT:,}], got {quoted(value)}")


def _check_numbers(**values: object) -> None:
    """``ValueError`` unless each value is None or a number (comparing a string would be a ``TypeError``)."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{name}: must be a number, got {quoted(value)}")


def _check_positive(**values: object) -> None:
    """``ValueError`` unless each value is None or a finite number > 0."""
    _check_numbers(**values)
    for name, value in values.items():
        if value is not None and not 0 < value < math.inf:  # type: ignore[operator]
            raise ValueError(f"{name}: must be a finite number > 0, got {quoted(value)}")


def check_numbers(
    *,
    hidden_size: object,
    batch_size: object,
    ppo_epochs: object,
    learning_rate: object,
    init_range: object,
    ppo_clip: object,
    temperature: object,
    tanh_constant: object,
    baseline_decay: object,
    entropy_weight: object,
    failure_reward: object,
) -> None:
    """``ValueError`` naming the first option of the controller out of its range."""
    _check_counts(hidden_size=hidden_size, batch_size=batch_size, ppo_epochs=ppo_epochs)
    _check_positive(
        learning_rate=learning_rate,
        init_range=init_range,
        ppo_clip=ppo_clip,
        temperature=temperature,
        tanh_constant=tanh_constant,
    )
    _check_numbers(baseline_decay=baseline_decay, entropy_weight=entropy_weight, failure_reward=failure_reward)
    if not 0 <= baseline_decay < 1:  # type: ignore[operator]
        raise ValueError(f"baseline_decay: must be in [0, 1), got {baseline_decay!r}")
    if not 0 <= entropy_weight < math.inf:  # type: ignore[operator]
        raise ValueError(f"entropy_weight: must be a finite number >= 0, got {entropy_weight!r}")
    if init_range > 1e6:  # type: ignore[operator]  # the policy's float32 weights are drawn from [-r, r]
        raise ValueError(f"init_range: must be at most 1e6, got {init_range!r}")
    if failure_reward is not None and not math.isfinite(failure_reward):  # type: ignore[arg-type]
        raise ValueError(f"failure_reward: must be a finite number or None, got {failure_reward!r}")
