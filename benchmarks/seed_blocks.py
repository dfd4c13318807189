"""The seed papers' presets of the ``blocks`` space against their references: size, cost and CPU speed.

For every preset (``--presets``, default all 15) prints one markdown row: parameters and MACs
(millions; batch 1 at 224 px, counted on the meta device by ``nas.cost``) of ours and of the
reference, our memory access (millions of tensor elements read and written, ShuffleNet V2's "MAC"),
the median time of one forward pass (batch 1, 3x224x224, ``eval()``, ``torch.inference_mode()``,
``--threads`` intra-op threads) of ours and of the reference, their ratio, and the largest output
difference once the reference's (random) weights are loaded into ours: equal cost and equal
outputs, so any gap in time is the implementation's.

References: torchvision for ShuffleNet V2; timm (``pretrained=False``: nothing is downloaded) for
SE-ResNet-50, SE-ResNeXt-50 32x4d, DPN-68 and DPN-92. ShuffleNet V1 and CondenseNet have no library
model: their reference columns hold the published numbers (footnotes) and only ours is timed.
CondenseNet-74 is counted as its paper reports it: after all condensing stages
(``set_training_progress(model, 1.0)``) and ``nas.condense(model, classifier_keep=0.5)``. It is timed
in its training form and its condensed form (classifier whole), which must agree within 1e-5.

Timing is interleaved: after ``--warmup`` passes of each, ``--repeats`` rounds each time ``--runs``
forward passes of ours and then of the reference (the order alternating between rounds); the figure
is the median over rounds of the mean time per pass, so drift of the machine (another process, clock
changes) hits both alike. The thread counts and load average are printed, since a busy machine
makes every time here meaningless.

``--search-run DIR`` also reads a finished ``blocks`` search's journal: the top 5 trials with the
family of every stage and their proxy network's cost, and how often each family appears per stage
among the top 5 and among all trials, with its mean reward.

    .venv/bin/python benchmarks/seed_blocks.py [--presets a,b] [--threads 1] [--repeats 5] [--runs 10]
        [--warmup 3] [--json FILE] [--search-run runs/blocks-20]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import nas
from nas.cost import build_on_meta, count_macs, count_memory_access, count_params
from nas.weights.timm import TIMM_TO_PRESET
from nas.weights.torchvision import TORCHVISION_TO_PRESET

TORCHVISION = {ours: theirs for theirs, ours in TORCHVISION_TO_PRESET.items() if ours.startswith("shufflenet")}
TIMM = {ours: theirs for theirs, ours in TIMM_TO_PRESET.items()}
V1_GROUPS = (1, 2, 3, 4, 8)
# ShuffleNet paper Table 1: complexity (MFLOPs = MACs) of the 1x networks, classifier excluded;
# model-zoo totals: mmpretrain 1.87M params (g3, classifier with bias), megvii 1.9M / 138M (g3) and
# 2.4M / 138M (g8), classifier without bias.
V1_TABLE1 = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}
V1_PARAMS = {3: "1.87 (mmpretrain) / 1.9 (megvii)", 8: "2.4 (megvii)"}
V1_MEGVII_MACS = {3: 138, 8: 138}
PRESETS = [*TORCHVISION, *(f"shufflenet-v1-g{g}-x1.0" for g in V1_GROUPS), *TIMM, "condensenet-74"]
STUDY = "nas-search"
TOP = 5


def reference_factory(preset: str) -> tuple[Callable[[], nn.Module], Callable[..., Any], str] | None:
    """The library model of ``preset`` (a factory), the importer of its weights and its library name; None if none."""
    if preset in TORCHVISION:
        import torchvision

        name = TORCHVISION[preset]
        return (lambda: torchvision.models.get_model(name, weights=None)), nas.from_torchvision, name
    if preset in TIMM:
        import timm

        name = TIMM[preset]
        return (lambda: timm.create_model(name, pretrained=False)), nas.from_timm, name
    return None


def interleaved(
    models: dict[str, nn.Module], image: torch.Tensor, repeats: int, runs: int, warmup: int
) -> dict[str, float]:
    """Median over ``repeats`` rounds of the mean ms per forward pass of each model, the models taking
    turns within every round (order reversed every other round)."""
    names, times = list(models), {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(warmup):
                model(image)
        for round_ in range(repeats):
            for name in names if round_ % 2 == 0 else names[::-1]:
                started = time.perf_counter()
                for _ in range(runs):
                    models[name](image)
                times[name].append(1e3 * (time.perf_counter() - started) / runs)
    return {name: statistics.median(values) for name, values in times.items()}


def max_diff(first: nn.Module, second: nn.Module, image: torch.Tensor) -> float:
    with torch.inference_mode():
        return (first(image) - second(image)).abs().max().item()


def measure(preset: str, image: torch.Tensor, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The table row(s) of one preset (CondenseNet: its training form and its condensed form)."""
    if preset.startswith("condensenet"):
        return measure_condensenet(preset, image, args)
    summary = nas.summarize(preset)
    row: dict[str, Any] = {
        "preset": preset,
        "params": summary["params"],
        "macs": summary["macs"],
        "memory_access": summary["memory_access"],
    }
    ours = nas.materialize(preset, seed=0).eval()
    found = reference_factory(preset)
    if found is None:  # ShuffleNet V1: published numbers only
        groups = int(preset.split("-g")[1].split("-")[0])
        classifier = next(s["macs"] for s in summary["stages"] if s["stage"] == "classifier")
        row["macs_without_classifier"] = summary["macs"] - classifier
        row["params_ref"] = V1_PARAMS.get(groups)
        row["macs_ref"] = f"{V1_TABLE1[groups]} w/o classifier (paper)" + (
            f", {V1_MEGVII_MACS[groups]} (megvii)" if groups in V1_MEGVII_MACS else ""
        )
        row["ms"] = interleaved({"ours": ours}, image, args.repeats, args.runs, args.warmup)["ours"]
        return [row]
    factory, importer, name = found
    meta = build_on_meta(factory)
    row["params_ref"], row["macs_ref"] = count_params(meta), count_macs(meta, 224)
    torch.manual_seed(0)
    reference = factory().eval()
    ours.load_state_dict(importer(name, reference.state_dict()))
    row["max_diff"] = max_diff(ours, reference, image)
    times = interleaved({"ours": ours, "reference": reference}, image, args.repeats, args.runs, args.warmup)
    row["ms"], row["ms_ref"] = times["ours"], times["reference"]
    row["ratio"] = row["ms"] / row["ms_ref"]
    return [row]


