"""Gold load tables: hourly, daily and monthly load per meter, transformer and feeder, and daily grid health."""

from __future__ import annotations

import polars as pl

from contracts.tables import _DATE, UTC_TS, Column, Table

_GOLD_LOAD_COLUMNS = (
    Column("level", pl.Utf8, False, "meter | transformer | feeder", allowed=("meter", "transformer", "feeder")),
    Column("entity_id", pl.Utf8, False),
    Column("period_start", UTC_TS, False, "start of the hour/day/month, UTC"),
    Column("energy_kwh", pl.Float64, False, "net energy imported"),
    Column("mean_kw", pl.Float64, False),
    Column("peak_kw", pl.Float64, False, "highest interval demand"),
    Column("n_readings", pl.Int64, False),
    Column("n_flagged", pl.Int64, False, "readings flagged warning or anomaly"),
    Column("rating_kva", pl.Float64, True, "transformer rating (transformer level only)"),
    Column("loading_pct_max", pl.Float64, True, "peak kW / rating (transformer level only)"),
)

_GOLD = (
    Table(
        "gold_load_hourly",
        "gold",
        (_DATE,) + _GOLD_LOAD_COLUMNS,
        "hourly load per meter, transformer and feeder",
        partition_by=("date",),
        key=("level", "entity_id", "period_start"),
    ),
    Table(
        "gold_load_daily",
        "gold",
        (_DATE,) + _GOLD_LOAD_COLUMNS,
        "daily load per meter, transformer and feeder",
        partition_by=("date",),
        key=("level", "entity_id", "period_start"),
    ),
    Table(
        "gold_load_monthly",
        "gold",
        (Column("month", pl.Date, False, "first day of the local month; the monthly partition key"),)
        + _GOLD_LOAD_COLUMNS
        + (Column("days", pl.Int64, False, "days with data in the month"),),
        "monthly load per meter, transformer and feeder",
        partition_by=("month",),
        key=("level", "entity_id", "period_start"),
    ),
    Table(
        "gold_grid_health_daily",
        "gold",
        (
            _DATE,
            Column("feeder_id", pl.Utf8, False),
            Column("n_readings", pl.Int64, False),
            Column("voltage_min", pl.Float64, True),
            Column("voltage_p05", pl.Float64, True),
            Column("voltage_p50", pl.Float64, True),
            Column("voltage_p95", pl.Float64, True),
            Column("voltage_max", pl.Float64, True),
            Column("pct_voltage_outside_210_250", pl.Float64, False),
            Column("n_anomaly_flags", pl.Int64, False),
            Column("n_transformers", pl.Int64, False),
            Column("transformers_over_80pct", pl.Int64, False),
            Column("transformers_over_100pct", pl.Int64, False),
            Column("max_loading_pct", pl.Float64, True),
            Column("max_hot_spot_c", pl.Float64, True),
        ),
        "daily grid health per feeder: voltage distribution and transformer loading",
        partition_by=("date",),
        key=("feeder_id",),
    ),
)

LOAD_TABLES: dict[str, Table] = {t.name: t for t in _GOLD}
