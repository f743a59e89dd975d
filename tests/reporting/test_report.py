"""reporting.report on its own: the HTML is self-contained, sections say what is missing, the
delivered-alerts section reads a table when one is handed in, and the day-ahead selection takes the
newest issue made before the day began. (The full report on real gold tables is checked by the
demo test, tests/pipelines/test_demo.py.)"""

from __future__ import annotations

import base64
import datetime as dt
import re

import polars as pl
import pytest

from contracts import DEMO_PROFILE, day_bounds_utc, read_profile
from lake.delta import Lake
from reporting.report import build_report, day_ahead, write_report

TZ = "America/New_York"
PROFILE = read_profile(DEMO_PROFILE).model_copy(update={"timezone": TZ})
DAY = dt.date(2026, 3, 8)  # spring-forward: a 23-hour local day
UTC = pl.Datetime("us", "UTC")


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_empty_lake_gives_every_section_with_what_is_missing(tmp_path):
    rep = build_report(Lake(tmp_path / "lake"), DAY, PROFILE)
    page = write_report(rep, tmp_path / "out").read_text()
    assert [s.title for s in rep.sections][:2] == [
        "Load forecast vs metered load (day-ahead issue, p10-p90 band)",
        "PV forecast (day-ahead issue)",
    ]
    for table in ("gold_load_forecast", "gold_solar_forecast", "gold_battery_schedule", "gold_ev_schedule", "gold_transformer_risk",
                  "gold_anomaly_scores", "gold_customer_segments"):  # fmt: skip
        assert f"{table}" in page
    assert "No alerts delivered" in page
    assert not rep.figures and not _pngs(page)
    assert not re.search(r"(src|href)=\"(https?:|//)", page)  # nothing fetched from anywhere


def test_delivered_alerts_section(tmp_path):
    lo, _ = day_bounds_utc(DAY, TZ)
    alerts = pl.DataFrame({
        "starts_at": [lo + dt.timedelta(hours=h) for h in (2, 5, 9, 30)],
        "severity": ["critical", "warning", "warning", "info"], "alertname": "x", "asset_id": ["T1", "M1", "M2", "M3"],
    }).with_columns(pl.col("starts_at").cast(UTC))  # fmt: skip
    rep = build_report(Lake(tmp_path / "lake"), DAY, PROFILE, delivered_alerts=alerts)
    sec = rep.sections[-1]
    assert "<td>critical</td><td>x</td><td>1</td>" in sec.text and "<td>warning</td><td>x</td><td>2</td>" in sec.text
    assert "info" not in sec.text  # the 4th alert started the next day
    (fig,) = sec.figures
    assert fig.png.startswith(b"\x89PNG")
    # batch alerts posted days later: placed by the window they report (occurred_at), latency from startsAt
    later = alerts.with_columns(occurred_at=pl.col("starts_at"), starts_at=pl.col("starts_at") + dt.timedelta(days=40),
                                received_at=pl.col("starts_at") + dt.timedelta(days=40, seconds=2))  # fmt: skip
    sec = build_report(Lake(tmp_path / "lake"), DAY, PROFILE, delivered_alerts=later).sections[-1]
    assert "<td>warning</td><td>x</td><td>2</td><td>2</td><td>2</td><td>2</td>" in sec.text and "info" not in sec.text
    sec = build_report(Lake(tmp_path / "lake"), DAY, PROFILE, delivered_alerts=later.drop("occurred_at")).sections[-1]
    assert "No alerts delivered on this day" in sec.text  # by startsAt they are 40 days later
    with pytest.raises(ValueError, match=r"lacks columns \['severity'\]"):
        build_report(Lake(tmp_path / "lake"), DAY, PROFILE, delivered_alerts=alerts.drop("severity"))


def test_day_ahead_takes_the_newest_issue_before_the_day():
    lo, hi = day_bounds_utc(DAY, TZ)
    hours = pl.datetime_range(lo, hi, "1h", closed="left", eager=True)
    assert hours.len() == 23

    def issue(at: dt.datetime, p50: float) -> pl.DataFrame:
        return pl.DataFrame({"entity_id": "F1", "issued_at": at, "period_start": hours, "p50": p50}).with_columns(
            pl.col("issued_at", "period_start").cast(UTC)
        )

    fc = pl.concat(
        [
            issue(lo - dt.timedelta(days=1), 1.0),
            issue(lo - dt.timedelta(hours=1), 2.0),
            issue(lo + dt.timedelta(hours=3), 3.0),
        ]
    )
    got = day_ahead(fc, DAY, TZ)
    assert got.height == 23 and got["p50"].unique().to_list() == [2.0]


def test_the_report_reads_zone_and_bands_from_the_profile_it_is_handed(tmp_path, monkeypatch):
    """Issue 10: build_report takes the utility profile from its caller (the asset's GridSettings) and reads
    no configuration itself: with the profile loader broken, the risk section still renders from the
    profile handed in, and that profile's alert bands are the ones drawn."""
    import contracts
    import contracts.profile
    from contracts import TABLES

    def broken():
        raise AssertionError("reporting must not load the profile itself")

    monkeypatch.setattr(contracts.profile, "load_profile", broken)
    monkeypatch.setattr(contracts, "load_profile", broken)
    lake = Lake(tmp_path / "lake")
    t = TABLES["gold_transformer_risk"]
    row = {c.name: None for c in t.columns} | {
        "date": DAY, "transformer_id": "T0001", "as_of": dt.datetime(2026, 3, 8, 12, tzinfo=dt.timezone.utc),
        "failure_probability_72h": 0.3, "rul_hours": 100.0, "status": "alert", "age_years": 20.0,
        "days_since_maintenance": 300.0, "anomaly_count_7d": 2, "customers_downstream": 9,
        "load_downstream_kw": 40.0, "model_version": "m:v1",
    }  # fmt: skip
    lake.write_partition(t, pl.DataFrame([row], schema=t.polars_schema()), DAY)
    seen = []
    import models.grid.config as gc

    real = gc.AlertThresholds.from_bands
    monkeypatch.setattr(gc.AlertThresholds, "from_bands", classmethod(lambda cls, b: seen.append(b) or real(b)))
    rep = build_report(lake, DAY, PROFILE)
    sec = next(s for s in rep.sections if s.title.startswith("Transformer risk"))
    assert "T0001" in sec.text and sec.figures
    assert seen == [PROFILE.alert_bands.failure_risk]
