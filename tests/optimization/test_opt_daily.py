"""Inputs of the daily schedules: local-day periods, tariff, newest-issue forecasts, the weekly fallback, EV re-timing."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from optimization.daily import (
    SYSTEM,
    day_periods,
    ev_sessions_for_day,
    gross_load,
    newest_issue_p50,
    periods_from_midnight,
    same_hour_last_week,
    time_of_use,
)
from optimization.errors import InputError

TZ = "America/New_York"
NY = ZoneInfo(TZ)
UTC = pl.Datetime("us", "UTC")
DAY = dt.date(2026, 3, 5)  # a Thursday, no DST change
SPRING, FALL = dt.date(2026, 3, 8), dt.date(2026, 11, 1)  # 23- and 25-hour days in New York


def _local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), NY).astimezone(dt.timezone.utc)


def _local_hours(stamps: pl.Series) -> list[int]:
    return [t.astimezone(NY).hour for t in stamps.to_list()]


@pytest.mark.parametrize(
    ("day", "local_hours"),
    [
        (DAY, list(range(24))),
        (SPRING, [0, 1, *range(3, 24)]),
        (FALL, [0, 1, 1, *range(2, 24)]),
    ],  # 02:00 skipped / 01:00 twice
)
def test_day_periods_cover_the_local_day_including_dst(day: dt.date, local_hours: list[int]) -> None:
    for minutes in (60, 15):
        p = day_periods(day, TZ, minutes)
        assert p.name == "period_start" and p.dtype == UTC
        assert p.len() == len(local_hours) * 60 // minutes
        assert p[0] == _local(day, 0)
        assert p[-1] + dt.timedelta(minutes=minutes) == _local(day + dt.timedelta(days=1), 0)
        assert set(p.diff().drop_nulls().to_list()) == {dt.timedelta(minutes=minutes)}
    assert _local_hours(day_periods(day, TZ, 60)) == local_hours


def test_periods_from_midnight_run_on_absolute_time_past_the_day() -> None:
    p = periods_from_midnight(SPRING, TZ, 24 * 12, 5)  # 24 h of 5-minute periods on a 23-hour day
    assert p[0] == _local(SPRING, 0)
    assert p[-1] == _local(SPRING + dt.timedelta(days=1), 0, 55)


def test_tariff_prices_by_local_hour_and_peak_wins_over_shoulder() -> None:
    stamps = day_periods(SPRING, TZ, 60)
    profile = [1000.0 + h for h in range(24)]
    price, carbon = time_of_use(
        stamps, TZ, off_peak_per_mwh=50.0, shoulder_per_mwh=90.0, peak_per_mwh=180.0,
        shoulder_hours=list(range(7, 21)), peak_hours=[16, 17, 18, 19, 20], carbon_kg_per_mwh=profile,
    )  # fmt: skip
    for h, p, c in zip(_local_hours(stamps), price, carbon):
        assert p == (180.0 if 16 <= h <= 20 else 90.0 if 7 <= h <= 15 else 50.0), h
        assert c == 1000.0 + h  # indexed by the local hour, not the UTC one or the period number
    _, flat = time_of_use(
        stamps,
        TZ,
        off_peak_per_mwh=1,
        shoulder_per_mwh=1,
        peak_per_mwh=1,
        shoulder_hours=[],
        peak_hours=[],
        carbon_kg_per_mwh=[400.0],
    )
    assert flat.shape == (23,) and set(flat) == {400.0}


@pytest.mark.parametrize(
    ("change", "match"),
    [({"carbon_kg_per_mwh": [400.0, 300.0]}, r"1 \(flat\) or 24"), ({"carbon_kg_per_mwh": [-1.0]}, "finite and >= 0"),
     ({"carbon_kg_per_mwh": [float("nan")]}, "finite and >= 0"), ({"peak_hours": [17, 24]}, r"local hours 0..23, got \[24\]")],
)  # fmt: skip
def test_bad_tariff_inputs_are_named(change: dict, match: str) -> None:
    kw = dict(
        off_peak_per_mwh=50.0,
        shoulder_per_mwh=90.0,
        peak_per_mwh=180.0,
        shoulder_hours=[8],
        peak_hours=[17],
        carbon_kg_per_mwh=[400.0],
    )
    with pytest.raises(InputError, match=match):
        time_of_use(day_periods(DAY, TZ, 60), TZ, **{**kw, **change})


def test_demo_profile_carbon_dips_to_250_at_solar_noon() -> None:
    from contracts.profile import DEMO_PROFILE, read_profile

    c = np.array(read_profile(DEMO_PROFILE).tariffs.carbon_kg_per_mwh)
    assert c.shape == (24,)
    assert c[12] == 250.0 and c.argmin() == 12
    assert set(c[:7]) == set(c[18:]) == {450.0}  # night
    np.testing.assert_allclose(c[12 - np.arange(1, 6)], c[12 + np.arange(1, 6)])  # symmetric around noon


def _issue(entity: str, issued_at: dt.datetime, hours: int, p50: float, model: str) -> pl.DataFrame:
    return pl.DataFrame({
        "entity_id": entity, "issued_at": issued_at, "period_start": [issued_at + dt.timedelta(hours=k + 1) for k in range(hours)],
        "p50": p50, "model": model, "model_version": "3",
    }).with_columns(pl.col("issued_at", "period_start").cast(UTC))  # fmt: skip


def test_newest_issue_wins_per_hour_and_other_entities_are_ignored() -> None:
    prev = DAY - dt.timedelta(days=1)
    old = _issue(SYSTEM, _local(prev, 22), 30, 1.0, "xgboost")  # covers all of DAY
    new = _issue(SYSTEM, _local(DAY, 3), 24, 2.0, "gru")  # covers 04:00 onwards
    other = _issue("F1", _local(DAY, 5), 24, 9.0, "xgboost")  # newest of all, wrong entity
    p50, why = newest_issue_p50(pl.concat([new, other, old]), SYSTEM, DAY, TZ, source="gold_load_forecast")
    np.testing.assert_array_equal(p50, [1.0] * 4 + [2.0] * 20)
    assert why.startswith("gold_load_forecast p50 of 'system'")
    assert str(_local(prev, 22)) in why and str(_local(DAY, 3)) in why and "gru:3" in why and "xgboost:3" in why


def test_forecasts_that_miss_hours_of_the_day_give_none_and_say_how_many() -> None:
    p50, why = newest_issue_p50(
        _issue(SYSTEM, _local(DAY, 3), 24, 2.0, "gru"), SYSTEM, DAY, TZ, source="gold_solar_forecast"
    )
    assert p50 is None
    assert why == f"gold_solar_forecast covers 20/24 hours of {DAY} for entity 'system'"


def test_last_week_is_the_same_local_hour_across_a_dst_change() -> None:
    day = dt.date(2026, 3, 9)  # Monday, EDT; a week earlier was EST, so the UTC shift is 7 days - 1 hour
    src = day - dt.timedelta(days=7)
    stamps = [_local(src, 0) + dt.timedelta(hours=k) for k in range(24)]
    hour = np.array([t.astimezone(NY).hour for t in stamps], dtype=float)
    rows = [("feeder", "F1", 10.0 * hour), ("feeder", "F2", np.ones(24)), ("substation", "S1", np.full(24, 1e6))]
    hourly = pl.concat([
        pl.DataFrame({"level": level, "entity_id": e, "period_start": stamps, "mean_kw": kw}).with_columns(pl.col("period_start").cast(UTC))
        for level, e, kw in rows
    ])  # fmt: skip
    system = same_hour_last_week(hourly, SYSTEM, day, TZ)
    assert system["period_start"].to_list() == day_periods(day, TZ, 60).to_list()
    np.testing.assert_allclose(system["mean_kw"].to_numpy(), 10.0 * np.arange(24) + 1.0)  # feeders summed by local hour
    f1 = same_hour_last_week(
        hourly.filter(~((pl.col("entity_id") == "F1") & (pl.col("period_start") == _local(src, 5)))), "F1", day, TZ
    )
    assert f1.filter(pl.col("mean_kw").is_null())["period_start"].to_list() == [_local(day, 5)]
    np.testing.assert_allclose(f1["mean_kw"].drop_nulls().to_numpy(), 10.0 * np.delete(np.arange(24), 5))


def test_gross_load_adds_pv_back_and_never_goes_negative() -> None:
    gross, pv = gross_load(np.array([100.0, -50.0, 10.0]), np.array([20.0, 30.0, -5.0]))
    np.testing.assert_array_equal(pv, [20.0, 30.0, 0.0])
    np.testing.assert_array_equal(gross, [120.0, 0.0, 10.0])
    gross, pv = gross_load(np.array([100.0, -50.0]), None)
    np.testing.assert_array_equal(pv, [0.0, 0.0])
    np.testing.assert_array_equal(gross, [100.0, 0.0])


def _march_sessions() -> pl.DataFrame:
    """Per March 2019 day d: a 08:00-17:00 session and a 23:00-02:00 one, periods of 5 min from 2019-03-01."""
    rows = []
    for d in range(1, 32):
        d0 = (d - 1) * 288
        rows += [(f"day{d}", "A", d0 + 96, d0 + 204), (f"night{d}", "B", d0 + 276, d0 + 312)]
    df = pl.DataFrame(rows, schema=["session_id", "station_id", "arrival_period", "departure_period"], orient="row")
    return df.with_columns(requested_kwh=pl.lit(10.0), max_power_kw=pl.lit(7.0))


def test_ev_sessions_come_from_the_same_weekday_and_keep_their_clock_times() -> None:
    s, src = ev_sessions_for_day(DAY, TZ, _march_sessions())
    assert src.year == 2019 and src.month == 3 and src.weekday() == DAY.weekday()
    assert sorted(s["session_id"]) == [f"day{src.day}", f"night{src.day}"]
    day_row = s.filter(pl.col("station_id") == "A").row(0, named=True)
    assert (day_row["arrival_period"], day_row["departure_period"]) == (96, 204)
    assert day_row["arrival_time"] == _local(DAY, 8) and day_row["departure_time"] == _local(DAY, 17)
    night = s.filter(pl.col("station_id") == "B").row(0, named=True)
    assert night["departure_period"] == 312 and night["departure_time"] == _local(
        DAY + dt.timedelta(days=1), 2
    )  # past midnight
    # the 4-5 candidate days rotate week by week
    week = [ev_sessions_for_day(DAY + dt.timedelta(days=7 * k), TZ, _march_sessions())[1] for k in range(5)]
    assert all(a != b for a, b in zip(week, week[1:])) and week[4] == week[0]  # March 2019 has 4 Thursdays


def test_persistence_temperature_is_yesterdays_station_mean_by_local_hour() -> None:
    from optimization.daily import persistence_temperature

    prev = DAY - dt.timedelta(days=1)
    hours = [dt.datetime.combine(prev, dt.time(h), NY).astimezone(dt.timezone.utc) for h in range(24)]
    w = pl.DataFrame(
        {"observation_time": hours * 2, "temp_air_c": [float(h) for h in range(24)] + [float(h) + 2 for h in range(24)]}
    )
    w = w.with_columns(pl.col("observation_time").cast(pl.Datetime("us", "UTC")))
    got, src = persistence_temperature(w, DAY, TZ)
    np.testing.assert_allclose(got, np.arange(24) + 1.0)  # mean of the two stations, local hour by local hour
    assert "persistence" in src
    missing, why = persistence_temperature(w.filter(pl.col("observation_time") != hours[5]), DAY, TZ)
    assert missing is None and "lacks 1 local hour" in why


def test_hourly_to_periods_repeats_each_hour_and_wraps() -> None:
    from optimization.daily import hourly_to_periods

    got = hourly_to_periods(np.array([1.0, 2.0, 3.0]), 14, 15)
    np.testing.assert_array_equal(got, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 1, 1])
    with pytest.raises(InputError, match="divide an hour"):
        hourly_to_periods(np.ones(3), 5, 7)


def test_settings_reject_inconsistent_values() -> None:
    from pydantic import ValidationError

    from optimization.settings import EVObjectiveShares, OptimizationSettings, SafetySettings

    with pytest.raises(ValidationError, match="derate_full_c"):
        SafetySettings(derate_start_c=40.0, derate_full_c=35.0)
    with pytest.raises(ValidationError, match="at least one"):
        EVObjectiveShares(cost=0.0, peak=0.0, convenience=0.0)
    with pytest.raises(ValidationError):
        OptimizationSettings.model_validate({"safety": {"soc_reserve_frac": 1.5}})
    s = OptimizationSettings.model_validate({"regulation": {"price_per_mw_h": 9.0}})  # a profile section loads as is
    assert s.regulation.price_per_mw_h == 9.0 and s.ev_objective.cost == 0.5


# --------------------------------------------------------------------------------------------
# the checked load accessor; DC-OPF generation (emission factors, renewable caps)
# --------------------------------------------------------------------------------------------
def test_load_peak_refuses_a_day_of_zero_load_except_for_the_battery() -> None:
    from optimization.daily import load_peak

    kw = dict(consumer="gold_opf_dispatch", entity_id="F1", day=DAY)
    assert load_peak(np.array([1.0, 4.0, 2.0]), **kw) == 4.0
    with pytest.raises(InputError, match=r"gold_opf_dispatch 2026-03-05: the load input of 'F1' is 0 all day"):
        load_peak(np.zeros(24), **kw)
    assert load_peak(np.zeros(24), **kw, allow_zero=True) == 0.0  # a battery arbitrates without load
    for bad in (np.array([1.0, np.nan]), np.array([1.0, -2.0]), np.zeros(0)):
        with pytest.raises(InputError, match="'F1' has"):
            load_peak(bad, **kw, allow_zero=True)


def test_opf_generation_types_by_merit_order_and_caps_renewables_at_the_forecast() -> None:
    from contracts.profile import DispatchSettings, RenewableUnits
    from optimization.daily import opf_generation
    from optimization.dcopf import load_case

    ppc = load_case("case14")  # gens 0..4: c1 20, 20, 40, 40, 40 $/MWh
    before = ppc["gencost"].copy()
    disp = DispatchSettings(renewables={"case14": RenewableUnits(solar=[2, 3], wind=[4])}, wind_capacity_factor=0.3)
    solar = np.array([0.0, 50.0, 300.0])
    g = opf_generation(ppc, disp, "case14", solar, 3)
    assert g.types[2:] == ["solar", "solar", "wind"]
    # thermal: gen 0 (332 MW, mid-output marginal cost 34.3) is the cheaper 70 % of thermal capacity, gen 1 (55) the rest
    assert g.types[:2] == ["coal", "gas_ocgt"]
    factors = disp.emission_factors_t_per_mwh
    np.testing.assert_array_equal(g.co2_t_per_mwh, [factors[t] for t in g.types])
    # solar split by Pmax (100 MW each) and capped at Pmax; wind flat at 0.3 x Pmax
    np.testing.assert_allclose(g.forecast_mw[2], [0.0, 25.0, 100.0], atol=1e-6)
    np.testing.assert_allclose(g.forecast_mw[3], g.forecast_mw[2])
    np.testing.assert_allclose(g.forecast_mw[4], 0.3 * ppc["gen"][4, 8])
    # renewables run at zero marginal cost, in a copy: the case itself is unchanged
    assert (g.ppc["gencost"][2:, 4:] == 0).all() and (g.ppc["gencost"][:2] == before[:2]).all()
    np.testing.assert_array_equal(ppc["gencost"], before)
    # no PV forecast: solar capped at 0 (not scheduled), and the source says so
    none = opf_generation(ppc, disp, "case14", None, 3)
    assert (none.forecast_mw[2] == 0).all() and "no PV forecast" in none.source
    # a case without listed renewables: every generator thermal, none capped
    plain = opf_generation(ppc, disp, "case9", solar, 3)
    assert plain.forecast_mw == {} and "solar" not in plain.types
    with pytest.raises(InputError, match=r"generator\(s\) \[7\] do not exist"):
        opf_generation(ppc, DispatchSettings(renewables={"case14": RenewableUnits(solar=[7])}), "case14", solar, 3)


def test_dispatch_settings_are_validated() -> None:
    from pydantic import ValidationError

    from contracts.profile import DispatchSettings, MeritType, RenewableUnits

    with pytest.raises(ValidationError, match="add up to 1"):
        DispatchSettings(merit_types=[MeritType(type="coal", capacity_share=0.5)])
    with pytest.raises(ValidationError, match=r"lacks generator type\(s\) \['wind'\]"):
        DispatchSettings(emission_factors_t_per_mwh={"coal": 1.0, "gas_ccgt": 0.4, "gas_ocgt": 0.6, "solar": 0.0})
    with pytest.raises(ValidationError, match="not both"):
        RenewableUnits(solar=[1], wind=[1])
