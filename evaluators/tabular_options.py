"""The tabular evaluator's options and tables, resolved and checked without torch.

A benchmark table (NAS-Bench-201, arXiv 2001.00326; HW-NAS-Bench, arXiv 2103.10584) is a CSV file,
optionally gzip-compressed: one row per architecture, its key column in the space's own notation
(``nas.space.Notated``), the other columns measurements. A table may carry a JSON sidecar beside it
(``NAME.json`` for ``NAME.csv`` or ``NAME.csv.gz``) declaring what its columns are:

- ``key``: the architecture column (default ``arch``);
- ``accuracy``: the column the reward reads by default, and ``percent``: whether accuracies are in %;
- ``fidelities``: ``{epochs: column}``, the accuracy after that many training epochs (``fidelity``
  picks one; the lower ones are reported as intermediate epochs, so ASHA can be simulated);
- ``epochs``: ``{column: epochs}`` of the other measured columns (left out of an earlier epoch's report);
- ``num_classes``: the classifier width of the networks whose MACs are counted (default 10);
- ``description``, ``source``, ``space``, ``dataset``, ``units``, ``rows``: facts, not read.

The engine ships tables (``evaluators/tables/``, found through ``importlib.resources``): the
``table`` option names one of them or a file (default: the space's shipped tables,
``DEFAULT_TABLES``); a list joins its tables on the key, the first table's rows being the
architectures, and ``join`` adds tables after those (NASLib's zero-cost scores beside the defaults,
say). A column name taken by an earlier table is read as ``TABLE.COLUMN``: every column is kept.
Options override the sidecars. ``TabularSchema.of`` is the one place all of this is resolved:
``check`` (entry-point group ``nas.evaluator_options``) runs it while a run's
settings are validated, and ``evaluators.tabular.TabularEvaluator`` is built from it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.space import Notated, SearchSpace

if TYPE_CHECKING:
    from importlib.abc import Traversable  # importlib.resources.abc from Python 3.11

SHIPPED_PACKAGE = "evaluators"
SHIPPED_FOLDER = "tables"
# The tables a space's searches read when the options name none, joined in this order.
DEFAULT_TABLES: dict[str, tuple[str, ...]] = {
    "nb201": ("nb201-cifar10", "hw-nas-bench-cifar10", "nb201-cifar10-cost"),
}
DEFAULT_KEY = "arch"
DEFAULT_NUM_CLASSES = 10
MACS = "macs"  # the cost option that counts the network's multiply-accumulates (or reads a ``macs`` column)
# Metrics the evaluator writes itself: a table column of the same name would be overwritten.
OWN_METRICS = ("accuracy", "epochs", "simulated_cost", "error")
OPTIONS = ("table", "join", "key", "accuracy", "fidelity", "fidelities", "percent", "cost", "epochs")
SIDECAR_FIELDS = ("key", "accuracy", "percent", "fidelities", "epochs", "num_classes")
SIDECAR_FACTS = ("description", "source", "space", "dataset", "units", "rows", "name")
SUFFIXES = (".csv.gz", ".csv")


@dataclass(frozen=True)
class TableFile:
    """One table: its name (a shipped table's, or the path as given), where it is, its sidecar and header."""

    name: str
    source: Traversable
    shipped: bool
    info: Mapping[str, Any]
    header: tuple[str, ...]

    @property
    def label(self) -> str:
        """The table's short name: a shipped table's, or its file's without ``.csv``/``.csv.gz``."""
        if self.shipped:
            return self.name
        return next(self.source.name.removesuffix(s) for s in (*SUFFIXES, "") if self.source.name.endswith(s))

    def open_text(self) -> io.TextIOBase:
        """The CSV text, decompressed if the file is gzip."""
        raw = self.source.open("rb")
        if self.source.name.endswith(".gz"):
            return io.TextIOWrapper(gzip.GzipFile(fileobj=raw), encoding="utf-8", newline="")  # type: ignore[arg-type]
        return io.TextIOWrapper(raw, encoding="utf-8", newline="")

    def rows(self) -> Iterator[list[str]]:
        """The data rows (the header skipped)."""
        with self.open_text() as text:
            reader = csv.reader(text)
            next(reader, None)
            yield from reader

    @property
    def identity(self) -> tuple[str, int, int]:
        """What changes when the file does: its path, size and modification time (shipped: the path)."""
        if isinstance(self.source, Path):
            stat = self.source.stat()
            return str(self.source.resolve()), stat.st_size, stat.st_mtime_ns
        return str(self.source), 0, 0


@dataclass(frozen=True)
class TabularSchema:
    """What a tabular evaluator reads: the tables, their key, the reward's column and its fidelity, the cost.

    ``accuracy`` is the column the reward reads (as a fraction: divided by 100 when ``percent``;
    ``None``: decided from the values when the tables are loaded); ``epochs`` its fidelity (None when
    the tables do not say); ``fidelities`` every declared ``{epochs: column}``; ``column_epochs`` the
    epochs of every measured column that declares them; ``cost`` is ``"macs"`` (the network's
    multiply-accumulates, read from a ``macs`` column or counted), a column's name, or None.
    """

    tables: tuple[TableFile, ...]
    key: str
    columns: tuple[str, ...]
    accuracy: str
    epochs: int | None
    fidelities: Mapping[int, str]
    column_epochs: Mapping[str, int]
    percent: bool | None
    cost: str | None
    num_classes: int
    lower_fidelities: tuple[int, ...] = field(default=())

    @classmethod
    def of(cls, space: SearchSpace[Any], options: Mapping[str, Any]) -> TabularSchema:
        """The schema of ``options`` for ``space``: ``ValueError`` (one line) naming the first mistake."""
        unknown = [name for name in options if name not in OPTIONS]
        if unknown:
            raise ValueError(f"{unknown[0]}: not an option of evaluator 'tabular'; valid: {sorted(OPTIONS)}")
        if not isinstance(space, Notated):
            raise ValueError(
                f"evaluator 'tabular': space {getattr(space, 'name', type(space).__name__)!r} has no benchmark "
                "notation (to_string/from_string, nas.space.Notated) to look its architectures up in a table"
            )
        names = _table_names(space, options.get("table")) + _names("join", options.get("join", []), empty=True)
        tables = tuple(_open_table(name) for name in names)
        infos = [table.info for table in tables]
        key = _string_option(options, "key") or _first(infos, "key") or DEFAULT_KEY
        columns: list[str] = []
        for table in tables:
            if key not in table.header:
                raise ValueError(f"key: table {table.name} has no column {key!r}; its columns: {list(table.header)}")
            columns += [name for name in table_columns(table, key, columns) if name != key or not columns]
        fidelities = {
            **{e: c for info in reversed(infos) for e, c in _fidelities(info.get("fidelities"), "fidelities").items()},
            **_fidelities(options.get("fidelities"), "fidelities"),
        }
        declared_epochs: dict[str, int] = {}
        for info in reversed(infos):
            declared_epochs.update(_column_epochs(info.get("epochs")))
        column_epochs = {**declared_epochs, **{column: epochs for epochs, column in fidelities.items()}}
        for epochs, column in fidelities.items():
            _check_column(column, columns, f"fidelities[{epochs}]")
        for column in declared_epochs:
            _check_column(column, columns, "epochs of a sidecar")
        given = "epochs" if options.get("epochs") is not None else "fidelity"  # the run's --epochs wins
        fidelity = _count_option(options, given)
        chosen = _string_option(options, "accuracy")
        if fidelity is not None:
            if fidelity not in fidelities:
                having = f"it has {sorted(fidelities)}" if fidelities else "its tables declare none"
                raise ValueError(
                    f"{given}: no {fidelity}-epoch accuracy column ({having}; a table declares its fidelities "
                    "in its sidecar, or give fidelities: {EPOCHS: COLUMN})"
                )
            if chosen is not None and chosen != fidelities[fidelity]:
                raise ValueError(
                    f"accuracy: {chosen!r} is not the {fidelity}-epoch column {fidelities[fidelity]!r}; give "
                    "accuracy or fidelity, not both"
                )
            chosen = fidelities[fidelity]
        if chosen is None:
            chosen = _first(infos, "accuracy") or (fidelities[max(fidelities)] if fidelities else None)
        if chosen is None:
            raise ValueError(f"accuracy: name the column the reward reads; the tables' columns: {columns}")
        _check_column(chosen, columns, "accuracy")
        epochs = fidelity if fidelity is not None else column_epochs.get(chosen)
        for column in columns:
            if column in OWN_METRICS[1:] or (column == "accuracy" and column != chosen):
                raise ValueError(
                    f"table column {column!r} is a metric the evaluator writes itself "
                    f"({', '.join(OWN_METRICS)}; accuracy only as the reward's column); rename it"
                )
        percent = options.get("percent", _first(infos, "percent"))
        if percent is not None and not isinstance(percent, bool):
            raise ValueError(f"percent: expected true, false or null (decided from the values), got {percent!r}")
        cost = options.get("cost", MACS)
        if cost is not None:
            if not isinstance(cost, str) or not cost:
                raise ValueError(f"cost: expected 'macs', a column name or null, got {cost!r}")
            if cost != MACS:
                _check_column(cost, columns, "cost")
            elif MACS not in columns and not hasattr(space, "lower"):
                raise ValueError(
                    f"cost: space {space.name!r} has no lower() to count MACs with, and the tables no "
                    f"{MACS!r} column; name a cost column, or cost: null"
                )
        num_classes = _first(infos, "num_classes") or DEFAULT_NUM_CLASSES
        lower = tuple(sorted(e for e in fidelities if epochs is not None and e < epochs))
        return cls(
            tables, key, tuple(columns), chosen, epochs, fidelities, column_epochs, percent, cost, num_classes, lower
        )

    @property
    def counts_macs(self) -> bool:
        """MACs counted from the network (no ``macs`` column to read them from)."""
        return self.cost == MACS and MACS not in self.columns

    def metric_names(self) -> tuple[str, ...]:
        """Every metric an evaluation returns: the columns, the reward's fraction, the cost."""
        own = ["accuracy", *(["epochs"] if self.epochs is not None else [])]
        if self.cost is not None:
            own += ["simulated_cost", *([MACS, "params"] if self.counts_macs else [])]
        return tuple(dict.fromkeys([*self.columns, *own]))


def table_columns(table: TableFile, key: str, taken: Sequence[str]) -> list[str]:
    """The metric names of ``table``'s columns in a join after the columns ``taken``: a column another
    table already provides is read as ``TABLE.COLUMN`` (every column is kept; none shadows another)."""
    return [column if column == key or column not in taken else f"{table.label}.{column}" for column in table.header]


def check(space: SearchSpace[Any], options: Mapping[str, Any]) -> None:
    """The torch-free check of a run's tabular options: names, types, the tables' files and columns."""
    TabularSchema.of(space, options)


def shipped_tables() -> dict[str, Traversable]:
    """The tables that ship with the engine, by name."""
    folder = resources.files(SHIPPED_PACKAGE).joinpath(SHIPPED_FOLDER)
    return {
        entry.name.removesuffix(".csv.gz"): entry
        for entry in folder.iterdir()
        if entry.name.endswith(".csv.gz") and entry.is_file()
    }


def _table_names(space: SearchSpace[Any], table: Any) -> list[str]:
    if table is None:
        if space.name not in DEFAULT_TABLES:
            raise ValueError(
                f"table: no table ships for space {space.name!r} (shipped: {sorted(DEFAULT_TABLES)}); "
                "give evaluator_options: {table: FILE.csv}"
            )
        return list(DEFAULT_TABLES[space.name])
    return _names("table", table)


def _names(option: str, value: Any, empty: bool = False) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not (names or empty) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{option}: expected a file, a shipped table's name, or a list of them, got {value!r}")
    return list(names)


def _open_table(name: str) -> TableFile:
    shipped = shipped_tables()
    if name in shipped:
        source: Traversable = shipped[name]
        sidecar: Traversable = resources.files(SHIPPED_PACKAGE).joinpath(SHIPPED_FOLDER).joinpath(name + ".json")
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ValueError(
                f"table: {name!r} is neither a file nor a shipped table (shipped: {sorted(shipped)})"
                if path.suffix not in (".csv", ".gz") and not path.exists()
                else f"table: {name!r} is not a file"
            )
        if not path.name.endswith(SUFFIXES):
            raise ValueError(f"table: {name!r} is not a CSV file (.csv or .csv.gz)")
        source = path
        stem = next(path.name.removesuffix(suffix) for suffix in SUFFIXES if path.name.endswith(suffix))
        sidecar = path.with_name(stem + ".json")
    info = _read_sidecar(sidecar, name)
    table = TableFile(name, source, name in shipped, info, ())
    try:
        with table.open_text() as text:
            header = tuple(next(csv.reader(text), []))
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as error:
        raise ValueError(f"table: {name} cannot be read ({type(error).__name__}: {error})") from None
    if not header:
        raise ValueError(f"table: {name} is empty (no header row)")
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        raise ValueError(f"table: {name} has the column {repeated[0]!r} twice")
    return TableFile(name, source, table.shipped, info, header)


def _read_sidecar(sidecar: Traversable, table: str) -> dict[str, Any]:
    if not sidecar.is_file():
        return {}
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"table: the sidecar {sidecar.name} of {table} is not JSON ({error})") from None
    if not isinstance(info, dict):
        raise ValueError(f"table: the sidecar {sidecar.name} of {table} must hold an object")
    unknown = [name for name in info if name not in SIDECAR_FIELDS + SIDECAR_FACTS]
    if unknown:
        raise ValueError(
            f"table: the sidecar {sidecar.name} of {table} has the unknown field {unknown[0]!r}; "
            f"valid: {sorted(SIDECAR_FIELDS + SIDECAR_FACTS)}"
        )
    where = f"{sidecar.name}: "
    for name in ("key", "accuracy"):
        if name in info and not (isinstance(info[name], str) and info[name]):
            raise ValueError(f"table: {where}{name} must be a column name, got {info[name]!r}")
    if "percent" in info and not isinstance(info["percent"], bool):
        raise ValueError(f"table: {where}percent must be true or false, got {info['percent']!r}")
    count = info.get("num_classes", DEFAULT_NUM_CLASSES)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"table: {where}num_classes must be a positive integer, got {count!r}")
    _fidelities(info.get("fidelities"), where + "fidelities")
    _column_epochs(info.get("epochs"), where + "epochs")
    return info


