"""`pipeline series import SOURCE -o DIR`: turn a patch thread into a series folder.

The patch mails (`[PATCH n/m]`, `[RFC PATCH n/m]`, `[PATCH v2 n/m]`, `[PATCH net-next 1/3]`,
a lone `[PATCH]` as 1/1) are picked out of the thread; when the thread holds several versions
the newest is taken (or `--version N`). Replies are not written, but their `Reviewed-by:`,
`Acked-by:` and `Tested-by:` lines (not the quoted `> ...` ones) are added to the patch they
answer (In-Reply-To / References), those in a reply to the cover letter to every patch, as b4
does: after the patch's own trailers, before its `---` line, each once. The set must be complete
(1..m, each once) and every patch must be a mail `git mailinfo` splits and a diff `git apply`
can parse. The folder gets `NNNN-subject.patch` files in git format-patch (mbox) form,
`0000-cover-letter.patch` when there is a cover letter, and series.yaml (name, base, link,
description = the cover letter).
"""

from __future__ import annotations

import argparse
import email.header
import email.utils
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..diffs import hunk_header
from ..errors import BadInput
from ..git import git_run
from ..job import seconds_arg
from ..log import Logger
from ..names import patch_file_slug as slug
from .mailsource import UNKNOWN_EMAIL, Mail, read_mails

GIT_TIMEOUT = 60.0
_TAG = re.compile(r"^\s*\[([^\]]*)\]\s*")
_REPLY = re.compile(r"^\s*(re|fwd?|aw|sv|antw)\s*:\s*", re.IGNORECASE)
_BASE_PATTERNS = [
    re.compile(r"\b(?:based|rebased|applies)\s+(?:on(?:\s+top\s+of)?|against)\s+"
               r"(?:(?:linux|mainline|kernel|linus'?)\s*)?(?:tag\s+)?v?(\d+\.\d+)", re.IGNORECASE),
    re.compile(r"\bagainst\s+(?:linux[- ])?v?(\d+\.\d+)(?:[.-]\w+)*\b", re.IGNORECASE),
    re.compile(r"^base-commit:.*?\bv?(\d+\.\d+)\b", re.IGNORECASE | re.MULTILINE),
]
TRAILER_KINDS = ("Reviewed-by", "Acked-by", "Tested-by")   # collected from replies
_REPLY_TRAILER = re.compile(r"^(" + "|".join(TRAILER_KINDS) + r"):[ \t]*([^<>\s][^<>\n]*?)"
                            r"[ \t]*<([^<>\s@]+@[^<>\s]+)>[ \t\r]*$", re.IGNORECASE | re.MULTILINE)
