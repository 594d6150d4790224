"""Build a tree's kselftests, run them in the guest, and turn their TAP into results.

Build (host): `make headers` of the tree into a cache folder, then
`make -C tools/testing/selftests O=<cache>/build TARGETS=<t> KHDR_INCLUDES=...`
per target (so a failure names its target and program), then an install
folder of our own: the target's source folder (scripts, `settings`) overlaid
with the built programs, a manifest (`kselftest-manifest.json`) and the guest
runner copied next to it as `test_kselftest.py`. kselftest's own `install`
target is not used: it needs rsync. The list of tests comes from the target's
`emit_tests` make target, i.e. exactly what kselftest itself would run.

Run (guest): a separate guest session (`run_guest` on the installed
`test_kselftest.py`), so the cgroup2 mount of the selftests never meets the
v1 hierarchies of the pool tests (a controller can be bound to one of them
only). Each program runs with kselftest's timeout (the target's `settings`
`timeout=`, default 45 s); its output comes back framed on the console
(see pipeline/guest/kselftest_run.py) and is parsed here with pipeline.ktap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import ktap, proc
from ..boot import BootBackend, BootResult, BootSettings, QemuBoot
from ..errors import BadInput, StageFailed
from ..log import Logger, fmt_duration, rerun_line

DEFAULT_TIMEOUT = 45          # kselftest/runner.sh kselftest_default_timeout
KSFT_SKIP = 4
GUEST_RUNNER = Path(__file__).parent.parent / "guest" / "kselftest_run.py"
GUEST_MODULE = "test_kselftest.py"
MANIFEST = "kselftest-manifest.json"
STAMP = ".pipeline-stamp"
PASSED, FAILED, ERROR, SKIPPED = "passed", "failed", "error", "skipped"



@dataclass
class Selftest:
    collection: str               # the TARGETS name, e.g. "cgroup"
    name: str                     # program in the collection, e.g. "test_core"
    timeout: int = DEFAULT_TIMEOUT


@dataclass
class SelftestBuild:
    tree: Path
    install_dir: Path
    tests: list[Selftest]
    log_path: Path
    duration: float
    cached: bool = False

    @property
    def guest_module(self) -> Path:
        return self.install_dir / GUEST_MODULE


@dataclass
class SelftestRun:
    """One program's run in the guest, reassembled from the console."""

    test: Selftest
    ran: bool = False             # BEGIN seen
    finished: bool = False        # END seen
    rc: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    output: list[str] = field(default_factory=list)

    def tap(self) -> ktap.TestGroup:
        return ktap.parse("\n".join(self.output))


@dataclass
class CaseResult:
    """One program or one subtest: what becomes a JUnit testcase and a table row."""

    collection: str
    test: str                     # program name
    subtest: str = ""             # "" for the program itself; nested paths joined by " / "
    status: str = PASSED          # passed | failed | error | skipped
    message: str = ""
    details: str = ""
    duration: float = 0.0
    flaky: str = ""               # a pass that failed on another run: what happened then

    @property
    def key(self) -> str:
        return f"{self.test}: {self.subtest}" if self.subtest else self.test


# ---- build --------------------------------------------------------------------------------

def read_timeout(target_dir: Path) -> int:
    """The target's `settings` file `timeout=N`, as kselftest's runner reads it."""
    settings = target_dir / "settings"
    if settings.is_file():
        for line in settings.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "timeout" and value.strip().isdigit():
                return int(value.strip())
    return DEFAULT_TIMEOUT


def _source_stamp(tree: Path, targets: list[str]) -> str:
    """Cheap fingerprint of what the build depends on: file names, sizes, mtimes."""
    h = hashlib.sha256()
    st = tree / "tools" / "testing" / "selftests"
    paths = [st / "lib.mk", st / "kselftest.h", st / "Makefile", GUEST_RUNNER]
    for target in targets:
        paths += sorted(p for p in (st / target).rglob("*") if p.is_file())
    for p in paths:
        if p.exists():
            s = p.stat()
            h.update(f"{p}\0{s.st_size}\0{s.st_mtime_ns}\n".encode())
    h.update(",".join(targets).encode())
    return h.hexdigest()[:16]


def _run_logged(cmd: list[str], log_file: Path, timeout: float, what: str, log: Logger,
                env: dict[str, str] | None = None) -> str:
    """Run `cmd` appending its output to `log_file`; raise StageFailed naming `what`."""
    with open(log_file, "ab") as out:
        out.write(f"\n$ {rerun_line(cmd, env=env)}\n".encode())
        out.flush()
        start = len(log_file.read_bytes())
        done = proc.run(cmd, timeout=timeout, env=env, stdout=out,
                        tick=lambda t: log(f"  {what}: {fmt_duration(t)} elapsed"))
    text = log_file.read_bytes()[start:].decode(errors="replace")
    if done.timed_out:
        raise StageFailed(f"{what}: timed out after {fmt_duration(timeout)} (log: {log_file})",
                          details=f"rerun by hand: {rerun_line(cmd, env=env)}")
    if done.returncode != 0:
        errors = [ln.strip() for ln in text.splitlines()
                  if re.search(r":\d+(:\d+)?: (fatal )?error:|\*\*\*", ln)][:15]
        raise StageFailed(f"{what} failed (exit {done.returncode}, log: {log_file})",
                          details="\n".join(errors or text.splitlines()[-20:])
                          + f"\nrerun by hand: {rerun_line(cmd, env=env)}")
    return text