def measure_condensenet(preset: str, image: torch.Tensor, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Training form (all condensing stages done) and condensed form: counts, times and their output difference."""
    summary = nas.summarize(preset)
    training = nas.materialize(preset, seed=0).eval()
    nas.set_training_progress(training, 1.0)
    condensed = nas.condense(copy.deepcopy(training))  # classifier whole: the outputs must not change
    published = nas.condense(copy.deepcopy(training), classifier_keep=0.5)  # what the paper counts
    diff = max_diff(training, condensed, image)
    times = interleaved({"training": training, "condensed": condensed}, image, args.repeats, args.runs, args.warmup)
    first = {
        "preset": f"{preset} (training form)",
        "params": summary["params"],
        "macs": summary["macs"],
        "memory_access": summary["memory_access"],
        "ms": times["training"],
    }
    second = {
        "preset": f"{preset} (condensed)",
        "params": count_params(published),
        "params_ref": "4.8 (paper)",
        "macs": count_macs(published, 224),
        "macs_ref": "529 FLOPs (paper) [c]",
        "memory_access": count_memory_access(published, 224),
        "ms": times["condensed"],
        "ratio": times["condensed"] / times["training"],
        "max_diff": diff,
        "outputs_equal": diff <= 1e-5,
    }
    return [first, second]


def _millions(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else f"{value / 1e6:.{digits}f}"


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def table_row(row: dict[str, Any]) -> str:
    macs = _millions(row["macs"], 1)
    if "macs_without_classifier" in row:
        macs += f" ({row['macs_without_classifier'] / 1e6:.1f} w/o cls.)"
    cells = [
        row["preset"],
        _millions(row["params"], 3),
        _millions(row.get("params_ref"), 3),
        macs,
        _millions(row.get("macs_ref"), 1),
        _millions(row["memory_access"], 1),
        _number(row["ms"], ".2f"),
        _number(row.get("ms_ref"), ".2f"),
        _number(row.get("ratio"), ".2f"),
        _number(row.get("max_diff"), ".1e"),
    ]
    return "| " + " | ".join(cells) + " |"


def environment() -> dict[str, Any]:
    """Versions, thread counts, CPU and load average, printed with every table."""
    cpu = platform.processor()
    try:
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpus": os.cpu_count(),
        "cpu": cpu or "unknown",
        "load": os.getloadavg(),
    }


def search_run(directory: Path) -> dict[str, Any]:
    """Block families of a finished ``blocks`` search: top trials and per-stage family counts and mean rewards."""
    import optuna

    from nas.journal import SETTINGS_KEY, Journal
    from nas.storage import study_names

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if STUDY not in study_names(directory):
        raise SystemExit(f"{directory}: no {STUDY!r} study, not a search run")
    storage = f"sqlite:///{(directory / 'study.db').resolve()}"
    settings = optuna.load_study(study_name=STUDY, storage=storage).user_attrs[SETTINGS_KEY]
    if settings.get("space") != "blocks":
        raise SystemExit(f"{directory}: a search of space {settings.get('space')!r}, not 'blocks'")
    journal = Journal(directory, None, STUDY, settings)  # its own recorded settings: opened, never changed
    ranked = journal.ranked()
    families = {r.trial_id: [stage.family for stage in nas.load_genotype(r.genotype).stages] for r in ranked}
    top = [
        {
            "trial": r.trial_id,
            "reward": float(r.result.reward),
            "families": families[r.trial_id],
            **{key: r.result.metrics.get(key) for key in ("params", "macs", "memory_access", "resolution")},
        }
        for r in ranked[:TOP]
    ]
    counts: list[dict[str, Any]] = []
    for stage in range(max((len(f) for f in families.values()), default=0)):
        rewards: dict[str, list[float]] = defaultdict(list)
        for record in ranked:
            if stage < len(families[record.trial_id]):
                rewards[families[record.trial_id][stage]].append(float(record.result.reward))
        in_top = Counter(families[r.trial_id][stage] for r in ranked[:TOP] if stage < len(families[r.trial_id]))
        for family, values in sorted(rewards.items(), key=lambda item: (-in_top[item[0]], -len(item[1]), item[0])):
            counts.append(
                {
                    "stage": stage + 1,
                    "family": family,
                    "top": in_top[family],
                    "all": len(values),
                    "mean_reward": statistics.fmean(values),
                }
            )
    return {
        "run": str(directory),
        "finished": len(journal),
        "failed": len(journal) - len(ranked),
        "top": top,
        "families": counts,
    }


def print_search_run(found: dict[str, Any]) -> None:
    print(f"\n## Search run {found['run']}: {found['finished']} finished trials ({found['failed']} failed)\n")
    resolution = next((t["resolution"] for t in found["top"] if t["resolution"]), "?")
    print(f"top {TOP} by reward; cost of the proxy network the search trained ({resolution} px, from its metrics)\n")
    print(
        "| rank | trial | reward | families per stage | proxy params (M) | proxy MACs (M) | proxy memory access (M) |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|")
    for rank, trial in enumerate(found["top"], 1):
        print(
            f"| {rank} | {trial['trial']} | {trial['reward']:.4f} | {'/'.join(trial['families'])} | "
            f"{_millions(trial['params'], 3)} | {_millions(trial['macs'], 2)} | "
            f"{_millions(trial['memory_access'], 2)} |"
        )
    print(f"\n| stage | family | in top {TOP} | in all | mean reward (all) |\n|---:|---|---:|---:|---:|")
    for row in found["families"]:
        print(f"| {row['stage']} | {row['family']} | {row['top']} | {row['all']} | {row['mean_reward']:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated ('' for none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--runs", type=int, default=10, help="forward passes per model and round")
    parser.add_argument("--warmup", type=int, default=3, help="forward passes per model before timing")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--search-run", type=Path, help="a finished blocks search run directory")
    args = parser.parse_args()
    presets = [name.strip() for name in args.presets.split(",") if name.strip()]
    unknown = [name for name in presets if name not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {unknown}; valid: {', '.join(PRESETS)}")
    if min(args.threads, args.repeats, args.runs) < 1 or args.warmup < 0:
        parser.error("--threads, --repeats and --runs must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    before = environment()
    print(
        f"torch {before['torch']}; {before['threads']} intra-op / {before['interop_threads']} inter-op threads; "
        f"{before['cpus']} CPUs ({before['cpu']}); load average (1, 5, 15 min) {before['load']}"
    )
    rows: list[dict[str, Any]] = []
    if presets:
        print(
            f"\nbatch 1, 3x224x224, median over {args.repeats} interleaved rounds of {args.runs} passes "
            f"(after {args.warmup} warm-up passes)\n"
        )
        print(
            "| preset | params ours (M) | params ref (M) | MACs ours (M) | MACs ref (M) | memory access ours (M) "
            "| ms ours | ms ref | ratio | max \\|diff\\| |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
        torch.manual_seed(0)
        image = torch.randn(1, 3, 224, 224)
        for preset in presets:
            for row in measure(preset, image, args):
                rows.append(row)
                print(table_row(row), flush=True)
        print(
            "\nratio: ours / reference; for CondenseNet, condensed / training form, and max |diff| between those "
            "two (must be <= 1e-5).\nShuffleNet V1 references: paper Table 1 (classifier excluded) and model zoos "
            "(totals; megvii's classifier has no bias).\n[c] the reference counter adds ReLU, pooling and "
            "bias FLOPs; ours counts conv and linear MACs only. Counted with classifier_keep=0.5, timed with "
            "the classifier whole."
        )
        for row in rows:
            if row.get("outputs_equal") is False:
                print(f"WARNING: {row['preset']}: outputs differ from the training form by {row['max_diff']:.2e}")
    found = search_run(args.search_run) if args.search_run else None
    if found:
        print_search_run(found)
    after = os.getloadavg()
    print(f"\nload average at the end: {after}")
    if args.json:
        document = {
            "environment": before,
            "load_after": after,
            "settings": {k: str(v) for k, v in vars(args).items()},
            "presets": rows,
            "search_run": found,
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
