"""Reference tables (meters, transformers, weather stations: the known entity ids) and the
simulator's ground-truth tables."""

from __future__ import annotations

import polars as pl

from contracts.tables import UTC_TS, Column, Table

_REFERENCE = (
    Table(
        "ref_meters",
        "reference",
        (
            Column("meter_id", pl.Utf8, False),
            Column("customer_id", pl.Utf8, False),
            Column("transformer_id", pl.Utf8, False),
            Column("feeder_id", pl.Utf8, False),
            Column("substation_id", pl.Utf8, False),
            Column("tariff", pl.Utf8, False, "residential | commercial | industrial"),
            Column("latitude", pl.Float64, False),
            Column("longitude", pl.Float64, False),
            Column("has_pv", pl.Boolean, False),
            Column("pv_kw_dc", pl.Float64, False, "PV array DC rating, 0 if none"),
            Column("pv_tilt_deg", pl.Float64, False),
            Column("pv_azimuth_deg", pl.Float64, False),
            Column("has_ev", pl.Boolean, False),
            Column("has_battery", pl.Boolean, False),
            Column("dr_opt_in", pl.Boolean, False, "enrolled for demand-response events"),
            Column("interval_minutes", pl.Int32, False, "reading interval: 15 or 30"),
        ),
        "meters and where they sit in the network",
        key=("meter_id",),
    ),
    Table(
        "ref_transformers",
        "reference",
        (
            Column("transformer_id", pl.Utf8, False),
            Column("feeder_id", pl.Utf8, False),
            Column("substation_id", pl.Utf8, False),
            Column("rating_kva", pl.Float64, False),
            Column("install_year", pl.Int32, False),
            Column("last_maintenance", pl.Date, False),
        ),
        "distribution transformers",
        key=("transformer_id",),
    ),
    Table(
        "ref_weather_stations",
        "reference",
        (
            Column("station_id", pl.Utf8, False),
            Column("name", pl.Utf8, False),
            Column("latitude", pl.Float64, False),
            Column("longitude", pl.Float64, False),
            Column("altitude_m", pl.Float64, False),
        ),
        "weather stations",
        key=("station_id",),
    ),
)

_TRUTH = (
    Table(
        "truth_customers",
        "truth",
        (
            Column("meter_id", pl.Utf8, False),
            Column("archetype", pl.Utf8, False, "the simulator's customer archetype (segment truth)"),
        ),
        "simulator ground truth: which archetype generated each meter",
        key=("meter_id",),
    ),
    Table(
        "truth_events",
        "truth",
        (
            Column("event_id", pl.Utf8, False),
            Column(
                "event_type",
                pl.Utf8,
                False,
                "voltage_sag | stuck_meter | zero_meter | theft | transformer_overheat | transformer_failure",
            ),
            Column("asset_type", pl.Utf8, False, "meter | transformer"),
            Column("asset_id", pl.Utf8, False),
            Column("start_time", UTC_TS, False),
            Column("end_time", UTC_TS, False),
            Column("magnitude", pl.Float64, True, "event-specific size (sag depth, theft share, degC rise)"),
            Column("note", pl.Utf8, True),
        ),
        "simulator ground truth: injected events with their exact windows",
        key=("event_id",),
    ),
)

REFERENCE_TABLES: dict[str, Table] = {t.name: t for t in _REFERENCE}
TRUTH_TABLES: dict[str, Table] = {t.name: t for t in _TRUTH}
