"""The bridge end to end on the real Mosquitto: readings in, alerts out (with routing labels and the
operator's annotations), dead letters, landing files, last wills, metrics/health, graceful stop."""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import urllib.request

import polars as pl
import pytest

from contracts import STREAM_DEAD_LETTERS
from streaming_bridge import cli
from streaming_bridge.service import Bridge, BridgeConfig
from streaming_bridge.topics import Topics
from tests.streaming_bridge.bridge_helpers import (
    ListSink,
    publish_all,
    publisher,
    wait_until,
)

pytestmark = pytest.mark.mqtt


def _bridge(lake, zone, tmp_path, port, prefix, sink, **kw) -> Bridge:
    cfg = BridgeConfig(
        mqtt_port=port,
        client_id=f"bridge-{prefix.split('/')[0]}",
        topic_prefix=prefix,
        spool_dir=str(tmp_path / "spool"),
        flush_seconds=kw.pop("flush_seconds", 3600),
        http_port=0,
        **kw,
    )
    return Bridge(cfg, sink, lake=lake, zone=zone)


def _run(b: Bridge) -> threading.Thread:
    b.start()
    th = threading.Thread(target=b.run, daemon=True)
    th.start()
    return th


def test_stream_to_alerts_dead_letters_and_landing_on_real_mosquitto(
    lake_and_landing, tmp_path, shared_mosquitto, prefix, capsys
):
    lake, zone = lake_and_landing
    sink = ListSink()
    b = _bridge(lake, zone, tmp_path, shared_mosquitto, prefix, sink)
    th = _run(b)
    T = Topics(prefix)
    meters = lake.read("ref_meters")
    tx = meters["transformer_id"][0]
    m = meters.filter(pl.col("transformer_id") == tx)["meter_id"][0]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pub = publisher(shared_mosquitto)
    try:
        scada = {
            "sample_time": now.isoformat(),
            "load_kva": 20.0,
            "top_oil_temp_c": 60.0,
            "hot_spot_temp_c": 146.0,
            "voltage_v": 233.0,
            "frequency_hz": 60.0,
        }
        reading = {
            "meter_id": m,
            "reading_time": now.isoformat(),
            "consumption_kwh": 0.3,
            "demand_kw": 1.2,
            "voltage": 231.0,
            "current_amps": 5.0,
            "power_factor": 0.95,
        }
        publish_all(
            pub,
            [
                (T.scada(tx), scada),
                (
                    T.headend("he1"),
                    {"readings": [reading, {**reading, "reading_time": (now - dt.timedelta(minutes=15)).isoformat()}]},
                ),
                (T.meter(m), b"{not json"),
            ],
        )
        crit = wait_until(
            lambda: [a for a in sink.alerts if a.labels["alertname"] == "TransformerHotSpotCritical"], timeout=10
        )
        a = crit[0]
        place = lake.read("ref_transformers").filter(pl.col("transformer_id") == tx).row(0, named=True)
        assert a.labels == {
            "alertname": "TransformerHotSpotCritical",
            "severity": "critical",
            "asset_type": "transformer",
            "asset_id": tx,
            "transformer": tx,
            "feeder": place["feeder_id"],
            "region": place["substation_id"],
        }
        n_customers = meters.filter(pl.col("transformer_id") == tx)["customer_id"].n_unique()
        assert a.annotations["value"] == "hot_spot_temp_c = 146" and a.annotations["limit"] == "hot_spot_temp_c > 140"
        assert a.annotations["customers_downstream"] == str(n_customers) and n_customers > 0
        assert (
            a.annotations["dagster_url"].endswith(f"/assets/gold_transformer_risk?asset_id={tx}")
            and a.annotations["runbook"]
        )
        # live: startsAt is the detection time (Alertmanager's group_wait/inhibition need it); the reading's
        # time is the observed_at annotation
        assert a.annotations["observed_at"] == now.isoformat() and not a.resolved
        assert abs((a.starts_at - dt.datetime.now(dt.UTC)).total_seconds()) < 10
        # resolve: back below the clear threshold (130)
        publish_all(
            pub,
            [
                (
                    T.scada(tx),
                    {**scada, "sample_time": (now + dt.timedelta(seconds=1)).isoformat(), "hot_spot_temp_c": 100.0},
                )
            ],
        )
        res = wait_until(
            lambda: [x for x in sink.alerts if x.resolved and x.labels["alertname"] == "TransformerHotSpotCritical"],
            timeout=10,
        )
        assert (
            res[0].labels == a.labels
            and res[0].starts_at == a.starts_at
            and a.starts_at <= res[0].ends_at <= dt.datetime.now(dt.UTC)
        )
        wait_until(lambda: b.counts["dead_lettered"] == 1 and b.counts["accepted"] == 4, timeout=10)
        # metrics and health
        body = urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics", timeout=5).read().decode()
        assert 'gridlake_bridge_dead_lettered_total{reason="malformed_payload"} 1.0' in body
        assert 'gridlake_bridge_accepted_total{source="meter_readings"} 2.0' in body
        assert 'gridlake_bridge_alerts_posted_total{severity="critical",status="firing"} 1.0' in body
        assert "gridlake_bridge_detection_seconds_bucket" in body
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/healthz", timeout=5).read())
        assert (
            health["status"] == "ok" and health["mqtt_connected"] and health["messages"] == 4 and health["records"] == 5
        )
        assert cli.main(["status", "--url", f"http://127.0.0.1:{b.http_port}"]) == 0
        assert json.loads(capsys.readouterr().out)["accepted"] == 4
    finally:
        pub.loop_stop()
        pub.disconnect()
        b.stop()
        th.join(20)
    assert not th.is_alive()
    # graceful stop landed the spool: readings as landing files, the dead letter in its table
    files = zone.list("meter_readings")
    stream = [f.key for f in files if "/stream-" in f.key]
    assert len(stream) == 1
    landed = pl.read_parquet(zone.local_path(stream[0]))
    assert landed.height == 2 and set(landed["meter_id"]) == {m}
    assert len([f for f in zone.list("scada") if "/stream-" in f.key]) == 1
    dl = lake.read(STREAM_DEAD_LETTERS)
    assert (
        dl["reason_code"].to_list() == ["malformed_payload"]
        and dl["topic"][0] == T.meter(m)
        and dl["payload"][0] == "{not json"
    )


