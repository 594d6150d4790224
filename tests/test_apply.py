from pathlib import Path

import pytest
from conftest import git, write_fake_kernel
from test_tree import snapshot

from pipeline import apply as A
from pipeline import series as S
from pipeline import tree as T
from pipeline.cache import Cache


def set_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def setup(tmp_path):
    """A user repo whose `main` is the baseline and whose `dev` branch holds the patches:
    clean (fork.c), 3-way (context changed by an earlier commit), conflict (same line)."""
    repo = write_fake_kernel(tmp_path / "user", gitignore=False)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "dev")
    cgroup = repo / "kernel" / "cgroup.c"
    (repo / "kernel" / "fork.c").write_text("int fork = 1;\n")
    git(repo, "commit", "-q", "-am", "fork: clean change")
    set_line(cgroup, 28, "int twenty_eight;")
    git(repo, "commit", "-q", "-am", "not in the series: context change")
    set_line(cgroup, 31, "int thirty_one;")
    git(repo, "commit", "-q", "-am", "cgroup: needs 3-way")
    set_line(cgroup, 28, "int changed_again;")
    git(repo, "commit", "-q", "-am", "cgroup: conflicts")
    (repo / "kernel" / "fork.c").write_text("int fork = 5;\n")
    git(repo, "commit", "-q", "-am", "fork: after the conflict")
    git(repo, "checkout", "-q", "main")
    patches = tmp_path / "all"
    git(repo, "format-patch", "-q", "-o", str(patches), "main..dev")
    names = sorted(p.name for p in patches.iterdir())
    (patches / names[1]).unlink()  # the context change is not part of the series
    series_dir = tmp_path / "series"
    series_dir.mkdir()
    for i, name in enumerate(n for n in names if n != names[1]):
        (series_dir / f"{i + 1:04d}-{name[5:]}").write_text((patches / name).read_text())
    (series_dir / "series.yaml").write_text("name: demo\nbase: ['6.1']\n")
    cache = Cache(tmp_path / "cache")
    tree = T.prepare_tree(f"{repo}@main", cache, print)
    return repo, series_dir, cache, tree


def test_clean_3way_conflict_and_not_applied(setup):
    repo, series_dir, cache, tree = setup
    before = snapshot(repo)
    result = A.apply_series(tree, S.load_folder(series_dir), cache, print)
    assert [p.status for p in result.patches] == [A.APPLIED, A.APPLIED_3WAY, A.CONFLICTED,
                                                  A.NOT_APPLIED]
    conflict = result.failed
    assert conflict is not None and conflict.index == 3
    assert conflict.files == ["kernel/cgroup.c"]
    assert any(h.startswith("kernel/cgroup.c:") for h in conflict.hunks)
    assert result.rerun[:4] == ["git", "-C", str(result.worktree), "am"]
    assert not result.ok
    # am was aborted: the worktree is clean at the last applied patch
    assert git(result.worktree, "status", "--porcelain", "--untracked-files=no") == ""
    assert "int thirty_one;" in (result.worktree / "kernel/cgroup.c").read_text()
    assert snapshot(repo) == before
    # baseline checkout untouched
    assert (tree.checkout / "kernel/fork.c").read_text() == "int fork;\n"


def test_success_is_recorded_and_reused(setup):
    _repo, series_dir, cache, tree = setup
    for name in sorted(p.name for p in series_dir.glob("000[34]-*")):
        (series_dir / name).unlink()
    series = S.load_folder(series_dir)
    first = A.apply_series(tree, series, cache, print)
    assert first.ok and not first.reused
    assert first.branch.startswith("pipeline/demo-")
    assert git(tree.repo, "rev-parse", first.branch).strip() == first.head
    stamp = (first.worktree / "Makefile").stat().st_mtime_ns
    again = A.apply_series(tree, series, cache, print)
    assert again.reused and again.head == first.head
    assert [p.status for p in again.patches] == [A.APPLIED, A.APPLIED_3WAY]
    assert (first.worktree / "Makefile").stat().st_mtime_ns == stamp
    # a changed series resets the same worktree (untouched files keep their mtimes)
    (series_dir / "0002-cgroup-needs-3-way.patch").unlink()
    changed = A.apply_series(tree, S.load_folder(series_dir), cache, print)
    assert changed.ok and not changed.reused and changed.worktree == first.worktree
    assert (first.worktree / "Makefile").stat().st_mtime_ns == stamp
    assert "thirty_one" not in (first.worktree / "kernel/cgroup.c").read_text()
    assert first.branch not in git(tree.repo, "branch", "--list")


def test_parse_am_output():
    files, hunks = A.parse_am_output(
        "Applying: x\nerror: patch failed: kernel/a.c:12\nerror: kernel/a.c: patch does not "
        "apply\nCONFLICT (content): Merge conflict in kernel/b.c\n")
    assert files == ["kernel/a.c", "kernel/b.c"] and hunks == ["kernel/a.c:12"]


def test_patch_from_another_tree_names_its_failing_hunks(tmp_path):
    """Blob ids unknown to the repository: git am --3way cannot build a fake ancestor and
    names nothing; the failing files and hunks still come out (from git apply --check)."""
    other = write_fake_kernel(tmp_path / "other", gitignore=False)
    git(other, "init", "-q")
    git(other, "add", "-A")
    git(other, "commit", "-qm", "other base")
    (other / "kernel" / "cgroup.c").write_text(
        (other / "kernel" / "cgroup.c").read_text().replace("int line20;", "int line20 = 1;"))
    git(other, "commit", "-qam", "cgroup: change line 20")
    patch = tmp_path / "p.patch"
    patch.write_text(git(other, "format-patch", "--stdout", "-1"))
    repo = write_fake_kernel(tmp_path / "repo", gitignore=False)
    (repo / "kernel" / "cgroup.c").write_text(
        (repo / "kernel" / "cgroup.c").read_text().replace("int line20;", "int line20 = 2;"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "repo base")
    from pipeline.series import Patch
    result = A.apply_one(repo, Patch(1, "p.patch", "cgroup: change line 20", patch.read_text()),
                          patch, 60)
    assert result.status == A.CONFLICTED
    assert result.files == ["kernel/cgroup.c"]
    assert any(h.startswith("kernel/cgroup.c:") for h in result.hunks)
    assert "git apply --check" in result.output
