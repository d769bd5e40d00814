"""Lending markets with Aave's fuller account model, and the books placed in them: the market's reserve and e-mode
parameters (from the scenario, or from an imported snapshot where the scenario is silent), its backend (the
vectorised model, or Aave v3.0.2 on a local chain), imported snapshots (`kind = "book"`) and mixed books drawn from
distributions (`kind = "mixed_borrowers"`).
"""

from __future__ import annotations

import numpy as np

from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.protocols.lending_accounts import EModeCategory
from defistress.scenarios.schema_books import default_decimals
from defistress.sim.engine.builders import agent_builder, liquidity_for, supply

BPS = 1e4


# --- the market ----------------------------------------------------------------------------------------------------
def _book_specs(model, protocol_id: str) -> list:
    return [a for a in model.scenario.agents if getattr(a, "kind", "") == "book" and a.protocol == protocol_id]


def load_book(model, spec):
    """The snapshot of a book agent, read once per run and checked against its pinned hash."""
    from defistress.protocols.evm.snapshot import read_snapshot

    cache = model.__dict__.setdefault("_snapshots", {})
    if spec.id not in cache:
        snap = read_snapshot(model.loaded.resolve_data(spec.file))
        if spec.sha256 is not None and snap.sha256 != spec.sha256:
            raise ValueError(f"agents.{spec.id}.sha256: {spec.file} has SHA-256 {snap.sha256}, not {spec.sha256}")
        cache[spec.id] = snap
    return cache[spec.id]


def _market_symbol(spec, snapshot_symbol: str) -> str:
    return spec.assets.get(snapshot_symbol, snapshot_symbol)


def _snapshot_overrides(model, spec) -> tuple[dict[str, dict], list[dict]]:
    """Reserve parameters (AssetParams field -> value, per market asset) and e-mode categories that an imported
    snapshot gives this market, where the scenario leaves them unset."""
    books = [b for b in _book_specs(model, spec.id) if b.reserve_params == "snapshot"]
    if not books:
        return {}, []
    book = books[0]
    snap = load_book(model, book)
    out: dict[str, dict] = {}
    for sym, r in snap.reserves.items():
        asset = _market_symbol(book, sym)
        if asset not in spec.assets:
            continue
        given = spec.assets[asset].model_fields_set
        values = {
            "ltv": r["ltv"] / BPS,
            "liquidation_threshold": r["liquidation_threshold"] / BPS,
            "liquidation_bonus": r["liquidation_bonus"] / BPS - 1.0,
            "protocol_fee": r["protocol_fee"] / BPS,
            "reserve_factor": r["reserve_factor"] / BPS,
            "supply_cap": float(r["supply_cap"]),
            "borrow_cap": float(r["borrow_cap"]),
            "debt_ceiling": r["debt_ceiling"] / 100.0,
            "borrowable_in_isolation": bool(r["borrowable_in_isolation"]),
            "borrowing_enabled": bool(r["borrowing_enabled"]),
            "emode_category": int(r["emode_category"]),
            "decimals": int(r["decimals"]),
        }
        spec_name = {"debt_ceiling": "debt_ceiling_usd"}
        out[asset] = {k: v for k, v in values.items() if spec_name.get(k, k) not in given}
    emodes = [] if spec.emodes else list(snap.emodes.values())
    return out, emodes


