"""`pipeline series import`: thread dump, mbox, folder and URL sources; completeness and
parse checks; the folder it writes loads with pipeline.series and applies with git am."""

from __future__ import annotations

import gzip
import http.server
import subprocess
import threading
from pathlib import Path

import pytest

from pipeline import series
from pipeline.commands import series_import as intake
from pipeline.commands.mailsource import parse_dump, read_mails
from pipeline.errors import BadInput

REFERENCE = Path("/work/shared/reference/000_e14dab0ad1b59099.txt")
GIT = ["git", "-c", "user.name=T", "-c", "user.email=t@example.org"]


def quiet(_: str) -> None:
    pass


def git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A repository with a base commit and two patch commits on top (HEAD~2 = base)."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    (path / "a.c").write_text("int a;\n\tint keep;\n")
    git(path, "add", "a.c")
    git(path, "commit", "-qm", "base")
    (path / "a.c").write_text("int a = 1;\n\tint keep;\n")
    git(path, "commit", "-qam", "a: set a")
    (path / "b.c").write_text("int b;\n")
    git(path, "add", "b.c")
    git(path, "commit", "-qm", "b: add b")
    return path


def format_patches(repo: Path, out: Path, *extra: str) -> list[Path]:
    names = git(repo, "format-patch", "-o", str(out), "-2", "HEAD", *extra).split()
    return [Path(n) for n in names]


def mbox_of(files: list[Path]) -> str:
    return "".join(f.read_text() for f in files)


def reply(subject: str) -> str:
    return (f"From nobody Mon Sep 17 00:00:00 2001\nFrom: R <r@example.org>\n"
            f"Subject: Re: {subject}\n\n> quoted\nLooks fine.\n\n")


# --- subjects ---------------------------------------------------------------------------------

@pytest.mark.parametrize("subject, expect", [
    ("[PATCH 1/2] a: b", (False, True, 1, 2, 1, "a: b")),
    ("[RFC PATCH v3 02/10] x", (False, True, 2, 10, 3, "x")),
    ("[PATCH net-next v2 0/3] cover", (False, True, 0, 3, 2, "cover")),
    ("[RFC][PATCH 3/4] y", (False, True, 3, 4, 1, "y")),
    ("Re: [RFC PATCH 1/2] add pinned flags", (True, True, 1, 2, 1, "add pinned flags")),
    ("RE: Re: [PATCH] lone", (True, True, 1, 1, 1, "lone")),
    ("[PATCH] single", (False, True, 1, 1, 1, "single")),
    ("[ANNOUNCE] not a patch", (False, False, 1, 1, 1, "not a patch")),
])
def test_parse_subject(subject, expect):
    tag = intake.parse_subject(subject)
    assert (tag.reply, tag.is_patch, tag.number, tag.total, tag.version, tag.title) == expect


def test_find_base_and_slug():
    assert intake.find_base("This series is based on v5.14-rc7.\n") == ["5.14"]
    assert intake.find_base("base-commit: abc (v6.1)\n") == ["6.1"]
    assert intake.find_base("Against linux-6.12.3, tested.") == ["6.12"]
    assert intake.find_base("no version here 1.8.3.1") == []
    assert intake.slug("kernfs: add pinned nodes that stay deactivated until handed out") == \
        "kernfs-add-pinned-nodes-that-stay-deactivated-until-"   # as git format-patch


# --- the RFC thread dump ----------------------------------------------------------------------

@pytest.mark.skipif(not REFERENCE.is_file(), reason="reference thread dump not present")
def test_reference_dump_names_missing_patch_and_damaged_diff(tmp_path):
    mails = read_mails(str(REFERENCE))
    assert len(mails) == 13
    assert sum(m.subject.startswith("Re:") for m in mails) == 11
    with pytest.raises(BadInput) as err:
        intake.import_series(str(REFERENCE), tmp_path / "out", quiet)
    text = err.value.message
    assert "2/2 not found" in text and "have 0/2 (cover letter), 1/2" in text
    assert "patch 1/2 'add pinned flags for kernfs node'" in text
    assert "corrupt patch" in text and "leading whitespace" in text
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not REFERENCE.is_file(), reason="reference thread dump not present")
def test_reference_dump_incomplete_repaired(tmp_path):
    logged: list[str] = []
    result = intake.import_series(str(REFERENCE), tmp_path / "out", logged.append,
                                  allow_incomplete=True, repair=True, base=["5.14"])
    assert result.missing == [2]
    assert any("2/2 not found" in line for line in logged)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "0000-cover-letter.patch", "0001-add-pinned-flags-for-kernfs-node.patch",
        "series.yaml"]
    loaded = series.load_folder(tmp_path / "out")
    assert loaded.base == ["5.14"] and len(loaded.patches) == 1
    assert loaded.patches[0].subject == "add pinned flags for kernfs node"
    assert "cgroup pool" in loaded.description and "Yi Tao" in loaded.link
    # the repaired diff parses
    patch = tmp_path / "p"
    patch.write_text(loaded.patches[0].text)
    subprocess.run(["git", "apply", "--numstat", str(patch)], cwd=tmp_path, check=True,
                   capture_output=True)