_TRAILER_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*:[ \t]")
_DASHES = re.compile(r"^---[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class PatchTag:
    """What a subject says: `[RFC PATCH v2 3/5] title`."""

    reply: bool
    is_patch: bool
    number: int
    total: int
    version: int
    prefix: str     # the bracket text, e.g. "RFC PATCH v2 3/5"
    title: str


@dataclass
class ImportedPatch:
    number: int
    total: int
    mail: Mail
    tag: PatchTag
    text: str = ""          # the format-patch file
    file_name: str = ""


@dataclass
class ImportResult:
    name: str
    version: int
    cover: Mail | None
    patches: list[ImportedPatch]
    missing: list[int]
    base: list[str]
    link: str
    folder: Path | None = None
    warnings: list[str] = field(default_factory=list)


def parse_subject(subject: str) -> PatchTag:
    """Split the bracket tags off a subject (any number of `[..]` groups, `Re:` first)."""
    text = subject.strip()
    reply = False
    while m := _REPLY.match(text):
        reply = True
        text = text[m.end():]
    tags = []
    while m := _TAG.match(text):
        tags.append(m.group(1).strip())
        text = text[m.end():]
        if _REPLY.match(text):       # "[PATCH] Re: ..." is still a reply
            reply = True
            text = _REPLY.sub("", text, count=1)
    prefix = " ".join(tags)
    is_patch = bool(re.search(r"\bPATCH\b", prefix, re.IGNORECASE))
    number = total = 1
    if m := re.search(r"\b(\d+)\s*/\s*(\d+)\b", prefix):
        number, total = int(m.group(1)), int(m.group(2))
    version = 1
    if m := re.search(r"\b[vV](\d+)\b", prefix):
        version = int(m.group(1))
    return PatchTag(reply, is_patch, number, total, version, prefix, text.strip())


def find_base(text: str) -> list[str]:
    """Kernel versions a cover letter says it is based on ("based on v5.14", base-commit)."""
    found: list[str] = []
    for pattern in _BASE_PATTERNS:
        for match in pattern.finditer(text):
            if match.group(1) not in found:
                found.append(match.group(1))
    return found


# --- diff checks ------------------------------------------------------------------------------

def diff_part(body: str) -> str:
    """From the first `diff --git` / `--- a/` line on."""
    match = re.search(r"^(diff --git |--- (?:a/|\S+\t)|Index: )", body, re.MULTILINE)
    return body[match.start():] if match else ""


def whitespace_damage(diff: str) -> str:
    """Describe the first hunk line that is neither context (' '), '+', '-' nor '\\'."""
    remaining_old = remaining_new = 0
    for number, line in enumerate(diff.splitlines(), start=1):
        if hunk := hunk_header(line):
            remaining_old, remaining_new = hunk.old_len, hunk.new_len
            continue
        if remaining_old <= 0 and remaining_new <= 0:
            continue
        if line == "" or line.startswith(" "):
            remaining_old -= 1
            remaining_new -= 1
        elif line.startswith("-"):
            remaining_old -= 1
        elif line.startswith("+"):
            remaining_new -= 1
        elif line.startswith("\\"):
            continue
        else:
            return (f"diff line {number} {line[:60]!r} is inside a hunk but does not start "
                    "with ' ', '+' or '-': the leading whitespace of the lines is lost "
                    "(a copy of a web page?)")
    return ""


def repair_whitespace(diff: str) -> str:
    """Put back the ' ' of context lines that lost it, hunk by hunk (using the hunk counts).
    The indentation inside the lines stays lost: the result parses, but needs
    `git am --ignore-whitespace` (or a hand fix) to apply."""
    out = []
    remaining_old = remaining_new = 0
    for line in diff.splitlines():
        if hunk := hunk_header(line):
            remaining_old, remaining_new = hunk.old_len, hunk.new_len
            out.append(line)
            continue
        if remaining_old > 0 or remaining_new > 0:
            if line.startswith("-") and remaining_old > 0 and not line.startswith("--- "):
                remaining_old -= 1
            elif line.startswith("+") and remaining_new > 0 and not line.startswith("+++ "):
                remaining_new -= 1
            elif line.startswith("\\"):
                pass
            else:
                if not line.startswith(" "):
                    line = " " + line
                remaining_old -= 1
                remaining_new -= 1
        out.append(line)
    return "\n".join(out) + "\n"


def _git_check(text: str, work: Path) -> str:
    """'' when `git mailinfo` splits the mail and `git apply --numstat` parses its diff, else
    the reason. Runs outside any repository: nothing is applied."""
    mail = work / "mail"
    mail.write_text(text)
    msg, patch = work / "msg", work / "patch"
    with open(mail, "rb") as handle:   # mailinfo reads the mail on stdin
        done = git_run(work, "mailinfo", str(msg), str(patch), timeout=GIT_TIMEOUT, stdin=handle)
    if done.timed_out:
        return f"git mailinfo timed out after {GIT_TIMEOUT:.0f}s"
    if done.returncode != 0:
        return f"git mailinfo cannot read the mail: {done.output.strip()}"
    if not patch.is_file() or not diff_part(patch.read_text(errors="replace")):
        return "the mail contains no diff"
    done = git_run(work, "apply", "--numstat", str(patch), timeout=GIT_TIMEOUT)
    if done.returncode != 0:
        return f"git apply cannot parse the diff: {done.output.strip()}"
    return ""


# --- trailers from replies --------------------------------------------------------------------

def reply_trailers(body: str) -> list[str]:
    """`Reviewed-by: Name <addr>` (and Acked-by, Tested-by) lines a reply gives itself, in
    canonical spelling; quoted lines (`> ...`) do not match (the kind must start the line)."""
    canonical = {kind.lower(): kind for kind in TRAILER_KINDS}
    return [f"{canonical[m.group(1).lower()]}: {m.group(2)} <{m.group(3)}>"
            for m in _REPLY_TRAILER.finditer(body)]


def _same_trailer(line: str) -> str:
    key, _, value = line.partition(":")
    return key.strip().lower() + ":" + " ".join(value.split())


@dataclass
class CollectedTrailers:
    added: dict[int, list[str]]    # patch number: trailer lines to add, in source order
    trailers: int                  # distinct trailers found (one on the cover letter counts once)
    replies: int                   # replies that gave them


def collect_trailers(mails: list[Mail], cover: Mail | None,
                     found: dict[int, ImportedPatch]) -> CollectedTrailers:
    """The trailers replies give to the chosen patches: a reply belongs to the nearest mail up
    its thread (In-Reply-To, then References from the newest) that is one of the patches (or
    the cover letter: then to all of them). Lines a patch already has are left out."""
    by_id = {p.mail.message_id: [n] for n, p in sorted(found.items()) if p.mail.message_id}
    if cover is not None and cover.message_id:
        by_id.setdefault(cover.message_id, sorted(found))
    added: dict[int, list[str]] = {n: [] for n in found}
    have = {n: {_same_trailer(line) for line in _message_part(p.mail.body).splitlines()
                if _TRAILER_LINE.match(line)} for n, p in found.items()}
    distinct: set[tuple[str, str]] = set()
    replies = 0
    for mail in mails:
        tag = parse_subject(mail.subject)
        if tag.is_patch and not tag.reply:
            continue                       # a patch mail (of any version), not a reply
        parents = [mail.in_reply_to, *reversed(mail.references)]
        target = next((p for p in parents if p and p in by_id), None)
        if target is None:
            continue
        trailers = reply_trailers(mail.body)
        if not trailers:
            continue
        replies += 1
        for line in trailers:
            distinct.add((target, _same_trailer(line)))
            for number in by_id[target]:
                if _same_trailer(line) not in have[number]:
                    have[number].add(_same_trailer(line))
                    added[number].append(line)
    return CollectedTrailers({n: lines for n, lines in added.items() if lines},
                             len(distinct), replies)


def _message_part(body: str) -> str:
    """The commit message of a patch mail's body: up to its `---` line (or the diff)."""
    end = len(body) - len(diff_part(body))
    dashes = _DASHES.search(body, 0, end)
    return body[:dashes.start() if dashes else end]


def add_trailers(body: str, trailers: list[str]) -> str:
    """`trailers` appended to the commit message's trailer block, right before `---`."""
    if not trailers:
        return body
    head = _message_part(body)
    message = head.rstrip("\n")
    last = message.rsplit("\n", 1)[-1]
    if not message:
        gap = ""
    elif _TRAILER_LINE.match(last):
        gap = "\n"
    else:
        gap = "\n\n"                        # a trailer block of its own
    return message + gap + "\n".join(trailers) + "\n" + body[len(head):]


# --- writing ----------------------------------------------------------------------------------

def _encode_header(value: str) -> str:
    if value.isascii():
        return value
    return email.header.Header(value, "utf-8").encode()


def _encode_author(author: str) -> str:
    name, addr = email.utils.parseaddr(author)
    if not name or name.isascii():
        return author
    return f"{_encode_header(name)} <{addr}>"


def looks_like_mbox_separator(line: str) -> bool:
    """Would `git mailsplit` (so `git am`) start a new mail at `line`?

    The same test as git's is_from_line(): "From ", at least 20 characters, and a time
    before a year after 1990 around the last colon ("... 00:00:00 2001"). Only such lines
    are escaped with ">": git am does not unescape ">From", so escaping any other
    "From " line would change the commit message.
    """
    if len(line) < 20 or not line.startswith("From "):
        return False
    colon = line.rfind(":", 5, len(line) - 1)
    if colon < 0:
        return False
    around = (line[colon - 4], line[colon - 2], line[colon - 1], line[colon + 1 : colon + 2],
              line[colon + 2 : colon + 3])
    if not all(c.isdigit() for c in around):
        return False
    year = re.match(r"\s*([+-]?\d+)", line[colon + 3 :])   # strtol()
    return year is not None and int(year.group(1)) > 90


def format_patch(mail: Mail, tag: PatchTag, body: str | None = None) -> str:
    """The mail as a `git format-patch` file (what `git am` reads)."""
    text = mail.body if body is None else body
    lines = [
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001",
        f"From: {_encode_author(mail.author)}",
    ]
    if mail.date:
        lines.append(f"Date: {mail.date}")
    lines.append(f"Subject: {_encode_header(f'[{tag.prefix}] {tag.title}')}")
    if mail.message_id:
        lines.append(f"Message-Id: <{mail.message_id}>")
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=UTF-8",
              "Content-Transfer-Encoding: 8bit", ""]
    text = "\n".join(">" + line if looks_like_mbox_separator(line) else line
                     for line in text.split("\n"))   # keep the mail one mail for git am
    return "\n".join(lines) + "\n" + text.rstrip("\n") + "\n"


