"""The run's results as a KCIDB v5 document (OUT/kcidb.json), for the KernelCI common database.

Objects and how they are named (`ORIGIN` is the KCIDB origin; RUN is the run's id, the start
time in UTC and a short hash, so two runs never share an id):

- checkouts: `ORIGIN:RUN/base` (the baseline tree, no patches) for the variants built without
  the series, `ORIGIN:RUN/series` (the tree plus the series) for those built with it. The
  commit is the baseline commit the pipeline made of the tree (a local commit: there is no
  public repository URL to give); `patchset_hash` is KCIDB's: sha256 over the
  newline-terminated sha256 of each patch, in order;
- builds: `ORIGIN:RUN/<variant>`, one per variant: configure + build, `config_name` = the
  variant;
- tests: `ORIGIN:RUN/<variant>/<path>`, linked to the variant's build. Paths are dotted (KCIDB
  allows only `[A-Za-z0-9_-]` between the dots, see `path_part`):
  `boot`; `cgroup_pool.<module>.<test>[.<parameter>]` for the guest tests (pytest's `[...]`
  becomes one more component); `kselftest.<collection>.<program>[.<subtest>...]`;
  `kselftest.build` / `kselftest.run` / `kselftest.report` for those stages; the benchmark
  figures as `bench.<scenario>.<op>.<metric>` with a `number` (see `bench_tests`).

Files are given as file:// URLs of the results folder (KCIDB wants URLs; a relative reference
is not a URI to its schema). Statuses come from `CASE_STATUS`; a stage that never started
(a placeholder after an earlier failure) gives a build status MISS and no test. The document is
validated against kcidb-io's schema in the tests (kcidb-io is not needed at run time).
"""

from __future__ import annotations

import datetime
import email.parser
import functools
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .results import ERROR, FAILED, PASSED, SKIPPED, Case, RunReport, Stage, VariantReport
from .series import Series

ORIGIN = "kernel_pipeline"        # KCIDB origins are [a-z0-9_]+: no "-"
SCHEMA_VERSION = {"major": 5, "minor": 3}
ARCHITECTURE = "x86_64"
FILE_NAME = "kcidb.json"

# The KCIDB v5 status vocabulary, highest priority first (kcidb-io schema "status").
STATUSES = ("FAIL", "ERROR", "MISS", "PASS", "DONE", "SKIP")
# A JUnit case (or stage) status -> KCIDB status.
CASE_STATUS: dict[str, str] = {   # keyed by Status, looked up with its str value
    PASSED: "PASS",
    FAILED: "FAIL",
    ERROR: "ERROR",
    SKIPPED: "SKIP",
}
NOT_RUN_STATUS = "MISS"           # a stage that never started (an earlier one failed)
BENCH_STATUS = {False: "DONE", True: "FAIL"}    # has problems -> status of its figures

# Stages that are the checkout and the build, not tests.
CHECKOUT_STAGES = ("apply",)
BUILD_STAGES = ("configure", "build")
# Stages reported case by case (see _case_tests); any other stage is one test (its path here,
# else its name).
GUEST_STAGE, KSELFTEST_STAGE = "guest", "kselftest"
STAGE_TESTS = {
    "boot": "boot",
    "kselftest-build": "kselftest.build",
    "kselftest-run": "kselftest.run",
    "kselftest-report": "kselftest.report",
}
GUEST_SUITE = "cgroup_pool"       # the root of the guest tests' paths
GUEST_ROOTS = ("guest-tests",)    # leading folders of the guest test modules, left out
KSELFTEST_SUITE = "kselftest"
BENCH_SUITE = "bench"
BENCH_FORMAT = "pipeline-bench/1"
# /2: the container-start benchmark (strategies, N curve, headline instead of claim)
BENCH_FORMATS = (BENCH_FORMAT, "pipeline-bench/2")
BENCH_UNIT = "ms"                 # every bench.json figure is in milliseconds
BENCH_FILES = ("bench.json", "bench/bench.json")   # looked for in the results folder

# Files of OUT/<variant>/ and where they go in the document.
BUILD_LOG, CONFIG = "build.log", "config"
BUILD_OUTPUTS = ("bzImage", "configure.log")
STAGE_LOGS = {"boot": "console.log", GUEST_STAGE: "console.log",
              KSELFTEST_STAGE: "kselftest/console.log", "kselftest-run": "kselftest/console.log",
              "lockdep": "lockdep-new.md"}

