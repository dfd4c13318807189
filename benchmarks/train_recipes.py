"""``nas train`` on CIFAR-10 (or digits): the recipe against plain training, FixRes, Noisy Student.

Each experiment is a list of ``nas train`` runs (``nas.train.run.run_train``, one intra-op thread,
``--workers`` of them side by side, default one) written under ``--out``; a run directory that is
already finished reports its results instead of training again, so a run two experiments share (the
32-px recipe run is both (a)'s recipe and (b)'s train-high baseline) is trained once.

CIFAR-10 (``--data cifar10``, the default): the JPEG re-encoding in ``../shared/data/cifar10-jpeg.tar``
(its README) is extracted once, ``train/`` and ``test/``, to ``--scratch``, and read as the
``imagefolder`` data set: the 50,000 training images are split into training (40,000) and validation
(10,000) exactly as a search splits them (``--validation-fraction 0.2``, the seed's stratified split);
the 10,000 test images give the reported test accuracy and nothing else. Networks: MobileNetV3-Small
at width 0.5 and the NAS-Bench-201 optimum (``nb201-best``) at the proxy's size (C = 8, N = 1).

1. *recipe* (MobileNetV3-Small 0.5, 32 px, ``--epochs``): ``plain`` (mirror only: no RandAugment,
   no crop, no label smoothing, no warm-up, no drop-path), the ``recipe``'s defaults
   (RandomResizedCrop down to 8% of the image, RandAugment(2, 9), label smoothing 0.1, warm-up,
   drop-path), and the recipe with the crop's smallest area ``--crop-scale`` (default 0.35) instead
   of 0.08, for 32-px images.
   *small*: the same three on the first 500 training images of each class (``subset``: 4,000 for
   training, 1,000 for validation, the same 10,000 test images) for ``--small-epochs`` (default 40),
   about the same number of images seen: a regime where the network can overfit and regularisation
   has something to do (5 epochs over 40,000 images never leave the under-fitting one).
   *ablation*: in that regime, ``plain`` with one part of the recipe turned on: the crop at
   ``--crop-scale``; RandAugment(2, 9); both; label smoothing, warm-up and drop-path together.
2. *fixres* (both networks, recipe with ``--crop-scale``): trained at 24 px then FixRes fine-tuned
   (``--fixres-epochs``, default 1) at 28 and 32 px; against the same recipe trained and tested at
   32 px for the same epochs. Test accuracy at 24 px, at 28/32 before and after the fix, CPU seconds.
3. *ns* (MobileNetV3-Small 0.5, recipe with ``--crop-scale``): Noisy Student with 10% of the
   training split labelled (4,000 images, ``--unlabeled-fraction 0.9``: the other 36,000 unlabelled),
   teacher then two students (same network, noised by the recipe: RandAugment, dropout, drop-path),
   soft pseudo-labels, threshold 0.3, balanced; each the same ``--epochs``.
   *ns-small*: what fits a CPU-hour: the small regime's 4,000 training images, half of them labelled
   (``--unlabeled-fraction 0.5``: 2,000 labels, 2,000 unlabelled), teacher and two students,
   ``--small-epochs`` each.

Digits (``--data digits``): the earlier experiments of benchmarks/README.md (NASNet reduced as the proxy
reduces it, 8 px; recipe at 4 and 30 epochs, FixRes 16 -> 20/24, Noisy Student with 115 labels).

    .venv/bin/python benchmarks/train_recipes.py --out /tmp/train-recipes [--data cifar10]
        [--only recipe,small,fixres,ablation,ns] [--small-epochs 40]
        [--seeds 0] [--epochs 5] [--crop-scale 0.35] [--results benchmarks/results/train_recipes_cifar10]

Prints each finished run and the tables; writes ``OUT/results.json`` and ``OUT/results.md`` (and, with
``--results DIR``, those and every run's ``log.csv``/``fixres.json``/``noisy_student.json`` to DIR).
CPU seconds: ``time.process_time`` of the run's process (one thread), data loading included.
``--bn-baseline`` then (or alone, on a finished ``OUT``) compares FixRes with the cheapest
alternative: the trained network with *every* BatchNorm's statistics re-estimated at R_test (512
training images), no training.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings
from nb201_fidelity import extracted

ROOT = Path(__file__).resolve().parents[1]
CIFAR_TAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar"
SCRATCH = Path(tempfile.gettempdir()) / "train-recipes-cifar10"

NASNET = {"spec": "nasnet-a-cifar", "lowering": {"num_cells": 1, "penultimate_filters": 96}}
MOBILENET = {"spec": "mobilenetv3-small", "lowering": {"width_multiplier": 0.5}}
NB201 = {"spec": "nb201-best", "lowering": {"C": 8, "N": 1}}  # the proxy's size (nb201 proxy_reduction)
PLAIN = {"randaugment_ops": 0, "crop_scale": 1.0, "label_smoothing": 0.0, "warmup_epochs": 0.0, "drop_path": False}
CIFAR_EPOCHS = 5
CIFAR_CROP_SCALE = 0.35  # RandomResizedCrop's smallest area for 32-px images (the default 0.08 is ImageNet's)
LOW, TESTS = 24, (28, 32)  # FixRes: R_train, and the R_test it is fine-tuned at
HIGH = 32  # CIFAR-10's own size: the train-high baseline
SMALL_PER_CLASS, SMALL_EPOCHS = 500, 40  # (a) again where the network can overfit: 4,000 training images


def extract(tar: Path, into: Path) -> dict[str, Any]:
    """All of ``tar``'s ``train/`` and ``test/`` images under ``into``, once (``extracted.json`` marks it)."""
    marker = into / "extracted.json"
    wanted = {"tar": str(tar.resolve()), "trees": ["test", "train"]}
    if (found := extracted(into, wanted)) is not None:
        return found
    started = time.perf_counter()
    into.mkdir(parents=True, exist_ok=True)
    # tar(1): Python's tarfile takes minutes over the 60,000 members on a loaded machine, tar seconds
    subprocess.run(["tar", "-xf", str(tar), "-C", str(into), "train", "test"], check=True)
    counts = {tree: sum(1 for _ in (into / tree).glob("*/*.jpg")) for tree in ("train", "test")}
    found = {**wanted, "images": counts, "seconds": round(time.perf_counter() - started, 1)}
    marker.write_text(json.dumps(found, indent=1))
    return found


