"""Raw sources: what a landing file must carry, and the tables each source's ingestion writes
(bronze file index, silver, quarantine, day manifest). Field bounds are the utility's acceptance
rules (quality.rules adds the softer 'warning'/'anomaly' flags on top).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from contracts.reasons import REASON_CODES
from contracts.tables import _DATE, _INGESTED, _LINEAGE, UTC_TS, Column, Table


@dataclass(frozen=True)
class Source:
    """A raw feed landing as files: one entity id column, one time column, measures.

    ``time`` is the record's *partition clock*: the local day of ``time`` is the daily partition
    (late/future records are re-landed by it). The record key is declared apart (``record_key``) and
    may hold more columns than (entity, time): a weather forecast is keyed (station, issued_at,
    valid_at) and partitioned by the day it was issued."""

    name: str  # e.g. "meter_readings"
    entity: str  # id column, checked against the reference table
    time: str  # timestamp column as received (local naive, ISO with offset, or UTC): the partition clock
    measures: tuple[Column, ...]
    reference: str  # reference table holding the known entity ids
    description: str = ""
    #: columns accepted as synonyms in landing files (renamed on read), old name -> contract name
    #: (left out of the hash, so a Source can key a cache; equality still compares it)
    aliases: dict[str, str] = field(default_factory=dict, hash=False)
    #: typed fields that are not measures: text (optionally with ``allowed`` values) or UTC timestamps
    #: (parsed like the time column; a naive local time that is ambiguous or nonexistent is rejected)
    attributes: tuple[Column, ...] = ()
    #: the record key silver is deduplicated on; default (entity, time). Any columns of the raw
    #: contract (entity, time, attributes); further timestamps in it are ``attributes`` of dtype UTC_TS
    record_key: tuple[str, ...] = ()
    #: (table, id column) pairs holding the known entity ids; default ((reference, entity),)
    references: tuple[tuple[str, str], ...] = ()

    @property
    def raw_columns(self) -> list[str]:
        return [self.entity, self.time] + [m.name for m in self.measures] + [a.name for a in self.attributes]

    @property
    def key(self) -> tuple[str, ...]:
        return self.record_key or (self.entity, self.time)

    @property
    def reference_columns(self) -> tuple[tuple[str, str], ...]:
        return self.references or ((self.reference, self.entity),)

    @property
    def bronze(self) -> Table:
        return SOURCE_TABLES[f"bronze_{self.name}_files"]

    @property
    def silver(self) -> Table:
        return SOURCE_TABLES[f"silver_{self.name}"]

    @property
    def quarantine(self) -> Table:
        return SOURCE_TABLES[f"quarantine_{self.name}"]

    @property
    def manifest(self) -> Table:
        """The day-publication log: a day's bronze index, silver and quarantine are visible to
        readers only at the Delta versions its latest row names (lake.manifest)."""
        return SOURCE_TABLES[f"ingest_manifest_{self.name}"]

    @property
    def day_tables(self) -> dict[str, Table]:
        """The three tables one ingestion of a day replaces together, by role."""
        return {"bronze": self.bronze, "silver": self.silver, "quarantine": self.quarantine}


def _f(name: str, description: str, lo: float | None = None, hi: float | None = None, required: bool = True) -> Column:
    """A float measure with optional hard bounds; required ones reject an empty value."""
    return Column(name, pl.Float64, not required, description, lo, hi)


#: incident types a work order can carry (the grid events the models look for)
INCIDENT_TYPES = ("voltage_sag", "stuck_meter", "zero_meter", "theft", "transformer_overheat", "transformer_failure")
INCIDENT_OUTCOMES = ("confirmed", "false_report")

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
                _f(
                    "voltage",
                    "RMS voltage (V), nominal 230; empty when there is no supply",
                    200.0,
                    260.0,
                    required=False,
                ),
                _f("current_amps", "RMS current (A); empty when there is no supply", 0.0, None, required=False),
                _f(
                    "power_factor", "displacement power factor; empty when there is no supply", 0.0, 1.0, required=False
                ),
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
        Source(
            name="incidents",
            entity="asset_id",
            time="confirmed_at",
            measures=(),
            attributes=(
                Column(
                    "incident_id", pl.Utf8, False, "work-order / case number (the record key: a re-export replaces it)"
                ),
                Column("asset_type", pl.Utf8, False, "meter | transformer", allowed=("meter", "transformer")),
                Column(
                    "incident_type", pl.Utf8, False, "what the field crew / investigation found", allowed=INCIDENT_TYPES
                ),
                Column("start_time", UTC_TS, False, "when the problem began, as established by the crew"),
                Column("end_time", UTC_TS, True, "when it ended (repair, meter exchange); empty if still open"),
                Column("reported_at", UTC_TS, False, "when the utility first heard of it (alarm, call, billing check)"),
                Column("outcome", pl.Utf8, False, "confirmed | false_report", allowed=INCIDENT_OUTCOMES),
                Column("note", pl.Utf8, True, "free text from the work order"),
            ),
            record_key=("incident_id",),
            references=(("ref_meters", "meter_id"), ("ref_transformers", "transformer_id")),
            reference="ref_meters",
            description="incidents: work orders and investigation outcomes as operations record them (late, incomplete, sometimes wrong)",
            aliases={"type": "incident_type", "work_order": "incident_id"},
        ),
    )
}

#: the numerical weather prediction feed (simulator.nwp; docs/NWP.md gives the export format for real data)
WEATHER_FORECAST = Source(
    name="weather_forecast",
    entity="station_id",
    time="issued_at",
    measures=(
        _f("lead_h", "hours from issued_at to valid_at (informative; may be empty)", -24.0, 400.0, required=False),
        _f("temp_air_c", "forecast dry-bulb air temperature (degC)", -60.0, 60.0),
        _f("ghi_wm2", "forecast global horizontal irradiance, hourly mean (W/m2)", 0.0, 1500.0),
        _f("dni_wm2", "forecast direct normal irradiance (W/m2)", 0.0, 1500.0, required=False),
        _f("dhi_wm2", "forecast diffuse horizontal irradiance (W/m2)", 0.0, 1000.0, required=False),
        _f("cloud_cover", "forecast cloud cover 0..1", 0.0, 1.0, required=False),
        _f("wind_speed_ms", "forecast wind speed (m/s)", 0.0, 80.0, required=False),
    ),
    attributes=(Column("valid_at", UTC_TS, False, "start of the forecast hour, UTC"),),
    record_key=("station_id", "issued_at", "valid_at"),
    reference="ref_weather_stations",
    description="weather forecasts (NWP issues: one row per station, issue and valid hour)",
    aliases={"issue_time": "issued_at", "valid_time": "valid_at", "forecast_time": "valid_at"},
)
SOURCES[WEATHER_FORECAST.name] = WEATHER_FORECAST

QUALITY_FLAGS = ("ok", "warning", "anomaly")


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
        Column(
            "problem",
            pl.Utf8,
            True,
            "file-level reason code (empty_file, unreadable_file, unsafe_name, skipped_file, waived_file, missing_column, duplicate_column)",
        ),
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
        + src.attributes
        + (Column("quality_flag", pl.Utf8, False, "ok | warning | anomaly", allowed=QUALITY_FLAGS),)
        + _LINEAGE
    )
    return Table(
        f"silver_{src.name}",
        "silver",
        cols,
        f"{src.description}: typed, UTC, deduplicated, flagged",
        partition_by=("date",),
        key=src.key,
    )


#: What a quarantine row says about the rejected record; every source's quarantine table holds these
#: between the partition key ``date`` and ``ingested_at`` (lake.ingest builds its reject frames from them).
QUARANTINE_RECORD_COLUMNS = (
    Column("reason_code", pl.Utf8, False, "why the record was rejected", allowed=REASON_CODES),
    Column("field", pl.Utf8, True, "the offending field, when one is to blame"),
    Column("value", pl.Utf8, True, "the offending raw value"),
    Column("detail", pl.Utf8, False, "human-readable explanation"),
    Column("target_date", pl.Date, True, "for late/future data: the partition it belongs to"),
    Column("raw_record", pl.Utf8, True, "the whole record as received, JSON"),
) + _LINEAGE


def _quarantine(src: Source) -> Table:
    cols = (_DATE,) + QUARANTINE_RECORD_COLUMNS + (_INGESTED,)
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
        return Column(
            f"{role}_version",
            pl.Int64,
            False,
            f"Delta version of {role}_{src.name}{'_files' if role == 'bronze' else ''} holding this day's publication",
        )

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


#: The four tables each source writes: bronze file index, silver, quarantine, manifest.
SOURCE_TABLES: dict[str, Table] = {
    t.name: t for s in SOURCES.values() for t in (_bronze(s), _silver(s), _quarantine(s), _manifest(s))
}
