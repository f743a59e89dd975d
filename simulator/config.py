"""Simulator configuration: fleet size, period, clock, and how often each kind of trouble happens.

Everything the simulator does is a pure function of a :class:`SimConfig` (plus the day asked for), so
a config is the complete recipe for a reproducible data set. Validation happens here, up front, with
messages naming the offending field, so a bad config fails before hours of generation, not during.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contracts import DEFAULT_TIMEZONE

from .archetypes import ARCHETYPE_NAMES


def _check_range(owner: str, name: str, lo_hi: tuple[float, float], lo: float, hi: float | None = None) -> None:
    a, b = lo_hi
    if not (a <= b):
        raise ValueError(f"{owner}.{name}: range {lo_hi} must be (low, high) with low <= high")
    if a < lo or (hi is not None and b > hi):
        raise ValueError(f"{owner}.{name}: range {lo_hi} must lie within [{lo}, {hi if hi is not None else 'inf'}]")


@dataclass(frozen=True)
class EventRates:
    """How often labelled events are injected, and how big/long they are.

    Rates are expected events per asset-year; the simulator draws a Poisson count per kind for the
    whole period up front (so the truth table exists before any day is generated). The defaults give,
    for a 2,000-meter / ~200-transformer fleet over a year, about 60 sags, 20 stuck meters, 20 zero
    meters, 20 thefts and ~8 transformer failures (4 %): enough positives to learn from, rare enough to be
    anomalies.
    """

    sags_per_transformer_year: float = 0.3
    stuck_per_meter_year: float = 0.01
    zero_per_meter_year: float = 0.01
    theft_per_meter_year: float = 0.01
    #: mean failure rate; each transformer's own rate scales with its age, maintenance and loading
    failures_per_transformer_year: float = 0.04
    sag_minutes: tuple[float, float] = (5.0, 60.0)
    sag_depth: tuple[float, float] = (0.10, 0.30)
    stuck_hours: tuple[float, float] = (6.0, 120.0)
    zero_hours: tuple[float, float] = (6.0, 120.0)
    theft_days: tuple[float, float] = (3.0, 42.0)
    #: share of the true consumption that theft hides from the meter
    theft_share: tuple[float, float] = (0.3, 0.8)
    #: hours from the start of overheating to the failure (the prediction horizon to learn)
    failure_lead_hours: tuple[float, float] = (48.0, 72.0)
    #: extra top-oil rise (K) reached at the moment of failure (degrading cooling / insulation)
    overheat_rise_c: tuple[float, float] = (25.0, 45.0)
    repair_hours: tuple[float, float] = (4.0, 36.0)

    def __post_init__(self) -> None:
        for name in (
            "sags_per_transformer_year",
            "stuck_per_meter_year",
            "zero_per_meter_year",
            "theft_per_meter_year",
            "failures_per_transformer_year",
        ):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ValueError(f"EventRates.{name} must be a finite number >= 0, got {v!r}")
        _check_range("EventRates", "sag_minutes", self.sag_minutes, 1.0, 24 * 60.0)
        _check_range("EventRates", "sag_depth", self.sag_depth, 0.0, 0.9)
        _check_range("EventRates", "stuck_hours", self.stuck_hours, 0.5)
        _check_range("EventRates", "zero_hours", self.zero_hours, 0.5)
        _check_range("EventRates", "theft_days", self.theft_days, 0.1)
        _check_range("EventRates", "theft_share", self.theft_share, 0.0, 1.0)
        _check_range("EventRates", "failure_lead_hours", self.failure_lead_hours, 1.0)
        _check_range("EventRates", "overheat_rise_c", self.overheat_rise_c, 0.0, 150.0)
        _check_range("EventRates", "repair_hours", self.repair_hours, 0.5)


@dataclass(frozen=True)
class IncidentRates:
    """How a utility's operations record the true events (the ``incidents`` landing source).

    Only a share of the true events is ever confirmed (``confirm_share`` per event type); each
    confirmed one is reported some hours after it starts and confirmed (closed) after a further
    investigation delay (``*_hours``: uniform (low, high) per type). A few records name the wrong
    type (``wrong_type_share``) and a few are false reports on healthy assets
    (``false_reports_per_1000_assets_month``, outcome ``false_report``). An incident confirmed after
    the simulated period is not recorded yet (labels arrive late).
    """

    confirm_share: dict[str, float] = field(
        default_factory=lambda: {
            "voltage_sag": 0.6,
            "stuck_meter": 0.6,
            "zero_meter": 0.6,
            "transformer_overheat": 0.6,
            "transformer_failure": 0.9,
            "theft": 0.3,
        }
    )
    #: hours from the event's start to the first report, per type
    report_hours: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "voltage_sag": (1.0, 72.0),
            "stuck_meter": (24.0, 21 * 24.0),
            "zero_meter": (12.0, 14 * 24.0),
            "transformer_overheat": (1.0, 48.0),
            "transformer_failure": (0.1, 2.0),
            "theft": (2 * 24.0, 21 * 24.0),
        }
    )
    #: hours from the report to the confirmation (crew visit, investigation), per type
    confirm_hours: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "voltage_sag": (2.0, 7 * 24.0),
            "stuck_meter": (24.0, 14 * 24.0),
            "zero_meter": (24.0, 14 * 24.0),
            "transformer_overheat": (2.0, 72.0),
            "transformer_failure": (1.0, 12.0),
            "theft": (24.0, 14 * 24.0),
        }
    )
    wrong_type_share: float = 0.03
    false_reports_per_1000_assets_month: float = 5.0

    def __post_init__(self) -> None:
        from contracts import INCIDENT_TYPES

        for name in ("confirm_share", "report_hours", "confirm_hours"):
            d = getattr(self, name)
            missing = sorted(set(INCIDENT_TYPES) - set(d))
            if missing or set(d) - set(INCIDENT_TYPES):
                raise ValueError(
                    f"IncidentRates.{name}: need exactly the types {list(INCIDENT_TYPES)}, got {sorted(d)}"
                )
        for t, v in self.confirm_share.items():
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"IncidentRates.confirm_share[{t!r}] must be in [0, 1], got {v!r}")
        for name in ("report_hours", "confirm_hours"):
            for t, r in getattr(self, name).items():
                _check_range("IncidentRates", f"{name}[{t!r}]", r, 0.0)
        if not (0.0 <= self.wrong_type_share <= 0.5):
            raise ValueError(f"IncidentRates.wrong_type_share must be in [0, 0.5], got {self.wrong_type_share!r}")
        if not (
            self.false_reports_per_1000_assets_month >= 0 and math.isfinite(self.false_reports_per_1000_assets_month)
        ):
            raise ValueError(
                f"IncidentRates.false_reports_per_1000_assets_month must be >= 0, got {self.false_reports_per_1000_assets_month!r}"
            )


@dataclass(frozen=True)
class SimConfig:
    """The complete recipe for a simulated fleet and period.

    ``start``/``days`` are utility-local calendar days in ``timezone``. ``n_feeders`` and
    ``n_substations`` default to sizes typical of a distribution utility (about 250 meters per feeder,
    up to 4 feeders per substation). ``archetype_weights`` maps archetype names to relative weights;
    missing names get weight 0, ``None`` means an even mix (best for clustering benchmarks).
    """

    n_meters: int = 2000
    start: date = date(2026, 1, 1)
    days: int = 365
    interval_minutes: int = 30
    seed: int = 7
    timezone: str = DEFAULT_TIMEZONE
    n_feeders: int | None = None
    n_substations: int | None = None
    meters_per_transformer: tuple[int, int] = (8, 12)
    scada_interval_minutes: int = 15
    archetype_weights: dict[str, float] | None = None
    #: each customer's daily shape blends in up to this share of another archetype's shape, so real
    #: households that are "mostly evening peak, a bit of working from home" exist and clustering
    #: is not trivially easy
    profile_blend: float = 0.25
    events: EventRates = field(default_factory=EventRates)
    #: how operations record the events (the incidents landing source)
    incidents: IncidentRates = field(default_factory=IncidentRates)
    #: what the meters below a failed transformer report: "zero" (0 kWh/kW/A, voltage and power
    #: factor null because there is no supply to measure) or "absent" (no readings at all)
    outage_readings: str = "zero"

    def __post_init__(self) -> None:
        if not isinstance(self.n_meters, int) or self.n_meters < 1:
            raise ValueError(f"SimConfig.n_meters must be a positive int, got {self.n_meters!r}")
        if not isinstance(self.start, date):
            raise ValueError(f"SimConfig.start must be a datetime.date, got {self.start!r}")
        if not isinstance(self.days, int) or self.days < 1:
            raise ValueError(f"SimConfig.days must be a positive int, got {self.days!r}")
        if self.interval_minutes not in (15, 30):
            raise ValueError(f"SimConfig.interval_minutes must be 15 or 30, got {self.interval_minutes!r}")
        if self.scada_interval_minutes not in (5, 10, 15, 30):
            raise ValueError(
                f"SimConfig.scada_interval_minutes must be one of 5, 10, 15, 30, got {self.scada_interval_minutes!r}"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SimConfig.seed must be an int >= 0, got {self.seed!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"SimConfig.timezone: unknown IANA time zone {self.timezone!r}") from None
        lo, hi = self.meters_per_transformer
        if not (1 <= lo <= hi):
            raise ValueError(
                f"SimConfig.meters_per_transformer must be (low, high) with 1 <= low <= high, got {(lo, hi)}"
            )
        if self.n_feeders is not None and not (1 <= self.n_feeders):
            raise ValueError(f"SimConfig.n_feeders must be >= 1, got {self.n_feeders!r}")
        if self.n_substations is not None and not (1 <= self.n_substations):
            raise ValueError(f"SimConfig.n_substations must be >= 1, got {self.n_substations!r}")
        if self.archetype_weights is not None:
            unknown = sorted(set(self.archetype_weights) - set(ARCHETYPE_NAMES))
            if unknown:
                raise ValueError(
                    f"SimConfig.archetype_weights: unknown archetype(s) {unknown}; known: {list(ARCHETYPE_NAMES)}"
                )
            bad = {k: v for k, v in self.archetype_weights.items() if not (v >= 0 and math.isfinite(v))}
            if bad or sum(self.archetype_weights.values()) <= 0:
                raise ValueError(
                    f"SimConfig.archetype_weights: weights must be finite, >= 0 and not all 0, got {self.archetype_weights}"
                )
        if not (isinstance(self.profile_blend, (int, float)) and 0.0 <= self.profile_blend <= 0.5):
            raise ValueError(f"SimConfig.profile_blend must be in [0, 0.5], got {self.profile_blend!r}")
        if self.outage_readings not in ("zero", "absent"):
            raise ValueError(f"SimConfig.outage_readings must be 'zero' or 'absent', got {self.outage_readings!r}")
        if not isinstance(self.incidents, IncidentRates):
            raise ValueError(f"SimConfig.incidents must be an IncidentRates, got {type(self.incidents).__name__}")
        if not isinstance(self.events, EventRates):
            raise ValueError(f"SimConfig.events must be an EventRates, got {type(self.events).__name__}")

    @property
    def end(self) -> date:
        """The last simulated local day (inclusive)."""
        return self.start + timedelta(days=self.days - 1)

    @property
    def feeders(self) -> int:
        return self.n_feeders if self.n_feeders is not None else max(1, round(self.n_meters / 250))

    @property
    def substations(self) -> int:
        return self.n_substations if self.n_substations is not None else max(1, math.ceil(self.feeders / 4))

    def check_day(self, d: date) -> date:
        """Return ``d`` if it lies in the simulated period, else raise a ValueError saying so."""
        if not isinstance(d, date):
            raise ValueError(f"day must be a datetime.date, got {d!r}")
        if not (self.start <= d <= self.end):
            raise ValueError(f"day {d} is outside the simulated period {self.start}..{self.end}")
        return d


@dataclass(frozen=True)
class BadRecordRates:
    """Which faults :func:`simulator.write_landing_day` injects into the landing files.

    Row-level faults are *rates* (share of data rows, each row gets at most one fault); they apply
    where the format can carry them (a Parquet column is typed, so ``wrong_type`` and
    ``malformed_line`` only hit CSV and JSON-lines files). File-level faults are *counts* of files per
    source and day. All zero (the default) means a clean day. The names match the quarantine reason
    codes in ``contracts.REASON_CODES`` so a manifest reconciles one-to-one with a quarantine table.
    """

    malformed_line: float = 0.0
    wrong_type: float = 0.0
    out_of_range: float = 0.0
    duplicate: float = 0.0
    unknown_entity: float = 0.0
    #: extra files per source holding readings of the previous day
    late_files: int = 0
    #: extra header-only files per source
    empty_files: int = 0
    #: data files per source in which one contract column carries a wrong name
    renamed_column_files: int = 0

    ROW_CLASSES = ("malformed_line", "wrong_type", "out_of_range", "duplicate", "unknown_entity")

    def __post_init__(self) -> None:
        for name in self.ROW_CLASSES:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"BadRecordRates.{name} must be a rate in [0, 1], got {v!r}")
        total = sum(getattr(self, n) for n in self.ROW_CLASSES)
        if total > 0.5:
            raise ValueError(f"BadRecordRates: row-level rates sum to {total:.3f}; keep them <= 0.5")
        for name in ("late_files", "empty_files", "renamed_column_files"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 0):
                raise ValueError(f"BadRecordRates.{name} must be an int >= 0, got {v!r}")

    @property
    def clean(self) -> bool:
        return all(getattr(self, n) == 0 for n in self.ROW_CLASSES) and not (
            self.late_files or self.empty_files or self.renamed_column_files
        )
