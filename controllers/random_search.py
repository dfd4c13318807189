"""Random search: every decision drawn uniformly and independently, the honest baseline.

NASNet (Zoph et al., arXiv 1707.07012 §4.4, Fig. 6) compares its RL controller against exactly
this: "random search" samples each of the controller's softmax decisions uniformly. Li & Talwalkar
(arXiv 1902.07638) show it is a strong baseline that any learned controller must beat.
"""

from __future__ import annotations

from typing import Any

from nas.controller import Result
from nas.controller_base import ControllerBase
from nas.seeds import trial_rng
from nas.space import SearchSpace, sample_choices


class RandomSearch(ControllerBase):
    """Uniform random choices for every decision of ``space``; never waits, never learns.

    Trial ``t`` is a function of ``(seed, t)`` alone, so the state is only the bookkeeping of
    ``ControllerBase`` (ids, pending trials, number told).

    Args:
        space: any ``nas.space.SearchSpace``.
        seed: root of the per-trial random streams.
        budget: number of trials after which ``finished`` is true; ``None`` never finishes.

    Example:
        >>> from nas.space import get
        >>> from nas.controller import Result
        >>> controller = RandomSearch(get("efficientnet"), seed=0, budget=2)
        >>> while not controller.finished:
        ...     trial = controller.ask()
        ...     controller.tell(trial.id, Result(reward=float(trial.genotype.width)))
        >>> controller.num_told
        2
    """

    def __init__(self, space: SearchSpace, seed: int = 0, budget: int | None = None) -> None:
        super().__init__(space, seed=seed, budget=budget)

    def _propose(self, trial_id: int) -> dict[str, Any]:
        return sample_choices(self.decisions, trial_rng(self.seed, trial_id))

    def _observe(self, trial_id: int, choices: dict[str, Any], result: Result) -> None:
        """Random search learns nothing from results."""
