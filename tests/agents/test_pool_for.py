"""`Liquidator._pool_for` compares a pool's two tokens in both orders instead of building two sets (issue 14): the
same pool as the set comparison it replaced, kept here as the reference."""

from __future__ import annotations

from types import SimpleNamespace

from defistress.agents.liquidator import Liquidator


def test_a_pool_is_found_as_the_two_token_sets_find_it():
    """`_pool_for` compares the two orders of a pool's tokens: the pool the set comparison finds, for every pair of
    tokens (the same token twice too) and pools of one token twice."""
    tokens = ["ETH", "USDC", "BTC", "DAI"]
    pools = [SimpleNamespace(p=SimpleNamespace(token0=a, token1=b)) for a, b in
             [("ETH", "USDC"), ("USDC", "BTC"), ("DAI", "DAI"), ("BTC", "USDC"), ("ETH", "ETH")]]  # fmt: skip
    liq = SimpleNamespace(pools=pools)
    for sell in [*tokens, "WBTC"]:
        for buy in [*tokens, "WBTC"]:
            want = next((q for q in pools if {q.p.token0, q.p.token1} == {sell, buy}), None)
            assert Liquidator._pool_for(liq, sell, buy) is want
    assert Liquidator._pool_for(liq, "BTC", "USDC") is pools[1]  # the first of two that match
