"""Genotype JSON: round trips, and malformed input rejected with the bad field named."""

import copy
import json

import numpy as np
import pytest

import nas
import nas.space
from nas.space import sample_choices


@pytest.mark.parametrize("name", sorted(nas.presets()))
def test_every_preset_round_trips_through_json(name, tmp_path):
    genotype = nas.presets()[name]
    document = nas.resolve(name).to_json()
    assert set(document) == {"space", "version", "genotype"} and document["version"] == 1
    text = json.dumps(document)
    assert nas.load_genotype(json.loads(text)) == genotype
    path = tmp_path / "genotype.json"
    path.write_text(text)
    assert nas.load_genotype(path) == genotype
    assert nas.resolve(str(path)).genotype == genotype


@pytest.mark.parametrize("space_name", ["nasnet", "mobilenetv3", "efficientnet"])
def test_random_genotypes_round_trip(space_name):
    space = nas.space.get(space_name)
    rng = np.random.default_rng(0)
    for _ in range(20):
        genotype = space.decode(sample_choices(space.decisions(), rng))
        document = json.loads(json.dumps(nas.genotype_json(space.name, genotype)))
        assert nas.load_genotype(document) == genotype
        assert hash(genotype) == hash(nas.load_genotype(document))


def _document(preset):
    return copy.deepcopy(nas.resolve(preset).to_json())


def _mutated(preset, edit):
    document = _document(preset)
    edit(document["genotype"])
    return document


MALFORMED = [
    (
        "unknown op",
        "nasnet-a-cifar",
        lambda g: g["normal"]["blocks"][2].update(op_a="sep_conv_9x9"),
        r"genotype\.normal\.blocks\[2\]\.op_a: unknown op",
    ),
    ("wrong type", "nasnet-a-cifar", lambda g: g.update(num_cells="six"), r"genotype\.num_cells: expected an integer"),
    (
        "bool is not an int",
        "mobilenetv3-large",
        lambda g: g["blocks"][0].update(stride=True),
        r"genotype\.blocks\[0\]\.stride: expected an integer",
    ),
    ("missing field", "nasnet-a-cifar", lambda g: g.pop("reduction"), r"genotype\.reduction: missing field"),
    (
        "missing nested field",
        "mobilenetv3-small",
        lambda g: g["blocks"][3].pop("se"),
        r"genotype\.blocks\[3\]\.se: missing field",
    ),
    ("unknown field", "efficientnet-b0", lambda g: g.update(widht=1.0), r"genotype\.widht: unknown field"),
    (
        "input out of range",
        "nasnet-a-mobile",
        lambda g: g["reduction"]["blocks"][0].update(input_b=4),
        r"genotype\.reduction\.blocks\[0\]\.input_b: index 4 out of range",
    ),
    (
        "negative input",
        "nasnet-a-mobile",
        lambda g: g["normal"]["blocks"][1].update(input_a=-1),
        r"genotype\.normal\.blocks\[1\]\.input_a: must be a non-negative",
    ),
    (
        "negative channels",
        "mobilenetv3-large",
        lambda g: g["blocks"][4].update(out_channels=-40),
        r"genotype\.blocks\[4\]\.out_channels: must be in \[1, 8192\], got -40",
    ),
    (
        "bad literal",
        "mobilenetv3-large",
        lambda g: g["blocks"][0].update(activation="hs"),
        r"genotype\.blocks\[0\]\.activation: 'hs' is not valid",
    ),
    (
        "bad combine",
        "nasnet-a-cifar",
        lambda g: g["normal"]["blocks"][0].update(combine="mul"),
        r"genotype\.normal\.blocks\[0\]\.combine: 'mul' is not valid",
    ),
    (
        "concat out of range",
        "nasnet-a-cifar",
        lambda g: g["normal"].update(concat=[1, 9]),
        r"genotype\.normal\.concat\[1\]: index 9 out of range",
    ),
    (
        "list expected",
        "nasnet-a-cifar",
        lambda g: g["normal"].update(blocks="none"),
        r"genotype\.normal\.blocks: expected a list",
    ),
    ("bad width", "efficientnet-b0", lambda g: g.update(width=-1.0), r"genotype\.width: must be in"),
    (
        "F not a multiple of 24",
        "nasnet-a-cifar",
        lambda g: g.update(penultimate_filters=100),
        r"genotype\.penultimate_filters: must be a multiple of 24 in \[24, 24576\], got 100",
    ),
]


@pytest.mark.parametrize("label,preset,edit,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_genotype_names_the_field(label, preset, edit, message):
    with pytest.raises(ValueError, match=message):
        nas.load_genotype(_mutated(preset, edit))


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d.pop("space"), r"^space: missing field"),
        (lambda d: d.update(space="resnet"), r"^space: unknown search space 'resnet'"),
        (lambda d: d.update(version=7), r"^version: unsupported"),
        (lambda d: d.update(extra=1), r"^extra: unknown field"),
        (lambda d: d.update(genotype=[1, 2]), r"^genotype: expected an object"),
    ],
)
def test_malformed_envelope(edit, message):
    document = _document("efficientnet-b0")
    edit(document)
    with pytest.raises(ValueError, match=message):
        nas.load_genotype(document)


def test_input_is_not_mutated():
    document = _document("nasnet-a-cifar")
    before = copy.deepcopy(document)
    nas.load_genotype(document)
    assert document == before


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        nas.load_genotype(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="malformed JSON"):
        nas.load_genotype(bad)
