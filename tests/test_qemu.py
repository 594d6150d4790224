"""QEMU command line and the missing-QEMU message."""

from pathlib import Path

import pytest

from pipeline.errors import BadInput, StageFailed
from pipeline.qemu import Machine, guest_argv


def _argv(out_share, **kw):
    args = {"accel": "tcg", "memory": "1G", "smp": 2,
            "init": ["/v/bin/python", "-B", "/x/init.py"], "out_share": out_share,
            "kernel_args": ["foo=1"], "qemu_args": ["-S"]}
    args.update(kw)
    return guest_argv(Machine.load(), "/usr/bin/qemu-system-x86_64", Path("/k/bzImage"), **args)


def test_argv_has_readonly_root_and_writable_out_share(tmp_path):
    argv = _argv(tmp_path)
    fsdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-fsdev"]
    assert fsdevs[0].startswith("local,id=rootfs,path=/,") and "readonly=on" in fsdevs[0]
    assert fsdevs[1].startswith(f"local,id=outfs,path={tmp_path},")
    assert "readonly=on" not in fsdevs[1].split(",")
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert devices == ["virtio-9p-pci,fsdev=rootfs,mount_tag=root",
                       "virtio-9p-pci,fsdev=outfs,mount_tag=out"]
    assert "-no-reboot" in argv and argv[-1] == "-S"
    assert argv[argv.index("-accel") + 1] == "tcg" and "-cpu" not in argv
    assert argv[argv.index("-m") + 1] == "1G" and argv[argv.index("-smp") + 1] == "2"


def test_a_job_root_replaces_the_hosts_root(tmp_path):
    argv = _argv(tmp_path, root="/srv/guest,root")
    fsdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-fsdev"]
    assert fsdevs[0].startswith("local,id=rootfs,path=/srv/guest,,root,")
    assert "readonly=on" in fsdevs[0].split(",")


def test_kernel_command_line_order(tmp_path):
    append = _argv(tmp_path)[-2].split(" ")
    assert append[:4] == ["console=ttyS0", "root=root", "rootfstype=9p",
                          "rootflags=trans=virtio,version=9p2000.L,cache=loose"]
    assert "ro" in append and "panic=-1" in append
    # init= then the job's words (which may override init=), then the init's own argv
    assert append[-5:] == ["init=/v/bin/python", "foo=1", "--", "-B", "/x/init.py"]


def test_kvm_uses_the_host_cpu(tmp_path):
    argv = _argv(tmp_path, accel="kvm")
    assert argv[argv.index("-accel") + 1:argv.index("-accel") + 4] == ["kvm", "-cpu", "host"]


def test_comma_in_share_path_is_escaped(tmp_path):
    share = tmp_path / "a,b"
    argv = _argv(share)
    assert f"path={tmp_path}/a,,b," in argv[argv.index("-fsdev", argv.index("-fsdev") + 1) + 1]


def test_white_space_in_a_kernel_word_is_refused(tmp_path):
    with pytest.raises(BadInput, match="white space"):
        _argv(tmp_path, init=["/path with space/python", "-B", "/x/init.py"])


def test_no_out_share_and_no_init_for_the_probe():
    argv = _argv(None, init=None, kernel_args=[])
    assert argv.count("-fsdev") == 1
    assert "init=" not in argv[argv.index("-append") + 1]


def test_missing_qemu_names_the_debian_package():
    m = Machine.load()
    m.binary = "qemu-system-does-not-exist"
    with pytest.raises(StageFailed, match="apt-get install qemu-system-x86"):
        m.find_binary()


def test_bad_settings_file_names_it(tmp_path):
    bad = tmp_path / "qemu.yaml"
    bad.write_text("binary: x\n")
    with pytest.raises(BadInput, match=str(bad)):
        Machine.load(bad)
