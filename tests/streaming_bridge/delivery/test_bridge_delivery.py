"""Delivery end to end on real components: outbox (SQLite) -> Alertmanager 0.25 -> webhook receiver ->
PostgreSQL alerts table + MQTT per severity, and e-mail through Alertmanager's SMTP to an aiosmtpd sink."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta

import pytest
import requests
from bridge_delivery_helpers import make_alert, now, query, wait_until

from streaming_bridge.alerts import Alert
from streaming_bridge.am_client import (
    AlertmanagerClient,
    AlertmanagerError,
    parse_matcher,
)
from streaming_bridge.amproc import AlertmanagerProcess
from streaming_bridge.outbox import Outbox
from streaming_bridge.receiver import alert_key

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt]


def _deliveries(store) -> set[tuple[str, str, str]]:
    return {(r, f, s) for r, f, s in query(store, "SELECT receiver, fingerprint, status FROM {s}.alert_deliveries")}


def _fp(am_alerts: list[dict], asset_id: str) -> str:
    return next(a["fingerprint"] for a in am_alerts if a["labels"]["asset_id"] == asset_id)


# ---------------------------------------------------------------------------------------------------------
# client
# ---------------------------------------------------------------------------------------------------------
def test_client_posts_resolves_and_silences(alertmanager):
    c = AlertmanagerClient(alertmanager.url)
    a, b = make_alert(1), make_alert(2, severity="warning", alertname="VoltageLow", asset_type="meter")
    c.post_alerts([a, b])
    active = c.alerts()
    assert sorted(x["labels"]["asset_id"] for x in active) == ["ME-2", "TR-1"]
    assert c.alerts(filters=["severity=critical"])[0]["annotations"]["value"] == "131.2"

    sid = c.create_silence(
        ['alertname="VoltageLow"', "asset_id=~ME-.*"],
        duration=timedelta(minutes=30),
        comment="crew on site",
        created_by="test",
    )
    [s] = c.silences()
    assert (
        s.id == sid and s.state == "active" and s.comment == "crew on site" and 'alertname="VoltageLow"' in s.matchers
    )
    wait_until(
        lambda: c.alerts(filters=["asset_id=ME-2"])[0]["status"]["state"] == "suppressed", 5, what="silenced state"
    )
    assert c.alerts(filters=["asset_id=ME-2"], silenced=False) == []
    c.expire_silence(sid)
    assert c.silences() == [] and c.silences(include_expired=True)[0].state == "expired"

    c.post_alerts([a.resolve(now())])
    assert [x["labels"]["asset_id"] for x in c.alerts()] == ["ME-2"]


def test_client_errors_are_clear(alertmanager, tmp_path):
    c = AlertmanagerClient(alertmanager.url)
    with pytest.raises(ValueError, match="not a UUID"):
        c.expire_silence("../../alerts")
    with pytest.raises(ValueError, match="empty value"):
        parse_matcher("severity=")
    with pytest.raises(ValueError, match="comment"):
        c.create_silence(["severity=info"], duration=timedelta(hours=1))
    bad = make_alert(3)
    bad = Alert(bad.labels, bad.annotations, bad.starts_at, bad.starts_at - timedelta(hours=1))
    with pytest.raises(AlertmanagerError) as e:
        c.post_alerts([bad])
    assert e.value.status == 400 and not e.value.retryable and "start time must be before end time" in str(e.value)
    down = AlertmanagerClient(f"http://127.0.0.1:{AlertmanagerProcess(alertmanager.config_path).port}", timeout=1)
    with pytest.raises(AlertmanagerError) as e:
        down.post_alerts([make_alert(4)])
    assert e.value.status is None and e.value.retryable


def test_post_alerts_reuses_its_connection_and_survives_an_alertmanager_restart(alertmanager):
    """post_alerts keeps one HTTP connection per thread: when Alertmanager restarts, the dead kept-alive connection
    is noticed and replaced (the POST goes through); while it is down the error is retryable."""
    c = AlertmanagerClient(alertmanager.url)
    c.post_alerts([make_alert(11)])
    c.post_alerts([json.dumps(make_alert(12).to_alertmanager())])  # the outbox's stored JSON text
    conn = c._lean.conn
    c.post_alerts([make_alert(13)])
    assert c._lean.conn is conn  # kept alive, not re-opened per POST
    alertmanager.stop()
    alertmanager.start()  # the kept-alive connection is now dead
    c.post_alerts([make_alert(14)])
    assert c._lean.conn is not conn
    assert make_alert(14).labels["asset_id"] in {x["labels"]["asset_id"] for x in c.alerts()}
    alertmanager.stop()
    with pytest.raises(AlertmanagerError) as e:
        c.post_alerts([make_alert(15)])
    assert e.value.status is None and e.value.retryable


# ---------------------------------------------------------------------------------------------------------
# receiver alone
# ---------------------------------------------------------------------------------------------------------
def _notification(receiver: str, alerts: list[dict]) -> dict:
    return {"version": "4", "receiver": receiver, "status": "firing", "groupKey": "{}:{}", "alerts": alerts}


def _am_alert(
    fp: str, status: str = "firing", severity: str = "critical", starts="2026-12-02T12:00:00.123456789Z"
) -> dict:
    return {
        "status": status,
        "labels": {
            "alertname": "TransformerHotSpot",
            "severity": severity,
            "asset_type": "transformer",
            "asset_id": "TX-7",
            "transformer": "TX-7",
        },
        "annotations": {"summary": "hot"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-02T12:05:00Z",
        "generatorURL": "http://dagster/assets/TX-7",
        "fingerprint": fp,
    }


def test_receiver_is_idempotent_on_fingerprint_startsat_status(receiver, store, mqtt_messages, mqtt_prefix):
    body = _notification("pager", [_am_alert("a1b2c3"), _am_alert("d4e5f6", severity="warning")])
    for _ in range(3):  # Alertmanager retrying / repeating the same notification
        assert requests.post(f"{receiver.url}/hook/pager", json=body, timeout=5).status_code == 200
    assert requests.post(f"{receiver.url}/hook/bridge", json=body, timeout=5).status_code == 200
    rows = query(
        store,
        "SELECT fingerprint, status, severity, transformer, starts_at, mqtt_published_at IS NOT NULL FROM {s}.alerts ORDER BY 1",
    )
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in rows] == [
        ("a1b2c3", "firing", "critical", "TX-7", True),
        ("d4e5f6", "firing", "warning", "TX-7", True),
    ]
    assert rows[0][4].isoformat() == "2026-12-02T12:00:00.123456+00:00"
    att = query(store, "SELECT receiver, fingerprint, attempts FROM {s}.alert_deliveries ORDER BY 1, 2")
    assert att == [("bridge", "a1b2c3", 1), ("bridge", "d4e5f6", 1), ("pager", "a1b2c3", 3), ("pager", "d4e5f6", 3)]
    wait_until(lambda: len(mqtt_messages.messages) >= 2, 5, what="MQTT messages")
    time.sleep(0.3)
    assert sorted((t, m["fingerprint"]) for t, m in mqtt_messages.messages) == [
        (f"{mqtt_prefix}/critical", "a1b2c3"),
        (f"{mqtt_prefix}/warning", "d4e5f6"),
    ]
    # the resolved state is a new key: stored and published once more
    assert (
        requests.post(
            f"{receiver.url}/hook/bridge", json=_notification("bridge", [_am_alert("a1b2c3", "resolved")]), timeout=5
        ).status_code
        == 200
    )
    assert query(store, "SELECT count(*) FROM {s}.alerts WHERE fingerprint = 'a1b2c3'") == [(2,)]
    wait_until(lambda: len(mqtt_messages.messages) == 3, 5, what="resolved MQTT message")
    topic, msg = mqtt_messages.messages[-1]
    assert (
        topic == f"{mqtt_prefix}/critical"
        and msg["status"] == "resolved"
        and msg["endsAt"].startswith("2026-12-02T12:05:00")
    )


def test_receiver_group_commits_concurrent_notifications_exactly_once(receiver, store, mqtt_messages, mqtt_prefix):
    """Alertmanager posts many notifications at once (one group per alert on the bridge route). The receiver's
    committing thread stores what queued meanwhile in one transaction; every request still gets its 200 only
    after its rows are committed, each key once in ``alerts`` and on MQTT, each send counted in ``attempts``."""
    from concurrent.futures import ThreadPoolExecutor

    fps = [f"{i:04x}aa" for i in range(60)]
    bodies = [("bridge", _notification("bridge", [_am_alert(fp)])) for fp in fps] + [
        ("pager", _notification("pager", [_am_alert(fp)])) for fp in fps[:30]
    ]
    bodies += bodies[:10]  # Alertmanager retrying some of them concurrently with the first sends

    def post(rb):
        return requests.post(f"{receiver.url}/hook/{rb[0]}", json=rb[1], timeout=30).status_code

    with ThreadPoolExecutor(40) as ex:
        assert set(ex.map(post, bodies)) == {200}
    assert query(store, "SELECT count(*), count(mqtt_published_at) FROM {s}.alerts") == [(60, 60)]
    att = {(r, f): n for r, f, n in query(store, "SELECT receiver, fingerprint, attempts FROM {s}.alert_deliveries")}
    assert len(att) == 90 and sum(att.values()) == len(bodies)
    assert all(att[("bridge", fp)] == (2 if i < 10 else 1) for i, fp in enumerate(fps))
    assert receiver.commit.stored == len(bodies) and receiver.commit.batches <= len(bodies)
    wait_until(lambda: len(mqtt_messages.messages) >= 60, 10, what="MQTT fan-out")
    time.sleep(0.3)
    assert sorted(m["fingerprint"] for _, m in mqtt_messages.messages) == sorted(fps)


def test_outbox_holds_a_resolve_until_the_receiver_confirms_the_firing(tmp_path):
    """With confirm_timeout_s, a resolve waits (beyond min_firing_s) for the receiver's confirmation of the
    firing notification (its MQTT message, as the receiver publishes it), or for the timeout."""
    ob = Outbox(
        tmp_path / "ob.db",
        AlertmanagerClient("http://127.0.0.1:9", timeout=0.2),
        start=False,
        min_firing_s=0,
        confirm_timeout_s=30,
    )
    a, b = make_alert(1), make_alert(2)
    ob.submit([a, b])
    rows = ob._batch()
    ob._delete([r[0] for r in rows], [json.loads(r[1]) for r in rows])  # as if Alertmanager accepted both
    ob.submit([a.resolve(now()), b.resolve(now())])
    assert ob._batch() == [] and ob._next_due is not None and ob._next_due > time.time() + 25
    starts = datetime.fromisoformat(json.loads(rows[0][1])["startsAt"].replace("Z", "+00:00"))
    receiver_msg = {
        "key": "x",
        "status": "firing",
        "startsAt": starts.isoformat(),
        "labels": dict(a.labels),
    }  # PostgreSQL's isoformat
    assert not ob.confirm_message(json.dumps({**receiver_msg, "status": "resolved"}).encode())
    assert not ob.confirm_message(b"not json")
    assert not ob.confirm_message(json.dumps({**receiver_msg, "startsAt": None}).encode())
    assert ob.confirm_message(json.dumps(receiver_msg).encode())
    released = [json.loads(p)["labels"]["asset_id"] for _, p, _ in ob._batch()]
    assert released == ["TR-1"]  # b still waits: no confirmation
    ob.confirm_timeout_s = 0.2  # nobody ever confirms b (silenced, inhibited): it goes after the timeout
    time.sleep(0.25)
    assert [json.loads(p)["labels"]["asset_id"] for _, p, _ in ob._batch()] == ["TR-1", "TR-2"]
    ob.close(0)


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"not json", "not JSON"),
        (b'{"alerts": 3}', "no 'alerts' list"),
        (json.dumps(_notification("x", [{**_am_alert("abc"), "status": "open"}])).encode(), "alerts[0].status"),
        (
            json.dumps(_notification("x", [{**_am_alert("abc"), "fingerprint": "'; DROP TABLE alerts; --"}])).encode(),
            "alerts[0].fingerprint",
        ),
        (
            json.dumps(_notification("x", [_am_alert("abc"), {**_am_alert("abd"), "startsAt": "yesterday"}])).encode(),
            "alerts[1].startsAt",
        ),
        (
            json.dumps(_notification("x", [{**_am_alert("abc"), "labels": {"alertname": 5}}])).encode(),
            "alerts[0].labels",
        ),
    ],
)
def test_receiver_rejects_malformed_notifications_with_a_reason(receiver, store, body, reason):
    r = requests.post(f"{receiver.url}/hook/bridge", data=body, timeout=5)
    assert r.status_code == 400 and reason in r.text
    assert query(store, "SELECT count(*) FROM {s}.alerts") == [(0,)]


def test_receiver_health_and_unknown_paths(receiver):
    assert requests.get(f"{receiver.url}/healthz", timeout=5).text == "ok"
    assert requests.post(f"{receiver.url}/hook/../etc", json={}, timeout=5).status_code == 404


# ---------------------------------------------------------------------------------------------------------
# the whole delivery path
# ---------------------------------------------------------------------------------------------------------
def test_outbox_to_every_receiver_by_severity_with_resolve(
    tmp_path, alertmanager, receiver, store, smtp_sink, mqtt_messages, mqtt_prefix
):
    crit = make_alert(1, transformer="TX-1", feeder="F-1", region="north")
    warn = make_alert(2, severity="warning", alertname="VoltageLow", asset_type="meter", transformer="TX-1")
    info = make_alert(3, severity="info", alertname="MeterOffline", asset_type="meter")
    ob = Outbox(tmp_path / "outbox.db", AlertmanagerClient(alertmanager.url))
    t0 = time.monotonic()
    ob.submit([crit, warn, info])
    assert ob.flush(10) and ob.depth() == 0 and ob.posted == 3
    fps = {
        a.labels["asset_id"]: _fp(AlertmanagerClient(alertmanager.url).alerts(), a.labels["asset_id"])
        for a in (crit, warn, info)
    }
    c, w, i = fps["TR-1"], fps["ME-2"], fps["ME-3"]
    want = {
        ("bridge", c, "firing"),
        ("pager", c, "firing"),
        ("chat", c, "firing"),
        ("bridge", w, "firing"),
        ("chat", w, "firing"),
        ("bridge", i, "firing"),
    }
    wait_until(lambda: ("pager", c, "firing") in _deliveries(store), 5, 0.005, "the page")
    page_s = time.monotonic() - t0
    wait_until(lambda: _deliveries(store) == want, 15, what="webhook deliveries by severity")
    assert page_s < 1.0, f"critical page took {page_s:.3f} s"
    row = query(
        store,
        "SELECT alertname, severity, asset_id, transformer, feeder, region, annotations FROM {s}.alerts WHERE fingerprint = %s",
        (c,),
    )
    assert (
        row[0][:6] == ("TransformerHotSpot", "critical", "TR-1", "TX-1", "F-1", "north")
        and json.loads(row[0][6])["limit"] == "120"
    )

    keys = {alert_key(f, a.starts_at, "firing") for f, a in zip((c, w, i), (crit, warn, info))}
    wait_until(lambda: set(smtp_sink.alert_keys()) == keys, 15, what="the e-mail with all three alerts")
    assert sorted(smtp_sink.alert_keys()) == sorted(keys)  # each alert once in e-mail
    assert smtp_sink.messages[0]["To"] == "grid-operations@localhost" and "FIRING" in smtp_sink.messages[0]["Subject"]
    wait_until(lambda: len(mqtt_messages.messages) == 3, 5, what="MQTT fan-out")
    assert sorted((t.rsplit("/", 1)[1], m["key"]) for t, m in mqtt_messages.messages) == sorted(
        [
            ("critical", alert_key(c, crit.starts_at, "firing")),
            ("warning", alert_key(w, warn.starts_at, "firing")),
            ("info", alert_key(i, info.starts_at, "firing")),
        ]
    )

    end = now()
    ob.submit([crit.resolve(end), warn.resolve(end), info.resolve(end)])
    resolved = {(r, f, "resolved") for r, f, _ in want}
    wait_until(lambda: _deliveries(store) == want | resolved, 20, what="resolved notifications")
    wait_until(lambda: len(mqtt_messages.messages) == 6, 5, what="resolved on MQTT")
    assert query(store, "SELECT status, count(*) FROM {s}.alerts GROUP BY 1 ORDER BY 1") == [
        ("firing", 3),
        ("resolved", 3),
    ]
    assert query(store, "SELECT max(attempts) FROM {s}.alert_deliveries") == [(1,)]
    wait_until(
        lambda: sum(k.endswith("/resolved") for k in smtp_sink.alert_keys()) == 3, 15, what="the resolved e-mail"
    )
    ob.close()


def test_inhibition_transformer_outage_mutes_meters_beneath(tmp_path, alertmanager, receiver, store):
    """Outage posted with (here: just after) the meter alerts, within the warning routes' group_wait."""
    c = AlertmanagerClient(alertmanager.url)
    meters = [
        make_alert(10 + k, severity="warning", alertname="VoltageLow", asset_type="meter", transformer="TX-5")
        for k in range(3)
    ]
    other = make_alert(20, severity="warning", alertname="VoltageLow", asset_type="meter", transformer="TX-6")
    c.post_alerts(meters + [other])
    c.post_alerts([make_alert(5, alertname="TransformerOutage", transformer="TX-5")])
    wait_until(
        lambda: {r[0] for r in query(store, "SELECT asset_id FROM {s}.alerts")} >= {"TR-5", "ME-20"},
        10,
        what="outage + other meter",
    )
    time.sleep(2.5)  # past the (capped) group_wait of the warning routes
    assert {r[0] for r in query(store, "SELECT asset_id FROM {s}.alerts")} == {"TR-5", "ME-20"}
    states = {a["labels"]["asset_id"]: a["status"] for a in c.alerts()}
    assert (
        states["ME-10"]["state"] == "suppressed"
        and states["ME-10"]["inhibitedBy"]
        and states["ME-20"]["state"] == "active"
    )


