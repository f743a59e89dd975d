from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import polars as pl
import pytest

from contracts.profile import DEMO_PROFILE, read_profile
from models.grid.demand_response import (
    DRConfig,
    dr_customers,
    feeder_capacity_kw,
    latest_feeder_forecast,
    plan_events,
    plan_feeder_events,
    shifted_feeder_load,
)
from models.grid.features import FeatureInputError
from models.grid.recommend import DAYS_PER_MONTH, recommend

PROFILE = read_profile(DEMO_PROFILE)
DR = PROFILE.demand_response
NY_ = PROFILE.timezone


def _segments() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "meter_id": ["M1", "M2", "M3"],
            "customer_id": ["C1", "C2", "C3"],
            "segment": ["ev_charging", "efficiency_optimiser", "night_owl"],
            "avg_daily_kwh": [30.0, 10.0, 12.0],
            "peak_kwh_per_day": [12.0, 0.5, 3.0],
            "provisional": [False, False, True],
        }
    )


def test_recommendation_formulas():
    tariffs = PROFILE.tariffs.model_copy(
        update={
            "retail": PROFILE.tariffs.retail.model_copy(
                update={"flat_per_kwh": 0.16, "peak_per_kwh": 0.32, "offpeak_per_kwh": 0.11}
            )
        }
    )
    ref = pl.DataFrame({"meter_id": ["M1", "M2", "M3"], "dr_opt_in": [False, True, False]})
    r = recommend(_segments(), ref, tariffs, DR)
    assert set(r["customer_id"]) == {"C1", "C2"}  # provisional C3 skipped
    get = {(c, k): v for c, k, v in r.select("customer_id", "kind", "est_monthly_savings").iter_rows()}
    e_peak, e_all = 12.0 * DAYS_PER_MONTH, 30.0 * DAYS_PER_MONTH
    assert get[("C1", "time_shift")] == pytest.approx(round(0.6 * e_peak * 0.21, 2))
    assert get[("C1", "tariff")] == pytest.approx(round(e_all * 0.16 - (e_peak * 0.32 + (e_all - e_peak) * 0.11), 2))
    assert get[("C1", "dr_enrolment")] == pytest.approx(2 * 5.0 * 1.5)
    assert get[("C2", "dr_enrolment")] == 0.0  # already enrolled
    low_peak = r.filter((pl.col("customer_id") == "C2") & (pl.col("kind") == "tariff")).row(0, named=True)
    assert low_peak["recommended"] and low_peak["message"].startswith("Switch")


def test_a_segment_with_its_own_retail_tariff_is_priced_by_it():
    ev_tariff = PROFILE.tariffs.retail.model_copy(
        update={"flat_per_kwh": 0.20, "peak_per_kwh": 0.40, "offpeak_per_kwh": 0.08}
    )
    tariffs = PROFILE.tariffs.model_copy(update={"retail_by_segment": {"ev_charging": ev_tariff}})
    base = {
        (c, k): v
        for c, k, v in recommend(_segments(), None, PROFILE.tariffs, DR)
        .select("customer_id", "kind", "est_monthly_savings")
        .iter_rows()
    }
    got = {
        (c, k): v
        for c, k, v in recommend(_segments(), None, tariffs, DR)
        .select("customer_id", "kind", "est_monthly_savings")
        .iter_rows()
    }
    e_peak, e_all = 12.0 * DAYS_PER_MONTH, 30.0 * DAYS_PER_MONTH
    assert got[("C1", "time_shift")] == pytest.approx(round(0.6 * e_peak * (0.40 - 0.08), 2))  # C1 is ev_charging
    assert got[("C1", "tariff")] == pytest.approx(round(e_all * 0.20 - (e_peak * 0.40 + (e_all - e_peak) * 0.08), 2))
    assert got[("C1", "time_shift")] != base[("C1", "time_shift")]
    assert {k: v for k, v in got.items() if k[0] == "C2"} == {
        k: v for k, v in base.items() if k[0] == "C2"
    }  # default tariff


def _forecast(values: list[float]) -> pl.DataFrame:
    t0 = datetime(2026, 7, 1, 18, tzinfo=timezone.utc)
    return pl.DataFrame(
        {"time": [t0 + timedelta(hours=i) for i in range(len(values))], "forecast_kw": [float(v) for v in values]}
    )


