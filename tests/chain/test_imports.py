"""`defistress import` against the local node: a book of a few hundred accounts opened on the deployed Aave is
imported over JSON-RPC, placed in a scenario, and the simulated market starts with exactly the on-chain positions and
health factors; oracle rounds written by a push-oracle agent come back in the bundled rounds format; a pair's
reserves; resumption, retries and the errors a user meets (wrong address, a block the RPC cannot serve)."""

from __future__ import annotations

import copy
import tomllib

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from defistress.protocols.evm.import_common import ChainImportError
from defistress.protocols.evm.snapshot import read_snapshot
from defistress.scenarios.loader import load
from defistress.scenarios.registry import builtin_path
from defistress.sim.cli.app import app
from defistress.sim.engine.model import StressModel
from defistress.sim.engine.replay import read_series
from defistress.sim.experiments.runs import run_scenario

from .chain_helpers import populate

N_ACCOUNTS = 300
runner = CliRunner()


def book_scenario(path, precision="aave-v3", duration="10m"):
    """A scenario whose market prices are the chain's and whose lending market takes every parameter from the book."""
    raw = copy.deepcopy(tomllib.loads(builtin_path("eth-crash").read_text()))
    raw["run"].update(duration=duration)
    raw["market"] = {
        "assets": [
            {"symbol": "WETH", "price": 2000.0, "volatility": 0.6},
            {"symbol": "WBTC", "price": 30000.0, "volatility": 0.5},
            {"symbol": "USDC", "peg": 1.0},
            {"symbol": "DAI", "peg": 1.0},
        ]
    }
    raw["shocks"] = []
    raw["oracles"] = [
        {"id": f"o-{s}", "kind": "fixed", "asset": s, "price": p}
        for s, p in (("WETH", 2000.0), ("WBTC", 30000.0), ("USDC", 1.0), ("DAI", 1.0))
    ]
    raw["venues"] = []
    raw["protocols"] = [
        {
            "id": "lend",
            "kind": "lending",
            "oracles": {s: f"o-{s}" for s in ("WETH", "WBTC", "USDC", "DAI")},
            "close_factor_rule": "aave-v3.0",
            "precision": precision,
            "assets": {s: {} for s in ("WETH", "WBTC", "USDC", "DAI")},
        }
    ]
    raw["agents"] = [
        {"kind": "book", "id": "book", "protocol": "lend", "file": str(path)},
        {"kind": "liquidator", "id": "liquidator", "count": 1, "capital_usd": 5_000_000.0},
    ]
    return raw


@pytest.fixture(scope="module")
def imported(node, chain, aave, checkpoint, tmp_path_factory):
    """Opened and imported once for the module (after the session's checkpoint, which the other tests return to);
    the snapshot keeps the chain's account data of the import block."""
    seeded, addrs = populate(aave, N_ACCOUNTS)
    out = tmp_path_factory.mktemp("book") / "book.parquet"
    r = runner.invoke(app, ["import", "aave-v3", "--rpc", node.url, "--pool", aave.pool.address, "--out", str(out)])
    assert r.exit_code == 0, r.output
    return seeded, addrs, read_snapshot(out)


