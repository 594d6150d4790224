"""`pipeline rebase` on a small git tree with upstream history: clean, 3-way and conflicted
patches are told apart, conflicts name files, hunks and the upstream commits."""

from __future__ import annotations

from pathlib import Path

from conftest import git, write_fake_kernel

from pipeline.commands.rebase import hunk_ranges, rebase_report


def cgroup_lines(changes: dict[int, str]) -> str:
    lines = [f"int line{i};" for i in range(1, 41)]
    for number, text in changes.items():
        lines[number - 1] = text
    return "\n".join(lines) + "\n"


def make(tmp_path: Path) -> tuple[Path, Path, str]:
    """A tree whose upstream moved on after the series' base; returns (tree, series, base)."""
    src = write_fake_kernel(tmp_path / "linux", gitignore=False)
    git(src, "init", "-q")
    git(src, "add", ".")
    git(src, "commit", "-qm", "base")
    base = git(src, "rev-parse", "HEAD").strip()
    # the series, made on a branch from base
    git(src, "checkout", "-qb", "series")
    (src / "kernel" / "fork.c").write_text("int fork = 1;\n")
    git(src, "commit", "-qam", "fork: clean change")
    (src / "kernel" / "cgroup.c").write_text(cgroup_lines({5: "int line5 = 55;"}))
    git(src, "commit", "-qam", "cgroup: change line 5")
    (src / "kernel" / "cgroup.c").write_text(cgroup_lines({5: "int line5 = 55;",
                                                           25: "int line25 = 25;"}))
    git(src, "commit", "-qam", "cgroup: change line 25")
    series = tmp_path / "series"
    git(src, "format-patch", "-q", "-o", str(series), "-3")
    (series / "series.yaml").write_text('name: demo\nbase: ["6.1"]\nlink: x\n')
    # upstream: one commit conflicts with patch 2, one only touches patch 3's context
    git(src, "checkout", "-q", "-b", "upstream", base)
    (src / "kernel" / "cgroup.c").write_text(cgroup_lines({5: "long line5;"}))
    git(src, "commit", "-qam", "upstream: line 5 becomes long")
    (src / "kernel" / "cgroup.c").write_text(cgroup_lines({5: "long line5;", 22: "long line22;"}))
    git(src, "commit", "-qam", "upstream: line 22 becomes long")
    return src, series, base


def test_rebase_report(tmp_path):
    src, series, base = make(tmp_path)
    head_before = git(src, "rev-parse", "HEAD")
    lines: list[str] = []
    code = rebase_report(str(series), str(src), tmp_path / "out", lines.append,
                         cache_dir=tmp_path / "cache", since=base)
    assert code == 3
    report = (tmp_path / "out" / "rebase.md").read_text()
    assert "| 1 | fork: clean change | clean |" in report
    assert "| 2 | cgroup: change line 5 | conflicted | kernel/cgroup.c |" in report
    assert "| 3 | cgroup: change line 25 | 3-way |" in report
    assert "upstream: line 5 becomes long" in report
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert 'name="rebase.apply"' in junit and "conflicts in kernel/cgroup.c" in junit
    # the user's checkout did not move
    assert git(src, "rev-parse", "HEAD") == head_before
    assert git(src, "status", "--porcelain") == ""


def test_hunk_ranges():
    text = "--- a/x.c\n+++ b/x.c\n@@ -3,7 +3,8 @@ f\n x\n@@ -20 +21 @@\n-a\n+b\n"
    assert hunk_ranges(text) == {"x.c": [(3, 7), (20, 1)]}
