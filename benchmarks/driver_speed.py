"""How fast the search driver runs when an evaluation costs nothing: ``nas search`` on a benchmark table.

    python benchmarks/driver_speed.py [--controllers random,evolution,reinforce,tpe] [--budgets 1000,10000]

Each (controller, budget) is one fresh ``nas search --space nb201 --evaluator tabular`` process
with its own run directory, so every trial goes through the real journal (an Optuna SQLite
study, written in batches), the controller's state file and the report. Printed per run: the
command's wall time (process start, imports, tables and report included), the loop's trials per
second after the backend's start-up (as the run's report states it), the driver's own time per
trial (ask, tell, journal, state: the report's loop overhead) and the machine's load. Goal
(issue 23): at least 500 trials/s end to end for ``random``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(controller: str, budget: int, folder: Path) -> dict[str, float]:
    out = folder / f"{controller}-{budget}"
    command = [sys.executable, "-m", "nas.cli", "search", "--space", "nb201", "--evaluator", "tabular"]
    command += ["--controller", controller, "--budget", str(budget), "--out", str(out), "--no-progress"]
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    report = (out / "report.md").read_text()
    rate = re.search(r"\((\d+) trials/s after a start-up of ([\d.]+) s\)", report)
    overhead = re.search(r"loop overhead .*?; ([\d.]+) (ms|s) per trial\)", report)
    assert rate is not None and overhead is not None, "the report's timing section changed"
    per_trial = float(overhead.group(1)) * (1.0 if overhead.group(2) == "ms" else 1000.0)
    return {"wall": wall, "rate": float(rate.group(1)), "startup": float(rate.group(2)), "loop_ms": per_trial}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--controllers", default="random,evolution,reinforce,tpe")
    parser.add_argument("--budgets", default="1000,10000")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}; CPUs: {os.cpu_count()}; one intra-op thread (--threads 1)")
    print("| controller | budget | wall (s) | end to end (trials/s) | loop (trials/s) | driver per trial (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for controller in args.controllers.split(","):
            for budget in (int(b) for b in args.budgets.split(",")):
                result = run(controller, budget, Path(scratch))
                print(
                    f"| {controller} | {budget:,} | {result['wall']:.1f} | {budget / result['wall']:.0f} | "
                    f"{result['rate']:.0f} | {result['loop_ms']:.2f} |",
                    flush=True,
                )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
