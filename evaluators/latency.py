"""Measured latency that can be trusted: warm-up, a fixed thread count, device sync, a stable median.

Other engines time one run after one warm-up and report the mean (Archai ``TorchLatency``), or
time GPU kernels without synchronizing (ProxylessNAS ``run_manager.py``); both numbers move by
tens of percent between calls (``../shared/reference/nas-engines.md`` §4.1). ``measure`` here:

1. runs the module in eval mode under ``torch.inference_mode`` with ``threads`` intra-op threads
   (the caller's setting is restored) and the garbage collector paused, as ``timeit`` does;
2. warms up for ``warmup`` runs and at least ``WARMUP_SECONDS`` (allocator, oneDNN kernel choice,
   CUDA context and cuDNN autotuning happen there, not in the timed runs), the first measurement of
   a process for ``PROCESS_WARMUP_SECONDS`` (on this project's CPU the first second of a process's
   forward passes ran 25-35% slower than the rest, whatever the network);
3. times single runs with ``time.perf_counter_ns``, synchronizing the device before starting the
   clock and before stopping it (CUDA, MPS), so queued kernels are counted;
4. repeats until the 95% confidence interval of the median, from the order statistics of the
   runs so far, is narrower than ``precision`` of the median (default ±2%), with at least
   ``min_repetitions`` runs a round, in ``rounds`` rounds on fresh copies of the input and the
   module (their memory placement changes a network's latency by up to a third on this project's
   CPU), each round stopping at ``max_repetitions / rounds`` runs or ``max_seconds / rounds``;
5. reports the median, the 10th / 90th percentiles and the mean, with the device's fingerprint
   (processor, machine, cores, threads, torch version, device name): a latency number without
   the machine it was measured on means nothing, and a lookup table is valid only on its own.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import hashlib
import itertools
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from nas.backend import intra_op_threads

WARMUP = 5
WARMUP_SECONDS = 0.05
PROCESS_WARMUP_SECONDS = 1.0
MIN_REPETITIONS = 10
MAX_REPETITIONS = 1000
MAX_SECONDS = 2.0  # per measurement, after warm-up, unless the minimum runs take longer (see ``measure``)
MEASURE_OPTIONS = ("warmup", "min_repetitions", "max_repetitions", "max_seconds", "precision", "rounds")
PRECISION = 0.02
ROUNDS = 3
Z_95 = 1.959964


@dataclass(frozen=True)
class Latency:
    """One measurement: milliseconds per forward pass of a batch, and where it was taken."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    repetitions: int
    batch_size: int
    threads: int
    device: str
    fingerprint: str  # ``fingerprint_key`` of ``device_fingerprint(device, threads)``

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@lru_cache(maxsize=1)
def _processor() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; ``platform.processor()`` elsewhere)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def device_fingerprint(device: str | torch.device = "cpu", threads: int = 1) -> dict[str, Any]:
    """What a latency depends on besides the network: processor, machine, cores, threads, torch, device."""
    device = torch.device(device)
    name = str(device)
    if device.type == "cuda":
        name = f"{device} ({torch.cuda.get_device_name(device)})"
    return {
        "processor": _processor(),
        "machine": platform.machine(),
        "cpus": os.cpu_count() or 0,
        "threads": int(threads),
        "torch": torch.__version__,
        "device": name,
    }


