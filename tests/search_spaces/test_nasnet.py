"""NASNet: the published counts, the reference macro layout, the cell graph, aux head, drop-path."""

import networkx as nx
import numpy as np
import pytest
import torch

import nas
import nas.space
from nas.ops import DropPath
from nas.plotting import cell_graph
from search_spaces.nasnet import NASNET_A_NORMAL, NASNET_A_REDUCTION, NASNET_OPS

SPACE = nas.space.get("nasnet")


@pytest.mark.parametrize(
    "preset,classes,params,tolerance,macs,macs_tolerance,resolution",
    [
        ("nasnet-a-large", 1000, 88_753_150, 0.01, 23_783e6, 0.02, 331),  # timm nasnetalarge; paper 23.8B
        ("nasnet-a-mobile", 1000, 5_289_978, 0.01, 564e6, 0.03, 224),  # paper 5.3M / 564M
        ("nasnet-a-cifar", 10, 3.3e6, 0.05, None, None, 32),  # paper 3.3M
    ],
)
def test_published_counts(preset, classes, params, tolerance, macs, macs_tolerance, resolution):
    summary = nas.summarize(preset, num_classes=classes)
    assert summary["resolution"] == resolution
    assert abs(summary["params"] - params) <= tolerance * params
    if macs is not None:
        assert abs(summary["macs"] - macs) <= macs_tolerance * macs


def test_reference_counts_exactly():
    """Our cells are the TF reference's, so the Cadene/timm ports' counts come out exactly."""
    assert nas.summarize("nasnet-a-large")["params"] == 88_753_150
    assert nas.summarize("nasnet-a-mobile")["params"] == 5_289_978


def test_fifty_decisions_of_the_paper():
    decisions = SPACE.decisions()
    assert len(decisions) == 2 * 5 * 5
    ops = [d for d in decisions if d.name.endswith(("op_a", "op_b"))]
    assert all(d.choices == NASNET_OPS for d in ops) and len(NASNET_OPS) == 13
    assert SPACE.decisions()[0].choices == (0, 1)  # block 0 reads h_i or h_{i-1}
    assert [d.choices for d in decisions if d.name == "normal.block4.input_a"] == [(0, 1, 2, 3, 4, 5)]
    assert all(d.choices == ("add", "concat") for d in decisions if d.name.endswith("combine"))


def test_decoded_cells_concatenate_their_unused_blocks():
    rng = np.random.default_rng(3)
    for _ in range(20):
        genotype = SPACE.decode(nas.space.sample_choices(SPACE.decisions(), rng))
        for cell in (genotype.normal, genotype.reduction):
            read = {i for b in cell.blocks for i in (b.input_a, b.input_b)}
            assert set(cell.concat) == {2 + k for k in range(5)} - read
            assert 6 in cell.concat  # the last block is never read by another block


def test_macro_layout_of_the_reference():
    large = SPACE.lower(nas.presets()["nasnet-a-large"])
    kinds = ["R" if c.reduction else "N" for c in large.cells]
    assert "".join(kinds) == "RR" + "N" * 6 + "R" + "N" * 6 + "R" + "N" * 6  # 2 stem cells, 3 stacks of N=6
    assert [c.filters for c in large.cells[:3]] == [42, 84, 168]
    assert large.cells[-1].filters == 672 and large.out_channels == 4032
    # skip_reduction_layer_input: the cell after a reduction reads the cell *before* the reduction's input
    first_after = kinds.index("R", 2) + 1
    assert large.cells[first_after].inputs[1].state == first_after - 2
    cifar = SPACE.lower(nas.presets()["nasnet-a-cifar"], num_classes=10)
    # the first cell has no h_{i-1}: it reuses its raw input (the stem's output, state 0)
    assert cifar.stem[0].out_channels == 96 and [x.state for x in cifar.cells[0].inputs] == [0, 0]
    assert cifar.cells[0].inputs[1].preprocess is None
    assert [c.output_size for c in cifar.cells][-1] == 8 and cifar.out_channels == 768


def test_aux_head_and_forward_with_aux():
    model = nas.materialize(
        "nasnet-a-cifar", num_classes=10, num_cells=1, penultimate_filters=96, aux_head=True
    ).train()
    logits, aux = model.forward_with_aux(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux.shape == (2, 10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.eval().forward_with_aux(torch.randn(1, 3, 32, 32))[1] is None
    without = nas.summarize("nasnet-a-cifar", num_classes=10)["params"]
    with_aux = sum(p.numel() for p in nas.materialize("nasnet-a-cifar", num_classes=10, aux_head=True).parameters())
    assert with_aux > without
    with pytest.raises(ValueError, match="aux_head"):
        SPACE.lower(nas.presets()["nasnet-a-cifar"], resolution=8, aux_head=True)


def test_scheduled_drop_path_rates_grow_with_depth():
    ir = SPACE.lower(nas.presets()["nasnet-a-cifar"], num_classes=10)
    rates = [cell.drop_path for cell in ir.cells]
    total = 3 * 6 + 2
    assert rates == pytest.approx([(i + 1) / total * 0.4 for i in range(total)])
    model = nas.compile(ir)
    layers = [m for m in model.modules() if isinstance(m, DropPath)]
    assert layers and max(m.drop_prob for m in layers) == pytest.approx(0.4)
    # NASNet-A Mobile trains without drop-path: no DropPath layers at all
    assert not any(isinstance(m, DropPath) for m in nas.materialize("nasnet-a-mobile").modules())


def test_cell_graph():
    graph = cell_graph(NASNET_A_NORMAL.graph())
    assert isinstance(graph, nx.DiGraph) and nx.is_directed_acyclic_graph(graph)
    assert set(graph.predecessors("out")) == {"h_{i-1}", "b0", "b1", "b2", "b3", "b4"}
    assert graph.edges["h_i", "b4"]["op"] == "sep_conv_3x3 + identity"
    reduction = cell_graph(NASNET_A_REDUCTION.graph())
    assert set(reduction.predecessors("out")) == {"b1", "b2", "b3", "b4"}
    assert reduction.edges["b1", "b3"]["op"] == "identity"


def test_concat_combine_doubles_width():
    choices = SPACE.encode(nas.presets()["nasnet-a-cifar"])
    choices["normal.block0.combine"] = "concat"
    genotype = SPACE.decode(choices)
    ir = SPACE.lower(genotype, num_classes=10, num_cells=1, penultimate_filters=48)
    normal = next(c for c in ir.cells if not c.reduction)
    assert normal.state_channels()[2] == 2 * normal.filters
    model = nas.compile(ir)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
