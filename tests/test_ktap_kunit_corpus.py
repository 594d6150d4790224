"""pipeline.ktap against the kernel's own KTAP corpus, tools/testing/kunit/test_data/.

The logs are taken at test time from the kernel source: a tree this pipeline has
already extracted into its cache (trees/debian-6.1-*), else Debian's tarball
/usr/src/linux-source-6.1.tar.xz (only the test_data folder is extracted, once per
session). Without either the corpus tests are skipped.

What each log is expected to give comes from kunit's own tests in the same tree,
tools/testing/kunit/kunit_tool_test.py (the test named in each entry below), and
the leaf counts from running kunit_parser.parse_run_tests() on the 6.1 logs.
"""

from __future__ import annotations

import io
import lzma
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from pipeline import ktap
from pipeline.cache import default_cache_root
from pipeline.ktap import Status

TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
MEMBER = "linux-source-6.1/tools/testing/kunit/test_data"
IN_TREE = Path("tools/testing/kunit/test_data")


def cached_tree_corpora() -> list[Path]:
    """test_data folders of 6.1 trees already extracted by the pipeline (finished
    entries only: an extraction in progress is a .tmp-* folder)."""
    roots = [Path.home() / ".cache" / "kernel-pipeline" / "trees", default_cache_root() / "trees"]
    seen: list[Path] = []
    for root in roots:
        for tree in sorted(root.glob("debian-6.1-*")):
            corpus = tree / IN_TREE
            if corpus.is_dir() and any(corpus.glob("*.log")) and corpus not in seen:
                seen.append(corpus)
    return seen


def extract_folder(tarball: Path, member: str, dest: Path) -> Path:
    """Extract the regular files directly in folder `member` of `tarball` into `dest`
    (flat: no subfolders, no links, no names that leave `dest`). Streams the archive
    and stops once past the folder (tar keeps a folder's entries together)."""
    prefix = PurePosixPath(member)
    dest.mkdir(parents=True, exist_ok=True)
    found = False
    with tarfile.open(tarball, "r|*") as tar:
        for info in tar:
            path = PurePosixPath(info.name.removeprefix("./"))
            inside = path.parent == prefix
            if found and not inside and prefix not in path.parents:
                break
            if not inside or not info.isfile():
                continue
            name = path.name
            if name in ("", ".", "..") or "/" in name:
                continue
            src = tar.extractfile(info)
            if src is None:
                continue
            with src, open(dest / name, "wb") as out:
                shutil.copyfileobj(src, out)
            found = True
    if not found:
        raise FileNotFoundError(f"{member}/ has no files in {tarball}")
    return dest


@pytest.fixture(scope="session")
def kunit_corpus(tmp_path_factory) -> Path:
    for corpus in cached_tree_corpora():
        return corpus
    if TARBALL.is_file():
        return extract_folder(TARBALL, MEMBER, tmp_path_factory.mktemp("kunit-test-data"))
    pytest.skip(f"kernel KTAP corpus not available: no extracted tree "
                f"~/.cache/kernel-pipeline/trees/debian-6.1-*/{IN_TREE} and no {TARBALL} "
                f"(apt-get install linux-source-6.1)")


@dataclass(frozen=True)
class Expect:
    kunit_test: str        # the kunit_tool_test.py test that uses the log
    passed: int = 0        # leaf test cases, as kunit counts them
    failed: int = 0
    skipped: int = 0
    top: tuple[str, ...] = ()   # names of the top-level results (suites)


# kunit_tool_test.py expects SUCCESS, FAILURE or SKIPPED (no crash, no parse error).
COMPLETE = {
    "test_is_test_passed-all_passed.log":
        Expect("test_parse_successful_test_log", passed=10, top=("sysctl_test", "example")),
    "test_is_test_passed-all_passed_nested.log":
        Expect("test_parse_successful_nested_tests_log", passed=7,
               top=("sysctl_test", "example")),
    "test_is_test_passed-kselftest.log":
        Expect("test_kselftest_nested", passed=2),
    "test_is_test_passed-failure.log":
        Expect("test_parse_failed_test_log", passed=9, failed=1, top=("sysctl_test", "example")),
    # "A missing test plan is not an error. All tests should be accounted for."
    "test_is_test_passed-missing_plan.log":
        Expect("test_missing_test_plan", passed=10, top=("sysctl_test", "example")),
    "test_skip_tests.log":
        Expect("test_skipped_test", passed=4, skipped=1, top=("string-stream-test", "example")),
    "test_skip_all_tests.log":
        Expect("test_skipped_all_tests", skipped=5, top=("string-stream-test", "example")),
    "test_strip_hyphen.log":
        Expect("test_ignores_hyphen", passed=2, top=("sysctl_test", "example")),
    "test_config_printk_time.log":
        Expect("test_ignores_prefix_printk_time", passed=10,
               top=("kunit-resource-test", "kunit-try-catch-test", "string-stream-test")),
    "test_multiple_prefixes.log":
        Expect("test_ignores_multiple_prefixes", passed=10,
               top=("kunit-resource-test", "kunit-try-catch-test", "string-stream-test")),
    "test_interrupted_tap_output.log":
        Expect("test_prefix_mixed_kernel_output", passed=10,
               top=("kunit-resource-test", "kunit-try-catch-test", "string-stream-test")),
    "test_pound_sign.log":
        Expect("test_prefix_poundsign", passed=10,
               top=("kunit-resource-test", "kunit-try-catch-test", "string-stream-test")),
    "test_pound_no_prefix.log":
        Expect("test_pound_no_prefix", passed=10,
               top=("kunit-resource-test", "kunit-try-catch-test", "string-stream-test")),
    "test_output_isolated_correctly.log":
        Expect("test_output_isolated_correctly", passed=2, top=("example",)),
    "test_parse_ktap_output.log":
        Expect("test_ktap_format", passed=3, top=("suite",)),
    "test_parse_subtest_header.log":
        Expect("test_parse_subtest_header", passed=1, top=("suite",)),
    # Not used by kunit_tool_test.py; kunit's parser finds it complete (10 passed).
    "test_output_with_prefix_isolated_correctly.log":
        Expect("(none)", passed=10,
               top=("kunit-resource-test", "kunit-try-catch-test", "string-stream-test")),
}

