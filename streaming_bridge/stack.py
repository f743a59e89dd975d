"""A private delivery stack for one run (``make demo``): the bridge's webhook receiver writing the durable
``alerts`` / ``alert_deliveries`` tables to a PostgreSQL schema of its own and fanning out to MQTT, an SMTP
sink for the e-mail receiver, and a single-node Alertmanager with the repository's routing config rendered
with those addresses (:func:`streaming_bridge.amproc.render_config`). Everything on free ports; ``close()``
stops what ``start()`` started.

    with DeliveryStack("gridlake_demo", workdir, reset=True) as stack:
        ...post to stack.alertmanager_url...
        stack.wait_for({"bridge": 5, "pager": 5}, timeout=60)
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Mapping
from email import message_from_bytes
from pathlib import Path
from typing import Self

import psycopg2
from psycopg2 import sql

from .amproc import AlertmanagerProcess, render_config, write_config
from .receiver import (
    AlertStore,
    MqttFanout,
    WebhookReceiver,
    check_identifier,
    pg_params,
)


class SmtpCounter:
    """aiosmtpd on a free port counting the e-mails it accepts (the e-mail receiver's stand-in) and the alert keys
    in them (``key=fingerprint/startsAt/status`` lines of the repo template's text part)."""

    def __init__(self, host: str = "127.0.0.1"):
        from aiosmtpd.controller import Controller

        from .amproc import free_port

        sink = self
        self.messages = 0
        self.keys: set[str] = set()

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                for part in message_from_bytes(envelope.content).walk():
                    if part.get_content_type() == "text/plain":
                        sink.keys.update(
                            re.findall(r"key=(\S+)", part.get_payload(decode=True).decode(errors="replace"))
                        )
                sink.messages += 1
                return "250 OK"

        self.host, self.port = host, free_port()
        self.controller = Controller(Handler(), hostname=host, port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


def drop_schema(schema: str) -> None:
    """``DROP SCHEMA schema CASCADE`` (the stack's tables from an earlier run)."""
    with psycopg2.connect(**pg_params()) as c, c.cursor() as cur:
        cur.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(check_identifier(schema, "schema")))
        )


class DeliveryStack:
    """Receiver (PostgreSQL ``schema`` + MQTT ``<mqtt_prefix>/<severity>``), SMTP sink and Alertmanager.

    ``reset``: drop ``schema`` first, so the tables hold this run's notifications only. ``cap``: route
    timings lowered as in :func:`render_config` (e.g. ``{"group_wait": "1s"}``) so grouped receivers do
    not hold a notification for 30 s.
    """

    def __init__(self, schema: str, workdir: Path, mqtt_prefix: str = "gridlake_demo/alerts", reset: bool = False,
                 cap: Mapping[str, str] | None = None):  # fmt: skip
        self.schema = check_identifier(schema, "schema")
        self.workdir = Path(workdir)
        self.mqtt_prefix, self.reset, self.cap = mqtt_prefix, reset, dict(cap or {})
        self.store = self.fanout = self.receiver = self.smtp = self.am = None

    def start(self) -> Self:
        try:
            if self.reset:
                drop_schema(self.schema)
            self.store = AlertStore(schema=self.schema)
            self.store.ensure_tables()
            self.fanout = MqttFanout(prefix=self.mqtt_prefix)
            deadline = time.monotonic() + 10
            while not self.fanout.client.is_connected():
                if time.monotonic() > deadline:
                    raise ConnectionError(
                        "MQTT broker not connected after 10 s (GRIDLAKE_MQTT_HOST/PORT; `make services` starts Mosquitto)"
                    )
                time.sleep(0.05)
            self.receiver = WebhookReceiver(self.store, self.fanout).start()
            self.smtp = SmtpCounter()
            # a fresh notification log: Alertmanager's would otherwise hold back alerts it notified last run
            shutil.rmtree(self.workdir / "alertmanager", ignore_errors=True)
            self.workdir.mkdir(parents=True, exist_ok=True)
            cfg = write_config(
                render_config(self.receiver.url, f"{self.smtp.host}:{self.smtp.port}", self.cap),
                self.workdir / "alertmanager.yml",
            )
            self.am = AlertmanagerProcess(cfg, storage_dir=self.workdir / "alertmanager").start()
        except BaseException:
            self.close()
            raise
        return self

    @property
    def alertmanager_url(self) -> str:
        return self.am.url

    def deliveries(self) -> dict[str, int]:
        """Distinct firing alerts each receiver has recorded (``alert_deliveries``), and ``email``: distinct
        alert keys the SMTP sink has received (``.../firing`` only)."""
        with self.store.connection() as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT receiver, count(*) FROM {} WHERE status = 'firing' GROUP BY receiver").format(
                    sql.Identifier(self.schema, "alert_deliveries")
                )
            )
            out = dict(cur.fetchall())
        emailed = sum(1 for k in list(self.smtp.keys) if k.endswith("/firing"))
        return {**out, "email": emailed} if emailed else out

    def wait_for(self, expected: Mapping[str, int], timeout: float = 60.0) -> dict[str, int]:
        """Wait until every receiver in ``expected`` has at least that many firing alerts; returns the counts.
        Raises TimeoutError naming the receivers still short (and Alertmanager's log tail)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.deliveries()
            short = {r: (got.get(r, 0), n) for r, n in expected.items() if got.get(r, 0) < n}
            if not short:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"after {timeout:.0f} s, receivers short of alerts (got, expected): {short}\n{self.am.log_tail() if self.am else ''}"
                )
            time.sleep(0.2)

    def close(self) -> None:
        for part, stop in (
            (self.am, "close"),
            (self.receiver, "stop"),
            (self.smtp, "close"),
            (self.fanout, "close"),
            (self.store, "close"),
        ):
            if part is not None:
                getattr(part, stop)()
        self.am = self.receiver = self.smtp = self.fanout = self.store = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
