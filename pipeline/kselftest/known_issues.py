"""Known kselftest issues: subtests that cannot pass in this project's guest (a small TCG VM
with a read-only 9p root), kept in a versioned data file like BPF CI's DENYLIST.

Each entry names a test id (`<collection>/<program>` or `<collection>/<program>: <subtest>`),
the kernels it applies to (`since` inclusive, `until` exclusive, both optional), a reason and
the evidence. A failing case that matches is reported as *skipped* with the reason, never as a
failure; a matching case that passes is reported (unless the entry is `flaky: true`, where a
pass is expected now and then) so the list can shrink. The comparison of baseline and patched
still sees the real results: a known issue that passes on baseline and fails on patched is
judged like any other candidate regression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import BadInput

DEFAULT_FILE = Path(__file__).parent.parent / "data" / "kselftest-known-issues.yaml"
_KEYS = {"id", "since", "until", "reason", "evidence", "flaky"}
_REQUIRED = ("id", "reason", "evidence")


def _version(text: str) -> tuple[int, ...]:
    m = re.match(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?", text.strip())
    if not m:
        raise ValueError(f"not a kernel version: {text!r}")
    return tuple(int(g or 0) for g in m.groups())


@dataclass(frozen=True)
class KnownIssue:
    id: str                       # "cgroup/test_memcontrol: test_memcg_min"
    reason: str
    evidence: str
    since: str = ""               # first kernel version it applies to (inclusive)
    until: str = ""               # first kernel version it no longer applies to
    flaky: bool = False           # fails now and then: a pass is not news

    def applies_to(self, version: str) -> bool:
        v = _version(version)
        if self.since and v < _version(self.since):
            return False
        return not (self.until and v >= _version(self.until))

    def describe(self) -> str:
        return f"known issue: {self.reason}"


@dataclass(frozen=True)
class KnownIssues:
    entries: tuple[KnownIssue, ...] = ()
    source: str = ""

    def for_kernel(self, version: str) -> KnownIssues:
        return KnownIssues(tuple(e for e in self.entries if e.applies_to(version)), self.source)

    def match(self, collection: str, key: str) -> KnownIssue | None:
        wanted = f"{collection}/{key}"
        return next((e for e in self.entries if e.id == wanted), None)


def load(path: Path = DEFAULT_FILE) -> KnownIssues:
    """Read and check the file; BadInput names the entry and the problem."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BadInput(f"{path}: cannot read the known kselftest issues: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("issues", []), list):
        raise BadInput(f"{path}: expected a mapping with a list `issues:`")
    entries = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("issues") or []):
        where = f"{path}: issues[{i}]"
        if not isinstance(raw, dict):
            raise BadInput(f"{where}: must be a mapping")
        unknown = set(raw) - _KEYS
        if unknown:
            raise BadInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                           f"(allowed: {', '.join(sorted(_KEYS))})")
        for key in _REQUIRED:
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise BadInput(f"{where}: `{key}` must be a non-empty string")
        if "/" not in raw["id"]:
            raise BadInput(f"{where}: id {raw['id']!r} must be <collection>/<program>[: "
                           f"<subtest>]")
        if raw["id"] in seen:
            raise BadInput(f"{where}: id {raw['id']!r} is listed twice")
        seen.add(raw["id"])
        for key in ("since", "until"):
            if key in raw:
                try:
                    _version(str(raw[key]))
                except ValueError as exc:
                    raise BadInput(f"{where}: {key}: {exc}") from exc
        if not isinstance(raw.get("flaky", False), bool):
            raise BadInput(f"{where}: flaky must be true or false")
        entries.append(KnownIssue(raw["id"], raw["reason"].strip(), raw["evidence"].strip(),
                                  str(raw.get("since", "")), str(raw.get("until", "")),
                                  raw.get("flaky", False)))
    return KnownIssues(tuple(entries), str(path))