# ---------------------------------------------------------------------------------------------------------
# outbox durability
# ---------------------------------------------------------------------------------------------------------
def test_outbox_holds_alerts_through_an_alertmanager_outage(tmp_path, am_config):
    am = AlertmanagerProcess(am_config, storage_dir=tmp_path / "am")  # port reserved, not started
    ob = Outbox(tmp_path / "ob.db", AlertmanagerClient(am.url, timeout=1), min_backoff=0.05, max_backoff=0.5)
    try:
        ob.submit([make_alert(k) for k in range(5)])
        wait_until(lambda: ob.failures >= 2, 5, what="failed attempts")
        assert ob.depth() == 5 and "unreachable" in ob.last_error
        am.start()
        assert ob.flush(10)
        assert sorted(a["labels"]["asset_id"] for a in AlertmanagerClient(am.url).alerts()) == [
            f"TR-{k}" for k in range(5)
        ]
    finally:
        ob.close(0)
        am.close()


def test_outbox_survives_a_crash_of_its_process(tmp_path, am_config):
    am = AlertmanagerProcess(am_config, storage_dir=tmp_path / "am")  # down while the producer runs
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r}); sys.path.insert(0, {os.path.dirname(__file__)!r})
        from bridge_delivery_helpers import make_alert
        from streaming_bridge.am_client import AlertmanagerClient
        from streaming_bridge.outbox import Outbox
        ob = Outbox({str(tmp_path / "ob.db")!r}, AlertmanagerClient({am.url!r}, timeout=1))
        for k in range(20):
            ob.submit([make_alert(k)])
        print("submitted", ob.depth(), flush=True)
        time.sleep(60)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().split() == ["submitted", "20"]
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        p.kill()
    am.start()
    try:
        ob = Outbox(tmp_path / "ob.db", AlertmanagerClient(am.url))
        assert ob.flush(10) and ob.posted == 20
        assert len(AlertmanagerClient(am.url).alerts()) == 20
        ob.close()
    finally:
        am.close()


