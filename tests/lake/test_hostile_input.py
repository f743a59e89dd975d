"""Ingestion under hostile input (issue 9, classes 1-7): every bad file is built here, byte by byte; each
test asserts the reason code, a message naming file/row/field, and counts reconciled from the written tables."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import random
import time

import polars as pl
import pytest

from contracts import DEFAULT_TIMEZONE, SOURCES
from lake.ingest import build_partition, ingest_partition, ingest_partitions, reconcile_from_tables
from lake.waiver import waive_file

SRC = SOURCES["meter_readings"]
COLS = ["meter_id", "reading_time", "consumption_kwh", "demand_kw", "voltage", "current_amps", "power_factor"]
HEADER = ",".join(COLS)
DAY = dt.date(2026, 11, 2)
FALL_BACK = dt.date(2026, 11, 1)  # 02:00 EDT -> 01:00 EST in America/New_York


def _ids(lake, src=SRC) -> pl.Series:
    return lake.read(src.reference, columns=[src.entity])[src.entity]


def _put(zone, name: str, data: bytes, day: dt.date = DAY, source: str = "meter_readings") -> str:
    key = f"{source}/{day.isoformat()}/{name}"
    zone.put_bytes(key, data)
    time.sleep(0.01)  # receive order = modification time
    return key


def _put_raw(zone, name: str, data: bytes, day: dt.date = DAY) -> str:
    """A file whose name no landing key may have: written straight to the folder, as a head-end would."""
    p = zone.root / "meter_readings" / day.isoformat() / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    time.sleep(0.01)
    return f"meter_readings/{day.isoformat()}/{name}"


def _row(m: str, t: str, kwh="0.5", kw="1.0", v="231.0", a="4.3", pf="0.95", sep=",") -> str:
    return sep.join([m, t, kwh, kw, v, a, pf])


def _ingest(lake, zone, day: dt.date = DAY, src=SRC):
    res = ingest_partition(zone, lake, src, day, _ids(lake, src), tz=DEFAULT_TIMEZONE)
    pub = not res.held  # a day with an unreadable or unsafe file is written but held out of the manifest
    assert bool(res.published) == pub
    counts = reconcile_from_tables(lake, src, day, published=pub)
    assert counts["difference"] == 0, counts  # every record is somewhere, read back from the tables
    assert counts["bronze_records"] == res.raw_rows and counts["silver_rows"] == res.silver_rows
    return res, lake.read(src.silver, day, published=pub), lake.read(src.quarantine, day, published=pub), counts


# ------------------------------------------------------------------ class 1: encodings, compression, unreadable files
def test_every_decodable_encoding_and_compression_is_read_and_named(env):
    lake, zone, m1, m2 = env
    text = lambda h: "\n".join([HEADER, _row(m1, f"2026-11-02 {h}:00:00"), _row(m2, f"2026-11-02 {h}:00:00")]) + "\n"  # noqa: E731
    keys = {
        "bom": _put(zone, "bom.csv", b"\xef\xbb\xbf" + text("01").encode()),
        "utf16": _put(zone, "utf16.csv", text("02").encode("utf-16")),  # with its BOM
        "gz": _put(zone, "zipped.csv.gz", gzip.compress(text("04").encode())),
        "jsonl_gz": _put(
            zone,
            "zipped.jsonl.gz",
            gzip.compress(
                (json.dumps(dict(zip(COLS, [m1, "2026-11-02T05:00:00-05:00", 0.5, 1.0, 231, 4, 0.9]))) + "\n").encode()
            ),
        ),
        "cr": _put(zone, "cr.csv", text("06").replace("\n", "\r").encode()),
    }
    # Latin-1 bytes in a field nobody validates (an extra 'site' column): the file is still read, in cp1252
    latin = (HEADER + ",site\n" + _row(m1, "2026-11-02 07:00:00") + ",Büro Nord\n").encode("latin-1")
    keys["latin1"] = _put(zone, "latin1.csv", latin)
    res, silver, q, counts = _ingest(lake, zone)
    files = {f.key: f for f in res.files}
    assert all(f.problem is None for f in files.values()), {k: (f.problem, f.detail) for k, f in files.items()}
    assert res.silver_rows == 2 + 2 + 1 + 2 + 1 + 2 and q.height == 0
    assert "UTF-8 BOM" in files[keys["bom"]].detail and "UTF-16" in files[keys["utf16"]].detail
    assert "decoded as cp1252" in files[keys["latin1"]].detail and "byte" in files[keys["latin1"]].detail
    assert "gzip" in files[keys["gz"]].detail and "gzip" in files[keys["jsonl_gz"]].detail
    assert "CR line endings" in files[keys["cr"]].detail
    bronze = lake.read(SRC.bronze, DAY)
    assert "decoded as cp1252" in bronze.filter(pl.col("source_file") == keys["latin1"])["detail"][0]
    assert counts["unreadable_files"] == {}


def test_an_unreadable_file_is_counted_blocks_the_day_and_a_waiver_releases_it(env):
    lake, zone, m1, m2 = env
    good = _put(zone, "good.csv", ("\n".join([HEADER, _row(m1, "2026-11-02 01:00:00")]) + "\n").encode())
    body = "\n".join([HEADER] + [_row(m2, f"2026-11-02 {h:02d}:00:00") for h in range(10)]) + "\n"
    broken_gz = _put(zone, "broken.csv.gz", gzip.compress(body.encode())[:-30])  # truncated in transfer
    broken_pq = _put(zone, "broken.parquet", b"PAR1 not really parquet PAR1")
    xlsx = _put(zone, "export.xlsx", b"PK\x03\x04 a spreadsheet")
    res, silver, q, counts = _ingest(lake, zone)
    assert silver["source_file"].to_list() == [good]
    # the losses the partition cannot hide: named, with size and estimated records
    un = counts["unreadable_files"]
    assert set(un) == {broken_gz, broken_pq, xlsx}
    assert un[broken_gz]["problem"] == "unreadable_file" and un[broken_gz]["bytes"] == len(zone.get_bytes(broken_gz))
    assert un[broken_gz]["estimated_records"] is not None and 1 <= un[broken_gz]["estimated_records"] <= 10
    assert "unknown file extension" in un[xlsx]["detail"]
    assert counts["estimated_unread_records"] >= un[broken_gz]["estimated_records"]
    markers = q.filter(pl.col("source_row") == 0)
    assert sorted(markers["source_file"]) == sorted([broken_gz, broken_pq, xlsx]) and set(markers["reason_code"]) == {
        "unreadable_file"
    }
    # the day is written but held out of the manifest: no reader sees it, and it never reconciles as published
    assert (
        res.held == {broken_gz: "unreadable_file", broken_pq: "unreadable_file", xlsx: "unreadable_file"}
        and res.published == {}
    )
    assert lake.read(SRC.silver, DAY).height == 0 and lake.read(SRC.bronze, DAY).height == 0
    assert reconcile_from_tables(lake, SRC, DAY)["bronze_records"] == 0

    # the operator waives two of them (audited), the third is replaced by a good re-export
    waive_file(zone, broken_pq, "head-end #412: file corrupt at source, readings re-sent in good.csv", "alice")
    waive_file(zone, xlsx, "manual spreadsheet, not a feed", "bob")
    zone.delete(broken_gz)
    fixed = _put(zone, "broken.csv.gz", gzip.compress(body.encode()))
    res, silver, q, counts = _ingest(lake, zone)
    assert counts["unreadable_files"] == {}
    assert set(counts["waived_files"]) == {broken_pq, xlsx}
    assert "alice" in counts["waived_files"][broken_pq] and "head-end #412" in counts["waived_files"][broken_pq]
    assert zone.exists(f"rejected/{broken_pq}") and not zone.exists(broken_pq)
    audit = json.loads(zone.get_bytes(f"rejected/{xlsx}.waiver.json"))
    assert audit["by"] == "bob" and audit["bytes"] == len(b"PK\x03\x04 a spreadsheet") and len(audit["sha256"]) == 64
    assert res.silver_rows == 11 and sorted(set(silver["source_file"])) == sorted([good, fixed])
    assert (
        res.held == {} and res.published["silver_rows"] == 11 and lake.read(SRC.silver, DAY).height == 11
    )  # published now


def test_two_header_names_for_one_column_quarantine_the_file_per_row(env):
    lake, zone, m1, _ = env
    key = _put(
        zone,
        "two_times.csv",
        ("timestamp," + HEADER + "\n" + "2026-11-02 09:00:00," + _row(m1, "2026-11-02 10:00:00") + "\n").encode(),
    )
    res, silver, q, _ = _ingest(lake, zone)
    assert silver.height == 0 and q.height == 1
    r = q.row(0, named=True)
    assert (r["reason_code"], r["field"], r["source_file"], r["source_row"]) == (
        "duplicate_column",
        "reading_time",
        key,
        1,
    )
    assert "timestamp" in r["detail"] and json.loads(r["raw_record"])["timestamp"] == "2026-11-02 09:00:00"


# ------------------------------------------------------------------ class 2: stray file names
def test_stray_names_are_skipped_or_block_visibly_and_the_range_goes_on(env):
    lake, zone, m1, m2 = env
    day2 = DAY + dt.timedelta(days=1)
    ok1 = _put(zone, "ok.csv", ("\n".join([HEADER, _row(m1, "2026-11-02 08:00:00")]) + "\n").encode())
    ok2 = _put(zone, "ok.csv", ("\n".join([HEADER, _row(m1, "2026-11-03 08:00:00")]) + "\n").encode(), day=day2)
    junk = [
        _put_raw(zone, ".DS_Store", b"\x00\x00\x00\x01Bud1"),
        _put_raw(zone, "._ok.csv", b"\x00\x05\x16\x07 AppleDouble"),
    ]
    unsafe = [
        _put_raw(zone, n, ("\n".join([HEADER, _row(m2, "2026-11-02 09:00:00")]) + "\n").encode())
        for n in ("meter export.csv", "zähler.csv", "a;rm -rf.csv")
    ]
    results = ingest_partitions(zone, lake, SRC, [DAY, day2], _ids(lake), tz=DEFAULT_TIMEZONE)
    assert [r.silver_rows for r in results] == [1, 1]  # both days ingested, the stray names did not stop the range
    assert lake.read(SRC.silver, day2)["source_file"].to_list() == [ok2]
    # the unsafe names hold their own day (written, not published); the next day is published
    assert set(results[0].held) == set(unsafe) and results[1].held == {} and results[1].published
    assert lake.read(SRC.silver, DAY).height == 0
    problems = {f.key: (f.problem, f.detail) for f in results[0].files}
    assert problems[ok1] == (None, "")
    for k in junk:
        assert problems[k][0] == "skipped_file" and "hidden or system file" in problems[k][1]
    for k in unsafe:
        assert problems[k][0] == "unsafe_name" and repr(k) in problems[k][1] and "rename" in problems[k][1]
    counts = reconcile_from_tables(lake, SRC, DAY, published=False)
    assert (
        counts["difference"] == 0
        and set(counts["unreadable_files"]) == set(unsafe)
        and set(counts["skipped_files"]) == set(junk)
    )
    bronze = lake.read(SRC.bronze, DAY, published=False)
    assert set(bronze["source_file"]) == {ok1, *junk, *unsafe}
    assert set(bronze.filter(pl.col("archive_path") == "")["source_file"]) == {
        *junk,
        *unsafe,
    }  # never opened nor copied


# ------------------------------------------------------------------ class 3: non-finite numbers
@pytest.mark.parametrize("source", sorted(s for s in SOURCES if SOURCES[s].measures))  # incidents have no measure
def test_non_finite_numbers_are_out_of_range_rows_for_every_measure_of_every_source(lake_and_landing, source):
    lake, zone = lake_and_landing
    src = SOURCES[source]
    ent = _ids(lake, src)[0]
    day = DAY
    cols = src.raw_columns
    good = {
        m.name: (m.min if m.min is not None else 0.0) + 0.5 if m.max is None or (m.min or 0) + 0.5 <= m.max else m.min
        for m in src.measures
    }
    # non-measure fields (a weather forecast's valid_at) carry a valid value on every row
    attrs = {
        a.name: (a.allowed[0] if a.allowed else "x") if a.dtype == pl.Utf8 else "2026-11-02T18:00:00Z"
        for a in src.attributes
    }
    bad_values = ["NaN", "inf", "-inf", "Infinity", "1e999"]
    lines, jl, expect = [",".join(cols)], [], {}
    row = 0
    for m in src.measures:
        for v in bad_values:
            minute = row
            vals = {**attrs, **{k: str(x) for k, x in good.items()}, m.name: v}
            lines.append(",".join([ent, f"2026-11-02 10:{minute:02d}:00"] + [vals[c] for c in cols[2:]]))
            row += 1
            expect[("csv", row)] = (m.name, v)
    k_csv = _put(zone, "nonfinite.csv", ("\n".join(lines) + "\n").encode(), source=source)
    # JSON: the literals NaN / Infinity / -Infinity and an overflowing 1e999
    for i, (m, lit) in enumerate((mm, lit) for mm in src.measures for lit in ("NaN", "Infinity", "-Infinity", "1e999")):
        rec = {src.entity: ent, src.time: f"2026-11-02T12:{i:02d}:00-05:00", **attrs, **good}
        line = json.dumps(rec).replace(f'"{m.name}": {json.dumps(good[m.name])}', f'"{m.name}": {lit}')
        jl.append(line)
        expect[("jsonl", i + 1)] = (
            m.name,
            {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity", "1e999": "Infinity"}[lit],
        )
    k_json = _put(zone, "nonfinite.jsonl", ("\n".join(jl) + "\n").encode(), source=source)
    res, silver, q, _ = _ingest(lake, zone, day, src)
    assert silver.height == 0 and q.height == len(expect)
    for r in q.iter_rows(named=True):
        fmt = "csv" if r["source_file"] == k_csv else "jsonl"
        assert r["source_file"] in (k_csv, k_json)
        field, value = expect[(fmt, r["source_row"])]
        assert (r["reason_code"], r["field"], r["value"]) == ("out_of_range", field, value), r
        assert field in r["detail"] and "finite" in r["detail"]


# ------------------------------------------------------------------ class 4: CSV dialects
def test_csv_dialects_quoted_and_cased_headers_bom_delimiters_and_decimal_comma(env):
    lake, zone, m1, m2 = env
    quoted = ",".join(f'"{c}"' for c in COLS)
    cased = (
        HEADER.replace("meter_id", "Meter_ID").replace("reading_time", " Reading_Time ").replace("voltage", "VOLTAGE")
    )
    files = {
        "quoted.csv": f"{quoted}\n{_row(m1, '2026-11-02 01:00:00')}\n",
        "cased.csv": f"{cased}\n{_row(m1, '2026-11-02 02:00:00')}\n",
        "semicolon.csv": ";".join(COLS)
        + "\n"
        + _row(m1, "2026-11-02 03:00:00", kwh="0,25", kw="-1,5", v="231,4", pf="0,97", sep=";")
        + "\n",
        "tab.csv": "\t".join(COLS) + "\n" + _row(m1, "2026-11-02 04:00:00", kwh="0,75", sep="\t") + "\n",
        "pipe.csv": "|".join(COLS) + "\n" + _row(m1, "2026-11-02 05:00:00", sep="|") + "\n",
        "bom_quoted.csv": "\ufeff" + quoted + "\n" + _row(m2, "2026-11-02 06:00:00") + "\n",
    }
    for n, t in files.items():
        _put(zone, n, t.encode())
    res, silver, q, _ = _ingest(lake, zone)
    assert q.height == 0 and res.silver_rows == 6, [(f.key, f.problem, f.detail) for f in res.files]
    semi = silver.filter(pl.col("source_file").str.ends_with("semicolon.csv")).row(0, named=True)
    assert (semi["consumption_kwh"], semi["demand_kw"], semi["voltage"], semi["power_factor"]) == (
        0.25,
        -1.5,
        231.4,
        0.97,
    )
    assert silver.filter(pl.col("source_file").str.ends_with("tab.csv"))["consumption_kwh"].to_list() == [0.75]


def test_a_thousands_comma_is_not_read_as_a_decimal_in_a_comma_file(env):
    lake, zone, m1, _ = env
    key = _put(zone, "q.csv", (HEADER + "\n" + f'{m1},2026-11-02 01:00:00,"1,5",1.0,231,4.3,0.95' + "\n").encode())
    res, silver, q, _ = _ingest(lake, zone)
    r = q.row(0, named=True)
    assert (r["reason_code"], r["field"], r["value"], r["source_file"], r["source_row"]) == (
        "wrong_type",
        "consumption_kwh",
        "1,5",
        key,
        1,
    )


# ------------------------------------------------------------------ class 5: ISO timestamps
def test_rfc3339_and_iso_timestamps_are_parsed_and_bad_offsets_or_years_are_out_of_range(env):
    lake, zone, m1, _ = env
    ok = {
        "2026-11-02T10:11:00Z": "10:11:00.000",
        "2026-11-02T10:12:00.250Z": "10:12:00.250",
        "2026-11-02T10:13:00.123456z": "10:13:00.123",
        "2026-11-02 05:14:00.000": "10:14:00.000",  # naive local, EST = UTC-5
        "2026-11-02T05:15:00.5": "10:15:00.500",
        "2026-11-02T10:16:00+00": "10:16:00.000",
        "2026-11-02T12:17:00+0200": "10:17:00.000",
        "2026-11-02t05:18:00-05:00": "10:18:00.000",
        "2026-11-02T05:19-05:00": "10:19:00.000",
        "2026-11-02T10:20:00+00:00": "10:20:00.000",
    }
    bad = {
        "2026-11-02T10:21:00+15:00": "offset",
        "2026-11-02T23:00:00-14:30": "offset",
        "1970-01-01T00:00:00Z": "years",
        "2206-11-02T10:00:00Z": "years",
    }
    rows = [_row(m1, t) for t in [*ok, *bad]] + [_row(m1, "2026-11-02T10:61:00Z")]
    key = _put(zone, "iso.csv", ("\n".join([HEADER, *rows]) + "\n").encode())
    res, silver, q, _ = _ingest(lake, zone)
    got = silver.sort("source_row")["reading_time"].dt.strftime("%H:%M:%S%.3f").to_list()
    assert got == list(ok.values())
    by_row = {r["source_row"]: r for r in q.iter_rows(named=True)}
    for i, (t, why) in enumerate(bad.items(), start=len(ok) + 1):
        r = by_row[i]
        assert (r["reason_code"], r["field"], r["value"], r["source_file"]) == (
            "out_of_range",
            "reading_time",
            t,
            key,
        ), r
        assert why in r["detail"] and t in r["detail"]
    assert by_row[len(rows)]["reason_code"] == "wrong_type"


# ------------------------------------------------------------------ class 6: Parquet column types
def test_unexpected_parquet_types_are_per_row_wrong_type_never_an_exception(env):
    lake, zone, m1, m2 = env
    n = 3
    base = {
        "meter_id": [m1, m2, m1],
        "reading_time": [dt.datetime(2026, 11, 2, 15, i, tzinfo=dt.timezone.utc) for i in range(n)],
        "consumption_kwh": [0.1, 0.2, 0.3],
        "demand_kw": [1.0, 2.0, 3.0],
        "voltage": [230.0, 231.0, 232.0],
        "current_amps": [1.0, 1.0, 1.0],
        "power_factor": [0.9, 0.9, 0.9],
    }

    def put(name, **override):
        buf = io.BytesIO()
        pl.DataFrame({**base, **override}).write_parquet(buf)
        return _put(zone, name, buf.getvalue())

    k_bool = put("bool.parquet", consumption_kwh=[True, False, True])
    k_null = put(
        "allnull.parquet",
        voltage=pl.Series([None] * n, dtype=pl.Null),
        reading_time=[dt.datetime(2026, 11, 2, 16, i, tzinfo=dt.timezone.utc) for i in range(n)],
    )
    k_list = put(
        "nested.parquet",
        demand_kw=[[1.0], [2.0, 3.0], None],
        reading_time=[dt.datetime(2026, 11, 2, 17, i, tzinfo=dt.timezone.utc) for i in range(n)],
    )
    k_date = put("datetime_as_date.parquet", reading_time=[dt.date(2026, 11, 2)] * n)
    k_bin = put(
        "binary_extra.parquet",
        blob=[b"\x00\x01", b"\xff", None],
        reading_time=[dt.datetime(2026, 11, 2, 18, i, tzinfo=dt.timezone.utc) for i in range(n)],
    )
    k_int = put(
        "int_and_text.parquet",
        consumption_kwh=[1, 2, 3],
        reading_time=["2026-11-02T19:00:00Z", "2026-11-02 14:01:00", "not a time"],
    )
    res, silver, q, _ = _ingest(lake, zone)
    assert all(f.problem is None for f in res.files), [(f.key, f.problem, f.detail) for f in res.files]
    reasons = {
        (r["source_file"], r["source_row"]): (r["reason_code"], r["field"], r["value"]) for r in q.iter_rows(named=True)
    }
    assert reasons[(k_bool, 1)] == ("wrong_type", "consumption_kwh", "true")  # booleans are not numbers
    assert (
        reasons[(k_list, 2)][:2] == ("wrong_type", "demand_kw")
        and (k_list, 3) not in reasons
        or reasons[(k_list, 3)][0] == "missing_value"
    )
    assert all(reasons[(k_date, i)][:2] == ("wrong_type", "reading_time") for i in (1, 2, 3))
    assert reasons[(k_int, 3)] == ("wrong_type", "reading_time", "not a time")
    # an all-null optional column is just empty values; the binary extra column travels in raw_record as hex
    assert (
        silver.filter(pl.col("source_file") == k_null).height == n
        and silver.filter(pl.col("source_file") == k_null)["voltage"].null_count() == n
    )
    assert silver.filter(pl.col("source_file") == k_bin).height == n
    assert silver.filter(pl.col("source_file") == k_int).sort("source_row")["consumption_kwh"].to_list() == [1.0, 2.0]


# ------------------------------------------------------------------ class 7: the fall-back hour, any arrangement
def _fold_truth(meter: str, step_min: int, start_h=0, end_h=3, kwh0=0) -> list[tuple[str, dt.datetime, str]]:
    """(meter, true UTC instant, local wall time) every step_min from start_h to end_h local on the fall-back
    day; each reading carries a unique consumption value so its true instant can be looked up."""
    t = dt.datetime(2026, 11, 1, start_h + 4, tzinfo=dt.timezone.utc)  # 00:00 EDT = 04:00Z
    end = dt.datetime(2026, 11, 1, end_h + 5, tzinfo=dt.timezone.utc)  # 03:00 EST = 08:00Z
    out = []
    while t < end:
        local = t - dt.timedelta(hours=4 if t < dt.datetime(2026, 11, 1, 6, tzinfo=dt.timezone.utc) else 5)
        out.append((meter, t, local.strftime("%Y-%m-%d %H:%M:%S")))
        t += dt.timedelta(minutes=step_min)
    return out


def _fold_csv(zone, name, readings, kwh_of) -> str:
    rows = [_row(m, wall, kwh=f"{kwh_of[(m, utc)]:.4f}") for m, utc, wall in readings]
    return _put(zone, name, ("\n".join([HEADER, *rows]) + "\n").encode(), day=FALL_BACK)


ARRANGEMENTS = [
    "ascending",
    "descending",
    "interleaved",
    "halves_in_two_files",
    "resent_block",
    "duplicate_row",
    "shuffled",
    "hourly",
    "identical_values",
    "lone",
]


@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_the_fall_back_hour_is_never_silently_swapped(env, arrangement):
    lake, zone, m1, m2 = env
    step = 60 if arrangement == "hourly" else 15
    a, b = _fold_truth(m1, step), _fold_truth(m2, step)
    truth = {(m, utc): 0.001 * (i + 1) for i, (m, utc, _) in enumerate(a + b)}
    if arrangement == "identical_values":  # the standard-time hour repeats the daylight values
        for m, utc in list(truth):
            if utc >= dt.datetime(2026, 11, 1, 6, tzinfo=dt.timezone.utc) and utc < dt.datetime(
                2026, 11, 1, 7, tzinfo=dt.timezone.utc
            ):
                truth[(m, utc)] = truth[(m, utc - dt.timedelta(hours=1))]
    expect_resolved = arrangement in ("ascending", "descending", "interleaved")
    if arrangement == "ascending":
        _fold_csv(zone, "a.csv", a + b, truth)
    elif arrangement == "descending":
        _fold_csv(zone, "a.csv", a[::-1] + b[::-1], truth)
    elif arrangement == "interleaved":
        _fold_csv(zone, "a.csv", [x for pair in zip(a, b) for x in pair], truth)
    elif arrangement == "halves_in_two_files":
        cut = dt.datetime(2026, 11, 1, 6, tzinfo=dt.timezone.utc)
        _fold_csv(zone, "edt.csv", [r for r in a if r[1] < cut], truth)
        _fold_csv(zone, "est.csv", [r for r in a if r[1] >= cut], truth)
    elif arrangement == "resent_block":  # the daylight 01:xx block sent again after the standard one
        edt = [
            r
            for r in a
            if dt.datetime(2026, 11, 1, 5, tzinfo=dt.timezone.utc)
            <= r[1]
            < dt.datetime(2026, 11, 1, 6, tzinfo=dt.timezone.utc)
        ]
        _fold_csv(
            zone, "a.csv", [r for r in a if r[1] < dt.datetime(2026, 11, 1, 6, tzinfo=dt.timezone.utc)] + edt, truth
        )
    elif arrangement == "duplicate_row":
        dup = a[5]  # 01:15 EDT, received twice in a row, and no standard hour in the file
        _fold_csv(
            zone,
            "a.csv",
            list(a[:6]) + [dup] + [r for r in a if r[1] >= dt.datetime(2026, 11, 1, 7, tzinfo=dt.timezone.utc)],
            truth,
        )
    elif arrangement == "shuffled":
        rows = a[:]
        random.Random(7).shuffle(rows)
        _fold_csv(zone, "a.csv", rows, truth)
    elif arrangement in ("hourly", "identical_values"):
        _fold_csv(zone, "a.csv", a, truth)
    elif arrangement == "lone":
        _fold_csv(zone, "a.csv", [r for r in a if r[2].endswith("01:30:00")][:1], truth)
    res, silver, q, _ = _ingest(lake, zone, FALL_BACK)
    by_value = {}
    for (m, utc), v in truth.items():
        by_value.setdefault((m, round(v, 4)), set()).add(utc)
    # the worst outcome is impossible: every silver row sits at its reading's true instant
    for r in silver.iter_rows(named=True):
        assert r["reading_time"] in by_value[(r["meter_id"], round(r["consumption_kwh"], 4))], r
    amb = q.filter(pl.col("reason_code") == "dst_ambiguous_time")
    assert all("occurs twice" in d and "America/New_York" in d for d in amb["detail"])
    in_fold = lambda utc: (
        dt.datetime(2026, 11, 1, 5, tzinfo=dt.timezone.utc) <= utc < dt.datetime(2026, 11, 1, 7, tzinfo=dt.timezone.utc)
    )  # noqa: E731
    if expect_resolved:
        assert amb.height == 0 and silver.height == len(a) + len(b)
        assert silver.filter(pl.col("meter_id") == m1).height == len(a)
    else:
        assert amb.height > 0  # not provable: quarantined with a reason, not guessed
        assert not any(in_fold(t) for t in silver.filter(pl.col("meter_id") == m1)["reading_time"])


def test_a_meter_file_order_proof_is_per_file_and_survives_a_second_copy(env):
    lake, zone, m1, _ = env
    a = _fold_truth(m1, 30)
    truth = {(m, utc): 0.01 * (i + 1) for i, (m, utc, _) in enumerate(a)}
    _fold_csv(zone, "first.csv", a, truth)
    _fold_csv(zone, "again.csv", a[::-1], truth)  # the same readings re-sent, newest first
    res, silver, q, _ = _ingest(lake, zone, FALL_BACK)
    assert (
        silver.height == len(a)
        and res.duplicate_rows == len(a)
        and q.filter(pl.col("reason_code") != "duplicate").height == 0
    )
    assert sorted(silver["reading_time"].to_list()) == [utc for _, utc, _ in a]


def test_build_never_raises_on_a_folder_of_everything_bad(env):
    lake, zone, m1, _ = env
    for i, data in enumerate(
        [
            b"",
            b"\x00" * 100,
            b"\xff\xfe\x00",
            gzip.compress(b""),
            b"PAR1",
            b"\x1f\x8b\x08garbage",
            "ü;ö\n1;2\n".encode("utf-16-le"),
        ]
    ):
        _put(zone, f"f{i}.csv", data)
    _put(zone, "x.jsonl", b'{"meter_id": [1,2]}\n[1,2]\n{"meter_id": {"a": 1}, "reading_time": true}\n')
    frames, res = build_partition(zone, SRC, DAY, _ids(lake), lake=lake, tz=DEFAULT_TIMEZONE)
    assert res.reconciles and res.silver_rows == 0


# ------------------------------------------------------------------ class 9: chunked reading gives the same tables
def test_reading_in_tiny_chunks_gives_exactly_the_tables_of_one_read(env):
    lake, zone, m1, m2 = env
    rows = [
        _row(m, f"2026-11-02 {h:02d}:{mi:02d}:00", kwh=f"{h}.{mi:02d}")
        for h in range(24)
        for mi in (0, 30)
        for m in (m1, m2)
    ]
    rows[7] = rows[7][:20]  # a malformed line
    rows[11] = _row("NOPE", "2026-11-02 05:45:00")
    text = "\n".join([HEADER, *rows]) + "\n"
    _put(zone, "plain.csv", text.encode())
    _put(zone, "cr.csv.gz", gzip.compress(text.replace("\n", "\r").replace("2026-11-02 0", "2026-11-02T0").encode()))
    _put(zone, "latin.csv", (HEADER + ",site\n" + "\n".join(r + ",Zürich" for r in rows[:30]) + "\n").encode("cp1252"))
    _put(
        zone,
        "x.jsonl",
        "\n".join(json.dumps(dict(zip(COLS, r.split(",")))) for r in rows[40:70] if r.count(",") == 6).encode(),
    )
    big = pl.DataFrame({"meter_id": [m1] * 48, "reading_time": [dt.datetime(2026, 11, 2, 5, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=30 * i) for i in range(48)],
                        **{c: [float(i % 7) / 10 + 0.1 for i in range(48)] for c in COLS[2:]}}).with_columns(pl.col("voltage") + 230)  # fmt: skip
    buf = io.BytesIO()
    big.write_parquet(buf, row_group_size=5)
    _put(zone, "rows.parquet", buf.getvalue())
    ids = _ids(lake)
    at = dt.datetime(2026, 11, 3, tzinfo=dt.timezone.utc)
    one, r1 = build_partition(zone, SRC, DAY, ids, ingested_at=at, tz=DEFAULT_TIMEZONE)
    tiny, r2 = build_partition(
        zone, SRC, DAY, ids, ingested_at=at, chunk_bytes=100, tz=DEFAULT_TIMEZONE
    )  # every few lines a chunk
    assert r1.raw_rows == r2.raw_rows > 200 and r1.reconciles and r2.reconciles
    for name in ("silver", "quarantine", "bronze"):
        a, b = one[name], tiny[name]
        order = [c for c in ("source_file", "source_row", "reason_code") if c in a.columns]
        assert a.sort(order).equals(b.sort(order)), (
            name,
            [x for x in zip(a.sort(order).rows(), b.sort(order).rows()) if x[0] != x[1]],
        )
    assert one["quarantine"]["reason_code"].value_counts().height >= 2


def test_a_blocking_file_arriving_for_a_published_day_keeps_readers_on_its_last_publication(env):
    lake, zone, m1, m2 = env
    good = _put(
        zone,
        "good.csv",
        ("\n".join([HEADER, _row(m1, "2026-11-02 01:00:00"), _row(m2, "2026-11-02 01:00:00")]) + "\n").encode(),
    )
    res, _, _, _ = _ingest(lake, zone)
    first = res.published
    assert first and lake.read(SRC.silver, DAY).height == 2
    late = _put(zone, "late.parquet", b"PAR1 truncated PAR1")  # a late file that cannot be read: the re-run is held
    res, silver, _, counts = _ingest(lake, zone)
    assert res.held == {late: "unreadable_file"} and silver.height == 2 and set(counts["unreadable_files"]) == {late}
    assert lake.read(SRC.silver, DAY)["source_file"].to_list() == [good, good]
    assert lake.read(SRC.bronze, DAY)["source_file"].to_list() == [good]  # the previous publication, whole
    assert reconcile_from_tables(lake, SRC, DAY)["unreadable_files"] == {}
    waive_file(zone, late, "empty transfer, nothing lost", "carol")
    res, _, _, _ = _ingest(lake, zone)
    assert res.held == {} and res.published["silver_version"] > first["silver_version"]
    assert set(lake.read(SRC.bronze, DAY)["source_file"]) == {good, late}  # the waiver's audit row is published


def test_a_day_over_its_memory_budget_spills_by_meter_and_gives_exactly_the_tables_of_one_in_memory_pass(
    env, tmp_path, monkeypatch
):
    """Class 9: a budget far below the day's size makes every chunk spill to temporary Parquet buckets by
    meter, buckets larger than half the budget are split again, and silver streams into one Delta commit:
    the tables equal those of the in-memory pass (duplicates across files and chunks, flags per meter)."""
    from lake.spill import SpilledFrame

    lake, zone, m1, m2 = env
    ids = _ids(lake)
    meters = ids.to_list()  # 60: two meters share most of the 32 buckets, which a budget this small splits again
    rows = [
        _row(m, f"2026-11-02 {h:02d}:{mi:02d}:00", kwh=f"{(h * 7 + i) % 5 + 0.1:.1f}")
        for h in range(24)
        for mi in (0, 30)
        for i, m in enumerate(meters)
    ]
    rows[5] = _row(meters[0], "2026-11-02 03:15:00", kwh="40.0")  # an anomaly against that meter's own average
    _put(zone, "a.csv", ("\n".join([HEADER, *rows]) + "\n").encode())
    _put(
        zone, "b.csv", ("\n".join([HEADER, *rows[100:400], _row("NOPE", "2026-11-02 05:45:00")]) + "\n").encode()
    )  # re-sent: duplicates
    spill_root = tmp_path / "spill"
    monkeypatch.setenv("GRIDLAKE_SPILL_DIR", str(spill_root))
    at = dt.datetime(2026, 11, 3, tzinfo=dt.timezone.utc)
    mem, r1 = build_partition(zone, SRC, DAY, ids, ingested_at=at, tz=DEFAULT_TIMEZONE)
    spilled, r2 = build_partition(
        zone, SRC, DAY, ids, ingested_at=at, chunk_bytes=8000, memory_bytes=8000, tz=DEFAULT_TIMEZONE
    )
    assert (
        isinstance(spilled["silver"], SpilledFrame) and len(spilled["silver"].paths) > 32
    )  # buckets, and parts of buckets
    assert not isinstance(mem["silver"], SpilledFrame)
    assert r1.summary() == r2.summary() and r2.duplicate_rows == 300 and r2.flags.get("anomaly", 0) >= 1
    order = ["source_file", "source_row"]
    assert spilled["silver"].collect().sort(order).equals(mem["silver"].sort(order))
    q_order = ["source_file", "source_row", "reason_code"]
    # the quarantine (300 duplicates + 1 unknown meter) is over a quarter of the budget: it spills too
    assert isinstance(spilled["quarantine"], SpilledFrame) and not isinstance(mem["quarantine"], SpilledFrame)
    assert spilled["quarantine"].collect().sort(q_order).equals(mem["quarantine"].sort(q_order))
    spilled["silver"].close()
    assert list(spill_root.iterdir()) == []  # the temporary files are gone

    # written: one streamed commit per table, published, identical to the in-memory day; nothing left behind
    res = ingest_partition(zone, lake, SRC, DAY, ids, memory_bytes=8000, tz=DEFAULT_TIMEZONE)
    assert res.published and res.writes["silver"].rows == r1.silver_rows and list(spill_root.iterdir()) == []
    assert lake.delta(SRC.silver).version() == res.writes["silver"].version == res.published["silver_version"]
    assert lake.commit_partitions(SRC.silver, res.writes["silver"].version) == {DAY}  # one commit replaced the day
    ingest_partition(
        zone, lake, SRC, DAY, ids, memory_bytes=8000, tz=DEFAULT_TIMEZONE
    )  # a re-run replaces the day, nothing doubles
    assert lake.read(SRC.silver, DAY).height == r1.silver_rows
    from lake.catalog import query, refresh_catalog  # DuckDB's delta_scan reads the streamed files too

    refresh_catalog(lake, tmp_path / "c.duckdb", [SRC.silver])
    got = query(
        tmp_path / "c.duckdb",
        "SELECT count(*) AS n, sum(consumption_kwh) AS kwh FROM silver_meter_readings WHERE date = DATE '2026-11-02'",
    )
    assert got["n"][0] == r1.silver_rows and got["kwh"][0] == pytest.approx(mem["silver"]["consumption_kwh"].sum())
    silver = lake.read(SRC.silver, DAY).drop("ingested_at", strict=False).sort(order)
    assert silver.equals(mem["silver"].sort(order).select(silver.columns).cast(silver.schema))
    assert reconcile_from_tables(lake, SRC, DAY)["difference"] == 0


def test_the_memory_budget_setting_is_checked(monkeypatch):
    from lake.spill import memory_budget_bytes

    monkeypatch.setenv("GRIDLAKE_INGEST_MEMORY_MB", "256")
    assert memory_budget_bytes() == 256 << 20
    for bad in ("lots", "-5", "0", "1.5"):
        monkeypatch.setenv("GRIDLAKE_INGEST_MEMORY_MB", bad)
        with pytest.raises(ValueError, match="GRIDLAKE_INGEST_MEMORY_MB"):
            memory_budget_bytes()


def test_a_spilled_day_whose_write_fails_half_way_leaves_readers_on_the_last_publication(env, tmp_path, monkeypatch):
    """The streamed silver write commits nothing until every piece is in its files: a failure after the
    first piece (a crash, a full disk) leaves no commit, the previous publication in force, no temporary
    files, and a re-run gives the same tables."""
    from lake import spill

    lake, zone, m1, m2 = env
    meters = _ids(lake).to_list()
    rows = [
        _row(m, f"2026-11-02 {h:02d}:00:00", kwh=f"{(h + i) % 4 + 0.2:.1f}")
        for h in range(24)
        for i, m in enumerate(meters)
    ]
    _put(zone, "day.csv", ("\n".join([HEADER, *rows]) + "\n").encode())
    monkeypatch.setenv("GRIDLAKE_SPILL_DIR", str(tmp_path / "spill"))
    first = ingest_partition(zone, lake, SRC, DAY, _ids(lake), tz=DEFAULT_TIMEZONE)  # in memory: the day is published
    published = lake.read(SRC.silver, DAY).sort("source_row")
    _put(zone, "more.csv", ("\n".join([HEADER, _row(m1, "2026-11-02 00:30:00")]) + "\n").encode())
    silver_version = lake.delta(SRC.silver).version()

    real_iter = spill.SpilledFrame.__iter__

    def broken(self):
        it = real_iter(self)
        yield next(it)
        raise OSError("disk full while writing silver")

    monkeypatch.setattr(spill.SpilledFrame, "__iter__", broken)
    with pytest.raises(OSError, match="disk full"):
        ingest_partition(zone, lake, SRC, DAY, _ids(lake), memory_bytes=8000, tz=DEFAULT_TIMEZONE)
    assert lake.delta(SRC.silver).version() == silver_version  # nothing committed
    assert lake.read(SRC.silver, DAY).sort("source_row").equals(published)  # readers: the last publication
    assert list((tmp_path / "spill").iterdir()) == []
    monkeypatch.setattr(spill.SpilledFrame, "__iter__", real_iter)
    again = ingest_partition(zone, lake, SRC, DAY, _ids(lake), memory_bytes=8000, tz=DEFAULT_TIMEZONE)
    assert again.silver_rows == first.silver_rows + 1 and lake.read(SRC.silver, DAY).height == again.silver_rows
    assert reconcile_from_tables(lake, SRC, DAY)["difference"] == 0
