import os
import tarfile
from pathlib import Path

import pytest
from conftest import add_member, git, make_tarball, snapshot, write_fake_kernel

from pipeline import tree as T
from pipeline.cache import Cache
from pipeline.errors import BadInput, StageFailed


def bad_tarball(tmp_path: Path, *members: dict) -> Path:
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        add_member(tar, "linux/Makefile", b"VERSION = 6\n")
        for member in members:
            add_member(tar, **member)
    return path


@pytest.mark.parametrize("member, words", [
    ({"name": "/etc/evil"}, "absolute path"),
    ({"name": "linux/../../evil"}, "contains '..'"),
    ({"name": "linux/link", "type": tarfile.SYMTYPE, "linkname": "../../etc/passwd"},
     "points outside"),
    ({"name": "linux/link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
     "points outside"),
    ({"name": "linux/hard", "type": tarfile.LNKTYPE, "linkname": "../outside"},
     "points outside"),
    ({"name": "linux/null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3},
     "device"),
    ({"name": "linux/fifo", "type": tarfile.FIFOTYPE}, "device or fifo"),
])
def test_safe_extract_refuses_escaping_members(tmp_path, member, words):
    """Our own writer refuses, with or without PEP 706's filter (Debian 12 has 3.11.2; the
    same cases under /usr/bin/python3 are in test_safetar.py)."""
    path = bad_tarball(tmp_path, member)
    with pytest.raises(BadInput, match=words):
        T.safe_extract(path, tmp_path / "dest", print)
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_safe_extract_allows_inner_symlink(tmp_path):
    path = bad_tarball(tmp_path, {"name": "linux/inc", "type": tarfile.SYMTYPE,
                                  "linkname": "../linux/Makefile"})
    assert T.safe_extract(path, tmp_path / "dest", print) == 2


def test_truncated_tarball(tmp_path, fake_kernel_tarball):
    data = fake_kernel_tarball.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match="corrupt or truncated"):
        T.safe_extract(cut, tmp_path / "dest", print)


def test_tree_from_tarball_commits_everything_despite_debian_gitignore(tmp_path,
                                                                        fake_kernel_tarball):
    cache = Cache(tmp_path / "cache")
    lines: list[str] = []
    tree = T.prepare_tree(str(fake_kernel_tarball), cache, lines.append)
    assert tree.version == "6.1.99"
    files = set(git(tree.repo, "ls-files").split())
    assert {"Makefile", "Kconfig", "kernel/cgroup.c", ".gitignore"} <= files
    message = git(tree.repo, "log", "-1", "--format=%B")
    assert "force" in message and "/*" in message
    assert git(tree.repo, "tag").split() == ["baseline"]
    assert git(tree.repo, "rev-parse", "baseline^{commit}").strip() == tree.commit
    assert git(tree.repo, "rev-parse", "HEAD").strip() == tree.commit
    assert git(tree.repo, "status", "--porcelain") == ""
    assert git(tree.repo, "config", "gc.auto").strip() == "0"
    assert not list((tmp_path / "cache" / "trees").glob(".tmp-*"))
    # second time: reused, not extracted again
    lines.clear()
    again = T.prepare_tree(str(fake_kernel_tarball), cache, lines.append)
    assert again == tree and any("cached" in line for line in lines)


def test_half_done_entry_is_not_reused(tmp_path, fake_kernel_tarball):
    cache = Cache(tmp_path / "cache")
    tree = T.prepare_tree(str(fake_kernel_tarball), cache, print)
    (tree.repo / ".git" / T.MARKER).unlink()         # as if killed before publishing
    (tree.repo / "Makefile").write_text("garbage")
    again = T.prepare_tree(str(fake_kernel_tarball), cache, print)
    assert (again.checkout / "Makefile").read_text().startswith("VERSION = 6")


def test_not_a_kernel_tree_leaves_nothing(tmp_path):
    (tmp_path / "p" / "top").mkdir(parents=True)
    (tmp_path / "p" / "top" / "README").write_text("hello")
    tarball = make_tarball(tmp_path / "p", "top", tmp_path / "notkernel.tar.gz")
    cache = Cache(tmp_path / "cache")
    with pytest.raises(BadInput, match="not a kernel source tree"):
        T.prepare_tree(str(tarball), cache, print)
    assert list((tmp_path / "cache" / "trees").iterdir()) == []


def test_debian_missing_says_apt_get(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "debian_tarball", lambda v: tmp_path / f"linux-source-{v}.tar.xz")
    with pytest.raises(BadInput, match="apt-get install linux-source-6.1"):
        T.prepare_tree("debian:6.1", Cache(tmp_path / "c"), print)


def test_git_checkout_tree_is_only_read(tmp_path, user_repo):
    before = snapshot(user_repo)
    cache = Cache(tmp_path / "cache")
    tree = T.prepare_tree(f"{user_repo}@v1", cache, print)
    assert tree.version == "6.1.99"
    assert (tree.checkout / "kernel" / "fork.c").read_text() == "int fork;\n"
    head = T.prepare_tree(str(user_repo), cache, print)
    assert (head.checkout / "kernel" / "fork.c").read_text() == "int fork = 2;\n"
    assert head.repo == tree.repo and head.checkout != tree.checkout
    assert snapshot(user_repo) == before
    assert not str(tree.checkout).startswith(str(user_repo))


def test_git_checkout_bad_rev(tmp_path, user_repo):
    with pytest.raises(BadInput, match="no commit 'nope'"):
        T.prepare_tree(f"{user_repo}@nope", Cache(tmp_path / "c"), print)


def test_read_version(tmp_path):
    write_fake_kernel(tmp_path)
    assert T.read_version(tmp_path) == "6.1.99"
    (tmp_path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 0\n"
                                       "EXTRAVERSION = -rc3\n")
    assert T.read_version(tmp_path) == "6.12.0-rc3"
    assert T.version_tuple("6.12.0-rc3") == (6, 12, 0)
    os.remove(tmp_path / "Kconfig")
    with pytest.raises(BadInput, match="not a kernel source tree"):
        T.read_version(tmp_path)


@pytest.fixture
def http_server(tmp_path):
    import functools
    import http.server
    import threading
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_tree_with_sha256(tmp_path, fake_kernel_tarball, http_server):
    root, base = http_server
    (root / "linux.tar.gz").write_bytes(fake_kernel_tarball.read_bytes())
    sha = T.sha256_file(fake_kernel_tarball)
    cache = Cache(tmp_path / "cache")
    tree = T.prepare_tree(f"{base}/linux.tar.gz", cache, print, sha256=sha)
    assert tree.version == "6.1.99"
    with pytest.raises(BadInput, match="sha256 mismatch"):
        T.prepare_tree(f"{base}/linux.tar.gz", Cache(tmp_path / "c2"), print, sha256="0" * 64)
    assert not [p for p in (tmp_path / "c2" / "downloads").iterdir()]  # nothing left to reuse
    with pytest.raises(BadInput, match="HTTP 404"):
        T.prepare_tree(f"{base}/nope.tar.gz", cache, print)


def test_disk_full_while_extracting_leaves_no_entry(tmp_path, small_disk):
    parent = tmp_path / "srcparent"
    src = write_fake_kernel(parent / "linux-big-6.1")
    (src / "big.bin").write_bytes(os.urandom(4 << 20))   # does not fit in 2 MiB
    tarball = make_tarball(parent, "linux-big-6.1", tmp_path / "linux-big-6.1.tar.gz")
    cache = Cache(small_disk / "cache")
    with pytest.raises(StageFailed, match="disk full while extracting"):
        T.prepare_tree(str(tarball), cache, print)
    assert list((small_disk / "cache" / "trees").iterdir()) == []


def test_damaged_cache_entry_is_redone(tmp_path, fake_kernel_tarball):
    """Issue 13: a published entry whose files went missing is extracted again."""
    cache = Cache(tmp_path / "cache")
    tree = T.prepare_tree(str(fake_kernel_tarball), cache, print)
    os.remove(tree.checkout / "Makefile")
    lines: list[str] = []
    again = T.prepare_tree(str(fake_kernel_tarball), cache, lines.append)
    assert (again.checkout / "Makefile").is_file()
    assert any("incomplete or damaged" in line for line in lines)


def test_deleted_git_checkout_is_never_tree_ok(tmp_path, user_repo):
    """Issue 13: the cache's checkout of a commit was deleted: it is checked out again."""
    import shutil
    cache = Cache(tmp_path / "cache")
    tree = T.prepare_tree(f"{user_repo}@v1", cache, print)
    shutil.rmtree(tree.checkout)
    again = T.prepare_tree(f"{user_repo}@v1", cache, print)
    assert (again.checkout / "kernel" / "fork.c").read_text() == "int fork;\n"
    (again.checkout / "Makefile").unlink()
    third = T.prepare_tree(f"{user_repo}@v1", cache, print)
    assert (third.checkout / "Makefile").is_file()
