"""Search efficiency: random search vs. the RNN controller vs. regularized evolution at equal budgets.

(a) Default: a cheap synthetic objective over the 50 NASNet decisions with a known optimum. A score
    table (one uniform [0, 1) score per choice of every decision) is drawn once from
    ``--objective-seed``; the reward of an architecture is the sum of its choices' scores divided
    by the sum of the best scores, so the optimum is exactly 1.0 and uniform random choices score
    about 0.6. The objective is additive (no interactions between decisions), which is the easy
    case for every controller; it tests that a controller learns at all, not that it wins on real
    architectures.
(b) ``--digits``: the proxy-training evaluator (``evaluators.ProxyEvaluator``, the handwritten
    digits set, default proxy network) gives the reward ``accuracy``; ``--digits-only`` skips (a).
    A NASNet proxy trains for seconds per trial on a CPU, so budget the run: every setting times
    every seed times ``--digits-budget`` trials (about 3-5 s each with 2 epochs on one thread);
    ``--tuned-only`` drops the published-default settings, which cannot learn in tens of trials.

Every controller runs with the same budget and the same seeds; the table reports the mean and
standard deviation over seeds of the best reward, of the mean of the top 5 rewards and of the mean
of the last 10% of trials. Reinforce is run both with NASNet's published hyper-parameters
(App. A.2: lr 0.00035, batches of 20) and with a larger learning rate (``--learning-rate``),
because 0.00035 was tuned for 20,000 architectures, not for a budget of a thousand.

    python benchmarks/search_efficiency.py                     # (a), a few minutes on 2 cores
    python benchmarks/search_efficiency.py --budget 2000 --seeds 0 1 2 3 4
    python benchmarks/search_efficiency.py --digits --digits-budget 40 --epochs 2
    python benchmarks/search_efficiency.py --digits-only --tuned-only --digits-budget 30 --epochs 2 \
        --updates reinforce --batch-size 5 --population-size 10 --sample-size 3
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from nas import registry
from nas.controller import Controller, Result, make_controller

Objective = Callable[[Any, int], float]  # (genotype, trial id) -> reward


def synthetic_objective(space_name: str, objective_seed: int, noise: float, search_seed: int) -> Objective:
    """Additive score table over the decisions, normalised so that the optimum is 1.0."""
    space = registry.spaces.get(space_name)
    rng = np.random.default_rng(objective_seed)
    tables = {d.name: dict(zip(d.choices, rng.random(len(d.choices)))) for d in space.decisions()}
    best = sum(max(table.values()) for table in tables.values())

    def objective(genotype: Any, trial_id: int) -> float:
        choices = space.encode(genotype)
        reward = sum(tables[name][value] for name, value in choices.items()) / best
        if noise:  # observation noise, a function of (search seed, trial id) like every stream
            reward += noise * np.random.default_rng([objective_seed, search_seed, trial_id]).standard_normal()
        return float(reward)

    return objective


def run_search(controller: Controller, objective: Objective, budget: int) -> np.ndarray:
    """The sequential loop; a failed evaluation is told as a failure and scores NaN here."""
    rewards = []
    while not controller.finished and len(rewards) < budget:
        trial = controller.ask()
        if trial is None:
            raise RuntimeError(f"{type(controller).__name__} waits with nothing pending")
        try:
            reward = objective(trial.genotype, trial.id)
            controller.tell(trial.id, Result(reward=reward))
        except Exception as error:  # a real evaluator can fail; the search goes on
            logging.warning("trial %d failed: %s", trial.id, error)
            reward = float("nan")
            controller.tell(trial.id, Result.failure(str(error)))
        rewards.append(reward)
    return np.array(rewards)


def settings(args: argparse.Namespace) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, registry name, options) for every controller setting compared."""
    rate = args.learning_rate
    rows: list[tuple[str, str, dict[str, Any]]] = [("random", "random", {})]
    for update in args.updates:
        if not args.tuned_only:
            rows.append((f"{update} (NASNet: lr 3.5e-4, batch 20)", "reinforce", {"update": update}))
        rows.append((f"{update} (lr {rate:g}, batch {args.batch_size})", "reinforce",
                     {"update": update, "learning_rate": rate, "batch_size": args.batch_size}))
    if not args.tuned_only:
        rows.append(("evolution (paper: P 100, S 25)", "evolution", {}))
    rows.append((f"evolution (P {args.population_size}, S {args.sample_size})", "evolution",
                 {"population_size": args.population_size, "sample_size": args.sample_size}))
    return rows


