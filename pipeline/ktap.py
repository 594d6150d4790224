"""Parser for TAP 13/14 and KTAP v1 output, as kselftests and KUnit print it.

Handles: version lines, plans (leading or trailing, `1..0 # SKIP why`),
`ok` / `not ok` with optional number and `- `, directives after `#` (SKIP,
TODO, XFAIL, TIMEOUT, error) with their reasons, nested subtests by
indentation with optional `# Subtest: name` headers, `Bail out!`, and any
other line as a diagnostic (tests mix stderr into their TAP).

kselftest's ksft_test_result_skip() prints `ok 3 # SKIP name`: the description
is empty and the name is in the reason. Such a result is named after the
reason, so that the same subtest has the same name whether it passed or was
skipped.

A line that is not TAP (a kernel message, a test's stray printf) may come at
any indentation, also less than that of the nested block it interrupts: it is
a diagnostic of that block when the block carries on after it (KUnit's
`init_suite` and `kunit example: all tests passed` lines, printk output in the
middle of a suite), and ends the block only when the next TAP line is at a
lower indentation.

Output that has a prefix on every line, as the kernel log does (`[    0.060000] `,
`[    0.060000][    T1] `, a space), is read as KUnit's kunit.py reads it: the
document starts at the first `KTAP version N` / `TAP version N` line, and what
precedes that keyword on it is the prefix, removed from the lines after it that
have the same shape (digits may differ). Lines before the version line are
diagnostics only. This applies only when no result or plan line comes before
the version line, and not to a version line in a `#` comment (a nested test's
output under kselftest's runner), so a kselftest program's output, which starts
with its results or its version line, parses as before.

A group is `incomplete` when it bailed out, printed fewer results than its
plan, or has a nested block that never got its result line (the test
crashed or hung mid-subtest). A missing plan alone is not incomplete (several
cgroup selftests print none); the caller, which knows the exit code, decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum


class Status(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    XFAIL = "xfail"    # expected failure: "not ok # TODO", "ok # XFAIL"
    ERROR = "error"    # "not ok # error": the test could not run properly


@dataclass
class TestCase:
    name: str
    status: Status
    number: int | None = None
    directive: str = ""            # SKIP, TODO, XFAIL, TIMEOUT, ERROR (upper case) or ""
    reason: str = ""               # text after the directive
    diagnostics: list[str] = field(default_factory=list)  # lines printed before the result
    subtests: TestGroup | None = None


@dataclass
class TestGroup:
    """One TAP document, or the nested block of a test's subtests."""

    name: str = ""                 # from "# Subtest: name", or the parent result's name
    version: str = ""              # "KTAP 1", "TAP 13", "TAP 14", "" when absent
    plan: int | None = None
    plan_skip_reason: str = ""     # "1..0 # SKIP why"
    tests: list[TestCase] = field(default_factory=list)
    bail_out: str | None = None
    incomplete: bool = False
    problems: list[str] = field(default_factory=list)     # why incomplete, oddities
    diagnostics: list[str] = field(default_factory=list)  # lines after the last result

    def walk(self, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], TestCase]]:
        """Every test case with its path of names, parents before their subtests."""
        out: list[tuple[tuple[str, ...], TestCase]] = []
        for case in self.tests:
            path = prefix + (case.name,)
            out.append((path, case))
            if case.subtests is not None:
                out.extend(case.subtests.walk(path))
        return out


_VERSION = re.compile(r"^(KTAP|TAP) version (\d+)\s*$", re.IGNORECASE)
_PLAN = re.compile(r"^1\.\.(\d+)\s*(?:#\s*(.*))?$")
_RESULT = re.compile(r"^(not ok|ok)(?:\s+(\d+))?(?:\s+-)?(?:\s+(.*))?$")
_DIRECTIVE = re.compile(r"^(?P<desc>.*?)\s*(?<!\\)#\s*(?P<word>SKIP\w*|TODO|XFAIL|TIMEOUT|ERROR)\b"
                        r"\s*(?P<reason>.*)$", re.IGNORECASE)
_SUBTEST = re.compile(r"^#\s*Subtest:\s*(.*)$")
_BAIL = re.compile(r"^Bail out!\s*(.*)$", re.IGNORECASE)
_INDENT_TAB = 4


_PREFIXED_VERSION = re.compile(r"(KTAP|TAP) version \d+\s*$", re.IGNORECASE)


def _indent(line: str) -> int:
    width = 0
    for ch in line:
        if ch == " ":
            width += 1
        elif ch == "\t":
            width += _INDENT_TAB
        else:
            break
    return width


