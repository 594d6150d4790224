import subprocess
from pathlib import Path

import pytest

from pipeline import series as S
from pipeline.errors import BadInput

PATCH = """\
From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001
From: A <a@example.org>
Date: Wed, 8 Sep 2021 12:16:41 +0800
Subject: [PATCH {n}/2] cgroup: change number
 {n}

---
 kernel/x.c | 2 +-
diff --git a/kernel/x.c b/kernel/x.c
--- a/kernel/x.c
+++ b/kernel/x.c
@@ -1 +1 @@
-int x;
+int x = {n};
--
2.39.2

"""


def make_series(folder: Path, base: str = '["6.1"]', numbers=(1, 2), name="pool") -> Path:
    folder.mkdir(parents=True)
    (folder / "series.yaml").write_text(f"name: {name}\nbase: {base}\nlink: http://x\n")
    for n in numbers:
        (folder / f"{n:04d}-change-{n}.patch").write_text(PATCH.format(n=n))
    return folder


def test_folder_series_in_order_with_subjects(tmp_path):
    folder = make_series(tmp_path / "s", numbers=(2, 1, 0))
    series = S.load_folder(folder)
    assert [p.name for p in series.patches] == ["0001-change-1.patch", "0002-change-2.patch"]
    assert series.patches[0].subject == "cgroup: change number 1"
    assert series.base == ["6.1"] and len(series.hash) == 64


def test_hash_changes_with_content(tmp_path):
    folder = make_series(tmp_path / "s")
    before = S.load_folder(folder).hash
    (folder / "0002-change-2.patch").write_text(PATCH.format(n=7))
    assert S.load_folder(folder).hash != before


def test_missing_patch_number(tmp_path):
    folder = make_series(tmp_path / "s", numbers=(1, 3))
    with pytest.raises(BadInput, match="patch 0002 is missing"):
        S.load_folder(folder)


def test_duplicated_patch_number(tmp_path):
    folder = make_series(tmp_path / "s")
    (folder / "0002-other.patch").write_text(PATCH.format(n=9))
    with pytest.raises(BadInput, match="0002 is used twice: 0002-change-2.patch and "
                                       "0002-other.patch|0002 is used twice: 0002-other.patch"):
        S.load_folder(folder)


def test_bad_metadata(tmp_path):
    folder = make_series(tmp_path / "s")
    (folder / "series.yaml").write_text("name: x\nbase: [6.1]\nversion: 2\n")
    with pytest.raises(BadInput, match="version: unknown key"):
        S.load_folder(folder)


def test_mbox(tmp_path):
    mbox = tmp_path / "pool.mbox"
    mbox.write_text(PATCH.format(n=1) + PATCH.format(n=2))
    series = S.load_mbox(mbox)
    assert [p.subject for p in series.patches] == ["cgroup: change number 1",
                                                   "cgroup: change number 2"]
    assert series.name == "pool"


def test_mbox_without_patch(tmp_path):
    mbox = tmp_path / "empty.mbox"
    mbox.write_text("From abc Mon Sep 17 00:00:00 2001\nSubject: hello\n\njust talk\n")
    with pytest.raises(BadInput, match="mbox contains no patch"):
        S.load_mbox(mbox)


def test_pick_variant_by_version_longest_prefix(tmp_path):
    root = tmp_path
    make_series(root / "patches" / "pool" / "6.1", base='["6"]')
    make_series(root / "patches" / "pool" / "6.1-precise", base='["6.1"]')
    make_series(root / "patches" / "pool" / "6.12", base='["6.12"]')
    choice = S.locate("pool", root)
    assert S.pick(choice, "6.1.192").source.name == "6.1-precise"
    assert S.pick(choice, "6.12.117").source.name == "6.12"
    assert S.pick(choice, "6.10.3").source.name == "6.1"   # only "6" matches, not "6.1"


def test_pick_none_lists_variants(tmp_path):
    make_series(tmp_path / "patches" / "pool" / "6.1")
    make_series(tmp_path / "patches" / "pool" / "6.12", base='["6.12"]')
    with pytest.raises(BadInput, match=r"no variant for kernel 5.10.1; there are: "
                                       r"6.1 \(base 6.1\); 6.12 \(base 6.12\)"):
        S.pick(S.locate("pool", tmp_path), "5.10.1")


def test_unknown_series_name(tmp_path):
    make_series(tmp_path / "patches" / "pool" / "6.1")
    with pytest.raises(BadInput, match="known series: pool"):
        S.locate("nosuch", tmp_path)


def test_project_series_is_valid():
    """The project's own series folders parse (numbering, metadata)."""
    from pipeline.job import PROJECT_ROOT
    choice = S.locate("cgroup-pool", PROJECT_ROOT)
    assert S.pick(choice, "6.1.192").base == ["6.1"]
    assert S.pick(choice, "6.12.117").base == ["6.12"]


