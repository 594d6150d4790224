"""Hostile and cut tarballs, extracted on this interpreter and on Debian 12's /usr/bin/python3.

Debian 12's system Python (3.11.2, what ci/setup.sh builds the venv from) has no tarfile data
filter, so every attack runs twice: in this process through pipeline.tree.safe_extract, and in
a subprocess of /usr/bin/python3 through pipeline.safetar (pure standard library, so no venv
is needed there). The second run is skipped only on a machine without /usr/bin/python3.
"""

from __future__ import annotations

import io
import lzma
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import add_member

from pipeline import tree as T
from pipeline.errors import BadInput

PROJECT = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = Path("/usr/bin/python3")
_CHILD = """\
import sys
from pathlib import Path
from pipeline import safetar
try:
    n = safetar.extract(Path(sys.argv[1]), Path(sys.argv[2]), lambda m: None)
    print("ok", n)
except (safetar.UnsafeArchive, safetar.BrokenArchive) as exc:
    print("refused", exc)
"""


def _extract_here(tarball: Path, dest: Path) -> str:
    try:
        return f"ok {T.safe_extract(tarball, dest, lambda m: None)}"
    except BadInput as exc:
        return f"refused {exc.message}"


def _extract_debian(tarball: Path, dest: Path) -> str:
    done = subprocess.run([str(DEBIAN_PYTHON), "-s", "-c", _CHILD, str(tarball), str(dest)],
                          cwd=PROJECT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(params=["this-python", "debian-python"])
def extract(request):
    """extract(tarball, dest) -> 'ok N' or 'refused <why>' on either interpreter."""
    if request.param == "debian-python":
        if not DEBIAN_PYTHON.exists():
            pytest.skip("no /usr/bin/python3 on this machine")
        return _extract_debian
    return _extract_here


def test_debian_python_is_really_exercised():
    """On a Debian 12 machine the second interpreter is the one without tarfile filters."""
    if not DEBIAN_PYTHON.exists():
        pytest.skip("no /usr/bin/python3 on this machine")
    code = "import sys; print(sys.version_info >= (3, 11))"
    out = subprocess.run([str(DEBIAN_PYTHON), "-c", code], capture_output=True, text=True,
                         timeout=30, check=True)
    assert out.stdout.strip() == "True", "the pipeline needs Python >= 3.11"


def _tar(path: Path, *members: dict) -> Path:
    with tarfile.open(path, "w") as tar:
        add_member(tar, "linux/Makefile", b"VERSION = 6\n")
        for member in members:
            add_member(tar, **member)
    return path


def _sym(name: str, target: str) -> dict:
    return {"name": name, "type": tarfile.SYMTYPE, "linkname": target}


@pytest.fixture
def victim(tmp_path):
    """A file outside the destination that no archive may touch."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious\n")
    return outside


def _untouched(victim: Path) -> None:
    assert (victim / "victim").read_text() == "precious\n"
    assert sorted(p.name for p in victim.iterdir()) == ["victim"]


def test_symlink_chain_cannot_write_outside(tmp_path, victim, extract, monkeypatch):
    # linux/d -> . and linux/d/e -> ../.. look inside to a lexical check, but d/e is
    # linux/e -> ../.., the folder above the destination.
    monkeypatch.setattr(T, "HAS_DATA_FILTER", False, raising=False)  # the old 3.11.2 path
    tarball = _tar(tmp_path / "chain.tar", _sym("linux/d", "."), _sym("linux/d/e", "../.."),
                   {"name": "linux/d/e/outside/evil", "data": b"owned\n"},
                   {"name": "linux/d/e/outside/victim", "data": b"owned\n"})
    got = extract(tarball, tmp_path / "dest")
    assert got.startswith("refused") and "symlink" in got, got
    _untouched(victim)


def test_hard_link_through_a_chain_cannot_overwrite_outside(tmp_path, victim, extract,
                                                            monkeypatch):
    monkeypatch.setattr(T, "HAS_DATA_FILTER", False, raising=False)
    tarball = _tar(tmp_path / "hard.tar", _sym("linux/d", "."), _sym("linux/d/e", "../.."),
                   {"name": "linux/h", "type": tarfile.LNKTYPE,
                    "linkname": "linux/d/e/outside/victim"},
                   {"name": "linux/h", "data": b"owned\n"})
    got = extract(tarball, tmp_path / "dest")
    assert got.startswith("refused"), got
    _untouched(victim)


@pytest.mark.parametrize("target", ["linux/inc", "linux/nowhere", "/etc/passwd"])
def test_hard_link_must_name_a_file_of_the_archive(tmp_path, extract, target):
    tarball = _tar(tmp_path / "hard.tar", _sym("linux/inc", "Makefile"),
                   {"name": "linux/h", "type": tarfile.LNKTYPE, "linkname": target})
    got = extract(tarball, tmp_path / "dest")
    assert got.startswith("refused") and "hard link" in got, got


def test_link_made_bad_by_a_later_member_is_refused(tmp_path, extract):
    # linux/x -> y/../.. is inside while y does not exist; linux/y -> . makes it point above
    # the destination.
    tarball = _tar(tmp_path / "late.tar", _sym("linux/x", "y/../.."), _sym("linux/y", "."))
    got = extract(tarball, tmp_path / "dest")
    assert got.startswith("refused") and "linux/x" in got, got


def test_setuid_and_setgid_are_dropped(tmp_path, extract, monkeypatch):
    monkeypatch.setattr(T, "HAS_DATA_FILTER", False, raising=False)
    tarball = _tar(tmp_path / "suid.tar", {"name": "linux/suid", "mode": 0o6755},
                   {"name": "linux/sticky", "mode": 0o1777})
    got = extract(tarball, tmp_path / "dest")
    assert got == "ok 3", got
    for name in ("suid", "sticky"):
        mode = os.stat(tmp_path / "dest" / "linux" / name).st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), oct(mode)
        assert not mode & 0o022, oct(mode)


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_devices_are_refused(tmp_path, extract, kind):
    tarball = _tar(tmp_path / "dev.tar", {"name": "linux/dev", "type": kind, "devmajor": 1,
                                          "devminor": 3})
    got = extract(tarball, tmp_path / "dest")
    assert got.startswith("refused") and "device" in got, got
    assert not (tmp_path / "dest" / "linux" / "dev").exists()


def test_inner_links_and_tree_are_kept(tmp_path, extract):
    tarball = _tar(tmp_path / "good.tar", _sym("linux/inc", "../linux/Makefile"),
                   {"name": "linux/sub/hard", "type": tarfile.LNKTYPE,
                    "linkname": "linux/Makefile"},
                   {"name": "linux/sub/x.c", "data": b"int x;\n", "mode": 0o644})
    assert extract(tarball, tmp_path / "dest") == "ok 4"
    root = tmp_path / "dest" / "linux"
    assert (root / "inc").read_text() == "VERSION = 6\n"
    assert os.stat(root / "sub" / "hard").st_ino == os.stat(root / "Makefile").st_ino


# --- truncated archives -----------------------------------------------------------------------

def _many_files_xz(path: Path, count: int = 150) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add_member(tar, "linux/Makefile", b"VERSION = 6\n")
        for i in range(count):
            add_member(tar, f"linux/dir{i % 7}/file{i}.c", os.urandom(200 + 37 * i % 900))
    data = lzma.compress(buf.getvalue())
    path.write_bytes(data)
    return data


def test_every_cut_of_a_tar_xz_is_refused(tmp_path, extract):
    data = _many_files_xz(tmp_path / "full.tar.xz")
    assert extract(tmp_path / "full.tar.xz", tmp_path / "full") == "ok 151"
    for n, frac in enumerate((0.1, 0.3, 0.5, 0.7, 0.9, 0.99)):
        cut = tmp_path / f"cut{n}.tar.xz"
        cut.write_bytes(data[: int(len(data) * frac)])
        got = extract(cut, tmp_path / f"dest{n}")
        assert got.startswith("refused"), (frac, got)
    cut = tmp_path / "last.tar.xz"          # only the xz index and footer missing
    cut.write_bytes(data[:-12])
    assert extract(cut, tmp_path / "last").startswith("refused")


def test_plain_tar_cut_at_a_member_boundary_is_refused(tmp_path, extract):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add_member(tar, "linux/Makefile", b"VERSION = 6\n")
        add_member(tar, "linux/a.c", b"a" * 512)
    data = buf.getvalue()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: 512 * 4])        # two complete members, no end marker
    got = extract(cut, tmp_path / "dest")
    assert got.startswith("refused") and "end marker" in got, got


def test_gzip_with_a_bad_checksum_is_refused(tmp_path, extract):
    import gzip
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add_member(tar, "linux/Makefile", b"VERSION = 6\n")
    data = bytearray(gzip.compress(buf.getvalue()))
    data[-8] ^= 0xFF                       # CRC32 of the trailer
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(data))
    assert extract(bad, tmp_path / "dest").startswith("refused")


def test_this_interpreter_is_what_the_venv_runs():
    assert Path(sys.executable).exists()
