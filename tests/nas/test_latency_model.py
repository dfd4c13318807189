"""The latency model fitted to another device's measurements (``nas.latency_model``): its counts, its fit,
its file, ``nas latency --fit`` / ``--model`` and the mnas objective reading it (issue 27)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluators.latency_table import LatencyEvaluator
from nas import registry
from nas.cli.app import main
from nas.evaluator import make_evaluator
from nas.latency_model import (
    LatencyModel,
    cell_features,
    fit,
    load_model,
    network_features,
    read_measurements,
    save_model,
)
from nas.objective import TABLE_LATENCY
from nas.search.latency import build_latency_evaluator, check_objective_metrics
from nas.search.report import latency_source
from nas.search.settings import SearchSettings
from nas.space import sample_choices
from search_spaces.nb201 import OPS, cell_graph, from_string, to_string

SPACE = registry.spaces.get("nb201")
# Per-edge costs of a made-up device (ms per cell): position matters, as on a device that overlaps branches.
EDGE_COST = {edge: {op: 0.01 * (1 + edge) * (1 + k) for k, op in enumerate(OPS)} for edge in range(6)}


def cells(count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [SPACE.decode(sample_choices(SPACE.decisions(), rng)) for _ in range(count)]


def synthetic_ms(genotype) -> float:
    """1.5 ms of fixed overhead and a cost per op on each edge, in each of the network's 15 cells."""
    return 1.5 + 15 * sum(EDGE_COST[edge][op] for edge, op in enumerate(genotype.edges))


def per_op_ms(genotype) -> float:
    """A device where an op costs the same on every edge (the lookup table's assumption)."""
    return 1.5 + 15 * sum(EDGE_COST[0][op] for op in genotype.edges)


