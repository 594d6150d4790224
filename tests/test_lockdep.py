"""pipeline.lockdep on excerpts in the format of kernel/locking/lockdep_proc.c (6.1):
/proc/lockdep is `%p` key, ` FD:%5ld BD:%5ld <usage>: <name>` then ` -> [%p] <name>` per
direct (distance 1) dependency and an empty line; /proc/lockdep_chains is `irq_context: X`
then `[%p] <name>` per held lock and an empty line. Names are class->name, `#<name_version>`
when it is > 1, `/<subclass>` when it is not 0."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

from pipeline import lockdep
from pipeline.results import FAILED, PASSED

BASE_LOCKDEP = """\
all lock classes:
00000000c5b5a7e2 FD:   41 BD:    3 +.+.: cgroup_mutex
 -> [00000000a3f1e0b2] fs_reclaim
 -> [000000001f7e8a9c] &root->kernfs_rwsem
 -> [00000000b2c4d6e8] css_set_lock

00000000b2c4d6e8 FD:    1 BD:   52 ....: css_set_lock

000000001f7e8a9c FD:   12 BD:   20 ++++: &root->kernfs_rwsem
 -> [0000000077aa11bb] &type->i_mutex_dir_key#4

0000000077aa11bb FD:    3 BD:   21 ++++: &type->i_mutex_dir_key#4
 -> [0000000012345678] &type->i_mutex_dir_key#4/1

0000000012345678 FD:    1 BD:   22 +.+.: &type->i_mutex_dir_key#4/1

00000000a3f1e0b2 FD:    1 BD:   90 +.+.: fs_reclaim

000000009abcdef0 FD:    2 BD:    1 +.+.: kn->active#12
 -> [00000000c5b5a7e2] cgroup_mutex

"""

# The same kernel with the series, another boot: other hashed keys, other counts, other
# name_version numbers; plus the pool's locks and one new edge between watched classes.
PATCHED_LOCKDEP = """\
all lock classes:
00000000deadbeef FD:   57 BD:    4 +.+.: cgroup_mutex
 -> [0000000011111111] fs_reclaim
 -> [0000000022222222] &root->kernfs_rwsem
 -> [0000000033333333] css_set_lock
 -> [0000000044444444] &pool->lock

0000000033333333 FD:    1 BD:   60 ....: css_set_lock

0000000022222222 FD:   14 BD:   25 ++++: &root->kernfs_rwsem
 -> [0000000055555555] &type->i_mutex_dir_key#5
 -> [0000000033333333] css_set_lock

0000000055555555 FD:    3 BD:   26 ++++: &type->i_mutex_dir_key#5
 -> [0000000066666666] &type->i_mutex_dir_key#5/1

0000000066666666 FD:    1 BD:   27 +.+.: &type->i_mutex_dir_key#5/1

0000000011111111 FD:    1 BD:   99 +.+.: fs_reclaim

0000000044444444 FD:    1 BD:    5 ....: &pool->lock
 -> [0000000011111111] fs_reclaim

0000000077777777 FD:    3 BD:    1 +.+.: &pool->mutex
 -> [00000000deadbeef] cgroup_mutex

00000000abababab FD:    2 BD:    1 +.+.: kn->active#13
 -> [00000000deadbeef] cgroup_mutex

"""

BASE_CHAINS = """\
all lock chains:
irq_context: 0
[00000000c5b5a7e2] cgroup_mutex
[000000001f7e8a9c] &root->kernfs_rwsem

irq_context: softirq
[00000000b2c4d6e8] css_set_lock

"""

PATCHED_CHAINS = """\
all lock chains:
irq_context: 0
[00000000deadbeef] cgroup_mutex
[0000000022222222] &root->kernfs_rwsem

irq_context: 0
[0000000077777777] &pool->mutex
[00000000deadbeef] cgroup_mutex
[0000000044444444] &pool->lock

irq_context: 0
[0000000022222222] &root->kernfs_rwsem
[0000000033333333] css_set_lock

"""

STATS = """\
 lock-classes:                         1864 [max: 8192]
 direct dependencies:                 12052 [max: 32768]
 dependency chains:                   18313 [max: 65536]
"""

WATCH = """\
classes:
  - cgroup_mutex
  - css_set_lock
  - "&root->kernfs_rwsem"
  - "&pool->*"