def _link(source: str, cover: Mail | None, first: Mail) -> str:
    mail = cover or first
    if mail.message_id:
        return f"https://lore.kernel.org/r/{mail.message_id}"
    if re.match(r"^https?://", source):
        return source
    who = email.utils.parseaddr(mail.author)[0] or mail.author
    day = ""
    if mail.date:
        try:
            day = email.utils.parsedate_to_datetime(mail.date).strftime("%Y-%m-%d")
        except (TypeError, ValueError):
            day = ""
    return ", ".join(x for x in (mail.subject, who, day) if x)


# --- the import -------------------------------------------------------------------------------

def select(mails: list[Mail], version: int | None) -> tuple[int, Mail | None,
                                                            dict[int, ImportedPatch], list[str]]:
    """(version, cover letter, {number: patch}, problems) of the chosen version."""
    patch_mails = [(parse_subject(m.subject), m) for m in mails]
    patch_mails = [(t, m) for t, m in patch_mails if t.is_patch and not t.reply]
    if not patch_mails:
        return 0, None, {}, []
    versions = sorted({t.version for t, _ in patch_mails})
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        raise BadInput(f"--version {chosen}: the thread has patches of version "
                       f"{', '.join(f'v{v}' for v in versions)} only")
    cover: Mail | None = None
    found: dict[int, ImportedPatch] = {}
    problems: list[str] = []
    for tag, mail in patch_mails:
        if tag.version != chosen:
            continue
        if tag.number == 0:
            if cover is not None and cover.body != mail.body:
                problems.append(f"two cover letters [{tag.prefix}]: {cover.origin} and "
                                f"{mail.origin}")
            cover = cover or mail
            continue
        old = found.get(tag.number)
        if old is not None:
            if old.mail.body.strip() != mail.body.strip():
                problems.append(f"duplicate patch {tag.number}/{tag.total}: "
                                f"{old.mail.origin} ({old.tag.title!r}) and "
                                f"{mail.origin} ({tag.title!r})")
            continue
        found[tag.number] = ImportedPatch(tag.number, tag.total, mail, tag)
    return chosen, cover, found, problems