def _customers() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "meter_id": [f"M{i}" for i in range(6)],
            "customer_id": [f"C{i}" for i in range(6)],
            "segment": ["ev_charging", "ev_charging", "seasonal_heavy_hvac", "low_use", "night_owl", "ev_charging"],
            "dr_opt_in": [True, True, True, True, True, False],
            "peak_kw": [8.0, 6.0, 10.0, 50.0, 2.0, 99.0],
        }
    )


def test_event_created_for_exceedance_with_selected_participants():
    ev, parts = plan_events(
        _forecast([80, 95, 104, 110, 90, 120, 80]),
        _customers(),
        DRConfig(100, NY_, DR.model_copy(update={"margin": 0.0})),
    )
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
    again, _ = plan_events(
        _forecast([80, 95, 104, 110, 90, 120, 80]),
        _customers(),
        DRConfig(100, NY_, DR.model_copy(update={"margin": 0.0})),
    )
    assert again["event_id"].to_list() == ev["event_id"].to_list()


def test_no_event_below_capacity_and_bad_forecast_named():
    ev, parts = plan_events(_forecast([50, 60, 70]), _customers(), DRConfig(100, NY_, DR))
    assert ev.height == 0 and parts.height == 0
    with pytest.raises(FeatureInputError, match="forecast_kw missing"):
        plan_events(_forecast([50, float("nan")]), _customers(), DRConfig(100, NY_, DR))
    with pytest.raises(ValueError, match="capacity_kw"):
        DRConfig(0, NY_, DR)


NY = "America/New_York"
UTC = timezone.utc


def _issues() -> pl.DataFrame:
    """gold_load_forecast-like rows: two issues for F1 (the later one overlaps the earlier), one for F2,
    a transformer-level row and a row of the next local day."""
    rows = []
    for issued, hours, kw in (
        (datetime(2026, 6, 7, 4, tzinfo=UTC), range(4, 8), 100.0),
        (datetime(2026, 6, 8, 5, tzinfo=UTC), range(6, 10), 200.0),
    ):
        for h in hours:
            rows.append(
                ("feeder", "F1", issued, datetime(2026, 6, 8, h, tzinfo=UTC), kw, "a:v1" if kw < 150 else "a:v2")
            )
    rows.append(
        ("feeder", "F2", datetime(2026, 6, 7, 4, tzinfo=UTC), datetime(2026, 6, 8, 4, tzinfo=UTC), 50.0, "a:v1")
    )
    rows.append(
        ("transformer", "T1", datetime(2026, 6, 7, 4, tzinfo=UTC), datetime(2026, 6, 8, 4, tzinfo=UTC), 9.0, "a:v1")
    )
    rows.append(
        ("feeder", "F1", datetime(2026, 6, 8, 5, tzinfo=UTC), datetime(2026, 6, 9, 4, tzinfo=UTC), 300.0, "a:v2")
    )
    df = pl.DataFrame(
        rows, schema=["level", "entity_id", "issued_at", "period_start", "p50", "model_version"], orient="row"
    )
    return df.with_columns((pl.col("p50") * 0.8).alias("p10"), (pl.col("p50") * 1.2).alias("p90"))


def test_latest_feeder_forecast_takes_the_newest_issue_per_period_of_the_local_day():
    f, source = latest_feeder_forecast(_issues(), date(2026, 6, 8), NY, "p50")
    got = {(e, t.hour): kw for t, e, kw in f.iter_rows()}
    # F1 04..05 UTC only in the first issue, 06..07 overwritten by the second, 08..09 only in the second
    assert got == {
        ("F1", 4): 100.0,
        ("F1", 5): 100.0,
        ("F1", 6): 200.0,
        ("F1", 7): 200.0,
        ("F1", 8): 200.0,
        ("F1", 9): 200.0,
        ("F2", 4): 50.0,
    }
    assert "2026-06-08 05:00:00" in source and "['a:v1', 'a:v2']" in source
    p90, _ = latest_feeder_forecast(_issues(), date(2026, 6, 8), NY, "p90")
    assert p90["forecast_kw"].to_list() == pytest.approx([1.2 * v for v in f["forecast_kw"].to_list()])
    empty, _ = latest_feeder_forecast(_issues(), date(2026, 6, 10), NY)
    assert empty.height == 0 and empty.columns == ["time", "entity_id", "forecast_kw"]
    with pytest.raises(ValueError, match="p10, p50 or p90"):
        latest_feeder_forecast(_issues(), date(2026, 6, 8), NY, "p95")


