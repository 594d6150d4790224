"""The CI templates under ci/ are valid for their engines and do what ci/README.md says:

- every template, and every pipeline `pipeline matrix` generates from the job files under ci/,
  validates against check-jsonschema's vendored GitLab CI and GitHub workflow schemas;
- actionlint passes on the GitHub workflow (no deprecated action runtimes among its checks);
- the GitHub `plan` step fails when `pipeline matrix` fails, and writes nothing to
  $GITHUB_OUTPUT then (run for real in bash with a fake `pipeline` on PATH);
- the container job passes /dev/kvm in, and its ccache folder is a path of the container's;
- the job summary lists every JUnit test case, not only the suite counts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.commands import matrix as M
from pipeline.job import PROJECT_ROOT

CI = PROJECT_ROOT / "ci"
WORKFLOW = CI / "github" / "workflows" / "kernel-matrix.yml"
GITLAB = CI / "gitlab-ci.yml"
JOB_FILES = sorted(CI.glob("*-job.yaml"))
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    """A tool of the test extra: beside this Python (the venv), else on PATH."""
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert path, f"{name} is not installed: pip install -e '.[test]'"
    return str(path)


def _run(argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout,
                          **kw)


def _schema_check(schema: str, *files: Path) -> None:
    done = _run([_tool("check-jsonschema"), "--builtin-schema", schema,
                *map(str, files)], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _workflow() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    if True in doc:           # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def _step(job: str, pred) -> dict:
    steps = [s for s in _workflow()["jobs"][job]["steps"] if pred(s)]
    assert len(steps) == 1, f"expected one such step in job {job}, got {len(steps)}"
    return steps[0]


def _matrix_item(job_file: Path) -> dict:
    return json.loads(M.github(M.load_matrix(job_file)))["include"][0]


def _expand(node, item: dict):
    """The workflow's `run` job as GitHub sees it for one matrix item (`${{ matrix.x }}` that
    stands alone in a value is replaced by the item's value, keeping its type)."""
    if isinstance(node, dict):
        return {k: _expand(v, item) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, item) for v in node]
    if isinstance(node, str):
        whole = re.fullmatch(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", node)
        if whole:
            return item[whole.group(1)]
        return re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m: str(item[m.group(1)]), node)
    return node


# --- a. schemas -----------------------------------------------------------------------------

def test_job_files_include_the_smoke_job():
    names = [p.name for p in JOB_FILES]
    assert "matrix-job.yaml" in names and "smoke-job.yaml" in names


def test_templates_validate_against_the_vendored_schemas():
    _schema_check("vendor.gitlab-ci", GITLAB)
    _schema_check("vendor.github-workflows", WORKFLOW)


@pytest.mark.parametrize("job_file", JOB_FILES, ids=lambda p: p.name)
def test_generated_gitlab_child_pipeline_validates(job_file, tmp_path):
    out = tmp_path / "child-pipeline.yml"
    done = _run([_tool("pipeline"), "matrix", "--format", "gitlab", "--job",
                           str(job_file), "-o", str(out)])
    assert done.returncode == 0, done.stderr
    _schema_check("vendor.gitlab-ci", out)
    doc = yaml.safe_load(out.read_text())
    jobs = [k for k in doc if k.startswith("run:")]
    assert jobs
    template = doc[".pipeline-run"]
    assert all(doc[j]["extends"] == ".pipeline-run" for j in jobs)
    assert template["artifacts"]["reports"]["junit"] == "out/junit.xml"
    assert "out/" in template["artifacts"]["paths"] and template["artifacts"]["when"] == "always"


@pytest.mark.parametrize("job_file", JOB_FILES, ids=lambda p: p.name)
def test_generated_github_matrix_validates_in_the_workflow(job_file, tmp_path):
    done = _run([_tool("pipeline"), "matrix", "--format", "github", "--job",
                           str(job_file)])
    assert done.returncode == 0, done.stderr
    matrix = json.loads(done.stdout)
    doc = _workflow()
    for item in matrix["include"]:
        run = _expand(doc["jobs"]["run"], item)
        run["strategy"]["matrix"] = matrix
        expanded = dict(doc, jobs={**doc["jobs"], "run": run})
        path = tmp_path / f"{item['name']}.yml"
        path.write_text(yaml.safe_dump(expanded, sort_keys=False))
        _schema_check("vendor.github-workflows", path)


# --- b. actionlint --------------------------------------------------------------------------

def test_actionlint_passes_on_the_workflow():
    # shellcheck and pyflakes are left out: whether they are installed must not change the
    # verdict (the run scripts are run for real below)
    done = _run([_tool("actionlint"), "-no-color", "-shellcheck=", "-pyflakes=",
                           str(WORKFLOW)])
    assert done.returncode == 0, done.stdout + done.stderr


# --- c. the matrix step's exit code ---------------------------------------------------------

