"""gold_alerts rows of a day from both rules, and the whole-table fingerprint check (models.grid.alerts)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import polars as pl

from contracts import GOLD_ALERTS
from models.grid.alerts import day_alerts, duplicate_fingerprints
from models.grid.config import AlertThresholds

T0 = datetime(2026, 6, 8, 14, tzinfo=timezone.utc)


def _scores(rows: list[tuple[str, str, int, float, str]]) -> pl.DataFrame:
    """(asset_type, asset_id, minutes after T0, score, model_version) -> gold_anomaly_scores-like rows."""
    return pl.DataFrame(
        [
            {
                "asset_type": k,
                "asset_id": a,
                "time": T0 + timedelta(minutes=m),
                "score": s,
                "reason": "why",
                "model_version": v,
            }
            for k, a, m, s, v in rows
        ],
        schema={
            "asset_type": pl.Utf8,
            "asset_id": pl.Utf8,
            "time": pl.Datetime("us", "UTC"),
            "score": pl.Float64,
            "reason": pl.Utf8,
            "model_version": pl.Utf8,
        },
    )


def _risk(rows: list[tuple[str, int, float, str]]) -> pl.DataFrame:
    """(transformer_id, hours after T0, P(failure), model_version) -> gold_transformer_risk-like rows."""
    return pl.DataFrame(
        [
            {
                "transformer_id": t,
                "as_of": T0 + timedelta(hours=h),
                "failure_probability_72h": p,
                "rul_hours": 30.4,
                "customers_downstream": 7,
                "model_version": v,
            }
            for t, h, p, v in rows
        ],
        schema={
            "transformer_id": pl.Utf8,
            "as_of": pl.Datetime("us", "UTC"),
            "failure_probability_72h": pl.Float64,
            "rul_hours": pl.Float64,
            "customers_downstream": pl.Int64,
            "model_version": pl.Utf8,
        },
    )


def test_each_asset_type_is_held_to_its_own_thresholds():
    scores = _scores(
        [
            ("meter", "M1", 0, 0.80, "m:v1"),
            ("transformer", "T1", 0, 0.80, "t:v2"),
            ("transformer", "T1", 90, 0.97, "t:v2"),
        ]
    )
    th = {"meter": AlertThresholds(0.5, 0.75, 0.9), "transformer": AlertThresholds(0.7, 0.85, 0.95)}
    a = day_alerts(scores, th, _risk([]), None, "America/New_York")
    assert a.columns == GOLD_ALERTS.column_names
    got = {(r["asset_id"], r["window_start"]): r for r in a.iter_rows(named=True)}
    # 0.80 alerts on the meter (alert 0.75) but not on the transformer (alert 0.85)
    assert set(got) == {("M1", T0), ("T1", T0 + timedelta(hours=1))}
    assert got[("M1", T0)]["severity"] == "alert" and got[("M1", T0)]["model_version"] == "m:v1"
    assert got[("T1", T0 + timedelta(hours=1))]["severity"] == "critical"
    assert set(a["rule"]) == {"anomaly_score"}


def test_failure_risk_alerts_say_why_and_per_model_version():
    risk = _risk([("T1", 0, 0.6, "f:v1"), ("T2", 0, 0.2, "f:v1"), ("T3", 2, 0.9, "f:v2")])
    a = day_alerts(_scores([]), {}, risk, AlertThresholds(0.3, 0.5, 0.8), "America/New_York")
    assert sorted(a["asset_id"]) == ["T1", "T3"] and set(a["rule"]) == {"failure_risk"}
    t1 = a.filter(pl.col("asset_id") == "T1").row(0, named=True)
    assert t1["reason"] == "P(failure in 72 h) 0.6 ; RUL 30.0 h ; 7 customers downstream"
    assert (t1["asset_type"], t1["model_version"], t1["severity"]) == ("transformer", "f:v1", "alert")
    assert a.filter(pl.col("asset_id") == "T3")["model_version"].to_list() == ["f:v2"]
    assert t1["date"] == date(2026, 6, 8)


def test_no_input_rows_give_an_empty_table_frame():
    a = day_alerts(_scores([]), {}, _risk([]), None, "America/New_York")
    assert a.height == 0 and a.schema == GOLD_ALERTS.polars_schema()


def test_duplicate_fingerprints_are_found_across_days():
    alerts = pl.DataFrame(
        {
            "fingerprint": ["a", "b", "a", "c", "c"],
            "date": [date(2026, 6, 7), date(2026, 6, 7), date(2026, 6, 8), date(2026, 6, 8), date(2026, 6, 8)],
        }
    )
    dup = duplicate_fingerprints(alerts.lazy()).sort("fingerprint")
    assert dup["fingerprint"].to_list() == ["a", "c"] and dup["n"].to_list() == [2, 2]
    assert sorted(dup.row(0, named=True)["dates"]) == [date(2026, 6, 7), date(2026, 6, 8)]
    assert duplicate_fingerprints(alerts.unique("fingerprint").lazy()).height == 0