def test_dump_without_permalinks(tmp_path):
    dump = ("2024-01-02 10:00:00\n\nby A B\n\nSubject: [PATCH] x: y\n\nbody\n"
            "---\ndiff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n\n"
            "2024-01-02 11:00:00\n\nby C\n\nSubject: Re: [PATCH] x: y\n\nok\n")
    mails = parse_dump(dump, "dump")
    assert [m.subject for m in mails] == ["[PATCH] x: y", "Re: [PATCH] x: y"]
    assert mails[0].author.startswith("A B <") and "2024" in mails[0].date
    assert "+b" in mails[0].body and "ok" not in mails[0].body


# --- mbox, folder, URL ------------------------------------------------------------------------

def test_mbox_picks_newest_version_orders_and_applies(repo, tmp_path):
    v1 = format_patches(repo, tmp_path / "v1", "--subject-prefix=RFC PATCH", "--cover-letter")
    v2 = format_patches(repo, tmp_path / "v2", "-v2", "--cover-letter")
    cover = v2[0].read_text().replace("*** BLURB HERE ***", "Based on v6.1. Two patches.")
    v2[0].write_text(cover)
    # out of order, with replies and the older version mixed in
    text = (mbox_of([v2[2]]) + reply("[PATCH v2 1/2] a: set a") + mbox_of(v1)
            + mbox_of([v2[1], v2[0]]))
    (tmp_path / "thread.mbox").write_text(text)
    result = intake.import_series(str(tmp_path / "thread.mbox"), tmp_path / "out", quiet)
    assert result.version == 2 and result.base == ["6.1"]
    assert [p.file_name for p in result.patches] == ["0001-a-set-a.patch", "0002-b-add-b.patch"]
    loaded = series.load_folder(tmp_path / "out")
    assert loaded.base == ["6.1"] and "Two patches" in loaded.description
    # the written patches apply with git am on the base and give the same tree
    check = tmp_path / "check"
    git(tmp_path, "clone", "-q", str(repo), str(check))
    git(check, "checkout", "-q", "HEAD~2")
    git(check, "am", "-q", *sorted(str(p) for p in (tmp_path / "out").glob("000[1-9]-*")))
    assert git(check, "rev-parse", "HEAD^{tree}") == git(repo, "rev-parse", "HEAD^{tree}")
    assert git(check, "log", "-1", "--format=%an %s") == "T b: add b\n"


def test_version_flag_and_unknown_version(repo, tmp_path):
    v1 = format_patches(repo, tmp_path / "v1")
    v2 = format_patches(repo, tmp_path / "v2", "-v2")
    (tmp_path / "t.mbox").write_text(mbox_of(v1 + v2))
    result = intake.import_series(str(tmp_path / "t.mbox"), tmp_path / "o1", quiet, version=1,
                                  base=["6.1"])
    assert result.version == 1 and result.cover is None
    with pytest.raises(BadInput, match="--version 3: the thread has patches of version v1, v2"):
        intake.import_series(str(tmp_path / "t.mbox"), tmp_path / "o2", quiet, version=3)


def test_folder_source(repo, tmp_path):
    format_patches(repo, tmp_path / "pf", "--cover-letter")
    result = intake.import_series(str(tmp_path / "pf"), tmp_path / "out", quiet, name="mine",
                                  base=["6.1"])
    assert result.name == "mine" and result.cover is not None and len(result.patches) == 2