def _failed_program(text: str) -> str:
    """The program make was building when it failed (`make[1]: *** [...: <out>/test_x] Error`)."""
    m = re.search(r"\*\*\* \[[^\]]*?:\s*\S*?/([\w.+-]+)\] Error", text)
    if m:
        return m.group(1)
    m = re.search(r"^([\w/.-]+\.c):\d+(?::\d+)?: (?:fatal )?error:", text, re.MULTILINE)
    return Path(m.group(1)).stem if m else ""


def emit_tests(tree: Path, target: str, output: Path, timeout: float = 120.0) -> list[str]:
    """kselftest's own list of the target's tests (`make emit_tests`)."""
    cmd = ["make", "-s", "-C", str(tree / "tools" / "testing" / "selftests" / target),
           f"OUTPUT={output}", f"COLLECTION={target}", "emit_tests"]
    done = proc.run(cmd, timeout=timeout)
    if done.returncode != 0 or done.timed_out:
        raise StageFailed(f"kselftest {target}: cannot list its tests",
                          details=done.output + f"\nrerun by hand: {rerun_line(cmd)}")
    names = []
    for line in done.output.splitlines():
        _collection, sep, name = line.strip().partition(":")
        if sep and name and not line.startswith("make"):
            names.append(name.strip())
    return names


def build_selftests(tree: Path, cache_dir: Path, targets: list[str], log: Logger,
                    timeout: float = 1200.0, jobs: int = 2) -> SelftestBuild:
    """Build and install `targets` of tree's selftests under `cache_dir` (reused when unchanged).

    Raises BadInput for an unknown target, StageFailed when headers or a test fail to build
    (the message names the target and program; details carry the errors and the rerun line).
    """
    start = time.monotonic()
    st = tree / "tools" / "testing" / "selftests"
    for target in targets:
        if not (st / target / "Makefile").is_file():
            known = sorted(p.parent.name for p in st.glob("*/Makefile"))[:80]
            raise BadInput(f"kselftest target {target!r}: no {st / target / 'Makefile'} "
                           f"(targets in this tree: {', '.join(known)})")
    install = cache_dir / "install"
    log_path = cache_dir / "kselftest-build.log"
    stamp = _source_stamp(tree, targets)
    manifest = install / MANIFEST
    if manifest.is_file() and (install / STAMP).is_file() \
            and (install / STAMP).read_text().strip() == stamp:
        tests: list[Selftest] = [Selftest(**t)
                                 for t in json.loads(manifest.read_text())["tests"]]
        log(f"  kselftest: cached build of {', '.join(targets)} ({len(tests)} tests)")
        return SelftestBuild(tree, install, tests, log_path, time.monotonic() - start, True)

    cache_dir.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    hdr = cache_dir / "headers"
    # `make headers` leaves the sanitized UAPI headers in <O>/usr/include;
    # headers_install to another path would need rsync.
    _run_logged(["make", "-C", str(tree), f"O={hdr}", "headers"], log_path, timeout,
                "kselftest: kernel headers", log)
    build = cache_dir / "build"
    shutil.rmtree(install, ignore_errors=True)
    tests = []
    for target in targets:
        cmd = ["make", "-C", str(st), f"O={build}", f"TARGETS={target}", f"-j{jobs}",
               f"KHDR_INCLUDES=-isystem {hdr / 'usr' / 'include'}", "all"]
        t0 = time.monotonic()
        try:
            _run_logged(cmd, log_path, timeout, f"kselftest {target}: build", log)
        except StageFailed as exc:
            program = _failed_program(exc.details + log_path.read_text(errors="replace")[-20000:])
            if program:
                exc.message = f"kselftest {target}: {program} failed to build ({exc.message})"
                exc.args = (exc.message,)
            raise
        out = build / "kselftest" / target
        names = emit_tests(tree, target, out)
        dest = install / target
        shutil.copytree(st / target, dest, symlinks=True)
        shutil.copytree(out, dest, symlinks=True, dirs_exist_ok=True)
        missing = [n for n in names if not (dest / n).is_file()]
        if missing:
            raise StageFailed(f"kselftest {target}: {', '.join(missing)} not built "
                              f"(log: {log_path})")
        timeout_s = read_timeout(st / target)
        tests += [Selftest(target, n, timeout_s) for n in names]
        log(f"  kselftest {target}: built {len(names)} tests in "
            f"{fmt_duration(time.monotonic() - t0)} (timeout {timeout_s}s each)")
    shutil.copy2(GUEST_RUNNER, install / GUEST_MODULE)
    manifest.write_text(json.dumps({"tests": [t.__dict__ for t in tests]}, indent=1) + "\n")
    (install / STAMP).write_text(stamp + "\n")
    return SelftestBuild(tree, install, tests, log_path, time.monotonic() - start)


