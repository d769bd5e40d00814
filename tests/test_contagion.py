"""DebtRank and cascade depth on small networks computed by hand."""

import networkx as nx
import numpy as np
import pytest

from defistress.sim.analysis.contagion import cascade_depths, debtrank, exposure_impact, liability_devaluation


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


def test_debtrank_carries_an_issuers_depeg_to_the_holder_of_its_token():
    # maker (0) issues DAI that fell 4% below its peg, and writes nothing off (h0 = 0); lend (1) holds 60 of DAI
    # against 100 of capital: W[maker, lend] = 0.6, and lend starts with its own loss 0.01.
    # round 1: both distressed; maker passes max(0, 0.04) = 0.04, lend passes 0.01 to nobody:
    #          h_lend = 0.01 + 0.04 * 0.6 = 0.034; round 2: nobody is distressed.
    # values 0.5 / 0.5: R = 0.5 * (0 + 0.034) - 0.5 * (0 + 0.01) = 0.012
    w = np.array([[0, 0.6], [0, 0]])
    r, h = debtrank(w, np.array([0.5, 0.5]), np.array([0.0, 0.01]), devaluation=np.array([0.04, 0.0]))
    assert h == pytest.approx([0.0, 0.034])
    assert r == pytest.approx(0.012)
    # without the devaluation the same network loses nothing beyond the start (the old, write-offs-only reading)
    assert debtrank(w, np.array([0.5, 0.5]), np.array([0.0, 0.01]))[0] == 0.0


def test_liability_devaluation_is_the_deepest_fall_below_peg_of_any_token_issued():
    # cdp issues two tokens: one bottomed at 0.97 of its peg, the other never fell below (1.01): 3%
    dev = liability_devaluation({"cdp": ["A", "B"], "keeper": ["C"]}, {"A": 0.97, "B": 1.01, "C": 1.0})
    assert dev == {"cdp": pytest.approx(0.03), "keeper": 0.0}
