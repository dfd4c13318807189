"""Speed of our compiled presets against torchvision's own models (CPU, same weights).

For each model, torchvision's network is built with ``weights=None``, its weights are mapped onto
our preset with ``nas.from_torchvision``, and both are timed on

* a training step: forward + backward + SGD step, batch 8, 224 px, train mode; both models get
  the same seed before every step, so dropout and stochastic depth draw the same masks and the
  two networks compute the same function step after step;
* inference: batch 1, 224 px, eval mode, ``torch.inference_mode``.

Timings are interleaved in one process: every round times ours and torchvision's back to back,
alternating which goes first, after a warm-up. The table reports medians over rounds, and the
median of the per-round ratios (ours / torchvision; below 1.00 means ours is faster), which
cancels drift from other load on the machine better than a ratio of medians.

    python benchmarks/compiled_speed.py                      # all three models, 2-4 min on 2 idle cores
    python benchmarks/compiled_speed.py --models efficientnet-b0 --rounds 5 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from torch import nn

import nas

PAIRS = {
    "efficientnet-b0": "efficientnet_b0",
    "mobilenetv3-large": "mobilenet_v3_large",
    "mobilenetv3-small": "mobilenet_v3_small",
}
TRAIN_BATCH, INFER_BATCH, RESOLUTION = 8, 1, 224


def build_pair(name: str) -> tuple[nn.Module, nn.Module]:
    """torchvision's model and ours, holding the same weights."""
    torch.manual_seed(0)
    reference = torchvision.models.get_model(PAIRS[name], weights=None)
    ours = nas.materialize(name)
    ours.load_state_dict(nas.from_torchvision(PAIRS[name], reference.state_dict()))
    return ours, reference


def train_step_fn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Callable[[int], None]:
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step(seed: int) -> None:
        torch.manual_seed(seed)  # the same dropout / stochastic-depth masks for both models
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimizer.step()

    return step


def inference_fn(model: nn.Module, images: torch.Tensor, repeats: int) -> Callable[[int], None]:
    model.eval()

    def infer(seed: int) -> None:
        with torch.inference_mode():
            for _ in range(repeats):
                model(images)

    return infer


def time_once(fn: Callable[[int], None], seed: int) -> float:
    start = time.perf_counter()
    fn(seed)
    return time.perf_counter() - start


def measure(
    ours: Callable[[int], None], theirs: Callable[[int], None], rounds: int, warmup: int, per_call: int = 1
) -> tuple[list[float], list[float]]:
    """Seconds per call for ours and torchvision's, one pair per round, order alternating."""
    for seed in range(warmup):
        ours(seed)
        theirs(seed)
    ours_times, theirs_times = [], []
    for round_index in range(rounds):
        seed = warmup + round_index
        if round_index % 2 == 0:
            ours_times.append(time_once(ours, seed))
            theirs_times.append(time_once(theirs, seed))
        else:
            theirs_times.append(time_once(theirs, seed))
            ours_times.append(time_once(ours, seed))
    return [t / per_call for t in ours_times], [t / per_call for t in theirs_times]


def row(model: str, task: str, ours: list[float], theirs: list[float]) -> str:
    ours_ms, theirs_ms = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
    ratios = sorted(a / b for a, b in zip(ours, theirs))
    low, high = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    return (
        f"{model:<18} {task:<10} {ours_ms:>10.1f} {theirs_ms:>12.1f} {ours_ms / theirs_ms:>8.3f} "
        f"{statistics.median(ratios):>8.3f}   [{low:.3f}, {high:.3f}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--rounds", type=int, default=11, help="timed rounds per model and task")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--infer-repeats", type=int, default=10, help="inference calls per timed round")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    parser.add_argument("--tasks", nargs="+", default=["train", "inference"], choices=["train", "inference"])
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    load = os.getloadavg()[0]
    generator = torch.Generator().manual_seed(0)
    train_images = torch.randn(TRAIN_BATCH, 3, RESOLUTION, RESOLUTION, generator=generator)
    labels = torch.randint(0, 1000, (TRAIN_BATCH,), generator=generator)
    infer_images = torch.randn(INFER_BATCH, 3, RESOLUTION, RESOLUTION, generator=generator)

    if load > (os.cpu_count() or 1) - 0.5 and torch.get_num_threads() > 1:
        # OpenMP threads spin at barriers; with the cores shared, one descheduled thread stalls
        # the others and small layers slow down by 10-100x, in either model, at random.
        print(
            f"warning: load average {load:.1f} on {os.cpu_count()} CPUs; multi-threaded timings "
            "will be noisy; --threads 1 is more robust"
        )
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} CPUs, {args.rounds} rounds after {args.warmup} warm-up"
    )
    header = f"{'model':<18} {'task':<10} {'ours ms':>10} {'torchvision':>12} {'ratio':>8} {'r-median':>8}   r-IQR"
    lines = []
    for name in args.models:
        ours, theirs = build_pair(name)
        if "train" in args.tasks:
            # Copies, so the inference models keep the initial weights and stay identical.
            ours_train, theirs_train = copy.deepcopy(ours), copy.deepcopy(theirs)
            timed = measure(
                train_step_fn(ours_train, train_images, labels),
                train_step_fn(theirs_train, train_images, labels),
                args.rounds,
                args.warmup,
            )
            lines.append(row(name, "train b8", *timed))
            print(lines[-1], flush=True)
            del ours_train, theirs_train
        if "inference" in args.tasks:
            timed = measure(
                inference_fn(ours, infer_images, args.infer_repeats),
                inference_fn(theirs, infer_images, args.infer_repeats),
                args.rounds,
                args.warmup,
                args.infer_repeats,
            )
            lines.append(row(name, "infer b1", *timed))
            print(lines[-1], flush=True)
    print()
    print(header)
    print("\n".join(lines))
    print(
        f"ratio = median(ours) / median(torchvision); r-median, r-IQR: per-round ratios. "
        f"Load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
        f"{time.perf_counter() - started:.0f} s in all."
    )


if __name__ == "__main__":
    main()
