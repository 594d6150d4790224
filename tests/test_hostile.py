"""Issue 13: hostile input. Each test here failed on the code before the fix (see the commit
that added it): bad input is exit 2 before any work, the pipeline's own failure is never 1,
and nothing outside the cache and OUT is written or deleted."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_runner import fake_boot, project  # noqa: F401 - fixtures

from pipeline import cli, safeyaml, series, tree
from pipeline.cache import Cache
from pipeline.commands import mailsource
from pipeline.commands import series_import as intake
from pipeline.errors import BadInput, StageFailed
from pipeline.job import Overrides, apply_overrides, load_job

quiet = lambda _msg: None


def _said(capsys) -> str:
    got = capsys.readouterr()
    return got.out + got.err


def _job(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


# --- row 3: YAML alias bomb -------------------------------------------------------------------

BOMB = """\
a: &a [x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f]
tree: debian:6.1
"""


def test_alias_bomb_job_is_refused_fast(tmp_path):
    path = _job(tmp_path, BOMB)
    start = time.monotonic()
    with pytest.raises(BadInput, match="aliases"):
        load_job(path)
    assert time.monotonic() - start < 2


def test_alias_bomb_series_yaml_is_refused(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "series.yaml").write_text(BOMB.replace("tree: debian:6.1", "name: x"))
    (folder / "0001-a.patch").write_text("Subject: a\n\ndiff --git a/x b/x\n")
    with pytest.raises(BadInput, match="aliases"):
        series.load_folder(folder)


def test_alias_bomb_matrix_job_is_refused(tmp_path):
    from pipeline.commands import matrix
    with pytest.raises(BadInput, match="aliases"):
        matrix.load_matrix(_job(tmp_path, BOMB))


def test_deep_nesting_and_size_are_refused(tmp_path):
    with pytest.raises(BadInput, match="nested"):
        load_job(_job(tmp_path, "tree: " + "[" * 5000 + "]" * 5000 + "\n"))
    with pytest.raises(BadInput, match="larger than"):
        load_job(_job(tmp_path, "# " + "x" * (safeyaml.MAX_BYTES + 10) + "\ntree: debian:6.1\n"))


def test_small_aliases_still_work(tmp_path):
    job = load_job(_job(tmp_path, "tree: debian:6.1\nqemu: &q {smp: 1}\nbase_config: &b "
                                  "tinyconfig\n"))
    assert job.qemu.smp == 1 and job.base_config == "tinyconfig"


# --- row 4: NaN and infinity ------------------------------------------------------------------

@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e400"])
@pytest.mark.parametrize("key", ["timeouts: {build: V}", "timeouts: {boot: V}",
                                 "timeouts: {test: V}", "timeouts: {total: V}",
                                 "variants: [{name: a, timeout_scale: V}]",
                                 "kselftest: {timeout_scale: V}"])
def test_nan_and_inf_are_bad_input(tmp_path, key, value):
    path = _job(tmp_path, "tree: debian:6.1\n" + key.replace("V", value) + "\n")
    with pytest.raises(BadInput, match="finite"):
        load_job(path)
    assert cli.main(["run", "--job", str(path)]) == 2


# --- row 5: crashes become clear messages with exit 2 (bad input) -------------------------------

def test_non_utf8_job_file_is_bad_input(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_bytes(b"tree: debian:6.1\n# caf\xe9\n")
    assert cli.main(["run", "--job", str(path)]) == 2
    assert "job.yaml:2: job file is not UTF-8" in _said(capsys)


def test_non_utf8_series_yaml_and_patch_are_bad_input(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "series.yaml").write_bytes(b"name: caf\xe9\nbase: ['6.1']\n")
    (folder / "0001-a.patch").write_text("Subject: a\n\ndiff --git a/x b/x\n")
    with pytest.raises(BadInput, match="series.yaml:1: series.yaml is not UTF-8"):
        series.load_folder(folder)
    (folder / "series.yaml").write_text("name: ok\nbase: ['6.1']\n")
    (folder / "0001-a.patch").write_bytes(b"Subject: a\n\ndiff --git a/x b/x\n+caf\xe9\n")
    with pytest.raises(BadInput, match=r"0001-a.patch:4: not UTF-8 \(byte 0xe9\)"):
        series.load_folder(folder)


def test_folder_named_like_a_patch_is_bad_input(tmp_path):
    folder = tmp_path / "s"
    (folder / "0001-x.patch").mkdir(parents=True)
    (folder / "series.yaml").write_text("name: ok\nbase: ['6.1']\n")
    with pytest.raises(BadInput, match="0001-x.patch: is not a regular file"):
        series.load_folder(folder)


@pytest.fixture
def readonly_dir(tmp_path):
    """A read-only file system (root ignores file modes, so a mode is not enough)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    where = tmp_path / "ro"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)],
                   check=True, timeout=30)
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False, timeout=30)


