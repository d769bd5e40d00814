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


def test_a_transfer_within_rounding_of_the_balance_credits_exactly_what_it_debits(led):
    # 100 + 5e-8 asked of a balance of 100: short by 5e-8 < REL_TOL·amount = 1e-7, so it is rounding and the
    # whole balance (100) moves; the receiver gets those 100 tokens, not 100 + 5e-8 (which would create 5e-8)
    led.transfer("ETH", "alice", "bob", 100.0 + 5e-8)
    assert led.balance("alice", "ETH") == 0.0
    assert led.balance("bob", "ETH") == 100.0
    assert led.total("ETH") == 100.0 == led.minted["ETH"]
    assert led.n_transfers == 1


def test_a_burn_within_rounding_of_the_balance_records_what_it_destroyed(led):
    led.burn("ETH", "alice", 100.0 + 5e-8, "sink")  # the 100 held are destroyed, and recorded as 100
    assert led.balance("alice", "ETH") == 0.0
    assert led.burned["ETH"] == 100.0 and led.burn_reasons[("ETH", "sink")] == 100.0
    assert led.minted["ETH"] - led.burned["ETH"] == led.total("ETH") == 0.0


def test_dust_transfers_back_and_forth_never_create_tokens(led):
    # each leg asks 5e-8 more than the sender holds; 2,000 legs would create 1e-4 tokens (far above the 1e-6
    # conservation tolerance) if the receiver were credited the amount asked instead of the amount debited
    for k in range(2_000):
        frm, to = ("alice", "bob") if k % 2 == 0 else ("bob", "alice")
        led.transfer("ETH", frm, to, led.balance(frm, "ETH") + 5e-8)
    assert led.balance("alice", "ETH") == 100.0 and led.balance("bob", "ETH") == 0.0
    assert led.total("ETH") == 100.0
    led.check_conservation()


def test_a_shortfall_beyond_rounding_is_refused(led):
    # 100 + 2e-7 exceeds the balance by more than max(ABS_DUST, REL_TOL·amount) = 1.000000002e-7
    with pytest.raises(InsufficientBalance):
        led.transfer("ETH", "alice", "bob", 100.0 + 2e-7)
    # a tiny balance: the absolute dust 1e-9 applies (REL_TOL·amount is smaller)
    led.mint("DUST", "carol", 1e-6, "genesis")
    led.transfer("DUST", "carol", "dave", 1e-6 + 5e-10)  # 5e-10 over: rounding
    assert led.balance("dave", "DUST") == 1e-6
    led.mint("DUST", "carol", 1e-6, "genesis")
    with pytest.raises(InsufficientBalance):
        led.transfer("DUST", "carol", "dave", 1e-6 + 2e-9)  # 2e-9 over: a real shortfall
    assert led.balance("carol", "DUST") == 1e-6


def test_sending_exactly_the_balance_empties_the_sender(led):
    led.transfer("ETH", "alice", "bob", 100.0)
    assert led.balance("alice", "ETH") == 0.0 and led.balance("bob", "ETH") == 100.0
    assert led.holders("ETH") == {"alice": 0.0, "bob": 100.0}


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


def test_tokens_that_vanish_without_a_burn_are_reported_as_a_conservation_error(led):
    led.balances["ETH"]["alice"] -= 1.0  # destroyed without a burn: total 99 < minted − burned = 100
    assert led.conservation_errors() == pytest.approx({"ETH": -1.0})
    with pytest.raises(AssertionError, match="ETH"):
        led.check_conservation()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_conservation_tolerance_is_1e6_tokens_or_1e9_of_the_minted_supply(sign):
    led = Ledger()
    # nothing minted: the tolerance is max(1e-6, 1e-9·1) = 1e-6 tokens, either way
    led.balances["X"]["a"] = sign * 1e-6
    assert "X" not in led.conservation_errors()
    led.balances["X"]["a"] = sign * 1.5e-6
    assert led.conservation_errors()["X"] == pytest.approx(sign * 1.5e-6)
    # 1e4 minted: the tolerance is max(1e-6, 1e-9·1e4) = 1e-5 tokens
    led.mint("Y", "a", 1e4, "genesis")
    led.balances["Y"]["b"] = sign * 5e-6
    assert "Y" not in led.conservation_errors()
    led.balances["Y"]["b"] = sign * 2e-5
    assert led.conservation_errors()["Y"] == pytest.approx(sign * 2e-5, rel=1e-6)


def test_negative_balances_are_errors_only_beyond_dust():
    led = Ledger()
    led.mint("X", "a", 1.0, "genesis")
    led.balances["X"]["a"], led.balances["X"]["b"] = 1.0 + 1e-9, -1e-9  # total 1, b at -ABS_DUST: rounding
    assert led.conservation_errors() == {}
    led.balances["X"]["a"], led.balances["X"]["b"] = 1.0 + 2e-9, -2e-9
    assert led.conservation_errors() == {"X:b": -2e-9}


def test_tokens_lists_every_token_seen_by_a_balance_a_mint_or_a_burn():
    led = Ledger()
    led.mint("B", "a", 1.0, "genesis")
    led.burn("B", "a", 1.0, "sink")
    led.balance("a", "C")  # a read creates an (empty) book
    led.minted["A"] += 0.0
    assert led.tokens() == ["A", "B", "C"]


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


def test_reasons_and_transfers_accumulate(led):
    led.mint("ETH", "alice", 1.0, "airdrop")
    led.mint("ETH", "bob", 2.0, "airdrop")
    led.burn("ETH", "alice", 0.5, "fee")
    led.burn("ETH", "bob", 0.25, "fee")
    led.transfer("ETH", "alice", "bob", 1.0)
    led.transfer("ETH", "bob", "carol", 1.0)
    assert led.mint_reasons[("ETH", "airdrop")] == 3.0 and led.burn_reasons[("ETH", "fee")] == 0.75
    assert led.minted["ETH"] == 103.0 and led.burned["ETH"] == 0.75
    assert led.n_transfers == 2


def test_a_request_of_exactly_the_dust_from_an_empty_holder_moves_nothing():
    led = Ledger()
    led.transfer("ETH", "nobody", "bob", 1e-9)  # short by exactly ABS_DUST: rounding, the empty balance moves
    assert led.balance("bob", "ETH") == 0.0 and led.balance("nobody", "ETH") == 0.0
    with pytest.raises(InsufficientBalance):
        led.transfer("ETH", "nobody", "bob", 1.1e-9)
