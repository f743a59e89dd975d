"""The bridge's webhook receiver behind Alertmanager: durable ``alerts`` table + MQTT topic per severity.

Alertmanager POSTs its webhook payload (version 4) to ``/hook/<receiver>``. The request thread checks the
body and hands it to one committing thread (``GroupCommit``), which stores every notification queued
meanwhile in one PostgreSQL transaction (``AlertStore.record_many``: a fixed number of statements per batch,
the MQTT messages published together and their PUBACKs awaited together); for each alert:

1. ``alerts``: insert the alert state once per key (fingerprint, startsAt, status) (``ON CONFLICT DO NOTHING``);
2. ``alert_deliveries``: one row per (receiver, key), ``attempts`` counting how often Alertmanager sent it;
3. every alert state of the request not yet on MQTT is published (QoS 1, acknowledged) to
   ``<prefix>/<severity>`` (default prefix ``gridlake/alerts``) and marked ``mqtt_published_at``;

then commit and answer 200 to each request of the batch. Any failure (PostgreSQL or MQTT down) rolls back and answers 503, so
Alertmanager retries: at-least-once from Alertmanager, exactly once in the tables (idempotent on the key),
and on MQTT exactly once unless the process dies between the broker's PUBACK and the commit (then once
more; the MQTT payload carries the key for consumers to dedupe). A malformed payload answers 400 (which
Alertmanager does not retry) with the reason, logged.

Table declarations: ``contracts.ALERTS`` / ``ALERT_DELIVERIES`` (the DDL here is generated from them).
Connection settings from env ``GRIDLAKE_PG_HOST/PORT/USER/PASSWORD/DB``; MQTT from ``GRIDLAKE_MQTT_HOST/PORT``.
Run it: ``python -m streaming_bridge.receiver --listen 127.0.0.1:9095``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import re
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import psycopg2
import psycopg2.extras
from psycopg2 import sql
from psycopg2.pool import ThreadedConnectionPool

from contracts import ALERT_DELIVERIES, ALERTS, Table

from .alerts import SEVERITIES

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9095"
DEFAULT_TOPIC_PREFIX = "gridlake/alerts"
MAX_BODY = 8 * 1024 * 1024
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RECEIVER = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{1,64}$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")
_ZERO_TIME = "0001-01-01T00:00:00Z"
_LABEL_COLUMNS = ("alertname", "severity", "asset_type", "asset_id", "transformer", "feeder", "region")


def pg_params(env: Mapping[str, str] | None = None) -> dict:
    """psycopg2 connection keywords from ``GRIDLAKE_PG_*`` (defaults: local server, user postgres, db test)."""
    env = os.environ if env is None else env
    return {
        "host": env.get("GRIDLAKE_PG_HOST", "127.0.0.1"),
        "port": int(env.get("GRIDLAKE_PG_PORT", "5432")),
        "user": env.get("GRIDLAKE_PG_USER", "postgres"),
        "password": env.get("GRIDLAKE_PG_PASSWORD", ""),
        "dbname": env.get("GRIDLAKE_PG_DB", "test"),
        "connect_timeout": 5,
    }


def check_identifier(name: str, what: str = "identifier") -> str:
    if not _IDENT.match(name):
        raise ValueError(f"{what} {name!r}: want lower-case letters, digits and _ (max 63)")
    return name


def _pg_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "timestamptz"
    types = {
        pl.Utf8: "text",
        pl.Int64: "bigint",
        pl.Float64: "double precision",
        pl.Boolean: "boolean",
        pl.Date: "date",
    }
    for k, v in types.items():
        if dtype == k:
            return v
    raise TypeError(f"no PostgreSQL type for {dtype}")


def create_table_sql(table: Table, schema: str) -> sql.Composed:
    """``CREATE TABLE IF NOT EXISTS`` for a declared table, its key as primary key."""
    cols = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name), sql.SQL(_pg_type(c.dtype)), sql.SQL("" if c.nullable else " NOT NULL")
        )
        for c in table.columns
    ]
    cols.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, table.key))))
    return sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} ({})").format(
        sql.Identifier(schema), sql.Identifier(table.name), sql.SQL(", ").join(cols)
    )


class PayloadError(ValueError):
    """The webhook body is not an Alertmanager notification we can store (answered 400)."""


def parse_notification(body: bytes) -> list[dict]:
    """Alertmanager webhook JSON -> the alerts in it, checked; raises PayloadError naming the field."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PayloadError(f"body is not JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
        raise PayloadError("body is not an Alertmanager notification (no 'alerts' list)")
    out = []
    for i, a in enumerate(doc["alerts"]):
        where = f"alerts[{i}]"
        if not isinstance(a, dict):
            raise PayloadError(f"{where} is not an object")
        if a.get("status") not in ("firing", "resolved"):
            raise PayloadError(f"{where}.status {a.get('status')!r} not firing|resolved")
        if not isinstance(a.get("fingerprint"), str) or not _FINGERPRINT.match(a["fingerprint"]):
            raise PayloadError(f"{where}.fingerprint {a.get('fingerprint')!r} is not a hex fingerprint")
        for k in ("labels", "annotations"):
            v = a.get(k, {})
            if not isinstance(v, dict) or not all(isinstance(x, str) and isinstance(y, str) for x, y in v.items()):
                raise PayloadError(f"{where}.{k} is not an object of strings")
        if not a.get("labels", {}).get("alertname"):
            raise PayloadError(f"{where}.labels lacks alertname")
        for k in ("startsAt", "endsAt"):
            v = a.get(k) or _ZERO_TIME
            try:
                datetime.fromisoformat(_trim_ns(v))
            except (TypeError, ValueError) as e:
                raise PayloadError(f"{where}.{k} {v!r} is not an RFC 3339 time") from e
        out.append(a)
    return out


