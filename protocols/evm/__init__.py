"""The bridge to real contracts: a local Anvil node, Aave v3 and Uniswap v2 deployed from their npm artifacts,
fast JSON-RPC paths, the `evm` lending backend and the importers of real books and oracle rounds.

It lives beside the models and never inside one: no model module imports it (tests/test_layering.py). The node and
the contracts come from `make chain` (chain/package.json); nothing of them is committed. Import the submodules
(`from defistress.protocols.evm.node import AnvilNode`); the snapshot format (`.snapshot`) needs no web3.
"""
