"""Pin the floating-point kernels a run uses, so that the same scenario, seed and code give the same bits on x86-64
machines of the AVX2 and of the AVX-512 generation.

Two libraries choose their code by the CPU they find when they load:
- numpy 2 dispatches some loops by CPU generation: on an AVX-512 machine (numpy's `X86_V4` group; `AVX512F`,
  `AVX512_SKX`, ... before numpy 2.4) `np.exp` and `np.log` of float64 take vectorised code whose last bit can
  differ from the AVX2 machine's;
- OpenBLAS (numpy's and scipy's) picks its kernels by CPU (`SkylakeX` against `Haswell`), and their dot products
  and matrix-vector products sum in another order.
In an agent-based crash a last-bit difference can flip a liquidation some blocks later, and then every figure
after it. Both libraries read an environment variable once, when they load (numpy: `NPY_DISABLE_CPU_FEATURES`,
OpenBLAS: `OPENBLAS_CORETYPE`), so `pin()` sets them to the AVX2 generation's code before numpy is imported:
`import defistress` calls it (the CLI, `python -m defistress` and library use that imports defistress first).

It changes nothing when numpy is already loaded (then a run uses what numpy found: `status()` says which), on a
CPU without AVX2 and FMA or not x86-64 (those have their own code, and the Haswell kernels would not run), when the
user set either variable, or when `DEFISTRESS_NATIVE_KERNELS=1` asks for the machine's own (faster, not portable)
kernels.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import MutableMapping
from pathlib import Path

#: what the AVX2 generation runs: OpenBLAS's Haswell kernels, and numpy without its AVX-512 dispatch targets
#: (numpy 2.4 names them X86_V4, AVX512_ICL, AVX512_SPR; earlier numpy 2 releases AVX512F ... AVX512_SPR;
#: names a release does not know are ignored)
PINNED_ENV = {
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL "
    "AVX512_ICL AVX512_SPR",
}
#: set to 1 to keep the machine's own kernels (results may then differ in the last bits between CPU generations)
OPT_OUT = "DEFISTRESS_NATIVE_KERNELS"


def cpu_has_avx2_fma(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the first CPU listed in `cpuinfo` (Linux) has the avx2 and fma flags: what the Haswell kernels need.
    False where the file does not exist (another OS: the pin is then left to the user)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return {"avx2", "fma"} <= flags
    return False


def pin(
    environ: MutableMapping[str, str] | None = None,
    machine: str | None = None,
    cpu_ok: bool | None = None,
) -> bool:
    """Set `PINNED_ENV` in `environ` (default: `os.environ`) when it can still take effect and the CPU can run it;
    returns whether it did. A variable the user set is never overwritten (then nothing is set)."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    if env.get(OPT_OUT, "") not in ("", "0"):
        return False
    if environ is None and "numpy" in sys.modules:
        return False  # too late: numpy and its OpenBLAS read the variables when they loaded
    if any(k in env for k in PINNED_ENV):
        return False
    arch = (platform.machine() if machine is None else machine).lower()
    if arch not in ("x86_64", "amd64"):
        return False
    if not (cpu_has_avx2_fma() if cpu_ok is None else cpu_ok):
        return False
    env.update(PINNED_ENV)
    return True


def status() -> dict[str, str | None]:
    """The kernel settings this process runs with (the variables as numpy and OpenBLAS read them)."""
    return {k: os.environ.get(k) for k in (*PINNED_ENV, OPT_OUT)}
