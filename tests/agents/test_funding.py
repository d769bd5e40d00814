"""Flash loans and the liquidator's capital source: a flash loan is minted, lent, repaid with its fee and
burned inside one transaction; no transaction ends with a loan outstanding; a flash-loan liquidator needs no
capital, only gas and profitability."""

from __future__ import annotations

from types import SimpleNamespace

import mesa
import pytest
from conftest import track_env

from defistress.agents.funding import CAPITAL, Funding
from defistress.agents.liquidator import Liquidator
from defistress.agents.tx import BlockView
from defistress.protocols.amm import ConstantProductPool, PoolParams
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.compound_v2 import CompoundV2, CTokenMarket, JumpRateModel
from defistress.protocols.flash_loan import FLASH_FEES, FlashLender, FlashLoanOutstanding
from defistress.protocols.lending import AssetParams, LendingMarket


def lender(fee=FLASH_FEES["aave-v3"]):
    env = track_env(Env())
    return FlashLender("aave-v3", fee, env), env.ledger


def test_a_flash_loan_is_repaid_with_its_fee_inside_the_transaction():
    fl, led = lender()
    led.mint("USDC", "bot", 10.0, "genesis")  # enough to pay the 5 bps fee on 10,000
    seen = {}

    def body():
        seen["held"] = led.balance("bot", "USDC")
        seen["outstanding"] = fl.outstanding
        return "done"

    assert fl.loan("bot", "USDC", 10_000.0, body) == "done"
    assert seen == {"held": 10_010.0, "outstanding": 10_000.0}
    assert fl.outstanding == 0.0
    assert led.balance("bot", "USDC") == pytest.approx(10.0 - 5.0)  # 10,000 x 0.0005
    assert led.balance(fl.holder, "USDC") == pytest.approx(5.0)
    assert led.mint_reasons[("USDC", "flash_loan")] == led.burn_reasons[("USDC", "flash_loan_repaid")] == 10_000.0
    assert led.total("USDC") == pytest.approx(10.0)  # the loan created nothing
    led.check_conservation()


def test_a_reverted_body_returns_the_loan_untouched_and_pays_no_fee():
    fl, led = lender()

    def body():
        raise Revert("the liquidation failed")

    with pytest.raises(Revert, match="liquidation failed"):
        fl.loan("bot", "USDC", 1_000.0, body)
    assert fl.outstanding == 0.0 and led.balance("bot", "USDC") == 0.0 and led.total("USDC") == 0.0


def test_a_transaction_cannot_end_with_the_loan_outstanding():
    """If the body spends the loan and cannot repay it, the lender raises an invariant breach, never a revert."""
    fl, led = lender()

    def body():
        led.transfer("USDC", "bot", "elsewhere", 600.0)

    with pytest.raises(FlashLoanOutstanding, match="owes"):
        fl.loan("bot", "USDC", 1_000.0, body)
    fl, led = lender()

    def spend_then_revert():  # a revert after spending part of the loan cannot hide it either
        led.transfer("USDC", "bot", "elsewhere", 400.0)
        raise Revert("late failure")

    with pytest.raises(FlashLoanOutstanding):
        fl.loan("bot", "USDC", 1_000.0, spend_then_revert)


def test_funding_reverts_before_anything_moves_when_the_proceeds_cannot_repay():
    fl, led = lender()
    funding = Funding("flash-loan", fl)
    calls = []
    with pytest.raises(Revert, match="would not be repaid"):
        funding.execute(led, "bot", "USDC", 1_000.0, lambda: calls.append(1), quote=lambda: (1_000.0, 999.0))
    assert calls == [] and led.total("USDC") == 0.0 and fl.loans == 0


def test_funding_modes_split_a_payment_between_capital_and_flash():
    fl, led = lender()
    led.mint("USDC", "bot", 300.0, "genesis")
    assert CAPITAL.available(led, "bot", "USDC", 100.0) == 200.0
    assert CAPITAL.flash_amount(led, "bot", "USDC", 1_000.0, 0.0) == 0.0
    assert Funding("flash-loan", fl).flash_amount(led, "bot", "USDC", 1_000.0, 0.0) == 1_000.0
    assert Funding("both", fl).flash_amount(led, "bot", "USDC", 1_000.0, 100.0) == 800.0  # 1,000 - (300 - 100)
    assert Funding("both", fl).available(led, "bot", "USDC", 0.0) == float("inf")
    with pytest.raises(ValueError, match="needs a flash lender"):
        Funding("flash-loan")


