"""Shared helpers: a fake kernel tree (a Makefile that acts like Kbuild for the targets the
pipeline uses), tarballs of it, and small git repositories."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

# Guest fault modules (hang, panic, WARN) are run by the boot tests inside a (fake) guest;
# the host's pytest must not collect them.
collect_ignore = ["guest-faults"]

FAKE_MAKEFILE = """\
VERSION = 6
PATCHLEVEL = 1
SUBLEVEL = 99
EXTRAVERSION =
NAME = Fake Kernel
O ?= .

tinyconfig:
\tmkdir -p $(O)
\tprintf '# CONFIG_64BIT is not set\\n# CONFIG_INET is not set\\nCONFIG_NR_CPUS=1\\n' > $(O)/.config

olddefconfig:
\tpython3 $(CURDIR)/scripts/fakeconf.py $(O)/.config

bzImage:
\tpython3 $(CURDIR)/scripts/fakebuild.py $(CURDIR) $(O)
"""

# Plays Kconfig: 9P_FS depends on INET (as on 6.1).
FAKE_CONF = """\
import sys
path = sys.argv[1]
lines = open(path).read().splitlines()
inet = 'CONFIG_INET=y' in lines
out = [l for l in lines if inet or l != 'CONFIG_9P_FS=y']
open(path, 'w').write('\\n'.join(out) + '\\n')
"""

# Plays the compiler: each .c file is "compiled"; a line with #error fails like gcc would.
FAKE_BUILD = """\
import os, pathlib, sys
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
if os.environ.get('FAKE_BUILD_PIDFILE'):  # lets a test interrupt a "long" build
    pathlib.Path(os.environ['FAKE_BUILD_PIDFILE']).write_text(str(os.getpid()))
    import time
    time.sleep(float(os.environ.get('FAKE_BUILD_SLEEP', '0')))
failed = False
for c in sorted(src.rglob('*.c')):
    rel = c.relative_to(src)
    print(f'  CC      {rel.with_suffix(".o")}', flush=True)
    for n, line in enumerate(c.read_text().splitlines(), 1):
        if line.startswith('#error'):
            print(f'{rel}:{n}:2: error: {line[7:]}')
            failed = True
        elif line.startswith('#warning'):
            print(f'{rel}:{n}:2: warning: {line[9:]} [-Wcpp]')
if failed:
    print('make[2]: *** [scripts/Makefile.build:250: x.o] Error 1')
    sys.exit(2)
image = out / 'arch/x86/boot/bzImage'
image.parent.mkdir(parents=True, exist_ok=True)
if os.environ.get('FAKE_BUILD_FILL'):  # a big object file: fills a small disk
    (out / 'vmlinux.o').write_bytes(b'x' * int(os.environ['FAKE_BUILD_FILL']))
image.write_bytes(b'fake bzImage ' + os.urandom(8))
print('Kernel: arch/x86/boot/bzImage is ready')
"""

DEBIAN_GITIGNORE = """\
# Normal rules
*.o
# Debian packaging: ignore everything at the top level, since it isn't
# included in our repository
#
/*
!/debian/
"""


def write_fake_kernel(root: Path, gitignore: bool = True) -> Path:
    (root / "scripts").mkdir(parents=True, exist_ok=True)
    (root / "kernel").mkdir(exist_ok=True)
    (root / "Makefile").write_text(FAKE_MAKEFILE)
    (root / "Kconfig").write_text("mainmenu \"fake\"\n")
    (root / "scripts" / "fakeconf.py").write_text(FAKE_CONF)
    (root / "scripts" / "fakebuild.py").write_text(FAKE_BUILD)
    (root / "kernel" / "cgroup.c").write_text(
        "\n".join(f"int line{i};" for i in range(1, 41)) + "\n")
    (root / "kernel" / "fork.c").write_text("int fork;\n")
    if gitignore:
        (root / ".gitignore").write_text(DEBIAN_GITIGNORE)
    return root


def make_tarball(src_parent: Path, top: str, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src_parent / top, arcname=top)
    return dest


def add_member(tar: tarfile.TarFile, name: str, data: bytes = b"x", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if attrs.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.size else None)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
        capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def fake_kernel_tarball(tmp_path: Path) -> Path:
    parent = tmp_path / "srcparent"
    write_fake_kernel(parent / "linux-fake-6.1")
    return make_tarball(parent, "linux-fake-6.1", tmp_path / "linux-fake-6.1.tar.gz")


def logs() -> tuple[list[str], object]:
    lines: list[str] = []
    return lines, lines.append


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 2 MiB file system (a tmpfs; mounting needs root, as CI and the pipeline's
    machines have) for disk-full tests."""
    import os
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the disk-full test needs root")
    where = tmp_path / "small-disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], check=True,
                   timeout=30)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=30)


def snapshot(repo: Path) -> dict:
    """Everything a user could notice about their checkout."""
    gitdir = repo / ".git"
    return {
        "head": git(repo, "rev-parse", "HEAD"),
        "symbolic": git(repo, "symbolic-ref", "HEAD"),
        "refs": git(repo, "for-each-ref"),
        "stash": git(repo, "stash", "list"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "index": (gitdir / "index").read_bytes(),
        "worktrees": git(repo, "worktree", "list", "--porcelain"),
        "files": {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*")
                  if p.is_file() and ".git" not in p.relative_to(repo).parts},
        "gitfiles": sorted(str(p.relative_to(gitdir)) for p in gitdir.rglob("*")),
    }


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    repo = write_fake_kernel(tmp_path / "user", gitignore=False)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v1")
    git(repo, "tag", "v1")
    (repo / "kernel" / "fork.c").write_text("int fork = 2;\n")
    git(repo, "commit", "-q", "-am", "v2")
    (repo / "kernel" / "fork.c").write_text("int fork = 3; /* stashed */\n")
    git(repo, "stash", "-q")
    (repo / "kernel" / "fork.c").write_text("int fork = 4; /* uncommitted */\n")
    (repo / "kernel" / "staged.c").write_text("int staged;\n")
    git(repo, "add", "kernel/staged.c")
    (repo / "untracked.txt").write_text("mine")
    return repo
