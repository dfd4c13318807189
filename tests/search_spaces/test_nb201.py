"""The ``nb201`` space: the benchmark's notation, its isomorphism classes, its network, and its strings as specs."""

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

import nas
from nas import registry
from nas.cell_ops import ResNetBasicBlock, Zero
from nas.cli.app import main
from nas.cost import build_on_meta, count_params
from nas.space import Canonical, Describable, Notated, canonical_key, sample_choices
from search_spaces.nb201 import OPS, Nb201Genotype, Nb201Space, canonical

SPACE = Nb201Space()
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"

# Rows of NAS-Bench-201's CIFAR-10 table (index: arch, isomorphism_class), as in
# ../shared/benchmarks/nb201/nb201-cifar10.csv (its README gives the provenance).
TABLE = {
    0: (
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
        "(0)@avg_pool_3x3+(0)@avg_pool_3x3+(0)@nor_conv_1x1+(0)@nor_conv_1x1",
    ),
    1: (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
        "((0)@nor_conv_3x3)@avg_pool_3x3+(0)@nor_conv_3x3+((0)@nor_conv_3x3)@nor_conv_3x3+0",
    ),
    3: (
        "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|",
        "#+#+#+0",
    ),
    4: (
        "|skip_connect~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|skip_connect~1|nor_conv_1x1~2|",
        "((0)@nor_conv_1x1+0)@nor_conv_1x1+0+0",
    ),
    55: (
        "|skip_connect~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|skip_connect~1|none~2|",
        "#+#+0",
    ),
    1817: (
        "|skip_connect~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|skip_connect~1|nor_conv_1x1~2|",
        "((0)@nor_conv_1x1+0)@nor_conv_1x1+0+0",
    ),
    6111: (BEST, "(((0)@nor_conv_3x3)@nor_conv_3x3+(0)@nor_conv_3x3)@nor_conv_1x1+((0)@nor_conv_3x3)@nor_conv_3x3+0"),
    11472: (
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
        "#+#+((0)@nor_conv_3x3)@nor_conv_3x3+0",
    ),
}
# NASLib's parameter counts in millions (10 classes), as in ../shared/benchmarks/nb201/zero-cost-cifar10-naslib.csv.
NASLIB_PARAMS = {
    "|avg_pool_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|skip_connect~0|avg_pool_3x3~1|avg_pool_3x3~2|": 0.073306,
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|": 0.241306,
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|": 1.531546,
    "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|": 0.858426,
    "|skip_connect~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|": 0.344346,
    "|nor_conv_1x1~0|+|none~0|nor_conv_1x1~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|": 0.643386,
}


def random_genotypes(n: int, seed: int = 0) -> list[Nb201Genotype]:
    rng = np.random.default_rng(seed)
    return [SPACE.decode(sample_choices(SPACE.decisions(), rng)) for _ in range(n)]


def every_genotype() -> list[Nb201Genotype]:
    return [Nb201Genotype(e[:1], e[1:3], e[3:]) for e in itertools.product(OPS, repeat=6)]


# ----------------------------------------------------------------------------------------- decisions


def test_six_decisions_of_the_benchmarks_five_ops_and_the_protocols():
    assert [d.name for d in SPACE.decisions()] == [
        "node1.from_node0",
        "node2.from_node0",
        "node2.from_node1",
        "node3.from_node0",
        "node3.from_node1",
        "node3.from_node2",
    ]
    assert all(
        d.choices == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3") for d in SPACE.decisions()
    )
    assert isinstance(SPACE, Notated) and isinstance(SPACE, Canonical) and isinstance(SPACE, Describable)
    assert registry.spaces.get("nb201").name == "nb201"
    assert SPACE.to_string(SPACE.presets()["nb201-best"]) == BEST == SPACE.describe(SPACE.presets()["nb201-best"])
    assert len(set(every_genotype())) == 15_625


# ------------------------------------------------------------------------------------------ notation


