"""Batch scoring -> Alertmanager through the same outbox and client as the stream (one code path).

``gold_alerts`` rows (rules ``anomaly_score`` for meters and transformers, and ``failure_risk`` built from
``gold_transformer_risk``: the high transformer-risk rows) become :class:`Alert` values with the same routing
labels the stream uses, and are submitted to the durable :class:`Outbox`. Submission is idempotent on the
gold row's ``fingerprint`` (``Outbox.submit(..., keys=...)``): the hourly re-scoring of a day posts each
gold alert once, however often it runs.

``startsAt`` is the posting time, not the hour window the batch looked at: Alertmanager skips ``group_wait``
(and the inhibition window with it) for alerts whose ``startsAt`` is already older than ``group_wait``; the
window is in the annotations. ``endsAt`` is ``hold`` later (default 4 h): a batch finding is a past window,
nothing will resolve it, so it stays visible (and silenceable) for that long and then resolves; the outbox
re-posts it until then like any firing alert.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import polars as pl

from contracts import GOLD_ALERTS

from .alerts import Alert
from .outbox import Outbox

#: gold severity -> Alertmanager severity label
SEVERITY = {"critical": "critical", "alert": "warning"}
ALERTNAME = {
    ("anomaly_score", "meter"): "MeterAnomaly",
    ("anomaly_score", "transformer"): "TransformerAnomaly",
    ("failure_risk", "transformer"): "TransformerFailureRisk",
}
RUNBOOK = {
    "MeterAnomaly": "Check the meter's recent readings and voltage; dispatch a meter technician if it persists.",
    "TransformerAnomaly": "Compare loading and top-oil temperature with the thermal model; reduce load or inspect cooling.",
    "TransformerFailureRisk": "Schedule an inspection within 72 h; prepare switching to back-feed the customers downstream.",
}


def dagster_url(asset: str, partition: str | None = None) -> str:
    """Link to an asset in the Dagster UI (base from env ``GRIDLAKE_DAGSTER_URL``, default http://127.0.0.1:3000)."""
    base = os.environ.get("GRIDLAKE_DAGSTER_URL", "http://127.0.0.1:3000").rstrip("/")
    return f"{base}/assets/{quote(asset)}" + (f"?partition={quote(partition)}" if partition else "")


def topology(
    ref_meters: pl.DataFrame | None, ref_transformers: pl.DataFrame | None
) -> dict[tuple[str, str], dict[str, str]]:
    """(asset_type, asset_id) -> transformer / feeder / region (= substation) labels, from the reference tables."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    if ref_transformers is not None:
        for t, f, s in ref_transformers.select("transformer_id", "feeder_id", "substation_id").iter_rows():
            out[("transformer", t)] = {"transformer": t, "feeder": f, "region": s}
    if ref_meters is not None:
        for m, t, f, s in ref_meters.select("meter_id", "transformer_id", "feeder_id", "substation_id").iter_rows():
            out[("meter", m)] = {"transformer": t, "feeder": f, "region": s}
    return out


def gold_alerts_to_alerts(
    rows: pl.DataFrame,
    topo: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
    min_severity: str = "critical",
    now: datetime | None = None,
    hold: timedelta = timedelta(hours=4),
) -> list[tuple[str, Alert]]:
    """``gold_alerts`` rows at or above ``min_severity`` (gold ``alert`` < ``critical``) -> (gold fingerprint, Alert)."""
    if min_severity not in SEVERITY:
        raise ValueError(f"min_severity {min_severity!r}: one of {list(SEVERITY)}")
    missing = [c for c in GOLD_ALERTS.column_names if c not in rows.columns]
    if missing:
        raise ValueError(f"gold_alerts rows lack column(s) {missing}")
    keep = ["critical"] if min_severity == "critical" else ["critical", "alert"]
    now = now or datetime.now(UTC)
    topo = topo or {}
    out = []
    for r in (
        rows.filter(pl.col("severity").is_in(keep)).sort("window_start", "asset_type", "asset_id").iter_rows(named=True)
    ):
        name = ALERTNAME.get((r["rule"], r["asset_type"]))
        if name is None:
            raise ValueError(
                f"gold_alerts row {r['fingerprint']}: no alert name for rule {r['rule']!r} on {r['asset_type']!r}"
            )
        where = dict(topo.get((r["asset_type"], r["asset_id"]), {}))
        if r["asset_type"] == "transformer":
            where.setdefault("transformer", r["asset_id"])
        labels = {
            "alertname": name,
            "severity": SEVERITY[r["severity"]],
            "asset_type": r["asset_type"],
            "asset_id": r["asset_id"],
            "source": "batch",
            **where,
        }
        window = f"{r['window_start'].isoformat()} .. {r['window_end'].isoformat()}"
        annotations = {
            "summary": f"{name} on {r['asset_type']} {r['asset_id']}: score {r['score']:.3f} ({r['n_points']} points) in {window}",
            "value": f"{r['score']:.4f}",
            "reason": r["reason"],
            "window": window,
            "model_version": r["model_version"],
            "gold_fingerprint": r["fingerprint"],
            "dagster_url": dagster_url("gold_alerts", str(r["date"])),
            "runbook": RUNBOOK[name],
        }
        out.append(
            (
                r["fingerprint"],
                Alert(
                    {k: str(v) for k, v in labels.items() if v is not None},
                    annotations,
                    starts_at=now,
                    ends_at=now + hold,
                    generator_url=annotations["dagster_url"],
                ),
            )
        )
    return out


def post_gold_alerts(outbox: Outbox, rows: pl.DataFrame, topo=None, min_severity: str = "critical") -> tuple[int, int]:
    """Submit the eligible rows to the outbox once each (by gold fingerprint): (eligible, newly submitted)."""
    pairs = gold_alerts_to_alerts(rows, topo, min_severity)
    new = outbox.submit([a for _, a in pairs], keys=[k for k, _ in pairs])
    return len(pairs), new


def distinct_alerts(pairs: list[tuple[str, Alert]]) -> int:
    """How many Alertmanager alerts ``pairs`` make: gold rows of one asset in different hour windows carry the
    same labels, so Alertmanager holds them as one alert (the latest posted annotations win)."""
    return len({frozenset(a.labels.items()) for _, a in pairs})
