from pathlib import Path

import pytest

from pipeline.errors import BadInput
from pipeline.job import DEFAULT_JOB, PROJECT_ROOT, Overrides, apply_overrides, load_job


def write_job(tmp_path: Path, text: str) -> Path:
    (tmp_path / "frag.config").write_text("CONFIG_FOO=y\n")
    (tmp_path / "tests").mkdir(exist_ok=True)
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


GOOD = """\
tree: debian:6.1
series: null
kconfig: [frag.config]
tests: [tests]
variants:
  - name: a
  - name: b
    series: false
    kconfig_extra: [frag.config]
    timeout_scale: 2
qemu: {memory: 2G, smp: 1, accel: tcg}
timeouts: {boot: 10}
out: results
"""


def test_default_job_loads_and_resolves_against_project_root():
    job = load_job()
    assert job.source == DEFAULT_JOB
    assert job.tree == "debian:6.1"
    assert job.series == "cgroup-pool"
    assert job.kconfig[0] == PROJECT_ROOT / "kconfigs" / "virtme-guest.config"
    assert [v.name for v in job.variants] == ["baseline", "patched", "patched-debug",
                                             "baseline-debug", "patched-kasan",
                                             "patched-kcsan"]
    assert [v.name for v in job.variants if v.optional] == ["patched-kcsan"]
    assert job.variants[0].series is False
    assert job.variants[2].timeout_scale == 4
    assert job.variants[3].series is False   # baseline-debug: patched-debug's lockdep baseline
    assert job.variants[3].kconfig_extra == job.variants[2].kconfig_extra
    assert job.variants[4].kernel_args == ["acpi=noirq", "pool_fill_size=1024"] and job.variants[2].kernel_args == []
    assert job.variants[2].kconfig_extra == [PROJECT_ROOT / "kconfigs" / "debug.config"]


def test_user_job_paths_resolve_against_its_folder(tmp_path):
    job = load_job(write_job(tmp_path, GOOD))
    assert job.kconfig == [tmp_path / "frag.config"]
    assert job.tests == [tmp_path / "tests"]
    assert job.out == tmp_path / "results"
    assert job.qemu.memory == "2G" and job.qemu.accel == "tcg" and job.qemu.smp == 1
    assert job.timeouts.boot == 10 and job.timeouts.build == 3600
    assert job.variants[1].timeout_scale == 2.0


def test_qemu_keys_a_job_leaves_out_come_from_the_machine_file(tmp_path):
    from pipeline.qemu import Machine

    job = load_job(write_job(tmp_path, GOOD.replace("qemu: {memory: 2G, smp: 1, accel: tcg}\n",
                                                    "")))
    machine = Machine.load()
    assert (job.qemu.memory, job.qemu.smp, job.qemu.accel) == (
        machine.default_memory, machine.default_smp, machine.default_accel) == ("1G", 2, "auto")


@pytest.mark.parametrize("text, words", [
    (GOOD + "colour: blue\n", ["job.yaml:14", "colour", "unknown key"]),
    (GOOD.replace("    timeout_scale: 2", "    timeout_scale: 2\n    bogus: 1"),
     ["variants[1].bogus", "unknown key"]),
    (GOOD.replace("kconfig_extra: [frag.config]", "kconfig_extra: frag.config"),
     ["job.yaml:9", "variants[1].kconfig_extra", "must be a list"]),
    (GOOD.replace("kconfig_extra: [frag.config]", "kconfig_extra: [missing.config]"),
     ["variants[1].kconfig_extra[0]", "missing.config", "does not exist"]),
    (GOOD.replace("smp: 1", "smp: many"), ["qemu.smp", "positive integer"]),
    (GOOD.replace("accel: tcg", "accel: xen"), ["qemu.accel", "xen"]),
    (GOOD.replace("series: false", "series: maybe"), ["variants[1].series", "true or false"]),
    (GOOD.replace("tests: [tests]", "tests: [nope]"), ["tests[0]", "nope", "does not exist"]),
    (GOOD.replace("tree: debian:6.1", "tree: /no/such/linux.tar.xz"), ["tree", "does not exist"]),
    (GOOD.replace("  - name: b", "  - name: a"), ["variants[1].name", "duplicate"]),
    (GOOD.replace("timeouts: {boot: 10}", "timeouts: {boot: -1}"), ["timeouts.boot"]),
])
def test_bad_job_is_refused_naming_file_key_and_line(tmp_path, text, words):
    path = write_job(tmp_path, text)
    with pytest.raises(BadInput) as err:
        load_job(path)
    assert err.value.exit_code == 2
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write_job(tmp_path, "tree: debian:6.1\nkconfig: [a, b\nseries: x\n")
    with pytest.raises(BadInput) as err:
        load_job(path)
    assert f"{path}:3" in str(err.value) and "YAML syntax error" in str(err.value)


