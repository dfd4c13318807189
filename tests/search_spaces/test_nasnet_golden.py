"""NASNet lowers exactly as before the general cell IR (issue 22, item 5): golden state dicts, counts, outputs.

The numbers below were recorded with the two-input NASNet ``CellNet`` this IR replaced (commit 45862af),
for the three presets and for seeded and hand-made genotypes that reach every branch of the old lowering:
cell inputs in the concatenated output (matched with FactorizedReduce, stride 1 and 2), concat-combine
blocks, inputs no block reads, a cell nothing reads (not built), both stems, the skip-reduction-input
wiring of NASNet-A Large and the auxiliary head. ``state_dict`` keys with their shapes, in order, are
hashed (the order is also the order ``init_weights`` draws in, so equal outputs need it).

Regenerate (only if a change is meant to alter NASNet's networks): ``python tests/search_spaces/test_nasnet_golden.py``
prints the table.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

import nas
import nas.space
from nas.cost import build_on_meta
from search_spaces.nasnet import CellBlock, CellTopology

SPACE = nas.space.get("nasnet")
SMALL = {"num_classes": 10, "num_cells": 2, "penultimate_filters": 48, "resolution": 16}


def _sampled(seed: int) -> Any:
    return SPACE.decode(nas.space.sample_choices(SPACE.decisions(), np.random.default_rng(seed)))


def _inputs_in_output() -> Any:
    """Cell inputs in both cells' concatenated outputs, concat-combine blocks, an input of the normal cell unread."""
    normal = CellTopology(
        (
            CellBlock(1, "sep_conv_3x3", 1, "identity", "concat"),
            CellBlock(2, "avg_pool_3x3", 1, "conv_1x1"),
            CellBlock(3, "max_pool_3x3", 2, "dil_conv_3x3"),
        ),
        (0, 1, 4),
    )
    reduction = CellTopology(
        (CellBlock(0, "sep_conv_5x5", 1, "identity"), CellBlock(2, "conv_1x3_3x1", 0, "max_pool_5x5", "concat")),
        (0, 1, 3),
    )
    return replace(nas.presets()["nasnet-a-cifar"], normal=normal, reduction=reduction)


def cases() -> dict[str, tuple[Any, dict[str, Any]]]:
    """name -> (spec, lowering settings)."""
    sampled = {seed: _sampled(seed) for seed in (0, 11, 28)}
    return {
        "nasnet-a-cifar": ("nasnet-a-cifar", {"num_classes": 10}),
        "nasnet-a-mobile": ("nasnet-a-mobile", {}),
        "nasnet-a-large": ("nasnet-a-large", {}),
        "cifar-aux": ("nasnet-a-cifar", {"num_classes": 10, "aux_head": True}),
        "sampled-0": (sampled[0], SMALL),
        "sampled-11-unread-inputs": (sampled[11], SMALL),
        "sampled-28-dead-cell": (sampled[28], SMALL),
        "sampled-28-imagenet-skip": (
            replace(sampled[28], stem="imagenet", skip_reduction_layer_input=True, stem_multiplier=1.0),
            {**SMALL, "penultimate_filters": 96, "resolution": 64},
        ),
        "inputs-in-output": (_inputs_in_output(), SMALL),
        "inputs-in-output-imagenet": (
            replace(_inputs_in_output(), stem="imagenet"),
            {**SMALL, "penultimate_filters": 96, "resolution": 96, "aux_head": True},
        ),
    }


def fingerprint(spec: Any, lowering: dict[str, Any]) -> dict[str, Any]:
    ir = nas.lower(spec, **lowering)
    model = build_on_meta(lambda: nas.compile(ir))
    layout = [[key, list(tensor.shape)] for key, tensor in model.state_dict().items()]
    macro = {k: v for k, v in lowering.items() if k != "aux_head"}
    summary = nas.summarize(spec, **macro) if "aux_head" not in lowering else {}
    return {
        "keys": len(layout),
        "layout": hashlib.sha256(json.dumps(layout).encode()).hexdigest()[:16],
        "params": sum(t.numel() for t in model.parameters()),
        "macs": summary.get("macs"),
    }


# Outputs: eval mode, ``nas.compile(ir, seed=0)``, on ``torch.randn(2, 3, r, r)`` drawn after ``manual_seed(0)``.
OUTPUT_CASES = ("nasnet-a-cifar", "sampled-28-dead-cell", "inputs-in-output")


def output(name: str) -> list[list[float]]:
    spec, lowering = cases()[name]
    ir = nas.lower(spec, **lowering)
    model = nas.compile(ir, seed=0).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        return model(torch.randn(2, 3, ir.resolution, ir.resolution)).tolist()


