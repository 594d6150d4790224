"""`pipeline matrix`: the matrix section is checked, and the emitted GitLab YAML and GitHub JSON
parse back into one `pipeline run` job per combination with a JUnit report."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.commands import matrix as M
from pipeline.errors import BadInput
from pipeline.job import PROJECT_ROOT

JOB = """\
tree: debian:6.1
series: cgroup-pool
variants:
  - name: baseline
    series: false
  - name: patched
matrix:
  trees: [debian:6.1, debian:6.12]
  series: [cgroup-pool, none]
  kconfig:
    default: []
    debug: [{frag}]
  variants: [patched]
  exclude:
    - {{tree: debian:6.12, kconfig: debug}}
  accel: tcg
{extra}"""


def job_file(tmp_path: Path, extra: str = "", frag: str = "debug.config") -> Path:
    (tmp_path / "debug.config").write_text("CONFIG_LOCKDEP=y\n")
    path = tmp_path / "job.yaml"
    path.write_text(JOB.format(frag=frag, extra=extra))
    return path


def test_combinations_and_commands(tmp_path):
    m = M.load_matrix(job_file(tmp_path, "  ccache_dir: /srv/ccache\n"))
    names = [e.name for e in m.entries]
    assert names == ["6.1-cgroup-pool-default", "6.1-cgroup-pool-debug", "6.1-none-default",
                     "6.1-none-debug", "6.12-cgroup-pool-default", "6.12-none-default"]
    debug = m.entries[1].command
    assert debug[1:3] == ["run", "--job"] and Path(debug[3]) == tmp_path / "job.yaml"
    flags = list(zip(debug[4::2], debug[5::2]))
    assert ("--tree", "debian:6.1") in flags and ("--series", "cgroup-pool") in flags
    assert ("--kconfig", str(tmp_path / "debug.config")) in flags
    assert ("--variant", "patched") in flags and ("--accel", "tcg") in flags
    assert ("--out", "out") in flags and m.ccache_dir == "/srv/ccache"


def test_gitlab_yaml_parses_back(tmp_path):
    text = M.gitlab(M.load_matrix(job_file(tmp_path, "  ccache_dir: .ccache\n  tags: [big]\n")))
    doc = yaml.safe_load(text)
    jobs = {k: v for k, v in doc.items() if k.startswith("run:")}
    assert len(jobs) == 6 and doc["stages"] == ["test"]
    template = doc[".pipeline-run"]
    assert template["artifacts"]["reports"]["junit"] == "out/junit.xml"
    assert template["artifacts"]["when"] == "always" and template["tags"] == ["big"]
    assert template["cache"]["paths"] == [".ccache"]
    assert doc["variables"]["CCACHE_DIR"] == "$CI_PROJECT_DIR/.ccache"
    job = jobs["run:6.12-none-default"]
    assert job["extends"] == ".pipeline-run"
    cmd = shlex.split(job["script"][0])
    assert cmd[:2] == [".venv/bin/pipeline", "run"]
    assert cmd[cmd.index("--tree") + 1] == "debian:6.12"
    assert cmd[cmd.index("--series") + 1] == "none"


def test_github_json_parses_back(tmp_path, monkeypatch):
    monkeypatch.setenv("CCACHE_DIR", "/shared/ccache")
    data = json.loads(M.github(M.load_matrix(job_file(tmp_path))))
    assert len(data["include"]) == 6
    item = data["include"][0]
    assert set(item) >= {"name", "tree", "series", "kconfig", "command", "ccache_dir"}
    assert item["ccache_dir"] == "/shared/ccache"   # from the environment
    assert shlex.split(item["command"])[1] == "run"


def test_ccache_flag_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CCACHE_DIR", "/env")
    m = M.load_matrix(job_file(tmp_path, "  ccache_dir: /job\n"), ccache_dir="/flag")
    assert m.ccache_dir == "/flag"


def test_paths_inside_project_are_relative():
    m = M.load_matrix(PROJECT_ROOT / "ci" / "matrix-job.yaml")
    assert m.job_file == "ci/matrix-job.yaml"
    debug = next(e for e in m.entries if e.kconfig == "debug")
    assert "kconfigs/debug.config" in debug.command
    yaml.safe_load(M.gitlab(m))


@pytest.mark.parametrize("extra, frag, message", [
    ("  colour: red\n", "debug.config", r"job.yaml:\d+: matrix.colour: unknown key"),
    ("", "nope.config", r"matrix.kconfig.debug\[0\]: fragment 'nope.config' does not exist"),
    ("  accel: warp\n", "debug.config", r"matrix.accel: 'warp'"),
    ("  timeout_minutes: -3\n", "debug.config", "matrix.timeout_minutes: must be a positive"),
])
def test_bad_matrix(tmp_path, extra, frag, message):
    path = job_file(tmp_path, extra, frag)
    if "accel: warp" in extra:   # the template already sets accel once: replace it
        path.write_text(path.read_text().replace("  accel: tcg\n", ""))
    with pytest.raises(BadInput, match=message):
        M.load_matrix(path)


def test_bad_axes(tmp_path):
    path = job_file(tmp_path)
    path.write_text(path.read_text().replace("series: [cgroup-pool, none]",
                                             "series: [no-such-series]"))
    with pytest.raises(BadInput, match=r"matrix.series\[0\]: no series 'no-such-series'"):
        M.load_matrix(path)
    path = job_file(tmp_path)
    path.write_text(path.read_text().replace("kconfig: debug}", "kconfig: huge}"))
    with pytest.raises(BadInput, match=r"matrix.exclude\[0\].kconfig: 'huge' is not in"):
        M.load_matrix(path)
    path.write_text("tree: debian:6.1\n")
    with pytest.raises(BadInput, match="no `matrix` section"):
        M.load_matrix(path)
    path = job_file(tmp_path)
    path.write_text(path.read_text().replace("variants: [patched]", "variants: [fast]"))
    with pytest.raises(BadInput, match="the job has no variant 'fast'"):
        M.load_matrix(path)


def test_container_options(tmp_path):
    # /dev/kvm goes into the GitHub container unless the matrix is TCG-only or says otherwise
    base = "tree: debian:6.1\nseries: none\nmatrix:\n  trees: [debian:6.1]\n"
    path = tmp_path / "job.yaml"
    for extra, expected in [("", "--device /dev/kvm"), ("  accel: tcg\n", ""),
                            ('  container_options: ""\n', ""),
                            ("  container_options: --device /dev/kvm --cpus 2\n",
                             "--device /dev/kvm --cpus 2")]:
        path.write_text(base + extra)
        item = json.loads(M.github(M.load_matrix(path)))["include"][0]
        assert item["container_options"] == expected, extra
        assert item["image"] == "debian:12"
    path.write_text(base + "  container_options: [a]\n")
    with pytest.raises(BadInput, match="matrix.container_options: must be a non-empty string"):
        M.load_matrix(path)
