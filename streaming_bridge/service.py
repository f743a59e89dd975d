"""The bridge service: MQTT in -> validate -> rules, grid events, champion model -> alerts to the sink
(the durable outbox in front of Alertmanager); accepted readings -> landing files; rejects -> dead letters.

One processing thread takes whatever paho's client (in a child process, or a thread of this one) has
queued as a batch and, in order:
validates it (polars), evaluates rules/events/model, submits alerts (durable), spools readings and
dead letters (fsynced), publishes the dead letters on their topic, then PUBACKs the batch. Once a
second it also checks missed heartbeats and the alert-storm window (the outbox re-posts the firing
alerts every minute: Alertmanager expires what it stops hearing about); a durability thread closes a
spool segment every ``flush_seconds`` and lands it (or hands it to the landing child process). SIGTERM stops intake, processes what has arrived, lands the spool,
flushes the outbox and exits.

Metrics (Prometheus text format) on ``/metrics`` and a health document on ``/healthz`` (503 while
the MQTT connection is down, its subscriptions are not yet acknowledged, or the processing loop is stuck).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from contracts import load_profile
from lake.delta import Lake
from lake.landing import LandingZone, open_landing
from streaming_bridge.alerts import Alert, AlertSink
from streaming_bridge.events import EventConfig, GridEvents
from streaming_bridge.ingress import (
    BatchResult,
    IngressConfig,
    Message,
    Validator,
    dead_letter_message,
)
from streaming_bridge.landing import LandingProcess, LandingWriter
from streaming_bridge.mqtt import MqttIngress, MqttIngressProcess
from streaming_bridge.rules import DEFAULT_RULES_FILE, Engine, Transition, load_rules
from streaming_bridge.topics import Topics
from streaming_bridge.topology import OnsetStore, Topology

log = logging.getLogger("gridlake.bridge")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class BridgeConfig:
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    client_id: str = "gridlake-bridge"
    topic_prefix: str = "gridlake/v1"
    lake_root: str = ".demo/lake"
    landing: str = ".demo/landing"
    spool_dir: str = ".demo/bridge/spool"
    #: the utility's zone: the profile's by construction (load_profile() honours $GRIDLAKE_PROFILE /
    #: $GRIDLAKE_TIMEZONE; the demo YAML's DEFAULT_TIMEZONE does not), so a default restates nothing
    tz: str = field(default_factory=lambda: load_profile().timezone)
    rules_file: str = str(DEFAULT_RULES_FILE)
    flush_seconds: float = 60.0
    flush_rows: int = 200_000
    max_batch: int = 5000
    #: a batch closes max_batch messages or batch_linger_s after its first message arrived, whichever comes first
    batch_linger_s: float = 0.004
    http_host: str = "127.0.0.1"
    http_port: int = 9108  # metrics + health; 0 = a free port, -1 = none
    model_name: str = ""  # MLflow registered anomaly model to score with (its champion alias); "" = none
    model_check_s: float = 30.0
    posted_log: str = ""  # append one JSON line per alert Alertmanager accepted (audit; latency benchmark)
    #: append one JSON line per processing batch: stage times (wall) and the thread's CPU (latency diagnosis)
    trace_log: str = ""
    #: the webhook receiver's MQTT topics (``<prefix>/<severity>``, one message per alert state it stored): the
    #: bridge subscribes and tells the outbox, which releases a held resolve only once its firing notification
    #: was confirmed (or ``confirm_timeout_s`` after Alertmanager accepted the firing). "" = no confirmations
    confirm_prefix: str = "gridlake/alerts"
    confirm_timeout_s: float = 120.0
    #: paho's client in a child process (its packet parsing and PUBACKs off the processing thread's GIL)
    mqtt_process: bool = True
    #: gc.freeze() once the bridge is built (its long-lived objects out of the full collections' walk)
    gc_freeze: bool = False
    #: land closed spool segments in a child process (only when the bridge opens the lake and landing zone
    #: itself from lake_root / landing, as the service does)
    land_process: bool = False
    #: split a batch into the critical lane (SCADA) and the bulk only when the bulk's payloads exceed this many bytes
    #: (a backlog, not one publisher burst: a split costs a second pass of the per-batch fixed costs); 0 = always
    critical_lane_min_bulk_bytes: int = 64 * 1024
    #: the GIL switch interval of the service process (s): a thread woken to post (the outbox drainer) waits at
    #: most this long for the processing thread to hand over the GIL (Python's default 5 ms); 0 = leave it
    switch_interval_s: float = 0.0
    events: EventConfig = field(default_factory=EventConfig)
    ingress: IngressConfig = field(default_factory=IngressConfig)

    @classmethod
    def from_env(cls, **overrides) -> BridgeConfig:
        e = os.environ.get
        cfg = cls(
            mqtt_host=e("GRIDLAKE_MQTT_HOST", "127.0.0.1"),
            mqtt_port=int(e("GRIDLAKE_MQTT_PORT", "1883")),
            client_id=e("GRIDLAKE_BRIDGE_CLIENT_ID", "gridlake-bridge"),
            topic_prefix=e("GRIDLAKE_MQTT_PREFIX", "gridlake/v1"),
            lake_root=e("GRIDLAKE_LAKE_ROOT", ".demo/lake"),
            landing=e("GRIDLAKE_LANDING", ".demo/landing"),
            spool_dir=e("GRIDLAKE_BRIDGE_SPOOL", ".demo/bridge/spool"),
            tz=load_profile().timezone,  # GRIDLAKE_PROFILE / GRIDLAKE_TIMEZONE
            rules_file=e("GRIDLAKE_BRIDGE_RULES", str(DEFAULT_RULES_FILE)),
            flush_seconds=float(e("GRIDLAKE_BRIDGE_FLUSH_S", "60")),
            http_port=int(e("GRIDLAKE_BRIDGE_HTTP_PORT", "9108")),
            model_name=e("GRIDLAKE_BRIDGE_MODEL", ""),
            posted_log=e("GRIDLAKE_BRIDGE_POSTED_LOG", ""),
            trace_log=e("GRIDLAKE_BRIDGE_TRACE_LOG", ""),
            batch_linger_s=float(e("GRIDLAKE_BRIDGE_LINGER_MS", "4")) / 1000,
            confirm_prefix=e("GRIDLAKE_ALERT_TOPIC_PREFIX", "gridlake/alerts"),
            confirm_timeout_s=float(e("GRIDLAKE_BRIDGE_CONFIRM_TIMEOUT_S", "120")),
            mqtt_process=e("GRIDLAKE_BRIDGE_MQTT_PROCESS", "1") not in ("0", "false", "no"),
            gc_freeze=e("GRIDLAKE_BRIDGE_GC_FREEZE", "1") not in ("0", "false", "no"),
            land_process=e("GRIDLAKE_BRIDGE_LAND_PROCESS", "1") not in ("0", "false", "no"),
            switch_interval_s=float(e("GRIDLAKE_BRIDGE_SWITCH_INTERVAL_MS", "1")) / 1000,
            critical_lane_min_bulk_bytes=int(e("GRIDLAKE_BRIDGE_LANE_MIN_BULK_BYTES", str(64 * 1024))),
        )
        for k, v in overrides.items():
            setattr(cfg, k, v)
        cfg.ingress.topics = Topics(cfg.topic_prefix)
        cfg.ingress.tz = cfg.tz
        return cfg


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.messages = Counter("gridlake_bridge_messages", "MQTT messages received", registry=r)
        self.records = Counter(
            "gridlake_bridge_records", "records received (a head-end batch counts its readings)", registry=r
        )
        self.accepted = Counter("gridlake_bridge_accepted", "readings accepted", ["source"], registry=r)
        self.dead = Counter("gridlake_bridge_dead_lettered", "records dead-lettered", ["reason"], registry=r)
        self.alerts = Counter(
            "gridlake_bridge_alerts_posted", "alerts handed to the outbox", ["severity", "status"], registry=r
        )
        self.landed = Counter("gridlake_bridge_landed_rows", "readings written to landing files", registry=r)
        self.outbox = Gauge("gridlake_bridge_outbox_depth", "alerts waiting in the outbox", registry=r)
        self.backlog = Gauge("gridlake_bridge_backlog", "messages received and not yet processed", registry=r)
        self.spooled = Gauge("gridlake_bridge_spooled_rows", "readings spooled and not yet landed", registry=r)
        self.model_version = Gauge(
            "gridlake_bridge_model_version", "champion model version in use (0 = none)", registry=r
        )
        self.batch_seconds = Histogram(
            "gridlake_bridge_batch_seconds", "processing time of one batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.detection = Histogram(
            "gridlake_bridge_detection_seconds",
            "message receipt -> alert handed to the outbox",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.accepted_latency = Histogram(
            "gridlake_bridge_alert_accepted_seconds",
            "alert handed to the outbox -> accepted by Alertmanager",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ack_latency = Histogram(
            "gridlake_bridge_ack_seconds", "message receipt -> PUBACK (durable)", buckets=LATENCY_BUCKETS, registry=r
        )


class Bridge:
    def __init__(
        self,
        config: BridgeConfig,
        sink: AlertSink,
        *,
        lake: Lake | None = None,
        zone: LandingZone | None = None,
        topology: Topology | None = None,
        scorer=None,
    ):
        self.cfg = config
        self.sink = sink
        self._own_storage = lake is None and zone is None  # opened here from the config (a child can open them too)
        self.lake = lake or Lake(config.lake_root)
        self.zone = zone or open_landing(config.landing)
        self.topo = topology or Topology.from_lake(self.lake)
        self.topo.clock = lambda: dt.datetime.now(dt.UTC)  # live: startsAt = detection time
        Path(config.spool_dir).mkdir(parents=True, exist_ok=True)
        self.topo.onsets = OnsetStore(Path(config.spool_dir) / "onsets.sqlite")
        self.cfg.ingress.topics = Topics(config.topic_prefix)
        self.topics = self.cfg.ingress.topics
        self._critical_prefix = self.topics.scada("")[: -len("/telemetry")]  # <prefix>/scada/
        self.validator = Validator(self.topo.known_ids(), self.cfg.ingress)
        self.engine = Engine(load_rules(config.rules_file), rating_kva=self.topo.rating_kva)
        self.events = GridEvents(self.topo, config.events)
        self.scorer = scorer
        self.landing = LandingWriter(
            self.zone,
            self.lake,
            config.spool_dir,
            bridge_id=config.client_id,
            tz=config.tz,
            flush_seconds=config.flush_seconds,
            flush_rows=config.flush_rows,
        )
        self.metrics = Metrics()
        if getattr(sink, "on_posted", False) is None:  # the outbox reports what Alertmanager accepted
            sink.on_posted = self._on_posted
        self._posted_log = open(config.posted_log, "a", buffering=1) if config.posted_log else None
        self._trace_log = open(config.trace_log, "a", buffering=1) if config.trace_log else None
        if self._trace_log is not None:
            gc.callbacks.append(self._trace_gc)
        self._durable: queue.Queue | None = None  # set by start(): batches waiting to be spooled and acked
        self._durable_thread: threading.Thread | None = None
        self.active: dict[tuple[str, str], Alert] = {}  # rule/model alerts firing, by (alertname, asset)
        side = {}
        if config.confirm_prefix and callable(getattr(sink, "confirm_message", None)):
            Topics(config.confirm_prefix)  # checks the prefix
            sink.confirm_timeout_s = config.confirm_timeout_s
            side[f"{config.confirm_prefix}/+"] = self._on_confirmation
        self.mqtt = (MqttIngressProcess if config.mqtt_process else MqttIngress)(
            config.mqtt_host,
            config.mqtt_port,
            client_id=config.client_id,
            subscriptions=self.topics.subscriptions(),
            side_topics=side,
        )
        self._stop = threading.Event()
        self._last_loop = time.monotonic()
        self._last_tick = 0.0
        self._http: ThreadingHTTPServer | None = None
        self.http_port: int | None = None
        self.counts = {"messages": 0, "records": 0, "accepted": 0, "dead_lettered": 0, "status": 0, "alerts": 0}

    # ------------------------------------------------------------------ alerts
    def _rule_alert(self, t: Transition) -> Alert | None:
        return rule_alert(self.topo, self.active, t)

    def _submit(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        self.sink.submit(alerts)
        for a in alerts:
            self.metrics.alerts.labels(a.severity, "resolved" if a.resolved else "firing").inc()
        self.counts["alerts"] += len(alerts)

    def _onsets(self):
        """One onset-store transaction for what the block does (nothing to group without a store)."""
        return self.topo.onsets.transaction() if self.topo.onsets is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------ one batch
    def lanes(
        self, batch: Sequence[tuple[Message, int]]
    ) -> tuple[list[tuple[Message, int]], list[tuple[Message, int]]]:
        """Split a batch into the critical lane (SCADA telemetry: every critical rule of rules.yaml watches it) and
        the bulk (meter readings, head-end batches, status), each in arrival order. Rule state is per source and
        asset and grid events read meter readings and meter status only, so processing the lane first changes no
        outcome; it only keeps a hot transformer's sample from waiting for a head-end burst's validation."""
        prefix = self._critical_prefix
        fast = [x for x in batch if x[0].topic.startswith(prefix)]
        if not fast or len(fast) == len(batch):
            return (list(batch), []) if fast else ([], list(batch))
        return fast, [x for x in batch if not x[0].topic.startswith(prefix)]

    def _split(self, batch: Sequence[tuple[Message, int]]) -> bool:
        """Whether the bulk of this batch is big enough for the critical lane to pay (see BridgeConfig)."""
        limit = self.cfg.critical_lane_min_bulk_bytes
        if limit <= 0:
            return True
        prefix, size = self._critical_prefix, 0
        for m, _ in batch:
            if not m.topic.startswith(prefix):
                size += len(m.payload)
                if size > limit:
                    return True
        return False

    def process_lanes(self, batch: Sequence[tuple[Message, int]], now: float | None = None) -> list[Alert]:
        """Process the critical lane, then the bulk (:meth:`lanes`), when the bulk is a backlog's worth
        (``critical_lane_min_bulk_bytes``; one publisher burst is processed in one pass). The PUBACKs of the whole batch go after the bulk
        is spooled, in arrival order (MQTT wants QoS 1 acknowledgements in the order the messages came)."""
        fast, bulk = self.lanes(batch) if self._split(batch) else ((), ())
        if not fast or not bulk:
            return self.process(batch, now=now)
        return self.process(fast, now=now, ack=()) + self.process(bulk, now=now, ack=batch)

    def process(
        self,
        batch: Sequence[tuple[Message, int]],
        now: float | None = None,
        ack: Sequence[tuple[Message, int]] | None = None,
    ) -> list[Alert]:
        """Validate, score and submit one batch; spool it and PUBACK ``ack`` (default: the batch) once durable."""
        t0 = time.perf_counter()
        w0, c0 = time.time(), time.thread_time()
        msgs = [m for m, _ in batch]
        r = self.validator.process(msgs, now=now)
        w1 = time.time()
        transitions = self.engine.evaluate(r.accepted)
        with self._onsets():  # the batch's onsets in one transaction, committed before the outbox sees them
            alerts = [a for a in (self._rule_alert(t) for t in transitions) if a is not None]
            self.events.count_fired(alerts, time.time())
            alerts += self.events.observe(r.accepted, r.status)
        w2 = time.time()
        self._submit(alerts)  # rule and event alerts first: the model's scoring does not delay their detection
        # Only after the outbox committed the alerts: what a restart resumes as firing (or no longer firing).
        # Remembered before the submit, a SIGKILL in between made the restarted bridge restore the condition
        # as firing, so the redelivered reading was no transition and the alert never reached the outbox
        # (test_bridge_sigkill's intermittent loss). Now a crash in between only repeats the transition on
        # redelivery (same startsAt from the onset store; the outbox and receivers are idempotent).
        with self._onsets():
            for t in transitions:
                if t.firing and (t.rule.name, t.asset_id) in self.active:
                    self.topo.onsets.remember(
                        t.rule.name, t.asset_id, t.starts_at, self.active[(t.rule.name, t.asset_id)]
                    )
                elif not t.firing:
                    self.topo.onsets.forget(t.rule.name, t.asset_id)
        submitted = time.time()
        if self._trace_log is not None:
            self._trace_log.write(
                json.dumps(
                    {
                        "n": len(msgs),
                        "first_rx": msgs[0].received_at if msgs else None,
                        "last_rx": msgs[-1].received_at if msgs else None,
                        "start": w0,
                        "validated": w1,
                        "scored": w2,
                        "submitted": submitted,
                        "cpu_s": time.thread_time() - c0,
                        "alerts": len(alerts),
                    }
                )
                + "\n"
            )
            self._trace_stages(msgs, transitions, w0, w1, w2, submitted)
        for t in transitions:
            if t.firing and t.received_at:
                self.metrics.detection.observe(max(0.0, submitted - t.received_at))
        if self.scorer is not None:
            scored = self.scorer.score(r.accepted, self)
            self.events.count_fired(scored, time.time())
            self._submit(scored)
            alerts += scored
        if self._durable is not None:  # spool + fsync + PUBACK on the durability thread (overlaps the next batch)
            self._durable.put((r, batch if ack is None else ack))
        else:
            self._make_durable((r, batch if ack is None else ack))
        # counts
        self.metrics.messages.inc(len(msgs))
        self.metrics.records.inc(r.records)
        for s, df in r.accepted.items():
            self.metrics.accepted.labels(s).inc(df.height)
        if r.dead.height:
            for reason, n in r.dead.group_by("reason_code").len().iter_rows():
                self.metrics.dead.labels(reason).inc(n)
        self.counts["messages"] += len(msgs)
        self.counts["records"] += r.records
        self.counts["accepted"] += r.accepted_rows
        self.counts["dead_lettered"] += r.dead.height
        self.counts["status"] += len(r.status)
        self.metrics.batch_seconds.observe(time.perf_counter() - t0)
        return alerts

    def _trace_stages(self, msgs, transitions, start, validated, fired, submitted) -> None:
        """One trace line per firing rule alert: its message's receipt (MQTT child), hand-over to the processing
        side (pipe), the batch's start, validation, rules, outbox commit (epoch s). The bench joins them with the
        posted log (drainer pick-up, POST, accepted) on (alertname, asset, observed_at): the per-stage breakdown."""
        handed = {m.received_at: m.handed_at or m.received_at for m in msgs}
        for t in transitions:
            a = self.active.get((t.rule.name, t.asset_id)) if t.firing else None
            if a is None or not t.received_at:
                continue
            self._trace(
                alert=[a.labels.get("alertname"), a.labels.get("asset_id"), a.annotations.get("observed_at")],
                rx=t.received_at,
                handed=handed.get(t.received_at, t.received_at),
                start=start,
                validated=validated,
                fired=fired,
                submitted=submitted,
            )

    def _trace(self, **doc) -> None:
        if self._trace_log is not None:
            self._trace_log.write(json.dumps(doc) + "\n")

    def _trace_gc(self, phase: str, info: dict) -> None:
        """Garbage-collector pauses (every Python thread waits) in the trace log, when they take more than 2 ms:
        wall and the collecting thread's CPU (the wall of a loaded machine is mostly waiting for a core)."""
        if phase == "start":
            self._gc_started = (time.perf_counter(), time.thread_time())
        elif (started := getattr(self, "_gc_started", None)) is not None:
            ms = (time.perf_counter() - started[0]) * 1000
            if ms > 2:
                cpu = (time.thread_time() - started[1]) * 1000
                self._trace(gc=info.get("generation"), ms=round(ms, 2), cpu_ms=round(cpu, 2), at=time.time())

    def _on_confirmation(self, topic: str, payload: bytes) -> None:
        """The webhook receiver stored (and published) an alert state: a firing one confirms its delivery."""
        self.sink.confirm_message(payload)

    def _on_posted(self, items: list[tuple[dict, float]]) -> None:
        now = time.time()
        for _payload, enqueued_at in items:
            self.metrics.accepted_latency.observe(max(0.0, now - enqueued_at))
        if self._posted_log is not None:
            self._posted_log.write(
                "".join(
                    json.dumps(
                        {
                            "accepted_at": now,
                            "enqueued_at": enq,
                            "post_started_at": getattr(self.sink, "post_started_at", None),
                            "labels": p.get("labels", {}),
                            "observed_at": p.get("annotations", {}).get("observed_at"),
                            "status": "resolved" if p.get("endsAt") else "firing",
                        }
                    )
                    + "\n"
                    for p, enq in items
                )
            )

    def _make_durable(self, *items: tuple[BatchResult, Sequence[tuple[Message, int]]]) -> None:
        """Spool the batches' readings and dead letters (one fsync per file for all of them: group commit),
        publish the dead letters, then PUBACK the batches in order."""
        for r, _ in items:
            self.landing.append(r.accepted, r.dead, sync=False, tables=r.tables)
        self.landing.sync()
        for r, batch in items:
            if r.dead.height:
                for row in r.dead.head(100).iter_rows(named=True):  # the table keeps all; the topic is a live view
                    self.mqtt.publish(self.topics.deadletter(row["source"] or "unknown"), dead_letter_message(row))
            if batch:  # the critical lane's messages are acknowledged with their whole batch, after the bulk
                self.mqtt.ack(batch)
        done = time.time()
        for _, batch in items:
            for m, _ in batch:
                self.metrics.ack_latency.observe(max(0.0, done - m.received_at))

    def _durability_loop(self) -> None:
        """Spooling, acks and landing the spool: off the detection path (the processing thread)."""
        while True:
            try:
                items = [self._durable.get(timeout=0.5)]
            except queue.Empty:
                items = []
            while items and items[-1] is not None and len(items) < 64:  # everything queued meanwhile
                try:
                    items.append(self._durable.get_nowait())
                except queue.Empty:
                    break
            stop = bool(items) and items[-1] is None
            items = [i for i in items if i is not None]
            try:
                if items:
                    self._make_durable(*items)
                if self.landing.due():
                    self.metrics.landed.inc(self._flush_landing())
            except Exception:
                log.exception(
                    "spooling or landing failed; the messages stay unacknowledged / the segment stays spooled"
                )
            if stop:
                return

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self._submit(self.events.tick(now))
        if self.scorer is not None and hasattr(self.scorer, "maybe_reload"):
            self.scorer.maybe_reload()
            self.metrics.model_version.set(float(getattr(self.scorer, "version", 0) or 0))
        if self._durable is None and self.landing.due():
            self.metrics.landed.inc(self._flush_landing())
        self.metrics.spooled.set(self.landing.spooled_rows)
        depth = getattr(self.sink, "depth", None)
        if callable(depth):
            self.metrics.outbox.set(depth())

    def _flush_landing(self) -> int:
        """Close the spool segment and land it: here (returns the rows landed) or in the landing process
        (returns 0: :meth:`_on_landed` counts them when it is done)."""
        before = self.landing.landed_rows
        w0, c0 = time.time(), time.thread_time()
        self.landing.flush()
        if self.landing.lander is not None:
            return 0
        self._trace(
            landing_flush=self.landing.landed_rows - before, start=w0, end=time.time(), cpu_s=time.thread_time() - c0
        )
        return self.landing.landed_rows - before

    def _on_landed(self, seg: str, keys: list[str], rows: int, dead_rows: int, seconds: float) -> None:
        self.metrics.landed.inc(rows)
        self._trace(landing_flush=rows, segment=seg, files=len(keys), dead=dead_rows, process_s=round(seconds, 3))

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        for name, asset, onset, alert in self.topo.onsets.active():  # rule alerts firing when the last run stopped
            if self.engine.restore(name, asset, onset):
                self.active[(name, asset)] = alert
        recovered = self.landing.recover()
        if recovered:
            log.info("landed %d file(s) a previous run left in the spool", len(recovered))
        if self.cfg.land_process and self._own_storage:
            self.landing.lander = LandingProcess(
                self.landing, self.cfg.landing, self.cfg.lake_root, on_landed=self._on_landed
            )
        if self.cfg.http_port >= 0:
            self._start_http()
        if self.cfg.gc_freeze:
            # Everything built so far (modules, topology, rules, polars/paho/requests objects: a few hundred
            # thousand tracked objects) lives as long as the process: out of the collector's sight, so that a
            # full (generation 2) collection, which stops every thread, walks only what the stream creates.
            # Measured in the bench's trace log: gen-2 pauses of 0.5-0.8 s wall on a loaded machine before.
            gc.collect()
            gc.freeze()
        self._durable = queue.Queue(maxsize=64)
        self._durable_thread = threading.Thread(target=self._durability_loop, name="bridge-durable", daemon=True)
        self._durable_thread.start()
        self.mqtt.connect()

    def run(self) -> None:
        """Process until :meth:`stop` (or SIGTERM via :meth:`run_forever`); then drain and flush."""
        try:
            while not self._stop.is_set():
                batch = self.mqtt.take(self.cfg.max_batch, timeout=0.2, linger=self.cfg.batch_linger_s)
                self._last_loop = time.monotonic()
                if batch:
                    self.process_lanes(batch)
                self.metrics.backlog.set(self.mqtt.backlog())
                if time.monotonic() - self._last_tick >= 1.0:
                    self._last_tick = time.monotonic()
                    self.tick()
        finally:
            self._shutdown()

    def stop(self) -> None:
        self._stop.set()

    def _shutdown(self) -> None:
        # finish what has arrived (processed and acknowledged); the session and its subscriptions stay
        # with the broker, which queues what is published meanwhile and redelivers anything unacked
        for _ in range(100):
            batch = self.mqtt.take(self.cfg.max_batch, timeout=0.05)
            if not batch:
                break
            self.process_lanes(batch)
        if self._durable_thread is not None:
            self._durable.put(None)
            self._durable_thread.join()
            self._durable = None
        self.landing.close()  # the last segment; waits for the landing process, if any
        for name in ("close", "flush"):  # the outbox drains for a while, then stops its thread
            f = getattr(self.sink, name, None)
            if callable(f):
                try:
                    f()
                except Exception as e:  # noqa: BLE001 - the outbox is durable: it resumes on restart
                    log.warning("outbox %s on shutdown: %s", name, e)
                break
        self.mqtt.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def run_forever(self) -> None:
        """``gridlake-bridge run``: SIGTERM/SIGINT stop intake, flush buffers and the outbox, then exit."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        if self.cfg.switch_interval_s > 0:
            sys.setswitchinterval(self.cfg.switch_interval_s)
        self.start()
        log.info("bridge running: mqtt %s:%s, metrics on %s", self.cfg.mqtt_host, self.cfg.mqtt_port, self.http_port)
        self.run()

    # ------------------------------------------------------------------ health + metrics
    def health(self) -> tuple[bool, dict]:
        stuck = time.monotonic() - self._last_loop > 10.0
        depth = getattr(self.sink, "depth", None)
        doc = {
            "mqtt_connected": self.mqtt.connected.is_set(),
            "mqtt_subscribed": self.mqtt.subscribed.is_set(),
            "loop_age_s": round(time.monotonic() - self._last_loop, 3),
            "backlog": self.mqtt.backlog(),
            "spooled_rows": self.landing.spooled_rows,
            "outbox_depth": depth() if callable(depth) else None,
            "active_alerts": len(self.active) + len(self.events.active),
            "model_version": getattr(self.scorer, "version", None),
            **self.counts,
        }
        ok = doc["mqtt_connected"] and doc["mqtt_subscribed"] and not stuck
        doc["status"] = "ok" if ok else "unhealthy"
        return ok, doc

    def _start_http(self) -> None:
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/metrics":
                    body, ctype, code = generate_latest(bridge.metrics.registry), CONTENT_TYPE_LATEST, 200
                elif self.path in ("/healthz", "/health"):
                    ok, doc = bridge.health()
                    body, ctype, code = json.dumps(doc).encode(), "application/json", 200 if ok else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet
                pass

        self._http = ThreadingHTTPServer((self.cfg.http_host, max(self.cfg.http_port, 0)), Handler)
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="bridge-http", daemon=True).start()


def rule_alert(topo: Topology, active: dict[tuple[str, str], Alert], t: Transition) -> Alert | None:
    """The alert for a rule transition: a new firing alert (remembered in ``active``) or the resolved
    copy of the one that fired (same labels and startsAt, ``endsAt`` set)."""
    key = (t.rule.name, t.asset_id)
    if not t.firing:
        a = active.pop(key, None)
        return topo.resolve(a, t.at) if a else None
    fld = t.rule.conditions[0].field
    a = topo.alert(
        t.rule.name,
        t.rule.severity,
        t.rule.asset_type,
        t.asset_id,
        starts_at=t.starts_at,
        summary=t.rule.summary,
        value=f"{fld} = {t.value:.4g}" if t.value is not None else "",
        limit=t.rule.limit_text(),
        runbook=t.rule.runbook,
    )
    active[key] = a
    return a


# ---------------------------------------------------------------------------------------- replay


def replay(
    lake: Lake,
    since: dt.datetime,
    sink: AlertSink,
    *,
    rules_file: str | Path = DEFAULT_RULES_FILE,
    until: dt.datetime | None = None,
    tz: str,
) -> dict:
    """Re-score what the lake's silver tables hold from ``since`` through the rules and grid events, in
    time order, a local day at a time; alerts go to ``sink`` (Alertmanager dedups what it already has)."""
    from contracts import SOURCES

    until = until or dt.datetime.now(dt.UTC)
    topo = Topology.from_lake(lake)
    engine = Engine(load_rules(rules_file), rating_kva=topo.rating_kva)
    active: dict[tuple[str, str], Alert] = {}
    n_rows, n_alerts = 0, 0
    lo = since.astimezone(dt.UTC)
    day0 = pl.select(pl.lit(lo).dt.convert_time_zone(tz).dt.date()).item()
    day1 = pl.select(pl.lit(until).dt.convert_time_zone(tz).dt.date()).item()
    d = day0
    while d <= day1:
        frames = {}
        for name in ("meter_readings", "scada"):
            src = SOURCES[name]
            if not lake.exists(src.silver):
                continue
            df = lake.read_days(src.silver, d, d, columns=src.raw_columns)
            df = df.filter(pl.col(src.time) >= lo, pl.col(src.time) <= until)
            if df.height:
                frames[name] = df
                n_rows += df.height
        out = [a for a in (rule_alert(topo, active, t) for t in engine.evaluate(frames)) if a is not None]
        if out:
            sink.submit(out)
            n_alerts += len(out)
        d += dt.timedelta(days=1)
    return {"rows": n_rows, "alerts": n_alerts, "still_active": len(active)}