def import_series(source: str, out: Path, log: Logger, *, name: str | None = None,
                  base: list[str] | None = None, version: int | None = None,
                  allow_incomplete: bool = False, repair: bool = False,
                  force: bool = False, timeout: float = 60.0) -> ImportResult:
    """Read SOURCE, check the series, write the folder `out`. BadInput names what is wrong."""
    mails = read_mails(source, timeout=timeout)
    log(f"read {len(mails)} mails from {source}")
    chosen, cover, found, problems = select(mails, version)
    if not found and cover is None:
        raise BadInput(f"{source}: no patch mails found (looked for subjects like "
                       f"'[PATCH n/m]', '[RFC PATCH v2 n/m]' among {len(mails)} mails)")
    if not found:
        assert cover is not None        # both missing raised just above
        raise BadInput(f"{source}: only a cover letter ({cover.subject!r}), no patch mails")
    totals = {p.total for p in found.values()} | (
        {parse_subject(cover.subject).total} if cover else set())
    if len(totals) > 1:
        problems.append("the patches disagree on the series length: "
                        + ", ".join(f"{p.number}/{p.total}" for p in found.values()))
    total = max(totals)
    prefix = next(iter(found.values())).tag.prefix
    label = re.sub(r"\s*\d+\s*/\s*\d+\s*", " ", prefix).strip()
    missing = [n for n in range(1, total + 1) if n not in found]
    for number in sorted(found):
        if number > total:
            problems.append(f"patch {number}/{found[number].total} is beyond the series length")
    warnings: list[str] = []
    if missing:
        have = ", ".join(([f"0/{total} (cover letter)"] if cover else [])
                         + [f"{n}/{total}" for n in sorted(found)])
        message = "; ".join(f"{n}/{total} not found (no [{label} {n}/{total}] mail)"
                            for n in missing) + f" in {source} (have {have})"
        if allow_incomplete:
            warnings.append(f"incomplete series: {message}; writing the patches there are")
        else:
            problems.append(message + "; pass --allow-incomplete to write the others anyway")

    collected = collect_trailers(mails, cover, found)
    with tempfile.TemporaryDirectory(prefix="pipeline-intake-") as tmp:
        work = Path(tmp)
        for number in sorted(found):
            patch = found[number]
            where = (f"patch {number}/{patch.total} {patch.tag.title!r} ({patch.mail.origin})")
            body = add_trailers(patch.mail.body, collected.added.get(number, []))
            text = format_patch(patch.mail, patch.tag, body)
            reason = _git_check(text, work)
            if reason and repair and (damage := whitespace_damage(diff_part(body))):
                cut = len(body) - len(diff_part(body))
                fixed = body[:cut] + repair_whitespace(body[cut:])
                fixed_text = format_patch(patch.mail, patch.tag, fixed)
                if not _git_check(fixed_text, work):
                    warnings.append(f"{where}: {damage}; put back the leading space of the "
                                    "context lines (--repair-whitespace): the indentation is "
                                    "still lost, apply it with `git am --ignore-whitespace` "
                                    "or fix it by hand")
                    text, reason = fixed_text, ""
            if reason:
                damage = whitespace_damage(diff_part(body))
                hint = (f"; {damage} (--repair-whitespace restores the context markers)"
                        if damage else "")
                problems.append(f"{where}: {reason}{hint}")
            if "<" + UNKNOWN_EMAIL + ">" in patch.mail.author:
                warnings.append(f"{where}: the source has no author address; using "
                                f"{patch.mail.author!r}")
            patch.text = text
            patch.file_name = f"{number:04d}-{slug(patch.tag.title)}.patch"
    if problems:
        raise BadInput(f"cannot import {source}:\n  " + "\n  ".join(problems))
    lines_added = sum(len(lines) for lines in collected.added.values())
    log(f"collected {_count(collected.trailers, 'trailer')} from "
        f"{_count(collected.replies, 'reply', 'replies')} ({lines_added} added to "
        f"{_count(len(collected.added), 'patch', 'patches')})")
    for number, lines in sorted(collected.added.items()):
        for line in lines:
            log(f"  {found[number].file_name}: + {line}")

    patches = [found[n] for n in sorted(found)]
    first = patches[0].mail
    series_name = name or slug(parse_subject((cover or first).subject).title.lower(), 40)
    bases = base or find_base(cover.body if cover else first.body)
    if not base:
        if bases:
            log(f"base {', '.join(bases)}: from the cover letter")
        else:
            warnings.append("the cover letter names no base kernel version: series.yaml has "
                            "`base: []`, which `pipeline run` refuses; set it or pass --base")
    result = ImportResult(series_name, chosen, cover, patches, missing, bases,
                          _link(source, cover, first), warnings=warnings)
    result.folder = write_folder(result, out, force)
    for warning in warnings:
        log(f"warning: {warning}")
    return result


