"""pipeline/git.py: every git call of the pipeline goes through proc.run (own process group, a
timeout); `git()` returns stdout and names the command when it fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import git as plain_git
from conftest import write_fake_kernel

from pipeline import git as G
from pipeline import proc
from pipeline.errors import BadInput, StageFailed
from pipeline.tree import resolve_checkout


def test_git_returns_stdout_only(tmp_path):
    G.git(tmp_path, "init", "--quiet")
    # a warning on stderr must not end up in what a caller parses
    out = G.git(tmp_path, "-c", "core.warnAmbiguousRefs=true", "rev-parse", "--show-toplevel")
    assert out.strip() == str(tmp_path.resolve())


def test_a_failing_git_names_the_command_the_folder_and_gits_words(tmp_path):
    G.git(tmp_path, "init", "--quiet")
    with pytest.raises(G.GitError) as caught:
        G.git(tmp_path, "rev-parse", "--verify", "no-such-ref", what="reading the tip")
    message = caught.value.message
    assert message.startswith("git rev-parse --verify no-such-ref failed while reading the "
                              f"tip in {tmp_path}: ")
    assert "fatal" in message or "Needed a single revision" in message
    assert isinstance(caught.value, StageFailed) and caught.value.exit_code == 3


def test_a_git_that_hangs_is_killed_at_its_timeout(tmp_path):
    G.git(tmp_path, "init", "--quiet")
    # `cat-file --batch` waits for a newline that /dev/zero never sends
    with open("/dev/zero", "rb") as endless:
        done = G.git_run(tmp_path, "cat-file", "--batch", timeout=0.5, stdin=endless)
    assert done.timed_out and done.duration < 30
    error = G.GitError(("cat-file", "--batch"), tmp_path, done, 0.5)
    assert error.message == f"git cat-file --batch failed in {tmp_path}: timed out after 0s"


def test_a_long_command_is_shortened_in_the_message(tmp_path):
    done = proc.Completed(["git"], 1, "bad", 0.0)
    error = G.GitError(("update-index", *["--cacheinfo", "x" * 50] * 40), tmp_path, done, 60)
    assert len(error.message) < G.SHOWN_COMMAND + 200 and "...  failed" not in error.message
    assert re.search(r"\.\.\. failed in .*: bad$", error.message)


def test_git_run_keeps_the_exit_status_and_both_streams(tmp_path):
    done = G.git_run(tmp_path, "rev-parse", "--git-dir")          # not a repository
    assert done.returncode != 0 and "not a git repository" in done.output


def test_stderr_apart_is_refused_with_a_file_or_a_tick(tmp_path):
    with open(tmp_path / "f", "wb") as f, pytest.raises(ValueError):
        proc.run(["true"], timeout=5, stdout=f, stderr_apart=True)


def test_resolve_checkout_wants_the_top_of_a_repository(tmp_path):
    repo = write_fake_kernel(tmp_path / "user", gitignore=False)
    plain_git(repo, "init", "-q")
    plain_git(repo, "add", "-A")
    plain_git(repo, "commit", "-q", "-m", "one")
    user = resolve_checkout(repo, "HEAD", str(repo))
    assert user.sha == plain_git(repo, "rev-parse", "HEAD").strip()
    assert user.common_dir == (repo / ".git").resolve()
    with pytest.raises(BadInput, match="neither a tarball nor a git checkout"):
        resolve_checkout(repo / "kernel", "HEAD", "sub")   # inside a repository, not its top
    with pytest.raises(BadInput, match="neither a tarball nor a git checkout"):
        resolve_checkout(tmp_path / "nothing", "HEAD", "none")
    with pytest.raises(BadInput, match="no commit '--all'"):
        resolve_checkout(repo, "--all", str(repo))
    # a linked worktree shares the main repository's objects (and clone key)
    plain_git(repo, "worktree", "add", "-q", str(tmp_path / "wt"))
    assert resolve_checkout(tmp_path / "wt", "HEAD", "wt").common_dir == user.common_dir
    # a bare repository is a checkout too (as with GitPython before)
    plain_git(tmp_path, "clone", "-q", "--bare", str(repo), str(tmp_path / "bare.git"))
    assert resolve_checkout(tmp_path / "bare.git", "HEAD", "bare").sha == user.sha


def test_no_module_runs_git_on_its_own():
    """Every git command goes through pipeline/git.py (and so through proc.run)."""
    root = Path(G.__file__).resolve().parent
    for module in root.rglob("*.py"):
        if module.name == "git.py" or "guest" in module.parts:
            continue
        text = module.read_text()
        assert not re.search(r"""\[\s*["']git["']\s*,\s*\*?(?!"-C")""", text.replace(
            '["git", "-C", str(worktree), "am", "--3way", str(source)]', "")), module
        assert not re.search(r"^(import git|from git import)", text, re.MULTILINE), module