def subset(scratch: Path, per_class: int, test: bool = True, name: str | None = None) -> Path:
    """``scratch/NAME`` (default ``subset-K``): the first ``per_class`` training images of each class (hard
    links into the extraction, in CIFAR-10's order) as ``train/``, and with ``test`` ``test/`` a link to the
    whole test tree; once."""
    into = scratch / (name or f"subset-{per_class}")
    marker = into / "subset.json"
    if marker.exists():
        return into
    for folder in sorted((scratch / "train").iterdir()):
        target = into / "train" / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(folder.glob("*.jpg"))[:per_class]:
            if not (target / image.name).exists():
                os.link(image, target / image.name)
    if test and not (into / "test").exists():
        (into / "test").symlink_to(scratch / "test", target_is_directory=True)
    marker.write_text(json.dumps({"per_class": per_class, "of": str(scratch), "test": test}))
    return into


def cifar_runs(
    experiments: set[str],
    seeds: list[int],
    data_dir: str,
    epochs: int,
    crop: float,
    fixres_epochs: int,
    small_dir: str = "",
    small_epochs: int = SMALL_EPOCHS,
) -> list[tuple[str, dict[str, Any]]]:
    """``(name, TrainSettings keywords)``, in the order they run; a name is the settings (shared runs dedupe)."""
    jobs: list[tuple[str, dict[str, Any]]] = []
    for seed in seeds:
        common = {"dataset": "imagefolder", "data_dir": data_dir, "epochs": epochs, "seed": seed}
        adapted = {"crop_scale": crop}
        tag = f"crop{crop:g}"
        if "recipe" in experiments:
            jobs.append((f"mobilenet-plain-r{HIGH}-s{seed}", {**MOBILENET, **common, **PLAIN, "resolution": HIGH}))
            jobs.append((f"mobilenet-recipe-r{HIGH}-s{seed}", {**MOBILENET, **common, "resolution": HIGH}))
            jobs.append(
                (f"mobilenet-recipe-{tag}-r{HIGH}-s{seed}", {**MOBILENET, **common, **adapted, "resolution": HIGH})
            )
        small = {**common, "data_dir": small_dir, "epochs": small_epochs, "resolution": HIGH}
        budget = f"{SMALL_PER_CLASS}pc-e{small_epochs}"
        if "small" in experiments:
            for label, extra in (("plain", PLAIN), ("recipe", {}), (f"recipe-{tag}", adapted)):
                jobs.append((f"mobilenet-{label}-{budget}-r{HIGH}-s{seed}", {**MOBILENET, **small, **extra}))
        if "ablation" in experiments:  # plain with one part of the recipe on, in the small regime
            parts: tuple[tuple[str, dict[str, Any]], ...] = (
                (f"plain-{tag}", {**PLAIN, **adapted}),
                ("plain-randaugment", {**PLAIN, "randaugment_ops": 2}),
                (f"plain-{tag}-randaugment", {**PLAIN, **adapted, "randaugment_ops": 2}),
                (
                    "plain-smoothing-warmup-droppath",
                    {**PLAIN, "label_smoothing": 0.1, "warmup_epochs": None, "drop_path": True},
                ),
            )
            for label, extra in parts:
                jobs.append((f"mobilenet-{label}-{budget}-r{HIGH}-s{seed}", {**MOBILENET, **small, **extra}))
        if "fixres" in experiments:
            for label, network in (("mobilenet", MOBILENET), ("nb201", NB201)):
                low = {"resolution": LOW, "fixres": TESTS, "fixres_epochs": fixres_epochs}
                jobs.append((f"{label}-recipe-{tag}-r{LOW}-fixres-s{seed}", {**network, **common, **adapted, **low}))
                jobs.append(
                    (f"{label}-recipe-{tag}-r{HIGH}-s{seed}", {**network, **common, **adapted, "resolution": HIGH})
                )
        if "ns" in experiments:
            student = {"noisy_student": True, "unlabeled_fraction": 0.9, "iterations": 2, "resolution": HIGH}
            jobs.append((f"mobilenet-ns-{tag}-r{HIGH}-s{seed}", {**MOBILENET, **common, **adapted, **student}))
        if "ns-small" in experiments:  # what fits the budget: half of the 4,000 small-regime images labelled
            student = {"noisy_student": True, "unlabeled_fraction": 0.5, "iterations": 2}
            jobs.append((f"mobilenet-ns-{tag}-{budget}-r{HIGH}-s{seed}", {**MOBILENET, **small, **adapted, **student}))
    unique = dict(jobs)  # the first of equal names: equal names are equal settings
    return list(unique.items())


