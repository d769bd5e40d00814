"""Fixtures of the chain tests: one Anvil node on 127.0.0.1 (free port) and one Aave v3 + Uniswap v2 deployment per
pytest run, reset after every test with evm_snapshot / evm_revert; the node is stopped at the end of the session.

All tests under tests/chain run on one xdist worker (group "chain", `--dist loadgroup` in the Makefile), so a run
starts one node and deploys once. Without the npm tooling (`make chain`: node >= 20 and npm) they are not run one by
one into a wall of errors: they are replaced by ONE failing item that says what is missing and how to install it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from defistress.protocols.evm.artifacts import (
    AAVE_PACKAGE,
    INSTALL_HINT,
    SOLC_PACKAGE,
    UNISWAP_V2_PACKAGE,
    MissingNodeModules,
    find_node_modules,
)
from defistress.protocols.evm.node import find_anvil

from .chain_helpers import session_reserves

HERE = Path(__file__).parent
E18 = 10**18


def tooling_problem() -> str | None:
    """What of the chain tooling is missing, or None."""
    try:
        find_anvil()
        for pkg in (AAVE_PACKAGE, UNISWAP_V2_PACKAGE, SOLC_PACKAGE):
            find_node_modules(pkg)
    except MissingNodeModules as exc:
        return str(exc)
    if shutil.which("node") is None:
        return f"`node` is not on PATH. {INSTALL_HINT}"
    return None


class ChainToolingMissing(pytest.Item):
    """Stands for every chain test when the tooling is missing: one failure, one message."""

    def __init__(self, *, message: str, **kwargs):
        super().__init__(**kwargs)
        self.message = message

    def runtest(self) -> None:
        raise RuntimeError(self.message)

    def repr_failure(self, excinfo, style=None) -> str:
        return self.message

    def reportinfo(self):
        return self.path, 0, "chain tooling"


def pytest_collection_modifyitems(session, config, items):
    chain_items = [i for i in items if HERE in Path(str(i.path)).parents]
    if not chain_items:
        return
    problem = tooling_problem()
    if problem is None:
        for item in chain_items:
            item.add_marker(pytest.mark.xdist_group("chain"))
        return
    config.hook.pytest_deselected(items=chain_items)
    keep = [i for i in items if i not in chain_items]
    message = f"{len(chain_items)} chain tests cannot run: {problem}"
    missing = ChainToolingMissing.from_parent(chain_items[0].parent, name="chain_tooling_installed", message=message)
    items[:] = [*keep, missing]


# --- the node and the deployments -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def node():
    from defistress.protocols.evm.node import AnvilNode

    with AnvilNode(auto_impersonate=True) as n:
        yield n


@pytest.fixture(scope="session")
def chain(node):
    from defistress.protocols.evm.rpc import Chain

    c = Chain(node.url)
    c.freeze_time()  # no interest accrues between transactions unless a test moves the clock
    yield c
    c.close()


@pytest.fixture(scope="session")
def aave(chain):
    from defistress.protocols.evm.aave import default_emodes, deploy_aave

    m = deploy_aave(chain, session_reserves(), default_emodes())
    whale = chain.accounts[9]
    for sym, amount in (("WETH", 1000), ("USDC", 5_000_000), ("DAI", 5_000_000)):
        m.supply(sym, whale, m.reserves[sym].units(amount))
    return m


@pytest.fixture(scope="session")
def uni(chain):
    from defistress.protocols.evm.uniswap_v2 import deploy_mintable_erc20, deploy_uniswap_v2

    a = deploy_mintable_erc20(chain, "TKA", 18)
    b = deploy_mintable_erc20(chain, "TKB", 6)
    return deploy_uniswap_v2(chain).create_pair(a, b, 1_000 * E18, 2_000_000 * 10**6)


@pytest.fixture(scope="session")
def checkpoint(chain, aave, uni):
    from defistress.protocols.evm.rpc import Checkpoint

    return Checkpoint(chain)


@pytest.fixture(autouse=True)
def _back_to_the_checkpoint(request):
    """Tests that touch the session chain start from the post-deployment state and leave it so."""
    if not {"chain", "aave", "uni", "checkpoint"} & set(request.fixturenames):
        yield
        return
    cp = request.getfixturevalue("checkpoint")
    yield
    cp.restore()
