"""How a network splits into the lookup table's parts (``evaluators.latency_table``), by its IR's ``kind``.

A part is an IR record, which is its own key: every ``BlockSpec`` of a ``ChainNet`` (stem and head
included) and the classifier at its input size; for a ``CellNet`` the stem, each live placed
``CellSpec`` (which states it reads left out of its key) and the head with the classifier. Each part
also says how to build it alone (the ``alone`` method) and where it runs in the compiled network
(the ``network`` method's hooks).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from nas.cell_ir import CellNet, CellSpec, Network
from nas.compile import Cell, build_blocks, build_classifier, chain_blocks
from nas.ir import BlockSpec, ChainNet, IRKind
from nas.ops import build_op

NORM = {"bn_eps": 1e-5, "bn_momentum": 0.1}  # BatchNorm in eval mode costs the same whatever its constants
Images = Callable[[int, int], torch.Tensor]  # (channels, size) -> a batch of inputs


def _key(kind: str, record: Mapping[str, Any]) -> str:
    return json.dumps({"kind": kind, **record}, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Part:
    """One table entry of a network: its path in the IR, its key, how to build it alone, and where it runs
    in the compiled network (``locate(network)``; None: the end of the forward, after every located part)."""

    path: str
    key: str
    build: Callable[[], tuple[nn.Module, list[torch.Tensor]]]
    locate: Callable[[nn.Module], nn.Module] | None


class _Pooled(nn.Module):
    """Global average pool, flatten, classifier: the end of a ``ChainModule``."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.pool, self.classifier = nn.AdaptiveAvgPool2d(1), classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(x), 1))


def _chain_parts(images: Images, ir: ChainNet) -> list[Part]:
    parts = []
    for index, (path, block) in enumerate(ir.all_blocks()):
        record = {
            "op": block.op,
            "in_channels": block.in_channels,
            "out_channels": block.out_channels,
            "stride": block.stride,
            "input_size": block.input_size,
            "options": block.options,
        }

        def build(block: BlockSpec = block) -> tuple[nn.Module, list[torch.Tensor]]:
            module = build_op(block.op, block.in_channels, block.out_channels, block.stride, block.op_options(), **NORM)
            return module, [images(block.in_channels, block.input_size)]

        def locate(network: nn.Module, index: int = index) -> nn.Module:
            return chain_blocks(network, ir)[index][1]  # type: ignore[arg-type]

        parts.append(Part(path, _key("block", record), build, locate))
    last = ir.all_blocks()[-1][1]
    classifier = replace(ir.classifier, dropout=0.0)
    record = {**asdict(classifier), "input_size": last.output_size}
    parts.append(
        Part(
            "classifier",
            _key("classifier", record),
            lambda: (_Pooled(build_classifier(classifier)), [images(classifier.in_features, last.output_size)]),
            None,
        )
    )
    return parts


def _cell_parts(images: Images, ir: CellNet) -> list[Part]:
    live = ir.live_states()  # a cell nothing reads is not built (``CellModule``), so it costs nothing
    norm = {"bn_eps": ir.bn_eps, "bn_momentum": ir.bn_momentum}
    stem_record = {"blocks": [asdict(block) for block in ir.stem]}
    parts = [
        Part(
            "stem",
            _key("cell_stem", stem_record),
            lambda: (build_blocks("stem", ir.stem, norm), [images(3, ir.resolution)]),
            lambda network: network.stem,
        )
    ]
    for i, cell in enumerate(ir.cells):
        if i + 1 not in live:
            continue
        # Eval mode: drop-path costs nothing; which states the cell reads changes nothing it runs.
        cell = replace(cell, drop_path=0.0, inputs=tuple(replace(x, state=0) for x in cell.inputs))

        def build(cell: CellSpec = cell) -> tuple[nn.Module, list[torch.Tensor]]:
            inputs = [images(cell_input.channels, cell_input.size) for cell_input in cell.inputs]
            return Cell(cell, ir.bn_eps, ir.bn_momentum), inputs

        parts.append(Part(f"cells[{i}]", _key("cell", asdict(cell)), build, lambda network, i=i: network.cells[i]))
    channels, size = ir.cells[-1].out_channels, ir.cells[-1].output_size
    classifier = replace(ir.classifier, dropout=0.0)
    record = {"head": [asdict(block) for block in ir.head], "classifier": asdict(classifier), "input_size": size}

    def build_head() -> tuple[nn.Module, list[torch.Tensor]]:
        head = nn.Sequential(build_blocks("head", ir.head, norm), _Pooled(build_classifier(classifier)))
        return head, [images(channels, size)]

    parts.append(Part("classifier", _key("cell_classifier", record), build_head, None))
    return parts


# How each kind of IR (``ir.kind``) is split into table entries.
_PARTS: dict[IRKind, Any] = {"chain": _chain_parts, "cell": _cell_parts}


def split(ir: Network, images: Images) -> list[Part]:
    """``ir``'s parts in the order the network runs them, the classifier last (``TypeError`` for another kind)."""
    splitter = _PARTS.get(getattr(ir, "kind", None))  # type: ignore[arg-type]
    if splitter is None:
        raise TypeError(f"predict() takes an IR of kind {sorted(_PARTS)} (ChainNet, CellNet), got {type(ir).__name__}")
    return splitter(images, ir)  # type: ignore[no-any-return]
