"""`make bench-bridge`: the streaming bridge under a sustained MQTT load, every component real.

    .venv/bin/python -m benchmarks.bench_bridge                # 10,000 readings/s for 60 s (+ a 15 s baseline)
    .venv/bin/python -m benchmarks.bench_bridge --seconds 20   # shorter

Setup (all on loopback, private instances on free ports): Mosquitto (persistence, unlimited queues),
the bridge as its own process (`python -m streaming_bridge.cli run`, durable outbox), Prometheus
Alertmanager 0.25 with the repository's routing tree, the bridge's webhook receiver (its own process,
PostgreSQL `alerts`/`alert_deliveries` in a throw-away schema, MQTT fan-out) and an aiosmtpd e-mail sink.

Load (a publisher process): every 20 ms two AMI head-end batch messages of 90 meter readings and 20
single SCADA messages: 10,000 readings/s. 1 % are anomalous or over a limit: 90/s meter readings at 212 V
(MeterUndervoltage, warning; each on a meter that reports once, so the condition stays firing) and 10/s
SCADA samples at a 150 degC hot spot (TransformerHotSpotCritical, critical; each on a different transformer,
whose next sample resolves it). 2.5 bad payloads/s (a number sent as text) must be dead-lettered. Every
reading carries its publish time as its timestamp, which the alert carries as `observed_at`.

Measured: detection latency (publish -> Alertmanager accepted the POST, from the bridge's posted log),
end-to-end latency for critical alerts (publish -> the pager webhook received it, `alert_deliveries`),
the bridge's CPU (/proc), the lag (published - processed) over time, and counts: published = accepted +
dead-lettered; every injected condition -> exactly one notification key per receiver. Baseline, measured
first in the same run: a bare paho subscriber (receive + PUBACK, nothing else) under the same publisher:
the bridge's CPU is reported against it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from tests.streaming_bridge.bridge_helpers import free_port, wait_until  # the one polling helper of the bridge tests

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "bridge.json"
WORK = REPO / "benchmarks" / "work" / "bridge"
PREFIX = "bench/v1"
TICK = 0.02
N_NORMAL_METERS = 20_000
N_TRANSFORMERS = 1_000

#: nice increment of the publisher process (0: same priority as the bridge); --publisher-nice
PUBLISHER_NICE = 10
TARGETS = {"readings_per_s": 10_000, "detection_p99_ms": 50.0, "e2e_critical_p99_ms": 1000.0, "lost": 0}


def log(msg: str) -> None:
    print(f"[bench-bridge {datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live children (the bridge's MQTT child process counts as the bridge's)."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:  # a thread or child may end while we look: it is simply not counted
            children = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in children:
            try:
                total += tree_cpu_seconds(int(child))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def tree_cpu_by_pid(pid: int) -> dict[int, float]:
    """CPU seconds of a process and each of its live descendants, by pid."""
    out = {pid: cpu_seconds(pid)}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for child in children:
            try:
                out.update(tree_cpu_by_pid(int(child)))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


def pct(a, q) -> float | None:
    return float(np.percentile(a, q)) if len(a) else None


# --------------------------------------------------------------------------------------------- fleet
def fleet(n_fresh: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Reference tables: normal meters, 'fresh' meters (each reports once, anomalous) and transformers."""
    from contracts import TABLES

    tx = [f"T{i:05d}" for i in range(N_TRANSFORMERS)]
    ids = [f"M{i:06d}" for i in range(N_NORMAL_METERS)] + [f"X{i:06d}" for i in range(n_fresh)]
    n = len(ids)
    txi = np.arange(n) % N_TRANSFORMERS
    meters = pl.DataFrame(
        {
            "meter_id": ids,
            "customer_id": [f"C{i}" for i in range(n)],
            "transformer_id": [tx[i] for i in txi],
            "feeder_id": [f"F{i // 20:03d}" for i in txi],
            "substation_id": [f"S{i // 200:02d}" for i in txi],
            "tariff": ["residential"] * n,
            "latitude": [36.0] * n,
            "longitude": [-79.8] * n,
            "has_pv": [False] * n,
            "pv_kw_dc": [0.0] * n,
            "pv_tilt_deg": [0.0] * n,
            "pv_azimuth_deg": [180.0] * n,
            "has_ev": [False] * n,
            "has_battery": [False] * n,
            "dr_opt_in": [False] * n,
            "interval_minutes": [15] * n,
        }
    )
    transformers = pl.DataFrame(
        {
            "transformer_id": tx,
            "feeder_id": [f"F{i // 20:03d}" for i in range(N_TRANSFORMERS)],
            "substation_id": [f"S{i // 200:02d}" for i in range(N_TRANSFORMERS)],
            "rating_kva": [50.0] * N_TRANSFORMERS,
            "install_year": [2010] * N_TRANSFORMERS,
            "last_maintenance": [datetime(2025, 1, 1).date()] * N_TRANSFORMERS,
        }
    )
    return TABLES["ref_meters"].conform(meters), TABLES["ref_transformers"].conform(transformers)


