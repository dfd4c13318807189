"""``--repeats`` (a candidate's reward is the mean of independent evaluations) and the final
selection stage (``--final-top``): combining metrics, independent seeds and splits, resume."""

import json
import math
import statistics

import optuna
import pytest
import torch

from evaluators.proxy import ProxyEvaluator
from nas import registry
from nas.cli.app import main
from nas.evaluator import EvaluatorBase, combine, repeated
from nas.seeds import split_seed, trial_seeds

TINY = "evaluator_options:\n  num_cells: 1\n  penultimate_filters: 24\n  batch_size: 64\n"


def test_combine_means_measured_numbers_sums_timings_and_keeps_facts():
    runs = [
        {"accuracy": 0.5, "params": 10, "seconds": 1.0, "epochs": 2, "resolution": 8, "note": "a"},
        {"accuracy": 0.7, "params": 10, "seconds": 2.5, "epochs": 3, "resolution": 8, "note": "b"},
    ]
    combined = combine(runs)
    assert combined["accuracy"] == pytest.approx(0.6)
    assert combined["accuracy_std"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert combined["accuracy_repeats"] == [0.5, 0.7]
    assert combined["seconds"] == 3.5 and "seconds_std" not in combined
    assert combined["params"] == 10 and "params_std" not in combined  # equal integers are facts
    assert combined["epochs"] == 2.5 and combined["epochs_repeats"] == [2, 3]  # integers that differ are measured
    assert combined["note"] == "a"
    # a float equal in every repeat still gets its spread, so every repeated run reports the same keys
    assert combine([{"accuracy": 0.5}, {"accuracy": 0.5}])["accuracy_std"] == 0.0
    # a non-finite value in any repeat (not only the first) poisons the mean
    assert math.isnan(combine([{"accuracy": 0.9}, {"accuracy": float("nan")}])["accuracy"])


class Recorded(EvaluatorBase):
    """Records every call; fails repeat 1 of the genotype "bad"."""

    repeatable = True

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def evaluate(self, genotype, trial_id, repeat=0):
        self.calls.append((trial_id, repeat))
        if genotype == "bad" and repeat == 1:
            return {"error": "diverged", "seconds": 0.1}
        return {"accuracy": 0.5 + 0.1 * repeat, "seconds": 1.0}


def test_repeated_calls_each_repeat_once_and_fails_with_the_failing_repeat():
    evaluator = Recorded()
    calls = evaluator.calls
    metrics = repeated(evaluator, 3)("good", 7)
    assert calls == [(7, 0), (7, 1), (7, 2)] and metrics["repeats"] == 3
    assert metrics["accuracy"] == pytest.approx(0.6) and metrics["seconds"] == 3.0
    calls.clear()
    assert repeated(evaluator, 2, first=3)("good", 1)["accuracy_repeats"] == pytest.approx([0.8, 0.9])
    assert calls == [(1, 3), (1, 4)]
    failed = repeated(evaluator, 3)("bad", 0)
    assert failed["error"] == "repeat 1: diverged"
    assert repeated(evaluator, 1)("good", 4) == {"accuracy": 0.5, "seconds": 1.0}  # the plain call
    calls.clear()
    single = repeated(evaluator, 1, first=2)("good", 4)  # a final stage with --final-repeats 1
    assert calls == [(4, 2)] and single == {"accuracy": pytest.approx(0.7), "seconds": 1.0, "repeats": 1}


def test_an_evaluator_that_is_not_repeatable_cannot_repeat():
    class Plain(EvaluatorBase):
        def evaluate(self, genotype, trial_id):
            return {"accuracy": 1.0}

    assert not Plain().repeatable and Recorded().repeatable
    assert repeated(Plain(), 1)("g", 0) == {"accuracy": 1.0}
    with pytest.raises(ValueError, match="not repeatable"):
        repeated(Plain(), 2)
    with pytest.raises(ValueError, match="positive integer"):
        repeated(Plain(), 0)


def test_repeats_draw_independent_seeds_and_splits_and_repeat_zero_is_unchanged():
    assert trial_seeds(3, 5, 0) == trial_seeds(3, 5)
    seeds = {trial_seeds(3, 5, r) for r in range(4)}
    assert len(seeds) == 4 and trial_seeds(3, 5, 2) == trial_seeds(3, 5, 2)
    assert split_seed(11, 0) == 11 and len({split_seed(11, r) for r in range(5)}) == 5
    with pytest.raises(ValueError, match="repeat"):
        trial_seeds(0, 0, -1)


def test_proxy_repeats_validate_on_other_images_and_repeat_zero_is_the_plain_call():
    torch.set_num_threads(1)
    space = registry.spaces.get("nasnet")
    evaluator = ProxyEvaluator(space, dataset="synthetic", epochs=1, num_cells=1, penultimate_filters=24)
    first, second = evaluator.splits_of(0), evaluator.splits_of(1)
    assert len(first.validation) == len(second.validation)
    assert not torch.equal(first.validation.tensors[0], second.validation.tensors[0])
    genotype = space.presets()["nasnet-a"] if "nasnet-a" in space.presets() else next(iter(space.presets().values()))
    plain = evaluator.evaluate(genotype, 2)
    again = evaluator.evaluate(genotype, 2, repeat=0)
    other = evaluator.evaluate(genotype, 2, repeat=1)
    assert plain["accuracy"] == again["accuracy"] and plain["final_train_loss"] == again["final_train_loss"]
    assert other["final_train_loss"] != plain["final_train_loss"]  # another init and data order
    assert other["params"] == plain["params"]


def _search(out, config, *extra):
    budget = [] if "--budget" in extra else ["--budget", "3"]
    return main(
        [
            "search",
            "--space",
            "nasnet",
            "--controller",
            "random",
            *budget,
            "--dataset",
            "synthetic",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--config",
            str(config),
            "--no-progress",
            *extra,
        ]
    )


def _trials(out, study):
    return optuna.load_study(study_name=study, storage=f"sqlite:///{out / 'study.db'}").get_trials()


def test_repeats_and_the_final_stage_end_to_end_and_resume(tmp_path, monkeypatch, capsys):
    torch.set_num_threads(1)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    out = tmp_path / "run"
    calls = []
    evaluate = ProxyEvaluator.evaluate

    def counted(self, genotype, trial_id, repeat=0):
        calls.append((trial_id, repeat, self.epochs))
        return evaluate(self, genotype, trial_id, repeat)

    monkeypatch.setattr(ProxyEvaluator, "evaluate", counted)
    assert (
        _search(out, config, "--repeats", "2", "--final-top", "1", "--final-repeats", "2", "--final-epochs", "2") == 0
    )
    search_trials = _trials(out, "nas-search")
    assert len(search_trials) == 3
    for trial in search_trials:
        metrics = trial.user_attrs["metrics"]
        assert metrics["repeats"] == 2 and len(metrics["accuracy_repeats"]) == 2
        assert trial.value == pytest.approx(-metrics["final_train_loss"])  # the proxy's default reward (SoTL-E)
    best_search = max(search_trials, key=lambda t: t.value)
    final_trials = _trials(out, "nas-search-final")
    assert len(final_trials) == 1 and final_trials[0].user_attrs["trial_id"] == best_search.user_attrs["trial_id"]
    assert final_trials[0].user_attrs["metrics"]["epochs"] == 2
    # the search used repeats 0 and 1 at 1 epoch; the final stage fresh repeats 2 and 3 at 2 epochs
    assert sorted({(r, e) for _, r, e in calls}) == [(0, 1), (1, 1), (2, 2), (3, 2)]
    report = (out / "report.md").read_text()
    assert "## Final selection" in report and " ± " in report
    # the final stage's repeats measure one evaluation's noise, which judges the search and the stage
    assert "## How sure\n" in report and "pooled over the repeats of 1 final-stage candidate)" in report
    assert "## How sure: the final stage" not in report  # one final candidate: nothing to compare
    assert json.loads((out / "best.json").read_text()) == best_search.user_attrs["genotype"]
    # a larger final stage on the same run: the search and the first final evaluation are not re-run
    calls.clear()
    capsys.readouterr()
    assert (
        _search(out, config, "--repeats", "2", "--final-top", "2", "--final-repeats", "2", "--final-epochs", "2") == 0
    )
    assert len(calls) == 2 and {e for _, _, e in calls} == {2}
    assert len(_trials(out, "nas-search-final")) == 2
    assert "(recorded before)" in capsys.readouterr().err
    # other repeats on the same run: a changed setting, refused
    assert _search(out, config, "--repeats", "3") == 2
    # another final training length: refused before the search runs (the larger budget adds no trial)
    calls.clear()
    assert _search(out, config, "--repeats", "2", "--final-top", "2", "--final-repeats", "2", "--budget", "5") == 2
    assert calls == [] and len(_trials(out, "nas-search")) == 3 and len(_trials(out, "nas-search-final")) == 2
    # leaving out the final stage would write another best.json: refused too
    assert _search(out, config, "--repeats", "2") == 2
    assert json.loads((out / "best.json").read_text()) == best_search.user_attrs["genotype"]
    # final-stage settings without a final stage: one line
    assert _search(tmp_path / "other", config, "--final-epochs", "3") == 2


def test_repeats_with_an_evaluator_that_cannot_repeat_is_one_line(tmp_path, capsys):
    class Plain(EvaluatorBase):
        def __init__(self, space, seed=0, dataset=None, data_dir=None, download=False):
            pass

        def evaluate(self, genotype, trial_id):
            return {"accuracy": 0.5}

    registry.evaluators.register("plain-test", Plain)
    try:
        code = main(
            [
                "search",
                "--evaluator",
                "plain-test",
                "--repeats",
                "2",
                "--out",
                str(tmp_path / "r"),
                "--budget",
                "2",
                "--controller",
                "random",
            ]
        )
    finally:
        registry.evaluators.unregister("plain-test")
    err = capsys.readouterr().err
    assert code == 2 and "repeats" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


class ScoreEvaluator(EvaluatorBase):
    """No training: the accuracy is a fixed function of the genotype (plus a per-repeat wobble)."""

    repeatable = True

    def __init__(self, space, seed=0, dataset=None, data_dir=None, download=False, epochs=1):
        self.space, self.seed = space, seed

    def evaluate(self, genotype, trial_id, repeat=0):
        from nas.testing import toy_reward

        return {"accuracy": toy_reward(self.space, genotype) + 0.001 * repeat, "seconds": 0.0}


@pytest.fixture
def score_evaluator():
    registry.evaluators.register("score-test", ScoreEvaluator)
    yield "score-test"
    registry.evaluators.unregister("score-test")


@pytest.mark.parametrize("state_lost", [False, True])
def test_a_resumed_search_with_a_larger_budget_keeps_the_options_it_began_with(tmp_path, score_evaluator, state_lost):
    """From the saved controller state, or, when that file is gone (torn, or a `nas doctor` export),
    from the study, where the options are recorded when the run begins."""
    from controllers.evolution import budget_defaults
    from nas.search.run import run_search
    from nas.search.settings import SearchSettings

    out = tmp_path / "run"
    settings = {"out": str(out), "space": "efficientnet", "controller": "evolution", "evaluator": score_evaluator}
    run_search(SearchSettings(**settings, budget=12))
    first = torch.load(out / "controller.pt", weights_only=True)
    assert (first["config"]["population_size"], first["config"]["sample_size"]) == budget_defaults(12)
    assert budget_defaults(40) != budget_defaults(12)
    if state_lost:
        (out / "controller.pt").unlink()
    run_search(SearchSettings(**settings, budget=40))
    resumed = torch.load(out / "controller.pt", weights_only=True)
    assert resumed["config"] == first["config"] and resumed["num_told"] == 40
    # the same 40 trials as a search that was given 40 from the start with the 12-trial settings
    other = tmp_path / "other"
    run_search(
        SearchSettings(
            **{**settings, "out": str(other)},
            budget=40,
            controller_options={"population_size": budget_defaults(12)[0], "sample_size": budget_defaults(12)[1]},
        )
    )
    genotypes = [
        [t.user_attrs["genotype"] for t in sorted(_trials(d, "nas-search"), key=lambda t: t.number)]
        for d in (out, other)
    ]
    assert genotypes[0] == genotypes[1]
    report = (out / "report.md").read_text()
    assert "controller settings at this budget" in report and '"population_size": 4' in report


def test_a_degenerate_setting_is_warned_about_in_one_line_at_start(tmp_path, score_evaluator, caplog):
    config = tmp_path / "c.yaml"
    config.write_text("controller_options:\n  population_size: 4\n")
    with caplog.at_level("WARNING"):
        code = main(
            [
                "search",
                "--space",
                "efficientnet",
                "--controller",
                "evolution",
                "--evaluator",
                score_evaluator,
                "--budget",
                "6",
                "--out",
                str(tmp_path / "run"),
                "--config",
                str(config),
                "--no-progress",
            ]
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert code == 0 and len(warnings) == 1 and "population_size 4" in warnings[0], warnings
    assert "\n" not in warnings[0]
