"""Fixtures for the delivery side of the streaming bridge, all real: a private Alertmanager 0.25 on a free
port (repo config, receivers pointed at this test's ports), the bridge's webhook receiver writing to a
throw-away PostgreSQL schema and publishing to the shared Mosquitto under a unique topic prefix, and an
aiosmtpd SMTP sink for the e-mail receiver. Parallel test sessions do not collide (ports, schema, topics)."""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from bridge_delivery_helpers import (
    TEST_CAP,
    MqttCollector,
    SmtpSink,
    _port_open,
    wait_until,
)

from streaming_bridge.amproc import AlertmanagerProcess, render_config, write_config
from streaming_bridge.receiver import AlertStore, MqttFanout, WebhookReceiver, pg_params


@pytest.fixture
def pg_schema():
    """A fresh PostgreSQL schema for this test's alerts tables; dropped afterwards."""
    if not _port_open(5432):
        pytest.fail("PostgreSQL is not answering on 127.0.0.1:5432 (run `bash .ci/services.sh`)")
    name = f"gl_alerts_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg2.connect(**pg_params()) as c, c.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def store(pg_schema):
    s = AlertStore(schema=pg_schema)
    s.ensure_tables()
    yield s
    s.close()


@pytest.fixture
def mqtt_prefix():
    if not _port_open(1883):
        pytest.fail("Mosquitto is not answering on 127.0.0.1:1883 (run `bash .ci/services.sh`)")
    return f"test/{uuid.uuid4().hex[:10]}/alerts"


@pytest.fixture
def mqtt_messages(mqtt_prefix):
    col = MqttCollector(mqtt_prefix)
    yield col
    col.close()


@pytest.fixture
def receiver(store, mqtt_prefix, mqtt_messages):
    fan = MqttFanout(prefix=mqtt_prefix)
    wait_until(fan.client.is_connected, 10, what="MQTT fan-out connection")
    with WebhookReceiver(store, fan) as r:
        yield r
    fan.close()


@pytest.fixture
def smtp_sink():
    s = SmtpSink()
    yield s
    s.close()


@pytest.fixture
def am_config(tmp_path, receiver, smtp_sink):
    cfg = render_config(webhook_base=receiver.url, smarthost=f"127.0.0.1:{smtp_sink.port}", cap=TEST_CAP)
    return write_config(cfg, tmp_path / "alertmanager.yml")


@pytest.fixture
def alertmanager(am_config, tmp_path):
    am = AlertmanagerProcess(am_config, storage_dir=tmp_path / "am-data")
    am.start()
    yield am
    am.close()
