"""pipeline/data/job.schema.json: the job file's JSON schema (for editors) agrees with
pipeline.job's validator and accepts every job file of the repository."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from pipeline import job as jobmod
from pipeline.commands import matrix as matrixmod
from pipeline.job import DEFAULT_JOB, PROJECT_ROOT

SCHEMA_PATH = Path(jobmod.__file__).parent / "data" / "job.schema.json"
FIXTURES = Path(__file__).parent / "fixtures"


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validator() -> jsonschema.Draft202012Validator:
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


def errors(data) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator().iter_errors(data))


def repo_job_files() -> list[Path]:
    """The default job, the CI jobs, and any job file among the test fixtures."""
    found = [DEFAULT_JOB, *sorted((PROJECT_ROOT / "ci").glob("*-job.yaml"))]
    for path in sorted([*FIXTURES.rglob("*.yaml"), *FIXTURES.rglob("*.yml")]):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and ("tree" in data or "variants" in data):
            found.append(path)
    return found


def test_schema_is_valid_draft_2020_12_and_documented():
    s = schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(s)

    def walk(node, where):
        for name, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{where}.{name} has no description"
            walk(sub, f"{where}.{name}")
            if "items" in sub:
                walk(sub["items"], f"{where}.{name}[]")
        for name, sub in node.get("$defs", {}).items():
            walk(sub, f"$defs.{name}")
    walk(s, "")


@pytest.mark.parametrize("path", repo_job_files(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_repo_job_files_validate_against_the_schema(path):
    assert errors(yaml.safe_load(path.read_text())) == []
    jobmod.load_job(None if path == DEFAULT_JOB else path)   # and the validator takes it


def test_the_tests_sample_job_validates_against_the_schema():
    from test_job import GOOD
    assert errors(yaml.safe_load(GOOD)) == []


@pytest.mark.parametrize("text, where", [
    ("colour: blue\n", ""),
    ("variants: [{name: a, bogus: 1}]\n", "variants/0"),
    ("variants: [{series: false}]\n", "variants/0"),
    ("variants: []\n", "variants"),
    ("qemu: {smp: 0}\n", "qemu/smp"),
    ("qemu: {accel: xen}\n", "qemu/accel"),
    ("timeouts: {boot: -1}\n", "timeouts/boot"),
    ("kselftest: {enabled: yes-please}\n", "kselftest/enabled"),
    ("kselftest: {alpha: 0.7}\n", "kselftest/alpha"),
    ("tree_sha256: abc\n", "tree_sha256"),
    ("base_config: O=/etc\n", "base_config"),
    ("matrix: {trees: [debian:6.1], colour: 1}\n", "matrix"),
])
def test_schema_refuses_what_the_validator_refuses(text, where):
    found = errors(yaml.safe_load("tree: debian:6.1\n" + text))
    assert found and any(e.startswith(f"{where}: ") for e in found), found


def _schema_keys(node: dict) -> set[str]:
    return set(node["properties"])


def test_schema_keys_are_the_validators_keys():
    s = schema()
    props = s["properties"]
    variant = s["$defs"]["variant"]
    assert props["variants"]["items"] == {"$ref": "#/$defs/variant"}
    assert _schema_keys(s) == jobmod._TOP_KEYS
    assert _schema_keys(variant) == jobmod._VARIANT_KEYS
    assert _schema_keys(props["qemu"]) == jobmod._QEMU_KEYS
    assert _schema_keys(props["timeouts"]) == jobmod._TIMEOUT_KEYS
    assert _schema_keys(props["kselftest"]) == jobmod._KSELFTEST_KEYS
    assert _schema_keys(props["matrix"]) == matrixmod._MATRIX_KEYS
    assert _schema_keys(props["matrix"]["properties"]["exclude"]["items"]) == \
        matrixmod._EXCLUDE_KEYS
    # every mapping of the schema is closed, as the validator is
    for node in (s, variant, props["qemu"], props["timeouts"],
                 props["kselftest"], props["matrix"],
                 props["matrix"]["properties"]["exclude"]["items"]):
        assert node["additionalProperties"] is False


def test_schema_is_package_data():
    text = (PROJECT_ROOT / "pyproject.toml").read_text()
    import tomllib
    data = tomllib.loads(text)
    patterns = data["tool"]["setuptools"]["package-data"]["pipeline"]
    rel = SCHEMA_PATH.relative_to(SCHEMA_PATH.parent.parent).as_posix()
    assert any(Path(rel).match(p) for p in patterns), (rel, patterns)