def test_shifted_feeder_load_keeps_the_local_hour_across_a_dst_change():
    # 2026-03-01 is EST (UTC-5), a week later is EDT (UTC-4): local noon moves from 17:00 to 16:00 UTC
    hourly = pl.DataFrame(
        {
            "level": ["feeder", "feeder", "transformer"],
            "entity_id": ["F1", "F1", "T1"],
            "period_start": [
                datetime(2026, 3, 1, 17, tzinfo=UTC),
                datetime(2026, 3, 1, 18, tzinfo=UTC),
                datetime(2026, 3, 1, 17, tzinfo=UTC),
            ],
            "mean_kw": [10.0, 11.0, 1.0],
        }
    )
    f = shifted_feeder_load(hourly, 7, date(2026, 3, 8), NY)
    assert f.columns == ["time", "entity_id", "forecast_kw"]
    assert f.rows() == [
        (datetime(2026, 3, 8, 16, tzinfo=UTC), "F1", 10.0),
        (datetime(2026, 3, 8, 17, tzinfo=UTC), "F1", 11.0),
    ]
    assert shifted_feeder_load(hourly, 7, date(2026, 3, 9), NY).height == 0  # rows land on day + 7 only


def test_dr_customers_fill_ids_peak_and_opt_in_from_the_reference():
    seg = pl.DataFrame(
        {
            "meter_id": ["M1", "M2", "M3"],
            "customer_id": ["C1", None, "C3"],
            "segment": ["ev_charging", "night_owl", "ev_charging"],
        },
        schema_overrides={"customer_id": pl.Utf8},
    )
    ref = pl.DataFrame(
        {"meter_id": ["M1", "M2"], "feeder_id": ["F1", "F2"], "dr_opt_in": [True, None], "customer_id": ["X1", "C2"]},
        schema_overrides={"dr_opt_in": pl.Boolean},
    )
    peak = pl.DataFrame({"meter_id": ["M1"], "peak_kw": [4.5]})
    c = {r["meter_id"]: r for r in dr_customers(seg, ref, peak).iter_rows(named=True)}
    assert c["M1"]["customer_id"] == "C1" and c["M2"]["customer_id"] == "C2"  # segments win, reference fills gaps
    assert (c["M1"]["peak_kw"], c["M2"]["peak_kw"], c["M3"]["peak_kw"]) == (4.5, 0.0, 0.0)
    assert (c["M1"]["dr_opt_in"], c["M2"]["dr_opt_in"], c["M3"]["dr_opt_in"]) == (True, False, False)
    assert (c["M1"]["feeder_id"], c["M3"]["feeder_id"]) == ("F1", None)


def test_feeder_capacity_is_explicit_or_a_share_of_the_transformer_ratings():
    ref_t = pl.DataFrame(
        {"transformer_id": ["T1", "T2", "T3"], "feeder_id": ["F1", "F1", "F2"], "rating_kva": [50.0, 100.0, 75.0]}
    )
    assert feeder_capacity_kw(ref_t, share=0.8) == pytest.approx({"F1": 120.0, "F2": 60.0})
    assert feeder_capacity_kw(ref_t, {"F2": 10.0, "F9": 5.0}, 0.5) == pytest.approx({"F1": 75.0, "F2": 10.0})


def test_plan_feeder_events_plans_each_feeder_against_its_own_capacity():
    f1 = _forecast([80, 120, 80]).with_columns(pl.lit("F1").alias("entity_id"))
    f2 = _forecast([80, 120, 80]).with_columns(pl.lit("F2").alias("entity_id"))
    customers = _customers().with_columns(pl.Series("feeder_id", ["F1", "F1", "F2", "F2", "F2", "F1"]))
    ev, pa = plan_feeder_events(
        pl.concat([f1, f2]), customers, {"F1": 100.0, "F2": 150.0}, DR.model_copy(update={"margin": 0.0}), NY
    )
    assert ev["scope"].to_list() == ["F1"]  # F2's 120 kW stays under its 150 kW
    assert ev.row(0, named=True)["target_reduction_kw"] == pytest.approx(20.0)
    assert set(pa["customer_id"]) == {"C0", "C1"}  # only F1's opted-in customers take part (and all: 7 of 20 kW)
    with pytest.raises(ValueError, match="'F2' has no transformers"):
        plan_feeder_events(f2, customers, {"F1": 100.0}, DR, NY)
    ev0, pa0 = plan_feeder_events(f1.head(0), customers, {"F1": 100.0}, DR, NY)
    assert ev0.height == 0 and pa0.height == 0 and "event_id" in ev0.columns and "incentive" in pa0.columns
