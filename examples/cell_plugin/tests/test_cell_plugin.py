"""The plug-in through the engine's own contract tests (``nas.testing``), plus its entry point and a search."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

import pytest
from nas.cell_ir import CellNet
from nas.testing import SpaceContract

from nas_cell_plugin.space import OPS, Cell3Genotype, Cell3Space, cell_graph


def _installed() -> None:
    try:
        version("nas-cell-plugin")
    except PackageNotFoundError:
        pytest.skip("nas-cell-plugin is not installed (pip install -e examples/cell_plugin)")


class TestCell3Space(SpaceContract):
    samples = 4  # random genotypes per property: enough for 6 decisions, and the suite stays fast

    @pytest.fixture
    def space(self):
        return Cell3Space()

    @pytest.fixture
    def macro(self, space):
        return {**space.proxy_reduction, "resolution": 8}  # the synthetic data's size: faster tests


def test_the_cell_is_a_three_node_dag_read_in_full():
    space = Cell3Space()
    assert len(space.decisions()) == 6 and all(d.choices == OPS for d in space.decisions())
    graph = cell_graph(space.presets()["cell3-mixed"])
    assert graph.num_inputs == 1 and [[e.source for e in n.inputs] for n in graph.nodes] == [[0], [0, 1], [0, 1, 2]]
    assert graph.output == (3,) and {n.combine for n in graph.nodes} == {"add"}
    ir = space.lower(Cell3Genotype(), num_classes=10)
    assert isinstance(ir, CellNet) and [c.reduction for c in ir.cells] == [False, False, True, False, False]
    assert [c.filters for c in ir.cells] == [16, 16, 32, 32, 32] and ir.classifier.in_features == 32


def test_bad_genotypes_and_settings_are_refused():
    with pytest.raises(ValueError, match=r"node1\[0\]"):
        Cell3Genotype(node1=("max_pool_3x3", "identity"))
    with pytest.raises(ValueError, match="node2"):
        Cell3Genotype(node2=("identity",))
    with pytest.raises(ValueError, match="filters"):
        Cell3Space().lower(Cell3Genotype(), filters=0)
    with pytest.raises(ValueError, match="cells_per_stage"):
        Cell3Space().lower(Cell3Genotype(), cells_per_stage=0)


def test_entry_point_when_installed():
    _installed()
    from nas import registry

    assert ("nas.spaces", "cell3") in {(e.group, e.name) for e in entry_points(group="nas.spaces")}
    assert isinstance(registry.spaces.get("cell3"), Cell3Space)


def test_search_through_the_entry_point(tmp_path: Path):
    """A 2-trial random search of ``cell3`` by the ``nas`` command, the space found by its entry point alone."""
    _installed()
    from nas.cli import main

    out = tmp_path / "run"
    code = main(
        [
            "search",
            "--space",
            "cell3",
            "--controller",
            "random",
            "--budget",
            "2",
            "--dataset",
            "synthetic",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    best = json.loads((out / "best.json").read_text())
    assert best["space"] == "cell3"
    assert isinstance(Cell3Space().genotype_from_dict(best["genotype"]), Cell3Genotype)
