"""Shared test guard: every ledger a test registers with `track_env` must conserve each token
(minted − burned) when the test ends. Also the hypothesis profile of mutation runs (tests/mutation)."""

import pytest
from hypothesis import Phase, settings

# imported before any test module loads numpy: it pins numpy's and OpenBLAS's kernels to the AVX2 generation's, so
# the bit-for-bit pins (tests/data/pinned_results.json, lending_pin.json) hold on AVX-512 machines too; the xdist
# workers inherit the variables it sets (defistress.kernels)
import defistress  # noqa: F401

# `--hypothesis-profile=mutation`: a failing example is reported as found, not shrunk (shrinking only makes the
# report smaller and costs seconds per killed mutant), and no example database carries over between mutants
settings.register_profile("mutation", phases=[Phase.explicit, Phase.generate], database=None, deadline=None)

_TRACKED: list = []


def track_env(env):
    """Register an Env whose ledger is checked for conservation at the end of the current test."""
    _TRACKED.append(env)
    return env


@pytest.fixture(autouse=True)
def ledger_conserved_after_each_test():
    _TRACKED.clear()
    yield
    for env in _TRACKED:
        env.ledger.check_conservation()
