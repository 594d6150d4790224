"""pipeline.compiled: were the series' hunks really compiled? Small synthetic inputs (a fake
preprocessed file with line markers, a fake .cmd, a tiny tree compiled by the host's gcc),
plus one e2e check on the real 6.1 patched build folder."""

from __future__ import annotations

import os
import shutil
import textwrap
import time
import types
from pathlib import Path

import pytest

from pipeline import compiled
from pipeline.junit import summary, to_xml
from pipeline.results import FAILED, PASSED, SKIPPED, RunReport
from pipeline.series import Patch

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="needs gcc")


def patch_of(diff: str, name: str = "0001-x.patch") -> Patch:
    text = "From x Mon Sep 17 00:00:00 2001\nSubject: [PATCH] x\n\n---\n" + diff \
        + "-- \n2.39.2\n"
    return Patch(1, name, "x", text)


FOO_C = """\
#include "foo.h"

int always;

#ifdef CONFIG_FOO
int only_with_foo(void)
{
	return 1;
}
#endif

int call(int a,
	 int b);
"""

FOO_DIFF = """\
diff --git a/kernel/foo.c b/kernel/foo.c
--- a/kernel/foo.c
+++ b/kernel/foo.c
@@ -2,3 +2,3 @@
 
-int old;
+int always;
 
@@ -5,5 +5,5 @@ int always;
 #ifdef CONFIG_FOO
 int only_with_foo(void)
 {
-	return 0;
+	return 1;
 }
"""


# --- parsing the series ---------------------------------------------------------------------

def test_hunks_have_the_added_lines_of_the_post_image(tmp_path):
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "foo.c").write_text(FOO_C)
    hunks = compiled.series_hunks([patch_of(FOO_DIFF)], tmp_path)
    assert [(h.path, h.header, h.lines) for h in hunks] == [
        ("kernel/foo.c", "@@ -2,3 +2,3 @@", (3,)),
        ("kernel/foo.c", "@@ -5,5 +5,5 @@ int always;", (8,))]


def test_a_later_patch_moves_the_lines_of_an_earlier_one(tmp_path):
    first = """\
diff --git a/a.c b/a.c
--- a/a.c
+++ b/a.c
@@ -10,0 +11,1 @@
+int added_first;
"""
    second = """\
diff --git a/a.c b/a.c
--- a/a.c
+++ b/a.c
@@ -2,1 +2,3 @@
-int two;
+int two_a;
+int two_b;
+int two_c;
"""
    lines = [f"int l{i};" for i in range(1, 13)]
    lines[1:2] = ["int two_a;", "int two_b;", "int two_c;"]     # second patch
    lines.insert(12, "int added_first;")                       # first patch, after line 10
    (tmp_path / "a.c").write_text("\n".join(lines) + "\n")
    hunks = compiled.series_hunks([patch_of(first, "0001-a.patch"),
                                   patch_of(second, "0002-b.patch")], tmp_path)
    assert [(h.patch, h.lines) for h in hunks] == [("0001-a.patch", (13,)),
                                                  ("0002-b.patch", (2, 3, 4))]
    assert lines[12] == "int added_first;"


def test_a_hunk_applied_at_an_offset_is_found(tmp_path):
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "foo.c").write_text("/* moved */\n/* down */\n" + FOO_C)
    hunks = compiled.series_hunks([patch_of(FOO_DIFF)], tmp_path)
    assert [h.lines for h in hunks] == [(5,), (10,)]


def test_a_plain_diff_of_two_files():
    files = compiled.parse_patch("--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n"
                                 "--- /dev/null\n+++ b/y.h\n@@ -0,0 +1,2 @@\n+c\n+d\n")
    assert [(f.old_path, f.new_path, [h.header for h in f.hunks]) for f in files] == [
        ("x.c", "x.c", ["@@ -1,1 +1,1 @@"]), (None, "y.h", ["@@ -0,0 +1,2 @@"])]


def test_map_line_through_a_hunk():
    raw = compiled.parse_patch(patch_of(textwrap.dedent("""\
        --- a/x.c
        +++ b/x.c
        @@ -3,3 +3,4 @@
         c
        -d
        +d1
        +d2
         e
        """)).text)[0].hunks
    assert [compiled.map_line(n, raw) for n in (1, 3, 4, 5, 6)] == [1, 3, None, 6, 7]


