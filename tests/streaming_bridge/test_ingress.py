"""Stream ingress: payloads validated by the silver contract, dead letters with reasons, readings landed
as files that the ordinary ingestion reads (same path as head-end files)."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from contracts import DEFAULT_TIMEZONE, SOURCES, STREAM_DEAD_LETTERS
from lake.ingest import ingest_partition
from streaming_bridge.ingress import IngressConfig, Message, Validator
from streaming_bridge.landing import LandingWriter
from streaming_bridge.topics import Topics

T = Topics()
DAY = dt.date(2026, 11, 2)
NOW = dt.datetime(2026, 11, 2, 18, 0, tzinfo=dt.UTC)


def _validator(lake) -> Validator:
    ids = {
        "meter_readings": lake.read("ref_meters", columns=["meter_id"])["meter_id"],
        "scada": lake.read("ref_transformers", columns=["transformer_id"])["transformer_id"],
    }
    return Validator(ids, IngressConfig(topics=T))


def _msg(topic: str, obj, *, raw: bytes | None = None) -> Message:
    return Message(topic, raw if raw is not None else json.dumps(obj).encode(), NOW.timestamp())


def _reading(meter: str, t: dt.datetime, **kw) -> dict:
    return {
        "meter_id": meter,
        "reading_time": t.isoformat(),
        "consumption_kwh": 0.4,
        "demand_kw": 1.6,
        "voltage": 231.0,
        "current_amps": 6.9,
        "power_factor": 0.97,
        **kw,
    }


def test_every_bad_payload_class_is_dead_lettered_with_reason_and_good_ones_pass(lake_and_landing):
    lake, _ = lake_and_landing
    v = _validator(lake)
    m0, m1 = lake.read("ref_meters", columns=["meter_id"])["meter_id"][:2]
    tx = lake.read("ref_transformers", columns=["transformer_id"])["transformer_id"][0]
    t = NOW - dt.timedelta(minutes=15)
    good_scada = {
        "sample_time": t.isoformat(),
        "load_kva": 30.0,
        "top_oil_temp_c": 55.0,
        "hot_spot_temp_c": 70.0,
        "voltage_v": 239.0,
        "frequency_hz": 60.01,
    }
    msgs = [
        _msg(T.meter(m0), _reading(m0, t)),  # ok
        _msg(T.meter(m0), None, raw=b"\xff\xfe not json"),  # non-JSON
        _msg(T.meter(m0), _reading(m0, t, consumption_kwh="lots")),  # wrong type
        _msg(T.meter(m0), _reading(m0, t, voltage=True)),  # wrong type (boolean)
        _msg(T.meter(m0), None, raw=b"x" * (2 << 20)),  # huge
        _msg(T.meter("NOPE-1"), _reading("NOPE-1", t)),  # unknown device
        _msg(T.meter(m0), _reading(m0, NOW + dt.timedelta(days=400))),  # far future
        _msg(T.meter(m0), _reading(m0, NOW - dt.timedelta(days=400))),  # far past
        _msg(T.meter(m0), _reading(m1, t)),  # id in payload != topic
        _msg(T.meter(m0), _reading(m0, t, voltage=999.0)),  # outside the silver bounds
        _msg(T.meter(m0), {k: v for k, v in _reading(m0, t).items() if k != "demand_kw"}),  # required field missing
        _msg(T.meter(m0), [1, 2]),  # not an object
        _msg(
            T.headend("he-1"),
            {
                "readings": [
                    _reading(m0, t + dt.timedelta(minutes=1)),
                    "junk",
                    _reading(m1, t, reading_time="yesterday"),
                ]
            },
        ),
        _msg(T.headend("he-1"), {"readings": []}),
        _msg(T.scada(tx), good_scada),  # ok
        _msg(T.scada(tx), {**good_scada, "frequency_hz": 99.0}),
        _msg(T.status("meter", m0), {"status": "exploded"}),
        _msg(T.status("meter", m0), {"status": "offline"}),  # ok (a last will carries no time)
        _msg("somewhere/else", {"a": 1}),
    ]
    r = v.process(msgs, now=NOW.timestamp())
    dead = r.dead.sort("topic")
    reasons = sorted(dead["reason_code"].to_list())
    assert reasons == sorted(
        [
            "malformed_payload",
            "wrong_type",
            "wrong_type",
            "oversized_payload",
            "unknown_entity",
            "future_time",
            "stale_time",
            "entity_mismatch",
            "out_of_range",
            "missing_value",
            "malformed_payload",
            "malformed_payload",
            "wrong_type",
            "malformed_payload",
            "out_of_range",
            "out_of_range",
            "unknown_topic",
        ]
    )
    # counts reconcile: every record is accepted, a status event or dead-lettered
    assert r.records == r.accepted_rows + len(r.status) + dead.height == 21
    assert r.accepted["meter_readings"].height == 2 and r.accepted["scada"].height == 1
    assert [s.status for s in r.status] == ["offline"]
    # rows name what was wrong and where
    row = dead.filter(pl.col("reason_code") == "out_of_range", pl.col("field") == "voltage").row(0, named=True)
    assert row["value"] == "999.0" and "outside [200, 260]" in row["detail"] and row["topic"] == T.meter(m0)
    junk = dead.filter(pl.col("topic") == T.headend("he-1"), pl.col("record_index") == 1).row(0, named=True)
    assert junk["reason_code"] == "malformed_payload" and "record 1" in junk["detail"]
    bad_t = dead.filter(pl.col("record_index") == 2).row(0, named=True)
    assert bad_t["reason_code"] == "wrong_type" and bad_t["field"] == "reading_time" and bad_t["value"] == "yesterday"
    huge = dead.filter(pl.col("reason_code") == "oversized_payload").row(0, named=True)
    assert huge["payload_bytes"] == 2 << 20 and len(huge["payload"]) == 64 * 1024
    assert dead.filter(pl.col("reason_code") == "stale_time")["detail"][0].endswith("before the bridge clock")
    assert STREAM_DEAD_LETTERS.conform(dead).height == dead.height


def test_landed_stream_readings_are_ingested_by_the_file_path_and_dead_letters_reach_their_table(
    lake_and_landing, tmp_path
):
    lake, zone = lake_and_landing
    v = _validator(lake)
    meters = lake.read("ref_meters", columns=["meter_id"])["meter_id"].to_list()[:5]
    start = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)  # utility day 2026-11-02
    w = LandingWriter(zone, lake, tmp_path / "spool", bridge_id="t1", tz=DEFAULT_TIMEZONE, flush_seconds=3600)
    readings = [_reading(m, start + dt.timedelta(minutes=15 * k)) for m in meters for k in range(4)]
    batch = [_msg(T.headend("he-9"), {"readings": readings[:10]}), _msg(T.headend("he-9"), {"readings": readings[10:]})]
    batch += [_msg(T.meter(meters[0]), _reading(meters[0], start, voltage="n/a"))]
    r = v.process(batch, now=NOW.timestamp())
    assert r.accepted_rows == 20 and r.dead.height == 1
    w.append(r.accepted, r.dead)
    # the same reading again (redelivery after a crash): landed twice, deduplicated by ingestion
    r2 = v.process([_msg(T.meter(meters[1]), readings[4])], now=NOW.timestamp())
    w.append(r2.accepted, r2.dead)
    keys = w.flush()
    assert keys == [f"meter_readings/{DAY.isoformat()}/stream-{keys[0].split('stream-')[1]}"]
    res = ingest_partition(
        zone,
        lake,
        SOURCES["meter_readings"],
        DAY,
        lake.read("ref_meters", columns=["meter_id"])["meter_id"],
        tz=DEFAULT_TIMEZONE,
    )
    assert res.silver_rows == 20 and res.duplicate_rows == 1 and res.quarantined_rows == 0 and res.reconciles
    silver = lake.read(SOURCES["meter_readings"].silver, DAY)
    assert set(silver["meter_id"]) == set(meters) and silver["reading_time"].min() == start
    dl = lake.read(STREAM_DEAD_LETTERS)
    assert dl.height == 1 and dl["reason_code"][0] == "wrong_type" and dl["field"][0] == "voltage"


def test_a_crash_before_the_flush_is_recovered_from_the_spool_idempotently(lake_and_landing, tmp_path):
    lake, zone = lake_and_landing
    v = _validator(lake)
    m = lake.read("ref_meters", columns=["meter_id"])["meter_id"][0]
    t = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
    w = LandingWriter(zone, lake, tmp_path / "spool", bridge_id="t1", tz=DEFAULT_TIMEZONE, flush_seconds=3600)
    r = v.process([_msg(T.meter(m), _reading(m, t)), _msg(T.meter(m), None, raw=b"{")], now=NOW.timestamp())
    w.append(r.accepted, r.dead)
    # simulate a kill: the writer is dropped without flush; append a torn tail to the spool file
    seg = next((tmp_path / "spool").iterdir())
    with open(seg / "meter_readings.arrows", "ab") as f:
        f.write(b"\x00\x01garbage")
    w2 = LandingWriter(zone, lake, tmp_path / "spool", bridge_id="t1", tz=DEFAULT_TIMEZONE)
    keys = w2.recover()
    assert len(keys) == 1 and not any((tmp_path / "spool").iterdir())
    landed = pl.read_parquet(zone.local_path(keys[0]))
    assert landed["meter_id"].to_list() == [m] and landed["reading_time"][0] == t
    dl = lake.read(STREAM_DEAD_LETTERS)
    assert dl["reason_code"].to_list() == ["malformed_payload"]
    # landing the same segment again replaces, never doubles, its dead letters
    lake.replace_batch(STREAM_DEAD_LETTERS, dl, "batch_id", dl["batch_id"][0])
    assert lake.read(STREAM_DEAD_LETTERS).height == 1
    with pytest.raises(ValueError, match="batch id"):
        lake.replace_batch(STREAM_DEAD_LETTERS, dl, "batch_id", "x' OR '1'='1")
