"""``nas/`` is the ground floor: it imports nothing from the packages that register into it."""

from __future__ import annotations

import ast
from pathlib import Path

import nas

APPLICATION_PACKAGES = ("search_spaces", "controllers", "evaluators")
CORE = Path(nas.__file__).parent


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` or ``from ... import`` names in ``path``, at any depth (lazy ones too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_the_core_imports_no_application_package() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 15, files  # the check is looking at the real tree
    offending = [f"{path.relative_to(CORE.parent)}:{line}: {module}"
                 for path in files for line, module in imported_modules(path)
                 if module.split(".")[0] in APPLICATION_PACKAGES]
    assert not offending, offending


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text("def f():\n    from search_spaces.nasnet import NasNetSpace\n    import controllers\n")
    assert [module for _, module in imported_modules(source)] == ["search_spaces.nasnet", "controllers"]


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
    offending = [f"{path.name}:{line}: {call}" for path in sorted(CORE.rglob("*.py")) if application not in path.parents
                 for line, call in global_state_calls(ast.parse(path.read_text()), frozenset({"intra_op_threads"}))]
    assert not offending, offending


def test_the_global_state_check_finds_calls() -> None:
    tree = ast.parse("import matplotlib\nmatplotlib.use('Agg')\ndef f():\n    print(1)\n")
    assert global_state_calls(tree) == [(2, "matplotlib.use"), (4, "print")]
