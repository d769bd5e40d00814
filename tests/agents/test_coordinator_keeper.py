"""The coordinator's keeper: set-up rows, latency, one Tx per unhealthy principal, unwinding taken positions."""

from __future__ import annotations

import mesa
import numpy as np
import pytest
from pydantic import ValidationError

from defistress.agents.coordinator_keeper import CoordinatorKeeper, CoordinatorKeeperParams
from defistress.agents.tx import BlockView
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.coordinator import CoordinatorParams, MarginCoordinator
from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams

ETH_L = AssetParams("ETH", ltv=0.825, liquidation_threshold=0.86, liquidation_bonus=0.05)
USDC_L = AssetParams("USDC", ltv=0.865, liquidation_threshold=0.885, liquidation_bonus=0.048)
ETH_P = PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5)


def setup(latency_blocks=1, unwind=True):
    """Alice: 10 ETH / 16,000 USDC on lending, -5 ETH perp with 500 USDC; keeper with 1e6 USDC."""
    env = Env()
    eth = FixedPrice(2000.0)
    lend = LendingMarket("lend", [ETH_L, USDC_L], {"ETH": eth, "USDC": FixedPrice(1.0)}, env)
    dex = PerpDex(PerpDexParams(markets=[ETH_P]), {"ETH": eth}, env)
    led = env.ledger
    for h in ("lenders", "vault", "alice"):
        led.mint("USDC", h, 1e7, "t")
    lend.supply_liquidity("lenders", "USDC", 1e7)
    dex.set_vault(int(dex.open_accounts("vault", [1e6], None)[0]))
    led.mint("ETH", "alice", 10.0, "t")
    a = lend.add_accounts(1)
    lend.supply("alice", a, "ETH", np.array([10.0]))
    lend.borrow("alice", a, "USDC", np.array([16_000.0]))
    r = dex.open_accounts(["alice", "vault"], [500.0, 1e5], [[-5.0], [5.0]])
    coord = MarginCoordinator(CoordinatorParams(), {"lend": lend, "perps": dex}, env)
    coord.enroll("alice", {"lend": int(a[0]), "perps": int(r[0])})
    led.mint("USDC", "ck", 1e6, "t")
    k = CoordinatorKeeper(
        mesa.Model(rng=0),
        CoordinatorKeeperParams(id="ck", row_capital_usd=200_000.0, latency_blocks=latency_blocks, unwind=unwind),
        coord,
        lambda: float(eth.price),
    )
    return env, eth, lend, dex, coord, k


def view(block):
    return BlockView(block, block * 12.0, 10.0, {"ETH": 2000.0, "USDC": 1.0})


def test_keeper_opens_a_dex_row_and_registers_it():
    env, eth, lend, dex, coord, k = setup()
    assert k.rows["lend"] is None
    row = k.rows["perps"]
    assert dex.owner[row] == dex._holder_ids["ck"] and dex.collateral[row] == pytest.approx(200_000.0)
    assert coord.liquidators["ck"] == {"lend": None, "perps": row}
    assert env.ledger.balance("ck", "USDC") == pytest.approx(800_000.0)  # the rest repays lending debt


def test_keeper_waits_its_latency_then_liquidates_the_unhealthy_principal():
    env, eth, lend, dex, coord, k = setup(latency_blocks=1)
    assert k.submit(view(0)) == []  # healthy
    eth.price = 1500.0  # coordinated health 0.92
    assert k.submit(view(1)) == []  # first seen this block
    txs = k.submit(view(2))
    assert [t.label for t in txs] == ["liquidate:coordinator#0"] and txs[0].sender == "ck"
    assert txs[0].gas == 1_200_000 and txs[0].priority_fee_gwei == 2.0
    txs[0].action()
    assert coord.n_liquidations == 1 and k.liquidations == 1
    assert coord.health()[0] >= 1.0
    with pytest.raises(Revert, match="healthy"):  # a second tx for the same principal reverts
        txs[0].action()
    assert k.submit(view(3)) == []
    env.ledger.check_conservation()


def test_keeper_unwinds_perp_positions_it_took_against_the_vault():
    env, eth, lend, dex, coord, k = setup(latency_blocks=0)
    eth.price = 1000.0  # total equity -500: every venue is closed
    txs = k.submit(view(5))
    assert len(txs) == 1
    txs[0].action()
    assert dex.size[k.rows["perps"], 0] == 0.0  # the taken short closed on the vault
    assert env.ledger.balance("ck", "ETH") == pytest.approx(10.0)  # all the lending collateral, kept (no market)
    env.ledger.check_conservation()
    assert dex.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)


def test_keeper_keeps_the_taken_position_without_unwind():
    env, eth, lend, dex, coord, k = setup(latency_blocks=0, unwind=False)
    eth.price = 1000.0
    k.submit(view(5))[0].action()
    assert dex.size[k.rows["perps"], 0] == pytest.approx(-5.0)


@pytest.mark.parametrize(
    "field,value", [("latency_blocks", -1), ("gas", 0), ("row_capital_usd", -1.0), ("max_tx_per_block", 0), ("nope", 1)]
)
def test_bad_keeper_params_name_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        CoordinatorKeeperParams(**{field: value})
