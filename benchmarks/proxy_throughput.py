"""How close a proxy candidate's training comes to what one CPU core can do: images/s and FLOP/s per setting.

    python benchmarks/proxy_throughput.py [--spaces nasnet mobilenetv3 nb201] [--batch-sizes 32 64 128 256]

For each space's proxy network (its ``proxy_reduction`` at 32 px, 10 classes, the first preset), each
batch size and each memory order of the weights (PyTorch's default contiguous NCHW, and channels
last, which oneDNN's CPU convolutions prefer), the training step the proxy runs (forward, cross
entropy, backward, SGD with momentum) is timed on one thread after two warm-up steps. Reported:
images per second, achieved FLOP/s (a training step counted as 3 forward passes, 2 FLOPs per MAC
of ``nas.cost.count_cost``) and that as a fraction of the peak measured here and now (a 2048 x 2048
float32 matrix product on the same thread: the best a core does on this machine, under the same
load). The thread count and the load average are printed with the table: on a shared machine every
figure drops with the load, the fractions far less.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch
from torch.nn import functional as F

from evaluators.proxy_options import proxy_reduction
from nas.compile import compile as compile_ir
from nas.cost import build_on_meta, count_cost
from nas.space import get


def peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a float32 matrix product on the current thread count (the machine's practical peak)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - began)


def step_rate(ir: Any, batch_size: int, channels_last: bool, seconds: float) -> float:
    """Training images per second of the network of ``ir`` at ``batch_size``."""
    model = compile_ir(ir, seed=0)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch_size, 3, ir.resolution, ir.resolution)
    labels = torch.randint(0, 10, (batch_size,))
    model.train()

    def step() -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    steps, began = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - began < seconds:
        step()
        steps += 1
    return steps * batch_size / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", nargs="+", default=["nasnet", "mobilenetv3", "blocks", "nb201"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per row")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    peak = peak_flops()
    loads = " / ".join(f"{value:.2f}" for value in load)
    print(f"1 thread, load average {loads}; matmul peak {peak / 1e9:.1f} GFLOP/s\n")
    print("| space | MMACs / image | batch | weights | images/s | GFLOP/s | of peak |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for name in args.spaces:
        space = get(name)
        genotype = next(iter(space.presets().values()))
        reduction = {"resolution": 32, **proxy_reduction(space)}
        ir = space.lower(genotype, num_classes=10, **reduction)
        macs = count_cost(build_on_meta(lambda ir=ir: compile_ir(ir)), ir.resolution)[0]
        for batch_size in args.batch_sizes:
            for channels_last in (False, True):
                rate = step_rate(ir, batch_size, channels_last, args.seconds)
                flops = 6 * macs * rate
                order = "channels last" if channels_last else "contiguous"
                print(
                    f"| {name} | {macs / 1e6:.1f} | {batch_size} | {order} "
                    f"| {rate:,.0f} | {flops / 1e9:.1f} | {100 * flops / peak:.0f}% |",
                    flush=True,
                )
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
