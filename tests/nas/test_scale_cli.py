"""``nas scale`` end to end: the family files, ``nas show``/``materialize --phi``, resume and refusals, kill -9."""

from __future__ import annotations

import json
import shutil

import optuna
import pytest
import torch

import nas
from nas.cli.app import main

TINY = "evaluator_options:\n  width_multiplier: 0.25\n  resolution: 16\n  batch_size: 64\n"


def scale_args(out, config, budget=3, *extra):
    return [
        "scale",
        "--base",
        "mobilenetv3-small",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--grid-step",
        "0.1",
        "--phi-max",
        "2",
        "--budget",
        str(budget),
        "--out",
        str(out),
        "--config",
        str(config),
        "--no-progress",
        *extra,
    ]


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory):
    """One finished ``nas scale`` run (budget 3) and its config, for the module: the first test checks it and
    goes on with a copy of it, the kill -9 test's killed run must end the same."""
    folder = tmp_path_factory.mktemp("scale")
    config = folder / "tiny.yaml"
    config.write_text(TINY)
    out = folder / "straight"
    assert main(scale_args(out, config)) == 0
    return out, config


def records(out):
    study = optuna.load_study(study_name="nas-scale", storage=f"sqlite:///{out / 'study.db'}")
    trials = sorted(study.get_trials(), key=lambda t: t.user_attrs["trial_id"])
    return [(t.user_attrs["trial_id"], t.params, t.value) for t in trials], [t.user_attrs["metrics"] for t in trials]