def lending_assets(model, spec) -> tuple[list[AssetParams], list[EModeCategory], dict]:
    """The market's reserves, e-mode categories and category price sources, from the scenario and (where the scenario
    is silent) from a book's snapshot."""
    from_snapshot, snap_emodes = _snapshot_overrides(model, spec)
    assets = []
    for sym, a in spec.assets.items():
        fields = dict(
            symbol=sym,
            ltv=a.ltv,
            liquidation_threshold=a.liquidation_threshold,
            liquidation_bonus=a.liquidation_bonus,
            protocol_fee=a.protocol_fee,
            reserve_factor=a.reserve_factor,
            base_rate=a.interest.base,
            slope1=a.interest.slope1,
            slope2=a.interest.slope2,
            optimal_utilisation=a.interest.optimal_utilisation,
            emode_category=a.emode_category,
            debt_ceiling=a.debt_ceiling_usd,
            borrowable_in_isolation=a.borrowable_in_isolation,
            supply_cap=a.supply_cap,
            borrow_cap=a.borrow_cap,
            borrowing_enabled=a.borrowing_enabled,
            decimals=a.decimals if a.decimals is not None else default_decimals(sym),
        )
        fields.update(from_snapshot.get(sym, {}))
        assets.append(AssetParams(**fields))
    if spec.emodes:
        emodes = [
            EModeCategory(e.id, e.ltv, e.liquidation_threshold, e.liquidation_bonus, e.label) for e in spec.emodes
        ]
        emode_oracles = {e.id: model.oracles[e.oracle] for e in spec.emodes if e.oracle is not None}
    else:
        emodes = [
            EModeCategory(
                int(e["id"]),
                e["ltv"] / BPS,
                e["liquidation_threshold"] / BPS,
                e["liquidation_bonus"] / BPS - 1.0,
                str(e.get("label", "")),
            )
            for e in snap_emodes
        ]
        emode_oracles = {}
    return assets, emodes, emode_oracles


def lending_market(model, spec, oracles: dict) -> LendingMarket:
    """The lending market of a scenario table: the vectorised model, or Aave v3.0.2 on a local chain (`evm`)."""
    assets, emodes, emode_oracles = lending_assets(model, spec)
    if spec.backend == "evm":
        from defistress.sim.engine.build_evm import evm_lending_market

        return evm_lending_market(model, spec, assets, oracles, emodes, emode_oracles)
    return LendingMarket(
        spec.id, assets, oracles, model.env, spec.close_factor_rule, emodes, emode_oracles, spec.precision
    )


# --- books ---------------------------------------------------------------------------------------------------------
def _place(model, spec, market, coll: np.ndarray, debt: np.ndarray, enabled=None, emode=None) -> np.ndarray:
    """New accounts holding `coll` and owing `debt` (token units, (n, A) in market order): collateral tokens are
    genesis supply of the book's holder, the debt is lent by the market's lenders and spent by the borrowers."""
    holder = spec.id
    rows = market.add_accounts(coll.shape[0])
    for j, sym in enumerate(market.assets):
        if coll[:, j].sum() > 0:
            supply(model, sym, holder, float(coll[:, j].sum()), "genesis_collateral")
    ensure = liquidity_for(model, market.id, spec.id)
    for j, sym in enumerate(market.assets):
        if debt[:, j].sum() > 0:
            ensure(sym, float(debt[:, j].sum()))
    market.genesis_positions(holder, rows, coll, debt, enabled, emode)
    led = model.env.ledger
    for j, sym in enumerate(market.assets):
        if debt[:, j].sum() > 0:  # borrowed tokens were spent: they leave the holder's wallet
            led.transfer(sym, holder, f"{holder}:spent", float(debt[:, j].sum()))
    return rows


