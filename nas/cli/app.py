"""The ``nas`` command: presets, show, materialize, search, scale, latency, netadapt, train, doctor.

A user mistake (unknown preset, malformed or missing file, bad number, unknown format) prints
one line on stderr and exits with code 2, without a traceback, and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from nas.cli.latency import add_latency_command
from nas.cli.netadapt import add_netadapt_command
from nas.cli.scale import add_scale_command
from nas.cli.search import add_search_command
from nas.cli.train import add_train_command

EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake of the user's: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise UsageError(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _millions(value: int) -> str:
    return f"{value / 1e6:,.1f}M"


def cmd_presets(args: argparse.Namespace) -> None:
    import nas

    table = Table(title="Presets")
    for column in ("name", "space", "resolution", "params", "MACs", "memory access"):
        table.add_column(column, justify="left" if column in ("name", "space") else "right", no_wrap=True)
    for name in nas.presets():
        summary = nas.summarize(name)
        table.add_row(name, summary["space"], str(summary["resolution"]), f"{summary['params']:,}",
                      _millions(summary["macs"]), _millions(summary["memory_access"]))
    Console(width=max(Console().width, 110)).print(table)  # never cut a preset name short


def _spec(args: argparse.Namespace) -> Any:
    """``args.spec``, or member ``--phi`` of the family in the ``nas scale`` run directory ``args.spec``."""
    from pathlib import Path

    from nas.scale.family import FAMILY_FILE, family_member

    if args.phi is None:
        directory = Path(args.spec)
        if directory.is_dir() and not (directory / FAMILY_FILE).exists() and not (directory / "best.json").exists():
            from nas.storage import study_names
            from nas.scale.run import SCALE_STUDY

            if SCALE_STUDY in study_names(directory):
                raise UsageError(f"{directory}: a nas scale run whose grid has not finished; rerun the same "
                                 "nas scale command to resume it")
        return args.spec

    return family_member(args.spec, args.phi).genotype


def cmd_show(args: argparse.Namespace) -> None:
    import nas
    from nas.scale.family import read_family

    family = read_family(args.spec) if args.phi is None else None
    if family is not None:  # a nas scale run: its family table
        if args.plot:
            raise UsageError(f"--plot: a nas scale run has its picture in {args.spec}/scaling.png; "
                             "add --phi K to draw member K")
        if args.json:
            print(json.dumps(family, indent=2))
        else:
            from nas.cli.scale import print_family

            print_family(family)
        return
    spec = _spec(args)
    summary = nas.summarize(spec, num_classes=args.num_classes)
    run = _run_summary(args.spec) if args.phi is None else None  # a family member is not the run's best
    if run is not None:
        summary["run"] = run
    if args.plot:
        _plot(spec, args.plot, args.num_classes)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    console = Console()
    if run is not None and run.get("study") == "nas-netadapt":
        console.print(f"[bold]NetAdapt run {args.spec}[/bold]: {_netadapt_line(args.spec)}; the result at full size:")
    elif run is not None:
        settings = run["settings"]
        best = "-" if run["best_reward"] is None else f"{run['best_reward']:.4f}"
        console.print(f"[bold]search run {args.spec}[/bold]: {settings.get('controller')} on {settings.get('space')} / "
                      f"{settings.get('dataset')}, {run['finished']} finished evaluations ({run['failed']} failed), "
                      f"best reward {best}; the best architecture at full size:")
    title = summary["name"] or (f"{args.spec} phi={args.phi}" if args.phi is not None else str(args.spec))
    console.print(f"[bold]{title}[/bold] ({summary['space']}): {summary['params']:,} parameters, "
                  f"{_millions(summary['macs'])} MACs, {_millions(summary['memory_access'])} memory access "
                  f"(elements read + written) at {summary['resolution']}x{summary['resolution']}, "
                  f"{summary['num_classes']} classes")
    table = Table()
    for column in ("stage", "blocks", "input", "out channels", "params", "MACs"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in summary["stages"]:
        table.add_row(row["stage"], str(row["blocks"]), f"{row['input_size']}x{row['input_size']}",
                      str(row["out_channels"]), f"{row['params']:,}", _millions(row["macs"]))
    console.print(table)
    if args.plot:
        console.print(f"plot written to {args.plot}")


def _netadapt_line(spec: str) -> str:
    """Status, iterations, latency and accuracy before and after, from the run's ``netadapt.json``."""
    from pathlib import Path

    try:
        document = json.loads((Path(spec) / "netadapt.json").read_text())
        start, final = document["start"], document["final"]

        def number(value: float | None, digits: int) -> str:
            return "-" if value is None else f"{value:.{digits}f}"

        return (f"{document['status']} after {len(document['iterations'])} iterations; latency "
                f"{number(start['latency_ms'], 3)} -> {number(final['predicted_ms'], 3)} ms predicted at "
                f"{document['resolution']} px (target {document['target_ms']:.3f}); accuracy "
                f"{number(start['accuracy'], 4)} -> {number(final['accuracy'], 4)}")
    except (OSError, ValueError, KeyError, TypeError):
        return "not finished (rerun the same nas netadapt command to resume it)"


def _run_summary(spec: str) -> dict[str, Any] | None:
    from pathlib import Path

    from nas.journal import open_study_summary

    return open_study_summary(Path(spec)) if Path(spec).is_dir() else None