# kunit_tool_test.py: test_no_kunit_output, test_no_header (FAILURE_TO_PARSE_TESTS).
NO_KTAP = ["test_insufficient_memory.log", "test_is_test_passed-no_tests_run_no_header.log"]
# test_kernel_panic_end: TEST_CRASHED in string-stream-test after 1 of its 3 cases.
CRASHED = {"test_kernel_panic_interrupt.log": ("string-stream-test", 8)}


def read_log(corpus: Path, name: str) -> str:
    path = corpus / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this kernel's corpus ({corpus})")
    return path.read_text(errors="replace")


def leaf_counts(group: ktap.TestGroup) -> dict[Status, int]:
    """Cases without subtests (or with an empty subtest block), as kunit counts tests."""
    counts = {s: 0 for s in Status}
    for _, case in group.walk():
        if case.subtests is None or not case.subtests.tests:
            counts[case.status] += 1
    return counts


def incomplete_cases(group: ktap.TestGroup) -> list[tuple[str, ...]]:
    return [path for path, case in group.walk()
            if case.status == Status.ERROR and case.reason.startswith("incomplete")]


@pytest.mark.parametrize("name", sorted(COMPLETE))
def test_complete_kunit_log_parses_complete(kunit_corpus, name):
    expect = COMPLETE[name]
    g = ktap.parse(read_log(kunit_corpus, name))
    assert incomplete_cases(g) == [], (name, g.problems)
    assert not g.incomplete, (name, g.problems)
    counts = leaf_counts(g)
    assert (counts[Status.PASS], counts[Status.FAIL], counts[Status.SKIP],
            counts[Status.ERROR]) == (expect.passed, expect.failed, expect.skipped, 0), name
    if expect.top:
        assert tuple(c.name for c in g.tests) == expect.top, name


def test_corpus_has_every_kunit_log_we_expect(kunit_corpus):
    present = {p.name for p in kunit_corpus.glob("*.log")}
    known = set(COMPLETE) | set(NO_KTAP) | set(CRASHED) | {
        "test_is_test_passed-no_tests_run_with_header.log",
        "test_is_test_passed-no_tests_no_plan.log"}
    assert known <= present
    # a log added by a later kernel would need an entry here
    assert present - known == set()


@pytest.mark.parametrize("name", NO_KTAP)
def test_log_without_ktap_gives_no_tests(kunit_corpus, name):
    g = ktap.parse(read_log(kunit_corpus, name))
    assert g.tests == [] and g.version == "" and g.plan is None


def test_header_and_empty_plan_is_no_tests(kunit_corpus):
    # test_no_tests: NO_TESTS, no subtests
    g = ktap.parse(read_log(kunit_corpus, "test_is_test_passed-no_tests_run_with_header.log"))
    assert g.version == "TAP 14" and g.plan == 0 and g.tests == [] and not g.incomplete


def test_subtest_header_without_tests_or_plan(kunit_corpus):
    # test_no_tests_no_plan: the innermost "# Subtest: case" has no tests (kunit: NO_TESTS
    # plus a parse error), but "ok 1 - case" and "ok 1 - suite" did report.
    g = ktap.parse(read_log(kunit_corpus, "test_is_test_passed-no_tests_no_plan.log"))
    assert incomplete_cases(g) == [] and not g.incomplete
    suite = g.tests[0]
    assert suite.name == "suite" and suite.status == Status.PASS
    case = suite.subtests.tests[0]
    assert case.name == "case" and case.subtests is not None and case.subtests.tests == []


@pytest.mark.parametrize("name", sorted(CRASHED))
def test_crashed_kunit_log_is_incomplete(kunit_corpus, name):
    crashed_suite, passed = CRASHED[name]
    g = ktap.parse(read_log(kunit_corpus, name))
    assert g.incomplete
    assert incomplete_cases(g) == [(crashed_suite,)]
    crashed = g.tests[-1]
    assert crashed.name == crashed_suite and crashed.subtests.incomplete
    assert leaf_counts(g)[Status.PASS] == passed


# ---- the extraction helper, on a small tarball made here ----

def test_extract_folder_takes_only_the_folder(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE) -> None:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("linux-source-6.1/Makefile")
        add("linux-source-6.1/tools/testing/kunit/test_data", kind=tarfile.DIRTYPE)
        add("linux-source-6.1/tools/testing/kunit/test_data/a.log", b"KTAP version 1\n")
        add("linux-source-6.1/tools/testing/kunit/test_data/sub/b.log")
        add("linux-source-6.1/tools/testing/kunit/test_data/link.log", kind=tarfile.SYMTYPE)
        add("linux-source-6.1/tools/testing/kunit/kunit.py")
    archive = tmp_path / "src.tar.xz"
    archive.write_bytes(lzma.compress(buf.getvalue()))
    out = extract_folder(archive, MEMBER, tmp_path / "out")
    assert sorted(os.listdir(out)) == ["a.log"]
    assert (out / "a.log").read_text() == "KTAP version 1\n"
