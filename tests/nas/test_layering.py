"""The floor plan, checked on the whole import graph (every ``import``, at any depth, ``TYPE_CHECKING`` too).

- ``nas/`` is the ground floor: it imports nothing from the packages that register into it;
- no import cycle anywhere, function-level imports included;
- the core (the modules at the top of ``nas/``) imports no feature (a subpackage of ``nas/``);
- a function-level import keeps a heavy library (torch, torchvision, matplotlib, Ray, ...) out of
  a module that does not import it already, and says so in a ``# lazy: <why>`` comment on its line;
- no library module prints or sets global state.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import nas

ROOT = Path(nas.__file__).parent.parent
PACKAGES = ("nas", "search_spaces", "controllers", "evaluators", "backends")
APPLICATION_PACKAGES = PACKAGES[1:]
CORE = Path(nas.__file__).parent
# Libraries that take a noticeable time to import (0.4 to 4 s here): a path that does not need one must not pay for it.
HEAVY = frozenset({"torch", "torchvision", "matplotlib", "ray", "sklearn", "timm", "onnx", "onnxscript"})


@dataclass
class Module:
    """One module's imports: at module level, in functions (with the comment on that line), for typing only."""

    name: str
    path: Path
    top: set[str] = field(default_factory=set)
    lazy: list[tuple[int, str, str]] = field(default_factory=list)  # (line, imported name, comment)
    typing: set[str] = field(default_factory=set)
    heavy: set[str] = field(default_factory=set)  # heavy libraries it imports at module level itself


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def read_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Module]:
    modules = {
        module_name(path, root): Module(module_name(path, root), path)
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    for module in modules.values():
        source = module.path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source, filename=str(module.path))
        typing = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        functions = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(node)
            if n is not node
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            comment = next(
                (line.partition("#")[2].strip() for line in lines[node.lineno - 1 : node.end_lineno] if "#" in line), ""
            )
            targets = {resolve(name, modules) or name for name in names}
            for name in sorted(targets - {names[0]} if len(targets) > 1 else targets):
                target = resolve(name, modules)
                if id(node) in typing:
                    if target and target != module.name:
                        module.typing.add(target)
                elif id(node) in functions:
                    module.lazy.append((node.lineno, target or name, comment))
                elif target and target != module.name:
                    module.top.add(target)
                elif not target and name.split(".")[0] in HEAVY:
                    module.heavy.add(name.split(".")[0])
    return modules


