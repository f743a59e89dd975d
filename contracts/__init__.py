"""gridlake's contracts: every table and raw-source declaration, the reason codes with their texts and
the time conventions, declared once. The ground floor: this package imports nothing else of gridlake, and
every other package reads its declarations from here (``from contracts import X``).

Modules by domain: ``tables`` (Column/Table base types), ``days`` (time zone, local-day bounds), ``reasons``
(reason codes and texts), ``sources`` (raw landing sources and their bronze/silver/quarantine/manifest
tables), ``reference`` (reference and simulator-truth tables), ``load`` (gold load), ``forecasts``, ``grid``
(grid ML), ``optimisation``, ``alerts`` (the bridge's PostgreSQL delivery tables), ``stream`` (dead letters),
``registry`` (``TABLES``: every Delta table by name), ``profile`` (the utility profile: ``load_profile()``).
"""

from contracts.alerts import ALERT_DELIVERIES, ALERTS, BRIDGE_PG_TABLES
from contracts.days import DEFAULT_TIMEZONE, day_bounds_utc
from contracts.forecasts import (
    FORECAST_TABLES,
    GOLD_LOAD_FORECAST,
    GOLD_PEAK_DEMAND,
    GOLD_SOLAR_FORECAST,
    SYSTEM_ENTITY,
)
from contracts.grid import (
    ALERT_STATUSES,
    ASSET_TYPES,
    GOLD_ALERTS,
    GOLD_ANOMALY_SCORES,
    GOLD_CUSTOMER_SEGMENTS,
    GOLD_DR_EVENTS,
    GOLD_DR_PARTICIPATIONS,
    GOLD_RECOMMENDATIONS,
    GOLD_TRANSFORMER_RISK,
    GRID_TABLES,
    RECOMMENDATION_KINDS,
    RULES,
    SEVERITIES,
)
from contracts.load import LOAD_TABLES
from contracts.optimisation import (
    EV_STRATEGIES,
    GOLD_BATTERY_DAILY,
    GOLD_BATTERY_SCHEDULE,
    GOLD_EV_SCHEDULE,
    GOLD_EV_SESSIONS,
    GOLD_N1_SCREENING,
    GOLD_OPF_DISPATCH,
    GOLD_UC_SCHEDULE,
    N1_KINDS,
    OPF_KINDS,
    OPT_TABLES,
    SECURITY_TABLES,
)
from contracts.profile import (
    DEMO_PROFILE,
    AlertBands,
    Bands,
    DemandResponse,
    PeakWindow,
    ProfileError,
    Quality,
    RetailTariff,
    Tariffs,
    UtilityProfile,
    WholesaleTariff,
    load_profile,
    read_profile,
)
from contracts.reasons import REASON_CODES, REASON_TEXT, STREAM_REASON_CODES, STREAM_REASON_TEXT
from contracts.reference import REFERENCE_TABLES, TRUTH_TABLES
from contracts.registry import TABLES, table
from contracts.sources import QUALITY_FLAGS, QUARANTINE_RECORD_COLUMNS, SOURCE_TABLES, SOURCES, Source
from contracts.stream import STREAM_DEAD_LETTERS, STREAM_TABLES
from contracts.tables import UTC_TS, Column, Table

__all__ = [
    "AlertBands",
    "Bands",
    "DEMO_PROFILE",
    "DemandResponse",
    "PeakWindow",
    "ProfileError",
    "Quality",
    "RetailTariff",
    "Tariffs",
    "UtilityProfile",
    "WholesaleTariff",
    "load_profile",
    "read_profile",
    "ALERTS",
    "ALERT_DELIVERIES",
    "ALERT_STATUSES",
    "ASSET_TYPES",
    "BRIDGE_PG_TABLES",
    "Column",
    "DEFAULT_TIMEZONE",
    "EV_STRATEGIES",
    "FORECAST_TABLES",
    "GOLD_ALERTS",
    "GOLD_ANOMALY_SCORES",
    "GOLD_BATTERY_DAILY",
    "GOLD_BATTERY_SCHEDULE",
    "GOLD_CUSTOMER_SEGMENTS",
    "GOLD_DR_EVENTS",
    "GOLD_DR_PARTICIPATIONS",
    "GOLD_EV_SCHEDULE",
    "GOLD_EV_SESSIONS",
    "GOLD_LOAD_FORECAST",
    "GOLD_N1_SCREENING",
    "GOLD_OPF_DISPATCH",
    "GOLD_PEAK_DEMAND",
    "GOLD_RECOMMENDATIONS",
    "GOLD_SOLAR_FORECAST",
    "GOLD_TRANSFORMER_RISK",
    "GOLD_UC_SCHEDULE",
    "GRID_TABLES",
    "LOAD_TABLES",
    "N1_KINDS",
    "OPF_KINDS",
    "OPT_TABLES",
    "QUALITY_FLAGS",
    "QUARANTINE_RECORD_COLUMNS",
    "REASON_CODES",
    "REASON_TEXT",
    "RECOMMENDATION_KINDS",
    "REFERENCE_TABLES",
    "RULES",
    "SECURITY_TABLES",
    "SEVERITIES",
    "SOURCES",
    "SOURCE_TABLES",
    "STREAM_DEAD_LETTERS",
    "STREAM_REASON_CODES",
    "STREAM_REASON_TEXT",
    "STREAM_TABLES",
    "SYSTEM_ENTITY",
    "Source",
    "TABLES",
    "TRUTH_TABLES",
    "Table",
    "UTC_TS",
    "day_bounds_utc",
    "table",
]
