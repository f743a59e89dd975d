"""Advisories from schedules: the charge window, the EV shift, savings, CO2 and confidence."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from optimization.advisories import (
    DAYS_PER_MONTH,
    FALLBACK_CONFIDENCE,
    battery_advisory,
    ev_advisory,
    forecast_confidence,
)
from optimization.daily import day_periods

TZ = "America/New_York"
DAY = dt.date(2026, 3, 5)


def _battery(charge_hours, discharge_hours):
    ts = day_periods(DAY, TZ, 15)
    h = ts.dt.convert_time_zone(TZ).dt.hour().to_numpy()
    return pl.DataFrame({"site_id": "s1", "period_start": ts, "price_per_mwh": np.where(h < 6, 50.0, np.where((h >= 16) & (h < 21), 180.0, 90.0)),
                         "charge_kw": np.where(np.isin(h, charge_hours), 10.0, 0.0), "discharge_kw": np.where(np.isin(h, discharge_hours), 8.0, 0.0)})  # fmt: skip


def test_battery_advisory_names_the_main_charge_and_discharge_windows():
    sched = _battery([1, 2, 3, 4, 10], [17, 18, 19])  # the 01-05 block carries more energy than the 10:00 one
    daily = pl.DataFrame({"site_id": ["s1"], "savings": [12.5], "carbon_kg": [100.0], "baseline_carbon_kg": [130.0]})
    r = battery_advisory(sched, daily, TZ, 0.8).row(0, named=True)
    assert (
        r["message"]
        == "Charge the battery at 01:00-05:00 during low rates ($50/MWh); discharge at 17:00-20:00 ($180/MWh)"
    )
    assert r["est_monthly_savings"] == pytest.approx(DAYS_PER_MONTH * 12.5, abs=0.01)
    assert r["est_monthly_co2_kg"] == pytest.approx(DAYS_PER_MONTH * 30.0, abs=0.01)
    assert (
        r["basis_kwh"] == pytest.approx(DAYS_PER_MONTH * 5 * 10.0, abs=0.01)
        and r["recommended"]
        and r["confidence"] == 0.8
    )
    idle = battery_advisory(_battery([], []), daily.with_columns(pl.lit(0.0).alias("savings")), TZ, 0.8).row(
        0, named=True
    )
    assert idle["message"].startswith("Hold the battery") and not idle["recommended"]


def test_ev_advisory_compares_the_optimum_with_uncontrolled():
    ts = day_periods(DAY, TZ, 60)
    sched = pl.DataFrame({"strategy": ["uncontrolled", "uncontrolled", "optimal", "optimal"], "period_start": [ts[17], ts[18], ts[23], ts[2]],
                          "power_kw": [7.0, 3.0, 6.0, 4.0]})  # fmt: skip
    sess = pl.DataFrame(
        {
            "strategy": ["uncontrolled", "optimal"],
            "cost": [2.0, 1.2],
            "carbon_kg": [5.0, 4.5],
            "delivered_kwh": [10.0, 10.0],
        }
    )
    r = ev_advisory(sched, sess, TZ, 0.7, "F1").row(0, named=True)
    assert r["message"] == "Shift EV charging from 17:00 to 23:00" and r["recommended"]
    assert r["est_monthly_savings"] == pytest.approx(DAYS_PER_MONTH * 0.8, abs=0.01)
    assert r["est_monthly_co2_kg"] == pytest.approx(DAYS_PER_MONTH * 0.5, abs=0.01) and r["customer_id"] == "F1"


def test_confidence_from_the_forecast_band_or_the_stated_fallback():
    hours = day_periods(DAY, TZ, 60)
    p50 = np.full(hours.len(), 100.0)
    f = pl.DataFrame(
        {"entity_id": "s1", "issued_at": hours[0], "period_start": hours, "p10": p50 - 30, "p50": p50, "p90": p50 + 10}
    )
    assert forecast_confidence(f, "s1", DAY, TZ) == pytest.approx(0.8)  # half-width 20 %
    assert forecast_confidence(f.head(10), "s1", DAY, TZ) == FALLBACK_CONFIDENCE
    assert forecast_confidence(None, "s1", DAY, TZ) == FALLBACK_CONFIDENCE
