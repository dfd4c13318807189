"""The latency harness, the lookup table on small networks, the ``latency`` evaluator and ``nas latency``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import nas
from evaluators.latency import (
    device_fingerprint,
    fingerprint_key,
    measure,
    measure_in_context,
    median_interval,
    percentile,
)
from evaluators.latency_table import LatencyEvaluator, LatencyTable
from nas import registry
from nas.cli.app import main
from nas.ir import ChainNet
from nas.testing import ToyGenotype, ToySpace

FAST = {"min_repetitions": 5, "max_seconds": 0.05, "warmup": 1}


def test_percentiles_and_the_median_interval_follow_order_statistics() -> None:
    times = [float(value) for value in range(1, 101)]  # 1 .. 100
    assert percentile(times, 0.5) == pytest.approx(50.5)
    assert percentile(times, 0.1) == pytest.approx(10.9) and percentile(times, 0.9) == pytest.approx(90.1)
    low, high = median_interval(times)  # ranks floor(50 - 9.8) = 40 and ceil(51 + 9.8) = 61
    assert (low, high) == (40.0, 61.0)


def test_measure_reports_a_median_inside_its_spread_and_restores_the_threads() -> None:
    before = torch.get_num_threads()
    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()).train()
    latency = measure(module, torch.randn(2, 3, 16, 16), threads=1, **FAST)
    assert 0 < latency.p10_ms <= latency.median_ms <= latency.p90_ms
    assert latency.repetitions >= 5 and latency.batch_size == 2 and latency.threads == 1
    assert latency.fingerprint == fingerprint_key(device_fingerprint("cpu", 1))
    assert torch.get_num_threads() == before and module.training  # the caller's state is given back


def test_each_round_runs_a_fresh_copy_of_the_module_and_its_input() -> None:
    """Memory placement changes a network's latency by up to a third here: the rounds pool placements."""
    seen: set[tuple[int, int]] = set()

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.add((id(self), x.data_ptr()))
            return x

    probe = Probe()
    measure(probe, torch.zeros(1, 4), rounds=3, **FAST)
    modules, addresses = {module for module, _ in seen}, {address for _, address in seen}
    assert len(modules) == len(addresses) == 3 and id(probe) in modules  # the first round runs the module itself


def test_the_fingerprint_names_the_machine_threads_and_torch() -> None:
    fingerprint = device_fingerprint("cpu", 3)
    assert set(fingerprint) == {"processor", "machine", "cpus", "threads", "torch", "device"}
    assert fingerprint["threads"] == 3 and fingerprint["torch"] == torch.__version__
    assert fingerprint_key(fingerprint) != fingerprint_key(device_fingerprint("cpu", 1))


@pytest.mark.parametrize(
    "options",
    [{"min_repetitions": 2}, {"min_repetitions": 9, "max_repetitions": 5}, {"precision": 0.0}, {"threads": 0}],
)
def test_measure_refuses_bad_settings(options: dict) -> None:
    with pytest.raises(ValueError):
        measure(nn.Identity(), torch.randn(1, 3, 4, 4), **options)


def test_parts_timed_inside_their_network_share_its_median_and_leave_no_hooks() -> None:
    first, second = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
    network = nn.Sequential(first, nn.ReLU(), second, nn.AdaptiveAvgPool2d(1))
    images = torch.randn(1, 3, 16, 16)
    latency, shares = measure_in_context(network, images, [first, second], **FAST)
    assert len(shares) == 3 and min(shares) > 0  # the two parts, and what follows the last (ReLU-free pooling)
    assert sum(shares) == pytest.approx(latency.median_ms) and latency.repetitions >= 3 * 5
    assert not first._forward_hooks and not second._forward_hooks
    with pytest.raises(ValueError, match="not each once in the order given"):
        measure_in_context(network, images, [second, first], **FAST)
    assert not first._forward_hooks and not second._forward_hooks  # removed on failure too


def _toy_ir(widths: tuple[int, ...] = (8, 16)) -> ChainNet:
    genotype = ToyGenotype(widths=widths, kernels=(3,) * len(widths), depths=(1,) * len(widths), resolution=16)
    return ToySpace().lower(genotype)


