"""Searches on NAS-Bench-201 (CIFAR-10) against its known optimum: every controller at its defaults, and anchors.

The ground truth is the engine's ``nb201`` space and its ``tabular`` evaluator (the shipped table: all
15,625 cells, arXiv 2001.00326 §3). Reward: the 200-epoch validation accuracy (objective ``accuracy``,
the evaluator's ``valid_200ep`` / 100); reported: the 200-epoch *test* accuracy (``test_200ep``) of the
best-by-reward cell of a search (ties: the earlier trial), never searched on. Optimum: the table's best
test accuracy (94.37). A query is one trial told to the controller (a controller that skips known
isomorphism classes spends none on them).

Each search is driven as ``nas.loop`` drives it (ask, evaluate, tell ``nas.loop.to_result(metrics,
objective.reward)``), in process without the journal, through ``nas.controller.make_controller(name,
space, seed=..., budget=...)``, so that defaults are what users get. Rows:

- every registered controller that searches the space's decisions, at its defaults (``compound-grid``
  and ``netadapt`` search scaling coefficients and one network's widths: not applicable);
- the anchors of issue 23, run in the same invocation: random search (``random``), textbook regularized
  evolution as the NB201 paper ran it (population 10, tournament 3, no skipping of known classes: Real
  et al. 2019, arXiv 1802.01548, Algorithm 1) and Optuna's TPE at its defaults (``tpe``; Optuna 5's
  default is multivariate) and univariate (``multivariate: false``).

Output under ``--out``: ``results.json`` (settings, every run's summary), ``trajectories.json.gz``
(the best-by-reward test accuracy and summed cost after each query, runs of the largest budget) and
``results.md``: per budget the mean ± sd of the test accuracy of the best-by-reward cell, its mean
regret to the optimum, the fraction of runs that found a top-0.1% cell (by test accuracy: the 16
best of 15,625) and the wall time per run; the same at equal simulated time (the budget in summed
``simulated_cost``, GMAC-epochs, set to the expected cost of 30 / 100 / 300 / 1,000 random queries:
each run of a query budget stopped at the matching cost); each controller's own time per trial (ask
+ tell, evaluation excluded) at ``--cost-trials``; and the plots ``regret_vs_queries.png`` and
``regret_vs_cost.png`` (median and quartiles over seeds, runs of the largest budget).

    .venv/bin/python benchmarks/nb201_search.py --out benchmarks/results/nb201_search   # 20 seeds, 2 workers
    .venv/bin/python benchmarks/nb201_search.py --seeds 5 --budgets 100 --controllers local evolution
    .venv/bin/python benchmarks/nb201_search.py --variant 'evolution P20={"controller": "evolution", \
        "population_size": 20}' --controllers 'evolution P20'
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import logging
import math
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

SPACE, EVALUATOR, OBJECTIVE = "nb201", "tabular", "accuracy"
TEST = "test_200ep"
BUDGETS = (30, 100, 300, 1000)
COST_TRIALS = (1000, 10000)
TOP_FRACTION = 0.001
# Label -> (controller name, options). Order: the rows of the tables.
ENTRIES: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "evolution": ("evolution", {}),
    "reinforce": ("reinforce", {}),
    "local": ("local", {}),
    "tpe": ("tpe", {}),
    "nsga2": ("nsga2", {}),
    "REA textbook": ("evolution", {"population_size": 10, "sample_size": 3, "preset": "paper"}),
    "TPE univariate": ("tpe", {"sampler_options": {"multivariate": False}}),
}
ANCHOR_NOTES = {
    "random": "anchor: random search",
    "tpe": "anchor: Optuna TPE, defaults",
    "REA textbook": "anchor: population 10, sample 3 drawn with replacement, known classes re-evaluated",
    "TPE univariate": "Optuna TPE, multivariate=False",
}
# The issue's anchors (20 seeds, measured before this benchmark), for the tables: label -> {budget: text}.
ISSUE_ANCHORS = {
    "random": {100: "93.81 ± 0.17", 300: "93.95 ± 0.25"},
    "REA textbook": {100: "93.94 ± 0.32", 300: "94.31 ± 0.16"},
    "tpe": {100: "94.16 ± 0.27", 300: "94.27 ± 0.27"},
}
NOT_APPLICABLE = {
    "compound-grid": "searches EfficientNet's compound-scaling coefficients (nas scale), not a space's decisions",
    "netadapt": "prunes the widths of one network under a latency schedule (nas netadapt)",
    "optuna:TPESampler": "is tpe",
    "optuna:NSGAIISampler": "is nsga2",
    "optuna:RandomSampler": "is random search",
    "optuna:NSGAIIISampler": "single-objective: NSGA-II's selection with reference points that play no part",
    "optuna:BruteForceSampler": "enumerates the cells in a fixed order: no search",
    "optuna:GPSampler": "about 1 s per trial once its Gaussian process is fitted (run it with --controllers)",
}

# ------------------------------------------------------------------------------------------- worker

_WORLD: dict[str, Any] = {}


def _world() -> dict[str, Any]:
    """The space, evaluator and objective of this process (built once)."""
    if not _WORLD:
        from nas.evaluator import make_evaluator
        from nas.objective import make_objective
        from nas.space import get

        space = get(SPACE)
        evaluator = make_evaluator(EVALUATOR, space, seed=0)
        evaluator.prepare()
        _WORLD.update(space=space, evaluator=evaluator, objective=make_objective(OBJECTIVE))
    return _WORLD


def warm_start(space: Any, options: Mapping[str, Any], seed: int) -> list[dict[str, Any]]:
    """``options["top"]`` of ``options["candidates"]`` random cells by the rank mean of ``options["scores"]``
    (NASLib's zero-cost columns, read from the shipped table; a cell it lacks ranks last)."""
    from evaluators.tabular_options import shipped_tables
    from nas.search.warm_start import DEFAULT_SCORES, select

    if "zero_cost" not in _WORLD:
        with gzip.open(shipped_tables()["zero-cost-cifar10-naslib"].open("rb"), "rt", newline="") as text:
            _WORLD["zero_cost"] = {row.pop("arch"): row for row in csv.DictReader(text)}
    table = _WORLD["zero_cost"]
    chosen, _ = select(
        space,
        lambda genotype, index: table.get(space.to_string(genotype), {}),
        int(options["candidates"]),
        int(options["top"]),
        seed,
        tuple(options.get("scores", DEFAULT_SCORES)),
    )
    return chosen


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)  # the controllers' warnings about small budgets, once per run
    _world()


