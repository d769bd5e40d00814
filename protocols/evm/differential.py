"""Differential checks of the models against the bytecode they imitate: a book opened on Aave v3.0.2 and placed in the
vectorised `LendingMarket`, account data and liquidations compared; swaps on a Uniswap v2 pair and on the
constant-product pool. Used by the chain tests (which assert the bounds) and by benchmarks/bench_evm.py (which reports
how many cases ran and the largest deviations).

Bounds (why): the contract floors every asset value to the 8-decimal base currency and the average liquidation
threshold to a basis point, and its token amounts are integers. The model with precision "aave-v3" repeats those
rounding steps in float64, so it agrees to one base unit per asset and on every decision; with precision "float" it
differs by exactly that rounding (at most 1e-8 USD per asset for values, 1 bps of the average threshold for the
health factor of a multi-collateral account).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.evm import aave_math as am
from defistress.protocols.evm.aave import VARIABLE, AaveMarket, EModeParams, ReserveParams, model_assets, model_emodes
from defistress.protocols.evm.lending_backend import AAVE_ERRORS, derived_address
from defistress.protocols.evm.rpc import TxReverted
from defistress.protocols.lending import LendingMarket

UINT256_MAX = 2**256 - 1
LENDERS, LIQUIDATOR = "lenders", "liquidator"


@dataclass
class AccountBook:
    """One account to open on chain: collateral and debt in tokens by symbol, collateral switched off, e-mode."""

    collateral: dict[str, float]
    debt: dict[str, float] = field(default_factory=dict)
    disabled: tuple[str, ...] = ()
    emode: int = 0


@dataclass
class Deviations:
    """The largest deviations seen and the number of cases, by check."""

    worst: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cases: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def see(self, name: str, value: float) -> None:
        self.worst[name] = max(self.worst[name], float(value))

    def count(self, name: str, n: int = 1) -> None:
        self.cases[name] += n

    def as_dict(self) -> dict[str, Any]:
        return {"cases": dict(self.cases), "largest": dict(self.worst)}


class LendingDifferential:
    """Books opened on a deployed Aave (`aave`, listing `reserves` and `emodes`) and mirrored in the model."""

    def __init__(self, aave: AaveMarket, reserves: list[ReserveParams], emodes: list[EModeParams]):
        self.aave, self.chain = aave, aave.chain
        self.reserves = reserves
        self.symbols = [r.symbol for r in reserves]
        self.assets = model_assets(reserves)
        self.emodes = model_emodes(emodes)
        self.emode_params = {e.id: e for e in emodes}
        self.dev = Deviations()
        self.liquidator = derived_address("differential:liquidator")
        self._n = 0
        self._liquidated: dict[int, int] = defaultdict(int)  # row -> liquidations compared
        self._scale: dict[int, np.ndarray] = {}  # row -> largest units in the last place of its balances
        self._carry: dict[tuple, float] = defaultdict(float)  # (row, asset, 0 coll | 1 debt) -> allowed, base units
        #: rows where the "float" model took another decision than the chain within the contract's rounding (counted):
        #: its state no longer follows the chain's there, so it is not compared on them again
        self._float_apart: set[int] = set()
        #: row -> USD the "float" model's balances may differ by after its liquidations: one debt base unit each (it
        #: repays the close factor's share unrounded) with the collateral seized for it, and two collateral base units
        #: (the contract rounds the seizure and the protocol fee to whole units; the float model does not)
        self._float_usd: dict[int, float] = defaultdict(float)
        c = self.chain
        self.pool = aave.pool
        self._codec = {n: c.codec(self.pool, n) for n in ("supply", "borrow", "setUserEMode", "liquidationCall")}
        self._codec["collateral"] = c.codec(self.pool, "setUserUseReserveAsCollateral")
        self._read = {n: c.codec(self.pool, n) for n in ("getUserAccountData", "getUserConfiguration", "getUserEMode")}

    def reset(self) -> None:
        """Forget the liquidations counted per row (call when the chain is back at a checkpoint)."""
        self._liquidated.clear()
        self._scale.clear()
        self._carry.clear()
        self._float_apart.clear()
        self._float_usd.clear()

    # --- the chain side ---------------------------------------------------------------------------------------
    def _tx(self, codec, sender: str, *args, check: bool = True) -> dict:
        return self.chain.send_tx(codec.tx(sender, *args, gas=3_000_000), check=check)

    def _token(self, sym: str, to: str, amount: int) -> None:
        r = self.aave.reserves[sym]
        self._tx(self.chain.codec(r.token, "mint(address,uint256)"), to, to, amount)
        self._tx(self.chain.codec(r.token, "approve"), to, self.pool.address, UINT256_MAX)

    def set_prices(self, prices: dict[str, float], emode_price: float | None = None) -> None:
        for s, p in prices.items():
            self.aave.set_price(s, p)
        if emode_price is not None:
            for c in self.aave.emode_feeds:
                self.aave.set_emode_price(c, emode_price)

    def open(self, books: list[AccountBook], prices: dict[str, float], emode_price: float | None = None) -> list[str]:
        """Open the accounts on chain (supplies, e-mode, collateral switches, borrows at collateral prices ten times
        higher so the LTV check passes as a genesis book's would), then set `prices`. A borrow the chain refuses
        anyway is skipped: the comparison reads what is on chain."""
        addrs = []
        for b in books:
            self._n += 1
            addr = derived_address(f"differential#{self._n}")
            self.chain.set_balance(addr, 10**24)
            for sym, amount in b.collateral.items():
                units = self.aave.reserves[sym].units(amount)
                if units > 0:
                    self._token(sym, addr, units)
                    self._tx(self._codec["supply"], addr, self.aave.reserves[sym].address, units, addr, 0)
            if b.emode:
                self._tx(self._codec["setUserEMode"], addr, b.emode)
            for sym in b.disabled:
                if b.collateral.get(sym, 0) > 0:
                    self._tx(self._codec["collateral"], addr, self.aave.reserves[sym].address, False, check=False)
            for sym, amount in b.debt.items():
                units = self.aave.reserves[sym].units(amount)
                if units <= 0:
                    continue
                self.set_prices({s: p * (1 if s == sym else 10) for s, p in prices.items()})
                self._tx(
                    self._codec["borrow"], addr, self.aave.reserves[sym].address, units, VARIABLE, 0, addr, check=False
                )
            addrs.append(addr)
        self.set_prices(prices, emode_price)
        return addrs

    def account_data(self, addrs: list[str]) -> list[tuple[int, ...]]:
        return self.chain.batch_call([self._read["getUserAccountData"].prepared(a) for a in addrs])

    # --- the model side -------------------------------------------------------------------------------------------
    def model(self, addrs: list[str], precision: str) -> LendingMarket:
        """The same book in the vectorised market: balances, flags, e-mode and indexes read from the chain, prices
        from the chain's oracle."""
        c = self.chain
        prices = {s: self.aave.price(s) / 1e8 for s in self.symbols}
        oracles = {s: FixedPrice(p, s) for s, p in prices.items()}
        emode_oracles = {
            k: FixedPrice(c.call(self.aave.oracle.functions.getAssetPrice(a)) / 1e8)
            for k, a in self.aave.emode_sources.items()
        }
        env = Env()
        m = LendingMarket("lend", self.assets, oracles, env, "aave-v3.0", self.emodes, emode_oracles, precision)
        res = [self.aave.reserves[s] for s in self.symbols]
        inc = c.batch_call([self.pool.functions.getReserveNormalizedIncome(r.address) for r in res])
        dbt = c.batch_call([self.pool.functions.getReserveNormalizedVariableDebt(r.address) for r in res])
        m.liq_index = np.array([x / 1e27 for x in inc])
        m.borrow_index = np.array([x / 1e27 for x in dbt])
        for s in self.symbols:
            env.ledger.mint(s, LENDERS, 1e12, "genesis")
            m.supply_liquidity(LENDERS, s, 1e12)
            env.ledger.mint(s, LIQUIDATOR, 1e12, "genesis")
        n, n_a = len(addrs), len(self.symbols)
        calls = []
        for a in addrs:
            calls += [c.prepare(r.a_token.functions.balanceOf(a)) for r in res]
            calls += [c.prepare(r.variable_debt.functions.balanceOf(a)) for r in res]
            calls += [self._read["getUserConfiguration"].prepared(a), self._read["getUserEMode"].prepared(a)]
        vals = c.batch_call(calls)
        per = 2 * n_a + 2
        coll, debt = np.zeros((n, n_a)), np.zeros((n, n_a))
        on = np.zeros((n, n_a), dtype=bool)
        emode = np.zeros(n, dtype=np.int64)
        for k in range(n):
            v = vals[k * per : (k + 1) * per]
            coll[k] = [v[j] / 10 ** res[j].params.decimals for j in range(n_a)]
            debt[k] = [v[n_a + j] / 10 ** res[j].params.decimals for j in range(n_a)]
            on[k] = [am.user_configuration_flags(v[2 * n_a][0], r.reserve_id)[1] for r in res]
            emode[k] = v[2 * n_a + 1]
        rows = m.add_accounts(n)
        for j, s in enumerate(self.symbols):
            env.ledger.mint(s, "book", float(coll[:, j].sum()), "genesis")
        m.genesis_positions("book", rows, coll, debt, on, emode)
        return m

    # --- comparisons ---------------------------------------------------------------------------------------------
    def compare_accounts(self, addrs: list[str], exact: LendingMarket, floaty: LendingMarket) -> list[tuple]:
        """Every account's token balances and getUserAccountData against both models; returns the chain's data.

        Token balances: the models hold float64 token amounts, the chain integers; after liquidations they differ by
        what `liquidate_both` allows (a few base units). Values: the "aave-v3" model within one base-currency unit
        per asset plus the value of those token differences; the same decisions (HF < 1) unless the chain's health
        factor is within that bound of 1 (counted). The "float" model within the contract's rounding (1e-8 USD per
        asset, 1 bps of the average threshold)."""
        c = self.chain
        res = [self.aave.reserves[s] for s in self.symbols]
        calls = []
        for a in addrs:
            calls += [c.prepare(r.a_token.functions.balanceOf(a)) for r in res]
            calls += [c.prepare(r.variable_debt.functions.balanceOf(a)) for r in res]
        bal = np.array(c.batch_call(calls), dtype=float).reshape(len(addrs), 2, len(res))
        units = np.array([10.0**r.params.decimals for r in res])
        got = self.account_data(addrs)
        ce, de = exact.account_usd()
        cf, df = floaty.account_usd()
        he, hf = exact.health(), floaty.health()
        price_base = np.round(exact.prices() * 1e8)
        for k, g in enumerate(got):
            stage = "after_liquidations" if self._liquidated.get(k, 0) else "opened"
            coll, debt, hf_wad = g[0], g[1], g[5]
            chain_hf = np.inf if hf_wad == UINT256_MAX else hf_wad / 1e18
            # token balances (base units) of the model against the chain
            tok = np.abs(np.stack([exact.collateral()[k], exact.debt()[k]]) * units - bal[k])
            self._scale[k] = np.maximum(self._scale.get(k, 0.0), np.spacing(np.maximum(bal[k], 1.0)))
            self.dev.see("token_base_units", float(tok.max()))
            # per liquidation so far: 3 base units of the contract's integer steps and 16 units in the last place of
            # the largest balance the row held (float64 amounts subtract with that precision)
            carried = np.array([[self._carry.get((k, s, side), 0.0) for s in self.symbols] for side in (0, 1)])
            allowed = (3 + 16 * self._scale[k]) * (1 + self._liquidated.get(k, 0)) + carried
            assert np.all(tok <= allowed), (k, tok, bal[k], allowed)
            n_assets = int((bal[k] > 0).sum())
            slack = n_assets + float((tok * price_base / units).sum()) + 1e-6 * max(coll, debt, 1)
            # precision "aave-v3": the contract's values and decisions
            d_units = max(abs(ce[k] * 1e8 - coll), abs(de[k] * 1e8 - debt))
            self.dev.see(f"aave_v3_model_base_units_{stage}", d_units)
            assert d_units <= slack, (k, g, ce[k], de[k], slack)
            if np.isfinite(chain_hf):
                rel = abs(he[k] - chain_hf) / chain_hf if chain_hf > 0 else abs(he[k])
                self.dev.see(f"aave_v3_model_hf_rel_{stage}", rel)
                bound = 1e-12 + 2 * slack / max(min(coll, debt), 1)
                assert rel <= bound, (k, he[k], chain_hf, bound)
                if (he[k] < 1.0) != (hf_wad < am.WAD):  # only where the floats cannot tell: counted
                    assert abs(chain_hf - 1.0) <= bound, (k, he[k], hf_wad)
                    self.dev.count("aave_v3_decisions_within_bound")
            else:
                assert np.isinf(he[k])
            # precision "float": within the contract's rounding
            if k in self._float_apart:
                self.dev.count("float_model_rows_apart")
                continue
            usd = max(abs(cf[k] - coll / 1e8), abs(df[k] - debt / 1e8))
            self.dev.see(f"float_model_usd_{stage}", usd)
            assert usd <= 1e-8 * slack + 4 * np.spacing(max(cf[k], df[k], 1.0)) + self._float_usd[k], (k, usd)
            if np.isfinite(chain_hf):
                rel = abs(hf[k] - chain_hf) / chain_hf if chain_hf > 0 else abs(hf[k])
                self.dev.see(f"float_model_hf_rel_{stage}", rel)
                assert rel <= 1.0 / 5000 + 2 * slack / max(min(coll, debt), 1), (k, hf[k], chain_hf)
                if (hf[k] < 1.0) != (hf_wad < am.WAD):
                    self.dev.count("float_model_decisions_within_rounding")
        self.dev.count("accounts", len(got))
        return got

    @staticmethod
    def _bonus(m: LendingMarket, row: int, coll: str) -> float:
        return float(m._row_terms(row).bonus[m.idx[coll]])

    def _liquidation_tx(self, addr: str, coll: str, debt: str, cover: int) -> dict:
        self.chain.set_balance(self.liquidator, 10**24)
        self._token(debt, self.liquidator, 10**40)
        codec = self._codec["liquidationCall"]
        args = (self.aave.reserves[coll].address, self.aave.reserves[debt].address, addr, cover, False)
        return codec.tx(self.liquidator, *args, gas=3_000_000)

    def liquidate_both(
        self,
        addr: str,
        row: int,
        coll: str,
        debt: str,
        cover_tokens: float | None,
        exact: LendingMarket,
        floaty: LendingMarket | None = None,
    ) -> str:
        """Liquidate on chain and in the models with the same request (None: as much as allowed). Returns the outcome
        ('ok' or the revert's name). The "aave-v3" model must agree on the outcome and, to 3 base units plus float64
        precision, on the amounts; the "float" model too, except where its health factor is within the contract's
        rounding of a threshold (1 or 0.95), which is counted instead."""
        d_unit = 10 ** self.aave.reserves[debt].params.decimals
        c_unit = 10 ** self.aave.reserves[coll].params.decimals
        cover = UINT256_MAX if cover_tokens is None else int(cover_tokens * d_unit)
        request = 1e30 if cover_tokens is None else cover / d_unit
        near = None
        if floaty is not None and row in self._float_apart:  # its state left the chain's at a decision within rounding
            floaty = None
        if floaty is not None:
            h = float(floaty.health()[row])
            near = min(abs(h - 1.0), abs(h - am.CLOSE_FACTOR_HF_THRESHOLD / 1e18)) < 2e-4
        tx = self._liquidation_tx(addr, coll, debt, cover)
        # what the models hold already differs from the chain by a few base units (earlier liquidations, float
        # balances): that difference carries into the amounts, converted at the oracle prices
        c = self.chain
        rc, rd = self.aave.reserves[coll], self.aave.reserves[debt]
        chain_coll = c.call(rc.a_token.functions.balanceOf(addr))
        chain_debt = c.call(rd.variable_debt.functions.balanceOf(addr))
        pc, pd_ = self.aave.price(coll), self.aave.price(debt)
        carry = {}
        for m in (exact, floaty):
            if m is None:
                continue
            e_coll = abs(m.collateral()[row, m.idx[coll]] * c_unit - chain_coll)
            e_debt = abs(m.debt()[row, m.idx[debt]] * d_unit - chain_debt)
            if m is floaty:  # it repays the close factor's share unrounded; the contract rounds it half up to a unit
                e_debt += 1.0
            bonus = self._bonus(m, row, coll)
            # at the prices the liquidation converts with: an e-mode account's category price source where it has one
            # (Aave v3.0 LiquidationLogic: the e-mode price for assets of the user's category), else the oracle's
            t = m._row_terms(row)
            ratio = float(t.price[m.idx[coll]] / t.price[m.idx[debt]])  # collateral's price / debt's price
            carry[id(m)] = (
                e_debt + e_coll * ratio * d_unit / c_unit / bonus,
                e_coll + e_debt / ratio * c_unit / d_unit * bonus,
            )
        try:
            rcpt = self.chain.send_tx(tx)
        except TxReverted as exc:
            reason = AAVE_ERRORS.get(exc.reason or "", exc.reason or "")
            for m in (exact, floaty):
                if m is None:
                    continue
                try:
                    m.liquidate(row, coll, debt, request, LIQUIDATOR)
                except Revert as rev:
                    assert reason in str(rev) or str(rev) in reason or (m is floaty and near), (reason, str(rev))
                else:
                    if m is floaty and near:
                        self.dev.count("float_model_decisions_within_rounding")
                        self._float_apart.add(row)
                        continue
                    raise AssertionError(f"the chain reverted ({reason}) and the {m.precision} model did not")
            self.dev.count("reverts")
            self.dev.count(f"reverts:{reason}")
            return reason
        (ev,) = self.chain.events(self.pool.events.LiquidationCall, rcpt)
        paid, seized = ev["args"]["debtToCover"], ev["args"]["liquidatedCollateralAmount"]
        fee = sum(
            t["args"]["value"]
            for t in self.chain.events(self.aave.reserves[coll].a_token.events.Transfer, rcpt)
            if t["args"]["to"] == self.aave.treasury
        )
        for m in (exact, floaty):
            if m is None:
                continue
            try:
                e = m.liquidate(row, coll, debt, request, LIQUIDATOR)
            except Revert:
                if m is floaty and near:
                    self.dev.count("float_model_decisions_within_rounding")
                    self._float_apart.add(row)
                    continue
                raise
            # 3 base units for the contract's integer steps, plus float64's own precision on the amounts moved (the
            # fee is the small difference of two collateral amounts: it carries their rounding, not its own)
            carry_debt, carry_coll = carry[id(m)]
            for name, model_amount, chain_amount, unit, scale, carried in (
                ("debt_repaid", e.debt_repaid, paid, d_unit, paid, carry_debt),
                ("collateral_seized", e.collateral_seized, seized, c_unit, seized + fee, carry_coll),
                ("protocol_fee", e.protocol_fee, fee, c_unit, seized + fee, carry_coll),
            ):
                units = model_amount * unit
                diff = abs(units - chain_amount)
                bound = 3 + 8 * np.spacing(max(float(scale), 1.0)) + carried
                if m is floaty and near and diff > bound:
                    self.dev.count("float_model_decisions_within_rounding")
                    self._float_apart.add(row)
                    break
                self.dev.see(f"{m.precision}_model_liquidation_base_units", diff)
                self.dev.see(f"{m.precision}_model_liquidation_relative", diff / max(float(chain_amount), 1.0))
                assert diff <= bound, (name, m.precision, units, chain_amount)
                if m is exact:  # what the balances may now be off by
                    self._carry[(row, debt, 1) if name == "debt_repaid" else (row, coll, 0)] += bound
            if m is floaty:
                self._float_usd[row] += pd_ / 1e8 / d_unit * (1 + self._bonus(m, row, coll)) + 2 * pc / 1e8 / c_unit
        self._liquidated[row] += 1
        self.dev.count("liquidations")
        return "ok"


def compare_swaps(pair: Any, trader: str, swaps: list[tuple[int, int]], dev: Deviations) -> None:
    """Swaps on a Uniswap v2 pair and on the constant-product pool seeded with the pair's reserves: `swaps` are (side,
    amount in base units), side 0 selling token0. The integer formula (UniswapV2Library.getAmountOut) must equal the
    pair to the base unit. The float pool may differ by 1 base unit (the pair floors the output) plus float64's
    precision on the first swap; later, by what those differences do through the reserves (tracked here: a reserve
    off by e base units moves the output by at most out·e/R)."""
    from defistress.protocols.amm import ConstantProductPool, PoolParams
    from defistress.protocols.evm.uniswap_v2 import get_amount_out

    c = pair.chain
    d0, d1 = (10 ** c.call(t.functions.decimals()) for t in (pair.token0, pair.token1))
    r0, r1 = pair.reserves()
    env = Env()
    pool = ConstantProductPool(PoolParams("pool", "T0", "T1", fee=0.003), env)
    pool.seed(r0 / d0, r1 / d1)
    slack = [8 * float(np.spacing(float(r0))), 8 * float(np.spacing(float(r1)))]  # base units each reserve may be off
    for side, amount in swaps:
        token = (pair.token0, pair.token1)[side]
        unit_in, unit_out = (d0, d1) if side == 0 else (d1, d0)
        r_in, r_out = (r0, r1) if side == 0 else (r1, r0)
        want = get_amount_out(amount, r_in, r_out)
        out, _ = pair.swap(trader, token.address, amount, mint=True)
        r0, r1 = pair.reserves()
        assert out == want, (out, want)  # the bytecode is the integer formula, to the base unit
        assert (r_in + amount, r_out - out) == ((r0, r1) if side == 0 else (r1, r0))
        env.ledger.mint(("T0", "T1")[side], "trader", amount / unit_in, "test")
        model_out = pool.swap("trader", ("T0", "T1")[side], amount / unit_in)
        e_in, e_out = slack[side], slack[1 - side]
        bound = 1 + 8 * float(np.spacing(float(max(out, 1)))) + out * (e_in / r_in + e_out / r_out)
        diff = abs(model_out * unit_out - out)
        dev.see("pool_output_base_units", diff)
        dev.see("pool_output_relative", diff / max(out, 1))
        assert diff <= bound, (model_out * unit_out, out, bound)
        slack[side] += 8 * float(np.spacing(float(r_in + amount)))
        slack[1 - side] += bound
        m0, m1 = pool.reserves()
        for k, (model_r, chain_r, unit) in enumerate(((m0, r0, d0), (m1, r1, d1))):
            rd = abs(model_r * unit - chain_r)
            dev.see("pool_reserve_base_units", rd)
            assert rd <= slack[k], (model_r * unit, chain_r, slack[k])
        dev.count("swaps")
