"""streaming_bridge.stack.DeliveryStack (what `make demo` starts for its alerts stage), all real: it starts
Alertmanager with the repo's routing rendered to its receiver, its SMTP sink and PostgreSQL schema; a critical
alert reaches bridge, pager, chat and e-mail; a restart with reset=True forgets the earlier run (tables and
Alertmanager's notification log), so the same alert is delivered again; close() stops every part."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg2
import pytest
import requests

from streaming_bridge.alerts import Alert
from streaming_bridge.am_client import AlertmanagerClient
from streaming_bridge.receiver import pg_params
from streaming_bridge.stack import DeliveryStack, drop_schema

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt]


def _schema_exists(name: str) -> bool:
    with psycopg2.connect(**pg_params()) as c, c.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,))
        return cur.fetchone() is not None


def test_stack_delivers_to_every_critical_receiver_and_a_reset_run_delivers_again(tmp_path):
    schema = f"gl_stack_{uuid.uuid4().hex[:10]}"
    now = dt.datetime.now(dt.UTC)
    alert = Alert({"alertname": "TransformerFailureRisk", "severity": "critical", "asset_type": "transformer", "asset_id": "TX-9",
                   "transformer": "TX-9", "source": "batch"}, {"summary": "test"}, starts_at=now, ends_at=now + dt.timedelta(hours=1))  # fmt: skip
    cap = {"group_wait": "1s", "group_interval": "1s"}
    try:
        for run in range(2):
            stack = DeliveryStack(
                schema, tmp_path / "stack", mqtt_prefix=f"test/{schema}/alerts", reset=True, cap=cap
            ).start()
            try:
                assert stack.deliveries() == {}  # reset: nothing from the run before
                AlertmanagerClient(stack.alertmanager_url).post_alerts([alert])
                got = stack.wait_for({"bridge": 1, "pager": 1, "chat": 1, "email": 1}, timeout=30)
                assert got == {"bridge": 1, "pager": 1, "chat": 1, "email": 1}, (run, got)
                assert stack.smtp.messages == 1
                with pytest.raises(TimeoutError, match=r"'pager': \(1, 2\)"):
                    stack.wait_for({"pager": 2}, timeout=0.5)
                am_url, hook = stack.alertmanager_url, stack.receiver.url
            finally:
                stack.close()
            for url in (f"{am_url}/-/ready", f"{hook}/healthz"):
                with pytest.raises(requests.ConnectionError):
                    requests.get(url, timeout=2)
        assert _schema_exists(schema)
    finally:
        drop_schema(schema)
    assert not _schema_exists(schema)


def test_stack_refuses_a_bad_schema_name(tmp_path):
    with pytest.raises(ValueError, match="schema 'Bad;drop'"):
        DeliveryStack("Bad;drop", tmp_path)
