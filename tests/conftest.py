"""Shared test guard: every ledger a test registers with `track_env` must conserve each token
(minted − burned) when the test ends."""

import pytest

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
