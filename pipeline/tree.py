"""Kernel source trees: a tree SPEC becomes a cached git repository with one baseline commit.

SPECs: `debian:6.1` (Debian's linux-source tarball), a tarball path (.tar.xz/.tar.gz/.tgz), an
http(s) URL of a tarball, a local git checkout (`PATH` or `PATH@REV`).

Tarballs are extracted once per tree (safely: no member may leave the folder) into a temporary
folder beside the final one, committed, tagged `baseline`, then renamed into place; a folder
that is not in its final place is never reused. A user's git checkout is only read: it is cloned
into the cache with `git clone --shared --no-checkout` and the revision is checked out there.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from . import netfetch, safetar
from .cache import Cache, short_hash
from .errors import BadInput, StageFailed
from .git import git, git_run
from .log import Logger
from .names import slug

MARKER = "pipeline-tree.json"          # in the repo's .git folder: entry complete
GIT_TIMEOUT = 1800                     # seconds, for the one big add/commit/clone step
TARBALL_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar")
BASELINE_MESSAGE = """baseline {version} ({source})

Imported by kernel-pipeline from {source}.
Every file was force-added (git add --force): Debian's linux-source
tarball ships a .gitignore whose top-level rule `/*` ignores everything,
so a plain `git add -A` would add nothing. The .gitignore itself is kept
unchanged.
"""


@dataclass(frozen=True)
class Tree:
    spec: str
    key: str          # cache entry name
    repo: Path        # git repository the pipeline owns: branches and worktrees are made here
    checkout: Path    # baseline sources, never modified (build with O=)
    commit: str       # baseline commit
    version: str      # from the Makefile, e.g. "6.1.192"


# --- kernel version ---------------------------------------------------------------------------

def read_version(src: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL(EXTRAVERSION) from the top Makefile; BadInput if `src` is not
    a kernel tree."""
    makefile = src / "Makefile"
    if not makefile.is_file() or not (src / "Kconfig").is_file():
        raise BadInput(f"{src} is not a kernel source tree (no top-level Makefile and Kconfig)")
    return parse_version(makefile.read_text(errors="replace"), str(makefile))


def parse_version(text: str, where: str) -> str:
    """The version from the text of a top-level kernel Makefile (`where` names it in errors)."""
    head = text[:4000]
    fields: dict[str, str] = {}
    for name in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"):
        match = re.search(rf"^{name}\s*=[ \t]*(\S*)[ \t]*$", head, re.MULTILINE)
        if match:
            fields[name] = match.group(1)
    if not fields.get("VERSION", "").isdigit() or not fields.get("PATCHLEVEL", "").isdigit():
        raise BadInput(f"{where}: no VERSION/PATCHLEVEL lines: not a kernel source tree")
    version = f"{fields['VERSION']}.{fields['PATCHLEVEL']}"
    if fields.get("SUBLEVEL", "").isdigit():
        version += f".{fields['SUBLEVEL']}"
    return version + fields.get("EXTRAVERSION", "")


def version_tuple(version: str) -> tuple[int, ...]:
    """`6.1.192-rc1` -> (6, 1, 192)."""
    parts = []
    for part in re.split(r"[.-]", version):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


# --- safe extraction --------------------------------------------------------------------------

def safe_extract(tarball: Path, dest: Path, log: Logger, progress_every: float = 15.0) -> int:
    """Extract `tarball` into `dest` with pipeline.safetar (the same checks on every Python
    >= 3.11, with or without tarfile's PEP 706 filters). Returns the number of members.
    Unsafe members and corrupt or truncated archives raise BadInput; a full disk raises
    StageFailed. The caller removes `dest` on error."""
    try:
        return safetar.extract(tarball, dest, log, progress_every)
    except safetar.UnsafeArchive as exc:
        raise BadInput(f"{tarball}: {exc}: refused" if "refused" not in str(exc)
                       else f"{tarball}: {exc}") from None
    except safetar.BrokenArchive as exc:
        raise BadInput(f"{tarball}: corrupt or truncated archive ({exc})") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StageFailed(f"disk full while extracting {tarball} into {dest}") from None
        raise


