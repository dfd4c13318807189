"""``compile(ir) -> nn.Module``: one walk through the op registry.

The returned modules are ordinary PyTorch: they hold no search state, take an image batch and
return logits. ``init_weights`` is a separate, seedable function.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.ir import BlockSpec, CellNet, CellSpec, ChainNet, ClassifierSpec
from nas.ops import DropPath, FactorizedReduce, ReluConvBn, activation, build_op


def build_classifier(spec: ClassifierSpec) -> nn.Sequential:
    """Global-pooled features -> ``[Linear -> activation] -> Dropout -> Linear`` (``ClassifierSpec``)."""
    if spec.hidden_features:
        return nn.Sequential(
            nn.Linear(spec.in_features, spec.hidden_features),
            activation(spec.hidden_activation),
            nn.Dropout(spec.dropout, inplace=True),
            nn.Linear(spec.hidden_features, spec.num_classes),
        )
    return nn.Sequential(nn.Dropout(spec.dropout, inplace=True), nn.Linear(spec.in_features, spec.num_classes))


class ChainModule(nn.Module):
    """stem -> stages -> head -> global average pool -> classifier.

    A one-block stem or head is the block's module itself (state-dict keys ``stem.0...``, as
    before stems could have several blocks); several are an ``nn.Sequential``; no head is identity.
    """

    def __init__(self, ir: ChainNet) -> None:
        super().__init__()
        norm = {"bn_eps": ir.bn_eps, "bn_momentum": ir.bn_momentum}

        def build(path: str, block: BlockSpec) -> nn.Module:
            return _build_block(path, block.op, block.in_channels, block.out_channels, block.stride,
                                block.op_options(), norm)

        def part(name: str, blocks: tuple[BlockSpec, ...]) -> nn.Module:
            modules = [build(f"{name}[{i}]", block) for i, block in enumerate(blocks)]
            return modules[0] if len(modules) == 1 else nn.Sequential(*modules) if modules else nn.Identity()

        self.stem = part("stem", ir.stem)
        self.stages = nn.Sequential(*(nn.Sequential(*(build(f"stages[{i}][{j}]", b) for j, b in enumerate(stage)))
                                      for i, stage in enumerate(ir.stages)))
        self.head = part("head", ir.head)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = build_classifier(ir.classifier)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.forward_features(x)), 1))


class Cell(nn.Module):
    """One NASNet cell, compiled from a placed ``CellSpec`` (TF ``NasNetABaseCell``)."""

    def __init__(self, spec: CellSpec, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        norm = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        filters = spec.filters
        read = spec.topology.read_states()
        # An input no block reads and the output skips gets no layers (they would never train).
        self.uses_input, self.uses_prev = 0 in read, 1 in read
        self.preprocess = ReluConvBn(spec.in_channels, filters, 1, ((1, 1),), **norm) if self.uses_input else None
        if not self.uses_prev:
            self.preprocess_prev = None
        elif spec.prev_index is None:
            self.preprocess_prev: nn.Module | None = nn.Identity()  # reference: reuse the raw input
        elif spec.prev_size != spec.input_size:
            self.preprocess_prev = FactorizedReduce(spec.prev_channels, filters, 2, True, **norm)
        elif spec.prev_channels != filters:
            self.preprocess_prev = ReluConvBn(spec.prev_channels, filters, 1, ((1, 1),), **norm)
        else:
            self.preprocess_prev = nn.Identity()
        channels = spec.state_channels()
        stride = 2 if spec.reduction else 1
        self.inputs = [(b.input_a, b.input_b) for b in spec.topology.blocks]
        self.combines = [b.combine for b in spec.topology.blocks]
        self.ops = nn.ModuleList()
        for block in spec.topology.blocks:
            for index, op in ((block.input_a, block.op_a), (block.input_b, block.op_b)):
                # Only the cell inputs are strided (TF ``is_from_original_input``).
                layer = _build_block(f"cell op {op!r}", op, channels[index], filters, stride if index < 2 else 1,
                                     {}, norm)
                # Drop-path applies to every op but identity (TF ``_apply_conv_operation``).
                if op != "identity" and spec.drop_path > 0:
                    layer = nn.Sequential(layer, DropPath(spec.drop_path))
                self.ops.append(layer)
        self.concat = list(spec.topology.concat)
        self.match = nn.ModuleList()
        for index in self.concat:
            # Cell inputs that reach the output are matched in size and width (``_combine_unused_states``).
            if index < 2 and spec.reduction:
                self.match.append(FactorizedReduce(channels[index], filters, 2, False, **norm))
            elif index < 2 and channels[index] != filters:
                self.match.append(FactorizedReduce(channels[index], filters, 1, False, **norm))
            else:
                self.match.append(nn.Identity())

    def forward(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess(x) if self.preprocess is not None else None,
                  self.preprocess_prev(prev) if self.preprocess_prev is not None else None]
        for k, ((index_a, index_b), combine) in enumerate(zip(self.inputs, self.combines)):
            a = self.ops[2 * k](states[index_a])
            b = self.ops[2 * k + 1](states[index_b])
            states.append(a + b if combine == "add" else torch.cat([a, b], dim=1))
        return torch.cat([match(states[i]) for match, i in zip(self.match, self.concat)], dim=1)


class AuxHead(nn.Module):
    """Auxiliary classifier (TF ``_build_aux_head``): pool 5/3 -> 1x1 to 128 -> full conv to 768 -> FC."""

    def __init__(self, in_channels: int, input_size: int, num_classes: int, bn_eps: float,
                 bn_momentum: float) -> None:
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
    """A NASNet network: stem conv, cells, ReLU, global pool, dropout, linear (TF ``_build_nasnet_base``).

    ``forward`` returns logits. ``forward_with_aux`` also returns the auxiliary logits (``None``
    without an aux head or in eval mode), for training loops that weight the aux loss (0.4).
    """

    def __init__(self, ir: CellNet) -> None:
        super().__init__()
        stride, padding = (2, 0) if ir.stem == "imagenet" else (1, 1)
        self.stem = nn.Sequential(
            nn.Conv2d(3, ir.stem_channels, 3, stride, padding, bias=False),
            nn.BatchNorm2d(ir.stem_channels, eps=ir.bn_eps, momentum=ir.bn_momentum),
        )
        self.prev_indices = [spec.input_index if spec.prev_index is None else spec.prev_index for spec in ir.cells]
        live = _live_states(ir, self.prev_indices)
        # A cell whose output nothing downstream reads is not built: it could never train.
        self.cells = nn.ModuleList(Cell(spec, ir.bn_eps, ir.bn_momentum) if i + 1 in live else nn.Identity()
                                   for i, spec in enumerate(ir.cells))
        self.live = [i + 1 in live for i in range(len(ir.cells))]
        self.aux_head_after = ir.aux_head_after
        self.aux_head = None
        if ir.aux_head_after is not None:
            cell = ir.cells[ir.aux_head_after]
            self.aux_head = AuxHead(cell.out_channels, cell.output_size, ir.num_classes, ir.bn_eps, ir.bn_momentum)
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(ir.dropout)
        self.classifier = nn.Linear(ir.out_channels, ir.num_classes)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        states = [self.stem(x)]
        aux = None
        for i, (cell, prev) in enumerate(zip(self.cells, self.prev_indices)):
            states.append(cell(states[i], states[prev]) if self.live[i] else None)
            if i == self.aux_head_after and self.aux_head is not None and self.training:
                aux = self.aux_head(states[-1])
        out = torch.flatten(self.pool(self.relu(states[-1])), 1)
        return self.classifier(self.dropout(out)), aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]


def _live_states(ir: CellNet, prev_indices: list[int]) -> set[int]:
    """States (0 = stem, i + 1 = cell i) that the logits or the aux head depend on."""
    live = {len(ir.cells)}
    if ir.aux_head_after is not None:
        live.add(ir.aux_head_after + 1)
    for i in reversed(range(len(ir.cells))):
        if i + 1 not in live:
            continue
        read = ir.cells[i].topology.read_states()
        if 0 in read:
            live.add(i)
        if 1 in read:
            live.add(prev_indices[i])
    return live


def _build_block(path: str, op: str, in_channels: int, out_channels: int, stride: int,
                 options: dict[str, object], norm: dict[str, float]) -> nn.Module:
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


def compile(ir: ChainNet | CellNet, seed: int | None = None) -> nn.Module:  # noqa: A001
    """Build the PyTorch module for ``ir``, initialised by ``init_weights(module, seed)``."""
    if isinstance(ir, ChainNet):
        module: nn.Module = ChainModule(ir)
    elif isinstance(ir, CellNet):
        module = CellModule(ir)
    else:
        raise TypeError(f"compile() takes a ChainNet or CellNet, got {type(ir).__name__}")
    return init_weights(module, seed)
