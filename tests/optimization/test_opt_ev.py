"""EV charging: real Caltech sessions, baselines, the max-energy guarantee, V2G and infeasibility."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from optimization.errors import InfeasibleError, InputError
from optimization.ev import (
    EVWeights,
    compare_strategies,
    earliest_deadline_first,
    load_caltech_sessions,
    max_energy_sweep,
    optimize_ev,
    simulate_sessions,
    strategy_tables,
    uncontrolled,
)


@pytest.fixture(scope="module")
def caltech_days() -> pl.DataFrame:
    """Real sessions of 4-7 March 2019 (weekdays), re-based to period 0 (5-minute periods)."""
    s = load_caltech_sessions()
    day = 288
    sub = s.filter((pl.col("arrival_period") >= 3 * day) & (pl.col("departure_period") <= 7 * day))
    return sub.with_columns(pl.col("arrival_period") - 3 * day, pl.col("departure_period") - 3 * day)


def test_caltech_file_is_the_documented_month() -> None:
    s = load_caltech_sessions()
    assert s.height == 954
    assert s["station_id"].n_unique() == 47
    assert (s["max_power_kw"] == 6.6).all()


def test_optimum_never_below_edf_and_edf_respects_the_limit(caltech_days: pl.DataFrame) -> None:
    limits = [10.0, 30.0, 60.0]
    opt = max_energy_sweep(caltech_days, limits, period_minutes=5)
    unc = uncontrolled(caltech_days, period_minutes=5, transformer_limit_kw=30.0)
    for lim in limits:
        edf = earliest_deadline_first(caltech_days, transformer_limit_kw=lim, period_minutes=5)
        o = opt[lim]
        assert o.metrics["energy_delivered_pct"] >= edf.metrics["energy_delivered_pct"] - 1e-6
        assert o.metrics["site_peak_kw"] <= lim + 1e-6 and edf.metrics["site_peak_kw"] <= lim + 1e-6
        # per-session accounting is consistent with the per-period power
        assert o.sessions["delivered_kwh"].sum() == pytest.approx(o.metrics["energy_delivered_kwh"], rel=1e-9)
        assert (o.sessions["delivered_kwh"] <= o.sessions["requested_kwh"] + 1e-6).all()
    assert opt[10.0].metrics["energy_delivered_pct"] < opt[60.0].metrics["energy_delivered_pct"]
    assert unc.metrics["site_peak_kw"] > 30.0  # uncontrolled ignores the limit...
    assert unc.metrics["limit_violation_kwh"] > 0


def test_sweep_resolve_equals_a_fresh_build(caltech_days: pl.DataFrame) -> None:
    sweep = max_energy_sweep(caltech_days, [60.0, 15.0], period_minutes=5)
    fresh = optimize_ev(caltech_days, period_minutes=5, transformer_limit_kw=15.0, allow_unmet=True)
    assert sweep[15.0].metrics["energy_delivered_kwh"] == pytest.approx(fresh.metrics["energy_delivered_kwh"], rel=1e-7)


def test_weighted_objective_still_delivers_the_max_energy_lp_optimum() -> None:
    s = simulate_sessions(150, seed=4)
    T = 96
    price = np.where((np.arange(T) >= 64) & (np.arange(T) < 84), 200.0, 60.0)
    kw = dict(horizon=T, transformer_limit_kw=250.0, baseload_kw=80.0, price=price, allow_unmet=True)
    weighted = optimize_ev(s, weights=EVWeights(peak_per_kw=0.5, early_per_kwh=0.01), **kw)
    pure = optimize_ev(s, weights=EVWeights(energy_cost=0.0, peak_per_kw=0.0, early_per_kwh=0.0), **kw)
    assert pure.metrics["energy_delivered_pct"] < 100.0  # the limit binds
    assert weighted.metrics["energy_delivered_kwh"] == pytest.approx(pure.metrics["energy_delivered_kwh"], rel=1e-7)
    edf = earliest_deadline_first(s, horizon=T, transformer_limit_kw=250.0, baseload_kw=80.0, price=price)
    assert weighted.metrics["energy_delivered_kwh"] >= edf.metrics["energy_delivered_kwh"] - 1e-6
    assert weighted.metrics["cost"] < edf.metrics["cost"] * 1.05  # the price term is not ignored


def test_unlimited_strict_schedule_meets_every_request_and_avoids_expensive_hours() -> None:
    s = simulate_sessions(60, seed=2)
    T = 96
    price = np.full(T, 50.0)
    price[40:60] = 400.0
    res = optimize_ev(s, horizon=T, price=price)
    np.testing.assert_allclose(res.sessions["delivered_kwh"].to_numpy(), s["requested_kwh"].to_numpy(), rtol=1e-7)
    # cost-optimal: each car buys expensive energy only for what its cheap periods cannot supply
    p = res.power.with_columns(expensive=(pl.col("period") >= 40) & (pl.col("period") < 60))
    dear = p.filter(pl.col("expensive")).group_by("session_id").agg((pl.col("power_kw").sum() * 0.25).alias("kwh"))
    dear_kwh = dict(zip(dear["session_id"], dear["kwh"]))
    for r in s.iter_rows(named=True):
        window = np.arange(r["arrival_period"], r["departure_period"])
        cheap_cap = r["max_power_kw"] * 0.25 * np.sum((window < 40) | (window >= 60))
        assert dear_kwh.get(r["session_id"], 0.0) == pytest.approx(max(0.0, r["requested_kwh"] - cheap_cap), abs=1e-5)
    unc = uncontrolled(s, horizon=T, price=price)
    assert res.metrics["cost"] < unc.metrics["cost"]


def test_request_above_window_is_named_and_slack_reports_unmet() -> None:
    s = pl.DataFrame(
        {
            "session_id": ["a", "b"],
            "station_id": ["x", "y"],
            "arrival_period": [0, 0],
            "departure_period": [4, 8],
            "requested_kwh": [20.0, 5.0],
            "max_power_kw": [7.0, 7.0],
        }
    )
    with pytest.raises(InfeasibleError, match="energy_request") as err:
        optimize_ev(s, horizon=8)
    assert err.value.groups["energy_request"] == pytest.approx(20.0 - 7.0)
    res = optimize_ev(s, horizon=8, allow_unmet=True)
    unmet = dict(zip(res.sessions["session_id"], res.sessions["unmet_kwh"]))
    assert unmet["a"] == pytest.approx(13.0, abs=1e-6) and unmet["b"] == pytest.approx(0.0, abs=1e-6)


def test_transformer_too_small_for_strict_requests_is_diagnosed() -> None:
    s = simulate_sessions(40, seed=5)
    with pytest.raises(InfeasibleError) as err:
        optimize_ev(s, horizon=96, transformer_limit_kw=5.0)
    assert set(err.value.groups) & {"energy_request", "transformer_limit"}
    short = s["requested_kwh"].sum() - 5.0 * 24  # at most 5 kW x 24 h can be delivered
    assert sum(err.value.groups.values()) >= short - 1e-3
    with pytest.raises(InfeasibleError, match="baseload alone exceeds"):
        optimize_ev(s, horizon=96, transformer_limit_kw=50.0, baseload_kw=60.0, allow_unmet=True)


def test_v2g_discharges_only_above_threshold_and_keeps_the_floor() -> None:
    s = pl.DataFrame(
        {
            "session_id": ["a"],
            "station_id": ["x"],
            "arrival_period": [0],
            "departure_period": [16],
            "requested_kwh": [10.0],
            "max_power_kw": [10.0],
        }
    )
    price = np.full(16, 40.0)
    price[8:10] = 500.0
    res = optimize_ev(
        s,
        horizon=16,
        period_minutes=60,
        price=price,
        v2g=True,
        v2g_price_threshold=300.0,
        v2g_floor_frac=0.8,
        v2g_buffer_kwh=5.0,
    )
    p = res.power.sort("period")
    discharging = p.filter(pl.col("power_kw") < 0)["period"].to_list()
    assert discharging and set(discharging) <= {8, 9}
    assert res.sessions["delivered_kwh"][0] >= 0.8 * 10.0 - 1e-6
    no = optimize_ev(s, horizon=16, period_minutes=60, price=price)
    assert res.metrics["cost"] < no.metrics["cost"]


def test_session_validation_names_row_and_field() -> None:
    s = simulate_sessions(5, seed=0).with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(-1.0).otherwise(pl.col("requested_kwh")).alias("requested_kwh")
    )
    with pytest.raises(InputError, match=r"row 4 \(session s00003\): requested_kwh=-1.0"):
        optimize_ev(s, horizon=96)
    with pytest.raises(InputError, match="missing column"):
        optimize_ev(s.drop("max_power_kw"), horizon=96)


def test_strategies_compared_on_the_same_inputs_and_tabled_by_period_start() -> None:
    s = simulate_sessions(30, seed=6)
    T = int(s["departure_period"].max())
    s = s.with_columns(
        arrival_time=pl.col("arrival_period"), departure_time=pl.col("departure_period")
    )  # any per-session value
    price = np.where(np.arange(T) % 24 < 12, 40.0, 150.0)
    results = compare_strategies(s, price, transformer_limit_kw=30.0, period_minutes=15)
    assert set(results) == {"optimal", "edf", "uncontrolled"}
    got = {k: r.metrics["energy_delivered_kwh"] for k, r in results.items()}
    assert got["edf"] <= got["optimal"] + 1e-6 < s["requested_kwh"].sum()  # the limit binds; no infeasibility raised
    assert results["uncontrolled"].metrics["site_peak_kw"] > 30.0 >= results["optimal"].metrics["site_peak_kw"] - 1e-6
    stamps = pl.Series("period_start", [1000 + 7 * k for k in range(T)])
    sched, sess = strategy_tables(results, s, stamps)
    np.testing.assert_array_equal(sched["period_start"].to_numpy(), 1000 + 7 * sched["period"].to_numpy())
    station = dict(zip(s["session_id"], s["station_id"]))
    assert all(station[i] == st for i, st in zip(sched["session_id"], sched["station_id"]))
    energy = sched.group_by("strategy", "session_id").agg(kwh=pl.col("power_kw").sum() * 0.25)
    both = sess.join(energy, on=["strategy", "session_id"], how="left").with_columns(pl.col("kwh").fill_null(0.0))
    np.testing.assert_allclose(both["kwh"].to_numpy(), both["delivered_kwh"].to_numpy(), atol=1e-9)
    assert sess.height == 3 * s.height
    times = sess.join(s.select("session_id", "arrival_period", "departure_period"), on="session_id")
    assert (times["arrival_time"] == times["arrival_period"]).all() and (
        times["departure_time"] == times["departure_period"]
    ).all()