def write_csv(path: Path, genotypes: list, latencies: list[float], column: str = "latency_ms") -> Path:
    lines = [f"arch,{column}"] + [f"{to_string(g)},{ms!r}" for g, ms in zip(genotypes, latencies)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fitted() -> tuple[LatencyModel, list]:
    train = cells(60, seed=0)
    latencies = [synthetic_ms(g) for g in train]
    latencies[3] *= 100  # a network the device's compiler mangled: a robust fit ignores it
    return fit(SPACE, train, latencies), train


def test_the_counts_of_a_cell_follow_what_the_device_runs() -> None:
    # node 1 reads the input through a zero edge (always zero); node 2 adds a 3x3 conv of the input and a
    # 1x1 conv of node 1; node 3 adds the input, nothing from node 1 and a pool of node 2.
    graph = cell_graph(from_string("|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"))
    assert cell_features(graph, "all", "ops") == {
        "op:zero": 2,
        "op:conv_3x3": 1,
        "op:conv_1x1": 1,
        "op:identity": 1,
        "op:avg_pool_3x3": 1,
        "combine:add": 3,
        "alive": 1,
    }
    used = {"op:conv_3x3": 1, "op:conv_1x1": 1, "op:identity": 1, "op:avg_pool_3x3": 1, "combine:add": 2, "alive": 1}
    assert cell_features(graph, "used", "ops") == used  # the zero edges are not run
    live = {"op:conv_3x3": 1, "op:identity": 1, "op:avg_pool_3x3": 1, "combine:add": 1, "alive": 1}
    assert cell_features(graph, "live", "ops") == live  # nor the 1x1 conv of an always-zero node
    assert cell_features(graph, "live", "edges") == {
        "edge:2<0:conv_3x3": 1,
        "edge:3<0:identity": 1,
        "edge:3<2:avg_pool_3x3": 1,
        "combine:add": 1,
        "alive": 1,
    }
    dead = cell_graph(from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|"))
    assert cell_features(dead, "used", "ops") == {}  # nothing reaches the output: a compiler folds it all
    network = network_features(SPACE.lower(from_string(to_string(cells(1, 5)[0]))), "live-ops")
    assert network["reduction op:resnet_basic_block"] == 2  # the 15 cells' counts, and the two reductions


def test_the_fit_recovers_an_additive_latency_exactly_and_chooses_its_features(fitted) -> None:
    model, train = fitted
    assert model.feature_set == "all-edges" and model.rows == 60
    assert model.cross_validation["all-edges"]["within_5"] > 0.98  # the outlier aside
    assert model.cross_validation["all-ops"]["within_10"] < model.cross_validation["all-edges"]["within_10"]
    for genotype in cells(50, seed=1):
        assert model.predict(SPACE, genotype) == pytest.approx(synthetic_ms(genotype), rel=1e-9)


def test_a_forced_feature_set_and_too_few_measurements() -> None:
    train = cells(40, seed=2)
    model = fit(SPACE, train, [synthetic_ms(g) for g in train], features="used-ops")
    assert model.feature_set == "used-ops" and set(model.cross_validation) == {"used-ops"}
    with pytest.raises(ValueError, match="at least 20"):
        fit(SPACE, train[:19] * 3, [1.0] * 57)
    with pytest.raises(ValueError, match="feature set"):
        fit(SPACE, train, [1.0] * 40, features="everything")


def test_the_model_file_round_trips_and_bad_files_are_one_line(fitted, tmp_path: Path) -> None:
    model, _ = fitted
    path = tmp_path / "device.json"
    save_model(model, path)
    again = load_model(path, SPACE)
    assert again == model and not list(tmp_path.glob(".*partial"))
    genotype = cells(1, seed=3)[0]
    assert again.predict(SPACE, genotype) == model.predict(SPACE, genotype)
    with pytest.raises(ValueError, match="fitted on space 'nb201', not 'nasnet'"):
        load_model(path, registry.spaces.get("nasnet"))
    data = json.loads(path.read_text())
    for change, message in (({"version": 9}, "version"), ({"weights": {"alive": "x"}}, "weights"), ({"format": 1}, "")):
        (tmp_path / "bad.json").write_text(json.dumps({**data, **change}))
        with pytest.raises(ValueError, match=f"bad.json: .*{message}"):
            load_model(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not a latency model"):
        load_model(tmp_path / "bad.json")


def test_a_network_outside_the_measurements_is_refused_not_extrapolated() -> None:
    train = [g for g in cells(160, seed=4) if "avg_pool_3x3" not in g.edges]  # never a pool
    model = fit(SPACE, train, [synthetic_ms(g) for g in train], features="all-ops")
    assert "op:avg_pool_3x3" not in model.weights
    with pytest.raises(ValueError, match="'op:avg_pool_3x3' where every measured one had 0"):
        model.predict(SPACE, from_string("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|"))


def test_measurements_are_read_by_notation_or_json_and_bad_rows_name_their_line(tmp_path: Path) -> None:
    genotypes = cells(3, seed=6)
    path = write_csv(tmp_path / "m.csv", genotypes, [1.0, 2.0, 3.0])
    as_json = json.dumps(
        {"node1": list(genotypes[0].node1), "node2": list(genotypes[0].node2), "node3": list(genotypes[0].node3)}
    )
    with path.open("a") as handle:
        handle.write('"' + as_json.replace('"', '""') + '",4.5\n')
    read, latencies = read_measurements(path, SPACE)
    assert read == [*genotypes, genotypes[0]] and latencies == [1.0, 2.0, 3.0, 4.5]
    for line, message in (
        ("|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|,1.0", "line 2: not an architecture of nb201"),
        (f"{to_string(genotypes[0])},-1", "line 2: latency_ms '-1' is not a positive number"),
        (f"{to_string(genotypes[0])},nan", "line 2: latency_ms 'nan'"),
        (f"{to_string(genotypes[0])},1,2", "line 2: 3 fields"),
    ):
        (tmp_path / "bad.csv").write_text(f"arch,latency_ms\n{line}\n")
        with pytest.raises(ValueError, match=message):
            read_measurements(tmp_path / "bad.csv", SPACE)
    (tmp_path / "bad.csv").write_text("arch,ms\n")
    with pytest.raises(ValueError, match="no column 'latency_ms'"):
        read_measurements(tmp_path / "bad.csv", SPACE)


def test_nas_latency_fits_predicts_and_refuses_mistakes_in_one_line(tmp_path: Path, capsys) -> None:
    train = cells(30, seed=7)
    csv_path = write_csv(tmp_path / "device.csv", train, [per_op_ms(g) for g in train], column="pixel3_latency")
    out = tmp_path / "device.json"
    assert (
        main(["latency", "--fit", str(csv_path), "--space", "nb201", "--column", "pixel3_latency", "--out", str(out)])
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out and load_model(out).rows == 30
    assert main(["latency", "nb201-resnet", "--model", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["predicted_ms"] == pytest.approx(per_op_ms(SPACE.presets()["nb201-resnet"]), rel=1e-6)
    short = write_csv(tmp_path / "short.csv", train[:10], [1.0] * 10)
    for argv, message in (
        (["--fit", str(short), "--space", "nb201", "--out", str(tmp_path / "x.json")], "at least 20"),
        (["--fit", str(csv_path), "--space", "nb201", "--out", str(tmp_path / "x.json")], "no column 'latency_ms'"),
        (["--fit", str(csv_path), "--out", str(tmp_path / "x.json")], "needs --space"),
        (["--fit", str(csv_path), "--space", "nope", "--out", str(tmp_path / "x.json")], "space"),
        (["nb201-best", "--model", str(tmp_path / "none.json")], "no such file"),
        (["mobilenetv3-small", "--model", str(out)], "fitted on space 'nb201', not 'mobilenetv3'"),
        (["nb201-best", "--model", str(out), "--threads", "2"], "--threads"),
        (["nb201-best", "--column", "x"], "a setting of --fit"),
        ([], "give a SPEC"),
    ):
        assert main(["latency", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "x.json").exists()


def test_the_mnas_objective_of_a_search_reads_the_fitted_model(fitted, tmp_path: Path) -> None:
    model, _ = fitted
    path = tmp_path / "device.json"
    save_model(model, path)
    settings = SearchSettings(
        out=str(tmp_path / "run"),
        space="nb201",
        evaluator="tabular",
        objective="mnas",
        latency_target_ms=3.0,
        latency={"model": str(path)},
    )
    objective = settings.make_objective()
    evaluator = make_evaluator("tabular", SPACE)
    latency = build_latency_evaluator(settings, SPACE, evaluator, objective)
    assert isinstance(latency, LatencyEvaluator) and latency.model == model
    check_objective_metrics(objective, evaluator, latency, "tabular")
    genotype = SPACE.presets()["nb201-best"]
    metrics = {"accuracy": 0.9, **latency.evaluate(genotype)}
    assert metrics[TABLE_LATENCY] == pytest.approx(synthetic_ms(genotype))
    assert objective.reward(metrics) == pytest.approx(0.9 * (synthetic_ms(genotype) / 3.0) ** -0.07)
    assert "fitted model `device.json`" in latency_source(settings.identity())  # what report.md says it is
    assert latency_source({"latency": {}}) == "lookup-table latency of the full-size network"
    for options, message in (({"resolution": 64}, "resolution"), ({"measure": True}, "measure")):
        with pytest.raises(ValueError, match=message):
            LatencyEvaluator(SPACE, model=path, **options)