GOLDEN: dict[str, dict[str, Any]] = {
    "nasnet-a-cifar": {"keys": 1668, "layout": "94a866aed6cc0f8b", "params": 3346538, "macs": 544333312},
    "nasnet-a-mobile": {"keys": 1318, "layout": "19eba918d17ff643", "params": 5289978, "macs": 563638816},
    "nasnet-a-large": {"keys": 1810, "layout": "938daa66cf3800bd", "params": 88753150, "macs": 23783414658},
    "cifar-aux": {"keys": 1682, "layout": "9486dc9b9469bce3", "params": 4978036, "macs": None},
    "sampled-0": {"keys": 492, "layout": "a93ec8f16da7b75a", "params": 12960, "macs": 459248},
    "sampled-11-unread-inputs": {"keys": 642, "layout": "f30194a02593c473", "params": 18860, "macs": 795248},
    "sampled-28-dead-cell": {"keys": 611, "layout": "05cc57b19661cd51", "params": 14952, "macs": 874304},
    "sampled-28-imagenet-skip": {"keys": 747, "layout": "18a4ab31f71f9391", "params": 45434, "macs": 1621520},
    "inputs-in-output": {"keys": 386, "layout": "9e2fc356a4d9d7c6", "params": 8212, "macs": 335856},
    "inputs-in-output-imagenet": {"keys": 496, "layout": "1e3e8253b1b2b9bd", "params": 142309, "macs": None},
}
GOLDEN_OUTPUTS: dict[str, list[list[float]]] = {
    "nasnet-a-cifar": [
        [
            3011.7294921875,
            -1904.041015625,
            3717.19189453125,
            -2027.08154296875,
            14420.78125,
            -3500.78515625,
            10192.302734375,
            -4970.6875,
            8523.41015625,
            2369.2275390625,
        ],
        [
            2645.21826171875,
            -1747.6474609375,
            3498.129638671875,
            -1681.263427734375,
            13808.1767578125,
            -3476.22705078125,
            9605.2685546875,
            -4735.69140625,
            8244.6064453125,
            2200.375732421875,
        ],
    ],
    "sampled-28-dead-cell": [
        [
            -0.05140522122383118,
            0.7936129570007324,
            0.6941876411437988,
            0.13827618956565857,
            0.7277407646179199,
            -0.13863179087638855,
            0.6915960311889648,
            -0.1824195384979248,
            -0.660207986831665,
            0.5124801397323608,
        ],
        [
            -0.026394575834274292,
            0.7099887132644653,
            0.6284258365631104,
            0.1308162808418274,
            0.6200118064880371,
            -0.09419804811477661,
            0.6251848936080933,
            -0.1760435551404953,
            -0.5947588682174683,
            0.4459573030471802,
        ],
    ],
    "inputs-in-output": [
        [
            2.0254642963409424,
            0.19691550731658936,
            -9.7058744430542,
            -4.578217029571533,
            0.18231415748596191,
            0.483966588973999,
            2.851973533630371,
            -6.404628753662109,
            2.737978935241699,
            1.2471890449523926,
        ],
        [
            1.3177483081817627,
            -0.2010561227798462,
            -7.6855788230896,
            -4.273517608642578,
            -0.46034765243530273,
            0.6455643177032471,
            2.1369333267211914,
            -5.445655345916748,
            2.0433146953582764,
            1.3851287364959717,
        ],
    ],
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_state_dict_and_counts_are_unchanged(name: str) -> None:
    spec, lowering = cases()[name]
    assert fingerprint(spec, lowering) == GOLDEN[name]


@pytest.mark.parametrize("name", sorted(GOLDEN_OUTPUTS))
def test_outputs_are_unchanged(name: str) -> None:
    assert torch.allclose(torch.tensor(output(name)), torch.tensor(GOLDEN_OUTPUTS[name]), rtol=1e-5, atol=1e-6)


# ``genotype_json`` of ``_inputs_in_output()``, written before the general cell IR: it must load unchanged.
GENOTYPE_FILE = """{"space": "nasnet", "version": 1, "genotype": {
 "normal": {"blocks": [
  {"input_a": 1, "op_a": "sep_conv_3x3", "input_b": 1, "op_b": "identity", "combine": "concat"},
  {"input_a": 2, "op_a": "avg_pool_3x3", "input_b": 1, "op_b": "conv_1x1", "combine": "add"},
  {"input_a": 3, "op_a": "max_pool_3x3", "input_b": 2, "op_b": "dil_conv_3x3", "combine": "add"}], "concat": [0, 1, 4]},
 "reduction": {"blocks": [
  {"input_a": 0, "op_a": "sep_conv_5x5", "input_b": 1, "op_b": "identity", "combine": "add"},
  {"input_a": 2, "op_a": "conv_1x3_3x1", "input_b": 0, "op_b": "max_pool_5x5", "combine": "concat"}],
  "concat": [0, 1, 3]},
 "num_cells": 6, "penultimate_filters": 768, "stem": "cifar", "stem_multiplier": 3.0, "resolution": 32, "dropout": 0.0,
 "drop_path_keep_prob": 0.6, "skip_reduction_layer_input": false, "bn_eps": 1e-05}}"""


def test_a_genotype_file_written_before_loads_unchanged() -> None:
    genotype = nas.load_genotype(json.loads(GENOTYPE_FILE))
    assert genotype == _inputs_in_output()
    assert json.loads(json.dumps(nas.resolve(genotype).to_json())) == json.loads(GENOTYPE_FILE)


def test_the_cases_reach_every_branch() -> None:
    """The hand-made and sampled genotypes really hold what the docstring says they test."""
    spec, lowering = cases()["sampled-28-dead-cell"]
    assert not all(build_on_meta(lambda: nas.compile(nas.lower(spec, **lowering))).live)
    spec, _ = cases()["sampled-11-unread-inputs"]
    assert any(0 not in cell.read_states() for cell in (spec.normal, spec.reduction))
    spec, _ = cases()["inputs-in-output"]
    assert {0, 1} <= set(spec.normal.concat) and {0, 1} <= set(spec.reduction.concat)
    assert any(block.combine == "concat" for block in spec.normal.blocks + spec.reduction.blocks)


if __name__ == "__main__":
    print("GOLDEN = {")
    for case in cases():
        print(f"    {case!r}: {fingerprint(*cases()[case])!r},")
    print("}")
    print("GOLDEN_OUTPUTS = {")
    for case in OUTPUT_CASES:
        print(f"    {case!r}: {output(case)!r},")
    print("}")
