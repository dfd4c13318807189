"""Grid search over compound-scaling coefficients: EfficientNet's step 1 (arXiv 1905.11946 §3.3).

With phi = 1 fixed, the grid holds every (alpha, beta, gamma) of the space's decisions (values
1, 1 + step, ... up to ``high``: ``nas.spaces.scaling``) whose constraint value ``c`` satisfies
``|c - target| <= tolerance``, ``target`` = 2 so that each unit of phi doubles the cost. ``c`` is

- ``formula``: alpha * beta^2 * gamma^2 (eq. 3), the paper's constraint; or
- ``macs``: the measured MACs of the base scaled by the point, built and rounded (channels to
  multiples of 8, repeats up), over the base's. Rounding moves the real cost away from the
  formula: a 1-block stage becomes 2 blocks for any alpha > 1, so EfficientNet-B0 at alpha 1.05
  already costs 1.4x. The search for this set assumes that the MACs grow with each multiplier
  (more blocks, channels or pixels never cost less), walks alpha by bisection for each (beta,
  gamma) and stops a row once even alpha = 1 is too costly. For EfficientNet-B0 it counts 60
  networks at step 0.1 (of 1331 points) and 219 at step 0.05 (of 9261), about 0.4 s each on the
  meta device; the count is repeated when a run resumes. Grids of more than ``MACS_MAX_VALUES``
  values per multiplier are refused in this mode.

Points are proposed in an order seeded by ``seed`` (a permutation: a budget smaller than the grid
samples it uniformly), each once; ``finished`` once every point is told. Optuna's ``GridSampler``
was the first choice; it does not fit: its grid is the Cartesian product of per-parameter lists
with no place for a constraint, and what it would add over this list (a seeded shuffle, stopping
when exhausted) would cost an Optuna study inside the controller and in its state.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import time
from typing import Any, Literal

from nas.controller import Result
from nas.controller_base import ControllerBase, trial_rng
from nas.space import SearchSpace
from nas.spaces.scaling import CompoundScalingSpace

logger = logging.getLogger(__name__)

Constraint = Literal["formula", "macs"]
CONSTRAINTS: tuple[str, ...] = ("formula", "macs")
DECISIONS = ("alpha", "beta", "gamma")
SLACK = 1e-9  # a point exactly on the tolerance's edge is in, whatever the float rounding
MACS_MAX_VALUES = 41  # step 0.025 over [1, 2]: several hundred networks to count, a few minutes


class CompoundGrid(ControllerBase):
    """Every grid point within ``tolerance`` of ``target``, once each, in a seeded order.

    Args:
        space: a compound-scaling space (decisions ``alpha``, ``beta``, ``gamma``; ``macs_ratio``
            for the ``macs`` constraint): ``nas.spaces.scaling.CompoundScalingSpace``.
        tolerance: largest ``|c - target|`` of a grid point (default 0.1: the paper's
            1.2 * 1.1^2 * 1.15^2 = 1.92 is in).
        constraint: ``formula`` or ``macs`` (see the module docstring).
        target: the cost factor per unit of phi (2: doubling, as the paper).
    """

    def __init__(
        self,
        space: SearchSpace[Any],
        seed: int = 0,
        budget: int | None = None,
        tolerance: float = 0.1,
        constraint: Constraint = "formula",
        target: float = 2.0,
    ) -> None:
        super().__init__(space, seed, budget)
        names = tuple(decision.name for decision in self.decisions)
        if names != DECISIONS:
            raise ValueError(
                f"compound-grid searches compound-scaling points (nas scale): it needs the decisions "
                f"{list(DECISIONS)}, space {space.name!r} has {list(names)[:5]}"
            )
        if constraint not in CONSTRAINTS:
            raise ValueError(f"constraint: {constraint!r} is not a constraint; valid: {list(CONSTRAINTS)}")
        if constraint == "macs" and not isinstance(space, CompoundScalingSpace):
            raise ValueError(
                f"constraint: 'macs' needs a space that measures its points (macs_ratio); {space.name!r} does not"
            )
        if constraint == "macs" and max(len(d.choices) for d in self.decisions) > MACS_MAX_VALUES:
            raise ValueError(
                f"constraint: 'macs' counts the networks of the grid, and {len(self.decisions[0].choices)} "
                f"values per multiplier are too many (at most {MACS_MAX_VALUES}); use a coarser grid step"
            )
        for name, value, low in (("tolerance", tolerance, 0.0), ("target", target, 1.0)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < low
            ):
                raise ValueError(f"{name}: must be a number >= {low:g}, got {value!r}")
        self.tolerance, self.constraint, self.target = float(tolerance), constraint, float(target)
        self.points = self._grid()
        if not self.points:
            values = self.decisions[0].choices
            raise ValueError(
                f"no grid point has |{'alpha*beta^2*gamma^2' if constraint == 'formula' else 'MACs ratio'}"
                f" - {self.target:g}| <= {self.tolerance:g} on {len(values)} values from {values[0]:g} to "
                f"{values[-1]:g}; widen the tolerance, refine the grid step or raise its upper end"
            )

    @property
    def finished(self) -> bool:
        """True once the budget is told, or every grid point is."""
        return super().finished or self.num_told >= len(self.points)

    def _propose(self, trial_id: int) -> dict[str, Any] | None:
        return dict(self.points[trial_id]) if trial_id < len(self.points) else None

    def _observe(self, trial_id: int, choices: dict[str, Any], result: Result) -> None:
        """A grid learns nothing: the journal holds the results, and the best point is read there."""

    def _config(self) -> dict[str, Any]:
        return {
            "tolerance": self.tolerance,
            "constraint": self.constraint,
            "target": self.target,
            "grid_points": len(self.points),
        }

    def _grid(self) -> list[dict[str, float]]:
        """The points within the tolerance, in the seeded order."""
        alphas, betas, gammas = (decision.choices for decision in self.decisions)
        if self.constraint == "formula":
            within = [
                (a, b, g)
                for a, b, g in itertools.product(alphas, betas, gammas)
                if abs(a * b * b * g * g - self.target) <= self.tolerance + SLACK
            ]
        else:
            within = self._within_by_macs(alphas, betas, gammas)
        order = trial_rng(self.seed, 0).permutation(len(within))
        return [dict(zip(DECISIONS, within[int(i)])) for i in order]

    def _within_by_macs(
        self, alphas: tuple[Any, ...], betas: tuple[Any, ...], gammas: tuple[Any, ...]
    ) -> list[tuple[Any, Any, Any]]:
        """The points whose measured MACs ratio is within the tolerance (MACs grow with each multiplier)."""
        low, high = self.target - self.tolerance - SLACK, self.target + self.tolerance + SLACK
        started, counted = time.perf_counter(), set()

        def ratio(alpha: Any, beta: Any, gamma: Any) -> float:
            counted.add((alpha, beta, gamma))
            return float(self.space.macs_ratio(self.space.decode(dict(zip(DECISIONS, (alpha, beta, gamma))))))

        within = []
        for gamma in gammas:
            if ratio(alphas[0], betas[0], gamma) > high:
                break
            for beta in betas:
                if ratio(alphas[0], beta, gamma) > high:
                    break
                first = bisect.bisect_left(range(len(alphas)), True, key=lambda i: ratio(alphas[i], beta, gamma) >= low)
                for alpha in alphas[first:]:
                    if ratio(alpha, beta, gamma) > high:
                        break
                    within.append((alpha, beta, gamma))
        logger.info(
            "compound-grid: %d of %d points have a measured MACs ratio within %g of %g (%d networks counted in %.1f s)",
            len(within),
            len(alphas) * len(betas) * len(gammas),
            self.tolerance,
            self.target,
            len(counted),
            time.perf_counter() - started,
        )
        return sorted(within)
