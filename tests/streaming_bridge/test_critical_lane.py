"""The critical lane: a hot transformer's SCADA sample that arrives behind a head-end burst in the same batch is
validated, scored and handed to the outbox before the burst is validated, and the batch's PUBACKs still go once,
after everything is spooled, in arrival order. Ordering, not wall time."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

from streaming_bridge.ingress import Message
from streaming_bridge.service import Bridge, BridgeConfig
from streaming_bridge.topics import Topics
from tests.streaming_bridge.bridge_helpers import ListSink


class _OrderSink(ListSink):
    def __init__(self, events: list) -> None:
        super().__init__()
        self.events = events

    def submit(self, alerts) -> None:
        self.events.append(("submit", sorted(a.labels["alertname"] for a in alerts)))
        super().submit(alerts)


def _reading(meter: str, t: str, volts: float) -> dict:
    return {
        "meter_id": meter,
        "reading_time": t,
        "consumption_kwh": 0.25,
        "demand_kw": 1.0,
        "voltage": volts,
        "current_amps": 4.5,
        "power_factor": 0.96,
    }


def _bridge(lake, zone, tmp_path, events, **kw):
    prefix = f"lane{uuid.uuid4().hex[:8]}/v1"
    cfg = BridgeConfig(
        **kw,
        client_id=f"lane-{uuid.uuid4().hex[:6]}",
        topic_prefix=prefix,
        spool_dir=str(tmp_path / "spool"),
        flush_seconds=3600,
        http_port=-1,
    )
    b = Bridge(cfg, _OrderSink(events), lake=lake, zone=zone)  # not started: spool and acks run inline
    validate, append = b.validator.process, b.landing.append

    def traced_validate(msgs, now=None):
        events.append(("validate", sorted({m.topic.split("/")[2] for m in msgs})))
        return validate(msgs, now=now)

    def traced_append(accepted, *a, **kw):
        events.append(("spool", sorted(accepted)))
        return append(accepted, *a, **kw)

    b.validator.process = traced_validate
    b.landing.append = traced_append
    b.mqtt.ack = lambda batch: events.append(("ack", [m.mid for m, _ in batch]))
    return b, Topics(prefix)


def _batch(lake, T: Topics):
    meters = lake.read("ref_meters")["meter_id"].to_list()[:60]
    tx = lake.read("ref_transformers")["transformer_id"][0]
    t = (dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)).isoformat()
    now = time.time()
    burst = [_reading(m, t, 231.0) for m in meters[1:]] + [_reading(meters[0], t, 205.0)]  # one undervoltage
    hot = {
        "sample_time": t,
        "load_kva": 20.0,
        "top_oil_temp_c": 50.0,
        "hot_spot_temp_c": 150.0,
        "voltage_v": 233.0,
        "frequency_hz": 60.0,
    }
    return [
        (Message(T.headend("HE0"), json.dumps({"readings": burst[:30]}).encode(), now, 11), 0),
        (Message(T.headend("HE1"), json.dumps({"readings": burst[30:]}).encode(), now, 12), 0),
        (Message(T.scada(tx), json.dumps(hot).encode(), now, 13), 0),  # arrives last
    ]


def test_a_critical_sample_behind_a_head_end_burst_is_submitted_before_the_burst_is_validated(
    lake_and_landing, tmp_path
):
    lake, zone = lake_and_landing
    events: list = []
    b, T = _bridge(lake, zone, tmp_path, events, critical_lane_min_bulk_bytes=1000)  # the burst is ~8 KB
    alerts = b.process_lanes(_batch(lake, T))
    assert sorted(a.labels["alertname"] for a in alerts) == ["MeterUndervoltage", "TransformerHotSpotCritical"]
    assert events == [
        ("validate", ["scada"]),
        ("submit", ["TransformerHotSpotCritical"]),  # before the head-end burst is even validated
        ("spool", ["scada"]),
        ("validate", ["headend"]),
        ("submit", ["MeterUndervoltage"]),
        ("spool", ["meter_readings"]),
        ("ack", [11, 12, 13]),  # once, after both lanes are spooled, in arrival order
    ]
    assert b.counts["accepted"] == 61 and b.counts["messages"] == 3


def test_one_lane_batches_are_processed_as_before(lake_and_landing, tmp_path):
    lake, zone = lake_and_landing
    events: list = []
    b, T = _bridge(lake, zone, tmp_path, events)
    batch = _batch(lake, T)
    fast, bulk = b.lanes(batch)
    assert [m.mid for m, _ in fast] == [13] and [m.mid for m, _ in bulk] == [11, 12]
    b.process_lanes(batch[:2])  # head-end only: one batch, one ack
    assert [e[0] for e in events] == ["validate", "submit", "spool", "ack"]
    assert events[-1] == ("ack", [11, 12])


def test_a_single_burst_below_the_lane_threshold_is_processed_in_one_pass(lake_and_landing, tmp_path):
    lake, zone = lake_and_landing
    events: list = []
    b, T = _bridge(lake, zone, tmp_path, events)  # default threshold 64 KiB: one publisher burst stays whole
    alerts = b.process_lanes(_batch(lake, T))
    assert sorted(a.labels["alertname"] for a in alerts) == ["MeterUndervoltage", "TransformerHotSpotCritical"]
    assert events[0] == ("validate", ["headend", "scada"]) and [e[0] for e in events].count("validate") == 1
    assert events[-1] == ("ack", [11, 12, 13])
