"""Compound scaling on CIFAR-10: ``nas scale``'s grid on MobileNetV3-Small 0.5 at 16 px, then the family
phi = 0, 1, 2 trained beside width alone, depth alone and resolution alone at the same MACs.

EfficientNet's claim (arXiv 1905.11946 §3.3 and Figure 8): scaling a network by depth, width and
resolution together (alpha^phi, beta^phi, gamma^phi, with alpha * beta^2 * gamma^2 ~= 2) gives more
accuracy for the same MACs than scaling any one of them.

*The base.* CIFAR-10's images are 32 px: a base at 32 px scaled by gamma > 1 is trained on upsampled
images again (what made the digits grid say "widen"). So the base is MobileNetV3-Small at width 0.5
at ``--base-resolution`` 16 px: the images are downsampled from 32 px (antialiased), every gamma of the
grid (at most 1.4 under the constraint at step 0.1) and every member up to phi = 2 (gamma^2 <= 1.96:
at most 31 px) sees more real pixels, none upsampled. The base is written as a genotype JSON file
(MobileNetV3-Small scaled to width 0.5 at 16 px) and the proxy trains it as it is (``width_multiplier``
1, ``resolution`` 16 times gamma), so the family ``nas scale`` writes is the networks trained here.

1. *grid*: ``nas scale`` (its Python API, ``nas.scale.run.run_scale``) over that base, ``--grid-step``
   0.1, formula constraint, tolerance 0.1; the proxy evaluator on the first ``--grid-per-class`` training
   images of each class (80% trained on, 20% validated on: the proxy's split), ``--grid-epochs`` epochs.
2. *family*: members phi = 0, 1, 2 of the best point, each trained with ``nas train``'s engine
   (``nas.train.run.run_train``, the plain recipe of ``train_recipes.py``: the mirror only) at equal
   epochs (``--epochs``) on the first ``--train-per-class`` training images of each class, tested on
   the 10,000 test images.
3. *controls*: the base scaled by width alone, depth alone and resolution alone to (about) the MACs of
   members phi = 1 and phi = 2 (MACs counted for 10 classes at the resolution trained: the networks
   trained here), trained the same way. Width and depth by steps of 0.01 (depth up to MobileNetV3's 64
   blocks), resolution by the pixel up to 96: beyond 32 px an upsampling, which phi = 2's MACs need,
   since half of the base's MACs (the classifier) do not grow with resolution. Ordered width,
   resolution, depth: depth costs the most CPU per MAC.

    .venv/bin/python benchmarks/scaling_cifar10.py --out /tmp/scaling-cifar10 \
        [--results benchmarks/results/scaling_cifar10] [--only grid,family,controls] [--smoke]

A finished grid or training is reported, not run again, so the command resumes (and ``--only`` gives
it in parts); the CPU seconds of a finished step are kept from ``OUT/results.json``. CPU seconds are
``time.process_time`` of this process around each step (one intra-op thread), data loading included.
``--smoke``: 3 grid points at 1 epoch and every training at 1 epoch on 50 images a class, under
``OUT/smoke``; nothing is copied to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings
from train_recipes import CIFAR_TAR, PLAIN, SCRATCH, extract
from train_recipes import subset as recipe_subset

CLASSES = 10
BASE_WIDTH = 0.5
BASE_RESOLUTION = 16  # 32 / 16 = 2 >= gamma^phi for every grid gamma (<= 1.4) up to phi = 2
GRID_STEP = 0.1
GRID_PER_CLASS, GRID_EPOCHS = 500, 10
TRAIN_PER_CLASS, TRAIN_EPOCHS = 1000, 12
PHIS = (0, 1, 2)
CONTROL_PHIS = (1, 2)
WIDTHS = [round(1 + i * 0.01, 2) for i in range(151)]  # 1.00 ... 2.50
DEPTHS = [round(1 + i * 0.01, 2) for i in range(501)]  # 1.00 ... 6.00 (MobileNetV3 holds at most 64 blocks)
MAX_CONTROL_RESOLUTION = 96


def base_genotype(width: float, resolution: int) -> dict[str, Any]:
    """MobileNetV3-Small ``width`` times as wide, at ``resolution`` px, as genotype JSON."""
    import nas
    from nas.scaling import scale_genotype
    from nas.serialization import genotype_json

    small = nas.resolve("mobilenetv3-small")
    genotype = scale_genotype(
        small.space, small.genotype, width=width, resolution=resolution / small.genotype.resolution
    )
    return genotype_json(small.space.name, genotype)


def scaled(base: dict[str, Any], width: float = 1.0, depth: float = 1.0, resolution: float = 1.0) -> dict[str, Any]:
    import nas
    from nas.scaling import scale_genotype
    from nas.serialization import genotype_json

    genotype = nas.load_genotype(base)
    space = nas.space_of(genotype)
    return genotype_json(space.name, scale_genotype(space, genotype, width=width, depth=depth, resolution=resolution))


def cost(genotype_json: dict[str, Any]) -> dict[str, int]:
    """Parameters and MACs of the network trained here: ``CLASSES`` classes, the genotype's own resolution."""
    import nas
    from nas.cost import build_on_meta, count_macs, count_params

    ir = nas.lower(nas.load_genotype(genotype_json), num_classes=CLASSES)
    model = build_on_meta(lambda: nas.compile(ir))
    return {"params": count_params(model), "macs": int(count_macs(model, ir.resolution)), "resolution": ir.resolution}


