"""End to end, for real: Debian's trees, real kernel builds, real boots under QEMU.

The first run is slow (tree import ~1 min, a cold build 3-6 min per kernel on 2 cores);
the cache ($KERNEL_PIPELINE_CACHE or ~/.cache/kernel-pipeline) and ccache make later runs
fast. Run by default; deselect with `-m "not e2e"`.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kcidb_io.schema import V5_3
from lxml import etree

from pipeline import testlist
from pipeline.job import PROJECT_ROOT

pytestmark = pytest.mark.e2e
XSD = Path(__file__).parent / "fixtures" / "junit.xsd"
NO_POOL = "kernel without the cgroup pool series"
POOL_MODULES = ("test_pool_size", "test_pool_rename", "test_pool_fallback", "test_pool_lifetime",
                "test_pool_locking", "test_pool_identity", "test_pool_parent", "test_pool_stress",
                "test_pool_label")
PATCHED = ("patched", "patched-debug", "patched-kasan")
KERNELS = ("baseline", "baseline-debug", *PATCHED)   # every variant of the default job
PLANTED = Path(__file__).parent / "fixtures" / "planted" / "0003-cgroup-planted-regression.patch"


def pipeline_run(out: Path, *flags: str, timeout: float = 4800) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", "--out", str(out), *flags],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)
    print(done.stdout[-8000:], done.stderr[-3000:])
    return done


def load(out: Path) -> tuple[etree._ElementTree, dict]:
    doc = etree.parse(str(out / "junit.xml"))
    etree.XMLSchema(etree.parse(str(XSD))).assertValid(doc)
    return doc, json.loads((out / "summary.json").read_text())


def cases(doc: etree._ElementTree, suite: str) -> list[etree._Element]:
    return doc.xpath(f"//testsuite[@name='{suite}']/testcase")


def outcome(case: etree._Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def pool_cases(doc: etree._ElementTree, variant: str) -> list[etree._Element]:
    return [c for c in cases(doc, f"{variant}.guest")
            if any(m in c.get("classname") for m in POOL_MODULES)]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`pipeline run` with no job: baseline, patched, patched-debug, baseline-debug,
    patched-kasan 6.1, kselftests, the lockdep report."""
    out = tmp_path_factory.mktemp("default-run")
    done = pipeline_run(out)
    doc, summary = load(out)
    return done, doc, summary, out


def test_default_job_passes_every_stage(default_run):
    done, doc, summary, out = default_run
    suites = [s.get("name") for s in doc.getroot().iter("testsuite")]
    for variant in KERNELS:
        for stage in ("configure", "build", "boot", "guest"):
            assert f"{variant}.{stage}" in suites
            for case in cases(doc, f"{variant}.{stage}"):
                assert outcome(case) in ("passed", "skipped"), (variant, stage, case.get("name"))
    assert "patched.apply" in suites and "baseline.apply" not in suites
    assert [outcome(c) for c in cases(doc, "patched.apply")] == ["passed", "passed"]
    assert done.returncode == 0, summary
    props = {p.get("name"): p.get("value")
             for p in doc.xpath("//testsuite[@name='patched.boot']/properties/property")}
    assert props["tree_version"].startswith("6.1.") and props["accel"] in ("kvm", "tcg")
    for variant in KERNELS:
        assert (out / variant / "console.log").stat().st_size > 0


def test_pool_tests_skip_on_baseline_with_the_reason(default_run):
    _done, doc, _summary, _out = default_run
    pool = pool_cases(doc, "baseline")
    assert len(pool) > 40
    for case in pool:
        assert outcome(case) == "skipped", case.get("name")
        assert NO_POOL in case.find("skipped").get("message")


@pytest.mark.parametrize("variant", PATCHED)
def test_pool_tests_pass_on_the_patched_kernels(default_run, variant):
    _done, doc, _summary, _out = default_run
    pool = pool_cases(doc, variant)
    assert len(pool) > 40
    bad = [(c.get("name"), outcome(c)) for c in pool if outcome(c) != "passed"]
    assert not bad


