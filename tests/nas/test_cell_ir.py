"""The general cell IR (issue 22, item 5): NAS-Bench-201 and DARTS cells built by hand, and its validation.

NAS-Bench-201 (arXiv 2001.00326 §2.1): one cell input, nodes 1..3 each the sum of one edge from every
earlier node, the last node as output; stages of N cells joined by ResNet basic blocks of stride 2;
stem conv3x3 + BN; head BN + ReLU, global pool, linear. DARTS (arXiv 1806.09055 §2.1, ``model.py``):
two inputs (the outputs of cells k-2 and k-1, prepared by ReLU-conv1x1-BN, or FactorizedReduce when cell
k-2's output is twice the size), four nodes of two edges, output the concat of the four nodes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas.cell_ir import CellEdge, CellGraph, CellInput, CellNet, CellNode, CellSpec
from nas.cell_ops import FactorizedReduce
from nas.compile import Cell, CellModule
from nas.compile import compile as compile_ir
from nas.cost import build_on_meta, count_macs, count_params
from nas.ir import BlockSpec, ChainNet, ClassifierSpec, conv_output_size
from nas.ops import build_op
from nas.plotting import cell_graph, cell_types, plot_architecture

# |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|skip_connect~2|
NB201_ROWS = (("conv_3x3",), ("conv_3x3", "avg_pool_3x3"), ("conv_1x1", "conv_3x3", "identity"))
RESIDUAL = CellGraph(1, (CellNode((CellEdge(0, "resnet_basic_block"),)),), (1,), "add")


def nb201_graph(rows: tuple[tuple[str, ...], ...] = NB201_ROWS) -> CellGraph:
    """Node k (state k + 1) sums one edge from every earlier state; the output is the last node."""
    nodes = tuple(CellNode(tuple(CellEdge(source, op) for source, op in enumerate(row))) for row in rows)
    return CellGraph(1, nodes, (len(rows),), "add")


def nb201_network(channels: int = 8, cells_per_stage: int = 2, resolution: int = 16, num_classes: int = 10) -> CellNet:
    stem = BlockSpec("conv_bn", 3, channels, 1, resolution, {"kernel_size": 3})
    cells, state, size, width = [], 0, resolution, channels
    for stage in range(3):
        if stage:  # a ResNet basic block, stride 2, doubling the width: a one-edge reduction cell
            cells.append(CellSpec(RESIDUAL, True, 2 * width, (CellInput(state, width, size),)))
            state, width, size = state + 1, 2 * width, conv_output_size(size, 2)
        for _ in range(cells_per_stage):
            cells.append(CellSpec(nb201_graph(), False, width, (CellInput(state, width, size),)))
            state += 1
    head = (BlockSpec("bn_act", width, width, 1, size),)
    return CellNet(stem, tuple(cells), head, ClassifierSpec(width, num_classes), resolution, bn_eps=1e-5)


def nb201_parameters(channels: int = 8, cells_per_stage: int = 2, num_classes: int = 10) -> int:
    """Counted by hand: a ReLU-conv-BN k x k from c to c has k*k*c*c weights and 2c BN parameters."""

    def cell(c: int) -> int:  # three conv_3x3 edges, one conv_1x1, a pool and an identity (no weights)
        return 3 * (9 * c * c + 2 * c) + (c * c + 2 * c)

    def residual(c: int) -> int:  # conv_a 3x3 c -> 2c, conv_b 3x3 2c -> 2c (each with BN), shortcut 1x1 c -> 2c
        return (9 * c * 2 * c + 4 * c) + (9 * 4 * c * c + 4 * c) + c * 2 * c

    c = channels
    stem = 27 * c + 2 * c
    body = cells_per_stage * (cell(c) + cell(2 * c) + cell(4 * c)) + residual(c) + residual(2 * c)
    head = 2 * 4 * c  # BN
    return stem + body + head + 4 * c * num_classes + num_classes


def test_nas_bench_201_network_has_the_hand_counted_parameters() -> None:
    ir = nb201_network()
    assert [cell.out_channels for cell in ir.cells] == [8, 8, 16, 16, 16, 32, 32, 32]
    assert [cell.output_size for cell in ir.cells] == [16, 16, 8, 8, 8, 4, 4, 4]
    assert nb201_parameters() == 94_898
    assert count_params(build_on_meta(lambda: compile_ir(ir))) == 94_898
    assert count_macs(build_on_meta(lambda: compile_ir(ir)), 16) > 0


def test_nas_bench_201_cell_sums_an_edge_from_every_earlier_node() -> None:
    spec = nb201_network().cells[0]
    cell = Cell(spec, 1e-5, 0.1).eval()
    assert len(cell.ops) == 6 and cell.preprocess is not None  # the input is read, as it is (no preprocessing)
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        s1 = cell.ops[0](x)
        s2 = cell.ops[1](x) + cell.ops[2](s1)
        s3 = cell.ops[3](x) + cell.ops[4](s1) + cell.ops[5](s2)
        assert torch.allclose(cell(x), s3)


def test_nas_bench_201_network_trains_a_step() -> None:
    torch.manual_seed(0)
    model = compile_ir(nb201_network(), seed=0).train()
    assert isinstance(model, CellModule) and all(model.live)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def darts_graph(edges: list[tuple[str, int]]) -> CellGraph:
    """DARTS's genotype encoding: two (op, input) pairs per node; states 0, 1 are cells k-2, k-1."""
    nodes = tuple(
        CellNode((CellEdge(a, op_a), CellEdge(b, op_b))) for (op_a, a), (op_b, b) in zip(edges[::2], edges[1::2])
    )
    return CellGraph(2, nodes, (2, 3, 4, 5), "concat")


