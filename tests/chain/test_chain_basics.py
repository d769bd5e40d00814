"""The local chain: Anvil on loopback, Aave v3.0.2 deployed from the npm artifacts, Uniswap v2, snapshots, reverts and
the project's RoundFeed. Expected values are hand computations or the Solidity formulas quoted in aave_math."""

from __future__ import annotations

import pytest

from defistress.protocols.evm import aave_math as am
from defistress.protocols.evm.rpc import Checkpoint, TxReverted

from .chain_helpers import E18, balances


def alice_borrows_usdc(m, alice, weth=10, usdc=10_000):
    m.supply("WETH", alice, m.reserves["WETH"].units(weth))
    m.borrow("USDC", alice, m.reserves["USDC"].units(usdc))


def test_the_node_listens_on_loopback_only(node):
    assert node.url.startswith("http://127.0.0.1:") and "--host" in node.command()
    assert node.command()[node.command().index("--host") + 1] == "127.0.0.1"


def test_deployment_lists_every_reserve_with_its_parameters(chain, aave):
    m = aave
    assert chain.call(m.pool.functions.getReservesList()) == [r.address for r in m.reserves.values()]
    for sym, r in m.reserves.items():
        assert m.price(sym) == int(r.params.price_usd * 10**8)
        cfg = chain.call(m.data_provider.functions.getReserveConfigurationData(r.address))
        p = r.params
        assert cfg[:5] == (p.decimals, p.ltv, p.liquidation_threshold, p.liquidation_bonus, p.reserve_factor)
        assert cfg[5] and cfg[6] and cfg[8] and not cfg[9]  # collateral, borrowing, active, not frozen
        assert chain.call(m.data_provider.functions.getLiquidationProtocolFee(r.address)) == p.protocol_fee
    assert chain.call(m.data_provider.functions.getReserveCaps(m.reserves["WETH"].address)) == (500_000, 1_000_000)
    assert chain.call(m.data_provider.functions.getDebtCeiling(m.reserves["WBTC"].address)) == 1_000_000 * 100
    assert chain.call(m.pool.functions.getEModeCategoryData(1))[:3] == (9300, 9500, 10100)
    # the configuration bitmap decodes to the same parameters
    rd = chain.call(m.pool.functions.getReserveData(m.reserves["WETH"].address))
    conf = am.decode_reserve_configuration(rd[0][0])
    assert (conf["ltv"], conf["liquidation_threshold"], conf["liquidation_bonus"], conf["decimals"]) == (
        8000,
        8250,
        10500,
        18,
    )
    assert (conf["supply_cap"], conf["borrow_cap"], conf["liquidation_protocol_fee"]) == (1_000_000, 500_000, 1000)


def test_account_data_is_the_generic_logic_formula(chain, aave):
    m, alice = aave, chain.accounts[1]
    alice_borrows_usdc(m, alice)
    d = m.account_data(alice)
    # 10 WETH at 2,000 USD against 10,000 USDC: HF = 20,000 · 0.825 / 10,000 = 1.65
    assert d["total_collateral_base"] == 20_000 * 10**8 and d["total_debt_base"] == 10_000 * 10**8
    assert d["ltv"] == 8000 and d["current_liquidation_threshold"] == 8250
    assert d["available_borrows_base"] == 16_000 * 10**8 - 10_000 * 10**8
    assert d["health_factor"] == 165 * 10**16
    users = chain.accounts[:5]
    assert m.account_data_many(users) == [tuple(m.account_data(u).values()) for u in users]


def test_a_price_written_into_the_mock_feed_mines_nothing(chain, aave):
    m, alice = aave, chain.accounts[1]
    alice_borrows_usdc(m, alice)
    bn = chain.block_number()
    m.set_price("WETH", "1234.5")
    assert chain.block_number() == bn
    assert m.price("WETH") == 123_450_000_000
    assert m.account_data(alice)["total_collateral_base"] == 10 * 123_450_000_000