EXCERPT_MAX = 16384               # KCIDB log_excerpt maxLength
_PART_BAD = re.compile(r"[^A-Za-z0-9_-]+")
_PARAM = re.compile(r"^(?P<name>[^\[]*)\[(?P<param>.*)\]$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_LORE = re.compile(r"^https?://lore\.kernel\.org/(?:[^/]+/)?(?P<id>[^/@\s]+@[^/\s]+?)/?$")
_CC_TEXT = re.compile(r'^CONFIG_CC_VERSION_TEXT="(?P<text>.*)"$', re.MULTILINE)


# --- what the run knows besides the report -------------------------------------------------

@dataclass(frozen=True)
class PatchFile:
    """One patch of the series, as the bytes `git am` was given."""

    name: str
    data: bytes
    path: Path | None = None      # its own file (a series folder); None: a message of an mbox


@dataclass(frozen=True)
class SeriesInfo:
    name: str
    patches: tuple[PatchFile, ...]
    message_id: str = ""          # without <>; "" when unknown
    link: str = ""


@dataclass
class RunInfo:
    """The run's facts a RunReport does not carry."""

    out: Path                                 # the results folder
    tree_spec: str
    start_time: float                         # time.time() when the run began
    tree_commit: str = ""                     # "" when the tree was never prepared
    tree_version: str = ""
    tarball_sha256: str = ""                  # the job's tree_sha256, when given
    series: SeriesInfo | None = None
    bench: dict[str, Any] | None = None                 # a bench.json's content
    bench_source: Path | None = None
    compiler: Callable[[], str] | None = field(default=None, repr=False)  # fallback probe


# --- small helpers --------------------------------------------------------------------------

def path_part(text: str) -> str:
    """One component of a KCIDB test path: runs of characters other than [A-Za-z0-9_-]
    (dots included) become one `_`."""
    return _PART_BAD.sub("_", text) or "_"


def join_path(*parts: str) -> str:
    return ".".join(path_part(p) for p in parts)


def iso_time(seconds: float) -> str:
    """An RFC 3339 UTC time with milliseconds."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds")


def _text(text: str, limit: int = EXCERPT_MAX, tail: bool = False) -> str:
    """Text KCIDB accepts: valid UTF-8, no NUL, at most `limit` characters (the head, or the
    tail of a console log)."""
    text = text.replace("\0", "").encode("utf-8", "replace").decode("utf-8")
    if len(text) <= limit:
        return text
    return text[-limit:] if tail else text[:limit]


def _url(path: Path) -> str | None:
    return path.resolve().as_uri() if path.is_file() else None


def _resource(path: Path) -> dict[str, Any] | None:
    url = _url(path)
    return {"name": path.name, "url": url} if url else None


def _put(obj: dict[str, Any], key: str, value: object) -> None:
    """Set `key` unless the value is missing: KCIDB fields are never null."""
    if value not in (None, "", [], {}):
        obj[key] = value


def kcidb_status(status: str) -> str:
    """The KCIDB status of a case or stage status (KeyError for an unknown one)."""
    return CASE_STATUS[status]


def _first_bad(cases: Iterable[Case]) -> Case | None:
    return next((c for c in cases if c.status in (FAILED, ERROR)), None)


def _worst(stages: list[Stage]) -> str:
    """The KCIDB status of stages taken together (highest priority of STATUSES)."""
    found = {kcidb_status(s.status) if s.ran else NOT_RUN_STATUS for s in stages}
    return next((s for s in STATUSES if s in found), NOT_RUN_STATUS)


# --- the series and the compiler ---------------------------------------------------------------

def patchset_hash(patches: Iterable[bytes]) -> str:
    """KCIDB's patchset hash: sha256 over the newline-terminated hex sha256 of each patch, in
    order (`sha256sum *.patch | cut -c-64 | sha256sum`); "" for no patches."""
    lines = [hashlib.sha256(p).hexdigest() + "\n" for p in patches]
    return hashlib.sha256("".join(lines).encode()).hexdigest() if lines else ""


def _header(text: str, name: str) -> str:
    head = email.parser.HeaderParser().parsestr(text.split("\n\n", 1)[0] + "\n\n")
    return str(head.get(name, "")).strip().strip("<>").strip()


def series_message_id(link: str, cover: str, first: str) -> str:
    """The Message-ID of the mail that introduced the series: from a lore link, else the
    cover letter's Message-Id, else the mail the first patch answers (its In-Reply-To, the
    cover letter), else the first patch's own; "" when none is known."""
    match = _LORE.match(link.strip())
    if match:
        return match.group("id")
    for text, name in ((cover, "Message-Id"), (first, "In-Reply-To"), (first, "Message-Id")):
        value = _header(text, name) if text else ""
        if "@" in value and " " not in value:
            return value
    return ""