def test_string_round_trip():
    for genotype in random_genotypes(200) + list(SPACE.presets().values()):
        text = SPACE.to_string(genotype)
        assert SPACE.from_string(text) == genotype
        assert SPACE.to_string(SPACE.from_string(text)) == text
        node_strings = text.split("+")
        assert [len(node.strip("|").split("|")) for node in node_strings] == [1, 2, 3]
    for arch, _ in TABLE.values():
        assert SPACE.to_string(SPACE.from_string(arch)) == arch
    assert SPACE.from_string(f"  {BEST}\n") == SPACE.from_string(BEST)  # a file's line


@pytest.mark.parametrize(
    "text,message",
    [
        ("", r"expected 3 nodes joined by '\+'"),
        ("nb201-best", r"expected 3 nodes joined by '\+'.*got 1"),
        (BEST + "+|none~0|none~1|none~2|none~3|", r"expected 3 nodes .*got 4"),
        (BEST.replace("|+|", "+"), r"node 1: expected '\|op~0\|...\|'"),
        (
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
            r"node 2: expected 2 edge",
        ),
        (BEST.replace("|nor_conv_1x1~2|", "|nor_conv_1x1~2|none~3|"), r"node 3: expected 3 edge"),
        (
            BEST.replace("nor_conv_1x1~2", "nor_conv_1x1~1"),
            r"node 3: edge 2 must read node 2 \('op~2'\), got 'nor_conv_1x1~1'",
        ),
        (BEST.replace("nor_conv_1x1~2", "nor_conv_1x1"), r"node 3: edge 2 must read node 2"),
        (
            BEST.replace("nor_conv_1x1~2", "nor_conv1x1~2"),
            r"node 3, edge from node 2: 'nor_conv1x1' is not an op; valid",
        ),
        (BEST.replace("nor_conv_3x3~0|+|nor", "sep_conv_3x3~0|+|nor", 1), r"node 1, edge from node 0: 'sep_conv_3x3'"),
        (BEST.replace("~0|", "~00|", 1), r"node 1: edge 0 must read node 0"),
        ("|" * 5000, r"5000 characters, longer than any"),
        (12, r"expected an architecture string, got int"),
        (None, r"expected an architecture string, got NoneType"),
    ],
)
def test_malformed_strings_are_refused_saying_why(text, message):
    with pytest.raises(ValueError, match=message):
        SPACE.from_string(text)


# ------------------------------------------------------------------------------------ canonical form


def test_canonical_form_is_the_tables_isomorphism_class():
    for arch, isomorphism_class in TABLE.values():
        assert SPACE.canonical(SPACE.from_string(arch)) == isomorphism_class
        assert canonical_key(SPACE, SPACE.from_string(arch)) == isomorphism_class


def test_the_space_has_the_published_6466_classes():
    """arXiv 2001.00326 §2.1: 15,625 cells, 6,466 of them unique up to isomorphism."""
    assert len({canonical(genotype) for genotype in every_genotype()}) == 6_466


def test_a_cut_off_node_and_what_reads_it_do_not_matter():
    """Node 1 with a ``none`` input computes nothing: the edges that read it are dead (25 cells, one class)."""
    classes = {
        canonical(Nb201Genotype(("none",), ("nor_conv_3x3", a), ("avg_pool_3x3", b, "nor_conv_1x1")))
        for a in OPS
        for b in OPS
    }
    assert len(classes) == 1
    # Node 2 that no edge reads into the output (its edge to node 3 is none): its two edges are dead.
    node3 = ("nor_conv_3x3", "skip_connect", "none")
    assert len({canonical(Nb201Genotype(("nor_conv_1x1",), (a, b), node3)) for a in OPS for b in OPS}) == 1


