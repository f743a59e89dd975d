"""Gold rollups: the grains agree, levels add up, DST days have the right number of hours."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from contracts import TABLES
from lake import gold

UTC = dt.timezone.utc


def _silver(rows):
    return pl.DataFrame(
        rows,
        schema={
            "meter_id": pl.Utf8,
            "reading_time": pl.Datetime("us", "UTC"),
            "consumption_kwh": pl.Float64,
            "demand_kw": pl.Float64,
            "voltage": pl.Float64,
            "quality_flag": pl.Utf8,
        },
        orient="row",
    )


@pytest.fixture()
def topo():
    meters = pl.DataFrame(
        {"meter_id": ["A", "B", "C"], "transformer_id": ["T1", "T1", "T2"], "feeder_id": ["F1", "F1", "F1"]}
    )
    transformers = pl.DataFrame({"transformer_id": ["T1", "T2"], "feeder_id": ["F1", "F1"], "rating_kva": [10.0, 50.0]})
    return meters, transformers


def test_levels_add_up_and_15_and_30_minute_meters_mix(topo):
    meters, transformers = topo
    t0 = dt.datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
    rows = []
    # A: 15-minute meter at 4 kW, B: 30-minute meter at 6 kW, C: 30-minute meter at 2 kW
    for q in range(4):
        rows.append(("A", t0 + dt.timedelta(minutes=15 * q), 1.0, 4.0, 230.0, "ok"))
    for h in range(2):
        rows.append(("B", t0 + dt.timedelta(minutes=30 * h), 3.0, 6.0, 231.0, "warning"))
        rows.append(("C", t0 + dt.timedelta(minutes=30 * h), 1.0, 2.0, 232.0, "ok"))
    day = dt.date(2026, 7, 1)
    hourly = gold.load_hourly(_silver(rows), meters, transformers, day)
    TABLES["gold_load_hourly"].conform(hourly)  # the declared schema holds
    get = lambda lvl, eid: hourly.filter((pl.col("level") == lvl) & (pl.col("entity_id") == eid)).row(0, named=True)  # noqa: E731
    assert get("meter", "A")["energy_kwh"] == 4.0 and get("meter", "A")["peak_kw"] == 4.0
    t1 = get("transformer", "T1")
    # peak of the sum on a common 30-minute grid: 4 + 6 = 10 kW (not 6, as a naive 15-minute sum would give)
    assert t1["energy_kwh"] == 10.0 and t1["peak_kw"] == 10.0 and t1["loading_pct_max"] == pytest.approx(100.0)
    assert t1["n_flagged"] == 2 and t1["n_readings"] == 6
    f1 = get("feeder", "F1")
    assert f1["energy_kwh"] == 12.0 and f1["peak_kw"] == 12.0 and f1["rating_kva"] is None


def test_daily_and_monthly_agree_with_hourly_and_dst_days_have_their_hours(topo):
    meters, transformers = topo
    tz = "America/New_York"
    out_daily = []
    for day in (dt.date(2026, 3, 7), dt.date(2026, 3, 8), dt.date(2026, 11, 1)):
        start = pl.select(
            pl.lit(dt.datetime(day.year, day.month, day.day)).dt.replace_time_zone(tz).dt.convert_time_zone("UTC")
        ).item()
        end = pl.select(
            pl.lit(dt.datetime.combine(day + dt.timedelta(days=1), dt.time()))
            .dt.replace_time_zone(tz)
            .dt.convert_time_zone("UTC")
        ).item()
        n = int((end - start).total_seconds() // 1800)
        rows = [("A", start + dt.timedelta(minutes=30 * i), 0.5, 1.0, 230.0, "ok") for i in range(n)]
        hourly = gold.load_hourly(_silver(rows), meters, transformers, day)
        hours = hourly.filter(pl.col("level") == "meter")["period_start"].n_unique()
        assert hours == {dt.date(2026, 3, 8): 23, dt.date(2026, 11, 1): 25}.get(day, 24)
        daily = gold.load_daily(hourly, day, tz)
        TABLES["gold_load_daily"].conform(daily)
        a = daily.filter(pl.col("entity_id") == "A").row(0, named=True)
        assert a["energy_kwh"] == pytest.approx(hourly.filter(pl.col("entity_id") == "A")["energy_kwh"].sum())
        assert a["mean_kw"] == pytest.approx(1.0)  # 0.5 kWh per half hour, whatever the day length
        assert a["period_start"] == start
        out_daily.append(daily)
    monthly = gold.load_monthly(
        pl.concat(out_daily).filter(pl.col("date") < dt.date(2026, 4, 1)), dt.date(2026, 3, 1), tz
    )
    TABLES["gold_load_monthly"].conform(monthly)
    a = monthly.filter(pl.col("entity_id") == "A").row(0, named=True)
    assert a["days"] == 2 and a["energy_kwh"] == pytest.approx((24 + 23) * 1.0)
    assert a["mean_kw"] == pytest.approx(1.0)  # 47 kWh over the 47 hours of those two days


def test_grid_health_flags_overloaded_transformers_and_voltage_spread(topo):
    meters, transformers = topo
    t0 = dt.datetime(2026, 7, 1, 16, tzinfo=UTC)
    silver = _silver(
        [
            ("A", t0, 1.0, 2.0, 205.0, "warning"),
            ("B", t0, 1.0, 2.0, 230.0, "ok"),
            ("C", t0, 9.0, 18.0, 251.0, "anomaly"),
        ]
    )
    scada = pl.DataFrame(
        {"transformer_id": ["T1", "T1", "T2"], "load_kva": [6.0, 11.0, 20.0], "hot_spot_temp_c": [70.0, 95.0, 60.0]}
    )
    gh = gold.grid_health_daily(silver, scada, meters, transformers, dt.date(2026, 7, 1))
    TABLES["gold_grid_health_daily"].conform(gh)
    r = gh.row(0, named=True)
    assert (r["feeder_id"], r["n_readings"], r["n_transformers"]) == ("F1", 3, 2)
    assert r["transformers_over_100pct"] == 1 and r["transformers_over_80pct"] == 1
    assert r["max_loading_pct"] == pytest.approx(110.0) and r["max_hot_spot_c"] == 95.0
    assert r["pct_voltage_outside_210_250"] == pytest.approx(200 / 3) and r["n_anomaly_flags"] == 1


@pytest.mark.parametrize("interval", [30, 15])
def test_integer_keyed_hourly_equals_the_id_keyed_reference_to_the_bit(interval):
    """load_hourly groups and sorts on integer codes; the id-keyed reference gives the very same frame (values to
    the bit, row order, dtypes) for 30-minute meters (one reading a slot), 15-minute meters (two), a meter whose
    transformer is unknown, readings out of order, and a meter ref_meters does not know (the reference path)."""
    from simulator import SimConfig, Simulator

    day = dt.date(2026, 3, 4)
    sim = Simulator(SimConfig(n_meters=60, start=day, days=1, seed=3, interval_minutes=interval))
    ref = sim.reference()
    meters, transformers = ref["ref_meters"], ref["ref_transformers"]
    silver = sim.meter_readings(day).with_columns(
        pl.when(pl.int_range(pl.len()) % 97 == 0).then(pl.lit("anomaly")).otherwise(pl.lit("ok")).alias("quality_flag")
    )
    silver = silver.sample(fraction=1.0, shuffle=True, seed=1)  # silver's row order is the files'
    # a meter without a transformer in the reference: its own null group at the coarser levels
    meters = meters.with_columns(
        pl.when(pl.col("meter_id") == meters["meter_id"][5])
        .then(None)
        .otherwise(pl.col("transformer_id"))
        .alias("transformer_id")
    )
    got = gold.load_hourly(silver, meters, transformers, day)
    want = gold._load_hourly_by_id(silver, meters, transformers, day)
    assert got.schema == want.schema
    assert got.equals(want)
    for c in ("energy_kwh", "peak_kw", "mean_kw"):
        assert got[c].to_numpy().tobytes() == want[c].to_numpy().tobytes()
    assert got.filter(pl.col("level") == "meter").height == meters.height * 24
    # a reading of a meter ref_meters does not know: the id-keyed path, which keeps it (null topology)
    stray = silver.head(1).with_columns(pl.lit("MX-UNKNOWN").alias("meter_id"))
    got = gold.load_hourly(pl.concat([silver, stray]), meters, transformers, day)
    assert got.equals(gold._load_hourly_by_id(pl.concat([silver, stray]), meters, transformers, day))
    assert "MX-UNKNOWN" in got["entity_id"].to_list()