def series_info(series: Series) -> SeriesInfo:
    """SeriesInfo of a loaded series (a folder's patch files or an mbox's mails)."""
    folder = series.source if series.source.is_dir() else None
    patches = tuple(PatchFile(p.name, p.text.encode("utf-8"), folder / p.name if folder else None)
                    for p in series.patches)
    cover = folder / "0000-cover-letter.patch" if folder else None
    cover_text = cover.read_text(errors="replace") if cover and cover.is_file() else ""
    first = series.patches[0].text if series.patches else ""
    return SeriesInfo(series.name, patches, series_message_id(series.link, cover_text, first),
                      series.link)


def compiler_from_config(config: Path) -> str:
    """The compiler a kernel config was made with (CONFIG_CC_VERSION_TEXT); "" if unknown."""
    try:
        match = _CC_TEXT.search(config.read_text(errors="replace"))
    except OSError:
        return ""
    return match.group("text") if match else ""


@functools.cache
def gcc_version() -> str:
    """The first line of `gcc --version` ("" without gcc)."""
    try:
        done = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.splitlines()[0].strip() if done.returncode == 0 and done.stdout else ""


# --- checkouts --------------------------------------------------------------------------------

def run_id(info: RunInfo) -> str:
    """RUN of the ids: start time (UTC) and a hash of what makes this run unique."""
    stamp = datetime.datetime.fromtimestamp(info.start_time, tz=datetime.UTC)
    digest = hashlib.sha256("\0".join([
        repr(info.start_time), str(info.out.resolve()), info.tree_spec, info.tree_commit,
        str(os.getpid())]).encode()).hexdigest()
    return f"{stamp:%Y%m%dT%H%M%SZ}-{digest[:8]}"


def tree_name(spec: str) -> str:
    """`debian:6.1` -> `debian-6.1`; a tarball, URL or checkout -> its file name."""
    if spec.startswith("debian:"):
        return "debian-" + spec.split(":", 1)[1]
    name = spec.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar"):
        name = name.removesuffix(suffix)
    return name or spec


def uses_series(variant: VariantReport) -> bool:
    return any(s.name in CHECKOUT_STAGES for s in variant.stages)


def _checkout_valid(report: RunReport, info: RunInfo, variants: list[VariantReport],
                    with_series: bool) -> tuple[bool | None, Case | None]:
    """(valid, the case that says why not): the tree was prepared and, with the series,
    every apply stage passed. None when the run was stopped before that was known."""
    if not info.tree_commit:
        bad = next((b for v in variants for s in v.stages if (b := _first_bad(s.cases))), None)
        return (None if report.interrupted else False), bad
    if not with_series:
        return True, None
    applies = [s for v in variants for s in v.stages if s.name in CHECKOUT_STAGES]
    bad = _first_bad(c for s in applies for c in s.cases)
    if bad is not None:
        return (None if report.interrupted and bad.status == ERROR else False), bad
    if applies and all(s.ran and s.status == PASSED for s in applies):
        return True, None
    return None, None


def _checkout(report: RunReport, info: RunInfo, checkout_id: str,
              variants: list[VariantReport], with_series: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": checkout_id, "origin": ORIGIN, "tree_name": tree_name(info.tree_spec),
                 "start_time": iso_time(info.start_time)}
    if _SHA1.match(info.tree_commit):
        obj["git_commit_hash"] = info.tree_commit
    misc = {"tree_spec": info.tree_spec, "tree_version": info.tree_version,
            "baseline_commit": info.tree_commit, "tarball_sha256": info.tarball_sha256,
            "variants": [v.name for v in variants]}
    comment = f"{tree_name(info.tree_spec)} {info.tree_version}".strip()
    series = info.series if with_series else None
    if not with_series:
        obj["patchset_hash"] = ""             # KCIDB: "" means no patches
    if series is not None:
        obj["patchset_hash"] = patchset_hash(p.data for p in series.patches)
        files = [r for r in (_resource(p.path) for p in series.patches if p.path) if r]
        if len(files) == len(series.patches):
            obj["patchset_files"] = files
        _put(obj, "message_id", series.message_id)
        comment += f" + series {series.name} ({len(series.patches)} patches)"
        misc.update(series=series.name, series_link=series.link)
    obj["comment"] = comment
    valid, bad = _checkout_valid(report, info, variants, with_series)
    if valid is not None:
        obj["valid"] = valid
    if bad is not None:
        _put(obj, "log_excerpt", _text(f"{bad.message}\n\n{bad.details}".strip()))
    obj["misc"] = {k: v for k, v in misc.items() if v not in ("", None, [])}
    return obj


