"""Every gridlake table, declared once.

The writer (lake.delta), the quality checks (quality.expectations) and the DuckDB views
(lake.catalog) all read these declarations; nothing else spells out a column list.

Conventions
- timestamps in silver and gold are UTC (``Datetime("us", "UTC")``);
- ``date`` is the *utility's local* calendar day (the daily partition key), a ``Date``;
- bronze keeps every raw field as text, exactly as received, plus lineage columns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

UTC_TS = pl.Datetime("us", "UTC")

#: The utility's time zone. Local meter clocks, daily partitions and schedules use it.
DEFAULT_TIMEZONE = "America/New_York"


def day_bounds_utc(day: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where local ``day`` starts and the next local day starts (23/24/25 h apart)."""
    start = lambda d: pl.select(pl.lit(dt.datetime.combine(d, dt.time())).dt.replace_time_zone(tz, non_existent="raise").dt.convert_time_zone("UTC")).item()  # noqa: E731
    return start(day), start(day + dt.timedelta(days=1))


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    nullable: bool = True
    description: str = ""
    #: hard validity bounds: outside them a silver row is rejected (quarantined)
    min: float | None = None
    max: float | None = None
    #: allowed values for categorical text columns
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Table:
    name: str
    layer: str  # reference | bronze | silver | quarantine | manifest | gold | truth
    columns: tuple[Column, ...]
    description: str = ""
    partition_by: tuple[str, ...] = ()
    key: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.columns})

    def arrow_schema(self) -> pa.Schema:
        empty = pl.DataFrame(schema=self.polars_schema()).to_arrow()
        fields = [f.with_nullable(self.column(f.name).nullable) for f in empty.schema]
        return pa.schema(fields)

    def conform(self, df: pl.DataFrame) -> pl.DataFrame:
        """Select and cast ``df`` to exactly this table's columns (in order).

        Raises a ValueError naming the table and the missing columns instead of a bare KeyError.
        """
        missing = [c for c in self.column_names if c not in df.columns]
        if missing:
            raise ValueError(f"table {self.name}: frame lacks column(s) {missing}; has {df.columns}")
        return df.select([pl.col(c.name).cast(c.dtype) for c in self.columns])