# --------------------------------------------------------------------------------------------- publisher
class Load:
    """The publisher's messages, tick by tick (also replayed in-process by ``make bench-bridge-cpu``): per
    20 ms tick two AMI head-end batch messages and single SCADA messages, 1 % over a limit, 2.5 bad
    payloads/s. ``conditions`` collects the injected conditions (alertname, asset, observed_at, severity)."""

    def __init__(self, rate: int, topics, seed: int = 7):
        self.T = topics
        self.rng = random.Random(seed)
        per_tick = rate * TICK  # 200 readings
        self.n_meter = int(per_tick * 0.9)  # 180 in two head-end messages
        self.n_scada = int(per_tick) - self.n_meter  # 20
        self.meters = [f"M{i:06d}" for i in range(N_NORMAL_METERS)]
        self.txs = [f"T{i:05d}" for i in range(N_TRANSFORMERS)]
        self.hot_order = self.rng.sample(self.txs, len(self.txs))
        self.mi = self.ti = self.fresh = self.hot = 0
        self.acc_m = self.acc_s = self.acc_bad = 0.0
        self.conditions: list[tuple[str, str, str, str]] = []
        self.readings = self.bad = self.msgs = 0

    def tick(self, iso: str) -> list[tuple[str, bytes]]:
        """One tick's (topic, payload) messages, every reading stamped ``iso``."""
        rng, T, out = self.rng, self.T, []
        self.acc_m += self.n_meter * 0.01
        self.acc_s += self.n_scada * 0.01
        self.acc_bad += 0.05
        n_anom = int(self.acc_m)
        self.acc_m -= n_anom
        rows = []
        for _j in range(self.n_meter - n_anom):
            m = self.meters[self.mi % N_NORMAL_METERS]
            self.mi += 1
            rows.append(
                {
                    "meter_id": m,
                    "reading_time": iso,
                    "consumption_kwh": 0.25,
                    "demand_kw": 1.0,
                    "voltage": 231.0 + rng.uniform(-3, 3),
                    "current_amps": 4.5,
                    "power_factor": 0.96,
                }
            )
        for _ in range(n_anom):
            m = f"X{self.fresh:06d}"
            self.fresh += 1
            rows.append(
                {
                    "meter_id": m,
                    "reading_time": iso,
                    "consumption_kwh": 0.25,
                    "demand_kw": 1.0,
                    "voltage": 212.0,
                    "current_amps": 4.5,
                    "power_factor": 0.96,
                }
            )
            self.conditions.append(("MeterUndervoltage", m, iso, "warning"))
        rng.shuffle(rows)
        half = len(rows) // 2
        for h, part in enumerate((rows[:half], rows[half:])):
            out.append((T.headend(f"HE{h}"), json.dumps({"readings": part}).encode()))
        self.readings += len(rows)
        hot_now = int(self.acc_s)
        self.acc_s -= hot_now
        for j in range(self.n_scada):
            if j < hot_now:
                tx = self.hot_order[self.hot % len(self.hot_order)]
                self.hot += 1
                hs = 150.0
                self.conditions.append(("TransformerHotSpotCritical", tx, iso, "critical"))
            else:
                tx = self.txs[self.ti % N_TRANSFORMERS]
                self.ti += 1
                hs = 65.0 + rng.uniform(-2, 2)
            out.append(
                (
                    T.scada(tx),
                    json.dumps(
                        {
                            "sample_time": iso,
                            "load_kva": 30.0,
                            "top_oil_temp_c": 50.0,
                            "hot_spot_temp_c": hs,
                            "voltage_v": 233.0,
                            "frequency_hz": 60.0,
                        }
                    ).encode(),
                )
            )
        self.readings += self.n_scada
        if self.acc_bad >= 1:
            self.acc_bad -= 1
            out.append(
                (
                    T.scada(self.txs[0]),
                    json.dumps(
                        {
                            "sample_time": iso,
                            "load_kva": "thirty",
                            "top_oil_temp_c": 50.0,
                            "hot_spot_temp_c": 60.0,
                            "voltage_v": 233.0,
                            "frequency_hz": 60.0,
                        }
                    ).encode(),
                )
            )
            self.bad += 1
        self.msgs += len(out)
        return out