def test_missing_job_file(tmp_path):
    with pytest.raises(BadInput, match="cannot read job file"):
        load_job(tmp_path / "nope.yaml")


def test_overrides_add_fragments_and_tests_and_filter_variants(tmp_path, monkeypatch):
    job = load_job(write_job(tmp_path, GOOD))
    extra = tmp_path / "extra.config"
    extra.write_text("CONFIG_BAR=y\n")
    merged = apply_overrides(job, Overrides(kconfig=["extra.config"], tests=["tests"],
                                            variants=["b"], accel="kvm", out="o",
                                            series="none"), cwd=tmp_path)
    assert merged.kconfig == [tmp_path / "frag.config", extra]
    assert merged.tests == [tmp_path / "tests", tmp_path / "tests"]
    assert [v.name for v in merged.variants] == ["b"]
    assert merged.qemu.accel == "kvm" and merged.qemu.memory == "2G"
    assert merged.out == tmp_path / "o"
    assert merged.series is None


def test_override_errors(tmp_path):
    job = load_job(write_job(tmp_path, GOOD))
    with pytest.raises(BadInput, match="--variant zzz.*there are: a, b"):
        apply_overrides(job, Overrides(variants=["zzz"]), cwd=tmp_path)
    with pytest.raises(BadInput, match="--kconfig nope.config"):
        apply_overrides(job, Overrides(kconfig=["nope.config"]), cwd=tmp_path)
    with pytest.raises(BadInput, match="--tree"):
        apply_overrides(job, Overrides(tree="ftp://x/y.tar.xz"), cwd=tmp_path)


def test_tree_spec_forms(tmp_path):
    job = load_job(write_job(tmp_path, GOOD))
    (tmp_path / "repo").mkdir()
    url = "https://example.org/linux.tar.xz"
    assert apply_overrides(job, Overrides(tree=url), cwd=tmp_path).tree == url
    assert apply_overrides(job, Overrides(tree="repo@v6.1"), cwd=tmp_path).tree == \
        f"{tmp_path / 'repo'}@v6.1"
    with pytest.raises(BadInput, match="debian:MAJOR.MINOR"):
        apply_overrides(job, Overrides(tree="debian:six"), cwd=tmp_path)


