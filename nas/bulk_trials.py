"""Finished trials written to an Optuna RDB storage many at a time, in one transaction.

``Study.add_trial`` costs about 25 statements and 20 ms per trial on SQLite (each param and user
attribute is looked up, checked and written on its own), which caps a search with a table-lookup
evaluator at ~40 trials/s. ``insert_trials`` writes a batch of finished trials with one INSERT
per table, through Optuna's own table definitions (``optuna.storages._rdb.models``) so the rows
are exactly those ``add_trial`` would write: the same columns, the same internal representation of
params, values and attributes, trial numbers counted under the study's row lock as Optuna counts
them. ``tests/nas/test_journal_batches.py`` reads both back through Optuna and compares them, so
a schema change in a future Optuna fails a test rather than a run. A storage that is not an
``RDBStorage`` gets ``add_trial`` per trial.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models  # Optuna's own table definitions: the rows add_trial writes
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import func, insert, select


@dataclass(frozen=True)
class FinishedTrial:
    """A finished trial as ``optuna.trial.create_trial`` takes it, without its per-trial validation.

    ``params`` are the values as the user sees them; ``distributions`` may be shared by every trial
    of a study (built once per space). Started and completed when it is made.
    """

    state: TrialState
    value: float | None
    params: Mapping[str, Any]
    distributions: Mapping[str, BaseDistribution]
    user_attrs: Mapping[str, Any]
    datetime_complete: datetime.datetime = field(default_factory=datetime.datetime.now)

    def frozen(self) -> FrozenTrial:
        """The same trial as Optuna's ``FrozenTrial`` (validated): what ``Study.add_trial`` takes."""
        return optuna.trial.create_trial(
            params=dict(self.params),
            distributions=dict(self.distributions),
            state=self.state,
            value=self.value,
            user_attrs=dict(self.user_attrs),
        )


def insert_trials(storage: BaseStorage, study: optuna.Study, trials: Sequence[FinishedTrial]) -> None:
    """Append finished ``trials`` to ``study``, all or none."""
    if not trials:
        return
    if not isinstance(storage, RDBStorage):
        for trial in trials:
            study.add_trial(trial.frozen())
        return
    study_id = storage.get_study_id_from_name(study.study_name)
    session = storage.scoped_session()
    try:
        # The study's row lock serialises trial numbering against other writers, as add_trial does.
        session.execute(
            select(models.StudyModel.study_id).where(models.StudyModel.study_id == study_id).with_for_update()
        )
        # After the last number, not the count of rows: a row deleted by hand leaves a gap, and a count
        # would number the next trial as one that exists (Optuna then lists only one of the two).
        last = session.execute(
            select(func.max(models.TrialModel.number)).where(models.TrialModel.study_id == study_id)
        ).scalar_one()
        first = 0 if last is None else last + 1
        table = models.TrialModel.__table__
        rows = [
            {
                "study_id": study_id,
                "number": first + offset,
                "state": trial.state,
                "datetime_start": _naive_utc(trial.datetime_complete),  # create_trial starts it when it ends
                "datetime_complete": _naive_utc(trial.datetime_complete),
            }
            for offset, trial in enumerate(trials)
        ]
        inserted = session.execute(insert(table).returning(table.c.trial_id, sort_by_parameter_order=True), rows)
        ids = [row[0] for row in inserted]
        for model, children in zip(
            (models.TrialValueModel, models.TrialParamModel, models.TrialUserAttributeModel), _child_rows(ids, trials)
        ):
            if children:
                session.execute(insert(model.__table__), children)  # type: ignore[attr-defined]
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _naive_utc(moment: datetime.datetime) -> datetime.datetime:
    """How Optuna's RDB storage keeps a datetime (``TrialModel.datetime_start``'s setter)."""
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def _child_rows(
    ids: Sequence[int], trials: Sequence[FinishedTrial]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The value, param and user-attribute rows of ``trials`` (database ids ``ids``)."""
    values, params, attributes = [], [], []
    as_json: dict[int, str] = {}  # a distribution shared by every trial is written to JSON once
    for trial_id, trial in zip(ids, trials):
        if trial.value is not None:
            stored, kind = models.TrialValueModel.value_to_stored_repr(trial.value)
            values.append({"trial_id": trial_id, "objective": 0, "value": stored, "value_type": kind})
        for name, value in trial.params.items():
            distribution = trial.distributions[name]
            text = as_json.get(id(distribution))
            if text is None:
                text = as_json[id(distribution)] = distribution_to_json(distribution)
            params.append(
                {
                    "trial_id": trial_id,
                    "param_name": name,
                    "param_value": distribution.to_internal_repr(value),
                    "distribution_json": text,
                }
            )
        for key, value in trial.user_attrs.items():
            attributes.append({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)})
    return values, params, attributes
