"""Derive PMRM_2 ("PM2") presets: the mainnet script and the golden-test defaults.

- `derive-pm2` (DERIVE_PM2): derivexyz/v2-core scripts/config-mainnet.sol at commit 7736900d,
  `getPMRM2Params` and `getDefaultPM2Scenarios` (33 scenarios, in the script's order), as committed.
  Caution (docs/margin-methods.md 2): the script sets longBaseStaticDiscount 1.05 (positive expiry values)
  and shortBaseStaticDiscount 0.95 (negative ones), the lenient direction in which a short option gains in the
  unshocked scenario; the golden test set uses 0.95 / 1.04. Whether the deployed values are swapped is not
  known. No published PM2 vector uses these values: the preset reproduces no vector by itself; its engine is
  the one `derive-pm2-golden` checks.
- `derive-pm2-golden` (DERIVE_PM2_GOLDEN): the default parameter set of the golden portfolio cases
  (test/risk-managers/unit-tests/PMRM_2/portfolio_cases, 43 of the 139 cases share it exactly), with their
  31-scenario grid. With each case's own parameters and scenarios (tests/margin/test_derive_pm2_vectors.py,
  protocols/margin/derive_vectors.py) it reproduces all 138 cases the upstream harness runs, every asserted
  figure (CollateralMTM, OptionMTM, each scenario PnL, MM, IM) within the harness tolerance of 1e-8
  (relative, or absolute below 1e-10 USD); the largest relative deviation is in README.md. test_67 is
  rejected as upstream's `setScenarios` rejects it (a skew scenario with a spot move).

Contract parameter names are accepted as overrides (aliases.DERIVE_PM2_ALIASES: mmFactor, volRangeUp,
longRateAddScale, MMPerpPercent...). Rates are floored at 0 for the option discount and the static factors
(PMRM_2 `_initialiseExpiries`), options are discounted with their expiry's rate, and collateral assets take
their CollateralParams from `collaterals` (none published for mainnet: pass them as an override).
"""

from __future__ import annotations

from defistress.protocols.margin.scenario_params import (
    ABS,
    DOWN,
    LINEAR,
    NONE,
    UP,
    ContingencyParams,
    ScenarioGrid,
    ScenarioPMParams,
    SkewShockParams,
    StaticDiscountParams,
    VolShockParams,
)

_DAY = 86_400.0
_CORE_MOVES = (0.135, 0.09, 0.045, 0.0, -0.045, -0.09, -0.135)


def _pm2_grid(vol_order: tuple[int, ...], tails: tuple[tuple[float, float], ...]) -> ScenarioGrid:
    """+18% Up, then +13.5 .. -13.5 % x vol_order, -18% Up, tails (spot multiplier, dampening), Linear, Abs."""
    return (
        ScenarioGrid.product((0.18,), (UP,))
        + ScenarioGrid.product(_CORE_MOVES, vol_order)
        + ScenarioGrid.product((-0.18,), (UP,))
        + ScenarioGrid(
            (tuple(m for m, _ in tails)), (UP,) * len(tails), tuple(d for _, d in tails), (True,) * len(tails)
        )
        + ScenarioGrid((1.0, 1.0), (LINEAR, ABS), (1.0, 1.0), (False, False))
    )


# scripts/config-mainnet.sol getDefaultPM2Scenarios: tails 0.1386/|move|, vol order Up, None, Down
DERIVE_PM2_GRID = _pm2_grid(
    (UP, NONE, DOWN),
    (
        (0.34, 0.21),
        (0.67, 0.42),
        (1.5, 0.2772),
        (2.0, 0.1386),
        (3.0, 0.0693),
        (4.0, 0.0462),
        (5.0, 0.03465),
        (6.0, 0.02772),
    ),
)
# golden portfolio cases (default set): tails 0.036/|move| up to +300%, vol order Down, None, Up
DERIVE_PM2_GOLDEN_GRID = _pm2_grid(
    (DOWN, NONE, UP),
    ((0.34, 0.036 / 0.66), (0.67, 0.036 / 0.33), (1.5, 0.072), (2.0, 0.036), (3.0, 0.018), (4.0, 0.012)),
)

DERIVE_PM2 = ScenarioPMParams(
    name="derive-pm2",
    grid=DERIVE_PM2_GRID,
    vol_shock=VolShockParams(
        range_up=0.5, range_down=0.3, short_term_power=0.3, long_term_power=0.13, dte_floor_s=_DAY, min_vol_up=0.4
    ),  # getPMRM2Params volShockParams
    skew=SkewShockParams(
        linear_base_cap=0.25,
        linear_c_base=-0.1,
        abs_base_cap=0.25,
        abs_c_base=-0.1,
        min_k_star=0.01,
        width_scale=4.0,
        vol_param_static=0.6,
        vol_param_scale=0.0,
    ),  # getPMRM2Params skewShockParams
    discount=StaticDiscountParams(
        long_base=1.05,
        long_rate_mult=0.0,
        long_rate_add=0.16,
        short_base=0.95,
        short_rate_mult=0.0,
        short_rate_add=0.16,
    ),  # getPMRM2Params marginParams, as committed (see the caution above)
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
    ),  # getPMRM2Params basisContParams, otherContParams
    mm_factor=0.8,
    im_factor=1.0,
    discount_option_prices=True,
    floor_rate_at_zero=True,
)

DERIVE_PM2_GOLDEN = ScenarioPMParams(
    name="derive-pm2-golden",
    grid=DERIVE_PM2_GOLDEN_GRID,
    vol_shock=VolShockParams(
        range_up=0.5, range_down=0.275, short_term_power=0.3, long_term_power=0.13, dte_floor_s=_DAY, min_vol_up=0.45
    ),  # VolShock: VOLRANGEUP, VOLRANGEDOWN, SHORTTERMPOWER, LONGTERMPOWER, DTE_FLOOR, MIN_VOL_EVAL_SHOCKED
    skew=SkewShockParams(
        linear_base_cap=0.15,
        linear_c_base=-0.05,
        abs_base_cap=0.15,
        abs_c_base=-0.05,
        min_k_star=0.01,
        width_scale=4.0,
        vol_param_static=0.6,
        vol_param_scale=-0.1,
    ),  # SkewShock
    discount=StaticDiscountParams(
        long_base=0.95,
        long_rate_mult=1.0,
        long_rate_add=0.08,
        short_base=1.04,
        short_rate_mult=0.5,
        short_rate_add=0.08,
    ),  # Margin: BASE_STATIC_DISCOUNT (long), BASE_STATIC_DISCOUNT_NEG (short), *_RATE_MULTSCALE, *_RATE_ADDSCALE
    contingency=ContingencyParams(
        option_pct_mm=0.003,
        option_pct_im=0.002,
        perp_pct_mm=0.015,
        perp_pct_im=0.005,
        conf_threshold=0.55,
        conf_margin=1.0,
        peg_threshold=0.98,
        peg_factor=2.0,
        basis_up=1.045,
        basis_down=0.955,
        basis_add=0.5,
        basis_mult=2.0,
    ),  # BasisContingency, OtherContingency
    mm_factor=0.8,
    im_factor=1.0,
    discount_option_prices=True,
    floor_rate_at_zero=True,
)