def test_kselftest_section_is_validated(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("tree: debian:6.1\nvariants: [{name: a}]\n"
                   "kselftest: {enabled: true, variants: [b]}\n")
    with pytest.raises(BadInput, match=r"kselftest.variants\[0\]: no variant named 'b'"):
        load_job(job)
    job.write_text("tree: debian:6.1\nkselftest: {enabled: yes-please}\n")
    with pytest.raises(BadInput, match="kselftest.enabled: must be true or false"):
        load_job(job)
    job.write_text("tree: debian:6.1\nkselftest: {retries: -1}\n")
    with pytest.raises(BadInput, match=r"job.yaml:2: kselftest.retries: must be a whole number"):
        load_job(job)
    job.write_text("tree: debian:6.1\nkselftest: {retries: 0}\n")
    assert load_job(job).kselftest.retries == 0


def test_kselftest_rerun_keys_are_validated(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("tree: debian:6.1\nkselftest: {alpha: 0.05, rerun_budget: 600}\n")
    ks = load_job(job).kselftest
    assert (ks.alpha, ks.rerun_budget, ks.retries) == (0.05, 600.0, 8)
    job.write_text("tree: debian:6.1\nkselftest: {alpha: 0.7}\n")
    with pytest.raises(BadInput, match=r"kselftest.alpha: must be below 0.5"):
        load_job(job)
    job.write_text("tree: debian:6.1\nkselftest: {alpha: 0}\n")
    with pytest.raises(BadInput, match=r"kselftest.alpha: must be a positive finite number"):
        load_job(job)
    job.write_text("tree: debian:6.1\nkselftest: {rerun_budget: soon}\n")
    with pytest.raises(BadInput, match=r"kselftest.rerun_budget: must be a positive finite number"):
        load_job(job)
    job.write_text("tree: debian:6.1\nkselftest: {rerun: 3}\n")
    with pytest.raises(BadInput, match=r"kselftest.rerun: unknown key"):
        load_job(job)


def test_variant_kernel_args_are_checked_like_the_jobs(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("tree: debian:6.1\nvariants:\n  - {name: v, kernel_args: ['a=1 b=2']}\n")
    with pytest.raises(BadInput, match=r"variants\[0\]\.kernel_args\[0\]: 'a=1 b=2' contains "
                                       "white space"):
        load_job(job)


def test_optional_variants_run_only_when_named(tmp_path):
    """The default job's KCSAN variant is optional: a plain run leaves it out, --variant
    picks it (alone or with others); a job of optional variants only needs --variant."""
    job = load_job()
    plain = apply_overrides(job, Overrides())
    assert [v.name for v in plain.variants] == ["baseline", "patched", "patched-debug",
                                               "baseline-debug", "patched-kasan"]
    kcsan = apply_overrides(job, Overrides(variants=["patched", "patched-kcsan"]))
    assert [v.name for v in kcsan.variants] == ["patched", "patched-kcsan"]
    assert kcsan.variants[1].kconfig_extra == [PROJECT_ROOT / "kconfigs" / "kcsan.config"]
    only = load_job(write_job(tmp_path, "tree: debian:6.1\nvariants:\n"
                                        "  - {name: v, optional: true}\n"))
    with pytest.raises(BadInput, match="every variant is optional: choose with --variant"):
        apply_overrides(only, Overrides())
    assert [v.name for v in apply_overrides(only, Overrides(variants=["v"])).variants] == ["v"]
    with pytest.raises(BadInput, match=r"variants\[0\]\.optional"):
        load_job(write_job(tmp_path, "tree: debian:6.1\nvariants:\n"
                                     "  - {name: v, optional: maybe}\n"))


# ---- every problem at once ----

MANY_ERRORS = """\
tree: debian:6.1
colour: blue
kconfig: [frag.config, missing.config, 7]
variants:
  - name: a
    series: maybe
    bogus: 1
  - name: a
qemu: {memory: 2G, smp: many, accel: xen}
timeouts:
  boot: -1
  total: inf
kselftest: {enabled: yes-please, variants: [a, zz], alpha: 0.7}
base_config: "O=/etc"
"""


def test_every_validation_error_is_reported_at_once_in_file_order(tmp_path):
    path = write_job(tmp_path, MANY_ERRORS)
    with pytest.raises(BadInput) as err:
        load_job(path)
    assert err.value.exit_code == 2
    lines = str(err.value).splitlines()
    keys = [line.split(": ", 2)[:2] for line in lines]
    assert keys == [
        [f"{path}:2", "colour"],
        [f"{path}:3", "kconfig[1]"],
        [f"{path}:3", "kconfig[2]"],
        [f"{path}:6", "variants[0].series"],
        [f"{path}:7", "variants[0].bogus"],
        [f"{path}:8", "variants[1].name"],
        [f"{path}:9", "qemu.smp"],
        [f"{path}:9", "qemu.accel"],
        [f"{path}:11", "timeouts.boot"],
        [f"{path}:12", "timeouts.total"],
        [f"{path}:13", "kselftest.enabled"],
        [f"{path}:13", "kselftest.variants[1]"],
        [f"{path}:13", "kselftest.alpha"],
        [f"{path}:14", "base_config"],
    ], "\n".join(lines)
    assert "unknown key" in lines[0] and "missing.config" in lines[1]
    assert "does not exist" in lines[1] and "must be a non-empty string" in lines[2]
    assert "duplicate variant name 'a'" in lines[5] and "no variant named 'zz'" in lines[11]


def test_one_error_keeps_the_one_line_message(tmp_path):
    path = write_job(tmp_path, GOOD + "colour: blue\n")
    with pytest.raises(BadInput) as err:
        load_job(path)
    assert str(err.value) == (f"{path}:14: colour: unknown key (allowed: "
                              "base_config, cache_dir, kconfig, kselftest, matrix, out, qemu, "
                              "series, tests, timeouts, tree, tree_insecure_http, tree_sha256, "
                              "variants)")


def test_a_section_of_the_wrong_type_does_not_hide_the_others(tmp_path):
    path = write_job(tmp_path, "tree: debian:6.1\nqemu: [1]\ntimeouts: {boot: 0}\nvariants: {}\n")
    with pytest.raises(BadInput) as err:
        load_job(path)
    assert [line.split(": ", 2)[1] for line in str(err.value).splitlines()] == [
        "qemu", "timeouts.boot", "variants"]