def guest_time_budget(tests: list[Selftest], scale: float = 1.0,
                      grace: float = 15.0) -> tuple[float, float]:
    """(per-test, whole session) seconds for run_guest: the slowest test's kselftest
    timeout (times `scale`) plus grace, and the sum of them all."""
    per_test = max((t.timeout for t in tests), default=DEFAULT_TIMEOUT) * scale + grace
    total = sum(t.timeout * scale + grace for t in tests) + 120.0
    return per_test, total


# ---- console -> runs ----------------------------------------------------------------------

_FRAME = re.compile(r"KSELFTEST-(BEGIN|LINE|END) (\S+) (\S+)(?: \| ?(.*)| (.*))?$")
_KV = re.compile(r"(\w+)=(\S+)")


def parse_console(text: str, tests: list[Selftest]) -> list[SelftestRun]:
    """Reassemble each program's output from the framed console lines.

    The frame tag may be preceded by kernel text on the same console line; a
    program that never started (guest died first) keeps ran=False.
    """
    runs = {(t.collection, t.name): SelftestRun(t) for t in tests}
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        pos = line.find("KSELFTEST-")
        if pos < 0:
            continue
        m = _FRAME.match(line[pos:])
        if not m:
            continue
        kind, collection, name = m.group(1), m.group(2), m.group(3)
        run = runs.get((collection, name))
        if run is None:
            continue
        if kind == "BEGIN":
            run.ran = True
            run.output = []
        elif kind == "LINE":
            run.output.append(m.group(4) or "")
        else:
            kv = dict(_KV.findall(m.group(5) or ""))
            run.finished = True
            run.rc = int(kv.get("rc", "-1"))
            run.seconds = float(kv.get("secs", "0"))
            run.timed_out = kv.get("timedout") == "1"
    return list(runs.values())


# ---- runs -> results ----------------------------------------------------------------------

_STATUS = {ktap.Status.PASS: PASSED, ktap.Status.XFAIL: PASSED, ktap.Status.FAIL: FAILED,
           ktap.Status.SKIP: SKIPPED, ktap.Status.ERROR: ERROR}


def _skip_reason(case: ktap.TestCase) -> str:
    """kselftest's skip reason is often just the test name; the lines it printed
    before the result usually say why."""
    reason = case.reason
    if (not reason or reason == case.name) and case.diagnostics:
        reason = case.diagnostics[-1]
    return reason or "skipped by the test (no reason printed)"


def _program_result(run: SelftestRun, tap: ktap.TestGroup, session_failure: str) -> CaseResult:
    t = run.test
    res = CaseResult(t.collection, t.name, duration=run.seconds,
                     details="\n".join(run.output[-60:]))
    if not run.ran:
        res.status, res.message = ERROR, "did not run" + (
            f": guest session ended ({session_failure})" if session_failure else "")
    elif not run.finished:
        res.status, res.message = ERROR, "no end marker: the guest session ended while it ran" + (
            f" ({session_failure})" if session_failure else "")
    elif run.timed_out:
        res.status, res.message = FAILED, f"TIMEOUT {t.timeout} seconds"
    elif run.rc == KSFT_SKIP:
        reason = tap.plan_skip_reason or (tap.diagnostics[-1] if tap.diagnostics else "")
        if not reason and tap.tests and tap.tests[-1].status == ktap.Status.SKIP:
            reason = _skip_reason(tap.tests[-1])
        res.status, res.message = SKIPPED, reason or "KSFT_SKIP (no reason printed)"
    elif run.rc is not None and run.rc < 0:
        res.status, res.message = FAILED, f"killed by signal {-run.rc}"
    elif run.rc != 0:
        fails = [c.name for c in tap.tests if c.status in (ktap.Status.FAIL, ktap.Status.ERROR)]
        res.status = FAILED
        res.message = f"exit code {run.rc}" + (f"; failed: {', '.join(fails)}" if fails else "")
    elif tap.incomplete:
        res.status, res.message = FAILED, "incomplete TAP: " + "; ".join(tap.problems)
    return res