def publisher(port: int, seconds: float, rate: int, out: str, progress, go, nice: int = 0) -> None:
    """Runs in its own process. Writes {published, readings, bad, conditions, elapsed} to ``out``."""
    import paho.mqtt.client as mqtt

    if nice:
        # the load generator yields to the system under test: on 2 cores the publisher's 20 ms bursts (JSON for
        # 200 readings) otherwise preempt the bridge's processing of the previous burst (docs/DECISIONS.md)
        os.nice(nice)

    from streaming_bridge.topics import Topics

    load = Load(rate, Topics(PREFIX))
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    acked = [0]
    c.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    go.wait()
    t0 = time.monotonic()
    k = 0
    while True:
        target = t0 + k * TICK
        now_m = time.monotonic()
        if now_m - t0 >= seconds:
            break
        if target > now_m:
            time.sleep(target - now_m)
        for topic, payload in load.tick(datetime.now(UTC).isoformat(timespec="microseconds")):
            c.publish(topic, payload, qos=1)
        progress.value = load.readings + load.bad
        k += 1
    elapsed = time.monotonic() - t0
    msgs = load.msgs
    end = time.monotonic() + 60
    while acked[0] < msgs and time.monotonic() < end:
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    Path(out).write_text(
        json.dumps(
            {
                "published": load.readings + load.bad,
                "readings": load.readings,
                "bad": load.bad,
                "messages": msgs,
                "acked": acked[0],
                "elapsed_s": elapsed,
                "conditions": load.conditions,
            }
        )
    )


