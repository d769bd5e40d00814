"""The constant-product pool against a Uniswap v2 pair (npm @uniswap/v2-core 1.0.1): for random reserves and trade
sizes in both directions, the pair's output and reserves are UniswapV2Library.getAmountOut to the base unit (0.3% fee,
floor), and the float pool agrees within one base unit plus float64 precision (reserves: one unit per swap so far)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defistress.protocols.evm.differential import Deviations, compare_swaps

DEV = Deviations()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    extra0=st.integers(0, 10**9),  # whole tokens added to the pair's reserves of token0
    extra1=st.integers(0, 10**9),  # and of token1
    swaps=st.lists(st.tuples(st.integers(0, 1), st.floats(1e-9, 0.5)), min_size=1, max_size=5),
)
def test_swaps_on_the_pool_equal_the_pairs(chain, uni, checkpoint, extra0, extra1, swaps):
    checkpoint.restore()
    trader = chain.accounts[7]
    for tok, extra in ((uni.token0, extra0), (uni.token1, extra1)):
        if extra:  # donate to the pair, then sync: the reserves become its balances
            units = extra * 10 ** chain.call(tok.functions.decimals())
            chain.transact(tok.functions.mint(uni.address, units), trader)
    chain.transact(uni.pair.functions.sync(), trader)
    r0, r1 = uni.reserves()
    sized = [(side, max(int(share * (r0, r1)[side]), 1)) for side, share in swaps]  # a share of the input reserve
    compare_swaps(uni, trader, sized, DEV)
    assert DEV.cases["swaps"] > 0
