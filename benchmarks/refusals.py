"""How long a user's mistake takes to be refused: every class of mistake, through the installed ``nas`` command.

Issue 22's goal: every refusal in under 2 s on this 2-core machine (data folders, evaluator options and a
resumed run's settings included), which means checking before torch is imported. Each case runs
``--repeats`` times in a fresh process; the table gives the median and the slowest wall time, the exit
code and the first line of stderr.

    .venv/bin/python benchmarks/refusals.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cases(scratch: Path) -> list[tuple[str, list[str]]]:
    """``(what, argv)`` of every class of mistake; ``{run}`` is a search run recorded with other settings."""
    (scratch / "one-class" / "cat").mkdir(parents=True)
    (scratch / "one-class" / "cat" / "a.png").write_bytes(b"")
    (scratch / "bad-option.yaml").write_text("evaluator_options: {epoch: 2}\n")
    (scratch / "bad-reduction.yaml").write_text("evaluator_options: {num_cells: 1, penultimate_filters: 25}\n")
    (scratch / "malformed.yaml").write_text("space: [nasnet\n")
    (scratch / "genotype.json").write_text('{"space": "nasnet", "version": 1, "genotype": {"normal": 3}}')
    fresh = str(scratch / "fresh")
    return [
        ("unknown flag", ["search", "--budgett", "3", "--out", fresh]),
        ("bad number", ["search", "--budget", "0", "--out", fresh]),
        ("unknown space", ["search", "--space", "hypernet", "--out", fresh]),
        ("malformed YAML", ["search", "--config", str(scratch / "malformed.yaml"), "--out", fresh]),
        ("unknown objective", ["search", "--objective", "speed", "--out", fresh]),
        ("bad genotype file", ["show", str(scratch / "genotype.json")]),
        (
            "missing data folder",
            ["search", "--dataset", "imagefolder", "--data-dir", str(scratch / "no"), "--out", fresh],
        ),
        (
            "one-class data folder",
            ["search", "--dataset", "imagefolder", "--data-dir", str(scratch / "one-class"), "--out", fresh],
        ),
        ("CIFAR-10 not there", ["search", "--dataset", "cifar10", "--data-dir", str(scratch), "--out", fresh]),
        ("unknown evaluator option", ["search", "--config", str(scratch / "bad-option.yaml"), "--out", fresh]),
        ("proxy network out of bounds", ["search", "--config", str(scratch / "bad-reduction.yaml"), "--out", fresh]),
        ("resume with other settings", ["search", "--budget", "5", "--seed", "3", "--out", "{run}"]),
        ("netadapt schedule", ["netadapt", "--latency-ratio", "0.5", "--decay", "-1", "--out", fresh]),
        (
            "train data folder",
            [
                "train",
                "mobilenetv3-small",
                "--dataset",
                "imagefolder",
                "--data-dir",
                str(scratch / "no"),
                "--out",
                fresh,
            ],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    command = shutil.which("nas", path=str(Path(sys.executable).parent)) or "nas"
    scratch = Path(tempfile.mkdtemp(prefix="nas-refusals-"))
    run = scratch / "run"
    import optuna

    from nas.journal import Journal  # a search run recorded with seed 0, so that seed 3 is refused
    from nas.search.settings import SearchSettings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Journal(run, None, "nas-search", SearchSettings(out=str(run), budget=5).identity())
    print(f"load {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs; {args.repeats} runs each\n")
    print("| mistake | median (s) | slowest (s) | exit | message |\n|---|---:|---:|---:|---|")
    slowest = 0.0
    for what, argv in cases(scratch):
        argv = [str(run) if arg == "{run}" else arg for arg in argv]
        times, done = [], None
        for _ in range(args.repeats):
            began = time.perf_counter()
            done = subprocess.run([command, *argv], capture_output=True, text=True, cwd=scratch)
            times.append(time.perf_counter() - began)
        assert done is not None
        slowest = max(slowest, max(times))
        message = done.stderr.strip().splitlines()[0][:90] if done.stderr.strip() else ""
        print(f"| {what} | {statistics.median(times):.2f} | {max(times):.2f} | {done.returncode} | {message} |")
    print(f"\nslowest refusal: {slowest:.2f} s")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
