"""Helpers for the delivery tests (imported by their conftest and test modules)."""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

from streaming_bridge.alerts import Alert
from streaming_bridge.receiver import AlertStore
from tests.streaming_bridge.bridge_helpers import wait_until  # noqa: F401 - re-exported for the delivery tests

# Test timings: the repo tree with every wait above 1 s capped to 1 s (critical routes keep 0 s).
TEST_CAP = {"group_wait": "1s", "group_interval": "1s"}


def now() -> datetime:
    """UTC now at millisecond precision (what Alert.to_alertmanager sends)."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def make_alert(
    i: int, severity: str = "critical", alertname: str = "TransformerHotSpot", asset_type: str = "transformer", **labels
) -> Alert:
    # startsAt = now, as the bridge sets it at detection: Alertmanager skips group_wait (and with it the
    # inhibition window) for an alert whose startsAt is older than group_wait.
    starts = now()
    return Alert(
        {
            "alertname": alertname,
            "severity": severity,
            "asset_type": asset_type,
            "asset_id": f"{asset_type[:2].upper()}-{i}",
            **labels,
        },
        {"summary": f"test alert {i}", "value": "131.2", "limit": "120"},
        starts_at=starts,
    )


def query(store: AlertStore, q: str, args=()) -> list[tuple]:
    """Run SQL with ``{s}`` standing for the test's schema (a generated identifier)."""
    with store.connection() as c, c.cursor() as cur:
        cur.execute(q.format(s=f'"{store.schema}"'), args)
        return cur.fetchall() if cur.description else []


class MqttCollector:
    def __init__(self, prefix: str):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict]] = []
        self._ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-collector-{uuid.uuid4().hex[:8]}")
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}/#", qos=1)
        self.c.on_subscribe = lambda *a: self._ready.set()
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.c.connect("127.0.0.1", 1883)
        self.c.loop_start()
        assert self._ready.wait(10), "MQTT subscription not acknowledged"

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class SmtpSink:
    """aiosmtpd on a free port; ``messages`` holds every e-mail received (email.message.Message)."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        sink = self
        self.messages = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def alert_keys(self) -> list[str]:
        """The idempotency keys of every alert in every e-mail (``key=...`` in the text/plain part)."""
        out = []
        for m in self.messages:
            for part in m.walk():
                if part.get_content_type() == "text/plain":
                    out += re.findall(r"key=(\S+)", part.get_payload(decode=True).decode())
        return out

    def close(self):
        self.controller.stop()


def dump_diagnostics(name: str, store: AlertStore, outbox_path, am_url: str | None, logs=()) -> Path:
    """On a failure, before the fixtures tear down (the schema is dropped): the alerts tables, the outbox
    file's tables, Alertmanager's /api/v2/alerts and the logs, into test-artifacts/<name>-<time>/ (gitignored)."""
    import shutil
    import sqlite3
    import urllib.request

    out = (
        Path(__file__).resolve().parents[3] / "test-artifacts" / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    )
    out.mkdir(parents=True, exist_ok=True)
    for table in ("alerts", "alert_deliveries"):
        try:
            (out / f"pg_{table}.txt").write_text(
                "\n".join(map(repr, query(store, f"SELECT * FROM {{s}}.{table} ORDER BY 1, 2")))
            )
        except Exception as e:  # noqa: BLE001 - diagnostics must not hide the test's own failure
            (out / f"pg_{table}.txt").write_text(f"error: {e!r}")
    if outbox_path is not None and Path(outbox_path).exists():
        try:
            db = sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True)
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                (out / f"outbox_{table}.txt").write_text("\n".join(map(repr, db.execute(f'SELECT * FROM "{table}"'))))
            db.close()
        except Exception as e:  # noqa: BLE001
            (out / "outbox_error.txt").write_text(repr(e))
    if am_url:
        try:
            with urllib.request.urlopen(f"{am_url}/api/v2/alerts", timeout=5) as r:
                (out / "alertmanager_alerts.json").write_bytes(r.read())
        except Exception as e:  # noqa: BLE001
            (out / "alertmanager_alerts.json").write_text(f"error: {e!r}")
    for p in logs:
        if Path(p).exists():
            shutil.copy(p, out / Path(p).name)
    return out
