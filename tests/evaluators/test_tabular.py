"""The tabular evaluator: a benchmark table's row as a candidate's metrics (``evaluators.tabular``).

Most tests run on a small Notated space (``ToySpace`` with a string notation, 64 architectures) and
tables written to ``tmp_path``; the shipped NAS-Bench-201 tables are checked through the ``nb201``
space when it is registered.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nas
from evaluators.tabular import TabularEvaluator
from evaluators.tabular_options import DEFAULT_TABLES, TabularSchema, check, shipped_tables
from nas import registry
from nas.cli.app import main
from nas.evaluator import make_evaluator
from nas.search.run import run_search
from nas.search.settings import SearchSettings
from nas.space import Notated
from nas.testing import EvaluatorContract, ToyGenotype, ToySpace


class NotatedToy(ToySpace):
    """``ToySpace`` with a benchmark-style notation: ``w8-16|k3-5|d1-2``."""

    name = "tabular-toy"

    def to_string(self, genotype: ToyGenotype) -> str:
        return "|".join(
            f"{letter}{genotype_field[0]}-{genotype_field[1]}"
            for letter, genotype_field in zip("wkd", (genotype.widths, genotype.kernels, genotype.depths))
        )

    def from_string(self, text: str) -> ToyGenotype:
        try:
            widths, kernels, depths = (tuple(int(v) for v in part[1:].split("-")) for part in text.split("|"))
        except ValueError:
            raise ValueError(f"{text!r} is not w_-_|k_-_|d_-_") from None
        genotype = ToyGenotype(widths, kernels, depths)
        self.encode(genotype)  # checks the choices
        return genotype


SPACE = NotatedToy()
GENOTYPES = [
    ToyGenotype((w0, w1), (k0, k1), (d0, d1))
    for w0, w1, k0, k1, d0, d1 in itertools.product(
        ToySpace.WIDTHS, ToySpace.WIDTHS, ToySpace.KERNELS, ToySpace.KERNELS, ToySpace.DEPTHS, ToySpace.DEPTHS
    )
]
HEADER = ["index", "arch", "valid", "test", "valid_1ep", "lat_ms", "train_hours", "note"]


def row(index: int, genotype: ToyGenotype) -> list[Any]:
    """Distinct, checkable values per architecture (accuracies in %)."""
    return [
        index,
        SPACE.to_string(genotype),
        50 + index * 0.5,
        49 + index * 0.5,
        20 + index * 0.25,
        1.0 + index / 10,
        2.0 + index,
        f"cell-{index}",
    ]


def write_table(path: Path, header: list[str], rows: list[list[Any]], sidecar: dict[str, Any] | None = None) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    if sidecar is not None:
        stem = path.name.removesuffix(".gz").removesuffix(".csv")
        path.with_name(stem + ".json").write_text(json.dumps(sidecar))
    return path


SIDECAR = {
    "key": "arch",
    "accuracy": "valid",
    "percent": True,
    "fidelities": {"1": "valid_1ep", "10": "valid"},
    "epochs": {"test": 10},
}


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """Every architecture but the last, with a sidecar declaring two fidelities."""
    rows = [row(i, g) for i, g in enumerate(GENOTYPES[:-1])]
    return write_table(tmp_path / "toy.csv.gz", HEADER, rows, SIDECAR)


def evaluator(table: Path | list[str], **options: Any) -> TabularEvaluator:
    tables = table if isinstance(table, list) else str(table)
    built = make_evaluator("tabular", SPACE, **{"table": tables, "cost": "train_hours", **options})
    assert isinstance(built, TabularEvaluator)
    built.prepare()
    return built


def test_metrics_are_every_column_with_the_reward_as_a_fraction(table: Path) -> None:
    metrics = evaluator(table).evaluate(GENOTYPES[5], 0)
    assert metrics == {
        "index": 5.0,
        "arch": SPACE.to_string(GENOTYPES[5]),
        "valid": 52.5,
        "test": 51.5,
        "valid_1ep": 21.25,
        "lat_ms": 1.5,
        "train_hours": 7.0,
        "note": "cell-5",
        "accuracy": 0.525,
        "epochs": 10,
        "simulated_cost": 7.0,
    }
    assert set(metrics) == set(evaluator(table).metrics())


def test_the_reward_column_and_percent_are_options(tmp_path: Path, table: Path) -> None:
    assert evaluator(table, accuracy="test").evaluate(GENOTYPES[2], 0)["accuracy"] == pytest.approx(0.50)
    # Without a sidecar the scale is read from the values: fractions stay, percentages are divided.
    fractions = write_table(tmp_path / "plain.csv", ["arch", "acc"], [[SPACE.to_string(GENOTYPES[0]), 0.75]])
    assert evaluator(fractions, accuracy="acc", cost=None).evaluate(GENOTYPES[0], 0) == {
        "arch": SPACE.to_string(GENOTYPES[0]),
        "acc": 0.75,
        "accuracy": 0.75,
    }
    assert evaluator(fractions, accuracy="acc", cost=None, percent=True).evaluate(GENOTYPES[0], 0)["accuracy"] == 0.0075
    percentages = write_table(tmp_path / "percent.csv", ["arch", "acc"], [[SPACE.to_string(GENOTYPES[0]), 75]])
    assert evaluator(percentages, accuracy="acc", cost=None).evaluate(GENOTYPES[0], 0)["accuracy"] == 0.75
    with pytest.raises(ValueError, match=r"accuracy: 75.0 in the accuracy columns \['acc'\] is not a fraction"):
        evaluator(percentages, accuracy="acc", cost=None, percent=False)


def test_fidelity_picks_the_column_and_the_lower_ones_are_reported_first(table: Path) -> None:
    low = evaluator(table, fidelity=1)
    assert low.epochs == 1 and not low.reports_epochs
    assert (
        low.evaluate(GENOTYPES[4], 0)["accuracy"] == pytest.approx(0.21)
        and low.evaluate(GENOTYPES[4], 0)["epochs"] == 1
    )
    assert evaluator(table, fidelity=10, epochs=1).epochs == 1  # the run's --epochs overrides it
    full = evaluator(table, fidelity=10)
    assert full.epochs == 10 and full.reports_epochs
    reports: list[dict[str, Any]] = []
    metrics = full.evaluate(GENOTYPES[4], 0, report=reports.append)
    assert metrics == full.evaluate(GENOTYPES[4], 0) and metrics["accuracy"] == pytest.approx(0.52)
    (interim,) = reports
    assert interim["epochs"] == 1 and interim["accuracy"] == pytest.approx(0.21)
    # The report is the state after one epoch: no column measured later (the sidecar's epochs).
    assert "test" not in interim and "valid" not in interim and interim["valid_1ep"] == 21.0
    assert interim["lat_ms"] == metrics["lat_ms"]


def test_macs_are_counted_with_nas_cost_and_scaled_by_the_epochs(table: Path) -> None:
    from nas.compile import compile as compile_ir
    from nas.cost import build_on_meta, count_macs

    genotype = GENOTYPES[9]
    ir = SPACE.lower(genotype, num_classes=10)
    macs = count_macs(build_on_meta(lambda: compile_ir(ir)), ir.resolution)
    full, low = evaluator(table, cost="macs"), evaluator(table, cost="macs", fidelity=1)
    assert full.evaluate(genotype, 0)["macs"] == macs
    assert full.evaluate(genotype, 0)["simulated_cost"] == pytest.approx(macs * 10 / 1e9)
    assert low.evaluate(genotype, 0)["simulated_cost"] == pytest.approx(macs / 1e9)
    reports: list[dict[str, Any]] = []
    full.evaluate(genotype, 0, report=reports.append)
    assert reports[0]["simulated_cost"] == pytest.approx(macs / 1e9)
    assert {"macs", "params", "simulated_cost"} <= set(full.metrics())


def test_a_macs_column_is_read_not_counted(tmp_path: Path, table: Path) -> None:
    costs = write_table(tmp_path / "costs.csv", ["arch", "macs"], [[SPACE.to_string(g), 1e6] for g in GENOTYPES])
    metrics = evaluator([str(table), str(costs)], cost="macs").evaluate(GENOTYPES[1], 0)
    assert metrics["macs"] == 1e6 and metrics["simulated_cost"] == pytest.approx(1e6 * 10 / 1e9)
    assert "params" not in metrics


def test_joined_tables_keep_every_column(tmp_path: Path, table: Path) -> None:
    other = write_table(
        tmp_path / "hw.csv",
        ["arch", "index", "energy"],
        [[SPACE.to_string(g), 100 + i, i] for i, g in enumerate(GENOTYPES[:3])],
    )
    joined = evaluator(table, join=str(other))
    assert joined.evaluate(GENOTYPES[2], 0) == evaluator([str(table), str(other)]).evaluate(GENOTYPES[2], 0)
    metrics = joined.evaluate(GENOTYPES[2], 0)
    assert metrics["index"] == 2.0 and metrics["hw.index"] == 102.0 and metrics["energy"] == 2.0
    assert "energy" not in joined.evaluate(GENOTYPES[3], 0)  # not in the later table: its columns are absent
    assert {"hw.index", "energy"} <= set(joined.metrics())


def test_the_optima_are_the_best_row_of_every_accuracy_column(table: Path) -> None:
    """The table holds every candidate, so the best reward (and every declared accuracy's best) is known."""
    last = len(GENOTYPES) - 2  # the table's best row: values grow with the index
    assert evaluator(table).optima() == {
        "valid": 50 + last * 0.5,
        "valid_1ep": 20 + last * 0.25,
        "test": 49 + last * 0.5,
        "accuracy": (50 + last * 0.5) / 100,
    }


def test_an_architecture_not_in_the_table_is_a_failed_trial(table: Path) -> None:
    tabular = evaluator(table)
    missing = tabular.evaluate(GENOTYPES[-1], 0)
    assert set(missing) == {"error"} and "is not in table toy" in missing["error"]
    assert "error" in tabular.evaluate(object(), 0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"accuracy": "valid_200ep"}, r"accuracy: no column 'valid_200ep' in the tables; their columns: \['index', "),
        ({"key": "name"}, r"key: table .*toy.csv.gz has no column 'name'; its columns: \['index', 'arch'"),
        ({"fidelity": 12}, r"fidelity: no 12-epoch accuracy column \(it has \[1, 10\]"),
        ({"fidelity": 1, "accuracy": "valid"}, "accuracy: 'valid' is not the 1-epoch column 'valid_1ep'"),
        ({"cost": "dollars"}, "cost: no column 'dollars' in the tables"),
        ({"cost": 3}, "cost: expected 'macs', a column name or null, got 3"),
        ({"percent": "yes"}, "percent: expected true, false or null"),
        ({"fidelities": {"x": "valid"}}, "fidelities: expected positive epochs mapped to column names"),
        ({"tabel": "x.csv"}, r"tabel: not an option of evaluator 'tabular'; valid: \["),
        ({"table": "missing.csv"}, "table: 'missing.csv' is not a file"),
        ({"table": "nb201-cifar11"}, r"table: 'nb201-cifar11' is neither a file nor a shipped table \(shipped: \["),
        ({"table": 3}, "table: expected a file, a shipped table's name, or a list of them, got 3"),
        ({"join": [""]}, r"join: expected a file, a shipped table's name, or a list of them, got \[''\]"),
    ],
)
def test_a_bad_option_is_one_line(table: Path, options: dict[str, Any], message: str) -> None:
    options = {"table": str(table), **options}
    with pytest.raises(ValueError, match=message) as refused:
        check(SPACE, options)
    assert "\n" not in str(refused.value)
    with pytest.raises(ValueError, match=message):
        make_evaluator("tabular", SPACE, **options)