def fingerprint_key(fingerprint: dict[str, Any]) -> str:
    """A short, stable name for a fingerprint (the first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def check_measure_options(options: dict[str, Any]) -> None:
    """``ValueError`` naming an unknown option of ``measure`` or a value that is not a number."""
    for name, value in options.items():
        if name not in MEASURE_OPTIONS:
            raise ValueError(f"{name}: not an option of the latency measurement; valid: {list(MEASURE_OPTIONS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: expected a number >= 0, got {value!r}")


def check_measure_settings(batch_size: int, threads: int) -> None:
    for name, value in (("batch_size", batch_size), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
            raise ValueError(f"{name}: must be an integer in [1, 4096], got {value!r}")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: without it a GPU time is the launch time, not the run time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def median_interval(sorted_times: Sequence[float]) -> tuple[float, float]:
    """The 95% confidence interval of the median of ``sorted_times`` from order statistics.

    The ranks ``j = floor(n/2 - 1.96 sqrt(n)/2)`` and ``k = ceil(1 + n/2 + 1.96 sqrt(n)/2)`` (1-based;
    the normal approximation of the binomial) bound the
    median whatever the distribution of the times, so a long tail (another process waking up)
    widens the interval instead of biasing a mean.
    """
    n = len(sorted_times)
    half = Z_95 * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half) - 1)  # 1-based ranks j and k, as 0-based indices
    high = min(n - 1, math.ceil(1 + n / 2 + half) - 1)
    return sorted_times[low], sorted_times[high]


def percentile(sorted_times: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default method)."""
    position = fraction * (len(sorted_times) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_times) - 1)
    return sorted_times[low] + (sorted_times[high] - sorted_times[low]) * (position - low)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No garbage collection while timing (``timeit``'s choice): a collection is not the network's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def measure(
    module: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    threads: int = 1,
    warmup: int = WARMUP,
    min_repetitions: int = MIN_REPETITIONS,
    max_repetitions: int = MAX_REPETITIONS,
    max_seconds: float = MAX_SECONDS,
    precision: float = PRECISION,
    rounds: int = ROUNDS,
) -> Latency:
    """Latency of ``module(*inputs)`` on the device the inputs are on (see the module docstring).

    ``inputs`` is one tensor or a sequence of them (a NASNet cell takes two); the batch size is
    the first dimension of the first. The module must already be on that device. The runs are
    taken in ``rounds`` rounds, each on a fresh copy of the inputs and of the module (other
    addresses, so other cache sets and alignment: on this project's CPU one placement of the same
    layer ran 4x slower than another, and one of six compiled MobileNetV3-Small 33% slower than the
    other five, consistently within a process), each with ``min_repetitions`` runs at least and
    ``max_seconds / rounds`` at most unless its median is stable sooner; the median and
    percentiles are of all runs pooled, so one unlucky placement does not become the figure.
    """
    tensors = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    _check_measure(tensors, threads, warmup, min_repetitions, max_repetitions, precision, rounds)
    times: list[float] = []
    with _timing(module, threads):
        for placed, placed_inputs in _placements(module, tensors, rounds):
            times += _round(
                placed,
                placed_inputs,
                warmup,
                _warmup_seconds() if placed is module else 0.0,
                min_repetitions,
                max_repetitions // rounds,
                max_seconds / rounds,
                precision,
            )
    return _latency(times, tensors, threads)


def _placements(
    module: nn.Module, tensors: tuple[torch.Tensor, ...], rounds: int
) -> Iterator[tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """``module`` and ``tensors``, then ``rounds - 1`` copies of both at new addresses (each kept alive until
    the last round, so none reuses another's memory). Copied outside inference mode, in eval mode."""
    copies: list[tuple[nn.Module, tuple[torch.Tensor, ...]]] = [(module, tensors)]
    yield copies[0]
    for _ in range(rounds - 1):
        with torch.inference_mode(False):
            placed = copy.deepcopy(module).eval()
        copies.append((placed, tuple(tensor.clone() for tensor in tensors)))
        yield copies[-1]


_warm = False  # whether this process has measured before (``PROCESS_WARMUP_SECONDS``)


def _warmup_seconds() -> float:
    global _warm
    seconds = WARMUP_SECONDS if _warm else PROCESS_WARMUP_SECONDS
    _warm = True
    return seconds


def _check_measure(
    tensors: tuple[torch.Tensor, ...],
    threads: int,
    warmup: int,
    min_repetitions: int,
    max_repetitions: int,
    precision: float,
    rounds: int,
) -> None:
    check_measure_settings(int(tensors[0].shape[0]), threads)
    if (
        min_repetitions < 3
        or max_repetitions < min_repetitions
        or warmup < 0
        or not 0 < precision < 1
        or isinstance(rounds, bool)
        or not isinstance(rounds, int)
        or rounds < 1
    ):
        raise ValueError(
            f"measure: need 3 <= min_repetitions <= max_repetitions, warmup >= 0, precision in (0, 1) "
            f"and rounds >= 1; got {min_repetitions}, {max_repetitions}, {warmup}, {precision}, {rounds}"
        )


@contextlib.contextmanager
def _timing(module: nn.Module, threads: int) -> Iterator[None]:
    """Eval mode, ``threads`` intra-op threads, inference mode, no garbage collection; the caller's state after."""
    was_training = module.training
    module.eval()
    try:
        with intra_op_threads(threads), torch.inference_mode(), _quiet():
            yield
    finally:
        module.train(was_training)


def _latency(times: list[float], tensors: tuple[torch.Tensor, ...], threads: int) -> Latency:
    ordered = sorted(times)
    device = tensors[0].device
    return Latency(
        median_ms=percentile(ordered, 0.5),
        p10_ms=percentile(ordered, 0.1),
        p90_ms=percentile(ordered, 0.9),
        mean_ms=sum(times) / len(times),
        repetitions=len(times),
        batch_size=int(tensors[0].shape[0]),
        threads=threads,
        device=str(device),
        fingerprint=fingerprint_key(device_fingerprint(device, threads)),
    )


def _round(
    module: Callable[..., Any],
    tensors: tuple[torch.Tensor, ...],
    warmup: int,
    warmup_seconds: float,
    min_repetitions: int,
    max_repetitions: int,
    max_seconds: float,
    precision: float,
) -> list[float]:
    """Warm up, then time single runs until the median is stable or the round's time is spent."""
    device = tensors[0].device
    started = time.perf_counter()
    runs = 0
    while runs < warmup or time.perf_counter() - started < warmup_seconds:
        module(*tensors)
        runs += 1
    synchronize(device)
    started = time.perf_counter()
    times: list[float] = []
    while len(times) < max(max_repetitions, min_repetitions):
        synchronize(device)
        begin = time.perf_counter_ns()
        module(*tensors)
        synchronize(device)
        times.append((time.perf_counter_ns() - begin) / 1e6)
        if len(times) >= min_repetitions and (_stable(times, precision) or time.perf_counter() - started > max_seconds):
            break
    return times


def _stable(times: list[float], precision: float) -> bool:
    """True once the median's 95% interval lies within ``precision`` of it (checked every few runs)."""
    if len(times) % 5:
        return False
    ordered = sorted(times)
    low, high = median_interval(ordered)
    middle = percentile(ordered, 0.5)
    return middle > 0 and (high - low) / 2 <= precision * middle


def measure_in_context(
    module: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    parts: Sequence[nn.Module],
    *,
    threads: int = 1,
    warmup: int = WARMUP,
    min_repetitions: int = MIN_REPETITIONS,
    max_repetitions: int = MAX_REPETITIONS,
    max_seconds: float = MAX_SECONDS,
    precision: float = PRECISION,
    rounds: int = ROUNDS,
) -> tuple[Latency, list[float]]:
    """The latency of ``module(*inputs)`` and the share of it each of ``parts`` takes, timed inside it.

    A part timed alone runs with its weights and input hot in cache; inside the network it reads
    what the part before it left and its weights were evicted by the others', so parts timed alone
    sum to less than the network (15-29% on this project's CPU, ``benchmarks/latency_lut.py``).
    Here forward hooks mark the end of each of ``parts`` (submodules the forward runs once each,
    in this order): segment k runs from the end of part k-1 (the start of the forward) to the end of
    part k, and a last segment from the end of the last part to the return (pooling, a classifier),
    so the segments cover the whole forward. Hooks cost microseconds each, so rounds of hooked runs
    alternate with rounds of plain runs (each kind up to ``max_seconds``), and the segments' means
    are scaled to sum to the plain runs' median: the returned ``Latency`` is that of the plain runs,
    the list has ``len(parts) + 1`` milliseconds. ``ValueError`` if a part does not run exactly once, in order.
    """
    tensors = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    device = tensors[0].device
    marks: list[tuple[int, int]] = []  # (part index, perf_counter_ns at its end)

    def mark(index: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: Any, _output: Any) -> None:
            synchronize(device)
            marks.append((index, time.perf_counter_ns()))

        return hook

    segments: list[list[float]] = []

    def hooked(placed: nn.Module, *args: torch.Tensor) -> None:
        marks.clear()
        begin = time.perf_counter_ns()
        placed(*args)
        synchronize(device)
        end = time.perf_counter_ns()
        if [index for index, _ in marks] != list(range(len(parts))):
            raise ValueError(
                f"measure_in_context: the parts ran in the order {[index for index, _ in marks][:8]}, not each "
                f"once in the order given ({len(parts)} parts)"
            )
        stamps = [begin, *(stamp for _, stamp in marks), end]
        segments.append([(later - earlier) / 1e6 for earlier, later in itertools.pairwise(stamps)])

    names = {id(submodule): name for name, submodule in module.named_modules()}
    missing = [index for index, part in enumerate(parts) if id(part) not in names]
    if missing:
        raise ValueError(f"measure_in_context: part {missing[0]} is not a submodule of the module")
    _check_measure(tensors, threads, warmup, min_repetitions, max_repetitions, precision, rounds)
    plain: list[float] = []
    kept: list[list[float]] = []
    limits = (min_repetitions, max_repetitions // rounds, max_seconds / rounds, precision)
    with _timing(module, threads):
        for placed, placed_inputs in _placements(module, tensors, rounds):
            first = placed is module
            located = [placed.get_submodule(names[id(part)]) for part in parts]
            handles = [part.register_forward_hook(mark(index)) for index, part in enumerate(located)]
            try:  # hooked and plain runs alternate round by round, so both see the same drift and placements
                segments.clear()
                seconds = _warmup_seconds() if first else 0.0
                timed = _round(functools.partial(hooked, placed), placed_inputs, warmup, seconds, *limits)
                kept += segments[len(segments) - len(timed) :]  # the timed runs, not the warm-up
            finally:
                for handle in handles:
                    handle.remove()
            plain += _round(placed, placed_inputs, warmup if first else 1, 0.0, *limits)
    latency = _latency(plain, tensors, threads)
    means = [sum(run[k] for run in kept) / len(kept) for k in range(len(parts) + 1)]
    scale = latency.median_ms / sum(means)
    return latency, [value * scale for value in means]


def measure_network(
    module: nn.Module,
    resolution: int,
    *,
    batch_size: int = 1,
    threads: int = 1,
    device: str | torch.device = "cpu",
    **options: Any,
) -> Latency:
    """Latency of an image classifier on ``batch_size`` random ``3 x resolution x resolution`` images."""
    check_measure_settings(batch_size, threads)
    device = torch.device(device)
    images = torch.randn(batch_size, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    return measure(module.to(device), images.to(device), threads=threads, **options)