def test_url_source_gzip(repo, tmp_path):
    files = format_patches(repo, tmp_path / "pf", "--cover-letter")
    payload = gzip.compress(mbox_of(files).encode())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/r/thread/t.mbox.gz":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/r/thread/t.mbox.gz"
        result = intake.import_series(url, tmp_path / "out", quiet, base=["6.1"])
        assert len(result.patches) == 2
        with pytest.raises(BadInput, match="HTTP 404"):
            intake.import_series(url + "x", tmp_path / "out2", quiet)
    finally:
        server.shutdown()
        thread.join(timeout=5)


# --- bad input --------------------------------------------------------------------------------

def test_no_patches(tmp_path):
    (tmp_path / "t.mbox").write_text(reply("[PATCH 1/2] x") + reply("[PATCH 2/2] y"))
    with pytest.raises(BadInput, match="no patch mails found"):
        intake.import_series(str(tmp_path / "t.mbox"), tmp_path / "out", quiet)


def test_duplicate_number_with_other_content(repo, tmp_path):
    files = format_patches(repo, tmp_path / "pf")
    other = files[1].read_text().replace("[PATCH 2/2]", "[PATCH 1/2]")
    (tmp_path / "t.mbox").write_text(mbox_of(files) + other)
    with pytest.raises(BadInput, match="duplicate patch 1/2"):
        intake.import_series(str(tmp_path / "t.mbox"), tmp_path / "out", quiet)
    # the same mail twice (an archive that lists it twice) is fine
    (tmp_path / "t2.mbox").write_text(mbox_of(files + files[:1]))
    intake.import_series(str(tmp_path / "t2.mbox"), tmp_path / "out", quiet, base=["6.1"])


def test_missing_patch_named(repo, tmp_path):
    files = format_patches(repo, tmp_path / "pf", "--cover-letter")
    (tmp_path / "t.mbox").write_text(mbox_of([files[0], files[2]]))
    with pytest.raises(BadInput, match=r"1/2 not found \(no \[PATCH 1/2\] mail\)"):
        intake.import_series(str(tmp_path / "t.mbox"), tmp_path / "out", quiet)


def test_unparsable_patch_named(repo, tmp_path):
    files = format_patches(repo, tmp_path / "pf")
    broken = files[1].read_text().replace("+int b;", "int b;")  # not a hunk line
    (tmp_path / "t.mbox").write_text(mbox_of(files[:1]) + broken)
    with pytest.raises(BadInput, match=r"patch 2/2 'b: add b' .*git apply cannot parse"):
        intake.import_series(str(tmp_path / "t.mbox"), tmp_path / "out", quiet)


def test_patch_without_diff(tmp_path):
    (tmp_path / "t.mbox").write_text("From x Mon Sep 17 00:00:00 2001\nFrom: A <a@b.c>\n"
                                     "Subject: [PATCH] words only\n\nno diff here\n")
    with pytest.raises(BadInput, match="patch 1/1 'words only'.*contains no diff"):
        intake.import_series(str(tmp_path / "t.mbox"), tmp_path / "out", quiet)


def test_refuses_non_empty_out_and_missing_source(repo, tmp_path):
    format_patches(repo, tmp_path / "pf")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    with pytest.raises(BadInput, match="exists and is not empty"):
        intake.import_series(str(tmp_path / "pf"), tmp_path / "out", quiet)
    assert (tmp_path / "out" / "keep").exists()
    # --force replaces only a folder that `series import` wrote (issue 13: it deleted a
    # whole git checkout given as -o by mistake)
    with pytest.raises(BadInput, match="--force refused"):
        intake.import_series(str(tmp_path / "pf"), tmp_path / "out", quiet, force=True)
    assert (tmp_path / "out" / "keep").read_text() == "x"
    intake.import_series(str(tmp_path / "pf"), tmp_path / "new", quiet)
    intake.import_series(str(tmp_path / "pf"), tmp_path / "new", quiet, force=True)
    (tmp_path / "new" / ".git").mkdir()
    with pytest.raises(BadInput, match="'.git'"):
        intake.import_series(str(tmp_path / "pf"), tmp_path / "new", quiet, force=True)
    assert (tmp_path / "new" / ".git").is_dir()
    with pytest.raises(BadInput, match="no such file"):
        intake.import_series(str(tmp_path / "nope"), tmp_path / "o", quiet)


def test_whitespace_repair_roundtrip():
    diff = ("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,4 +1,4 @@\nctx one\n\n-old\n+new\n"
            "ctx two\n--\n1.8.3.1\n")
    assert "diff line 5" in intake.whitespace_damage(diff)
    fixed = intake.repair_whitespace(diff)
    assert " ctx one\n \n-old\n+new\n ctx two\n--\n" in fixed
    assert intake.whitespace_damage(fixed) == ""