# --- builds -----------------------------------------------------------------------------------

def _build(variant: VariantReport, build_id: str, checkout_id: str, info: RunInfo) -> dict[str, Any]:
    out = info.out / variant.name
    stages = [s for s in variant.stages if s.name in BUILD_STAGES]
    obj: dict[str, Any] = {"id": build_id, "checkout_id": checkout_id, "origin": ORIGIN,
                 "architecture": ARCHITECTURE, "config_name": variant.name,
                 "status": _worst(stages) if stages else NOT_RUN_STATUS}
    ran = [s for s in stages if s.ran]
    if ran:
        started = [s.started for s in ran if s.started]
        _put(obj, "start_time", iso_time(min(started)) if started else None)
        obj["duration"] = round(sum(s.duration for s in ran), 3)
    compiler = compiler_from_config(out / CONFIG)
    if not compiler and any(s.name == "build" for s in ran) and info.compiler is not None:
        compiler = info.compiler()
    _put(obj, "compiler", compiler)
    _put(obj, "config_url", _url(out / CONFIG))
    _put(obj, "log_url", _url(out / BUILD_LOG))
    _put(obj, "output_files", [r for r in (_resource(out / n) for n in BUILD_OUTPUTS) if r])
    bad = next(((s, b) for s in stages if (b := _first_bad(s.cases))), None)
    if bad is not None:
        _put(obj, "comment", _text(f"{bad[0].name}: {bad[1].message}", 1000))
        _put(obj, "log_excerpt", _text(bad[1].details or bad[1].message))
    else:
        reasons = [c.message for s in stages for c in s.cases if c.message]
        _put(obj, "comment", _text("; ".join(reasons), 1000))
    keys = ("tree_version", "base_config", "fragments", "config_hash", "series")
    obj["misc"] = {k: variant.properties[k] for k in keys if variant.properties.get(k)}
    return obj


# --- tests ------------------------------------------------------------------------------------

def guest_path(case: Case, variant: str) -> str:
    """`<variant>.guest.guest-tests.test_pool_size` + `TestX::test_y[4-8]` ->
    `cgroup_pool.test_pool_size.TestX.test_y.4-8`."""
    module = case.classname.removeprefix(f"{variant}.{GUEST_STAGE}")
    parts = [p for p in module.split(".") if p]
    while parts and parts[0] in GUEST_ROOTS:
        parts.pop(0)
    names = [n for n in case.name.split("::") if n] if case.classname else []
    if names:
        match = _PARAM.match(names[-1])
        if match:
            names[-1:] = [match.group("name"), match.group("param")]
    return join_path(GUEST_SUITE, *parts, *names)


def kselftest_path(case: Case, variant: str) -> str:
    """`<variant>.kselftest.cgroup` + `test_core: a / b` -> `kselftest.cgroup.test_core.a.b`."""
    collection = case.classname.removeprefix(f"{variant}.{KSELFTEST_STAGE}.")
    program, _, subtest = case.name.partition(": ")
    subtests = [s for s in subtest.split(" / ") if s.strip()]
    return join_path(KSELFTEST_SUITE, collection, program, *subtests)


def _test(status: str, build_id: str, path: str, duration: float) -> dict[str, Any]:
    """A test without its id (see _give_ids)."""
    return {"id": "", "build_id": build_id, "origin": ORIGIN, "path": path,
            "status": status, "duration": round(max(duration, 0.0), 3)}


def _environment(variant: VariantReport) -> dict[str, Any]:
    accel, qemu = variant.properties.get("accel", ""), variant.properties.get("qemu_version", "")
    env: dict[str, Any] = {"comment": f"QEMU {qemu or '?'} x86_64 guest ({accel or '?'})"}
    misc = {k: v for k, v in (("accel", accel), ("qemu_version", qemu)) if v}
    if misc:
        env["misc"] = misc
    return env


