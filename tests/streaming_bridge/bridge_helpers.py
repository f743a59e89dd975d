"""Helpers for the streaming-bridge tests: a list sink, a private restartable Mosquitto, publishers."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from streaming_bridge.alerts import Alert
from streaming_bridge.mqproc import Mosquitto  # noqa: F401 - re-exported for the fixtures


class ListSink:
    """An AlertSink that keeps what it is given (the outbox's contract: submit(alerts))."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.lock = threading.Lock()

    def submit(self, alerts) -> None:
        with self.lock:
            self.alerts.extend(alerts)

    def names(self, resolved: bool | None = None) -> list[tuple[str, str]]:
        with self.lock:
            return [
                (a.labels["alertname"], a.labels["asset_id"])
                for a in self.alerts
                if resolved is None or a.resolved == resolved
            ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout: float = 15.0, every: float = 0.05, what: str = "condition"):
    """Poll ``cond`` until it returns something truthy (returned); AssertionError after ``timeout`` s.
    The one polling helper of the bridge tests (tests/streaming_bridge/delivery imports it too)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def publisher(port: int, client_id: str | None = None, will: tuple[str, bytes] | None = None) -> mqtt.Client:
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    if will:
        c.will_set(will[0], will[1], qos=1)
    c.connect("127.0.0.1", port, keepalive=2)
    c.loop_start()
    return c


def publish_all(c: mqtt.Client, msgs: list[tuple[str, object]]) -> None:
    infos = [c.publish(t, p if isinstance(p, bytes) else json.dumps(p).encode(), qos=1) for t, p in msgs]
    for i in infos:
        i.wait_for_publish(10)


def iso(t: dt.datetime) -> str:
    return t.isoformat()
