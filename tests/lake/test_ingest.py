"""Ingestion: every bad-input class gets a clear reason and location, nothing is lost, counts reconcile."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import time

import polars as pl
import pytest

from contracts import DEFAULT_TIMEZONE, SOURCES
from lake.ingest import ingest_partition

SRC = SOURCES["meter_readings"]
HEADER = "meter_id,reading_time,consumption_kwh,demand_kw,voltage,current_amps,power_factor"
DAY = dt.date(2026, 11, 2)


def _ids(lake) -> pl.Series:
    return lake.read("ref_meters", columns=["meter_id"])["meter_id"]


def _csv(zone, name: str, rows: list[str], day: dt.date = DAY, header: str = HEADER) -> str:
    key = f"meter_readings/{day.isoformat()}/{name}"
    zone.put_bytes(key, ("\n".join([header, *rows]) + "\n").encode())
    time.sleep(0.01)  # receive order = modification time
    return key


def _ingest(lake, zone, day: dt.date = DAY):
    res = ingest_partition(zone, lake, SRC, day, _ids(lake), tz=DEFAULT_TIMEZONE)
    pub = not res.held  # a day with an unreadable file is written but not published (read as written)
    q = lake.read(SRC.quarantine, day, published=pub)
    s = lake.read(SRC.silver, day, published=pub)
    return res, s, q


def _row(m: str, t: str, kwh="0.5", kw="1.0", v="231.0", a="4.3", pf="0.95") -> str:
    return ",".join([m, t, kwh, kw, v, a, pf])


def test_each_bad_record_class_is_quarantined_with_reason_field_and_location(env):
    lake, zone, m1, m2 = env
    key = _csv(
        zone,
        "a.csv",
        [
            _row(m1, "2026-11-02 00:00:00"),  # 1 ok
            _row(m1, "2026-11-02 00:30:00", kwh="abc"),  # 2 wrong type
            _row(m1, "2026-11-02 01:00:00", v="999"),  # 3 out of range
            f"{m1},2026-11-02 01:30:00,0.5,1.0,231",  # 4 malformed (5 fields)
            _row("NOPE-1", "2026-11-02 02:00:00"),  # 5 unknown meter
            _row(m1, "2026-11-01 23:30:00"),  # 6 late: belongs to 2026-11-01
            _row(m1, "2026-11-02 02:30:00", pf="1.7"),  # 7 out of range
            _row(m1, "", kwh="0.1"),  # 8 missing value
            _row(m2, "2026-11-02 03:00:00"),  # 9 ok
        ],
    )
    res, silver, q = _ingest(lake, zone)
    assert res.raw_rows == 9 and res.silver_rows == 2 and res.quarantined_rows == 7 and res.duplicate_rows == 0
    got = {r["source_row"]: r for r in q.iter_rows(named=True)}
    assert all(r["source_file"] == key for r in got.values())
    expect = {
        2: ("wrong_type", "consumption_kwh", "abc"),
        3: ("out_of_range", "voltage", "999"),
        4: ("malformed_line", None, None),
        5: ("unknown_entity", "meter_id", "NOPE-1"),
        6: ("late_data", "reading_time", "2026-11-01 23:30:00"),
        7: ("out_of_range", "power_factor", "1.7"),
        8: ("missing_value", "reading_time", ""),
    }
    for row, (reason, field, value) in expect.items():
        assert (got[row]["reason_code"], got[row]["field"], got[row]["value"]) == (reason, field, value), got[row]
        assert got[row]["detail"]
    assert got[6]["target_date"] == dt.date(2026, 11, 1)
    assert "999" in got[3]["detail"] and "[200, 260]" in got[3]["detail"]
    # the malformed line is kept verbatim
    assert json.loads(got[4]["raw_record"])["line"] == f"{m1},2026-11-02 01:30:00,0.5,1.0,231"
    # every other rejected record keeps all its fields as received
    assert json.loads(got[2]["raw_record"])["consumption_kwh"] == "abc"
    assert sorted(silver["source_row"].to_list()) == [1, 9]


def test_duplicates_keep_the_later_received_copy(env):
    lake, zone, m1, _ = env
    first = _csv(zone, "a.csv", [_row(m1, "2026-11-02 10:00:00", kwh="0.40"), _row(m1, "2026-11-02 10:30:00")])
    second = _csv(zone, "b.csv", [_row(m1, "2026-11-02 10:00:00", kwh="0.45")])  # a correction re-sent later
    res, silver, q = _ingest(lake, zone)
    assert (res.raw_rows, res.silver_rows, res.duplicate_rows, res.quarantined_rows) == (3, 2, 1, 0)
    kept = silver.filter(pl.col("reading_time") == dt.datetime(2026, 11, 2, 15, 0, tzinfo=dt.timezone.utc))
    assert kept["consumption_kwh"].to_list() == [0.45] and kept["source_file"].to_list() == [second]
    dup = q.row(0, named=True)
    assert (dup["reason_code"], dup["source_file"], dup["source_row"]) == ("duplicate", first, 1)
    assert f"{second}:1" in dup["detail"]


def test_fall_back_hour_is_resolved_by_order_and_a_lone_one_is_rejected(env):
    lake, zone, m1, m2 = env
    day = dt.date(2026, 11, 1)  # clocks go back at 02:00 EDT -> 01:00 EST
    # distinct readings: a standard-time row repeating its daylight twin's values is not proof (tests/lake/test_hostile_input.py)
    rows = [
        _row(m1, f"2026-11-01 {h}", kwh=f"0.{i + 1}")
        for i, h in enumerate(("00:30:00", "01:00:00", "01:30:00", "01:00:00", "01:30:00", "02:00:00"))
    ]
    rows.append(_row(m2, "2026-11-01 01:30:00"))  # once only: which 01:30?
    _csv(zone, "a.csv", rows, day=day)
    res, silver, q = _ingest(lake, zone, day)
    times = silver.filter(pl.col("meter_id") == m1).sort("reading_time")["reading_time"].dt.strftime("%H:%M").to_list()
    # 00:30 EDT=04:30Z, 01:00 EDT=05:00Z, 01:30 EDT=05:30Z, 01:00 EST=06:00Z, 01:30 EST=06:30Z, 02:00 EST=07:00Z
    assert times == ["04:30", "05:00", "05:30", "06:00", "06:30", "07:00"]
    assert q["reason_code"].to_list() == ["dst_ambiguous_time"] and q["source_row"].to_list() == [7]


def test_spring_forward_gap_time_is_rejected_and_offsets_are_honoured(lake_and_landing):
    lake, zone = lake_and_landing
    m1 = _ids(lake)[0]
    day = dt.date(2026, 3, 8)  # 02:00 EST -> 03:00 EDT
    key = f"meter_readings/{day}/x.jsonl"
    lines = [
        {
            "meter_id": m1,
            "reading_time": "2026-03-08T01:30:00-05:00",
            "consumption_kwh": 0.3,
            "demand_kw": 0.6,
            "voltage": 230,
            "current_amps": 3,
            "power_factor": 0.9,
        },
        {
            "meter_id": m1,
            "reading_time": "2026-03-08T03:00:00-04:00",
            "consumption_kwh": 0.3,
            "demand_kw": 0.6,
            "voltage": 230,
            "current_amps": 3,
            "power_factor": 0.9,
        },
    ]
    zone.put_bytes(key, "\n".join(json.dumps(x) for x in lines).encode())
    _csv(zone, "gap.csv", [_row(m1, "2026-03-08 02:30:00")], day=day)
    res, silver, q = _ingest(lake, zone, day)
    assert silver["reading_time"].dt.strftime("%H:%M").sort().to_list() == ["06:30", "07:00"]
    assert q["reason_code"].to_list() == ["dst_nonexistent_time"]


def test_file_level_problems_do_not_stop_the_run(env):
    lake, zone, m1, m2 = env
    empty = _csv(zone, "empty.csv", [])
    renamed = _csv(
        zone,
        "renamed.csv",
        [_row(m1, "2026-11-02 04:00:00"), _row(m2, "2026-11-02 04:00:00")],
        header=HEADER.replace("voltage", "volts"),
    )
    bad_key = f"meter_readings/{DAY}/broken.parquet"
    zone.put_bytes(bad_key, b"PAR1 this is not parquet")
    good = _csv(zone, "good.csv", [_row(m1, "2026-11-02 05:00:00")])
    res, silver, q = _ingest(lake, zone)
    assert silver["source_file"].to_list() == [good]
    problems = {f.key: f.problem for f in res.files}
    assert problems == {empty: "empty_file", renamed: "missing_column", bad_key: "unreadable_file", good: None}
    miss = q.filter(pl.col("reason_code") == "missing_column")
    assert miss["source_row"].to_list() == [1, 2] and set(miss["field"]) == {"voltage"}
    assert json.loads(miss["raw_record"][0])["volts"] == "231.0"  # the renamed column's values are not lost
    markers = q.filter(pl.col("source_row") == 0)
    assert sorted(markers["reason_code"]) == ["empty_file", "unreadable_file"]
    assert res.held == {bad_key: "unreadable_file"} and lake.read(SRC.bronze, DAY).height == 0  # held: not published
    bronze = lake.read(SRC.bronze, DAY, published=False)
    assert bronze.height == 4 and int(bronze["records"].sum()) == res.raw_rows == 3
    for path in bronze["archive_path"]:  # bronze keeps the files byte-exact
        rel = path.split("/bronze_archive/", 1)[1]
        assert open(path, "rb").read() == zone.get_bytes(rel)


def test_parquet_and_jsonl_inputs_and_quoted_csv(env):
    lake, zone, m1, m2 = env
    pq = pl.DataFrame(
        {
            "meter_id": [m1, m2],
            "reading_time": [dt.datetime(2026, 11, 2, 17, tzinfo=dt.timezone.utc)] * 2,
            "consumption_kwh": [0.2, 0.3],
            "demand_kw": [0.4, -0.6],
            "voltage": [229.0, 231.5],
            "current_amps": [2.0, 3.0],
            "power_factor": [0.97, 0.99],
        }
    )
    buf = io.BytesIO()
    pq.write_parquet(buf)
    zone.put_bytes(f"meter_readings/{DAY}/p.parquet", buf.getvalue())
    _csv(zone, "q.csv", [f'"{m1}","2026-11-02 13:30:00","0.5","1.0","231","4.3","0.95"'])
    res, silver, q = _ingest(lake, zone)
    assert q.height == 0 and res.silver_rows == 3
    assert sorted(silver["demand_kw"].to_list()) == [-0.6, 0.4, 1.0]


def test_simulated_day_reconciles_exactly_with_the_injection_manifest(lake_and_landing, small_sim):
    from simulator import BadRecordRates, write_landing_day

    lake, zone = lake_and_landing
    day = dt.date(2026, 11, 1)
    bad = BadRecordRates(
        malformed_line=0.003,
        wrong_type=0.003,
        out_of_range=0.003,
        duplicate=0.004,
        unknown_entity=0.002,
        late_files=1,
        empty_files=1,
        renamed_column_files=1,
    )
    man = write_landing_day(
        small_sim,
        day,
        zone,
        formats={"meter_readings": ("csv", "parquet", "jsonl")},
        bad=bad,
        rows_per_file=15,
        sources=("meter_readings",),
    )
    res, silver, q = _ingest(lake, zone, day)
    assert res.raw_rows == man.rows_written("meter_readings")
    assert res.raw_rows == res.silver_rows + res.quarantined_rows + res.duplicate_rows
    # the same counts read back from the written tables (the blocking `reconciles` check's figures)
    from contracts import SOURCES
    from lake.ingest import reconcile_from_tables

    back = reconcile_from_tables(lake, SOURCES["meter_readings"], day)
    assert (
        back["bronze_records"],
        back["silver_rows"],
        back["quarantined_rows"],
        back["duplicate_rows"],
        back["difference"],
    ) == (res.raw_rows, res.silver_rows, res.quarantined_rows, res.duplicate_rows, 0)
    assert (
        back["rejected_files"] == sum(1 for f in res.files if f.problem and f.records == 0) > 0
    )  # e.g. the empty file
    # every injected fault is found at exactly the row the simulator put it
    for f in man.for_source("meter_readings"):
        fq = q.filter(pl.col("source_file") == f.key)
        for cls in ("malformed_line", "wrong_type", "out_of_range", "unknown_entity"):
            assert sorted(fq.filter(pl.col("reason_code") == cls)["source_row"].to_list()) == f.faults.get(cls, []), (
                f.key,
                cls,
            )
        if "missing_column" in f.file_faults:
            assert fq.filter(pl.col("reason_code") == "missing_column").height == f.rows
        if "late_data" in f.file_faults:
            assert fq.filter(pl.col("reason_code") == "late_data").height == f.rows
        if "empty_file" in f.file_faults:
            assert fq["reason_code"].to_list() == ["empty_file"]
    originals = sorted((k, r) for f in man.for_source("meter_readings") for k, r in f.duplicate_of)
    dups = q.filter(pl.col("reason_code") == "duplicate").sort("source_file", "source_row")
    assert list(zip(dups["source_file"], dups["source_row"])) == originals
    # the fall-back day has 25 local hours: a meter untouched by faults has 25 h of readings
    faulty = {f.key for f in man.for_source("meter_readings") if f.faults or f.file_faults} | {
        k for f in man.for_source("meter_readings") for k, _ in f.duplicate_of
    }
    touched = set(silver.filter(pl.col("source_file").is_in(list(faulty)))["meter_id"])
    per_meter = (
        silver.group_by("meter_id")
        .agg(pl.len().alias("n"))
        .join(lake.read("ref_meters", columns=["meter_id", "interval_minutes"]), on="meter_id")
    )
    clean = per_meter.filter(~pl.col("meter_id").is_in(list(touched)))
    assert clean.height > 10
    bad = clean.filter(pl.col("n") != 25 * 60 // pl.col("interval_minutes"))
    assert bad.height == 0, bad


def test_rematerialising_a_partition_replaces_exactly_that_partition(env):
    lake, zone, m1, m2 = env
    d1, d2 = DAY, DAY + dt.timedelta(days=1)
    _csv(zone, "a.csv", [_row(m1, "2026-11-02 10:00:00"), _row(m2, "2026-11-02 10:00:00")], day=d1)
    _csv(zone, "a.csv", [_row(m1, "2026-11-03 10:00:00")], day=d2)
    _ingest(lake, zone, d1)
    _ingest(lake, zone, d2)
    before_d2 = lake.read(SRC.silver, d2).sort("meter_id")
    for _ in range(2):  # twice: idempotent, no duplicates
        _ingest(lake, zone, d1)
    all_rows = lake.read(SRC.silver)
    assert all_rows.filter(pl.col("date") == d1).height == 2
    assert lake.read(SRC.silver, d2).sort("meter_id").equals(before_d2)
    # a late-arriving correction for d1 replaces d1 only
    _csv(zone, "b.csv", [_row(m1, "2026-11-02 10:00:00", kwh="0.9")], day=d1)
    _ingest(lake, zone, d1)
    s1 = lake.read(SRC.silver, d1)
    assert s1.height == 2 and 0.9 in s1["consumption_kwh"].to_list()
    assert lake.read(SRC.silver, d2).equals(before_d2) or lake.read(SRC.silver, d2).sort("meter_id").equals(before_d2)
    assert lake.read(SRC.quarantine, d1)["reason_code"].to_list() == ["duplicate"]


def test_write_refuses_rows_outside_the_partition(env):
    lake, *_ = env
    df = pl.DataFrame({c.name: [] for c in SRC.silver.columns}, schema=SRC.silver.polars_schema())
    row = dict.fromkeys(df.columns) | {
        "date": DAY,
        "meter_id": "X",
        "reading_time": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        "quality_flag": "ok",
        "source_file": "f",
        "source_row": 1,
    }
    row |= {m.name: 1.0 for m in SRC.measures}
    with pytest.raises(ValueError, match="outside partition"):
        lake.write_partition(
            SRC.silver, pl.DataFrame([row], schema=SRC.silver.polars_schema()), DAY + dt.timedelta(days=1)
        )


def test_landing_keys_are_validated(tmp_path):
    from lake.landing import LocalLanding

    z = LocalLanding(tmp_path)
    for bad in ("../etc/passwd", "/abs/path", "a/../../b", "a b/c", "x;rm -rf"):
        with pytest.raises(ValueError, match="unsafe landing key"):
            z.put_bytes(bad, b"x")
    assert not os.path.exists(tmp_path.parent / "etc")


def test_late_records_are_forwarded_to_their_own_day(env):
    lake, zone, m1, m2 = env
    prev = DAY - dt.timedelta(days=1)
    _csv(zone, "a.csv", [_row(m1, "2026-11-02 08:00:00"), _row(m2, "2026-11-01 22:30:00", kwh="0.77")])
    res, silver, q = _ingest(lake, zone)
    assert q["reason_code"].to_list() == ["late_data"] and q["target_date"].to_list() == [prev]
    key = f"meter_readings/{prev}/forwarded_from_{DAY}.jsonl"
    assert res.forwarded == {prev: key} and zone.exists(key)
    res2, silver_prev, q_prev = _ingest(lake, zone, prev)
    assert q_prev.height == 0 and silver_prev.height == 1
    row = silver_prev.row(0, named=True)
    # 22:30 EST on 1 Nov = 03:30 UTC on 2 Nov; the value arrives as received
    assert row["meter_id"] == m2 and row["consumption_kwh"] == 0.77 and row["source_file"] == key
    assert row["reading_time"] == dt.datetime(2026, 11, 2, 3, 30, tzinfo=dt.timezone.utc)
    # re-ingesting the later day rewrites the same forwarded file, no second copy
    _ingest(lake, zone)
    assert [f.key for f in zone.list(f"meter_readings/{prev}")] == [key]


def test_backfill_writes_the_same_partitions_as_one_by_one(lake_and_landing, small_sim, tmp_path):
    from lake.delta import Lake
    from lake.ingest import ingest_partitions
    from simulator import BadRecordRates, write_landing_day

    lake, zone = lake_and_landing
    days = [dt.date(2026, 10, 31), dt.date(2026, 11, 1), dt.date(2026, 11, 2)]
    for d in days:
        write_landing_day(
            small_sim,
            d,
            zone,
            formats="parquet",
            bad=BadRecordRates(duplicate=0.01, out_of_range=0.01),
            sources=("meter_readings",),
        )
    ids = _ids(lake)
    one_by_one = [ingest_partition(zone, lake, SRC, d, ids, forward_late=False, tz=DEFAULT_TIMEZONE) for d in days]
    other = Lake(tmp_path / "lake2")
    ranged = ingest_partitions(zone, other, SRC, days, ids, forward_late=False, tz=DEFAULT_TIMEZONE)
    assert [r.partition for r in ranged] == days
    assert [r.summary() for r in ranged] == [r.summary() for r in one_by_one]
    for d in days:
        a = lake.read(SRC.silver, d).sort("meter_id", "reading_time")
        b = other.read(SRC.silver, d).sort("meter_id", "reading_time")
        assert a.equals(b) and a.height > 0


def test_pipelined_backfill_delivers_early_records_to_the_next_day(env):
    """Day N is written while day N+1 is built: a record of day N+1 that arrived with day N's files
    must still reach day N+1 in the same backfill (forwarded before N+1 is read)."""
    from lake.ingest import ingest_partitions

    lake, zone, m1, m2 = env
    nxt = DAY + dt.timedelta(days=1)
    _csv(zone, "a.csv", [_row(m1, "2026-11-02 08:00:00"), _row(m2, "2026-11-03 01:00:00", kwh="0.66")])
    _csv(zone, "b.csv", [_row(m1, "2026-11-03 08:00:00")], day=nxt)
    r1, r2 = ingest_partitions(zone, lake, SRC, [DAY, nxt], _ids(lake), tz=DEFAULT_TIMEZONE)
    assert r1.reasons == {"future_data": 1} and r1.silver_rows == 1 and list(r1.forwarded) == [nxt]
    assert r2.raw_rows == 2 and r2.silver_rows == 2 and r2.reconciles
    got = lake.read(SRC.silver, nxt).sort("reading_time")
    assert got["meter_id"].to_list() == [m2, m1] and got["consumption_kwh"][0] == 0.66


def test_a_failed_write_stops_the_backfill_and_raises(env, monkeypatch):
    from lake.delta import Lake
    from lake.ingest import ingest_partitions

    lake, zone, m1, _ = env
    days = [DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)]
    for i, d in enumerate(days):
        _csv(zone, f"f{i}.csv", [_row(m1, f"{d.isoformat()} 08:00:00")], day=d)
    real = Lake.write_partition

    def failing(self, table, df, partition, **kw):
        if table.name == SRC.silver.name and partition == days[1]:
            raise OSError("disk full")
        return real(self, table, df, partition, **kw)

    monkeypatch.setattr(Lake, "write_partition", failing)
    with pytest.raises(OSError, match="disk full"):
        ingest_partitions(zone, lake, SRC, days, _ids(lake), tz=DEFAULT_TIMEZONE)
    assert lake.read(SRC.silver, days[0]).height == 1
    assert lake.read(SRC.silver, days[2]).height == 0


@pytest.mark.parametrize(
    "day", [dt.date(2026, 11, 1), dt.date(2026, 3, 8), dt.date(2026, 6, 3)]
)  # 25 h, 23 h, 24 h days
def test_integer_day_key_deduplicates_exactly_like_the_general_mask(day):
    import numpy as np

    from lake.ingest import _EIDX, _last_copy_of_day_key, day_bounds_utc, last_copy_mask

    lo, hi = day_bounds_utc(day, "America/New_York")
    rng = np.random.default_rng(7)
    n, slots = 20_000, int((hi - lo).total_seconds() // 1800)
    assert slots in (46, 48, 50)
    e = rng.integers(0, 300, n)
    t = rng.integers(0, slots, n)  # many repeated (entity, slot) pairs, incl. the first and the last slot
    t[:2], t[2:4] = 0, slots - 1
    df = pl.DataFrame({"meter_id": [f"M{i:05d}" for i in e], _EIDX: e.astype("int64")}).with_columns(
        (pl.lit(lo) + pl.duration(minutes=pl.Series(t * 30))).dt.cast_time_unit("us").alias("reading_time")
    )
    fast = _last_copy_of_day_key(df, SRC, day, "America/New_York")
    slow = last_copy_mask(df, ["meter_id", "reading_time"])
    assert 0 < int((~fast).sum()) < n and fast.equals(slow.alias(fast.name))


def test_a_range_reconciles_in_one_scan_per_table_as_each_day_does(lake_and_landing, small_sim):
    """verify_days (the range run's `reconciles` check) gives each day what verify_day gives it alone, a held day
    (an unreadable file: written, not published) and a day never written included; bad records are counted."""
    from lake.ingest import ingest_partitions, known_entity_ids
    from lake.manifest import verify_day, verify_days
    from simulator import BadRecordRates, write_landing_day

    lake, zone = lake_and_landing
    src = SOURCES["meter_readings"]
    days = [dt.date(2026, 10, 31), dt.date(2026, 11, 1), dt.date(2026, 11, 2)]
    bad = BadRecordRates(out_of_range=0.01, duplicate=0.01, unknown_entity=0.01)
    for d in days:
        write_landing_day(small_sim, d, zone, formats="csv", sources=("meter_readings",), bad=bad)
    zone.put_bytes(f"meter_readings/{days[1].isoformat()}/broken.parquet", b"PAR1 not really parquet PAR1")
    res = ingest_partitions(zone, lake, src, days, known_entity_ids(lake, src), tz=DEFAULT_TIMEZONE)
    held = {r.partition for r in res if r.held}
    assert held == {days[1]}
    never = dt.date(2026, 11, 3)
    ranged = verify_days(lake, src, [*days, never], held=held)
    assert list(ranged) == [*days, never]
    for d in days:
        assert ranged[d] == verify_day(lake, src, d, held=d in held)
    assert ranged[days[0]]["ok"] and ranged[days[2]]["ok"] and ranged[days[0]]["published"]
    assert ranged[days[0]]["quarantined_rows"] > 0 and ranged[days[0]]["duplicate_rows"] > 0
    assert ranged[days[1]]["held"] and ranged[days[1]]["unreadable_files"]
    assert not ranged[never]["published"] and not ranged[never]["ok"] and ranged[never]["bronze_records"] == 0
