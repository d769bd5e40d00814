"""`PerpDex.state_key()`: the one key of everything a position's values read (oracle prices, funding index, state
version). Each covered input alone moves it, and a value read after the move is computed afresh (hand-computed
one-market book); with nothing moved the key and the cached values are kept. The deleveraging pass keys on it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import track_env
from pydantic import ValidationError

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams
from defistress.scenarios.loader import ScenarioError, load

# IMF 10%, MMF 10%·0.5 = 5%; a default funding rate of 0.1% per 8 h with a balanced book (no vault: imbalance 0)
ETH = PerpMarketParams(
    asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5, default_funding_rate_8h=0.001
)
GOVERN_PERPS = {
    "source": "assumption",
    "at": 60,
    "action": "set",
    "protocol": "perps",
    "key": "markets.0.x",
    "value": 1.0,
}


def book():
    """ETH at 2,000 USD: account 0 long 10 ETH on 1,000 USD, account 1 short 10 ETH on 100,000 USD (both "pop")."""
    env = Env()
    track_env(env)
    orc = {"ETH": FixedPrice(2000.0)}
    dex = PerpDex(PerpDexParams(markets=[ETH]), orc, env)
    env.ledger.mint("USDC", "pop", 101_100.0, "test")
    dex.open_accounts("pop", [1000.0, 100_000.0], [[10.0], [-10.0]])
    return env, dex, orc


def funding_index(key: tuple) -> float:
    return float(np.frombuffer(key[2])[0])


def test_each_covered_input_moves_the_key_and_the_values_follow():
    env, dex, orc = book()
    keys = [dex.state_key()]
    assert dex.equity().tolist() == [1000.0, 100_000.0]  # the cache is warm from here on
    assert np.frombuffer(keys[0][1]).tolist() == [2000.0] and funding_index(keys[0]) == 0.0

    # a price move: equity 1,000 + 10·(1,950 − 2,000) = 500 USD; the short 100,000 + 500
    orc["ETH"].price = 1950.0
    keys.append(dex.state_key())
    assert np.frombuffer(keys[-1][1]).tolist() == [1950.0] and keys[-1][0] == keys[0][0]
    assert dex.equity().tolist() == [500.0, 100_500.0]

    # a funding tick: index += 0.001 · 3,600/28,800 · 1,950 = 0.24375 USD per ETH; the long owes 10 · 0.24375
    dex.accrue(3600.0)
    keys.append(dex.state_key())
    assert funding_index(keys[-1]) == pytest.approx(0.24375, rel=1e-12)
    assert keys[-1][:2] == keys[-2][:2]  # the funding index alone moved
    assert dex.equity() == pytest.approx([497.5625, 100_502.4375], rel=1e-12)

    # collateral: a deposit of 100 USD to the long
    dex.deposit("pop", [0], [100.0])
    keys.append(dex.state_key())
    assert keys[-1][1:] == keys[-2][1:]  # the state version alone moved
    assert dex.equity() == pytest.approx([597.5625, 100_502.4375], rel=1e-12)

    # a position change: the long sells 5 ETH to the short at the oracle price (equity unchanged, funding
    # settled into collateral); TMMR 5 · 1,950 · 5% = 487.5 USD each (was 975)
    assert dex.maintenance_requirement().tolist() == pytest.approx([975.0, 975.0], rel=1e-12)
    dex.trade("pop", [0], "ETH", [-5.0], counterparty=1)
    keys.append(dex.state_key())
    assert keys[-1][1:] == keys[-2][1:]
    assert dex.maintenance_requirement() == pytest.approx([487.5, 487.5], rel=1e-12)
    assert dex.equity() == pytest.approx([597.5625, 100_502.4375], rel=1e-12)

    # an account opened
    env.ledger.mint("USDC", "new", 10.0, "test")
    dex.open_accounts("new", [10.0], [[0.0]])
    keys.append(dex.state_key())
    assert dex.equity() == pytest.approx([597.5625, 100_502.4375, 10.0], rel=1e-12)
    assert len(set(keys)) == len(keys)  # every step gave a new key


def test_with_nothing_moved_the_key_and_the_cached_values_are_kept():
    env, dex, orc = book()
    key, values = dex.state_key(), dex._values()
    dex.accrue(1800.0)  # half a funding interval: no tick
    env.clock.block += 1  # a new block alone reads nothing new
    orc["ETH"].price = 2000.0  # the same price set again
    assert dex.state_key() == key and dex._values() is values
    dex.accrue(1800.0)  # the tick is due now
    assert dex.state_key() != key and dex._values() is not values


def test_the_deleveraging_state_is_the_state_key_and_its_own_reads():
    env, dex, orc = book()
    orc["ETH"].price = 1950.0
    dex.accrue(3600.0)
    state = dex._adl_state()
    assert state[:3] == dex.state_key()
    assert state[3:5] == (0.0, np.zeros(2, dtype=bool).tobytes())  # the fund (USD) and the controlled flags


def test_the_parameters_the_key_leaves_out_cannot_change_during_a_run():
    # the key does not cover the parameters: they are frozen, and governance refuses to set a perp DEX's keys
    # (if it ever may, the setter must bump `_version`)
    env, dex, orc = book()
    with pytest.raises(ValidationError, match="frozen"):
        dex.params.markets[0].maintenance_fraction = 0.9
    with pytest.raises(ScenarioError) as info:
        load("defi-contagion", {"governance": [GOVERN_PERPS]})
    assert any("governance.0.protocol: 'perps' is a perps; governance acts on" in e for e in info.value.errors)
