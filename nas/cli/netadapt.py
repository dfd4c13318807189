"""``nas netadapt``: shrink a network's widths until a latency budget is met (``nas.netadapt.run``).

Flags override the config file (``--config``, keys = the long flag names with underscores, ``from``
spelled ``start``); the config file overrides the defaults of ``NetAdaptSettings``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas import registry
from nas.cli.common import EXECUTION_FLAGS, add_execution_flags, listed, settings_from_args
from nas.journal import Record
from nas.netadapt.run import run_netadapt
from nas.netadapt.settings import NetAdaptSettings

FLAGS = (
    "start",
    "latency_ratio",
    "latency_target_ms",
    "dataset",
    "data_dir",
    "download",
    "weights",
    "resolution",
    "train_resolution",
    "short_term_steps",
    "long_term_steps",
    "initial_steps",
    "reduction",
    "decay",
    "selection",
    "latency_source",
    "seed",
    "threads",
    "table",
) + EXECUTION_FLAGS


def add_netadapt_command(commands: Any) -> None:
    netadapt = commands.add_parser("netadapt", help="shrink a network's widths to a latency budget (NetAdapt)")
    netadapt.add_argument(
        "--from",
        dest="start",
        metavar="SPEC",
        help="preset, genotype JSON file or search run "
        "directory of a space that can be pruned (default mobilenetv3-small)",
    )
    budget = netadapt.add_mutually_exclusive_group()
    budget.add_argument("--latency-ratio", type=float, help="budget as a fraction of the start's latency, e.g. 0.5")
    budget.add_argument("--latency-target-ms", type=float, help="budget in milliseconds")
    netadapt.add_argument("--dataset", help=listed(registry.datasets, "digits") + "; digits is bundled")
    netadapt.add_argument("--data-dir", help="folder of the data set (cifar10, imagefolder)")
    netadapt.add_argument("--download", action="store_true", default=None, help="allow downloading CIFAR-10")
    netadapt.add_argument(
        "--weights",
        metavar="FILE.pt",
        help="trained weights of the start (nas materialize .pt "
        "or a state dict); without them the start is trained first",
    )
    netadapt.add_argument("--resolution", type=int, help="input size latency is measured at (default: the network's)")
    netadapt.add_argument(
        "--train-resolution", type=int, help="input size of the training images (default: the space's proxy resolution)"
    )
    netadapt.add_argument("--short-term-steps", type=int, help="fine-tune steps per proposal (default 20)")
    netadapt.add_argument("--long-term-steps", type=int, help="fine-tune steps of the result (default 200)")
    netadapt.add_argument(
        "--initial-steps", type=int, help="training steps of the start without --weights (default 300)"
    )
    netadapt.add_argument(
        "--reduction", type=float, help="latency removed per iteration, fraction of the start's (default 0.1)"
    )
    netadapt.add_argument("--decay", type=float, help="the reduction of iteration k is reduction * decay^k (default 1)")
    netadapt.add_argument(
        "--selection",
        choices=("accuracy", "efficiency"),
        help="choose the proposal with the "
        "best accuracy (NetAdapt, default) or the best dAccuracy/|dLatency| (MobileNetV3)",
    )
    netadapt.add_argument(
        "--latency-source",
        choices=("measured", "table"),
        help="latency that sets the target and stops the run: end-to-end measurement with the table's "
        "predictions calibrated by it (default), or the lookup table alone (replays exactly)",
    )
    netadapt.add_argument("--seed", type=int, help="seed (default 0)")
    netadapt.add_argument("--threads", type=int, help="intra-op threads of training (default 1)")
    add_execution_flags(netadapt, early_stop=False)
    netadapt.add_argument(
        "--table",
        metavar="FILE.json",
        help="latency lookup table (default: $NAS_LATENCY_TABLE or ~/.cache/nas-engine/latency.json)",
    )
    netadapt.add_argument("--out", help="run directory")
    netadapt.add_argument("--config", metavar="FILE.yaml", help="settings file; flags override it")
    netadapt.set_defaults(run=cmd_netadapt)


def _progress(record: Record, replayed: bool, finished: int) -> None:
    if replayed:
        return
    metrics = record.result.metrics
    outcome = (
        f"failed ({record.result.error})"
        if record.result.failed
        else f"accuracy {metrics.get('accuracy', float('nan')):.4f}, predicted {metrics.get('latency_ms', 0):.3f} ms, "
        f"measured {metrics.get('measured_ms', 0):.3f} ms"
    )
    print(f"trial {record.trial_id}: {outcome}", file=sys.stderr, flush=True)


def cmd_netadapt(args: argparse.Namespace) -> None:
    settings = settings_from_args(args, NetAdaptSettings, FLAGS)
    document = run_netadapt(settings, on_record=_progress)
    out, start, final = Path(settings.out), document["start"], document["final"]

    def number(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    print(
        f"{document['status']}: {len(document['iterations'])} iterations; latency {number(start['latency_ms'])} -> "
        f"{number(final['predicted_ms'])} ms predicted, {number(start['measured_ms'])} -> "
        f"{number(final['measured_ms'])} ms measured at {document['resolution']} px (target "
        f"{document['target_ms']:.3f}, {100 * final['measured_off_target']:+.1f}% off it measured); "
        f"accuracy {number(start['accuracy'], 4)} -> {number(final['accuracy'], 4)} after "
        f"{final['long_term_steps']} steps"
    )
    print(f"wrote {out / 'best.json'}, {out / 'best.pt'}, {out / 'netadapt.json'} and {out / 'netadapt.png'}")
    if document["status"] == "stuck":
        narrowest = document.get("narrowest_ms")
        print(
            f"nas netadapt: stuck above the target {document['target_ms']:.3f} ms: no single width saves another "
            f"step; the lowest latency reached is {final['lowest_reached_ms']:.3f} ms "
            f"({'calibrated by measurement' if document['latency_source'] == 'measured' else 'predicted'}), "
            f"{final['measured_ms']:.3f} ms measured now"
            + (f"; every width at its narrowest: {narrowest:.3f} ms predicted" if narrowest else ""),
            file=sys.stderr,
        )
