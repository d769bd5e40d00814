"""One name per metric and one definition each: the glossary at the end of every report.

`summary.json` uses these names. Earlier names merged into them (sim/analysis/summary.py `SAME_AS`, `RENAMED`):
`end_bad_debt_usd` is `bad_debt_usd`; `end_accounts_unhealthy` is `accounts_unhealthy_end`; `end_liquidated_debt_usd`
is `liquidation_volume_usd` (a CDP's counts the tab, its debt without the penalty stays in the timeseries column
`{protocol}_liquidated_debt_usd`); `end_auctions_settled` and `end_zero_bid_auctions` are `auctions_settled` and
`zero_bid_auctions`; `end_deficit_usd` is `bad_debt_written_off_usd`.
"""

from __future__ import annotations

from dataclasses import dataclass

from defistress.sim.report.formatting import kind_of, label_of


@dataclass(frozen=True)
class Term:
    """A metric's label (with its unit), format kind and definition (with its source where it has one)."""

    label: str
    kind: str
    definition: str


def _t(label: str, kind: str, definition: str) -> Term:
    return Term(label, kind, definition)


GLOSSARY: dict[str, Term] = {
    "bad_debt_usd": _t(
        "Bad debt",
        "usd",
        "Debt left with no collateral behind it at the end of the run, USD: debt already written off plus debt "
        "above its collateral's value at the protocol's oracle prices (lending, Compound, Comet, perps: negative "
        "equity; a CDP counts the Vow's written-off debt, `woe`, and shows its under-collateralised vaults apart). "
        "Summed over protocols at the top (DESIGN metric vocabulary; Gauntlet and Chaos Labs report the same).",
    ),
    "bad_debt_pct": _t(
        "Bad debt, % of initial debt",
        "pct",
        "Bad debt over the debt (a perp DEX: long open interest) at the start, in %.",
    ),
    "bad_debt_written_off_usd": _t(
        "Bad debt written off",
        "usd",
        "The part of bad debt already burned into the protocol's deficit because the account had no collateral "
        "left (Aave v3.3 `_burnBadDebt` reserve deficit; a perp DEX's written-off deficit), USD.",
    ),
    "initial_debt_usd": _t("Initial debt", "usd", "Debt at the start (a perp DEX: long open interest), USD."),
    "liquidations": _t(
        "Liquidations", "int", "Liquidation events (a CDP: auctions kicked, Maker dss `dog.bark`/`cat.bite`)."
    ),
    "liquidation_volume_usd": _t(
        "Liquidation volume",
        "usd",
        "Debt repaid by liquidations, USD at the time (a CDP: the tab of the auctions kicked, debt plus the "
        "liquidation penalty, at the stablecoin's reference price).",
    ),
    "debt_liquidated_pct": _t("Debt liquidated, % of initial debt", "pct", "Liquidation volume over initial debt."),
    "peak_liquidations_per_block": _t("Peak liquidations per block", "int", "Most liquidations in one block."),
    "first_liquidation_s": _t("First liquidation", "s", "Seconds from the start to the first liquidation."),
    "liquidator_value_leakage_usd": _t(
        "Liquidator value leakage",
        "usd",
        "The liquidation bonus borrowers paid liquidators, USD (value that leaves borrowers beyond the debt repaid).",
    ),
    "liquidation_slippage_usd": _t(
        "Liquidation slippage",
        "usd",
        "What liquidators' sales of seized collateral lost to pool price impact and fees, at reference prices, USD.",
    ),
    "liquidator_pnl_usd": _t(
        "Liquidator PnL",
        "usd",
        "Change of liquidators' and keepers' ledger value at reference prices over the run (bonus less slippage, "
        "gas and price moves on inventory), USD.",
    ),
    "max_oracle_error": _t(
        "Max oracle error", "frac", "Largest |oracle − reference| / reference over every oracle and block."
    ),
    "exogenous_drawdown": _t(
        "Exogenous drawdown", "frac", "Largest fall of the shocked asset's exogenous path from its start."
    ),
    "reference_drawdown": _t(
        "Reference drawdown",
        "frac",
        "Largest fall of the shocked asset's reference price, which carries the price impact of liquidation selling.",
    ),
    "cascade_amplification": _t(
        "Cascade amplification",
        "x",
        "Reference drawdown over exogenous drawdown: above 1, liquidation selling deepened the fall (n/a below a 5% "
        "fall, where the ratio is noise).",
    ),
    "peak_base_fee_gwei": _t("Peak base fee", "gwei", "Highest EIP-1559 base fee of the run, gwei per gas unit."),
    "txs_reverted": _t(
        "Transactions reverted", "int", "Included transactions that reverted (e.g. a position already liquidated)."
    ),
    "txs_dropped": _t("Transactions dropped", "int", "Transactions left out because the block was full."),
    "conservation_ok": _t(
        "Ledger conservation", "ok", "Every token's total equals mints minus burns at the end (protocols/ledger.py)."
    ),
    "accounts_unhealthy_end": _t(
        "Unhealthy accounts at the end",
        "int",
        "Accounts with health below 1 at the protocol's oracle prices when the run ends; the report counts each "
        "one's cause (sim/analysis/unhealthy.py).",
    ),
    "soft_liquidation_loss_usd": _t(
        "Soft-liquidation loss", "usd", "What LLAMMA borrowers lost to soft liquidation (band conversions), USD."
    ),
    "auctions_settled": _t("Auctions settled", "int", "CDP collateral auctions that ended (dealt or taken)."),
    "zero_bid_auctions": _t("Zero-bid auctions", "int", "Settled auctions won by a bid of nothing (Black Thursday)."),
    "zero_bid_collateral_usd": _t(
        "Collateral sold for zero", "usd", "Value of the collateral in zero-bid auctions, USD."
    ),
    "zero_bid_share": _t("Zero-bid share", "frac", "Zero-bid collateral over all auctioned collateral."),
    "auction_shortfall_usd": _t(
        "Auction shortfall", "usd", "Debt the settled auctions did not raise (tab less what bidders paid), USD."
    ),
    "debtrank": _t(
        "DebtRank",
        "num",
        "Share of the network's economic value (weights: initial debt) lost to distress passed along exposure "
        "edges beyond the initial distress (Battiston et al. 2012, Sci. Rep. 2:541): 0 when no protocol holds "
        "another's token, or nothing lost value.",
    ),
    "cascade_depth": _t(
        "Cascade depth",
        "int",
        "Most hops from the shocked asset to a protocol that took losses (liquidations or "
        "bad debt), along the edges that carry losses.",
    ),
    "collateral_value_lost_usd": _t(
        "Collateral value lost",
        "usd",
        "What a protocol's holding of another protocol's token lost in value: the holding at the start times the "
        "token's largest fall below its peg, USD.",
    ),
}

