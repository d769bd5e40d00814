"""Reference (off-chain) prices: an exogenous path drawn up front, and endogenous impact of net selling.

The exogenous path is correlated GBM with Merton jumps for risky assets, an Ornstein-Uhlenbeck peg
process for stablecoins, scheduled shocks (jump, drift over a window, volatility multiplier, correlation
override, depeg), or a replayed real path. Endogenous impact follows the square-root law
(impact = 1% · sqrt(net USD sold / usd_for_1pct), Tóth et al. 2011) on the net flow not yet recovered,
which decays with a half-life, so a cascade of liquidation selling can feed on itself.
"""

from __future__ import annotations

from math import copysign, sqrt

import numpy as np

from defistress.scenarios.schema import Scenario
from defistress.sim.engine.replay import ReplayData

SECONDS_PER_YEAR = 365.0 * 86400.0


class Market:
    """Reference prices per block: `exogenous[block, asset]` times the current impact factor."""

    def __init__(
        self,
        scenario: Scenario,
        rng: np.random.Generator,
        replay_data: ReplayData | None = None,
        bridge_rng: np.random.Generator | None = None,
    ):
        """`replay_data`: the scenario's replayed series, read and checked (sim.engine.replay.load_replay);
        `bridge_rng`: the stream of the intrabar bridge (market.replay.fill = "bridge")."""
        self.spec = scenario.market
        self.symbols = [a.symbol for a in self.spec.assets]
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.block_seconds = scenario.run.block_seconds
        self.n_blocks = scenario.n_blocks
        self.replay_data = replay_data
        self.exogenous = self._exogenous_path(scenario, rng, bridge_rng)
        self.flow_usd = np.zeros(len(self.symbols))  # decaying cumulative net USD sold (buys negative)
        self.impact = np.zeros(len(self.symbols))  # log impact per asset
        self.pending_usd = np.zeros(len(self.symbols))  # net USD sold this block (buys negative)
        self.depth = np.array(
            [self.spec.depth[s].usd_for_1pct if s in self.spec.depth else np.inf for s in self.symbols]
        )
        half = np.array([self.spec.depth[s].recovery_half_life if s in self.spec.depth else 1.0 for s in self.symbols])
        self.decay = 0.5 ** (self.block_seconds / half)
        self.block = 0
        self.prices = self.exogenous[0].copy()

    # --- per block ---------------------------------------------------------------------------------
    def advance(self, block: int) -> np.ndarray:
        """Move to `block`: decay the unrecovered net flow, add last block's net selling, return prices (USD).

        impact = −1% · sign(Q) · sqrt(|Q| / usd_for_1pct), with Q the net USD sold not yet recovered
        (Q decays with the recovery half-life), so splitting a sale across blocks does not change its impact.
        """
        self.block = block
        flow = self.flow_usd = self.flow_usd * self.decay + self.pending_usd
        self.pending_usd.fill(0.0)
        # max(-1% · sign(Q) · sqrt(|Q| / depth), -0.99) per asset on Python floats (this runs every block on a few
        # assets: a ufunc call per operation cost more than the arithmetic). Each operation is exact or correctly
        # rounded (IEEE 754 sqrt and division, as numpy's), so the values are numpy's (`impact_plain`, tested);
        # log1p and exp stay numpy's, on the same contiguous array as before
        x = np.array(
            [
                max(copysign(sqrt(abs(q) / d), q) * -0.01, -0.99)
                for q, d in zip(flow.tolist(), self.depth.tolist(), strict=True)
            ]
        )
        self.impact = np.log1p(x, out=x)
        self.prices = self.exogenous[min(block, self.n_blocks - 1)] * np.exp(x)
        return self.prices

    def impact_plain(self, flow: np.ndarray) -> np.ndarray:
        """log1p(max(-1% · sign(Q) · sqrt(|Q| / depth), -0.99)) per asset with numpy's ufuncs: `advance`'s formula,
        the reference its per-asset arithmetic is tested against (log impact, from Q in USD)."""
        flow = np.asarray(flow, dtype=float)
        x = np.abs(flow)
        np.divide(x, self.depth, out=x)
        np.sqrt(x, out=x)
        np.copysign(x, flow, out=x)
        np.multiply(x, -0.01, out=x)
        np.maximum(x, -0.99, out=x)
        return np.log1p(x, out=x)

    def record_flow(self, symbol: str, usd_sold: float) -> None:
        """Net selling of `symbol` in USD this block (negative for buying); moves next block's price."""
        self.pending_usd[self.index[symbol]] += usd_sold

    def price(self, symbol: str) -> float:
        return float(self.prices[self.index[symbol]])

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.symbols, self.prices.tolist()))

    # --- the exogenous path ------------------------------------------------------------------------
    def _exogenous_path(self, scenario: Scenario, rng: np.random.Generator, bridge_rng) -> np.ndarray:
        n, dt_s = self.n_blocks, self.block_seconds
        dt = dt_s / SECONDS_PER_YEAR
        assets = self.spec.assets
        risky = [i for i, a in enumerate(assets) if not a.is_stable]
        stable = [i for i, a in enumerate(assets) if a.is_stable]
        logp = np.zeros((n, len(assets)))
        block_t = np.arange(n) * dt_s

        # volatility multiplier and correlation override per block
        vol_mult = np.ones((n, len(assets)))
        corr_override = np.full(n, np.nan)
        for s in scenario.shocks:
            win = (block_t >= s.at) & (block_t < (s.until if s.until is not None else s.at))
            if s.volatility_multiplier is not None:
                assert s.asset is not None  # ShockSpec._check: a volatility multiplier names its asset
                vol_mult[win, self.index[s.asset]] *= s.volatility_multiplier
            if s.correlation is not None:
                corr_override[win] = s.correlation

        if risky:
            sig = np.array([assets[i].volatility for i in risky])
            mu = np.array([assets[i].drift for i in risky])
            base_corr = np.asarray(self.spec.correlation, float) if self.spec.correlation else np.eye(len(risky))
            z = rng.standard_normal((n, len(risky)))
            shocks = z @ _cholesky(base_corr).T
            for rho in np.unique(corr_override[~np.isnan(corr_override)]):
                c = np.full((len(risky), len(risky)), rho)
                np.fill_diagonal(c, 1.0)
                mask = corr_override == rho
                shocks[mask] = z[mask] @ _cholesky(c).T
            vm = vol_mult[:, risky]
            inc = (mu - 0.5 * (sig * vm) ** 2) * dt + sig * vm * np.sqrt(dt) * shocks
            for k, i in enumerate(risky):
                j = assets[i].jumps
                if j is not None and j.intensity_per_year > 0:
                    counts = rng.poisson(j.intensity_per_year * dt, n)
                    inc[:, k] += counts * j.mean + np.sqrt(counts) * j.stdev * rng.standard_normal(n)
            inc[0] = 0.0
            logp[:, risky] = np.cumsum(inc, axis=0)

        if stable:
            theta = np.array([assets[i].peg_reversion_per_hour for i in stable]) * dt_s / 3600.0
            sig = np.array([assets[i].peg_volatility for i in stable]) * np.sqrt(dt)
            target = np.zeros((n, len(stable)))
            for s in scenario.shocks:
                peg = assets[self.index[s.asset]].peg if s.asset in self.index else None
                if s.depeg_to is not None and s.asset in self.index and peg is not None:  # a stablecoin's depeg
                    k = stable.index(self.index[s.asset])
                    assert s.until is not None  # ShockSpec._check: a depeg has a window
                    win = (block_t >= s.at) & (block_t < s.until)
                    target[win, k] = np.log(s.depeg_to / peg)
            z = rng.standard_normal((n, len(stable)))
            x = np.zeros((n, len(stable)))
            a = np.clip(theta, 0.0, 1.0)
            for b in range(1, n):  # OU recursion, one vector op per block
                x[b] = x[b - 1] + a * (target[b] - x[b - 1]) + sig * z[b]
            logp[:, stable] = x

        base = np.array([a.initial_price for a in assets])
        prices = base * np.exp(logp)

        if self.replay_data is not None and self.replay_data.series:
            prices = self._apply_replay(prices, bridge_rng)

        # scheduled jumps and drifts (also on top of a replayed path)
        adj = np.zeros_like(prices)
        for s in scenario.shocks:
            if s.asset is None:
                continue
            i = self.index[s.asset]
            if s.jump is not None:
                adj[block_t >= s.at, i] += np.log1p(s.jump)
            if s.drift_to is not None:
                assert s.until is not None  # ShockSpec._check: a drift has a window
                # blocks in the whole window, even past the run's end, so a short run is not compressed
                grid_t = np.arange(int(np.ceil(s.until / dt_s)) + 1) * dt_s
                win_len = max(int(np.sum((grid_t >= s.at) & (grid_t < s.until))), 1)
                steps = np.clip((block_t - s.at) / dt_s + 1, 0, win_len)
                adj[:, i] += np.log1p(s.drift_to) * steps / win_len
        return prices * np.exp(adj)

    def _apply_replay(self, prices: np.ndarray, bridge_rng) -> np.ndarray:
        """Replace replayed assets' paths by their data: USD series first, then series quoted in another asset
        (e.g. stETH/ETH x ETH/USD), each scaled to the asset's `price` when one is given (returns replayed)."""
        data = self.replay_data
        assert data is not None  # called only for a replayed market
        order = sorted(data.series, key=lambda a: a in data.quotes)  # quoted series after their quotes
        for sym in order:
            path = data.asset_path(sym, bridge_rng)
            if sym in data.quotes:
                path = path * prices[:, self.index[data.quotes[sym]]]
            asset = self.spec.asset(sym)
            if asset.price is not None:  # a replayed asset with its own price: the replay's returns from that price
                path = path * (asset.price / path[0])
            prices[:, self.index[sym]] = path
        return prices


