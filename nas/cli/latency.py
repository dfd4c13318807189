"""``nas latency SPEC``: the measured latency of a network and the lookup table's prediction of it.

The measurement and the table belong to the registered ``latency`` evaluator (``evaluators/``);
this command builds it through the registry, like a plug-in's would be.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import nas
from nas import registry
from nas.api import check_size


def add_latency_command(commands: Any, positive_int: Any) -> None:
    latency = commands.add_parser("latency", help="measured and lookup-table latency of a network on this machine")
    latency.add_argument("spec", help="preset name, genotype JSON file or search run directory")
    latency.add_argument("--resolution", type=positive_int, help="input size (default: the network's own)")
    latency.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass (default 1)")
    latency.add_argument("--threads", type=positive_int, default=1, help="intra-op threads (default 1)")
    latency.add_argument("--num-classes", type=positive_int, default=1000, help="classifier outputs (default 1000)")
    latency.add_argument("--device", default="cpu", help="torch device (default cpu)")
    latency.add_argument(
        "--table",
        metavar="FILE.json",
        help="lookup table file (default: $NAS_LATENCY_TABLE or ~/.cache/nas-engine/latency.json)",
    )
    latency.add_argument("--json", action="store_true", help="print the figures as JSON")
    latency.set_defaults(run=cmd_latency)


def latency_report(
    spec: Any,
    *,
    resolution: int | None = None,
    batch_size: int = 1,
    threads: int = 1,
    num_classes: int = 1000,
    device: str = "cpu",
    table: str | None = None,
) -> dict[str, Any]:
    """Measured (median, p10, p90) and predicted latency of ``spec`` with the device's fingerprint."""
    import torch  # lazy: the command line parses and checks without torch

    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError, TypeError) as error:
        raise ValueError(f"device: {device!r} is not usable here ({str(error).splitlines()[0]})") from None
    resolved = nas.resolve(spec)
    evaluator = registry.evaluators.get("latency")(
        resolved.space,
        table=table,
        resolution=resolution,
        batch_size=batch_size,
        threads=threads,
        num_classes=num_classes,
        measure=True,
        device=device,
    )
    evaluator.prepare()
    check_size(evaluator.lower(resolved.genotype))  # a network too large to build is refused before allocating
    metrics = evaluator.evaluate(resolved.genotype)
    if "error" in metrics:
        raise ValueError(metrics["error"])
    predicted, measured = metrics["latency_ms"], metrics["measured_ms"]
    return {
        "spec": resolved.name or str(spec),
        "space": resolved.space.name,
        "resolution": metrics["latency_resolution"],
        "batch_size": batch_size,
        "threads": threads,
        "measured_ms": measured,
        "measured_p10_ms": metrics["measured_p10_ms"],
        "measured_p90_ms": metrics["measured_p90_ms"],
        "predicted_ms": predicted,
        "prediction_error": (predicted - measured) / measured,
        "fingerprint": evaluator.table.fingerprint,
        "table": str(evaluator.table.path),
        "table_key": evaluator.table.key,
        "table_entries_measured_now": evaluator.table.measured,
    }


def cmd_latency(args: argparse.Namespace) -> None:
    report = latency_report(
        args.spec,
        resolution=args.resolution,
        batch_size=args.batch_size,
        threads=args.threads,
        num_classes=args.num_classes,
        device=args.device,
        table=args.table,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    fingerprint = report["fingerprint"]
    print(
        f"{report['spec']} ({report['space']}) at {report['resolution']}x{report['resolution']}, batch "
        f"{report['batch_size']}, {report['threads']} thread(s) on {fingerprint['device']} "
        f"({fingerprint['processor']}, "
        f"torch {fingerprint['torch']})"
    )
    print(
        f"measured:  {report['measured_ms']:.3f} ms median (p10 {report['measured_p10_ms']:.3f}, "
        f"p90 {report['measured_p90_ms']:.3f})"
    )
    print(
        f"predicted: {report['predicted_ms']:.3f} ms from the lookup table ({100 * report['prediction_error']:+.1f}%; "
        f"{report['table_entries_measured_now']} entries measured now, table {report['table']})"
    )
