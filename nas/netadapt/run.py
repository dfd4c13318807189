"""A NetAdapt run (``nas netadapt``): shrink a trained network to a latency budget, then fine-tune it.

The parts come from the registries like any plug-in's: the ``netadapt`` controller over a
``nas.spaces.widths.WidthSpace`` of the starting network, the ``finetune`` evaluator (weights
inherited from the current network, a short fine-tune, validation accuracy) and the ``latency``
evaluator (the lookup table predicts, the harness measures). The loop is ``nas.loop``'s: one
trial per proposal, an Optuna journal (study ``nas-netadapt`` in ``OUT/study.db``), the lock,
replay on resume, so a killed run continues after its last finished proposal. The fine-tuned
weights of every proposal are written to ``OUT/weights/trial-T.pt`` before its trial is recorded;
those of proposals that were not chosen are deleted once their iteration is decided.

The starting network is trained first (``initial_steps``) unless ``weights`` are given; its
weights are kept in ``OUT/start.pt`` and its latency (``latency_source`` ``measured``: timed end to
end, with the table's prediction beside it; ``table``: predicted) in the study, so a resumed run
keeps its targets even if the lookup table was lost or the machine got slower. A target below the
narrowest network the widths allow (``NetAdapt.narrowest``, predicted and calibrated by the start's
measurement) is refused in one line before anything is trained. Latency is of the network at ``resolution``
(default: the genotype's own) with the data set's classes; the images are loaded at
``train_resolution`` (default: the space's proxy resolution; the networks are fully
convolutional, so their widths are trained on small images and timed at their real size).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.api import resolve
from nas.backend import EvaluationJob, intra_op_threads
from nas.controller import make_controller
from nas.loop import SearchStats
from nas.netadapt.settings import NetAdaptSettings
from nas.objective import MetricObjective
from nas.run import Loop, Run, RunKind, execute
from nas.settings import check_data
from nas.spaces.widths import WidthSpace

if TYPE_CHECKING:
    from nas.netadapt.parts import NetAdaptEvaluation, NetAdaptParts

NETADAPT_STUDY = "nas-netadapt"
START_LATENCY_KEY = "nas_start_latency_ms"  # predicted by the table
START_MEASURED_KEY = "nas_start_measured_ms"  # measured end to end (``latency_source`` ``measured``)
SUMMARY_FILE = "netadapt.json"
MAX_TRIALS = 100_000
ACCURACY = MetricObjective("accuracy")  # NetAdapt picks the proposal with the best accuracy (§3.2)


@dataclass
class NetAdaptState:
    """What the loop leaves to the end: the controller, the evaluation, the target and the start's latency."""

    controller: Any
    evaluation: NetAdaptEvaluation
    target: float
    start_latency: float
    narrowest_ms: float  # the narrowest network the widths allow, predicted and calibrated by the start


