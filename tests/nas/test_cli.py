"""The ``nas`` command: output, files, and one-line errors with exit code 2 that write nothing."""

import json
import subprocess
import sys

import pytest
import torch

import nas
from nas.cli.app import main


def test_show_prints_the_counts(capsys):
    assert main(["show", "mobilenetv3-large"]) == 0
    out = capsys.readouterr().out
    assert "5,483,032 parameters" in out and "216.6M MACs" in out and "224x224" in out and "stage 1" in out


def test_show_json(capsys):
    assert main(["show", "efficientnet-b0", "--json", "--num-classes", "10"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resolution"] == 224 and summary["num_classes"] == 10
    assert summary["params"] == nas.summarize("efficientnet-b0", num_classes=10)["params"]
    assert summary["genotype"]["space"] == "efficientnet"


@pytest.mark.parametrize("spec", ["nasnet-a-mobile", "mobilenetv3-small"])
def test_show_plot(tmp_path, spec, capsys):
    plot = tmp_path / "cells.png"
    assert main(["show", spec, "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in nas.presets())


def test_materialize_pt_loads_with_weights_only(tmp_path, capsys):
    out = tmp_path / "b0.pt"
    assert main(["materialize", "efficientnet-b0", "--out", str(out), "--num-classes", "10", "--seed", "1"]) == 0
    payload = torch.load(out, weights_only=True)
    assert payload["genotype"]["space"] == "efficientnet" and payload["num_classes"] == 10
    model = nas.load_model(out).eval()
    reference = nas.materialize("efficientnet-b0", num_classes=10, seed=1).eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(model(x), reference(x))


def test_materialize_genotype_file(tmp_path):
    genotype = tmp_path / "g.json"
    genotype.write_text(json.dumps(nas.resolve("nasnet-a-cifar").to_json()))
    out = tmp_path / "cifar.pt"
    assert main(["materialize", str(genotype), "--out", str(out), "--num-classes", "10"]) == 0
    assert nas.load_model(out)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_materialize_pt2(tmp_path):
    out = tmp_path / "small.pt2"
    assert main(["materialize", "mobilenetv3-small", "--out", str(out), "--num-classes", "5"]) == 0
    program = torch.export.load(out)
    assert program.module()(torch.randn(1, 3, 224, 224)).shape == (1, 5)


def test_materialize_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "small.onnx"
    assert main(["materialize", "mobilenetv3-small", "--out", str(out), "--num-classes", "5"]) == 0
    onnx.checker.check_model(onnx.load(out))
    assert [p.name for p in tmp_path.iterdir()] == ["small.onnx"]  # weights embedded, nothing left over


@pytest.mark.parametrize(
    "args,message",
    [
        (["show", "resnet-50"], "neither a preset nor a file"),
        (["materialize", "efficientnet-b9", "--out", "{tmp}/x.pt"], "neither a preset nor a file"),
        (["materialize", "{tmp}/missing.json", "--out", "{tmp}/x.pt"], "neither a preset nor a file"),
        (["materialize", "{tmp}/bad.json", "--out", "{tmp}/x.pt"], "malformed JSON"),
        (["materialize", "{tmp}/wrong.json", "--out", "{tmp}/x.pt"], "genotype.normal.blocks[0].op_a: unknown op"),
        (["materialize", "efficientnet-b0", "--out", "{tmp}/x.pt", "--num-classes", "-3"], "positive integer"),
        (["materialize", "efficientnet-b0", "--out", "{tmp}/x.txt"], "unknown output format '.txt'"),
        (["materialize", "efficientnet-b0", "--out", "{tmp}/no/such/dir/x.pt"], "no such directory"),
        (["materialize", "efficientnet-b0", "--out", "{tmp}/taken.pt"], "already exists"),
        (["show", "efficientnet-b0", "--plot", "{tmp}/x.jpg"], "--plot writes a .png"),
        (["search", "--out", "{tmp}/run", "--controller", "bayes"], "unknown controller 'bayes'; valid: ["),
        (["search", "--out", "{tmp}/run", "--config", "{tmp}/bad.yaml"], "unknown setting 'budgett'"),
        (["frobnicate"], "invalid choice"),
        (["search", "--budgett", "3"], "nas: error: unrecognized arguments: --budgett 3"),
        (["search", "--budget", "x"], "nas: error: nas search: argument --budget: invalid"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(tmp_path, args, message, capsys):
    (tmp_path / "bad.json").write_text("{oops")
    wrong = nas.resolve("nasnet-a-cifar").to_json()
    wrong["genotype"]["normal"]["blocks"][0]["op_a"] = "conv_9x9"
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    (tmp_path / "bad.yaml").write_text("budgett: 3\n")
    (tmp_path / "taken.pt").write_bytes(b"the user's own file")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
    assert (tmp_path / "taken.pt").read_bytes() == b"the user's own file"


@pytest.mark.parametrize(
    "args,message",
    [
        (["materialize", "nope", "--out", "x.pt"], "neither a preset nor a file"),
        (["show"], "the following arguments are required: spec"),
    ],
)
def test_the_installed_command_exits_2_without_traceback(tmp_path, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and message in result.stderr
    assert list(tmp_path.iterdir()) == []