def test_a_space_without_notation_or_tables_is_refused(table: Path) -> None:
    with pytest.raises(ValueError, match=r"space 'toy' has no benchmark notation \(to_string/from_string"):
        TabularEvaluator(ToySpace(), table=str(table))
    with pytest.raises(ValueError, match=r"table: no table ships for space 'tabular-toy' \(shipped: \['nb201'\]\)"):
        check(SPACE, {})


def test_a_table_in_another_notation_is_refused(tmp_path: Path) -> None:
    other = write_table(tmp_path / "other.csv", ["arch", "acc"], [["conv3-conv5", 0.5]])
    with pytest.raises(ValueError, match=r"table: other's arch 'conv3-conv5' is not in space 'tabular-toy'"):
        evaluator(other, accuracy="acc", cost=None)


def test_the_options_check_and_the_evaluator_import_no_torch() -> None:
    code = "import sys, evaluators.tabular, evaluators.tabular_options; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_shipped_tables_are_found_through_the_package() -> None:
    shipped = shipped_tables()
    assert {"nb201-cifar10", "hw-nas-bench-cifar10", "zero-cost-cifar10-naslib"} <= set(shipped)
    assert set(DEFAULT_TABLES["nb201"]) <= set(shipped)
    for name, source in shipped.items():
        with gzip.open(source.open("rb"), "rt") as text:
            header = next(csv.reader(text))
        assert "arch" in header and source.parent.joinpath(name + ".json").is_file(), name


