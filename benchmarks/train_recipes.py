"""``nas train`` on digits: the recipe against the proxy trainer, FixRes, Noisy Student with 10% labels.

Three experiments, each a list of ``nas train`` runs (``nas.train.run.run_train``, one intra-op
thread each, ``--workers`` of them side by side) written under ``--out``:

1. *recipe*: NASNet-A (the CIFAR genotype) reduced as the proxy reduces it (1 cell per stack,
   96 penultimate filters, 8 px), trained by the proxy evaluator as a search would (4 epochs, its
   validation accuracy), then by ``nas train`` for 4 and 30 epochs, once with the proxy's settings
   (no augmentation, no label smoothing, no warm-up, no drop-path: ``plain``) and once with the
   recipe (RandomResizedCrop + RandAugment, label smoothing, warm-up, drop-path: ``recipe``; also with
   the crop's smallest area 0.35 instead of 0.08, for 8-px images). Validation accuracy is on the
   search's own held-out split; test accuracy on the untouched test split.
2. *fixres*: the same network and MobileNetV3-Small (width 0.5) trained at 16 px for 30 epochs,
   then FixRes at 20 and 24 px: test accuracy at 16 px, at R_test before and after the fine-tune.
3. *noisy student*: 10% of the training split labeled (``--unlabeled-fraction 0.9``), the rest
   unlabeled; teacher then two students (same network), 60 epochs each at batch 32; soft
   pseudo-labels, threshold 0.3, balanced. Teacher and student accuracy per iteration.

    .venv/bin/python benchmarks/train_recipes.py [--out runs/train-recipes] [--workers 2] [--only recipe,fixres,ns]
        [--seeds 0]

Prints one markdown table per experiment and writes ``OUT/results.json``. ``--bn-baseline`` then
(or alone, on a finished ``OUT``) compares FixRes with the cheapest alternative: the trained
network with *every* BatchNorm's statistics re-estimated at R_test (512 training images), no training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NASNET = {"spec": "nasnet-a-cifar", "lowering": {"num_cells": 1, "penultimate_filters": 96}}
MOBILENET = {"spec": "mobilenetv3-small", "lowering": {"width_multiplier": 0.5}}
PLAIN = {"randaugment_ops": 0, "crop_scale": 1.0, "label_smoothing": 0.0, "warmup_epochs": 0.0, "drop_path": False}


def runs(experiments: set[str], seeds: list[int], out: Path) -> list[tuple[str, dict[str, Any]]]:
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
                jobs.append(
                    (
                        f"fixres-{label}-s{seed}",
                        {
                            **network,
                            "epochs": 30,
                            "resolution": 16,
                            "fixres": (20, 24),
                            "crop_scale": 0.35,
                            "seed": seed,
                        },
                    )
                )
        if "ns" in experiments:
            jobs.append(
                (
                    f"ns-s{seed}",
                    {
                        **NASNET,
                        "epochs": 60,
                        "batch_size": 32,
                        "noisy_student": True,
                        "unlabeled_fraction": 0.9,
                        "iterations": 2,
                        "crop_scale": 0.35,
                        "seed": seed,
                    },
                )
            )
            jobs.append(
                (
                    f"full-labels-e60-s{seed}",
                    {**NASNET, "epochs": 60, "batch_size": 32, "crop_scale": 0.35, "seed": seed},
                )
            )
    return [(name, {**job, "out": str(out / name)}) for name, job in jobs]


def run(name: str, job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
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
        }
    from nas.train.run import TrainSettings, run_train

    results = run_train(TrainSettings(progress=False, **job), echo=lambda line: None)
    return name, {**results, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/train-recipes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="recipe,fixres,ns")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--bn-baseline", action="store_true", help="only: all-BatchNorm re-estimation at R_test")
    args = parser.parse_args()
    out = Path(args.out)
    if args.bn_baseline:
        bn_baseline(out)
        return
    out.mkdir(parents=True, exist_ok=True)
    jobs = runs(set(args.only.split(",")), [int(s) for s in args.seeds.split(",")], out)
    print(
        f"{len(jobs)} runs, {args.workers} side by side, 1 thread each; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: dict[str, Any] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for name, result in pool.map(run, *zip(*jobs)):
            results[name] = result
            print(
                f"{name}: validation {result['validation_accuracy']:.4f}, test "
                f"{result['test_accuracy'] if result['test_accuracy'] is None else round(result['test_accuracy'], 4)}"
                f", {result['seconds']:.0f} s",
                flush=True,
            )
    (out / "results.json").write_text(json.dumps(results, indent=2))
    table(results)


def bn_baseline(out: Path) -> None:
    import torch

    import nas
    from nas.data import iterate_batches
    from nas.train.fit import load_train_data
    from nas.train.run import TrainSettings
    from nas.training import evaluate, recalibrate_batchnorm

    torch.set_num_threads(1)
    print("\n| run | R_test | test: all BatchNorms re-estimated, no training |\n|---|---:|---:|")
    for directory in sorted(out.glob("fixres-*")):
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


def table(results: dict[str, Any]) -> None:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    print("\n| run | epochs | validation | test | s |\n|---|---:|---:|---:|---:|")
    for name, r in results.items():
        if "fixres" in r or "noisy_student" in r:
            continue
        print(
            f"| {name} | {r['epochs']} | {number(r['validation_accuracy'])} | {number(r['test_accuracy'])} "
            f"| {r['seconds']:.0f} |"
        )
    for name, r in results.items():
        for row in r.get("fixres", []):
            print(
                f"| {name} FixRes {r['train_resolution']}->{row['test_resolution']} | test at R_train "
                f"{row['accuracy_at_train_resolution']:.4f} | before {row['before']:.4f} | after {row['after']:.4f} "
                f"| val {row['validation_before']:.4f}->{row['validation_after']:.4f} |"
            )
        for row in r.get("noisy_student", []):
            hidden = row.get("pseudo_labels", {}).get("accuracy_on_hidden_labels")
            print(
                f"| {name} iteration {row['iteration']} {row['role']} | pseudo-label accuracy {number(hidden)} | "
                f"{number(row['validation_accuracy'])} | {number(row['test_accuracy'])} | |"
            )


if __name__ == "__main__":
    main()
