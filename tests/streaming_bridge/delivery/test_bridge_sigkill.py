"""The bridge process SIGKILLed mid-stream and started again (the whole chain real: private Mosquitto, the
bridge as `python -m streaming_bridge.cli run`, its outbox, a private Alertmanager, the webhook receiver
with PostgreSQL). After recovery every injected condition is delivered exactly once to each receiver its
severity routes to (one idempotency key: a re-detected condition keeps its startsAt), the alerts table
holds exactly the injected conditions, and every published reading reached a landing file."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import polars as pl
import pytest
from bridge_delivery_helpers import dump_diagnostics, query, wait_until
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streaming_bridge.topics import Topics

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
ROUTES = {"TransformerHotSpotCritical": ("bridge", "pager", "chat"), "MeterUndervoltage": ("bridge", "chat")}


def _bridge(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streaming_bridge.cli", "run", "--http-port", "-1"],
        cwd=REPO,
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )


def test_bridge_sigkill_and_restart_mid_stream_delivers_each_condition_once(
    lake_and_landing, tmp_path, private_mosquitto, alertmanager, store
):
    lake, zone = lake_and_landing
    prefix = f"k{uuid.uuid4().hex[:8]}/v1"
    T = Topics(prefix)
    env = {
        **os.environ,
        "GRIDLAKE_MQTT_PORT": str(private_mosquitto.port),
        "GRIDLAKE_MQTT_PREFIX": prefix,
        "GRIDLAKE_LAKE_ROOT": str(lake.root),
        "GRIDLAKE_LANDING": str(zone.root),
        "GRIDLAKE_BRIDGE_SPOOL": str(tmp_path / "spool"),
        "GRIDLAKE_BRIDGE_CLIENT_ID": "bridge-sigkill",
        "GRIDLAKE_BRIDGE_OUTBOX": str(tmp_path / "outbox.sqlite"),
        "GRIDLAKE_ALERTMANAGER_URL": alertmanager.url,
        "GRIDLAKE_BRIDGE_FLUSH_S": "2",
    }
    log = tmp_path / "bridge.log"
    # The bridge's persistent session, created before it starts: the broker queues every reading for it from
    # the first publish. A fixed sleep for the bridge to subscribe lost the first readings when its start-up took
    # longer under load (a failed run at load ~20 missed exactly the conditions of the first ~50 s of samples).
    sess = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bridge-sigkill", protocol=mqtt.MQTTv5)
    sess.subacked = set()
    sess.on_subscribe = lambda client, userdata, mid, rcs, props: client.subacked.add(mid)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    sess.connect("127.0.0.1", private_mosquitto.port, clean_start=False, properties=props)
    sess.loop_start()
    sub_mids = {sess.subscribe(t, qos=1)[1] for t in T.subscriptions()}
    wait_until(lambda: sub_mids <= sess.subacked, 10, what="the bridge's session subscriptions")
    sess.disconnect()
    sess.loop_stop()
    b = _bridge(env, log)
    txs = lake.read("ref_transformers")["transformer_id"].to_list()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    pub.acked = set()
    pub.on_publish = lambda client, userdata, mid, rc, props: client.acked.add(mid)
    pub.connect("127.0.0.1", private_mosquitto.port)
    pub.loop_start()
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=4)
    meters = lake.read("ref_meters")["meter_id"].to_list()
    onset = {tx: 30 + 36 * i for i, tx in enumerate(txs)}  # each transformer turns hot once and stays hot
    injected, mids, n, n_meter = set(), [], 240, 0
    killed = False

    def send(topic, payload):
        mids.append(pub.publish(topic, json.dumps(payload).encode(), qos=1).mid)

    try:
        for k in range(n):
            tx = txs[k % len(txs)]
            t = start + dt.timedelta(seconds=k)
            hot = k >= onset[tx]
            if hot and k - onset[tx] < len(txs):
                injected.add(("TransformerHotSpotCritical", tx, t.isoformat()))
            send(
                T.scada(tx),
                {
                    "sample_time": t.isoformat(),
                    "load_kva": 20.0,
                    "top_oil_temp_c": 50.0,
                    "hot_spot_temp_c": 150.0 if hot else 60.0,
                    "voltage_v": 233.0,
                    "frequency_hz": 60.0,
                },
            )
            if k % 4 == 0 and n_meter < len(meters):  # a meter reports once, under voltage: a condition that stays
                m = meters[n_meter]
                n_meter += 1
                injected.add(("MeterUndervoltage", m, t.isoformat()))
                send(
                    T.meter(m),
                    {"reading_time": t.isoformat(), "consumption_kwh": 0.2, "demand_kw": 0.8, "voltage": 212.0},
                )
            time.sleep(0.02)
            if k == n // 2:
                b.send_signal(signal.SIGKILL)  # mid-stream, no chance to flush anything
                b.wait(10)
                killed = True
                b = _bridge(env, log)
        wait_until(lambda: set(mids) <= pub.acked, 30, what="the broker to take every message")

        def firing():
            return query(
                store,
                "SELECT alertname, asset_id, annotations::json->>'observed_at' FROM {s}.alerts "
                "WHERE alertname IN ('TransformerHotSpotCritical', 'MeterUndervoltage') AND status = 'firing'",
            )

        wait_until(lambda: set(firing()) >= injected, 90, 0.5, "every injected condition in the alerts table")
        time.sleep(3.0)  # anything extra would arrive now
        rows = firing()
        assert killed and len(injected) == len(txs) + n_meter
        # exactly the injected conditions, each with one startsAt (one idempotency key)
        assert sorted(rows) == sorted(injected)
        deliveries = query(
            store,
            "SELECT d.receiver, a.alertname, a.asset_id, a.annotations::json->>'observed_at' FROM {s}.alert_deliveries d "
            "JOIN {s}.alerts a USING (fingerprint, starts_at, status) WHERE a.status = 'firing'",
        )
        per: dict = {}
        for recv, *cond in deliveries:
            per[(recv, *cond)] = per.get((recv, *cond), 0) + 1
        for cond in injected:
            for recv in ROUTES[cond[0]]:
                assert per.get((recv, *cond)) == 1, (recv, cond)
    except BaseException:  # keep what teardown destroys (the schema), for the next flake's root cause
        d = dump_diagnostics(
            "test_bridge_sigkill", store, tmp_path / "outbox.sqlite", alertmanager.url, (log, alertmanager.log_path)
        )
        (d / "injected.txt").write_text("\n".join(map(repr, sorted(injected))))
        raise
    finally:
        pub.loop_stop()
        if b.poll() is None:
            b.send_signal(signal.SIGTERM)
            b.wait(60)
    assert b.returncode == 0, log.read_text()[-2000:]
    # every sample reached a landing file (duplicates from redelivery are exact copies ingestion drops)
    files = [f.key for f in zone.list("scada") if "/stream-" in f.key]
    landed = (
        pl.concat([pl.read_parquet(zone.local_path(k)) for k in files]).select("transformer_id", "sample_time").unique()
    )
    assert landed.height == n
    meters_landed = pl.concat(
        [pl.read_parquet(zone.local_path(f.key)) for f in zone.list("meter_readings") if "/stream-" in f.key]
    )
    assert meters_landed.select("meter_id").unique().height == n_meter