def test_outbox_sets_aside_alerts_alertmanager_rejects(tmp_path, alertmanager):
    good = [make_alert(k) for k in range(4)]
    bad = Alert(good[0].labels | {"asset_id": "TR-bad"}, {}, now(), now() - timedelta(minutes=1))
    ob = Outbox(tmp_path / "ob.db", AlertmanagerClient(alertmanager.url))
    ob.submit(good[:2] + [bad] + good[2:])
    assert ob.flush(10)
    [(payload, reason)] = ob.rejected()
    assert payload["labels"]["asset_id"] == "TR-bad" and "start time must be before end time" in reason
    assert sorted(a["labels"]["asset_id"] for a in AlertmanagerClient(alertmanager.url).alerts()) == [
        f"TR-{k}" for k in range(4)
    ]
    ob.close()


def test_outbox_keeps_the_firing_set_and_reposts_it(tmp_path, alertmanager):
    """Firing alerts stay in the active set until resolved or past endsAt; resend_active re-posts them, so an
    Alertmanager restarted empty learns them again."""
    c = AlertmanagerClient(alertmanager.url)
    ob = Outbox(tmp_path / "ob.db", c, resend_interval=3600)
    a, b, d = make_alert(1), make_alert(2), make_alert(3)
    short = Alert(d.labels, d.annotations, now(), now() + timedelta(seconds=1))  # a batch-style alert with endsAt
    ob.submit([a, b, short])
    assert ob.flush(5) and ob.active() == 3
    ob.submit([b.resolve(now())])
    assert ob.flush(ob.min_firing_s + 5) and ob.active() == 2  # the resolve waits until b fired min_firing_s ago
    time.sleep(1.1)
    alertmanager.stop()
    alertmanager.start()  # in-memory alerts gone
    assert c.alerts() == []
    assert ob.resend_active() == 1 and ob.active() == 1  # the expired batch-style alert is dropped
    assert ob.flush(5)
    [back] = c.alerts()
    assert back["labels"]["asset_id"] == "TR-1" and back["startsAt"].startswith(a.to_alertmanager()["startsAt"][:23])
    ob.close()


