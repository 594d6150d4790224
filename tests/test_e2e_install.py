"""End to end (e2e marker), without building or booting a kernel: the project as a user gets
it, a wheel installed into a fresh venv and run from a folder that is not the checkout.

The wheel is built from a copy of the checkout's files (git ls-files: the checkout itself gets
no build/ or egg-info), installed with its dependencies from the configured package index
into a new venv (~15 s here), and then `pipeline` runs from a scratch folder:

- `pipeline run --help` says where the embedded default job's data is (the installed copy);
- `pipeline matrix --format github` of a copy of ci/matrix-job.yaml finds the series
  `cgroup-pool` by name in the installed data;
- `pipeline run --dry-run` resolves the default job (tree, series, fragments, guest tests)
  from the installed data, and a user's own job keeps its paths relative to its folder;
- the installed guest tests collect with the same node ids as in a checkout
  (`guest-tests/test_x.py::...`: the JUnit and KCIDB names do not change when installed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


class Installed:
    def __init__(self, venv: Path, site: Path, work: Path) -> None:
        self.venv, self.site, self.work = venv, site, work

    def run(self, *args: str, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        done = subprocess.run(args, cwd=cwd or self.work, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        print("$", " ".join(args), f"(exit {done.returncode})")
        print(done.stdout[-6000:], done.stderr[-6000:])
        return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    start = time.monotonic()
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True, check=True,
                           timeout=60).stdout.decode().split("\0")
    source = base / "source"
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(base / "wheels"), str(source)], check=True, timeout=600)
    wheel, = (base / "wheels").glob("kernel_pipeline-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                   check=True, timeout=900)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    work = base / "elsewhere"
    work.mkdir()
    print(f"wheel built and installed in {time.monotonic() - start:.1f} s")
    return Installed(venv, site, work)


def test_the_installed_package_is_not_the_checkout(installed):
    done = installed.run("python", "-c", "import pipeline; print(pipeline.__file__)")
    assert done.returncode == 0
    assert Path(done.stdout.strip()).is_relative_to(installed.site)
    # git runs as the git program (pipeline/git.py): GitPython is no dependency any more
    done = installed.run("python", "-c", "import importlib.util as u; print(u.find_spec('git'))")
    assert done.stdout.strip() == "None"


def test_run_help_names_the_installed_default_job_data(installed):
    done = installed.run("pipeline", "run", "--help")
    assert done.returncode == 0, done.stderr
    assert "--dry-run" in done.stdout
    text = " ".join(done.stdout.split())       # argparse wraps long paths at any space
    assert str(installed.site / "pipeline") in text.replace("- ", "-"), done.stdout


def test_matrix_finds_the_series_in_the_installed_data(installed):
    ci = installed.work / "ci"
    ci.mkdir(exist_ok=True)
    shutil.copy(ROOT / "ci" / "matrix-job.yaml", ci / "matrix-job.yaml")
    # the job's own fragments (../kconfigs/), as a user's CI repository would carry them
    shutil.copytree(ROOT / "kconfigs", installed.work / "kconfigs", dirs_exist_ok=True)
    done = installed.run("pipeline", "matrix", "--format", "github", "--job",
                         "ci/matrix-job.yaml")
    assert done.returncode == 0, done.stderr
    include = json.loads(done.stdout)["include"]
    assert [e["name"] for e in include] == ["6.1-cgroup-pool-default", "6.1-cgroup-pool-debug",
                                            "6.12-cgroup-pool-default",
                                            "6.12-cgroup-pool-debug"]
    debug = include[1]["command"]
    assert "--job ci/matrix-job.yaml" in debug and "--kconfig kconfigs/debug.config" in debug
    assert "--series cgroup-pool" in debug


def _listed(stdout: str, prefix: str) -> list[Path]:
    return [Path(line.split(prefix, 1)[1].split(" (")[0].strip())
            for line in stdout.splitlines() if line.strip().startswith(prefix)]


def test_dry_run_of_the_default_job_resolves_the_installed_data(installed):
    done = installed.run("pipeline", "run", "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    data = installed.site / "pipeline"
    fragments = _listed(out, "fragment ")
    assert {f.name for f in fragments} >= {"virtme-guest.config", "cgroup-v1.config",
                                           "debug.config", "kasan.config"}, out
    assert all(f.is_relative_to(data) and f.is_file() for f in fragments), out
    series, = _listed(out, "series cgroup-pool: ")
    assert series.is_relative_to(data) and series.name == "6.1", out
    assert (series / "series.yaml").is_file()
    tests, = _listed(out, "guest tests ")
    assert tests.is_relative_to(data) and tests.name == "guest-tests", out
    assert (tests / "test_pool_size.py").is_file()
    assert "tree debian:6.1" in out
    assert not (installed.work / "out").exists()    # a dry run writes nothing


def test_dry_run_of_a_users_job_keeps_its_paths_relative_to_the_job(installed):
    job_dir = installed.work / "myjob"
    (job_dir / "tests").mkdir(parents=True, exist_ok=True)
    (job_dir / "tests" / "test_mine.py").write_text("def test_mine():\n    pass\n")
    (job_dir / "extra.config").write_text("CONFIG_PRINTK=y\n")
    (job_dir / "job.yaml").write_text("tree: debian:6.12\nseries: cgroup-pool\n"
                                      "kconfig: [extra.config]\ntests: [tests]\n"
                                      "variants: [{name: patched}]\n")
    done = installed.run("pipeline", "run", "--dry-run", "--job", "myjob/job.yaml")
    assert done.returncode == 0, done.stderr
    assert _listed(done.stdout, "fragment ") == [job_dir / "extra.config"]
    assert _listed(done.stdout, "guest tests ") == [job_dir / "tests"]
    series, = _listed(done.stdout, "series cgroup-pool: ")   # a name: the shipped series
    assert series.is_relative_to(installed.site / "pipeline") and series.name == "6.12"


def test_installed_guest_tests_collect_with_the_checkouts_node_ids(installed):
    tests = installed.site / "pipeline" / "project" / "guest-tests"
    assert (installed.site / "pipeline" / "guest" / "init.py").is_file()
    assert (installed.site / "pipeline" / "guest" / "pipeline_guest_plugin.py").is_file()
    # as boot.host_collect does it: the installed interpreter, absolute paths, cwd /
    done = installed.run("python", "-m", "pytest", "--collect-only", "-q", "-p",
                         "no:cacheprovider", str(tests), cwd=Path("/"))
    assert done.returncode == 0, done.stdout
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    mine = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                           "no:cacheprovider", str(ROOT / "guest-tests")], cwd="/",
                          capture_output=True, text=True, timeout=120, check=False)
    assert ids and ids == [line for line in mine.stdout.splitlines() if "::" in line]
    assert all(i.startswith("guest-tests/") for i in ids)
