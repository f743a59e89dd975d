"""Battery model: equals an independent sparse-matrix LP; each use case changes behaviour as it should."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from optimization.battery import (
    DAILY_BREAKDOWN,
    BatterySpec,
    daily_summary,
    optimize_battery,
    project_roi,
    site_schedule_table,
)
from optimization.errors import InfeasibleError, InputError

SPEC = BatterySpec(
    power_kw=500.0,
    energy_kwh=1000.0,
    charge_efficiency=0.93,
    discharge_efficiency=0.96,
    soc_min_frac=0.1,
    soc_max_frac=0.95,
    soc_initial_frac=0.5,
    degradation_cost_per_mwh=3.0,
)


def _prices(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = np.arange(n) / 4.0
    return 40 + 25 * np.sin(2 * np.pi * (h - 9) / 24) + rng.normal(0, 6, n)


def _independent_lp(spec: BatterySpec, price: np.ndarray, dt: float) -> tuple[float, np.ndarray]:
    """The arbitrage LP written from its definition with scipy.sparse and solved by linprog(HiGHS)."""
    n = price.size
    E = spec.energy_kwh
    I = sp.identity(n, format="csr")
    L = sp.diags([np.ones(n - 1)], [-1], shape=(n, n), format="csr")
    A_eq = sp.hstack([-spec.charge_efficiency * dt * I, dt / spec.discharge_efficiency * I, I - L])
    b_eq = np.zeros(n)
    b_eq[0] = spec.soc_initial_frac * E
    w = dt / 1000.0
    c = np.concatenate(
        [price * w + spec.degradation_cost_per_mwh * w, -price * w + spec.degradation_cost_per_mwh * w, np.zeros(n)]
    )
    bounds = [(0, spec.power_kw)] * (2 * n) + [(spec.soc_min_frac * E, spec.soc_max_frac * E)] * n
    bounds[-1] = (spec.soc_initial_frac * E, spec.soc_max_frac * E)
    res = linprog(c, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    assert res.status == 0
    return res.fun, res.x


def test_lp_schedule_equals_independent_sparse_solve() -> None:
    price = _prices(2 * 96)
    res = optimize_battery(SPEC, price)
    ref_obj, x = _independent_lp(SPEC, price, 0.25)
    n = price.size
    assert res.objective == pytest.approx(ref_obj, rel=1e-9)
    np.testing.assert_allclose(res.schedule["charge_kw"].to_numpy(), x[:n], atol=1e-5)
    np.testing.assert_allclose(res.schedule["discharge_kw"].to_numpy(), x[n : 2 * n], atol=1e-5)
    np.testing.assert_allclose(res.schedule["soc_kwh"].to_numpy(), x[2 * n :], atol=1e-4)
    assert res.breakdown["total_cost"] == pytest.approx(res.objective, rel=1e-9)
    assert res.schedule["soc_kwh"][-1] >= SPEC.soc_initial_frac * SPEC.energy_kwh - 1e-6


def test_milp_forbids_simultaneous_charge_and_discharge_that_lp_uses_at_negative_prices() -> None:
    spec = BatterySpec(
        power_kw=100.0,
        energy_kwh=100.0,
        soc_initial_frac=0.9,
        soc_max_frac=1.0,
        charge_efficiency=0.9,
        discharge_efficiency=0.9,
    )
    price = np.full(8, -50.0)  # paid to consume: the LP burns energy in a charge+discharge loop
    lp = optimize_battery(spec, price)
    mip = optimize_battery(spec, price, milp=True)
    both = lambda r: int(((r.schedule["charge_kw"] > 1e-6) & (r.schedule["discharge_kw"] > 1e-6)).sum())  # noqa: E731
    assert both(lp) > 0
    assert both(mip) == 0
    assert mip.objective >= lp.objective - 1e-9  # the MILP is a restriction


def test_pv_self_consumption_with_zero_export_price() -> None:
    n = 96
    h = np.arange(n) / 4.0
    pv = 400 * np.clip(np.sin(np.pi * (h - 6) / 12), 0, None)
    load = 150 + 100 * np.exp(-(((h - 19) / 2.5) ** 2))
    price = np.full(n, 120.0)
    res = optimize_battery(SPEC, price, load_kw=load, pv_kw=pv, export_price=0.0)
    base_export = np.clip(pv - load, 0, None).sum()
    assert res.schedule["grid_export_kw"].sum() < base_export - 1000  # stored instead of given away
    assert res.breakdown["self_consumption_frac"] > 1 - base_export / pv.sum() + 0.1
    assert res.breakdown["savings"] > 0


def test_demand_charge_shaves_the_peak() -> None:
    n = 96
    h = np.arange(n) / 4.0
    load = 300 + 500 * np.exp(-(((h - 18) / 1.5) ** 2))
    price = np.full(n, 60.0)
    plain = optimize_battery(SPEC, price, load_kw=load)
    shaved = optimize_battery(SPEC, price, load_kw=load, demand_charge_per_kw=15.0)
    assert plain.breakdown["peak_import_kw"] == pytest.approx(load.max(), rel=1e-6)  # flat price: nothing to gain
    assert shaved.breakdown["peak_import_kw"] < load.max() - 200
    assert shaved.breakdown["total_cost"] < shaved.breakdown["baseline_total_cost"]


def test_carbon_weight_moves_charging_to_clean_hours() -> None:
    n = 96
    price = np.full(n, 50.0) + np.linspace(0, 1, n)  # nearly flat, tiny spread
    carbon = np.where(np.arange(n) < 48, 900.0, 100.0)  # dirty first half
    res = optimize_battery(SPEC, price, carbon_kg_per_mwh=carbon, carbon_price_per_t=200.0)
    ch = res.schedule["charge_kw"].to_numpy()
    dis = res.schedule["discharge_kw"].to_numpy()
    assert ch[48:].sum() > ch[:48].sum()
    assert dis[:48].sum() > dis[48:].sum()


def test_regulation_reserve_is_cooptimised_within_headroom() -> None:
    n = 96
    price = _prices(n)
    res = optimize_battery(SPEC, price, reg_price=np.full(n, 30.0))
    s = res.schedule
    r = s["reserve_kw"].to_numpy()
    net = s["net_kw"].to_numpy()
    assert r.sum() > 0 and res.breakdown["reserve_revenue"] > 0
    assert np.all(net + r <= SPEC.power_kw + 1e-6) and np.all(-net + r <= SPEC.power_kw + 1e-6)
    soc = s["soc_kwh"].to_numpy()
    assert np.all(
        soc - r * SPEC.reserve_duration_h / SPEC.discharge_efficiency >= SPEC.soc_min_frac * SPEC.energy_kwh - 1e-6
    )
    no_reg = optimize_battery(SPEC, price)
    assert res.objective < no_reg.objective  # the extra revenue stream can only help


def test_unreachable_terminal_soc_is_named_and_slack_reports_the_shortfall() -> None:
    spec = BatterySpec(power_kw=100.0, energy_kwh=1000.0, soc_initial_frac=0.1, soc_terminal_frac=0.9)
    price = np.full(8, 50.0)  # 2 h x 100 kW cannot add 800 kWh
    with pytest.raises(InfeasibleError) as err:
        optimize_battery(spec, price)
    assert "terminal_soc" in err.value.groups and "allow_unmet" in str(err.value)
    res = optimize_battery(spec, price, allow_unmet=True)
    expected = 900.0 - (100.0 + 0.95 * 100.0 * 2.0)
    assert res.breakdown["terminal_soc_shortfall_kwh"] == pytest.approx(expected, rel=1e-6)


def test_import_limit_below_net_load_is_named_and_slack_reports_unserved() -> None:
    load = np.array([100.0, 900.0, 100.0, 100.0])
    kw = dict(load_kw=load, grid_import_limit_kw=200.0)
    spec = BatterySpec(power_kw=500.0, energy_kwh=1000.0, soc_min_frac=0.1, soc_terminal_frac=0.1)
    with pytest.raises(InfeasibleError) as err:
        optimize_battery(spec, np.full(4, 50.0), **kw)
    assert "grid_import_limit" in err.value.groups
    res = optimize_battery(spec, np.full(4, 50.0), allow_unmet=True, **kw)
    # 900 kW of load, 200 kW from the grid, 500 kW from the battery: 200 kW x 15 min unserved
    assert res.breakdown["unserved_kwh"] == pytest.approx((900 - 200 - 500) * 0.25, rel=1e-6)


def test_bad_inputs_name_the_field_and_position() -> None:
    price = np.full(10, 50.0)
    price[7] = np.nan
    with pytest.raises(InputError, match=r"price: non-finite value nan at position 7"):
        optimize_battery(SPEC, price)
    with pytest.raises(InputError, match="load_kw: length 3, expected 10"):
        optimize_battery(SPEC, np.full(10, 50.0), load_kw=[1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="charge_efficiency"):
        optimize_battery(BatterySpec(power_kw=1, energy_kwh=1, charge_efficiency=1.5), np.ones(4))


def test_timestamps_become_utc_period_starts() -> None:
    res = optimize_battery(SPEC, _prices(8), start=datetime(2026, 3, 1, tzinfo=timezone.utc))
    assert res.schedule.columns[0] == "period_start"
    assert str(res.schedule["period_start"].dtype) == "Datetime(time_unit='us', time_zone='UTC')"
    assert (res.schedule["period_start"][1] - res.schedule["period_start"][0]).total_seconds() == 900


def test_roi_projection_against_closed_forms() -> None:
    df, s = project_roi(
        100_000.0, 500_000.0, annual_cycles=0.0, years=10, discount_rate=0.05, calendar_fade_per_year=0.0
    )
    annuity = 100_000.0 * (1 - 1.05**-10) / 0.05
    assert s["npv"] == pytest.approx(annuity - 500_000.0, rel=1e-9)
    assert s["payback_years"] == pytest.approx(5.0)
    flows = np.concatenate([[-500_000.0], df["cash_flow"].to_numpy()])
    assert np.sum(flows / (1 + s["irr"]) ** np.arange(11)) == pytest.approx(0.0, abs=1e-4)
    faded, s2 = project_roi(100_000.0, 500_000.0, annual_cycles=365.0, years=10, discount_rate=0.05)
    assert s2["npv"] < s["npv"] and faded["capacity_frac"][-1] < 1.0
    assert faded["capacity_frac"].is_sorted(descending=True)


def test_site_schedule_table_pairs_the_inputs_with_the_schedule() -> None:
    n = 16
    h = np.arange(n)
    load = 300 + 200 * (h >= 12)
    pv = 150.0 * ((h >= 4) & (h < 8))
    carbon = np.where(h < 8, 200.0, 600.0)
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    res = optimize_battery(
        SPEC, _prices(n), start=start, load_kw=load, pv_kw=pv, carbon_kg_per_mwh=carbon, demand_charge_per_kw=5.0
    )
    t = site_schedule_table(res, load, pv, carbon)
    assert t["period_start"][0] == start and t.height == n
    np.testing.assert_array_equal(t["carbon_kg_per_mwh"].to_numpy(), carbon)
    np.testing.assert_allclose(t["baseline_grid_kw"].to_numpy(), load - pv)
    balance = (
        t["grid_import_kw"] - t["grid_export_kw"] + t["discharge_kw"] - t["charge_kw"] - (t["load_kw"] - t["pv_kw"])
    )
    assert balance.abs().max() < 1e-6  # the columns are the right ones, not swapped
    np.testing.assert_allclose(t["soc_frac"].to_numpy(), t["soc_kwh"].to_numpy() / SPEC.energy_kwh)
    row = daily_summary(res, SPEC)
    assert set(DAILY_BREAKDOWN) < set(row) and row["objective"] == res.objective
    assert row["peak_import_kw"] == pytest.approx(t["grid_import_kw"].max())
    assert row["baseline_peak_import_kw"] == pytest.approx(float((load - pv).max()))


def test_roi_replacement_year_and_cost() -> None:
    # 0.06/yr fade: capacity 0.76 < 0.8 at the end of year 4 -> replaced then, at the stated cost
    df, s = project_roi(100_000.0, 500_000.0, annual_cycles=0.0, years=10, discount_rate=0.05, calendar_fade_per_year=0.06,
                        replacement_cost=200_000.0)  # fmt: skip
    assert s["replacement_year"] == 4.0
    assert df["replaced"].to_list()[:5] == [False, False, False, True, False]
    assert df["capacity_frac"][4] == pytest.approx(0.94)  # new cells in year 5
    y4 = df.row(3, named=True)
    assert y4["cash_flow"] == pytest.approx(100_000.0 * (0.82 + 0.76) / 2 - 200_000.0)
    _, no_repl = project_roi(
        100_000.0, 500_000.0, annual_cycles=0.0, years=10, discount_rate=0.05, calendar_fade_per_year=0.06
    )
    assert no_repl["replacement_year"] == 4.0  # reported either way


def test_battery_economics_annualises_the_produced_days() -> None:
    from optimization.battery import battery_economics
    from optimization.settings import EconomicsSettings

    daily = pl.DataFrame(
        {
            "power_kw": [100.0, 100.0],
            "energy_kwh": [400.0, 400.0],
            "savings": [90.0, 110.0],
            "equivalent_full_cycles": [0.8, 1.2],
        }
    )
    econ = EconomicsSettings(capex_per_kwh=300.0, capex_per_kw=100.0, years=12)
    df, s = battery_economics(daily, econ)
    assert s["capex"] == 400.0 * 300.0 + 100.0 * 100.0
    assert s["annual_savings"] == pytest.approx(100.0 * 365) and s["annual_cycles"] == pytest.approx(365.0)
    assert df.height == 12
    direct = project_roi(36_500.0, 130_000.0, annual_cycles=365.0, years=12, discount_rate=econ.discount_rate,
                         opex_per_year=econ.opex_frac_per_year * 130_000.0, replacement_cost=econ.replacement_cost_frac * 130_000.0)[1]  # fmt: skip
    assert s["npv"] == pytest.approx(direct["npv"])
    with pytest.raises(ValueError, match="no daily battery results"):
        battery_economics(daily.head(0), econ)
