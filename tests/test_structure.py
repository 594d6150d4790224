"""The package's structure rules (docs/architecture.md): no module reaches into another's
private names, the guest side never imports the host package, the stage list is the one
the runner and the docs describe."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline import stages

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
GUEST = [PACKAGE / "guest", PACKAGE / "bench" / "guest"]


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_names(path: Path) -> set[str]:
    """The names `path` binds to pipeline modules (`from . import apply as apply_mod`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            names |= {a.asname or a.name for a in node.names if not node.module
                      or a.name[0].islower()}
    return names


def private_uses(path: Path) -> list[str]:
    """`from .x import _name` and `module._name` (module: a pipeline module) in `path`."""
    tree = ast.parse(path.read_text())
    found = []
    modules = _module_names(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            found += [f"{path.name}:{node.lineno}: from {'.' * node.level}{node.module or ''} "
                      f"import {a.name}" for a in node.names
                      if a.name.startswith("_") and a.name != "__version__"]
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
              and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
              and node.value.id in modules):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    found = [use for path in _modules() for use in private_uses(path)]
    assert found == []


def test_the_check_finds_a_private_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from . import apply as apply_mod\nfrom .job import _Checker\n"
                   "apply_mod._apply_one()\n")
    assert private_uses(bad) == ["bad.py:2: from .job import _Checker",
                                 "bad.py:3: apply_mod._apply_one"]


def test_the_guest_side_does_not_import_the_host_package():
    for folder in GUEST:
        for path in folder.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    assert node.level == 0 and not (node.module or "").startswith("pipeline"), \
                        f"{path}:{node.lineno}"
                elif isinstance(node, ast.Import):
                    assert not any(a.name.startswith("pipeline") for a in node.names), \
                        f"{path}:{node.lineno}"


def test_stage_list_order_and_needs():
    names = [s.name for s in stages.STAGES]
    assert names == ["apply", "configure", "build", "compiled", "boot", "guest",
                     "kselftest-build", "kselftest-run"]
    made: set[str] = {"src"}          # a baseline variant's sources are the tree itself
    for spec in stages.STAGES:        # every stage needs only what an earlier stage makes
        assert set(spec.needs) <= made, spec.name
        made |= set(spec.makes)


def test_architecture_doc_lists_every_stage():
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for spec in stages.STAGES:
        assert f"`{spec.name}`" in text, spec.name
