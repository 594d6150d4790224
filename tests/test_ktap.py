"""pipeline.ktap: synthetic TAP/KTAP corner cases and real cgroup selftest output."""

from pathlib import Path

from pipeline import ktap
from pipeline.ktap import Status

FIXTURES = Path(__file__).parent / "fixtures" / "ktap"


def names(group: ktap.TestGroup) -> list[str]:
    return [c.name for c in group.tests]


def test_tap13_plan_results_and_directives():
    g = ktap.parse("TAP version 13\n1..5\nok 1 alpha\nnot ok 2 - beta\n"
                   "ok 3 gamma # SKIP needs swap\nnot ok 4 delta # TODO not written\n"
                   "ok 5 # XFAIL eps known\n")
    assert g.version == "TAP 13" and g.plan == 5 and not g.incomplete
    assert names(g) == ["alpha", "beta", "gamma", "delta", "eps known"]
    assert [c.status for c in g.tests] == [Status.PASS, Status.FAIL, Status.SKIP,
                                           Status.XFAIL, Status.XFAIL]
    assert (g.tests[2].directive, g.tests[2].reason) == ("SKIP", "needs swap")
    assert g.tests[3].reason == "not written"


def test_kselftest_skip_line_is_named_after_its_reason():
    case = ktap.parse_result_line("ok 10 # SKIP test_memcg_swap_max")
    assert case.name == "test_memcg_swap_max" and case.status == Status.SKIP
    assert case.number == 10


def test_lowercase_skip_and_error_directives():
    assert ktap.parse_result_line("ok 1 foo # skip no device").status == Status.SKIP
    err = ktap.parse_result_line("not ok 2 # error could not fork")
    assert err.status == Status.ERROR and err.name == "could not fork"


def test_escaped_hash_is_not_a_directive():
    case = ktap.parse_result_line(r"ok 1 check \# of cgroups")
    assert case.status == Status.PASS and case.name == "check # of cgroups"


def test_todo_that_passes_is_a_pass():
    assert ktap.parse_result_line("ok 1 x # TODO later").status == Status.PASS


def test_not_a_result_line():
    assert ktap.parse_result_line("okay then") is None
    assert ktap.parse_result_line("# ok 1 in a comment") is None


def test_trailing_plan_and_totals_diagnostic():
    g = ktap.parse("TAP version 13\nok 1 a\nok 2 b\n1..2\n# Totals: pass:2 fail:0\n")
    assert g.plan == 2 and not g.incomplete and g.diagnostics == ["Totals: pass:2 fail:0"]


def test_missing_plan_is_not_incomplete_by_itself():
    g = ktap.parse("ok 1 a\nnot ok 2 b\n")
    assert g.plan is None and not g.incomplete


def test_short_of_plan_is_incomplete():
    g = ktap.parse("TAP version 13\n1..4\nok 1 a\nok 2 b\n")
    assert g.incomplete and "planned 4 tests, got 2" in g.problems


def test_bail_out():
    g = ktap.parse("TAP version 13\n1..3\nok 1 a\nBail out! cgroup2 not mounted\n")
    assert g.bail_out == "cgroup2 not mounted" and g.incomplete


def test_plan_zero_skip_reason():
    g = ktap.parse("TAP version 13\n1..0 # SKIP cgroup v2 isn't mounted\n")
    assert g.plan == 0 and g.plan_skip_reason == "cgroup v2 isn't mounted"
    assert not g.incomplete


def test_diagnostics_attach_to_the_next_result():
    g = ktap.parse("# creating cgroup\nwrite failed: EBUSY\nnot ok 1 test_x\nok 2 test_y\n")
    assert g.tests[0].diagnostics == ["creating cgroup", "write failed: EBUSY"]
    assert g.tests[1].diagnostics == []


KTAP_NESTED = """\
KTAP version 1
1..2
    KTAP version 1
    # Subtest: cgroup_suite
    1..3
    ok 1 first
        KTAP version 1
        # Subtest: param_test
        1..2
        ok 1 param-0
        not ok 2 param-1
    not ok 2 param_test
    ok 3 third # SKIP no cpuset
ok 1 cgroup_suite
    # Subtest: crashing_suite
    1..2
    ok 1 only_one
"""