def _status(ok: bool, directive: str) -> Status:
    if directive.startswith("SKIP"):
        return Status.SKIP
    if directive == "TODO":
        return Status.PASS if ok else Status.XFAIL
    if directive == "XFAIL":
        return Status.XFAIL if ok else Status.FAIL
    if directive == "ERROR":
        return Status.ERROR
    return Status.PASS if ok else Status.FAIL


def parse_result_line(text: str) -> TestCase | None:
    """`ok 3 name # SKIP why` -> TestCase; None if `text` is not a result line."""
    m = _RESULT.match(text.strip())
    if not m:
        return None
    ok = m.group(1) == "ok"
    number = int(m.group(2)) if m.group(2) else None
    rest = (m.group(3) or "").strip()
    directive, reason, name = "", "", rest
    d = _DIRECTIVE.match(rest)
    if d:
        name = d.group("desc").strip()
        directive = d.group("word").upper()
        if directive.startswith("SKIP"):
            directive = "SKIP"
        reason = d.group("reason").strip()
        if not name:
            name = reason
    name = name.replace("\\#", "#")
    if not name:
        name = f"test {number}" if number is not None else "(unnamed)"
    return TestCase(name=name, status=_status(ok, directive), number=number,
                    directive=directive, reason=reason)


def _is_tap(text: str) -> bool:
    """Is this (stripped) line TAP structure rather than a diagnostic?"""
    return bool(_VERSION.match(text) or _PLAN.match(text) or _SUBTEST.match(text)
                or _BAIL.match(text) or parse_result_line(text) is not None)


def _diagnostic(text: str) -> str:
    return text[1:].strip() if text.startswith("#") else text


def _block_resumes(lines: list[str], i: int, indent: int) -> int | None:
    """Lines from `i` are less indented than the block at `indent`. If they are
    non-TAP lines followed by a line at the block's indentation or deeper, the
    block carries on there: return that line's index. Else None (the block ends)."""
    j = i
    while j < len(lines):
        raw = lines[j].rstrip("\r\n")
        if raw.strip():
            if _indent(raw) >= indent:
                return j
            if _is_tap(raw.strip()):
                return None
        j += 1
    return None


def _noise_end(lines: list[str], i: int, indent: int) -> int:
    """Index of the first TAP line, or line less indented than `indent`, from `i`."""
    j = i
    while j < len(lines):
        raw = lines[j].rstrip("\r\n")
        if raw.strip() and (_is_tap(raw.strip()) or _indent(raw) < indent):
            break
        j += 1
    return j


def _finish(group: TestGroup, pending: TestGroup | None) -> None:
    if pending is not None:
        _attach_orphan(group, pending)
    if group.plan is not None and len(group.tests) < group.plan:
        group.incomplete = True
        group.problems.append(f"planned {group.plan} tests, got {len(group.tests)}")
    if group.bail_out is not None:
        group.incomplete = True
        group.problems.append(f"bail out: {group.bail_out}" if group.bail_out else "bail out")


def _attach_orphan(group: TestGroup, child: TestGroup) -> None:
    """A nested block with no result line after it: the subtest never finished."""
    if not (child.tests or child.plan is not None or child.name or child.version):
        group.diagnostics.extend(child.diagnostics)  # indented noise, not a subtest
        return
    name = child.name or f"test {len(group.tests) + 1}"
    child.incomplete = True
    child.problems.append("no result line after the subtests (crashed or hung)")
    group.tests.append(TestCase(name=name, status=Status.ERROR, subtests=child,
                                reason="incomplete: no result line"))
    group.incomplete = True
    group.problems.append(f"subtest {name!r} did not finish")


def _is_duplicate(group: TestGroup, case: TestCase) -> bool:
    """An identical repeat of an earlier result line: a forked child flushed a
    copy of its parent's stdio buffer. Dropped, and noted as a problem."""
    for seen in group.tests:
        if (case.number is not None and seen.number == case.number and seen.name == case.name
                and seen.status == case.status and case.subtests is None):
            group.problems.append(f"duplicate result line for test {case.number} "
                                  f"{case.name!r} ignored")
            return True
    return False