def test_the_order_of_summed_inputs_and_identity_edges_do_not_matter():
    # Table rows 4 and 1817: node 2 = conv(x) + x, whether the conv reads x directly or through node 1 = x.
    assert SPACE.canonical(SPACE.from_string(TABLE[4][0])) == SPACE.canonical(SPACE.from_string(TABLE[1817][0]))
    # Node 3's summands from the input and from node 1 (the input through an identity) swapped.
    node1, node2 = ("skip_connect",), ("nor_conv_1x1", "none")
    a = Nb201Genotype(node1, node2, ("nor_conv_3x3", "avg_pool_3x3", "nor_conv_1x1"))
    b = Nb201Genotype(node1, node2, ("avg_pool_3x3", "nor_conv_3x3", "nor_conv_1x1"))
    assert canonical(a) == canonical(b) == "(#+(0)@nor_conv_1x1)@nor_conv_1x1+(0)@avg_pool_3x3+(0)@nor_conv_3x3"
    assert canonical(a) != canonical(Nb201Genotype(("nor_conv_1x1",), node2, b.node3))  # node 1 no identity now


def test_different_computations_are_different_classes():
    best, nine_nine_thirty = (
        SPACE.from_string(BEST),
        SPACE.from_string(BEST.replace("nor_conv_1x1~2", "nor_conv_3x3~2")),
    )
    assert canonical(best) != canonical(nine_nine_thirty)
    # Every op of the output edge from the input gives another function (none: the summand is gone).
    base = ("nor_conv_3x3",), ("nor_conv_3x3", "nor_conv_1x1")
    assert len({canonical(Nb201Genotype(*base, (op, "nor_conv_3x3", "avg_pool_3x3"))) for op in OPS}) == 5
    # A zero summand is kept, as the benchmark does: rows 55 ('#+#+0') and 3 ('#+#+#+0') are two classes.
    assert SPACE.canonical(SPACE.from_string(TABLE[55][0])) != SPACE.canonical(SPACE.from_string(TABLE[3][0]))


# ------------------------------------------------------------------------------------------- network


def reference_params(genotype: Nb201Genotype, C: int = 16, N: int = 5, classes: int = 10) -> int:
    """The benchmark network's parameters from its layer shapes, written out (AutoDL-Projects ``TinyNetwork``)."""
    per_edge = {"nor_conv_3x3": lambda c: 9 * c * c + 2 * c, "nor_conv_1x1": lambda c: c * c + 2 * c}
    total = 27 * C + 2 * C  # stem conv 3x3 from RGB, BN
    for width in (C, 2 * C, 4 * C):
        total += N * sum(per_edge[op](width) for op in genotype.edges if op in per_edge)
    for half, width in ((C, 2 * C), (2 * C, 4 * C)):  # residual blocks: conv_a, conv_b (3x3, BN), 1x1 shortcut
        total += (9 * half * width + 2 * width) + (9 * width * width + 2 * width) + half * width
    return total + 2 * 4 * C + 4 * C * classes + classes  # lastact BN, linear classifier


def test_parameter_counts_equal_the_reference_and_naslib():
    def counted(genotype: Nb201Genotype) -> int:  # the compiled network, shapes only (meta device)
        return count_params(build_on_meta(lambda: nas.compile(SPACE.lower(genotype, num_classes=10))))

    for text, millions in NASLIB_PARAMS.items():
        genotype = SPACE.from_string(text)
        assert counted(genotype) == reference_params(genotype) == round(millions * 1e6)
    best = SPACE.presets()["nb201-best"]
    assert counted(best) == reference_params(best) == 1_073_466


