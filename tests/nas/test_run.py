"""The one run shape: kinds declared and found by directory, refusals before torch, declared capabilities,
and ``nas show`` on a run that has not finished a trial."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nas import registry
from nas.cli.app import main
from nas.controller import TakesVariant, controller_factory
from nas.evaluator import EvaluatorBase, make_evaluator
from nas.journal import Journal
from nas.lock import RunLock
from nas.run import RunKind, kind_of, kind_of_study, kinds
from nas.search.settings import SearchSettings
from nas.space import Prunable, Scalable, get


def test_every_kind_is_registered_and_declares_itself() -> None:
    found = {kind.name: kind for kind in kinds()}
    assert set(found) >= {"search", "scale", "netadapt", "train"}
    for kind in found.values():
        assert isinstance(kind, RunKind) and kind.command.startswith("nas ") and kind.outputs
        assert (kind.study_name is None) != (kind.identity_file is None)  # a journal, or an identity file
    assert kind_of_study("nas-scale") is found["scale"] and kind_of_study("my-study") is found["search"]


def test_the_kind_of_a_directory_is_read_from_its_journal_or_identity_file(tmp_path: Path) -> None:
    assert kind_of(tmp_path / "missing") is None and kind_of(tmp_path) is None
    search = tmp_path / "search"
    Journal(search, None, "nas-search", {"space": "nasnet"})
    scale = tmp_path / "scale"
    Journal(scale, None, "nas-scale", {"base": {}})
    train = tmp_path / "train"
    train.mkdir()
    (train / "train.json").write_text(json.dumps({"settings": {}, "status": "started"}))
    assert [kind_of(path).name for path in (search, scale, train)] == ["search", "scale", "train"]


def test_another_kind_of_run_in_the_directory_is_refused_before_anything_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    Journal(out, None, "nas-netadapt", {"start": {}})
    before = sorted(path.name for path in out.iterdir())
    assert main(["search", "--out", str(out), "--budget", "1"]) == 2
    assert "holds another kind of run (nas netadapt)" in capsys.readouterr().err
    assert main(["train", "mobilenetv3-small", "--out", str(out)]) == 2
    assert "holds another kind of run (nas netadapt)" in capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir()) == before


# Refused in one line, exit 2, before torch is imported (so in well under two seconds): the data folder,
# the evaluator's options and a resumed run's settings, as well as the flags and settings themselves.
REFUSALS = [
    (["search", "--dataset", "imagefolder", "--data-dir", "{tmp}/missing"], "does not exist"),
    (["search", "--dataset", "imagefolder", "--data-dir", "{tmp}/one-class"], "only one class"),
    (["search", "--dataset", "cifar10", "--data-dir", "{tmp}"], "--download"),
    (["search", "--config", "{tmp}/bad-option.yaml"], "epoch: not a proxy setting"),
    (["search", "--config", "{tmp}/bad-value.yaml"], "batch_size: must be a positive integer"),
    (["search", "--config", "{tmp}/bad-reduction.yaml"], "penultimate_filters"),
    (["search", "--budget", "5", "--seed", "3"], "other settings (seed: 0 -> 3)"),
    (["search", "--objective", "metric:top5", "--evaluator", "nope"], "unknown evaluator 'nope'"),
    (["scale", "--dataset", "imagefolder"], "needs --data-dir"),
    (["train", "mobilenetv3-small", "--dataset", "imagefolder", "--data-dir", "{tmp}/missing"], "does not exist"),
    (["netadapt", "--latency-ratio", "0.5", "--decay", "-1"], "decay: must be a number in (0, 1]"),
]


def test_user_mistakes_are_refused_before_torch_is_imported(tmp_path: Path) -> None:
    (tmp_path / "one-class" / "cat").mkdir(parents=True)
    (tmp_path / "one-class" / "cat" / "a.png").write_bytes(b"")
    (tmp_path / "bad-option.yaml").write_text("evaluator_options: {epoch: 2}\n")
    (tmp_path / "bad-value.yaml").write_text("evaluator_options: {batch_size: 0}\n")
    (tmp_path / "bad-reduction.yaml").write_text("evaluator_options: {num_cells: 1, penultimate_filters: 25}\n")
    run = tmp_path / "run"
    Journal(run, None, "nas-search", SearchSettings(out=str(run), budget=5).identity())
    script = (
        "import json, sys\nfrom nas.cli import main\nresults = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    results.append((main(argv), 'torch' in sys.modules))\n"
        "print(json.dumps(results))\n"
    )
    argvs = [
        [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
        + ["--out", str(run if "--seed" in argv else tmp_path / f"fresh-{i}")]
        for i, (argv, _) in enumerate(REFUSALS)
    ]
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(argvs)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])
    errors = [line for line in done.stderr.splitlines() if line.startswith("nas: error:")]
    assert len(errors) == len(REFUSALS), done.stderr
    for (argv, message), (code, torch_imported), error in zip(REFUSALS, results, errors):
        assert code == 2 and message in error, (argv, error)
        assert not torch_imported, argv
    assert not any((tmp_path / f"fresh-{i}").exists() for i in range(len(REFUSALS)))  # nothing written


def test_an_evaluator_that_declares_no_hooks_is_refused_with_a_pointer_to_the_base() -> None:
    class Bare:
        def __init__(self, space, **data):
            pass

        def evaluate(self, genotype, trial_id):
            return {"accuracy": 1.0}

    registry.evaluators.register("bare-test", Bare)
    try:
        with pytest.raises(ValueError, match="subclass nas.evaluator.EvaluatorBase"):
            make_evaluator("bare-test", get("efficientnet"))
    finally:
        registry.evaluators.unregister("bare-test")

    class Declared(EvaluatorBase):
        def __init__(self, space, **data):
            pass

    registry.evaluators.register("declared-test", Declared)
    try:
        evaluator = make_evaluator("declared-test", get("efficientnet"))
        assert not evaluator.repeatable and not evaluator.reports_epochs and evaluator.metrics() is None
        assert evaluator.describe() == {} and evaluator.prepare_repeats(3) is None
    finally:
        registry.evaluators.unregister("declared-test")


def test_space_capabilities_are_declared_protocols() -> None:
    assert isinstance(get("mobilenetv3"), Scalable) and isinstance(get("mobilenetv3"), Prunable)
    assert isinstance(get("efficientnet"), Scalable) and not isinstance(get("nasnet"), Scalable)
    assert not isinstance(get("nasnet"), Prunable)


def test_a_controller_declares_whether_it_takes_a_variant() -> None:
    optuna_factory, options = controller_factory("optuna:TPESampler")
    assert (
        isinstance(optuna_factory, TakesVariant)
        and optuna_factory.takes_variant
        and options == {"variant": "TPESampler"}
    )
    for name in ("tpe", "random", "evolution"):
        factory = registry.controllers.get(name)
        assert not factory.takes_variant
        with pytest.raises(ValueError, match="takes no variant"):
            controller_factory(f"{name}:TPESampler")


def test_show_describes_a_search_that_has_not_finished_a_trial(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    settings = SearchSettings(out=str(out), controller="random", budget=7)
    Journal(out, None, "nas-search", settings.identity()).study.set_user_attr("nas_budget", 7)
    assert main(["show", str(out)]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "nas search run" in shown and "not started" in shown and "0 trials started, 0 finished" in shown
    with RunLock(out):  # a process holds it: running
        assert main(["show", str(out), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)["run"]
        assert status["status"].startswith("running (pid") and status["finished"] == 0 and status["budget"] == 7
    assert main(["materialize", str(out), "--out", str(tmp_path / "x.pt")]) == 2
    assert "without a finished architecture yet" in capsys.readouterr().err


def test_show_describes_an_interrupted_search(tmp_path: Path, run_and_kill, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("evaluator_options: {num_cells: 1, penultimate_filters: 24, batch_size: 64}\n")
    out = tmp_path / "run"
    printed = run_and_kill(
        [
            "search",
            "--controller",
            "random",
            "--budget",
            "50",
            "--dataset",
            "synthetic",
            "--epochs",
            "1",
            "--config",
            str(config),
            "--out",
            str(out),
            "--no-progress",
        ],
        2,
    )
    assert printed == 2 and not (out / "best.json").exists()
    assert main(["show", str(out), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)["run"]
    assert status["status"].startswith("interrupted") and status["finished"] >= 2 and status["budget"] == 50
    assert status["started"] >= status["finished"]