def subset(scratch: Path, per_class: int, test: bool) -> Path:
    """``scratch/scaling-K[-test]``: ``train_recipes.subset``'s first ``per_class`` training images of each
    class; with ``test``, ``test/`` a link to the 10,000 test images. Once."""
    return recipe_subset(scratch, per_class, test=test, name=f"scaling-{per_class}{'-test' if test else ''}")


def run_grid(out: Path, base_file: Path, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The ``nas scale`` grid (resumed if begun), its family, and each evaluated point's proxy metrics."""
    import torch

    from nas.scale.run import ScaleSettings, run_scale

    torch.set_num_threads(1)
    settings = ScaleSettings(
        out=str(out / "grid"),
        base=str(base_file),
        dataset="imagefolder",
        data_dir=str(data_dir),
        grid_step=GRID_STEP,
        phi_max=max(PHIS),
        epochs=args.grid_epochs,
        seed=args.seed,
        threads=1,
        budget=args.grid_budget,
        evaluator_options={
            "width_multiplier": 1.0,  # the base is already at width 0.5
            "resolution": args.base_resolution,  # times gamma per point
            "images_per_class": None,  # the subset folder is the budget
            "time_limit": None,  # wall-clock limits misfire on a process paused (SIGSTOP) by someone else
        },
    )
    points: dict[int, dict[str, Any]] = {}

    def recorded(record: Any, replayed: bool, count: int) -> None:
        metrics = dict(record.result.metrics)
        points[record.trial_id] = {
            key: metrics.get(key)
            for key in ("alpha", "beta", "gamma", "constraint", "accuracy", "params", "macs", "resolution")
        } | {"cpu_seconds": metrics.get("cpu_seconds"), "seconds": metrics.get("seconds"), "replayed": replayed}
        point = points[record.trial_id]
        accuracy = "failed" if point["accuracy"] is None else f"{point['accuracy']:.4f}"
        print(
            f"grid point {record.trial_id} ({count} done): alpha {point['alpha']}, beta {point['beta']}, gamma "
            f"{point['gamma']} at {point['resolution']} px: {accuracy}, {point['macs'] or 0:,} MACs, "
            f"{point['cpu_seconds'] or 0:.0f} CPU s{' (recorded)' if replayed else ''}",
            flush=True,
        )

    family, _ = run_scale(settings, on_record=recorded)
    return {"family": family, "points": [points[k] for k in sorted(points)]}


def controls(base: dict[str, Any], targets: dict[int, int], resolution: int) -> list[tuple[str, int, dict[str, Any]]]:
    """``(dimension, phi, genotype)``: the base scaled by one multiplier to the MACs nearest each target
    (log distance; ties: the smaller multiplier). The genotype carries its ``multiplier``."""
    candidates = {  # in the order they train: depth, the dearest per MAC, last
        "width": {w: scaled(base, width=w) for w in WIDTHS},
        "resolution": {
            r: scaled(base, resolution=r / resolution) for r in range(resolution, MAX_CONTROL_RESOLUTION + 1)
        },
        "depth": {d: genotype for d in DEPTHS if (genotype := _within(base, d)) is not None},
    }
    counted: dict[str, int] = {}  # genotype JSON -> MACs (rounding makes many multipliers the same network)

    def macs(genotype: dict[str, Any]) -> int:
        text = json.dumps(genotype, sort_keys=True)
        if text not in counted:
            counted[text] = cost(genotype)["macs"]
        return counted[text]

    chosen = []
    for dimension, options in candidates.items():
        for phi, target in targets.items():
            best = min(options, key=lambda k: (abs(math.log(macs(options[k]) / target)), k))
            chosen.append((dimension, phi, options[best] | {"multiplier": best}))
    return chosen


def _within(base: dict[str, Any], depth: float) -> dict[str, Any] | None:
    try:
        return scaled(base, depth=depth)
    except ValueError:  # beyond the space's bounds (64 blocks)
        return None


def train(name: str, genotype: dict[str, Any], out: Path, data_dir: Path, epochs: int, seed: int) -> dict[str, Any]:
    """One ``nas train`` run of ``genotype`` at its own resolution (plain recipe); its results and CPU seconds."""
    import torch

    from nas.train.run import run_train
    from nas.train.settings import TrainSettings

    torch.set_num_threads(1)
    spec = out / "genotypes" / f"{name}.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps(genotype, indent=1))
    counted = cost(genotype)
    started, cpu = time.perf_counter(), time.process_time()
    results = run_train(
        TrainSettings(
            spec=str(spec),
            out=str(out / name),
            dataset="imagefolder",
            data_dir=str(data_dir),
            epochs=epochs,
            seed=seed,
            resolution=counted["resolution"],
            threads=1,
            progress=False,
            **PLAIN,
        ),
        echo=lambda line: None,
    )
    return {
        "validation_accuracy": results["validation_accuracy"],
        "test_accuracy": results["test_accuracy"],
        "train_params": results["params"],
        **counted,
        "blocks": len(genotype["genotype"]["blocks"]),
        "epochs": epochs,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/scaling-cifar10")
    parser.add_argument("--results", help="also copy results.json, results.md and the runs' small files here")
    parser.add_argument("--tar", default=str(CIFAR_TAR))
    parser.add_argument("--scratch", default=str(SCRATCH), help="CIFAR-10 extracted, once (train_recipes.py)")
    parser.add_argument("--only", default="grid,family,controls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base-resolution", type=int, default=BASE_RESOLUTION)
    parser.add_argument("--grid-per-class", type=int, default=GRID_PER_CLASS)
    parser.add_argument("--grid-epochs", type=int, default=GRID_EPOCHS)
    parser.add_argument("--grid-budget", type=int, help="at most this many grid points (default: all)")
    parser.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS)
    parser.add_argument("--epochs", type=int, default=TRAIN_EPOCHS, help="of every family and control training")
    parser.add_argument("--smoke", action="store_true", help="3 grid points, 1 epoch, 50 images a class")
    args = parser.parse_args()
    out = Path(args.out)
    if args.smoke:
        out = out / "smoke"
        args.grid_budget, args.grid_epochs, args.epochs = 3, 1, 1
        args.grid_per_class = args.train_per_class = 50
    out.mkdir(parents=True, exist_ok=True)
    steps = set(args.only.split(","))
    scratch = Path(args.scratch)
    found = extract(Path(args.tar), scratch)
    print(f"CIFAR-10 (JPEG) in {scratch}: {found['images']}; load {os.getloadavg()}", flush=True)
    path = out / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    recorded = ("seed", "base_resolution", "grid_per_class", "grid_epochs", "grid_budget", "train_per_class", "epochs")
    results["settings"] = {key: getattr(args, key) for key in recorded} | {
        "base_width": BASE_WIDTH,
        "grid_step": GRID_STEP,
        "recipe": PLAIN,
    }
    base = base_genotype(BASE_WIDTH, args.base_resolution)
    base_file = out / "base-mobilenetv3-small-0.5.json"
    base_file.write_text(json.dumps(base, indent=1))

    def save() -> None:
        path.write_text(json.dumps(results, indent=2))

    done = results.get("grid", {}).get("family", {}).get("grid", {})
    complete = bool(done) and done["evaluated"] >= min(done["points"], args.grid_budget or done["points"])
    if not complete and ("grid" in steps or "grid" not in results):
        cpu = time.process_time()
        grid = run_grid(out, base_file, subset(scratch, args.grid_per_class, test=False), args)
        spent = time.process_time() - cpu
        previous = results.get("grid", {})
        results["grid"] = grid | {
            "cpu_seconds": previous.get("cpu_seconds", 0.0) + spent,
            "points_cpu_seconds": sum(p["cpu_seconds"] or 0 for p in grid["points"]),
        }
        save()
    family = results["grid"]["family"]
    members = {model["phi"]: model for model in family["models"] if "genotype" in model}
    runs: dict[str, Any] = results.setdefault("runs", {})
    jobs: list[tuple[str, str, int, dict[str, Any]]] = []
    if "family" in steps:
        jobs += [(f"family-phi{phi}", "compound", phi, members[phi]["genotype"]) for phi in PHIS]
    if "controls" in steps:
        targets = {phi: cost(members[phi]["genotype"])["macs"] for phi in CONTROL_PHIS}
        jobs += [
            (f"{dimension}-phi{phi}", dimension, phi, genotype)
            for dimension, phi, genotype in controls(base, targets, args.base_resolution)
        ]
    data_dir = subset(scratch, args.train_per_class, test=True)
    for name, kind, phi, genotype in jobs:
        multiplier = genotype.pop("multiplier", None)
        result = train(name, genotype, out, data_dir, args.epochs, args.seed)
        if name in runs and "cpu_seconds" in runs[name]:  # reported from a finished run: keep its cost
            result |= {k: runs[name][k] for k in ("seconds", "cpu_seconds", "load_average")}
        runs[name] = result | {"kind": kind, "phi": phi, "multiplier": multiplier}
        print(
            f"{name}: {result['resolution']} px, {result['params']:,} params, {result['macs'] / 1e6:.3f}M MACs: "
            f"validation {result['validation_accuracy']:.4f}, test {result['test_accuracy']:.4f}, "
            f"{result['cpu_seconds']:.0f} CPU s",
            flush=True,
        )
        save()
    text = tables(results, " ".join(sys.argv))
    (out / "results.md").write_text(text)
    print(text)
    if args.results and not args.smoke:
        keep(out, Path(args.results), results)


def keep(out: Path, into: Path, results: dict[str, Any]) -> None:
    """results.json, results.md, the base, the grid's scaling.json/.md and each run's train.json/log.csv."""
    into.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.md", "base-mobilenetv3-small-0.5.json"):
        shutil.copy(out / name, into / name)
    for name in ("scaling.json", "scaling.md", "scaling.png"):
        if (out / "grid" / name).exists():
            (into / "grid").mkdir(exist_ok=True)
            shutil.copy(out / "grid" / name, into / "grid" / name)
    for name in results.get("runs", {}):
        for file in ("train.json", "log.csv"):
            if (out / name / file).exists():
                (into / name).mkdir(exist_ok=True)
                shutil.copy(out / name / file, into / name / file)


def _by(points: list[dict[str, Any]], key: str) -> str:
    groups: dict[float, list[float]] = {}
    for point in points:
        if point["accuracy"] is not None:
            groups.setdefault(point[key], []).append(point["accuracy"])
    return ", ".join(f"{value:g}: {statistics.fmean(a):.4f} ({len(a)})" for value, a in sorted(groups.items()))


def tables(results: dict[str, Any], command: str) -> str:
    grid, family = results["grid"], results["grid"]["family"]
    settings = results["settings"]
    lines = [
        f"Command: `{command}`",
        "",
        f"Settings: {json.dumps(settings)}",
        "",
        f"## Grid ({family['grid']['evaluated']} of {family['grid']['points']} points; "
        f"{grid['cpu_seconds']:.0f} CPU s for the step, {grid['points_cpu_seconds']:.0f} CPU s in the points)",
        "",
    ]
    if family["alpha"] is not None:
        lines.append(
            f"Best: alpha (depth) {family['alpha']:g}, beta (width) {family['beta']:g}, gamma (resolution) "
            f"{family['gamma']:g}; alpha * beta^2 * gamma^2 = {family['constraint']:.4f}; proxy accuracy "
            f"{family['accuracy']:.4f}."
        )
    points = grid["points"]
    lines += [
        "",
        f"Mean proxy accuracy by alpha: {_by(points, 'alpha')}",
        f"by beta: {_by(points, 'beta')}",
        f"by gamma: {_by(points, 'gamma')}",
        "",
        "| rank | alpha | beta | gamma | alpha*beta^2*gamma^2 | px | proxy params | proxy MACs | accuracy | CPU s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ranked = sorted(points, key=lambda p: (p["accuracy"] is None, -(p["accuracy"] or 0)))
    for rank, p in enumerate(ranked, 1):
        accuracy = "failed" if p["accuracy"] is None else f"{p['accuracy']:.4f}"
        lines.append(
            f"| {rank} | {p['alpha']} | {p['beta']} | {p['gamma']} | {p['constraint']:.3f} | {p['resolution']} | "
            f"{p['params'] or 0:,} | {(p['macs'] or 0) / 1e6:.3f}M | {accuracy} | {p['cpu_seconds'] or 0:.0f} |"
        )
    runs = results.get("runs", {})
    if runs:
        base_macs = next((r["macs"] for r in runs.values() if r["kind"] == "compound" and r["phi"] == 0), None)
        lines += [
            "",
            f"## Trainings ({settings['train_per_class']} images a class, 80% trained on; {settings['epochs']} "
            "epochs each; test: the 10,000 test images)",
            "",
            "| run | scaled by | multiplier | px | blocks | params | MACs | MACs / phi 0 | validation | test | CPU s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        order = sorted(runs.items(), key=lambda item: (item[1]["phi"], item[1]["kind"] != "compound", item[0]))
        for name, r in order:
            ratio = "-" if base_macs is None else f"{r['macs'] / base_macs:.2f}"
            multiplier = (
                f"phi {r['phi']}" if r["kind"] == "compound" else f"{r['multiplier']}" if r["multiplier"] else "-"
            )
            lines.append(
                f"| {name} | {r['kind']} | {multiplier} | {r['resolution']} | {r.get('blocks', '-')} | "
                f"{r['params']:,} | {r['macs'] / 1e6:.3f}M | {ratio} | {r['validation_accuracy']:.4f} | "
                f"**{r['test_accuracy']:.4f}** | {r['cpu_seconds']:.0f} |"
            )
        total = grid["cpu_seconds"] + sum(r["cpu_seconds"] for r in runs.values())
        lines += ["", f"CPU seconds, grid and trainings: {total:.0f} ({total / 3600:.2f} CPU-hours)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
