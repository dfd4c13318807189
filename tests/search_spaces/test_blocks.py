"""The ``blocks`` space: its decisions, genotype JSON with one dataclass per family, lowering errors,
and a candidate of every family trained by the proxy evaluator (condensing as it trains)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nas
from evaluators.proxy import ProxyEvaluator
from nas.seed_ops.condense import LearnedGroupConv
from nas.serialization import genotype_json
from nas.space import sample_choices
from search_spaces.blocks import (
    FAMILIES,
    BlocksGenotype,
    BlocksSpace,
    DenseStage,
    ShuffleNetV1Stage,
    ShuffleNetV2Stage,
    stage_for,
)

SPACE = BlocksSpace()


def test_each_stage_chooses_family_width_and_depth():
    names = [d.name for d in SPACE.decisions()]
    assert names == [f"stage{i}.{d}" for i in range(3) for d in ("family", "width", "depth")]
    assert SPACE.decisions()[0].choices == FAMILIES
    assert set(FAMILIES) == {"mbconv", "shufflenet_v2", "bottleneck", "dual_path", "dense"}


def test_every_family_and_width_gives_a_distinct_stage():
    for family in FAMILIES:
        for depth in (1, 4):
            stages = {stage_for(family, 64 * w, depth) for w in (0.75, 1.0, 1.5)}
            assert len(stages) == 3 and all(s.family == family for s in stages)


def test_genotype_json_names_the_family_and_the_bad_field():
    genotype = SPACE.presets()["dpn68"]
    document = json.loads(json.dumps(genotype_json("blocks", genotype)))
    assert document["genotype"]["stages"][0]["family"] == "dual_path"
    assert nas.load_genotype(document) == genotype
    bad = json.loads(json.dumps(document))
    bad["genotype"]["stages"][1]["family"] = "resnet"
    with pytest.raises(ValueError, match=r"genotype.stages\[1\].family: 'resnet' is not valid; valid: \['mbconv'"):
        nas.load_genotype(bad)
    bad = json.loads(json.dumps(document))
    bad["genotype"]["stages"][2]["groups"] = 0
    with pytest.raises(ValueError, match=r"genotype.stages\[2\].groups: must be in \[1, 256\], got 0"):
        nas.load_genotype(bad)
    for family in (["dense"], None):  # not a name, or no name at all: one line, never a TypeError
        bad = json.loads(json.dumps(document))
        bad["genotype"]["stages"][0]["family"] = family
        with pytest.raises(
            ValueError,
            match=r"genotype.stages\[0\].family: \['dense'\] is not valid"
            if family
            else r"genotype.stages\[0\].family: None is not valid",
        ):
            nas.load_genotype(bad)
    bad = json.loads(json.dumps(document))
    del bad["genotype"]["stages"][0]["family"]
    with pytest.raises(ValueError, match=r"genotype.stages\[0\].family: missing field"):
        nas.load_genotype(bad)
    bad = json.loads(json.dumps(document))
    bad["genotype"]["stages"][0]["growth"] = 8  # a field of another family
    with pytest.raises(ValueError, match=r"genotype.stages\[0\].growth: unknown field"):
        nas.load_genotype(bad)


def test_a_stage_that_cannot_be_built_is_named_when_lowered():
    genotype = BlocksGenotype((ShuffleNetV2Stage(48, 2), ShuffleNetV1Stage(100, 2, groups=3)))
    with pytest.raises(
        ValueError, match=r"stages\[1\]\[0\]: shufflenet_v1_unit: mid_channels 25 is not divisible by groups 3"
    ):
        nas.summarize(genotype)
    with pytest.raises(ValueError, match="out_channels: must be even"):
        ShuffleNetV2Stage(47, 2)


def test_presets_are_outside_the_searched_decisions_but_lower():
    with pytest.raises(ValueError, match="search space has 3 stages"):
        SPACE.encode(SPACE.presets()["seresnet50"])
    ir = SPACE.lower(SPACE.presets()["seresnet50"], num_classes=10)
    assert [len(stage) for stage in ir.stages] == [3, 4, 6, 3] and ir.out_channels == 2048
    genotype = SPACE.decode(sample_choices(SPACE.decisions(), np.random.default_rng(0)))
    assert SPACE.encode(genotype) == SPACE.encode(
        SPACE.genotype_from_dict(genotype_json("blocks", genotype)["genotype"])
    )


def test_a_candidate_of_every_family_trains_and_condenses_in_the_proxy(monkeypatch):
    progress = []
    original = LearnedGroupConv.set_training_progress

    def spy(self, value):
        progress.append(value)
        original(self, value)

    monkeypatch.setattr(LearnedGroupConv, "set_training_progress", spy)
    torch.manual_seed(0)
    evaluator = ProxyEvaluator(SPACE, dataset="synthetic", epochs=2, full_cost=True)
    for families in (("mbconv", "shufflenet_v2", "dense"), ("bottleneck", "dual_path", "dense")):
        choices = {
            f"stage{i}.{name}": value
            for i, family in enumerate(families)
            for name, value in (("family", family), ("width", 0.75), ("depth", 2))
        }
        metrics = evaluator.evaluate(SPACE.decode(choices), trial_id=0)
        assert "error" not in metrics, metrics.get("error")
        assert 0 <= metrics["accuracy"] <= 1
        assert metrics["memory_access"] > 0 and metrics["full_memory_access"] > metrics["memory_access"]
        assert metrics["full_macs"] > metrics["macs"] > 0
    assert progress and max(progress) > 0.5  # the condensing schedule ran to its end


def test_dense_stage_grows_by_its_growth_rate():
    genotype = BlocksGenotype(
        (DenseStage(growth=8, depth=3, stride=1),), stem_pool=False, stem_norm=False, head_norm="relu"
    )
    ir = SPACE.lower(genotype, num_classes=10, resolution=32)
    assert [b.out_channels for b in ir.stages[0]] == [32, 40, 48]
    assert [b.op for b in ir.head] == ["bn_act"]


def test_a_blocks_search_reports_the_families_it_tried(tmp_path):
    from nas.cli.app import main

    out = tmp_path / "run"
    main(["search", "--space", "blocks", "--budget", "2", "--epochs", "1", "--dataset", "synthetic", "--out", str(out)])
    report = (out / "report.md").read_text()
    assert "| architecture |" in report and "| memory access |" in report
    assert sum(family in report for family in FAMILIES) >= 1
    best = nas.load_genotype(json.loads((out / "best.json").read_text()))
    assert isinstance(best, BlocksGenotype) and len(best.stages) == 3
