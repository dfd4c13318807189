"""The report of ``nb201_fidelity.py``: its numbers, gathered from the log and the tables, and its markdown.

Split out of the benchmark script, which runs the evaluations: ``analyse`` turns the evaluations of
every setting and the tables' scores into the estimators, the settings' facts, the zero-cost
combinations and the per-cell scores of ``results.json`` (the statistics themselves are in
``fidelity_stats.py``); ``markdown`` writes ``results.md`` from that report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fidelity_stats import (
    BOOTSTRAP,
    COST_ORDER,
    RANK_MEAN,
    SPACE,
    TEST,
    VALID,
    ZERO_COST_GOAL,
    Record,
    Row,
    anchor_scores,
    combined_scores,
    correlations,
    mean,
    reported_combinations,
    search_combinations,
    setting_scores,
    zero_cost_scores,
    zero_cost_table,
)

# ------------------------------------------------------------------------------------------ numbers


def analyse(
    settings: Mapping[str, dict[str, Any]],
    evaluated: Mapping[str, list[Record]],
    cells: Sequence[Record],
    pool_cells: Sequence[Record],
    nb201: Mapping[str, Row],
    zero_cost: Mapping[str, Row],
    seed: int,
) -> dict[str, Any]:
    """The report's numbers: ``evaluated`` holds each setting's evaluations of ``cells`` (in their order);
    ``pool_cells`` the pool the zero-cost combinations are chosen over (split by ``seed``). Returns the
    report's ``settings``, ``estimators``, ``pool_top``, ``pool_anchors``, ``zero_cost_combinations`` and
    ``per_cell``, in the order ``results.json`` holds them."""
    table = zero_cost_table(zero_cost)
    search = search_combinations(pool_cells, table, seed)
    reported = reported_combinations(search["rows"])
    sample_archs = [cell["arch"] for cell in cells]
    for row in reported:
        row["sample"] = correlations(zero_cost_scores(row, table, sample_archs), cells)
    chosen = reported[0]
    partners = [chosen] + [row for row in reported if row["role"].startswith("single")]
    estimators: list[Record] = []
    setting_facts: dict[str, Any] = {}
    per_cell: dict[str, dict[str, Any]] = {
        cell["arch"]: {"arch": cell["arch"], "index": cell["index"]} for cell in cells
    }
    for label, options in settings.items():
        records = evaluated[label]
        good = [r for r in records if "error" not in r["metrics"]]
        setting_facts[label] = {
            "options": options,
            "evaluated": len(records),
            "failed": len(records) - len(good),
            "errors": [f"#{r['index']}: {r['metrics']['error']}" for r in records if "error" in r["metrics"]],
            "seconds": mean([r["metrics"]["seconds"] for r in records]),
            "cpu_seconds": mean([r["cpu_seconds"] for r in records]),
            "train_seconds": mean([r["metrics"]["train_seconds"] for r in good]),
            "threads": sorted({r["threads"] for r in records}),
            "train_images": sorted({r["train_images"] for r in records}),
            "validation_images": sorted({r["validation_images"] for r in records}),
            "loadavg": mean([r["loadavg"] for r in records]),
        }
        if not records:
            continue
        scored: dict[str, dict[str, float]] = {}
        for record in good:
            for name, value in setting_scores(record).items():
                scored.setdefault(name, {})[record["arch"]] = value
                per_cell[record["arch"]][f"{label}: {name}"] = value
        for name, scores in scored.items():
            estimators.append(
                {
                    "estimator": f"{label}: {name}",
                    "kind": "setting",
                    "setting": label,
                    "cost": setting_cost(options, records),
                    "seconds": setting_facts[label]["seconds"],
                    "cpu_seconds": setting_facts[label]["cpu_seconds"],
                    **correlations(scores, cells),
                }
            )
        accuracy = scored.get("accuracy", {})
        archs = [arch for arch in sample_archs if arch in accuracy]
        for partner in partners if archs else []:
            name = f"{label}: accuracy + {partner['estimator']}"
            alone = zero_cost_scores(partner, table, archs)
            scores = combined_scores([accuracy, alone], archs)
            for arch, value in scores.items():
                per_cell[arch][name] = value
            estimators.append(
                {
                    "estimator": name,
                    "kind": "setting + zero-cost",
                    "setting": label,
                    "partner": partner["estimator"],
                    "partner_alone": correlations(alone, cells, intervals=False),
                    "accuracy_alone": correlations(accuracy, cells, intervals=False),
                    "cost": f"{setting_cost(options, records)} + {partner['cost']}",
                    "seconds": setting_facts[label]["seconds"],
                    "cpu_seconds": setting_facts[label]["cpu_seconds"],
                    **correlations(scores, cells),
                }
            )
    anchors = anchor_scores(cells, nb201, zero_cost)
    for anchor in anchors:
        estimators.append(
            {**{k: v for k, v in anchor.items() if k != "scores"}, **correlations(anchor["scores"], cells)}
        )
    name = f"zero-cost {chosen['estimator']} ({RANK_MEAN}, chosen over half the pool)"
    estimators.append(
        {"estimator": name, "kind": "zero-cost combination", "members": chosen["members"], "cost": chosen["cost"]}
        | chosen["sample"]
    )
    for arch, value in zero_cost_scores(chosen, table, sample_archs).items():
        per_cell[arch][name] = value
    pool_anchors = [
        {"estimator": a["estimator"], **correlations(a["scores"], pool_cells, intervals=False)}
        for a in anchor_scores(pool_cells, nb201, zero_cost)
    ]
    for cell in cells:
        per_cell[cell["arch"]].update({TEST: cell[TEST], VALID: cell[VALID], "group": cell["group"]})
    return {
        "settings": setting_facts,
        "estimators": estimators,
        "pool_top": sum(cell["top"] for cell in pool_cells),
        "pool_anchors": pool_anchors,
        "zero_cost_combinations": {
            "method": f"{RANK_MEAN} of the members' normalised ranks (rank / n) among the cells ranked",
            "split_seed": search["seed"],
            "sizes": search["sizes"],
            "top": search["top"],
            "columns": search["columns"],
            "excluded": search["excluded"],
            "selected_by": f"rho against {TEST} over the selection half",
            "reported": reported,
            "all": search["rows"],
        },
        "per_cell": list(per_cell.values()),
    }


def setting_cost(options: Mapping[str, Any], records: Sequence[Record]) -> str:
    """The setting's training in words: epochs, images, network and input size."""
    from evaluators.proxy_options import DEFAULT_EPOCHS
    from nas.space import get

    reduction = {**get(SPACE).proxy_reduction, **{k: v for k, v in options.items() if k in ("C", "N")}}
    train = {r["train_images"] for r in records}
    resolution = {r["metrics"].get("resolution") for r in records} - {None}
    epochs = options.get("epochs", DEFAULT_EPOCHS)
    return (
        f"{epochs} epoch{'' if epochs == 1 else 's'} × "
        + "/".join(f"{n:,}" for n in sorted(train))
        + f" images, C={reduction['C']} N={reduction['N']}"
        + (f", {'/'.join(str(r) for r in sorted(resolution))} px" if resolution else "")
    )