def _liquidation_case(chain, m, weth_price):
    alice, liq = chain.accounts[1], chain.accounts[2]
    alice_borrows_usdc(m, alice)
    m.set_price("WETH", weth_price)
    hf = m.account_data(alice)["health_factor"]
    weth, usdc = m.reserves["WETH"], m.reserves["USDC"]
    coll0, debt0 = balances(m, alice, "WETH", "USDC")
    treasury0 = chain.call(weth.a_token.functions.balanceOf(m.treasury))
    m.mint("USDC", liq, usdc.units(1_000_000))
    m.approve("USDC", liq)
    cash0 = chain.call(usdc.token.functions.balanceOf(liq))
    rcpt = m.liquidate(liq, "WETH", "USDC", alice, 2**256 - 1)
    (ev,) = chain.events(m.pool.events.LiquidationCall, rcpt)
    a = ev["args"]
    coll1, debt1 = balances(m, alice, "WETH", "USDC")
    fee = chain.call(weth.a_token.functions.balanceOf(m.treasury)) - treasury0
    assert (a["collateralAsset"], a["debtAsset"], a["user"], a["liquidator"]) == (
        weth.address,
        usdc.address,
        alice,
        liq,
    )
    assert debt0 - debt1 == a["debtToCover"] == cash0 - chain.call(usdc.token.functions.balanceOf(liq))
    assert coll0 - coll1 == a["liquidatedCollateralAmount"] + fee
    assert chain.call(weth.token.functions.balanceOf(liq)) == a["liquidatedCollateralAmount"]  # underlying, not aToken
    return hf, a, fee, coll0