def digits_runs(experiments: set[str], seeds: list[int]) -> list[tuple[str, dict[str, Any]]]:
    jobs: list[tuple[str, dict[str, Any]]] = []
    for seed in seeds:
        if "recipe" in experiments:
            jobs.append((f"proxy-s{seed}", {"proxy": True, "seed": seed}))
            for epochs in (4, 30):
                for name, extra in (("plain", PLAIN), ("recipe", {}), ("recipe-crop0.35", {"crop_scale": 0.35})):
                    if epochs == 4 and name == "recipe-crop0.35":
                        continue
                    jobs.append((f"{name}-e{epochs}-s{seed}", {**NASNET, **extra, "epochs": epochs, "seed": seed}))
        if "fixres" in experiments:
            for label, network in (("nasnet", NASNET), ("mobilenetv3", MOBILENET)):
                fixres = {"epochs": 30, "resolution": 16, "fixres": (20, 24), "crop_scale": 0.35, "seed": seed}
                jobs.append((f"fixres-{label}-s{seed}", {**network, **fixres}))
        if "ns" in experiments:
            ns = {"noisy_student": True, "unlabeled_fraction": 0.9, "iterations": 2}
            jobs.append(
                (f"ns-s{seed}", {**NASNET, "epochs": 60, "batch_size": 32, **ns, "crop_scale": 0.35, "seed": seed})
            )
            jobs.append(
                (
                    f"full-labels-e60-s{seed}",
                    {**NASNET, "epochs": 60, "batch_size": 32, "crop_scale": 0.35, "seed": seed},
                )
            )
    return jobs