def test_last_will_meter_offline_and_transformer_outage(lake_and_landing, tmp_path, shared_mosquitto, prefix):
    lake, zone = lake_and_landing
    sink = ListSink()
    b = _bridge(lake, zone, tmp_path, shared_mosquitto, prefix, sink)
    th = _run(b)
    T = Topics(prefix)
    meters = lake.read("ref_meters")
    tx = meters["transformer_id"][0]
    beneath = meters.filter(pl.col("transformer_id") == tx)["meter_id"].to_list()
    assert len(beneath) >= 3
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pub = publisher(shared_mosquitto)
    try:
        # a device whose connection drops: the broker publishes its last will
        dev = publisher(
            shared_mosquitto,
            will=(T.status("meter", beneath[0]), json.dumps({"status": "offline", "reason": "last_will"}).encode()),
        )
        wait_until(dev.is_connected, 10, 0.01, "the device's CONNACK (its will is registered)")
        dev._sock.close()  # no DISCONNECT: a lost connection, as when a meter loses power
        off = wait_until(lambda: [a for a in sink.alerts if a.labels["alertname"] == "MeterOffline"], timeout=15)
        assert off[0].labels["asset_id"] == beneath[0] and off[0].labels["transformer"] == tx
        assert "last_will" in off[0].annotations["summary"]
        dev.loop_stop()
        # the rest report no supply (voltage empty) at once: the transformer is out
        rows = [
            {
                "meter_id": m,
                "reading_time": (now - dt.timedelta(minutes=15)).isoformat(),
                "consumption_kwh": 0.0,
                "demand_kw": 0.0,
            }
            for m in beneath[1:]
        ]
        publish_all(pub, [(T.headend("he1"), {"readings": rows})])
        out = wait_until(lambda: [a for a in sink.alerts if a.labels["alertname"] == "TransformerOutage"], timeout=10)
        assert out[0].severity == "critical" and out[0].labels["asset_id"] == tx
        # it fires when the share of meters down first reaches 60 %
        assert out[0].annotations["value"] == f"{math.ceil(0.6 * len(beneath))}/{len(beneath)} meters down"
        assert len([a for a in sink.alerts if a.labels["alertname"] == "MeterSupplyLost"]) == len(beneath) - 1
        # supply back: the outage and the meter alerts resolve
        back = [{**rows[0], "meter_id": m, "reading_time": now.isoformat(), "voltage": 230.0} for m in beneath]
        publish_all(pub, [(T.headend("he1"), {"readings": back})])
        wait_until(lambda: ("TransformerOutage", tx) in sink.names(resolved=True), timeout=10)
        assert ("MeterOffline", beneath[0]) in sink.names(resolved=True)
    finally:
        pub.loop_stop()
        pub.disconnect()
        b.stop()
        th.join(20)