def _repo_with_from_lines(tmp_path: Path, commits: int) -> Path:
    """A repository with a base commit and `commits` commits whose messages have a line
    beginning "From the RFC thread of 2021"."""
    path = tmp_path / "r"
    path.mkdir()
    git(path, "init", "-q")
    (path / "a.c").write_text("int a;\n")
    git(path, "add", "a.c")
    git(path, "commit", "-qm", "base")
    for n in range(1, commits + 1):
        (path / "a.c").write_text(f"int a = {n};\n")
        git(path, "commit", "-qam", f"a: set {n}\n\nFrom the RFC thread of 2021\nmore words.")
    return path


def test_import_from_line_in_commit_message(tmp_path):
    """A commit message line "From the RFC thread of 2021" does not cut the mail in two."""
    path = _repo_with_from_lines(tmp_path, 2)
    files = format_patches(path, tmp_path / "pf", "--cover-letter")
    (tmp_path / "t.mbox").write_text(mbox_of(files))
    result = intake.import_series(str(tmp_path / "t.mbox"), tmp_path / "out", quiet,
                                  base=["6.1"])
    assert [p.file_name for p in result.patches] == ["0001-a-set-1.patch", "0002-a-set-2.patch"]
    assert "From the RFC thread of 2021" in result.patches[1].text


# --- trailers from replies --------------------------------------------------------------------

THREAD = """\
From cover Mon Sep 17 00:00:00 2001
From: A U Thor <author@example.org>
Date: Mon, 2 Sep 2024 10:00:00 +0000
Subject: [PATCH 0/2] set a, add b
Message-Id: <cover.1@example.org>

Based on v6.1.

From patch1 Mon Sep 17 00:00:00 2001
From: A U Thor <author@example.org>
Date: Mon, 2 Sep 2024 10:00:01 +0000
Subject: [PATCH 1/2] a: set a
Message-Id: <patch.1@example.org>
In-Reply-To: <cover.1@example.org>
References: <cover.1@example.org>

Set a to 1.

Signed-off-by: A U Thor <author@example.org>
---
 a.c | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

diff --git a/a.c b/a.c
--- a/a.c
+++ b/a.c
@@ -1,2 +1,2 @@
-int a;
+int a = 1;
 \tint keep;
--
2.39.2

From patch2 Mon Sep 17 00:00:00 2001
From: A U Thor <author@example.org>
Date: Mon, 2 Sep 2024 10:00:02 +0000
Subject: [PATCH 2/2] b: add b
Message-Id: <patch.2@example.org>
In-Reply-To: <cover.1@example.org>
References: <cover.1@example.org>

Add b.

Signed-off-by: A U Thor <author@example.org>
---
 b.c | 1 +
 1 file changed, 1 insertion(+)

diff --git a/b.c b/b.c
new file mode 100644
--- /dev/null
+++ b/b.c
@@ -0,0 +1 @@
+int b;
--
2.39.2

From reply1 Mon Sep 17 00:00:00 2001
From: Rev Iewer <rev@example.org>
Date: Tue, 3 Sep 2024 09:00:00 +0000
Subject: Re: [PATCH 2/2] b: add b
Message-Id: <reply.1@example.org>
In-Reply-To: <patch.2@example.org>
References: <cover.1@example.org> <patch.2@example.org>

On Mon, A U Thor wrote:
> Add b.
>
> Signed-off-by: A U Thor <author@example.org>

Reviewed-by: Rev Iewer <rev@example.org>

From reply2 Mon Sep 17 00:00:00 2001
From: Ack Er <ack@example.org>
Date: Tue, 3 Sep 2024 10:00:00 +0000
Subject: Re: [PATCH 0/2] set a, add b
Message-Id: <reply.2@example.org>
In-Reply-To: <cover.1@example.org>
References: <cover.1@example.org>

> Based on v6.1.
> Reviewed-by: Quoted Person <quoted@example.org>

For the series:
Acked-by: Ack Er <ack@example.org>

From reply3 Mon Sep 17 00:00:00 2001
From: Rev Iewer <rev@example.org>
Date: Tue, 3 Sep 2024 11:00:00 +0000
Subject: Re: [PATCH 2/2] b: add b
Message-Id: <reply.3@example.org>
In-Reply-To: <reply.1@example.org>
References: <cover.1@example.org> <patch.2@example.org> <reply.1@example.org>

Repeating it, in case it got lost:
Reviewed-by: Rev Iewer <rev@example.org>

"""


