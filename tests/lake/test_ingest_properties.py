"""Property: for any day of landing files mixing valid rows and corruptions, over CSV (several dialects and
encodings), JSON lines and Parquet, ingestion raises nothing, counts reconcile from the written tables,
every valid row is in silver exactly once (and nothing else is), and re-ingesting gives identical tables.

Deterministic in CI: the examples are derived from the test itself (``derandomize=True``), not from a seed.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import itertools
import json

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import DEFAULT_TIMEZONE, SOURCES
from lake.delta import Lake
from lake.ingest import ingest_partition, reconcile_from_tables
from lake.landing import LocalLanding

SRC = SOURCES["meter_readings"]
COLS = SRC.raw_columns
DAY = dt.date(2026, 11, 2)  # EST all day: local = UTC - 5 h
IDS = pl.Series("meter_id", [f"M{i:06d}" for i in range(1, 5)])
START = dt.datetime(2026, 11, 2, 5, tzinfo=dt.timezone.utc)  # local midnight

TEXT_KINDS = ["wrong_type", "nonfinite", "out_of_range", "unknown", "missing", "bad_time", "late", "malformed", "dup"]
TYPED_KINDS = ["nonfinite", "out_of_range", "unknown", "missing", "late", "dup"]
VARIANTS = {
    "csv": ["plain", "bom", "gzip", "crlf", "cr", "semicolon", "quoted_header", "utf16", "cp1252", "iso_z"],
    "jsonl": ["plain", "gzip", "bom", "crlf"],
    "parquet": ["plain"],
}


@st.composite
def days(draw):
    n_files = draw(st.integers(1, 4))
    files = []
    for _ in range(n_files):
        fmt = draw(st.sampled_from(sorted(VARIANTS)))
        files.append({"fmt": fmt, "variant": draw(st.sampled_from(VARIANTS[fmt])), "rows": []})
    slots = draw(st.lists(st.tuples(st.integers(0, len(IDS) - 1), st.integers(0, 95)), unique=True, max_size=30))
    valid = []
    for m, k in slots:
        rec = {"m": IDS[m], "t": START + dt.timedelta(minutes=15 * k), "kwh": draw(st.integers(0, 99_999)) / 1000, "kw": draw(st.integers(-5000, 5000)) / 1000,
               "v": draw(st.integers(2000, 2600)) / 10, "a": draw(st.integers(0, 500)) / 10, "pf": draw(st.one_of(st.none(), st.integers(0, 100).map(lambda x: x / 100)))}  # fmt: skip
        valid.append(rec)
        draw(st.sampled_from(files))["rows"].append(("valid", rec))
    for _ in range(draw(st.integers(0, 12))):
        f = draw(st.sampled_from(files))
        kind = draw(st.sampled_from(TYPED_KINDS if f["fmt"] == "parquet" else TEXT_KINDS))
        if kind == "dup" and not valid:
            kind = "out_of_range"
        base = (
            draw(st.sampled_from(valid))
            if kind == "dup"
            else {
                "m": IDS[0],
                "t": START + dt.timedelta(minutes=draw(st.integers(0, 1439))),
                "kwh": 0.5,
                "kw": 1.0,
                "v": 231.0,
                "a": 4.0,
                "pf": 0.9,
            }
        )
        f["rows"].insert(draw(st.integers(0, len(f["rows"]))), (kind, dict(base)))
    garbage = draw(
        st.sampled_from([None, b"\x1f\x8b\x08 truncated", b"PAR1\x15\x00\x15\x0c not parquet", b"\x00\x01\x02"])
    )
    return files, valid, garbage


def _text_value(kind: str, rec: dict, field: str, fmt: str, variant: str):
    """A row's field value as text (CSV) or a JSON value, with the corruption of its kind applied."""
    m, t = rec["m"], rec["t"]
    if field == "meter_id":
        return {"unknown": "NOPE-9", "missing": ""}.get(kind, m)
    if field == "reading_time":
        if kind == "bad_time":
            return "2026-13-45 99:00:00"
        if kind == "late":
            t = START - dt.timedelta(minutes=30)
        if fmt == "jsonl" or variant == "iso_z":
            return t.strftime("%Y-%m-%dT%H:%M:%SZ")
        return (t - dt.timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S")
    v = {
        "consumption_kwh": rec["kwh"],
        "demand_kw": rec["kw"],
        "voltage": rec["v"],
        "current_amps": rec["a"],
        "power_factor": rec["pf"],
    }[field]
    if field == "consumption_kwh" and kind == "wrong_type":
        return "abc"
    if field == "consumption_kwh" and kind == "nonfinite":
        return "inf" if fmt == "csv" else float("inf")
    if field == "voltage" and kind == "out_of_range":
        v = 999.0
    if fmt == "jsonl":
        return v
    s = "" if v is None else repr(v)
    return s.replace(".", ",") if variant == "semicolon" else s


def _file_bytes(f: dict) -> bytes:
    fmt, variant = f["fmt"], f["variant"]
    if fmt == "parquet":
        rows = []
        for kind, rec in f["rows"]:
            r = {c: _text_value(kind, rec, c, "jsonl", variant) for c in COLS}
            r["meter_id"] = None if kind == "missing" else r["meter_id"]
            r["reading_time"] = (START - dt.timedelta(minutes=30)) if kind == "late" else rec["t"]
            rows.append(r)
        schema = {"meter_id": pl.Utf8, "reading_time": pl.Datetime("us", "UTC"), **dict.fromkeys(COLS[2:], pl.Float64)}
        buf = io.BytesIO()
        pl.DataFrame(rows, schema=schema).write_parquet(buf)
        return buf.getvalue()
    if fmt == "jsonl":
        lines = [
            json.dumps({c: _text_value(kind, rec, c, fmt, variant) for c in COLS})
            if kind != "malformed"
            else '{"meter_id": "M000001", '
            for kind, rec in f["rows"]
        ]
    else:
        sep = ";" if variant == "semicolon" else ","
        header = sep.join(f'"{c}"' if variant == "quoted_header" else c for c in COLS) + (
            ",site" if variant == "cp1252" else ""
        )
        lines = [header]
        for kind, rec in f["rows"]:
            vals = [_text_value(kind, rec, c, fmt, variant) for c in COLS]
            if kind == "malformed":
                vals = vals[:4]
            lines.append(sep.join(vals) + (",Zürich" if variant == "cp1252" and kind != "malformed" else ""))
    nl = {"crlf": "\r\n", "cr": "\r"}.get(variant, "\n")
    text = nl.join(lines) + nl
    if variant == "utf16":
        return text.encode("utf-16")
    data = text.encode("cp1252" if variant == "cp1252" else "utf-8")
    if variant == "bom":
        data = b"\xef\xbb\xbf" + data
    return gzip.compress(data, mtime=0) if variant == "gzip" else data


def _tables(lake: Lake, published: bool = True) -> dict[str, pl.DataFrame]:
    drop = lambda df: df.drop([c for c in ("ingested_at",) if c in df.columns])  # noqa: E731 - the run's clock
    return {
        "silver": drop(lake.read(SRC.silver, DAY, published=published)).sort("source_file", "source_row"),
        "quarantine": drop(lake.read(SRC.quarantine, DAY, published=published)).sort(
            "source_file", "source_row", "reason_code"
        ),
        "bronze": drop(lake.read(SRC.bronze, DAY, published=published)).drop("archive_path").sort("source_file"),
    }


_counter = itertools.count()


@pytest.mark.slow
@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(day=days())
def test_any_mixture_of_valid_and_corrupt_rows_reconciles_and_keeps_every_valid_row_once(tmp_path, day):
    files, valid, garbage = day
    root = tmp_path / f"ex{next(_counter)}"
    zone, lake = LocalLanding(root / "landing"), Lake(root / "lake")
    ext = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
    for i, f in enumerate(files):
        name = f"part-{i}.{ext[f['fmt']]}" + (".gz" if f["variant"] == "gzip" else "")
        zone.put_bytes(f"meter_readings/{DAY}/{name}", _file_bytes(f))
    if garbage is not None:
        zone.put_bytes(f"meter_readings/{DAY}/zz-garbage.csv", garbage)

    res = ingest_partition(zone, lake, SRC, DAY, IDS, tz=DEFAULT_TIMEZONE)  # no exception escapes
    # a garbage file holds the day out of the manifest (written, not published): counted as written
    pub = garbage is None
    assert bool(res.held) != pub and bool(res.published) == pub
    if not pub:
        assert lake.read(SRC.silver, DAY).height == 0  # no reader sees a held day
    counts = reconcile_from_tables(lake, SRC, DAY, published=pub)
    assert counts["difference"] == 0 and res.reconciles
    assert counts["bronze_records"] == counts["silver_rows"] + counts["quarantined_rows"] + counts["duplicate_rows"]
    assert set(counts["unreadable_files"]) == (
        {f"meter_readings/{DAY}/zz-garbage.csv"} if garbage is not None else set()
    )
    first = _tables(lake, pub)
    silver = first["silver"]
    got = sorted(zip(silver["meter_id"], silver["reading_time"], silver["consumption_kwh"]))
    want = sorted((r["m"], r["t"], r["kwh"]) for r in valid)
    assert got == want  # every valid row exactly once, and nothing else

    ingest_partition(zone, lake, SRC, DAY, IDS, tz=DEFAULT_TIMEZONE)  # re-ingesting gives identical tables
    again = _tables(lake, pub)
    for name in first:
        assert again[name].equals(first[name]), name