def test_out_that_is_a_file_is_bad_input(project, fake_boot, capsys):  # noqa: F811
    (project / "afile").write_text("precious\n")
    code = cli.main(["run", "--job", str(project / "job.yaml"), "--out",
                     str(project / "afile")])
    assert code == 2
    assert "exists and is not a folder" in _said(capsys)
    assert (project / "afile").read_text() == "precious\n"
    assert not fake_boot.calls


def test_read_only_out_and_cache_are_bad_input(project, fake_boot, readonly_dir,  # noqa: F811
                                               capsys):
    job = str(project / "job.yaml")
    assert cli.main(["run", "--job", job, "--out", str(readonly_dir / "out")]) == 2
    assert "read-only file system" in _said(capsys)
    assert cli.main(["run", "--job", job, "--cache-dir", str(readonly_dir / "c")]) == 2
    assert "the cache folder" in _said(capsys)
    assert not fake_boot.calls


def test_full_out_is_bad_input(project, fake_boot, small_disk, capsys):  # noqa: F811
    with open(small_disk / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    code = cli.main(["run", "--job", str(project / "job.yaml"), "--out", str(small_disk)])
    assert code == 2
    assert "no space left" in _said(capsys)


def test_git_missing_from_path_is_bad_input(project, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("PATH", str(project / "empty-path"))
    assert cli.main(["run", "--job", str(project / "job.yaml")]) == 2
    assert "git is not in PATH" in _said(capsys)


def test_git_missing_from_path_in_a_fresh_process(tmp_path):
    """Without git in PATH a fresh process says so (exit 2): nothing may fail at import time
    (GitPython, used once, refused to import without git and the process ended with exit 1)."""
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "pipeline", "run", "--tree", "debian:6.1"],
                          cwd=Path(__file__).resolve().parent.parent, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "git is not in PATH" in done.stdout + done.stderr


# --- row 8: validated before any work ---------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ("qemu: {kernel_args: ['console=ttyS0 init=/bin/sh']}", "white space"),
    ('qemu: {kernel_args: ["a\\tb"]}', "white space"),
    ("base_config: O=/etc", "make config target"),
    ("base_config: -j1", "make config target"),
    ("kselftest: {targets: [../../etc]}", "tools/testing/selftests"),
    ("kselftest: {targets: ['cgroup O=/etc']}", "tools/testing/selftests"),
    ("kselftest: {targets: [-C/]}", "tools/testing/selftests"),
])
def test_raw_make_and_kernel_words_are_refused(tmp_path, text, words):
    with pytest.raises(BadInput, match=words):
        load_job(_job(tmp_path, "tree: debian:6.1\n" + text + "\n"))


def test_good_make_words_pass(tmp_path):
    job = load_job(_job(tmp_path, "tree: debian:6.1\nbase_config: x86_64_defconfig\n"
                                  "kselftest: {targets: [cgroup, net/forwarding]}\n"
                                  "qemu: {kernel_args: [quiet, 'rootflags=a,b']}\n"))
    assert job.kselftest.targets == ["cgroup", "net/forwarding"]


def test_project_path_with_a_space_is_refused_before_work(project, fake_boot,  # noqa: F811
                                                          monkeypatch, capsys):
    monkeypatch.setattr(sys, "executable", "/opt/my venv/bin/python")
    assert cli.main(["run", "--job", str(project / "job.yaml")]) == 2
    assert "white space" in _said(capsys)
    assert not fake_boot.calls and not (project / "cache").exists()


