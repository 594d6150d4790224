"""pipeline bisect: the verdict of a step's report, and git bisect driven in the pipeline's clone
(steps faked: a commit is bad when its tree has the planted line). The real thing, with kernel
builds and boots, is in test_e2e.py."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import git, logs, write_fake_kernel

from pipeline.cache import Cache
from pipeline.commands import bisect as B
from pipeline.errors import BadInput
from pipeline.results import ERROR, FAILED, PASSED, SKIPPED, Case, RunReport, Stage, VariantReport
from pipeline.tree import resolve_checkout, user_clone


def report(*stages: tuple[str, list[str]], **kw) -> RunReport:
    vr = VariantReport("bisect", stages=[
        Stage(name, [Case(f"{name}{i}", status, message=f"{name} {status}")
                     for i, status in enumerate(statuses)]) for name, statuses in stages])
    return RunReport([vr], **kw)


OK_BUILD = [("apply", [PASSED]), ("configure", [PASSED]), ("build", [PASSED]),
            ("boot", [PASSED, PASSED])]


def test_passing_test_is_good():
    assert B.verdict_of(report(*OK_BUILD, ("guest", [PASSED, SKIPPED]))).code == B.GOOD


def test_failing_test_is_bad_and_named():
    v = B.verdict_of(report(*OK_BUILD, ("guest", [PASSED, FAILED])))
    assert v.code == B.BAD and "guest1" in v.reason


def test_boot_failure_is_bad():
    stages = [s for s in OK_BUILD if s[0] != "boot"] + [("boot", [FAILED]),
                                                        ("guest", [ERROR])]
    v = B.verdict_of(report(*stages))
    assert v.code == B.BAD and v.reason.startswith("boot failed")


@pytest.mark.parametrize("stage", ["apply", "configure", "build"])
def test_apply_or_build_failure_is_skip(stage):
    stages = [(n, [FAILED] if n == stage else [PASSED]) for n, _ in OK_BUILD[:3]]
    v = B.verdict_of(report(*stages))
    assert v.code == B.SKIP and v.reason.startswith(f"{stage} failed")


def test_only_skipped_tests_is_skip():
    v = B.verdict_of(report(*OK_BUILD, ("guest", [SKIPPED, SKIPPED])))
    assert v.code == B.SKIP and "guest skipped" in v.reason


def test_bad_input_and_interrupt_abort():
    assert B.verdict_of(RunReport(bad_input="x")).code == B.ABORT
    assert B.verdict_of(RunReport(interrupted="SIGTERM")).code == B.ABORT


# --- git bisect driven in the clone -----------------------------------------------------------

def make_history(repo: Path, bug_at: int, total: int = 7) -> list[str]:
    """A fake kernel repo: baseline + `total` commits; commit `bug_at` (1-based) plants BUG."""
    write_fake_kernel(repo, gitignore=False)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline")
    shas = [git(repo, "rev-parse", "HEAD").strip()]
    for i in range(1, total + 1):
        f = repo / "kernel" / "fork.c"
        text = f.read_text() + f"int step{i};\n"
        if i == bug_at:
            text += "/* BUG */\n"
        f.write_text(text)
        git(repo, "commit", "-q", "-am", f"change {i}")
        shas.append(git(repo, "rev-parse", "HEAD").strip())
    return shas


@dataclass
class FakeStepper:
    """Judges a commit by reading its fork.c from the clone: BUG -> bad; 'skip me' -> skip."""

    user: object
    clone: Path
    log: object
    skip: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)

    def step(self, sha: str, out: Path) -> B.Verdict:
        self.seen.append(sha)
        if sha in self.skip:
            return B.Verdict(B.SKIP, "build failed")
        text = subprocess.run(["git", "show", f"{sha}:kernel/fork.c"], cwd=self.clone,
                              capture_output=True, text=True, check=True).stdout
        return B.Verdict(B.BAD if "BUG" in text else B.GOOD, "fake")


def fake_stepper(tmp_path: Path, repo: Path) -> FakeStepper:
    _lines, log = logs()
    user = resolve_checkout(repo, "HEAD", str(repo))
    clone, _key = user_clone(user, Cache(tmp_path / "cache"), log)
    return FakeStepper(user, clone, log)


def user_state(repo: Path) -> tuple[str, ...]:
    return (git(repo, "rev-parse", "HEAD"), git(repo, "branch", "-a", "-v"),
            git(repo, "status", "--porcelain", "--untracked-files=all"),
            (repo / ".git" / "index").read_bytes().hex()[:4096],
            str(sorted(p.name for p in (repo / ".git").iterdir())))


def test_bisect_finds_the_planted_commit_without_touching_the_user_repo(tmp_path):
    repo = tmp_path / "linux"
    shas = make_history(repo, bug_at=5)
    (repo / "untracked.txt").write_text("user's own work\n")
    (repo / "kernel" / "cgroup.c").write_text("uncommitted edit\n")
    before = user_state(repo)
    stepper = fake_stepper(tmp_path, repo)
    result = B.bisect(stepper, shas[0], "main", tmp_path / "out")
    assert result.first_bad == shas[5]
    assert 2 <= len(result.steps) <= 3            # log2(7) steps, not 7
    assert all(s.verdict in ("good", "bad") for s in result.steps)
    assert user_state(repo) == before
    md = B.write_report(result, stepper.clone, tmp_path / "out").read_text()
    assert shas[5] in md and "change 5" in md
    # the clone has no bisect left running
    assert not (stepper.clone / ".git" / "BISECT_START").exists()


def test_commits_made_after_the_clone_are_found(tmp_path):
    repo = tmp_path / "linux"
    shas = make_history(repo, bug_at=99, total=2)
    stepper = fake_stepper(tmp_path, repo)
    (repo / "kernel" / "fork.c").write_text("/* BUG */\n")
    git(repo, "commit", "-q", "-am", "late bug")
    git(repo, "tag", "v-late")
    result = B.bisect(stepper, shas[0], "v-late", tmp_path / "out")
    assert result.first_bad == git(repo, "rev-parse", "v-late").strip()


def test_skipped_commits_can_leave_candidates(tmp_path):
    repo = tmp_path / "linux"
    shas = make_history(repo, bug_at=4, total=5)
    stepper = fake_stepper(tmp_path, repo)
    stepper.skip = {shas[3], shas[4]}   # the commit before the bug and the bug do not build
    result = B.bisect(stepper, shas[0], shas[5], tmp_path / "out")
    assert not result.first_bad
    assert set(result.candidates) >= {shas[4]}


def test_bad_revisions_are_refused(tmp_path):
    repo = tmp_path / "linux"
    shas = make_history(repo, bug_at=2, total=3)
    stepper = fake_stepper(tmp_path, repo)
    with pytest.raises(BadInput, match="--good nope"):
        B.bisect(stepper, "nope", shas[3], tmp_path / "out")
    with pytest.raises(BadInput, match="not an ancestor"):
        B.bisect(stepper, shas[3], shas[1], tmp_path / "out")


def test_bisect_step_aborts_with_128_on_bad_input(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main
    monkeypatch.chdir(tmp_path)
    code = main(["bisect-step", "--tree", str(tmp_path / "nothing"), "--test", str(tmp_path)])
    assert code == B.ABORT
    assert "abort" in capsys.readouterr().out


def test_bisect_refuses_a_missing_series_naming_the_flag(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main
    repo = tmp_path / "linux"
    make_history(repo, bug_at=2, total=2)
    monkeypatch.chdir(tmp_path)
    code = main(["bisect", "--tree", str(repo), "--good", "HEAD~2", "--bad", "HEAD",
                 "--series", "no/such/series", "--test", str(tmp_path)])
    assert code == 2
    assert "--series: series 'no/such/series' does not exist" in capsys.readouterr().out
