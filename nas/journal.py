"""The search journal: an Optuna study, plus the controller's state beside it.

Every finished evaluation is one finished Optuna trial (COMPLETE, or FAIL with the reason):
its params are the space's decisions, its user attributes hold the controller's trial id, the
genotype JSON, the metrics and the status. The study's user attributes hold the search settings,
so a different command on the same run is refused. ``optuna-dashboard sqlite:///RUN/study.db``
opens any run.

Crash safety: a batch of trials (``add(..., write=False)`` then ``flush()``; one trial with
``add``) is one SQLite transaction, all or none, and the controller state is written to a
temporary file and renamed. A resumed search replays recorded results for any trial the
controller proposes again, so nothing written is lost or evaluated twice (``nas.loop``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from nas.bulk_trials import FinishedTrial, insert_trials
from nas.controller import Result
from nas.errors import first_line
from nas.files import atomic_torch_save
from nas.space import SearchSpace
from nas.storage import JOURNAL_NAME, check_journal_file, discard_debris, study_names

logger = logging.getLogger(__name__)

SETTINGS_KEY = "nas_settings"


@dataclass(frozen=True)
class Record:
    """One finished evaluation as kept in the journal."""

    trial_id: int
    choices: dict[str, Any]
    genotype: dict[str, Any]
    result: Result
    asked: int | None = None  # trials handed out when it was told (None: a record older than this field)


class Journal:
    """Read and append finished trials of one search; save and load the controller state."""

    def __init__(
        self,
        out: Path,
        storage: str | None,
        study_name: str,
        settings: dict[str, Any],
        defaults: Mapping[str, Any] | None = None,
        renamed: Mapping[str, str] | None = None,
    ) -> None:
        """Open or create the study; ``defaults`` stand in for settings a run recorded before they existed,
        ``renamed`` maps the old names of recorded settings to their names now (``check_identity``)."""
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.state_path = out / "controller.pt"
        if storage is None:
            check_journal_file(out)  # a damaged journal stops here, untouched
            discard_debris(out)  # a journal that never held a trial (``nas.storage.is_debris``) is begun again
        self.storage = storage or f"sqlite:///{(out / JOURNAL_NAME).resolve()}"
        try:
            self._rdb = optuna.storages.RDBStorage(self.storage)
            self.study = optuna.create_study(
                storage=self._rdb, study_name=study_name, direction="maximize", load_if_exists=True
            )
        except (SQLAlchemyError, OSError, ValueError, ImportError) as error:
            raise ValueError(f"storage {self.storage}: cannot open the study ({_storage_reason(error)})") from None
        recorded = self.study.user_attrs.get(SETTINGS_KEY)
        if recorded is None:
            if self.study.trials:
                raise ValueError(f"study {study_name!r} in {self.storage} has trials but no nas settings")
            self.study.set_user_attr(SETTINGS_KEY, settings)
        else:
            check_identity(out, recorded, settings, defaults, renamed)
        self.records: dict[int, Record] = {}
        self._unwritten: list[FinishedTrial] = []  # added, not yet flushed
        self._spaces: dict[str, dict[str, BaseDistribution]] = {}  # each space's distributions, built once
        damaged = (
            f"{self.storage}: a finished trial's record cannot be read; `nas doctor {out}` reports what "
            "is readable and can export it"
        )
        try:
            trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        except (ValueError, SQLAlchemyError):  # JSON that no longer parses, rows SQLite cannot read
            raise ValueError(damaged) from None
        for trial in trials:
            try:
                record = _record_of(trial)
            except (KeyError, TypeError, ValueError):
                raise ValueError(damaged) from None
            self.records[record.trial_id] = record

    def __len__(self) -> int:
        return len(self.records)

    def add(
        self,
        trial_id: int,
        space: SearchSpace[Any],
        genotype: Any,
        genotype_json: dict[str, Any],
        result: Result,
        asked: int | None = None,
        write: bool = True,
    ) -> Record:
        """Append one finished evaluation as a finished Optuna trial.

        ``asked``: how many trials the controller had handed out when this one was told (a replay
        repeats the asks and tells of a parallel search in that order, ``nas.loop.Driver``).
        ``write=False`` keeps it in memory (``records``, ``len``) until the next ``flush``: a search
        of cheap evaluations writes its trials in batches (``nas.loop.Driver``).
        """
        choices = space.encode(genotype)
        state = TrialState.FAIL if result.failed else TrialState.COMPLETE
        frozen = FinishedTrial(
            state=state,
            value=None if result.reward is None else float(result.reward),
            params=choices,
            distributions=self._distributions(space),
            user_attrs={
                "trial_id": trial_id,
                "genotype": genotype_json,
                "metrics": _jsonable(result.metrics),
                "status": "failed" if result.failed else "complete",
                "error": result.error,
                **({} if asked is None else {"asked": int(asked)}),
            },
        )
        self._unwritten.append(frozen)
        record = Record(trial_id, choices, genotype_json, result, asked)
        self.records[trial_id] = record
        if write:
            self.flush()
        return record

    def _distributions(self, space: SearchSpace[Any]) -> dict[str, BaseDistribution]:
        """Optuna's distribution of each decision (choices are hashable values Optuna stores as they are)."""
        if space.name not in self._spaces:
            self._spaces[space.name] = {
                decision.name: CategoricalDistribution(list(decision.choices))  # type: ignore[arg-type]
                for decision in space.decisions()
            }
        return self._spaces[space.name]

    @property
    def unwritten(self) -> int:
        """Trials added but not yet written (lost if the process is killed now)."""
        return len(self._unwritten)

    def flush(self) -> None:
        """Write every trial added since the last flush, in one transaction (``nas.bulk_trials``)."""
        if not self._unwritten:
            return
        batch, self._unwritten = self._unwritten, []
        try:
            insert_trials(self._rdb, self.study, batch)
        except (optuna.exceptions.StorageInternalError, SQLAlchemyError) as error:
            first = batch[0].user_attrs["trial_id"]
            for trial in batch:  # not written: not recorded, so a rerun evaluates them again
                self.records.pop(trial.user_attrs["trial_id"], None)
            raise ValueError(
                f"{self.storage}: cannot record trial {first} ({_storage_reason(error)}); the "
                "trials recorded before it are kept, and rerunning the command resumes"
            ) from None

    def save_controller(self, state: dict[str, Any]) -> None:
        """Write the controller state atomically (temporary file, fsync, rename)."""
        atomic_torch_save(self.state_path, state)

    def load_controller(self) -> dict[str, Any] | None:
        if not self.state_path.exists():
            return None
        import torch  # lazy: a run opens its journal, and checks its settings, before it needs torch

        try:
            return torch.load(self.state_path, weights_only=True)
        except Exception:
            logger.warning("could not read %s; replaying the journal instead", self.state_path)
            return None

    def study_names(self) -> list[str]:
        """Every study in this journal's storage (a search's final stage keeps its own beside it)."""
        return optuna.get_all_study_names(self.storage)

    def ranked(self) -> list[Record]:
        """Successful records, best reward first (ties: lower trial id first)."""
        done = [r for r in self.records.values() if not r.result.failed]
        return sorted(done, key=lambda r: (-(r.result.reward or 0.0), r.trial_id))


