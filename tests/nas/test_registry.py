"""The one registry shape (``nas.registry``): names, duplicates, unknown names, entry points."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from nas import registry
from nas.registry import Registry
from nas.testing import ToySpace


def _distribution(root: Path, group: str, entries: dict[str, str], module: str = "") -> None:
    """An installed distribution as importlib.metadata finds it: a dist-info folder on ``sys.path``."""
    info = root / "fake_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}\n")
    if module:
        (root / "fake_plugin.py").write_text(textwrap.dedent(module))


def test_register_get_names_and_contains() -> None:
    widgets: Registry[int] = Registry("widget", "nas.test.none")
    assert widgets.register("b", 2) == 2
    widgets.register("a")(1)
    assert widgets.names() == ["a", "b"] and widgets.get("a") == 1 and "b" in widgets and "c" not in widgets
    assert list(widgets) == ["a", "b"] and len(widgets) == 2


def test_duplicate_names_raise_and_unknown_names_list_the_valid_ones() -> None:
    widgets: Registry[int] = Registry("widget", "nas.test.none")
    widgets.register("a", 1)
    with pytest.raises(ValueError, match="a widget named 'a' is already registered"):
        widgets.register("a", 2)
    with pytest.raises(ValueError, match=r"^unknown widget 'z'; valid: \['a'\]$"):
        widgets.get("z")


def test_entry_points_load_once_and_a_broken_plugin_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _distribution(
        tmp_path,
        "nas.test.widgets",
        {"good": "fake_plugin:make", "broken": "no_such_module:make"},
        module="def make():\n    return 'made'\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    widgets: Registry[object] = Registry("widget", "nas.test.widgets")
    assert widgets.names() == ["broken", "good"]  # declared names, listed without importing anything
    assert "fake_plugin" not in sys.modules
    assert widgets.get("good")() == "made"
    with pytest.raises(
        ValueError,
        match="widget 'broken' is declared by a plug-in that failed to load: no_such_module:make .ModuleNotFoundError",
    ):
        widgets.get("broken")
    with pytest.raises(ValueError, match="already registered"):
        widgets.register("good", lambda: None)  # entry points were loaded first: the name is taken


def test_a_space_entry_is_instantiated_and_must_carry_its_name() -> None:
    spaces = Registry("search space", "nas.test.none", registry._space)
    spaces.register("toy", ToySpace)  # a class is instantiated
    assert isinstance(spaces.get("toy"), ToySpace)
    with pytest.raises(ValueError, match="registered as 'other' calls itself 'toy'"):
        spaces.register("other", ToySpace())


def test_the_builtins_come_from_our_entry_points() -> None:
    from importlib.metadata import entry_points

    for group, known in registry.ALL.items():
        declared = {
            entry.name
            for entry in entry_points(group=group)
            if entry.value.split(".")[0] in ("nas", "search_spaces", "controllers", "evaluators")
        }
        assert declared and declared <= set(known.names()), group