def _trim_ns(t: str) -> str:
    """RFC 3339 with up to 9 fractional digits -> what datetime.fromisoformat reads (6 digits)."""
    return re.sub(r"(\.\d{6})\d+", r"\1", t.replace("Z", "+00:00"))


def _ts(t: str | None) -> datetime | None:
    if not t or t.startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(_trim_ns(t)).astimezone(UTC)


def alert_key(fingerprint: str, starts_at: datetime, status: str) -> str:
    """The idempotency key as text: ``fingerprint/startsAt unix ms/status`` (also the e-mail header's)."""
    return f"{fingerprint}/{int(starts_at.timestamp() * 1000)}/{status}"


class AlertStore:
    """The durable ``alerts`` and ``alert_deliveries`` tables in PostgreSQL (schema ``schema``)."""

    def __init__(self, params: Mapping | None = None, schema: str = "public", maxconn: int = 8):
        self.schema = check_identifier(schema, "schema")
        self.params = dict(params or pg_params())
        self.pool = ThreadedConnectionPool(1, maxconn, **self.params)
        # Alertmanager posts many groups at once (one per alert on the bridge route): a request waits for a
        # free connection instead of failing with "pool exhausted" (a 503 and a retry storm under load)
        self.pool_slots = threading.BoundedSemaphore(maxconn)
        self._q = {
            k: sql.Identifier(self.schema, t.name) for k, t in (("alerts", ALERTS), ("deliveries", ALERT_DELIVERIES))
        }

    def ensure_tables(self) -> None:
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            for t in (ALERTS, ALERT_DELIVERIES):
                cur.execute(create_table_sql(t, self.schema))
            cur.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (received_at)").format(
                    sql.Identifier(f"{ALERTS.name}_received_at"), self._q["alerts"]
                )
            )

    class _Conn:
        def __init__(self, pool, slots):
            self.pool, self.slots = pool, slots

        def __enter__(self):
            self.slots.acquire()
            try:
                self.conn = self.pool.getconn()
            except BaseException:
                self.slots.release()
                raise
            return self.conn

        def __exit__(self, et, e, tb):
            try:
                if et is None:
                    self.conn.commit()
                else:
                    self.conn.rollback()
            finally:
                try:
                    self.pool.putconn(self.conn, close=self.conn.closed != 0 or et is psycopg2.OperationalError)
                finally:
                    self.slots.release()

    def connection(self):
        """``with store.connection() as conn``: commit on success, roll back on error (waits for a free connection)."""
        return AlertStore._Conn(self.pool, self.pool_slots)

    def record(self, receiver: str, alerts: Sequence[dict], publish: Callable[[str, dict], None] | None = None) -> int:
        """Store one notification's alerts for ``receiver``; publish the not-yet-published ones; all in one
        transaction (an exception from ``publish`` rolls everything back). Returns how many were new in ``alerts``."""
        many = None if publish is None else (lambda msgs: [publish(sev, m) for sev, m in msgs])
        return self.record_many([(receiver, alerts)], many)

    def record_many(
        self,
        notifications: Sequence[tuple[str, Sequence[dict]]],
        publish_many: Callable[[list[tuple[str, dict]]], None] | None = None,
    ) -> int:
        """Store several notifications, each (receiver, alerts), in ONE transaction: a constant number of
        statements however many there are (the receiver's group commit). ``alerts`` gets each key once,
        ``alert_deliveries`` one row per (receiver, key) whose ``attempts`` counts every send; the alert states
        not yet on MQTT go to ``publish_many([(severity, message), ...])``, which returns once all are
        acknowledged (an exception rolls everything back). Returns how many keys were new in ``alerts``."""
        now = datetime.now(UTC)
        rows: dict[tuple, tuple] = {}
        sends: Counter = Counter()
        for receiver, alerts in notifications:
            if not _RECEIVER.match(receiver):
                raise ValueError(f"receiver name {receiver!r}")
            for a in alerts:
                labels = a.get("labels", {})
                start = _ts(a.get("startsAt")) or now
                key = (a["fingerprint"], start, a["status"])
                sends[(receiver, *key)] += 1
                rows.setdefault(
                    key,
                    (
                        *key,
                        _ts(a.get("endsAt")),
                        *(labels.get(k) or ("unknown" if k == "severity" else None) for k in _LABEL_COLUMNS),
                        json.dumps(labels, sort_keys=True),
                        json.dumps(a.get("annotations", {}), sort_keys=True),
                        a.get("generatorURL") or None,
                        now,
                    ),
                )
        if not rows:
            return 0
        keys = sorted(rows)  # one lock order for concurrent receivers
        with self.connection() as conn, conn.cursor() as cur:
            new = psycopg2.extras.execute_values(
                cur,
                sql.SQL(
                    "INSERT INTO {} (fingerprint, starts_at, status, ends_at, alertname, severity, asset_type, asset_id, transformer, "
                    "feeder, region, labels, annotations, generator_url, received_at) VALUES %s ON CONFLICT DO NOTHING RETURNING 1"
                )
                .format(self._q["alerts"])
                .as_string(cur),
                [rows[k] for k in keys],
                fetch=True,
                page_size=1000,
            )
            psycopg2.extras.execute_values(
                cur,
                sql.SQL(
                    "INSERT INTO {} AS d (receiver, fingerprint, starts_at, status, first_received_at, last_received_at, attempts) VALUES %s "
                    "ON CONFLICT (receiver, fingerprint, starts_at, status) DO UPDATE SET attempts = d.attempts + EXCLUDED.attempts, "
                    "last_received_at = EXCLUDED.last_received_at"
                )
                .format(self._q["deliveries"])
                .as_string(cur),
                [
                    (*rk, now, now, n)
                    for rk, n in sorted(sends.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][3], kv[0][0]))
                ],
                page_size=1000,
            )
            if publish_many is not None:
                cur.execute(
                    sql.SQL(
                        "SELECT fingerprint, starts_at, status, ends_at, severity, labels, annotations, generator_url FROM {} "
                        "WHERE (fingerprint, starts_at, status) IN (SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::text[])) "
                        "AND mqtt_published_at IS NULL ORDER BY starts_at, fingerprint, status FOR UPDATE"
                    ).format(self._q["alerts"]),
                    ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
                )
                msgs, done = [], []
                for fp, start, status, end, sev, labels, ann, url in cur.fetchall():
                    msgs.append(
                        (
                            sev,
                            {
                                "key": alert_key(fp, start, status),
                                "fingerprint": fp,
                                "status": status,
                                "startsAt": start.isoformat(),
                                "endsAt": end.isoformat() if end else None,
                                "labels": json.loads(labels),
                                "annotations": json.loads(ann),
                                "generatorURL": url,
                            },
                        )
                    )
                    done.append((fp, start, status))
                if msgs:
                    publish_many(msgs)
                    cur.execute(
                        sql.SQL(
                            "UPDATE {} SET mqtt_published_at = now() WHERE (fingerprint, starts_at, status) IN "
                            "(SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::text[]))"
                        ).format(self._q["alerts"]),
                        ([k[0] for k in done], [k[1] for k in done], [k[2] for k in done]),
                    )
        return len(new)

    def exists(self) -> bool:
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (f'"{self.schema}"."{ALERTS.name}"',))
            return cur.fetchone()[0] is not None

    def snapshot(self, table: Table) -> pl.DataFrame:
        """The whole ``alerts`` or ``alert_deliveries`` table as a frame of its declared schema (DuckDB catalog)."""
        if table not in (ALERTS, ALERT_DELIVERIES):
            raise ValueError(f"not a bridge table: {table.name}")
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, table.column_names)), sql.Identifier(self.schema, table.name)
                )
            )
            rows = cur.fetchall()
        return pl.DataFrame(rows, schema=table.polars_schema(), orient="row")

    def critical_transformer_alerts(
        self, after: datetime, settle_s: float = 5.0
    ) -> list[tuple[str, datetime, datetime]]:
        """Firing critical alerts with a ``transformer`` label received after ``after`` and at least ``settle_s``
        ago (so a transaction still in flight cannot commit behind the cursor): (transformer, starts_at,
        received_at), oldest receipt first. The failure-risk rescoring sensor reads this."""
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT transformer, starts_at, received_at FROM {} WHERE severity = 'critical' AND status = 'firing' "
                    "AND transformer IS NOT NULL AND transformer <> '' AND received_at > %s "
                    "AND received_at <= now() - make_interval(secs => %s) ORDER BY received_at, transformer"
                ).format(self._q["alerts"]),
                (after, settle_s),
            )
            return cur.fetchall()

    def close(self) -> None:
        self.pool.closeall()