def test_plain_http_tree_needs_a_checksum_or_an_opt_in(tmp_path):
    job = load_job(_job(tmp_path, "tree: debian:6.1\n"))
    with pytest.raises(BadInput, match="--insecure-http"):
        apply_overrides(job, Overrides(tree="http://example.invalid/linux.tar.xz"))
    ok = apply_overrides(job, Overrides(tree="http://example.invalid/linux.tar.xz",
                                        insecure_http=True))
    assert ok.tree_insecure_http
    assert apply_overrides(job, Overrides(tree="https://example.invalid/linux.tar.xz"))
    assert apply_overrides(job, Overrides(tree="http://example.invalid/linux.tar.xz",
                                          tree_sha256="a" * 64))
    job = load_job(_job(tmp_path, "tree: http://example.invalid/l.tar.xz\n"
                                  "tree_insecure_http: true\n"))
    assert apply_overrides(job, Overrides()).tree_insecure_http


def test_run_keeps_files_it_did_not_write(project, fake_boot):  # noqa: F811
    mine = project / "out" / "patched" / "my-notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("keep me\n")
    (project / "out" / "patched" / "console.log").write_text("old run\n")
    assert cli.main(["run", "--job", str(project / "job.yaml"), "--variant", "patched"]) == 0
    assert mine.read_text() == "keep me\n"
    assert (project / "out" / "patched" / "console.log").read_text() == "console\n"


def test_variant_out_that_is_a_symlink_is_refused(project, fake_boot, tmp_path):  # noqa: F811
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config").write_text("precious\n")
    (project / "out").mkdir()
    (project / "out" / "patched").symlink_to(elsewhere)
    assert cli.main(["run", "--job", str(project / "job.yaml"), "--variant", "patched"]) == 2
    assert (elsewhere / "config").read_text() == "precious\n"