def test_debug_kernel_really_has_lockdep(default_run):
    _done, doc, summary, out = default_run
    for variant in ("patched-debug", "baseline-debug"):
        assert "CONFIG_PROVE_LOCKING=y" in (out / variant / "config").read_text()
        assert "lockdep" in (out / variant / "console.log").read_text().lower()
        manifest = json.loads((out / variant / "guest" / "lockdep" / "manifest.json").read_text())
        assert not manifest["lockdep"]["truncated"] and manifest["lockdep_chains"]["bytes"] > 0
    # The lockdep report compared them: the series' pool_size mutex is a new class (its
    # spinlock `&pool->lock` is not: workqueue's worker_pool lock has the same name), and
    # nothing new between watched classes that pipeline/data/lockdep-watch.yaml does not
    # accept.
    report = cases(doc, "patched-debug.lockdep")
    assert [outcome(c) for c in report] == ["passed", "passed"]
    entry = summary["lockdep"]["patched-debug"]
    assert entry["baseline"] == "baseline-debug" and entry["watched_new_edges"] == 0
    new = (out / "patched-debug" / "lockdep-new.md").read_text()
    assert "- `&pool->mutex`" in new


def test_kasan_kernel_really_has_kasan(default_run):
    _done, doc, _summary, out = default_run
    assert "CONFIG_KASAN=y" in (out / "patched-kasan" / "config").read_text()
    assert "KernelAddressSanitizer initialized" in (out / "patched-kasan" / "console.log"
                                                    ).read_text()
    stress = [c for c in cases(doc, "patched-kasan.guest")
              if "test_pool_stress" in c.get("classname")]
    assert stress and all(outcome(c) == "passed" for c in stress)


def test_kselftests_ran_on_both_and_no_regression(default_run):
    _done, doc, _summary, out = default_run
    for variant in ("baseline", "patched"):
        ks = cases(doc, f"{variant}.kselftest")
        assert len(ks) > 20, variant
        assert any(outcome(c) == "passed" for c in ks)
    table = (out / "patched" / "kselftest-regressions.md").read_text()
    assert "Result: no regressions" in table
    rows = [line for line in table.splitlines() if line.startswith("| cgroup | ")]
    assert len(rows) > 20 and any(line.endswith("| pass |") for line in rows)
    assert not any("**regression**" in line for line in rows)
    # A green baseline: what cannot pass in this guest is a known issue (skipped with the
    # reason), never a failure.
    bad = [(c.get("name"), outcome(c)) for c in cases(doc, "baseline.kselftest")
           if outcome(c) in ("failure", "error")]
    assert not bad


def test_default_run_writes_a_valid_kcidb_json(default_run):
    _done, _doc, _summary, out = default_run
    data = json.loads((out / "kcidb.json").read_text())
    V5_3.validate_exactly(data)   # kcidb-io's KCIDB v5.3 schema
    builds = {b["config_name"]: b for b in data["builds"]}
    assert set(builds) == set(KERNELS)
    assert {b["status"] for b in builds.values()} == {"PASS"}
    assert {t["build_id"] for t in data["tests"]} == {b["id"] for b in builds.values()}


@pytest.mark.long
def test_a_planted_regression_is_called_one_with_the_counts(tmp_path):
    """The 6.1 port plus a patch that drops a permission check test_core checks: exit 1,
    test_cgcore_lesser_euid_open a regression after reruns on both kernels."""
    series = tmp_path / "series"
    shutil.copytree(PROJECT_ROOT / "patches" / "cgroup-pool" / "6.1", series)
    shutil.copy(PLANTED, series / PLANTED.name)
    out = tmp_path / "out"
    done = pipeline_run(out, "--series", str(series), "--variant", "baseline",
                        "--variant", "patched")
    doc, summary = load(out)
    assert done.returncode == 1, summary
    key = "test_core: test_cgcore_lesser_euid_open"
    row = next(r for r in summary["kselftest"]["variants"]["patched"]["rows"]
               if r["test"] == key)
    assert row["verdict"] == "regression"
    assert row["reruns"]["patched_passes"] == 0 and row["reruns"]["p"] < 0.01
    case = next(c for c in cases(doc, "patched.kselftest") if c.get("name") == key)
    assert "p=" in case.find("failure").get("message")
    table = (out / "patched" / "kselftest-regressions.md").read_text()
    assert f"| cgroup | {key} |" in table and row["counts"] in table


