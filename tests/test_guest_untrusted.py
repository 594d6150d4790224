"""Issue 13 row 7: what the guest writes is parsed with limits, and a malformed item fails that
item only; symlinks the guest plants in the share are not followed; the writable share uses a
security model that cannot create setuid files or device nodes on the host."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import boot, guest_results
from pipeline.guest_results import ConsoleTrack, parse_marker, read_results
from pipeline.qemu import Machine, guest_argv

GOOD = {"event": "result", "nodeid": "t.py::test_ok", "outcome": "passed", "duration": 0.5,
        "message": "", "details": ""}


def _write(path, *items) -> None:
    path.write_text("".join((i if isinstance(i, str) else json.dumps(i)) + "\n"
                            for i in items))


@pytest.mark.parametrize("bad, why", [
    ({"duration": "slow"}, "duration"),
    ({"duration": float("nan")}, "duration"),
    ({"duration": -1}, "duration"),
    ({"duration": [1]}, "duration"),
    ({"outcome": "xpassed-maybe"}, "outcome"),
    ({"outcome": {"a": 1}}, "outcome"),
])
def test_malformed_result_fails_that_test_only(tmp_path, bad, why):
    results = tmp_path / "results.jsonl"
    _write(results, {"event": "collected", "tests": ["t.py::test_ok", "t.py::test_bad"]},
           GOOD, {**GOOD, "nodeid": "t.py::test_bad", **bad}, {"event": "done", "exit": 1})
    events = read_results(results)
    tests = {t.nodeid: t for t in boot.merge_tests(ConsoleTrack(), events, "")}
    assert tests["t.py::test_ok"].outcome == "passed"
    assert tests["t.py::test_bad"].outcome == "error"
    assert why in tests["t.py::test_bad"].message and "malformed" in tests["t.py::test_bad"].message


def test_collected_that_is_not_a_list_is_ignored(tmp_path):
    results = tmp_path / "results.jsonl"
    _write(results, {"event": "collected", "tests": "t.py::test_ok"}, GOOD,
           {"event": "collected", "tests": ["t.py::a", 7, {"x": 1}, None]})
    events = read_results(results)
    assert [e.fields["tests"] for e in events if e.event == "collected"] == [["t.py::a"]]
    tests = boot.merge_tests(ConsoleTrack(), events, "")
    assert "t" not in {t.nodeid for t in tests}      # not one test per character


def test_nesting_bomb_and_long_lines_are_dropped(tmp_path):
    results = tmp_path / "results.jsonl"
    _write(results, "[" * 200_000 + "]" * 200_000,
           {"event": "ready", "x": [[[[[[[[[[[[1]]]]]]]]]]]]},
           json.dumps({**GOOD, "message": "m" * (2 << 20)}), GOOD)
    events = read_results(results)
    assert [e.event for e in events] == ["result"]
    assert parse_marker("@@PIPELINE:" + "{\"a\":" * 100_000 + "1" + "}" * 100_000) is None


def test_texts_are_cut_and_the_file_size_is_bounded(tmp_path, monkeypatch):
    results = tmp_path / "results.jsonl"
    _write(results, {**GOOD, "details": "d" * (300 << 10)})
    (event,) = read_results(results)
    assert len(event.fields["details"]) < (260 << 10) and "cut by the host" in \
        event.fields["details"]
    monkeypatch.setattr(guest_results, "MAX_RESULTS_BYTES", 1000)
    _write(results, *([GOOD] * 100))
    assert 0 < len(read_results(results)) < 100


def test_console_marker_with_bad_types_does_not_break_the_track():
    track = ConsoleTrack()
    track.feed('@@PIPELINE:{"event": "collected", "tests": 5}')
    track.feed('@@PIPELINE:{"event": "start", "nodeid": ["x"]}')
    track.feed('@@PIPELINE:{"event": "done", "exit": "zero"}')
    assert track.collected == [] and track.current is None
    assert track.done and track.exit_code is None


def test_symlinks_in_the_share_are_not_followed(tmp_path):
    host_file = tmp_path / "host-secret.jsonl"
    _write(host_file, {**GOOD, "nodeid": "forged::test", "message": "from a host file"})
    share = tmp_path / "guest"
    share.mkdir()
    (share / "results.jsonl").symlink_to(host_file)
    assert read_results(share / "results.jsonl") == []
    (share / "results.jsonl").unlink()
    import os
    os.mkfifo(share / "results.jsonl")            # a fifo would block the host forever
    assert read_results(share / "results.jsonl") == []


def test_writable_share_cannot_create_setuid_files_or_devices(tmp_path):
    machine = Machine.load()
    argv = guest_argv(machine, "qemu", tmp_path / "bzImage", accel="tcg", memory="1G",
                      smp=1, init=["/bin/true"], out_share=tmp_path / "share",
                      kernel_args=[], qemu_args=[])
    fsdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-fsdev"]
    out = next(f for f in fsdevs if "id=outfs" in f)
    root = next(f for f in fsdevs if "id=rootfs" in f)
    assert "security_model=mapped-xattr" in out
    assert "readonly=on" in root


def _python_nobody_can_run() -> str | None:
    """An interpreter with pytest that uid 65534 can run (this venv's, or the Debian venv's
    when this one lives under /root, as a pyenv does)."""
    import subprocess
    import sys
    from pathlib import Path
    project = Path(__file__).resolve().parent.parent
    for python in (sys.executable, str(project / ".venv-deb" / "bin" / "python")):
        try:
            done = subprocess.run([python, "-c", "import pytest"], user=65534, group=65534,
                                  extra_groups=[], capture_output=True, timeout=60,
                                  check=False, cwd="/")
        except OSError:
            continue
        if done.returncode == 0:
            return python
    return None


@contextlib.contextmanager
def _collection_folder() -> Iterator[tuple[Path, Path, Path]]:
    """(top, spy, tests): a folder under /tmp that nobody can enter (0755), a `spy` folder
    anyone can write (what ran records its uid there) and an empty `tests` folder. Skips
    unless root: the drop to nobody is what a root pipeline does."""
    if os.geteuid() != 0:
        pytest.skip("the drop to nobody is what a root pipeline does")
    top = Path(tempfile.mkdtemp(prefix="hostcollect-", dir="/tmp"))
    try:
        top.chmod(0o755)
        spy = top / "spy"
        spy.mkdir()
        spy.chmod(0o777)
        (top / "tests").mkdir()
        yield top, spy, top / "tests"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_guest_tests_are_not_imported_on_the_host_as_root():
    """Collecting the guest tests on the host imports them (and their conftest.py): as root
    that ran guest-only code with every privilege of the host. Now it runs as nobody."""
    with _collection_folder() as (_top, spy, tests):
        python = _python_nobody_can_run()
        if python is None:
            pytest.skip("no interpreter with pytest that nobody can run on this machine")
        (tests / "test_probe.py").write_text(
            "import os\n"
            f"open({str(spy / 'euid')!r}, 'w').write(str(os.geteuid()))\n"
            "def test_one():\n    pass\n")
        ids = boot.host_collect(Path(python), [tests])
        assert (spy / "euid").read_text() != "0"
        assert [i.split("::")[-1] for i in ids] == ["test_one"]


def test_host_collection_never_runs_the_interpreter_as_root():
    """The test above is skipped where nobody cannot run a Python with pytest (this venv's
    interpreter lives under /root). This one runs on every root machine: whatever
    host_collect starts (the interpreter, which then imports the guest tests and their
    conftest.py) must not run as root. A stand-in interpreter records its uid and gid."""
    with _collection_folder() as (top, spy, tests):
        python = top / "python"
        python.write_text(f"#!/bin/sh\nid -u > {spy}/uid\nid -G > {spy}/groups\n"
                          "echo 'tests/test_probe.py::test_one'\n")
        python.chmod(0o755)
        ids = boot.host_collect(python, [tests])
        assert ids == ["tests/test_probe.py::test_one"]
        assert (spy / "uid").read_text().strip() == "65534"
        assert (spy / "groups").read_text().split() == ["65534"]
