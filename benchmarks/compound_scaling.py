"""Compound scaling, measured: what rounding does to the cost, and how far a proxy's grid can be trusted.

    .venv/bin/python benchmarks/compound_scaling.py ratios --base efficientnet-b0 --coefficients 1.2 1.1 1.15
    .venv/bin/python benchmarks/compound_scaling.py agreement runs/scale-seed0 runs/scale-seed1 [...]

``ratios``: the base scaled by alpha^phi, beta^phi, gamma^phi and built with the reference rounding,
its measured MACs over the base's, next to 2^phi and the formula (alpha * beta^2 * gamma^2)^phi.
``agreement``: two or more ``nas scale`` runs of the same grid with different ``--seed`` (so other
weight initialisations, data orders and validation splits): Spearman's rank correlation of their
points' proxy accuracies, whether they agree on the best point, and the spread of each point. If
the seeds disagree, the grid's winner says more about the seed than about the coefficients.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def ratios(base: str, coefficients: list[float], phi_max: int) -> None:
    import nas
    from nas.scaling import compound_constraint
    from nas.spaces.scaling import CompoundPoint, CompoundScalingSpace, full_cost

    resolved = nas.resolve(base)
    space = CompoundScalingSpace(resolved.space, resolved.genotype)
    point = CompoundPoint(*coefficients)
    formula = compound_constraint(*coefficients)
    base_macs = full_cost(resolved.space, resolved.genotype)["macs"]
    print(f"{base} scaled by alpha, beta, gamma = {coefficients} (formula {formula:.4f} per phi)")
    print("| phi | width | depth | resolution | MACs | MACs / base | 2^phi | formula^phi | off 2^phi |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for phi in range(phi_max + 1):
        genotype = space.scaled(point, phi)
        cost = full_cost(resolved.space, genotype)
        ratio = cost["macs"] / base_macs
        print(
            f"| {phi} | {point.beta**phi:.4f} | {point.alpha**phi:.4f} | {cost['resolution']} | "
            f"{cost['macs'] / 1e6:,.1f}M | {ratio:.4f} | {2**phi} | {formula**phi:.4f} | "
            f"{100 * (ratio / 2**phi - 1):+.1f}% |"
        )


def _spearman(first: list[float], second: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        result = [0.0] * len(values)
        i = 0
        while i < len(order):  # ties share their mean rank
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2
            i = j + 1
        return result

    a, b = ranks(first), ranks(second)
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    covariance = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))
    spread = (sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b)) ** 0.5
    return covariance / spread if spread else float("nan")


def agreement(runs: list[str]) -> None:
    accuracies: list[dict[tuple[float, float, float], float]] = []
    for run in runs:
        family = json.loads((Path(run) / "scaling.json").read_text())
        accuracies.append(
            {(p["alpha"], p["beta"], p["gamma"]): p["accuracy"] for p in family["points"] if p["accuracy"] is not None}
        )
        best = max(accuracies[-1], key=lambda key: accuracies[-1][key])
        print(
            f"{run}: {len(accuracies[-1])} points, best {best} at {accuracies[-1][best]:.4f}, "
            f"accuracy range {min(accuracies[-1].values()):.4f}-{max(accuracies[-1].values()):.4f}"
        )
    common = sorted(set.intersection(*(set(a) for a in accuracies)))
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            rho = _spearman([accuracies[i][p] for p in common], [accuracies[j][p] for p in common])
            print(f"Spearman rho, {runs[i]} vs {runs[j]}: {rho:+.3f} over {len(common)} points")
    spreads = [statistics.pstdev([a[p] for a in accuracies]) for p in common]
    means = sorted(((statistics.fmean(a[p] for a in accuracies), p) for p in common), reverse=True)
    print(
        f"seed-to-seed standard deviation of a point's accuracy: median {statistics.median(spreads):.4f}, "
        f"max {max(spreads):.4f}; gap between the best and the 5th best mean: "
        f"{means[0][0] - means[min(4, len(means) - 1)][0]:.4f}"
    )
    print("best points by mean accuracy:", ", ".join(f"{p} {m:.4f}" for m, p in means[:5]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cost = commands.add_parser("ratios")
    cost.add_argument("--base", default="efficientnet-b0")
    cost.add_argument(
        "--coefficients", type=float, nargs=3, default=[1.2, 1.1, 1.15], metavar=("ALPHA", "BETA", "GAMMA")
    )
    cost.add_argument("--phi-max", type=int, default=7)
    runs = commands.add_parser("agreement")
    runs.add_argument("runs", nargs="+")
    args = parser.parse_args()
    print(f"machine load (1/5/15 min): {os.getloadavg()}; counting on the meta device (no threads involved)")
    if args.command == "ratios":
        ratios(args.base, args.coefficients, args.phi_max)
    else:
        agreement(args.runs)


if __name__ == "__main__":
    main()