def test_blank_and_comment_lines_are_not_checked(tmp_path):
    diff = """\
--- a/x.c
+++ b/x.c
@@ -1,1 +1,5 @@
 int a;
+
+/* a comment
+ * more */
+int b;
"""
    (tmp_path / "x.c").write_text("int a;\n\n/* a comment\n * more */\nint b;\n")
    assert [h.lines for h in compiled.series_hunks([patch_of(diff)], tmp_path)] == [(5,)]


# --- the preprocessed text and the conditional groups -------------------------------------------

FAKE_I = """\
# 0 "/src/kernel/foo.c"
# 0 "<built-in>"
#define __GNUC__ 12
# 1 "/src/kernel/foo.c"
# 1 "/src/kernel/foo.h" 1
int from_header;
# 2 "/src/kernel/foo.c" 2

int always;
# 12 "/src/kernel/foo.c"
int call(int a,

       int b);
"""


def test_visible_lines_follow_the_markers():
    seen = compiled.visible_lines(FAKE_I.splitlines(True), Path("/build"),
                                  {"/src/kernel/foo.c": "kernel/foo.c",
                                   "/src/kernel/foo.h": "kernel/foo.h"})
    # line 1 is the #include (the marker returning with flag 2), 3 the code, 12 and 14 the
    # call; 5-10 (the #ifdef CONFIG_FOO block) never appear
    # (0: the file was read at all)
    assert seen == {"kernel/foo.c": {0, 1, 3, 12, 14}, "kernel/foo.h": {0, 1}}


def test_lines_inside_an_ifdef_that_is_off_are_dead_with_the_option():
    lay = compiled.layout(FOO_C.splitlines())
    verdict = compiled.judge([3, 7, 8, 13], lay, {1, 3, 12, 14})
    assert verdict.live == {3, 13}           # 13: a continuation the preprocessor joined
    assert set(verdict.dead) == {7, 8}
    group = lay.groups[verdict.dead[8]]
    assert group.directive == "#ifdef CONFIG_FOO" and group.options() == ["CONFIG_FOO"]
    assert compiled.judge([8], lay, {1, 3, 8, 12}).dead == {}


def test_else_and_nested_groups_name_the_outer_option():
    text = textwrap.dedent("""\
        #if IS_ENABLED(CONFIG_BAR)
        int bar;
        #ifdef CONFIG_BAZ
        int baz;
        #endif
        #else
        int no_bar;
        #endif
        /* #ifdef CONFIG_IN_COMMENT */
        int end;
        """).splitlines()
    lay = compiled.layout(text)
    verdict = compiled.judge([4, 7, 10], lay, {7, 10})
    assert verdict.live == {7, 10}
    outer = lay.groups[verdict.dead[4]]      # the outermost group that is off
    assert outer.directive == "#if IS_ENABLED(CONFIG_BAR)"
    assert outer.options() == ["CONFIG_BAR"]
    dead_else = compiled.judge([7], lay, {2, 10}).dead
    assert lay.groups[dead_else[7]].describe() == \
        "`#else` of `#if IS_ENABLED(CONFIG_BAR)` (line 6)"


# --- the .cmd files -------------------------------------------------------------------------------

FAKE_CMD = """\
cmd_kernel/foo.o := ccache gcc -Wp,-MMD,kernel/.foo.o.d -nostdinc -I./include \
-DKBUILD_MODNAME='"foo"' -DX=\\#y -DY=$$z -c -o kernel/foo.o /src/kernel/foo.c   ; \
./tools/objtool/objtool --orc kernel/foo.o

source_kernel/foo.o := /src/kernel/foo.c

deps_kernel/foo.o := \\
    $(wildcard include/config/FOO) \\
  /src/kernel/foo.h \\

kernel/foo.o: $(deps_kernel/foo.o)
"""


def test_the_cmd_file_gives_the_compile_command_without_side_effects(tmp_path):
    cmd = compiled.parse_cmd_file(FAKE_CMD)
    assert cmd is not None
    assert cmd.obj == "kernel/foo.o" and cmd.source == "/src/kernel/foo.c"
    assert cmd.argv == ("gcc", "-nostdinc", "-I./include", '-DKBUILD_MODNAME="foo"',
                        "-DX=#y", "-DY=$z", "-c", "-o", "kernel/foo.o", "/src/kernel/foo.c")
    assert compiled.preprocess_argv(cmd, tmp_path / "foo.i") == [
        "gcc", "-E", "-dD", "-nostdinc", "-I./include", '-DKBUILD_MODNAME="foo"', "-DX=#y",
        "-DY=$z", "-o", str(tmp_path / "foo.i"), "/src/kernel/foo.c"]
    saved = FAKE_CMD.replace("cmd_kernel", "savedcmd_kernel", 1)    # 6.x's spelling
    assert compiled.parse_cmd_file(saved) == cmd
    assert compiled.parse_cmd_file("cmd_vmlinux.a := ar cDPrST vmlinux.a x.o\n") is None


