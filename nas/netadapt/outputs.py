"""What a NetAdapt run leaves in its directory: best.json, best.pt, netadapt.json and netadapt.png.

``netadapt.json`` holds the settings, the ``resolution`` latency was predicted and measured at,
the device fingerprint, the starting network (accuracy, predicted and measured latency), every
iteration (its constraint, every proposal with the width it changed, predicted latency and
accuracy after the short fine-tune, the chosen one with its measured latency) and the result after
the long-term fine-tune. Everything but the long-term fine-tune is read back from the journal.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nas.export import write_model
from nas.files import atomic_write_text
from nas.journal import Journal
from nas.netadapt.parts import NetAdaptParts
from nas.netadapt.settings import NetAdaptSettings
from nas.seeds import trial_seeds
from nas.serialization import genotype_json

LONG_TERM_STREAM = 100_001  # the seed stream of the long-term fine-tune (``trial_seeds``): no trial uses it


def long_term(
    settings: NetAdaptSettings, parts: NetAdaptParts, controller: Any, state: dict[str, Any]
) -> dict[str, Any]:
    """Fine-tune the final network for ``long_term_steps``; its module, accuracy and latencies."""
    genotype, trial = controller.parent
    seeds = trial_seeds(settings.seed, LONG_TERM_STREAM)
    parts.finetune.set_parent(genotype, state)
    model = parts.finetune.inherit(genotype)  # the same widths: a copy of the chosen network's weights
    loss = parts.finetune.train(model, settings.long_term_steps, seeds.data_order)
    accuracy = parts.finetune.validate(model, seeds.other)
    latency = parts.latency.evaluate(genotype, 0)
    if "error" in latency:
        raise ValueError(f"the final network: {latency['error']}")
    return {
        "genotype": genotype,
        "trial": trial,
        "module": model,
        "accuracy": accuracy,
        "train_loss": loss,
        "long_term_steps": settings.long_term_steps,
        **latency,
    }


def _metrics(journal: Journal, trial: int | None) -> dict[str, Any]:
    record = journal.records.get(trial) if trial is not None else None
    return dict(record.result.metrics) if record is not None else {}


def summary(
    settings: NetAdaptSettings,
    parts: NetAdaptParts,
    controller: Any,
    journal: Journal,
    final: dict[str, Any],
    target: float,
    start_latency: float,
    narrowest_ms: float | None = None,
) -> dict[str, Any]:
    """The ``netadapt.json`` document (see the module docstring)."""
    start = _metrics(journal, 0)
    iterations = []
    for iteration in controller.history:
        proposals = []
        for proposal in iteration["proposals"]:
            metrics = _metrics(journal, proposal["trial"])
            proposals.append(
                {
                    "trial": proposal["trial"],
                    "width": proposal["name"],
                    "channels": proposal["width"],
                    "predicted_ms": proposal["predicted_ms"],
                    "expected_ms": proposal.get("expected_ms"),  # the prediction calibrated by the parent's measurement
                    "accuracy": proposal["accuracy"],
                    "measured_ms": metrics.get("measured_ms"),
                    "error": proposal.get("error"),
                }
            )
        chosen = next((p for p in proposals if p["trial"] == iteration["chosen"]), None)
        iterations.append(
            {
                "iteration": iteration["iteration"],
                "constraint_ms": iteration["constraint_ms"],
                "proposals": proposals,
                "chosen": chosen,
            }
        )
    keep = ("accuracy", "latency_ms", "measured_ms", "measured_p10_ms", "measured_p90_ms")
    return {
        "settings": {key: value for key, value in asdict(settings).items() if key != "out"},
        "status": controller.status,
        "resolution": final["latency_resolution"],
        "train_resolution": parts.finetune.splits.resolution,
        "num_classes": parts.finetune.splits.num_classes,
        "fingerprint": parts.latency.table.fingerprint,
        "latency_table": str(parts.latency.table.path),
        "latency_source": settings.latency_source,
        "target_ms": target,
        "start_latency_ms": start_latency,
        "narrowest_ms": narrowest_ms,
        "calibration": controller.calibration(),
        "start": {"genotype": parts.start.to_json(), **{key: start.get(key) for key in keep}},
        "iterations": iterations,
        "final": {
            "trial": final["trial"],
            "accuracy_short_term": _metrics(journal, final["trial"]).get("accuracy", start.get("accuracy")),
            "accuracy": final["accuracy"],
            "long_term_steps": final["long_term_steps"],
            "predicted_ms": final["latency_ms"],
            "measured_ms": final["measured_ms"],
            "measured_p10_ms": final["measured_p10_ms"],
            "measured_p90_ms": final["measured_p90_ms"],
            # measured after the run, independently of the trials' measurements: how far from the target it ended
            "measured_off_target": final["measured_ms"] / target - 1,
            "lowest_reached_ms": controller.latency_now(),
            "genotype": genotype_json(parts.start.space.name, final["genotype"]),
        },
    }


def write_outputs(
    out: Path,
    settings: NetAdaptSettings,
    parts: NetAdaptParts,
    controller: Any,
    journal: Journal,
    final: dict[str, Any],
    target: float,
    start_latency: float,
    narrowest_ms: float | None = None,
) -> dict[str, Any]:
    """Write the run's files (atomically) and return the ``netadapt.json`` document."""
    from nas.plotting import plot_netadapt  # lazy: reading a run's summary (nas show) draws nothing

    document = summary(settings, parts, controller, journal, final, target, start_latency, narrowest_ms)
    best = genotype_json(parts.start.space.name, final["genotype"])
    atomic_write_text(out / "best.json", json.dumps(best, indent=2) + "\n")
    write_model(
        final["module"],
        best,
        out / "best.pt",
        parts.finetune.splits.num_classes,
        parts.finetune.splits.resolution,
        overwrite=True,
    )
    atomic_write_text(out / "netadapt.json", json.dumps(document, indent=2) + "\n")
    plot_netadapt(document, out / "netadapt.png")
    return document
