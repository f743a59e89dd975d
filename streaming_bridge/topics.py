"""The bridge's MQTT topic scheme (documented in streaming_bridge/README.md).

``<prefix>`` defaults to ``gridlake/v1``; ids are the reference ids (``ref_meters.meter_id``, ...).

| topic | payload | source |
|---|---|---|
| ``<prefix>/meter/<meter_id>/reading`` | one reading object (silver ``meter_readings`` fields) | meter_readings |
| ``<prefix>/headend/<headend_id>/batch`` | ``{"readings": [reading, ...]}`` or a JSON array of readings | meter_readings |
| ``<prefix>/scada/<transformer_id>/telemetry`` | one sample object (silver ``scada`` fields) | scada |
| ``<prefix>/status/<meter|transformer|headend>/<id>`` | ``{"status": "online|offline|heartbeat|last_gasp", "time": ISO}`` (also the device's MQTT last will) | status |
| ``<prefix>/deadletter/<source>`` | published by the bridge: ``{"topic", "reason_code", "field", "value", "detail", ...}`` | - |
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "gridlake/v1"
STATUS_DEVICE_TYPES = ("meter", "transformer", "headend")
STATUSES = ("online", "offline", "heartbeat", "last_gasp")
_ID = r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")


@dataclass(frozen=True)
class Route:
    kind: str  # meter | headend | scada | status
    source: str  # meter_readings | scada | status
    entity: str  # id from the topic (meter, head-end, transformer or device id)
    device_type: str = ""  # status topics only


@dataclass(frozen=True)
class Topics:
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(f"bad MQTT topic prefix {self.prefix!r}: use a/b/c of [A-Za-z0-9_-]")
        p = re.escape(self.prefix)
        object.__setattr__(
            self,
            "_re",
            re.compile(
                rf"^{p}/(?:(meter)/({_ID})/reading|(headend)/({_ID})/batch|(scada)/({_ID})/telemetry|(status)/(meter|transformer|headend)/({_ID}))$"
            ),
        )

    # ------------------------------------------------------------------ names
    def meter(self, meter_id: str) -> str:
        return f"{self.prefix}/meter/{meter_id}/reading"

    def headend(self, headend_id: str) -> str:
        return f"{self.prefix}/headend/{headend_id}/batch"

    def scada(self, transformer_id: str) -> str:
        return f"{self.prefix}/scada/{transformer_id}/telemetry"

    def status(self, device_type: str, device_id: str) -> str:
        if device_type not in STATUS_DEVICE_TYPES:
            raise ValueError(f"device type {device_type!r} not one of {STATUS_DEVICE_TYPES}")
        return f"{self.prefix}/status/{device_type}/{device_id}"

    def deadletter(self, source: str) -> str:
        return f"{self.prefix}/deadletter/{source or 'unknown'}"

    def subscriptions(self) -> list[str]:
        p = self.prefix
        return [f"{p}/meter/+/reading", f"{p}/headend/+/batch", f"{p}/scada/+/telemetry", f"{p}/status/#"]

    # ------------------------------------------------------------------ parsing
    def route(self, topic: str) -> Route | None:
        """What a topic carries, or None for a topic outside the scheme."""
        m = self._re.match(topic)  # type: ignore[attr-defined]
        if not m:
            return None
        g = m.groups()
        if g[0]:
            return Route("meter", "meter_readings", g[1])
        if g[2]:
            return Route("headend", "meter_readings", g[3])
        if g[4]:
            return Route("scada", "scada", g[5])
        return Route("status", "status", g[8], g[7])