def check_identity(
    out: Path,
    recorded: Any,
    identity: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
    renamed: Mapping[str, str] | None = None,
    command: str = "nas",
) -> None:
    """``ValueError`` naming what differs if ``out`` recorded another identity than ``identity``.

    ``defaults`` stand in for settings added after a run was recorded (it was made with that value);
    ``renamed`` maps a recorded setting's old name to its name now (``proxy`` -> ``evaluator_options``).
    """
    if not isinstance(recorded, Mapping):
        raise ValueError(f"{out}: its recorded settings are unreadable; `nas doctor {out}` reports what is readable")
    recorded = {**(defaults or {}), **{(renamed or {}).get(key, key): value for key, value in recorded.items()}}
    if recorded != dict(identity):
        changed = sorted(k for k in set(recorded) | set(identity) if recorded.get(k) != identity.get(k))
        detail = ", ".join(f"{k}: {recorded.get(k)!r} -> {identity.get(k)!r}" for k in changed[:3])
        raise ValueError(
            f"{out} holds a {command} run with other settings ({detail}); use another --out "
            "or the original settings to resume"
        )


def check_recorded_settings(
    out: Path,
    study_name: str,
    identity: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
    renamed: Mapping[str, str] | None = None,
    command: str = "nas",
) -> None:
    """The refusal ``Journal`` would give a run in ``out`` (its own ``study.db``) with other settings, read
    without writing anything: so that it comes before the run is built or a backend connects to a cluster."""
    if not (out / JOURNAL_NAME).is_file() or study_name not in study_names(out):
        return
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{(out / JOURNAL_NAME).resolve()}")
    recorded = study.user_attrs.get(SETTINGS_KEY)
    if recorded is not None:
        check_identity(out, recorded, identity, defaults, renamed, command)


def _storage_reason(error: BaseException) -> str:
    """'no space left on the device' for a full disk, else the first line of the deepest cause."""
    cause: BaseException = error
    while (deeper := cause.__cause__ or cause.__context__) is not None:
        cause = deeper
    text = str(cause).lower()
    if "disk is full" in text or "no space left" in text:
        return "no space left on the device"
    return first_line(cause, with_type=True)


def _jsonable(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as JSON keeps them: a non-finite number as its string, anything else JSON cannot hold as ``str``."""
    try:
        json.dumps(metrics, allow_nan=False)
        return dict(metrics)  # the common case, checked at once
    except (TypeError, ValueError):
        pass
    clean = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        try:
            json.dumps(value)
        except TypeError:
            value = str(value)
        clean[key] = value
    return clean


def _record_of(trial: optuna.trial.FrozenTrial) -> Record:
    attrs = trial.user_attrs
    if attrs.get("status") == "failed":
        result = Result.failure(attrs.get("error") or "failed", attrs.get("metrics", {}))
    else:
        result = Result(reward=None if trial.value is None else float(trial.value), metrics=attrs.get("metrics", {}))
    if not isinstance(attrs["genotype"], dict):
        raise ValueError("genotype: not a genotype document")
    asked = attrs.get("asked")
    return Record(
        int(attrs["trial_id"]),
        dict(trial.params),
        attrs["genotype"],
        result,
        asked if isinstance(asked, int) and not isinstance(asked, bool) else None,
    )
