"""The sources' own parameter names, as aliases of ScenarioPMParams fields, per preset family.

`get_model("derive-pm2", mmFactor=0.8, volRangeDown=0.275)` and `get_model("lyra-pmrm-v1", rateAddScale=0.12)`
accept the contract's names; each maps to a dotted path of the params object (e.g. "discount.long_rate_add").
Units are the contract's where they differ: `dteFloor` is in seconds, as in the contracts (the project field
`vol_shock.dte_floor_s` is seconds too); every other value is a plain number (1e18 fixed point / 1e18).

Sources: derivexyz/v2-core src/interfaces/IPMRMLib_2.sol (PM2 structs), IPMRMLib.sol (PMRM v1 structs);
Deribit `private/pme/simulate` parameter names (docs/margin-methods.md 3.2).
"""

from __future__ import annotations

_VOL_SHOCK = {
    "volRangeUp": "vol_shock.range_up",
    "volRangeDown": "vol_shock.range_down",
    "shortTermPower": "vol_shock.short_term_power",
    "longTermPower": "vol_shock.long_term_power",
    "dteFloor": "vol_shock.dte_floor_s",
}
_BASIS = {
    "scenarioSpotUp": "contingency.basis_up",
    "scenarioSpotDown": "contingency.basis_down",
    "basisContAddFactor": "contingency.basis_add",
    "basisContMultFactor": "contingency.basis_mult",
}
_OTHER = {
    "pegLossThreshold": "contingency.peg_threshold",
    "pegLossFactor": "contingency.peg_factor",
    "confThreshold": "contingency.conf_threshold",
    "confMargin": "contingency.conf_margin",
}

#: derivexyz/v2-core IPMRMLib_2 (VolShockParameters, MarginParameters, BasisContingencyParameters,
#: OtherContingencyParameters, SkewShockParameters)
DERIVE_PM2_ALIASES: dict[str, str] = {
    **_VOL_SHOCK,
    "minVolUpShock": "vol_shock.min_vol_up",
    "imFactor": "im_factor",
    "mmFactor": "mm_factor",
    "shortRateMultScale": "discount.short_rate_mult",
    "longRateMultScale": "discount.long_rate_mult",
    "shortRateAddScale": "discount.short_rate_add",
    "longRateAddScale": "discount.long_rate_add",
    "shortBaseStaticDiscount": "discount.short_base",
    "longBaseStaticDiscount": "discount.long_base",
    **_BASIS,
    **_OTHER,
    "MMPerpPercent": "contingency.perp_pct_mm",
    "IMPerpPercent": "contingency.perp_pct_im",
    "MMOptionPercent": "contingency.option_pct_mm",
    "IMOptionPercent": "contingency.option_pct_im",
    "linearBaseCap": "skew.linear_base_cap",
    "absBaseCap": "skew.abs_base_cap",
    "linearCBase": "skew.linear_c_base",
    "absCBase": "skew.abs_c_base",
    "minKStar": "skew.min_k_star",
    "widthScale": "skew.width_scale",
    "volParamStatic": "skew.vol_param_static",
    "volParamScale": "skew.vol_param_scale",
}

#: derivexyz/v2-core IPMRMLib (PMRM v1: VolShockParameters, MarginParameters, BasisContingencyParameters,
#: OtherContingencyParameters)
LYRA_PMRM_V1_ALIASES: dict[str, str] = {
    **_VOL_SHOCK,
    "imFactor": "im_factor",
    "baseStaticDiscount": "discount.long_base",
    "rateMultScale": "discount.long_rate_mult",
    "rateAddScale": "discount.long_rate_add",
    **_BASIS,
    **_OTHER,
    "basePercent": "contingency.base_pct_mm",
    "perpPercent": "contingency.perp_pct_mm",
    "optionPercent": "contingency.option_pct_mm",
}

#: Deribit portfolio margin simulator (`private/pme/simulate` response `parameters`)
DERIBIT_ALIASES: dict[str, str] = {
    "volatility_range_up": "vol_shock.range_up",
    "volatility_range_down": "vol_shock.range_down",
    "short_term_vega_power": "vol_shock.short_term_power",
    "long_term_vega_power": "vol_shock.long_term_power",
    "min_volatility_for_shock_up": "vol_shock.min_vol_up",
    "extended_table_factor": "extended_factor",
    "extended_dampener": "extended_dampener_usd",
    "pnl_offset": "gains_offset",
    "annualised_move_risk": "contingency.roll_annual_move",
    "min_annualised_move": "contingency.roll_min_move",
}
