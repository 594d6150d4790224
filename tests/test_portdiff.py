"""`pipeline port-diff`: parsing and formatting of git range-diff output (fixtures captured from
git 2.39), the files and trees a side gets, and whole runs on small git trees (a series and its
port to a tree that moved on; bad input; a patch that does not apply; rebase.md's section)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git, write_fake_kernel

from pipeline.cli import main
from pipeline.commands import portdiff
from pipeline.commands.portdiff import (
    Pair,
    PortDiff,
    Side,
    default_tree,
    markdown,
    parse_range_diff,
    run_port_diff,
    summary_line,
    touched_files,
)
from pipeline.commands.rebase import rebase_report
from pipeline.errors import BadInput, StageFailed
from pipeline.series import Patch, Series
from pipeline.tree import Tree

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "range-diff"


# --- parsing ----------------------------------------------------------------------------------

def test_parse_the_cgroup_pool_ports():
    pairs = parse_range_diff((FIXTURES / "cgroup-pool-6.1-vs-6.12.txt").read_text())
    assert [(p.a, p.status, p.b) for p in pairs] == [(1, "!", 1), (2, "!", 2)]
    assert pairs[0].subject == "kernfs: add pinned nodes that stay deactivated until handed out"
    assert pairs[1].subject == "cgroup: support cgroup pool in v1"
    kernfs = "\n".join(pairs[0].body)
    assert "    -+\t\tspin_lock_irq(&kernfs_rename_lock);" in kernfs
    assert "    ++\t\twrite_lock_irq(&kernfs_rename_lock);" in kernfs
    assert "    -+\tsimple_xattrs_free(&attrs->xattrs);" in kernfs
    assert "    ++\tsimple_xattrs_free(&attrs->xattrs, NULL);" in kernfs
    assert (pairs[0].removed, pairs[0].added) == (19, 29)
    assert not any(line.startswith("2:  ") for line in pairs[0].body)  # no next header in it
    assert pairs[1].body[-1].strip()                                   # trailing blank dropped


def test_parse_padded_numbers_added_and_dropped():
    pairs = parse_range_diff((FIXTURES / "padded-added-dropped.txt").read_text())
    assert [(p.a, p.status, p.b) for p in pairs] == [
        (1, "=", 1), (2, "=", 2), (3, "=", 3), (4, "<", None), (5, "=", 4), (6, "=", 5),
        (7, "<", None), (None, ">", 6), (8, "=", 7), (9, "=", 8), (10, "=", 9), (11, "=", 10),
        (None, ">", 11)]
    assert pairs[-1].subject == "add g (|pipe)"
    assert all(not p.body for p in pairs)
    assert portdiff.counts(pairs) == {"=": 9, "!": 0, "<": 2, ">": 2}


def test_parse_refuses_what_is_not_range_diff_output():
    with pytest.raises(ValueError, match="not git range-diff output"):
        parse_range_diff("fatal: need two commit ranges\n")
    assert parse_range_diff("") == []


def test_summary_lines():
    pairs = parse_range_diff((FIXTURES / "cgroup-pool-6.1-vs-6.12.txt").read_text())
    assert summary_line(pairs[0]) == ("  1 ! 1   kernfs: add pinned nodes that stay deactivated "
                                      "until handed out (-19 +29 lines)")
    dropped = parse_range_diff((FIXTURES / "padded-added-dropped.txt").read_text())[3]
    assert summary_line(dropped) == "  4 < -   add f4"


# --- formatting -------------------------------------------------------------------------------

def _series(name: str, subjects: list[str]) -> Series:
    patches = [Patch(i, f"{i:04d}-p{i}.patch", s, "") for i, s in enumerate(subjects, start=1)]
    return Series(name, ["6.1"], Path(f"/s/{name}"), patches)


def _tree(version: str) -> Tree:
    return Tree(f"debian:{version}", "k", Path("/t"), Path("/t"), "c" * 40, version)


def test_markdown_one_section_per_pair_with_fences_and_escaping():
    text = ("1:  1111111 ! 1:  2222222 one\n"
            "    @@ Commit message\n"
            "    -    old words\n"
            "    +    new words with ``` inside\n"
            "    \n"
            "2:  3333333 = 2:  4444444 two | piped\n"
            "3:  5555555 < -:  ------- three\n")
    pairs = parse_range_diff(text)
    a = Side("A", _series("a", ["one", "two | piped", "three"]), _tree("6.1"), ["x.c"])
    b = Side("B", _series("b", ["one (v2)", "two | piped"]), _tree("6.12"), ["x.c", "y.c"])
    md = markdown(PortDiff(a, b, pairs, text))
    assert md.startswith("# Port diff: a on 6.1 vs b on 6.12\n")
    assert "| A | /s/a | 3 | debian:6.1 (6.1) | 1 |" in md
    assert "3 pairs: 1 unchanged (`=`), 1 changed (`!`), 1 only in A (`<`), 0 only in B" in md
    assert "| 1 | `!` | 1 | 0001-p1.patch | 0001-p1.patch | one | -1 +1 |" in md
    assert "| 2 | `=` | 2 | 0002-p2.patch | 0002-p2.patch | two \\| piped |  |" in md
    assert "| 3 | `<` | - | 0003-p3.patch | - | three |  |" in md
    assert "## 1 ! 1: one (v2)\n" in md and "Subject in A: one  \nSubject in B: one (v2)" in md
    assert "`0002-p2.patch` in A and B: the same diff." in md
    assert "Only in A: `0003-p3.patch`" in md
    # the block with ``` in it gets a longer fence; git's lines are kept as they are
    assert "````\n1:  1111111 ! 1:  2222222 one\n    @@ Commit message\n" in md
    assert "    +    new words with ``` inside\n````\n" in md
    assert "```\n2:  3333333 = 2:  4444444 two | piped\n```\n" in md


def test_pair_without_a_known_patch_keeps_git_numbers():
    pairs = [Pair(None, 5, ">", "extra", "-:  ------- > 5:  abcdef0 extra")]
    lines = portdiff.pair_sections(pairs, _series("a", []), _series("b", ["x"]))
    assert "| - | `>` | 5 | - | 5 | extra |  |" in lines
    assert "## - > 5: extra" in lines


# --- files and trees --------------------------------------------------------------------------

def test_touched_files_of_git_and_plain_patches():
    git_patch = ("diff --git a/kernel/a.c b/kernel/a.c\n--- a/kernel/a.c\n+++ b/kernel/a.c\n"
                 "diff --git a/old.h b/new.h\nsimilarity index 90%\nrename from old.h\n"
                 "rename to new.h\n"
                 "diff --git a/fresh.c b/fresh.c\nnew file mode 100644\n--- /dev/null\n"
                 "+++ b/fresh.c\n")
    plain = "--- linux.orig/fs/x.c\t2024-01-01\n+++ linux/fs/x.c\t2024-01-02\n@@ -1 +1 @@\n"
    patches = [Patch(1, "1", "s", git_patch), Patch(2, "2", "s", plain)]
    assert touched_files(patches) == ["kernel/a.c", "old.h", "new.h", "fresh.c", "fs/x.c"]


def test_default_tree_exact_closest_or_none(tmp_path):
    assert default_tree(["6.1"], tmp_path) is None
    for version in ("5.10", "6.1", "6.12", "6.12-rc1"):
        (tmp_path / f"linux-source-{version}.tar.xz").write_bytes(b"")
    assert portdiff.debian_versions(tmp_path) == ["5.10", "6.1", "6.12"]
    assert default_tree(["6.1"], tmp_path) == "debian:6.1"
    assert default_tree(["6.12.30"], tmp_path) == "debian:6.12"
    assert default_tree(["6.6"], tmp_path) == "debian:6.1"          # nearest minor, same major
    assert default_tree(["6.7"], tmp_path) == "debian:6.12"         # a tie goes to the newer
    assert default_tree(["5.4"], tmp_path) == "debian:5.10"
    assert default_tree(["4.19", "6.12"], tmp_path) == "debian:6.12"  # any exact base first
    assert default_tree([], tmp_path) is None


# --- whole runs on small trees ----------------------------------------------------------------

def _lines(text: str, changes: dict[int, str]) -> str:
    lines = text.splitlines()
    for number, line in changes.items():
        lines[number - 1] = line
    return "\n".join(lines) + "\n"


@pytest.fixture
def ports(tmp_path: Path) -> dict[str, object]:
    """A tree with two releases (tags old, new: the new one renamed a lock in cgroup.c) and
    the same two-patch series made on each: patch 1 (fork.c) is the same, patch 2 uses the
    lock, so it differs."""
    src = write_fake_kernel(tmp_path / "linux", gitignore=False)
    cgroup = src / "kernel" / "cgroup.c"
    git(src, "init", "-q", "-b", "main")
    git(src, "add", ".")
    git(src, "commit", "-qm", "old release")
    git(src, "tag", "old")
    cgroup.write_text(_lines(cgroup.read_text(), {23: "DEFINE_RWLOCK(css_set_lock);"}))
    git(src, "commit", "-qam", "new release: css_set_lock is an rwlock")
    git(src, "tag", "new")
    folders = {}
    for release, lock in (("old", "spin_lock(&css_set_lock);"),
                          ("new", "write_lock(&css_set_lock);")):
        git(src, "checkout", "-q", "-b", f"series-{release}", release)
        (src / "kernel" / "fork.c").write_text("int fork = 1;\n")
        git(src, "commit", "-qam", "fork: set fork")
        cgroup.write_text(_lines(cgroup.read_text(), {25: lock}))
        git(src, "commit", "-qam", "cgroup: take the lock")
        folder = tmp_path / f"series-{release}"
        git(src, "format-patch", "-q", "-o", str(folder), "-2")
        (folder / "series.yaml").write_text(f'name: demo\nbase: ["{release}"]\nlink: x\n')
        folders[release] = folder
    git(src, "checkout", "-q", "main")
    return {"src": src, "old": folders["old"], "new": folders["new"], "tmp": tmp_path,
            "tree_old": f"{src}@old", "tree_new": f"{src}@new"}


def test_port_diff_of_a_series_and_its_port(ports):
    tmp = ports["tmp"]
    lines: list[str] = []
    # patch 2 is tiny and 2 of its 7 lines changed: git's default creation factor does not
    # pair it
    code = run_port_diff(str(ports["old"]), str(ports["new"]), tmp / "default", print,
                         tree_a=ports["tree_old"], tree_b=ports["tree_new"],
                         cache_dir=tmp / "cache")
    assert code == 0
    md = (tmp / "default" / "port-diff.md").read_text()
    assert "3 pairs: 1 unchanged (`=`), 0 changed (`!`), 1 only in A (`<`), 1 only in B" in md
    assert "## 2 < -: cgroup: take the lock" in md and "## - > 2: cgroup: take the lock" in md
    code = run_port_diff(str(ports["old"]), str(ports["new"]), tmp / "out", lines.append,
                         tree_a=ports["tree_old"], tree_b=ports["tree_new"],
                         cache_dir=tmp / "cache", creation_factor=200)
    md = (tmp / "out" / "port-diff.md").read_text()
    assert "2 pairs: 1 unchanged (`=`), 1 changed (`!`), 0 only in A" in md
    assert "## 1 = 1: fork: set fork" in md and "## 2 ! 2: cgroup: take the lock" in md
    assert ("     @@ kernel/cgroup.c: int line21;\n      int line22;\n    - int line23;\n"
            "    + DEFINE_RWLOCK(css_set_lock);\n      int line24;\n     -int line25;\n"
            "    -+spin_lock(&css_set_lock);\n    ++write_lock(&css_set_lock);\n") in md
    summary = [line for line in lines if line.startswith("  ")]
    assert "    1 = 1   fork: set fork" in summary
    assert "    2 ! 2   cgroup: take the lock (-2 +2 lines)" in summary
    assert lines[-1].startswith("port-diff: 2 pairs: 1 unchanged (=), 1 changed (!), 0 only "
                                "in A (<), 0 only in B (>); wrote ")
    # the scratch repository is gone; the user's checkout did not move
    assert list((tmp / "cache" / "port-diff").iterdir()) == []
    assert git(ports["src"], "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    # against itself: every pair is `=`
    run_port_diff(str(ports["new"]), str(ports["new"]), tmp / "self", lines.append,
                  tree_a=ports["tree_new"], cache_dir=tmp / "cache")
    assert "2 pairs: 2 unchanged (`=`), 0 changed" in (tmp / "self" / "port-diff.md").read_text()
    assert "B: tree " + ports["tree_new"] + " (the tree of A" in "\n".join(lines)


def test_an_mbox_and_a_plain_patch_folder_take_the_other_sides_tree(ports):
    tmp = ports["tmp"]
    mbox = tmp / "thread.mbox"
    mbox.write_text("".join(p.read_text() for p in sorted(ports["new"].glob("*.patch"))))
    plain = tmp / "plain"
    plain.mkdir()
    for patch in ports["old"].glob("*.patch"):
        (plain / patch.name).write_text(patch.read_text())
    lines: list[str] = []
    run_port_diff(str(plain), str(mbox), tmp / "out", lines.append, tree_b=ports["tree_new"],
                  cache_dir=tmp / "cache")
    log = "\n".join(lines)
    assert f"A: tree {ports['tree_new']} (the tree of B" in log
    md = (tmp / "out" / "port-diff.md").read_text()
    # patch 1 is the same; the old patch 2 applied on the new tree with a 3-way merge
    assert "| 1 | `=` | 1 | 0001-fork-set-fork.patch | thread.mbox#1 |" in md


def test_a_patch_that_does_not_apply_names_it_and_exits_3(ports):
    tmp = ports["tmp"]
    broken = ports["new"] / "0002-cgroup-take-the-lock.patch"
    broken.write_text(broken.read_text().replace(" int line24;", " int line24 = 9;"))
    with pytest.raises(StageFailed) as caught:
        run_port_diff(str(ports["old"]), str(ports["new"]), tmp / "out", print,
                      tree_a=ports["tree_old"], tree_b=ports["tree_new"],
                      cache_dir=tmp / "cache")
    message = caught.value.message
    assert message.startswith(f"B: patch 2/2 ({broken}: cgroup: take the lock) does not apply "
                              f"to {ports['tree_new']}")
    assert "kernel/cgroup.c" in message and caught.value.exit_code == 3
    assert not (tmp / "out" / "port-diff.md").exists()
    assert list((tmp / "cache" / "port-diff").iterdir()) == []
    code = main(["port-diff", str(ports["old"]), str(ports["new"]), "--tree-a",
                 ports["tree_old"], "--tree-b", ports["tree_new"], "--out", str(tmp / "o"),
                 "--cache-dir", str(tmp / "cache")])
    assert code == 3


def test_bad_input_is_refused_with_exit_2(ports, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match=f"A: {empty}: no series.yaml and no NNNN-"):
        run_port_diff(str(empty), str(ports["new"]), tmp_path / "out", print)
    only_meta = tmp_path / "only-meta"
    only_meta.mkdir()
    (only_meta / "series.yaml").write_text('name: x\nbase: ["6.1"]\nlink: x\n')
    with pytest.raises(BadInput, match="no NNNN-\\*.patch files in the series"):
        run_port_diff(str(ports["new"]), str(only_meta), tmp_path / "out", print)
    mbox = tmp_path / "a.mbox"
    mbox.write_text("".join(p.read_text() for p in sorted(ports["new"].glob("*.patch"))))
    with pytest.raises(BadInput, match="A: no tree for .*a.mbox .*: give --tree-a"):
        run_port_diff(str(mbox), str(mbox), tmp_path / "out", print)
    with pytest.raises(BadInput, match="A: series 'cgroup-pool' has variants .*6.1.*6.12"):
        run_port_diff("cgroup-pool", str(mbox), tmp_path / "out", print)
    capsys.readouterr()
    assert main(["port-diff", str(empty), str(ports["new"])]) == 2
    assert main(["port-diff", str(ports["new"]), str(tmp_path / "missing")]) == 2
    assert main(["port-diff", str(ports["new"]), str(ports["new"]), "--creation-factor",
                 "-1"]) == 2
    assert "B: series" in capsys.readouterr().out


def test_help_names_the_command():
    with pytest.raises(SystemExit):
        main(["port-diff", "--help"])


def test_rebase_report_has_the_range_diff_against_the_old_tree(ports):
    tmp = ports["tmp"]
    code = rebase_report(str(ports["old"]), ports["tree_new"], tmp / "out", print,
                         cache_dir=tmp / "cache", old_tree=ports["tree_old"])
    assert code == 0
    report = (tmp / "out" / "rebase.md").read_text()
    section = report.split("## Range-diff: the series on its own tree against the rebased "
                           "result\n", 1)[1]
    assert f"A: the series on {ports['tree_old']} (6.1.99); B: the rebased result on" in section
    assert "### 1 = 1: fork: set fork" in section
    # patch 2 was rebased with a 3-way merge: its context line 23 is the new tree's
    assert "| 2 | cgroup: take the lock | 3-way |" in report
    assert "### 2 ! 2: cgroup: take the lock" in section
    assert "    - int line23;\n    + DEFINE_RWLOCK(css_set_lock);\n" in section
    # without old_tree (the default of the function) there is no section
    rebase_report(str(ports["old"]), ports["tree_new"], tmp / "plain", print,
                  cache_dir=tmp / "cache")
    assert "Range-diff" not in (tmp / "plain" / "rebase.md").read_text()


def test_rebase_range_diff_left_out_says_why(ports, monkeypatch):
    tmp = ports["tmp"]
    monkeypatch.setattr(portdiff, "DEBIAN_SOURCES", tmp / "no-debian")
    monkeypatch.setattr(portdiff.default_tree, "__defaults__", (tmp / "no-debian",))
    code = rebase_report(str(ports["old"]), ports["tree_new"], tmp / "out", print,
                         cache_dir=tmp / "cache", old_tree="auto")
    assert code == 0
    assert ("Left out: no tree for the series (base old, no Debian tree installed); give "
            "--old-tree.") in (tmp / "out" / "rebase.md").read_text()
