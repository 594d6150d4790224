"""The guest test ids read from source (pipeline.testlist), checked against pytest's own."""

import subprocess
import sys
import textwrap
from pathlib import Path

from pipeline import testlist

PROJECT = Path(__file__).resolve().parent.parent

MODULE = textwrap.dedent("""\
    import pytest

    def helper():
        pass

    def test_plain():
        pass

    @pytest.mark.parametrize("x", [1, 2])
    def test_param(x):
        pass

    class TestGroup:
        def test_in_class(self):
            pass

        def not_a_test(self):
            pass

    class TestWithInit:
        def __init__(self):
            pass

        def test_never_collected(self):
            pass

    class Helper:
        def test_not_collected_either(self):
            pass
    """)


def _tree(top: Path, ini: str | None) -> Path:
    if ini is not None:
        (top / "pyproject.toml").write_text(ini)
    tests = top / "sub" / "tests"
    tests.mkdir(parents=True)
    (tests / "test_mod.py").write_text(MODULE)
    (tests / "helpers.py").write_text("def test_not_in_a_test_module():\n    pass\n")
    (tests / "broken_test.py").write_text("def test_(:\n")
    return tests


def test_ids_match_pytest_without_parametrization(tmp_path):
    tests = _tree(tmp_path, "[tool.pytest.ini_options]\n")
    ids = testlist.static_ids([tests])
    assert ids == ["sub/tests/test_mod.py::test_plain", "sub/tests/test_mod.py::test_param",
                   "sub/tests/test_mod.py::TestGroup::test_in_class"]
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", str(tests / "test_mod.py")],
                         capture_output=True, text=True, cwd="/", timeout=120, check=False).stdout
    real = [line for line in out.splitlines() if "::" in line]
    assert {i.split("[")[0] for i in real} == set(ids)


def test_pyproject_without_a_pytest_section_is_not_the_rootdir(tmp_path):
    tests = _tree(tmp_path, "[project]\nname = 'x'\n")
    assert testlist.rootdir([tests]) == tests
    assert testlist.static_ids([tests])[0] == "test_mod.py::test_plain"


def test_the_project_guest_tests_all_have_ids():
    ids = testlist.static_ids([PROJECT / "guest-tests"])
    assert len(ids) > 40 and all(i.startswith("guest-tests/test_") for i in ids)
    modules = {i.split("::")[0] for i in ids}
    assert modules == {f"guest-tests/{p.name}" for p in (PROJECT / "guest-tests").glob("test_*.py")}
