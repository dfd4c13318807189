"""The ``nas`` command: presets, show, materialize, search, scale, latency, netadapt, train, doctor.

A user mistake (unknown preset, malformed or missing file, bad number, unknown format) prints
one line on stderr and exits with code 2, without a traceback, and writes nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import optuna

from nas.cli.doctor import add_doctor_command
from nas.cli.errors import EXIT_USAGE, UsageError, positive_int
from nas.cli.latency import add_latency_command
from nas.cli.netadapt import add_netadapt_command
from nas.cli.scale import add_scale_command
from nas.cli.search import add_search_command
from nas.cli.show import add_show_commands
from nas.cli.train import add_train_command
from nas.errors import one_line

__all__ = ["EXIT_USAGE", "UsageError", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        # a sub-command names itself ("nas search: ..."); the top level is already "nas: error:"
        raise UsageError(message if self.prog == "nas" else f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas", description="Neural architecture search for PyTorch.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_show_commands(commands)
    add_search_command(commands)
    add_scale_command(commands)
    add_latency_command(commands, positive_int)
    add_netadapt_command(commands)
    add_train_command(commands)
    add_doctor_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the application's choice, not the library's
    try:
        args = build_parser().parse_args(argv)
        if args.verbose:
            logging.getLogger().setLevel(logging.INFO)
        args.run(args)
        return int(getattr(args, "exit_code", 0))
    except (UsageError, ValueError) as error:
        print(f"nas: error: {one_line(str(error)) or type(error).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # a path the user gave: unreadable, unwritable, full
        where = f"{error.filename}: " if error.filename else ""
        print(f"nas: error: {one_line(f'{where}{error.strerror or error}')}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(
            "nas: internal error: the lines above are a bug in nas, not a mistake of yours; please report them",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