# --- a liquidator with no capital ---------------------------------------------------------------------------
SPEC = SimpleNamespace(
    latency_blocks=0,
    max_tx_per_block=5,
    min_profit_usd=1.0,
    profit_share_to_gas=0.3,
    max_priority_fee_gwei=100.0,
    gas_budget_eth=1.0,
    private_orderflow=True,
)


def _world(market_kind: str):
    env = track_env(Env())
    prices = {"ETH": 2000.0, "USDC": 1.0}
    oracles = {s: FixedPrice(p, s) for s, p in prices.items()}
    if market_kind == "lending":
        m = LendingMarket(
            "lend",
            [AssetParams("ETH", 0.8, 0.85, 0.05, 0.0), AssetParams("USDC", 0.85, 0.9, 0.05, 0.0)],
            oracles,
            env,
            "aave-v3.0",
        )
    else:
        flat = JumpRateModel(0.0, 0.0, 0.0, 0.8)
        m = CompoundV2(
            "comp",
            [CTokenMarket("ETH", 0.75, 0.1, 0.02, flat), CTokenMarket("USDC", 0.8, 0.1, 0.02, flat)],
            oracles,
            env,
        )
    env.ledger.mint("USDC", "lenders", 1e6, "genesis")
    m.supply_liquidity("lenders", "USDC", 1e6)
    (a,) = m.add_accounts(1)
    env.ledger.mint("ETH", "pop", 10.0, "genesis")
    m.supply("pop", [a], "ETH", [10.0])
    m.borrow("pop", [a], "USDC", [14_000.0])
    oracles["ETH"].price = 1600.0  # underwater on both markets (Aave HF 0.971: 50% close factor)
    pool = ConstantProductPool(PoolParams("uni", "ETH", "USDC", 0.003), env)
    pool.seed(10_000.0, 16_000_000.0)
    env.ledger.mint("ETH", "bot", 1.0, "genesis_gas")
    return env, m, pool, int(a)


@pytest.mark.parametrize("market_kind", ["lending", "compound-v2"])
def test_a_flash_loan_liquidator_without_capital_liquidates_and_repays(market_kind):
    env, m, pool, a = _world(market_kind)
    led = env.ledger
    view = BlockView(1, 12.0, 10.0, {"ETH": 1600.0, "USDC": 1.0})
    broke = Liquidator(mesa.Model(rng=0), "bot", SPEC, [m], [pool], 500_000, lambda: 1600.0)
    assert broke.submit(view) == []  # capital-limited with no USDC: nothing to do
    fl = FlashLender("aave-v3", 0.0005, env)
    bot = Liquidator(mesa.Model(rng=0), "bot", SPEC, [m], [pool], 500_000, lambda: 1600.0, Funding("flash-loan", fl))
    (tx,) = bot.submit(view)
    debt_before = m.debt()[a, 1]
    tx.action()
    repaid = debt_before - m.debt()[a, 1]
    assert repaid > 0 and fl.loans == 1 and fl.outstanding == 0.0
    assert led.balance(fl.holder, "USDC") == pytest.approx(repaid * 0.0005)  # the fee
    assert led.balance("bot", "USDC") > 0  # profit kept in the debt token
    assert led.mint_reasons[("USDC", "flash_loan")] == pytest.approx(led.burn_reasons[("USDC", "flash_loan_repaid")])


def test_both_borrows_only_what_the_liquidator_lacks():
    env, m, pool, a = _world("lending")
    led = env.ledger
    led.mint("USDC", "bot", 2_000.0, "genesis")
    fl = FlashLender("aave-v3", 0.0005, env)
    bot = Liquidator(mesa.Model(rng=0), "bot", SPEC, [m], [pool], 500_000, lambda: 1600.0, Funding("both", fl))
    (tx,) = bot.submit(BlockView(1, 12.0, 10.0, {"ETH": 1600.0, "USDC": 1.0}))
    repay = m.preview(a, "ETH", "USDC", 1e12).debt_to_repay  # 50% of 14,000 under the v3.0 rule
    assert repay == pytest.approx(7_000.0)
    tx.action()
    assert led.burn_reasons[("USDC", "flash_loan_repaid")] == pytest.approx(7_000.0 - 2_000.0)
    assert led.balance(fl.holder, "USDC") == pytest.approx(5_000.0 * 0.0005)
