"""NetAdapt: shrink a trained network one width at a time until a latency budget is met (arXiv 1804.03230).

Algorithm 1 of the paper, behind the ask/tell protocol, over a ``nas.spaces.widths.WidthSpace``:

- trial 0 is the starting network itself (the run evaluates its accuracy without fine-tuning);
- iteration k sets the latency constraint ``current - reduction * L0 * decay^k`` (L0: the
  starting latency; NetAdapt's schedule, its reference code uses 0.025 and decay 0.96, MobileNetV3
  a fixed 0.01 * L0), never below the target, so the last iteration stops at the target instead
  of overshooting it;
- latency is calibrated by measurement (NetAdapt §3.2 allows empirical measurement): every trial's
  ``measured_ms`` metric (the run times every proposal end to end) gives a ratio measured /
  predicted, and the ``latency`` function's predictions (the lookup table) are scaled by the median
  of the last ``CALIBRATION_WINDOW`` ratios: the current network's latency, the constraint, the
  proposals and the stopping rule are in measured milliseconds. One measurement of one network
  drifts by 10-30% on a shared machine; the median of many follows the table's bias and the
  machine's speed without following the noise. Without ``measured_ms`` the predictions are used
  as they are;
- for every prunable width (``prunable_widths``: each expansion layer, each bottleneck width shared
  through residual connections, the head) it proposes the largest width, in multiples of the
  space's granularity, whose network meets the constraint by the calibrated prediction
  ("ChooseNumFilters"); a width that cannot meet it, or only by changing the network's
  structure, makes no proposal;
- each proposal is one trial; the caller's evaluator inherits the current network's weights,
  fine-tunes briefly and reports the accuracy as the reward;
- when every proposal of the iteration is told, the best becomes the current network:
  ``selection`` ``accuracy`` picks the highest accuracy (NetAdapt), ``efficiency`` the largest
  (accuracy - current accuracy) / (current latency - its latency) (MobileNetV3 §4.2);
- when no width can meet an iteration's constraint (late in a run a single layer often cannot
  remove a fixed step), the step is halved, at most ``MAX_HALVINGS`` times over the run, and the
  proposals are made again; the halving is kept for the later iterations;
- ``finished`` once the current network meets ``target_ms`` (calibrated; ``status`` ``met``), no
  single width can meet an iteration's constraint even after the halvings (``stuck``: the target is
  out of reach of one-width steps; ``current`` is the lowest latency reached), every proposal of an
  iteration failed or the starting network failed (``failed``), or ``max_iterations`` were run
  (``stopped``).

The controller never trains anything; the long-term fine-tune of the result is the run's
(``nas netadapt``). Its whole state (the iteration, the proposals with their predicted
latencies, every result) is in ``state_dict``, so a resumed run replays exactly even if the
lookup table changed in between.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

from nas.controller import Result
from nas.controller_base import ControllerBase
from nas.space import SearchSpace
from nas.spaces.widths import WidthSpace

logger = logging.getLogger(__name__)

Selection = Literal["accuracy", "efficiency"]
SELECTIONS: tuple[str, ...] = ("accuracy", "efficiency")
DEFAULT_REDUCTION = 0.1
DEFAULT_MAX_ITERATIONS = 100
MAX_HALVINGS = 3  # the step may shrink to 1/8 of the schedule's before the controller gives up
CALIBRATION_WINDOW = 20  # measured / predicted ratios of the latest trials the calibration is the median of


class NetAdapt(ControllerBase):
    """Layer-wise width reduction under a latency schedule (see the module docstring).

    Args:
        space: a ``WidthSpace`` (decisions: the prunable widths; ``start_widths``: the start's).
        latency: genotype -> predicted latency in ms (a lookup table); called while proposing.
        target_ms: the latency budget.
        start_predicted_ms: the ``latency`` function's prediction of the start (default: computed);
            a run records it once so that a resumed run keeps its targets.
        start_latency_ms: the starting network's latency, the schedule's L0 (default: its prediction;
            a run measuring latency gives the start's measurement); a run
            records it once so that a resumed run keeps its targets.
        reduction: latency removed per iteration, as a fraction of the starting latency.
        decay: the reduction of iteration k is ``reduction * decay^k``.
        selection: ``accuracy`` or ``efficiency`` (see the module docstring).
        max_iterations: iterations after which the controller stops (status ``stopped``).
        measured: read the trials' ``measured_ms`` (see the module docstring); False: the
            ``latency`` function's predictions alone decide, and a run replays them exactly.
    """

    def __init__(
        self,
        space: SearchSpace[Any],
        seed: int = 0,
        budget: int | None = None,
        *,
        latency: Callable[[Any], float],
        target_ms: float,
        start_latency_ms: float | None = None,
        start_predicted_ms: float | None = None,
        reduction: float = DEFAULT_REDUCTION,
        decay: float = 1.0,
        selection: Selection = "accuracy",
        max_iterations: int = DEFAULT_MAX_ITERATIONS,
        measured: bool = True,
    ) -> None:
        super().__init__(space, seed, budget)
        if not isinstance(space, WidthSpace):
            raise ValueError(
                f"netadapt searches the widths of one network: it needs a nas.spaces.widths.WidthSpace, "
                f"got space {space.name!r}"
            )
        if not callable(latency):
            raise ValueError("latency: must be a function of a genotype giving milliseconds")
        for name, value, low, high in (("reduction", reduction, 0.0, 1.0), ("decay", decay, 0.0, 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
                raise ValueError(f"{name}: must be a number in ({low:g}, {high:g}], got {value!r}")
        if selection not in SELECTIONS:
            raise ValueError(f"selection: {selection!r} is not a selection; valid: {list(SELECTIONS)}")
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
            raise ValueError(f"max_iterations: must be a positive integer, got {max_iterations!r}")
        self.latency = latency
        self.start_choices = dict(space.start_widths)
        predicted = float(
            latency(space.decode(self.start_choices)) if start_predicted_ms is None else start_predicted_ms
        )
        start_latency = predicted if start_latency_ms is None else float(start_latency_ms)
        for name, value in (
            ("target_ms", target_ms),
            ("start_latency_ms", start_latency),
            ("start_predicted_ms", predicted),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: must be a positive number of milliseconds, got {value!r}")
        self.target_ms, self.start_latency_ms = float(target_ms), start_latency
        self.reduction, self.decay, self.selection = float(reduction), float(decay), selection
        self.max_iterations = max_iterations
        self.measured = bool(measured)
        self.ratios: list[float] = []  # measured / predicted of every trial measured, in the order told
        self.status = "running"
        self.iteration = 0  # iterations finished
        self.current: dict[str, Any] = {
            "choices": dict(self.start_choices),
            "trial": None,
            "latency_ms": predicted,  # the table's prediction; ``measured_ms`` its measurement once told
            "measured_ms": None,
            "accuracy": None,
        }
        self.proposals: list[dict[str, Any]] = []  # this iteration's: name, width, choices, predicted_ms, trial, ...
        self.history: list[dict[str, Any]] = []  # finished iterations
        self.start_trial: dict[str, Any] | None = None  # the evaluation of the starting network (trial 0)
        self.constraint_ms: float | None = None  # the constraint of this iteration's proposals
        self.halvings = 0  # times the schedule's step was halved because no width could meet it

    # ---- what the run reads --------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.status != "running" or super().finished

    @property
    def parent(self) -> tuple[Any, int | None]:
        """The current network's genotype and the trial whose weights it has (None: the starting weights)."""
        return self.space.decode(self.current["choices"]), self.current["trial"]

    def constraint(self) -> float:
        """This iteration's latency constraint (ms): the schedule's step, never below the target."""
        step = self.reduction * self.start_latency_ms * self.decay**self.iteration / 2**self.halvings
        return max(self.latency_now() - step, self.target_ms)

    def latency_now(self) -> float:
        """The current network's latency: its prediction, calibrated by the measurements so far."""
        return float(self.current["latency_ms"]) * self.calibration()

    def calibration(self) -> float:
        """The median measured / predicted latency of the latest trials (1 before any was measured)."""
        ratios = sorted(self.ratios[-CALIBRATION_WINDOW:])
        if not ratios:
            return 1.0
        middle = len(ratios) // 2
        return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2

    def narrowest(self) -> dict[str, Any]:
        """The start with every width at the smallest value the network's structure allows, in order
        (each width given the narrower ones before it): about the lowest latency the widths reach."""
        choices = dict(self.start_choices)
        for decision in self.decisions:
            for width in sorted(value for value in decision.choices if value < choices[decision.name]):
                try:
                    self.space.decode({**choices, decision.name: width})
                except ValueError:
                    continue
                choices[decision.name] = width
                break
        return choices

    # ---- ask / tell ----------------------------------------------------------------------------

    def _propose(self, trial_id: int) -> dict[str, Any] | None:
        if trial_id == 0:
            return dict(self.start_choices)
        waiting = [proposal for proposal in self.proposals if proposal["trial"] is None]
        if not waiting:
            return None
        waiting[0]["trial"] = trial_id
        return dict(waiting[0]["choices"])

    def _observe(self, trial_id: int, choices: dict[str, Any], result: Result) -> None:
        if trial_id == 0:
            self.start_trial = {
                "trial": 0,
                "accuracy": None if result.failed else float(result.reward),
                "error": result.error,
            }
            if result.failed:
                self.status = "failed"
                return
            self.current["accuracy"] = float(result.reward)
            self.current["measured_ms"] = self._note(result, self.current["latency_ms"])
            self._next_iteration()
            return
        proposal = next(p for p in self.proposals if p["trial"] == trial_id)
        proposal["accuracy"] = None if result.failed else float(result.reward)
        proposal["measured_ms"] = self._note(result, proposal["predicted_ms"])
        proposal["error"] = result.error
        if all("accuracy" in p for p in self.proposals):
            self._choose()

    def _note(self, result: Result, predicted: float) -> float | None:
        """The trial's measured latency (None without one, or when not ``measured``), its ratio kept."""
        measured = _measured(result) if self.measured else None
        if measured is not None:
            self.ratios.append(measured / float(predicted))
        return measured

    def _choose(self) -> None:
        done = [p for p in self.proposals if p["accuracy"] is not None]
        record = {
            "iteration": self.iteration + 1,
            "constraint_ms": self.constraint_ms,
            "proposals": self.proposals,
            "chosen": None,
        }
        self.history.append(record)
        self.proposals = []
        if not done:
            self.status = "failed"
            return
        best = max(done, key=lambda p: (self._score(p), -p["trial"]))
        record["chosen"] = best["trial"]
        self.current = {
            "choices": dict(best["choices"]),
            "trial": best["trial"],
            "latency_ms": best["predicted_ms"],
            "measured_ms": best.get("measured_ms"),
            "accuracy": best["accuracy"],
        }
        self.iteration += 1
        logger.info(
            "netadapt iteration %d: %s -> %d, %.3f ms, accuracy %.4f",
            self.iteration,
            best["name"],
            best["width"],
            self.latency_now(),
            best["accuracy"],
        )
        self._next_iteration()

    def _score(self, proposal: Mapping[str, Any]) -> float:
        if self.selection == "accuracy":
            return float(proposal["accuracy"])
        expected = proposal.get("expected_ms", proposal["predicted_ms"])
        saved = max(self.latency_now() - expected, 1e-9)
        return (float(proposal["accuracy"]) - float(self.current["accuracy"])) / saved

    def _next_iteration(self) -> None:
        """Decide whether to stop; otherwise make this iteration's proposals."""
        if self.latency_now() <= self.target_ms:
            self.status = "met"
        elif self.iteration >= self.max_iterations:
            self.status = "stopped"
        else:
            while True:
                self.constraint_ms = self.constraint()
                self.proposals = self._make_proposals(self.constraint_ms)
                if self.proposals or self.halvings >= MAX_HALVINGS:
                    break
                self.halvings += 1
                logger.info("netadapt: no width meets %.3f ms; halving the step", self.constraint_ms)
            if not self.proposals:
                self.status = "stuck"

    def _make_proposals(self, constraint: float) -> list[dict[str, Any]]:
        proposals, calibration = [], self.calibration()
        for name, width in self.current["choices"].items():
            found = self._largest_width(name, width, constraint / calibration)
            if found is not None:
                choices, predicted = found
                proposals.append(
                    {
                        "name": name,
                        "width": choices[name],
                        "choices": choices,
                        "predicted_ms": predicted,
                        "expected_ms": predicted * calibration,
                        "trial": None,
                    }
                )
        return proposals

    def _largest_width(self, name: str, width: int, constraint: float) -> tuple[dict[str, Any], float] | None:
        """The largest allowed width of ``name`` below ``width`` whose network's prediction meets ``constraint``.

        Latency grows with a width, so the smallest width is tried first (none fits: no proposal)
        and the largest fitting one is found by bisection over the allowed widths.
        """
        decision = next(d for d in self.decisions if d.name == name)
        allowed = []
        for candidate in (value for value in decision.choices if value < width):
            choices = {**self.current["choices"], name: candidate}
            try:
                self.space.decode(choices)
            except ValueError:  # the width would add or remove a layer or residual connection
                continue
            allowed.append(choices)
        predicted: dict[int, float] = {}

        def latency_of(index: int) -> float:
            if index not in predicted:
                predicted[index] = float(self.latency(self.space.decode(allowed[index])))
            return predicted[index]

        if not allowed or latency_of(0) > constraint:
            return None
        low, high = 0, len(allowed) - 1  # invariant: allowed[low] fits
        while low < high:
            middle = (low + high + 1) // 2
            if latency_of(middle) <= constraint:
                low = middle
            else:
                high = middle - 1
        return allowed[low], latency_of(low)

    # ---- state ---------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {
            "target_ms": self.target_ms,
            "reduction": self.reduction,
            "decay": self.decay,
            "selection": self.selection,
            "max_iterations": self.max_iterations,
            "measured": self.measured,
            "start": dict(self.start_choices),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "iteration": self.iteration,
            "current": dict(self.current),
            "proposals": [dict(p) for p in self.proposals],
            "history": [dict(h) for h in self.history],
            "start_latency_ms": self.start_latency_ms,
            "start_trial": self.start_trial,
            "constraint_ms": self.constraint_ms,
            "halvings": self.halvings,
            "ratios": list(self.ratios),
        }

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.status, self.iteration = str(state["status"]), int(state["iteration"])
        self.current = dict(state["current"])
        self.proposals = [dict(p) for p in state["proposals"]]
        self.history = [dict(h) for h in state["history"]]
        self.start_latency_ms, self.start_trial = float(state["start_latency_ms"]), state["start_trial"]
        self.constraint_ms = None if state["constraint_ms"] is None else float(state["constraint_ms"])
        self.halvings = int(state["halvings"])
        self.ratios = [float(ratio) for ratio in state.get("ratios", [])]


def _measured(result: Result) -> float | None:
    """The trial's end-to-end latency (``measured_ms``) if it has a usable one."""
    value = result.metrics.get("measured_ms")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)