# DARTS_V2 (DARTS ``genotypes.py``), in this engine's op names.
DARTS_NORMAL = darts_graph(
    [
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("identity", 0),
        ("identity", 0),
        ("dil_conv_3x3", 2),
    ]
)
DARTS_REDUCE = darts_graph(
    [
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("identity", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("identity", 2),
        ("identity", 2),
        ("max_pool_3x3", 1),
    ]
)


def darts_network(channels: int = 4, layers: int = 5, resolution: int = 16) -> CellNet:
    """DARTS ``NetworkCIFAR``: stem 3 x C, reductions at 1/3 and 2/3 of the layers, filters doubled there."""
    stem = BlockSpec("conv_bn", 3, 3 * channels, 1, resolution, {"kernel_size": 3})
    shapes, cells, width = [(3 * channels, resolution)], [], channels
    for k in range(layers):
        reduction = k in (layers // 3, 2 * layers // 3)
        width *= 2 if reduction else 1
        states = (max(k - 1, 0), k)  # the first cell reads the stem twice
        (c0, s0), (c1, s1) = shapes[states[0]], shapes[states[1]]
        reduce_prev = s0 != s1  # DARTS ``reduction_prev``: cell k-2's output is twice the size
        prep0 = BlockSpec("factorized_reduce" if reduce_prev else "conv_1x1", c0, width, 2 if reduce_prev else 1, s0)
        prep1 = BlockSpec("conv_1x1", c1, width, 1, s1)
        inputs = (CellInput(states[0], c0, s0, prep0), CellInput(states[1], c1, s1, prep1))
        cells.append(CellSpec(DARTS_REDUCE if reduction else DARTS_NORMAL, reduction, width, inputs, drop_path=0.2))
        shapes.append((cells[-1].out_channels, cells[-1].output_size))
    return CellNet((stem,), tuple(cells), (), ClassifierSpec(shapes[-1][0], 10), resolution)


def test_darts_cell_network_compiles_and_trains() -> None:
    ir = darts_network()
    assert [cell.out_channels for cell in ir.cells] == [16, 32, 32, 64, 64]  # 4 nodes x filters
    assert [cell.output_size for cell in ir.cells] == [16, 8, 8, 4, 4]
    model = compile_ir(ir, seed=0).train()
    assert isinstance(model.cells[2].preprocess, FactorizedReduce)  # after the first reduction
    logits = model(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 10)
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_pictures_and_parts_of_a_cell_network(tmp_path: Path) -> None:
    ir = nb201_network()
    assert [kind for kind, _ in cell_types(ir)] == ["normal", "reduction"]
    graph = cell_graph(ir.cells[0].graph)
    assert set(graph.predecessors("b2")) == {"h_i", "b0", "b1"} and set(graph.predecessors("out")) == {"b2"}
    assert graph.edges["b2", "out"]["op"] == "add"
    plot_architecture(ir, tmp_path / "nb201.png")
    assert (tmp_path / "nb201.png").stat().st_size > 0
    labels = [part.label for part in ir.parts()]
    assert labels[0] == "stem" and labels[-2:] == ["head", "classifier"] and len(labels) == 3 + len(ir.cells)


def test_every_ir_says_its_kind_and_compile_refuses_anything_else() -> None:
    assert nb201_network().kind == "cell" and ChainNet.kind == "chain"
    with pytest.raises(TypeError, match="compile"):
        compile_ir(object())  # type: ignore[arg-type]


def test_an_unknown_edge_op_is_named_by_its_path_when_compiled() -> None:
    graph = CellGraph(1, (CellNode((CellEdge(0, "conv_3x3"), CellEdge(0, "sep_conv_9x9"))),), (1,), "add")
    with pytest.raises(ValueError, match=r"^graph.nodes\[0\].inputs\[1\].op: unknown op 'sep_conv_9x9'"):
        Cell(CellSpec(graph, False, 8, (_input(),)), 1e-5, 0.1)


def _edge(source: int = 0) -> CellNode:
    return CellNode((CellEdge(source, "conv_3x3"),))


def _input(state: int = 0, channels: int = 8, size: int = 8, preprocess: BlockSpec | None = None) -> CellInput:
    return CellInput(state, channels, size, preprocess)


def _net(**changes: object) -> CellNet:
    parts: dict[str, object] = {
        "stem": (BlockSpec("conv_bn", 3, 8, 1, 8, {"kernel_size": 3}),),
        "cells": (CellSpec(nb201_graph(), False, 8, (_input(),)), CellSpec(RESIDUAL, True, 16, (_input(1),))),
        "head": (BlockSpec("bn_act", 16, 16, 1, 4),),
        "classifier": ClassifierSpec(16, 10),
        "resolution": 8,
    }
    return CellNet(**{**parts, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: CellEdge(-1, "conv_3x3"), r"^source: must be a non-negative int"),
        (lambda: CellEdge(0, ""), r"^op: must be a non-empty op name"),
        (lambda: CellEdge(0, "conv_3x3", {"not a name": 1}), r"^options: 'not a name' is not a valid option name"),
        (lambda: CellNode(()), r"^inputs: a node needs at least one edge"),
        (lambda: CellNode((CellEdge(0, "conv_3x3"),), "multiply"), r"^combine: 'multiply' is not valid"),
        (lambda: CellGraph(0, (_edge(),), (1,)), r"^num_inputs: must be a positive int"),
        (
            lambda: CellGraph(2, (_edge(), _edge(3)), (2,)),
            r"^nodes\[1\].inputs\[0\].source: state 3 out of range; "
            r"node 1 may read states 0..2",
        ),
        (lambda: CellGraph(1, (_edge(),), (2,)), r"^output\[0\]: 2 out of range; states 0..1"),
        (lambda: CellGraph(1, (_edge(), _edge(1)), (1, 1)), r"^output: duplicate state indices"),
        (lambda: CellGraph(1, (_edge(),), (1,), "max"), r"^output_combine: 'max' is not valid"),
        (lambda: CellInput(0, 8, 8, BlockSpec("conv_1x1", 4, 8, 1, 8)), r"^preprocess.in_channels: expected 8"),
        (lambda: CellSpec(nb201_graph(), False, 8, (_input(), _input())), r"^inputs: the graph takes 1 inputs, got 2"),
        (
            lambda: CellSpec(DARTS_NORMAL, False, 8, (_input(size=16), _input())),
            r"^inputs\[1\]: size 8 after preprocessing, expected 16",
        ),
        (
            lambda: CellSpec(CellGraph(1, (_edge(),), (0, 1)), True, 8, (_input(),)),
            r"^output_match\[0\]: state 0 has size 8, the cell's output 4; it needs a matching block",
        ),
        (
            lambda: CellSpec(CellGraph(1, (_edge(),), (0, 1)), False, 8, (_input(),), (None,)),
            r"^output_match: one entry per output state \(2\), got 1",
        ),
        (
            lambda: CellSpec(CellGraph(1, (_edge(),), (0, 1), "add"), False, 8, (_input(channels=4),)),
            r"^graph.output: states added into the output need one width, got \[4, 8\]",
        ),
        (
            lambda: _net(cells=(CellSpec(nb201_graph(), False, 8, (_input(1),)),)),
            r"^cells\[0\].inputs\[0\].state: 1 out "
            r"of range; cell 0 may read states 0..0",
        ),
        (
            lambda: _net(
                cells=(CellSpec(nb201_graph(), False, 8, (_input(),)), CellSpec(RESIDUAL, True, 16, (_input(0, 4),)))
            ),
            r"^cells\[1\].inputs\[0\].channels: expected 8 \(state 0\), got 4",
        ),
        (lambda: _net(head=(BlockSpec("bn_act", 8, 8, 1, 4),)), r"^head\[0\].in_channels: expected 16"),
        (lambda: _net(classifier=ClassifierSpec(8, 10)), r"^classifier.in_features: expected 16, got 8"),
        (lambda: _net(aux_head_after=2), r"^aux_head_after: 2 out of range; cells 0..1"),
        (
            lambda: _net(stem=(BlockSpec("conv_bn", 3, 8, 2, 8, {"padding": "valid"}),)),
            r"^options.kernel_size: a block",
        ),
    ],
)
def test_mistakes_name_the_field(build, match) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_a_valid_padding_block_is_sized_as_the_reference_stem() -> None:
    """NASNet's ImageNet stem: a 3x3 stride-2 VALID conv, 331 -> 165 and 224 -> 111 (TF ``conv0``)."""
    for resolution, size in ((331, 165), (224, 111)):
        block = BlockSpec("conv_bn", 3, 4, 2, resolution, {"kernel_size": 3, "padding": "valid"})
        module = build_op(block.op, 3, 4, 2, block.op_options())
        assert block.output_size == size == module(torch.zeros(1, 3, resolution, resolution)).shape[-1]