def test_outbox_keeps_one_startsat_per_incident(tmp_path):
    """Scoring may re-submit a firing alert with a fresh starts_at; the outbox keeps the first one until the
    alert resolves (the receivers' idempotency key), and a new incident after the resolve gets its own."""
    ob = Outbox(tmp_path / "ob.db", AlertmanagerClient("http://127.0.0.1:9", timeout=0.2), start=False)
    a = make_alert(1)
    first = Alert(a.labels, a.annotations, a.starts_at - timedelta(seconds=120))
    again = Alert(a.labels, a.annotations, a.starts_at - timedelta(seconds=90))
    ob.submit([first])
    ob.submit([again])
    ob.submit([again.resolve(a.starts_at - timedelta(seconds=60))])
    later = Alert(a.labels, a.annotations, a.starts_at - timedelta(seconds=30))
    ob.submit([later])
    with sqlite3.connect(tmp_path / "ob.db") as db:
        docs = [json.loads(p) for (p,) in db.execute("SELECT payload FROM outbox ORDER BY id")]
    starts = [d["startsAt"] for d in docs]
    t0 = first.to_alertmanager()["startsAt"]
    assert starts == [t0, t0, t0, later.to_alertmanager()["startsAt"]] and "endsAt" in docs[2]
    assert ob.active() == 1
    ob.close(0)


