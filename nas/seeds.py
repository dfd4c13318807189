"""Every random stream of a search is a function of the search seed and the trial id.

Never a shared global stream: a resumed or parallel search then draws exactly what an
uninterrupted sequential one would (DESIGN: Randomness). Controllers draw with ``trial_rng``;
evaluators seed weight init, data order and the rest with ``trial_seeds``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}: must be a non-negative integer, got {value!r}")
    return int(value)


def trial_rng(seed: int, trial_id: int, stream: int = 0) -> np.random.Generator:
    """The numpy generator of trial ``trial_id``: a function of ``(seed, trial_id, stream)`` only."""
    return np.random.default_rng(np.random.SeedSequence([seed, trial_id, stream]))


def trial_seed(seed: int, trial_id: int, stream: int = 0) -> int:
    """A 63-bit integer seed for ``(seed, trial_id, stream)``, e.g. for a ``torch.Generator``."""
    words = np.random.SeedSequence([seed, trial_id, stream]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


@dataclass(frozen=True)
class TrialSeeds:
    """Independent seeds for one evaluation: weight init, data order, and everything else (dropout, drop-path)."""

    init: int
    data_order: int
    other: int


def trial_seeds(seed: int, trial_id: int, repeat: int = 0) -> TrialSeeds:
    """Evaluation seeds derived from ``(seed, trial_id, repeat)`` alone (``numpy.random.SeedSequence``).

    Two trials of one search, one trial in two searches with different seeds, or two repeats of one
    trial (``--repeats``) get statistically independent streams; the same triple always gets the
    same ones. Repeat 0 is the plain evaluation (its seeds are those of ``(seed, trial_id)``).
    """
    trial_id, seed, repeat = _check("trial_id", trial_id), _check("seed", seed), _check("repeat", repeat)
    entropy = [seed, trial_id] if repeat == 0 else [seed, trial_id, repeat]
    init, data_order, other = np.random.SeedSequence(entropy).generate_state(3, dtype=np.uint32)
    return TrialSeeds(int(init), int(data_order), int(other))


def split_seed(seed: int, repeat: int = 0) -> int:
    """The seed of the validation split of repeat ``repeat``: ``seed`` itself for repeat 0, so a
    search without repeats holds out what it always did; an independent split for every other."""
    seed, repeat = _check("seed", seed), _check("repeat", repeat)
    if repeat == 0:
        return seed
    return int(np.random.SeedSequence([seed, repeat, 0x5EED]).generate_state(1, dtype=np.uint32)[0])