def resolve(name: str, modules: dict[str, Module]) -> str:
    """The module of ours that ``name`` (a module, or a name in one) is, or "" for another library's."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def heavy_libraries(modules: dict[str, Module]) -> dict[str, frozenset[str]]:
    """The heavy libraries importing each module brings in (module-level imports, followed transitively)."""
    found: dict[str, frozenset[str]] = {}

    def visit(name: str, stack: tuple[str, ...]) -> frozenset[str]:
        if name in found:
            return found[name]
        libraries = set(modules[name].heavy)
        packages = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]  # parents run first
        for target in [*modules[name].top, *packages]:
            if target in modules and target not in stack:
                libraries |= visit(target, (*stack, name))
        found[name] = frozenset(libraries)
        return found[name]

    for name in modules:
        visit(name, ())
    return found


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over every kind of import."""
    edges = {
        name: {
            t
            for t in (*m.top, *m.typing, *(target for _, target, _ in m.lazy))
            if t in modules and t != name and not name.startswith(t + ".")
        }
        for name, m in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in edges[name]:
            if target not in index:
                connect(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(edges):
        if name not in index:
            connect(name)
    return found


def is_core(name: str) -> bool:
    """A module at the top of ``nas/`` (the package itself included); subpackages are features."""
    return name == "nas" or (name.startswith("nas.") and name.count(".") == 1 and not (CORE / name[4:]).is_dir())


GRAPH = read_graph()


def test_the_check_reads_the_real_tree() -> None:
    assert len([name for name in GRAPH if name.startswith("nas.")]) >= 60
    assert "nas.run" in GRAPH and "nas.search.run" in GRAPH and GRAPH["nas.run"].top


def test_the_core_imports_no_application_package() -> None:
    offending = [
        f"{m.name} -> {t}"
        for m in GRAPH.values()
        if m.name.split(".")[0] == "nas"
        for t in (*m.top, *m.typing, *(target for _, target, _ in m.lazy))
        if t.split(".")[0] in APPLICATION_PACKAGES
    ]
    assert not offending, offending


def test_no_import_cycle_anywhere() -> None:
    assert cycles(GRAPH) == []


def test_no_core_module_imports_a_feature() -> None:
    offending = [
        f"{m.name} -> {t}"
        for m in GRAPH.values()
        if is_core(m.name)
        for t in (*m.top, *m.typing, *(target for _, target, _ in m.lazy))
        if t.startswith("nas.") and not is_core(t)
    ]
    assert not offending, offending


def test_a_function_level_import_keeps_a_heavy_library_out_and_says_so() -> None:
    heavy = heavy_libraries(GRAPH)
    unjustified, unexplained = [], []
    for module in GRAPH.values():
        for line, target, comment in module.lazy:
            brings = heavy[target] if target in GRAPH else frozenset({target.split(".")[0]}) & HEAVY
            where = f"{module.path.relative_to(ROOT)}:{line} {target}"
            if not brings - heavy[module.name]:
                unjustified.append(where)
            elif not comment.startswith("lazy: "):
                unexplained.append(where)
    assert not unjustified, f"import these at the top of the module: {unjustified}"
    assert not unexplained, f"say why in a '# lazy: ...' comment: {unexplained}"


def test_the_command_line_and_settings_import_no_heavy_library() -> None:
    """A user's mistake is refused before torch is imported (issue 22: every refusal under 2 s)."""
    heavy = heavy_libraries(GRAPH)
    light = [
        "nas.cli",
        "nas.cli.app",
        "nas.run",
        "nas.search.settings",
        "nas.scale.run",
        "nas.netadapt.settings",
        "nas.netadapt.run",
        "nas.train.settings",
        "nas.train.run",
        "nas.journal",
        "nas.registry",
        "evaluators.proxy_options",
        "evaluators.dataset_checks",
        "controllers.optuna_sampler",
    ]
    assert {name: sorted(heavy[name]) for name in light if heavy[name]} == {}


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            "def f():\n    from search_spaces.nasnet import NasNetSpace  # lazy: why\n    import torch\n",
            [(2, "search_spaces.nasnet", "lazy: why"), (3, "torch", "")],
        ),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import nas.run\n", []),
    ],
)
def test_the_check_sees_lazy_and_typing_imports(tmp_path: Path, source: str, expected: list) -> None:
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "example.py").write_text(source)
    (tmp_path / "search_spaces").mkdir()
    (tmp_path / "search_spaces" / "nasnet.py").write_text("")
    graph = read_graph(tmp_path, ("package", "search_spaces"))
    assert graph["package.example"].lazy == expected


def test_the_cycle_check_finds_a_function_level_cycle(tmp_path: Path) -> None:
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "a.py").write_text("import package.b\n")
    (tmp_path / "package" / "b.py").write_text("def f():\n    import package.a\n")
    assert cycles(read_graph(tmp_path, ("package",))) == [["package.a", "package.b"]]


FORBIDDEN_CALLS = ("print", "matplotlib.use", "optuna.logging.set_verbosity", "torch.set_num_threads")


def global_state_calls(tree: ast.AST, allowed_in: frozenset[str] = frozenset()) -> list[tuple[int, str]]:
    """Calls of ``FORBIDDEN_CALLS``, except inside a function whose name is in ``allowed_in``."""
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Call) and ast.unparse(node.func) in FORBIDDEN_CALLS and function not in allowed_in:
            found.append((node.lineno, ast.unparse(node.func)))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, None)
    return found


def test_no_library_module_prints_or_configures_global_state() -> None:
    """Fault 7: ``print``, backend selection and log levels belong to the application (the CLI). The
    one thread-count change is the runner's ``intra_op_threads``, which restores the caller's value."""
    application = CORE / "cli"
    offending = [
        f"{path.name}:{line}: {call}"
        for path in sorted(CORE.rglob("*.py"))
        if application not in path.parents
        for line, call in global_state_calls(ast.parse(path.read_text()), frozenset({"intra_op_threads"}))
    ]
    assert not offending, offending


def test_the_global_state_check_finds_calls() -> None:
    tree = ast.parse("import matplotlib\nmatplotlib.use('Agg')\ndef f():\n    print(1)\n")
    assert global_state_calls(tree) == [(2, "matplotlib.use"), (4, "print")]