def test_import_collects_trailers_from_replies(repo, tmp_path):
    """Reviewed-by/Acked-by/Tested-by given in replies reach the patch they answer (a reply
    to the cover letter: every patch), before `---`, after the patch's own trailers, once;
    a quoted `> Reviewed-by:` is not collected."""
    (tmp_path / "t.mbox").write_text(THREAD)
    lines: list[str] = []
    result = intake.import_series(str(tmp_path / "t.mbox"), tmp_path / "out", lines.append)
    assert [p.file_name for p in result.patches] == ["0001-a-set-a.patch", "0002-b-add-b.patch"]
    one, two = ((tmp_path / "out" / p.file_name).read_text() for p in result.patches)
    assert ("Set a to 1.\n\nSigned-off-by: A U Thor <author@example.org>\n"
            "Acked-by: Ack Er <ack@example.org>\n---\n") in one
    assert ("Add b.\n\nSigned-off-by: A U Thor <author@example.org>\n"
            "Reviewed-by: Rev Iewer <rev@example.org>\n"
            "Acked-by: Ack Er <ack@example.org>\n---\n") in two
    assert "Quoted Person" not in one + two
    # reply 3 repeats reply 1's Reviewed-by: 2 trailers, one of them on both patches
    assert "collected 2 trailers from 3 replies (3 added to 2 patches)" in lines, lines
    assert "  0002-b-add-b.patch: + Reviewed-by: Rev Iewer <rev@example.org>" in lines
    # git am keeps them in the commit messages
    check = tmp_path / "check"
    git(tmp_path, "clone", "-q", str(repo), str(check))
    git(check, "checkout", "-q", "HEAD~2")
    git(check, "am", "-q", *sorted(str(p) for p in (tmp_path / "out").glob("000[1-9]-*")))
    assert git(check, "log", "-1", "--format=%(trailers:only)") == (
        "Signed-off-by: A U Thor <author@example.org>\n"
        "Reviewed-by: Rev Iewer <rev@example.org>\n"
        "Acked-by: Ack Er <ack@example.org>\n\n")
    assert git(check, "rev-parse", "HEAD^{tree}") == git(repo, "rev-parse", "HEAD^{tree}")


def test_reply_trailers_and_add_trailers():
    assert intake.reply_trailers("> Acked-by: Q <q@x.org>\nreviewed-by: R S <r@x.org>\n"
                                 "Tested-by: nobody\nAcked-by: A <a@x.org>\r\n") == [
        "Reviewed-by: R S <r@x.org>", "Acked-by: A <a@x.org>"]
    body = "No trailers here.\n---\n a | 1 +\n\ndiff --git a/a b/a\n"
    assert intake.add_trailers(body, ["Acked-by: A <a@x.org>"]) == (
        "No trailers here.\n\nAcked-by: A <a@x.org>\n---\n a | 1 +\n\ndiff --git a/a b/a\n")


def test_imported_message_keeps_its_from_lines_through_git_am(tmp_path):
    """A body line beginning "From " reaches the commit as written: only a line git mailsplit
    would take for an mbox separator is escaped (git am does not unescape ">From")."""
    path = _repo_with_from_lines(tmp_path, 1)
    files = format_patches(path, tmp_path / "pf")
    (tmp_path / "t.mbox").write_text(mbox_of(files))
    result = intake.import_series(str(tmp_path / "t.mbox"), tmp_path / "out", quiet,
                                  base=["6.1"])
    git(path, "reset", "-q", "--hard", "HEAD~1")
    last = result.patches[-1]
    assert last.file_name.endswith("a-set-1.patch"), [p.file_name for p in result.patches]
    patch = tmp_path / "am.patch"
    patch.write_text(last.text)
    git(path, "am", "-q", str(patch))
    message = subprocess.run(["git", "-C", str(path), "log", "-1", "--format=%B"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    assert "\nFrom the RFC thread of 2021\n" in message, message


@pytest.mark.parametrize("line, escaped", [
    ("From the RFC thread of 2021", False),
    ("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001", True),
    ("From someone Fri Dec  4 01:54:05 2026", True),
    ("From here: 12:30 in 1985", False),
])
def test_only_mbox_separator_lines_are_escaped(line, escaped):
    assert intake.looks_like_mbox_separator(line) is escaped
