"""`pipeline run --dry-run` (pipeline.plan): the job resolved and checked, the plan printed,
nothing done; and where the project data is (pipeline.job.PROJECT_ROOT) for a checkout and for
an installed wheel (tests/test_e2e_install.py runs the real wheel)."""

from __future__ import annotations

from pathlib import Path

from conftest import snapshot

from pipeline import cli, job
from pipeline.commands import matrix
from pipeline.job import PROJECT_ROOT


def _dry_run(capsys, *args: str) -> tuple[int, list[str]]:
    code = cli.main(["run", "--dry-run", *args])
    return code, capsys.readouterr().out.splitlines()


def test_dry_run_of_the_default_job_prints_the_plan_and_writes_nothing(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, lines = _dry_run(capsys, "--cache-dir", str(tmp_path / "cache"))
    assert code == 0
    assert f"project data {PROJECT_ROOT} (the checkout)" in lines
    assert f"series cgroup-pool: {PROJECT_ROOT / 'patches/cgroup-pool/6.1'} (2 patches, " \
        in "\n".join(lines)
    assert f"fragment {PROJECT_ROOT / 'kconfigs/virtme-guest.config'}" in lines
    assert f"fragment {PROJECT_ROOT / 'kconfigs/cgroup-v1-6.12.config'} (skipped: needs " \
           "kernel >= 6.12)" in lines
    assert any(line.startswith(f"guest tests {PROJECT_ROOT / 'guest-tests'} (") for line in lines)
    assert "variant patched-debug: series, +debug.config, timeouts x4" in lines
    assert not any(line.startswith("variant patched-kcsan") for line in lines)  # optional
    assert list(tmp_path.iterdir()) == []            # no out/, no cache


def test_dry_run_refusal_is_bad_input_and_keeps_the_last_results(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "junit.xml").write_text("<testsuites/>")
    code, _ = _dry_run(capsys, "--series", "no-such-series", "--out", str(out))
    assert code == 2
    assert (out / "junit.xml").is_file()             # a dry run writes (and clears) nothing


def test_dry_run_of_a_git_checkout_reads_its_version_and_only_reads(tmp_path, capsys,
                                                                    user_repo):
    before = snapshot(user_repo)
    frag = tmp_path / "new.config"
    frag.write_text("# pipeline: min-version 6.12\nCONFIG_PRINTK=y\n")
    (tmp_path / "job.yaml").write_text(f"tree: {user_repo}@v1\nseries: none\n"
                                       "kconfig: [new.config]\n")
    code, lines = _dry_run(capsys, "--job", str(tmp_path / "job.yaml"))
    assert code == 0
    tree, = [line for line in lines if line.startswith("tree ")]
    assert f"git checkout {user_repo}, commit " in tree and tree.endswith(", kernel 6.1.99")
    assert f"fragment {frag} (skipped: needs kernel >= 6.12)" in lines
    assert "series none" in lines
    assert snapshot(user_repo) == before


def test_installed_project_data_is_the_wheels_copy(tmp_path, monkeypatch):
    """In a wheel PROJECT_ROOT is pipeline/project/; `pipeline matrix` then writes paths
    relative to the folder it runs in (the CI checkout), not to site-packages."""
    monkeypatch.setattr(matrix, "INSTALLED", True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ci").mkdir()
    assert matrix._from_checkout(tmp_path / "ci" / "job.yaml") == "ci/job.yaml"
    assert matrix._from_checkout(Path("/etc/hosts")) == "/etc/hosts"
    monkeypatch.setattr(matrix, "INSTALLED", False)
    assert matrix._from_checkout(PROJECT_ROOT / "ci" / "x.yaml") == "ci/x.yaml"
    assert job.INSTALLED_DATA == Path(job.__file__).resolve().parent / "project"
    assert not job.INSTALLED and PROJECT_ROOT == job.PACKAGE_DIR.parent