#: the per-protocol figures the protocols report each block (timeseries `{protocol}_{name}`), shown as `end_{name}`
END_TERMS: dict[str, str] = {
    "collateral_usd": "Collateral at oracle prices, USD.",
    "debt_usd": "Debt at oracle prices, USD.",
    "vault_collateral_usd": "Collateral locked in vaults, USD.",
    "auction_collateral_usd": "Collateral on auction, USD.",
    "surplus_usd": "The CDP's surplus (Vow's balance), USD.",
    "debt_on_auction_usd": "Debt being raised by running auctions, USD.",
    "tab_on_auction_usd": "Tab (debt plus penalty) of running auctions, USD.",
    "auctions_active": "Auctions running.",
    "auctions_kicked": "Auctions started since the start.",
    "undercollateralised_debt_usd": "Debt in vaults and running auctions above their collateral's value, USD.",
    "incentives_paid_usd": "Keeper incentives paid (Clipper tip and chip), USD.",
    "stablecoin_outstanding": "Stablecoin minted less burned, tokens.",
    "rate": "The CDP's accumulated stability-fee rate (dss `ilk.rate`).",
    "open_interest_long_usd": "Long open interest at the oracle price, USD.",
    "open_interest_short_usd": "Short open interest at the oracle price, USD.",
    "equity_usd": "Accounts' equity (collateral plus unrealised PnL), USD.",
    "insurance_fund_usd": "Insurance fund balance, USD.",
    "insurance_drawdown_usd": "Insurance fund paid out since the start, USD.",
    "insurance_paid_usd": "Insurance payouts to cover bankrupt liquidations, USD.",
    "liquidation_fees_usd": "Liquidation fees the insurance fund earned, USD.",
    "liquidated_notional_usd": "Notional of positions liquidated, USD.",
    "adl_count": "Auto-deleveraging events.",
    "socialised_loss_usd": "Losses socialised to profitable accounts by deleveraging, USD.",
    "funding_volume_usd": "Funding paid between longs and shorts, USD.",
    "reserves_usd": "Protocol reserves, USD.",
    "accounts_liquidated": "Accounts liquidated at least once.",
    "accounts_absorbed": "Accounts absorbed by the protocol (Comet `absorb`).",
    "security_module_usd": "Security module balance, USD.",
}


def term(key: str) -> Term:
    """The glossary entry of a metric name; unknown names get a label from their unit suffix and no definition."""
    if key in GLOSSARY:
        return GLOSSARY[key]
    if key.startswith("end_"):
        base = key[4:]
        label = label_of(base)
        return Term(f"{label} at the end", kind_of(base), END_TERMS.get(base, ""))
    return Term(label_of(key), kind_of(key), "")


def anchor(key: str) -> str:
    """The id of a metric's glossary entry in the page."""
    return "g-" + "".join(c if c.isalnum() else "-" for c in key)