class TestTabularContract(EvaluatorContract):
    @pytest.fixture
    def space(self) -> NotatedToy:
        return SPACE

    @pytest.fixture
    def make_evaluator(self, tmp_path: Path):
        rows = [row(i, g) for i, g in enumerate(GENOTYPES)]
        path = write_table(tmp_path / "all.csv", HEADER, rows, SIDECAR)
        return lambda space, seed: make_evaluator("tabular", space, seed=seed, table=str(path))


@pytest.fixture
def registered(table: Path):
    """The Notated toy space under its name, so that ``nas search`` can run on it."""
    registry.spaces.register(SPACE.name, SPACE)
    yield table
    registry.spaces.unregister(SPACE.name)


def search(tmp_path: Path, table: Path, *extra: str, options: str = "") -> int:
    config = tmp_path / "settings.yaml"
    config.write_text(f"evaluator_options:\n  table: {table}\n  cost: train_hours\n{options}")
    args = ["search", "--space", SPACE.name, "--evaluator", "tabular", "--controller", "random"]
    return main(
        [*args, "--budget", "8", "--out", str(tmp_path / "run"), "--config", str(config), "--no-progress", *extra]
    )


def test_an_objective_reading_a_column_the_tables_lack_is_refused(tmp_path: Path, registered: Path) -> None:
    settings = SearchSettings(
        out=str(tmp_path / "run"),
        space=SPACE.name,
        evaluator="tabular",
        evaluator_options={"table": str(registered), "cost": "train_hours"},
        objective="mnas",
        latency_metric="pixel3_latency",
        latency_target_ms=2.0,
    )
    with pytest.raises(ValueError, match=r"objective: 'mnas' reads the metric 'pixel3_latency', which evaluator"):
        run_search(settings)
    assert not (tmp_path / "run").exists()


