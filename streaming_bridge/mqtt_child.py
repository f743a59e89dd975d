"""The child process of :class:`streaming_bridge.mqtt.MqttIngressProcess`: paho's client and nothing else.

Kept free of the bridge's imports (polars, contracts, lake) so that it starts in a fraction of a second:
paho's loop, a sender thread that forwards what arrived to the bridge process in lists, and a command loop
for PUBACKs and publishes. It acknowledges a message only when the bridge says so; when the bridge process
disappears (the pipe ends) it exits without acknowledging anything and the broker redelivers.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def child_main(conn, host, port, client_id, subscriptions, side_prefixes, session_expiry_s, receive_max, keepalive):
    """The child: paho's loop, a sender thread that forwards what arrived in lists, and a command loop."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # the bridge process decides when to stop (close, or the pipe ends)
        signal.signal(sig, signal.SIG_IGN)
    sys.setswitchinterval(0.0005)  # hand the GIL to the sender thread soon after a message arrives
    state = {"gen": 0, "pending": set(), "connects": 0}
    q: deque = deque()
    cv = threading.Condition()
    send_lock = threading.Lock()

    def send(obj) -> None:
        with send_lock:
            conn.send(obj)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.manual_ack_set(True)
    client.reconnect_delay_set(0.2, 5)

    def on_connect(cl, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            send(("log", f"MQTT connect refused: {reason_code}"))
            return
        with cv:
            state["gen"] += 1
            state["connects"] += 1
            state["pending"] = {cl.subscribe(t, qos=1)[1] for t in subscriptions}
            ready = not state["pending"]
        send(("conn", state["gen"], bool(flags.session_present), state["connects"], ready))

    def on_subscribe(cl, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            send(("log", f"MQTT subscription refused (mid {mid}): {reason_codes}"))
            return
        with cv:
            state["pending"].discard(mid)
            ready = not state["pending"]
        if ready:
            send(("subscribed", state["gen"]))

    def on_disconnect(cl, userdata, flags, reason_code, properties):
        with cv:
            state["gen"] += 1
        send(("disc", state["gen"], str(reason_code)))

    def on_message(cl, userdata, msg):
        with cv:
            q.append((msg.topic, msg.payload, time.time(), msg.mid if msg.qos > 0 else 0, state["gen"]))
            cv.notify()

    client.on_connect, client.on_subscribe, client.on_disconnect = on_connect, on_subscribe, on_disconnect
    client.on_message = on_message

    def sender():
        while True:
            with cv:
                while not q:
                    cv.wait()
                items = list(q)
                q.clear()
            data, side = [], []
            for it in items:
                (side if side_prefixes and it[0].startswith(side_prefixes) else data).append(it)
            if data:
                send(("msgs", data))
            if side:
                send(("side", side))

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    props.ReceiveMaximum = receive_max
    threading.Thread(target=sender, name="mqtt-forward", daemon=True).start()
    client.connect_async(host, port, keepalive=keepalive, clean_start=False, properties=props)
    client.loop_start()
    while True:
        try:
            cmd = conn.recv()
        except (EOFError, OSError):  # the bridge process is gone: leave without acknowledging anything
            os._exit(0)
        if cmd[0] == "ack":
            gen = state["gen"]
            for mid, g in cmd[1]:
                if mid and g == gen:  # an ack on a newer connection is void (the broker redelivers)
                    client.ack(mid, 1)
        elif cmd[0] == "pub":
            client.publish(cmd[1], cmd[2], qos=cmd[3])
        elif cmd[0] == "close":
            client.disconnect()
            client.loop_stop()
            send(("closed",))
            return