class _Drip(http.server.BaseHTTPRequestHandler):
    """Sends a long body one byte every 50 ms (never idle long enough for a read timeout)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def drip_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow.tar.gz"
    server.shutdown()


def test_download_has_a_total_deadline(tmp_path, drip_url):
    start = time.monotonic()
    with pytest.raises(StageFailed, match="gave up after"):
        tree.download(drip_url, Cache(tmp_path / "c"), quiet, None, timeout=1.0)
    assert time.monotonic() - start < 4
    assert not list((tmp_path / "c" / "downloads").iterdir())


def test_series_fetch_has_a_total_deadline(drip_url):
    start = time.monotonic()
    with pytest.raises(BadInput, match="gave up after"):
        mailsource.fetch_url(drip_url, timeout=1.0)
    assert time.monotonic() - start < 4


def test_series_import_limits_unpacked_size(tmp_path, monkeypatch):
    import gzip
    monkeypatch.setattr(mailsource, "MAX_MAIL_BYTES", 1 << 20)
    bomb = tmp_path / "thread.mbox.gz"
    bomb.write_bytes(gzip.compress(b"\0" * (8 << 20)))
    with pytest.raises(BadInput, match="unpacks to more than"):
        mailsource.read_file(bomb)


def test_garbage_download_is_not_reused(tmp_path):
    """A cached download that is cut (or was no tarball) is fetched again, not trusted."""
    cache = Cache(tmp_path / "c")
    root = tmp_path / "www"
    root.mkdir()
    body = b"not a tarball at all\n"
    (root / "linux.tar.gz").write_bytes(body)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/linux.tar.gz"
    try:
        with pytest.raises(BadInput, match="corrupt or truncated"):
            tree.prepare_tree(url, cache, quiet)
        assert not list((tmp_path / "c" / "downloads").iterdir())
        # a download cut after it was published (e.g. a full disk, a crash) is not reused
        dest = tree.download(url, cache, quiet, None)
        dest.write_bytes(body[:5])
        lines: list[str] = []
        again = tree.download(url, cache, lines.append, None)
        assert again.read_bytes() == body and any("downloading again" in x for x in lines)
    finally:
        server.shutdown()


def test_series_import_force_refuses_a_checkout(tmp_path):
    checkout = tmp_path / "linux"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "Makefile").write_text("precious\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "0001-a.patch").write_text(
        "From 1 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH] a\n\n---\n"
        "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(BadInput, match="--force refused"):
        intake.import_series(str(tmp_path / "in"), checkout, quiet, force=True)
    assert (checkout / "Makefile").read_text() == "precious\n"


# --- row 9: bisect-step never says "bad" for its own failure ----------------------------------

def test_bisect_step_internal_error_exits_128(monkeypatch):
    from pipeline.commands import bisect

    def boom(args, log):
        raise RuntimeError("a bug")
    monkeypatch.setattr(bisect, "_stepper", lambda *a: (_ for _ in ()).throw(OSError(30, "x")))
    assert cli.main(["bisect-step", "--test", "x.py"]) == 128
    monkeypatch.setattr(bisect, "_stepper", boom)
    assert cli.main(["bisect-step", "--test", "x.py"]) == 128


def test_bisect_step_usage_error_and_interrupt_exit_128(monkeypatch):
    from pipeline.commands import bisect
    assert cli.main(["bisect-step", "--no-such-flag"]) == 128

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(bisect, "_stepper", interrupted)
    assert cli.main(["bisect-step", "--test", "x.py"]) == 128


def test_internal_error_case_is_abort_not_bad_or_skip():
    from pipeline.commands import bisect
    from pipeline.results import ERROR, Case, RunReport, Stage, VariantReport
    for stage in ("configure", "boot", "guest"):
        vr = VariantReport("bisect", {})
        vr.stages.append(Stage(stage, [Case(stage, ERROR, 0.0,
                                            "internal error: UnicodeEncodeError: x")]))
        report = RunReport(variants=[vr])
        assert bisect.verdict_of(report).code == 128, stage


def test_non_utf8_path_is_bad_input_before_it_reaches_junit(project, fake_boot,  # noqa: F811
                                                           capsys):
    """A fragment named with a Latin-1 byte once crashed the JUnit writer (a lone surrogate)
    at the end of the run, after the build: now it is refused first, with exit 2."""
    frag = os.fsencode(str(project)) + b"/caf\xe9.config"
    with open(frag, "wb") as handle:
        handle.write(b"CONFIG_NR_CPUS=2\n")
    code = cli.main(["run", "--job", str(project / "job.yaml"), "--variant", "baseline",
                     "--kconfig", os.fsdecode(frag)])
    assert code == 2
    assert "caf\\xe9.config: the path is not valid UTF-8" in _said(capsys)
    assert not fake_boot.calls


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_series_import_timeout_must_be_finite(tmp_path, value):
    with pytest.raises(SystemExit) as exc:
        cli.main(["series", "import", "x.mbox", "-o", str(tmp_path / "o"), "--timeout", value])
    assert exc.value.code == 2


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_bench_timeout_must_be_finite(tmp_path, value, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--out", str(tmp_path / "o"), "--timeout", value])
    assert exc.value.code == 2
    assert "--timeout" in _said(capsys)


def test_series_import_without_git_is_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    assert cli.main(["series", "import", "x.mbox", "-o", str(tmp_path / "o")]) == 2
    assert "git is not in PATH" in _said(capsys)


def test_bisect_step_exits_128_for_the_issues_own_examples(tmp_path, readonly_dir,
                                                           monkeypatch, capsys):
    """Row 9 with the issue's examples, not a mocked stepper: a fragment whose name is not
    UTF-8, and a read-only --out. Each is the pipeline's problem, never a verdict (1 = bad)."""
    from conftest import git, write_fake_kernel
    repo = tmp_path / "linux"
    write_fake_kernel(repo, gitignore=False)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline")
    tests = tmp_path / "gt"
    tests.mkdir()
    (tests / "test_a.py").write_text("def test_a():\n    pass\n")
    frag = os.fsencode(str(tmp_path)) + b"/caf\xe9.config"
    with open(frag, "wb") as handle:
        handle.write(b"CONFIG_NR_CPUS=2\n")
    monkeypatch.chdir(tmp_path)
    step = ["bisect-step", "--tree", str(repo), "--no-series", "--test", str(tests),
            "--cache-dir", str(tmp_path / "cache")]
    assert cli.main([*step, "--kconfig", os.fsdecode(frag)]) == 128
    assert "not valid UTF-8" in _said(capsys)
    assert cli.main([*step, "--out", str(readonly_dir / "o")]) == 128
    assert "Read-only file system" in _said(capsys)