def test_a_bad_option_is_refused_by_the_command_in_one_line(tmp_path: Path, registered: Path, capsys) -> None:
    assert search(tmp_path, registered, options="  accuracy: valid_200ep\n") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "accuracy: no column 'valid_200ep' in the tables" in lines[0]
    assert not (tmp_path / "run").exists()
    assert main(["search", "--space", "nasnet", "--evaluator", "tabular", "--out", str(tmp_path / "run")]) == 2
    assert "has no benchmark notation" in capsys.readouterr().err


def test_the_notated_toy_space_is_notated() -> None:
    assert isinstance(SPACE, Notated) and SPACE.from_string(SPACE.to_string(GENOTYPES[7])) == GENOTYPES[7]


nb201 = pytest.mark.skipif("nb201" not in registry.spaces.names(), reason="the nb201 space is not registered")


@nb201
def test_the_shipped_nb201_table_has_the_published_optimum() -> None:
    space = registry.spaces.get("nb201")
    tabular = make_evaluator("tabular", space)
    schema = TabularSchema.of(space, {})
    assert schema.accuracy == "valid_200ep" and schema.epochs == 200
    best = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    )
    metrics = tabular.evaluate(best, 0)
    assert metrics["index"] == 6111 and metrics["valid_200ep"] == 91.6067 and metrics["test_200ep"] == 94.3733
    assert metrics["accuracy"] == pytest.approx(0.916067) and "pixel3_latency" in metrics
    assert metrics["macs"] == 153_272_960 and metrics["simulated_cost"] == pytest.approx(153_272_960 * 200 / 1e9)
    reports: list[dict[str, Any]] = []
    tabular.evaluate(best, 0, report=reports.append)
    assert [(r["epochs"], r["accuracy"]) for r in reports] == [(12, pytest.approx(0.8879))]
    assert "test_200ep" not in reports[0] and reports[0]["pixel3_latency"] == metrics["pixel3_latency"]
    # NASLib's zero-cost scores joined beside the defaults: its params (millions) keep their own name.
    zero_cost = make_evaluator("tabular", space, join="zero-cost-cifar10-naslib").evaluate(best, 0)
    assert zero_cost["zero-cost-cifar10-naslib.params"] == pytest.approx(metrics["params"] / 1e6, abs=1e-6)
    assert "synflow" in zero_cost


@nb201
def test_a_search_on_the_shipped_tables_runs_from_the_command_line(tmp_path: Path, capsys) -> None:
    """``nas search --space nb201 --evaluator tabular`` with no options: the shipped tables, end to end."""
    out = tmp_path / "run"
    args = ["search", "--space", "nb201", "--evaluator", "tabular", "--controller", "random", "--budget", "20"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    space = registry.spaces.get("nb201")
    best = nas.load_genotype(out / "best.json")
    metrics = make_evaluator("tabular", space).evaluate(best, 0)
    assert f"best reward {metrics['valid_200ep'] / 100:.4f}" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "valid_200ep at 200 epochs" in report and space.to_string(best) in report
    regret = 94.3733 - metrics["test_200ep"]  # the report's regret: the table's optimum minus the best's
    assert f"| test_200ep | {metrics['test_200ep']:.4f} | 94.3733 | {regret:.4f} |" in report
    # MnasNet's reward on a HW-NAS-Bench latency column, out of the box.
    mnas = {"objective": "mnas", "latency_metric": "pixel3_latency", "latency_target_ms": 5.0}
    settings = SearchSettings(out=str(tmp_path / "mnas"), space="nb201", evaluator="tabular", budget=10, **mnas)
    best_record, _ = run_search(settings)
    metrics = best_record.result.metrics
    reward = metrics["valid_200ep"] / 100 * (metrics["pixel3_latency"] / 5) ** -0.07
    assert best_record.result.reward == pytest.approx(reward)
