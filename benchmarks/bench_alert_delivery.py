"""`make bench-alert-delivery`: the delivery half of the bridge on a private Alertmanager 0.25 (repo config).

    .venv/bin/python -m benchmarks.bench_alert_delivery [--quick]

1. group_wait vs inhibition (the trade-off FIELD_NOTES mention): 20 meter alerts beneath one transformer are
   posted, then the TransformerOutage alert after a delay; how many meter alerts leak to the webhook
   before the outage inhibits them, for the meter (warning) route's group_wait 0 s / 1 s / 5 s. Baseline: 0 s.
2. Delivery latency of critical alerts: ``Outbox.submit`` -> Alertmanager accepted (the outbox's POST
   returned) and -> webhook receipt (the pager route, group_wait 0 s), p50/p99 over N alerts sent one
   at a time at 20/s. Also the burst throughput: alerts/s the outbox drains in batches into Alertmanager.

Writes benchmarks/results/alert_delivery.json. The webhook endpoint is a minimal in-process HTTP sink
recording receipt times (no PostgreSQL/MQTT: those are the receiver's cost, measured by bench-bridge).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from streaming_bridge.alerts import Alert
from streaming_bridge.am_client import AlertmanagerClient
from streaming_bridge.amproc import AlertmanagerProcess, render_config, write_config
from streaming_bridge.outbox import Outbox

RESULTS = Path(__file__).resolve().parent / "results" / "alert_delivery.json"


class Sink:
    """Records (receiver, asset_id, receipt time) of every alert in every webhook notification."""

    def __init__(self):
        self.got: list[tuple[str, str, str, float]] = []
        sink = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # Alertmanager closing keep-alive connections
                pass

            def do_POST(self):
                t = time.time()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                for a in body["alerts"]:
                    sink.got.append((self.path.rsplit("/", 1)[1], a["labels"]["asset_id"], a["status"], t))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = Server(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _now() -> datetime:
    return datetime.now(UTC)


def _am(tmp: Path, sink: Sink, meter_group_wait: str | None = None) -> AlertmanagerProcess:
    cfg = render_config(webhook_base=sink.url, smarthost="127.0.0.1:9", cap={"group_interval": "1s"})
    if meter_group_wait is not None:
        for r in cfg["route"]["routes"]:
            if r["receiver"] in ("bridge", "chat"):
                r["group_wait"] = meter_group_wait  # the warning level (critical children keep 0s)
    am = AlertmanagerProcess(write_config(cfg, tmp / "am.yml"), storage_dir=tmp / "data")
    return am.start()


def inhibition(tmp: Path, group_waits: list[str], delays_ms: list[int], n_meters: int = 20) -> list[dict]:
    out = []
    for gw in group_waits:
        for d in delays_ms:
            sink = Sink()
            run = tmp / f"inh-{gw}-{d}"
            run.mkdir()
            am = _am(run, sink, gw)
            try:
                c = AlertmanagerClient(am.url)
                meters = [
                    Alert(
                        {
                            "alertname": "VoltageLow",
                            "severity": "warning",
                            "asset_type": "meter",
                            "asset_id": f"M-{k}",
                            "transformer": "TX-1",
                        },
                        starts_at=_now(),
                    )
                    for k in range(n_meters)
                ]
                outage = Alert(
                    {
                        "alertname": "TransformerOutage",
                        "severity": "critical",
                        "asset_type": "transformer",
                        "asset_id": "TX-1",
                        "transformer": "TX-1",
                    },
                    starts_at=_now(),
                )
                c.post_alerts(meters)
                time.sleep(d / 1000)
                c.post_alerts([outage])
                time.sleep(max(6.0, float(gw[:-1]) + 2.0))
                leaked = {aid for r, aid, _, _ in sink.got if r == "bridge" and aid.startswith("M-")}
                out.append(
                    {
                        "meter_group_wait": gw,
                        "outage_after_ms": d,
                        "meters": n_meters,
                        "meter_alerts_leaked": len(leaked),
                        "outage_delivered": any(aid == "TX-1" for _, aid, _, _ in sink.got),
                    }
                )
                print(
                    f"  group_wait {gw:>3}, outage +{d:>5} ms: {len(leaked):2d}/{n_meters} meter alerts leaked to the bridge receiver",
                    flush=True,
                )
            finally:
                am.close()
                sink.close()
    return out


def latency(tmp: Path, n: int, burst: int, fsync: bool) -> dict:
    sink = Sink()
    run = tmp / f"lat-{fsync}"
    run.mkdir()
    am = _am(run, sink)
    accepted: dict[str, float] = {}

    def on_posted(items):
        t = time.time()
        for payload, _ in items:
            accepted.setdefault(payload["labels"]["asset_id"], t)

    ob = Outbox(run / "ob.db", AlertmanagerClient(am.url), on_posted=on_posted, fsync=fsync)
    try:
        submitted: dict[str, float] = {}
        for k in range(n):
            a = Alert(
                {
                    "alertname": "TransformerHotSpot",
                    "severity": "critical",
                    "asset_type": "transformer",
                    "asset_id": f"TX-{k}",
                },
                starts_at=_now(),
            )
            submitted[a.labels["asset_id"]] = time.time()
            ob.submit([a])
            time.sleep(0.05)
        assert ob.flush(30)
        deadline = time.time() + 20
        while time.time() < deadline and len({aid for r, aid, _, _ in sink.got if r == "pager"}) < n:
            time.sleep(0.05)
        paged = {}
        for r, aid, _, t in sink.got:
            if r == "pager":
                paged.setdefault(aid, t)
        det = np.array([(accepted[a] - submitted[a]) * 1000 for a in submitted])
        e2e = np.array([(paged[a] - submitted[a]) * 1000 for a in submitted if a in paged])
        # burst: many alerts submitted at once, drained in batches
        t0 = time.time()
        ob.submit(
            [
                Alert(
                    {"alertname": "Burst", "severity": "info", "asset_type": "meter", "asset_id": f"B-{k}"},
                    starts_at=_now(),
                )
                for k in range(burst)
            ]
        )
        assert ob.flush(60)
        burst_s = time.time() - t0
    finally:
        ob.close(0)
        am.close()
        sink.close()
    res = {
        "fsync": fsync,
        "critical_alerts": n,
        "paged": int(e2e.size),
        "lost": n - int(e2e.size),
        "accepted_p50_ms": round(float(np.percentile(det, 50)), 2),
        "accepted_p99_ms": round(float(np.percentile(det, 99)), 2),
        "accepted_max_ms": round(float(det.max()), 2),
        "paged_p50_ms": round(float(np.percentile(e2e, 50)), 2),
        "paged_p99_ms": round(float(np.percentile(e2e, 99)), 2),
        "paged_max_ms": round(float(e2e.max()), 2),
        "burst_alerts": burst,
        "burst_drain_alerts_per_s": round(burst / burst_s, 1),
    }
    print(f"  SQLite synchronous={'FULL' if fsync else 'NORMAL'}")
    print(
        f"  outbox.submit -> Alertmanager accepted: p50 {res['accepted_p50_ms']} ms, p99 {res['accepted_p99_ms']} ms, max {res['accepted_max_ms']} ms"
    )
    print(
        f"  outbox.submit -> pager webhook:        p50 {res['paged_p50_ms']} ms, p99 {res['paged_p99_ms']} ms, max {res['paged_max_ms']} ms ({res['lost']} lost)"
    )
    print(f"  burst of {burst}: drained at {res['burst_drain_alerts_per_s']} alerts/s")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_alert_delivery")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-alert-delivery-") as d:
        tmp = Path(d)
        print("group_wait vs inhibition (baseline: group_wait 0s)")
        inh = inhibition(tmp, ["0s", "1s", "5s"], [0, 500, 3000] if a.quick else [0, 100, 500, 3000])
        print("critical delivery latency (baseline: fsync per commit)")
        n, burst = (100, 2000) if a.quick else (400, 10000)
        full = latency(tmp, n, burst, fsync=True)
        normal = latency(tmp, n, burst, fsync=False)
        for k in ("accepted_p99_ms", "paged_p99_ms"):
            print(f"  {k}: {normal[k]} ms without fsync = {normal[k] / full[k]:.3f}x the fsync path")
        print(
            f"  burst drain: {normal['burst_drain_alerts_per_s'] / full['burst_drain_alerts_per_s']:.2f}x the fsync path"
        )
    results = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "alertmanager": "0.25.0 (Debian)",
        },
        "inhibition": inh,
        "latency_fsync": full,
        "latency": normal,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
