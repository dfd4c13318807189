"""A journal that cannot be read is never replaced: report the damage, rescue what is readable.

``nas.storage.check_journal_file`` stops a run at a damaged ``DIR/study.db`` before Optuna opens
it. ``diagnose`` (``nas doctor DIR``) reports what is readable, working on a copy so the original is
never touched; ``export`` writes the readable finished trials and the run's settings into a new
run directory, from which ``nas search`` resumes by replaying them.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from nas.space import SearchSpace
from nas.storage import JOURNAL_NAME, damage


@dataclass
class Diagnosis:
    """What ``nas doctor`` found: the damage, the run's settings and every readable finished trial.

    ``trials`` are plain records: ``{"user_attrs", "state" ("COMPLETE" | "FAIL"), "value"}``.
    """

    path: Path
    damage: str | None
    studies: list[str] = field(default_factory=list)
    study_name: str | None = None
    unreadable: int = 0
    settings: dict[str, Any] | None = None
    trials: list[dict[str, Any]] = field(default_factory=list, repr=False)
    attributes: dict[str, Any] = field(default_factory=dict, repr=False)  # the study's user attributes

    @property
    def finished(self) -> int:
        return len(self.trials)

    @property
    def healthy(self) -> bool:
        return self.damage is None and not self.unreadable


def diagnose(out: Path, study_name: str | None = None) -> Diagnosis:
    """Read everything readable of ``out/study.db``, from a copy: the original is only ever read.

    The file is read row by row with SQLite, keeping every finished trial of the study whose record
    (trial id, genotype, status) can still be read and parsed. ``study_name`` picks the study
    (default: the only one, else ``nas-search``).
    """
    path = out / JOURNAL_NAME
    if not path.is_file():
        raise ValueError(f"{out}: no {JOURNAL_NAME}; not a search run directory")
    diagnosis = Diagnosis(path, damage(path))
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / JOURNAL_NAME
        shutil.copyfile(path, copy)
        try:
            connection = sqlite3.connect(copy)
        except sqlite3.Error:
            return diagnosis
        try:
            studies = dict(_rows(connection, "SELECT study_name, study_id FROM studies"))
            diagnosis.studies = sorted(studies)
            searches = [s for s in diagnosis.studies if not s.endswith("-final")]  # a final stage is not the run
            name = study_name or (searches[0] if len(searches) == 1 else "nas-search")
            if name not in studies and diagnosis.damage is None and studies:  # a readable journal without it
                raise ValueError(
                    f"{path}: holds no study {name!r}; its studies: {', '.join(diagnosis.studies)} "
                    "(--study-name picks one)"
                )
            if name not in studies:
                return diagnosis
            diagnosis.study_name, study_id = name, studies[name]
            for key, value in _rows(
                connection, f"SELECT key, value_json FROM study_user_attributes WHERE study_id = {int(study_id)}"
            ):
                diagnosis.attributes[key] = _json(value)
            diagnosis.settings = diagnosis.attributes.get("nas_settings")
            states = dict(_rows(connection, f"SELECT trial_id, state FROM trials WHERE study_id = {int(study_id)}"))
            attrs: dict[int, dict[str, Any]] = {}
            for row_id, key, value in _rows(connection, "SELECT trial_id, key, value_json FROM trial_user_attributes"):
                if row_id in states:
                    attrs.setdefault(row_id, {})[key] = _json(value)
            values = dict(_rows(connection, "SELECT trial_id, value FROM trial_values"))
        finally:
            connection.close()
    for row_id, user_attrs in sorted(attrs.items()):
        state = states.get(row_id)
        if state not in ("COMPLETE", "FAIL") or not _parsed(user_attrs):
            diagnosis.unreadable += 1
            continue
        if state == "COMPLETE" and values.get(row_id) is None:
            diagnosis.unreadable += 1
            continue
        diagnosis.trials.append({"user_attrs": user_attrs, "state": state, "value": values.get(row_id)})
    diagnosis.unreadable += max(0, len(states) - len(attrs))
    return diagnosis


def _parsed(attrs: dict[str, Any]) -> bool:
    """A trial record the journal can replay: an integer trial id, a status and a genotype document."""
    genotype = attrs.get("genotype")
    return (
        isinstance(attrs.get("trial_id"), int)
        and attrs.get("status") in ("complete", "failed")
        and isinstance(genotype, dict)
        and isinstance(genotype.get("space"), str)
        and isinstance(genotype.get("genotype"), dict)
    )


def _rows(connection: sqlite3.Connection, query: str) -> list[tuple[Any, ...]]:
    """The rows SQLite can read, in order, up to the first damaged page."""
    rows: list[tuple[Any, ...]] = []
    try:
        for row in connection.execute(query):
            rows.append(row)
    except sqlite3.Error:
        pass
    return rows


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None


def export(diagnosis: Diagnosis, new_out: Path, space: SearchSpace[Any], files: tuple[str, ...] = ()) -> int:
    """Write the readable finished trials and the settings into ``new_out/study.db``; return how many.

    Each trial is rebuilt from its genotype JSON by ``space`` (the run's: its kind rebuilds it from
    the recorded settings), its params are the space's decisions, so the new journal is what the
    run would have written, and the run resumes from it. The study keeps its name; ``files`` of
    the run directory travel along (a NetAdapt run's trained weights). It is written in a temporary
    folder and renamed: a failure leaves no half export.
    """
    if new_out.exists() and any(new_out.iterdir()):
        raise ValueError(f"{new_out}: exists and is not empty; export into a new directory")
    distributions = {
        d.name: CategoricalDistribution(list(d.choices))  # type: ignore[arg-type]
        for d in space.decisions()
    }
    if new_out.exists():
        new_out.rmdir()  # empty, checked above; replaced by the finished export below
    partial = new_out.with_name(f".{new_out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        count = _write_export(diagnosis, partial, space, distributions)
    except Exception:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    run = diagnosis.path if diagnosis.path.is_dir() else diagnosis.path.parent
    for name in files:
        source = run / name
        if source.is_dir():
            shutil.copytree(source, partial / name)
        elif source.is_file():
            shutil.copy2(source, partial / name)
    os.replace(partial, new_out)
    return count


def _write_export(diagnosis: Diagnosis, folder: Path, space: Any, distributions: dict[str, Any]) -> int:
    study = optuna.create_study(
        storage=f"sqlite:///{(folder / JOURNAL_NAME).resolve()}",
        study_name=diagnosis.study_name or "nas-search",
        direction="maximize",
    )
    for key, value in diagnosis.attributes.items():  # the controller's options, a NetAdapt run's start latency, ...
        study.set_user_attr(key, value)
    study.set_user_attr("nas_settings", diagnosis.settings)
    seen: set[int] = set()
    for trial in diagnosis.trials:  # in the order they were recorded: a parallel run's replay needs it
        attrs = trial["user_attrs"]
        if attrs["trial_id"] in seen:
            continue  # two writers once recorded the same trial: keep the first
        try:
            genotype = space.genotype_from_dict(attrs["genotype"]["genotype"])
        except ValueError:
            diagnosis.unreadable += 1  # a record that no longer validates is left out, and counted
            continue
        complete = trial["state"] == "COMPLETE"
        study.add_trial(
            optuna.trial.create_trial(
                params=space.encode(genotype),
                distributions=distributions,
                user_attrs=attrs,
                state=TrialState.COMPLETE if complete else TrialState.FAIL,
                value=trial["value"] if complete else None,
            )
        )
        seen.add(attrs["trial_id"])
    return len(seen)
