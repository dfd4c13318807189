"""``nas doctor RUN``: check a run's journal, and rescue its readable trials into a new run directory.

The rescued trials are rebuilt by the space of the run's kind (``RunKind.space_of``: a search's
registered space, a scale run's grid, a NetAdapt run's widths), so the original command resumes
from the export as from its own journal.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nas.cli.errors import UsageError
from nas.doctor import diagnose, export
from nas.run import kind_of_study


def add_doctor_command(commands: Any) -> None:
    doctor = commands.add_parser("doctor", help="check a run's journal; rescue its readable trials")
    doctor.add_argument("directory", metavar="RUN", help="run directory (search, scale or netadapt)")
    doctor.add_argument("--export", metavar="NEW_DIR", help="write the readable trials to a new run directory")
    doctor.add_argument("--study-name", help="the study to check (default: the only one, else nas-search)")
    doctor.set_defaults(run=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> None:
    target = Path(args.export) if args.export else None
    if target is not None and target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{args.export}: exists and is not an empty directory; export into a new directory")
    diagnosis = diagnose(Path(args.directory), args.study_name)
    damage = diagnosis.damage or f"{diagnosis.unreadable} trial record(s) cannot be read"
    print(f"{diagnosis.path}: {'intact' if diagnosis.healthy else 'DAMAGED: ' + damage}")
    print(
        f"studies: {', '.join(diagnosis.studies) or '-'}; checked: {diagnosis.study_name or '-'}; "
        f"settings readable: {diagnosis.settings is not None}"
    )
    print(f"finished trials readable: {diagnosis.finished}; unreadable trial rows: {diagnosis.unreadable}")
    if target is not None:
        kind = kind_of_study(diagnosis.study_name)
        if kind is None or not isinstance(diagnosis.settings, dict):
            raise ValueError(f"{diagnosis.path}: the run's settings are unreadable; nothing to resume from")
        count = export(diagnosis, target, kind.space_of(diagnosis.settings, diagnosis.path), kind.export_files)
        print(
            f"exported {count} finished trials to {args.export}; the original command ({kind.command}) with "
            f"--out {args.export} resumes from them"
        )
    args.exit_code = 0 if diagnosis.healthy else 1
