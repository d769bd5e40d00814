"""Published scenario-grid portfolio margin methodologies as ScenarioPM presets, registered by name.

Sources are in docs/margin-methods.md (sections 1-4) and the files each block names; the Derive PM2 presets
are in presets_derive.py. `get_model("derive-pm2", im_factor=1.1)` overrides any ScenarioPMParams field or any
field of its contingency / vol_shock / discount / skew parameters by name, by dotted path
("discount.floor_rate_at_zero") or by the source's own name (aliases.py: rateAddScale, mmFactor, pnl_offset...).

Published vectors reproduced (tests/margin): `lyra-pmrm-v1-test` with the Lyra unit-test overrides
(rateAddScale 0.12, confMargin 0.4, basePercent = perpPercent 0.025) reproduces the hand check of
docs/margin-methods.md 1.5 and the PMRM v1 portfolio cases (test-cases-portfolio-pm.json, integer MM/IM, see
README.md for the count); `derive-pm2-golden` reproduces the PM2 golden cases (presets_derive.py); the other
presets are checked against the published worked examples named in tests/margin/test_presets_pm.py.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from defistress.protocols.margin.aliases import DERIBIT_ALIASES, DERIVE_PM2_ALIASES, LYRA_PMRM_V1_ALIASES
from defistress.protocols.margin.presets_derive import DERIVE_PM2, DERIVE_PM2_GOLDEN
from defistress.protocols.margin.registry import register
from defistress.protocols.margin.scenario_params import (
    DOWN,
    NONE,
    UP,
    ContingencyParams,
    ScenarioGrid,
    ScenarioPMParams,
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
# lyra-finance/v2-core test/config-test.sol getDefaultScenarios: 21 = {+15..-15 step 5} x {Up,None,Down}, in its order
LYRA_V1_TEST_GRID = ScenarioGrid.product((0.15, 0.10, 0.05, 0.0, -0.05, -0.10, -0.15), _UND)

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
)  # test/config-test.sol getPMRMParams. With rateAddScale 0.12, confMargin 0.4, basePercent = perpPercent 0.025
# and exact=True it reproduces the 44 published PMRM v1 portfolio cases (integer MM/IM, test_lyra_v1_vectors.py)

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
_NESTED = ("contingency", "vol_shock", "discount", "skew")


def _resolve(params: ScenarioPMParams, key: str, aliases: dict[str, str]) -> tuple[str | None, str]:
    """(nested object or None for top level, field) of an override key: a field name, a dotted path
    ('discount.floor_rate_at_zero') or one of the preset's source names (aliases)."""
    path = aliases.get(key, key)
    if "." in path:
        sub, name = path.split(".", 1)
        obj = getattr(params, sub, None) if sub in _NESTED else None
        if obj is not None and name in {f.name for f in dataclasses.fields(obj)}:
            return sub, name
        raise ValueError(f"override {key!r}: no field {path!r}; allowed {_allowed(params, aliases)}")
    if path in {f.name for f in dataclasses.fields(ScenarioPMParams)}:
        return None, path
    for sub in _NESTED:
        obj = getattr(params, sub)
        if obj is not None and path in {f.name for f in dataclasses.fields(obj)}:
            return sub, path
    raise ValueError(f"override {key!r}: allowed {_allowed(params, aliases)}")


def _allowed(params: ScenarioPMParams, aliases: dict[str, str]) -> list[str]:
    names = {f.name for f in dataclasses.fields(ScenarioPMParams)}
    for sub in _NESTED:
        if getattr(params, sub) is not None:
            names |= {f.name for f in dataclasses.fields(getattr(params, sub))}
    return sorted(names | set(aliases))


def apply_overrides(
    params: ScenarioPMParams, overrides: dict[str, Any], aliases: dict[str, str] | None = None
) -> ScenarioPMParams:
    """Apply overrides by field name, dotted path or source name (aliases) to the params or a nested object."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {sub: {} for sub in _NESTED}
    for k, v in overrides.items():
        sub, name = _resolve(params, k, aliases or {})
        (top if sub is None else nested[sub])[name] = v
    for sub, kv in nested.items():
        if kv:
            top[sub] = dataclasses.replace(getattr(params, sub), **kv)
    return dataclasses.replace(params, **top) if top else params


def _factory(
    params: ScenarioPMParams,
    per_underlying: dict[str, ScenarioPMParams] | None = None,
    name: str | None = None,
    aliases: dict[str, str] | None = None,
) -> Callable[..., ScenarioPM]:
    def make(**overrides: Any) -> ScenarioPM:
        per = {u: apply_overrides(p, overrides, aliases) for u, p in (per_underlying or {}).items()}
        return ScenarioPM(apply_overrides(params, overrides, aliases), per, name=name or params.name)

    return make


PRESETS: dict[str, ScenarioPMParams] = {
    p.name: p
    for p in (
        LYRA_PMRM_V1_MAINNET,
        LYRA_PMRM_V1_TEST,
        DERIVE_PM2,
        DERIVE_PM2_GOLDEN,
        DERIBIT_BTC,
        DERIBIT_ETH,
        PARADEX_PM,
        OKX_PM,
    )
}
#: source parameter names accepted as overrides, per preset
PRESET_ALIASES: dict[str, dict[str, str]] = {
    "lyra-pmrm-v1": LYRA_PMRM_V1_ALIASES,
    "lyra-pmrm-v1-test": LYRA_PMRM_V1_ALIASES,
    "derive-pm2": DERIVE_PM2_ALIASES,
    "derive-pm2-golden": DERIVE_PM2_ALIASES,
    "deribit-pm-btc": DERIBIT_ALIASES,
    "deribit-pm-eth": DERIBIT_ALIASES,
    "deribit-pm": DERIBIT_ALIASES,
}
for _name, _p in PRESETS.items():
    register(_name, _factory(_p, aliases=PRESET_ALIASES.get(_name)))
# deribit-pm: BTC parameters for BTC (and any other underlying), ETH parameters for ETH
register("deribit-pm", _factory(DERIBIT_BTC, {"ETH": DERIBIT_ETH}, name="deribit-pm", aliases=DERIBIT_ALIASES))