@agent_builder("book")
def build_book(model, spec) -> list:
    """Every account of an imported snapshot, placed as it was on chain (passive afterwards)."""
    market = model.protocols[spec.protocol]
    snap = load_book(model, spec)
    symbols = [s for s in snap.reserves if _market_symbol(spec, s) != ""]
    unknown = sorted({_market_symbol(spec, s) for s in symbols} - set(market.assets))
    present = set(snap.frame["asset"])
    unknown = [u for u in unknown if any(_market_symbol(spec, s) == u and s in present for s in symbols)]
    if unknown:
        raise ValueError(
            f"agents.{spec.id}.assets: the snapshot holds {unknown}, which protocols.{spec.protocol} does not list "
            f"({market.assets}); map them to a listed asset, or to '' to drop them"
        )
    symbols = [s for s in symbols if _market_symbol(spec, s) in market.idx]
    mats = snap.matrices(symbols)
    n = len(snap.accounts)
    cols = [market.idx[_market_symbol(spec, s)] for s in symbols]
    coll, debt = np.zeros((n, len(market.assets))), np.zeros((n, len(market.assets)))
    enabled = np.zeros((n, len(market.assets)), dtype=bool)
    np.add.at(coll.T, cols, mats["collateral"].T)
    np.add.at(debt.T, cols, mats["debt"].T)
    np.logical_or.at(enabled.T, cols, mats["enabled"].T)
    factor = np.full(len(market.assets), spec.scale)
    if spec.amounts == "usd":
        snap_price = {_market_symbol(spec, s): snap.reserves[s]["price_base"] / 1e8 for s in symbols}
        now = market.prices()
        for sym, p0 in snap_price.items():
            factor[market.idx[sym]] *= p0 / now[market.idx[sym]]
    coll *= factor
    debt *= factor
    rows = _place(model, spec, market, coll, debt, enabled, mats["emode"])
    m = snap.manifest
    model.__dict__.setdefault("snapshots", []).append(
        {
            "agent": spec.id,
            "protocol": spec.protocol,
            "file": spec.file,
            "sha256": snap.sha256,
            "chain_id": m.get("chain_id"),
            "block_number": m.get("block_number"),
            "block_hash": m.get("block_hash"),
            "contracts": m.get("contracts", {}),
            "accounts": int(rows.size),
            "amounts": spec.amounts,
            "scale": spec.scale,
        }
    )
    return []


@agent_builder("mixed_borrowers")
def build_mixed_borrowers(model, spec) -> list:
    """A passive book with several collateral assets and debts per account, drawn around the given mean shares."""
    market = model.protocols[spec.protocol]
    rng = model.stream(f"agent:{spec.id}")
    n, n_a = spec.accounts, len(market.assets)
    p = market.prices()
    size = spec.size_usd.draw(rng, n)
    hf = spec.health_factor.draw(rng, n)
    in_emode = rng.random(n) < spec.emode_share if spec.emode else np.zeros(n, dtype=bool)

    def shares(mean: dict[str, float], concentration: float, rows: int, only=None) -> np.ndarray:
        out = np.zeros((rows, n_a))
        keep = {a: w for a, w in mean.items() if w > 0 and (only is None or a in only)}
        total = sum(keep.values())
        alpha = np.array([concentration * w / total for w in keep.values()])
        if rows:
            out[:, [market.idx[a] for a in keep]] = rng.dirichlet(alpha, size=rows)
        return out

    coll_share = shares(spec.collateral, spec.collateral_concentration, n)
    debt_share = np.zeros((n, n_a))
    debt_share[~in_emode] = shares(spec.debt, spec.debt_concentration, int((~in_emode).sum()))
    if in_emode.any():
        inside = {a for a in spec.debt if market.asset_category[market.idx[a]] == spec.emode}
        debt_share[in_emode] = shares(spec.debt, spec.debt_concentration, int(in_emode.sum()), inside)
    coll = size[:, None] * coll_share / p
    emode = np.where(in_emode, spec.emode, 0)
    rows = _place(model, spec, market, coll, np.zeros((n, n_a)), None, emode)
    # debt sized so that each account starts at its drawn health factor, with its own terms (e-mode included)
    debt_usd = market.weighted_collateral_usd()[rows] / hf
    price = np.tile(p, (n, 1))
    for c in np.unique(emode):
        price[emode == c] = market._terms(int(c), p).price
    debt = debt_usd[:, None] * debt_share / price
    ensure = liquidity_for(model, market.id, spec.id)
    for j, sym in enumerate(market.assets):
        if debt[:, j].sum() > 0:
            ensure(sym, float(debt[:, j].sum()))
    market.genesis_positions(spec.id, rows, np.zeros((n, n_a)), debt)
    led = model.env.ledger
    for j, sym in enumerate(market.assets):
        if debt[:, j].sum() > 0:
            led.transfer(sym, spec.id, f"{spec.id}:spent", float(debt[:, j].sum()))
    return []
