"""Grid events: missed heartbeat window, last gasp, outage needs meters down together, alert storm
localised vs widespread."""

from __future__ import annotations

import datetime as dt

import polars as pl

from contracts import UTC_TS
from streaming_bridge.events import EventConfig, GridEvents
from streaming_bridge.ingress import StatusEvent
from streaming_bridge.topology import Topology

T0 = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)


def topo() -> Topology:
    meters = pl.DataFrame(
        {
            "meter_id": [f"M{i}" for i in range(10)],
            "customer_id": [f"C{i}" for i in range(10)],
            "transformer_id": ["TA"] * 5 + ["TB"] * 5,
            "feeder_id": ["F1"] * 5 + ["F2"] * 5,
            "substation_id": ["S1"] * 10,
        }
    )
    txs = pl.DataFrame(
        {
            "transformer_id": ["TA", "TB"],
            "feeder_id": ["F1", "F2"],
            "substation_id": ["S1", "S1"],
            "rating_kva": [50.0, 50.0],
        }
    )
    return Topology(meters, txs, dagster_url="http://dagster.example:3000")


def readings(meters: list[str], t: dt.datetime, recv: float, voltage: float | None = 231.0) -> dict[str, pl.DataFrame]:
    df = pl.DataFrame(
        {
            "meter_id": meters,
            "reading_time": [t] * len(meters),
            "consumption_kwh": [0.1] * len(meters),
            "demand_kw": [0.4] * len(meters),
            "voltage": [voltage] * len(meters),
            "current_amps": [1.0] * len(meters),
            "power_factor": [0.9] * len(meters),
            "_received_at": [recv] * len(meters),
        },
        schema_overrides={"voltage": pl.Float64},
    ).with_columns(pl.col("reading_time").cast(UTC_TS))
    return {"meter_readings": df}


def test_missed_heartbeat_window_marks_a_meter_offline_and_a_message_brings_it_back():
    ev = GridEvents(topo(), EventConfig(heartbeat_timeout_s=600, outage_fraction=0.6))
    r0 = T0.timestamp()
    assert ev.observe(readings([f"M{i}" for i in range(10)], T0, r0), []) == []
    assert ev.tick(r0 + 599) == []
    # M0 and M5 stay silent; the others report
    ev.observe(readings([f"M{i}" for i in range(10) if i not in (0, 5)], T0 + dt.timedelta(minutes=9), r0 + 540), [])
    out = ev.tick(r0 + 601)
    assert sorted(a.labels["asset_id"] for a in out) == ["M0", "M5"]
    assert all(a.labels["alertname"] == "MeterOffline" and "missed heartbeat" in a.annotations["summary"] for a in out)
    assert out[0].starts_at == dt.datetime.fromtimestamp(r0 + 600, dt.UTC)
    assert ev.tick(r0 + 700) == []  # once
    back = ev.observe(readings(["M0"], T0 + dt.timedelta(minutes=12), r0 + 720), [])
    assert [(a.labels["asset_id"], a.resolved) for a in back] == [("M0", True)]


def test_outage_needs_most_meters_beneath_down_together_and_names_the_impact():
    ev = GridEvents(topo(), EventConfig(outage_fraction=0.6, outage_clear_fraction=0.3))
    r0 = T0.timestamp()
    # two meters of TA lose supply (40 %): meter alerts only
    out = ev.observe(readings(["M0", "M1"], T0, r0, voltage=None), [])
    assert sorted(a.labels["alertname"] for a in out) == ["MeterSupplyLost", "MeterSupplyLost"]
    # a last gasp from a third: 60 % -> the transformer is out
    out = ev.observe({}, [StatusEvent("meter", "M2", "last_gasp", T0 + dt.timedelta(seconds=5))])
    outage = [a for a in out if a.labels["alertname"] == "TransformerOutage"]
    assert len(outage) == 1 and outage[0].labels["asset_id"] == "TA" and outage[0].labels["feeder"] == "F1"
    assert outage[0].annotations["customers_downstream"] == "5" and outage[0].severity == "critical"
    # meters of TB are unaffected
    assert not [a for a in out if a.labels.get("transformer") == "TB"]
    # two come back: 1 of 5 down (20 % < 30 %) -> resolved
    out = ev.observe(readings(["M0", "M1"], T0 + dt.timedelta(minutes=15), r0 + 900), [])
    assert ("TransformerOutage", True) in [(a.labels["alertname"], a.resolved) for a in out]


def test_alert_storm_localised_on_one_feeder_vs_widespread():
    t = topo()
    for feeders, scope, asset in (
        ([("F1", 90), ("F2", 20)], "localised", "F1"),
        ([("F1", 55), ("F2", 55)], "widespread", "stream"),
    ):
        ev = GridEvents(t, EventConfig(storm_threshold=100, storm_clear=50, storm_window_s=300))
        now = T0.timestamp()
        fake = [
            t.alert("X", "warning", "transformer", "TA" if f == "F1" else "TB", starts_at=T0, summary="x")
            for f, n in feeders
            for _ in range(n)
        ]
        ev.count_fired(fake[:100], now)
        assert ev.tick(now) == []  # 100 is not more than 100
        ev.count_fired(fake[100:], now + 1)
        out = ev.tick(now + 2)
        assert (
            len(out) == 1
            and out[0].labels["alertname"] == "AlertStorm"
            and out[0].labels["scope"] == scope
            and out[0].labels["asset_id"] == asset
        )
        assert out[0].annotations["value"] == "110 alerts in 300 s"
        # the window slides: after 5 minutes the storm resolves
        res = ev.tick(now + 302)
        assert [(a.labels["alertname"], a.resolved) for a in res] == [("AlertStorm", True)]