def test_a_condition_resolved_before_alertmanager_notified_it_is_not_lost(tmp_path, alertmanager, receiver, store):
    """Regression (bench-bridge lost 9 of 6,001 conditions): a condition that fires and resolves within one
    outbox batch reached Alertmanager as firing + resolved in one POST; Alertmanager's notification log had no
    entry for the new group, and its dedup stage sends nothing for a first flush holding only resolved alerts,
    so no receiver ever heard of it. The outbox holds a resolve back until the firing alert has been accepted
    for ``min_firing_s``: each receiver gets the firing notification, then the resolved one."""
    crit = make_alert(1, transformer="TX-1")
    warn = make_alert(2, severity="warning", alertname="VoltageLow", asset_type="meter", transformer="TX-2")
    ob = Outbox(tmp_path / "outbox.db", AlertmanagerClient(alertmanager.url), start=False, min_firing_s=1.5)
    ob.submit([crit, warn])
    ob.submit([crit.resolve(now()), warn.resolve(now())])  # resolved before anything was posted
    ob.start()
    assert ob.flush(10) and ob.depth() == 0

    def rows():
        return set(
            query(
                store,
                "SELECT d.receiver, a.asset_id, d.status FROM {s}.alert_deliveries d JOIN {s}.alerts a USING (fingerprint, starts_at, status)",
            )
        )

    want = {(r, "TR-1", s) for r in ("bridge", "pager", "chat") for s in ("firing", "resolved")} | {
        (r, "ME-2", s) for r in ("bridge", "chat") for s in ("firing", "resolved")
    }
    wait_until(lambda: rows() == want, 20, what="firing and resolved notifications per receiver")
    ob.close()


