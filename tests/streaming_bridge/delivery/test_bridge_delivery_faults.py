"""Delivery faults while alerts stream in: Alertmanager down 10 s, the webhook receiver down 10 s, the
outbox's process SIGKILLed. After recovery every alert has been delivered exactly once to each receiver its
severity routes to (one alert_deliveries row per receiver and idempotency key, nothing missing, nothing
extra), once to MQTT, and (as a set) by e-mail; the alerts table holds exactly the streamed alerts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime

import pytest
from bridge_delivery_helpers import make_alert, query, wait_until

from streaming_bridge.am_client import AlertmanagerClient
from streaming_bridge.outbox import Outbox
from streaming_bridge.receiver import WebhookReceiver, alert_key

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt]

SEVERITIES = ("critical", "warning", "info")
ROUTES = {"critical": ("bridge", "pager", "chat"), "warning": ("bridge", "chat"), "info": ("bridge",)}


def stream_alert(k: int):
    sev = SEVERITIES[k % 3]
    return make_alert(
        k,
        severity=sev,
        alertname="StreamFault",
        asset_type="transformer" if sev == "critical" else "meter",
        transformer=f"TX-{k}",
    )


class Producer(threading.Thread):
    """Submits ``n`` distinct alerts to the outbox, one every ``every`` seconds."""

    def __init__(self, outbox: Outbox, n: int, every: float):
        super().__init__(daemon=True)
        self.outbox, self.n, self.every, self.sent = outbox, n, every, {}

    def run(self):
        for k in range(self.n):
            a = stream_alert(k)
            self.outbox.submit([a])
            self.sent[a.labels["asset_id"]] = (a.severity, a.starts_at)
            time.sleep(self.every)


def assert_exactly_once(
    store, smtp_sink, mqtt_messages, sent: dict[str, tuple[str, datetime | None]], timeout: float = 40.0
):
    """Every sent alert (asset_id -> severity, startsAt if known) delivered once per routed receiver, once
    on MQTT, in e-mail; nothing else. Returns the highest number of sends of one key to one receiver."""

    def stored():
        rows = query(store, "SELECT asset_id, fingerprint, starts_at FROM {s}.alerts WHERE status = 'firing'")
        return {aid: (fp, t) for aid, fp, t in rows}

    wait_until(lambda: set(stored()) == set(sent), timeout, 0.2, "every streamed alert in the alerts table")
    st = stored()
    for aid, (_, t) in sent.items():
        assert t is None or st[aid][1] == t, f"{aid}: startsAt {st[aid][1]} stored, {t} sent"
    keys = {aid: alert_key(fp, t, "firing") for aid, (fp, t) in st.items()}
    want = {(r, keys[aid]) for aid, (sev, _) in sent.items() for r in ROUTES[sev]}

    def got():
        rows = query(store, "SELECT receiver, fingerprint, starts_at, status FROM {s}.alert_deliveries")
        return {(r, alert_key(f, s, st)) for r, f, s, st in rows}

    wait_until(lambda: got() >= want, timeout, 0.2, "every routed delivery")
    time.sleep(2.5)  # a few (capped 1 s) group intervals: a late duplicate or stray would show now
    assert got() == want
    n_rows = query(store, "SELECT count(*) FROM {s}.alert_deliveries")[0][0]
    assert n_rows == len(want)  # one row per receiver and key: exactly once, however often Alertmanager sent it
    assert query(store, "SELECT count(*) FROM {s}.alerts")[0][0] == len(sent)
    wait_until(lambda: len(mqtt_messages.messages) >= len(sent), 10, what="MQTT fan-out")
    mqtt_keys = [m["key"] for _, m in mqtt_messages.messages]
    assert sorted(mqtt_keys) == sorted(keys.values())  # once each on MQTT
    wait_until(lambda: set(smtp_sink.alert_keys()) >= set(keys.values()), timeout, 0.2, "every alert by e-mail")
    assert set(smtp_sink.alert_keys()) == set(keys.values())
    return query(store, "SELECT max(attempts) FROM {s}.alert_deliveries")[0][0]


@pytest.mark.slow
def test_alertmanager_down_10s_while_streaming(tmp_path, alertmanager, receiver, store, smtp_sink, mqtt_messages):
    ob = Outbox(tmp_path / "ob.db", AlertmanagerClient(alertmanager.url, timeout=1), max_backoff=1.0)
    prod = Producer(ob, 90, 1 / 6)  # 15 s of alerts
    prod.start()
    time.sleep(2.5)
    alertmanager.stop()  # SIGTERM: its in-memory alerts are gone; silences/notification log persist
    down_at = time.monotonic()
    wait_until(lambda: ob.depth() > 0 and ob.failures > 0, 5, what="the outbox noticing the outage")
    time.sleep(10 - (time.monotonic() - down_at))
    queued = ob.depth()
    alertmanager.start()
    prod.join(30)
    assert ob.flush(30)
    assert queued >= 40  # ~10 s x 6 alerts/s waited in the outbox
    assert ob.resends >= 1  # the firing set was re-posted to the restarted Alertmanager
    assert_exactly_once(store, smtp_sink, mqtt_messages, prod.sent)
    ob.close()


@pytest.mark.slow
def test_webhook_receiver_down_10s_while_streaming(tmp_path, alertmanager, receiver, store, smtp_sink, mqtt_messages):
    ob = Outbox(tmp_path / "ob.db", AlertmanagerClient(alertmanager.url))
    prod = Producer(ob, 90, 1 / 6)
    prod.start()
    time.sleep(2.5)
    host, port = receiver.server.server_address[:2]
    receiver.stop()  # the port refuses connections: Alertmanager's webhooks fail and are retried
    time.sleep(10)
    during = query(store, "SELECT count(*) FROM {s}.alerts")[0][0]
    back = WebhookReceiver(store, receiver.fanout, host, port).start()
    try:
        prod.join(30)
        assert ob.flush(10)
        assert during < 30  # only what arrived before the stop
        assert_exactly_once(store, smtp_sink, mqtt_messages, prod.sent)
    finally:
        back.stop()
        ob.close()


def test_outbox_process_sigkilled_while_streaming(tmp_path, alertmanager, receiver, store, smtp_sink, mqtt_messages):
    """A producer process streams into its outbox (draining to Alertmanager) and is SIGKILLed mid-stream;
    a new outbox on the same file delivers the rest."""
    db = tmp_path / "ob.db"
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r}); sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_bridge_delivery_faults import stream_alert
        from streaming_bridge.am_client import AlertmanagerClient
        from streaming_bridge.outbox import Outbox
        ob = Outbox({str(db)!r}, AlertmanagerClient({alertmanager.url!r}), batch_size=5)
        for k in range(1000):
            ob.submit([stream_alert(k)])
            print(k, flush=True)
            time.sleep(0.01)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    reported = []
    try:
        while len(reported) < 60:
            reported.append(int(p.stdout.readline()))
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        reported += [int(x) for x in p.stdout.read().split()]
    finally:
        p.kill()
    left = Outbox(db, AlertmanagerClient(alertmanager.url), start=False).depth()
    ob = Outbox(db, AlertmanagerClient(alertmanager.url))
    assert ob.flush(10)
    ob.close()

    # committed by the killed process: every reported submit, and maybe the one between its commit and print
    def sev(k):
        return stream_alert(k).severity

    sent = {stream_alert(k).labels["asset_id"]: (sev(k), None) for k in range(max(reported) + 1)}
    time.sleep(2)
    extra = stream_alert(max(reported) + 1).labels["asset_id"]
    if query(store, "SELECT 1 FROM {s}.alerts WHERE asset_id = %s", (extra,)):
        sent[extra] = (sev(max(reported) + 1), None)
    assert_exactly_once(store, smtp_sink, mqtt_messages, sent)
    print(f"rows left in the killed process's outbox: {left}")


class StallingProxy:
    """A TCP proxy in front of the webhook receiver. While stalled it accepts connections and holds them unanswered
    (a receiver too slow to answer: Alertmanager's notification times out after max(group_interval, 10 s) with
    "context deadline exceeded"), then closes them unforwarded when the stall ends; afterwards it forwards."""

    def __init__(self, target_port: int):
        import socket

        self.target = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stalled = threading.Event()
        self.held = 0
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket

        while not self._closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.stalled.is_set():
                self.held += 1
                threading.Thread(target=self._hold, args=(c,), daemon=True).start()
                continue
            up = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((c, up), (up, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _hold(self, c):
        while self.stalled.is_set():
            time.sleep(0.05)
        c.close()

    @staticmethod
    def _pipe(a, b):
        import socket

        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._closing = True
        self.stalled.clear()
        self.sock.close()


@pytest.mark.slow
def test_a_stalled_receiver_loses_nothing_once_resolves_wait_for_the_receivers_confirmation(
    tmp_path, receiver, store, smtp_sink, mqtt_prefix
):
    """The loss `make bench-bridge` saw under heavy load, reproduced: the receiver does not answer for 13 s, so
    Alertmanager's first notification of a new critical alert fails ("context deadline exceeded", 10 s). An outbox
    that releases the resolve min_firing_s after the firing was accepted hands Alertmanager a group holding only
    a resolved alert with no notification-log entry: it is dropped, and no receiver ever hears of the condition.
    An outbox that also waits for the receiver's confirmation (the receiver's MQTT message for the stored firing
    state, Outbox.confirm_message) releases the resolve only after the retried firing notification got through:
    firing and resolved reach every routed receiver."""
    import paho.mqtt.client as mqtt
    from bridge_delivery_helpers import TEST_CAP, now

    from streaming_bridge.amproc import AlertmanagerProcess, render_config, write_config

    proxy = StallingProxy(receiver.server.server_address[1])
    cfg = render_config(webhook_base=proxy.url, smarthost=f"127.0.0.1:{smtp_sink.port}", cap=TEST_CAP)
    am = AlertmanagerProcess(write_config(cfg, tmp_path / "am.yml"), storage_dir=tmp_path / "am-data")
    am.start()
    old = Outbox(tmp_path / "old.db", AlertmanagerClient(am.url), min_firing_s=1.5)  # resolves wait min_firing_s only
    new = Outbox(tmp_path / "new.db", AlertmanagerClient(am.url), min_firing_s=1.5, confirm_timeout_s=60)
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"confirm-{tmp_path.name[-12:]}")
    sub.on_connect = lambda c, *a: c.subscribe(f"{mqtt_prefix}/+", qos=1)
    sub.on_message = lambda c, u, m: new.confirm_message(m.payload)
    subacked = threading.Event()
    sub.on_subscribe = lambda *a: subacked.set()
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    assert subacked.wait(10), "the confirmation subscription was not acknowledged"  # readiness, not a sleep
    try:
        lost, kept = make_alert(1, transformer="TX-1"), make_alert(2, transformer="TX-2")
        proxy.stalled.set()
        old.submit([lost])
        new.submit([kept])
        time.sleep(0.3)
        old.submit([lost.resolve(now())])  # a short incident: resolved by its next sample
        new.submit([kept.resolve(now())])
        assert old.flush(10)  # the resolve went 1.5 s after the firing was accepted
        time.sleep(13 - 1.5)
        assert new.depth() == 1  # its resolve still held: no receiver has the firing yet
        held = proxy.held
        proxy.stalled.clear()
        assert held >= 1  # Alertmanager did try to notify while stalled

        def rows():
            return set(
                query(
                    store,
                    "SELECT d.receiver, a.asset_id, d.status FROM {s}.alert_deliveries d JOIN {s}.alerts a USING (fingerprint, starts_at, status)",
                )
            )

        want = {(r, "TR-2", s) for r in ("bridge", "pager", "chat") for s in ("firing", "resolved")}
        wait_until(lambda: rows() >= want, 40, 0.2, "firing and resolved of the confirmed incident at every receiver")
        assert new.flush(5)
        time.sleep(3)  # a few group intervals: anything of the old outbox's incident would arrive now
        assert rows() == want  # the incident whose resolve did not wait is lost: the mechanism, reproduced
    finally:
        sub.loop_stop()
        sub.disconnect()
        old.close(0)
        new.close(0)
        am.close()
        proxy.close()