def test_ktap_nested_subtests_by_indentation():
    g = ktap.parse(KTAP_NESTED)
    assert g.version == "KTAP 1" and g.plan == 2
    suite = g.tests[0]
    assert suite.name == "cgroup_suite" and suite.status == Status.PASS
    assert suite.subtests is not None and suite.subtests.name == "cgroup_suite"
    assert names(suite.subtests) == ["first", "param_test", "third"]
    param = suite.subtests.tests[1]
    assert param.status == Status.FAIL and names(param.subtests) == ["param-0", "param-1"]
    paths = [p for p, _ in g.walk()]
    assert ("cgroup_suite", "param_test", "param-1") in paths


def test_nested_block_without_result_line_is_incomplete():
    g = ktap.parse(KTAP_NESTED)
    crashed = g.tests[1]
    assert crashed.name == "crashing_suite" and crashed.status == Status.ERROR
    assert crashed.subtests.incomplete and g.incomplete
    assert any("crashing_suite" in p for p in g.problems)


def test_subtest_block_named_by_parent_result_when_no_header():
    g = ktap.parse("TAP version 14\n1..1\n    1..1\n    ok 1 inner\nok 1 outer\n")
    assert g.tests[0].subtests.name == "outer"


def test_indented_noise_is_diagnostics_not_a_subtest():
    g = ktap.parse("ok 1 a\n    at some_function+0x10\n    at other+0x20\n")
    assert names(g) == ["a"] and not g.incomplete
    assert "at some_function+0x10" in g.diagnostics


def test_identical_duplicate_result_lines_are_dropped():
    # A forked child flushing a copy of the parent's stdio buffer (seen for real).
    g = ktap.parse("ok 1 a\nok 1 a\nnot ok 2 b\n")
    assert names(g) == ["a", "b"]
    assert any("duplicate" in p for p in g.problems)


def test_crlf_and_blank_lines():
    g = ktap.parse("TAP version 13\r\n\r\n1..1\r\nok 1 a\r\n")
    assert g.plan == 1 and names(g) == ["a"]


# ---- real output of the cgroup selftests, captured in guests of this project ----

def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_real_test_kmem_flood_of_duplicates_then_timeout():
    # 6.1 tinyconfig (SLOB, no MEMCG_KMEM): test_kmem looped and was killed at 45 s;
    # every fork flushed a copy of "not ok 1 test_kmem_basic".
    g = ktap.parse(fixture("b61-tinyconfig-test_kmem-timeout.tap"))
    assert names(g) == ["test_kmem_basic"]
    assert g.tests[0].status == Status.FAIL and g.plan is None


def test_real_test_memcontrol_6_1_no_plan_skip_and_failure_diagnostic():
    g = ktap.parse(fixture("b61-test_memcontrol.tap"))
    assert g.plan is None and not g.incomplete and len(g.tests) == 14
    by_name = {c.name: c for c in g.tests}
    assert by_name["test_memcg_subtree_control"].status == Status.PASS
    swap = by_name["test_memcg_swap_max"]
    assert swap.status == Status.SKIP and swap.number == 10
    reclaim = by_name["test_memcg_reclaim"]
    assert reclaim.status == Status.FAIL
    assert reclaim.diagnostics == ["failed to allocate 104857600 for memcg reclaim test"]


def test_real_test_cpu_6_1():
    g = ktap.parse(fixture("b61-test_cpu.tap"))
    statuses = [c.status for c in g.tests]
    assert statuses.count(Status.PASS) == 4 and statuses.count(Status.SKIP) == 2
    assert [c.name for c in g.tests if c.status == Status.FAIL] == [
        "test_cpucg_max", "test_cpucg_max_nested"]


def test_real_test_kmem_6_1_diagnostics_before_failure():
    g = ktap.parse(fixture("b61-test_kmem.tap"))
    percpu = g.tests[-1]
    assert percpu.name == "test_percpu_basic" and percpu.status == Status.FAIL
    assert percpu.diagnostics == ["memory.current 0", "percpu 0"]


# ---- KUnit-style output: non-TAP lines inside nested blocks, kernel log prefixes ----
# (the kernel's own corpus is in tests/test_ktap_kunit_corpus.py)

KUNIT_INIT_SUITE = """\
TAP version 14
1..1
\t# Subtest: example
\t1..2
init_suite
\t# example_simple_test: initializing
\tok 1 - example_simple_test
\tok 2 - example_mock_test
kunit example: all tests passed
ok 1 - example
"""


def test_unindented_line_inside_a_nested_block_does_not_end_it():
    g = ktap.parse(KUNIT_INIT_SUITE)
    assert not g.incomplete and g.problems == []
    assert names(g) == ["example"] and g.tests[0].status == Status.PASS
    assert names(g.tests[0].subtests) == ["example_simple_test", "example_mock_test"]
    assert g.tests[0].subtests.tests[0].diagnostics == [
        "init_suite", "example_simple_test: initializing"]
    # a line after the block's last result, before the parent's result, is the parent's
    assert g.tests[0].diagnostics == ["kunit example: all tests passed"]


