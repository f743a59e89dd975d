"""MqttIngress on the real Mosquitto: a batch closes on size OR time (``linger`` after its first message), and
side topics (the receiver's delivery confirmations) go to their callback, acknowledged, never into a batch."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest

from streaming_bridge.mqtt import MqttIngress, MqttIngressProcess
from tests.streaming_bridge.bridge_helpers import publish_all, publisher, wait_until

pytestmark = pytest.mark.mqtt


@pytest.fixture(params=[MqttIngress, MqttIngressProcess], ids=["thread", "process"])
def kind(request):
    """paho on a thread of the bridge process, or in a child process (the bridge's default)."""
    return request.param


def _ingress(port: int, prefix: str, kind=MqttIngress, **kw) -> MqttIngress:
    m = kind(
        "127.0.0.1",
        port,
        client_id=f"batch-{uuid.uuid4().hex[:8]}",
        subscriptions=[f"{prefix}/#"],
        session_expiry_s=0,
        **kw,
    )
    m.connect()  # returns once every subscription is SUBACKed: no fixed sleep
    assert m.subscribed.is_set()
    return m


def test_take_lingers_for_a_burst_and_closes_on_size(shared_mosquitto, prefix, kind):
    ing = _ingress(shared_mosquitto, prefix, kind)
    pub = publisher(shared_mosquitto)
    try:

        def burst(n: int, gap: float) -> None:  # the first message, then the rest `gap` seconds later
            publish_all(pub, [(f"{prefix}/x/0", b"{}")])
            time.sleep(gap)
            publish_all(pub, [(f"{prefix}/x/{i}", b"{}") for i in range(1, n)])

        threading.Thread(target=burst, args=(6, 0.05), daemon=True).start()
        first = ing.take(100, timeout=2.0, linger=0.0)  # no linger: the first message alone
        assert len(first) == 1
        rest: list = []
        wait_until(lambda: rest.extend(ing.take(100, timeout=0.1)) or len(rest) >= 5, 5, what="the rest of the burst")
        assert len(rest) == 5

        threading.Thread(target=burst, args=(6, 0.05), daemon=True).start()
        batch = ing.take(100, timeout=2.0, linger=0.5)  # lingers past the 50 ms gap: one batch
        assert len(batch) == 6

        threading.Thread(target=burst, args=(6, 0.05), daemon=True).start()
        t0 = time.monotonic()
        batch = ing.take(3, timeout=2.0, linger=5.0)  # the size bound closes it long before the time bound
        assert len(batch) == 3 and time.monotonic() - t0 < 2.0
        wait_until(lambda: ing.backlog() == 3, 5, what="the other three queued")
    finally:
        pub.loop_stop()
        ing.close()


def test_side_topic_messages_go_to_their_callback_not_into_batches(shared_mosquitto, prefix, kind):
    got: list[tuple[str, bytes]] = []
    ing = _ingress(
        shared_mosquitto, f"{prefix}/in", kind, side_topics={f"{prefix}/alerts/+": lambda t, p: got.append((t, p))}
    )
    pub = publisher(shared_mosquitto)
    try:
        publish_all(pub, [(f"{prefix}/alerts/critical", b'{"status": "firing"}'), (f"{prefix}/in/reading", b"{}")])
        batch = wait_until(lambda: ing.take(10, timeout=0.2), 5, what="the reading")
        wait_until(lambda: got, 5, what="the side-topic callback")
        time.sleep(0.2)
        assert [m.topic for m, _ in batch] == [f"{prefix}/in/reading"] and ing.backlog() == 0
        assert got == [(f"{prefix}/alerts/critical", b'{"status": "firing"}')]
    finally:
        pub.loop_stop()
        ing.close()


def test_child_process_exits_unacknowledged_when_the_bridge_dies_and_the_broker_redelivers(shared_mosquitto, prefix):
    """The MQTT child process PUBACKs only on the bridge's word: when the bridge process disappears (its end of
    the pipe closes, as on SIGKILL) the child leaves at once, the persistent session keeps the unacknowledged
    messages, and the next bridge on that session gets them again; acknowledged ones are not redelivered."""
    cid = f"bridge-kill-{uuid.uuid4().hex[:8]}"

    def ingress() -> MqttIngressProcess:
        m = MqttIngressProcess("127.0.0.1", shared_mosquitto, client_id=cid, subscriptions=[f"{prefix}/#"])
        m.session_expiry_s = 60
        m.connect()
        return m

    first = ingress()
    pub = publisher(shared_mosquitto)
    try:
        publish_all(pub, [(f"{prefix}/x/{i}", str(i).encode()) for i in range(3)])
        got: list = []
        wait_until(lambda: got.extend(first.take(10, timeout=0.1)) or len(got) >= 3, 10, what="the three messages")
        # the bridge process is gone (as on SIGKILL: the kernel closes its end of the pipe): no ack, no close
        # command. Closing the Connection object would not do: the reader thread blocked in recv keeps the socket
        sock = socket.socket(fileno=os.dup(first._conn.fileno()))
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        first._proc.join(10)
        assert first._proc.exitcode == 0  # left by itself, without acknowledging

        second = ingress()
        again: list = []
        wait_until(lambda: again.extend(second.take(10, timeout=0.1)) or len(again) >= 3, 10, what="redelivery")
        assert sorted(m.payload for m, _ in again) == [b"0", b"1", b"2"] and second.session_present
        assert second.ack(again) == 3
        second.close()

        third = ingress()
        try:
            assert third.session_present and third.take(10, timeout=1.0) == []  # acknowledged: not redelivered
        finally:
            third.close()
    finally:
        pub.loop_stop()
