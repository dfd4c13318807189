"""Where a search run stands, read without writing: ``nas show DIR`` before, during and after it.

A run that has not finished a trial yet (starting, running, or killed) is still a run: its settings,
how many trials the controller has handed out, how many finished or failed, which are in flight,
and whether a process holds the directory now (``nas.lock.RunLock.holder``) or it was interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas.journal import SETTINGS_KEY
from nas.lock import RunLock
from nas.storage import JOURNAL_NAME, study_names

STATE_FILE = "controller.pt"
BUDGET_KEY = "nas_budget"  # study attribute: the budget of the run's last invocation (it may grow)


def run_status(out: Path, study_name: str) -> dict[str, Any] | None:
    """Settings and progress of the search in ``out`` (study ``study_name``), or None if it has none."""
    if not (out / JOURNAL_NAME).is_file():
        return None
    if study_name not in study_names(out):  # a damaged journal is reported in one line, never opened by Optuna
        return None
    storage = f"sqlite:///{(out / JOURNAL_NAME).resolve()}"
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    settings = study.user_attrs.get(SETTINGS_KEY, {})
    finished = {trial.user_attrs.get("trial_id") for trial in trials}
    started, pending = _handed_out(out, trials)
    running = sorted(trial for trial in pending if trial not in finished)
    holder = RunLock.holder(out)
    budget = study.user_attrs.get(BUDGET_KEY)
    if holder is not None:
        state = f"running ({holder})"
    elif (out / "best.json").is_file() or (out / "report.md").is_file():
        state = "finished"
    else:
        state = "interrupted: rerun the same nas search command to resume it" if started else "not started"
    return {
        "study": study_name,
        "settings": settings,
        "status": state,
        "started": max(started, len(trials)),
        "finished": len(trials),
        "failed": len(trials) - len(complete),
        "running": running,
        "budget": budget,
        "best_reward": max((trial.value for trial in complete), default=None),
    }


def _handed_out(out: Path, trials: list[Any]) -> tuple[int, list[int]]:
    """Trials the controller has handed out, and those asked but not told, from its saved state
    (the records' ``asked`` counts when the state is missing or torn)."""
    path = out / STATE_FILE
    if path.is_file():
        import torch  # lazy: reading where a search stands needs torch only for its controller's state

        try:
            state = torch.load(path, weights_only=True)
            pending = [int(item["id"]) for item in state.get("pending", [])]
            return int(state.get("next_id", 0)), pending
        except Exception:
            pass
    asked = [trial.user_attrs.get("asked") for trial in trials]
    return max((a for a in asked if isinstance(a, int)), default=len(trials)), []