# --------------------------------------------------------------------------------------
# Raw sources: what a landing file must carry. Field bounds are the utility's acceptance
# rules (quality.rules adds the softer 'warning'/'anomaly' flags on top).
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A raw feed landing as files: one entity id column, one time column, measures."""

    name: str  # e.g. "meter_readings"
    entity: str  # id column, checked against the reference table
    time: str  # timestamp column as received (local naive, ISO with offset, or UTC)
    measures: tuple[Column, ...]
    reference: str  # reference table holding the known entity ids
    description: str = ""
    #: columns accepted as synonyms in landing files (renamed on read), old name -> contract name
    #: (left out of the hash, so a Source can key a cache; equality still compares it)
    aliases: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def raw_columns(self) -> list[str]:
        return [self.entity, self.time] + [m.name for m in self.measures]

    @property
    def bronze(self) -> Table:
        return TABLES[f"bronze_{self.name}_files"]

    @property
    def silver(self) -> Table:
        return TABLES[f"silver_{self.name}"]

    @property
    def quarantine(self) -> Table:
        return TABLES[f"quarantine_{self.name}"]

    @property
    def manifest(self) -> Table:
        """The day-publication log: a day's bronze index, silver and quarantine are visible to
        readers only at the Delta versions its latest row names (lake.manifest)."""
        return TABLES[f"ingest_manifest_{self.name}"]

    @property
    def day_tables(self) -> dict[str, Table]:
        """The three tables one ingestion of a day replaces together, by role."""
        return {"bronze": self.bronze, "silver": self.silver, "quarantine": self.quarantine}


def _f(name: str, description: str, lo: float | None = None, hi: float | None = None, required: bool = True) -> Column:
    """A float measure with optional hard bounds; required ones reject an empty value."""
    return Column(name, pl.Float64, not required, description, lo, hi)


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            name="meter_readings",
            entity="meter_id",
            time="reading_time",
            measures=(
                _f("consumption_kwh", "energy imported in the interval (kWh)", 0.0, None),
                _f("demand_kw", "average demand over the interval (kW); negative = export", None, None),
                # empty during a supply outage (the meter still reports 0 kWh): optional, not rejected
                _f("voltage", "RMS voltage (V), nominal 230; empty when there is no supply", 200.0, 260.0, required=False),
                _f("current_amps", "RMS current (A); empty when there is no supply", 0.0, None, required=False),
                _f("power_factor", "displacement power factor; empty when there is no supply", 0.0, 1.0, required=False),
            ),
            reference="ref_meters",
            description="smart-meter interval readings (15 or 30 minutes)",
            aliases={"timestamp": "reading_time", "kwh": "consumption_kwh", "pf": "power_factor"},
        ),
        Source(
            name="scada",
            entity="transformer_id",
            time="sample_time",
            measures=(
                _f("load_kva", "apparent power through the transformer (kVA)", 0.0, None),
                _f("top_oil_temp_c", "top-oil temperature (degC)", -40.0, 200.0),
                _f("hot_spot_temp_c", "winding hot-spot temperature (degC)", -40.0, 250.0),
                _f("voltage_v", "secondary RMS voltage (V)", 0.0, 400.0),
                _f("frequency_hz", "system frequency (Hz)", 45.0, 65.0),
            ),
            reference="ref_transformers",
            description="substation/transformer SCADA telemetry",
            aliases={"timestamp": "sample_time"},
        ),
        Source(
            name="weather",
            entity="station_id",
            time="observation_time",
            measures=(
                _f("ghi_wm2", "global horizontal irradiance (W/m2)", 0.0, 1500.0),
                _f("dni_wm2", "direct normal irradiance (W/m2)", 0.0, 1500.0),
                _f("dhi_wm2", "diffuse horizontal irradiance (W/m2)", 0.0, 1000.0),
                _f("temp_air_c", "dry-bulb air temperature (degC)", -60.0, 60.0),
                _f("wind_speed_ms", "wind speed (m/s)", 0.0, 80.0),
                _f("cloud_cover", "cloud proxy: 1 - clear-sky index of GHI, 0..1", 0.0, 1.0),
            ),
            reference="ref_weather_stations",
            description="weather observations (hourly)",
            aliases={"timestamp": "observation_time"},
        ),
    )
}

_LINEAGE = (
    Column("source_file", pl.Utf8, False, "landing file the record came from (relative key)"),
    Column("source_row", pl.Int64, False, "1-based data row number in that file (header excluded)"),
)
_INGESTED = Column("ingested_at", UTC_TS, False, "when the ingestion run read the file")
_DATE = Column("date", pl.Date, False, "utility-local day; the daily partition key")

QUALITY_FLAGS = ("ok", "warning", "anomaly")

#: Reason codes a quarantined record can carry (quality.rules explains each).
REASON_CODES = (
    "malformed_line",  # CSV/JSON line that cannot be split into the expected fields
    "missing_column",  # the file lacks a contract column (whole file quarantined)
    "empty_file",  # the file has no data rows (recorded once, row 0)
    "unreadable_file",  # the file cannot be decoded at all (recorded once, row 0; blocks the day)
    "unsafe_name",  # the file's name is not a safe landing key: not read (recorded once, row 0; blocks the day)
    "skipped_file",  # hidden/system file (.DS_Store, ._x.csv, Thumbs.db): not data (recorded once, row 0)
    "waived_file",  # an operator waived the file (moved to rejected/ with a reason; recorded once, row 0)
    "duplicate_column",  # two header names map to one contract column (whole file quarantined)
    "missing_value",  # a required field is empty
    "wrong_type",  # a field does not parse as its type
    "out_of_range",  # a value outside the hard acceptance bounds
    "unknown_entity",  # meter/transformer/station id not in the reference table
    "dst_nonexistent_time",  # naive local time inside the spring-forward gap
    "dst_ambiguous_time",  # naive local time in the fall-back hour that cannot be resolved by order
    "late_data",  # reading belongs to an earlier partition than the file's
    "future_data",  # reading belongs to a later partition than the file's
    "duplicate",  # same key already accepted (the later-received copy wins)
)


def _bronze(src: Source) -> Table:
    # Bronze keeps every record *byte-exact*: each landing file is archived unchanged under
    # ``<lake>/bronze_archive/<source>/<date>/...`` and this table indexes the archive, one row per file.
    # A record is addressed by (source_file, source_row), the lineage that silver and quarantine
    # carry; lake.bronze.read_records() gives the record-level view as text.
    cols = (
        _DATE,
        Column("source_file", pl.Utf8, False, "landing key of the file"),
        Column("archive_path", pl.Utf8, False, "where the byte-exact copy lives in the lake"),
        Column("source_format", pl.Utf8, False, "csv | parquet | jsonl | ?"),
        Column("bytes", pl.Int64, False, "file size"),
        Column("records", pl.Int64, False, "data records read from the file (0 if empty/unreadable)"),
        Column("problem", pl.Utf8, True, "file-level reason code (empty_file, unreadable_file, unsafe_name, skipped_file, waived_file, missing_column, duplicate_column)"),
        Column("detail", pl.Utf8, True),
        _INGESTED,
    )
    return Table(
        f"bronze_{src.name}_files",
        "bronze",
        cols,
        f"{src.description}: every landing file archived byte-exact, with its record count",
        partition_by=("date",),
        key=("source_file",),
    )


def _silver(src: Source) -> Table:
    cols = (
        (
            _DATE,
            Column(src.entity, pl.Utf8, False, "entity id"),
            Column(src.time, UTC_TS, False, "timestamp, UTC"),
        )
        + src.measures
        + (
            Column("quality_flag", pl.Utf8, False, "ok | warning | anomaly", allowed=QUALITY_FLAGS),
        )
        + _LINEAGE
    )
    return Table(
        f"silver_{src.name}",
        "silver",
        cols,
        f"{src.description}: typed, UTC, deduplicated, flagged",
        partition_by=("date",),
        key=(src.entity, src.time),
    )


def _quarantine(src: Source) -> Table:
    cols = (
        _DATE,
        Column("reason_code", pl.Utf8, False, "why the record was rejected", allowed=REASON_CODES),
        Column("field", pl.Utf8, True, "the offending field, when one is to blame"),
        Column("value", pl.Utf8, True, "the offending raw value"),
        Column("detail", pl.Utf8, False, "human-readable explanation"),
        Column("target_date", pl.Date, True, "for late/future data: the partition it belongs to"),
        Column("raw_record", pl.Utf8, True, "the whole record as received, JSON"),
    ) + _LINEAGE + (_INGESTED,)
    return Table(
        f"quarantine_{src.name}",
        "quarantine",
        cols,
        f"{src.description}: rejected records with a reason and their source location",
        partition_by=("date",),
    )


def _manifest(src: Source) -> Table:
    # Written last, after the three tables of a day: appending a row publishes the day at the Delta
    # versions it names (append-only: every publication stays, the latest per date is in force).
    def version(role: str) -> Column:
        return Column(f"{role}_version", pl.Int64, False, f"Delta version of {role}_{src.name}{'_files' if role == 'bronze' else ''} holding this day's publication")

    def count(name: str, what: str) -> Column:
        return Column(name, pl.Int64, False, what, 0.0)

    cols = (
        Column("source", pl.Utf8, False, "the raw source", allowed=(src.name,)),
        _DATE,
        Column("run_id", pl.Utf8, False, "the ingestion run that wrote and published the day"),
        version("bronze"),
        version("silver"),
        version("quarantine"),
        count("files", "landing files indexed in bronze"),
        count("bronze_records", "records read from the landing files"),
        count("silver_rows", "rows accepted into silver"),
        count("quarantined_rows", "records rejected (duplicates excluded)"),
        count("duplicate_rows", "records dropped as duplicates"),
        Column("published_at", UTC_TS, False, "when the day was published (the manifest commit)"),
    )
    return Table(
        f"ingest_manifest_{src.name}",
        "manifest",
        cols,
        f"{src.description}: day publications (bronze/silver/quarantine versions and counts), newest row per date in force",
        key=("date", "published_at"),
    )


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


# --------------------------------------------------------------------------------------
# Forecast gold tables (written by the forecasting assets from models.forecast / models.solar)
# --------------------------------------------------------------------------------------
#: entity_id of the whole network (level ``system``) in the forecast tables: the forecasting assets
#: write it, the optimisation assets read it
SYSTEM_ENTITY = "system"

_FORECAST_COLUMNS = (
    Column("date", pl.Date, False, "utility-local day the forecast was issued for (partition)"),
    Column("level", pl.Utf8, False, "what is forecast: system | substation | feeder | site"),
    Column("entity_id", pl.Utf8, False, f"feeder/substation/site id, or '{SYSTEM_ENTITY}'"),
    Column("issued_at", UTC_TS, False, "forecast origin: the last observation used, UTC"),
    Column("period_start", UTC_TS, False, "start of the forecast interval, UTC"),
    Column("horizon_h", pl.Float64, False, "hours ahead of issued_at", 0.0),
    Column("p10", pl.Float64, False, "10 % quantile (kW)"),
    Column("p50", pl.Float64, False, "median (kW)"),
    Column("p90", pl.Float64, False, "90 % quantile (kW)"),
    Column("model", pl.Utf8, False, "forecaster that produced the row"),
    Column("model_version", pl.Utf8, False, "registered model version (or 'fallback')"),
    Column("fallback_reason", pl.Utf8, True, "why a baseline was used instead of the champion, if it was"),
)
GOLD_LOAD_FORECAST = Table(
    "gold_load_forecast",
    "gold",
    _FORECAST_COLUMNS,
    "probabilistic load forecasts (24-72 h, p10/p50/p90) per feeder/substation/system",
    partition_by=("date",),
    key=("level", "entity_id", "issued_at", "period_start"),
)
GOLD_SOLAR_FORECAST = Table(
    "gold_solar_forecast",
    "gold",
    _FORECAST_COLUMNS,
    "probabilistic PV output forecasts (1-72 h, p10/p50/p90) per site and aggregated to feeder/substation",
    partition_by=("date",),
    key=("level", "entity_id", "issued_at", "period_start"),
)
GOLD_PEAK_DEMAND = Table(
    "gold_peak_demand",
    "gold",
    (
        Column("date", pl.Date, False, "the local day analysed"),
        Column("entity_id", pl.Utf8, False, "feeder/substation id or 'system'"),
        Column("expected_peak_kw", pl.Float64, False, "p50 forecast peak of the day"),
        Column("peak_p90_kw", pl.Float64, False, "p90 at the peak hour"),
        Column("peak_time", UTC_TS, False, "start of the interval of the expected peak, UTC"),
        Column("capacity_kw", pl.Float64, False, "configured capacity"),
        Column("reserve_margin_pct", pl.Float64, False, "(capacity - expected peak) / capacity x 100"),
        Column("reserve_margin_p90_pct", pl.Float64, False, "the same against the p90 peak"),
    ),
    "expected daily peak, its time and the reserve margin against capacity",
    partition_by=("date",),
    key=("entity_id",),
)
FORECAST_TABLES = {t.name: t for t in (GOLD_LOAD_FORECAST, GOLD_SOLAR_FORECAST, GOLD_PEAK_DEMAND)}


# --------------------------------------------------------------------------------------
# Grid ML gold tables (written by the grid-ML assets from models.grid). ``gold_alerts`` is the
# streaming bridge's input: its columns are a contract, and ``fingerprint`` =
# sha1(asset_type|asset_id|rule|window_start) is the deduplication key.
# --------------------------------------------------------------------------------------
ALERT_STATUSES = ("normal", "monitoring", "alert", "critical")
_MODEL_VERSION = Column("model_version", pl.Utf8, False, "model name:version (or run id) that produced the row")
ASSET_TYPES = ("meter", "transformer")
SEVERITIES = ("alert", "critical")
RULES = ("anomaly_score", "failure_risk")
#: advisories derived from the published battery / EV schedules (optimization.advisories)
ADVISORY_KINDS = ("battery_schedule", "ev_charging")
RECOMMENDATION_KINDS = ("time_shift", "dr_enrolment", "tariff", *ADVISORY_KINDS)

GOLD_ANOMALY_SCORES = Table(
    "gold_anomaly_scores",
    "gold",
    (
        _DATE,
        Column("asset_type", pl.Utf8, False, "meter | transformer", allowed=ASSET_TYPES),
        Column("asset_id", pl.Utf8, False),
        Column("time", UTC_TS, False, "reading_time / sample_time, UTC"),
        Column("score", pl.Float64, False, "ensemble score: calibrated probability of an anomaly", 0.0, 1.0),
        Column("score_isolation_forest", pl.Float64, False, "calibrated score of the isolation forest alone", 0.0, 1.0),
        Column("score_autoencoder", pl.Float64, False, "calibrated score of the window autoencoder alone", 0.0, 1.0),
        Column("score_ocsvm", pl.Float64, False, "calibrated score of the one-class SVM alone", 0.0, 1.0),
        Column("status", pl.Utf8, False, "normal | monitoring | alert | critical", allowed=ALERT_STATUSES),
        Column("reason", pl.Utf8, True, "most unusual feature vs training (robust z), for status != normal"),
        _MODEL_VERSION,
    ),
    "anomaly score per meter reading and per SCADA sample",
    partition_by=("date",),
    key=("asset_type", "asset_id", "time"),
)

GOLD_ALERTS = Table(
    "gold_alerts",
    "gold",
    (
        _DATE,
        Column("fingerprint", pl.Utf8, False, "sha1(asset_type|asset_id|rule|window_start): dedup key"),
        Column("asset_type", pl.Utf8, False, allowed=ASSET_TYPES),
        Column("asset_id", pl.Utf8, False),
        Column("rule", pl.Utf8, False, "anomaly_score | failure_risk", allowed=RULES),
        Column("severity", pl.Utf8, False, "alert | critical (highest in the window)", allowed=SEVERITIES),
        Column("score", pl.Float64, False, "highest score in the window", 0.0, 1.0),
        Column("window_start", UTC_TS, False, "start of the alert window (hour), UTC"),
        Column("window_end", UTC_TS, False),
        Column("first_seen", UTC_TS, False, "first reading/sample at or above the alert threshold"),
        Column("last_seen", UTC_TS, False),
        Column("n_points", pl.Int64, False, "readings/samples at or above the alert threshold in the window"),
        Column("reason", pl.Utf8, False, "why: the most unusual feature at the peak score"),
        _MODEL_VERSION,
    ),
    "one row per alert (asset x rule x hour window), deduplicated by fingerprint",
    partition_by=("date",),
    key=("fingerprint",),
)

GOLD_TRANSFORMER_RISK = Table(
    "gold_transformer_risk",
    "gold",
    (
        _DATE,
        Column("transformer_id", pl.Utf8, False),
        Column("as_of", UTC_TS, False, "end of the hour the features describe, UTC"),
        Column("failure_probability_72h", pl.Float64, False, "P(failure within 72 h)", 0.0, 1.0),
        Column("rul_hours", pl.Float64, False, "median remaining useful life (AFT survival model), hours", 0.0),
        Column("status", pl.Utf8, False, "normal | monitoring | alert | critical", allowed=ALERT_STATUSES),
        Column("age_years", pl.Float64, False),
        Column("days_since_maintenance", pl.Float64, False),
        Column("utilisation_mean_24h", pl.Float64, True),
        Column("utilisation_max_24h", pl.Float64, True),
        Column("hot_spot_max_24h", pl.Float64, True),
        Column("excess_rise_6h", pl.Float64, True, "top-oil rise beyond the thermal model, last 6 h (K)"),
        Column("anomaly_count_7d", pl.Int64, False),
        Column("customers_downstream", pl.Int64, False, "meters fed by the transformer (outage impact)"),
        Column("load_downstream_kw", pl.Float64, False, "their mean demand over the last 24 h (outage impact)"),
        _MODEL_VERSION,
    ),
    "failure probability, remaining useful life and outage impact per transformer and hour",
    partition_by=("date",),
    key=("transformer_id", "as_of"),
)

GOLD_CUSTOMER_SEGMENTS = Table(
    "gold_customer_segments",
    "gold",
    (
        Column("as_of", pl.Date, False, "last local day of the profile window"),
        Column("meter_id", pl.Utf8, False),
        Column("customer_id", pl.Utf8, True),
        Column("segment", pl.Utf8, False, "one of the named segments (stable across retrains)"),
        Column("distance", pl.Float64, False, "distance to the segment centroid (standardised units)"),
        Column("provisional", pl.Boolean, False, "fewer days of history than the model asks for"),
        Column("history_days", pl.Int64, False),
        Column("avg_daily_kwh", pl.Float64, False),
        Column("peak_hour", pl.Int32, False, "local hour of the mean weekday peak"),
        Column("weekend_ratio", pl.Float64, False, "mean weekend-day kWh / mean weekday kWh"),
        Column("seasonal_cv", pl.Float64, False, "coefficient of variation of daily kWh"),
        Column("has_pv", pl.Boolean, False),
        Column("has_ev", pl.Boolean, False),
        _MODEL_VERSION,
    ),
    "customer segment per meter",
    partition_by=("as_of",),
    key=("meter_id",),
)

GOLD_RECOMMENDATIONS = Table(
    "gold_recommendations",
    "gold",
    (
        Column("as_of", pl.Date, False),
        Column("customer_id", pl.Utf8, False),
        Column("meter_id", pl.Utf8, False),
        Column("segment", pl.Utf8, False),
        Column("kind", pl.Utf8, False, "time_shift | dr_enrolment | tariff | battery_schedule | ev_charging (site advisories from the schedules)",
               allowed=RECOMMENDATION_KINDS),
        Column("recommended", pl.Boolean, False, "false rows keep the evaluated-but-not-worth-it options"),
        Column("message", pl.Utf8, False),
        Column("est_monthly_savings", pl.Float64, False, "currency units per month (see models.grid.recommend)"),
        Column("basis_kwh", pl.Float64, False, "kWh/month the estimate rests on (shiftable, peak, ...)"),
        Column("est_monthly_co2_kg", pl.Float64, True, "schedule advisories: kg CO2/month avoided against the baseline"),
        Column("confidence", pl.Float64, True, "schedule advisories: 1 - mean relative p10-p90 half-width of the load forecast (0.5 on the weekly fallback)", 0.0, 1.0),
    ),
    "per-customer recommendations with estimated monthly savings",
    partition_by=("as_of",),
    key=("customer_id", "kind"),
)

GOLD_DR_EVENTS = Table(
    "gold_dr_events",
    "gold",
    (
        _DATE,
        Column("event_id", pl.Utf8, False, "sha1(scope|start) prefix: stable across reruns"),
        Column("scope", pl.Utf8, False, "what the capacity limits: system or a feeder id"),
        Column("start_time", UTC_TS, False),
        Column("end_time", UTC_TS, False),
        Column("forecast_peak_kw", pl.Float64, False),
        Column("capacity_kw", pl.Float64, False),
        Column("target_reduction_kw", pl.Float64, False, "peak - capacity (+ margin)"),
        Column("expected_reduction_kw", pl.Float64, False, "sum over selected participants"),
        Column("n_participants", pl.Int64, False),
        Column("total_incentive", pl.Float64, False),
        Column("status", pl.Utf8, False, "covered | short (not enough eligible reduction)", allowed=("covered", "short")),
    ),
    "demand-response events created where the forecast peak exceeds capacity",
    partition_by=("date",),
    key=("event_id",),
)

GOLD_DR_PARTICIPATIONS = Table(
    "gold_dr_participations",
    "gold",
    (
        _DATE,
        Column("event_id", pl.Utf8, False),
        Column("customer_id", pl.Utf8, False),
        Column("meter_id", pl.Utf8, False),
        Column("segment", pl.Utf8, False),
        Column("expected_reduction_kw", pl.Float64, False),
        Column("incentive", pl.Float64, False, "base amount x segment multiplier"),
    ),
    "customers selected for a demand-response event",
    partition_by=("date",),
    key=("event_id", "customer_id"),
)

GRID_TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        GOLD_ANOMALY_SCORES,
        GOLD_ALERTS,
        GOLD_TRANSFORMER_RISK,
        GOLD_CUSTOMER_SEGMENTS,
        GOLD_RECOMMENDATIONS,
        GOLD_DR_EVENTS,
        GOLD_DR_PARTICIPATIONS,
    )
}


# --------------------------------------------------------------------------------------
# Streaming bridge delivery tables: PostgreSQL, written by streaming_bridge.receiver (the webhook receiver
# behind Alertmanager), not Delta tables of the lake (so not in TABLES). ``alerts`` holds each notified alert
# state once: key (fingerprint, starts_at, status), fingerprint = Alertmanager's. ``alert_deliveries`` holds
# one row per receiver and key with the number of attempts Alertmanager made (its retries show as attempts > 1).
# --------------------------------------------------------------------------------------
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
        Column("attempts", pl.Int64, False, "notifications received for this key (> 1: Alertmanager retried or repeated)"),
    ),
    "one row per receiver and alert key: delivered exactly once per receiver, however often Alertmanager sent it",
    key=("receiver", "fingerprint", "starts_at", "status"),
)
BRIDGE_PG_TABLES: dict[str, Table] = {t.name: t for t in (ALERTS, ALERT_DELIVERIES)}


# --------------------------------------------------------------------------------------
# Optimisation gold tables (written by assets.optimization from the optimization library).
# One row per decision: battery per 15-minute period, EV per (strategy, session, 5-minute
# period with non-zero power), DC-OPF per (hour, element), unit commitment per (unit, hour).
# Money is in the tariff's currency; prices in $/MWh (market convention), carbon in kg/MWh.
# --------------------------------------------------------------------------------------
_SOURCE = Column("inputs", pl.Utf8, False, "where the load/PV inputs came from (forecast issue or fallback), human-readable")
GOLD_BATTERY_SCHEDULE = Table(
    "gold_battery_schedule",
    "gold",
    (
        _DATE,
        Column("site_id", pl.Utf8, False, "the load entity the battery sits behind (gold_load_forecast entity_id)"),
        Column("period_start", UTC_TS, False, "start of the 15-minute period, UTC"),
        Column("price_per_mwh", pl.Float64, False, "configured time-of-use energy price (configuration, not market data)"),
        Column("carbon_kg_per_mwh", pl.Float64, False, "configured grid carbon intensity", 0.0),
        Column("load_kw", pl.Float64, False, "gross site load = metered (net) load forecast + PV forecast", 0.0),
        Column("pv_kw", pl.Float64, False, "PV forecast (p50)", 0.0),
        Column("charge_kw", pl.Float64, False, "", 0.0),
        Column("discharge_kw", pl.Float64, False, "", 0.0),
        Column("soc_kwh", pl.Float64, False, "stored energy at the end of the period", 0.0),
        Column("soc_frac", pl.Float64, False, "soc_kwh / energy capacity", 0.0, 1.0),
        Column("grid_import_kw", pl.Float64, False, "", 0.0),
        Column("grid_export_kw", pl.Float64, False, "", 0.0),
        Column("baseline_grid_kw", pl.Float64, False, "net grid flow without the battery (+ import)"),
        Column("reserve_kw", pl.Float64, False, "frequency-regulation capacity offered (0 without a regulation price)", 0.0),
    ),
    "battery charge/discharge/SOC schedule per 15 minutes against the configured tariff and the load/PV forecasts",
    partition_by=("date",),
    key=("site_id", "period_start"),
)
GOLD_BATTERY_DAILY = Table(
    "gold_battery_daily",
    "gold",
    (
        _DATE,
        Column("site_id", pl.Utf8, False),
        Column("power_kw", pl.Float64, False, "battery rating"),
        Column("energy_kwh", pl.Float64, False, "battery capacity"),
        Column("energy_cost", pl.Float64, False, "import cost - export revenue with the battery"),
        Column("baseline_energy_cost", pl.Float64, False, "the same without the battery"),
        Column("demand_charge", pl.Float64, False, "demand charge x peak import with the battery"),
        Column("baseline_demand_charge", pl.Float64, False),
        Column("degradation_cost", pl.Float64, False, "degradation cost x throughput"),
        Column("carbon_kg", pl.Float64, False, "emissions of grid imports with the battery"),
        Column("baseline_carbon_kg", pl.Float64, False),
        Column("savings", pl.Float64, False, "baseline total - total cost (incl. priced carbon)"),
        Column("peak_import_kw", pl.Float64, False),
        Column("baseline_peak_import_kw", pl.Float64, False),
        Column("equivalent_full_cycles", pl.Float64, False, "", 0.0),
        Column("reserve_revenue", pl.Float64, False, "frequency-regulation capacity revenue (in savings)"),
        Column("safety_status", pl.Utf8, False, "safety gate: passed | fallback:hold | fallback:charge_only (optimization.safety)"),
        Column("safety_violations", pl.Int64, False, "rule violations the gate found in the solver schedule", 0.0),
        Column("objective", pl.Float64, False, "LP objective as solved (a fallback: its total cost)"),
        Column("solve_seconds", pl.Float64, False),
        _SOURCE,
    ),
    "daily money/carbon breakdown of the battery schedule against the no-battery baseline",
    partition_by=("date",),
    key=("site_id",),
)
EV_STRATEGIES = ("optimal", "edf", "uncontrolled")
GOLD_EV_SCHEDULE = Table(
    "gold_ev_schedule",
    "gold",
    (
        _DATE,
        Column("strategy", pl.Utf8, False, "optimal (LP) | edf | uncontrolled (baselines)", allowed=EV_STRATEGIES),
        Column("session_id", pl.Utf8, False),
        Column("station_id", pl.Utf8, False),
        Column("period_start", UTC_TS, False, "start of the 5-minute period, UTC"),
        Column("power_kw", pl.Float64, False, "charging power (only non-zero rows are kept)", 0.0),
    ),
    "EV charging power per session and 5-minute period, optimal and the EDF/uncontrolled baselines",
    partition_by=("date",),
    key=("strategy", "session_id", "period_start"),
)
GOLD_EV_SESSIONS = Table(
    "gold_ev_sessions",
    "gold",
    (
        _DATE,
        Column("strategy", pl.Utf8, False, allowed=EV_STRATEGIES),
        Column("session_id", pl.Utf8, False),
        Column("station_id", pl.Utf8, False),
        Column("arrival_time", UTC_TS, False, "re-timed to the partition day, UTC"),
        Column("departure_time", UTC_TS, False),
        Column("requested_kwh", pl.Float64, False, "", 0.0),
        Column("delivered_kwh", pl.Float64, False, "", 0.0),
        Column("unmet_kwh", pl.Float64, False, "", 0.0),
        Column("cost", pl.Float64, False, "energy cost of the session (V2G exports at the export price net of wear)"),
        Column("carbon_kg", pl.Float64, False, "emissions of the session's net grid energy"),
        Column("site_id", pl.Utf8, False, "the load-forecast entity whose forecast is the site's baseload"),
        Column("safety_status", pl.Utf8, True, "optimal rows: the safety gate's verdict (passed | fallback:charge_only); baselines: null"),
        Column("source_session_date", pl.Date, False, "local day of the real session the row was re-timed from"),
    ),
    "EV sessions of the day with energy requested and delivered per strategy",
    partition_by=("date",),
    key=("strategy", "session_id"),
)
OPF_KINDS = ("system", "bus", "generator", "branch")
GOLD_OPF_DISPATCH = Table(
    "gold_opf_dispatch",
    "gold",
    (
        _DATE,
        Column("period_start", UTC_TS, False, "start of the hour, UTC"),
        Column("case_name", pl.Utf8, False, "pandapower/MATPOWER case"),
        Column("kind", pl.Utf8, False, "system | bus | generator | branch", allowed=OPF_KINDS),
        Column("element", pl.Int64, False, "bus number, generator index or branch index (0 for system)"),
        Column("from_bus", pl.Int64, True, "generator bus, or branch from-bus"),
        Column("to_bus", pl.Int64, True, "branch to-bus"),
        Column("p_mw", pl.Float64, True, "generator output, branch flow (from->to) or total system demand"),
        Column("limit_mw", pl.Float64, True, "generator Pmax or branch rateA (0 = unlimited)"),
        Column("loading_pct", pl.Float64, True, "branch |flow| / rateA"),
        Column("demand_mw", pl.Float64, True, "bus demand (bus rows)"),
        Column("lmp", pl.Float64, True, "locational marginal price, $/MWh (bus rows)"),
        Column("cost_per_h", pl.Float64, True, "DC-OPF objective of the hour (system rows)"),
        Column("load_scale", pl.Float64, False, "factor applied to the case's bus loads this hour"),
    ),
    "hourly DC-OPF dispatch, branch flows and LMPs with bus loads scaled by the system load forecast",
    partition_by=("date",),
    key=("period_start", "kind", "element"),
)
GOLD_UC_SCHEDULE = Table(
    "gold_uc_schedule",
    "gold",
    (
        _DATE,
        Column("period_start", UTC_TS, False, "start of the hour, UTC"),
        Column("unit", pl.Utf8, False, "generator id ('system' rows carry the totals)"),
        Column("is_on", pl.Boolean, False),
        Column("is_start", pl.Boolean, False),
        Column("p_mw", pl.Float64, False, "thermal output (system: total thermal)", 0.0),
        Column("reserve_mw", pl.Float64, False, "spinning reserve provided", 0.0),
        Column("load_mw", pl.Float64, True, "system rows: load served (scaled forecast)"),
        Column("renewable_forecast_mw", pl.Float64, True, "system rows: PV forecast (scaled)"),
        Column("renewable_used_mw", pl.Float64, True, "system rows: after curtailment"),
        Column("unserved_mw", pl.Float64, True, "system rows"),
    ),
    "day-ahead unit commitment: unit x hour on/start/output/reserve plus system totals",
    partition_by=("date",),
    key=("unit", "period_start"),
)
GOLD_BATTERY_ECONOMICS = Table(
    "gold_battery_economics",
    "gold",
    (
        _DATE,
        Column("site_id", pl.Utf8, False),
        Column("year", pl.Int64, False, "project year (1 = first)", 1.0),
        Column("capacity_frac", pl.Float64, False, "usable capacity at the end of the year (after a replacement: the new cells next year)", 0.0, 1.0),
        Column("replaced", pl.Boolean, False, "cells replaced at the end of this year (capacity below end of life)"),
        Column("savings", pl.Float64, False, "the year's savings, scaled by the mean usable capacity"),
        Column("cash_flow", pl.Float64, False, "savings - O&M - replacement"),
        Column("discounted_cash_flow", pl.Float64, False),
        Column("cumulative_cash_flow", pl.Float64, False, "from -capex"),
        Column("capex", pl.Float64, False, "installed cost (energy x capex_per_kwh + power x capex_per_kw)"),
        Column("annual_savings", pl.Float64, False, "mean daily savings of the produced schedules x 365"),
        Column("annual_cycles", pl.Float64, False, "mean daily equivalent full cycles x 365"),
        Column("npv", pl.Float64, False),
        Column("irr", pl.Float64, True, "null if the cash flows never repay the capex"),
        Column("payback_years", pl.Float64, True, "null if not within the lifetime"),
        Column("replacement_year", pl.Int64, True, "first year capacity falls below end of life; null if never"),
        Column("days_used", pl.Int64, False, "gold_battery_daily days averaged"),
    ),
    "battery project economics (fade, replacement, NPV, IRR, payback) from the schedules produced, cost assumptions from the settings",
    partition_by=("date",),
    key=("site_id", "year"),
)
OPT_TABLES: dict[str, Table] = {
    t.name: t
    for t in (GOLD_BATTERY_SCHEDULE, GOLD_BATTERY_DAILY, GOLD_BATTERY_ECONOMICS, GOLD_EV_SCHEDULE, GOLD_EV_SESSIONS, GOLD_OPF_DISPATCH,
              GOLD_UC_SCHEDULE)
}
# ------------------------------------------------------------------ end of optimisation tables

# --------------------------------------------------------------------------------------
# Streaming bridge (streaming_bridge/): live MQTT payloads are validated against the silver
# declarations above (lake.ingest.validate_file); what fails lands here with its reason.
# --------------------------------------------------------------------------------------
#: Reasons only the stream can give, beside the record-level REASON_CODES it shares with files.
STREAM_REASON_CODES = (
    "malformed_payload",  # not UTF-8 JSON, or not the object/array shape the topic expects
    "oversized_payload",  # larger than the bridge's payload limit (kept: size, sha1, a prefix)
    "unknown_topic",  # a topic outside the documented scheme
    "entity_mismatch",  # the id in the payload differs from the id in the topic
    "stale_time",  # timestamp older than the bridge's accepted window (days)
    "future_time",  # timestamp ahead of the bridge clock by more than the allowed skew
)
STREAM_DEAD_LETTERS = Table(
    "stream_dead_letters",
    "quarantine",
    (
        _DATE,
        Column("received_at", UTC_TS, False, "when the bridge received the MQTT message"),
        Column("topic", pl.Utf8, False, "MQTT topic the message came on"),
        Column("source", pl.Utf8, True, "meter_readings | scada | status, when the topic says"),
        Column("record_index", pl.Int64, True, "0-based position of the record in a head-end batch; null = whole message"),
        Column("reason_code", pl.Utf8, False, "why it was rejected", allowed=REASON_CODES + STREAM_REASON_CODES),
        Column("field", pl.Utf8, True, "the offending field, when one is to blame"),
        Column("value", pl.Utf8, True, "the offending raw value"),
        Column("detail", pl.Utf8, False, "human-readable explanation"),
        Column("payload", pl.Utf8, True, "the payload as received (text; the first 64 KiB of a larger one)"),
        Column("payload_bytes", pl.Int64, False, "size of the whole payload"),
        Column("payload_sha1", pl.Utf8, False, "sha1 of the whole payload (ties a record to its message)"),
        Column("batch_id", pl.Utf8, False, "the bridge spool segment that wrote the row (re-writing a segment after a crash replaces its rows)"),
    ),
    "MQTT payloads (or records in them) the streaming bridge rejected, with a reason",
    partition_by=("date",),
    key=("topic", "payload_sha1", "record_index", "reason_code"),
)
STREAM_TABLES: dict[str, Table] = {STREAM_DEAD_LETTERS.name: STREAM_DEAD_LETTERS}

TABLES: dict[str, Table] = {}
for _t in _REFERENCE + _TRUTH + _GOLD + tuple(FORECAST_TABLES.values()) + tuple(GRID_TABLES.values()) + tuple(OPT_TABLES.values()) + tuple(STREAM_TABLES.values()):
    TABLES[_t.name] = _t
for _s in SOURCES.values():
    for _t in (_bronze(_s), _silver(_s), _quarantine(_s), _manifest(_s)):
        TABLES[_t.name] = _t


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {sorted(TABLES)}") from None
