"""The lock classes and dependencies a series adds, from lockdep's own tables.

On a lockdep kernel (CONFIG_PROVE_LOCKING) the guest init copies /proc/lockdep,
/proc/lockdep_chains and /proc/lockdep_stats into OUT/<variant>/guest/lockdep/ after the guest
tests (docs/guest-protocol.md). After the run, each variant with the series is compared with
the variant of the same fragments without it (the default job: patched-debug with
baseline-debug), which ran the same tests: the classes and direct dependencies ("A -> B": B
was taken while A was held) only the patched kernel has are the series' (or the noise of a
timing-dependent path: a workqueue, reclaim, an interrupt that came at another moment).

Normalisation, so that two boots (and two kernels) name the same lock the same way:

- the keys (`%p`: hashed, or addresses: the pipeline's `slub_debug=` turns hashing off) and
  the counts (FD:, BD:, OPS:, the usage characters) are dropped: they differ between boots
  and between kernels. The price: classes are told apart by name only, and names are not
  unique (the series' `&pool->lock` and workqueue's worker_pool lock are one class here);
- `#N` after a name is dropped: it is the class's name_version, the number of classes of the
  same name registered before it plus one, i.e. an order of first use (every kernfs file's
  `kn->active`, each filesystem type's `&type->i_mutex_dir_key`). The price: the classes of one
  name are one class here, so an edge the baseline has for one of them hides the same edge
  of another;
- `/N` is kept: it is the subclass, a nesting level the code asks for
  (`mutex_lock_nested(..., I_MUTEX_PARENT)`), the same on every boot.

The verdict (pipeline/data/lockdep-watch.yaml): a new dependency between two watched classes
(cgroup, kernfs, inode and the pool's own locks) fails `<variant>.lockdep`, unless the file
lists it as accepted (reviewed, with the reason); every other new dependency is listed in a
passed case. A missing or cut dump (a kernel without lockdep, a session that broke off) is a
skipped case saying so, never a pass. OUT/<variant>/lockdep-new.md has the whole list, with a
lock chain of the patched kernel that shows each new edge.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInput
from .guest_results import read_untrusted
from .results import ERROR, FAILED, PASSED, SKIPPED, Case, Stage
from .safeyaml import load as load_yaml

if TYPE_CHECKING:
    from .context import RunContext
    from .job import Job, Variant

WATCH_FILE = Path(__file__).resolve().parent / "data" / "lockdep-watch.yaml"
FOLDER = "lockdep"                # in the guest share: OUT/<variant>/guest/lockdep/
FILES = ("lockdep", "lockdep_chains", "lockdep_stats")
MARKDOWN = "lockdep-new.md"
STAGE = "lockdep"
MAX_FILE = 16 << 20              # host side: more than the guest copies (8 MiB)
MAX_LIST = 200                    # edges listed in a JUnit case (the markdown has all)

Edge = tuple[str, str]

# `<key>[ OPS:%8ld][ FD:%5ld BD:%5ld <usage>]: <name>`; the key is `%p` (hashed, or
# `(____ptrval____)` before the hash key is ready).
_CLASS = re.compile(r"^(?P<key>\S+)(?: OPS:\s*\d+)?(?: FD:\s*\d+ BD:\s*\d+ [-+?.]+)?: "
                    r"(?P<name>.+)$")
_AFTER = re.compile(r"^ -> \[(?P<key>[^\]]+)\] (?P<name>.+)$")
_CHAIN_LOCK = re.compile(r"^\[(?P<key>[^\]]+)\] (?P<name>.+)$")
_VERSION = re.compile(r"#\d+(?=(/\d+)?$)")


class FormatError(BadInput):
    """A file that is not in the format this module reads."""


class Missing(Exception):
    """No usable dump: the message says why."""


def normalise(name: str) -> str:
    """A class name without its name_version (`#N`), with its subclass (`/N`)."""
    return _VERSION.sub("", name.rstrip())


@dataclass
class Graph:
    """/proc/lockdep, normalised: classes, direct dependencies, the raw names of each."""

    classes: set[str] = field(default_factory=set)
    edges: set[Edge] = field(default_factory=set)
    raw_names: dict[str, set[str]] = field(default_factory=dict)

    def add(self, raw: str) -> str:
        name = normalise(raw)
        self.classes.add(name)
        self.raw_names.setdefault(name, set()).add(raw.rstrip())
        return name


@dataclass(frozen=True)
class Chain:
    """One entry of /proc/lockdep_chains: the locks held, outermost first."""

    irq_context: str
    locks: tuple[str, ...]


@dataclass
class Dump:
    graph: Graph
    chains: list[Chain]
    stats: dict[str, str]


def parse_lockdep(text: str) -> Graph:
    graph = Graph()
    current: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line == "all lock classes:":
            current = None if not line.strip() else current
            continue
        after = _AFTER.match(line)
        if after is not None and current is not None:
            graph.edges.add((current, graph.add(after["name"])))
            continue
        cls = _CLASS.match(line)
        if cls is None:
            raise FormatError(f"/proc/lockdep line {number}: not a lock class or "
                              f"dependency: {line[:120]!r}")
        current = graph.add(cls["name"])
    return graph


def parse_chains(text: str) -> list[Chain]:
    chains: list[Chain] = []
    context: str | None = None
    locks: list[str] = []

    def close() -> None:
        if context is not None:
            chains.append(Chain(context, tuple(locks)))

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.endswith("all lock chains:"):
            continue
        if line.startswith("irq_context: "):
            close()
            context, locks = line.removeprefix("irq_context: ").strip(), []
            continue
        lock = _CHAIN_LOCK.match(line)
        if lock is None or context is None:
            raise FormatError(f"/proc/lockdep_chains line {number}: not a chain entry: "
                              f"{line[:120]!r}")
        locks.append(normalise(lock["name"]))
    close()
    return chains


def parse_stats(text: str) -> dict[str, str]:
    stats = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            stats[key.strip()] = " ".join(value.split())
    return stats


def _read(path: Path) -> str | None:
    """A file of the guest's share: never through a symlink, a fifo or past MAX_FILE."""
    data = read_untrusted(path, MAX_FILE)
    return None if data is None else data.decode("utf-8", errors="replace")


