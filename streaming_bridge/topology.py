"""Where an asset sits in the network (reference tables), and the alert an operator reads.

Labels route (alertname, severity, asset_type, asset_id, transformer, feeder, region = substation);
annotations explain: the value and the limit, customers downstream (meters fed, from ``ref_meters``),
a link to the asset in the Dagster UI, and a runbook line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import urllib.parse
from dataclasses import dataclass

import polars as pl

from streaming_bridge.alerts import Alert

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
#: the Dagster asset an operator opens for each asset type (its rows hold the asset's history)
ASSET_PAGES = {
    "meter": "silver_meter_readings",
    "transformer": "gold_transformer_risk",
    "feeder": "gold_load_hourly",
    "system": "gold_alerts",
}


@dataclass(frozen=True)
class Place:
    transformer: str = ""
    feeder: str = ""
    region: str = ""
    customers: int = 0


class Topology:
    """Meters and transformers from the reference tables (``ref_meters``, ``ref_transformers``)."""

    def __init__(self, meters: pl.DataFrame, transformers: pl.DataFrame, dagster_url: str | None = None, clock=None):
        #: live (the bridge sets a clock): startsAt/endsAt are detection times and the condition's event time
        #: is the ``observed_at`` annotation (Alertmanager skips group_wait, hence inhibition, for an alert
        #: that starts in the past); replay (no clock): startsAt/endsAt are the readings' event times
        self.clock = clock
        #: live: remembers the startsAt given to each condition (alertname, asset, onset event time), so a
        #: condition re-detected from redelivered messages after a crash keeps its identity (OnsetStore)
        self.onsets = None
        self.meters = meters.select("meter_id", "customer_id", "transformer_id", "feeder_id", "substation_id")
        self.transformers = transformers.select("transformer_id", "feeder_id", "substation_id", "rating_kva")
        self.dagster_url = (dagster_url or os.environ.get("GRIDLAKE_DAGSTER_URL") or DEFAULT_DAGSTER_URL).rstrip("/")
        per_tx = self.meters.group_by("transformer_id").agg(
            pl.col("customer_id").n_unique().alias("n"), pl.col("meter_id")
        )
        self.customers_of_tx = dict(zip(per_tx["transformer_id"], per_tx["n"]))
        self.meters_of_tx: dict[str, list[str]] = dict(zip(per_tx["transformer_id"], per_tx["meter_id"].to_list()))
        per_feeder = self.meters.group_by("feeder_id").agg(pl.col("customer_id").n_unique().alias("n"))
        self.customers_of_feeder = dict(zip(per_feeder["feeder_id"], per_feeder["n"]))
        self._meter = {
            m: Place(t, f, s, 1)
            for m, t, f, s in self.meters.select("meter_id", "transformer_id", "feeder_id", "substation_id").iter_rows()
        }
        self._tx = {
            t: Place(t, f, s, int(self.customers_of_tx.get(t, 0)))
            for t, f, s in self.transformers.select("transformer_id", "feeder_id", "substation_id").iter_rows()
        }
        self.meter_transformer = dict(zip(self.meters["meter_id"], self.meters["transformer_id"]))
        self.rating_kva = dict(zip(self.transformers["transformer_id"], self.transformers["rating_kva"]))

    def stamp(self, event_time: dt.datetime) -> dt.datetime:
        """The time an alert transition carries: detection time when live, else the event time."""
        return self.clock() if self.clock is not None else event_time

    @classmethod
    def from_lake(cls, lake, dagster_url: str | None = None) -> Topology:
        return cls(lake.read("ref_meters"), lake.read("ref_transformers"), dagster_url)

    def known_ids(self) -> dict[str, pl.Series]:
        return {"meter_readings": self.meters["meter_id"], "scada": self.transformers["transformer_id"]}

    def place(self, asset_type: str, asset_id: str) -> Place:
        if asset_type == "meter":
            return self._meter.get(asset_id, Place())
        if asset_type == "transformer":
            return self._tx.get(asset_id, Place())
        if asset_type == "feeder":
            return Place("", asset_id, "", int(self.customers_of_feeder.get(asset_id, 0)))
        return Place()

    def asset_link(self, asset_type: str, asset_id: str) -> str:
        page = ASSET_PAGES.get(asset_type, "gold_alerts")
        return f"{self.dagster_url}/assets/{page}?{urllib.parse.urlencode({'asset_id': asset_id})}"

    def alert(
        self,
        alertname: str,
        severity: str,
        asset_type: str,
        asset_id: str,
        *,
        starts_at: dt.datetime,
        summary: str,
        value: str = "",
        limit: str = "",
        runbook: str = "",
        extra_labels: dict[str, str] | None = None,
        extra_annotations: dict[str, str] | None = None,
    ) -> Alert:
        p = self.place(asset_type, asset_id)
        labels = {
            "alertname": alertname,
            "severity": severity,
            "asset_type": asset_type,
            "asset_id": asset_id,
            "transformer": p.transformer,
            "feeder": p.feeder,
            "region": p.region,
            **(extra_labels or {}),
        }
        link = self.asset_link(asset_type, asset_id)
        annotations = {
            "summary": summary,
            "value": value,
            "limit": limit,
            "customers_downstream": str(p.customers),
            "dagster_url": link,
            "runbook": runbook,
            "observed_at": starts_at.isoformat(),
            **(extra_annotations or {}),
        }
        start = self.stamp(starts_at)
        if self.onsets is not None:  # the same condition detected again (redelivery after a crash): same startsAt
            start = self.onsets.starts_at((alertname, asset_id, starts_at.isoformat()), start)
        return Alert(labels, {k: v for k, v in annotations.items() if v != ""}, start, None, link)

    def resolve(self, alert: Alert, event_time: dt.datetime) -> Alert:
        """The resolved copy of ``alert`` (same labels and startsAt; endsAt never before startsAt)."""
        return alert.resolve(max(self.stamp(event_time), alert.starts_at))


class OnsetStore:
    """Durable map (alertname, asset_id, onset event time) -> startsAt (SQLite beside the spool).

    Live alerts start at detection time (Alertmanager needs it); after a crash the broker redelivers the
    unacknowledged messages and the rules detect the same condition again: this store hands back the
    startsAt it got the first time, so Alertmanager and the receivers' idempotency key (fingerprint +
    startsAt + status) see one condition, not two. Written before the alert reaches the outbox (WAL,
    synchronous=NORMAL: survives a process crash). Entries older than ``keep_days`` are dropped.
    """

    def __init__(self, path, keep_days: float = 2.0):
        import sqlite3
        import threading

        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS onsets (alertname TEXT, asset_id TEXT, onset TEXT, starts_at TEXT NOT NULL, "
            "PRIMARY KEY (alertname, asset_id, onset))"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS active (alertname TEXT, asset_id TEXT, onset TEXT NOT NULL, alert TEXT NOT NULL, "
            "PRIMARY KEY (alertname, asset_id))"
        )
        self._lock = threading.RLock()  # re-entered by the statements of a transaction()
        self._db.execute(
            "DELETE FROM onsets WHERE starts_at < ?",
            ((dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=keep_days)).isoformat(),),
        )

    @contextlib.contextmanager
    def transaction(self):
        """The calls inside as one SQLite transaction (a processing batch's onsets: one WAL commit, not one
        per statement); committed when the block ends, rolled back if it raises."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def starts_at(self, key: tuple[str, str, str], proposed: dt.datetime) -> dt.datetime:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO onsets VALUES (?, ?, ?, ?)", (*key, proposed.isoformat()))
            (v,) = self._db.execute(
                "SELECT starts_at FROM onsets WHERE alertname = ? AND asset_id = ? AND onset = ?", key
            ).fetchone()
        return dt.datetime.fromisoformat(v)

    # the rule alerts firing now, so a restarted bridge resumes them (and resolves them) after a crash
    def remember(self, alertname: str, asset_id: str, onset: dt.datetime, alert: Alert) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO active VALUES (?, ?, ?, ?)",
                (alertname, asset_id, onset.isoformat(), json.dumps(alert.to_alertmanager())),
            )

    def forget(self, alertname: str, asset_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM active WHERE alertname = ? AND asset_id = ?", (alertname, asset_id))

    def active(self) -> list[tuple[str, str, dt.datetime, Alert]]:
        with self._lock:
            rows = self._db.execute("SELECT alertname, asset_id, onset, alert FROM active").fetchall()
        out = []
        for name, asset, onset, js in rows:
            d = json.loads(js)
            start = dt.datetime.fromisoformat(d["startsAt"].replace("Z", "+00:00"))
            out.append(
                (
                    name,
                    asset,
                    dt.datetime.fromisoformat(onset),
                    Alert(d["labels"], d.get("annotations", {}), start, None, d.get("generatorURL", "")),
                )
            )
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