FAKE_PIPELINE = """\
#!/bin/bash
# plays `pipeline matrix`: FAKE_MODE=fail prints an error (on both streams) and exits 2
out=""
while [ $# -gt 0 ]; do
    case "$1" in -o|--output) out="$2"; shift ;; esac
    shift
done
if [ "$FAKE_MODE" = fail ]; then
    echo "error: ci/matrix-job.yaml:3: matrix.trees[0]: bad tree"
    echo "error: ci/matrix-job.yaml:3: matrix.trees[0]: bad tree" >&2
    exit 2
fi
if [ -n "$out" ]; then echo '{"include":[{"name":"a"}]}' > "$out"
else echo '{"include":[{"name":"a"}]}'; fi
"""


def _run_step(step: dict, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a workflow step's script the way the runner does: `shell: bash` is
    `bash --noprofile --norc -eo pipefail {0}`, no shell given is `bash -e {0}`."""
    script = tmp_path / "step.sh"
    script.write_text(step["run"])
    shell = step.get("shell")
    assert shell in (None, "bash"), f"unexpected shell {shell!r}"
    argv = (["bash", "--noprofile", "--norc", "-eo", "pipefail"] if shell == "bash"
            else ["bash", "-e"]) + [str(script)]
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return _run(argv, cwd=work, env=env, timeout=60)


def _fake_env(tmp_path: Path, mode: str) -> tuple[dict[str, str], Path]:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "pipeline").write_text(FAKE_PIPELINE)
    (fake / "python").write_text("#!/bin/sh\nexit 0\n")   # the step's `pip install -e .`
    for tool in ("pipeline", "python"):
        (fake / tool).chmod(0o755)
    output = tmp_path / "github_output"
    output.write_text("")
    env = {"PATH": f"{fake}:/usr/bin:/bin", "HOME": str(tmp_path), "FAKE_MODE": mode,
           "GITHUB_OUTPUT": str(output), "GITHUB_WORKSPACE": str(tmp_path / "work")}
    return env, output


def _gen_step() -> dict:
    return _step("plan", lambda s: s.get("id") == "gen")


def test_matrix_step_fails_when_pipeline_matrix_fails(tmp_path):
    env, output = _fake_env(tmp_path, "fail")
    done = _run_step(_gen_step(), tmp_path, env)
    assert done.returncode != 0, f"the step passed:\n{done.stdout}{done.stderr}"
    assert output.read_text() == "", f"GITHUB_OUTPUT got {output.read_text()!r}"
    assert "bad tree" in done.stdout + done.stderr     # the reason is in the step's log


def test_matrix_step_writes_one_line_of_json(tmp_path):
    env, output = _fake_env(tmp_path, "ok")
    done = _run_step(_gen_step(), tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert output.read_text() == 'matrix={"include":[{"name":"a"}]}\n'


# --- the container job: /dev/kvm, ccache path -------------------------------------------------

def test_container_gets_dev_kvm_and_tcg_needs_none(tmp_path):
    container = _workflow()["jobs"]["run"]["container"]
    assert isinstance(container, dict)
    item = _matrix_item(CI / "matrix-job.yaml")
    options = _expand(container, item)["options"]
    assert "--device /dev/kvm" in options
    job = tmp_path / "job.yaml"
    job.write_text("tree: debian:6.1\nseries: none\nmatrix:\n  trees: [debian:6.1]\n"
                   "  accel: tcg\n")
    tcg = json.loads(M.github(M.load_matrix(job)))["include"][0]
    assert "/dev/kvm" not in _expand(container, tcg).get("options", "")


def test_ccache_dir_is_a_container_path_and_the_cached_one(tmp_path):
    run = _workflow()["jobs"]["run"]
    assert "github.workspace" not in json.dumps(run), \
        "github.workspace is the host's path, not the container's"
    step = _step("run", lambda s: "CCACHE_DIR" in s.get("run", ""))
    item = _matrix_item(CI / "matrix-job.yaml")
    assert item["ccache_dir"] == ".ccache"
    step = _expand(step, item)
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    env = {"PATH": "/usr/bin:/bin", "GITHUB_ENV": str(github_env),
           "GITHUB_WORKSPACE": "/__w/kp/kp", **{k: str(v) for k, v in step.get("env", {}).items()}}
    done = _run_step(step, tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert github_env.read_text() == "CCACHE_DIR=/__w/kp/kp/.ccache\n"
    cache = _step("run", lambda s: s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["path"].replace(" ", "") == "${{env.CCACHE_DIR}}"
    # restored after the checkout (which cleans the workspace), before the build
    names = [s.get("uses", s.get("name", "")) for s in run["steps"]]
    assert names.index(cache["uses"]) > next(i for i, n in enumerate(names)
                                            if n.startswith("actions/checkout@"))


# --- JUnit per test case ----------------------------------------------------------------------

def test_summary_step_uses_the_per_test_summary():
    step = _step("run", lambda s: "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert step.get("if") in ("always()", "${{ always() }}")
    assert "junit-summary" in step["run"]
    upload = _step("run", lambda s: s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "out/"

