"""The guest protocol: console markers, the results file, and merging them after a crash."""

import json
from pathlib import Path

from pipeline import boot
from pipeline.guest_results import ConsoleTrack, parse_marker, read_results

FIXTURES = Path(__file__).parent / "fixtures" / "console"


def test_markers_of_a_real_session():
    track = ConsoleTrack()
    for line in (FIXTURES / "b61-clean-boot-basic-tests.log").read_text().splitlines():
        track.feed(line)
    assert track.ready and track.done and track.exit_code == 0
    assert len(track.collected) == 6
    assert all(t.finished and t.outcome == "passed" for t in track.tests.values())


def test_marker_broken_by_kernel_text_is_ignored():
    assert parse_marker('@@PIPELINE:{"event": "st[ 1.0] printk"art"}') is None
    ev = parse_marker('junk before @@PIPELINE:{"event": "ready"}')
    assert ev is not None and ev.event == "ready"


def test_torn_last_line_of_results_file_is_dropped(tmp_path):
    f = tmp_path / "results.jsonl"
    f.write_text(json.dumps({"event": "result", "nodeid": "a", "outcome": "passed"}) + "\n"
                 + '{"event": "result", "nodeid": "b", "outc')
    events = read_results(f)
    assert [e.fields["nodeid"] for e in events] == ["a"]


def test_merge_after_guest_died_mid_test(tmp_path):
    track = ConsoleTrack()
    for line in ['@@PIPELINE:{"event": "ready"}',
                 '@@PIPELINE:{"event": "collected", "tests": ["t.py::a", "t.py::b", "t.py::c"]}',
                 '@@PIPELINE:{"event": "start", "nodeid": "t.py::a"}',
                 '@@PIPELINE:{"event": "result", "nodeid": "t.py::a", "outcome": "passed"}',
                 '@@PIPELINE:{"event": "start", "nodeid": "t.py::b"}',
                 "[    5.0] BUG: kernel NULL pointer dereference, address: 0000000000000008",
                 "[    5.1] Kernel panic - not syncing: Fatal exception"]:
        track.feed(line)
    (tmp_path / "results.jsonl").write_text(json.dumps(
        {"event": "result", "nodeid": "t.py::a", "outcome": "passed", "duration": 0.5}) + "\n")
    tests = {t.nodeid: t for t in boot._merge(track, tmp_path, "kernel panic")}
    assert tests["t.py::a"].outcome == "passed"
    assert tests["t.py::b"].outcome == "error"
    assert "did not finish" in tests["t.py::b"].message
    assert "NULL pointer" in tests["t.py::b"].kernel_log
    assert tests["t.py::c"].outcome == "error" and "did not run" in tests["t.py::c"].message


def test_splat_during_a_passing_test_fails_it(tmp_path):
    track = ConsoleTrack()
    for line in ['@@PIPELINE:{"event": "collected", "tests": ["t.py::a"]}',
                 '@@PIPELINE:{"event": "start", "nodeid": "t.py::a"}',
                 "[    7.0] WARNING: CPU: 0 PID: 9 at kernel/cgroup/cgroup.c:1 x+0x1/0x2",
                 "[    7.0] ---[ end trace 0000000000000000 ]---",
                 '@@PIPELINE:{"event": "result", "nodeid": "t.py::a", "outcome": "passed"}']:
        track.feed(line)
    (tmp_path / "results.jsonl").write_text(json.dumps(
        {"event": "result", "nodeid": "t.py::a", "outcome": "passed", "duration": 0.1}) + "\n")
    (test,) = boot._merge(track, tmp_path, "")
    assert test.outcome == "failed"
    assert test.message.startswith("kernel warning: WARNING: CPU: 0")


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
