"""Real searches on CIFAR-10 checked against NAS-Bench-201: what each found, and what a user never learns.

A ``nas search --space nb201 --dataset imagefolder`` on the CIFAR-10 JPEG tree trains every candidate
with the proxy and never sees the benchmark. This script reads finished run directories and looks
every evaluated cell up in the shipped NB201 table: the found cell's (``best.json``) 200-epoch test
accuracy and its rank in the space against the top-1% line (93.78), the best cell the search
evaluated at all, how the proxy's reward ranked the evaluated cells against the truth (Spearman), the
wall time from the first to the last write of the run, and for a ``--warm-start`` run how its
zero-cost scores, computed on the same images, ranked their candidates (Spearman of the rank mean
against the 200-epoch test accuracy) and what the cells it chose first were worth. Whether the search
collapsed to parameter-free cells, as the NB201 paper found ENAS and DARTS do: the convolutions per
cell among its last ``LATE`` trials and the share of those without any (drawn uniformly: 2.4 of the 6
edges, and 4.7% of cells without a convolution).

    .venv/bin/python benchmarks/nb201_real_search.py --out benchmarks/results/nb201_real_search \\
        'reinforce + warm start=/tmp/realruns/rf' 'random=/tmp/realruns/random'
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nb201_fidelity import TEST, read_table

TOP_ONE_PERCENT = 93.78  # test_200ep of the 1% best of the 15,625 cells
OPTIMUM = 94.37
LATE = 100  # the trials whose cells tell what the search settled on


def _arch(space: Any, genotype: Mapping[str, Any]) -> str:
    return str(space.to_string(space.genotype_from_dict(genotype["genotype"])))


def analyse(label: str, out: Path, table: Mapping[str, float], order: np.ndarray) -> dict[str, Any]:
    import optuna

    from nas.space import get

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = get("nb201")
    trials = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}").get_trials()
    done = [t for t in trials if t.value is not None]
    archs = [_arch(space, t.user_attrs["genotype"]) for t in done]
    rewards = np.array([t.value for t in done])
    truths = np.array([table[a] for a in archs])
    found = out / "best.json"  # a run still going: its best so far
    best = _arch(space, json.loads(found.read_text())) if found.exists() else archs[int(np.argmax(rewards))]
    stamps = [t.datetime_start for t in trials if t.datetime_start] + [t.datetime_complete for t in done]
    result: dict[str, Any] = {
        "label": label,
        "trials": len(done),
        "found": best,
        "found_test": table[best],
        "found_percentile": float((order < table[best]).mean() * 100),
        "found_top_one_percent": table[best] >= TOP_ONE_PERCENT,
        "best_evaluated_test": float(truths.max()),
        "evaluated_top_one_percent": int((truths >= TOP_ONE_PERCENT).sum()),
        "reward_rho": float(spearmanr(rewards, truths).statistic),
        "minutes": (max(stamps) - min(stamps)).total_seconds() / 60 if stamps else None,
        "cpu_seconds_per_trial": float(np.mean([t.user_attrs["metrics"].get("cpu_seconds", np.nan) for t in done])),
    }
    ordered = sorted(done, key=lambda t: t.user_attrs["trial_id"])[-LATE:]
    convolutions = np.array([_arch(space, t.user_attrs["genotype"]).count("nor_conv") for t in ordered])
    result["late"] = {
        "trials": len(ordered),
        "convolutions": float(convolutions.mean()),
        "parameter_free": float((convolutions == 0).mean()),
    }
    warm = out / "warm_start.json"
    if warm.exists():
        document = json.loads(warm.read_text())
        scored = document["scored"]
        cells = [space.to_string(space.decode(entry["choices"])) for entry in scored]
        ranks = [entry["rank_mean"] for entry in scored]
        chosen = [space.to_string(space.decode(choices)) for choices in document["chosen"]]
        result["warm_start"] = {
            "candidates": len(scored),
            "seconds": document["seconds"],
            "rho": float(spearmanr(ranks, [table[c] for c in cells]).statistic),
            "chosen_test": [table[c] for c in chosen],
        }
    return result


def report(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "# Real searches on CIFAR-10, checked against NAS-Bench-201",
        "",
        "| search | trials | minutes | CPU s / trial | found cell: test_200ep (percentile) | top 1%? "
        "| best evaluated | evaluated in top 1% | reward ρ vs truth |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['trials']} | {r['minutes']:.0f} | {r['cpu_seconds_per_trial']:.0f} | "
            f"{r['found_test']:.2f} ({r['found_percentile']:.1f}) | {'yes' if r['found_top_one_percent'] else 'no'} | "
            f"{r['best_evaluated_test']:.2f} | {r['evaluated_top_one_percent']} | {r['reward_rho']:.2f} |"
        )
    lines += [
        "",
        f"| search | its last {LATE} trials: convolutions per cell (uniform: 2.4) | without any (uniform: 4.7%) |",
        "|---|---:|---:|",
    ]
    for r in rows:
        late = r["late"]
        lines.append(f"| {r['label']} | {late['convolutions']:.2f} | {late['parameter_free']:.1%} |")
    lines.append("")
    for r in rows:
        lines.append(f"- {r['label']}: found `{r['found']}`")
        if "warm_start" in r:
            w = r["warm_start"]
            lines.append(
                f"  - warm start: {w['candidates']} cells scored in {w['seconds']:.0f} s; their rank mean ranks them "
                f"at Spearman {w['rho']:.2f} against test_200ep; the {len(w['chosen_test'])} chosen first: "
                + ", ".join(f"{t:.2f}" for t in w["chosen_test"])
            )
    lines.append(f"\nOptimum {OPTIMUM}; top 1% = test_200ep ≥ {TOP_ONE_PERCENT}.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.md and results.json")
    args = parser.parse_args(argv)
    nb201 = read_table("nb201-cifar10")
    table = {row["arch"]: float(row[TEST]) for row in nb201}
    order = np.array(sorted(table.values()))
    rows = [analyse(*text.split("=", 1)[:1], Path(text.split("=", 1)[1]), table, order) for text in args.runs]
    text = report(rows)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.md").write_text(text)
        (args.out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
