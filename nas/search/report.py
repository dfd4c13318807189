"""What a finished search leaves in its run directory: best.json, report.md and pictures."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas.files import atomic_write_text
from nas.journal import Journal, Record
from nas.loop import SearchStats
from nas.objective import MetricObjective, Objective
from nas.plotting import architecture_pictures, plot_history, plot_pareto
from nas.search.final import Pair, final_best
from nas.space import Describable, SearchSpace


def _number(value: Any, millions: bool = False) -> str:
    if value is None:
        return "-"
    if millions:
        return f"{float(value) / 1e6:.2f}M"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_outputs(
    out: Path,
    journal: Journal,
    space: SearchSpace[Any],
    settings: dict[str, Any],
    stats: SearchStats | None,
    evaluation: dict[str, Any] | None = None,
    final: list[Pair] | None = None,
    controller: dict[str, Any] | None = None,
    objective: Objective | None = None,
    optima: Mapping[str, float] | None = None,
    final_objective: Objective | None = None,
) -> Record | None:
    """Write best.json, report.md, history.png and pictures of the best architecture; return the best record
    (with a final stage, that stage's record of the chosen candidate).

    The pictures follow the IR of the best genotype at full size: a ``CellNet`` gives one PNG per
    kind of cell (``normal.png``, ``reduction.png``), a ``ChainNet`` gives ``architecture.png``.
    ``evaluation`` holds what the evaluator reports of itself (``describe()``: data sizes, skipped files);
    ``final`` the final selection stage (``nas.search.final``), which then decides best.json;
    ``controller`` the options the controller resolved (its defaults for this budget included);
    ``objective`` what the reward is (its metrics get a column beside the accuracy); ``optima`` the best
    value of metrics over every candidate where the evaluator knows it (``Evaluator.optima``): the report
    gives the best candidate's regret to it, and the history plot the reward's optimum;
    ``final_objective`` the final stage's reward where it is not ``objective`` (another evaluator's).
    """
    ranked = journal.ranked()
    records = [journal.records[i] for i in sorted(journal.records)]
    plot_history(
        [None if r.result.failed else r.result.reward for r in records],
        out / "history.png",
        title=f"{settings['controller']} on {settings['space']} / {settings['dataset']}",
        optimum=_reward_optimum(objective, optima or {}),
    )
    chosen = final_best(final) if final is not None else None
    best = chosen[0] if chosen is not None else (ranked[0] if ranked else None)
    if best is not None:
        atomic_write_text(out / "best.json", json.dumps(best.genotype, indent=2) + "\n")
        ir = space.lower(space.genotype_from_dict(best.genotype["genotype"]))
        architecture_pictures(ir, out, title=f"best of {settings['space']}")
    shown = ("accuracy", "params", "macs", "memory_access", "seconds")
    extra = [metric for metric in (objective.metrics if objective is not None else ()) if metric not in shown]
    text = _report(settings, journal, ranked, stats, evaluation or {}, controller, _describer(space), extra)
    if any("latency_ms" in record.result.metrics for record in ranked):
        text += _pareto_section(out, ranked, settings)
    finals = [record for _, record in final or [] if not record.result.failed]
    judged = final_objective or objective  # the final stage's reward
    metric = judged.metric if isinstance(judged, MetricObjective) else "accuracy"
    spread = single_noise(finals, metric)
    measured = None if spread is None else (spread, len(finals))
    text += _certainty_section(ranked, objective, measured if final_objective is None else None)
    if optima and best is not None:
        text += _regret_section(best, optima)
    if final is not None:
        text += _final_section(final, chosen)
        final_ranked = sorted(finals, key=lambda r: -float(r.result.reward or 0.0))
        text += _certainty_section(final_ranked, judged, measured, final=True)
    atomic_write_text(out / "report.md", text)
    return chosen[1] if chosen is not None else best


def pareto_front(records: list[Record]) -> list[Record]:
    """The records no other beats in both accuracy (higher) and latency (lower), fastest first."""
    scored = sorted(
        (r for r in records if "latency_ms" in r.result.metrics and "accuracy" in r.result.metrics),
        key=lambda r: (r.result.metrics["latency_ms"], -r.result.metrics["accuracy"], r.trial_id),
    )
    front: list[Record] = []
    for record in scored:
        if not front or record.result.metrics["accuracy"] > front[-1].result.metrics["accuracy"]:
            front.append(record)
    return front


def latency_source(settings: Mapping[str, Any]) -> str:
    """What the search's ``latency_ms`` is: a fitted model's prediction for its device, or this machine's table."""
    latency = settings.get("latency")
    model = latency.get("model") if isinstance(latency, Mapping) else None
    if model:
        return f"the latency the fitted model `{Path(str(model)).name}` predicts for its device"
    return "lookup-table latency of the full-size network"


