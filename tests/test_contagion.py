"""DebtRank and cascade depth on small networks computed by hand."""

import networkx as nx
import numpy as np
import pytest

from defistress.sim.analysis.contagion import cascade_depths, debtrank, exposure_impact


def test_debtrank_chain_of_three_passes_distress_once():
    # A -> B with impact 0.5, B -> C with impact 0.4; values equal (1/3 each); A fully distressed.
    # round 1: h_B = 0 + 1.0*0.5 = 0.5; A becomes inactive, B distressed
    # round 2: h_C = 0 + 0.5*0.4 = 0.2; B inactive, C distressed
    # round 3: C passes nothing (no out-edges). R = (1 + 0.5 + 0.2)/3 - 1/3 = 0.7/3
    w = np.array([[0, 0.5, 0], [0, 0, 0.4], [0, 0, 0]])
    v = np.full(3, 1 / 3)
    r, h = debtrank(w, v, np.array([1.0, 0, 0]))
    assert h == pytest.approx([1.0, 0.5, 0.2])
    assert r == pytest.approx(0.7 / 3)


def test_debtrank_cycle_does_not_count_distress_twice():
    # A <-> B both with impact 1. A starts at 0.6. round 1: h_B = 0.6 (A inactive).
    # round 2: B passes 0.6 to A, but h_A = min(1, 0.6 + 0.6) = 1.0; B inactive. Round 3: A is
    # inactive, so nothing more moves. Values 0.5/0.5: R = (1.0 + 0.6)/2 - 0.3 = 0.5
    w = np.array([[0, 1.0], [1.0, 0]])
    r, h = debtrank(w, np.array([0.5, 0.5]), np.array([0.6, 0.0]))
    assert h == pytest.approx([1.0, 0.6])
    assert r == pytest.approx(0.5)


def test_debtrank_without_exposure_edges_has_no_systemic_loss():
    r, h = debtrank(np.zeros((3, 3)), np.full(3, 1 / 3), np.array([0.8, 0, 0]))
    assert r == 0.0
    assert h == pytest.approx([0.8, 0, 0])


def test_exposure_impact_is_exposure_over_capital_capped_at_one():
    # lend holds 30 USD of cdp's stablecoin against 100 of capital: W[cdp, lend] = 0.3;
    # perps holds 500 of it against 100 of capital: capped at 1.
    names, w = exposure_impact(
        nx.MultiDiGraph(),
        {("lend", "cdp"): 30.0, ("perps", "cdp"): 500.0},
        {"cdp": 50.0, "lend": 100.0, "perps": 100.0},
    )
    i = {n: k for k, n in enumerate(names)}
    assert w[i["cdp"], i["lend"]] == pytest.approx(0.3)
    assert w[i["cdp"], i["perps"]] == 1.0
    assert w[i["lend"], i["cdp"]] == 0.0


def test_cascade_depth_counts_hops_along_loss_carrying_edges():
    g = nx.MultiDiGraph()
    for n, t in [
        ("asset:ETH", "asset"),
        ("asset:DAI", "asset"),
        ("protocol:cdp", "protocol"),
        ("protocol:lend", "protocol"),
        ("protocol:island", "protocol"),
    ]:
        g.add_node(n, type=t)
    g.add_edge("asset:ETH", "protocol:cdp", key="collateral_of")
    g.add_edge("protocol:cdp", "asset:DAI", key="issues")
    g.add_edge("asset:DAI", "protocol:lend", key="collateral_of")
    d = cascade_depths(g, "ETH", ["cdp", "lend", "island"])
    assert d == {"cdp": 1, "lend": 3, "island": None}
