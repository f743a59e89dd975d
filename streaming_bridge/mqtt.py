"""The MQTT side of the bridge: paho-mqtt 2.1, MQTT 5, QoS 1, a persistent session, deferred PUBACKs.

- ``clean_start=False`` + a Session Expiry Interval: the broker keeps the subscriptions and queues QoS 1
  messages while the bridge is away (restart, crash), and hands them over on reconnect.
- Manual acknowledgements: a PUBACK goes out only after the message's records are durable (spooled
  for landing, alerts in the outbox). A message received but not acknowledged when the bridge dies
  is redelivered by the broker; everything downstream is idempotent on it.
- paho's network thread only appends to a queue (no parsing there); the bridge's processing thread
  takes whatever has arrived as one batch. Acks of a connection that has since dropped are not sent
  (the broker redelivers those messages on the new connection).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streaming_bridge.ingress import Message

log = logging.getLogger(__name__)


class MqttIngress:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        client_id: str = "gridlake-bridge",
        subscriptions: Sequence[str] = (),
        session_expiry_s: int = 7 * 24 * 3600,
        receive_maximum: int = 65535,
        keepalive: int = 30,
        side_topics: dict[str, Callable[[str, bytes], None]] | None = None,
    ):
        self.host, self.port = host, port
        #: topic filter (``a/b/+`` or ``a/b/#``) -> callback(topic, payload), called on paho's network thread and
        #: acknowledged at once (small control messages, e.g. the receiver's delivery confirmations), never batched
        self.side_topics = dict(side_topics or {})
        self._side = [(f.rstrip("+#"), cb) for f, cb in self.side_topics.items()]
        self.subscriptions = list(subscriptions) + list(self.side_topics)
        self.session_expiry_s, self.receive_maximum, self.keepalive = session_expiry_s, receive_maximum, keepalive
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 5)
        self._q: deque[tuple[Message, int]] = deque()
        self._cv = threading.Condition()
        self._gen = 0  # connection generation: acks are only valid on the connection that received
        self.connected = threading.Event()
        self.session_present = False
        self.received = 0
        self.connects = 0

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT connect refused: %s", reason_code)
            return
        self.session_present = bool(flags.session_present)
        with self._cv:
            self._gen += 1
        self.connects += 1
        # subscribing again on a present session is harmless and covers a broker that lost it
        for t in self.subscriptions:
            client.subscribe(t, qos=1)
        self.connected.set()
        log.info("MQTT connected to %s:%s (session present: %s)", self.host, self.port, self.session_present)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        with self._cv:
            self._gen += 1  # pending acks of the old connection are void
        log.warning("MQTT disconnected: %s", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        for prefix, cb in self._side:
            if msg.topic.startswith(prefix):
                try:
                    cb(msg.topic, msg.payload)
                except Exception:  # noqa: BLE001 - a control message must not stop the network thread
                    log.exception("MQTT side topic %s: callback failed", msg.topic)
                if msg.qos > 0:
                    client.ack(msg.mid, msg.qos)
                return
        m = Message(msg.topic, msg.payload, time.time(), msg.mid if msg.qos > 0 else 0)
        with self._cv:
            self._q.append((m, self._gen))
            self.received += 1
            self._cv.notify()

    # ------------------------------------------------------------------ bridge side
    def connect(self, wait_s: float = 10.0) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive, clean_start=False, properties=props)
        self.client.loop_start()
        if wait_s and not self.connected.wait(wait_s):
            raise ConnectionError(f"no MQTT connection to {self.host}:{self.port} within {wait_s} s")

    def take(self, max_messages: int = 5000, timeout: float = 0.1, linger: float = 0.0) -> list[tuple[Message, int]]:
        """A batch: waits up to ``timeout`` for the first message, then until ``max_messages`` have arrived or
        ``linger`` seconds have passed since the first arrived (size OR time), and takes up to ``max_messages``.
        A processing batch has a fixed cost: lingering a few ms gathers a publisher's burst into one batch
        instead of paying that cost for its first message alone and again for the rest."""
        with self._cv:
            if not self._q:
                self._cv.wait(timeout)
            if linger > 0 and self._q:
                until = self._q[0][0].received_at + linger
                while len(self._q) < max_messages and (left := until - time.time()) > 0:
                    self._cv.wait(left)
            n = min(len(self._q), max_messages)
            return [self._q.popleft() for _ in range(n)]

    def backlog(self) -> int:
        return len(self._q)

    def ack(self, batch: Sequence[tuple[Message, int]]) -> int:
        """PUBACK the batch's QoS 1 messages received on the current connection; returns how many."""
        n = 0
        gen = self._gen
        for m, g in batch:
            if m.mid and g == gen:
                self.client.ack(m.mid, 1)
                n += 1
        return n

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