def test_the_optional_kcsan_variant_is_left_out_of_the_default_run(default_run):
    done, doc, _summary, out = default_run
    assert "optional variant patched-kcsan left out" in done.stdout
    assert not cases(doc, "patched-kcsan.guest") and not (out / "patched-kcsan").exists()


@pytest.mark.long
def test_kcsan_variant_builds_a_kcsan_kernel_and_passes_the_pool_tests(tmp_path):
    """`--variant patched-kcsan` (not in CI: a cold build of ~9 min): a kernel with KCSAN that
    says so at boot and passes its self-test, and every pool test passes with no report."""
    done = pipeline_run(tmp_path, "--variant", "patched-kcsan", "--no-kselftest")
    doc, summary = load(tmp_path)
    assert done.returncode == 0, summary
    assert "CONFIG_KCSAN=y" in (tmp_path / "patched-kcsan" / "config").read_text()
    console = (tmp_path / "patched-kcsan" / "console.log").read_text()
    assert "kcsan: enabled early" in console and "BUG: KCSAN:" not in console
    pool = pool_cases(doc, "patched-kcsan")
    assert len(pool) > 40 and all(outcome(c) == "passed" for c in pool)


def test_6_12_port_passes_the_pool_tests(tmp_path):
    done = pipeline_run(tmp_path, "--tree", "debian:6.12", "--variant", "patched",
                        "--no-kselftest")
    doc, summary = load(tmp_path)
    assert done.returncode == 0, summary
    props = {p.get("name"): p.get("value")
             for p in doc.xpath("//testsuite[@name='patched.boot']/properties/property")}
    assert props["tree_version"].startswith("6.12.")
    pool = pool_cases(doc, "patched")
    assert len(pool) > 40 and all(outcome(c) == "passed" for c in pool)


@pytest.mark.stress
def test_long_pool_stress_on_the_lockdep_and_kasan_kernels(tmp_path):
    """The stress guest test for minutes (not in CI: `pytest -m stress`)."""
    minutes = float(os.environ.get("POOL_STRESS_MINUTES", "5"))
    job = tmp_path / "stress.yaml"
    job.write_text(textwrap.dedent(f"""\
        tree: debian:6.1
        series: cgroup-pool
        base_config: tinyconfig
        kconfig: [{PROJECT_ROOT}/kconfigs/virtme-guest.config, {PROJECT_ROOT}/kconfigs/cgroup-v1.config,
                  {PROJECT_ROOT}/kconfigs/kselftest-cgroup.config]
        tests: [{PROJECT_ROOT}/guest-tests/test_pool_stress.py]
        variants:
          - name: patched-debug
            kconfig_extra: [{PROJECT_ROOT}/kconfigs/debug.config]
          - name: patched-kasan
            kconfig_extra: [{PROJECT_ROOT}/kconfigs/kasan.config]
        qemu: {{kernel_args: [pool_stress_seconds={int(minutes * 60)}]}}
        timeouts: {{test: {int(minutes * 60) + 600}, total: {int(minutes * 60) + 1800}}}
        """))
    done = pipeline_run(tmp_path / "out", "--job", str(job), timeout=minutes * 120 + 7200)
    doc, summary = load(tmp_path / "out")
    assert done.returncode == 0, summary
    for variant in ("patched-debug", "patched-kasan"):
        got = [outcome(c) for c in cases(doc, f"{variant}.guest")]
        assert got == ["passed"], (variant, got)


def test_dropped_fragment_option_fails_configure_with_exit_3(tmp_path):
    fragment = tmp_path / "no-inet.config"
    fragment.write_text("CONFIG_9P_FS=y\n# CONFIG_INET is not set\n")
    out = tmp_path / "out"
    done = pipeline_run(out, "--variant", "baseline", "--kconfig", str(fragment),
                        timeout=1800)
    assert done.returncode == 3, done.stdout[-4000:]
    doc, _summary = load(out)
    failure = doc.xpath("//testsuite[@name='baseline.configure']/testcase/failure")[0]
    assert "CONFIG_9P_FS" in failure.get("message") and "no-inet.config" in failure.text
    assert doc.xpath("//testsuite[@name='baseline.build']/testcase/skipped")
    assert "CONFIG_9P_FS" in done.stdout


