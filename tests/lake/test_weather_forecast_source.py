"""Issue 15: the ``weather_forecast`` landing source. Its record key is (station, issued_at, valid_at),
not (entity, time): the day partition is the local day of ``issued_at``; every issue carries ~54 rows with
the same (station, issued_at), which must not be taken for duplicates; a re-sent row of the same key is;
and the simulator lands the feed like the other sources, through bronze/silver/quarantine."""

from __future__ import annotations

import datetime as dt

import polars as pl

from contracts import DEFAULT_TIMEZONE, SOURCES
from lake.ingest import ingest_partition, known_entity_ids

SRC = SOURCES["weather_forecast"]
DAY = dt.date(2026, 1, 12)
HEADER = "station_id,issue_time,valid_time,lead_h,temp_air_c,ghi_wm2,dni_wm2,dhi_wm2,cloud_cover,wind_speed_ms"


def _put(zone, name: str, text: str, day: dt.date = DAY) -> str:
    key = f"weather_forecast/{day.isoformat()}/{name}"
    zone.put_bytes(key, text.encode())
    return key


def test_the_contract_declares_the_composite_key_and_the_issue_day_partition():
    assert SRC.key == ("station_id", "issued_at", "valid_at")
    assert SRC.time == "issued_at"
    assert SRC.silver.key == SRC.key and SRC.silver.partition_by == ("date",)
    assert {"issued_at", "valid_at"} <= set(SRC.silver.column_names)


def test_issue_rows_are_not_duplicates_but_a_resent_row_is_and_bad_rows_are_quarantined(lake_and_landing):
    lake, zone = lake_and_landing
    ids = known_entity_ids(lake, SRC)
    st = ids[0]
    issue = "2026-01-12T10:00:00+00:00"  # 05:00 local (UTC-5)
    rows = [
        # 1-3: one issue, three valid hours (same station and issued_at: three records, not duplicates)
        f"{st},{issue},2026-01-12T11:00:00Z,1,3.5,0,0,0,0.2,2.0",
        f"{st},{issue},2026-01-12T12:00:00Z,2,3.1,0,0,0,0.2,2.1",
        f"{st},{issue},2026-01-12T13:00:00Z,3,2.9,0,,,,",
        # 4: the next issue, same valid hour as row 1: its own record
        f"{st},2026-01-12T16:00:00+00:00,2026-01-12T11:00:00Z,-5,3.0,0,0,0,0.1,1.0",
        # 5: row 2 re-sent with a correction: the later copy wins, row 2 is the duplicate
        f"{st},{issue},2026-01-12T12:00:00Z,2,3.3,0,0,0,0.2,2.1",
        # 6: valid_at not a timestamp
        f"{st},{issue},tomorrow,4,3.0,0,0,0,0.2,2.0",
        # 7: temperature out of range
        f"{st},{issue},2026-01-12T15:00:00Z,5,99,0,0,0,0.2,2.0",
        # 8: issued 22:00 local the day before: late, belongs to 2026-01-11
        f"{st},2026-01-12T03:00:00+00:00,2026-01-12T09:00:00Z,6,3.0,0,0,0,0.2,2.0",
        # 9: unknown station
        f"WX999,{issue},2026-01-12T15:00:00Z,5,3.0,0,0,0,0.2,2.0",
    ]
    key = _put(zone, "nwp.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    res = ingest_partition(zone, lake, SRC, DAY, ids, forward_late=False, tz=DEFAULT_TIMEZONE)
    assert res.reconciles and res.raw_rows == 9
    assert (res.silver_rows, res.quarantined_rows, res.duplicate_rows) == (4, 4, 1)
    q = lake.read(SRC.quarantine, DAY)
    got = {r["source_row"]: (r["reason_code"], r["field"]) for r in q.iter_rows(named=True)}
    assert got == {
        2: ("duplicate", "station_id,issued_at,valid_at"),
        6: ("wrong_type", "valid_at"),
        7: ("out_of_range", "temp_air_c"),
        8: ("late_data", "issued_at"),
        9: ("unknown_entity", "station_id"),
    }
    assert q.filter(pl.col("reason_code") == "late_data")["target_date"][0] == dt.date(2026, 1, 11)
    assert f"{key}:5" in q.filter(pl.col("reason_code") == "duplicate")["detail"][0]
    s = lake.read(SRC.silver, DAY).sort("issued_at", "valid_at")
    assert s.schema["valid_at"] == pl.Datetime("us", "UTC") and s.schema["issued_at"] == pl.Datetime("us", "UTC")
    kept = s.filter(pl.col("valid_at") == dt.datetime(2026, 1, 12, 12, tzinfo=dt.timezone.utc))
    assert kept["temp_air_c"].to_list() == [3.3]  # the re-sent copy
    # an hour valid before its issue was published is kept but flagged (an analysis hour)
    flags = dict(zip(s["source_row"], s["quality_flag"]))
    assert flags[4] == "warning" and flags[1] == "ok"
    assert s["dni_wm2"].null_count() == 1  # optional variables may be empty


def test_the_simulator_lands_a_day_of_issues_that_ingests_whole(lake_and_landing, small_sim):
    from simulator import write_landing_day
    from simulator.config import BadRecordRates

    lake, zone = lake_and_landing
    d = small_sim.cfg.start + dt.timedelta(days=1)  # 2026-11-01: the fall-back day
    truth = small_sim.weather_forecast(d)
    local = truth["issued_at"].dt.convert_time_zone(small_sim.cfg.timezone).dt.date()
    assert truth.height > 0 and (local == d).all()
    assert truth["issued_at"].n_unique() <= 4 and truth.columns == SRC.raw_columns
    man = write_landing_day(small_sim, d, zone, formats=("csv", "jsonl", "parquet"), bad=BadRecordRates(),
                            sources=("weather_forecast",))  # fmt: skip
    assert man.rows_written("weather_forecast") == truth.height
    res = ingest_partition(zone, lake, SRC, d, known_entity_ids(lake, SRC), tz=small_sim.cfg.timezone)
    assert res.reconciles and res.silver_rows == truth.height and res.quarantined_rows == 0
    silver = lake.read(SRC.silver, d).sort("issued_at", "valid_at")
    assert silver.select(SRC.raw_columns).equals(truth.sort("issued_at", "valid_at"))

    # with the landing faults every source gets: the manifest of injected faults reconciles with quarantine
    bad = BadRecordRates(
        wrong_type=0.03, out_of_range=0.03, duplicate=0.03, unknown_entity=0.02, late_files=1, empty_files=1
    )
    man = write_landing_day(small_sim, d, zone, formats=("csv", "jsonl"), bad=bad, sources=("weather_forecast",))
    res = ingest_partition(
        zone, lake, SRC, d, known_entity_ids(lake, SRC), tz=small_sim.cfg.timezone, forward_late=False
    )
    want = man.counts("weather_forecast")
    assert res.reconciles and want.get("duplicate", 0) > 0
    for code in ("wrong_type", "out_of_range", "duplicate", "unknown_entity", "late_data"):
        assert res.reasons.get(code, 0) == want.get(code, 0), (code, res.reasons, want)
    assert res.silver_rows == truth.height - want.get("wrong_type", 0) - want.get("out_of_range", 0) - want.get(
        "unknown_entity", 0
    )
