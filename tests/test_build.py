from pathlib import Path

from conftest import write_fake_kernel

from pipeline import build as B

FIXTURES = Path(__file__).parent / "fixtures" / "build"


def test_compiler_errors_first():
    errors = B.extract_errors((FIXTURES / "compile-error.log").read_text())
    assert len(errors) == 2
    assert errors[0].endswith("kernel/cgroup/cgroup-v1.c:812:9: error: implicit declaration "
                              "of function 'kernfs_pin'; did you mean 'kernfs_put'? "
                              "[-Werror=implicit-function-declaration]")
    assert "has no member named 'pool'" in errors[1]


def test_linker_errors():
    errors = B.extract_errors((FIXTURES / "link-error.log").read_text())
    assert any("undefined reference to `kernfs_pin'" in e for e in errors)
    assert not any(e.startswith("make") for e in errors)


def test_make_error_lines_and_tail_as_fallbacks():
    assert B.extract_errors("x\nmake: *** [Makefile:1] Error 2\n") == \
        ["make: *** [Makefile:1] Error 2"]
    assert B.extract_errors("a\nb\nKilled\n") == ["a", "b", "Killed"]


def test_count_steps():
    assert B.count_steps((FIXTURES / "compile-error.log").read_text()) == 2


def test_build_with_fake_kbuild(tmp_path):
    src = write_fake_kernel(tmp_path / "src")
    lines: list[str] = []
    ok = B.build_kernel(src, tmp_path / "b", tmp_path / "build.log", 60, lines.append)
    assert ok.ok and ok.image is not None and ok.image.is_file() and ok.steps == 2
    assert "bzImage" in ok.command and ok.command[:2] == ["make", "-C"]
    (src / "kernel" / "fork.c").write_text("int a;\n#error broken here\n")
    bad = B.build_kernel(src, tmp_path / "b", tmp_path / "build.log", 60, lines.append)
    assert not bad.ok
    assert bad.errors == ["kernel/fork.c:2:2: error: broken here"]
    assert bad.reason == "build failed: kernel/fork.c:2:2: error: broken here"
    assert "broken here" in (tmp_path / "build.log").read_text()


def test_disk_full_while_building_says_so(tmp_path, small_disk, monkeypatch):
    src = write_fake_kernel(tmp_path / "src")
    monkeypatch.setenv("FAKE_BUILD_FILL", str(8 << 20))
    result = B.build_kernel(src, small_disk / "build", tmp_path / "build.log", 60, print)
    assert not result.ok and result.image is None
    assert result.reason.startswith(f"disk full while building in {small_disk / 'build'}")
