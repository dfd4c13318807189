"""Analytic cost of a compiled network: parameters, multiply-accumulates and memory access.

MACs are counted by ``torch.utils.flop_counter`` (convolutions and matrix products, i.e. conv
and linear layers) at batch 1 and divided by 2: the papers' "Mult-Adds"/"FLOPS" and
torchvision's "GFLOPS" are multiply-accumulates (paper-facts §6.8). The forward pass runs on
the ``meta`` device, so counting EfficientNet-B7 at 600 px takes milliseconds, not seconds.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers and are not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_macs(module: nn.Module, resolution: int, per_module: bool = False) -> int | tuple[int, dict[str, int]]:
    """Multiply-accumulates of one ``3 x resolution x resolution`` image through ``module``.

    The module is copied to the meta device (no memory, no arithmetic). With ``per_module`` also
    return the MACs of every submodule, keyed by its dotted name ('' = the whole network).
    """
    total, by_module, _ = _count(module, resolution, memory=False)
    return (total, by_module) if per_module else total


def count_cost(module: nn.Module, resolution: int) -> tuple[int, dict[str, int], int]:
    """MACs, MACs per submodule (as ``count_macs``) and memory access (``count_memory_access``), in one pass."""
    return _count(module, resolution, memory=True)


def _count(module: nn.Module, resolution: int, memory: bool) -> tuple[int, dict[str, int], int]:
    meta = module if _is_meta(module) else _to_meta(module)
    meta.eval()
    counter, access = FlopCounterMode(display=False), _MemoryAccess()
    image = torch.empty(1, 3, resolution, resolution, device="meta")
    with counter, torch.no_grad(), access if memory else contextlib.nullcontext():
        meta(image)
    prefix = type(meta).__name__
    by_module = {}
    for name, counts in counter.get_flop_counts().items():
        key = "" if name in ("Global", prefix) else name.removeprefix(prefix + ".")
        by_module[key] = sum(counts.values()) // 2
    return counter.get_total_flops() // 2, by_module, access.total


def _is_meta(module: nn.Module) -> bool:
    return all(p.is_meta for p in module.parameters())


def _to_meta(module: nn.Module) -> nn.Module:
    clone = copy.deepcopy(module) if not _is_meta(module) else module
    return clone.to("meta")


def build_on_meta(factory: Callable[[], nn.Module]) -> nn.Module:
    """Run ``factory`` with the meta device as default: shapes only, no storage or init cost."""
    with torch.device("meta"):
        return factory()


def count_memory_access(module: nn.Module, resolution: int) -> int:
    """Memory access cost (ShuffleNet V2 §2, "MAC"): tensor elements read and written by every kernel of
    one forward pass of a ``3 x resolution x resolution`` image, weights included, run unfused.

    For a 1x1 conv this is the paper's ``hw(c1 + c2) + c1 c2`` (G1, G2); element-wise layers (ReLU,
    additions, BatchNorm in eval mode, concatenation, channel shuffle's copy) add theirs (G4), which
    MACs leave out: that is why equal MACs do not mean equal speed. Views (reshape, transpose,
    slicing, chunking) move no data and count nothing. Counted on the meta device, like ``count_macs``.
    """
    return _count(module, resolution, memory=True)[2]


class _MemoryAccess(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's dispatch mode is untyped
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        returns, name = func._schema.returns, func.overloadpacket.__name__
        if name.startswith("empty") or name == "_unsafe_view":  # an allocation, or a view without alias info
            return out
        if not any(r.alias_info is not None and not r.alias_info.is_write for r in returns):  # not a view
            read = {key: value for key, value in (kwargs or {}).items() if key != "out"}  # ``out=`` is written
            inputs = [t for t in tree_flatten((args, read))[0] if isinstance(t, torch.Tensor)]
            outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            self.total += sum(t.numel() for t in inputs) + sum(t.numel() for t in outputs)
        return out
