"""DC-OPF against MATPOWER's reference optima, LMPs against pandapower and against finite differences."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from optimization.dcopf import REFERENCE_OBJECTIVES, build_dcopf, load_case, solve_dcopf
from optimization.errors import InfeasibleError


@pytest.mark.parametrize("case", ["case9", "case14", "case57", "case118", "case300"])
def test_objective_matches_matpower_reference(case: str) -> None:
    res = solve_dcopf(case)
    assert res.objective == pytest.approx(REFERENCE_OBJECTIVES[case], rel=1e-6)
    # dispatch respects limits and balances demand
    g = res.generators
    assert ((g["p_mw"] >= g["pmin_mw"] - 1e-6) & (g["p_mw"] <= g["pmax_mw"] + 1e-6)).all()
    assert g["p_mw"].sum() == pytest.approx(res.buses["demand_mw"].sum(), rel=1e-8)
    b = res.branches.filter(b_lim := (res.branches["rate_a_mw"] > 0))
    assert (b["p_mw"].abs() <= b["rate_a_mw"] + 1e-6).all()


def test_lmps_equal_pandapower_rundcopp_on_case57() -> None:
    import pandapower as pp
    import pandapower.networks as pn

    net = pn.case57()
    ours = solve_dcopf(copy.deepcopy(net))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.rundcopp(net)
    ref = net.res_bus.sort_index()["lam_p"].to_numpy()
    np.testing.assert_allclose(ours.buses["lmp"].to_numpy(), ref, rtol=1e-5, atol=1e-4)


def test_lmps_are_marginal_costs_under_congestion() -> None:
    ppc = copy.deepcopy(load_case("case9"))
    # tighten the line out of bus 8's generator so the network congests and prices separate
    ppc["branch"][:, 5] = np.where(ppc["branch"][:, 5] > 0, ppc["branch"][:, 5], 0)
    ppc["branch"][0, 5] = 60.0
    res = solve_dcopf(ppc)
    lmp = res.buses["lmp"].to_numpy()
    assert lmp.max() - lmp.min() > 1.0  # congestion separates prices
    k = int(np.argmax(lmp))
    bumped = copy.deepcopy(ppc)
    row = np.flatnonzero(bumped["bus"][:, 0].astype(int) == int(res.buses["bus"][k]))[0]
    bumped["bus"][row, 2] += 0.01
    delta = (solve_dcopf(bumped).objective - res.objective) / 0.01
    assert delta == pytest.approx(lmp[k], rel=1e-3)


def test_piecewise_linear_costs_bound_the_quadratic_optimum_from_above() -> None:
    quad = solve_dcopf("case14").objective
    coarse = solve_dcopf("case14", cost_model="pwl", pwl_segments=4).objective
    fine = solve_dcopf("case14", cost_model="pwl", pwl_segments=40).objective
    assert quad <= fine <= coarse
    assert fine == pytest.approx(quad, rel=1e-3)


def test_demand_above_capacity_is_named_and_load_shedding_reports_it() -> None:
    ppc = copy.deepcopy(load_case("case9"))
    cap = ppc["gen"][:, 8].sum()
    ppc["bus"][:, 2] *= 1.1 * cap / ppc["bus"][:, 2].sum()
    with pytest.raises(InfeasibleError, match="power_balance") as err:
        build_dcopf(ppc)
    excess = ppc["bus"][:, 2].sum() - cap
    assert err.value.groups["power_balance"] == pytest.approx(excess)
    res = solve_dcopf(ppc, allow_load_shedding=True, line_limits=False)
    assert res.unserved_mw == pytest.approx(excess, rel=1e-6)


def test_line_limits_that_cannot_carry_the_load_are_diagnosed() -> None:
    ppc = copy.deepcopy(load_case("case9"))
    ppc["branch"][:, 5] = 1.0  # 1 MW lines cannot move 315 MW
    with pytest.raises(InfeasibleError) as err:
        solve_dcopf(ppc)
    assert set(err.value.groups) & {"line_limit", "power_balance", "flow_def"}