def _cholesky(c: np.ndarray) -> np.ndarray:
    """Cholesky factor, with a tiny diagonal lift for singular (e.g. perfectly correlated) matrices."""
    try:
        return np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        return np.linalg.cholesky(c + 1e-12 * np.eye(len(c)))


class External:
    """The outside market (a CEX) at reference prices: an agent sells a token and receives another.

    The outside world is the ledger holder "external": it mints what it pays (reason
    "external_inflow") and keeps what it receives, so conservation holds; every trade is recorded as
    net flow that moves the reference price through the depth model.
    """

    holder = "external"

    def __init__(self, market: Market, ledger, fee: float = 0.0005):
        self.market = market
        self.ledger = ledger
        self.fee = fee  # taker fee, fraction (typical CEX VIP tier ~5 bps)

    def sell(self, trader: str, token: str, amount: float, for_token: str) -> float:
        """Sell `amount` of `token` for `for_token` at reference prices less the fee; returns amount received."""
        if amount <= 0:
            return 0.0
        p_in, p_out = self.market.price(token), self.market.price(for_token)
        received = amount * p_in / p_out * (1.0 - self.fee)
        self.ledger.transfer(token, trader, self.holder, amount)
        self.ledger.mint(for_token, self.holder, received, "external_inflow")
        self.ledger.transfer(for_token, self.holder, trader, received)
        self.market.record_flow(token, amount * p_in)
        self.market.record_flow(for_token, -received * p_out)
        return received
