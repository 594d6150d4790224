"""Extract an untrusted tarball without trusting tarfile's extraction code.

Why our own writer: Debian 12's /usr/bin/python3 is 3.11.2, whose tarfile has no PEP 706
`data` filter, and a lexical check of member names is not enough there: a chain of symlinks
(`a -> .`, `a/b -> ..`, ...) or a member written *through* an earlier symlink escapes the
destination, and tarfile.extract() keeps setuid bits and creates device nodes when run as
root. So the archive is only *read* with tarfile; every file, directory and link is created
here, relative to directory file descriptors opened with O_NOFOLLOW, which behaves the same
on every Python >= 3.11:

- a member never passes through a symlink (each parent component is opened with O_NOFOLLOW;
  a symlink there is refused), so nothing is ever written outside the destination;
- a symlink member's target, resolved against the real destination (following the links
  already extracted), must stay inside it; after the last member every symlink is checked
  once more, so a later member cannot turn an earlier link into an escape;
- a hard link must name a regular file extracted earlier from the same archive;
- modes keep only the permission bits (no setuid, setgid, sticky), owners are not restored;
- device nodes, fifos and other special members are refused.

Integrity: the compressed stream is read to its very end (xz/gzip/bzip2 report a missing
end-of-stream marker or a bad checksum there), every member's data must be complete, and the
tar end marker (two zero blocks) must be present. A cut archive is refused instead of
becoming a half tree that looks complete.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import lzma
import os
import stat
import tarfile
import time
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from .log import Logger

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

BLOCK = 512
TAIL_KEEP = 1 << 20          # decompressed bytes kept to check the end marker
COPY_CHUNK = 1 << 20


class UnsafeArchive(Exception):
    """A member that would leave the destination, or a member type that is refused."""


class BrokenArchive(Exception):
    """Corrupt or truncated archive (compression error, short member, no end marker)."""


class _Counting(io.RawIOBase):
    """The decompressed tar stream, counting bytes and keeping the last TAIL_KEEP of them."""

    def __init__(self, inner: IO[bytes] | io.BufferedIOBase) -> None:
        super().__init__()
        self.inner = inner
        self.pos = 0
        self.tail = bytearray()
        self.tail_start = 0     # stream offset of tail[0]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        with memoryview(buffer) as view:    # a bytearray or a bytes memoryview (RawIOBase.read)
            data = self.inner.read(len(view))
            n = len(data)
            view[:n] = data
        self.pos += n
        self.tail += data
        if len(self.tail) > TAIL_KEEP:
            drop = len(self.tail) - TAIL_KEEP
            del self.tail[:drop]
            self.tail_start += drop
        return n

    def since(self, offset: int) -> bytes | None:
        """The bytes read from stream offset `offset` on, or None if no longer kept."""
        if offset < self.tail_start:
            return None
        return bytes(self.tail[offset - self.tail_start:])


def _open_decompressed(raw: IO[bytes]) -> IO[bytes] | io.BufferedIOBase:
    """A reader of the decompressed data (by magic bytes: xz, gzip, bzip2, or plain tar)."""
    head = raw.read(6)
    raw.seek(0)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw)
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    return raw


def _parts(name: str) -> list[str]:
    """The path components of a member name; UnsafeArchive for absolute or `..` names."""
    if name.startswith("/") or "\0" in name:
        raise UnsafeArchive(f"member {name!r} has an absolute path")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"member {name!r} contains '..'")
    return parts


class _Writer:
    """Creates members below `root`, never following a symlink on the way."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        self.symlinks: list[tuple[str, str]] = []    # (member name, target)
        self.files: set[tuple[str, ...]] = set()     # regular files extracted (hard link targets)

    def close(self) -> None:
        os.close(self.root_fd)

    def parent_fd(self, parts: list[str], name: str) -> int:
        """An fd of the folder that holds `parts[-1]`, creating missing folders; every
        component is opened with O_NOFOLLOW, so a symlink on the way is refused."""
        fd = os.dup(self.root_fd)
        try:
            for part in parts[:-1]:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                try:
                    nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafeArchive(f"member {name!r} goes through {part!r}, which is "
                                            "a symlink or not a folder") from None
                    raise
                os.close(fd)
                fd = nxt
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _clear(leaf: str, fd: int, want_dir: bool) -> None:
        """Remove what is at `leaf` before a member replaces it (never following it)."""
        try:
            st = os.stat(leaf, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if want_dir:
                return
            raise UnsafeArchive(f"member {leaf!r} would replace a folder")
        os.unlink(leaf, dir_fd=fd)

    def inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.real_root or real.startswith(self.real_root + os.sep)

    def check_link_target(self, name: str, parts: list[str], target: str) -> None:
        if not target or target.startswith("/") or "\0" in target:
            raise UnsafeArchive(f"symlink {name!r} -> {target!r} points outside: refused")
        where = os.path.join(self.real_root, *parts[:-1], target)
        if not self.inside(where):
            raise UnsafeArchive(f"symlink {name!r} -> {target!r} points outside: refused")

    def directory(self, parts: list[str], name: str) -> None:
        if not parts:
            return
        fd = self.parent_fd(parts, name)
        try:
            self._clear(parts[-1], fd, want_dir=True)
            try:
                os.mkdir(parts[-1], 0o755, dir_fd=fd)
            except FileExistsError:
                pass
        finally:
            os.close(fd)

    def regular(self, parts: list[str], name: str, member: tarfile.TarInfo,
                data: IO[bytes] | None) -> None:
        fd = self.parent_fd(parts, name)
        try:
            self._clear(parts[-1], fd, want_dir=False)
            # Only permission bits; owner may always read and write (like PEP 706 'data').
            mode = (member.mode & 0o755) | 0o600
            out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                          mode, dir_fd=fd)
            with os.fdopen(out, "wb") as handle:
                written = 0
                while data is not None and written < member.size:
                    chunk = data.read(min(COPY_CHUNK, member.size - written))
                    if not chunk:
                        break
                    handle.write(chunk)
                    written += len(chunk)
                if written != member.size:
                    raise BrokenArchive(f"member {name!r} is cut short "
                                        f"({written} of {member.size} bytes)")
                os.fchmod(handle.fileno(), mode)   # the umask does not decide
                os.utime(handle.fileno(), (member.mtime, member.mtime))
            self.files.add(tuple(parts))
        finally:
            os.close(fd)

    def symlink(self, parts: list[str], name: str, target: str) -> None:
        self.check_link_target(name, parts, target)
        fd = self.parent_fd(parts, name)
        try:
            self._clear(parts[-1], fd, want_dir=False)
            os.symlink(target, parts[-1], dir_fd=fd)
        finally:
            os.close(fd)
        self.symlinks.append((name, target))
        self.files.discard(tuple(parts))

    def hardlink(self, parts: list[str], name: str, target: str) -> None:
        try:
            tparts = _parts(target)
        except UnsafeArchive:
            raise UnsafeArchive(f"hard link {name!r} -> {target!r} points outside: "
                                "refused") from None
        if tuple(tparts) not in self.files:
            raise UnsafeArchive(f"hard link {name!r} -> {target!r} points outside "
                                "(not a regular file extracted from this archive): refused")
        src_fd = self.parent_fd(tparts, target)
        try:
            st = os.stat(tparts[-1], dir_fd=src_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeArchive(f"hard link {name!r} -> {target!r}: not a regular file")
            fd = self.parent_fd(parts, name)
            try:
                self._clear(parts[-1], fd, want_dir=False)
                os.link(tparts[-1], parts[-1], src_dir_fd=src_fd, dst_dir_fd=fd,
                        follow_symlinks=False)
            finally:
                os.close(fd)
        finally:
            os.close(src_fd)
        self.files.add(tuple(parts))

    def recheck_symlinks(self) -> None:
        """Every symlink, resolved now that all members exist, still stays inside."""
        for name, target in self.symlinks:
            parts = _parts(name)
            where = os.path.join(self.real_root, *parts[:-1], target)
            if not self.inside(where):
                raise UnsafeArchive(f"symlink {name!r} -> {target!r} points outside once the "
                                    "archive is extracted (a chain of links): refused")


def _check_end(stream: _Counting, end_offset: int) -> None:
    """The tar end marker: at least two zero blocks where the members end, nothing but zeros
    after them; the decompressor is read to its end (end of stream, checksums)."""
    rest = stream.since(end_offset)
    if rest is None:
        raise BrokenArchive("cannot check the end of the archive")
    while True:
        chunk = stream.inner.read(COPY_CHUNK)
        if not chunk:
            break
        stream.pos += len(chunk)
        if len(rest) < 2 * BLOCK:
            rest += chunk[: 2 * BLOCK]
        if chunk.count(0) != len(chunk):
            raise BrokenArchive("data after the tar end marker")
    if len(rest) < 2 * BLOCK or rest.count(0) != len(rest):
        raise BrokenArchive("no tar end marker (two zero blocks): the archive is truncated")


def extract(tarball: Path, dest: Path, log: Logger = print,
            progress_every: float = 15.0) -> int:
    """Extract `tarball` into the existing or new folder `dest`; returns the member count.
    Raises UnsafeArchive, BrokenArchive, or OSError (e.g. ENOSPC). The caller removes `dest`
    when it raises."""
    dest.mkdir(parents=True, exist_ok=True)
    writer = _Writer(dest)
    count = 0
    start = last = time.monotonic()
    try:
        with open(tarball, "rb") as raw:
            stream = _Counting(_open_decompressed(raw))
            try:
                with tarfile.open(fileobj=stream, mode="r|") as archive:
                    for member in archive:
                        _one(archive, member, writer)
                        count += 1
                        now = time.monotonic()
                        if now - last >= progress_every:
                            log(f"  extracting {tarball.name}: {count} files "
                                f"({now - start:.0f}s)")
                            last = now
                    if count == 0:
                        raise BrokenArchive("empty archive")
                    _check_end(stream, archive.offset)
            except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, OSError,
                    ValueError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise          # a real I/O error of the destination (ENOSPC, EROFS)
                raise BrokenArchive(str(exc) or type(exc).__name__) from None
        writer.recheck_symlinks()
    finally:
        writer.close()
    return count


def _one(archive: tarfile.TarFile, member: tarfile.TarInfo, writer: _Writer) -> None:
    name = member.name
    parts = _parts(name)
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeArchive(f"member {name!r} is a device or fifo: refused")
    if member.isdir():
        writer.directory(parts, name)
    elif not parts:
        raise UnsafeArchive(f"member {name!r} has no name")
    elif member.issym():
        writer.symlink(parts, name, member.linkname)
    elif member.islnk():
        writer.hardlink(parts, name, member.linkname)
    elif member.isreg():
        writer.regular(parts, name, member, archive.extractfile(member))
    else:
        raise UnsafeArchive(f"member {name!r} has an unsupported type {member.type!r}: refused")