def _pareto_section(out: Path, ranked: list[Record], settings: dict[str, Any]) -> str:
    """``pareto.png`` and the table of the accuracy-latency Pareto front."""
    front = pareto_front(ranked)
    point = [
        (r.result.metrics["latency_ms"], r.result.metrics["accuracy"])
        for r in ranked
        if "latency_ms" in r.result.metrics and "accuracy" in r.result.metrics
    ]
    target = settings.get("latency_target_ms")
    plot_pareto(
        point,
        [(r.result.metrics["latency_ms"], r.result.metrics["accuracy"]) for r in front],
        out / "pareto.png",
        target,
        title=f"{settings['controller']} on {settings['space']}: accuracy against latency",
    )
    lines = [
        "",
        "## Pareto front (accuracy against latency)",
        "",
        f"Candidates no other beats in both proxy accuracy and {latency_source(settings)} "
        f"({len(front)} of {len(point)}); picture: pareto.png" + (f"; target {target:g} ms." if target else "."),
        "",
        "| trial | accuracy | latency (ms) | reward |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.trial_id} | {_accuracy(r.result.metrics)} | {r.result.metrics['latency_ms']:.2f} | "
        f"{_number(r.result.reward)} |"
        for r in front
    ]
    return "\n".join(lines) + "\n"


def _accuracy(metrics: dict[str, Any]) -> str:
    """``0.9312 ± 0.0104`` for repeated evaluations, the plain accuracy otherwise."""
    text = _number(metrics.get("accuracy"))
    if isinstance(metrics.get("accuracy_std"), float):
        text += f" ± {metrics['accuracy_std']:.4f}"
    return text