accepted: []
"""


def share(tmp_path: Path, name: str, lockdep_text: str | None, chains: str | None = None,
          manifest: dict | None = None) -> Path:
    """OUT/<name>/guest with the files the guest init copies."""
    folder = tmp_path / name / "guest" / "lockdep"
    folder.mkdir(parents=True)
    files = {"lockdep": lockdep_text, "lockdep_chains": chains, "lockdep_stats": STATS}
    for fname, text in files.items():
        if text is not None:
            (folder / fname).write_text(text)
    if manifest is None:
        manifest = {f: {"bytes": len(t), "truncated": False} for f, t in files.items()
                    if t is not None}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / name / "guest"


def watch(tmp_path: Path, text: str = WATCH) -> lockdep.Watch:
    path = tmp_path / "watch.yaml"
    path.write_text(text)
    return lockdep.load_watch(path)


INIT = Path(lockdep.__file__).parent / "guest" / "init.py"


@pytest.fixture(scope="module")
def init():
    spec = importlib.util.spec_from_file_location("guest_init_lockdep", INIT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the guest side: pipeline/guest/init.py copies the files --------------------------------

def test_init_copies_the_lockdep_files_with_a_manifest(init, tmp_path):
    proc, out = tmp_path / "proc", tmp_path / "out"
    proc.mkdir()
    out.mkdir()
    (proc / "lockdep").write_text(BASE_LOCKDEP)
    (proc / "lockdep_chains").write_text(BASE_CHAINS)
    (proc / "lockdep_stats").write_text(STATS)
    manifest = init.copy_lockdep(str(proc), str(out))
    assert manifest["lockdep"]["bytes"] == len(BASE_LOCKDEP)
    assert manifest["lockdep"]["truncated"] is False and manifest["lockdep"]["seconds"] >= 0
    assert (out / "lockdep" / "lockdep_chains").read_text() == BASE_CHAINS
    assert json.loads((out / "lockdep" / "manifest.json").read_text()) == manifest
    # and the host reads what the guest wrote
    assert lockdep.load(out).graph.classes >= {"cgroup_mutex", "kn->active"}


def test_init_cuts_a_big_file_and_says_so(init, tmp_path):
    proc, out = tmp_path / "proc", tmp_path / "out"
    proc.mkdir()
    out.mkdir()
    (proc / "lockdep").write_text(BASE_LOCKDEP)
    (proc / "lockdep_chains").write_text(BASE_CHAINS)
    manifest = init.copy_lockdep(str(proc), str(out), limit=100)
    assert manifest["lockdep"]["bytes"] == 100 and manifest["lockdep"]["truncated"] is True
    assert (out / "lockdep" / "lockdep").stat().st_size == 100
    assert "lockdep_stats" in manifest and "error" in manifest["lockdep_stats"]
    with pytest.raises(lockdep.Missing, match="cut at 100 bytes"):
        lockdep.load(out)


def test_init_copies_nothing_from_a_kernel_without_lockdep(init, tmp_path):
    (tmp_path / "proc").mkdir()
    assert init.copy_lockdep(str(tmp_path / "proc"), str(tmp_path)) == {}
    assert not (tmp_path / "lockdep").exists()


def test_init_never_raises_when_the_share_is_unwritable(init, tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "lockdep").write_text(BASE_LOCKDEP)
    (tmp_path / "out").write_text("a file, not a folder")
    assert init.copy_lockdep(str(proc), str(tmp_path / "out")) == {}


def test_host_does_not_follow_a_symlink_the_guest_left(tmp_path):
    guest = share(tmp_path, "patched-debug", BASE_LOCKDEP, BASE_CHAINS)
    secret = tmp_path / "host-secret"
    secret.write_text(PATCHED_CHAINS)
    (guest / "lockdep" / "lockdep_chains").unlink()
    os.symlink(secret, guest / "lockdep" / "lockdep_chains")
    with pytest.raises(lockdep.Missing, match="not a regular file"):
        lockdep.load(guest)


# --- normalisation --------------------------------------------------------------------------

@pytest.mark.parametrize("raw, norm", [
    ("cgroup_mutex", "cgroup_mutex"),
    ("&type->i_mutex_dir_key#4", "&type->i_mutex_dir_key"),      # name_version: dropped
    ("&type->i_mutex_dir_key#4/1", "&type->i_mutex_dir_key/1"),  # subclass: kept
    ("&sb->s_type->i_mutex_key/2", "&sb->s_type->i_mutex_key/2"),
    ("kn->active#123", "kn->active"),
    ("(wq_completion)events", "(wq_completion)events"),
    ("&(&pool->lock)->rlock", "&(&pool->lock)->rlock"),
    ("sk_lock-AF_INET", "sk_lock-AF_INET"),
])
def test_normalise_drops_the_name_version_and_keeps_the_subclass(raw, norm):
    assert lockdep.normalise(raw) == norm


# --- parsing --------------------------------------------------------------------------------

def test_parse_lockdep_gives_classes_and_direct_edges_without_keys_or_counts():
    graph = lockdep.parse_lockdep(BASE_LOCKDEP)
    assert graph.classes == {"cgroup_mutex", "css_set_lock", "&root->kernfs_rwsem",
                             "&type->i_mutex_dir_key", "&type->i_mutex_dir_key/1",
                             "fs_reclaim", "kn->active"}
    assert graph.edges == {("cgroup_mutex", "fs_reclaim"),
                           ("cgroup_mutex", "&root->kernfs_rwsem"),
                           ("cgroup_mutex", "css_set_lock"),
                           ("&root->kernfs_rwsem", "&type->i_mutex_dir_key"),
                           ("&type->i_mutex_dir_key", "&type->i_mutex_dir_key/1"),
                           ("kn->active", "cgroup_mutex")}
    assert graph.raw_names["&type->i_mutex_dir_key"] == {"&type->i_mutex_dir_key#4"}


def test_parse_lockdep_takes_the_debug_lockdep_ops_field_and_unhashed_keys():
    text = ("all lock classes:\n"
            "ffffffff83a1c2d0 OPS:   1234 FD:    2 BD:    1 +.+.: cgroup_mutex\n"
            " -> [ffffffff83a1c3e0] css_set_lock\n\n"
            "ffffffff83a1c3e0 OPS:     17 FD:    1 BD:    2 ....: css_set_lock\n\n")
    graph = lockdep.parse_lockdep(text)
    assert graph.classes == {"cgroup_mutex", "css_set_lock"}
    assert graph.edges == {("cgroup_mutex", "css_set_lock")}


def test_parse_lockdep_keeps_names_with_spaces_and_refuses_other_text():
    text = ("all lock classes:\n"
            "(____ptrval____) FD:    1 BD:    1 ....: (wq_completion)my wq\n\n")
    assert lockdep.parse_lockdep(text).classes == {"(wq_completion)my wq"}
    with pytest.raises(lockdep.FormatError, match="line 2"):
        lockdep.parse_lockdep("all lock classes:\nnot a lockdep line\n")


def test_parse_chains_gives_the_held_locks_in_order():
    chains = lockdep.parse_chains(PATCHED_CHAINS)
    assert chains[1] == lockdep.Chain("0", ("&pool->mutex", "cgroup_mutex", "&pool->lock"))
    assert len(chains) == 3
    assert lockdep.parse_chains(BASE_CHAINS)[1] == lockdep.Chain("softirq", ("css_set_lock",))


def test_parse_chains_of_a_buggered_table():
    assert lockdep.parse_chains("(buggered) all lock chains:\n") == []


# --- loading the guest's share --------------------------------------------------------------

def test_load_reads_the_files_the_guest_copied(tmp_path):
    dump = lockdep.load(share(tmp_path, "baseline-debug", BASE_LOCKDEP, BASE_CHAINS))
    assert "cgroup_mutex" in dump.graph.classes
    assert len(dump.chains) == 2
    assert dump.stats["lock-classes"] == "1864 [max: 8192]"


def test_load_without_files_says_why(tmp_path):
    (tmp_path / "patched" / "guest").mkdir(parents=True)
    with pytest.raises(lockdep.Missing, match="no /proc/lockdep"):
        lockdep.load(tmp_path / "patched" / "guest")


def test_load_refuses_a_truncated_dump(tmp_path):
    guest = share(tmp_path, "patched-debug", BASE_LOCKDEP, BASE_CHAINS,
                  manifest={"lockdep": {"bytes": 8388608, "truncated": True},
                            "lockdep_chains": {"bytes": 10, "truncated": False}})
    with pytest.raises(lockdep.Missing, match="lockdep was cut at 8388608 bytes"):
        lockdep.load(guest)


def test_load_refuses_a_dump_that_could_not_be_read(tmp_path):
    guest = share(tmp_path, "patched-debug", BASE_LOCKDEP, None,
                  manifest={"lockdep": {"bytes": 10, "truncated": False},
                            "lockdep_chains": {"error": "PermissionError: denied"}})
    with pytest.raises(lockdep.Missing, match="lockdep_chains: PermissionError: denied"):
        lockdep.load(guest)


# --- the diff -------------------------------------------------------------------------------

def diff_of(tmp_path: Path, watch_text: str = WATCH) -> lockdep.Diff:
    base = lockdep.load(share(tmp_path, "baseline-debug", BASE_LOCKDEP, BASE_CHAINS))
    patched = lockdep.load(share(tmp_path, "patched-debug", PATCHED_LOCKDEP, PATCHED_CHAINS))
    return lockdep.compare(base, patched, watch(tmp_path, watch_text))


def test_compare_reports_only_what_the_series_adds(tmp_path):
    d = diff_of(tmp_path)
    assert d.new_classes == ["&pool->lock", "&pool->mutex"]
    assert d.new_edges == [("&pool->lock", "fs_reclaim"), ("&pool->mutex", "cgroup_mutex"),
                           ("&root->kernfs_rwsem", "css_set_lock"),
                           ("cgroup_mutex", "&pool->lock")]
    assert d.gone_edges == []


def test_compare_splits_watched_edges_from_the_others(tmp_path):
    d = diff_of(tmp_path)
    assert d.watched == [("&pool->mutex", "cgroup_mutex"),
                         ("&root->kernfs_rwsem", "css_set_lock"),
                         ("cgroup_mutex", "&pool->lock")]
    assert d.informational == [("&pool->lock", "fs_reclaim")]


def test_accepted_edges_are_reported_but_do_not_fail(tmp_path):
    text = WATCH.replace("accepted: []", """accepted:
  - from: "&pool->mutex"
    to: cgroup_mutex
    why: pool_size writers fill the pool one cgroup_mutex section per member""")
    d = diff_of(tmp_path, text)
    assert ("&pool->mutex", "cgroup_mutex") not in d.watched
    assert d.accepted == {("&pool->mutex", "cgroup_mutex"):
                          "pool_size writers fill the pool one cgroup_mutex section per member"}


def test_compare_finds_a_chain_that_shows_each_new_edge(tmp_path):
    d = diff_of(tmp_path)
    assert d.examples[("cgroup_mutex", "&pool->lock")] == lockdep.Chain(
        "0", ("&pool->mutex", "cgroup_mutex", "&pool->lock"))
    assert ("&pool->lock", "fs_reclaim") not in d.examples


def test_watch_file_refuses_unknown_keys(tmp_path):
    with pytest.raises(lockdep.FormatError, match="unknown key"):
        watch(tmp_path, "classes: [cgroup_mutex]\nacepted: []\n")


def test_the_shipped_watch_file_loads():
    w = lockdep.load_watch(lockdep.WATCH_FILE)
    assert w.watched("cgroup_mutex") and w.watched("&type->i_mutex_dir_key/1")
    assert not w.watched("fs_reclaim")


# --- the report: cases, markdown, summary ---------------------------------------------------

def test_verdict_fails_on_a_new_watched_edge_and_lists_the_rest(tmp_path):
    d = diff_of(tmp_path)
    cases = lockdep.cases(d, "patched-debug", "baseline-debug")
    by_name = {c.name: c for c in cases}
    watched = by_name["no new dependencies between watched lock classes"]
    assert watched.status == FAILED
    assert "cgroup_mutex -> &pool->lock" in watched.details
    others = by_name["new lock dependencies (informational)"]
    assert others.status == PASSED
    assert "&pool->lock -> fs_reclaim" in others.stdout
    assert all(c.classname == "patched-debug.lockdep" for c in cases)


def test_verdict_passes_when_nothing_watched_is_new(tmp_path):
    text = "classes: [nothing_like_this]\naccepted: []\n"
    cases = lockdep.cases(diff_of(tmp_path, text), "patched-debug", "baseline-debug")
    assert {c.status for c in cases} == {PASSED}


def test_markdown_lists_classes_edges_and_examples(tmp_path):
    path = lockdep.write_markdown(diff_of(tmp_path), tmp_path / "lockdep-new.md",
                                  "patched-debug", "baseline-debug")
    text = path.read_text()
    assert "| `cgroup_mutex` | `&pool->lock` | **watched** |" in text
    assert "`&pool->mutex` -> `cgroup_mutex` -> `&pool->lock`" in text
    assert "## New lock classes (2)" in text


def test_summary_entry_has_the_counts(tmp_path):
    entry = lockdep.summary_entry(diff_of(tmp_path), "baseline-debug", 0.25)
    assert entry["new_classes"] == 2 and entry["new_edges"] == 4
    assert entry["watched_new_edges"] == 3 and entry["baseline"] == "baseline-debug"
    assert entry["classes"] == {"baseline": 7, "patched": 9}