def _count(number: int, one: str, many: str = "") -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the cover letter) as `|` blocks, readable in the file."""


def _str_block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_block)


def _description(result: ImportResult) -> str:
    if result.cover is None:
        return f"Imported from {result.link}."
    return f"{result.cover.subject}\n\n{result.cover.body.strip()}\n"


IMPORT_MARK = "# written by `pipeline series import`: --force may replace this folder\n"


def _replaceable(out: Path) -> str:
    """Why `out` may not be replaced by --force ('' when it may): only a folder that this
    command wrote (series.yaml starts with IMPORT_MARK) holding nothing but its series.yaml
    and *.patch files. --force once deleted a whole git checkout given as -o by mistake."""
    if out.is_symlink() or not out.is_dir():
        return "it is not a folder"
    try:
        with open(out / "series.yaml", encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
    except OSError:
        return "it has no series.yaml written by `pipeline series import`"
    if first != IMPORT_MARK:
        return "its series.yaml was not written by `pipeline series import`"
    for entry in out.iterdir():
        if entry.is_symlink() or not entry.is_file() or not (
                entry.name == "series.yaml" or entry.name.endswith(".patch")):
            return f"it holds {entry.name!r}, which `pipeline series import` does not write"
    return ""


def write_folder(result: ImportResult, out: Path, force: bool) -> Path:
    """Write the series folder atomically (a temporary sibling renamed into place)."""
    out = out.expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise BadInput(f"{out} exists and is not empty (pass --force to replace it)")
        why = _replaceable(out)
        if why:
            raise BadInput(f"{out}: --force refused: {why}; remove it yourself if you mean it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        if result.cover is not None:
            tag = parse_subject(result.cover.subject)
            (tmp / "0000-cover-letter.patch").write_text(format_patch(result.cover, tag))
        for patch in result.patches:
            (tmp / patch.file_name).write_text(patch.text)
        meta = {"name": result.name, "base": result.base, "link": result.link,
                "description": _description(result)}
        header = IMPORT_MARK
        if not result.base:
            header += ("# base: the thread names no base kernel version; fill in the versions "
                      "this series applies to, e.g. [\"6.1\"]\n")
        (tmp / "series.yaml").write_text(header + yaml.dump(
            meta, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# --- command line -----------------------------------------------------------------------------

def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `pipeline series import` to the top-level subcommands."""
    series = sub.add_parser("series", help="series tools (import a patch thread)")
    series_sub = series.add_subparsers(dest="series_command", required=True, metavar="ACTION")
    p = series_sub.add_parser(
        "import", help="turn an mbox, patch folder, thread URL or thread dump into a series",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE",
                   help="mbox file, folder of patches, http(s) URL of a thread mbox (gzip ok), "
                        "or a plain-text thread dump")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="DIR",
                   help="series folder to write")
    p.add_argument("--name", help="series name (default: from the cover letter subject)")
    p.add_argument("--base", action="append", default=[], metavar="VERSION",
                   help="kernel version the series targets, e.g. 6.1 (repeatable; default: "
                        "what the cover letter says)")
    p.add_argument("--version", type=int, metavar="N",
                   help="take version N of the series (default: the newest in the thread)")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="write the patches there are when some n/m are missing (warns)")
    p.add_argument("--repair-whitespace", action="store_true",
                   help="put back the leading ' ' of context lines lost by a web page copy")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")
    p.add_argument("--timeout", type=seconds_arg, default=60.0,
                   help="URL fetch timeout for the whole download (s)")
    p.set_defaults(func=_cmd_import)


def _cmd_import(args: argparse.Namespace, log: Logger) -> int:
    for value in args.base:
        if not re.fullmatch(r"\d+\.\d+(\.\d+)?", value):
            raise BadInput(f"--base {value}: expected a kernel version like 6.1")
    result = import_series(args.source, args.out, log, name=args.name, base=args.base or None,
                           version=args.version, allow_incomplete=args.allow_incomplete,
                           repair=args.repair_whitespace, force=args.force,
                           timeout=args.timeout)
    cover = "with cover letter" if result.cover else "no cover letter"
    log(f"wrote {result.folder}: series {result.name!r} v{result.version}, "
        f"{len(result.patches)} patches, {cover}")
    for patch in result.patches:
        log(f"  {patch.file_name}")
    return 0
