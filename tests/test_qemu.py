"""QEMU command line and the missing-QEMU message."""

from pathlib import Path

import pytest

from pipeline.errors import StageFailed
from pipeline.qemu import Machine, guest_argv


def test_argv_has_readonly_root_and_writable_out_share(tmp_path):
    m = Machine.load()
    argv = guest_argv(m, "/usr/bin/qemu-system-x86_64", Path("/k/bzImage"), accel="tcg",
                      memory="1G", smp=2, init="/x/init.py", out_share=tmp_path,
                      kernel_args=["foo=1"], qemu_args=["-S"])
    fsdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-fsdev"]
    assert any("path=/," in f and "readonly=on" in f for f in fsdevs)
    assert any(f"path={tmp_path}," in f and "readonly=on" not in f for f in fsdevs)
    append = argv[argv.index("-append") + 1]
    assert "root=root" in append and "init=/x/init.py" in append
    assert append.endswith("foo=1")
    assert "-no-reboot" in argv and argv[-1] == "-S"
    assert argv[argv.index("-accel") + 1] == "tcg"


def test_missing_qemu_names_the_debian_package():
    m = Machine.load()
    m.binary = "qemu-system-does-not-exist"
    with pytest.raises(StageFailed, match="apt-get install qemu-system-x86"):
        m.find_binary()