def _source_root(folder: Path) -> Path:
    """The kernel tree inside an extracted folder (tarballs usually have one top folder)."""
    if (folder / "Makefile").is_file():
        return folder
    entries = [p for p in folder.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return folder


# --- tarball trees ----------------------------------------------------------------------------

def _commit_baseline(src: Path, version: str, source: str) -> str:
    """Make `src` a repository with one commit of everything, tagged `baseline`; its id."""
    what = f"committing the baseline of {source}"
    git(src, "init", "--quiet", what=what)
    for key, value in (("user.name", "kernel-pipeline"),
                       ("user.email", "kernel-pipeline@localhost"), ("gc.auto", "0")):
        git(src, "config", key, value, what=what)
    git(src, "add", "--force", "--all", ".", timeout=GIT_TIMEOUT, what=what)
    git(src, "commit", "--quiet", "--no-verify", "-m",
        BASELINE_MESSAGE.format(version=version, source=source), timeout=GIT_TIMEOUT, what=what)
    git(src, "tag", "baseline", what=what)
    return git(src, "rev-parse", "--verify", "HEAD^{commit}", what=what).strip()


def _head(repo: Path) -> str:
    """The commit id checked out in `repo` ('' when it is not a usable git checkout)."""
    if not (repo / ".git").exists():
        return ""
    try:
        done = git_run(repo, "rev-parse", "--verify", "-q", "HEAD", timeout=60)
    except OSError:
        return ""
    return done.output.strip() if done.returncode == 0 else ""


def _entry_ready(path: Path) -> dict[str, Any] | None:
    """The marker of a complete tree entry, or None. Complete means: the marker is there,
    the top-level kernel files are there and HEAD is the recorded baseline commit (a folder
    a user or a crash emptied is redone, not reported as ready)."""
    marker = path / ".git" / MARKER
    if not marker.is_file():
        return None
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not {"commit", "version"} <= info.keys():
        return None
    if not ((path / "Makefile").is_file() and (path / "Kconfig").is_file()):
        return None
    if _head(path) != info["commit"]:
        return None
    return info


def tree_from_tarball(tarball: Path, cache: Cache, log: Logger, key: str, source: str,
                      spec: str) -> Tree:
    """Extract + commit `tarball` once into cache/trees/<key> (under a lock)."""
    trees = cache.dir("trees")
    final = trees / key
    with cache.lock(f"tree-{key}", f"tree {spec}", log):
        info = _entry_ready(final)
        if info is not None:
            log(f"  tree {spec}: cached {final} ({info['version']})")
            return Tree(spec, key, final, final, info["commit"], info["version"])
        if final.exists():
            log(f"  cache entry {final} is incomplete or damaged: extracting again")
        for stale in [final, *trees.glob(f".tmp-{key}-*")]:
            if stale.exists():
                log(f"  removing unfinished cache entry {stale}")
                shutil.rmtree(stale, ignore_errors=True)
        tmp = trees / f".tmp-{key}-{os.getpid()}"
        try:
            start = time.monotonic()
            log(f"  extracting {tarball} (once per tree)")
            count = safe_extract(tarball, tmp / "x", log)
            src = _source_root(tmp / "x")
            version = read_version(src)
            log(f"  extracted {count} files ({time.monotonic() - start:.0f}s), kernel {version}; "
                "committing the baseline (git add --force: Debian's .gitignore ignores /*)")
            commit = _commit_baseline(src, version, source)
            (src / ".git" / MARKER).write_text(json.dumps(
                {"commit": commit, "version": version, "source": source}))
            os.rename(src, final)
            log(f"  tree ready in {time.monotonic() - start:.0f}s: {final}")
        except OSError as exc:
            if exc.errno == 28:
                raise StageFailed(f"disk full while preparing tree {spec} in {trees}") from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return Tree(spec, key, final, final, commit, version)


def _file_key(path: Path) -> str:
    st = path.stat()
    return short_hash(str(path), str(st.st_size), str(st.st_mtime_ns))


def _slug(text: str) -> str:
    return slug(text, "tree", limit=40)


def _strip_suffix(name: str) -> str:
    for suffix in TARBALL_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# --- downloads --------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, cache: Cache, log: Logger, sha256: str | None,
             timeout: float = 3600.0, session: requests.Session | None = None) -> Path:
    """Stream `url` into cache/downloads (checked against `sha256` before it is used); the
    whole download must finish within `timeout` seconds. A finished download is published
    with its own sha256 beside it (`<file>.sha256`): a cached file is reused only when it
    still has that checksum (and the expected one), so a cut or garbled file is fetched again."""
    name = _slug(url.rstrip("/").rsplit("/", 1)[-1])
    dest = cache.dir("downloads") / f"{short_hash(url)}-{name}"
    stamp = dest.with_name(dest.name + ".sha256")
    with cache.lock(f"download-{short_hash(url)}", f"download of {url}", log):
        if dest.is_file():
            have = sha256_file(dest)
            recorded = stamp.read_text().strip() if stamp.is_file() else ""
            if have == recorded and (sha256 is None or have == sha256):
                log(f"  {url}: already downloaded ({dest})")
                return dest
            log(f"  {url}: cached copy is incomplete or has another sha256, downloading again")
            dest.unlink()
            stamp.unlink(missing_ok=True)
        part = dest.with_name(dest.name + ".part")
        start = last = time.monotonic()
        digest = hashlib.sha256()
        try:
            done = total = 0
            with open(part, "wb") as handle:
                for block, total in netfetch.stream(url, deadline=timeout, session=session):
                    handle.write(block)
                    digest.update(block)
                    done += len(block)
                    now = time.monotonic()
                    if now - last >= 15:
                        pct = f" of {total >> 20} MiB ({100 * done // total}%)" if total else ""
                        log(f"  downloading {url}: {done >> 20} MiB{pct}")
                        last = now
            if total and done != total:
                raise StageFailed(f"download {url}: got {done} of {total} bytes")
            got = digest.hexdigest()
            if sha256 is not None and got != sha256:
                raise BadInput(f"download {url}: sha256 mismatch: expected {sha256}, got {got}")
            stamp.write_text(got + "\n")
            os.rename(part, dest)
        except OSError as exc:
            stamp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise StageFailed(f"disk full while downloading {url}") from None
            raise
        finally:
            part.unlink(missing_ok=True)
        log(f"  downloaded {url} ({time.monotonic() - start:.0f}s, sha256 {got})")
        return dest