def _case_tests(stage: Stage, variant: str, build_id: str) -> list[dict[str, Any]]:
    """A guest or kselftest stage: one test per case."""
    to_path = guest_path if stage.name == GUEST_STAGE else kselftest_path
    tests = []
    for case in stage.cases:
        test = _test(kcidb_status(case.status), build_id, to_path(case, variant),
                     case.duration)
        _put(test, "comment", _text(case.message, 1000))
        _put(test, "log_excerpt", _text(case.details))
        misc = {"junit_classname": case.classname, "junit_name": case.name,
                "flaky": case.flaky, "kernel_log": _text(case.stdout)}
        test["misc"] = {k: v for k, v in misc.items() if v}
        tests.append(test)
    return tests


def _stage_test(stage: Stage, build_id: str) -> dict[str, Any]:
    """Any other stage (boot, kselftest-build, ...): one test, the worst of its cases."""
    path = STAGE_TESTS.get(stage.name) or join_path(stage.name)
    test = _test(_worst([stage]), build_id, path, stage.duration)
    if stage.started:
        test["start_time"] = iso_time(stage.started)
    bad = _first_bad(stage.cases)
    if stage.cases:
        _put(test, "comment", _text((bad or stage.cases[0]).message, 1000))
    if bad is not None:
        _put(test, "log_excerpt", _text(bad.details or bad.message, tail=True))
    test["misc"] = {"cases": {c.name: kcidb_status(c.status) for c in stage.cases}}
    return test


def _variant_tests(variant: VariantReport, build_id: str, info: RunInfo) -> list[dict[str, Any]]:
    out = info.out / variant.name
    env = _environment(variant)
    tests: list[dict[str, Any]] = []
    for stage in variant.stages:
        if stage.name in CHECKOUT_STAGES + BUILD_STAGES or not stage.ran:
            continue
        if stage.name in (GUEST_STAGE, KSELFTEST_STAGE):
            found = _case_tests(stage, variant.name, build_id)
        else:
            found = [_stage_test(stage, build_id)]
        log_url = _url(out / STAGE_LOGS[stage.name]) if stage.name in STAGE_LOGS else None
        for test in found:
            _put(test, "log_url", log_url)
            test["environment"] = env
        tests += found
    _give_ids(tests, build_id)
    return tests


def _give_ids(tests: list[dict[str, Any]], prefix: str) -> None:
    """`<prefix>/<path>`, with `#2`, `#3` ... when two tests share a path."""
    seen: dict[str, int] = {}
    for test in tests:
        base = f"{prefix}/{test['path']}"
        seen[base] = seen.get(base, 0) + 1
        test["id"] = base if seen[base] == 1 else f"{base}#{seen[base]}"


# --- the benchmark ----------------------------------------------------------------------------

