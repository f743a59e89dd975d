"""Issue 14: the ``incidents`` landing source. The simulator records incidents as a utility would
(late, incomplete, a few wrong or false), and they go through the same bronze/silver/quarantine
path as the readings, with their own bad-input handling (record key, allowed values, timestamps)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from contracts import DEFAULT_TIMEZONE, INCIDENT_TYPES, SOURCES
from lake.ingest import ingest_partition, known_entity_ids

SRC = SOURCES["incidents"]
DAY = dt.date(2026, 11, 1)  # the fall-back day: a naive local time in 01:00-02:00 is ambiguous


@pytest.fixture(scope="module")
def recorded():
    from simulator import EventRates, SimConfig, Simulator

    rates = EventRates(
        failures_per_transformer_year=5.0,
        stuck_per_meter_year=0.6,
        zero_per_meter_year=0.6,
        theft_per_meter_year=0.6,
        sags_per_transformer_year=20.0,
    )
    sim = Simulator(SimConfig(n_meters=600, start=dt.date(2026, 3, 1), days=120, seed=4, events=rates))
    return sim, sim.truth()["truth_events"], sim.incident_records()


def test_the_simulator_records_a_share_of_events_late_and_some_wrong(recorded):
    sim, ev, inc = recorded
    cfg = sim.cfg.incidents
    true = inc.filter(pl.col("event_id").is_not_null()).join(
        ev.select("event_id", "event_type", pl.col("start_time").alias("t0")), on="event_id"
    )
    # recorded share per type, among events that could be confirmed before the period ended (no censoring)
    end = ev["end_time"].max()
    early = ev.filter(pl.col("start_time") < end - dt.timedelta(days=60))
    got = (
        early.join(true.select("event_id"), on="event_id", how="left", coalesce=False)
        .group_by("event_type")
        .agg(pl.col("event_id_right").is_not_null().mean().alias("share"), pl.len().alias("n"))
    )
    for t, share, n in got.iter_rows():
        want = cfg.confirm_share[t]
        assert abs(share - want) <= max(0.15, 2.5 * (want * (1 - want) / n) ** 0.5), (t, share, n)
    # reported after the start, confirmed after the report, within the configured delays
    lag_rep = (true["reported_at"] - true["t0"]).dt.total_seconds() / 3600
    lag_con = (true["confirmed_at"] - true["reported_at"]).dt.total_seconds() / 3600
    hi_rep = max(h for _, h in cfg.report_hours.values())
    hi_con = max(h for _, h in cfg.confirm_hours.values())
    assert lag_rep.min() >= -1 / 60 and lag_rep.max() <= hi_rep and lag_con.min() >= -1 / 60 and lag_con.max() <= hi_con
    assert ((true["confirmed_at"] - true["t0"]).dt.total_hours().max()) >= 14 * 24  # some take weeks
    fails = true.filter(pl.col("event_type") == "transformer_failure")
    assert fails.height and (fails["confirmed_at"] - fails["t0"]).dt.total_hours().max() <= 14  # failures: within hours
    wrong = true.filter(pl.col("incident_type") != pl.col("event_type"))
    assert 0 < wrong.height <= 0.1 * true.height
    false = inc.filter(pl.col("outcome") == "false_report")
    assert false.height > 0 and false["event_id"].null_count() == false.height
    assert set(inc["incident_type"]) <= set(INCIDENT_TYPES) and inc["incident_id"].is_unique().all()
    # seeded: the same config records the same incidents
    from simulator import Simulator

    assert Simulator(sim.cfg).incident_records().equals(inc)


def test_the_day_export_is_the_incidents_confirmed_that_day(recorded):
    sim, _, inc = recorded
    d = dt.date(2026, 4, 10)
    day = sim.incidents(d)
    assert day.columns == SRC.raw_columns
    local = day["confirmed_at"].dt.convert_time_zone(sim.cfg.timezone).dt.date()
    assert day.height > 0 and (local == d).all()
    whole = sim.incidents()
    assert whole.height == inc.height and set(day["incident_id"]) <= set(whole["incident_id"])


def _put(zone, name: str, text: str, day: dt.date = DAY) -> str:
    key = f"incidents/{day.isoformat()}/{name}"
    zone.put_bytes(key, text.encode())
    return key


HEADER = "work_order,asset_id,asset_type,type,start_time,end_time,reported_at,confirmed_at,outcome,note"


def test_bad_incident_records_are_quarantined_with_file_row_field_and_nothing_is_lost(lake_and_landing):
    lake, zone = lake_and_landing
    ids = known_entity_ids(lake, SRC)
    m = lake.read("ref_meters")["meter_id"][0]
    t = lake.read("ref_transformers")["transformer_id"][0]
    assert m in ids.to_list() and t in ids.to_list()  # both reference tables hold known ids
    rows = [
        # 1 good (aliases: work_order -> incident_id, type -> incident_type; offsets honoured)
        f"WO-1,{m},meter,theft,2026-10-20T10:00:00-04:00,2026-10-30T10:00:00-04:00,2026-10-31T09:00:00-04:00,2026-11-01T09:30:00-05:00,confirmed,meter bypass found",
        # 2 incident type not in the contract
        f"WO-2,{m},meter,blackout,2026-10-31T10:00:00-04:00,,2026-10-31T11:00:00-04:00,2026-11-01T10:00:00-05:00,confirmed,",
        # 3 a naive local start in the repeated 01:xx hour: which instant is unknown
        f"WO-3,{t},transformer,transformer_failure,2026-11-01 01:30:00,2026-11-01T08:00:00-05:00,2026-11-01T02:00:00-05:00,2026-11-01T09:00:00-05:00,confirmed,",
        # 4 required outcome missing
        f"WO-4,{t},transformer,voltage_sag,2026-10-31T10:00:00-04:00,,2026-10-31T11:00:00-04:00,2026-11-01T11:00:00-05:00,,",
        # 5 unknown asset
        "WO-5,X404,meter,zero_meter,2026-10-31T10:00:00-04:00,,2026-10-31T11:00:00-04:00,2026-11-01T12:00:00-05:00,confirmed,",
        # 6 not a timestamp
        f"WO-6,{m},meter,stuck_meter,yesterday,,2026-10-31T11:00:00-04:00,2026-11-01T13:00:00-05:00,confirmed,",
        # 7 ends before it starts: kept, flagged warning (the outcome still counts)
        f"WO-7,{t},transformer,transformer_overheat,2026-10-31T10:00:00-04:00,2026-10-30T10:00:00-04:00,2026-10-31T11:00:00-04:00,2026-11-01T14:00:00-05:00,false_report,nothing found",
        # 8 the same work order re-exported later the same day: the later copy wins
        f"WO-1,{m},meter,theft,2026-10-20T10:00:00-04:00,2026-10-30T10:00:00-04:00,2026-10-31T09:00:00-04:00,2026-11-01T15:30:00-05:00,confirmed,amended note",
        # 9 confirmed the day before: late data, forwarded to its own day
        f"WO-9,{m},meter,theft,2026-10-20T10:00:00-04:00,,2026-10-25T09:00:00-04:00,2026-10-31T09:30:00-04:00,confirmed,",
    ]
    key = _put(zone, "workorders.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    res = ingest_partition(zone, lake, SRC, DAY, ids, forward_late=False, tz=DEFAULT_TIMEZONE)
    assert res.reconciles and res.raw_rows == 9
    q = lake.read(SRC.quarantine, DAY).sort("source_row")
    got = {r["source_row"]: (r["reason_code"], r["field"]) for r in q.iter_rows(named=True)}
    assert got == {
        2: ("out_of_range", "incident_type"),
        3: ("dst_ambiguous_time", "start_time"),
        4: ("missing_value", "outcome"),
        5: ("unknown_entity", "asset_id"),
        6: ("wrong_type", "start_time"),
        9: ("late_data", "confirmed_at"),
        1: ("duplicate", "incident_id"),
    }
    assert all(r["source_file"] == key and r["raw_record"] for r in q.iter_rows(named=True))
    assert "ref_meters or ref_transformers" in q.filter(pl.col("reason_code") == "unknown_entity")["detail"][0]
    assert "blackout" in q.filter(pl.col("reason_code") == "out_of_range")["detail"][0]
    s = lake.read(SRC.silver, DAY).sort("source_row")
    assert s["incident_id"].to_list() == ["WO-7", "WO-1"]
    assert s.filter(pl.col("incident_id") == "WO-1")["note"][0] == "amended note"
    assert s.filter(pl.col("incident_id") == "WO-7")["quality_flag"][0] == "warning"
    assert s.schema["start_time"] == pl.Datetime("us", "UTC")
    assert s.filter(pl.col("incident_id") == "WO-1")["start_time"][0] == dt.datetime(
        2026, 10, 20, 14, tzinfo=dt.timezone.utc
    )


def test_incident_labels_are_what_was_confirmed_by_the_cut_off():
    from models.grid.labels import incident_events

    utc = dt.timezone.utc
    inc = pl.DataFrame(
        {
            "incident_id": ["a", "b", "c", "d"],
            "asset_type": ["meter"] * 4,
            "asset_id": ["M1", "M2", "M3", "M4"],
            "incident_type": ["theft", "zero_meter", "stuck_meter", "theft"],
            "start_time": [dt.datetime(2026, 6, 1, tzinfo=utc)] * 4,
            "end_time": [
                None,
                dt.datetime(2026, 6, 2, tzinfo=utc),
                dt.datetime(2026, 6, 3, tzinfo=utc),
                dt.datetime(2026, 5, 1, tzinfo=utc),
            ],
            "reported_at": [dt.datetime(2026, 6, 2, tzinfo=utc)] * 4,
            "confirmed_at": [
                dt.datetime(2026, 6, 5, tzinfo=utc),
                dt.datetime(2026, 6, 5, tzinfo=utc),
                dt.datetime(2026, 6, 20, tzinfo=utc),
                dt.datetime(2026, 6, 5, tzinfo=utc),
            ],
            "outcome": ["confirmed", "false_report", "confirmed", "confirmed"],
        }
    )
    ev = incident_events(inc, known_by=dt.datetime(2026, 6, 10, tzinfo=utc))
    # b is a false report, c is not confirmed yet, d ends before it starts: only a, open until confirmed
    assert ev["event_id"].to_list() == ["a"] and ev["end_time"][0] == dt.datetime(2026, 6, 5, tzinfo=utc)
    assert incident_events(inc)["event_id"].to_list() == ["a", "c"]
    assert incident_events(None).height == 0
