"""Time the issue's reference search end to end and split it into evaluation and everything else.

    python benchmarks/search_speed.py [--budget 20] [--controller reinforce] [--space nasnet]

Runs ``nas search ... --dataset digits`` with the default proxy settings in a fresh process
and a fresh run directory, then reads the run's journal. It prints the command's wall time
(process start, imports, data loading and report included), the time spent evaluating
candidates, the loop's own overhead (ask, tell, journal writes, controller state) as measured
inside the loop, and everything else outside the loop. Goals: wall < 300 s for 20 trials on
2 cores; loop overhead < 5% of the wall time.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--controller", default="reinforce")
    parser.add_argument("--space", default="nasnet")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        command = [
            sys.executable,
            "-m",
            "nas.cli.app",
            "search",
            "--space",
            args.space,
            "--controller",
            args.controller,
            "--budget",
            str(args.budget),
            "--dataset",
            "digits",
            "--out",
            str(out),
            "--seed",
            str(args.seed),
            "--no-progress",
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        report = (out / "report.md").read_text()
    loop_wall = float(re.search(r"wall time: ([\d.]+) s", report).group(1))
    evaluation = float(re.search(r"evaluation time: ([\d.]+) s", report).group(1))
    overhead = float(re.search(r"loop overhead .*?: ([\d.]+) s", report).group(1))
    best = re.search(r"best reward: ([\d.]+)", report).group(1)
    print(f"command: {' '.join(command[2:])}")
    print(f"wall time of the command         {wall:8.1f} s   (goal < 300 s for 20 trials)")
    print(f"  evaluating {args.budget} candidates        {evaluation:8.1f} s   ({evaluation / args.budget:.2f} s each)")
    print(
        f"  loop overhead (ask/tell/journal) {overhead:8.2f} s   ({100 * overhead / wall:.2f}% of the wall time; "
        "goal < 5%)"
    )
    print(
        f"  outside the loop (start-up, data, report) {wall - loop_wall:6.1f} s   "
        f"({100 * (wall - loop_wall) / wall:.1f}%)"
    )
    print(f"best reward (proxy validation accuracy): {best}")


if __name__ == "__main__":
    main()