class NetAdaptRun(RunKind[NetAdaptSettings, "NetAdaptParts"]):
    """``nas netadapt``: proposals fine-tuned as trials, then the chosen network fine-tuned long and written.

    The work (weights, fine-tunes, the long-term end) is imported when a run starts: the kind itself
    is read without torch (``nas show``, the directory check of every run).
    """

    name = "netadapt"
    command = "nas netadapt"
    settings_class = NetAdaptSettings
    study_name = NETADAPT_STUDY
    outputs = ("best.json", "best.pt", SUMMARY_FILE, "netadapt.png")
    export_files = ("start.pt", "weights")  # its proposals inherit weights: the trained ones travel along

    def check(self, settings: NetAdaptSettings) -> None:
        check_data(settings.dataset, settings.data_dir, settings.download)

    def build(self, settings: NetAdaptSettings) -> NetAdaptParts:
        from nas.netadapt.parts import build_parts  # lazy: the kind is read without torch

        return build_parts(settings)

    def job(self, settings: NetAdaptSettings, parts: NetAdaptParts) -> EvaluationJob:
        from nas.netadapt.parts import netadapt_evaluation  # lazy: the kind is read without torch

        parts.job = EvaluationJob(
            build=functools.partial(netadapt_evaluation, settings, Path(settings.out)),
            space=parts.space,
            reward=ACCURACY.reward,
            threads=settings.threads,
        )
        return parts.job

    def begin(self, run: Run[NetAdaptSettings, NetAdaptParts]) -> Loop:
        from nas.netadapt.parts import NetAdaptEvaluation, trained_start  # lazy: the kind is read without torch

        settings, parts, journal = run.settings, run.parts, run.journal
        assert journal is not None and parts.job is not None
        start_latency, predicted = _start_latency(settings, parts, journal.study)
        target = settings.latency_target_ms or settings.latency_ratio * start_latency  # type: ignore[operator]
        controller = make_controller(
            "netadapt",
            parts.space,
            seed=settings.seed,
            latency=parts.latency.predict_ms,
            target_ms=target,
            start_latency_ms=start_latency,
            start_predicted_ms=predicted,
            reduction=settings.reduction,
            decay=settings.decay,
            selection=settings.selection,
            max_iterations=settings.max_iterations,
            measured=settings.latency_source == "measured",
        )
        narrowest = _check_reachable(controller, parts, target, start_latency / predicted)
        weights_dir = run.out / "weights"
        weights_dir.mkdir(exist_ok=True)
        with intra_op_threads(settings.threads):
            start_state = parts.weights or trained_start(run.out, settings, parts)
        evaluation = parts.job.prebuilt = NetAdaptEvaluation(parts.space, parts.finetune, weights_dir, start_state)
        run.state = NetAdaptState(controller, evaluation, target, start_latency, narrowest)

        def parent(genotype: Any, trial_id: int) -> dict[str, Any]:
            current, trial = controller.parent  # the iteration's network: every proposal in flight shares it
            evaluation.state(trial)  # its weights read here, in the driver: a damaged file is one line, no failed trial
            return {"parent": parts.space.encode(current), "parent_trial": trial}

        # The latency (the table's prediction, the harness's measurement) is the driver's: it describes
        # this device, not a worker's, and the table is written by one process.
        return Loop(
            parts.space,
            controller,
            MAX_TRIALS,
            ACCURACY,
            annotate=parts.latency.evaluate,
            inputs=parent,
            on_record=lambda record, replayed: _drop_unchosen(weights_dir, controller),
            flush_seconds=0.0,  # its on_record deletes weight files: the journal must hold what they were for
            mismatch_hint="was the lookup table of this run changed or replaced? Give it back (--table) or "
            "start a new run",
        )

    def finish(self, run: Run[NetAdaptSettings, NetAdaptParts], stats: SearchStats | None) -> Any:
        from nas.netadapt.outputs import long_term, write_outputs  # lazy: the kind is read without torch

        settings, parts, state = run.settings, run.parts, run.state
        assert run.journal is not None
        _drop_unchosen(run.out / "weights", state.controller)
        with intra_op_threads(settings.threads):
            final = long_term(settings, parts, state.controller, state.evaluation.state(state.controller.parent[1]))
        return write_outputs(
            run.out,
            settings,
            parts,
            state.controller,
            run.journal,
            final,
            state.target,
            state.start_latency,
            state.narrowest_ms,
        )

    def space_of(self, recorded: Mapping[str, Any], where: Path) -> WidthSpace:
        try:
            start = resolve(recorded["start"])
            return WidthSpace(start.space, start.genotype, recorded["granularity"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: the run's settings are unreadable; nothing to resume from") from None

    def describe(self, out: Path) -> dict[str, Any] | None:
        """``netadapt.json``'s summary once the run has finished, else its status."""
        try:
            document = json.loads((out / SUMMARY_FILE).read_text())
            start, final = document["start"], document["final"]
            return {
                "status": document["status"],
                "iterations": len(document["iterations"]),
                "resolution": document["resolution"],
                "target_ms": document["target_ms"],
                "latency_ms": [start["latency_ms"], final["predicted_ms"]],
                "measured_ms": [start["measured_ms"], final["measured_ms"]],
                "accuracy": [start["accuracy"], final["accuracy"]],
            }
        except (OSError, ValueError, KeyError, TypeError):
            return {"status": "not finished (rerun the same nas netadapt command to resume it)"}


def run_netadapt(settings: NetAdaptSettings, on_record: Any = None) -> dict[str, Any]:
    """Run (or resume) NetAdapt; write best.json, best.pt, netadapt.json and netadapt.png; return the summary."""
    return execute(NetAdaptRun(), settings, on_record)  # type: ignore[no-any-return]


def _start_latency(settings: NetAdaptSettings, parts: NetAdaptParts, study: Any) -> tuple[float, float]:
    """The start's latency the targets are set from (measured, or with ``table`` predicted) and its prediction,
    both kept in the study."""
    predicted = study.user_attrs.get(START_LATENCY_KEY)
    if predicted is None:
        predicted = parts.latency.predict_ms(parts.start.genotype)
        study.set_user_attr(START_LATENCY_KEY, predicted)
    if settings.latency_source == "table":
        return float(predicted), float(predicted)
    measured = study.user_attrs.get(START_MEASURED_KEY)
    if measured is None:
        metrics = parts.latency.evaluate(parts.start.genotype)
        if "error" in metrics:
            raise ValueError(f"the starting network: {metrics['error']}")
        measured = metrics["measured_ms"]
        study.set_user_attr(START_MEASURED_KEY, measured)
    return float(measured), float(predicted)


def _check_reachable(controller: Any, parts: NetAdaptParts, target: float, calibration: float) -> float:
    """The narrowest network's latency (predicted, calibrated); ``ValueError`` naming it if ``target`` is below."""
    narrowest = parts.latency.predict_ms(parts.space.decode(controller.narrowest()))
    if narrowest * calibration > target:
        raise ValueError(
            f"latency target {target:.3f} ms: out of reach of the widths; the narrowest network they allow is "
            f"{narrowest * calibration:.3f} ms ({narrowest:.3f} predicted x {calibration:.3f}, the start's measured / "
            "predicted); give a larger --latency-ratio or --latency-target-ms"
        )
    return float(narrowest * calibration)


def _drop_unchosen(weights_dir: Path, controller: Any) -> None:
    """Delete the weights of proposals their iteration did not choose, and of the start's evaluation
    (trial 0): only the chosen ones are ever inherited from."""
    (weights_dir / "trial-0.pt").unlink(missing_ok=True)
    for iteration in controller.history:
        for proposal in iteration["proposals"]:
            if proposal["trial"] != iteration["chosen"]:
                (weights_dir / f"trial-{proposal['trial']}.pt").unlink(missing_ok=True)