def probe_subscriber(port: int, stop, ready, out: str) -> None:
    """A second, bare subscriber on the SCADA topics (QoS 0, its own session like the bridge) during the main run:
    publish -> receipt of each hot (critical) sample without the bridge, i.e. what the publisher and Mosquitto
    add on this host at this moment. Writes the delays (ms) to ``out``."""
    import paho.mqtt.client as mqtt

    os.setsid()
    delays: list[float] = []
    hot = b'"hot_spot_temp_c": 150.0'

    def on_message(client, userdata, msg):
        if hot in msg.payload:
            t = json.loads(msg.payload)["sample_time"]
            delays.append((time.time() - datetime.fromisoformat(t).timestamp()) * 1000)

    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    c.on_message = on_message
    c.on_subscribe = lambda *a: ready.set()
    c.on_connect = lambda cl, *a: cl.subscribe(f"{PREFIX}/scada/+/telemetry", qos=0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    stop.wait()
    c.loop_stop()
    Path(out).write_text(json.dumps(delays))


def bare_subscriber(port: int, stop, count) -> None:
    """The baseline: receive + PUBACK every message of the topic tree, nothing else (paho, QoS 1)."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )

    def on_message(client, userdata, msg):
        count.value += 1

    c.on_message = on_message
    c.on_connect = lambda cl, *a: cl.subscribe(f"{PREFIX}/#", qos=1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    stop.wait()
    c.loop_stop()


# --------------------------------------------------------------------------------------------- helpers
def http_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback URLs built here
        return json.loads(r.read())


def run_baseline(port: int, seconds: float, rate: int, work: Path, nice: int = 0) -> dict:
    ctx = mp.get_context("spawn")
    stop, go, count, progress = ctx.Event(), ctx.Event(), ctx.Value("l", 0), ctx.Value("l", 0)
    sub = ctx.Process(target=bare_subscriber, args=(port, stop, count), daemon=True)
    sub.start()
    time.sleep(1.0)
    out = work / "baseline_pub.json"
    pub = ctx.Process(target=publisher, args=(port, seconds, rate, str(out), progress, go, nice), daemon=True)
    pub.start()
    time.sleep(0.5)
    c0, t0 = cpu_seconds(sub.pid), time.monotonic()
    go.set()
    pub.join(seconds + 90)
    res = json.loads(out.read_text())
    wait_until(lambda: count.value >= res["messages"], 30, 0.2, "the bare subscriber to receive everything")
    cpu = cpu_seconds(sub.pid) - c0
    wall = time.monotonic() - t0
    stop.set()
    sub.join(5)
    if sub.is_alive():
        sub.kill()
    return {
        "seconds": round(res["elapsed_s"], 1),
        "messages": res["messages"],
        "readings": res["readings"],
        "cpu_pct": round(100 * cpu / wall, 1),
    }


# --------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=int, default=10_000, help="readings per second")
    ap.add_argument("--baseline-seconds", type=float, default=15.0)
    ap.add_argument("--publisher-nice", type=int, default=PUBLISHER_NICE, help="nice increment of the load generator")
    ap.add_argument(
        "--bridge-session",
        choices=("own", "shared"),
        default="own",
        help="own: the bridge is started in its own session, as a service (systemd unit, daemon) runs; with Linux "
        "autogroup scheduling that is its own CPU share, not one shared with the load generator and the rest",
    )
    ap.add_argument(
        "--mqtt-process", choices=("1", "0"), default="1", help="the bridge's paho client in a child process (1)"
    )
    ap.add_argument(
        "--profile", action="store_true", help="run the bridge under cProfile (its main thread: the processing loop)"
    )
    a = ap.parse_args(argv)
    load_start = os.getloadavg()

    import psycopg2

    from contracts import TABLES
    from lake.delta import Lake
    from streaming_bridge.amproc import AlertmanagerProcess, render_config, write_config
    from streaming_bridge.mqproc import Mosquitto
    from streaming_bridge.receiver import pg_params

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    n_fresh = int(a.rate * 0.009 * a.seconds) + 1000
    meters, transformers = fleet(n_fresh)
    lake = Lake(WORK / "lake")
    lake.write_partition(TABLES["ref_meters"], meters, None)
    lake.write_partition(TABLES["ref_transformers"], transformers, None)
    log(f"fleet: {meters.height} meters, {transformers.height} transformers")

    procs: list[subprocess.Popen] = []
    mq = Mosquitto(WORK / "mosquitto")
    mq.start()
    schema = f"gl_bench_{uuid.uuid4().hex[:8]}"
    am = smtp = None
    result: dict = {}
    try:
        # ---- baseline: a bare subscriber under the same publisher
        log(f"baseline: bare paho subscriber, {a.baseline_seconds:.0f} s at {a.rate} readings/s")
        base = run_baseline(mq.port, a.baseline_seconds, a.rate, WORK, a.publisher_nice)
        log(f"baseline: {base}")

        # ---- delivery side: SMTP sink, receiver process, Alertmanager
        from aiosmtpd.controller import Controller

        class _Sink:
            n = 0

            async def handle_DATA(self, server, session, envelope):
                _Sink.n += 1
                return "250 OK"

        smtp_port = free_port()
        smtp = Controller(_Sink(), hostname="127.0.0.1", port=smtp_port)
        smtp.start()
        env = {
            **os.environ,
            "GRIDLAKE_MQTT_PORT": str(mq.port),
            "GRIDLAKE_ALERT_TOPIC_PREFIX": "bench/alerts",
            "POLARS_MAX_THREADS": "1",
        }
        rport = free_port()
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streaming_bridge.receiver",
                    "--listen",
                    f"127.0.0.1:{rport}",
                    "--schema",
                    schema,
                ],
                cwd=REPO,
                env=env,
                stdout=open(WORK / "receiver.log", "wb"),
                stderr=subprocess.STDOUT,
            )
        )
        wait_until(lambda: _ok(f"http://127.0.0.1:{rport}/healthz"), 30, 0.2, "the webhook receiver")
        cfg = render_config(webhook_base=f"http://127.0.0.1:{rport}", smarthost=f"127.0.0.1:{smtp_port}")
        am = AlertmanagerProcess(write_config(cfg, WORK / "alertmanager.yml"), storage_dir=WORK / "am-data")
        am.start()
        log(f"Alertmanager {am.url}, receiver 127.0.0.1:{rport}, SMTP 127.0.0.1:{smtp_port}, Mosquitto {mq.port}")

        # ---- the bridge
        hport = free_port()
        posted = WORK / "posted.jsonl"
        benv = {
            **env,
            "GRIDLAKE_LAKE_ROOT": str(WORK / "lake"),
            "GRIDLAKE_LANDING": str(WORK / "landing"),
            "GRIDLAKE_BRIDGE_SPOOL": str(WORK / "spool"),
            "GRIDLAKE_BRIDGE_CLIENT_ID": "bench-bridge",
            "GRIDLAKE_BRIDGE_POSTED_LOG": str(posted),
            "GRIDLAKE_BRIDGE_TRACE_LOG": str(WORK / "trace.jsonl"),
            "GRIDLAKE_MQTT_PREFIX": PREFIX,
            "GRIDLAKE_BRIDGE_FLUSH_S": "10",
            "GRIDLAKE_BRIDGE_MQTT_PROCESS": a.mqtt_process,
        }
        prof = ["-m", "cProfile", "-o", str(WORK / "bridge.prof")] if a.profile else []
        bridge = subprocess.Popen(
            [
                sys.executable,
                *prof,
                "-m",
                "streaming_bridge.cli",
                "run",
                "--http-port",
                str(hport),
                "--outbox",
                str(WORK / "outbox.sqlite"),
                "--alertmanager-url",
                am.url,
            ],
            cwd=REPO,
            env=benv,
            stdout=open(WORK / "bridge.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=a.bridge_session == "own",
        )
        procs.append(bridge)
        health = f"http://127.0.0.1:{hport}/healthz"
        wait_until(lambda: _ok(health), 60, 0.2, "the bridge's health endpoint")
        log("bridge up; publishing")

        ctx = mp.get_context("spawn")
        go, progress = ctx.Event(), ctx.Value("l", 0)
        out = WORK / "publisher.json"
        pub = ctx.Process(
            target=publisher, args=(mq.port, a.seconds, a.rate, str(out), progress, go, a.publisher_nice), daemon=True
        )
        pstop, pready = ctx.Event(), ctx.Event()
        probe = ctx.Process(
            target=probe_subscriber, args=(mq.port, pstop, pready, str(WORK / "probe.json")), daemon=True
        )
        probe.start()
        pready.wait(30)
        pub.start()
        time.sleep(1.0)
        h0 = http_json(health)
        c0, t0 = tree_cpu_seconds(bridge.pid), time.monotonic()
        host0, tree0 = host_cpu_by_process(), tree_cpu_by_pid(bridge.pid)
        go.set()
        lag = []
        while pub.is_alive():
            time.sleep(1.0)
            h = http_json(health)
            lag.append(
                (
                    round(time.monotonic() - t0, 1),
                    progress.value - (h["records"] - h0["records"]),
                    h["backlog"],
                    h["outbox_depth"],
                )
            )
        pub.join()
        t_pub_end = time.monotonic()
        host1, tree1 = host_cpu_by_process(), tree_cpu_by_pid(bridge.pid)
        # the bridge's processes: the parent, then its children by pid (start order: the landing child, the MQTT
        # child), % of one core while the publisher ran
        tree_cpu = {
            ("bridge" if p == bridge.pid else f"child{i}_pid{p}"): round(
                100 * (v - tree0.get(p, 0.0)) / (t_pub_end - t0), 1
            )
            for i, (p, v) in enumerate(sorted(tree1.items()))
        }
        host_cpu = {
            k: round(100 * (v - host0.get(k, 0.0)) / (t_pub_end - t0), 1)
            for k, v in sorted(host1.items(), key=lambda kv: -(kv[1] - host0.get(kv[0], 0.0)))
            if v - host0.get(k, 0.0) > 0.2
        }
        res = json.loads(out.read_text())
        log(
            f"published {res['published']} records ({res['readings']} readings) in {res['elapsed_s']:.1f} s; lag samples (t, lag, backlog, outbox): {lag[-3:]}"
        )
        wait_until(
            lambda: http_json(health)["records"] - h0["records"] >= res["published"],
            120,
            0.2,
            "the bridge to process every record",
        )
        t_done = time.monotonic()
        cpu = tree_cpu_seconds(bridge.pid) - c0
        pstop.set()
        probe.join(20)
        probe_ms = json.loads((WORK / "probe.json").read_text()) if (WORK / "probe.json").exists() else []
        h1 = http_json(health)

        # ---- delivery: every injected condition
        conds = {(n, a_, o): s for n, a_, o, s in res["conditions"]}
        with psycopg2.connect(**pg_params()) as conn:

            def fetch():
                with conn.cursor() as cur:
                    cur.execute(
                        f"SELECT d.receiver, a.alertname, a.asset_id, a.annotations::json->>'observed_at', d.first_received_at, d.attempts, a.starts_at, a.status "
                        f'FROM "{schema}".alert_deliveries d JOIN "{schema}".alerts a USING (fingerprint, starts_at, status)'
                    )
                    return cur.fetchall()

            routed_to = {"critical": ("bridge", "pager", "chat"), "warning": ("bridge", "chat")}

            def delivered():
                # every condition at every receiver its severity routes to (chat groups new alerts of an
                # existing group for group_interval, 30 s: exactly-once is only judged once they are in)
                got = {(r[0], r[1], r[2], r[3]) for r in fetch()}
                return all((recv, *k) in got for k, sev in conds.items() for recv in routed_to[sev])

            # wait while deliveries progress (Alertmanager retries what the receiver could not take): lost means
            # never delivered, not "late"; give up after 60 s without progress or 10 minutes in all
            t_wait, last_n, last_change = time.monotonic(), -1, time.monotonic()
            while not delivered() and time.monotonic() - last_change < 60 and time.monotonic() - t_wait < 600:
                n_now = len(fetch())
                if n_now != last_n:
                    last_n, last_change = n_now, time.monotonic()
                time.sleep(2.0)
            t_delivered = time.monotonic()
            rows = fetch()
        # a condition's notifications: firing and/or resolved under ONE startsAt (its idempotency key). A critical
        # condition that fired and resolved before Alertmanager flushed its group (posted in one batch) is
        # notified once, as resolved: Alertmanager's dedup, counted as delivered.
        keys: dict[tuple, dict[str, set]] = {}
        first_pager: dict[tuple, datetime] = {}
        resolved_only: set = set()
        statuses: dict[tuple, set] = {}
        for recv, name, asset, obs, first, _attempts, starts, status in rows:
            k = (name, asset, obs)
            if k not in conds:
                continue
            keys.setdefault(k, {}).setdefault(recv, set()).add(starts)
            if recv == "bridge":
                statuses.setdefault(k, set()).add(status)
            if recv == "pager" and conds[k] == "critical":
                first_pager[k] = min(first, first_pager.get(k, first))
        resolved_only = {k for k, st in statuses.items() if st == {"resolved"}}
        pager_e2e = [(t - datetime.fromisoformat(k[2])).total_seconds() * 1000 for k, t in first_pager.items()]
        routed = routed_to
        exactly_once = sum(1 for k, s in conds.items() if all(len(keys.get(k, {}).get(r, ())) == 1 for r in routed[s]))
        delivered_n = sum(1 for k in conds if keys.get(k, {}).get("bridge"))
        # the first acceptance of each condition (later lines are the outbox's re-posts)
        first_acc: dict = {}
        for line in posted.read_text().splitlines():
            p = json.loads(line)
            k = (p["labels"].get("alertname"), p["labels"].get("asset_id"), p.get("observed_at"))
            if p["status"] == "firing" and k in conds and k not in first_acc:
                first_acc[k] = (p["accepted_at"] - datetime.fromisoformat(p["observed_at"]).timestamp()) * 1000
        det = list(first_acc.values())
        # what happened to each lost condition on the way (the posts Alertmanager accepted for it)
        posts: dict = {}
        for line in posted.read_text().splitlines():
            p = json.loads(line)
            k = (p["labels"].get("alertname"), p["labels"].get("asset_id"), p.get("observed_at"))
            posts.setdefault(k, []).append((p["status"], round(p["accepted_at"], 3)))
        lost_detail = [
            {"condition": list(k), "severity": s, "accepted_posts": posts.get(k, [])}
            for k, s in conds.items()
            if not keys.get(k, {}).get("bridge")
        ]
        m = _metrics(f"http://127.0.0.1:{hport}/metrics")
        accepted = int(sum(v for k, v in m.items() if k.startswith("gridlake_bridge_accepted_total")))
        dead = int(sum(v for k, v in m.items() if k.startswith("gridlake_bridge_dead_lettered_total")))
        storm = [r for r in fetch_all(schema) if r == "AlertStorm"]
        inside = {
            n: _hist_quantiles(m, n)
            for n in (
                "gridlake_bridge_detection_seconds",
                "gridlake_bridge_batch_seconds",
                "gridlake_bridge_alert_accepted_seconds",
            )
        }
        bridge_wall = t_done - t0
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}",
            "seconds": round(res["elapsed_s"], 1),
            "readings_per_s": round(res["readings"] / res["elapsed_s"], 1),
            "processed_per_s": round((h1["records"] - h0["records"]) / (t_pub_end - t0), 1),
            "drain_after_publish_s": round(t_done - t_pub_end, 2),
            "lag_records_max": max((x[1] for x in lag), default=0),
            "lag_records_last": lag[-1][1] if lag else 0,
            "lag_samples": lag,
            "detection_p50_ms": _r(pct(det, 50)),
            "detection_p99_ms": _r(pct(det, 99)),
            "detection_max_ms": _r(max(det) if det else None),
            "e2e_critical_p50_ms": _r(pct(pager_e2e, 50)),
            "e2e_critical_p99_ms": _r(pct(pager_e2e, 99)),
            "e2e_critical_max_ms": _r(max(pager_e2e) if pager_e2e else None),
            "published": res["published"],
            "accepted": accepted,
            "dead_lettered": dead,
            "published_equals_accepted_plus_dead": res["published"] == accepted + dead,
            "injected_conditions": len(conds),
            "injected_critical": sum(1 for s in conds.values() if s == "critical"),
            "notifications_delivered": delivered_n,
            "exactly_once_per_routed_receiver": exactly_once,
            "lost": len(conds) - delivered_n,
            "delivered_as_resolved_only": len(resolved_only),
            "lost_detail": lost_detail[:20],
            "all_delivered_after_publish_end_s": round(t_delivered - t_pub_end, 1),
            "alert_storm_meta_alerts": len(storm),
            "emails": _Sink.n,
            "bridge_cpu_pct": round(100 * cpu / bridge_wall, 1),
            # CPU of the bridge's process tree per record until it processed them all: what the bridge costs,
            # less dependent on how much of the CPU it got than the percentage (see also make bench-bridge-cpu)
            "bridge_cpu_us_per_reading": round(cpu / max(res["published"], 1) * 1e6, 1),
            # publish -> accepted split into its stages (the bridge's trace + posted log), ms
            "stage_latency_ms": stage_breakdown(WORK / "trace.jsonl", posted, conds),
            # the same first stage seen by a bare subscriber beside the bridge (critical samples): the load
            # generator's and Mosquitto's share of publish -> receipt, without the bridge
            "probe_publish_to_rx_ms": {
                "n": len(probe_ms),
                "p50": _r(pct(probe_ms, 50)),
                "p99": _r(pct(probe_ms, 99)),
                "max": _r(max(probe_ms) if probe_ms else None),
            },
            # every process on the host while the publisher ran, % of one core (other helpers' jobs included)
            "host_cpu_pct_by_process": host_cpu,
            "bridge_cpu_pct_by_process": tree_cpu,
            # the bridge's own histograms (bucket upper bounds, ms): receipt -> outbox, one batch, outbox -> accepted
            "bridge_internal_p50_p99_ms": inside,
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
            "setup": {
                "publisher_nice": a.publisher_nice,
                "bridge_session": a.bridge_session,
                "bridge_mqtt_process": a.mqtt_process == "1",
            },
            "baseline_bare_subscriber": base,
            "bridge_cpu_vs_bare_subscriber": round((100 * cpu / bridge_wall) / base["cpu_pct"], 2)
            if base["cpu_pct"]
            else None,
            "bridge_health_end": {k: h1[k] for k in ("backlog", "outbox_depth", "spooled_rows", "active_alerts")},
            "targets": TARGETS,
        }
        result["met"] = {
            "readings_per_s": result["readings_per_s"] >= 0.98 * TARGETS["readings_per_s"]
            and result["drain_after_publish_s"] < 5,
            "detection_p99_ms": (result["detection_p99_ms"] or 1e9) < TARGETS["detection_p99_ms"],
            "e2e_critical_p99_ms": (result["e2e_critical_p99_ms"] or 1e9) < TARGETS["e2e_critical_p99_ms"],
            "lost": result["lost"] == 0 and result["published_equals_accepted_plus_dead"],
        }
        # graceful stop: SIGTERM flushes the spool and the outbox
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(60)
        result["bridge_exit_code"] = bridge.returncode
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if am is not None:
            am.close()
        if smtp is not None:
            smtp.stop()
        mq.stop()
        try:
            with psycopg2.connect(**pg_params()) as c, c.cursor() as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except Exception as e:  # noqa: BLE001
            log(f"could not drop schema {schema}: {e}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1, default=str) + "\n")
    show = {k: v for k, v in result.items() if k not in ("lag_samples",)}
    print(json.dumps(show, indent=1, default=str))
    log(f"wrote {RESULTS}")
    return 0


def _r(x):
    return None if x is None else round(x, 1)


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310
            return r.status == 200
    except OSError:
        return False


def _metrics(url: str) -> dict[str, float]:
    out = {}
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
    return out


def _hist_quantiles(m: dict[str, float], name: str) -> dict[str, float | None]:
    """p50/p99 (as the upper bound of the bucket holding them, ms) of a Prometheus histogram."""
    b = sorted((float(k.split('le="')[1].split('"')[0]), v) for k, v in m.items() if k.startswith(name + "_bucket"))
    total = b[-1][1] if b else 0
    out = {}
    for q in (0.5, 0.99):
        hit = next((le for le, c in b if total and c >= q * total), None)
        out[f"p{int(q * 100)}"] = None if hit is None or hit == float("inf") else hit * 1000
    return out


#: the stages of a detection, in order: (name, from, to) over the per-alert timestamps (epoch s)
STAGES = (
    ("publish_to_paho_rx", "published", "rx"),  # publisher's JSON + Mosquitto + the MQTT child's paho parsing
    ("paho_rx_to_handover", "rx", "handed"),  # the child's forward thread, pickling, the pipe, the parent's reader
    ("handover_to_batch_start", "handed", "start"),  # waiting for the processing thread (linger, earlier batches)
    ("validate", "start", "validated"),
    ("rules_fired", "validated", "fired"),
    ("outbox_commit", "fired", "submitted"),
    ("outbox_to_post_start", "submitted", "post_started"),  # the drainer's pick-up (incl. a POST in flight)
    ("post_to_accepted", "post_started", "accepted"),  # Alertmanager's HTTP answer
    ("detection_total", "published", "accepted"),
)


def stage_breakdown(trace: Path, posted: Path, conds: dict) -> dict:
    """Per-stage latency (ms, p50/p99/max) of the injected conditions' first firing alert: the bridge's trace
    (one line per fired rule alert: receipt, hand-over, batch start, validated, fired, outbox commit) joined
    with its posted log (POST start, accepted) on (alertname, asset_id, observed_at)."""
    at: dict[tuple, dict] = {}
    if trace.exists():
        for line in trace.read_text().splitlines():
            d = json.loads(line)
            if "alert" in d:
                k = tuple(d["alert"])
                if k in conds and k not in at:
                    at[k] = {s: d[s] for s in ("rx", "handed", "start", "validated", "fired", "submitted")}
    for line in posted.read_text().splitlines():
        p = json.loads(line)
        k = (p["labels"].get("alertname"), p["labels"].get("asset_id"), p.get("observed_at"))
        if p["status"] == "firing" and k in at and "accepted" not in at[k]:
            at[k].update(post_started=p.get("post_started_at"), accepted=p["accepted_at"])
            at[k]["published"] = datetime.fromisoformat(k[2]).timestamp()
    full = [v for v in at.values() if v.get("accepted") and v.get("post_started")]
    out = _stages(full)
    out["critical"] = _stages(
        [v for k, v in at.items() if conds[k] == "critical" and v.get("accepted") and v.get("post_started")]
    )
    return out


def _stages(full: list[dict]) -> dict:
    out: dict = {"alerts": len(full)}
    for name, a, b in STAGES:
        xs = [(v[b] - v[a]) * 1000 for v in full]
        out[name] = {"p50": _r(pct(xs, 50)), "p99": _r(pct(xs, 99)), "max": _r(max(xs) if xs else None)}
    # which stage made the slowest 1 %: the mean share of each stage in those alerts' total
    slow = sorted(full, key=lambda v: v["accepted"] - v["published"])[-max(1, len(full) // 100) :] if full else []
    out["slowest_1pct_mean_ms"] = {
        name: _r(sum((v[b] - v[a]) * 1000 for v in slow) / len(slow)) for name, a, b in STAGES if slow
    }
    return out


def host_cpu_by_process() -> dict[str, float]:
    """CPU seconds so far of every process on the host, by command (python -m module / executable name)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        exe = os.path.basename(cmd[0].decode(errors="replace")) if cmd and cmd[0] else "?"
        args = [c.decode(errors="replace") for c in cmd[1:4]]
        if "-m" in args:
            name = args[args.index("-m") + 1] if args.index("-m") + 1 < len(args) else exe
        elif any("multiprocessing" in a or "spawn_main" in a for a in args):
            name = exe + " (spawned child)"
        else:
            name = exe
        out[name] = out.get(name, 0.0) + (int(st[11]) + int(st[12])) / tick
    return out


def fetch_all(schema: str) -> list[str]:
    import psycopg2

    from streaming_bridge.receiver import pg_params

    with psycopg2.connect(**pg_params()) as c, c.cursor() as cur:
        cur.execute(f'SELECT alertname FROM "{schema}".alerts WHERE status = %s', ("firing",))
        return [r[0] for r in cur.fetchall()]


if __name__ == "__main__":
    sys.exit(main())