def run(name: str, job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    import torch

    torch.set_num_threads(1)
    started, cpu = time.perf_counter(), time.process_time()
    job = dict(job)
    if job.pop("proxy", False):
        import nas
        from evaluators.proxy import ProxyEvaluator

        evaluator = ProxyEvaluator("nasnet", "digits", seed=job["seed"])
        metrics = evaluator.evaluate(nas.resolve("nasnet-a-cifar").genotype, 0)
        return name, {
            "validation_accuracy": metrics["accuracy"],
            "test_accuracy": None,
            "epochs": metrics["epochs"],
            "params": metrics["params"],
            "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu,
        }
    from nas.train.run import run_train
    from nas.train.settings import TrainSettings

    results = run_train(TrainSettings(progress=False, threads=1, **job), echo=lambda line: None)
    return name, {
        **results,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/train-recipes")
    parser.add_argument("--data", choices=("cifar10", "digits"), default="cifar10")
    parser.add_argument("--tar", default=str(CIFAR_TAR), help="cifar10: the JPEG tarball (../shared/data)")
    parser.add_argument("--scratch", default=str(SCRATCH), help="cifar10: where it is extracted, once")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--only", default="recipe,small,fixres,ablation,ns")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=CIFAR_EPOCHS, help="cifar10: epochs of every run")
    parser.add_argument("--crop-scale", type=float, default=CIFAR_CROP_SCALE, help="cifar10: the adapted crop")
    parser.add_argument("--fixres-epochs", type=int, default=1, help="cifar10: FixRes fine-tune epochs")
    parser.add_argument("--small-epochs", type=int, default=SMALL_EPOCHS, help="cifar10: epochs of the small runs")
    parser.add_argument("--results", help="also copy results.json, results.md and the runs' logs here")
    parser.add_argument("--bn-baseline", action="store_true", help="only: all-BatchNorm re-estimation at R_test")
    args = parser.parse_args()
    out = Path(args.out)
    if args.bn_baseline:
        bn_baseline(out)
        return
    out.mkdir(parents=True, exist_ok=True)
    experiments, seeds = set(args.only.split(",")), [int(s) for s in args.seeds.split(",")]
    if args.data == "cifar10":
        found = extract(Path(args.tar), Path(args.scratch))
        print(f"CIFAR-10 (JPEG) in {args.scratch}: {found['images']}", flush=True)
        small = (
            str(subset(Path(args.scratch), SMALL_PER_CLASS)) if experiments & {"small", "ablation", "ns-small"} else ""
        )
        jobs = cifar_runs(
            experiments, seeds, args.scratch, args.epochs, args.crop_scale, args.fixres_epochs, small, args.small_epochs
        )
    else:
        jobs = digits_runs(experiments, seeds)
    jobs = [(name, {**job, "out": str(out / name)} if "proxy" not in job else job) for name, job in jobs]
    print(
        f"{len(jobs)} runs, {args.workers} side by side, 1 thread each; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    path = out / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    with ProcessPoolExecutor(args.workers) as pool:
        for name, result in pool.map(run, *zip(*jobs)):
            if name in results and "cpu_seconds" in results[name]:  # reported from a finished run: keep its cost
                result = {
                    **result,
                    **{k: results[name][k] for k in ("seconds", "cpu_seconds", "load_average") if k in results[name]},
                }
            results[name] = result
            print(
                f"{name}: validation {result['validation_accuracy']:.4f}, test "
                f"{result['test_accuracy'] if result['test_accuracy'] is None else round(result['test_accuracy'], 4)}"
                f", {result['seconds']:.0f} s, {result['cpu_seconds']:.0f} CPU s",
                flush=True,
            )
            path.write_text(json.dumps(results, indent=2))
    text = tables(results, " ".join(sys.argv))
    (out / "results.md").write_text(text)
    print(text)
    if args.results:
        keep(out, Path(args.results), results)


def keep(out: Path, into: Path, results: dict[str, Any]) -> None:
    """results.json, results.md and each run's small files (no weights) under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.md"):
        shutil.copy(out / name, into / name)
    for name in results:
        for file in ("train.json", "log.csv", "fixres.json", "noisy_student.json"):
            for found in (out / name).glob(f"**/{file}"):
                target = into / name / found.relative_to(out / name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(found, target)


def bn_baseline(out: Path) -> None:
    import torch

    import nas
    from nas.data import iterate_batches
    from nas.train.fit import load_train_data
    from nas.train.settings import TrainSettings
    from nas.training import evaluate, recalibrate_batchnorm

    torch.set_num_threads(1)
    print("\n| run | R_test | test: all BatchNorms re-estimated, no training |\n|---|---:|---:|")
    for directory in sorted(d for d in out.glob("*fixres*") if (d / "train.json").exists()):
        recorded = json.loads((directory / "train.json").read_text())["settings"]
        settings = TrainSettings(**{**recorded, "out": str(directory), "fixres": tuple(recorded["fixres"])})
        data = load_train_data(settings)
        for r in settings.fixres:
            model = nas.load_model(directory / "model.pt")
            recalibrate_batchnorm(
                model,
                data.splits.train,
                settings.batch_size,
                512,
                "cpu",
                torch.Generator().manual_seed(0),
                data.view(r),
            )
            _, accuracy = evaluate(model, iterate_batches(data.test, 256), "cpu", data.view(r))
            print(f"| {directory.name} | {r} | {accuracy:.4f} |")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} ({', '.join(f'{v:.4f}' for v in values)})"


def tables(results: dict[str, Any], command: str) -> str:
    """Markdown: every run, then FixRes against train-high and Noisy Student per iteration (seeds pooled by name)."""
    lines = [f"Command: `{command}`", "", "| run | R_train | epochs | validation | test | CPU s | wall s | load |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        lines.append(
            f"| {name} | {r.get('train_resolution', '-')} | {r['epochs']} | {_number(r['validation_accuracy'])} "
            f"| {_number(r['test_accuracy'])} | {r.get('cpu_seconds', 0):.0f} | {r['seconds']:.0f} "
            f"| {r.get('load_average', 0):.1f} |"
        )
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, r in results.items():
        groups.setdefault(re.sub(r"-s\d+$", "", name), []).append(r)
    fixres = [(name, rs) for name, rs in groups.items() if rs[0].get("fixres")]
    if fixres:
        lines += [
            "",
            "| run | R_test | test at R_train | test at R_test before | after FixRes | train-high at R_test |",
        ]
        lines.append("|---|---:|---:|---:|---:|---:|")
        for name, rs in fixres:
            high = groups.get(re.sub(r"-r\d+-fixres$", f"-r{HIGH}", name), [])
            for i, row in enumerate(rs[0]["fixres"]):
                r_test = row["test_resolution"]
                baseline = [h["test_accuracy"] for h in high] if r_test == HIGH and high else []
                lines.append(
                    f"| {name} | {r_test} | {_spread([r['fixres'][i]['accuracy_at_train_resolution'] for r in rs])} "
                    f"| {_spread([r['fixres'][i]['before'] for r in rs])} "
                    f"| {_spread([r['fixres'][i]['after'] for r in rs])} "
                    f"| {_spread(baseline) if baseline else '-'} |"
                )
    for name, rs in groups.items():
        if not rs[0].get("noisy_student"):
            continue
        lines += [
            "",
            f"{name}:",
            "",
            "| iteration | role | validation | test | teacher right on hidden labels | used |",
        ]
        lines.append("|---|---|---:|---:|---:|---:|")
        for i, row in enumerate(rs[0]["noisy_student"]):
            hidden = [r["noisy_student"][i].get("pseudo_labels", {}).get("accuracy_on_hidden_labels") for r in rs]
            used = [r["noisy_student"][i].get("pseudo_labels", {}).get("used") for r in rs]
            lines.append(
                f"| {row['iteration']} | {row['role']} "
                f"| {_spread([r['noisy_student'][i]['validation_accuracy'] for r in rs])} "
                f"| {_spread([r['noisy_student'][i]['test_accuracy'] for r in rs])} "
                f"| {'-' if None in hidden else _spread(hidden)} "
                f"| {'-' if None in used else ', '.join(map(str, used))} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
