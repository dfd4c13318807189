"""``nas search`` end to end: outputs, ``nas show``/``materialize`` of a run, and kill -9 + resume."""

import json
import shutil

import optuna
import pytest
import torch

import nas
from nas.cli.app import main

TINY = "evaluator_options:\n  num_cells: 1\n  penultimate_filters: 24\n  batch_size: 64\n"


def search_args(out, config, budget=6, controller="evolution"):
    return [
        "search",
        "--space",
        "nasnet",
        "--controller",
        controller,
        "--budget",
        str(budget),
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--config",
        str(config),
        "--no-progress",
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted ``nas search`` (evolution, budget 6) and its config, for the module: the first test
    checks its outputs (on a copy), the kill -9 test's killed run must end the same."""
    folder = tmp_path_factory.mktemp("search")
    config = folder / "tiny.yaml"
    config.write_text(TINY + "controller_options:\n  population_size: 3\n  sample_size: 2\n")
    out = folder / "straight"
    assert main(search_args(out, config)) == 0
    return out, config


def genotypes(out):
    study = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}")
    trials = sorted(study.get_trials(), key=lambda t: t.user_attrs["trial_id"])
    return [t.user_attrs["trial_id"] for t in trials], [t.user_attrs["genotype"] for t in trials]


def test_search_writes_its_outputs_and_materializes(tmp_path, finished, capsys):
    out = shutil.copytree(finished[0], tmp_path / "run", ignore=shutil.ignore_patterns(".lock"))  # reruns below
    config, budget = finished[1], 6
    for name in ("best.json", "report.md", "history.png", "normal.png", "reduction.png", "study.db", "controller.pt"):
        assert (out / name).is_file(), name
    best = nas.load_genotype(out / "best.json")
    ids, documents = genotypes(out)
    assert ids == list(range(budget)) and json.loads((out / "best.json").read_text()) in documents
    report = (out / "report.md").read_text()
    assert "## Top 10" in report and f"finished evaluations: {budget}" in report and "loop overhead" in report
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # rich wraps lines at the terminal's width
    assert "finished; evolution on nasnet" in shown
    assert f"{budget} trials started, {budget} finished (0 failed)" in shown
    model_path = tmp_path / "best.pt"
    assert main(["materialize", str(out), "--out", str(model_path), "--num-classes", "10"]) == 0
    model = nas.load_model(model_path)
    assert sum(p.numel() for p in model.parameters()) == nas.summarize(best, num_classes=10)["params"]
    assert best.num_cells == 6 and best.penultimate_filters == 768  # the full-size network, not the proxy
    # the same command again: nothing left to do, nothing re-run
    assert main(search_args(out, config, budget)) == 0
    assert genotypes(out)[0] == list(range(budget))
    # other settings on the same run directory: a clear refusal
    assert main([*search_args(out, config, budget), "--seed", "7"]) == 2
    assert "other settings" in capsys.readouterr().err
    # options a controller does not take: one clear line, exit 2, the run untouched
    assert main(search_args(tmp_path / "other", config, budget, controller="random")) == 2
    assert "takes no option" in capsys.readouterr().err and not (tmp_path / "other").exists()
    assert genotypes(out)[0] == list(range(budget))


def test_kill_9_and_resume_gives_the_uninterrupted_sequence(tmp_path, finished, run_and_kill, capsys):
    """Two ``nas search`` processes killed with SIGKILL mid-run, then the same command run to the end (here,
    as the uninterrupted run was: ``main`` is what ``python -m nas.cli`` runs, and only the journal on disk
    carries over from the killed processes)."""
    (straight, config), budget = finished, 6
    killed = tmp_path / "killed"
    assert run_and_kill(search_args(killed, config, budget), after_lines=1) == 1
    finished_before = genotypes(killed)[1]
    assert 1 <= len(finished_before) < budget
    assert run_and_kill(search_args(killed, config, budget), after_lines=2) == 2
    kept = genotypes(killed)[1]
    assert kept[: len(finished_before)] == finished_before  # nothing finished was lost
    capsys.readouterr()
    assert main(search_args(killed, config, budget)) == 0
    rerun = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trial ")]
    assert len(rerun) == budget - len(kept)  # only the unfinished trials were evaluated
    assert genotypes(killed) == genotypes(straight)  # same trials, same order, exactly the budget
    assert torch.load(killed / "controller.pt", weights_only=True)["num_told"] == budget


def test_help_lists_what_is_registered_including_run_time_additions(capsys):
    from nas import registry
    from nas.cli.app import build_parser

    registry.controllers.register("help-probe", lambda space, seed=0: None)
    try:
        with pytest.raises(SystemExit):
            build_parser().parse_args(["search", "--help"])
    finally:
        registry.controllers.unregister("help-probe")
    text = " ".join(capsys.readouterr().out.split())
    for name in registry.spaces.names() + registry.datasets.names() + ["help-probe", "evolution", "proxy"]:
        assert name in text


def test_a_chain_space_run_draws_its_architecture(tmp_path):
    out, config = tmp_path / "run", tmp_path / "small.yaml"
    config.write_text("evaluator_options:\n  width_multiplier: 0.25\n  resolution: 16\n  batch_size: 128\n")
    args = [
        "search",
        "--space",
        "efficientnet",
        "--controller",
        "random",
        "--budget",
        "1",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--config",
        str(config),
        "--no-progress",
    ]
    assert main(args) == 0
    assert (out / "architecture.png").stat().st_size > 0 and not (out / "normal.png").exists()


def test_a_space_without_a_proxy_reduction_is_refused_before_any_trial(tmp_path):
    from evaluators import ProxyEvaluator
    from nas.testing import ToySpace

    class NoProxy(ToySpace):
        proxy_reduction = None

    with pytest.raises(ValueError, match="space 'toy' declares no proxy_reduction"):
        ProxyEvaluator(NoProxy(), dataset="synthetic")
