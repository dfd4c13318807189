"""How well does the proxy rank architectures? One seed, another seed, ``--repeats`` and a longer training.

    python benchmarks/proxy_fidelity.py [--dataset digits] [--architectures 8] [--jobs 2] [--json FILE]
    python benchmarks/proxy_fidelity.py --dataset imagefolder --data-dir DIR   # e.g. make_imagefolder.py's

Architectures: the NASNet space's published NASNet-A cell (preset ``nasnet-a-cifar``, architecture 0)
and ``--architectures - 1`` random genotypes, architecture ``i`` drawn from ``(--arch-seed, i)``. Each
is trained with ``ProxyEvaluator`` at its defaults (``--epochs`` overrides the number of epochs) with
trial id = its index, so that two settings of one architecture differ only in seed, repeat or epochs:

- ``seed A``: seed 0, repeat 0 (the plain evaluation of a search with seed 0);
- ``seed B``: seed 1, repeat 0 (another search seed: other weights, data order and validation split);
- ``repeats K``: the mean accuracy of repeats 0 ... K-1 at seed 0, as ``nas search --repeats K``
  (``nas.evaluator.repeated``). Repeat 0 *is* the seed-A run: it is reused, not trained again, and
  its cost is counted in every ``repeats K`` row. ``--max-repeats`` (default 2) sets the largest K;
- ``mean of seeds A, B``: free, from the two runs above;
- ``long``: ``--long-factor`` (3) times the epochs, seed 0, repeat 0: the reference every row is
  ranked against. ``--long-seeds 0 1`` also trains the long run at seed 1, reports the two long runs'
  own agreement (the noise floor of the reference) and ranks every setting against each and their mean.

Each row gives Spearman's rho and Kendall's tau-b (``scipy.stats``) against the long run over the
architectures that every run trained without error, and the CPU seconds per candidate:
``time.process_time()`` of the worker around ``evaluate`` (data loading excluded), summed over the
runs a setting needs. CPU time, not wall time, because the machine is shared; wall is shown too.

Evaluations are independent given ``(seed, trial id, repeat, epochs)`` and run in ``--jobs`` worker
processes (default 2), each with one torch thread. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

PRESET = "nasnet-a-cifar"
THREADS = 1
_EVALUATORS: dict[tuple[int, int], Any] = {}
_CONFIG: dict[str, Any] = {}


def _init_worker(config: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(THREADS)
    torch.set_num_interop_threads(THREADS)
    _CONFIG.update(config)


def _evaluate(index: int, genotype: Any, seed: int, repeat: int, epochs: int) -> dict[str, Any]:
    """One proxy evaluation in a worker; timings exclude loading the data."""
    import torch

    from evaluators.proxy import ProxyEvaluator

    key = (seed, epochs)
    if key not in _EVALUATORS:
        _EVALUATORS[key] = ProxyEvaluator(
            "nasnet", dataset=_CONFIG["dataset"], data_dir=_CONFIG["data_dir"], epochs=epochs, seed=seed
        )
    evaluator = _EVALUATORS[key]
    evaluator.splits_of(repeat)  # load (and cache) the data before the clock starts
    cpu, wall = time.process_time(), time.perf_counter()
    metrics = evaluator.evaluate(genotype, index, repeat=repeat)
    return {
        "architecture": index,
        "seed": seed,
        "repeat": repeat,
        "epochs": epochs,
        "cpu_seconds": time.process_time() - cpu,
        "wall_seconds": time.perf_counter() - wall,
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
        "metrics": metrics,
    }


def architectures(count: int, arch_seed: int) -> list[tuple[str, Any]]:
    """``(name, genotype)``: the NASNet-A preset, then random genotypes of the NASNet space."""
    from nas import registry
    from nas.seeds import trial_rng
    from nas.space import sample_choices

    space = registry.spaces.get("nasnet")
    found = [(PRESET, space.presets()[PRESET])]
    for i in range(1, count):
        found.append((f"random {i}", space.decode(sample_choices(space.decisions(), trial_rng(arch_seed, i)))))
    return found


def correlation(x: list[float], y: list[float]) -> tuple[float, float]:
    from scipy.stats import kendalltau, spearmanr

    return float(spearmanr(x, y).statistic), float(kendalltau(x, y).statistic)


def rank_of(values: list[float], position: int) -> str:
    """Rank of ``values[position]`` (1 = highest), ties shared: '3' or '3=' ."""
    above = sum(v > values[position] for v in values)
    tied = sum(v == values[position] for v in values) > 1
    return f"{above + 1}{'=' if tied else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "imagefolder"), default="digits")
    parser.add_argument("--data-dir", default=None, help="the ImageFolder (with --dataset imagefolder)")
    parser.add_argument("--architectures", type=int, default=8, help="NASNet-A plus N-1 random cells (default 8)")
    parser.add_argument("--arch-seed", type=int, default=0, help="seed of the random genotypes")
    parser.add_argument("--epochs", type=int, default=None, help="proxy epochs (default: ProxyEvaluator's)")
    parser.add_argument("--long-factor", type=int, default=3, help="epochs of the long run, as a multiple")
    parser.add_argument("--long-seeds", type=int, nargs="+", default=[0], help="seeds of the long run (default 0)")
    parser.add_argument("--max-repeats", type=int, default=2, help="report repeats 2 ... K (default 2)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one torch thread each")
    parser.add_argument("--json", type=Path, default=None, help="save every run's metrics and timings here")
    args = parser.parse_args()
    if args.architectures < 3 or args.max_repeats < 2 or args.long_factor < 1 or args.jobs < 1:
        parser.error("needs --architectures >= 3, --max-repeats >= 2, --long-factor >= 1, --jobs >= 1")
    if args.dataset == "imagefolder" and not args.data_dir:
        parser.error("--dataset imagefolder needs --data-dir")
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))  # inherited by the workers
    os.environ.setdefault("MKL_NUM_THREADS", str(THREADS))

    from evaluators.proxy import ProxyEvaluator
    from evaluators.proxy_options import DEFAULT_EPOCHS
    from nas.serialization import genotype_json

    epochs = args.epochs or DEFAULT_EPOCHS
    long_epochs = args.long_factor * epochs
    load_start = os.getloadavg()
    archs = architectures(args.architectures, args.arch_seed)
    probe = ProxyEvaluator("nasnet", dataset=args.dataset, data_dir=args.data_dir, epochs=epochs)
    facts = probe.describe()

    tasks = {(i, 0, r, epochs) for i in range(len(archs)) for r in range(args.max_repeats)}
    tasks |= {(i, 1, 0, epochs) for i in range(len(archs))}
    tasks |= {(i, s, 0, long_epochs) for i in range(len(archs)) for s in args.long_seeds}
    order = sorted(tasks, key=lambda t: (-t[3], t[0], t[1], t[2]))  # longest first: the pool ends together
    print(
        f"{len(order)} evaluations of {len(archs)} architectures on {args.jobs} processes x {THREADS} thread ...",
        file=sys.stderr,
    )
    runs: dict[tuple[int, int, int, int], dict[str, Any]] = {}
    started = time.perf_counter()
    config = {"dataset": args.dataset, "data_dir": args.data_dir}
    context = multiprocessing.get_context("spawn")  # no fork of a process that already runs torch threads
    with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_init_worker, initargs=(config,)) as pool:
        futures = [pool.submit(_evaluate, i, archs[i][1], s, r, e) for i, s, r, e in order]
        for future in as_completed(futures):
            run = future.result()
            key = (run["architecture"], run["seed"], run["repeat"], run["epochs"])
            runs[key] = run
            m = run["metrics"]
            print(
                f"[{len(runs)}/{len(order)}] arch {key[0]} seed {key[1]} repeat {key[2]} {key[3]} epochs: "
                f"{m.get('accuracy', m.get('error'))} in {run['cpu_seconds']:.1f} CPU s",
                file=sys.stderr,
            )
    wall_total = time.perf_counter() - started
    load_end = os.getloadavg()

    # Settings: name -> the runs (keys) whose mean accuracy it reports, per architecture.
    def keys(seed: int, repeats: range, e: int) -> list[tuple[int, int, int]]:
        return [(seed, r, e) for r in repeats]

    settings: dict[str, list[tuple[int, int, int]]] = {
        "seed A": keys(0, range(1), epochs),
        "seed B": keys(1, range(1), epochs),
    }
    for k in range(2, args.max_repeats + 1):
        settings[f"repeats {k}"] = keys(0, range(k), epochs)
    settings["mean of seeds A, B"] = keys(0, range(1), epochs) + keys(1, range(1), epochs)
    long_names = [f"long (seed {s})" if len(args.long_seeds) > 1 else "long" for s in args.long_seeds]
    for name, s in zip(long_names, args.long_seeds):
        settings[name] = keys(s, range(1), long_epochs)
    if len(args.long_seeds) > 1:
        settings["long, mean of seeds"] = [(s, 0, long_epochs) for s in args.long_seeds]

    failed = sorted({k[0] for k, run in runs.items() if "accuracy" not in run["metrics"]})
    good = [i for i in range(len(archs)) if i not in failed]

    def value(setting: str, i: int) -> float:
        return statistics.fmean(runs[(i, *k)]["metrics"]["accuracy"] for k in settings[setting])

    def cost(setting: str, field: str) -> float:
        return statistics.fmean(sum(runs[(i, *k)][field] for k in settings[setting]) for i in range(len(archs)))

    accuracy = {name: [value(name, i) for i in good] for name in settings}
    references = [long_names[0]] + (long_names[1:] + ["long, mean of seeds"] if len(args.long_seeds) > 1 else [])

    print(f"# Proxy fidelity: {args.dataset}\n")
    print(f"- data: {facts['dataset']}; {facts['images']}")
    print(
        f"- proxy: {facts['proxy network']}; {facts['training']} (ProxyEvaluator defaults otherwise); "
        f"long run: {long_epochs} epochs"
    )
    print(
        f"- architectures: {len(archs)} = NASNet-A ({PRESET}) + {len(archs) - 1} random NASNet cells "
        f"(arch seed {args.arch_seed}); trial id = architecture index in every setting"
    )
    print(
        f"- {args.jobs} processes x {THREADS} torch thread (torch.get_num_threads() in the workers: "
        f"{sorted({run['threads'] for run in runs.values()})}); {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}); load average (1, 5, 15 min) at start "
        f"{', '.join(f'{x:.2f}' for x in load_start)}, at end {', '.join(f'{x:.2f}' for x in load_end)}"
    )
    print(
        f"- {len(runs)} evaluations in {wall_total:.0f} s wall, "
        f"{sum(r['cpu_seconds'] for r in runs.values()):.0f} CPU s"
    )
    print(
        "- `repeats K` reuses the seed-A run as its repeat 0 (not trained twice); its CPU time counts all K "
        "runs, as a search with `--repeats K` would pay"
    )
    if failed:
        print(
            f"- failed (left out of every correlation): {', '.join(archs[i][0] for i in failed)}: "
            + "; ".join(str(run["metrics"].get("error")) for run in runs.values() if "error" in run["metrics"])
        )
    print()
    header = "| setting | " + " | ".join(f"Spearman ρ vs {r} | Kendall τ vs {r}" for r in references)
    print(header + " | CPU s per candidate (mean) | wall s per candidate (mean) | NASNet-A rank |")
    print("|---" * (2 * len(references) + 4) + "|")
    for name in settings:
        cells = []
        for reference in references:
            if name == reference or (reference == "long, mean of seeds" and name in long_names):
                cells += ["—", "—"]
            else:
                rho, tau = correlation(accuracy[name], accuracy[reference])
                cells += [f"{rho:.2f}", f"{tau:.2f}"]
        rank = rank_of(accuracy[name], good.index(0)) if 0 in good else "failed"
        print(
            f"| {name} | {' | '.join(cells)} | {cost(name, 'cpu_seconds'):.1f} | {cost(name, 'wall_seconds'):.1f} "
            f"| {rank} of {len(good)} |"
        )
    print()
    rho, tau = correlation(accuracy["seed A"], accuracy["seed B"])
    moves = [abs(a - b) for a, b in zip(accuracy["seed A"], accuracy["seed B"])]
    print(
        f"Seed A vs seed B (seed-to-seed agreement): Spearman ρ = {rho:.2f}, Kendall τ = {tau:.2f}; "
        f"|accuracy A - B| mean {statistics.fmean(moves):.3f}, max {max(moves):.3f}."
    )
    if len(args.long_seeds) > 1:
        first, second = long_names[:2]
        rho, tau = correlation(accuracy[first], accuracy[second])
        moves = [abs(a - b) for a, b in zip(accuracy[first], accuracy[second])]
        print(
            f"{first} vs {second} (the reference's own seed-to-seed agreement): Spearman ρ = {rho:.2f}, "
            f"Kendall τ = {tau:.2f}; |accuracy difference| mean {statistics.fmean(moves):.3f}, "
            f"max {max(moves):.3f}."
        )
    print()
    print("| architecture | params | " + " | ".join(settings) + " |")
    print("|---" * (len(settings) + 2) + "|")
    for row, i in enumerate(good):
        params = runs[(i, 0, 0, epochs)]["metrics"]["params"]
        print(f"| {i}: {archs[i][0]} | {params:,} | " + " | ".join(f"{accuracy[n][row]:.3f}" for n in settings) + " |")

    if args.json:
        data = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "facts": facts,
            "epochs": epochs,
            "long_epochs": long_epochs,
            "load_start": load_start,
            "load_end": load_end,
            "wall_seconds": wall_total,
            "architectures": [
                {"index": i, "name": n, "genotype": genotype_json("nasnet", g)} for i, (n, g) in enumerate(archs)
            ],
            "settings": {name: [list(k) for k in ks] for name, ks in settings.items()},
            "runs": sorted(runs.values(), key=lambda r: (r["architecture"], r["seed"], r["repeat"], r["epochs"])),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, default=str))
        print(f"\nraw results: {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