def load(guest: Path) -> Dump:
    """The dump of one variant's guest share (OUT/<variant>/guest); Missing says why not."""
    folder = guest / FOLDER
    text = {n: _read(folder / n) for n in FILES}
    if text["lockdep"] is None:
        raise Missing(f"no /proc/lockdep dump in {folder} (not a lockdep kernel, or the "
                      f"guest session ended before its tests finished)")
    try:
        manifest = json.loads(_read(folder / "manifest.json") or "")
    except ValueError as exc:
        raise Missing(f"{folder}/manifest.json unreadable: {exc}") from None
    if not isinstance(manifest, dict):
        raise Missing(f"{folder}/manifest.json: not a JSON object")
    for name in FILES[:2]:
        entry = manifest.get(name)
        if not isinstance(entry, dict):
            raise Missing(f"/proc/{name} was not copied (no entry in the manifest)")
        if "error" in entry:
            raise Missing(f"{name}: {entry['error']}")
        if text[name] is None:
            raise Missing(f"{folder / name}: not a regular file")
        if entry.get("truncated"):
            raise Missing(f"/proc/{name} was cut at {entry.get('bytes')} bytes: a partial "
                          f"table would show false new edges")
    return Dump(parse_lockdep(text["lockdep"]), parse_chains(text["lockdep_chains"] or ""),
                parse_stats(text["lockdep_stats"] or ""))


# --- the watch list -------------------------------------------------------------------------

@dataclass
class Watch:
    source: Path
    classes: list[str]                              # fnmatch patterns on normalised names
    accepted: dict[Edge, str] = field(default_factory=dict)   # edge -> why it is fine

    def watched(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.classes)