def forget_download(path: Path) -> None:
    """Remove a downloaded file that turned out to be no usable tarball (never reused)."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)


# --- local git checkouts ----------------------------------------------------------------------

@dataclass(frozen=True)
class UserCheckout:
    """A user's git checkout and one of its commits (found by reading only)."""

    path: Path
    sha: str
    common_dir: Path     # the repository's object store owner (shared by its worktrees)

    @property
    def clone_key(self) -> str:
        """Name of the cache's clone of this repository (and of its lock, `tree-<key>`)."""
        return f"git-{_slug(self.path.name)}-{short_hash(str(self.common_dir))}"


def _repository_at(path: Path) -> Path | None:
    """The common git folder of the repository whose top (work tree or bare repository) is
    `path`, or None: a folder that is only somewhere inside a repository is not one."""
    if not path.is_dir():
        return None
    probe = git_run(path, "rev-parse", "--is-bare-repository", "--show-cdup", "--git-dir",
                    "--git-common-dir", timeout=60)
    lines = probe.output.splitlines()
    if probe.returncode != 0 or len(lines) not in (3, 4):
        return None
    bare, git_dir, common = lines[0], lines[-2], lines[-1]
    top = Path(git_dir) if bare == "true" else path / (lines[1] if len(lines) == 4 else "")
    if (path / top).resolve() != path.resolve():
        return None
    return (path / common).resolve()


def resolve_checkout(path: Path, rev: str, spec: str) -> UserCheckout:
    """The commit `rev` of the user's checkout `path`; BadInput when either is not there."""
    common = _repository_at(path)
    if common is None:
        raise BadInput(f"tree {spec}: {path} is neither a tarball nor a git checkout")
    done = git_run(path, "rev-parse", "--verify", "--quiet", "--end-of-options",
                   f"{rev}^{{commit}}", timeout=60)
    if done.returncode != 0 or not done.output.strip():
        raise BadInput(f"tree {spec}: no commit {rev!r} in {path}")
    return UserCheckout(path, done.output.strip().splitlines()[0], common)


def user_clone(user: UserCheckout, cache: Cache, log: Logger) -> tuple[Path, str]:
    """(path, key) of the cache's clone of the user's repository, made once with
    `git clone --shared --no-checkout`: it borrows the user's objects (so later commits of
    the user are visible in it by their id) and never writes to the user's repository.
    The caller holds the lock `tree-<key>`."""
    key = user.clone_key
    trees = cache.dir("trees")
    clone = trees / key
    if not (clone / ".git" / MARKER).is_file():
        shutil.rmtree(clone, ignore_errors=True)
        log(f"  cloning {user.path} into the cache (--shared --no-checkout, read-only)")
        git(trees, "clone", "--shared", "--no-checkout", "--quiet", str(user.path), str(clone),
            timeout=GIT_TIMEOUT, what=f"cloning {user.path}")
        (clone / ".git" / MARKER).write_text(json.dumps({"source": str(user.path)}))
    return clone, key