def compare(args: argparse.Namespace, space_name: str, budget: int,
            make_objective: Callable[[int], Objective]) -> None:
    """Run every setting on every seed and print one table."""
    print(f"\nspace {space_name}, budget {budget} trials, seeds {args.seeds}")
    header = f"{'controller':42s} {'best':>15s} {'top-5 mean':>15s} {'last 10% mean':>15s} {'s/run':>6s}"
    print(header + "\n" + "-" * len(header))
    tail = max(1, budget // 10)
    for label, name, options in settings(args):
        best, top5, last, seconds = [], [], [], []
        for seed in args.seeds:
            start = time.perf_counter()
            controller = make_controller(name, registry.spaces.get(space_name), seed=seed, budget=budget, **options)
            rewards = run_search(controller, make_objective(seed), budget)
            seconds.append(time.perf_counter() - start)
            finite = np.sort(rewards[np.isfinite(rewards)])
            best.append(finite[-1])
            top5.append(finite[-5:].mean())
            last.append(np.nanmean(rewards[-tail:]))
        cells = [f"{np.mean(v):.4f} ± {np.std(v):.4f}" for v in (best, top5, last)]
        print(f"{label:42s} {cells[0]:>15s} {cells[1]:>15s} {cells[2]:>15s} {np.mean(seconds):6.1f}", flush=True)


def digits(args: argparse.Namespace) -> None:
    """Part (b): proxy training on the digits set (needs ``evaluators.ProxyEvaluator``)."""
    from evaluators import ProxyEvaluator
    space = registry.spaces.get(args.space)

    def make_objective(seed: int) -> Objective:
        evaluator = ProxyEvaluator(space, dataset="digits", epochs=args.epochs, seed=seed)

        def objective(genotype: Any, trial_id: int) -> float:
            metrics = evaluator.evaluate(genotype, trial_id)
            if "error" in metrics or "accuracy" not in metrics:  # a failed candidate, told as a failure
                raise RuntimeError(metrics.get("error", "no accuracy reported"))
            return float(metrics["accuracy"])

        return objective

    compare(args, args.space, args.digits_budget, make_objective)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=1000, help="trials per search, synthetic objective")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--space", default="nasnet", choices=registry.spaces.names())
    parser.add_argument("--objective-seed", type=int, default=1234, help="seed of the score table")
    parser.add_argument("--noise", type=float, default=0.0, help="std of observation noise on the reward")
    parser.add_argument("--updates", nargs="+", default=["reinforce", "ppo"], choices=["reinforce", "ppo"])
    parser.add_argument("--learning-rate", type=float, default=0.01, help="the tuned reinforce/ppo setting")
    parser.add_argument("--batch-size", type=int, default=20, help="the tuned reinforce/ppo setting")
    parser.add_argument("--population-size", type=int, default=20, help="the small-budget evolution setting")
    parser.add_argument("--sample-size", type=int, default=5, help="the small-budget evolution setting")
    parser.add_argument("--digits", action="store_true", help="also run part (b), proxy training on digits")
    parser.add_argument("--digits-only", action="store_true", help="run part (b) only, skip the synthetic objective")
    parser.add_argument("--tuned-only", action="store_true",
                        help="skip the published-default reinforce/evolution settings (useless at tiny budgets)")
    parser.add_argument("--digits-budget", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2, help="proxy-training epochs per trial (--digits)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    if not args.digits_only:
        compare(args, args.space, args.budget,
                lambda seed: synthetic_objective(args.space, args.objective_seed, args.noise, seed))
    if args.digits or args.digits_only:
        digits(args)


if __name__ == "__main__":
    main()