def bench_tests(bench: dict[str, Any], build_ids: dict[str, str], source: Path | None = None,
                versions: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """KCIDB tests of a `pipeline bench` report (bench.json, format pipeline-bench/1).

    One test per (kernel, scenario, operation, metric): path `bench.<scenario>.<op>.<metric>`
    (e.g. `bench.pool-full_loaded.mkdir.p99`), `number` = the median across repetitions in
    ms, the range and spread in misc; status DONE, or FAIL when the scenario did not do what
    it claims (its `problems`). The RFC claim check adds `bench.claim.<scenario>.<metric>`
    (the pool / no-pool ratio, dimensionless) to the patched kernel. A kernel label (baseline,
    patched) is linked to the build of the variant of that name; labels without one, or whose
    guest kernel release does not start with `versions[label]`, are left out.
    ValueError if `bench` is not a pipeline-bench/1 report."""
    if not isinstance(bench, dict) or bench.get("format") not in BENCH_FORMATS:
        raise ValueError(f"not a {' or '.join(BENCH_FORMATS)} report: format "
                         f"{bench.get('format') if isinstance(bench, dict) else None!r}")
    versions = versions or {}
    usable: dict[str, str] = {}
    for label, label_build in build_ids.items():
        release = (((bench.get("conditions") or {}).get(label) or {}).get("kernel")
                   or {}).get("release", "")
        if not versions.get(label) or str(release).startswith(versions[label]):
            usable[label] = label_build
    tests: list[dict[str, Any]] = []
    where: dict[str, Any] = {"comparable": bool(bench.get("comparable"))}
    if source is not None:
        where["bench_json"] = str(source)
    for s in bench.get("scenarios", []):
        build_id = usable.get(s["kernel"])
        if build_id is None:
            continue
        status = BENCH_STATUS[bool(s["problems"])]
        for metric, spread in s["summary"].items():
            path = join_path(BENCH_SUITE, s["scenario"], s["op"], metric)
            test = {"id": f"{build_id}/{path}", "build_id": build_id, "origin": ORIGIN,
                    "path": path, "status": status,
                    "number": {"value": float(spread["median"]), "unit": BENCH_UNIT},
                    "misc": {"lo": spread["lo"], "hi": spread["hi"], "stdev": spread["stdev"],
                             "reps": spread["n"], "pool": s["pool"],
                             "pool_size": s["pool_size"], "load": s["load"],
                             "fast_path": s["fast_path"], **where}}
            _put(test, "comment", _text("; ".join(s["problems"]), 1000))
            tests.append(test)
    patched = usable.get("patched")
    for row in bench.get("claim", []) if patched else []:
        path = join_path(BENCH_SUITE, "claim", row["subject"], row["metric"])
        tests.append({"id": f"{patched}/{path}", "build_id": patched, "origin": ORIGIN,
                      "path": path, "status": "DONE", "number": {"value": float(row["ratio"])},
                      "comment": _text(f"{row['subject']} vs {row['reference']}, "
                                       f"{row['metric']}: {row['verdict']}", 1000),
                      "misc": {"reference": row["reference"], "subject_ms": row["subject_ms"],
                               "reference_ms": row["reference_ms"],
                               "separated": row["separated"], **where}})
    for row in bench.get("headline", []) if patched else []:
        if row.get("d_vs_best") is None:
            continue
        case = f"smp{row['smp']}_{row['parents']}_{'loaded' if row['load'] else 'idle'}"
        path = join_path(BENCH_SUITE, "headline", f"{case}_n{row['n']}", "d_vs_best")
        tests.append({"id": f"{patched}/{path}", "build_id": patched, "origin": ORIGIN,
                      "path": path, "status": "DONE", "number": {"value": float(row["d_vs_best"])},
                      "comment": _text(f"kernel pool p99 / best of favordynmods and the "
                                       f"user-space pool ({row['best']})", 1000),
                      "misc": {k: row[k] for k in ("a", "b", "c", "d", "e")} | where})
    return tests


def find_bench(out: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The bench.json in the results folder (OUT/bench.json or OUT/bench/bench.json, as
    `pipeline bench --out` wrote it), or (None, None). A file that is not a bench report is
    ignored."""
    for rel in BENCH_FILES:
        path = out / rel
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") in BENCH_FORMATS:
            return data, path
    return None, None


# --- the document -----------------------------------------------------------------------------

def document(report: RunReport, info: RunInfo) -> dict[str, Any]:
    """The KCIDB v5 document of a run."""
    run = f"{ORIGIN}:{run_id(info)}"
    groups: dict[bool, list[VariantReport]] = {False: [], True: []}
    for variant in report.variants:
        groups[uses_series(variant)].append(variant)
    checkout_ids = {False: f"{run}/base", True: f"{run}/series"}
    # One checkout per source the variants were built from (the base tree alone when there
    # is no variant at all).
    wanted = [s for s in (False, True) if groups[s]] or [False]
    checkouts = [_checkout(report, info, checkout_ids[s], groups[s], s) for s in wanted]
    builds, tests = [], []
    build_ids: dict[str, str] = {}
    versions: dict[str, str] = {}
    for variant in report.variants:
        build_id = f"{run}/{variant.name}"
        build_ids[variant.name] = build_id
        versions[variant.name] = variant.properties.get("tree_version", "")
        builds.append(_build(variant, build_id, checkout_ids[uses_series(variant)], info))
        tests += _variant_tests(variant, build_id, info)
    if info.bench is not None:
        tests += bench_tests(info.bench, build_ids, info.bench_source, versions)
    return {"version": dict(SCHEMA_VERSION), "checkouts": checkouts, "builds": builds,
            "tests": tests}


def write(report: RunReport, info: RunInfo, path: Path) -> dict[str, Any]:
    """Write the document to `path` (atomically); returns it."""
    data = document(report, info)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return data
