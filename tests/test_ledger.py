"""The ledger: transfers, mint and burn, refusals that leave state unchanged, and conservation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defistress.protocols.ledger import InsufficientBalance, Ledger


def state(led: Ledger) -> tuple:
    """Balances (ignoring empty books the defaultdict creates on a read) and mint/burn totals."""
    books = {t: dict(b) for t, b in led.snapshot().items() if b}
    return books, dict(led.minted), dict(led.burned)


@pytest.fixture
def led() -> Ledger:
    led = Ledger()
    led.mint("ETH", "alice", 100.0, "genesis")
    led.mint("USDC", "bob", 5_000.0, "genesis")
    return led


def test_transfer_moves_balance_and_keeps_total(led):
    led.transfer("ETH", "alice", "bob", 30.0)
    # 100 - 30 = 70 left with alice, 30 arrive at bob, total still 100 = minted
    assert led.balance("alice", "ETH") == 70.0
    assert led.balance("bob", "ETH") == 30.0
    assert led.total("ETH") == 100.0
    assert led.n_transfers == 1
    led.check_conservation()


def test_transfer_of_zero_or_to_self_changes_nothing(led):
    before = state(led)
    led.transfer("ETH", "alice", "bob", 0.0)
    led.transfer("ETH", "alice", "alice", 50.0)
    assert state(led) == before
    assert led.n_transfers == 0


def test_mint_and_burn_are_recorded_with_reasons(led):
    led.mint("ETH", "alice", 5.0, "airdrop")
    led.burn("ETH", "alice", 20.0, "eip1559_base_fee")
    # minted 100 + 5 = 105, burned 20: alice holds 105 - 20 = 85
    assert led.minted["ETH"] == 105.0
    assert led.burned["ETH"] == 20.0
    assert led.balance("alice", "ETH") == 85.0
    assert led.mint_reasons[("ETH", "airdrop")] == 5.0
    assert led.burn_reasons[("ETH", "eip1559_base_fee")] == 20.0
    led.check_conservation()


def test_insufficient_balance_leaves_state_unchanged(led):
    before = state(led)
    with pytest.raises(InsufficientBalance, match="alice holds 100"):
        led.transfer("ETH", "alice", "bob", 100.5)
    with pytest.raises(InsufficientBalance):
        led.burn("ETH", "alice", 1_000.0, "too much")
    assert state(led) == before
    assert led.burned["ETH"] == 0.0
    assert led.n_transfers == 0
    led.check_conservation()


def test_rounding_dust_above_the_balance_clears_it_exactly(led):
    led.transfer("ETH", "alice", "bob", 100.0 + 1e-12)  # 1e-12 over: below ABS_DUST, treated as rounding
    assert led.balance("alice", "ETH") == 0.0
    led.check_conservation()


@pytest.mark.parametrize("amount", [float("nan"), -1.0, -1e-300, float("inf")])
@pytest.mark.parametrize("op", ["mint", "burn", "transfer"])
def test_nan_negative_and_infinite_amounts_are_rejected(led, op, amount):
    before = state(led)
    call = {
        "mint": lambda: led.mint("ETH", "alice", amount, "x"),
        "burn": lambda: led.burn("ETH", "alice", amount, "x"),
        "transfer": lambda: led.transfer("ETH", "alice", "bob", amount),
    }[op]
    with pytest.raises(ValueError, match="ETH"):
        call()
    assert state(led) == before
    assert led.minted["ETH"] == 100.0
    led.check_conservation()


def test_tampered_balance_is_reported_as_a_conservation_error(led):
    led.balances["ETH"]["alice"] += 1.0  # created out of thin air, not minted
    errors = led.conservation_errors()
    assert errors == pytest.approx({"ETH": 1.0})
    with pytest.raises(AssertionError, match="ETH"):
        led.check_conservation()


def test_negative_balance_is_reported_even_when_the_total_matches(led):
    led.balances["ETH"]["alice"] = 105.0
    led.balances["ETH"]["bob"] = -5.0  # total still 100 = minted, but bob owes the ledger
    assert "ETH:bob" in led.conservation_errors()
    with pytest.raises(AssertionError, match="ETH:bob"):
        led.check_conservation()


def test_nan_balance_is_reported_as_a_conservation_error(led):
    led.balances["USDC"]["bob"] = math.nan
    with pytest.raises(AssertionError, match="USDC"):
        led.check_conservation()


HOLDERS = ["a", "b", "c", "pool"]
TOKENS = ["ETH", "USDC"]
amounts = st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False)
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("mint"), st.sampled_from(TOKENS), st.sampled_from(HOLDERS), st.sampled_from(HOLDERS), amounts
        ),
        st.tuples(
            st.just("burn"), st.sampled_from(TOKENS), st.sampled_from(HOLDERS), st.sampled_from(HOLDERS), amounts
        ),
        st.tuples(
            st.just("transfer"), st.sampled_from(TOKENS), st.sampled_from(HOLDERS), st.sampled_from(HOLDERS), amounts
        ),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_any_sequence_of_valid_operations_conserves_every_token(seq):
    led = Ledger()
    for op, token, frm, to, amount in seq:
        before = state(led)
        try:
            if op == "mint":
                led.mint(token, to, amount, "genesis")
            elif op == "burn":
                led.burn(token, frm, amount, "sink")
            else:
                led.transfer(token, frm, to, amount)
        except InsufficientBalance:
            assert state(led) == before  # a refused operation changes nothing
        led.check_conservation()
        for t in TOKENS:
            assert led.total(t) == pytest.approx(led.minted[t] - led.burned[t], rel=1e-9, abs=1e-6)
            assert all(b >= 0.0 for b in led.holders(t).values())