# -------------------------------------------------------------------------------------------- report


def text(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def with_interval(row: Mapping[str, Any], key: str) -> str:
    low, high = row.get(f"{key}_ci", [None, None])
    interval = f" ({text(low, 2)}, {text(high, 2)})" if low is not None and high is not None else ""
    return text(row.get(key)) + interval


def markdown(report: Mapping[str, Any]) -> str:
    sample, machine = report["sample"], report["machine"]
    lines = [
        "# NAS-Bench-201 (CIFAR-10): proxy settings and anchors against the 200-epoch accuracy",
        "",
        f"`{report['command']}`",
        "",
        f"{sample['cells']} cells ({sample['spread']} stratified by `test_200ep` quantiles, {sample['top_drawn']} "
        f"more from the best 10%; {sample['top']} of all are top-10%: `test_200ep` ≥ {sample['threshold']:.2f}), "
        f"one per isomorphism class, `test_200ep` ≥ {sample['min_test']:.0f}%, from a pool of {sample['pool']} cells "
        f"(sample seed {sample['seed']}). Data: {report['data']['images']:,} CIFAR-10 training images "
        f"(JPEG re-encoding) extracted to `{report['data']['scratch']}`. "
        f"{machine['workers']} worker(s), {machine['threads']} torch thread each; load average at the start "
        f"{' / '.join(f'{v:.2f}' for v in machine['loadavg_start'])}, at the end "
        f"{' / '.join(f'{v:.2f}' for v in machine['loadavg_end'])} (1 / 5 / 15 min; 2 cores).",
        "",
        "ρ: Spearman, τ: Kendall, against `test_200ep` unless marked valid (`valid_200ep`); in parentheses "
        f"the 95% bootstrap interval ({BOOTSTRAP} resamples of the cells). CPU s per candidate: mean CPU time "
        "of the worker around `evaluate` (one thread); the wall-clock `seconds` are in the settings table. "
        "`setting: accuracy + X`: the setting's accuracy and the zero-cost estimator X as a mean of ranks; "
        "`zero-cost ...`: the zero-cost combination chosen over half the pool (both: see the last sections).",
        "",
        "| estimator | cost | ρ test all | ρ test top 10% | τ all | τ top 10% | ρ valid all | CPU s per candidate "
        "| n cells (top) |",
        "|---|---|---|---|---|---|---|---:|---|",
    ]
    for row in report["estimators"]:
        seconds = text(row.get("cpu_seconds"), 1)
        lines.append(
            f"| {row['estimator']} | {row['cost']} | {with_interval(row, 'rho_test_all')} "
            f"| {with_interval(row, 'rho_test_top')} | {text(row['tau_test_all'])} | {text(row['tau_test_top'])} "
            f"| {text(row['rho_valid_all'])} | {seconds} | {row['n_all']} ({row['n_top']}) |"
        )
    lines += [
        "",
        "## Settings",
        "",
        "| setting | options | evaluated | failed | CPU s | wall s (`seconds`) | train s | mean load (1 min) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, setting in report["settings"].items():
        lines.append(
            f"| {label} | `{json.dumps(setting['options'])}` | {setting['evaluated']} | {setting['failed']} "
            f"| {text(setting['cpu_seconds'], 1)} | {text(setting['seconds'], 1)} "
            f"| {text(setting['train_seconds'], 1)} | {text(setting['loadavg'], 2)} |"
        )
    failures = [f"{label}: {e}" for label, s in report["settings"].items() for e in s["errors"][:3]]
    if failures:
        lines += ["", "Failures (first 3 per setting): " + "; ".join(failures)]
    lines += [
        "",
        f"## Anchors over the whole pool ({sample['pool']} cells, {report['pool_top']} of them top-10%)",
        "",
        "| estimator | ρ test all | ρ test top 10% | τ all | ρ valid all |",
        "|---|---|---|---|---|",
    ]
    for row in report["pool_anchors"]:
        lines.append(
            f"| {row['estimator']} | {text(row['rho_test_all'])} | {text(row['rho_test_top'])} "
            f"| {text(row['tau_test_all'])} | {text(row['rho_valid_all'])} |"
        )
    return "\n".join(lines + combination_sections(report)) + "\n"


def combination_sections(report: Mapping[str, Any]) -> list[str]:
    """The markdown of the zero-cost combinations and of the settings combined with zero-cost scores."""
    search, sample = report["zero_cost_combinations"], report["sample"]
    sizes, tops = search["sizes"], search["top"]
    excluded = ", ".join(f"`{c}` (ρ {text(rho, 2)})" for c, rho in search["excluded"].items()) or "none"
    chosen = search["reported"][0]
    goal = [r for r in search["all"] if (r["rho_held_out"] or -1) >= ZERO_COST_GOAL]
    lines = [
        "",
        "## Zero-cost combinations: chosen over one half of the pool, checked on the other half and on the sample",
        "",
        f"A combination scores a cell by the mean of its normalised ranks (rank / n, ties sharing their mean rank, "
        f"among the cells being ranked: a half, the pool or the sample) under its members, NASLib's scores as "
        f"stored. Every single column, pair and triple of the {len(search['columns'])} columns "
        f"({', '.join(f'`{c}`' for c in search['columns'])}) and the named combinations -- {len(search['all'])} "
        f"estimators -- were scored over a seeded half of the pool (selection: {sizes['selection']} cells, "
        f"{tops['selection']} top-10%, seed {search['split_seed']}) and sorted by ρ there. The other half (held "
        f"out: {sizes['held_out']} cells, {tops['held_out']} top-10%) played no part in the choice: its ρ is the "
        f"figure without selection bias (the best of {len(search['all'])} over the selection half is optimistic "
        f"by construction, and more so over the {sample['cells']} sampled cells, whose intervals are ±0.1). Left "
        f"out: columns whose ρ over the selection half is negative, {excluded}: as stored they rank backwards, "
        "and turning one round would be a choice made on the truth. The vote is Abdelfattah et al.'s pairwise "
        "majority of three scores, scored by each cell's wins (Copeland). Cost: that of the costliest member "
        f"({' < '.join(COST_ORDER)}); NASLib scored the full network (C=16, N=5) -- the seconds are not measured "
        "here. Shown: the best pairs and triples (the first is the chosen one), the named ones, the best single "
        "columns; `all` in `results.json` holds every estimator.",
        "",
        "| zero-cost estimator | role | cost | ρ selection half | ρ held-out half | ρ held-out top 10% | ρ pool "
        "| ρ pool top 10% | ρ sample | ρ sample top 10% | τ sample |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in search["reported"]:
        role = row["role"] + (f": {row['named']}" if row.get("named") else "")
        ranked = row["sample"]
        lines.append(
            f"| {row['estimator']} | {role} | {row['cost']} | {text(row['rho_selection'])} "
            f"| {text(row['rho_held_out'])} | {text(row['rho_held_out_top'])} | {text(row['rho_pool'])} "
            f"| {text(row['rho_pool_top'])} | {with_interval(ranked, 'rho_test_all')} "
            f"| {with_interval(ranked, 'rho_test_top')} | {text(ranked['tau_test_all'])} |"
        )
    lines += [
        "",
        f"The chosen combination, {chosen['estimator']}, ranks the held-out half at ρ {text(chosen['rho_held_out'])} "
        f"(ρ ≥ {ZERO_COST_GOAL} asked by issue 24: {len(goal)} of the {len(search['all'])} estimators reach it "
        "there, a count, not a choice).",
        "",
        "## Settings combined with zero-cost scores",
        "",
        "A setting's accuracy and a zero-cost estimator (the chosen combination and the best single columns, "
        "chosen over the selection half of the pool, not over the sample), each ranked among the sampled cells "
        "the setting evaluated, as the mean of the two normalised ranks (half the weight each). Alone: the "
        "accuracy and the zero-cost estimator over the same cells. These rows are also in the main table.",
        "",
        "| setting | + zero-cost | cost | ρ test all | ρ test top 10% | accuracy alone: ρ all, top "
        "| zero-cost alone: ρ all, top | n cells (top) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["estimators"]:
        if row["kind"] == "setting + zero-cost":
            accuracy, partner = row["accuracy_alone"], row["partner_alone"]
            lines.append(
                f"| {row['setting']} | {row['partner']} | {row['cost']} | {with_interval(row, 'rho_test_all')} "
                f"| {with_interval(row, 'rho_test_top')} "
                f"| {text(accuracy['rho_test_all'])}, {text(accuracy['rho_test_top'])} "
                f"| {text(partner['rho_test_all'])}, {text(partner['rho_test_top'])} "
                f"| {row['n_all']} ({row['n_top']}) |"
            )
    return lines