def _parse_block(lines: list[str], i: int, indent: int,
                 diags: list[str] | None = None) -> tuple[TestGroup, int]:
    group = TestGroup()
    pending: TestGroup | None = None  # nested block waiting for its parent's result line
    diags = [] if diags is None else diags
    while i < len(lines):
        raw = lines[i].rstrip("\r\n")
        if not raw.strip():
            i += 1
            continue
        width = _indent(raw)
        if width < indent:
            resume = _block_resumes(lines, i, indent)
            if resume is None:
                break
            # non-TAP lines interrupting this block: its diagnostics
            diags.extend(_diagnostic(ln.strip()) for ln in lines[i:resume] if ln.strip())
            i = resume
            continue
        if width > indent:
            if not _is_tap(raw.strip()):
                # non-TAP lines indented deeper: the start of a nested block only if a
                # deeper TAP line follows them, else this block's diagnostics
                j = _noise_end(lines, i, indent)
                noise = [_diagnostic(ln.strip()) for ln in lines[i:j] if ln.strip()]
                nxt = lines[j].rstrip("\r\n") if j < len(lines) else ""
                if not (nxt.strip() and _indent(nxt) > indent and _is_tap(nxt.strip())):
                    diags.extend(noise)
                    i = j
                    continue
                i, width = j, _indent(nxt)
            else:
                noise = []
            if pending is not None:
                _attach_orphan(group, pending)
            pending, i = _parse_block(lines, i, width, noise)
            continue
        text = raw.strip()
        i += 1
        if m := _VERSION.match(text):
            if group.version or group.tests:
                group.problems.append(f"version line in the middle: {text!r}")
            group.version = f"{m.group(1).upper()} {m.group(2)}"
        elif m := _PLAN.match(text):
            group.plan = int(m.group(1))
            if group.plan == 0 and m.group(2):
                skip = _DIRECTIVE.match("#" + m.group(2))
                group.plan_skip_reason = skip.group("reason").strip() if skip else m.group(2)
        elif m := _SUBTEST.match(text):
            group.name = m.group(1).strip()
        elif m := _BAIL.match(text):
            group.bail_out = m.group(1).strip()
        elif case := parse_result_line(text):
            case.diagnostics = diags
            diags = []
            if pending is not None:
                pending.name = pending.name or case.name
                case.subtests = pending
                pending = None
            if _is_duplicate(group, case):
                continue
            group.tests.append(case)
        else:
            diags.append(_diagnostic(text))
    group.diagnostics.extend(diags)
    _finish(group, pending)
    return group, i


def _document_start(lines: list[str]) -> tuple[int, str] | None:
    """(index, prefix) of the version line that starts a prefixed or preceded
    document, None when the text is to be parsed from its first line as it is."""
    for n, line in enumerate(lines):
        m = _PREFIXED_VERSION.search(line.rstrip("\r\n"))
        if m:
            prefix = line[:m.start()]
            if prefix.strip().startswith("#"):
                continue              # a version line in a comment: not ours
            if n == 0 and not prefix:
                return None           # the ordinary case
            if not prefix.strip() and _less_indented_tap(lines[n + 1:], prefix):
                return None           # a nested block's version line, not a prefix
            return n, prefix
        text = line.strip()
        if _PLAN.match(text) or parse_result_line(text) is not None:
            return None               # TAP before any version line
    return None


def _less_indented_tap(lines: list[str], prefix: str) -> bool:
    return any(_is_tap(ln.strip()) and not ln.startswith(prefix) for ln in lines if ln.strip())


def _prefix_shape(prefix: str) -> re.Pattern[str]:
    """A pattern for lines carrying the same kind of prefix as `prefix`: digit runs
    may differ (timestamps, thread ids), and so may the padding inside it."""
    core = prefix.rstrip()
    parts = []
    for tok in re.finditer(r"\d+|\s+|.", core):
        t = tok.group()
        if t[0].isdigit():
            parts.append(r"\d+")
        elif t[0].isspace():
            parts.append(r"\s*")
        else:
            parts.append(re.escape(t))
    tail = re.escape(prefix[len(core):])
    return re.compile("".join(parts) + (f"(?:{tail}|\\s*$)" if tail else ""))


def _strip_prefix(lines: list[str], prefix: str) -> list[str]:
    shape = _prefix_shape(prefix)
    out = []
    for line in lines:
        m = shape.match(line)
        out.append(line[m.end():] if m else line)
    return out


def parse(text: str) -> TestGroup:
    """Parse one TAP/KTAP document (the output of one test program, or a kernel log
    with KUnit's KTAP in it)."""
    lines = text.splitlines()
    start = _document_start(lines)
    if start is None:
        group, i = _parse_block(lines, 0, 0)
    else:
        n, prefix = start
        lead = [_diagnostic(ln.strip()) for ln in lines[:n] if ln.strip()]
        lines = lines[:n] + _strip_prefix(lines[n:], prefix)
        group, i = _parse_block(lines, n, 0, lead)
    # Lines indented less than the first line cannot happen at indent 0; a
    # document whose first line is indented is parsed as one nested block.
    if i < len(lines):
        group.problems.append(f"unparsed input from line {i + 1}")
    return group
