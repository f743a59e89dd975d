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
from streaming_bridge.mqtt_child import child_main

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
        self.client_id = client_id
        self.client = self._make_client()
        self._pending_subs: set[int] = set()
        self._q: deque[tuple[Message, int]] = deque()
        self._cv = threading.Condition()
        self._gen = 0  # connection generation: acks are only valid on the connection that received
        self.connected = threading.Event()
        #: every subscription of the current connection SUBACKed: from now on the broker routes to this session
        self.subscribed = threading.Event()
        self.session_present = False
        self.received = 0
        self.connects = 0

    def _make_client(self) -> mqtt.Client | None:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        c.manual_ack_set(True)
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_message, c.on_subscribe = self._on_message, self._on_subscribe
        c.reconnect_delay_set(0.2, 5)
        return c

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
        self.subscribed.clear()
        with self._cv:
            self._pending_subs = {client.subscribe(t, qos=1)[1] for t in self.subscriptions}
            if not self._pending_subs:
                self.subscribed.set()
        self.connected.set()
        log.info("MQTT connected to %s:%s (session present: %s)", self.host, self.port, self.session_present)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("MQTT subscription refused (mid %s): %s", mid, bad)
            return
        with self._cv:
            self._pending_subs.discard(mid)
            if not self._pending_subs:
                self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.subscribed.clear()
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
        self._wait_ready(wait_s)

    def _wait_ready(self, wait_s: float) -> None:
        """Connected AND every subscription SUBACKed (a message published before that could go unrouted)."""
        if not wait_s:
            return
        end = time.monotonic() + wait_s
        if not self.connected.wait(wait_s):
            raise ConnectionError(f"no MQTT connection to {self.host}:{self.port} within {wait_s} s")
        if not self.subscribed.wait(max(0.0, end - time.monotonic())):
            raise ConnectionError(f"MQTT subscriptions on {self.host}:{self.port} not acknowledged within {wait_s} s")

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


# --------------------------------------------------------------------------------------------------------------
# The same ingress with paho in a child process
#
# Profiling the bridge under the benchmark's load (py-spy --gil, docs/DECISIONS.md "bench-bridge round 4") showed
# paho's network thread holding the GIL about as often as the processing thread (MQTT 5 packet and property
# parsing, PUBACKs in pure Python, ~1,100 messages/s): the processing thread waited for the GIL behind it. In a
# child process paho has its own interpreter; the bridge process only unpickles lists of (topic, payload, time,
# mid) from a pipe. Acks and publishes go back over the same pipe; the child sends a PUBACK only when told to,
# so the at-least-once contract is unchanged (the bridge acks after spooling and the outbox commit). If the bridge
# process dies, the child sees the pipe close and exits without acknowledging anything: the broker redelivers.


class MqttIngressProcess(MqttIngress):
    """:class:`MqttIngress` with paho's client in a child process (same interface: connect, take, ack,
    publish, backlog, close, ``connected``, ``subscribed``, ``session_present``, ``connects``)."""

    def _make_client(self) -> None:
        return None  # paho's client lives in the child (connect() starts it)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._send_lock = threading.Lock()
        self._conn = None
        self._proc = None
        self._reader: threading.Thread | None = None
        self._closed = threading.Event()

    def _send(self, obj) -> None:
        if self._conn is None:
            return
        with self._send_lock:
            try:
                self._conn.send(obj)
            except (OSError, ValueError) as e:  # the child is gone: unacked messages are redelivered
                log.warning("MQTT child process unreachable: %s", e)

    def connect(self, wait_s: float = 10.0) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # the bridge process has threads (polars): never fork it
        self._conn, child = ctx.Pipe(duplex=True)
        prefixes = tuple(p for p, _ in self._side)
        self._proc = ctx.Process(
            target=child_main,
            args=(
                child,
                self.host,
                self.port,
                self.client_id,
                self.subscriptions,
                prefixes,
                self.session_expiry_s,
                self.receive_maximum,
                self.keepalive,
            ),
            name=f"mqtt-{self.client_id}",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._reader = threading.Thread(target=self._read, name="mqtt-ingress-reader", daemon=True)
        self._reader.start()
        self._wait_ready(max(wait_s, 30.0) if wait_s else 0)  # + the child's start-up (an interpreter, paho)

    def _read(self) -> None:
        side = dict(self._side)
        while True:
            try:
                kind, *rest = self._conn.recv()
            except (EOFError, OSError):
                self.connected.clear()
                self.subscribed.clear()
                if not self._closed.is_set():
                    log.error("MQTT child process exited")
                return
            if kind == "msgs":
                handed = time.time()
                with self._cv:
                    for topic, payload, at, mid, gen in rest[0]:
                        self._q.append((Message(topic, payload, at, mid, handed), gen))
                    self.received += len(rest[0])
                    self._cv.notify()
            elif kind == "side":
                acks = []
                for topic, payload, _at, mid, gen in rest[0]:
                    cb = next((c for p, c in side.items() if topic.startswith(p)), None)
                    try:
                        if cb is not None:
                            cb(topic, payload)
                    except Exception:  # noqa: BLE001 - a control message must not stop the reader
                        log.exception("MQTT side topic %s: callback failed", topic)
                    acks.append((mid, gen))
                self._send(("ack", acks))
            elif kind == "conn":
                gen, present, connects, ready = rest
                with self._cv:
                    self._gen = gen
                self.session_present, self.connects = present, connects
                if ready:
                    self.subscribed.set()
                self.connected.set()
                log.info("MQTT connected to %s:%s (session present: %s)", self.host, self.port, present)
            elif kind == "subscribed":
                if rest[0] == self._gen:
                    self.subscribed.set()
            elif kind == "disc":
                self.connected.clear()
                self.subscribed.clear()
                with self._cv:
                    self._gen = rest[0]
                log.warning("MQTT disconnected: %s", rest[1])
            elif kind == "log":
                log.warning("%s", rest[0])
            elif kind == "closed":
                return

    def ack(self, batch: Sequence[tuple[Message, int]]) -> int:
        """Send the PUBACKs of the batch's QoS 1 messages (the child drops those of an older connection)."""
        pairs = [(m.mid, g) for m, g in batch if m.mid]
        if pairs:
            self._send(("ack", pairs))
        return len(pairs)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self._send(("pub", topic, payload, qos))

    def close(self) -> None:
        self._closed.set()
        self._send(("close",))
        if self._reader is not None:
            self._reader.join(10)
        if self._proc is not None:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
        if self._conn is not None:
            self._conn.close()
