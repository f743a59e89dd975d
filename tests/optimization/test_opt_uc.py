"""Unit commitment: a brute-force check on a tiny fleet, every physical rule on a larger one, infeasibility."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from scipy.optimize import linprog

from optimization.errors import InfeasibleError, InputError
from optimization.unit_commitment import schedule_table, solve_unit_commitment, synthetic_day, synthetic_fleet


def _fleet(rows: list[dict]) -> pl.DataFrame:
    base = dict(min_up_h=1, min_down_h=1, initial_on=False, initial_hours=10, initial_mw=0.0)
    return pl.DataFrame([{**base, **r} for r in rows])


def test_tiny_instance_equals_brute_force_enumeration() -> None:
    fleet = _fleet(
        [
            dict(
                unit="cheap",
                pmin_mw=40,
                pmax_mw=100,
                marginal_cost=10,
                no_load_cost=200,
                startup_cost=500,
                ramp_up_mw_h=100,
                ramp_down_mw_h=100,
            ),
            dict(
                unit="peak",
                pmin_mw=10,
                pmax_mw=60,
                marginal_cost=50,
                no_load_cost=20,
                startup_cost=30,
                ramp_up_mw_h=60,
                ramp_down_mw_h=60,
            ),
        ]
    )
    load = np.array([30.0, 90.0, 140.0, 50.0])
    res = solve_unit_commitment(fleet, load, reserve_frac=0.0, mip_rel_gap=1e-9)
    # enumerate all 2^8 commitments; dispatch each by LP; keep the cheapest feasible
    pmin, pmax, mc = np.array([40, 10.0]), np.array([100, 60.0]), np.array([10, 50.0])
    nl, su = np.array([200, 20.0]), np.array([500, 30.0])
    best = np.inf
    for bits in itertools.product([0, 1], repeat=8):
        u = np.array(bits).reshape(2, 4)
        starts = np.maximum(0, np.diff(np.concatenate([[[0], [0]], u], axis=1), axis=1)).sum(axis=1)
        fixed = float((nl[:, None] * u).sum() + (su * starts).sum())
        disp = 0.0
        for t in range(4):
            lo, hi = pmin * u[:, t], pmax * u[:, t]
            if lo.sum() > load[t] or hi.sum() < load[t]:
                disp = np.inf
                break
            lp = linprog(mc, A_eq=[[1, 1]], b_eq=[load[t]], bounds=list(zip(lo, hi)), method="highs")
            disp += lp.fun
        best = min(best, fixed + disp)
    assert res.objective == pytest.approx(best, rel=1e-9)


@pytest.fixture(scope="module")
def mid_solution():
    fleet = synthetic_fleet(12, seed=3)
    load, ren = synthetic_day(fleet, seed=3)
    return fleet, load, ren, solve_unit_commitment(fleet, load, ren, reserve_frac=0.1)


def test_schedule_respects_balance_reserve_ramps_and_min_up_down(mid_solution) -> None:
    fleet, load, ren, res = mid_solution
    sys_ = res.system
    np.testing.assert_allclose(sys_["thermal_mw"] + sys_["renewable_used_mw"], load, rtol=1e-7)
    assert (sys_["renewable_used_mw"] <= sys_["renewable_forecast_mw"] + 1e-6).all()
    assert (sys_["reserve_mw"] >= 0.1 * load - 1e-6).all()
    assert res.mip_gap <= 1e-3 + 1e-9
    for _i, unit in enumerate(fleet.iter_rows(named=True)):
        s = res.schedule.filter(pl.col("unit") == unit["unit"]).sort("hour")
        on = s["on"].to_numpy().astype(int)
        p = s["p_mw"].to_numpy()
        r = s["reserve_mw"].to_numpy()
        assert np.all(p + r <= unit["pmax_mw"] * on + 1e-6)
        assert np.all(p >= unit["pmin_mw"] * on - 1e-6)
        prev_on = np.concatenate([[int(unit["initial_on"])], on[:-1]])
        prev_p = np.concatenate([[unit["initial_mw"] if unit["initial_on"] else 0.0], p[:-1]])
        start = (on == 1) & (prev_on == 0)
        up_cap = np.where(start, max(unit["pmin_mw"], unit["ramp_up_mw_h"]), unit["ramp_up_mw_h"])
        assert np.all(p - prev_p <= up_cap + 1e-6)
        # minimum up time: every run that starts inside the horizon lasts >= min_up (or to the end)
        runs = np.flatnonzero(start)
        for t0 in runs:
            stay = on[t0 : t0 + unit["min_up_h"]]
            assert stay.all(), f"{unit['unit']} switched off before its minimum up time"
        stops = np.flatnonzero((on == 0) & (prev_on == 1))
        for t0 in stops:
            assert not on[t0 : t0 + unit["min_down_h"]].any(), f"{unit['unit']} restarted before its minimum down time"


def _agile(n: int) -> pl.DataFrame:
    """Units that can go from off to full output in an hour, so only capacity limits matter."""
    f = synthetic_fleet(n, seed=1)
    return f.with_columns(
        ramp_up_mw_h=pl.col("pmax_mw"), ramp_down_mw_h=pl.col("pmax_mw"), min_up_h=pl.lit(1), min_down_h=pl.lit(1)
    )


def test_demand_above_capacity_is_named_and_slack_reports_unserved() -> None:
    fleet = _agile(5)
    cap = fleet["pmax_mw"].sum()
    load = np.full(6, 0.5 * cap)
    load[3] = cap + 100.0
    with pytest.raises(InfeasibleError, match="power_balance") as err:
        solve_unit_commitment(fleet, load, reserve_frac=0.0)
    assert err.value.groups["power_balance"] == pytest.approx(100.0)
    res = solve_unit_commitment(fleet, load, reserve_frac=0.0, allow_unmet=True)
    assert res.unserved_mwh == pytest.approx(100.0, rel=1e-6)


def test_reserve_requirement_above_headroom_is_named() -> None:
    fleet = _agile(5)
    cap = fleet["pmax_mw"].sum()
    load = np.full(6, 0.9 * cap)
    with pytest.raises(InfeasibleError, match="spinning_reserve"):
        solve_unit_commitment(fleet, load, reserve_frac=0.2)
    res = solve_unit_commitment(fleet, load, reserve_frac=0.2, allow_unmet=True)
    assert res.reserve_shortfall_mwh > 0 and res.unserved_mwh == pytest.approx(0.0, abs=1e-6)


def test_schedule_table_has_a_row_per_unit_and_period_plus_a_system_row(mid_solution) -> None:
    fleet, load, ren, res = mid_solution
    stamps = pl.Series("period_start", [100 + k for k in range(24)])
    df = schedule_table(res, stamps, system_unit="all")
    system = df.filter(pl.col("unit") == "all").sort("period_start")
    units = df.filter(pl.col("unit") != "all")
    assert units.height == fleet.height * 24 and system.height == 24
    assert system["period_start"].to_list() == stamps.to_list()
    np.testing.assert_allclose(system["load_mw"].to_numpy(), load)
    thermal = units.group_by("period_start").agg(pl.col("p_mw").sum(), pl.col("is_on").any()).sort("period_start")
    np.testing.assert_allclose(system["p_mw"].to_numpy(), thermal["p_mw"].to_numpy(), atol=1e-6)
    assert system["is_on"].to_list() == thermal["is_on"].to_list()
    assert not system["is_start"].any() and units["is_start"].sum() == res.schedule["start"].sum()
    assert units["load_mw"].null_count() == units.height
    # a unit row carries its own hour: p_mw of unit u at stamps[h] is the schedule's (u, h)
    u0 = fleet["unit"][0]
    np.testing.assert_allclose(
        units.filter(pl.col("unit") == u0).sort("period_start")["p_mw"].to_numpy(),
        res.schedule.filter(pl.col("unit") == u0).sort("hour")["p_mw"].to_numpy(),
    )


def test_emissions_and_renewable_share_follow_the_dispatch(mid_solution) -> None:
    fleet, load, ren, res = mid_solution
    sched = res.schedule.join(fleet.select("unit", "co2_t_per_mwh"), on="unit")
    np.testing.assert_allclose(
        sched["co2_t_per_h"].to_numpy(), (sched["p_mw"] * sched["co2_t_per_mwh"]).to_numpy(), rtol=1e-12
    )
    sys_ = res.system
    per_hour = sched.group_by("hour").agg(pl.col("co2_t_per_h").sum()).sort("hour")["co2_t_per_h"].to_numpy()
    np.testing.assert_allclose(sys_["co2_t_per_h"].to_numpy(), per_hour, rtol=1e-12)
    assert res.emissions_t == pytest.approx(per_hour.sum(), rel=1e-12)
    np.testing.assert_allclose(
        sys_["renewable_share"].to_numpy(), (sys_["renewable_used_mw"] / sys_["load_mw"]).to_numpy(), rtol=1e-9
    )
    assert res.renewable_share == pytest.approx(
        float(sys_["renewable_used_mw"].sum() / sys_["load_mw"].sum()), rel=1e-9
    )
    assert 0 < res.renewable_share < 1
    # renewables never above their forecast, and without emission factors emissions are unknown, not zero
    capped = solve_unit_commitment(fleet.drop("co2_t_per_mwh"), load, ren * 0.5, reserve_frac=0.1)
    assert (capped.system["renewable_used_mw"] <= capped.system["renewable_forecast_mw"] + 1e-6).all()
    assert np.isnan(capped.emissions_t)
    with pytest.raises(InputError, match="co2_t_per_mwh"):
        solve_unit_commitment(fleet.with_columns(pl.lit(-1.0).alias("co2_t_per_mwh")), load, ren)
