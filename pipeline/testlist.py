"""The guest tests' node ids read from their source, without importing anything.

The boot stage wants the list of guest tests before the boot, so that a guest that dies before
pytest starts (a panic at init, a hang in the 9p mount) still reports every test as not run.
The exact list comes from `pytest --collect-only`, which imports the test modules: code meant for
the guest, so the host runs it only as nobody (boot.host_collect). Where nobody cannot read the
project (a checkout under /root or a private CI folder), this module gives the next best list:
one id per test function or method, as pytest's default rules find them, without the
parametrization suffixes that only an import can compute. It is used only while the guest has
not reported its own collection (boot.merge_tests), so an approximate id never sits beside an
exact one.
"""

from __future__ import annotations

import ast
import configparser
import tomllib
from pathlib import Path

MAX_SOURCE = 4 * 1024 * 1024   # a test module above this is not parsed (an error of its own)


def _pytest_ini_in(folder: Path) -> bool:
    """Whether `folder` holds a file that makes it pytest's rootdir (pytest's rule: pytest.ini
    and .pytest.ini always, the others only with a pytest section)."""
    if (folder / "pytest.ini").is_file() or (folder / ".pytest.ini").is_file():
        return True
    try:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "ini_options" in tomllib.loads(
                pyproject.read_text(errors="replace")).get("tool", {}).get("pytest", {}):
            return True
        for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
            if (folder / name).is_file():
                parser = configparser.ConfigParser(interpolation=None)
                parser.read(folder / name, encoding="utf-8")
                if parser.has_section(section):
                    return True
    except (OSError, ValueError, configparser.Error, tomllib.TOMLDecodeError):
        return False
    return False


def rootdir(paths: list[Path]) -> Path:
    """The folder pytest names node ids from: the nearest ancestor of the paths' common folder
    with a pytest configuration, else that common folder."""
    common = Path(*_common_parts([p.resolve() for p in paths]))
    start = common if common.is_dir() else common.parent
    for folder in (start, *start.parents):
        if _pytest_ini_in(folder):
            return folder
    return start


def _common_parts(paths: list[Path]) -> tuple[str, ...]:
    parts = paths[0].parts
    for path in paths[1:]:
        n = 0
        while n < min(len(parts), len(path.parts)) and parts[n] == path.parts[n]:
            n += 1
        parts = parts[:n]
    return parts or ("/",)


def _modules(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    found = [p for p in path.rglob("*.py")
             if p.name.startswith("test_") or p.name.endswith("_test.py")]
    return sorted(p for p in found if not any(part.startswith(".") for part in p.parts))


def _is_test_class(node: ast.ClassDef) -> bool:
    return node.name.startswith("Test") and not any(
        isinstance(item, ast.FunctionDef) and item.name == "__init__" for item in node.body)


def module_ids(source: str, prefix: str) -> list[str]:
    """Ids of the test functions and of the test methods of Test* classes in one module."""
    tree = ast.parse(source)
    ids = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            ids.append(f"{prefix}::{node.name}")
        elif isinstance(node, ast.ClassDef) and _is_test_class(node):
            ids.extend(f"{prefix}::{node.name}::{item.name}" for item in node.body
                       if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                       and item.name.startswith("test"))
    return ids


def static_ids(paths: list[Path]) -> list[str]:
    """Node ids of the tests under `paths`, read from source; a module that cannot be read or
    parsed gives no ids (the guest reports its collection error)."""
    if not paths:
        return []
    root = rootdir(paths)
    ids: list[str] = []
    for path in paths:
        for module in _modules(path.resolve()):
            try:
                if module.stat().st_size > MAX_SOURCE:
                    continue
                source = module.read_text(encoding="utf-8")
                ids.extend(module_ids(source, module.relative_to(root).as_posix()))
            except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
                continue
    return ids
