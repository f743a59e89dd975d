"""Landing files: the manifest reconciles with what is actually in the files, read back here with an
independent reader; a clean day round-trips exactly in every format; DST days look like a head-end's
CSV export."""

from __future__ import annotations

import io
import json
import math
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from conftest import NO_EVENTS

from contracts import SOURCES, UTC_TS
from lake.landing import LocalLanding, S3Landing
from simulator import BadRecordRates, SimConfig, Simulator, write_landing_day, write_landing_reference

TZ = "America/New_York"
FALL_BACK = date(2026, 11, 1)
SPRING_FORWARD = date(2026, 3, 8)
KEY_RE = re.compile(r"^(meter_readings|scada|weather)/(\d{4}-\d\d-\d\d)/\1_\2_(\d{3})\.(csv|jsonl|parquet)$")
ALL_BAD = BadRecordRates(
    malformed_line=0.02,
    wrong_type=0.02,
    out_of_range=0.02,
    duplicate=0.03,
    unknown_entity=0.02,
    late_files=1,
    empty_files=1,
    renamed_column_files=1,
)


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(SimConfig(n_meters=36, start=date(2026, 3, 1), days=300, seed=21, events=NO_EVENTS))


# ------------------------------------------------------------------ an independent reader
def _records(data: bytes, fmt: str) -> tuple[list[str] | None, list[dict | None]]:
    """(header, records) with every value as text; None for a record that cannot be split."""
    if fmt == "parquet":
        df = pl.read_parquet(io.BytesIO(data))
        if UTC_TS in df.schema.values():
            df = df.with_columns(
                [pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00") for c, t in df.schema.items() if t == UTC_TS]
            )
        return df.columns, [
            {k: (None if v is None else str(v)) for k, v in r.items()} for r in df.iter_rows(named=True)
        ]
    text = data.decode()
    lines = [ln for ln in text.split("\n") if ln != ""]
    if fmt == "csv":
        if not lines:
            return None, []
        header = lines[0].split(",")
        out = []
        for ln in lines[1:]:
            parts = ln.split(",")
            out.append(dict(zip(header, parts)) if len(parts) == len(header) else None)
        return header, out
    out = []
    for ln in lines:
        try:
            obj = json.loads(ln)
            out.append(
                {k: (None if v is None else (v if isinstance(v, str) else repr(float(v)))) for k, v in obj.items()}
            )
        except json.JSONDecodeError:
            out.append(None)
    return (list(out[0]) if out and out[0] else None), out


def _num(v: str | None) -> float | None:
    if v is None or v == "":
        return None
    return float(v)  # raises ValueError for a wrong type


def _utc(values: list[str], entities: list[str], fmt: str) -> list[datetime]:
    """Timestamps as UTC; naive local CSV times resolved by their order per entity (fall-back hour)."""
    tz = ZoneInfo(TZ)
    seen: dict[tuple[str, str], int] = {}
    out = []
    for v, e in zip(values, entities):
        if fmt == "csv":
            k = (e, v)
            seen[k] = seen.get(k, 0) + 1
            naive = datetime.strptime(v, "%Y-%m-%d %H:%M:%S")
            local = naive.replace(tzinfo=tz, fold=0 if seen[k] == 1 else 1)
            out.append(local.astimezone(ZoneInfo("UTC")))
        else:
            out.append(datetime.fromisoformat(v).astimezone(ZoneInfo("UTC")))
    return out


def _frame(zone, keys: list[str], source: str) -> pl.DataFrame:
    """Clean files -> one typed frame in the raw contract (the round-trip reader)."""
    src = SOURCES[source]
    frames = []
    for key in keys:
        fmt = key.rsplit(".", 1)[1]
        header, recs = _records(zone.get_bytes(key), fmt)
        if not recs:
            continue
        assert all(r is not None for r in recs)
        ents = [r[src.entity] for r in recs]
        times = _utc([r[src.time] for r in recs], ents, fmt)
        data = {src.entity: ents, src.time: times}
        for m in src.measures:
            data[m.name] = [_num(r[m.name]) for r in recs]
        frames.append(
            pl.DataFrame(data, schema_overrides={src.time: UTC_TS, **{m.name: pl.Float64 for m in src.measures}})
        )
    return pl.concat(frames).sort(src.entity, src.time)


# ------------------------------------------------------------------ clean days
@pytest.mark.parametrize("d", [FALL_BACK, SPRING_FORWARD, date(2026, 6, 10)])
def test_clean_day_round_trips_in_every_format(sim, tmp_path, d):
    zone = LocalLanding(tmp_path)
    man = write_landing_day(sim, d, zone, formats=("csv", "jsonl", "parquet"), rows_per_file=300)
    assert all(not f.faults and not f.file_faults for f in man.files)
    frames = sim.day(d)
    for source, df in frames.items():
        files = man.for_source(source)
        assert files and all(KEY_RE.match(f.key) for f in files)
        if source == "meter_readings":
            assert {f.format for f in files} == {"csv", "jsonl", "parquet"}
        got = _frame(zone, [f.key for f in files], source)
        src = SOURCES[source]
        assert got.equals(df.sort(src.entity, src.time)), source
        assert man.rows_written(source) == df.height
    # the manifest is stored next to the data
    stored = json.loads(zone.get_bytes(f"manifests/{d.isoformat()}.json"))
    assert stored == json.loads(man.to_json())


def test_dst_days_in_csv_have_25_and_23_local_hours(sim, tmp_path):
    zone = LocalLanding(tmp_path)
    for d, hours in ((FALL_BACK, 25), (SPRING_FORWARD, 23)):
        man = write_landing_day(sim, d, zone, formats="csv", sources=("meter_readings", "weather"))
        for f in man.files:
            header, recs = _records(zone.get_bytes(f.key), "csv")
            src = SOURCES[f.source]
            by_entity: dict[str, list[str]] = {}
            for r in recs:
                by_entity.setdefault(r[src.entity], []).append(r[src.time])
            per_hour = 2 if f.source == "meter_readings" else 1
            for ent, times in by_entity.items():
                assert len(times) == hours * per_hour, (f.source, ent)
                assert all(t.startswith(d.isoformat()) for t in times)
                clock = [t[11:13] for t in times]
                if d == FALL_BACK:
                    # the 01 o'clock hour twice, in order: 00, 01, 01, 02 ...
                    assert clock.count("01") == 2 * per_hour and clock.count("02") == per_hour
                    first = [t for t in times if t[11:13] == "01"]
                    assert first[:per_hour] == first[per_hour:]
                else:
                    assert "02" not in clock
                assert times == sorted(times) or d == FALL_BACK


# ------------------------------------------------------------------ bad records
def _observe(zone, man, ref_ids: dict[str, set[str]]):
    """Fault classes as seen in the files, per (key, 1-based row)."""
    seen: dict[tuple[str, int], tuple[str, str | None]] = {}
    content: dict[tuple, tuple[str, int]] = {}  # record identity -> first (key, row)
    dup_of: dict[tuple[str, int], tuple[str, int]] = {}
    for f in sorted(man.files, key=lambda f: f.key):  # receive order
        src = SOURCES[f.source]
        header, recs = _records(zone.get_bytes(f.key), f.format)
        assert len(recs) == f.rows, f.key
        if f.rows == 0 or f.renamed:
            continue
        parsed = [r for r in recs if r is not None]
        ents = [r[src.entity] for r in parsed]
        times = iter(_utc([r[src.time] for r in parsed], ents, f.format))
        for i, r in enumerate(recs, start=1):
            if r is None:
                seen[(f.key, i)] = ("malformed_line", None)
                continue
            t = next(times)
            bad_type = [m.name for m in src.measures if not _parses(r[m.name])]
            if bad_type:
                seen[(f.key, i)] = ("wrong_type", bad_type[0])
                assert len(bad_type) == 1
                continue
            vals = {m.name: _num(r[m.name]) for m in src.measures}
            oor = [
                m.name
                for m in src.measures
                if vals[m.name] is not None
                and ((m.min is not None and vals[m.name] < m.min) or (m.max is not None and vals[m.name] > m.max))
            ]
            identity = (r[src.entity], t, tuple(vals.values()))
            if oor:
                assert len(oor) == 1
                seen[(f.key, i)] = ("out_of_range", oor[0])
            elif r[src.entity] not in ref_ids[f.source]:
                seen[(f.key, i)] = ("unknown_entity", None)
            elif t.astimezone(ZoneInfo(TZ)).date() != f.partition:
                seen[(f.key, i)] = ("late_data", None)
            elif identity in content:
                seen[(f.key, i)] = ("duplicate", None)
                dup_of[(f.key, i)] = content[identity]
            if identity not in content:
                content[identity] = (f.key, i)
    return seen, dup_of


def _parses(v: str | None) -> bool:
    try:
        _num(v)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("d", [FALL_BACK, date(2026, 6, 10)])
def test_every_bad_record_is_where_the_manifest_says(sim, tmp_path, d):
    zone = LocalLanding(tmp_path)
    man = write_landing_day(sim, d, zone, formats=("csv", "jsonl", "parquet"), bad=ALL_BAD, rows_per_file=250)
    ref = sim.reference()
    ref_ids = {
        "meter_readings": set(ref["ref_meters"]["meter_id"]),
        "scada": set(ref["ref_transformers"]["transformer_id"]),
        "weather": set(ref["ref_weather_stations"]["station_id"]),
        "weather_forecast": set(ref["ref_weather_stations"]["station_id"]),
    }
    seen, dup_of = _observe(zone, man, ref_ids)
    claimed: dict[tuple[str, int], tuple[str, str | None]] = {}
    for f in man.files:
        for cls, rows in f.faults.items():
            fields = f.fields.get(cls, [None] * len(rows))
            for r, fld in zip(rows, fields):
                claimed[(f.key, r)] = (cls, fld if cls in ("wrong_type", "out_of_range") else None)
        for (k, r), orig in zip([(f.key, r) for r in f.faults.get("duplicate", [])], f.duplicate_of):
            assert dup_of[(k, r)] == tuple(orig)
    assert seen == claimed
    counts = man.counts("meter_readings")
    for cls in BadRecordRates.ROW_CLASSES + ("late_data",):
        assert counts.get(cls, 0) > 0, cls
    assert counts["empty_file_files"] == counts["late_data_files"] == counts["missing_column_files"] == 1
    # file-level faults
    for f in man.files:
        data = zone.get_bytes(f.key)
        if "empty_file" in f.file_faults:
            assert f.rows == 0
            if f.format == "csv":
                assert data.decode().strip() == ",".join(SOURCES[f.source].raw_columns)
            elif f.format == "jsonl":
                assert data == b""
            else:
                assert pl.read_parquet(io.BytesIO(data)).columns == SOURCES[f.source].raw_columns
        if f.renamed:
            header, _ = _records(data, f.format)
            ((old, new),) = f.renamed.items()
            assert new in header and old not in header and f.rows > 0
        if "late_data" in f.file_faults:
            assert f.data_date == d - timedelta(days=1) and f.rows > 0


def test_rates_are_honoured_roughly_and_zero_rates_give_a_clean_day(sim, tmp_path):
    rates = BadRecordRates(out_of_range=0.05, unknown_entity=0.02)
    man = write_landing_day(
        sim, date(2026, 6, 11), LocalLanding(tmp_path / "a"), formats="parquet", bad=rates, sources=("meter_readings",)
    )
    n = man.rows_written()
    c = man.counts()
    # binomial: 36 meters x 48 = 1728 rows; 5 % -> 86 +- 9, 2 % -> 35 +- 6 (4 sigma bounds)
    assert abs(c["out_of_range"] - 0.05 * n) < 4 * math.sqrt(0.05 * n)
    assert abs(c["unknown_entity"] - 0.02 * n) < 4 * math.sqrt(0.02 * n)
    clean = write_landing_day(sim, date(2026, 6, 11), LocalLanding(tmp_path / "b"), bad=BadRecordRates())
    assert clean.counts() == {}


def test_reference_and_truth_land_as_parquet(sim, tmp_path):
    zone = LocalLanding(tmp_path)
    keys = write_landing_reference(sim, zone)
    assert sorted(keys) == sorted(
        [
            "reference/ref_meters.parquet",
            "reference/ref_transformers.parquet",
            "reference/ref_weather_stations.parquet",
            "truth/truth_customers.parquet",
            "truth/truth_events.parquet",
        ]
    )
    for k in keys:
        name = k.split("/")[1].removesuffix(".parquet")
        expected = {**sim.reference(), **sim.truth()}[name]
        assert pl.read_parquet(io.BytesIO(zone.get_bytes(k))).equals(expected)


def test_writes_to_s3_through_the_landing_protocol(sim):
    moto = pytest.importorskip("moto")
    import boto3

    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="landing")
        zone = S3Landing("s3://landing/raw", client=client)
        man = write_landing_day(
            sim,
            date(2026, 6, 12),
            zone,
            formats={"meter_readings": ("parquet", "csv")},
            bad=BadRecordRates(duplicate=0.01),
            rows_per_file=600,
        )
        listed = (
            {f.key for f in zone.list("meter_readings")}
            | {f.key for f in zone.list("scada")}
            | {f.key for f in zone.list("weather")}
            | {f.key for f in zone.list("weather_forecast")}
        )
        assert listed == {f.key for f in man.files}
        assert json.loads(zone.get_bytes("manifests/2026-06-12.json"))["day"] == "2026-06-12"


