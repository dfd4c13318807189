"""Search efficiency: every controller at its defaults against random search and Optuna's samplers.

Three objectives over the decisions of a space (default: the 50 NASNet decisions), each drawn once
from ``--objective-seed`` and normalised so that the optimum is exactly 1.0:

- ``additive``: one uniform [0, 1) score per choice of every decision, weighted per decision by a
  log-normal weight (decisions matter unequally, as a cell's first blocks matter more than its
  last); reward = weighted sum / its maximum.
- ``epistatic``: an NK landscape (Kauffman & Weinberger 1989) with K = 2 adjacent neighbours:
  decision i contributes a uniform [0, 1) score looked up from the choices of decisions i, i + 1
  and i + 2, so no decision can be optimised alone. The optimum is found exactly by dynamic
  programming along the chain.
- ``noisy``: ``additive`` plus Gaussian observation noise of standard deviation ``--noise``
  (0.05, the seed-to-seed spread of a real proxy), a function of (search seed, trial id).

Scores reported per run: ``best``, the *noise-free* value of the trial with the highest observed
reward (the one ``best.json`` would hold: on the noisy objective a lucky draw is not credited), and
``last 10%``, the mean noise-free value of the last tenth of the trials (does the controller still
improve, or has it stopped exploring?). Means over ``--seeds``.

    python benchmarks/search_efficiency.py                          # defaults: 3 budgets, 3 objectives, 3 seeds
    python benchmarks/search_efficiency.py --budgets 1000 --objectives noisy --jobs 2
    python benchmarks/search_efficiency.py --controllers reinforce \
        --setting 'reinforce lr=0.05 {"controller": "reinforce", "learning_rate": 0.05}'
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

OBJECTIVES = ("additive", "epistatic", "noisy")
NEIGHBOURS = 2  # K of the NK landscape


@dataclass(frozen=True)
class Objective:
    """A reward over choice indices with a known optimum of 1.0 (see the module docstring)."""

    kind: str
    sizes: tuple[int, ...]
    tables: tuple[np.ndarray, ...]
    weights: np.ndarray
    optimum: float
    noise: float
    objective_seed: int

    def true_value(self, indices: Sequence[int]) -> float:
        if self.kind == "epistatic":
            padded = list(indices) + [0] * NEIGHBOURS
            total = sum(float(table[tuple(padded[i : i + NEIGHBOURS + 1])]) for i, table in enumerate(self.tables))
        else:
            total = sum(w * float(table[i]) for w, table, i in zip(self.weights, self.tables, indices))
        return total / self.optimum

    def observe(self, indices: Sequence[int], search_seed: int, trial_id: int) -> float:
        value = self.true_value(indices)
        if self.noise:
            value += self.noise * np.random.default_rng([self.objective_seed, search_seed, trial_id]).standard_normal()
        return float(value)


def make_objective(kind: str, sizes: Sequence[int], objective_seed: int, noise: float) -> Objective:
    rng = np.random.default_rng([objective_seed, OBJECTIVES.index(kind)])
    sizes = tuple(sizes)
    if kind == "epistatic":
        padded = sizes + (1,) * NEIGHBOURS
        tables = tuple(rng.random(padded[i : i + NEIGHBOURS + 1]) for i in range(len(sizes)))
        return Objective(kind, sizes, tables, np.ones(len(sizes)), _nk_optimum(tables), 0.0, objective_seed)
    tables = tuple(rng.random(n) for n in sizes)
    weights = rng.lognormal(0.0, 1.0, len(sizes))
    optimum = float(sum(w * t.max() for w, t in zip(weights, tables)))
    return Objective(kind, sizes, tables, weights, optimum, noise if kind == "noisy" else 0.0, objective_seed)


def _nk_optimum(tables: Sequence[np.ndarray]) -> float:
    """Max of sum_i table_i[x_i, x_i+1, x_i+2] by dynamic programming from the last decision back.

    ``value[a, b]`` is the best total of the terms from i onwards given x_i = a, x_i+1 = b.
    """
    value = np.zeros(tables[-1].shape[1:])  # after the last term: depends on the two padding choices
    for table in reversed(tables):
        # table[a, b, c] + value[b, c], maximised over c
        value = (table + value[np.newaxis, :, :]).max(axis=2)
    return float(value.max())


def run_one(task: tuple[str, str, str, dict[str, Any], str, int, int, int, float]) -> dict[str, Any]:
    """One search: ``(space, label, controller, options, objective, budget, seed, objective_seed, noise)``."""
    space_name, label, name, options, kind, budget, seed, objective_seed, noise = task
    import torch

    torch.set_num_threads(1)
    from nas import registry
    from nas.controller import Result, make_controller

    space = registry.spaces.get(space_name)
    decisions = space.decisions()
    objective = make_objective(kind, [len(d.choices) for d in decisions], objective_seed, noise)
    start = time.perf_counter()
    controller = make_controller(name, space, seed=seed, budget=budget, **options)
    observed, true = [], []
    while not controller.finished:
        trial = controller.ask()
        if trial is None:
            raise RuntimeError(f"{name} waits with nothing pending")
        choices = space.encode(trial.genotype)
        indices = [d.index(choices[d.name]) for d in decisions]
        reward = objective.observe(indices, seed, trial.id)
        controller.tell(trial.id, Result(reward=reward))
        observed.append(reward)
        true.append(objective.true_value(indices))
    tail = max(1, budget // 10)
    return {
        "label": label,
        "objective": kind,
        "budget": budget,
        "seed": seed,
        "best": true[int(np.argmax(observed))],
        "last": float(np.mean(true[-tail:])),
        "seconds": time.perf_counter() - start,
    }


# The published settings, one option away from the defaults, and Optuna's own NSGA-II population
# (our ``nsga2`` shrinks it at small budgets): what a user gets without the budget-aware defaults.
PUBLISHED = [
    ("reinforce, paper (NASNet: batch 20, lr 3.5e-4)", "reinforce", {"preset": "paper"}),
    ("evolution, paper (P 100, S 25)", "evolution", {"preset": "paper"}),
    ("nsga2, Optuna's population 50", "nsga2", {"sampler_options": {"population_size": 50}}),
]


def default_settings(names: Sequence[str], published: bool) -> list[tuple[str, str, dict[str, Any]]]:
    from nas import registry

    rows = [(name, name, {}) for name in names if name in registry.controllers]
    return rows + ([row for row in PUBLISHED if row[1] in names] if published else [])


def parse_setting(text: str) -> tuple[str, str, dict[str, Any]]:
    """``'LABEL {"controller": NAME, ...options}'``."""
    label, _, options = text.partition(" {")
    data = json.loads("{" + options)
    return label, data.pop("controller"), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="nasnet", help="a registered space; its decisions are searched")
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--controllers",
        nargs="+",
        default=["random", "reinforce", "evolution", "tpe", "nsga2"],
        help="registered controller names, run at their defaults",
    )
    parser.add_argument("--no-published", action="store_true", help="skip the published-settings rows")
    parser.add_argument(
        "--setting", action="append", default=[], help="extra row: 'LABEL {\"controller\": NAME, OPTION: VALUE, ...}'"
    )
    parser.add_argument("--objective-seed", type=int, default=1234)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="searches run side by side")
    parser.add_argument("--json", help="also write every run's scores to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    rows = default_settings(args.controllers, not args.no_published) + [parse_setting(text) for text in args.setting]
    tasks = [
        (args.space, label, name, options, kind, budget, seed, args.objective_seed, args.noise)
        for kind in args.objectives
        for budget in args.budgets
        for label, name, options in rows
        for seed in args.seeds
    ]
    load = os.getloadavg()[0]
    print(
        f"space {args.space}, seeds {args.seeds}, {args.jobs} searches side by side, 1 torch thread each, "
        f"load average {load:.2f} at start"
    )
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_one, tasks))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    print_tables(results, rows, args.objectives, args.budgets)


def print_tables(
    results: list[dict[str, Any]],
    rows: Sequence[tuple[str, str, dict[str, Any]]],
    objectives: Sequence[str],
    budgets: Sequence[int],
) -> None:
    """One markdown table per objective: rows = settings, columns = budgets, cells = best / last 10%."""
    for kind in objectives:
        print(
            f"\n**{kind}**: best found / mean of the last 10% (1.0 = optimum), mean over seeds; s = seconds per run\n"
        )
        print("| controller | " + " | ".join(f"{b} trials" for b in budgets) + " | s at " + f"{budgets[-1]} |")
        print("|---|" + "---|" * (len(budgets) + 1))
        for label, _, _ in rows:
            cells, seconds = [], 0.0
            for budget in budgets:
                runs = [r for r in results if r["label"] == label and r["objective"] == kind and r["budget"] == budget]
                cells.append(f"{np.mean([r['best'] for r in runs]):.3f} / {np.mean([r['last'] for r in runs]):.3f}")
                seconds = float(np.mean([r["seconds"] for r in runs]))
            print(f"| {label} | " + " | ".join(cells) + f" | {seconds:.1f} |")


if __name__ == "__main__":
    main()