def test_object_options_from_the_makefile(tmp_path):
    (tmp_path / "kernel" / "sub").mkdir(parents=True)
    (tmp_path / "kernel" / "Makefile").write_text(
        "obj-y += a.o\nobj-$(CONFIG_BAR) += bar.o \\\n\tother.o\n"
        "composite-$(CONFIG_PART) += piece.o\nobj-$(CONFIG_WHOLE) += composite.o\n"
        "obj-$(CONFIG_SUB) += sub/\n")
    (tmp_path / "kernel" / "sub" / "Makefile").write_text("obj-y += s.o\n")
    assert compiled.object_options(tmp_path, "kernel/other.o") == (
        ["CONFIG_BAR"], "obj-$(CONFIG_BAR) += other.o in kernel/Makefile")
    assert compiled.object_options(tmp_path, "kernel/piece.o")[0] == ["CONFIG_PART",
                                                                       "CONFIG_WHOLE"]
    assert compiled.object_options(tmp_path, "kernel/sub/s.o")[0] == ["CONFIG_SUB"]
    assert compiled.object_options(tmp_path, "kernel/none.o") == ([], "")


# --- a whole (tiny) build folder, compiled by the host's gcc ------------------------------------

def fake_build(tmp_path: Path, defines: list[str], objects: tuple[str, ...] = ("foo",),
               build_name: str = "build") -> tuple[Path, Path]:
    """A tree with kernel/foo.c (+ foo.h) and a build folder whose .cmd files say how Kbuild
    compiled them (with `-D` options standing in for the config)."""
    src, build = tmp_path / "src", tmp_path / build_name
    (src / "kernel").mkdir(parents=True, exist_ok=True)
    (build / "kernel").mkdir(parents=True, exist_ok=True)
    (src / "kernel" / "foo.c").write_text(FOO_C)
    (src / "kernel" / "foo.h").write_text(
        "#ifndef FOO_H\n#define FOO_H\nstruct foo { int a; };\n#ifdef CONFIG_FOO\n"
        "#define FOO_ON 1\nstatic inline int foo_on(void) { return 1; }\n#endif\n#endif\n")
    (src / "kernel" / "bar.c").write_text("int bar;\n")
    (src / "kernel" / "Makefile").write_text("obj-y += foo.o\nobj-$(CONFIG_BAR) += bar.o\n")
    for name in objects:
        c = src / "kernel" / f"{name}.c"
        flags = " ".join(defines)
        (build / "kernel" / f".{name}.o.cmd").write_text(
            f"cmd_kernel/{name}.o := gcc -Wp,-MMD,kernel/.{name}.o.d {flags} -c -o "
            f"kernel/{name}.o {c}\n\nsource_kernel/{name}.o := {c}\n\n"
            f"deps_kernel/{name}.o := \\\n  {src}/kernel/foo.h \\\n\n")
    return src, build


HEADER_DIFF = """\
diff --git a/kernel/foo.h b/kernel/foo.h
--- a/kernel/foo.h
+++ b/kernel/foo.h
@@ -3,6 +3,6 @@
-struct foo { int b; };
+struct foo { int a; };
 #ifdef CONFIG_FOO
-#define FOO_ON 0
-static inline int foo_on(void) { return 0; }
+#define FOO_ON 1
+static inline int foo_on(void) { return 1; }
 #endif
 #endif
diff --git a/kernel/bar.c b/kernel/bar.c
--- a/kernel/bar.c
+++ b/kernel/bar.c
@@ -1 +1 @@
-int baz;
+int bar;
"""


