"""DC-OPF against MATPOWER's reference optima, LMPs against pandapower and against finite differences."""

from __future__ import annotations

import copy
import warnings
from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from optimization.dcopf import (
    REFERENCE_OBJECTIVES,
    build_dcopf,
    load_case,
    scaled_case,
    solve_dcopf,
    solve_dcopf_periods,
)
from optimization.errors import InfeasibleError, InputError


@pytest.mark.parametrize("case", ["case9", "case14", "case57", "case118", "case300"])
def test_objective_matches_matpower_reference(case: str) -> None:
    res = solve_dcopf(case)
    assert res.objective == pytest.approx(REFERENCE_OBJECTIVES[case], rel=1e-6)
    # dispatch respects limits and balances demand
    g = res.generators
    assert ((g["p_mw"] >= g["pmin_mw"] - 1e-6) & (g["p_mw"] <= g["pmax_mw"] + 1e-6)).all()
    assert g["p_mw"].sum() == pytest.approx(res.buses["demand_mw"].sum(), rel=1e-8)
    b = res.branches.filter(_b_lim := (res.branches["rate_a_mw"] > 0))
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


def test_scaled_case_multiplies_demand_only_and_leaves_the_input_alone() -> None:
    base = load_case("case9")
    before = copy.deepcopy(base)
    out = scaled_case(base, 1.5)
    np.testing.assert_allclose(out["bus"][:, 2], 1.5 * before["bus"][:, 2])
    np.testing.assert_array_equal(np.delete(out["bus"], 2, axis=1), np.delete(before["bus"], 2, axis=1))
    np.testing.assert_array_equal(out["gen"], before["gen"])
    np.testing.assert_array_equal(base["bus"], before["bus"])


def test_periods_solve_each_scaled_case_and_keep_the_peak() -> None:
    base = load_case("case9")
    stamps = pl.Series("period_start", [datetime(2026, 3, 5, h, tzinfo=timezone.utc) for h in range(3)])
    scales = np.array([0.8, 1.0, 0.9])
    r = solve_dcopf_periods("case9", stamps, scales)
    direct = [solve_dcopf(scaled_case(base, f)).objective for f in scales]
    np.testing.assert_allclose(r.objectives, direct, rtol=1e-9)
    assert r.peak.objective == pytest.approx(REFERENCE_OBJECTIVES["case9"], rel=1e-6)  # the period with scale 1
    n_bus, n_gen, n_branch = base["bus"].shape[0], base["gen"].shape[0], base["branch"].shape[0]
    counts = dict(r.table.group_by("kind").len().iter_rows())
    assert counts == {"system": 3, "bus": 3 * n_bus, "generator": 3 * n_gen, "branch": 3 * n_branch}
    system = r.table.filter(pl.col("kind") == "system").sort("period_start")
    assert system["period_start"].to_list() == stamps.to_list()
    np.testing.assert_allclose(system["p_mw"].to_numpy(), scales * base["bus"][:, 2].sum())
    np.testing.assert_allclose(system["cost_per_h"].to_numpy(), direct, rtol=1e-9)
    gen = (
        r.table.filter(pl.col("kind") == "generator")
        .group_by("period_start")
        .agg(pl.col("p_mw").sum())
        .sort("period_start")
    )
    np.testing.assert_allclose(gen["p_mw"].to_numpy(), system["p_mw"].to_numpy(), rtol=1e-7)  # lossless DC balance


def test_an_infeasible_period_is_named_with_its_scale_and_groups() -> None:
    base = load_case("case9")
    too_much = 1.1 * base["gen"][:, 8].sum() / base["bus"][:, 2].sum()
    stamps = pl.Series("period_start", [datetime(2026, 3, 5, h, tzinfo=timezone.utc) for h in range(2)])
    with pytest.raises(
        InfeasibleError, match=rf"period 2026-03-05 01:00:00\+00:00 \(load scale {too_much:.3f}\): .*power_balance"
    ) as err:
        solve_dcopf_periods(base, stamps, [1.0, too_much])
    assert "power_balance" in err.value.groups
    with pytest.raises(InfeasibleError) as direct:
        solve_dcopf(scaled_case(base, too_much))
    assert err.value.groups == direct.value.groups and err.value.hint == direct.value.hint


def _pypower_dcopf(ppc: dict) -> float:
    """The DC-OPF optimum of ``ppc`` from pandapower's PYPOWER port (``opf`` with PF_DC), an independent solver."""
    from pandapower.pypower.opf import opf
    from pandapower.pypower.ppoption import ppoption

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = opf(copy.deepcopy(ppc), ppoption(PF_DC=True, VERBOSE=0, OUT_ALL=0))
    assert r["success"]
    return float(r["f"])


