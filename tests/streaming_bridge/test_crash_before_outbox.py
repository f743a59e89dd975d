"""The bridge dies after detecting a condition but before the outbox committed its alert (the window
test_bridge_sigkill hit under load): the restarted bridge, given the redelivered (never acknowledged)
reading, must still hand the alert to its sink, with the startsAt the first run chose."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid

import pytest

from streaming_bridge.ingress import Message
from streaming_bridge.service import Bridge, BridgeConfig
from streaming_bridge.topics import Topics
from tests.streaming_bridge.bridge_helpers import ListSink

pytestmark = pytest.mark.mqtt


class _DiesOnSubmit(ListSink):
    """The process dies here: nothing reaches the outbox, and control never returns to the bridge."""

    def submit(self, alerts) -> None:
        raise SystemExit("killed before the outbox commit")


def test_a_crash_between_detection_and_the_outbox_commit_loses_no_alert(lake_and_landing, tmp_path, private_mosquitto):
    lake, zone = lake_and_landing
    prefix = f"c{uuid.uuid4().hex[:8]}/v1"
    cfg = BridgeConfig(
        mqtt_port=private_mosquitto.port,
        client_id=f"bridge-crash-{uuid.uuid4().hex[:6]}",
        topic_prefix=prefix,
        spool_dir=str(tmp_path / "spool"),
        flush_seconds=3600,
        http_port=-1,
    )
    tx = lake.read("ref_transformers")["transformer_id"][0]
    t = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    hot = Message(
        Topics(prefix).scada(tx),
        json.dumps(
            {
                "sample_time": t.isoformat(),
                "load_kva": 20.0,
                "top_oil_temp_c": 50.0,
                "hot_spot_temp_c": 150.0,
                "voltage_v": 233.0,
                "frequency_hz": 60.0,
            }
        ).encode(),
        time.time(),
    )

    first = Bridge(cfg, _DiesOnSubmit(), lake=lake, zone=zone)
    with pytest.raises(SystemExit):
        first.process([(hot, 0)])  # detected; the "process" dies inside the outbox submit
    first.topo.onsets.close()  # what a dead process leaves: its SQLite files (WAL) as committed

    sink = ListSink()
    second = Bridge(cfg, sink, lake=lake, zone=zone)
    second.start()  # resumes whatever the first run recorded as firing
    try:
        second.process([(hot, 0)])  # the broker redelivers the unacknowledged reading
    finally:
        second.stop()
        th = threading.Thread(target=second.run, daemon=True)
        th.start()
        th.join(30)
    fired = [a for a in sink.alerts if a.labels["alertname"] == "TransformerHotSpotCritical" and not a.resolved]
    assert [(a.labels["asset_id"], a.annotations["observed_at"]) for a in fired] == [(tx, t.isoformat())]