@needs_gcc
def test_a_hunk_inside_an_ifdef_that_is_off_is_not_compiled(tmp_path):
    src, build = fake_build(tmp_path, [])
    hunks = compiled.series_hunks([patch_of(FOO_DIFF), patch_of(HEADER_DIFF, "0002-h.patch")],
                                  src)
    check = compiled.check_build(hunks, src, build, "patched")
    by_header = {(r.hunk.path, r.hunk.header.split(" @@")[0]): r for r in check.results}
    assert by_header[("kernel/foo.c", "@@ -2,3 +2,3")].ok
    off = by_header[("kernel/foo.c", "@@ -5,5 +5,5")]
    assert not off.ok and off.options == ("CONFIG_FOO",)
    assert "`#ifdef CONFIG_FOO` (line 5)" in off.reason and "needs CONFIG_FOO" in off.reason
    header = by_header[("kernel/foo.h", "@@ -3,6 +3,6")]
    assert header.compiled == {3} and header.options == ("CONFIG_FOO",)   # 5-6 are off
    bar = by_header[("kernel/bar.c", "@@ -1,1 +1,1")]
    assert not bar.ok and bar.options == ("CONFIG_BAR",)
    assert "kernel/bar.o not built (obj-$(CONFIG_BAR) += bar.o in kernel/Makefile)" \
        in bar.reason
    assert check.preprocessed == ["kernel/foo.o"]          # once, for the .c and its header
    assert not list(build.rglob("*.i")) and not list(build.rglob("*.d"))
    cases = compiled.variant_cases(check)
    assert [c.status for c in cases] == [PASSED, SKIPPED, SKIPPED, SKIPPED]
    assert cases[1].name == "0001-x.patch kernel/foo.c @@ -5,5 +5,5 @@ int always;"


@needs_gcc
def test_the_same_hunks_compiled_with_the_option_on(tmp_path):
    src, build = fake_build(tmp_path, ["-DCONFIG_FOO"], objects=("foo", "bar"))
    hunks = compiled.series_hunks([patch_of(FOO_DIFF), patch_of(HEADER_DIFF, "0002-h.patch")],
                                  src)
    check = compiled.check_build(hunks, src, build, "patched")
    assert [r.ok for r in check.results] == [True, True, True, True], \
        [r.reason for r in check.results]


def run_of(*checks: compiled.VariantCheck) -> types.SimpleNamespace:
    lines: list[str] = []
    return types.SimpleNamespace(compiled={c.variant: c for c in checks}, report=RunReport(),
                                 log=lines.append, lines=lines, series=None)


@needs_gcc
def test_report_fails_a_hunk_no_variant_compiled(tmp_path):
    src, build_off = fake_build(tmp_path, [])
    _src, build_on = fake_build(tmp_path, ["-DCONFIG_FOO"], build_name="build-on")
    hunks = compiled.series_hunks([patch_of(FOO_DIFF), patch_of(HEADER_DIFF, "0002-h.patch")],
                                  src)
    off = compiled.check_build(hunks, src, build_off, "patched")
    on = compiled.check_build(hunks, src, build_on, "patched-debug")
    run = run_of(off, on)
    compiled.report(run)        # type: ignore[arg-type]
    [stage] = run.report.suites
    assert stage.name == "series.compiled"
    # Only bar.c is compiled by neither variant: the CONFIG_FOO hunks are by patched-debug.
    assert [(c.status, c.name) for c in stage.cases] == [
        (FAILED, "0002-h.patch kernel/bar.c @@ -1,1 +1,1 @@")]
    assert "would need CONFIG_BAR" in stage.cases[0].message
    assert "patched: kernel/bar.o not built" in stage.cases[0].details
    assert run.report.exit_code() == 1
    assert any("NOT compiled by any variant" in line for line in run.lines)
    xml = to_xml(run.report)
    assert '<testsuite name="series.compiled" tests="1" failures="1"' in xml
    assert summary(run.report)["compiled"]["never_compiled"] == [
        {"patch": "0002-h.patch", "file": "kernel/bar.c", "hunk": "@@ -1,1 +1,1 @@",
         "lines": "1", "options": ["CONFIG_BAR"], "accepted": False}]

    only_off = run_of(off)
    compiled.report(only_off)   # type: ignore[arg-type]
    names = [c.name for c in only_off.report.suites[0].cases]
    assert len(names) == 3 and all(c.status == FAILED for c in only_off.report.suites[0].cases)