def test_the_imported_book_is_what_the_chain_holds(chain, aave, imported):
    seeded, addrs, snap = imported
    m = snap.manifest
    assert m["chain_id"] == chain.chain_id and m["block_number"] > 0
    assert m["contracts"]["pool"] == aave.pool.address and m["contracts"]["oracle"] == aave.oracle.address
    by_symbol = snap.reserves
    for sym, r in aave.reserves.items():
        got, want = by_symbol[sym], r.params
        assert (got["ltv"], got["liquidation_threshold"], got["liquidation_bonus"], got["decimals"]) == (
            want.ltv,
            want.liquidation_threshold,
            want.liquidation_bonus,
            want.decimals,
        )
        assert got["debt_ceiling"] == int(want.debt_ceiling_usd * 100) and got["price_base"] == aave.price(sym)
    assert snap.emodes[1]["liquidation_threshold"] == 9500
    assert set(addrs) <= set(snap.accounts)  # plus the session's whale and the seeding lenders
    f = snap.frame.set_index(["account", "asset"])
    units = {s: 10**r.params.decimals for s, r in aave.reserves.items()}
    for k, a in enumerate(addrs):  # against the seeding market's mirror: scaled balances times the chain's indexes
        for j, s in enumerate(seeded.assets):
            coll = int((seeded._a[k, j] * seeded._inc[j] + 10**27 // 2) // 10**27)
            owed = int((seeded._d[k, j] * seeded._dbt[j] + 10**27 // 2) // 10**27)
            row = f.loc[(a, s)] if (a, s) in f.index else None
            assert (0 if row is None else int(row["collateral_raw"])) == coll
            assert (0 if row is None else int(row["debt_raw"])) == owed
            if row is not None:
                assert row["used_as_collateral"] == bool(seeded.collateral_enabled[k, j] and coll > 0)
                assert row["collateral"] == coll / units[s]
    emode = snap.frame.groupby("account")["emode"].first()
    assert sorted(set(emode[addrs])) == [0, 1] and (emode[addrs] == seeded.user_emode).all()


@pytest.mark.parametrize("precision", ["aave-v3", "float"])
def test_a_scenario_starts_with_exactly_the_on_chain_positions_and_health(imported, precision):
    seeded, addrs, snap = imported
    model = StressModel(load(book_scenario(snap.path, precision)), seed=1)
    m = model.protocols["lend"]
    rows = [snap.accounts.index(a) for a in addrs]
    f = snap.frame
    for j, s in enumerate(m.assets):
        want = np.zeros(len(snap.accounts))
        sub = f[f["asset"] == s]
        want[[snap.accounts.index(a) for a in sub["account"]]] = sub["collateral"].to_numpy()
        np.testing.assert_array_equal(m.collateral()[:, j], want)  # the same floats: raw / 10**decimals
    # the chain's getUserAccountData at the import block, as the snapshot recorded it
    acct = f.groupby("account").first().loc[addrs]
    hf = m.health()[rows]
    chain_hf = acct["health_factor"].to_numpy()
    coll_base = acct["total_collateral_base"].astype(float).to_numpy()
    debt_base = acct["total_debt_base"].astype(float).to_numpy()
    n_assets = (m.collateral()[rows] > 0).sum(axis=1) + (m.debt()[rows] > 0).sum(axis=1)
    fin = np.isfinite(chain_hf)
    rel = np.abs(hf[fin] - chain_hf[fin]) / chain_hf[fin]
    if precision == "aave-v3":
        # the contract's rounding, in float64: one base unit (1e-8 USD) per asset, hence the HF to 2 units in the
        # smaller of collateral and debt, and the same liquidation decision for every account
        assert (np.abs(m.account_usd()[0][rows] * 1e8 - coll_base) <= n_assets).all()
        assert (rel <= 1e-12 + 2.0 / np.minimum(coll_base, debt_base)[fin]).all(), rel.max()
        assert ((hf < 1) == (chain_hf < 1)).all()
    else:
        # float64 throughout: values within 1e-8 USD per asset, the HF within one basis point of the average threshold
        assert (np.abs(m.account_usd()[0][rows] - coll_base / 1e8) <= 1e-8 * n_assets + 1e-9).all()
        assert rel.max() <= 1.0 / 5000, rel.max()
    assert 10 < (chain_hf < 1).sum() < 60  # the book holds liquidatable accounts, as the seeding meant
    assert np.isinf(hf[~fin]).all()


def test_a_run_on_the_imported_book_records_the_snapshot(imported):
    _, _, snap = imported
    r = run_scenario(book_scenario(snap.path), seed=1)
    (s,) = r.manifest["snapshots"]
    assert (s["sha256"], s["block_number"], s["chain_id"]) == (snap.sha256, snap.manifest["block_number"], 31337)
    assert s["contracts"]["pool"] == snap.manifest["contracts"]["pool"]
    assert r.metrics["liquidations"] > 0 and r.metrics["conservation_ok"]  # the accounts below HF 1 are liquidated


# --- oracle rounds -----------------------------------------------------------------------------------------------
def test_a_push_oracle_writing_to_a_feed_reads_back_the_same_and_imports_in_the_bundled_format(node, chain, tmp_path):
    import mesa

    from defistress.agents.oracles import PushOracle
    from defistress.protocols.evm.artifacts import load_artifact
    from defistress.protocols.evm.feeds import FeedWriter

    writer = chain.accounts[0]
    feed = chain.deploy(load_artifact("RoundFeed"), 8, "ETH / USD", 5, 0, sender=writer)
    start = chain.timestamp() + 1
    rng = np.random.default_rng(3)
    path = 2000.0 * np.exp(np.cumsum(rng.normal(0, 0.004, 900)))  # 3 hours of 12-second blocks
    k = {"i": 0}
    oracle = PushOracle(mesa.Model(rng=1), "o", "ETH", lambda: path[k["i"]], lambda: path[k["i"]], 0.005, 3600.0)
    fw = FeedWriter(chain, feed, writer, start)
    oracle.listeners.append(fw)
    fw(oracle.price, 0.0)  # the first answer
    latest = chain.codec(feed, "latestRoundData")
    published = [(oracle.price, 0.0)]
    for i in range(1, len(path)):
        k["i"] = i
        before = chain.call(latest.prepared())
        if oracle.update(i, 12.0 * i) is not None:
            published.append((oracle.price, 12.0 * i))
            rid, answer, started, updated, answered = chain.call(latest.prepared())
            assert answer == fw.answer(oracle.price) and updated == started == start + 12 * i
            assert rid == answered == (5 << 64) + len(published)
        else:
            assert chain.call(latest.prepared()) == before  # no publication, no round
    assert len(published) > 10
    out = tmp_path / "rounds.csv"
    t0, t1 = start + 600, start + 12 * 800
    r = runner.invoke(
        app,
        [
            "import",
            "chainlink",
            "--rpc",
            node.url,
            "--feed",
            feed.address,
            "--from",
            str(t0),
            "--to",
            str(t1),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    raw = pd.read_csv(out, comment="#")
    want = [(fw.answer(p), start + int(s)) for p, s in published if t0 <= start + s <= t1]
    got_rounds = [(int(a), int(pd.Timestamp(t).timestamp())) for a, t in zip(raw["answer_raw"], raw["updated_at_utc"])]
    assert got_rounds == want
    got = read_series(out, "rounds", "chainlink_rounds")  # the replay layer reads the file as written
    assert got.close.tolist() == [int(a) / 10 ** int(d) for a, d in zip(raw["answer_raw"], raw["decimals"])]
    assert got.times.tolist() == [t for _, t in want]
    bundled = pd.read_csv(
        builtin_path("eth-crash").parents[1] / "historic" / "data" / "09c_steth_eth_chainlink_rounds_2023-03.csv",
        comment="#",
    )
    mine = pd.read_csv(out, comment="#")
    assert list(mine.columns[: len(bundled.columns)]) == list(bundled.columns)
    assert out.read_text().startswith("# event:")
    pq_out = tmp_path / "rounds.parquet"
    assert (
        runner.invoke(
            app,
            [
                "import",
                "chainlink",
                "--rpc",
                node.url,
                "--feed",
                feed.address,
                "--from",
                str(t0),
                "--to",
                str(t1),
                "--out",
                str(pq_out),
                "-q",
            ],
        ).exit_code
        == 0
    )
    assert read_series(pq_out, "rounds", "chainlink_rounds").close.tolist() == got.close.tolist()


def test_the_pairs_reserves_come_back(node, chain, uni, tmp_path):
    out = tmp_path / "pair.json"
    r = runner.invoke(app, ["import", "uniswap-v2", "--rpc", node.url, "--pair", uni.address, "--out", str(out)])
    assert r.exit_code == 0, r.output
    import json

    got = json.loads(out.read_text())
    r0, r1 = uni.reserves()
    assert (int(got["token0"]["reserve_raw"]), int(got["token1"]["reserve_raw"])) == (r0, r1)
    assert {got["token0"]["symbol"], got["token1"]["symbol"]} == {"TKA", "TKB"}


# --- errors, resumption, retries ---------------------------------------------------------------------------------
def test_clear_errors_for_a_wrong_address_or_a_block_the_rpc_cannot_serve(node, chain, aave, uni, tmp_path):
    from defistress.protocols.evm.import_aave import import_aave_v3

    out = tmp_path / "b.parquet"
    with pytest.raises(ChainImportError, match="no contract there on chain 31337"):
        import_aave_v3(node.url, chain.accounts[3], out)
    with pytest.raises(ChainImportError, match="not an Aave v3 Pool"):
        import_aave_v3(node.url, uni.address, out)
    with pytest.raises(ChainImportError, match="not an address"):
        import_aave_v3(node.url, "0x123", out)
    with pytest.raises(ChainImportError, match="beyond the head"):
        import_aave_v3(node.url, aave.pool.address, out, block=chain.block_number() + 10)
    chain.mine(80)  # the node keeps 64 states: block 1 is gone
    with pytest.raises(ChainImportError, match="cannot serve the state of block 1"):
        import_aave_v3(node.url, aave.pool.address, out, block=1)
    r = runner.invoke(app, ["import", "aave-v3", "--rpc", node.url, "--pool", chain.accounts[3], "--out", str(out)])
    assert r.exit_code == 2 and "no contract there" in r.output and "Traceback" not in r.output


def test_an_interrupted_import_resumes_and_ends_with_the_same_book(node, chain, aave, tmp_path, monkeypatch):
    import defistress.protocols.evm.import_aave as ia

    populate(aave, 60, seed=11)
    monkeypatch.setattr(ia, "USERS_PER_PART", 20)
    clean = tmp_path / "clean.parquet"
    ia.import_aave_v3(node.url, aave.pool.address, clean)
    block = read_snapshot(clean).manifest["block_number"]
    out = tmp_path / "book.parquet"

    def stop_after_two_parts(stage, done, total):
        if stage == "positions" and done >= 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ia.import_aave_v3(node.url, aave.pool.address, out, block=block, progress=stop_after_two_parts, chunk_blocks=7)
    work = tmp_path / "book.parquet.partial"
    assert len(list(work.glob("positions-*.parquet"))) == 2 and not out.exists()
    with pytest.raises(ChainImportError, match="unfinished import of another"):
        ia.import_aave_v3(node.url, aave.pool.address, out, block=block - 1)
    seen = []
    ia.import_aave_v3(node.url, aave.pool.address, out, block=block, progress=lambda *a: seen.append(a))
    assert not any(s == "events" for s, _, _ in seen)  # the users were already found
    assert not work.exists()
    pd.testing.assert_frame_equal(read_snapshot(out).frame, read_snapshot(clean).frame)


def test_rpc_requests_are_retried_with_exponential_backoff(node):
    from defistress.protocols.evm.rpc import Rpc, RpcError, RpcTransportError

    rpc = Rpc(node.url, retries=4, backoff=0.25)
    waits, failures = (
        [],
        iter(
            [
                RpcTransportError("x", "HTTP 429", 429),
                RpcError("eth_call", {"code": -32005, "message": "rate limit exceeded"}),
                RpcTransportError("x", "HTTP 503", 503),
            ]
        ),
    )
    real = rpc._post_once

    def flaky(payload):
        e = next(failures, None)
        if e is not None:
            raise e
        return real(payload)

    rpc._post_once, rpc.sleep = flaky, waits.append
    assert int(rpc.call("eth_chainId"), 16) == 31337
    assert waits == [0.25, 0.5, 1.0]
    rpc._post_once = lambda payload: (_ for _ in ()).throw(
        RpcError("eth_call", {"code": 3, "message": "execution reverted"})
    )
    with pytest.raises(RpcError):
        rpc.call("eth_call")  # a revert is an answer, not a hiccup: no retry
    assert waits == [0.25, 0.5, 1.0]