def results_of(runs: list[SelftestRun], session_failure: str = "") -> list[CaseResult]:
    """One CaseResult per program, then one per (nested) subtest it reported."""
    out: list[CaseResult] = []
    for run in runs:
        tap = run.tap()
        out.append(_program_result(run, tap, session_failure))
        for path, case in tap.walk():
            res = CaseResult(run.test.collection, run.test.name, " / ".join(path),
                             _STATUS[case.status], details="\n".join(case.diagnostics[-30:]))
            if case.status == ktap.Status.SKIP:
                res.message = _skip_reason(case)
            elif case.directive:
                res.message = f"{case.directive} {case.reason}".strip()
            elif res.status == FAILED and case.diagnostics:
                res.message = case.diagnostics[-1]
            out.append(res)
    return out


@dataclass
class KselftestPhase:
    boot: BootResult
    runs: list[SelftestRun]
    results: list[CaseResult]


SCRATCH_SIZE = 1 << 30            # sparse; the tests write a few 100 MB of page cache at most
SCRATCH_MKFS = ["mkfs.ext2", "-q", "-F", "-m", "0", "-N", "16384", "-L", "kselftest"]


def make_scratch_disk(folder: Path, log: Logger) -> Path | None:
    """A fresh, sparse ext2 image for the guest's kselftest root (see
    pipeline/guest/kselftest_run.py make_chroot); None (and a log line) without mkfs.ext2."""
    if shutil.which(SCRATCH_MKFS[0]) is None:
        log(f"  kselftest: no {SCRATCH_MKFS[0]} on the host: the programs run on the guest's "
            f"tmpfs (test_memcontrol and test_kmem_basic then fail)")
        return None
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / "scratch.img"
    image.unlink(missing_ok=True)
    with open(image, "wb") as f:
        f.truncate(SCRATCH_SIZE)
    done = proc.run([*SCRATCH_MKFS, str(image)], timeout=120)
    if done.returncode != 0 or done.timed_out:
        log(f"  kselftest: {SCRATCH_MKFS[0]} failed ({done.output.strip()[-200:]}): the "
            f"programs run on the guest's tmpfs")
        image.unlink(missing_ok=True)
        return None
    return image


def scratch_boot_args(image: Path) -> tuple[list[str], list[str]]:
    """(kernel args, QEMU args) that give the guest `image` as /dev/vda for its kselftests."""
    return (["kselftest.scratch=/dev/vda"],
            ["-drive", f"file={image},format=raw,if=virtio,cache=unsafe"])


def run_phase(kernel: Path, build: SelftestBuild, out_dir: Path, settings: BootSettings,
              python: Path, log: Logger, timeout_scale: float = 1.0,
              only: list[str] | None = None, scratch: bool = True,
              backend: BootBackend | None = None) -> KselftestPhase:
    """Boot `kernel` once more and run the installed selftests (run_guest on the guest
    module); `settings` is a boot.BootSettings, copied and given the kselftest time budget.
    `timeout_scale` stretches kselftest's per-test timeouts (passed to the guest on the
    kernel command line as kselftest.timeout_scale=F); use the job's TCG factor.
    Console output goes to out_dir/console.log (use a folder of its own, e.g. OUT/<variant>/
    kselftest, so it does not overwrite the main session's console log). `backend` boots
    (default: QEMU)."""
    backend = backend or QemuBoot()
    tests = [t for t in build.tests if only is None or t.name in only]
    paths = [build.guest_module] if only is None else [
        Path(f"{build.guest_module}::test_selftest[{t.collection}:{t.name}]") for t in tests]
    per_test, total = guest_time_budget(tests, timeout_scale)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = make_scratch_disk(build.install_dir.parent / "scratch" / f"{os.getpid()}-"
                              f"{out_dir.parent.name}-{out_dir.name}", log) if scratch else None
    kargs, qargs = scratch_boot_args(image) if image is not None else ([], [])
    settings = dataclasses.replace(
        settings, test_timeout=max(settings.test_timeout, per_test),
        total_timeout=max(settings.total_timeout, total),
        kernel_args=list(settings.kernel_args) + [f"kselftest.timeout_scale={timeout_scale:g}",
                                                  *kargs],
        qemu_args=list(settings.qemu_args) + qargs)
    scaled = [Selftest(t.collection, t.name, max(1, round(t.timeout * timeout_scale)))
              for t in tests]
    log(f"  kselftest: {len(tests)} programs, up to {fmt_duration(total)}"
        + (f", scratch disk {image}" if image is not None else ""))
    try:
        result = backend.run_guest(kernel, paths, out_dir, settings, python, log)
    finally:
        if image is not None:
            shutil.rmtree(image.parent, ignore_errors=True)
    console = (out_dir / "console.log").read_text(errors="replace") \
        if (out_dir / "console.log").is_file() else ""
    runs = parse_console(console, scaled)
    failure = "" if result.completed else (result.failure or "session did not complete")
    return KselftestPhase(result, runs, results_of(runs, failure))