def test_a_build_folder_without_cmd_files_is_not_checked(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "build").mkdir()
    (tmp_path / "src" / "a.c").write_text("int a;\n")
    hunks = compiled.series_hunks([patch_of("--- a/a.c\n+++ b/a.c\n@@ -1 +1 @@\n-int b;\n"
                                            "+int a;\n")], tmp_path / "src")
    check = compiled.check_build(hunks, tmp_path / "src", tmp_path / "build", "patched")
    assert not check.checked and "no Kbuild .o.cmd files" in check.note
    assert [c.status for c in compiled.variant_cases(check)] == [SKIPPED]
    run = run_of(check)
    compiled.report(run)        # type: ignore[arg-type]
    assert [c.status for c in run.report.suites[0].cases] == [SKIPPED]
    assert run.report.exit_code() == 0


# --- the real 6.1 patched build -------------------------------------------------------------------

def real_patched_build() -> tuple[Path, Path] | None:
    """The cached worktree and build folder of the default job's 6.1 patched variant."""
    cache = Path(os.environ.get("KERNEL_PIPELINE_CACHE", Path.home() / ".cache/kernel-pipeline"))
    builds = sorted((cache / "builds").glob("debian-6.1-*-cgroup-pool-*"))
    builds = [b for b in builds if (b / "kernel/cgroup/.cgroup-v1.o.cmd").exists()
              and not any(f"CONFIG_{o}=y" in (b / ".config").read_text()
                          for o in ("LOCKDEP", "KASAN", "KCSAN"))]
    for build in builds:
        key = build.name.rsplit("-", 1)[0]
        tree = cache / "worktrees" / key
        if tree.is_dir():
            return tree, build
    return None


@pytest.mark.e2e
def test_real_patched_build_compiles_every_hunk_and_a_planted_one_is_caught(tmp_path):
    found = real_patched_build()
    if found is None:
        pytest.skip("no cached 6.1 patched build: run `pipeline run --variant patched` first")
    src, build = found
    from pipeline.series import load_folder
    series = load_folder(Path(__file__).parent.parent / "patches" / "cgroup-pool" / "6.1")
    t0 = time.monotonic()
    hunks = compiled.series_hunks(series.patches, src)
    check = compiled.check_build(hunks, src, build, "patched")
    assert check.checked and len(check.results) == 40
    assert time.monotonic() - t0 < 60
    # Every hunk compiled but the !CONFIG_KERNFS stubs, which the series accepts.
    [stub] = [r for r in check.results if not r.ok]
    assert stub.hunk.path == "include/linux/kernfs.h" and stub.options == ("CONFIG_KERNFS=n",)
    real = run_of(check)
    real.series = series
    compiled.report(real)       # type: ignore[arg-type]
    assert [c.status for c in real.report.suites[0].cases] == [SKIPPED]
    assert real.report.exit_code() == 0
    # A hunk planted inside `#ifdef CONFIG_KPROBES` (off in this tinyconfig-based config),
    # in a copy of the file, so neither the worktree nor the build folder is touched.
    copy = tmp_path / "src"
    (copy / "kernel" / "cgroup").mkdir(parents=True)
    text = (src / "kernel/cgroup/cgroup-v1.c").read_text()
    planted = text + "\n#ifdef CONFIG_KPROBES\nint planted_by_test;\n#endif\n"
    (copy / "kernel/cgroup/cgroup-v1.c").write_text(planted)
    n = planted.count("\n") - 1
    diff = (f"--- a/kernel/cgroup/cgroup-v1.c\n+++ b/kernel/cgroup/cgroup-v1.c\n"
            f"@@ -{n - 2},0 +{n - 1},3 @@\n+#ifdef CONFIG_KPROBES\n+int planted_by_test;\n"
            f"+#endif\n")
    assert "CONFIG_KPROBES=y" not in (build / ".config").read_text()
    [hunk] = compiled.series_hunks([patch_of(diff, "0003-planted.patch")], copy)
    cmd_dir = tmp_path / "build" / "kernel" / "cgroup"
    cmd_dir.mkdir(parents=True)
    cmd = (build / "kernel/cgroup/.cgroup-v1.o.cmd").read_text().replace(
        str(src.resolve() / "kernel/cgroup/cgroup-v1.c"), str(copy / "kernel/cgroup/cgroup-v1.c"))
    (cmd_dir / ".cgroup-v1.o.cmd").write_text(cmd)
    for sub in ("include", "arch/x86/include"):   # the generated headers the command reads
        (tmp_path / "build" / sub).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "build" / sub).symlink_to(build / sub)
    planted_check = compiled.check_build([hunk], copy, tmp_path / "build", "patched")
    [result] = planted_check.results
    assert not result.ok and result.options == ("CONFIG_KPROBES",), result.reason
    run = run_of(planted_check)
    compiled.report(run)        # type: ignore[arg-type]
    [case] = run.report.suites[0].cases
    assert case.status == FAILED and "would need CONFIG_KPROBES" in case.message