def test_conflicting_patch_fails_apply_with_exit_3(tmp_path):
    series = tmp_path / "broken-series"
    series.mkdir()
    (series / "series.yaml").write_text("name: broken\nbase: ['6.1']\n")
    (series / "0001-touch-a-line-that-is-not-there.patch").write_text(textwrap.dedent("""\
        From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
        From: Test <test@example.invalid>
        Date: Sat, 28 Nov 2026 00:00:00 +0000
        Subject: [PATCH] cgroup: change a line that does not exist

        ---
         kernel/cgroup/cgroup-v1.c | 2 +-
         1 file changed, 1 insertion(+), 1 deletion(-)

        diff --git a/kernel/cgroup/cgroup-v1.c b/kernel/cgroup/cgroup-v1.c
        index 1111111..2222222 100644
        --- a/kernel/cgroup/cgroup-v1.c
        +++ b/kernel/cgroup/cgroup-v1.c
        @@ -1,3 +1,3 @@
         // SPDX-License-Identifier: GPL-2.0-only
        -#include "this line is not in the tree.h"
        +#include "neither is this one.h"
         #include <linux/ctype.h>
        --
        2.39.5
        """))
    out = tmp_path / "out"
    done = pipeline_run(out, "--variant", "patched", "--series", str(series), timeout=1800)
    assert done.returncode == 3, done.stdout[-4000:]
    doc, _summary = load(out)
    failure = doc.xpath("//testsuite[@name='patched.apply']/testcase/failure")
    assert failure, "the conflicting patch is not a failed testcase"
    text = failure[0].get("message") + (failure[0].text or "")
    assert "0001" in text or "does not exist" in text
    assert "kernel/cgroup/cgroup-v1.c" in text
    assert doc.xpath("//testsuite[@name='patched.build']/testcase/skipped")


def _job(tmp_path: Path, extra: str) -> Path:
    job = tmp_path / "job.yaml"
    k = PROJECT_ROOT / "kconfigs"
    job.write_text(textwrap.dedent(f"""\
        tree: debian:6.1
        kconfig: [{k}/virtme-guest.config, {k}/cgroup-v1.config, {k}/kselftest-cgroup.config]
        tests: [{PROJECT_ROOT}/guest-tests]
        variants: [{{name: baseline, series: false}}]
        """) + extra)
    return job


def test_panicking_kernel_fails_boot_and_reports_tests_as_not_run(tmp_path):
    job = _job(tmp_path, "qemu: {kernel_args: [init=/nonexistent]}\n")
    done = pipeline_run(tmp_path / "out", "--job", str(job), timeout=2400)
    assert done.returncode == 3, done.stdout[-4000:]
    doc, _summary = load(tmp_path / "out")
    boot = doc.xpath("//testsuite[@name='baseline.boot']/testcase/failure")
    assert boot and "Kernel panic" in boot[0].get("message")
    guest = cases(doc, "baseline.guest")
    # every guest test function is there, whether nobody could collect on the host or not
    functions = {i.split("::")[-1] for i in testlist.static_ids([PROJECT_ROOT / "guest-tests"])}
    assert {c.get("name").split("[")[0] for c in guest} == functions
    assert all(outcome(c) == "error" for c in guest)
    assert "did not run" in guest[0].find("error").get("message")
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True,
                          check=False)
    assert left.stdout == "", "a QEMU process was left behind"


def test_hanging_guest_test_is_killed_at_the_test_timeout(tmp_path):
    tests = tmp_path / "hang"
    tests.mkdir()
    (tests / "test_hang.py").write_text(
        "import time\n\ndef test_ok():\n    pass\n\n"
        "def test_never_returns():\n    time.sleep(3600)\n\n"
        "def test_after():\n    pass\n")
    job = _job(tmp_path, "timeouts: {test: 20}\n").read_text().replace(
        f"tests: [{PROJECT_ROOT}/guest-tests]", f"tests: [{tests}]")
    (tmp_path / "job.yaml").write_text(job)
    done = pipeline_run(tmp_path / "out", "--job", str(tmp_path / "job.yaml"), timeout=2400)
    assert done.returncode in (1, 3), done.stdout[-4000:]
    doc, _summary = load(tmp_path / "out")
    by_name = {c.get("name"): c for c in cases(doc, "baseline.guest")}
    assert outcome(by_name["test_ok"]) == "passed"
    hung = by_name["test_never_returns"].find("error")
    assert hung is not None and "test timeout" in hung.get("message")
    assert outcome(by_name["test_after"]) == "error"