def _plot(spec: Any, path: str, num_classes: int) -> None:
    from pathlib import Path

    import nas
    from nas.plotting import plot_architecture

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
    import nas
    from nas.export import check_output, write_model

    check_output(args.out, args.force)  # before building anything: a bad path writes nothing
    spec = _spec(args)
    ir = nas.lower(spec, num_classes=args.num_classes)
    module = nas.compile(ir, seed=args.seed)
    path = write_model(module, spec, args.out, args.num_classes, ir.resolution, args.force)
    print(f"wrote {path} ({sum(p.numel() for p in module.parameters()):,} parameters)")


def cmd_doctor(args: argparse.Namespace) -> None:
    from pathlib import Path

    from nas.doctor import diagnose, export

    if args.export and Path(args.export).exists() and (not Path(args.export).is_dir() or any(Path(args.export).iterdir())):
        raise UsageError(f"{args.export}: exists and is not an empty directory; export into a new directory")
    diagnosis = diagnose(Path(args.directory), args.study_name)
    damage = diagnosis.damage or f"{diagnosis.unreadable} trial record(s) cannot be read"
    print(f"{diagnosis.path}: {'intact' if diagnosis.healthy else 'DAMAGED: ' + damage}")
    print(f"studies: {', '.join(diagnosis.studies) or '-'}; checked: {diagnosis.study_name or '-'}; "
          f"settings readable: {diagnosis.settings is not None}")
    print(f"finished trials readable: {diagnosis.finished}; unreadable trial rows: {diagnosis.unreadable}")
    if args.export:
        count = export(diagnosis, Path(args.export), *_run_space(diagnosis))
        print(f"exported {count} finished trials to {args.export}; the original command (nas search, scale or "
              f"netadapt) with --out {args.export} resumes from them")
    args.exit_code = 0 if diagnosis.healthy else 1


def _run_space(diagnosis: Any) -> tuple[Any, tuple[str, ...]]:
    """The space of a damaged run's trials, rebuilt from its recorded settings, and the files to copy."""
    from nas.netadapt.run import NETADAPT_STUDY, width_space_from_identity
    from nas.scale.run import SCALE_STUDY, space_from_identity
    from nas.space import get as get_space

    if diagnosis.study_name == SCALE_STUDY:
        return space_from_identity(diagnosis.settings, diagnosis.path), ()
    if diagnosis.study_name == NETADAPT_STUDY:
        return width_space_from_identity(diagnosis.settings, diagnosis.path), ("start.pt", "weights")
    if not isinstance(diagnosis.settings, dict) or not isinstance(diagnosis.settings.get("space"), str):
        raise ValueError(f"{diagnosis.path}: the run's settings are unreadable; nothing to resume from")
    return get_space(diagnosis.settings["space"]), ()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas", description="Neural architecture search for PyTorch.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    presets = commands.add_parser("presets", help="list the published architectures")
    presets.set_defaults(run=cmd_presets)

    show = commands.add_parser("show", help="parameters, MACs and a per-stage table of a spec")
    show.add_argument("spec", help="preset name, genotype JSON file, search or scale run directory")
    show.add_argument("--json", action="store_true", help="print the summary as JSON")
    show.add_argument("--plot", metavar="FILE.png", help="draw the cells (or block widths) to a PNG")
    show.add_argument("--num-classes", type=_positive_int, default=1000)
    show.add_argument("--phi", type=int, metavar="K", help="member K of a nas scale run's family")
    show.set_defaults(run=cmd_show)

    materialize = commands.add_parser("materialize", help="build a spec and write it to a file")
    materialize.add_argument("spec", help="preset name, genotype JSON file, search run directory, or a "
                             "scale run directory with --phi")
    materialize.add_argument("--out", required=True, metavar="FILE", help="output: .pt, .pt2 or .onnx")
    materialize.add_argument("--num-classes", type=_positive_int, default=1000)
    materialize.add_argument("--seed", type=int, default=None, help="seed of the weight initialisation")
    materialize.add_argument("--force", action="store_true", help="replace an existing output file")
    materialize.add_argument("--phi", type=int, metavar="K", help="member K of a nas scale run's family")
    materialize.set_defaults(run=cmd_materialize)

    add_search_command(commands)
    add_scale_command(commands)
    add_latency_command(commands, _positive_int)
    add_netadapt_command(commands)
    add_train_command(commands)

    doctor = commands.add_parser("doctor", help="check a run's journal; rescue its readable trials")
    doctor.add_argument("directory", metavar="RUN", help="search run directory")
    doctor.add_argument("--export", metavar="NEW_DIR", help="write the readable trials to a new run directory")
    doctor.add_argument("--study-name", help="the study to check (default: the only one, else nas-search)")
    doctor.set_defaults(run=cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import optuna

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the application's choice, not the library's
    try:
        args = build_parser().parse_args(argv)
        if args.verbose:
            logging.getLogger().setLevel(logging.INFO)
        args.run(args)
        return int(getattr(args, "exit_code", 0))
    except (UsageError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"nas: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # a path the user gave: unreadable, unwritable, full
        where = f"{error.filename}: " if error.filename else ""
        print(f"nas: error: {where}{error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001  (a real bug: the traceback, then one line that says so)
        traceback.print_exc()
        print("nas: internal error: the lines above are a bug in nas, not a mistake of yours; please report them",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
