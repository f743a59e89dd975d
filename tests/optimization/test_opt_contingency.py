"""N-1 screening: LODF post-outage flows against a DC power flow re-solved without the branch; re-dispatch secures."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from optimization.contingency import screen_n1


def _dc_flows_without(d: dict, pg_bus: np.ndarray, out: int) -> np.ndarray:
    """Branch flows (MW) of a dense DC power flow with branch position ``out`` removed, same injections."""
    nb, nl = d["bus_ids"].size, d["li"].size
    keep = np.arange(nl) != out
    bw = d["base"] * d["b"] * keep
    B = np.zeros((nb, nb))
    for k in np.flatnonzero(keep):
        i, j = d["f"][k], d["t"][k]
        B[i, i] += bw[k]
        B[j, j] += bw[k]
        B[i, j] -= bw[k]
        B[j, i] -= bw[k]
    shift_inj = np.zeros(nb)  # phase shifters act as injections b * shift at their ends
    np.add.at(shift_inj, d["f"], -bw * d["shift"])
    np.add.at(shift_inj, d["t"], bw * d["shift"])
    p = pg_bus - d["demand"] - shift_inj
    theta = np.zeros(nb)
    theta[1:] = np.linalg.solve(B[1:, 1:], p[1:])
    return np.where(keep, bw * (theta[d["f"]] - theta[d["t"]] - d["shift"]), 0.0)


@pytest.fixture(scope="module")
def case39():
    return screen_n1("case39", redispatch_worst=3)


def test_lodf_post_outage_flows_equal_a_re_solved_power_flow(case39) -> None:
    d, base = case39.base.data, case39.base
    pg_bus = np.bincount(d["gbus"], base.generators["p_mw"].to_numpy(), d["bus_ids"].size)
    flow = base.branches["p_mw"].to_numpy()
    islanding = set(case39.islanding)
    checked = 0
    for k in range(d["li"].size):
        if int(d["li"][k]) in islanding:
            continue
        post = flow + case39.lodf[:, k] * flow[k]
        post[k] = 0.0
        np.testing.assert_allclose(post, _dc_flows_without(d, pg_bus, k), atol=1e-6 * np.abs(flow).max())
        checked += 1
    assert checked > 30


def test_every_overload_is_found_and_islanding_outages_really_split_the_network(case39) -> None:
    d, base = case39.base.data, case39.base
    pg_bus = np.bincount(d["gbus"], base.generators["p_mw"].to_numpy(), d["bus_ids"].size)
    rate = d["rate"]
    expected = set()
    nb, nl = d["bus_ids"].size, d["li"].size
    for k in range(nl):
        keep = np.arange(nl) != k
        graph = sp.coo_array((np.ones(keep.sum()), (d["f"][keep], d["t"][keep])), shape=(nb, nb))
        split = connected_components(graph, directed=False)[0] > 1
        assert split == (int(d["li"][k]) in case39.islanding)
        if split:
            continue
        post = _dc_flows_without(d, pg_bus, k)
        for m in np.flatnonzero((rate > 0) & (np.abs(post) > rate + 1e-6)):
            expected.add((int(d["li"][k]), int(d["li"][m])))
    found = set(zip(case39.overloads["contingency_branch"].to_list(), case39.overloads["monitored_branch"].to_list()))
    assert found == expected and len(found) > 5
    worst = case39.contingencies.row(0, named=True)
    assert worst["worst_loading_pct"] == pytest.approx(case39.overloads["loading_pct"].max())


def test_re_dispatch_secures_the_worst_outages_at_a_cost(case39) -> None:
    rd = case39.redispatch
    assert (
        rd.height == 3
        and rd["contingency_branch"].to_list() == case39.contingencies["contingency_branch"].head(3).to_list()
    )
    assert (rd["status"] == "secured").all() and (rd["overloads_after"] == 0).all()
    assert (rd["secured_cost_per_h"] > rd["base_cost_per_h"]).all()
    d = case39.base.data
    for branch, sec in case39.secured.items():
        k = int(np.flatnonzero(d["li"] == branch)[0])
        pg_bus = np.bincount(d["gbus"], sec.generators["p_mw"].to_numpy(), d["bus_ids"].size)
        post = _dc_flows_without(d, pg_bus, k)
        assert (np.abs(post)[d["rate"] > 0] <= d["rate"][d["rate"] > 0] + 1e-4).all()


def test_an_emergency_rating_factor_relaxes_the_screen() -> None:
    loose = screen_n1("case39", redispatch_worst=0, rating_factor=1.2)
    strict = screen_n1("case39", redispatch_worst=0)
    assert 0 < loose.overloads.height < strict.overloads.height and loose.redispatch.height == 0
