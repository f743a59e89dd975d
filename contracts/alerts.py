"""Streaming bridge delivery tables: PostgreSQL, written by streaming_bridge.receiver (the webhook receiver
behind Alertmanager), not Delta tables of the lake (so not in TABLES). ``alerts`` holds each notified alert
state once: key (fingerprint, starts_at, status), fingerprint = Alertmanager's. ``alert_deliveries`` holds
one row per receiver and key with the number of attempts Alertmanager made (its retries show as attempts > 1).
"""

from __future__ import annotations

import polars as pl

from contracts.tables import UTC_TS, Column, Table

_ALERT_KEY = (
    Column("fingerprint", pl.Utf8, False, "Alertmanager's fingerprint of the label set"),
    Column("starts_at", UTC_TS, False, "startsAt of the alert, UTC"),
    Column("status", pl.Utf8, False, "firing | resolved", allowed=("firing", "resolved")),
)
ALERTS = Table(
    "alerts",
    "ops",
    (
        *_ALERT_KEY,
        Column("ends_at", UTC_TS, True, "endsAt (resolved alerts; firing ones carry Alertmanager's expiry)"),
        Column("alertname", pl.Utf8, False),
        Column("severity", pl.Utf8, False, "critical | warning | info (labels.severity)"),
        Column("asset_type", pl.Utf8, True),
        Column("asset_id", pl.Utf8, True),
        Column("transformer", pl.Utf8, True),
        Column("feeder", pl.Utf8, True),
        Column("region", pl.Utf8, True),
        Column("labels", pl.Utf8, False, "all labels, JSON object"),
        Column("annotations", pl.Utf8, False, "all annotations, JSON object"),
        Column("generator_url", pl.Utf8, True),
        Column("received_at", UTC_TS, False, "first receipt by a bridge receiver"),
        Column("mqtt_published_at", UTC_TS, True, "when it was published to gridlake/alerts/<severity> (QoS 1 acked)"),
    ),
    "every alert state Alertmanager notified (firing and resolved), once per (fingerprint, starts_at, status)",
    key=("fingerprint", "starts_at", "status"),
)
ALERT_DELIVERIES = Table(
    "alert_deliveries",
    "ops",
    (
        Column("receiver", pl.Utf8, False, "the Alertmanager receiver (bridge | pager | chat | ...)"),
        *_ALERT_KEY,
        Column("first_received_at", UTC_TS, False),
        Column("last_received_at", UTC_TS, False),
        Column(
            "attempts", pl.Int64, False, "notifications received for this key (> 1: Alertmanager retried or repeated)"
        ),
    ),
    "one row per receiver and alert key: delivered exactly once per receiver, however often Alertmanager sent it",
    key=("receiver", "fingerprint", "starts_at", "status"),
)
BRIDGE_PG_TABLES: dict[str, Table] = {t.name: t for t in (ALERTS, ALERT_DELIVERIES)}
