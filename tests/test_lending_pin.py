"""Today's single-collateral / single-debt results, pinned bit for bit (tests/lending_pin.py wrote the digests
before Aave's fuller account model was added): the new features must change nothing for such books."""

from __future__ import annotations

import json

import pytest
from lending_pin import PIN_FILE, market_sequence, run_digests

PINNED = json.loads(PIN_FILE.read_text())


@pytest.mark.parametrize("rule", ["aave-v3.3", "aave-v3.0"])
def test_a_single_asset_book_gives_the_pinned_market_results(rule):
    got, want = market_sequence(rule), PINNED["market_sequence"][rule]
    first = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), None)
    assert first is None and len(got) == len(want), f"first differing step: {first}"


def test_a_reduced_eth_crash_gives_the_pinned_liquidations_and_health():
    assert run_digests() == PINNED["eth_crash"]
