"""The GitLab template, run for real with gitlab-ci-local (its shell executor, on this machine).

A copy of the checkout becomes a one-commit repository; gitlab-ci-local runs ci/gitlab-ci.yml's
`generate-matrix` job in it with PIPELINE_MATRIX_JOB=ci/smoke-job.yaml, then the one job of
the child pipeline that job leaves as its artifact: ci/setup.sh, `pipeline run` of the patched
6.1 kernel with one guest test file (a warm build cache serves the kernel: a couple of
minutes; a cold one builds it, ~10 min), and the JUnit artifact it keeps.

gitlab-ci-local comes from the npm registry into the cache folder
($KERNEL_PIPELINE_CACHE/node, ~/.cache/kernel-pipeline/node); without npm the test is
skipped (ci/setup.sh installs nodejs, npm and rsync on Debian 12).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from lxml import etree

from pipeline.cache import default_cache_root
from pipeline.job import PROJECT_ROOT

pytestmark = pytest.mark.e2e
GCL_VERSION = "4.60"          # a 4.60.x release: runs on Node 18 and 20
SMOKE_JOB = "ci/smoke-job.yaml"


def _gitlab_ci_local() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: gitlab-ci-local comes from the npm registry "
                    "(apt-get install nodejs npm, as ci/setup.sh does)")
    assert shutil.which("rsync"), "gitlab-ci-local needs rsync: apt-get install rsync"
    prefix = default_cache_root() / "node"
    binary = prefix / "node_modules" / ".bin" / "gitlab-ci-local"
    if binary.exists():
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode == 0 and done.stdout.strip().startswith(GCL_VERSION + "."):
            return binary
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                    f"gitlab-ci-local@{GCL_VERSION}"], check=True, timeout=1200)
    assert binary.exists(), f"npm installed no {binary}"
    return binary


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   timeout=120)


def _workspace(dest: Path) -> Path:
    """The checkout as it is (tracked and new files, not what .gitignore leaves out), as a
    repository of one commit: what a GitLab runner would clone."""
    listed = subprocess.run(["git", "-C", str(PROJECT_ROOT), "ls-files", "-z", "--cached",
                             "--others", "--exclude-standard"], check=True,
                            capture_output=True, timeout=120).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = PROJECT_ROOT / name
        if not src.is_file():           # deleted in the work tree, not yet in git
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)
    _git(dest, "init", "-q", "-b", "main")
    _git(dest, "add", "-A")
    _git(dest, "-c", "user.name=Kernel Pipeline", "-c", "user.email=pipeline@example.invalid",
         "commit", "-q", "-m", "gitlab-ci-local test")
    return dest


def _gcl(binary: Path, cwd: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    # the jobs make and use their own venv: nothing of this one's may leak into them
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(NO_COLOR="1", FORCE_COLOR="0")
    started = time.monotonic()
    done = subprocess.run([str(binary), "--force-shell-executor", "--no-color", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    print(f"gitlab-ci-local {' '.join(args)}: exit {done.returncode} "
          f"in {time.monotonic() - started:.0f} s")
    print(done.stdout[-12000:], done.stderr[-4000:])
    return done


@pytest.fixture
def repo():
    # not under pytest's basetemp: other pytest runs on the machine prune old numbered
    # folders there, and this test runs for minutes
    with tempfile.TemporaryDirectory(prefix="kp-gitlab-ci-local-") as folder:
        yield _workspace(Path(folder) / "repo")


def _artifact(repo: Path, path: str) -> Path:
    """A job's artifact as gitlab-ci-local keeps it (one folder per job, its name made safe
    for docker)."""
    found = sorted((repo / ".gitlab-ci-local" / "artifacts").glob(f"*/{path}"))
    assert len(found) == 1, f"expected one artifact {path}, found {found}"
    return found[0]


def test_gitlab_pipeline_generates_and_runs_a_child_job(repo):
    binary = _gitlab_ci_local()

    gen = _gcl(binary, repo, "--file", "ci/gitlab-ci.yml", "--variable",
               f"PIPELINE_MATRIX_JOB={SMOKE_JOB}", "generate-matrix", timeout=1200)
    assert gen.returncode == 0, "generate-matrix failed"
    assert "PASS" in gen.stdout and "generate-matrix" in gen.stdout
    child_file = _artifact(repo, "child-pipeline.yml")
    child = yaml.safe_load(child_file.read_text())
    jobs = [name for name in child if name.startswith("run:")]
    assert jobs == ["run:6.1-cgroup-pool-default"], jobs
    assert f"--job {SMOKE_JOB}" in child[jobs[0]]["script"][0]

    # the child pipeline as GitLab would include it: from the generator's artifact
    shutil.copy2(child_file, repo / "child-pipeline.yml")
    variables = ["--variable", f"CCACHE_DIR={default_cache_root() / 'ccache'}"]  # warm ccache
    run = _gcl(binary, repo, "--file", "child-pipeline.yml", *variables, jobs[0], timeout=3600)
    assert run.returncode == 0, f"{jobs[0]} failed"

    junit = _artifact(repo, "out/junit.xml")
    assert (junit.parent / "summary.json").is_file()
    doc = etree.parse(str(junit))
    suites = {s.get("name"): s for s in doc.iter("testsuite")}
    assert {"patched.build", "patched.boot", "patched.guest"} <= set(suites), sorted(suites)
    assert not any(n.startswith("baseline.") for n in suites), "only the patched variant runs"
    cases = [c for c in suites["patched.guest"].iter("testcase")
             if "test_cgroup_v1_basic" in c.get("classname", "")]
    assert len(cases) >= 3, "the guest test file's cases are not in the report"
    assert all(c.find("failure") is None and c.find("error") is None for c in cases)
    assert doc.getroot().get("failures") == "0" and doc.getroot().get("errors") == "0"