class MqttFanout:
    """Publishes alert messages to ``<prefix>/<severity>`` with QoS 1 and waits for the broker's PUBACK."""

    def __init__(
        self, host: str | None = None, port: int | None = None, prefix: str | None = None, timeout: float = 5.0
    ):
        import paho.mqtt.client as mqtt

        self.prefix = prefix or os.environ.get("GRIDLAKE_ALERT_TOPIC_PREFIX", DEFAULT_TOPIC_PREFIX)
        if not _TOPIC_PREFIX.match(self.prefix):
            raise ValueError(f"MQTT topic prefix {self.prefix!r}: want segments of letters, digits, _ and -")
        self.timeout = timeout
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"gridlake-receiver-{uuid.uuid4().hex[:12]}"
        )
        self.client.reconnect_delay_set(0.1, 2)
        self.client.max_inflight_messages_set(1000)  # a group commit publishes hundreds at once
        self.client.connect_async(
            host or os.environ.get("GRIDLAKE_MQTT_HOST", "127.0.0.1"),
            int(port or os.environ.get("GRIDLAKE_MQTT_PORT", "1883")),
        )
        self.client.loop_start()
        self._lock = threading.Lock()

    def topic(self, severity: str) -> str:
        return f"{self.prefix}/{severity if severity in SEVERITIES else 'unknown'}"

    def publish(self, severity: str, msg: dict) -> None:
        info = self.client.publish(self.topic(severity), json.dumps(msg, separators=(",", ":")), qos=1)
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as e:
            raise ConnectionError(f"MQTT publish to {self.topic(severity)} failed: {e}") from e
        if not info.is_published():
            raise ConnectionError(f"MQTT publish to {self.topic(severity)} not acknowledged within {self.timeout} s")

    def publish_many(self, msgs: Sequence[tuple[str, dict]]) -> None:
        """Publish all, then wait for every PUBACK (one round trip for the lot, not one per message)."""
        infos = [
            (self.topic(sev), self.client.publish(self.topic(sev), json.dumps(m, separators=(",", ":")), qos=1))
            for sev, m in msgs
        ]
        deadline = time.monotonic() + self.timeout
        for topic, info in infos:
            try:
                info.wait_for_publish(max(0.001, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as e:
                raise ConnectionError(f"MQTT publish to {topic} failed: {e}") from e
            if not info.is_published():
                raise ConnectionError(f"MQTT publish to {topic} not acknowledged within {self.timeout} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _Pending:
    __slots__ = ("receiver", "alerts", "done", "error")

    def __init__(self, receiver: str, alerts: list[dict]):
        self.receiver, self.alerts, self.done, self.error = receiver, alerts, threading.Event(), None


class GroupCommit:
    """One thread stores the notifications that request threads hand over, all that queued meanwhile in one
    transaction (``AlertStore.record_many``), and then releases their requests. Under load a batch grows
    instead of the requests queueing for connections: the cost per notification falls as the rate rises."""

    def __init__(self, store: AlertStore, fanout: MqttFanout | None, max_batch: int = 1000):
        self.store, self.fanout, self.max_batch = store, fanout, max_batch
        self._q: queue.Queue[_Pending | None] = queue.Queue()
        self.batches = 0  # transactions committed
        self.stored = 0  # notifications stored
        self.closed = False
        self._thread = threading.Thread(target=self._run, name="receiver-commit", daemon=True)
        self._thread.start()

    def store_and_wait(self, receiver: str, alerts: list[dict], timeout: float = 30.0) -> None:
        """Returns once the notification is committed; raises what the transaction raised (or TimeoutError)."""
        if self.closed:
            raise ConnectionError("receiver stopping")
        p = _Pending(receiver, alerts)
        self._q.put(p)
        if not p.done.wait(timeout):
            raise TimeoutError(f"not committed within {timeout} s")
        if p.error is not None:
            raise p.error

    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    p = self._q.get_nowait()
                except queue.Empty:
                    break
                if p is None:
                    stop = True
                    break
                batch.append(p)
            try:
                self.store.record_many(
                    [(p.receiver, p.alerts) for p in batch], self.fanout.publish_many if self.fanout else None
                )
                self.batches += 1
                self.stored += len(batch)
            except Exception as e:  # noqa: BLE001 - handed to every request of the batch (503 or 500 there)
                for p in batch:
                    p.error = e
            for p in batch:
                p.done.set()
            if stop:
                return

    def close(self) -> None:
        self.closed = True
        self._q.put(None)
        self._thread.join(10)
        while True:  # handed over after the stop: not stored, the sender retries
            try:
                p = self._q.get_nowait()
            except queue.Empty:
                return
            if p is not None:
                p.error = ConnectionError("receiver stopping")
                p.done.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Alertmanager opens a connection per concurrent notification (one group per alert on the bridge route):
    # the stdlib's listen backlog of 5 made its dials time out under load ("dial tcp ... i/o timeout")
    request_queue_size = 1024


class WebhookReceiver:
    """HTTP server for Alertmanager webhooks: ``POST /hook/<receiver>``, ``GET /healthz``.

    ``with WebhookReceiver(store, fanout, port=0) as r: r.url`` (port 0 = a free port).
    """

    def __init__(self, store: AlertStore, fanout: MqttFanout | None, host: str = "127.0.0.1", port: int = 0):
        self.store, self.fanout = store, fanout
        self.commit: GroupCommit | None = None  # started by start()
        self.notifications = 0  # accepted webhook requests
        self.errors = 0
        recv = self

        self._conns: set = set()  # open keep-alive connections, closed by stop()
        self._conns_lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with recv._conns_lock:
                    recv._conns.add(self.request)

            def finish(self):
                with recv._conns_lock:
                    recv._conns.discard(self.request)
                super().finish()

            def log_message(self, fmt, *args):  # route the stdlib's access log to logging
                log.debug("receiver: " + fmt, *args)

            def _answer(self, code: int, text: str = "") -> None:
                body = text.encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError as e:  # the sender gave up (its timeout) and closed the connection
                    log.debug("receiver: could not answer %s: %s", code, e)

            def do_GET(self):
                if self.path != "/healthz":
                    return self._answer(404, "not found")
                try:
                    with recv.store.connection() as conn, conn.cursor() as cur:
                        cur.execute("SELECT 1")
                except psycopg2.Error as e:
                    return self._answer(503, f"postgres: {e}")
                if recv.fanout is not None and not recv.fanout.client.is_connected():
                    return self._answer(503, "mqtt: not connected")
                self._answer(200, "ok")

            def do_POST(self):
                m = re.match(r"^/hook/([A-Za-z0-9_.\-]{1,64})$", self.path)
                if not m:
                    return self._answer(404, "POST /hook/<receiver>")
                n = int(self.headers.get("Content-Length") or 0)
                if n > MAX_BODY:
                    return self._answer(413, f"body of {n} bytes exceeds {MAX_BODY}")
                body = self.rfile.read(n)
                if len(body) < n:  # the sender closed the connection mid-body (gave up): nothing to answer
                    log.warning("receiver %s: body cut at %d of %d bytes (sender gone)", m[1], len(body), n)
                    self.close_connection = True
                    return
                try:
                    alerts = parse_notification(body)
                    recv.commit.store_and_wait(m[1], alerts)
                except PayloadError as e:
                    recv.errors += 1
                    log.error("receiver %s: rejected notification: %s", m[1], e)
                    return self._answer(400, str(e))
                except (psycopg2.Error, ConnectionError, OSError, TimeoutError) as e:
                    recv.errors += 1
                    log.warning("receiver %s: not stored, Alertmanager will retry: %s", m[1], e)
                    return self._answer(503, f"not stored: {e}")
                except Exception as e:  # noqa: BLE001 - a bug: say so, Alertmanager retries
                    recv.errors += 1
                    log.exception("receiver %s: not stored", m[1])
                    return self._answer(500, f"not stored: {type(e).__name__}")
                recv.notifications += 1
                self._answer(200, "ok")

        self.server = _Server((host, port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> WebhookReceiver:
        self.commit = GroupCommit(self.store, self.fanout)
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, name="webhook-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (the store and fanout stay open); idempotent."""
        if self._thread is None:
            return
        self.server.shutdown()
        self.server.server_close()
        with self._conns_lock:  # keep-alive connections would otherwise go on being served
            for c in list(self._conns):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(5)
        self._thread = None
        self.commit.close()  # after the requests: what was handed over is committed (or answered 503)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m streaming_bridge.receiver", description="Alertmanager webhook -> alerts table + MQTT"
    )
    ap.add_argument("--listen", default=os.environ.get("GRIDLAKE_RECEIVER_LISTEN", DEFAULT_LISTEN), help="host:port")
    ap.add_argument("--schema", default=os.environ.get("GRIDLAKE_ALERTS_SCHEMA", "public"))
    ap.add_argument("--no-mqtt", action="store_true", help="only the tables (no MQTT fan-out)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    host, _, port = a.listen.rpartition(":")
    store = AlertStore(schema=a.schema)
    store.ensure_tables()
    fanout = None if a.no_mqtt else MqttFanout()
    recv = WebhookReceiver(store, fanout, host, int(port)).start()
    log.info("webhook receiver on %s (schema %s, MQTT %s)", recv.url, a.schema, fanout.prefix if fanout else "off")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    recv.stop()
    if fanout:
        fanout.close()
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