def test_module_structure_is_the_benchmarks():
    model = nas.materialize("nb201-best", num_classes=10, C=16, N=5)
    stem = model.stem[0]
    assert isinstance(stem, nn.Conv2d) and stem.bias is None
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.padding) == (3, 16, (3, 3), (1, 1))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.eps == 1e-5 and bn.momentum == 0.1 and bn.affine and bn.track_running_stats for bn in bns)
    assert len(model.cells) == 17
    assert isinstance(model.cells[5].ops[0], ResNetBasicBlock) and isinstance(model.cells[11].ops[0], ResNetBasicBlock)
    block = model.cells[5].ops[0]
    assert [type(m) for m in block.shortcut] == [nn.AvgPool2d, nn.Conv2d] and block.shortcut[1].bias is None
    assert block.conv_a[1].stride == (2, 2) and block.conv_b[1].stride == (1, 1)
    cell = model.cells[
        6
    ]  # 32 channels: 1<-0 conv3x3, 2<-0 conv3x3, 2<-1 conv3x3, 3<-0 skip, 3<-1 conv3x3, 3<-2 conv1x1
    assert [type(op).__name__ for op in cell.ops] == ["ReluConvBn"] * 3 + ["Identity", "ReluConvBn", "ReluConvBn"]
    relu, conv, bn = cell.ops[5]
    assert isinstance(relu, nn.ReLU) and isinstance(conv, nn.Conv2d) and conv.bias is None
    assert (conv.kernel_size, conv.in_channels, conv.out_channels) == ((1, 1), 32, 32)
    assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == 32
    assert [type(m) for m in model.head] == [nn.BatchNorm2d, nn.ReLU] and model.classifier.in_features == 64
    pooled = nas.materialize("|avg_pool_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|avg_pool_3x3~2|", num_classes=10)
    pool = pooled.cells[0].ops[0].pool
    assert isinstance(pool, nn.AvgPool2d) and (pool.kernel_size, pool.stride, pool.padding) == (3, 1, 1)
    assert not pool.count_include_pad
    assert count_params(pooled.cells[0]) == 0 and isinstance(pooled.cells[0].ops[1], Zero)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def relu_conv_bn(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out))


class RefBlock(nn.Module):
    """The benchmark's ``ResNetBasicblock`` at stride 2, written out from its description."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a, self.conv_b = relu_conv_bn(c_in, c_out, 3, 2), relu_conv_bn(c_out, c_out, 3)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class RefCell(nn.Module):
    """The benchmark's ``InferCell``: node j sums op(node i) over i < j; ``none`` is the input times 0."""

    def __init__(self, genotype: Nb201Genotype, c: int) -> None:
        super().__init__()
        make = {
            "none": nn.Identity,  # multiplied by 0 in forward
            "skip_connect": nn.Identity,
            "nor_conv_1x1": lambda: relu_conv_bn(c, c, 1),
            "nor_conv_3x3": lambda: relu_conv_bn(c, c, 3),
            "avg_pool_3x3": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
        }
        self.edges = genotype.edges
        self.layers = nn.ModuleList(make[op]() for op in self.edges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes, edge = [x], 0
        for j in (1, 2, 3):
            total = torch.zeros(())
            for i in range(j):
                out = self.layers[edge](nodes[i])
                total = total + (out * 0.0 if self.edges[edge] == "none" else out)
                edge += 1
            nodes.append(total)
        return nodes[-1]


class RefNet(nn.Module):
    """The benchmark's network written out from its description (arXiv 2001.00326 §2.1, ``TinyNetwork``)."""

    def __init__(self, genotype: Nb201Genotype, C: int, N: int, classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        widths = [C] * N + [2 * C] + [2 * C] * N + [4 * C] + [4 * C] * N
        reductions = [False] * N + [True] + [False] * N + [True] + [False] * N
        self.cells, previous = nn.ModuleList(), C
        for width, reduction in zip(widths, reductions):
            self.cells.append(RefBlock(previous, width) if reduction else RefCell(genotype, width))
            previous = width
        self.lastact = nn.Sequential(nn.BatchNorm2d(previous), nn.ReLU())
        self.classifier = nn.Linear(previous, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.lastact(x), 1), 1))


@pytest.mark.parametrize("text", [BEST, TABLE[0][0], TABLE[3][0], TABLE[11472][0]])
def test_same_outputs_as_the_reference_network_with_the_same_weights(text):
    genotype = SPACE.from_string(text)
    torch.manual_seed(0)
    ours = nas.materialize(genotype, num_classes=5, C=4, N=1, resolution=16)
    for bn in (m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)):  # statistics that are not the identity
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0), bn.weight.data.uniform_(0.5, 1.5)
    reference = RefNet(genotype, 4, 1, 5)
    theirs = reference.state_dict()
    assert [tuple(v.shape) for v in ours.state_dict().values()] == [tuple(v.shape) for v in theirs.values()]
    reference.load_state_dict(dict(zip(theirs, ours.state_dict().values())))
    x = torch.randn(3, 3, 16, 16)
    for mode in ("eval", "train"):
        getattr(ours, mode)(), getattr(reference, mode)()
        torch.testing.assert_close(ours(x), reference(x))


