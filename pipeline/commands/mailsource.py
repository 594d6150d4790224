"""Read the mails of a patch thread from an mbox, a folder, an http(s) URL or a text dump.

The result is a flat list of `Mail`s (subject, author, date, decoded body) in source order;
picking the patch mails out of them is `intake`'s job.

A *thread dump* is the plain text of a mailing-list archive page: each mail is a block like

    2021-09-08 12:55:43
    by Yi Tao
    [permalink] [raw]
    Subject: [RFC PATCH 1/2] add pinned flags for kernfs node
    <body>

Such pages lose the mail headers (addresses are often obfuscated) and, from an HTML scrape,
the leading whitespace of lines; `intake` detects the latter when it validates the diffs.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import requests

from .. import netfetch
from ..errors import BadInput, StageFailed
from ..series import split_mbox

UNKNOWN_EMAIL = "unknown@example.invalid"
MAX_MAIL_BYTES = 64 << 20     # a thread, fetched or unpacked: the biggest series are a few MiB
MAIL_SUFFIXES = (".patch", ".diff", ".eml", ".mbox", ".mbx", ".txt")
_DUMP_DATE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2})?)\s*$")
_DUMP_BY = re.compile(r"^\s*by\s+(.+?)\s*$")
_DUMP_SUBJECT = re.compile(r"^Subject:\s*(.*?)\s*$")
_DUMP_FROM = re.compile(r"^From:\s*(.+?)\s*$")
_DUMP_NOISE = re.compile(r"^\s*(\[permalink\]|\[raw\]|\[thread\]|\s*$)")
_HEADER_LINE = re.compile(r"^(From|Subject|Date|Message-I[dD]|Return-Path|Received|To|Cc|"
                          r"In-Reply-To|References|MIME-Version|Content-Type|X-[\w-]+):[ \t]")


@dataclass(frozen=True)
class Mail:
    subject: str
    author: str          # "Name <address>"; UNKNOWN_EMAIL when the source hid the address
    date: str            # RFC 2822, empty when unknown
    body: str            # decoded text: commit message, ---, diffstat, diff, signature
    origin: str          # where the mail is in the source, for messages (file:line, file#n)
    message_id: str = ""
    in_reply_to: str = ""                  # Message-ID of the parent mail, without <>
    references: tuple[str, ...] = ()       # the thread's Message-IDs, oldest first, without <>


# --- fetching ---------------------------------------------------------------------------------

def _decompress(data: bytes, what: str, limit: int | None = None) -> bytes:
    """gzip data unpacked (all members), at most `limit` bytes (default MAX_MAIL_BYTES): a
    small .gz can unpack to gigabytes, so the size is checked while unpacking, not after."""
    limit = MAX_MAIL_BYTES if limit is None else limit
    if data[:2] != b"\x1f\x8b":
        if len(data) > limit:
            raise BadInput(f"{what}: larger than {limit >> 20} MiB: refused")
        return data
    out = bytearray()
    rest = data
    try:
        while rest[:2] == b"\x1f\x8b":
            unpack = zlib.decompressobj(wbits=31)
            chunk = unpack.decompress(rest, limit + 1 - len(out))
            out += chunk
            if len(out) > limit or unpack.unconsumed_tail:
                raise BadInput(f"{what}: unpacks to more than {limit >> 20} MiB: refused")
            if not unpack.eof:
                raise BadInput(f"{what}: corrupt gzip data (truncated)")
            rest = unpack.unused_data
    except zlib.error as exc:
        raise BadInput(f"{what}: corrupt gzip data ({exc})") from None
    return bytes(out)


def fetch_url(url: str, timeout: float = 60.0, session: requests.Session | None = None) -> str:
    """GET a thread mbox (lore's t.mbox.gz or any text) within `timeout` seconds in all;
    gzip bodies are unpacked (both with size limits)."""
    body = bytearray()
    try:
        for block, _total in netfetch.stream(url, deadline=timeout, session=session,
                                             max_bytes=MAX_MAIL_BYTES):
            body += block
    except StageFailed as exc:
        raise BadInput(f"{url}: cannot fetch: {exc.message}") from None
    except BadInput as exc:
        raise BadInput(exc.message.replace(f"download {url}", url)) from None
    return _decompress(bytes(body), url).decode("utf-8", errors="replace")


def read_file(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_MAIL_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None
    return _decompress(data, str(path)).decode("utf-8", errors="replace")


# --- mbox / RFC 822 ---------------------------------------------------------------------------

def looks_like_mail(text: str) -> bool:
    """An mbox (`From ` separator line) or a single mail starting with RFC 822 headers."""
    head = text.lstrip("\n")
    if split_mbox(head) and re.match(r"^From \S+ ", head):
        return True
    return bool(_HEADER_LINE.match(head))


def _header(msg: Message, name: str) -> str:
    raw = msg.get(name)
    if raw is None:
        return ""
    try:
        text = str(email.header.make_header(email.header.decode_header(str(raw))))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        text = str(raw)
    return re.sub(r"\s*\n\s*", " ", text).strip()


def _message_ids(msg: Message, name: str) -> list[str]:
    """The `<id>` tokens of a header (In-Reply-To, References), in order, without <>."""
    return list(re.findall(r"<([^<>\s]+)>", " ".join(
        str(v) for v in (msg.get_all(name) or []))))


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):  # None for a multipart part; else always bytes
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _body(msg: Message) -> str:
    """Text of the mail: text/plain parts and attached diffs, in order."""
    if not msg.is_multipart():
        return _part_text(msg)
    texts = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        name = part.get_filename() or ""
        if ctype.startswith("text/") and ctype != "text/html" or name.endswith((".patch", ".diff")):
            texts.append(_part_text(part))
    return "\n".join(texts)


def parse_mbox(text: str, where: str) -> list[Mail]:
    """Every message of an mbox (or of one bare mail)."""
    mboxrd = text.lstrip("\n").startswith("From mboxrd@")
    mails = []
    offsets = _line_offsets(text)
    pos = 0
    for number, chunk in enumerate(split_mbox(text.lstrip("\n")), start=1):
        start = text.find(chunk, pos)
        pos = max(pos, start)
        line = _line_at(offsets, start) if start >= 0 else 0
        if chunk.startswith("From "):
            chunk = chunk.split("\n", 1)[1] if "\n" in chunk else ""
        if mboxrd:
            chunk = re.sub(r"^>(>*From )", r"\1", chunk, flags=re.MULTILINE)
        msg = email.message_from_string(chunk, policy=email.policy.compat32)
        subject = _header(msg, "Subject")
        if not subject and not msg.keys():
            continue
        author = _header(msg, "From")
        name, addr = email.utils.parseaddr(author)
        if not addr:
            author = f"{name or author or 'Unknown'} <{UNKNOWN_EMAIL}>"
        mails.append(Mail(subject=subject, author=author, date=_header(msg, "Date"),
                          body=_body(msg), origin=f"{where}:{line} (message {number})",
                          message_id=_header(msg, "Message-ID").strip("<>"),
                          in_reply_to=next(iter(_message_ids(msg, "In-Reply-To")), ""),
                          references=tuple(_message_ids(msg, "References"))))
    return mails


def _line_offsets(text: str) -> list[int]:
    return [0] + [m.end() for m in re.finditer("\n", text)]


def _line_at(offsets: list[int], pos: int) -> int:
    lo, hi = 0, len(offsets) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if offsets[mid] <= pos:
            lo = mid
        else:
            hi = mid - 1
    return lo + 1


# --- thread dump ------------------------------------------------------------------------------

def _dump_date(day: str, clock: str) -> str:
    fmt = "%Y-%m-%d %H:%M:%S" if clock.count(":") == 2 else "%Y-%m-%d %H:%M"
    try:
        stamp = datetime.strptime(f"{day} {clock}", fmt).replace(tzinfo=UTC)
    except ValueError:
        return ""
    return email.utils.format_datetime(stamp)


def parse_dump(text: str, where: str) -> list[Mail]:
    """Mails of a plain-text archive page: a `Subject:` line whose preceding lines (up to a
    date line) hold only the mail's date, `by Author`, `From:` and [permalink] [raw] lines."""
    lines = text.splitlines()
    heads: list[tuple[int, int, str, str, str]] = []   # (block start, subject line, ...)
    for index, line in enumerate(lines):
        match = _DUMP_SUBJECT.match(line)
        if not match:
            continue
        start, date, author = index, "", ""
        anchored = False
        for back in range(index - 1, max(-1, index - 9), -1):
            prev = lines[back]
            if m := _DUMP_DATE.match(prev):
                date, start, anchored = _dump_date(m.group(1), m.group(2)), back, True
                break
            if m := _DUMP_BY.match(prev) or _DUMP_FROM.match(prev):
                author, start = m.group(1), back
            elif "[permalink]" in prev or "[raw]" in prev:
                start, anchored = back, True
            elif not _DUMP_NOISE.match(prev):
                break
        if anchored or index == 0:
            heads.append((start, index, match.group(1), date, author))
    mails = []
    for number, (start, index, subject, date, author) in enumerate(heads):
        end = heads[number + 1][0] if number + 1 < len(heads) else len(lines)
        body_lines = lines[index + 1:end]
        while body_lines and not body_lines[0].strip():
            body_lines.pop(0)
        while body_lines and not body_lines[-1].strip():
            body_lines.pop()
        name = author or "Unknown"
        _, addr = email.utils.parseaddr(name)
        if "@" not in addr:
            name = f"{name} <{UNKNOWN_EMAIL}>"
        mails.append(Mail(subject=subject, author=name, date=date,
                          body="\n".join(body_lines) + "\n",
                          origin=f"{where}:{index + 1}"))
    return mails


# --- entry point ------------------------------------------------------------------------------

def parse_text(text: str, where: str) -> list[Mail]:
    """An mbox / mail, else a thread dump."""
    if looks_like_mail(text):
        return parse_mbox(text, where)
    return parse_dump(text, where)


def read_mails(source: str, timeout: float = 60.0,
               session: requests.Session | None = None) -> list[Mail]:
    """The mails of SOURCE: http(s) URL, folder (its *.patch/*.eml/*.mbox/... files in name
    order), mbox file, single mail, or thread dump (gzip-compressed or not)."""
    if re.match(r"^https?://", source):
        return parse_text(fetch_url(source, timeout, session), source)
    if re.match(r"^[a-z]+://", source):
        raise BadInput(f"{source}: only http:// and https:// URLs are supported")
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.name.endswith(MAIL_SUFFIXES + tuple(
                           s + ".gz" for s in MAIL_SUFFIXES)))
        if not files:
            raise BadInput(f"{path}: no patch or mail files in the folder "
                           f"(looked for {', '.join(MAIL_SUFFIXES)})")
        mails: list[Mail] = []
        for file in files:
            mails += parse_text(read_file(file), str(file))
        return mails
    if not path.exists():
        raise BadInput(f"{source}: no such file, folder or URL")
    return parse_text(read_file(path), str(path))
