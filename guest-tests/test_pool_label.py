"""A served cgroup's SELinux label is the one a normal mkdir gets at that moment: computed
for the mkdir's caller (its domain, its fscreate context) and the name it asked for, under
the parent's label at mkdir time, on the directory and on every file in it.

The kernel has SELinux built in, permissive, with no policy (kconfigs/selinux.config): it
labels nothing until this module loads `pool-label-policy.conf` (compiled here with the
host's checkpolicy). Policy types tell the cases apart: a named type transition for the
child name "named", a transition for a second domain, an fscreate context. Every test
compares a pool parent P with a control parent Q that has no pool, after the same writes,
and checks that P's child was served from the pool (told by the inode, see cgpool).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator

import pytest
from cgpool import Hierarchy, errname, in_child

SELINUXFS = "/sys/fs/selinux"
POLICY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pool-label-policy.conf")
XATTR = "security.selinux"
LABELLED = ("", "cgroup.procs", "tasks", "notify_on_release")  # the directory, some files


def ctx(type_: str, role: str = "object_r") -> str:
    return f"user_u:{role}:{type_}"


PARENT = ctx("pooltest_parent_t")


@pytest.fixture(scope="module")
def selinux() -> Iterator[None]:
    """Mount selinuxfs if the guest's init did not, and load the test policy (once per
    boot; loading it again replaces it with itself)."""
    if not os.path.isdir(SELINUXFS):  # the kernel makes the mount point when SELinux is in
        pytest.skip("kernel without SELinux (the job's kconfigs/selinux.config adds it)")
    mounted = False
    if not os.path.exists(os.path.join(SELINUXFS, "load")):
        done = subprocess.run(["mount", "-t", "selinuxfs", "selinuxfs", SELINUXFS],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"mount -t selinuxfs on {SELINUXFS}: {done.stderr}"
        mounted = True
    with open(os.path.join(SELINUXFS, "enforce")) as f:
        if f.read().strip() != "0":
            pytest.skip("SELinux is enforcing: the test policy is loaded only when permissive")
    checkpolicy = shutil.which("checkpolicy")
    if checkpolicy is None:
        pytest.fail("checkpolicy is not installed on the host (ci/setup.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "policy")
        done = subprocess.run([checkpolicy, "-U", "allow", "-o", binary, POLICY],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"checkpolicy {POLICY}: {done.stdout}{done.stderr}"
        with open(binary, "rb") as src, open(os.path.join(SELINUXFS, "load"), "wb") as dst:
            dst.write(src.read())
    yield
    if mounted:
        subprocess.run(["umount", SELINUXFS], capture_output=True, timeout=60, check=False)


def label(path: str) -> str:
    """The SELinux label of `path`, "(none)" if it has none (ENODATA)."""
    try:
        return os.getxattr(path, XATTR).rstrip(b"\0").decode()
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return "(none)"
        raise


def labels(path: str) -> dict[str, str]:
    """The labels of a cgroup directory and some of its files."""
    return {name or ".": label(os.path.join(path, name)) for name in LABELLED}


def set_label(path: str, context: str) -> None:
    os.setxattr(path, XATTR, context.encode())
    assert label(path) == context, f"{path}: labelled {context}, reads {label(path)}"


def in_context(attr: str, context: str, func: Callable[[], int], timeout: float = 60.0) -> int:
    """Run `func` in a child process that first writes `context` to its
    /proc/thread-self/attr/`attr` ("current": another domain, "fscreate": the label of
    what it creates); returns what `func` returned, 255 if it raised."""
    def enter() -> None:
        with open(f"/proc/thread-self/attr/{attr}", "w") as f:
            f.write(context)

    return in_child(enter, func, f"in {attr} {context}", timeout)


def _mkdir(path: str) -> int:
    try:
        os.mkdir(path)
    except OSError as exc:
        return exc.errno
    return 0


def _pair(pool: Hierarchy, label_before_fill: bool = True) -> int:
    """Make P (pool of 1, two members) and Q (no pool), both labelled PARENT before or
    after P's fill; return a probe inode made after the fill."""
    for parent in ("P", "Q"):
        pool.mkdir(parent)
        if label_before_fill:
            set_label(pool.path(parent), PARENT)
    pool.set_pool("P", 1)
    if not label_before_fill:
        for parent in ("P", "Q"):
            set_label(pool.path(parent), PARENT)
    return pool.probe()


def _compare(pool: Hierarchy, name: str, probe: int, want: str) -> None:
    got = {parent: labels(pool.path(parent, name)) for parent in ("P", "Q")}
    assert os.stat(pool.path("P", name)).st_ino < probe, f"P/{name} was not served from the pool"
    expected = {k: want for k in got["Q"]}
    assert got["Q"] == expected, f"the control Q/{name} is not labelled {want}: {got['Q']}"
    assert got["P"] == expected, f"served P/{name}: {got['P']}, a normal mkdir gives {want}"


def test_label_follows_the_requested_name(selinux, pool):
    probe = _pair(pool)
    for parent in ("P", "Q"):
        pool.mkdir(f"{parent}/named")               # type_transition ... "named"
    _compare(pool, "named", probe, ctx("pooltest_named_t"))
    for parent in ("P", "Q"):
        pool.mkdir(f"{parent}/other")               # no rule: the parent's type
    _compare(pool, "other", probe, PARENT)


def test_label_follows_the_callers_domain(selinux, pool):
    probe = _pair(pool)
    for parent in ("P", "Q"):
        path = pool.path(parent, "c")
        code = in_context("current", ctx("pooltest_domain_t", "base_r"),
                          lambda path=path: _mkdir(path))
        assert code == 0, f"mkdir {parent}/c in pooltest_domain_t: {errname(code)}"
    _compare(pool, "c", probe, ctx("pooltest_bydomain_t"))


def test_label_follows_the_callers_fscreate(selinux, pool):
    probe = _pair(pool)
    want = ctx("pooltest_fscreate_t")
    for parent in ("P", "Q"):
        path = pool.path(parent, "c")
        code = in_context("fscreate", want, lambda path=path: _mkdir(path))
        assert code == 0, f"mkdir {parent}/c with fscreate {want}: {errname(code)}"
    _compare(pool, "c", probe, want)


def test_label_follows_a_parent_labelled_after_the_fill(selinux, pool):
    probe = _pair(pool, label_before_fill=False)
    for parent in ("P", "Q"):
        pool.mkdir(f"{parent}/c")
    _compare(pool, "c", probe, PARENT)