def test_the_table_predicts_the_sum_of_its_parts_measured_once_and_saved(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    ir = _toy_ir()
    table = LatencyTable(path, **FAST)
    prediction = table.predict(ir)
    assert [name for name, _ in prediction.parts] == [name for name, _ in ir.all_blocks()] + ["classifier"]
    assert prediction.total_ms == pytest.approx(sum(ms for _, ms in prediction.parts)) and prediction.total_ms > 0
    assert table.measured == len(prediction.parts) == len(table)
    stored = json.loads(path.read_text())
    entries = stored["tables"][table.key]["entries"]
    assert stored["tables"][table.key]["fingerprint"] == device_fingerprint("cpu", 1)
    assert len(entries) == len(prediction.parts)
    key = json.loads(next(k for k in entries if '"block"' in k))
    assert {"op", "in_channels", "out_channels", "stride", "input_size", "options"} <= set(key)  # the IR record

    again = LatencyTable(path, **FAST)  # another process, same machine: nothing is measured again
    assert again.predict(ir) == prediction and again.measured == 0
    wider = again.predict(_toy_ir((8, 24)))  # only the blocks that differ are new
    assert again.measured == 2 and wider.parts[1] == prediction.parts[1]


def test_missing_parts_are_timed_in_their_network_or_alone_and_each_entry_says_how(tmp_path: Path) -> None:
    path, ir = tmp_path / "table.json", _toy_ir()
    table = LatencyTable(path, **FAST)
    prediction = table.predict(ir)
    stored = json.loads(path.read_text())["tables"]
    entries = stored[table.key]["entries"]
    assert table.method == "network" and table.key.endswith("-network") and len(entries) == len(prediction.parts)
    assert {entry["measured"]["method"] for entry in entries.values()} == {"network"}
    assert len({entry["measured"]["network"] for entry in entries.values()}) == 1  # one network measured
    # The parts of the network they were timed in add up to its measured median.
    assert prediction.total_ms == pytest.approx(next(iter(entries.values()))["network_median_ms"])
    alone = LatencyTable(path, method="alone", **FAST)  # the table of the earlier versions, beside it
    alone.predict(ir)
    stored = json.loads(path.read_text())["tables"]
    assert alone.key == table.key.removesuffix("-network") and alone.measured == len(prediction.parts)
    assert {entry["measured"]["method"] for entry in stored[alone.key]["entries"].values()} == {"alone"}
    with pytest.raises(ValueError, match="method"):
        LatencyTable(path, method="guess")


def test_tables_of_other_settings_live_beside_each_other(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    LatencyTable(path, **FAST).predict(_toy_ir())
    other = LatencyTable(path, batch_size=2, **FAST)
    other.predict(_toy_ir())
    assert other.measured > 0
    assert len(json.loads(path.read_text())["tables"]) == 2


def test_an_unreadable_table_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the latency table"):
        LatencyTable(path, **FAST).predict(_toy_ir())
    assert path.read_text() == "{not json"


def test_bad_measurement_options_a_bad_device_and_a_malformed_table_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min_reps: not an option"):
        LatencyTable(tmp_path / "t.json", min_reps=3)
    with pytest.raises(ValueError, match="max_seconds: expected a number"):
        LatencyTable(tmp_path / "t.json", max_seconds="fast")
    with pytest.raises(ValueError, match="device"):
        LatencyEvaluator(ToySpace(), table=tmp_path / "t.json", device="nope")
    table = LatencyTable(tmp_path / "t.json")
    (tmp_path / "t.json").write_text(json.dumps({"version": 2, "tables": {table.key: {"entries": [1, 2]}}}))
    with pytest.raises(ValueError, match="malformed"):
        LatencyEvaluator(ToySpace(), table=tmp_path / "t.json").prepare()


def test_cell_networks_are_predicted_cell_by_cell(tmp_path: Path) -> None:
    ir = nas.lower("nasnet-a-cifar", num_classes=10, num_cells=1, penultimate_filters=48, resolution=16)
    prediction = LatencyTable(tmp_path / "t.json", **FAST).predict(ir)
    names = [name for name, _ in prediction.parts]
    assert names[0] == "stem" and names[-1] == "classifier"
    assert sum(name.startswith("cells[") for name in names) == len(ir.cells)


def test_the_evaluator_reports_the_full_size_latency_and_a_broken_candidate_as_an_error(tmp_path: Path) -> None:
    evaluator = LatencyEvaluator(ToySpace(), table=tmp_path / "t.json", resolution=16, measure=True, **FAST)
    metrics = evaluator.evaluate(ToyGenotype(), 0)
    assert metrics["latency_resolution"] == 16 and metrics["latency_ms"] > 0 and metrics["measured_ms"] > 0
    assert "error" in evaluator.evaluate(object(), 0)
    assert registry.evaluators.get("latency") is LatencyEvaluator


def test_nas_latency_prints_measured_and_predicted_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "t.json"
    assert (
        main(
            [
                "latency",
                "mobilenetv3-small",
                "--resolution",
                "32",
                "--num-classes",
                "10",
                "--table",
                str(table),
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["measured_ms"] > 0 and report["predicted_ms"] > 0 and report["resolution"] == 32
    assert report["measured_p10_ms"] <= report["measured_ms"] <= report["measured_p90_ms"]
    assert report["fingerprint"]["threads"] == 1 and table.exists()
    assert (
        main(["latency", "mobilenetv3-small", "--resolution", "32", "--num-classes", "10", "--table", str(table)]) == 0
    )
    assert "0 entries measured now" in capsys.readouterr().out  # the table is reused


@pytest.mark.parametrize(
    "argv, message",
    [
        (["latency", "no-such-net"], "neither a preset nor a file"),
        (["latency", "mobilenetv3-small", "--resolution", "4"], "resolution"),
        (["latency", "mobilenetv3-small", "--device", "nope"], "device"),
        (["latency", "mobilenetv3-small", "--threads", "0"], "positive integer"),
    ],
)
def test_nas_latency_mistakes_are_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--table", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
