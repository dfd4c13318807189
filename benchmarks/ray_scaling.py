"""Throughput of the same search on the local runner and on Ray with 2 workers, with and without ASHA.

    python benchmarks/ray_scaling.py [--budget 20] [--controllers random reinforce] [--epochs 4]

For each controller, four fresh ``nas search --space nasnet --dataset digits`` runs in fresh
processes and run directories (default proxy settings):

1. ``--backend local --threads 2``: the sequential runner, one evaluation at a time on 2 threads;
2. ``--backend local --threads 1``: the same on one thread (the default);
3. ``--backend ray --workers 2 --cpus-per-trial 1``: two evaluations at once, one thread each;
4. the same with ``--early-stop asha`` (grace period 1 epoch, reduction factor 2).

Before them, the ceiling: the first 3 trials' evaluations in one process on 2 threads, and in two
processes on 1 thread each at the same time. Two single-thread evaluations at once can give at
most (2 x evaluations per second of each) / (evaluations per second on 2 threads) over the
2-thread runner, whatever runs them.

Throughput is completed evaluations per minute of the search (the report's wall time, Ray's
start-up excluded; the start-up is reported on its own, and the command's whole wall time too).
Goal: Ray with 2 workers >= 1.6x the local throughput. Prints the thread counts and the 1-minute
load average before each run, since a busy machine makes every number here meaningless.
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

RUNS = {
    "local, 2 threads": ["--backend", "local", "--threads", "2"],
    "local, 1 thread": ["--backend", "local", "--threads", "1"],
    "ray, 2 workers x 1 thread": ["--backend", "ray", "--workers", "2", "--cpus-per-trial", "1"],
    "ray, 2 workers, ASHA": ["--backend", "ray", "--workers", "2", "--cpus-per-trial", "1", "--early-stop", "asha"],
}


def run(controller: str, budget: int, epochs: int | None, flags: list[str]) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        command = [
            sys.executable,
            "-m",
            "nas.cli.app",
            "search",
            "--space",
            "nasnet",
            "--controller",
            controller,
            "--budget",
            str(budget),
            "--dataset",
            "digits",
            "--out",
            str(out),
            "--no-progress",
            *flags,
            *(["--epochs", str(epochs)] if epochs else []),
        ]
        load = os.getloadavg()[0]
        started = time.perf_counter()
        subprocess.run(command, check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        report = (out / "report.md").read_text()
    search = float(re.search(r"wall time: ([\d.]+) s", report).group(1))
    startup = re.search(r"start-up ([\d.]+) s", report)
    startup_seconds = float(startup.group(1)) if startup else 0.0
    evaluated = int(re.search(r"evaluations run: (\d+)", report).group(1))
    stopped = re.search(r"stopped early: (\d+)", report)
    best = re.search(r"best reward: ([\d.]+)", report)
    per_minute = 60 * evaluated / (search - startup_seconds)
    return {
        "load": load,
        "command": wall,
        "search": search,
        "startup": startup_seconds,
        "evaluated": evaluated,
        "stopped": int(stopped.group(1)) if stopped else 0,
        "per_minute": per_minute,
        "best": best.group(1) if best else "-",
    }


CEILING = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
import nas.space
from controllers.random_search import RandomSearch
from evaluators.proxy import ProxyEvaluator
space = nas.space.get("nasnet")
evaluator = ProxyEvaluator(space, "digits")
evaluator.prepare()
controller = RandomSearch(space, seed=0)
trials = [controller.ask() for _ in range(3)]
started = time.perf_counter()
for trial in trials:
    evaluator.evaluate(trial.genotype, trial.id)
print(time.perf_counter() - started)
"""


def ceiling() -> tuple[float, float, float]:
    """Seconds of 3 evaluations: alone on 2 threads, and on 1 thread in each of two processes at once."""

    def start(threads: int) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", CEILING, str(threads)], stdout=subprocess.PIPE, text=True)

    two_threads = float(start(2).communicate()[0])
    pair = [start(1), start(1)]
    first, second = (float(process.communicate()[0]) for process in pair)
    return two_threads, first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--controllers", nargs="+", default=["random", "reinforce"])
    parser.add_argument("--epochs", type=int, default=None, help="proxy epochs (default: the evaluator's, 4)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; budget {args.budget}; NASNet proxy on digits; load {os.getloadavg()[0]:.2f}")
    two_threads, first, second = ceiling()
    bound = (3 / first + 3 / second) / (3 / two_threads)
    print(
        f"ceiling: 3 evaluations on 2 threads {two_threads:.1f} s; two processes of 1 thread at once {first:.1f} s "
        f"and {second:.1f} s: at most {bound:.2f}x the 2-thread runner's throughput",
        flush=True,
    )
    for controller in args.controllers:
        results = {}
        for name, flags in RUNS.items():
            results[name] = run(controller, args.budget, args.epochs, flags)
            r = results[name]
            print(
                f"{controller:10s} {name:28s} load {r['load']:4.2f}  search {r['search']:6.1f} s  start-up "
                f"{r['startup']:4.1f} s  command {r['command']:6.1f} s  evaluated {r['evaluated']:3d}  "
                f"stopped early {r['stopped']:2d}  {r['per_minute']:5.2f} evaluations/min  best {r['best']}",
                flush=True,
            )
        for name in list(RUNS)[2:]:
            print(
                f"{controller:10s} {name:28s} speed-up over local 2 threads: "
                f"{results[name]['per_minute'] / results['local, 2 threads']['per_minute']:.2f}x (goal >= 1.6x), "
                f"over local 1 thread: {results[name]['per_minute'] / results['local, 1 thread']['per_minute']:.2f}x"
            )


if __name__ == "__main__":
    main()
