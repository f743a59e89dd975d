"""``silence add|list|expire`` against a real Alertmanager: a silence mutes delivery, expiring it releases it."""

from __future__ import annotations

import json
import time

import pytest
from bridge_delivery_helpers import make_alert, query, wait_until

from streaming_bridge.am_client import AlertmanagerClient
from streaming_bridge.silences import main

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _delivered(store) -> set[str]:
    return {r[0] for r in query(store, "SELECT asset_id FROM {s}.alerts WHERE status = 'firing'")}


def test_silence_add_list_expire_mutes_and_releases_delivery(capsys, alertmanager, receiver, store):
    url = ["--alertmanager-url", alertmanager.url]
    rc, sid, _ = _cli(
        capsys,
        *url,
        "add",
        "asset_id=TR-1",
        'alertname=~"Transformer.*"',
        "--duration",
        "2h",
        "--comment",
        "crew on site",
        "--author",
        "op1",
    )
    sid = sid.strip()
    assert rc == 0 and len(sid) == 36

    rc, out, _ = _cli(capsys, *url, "list", "--json")
    [s] = json.loads(out)
    assert (
        rc == 0
        and s["id"] == sid
        and s["state"] == "active"
        and s["created_by"] == "op1"
        and s["comment"] == "crew on site"
    )
    assert sorted(s["matchers"]) == ['alertname=~"Transformer.*"', 'asset_id="TR-1"']
    rc, out, _ = _cli(capsys, *url, "list", "--filter", "asset_id=TR-1")
    assert sid in out and "crew on site" in out

    AlertmanagerClient(alertmanager.url).post_alerts([make_alert(1), make_alert(2)])
    wait_until(lambda: "TR-2" in _delivered(store), 10, what="the unsilenced alert")
    time.sleep(1.5)  # a group flush (capped group_interval 1 s) later, TR-1 is still muted
    assert _delivered(store) == {"TR-2"}

    rc, out, _ = _cli(capsys, *url, "expire", sid)
    assert rc == 0 and out.strip() == f"expired {sid}"
    wait_until(lambda: _delivered(store) == {"TR-1", "TR-2"}, 10, what="delivery after the silence expired")
    rc, out, _ = _cli(capsys, *url, "list")
    assert out.strip() == "no silences"
    rc, out, _ = _cli(capsys, *url, "list", "--expired", "--json")
    assert json.loads(out)[0]["state"] == "expired"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["add", "severity=", "--comment", "x"], "empty value"),
        (["expire", "not-an-id"], "not a UUID"),
        (["add", "asset_id=TR-1", "--comment", " "], "needs a comment"),
    ],
)
def test_silence_errors_are_one_line_messages(capsys, alertmanager, argv, message):
    rc, _, err = _cli(capsys, "--alertmanager-url", alertmanager.url, *argv)
    assert rc == 1 and message in err and "Traceback" not in err


def test_silence_bad_times_are_rejected_by_the_parser(capsys):
    for argv in (
        ["add", "a=b", "--comment", "c", "--duration", "soon"],
        ["add", "a=b", "--comment", "c", "--until", "2026-12-02T18:00"],
    ):
        with pytest.raises(SystemExit):
            main(argv)
    assert "no UTC offset" in capsys.readouterr().err


def test_silence_reports_an_unreachable_alertmanager(capsys):
    rc, _, err = _cli(capsys, "--alertmanager-url", "http://127.0.0.1:9", "list")
    assert rc == 1 and "unreachable" in err