def test_the_lake_ingestion_quarantines_exactly_what_the_manifest_lists(sim, tmp_path):
    """Contract check against the lead's reader (lake.ingest): every injected record is quarantined
    with the manifest's reason at the manifest's (file, row), and nothing else is. The ingestion keeps
    the later copy of a duplicate, so the copy it quarantines is the original in ``duplicate_of``."""
    ingest = pytest.importorskip("lake.ingest")
    zone = LocalLanding(tmp_path)
    ref = sim.reference()
    ids = {
        "meter_readings": ref["ref_meters"]["meter_id"],
        "scada": ref["ref_transformers"]["transformer_id"],
        "weather": ref["ref_weather_stations"]["station_id"],
        "weather_forecast": ref["ref_weather_stations"]["station_id"],
        "incidents": pl.concat([ref["ref_meters"]["meter_id"], ref["ref_transformers"]["transformer_id"]]),
    }
    man = write_landing_day(sim, FALL_BACK, zone, formats=("csv", "jsonl", "parquet"), bad=ALL_BAD, rows_per_file=250)
    for name, src in SOURCES.items():
        frames, res = ingest.build_partition(zone, src, FALL_BACK, ids[name], tz=TZ)
        q = frames["quarantine"].filter(~pl.col("reason_code").is_in(["empty_file", "missing_column"]))
        got = {(r["source_file"], r["source_row"], r["reason_code"]) for r in q.iter_rows(named=True)}
        expected = set()
        for f in man.for_source(name):
            for cls, rows in f.faults.items():
                if cls == "duplicate":
                    expected |= {(k, r, cls) for k, r in f.duplicate_of}
                else:
                    expected |= {(f.key, r, cls) for r in rows}
        assert got == expected, name
        renamed_rows = sum(f.rows for f in man.for_source(name) if f.renamed)
        assert res.reasons.get("missing_column", 0) == renamed_rows
        assert res.silver_rows == man.rows_written(name) - len(expected) - renamed_rows