FROM_IN_BODY = """\
From {sha} Mon Sep 17 00:00:00 2001
From: A <a@example.org>
Date: Wed, 8 Sep 2021 12:16:41 +0800
Subject: [PATCH {n}/3] cgroup: change number {n}

Explain the change.

From the RFC thread of 2021
(the idea came up there, a line that begins with "From " and ends in a year).

Signed-off-by: A <a@example.org>
---
 kernel/x{n}.c | 2 +-
diff --git a/kernel/x{n}.c b/kernel/x{n}.c
--- a/kernel/x{n}.c
+++ b/kernel/x{n}.c
@@ -1 +1 @@
-int x;
+int x = {n};
--
2.39.2

"""


def test_split_mbox_ignores_from_line_in_commit_message(tmp_path):
    """A body line "From the RFC thread of 2021" is no message boundary (as for git am)."""
    text = "".join(FROM_IN_BODY.format(sha=str(n) * 40, n=n) for n in (1, 2, 3))
    mbox = tmp_path / "s.mbox"
    mbox.write_text(text)
    out = tmp_path / "split"
    out.mkdir()
    count = subprocess.run(["git", "mailsplit", "-b", f"-o{out}", str(mbox)], check=True,
                           capture_output=True, text=True).stdout.strip()
    assert count == "3"
    parts = S.split_mbox(text)
    assert len(parts) == 3
    assert "".join(parts) == text
    assert all("From the RFC thread of 2021\n" in part and "diff --git" in part
               for part in parts)
    series = S.load_mbox(mbox)
    assert [p.subject for p in series.patches] == [f"cgroup: change number {n}"
                                                   for n in (1, 2, 3)]


def test_split_mbox_empty_and_bare_mail():
    assert S.split_mbox("") == [] and S.split_mbox("\n \n") == []
    bare = "From: A <a@example.org>\nSubject: x\n\nbody\n"
    assert S.split_mbox(bare) == [bare]


def test_base_versions_are_read_as_written(tmp_path):
    """`base: [6.10]` is the version 6.10, not the float 6.1 (YAML reads 6.10 as 6.1)."""
    make_series(tmp_path / "patches" / "ten" / "6.10", base="[6.10]")
    choice = S.locate("ten", tmp_path)
    assert S.pick(choice, "6.10.3").base == ["6.10"]
    with pytest.raises(BadInput, match=r"no variant for kernel 6.1.192; there are: "
                                       r"6.10 \(base 6.10\)"):
        S.pick(choice, "6.1.192")
    # with a 6.1 variant beside it, each tree gets its own
    make_series(tmp_path / "patches" / "ten" / "6.1", base="[6.1]")
    choice = S.locate("ten", tmp_path)
    assert S.pick(choice, "6.1.192").source.name == "6.1"
    assert S.pick(choice, "6.10.3").source.name == "6.10"
    # a single scalar, ints and other number spellings stay as written
    for base, expect in (("6.10", ["6.10"]), ("[6, 6.1, 6.10]", ["6", "6.1", "6.10"]),
                         ("[6.1_0, 6:10, '6.10']", ["6.1_0", "6:10", "6.10"]),
                         ("[!!float 6.20]", ["6.20"])):
        folder = make_series(tmp_path / "b" / str(len(list((tmp_path).glob("b/*")))), base=base)
        assert S.load_folder(folder).base == expect, base


@pytest.mark.parametrize("meta, message", [
    ("name: x\nbase: {6.10: x}\n", "base: must be a list of kernel versions"),
    ("name: x\nbase: []\n", "base: must be a list of kernel versions"),
    ("name: x\nbase: [[6.1]]\n", "base: must be a list of kernel versions"),
    ("name: x\nbase: true\n", "base: must be a list of kernel versions"),
    ("name: 6.10\nbase: [6.1]\n", "name: must be a non-empty string"),
    ("name: x\nbase: [6.1]\nlink: 6.10\n", "link: must be a string"),
    ("name: x\nbase: [6.1]\ndescription: 3\n", "description: must be a string"),
    ("name: x\nbase: [6.1]\n6.10: x\n", r"6\.10: unknown key \(allowed: base, description"),
    ("6.10\n", "must be a mapping with name, base, link"),
])
def test_bad_metadata_messages(tmp_path, meta, message):
    folder = make_series(tmp_path / "s")
    (folder / "series.yaml").write_text(meta)
    with pytest.raises(BadInput, match=rf"^{tmp_path / 's' / 'series.yaml'}: {message}"):
        S.load_folder(folder)
