from pathlib import Path

import pytest

from pipeline import kconfig as K
from pipeline.errors import BadInput


def frag(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parse_all_value_forms(tmp_path):
    f = K.parse_fragment(frag(tmp_path, "a.config", "# comment\n\nCONFIG_A=y\nCONFIG_B=m\n"
                              'CONFIG_C="hello world"\nCONFIG_D=42\nCONFIG_E=0x10\n'
                              "# CONFIG_F is not set\n"))
    assert [(o.name, o.value, o.line) for o in f.options] == [
        ("CONFIG_A", "y", 3), ("CONFIG_B", "m", 4), ("CONFIG_C", '"hello world"', 5),
        ("CONFIG_D", "42", 6), ("CONFIG_E", "0x10", 7), ("CONFIG_F", "n", 8)]


def test_bad_fragment_line(tmp_path):
    with pytest.raises(BadInput, match=r"b.config:2: not a kconfig line"):
        K.parse_fragment(frag(tmp_path, "b.config", "CONFIG_A=y\nFOO=bar\n"))


def test_merge_later_wins_and_warns(tmp_path):
    a = K.parse_fragment(frag(tmp_path, "a.config", "CONFIG_A=y\nCONFIG_B=y\n"))
    b = K.parse_fragment(frag(tmp_path, "b.config", "# CONFIG_A is not set\nCONFIG_B=y\n"))
    lines = []
    merged, overrides = K.merge([a, b], lines.append)
    assert merged["CONFIG_A"].value == "n" and merged["CONFIG_A"].fragment.name == "b.config"
    assert merged["CONFIG_B"].fragment.name == "b.config"
    assert len(overrides) == 1 and "b.config:1" in overrides[0] and "a.config:1" in overrides[0]
    assert any("warning" in line for line in lines)


def test_min_version_skips_on_older_tree(tmp_path):
    new = frag(tmp_path, "new.config", "# pipeline: min-version 6.12\nCONFIG_MEMCG_V1=y\n")
    old = frag(tmp_path, "old.config", "CONFIG_A=y\n")
    lines = []
    kept, skipped = K.select_fragments([old, new], "6.1.192", lines.append)
    assert [f.path for f in kept] == [old] and skipped == [new]
    assert "needs kernel >= 6.12" in lines[0]
    kept, skipped = K.select_fragments([old, new], "6.12.117", lines.append)
    assert len(kept) == 2 and not skipped


FINAL = """\
CONFIG_A=y
CONFIG_B=m
CONFIG_C="hello world"
CONFIG_D=42
# CONFIG_F is not set
# CONFIG_INET is not set
"""


def test_survivor_check_finds_dropped_options(tmp_path):
    f = K.parse_fragment(frag(tmp_path, "v.config", 'CONFIG_A=y\nCONFIG_B=m\nCONFIG_C="hello world"\n'
                              "CONFIG_D=42\n# CONFIG_F is not set\n# CONFIG_G is not set\n"
                              "CONFIG_9P_FS=y\nCONFIG_B2=y\nCONFIG_D2=43\n"))
    merged, _ = K.merge([f], print)
    final = K.parse_config(FINAL + "CONFIG_B2=m\nCONFIG_D2=42\n")
    missing = K.check_survivors(merged, final)
    assert [m.option.name for m in missing] == ["CONFIG_9P_FS", "CONFIG_B2", "CONFIG_D2"]
    text = missing[0].describe()
    assert "CONFIG_9P_FS=y" in text and "v.config:7" in text and "not set" in text
    assert "=m" in missing[1].describe()


def test_write_merged_replaces_lines(tmp_path):
    config = tmp_path / ".config"
    config.write_text("# CONFIG_A is not set\nCONFIG_B=y\nCONFIG_KEEP=y\n")
    f = K.parse_fragment(frag(tmp_path, "v.config", "CONFIG_A=y\n# CONFIG_B is not set\n"))
    merged, _ = K.merge([f], print)
    K.write_merged(config, merged)
    values = K.parse_config(config.read_text())
    assert values == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_KEEP": "y"}
    assert config.read_text().count("CONFIG_A") == 1


def test_configure_with_fake_kbuild(tmp_path):
    from conftest import write_fake_kernel
    src = write_fake_kernel(tmp_path / "src")
    good = frag(tmp_path, "good.config", "CONFIG_64BIT=y\nCONFIG_INET=y\nCONFIG_9P_FS=y\n")
    bad = frag(tmp_path, "bad.config", "CONFIG_9P_FS=y\n# CONFIG_INET is not set\n")
    lines = []
    result = K.configure(src, tmp_path / "b", "tinyconfig", [good], "6.1.99", lines.append,
                         tmp_path / "configure.log")
    assert result.ok and len(result.config_hash) == 64
    result = K.configure(src, tmp_path / "b", "tinyconfig", [good, bad], "6.1.99",
                         lines.append, tmp_path / "configure.log")
    assert not result.ok
    assert [m.option.name for m in result.missing] == ["CONFIG_9P_FS"]
    assert result.missing[0].option.fragment == bad


def test_install_config_keeps_mtime_when_same(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.write_text("CONFIG_A=y\n")
    assert K.install_config(cfg, tmp_path / "b") is True
    assert K.install_config(cfg, tmp_path / "b") is False
