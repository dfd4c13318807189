"""Malformed genotypes from the command line: absurd sizes, non-finite numbers, huge or deeply nested
files and loosely typed envelopes are each refused with one ``nas: error:`` line naming the field,
exit code 2, no traceback, and before any model is built.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
from dataclasses import replace

import pytest

import nas
import nas.api
from nas.cli.app import main
from search_spaces import efficientnet, mobilenetv3, nasnet
from search_spaces.nasnet import CellBlock, CellTopology


def _document(preset: str) -> dict:
    return copy.deepcopy(nas.resolve(preset).to_json())


def _edited(preset: str, edit) -> str:
    document = _document(preset)
    edit(document["genotype"])
    return json.dumps(document)  # float("nan") / float("inf") are written as NaN / Infinity


def _extra_blocks(count: int):
    def edit(genotype: dict) -> None:
        genotype["normal"]["blocks"] += [dict(genotype["normal"]["blocks"][0])] * count

    return edit


def _mbv3_blocks(count: int):
    def edit(genotype: dict) -> None:
        genotype["blocks"] = [genotype["blocks"][1]] * count

    return edit


def _deep(levels: int) -> str:
    return '{"space": "nasnet", "version": 1, "genotype": ' + "[" * levels + "]" * levels + "}"


def _envelope(**changes) -> str:
    document = _document("efficientnet-b0")
    document.update(changes)
    return json.dumps(document)


# (id, the file's text, what the one error line must contain)
CASES = [
    # Sizes: every field has a documented range (the spaces' BOUNDS).
    (
        "nasnet num_cells",
        _edited("nasnet-a-cifar", lambda g: g.update(num_cells=100000)),
        "genotype.num_cells: must be in [1, 12], got 100000",
    ),
    (
        "nasnet penultimate_filters",
        _edited("nasnet-a-large", lambda g: g.update(penultimate_filters=999999984)),
        "genotype.penultimate_filters: must be a multiple of 24 in [24, 24576], got 999999984",
    ),
    (
        "nasnet imagenet stem too narrow",
        _edited("nasnet-a-mobile", lambda g: g.update(penultimate_filters=48)),
        "genotype.penultimate_filters: the imagenet stem needs at least 96, got 48",
    ),
    (
        "nasnet blocks per cell",
        _edited("nasnet-a-cifar", _extra_blocks(4)),
        "genotype.normal.blocks: a cell holds [1, 8] blocks, got 9",
    ),
    (
        "nasnet resolution",
        _edited("nasnet-a-mobile", lambda g: g.update(resolution=10**6)),
        "genotype.resolution: must be in [8, 1024], got 1000000",
    ),
    (
        "nasnet stem_multiplier",
        _edited("nasnet-a-large", lambda g: g.update(stem_multiplier=100.0)),
        "genotype.stem_multiplier: must be in [0.125, 8], got 100.0",
    ),
    (
        "nasnet bn_eps",
        _edited("nasnet-a-large", lambda g: g.update(bn_eps=0.0)),
        "genotype.bn_eps: must be in (0, 1], got 0.0",
    ),
    (
        "mobilenetv3 10000 blocks",
        _edited("mobilenetv3-large", _mbv3_blocks(10_000)),
        "genotype.blocks: at most 1024 items, got 10000",
    ),
    (
        "mobilenetv3 65 blocks",
        _edited("mobilenetv3-large", _mbv3_blocks(65)),
        "genotype.blocks: a genotype holds [1, 64] blocks, got 65",
    ),
    (
        "mobilenetv3 expand_channels",
        _edited("mobilenetv3-large", lambda g: g["blocks"][3].update(expand_channels=10**9)),
        "genotype.blocks[3].expand_channels: must be in [1, 8192], got 1000000000",
    ),
    (
        "mobilenetv3 head_channels",
        _edited("mobilenetv3-small", lambda g: g.update(head_channels=0)),
        "genotype.head_channels: must be in [1, 8192], got 0",
    ),
    (
        "mobilenetv3 resolution",
        _edited("mobilenetv3-large", lambda g: g.update(resolution=10**6)),
        "genotype.resolution: must be in [8, 1024], got 1000000",
    ),
    (
        "efficientnet width",
        _edited("efficientnet-b0", lambda g: g.update(width=100.0)),
        "genotype.width: must be in (0, 5], got 100.0",
    ),
    (
        "efficientnet depth",
        _edited("efficientnet-b7", lambda g: g.update(depth=50.0)),
        "genotype.depth: must be in (0, 8], got 50.0",
    ),
    (
        "efficientnet resolution",
        _edited("efficientnet-b7", lambda g: g.update(resolution=2048)),
        "genotype.resolution: must be in [8, 1024], got 2048",
    ),
    # Non-finite numbers, which Python's json accepts.
    (
        "Infinity",
        _edited("nasnet-a-mobile", lambda g: g.update(stem_multiplier=math.inf)),
        "genotype.stem_multiplier: expected a finite number, got inf",
    ),
    (
        "NaN",
        _edited("nasnet-a-cifar", lambda g: g.update(dropout=math.nan)),
        "genotype.dropout: expected a finite number, got nan",
    ),
    (
        "-Infinity",
        _edited("efficientnet-b0", lambda g: g.update(width=-math.inf)),
        "genotype.width: expected a finite number, got -inf",
    ),
    (
        "NaN bn_momentum",
        _edited("mobilenetv3-large", lambda g: g.update(bn_momentum=math.nan)),
        "genotype.bn_momentum: expected a finite number, got nan",
    ),
    (
        "1e999",
        _edited("efficientnet-b3", lambda g: g.update(dropout=1.0)).replace('"dropout": 1.0', '"dropout": 1e999'),
        "genotype.dropout: expected a finite number, got inf",
    ),
    (
        "integer too large for a float",
        _edited("efficientnet-b0", lambda g: g.update(depth=10**400)),
        "genotype.depth: expected a finite number, got an integer of 1329 bits",
    ),
    # The envelope: strict types.
    ("version true", _envelope(version=True), "version: expected the integer 1, got True"),
    ("version 1.0", _envelope(version=1.0), "version: expected the integer 1, got 1.0"),
    # The file: size and nesting.
    ("nested 100000 deep", _deep(100_000), "nested deeper than 64 levels"),
    ("nested 100 deep", _deep(100), "nested deeper than 64 levels"),
    ("larger than 4 MiB", _envelope() + " " * (4 * 2**20), "larger than 4 MiB"),
    ("integer of 5000 digits", _envelope().replace('"version": 1', '"version": 1' + "0" * 5000), "malformed JSON"),
]
FILE_CASES = {"nested 100000 deep", "nested 100 deep", "larger than 4 MiB", "integer of 5000 digits"}


@pytest.fixture
def nothing_built(monkeypatch):
    """Building any module, even on the meta device, fails the test: refusals come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built for a genotype that should have been refused")

    # The package attribute first: reading it resolves the real function, which the undo restores.
    monkeypatch.setattr(nas, "compile", refuse)
    monkeypatch.setattr(importlib.import_module("nas.compile"), "compile", refuse)  # what every builder imports


