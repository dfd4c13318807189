"""The tabular evaluator: a candidate's metrics looked up in a benchmark table instead of trained.

Tabular benchmarks trained every architecture of a space once, so that search methods can be
compared in seconds on the same ground truth: NAS-Bench-201 (arXiv 2001.00326 §3: 15,625 cells,
200-epoch accuracies, and 12-epoch ones for multi-fidelity methods), HW-NAS-Bench (arXiv 2103.10584:
latency and energy of the same cells on six devices). ``TabularEvaluator`` looks a genotype up by
its space's own notation (``nas.space.Notated``) in one table or several joined on it, and returns
every column of its row (numbers as floats), with

- ``accuracy``: the reward column as a fraction (a column in % is divided by 100), by default the
  benchmark's search signal (NB201: ``valid_200ep``; its test accuracy is reported, never chosen
  on); ``fidelity`` picks a lower-fidelity column (NB201: 12 epochs), and the lower fidelities below
  the chosen one are ``report``-ed as intermediate epochs, so that ASHA's early stopping can be
  simulated;
- ``epochs``: the fidelity's epochs, when the tables declare it;
- ``simulated_cost``: the cost of the evaluation, so searches can be compared at equal simulated
  time: by default the network's multiply-accumulates per image times the epochs trained, in
  GMAC-epochs (``macs * epochs / 1e9``; proportional to the training compute on a fixed data set),
  the MACs read from a ``macs`` column (NB201: counted once by ``benchmarks/nb201_cost_table.py``
  with ``nas.cost``) or else counted on the lowered network the first time an architecture is seen;
  or any numeric column's value as it is (``cost: COLUMN``).

Metrics are a function of the genotype alone (no noise: the tables hold one value per cell), so
the evaluator is not ``repeatable``. An architecture missing from the first table is a failed
trial. Tables are read once per process (``prepare``) and each architecture's metrics are built
once, so an evaluation is a dict lookup and a copy. The options and tables are resolved without
torch by ``evaluators.tabular_options``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from typing import Any

from evaluators.tabular_options import MACS, TableFile, TabularSchema, table_columns
from nas.errors import first_line
from nas.evaluator import EvaluatorBase, Report
from nas.space import SearchSpace

GIGA = 1e9
# Tables parsed in this process: (path, size, mtime, key) -> {architecture: its row's fields}.
_LOADED: dict[tuple[Any, ...], dict[str, tuple[str, ...]]] = {}


class TabularEvaluator(EvaluatorBase[Any]):
    """A benchmark table's row as the metrics of a candidate (see the module docstring).

    Options (``evaluator_options``; ``evaluators.tabular_options`` resolves them): ``table`` (a
    shipped table's name or a CSV file, or a list of them joined on the key; default: the tables
    shipped for the space), ``join`` (more tables joined after those), ``key``, ``accuracy`` (the
    reward's column), ``fidelity`` (epochs: picks the column the tables declare for it; ``epochs``,
    the run's ``--epochs``, overrides it), ``fidelities`` (``{epochs: column}`` for a table without
    a sidecar), ``percent`` (accuracies in %; default: the sidecar's, else decided from the values),
    ``cost`` (``macs``, a column, or null). The data settings of the run (``seed``, ``dataset``,
    ...) are taken and ignored: the table is the data.
    """

    repeatable = False

    def __init__(
        self,
        space: SearchSpace[Any],
        *,
        seed: int = 0,
        dataset: str | None = None,
        data_dir: Any = None,
        download: bool = False,
        table: str | list[str] | None = None,
        join: str | list[str] | None = None,
        key: str | None = None,
        accuracy: str | None = None,
        fidelity: int | None = None,
        fidelities: Mapping[Any, str] | None = None,
        percent: bool | None = None,
        cost: str | None = MACS,
        epochs: int | None = None,
    ) -> None:
        given = {
            "table": table,
            "join": join,
            "key": key,
            "accuracy": accuracy,
            "fidelity": fidelity,
            "fidelities": fidelities,
            "percent": percent,
            "epochs": epochs,
        }
        self.schema = TabularSchema.of(space, {**{k: v for k, v in given.items() if v is not None}, "cost": cost})
        self.space = space
        self.epochs = self.schema.epochs
        self.reports_epochs = bool(self.schema.lower_fidelities)  # type: ignore[misc]  # per table, not per class
        self._to_string = space.to_string  # type: ignore[attr-defined]  # Notated: checked by the schema
        self._rows: list[dict[str, tuple[str, ...]]] | None = None
        self._fields: list[list[tuple[str, int]]] = []  # per table: (metric name, field index) of its columns
        self._scale = 1.0
        # architecture -> (its metrics, the intermediate reports before them)
        self._entries: dict[str, tuple[dict[str, Any], tuple[dict[str, Any], ...]]] = {}

    def prepare(self) -> None:
        """Read the tables (once per process) and check the reward's columns; ``ValueError`` for a bad table."""
        if self._rows is not None:
            return
        schema, rows, fields, taken = self.schema, [], [], []
        for number, table in enumerate(schema.tables):
            names = table_columns(table, schema.key, taken)
            fields.append([(name, i) for i, name in enumerate(names) if number == 0 or name != schema.key])
            taken += [name for name, _ in fields[-1]]
            rows.append(_load(table, schema.key))
            self._check_notation(table, rows[-1])
        self._fields = fields
        self._scale = self._accuracy_scale(rows)
        self._rows = rows

    def describe(self) -> dict[str, str]:
        """The tables, the reward's column and fidelity, and the unit of the simulated cost."""
        self.prepare()
        assert self._rows is not None
        schema = self.schema
        tables = [
            f"{t.label} ({len(rows):,} rows{', shipped' if t.shipped else ''})"
            for t, rows in zip(schema.tables, self._rows)
        ]
        at = f" at {schema.epochs} epochs" if schema.epochs is not None else ""
        facts = {
            "tables": f"{tables[0]}" + (f", joined on {schema.key} with {', '.join(tables[1:])}" if tables[1:] else ""),
            "reward column": f"{schema.accuracy}{at}" + (" (% / 100)" if self._scale == 100 else ""),
        }
        if schema.lower_fidelities:
            facts["intermediate epochs"] = ", ".join(
                f"{epochs}: {schema.fidelities[epochs]}" for epochs in schema.lower_fidelities
            )
        if schema.cost == MACS:
            where = f"column {MACS}" if not schema.counts_macs else f"counted at {schema.num_classes} classes"
            facts["simulated_cost"] = f"GMAC-epochs: MACs per image ({where}) x {schema.epochs or 1} epochs / 1e9"
        elif schema.cost is not None:
            facts["simulated_cost"] = f"column {schema.cost}"
        return facts

    def metrics(self) -> tuple[str, ...]:
        return self.schema.metric_names()

    def optima(self) -> dict[str, float]:
        """The best row's value of the reward (``accuracy``) and of every accuracy column the tables declare
        (its fidelities and measured columns, NB201's ``test_200ep`` among them): the table holds every cell."""
        self.prepare()
        assert self._rows is not None
        schema = self.schema
        columns = dict.fromkeys([schema.accuracy, *schema.fidelities.values(), *schema.column_epochs])
        optima: dict[str, float] = {}
        for column in columns:
            found = [(n, i) for n, fields in enumerate(self._fields) for name, i in fields if name == column]
            if not found:
                continue
            number, index = found[0]
            values = [v for row in self._rows[number].values() if isinstance(v := _value(row[index]), float)]
            if values:
                optima[column] = max(values)
        if schema.accuracy in optima:
            optima["accuracy"] = optima[schema.accuracy] / self._scale
        return optima

    def evaluate(self, genotype: Any, trial_id: int, report: Report | None = None) -> dict[str, Any]:
        """The metrics of ``genotype``'s row; ``report`` is given the lower fidelities' first."""
        try:
            text = self._to_string(genotype)
        except Exception as error:  # a genotype the space cannot write down is a failed trial, not a crash
            return {"error": f"no {self.space.name} notation for this genotype: {first_line(error, with_type=True)}"}
        entry = self._entries.get(text)
        if entry is None:
            self.prepare()
            entry = self._entries[text] = self._entry(text, genotype)
        metrics, interims = entry
        if report is not None:
            for interim in interims:
                report(dict(interim))
        return dict(metrics)

    def _entry(self, text: str, genotype: Any) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
        schema, rows = self.schema, self._rows
        assert rows is not None
        if text not in rows[0]:
            return {"error": f"architecture {text} is not in table {schema.tables[0].label}"}, ()
        metrics: dict[str, Any] = {}
        for fields, table in zip(self._fields, rows):
            row = table.get(text)
            if row is None:
                continue  # a later table without this architecture: its columns are absent
            for name, index in fields:
                value = _value(row[index])
                if value is not None:
                    metrics[name] = value
        value = metrics.get(schema.accuracy)
        if not isinstance(value, float):
            return {**metrics, "error": f"architecture {text} has no value in column {schema.accuracy}"}, ()
        metrics["accuracy"] = value / self._scale
        if schema.epochs is not None:
            metrics["epochs"] = schema.epochs
        macs: float | None = None
        if schema.cost == MACS:
            if schema.counts_macs:
                try:
                    counted, params = self._count(genotype)
                except Exception as error:  # a network that cannot be built is a failed trial
                    reason = first_line(error, with_type=True)
                    return {**metrics, "error": f"cannot count the MACs of {text}: {reason}"}, ()
                metrics[MACS] = float(counted)
                metrics.setdefault("params", float(params))
            macs = metrics.get(MACS)
            if not isinstance(macs, float):
                return {**metrics, "error": f"architecture {text} has no value in column {MACS}"}, ()
            metrics["simulated_cost"] = macs * (schema.epochs or 1) / GIGA
        elif schema.cost is not None:
            cost = metrics.get(schema.cost)
            if not isinstance(cost, float):
                return {**metrics, "error": f"architecture {text} has no number in column {schema.cost}"}, ()
            metrics["simulated_cost"] = cost
        return metrics, tuple(self._interims(metrics, macs))

    def _interims(self, metrics: dict[str, Any], macs: float | None) -> list[dict[str, Any]]:
        """The metrics after each lower fidelity's epochs: its accuracy, and no column measured later."""
        schema, interims = self.schema, []
        for epochs in schema.lower_fidelities:
            value = metrics.get(schema.fidelities[epochs])
            if not isinstance(value, float):
                continue
            interim = {name: v for name, v in metrics.items() if schema.column_epochs.get(name, 0) <= epochs}
            interim.update(accuracy=value / self._scale, epochs=epochs)
            if macs is not None:
                interim["simulated_cost"] = macs * epochs / GIGA
            interims.append(interim)
        return interims

    def _count(self, genotype: Any) -> tuple[int, int]:
        """MACs and parameters of the full-size network, counted on the meta device (``nas.cost``)."""
        from nas.compile import compile as compile_ir  # lazy: torch only for a table without a macs column
        from nas.cost import build_on_meta, count_macs, count_params  # lazy: as above

        ir = self.space.lower(genotype, num_classes=self.schema.num_classes)
        meta = build_on_meta(lambda: compile_ir(ir))
        return int(count_macs(meta, ir.resolution)), count_params(meta)  # type: ignore[arg-type]

    def _check_notation(self, table: TableFile, rows: Mapping[str, tuple[str, ...]]) -> None:
        """``ValueError`` unless the table's first key is written in the space's notation."""
        first = next(iter(rows), None)
        if first is None:
            raise ValueError(f"table: {table.label} has no rows")
        try:
            again = self._to_string(self.space.from_string(first))  # type: ignore[attr-defined]
        except ValueError as error:
            raise ValueError(
                f"table: {table.label}'s {self.schema.key} {first!r} is not in space {self.space.name!r}'s "
                f"notation ({first_line(error, with_type=True)})"
            ) from None
        if again != first:
            raise ValueError(
                f"table: {table.label}'s {self.schema.key} {first!r} reads back as {again!r} in space "
                f"{self.space.name!r}'s notation; write the table's keys as to_string() does"
            )

    def _accuracy_scale(self, rows: list[dict[str, tuple[str, ...]]]) -> float:
        """100 for accuracies in %, 1 for fractions (``percent``, else their maximum above 1); every value checked."""
        schema = self.schema
        columns = dict.fromkeys([schema.accuracy, *(schema.fidelities[e] for e in schema.lower_fidelities)])
        values: list[float] = []
        for column in columns:
            number, index = next(
                (n, i) for n, fields in enumerate(self._fields) for name, i in fields if name == column
            )
            for text, row in rows[number].items():
                value = _value(row[index])
                if isinstance(value, str):
                    raise ValueError(f"accuracy: column {column} of {text} holds {value!r}, not a number")
                if value is not None:
                    values.append(value)
        percent = schema.percent if schema.percent is not None else bool(values) and max(values) > 1.0
        scale = 100.0 if percent else 1.0
        outside = next((v for v in values if not 0.0 <= v / scale <= 1.0), None)
        if outside is not None:
            unit = "a percentage" if percent else "a fraction in [0, 1] (percent: true for %)"
            raise ValueError(f"accuracy: {outside!r} in the accuracy columns {list(columns)} is not {unit}")
        return scale


def _load(table: TableFile, key: str) -> dict[str, tuple[str, ...]]:
    """``table``'s rows by key, read once per process (and again if its file changes)."""
    cache_key = (*table.identity, key)
    rows = _LOADED.get(cache_key)
    if rows is not None:
        return rows
    width, index, rows = len(table.header), table.header.index(key), {}
    try:
        for line, row in enumerate(table.rows(), start=2):
            if not row:
                continue
            if len(row) != width:
                raise ValueError(f"table: {table.label} line {line} has {len(row)} fields, its header {width}")
            name = row[index]
            if name in rows:
                raise ValueError(f"table: {table.label} has {key} {name!r} twice (line {line})")
            rows[name] = tuple(row)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"table: {table.label} cannot be read ({first_line(error, with_type=True)})") from None
    _LOADED[cache_key] = rows
    return rows


def _value(text: str) -> float | str | None:
    """A field as a metric: a finite number as a float, other text as it is, nothing for an empty or NaN field."""
    try:
        number = float(text)
    except ValueError:
        return text if text else None
    return number if math.isfinite(number) else None
