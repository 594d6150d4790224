"""pipeline shell / exec (pipeline.commands.devloop) and the command line around them: parsing,
validation, the exit-code mapping, and the exec driver against a fake QEMU
(tests/fixtures/fake-qemu-exec) that acts out the guest init's exec mode."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import io
import os
import sys
from pathlib import Path

import pytest

from pipeline import cli, qemu
from pipeline import job as jobmod
from pipeline.commands import devloop
from pipeline.commands.devloop import EXIT_GUEST_LOST, EXIT_TIMEOUT, ExecWatch, Outcome, exit_code
from pipeline.errors import BadInput
from pipeline.log import NORMAL, Log

FIXTURES = Path(__file__).parent / "fixtures"
FAKE = FIXTURES / "fake-qemu-exec"
INIT = Path(devloop.__file__).parent.parent / "guest" / "init.py"


# --- the command line ----------------------------------------------------------------------

def _options(p: argparse.ArgumentParser):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        yield action


def test_every_option_of_every_subcommand_has_help():
    top = cli.parser()
    missing = []
    for p in [top, *cli.subparsers(top)]:
        for action in _options(p):
            if action.help is None or not str(action.help).strip():
                missing.append(f"{p.prog}: {'/'.join(action.option_strings) or action.dest}")
        for action in p._actions:   # and every subcommand has a line in its parent's list
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not (choice.help or "").strip():
                        missing.append(f"{p.prog} {choice.dest}: no help")
    assert not missing, "options without help:\n" + "\n".join(missing)


def test_the_walker_sees_nested_subcommands():
    progs = {p.prog for p in cli.subparsers(cli.parser())}
    assert {"pipeline run", "pipeline shell", "pipeline exec", "pipeline bench",
            "pipeline series import", "pipeline bisect-step"} <= progs


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == \
        f"pipeline {importlib.metadata.version('kernel-pipeline')}"


@pytest.mark.parametrize("argv,level", [
    (["run"], NORMAL), (["-v", "run"], 1), (["run", "-vv"], 2), (["-v", "run", "-v"], 2),
    (["-q", "run"], -1), (["run", "--quiet", "-q"], -2), (["-v", "exec", "-q", "--", "x"], 0),
])
def test_verbosity_counts_before_and_after_the_subcommand(argv, level):
    assert cli.verbosity(cli.parser().parse_args(argv)) == level


def test_log_levels():
    lines: list[str] = []

    class Sink:
        def write(self, text):
            lines.append(text.split("] ", 1)[1].rstrip("\n"))

        def flush(self):
            pass

    for verbosity in (-2, -1, 0, 1):
        log = Log(stream=Sink(), verbosity=verbosity)
        log(f"info {verbosity}")
        log.debug(f"debug {verbosity}")
        log.error(f"error {verbosity}")
        log.stage("v", "build", "FAILED", 1.0)
    assert lines == ["error -1", "build v: FAILED (1.0s)",
                     "info 0", "error 0", "build v: FAILED (1.0s)",
                     "info 1", "debug 1", "error 1", "build v: FAILED (1.0s)"]


def test_exec_command_after_double_dash():
    args = cli.parser().parse_args(["exec", "--timeout", "5", "--", "sh", "-c", "exit 7"])
    assert devloop.exec_command(args.guest_command) == ["sh", "-c", "exit 7"]
    assert args.timeout == 5.0 and args.variant is None
    args = cli.parser().parse_args(["exec", "--variant", "baseline", "uname", "-r"])
    assert devloop.exec_command(args.guest_command) == ["uname", "-r"]
    assert args.variant == "baseline"


@pytest.mark.parametrize("words", [[], ["--"], ["--", ""]])
def test_exec_without_a_command_is_bad_input(words):
    with pytest.raises(BadInput, match="command"):
        devloop.exec_command(words)


def test_exec_without_a_command_exits_2(capsys):
    assert cli.main(["exec", "--"]) == 2
    out, err = capsys.readouterr()
    assert "no command" in err and out == ""       # stdout belongs to the guest command


@pytest.mark.parametrize("value", ["-5", "1e9", "nan", "soon"])
def test_exec_timeout_is_checked(value, capsys):
    with pytest.raises(SystemExit) as done:
        cli.parser().parse_args(["exec", "--timeout", value, "--", "true"])
    assert done.value.code == 2 and "--timeout" in capsys.readouterr().err


def test_exec_timeout_zero_means_none():
    assert cli.parser().parse_args(["exec", "--timeout", "0", "--", "true"]).timeout == 0.0


def test_default_variant():
    assert devloop.default_variant(["baseline", "patched"]) == "patched"
    assert devloop.default_variant(["a", "b"]) == "a"


def test_shell_needs_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli.main(["shell", "--out", str(tmp_path)]) == 2
    assert "needs a terminal" in capsys.readouterr().err


# --- --cpus / --memory ---------------------------------------------------------------------

@pytest.mark.parametrize("memory", ["1G", "512M", "2048", "1.5G", "64m", 256])
def test_memory_values_accepted(memory):
    assert jobmod.memory_problem(memory) is None


@pytest.mark.parametrize("memory", ["", "lots", "1 G", "1GB", "-1G", "0", "8M", "1Q", True,
                                    None, 1.5])
def test_memory_values_refused(memory):
    assert jobmod.memory_problem(memory)


def test_cpus_and_memory_override_the_job():
    job = jobmod.load_job()
    merged = jobmod.apply_overrides(job, jobmod.Overrides(cpus="4", memory="2G", accel="tcg"))
    assert (merged.qemu.smp, merged.qemu.memory, merged.qemu.accel) == (4, "2G", "tcg")
    assert merged.qemu.kernel_args == job.qemu.kernel_args
    same = jobmod.apply_overrides(job, jobmod.Overrides())
    assert (same.qemu.smp, same.qemu.memory) == (job.qemu.smp, job.qemu.memory)


@pytest.mark.parametrize("flag,value,words", [
    ("--cpus", "0", "positive integer"), ("--cpus", "two", "positive integer"),
    ("--cpus", "1000", "1 to 255"), ("--memory", "lots", "not a size"),
    ("--memory", "4M", "too small"),
])
def test_bad_cpus_or_memory_names_the_option(flag, value, words):
    with pytest.raises(BadInput) as err:
        jobmod.apply_overrides(jobmod.load_job(), jobmod.Overrides(
            **{flag.removeprefix("--"): value}))
    assert err.value.message.startswith(f"{flag} {value}: ") and words in err.value.message


@pytest.mark.parametrize("command", ["run", "exec"])
def test_bad_cpus_exits_2_before_any_work(command, tmp_path, capsys):
    extra = ["--", "true"] if command == "exec" else []
    assert cli.main([command, "--out", str(tmp_path), "--cpus", "0", *extra]) == 2
    out, err = capsys.readouterr()
    assert "error: --cpus 0: must be a positive integer" in (err if command == "exec" else out)
    assert not any(tmp_path.iterdir())


def test_job_file_memory_and_smp_checked_the_same_way(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("tree: debian:6.1\nseries: null\nkconfig: []\ntests: []\n"
                    "qemu: {memory: lots, smp: 0}\n")
    with pytest.raises(BadInput) as err:
        jobmod.load_job(path)
    assert "qemu.memory: 'lots' is not a size" in err.value.message
    assert "qemu.smp: must be a positive integer" in err.value.message


# --- exit codes ----------------------------------------------------------------------------

@pytest.mark.parametrize("outcome,code", [
    (Outcome(status=0), 0),
    (Outcome(status=7), 7),
    (Outcome(status=137), 137),                               # killed by SIGKILL in the guest
    (Outcome(status=None), EXIT_GUEST_LOST),                  # the guest died
    (Outcome(status=None, panic="Kernel panic - not syncing: x"), EXIT_GUEST_LOST),
    (Outcome(status=0, panic="Kernel panic - not syncing: x"), EXIT_GUEST_LOST),
    (Outcome(status=None, timed_out=True), EXIT_TIMEOUT),
    (Outcome(status=None, timed_out=True, panic="Kernel panic"), EXIT_GUEST_LOST),
    (Outcome(status=None, escaped=True), EXIT_GUEST_LOST),
])
def test_exit_code_mapping(outcome, code):
    assert exit_code(outcome) == code


def test_exit_codes_are_distinct_from_the_pipelines_own():
    taken = {0, 1, 2, 3, 4, cli.ABORT_BISECT}
    assert EXIT_TIMEOUT not in taken and EXIT_GUEST_LOST not in taken
    assert EXIT_TIMEOUT != EXIT_GUEST_LOST
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"| {EXIT_TIMEOUT} |" in readme and f"| {EXIT_GUEST_LOST} |" in readme


def test_watch_follows_the_markers():
    w = ExecWatch(boot_timeout=10, timeout=100, start=0.0)
    w.feed("[    0.1] Linux version 6.1", 1.0)
    assert not w.outcome.booted and not w.stop_now(2.0)
    w.feed('@@PIPELINE:{"event": "ready", "kernel": "6.1", "mode": "exec"}', 3.0)
    assert w.outcome.booted and not w.stop_now(50.0)
    w.feed('@@PIPELINE:{"event": "exit", "status": 7}', 60.0)
    assert w.outcome.status == 7
    assert not w.stop_now(61.0) and w.stop_now(60.0 + w.poweroff_grace + 1)


def test_watch_panic_keeps_the_trace_then_stops():
    w = ExecWatch(boot_timeout=10, timeout=100, start=0.0)
    w.feed('@@PIPELINE:{"event": "ready"}', 1.0)
    w.feed("[    5.0] Kernel panic - not syncing: sysrq triggered crash", 5.0)
    assert w.outcome.panic == "Kernel panic - not syncing: sysrq triggered crash"
    assert not w.stop_now(6.0) and w.stop_now(5.0 + w.panic_grace + 0.1)


def test_watch_deadlines():
    w = ExecWatch(boot_timeout=10, timeout=100, start=0.0)
    assert w.stop_now(11.0) and w.outcome.timed_out and "boot timeout" in w.outcome.failure
    w = ExecWatch(boot_timeout=10, timeout=100, start=0.0)
    w.feed('@@PIPELINE:{"event": "ready"}', 1.0)
    assert not w.stop_now(99.0) and w.stop_now(101.0)
    assert w.outcome.timed_out and "--timeout" in w.outcome.failure
    w = ExecWatch(boot_timeout=10, timeout=0.0, start=0.0)    # no limit
    w.feed('@@PIPELINE:{"event": "ready"}', 1.0)
    assert not w.stop_now(1e6)


@pytest.mark.parametrize("status", [-1, 256, "7", True, None])
def test_a_bad_status_from_the_guest_is_no_status(status):
    w = ExecWatch(boot_timeout=10, timeout=100, start=0.0)
    w.feed('@@PIPELINE:{"event": "exit", "status": %s}' % (
        '"7"' if status == "7" else str(status).lower() if status is not None else "null"), 1.0)
    assert w.outcome.status is None


# --- the output copy -----------------------------------------------------------------------

def test_pump_copies_what_grows(tmp_path):
    src, dst = tmp_path / "stdout", tmp_path / "copy"
    with open(dst, "wb") as out:
        pump = devloop.OutputPump(src, out.fileno())
        assert pump.pump() == 0                     # not there yet
        src.write_bytes(b"one\n")
        assert pump.pump() == 4
        with open(src, "ab") as f:
            f.write(b"two\x00\xff\n")
        assert pump.pump() == 6 and pump.pump() == 0
        pump.close()
    assert dst.read_bytes() == b"one\ntwo\x00\xff\n"


def test_pump_never_follows_a_symlink(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("host file\n")
    (tmp_path / "stdout").symlink_to(secret)
    with open(tmp_path / "copy", "wb") as out:
        assert devloop.OutputPump(tmp_path / "stdout", out.fileno()).pump() == 0
    assert (tmp_path / "copy").read_bytes() == b""


def test_pump_survives_a_closed_reader(tmp_path):
    src = tmp_path / "stdout"
    src.write_bytes(b"x" * 100)
    read, write = os.pipe()
    os.close(read)
    pump = devloop.OutputPump(src, write)
    assert pump.pump() == 100 and pump.broken
    pump.close()
    os.close(write)


# --- the guest init's side -----------------------------------------------------------------

@pytest.fixture(scope="module")
def init():
    spec = importlib.util.spec_from_file_location("guest_init", INIT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cmdline,mode", [
    ("console=ttyS0 root=root init=/usr/bin/python3 -- -B init.py", "tests"),
    ("console=ttyS0 pipeline.mode=exec -- -B init.py", "exec"),
    ("pipeline.mode=exec pipeline.mode=shell ro", "shell"),
    ("ro -- pipeline.mode=shell", "tests"),          # init's argv, not a kernel parameter
])
def test_init_reads_the_mode_from_the_command_line(init, cmdline, mode):
    assert init.boot_mode(cmdline) == mode


def test_init_refuses_an_unknown_mode(init):
    with pytest.raises(ValueError, match="pipeline.mode=debug"):
        init.boot_mode("pipeline.mode=debug")


def test_init_exit_status_like_a_shell(init):
    assert [init.exit_status(rc) for rc in (0, 7, 255, -9, -15)] == [0, 7, 255, 137, 143]


def test_init_keeps_host_tmp_visible_for_a_cwd_there(init):
    base = {"python": "/usr/bin/python3", "plugin_dir": "/opt/p", "tests": []}
    assert not init.host_tmp_needed({**base, "cwd": "/work/x", "command": ["sh"]})
    assert init.host_tmp_needed({**base, "cwd": "/tmp/clone", "command": ["sh"]})
    assert init.host_tmp_needed({**base, "cwd": "/", "command": ["/tmp/a.out"]})


def test_interactive_serial_replaces_serial_stdio():
    machine = qemu.Machine.load()
    argv = qemu.guest_argv(machine, "qemu", Path("bzImage"), accel="tcg", memory="1G", smp=1,
                           init=None, out_share=None, kernel_args=[], qemu_args=[],
                           interactive=True)
    assert "stdio" not in argv
    i = argv.index("-chardev")
    assert "signal=off" in argv[i + 1] and argv[argv.index("-serial") + 1] == "chardev:console"
    plain = qemu.guest_argv(machine, "qemu", Path("bzImage"), accel="tcg", memory="1G", smp=1,
                            init=None, out_share=None, kernel_args=[], qemu_args=[])
    assert plain[plain.index("-serial") + 1] == "stdio" and "-chardev" not in plain


# --- the exec driver against the fake QEMU ---------------------------------------------------

@pytest.fixture
def fake(tmp_path, monkeypatch):
    machine = qemu.Machine.load()
    machine.binary = str(FAKE)
    pidfile = tmp_path / "qemu.pid"
    monkeypatch.setenv("FAKE_QEMU_PIDFILE", str(pidfile))
    from pipeline import boot
    monkeypatch.setattr(boot, "STOP_GRACE", 0.5)
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"not a kernel")
    return machine, pidfile, kernel


def _exec(fake, tmp_path, monkeypatch, mode, command, timeout=30.0):
    machine, pidfile, kernel = fake
    monkeypatch.setenv("FAKE_EXEC_MODE", mode)
    session = devloop.Session(memory="1G", smp=1, accel="tcg", boot_timeout=10,
                              kernel_args=[], qemu_args=[])
    out, err = tmp_path / "host-stdout", tmp_path / "host-stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        outcome = devloop.run_exec(kernel, command, session, tmp_path / "exec",
                                   Log(stream=io.StringIO()), timeout=timeout,
                                   stdout=o.fileno(), stderr=e.fileno(), machine=machine)
    with pytest.raises(ProcessLookupError):      # QEMU is gone, whatever happened
        os.kill(int(pidfile.read_text()), 0)
    return outcome, out.read_bytes(), err.read_bytes()


def test_fake_exec_output_and_status(fake, tmp_path, monkeypatch):
    outcome, out, err = _exec(fake, tmp_path, monkeypatch, "ok",
                              ["sh", "-c", "echo hi; echo oops >&2; exit 7"])
    assert (out, err) == (b"hi\n", b"oops\n")
    assert outcome.status == 7 and exit_code(outcome) == 7 and outcome.booted
    console = (tmp_path / "exec" / "console.log").read_text()
    assert "pipeline.mode=exec" in console


def test_fake_exec_status_from_the_results_file(fake, tmp_path, monkeypatch):
    outcome, out, _ = _exec(fake, tmp_path, monkeypatch, "nomark", ["sh", "-c", "echo x"])
    assert out == b"x\n" and exit_code(outcome) == 0


def test_fake_exec_panic(fake, tmp_path, monkeypatch):
    outcome, out, _ = _exec(fake, tmp_path, monkeypatch, "panic", ["true"])
    assert out == b"before the panic\n"
    assert exit_code(outcome) == EXIT_GUEST_LOST
    assert "sysrq triggered crash" in devloop.describe(outcome)


def test_fake_exec_guest_dies(fake, tmp_path, monkeypatch):
    outcome, _, _ = _exec(fake, tmp_path, monkeypatch, "die", ["true"])
    assert exit_code(outcome) == EXIT_GUEST_LOST
    assert "before the guest reported" in outcome.failure


def test_fake_exec_timeout_kills_qemu(fake, tmp_path, monkeypatch):
    outcome, _, _ = _exec(fake, tmp_path, monkeypatch, "hang", ["true"], timeout=1.5)
    assert exit_code(outcome) == EXIT_TIMEOUT and outcome.duration < 10
    assert "--timeout" in outcome.failure


# --- the ready-kernel record (configure + build skipped for unchanged inputs) ------------------

def test_ready_kernel_only_for_the_same_inputs_and_image(tmp_path):
    import dataclasses
    import subprocess

    from pipeline import ready as ready_mod
    from pipeline.cache import Cache
    from pipeline.context import RunContext, VariantContext
    from pipeline.kconfig import ConfigResult
    from pipeline.results import RunReport, VariantReport

    src = tmp_path / "src"
    src.mkdir()
    (src / "Makefile").write_text("all:\n")
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    fragment = tmp_path / "frag.config"
    fragment.write_text("CONFIG_FOO=y\n")
    job = dataclasses.replace(jobmod.load_job(), kconfig=[fragment])
    variant = job.variants[0]
    run = RunContext(job, Cache(tmp_path / "cache"), Log(stream=io.StringIO()), RunReport(),
                     backend=None)
    tree = type("T", (), {"version": "6.1.1"})()
    out = tmp_path / "out"
    out.mkdir()
    ctx = VariantContext(run, variant, tree, None, VariantReport("v"), out, "key")
    inputs = ready_mod.inputs(ctx, src)
    assert inputs is not None
    config = ConfigResult(tmp_path / ".config", "ab" * 32, [], [], [], [], 0.0)
    build_dir = run.cache.dir("builds") / f"key-{config.config_hash[:12]}"
    image = build_dir / "arch" / "x86" / "boot" / "bzImage"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"kernel one")
    ctx.kernel, ctx.config = image, config
    ready_mod.record(ctx, inputs, build_dir, image)

    def ready():
        return ready_mod.take(ctx, ready_mod.inputs(ctx, src))

    assert ready() == out / "bzImage" and (out / "bzImage").read_bytes() == b"kernel one"
    fragment.write_text("CONFIG_FOO=n\n")          # another fragment: configure again
    assert ready() is None
    fragment.write_text("CONFIG_FOO=y\n")
    (src / "Makefile").write_text("all: x\n")       # a dirty checkout: never reused
    assert ready_mod.inputs(ctx, src) is None
    subprocess.run([*git, "commit", "-qam", "two"], check=True)   # a new HEAD
    assert ready() is None
    subprocess.run([*git, "reset", "-q", "--hard", "HEAD~1"], check=True)
    assert ready() is not None
    image.write_bytes(b"kernel two")                # the folder was rebuilt since
    assert ready() is None
