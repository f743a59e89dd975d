"""The alert contract inside the streaming bridge: what scoring produces and delivery posts.

Scoring (stream rules, the champion anomaly model, derived grid events) and batch scoring (gold alert /
risk rows) both build :class:`Alert` values and hand them to an :class:`AlertSink` (the durable outbox,
drained to Prometheus Alertmanager's ``/api/v2/alerts``). Alertmanager does the deduplication, grouping,
routing, inhibition, silences and resolved notifications; this module only says what an alert is.

Labels identify an alert (Alertmanager's identity is its label set); annotations carry what an operator
reads. ``ends_at`` set means resolved.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

# Severities as utilities route them: critical -> pager + chat + e-mail; warning -> chat + e-mail; info -> e-mail.
SEVERITIES = ("critical", "warning", "info")

# Labels every alert carries (values may be "" where they do not apply, e.g. region for a meter with none).
REQUIRED_LABELS = ("alertname", "severity", "asset_type", "asset_id")
# Routing labels filled in from the topology where known.
TOPOLOGY_LABELS = ("transformer", "feeder", "region")


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"alert time {t!r} must be timezone-aware")
    return t.astimezone(timezone.utc)


def _rfc3339(t: datetime) -> str:
    return _utc(t).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """sha1 of the sorted label set (``Alert.fingerprint``), also for an encoded alert's ``labels``."""
    return hashlib.sha1(json.dumps(sorted(labels.items())).encode()).hexdigest()


@dataclass(frozen=True)
class Alert:
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str = ""

    def __post_init__(self) -> None:
        missing = [k for k in REQUIRED_LABELS if not self.labels.get(k)]
        if missing:
            raise ValueError(f"alert labels {dict(self.labels)} lack {missing}")
        if self.labels["severity"] not in SEVERITIES:
            raise ValueError(f"alert severity {self.labels['severity']!r} not one of {SEVERITIES}")
        for k, v in {**self.labels, **self.annotations}.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"alert label/annotation {k!r}={v!r}: keys and values must be strings")
        if self.starts_at is not None:
            _utc(self.starts_at)
        if self.ends_at is not None:
            _utc(self.ends_at)

    @property
    def severity(self) -> str:
        return self.labels["severity"]

    @property
    def resolved(self) -> bool:
        return self.ends_at is not None

    def fingerprint(self) -> str:
        """sha1 of the sorted label set: the identity Alertmanager dedups on, computed the same way here
        so the outbox and the durable alerts table can be idempotent on (fingerprint, startsAt, status)."""
        return label_fingerprint(self.labels)

    def to_alertmanager(self) -> dict:
        """One element of the JSON list POSTed to Alertmanager's ``/api/v2/alerts``."""
        d: dict = {"labels": dict(self.labels), "annotations": dict(self.annotations)}
        if self.starts_at is not None:
            d["startsAt"] = _rfc3339(self.starts_at)
        if self.ends_at is not None:
            d["endsAt"] = _rfc3339(self.ends_at)
        if self.generator_url:
            d["generatorURL"] = self.generator_url
        return d

    def resolve(self, at: datetime) -> Alert:
        return Alert(self.labels, self.annotations, self.starts_at, _utc(at), self.generator_url)


class AlertSink(Protocol):
    """Where scoring hands alerts: the durable outbox in the bridge, a list in tests."""

    def submit(self, alerts: Sequence[Alert]) -> None: ...
