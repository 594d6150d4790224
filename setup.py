"""The wheel carries the default job's data: patches/, kconfigs/ and guest-tests/ of the checkout
are copied into the package as pipeline/project/ (see pipeline.job.PROJECT_ROOT), so that an
installed `pipeline` finds them from any folder. Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROJECT_DATA = ("patches", "kconfigs", "guest-tests")   # folders of the checkout, as they are
# pytest's rootdir for the installed guest tests: node ids `guest-tests/test_x.py::...`, as in a
# checkout (where pyproject.toml's [tool.pytest.ini_options] makes the checkout the rootdir)
PYTEST_INI = """\
# Written by the wheel build (setup.py): makes this folder pytest's rootdir for the guest tests,
# so that their node ids are guest-tests/test_x.py::... as in a checkout.
[pytest]
"""


class BuildPyWithProjectData(build_py):
    """build_py, plus the checkout's data folders under build/lib/pipeline/project/. An
    editable install needs no copy: there the package finds them beside itself."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "pipeline" / "project"
        shutil.rmtree(target, ignore_errors=True)
        for name in PROJECT_DATA:
            shutil.copytree(HERE / name, target / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (target / "pytest.ini").write_text(PYTEST_INI)


setup(cmdclass={"build_py": BuildPyWithProjectData})
