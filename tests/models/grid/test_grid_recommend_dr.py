from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from models.grid.demand_response import DRConfig, plan_events
from models.grid.features import FeatureInputError
from models.grid.recommend import DAYS_PER_MONTH, TariffConfig, recommend


def _segments() -> pl.DataFrame:
    return pl.DataFrame({
        "meter_id": ["M1", "M2", "M3"], "customer_id": ["C1", "C2", "C3"],
        "segment": ["ev_charging", "efficiency_optimiser", "night_owl"],
        "avg_daily_kwh": [30.0, 10.0, 12.0], "peak_kwh_per_day": [12.0, 0.5, 3.0],
        "provisional": [False, False, True],
    })


def test_recommendation_formulas():
    cfg = TariffConfig(flat_price=0.16, peak_price=0.32, offpeak_price=0.11)
    ref = pl.DataFrame({"meter_id": ["M1", "M2", "M3"], "dr_opt_in": [False, True, False]})
    r = recommend(_segments(), ref, cfg)
    assert set(r["customer_id"]) == {"C1", "C2"}  # provisional C3 skipped
    get = {(c, k): v for c, k, v in r.select("customer_id", "kind", "est_monthly_savings").iter_rows()}
    e_peak, e_all = 12.0 * DAYS_PER_MONTH, 30.0 * DAYS_PER_MONTH
    assert get[("C1", "time_shift")] == pytest.approx(round(0.6 * e_peak * 0.21, 2))
    assert get[("C1", "tariff")] == pytest.approx(round(e_all * 0.16 - (e_peak * 0.32 + (e_all - e_peak) * 0.11), 2))
    assert get[("C1", "dr_enrolment")] == pytest.approx(2 * 5.0 * 1.5)
    assert get[("C2", "dr_enrolment")] == 0.0  # already enrolled
    low_peak = r.filter((pl.col("customer_id") == "C2") & (pl.col("kind") == "tariff")).row(0, named=True)
    assert low_peak["recommended"] and low_peak["message"].startswith("Switch")


def _forecast(values: list[float]) -> pl.DataFrame:
    t0 = datetime(2026, 7, 1, 18, tzinfo=timezone.utc)
    return pl.DataFrame({"time": [t0 + timedelta(hours=i) for i in range(len(values))], "forecast_kw": [float(v) for v in values]})


def _customers() -> pl.DataFrame:
    return pl.DataFrame({
        "meter_id": [f"M{i}" for i in range(6)], "customer_id": [f"C{i}" for i in range(6)],
        "segment": ["ev_charging", "ev_charging", "seasonal_heavy_hvac", "low_use", "night_owl", "ev_charging"],
        "dr_opt_in": [True, True, True, True, True, False], "peak_kw": [8.0, 6.0, 10.0, 50.0, 2.0, 99.0],
    })


def test_event_created_for_exceedance_with_selected_participants():
    ev, parts = plan_events(_forecast([80, 95, 104, 110, 90, 120, 80]), _customers(), DRConfig(capacity_kw=100, margin=0.0))
    assert ev.height == 2  # two separate windows above 100 kW
    first = ev.row(0, named=True)
    assert first["start_time"] == datetime(2026, 7, 1, 20, tzinfo=timezone.utc)
    assert first["end_time"] == datetime(2026, 7, 1, 22, tzinfo=timezone.utc)
    assert first["target_reduction_kw"] == pytest.approx(10.0)
    p = parts.filter(pl.col("event_id") == first["event_id"])
    # expected kW: C0 8*0.5=4, C2 10*0.35=3.5, C1 6*0.5=3, C4 2*0.1=0.2; largest first until >= 10
    assert set(p["customer_id"]) == {"C0", "C1", "C2"}
    assert first["expected_reduction_kw"] == pytest.approx(10.5) and first["status"] == "covered"
    second = ev.row(1, named=True)  # 20 kW asked, 10.7 kW available in all
    assert second["status"] == "short" and second["n_participants"] == 4
    assert not parts["customer_id"].is_in(["C3", "C5"]).any()  # low_use not eligible; C5 not opted in
    inc = {r["customer_id"]: r["incentive"] for r in p.iter_rows(named=True)}
    assert inc["C0"] == pytest.approx(5.0 * 1.5) and inc["C2"] == pytest.approx(5.0 * 1.4)
    again, _ = plan_events(_forecast([80, 95, 104, 110, 90, 120, 80]), _customers(), DRConfig(capacity_kw=100, margin=0.0))
    assert again["event_id"].to_list() == ev["event_id"].to_list()


def test_no_event_below_capacity_and_bad_forecast_named():
    ev, parts = plan_events(_forecast([50, 60, 70]), _customers(), DRConfig(capacity_kw=100))
    assert ev.height == 0 and parts.height == 0
    with pytest.raises(FeatureInputError, match="forecast_kw missing"):
        plan_events(_forecast([50, float("nan")]), _customers(), DRConfig(capacity_kw=100))
    with pytest.raises(ValueError, match="capacity_kw"):
        DRConfig(capacity_kw=0)