def test_proxy_network_compiles_trains_and_all_none_cells_keep_their_shape():
    assert dict(SPACE.proxy_reduction) == {"C": 8, "N": 1, "resolution": 16}
    for text in (BEST, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"):
        ir = SPACE.lower(SPACE.from_string(text), num_classes=3, **SPACE.proxy_reduction)
        model = nas.compile(ir, seed=0).train()
        logits = model(torch.randn(2, 3, 16, 16))
        assert logits.shape == (2, 3) and torch.isfinite(logits).all()
        logits.sum().backward()
        assert all(p.grad is not None for p in model.parameters())
    cell = model.cells[0]
    out = cell(torch.randn(2, 8, 16, 16))
    assert out.shape == (2, 8, 16, 16) and not out.any()  # every edge none: zeros of the node's shape
    with pytest.raises(ValueError, match=r"^C: must be in \[1, 256\], got 0"):
        SPACE.lower(SPACE.from_string(BEST), C=0)
    with pytest.raises(ValueError, match=r"^N: must be in \[1, 16\], got 100"):
        SPACE.lower(SPACE.from_string(BEST), N=100)


# ---------------------------------------------------------------------------- strings as genotype files


def test_a_string_file_and_the_string_are_specs_in_python(tmp_path):
    path = tmp_path / "best.txt"
    path.write_text(BEST + "\n")
    genotype = SPACE.presets()["nb201-best"]
    assert nas.load_genotype(path) == nas.load_genotype(str(path)) == nas.load_genotype(BEST) == genotype
    assert nas.resolve(BEST).space.name == "nb201" and nas.resolve(str(path)).genotype == genotype
    json_file = tmp_path / "best.json"
    json_file.write_text(json.dumps(nas.resolve(BEST).to_json()))
    assert nas.load_genotype(json_file) == genotype
    bad = tmp_path / "bad.txt"
    bad.write_text(BEST.replace("nor_conv_1x1~2", "conv_1x1~2"))
    with pytest.raises(ValueError, match=r"bad.txt: neither genotype JSON nor an architecture string \(nb201: node 3"):
        nas.load_genotype(bad)
    with pytest.raises(ValueError, match=r"no such file"):
        nas.load_genotype(str(tmp_path / "absent.txt"))


def test_a_string_two_spaces_read_is_refused():
    class Twin(Nb201Space):
        name = "nb201-twin"

    registry.spaces.register("nb201-twin", Twin())
    try:
        with pytest.raises(ValueError, match=r"an architecture string of spaces 'nb201' and 'nb201-twin' alike"):
            nas.load_genotype(BEST)
    finally:
        registry.spaces.unregister("nb201-twin")


def test_cli_show_and_materialize_a_string_file(tmp_path, capsys):
    path = tmp_path / "best.txt"
    path.write_text(BEST + "\n")
    assert main(["show", str(path), "--json", "--num-classes", "10"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["space"] == "nb201" and summary["params"] == 1_073_466
    assert main(["show", TABLE[11472][0], "--json", "--num-classes", "10"]) == 0  # the string itself
    assert json.loads(capsys.readouterr().out)["params"] == reference_params(SPACE.from_string(TABLE[11472][0]))
    out = tmp_path / "best.pt"
    assert main(["materialize", str(path), "--out", str(out), "--num-classes", "10"]) == 0
    assert count_params(nas.load_model(out)) == 1_073_466
    bad = tmp_path / "bad.txt"
    bad.write_text(BEST.replace("~2|", "~1|"))
    assert main(["show", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "node 3: edge 2 must read node 2" in err[0]