# --- bisect: a planted bad commit in a short history on top of Debian's 6.1 baseline -----------

CLONE_CHILDREN_TEST = '''\
"""Planted-bug detector for the bisect test: cgroup.clone_children of a new v1 cgroup is 0."""
import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
ROOT = "/sys/fs/cgroup/bisect"


def test_clone_children_defaults_to_0():
    os.makedirs(ROOT, exist_ok=True)
    assert libc.mount(b"cgroup", ROOT.encode(), b"cgroup", 0, b"none,name=bisect") == 0, \\
        os.strerror(ctypes.get_errno())
    try:
        os.mkdir(f"{ROOT}/child")
        with open(f"{ROOT}/child/cgroup.clone_children") as f:
            value = f.read().strip()
        os.rmdir(f"{ROOT}/child")
        assert value == "0"
    finally:
        libc.umount2(ROOT.encode(), 0)
'''

# (file, old text, new text, subject): commit 3 plants the bug the test above detects.
HISTORY = [
    ("Documentation/admin-guide/cgroup-v1/cgroups.rst", None, "\n.. bisect test: doc 1\n",
     "docs: cgroup-v1: a harmless documentation change"),
    ("kernel/cgroup/cgroup-v1.c", None, "/* bisect test: comment 2 */\n",
     "cgroup: a harmless comment in cgroup-v1.c"),
    ("kernel/cgroup/cgroup-v1.c",
     "\treturn test_bit(CGRP_CPUSET_CLONE_CHILDREN, &css->cgroup->flags);",
     "\treturn !test_bit(CGRP_CPUSET_CLONE_CHILDREN, &css->cgroup->flags);",
     "cgroup: planted bug: clone_children reads inverted"),
    ("kernel/cgroup/cgroup-v1.c", None, "/* bisect test: comment 4 */\n",
     "cgroup: another harmless comment"),
    ("Documentation/admin-guide/cgroup-v1/cgroups.rst", None, "\n.. bisect test: doc 5\n",
     "docs: cgroup-v1: another documentation change"),
]


def _git(repo: Path, *args: str, env: dict | None = None, stdin: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          input=stdin, timeout=600, env={**os.environ, **(env or {})}).stdout


@pytest.fixture(scope="module")
def bisect_repo() -> tuple[Path, list[str]]:
    """A user's 6.1 repository: Debian's baseline + HISTORY, made with git plumbing (no
    checkout) with fixed dates, so its commit ids stay the same from run to run and the
    pipeline's bisect worktree and build folder in the cache are reused."""
    from pipeline.cache import Cache, default_cache_root
    from pipeline.log import Log
    from pipeline.tree import prepare_tree

    cache = Cache(default_cache_root())
    tree = prepare_tree("debian:6.1", cache, Log())
    repo = cache.dir("test-repos") / "bisect-6.1"
    if not (repo / ".git").is_dir():
        subprocess.run(["git", "clone", "--quiet", "--shared", "--no-checkout", str(tree.repo),
                        str(repo)], check=True, timeout=600)
    fixed = {"GIT_AUTHOR_NAME": "Bisect Test", "GIT_AUTHOR_EMAIL": "bisect@example.invalid",
             "GIT_COMMITTER_NAME": "Bisect Test",
             "GIT_COMMITTER_EMAIL": "bisect@example.invalid",
             "GIT_AUTHOR_DATE": "2026-11-30T00:00:00Z",
             "GIT_COMMITTER_DATE": "2026-11-30T00:00:00Z",
             "GIT_INDEX_FILE": str(repo / ".git" / "bisect-test-index")}
    shas = [tree.commit]
    _git(repo, "read-tree", tree.commit, env=fixed)
    for path, old, new, subject in HISTORY:
        text = _git(repo, "show", f"{shas[-1]}:{path}")
        text = text.replace(old, new) if old else text + new
        assert text != _git(repo, "show", f"{shas[-1]}:{path}"), path
        blob = _git(repo, "hash-object", "-w", "--stdin", stdin=text).strip()
        _git(repo, "update-index", "--cacheinfo", f"100644,{blob},{path}", env=fixed)
        top = _git(repo, "write-tree", env=fixed).strip()
        shas.append(_git(repo, "commit-tree", top, "-p", shas[-1], "-m", subject,
                         env=fixed).strip())
    _git(repo, "update-ref", "refs/heads/main", shas[-1])
    _git(repo, "symbolic-ref", "HEAD", "refs/heads/main")
    _git(repo, "branch", "-f", "keep-me", shas[1])
    return repo, shas


