"""Labelled events are consistent with the data they label.

``summer`` and ``summer_base`` share fleet, weather and per-day noise; only the events differ, so
the base run is the physical truth each event is checked against."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from simulator import EventRates, SimConfig, Simulator


@pytest.fixture(scope="module")
def readings(summer):
    days = [summer.cfg.start + timedelta(days=i) for i in range(summer.cfg.days)]
    return pl.concat([summer.meter_readings(d) for d in days])


@pytest.fixture(scope="module")
def base_readings(summer_base):
    days = [summer_base.cfg.start + timedelta(days=i) for i in range(summer_base.cfg.days)]
    return pl.concat([summer_base.meter_readings(d) for d in days])


@pytest.fixture(scope="module")
def scada(summer):
    days = [summer.cfg.start + timedelta(days=i) for i in range(summer.cfg.days)]
    return pl.concat([summer.scada(d) for d in days])


@pytest.fixture(scope="module")
def base_scada(summer_base):
    days = [summer_base.cfg.start + timedelta(days=i) for i in range(summer_base.cfg.days)]
    return pl.concat([summer_base.scada(d) for d in days])


@pytest.fixture(scope="module")
def events(summer):
    return summer.truth()["truth_events"]


def _outage(events: pl.DataFrame, ref_meters: pl.DataFrame) -> pl.DataFrame:
    """(meter_id, start, end) of supply outages below failed transformers."""
    f = events.filter(pl.col("event_type") == "transformer_failure")
    return f.join(
        ref_meters.select("meter_id", "transformer_id"), left_on="asset_id", right_on="transformer_id"
    ).select("meter_id", pl.col("start_time").alias("o_start"), pl.col("end_time").alias("o_end"))


def _in_window(df: pl.DataFrame, ev: dict, time_col: str = "reading_time") -> pl.DataFrame:
    return df.filter((pl.col(time_col) >= ev["start_time"]) & (pl.col(time_col) < ev["end_time"]))


def _without_outage(df: pl.DataFrame, outage: pl.DataFrame, meter: str) -> pl.DataFrame:
    for o in outage.filter(pl.col("meter_id") == meter).iter_rows(named=True):
        df = df.filter(~((pl.col("reading_time") >= o["o_start"]) & (pl.col("reading_time") < o["o_end"])))
    return df


def test_every_event_kind_occurs_and_ids_are_known(summer, events):
    kinds = set(events["event_type"])
    assert kinds == {"voltage_sag", "stuck_meter", "zero_meter", "theft", "transformer_overheat", "transformer_failure"}
    ref = summer.reference()
    meters = set(ref["ref_meters"]["meter_id"])
    txs = set(ref["ref_transformers"]["transformer_id"])
    for row in events.iter_rows(named=True):
        assert row["end_time"] > row["start_time"]
        assert row["asset_id"] in (meters if row["asset_type"] == "meter" else txs)
    assert events["event_id"].is_unique().all()


def test_stuck_meter_readings_are_frozen(summer, readings, events):
    outage = _outage(events, summer.reference()["ref_meters"])
    checked = 0
    for ev in events.filter(pl.col("event_type") == "stuck_meter").iter_rows(named=True):
        r = _without_outage(
            _in_window(readings.filter(pl.col("meter_id") == ev["asset_id"]), ev), outage, ev["asset_id"]
        )
        if r.height < 2:
            continue
        for c in ("consumption_kwh", "demand_kw", "voltage", "current_amps", "power_factor"):
            assert r[c].n_unique() == 1, c
        assert r["demand_kw"][0] == pytest.approx(ev["magnitude"])
        checked += 1
    assert checked >= 2


def test_zero_meter_reads_zero_while_voltage_stays_live(summer, readings, events):
    outage = _outage(events, summer.reference()["ref_meters"])
    checked = 0
    for ev in events.filter(pl.col("event_type") == "zero_meter").iter_rows(named=True):
        r = _without_outage(
            _in_window(readings.filter(pl.col("meter_id") == ev["asset_id"]), ev), outage, ev["asset_id"]
        )
        if r.height == 0:
            continue
        assert (r["consumption_kwh"] == 0).all() and (r["demand_kw"] == 0).all() and (r["current_amps"] == 0).all()
        assert r["voltage"].null_count() == 0 and r["voltage"].min() > 150  # supply is live (sags aside)
        checked += 1
    assert checked >= 2


def test_theft_records_a_share_of_the_true_consumption(summer, readings, base_readings, events):
    outage = _outage(events, summer.reference()["ref_meters"])
    checked = 0
    for ev in events.filter(pl.col("event_type") == "theft").iter_rows(named=True):
        m = ev["asset_id"]
        others = events.filter((pl.col("asset_id") == m) & (pl.col("event_type") != "theft"))
        if others.height:
            continue
        r = _without_outage(_in_window(readings.filter(pl.col("meter_id") == m), ev), outage, m)
        b = base_readings.filter(pl.col("meter_id") == m).join(r.select("reading_time"), on="reading_time")
        if r.height == 0:
            continue
        kept = 1.0 - ev["magnitude"]
        assert np.allclose(r["demand_kw"].to_numpy(), b["demand_kw"].to_numpy() * kept, atol=1.1e-4)
        # outside the window the meter tells the truth
        out = _without_outage(
            readings.filter((pl.col("meter_id") == m) & (pl.col("reading_time") < ev["start_time"])), outage, m
        )
        bo = base_readings.filter(pl.col("meter_id") == m).join(out.select("reading_time"), on="reading_time")
        assert out["demand_kw"].equals(bo["demand_kw"])
        checked += 1
    assert checked >= 2


def test_voltage_sag_dips_every_meter_of_the_transformer_by_its_depth(summer, readings, base_readings, events):
    ref = summer.reference()["ref_meters"]
    step = np.timedelta64(30, "m")
    checked = 0
    for ev in events.filter(pl.col("event_type") == "voltage_sag").iter_rows(named=True):
        # compare with the base run where nothing else touches the window: skip the sag if another
        # transformer event overlaps it, and leave out meters with their own event then
        lo = ev["start_time"] - timedelta(minutes=30)
        overlaps = (
            (pl.col("start_time") < ev["end_time"]) & (pl.col("end_time") > lo) & (pl.col("event_id") != ev["event_id"])
        )
        if events.filter(overlaps & (pl.col("asset_id") == ev["asset_id"])).height:
            continue
        busy = events.filter(overlaps & (pl.col("asset_type") == "meter"))["asset_id"].implode()
        meters = ref.filter((pl.col("transformer_id") == ev["asset_id"]) & ~pl.col("meter_id").is_in(busy))["meter_id"]
        r = readings.filter(
            pl.col("meter_id").is_in(meters.implode())
            & (pl.col("reading_time") > lo)
            & (pl.col("reading_time") < ev["end_time"])
        )
        b = base_readings.join(r.select("meter_id", "reading_time"), on=["meter_id", "reading_time"])
        if r.height == 0:
            continue
        r = r.sort("meter_id", "reading_time")
        b = b.sort("meter_id", "reading_time")
        t = r["reading_time"].dt.replace_time_zone(None).to_numpy()
        s = np.datetime64(ev["start_time"].replace(tzinfo=None), "us")
        e = np.datetime64(ev["end_time"].replace(tzinfo=None), "us")
        overlap = np.clip(np.minimum(t + step, e) - np.maximum(t, s), np.timedelta64(0), None) / step
        expected = b["voltage"].to_numpy() * (1 - ev["magnitude"] * overlap)
        assert np.allclose(r["voltage"].to_numpy(), expected, atol=2e-4)
        assert r["meter_id"].n_unique() == meters.len()
        checked += 1
    assert checked >= 3


def test_overheating_precedes_failure_by_48_to_72_hours(summer, events, scada, base_scada):
    oh = events.filter(pl.col("event_type") == "transformer_overheat")
    fl = events.filter(pl.col("event_type") == "transformer_failure")
    assert oh.height == fl.height >= 1
    pairs = oh.join(fl, on="asset_id", suffix="_f")
    assert pairs.height == oh.height
    p0, _p1 = summer.day_bounds(summer.cfg.start)[0], summer.day_bounds(summer.cfg.end)[1]
    for ev in pairs.iter_rows(named=True):
        lead_h = (ev["start_time_f"] - ev["start_time"]).total_seconds() / 3600
        assert 48.0 <= lead_h <= 72.0
        assert ev["end_time"] == ev["start_time_f"]
        # hot spot climbs above the base run during the overheating and is near it at the start
        tx = ev["asset_id"]
        s = scada.filter(pl.col("transformer_id") == tx).join(
            base_scada.filter(pl.col("transformer_id") == tx).select(
                "sample_time", pl.col("hot_spot_temp_c").alias("base")
            ),
            on="sample_time",
        )
        w = s.filter((pl.col("sample_time") >= ev["start_time"]) & (pl.col("sample_time") < ev["start_time_f"]))
        if np.datetime64(ev["start_time"].replace(tzinfo=None), "us") >= p0 and w.height > 10:
            excess = (w["hot_spot_temp_c"] - w["base"]).to_numpy()
            assert excess[0] < 0.1 * ev["magnitude"]
            assert excess[-1] > 0.6 * ev["magnitude"]
            assert np.all(np.diff(excess) > -0.05)  # rising all the way (up to rounding)


def test_failed_transformer_is_dead_until_repair(summer, readings, events, scada):
    ref = summer.reference()["ref_meters"]
    checked = 0
    for ev in events.filter(pl.col("event_type") == "transformer_failure").iter_rows(named=True):
        meters = ref.filter(pl.col("transformer_id") == ev["asset_id"])["meter_id"].implode()
        r = _in_window(readings.filter(pl.col("meter_id").is_in(meters)), ev)
        s = _in_window(scada.filter(pl.col("transformer_id") == ev["asset_id"]), ev, "sample_time")
        if r.height == 0:
            continue
        assert (r["consumption_kwh"] == 0).all() and (r["demand_kw"] == 0).all() and (r["current_amps"] == 0).all()
        assert r["voltage"].null_count() == r.height  # no supply to measure
        assert (s["load_kva"] == 0).all() and (s["voltage_v"] == 0).all()
        after = readings.filter(pl.col("meter_id").is_in(meters) & (pl.col("reading_time") >= ev["end_time"]))
        if after.height:
            assert after["voltage"].null_count() == 0 and after["demand_kw"].abs().sum() > 0
        checked += 1
    assert checked >= 1


def test_absent_mode_drops_the_readings_of_an_outage(summer, readings):
    cfg = SimConfig(**{**summer.cfg.__dict__, "outage_readings": "absent"})
    absent = Simulator(cfg)
    d = summer.cfg.start + timedelta(days=4)
    zero = summer.meter_readings(d)
    gone = absent.meter_readings(d)
    dead = zero.filter(pl.col("voltage").is_null())
    assert dead.height > 0
    assert gone.height == zero.height - dead.height
    assert gone.equals(zero.filter(pl.col("voltage").is_not_null()))


def test_older_less_maintained_heavier_loaded_transformers_fail_more():
    cfg = SimConfig(
        n_meters=20000,
        start=date(2026, 1, 1),
        days=365,
        seed=2,
        events=EventRates(0, 0, 0, 0, failures_per_transformer_year=0.2),
    )
    sim = Simulator(cfg)
    tx = sim.reference()["ref_transformers"]
    failed = set(sim.truth()["truth_events"].filter(pl.col("event_type") == "transformer_failure")["asset_id"])
    tx = tx.with_columns(
        pl.col("transformer_id").is_in(list(failed)).alias("failed"),
        (2026 - pl.col("install_year")).alias("age"),
        ((pl.date(2026, 1, 1) - pl.col("last_maintenance")).dt.total_days() / 365.25).alias("since_maint"),
    )
    share = tx["failed"].mean()
    assert 0.1 < share < 0.3  # ~0.2 per transformer-year, as configured
    g = tx.group_by("failed").agg(pl.col("age").mean(), pl.col("since_maint").mean()).sort("failed")
    assert g["age"][1] > g["age"][0] + 3
    assert g["since_maint"][1] > g["since_maint"][0] + 0.5


def test_default_rates_give_enough_events_to_learn_from():
    sim = Simulator(SimConfig(n_meters=2000, start=date(2026, 1, 1), days=365, seed=7))
    ev = sim.truth()["truth_events"]
    n_tx = sim.reference()["ref_transformers"].height
    counts = dict(ev["event_type"].value_counts().iter_rows())
    assert 0.01 * n_tx <= counts.get("transformer_failure", 0) <= 0.08 * n_tx
    assert counts["voltage_sag"] >= 20
    for k in ("stuck_meter", "zero_meter", "theft"):
        assert counts[k] >= 8, k


def test_metering_faults_do_not_change_the_physical_load(summer, summer_base, events):
    """Theft, stuck and zero meters and sags change what meters report, not what flows: SCADA load of
    a transformer without a failure that day equals the event-free run, so theft shows up as a gap
    between the transformer and the sum of its meters."""
    d = summer.cfg.start + timedelta(days=1)
    t0, t1 = summer.day_bounds(d)
    fails = events.filter(pl.col("event_type") == "transformer_failure")
    s = summer.scada(d)
    b = summer_base.scada(d)
    ok = [t for t in s["transformer_id"].unique() if not fails.filter(pl.col("asset_id") == t).height]
    assert ok
    sel = pl.col("transformer_id").is_in(ok)
    assert s.filter(sel)["load_kva"].equals(b.filter(sel)["load_kva"])
    thieves = events.filter(
        (pl.col("event_type") == "theft") & (pl.col("start_time") < pl.lit(t0).dt.replace_time_zone("UTC"))
    )
    assert thieves.height
    mr = summer.meter_readings(d).filter(pl.col("meter_id").is_in(thieves["asset_id"].implode()))
    mb = summer_base.meter_readings(d).filter(pl.col("meter_id").is_in(thieves["asset_id"].implode()))
    assert mr["consumption_kwh"].sum() < 0.8 * mb["consumption_kwh"].sum()