def test_plain_http_tree_from_the_job_file_alone_is_refused(project, fake_boot,  # noqa: F811
                                                            capsys):
    """Row 1's opt-in also when the URL comes only from the job file (no --tree), through
    the command line: exit 2 before any download."""
    job = project / "job.yaml"
    job.write_text("\n".join(line for line in job.read_text().splitlines()
                             if not line.startswith("tree:"))
                   + "\ntree: http://127.0.0.1:9/linux.tar.xz\n")
    assert cli.main(["run", "--job", str(job)]) == 2
    assert "--insecure-http" in _said(capsys)
    assert not fake_boot.calls and not (project / "cache" / "downloads").exists()


def test_refused_run_leaves_no_previous_verdict(project, fake_boot, capsys):  # noqa: F811
    """A run that stops on bad input must not leave the last run's junit.xml and summary.json
    in --out, where CI would read them as this run's result."""
    job = str(project / "job.yaml")
    out = project / "out"
    assert cli.main(["run", "--job", job, "--variant", "patched"]) == 0
    assert (out / "junit.xml").is_file() and (out / "summary.json").is_file()
    assert cli.main(["run", "--job", job, "--kconfig", "missing.config"]) == 2
    assert not (out / "junit.xml").exists() and not (out / "summary.json").exists()
    assert cli.main(["run", "--job", job, "--variant", "patched"]) == 0
    (project / "bad.yaml").write_text("tree: [\n")
    assert cli.main(["run", "--job", str(project / "bad.yaml"), "--out", str(out)]) == 2
    assert not (out / "junit.xml").exists() and not (out / "summary.json").exists()
    assert "bad.yaml" in _said(capsys)


def _with_root(folder: Path, root: str) -> str:
    job = folder / "job.yaml"
    text = job.read_text().replace("timeouts:", f"qemu: {{root: {root}}}\ntimeouts:")
    job.write_text(text)
    return str(job)


def test_guest_root_must_hold_what_the_guest_runs(project, fake_boot, capsys):  # noqa: F811
    """qemu.root narrows what the guest sees of the host; a folder that lacks the interpreter,
    the init or the tests is refused before any work, naming the key and the missing path."""
    assert cli.main(["run", "--job", _with_root(project, "nowhere")]) == 2
    assert "qemu.root: folder 'nowhere' does not exist" in _said(capsys)
    root = project / "guestroot"
    root.mkdir()
    job = _with_root(project, "guestroot")
    assert cli.main(["run", "--job", job]) == 2
    said = _said(capsys)
    assert f"qemu.root {root}: the guest would not find " in said and "mount --bind" in said
    assert not fake_boot.calls
    guest_dir = Path(cli.__file__).resolve().parent / "guest"
    for path in {Path(sys.executable), Path(sys.executable).resolve(), guest_dir,
                 project / "guest-tests"}:
        (root / path.relative_to("/")).mkdir(parents=True, exist_ok=True)
    assert cli.main(["run", "--job", job, "--variant", "patched"]) == 0
    assert [call[3].root for call in fake_boot.calls] == [str(root)]


def test_fragment_with_latin1_bytes_is_bad_input(project, fake_boot, capsys):  # noqa: F811
    (project / "latin1.config").write_bytes(b"# caf\xe9\nCONFIG_64BIT=y\n")
    code = cli.main(["run", "--job", str(project / "job.yaml"), "--kconfig",
                     str(project / "latin1.config"), "--variant", "patched"])
    assert code == 2
    assert "latin1.config: not UTF-8 (byte 0xe9 at offset 5)" in _said(capsys)