def commit_version(repo: Path, sha: str) -> str:
    """The kernel version of commit `sha`, from its top Makefile (read with git show)."""
    done = git_run(repo, "show", f"{sha}:Makefile", timeout=60)
    if done.returncode != 0:
        raise BadInput(f"commit {sha[:12]} in {repo} has no top-level Makefile: "
                       "not a kernel tree")
    return parse_version(done.output, f"{sha[:12]}:Makefile")


def tree_from_git(path: Path, rev: str, cache: Cache, log: Logger, spec: str) -> Tree:
    """Clone the user's checkout into the cache (only reading it) and check out `rev` there."""
    user = resolve_checkout(path, rev, spec)
    sha = user.sha
    with cache.lock(f"tree-{user.clone_key}", f"clone of {path}", log):
        clone, clone_key = user_clone(user, cache, log)
        key = f"{clone_key}-{sha[:12]}"
        checkout = cache.dir("trees") / key
        try:
            done = clone / ".git" / "pipeline-checkouts" / sha
            if done.is_file() and not ((checkout / "Makefile").is_file()
                                       and _head(checkout) == sha):
                log(f"  checkout {checkout} is missing or damaged: checking out again")
                done.unlink()
            if not done.is_file():
                if checkout.exists():
                    log(f"  removing unfinished checkout {checkout}")
                    shutil.rmtree(checkout, ignore_errors=True)
                git(clone, "worktree", "prune", timeout=GIT_TIMEOUT, what="pruning worktrees")
                log(f"  checking out {sha[:12]} in {checkout}")
                git(clone, "worktree", "add", "--detach", "--force", str(checkout), sha,
                    timeout=GIT_TIMEOUT, what=f"checking out {sha[:12]}")
                version = read_version(checkout)
                done.parent.mkdir(exist_ok=True)
                done.write_text(version)
            version = done.read_text().strip()
        except BadInput:
            shutil.rmtree(checkout, ignore_errors=True)
            raise
    log(f"  tree {spec}: {checkout} at {sha[:12]} ({version})")
    return Tree(spec, key, clone, checkout, sha, version)


# --- entry point ------------------------------------------------------------------------------

def debian_tarball(version: str) -> Path:
    return Path(f"/usr/src/linux-source-{version}.tar.xz")


def split_rev(spec: str) -> tuple[Path, str]:
    """`PATH@REV` -> (PATH, REV); a PATH that exists as written (or has no `@`) -> HEAD."""
    path = Path(spec)
    if not path.exists() and "@" in spec:
        head, rev = spec.rsplit("@", 1)
        return Path(head), rev or "HEAD"
    return path, "HEAD"


def prepare_tree(spec: str, cache: Cache, log: Logger, sha256: str | None = None) -> Tree:
    """Turn a normalised tree SPEC (see job.normalize_tree_spec) into a cached Tree."""
    if spec.startswith("debian:"):
        version = spec.split(":", 1)[1]
        tarball = debian_tarball(version)
        if not tarball.is_file():
            raise BadInput(f"tree {spec}: {tarball} is missing; install it with: "
                           f"apt-get install linux-source-{version}")
        key = f"debian-{version}-{_file_key(tarball)}"
        return tree_from_tarball(tarball, cache, log, key, str(tarball), spec)
    if re.match(r"^https?://", spec):
        tarball = download(spec, cache, log, sha256)
        key = f"url-{_slug(_strip_suffix(tarball.name))}-{short_hash(spec, sha256_file(tarball))}"
        try:
            return tree_from_tarball(tarball, cache, log, key, spec, spec)
        except BadInput:
            forget_download(tarball)   # a garbage download is never reused
            raise
    path, rev = split_rev(spec)
    if path.is_file():
        if not path.name.endswith(TARBALL_SUFFIXES):
            raise BadInput(f"tree {spec}: not a tarball (.tar.xz, .tar.gz, .tgz) "
                           "nor a git checkout")
        key = f"tar-{_slug(_strip_suffix(path.name))}-{_file_key(path)}"
        return tree_from_tarball(path, cache, log, key, str(path), spec)
    if path.is_dir():
        return tree_from_git(path, rev, cache, log, spec)
    raise BadInput(f"tree {spec}: does not exist")