def test_scale_writes_the_family_shows_and_materializes_it(tmp_path, scale_run, capsys):
    out = shutil.copytree(scale_run[0], tmp_path / "run", ignore=shutil.ignore_patterns(".lock"))  # goes on below
    config = scale_run[1]
    family = json.loads((out / "scaling.json").read_text())
    assert (out / "scaling.md").read_text().startswith("# Compound scaling of mobilenetv3-small")
    assert (out / "scaling.png").stat().st_size > 10_000
    done, metrics = records(out)
    assert len(done) == 3 and family["grid"] == {
        "step": 0.1,
        "high": 2.0,
        "tolerance": 0.1,
        "constraint": "formula",
        "points": 21,
        "evaluated": 3,
    }
    best = max(done, key=lambda row: (row[2], -row[0]))
    assert family["best_trial"] == best[0] and family["accuracy"] == best[2]
    assert (family["alpha"], family["beta"], family["gamma"]) == (best[1]["alpha"], best[1]["beta"], best[1]["gamma"])
    assert family["constraint"] == pytest.approx(family["alpha"] * family["beta"] ** 2 * family["gamma"] ** 2)
    for row in metrics:  # the journal holds the proxy's cost and the point's full-size cost and ratio
        assert {"accuracy", "params", "macs", "constraint", "full_params", "full_macs", "macs_ratio"} <= set(row)
        assert abs(row["constraint"] - 2) <= 0.1 + 1e-9
    models = family["models"]
    assert [m["phi"] for m in models] == [0, 1, 2] and models[0]["macs_ratio"] == 1.0
    assert models[0]["genotype"] == nas.resolve("mobilenetv3-small").to_json()
    for model in models:
        assert model["2**phi"] == 2 ** model["phi"]
        assert model["width"] == pytest.approx(family["beta"] ** model["phi"])
        assert model["depth"] == pytest.approx(family["alpha"] ** model["phi"])
        assert model["resolution"] == round(224 * family["gamma"] ** model["phi"])
        assert nas.summarize(model["genotype"], num_classes=family["num_classes"])["macs"] == model["macs"]
        assert model["macs_ratio"] == pytest.approx(model["macs"] / models[0]["macs"])
    capsys.readouterr()

    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "compound scaling of mobilenetv3-small" in shown and "2^phi" in shown
    assert main(["show", str(out), "--phi", "1"]) == 0
    shown = capsys.readouterr().out
    assert "phi=1" in shown and "search run" not in shown
    assert main(["show", str(out), "--phi", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resolution"] == models[2]["resolution"]
    assert main(["materialize", str(out), "--phi", "1", "--out", str(tmp_path / "phi1.pt"), "--num-classes", "10"]) == 0
    module = nas.load_model(tmp_path / "phi1.pt")
    assert sum(p.numel() for p in module.parameters()) == nas.summarize(models[1]["genotype"], num_classes=10)["params"]
    capsys.readouterr()

    for argv, message in (
        (["materialize", str(out), "--out", str(tmp_path / "x.pt")], "--phi K"),
        (["materialize", str(out), "--phi", "7", "--out", str(tmp_path / "x.pt")], "valid: [0, 1, 2]"),
        (["show", "mobilenetv3-small", "--phi", "1"], "needs a nas scale run directory"),
        (scale_args(out, config, 3, "--tolerance", "0.2"), "other settings"),
        (["search", "--out", str(out), "--dataset", "synthetic"], "another kind of run (nas scale)"),
    ):
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "x.pt").exists() and records(out)[0] == done  # nothing written, nothing lost

    assert main(scale_args(out, config, 5, "--phi-max", "1")) == 0  # a larger budget resumes; phi-max may change
    more, _ = records(out)
    assert more[:3] == done and len(more) == 5
    assert [m["phi"] for m in json.loads((out / "scaling.json").read_text())["models"]] == [0, 1]
    # nas doctor reads a scale run, and its export resumes without evaluating anything again
    assert main(["doctor", str(out), "--export", str(tmp_path / "rescued")]) == 0
    assert "intact" in capsys.readouterr().out
    assert main(scale_args(tmp_path / "rescued", config, 5, "--phi-max", "1")) == 0
    assert "trial " not in capsys.readouterr().err  # every point replayed from the journal, none trained
    assert records(tmp_path / "rescued")[0] == records(out)[0]
    assert (
        json.loads((tmp_path / "rescued" / "scaling.json").read_text())["models"]
        == json.loads((out / "scaling.json").read_text())["models"]
    )
    # members beyond the space's bounds (at most 64 blocks) are listed with the reason, not built
    assert main(scale_args(out, config, 5, "--phi-max", "16")) == 0
    models = json.loads((out / "scaling.json").read_text())["models"]
    assert len(models) == 17 and "genotype" in models[0] and "error" in models[-1] and "genotype" not in models[-1]
    assert "not built" in (out / "scaling.md").read_text() and len(records(out)[0]) == 5
    capsys.readouterr()
    assert main(["materialize", str(out), "--phi", "16", "--out", str(tmp_path / "x.pt")]) == 2
    assert "is not a member" in capsys.readouterr().err


def test_an_unfinished_or_damaged_scale_run_is_named_as_such(tmp_path, config, capsys):
    out = tmp_path / "run"
    assert main(scale_args(out, config, 1)) == 0
    family = (out / "scaling.json").read_text()
    (out / "scaling.json").write_text(family[: len(family) // 2])  # a torn file: one line, exit 2
    capsys.readouterr()
    assert main(["show", str(out)]) == 2
    assert "scaling.json" in capsys.readouterr().err
    (out / "scaling.json").write_text(json.dumps({**json.loads(family), "grid": None}))  # an edited one
    assert main(["show", str(out)]) == 2
    assert "not a scaling.json written by nas scale" in capsys.readouterr().err
    (out / "scaling.json").unlink()  # as if killed before the family was written
    for argv in (
        ["show", str(out)],
        ["materialize", str(out), "--out", str(tmp_path / "x.pt")],
        ["materialize", str(out), "--phi", "1", "--out", str(tmp_path / "x.pt")],
    ):
        assert main(argv) == 2
        assert "has not finished; rerun the same nas scale command" in capsys.readouterr().err


def test_a_search_directory_is_not_a_scale_directory(tmp_path, config, capsys):
    search = tmp_path / "search"
    assert main(["search", "--space", "toy-missing", "--out", str(search)]) == 2  # unknown space: nothing made
    assert not search.exists()
    nasnet = tmp_path / "nasnet.yaml"
    nasnet.write_text("evaluator_options:\n  num_cells: 1\n  penultimate_filters: 24\n")
    assert (
        main(
            [
                "search",
                "--controller",
                "random",
                "--budget",
                "1",
                "--dataset",
                "synthetic",
                "--epochs",
                "1",
                "--out",
                str(search),
                "--config",
                str(nasnet),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(scale_args(search, config, 1)) == 2
    assert "another kind of run" in capsys.readouterr().err
    assert main([*scale_args(tmp_path / "cells", config, 1), "--base", str(search)]) == 2  # a NASNet run's best
    assert "'nasnet' cannot be compound-scaled" in capsys.readouterr().err


def test_the_base_may_be_a_genotype_file_or_a_search_run(tmp_path, config):
    chain = tmp_path / "chain"  # a MobileNetV3 search run: its best.json is the base
    assert (
        main(
            [
                "search",
                "--space",
                "mobilenetv3",
                "--controller",
                "random",
                "--budget",
                "1",
                "--dataset",
                "synthetic",
                "--epochs",
                "1",
                "--out",
                str(chain),
                "--config",
                str(config),
                "--no-progress",
            ]
        )
        == 0
    )
    searched = json.loads((chain / "best.json").read_text())
    assert main([*scale_args(tmp_path / "from-run", config, 1), "--base", str(chain)]) == 0
    family = json.loads((tmp_path / "from-run" / "scaling.json").read_text())
    assert family["base"]["genotype"] == family["models"][0]["genotype"] == searched
    genotype_file = tmp_path / "small.json"
    genotype_file.write_text(json.dumps(nas.resolve("mobilenetv3-small").to_json()))
    assert main([*scale_args(tmp_path / "from-file", config, 1), "--base", str(genotype_file)]) == 0
    assert (
        json.loads((tmp_path / "from-file" / "scaling.json").read_text())["base"]["genotype"]
        == nas.resolve("mobilenetv3-small").to_json()
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--base", "nasnet-a-mobile"], "cannot be compound-scaled"),
        (["--base", "no-such-net"], "base: no-such-net: neither a preset nor a file"),
        (["--grid-step", "0"], "grid_step: must be a positive number"),
        (["--grid-step", "0.3", "--grid-high", "1.9", "--tolerance", "0.01"], "no grid point"),
        (["--phi-max", "0"], "phi_max: must be a positive integer"),
        (["--tolerance", "-1"], "tolerance"),
        (["--constraint", "flops"], "invalid choice"),
    ],
)
def test_mistakes_are_one_line_and_exit_2_before_anything_is_written(tmp_path, config, capsys, extra, message):
    out = tmp_path / "run"
    assert main([*scale_args(out, config, 1), *extra]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1 and "Traceback" not in error
    assert not out.exists()


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("tolerance: '0.1'\n", "tolerance: expected a number, got '0.1'"),
        ("repeats: true\n", "repeats: expected int, got True"),
        ("space: nasnet\n", "unknown setting 'space'"),
    ],
)
def test_a_wrong_config_file_is_one_line(tmp_path, capsys, yaml, message):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml)
    assert main(scale_args(tmp_path / "run", config, 1)) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_macs_constraint_records_the_formula_and_the_measured_ratio(tmp_path, config):
    out = tmp_path / "run"
    args = scale_args(out, config, 1, "--constraint", "macs", "--tolerance", "0.3", "--grid-high", "1.5")
    args[args.index("--grid-step") + 1] = "0.25"
    assert main(args) == 0
    _, metrics = records(out)
    assert abs(metrics[0]["macs_ratio"] - 2) <= 0.3 + 1e-9  # held on the measured ratio ...
    assert metrics[0]["constraint"] == pytest.approx(
        metrics[0]["alpha"] * metrics[0]["beta"] ** 2 * metrics[0]["gamma"] ** 2
    )  # ... and the formula reported


def test_kill_9_and_resume_gives_the_uninterrupted_grid(tmp_path, scale_run, run_and_kill, capsys):
    """A ``nas scale`` process killed with SIGKILL after its first point, then the same command run to the end
    (here, as the uninterrupted run was: ``main`` is what ``python -m nas.cli`` runs, and only the journal on
    disk carries over from the killed process)."""
    straight, config = scale_run
    budget = 3
    killed = tmp_path / "killed"
    assert run_and_kill(scale_args(killed, config, budget), after_lines=1) == 1
    before, _ = records(killed)
    assert 1 <= len(before) < budget
    capsys.readouterr()
    assert main(scale_args(killed, config, budget)) == 0
    rerun = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trial ")]
    assert len(rerun) == budget - len(before)  # only the unfinished points were evaluated
    assert records(killed)[0] == records(straight)[0]  # same points, same order, same accuracies
    assert (
        json.loads((killed / "scaling.json").read_text())["models"]
        == json.loads((straight / "scaling.json").read_text())["models"]
    )
    assert torch.load(killed / "controller.pt", weights_only=True)["num_told"] == budget