def test_liquidation_above_hf_095_repays_half_the_reserve_debt(chain, aave):
    # HF = 1,200 · 10 · 0.825 / 10,000 = 0.99 > 0.95: close factor 50% -> 5,000 USDC
    hf, a, fee, _ = _liquidation_case(chain, aave, 1200)
    assert hf == 99 * 10**16 and a["debtToCover"] == 5_000 * 10**6
    # collateral = 5,000 USD / 1,200 = 4.1666.. WETH floored to the wei, times 1.05 rounded half up (one wei short
    # of 4.375); the fee is 10% of the bonus part seized - seized/1.05
    base = 5_000 * 10**6 * 10**8 * E18 // (1_200 * 10**8 * 10**6)
    assert base == 4_166_666_666_666_666_666
    seized = (base * 10500 + 5000) // 10**4
    bonus_part = seized - (seized * 10**4 + 10500 // 2) // 10500
    assert fee == (bonus_part * 1000 + 5000) // 10**4
    assert a["liquidatedCollateralAmount"] == seized - fee


def test_liquidation_at_or_below_hf_095_repays_all_of_it(chain, aave):
    # HF = 1,100 · 10 · 0.825 / 10,000 = 0.9075
    hf, a, _, _ = _liquidation_case(chain, aave, 1100)
    assert hf == 9075 * 10**14 and a["debtToCover"] == 10_000 * 10**6


def test_a_liquidation_short_of_collateral_takes_it_all_and_leaves_bad_debt(chain, aave):
    m, alice, liq = aave, chain.accounts[1], chain.accounts[2]
    alice_borrows_usdc(m, alice)
    m.set_price("WETH", 900)  # 9,000 USD of collateral against 10,000 USD of debt
    coll0, debt0 = balances(m, alice, "WETH", "USDC")
    m.mint("USDC", liq, 10**12)
    m.approve("USDC", liq)
    want = am.available_collateral_to_liquidate(debt0, m.price("USDC"), 6, m.price("WETH"), 18, coll0, 10500, 1000)
    (ev,) = chain.events(m.pool.events.LiquidationCall, m.liquidate(liq, "WETH", "USDC", alice, 2**256 - 1))
    assert (ev["args"]["liquidatedCollateralAmount"], ev["args"]["debtToCover"]) == want[:2]
    coll1, debt1 = balances(m, alice, "WETH", "USDC")
    # 9,000 USD / 1.05 = 8,571.428571 USDC repaid; 1,428.571429 USDC stays with no collateral behind it
    assert coll1 == 0 and debt1 == debt0 - 8_571_428_571 and want[0] + want[2] == coll0


def test_liquidating_a_healthy_account_reverts_45(chain, aave):
    m, alice, liq = aave, chain.accounts[1], chain.accounts[2]
    alice_borrows_usdc(m, alice)
    m.mint("USDC", liq, 10**12)
    m.approve("USDC", liq)
    assert chain.revert_reason_of(m.liquidation_fn("WETH", "USDC", alice, 10**9), liq) == "45"
    with pytest.raises(TxReverted) as e:
        m.liquidate(liq, "WETH", "USDC", alice, 10**9)
    assert e.value.reason == "45"  # HEALTH_FACTOR_NOT_BELOW_THRESHOLD


def test_emode_raises_ltv_and_threshold_and_binds_the_borrows(chain, aave):
    m, bob = aave, chain.accounts[3]
    m.supply("USDC", bob, m.reserves["USDC"].units(10_000))
    m.set_emode(bob, 1)
    d = m.account_data(bob)
    assert (d["ltv"], d["current_liquidation_threshold"]) == (9300, 9500)
    m.borrow("DAI", bob, m.reserves["DAI"].units(9_000))  # 90% LTV: only in e-mode
    weth = m.reserves["WETH"].address
    assert chain.revert_reason_of(m.pool.functions.borrow(weth, 10**15, 2, 0, bob), bob) == "58"
    assert chain.revert_reason_of(m.pool.functions.setUserEMode(0), bob) == "35"
    m.approve("DAI", bob)
    m.repay("DAI", bob, m.reserves["DAI"].units(6_000))
    m.set_emode(bob, 0)
    d = m.account_data(bob)
    assert (d["ltv"], d["current_liquidation_threshold"]) == (7700, 8000)
    assert d["health_factor"] == am.health_factor(10_000 * 10**8, 3_000 * 10**8, 8000)


def test_isolation_mode_needs_an_explicit_collateral_switch_and_counts_its_debt(chain, aave):
    m, carol = aave, chain.accounts[4]
    m.supply("WBTC", carol, m.reserves["WBTC"].units(1))
    assert m.account_data(carol)["total_collateral_base"] == 0  # v3.0.2: not enabled automatically
    m.use_as_collateral("WBTC", carol, True)
    assert m.account_data(carol)["total_collateral_base"] == 30_000 * 10**8
    weth = m.reserves["WETH"].address
    assert chain.revert_reason_of(m.pool.functions.borrow(weth, E18, 2, 0, carol), carol) == "60"
    m.borrow("USDC", carol, m.reserves["USDC"].units(12_345))
    assert chain.call(m.pool.functions.getReserveData(m.reserves["WBTC"].address))[14] == 12_345 * 100


def test_interest_accrues_only_when_the_clock_moves(chain, aave):
    m, alice = aave, chain.accounts[1]
    alice_borrows_usdc(m, alice)
    d0 = balances(m, alice, "WETH", "USDC")[1]
    chain.mine()
    assert balances(m, alice, "WETH", "USDC")[1] == d0  # frozen time: a new block accrues nothing
    chain.advance_time(365 * 86400, mine=True)
    assert balances(m, alice, "WETH", "USDC")[1] > d0


def test_the_interest_replica_matches_the_token_balances(chain, aave):
    m, alice = aave, chain.accounts[1]
    alice_borrows_usdc(m, alice, usdc=14_000)
    chain.advance_time(30 * 86400, mine=True)
    usdc = m.reserves["USDC"]
    rd = chain.call(m.pool.functions.getReserveData(usdc.address))
    now = chain.timestamp()
    scaled = chain.call(usdc.variable_debt.functions.scaledBalanceOf(alice))
    idx = am.normalized_debt(rd[3], rd[4], rd[6], now)
    assert idx == chain.call(m.pool.functions.getReserveNormalizedVariableDebt(usdc.address))
    assert am.ray_mul(scaled, idx) == chain.call(usdc.variable_debt.functions.balanceOf(alice))
    inc = am.normalized_income(rd[1], rd[2], rd[6], now)
    assert inc == chain.call(m.pool.functions.getReserveNormalizedIncome(usdc.address))


def test_a_snapshot_restores_the_state_a(chain, aave):
    aave.supply("WETH", chain.accounts[5], E18)
    assert aave.account_data(chain.accounts[5])["total_collateral_base"] > 0


def test_a_snapshot_restores_the_state_b(chain, aave):
    # whichever of a/b runs first, the other sees the post-deployment state
    assert aave.account_data(chain.accounts[6])["total_collateral_base"] == 0
    aave.supply("WETH", chain.accounts[6], E18)


def test_snapshot_ids_are_single_use_and_the_checkpoint_renews_them(chain):
    s = chain.snapshot()
    chain.mine()
    chain.revert(s)
    with pytest.raises(Exception, match="single-use|revert"):
        chain.revert(s)
    cp = Checkpoint(chain)
    bn = chain.block_number()
    for _ in range(3):
        chain.mine(2)
        cp.restore()
        assert chain.block_number() == bn


def test_a_round_feed_keeps_every_round(chain, aave):
    from defistress.protocols.evm.artifacts import load_artifact

    feed = chain.deploy(load_artifact("RoundFeed"), 8, "ETH / USD", 3, 2_000 * 10**8)
    t0 = chain.timestamp()
    chain.set_next_block_timestamp(t0 + 60)
    chain.transact(feed.functions.transmit(1_990 * 10**8), chain.accounts[0])
    latest = chain.call(feed.functions.latestRoundData())
    assert latest == ((3 << 64) + 2, 1_990 * 10**8, t0 + 60, t0 + 60, (3 << 64) + 2)
    assert chain.call(feed.functions.getRoundData((3 << 64) + 1))[1] == 2_000 * 10**8
    assert "No data present" in chain.revert_reason_of(feed.functions.getRoundData((3 << 64) + 3), chain.accounts[0])
    assert "only the writer" in chain.revert_reason_of(feed.functions.transmit(1), chain.accounts[1])


def test_missing_anvil_names_make_chain(monkeypatch, tmp_path):
    import defistress.protocols.evm.node as node_mod
    from defistress.protocols.evm.artifacts import MissingNodeModules
    from defistress.protocols.evm.node import AnvilNode, AnvilNotFound

    def none(*_a, **_k):
        raise MissingNodeModules("none")

    monkeypatch.setattr(node_mod, "find_node_modules", none)
    monkeypatch.delenv("DEFISTRESS_ANVIL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AnvilNotFound, match="make chain"):
        AnvilNode().start()


def test_many_transactions_land_in_one_block_without_auto_mining():
    from defistress.protocols.evm.node import AnvilNode
    from defistress.protocols.evm.rpc import Chain
    from defistress.protocols.evm.uniswap_v2 import deploy_mintable_erc20

    with AnvilNode(auto_mine=False, auto_impersonate=True) as n:
        c = Chain(n.url)
        c.set_automine(True)
        tok = deploy_mintable_erc20(c, "TKN", 18)
        c.set_automine(False)
        mint = c.codec(tok, "mint(address,uint256)")
        users = [c.w3.to_checksum_address(f"0x{0x5000 + i:040x}") for i in range(25)]
        for u in users:
            c.set_balance(u, E18)  # impersonated senders still pay gas
        bn = c.block_number()
        rcpts = c.send_many([mint.tx(u, u, E18 + i, gas=100_000) for i, u in enumerate(users)])
        assert {r["blockNumber"] for r in rcpts} == {hex(bn + 1)} and all(r["status"] == "0x1" for r in rcpts)
        bal = c.codec(tok, "balanceOf")
        assert c.batch_call([bal.prepared(u) for u in users]) == [E18 + i for i in range(25)]
        c.close()