def test_unindented_noise_then_a_parent_result_still_ends_the_block():
    g = ktap.parse("1..1\n    1..1\n    ok 1 a\nsegfault\nnot ok 1 outer\n")
    assert not g.incomplete and names(g) == ["outer"] and names(g.tests[0].subtests) == ["a"]
    assert g.tests[0].diagnostics == ["segfault"]


def test_crash_inside_a_nested_block_is_still_incomplete():
    g = ktap.parse("TAP version 14\n1..1\n\t# Subtest: s\n\t1..3\n\tok 1 a\n"
                   "\tKernel panic - not syncing\nCPU: 0 PID: 1\n 602086f8 601bc260\n")
    assert g.incomplete and names(g) == ["s"] and g.tests[0].status == Status.ERROR


def test_deeper_noise_before_a_subtest_header_belongs_to_the_subtest():
    g = ktap.parse("TAP version 14\n1..2\nok 1 - first\n foo bar \t# non-kunit output\n"
                   "\t# Subtest: second\n\t1..1\n\tok 1 - inner\nok 2 - second\n")
    assert not g.incomplete and names(g) == ["first", "second"]
    assert names(g.tests[1].subtests) == ["inner"]


def test_indented_noise_between_results_is_the_next_results_diagnostics():
    g = ktap.parse("ok 1 a\n    at some_function+0x10\nnot ok 2 b\n")
    assert names(g) == ["a", "b"] and g.tests[1].subtests is None
    assert g.tests[1].diagnostics == ["at some_function+0x10"]


PRINTK = """\
[    0.050000] Linux version 6.1.0
[    0.051000] ok 7 is not a result before the version line
[    0.060000][    T1] TAP version 14
[    0.060000][    T1] 1..1
[    0.060000][    T1] \t# Subtest: suite
[    0.060000][    T1] \t1..2
[    0.061000][    T1] \tok 1 - case_1
[    0.061000][    T1] random: crng init done
[  123.456789][   T12] \tnot ok 2 - case_2
[  123.456790][   T12] not ok 1 - suite
[  123.456790][   T12]
[  123.500000][   T12] List of all partitions:
"""


def test_kernel_log_prefixes_are_removed_from_the_version_line_on():
    g = ktap.parse(PRINTK)
    assert g.version == "TAP 14" and g.plan == 1 and not g.incomplete
    suite = g.tests[0]
    assert (suite.name, suite.status) == ("suite", Status.FAIL)
    assert [(c.name, c.status) for c in suite.subtests.tests] == [
        ("case_1", Status.PASS), ("case_2", Status.FAIL)]
    assert suite.subtests.tests[1].diagnostics == ["random: crng init done"]
    # lines before the version line are diagnostics, never results
    assert suite.diagnostics[:2] == ["[    0.050000] Linux version 6.1.0",
                                     "[    0.051000] ok 7 is not a result before the version line"]
    assert g.diagnostics == ["List of all partitions:"]


def test_a_space_before_every_line_is_a_prefix():
    g = ktap.parse(" TAP version 14\n 1..1\n \t# Subtest: s\n \t1..1\n \tok 1 - c\n"
                   "  stray\n ok 1 - s\n")
    assert not g.incomplete and names(g) == ["s"] and names(g.tests[0].subtests) == ["c"]


def test_indented_first_version_line_of_a_nested_block_is_not_a_prefix():
    g = ktap.parse("  KTAP version 1\n  1..1\n  ok 1 inner\nok 1 outer\n")
    assert names(g) == ["outer"] and names(g.tests[0].subtests) == ["inner"]


def test_version_line_in_a_comment_is_not_the_document_start():
    # kselftest's runner prints a nested program's TAP as "# " comments
    g = ktap.parse("TAP version 13\n1..1\n# selftests: x: y\n# TAP version 13\n# 1..1\n"
                   "# ok 1 inner\nok 1 selftests: x: y\n")
    assert names(g) == ["selftests: x: y"] and g.tests[0].subtests is None
    g = ktap.parse("# TAP version 13\n# 1..1\n# ok 1 inner\nok 1 outer\n")
    assert names(g) == ["outer"]


def test_results_before_a_version_line_parse_as_before():
    g = ktap.parse("ok 1 a\n[ 1.0] TAP version 13\nok 2 b\n")
    assert names(g) == ["a", "b"]