def test_segments_are_landed_by_the_landing_process_with_their_dead_letters(
    lake_and_landing, tmp_path, shared_mosquitto, prefix
):
    """A bridge that opens the lake and landing zone itself (the service) lands closed spool segments in a
    child process: the same stream files and dead-letter rows, counted in the metrics when the child is done,
    and the last segment landed before stop() returns."""
    lake, zone = lake_and_landing
    cfg = BridgeConfig(
        mqtt_port=shared_mosquitto,
        client_id=f"bridge-{prefix.split('/')[0]}",
        topic_prefix=prefix,
        lake_root=str(tmp_path / "lake"),
        landing=str(tmp_path / "landing"),
        spool_dir=str(tmp_path / "spool"),
        flush_seconds=0.5,
        http_port=-1,
        land_process=True,
    )
    b = Bridge(cfg, ListSink())
    th = _run(b)
    T = Topics(prefix)
    meters = lake.read("ref_meters")["meter_id"].to_list()[:5]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pub = publisher(shared_mosquitto)
    try:
        assert b.landing.lander is not None
        rows = [
            {
                "meter_id": m,
                "reading_time": (now - dt.timedelta(minutes=15 * k)).isoformat(),
                "consumption_kwh": 0.2,
                "demand_kw": 0.8,
                "voltage": 231.0,
            }
            for m in meters
            for k in range(4)
        ]
        publish_all(pub, [(T.headend("he1"), {"readings": rows}), (T.meter(meters[0]), b"{not json")])
        wait_until(lambda: b.landing.landed_rows == len(rows), 30, what="the landing process to land the segment")
        wait_until(lambda: b.metrics.landed._value.get() == len(rows), 5, what="the landed-rows metric")
        files = [f.key for f in zone.list("meter_readings") if "/stream-" in f.key]
        df = pl.concat([pl.read_parquet(zone.local_path(k)) for k in files])
        assert sorted(df["meter_id"].to_list()) == sorted(r["meter_id"] for r in rows)
        wait_until(lambda: lake.exists(STREAM_DEAD_LETTERS) and lake.read(STREAM_DEAD_LETTERS).height == 1, 10)
        assert lake.read(STREAM_DEAD_LETTERS)["reason_code"].to_list() == ["malformed_payload"]
        assert b.landing.lander.failures == []
        wait_until(lambda: not any(p.is_dir() for p in (tmp_path / "spool").iterdir()), 10, what="an empty spool")
    finally:
        pub.loop_stop()
        b.stop()
        th.join(30)
    assert not th.is_alive() and b.landing.lander.pending() == 0