def _one_error_line(capsys, code: int) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), captured.err
    return lines[0]


@pytest.mark.parametrize("text,needle", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_refused_before_anything_is_built(text, needle, tmp_path, capsys, nothing_built, request):
    path = tmp_path / "genotype.json"
    path.write_text(text)
    with pytest.raises(ValueError) as raised:
        nas.load_genotype(path)
    assert needle in str(raised.value) and "\n" not in str(raised.value)
    for command in (["show", str(path)], ["materialize", str(path), "--out", str(tmp_path / "x.pt")]):
        line = _one_error_line(capsys, main(command))
        assert needle in line
        if request.node.callspec.id in FILE_CASES:
            assert str(path) in line  # a file-level problem names the file
    assert not (tmp_path / "x.pt").exists()


def test_a_deeply_nested_dict_is_refused_without_recursion_error():
    document = _document("nasnet-a-cifar")
    node = document["genotype"]
    for _ in range(10_000):
        node["normal"] = {}
        node = node["normal"]
    with pytest.raises(ValueError, match="nested deeper than 64 levels"):
        nas.load_genotype(document)


def test_a_network_too_large_to_build_is_refused_after_counting_on_meta(tmp_path, capsys, monkeypatch):
    # Every field in range, but N x F^2 is not: 36x the weights of NASNet-A Large.
    path = tmp_path / "wide.json"
    path.write_text(_edited("nasnet-a-large", lambda g: g.update(penultimate_filters=24 * 1024)))
    assert nas.load_genotype(path).penultimate_filters == 24 * 1024

    def refuse(*args, **kwargs):
        raise AssertionError("materialize allocated a network over the limit")

    monkeypatch.setattr(nas, "compile", refuse)
    line = _one_error_line(capsys, main(["materialize", str(path), "--out", str(tmp_path / "x.pt")]))
    assert "nas: error: genotype: the network has" in line and f"{nas.api.MAX_PARAMETERS:,}" in line
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize(
    "space,preset,overrides,message",
    [
        ("nasnet", "nasnet-a-cifar", {"num_cells": 100000}, r"^num_cells: must be in \[1, 12\], got 100000$"),
        (
            "nasnet",
            "nasnet-a-cifar",
            {"penultimate_filters": 999999984},
            r"^penultimate_filters: must be a multiple of 24",
        ),
        ("nasnet", "nasnet-a-cifar", {"resolution": 10**6}, r"^resolution: must be in \[8, 1024\]"),
        ("nasnet", "nasnet-a-cifar", {"num_cells": 2.5}, r"^num_cells: expected an integer"),
        ("mobilenetv3", "mobilenetv3-large", {"resolution": 10**6}, r"^resolution: must be in \[8, 1024\]"),
        ("mobilenetv3", "mobilenetv3-large", {"width_multiplier": 1e6}, r"^width_multiplier: must be in \(0, 4\]"),
        ("mobilenetv3", "mobilenetv3-large", {"width_multiplier": math.nan}, r"^width_multiplier: must be a finite"),
        ("efficientnet", "efficientnet-b0", {"resolution": 0}, r"^resolution: must be in \[8, 1024\], got 0"),
        ("efficientnet", "efficientnet-b0", {"width_multiplier": math.inf}, r"^width_multiplier: must be a finite"),
        (
            "efficientnet",
            "efficientnet-b7",
            {"width_multiplier": 4.0},
            r"^width_multiplier: width 2.0 x 4.0 = 8.0 is outside",
        ),
    ],
)
def test_lower_overrides_are_bounded(space, preset, overrides, message):
    """The proxy evaluator passes user-given values to ``lower``; they get the genotype's ranges."""
    with pytest.raises(ValueError, match=message):
        nas.space.get(space).lower(nas.presets()[preset], **overrides)


def test_mobilenetv3_width_multiplier_that_scales_a_width_out_of_range():
    wide = replace(nas.presets()["mobilenetv3-large"], head_channels=8192)
    with pytest.raises(
        ValueError, match=r"^width_multiplier: 2.0 scales a width out of range \(head_channels: must be in"
    ):
        nas.space.get("mobilenetv3").lower(wide, width_multiplier=2.0)


@pytest.mark.parametrize("name", sorted(nas.presets()))
def test_every_preset_is_in_range_and_round_trips(name, tmp_path):
    genotype = nas.presets()[name]
    path = tmp_path / "preset.json"
    path.write_text(json.dumps(nas.genotype_json(nas.space_of(genotype).name, genotype)))
    assert nas.load_genotype(path) == genotype
    assert nas.load_genotype(json.loads(path.read_text())) == genotype


def test_the_limits_themselves_are_accepted():
    assert (
        nas.load_genotype(
            json.loads(
                _edited(
                    "nasnet-a-cifar",
                    lambda g: g.update(num_cells=12, penultimate_filters=24 * 1024, stem_multiplier=8, resolution=1024),
                )
            )
        ).num_cells
        == 12
    )
    assert len(nas.load_genotype(json.loads(_edited("nasnet-a-cifar", _extra_blocks(3)))).normal.blocks) == 8
    assert len(nas.load_genotype(json.loads(_edited("mobilenetv3-large", _mbv3_blocks(64)))).blocks) == 64
    assert (
        nas.load_genotype(
            json.loads(_edited("efficientnet-b0", lambda g: g.update(width=5, depth=8, resolution=8)))
        ).width
        == 5.0
    )


def test_the_documented_worst_cases_fit_in_max_parameters():
    """The numbers in the docstrings of ``BOUNDS`` and ``MAX_PARAMETERS``: what the limit lets through."""
    heavy = CellTopology(
        tuple(
            CellBlock(k + 1 if k else 1, "conv_1x7_7x1", k + 1 if k else 0, "conv_1x7_7x1", "concat")
            for k in range(nasnet.NUM_BLOCKS)
        ),
        tuple(range(nasnet.NUM_BLOCKS + 2)),
    )
    large_heavy = replace(nas.presets()["nasnet-a-large"], normal=heavy, reduction=heavy)
    corner = efficientnet.EfficientNetGenotype(
        width=efficientnet.BOUNDS["width"].high, depth=efficientnet.BOUNDS["depth"].high
    )
    for genotype in (large_heavy, corner):
        nas.api.check_size(nas.space_of(genotype).lower(genotype))  # about 0.9e9 weights each
    widest = mobilenetv3.MobileNetV3Genotype((mobilenetv3.MobileNetV3Block(7, 8192, 8192, True, "relu", 1),) * 64)
    with pytest.raises(ValueError, match=r"^genotype: the network has [\d,]+ parameters, more than"):
        nas.api.check_size(nas.space.get("mobilenetv3").lower(widest))


def test_a_study_name_longer_than_optunas_column_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["search", "--dataset", "synthetic", "--budget", "1", "--out", str(out), "--study-name", "s" * 513])
    line = _one_error_line(capsys, code)
    assert "study_name: 1 to 512 characters (Optuna's column), got 513" in line and not out.exists()
