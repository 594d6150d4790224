"""pipeline.kselftest.known_issues: the shipped file is valid; bad files are refused with the entry."""

import pytest

from pipeline.errors import BadInput
from pipeline.kselftest import known_issues


def test_the_shipped_file_is_valid_and_every_entry_has_reason_and_evidence():
    known = known_issues.load()
    assert known.entries
    for entry in known.entries:
        assert entry.id.startswith("cgroup/") and entry.reason and entry.evidence
        assert entry.applies_to("6.1.192")


def test_kernel_range(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text('issues:\n  - {id: "cgroup/test_x: a", since: "6.1", until: "6.12", '
                    'reason: r, evidence: e}\n')
    known = known_issues.load(path)
    assert known.for_kernel("6.1.192").match("cgroup", "test_x: a") is not None
    assert known.for_kernel("6.0.9").match("cgroup", "test_x: a") is None
    assert known.for_kernel("6.12.117").match("cgroup", "test_x: a") is None
    assert known.match("cgroup", "test_x: b") is None


@pytest.mark.parametrize("text,problem", [
    ('issues:\n  - {id: "cgroup/x", reason: r}\n', r"issues\[0\]: `evidence` must be"),
    ('issues:\n  - {id: "x", reason: r, evidence: e}\n', r"must be <collection>/<program>"),
    ('issues:\n  - {id: "c/x", reason: r, evidence: e, until: later}\n', r"until: not a kernel"),
    ('issues:\n  - {id: "c/x", reason: r, evidence: e, flakey: true}\n', r"unknown key"),
    (('issues:\n  - {id: "c/x", reason: r, evidence: e}\n  - {id: "c/x", reason: r, '
     'evidence: e}\n'), r"issues\[1\]: id 'c/x' is listed twice"),
    ("issues: {a: 1}\n", r"expected a mapping with a list"),
])
def test_bad_files_are_refused(tmp_path, text, problem):
    path = tmp_path / "k.yaml"
    path.write_text(text)
    with pytest.raises(BadInput, match=problem):
        known_issues.load(path)
