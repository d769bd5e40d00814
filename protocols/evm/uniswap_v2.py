"""Uniswap v2 core (npm @uniswap/v2-core 1.0.1) on a local chain: factory, pair creation and funding, swaps.

The pair is used directly (the router lives in v2-periphery): a swap transfers `amount_in` to the pair, then calls
`pair.swap(amount0Out, amount1Out, to, b"")` with the output of UniswapV2Library.getAmountOut (0.3% fee, floor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import Web3

from defistress.protocols.evm.artifacts import AAVE_PACKAGE, UNISWAP_V2_PACKAGE, load_artifact
from defistress.protocols.evm.rpc import Chain


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut: amountIn·997·R_out / (R_in·1000 + amountIn·997), floored."""
    if amount_in <= 0 or reserve_in <= 0 or reserve_out <= 0:
        raise ValueError("amount_in and both reserves must be > 0")
    with_fee = amount_in * 997
    return (with_fee * reserve_out) // (reserve_in * 1000 + with_fee)


@dataclass
class UniswapV2Pair:
    chain: Chain
    pair: Any  # UniswapV2Pair handle
    token0: Any  # ERC20 handles in the pair's order (token0 < token1 by address)
    token1: Any

    @property
    def address(self) -> str:
        return str(self.pair.address)

    def reserves(self) -> tuple[int, int]:
        r0, r1, _ts = self.chain.call(self.pair.functions.getReserves())
        return int(r0), int(r1)

    def _side(self, token_in: str) -> tuple[Any, bool]:
        a = Web3.to_checksum_address(token_in)
        if a == self.token0.address:
            return self.token0, True
        if a == self.token1.address:
            return self.token1, False
        raise ValueError(f"{token_in} is not a token of pair {self.address}")

    def quote(self, token_in: str, amount_in: int) -> int:
        r0, r1 = self.reserves()
        _, zero_in = self._side(token_in)
        return get_amount_out(amount_in, r0, r1) if zero_in else get_amount_out(amount_in, r1, r0)

    def swap(
        self, trader: str, token_in: str, amount_in: int, mint: bool = False, amount_out: int | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Sell `amount_in` of `token_in` from `trader` (minted first if `mint`); returns (amount out, receipt)."""
        t_in, zero_in = self._side(token_in)
        if mint:
            self.chain.transact(t_in.functions.mint(trader, amount_in), trader)
        if amount_out is None:
            amount_out = self.quote(token_in, amount_in)
        self.chain.transact(t_in.functions.transfer(self.pair.address, amount_in), trader)
        a0, a1 = (0, amount_out) if zero_in else (amount_out, 0)
        return amount_out, self.chain.transact(self.pair.functions.swap(a0, a1, trader, b""), trader)

    def add_liquidity(self, provider: str, amount0: int, amount1: int, mint: bool = True) -> dict[str, Any]:
        """Send both tokens to the pair and mint LP tokens to `provider`."""
        for tok, amt in ((self.token0, amount0), (self.token1, amount1)):
            if mint:
                self.chain.transact(tok.functions.mint(provider, amt), provider)
            self.chain.transact(tok.functions.transfer(self.pair.address, amt), provider)
        return self.chain.transact(self.pair.functions.mint(provider), provider)


@dataclass
class UniswapV2:
    chain: Chain
    factory: Any

    def create_pair(
        self, token_a: Any, token_b: Any, amount_a: int = 0, amount_b: int = 0, provider: str | None = None
    ) -> UniswapV2Pair:
        """Create the pair of two MintableERC20 handles; with amounts, mint them to `provider` and add liquidity."""
        sender = provider or self.chain.accounts[0]
        self.chain.transact(self.factory.functions.createPair(token_a.address, token_b.address), sender)
        addr = self.chain.call(self.factory.functions.getPair(token_a.address, token_b.address))
        pair = self.chain.at(load_artifact("UniswapV2Pair", UNISWAP_V2_PACKAGE), addr)
        a_first = self.chain.call(pair.functions.token0()) == token_a.address
        p = UniswapV2Pair(self.chain, pair, *((token_a, token_b) if a_first else (token_b, token_a)))
        if amount_a and amount_b:
            p.add_liquidity(sender, *((amount_a, amount_b) if a_first else (amount_b, amount_a)))
        return p


def deploy_uniswap_v2(chain: Chain, fee_to_setter: str | None = None, sender: str | None = None) -> UniswapV2:
    sender = sender or chain.accounts[0]
    art = load_artifact("UniswapV2Factory", UNISWAP_V2_PACKAGE)
    return UniswapV2(chain, chain.deploy(art, fee_to_setter or sender, sender=sender))


def deploy_mintable_erc20(chain: Chain, symbol: str, decimals: int, sender: str | None = None) -> Any:
    """Aave's MintableERC20 mock (anyone may mint)."""
    art = load_artifact("MintableERC20", AAVE_PACKAGE)
    return chain.deploy(art, symbol, symbol, decimals, sender=sender or chain.accounts[0])