def test_every_reference_bus_angle_is_fixed_as_matpower_does() -> None:
    import pandapower as pp
    import pandapower.networks as pn

    net = pn.case9()
    pp.runpp(net)
    ppc = copy.deepcopy(load_case("case9"))
    ppc["bus"][1, 1] = 3  # bus 2 becomes a second REF bus at its AC power-flow angle (9.67 deg)
    ppc["bus"][1, 8] = float(net.res_bus.va_degree[1])
    res = solve_dcopf(ppc)
    assert res.objective == pytest.approx(_pypower_dcopf(ppc), rel=1e-6)
    assert res.objective == pytest.approx(5317.7756, rel=1e-6)  # MATPOWER convention; the first REF only gave 5216.03
    va = dict(zip(res.buses["bus"].to_list(), res.buses["va_deg"].to_list()))
    assert va[0] == pytest.approx(0.0, abs=1e-9) and va[1] == pytest.approx(ppc["bus"][1, 8], abs=1e-9)


def test_renewables_are_capped_at_their_forecast_and_emissions_are_reported() -> None:
    free = solve_dcopf("case9")
    assert np.isnan(free.emissions_t_per_h) and free.renewable_share == 0.0  # no factors given: unknown, not 0
    uncapped = float(free.generators["p_mw"][1])
    co2 = [0.9, 0.0, 0.6]  # t/MWh per generator row; generator 1 is a wind farm
    res = solve_dcopf("case9", renewable_forecast_mw={1: 50.0}, gen_co2_t_per_mwh=co2)
    g = res.generators
    assert uncapped > 50.0 and float(g["p_mw"][1]) == pytest.approx(50.0, abs=1e-6)  # the cap binds
    assert g["renewable"].to_list() == [False, True, False]
    assert res.emissions_t_per_h == pytest.approx(float((g["p_mw"].to_numpy() * np.array(co2)).sum()), rel=1e-12)
    assert res.renewable_share == pytest.approx(50.0 / g["p_mw"].sum(), rel=1e-9)
    assert res.objective > free.objective
    with pytest.raises(InputError, match="generator 7 does not exist"):
        solve_dcopf("case9", renewable_forecast_mw={7: 10.0})


def test_periods_cap_renewables_at_each_periods_forecast() -> None:
    stamps = pl.Series("period_start", [datetime(2026, 3, 5, h, tzinfo=timezone.utc) for h in range(3)])
    r = solve_dcopf_periods(
        "case9", stamps, [1.0, 1.0, 1.0], renewable_forecast_mw={1: [0.0, 40.0, 500.0]}, gen_co2_t_per_mwh=0.5
    )
    gen1 = r.table.filter((pl.col("kind") == "generator") & (pl.col("element") == 1)).sort("period_start")
    assert gen1["p_mw"].to_list()[:2] == pytest.approx([0.0, 40.0], abs=1e-6)
    system = r.table.filter(pl.col("kind") == "system").sort("period_start")
    total = system["p_mw"].to_numpy()
    np.testing.assert_allclose(system["co2_t_per_h"].to_numpy(), 0.5 * (total - gen1["p_mw"].to_numpy()), rtol=1e-9)
    np.testing.assert_allclose(system["renewable_share"].to_numpy(), gen1["p_mw"].to_numpy() / total, rtol=1e-9)


@pytest.mark.parametrize("case", ["case39", "case118", "case300"])
def test_reduced_qp_and_bus_angle_qp_agree_on_dispatch_and_lmps(case: str) -> None:
    """The reduced (PTDF) QP and the bus-angle QP are the same problem: same optimum, same LMPs."""
    red = solve_dcopf(case)
    ang = solve_dcopf(case, reduced=False)
    assert red.method.startswith("qp reduced") and ang.method == "qp (HiGHS active set)"
    assert red.objective == pytest.approx(ang.objective, rel=1e-9)
    scale = float(np.abs(ang.buses["lmp"].to_numpy()).max())
    np.testing.assert_allclose(red.buses["lmp"].to_numpy(), ang.buses["lmp"].to_numpy(), atol=1e-4 * scale)
    # the active-set QP on the bus-angle model stops ~1e-5 relative from the optimum (case39's equal-cost units
    # split 660.843/660.854 MW there, evenly here): the dispatch agrees to 1e-4 of the largest output
    pg = ang.generators["p_mw"].to_numpy()
    np.testing.assert_allclose(red.generators["p_mw"].to_numpy(), pg, atol=1e-4 * np.abs(pg).max())


def test_reduced_qp_steps_aside_for_cases_it_does_not_cover() -> None:
    """Two REF buses, load shedding, security rows: the bus-angle model solves them (named in failed_paths or skipped)."""
    ppc = copy.deepcopy(load_case("case9"))
    ppc["bus"][1, 1] = 3  # a second reference bus
    res = solve_dcopf(ppc)
    assert res.failed_paths[0].startswith("qp reduced") and "2 reference buses" in res.failed_paths[0]
    assert res.method == "qp (HiGHS active set)"
    assert not solve_dcopf("case9", allow_load_shedding=True).method.startswith("qp reduced")