def run_search(task: Mapping[str, Any]) -> dict[str, Any]:
    """One search of ``task["budget"]`` queries; the best-by-reward trajectory and the times."""
    from nas.controller import make_controller
    from nas.loop import to_result

    world = _world()
    space, evaluator, objective = world["space"], world["evaluator"], world["objective"]
    start = time.perf_counter()
    options = dict(task["options"])
    warm = options.pop("warm_start", None)
    controller = make_controller(task["controller"], space, seed=task["seed"], budget=task["budget"], **options)
    if warm:  # the best of many cells by NASLib's zero-cost scores first (nas.search.warm_start)
        controller.enqueue(warm_start(space, warm, task["seed"]))
    best_reward, best_test = -math.inf, math.nan
    tests: list[float] = []  # test accuracy of the best-by-reward cell after each query
    costs: list[float] = []  # summed simulated cost after each query
    total_cost, own, own_times = 0.0, 0.0, []
    limit = task.get("time_limit")
    while not controller.finished:
        tick = time.perf_counter()
        trial = controller.ask()
        spent = time.perf_counter() - tick
        if trial is None:
            raise RuntimeError(f"{task['label']}: a sequential loop had to wait")
        metrics = evaluator.evaluate(trial.genotype, trial.id)
        result = to_result(metrics, objective.reward)
        tick = time.perf_counter()
        controller.tell(trial.id, result)
        spent += time.perf_counter() - tick
        own += spent
        own_times.append(spent)
        if not result.failed and result.reward > best_reward:  # ties: the earlier trial stays
            best_reward, best_test = float(result.reward), float(metrics[TEST])
        total_cost += float(metrics.get("simulated_cost", 0.0))
        tests.append(best_test)
        costs.append(total_cost)
        if limit is not None and time.perf_counter() - start > limit:
            break
    return {
        **{k: task[k] for k in ("label", "controller", "options", "budget", "seed", "kind")},
        "queries": len(tests),
        "best_reward": best_reward,
        "best_test": best_test,
        "tests": tests,
        "costs": costs,
        "wall_seconds": time.perf_counter() - start,
        "controller_seconds": own,
        "controller_seconds_last": float(np.mean(own_times[-max(1, len(own_times) // 10) :])) if own_times else 0.0,
    }


# ------------------------------------------------------------------------------------------ the table


def table_facts() -> dict[str, Any]:
    """Optimum, top-0.1% threshold and mean simulated cost over every cell, through the evaluator."""
    world = _world()
    space, evaluator = world["space"], world["evaluator"]
    decisions = space.decisions()
    tests, costs = [], []
    for trial_id, combination in enumerate(itertools.product(*(d.choices for d in decisions))):
        metrics = evaluator.evaluate(space.decode(dict(zip((d.name for d in decisions), combination))), trial_id)
        tests.append(float(metrics[TEST]))
        costs.append(float(metrics["simulated_cost"]))
    ranked = sorted(tests, reverse=True)
    top = math.ceil(TOP_FRACTION * len(ranked))
    return {
        "cells": len(tests),
        "optimum_test": ranked[0],
        "top_count": top,
        "top_threshold": ranked[top - 1],
        "mean_cost": float(np.mean(costs)),
    }


# ---------------------------------------------------------------------------------------- statistics


def summarize(runs: Sequence[Mapping[str, Any]], facts: Mapping[str, Any], budget_of: Any) -> dict[str, Any]:
    """Mean ± sd, mean regret, top-0.1% fraction and wall time of the runs' best cells at ``budget_of(run)``."""
    found = np.array([budget_of(run)[0] for run in runs])
    queries = np.array([budget_of(run)[1] for run in runs])
    return {
        "runs": len(runs),
        "mean": float(np.mean(found)),
        "sd": float(np.std(found, ddof=1)) if len(found) > 1 else 0.0,
        "regret": float(np.mean(facts["optimum_test"] - found)),
        "top": float(np.mean(found >= facts["top_threshold"])),
        "wall": float(np.mean([run["wall_seconds"] for run in runs])),
        "queries": float(np.mean(queries)),
    }


def at_queries(run: Mapping[str, Any]) -> tuple[float, int]:
    return run["best_test"], run["queries"]


def at_cost(limit: float) -> Any:
    """The best cell among the queries whose summed cost is within ``limit`` (the whole run if it ends before)."""

    def pick(run: Mapping[str, Any]) -> tuple[float, int]:
        within = int(np.searchsorted(np.asarray(run["costs"]), limit, side="right"))
        return (run["tests"][within - 1] if within else math.nan), within

    return pick


# -------------------------------------------------------------------------------------------- report


def markdown(report: Mapping[str, Any]) -> str:
    facts, settings = report["facts"], report["settings"]
    lines = [
        "# NAS-Bench-201 (CIFAR-10) searches",
        "",
        f"Reward: 200-epoch validation accuracy; reported: the 200-epoch test accuracy of the best-by-reward cell. "
        f"Optimum {facts['optimum_test']:.2f}; top 0.1% = the {facts['top_count']} best cells "
        f"(test ≥ {facts['top_threshold']:.2f}). Seeds {settings['seeds']}, {settings['workers']} worker(s), "
        f"1 torch thread each. Not applicable: "
        + "; ".join(f"`{name}` {why}" for name, why in NOT_APPLICABLE.items())
        + ".",
        "",
    ]
    header = "| controller | test % mean ± sd | regret | top 0.1% | s per run | issue's figure |"
    for kind in ("queries", "cost"):
        for budget in settings["budgets"]:
            rows = report["summary"].get(kind, {}).get(str(budget))
            if not rows:
                continue
            if kind == "queries":
                lines += [f"## {budget} queries", "", header, "|---|---|---|---|---|---|"]
            else:
                cost = report["cost_budgets"][str(budget)]
                lines += [
                    f"## Equal simulated time: {cost:,.0f} GMAC-epochs (the expected cost of {budget} random queries)",
                    "",
                    "| controller | test % mean ± sd | regret | top 0.1% | queries used (mean) |",
                    "|---|---|---|---|---|",
                ]
            for label, row in rows.items():
                name = f"{label} ({ANCHOR_NOTES[label]})" if label in ANCHOR_NOTES else label
                figure = f"{row['mean']:.2f} ± {row['sd']:.2f} | {row['regret']:.3f} | {row['top']:.2f}"
                if kind == "queries":
                    issue = ISSUE_ANCHORS.get(label, {}).get(budget, "")
                    lines.append(f"| {name} | {figure} | {row['wall']:.2f} | {issue} |")
                else:
                    lines.append(f"| {name} | {figure} | {row['queries']:.0f} |")
            lines.append("")
    if report.get("controller_cost"):
        lines += [
            "## Controller time per trial (ask + tell, evaluation excluded; one seed)",
            "",
            "| controller | trials | ms per trial (mean) | ms per trial (last 10%) | note |",
            "|---|---|---|---|---|",
        ]
        for row in report["controller_cost"]:
            note = (
                f"stopped after {row['queries']:,} of {row['budget']:,} trials (time limit)"
                if row["queries"] < row["budget"]
                else ""
            )
            lines.append(
                f"| {row['label']} | {row['budget']:,} | {row['ms_mean']:.2f} | {row['ms_last']:.2f} | {note} |"
            )
        lines.append("")
    lines += [f"Plots: `{name}`" for name in report.get("plots", [])]
    return "\n".join(lines) + "\n"


def plot(report: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], out: Path) -> list[str]:
    """Regret (median, quartiles) against queries and against summed simulated cost, runs of the largest budget."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    optimum = report["facts"]["optimum_test"]
    budget = max(report["settings"]["budgets"])
    labels = list(dict.fromkeys(run["label"] for run in runs if run["kind"] == "queries" and run["budget"] == budget))
    names = []
    for axis_kind, filename in (("queries", "regret_vs_queries.png"), ("cost", "regret_vs_cost.png")):
        figure, axes = plt.subplots(figsize=(8, 5))
        for label in labels:
            chosen = [r for r in runs if r["label"] == label and r["kind"] == "queries" and r["budget"] == budget]
            if axis_kind == "queries":
                length = min(len(r["tests"]) for r in chosen)
                x = np.arange(1, length + 1)
                regret = np.array([optimum - np.asarray(r["tests"][:length]) for r in chosen])
            else:
                top = min(r["costs"][-1] for r in chosen)
                x = np.geomspace(min(r["costs"][0] for r in chosen), top, 200)
                regret = np.array([[optimum - at_cost(c)(r)[0] for c in x] for r in chosen])
            low, median, high = np.nanpercentile(regret, [25, 50, 75], axis=0)
            (line,) = axes.plot(x, median, label=label)
            axes.fill_between(x, low, high, alpha=0.15, color=line.get_color())
        axes.set_xscale("log")
        axes.set_yscale("symlog", linthresh=0.01)
        axes.set_ylim(bottom=0)
        axes.set_xlabel("queries" if axis_kind == "queries" else "summed simulated cost (GMAC-epochs)")
        axes.set_ylabel(f"regret (test %, optimum {optimum:.2f})")
        axes.set_title(f"NAS-Bench-201 CIFAR-10, {budget}-query searches: median and quartiles")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(out / filename, dpi=120)
        plt.close(figure)
        names.append(str(out / filename))
    return names


# ---------------------------------------------------------------------------------------------- main


def parse_variant(text: str) -> tuple[str, tuple[str, dict[str, Any]]]:
    label, equals, spec = text.partition("=")
    if not equals or not label:
        raise ValueError(f"--variant: expected 'LABEL={{\"controller\": NAME, ...options}}', got {text!r}")
    options = json.loads(spec)
    if not isinstance(options, dict) or "controller" not in options:
        raise ValueError(f"--variant {label!r}: a JSON object with a 'controller' key is required")
    return label, (options.pop("controller"), options)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("nb201_search"), help="folder for results and plots")
    parser.add_argument("--seeds", type=int, default=20, help="seeds 0 .. N-1 per controller and budget")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="query budgets")
    parser.add_argument("--controllers", nargs="+", default=None, help="labels of rows (default: all)")
    parser.add_argument("--variant", action="append", default=[], help='LABEL={"controller": NAME, ...options}')
    parser.add_argument("--workers", type=int, default=2, help="processes running searches side by side")
    parser.add_argument("--cost-trials", type=int, nargs="*", default=list(COST_TRIALS), help="trials for ms/trial")
    parser.add_argument("--cost-time-limit", type=float, default=300.0, help="seconds per controller-cost run")
    parser.add_argument(
        "--seed-overrides",
        action="append",
        default=[],
        help="LABEL:BUDGET=SEEDS: fewer seeds for one slow cell (stated in the report)",
    )
    args = parser.parse_args(argv)
    entries = dict(ENTRIES)
    for text in args.variant:
        label, entry = parse_variant(text)
        entries[label] = entry
    labels = args.controllers or list(entries)
    unknown = [label for label in labels if label not in entries]
    if unknown:
        parser.error(f"unknown controller label(s) {unknown}; valid: {list(entries)}")
    overrides: dict[tuple[str, int], int] = {}
    for text in args.seed_overrides:
        where, _, seeds = text.rpartition("=")
        label, _, budget = where.rpartition(":")
        overrides[(label, int(budget))] = int(seeds)
    args.out.mkdir(parents=True, exist_ok=True)

    _init_worker()
    facts = table_facts()
    tasks = [
        {
            "label": label,
            "controller": entries[label][0],
            "options": entries[label][1],
            "budget": budget,
            "seed": seed,
            "kind": "queries",
        }
        for label in labels
        for budget in args.budgets
        for seed in range(overrides.get((label, budget), args.seeds))
    ]
    tasks += [
        {
            "label": label,
            "controller": entries[label][0],
            "options": entries[label][1],
            "budget": trials,
            "seed": 0,
            "kind": "controller_cost",
            "time_limit": args.cost_time_limit,
        }
        for label in labels
        for trials in args.cost_trials
    ]
    tasks.sort(key=lambda t: -t["budget"] * (5 if "tpe" in t["label"].lower() else 1))  # slow ones first
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    context = multiprocessing.get_context("spawn")
    # An executor, not a multiprocessing.Pool: a worker whose initializer fails (no table, a broken install)
    # ends the run with BrokenProcessPool instead of being respawned forever.
    with ProcessPoolExecutor(args.workers, mp_context=context, initializer=_init_worker) as pool:
        futures = [pool.submit(run_search, task) for task in tasks]
        for number, future in enumerate(as_completed(futures), start=1):
            run = future.result()
            runs.append(run)
            print(
                f"[{number}/{len(tasks)} {time.perf_counter() - started:6.0f}s] {run['label']} "
                f"{run['kind']} budget {run['budget']} seed {run['seed']}: {run['best_test']:.2f} "
                f"({run['wall_seconds']:.1f}s)",
                flush=True,
            )
    order = {label: i for i, label in enumerate(labels)}
    runs.sort(key=lambda r: (r["kind"], order[r["label"]], r["budget"], r["seed"]))
    searches = [r for r in runs if r["kind"] == "queries"]
    cost_budgets = {str(b): b * facts["mean_cost"] for b in args.budgets}
    summary: dict[str, dict[str, dict[str, Any]]] = {"queries": {}, "cost": {}}
    for budget in args.budgets:
        for label in labels:
            chosen = [r for r in searches if r["label"] == label and r["budget"] == budget]
            if chosen:
                summary["queries"].setdefault(str(budget), {})[label] = summarize(chosen, facts, at_queries)
                limit = cost_budgets[str(budget)]
                summary["cost"].setdefault(str(budget), {})[label] = summarize(chosen, facts, at_cost(limit))
    controller_cost = [
        {
            "label": r["label"],
            "budget": r["budget"],
            "queries": r["queries"],
            "ms_mean": 1000 * r["controller_seconds"] / max(1, r["queries"]),
            "ms_last": 1000 * r["controller_seconds_last"],
        }
        for r in runs
        if r["kind"] == "controller_cost"
    ]
    report = {
        "settings": {
            "seeds": args.seeds,
            "budgets": args.budgets,
            "workers": args.workers,
            "controllers": {label: {"controller": entries[label][0], "options": entries[label][1]} for label in labels},
            "seed_overrides": {f"{k[0]}:{k[1]}": v for k, v in overrides.items()},
            "wall_seconds": time.perf_counter() - started,
        },
        "facts": facts,
        "cost_budgets": cost_budgets,
        "summary": summary,
        "controller_cost": controller_cost,
    }
    report["plots"] = plot(report, searches, args.out)
    largest = max(args.budgets)
    report["runs"] = [{k: v for k, v in r.items() if k not in ("tests", "costs")} for r in runs]
    trajectories = [
        {"label": r["label"], "seed": r["seed"], "tests": r["tests"], "costs": [round(c, 3) for c in r["costs"]]}
        for r in searches
        if r["budget"] == largest
    ]
    with gzip.open(args.out / "trajectories.json.gz", "wt") as handle:  # the plots' data, per query
        json.dump({"budget": largest, "runs": trajectories}, handle)
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    (args.out / "results.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
