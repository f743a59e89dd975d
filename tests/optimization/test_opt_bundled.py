"""Every network bundled with pandapower that pandapower's rundcopp solves, solved here to 1e-6 of its objective.

pandapower's DC-OPF (PYPOWER's dcopf on PIPS) is run live in each test on a copy of the same net, so
the reference is an independent solver on identical data, not a stored number. Networks rundcopp does
not solve (case4gs: demand above capacity; case89pegase, case145, the PEGASE/RTE cases and case3120sp:
non-convergence) have no reference and are not listed; the large ones are in `make bench-opt`.
"""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import pytest

from optimization.dcopf import check_dcopf_solution, load_case, solve_dcopf

SOLVED_BY_PANDAPOWER = [
    "case5", "case6ww", "case9", "case11_iwamoto", "case14", "case24_ieee_rts", "case30", "case_ieee30", "case33bw",
    "case39", "case57", "case118", "case_illinois200", "case300", "iceland", "GBreducednetwork",
    # distribution and example networks: no cost data (pandapower minimises generation) and, in the
    # example/CIGRE HV nets, generators without P limits (pandapower's +-1e9 MW, as rundcopp converts them)
    "create_cigre_network_hv", "create_cigre_network_lv", "create_cigre_network_mv", "create_dickert_lv_network",
    "create_kerber_dorfnetz", "create_kerber_landnetz_freileitung_1", "create_kerber_landnetz_kabel_2",
    "create_kerber_vorstadtnetz_kabel_1", "create_synthetic_voltage_control_lv_network", "example_multivoltage",
    "example_simple", "four_loads_with_branches_out", "kb_extrem_dorfnetz_trafo", "kb_extrem_landnetz_freileitung_trafo",
    "kb_extrem_vorstadtnetz_trafo_2", "panda_four_load_branch", "simple_four_bus_system", "simple_mv_open_ring_net",
]  # fmt: skip


def _pandapower_objective(net) -> float:
    import pandapower as pp

    logging.getLogger("pandapower").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.rundcopp(net)
    return float(net.res_cost)


@pytest.mark.parametrize("name", SOLVED_BY_PANDAPOWER)
def test_bundled_network_matches_pandapower_rundcopp(name: str) -> None:
    import pandapower.networks as pn

    net = getattr(pn, name)()
    ours = solve_dcopf(copy.deepcopy(net))
    assert ours.objective == pytest.approx(_pandapower_objective(net), rel=1e-6)
    assert ours.max_violation_mw <= 1e-8 * max(
        1.0, ours.buses["demand_mw"].abs().sum(), ours.branches["p_mw"].abs().max(), ours.generators["p_mw"].abs().max()
    )


def test_badly_scaled_gb_network_solves_as_the_reduced_qp_and_matches_pandapower() -> None:
    """GBnetwork: reactances 1e-5..2 p.u. (B entries 1e7). The reduced QP (generator outputs, PTDF rows) has no
    B coefficients at all, so HiGHS's QP method solves it first time; verified in MW like every path."""
    import pandapower.networks as pn

    net = pn.GBnetwork()
    ours = solve_dcopf(copy.deepcopy(net))
    assert ours.method.startswith("qp reduced") and not ours.failed_paths
    assert ours.objective == pytest.approx(_pandapower_objective(net), rel=1e-6)
    assert ours.max_violation_mw < 1e-3
    # angles and flows come from a DC power flow of the dispatch: balanced at every bus
    d = ours.data
    va = np.deg2rad(ours.buses["va_deg"].to_numpy())
    viol = check_dcopf_solution(d, ours.generators["p_mw"].to_numpy(), va, ours.branches["p_mw"].to_numpy())
    assert viol["power_balance"] < 1e-6 and viol["flow_def"] < 1e-6


@pytest.mark.slow  # ~15 s alone, a minute on the loaded CI box: 22 rounds of tangent cuts on a 2,224-bus LP
def test_gb_bus_angle_qp_fails_and_the_tangent_cuts_still_match_pandapower() -> None:
    """Without the reduced QP: HiGHS's QP method on the bus-angle model returns 'Solve error' (26 MW balance
    errors) and the tangent-cut LP fallback reaches the same optimum."""
    import pandapower.networks as pn

    net = pn.GBnetwork()
    ours = solve_dcopf(copy.deepcopy(net), reduced=False)
    assert ours.failed_paths and ours.failed_paths[0].startswith("qp")
    assert ours.method.startswith("lp tangent cuts")
    assert ours.objective == pytest.approx(_pandapower_objective(net), rel=1e-6)
    assert ours.max_violation_mw < 1e-3


def test_the_check_catches_a_solution_that_breaks_power_balance() -> None:
    from optimization.dcopf import build_dcopf

    ppc = load_case("case9")
    _, d = build_dcopf(ppc)
    res = solve_dcopf(ppc)
    pg = res.generators["p_mw"].to_numpy()
    va = np.deg2rad(res.buses["va_deg"].to_numpy())
    flow = res.branches["p_mw"].to_numpy()
    assert max(check_dcopf_solution(d, pg, va, flow).values()) < 1e-6
    bad = check_dcopf_solution(d, pg + np.array([0.0, 5.0, 0.0]), va, flow)
    assert bad["power_balance"] == pytest.approx(5.0)
    over = check_dcopf_solution(d, pg, va * 3.0, flow * 3.0)
    assert over["line_limit"] > 0 and over["power_balance"] > 1.0


def test_unrated_pegase_transformers_are_unlimited_as_in_matpower() -> None:
    import pandapower.networks as pn

    net = pn.case89pegase()
    ppc = load_case(net)
    placeholder = np.isclose(net.trafo["sn_mva"].to_numpy(), 99.999)
    assert placeholder.any()
    lo, hi = net._pd2ppc_lookups["branch"]["trafo"]
    assert (ppc["branch"][lo:hi, 5][placeholder] == 0).all()  # unlimited
    assert (ppc["branch"][lo:hi, 5][~placeholder] > 0).all()  # real ratings kept
    res = solve_dcopf(net)  # infeasible with the 99.999 MVA placeholders
    assert res.objective > 0 and res.max_violation_mw < 1e-6