def _fidelities(value: Any, name: str) -> dict[int, str]:
    """``{epochs: column}`` with integer epochs (YAML and JSON may write them as strings)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected a mapping {{EPOCHS: COLUMN}}, got {value!r}")
    parsed: dict[int, str] = {}
    for epochs, column in value.items():
        number = _positive_int(epochs)
        if number is None or not isinstance(column, str) or not column:
            raise ValueError(f"{name}: expected positive epochs mapped to column names, got {epochs!r}: {column!r}")
        parsed[number] = column
    return parsed


def _column_epochs(value: Any, name: str = "epochs") -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected a mapping {{COLUMN: EPOCHS}}, got {value!r}")
    parsed: dict[str, int] = {}
    for column, epochs in value.items():
        number = _positive_int(epochs)
        if number is None or not isinstance(column, str):
            raise ValueError(f"{name}: expected column names mapped to positive epochs, got {column!r}: {epochs!r}")
        parsed[column] = number
    return parsed


def _positive_int(value: Any) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def _count_option(options: Mapping[str, Any], name: str) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive number of epochs, got {value!r}")
    return value


def _string_option(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is not None and not (isinstance(value, str) and value):
        raise ValueError(f"{name}: expected a column name, got {value!r}")
    return value


def _check_column(column: str, columns: Sequence[str], name: str) -> None:
    if column not in columns:
        raise ValueError(f"{name}: no column {column!r} in the tables; their columns: {list(columns)}")


def _first(infos: Sequence[Mapping[str, Any]], name: str) -> Any:
    return next((info[name] for info in infos if info.get(name) is not None), None)