def test_outbox_posts_fresh_alerts_before_the_reposted_firing_set(tmp_path):
    """The minute's re-post of the firing set (thousands of alerts in the bench) must not queue new detections
    behind it; a fresh alert for a label set supersedes that label set's waiting re-post (order per alert kept)."""
    ob = Outbox(tmp_path / "ob.db", AlertmanagerClient("http://127.0.0.1:9", timeout=0.2), start=False)
    a, b, c = make_alert(1), make_alert(2), make_alert(3)
    ob.submit([a, b])
    assert ob.resend_active() == 0  # both still waiting: nothing to re-post
    with sqlite3.connect(tmp_path / "ob.db") as db:
        db.execute("DELETE FROM outbox")  # as if posted
    assert ob.resend_active() == 2
    ob.submit([c])
    ob.submit([a.resolve(now())])
    order = [(json.loads(p)["labels"]["asset_id"], "endsAt" in json.loads(p)) for _, p, _ in ob._batch()]
    assert order == [("TR-3", False), ("TR-1", True), ("TR-2", False)] and ob.depth() == 3
    ob.close(0)


def test_a_post_during_the_minutes_repost_takes_fresh_alerts_and_a_few_reposts(tmp_path):
    """With thousands of re-posts queued, each POST carries every fresh alert first and at most
    ``repost_batch_size`` re-posts, oldest first; the rest wait for the next POSTs (none is skipped)."""
    ob = Outbox(
        tmp_path / "ob.db", AlertmanagerClient("http://127.0.0.1:9", timeout=0.2), start=False, repost_batch_size=7
    )
    firing = [make_alert(i) for i in range(300)]
    ob.submit(firing)
    with sqlite3.connect(tmp_path / "ob.db") as db:
        db.execute("DELETE FROM outbox")  # as if posted
    assert ob.resend_active() == 300
    ob.submit([make_alert(1000), make_alert(1001)])
    first = [json.loads(p)["labels"]["asset_id"] for _, p, _ in ob._batch()]
    assert first == ["TR-1000", "TR-1001"] + [f"TR-{i}" for i in range(7)]
    seen = []
    while rows := ob._batch():
        seen += [json.loads(p)["labels"]["asset_id"] for _, p, _ in rows]
        assert len(rows) <= 7 or seen[:2] == ["TR-1000", "TR-1001"]
        ob._delete([r[0] for r in rows], [json.loads(p) for _, p, _ in rows])
    assert seen == ["TR-1000", "TR-1001"] + [f"TR-{i}" for i in range(300)] and ob.depth() == 0
    ob.close(0)