def _repo_state(repo: Path) -> tuple[str, str, str]:
    return (_git(repo, "rev-parse", "HEAD"), _git(repo, "for-each-ref"),
            _git(repo, "stash", "list"))


def _pipeline(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)
    print(done.stdout[-8000:], done.stderr[-3000:])
    return done


@pytest.mark.long  # builds its own kernel (a user repo clone): ~8 min cold, not in CI
def test_bisect_finds_the_planted_commit(bisect_repo, tmp_path):
    repo, shas = bisect_repo
    test = tmp_path / "test_clone_children.py"
    test.write_text(CLONE_CHILDREN_TEST)
    before = _repo_state(repo)
    done = _pipeline("bisect", "--tree", str(repo), "--good", shas[0], "--bad", "main",
                     "--test", str(test), "--no-series", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout[-4000:]
    result = json.loads((tmp_path / "out" / "bisect.json").read_text())
    assert result["first_bad"] == shas[3]
    assert f"first bad commit: {shas[3]}" in done.stdout
    verdicts = {s["sha"]: s["verdict"] for s in result["steps"]}
    assert set(verdicts.values()) <= {"good", "bad"} and len(verdicts) <= 3
    for sha, verdict in verdicts.items():
        assert verdict == ("bad" if shas.index(sha) >= 3 else "good"), (sha, verdict)
    assert _repo_state(repo) == before, "bisect changed the user's repository"


@pytest.mark.long
@pytest.mark.parametrize("commit,code", [(3, 1), (2, 0)])
def test_bisect_step_exit_codes_for_git_bisect_run(bisect_repo, tmp_path, commit, code):
    repo, shas = bisect_repo
    test = tmp_path / "test_clone_children.py"
    test.write_text(CLONE_CHILDREN_TEST)
    done = _pipeline("bisect-step", "--tree", f"{repo}@{shas[commit]}", "--no-series",
                     "--test", str(test), "--out", str(tmp_path / "out"))
    assert done.returncode == code, done.stdout[-4000:]
    doc, _summary = load(tmp_path / "out")
    names = [c.get("name") for c in cases(doc, "bisect.guest")]
    assert names == ["test_clone_children_defaults_to_0"]


def test_rebase_report_of_the_6_1_port_on_6_12(tmp_path):
    """The 6.1 port on Debian's 6.12: patch 1 conflicts in kernfs_link_sibling (the pinned-node
    accounting sits next to lines 6.12 changed) while its kernfs.h hunks apply; patch 2 conflicts
    where 6.12 changed struct cgroup and cgroup.c; the 6.12 port itself applies cleanly."""
    done = _pipeline("rebase", "--series", "patches/cgroup-pool/6.1", "--onto", "debian:6.12",
                     "--out", str(tmp_path / "from-6.1"), timeout=1800)
    assert done.returncode == 3, done.stdout[-3000:]
    report = (tmp_path / "from-6.1" / "rebase.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert rows[0].endswith("| conflicted | fs/kernfs/dir.c |")
    assert "| conflicted |" in rows[1]
    assert "- hunk `fs/kernfs/dir.c:" in report
    assert "include/linux/cgroup-defs.h" in rows[1] and "kernel/cgroup/cgroup.c" in rows[1]
    assert "- hunk `kernel/cgroup/cgroup.c:" in report
    doc = etree.parse(str(tmp_path / "from-6.1" / "junit.xml"))
    assert [outcome(c) for c in cases(doc, "rebase.apply")] == ["failure", "failure"]
    done = _pipeline("rebase", "--series", "patches/cgroup-pool/6.12", "--onto", "debian:6.12",
                     "--out", str(tmp_path / "own"), timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:]