def test_e2e_helper_needs_no_build(monkeypatch, tmp_path):
    monkeypatch.setenv("KERNEL_PIPELINE_CACHE", str(tmp_path))
    assert real_patched_build() is None


def test_preprocessing_that_fails_is_an_error_naming_the_object(tmp_path):
    if GCC is None:
        pytest.skip("needs gcc")
    src, build = fake_build(tmp_path, ["-DCONFIG_FOO"])
    (src / "kernel" / "foo.c").write_text(FOO_C.replace('#include "foo.h"',
                                                        '#include "missing.h"'))
    hunks = compiled.series_hunks([patch_of(FOO_DIFF)], src)
    with pytest.raises(compiled.PreprocessFailed, match="preprocessing kernel/foo.o failed"):
        compiled.check_build(hunks, src, build, "patched")


@needs_gcc
def test_a_hunk_only_an_option_off_compiles_can_be_accepted_by_the_series(tmp_path):
    src, build = fake_build(tmp_path, ["-DCONFIG_FOO"], objects=("foo", "bar"))
    (src / "kernel" / "foo.h").write_text(
        "#ifdef CONFIG_FOO\nint foo_on(void);\n#else\nstatic inline int foo_on(void) "
        "{ return 0; }\n#endif\n")
    diff = ("--- a/kernel/foo.h\n+++ b/kernel/foo.h\n@@ -3,2 +3,3 @@\n #else\n"
            "+static inline int foo_on(void) { return 0; }\n #endif\n")
    hunks = compiled.series_hunks([patch_of(diff)], src)
    check = compiled.check_build(hunks, src, build, "patched")
    assert check.results[0].options == ("CONFIG_FOO=n",)
    assert "`#else` of `#ifdef CONFIG_FOO` (line 3)" in check.results[0].reason
    folder = tmp_path / "series"
    folder.mkdir()
    run = run_of(check)
    run.series = types.SimpleNamespace(source=folder)
    compiled.report(run)        # type: ignore[arg-type]
    assert [c.status for c in run.report.suites[0].cases] == [FAILED]
    for other in ("- file: kernel/foo.h\n  option: CONFIG_FOO\n  reason: not this one\n",
                  "- file: kernel/bar.h\n  option: CONFIG_FOO=n\n  reason: not this one\n"):
        (folder / "not-compiled.yaml").write_text(other)
        run = run_of(check)
        run.series = types.SimpleNamespace(source=folder)
        compiled.report(run)    # type: ignore[arg-type]
        assert [c.status for c in run.report.suites[0].cases] == [FAILED], other

    (folder / "not-compiled.yaml").write_text(
        "- file: kernel/foo.h\n  option: CONFIG_FOO=n\n  reason: >\n    the stub for\n"
        "    FOO=n\n- file: kernel/other.h\n  option: CONFIG_X\n  reason: gone\n")
    run = run_of(check)
    run.series = types.SimpleNamespace(source=folder)
    compiled.report(run)        # type: ignore[arg-type]
    [case] = run.report.suites[0].cases
    assert case.status == SKIPPED and case.message.endswith(
        f"accepted in {folder / 'not-compiled.yaml'}: the stub for FOO=n")
    assert run.report.exit_code() == 0
    assert any("kernel/other.h CONFIG_X matched no hunk" in line for line in run.lines)
    assert run.report.compiled["accepted_unused"] == ["kernel/other.h CONFIG_X"]

    (folder / "not-compiled.yaml").write_text("- file: kernel/foo.h\n  option: CONFIG_FOO=n\n")
    run = run_of(check)
    run.series = types.SimpleNamespace(source=folder)
    compiled.report(run)        # type: ignore[arg-type]
    statuses = [(c.name, c.status) for c in run.report.suites[0].cases]
    assert statuses[0] == ("not-compiled.yaml", FAILED) and statuses[1][1] == FAILED
    assert "entry 1: needs exactly file, option and reason" in \
        run.report.suites[0].cases[0].message
