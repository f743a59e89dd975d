"""The declarative rules file and the engine: limits with hysteresis and hold times, rate of change over a
sliding window, compound conditions, redelivered samples, and clear errors for a bad rules file."""

from __future__ import annotations

import datetime as dt
import textwrap

import polars as pl
import pytest

from contracts import UTC_TS
from streaming_bridge.rules import DEFAULT_RULES_FILE, Engine, RulesError, load_rules

T0 = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)


def scada(rows: list[tuple[str, int, dict]]) -> pl.DataFrame:
    """rows of (transformer, seconds after T0, overrides) with normal values elsewhere."""
    base = {"load_kva": 30.0, "top_oil_temp_c": 50.0, "hot_spot_temp_c": 65.0, "voltage_v": 233.0, "frequency_hz": 60.0}
    recs = [{"transformer_id": tx, "sample_time": T0 + dt.timedelta(seconds=s), **base, **o} for tx, s, o in rows]
    return pl.DataFrame(recs).with_columns(pl.col("sample_time").cast(UTC_TS))


def engine() -> Engine:
    return Engine(load_rules(), rating_kva={"T1": 50.0, "T2": 50.0})


def names(ts, firing=None):
    return [(t.rule.name, t.asset_id) for t in ts if firing is None or t.firing == firing]


def test_the_shipped_rules_file_loads_and_covers_every_rule_kind():
    rs = load_rules(DEFAULT_RULES_FILE)
    kinds = {r.kind for r in rs.rules}
    assert kinds == {"limit", "rate", "compound"}
    fields = {c.field for r in rs.rules for c in r.conditions}
    assert {
        "hot_spot_temp_c",
        "top_oil_temp_c",
        "loading_pct",
        "frequency_hz",
        "voltage",
        "voltage_v",
        "current_amps",
    } <= fields


def test_a_value_dithering_on_the_limit_fires_once_and_resolves_once():
    e = engine()
    # hot spot dithers 139.5 / 140.5 / 139 / 141 ... (limit 140, clear 130): one alert, no flapping
    vals = [139.5, 140.5, 139.0, 141.0, 138.0, 140.2, 135.0, 131.0, 129.0]
    ts = []
    for k, v in enumerate(vals):  # one batch per sample, as the stream would deliver them
        ts += e.evaluate({"scada": scada([("T1", 60 * k, {"hot_spot_temp_c": v})])})
    crit = [t for t in ts if t.rule.name == "TransformerHotSpotCritical"]
    assert [(t.firing, t.value) for t in crit] == [(True, 140.5), (False, 129.0)]
    assert crit[0].starts_at == T0 + dt.timedelta(seconds=60) == crit[1].starts_at
    assert crit[1].at == T0 + dt.timedelta(seconds=480)


def test_hold_time_means_a_short_spike_never_fires_and_a_sustained_one_does():
    e = engine()
    # warning limit 110 with for_s 60: a 30 s excursion does nothing
    ts = e.evaluate(
        {
            "scada": scada(
                [
                    ("T1", 0, {"hot_spot_temp_c": 112.0}),
                    ("T1", 30, {"hot_spot_temp_c": 112.0}),
                    ("T1", 40, {"hot_spot_temp_c": 100.0}),
                ]
            )
        }
    )
    assert "TransformerHotSpotHigh" not in [n for n, _ in names(ts)]
    ts = e.evaluate({"scada": scada([("T1", 100 + 20 * k, {"hot_spot_temp_c": 115.0}) for k in range(5)])})
    high = [t for t in ts if t.rule.name == "TransformerHotSpotHigh"]
    assert (
        len(high) == 1
        and high[0].firing
        and high[0].at == T0 + dt.timedelta(seconds=160)
        and high[0].starts_at == T0 + dt.timedelta(seconds=100)
    )
    # clear_for_s 300: back below 105 for 200 s keeps it active; 300 s resolves it
    ts = e.evaluate({"scada": scada([("T1", 200 + 100 * k, {"hot_spot_temp_c": 90.0}) for k in range(3)])})
    assert not [t for t in ts if t.rule.name == "TransformerHotSpotHigh"]
    ts = e.evaluate({"scada": scada([("T1", 500, {"hot_spot_temp_c": 90.0})])})
    assert [(t.rule.name, t.firing) for t in ts if t.rule.name == "TransformerHotSpotHigh"] == [
        ("TransformerHotSpotHigh", False)
    ]


def test_redelivered_samples_do_not_retrigger_and_other_assets_are_independent():
    e = engine()
    batch = scada([("T1", 0, {"frequency_hz": 59.3}), ("T2", 0, {"frequency_hz": 60.0})])
    assert names(e.evaluate({"scada": batch}), True) == [("FrequencyDeviationCritical", "T1")]
    assert e.evaluate({"scada": batch}) == []  # the same samples again (MQTT redelivery)
    ts = e.evaluate({"scada": scada([("T1", 10, {"frequency_hz": 60.0}), ("T2", 10, {"frequency_hz": 60.7})])})
    assert sorted((n, a, t.firing) for (n, a), t in zip(names(ts), ts)) == [
        ("FrequencyDeviationCritical", "T1", False),
        ("FrequencyDeviationCritical", "T2", True),
    ]


