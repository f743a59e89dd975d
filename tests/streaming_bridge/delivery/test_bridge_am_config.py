"""The repository's Alertmanager config: valid for Alertmanager 0.25 (amtool), routes by severity as
utilities do, and renders safely for private test instances."""

from __future__ import annotations

import pytest
import yaml

from streaming_bridge.amproc import (
    REPO_CONFIG,
    AlertmanagerProcess,
    check_config,
    parse_duration,
    render_config,
    route_receivers,
    write_config,
)


def test_repo_config_passes_amtool_check_config():
    out = check_config(REPO_CONFIG)
    assert "SUCCESS" in out and "4 receivers" in out and "2 inhibit rules" in out


def test_amtool_check_config_catches_a_broken_config(tmp_path):
    cfg = render_config()
    cfg["route"]["routes"][0]["receiver"] = "no-such-receiver"
    with pytest.raises(ValueError, match="no-such-receiver"):
        check_config(write_config(cfg, tmp_path / "bad.yml"))


@pytest.mark.parametrize(
    "severity, receivers",
    [
        ("critical", ["bridge", "pager", "chat", "email"]),
        ("warning", ["bridge", "chat", "email"]),
        ("info", ["bridge", "email"]),
    ],
)
def test_severity_routing_tree(severity, receivers):
    labels = {"alertname": "TransformerHotSpot", "severity": severity, "asset_type": "transformer", "asset_id": "TX-1"}
    assert route_receivers(REPO_CONFIG, labels) == receivers


def test_critical_routes_do_not_wait_and_others_leave_an_inhibition_window():
    cfg = yaml.safe_load(REPO_CONFIG.read_text())
    bridge, pager, chat, _email = cfg["route"]["routes"]
    assert parse_duration(pager["group_wait"]) == 0
    assert parse_duration(bridge["routes"][0]["group_wait"]) == 0 and bridge["routes"][0]["matchers"] == [
        'severity="critical"'
    ]
    assert parse_duration(chat["routes"][0]["group_wait"]) == 0
    assert parse_duration(bridge["group_wait"]) >= 5 and parse_duration(chat["group_wait"]) >= 5
    outage = cfg["inhibit_rules"][0]
    assert outage["source_matchers"] == ['alertname="TransformerOutage"'] and outage["equal"] == ["transformer"]


def test_render_config_replaces_addresses_and_caps_timings(tmp_path):
    cfg = render_config(
        webhook_base="http://127.0.0.1:45678",
        smarthost="127.0.0.1:2626",
        cap={"group_wait": "1s", "group_interval": "1s"},
    )
    urls = [w["url"] for r in cfg["receivers"] for w in r.get("webhook_configs", [])]
    assert urls == [
        "http://127.0.0.1:45678/hook/bridge",
        "http://127.0.0.1:45678/hook/pager",
        "http://127.0.0.1:45678/hook/chat",
    ]
    assert cfg["global"]["smtp_smarthost"] == "127.0.0.1:2626"
    assert cfg["route"]["group_wait"] == "1s" and cfg["route"]["routes"][0]["group_wait"] == "1s"
    assert cfg["route"]["routes"][1]["group_wait"] == "0s"  # the critical 0 s stays
    assert cfg["route"]["repeat_interval"] == "4h"  # not capped
    check_config(write_config(cfg, tmp_path / "am.yml"))


@pytest.mark.parametrize(
    "kw",
    [
        {"webhook_base": "ftp://127.0.0.1:1/x"},
        {"webhook_base": "http://127.0.0.1"},  # no port
        {"webhook_base": "http://127.0.0.1:80/?a=1"},
        {"smarthost": "127.0.0.1:25\nsmtp_from: evil"},
        {"cap": {"group_wait": "soon"}},
        {"cap": {"resolve_timeout": "1s"}},
    ],
)
def test_render_config_rejects_unsafe_values(kw):
    with pytest.raises(ValueError):
        render_config(**kw)


def test_parse_duration():
    assert parse_duration("0s") == 0 and parse_duration("1h30m") == 5400 and parse_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        parse_duration("")


def test_private_instance_starts_restarts_on_same_port_and_keeps_silences(tmp_path):
    from datetime import timedelta

    from streaming_bridge.am_client import AlertmanagerClient

    am = AlertmanagerProcess(write_config(render_config(), tmp_path / "am.yml"), storage_dir=tmp_path / "data")
    with am:
        c = AlertmanagerClient(am.url)
        sid = c.create_silence(["asset_id=TX-9"], duration=timedelta(hours=1), comment="maintenance")
        port = am.port
        am.stop()
        assert not c.ready()
        am.start()
        assert am.port == port and c.ready()
        assert [s.id for s in c.silences()] == [sid]
