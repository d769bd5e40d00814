"""The kernel pin (defistress.kernels): `import defistress` sets numpy's and OpenBLAS's CPU-dispatch variables to the
AVX2 generation's code before numpy loads, so a run's bits do not depend on whether the machine has AVX-512; it
never overrides the user, never acts once numpy is loaded, and keeps out of CPUs that cannot run that code."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from defistress.kernels import OPT_OUT, PINNED_ENV, cpu_has_avx2_fma, pin

X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.parametrize("machine", ["x86_64", "AMD64"])
def test_pins_both_variables_on_an_x86_64_cpu_with_avx2_and_fma(machine):
    env: dict[str, str] = {}
    assert pin(env, machine=machine, cpu_ok=True) is True
    assert env == PINNED_ENV
    assert env["OPENBLAS_CORETYPE"] == "Haswell" and "X86_V4" in env["NPY_DISABLE_CPU_FEATURES"].split()


@pytest.mark.parametrize(
    ("env", "machine", "cpu_ok"),
    [
        ({}, "aarch64", True),  # another architecture: its own code, no Haswell kernels
        ({}, "x86_64", False),  # an x86-64 CPU without AVX2/FMA could not run the Haswell kernels
        ({"OPENBLAS_CORETYPE": "SkylakeX"}, "x86_64", True),  # the user chose
        ({"NPY_DISABLE_CPU_FEATURES": ""}, "x86_64", True),  # the user chose (even empty)
        ({OPT_OUT: "1"}, "x86_64", True),  # the machine's own kernels asked for
        ({OPT_OUT: "yes"}, "x86_64", True),
    ],
)
def test_leaves_the_environment_alone_where_it_must(env, machine, cpu_ok):
    before = dict(env)
    assert pin(env, machine=machine, cpu_ok=cpu_ok) is False
    assert env == before


@pytest.mark.parametrize("value", ["", "0"])
def test_an_empty_or_zero_opt_out_still_pins(value):
    env = {OPT_OUT: value}
    assert pin(env, machine="x86_64", cpu_ok=True) is True
    assert {k: env[k] for k in PINNED_ENV} == PINNED_ENV


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n", True),
        ("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 bmi2\n", False),  # no fma
        ("processor\t: 0\nflags\t\t: fpu sse2 avx fma\n", False),  # no avx2
        ("processor\t: 0\nflags\t\t: fpu avx2x fmax\n", False),  # whole flags only
        ("processor\t: 0\nmodel name\t: some cpu avx2 fma\n", False),  # no flags line
        ("flags\t\t: avx2 fma\nflags\t\t: sse2\n", True),  # the first CPU's line
    ],
)
def test_reads_the_cpu_flags(tmp_path, text, want):
    f = tmp_path / "cpuinfo"
    f.write_text(text)
    assert cpu_has_avx2_fma(f) is want


def test_a_missing_cpuinfo_reads_as_no(tmp_path):
    assert cpu_has_avx2_fma(tmp_path / "absent") is False


def _fresh(code: str, drop: tuple[str, ...] = (*PINNED_ENV, OPT_OUT)) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


SHOW = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {list(PINNED_ENV)!r}}}))"


@pytest.mark.skipif(not (X86 and cpu_has_avx2_fma()), reason="the pin applies to x86-64 CPUs with AVX2 and FMA")
def test_importing_defistress_first_pins_a_fresh_interpreter():
    assert _fresh("import defistress, numpy; " + SHOW) == PINNED_ENV


def test_importing_numpy_first_pins_nothing():
    assert _fresh("import numpy, defistress; " + SHOW) == dict.fromkeys(PINNED_ENV)


def test_the_opt_out_keeps_the_machines_kernels():
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV}
    env[OPT_OUT] = "1"
    out = subprocess.run(
        [sys.executable, "-c", "import defistress; " + SHOW], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == dict.fromkeys(PINNED_ENV)


def test_a_runs_manifest_records_the_kernel_variables(monkeypatch):
    from defistress import run_scenario

    monkeypatch.setenv(OPT_OUT, "0")  # a value of this test's own, so the record is seen to come from the environment
    r = run_scenario("calm", seed=1, overrides=['run.duration="10m"', "agents.borrowers.accounts=50"])
    assert r.manifest["kernels"] == {**{k: os.environ.get(k) for k in PINNED_ENV}, OPT_OUT: "0"}