def test_rate_of_change_over_the_sliding_window_and_the_compound_rule():
    e = engine()
    # T1: hot spot climbs 1.2 K a minute at 112 % loading (> 110 % and rising > 5 K / 15 min: compound);
    # T2: same loading, flat temperature: neither the rate rule nor the compound rule fires
    rows = []
    for k in range(20):
        rows.append(("T1", 60 * k, {"load_kva": 56.0, "hot_spot_temp_c": 60.0 + 1.2 * k}))
        rows.append(("T2", 60 * k, {"load_kva": 56.0, "hot_spot_temp_c": 60.0}))
    ts = e.evaluate({"scada": scada(rows)})
    fired = {n: t for (n, a), t in zip(names(ts), ts) if t.firing}
    assert set(names(ts, True)) == {("TransformerOverloadedAndHeating", "T1"), ("TransformerHotSpotRisingFast", "T1")}
    # compound: needs half a window (450 s) of history, then 5 K rise: at 480 s (k=8) the rise is 9.6 K
    assert fired["TransformerOverloadedAndHeating"].at == T0 + dt.timedelta(seconds=480)
    # rate rule: > 15 K within the window; k=13: 15.6 K
    assert fired["TransformerHotSpotRisingFast"].at == T0 + dt.timedelta(seconds=780)
    # loading alone at 112 % stays below the 120 % overload warning
    assert "TransformerOverload" not in fired


def test_a_batch_in_any_order_gives_what_the_samples_one_by_one_in_time_order_give():
    """The engine sorts a batch by event time (stable) before its flags and hold states: a head-end that sends
    a batch out of order, and a transformer without a rating (loading % unknown: never fires), change nothing."""
    import random

    rows = []
    for k in range(30):
        rows.append(("T1", 60 * k, {"load_kva": 62.0 if 5 <= k < 18 else 30.0, "hot_spot_temp_c": 60.0 + 1.5 * k}))
        rows.append(("T2", 60 * k, {"frequency_hz": 59.3 if k % 7 == 3 else 60.0}))
        rows.append(("T9", 60 * k, {"load_kva": 500.0, "hot_spot_temp_c": 150.0 if k == 4 else 90.0}))  # no rating
    one_by_one = engine()
    expected = [t for r in sorted(rows, key=lambda r: r[1]) for t in one_by_one.evaluate({"scada": scada([r])})]
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    got = engine().evaluate({"scada": scada(shuffled)})
    key = lambda t: (t.rule.name, t.asset_id, t.firing, t.starts_at, t.at, t.value)  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, expected))
    assert {n for n, a in names(got, True)} >= {"TransformerOverload", "FrequencyDeviationCritical"}
    assert not [a for n, a in names(got) if a == "T9" and "Overload" in n]  # no rating: no loading %


def test_meter_voltage_limits():
    e = engine()
    df = pl.DataFrame(
        {
            "meter_id": ["M1", "M2", "M3"],
            "reading_time": [T0] * 3,
            "consumption_kwh": [0.1] * 3,
            "demand_kw": [0.4] * 3,
            "voltage": [214.0, 231.0, None],
            "current_amps": [2.0, 99.0, None],
            "power_factor": [0.9] * 3,
        }
    ).with_columns(pl.col("reading_time").cast(UTC_TS))
    assert sorted(names(e.evaluate({"meter_readings": df}), True)) == [
        ("MeterOvercurrent", "M2"),
        ("MeterUndervoltage", "M1"),
    ]


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "rules: [{name: X, source: scada, kind: limit, field: hot_spot, op: '>', value: 1, severity: critical}]",
            "field 'hot_spot' is not a measure of scada",
        ),
        (
            "rules: [{name: X, source: scada, kind: limit, field: hot_spot_temp_c, op: '>', value: 100, clear: 120, severity: critical}]",
            "clear 120.0 must lie on the normal side",
        ),
        (
            "rules: [{name: X, source: scada, kind: limit, field: hot_spot_temp_c, op: '>', value: hot, severity: critical}]",
            "'hot' is not a number",
        ),
        (
            "rules: [{name: X, source: scada, kind: limit, field: hot_spot_temp_c, op: '>', value: 1, severity: page}]",
            "severity 'page'",
        ),
        (
            "rules: [{name: X, source: scada, kind: rate, field: hot_spot_temp_c, op: '>', value: 1, severity: info}]",
            "needs window_s",
        ),
        (
            "rules: [{name: X, source: scada, kind: compound, all: [{field: load_kva, op: '>', value: 1}], severity: info}]",
            "at least two",
        ),
        (
            "rules: [{name: X, source: feeders, kind: limit, field: a, op: '>', value: 1, severity: info}]",
            "source 'feeders'",
        ),
        (
            "rules: [{name: X, source: scada, kind: limit, field: frequency_hz, op: outside, value: [61, 59], severity: info}]",
            "low 61.0 must be below high 59.0",
        ),
        (
            "rules: [{name: X, source: scada, kind: limit, field: frequency_hz, op: '>', value: 61, severity: info}, {name: X, source: scada, kind: limit, field: frequency_hz, op: '>', value: 61, severity: info}]",
            "duplicate rule name",
        ),
        ("rules: {", "cannot read rules"),
    ],
)
def test_a_bad_rules_file_is_refused_naming_file_rule_and_field(tmp_path, body, message):
    p = tmp_path / "bad_rules.yaml"
    p.write_text(textwrap.dedent(body))
    with pytest.raises(RulesError, match="bad_rules.yaml") as ei:
        load_rules(p)
    assert message in str(ei.value)
