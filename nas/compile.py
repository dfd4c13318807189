"""``compile(ir) -> nn.Module``: one walk through the op registry.

The returned modules are ordinary PyTorch: they hold no search state, take an image batch and
return logits. ``init_weights`` is a separate, seedable function.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import torch
from torch import nn

from nas.cell_ir import CellNet, CellSpec, Network
from nas.ir import BlockSpec, ChainNet, ClassifierSpec, IRKind
from nas.ops import CondensedLinear, DropPath, activation, build_op

# ``make(key, build)`` returns the module of one part of a network: ``build()`` by default; a weight bank
# (``nas.supernet``) returns the module it already holds for ``key`` instead, so that candidates share it.
# ``key`` is hashable and says everything that shapes the module: its place and its spec.
Make = Callable[[Hashable, Callable[[], nn.Module]], nn.Module]


def fresh(key: Hashable, build: Callable[[], nn.Module]) -> nn.Module:
    """The default ``Make``: a new module for every part."""
    return build()


def build_classifier(spec: ClassifierSpec) -> nn.Sequential:
    """Global-pooled features -> ``[Linear -> activation] -> Dropout -> Linear`` (``ClassifierSpec``)."""
    inputs = spec.hidden_features or spec.in_features
    last = (
        CondensedLinear(inputs, spec.num_classes, spec.kept_features)
        if spec.kept_features
        else nn.Linear(inputs, spec.num_classes)
    )
    if spec.hidden_features:
        return nn.Sequential(
            nn.Linear(spec.in_features, spec.hidden_features),
            activation(spec.hidden_activation),
            nn.Dropout(spec.dropout, inplace=True),
            last,
        )
    return nn.Sequential(nn.Dropout(spec.dropout, inplace=True), last)


class ChainModule(nn.Module):
    """stem -> stages -> head -> global average pool -> classifier (stem and head: ``build_blocks``)."""

    def __init__(self, ir: ChainNet, make: Make = fresh) -> None:
        super().__init__()
        norm = {"bn_eps": ir.bn_eps, "bn_momentum": ir.bn_momentum}
        self.stem = build_blocks("stem", ir.stem, norm, make)
        self.stages = nn.Sequential(
            *(
                nn.Sequential(
                    *(
                        make(
                            ("stage", i, j, b, *norm.values()),
                            functools.partial(_build_spec, f"stages[{i}][{j}]", b, norm),
                        )
                        for j, b in enumerate(stage)
                    )
                )
                for i, stage in enumerate(ir.stages)
            )
        )
        self.head = build_blocks("head", ir.head, norm, make)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = make(("classifier", ir.classifier), functools.partial(build_classifier, ir.classifier))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.forward_features(x)), 1))


def chain_blocks(module: ChainModule, ir: ChainNet) -> list[tuple[str, nn.Module]]:
    """(state-dict prefix, module) of every block of ``ir`` in ``module``, in the order ``ir.all_blocks()``
    lists them (``build_blocks``: a stem or head of one block is that block's module)."""
    names = {id(sub): name for name, sub in module.named_modules()}

    def members(part: nn.Module, count: int) -> list[nn.Module]:
        return [] if count == 0 else [part] if count == 1 else list(part.children())

    stages = [block for stage in module.stages.children() for block in stage.children()]
    parts = members(module.stem, len(ir.stem)) + stages + members(module.head, len(ir.head))
    return [(names[id(part)], part) for part in parts]


def preprocess_name(index: int) -> str:
    """The attribute of a cell's input ``index``'s preprocessing: NASNet's names for its two inputs (h_i, h_{i-1}),
    so that the state dicts of models saved before cells were general still load."""
    return ("preprocess", "preprocess_prev")[index] if index < 2 else f"preprocess_{index}"


class Cell(nn.Module):
    """One cell, compiled from a placed ``CellSpec``: any ``CellGraph`` (TF ``NasNetABaseCell`` for NASNet).

    ``forward`` takes the cell's input states in order. An input no edge reads and the output
    skips gets no layers (they would never train); ``ops`` holds one layer per edge, node by node.
    """

    def __init__(self, spec: CellSpec, bn_eps: float, bn_momentum: float, make: Make = fresh, place: int = 0) -> None:
        super().__init__()
        norm = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        graph, read = spec.graph, spec.graph.read_states()
        self.num_inputs = graph.num_inputs
        for index, cell_input in enumerate(spec.inputs):
            block = cell_input.preprocess
            layer = (
                None
                if index not in read
                else nn.Identity()
                if block is None
                else make(
                    ("cell", place, "input", index, block, bn_eps, bn_momentum),
                    functools.partial(_build_spec, f"inputs[{index}].preprocess", block, norm),
                )
            )
            setattr(self, preprocess_name(index), layer)
        channels = spec.state_channels()
        self.sources = [[edge.source for edge in node.inputs] for node in graph.nodes]
        self.combines = [node.combine for node in graph.nodes]
        self.ops = nn.ModuleList()
        for k, node in enumerate(graph.nodes):
            for j, edge in enumerate(node.inputs):
                shape = (channels[edge.source], spec.filters, spec.edge_stride(edge.source))
                # An edge's module is its op on its source state at its node (ENAS's sharing: not its slot).
                layer = make(
                    ("cell", place, "node", k, edge.source, edge.op, edge.options, *shape, bn_eps, bn_momentum),
                    functools.partial(
                        _build_block, f"graph.nodes[{k}].inputs[{j}].op", edge.op, *shape, edge.op_options(), norm
                    ),
                )
                # Drop-path applies to every op but identity (TF ``_apply_conv_operation``).
                if edge.op != "identity" and spec.drop_path > 0:
                    layer = nn.Sequential(layer, DropPath(spec.drop_path))
                self.ops.append(layer)
        self.output = list(graph.output)
        self.output_combine = graph.output_combine
        matches = spec.output_match or (None,) * len(self.output)
        self.match = nn.ModuleList(
            nn.Identity()
            if block is None
            else make(
                ("cell", place, "output", self.output[j], block, bn_eps, bn_momentum),
                functools.partial(_build_spec, f"output_match[{j}]", block, norm),
            )
            for j, block in enumerate(matches)
        )

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        preprocess = [getattr(self, preprocess_name(index)) for index in range(self.num_inputs)]
        states: list[torch.Tensor | None] = [
            layer(x) if layer is not None else None for layer, x in zip(preprocess, inputs)
        ]
        edge = 0
        for sources, combine in zip(self.sources, self.combines):
            results = [self.ops[edge + j](states[source]) for j, source in enumerate(sources)]
            edge += len(sources)
            states.append(functools.reduce(operator.add, results) if combine == "add" else torch.cat(results, dim=1))
        outputs = [match(states[index]) for match, index in zip(self.match, self.output)]
        return torch.cat(outputs, dim=1) if self.output_combine == "concat" else functools.reduce(operator.add, outputs)


class AuxHead(nn.Module):
    """Auxiliary classifier (TF ``_build_aux_head``): pool 5/3 -> 1x1 to 128 -> full conv to 768 -> FC."""

    def __init__(self, in_channels: int, input_size: int, num_classes: int, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        pooled = (input_size - 5) // 3 + 1
        self.features = nn.Sequential(
            nn.ReLU(),
            nn.AvgPool2d(5, stride=3),
            nn.Conv2d(in_channels, 128, 1, bias=False),
            nn.BatchNorm2d(128, eps=bn_eps, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, pooled, bias=False),
            nn.BatchNorm2d(768, eps=bn_eps, momentum=bn_momentum),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class CellModule(nn.Module):
    """A cell network: stem, cells, head, global pool, dropout, linear (TF ``_build_nasnet_base`` for NASNet).

    ``forward`` returns logits. ``forward_with_aux`` also returns the auxiliary logits (``None``
    without an aux head or in eval mode), for training loops that weight the aux loss (0.4).
    A cell whose output nothing downstream reads is not built (``live`` is False; it could never train).
    """

    def __init__(self, ir: CellNet, make: Make = fresh) -> None:
        super().__init__()
        norm = {"bn_eps": ir.bn_eps, "bn_momentum": ir.bn_momentum}
        self.stem = build_blocks("stem", ir.stem, norm, make)
        self.input_states = [[cell_input.state for cell_input in spec.inputs] for spec in ir.cells]
        live = ir.live_states()
        self.cells = nn.ModuleList(
            Cell(spec, ir.bn_eps, ir.bn_momentum, make, i) if i + 1 in live else nn.Identity()
            for i, spec in enumerate(ir.cells)
        )
        self.live = [i + 1 in live for i in range(len(ir.cells))]
        self.aux_head_after = ir.aux_head_after
        self.aux_head: nn.Module | None = None
        if ir.aux_head_after is not None:
            cell = ir.cells[ir.aux_head_after]
            shape = (cell.out_channels, cell.output_size, ir.num_classes, ir.bn_eps, ir.bn_momentum)
            self.aux_head = make(("aux", ir.aux_head_after, *shape), functools.partial(AuxHead, *shape))
        self.head = build_blocks("head", ir.head, norm, make)
        self.pool = nn.AdaptiveAvgPool2d(1)
        # Dropout and one linear layer as attributes of their own (state-dict key ``classifier.weight``).
        hidden = ir.classifier.hidden_features
        self.dropout = nn.Dropout(ir.classifier.dropout) if not hidden else nn.Identity()
        self.classifier = make(
            ("classifier", ir.classifier),
            functools.partial(build_classifier, ir.classifier)
            if hidden
            else functools.partial(nn.Linear, ir.classifier.in_features, ir.num_classes),
        )

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        states = [self.stem(x)]
        aux = None
        for i, (cell, sources) in enumerate(zip(self.cells, self.input_states)):
            states.append(cell(*(states[source] for source in sources)) if self.live[i] else None)
            if i == self.aux_head_after and self.aux_head is not None and self.training:
                aux = self.aux_head(states[-1])
        out = torch.flatten(self.pool(self.head(states[-1])), 1)
        return self.classifier(self.dropout(out)), aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]


def _build_spec(path: str, block: BlockSpec, norm: dict[str, float]) -> nn.Module:
    return _build_block(path, block.op, block.in_channels, block.out_channels, block.stride, block.op_options(), norm)


def build_blocks(name: str, blocks: tuple[BlockSpec, ...], norm: dict[str, float], make: Make = fresh) -> nn.Module:
    """The module of a stem or head: one block is the block's module itself (state-dict keys ``stem.0...``, as
    before stems could have several blocks), several an ``nn.Sequential``, none identity."""
    modules = [
        make((name, i, block, *norm.values()), functools.partial(_build_spec, f"{name}[{i}]", block, norm))
        for i, block in enumerate(blocks)
    ]
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules) if modules else nn.Identity()


def _build_block(
    path: str,
    op: str,
    in_channels: int,
    out_channels: int,
    stride: int,
    options: Mapping[str, object],
    norm: dict[str, float],
) -> nn.Module:
    """``build_op``, with the block's path in the error: op names are resolved here, at compile time."""
    try:
        return build_op(op, in_channels, out_channels, stride, options, **norm)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def init_weights(module: nn.Module, seed: int | None = None) -> nn.Module:
    """Kaiming-normal (fan-out) convs, unit BN, N(0, 0.01) linears, zero biases; seedable."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    for layer in module.modules():
        if any(p.is_meta for p in layer.parameters(recurse=False)):
            continue  # shapes only (cost counting): nothing to initialise
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.01, generator=generator)
            nn.init.zeros_(layer.bias)
    return module


# How each kind of IR (``ir.kind``) is built: the one place compile dispatches on it.
MODULES: dict[IRKind, Callable[[Any], nn.Module]] = {"chain": ChainModule, "cell": CellModule}


def compile(ir: Network, seed: int | None = None) -> nn.Module:
    """Build the PyTorch module for ``ir``, initialised by ``init_weights(module, seed)``."""
    build = MODULES.get(getattr(ir, "kind", None))  # type: ignore[arg-type]
    if build is None:
        raise TypeError(f"compile() takes an IR of kind {sorted(MODULES)} (ChainNet, CellNet), got {type(ir).__name__}")
    return init_weights(build(ir), seed)
