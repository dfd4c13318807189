"""``--warm-start``: random architectures scored by zero-cost proxies, the best evaluated first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch

from nas.search.run import WARM_START_FILE, run_search
from nas.search.settings import SearchSettings
from nas.search.warm_start import candidates, rank_mean, select
from nas.space import canonical_key, get


def test_rank_mean_orders_by_every_score_and_puts_the_unscored_last() -> None:
    values = [{"a": 1.0, "b": 30.0}, {"a": 3.0, "b": 10.0}, {"a": 2.0, "b": 20.0}, {"a": float("nan")}, {}]
    combined = rank_mean(values, ["a", "b"])
    # a: ranks 3, 5, 4, then the two unscored tied at (1 + 2) / 2; b: 5, 3, 4, 1.5, 1.5 (of 5 cells).
    assert combined.tolist() == pytest.approx([(3 + 5) / 10, (5 + 3) / 10, (4 + 4) / 10, 0.3, 0.3])
    assert rank_mean(values[:3], ["a"]).argmax() == 1


def test_select_takes_the_best_of_distinct_classes_seeded() -> None:
    space = get("nb201")
    drawn = candidates(space, 200, seed=4)
    assert len({canonical_key(space, space.decode(c)) for c in drawn}) == 200 == len(drawn)
    assert drawn == candidates(space, 200, seed=4) and drawn != candidates(space, 200, seed=5)

    def score(genotype: Any, index: int) -> dict[str, float]:  # convolutions count, a stand-in for a proxy
        edges = genotype.edges
        return {"convs": float(sum(op.startswith("nor_conv") for op in edges)), "index": float(-index)}

    chosen, scored = select(space, score, 200, 5, seed=4, scores=["convs"])
    assert len(chosen) == 5 and len(scored) == 200
    best = max(entry["convs"] for entry in scored)
    assert all(sum(v.startswith("nor_conv") for v in c.values()) == best for c in chosen[:1])
    assert np.argsort([-e["rank_mean"] for e in scored], kind="stable")[:5].tolist() == [drawn.index(c) for c in chosen]
    with pytest.raises(ValueError, match="need 1 <= top <= candidates"):
        select(space, score, 3, 4, seed=0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"warm_start_top": 3}, "they set the warm start; add --warm-start N"),
        ({"warm_start": -1}, "warm_start: must be 0"),
        ({"warm_start": 10, "warm_start_top": 7, "budget": 5}, "between 1 and the smaller of"),
        ({"warm_start": 10, "warm_start_scores": ["jacov", "zen"]}, "scores: 'zen' is not a zero-cost score"),
    ],
)
def test_bad_warm_starts_are_refused_before_anything_runs(tmp_path: Path, settings: dict, message: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        SearchSettings(out=str(out), space="nb201", dataset="synthetic", **settings).validate()
    assert not out.exists()


def test_a_warm_started_search_evaluates_the_chosen_first_and_resumes_without_scoring_again(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "run"
    said: list[str] = []
    settings: dict[str, Any] = {
        "out": str(out),
        "space": "nb201",
        "controller": "reinforce",
        "evaluator": "zero-cost",  # a quick evaluator, so the test trains nothing
        "evaluator_options": {"scores": ["params", "flops"]},
        "objective": "metric:params",
        "dataset": "synthetic",
        "warm_start": 12,
        "warm_start_top": 3,
        "warm_start_scores": ["params", "synflow"],
    }
    run_search(SearchSettings(**settings, budget=4), on_estimate=said.append)
    record = json.loads((out / WARM_START_FILE).read_text())
    assert (record["candidates"], record["top"], record["scores"]) == (12, 3, ["params", "synflow"])
    assert said and said[0].startswith("warm start: 12 candidates scored by params + synflow")
    trials = sorted(
        optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}").get_trials(),
        key=lambda t: t.number,
    )
    space = get("nb201")
    recorded = [space.encode(space.genotype_from_dict(t.user_attrs["genotype"]["genotype"])) for t in trials[:3]]
    assert recorded == record["chosen"]
    stamp = (out / WARM_START_FILE).stat().st_mtime_ns
    said.clear()
    run_search(SearchSettings(**settings, budget=6), on_estimate=said.append)  # resumed: nothing scored again
    assert (out / WARM_START_FILE).stat().st_mtime_ns == stamp and not any(s.startswith("warm start") for s in said)
