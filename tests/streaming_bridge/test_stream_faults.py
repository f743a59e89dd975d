"""Stream faults: the broker restarts while a publisher streams (the bridge's persistent session and the
publisher's QoS 1 retries: nothing lost), and the bridge is stopped while messages keep coming (the
broker queues them for its session)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import polars as pl
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streaming_bridge.service import Bridge, BridgeConfig
from streaming_bridge.topics import Topics
from tests.streaming_bridge.bridge_helpers import ListSink, wait_until

pytestmark = pytest.mark.mqtt


def persistent_publisher(port: int) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    c.reconnect_delay_set(0.1, 1)
    c.max_queued_messages_set(0)
    c.acked = set()  # mids the broker acknowledged (a publish while disconnected is queued and sent later)
    c.on_publish = lambda client, userdata, mid, rc, props: client.acked.add(mid)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
    c.loop_start()
    return c


def _bridge(lake, zone, tmp_path, port, prefix, sink) -> Bridge:
    cfg = BridgeConfig(
        mqtt_port=port,
        client_id="bridge-faults",
        topic_prefix=prefix,
        spool_dir=str(tmp_path / "spool"),
        flush_seconds=3600,
        http_port=-1,
    )
    return Bridge(cfg, sink, lake=lake, zone=zone)


def _stream(pub, T, tx_ids, meters, start, n, hot_every):
    """n SCADA samples round-robin over the transformers, one hot-spot excursion every hot_every samples
    (an injected condition: one sample at 150 degC, the next back to normal), and head-end batches."""
    injected = []
    infos = []
    for k in range(n):
        tx = tx_ids[k % len(tx_ids)]
        t = start + dt.timedelta(seconds=k)
        hot = k % hot_every == 0
        if hot:
            injected.append((tx, t))
        payload = {
            "sample_time": t.isoformat(),
            "load_kva": 20.0,
            "top_oil_temp_c": 50.0,
            "hot_spot_temp_c": 150.0 if hot else 60.0,
            "voltage_v": 233.0,
            "frequency_hz": 60.0,
        }
        infos.append(pub.publish(T.scada(tx), json.dumps(payload).encode(), qos=1))
        if k % 10 == 0:
            rows = [
                {
                    "meter_id": m,
                    "reading_time": t.isoformat(),
                    "consumption_kwh": 0.2,
                    "demand_kw": 0.8,
                    "voltage": 231.0,
                }
                for m in meters
            ]
            infos.append(pub.publish(T.headend("he1"), json.dumps({"readings": rows}).encode(), qos=1))
        time.sleep(0.002)
    return injected, infos


def _check(sink: ListSink, injected, lake, zone, n_scada: int, n_meter: int):
    fired = [a for a in sink.alerts if a.labels["alertname"] == "TransformerHotSpotCritical" and not a.resolved]
    got = {(a.labels["asset_id"], dt.datetime.fromisoformat(a.annotations["observed_at"])) for a in fired}
    assert got == set(injected)  # every injected condition, and nothing else
    # landed readings: every one published, duplicates (redelivery) allowed only as exact copies
    keys = {}
    for src, ent, tc, n in (
        ("scada", "transformer_id", "sample_time", n_scada),
        ("meter_readings", "meter_id", "reading_time", n_meter),
    ):
        files = [f.key for f in zone.list(src) if "/stream-" in f.key]
        df = pl.concat([pl.read_parquet(zone.local_path(k)) for k in files])
        keys[src] = df.select(ent, tc).unique().height
        assert keys[src] == n, (src, keys[src], n)


def test_broker_restart_mid_stream_loses_nothing(lake_and_landing, tmp_path, private_mosquitto):
    lake, zone = lake_and_landing
    prefix = f"f{uuid.uuid4().hex[:8]}/v1"
    T = Topics(prefix)
    sink = ListSink()
    b = _bridge(lake, zone, tmp_path, private_mosquitto.port, prefix, sink)
    b.start()
    th = threading.Thread(target=b.run, daemon=True)
    th.start()
    txs = lake.read("ref_transformers")["transformer_id"].to_list()
    meters = lake.read("ref_meters")["meter_id"].to_list()[:20]
    pub = persistent_publisher(private_mosquitto.port)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=12)
    result = {}

    def producer():
        result["injected"], result["infos"] = _stream(pub, T, txs, meters, start, 600, 25)

    prod = threading.Thread(target=producer)
    prod.start()
    time.sleep(0.4)
    private_mosquitto.stop()  # SIGTERM: mosquitto saves sessions and queued messages
    time.sleep(1.0)
    private_mosquitto.start()
    prod.join(60)
    try:
        wait_until(lambda: {i.mid for i in result["infos"]} <= pub.acked, timeout=60)
        wait_until(
            lambda: (
                len(
                    [a for a in sink.alerts if not a.resolved and a.labels["alertname"] == "TransformerHotSpotCritical"]
                )
                >= len(result["injected"])
            ),
            timeout=30,
        )
        assert b.mqtt.connects >= 2 and b.mqtt.session_present
    finally:
        pub.loop_stop()
        b.stop()
        th.join(30)
    _check(sink, result["injected"], lake, zone, 600, 60 * len(meters))


def test_messages_published_while_the_bridge_is_down_are_delivered_on_restart(
    lake_and_landing, tmp_path, private_mosquitto
):
    lake, zone = lake_and_landing
    prefix = f"f{uuid.uuid4().hex[:8]}/v1"
    T = Topics(prefix)
    sink = ListSink()
    txs = lake.read("ref_transformers")["transformer_id"].to_list()
    meters = lake.read("ref_meters")["meter_id"].to_list()[:20]
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=12)
    b = _bridge(lake, zone, tmp_path, private_mosquitto.port, prefix, sink)
    b.start()
    th = threading.Thread(target=b.run, daemon=True)
    th.start()
    pub = persistent_publisher(private_mosquitto.port)
    inj1, infos = _stream(pub, T, txs, meters, start, 200, 25)
    wait_until(lambda: b.counts["records"] >= 200 + 20 * 20, timeout=30)
    b.stop()  # graceful stop: the broker keeps the session and queues what comes next
    th.join(30)
    inj2, infos2 = _stream(pub, T, txs, meters, start + dt.timedelta(seconds=200), 200, 25)
    wait_until(lambda: {i.mid for i in infos + infos2} <= pub.acked, timeout=60)
    b2 = _bridge(lake, zone, tmp_path, private_mosquitto.port, prefix, sink)
    b2.start()
    assert b2.mqtt.session_present
    th2 = threading.Thread(target=b2.run, daemon=True)
    th2.start()
    try:
        wait_until(lambda: b2.counts["records"] >= 200 + 20 * 20, timeout=30)
    finally:
        pub.loop_stop()
        b2.stop()
        th2.join(30)
    _check(sink, inj1 + inj2, lake, zone, 400, 40 * len(meters))
