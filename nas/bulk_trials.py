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

import json
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import distribution_to_json
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models  # Optuna's own table definitions: the rows add_trial writes
from optuna.trial import FrozenTrial
from sqlalchemy import func, insert, select


def insert_trials(storage: BaseStorage, study: optuna.Study, trials: Sequence[FrozenTrial]) -> None:
    """Append finished ``trials`` (``optuna.trial.create_trial`` objects) to ``study``, all or none."""
    if not trials:
        return
    if not isinstance(storage, RDBStorage):
        for trial in trials:
            study.add_trial(trial)
        return
    study_id = storage.get_study_id_from_name(study.study_name)
    session = storage.scoped_session()
    try:
        # The study's row lock serialises trial numbering against other writers, as add_trial does.
        session.execute(
            select(models.StudyModel.study_id).where(models.StudyModel.study_id == study_id).with_for_update()
        )
        first = session.execute(
            select(func.count(models.TrialModel.trial_id)).where(models.TrialModel.study_id == study_id)
        ).scalar_one()
        ids = _insert_trial_rows(session, study_id, first, trials)
        values, params, attributes = _child_rows(ids, trials)
        for model, rows in (
            (models.TrialValueModel, values),
            (models.TrialParamModel, params),
            (models.TrialUserAttributeModel, attributes),
        ):
            if rows:
                session.execute(insert(model.__table__), rows)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _insert_trial_rows(session: Any, study_id: int, first: int, trials: Sequence[FrozenTrial]) -> list[int]:
    """Insert the ``trials`` rows numbered from ``first``; their database ids, in order."""
    ids = []
    for offset, trial in enumerate(trials):
        row = models.TrialModel(study_id=study_id, number=first + offset, state=trial.state)
        row.datetime_start = trial.datetime_start  # the model's setters store naive UTC, as Optuna does
        row.datetime_complete = trial.datetime_complete
        session.add(row)
        ids.append(row)
    session.flush()  # one INSERT ... RETURNING per batch (SQLAlchemy's insertmanyvalues)
    return [row.trial_id for row in ids]


def _child_rows(
    ids: Sequence[int], trials: Sequence[FrozenTrial]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The value, param and user-attribute rows of ``trials`` (database ids ``ids``)."""
    values, params, attributes = [], [], []
    for trial_id, trial in zip(ids, trials):
        if trial.values is not None:
            for objective, value in enumerate(trial.values):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                values.append({"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind})
        for name, value in trial.params.items():
            distribution = trial.distributions[name]
            params.append(
                {
                    "trial_id": trial_id,
                    "param_name": name,
                    "param_value": distribution.to_internal_repr(value),
                    "distribution_json": distribution_to_json(distribution),
                }
            )
        for key, value in trial.user_attrs.items():
            attributes.append({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)})
    return values, params, attributes
