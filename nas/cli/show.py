"""``nas presets``, ``nas show`` and ``nas materialize``: published architectures, a spec's size, its module.

``nas show DIR`` dispatches on the kind of run the directory holds (``nas.run.kind_of``): a search,
NetAdapt or training run is described (finished or not), with its best architecture at full size
once it has one; a scale run shows its family.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import nas
from nas.cli.errors import UsageError, positive_int
from nas.cli.scale import print_family
from nas.export import check_output, write_model
from nas.run import RunKind, kind_of
from nas.scale.family import family_member


def add_show_commands(commands: Any) -> None:
    presets = commands.add_parser("presets", help="list the published architectures")
    presets.set_defaults(run=cmd_presets)

    show = commands.add_parser("show", help="parameters, MACs and a per-stage table of a spec, or a run's status")
    show.add_argument(
        "spec",
        help="preset name, genotype JSON file, architecture string (or a file of it: nb201), or a run directory "
        "(search, scale, netadapt, train)",
    )
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.add_argument("--plot", metavar="FILE.png", help="draw the cells (or block widths) to a PNG")
    show.add_argument("--num-classes", type=positive_int, default=1000)
    show.add_argument("--phi", type=int, metavar="K", help="member K of a nas scale run's family")
    show.set_defaults(run=cmd_show)

    materialize = commands.add_parser("materialize", help="build a spec and write it to a file")
    materialize.add_argument(
        "spec",
        help="preset name, genotype JSON file, architecture string (or a file of it: nb201), search run directory, "
        "or a scale run directory with --phi",
    )
    materialize.add_argument("--out", required=True, metavar="FILE", help="output: .pt, .pt2 or .onnx")
    materialize.add_argument("--num-classes", type=positive_int, default=1000)
    materialize.add_argument("--seed", type=int, default=None, help="seed of the weight initialisation")
    materialize.add_argument("--force", action="store_true", help="replace an existing output file")
    materialize.add_argument("--phi", type=int, metavar="K", help="member K of a nas scale run's family")
    materialize.set_defaults(run=cmd_materialize)


def millions(value: int) -> str:
    return f"{value / 1e6:,.1f}M"


def cmd_presets(args: argparse.Namespace) -> None:
    table = Table(title="Presets")
    for column in ("name", "space", "resolution", "params", "MACs", "memory access"):
        table.add_column(column, justify="left" if column in ("name", "space") else "right", no_wrap=True)
    for name in nas.presets():
        summary = nas.summarize(name)
        table.add_row(
            name,
            summary["space"],
            str(summary["resolution"]),
            f"{summary['params']:,}",
            millions(summary["macs"]),
            millions(summary["memory_access"]),
        )
    Console(width=max(Console().width, 110)).print(table)  # never cut a preset name short


def run_of(spec: str) -> RunKind[Any, Any] | None:
    """The kind of run the directory ``spec`` holds, or None (a preset, a file, a foreign directory)."""
    return kind_of(Path(spec)) if Path(spec).is_dir() else None


def resolved_spec(args: argparse.Namespace) -> Any:
    """``args.spec``, or member ``--phi`` of a ``nas scale`` family; a run without an architecture yet is refused."""
    if args.phi is not None:
        return family_member(args.spec, args.phi).genotype
    kind = run_of(args.spec)
    if kind is not None and not (Path(args.spec) / "best.json").is_file():
        if kind.name == "scale":
            family_member(args.spec, 0)  # names the unfinished grid, or the family's damage
            raise UsageError(f"{args.spec}: a nas scale run holds a family, not one network; add --phi K")
        raise UsageError(
            f"{args.spec}: a {kind.command} run without a finished architecture yet; "
            f"`nas show {args.spec}` says where it stands"
        )
    return args.spec


def cmd_show(args: argparse.Namespace) -> None:
    kind = run_of(args.spec) if args.phi is None else None
    if kind is not None and kind.name in RUN_VIEWS and RUN_VIEWS[kind.name](args, kind, kind.describe(Path(args.spec))):
        return
    spec = resolved_spec(args)
    summary = nas.summarize(spec, num_classes=args.num_classes)
    if args.plot:
        _plot(spec, args.plot, args.num_classes)
    if kind is not None:
        summary["run"] = kind.describe(Path(args.spec))
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    console = Console()
    if kind is not None:
        console.print(
            f"[bold]{kind.command} run {args.spec}[/bold]: {_status_line(kind, summary['run'])}; "
            "the best architecture at full size:"
        )
    title = summary["name"] or (f"{args.spec} phi={args.phi}" if args.phi is not None else str(args.spec))
    console.print(
        f"[bold]{title}[/bold] ({summary['space']}): {summary['params']:,} parameters, "
        f"{millions(summary['macs'])} MACs, {millions(summary['memory_access'])} memory access "
        f"(elements read + written) at {summary['resolution']}x{summary['resolution']}, "
        f"{summary['num_classes']} classes"
    )
    table = Table()
    for column in ("stage", "blocks", "input", "out channels", "params", "MACs"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in summary["stages"]:
        table.add_row(
            row["stage"],
            str(row["blocks"]),
            f"{row['input_size']}x{row['input_size']}",
            str(row["out_channels"]),
            f"{row['params']:,}",
            millions(row["macs"]),
        )
    console.print(table)
    if args.plot:
        console.print(f"plot written to {args.plot}")


def _show_family(args: argparse.Namespace, kind: RunKind[Any, Any], family: Any) -> bool:
    """A nas scale run: its family table (a run without one is refused by ``resolved_spec``)."""
    if family is None:
        return False
    if args.plot:
        raise UsageError(
            f"--plot: a nas scale run has its picture in {args.spec}/scaling.png; add --phi K to draw member K"
        )
    if args.json:
        print(json.dumps(family, indent=2))
    else:
        print_family(family)
    return True


def _show_status(args: argparse.Namespace, kind: RunKind[Any, Any], status: Any) -> bool:
    """A run without a finished architecture yet: where it stands (then True); else False (the architecture too)."""
    if status is None or (Path(args.spec) / "best.json").is_file():
        return False
    if args.plot:
        raise UsageError(f"--plot: {args.spec} has no finished architecture to draw yet")
    if args.json:
        print(json.dumps({"run": status}, indent=2))
    else:
        Console().print(f"[bold]{kind.command} run {args.spec}[/bold]: {_status_line(kind, status)}")
    return True


def _status_line(kind: RunKind[Any, Any], status: dict[str, Any]) -> str:
    if kind.name == "search":
        settings, best = status["settings"], status["best_reward"]
        running = f", running: trials {status['running']}" if status["running"] else ""
        return (
            f"{status['status']}; {settings.get('controller')} on {settings.get('space')} / "
            f"{settings.get('dataset')}, budget {status['budget']}: {status['started']} trials started, "
            f"{status['finished']} finished ({status['failed']} failed){running}; best reward "
            + ("-" if best is None else f"{best:.4f}")
        )
    if kind.name == "netadapt" and "latency_ms" in status:

        def number(value: float | None, digits: int) -> str:
            return "-" if value is None else f"{value:.{digits}f}"

        (latency, predicted), (accuracy, final) = status["latency_ms"], status["accuracy"]
        return (
            f"{status['status']} after {status['iterations']} iterations; latency {number(latency, 3)} -> "
            f"{number(predicted, 3)} ms predicted at {status['resolution']} px (target {status['target_ms']:.3f}); "
            f"accuracy {number(accuracy, 4)} -> {number(final, 4)}"
        )
    if kind.name == "train" and status.get("results"):
        results = status["results"]
        return (
            f"{status['status']}; validation accuracy {results['validation_accuracy']:.4f}, "
            f"{results['test_split']} accuracy {results['test_accuracy']:.4f} ({results['params']:,} parameters)"
        )
    return str(status.get("status", status))


# How ``nas show`` presents each kind of run; a view returns False to go on to the best architecture.
RUN_VIEWS: dict[str, Callable[[argparse.Namespace, RunKind[Any, Any], Any], bool]] = {
    "search": _show_status,
    "netadapt": _show_status,
    "train": _show_status,
    "scale": _show_family,
}


def _plot(spec: Any, path: str, num_classes: int) -> None:
    from nas.plotting import plot_architecture  # lazy: the command line parses and checks without plotting

    if Path(path).suffix.lower() != ".png":
        raise UsageError(f"{path}: --plot writes a .png file")
    if not Path(path).parent.is_dir():
        raise UsageError(f"{Path(path).parent}: no such directory")
    if not os.access(Path(path).parent, os.W_OK):
        raise UsageError(f"{Path(path).parent}: not writable")
    resolved = nas.resolve(spec)
    ir = resolved.space.lower(resolved.genotype, num_classes=num_classes)
    plot_architecture(ir, path, title=resolved.name or str(spec))


def cmd_materialize(args: argparse.Namespace) -> None:
    check_output(args.out, args.force)  # before building anything: a bad path writes nothing
    spec = resolved_spec(args)
    ir = nas.lower(spec, num_classes=args.num_classes)
    module = nas.compile(ir, seed=args.seed)
    path = write_model(module, spec, args.out, args.num_classes, ir.resolution, args.force)
    print(f"wrote {path} ({sum(p.numel() for p in module.parameters()):,} parameters)")
