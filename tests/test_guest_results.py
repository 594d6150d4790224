"""The guest protocol: console markers, the results file, and merging them after a crash.

Fed with consoles and results files captured from real boots of the 6.1 baseline kernel
(tests/fixtures/console/*.log and *.results.jsonl).
"""

import json
from pathlib import Path

from pipeline import boot
from pipeline.guest_results import ConsoleTrack, Event, parse_marker, read_results

FIXTURES = Path(__file__).parent / "fixtures" / "console"


def replay(name: str) -> tuple[ConsoleTrack, list[Event]]:
    track = ConsoleTrack()
    for line in (FIXTURES / f"{name}.log").read_text().splitlines():
        track.feed(line)
    return track, read_results(FIXTURES / f"{name}.results.jsonl")


def test_markers_of_a_real_session():
    track, events = replay("b61-clean-boot-basic-tests")
    assert track.ready and track.done and track.exit_code == 0
    assert len(track.collected) == 9
    assert all(t.finished and t.outcome == "passed" for t in track.tests.values())
    assert [e.event for e in events][:2] == ["ready", "collected"]
    assert events[-1].event == "done" and events[-1].fields == {"exit": 0}
    tests = boot.merge_tests(track, events, "")
    assert [t.outcome for t in tests] == ["passed"] * 9
    assert all(t.duration > 0 for t in tests)


def test_real_hang_merges_to_passed_unfinished_and_not_run():
    track, events = replay("b61-hang-test-timeout")
    assert track.current is not None and track.current.nodeid.endswith("test_never_returns")
    tests = boot.merge_tests(track, events, "test timeout: X", [
        "tests/guest-faults/test_hang.py::test_before_hang",
        "tests/guest-faults/test_hang.py::test_never_returns",
        "tests/guest-faults/test_hang.py::test_after_hang"])
    assert [(t.outcome, t.message) for t in tests] == [
        ("passed", ""), ("error", "did not finish: test timeout: X"),
        ("error", "did not run: test timeout: X")]


def test_real_panic_in_test_gives_its_kernel_log_to_the_test():
    track, events = replay("b61-panic-oom-in-test")
    tests = boot.merge_tests(track, events, "kernel panic: Out of memory")
    assert [t.outcome for t in tests] == ["passed", "error", "error"]
    dead = tests[1]
    assert "invoked oom-killer" in dead.kernel_log and "Kernel panic" in dead.kernel_log
    assert dead.kernel_log.splitlines()[0].startswith("[    ")  # printk timestamps kept
    assert "\r" not in dead.kernel_log


def test_real_splat_during_a_passing_test_fails_it():
    track, events = replay("b61-kmsg-warn-in-test")
    warned, clean = boot.merge_tests(track, events, "")
    assert warned.outcome == "failed"
    assert warned.message.startswith("kernel warning: WARNING: CPU: 0 PID: 123")
    assert "cgroup_mkdir+0x3c/0x460" in warned.details
    assert clean.outcome == "passed" and clean.kernel_log == ""


def test_marker_broken_by_kernel_text_is_ignored():
    assert parse_marker('@@PIPELINE:{"event": "st[ 1.0] printk"art"}') is None
    ev = parse_marker('junk before @@PIPELINE:{"event": "ready"}')
    assert ev is not None and ev.event == "ready"


def test_broken_marker_line_is_not_kernel_log():
    track = ConsoleTrack()
    track.feed('@@PIPELINE:{"event": "start", "nodeid": "t.py::a"}')
    track.feed('@@PIPELINE:{"event": "res[    3.1] hello')
    assert track.tests["t.py::a"].lines == []


def test_torn_last_line_of_results_file_is_dropped(tmp_path):
    f = tmp_path / "results.jsonl"
    f.write_text(json.dumps({"event": "result", "nodeid": "a", "outcome": "passed"}) + "\n"
                 + '{"event": "result", "nodeid": "b", "outc')
    events = read_results(f)
    assert [e.fields["nodeid"] for e in events] == ["a"]


def test_session_events_missed_by_the_console_come_from_the_file():
    track = ConsoleTrack()
    track.absorb_file_events([Event("ready", {}), Event("done", {"exit": 1})])
    assert track.ready and track.done and track.exit_code == 1
    track.absorb_file_events([Event("done", {"exit": 0})])
    assert track.exit_code == 1  # the console's own view is kept


def test_file_result_is_authoritative_over_console_outcome():
    track = ConsoleTrack()
    for line in ['@@PIPELINE:{"event": "start", "nodeid": "t.py::a"}',
                 '@@PIPELINE:{"event": "result", "nodeid": "t.py::a", "outcome": "passed"}']:
        track.feed(line)
    events = [Event("result", {"nodeid": "t.py::a", "outcome": "failed", "duration": 0.2,
                               "message": "assert 1 == 2", "details": "tb"})]
    (test,) = boot.merge_tests(track, events, "")
    assert (test.outcome, test.message, test.details) == ("failed", "assert 1 == 2", "tb")


def test_collection_error_becomes_an_error_test():
    events = [Event("collect-error", {"nodeid": "bad.py", "details": "ImportError: x"}),
              Event("collected", {"tests": []})]
    (test,) = boot.merge_tests(ConsoleTrack(), events, "")
    assert test.outcome == "error" and "collection failed" in test.message
    assert "ImportError" in test.details


def test_guest_init_keeps_the_hosts_tmp_when_the_project_lives_there():
    import importlib.util

    spec = importlib.util.spec_from_file_location("guest_init", boot.INIT)
    init = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(init)
    ci = {"python": "/tmp/ci/.venv/bin/python", "plugin_dir": "/tmp/ci/pipeline/guest",
          "tests": ["/tmp/ci/guest-tests"]}
    home = {"python": "/work/p/.venv/bin/python", "plugin_dir": "/work/p/pipeline/guest",
            "tests": ["/work/p/guest-tests", "/tmpfoo/t.py"]}
    assert init.host_tmp_needed(ci)
    assert not init.host_tmp_needed(home)
