"""Grid events derived from the stream, beside the per-reading rules.

- **Meter offline**: the device's MQTT last will (``status: offline``) or no message from a meter that
  has reported before within ``heartbeat_timeout_s`` of the bridge clock -> ``MeterOffline``; any later
  message from it resolves the alert.
- **Supply lost**: a reading without voltage (the silver contract's "no supply", the last-gasp report)
  or a ``last_gasp`` status -> ``MeterSupplyLost``; a reading with voltage resolves it.
- **Transformer outage**: when at least ``outage_fraction`` (and ``outage_min_meters``) of the meters
  beneath a transformer are down at once (silent, offline or without supply) -> ``TransformerOutage``
  (critical). Alertmanager's inhibition then mutes the meter alerts carrying the same ``transformer``
  label. It resolves when fewer than ``outage_clear_fraction`` remain down.
- **Alert storm**: more than ``storm_threshold`` rule/model alerts fired within ``storm_window_s`` ->
  ``AlertStorm``: *localised* (one feeder holds more than ``storm_localised_share`` of them: equipment,
  labelled with that feeder) or *widespread* (data quality: check the head-end / the feed).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
import polars as pl

from streaming_bridge.alerts import Alert
from streaming_bridge.ingress import StatusEvent
from streaming_bridge.topology import Topology

RUNBOOK = {
    "MeterOffline": "Check the meter's communication module and the head-end; a truck roll if it stays silent.",
    "MeterSupplyLost": "Confirm with the customer or the neighbours; check the service fuse and the transformer.",
    "TransformerOutage": "Dispatch a crew to the transformer; check the feeder protection; inform the affected customers.",
    "AlertStorm": "Localised: treat as an equipment problem on the feeder. Widespread: check the head-end and data feed before acting on single alerts.",
}


@dataclass
class EventConfig:
    heartbeat_timeout_s: float = 2700.0  # three missed 15-minute readings
    outage_fraction: float = 0.6
    outage_min_meters: int = 2
    outage_clear_fraction: float = 0.3
    storm_threshold: int = 100
    storm_clear: int = 50
    storm_window_s: float = 300.0
    storm_localised_share: float = 0.5


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


class GridEvents:
    def __init__(self, topology: Topology, config: EventConfig | None = None):
        self.topo = topology
        self.cfg = config or EventConfig()
        self.last_seen: dict[str, float] = {}  # meter -> bridge clock of its last message
        self.down: dict[str, tuple[str, dt.datetime]] = {}  # meter -> (alertname, since)
        self.active: dict[tuple[str, str], Alert] = {}  # (alertname, asset id) -> firing alert
        self._storm: deque[tuple[float, str]] = deque()  # (bridge clock, feeder) of fired alerts

    # ------------------------------------------------------------------ helpers
    def _fire(
        self, name: str, severity: str, asset_type: str, asset_id: str, at: dt.datetime, summary: str, **kw
    ) -> Alert | None:
        key = (name, asset_id)
        if key in self.active:
            return None
        a = self.topo.alert(
            name, severity, asset_type, asset_id, starts_at=at, summary=summary, runbook=RUNBOOK[name], **kw
        )
        self.active[key] = a
        return a

    def _resolve(self, name: str, asset_id: str, at: dt.datetime) -> Alert | None:
        a = self.active.pop((name, asset_id), None)
        return self.topo.resolve(a, at) if a is not None else None

    def _meter_down(self, meter: str, name: str, at: dt.datetime, why: str) -> list[Alert]:
        out = []
        if meter not in self.down:
            self.down[meter] = (name, at)
            a = self._fire(name, "warning", "meter", meter, at, why)
            if a:
                out.append(a)
            out += self._check_transformer(self.topo.meter_transformer.get(meter), at)
        return out

    def _meter_up(self, meter: str, at: dt.datetime) -> list[Alert]:
        d = self.down.pop(meter, None)
        if d is None:
            return []
        out = [a for a in (self._resolve(d[0], meter, at),) if a]
        out += self._check_transformer(self.topo.meter_transformer.get(meter), at)
        return out

    def _check_transformer(self, tx: str | None, at: dt.datetime) -> list[Alert]:
        if not tx:
            return []
        meters = self.topo.meters_of_tx.get(tx, [])
        if not meters:
            return []
        n_down = sum(1 for m in meters if m in self.down)
        share = n_down / len(meters)
        if ("TransformerOutage", tx) not in self.active:
            if share >= self.cfg.outage_fraction and n_down >= self.cfg.outage_min_meters:
                a = self._fire(
                    "TransformerOutage",
                    "critical",
                    "transformer",
                    tx,
                    at,
                    f"{n_down} of {len(meters)} meters beneath the transformer lost supply or went silent together",
                    value=f"{n_down}/{len(meters)} meters down",
                    limit=f">= {self.cfg.outage_fraction:.0%} of meters down",
                )
                return [a] if a else []
        elif share < self.cfg.outage_clear_fraction:
            a = self._resolve("TransformerOutage", tx, at)
            return [a] if a else []
        return []

    # ------------------------------------------------------------------ inputs
    def observe(self, accepted: dict[str, pl.DataFrame], status: list[StatusEvent]) -> list[Alert]:
        out: list[Alert] = []
        df = accepted.get("meter_readings")
        if df is not None and df.height:
            ids = df["meter_id"].to_list()
            self.last_seen.update(zip(ids, df["_received_at"].to_list()))
            # only meters whose state may change: no supply now, or down before (plain Python on the ids: a
            # polars group_by per batch cost more than the whole dict update)
            nosupply = np.isnan(df["voltage"].to_numpy().astype(np.float64))  # null -> NaN (no NaN passes the contract)
            idx = []
            if self.down or nosupply.any():
                idx = [k for k, (m, n) in enumerate(zip(ids, nosupply.tolist())) if n or m in self.down]
            if idx:
                last = (
                    df[idx]
                    .sort("reading_time")
                    .group_by("meter_id", maintain_order=True)
                    .agg(pl.col("voltage").last().is_null().alias("_nosupply"), pl.col("reading_time").last())
                )
                for meter, nosupply, t in zip(last["meter_id"], last["_nosupply"], last["reading_time"]):
                    if nosupply:
                        if self.down.get(meter, ("",))[0] != "MeterSupplyLost":
                            out += self._meter_up(meter, t)
                            out += self._meter_down(
                                meter, "MeterSupplyLost", t, "the meter reports no supply voltage (last gasp)"
                            )
                    else:
                        out += self._meter_up(meter, t)
        for ev in status:
            if ev.device_type != "meter":
                continue
            self.last_seen[ev.device_id] = ev.time.timestamp()
            if ev.status == "offline":
                out += self._meter_down(
                    ev.device_id, "MeterOffline", ev.time, f"the meter disconnected ({ev.reason or 'MQTT last will'})"
                )
            elif ev.status == "last_gasp":
                out += self._meter_down(ev.device_id, "MeterSupplyLost", ev.time, "the meter sent its last gasp")
            elif self.down.get(ev.device_id, ("",))[0] == "MeterOffline":
                out += self._meter_up(ev.device_id, ev.time)
        return out

    def tick(self, now: float) -> list[Alert]:
        """Missed heartbeats and the alert-storm window, on the bridge clock."""
        out: list[Alert] = []
        limit = now - self.cfg.heartbeat_timeout_s
        silent = [m for m, t in self.last_seen.items() if t < limit and m not in self.down]
        for m in silent:
            out += self._meter_down(
                m,
                "MeterOffline",
                _utc(self.last_seen[m] + self.cfg.heartbeat_timeout_s),
                f"no message for {self.cfg.heartbeat_timeout_s:.0f} s (missed heartbeat window)",
            )
        out += self._storm_check(now)
        return out

    def count_fired(self, alerts: list[Alert], now: float) -> None:
        """Feed the storm window with the rule/model alerts that fired."""
        for a in alerts:
            if not a.resolved:
                self._storm.append((now, a.labels.get("feeder", "")))

    def _storm_check(self, now: float) -> list[Alert]:
        while self._storm and self._storm[0][0] < now - self.cfg.storm_window_s:
            self._storm.popleft()
        n = len(self._storm)
        active = next((k for k in self.active if k[0] == "AlertStorm"), None)
        if active is None and n > self.cfg.storm_threshold:
            feeder, top = Counter(f for _, f in self._storm).most_common(1)[0]
            at = _utc(now)
            window = f"{n} alerts in {self.cfg.storm_window_s:.0f} s"
            if feeder and top / n > self.cfg.storm_localised_share:
                a = self._fire(
                    "AlertStorm",
                    "warning",
                    "feeder",
                    feeder,
                    at,
                    f"alert storm localised on feeder {feeder} ({top} of {n}): likely equipment",
                    value=window,
                    limit=f"> {self.cfg.storm_threshold}",
                    extra_labels={"scope": "localised"},
                )
            else:
                feeders = len({f for _, f in self._storm})
                a = self._fire(
                    "AlertStorm",
                    "warning",
                    "system",
                    "stream",
                    at,
                    f"alert storm across {feeders} feeders: likely a data-quality problem",
                    value=window,
                    limit=f"> {self.cfg.storm_threshold}",
                    extra_labels={"scope": "widespread"},
                )
            return [a] if a else []
        if active is not None and n < self.cfg.storm_clear:
            a = self._resolve(*active, _utc(now))
            return [a] if a else []
        return []