def load_watch(path: Path = WATCH_FILE) -> Watch:
    data, _ = load_yaml(path, "lockdep watch list")
    data = data or {}
    if not isinstance(data, dict):
        raise FormatError(f"{path}: a mapping with `classes` and `accepted` expected")
    unknown = set(data) - {"classes", "accepted"}
    if unknown:
        raise FormatError(f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    classes = data.get("classes") or []
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise FormatError(f"{path}: classes: a list of class name patterns expected")
    accepted: dict[Edge, str] = {}
    for item in data.get("accepted") or []:
        if not (isinstance(item, dict) and set(item) == {"from", "to", "why"}
                and all(isinstance(v, str) and v.strip() for v in item.values())):
            raise FormatError(f"{path}: accepted: each item is {{from, to, why}} (strings), "
                              f"not {item!r}")
        accepted[(normalise(item["from"]), normalise(item["to"]))] = item["why"].strip()
    return Watch(path, classes, accepted)


# --- the comparison -------------------------------------------------------------------------

@dataclass
class Diff:
    base: Dump
    patched: Dump
    new_classes: list[str]
    new_edges: list[Edge]
    gone_edges: list[Edge]
    watched: list[Edge]                 # new, both ends watched, not accepted: the failures
    accepted: dict[Edge, str]           # new, watched, accepted in the watch list
    informational: list[Edge]           # new, not between watched classes
    examples: dict[Edge, Chain]         # a patched chain that shows the edge
    new_chains: int
    watch_source: Path


def _example(edge: Edge, chains: list[Chain]) -> Chain | None:
    """A chain with `edge` as two adjacent locks, else with both in that order."""
    a, b = edge
    later = None
    for chain in chains:
        locks = chain.locks
        if any(locks[i] == a and locks[i + 1] == b for i in range(len(locks) - 1)):
            return chain
        if later is None and a in locks and b in locks[locks.index(a) + 1:]:
            later = chain
    return later


def compare(base: Dump, patched: Dump, watch: Watch) -> Diff:
    new_edges = sorted(patched.graph.edges - base.graph.edges)
    watched, accepted, informational = [], {}, []
    for edge in new_edges:
        if not (watch.watched(edge[0]) and watch.watched(edge[1])):
            informational.append(edge)
        elif edge in watch.accepted:
            accepted[edge] = watch.accepted[edge]
        else:
            watched.append(edge)
    examples = {e: c for e in new_edges if (c := _example(e, patched.chains)) is not None}
    return Diff(base, patched, sorted(patched.graph.classes - base.graph.classes), new_edges,
                sorted(base.graph.edges - patched.graph.edges), watched, accepted,
                informational, examples, len(set(patched.chains) - set(base.chains)),
                watch.source)


def _arrow(edge: Edge) -> str:
    return f"{edge[0]} -> {edge[1]}"


def _listing(edges: list[Edge], d: Diff, notes: dict[Edge, str] | None = None) -> str:
    lines = []
    for edge in edges[:MAX_LIST]:
        line = _arrow(edge)
        if notes and edge in notes:
            line += f"  (accepted: {notes[edge]})"
        chain = d.examples.get(edge)
        if chain is not None:
            line += f"\n    chain ({chain.irq_context}): {' -> '.join(chain.locks)}"
        lines.append(line)
    if len(edges) > MAX_LIST:
        lines.append(f"... and {len(edges) - MAX_LIST} more (see {MARKDOWN})")
    return "\n".join(lines)


def cases(d: Diff, variant: str, baseline: str) -> list[Case]:
    classname = f"{variant}.{STAGE}"
    counts = (f"{len(d.new_classes)} new classes, {len(d.new_edges)} new dependencies "
              f"({len(d.watched)} between watched classes, {len(d.accepted)} accepted), "
              f"{len(d.gone_edges)} only on {baseline}")
    watched = Case("no new dependencies between watched lock classes", PASSED,
                   classname=classname, message=counts)
    if d.watched:
        watched.status = FAILED
        watched.message = (f"{len(d.watched)} new lock dependencies between watched classes "
                           f"(not on {baseline}): " + ", ".join(map(_arrow, d.watched[:3]))
                           + (" ..." if len(d.watched) > 3 else ""))
        watched.details = (f"{_listing(d.watched, d)}\n\nReview each: if it is by design, "
                           f"list it under `accepted` in {d.watch_source} with the reason.")
    rest = sorted(d.informational + list(d.accepted))
    info = Case("new lock dependencies (informational)", PASSED, classname=classname,
                message=f"{len(rest)} new dependencies not failing the job, "
                        f"{len(d.new_classes)} new lock classes",
                stdout=_listing(rest, d, d.accepted)
                + ("\n\nnew classes: " + ", ".join(d.new_classes) if d.new_classes else ""))
    return [watched, info]


def write_markdown(d: Diff, path: Path, variant: str, baseline: str) -> Path:
    def code(name: str) -> str:
        return f"`{name}`"

    lines = [f"# Lock dependencies {variant} has and {baseline} has not", "",
             (f"Normalised lockdep tables after the same guest tests (pipeline/lockdep.py: "
              f"keys, counts and `#N` dropped, `/N` subclasses kept). Watched classes and "
              f"accepted edges: `{d.watch_source}`."), "",
             "| | " + baseline + " | " + variant + " |", "|---|---|---|",
             f"| classes | {len(d.base.graph.classes)} | {len(d.patched.graph.classes)} |",
             (f"| direct dependencies | {len(d.base.graph.edges)} | "
              f"{len(d.patched.graph.edges)} |"),
             f"| chains | {len(d.base.chains)} | {len(d.patched.chains)} |", "",
             f"## New lock classes ({len(d.new_classes)})", ""]
    for name in d.new_classes:
        raw = sorted(d.patched.graph.raw_names.get(name, set()) - {name})
        lines.append(f"- {code(name)}" + (f" (as {', '.join(map(code, raw))})" if raw else ""))
    lines += ["", f"## New dependencies ({len(d.new_edges)})", "",
              "| held | then taken | verdict | a chain that shows it |", "|---|---|---|---|"]
    for edge in d.new_edges:
        verdict = ("**watched**" if edge in d.watched else
                   f"accepted: {d.accepted[edge]}" if edge in d.accepted else "informational")
        chain = d.examples.get(edge)
        shown = (" -> ".join(map(code, chain.locks)) + f" ({chain.irq_context})"
                 if chain else "")
        lines.append(f"| {code(edge[0])} | {code(edge[1])} | {verdict} | {shown} |")
    lines += ["", f"## Only on {baseline} ({len(d.gone_edges)})", ""]
    lines += [f"- {code(a)} -> {code(b)}" for a, b in d.gone_edges]
    path.write_text("\n".join(lines) + "\n")
    return path


def summary_entry(d: Diff, baseline: str, seconds: float) -> dict[str, Any]:
    return {"baseline": baseline, "status": FAILED if d.watched else PASSED,
            "classes": {"baseline": len(d.base.graph.classes),
                        "patched": len(d.patched.graph.classes)},
            "edges": {"baseline": len(d.base.graph.edges),
                      "patched": len(d.patched.graph.edges)},
            "new_classes": len(d.new_classes), "new_edges": len(d.new_edges),
            "watched_new_edges": len(d.watched), "accepted_new_edges": len(d.accepted),
            "gone_edges": len(d.gone_edges), "new_chains": d.new_chains,
            "watched": [_arrow(e) for e in d.watched], "seconds": round(seconds, 2)}


# --- the run-level report -------------------------------------------------------------------

def _proves_locking(job: Job, variant: Variant) -> bool:
    for fragment in [*job.kconfig, *variant.kconfig_extra]:
        try:
            if re.search(r"^CONFIG_PROVE_LOCKING=y\b", fragment.read_text(), re.MULTILINE):
                return True
        except OSError:
            continue
    return False


def pairs(job: Job) -> list[tuple[Variant, Variant | None]]:
    """(variant with the series, the variant without it with the same fragments, or None)
    for every lockdep variant of the job that applies a series."""
    if not job.series:
        return []
    found = []
    for v in job.variants:
        if v.series and _proves_locking(job, v):
            base = next((b for b in job.variants if not b.series
                         and b.kconfig_extra == v.kconfig_extra), None)
            found.append((v, base))
    return found


def _compare_variant(run: RunContext, variant: Variant, base: Variant | None,
                     summary: dict[str, Any]) -> list[Case]:
    classname = f"{variant.name}.{STAGE}"
    name = "lock dependencies compared with the baseline"
    if base is None:
        reason = ("no variant without the series and with the same fragments in this run "
                  "(the default job's is baseline-debug: add --variant baseline-debug)")
        summary[variant.name] = {"status": SKIPPED, "reason": reason}
        return [Case(name, SKIPPED, message=reason, classname=classname)]
    start = time.monotonic()
    dumps = {}
    for v in (base, variant):
        session = run.guest_sessions.get(v.name)
        try:
            if session is None:
                raise Missing("its guest tests did not run")
            if not session.completed:
                raise Missing(f"its guest session did not complete ({session.failure})")
            dumps[v.name] = load(session.share)
        except (Missing, FormatError) as exc:
            reason = f"{v.name}: {exc}"
            summary[variant.name] = {"baseline": base.name, "status": SKIPPED,
                                     "reason": reason}
            return [Case(name, SKIPPED, message=reason, classname=classname)]
    d = compare(dumps[base.name], dumps[variant.name], load_watch())
    path = write_markdown(d, run.job.out / variant.name / MARKDOWN, variant.name, base.name)
    seconds = time.monotonic() - start
    summary[variant.name] = summary_entry(d, base.name, seconds) | {"report": str(path)}
    run.log(f"lockdep {variant.name} vs {base.name}: {len(d.new_classes)} new classes, "
            f"{len(d.new_edges)} new dependencies, {len(d.watched)} between watched classes "
            f"({seconds:.2f} s); {path}")
    found = cases(d, variant.name, base.name)
    for case in found:
        case.duration = seconds / len(found)
    return found


def report(run: RunContext) -> None:
    """A `lockdep` stage on every lockdep variant with the series (see pairs()), and
    summary.json's "lockdep"; a bug here is an error case, never a lost report."""
    summary: dict[str, Any] = {}
    reports = {vr.name: vr for vr in run.report.variants}
    for variant, base in pairs(run.job):
        vr = reports.get(variant.name)
        if vr is None:
            continue   # not in this run (the tree failed before it)
        try:
            found = _compare_variant(run, variant, base, summary)
        except Exception as exc:  # noqa: BLE001 - a bug: report it, never end without JUnit
            message = f"internal error: {type(exc).__name__}: {exc}"
            run.log(traceback.format_exc())
            run.report.internal_error = (run.report.internal_error
                                         or f"lockdep report: {message}")
            found = [Case("lockdep report", ERROR, message=message,
                          details=traceback.format_exc(), classname=f"{variant.name}.{STAGE}")]
        stage = Stage(STAGE, found)
        stage.duration = sum(c.duration for c in found)
        vr.stages.append(stage)
    if summary:
        run.report.lockdep = summary
