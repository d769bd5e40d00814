"""Published scenario-grid portfolio margin methodologies as ScenarioPM presets, registered by name.

Sources are in docs/margin-methods.md (sections 1-4) and the files each block names.
`get_model("derive-pm2", im_factor=1.1)` overrides any ScenarioPMParams field or any field of its
contingency / vol_shock / discount / skew parameters by name.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from defistress.protocols.margin.registry import register
from defistress.protocols.margin.scenario_params import (
    DOWN,
    NONE,
    UP,
    ContingencyParams,
    ScenarioGrid,
    ScenarioPMParams,
    SkewShockParams,
    StaticDiscountParams,
    VolShockParams,
)
from defistress.protocols.margin.scenario_pm import ScenarioPM

_DAY = 86_400.0
_UND = (UP, NONE, DOWN)

# ---------------------------------------------------------------- Lyra v2 PMRM v1
# lyra-finance/v2-core scripts/config-mainnet.sol: 23 scenarios = {+-15,+-10,+-5,0} x {Up,None,Down} + {+20,-20} Up
LYRA_V1_MAINNET_GRID = (
    ScenarioGrid.product((0.20,), (UP,))
    + ScenarioGrid.product((0.15, 0.10, 0.05, 0.0, -0.05, -0.10, -0.15), _UND)
    + ScenarioGrid.product((-0.20,), (UP,))
)
# lyra-finance/v2-core test/config-test.sol: 21 scenarios = {+-15,+-10,+-5,0} x {Up,None,Down}
LYRA_V1_TEST_GRID = ScenarioGrid.product((-0.15, -0.10, -0.05, 0.0, 0.05, 0.10, 0.15), _UND)

LYRA_PMRM_V1_MAINNET = ScenarioPMParams(
    name="lyra-pmrm-v1",
    grid=LYRA_V1_MAINNET_GRID,
    vol_shock=VolShockParams(
        range_up=0.6,
        range_down=0.3,
        short_term_power=0.3,
        long_term_power=0.13,
        dte_floor_s=_DAY,
        short_term_inclusive=True,
    ),  # config-mainnet.sol vol shocks
    discount=StaticDiscountParams(
        long_base=0.95, long_rate_mult=1.0, long_rate_add=0.12, floor_rate_at_zero=True
    ),  # baseStaticDiscount, rate scales
    contingency=ContingencyParams(
        option_pct_mm=0.02,
        perp_pct_mm=0.03,
        base_pct_mm=0.03,  # option/perp/basePercent
        conf_threshold=0.55,
        conf_margin=1.0,  # confThreshold / confMargin
        peg_threshold=0.99,
        peg_factor=4.0,  # pegLossThreshold / Factor
        basis_up=1.05,
        basis_down=0.95,
        basis_add=1.0,
        basis_mult=1.2,
    ),
    mm_factor=1.0,
    im_factor=1.25,
    static_inside_factor=True,
    discount_option_prices=False,
)
LYRA_PMRM_V1_TEST = dataclasses.replace(
    LYRA_PMRM_V1_MAINNET,
    name="lyra-pmrm-v1-test",
    grid=LYRA_V1_TEST_GRID,
    vol_shock=dataclasses.replace(LYRA_PMRM_V1_MAINNET.vol_shock, range_up=0.45, range_down=0.3),
    discount=StaticDiscountParams(long_base=0.95, long_rate_mult=4.0, long_rate_add=0.05, floor_rate_at_zero=True),
    contingency=ContingencyParams(
        option_pct_mm=0.01,
        perp_pct_mm=0.02,
        base_pct_mm=0.02,
        conf_threshold=0.6,
        conf_margin=0.5,
        peg_threshold=0.98,
        peg_factor=2.0,
        basis_up=1.05,
        basis_down=0.95,
        basis_add=0.25,
        basis_mult=0.01,
    ),
    im_factor=1.3,
)  # test/config-test.sol

# ---------------------------------------------------------------- Derive PMRM_2
# derivexyz/v2-core scripts/config-mainnet.sol getDefaultPM2Scenarios: 21 + 2 + 8 tails + 2 skews = 33
_PM2_TAILS = ScenarioGrid.tails(
    (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0),
    UP,
    dampening=(0.21, 0.42, 0.2772, 0.1386, 0.0693, 0.0462, 0.03465, 0.02772),
)
DERIVE_PM2_GRID = (
    ScenarioGrid.product((-0.135, -0.09, -0.045, 0.0, 0.045, 0.09, 0.135), _UND)
    + ScenarioGrid.product((0.18, -0.18), (UP,))
    + _PM2_TAILS
    + ScenarioGrid.skews()
)
DERIVE_PM2 = ScenarioPMParams(
    name="derive-pm2",
    grid=DERIVE_PM2_GRID,
    vol_shock=VolShockParams(
        range_up=0.5, range_down=0.3, short_term_power=0.3, long_term_power=0.13, dte_floor_s=_DAY, min_vol_up=0.4
    ),  # getPMRM2Params vol
    skew=SkewShockParams(
        linear_base_cap=0.25,
        linear_c_base=-0.1,
        abs_base_cap=0.25,
        abs_c_base=-0.1,
        min_k_star=0.01,
        width_scale=4.0,
        vol_param_static=0.6,
        vol_param_scale=0.0,
    ),
    # docs/margin-methods.md 2 caution: golden-case semantics, positive values x 0.95, negative x 1.04 (conservative)
    discount=StaticDiscountParams(
        long_base=0.95,
        long_rate_mult=0.0,
        long_rate_add=0.16,
        short_base=1.04,
        short_rate_mult=0.0,
        short_rate_add=0.16,
    ),
    contingency=ContingencyParams(
        option_pct_mm=0.003,
        option_pct_im=0.002,
        perp_pct_mm=0.03,
        perp_pct_im=0.01,
        conf_threshold=0.55,
        conf_margin=1.0,
        peg_threshold=0.99,
        peg_factor=4.0,
        basis_up=1.045,
        basis_down=0.955,
        basis_add=0.5,
        basis_mult=2.0,
    ),
    mm_factor=0.8,
    im_factor=1.0,
    discount_option_prices=True,
)  # PM2 base collateral haircuts: 0 (not published)

# ---------------------------------------------------------------- Deribit portfolio margin
_DERIBIT_EXT = (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)  # support.deribit.com Portfolio-Margin extended table


def deribit_params(
    price_range: float,
    range_up: float,
    range_down: float,
    annual_move: float,
    min_move: float,
    dampener_usd: float,
    pnl_offset: float,
    max_offsetable: float,
    name: str,
) -> ScenarioPMParams:
    """Deribit PM: 9 price buckets of +-price_range x {Up, Same, Down} + extended table (pme/simulate params)."""
    buckets = tuple(price_range * i / 4 for i in range(-4, 5))  # buckets_count 4 => 9 buckets incl. 0
    grid = ScenarioGrid.product(buckets, _UND) + ScenarioGrid.tails(_DERIBIT_EXT, UP)
    return ScenarioPMParams(
        name=name,
        grid=grid,
        vol_shock=VolShockParams(
            range_up=range_up,
            range_down=range_down,
            short_term_power=0.3,
            long_term_power=0.13,
            dte_floor_s=_DAY,
            short_term_inclusive=False,
            min_vol_up=0.5,
        ),  # min_volatility_for_shock_up 0.5
        contingency=ContingencyParams(roll_annual_move=annual_move, roll_min_move=min_move),
        mm_factor=0.8,
        im_factor=1.0,  # general.mm_factor 0.8
        gains_offset=pnl_offset,
        max_offsetable_pnl=max_offsetable,
        cross_underlying="offset",
        extended_factor=1.0,
        extended_dampener_usd=dampener_usd,
        extended_price_range=price_range,
    )


# BTC: Deribit OpenAPI pme/simulate example (2024-06); ETH: live pme/simulate response (2026-02); doc 3.2
DERIBIT_BTC = deribit_params(0.16, 0.5, 0.25, 0.075, 0.01, 100_000.0, 0.0, 0.0, "deribit-pm-btc")
DERIBIT_ETH = deribit_params(0.18, 0.4, 0.25, 0.05, 0.005, 200_000.0, 0.6, 2e7, "deribit-pm-eth")

# ---------------------------------------------------------------- Paradex portfolio margin
# docs.paradex.trade/risk/portfolio-margin: 24 scenarios, vol +40% / -22%, tails weight 0.16/|move|
PARADEX_GRID = (
    ScenarioGrid.product((-0.12, -0.08, -0.04, 0.0, 0.04, 0.08, 0.12), (UP, DOWN))
    + ScenarioGrid.product((-0.16, 0.16), (UP,))
    + ScenarioGrid.tails(_DERIBIT_EXT, UP, damp_const=0.16)
)
PARADEX_PM = ScenarioPMParams(
    name="paradex-pm",
    grid=PARADEX_GRID,
    vol_shock=VolShockParams(
        range_up=0.40,
        range_down=0.22,
        short_term_power=0.30,
        long_term_power=0.13,
        dte_floor_s=_DAY,
        short_term_inclusive=False,
    ),
    contingency=ContingencyParams(min_delta_net_pct=0.02, min_delta_hedged_pct=0.01),  # Min Delta Requirement
    mm_factor=0.5,
    im_factor=1.0,
)  # MMR = 50% x net portfolio IMR; funding and fee provisions not modelled

# ---------------------------------------------------------------- OKX portfolio margin (BTC/ETH, 2025 params)
# okx.com announcement 2025-01-02: MR1 +-0/4/8/12%, MR6 +-24%, MR4 annualised move 5%, MR7 multiplier tiers
OKX_GRID = ScenarioGrid.product((-0.12, -0.08, -0.04, 0.0, 0.04, 0.08, 0.12), (NONE,)) + ScenarioGrid.tails(
    (-0.24, 0.24), NONE
)
OKX_MR7_TIERS = (
    (10_000.0, 1.0),
    (70_000.0, 2.0),
    (170_000.0, 4.0),
    (300_000.0, 6.0),
    (470_000.0, 8.0),
    (700_000.0, 10.0),
    (math.inf, 12.0),
)
OKX_PM = ScenarioPMParams(
    name="okx-pm",
    grid=OKX_GRID,
    contingency=ContingencyParams(
        roll_annual_move=0.05,  # MR4 annualised move risk BTC/ETH 5% (2025)
        roll_min_move=0.006,
        roll_includes_spot=True,  # MR4 0.6% per delta-1 leg (OKX 2023-07) [INFERRED]
        min_charge_delta1_rate=0.003,  # MR7 raw 0.3% of derivative notional [INFERRED from OKX example]
        min_charge_tiers=OKX_MR7_TIERS,
    ),
    mm_factor=1.0,
    im_factor=1.3,
)  # IMR = 1.3 x MMR


# ---------------------------------------------------------------- registry
def _override(params: ScenarioPMParams, overrides: dict[str, Any]) -> ScenarioPMParams:
    """Apply overrides by field name to the params or to one of its nested parameter objects."""
    top, nested = {}, {"contingency": {}, "vol_shock": {}, "discount": {}, "skew": {}}
    top_fields = {f.name for f in dataclasses.fields(ScenarioPMParams)}
    for k, v in overrides.items():
        if k in top_fields:
            top[k] = v
            continue
        for sub in nested:
            obj = getattr(params, sub)
            if obj is not None and k in {f.name for f in dataclasses.fields(obj)}:
                nested[sub][k] = v
                break
        else:
            allowed = sorted(
                top_fields
                | {
                    f.name
                    for s in nested
                    if getattr(params, s) is not None
                    for f in dataclasses.fields(getattr(params, s))
                }
            )
            raise ValueError(f"override {k!r}: allowed {allowed}")
    for sub, kv in nested.items():
        if kv:
            top[sub] = dataclasses.replace(getattr(params, sub), **kv)
    return dataclasses.replace(params, **top) if top else params


def _factory(params: ScenarioPMParams, per_underlying: dict[str, ScenarioPMParams] | None = None, name=None):
    def make(**overrides: Any) -> ScenarioPM:
        per = {u: _override(p, overrides) for u, p in (per_underlying or {}).items()}
        return ScenarioPM(_override(params, overrides), per, name=name or params.name)

    return make


PRESETS: dict[str, ScenarioPMParams] = {
    p.name: p
    for p in (LYRA_PMRM_V1_MAINNET, LYRA_PMRM_V1_TEST, DERIVE_PM2, DERIBIT_BTC, DERIBIT_ETH, PARADEX_PM, OKX_PM)
}
for _name, _p in PRESETS.items():
    register(_name, _factory(_p))
# deribit-pm: BTC parameters for BTC (and any other underlying), ETH parameters for ETH
register("deribit-pm", _factory(DERIBIT_BTC, {"ETH": DERIBIT_ETH}, name="deribit-pm"))
