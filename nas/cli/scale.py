"""``nas scale``: find compound-scaling coefficients for a base network and write its family.

Flags override the config file; the config file overrides the defaults (``nas.scale.run.ScaleSettings``).
Keys of the config are the long flag names with underscores, plus ``evaluator_options`` (options of
the evaluator, as in ``nas search``; older files call it ``proxy``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nas import registry
from nas.cli.common import EXECUTION_FLAGS, TrialProgress, add_execution_flags, listed, settings_from_args
from nas.scale.run import ScaleSettings, run_scale

FLAGS = (
    "base",
    "evaluator",
    "dataset",
    "data_dir",
    "download",
    "epochs",
    "seed",
    "threads",
    "repeats",
    "grid_step",
    "grid_high",
    "tolerance",
    "constraint",
    "budget",
    "phi_max",
) + EXECUTION_FLAGS


def add_scale_command(commands: Any) -> None:
    scale = commands.add_parser(
        "scale", help="find compound scaling coefficients (alpha, beta, gamma) and the scaled family of a base network"
    )
    scale.add_argument(
        "--base", help="preset, genotype JSON file or search run directory of a chain space (default efficientnet-b0)"
    )
    scale.add_argument("--dataset", help=listed(registry.datasets, "digits") + "; digits is bundled")
    scale.add_argument("--data-dir", help="folder of the data set (cifar10, imagefolder)")
    scale.add_argument("--download", action="store_true", default=None, help="allow downloading CIFAR-10")
    scale.add_argument("--evaluator", help=listed(registry.evaluators, "proxy"))
    scale.add_argument("--grid-step", type=float, help="step of the grid over alpha, beta, gamma (default 0.05)")
    scale.add_argument("--grid-high", type=float, help="largest grid value of each multiplier (default 2.0)")
    scale.add_argument("--tolerance", type=float, help="largest |constraint - 2| of a grid point (default 0.1)")
    scale.add_argument(
        "--constraint",
        choices=("formula", "macs"),
        help="hold alpha*beta^2*gamma^2 ~= 2 "
        "(formula, the paper's; default) or the measured MACs of the built network ~= 2x the base's",
    )
    scale.add_argument("--phi-max", type=int, help="largest compound coefficient of the family (default 4)")
    scale.add_argument("--budget", type=int, help="grid points to evaluate (default: all, in a seeded order)")
    scale.add_argument("--epochs", type=int, help="proxy training epochs per point")
    scale.add_argument("--repeats", type=int, help="evaluations per point with independent seeds (default 1)")
    scale.add_argument("--seed", type=int, help="seed of the grid order and the evaluations (default 0)")
    scale.add_argument("--threads", type=int, help="intra-op threads per evaluation (default 1)")
    add_execution_flags(scale)
    scale.add_argument("--out", help="run directory (journal, scaling.json, scaling.md, scaling.png)")
    scale.add_argument("--config", metavar="FILE.yaml", help="settings file; flags override it")
    scale.add_argument("--no-progress", action="store_true", help="one line per point instead of a bar")
    scale.set_defaults(run=cmd_scale)


def cmd_scale(args: argparse.Namespace) -> None:
    settings = settings_from_args(args, ScaleSettings, FLAGS)
    with TrialProgress(None, False if args.no_progress else None) as progress:

        def grid(points: int, total: int) -> None:  # said once the run holds its directory: a refusal stays one line
            print(
                f"{points} grid points within {settings.tolerance:g} of 2 ({settings.constraint}); "
                f"evaluating {total} of them",
                file=sys.stderr,
                flush=True,
            )
            progress.begin(total)

        family, stats = run_scale(settings, on_record=progress.update, on_grid=grid)
    print_family(family)
    out = Path(settings.out)
    startup = (
        f" ({stats.backend}, {stats.workers} workers, start-up {stats.startup_seconds:.1f} s)"
        if stats.backend != "local"
        else ""
    )
    print(
        f"wrote {out / 'scaling.json'}, {out / 'scaling.md'} and {out / 'scaling.png'}; grid "
        f"{stats.wall_seconds:.1f} s{startup}"
    )


def print_family(family: dict[str, Any]) -> None:
    """The coefficients and the family table on the terminal."""
    console = Console()
    base = family["base"]["name"] or family["base"]["spec"]
    if family["alpha"] is None:
        console.print(f"compound scaling of {base}: no point was evaluated successfully; no family")
        return
    console.print(
        f"[bold]compound scaling of {base}[/bold] on {family['dataset']}: alpha {family['alpha']:g}, "
        f"beta {family['beta']:g}, gamma {family['gamma']:g} (alpha*beta^2*gamma^2 = "
        f"{family['constraint']:.3f}; proxy accuracy {family['accuracy']:.4f}, trial {family['best_trial']}, "
        f"{family['grid']['evaluated']} of {family['grid']['points']} grid points evaluated)"
    )
    table = Table()
    for column in ("phi", "width", "depth", "resolution", "params", "MACs", "MACs / base", "2^phi"):
        table.add_column(column, justify="right")
    for model in family["models"]:
        if "error" in model:
            table.add_row(
                str(model["phi"]),
                f"{model['width']:.3f}",
                f"{model['depth']:.3f}",
                "-",
                "-",
                f"not built: {model['error']}",
                "-",
                f"{model['2**phi']:g}",
            )
            continue
        table.add_row(
            str(model["phi"]),
            f"{model['width']:.3f}",
            f"{model['depth']:.3f}",
            str(model["resolution"]),
            f"{model['params']:,}",
            f"{model['macs'] / 1e6:,.1f}M",
            f"{model['macs_ratio']:.3f}",
            f"{model['2**phi']:g}",
        )
    console.print(table)