def _final_section(final: list[Pair], chosen: Pair | None) -> str:
    if not final:
        return "\n## Final selection\n\nNo successful candidate to evaluate again.\n"
    lines = [
        "",
        "## Final selection",
        "",
        "The search's best candidates evaluated again with fresh seeds; "
        + (
            f"best.json is the best of this stage (trial {chosen[0].trial_id})."
            if chosen is not None
            else "every one of these evaluations failed, so best.json is the search's best."
        ),
        "",
        "| search rank | trial | search reward | final reward | final accuracy | repeats | epochs |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rank, (search_record, record) in enumerate(final, start=1):
        metrics = record.result.metrics
        reward = f"failed: {record.result.error}" if record.result.failed else _number(record.result.reward)
        cells = [
            rank,
            search_record.trial_id,
            _number(search_record.result.reward),
            reward,
            _accuracy(metrics),
            _number(metrics.get("repeats", 1)),
            _number(metrics.get("epochs")),
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def _describer(space: SearchSpace[Any]) -> Any:
    """``record -> str`` from a ``Describable`` space's ``describe(genotype)`` (one line per architecture), or None."""
    if not isinstance(space, Describable):
        return None
    describe = space.describe

    def line(record: Record) -> str:
        try:
            return str(describe(space.genotype_from_dict(record.genotype["genotype"])))
        except (ValueError, KeyError, TypeError):
            return "-"

    return line


def _report(
    settings: dict[str, Any],
    journal: Journal,
    ranked: list[Record],
    stats: SearchStats | None,
    evaluation: dict[str, Any],
    controller: dict[str, Any] | None = None,
    describe: Any = None,
    extra: list[str] | tuple[str, ...] = (),
) -> str:
    failed = [r for r in journal.records.values() if r.result.failed]
    lines = [
        f"# Search report: {settings['controller']} on {settings['space']}",
        "",
        "## Settings",
        "",
        *(f"- **{key}**: `{json.dumps(value)}`" for key, value in sorted(settings.items())),
        *([f"- **controller settings at this budget**: `{json.dumps(controller)}`"] if controller else []),
        "",
        *(
            ["## Evaluation", "", *(f"- **{key}**: {value}" for key, value in evaluation.items()), ""]
            if evaluation
            else []
        ),
        "## Outcome",
        "",
        f"- finished evaluations: {len(journal.records)} ({len(failed)} failed)",
        f"- best reward: {_number(ranked[0].result.reward) if ranked else '-'}"
        + (f" (trial {ranked[0].trial_id})" if ranked else ""),
        "",
        "## Top 10",
        "",
        "Params, MACs and memory access are those of the network the evaluator measured (the proxy "
        "evaluator's reduced network; a benchmark table's full-size one).",
        "",
        "| rank | trial | reward | accuracy |"
        + "".join(f" {metric} |" for metric in extra)
        + " params | MACs | memory access | seconds |"
        + (" architecture |" if describe else ""),
        "|---:|---:|---:|---:|" + "---:|" * len(extra) + "---:|---:|---:|---:|" + ("---|" if describe else ""),
    ]
    for rank, record in enumerate(ranked[:10], start=1):
        metrics = record.result.metrics
        lines.append(
            f"| {rank} | {record.trial_id} | {_number(record.result.reward)} | "
            f"{_accuracy(metrics)} |"
            + "".join(f" {_number(metrics.get(metric))} |" for metric in extra)
            + f" {_number(metrics.get('params'), True)} | "
            f"{_number(metrics.get('macs'), True)} | {_number(metrics.get('memory_access'), True)} | "
            f"{_number(metrics.get('seconds'))} |" + (f" {describe(record)} |" if describe else "")
        )
    if failed:
        lines += ["", "## Failed trials", "", "| trial | reason |", "|---:|---|"]
        lines += [f"| {r.trial_id} | {r.result.error} |" for r in sorted(failed, key=lambda r: r.trial_id)[:20]]
    if stats is not None:
        lines += [
            "",
            "## Timing (this invocation)",
            "",
            f"- wall time: {stats.wall_seconds:.1f} s" + _rate(stats),
            f"- evaluations run: {stats.evaluated}, replayed from the journal: {stats.replayed}"
            + (f", stopped early: {stats.early_stopped}" if stats.early_stopped else ""),
            *(
                [f"- backend: {stats.backend}, {stats.workers} workers; start-up {stats.startup_seconds:.1f} s"]
                if stats.backend != "local"
                else []
            ),
            f"- evaluation time: {stats.evaluation_seconds:.1f} s"
            + (" summed over the workers" if stats.workers > 1 else "")
            + (f" (mean {_duration(stats.evaluation_seconds / stats.evaluated)} per trial)" if stats.evaluated else ""),
            f"- loop overhead (ask, tell, journal, state): {stats.overhead_seconds:.2f} s "
            f"({100 * stats.overhead_fraction:.2f}% of the wall time"
            + (f"; {_duration(stats.overhead_seconds / stats.evaluated)} per trial)" if stats.evaluated else ")"),
        ]
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    """Seconds as a person reads them: ``2.31 s`` for a training, ``0.41 ms`` for a table lookup."""
    return f"{seconds:.2f} s" if seconds >= 0.1 else f"{seconds * 1000:.2f} ms"


def _reward_optimum(objective: Objective | None, optima: Mapping[str, float]) -> float | None:
    """The best reward any candidate can get, when the objective maximises one metric whose optimum is known."""
    if isinstance(objective, MetricObjective) and objective.direction == "max":
        return optima.get(objective.metric)
    return None


def _regret_section(best: Record, optima: Mapping[str, float]) -> str:
    """The best-by-reward candidate against the best value of each metric over every candidate."""
    lines = [
        "",
        "## Against the known optimum",
        "",
        "The evaluator knows every candidate (a benchmark table): the best candidate by reward against the",
        "best value any candidate reaches in each column (regret = optimum - found).",
        "",
        "| metric | found | optimum | regret |",
        "|---|---:|---:|---:|",
    ]
    for metric, optimum in optima.items():
        found = best.result.metrics.get(metric)
        if isinstance(found, (int, float)) and not isinstance(found, bool):
            lines.append(f"| {metric} | {found:.4f} | {optimum:.4f} | {optimum - found:.4f} |")
    return "\n".join(lines) + "\n"


def _rate(stats: SearchStats) -> str:
    """`` (N trials/s after a start-up of S s)``: the trials evaluated per second once the backend had started."""
    running = stats.wall_seconds - stats.startup_seconds
    if running <= 0 or not stats.evaluated:
        return ""
    return f" ({stats.evaluated / running:.0f} trials/s after a start-up of {stats.startup_seconds:.1f} s)"


TIE_Z = 2.0  # rewards closer than this many standard errors of their difference are shown as tied (about 95%)


def reward_noise(metrics: Mapping[str, Any], metric: str = "accuracy") -> tuple[float, str] | None:
    """The standard error of one candidate's ``metric``, and where it comes from; None if nothing says.

    Measured where the candidate was evaluated more than once (``--repeats``, a final stage: other
    seeds and another validation split; the standard deviation over the repeats divided by their
    root), else, for the accuracy, the sampling error of its validation images alone (binomial,
    sqrt(p (1 - p) / n)): a lower bound, since training from another seed moves a proxy's accuracy too.
    """
    value, repeats, spread = metrics.get(metric), metrics.get("repeats", 1), metrics.get(f"{metric}_std")
    if not isinstance(value, (int, float)):
        return None
    if isinstance(repeats, int) and repeats > 1 and isinstance(spread, (int, float)):
        return float(spread) / math.sqrt(repeats), f"measured over {repeats} repeats"
    images = metrics.get("validation_images")
    if metric == "accuracy" and isinstance(images, int) and images > 0:
        return math.sqrt(max(value * (1 - value), 0.0) / images), f"binomial, {images:,} validation images"
    return None


def _repeats(record: Record) -> int:
    repeats = record.result.metrics.get("repeats", 1)
    return repeats if isinstance(repeats, int) and repeats > 0 else 1


def single_noise(records: list[Record], metric: str) -> float | None:
    """The standard deviation of one evaluation's ``metric``, pooled over ``records`` evaluated more than
    once (root mean of their variances); None without any."""
    variances = [
        float(r.result.metrics[f"{metric}_std"]) ** 2
        for r in records
        if not r.result.failed
        and isinstance(r.result.metrics.get("repeats"), int)
        and r.result.metrics["repeats"] > 1
        and isinstance(r.result.metrics.get(f"{metric}_std"), (int, float))
    ]
    return math.sqrt(sum(variances) / len(variances)) if variances else None


def _certainty_section(
    ranked: list[Record],
    objective: Objective | None = None,
    measured: tuple[float, int] | None = None,
    final: bool = False,
) -> str:
    """Which of the best candidates are tied with the best within the evaluator's noise.

    Only where the reward is one metric (``MetricObjective``; default the accuracy) and either
    ``measured`` gives one evaluation's noise (standard deviation, and the number of candidates it was
    pooled over: a final stage's repeats, ``single_noise``), or each of the top 10 carries its own
    (``reward_noise``); a difference counts when it exceeds ``TIE_Z`` standard errors of it.
    ``final``: the records are a final stage's.
    """
    objective = objective if objective is not None else MetricObjective("accuracy")
    top = ranked[:10]
    if len(top) < 2 or not isinstance(objective, MetricObjective):
        return ""
    metric = objective.metric
    if any(r.result.reward is None or metric not in r.result.metrics for r in top):
        return ""
    if any(r.result.reward != objective.reward(r.result.metrics) for r in top):
        return ""
    if measured is None:
        noises = [reward_noise(r.result.metrics, metric) for r in top]
    else:  # one evaluation's spread, pooled, divided by the root of each candidate's repeats
        count = f"{measured[1]} final-stage candidate" + ("s" if measured[1] != 1 else "")
        pooled = f"one evaluation's spread, pooled over the repeats of {count}"
        noises = [(measured[0] / math.sqrt(_repeats(r)), pooled) for r in top]
    if any(noise is None for noise in noises):
        return ""
    errors = [noise[0] for noise in noises if noise is not None]
    best = top[0].result.reward
    assert best is not None
    tied = [
        r
        for r, error in zip(top, errors)
        if best - float(r.result.reward or 0.0) <= TIE_Z * math.hypot(errors[0], error)
    ]
    sources = sorted({noise[1] for noise in noises if noise is not None})
    lines = [
        "",
        "## How sure: the final stage" if final else "## How sure",
        "",
        f"- the top {len(top)} rewards span {_number(best - float(top[-1].result.reward or 0.0))} "
        f"({_number(top[-1].result.reward)} to {_number(best)}; reward: {objective.name})",
        f"- the noise of one candidate's {metric}: ±{_number(errors[0])} for the best "
        f"(standard error; {', '.join(sources)})",
    ]
    if len(tied) == 1:
        lines.append(f"- the best (trial {top[0].trial_id}) is ahead of the others by more than the noise")
    else:
        trials = ", ".join(str(r.trial_id) for r in tied)
        remedy = (
            "more `--final-repeats` tell them apart"
            if final
            else f"a final stage (`--final-top {len(tied)}` with `--final-repeats`) tells them apart"
        )
        lines.append(
            f"- **tied within the noise**: the best {len(tied)} (trials {trials}) differ by less than "
            f"{TIE_Z:g} standard errors of their difference; {remedy}"
        )
    if any("binomial" in source for source in sources):
        lines.append(
            "- the binomial error counts the validation images only: another training seed moves a "
            "proxy's accuracy too, so the true noise is larger (measure it with `--repeats`)"
        )
    return "\n".join(lines) + "\n"
