"""Fixtures for the streaming bridge: a real Mosquitto (the shared one on 1883, or a private one on a
free port for restart tests) and a unique topic prefix per test."""

from __future__ import annotations

import socket
import uuid

import pytest

from streaming_bridge.mqproc import Mosquitto


@pytest.fixture()
def private_mosquitto(tmp_path):
    m = Mosquitto(tmp_path / "mosquitto")
    m.start()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def shared_mosquitto() -> int:
    with socket.socket() as s:
        s.settimeout(1)
        if s.connect_ex(("127.0.0.1", 1883)) != 0:
            pytest.fail("Mosquitto is not answering on 127.0.0.1:1883 (run `bash .ci/services.sh`)")
    return 1883


@pytest.fixture()
def prefix() -> str:
    return f"test{uuid.uuid4().hex[:10]}/v1"
