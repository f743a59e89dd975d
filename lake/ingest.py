"""Landing files -> bronze archive + silver + quarantine for one source and one daily partition.

One pass over the partition's landing files (``<source>/<YYYY-MM-DD>/...``), in receive order:

1. archive each file byte-exact in the lake (bronze) and read it: CSV and JSON lines as text
   fields, Parquet with its own types; lineage = (landing key, 1-based data row). A file that
   cannot be read, is empty, or lacks a contract column is recorded, never fatal;
2. validate every record with vectorised polars expressions; the first failing rule gives the
   record's reason code (contracts.REASON_TEXT), field, offending value and a sentence;
3. resolve local times to UTC in the utility's zone: ISO offsets and tz-aware Parquet
   timestamps are honoured; naive local times in the repeated fall-back hour are resolved by
   their order in the file (first = daylight time); spring-forward gap times are rejected;
4. deduplicate accepted records on the table key across the partition, the later-received copy
   winning; losers go to quarantine as ``duplicate`` naming the kept copy;
5. flag accepted records ok / warning / anomaly (quality.rules);
6. re-land late/early records in their own day's landing folder (forward_late_records);
7. write the bronze file index, silver and quarantine, each replacing exactly this partition
   (a backfill writes day N while day N+1 goes through steps 1-6: ingest_partitions), then
   publish the day with a manifest row naming the three versions (lake.manifest): readers see
   the day only from then on, and the previous publication until then.

Only silver is a full-size write: bronze is a byte copy plus one index row per file, and
quarantine holds the rejects. Counts reconcile by construction and are checked before anything
is written: ``records in bronze = silver + quarantined + duplicates``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from contracts import QUARANTINE_RECORD_COLUMNS, UTC_TS, Source, day_bounds_utc
from lake import manifest
from lake.delta import Lake, WriteResult
from lake.landing import LandedFile, LandingZone, skip_reason
from lake.readers import (
    CHUNK_READERS,
    DEFAULT_CHUNK_BYTES,
    Header,
    ReadNotes,
    estimate_records,
    file_format,
    read_all,
)
from lake.spill import BucketSpill, HeldFrame, SpillDir, SpilledFrame, memory_budget_bytes
from quality.rules import DEFAULT_RULES, QualityRules

_log = logging.getLogger(__name__)
ARCHIVE_PREFIX = "bronze_archive"
WAIVER_SUFFIX = ".waiver.json"

_ROW = "source_row"
_FILE = "source_file"
_FWD_TIME = "_forward_time"  # UTC ISO time of a late/future record, used to forward it to its own day
_EIDX = "_entity_index"  # position of the record's entity id in the reference ids (validation onwards)
_T_BITS = 37  # 2**37 microseconds = 38 h > the longest local day (25 h): room for the time in the key


class IngestError(Exception):
    """The partition as a whole cannot be ingested (never raised for bad records or bad files)."""


@dataclass
class FileReport:
    key: str
    format: str
    bytes: int
    records: int
    problem: str | None = None  # file-level reason code
    detail: str = ""
    archive_path: str = ""
    estimated_records: int | None = None  # for a file that could not be read: what it seems to hold


@dataclass
class IngestResult:
    source: str
    partition: dt.date
    files: list[FileReport]
    raw_rows: int
    silver_rows: int
    quarantined_rows: int  # record-level rejections, duplicates excluded
    duplicate_rows: int
    flags: dict[str, int]
    reasons: dict[str, int]
    writes: dict[str, WriteResult] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    forwarded: dict[dt.date, str] = field(default_factory=dict)  # late records re-landed for their own day
    published: dict = field(default_factory=dict)  # the manifest row that published the day (lake.manifest)
    held: dict[str, str] = field(
        default_factory=dict
    )  # blocking files (key: problem): the day was written, not published

    @property
    def blocking_files(self) -> dict[str, str]:
        """The day's files whose readings may be lost (BLOCKING_FILE_PROBLEMS): while any is left the
        day is written but held out of the manifest, so no reader sees it (lake.manifest)."""
        return {f.key: f.problem for f in self.files if f.problem in BLOCKING_FILE_PROBLEMS}

    @property
    def reconciles(self) -> bool:
        return self.raw_rows == self.silver_rows + self.quarantined_rows + self.duplicate_rows

    def summary(self) -> dict:
        return {
            "source": self.source,
            "partition": self.partition.isoformat(),
            "files": len(self.files),
            "files_with_problems": {f.key: f.problem for f in self.files if f.problem},
            "raw_rows": self.raw_rows,
            "silver_rows": self.silver_rows,
            "quarantined_rows": self.quarantined_rows,
            "duplicate_rows": self.duplicate_rows,
            "reconciles": self.reconciles,
            "quality_flags": self.flags,
            "reasons": self.reasons,
        }


def _fmt(template: str, *exprs: pl.Expr) -> pl.Expr:
    """``pl.format`` built on ``concat_str`` (polars 2.1's str.format panics on multi-chunk columns)."""
    pieces = template.split("{}")
    if len(pieces) != len(exprs) + 1:
        raise ValueError(f"template {template!r} wants {len(pieces) - 1} values, got {len(exprs)}")
    parts: list[pl.Expr] = []
    for text, e in zip(pieces, list(exprs) + [None]):
        if text:
            parts.append(pl.lit(text))
        if e is not None:
            parts.append(e.cast(pl.Utf8).fill_null("null"))
    return pl.concat_str(parts)


# ----------------------------------------------------------------------------------------
# reading: lake.readers (encodings, gzip, CSV dialects, Parquet types, chunks). READERS reads a
# whole file's bytes: (frame with source_row + received columns, header, malformed lines).
# ----------------------------------------------------------------------------------------

READERS = {fmt: functools.partial(read_all, fmt) for fmt in CHUNK_READERS}


# ----------------------------------------------------------------------------------------
# validation of one file's records
# ----------------------------------------------------------------------------------------


def _is_text(df: pl.DataFrame, c: str) -> bool:
    # the column's dtype, not df.schema[c]: df.schema builds the whole Schema on every call (~10 us)
    return df.get_column(c).dtype in (pl.Utf8, pl.String, pl.Null)


#: instants outside these years are out_of_range, whatever their day (a meter clock reset to 1970, a typo'd 2206)
YEAR_WINDOW = (2000, 2099)
#: the largest UTC offset in use (Kiribati, +14:00; the smallest is -12:00)
MAX_OFFSET_MIN = 14 * 60

_OFFSET_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z")
_NAIVE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M")


def _parse_text_times(df: pl.DataFrame, c: str) -> pl.DataFrame:
    """``_t_off`` (UTC, for values with an offset), ``_t_naive`` (local wall time) and ``_t_badoff`` (an
    offset beyond +-14:00) from a text column. The formats head-ends usually write are tried first;
    only values left unparsed go through the full RFC 3339 / ISO 8601 normalisation (``Z``/``z``,
    ``+00``, ``+0000``, a ``T``, space or lower-case ``t`` separator, fractional seconds, minutes-only)."""
    s = pl.col(c)
    to_dt = lambda e, f: e.str.to_datetime(f, strict=False, time_unit="us")  # noqa: E731
    df = df.with_columns(
        pl.coalesce([to_dt(s, f) for f in _OFFSET_FORMATS]).dt.convert_time_zone("UTC").alias("_t_off"),
        pl.coalesce([to_dt(s, f) for f in _NAIVE_FORMATS]).alias("_t_naive"),
    )
    left = pl.col("_t_off").is_null() & pl.col("_t_naive").is_null() & s.is_not_null() & (s != "")
    has_left, has_off = df.select(left.any().alias("l"), pl.col("_t_off").is_not_null().any().alias("o")).row(0)
    if has_left:
        n = (
            s.str.strip_chars()
            .str.replace(r"^(\d{4}-\d{2}-\d{2})[ tT]", "${1}T")
            .str.replace(r"[zZ]$", "+00:00")
            .str.replace(r"([+-]\d{2})$", "${1}:00")
            .str.replace(r"([+-]\d{2})(\d{2})$", "${1}:${2}")
        )
        df = df.with_columns(
            pl.when(left)
            .then(
                pl.coalesce(to_dt(n, "%Y-%m-%dT%H:%M:%S%.f%:z"), to_dt(n, "%Y-%m-%dT%H:%M%:z")).dt.convert_time_zone(
                    "UTC"
                )
            )
            .otherwise(pl.col("_t_off"))
            .alias("_t_off"),
            pl.when(left)
            .then(pl.coalesce(to_dt(n, "%Y-%m-%dT%H:%M:%S%.f"), to_dt(n, "%Y-%m-%dT%H:%M")))
            .otherwise(pl.col("_t_naive"))
            .alias("_t_naive"),
        )
        has_off = has_off or df["_t_off"].is_not_null().any()
    if not has_off:
        return df.with_columns(pl.lit(False).alias("_t_badoff"))
    # the offset as written (the parsers accept up to +-23:59): hours and optional minutes at the end
    g = s.str.strip_chars().str.extract_groups(r"[+-](\d{2}):?(\d{2})?$")
    minutes = g.struct.field("1").cast(pl.Int32, strict=False) * 60 + g.struct.field("2").cast(
        pl.Int32, strict=False
    ).fill_null(0)
    return df.with_columns(
        (pl.col("_t_off").is_not_null() & (minutes > MAX_OFFSET_MIN)).fill_null(False).alias("_t_badoff")
    )


def _resolve_fold(df: pl.DataFrame, src: Source) -> pl.Series:
    """For each record: 1 = the earlier (daylight) instant, 2 = the later (standard) one, 0 = not in
    the fall-back hour, null = in it and not provably either.

    A repeated wall time is resolved only where one meter's sequence in this file proves it: the
    records (in file order) admit exactly one monotone reading of time, ascending or descending, its
    daylight and standard halves meet at a strict step back (forward, if descending) of the wall
    clock, both halves carry the same wall times, and no standard-time record repeats the values of
    its daylight twin. Anything else (one half only, hourly data, a resent block, shuffled rows,
    duplicates) stays unresolved: quarantined as ``dst_ambiguous_time``, never guessed.
    """
    ent = src.entity
    amb_ents = df.filter(pl.col("_amb")).select(ent).unique()
    sub = (
        df.with_row_index("_i")
        .join(amb_ents, on=ent, how="semi")
        .with_columns(
            pl.coalesce(pl.col("_t_off"), pl.col("_t_e").dt.convert_time_zone("UTC")).alias("_e"),
            pl.coalesce(pl.col("_t_off"), pl.col("_t_l").dt.convert_time_zone("UTC")).alias("_l"),
        )
        .filter(pl.col("_e").is_not_null())
    )
    # only the records around the fold bear on its order: a late record or a re-sent reading from
    # another hour elsewhere in the file neither proves nor disproves which half a wall time is in
    amb_e = sub.filter(pl.col("_amb"))
    lo, hi = amb_e["_e"].min() - dt.timedelta(hours=1), amb_e["_l"].max() + dt.timedelta(hours=1)
    sub = (
        sub.filter(pl.col("_amb") | pl.col("_e").is_between(lo, hi))
        .with_columns(pl.struct([pl.col(m.name) for m in src.measures]).hash().alias("_vh"))
        .sort(ent, _ROW, maintain_order=True)
    )
    fold = np.zeros(df.height, dtype=np.float64)
    if sub.height == 0:
        return pl.Series("_fold", fold)
    idx = sub["_i"].to_numpy()
    e = sub["_e"].dt.epoch("us").to_numpy()
    l = sub["_l"].dt.epoch("us").to_numpy()
    naive = sub["_t_naive"].dt.epoch("us").fill_null(0).to_numpy()
    amb = sub["_amb"].to_numpy()
    vh = sub["_vh"].to_numpy()
    ents = sub[ent].to_list()
    starts = [0] + [i for i in range(1, len(ents)) if ents[i] != ents[i - 1]] + [len(ents)]
    for g0, g1 in zip(starts[:-1], starts[1:]):
        pos = [i for i in range(g0, g1) if amb[i]]
        verdict = _fold_split(e[g0:g1], l[g0:g1], naive[g0:g1], amb[g0:g1], vh[g0:g1])
        for j, i in enumerate(pos):
            fold[idx[i]] = (
                np.nan
                if verdict is None
                else (1 if j < verdict[0] else 2)
                if verdict[1]
                else (2 if j < verdict[0] else 1)
            )
    return pl.Series("_fold", fold).fill_nan(None)


def _fold_split(e, l, naive, amb, vh) -> tuple[int, bool] | None:
    """(split s, ascending) if exactly one reading of one meter's sequence is proven, else None.
    Ascending: the first s repeated wall times are daylight, the rest standard; descending: mirrored."""
    pos = [i for i in range(len(amb)) if amb[i]]
    k = len(pos)
    found = []
    for asc in (True, False):
        for s in range(1, k):
            a, b = naive[pos[s - 1]], naive[pos[s]]
            if (a <= b) if asc else (a >= b):  # the halves must meet at a step of the wall clock
                continue
            first, second = (e, l) if asc else (l, e)
            t = [(first if (amb[i] and pos.index(i) < s) else second)[i] if amb[i] else e[i] for i in range(len(amb))]
            if all((t[i] < t[i + 1]) if asc else (t[i] > t[i + 1]) for i in range(len(t) - 1)):
                found.append((s, asc))
    if len(found) != 1:
        return None
    s, asc = found[0]
    early = {naive[i]: vh[i] for i in pos[:s]}
    late = {naive[i]: vh[i] for i in pos[s:]}
    if set(early) != set(late) or len(early) != s or len(late) != k - s or any(early[t] == late[t] for t in early):
        return None
    return s, asc


def _time_expr(df: pl.DataFrame, src: Source, tz: str) -> tuple[pl.DataFrame, pl.Expr, pl.Expr]:
    """Adds helper columns; returns (frame, UTC time expression, time-problem expression: nonexistent |
    ambiguous | bad_offset | null)."""
    c = src.time
    dtype = df.schema[c]
    none = pl.lit(None, pl.Utf8)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone:
        return df, pl.col(c).dt.convert_time_zone("UTC").dt.cast_time_unit("us"), none
    if isinstance(dtype, pl.Datetime):
        df = df.with_columns(
            pl.col(c).dt.cast_time_unit("us").alias("_t_naive"),
            pl.lit(None, UTC_TS).alias("_t_off"),
            pl.lit(False).alias("_t_badoff"),
        )
    elif _is_text(df, c):
        df = _parse_text_times(df, c)
    else:
        return df, pl.lit(None, UTC_TS), none
    df = df.with_columns(
        pl.col("_t_naive").dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").alias("_t_e"),
        pl.col("_t_naive").dt.replace_time_zone(tz, ambiguous="latest", non_existent="null").alias("_t_l"),
    )
    naive_only = pl.col("_t_off").is_null() & pl.col("_t_naive").is_not_null()
    df = df.with_columns(
        (naive_only & (pl.col("_t_e") != pl.col("_t_l"))).fill_null(False).alias("_amb"),
        (naive_only & pl.col("_t_e").is_null()).fill_null(False).alias("_nonex"),
    )
    local = pl.col("_t_e")
    unresolved = pl.lit(False)
    if df["_amb"].any():
        df = df.with_columns(_resolve_fold(df, src))
        local = pl.when(pl.col("_fold") == 2).then(pl.col("_t_l")).otherwise(pl.col("_t_e"))
        unresolved = pl.col("_amb") & pl.col("_fold").is_null()
    t = pl.coalesce(pl.col("_t_off"), local.dt.convert_time_zone("UTC"))
    dst = (
        pl.when(pl.col("_t_badoff")).then(pl.lit("bad_offset"))
        .when(pl.col("_nonex")).then(pl.lit("nonexistent"))
        .when(unresolved).then(pl.lit("ambiguous"))
        .otherwise(none)
    )  # fmt: skip
    return df, t, dst


def _attribute(df: pl.DataFrame, a, tz: str) -> pl.DataFrame:
    """``_a_<name>``: a typed attribute (UTC timestamp or stripped text); for timestamps also
    ``_a_<name>_p``: 'nonexistent' | 'ambiguous' for a naive local time that is not one instant."""
    c, out, prob = a.name, f"_a_{a.name}", f"_a_{a.name}_p"
    dtype = df.schema[c]
    if a.dtype != UTC_TS:
        e = pl.col(c).cast(pl.Utf8).str.strip_chars()
        return df.with_columns(pl.when(e != "").then(e).alias(out))
    none = pl.lit(None, pl.Utf8).alias(prob)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone:
        return df.with_columns(pl.col(c).dt.convert_time_zone("UTC").dt.cast_time_unit("us").alias(out), none)
    if isinstance(dtype, pl.Datetime):
        off, naive = pl.lit(None, UTC_TS), pl.col(c).dt.cast_time_unit("us")
    elif _is_text(df, c):
        t = _parse_text_times(df.select(pl.col(c).cast(pl.Utf8)), c)
        off, naive = t["_t_off"], t["_t_naive"]
        off = pl.lit(off.cast(UTC_TS)) if off.dtype != pl.Null else pl.lit(None, UTC_TS)
        naive = pl.lit(naive)
    else:
        return df.with_columns(pl.lit(None, UTC_TS).alias(out), none)
    e = naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    l = naive.dt.replace_time_zone(tz, ambiguous="latest", non_existent="null")  # noqa: E741
    local_only = off.is_null() & naive.is_not_null()
    return df.with_columns(
        pl.coalesce(off, pl.when(e == l).then(e).dt.convert_time_zone("UTC")).alias(out),
        pl.when(local_only & e.is_null())
        .then(pl.lit("nonexistent"))
        .when(local_only & (e != l))
        .then(pl.lit("ambiguous"))
        .otherwise(pl.lit(None, pl.Utf8))
        .alias(prob),
    )


@functools.lru_cache(maxsize=256)
def _rule_exprs(
    src: Source, partition: dt.date | None, tz: str, file_problem: tuple[str, str, str] | None, text: frozenset[str]
) -> tuple[pl.Expr, tuple[pl.Expr, ...]]:
    """The validation rules of one file shape, as (any rule fails, (index of the first failing rule, the
    rules: (condition, reason_code, field, value, detail) each, every measure column is finite (one row),
    any rule fails given finite measures)); ``_reject_columns`` renders a rejected row's reason from the index. Built once per (source, day, zone, columns, text columns): every file of
    a day with the same shape reuses the expressions instead of rebuilding ~40 of them."""
    ent, tc = src.entity, src.time
    blank = {
        c: (pl.col(c).is_null() | (pl.col(c) == "")) if c in text else pl.col(c).is_null() for c in src.raw_columns
    }
    raw = lambda c: pl.col(c).cast(pl.Utf8)  # noqa: E731 - the offending value as text
    rules: list[tuple[pl.Expr, str, str | None, pl.Expr, pl.Expr]] = []
    if file_problem:  # a missing or ambiguous column: every record of the file, with the file's reason
        code, fld, detail = file_problem
        rules.append((pl.lit(True), code, fld, pl.lit(None, pl.Utf8), pl.lit(detail)))
    for c in [ent, tc] + [m.name for m in src.measures + src.attributes if not m.nullable]:
        rules.append((blank[c], "missing_value", c, raw(c), pl.lit(f"required field {c} is empty")))
    rules.append(
        (
            pl.col("_t").is_null() & pl.col("_dst").is_null(),
            "wrong_type",
            tc,
            raw(tc),
            _fmt(f"{tc} '{{}}' is not a timestamp", raw(tc)),
        )
    )
    for m in src.measures:
        rules.append(
            (
                pl.col(f"_v_{m.name}").is_null() & ~blank[m.name],
                "wrong_type",
                m.name,
                raw(m.name),
                _fmt(f"{m.name} '{{}}' is not a number", raw(m.name)),
            )
        )
    for a in src.attributes:  # typed non-measure fields: timestamps parse, text is one of the allowed values
        v = pl.col(f"_a_{a.name}")
        if a.dtype == UTC_TS:
            p = pl.col(f"_a_{a.name}_p")
            rules.append(
                (
                    v.is_null() & p.is_null() & ~blank[a.name],
                    "wrong_type",
                    a.name,
                    raw(a.name),
                    _fmt(f"{a.name} '{{}}' is not a timestamp", raw(a.name)),
                )
            )
            rules.append(
                (
                    p == "nonexistent",
                    "dst_nonexistent_time",
                    a.name,
                    raw(a.name),
                    _fmt(f"{a.name} {{}} does not exist in {tz} (spring-forward gap)", raw(a.name)),
                )
            )
            rules.append(
                (
                    p == "ambiguous",
                    "dst_ambiguous_time",
                    a.name,
                    raw(a.name),
                    _fmt(f"{a.name} {{}} occurs twice in {tz}: give it with its UTC offset", raw(a.name)),
                )
            )
            y0, y1 = YEAR_WINDOW
            t0, t1 = dt.datetime(y0, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(y1 + 1, 1, 1, tzinfo=dt.timezone.utc)
            rules.append(
                (
                    (v < t0) | (v >= t1),
                    "out_of_range",
                    a.name,
                    raw(a.name),
                    _fmt(f"{a.name} '{{}}' is outside the years {y0}-{y1}", raw(a.name)),
                )
            )
        elif a.allowed:
            rules.append(
                (
                    v.is_not_null() & ~v.is_in(list(a.allowed)),
                    "out_of_range",
                    a.name,
                    raw(a.name),
                    _fmt(f"{a.name} '{{}}' is not one of {list(a.allowed)}", raw(a.name)),
                )
            )
    if tc in text:  # only a written offset can be out of range
        rules.append(
            (
                pl.col("_dst") == "bad_offset",
                "out_of_range",
                tc,
                raw(tc),
                _fmt(f"{tc} '{{}}' has a UTC offset beyond +-14:00", raw(tc)),
            )
        )
    # the year window: compared as instants (dt.year() would convert every zone-aware value); not
    # screened on its own, since such a time is also before or after the day (late/future rules below)
    y0, y1 = YEAR_WINDOW
    t0, t1 = dt.datetime(y0, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(y1 + 1, 1, 1, tzinfo=dt.timezone.utc)
    year_rule = len(rules)
    rules.append(
        (
            (pl.col("_t") < t0) | (pl.col("_t") >= t1),
            "out_of_range",
            tc,
            raw(tc),
            _fmt(f"{tc} '{{}}' is outside the years {y0}-{y1}", raw(tc)),
        )
    )
    rules.append(
        (
            pl.col("_dst") == "nonexistent",
            "dst_nonexistent_time",
            tc,
            raw(tc),
            _fmt(f"{{}} does not exist in {tz} (spring-forward gap)", raw(tc)),
        )
    )
    rules.append(
        (
            pl.col("_dst") == "ambiguous",
            "dst_ambiguous_time",
            tc,
            raw(tc),
            _fmt(
                f"{{}} occurs twice in {tz} (daylight and standard time) and this meter's sequence in the file does not prove which",
                raw(tc),
            ),
        )
    )
    n_screened = len(rules)
    for m in src.measures:  # NaN and +-inf (also 'Infinity', '1e999') are no measurement
        v = pl.col(f"_v_{m.name}")
        rules.append(
            (
                v.is_not_null() & ~v.is_finite(),
                "out_of_range",
                m.name,
                raw(m.name),
                _fmt(f"{m.name} '{{}}' is not a finite number", raw(m.name)),
            )
        )
    finite_rules = range(n_screened, len(rules))
    for m in src.measures:
        if m.min is None and m.max is None:
            continue
        v = pl.col(f"_v_{m.name}")
        cond = (v < m.min if m.min is not None else pl.lit(False)) | (v > m.max if m.max is not None else pl.lit(False))
        lo = "-inf" if m.min is None else f"{m.min:g}"
        hi = "inf" if m.max is None else f"{m.max:g}"
        rules.append(
            (cond, "out_of_range", m.name, raw(m.name), _fmt(f"{m.name} {{}} outside [{lo}, {hi}]", raw(m.name)))
        )
    refs = " or ".join(t for t, _ in src.reference_columns)
    rules.append(
        (pl.col(_EIDX).is_null(), "unknown_entity", ent, raw(ent), _fmt(f"{ent} {{}} is not in {refs}", raw(ent)))
    )
    if partition is not None:  # None: records not tied to one day's files (the streaming bridge)
        p = partition.isoformat()
        # the local day's UTC bounds, computed once: no per-row time-zone conversion for good rows
        lo, hi = day_bounds_utc(partition, tz)
        rules.append(
            (
                pl.col("_t") < lo,
                "late_data",
                tc,
                raw(tc),
                _fmt(f"reading of {{}} arrived with the files of {p}", pl.col("_d")),
            )
        )
        rules.append(
            (
                pl.col("_t") >= hi,
                "future_data",
                tc,
                raw(tc),
                _fmt(f"reading of {{}} arrived with the files of {p}", pl.col("_d")),
            )
        )
    # screening every row: one sum of the measures is non-finite iff one of them is (nulls are skipped),
    # a third of the cost of a finiteness test per measure; the per-measure rules name the field below
    # (scaled by 2**-16 so that no sum of finite values can overflow to inf)
    all_finite = (
        pl.sum_horizontal([pl.col(f"_v_{m.name}") * 2.0**-16 for m in src.measures]).is_finite()
        if src.measures
        else pl.lit(True)
    )
    # (without a partition there are no late/future rules, so the year window is screened itself)
    screens = [
        c.fill_null(False)
        for i, (c, *_) in enumerate(rules)
        if i not in finite_rules and (i != year_rule or partition is None)
    ]
    any_bad = pl.any_horizontal(screens + [~all_finite])
    # the clean path: a column whose sum is finite holds only finite values (a NaN or an infinity makes
    # the sum NaN or infinite; an overflow of finite values only sends it to the exact screen), so one
    # reduction per measure (~0.25 ms per 100k rows) spares the row-wise screen (~0.8 ms)
    finite_cols = (
        pl.all_horizontal([pl.col(f"_v_{m.name}").sum().is_finite() for m in src.measures])
        if src.measures
        else pl.lit(True)
    )
    any_bad_if_finite = pl.any_horizontal(screens)
    # the first failing rule wins: its position, from the conditions alone (only evaluated on the rejected rows)
    first = None
    for i, r in enumerate(rules):
        cond = r[0].fill_null(False)
        first = pl.when(cond).then(pl.lit(i, pl.Int32)) if first is None else first.when(cond).then(pl.lit(i, pl.Int32))
    return any_bad, (first.otherwise(pl.lit(None, pl.Int32)), tuple(rules), finite_cols, any_bad_if_finite)


@functools.lru_cache(maxsize=256)
def _reject_columns(shape: tuple, present: tuple[int, ...]) -> tuple[pl.Expr, ...]:
    """reason_code / field / value / detail of the rejected rows, from their first failing rule ``_rule``
    (``_rule_exprs(*shape)``). Only the rules that some row failed first (``present``) get a branch: a when-chain
    evaluates every branch on every row, and a day's rejects usually fail 2-3 of the ~30 rules, so the
    ~120 text columns the full chains rendered (the detail sentences above all) were almost all discarded."""
    rules = _rule_exprs(*shape)[1][1]
    out = []
    for name, pick in (("reason_code", 1), ("field", 2), ("value", 3), ("detail", 4)):
        e = None
        for i in present:
            cond = pl.col("_rule") == i
            val = pl.lit(rules[i][pick], pl.Utf8) if pick in (1, 2) else rules[i][pick].cast(pl.Utf8)
            e = pl.when(cond).then(val) if e is None else e.when(cond).then(val)
        out.append((e.otherwise(pl.lit(None, pl.Utf8)) if e is not None else pl.lit(None, pl.Utf8)).alias(name))
    return tuple(out)


def validate_file(
    df: pl.DataFrame,
    key: str,
    src: Source,
    partition: dt.date | None,
    known_ids: pl.Series,
    tz: str,
    file_problem: tuple[str, str, str] | None = None,
    *,
    decimal_comma: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split one file's (or chunk's) records into (accepted typed rows, rejected rows with reasons).

    ``file_problem`` = (reason code, field, detail) rejects every record (a missing or ambiguous column);
    ``decimal_comma`` reads ``0,5`` as 0.5 in the measures (a CSV whose delimiter is not a comma).
    ``partition=None`` skips the late/future-day rules: the streaming bridge validates live records
    this way (one declaration of the contract for files and stream) and applies its own time window."""
    ent, tc = src.entity, src.time
    received = [c for c in df.columns if c != _ROW]
    for c in src.raw_columns:
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, pl.Utf8).alias(c))
    if not _is_text(df, ent):
        df = df.with_columns(pl.col(ent).cast(pl.Utf8))
    df, t_expr, dst_expr = _time_expr(df, src, tz)
    df = df.with_columns(t_expr.alias("_t"), dst_expr.alias("_dst"))

    def number(c: str) -> pl.Expr:
        if not _is_text(df, c):  # the Parquet reader leaves only numeric (or text) measure columns
            return pl.col(c).cast(pl.Float64, strict=False)
        s = pl.col(c).str.replace(",", ".", literal=True) if decimal_comma else pl.col(c)
        return s.cast(pl.Float64, strict=False)

    df = df.with_columns([number(m.name).alias(f"_v_{m.name}") for m in src.measures])
    for a in src.attributes:
        df = _attribute(df, a, tz)
    # the entity's position in the reference ids (null = unknown): one string hash per record,
    # and later the integer key for deduplication and the per-entity flag windows
    df = df.with_columns(
        pl.col(ent)
        .replace_strict(
            known_ids, pl.int_range(0, known_ids.len(), dtype=pl.Int64, eager=True), default=None, return_dtype=pl.Int64
        )
        .alias(_EIDX)
    )
    text = frozenset(c for c in src.raw_columns if _is_text(df, c))
    shape = (src, partition, tz, file_problem, text)
    any_bad, (first_rule, _, finite_cols, any_bad_if_finite) = _rule_exprs(*shape)
    bad_mask = df.select(any_bad_if_finite if df.select(finite_cols).item() else any_bad).to_series()
    n_bad = int(bad_mask.sum())
    accepted = df.select(
        pl.col(ent),
        pl.col("_t").alias(tc),
        *[pl.col(f"_v_{m.name}").alias(m.name) for m in src.measures],
        *[pl.col(f"_a_{a.name}").alias(a.name) for a in src.attributes],
        pl.lit(key).alias(_FILE),
        pl.col(_ROW),
        pl.col(_EIDX),
    )
    if n_bad == 0:
        return accepted, _empty_rejects()
    accepted = accepted.filter(~bad_mask)
    bad = df.filter(bad_mask).with_columns(
        pl.col("_t").dt.convert_time_zone(tz).dt.date().alias("_d"), first_rule.alias("_rule")
    )
    present = tuple(sorted(bad["_rule"].drop_nulls().unique().to_list()))
    record = pl.struct([pl.col(c) for c in received]).struct.json_encode() if received else pl.lit("{}")
    rejected = bad.select(
        *_reject_columns(shape, present),
        pl.lit(None, pl.Date).alias("target_date"),
        record.alias("raw_record"),
        pl.lit(key).alias(_FILE),
        pl.col(_ROW),
        pl.col("_d"),
        pl.col("_t"),
    ).with_columns(
        pl.when(pl.col("reason_code").is_in(["late_data", "future_data"])).then(pl.col("_d")).alias("target_date")
    )
    rejected = rejected.with_columns(
        pl.when(pl.col("target_date").is_not_null())
        .then(pl.col("_t").dt.strftime("%Y-%m-%dT%H:%M:%S%.f%:z"))
        .alias(_FWD_TIME)
    ).drop("_d", "_t")
    return accepted, rejected


#: Rejected records before the partition columns: the quarantine declaration's record columns
#: (``date`` and ``ingested_at`` are added per partition) plus the forwarding time.
_REJECTS_SCHEMA = pl.Schema({**{c.name: c.dtype for c in QUARANTINE_RECORD_COLUMNS}, _FWD_TIME: pl.Utf8})


def _empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=_REJECTS_SCHEMA)


def _file_marker(rep: FileReport) -> pl.DataFrame:
    """One quarantine row (source_row 0) for a file that yielded no records."""
    return pl.DataFrame(
        {
            "reason_code": [rep.problem],
            "field": [None],
            "value": [None],
            "detail": [rep.detail],
            "target_date": [None],
            "raw_record": [None],
            _FILE: [rep.key],
            _ROW: [0],
            _FWD_TIME: [None],
        },
        schema=_REJECTS_SCHEMA,
    )


# ----------------------------------------------------------------------------------------
# the partition
# ----------------------------------------------------------------------------------------


def last_copy_mask(df: pl.DataFrame, key: list[str]) -> pl.Series:
    """True for the last occurrence of each key, False for earlier copies.

    A 64-bit hash of the key finds the (rare) candidate duplicates with one sort; only those rows
    are compared exactly, so hash collisions cannot merge two different keys.
    """
    if df.height == 0:
        return pl.Series("keep", [], pl.Boolean)
    h = df.select(pl.struct(key).hash(seed=0x9E3779B9).alias("h"))["h"]
    s = h.sort()
    repeated = s.filter(s == s.shift(1)).unique()
    if repeated.len() == 0:
        return pl.repeat(True, df.height, eager=True).alias("keep")
    cand = h.is_in(repeated.implode())
    idx = pl.int_range(0, df.height, eager=True).filter(cand)
    sub = df.select(key)[idx]
    last = sub.select(pl.struct(key).is_last_distinct()).to_series()
    keep = pl.repeat(True, df.height, eager=True).alias("keep").scatter(idx.filter(~last), False)
    return keep


def _last_copy_of_day_key(ok: pl.DataFrame, src: Source, partition: dt.date, tz: str) -> pl.Series:
    """``last_copy_mask`` on (entity, time) for validated records of one local day, exact and fast.

    Validation guarantees every accepted record's entity is known (an index below 2**26 here) and
    its UTC time lies within the day, so (index << 37) | microseconds-since-day-start is a
    collision-free 63-bit integer key: no string hashing, no struct.
    """
    if ok.height == 0:
        return pl.Series("keep", [], pl.Boolean)
    if src.key != (src.entity, src.time):  # a record key of its own (an incident number)
        return last_copy_mask(ok, list(src.key))
    lo, hi = day_bounds_utc(partition, tz)
    if ok[_EIDX].max() >= 1 << (63 - _T_BITS) or (hi - lo).total_seconds() * 1e6 >= 1 << _T_BITS:
        return last_copy_mask(ok, [src.entity, src.time])  # a fleet beyond 67 M entities: the general path
    us = (pl.col(src.time) - pl.lit(lo).cast(UTC_TS)).dt.total_microseconds()
    key = ok.select((pl.col(_EIDX) * (1 << _T_BITS) + us).alias("k"))[
        "k"
    ].to_numpy()  # us < 2**37: the sum is the bitwise or
    # a stable sort keeps arrival order among equal keys, so the last of each run of equal keys is
    # the copy that wins; files arrive nearly sorted by (meter, time), which numpy's stable
    # (radix/tim) sort exploits: ~1 ms per 480k rows against ~10 ms for a hash-based is_last_distinct
    order = np.argsort(key, kind="stable")
    ks = key[order]
    last_in_run = np.ones(key.size, dtype=bool)
    last_in_run[:-1] = ks[1:] != ks[:-1]
    keep = np.empty(key.size, dtype=bool)
    keep[order] = last_in_run
    return pl.Series("keep", keep)


def list_partition_files(zone: LandingZone, src: Source, partition: dt.date) -> list[LandedFile]:
    """The partition's landing files in the order they were received (then by name)."""
    return sorted(zone.list(f"{src.name}/{partition.isoformat()}"), key=lambda f: (f.modified, f.key))


#: file-level problems that mean readings may be lost: the day's ``files_readable`` check fails (blocking)
#: until the file is fixed and the day re-run, or the file is waived (lake.waiver)
BLOCKING_FILE_PROBLEMS = ("unreadable_file", "unsafe_name")
REJECTED_PREFIX = "rejected"


def _malformed_rejects(malformed: pl.DataFrame, key: str, fmt: str) -> pl.DataFrame:
    return malformed.select(
        pl.lit("malformed_line").alias("reason_code"),
        pl.lit(None, pl.Utf8).alias("field"),
        pl.lit(None, pl.Utf8).alias("value"),
        pl.lit(
            "the line cannot be split into the header's fields"
            if fmt == "csv"
            else "the line is not a JSON object with one value per field"
        ).alias("detail"),
        pl.lit(None, pl.Date).alias("target_date"),
        pl.struct(pl.col("unparsed").alias("line")).struct.json_encode().alias("raw_record"),
        pl.lit(key).alias(_FILE),
        pl.col(_ROW),
    )


def _header_problem(header: Header, src: Source) -> tuple[str, str, str] | None:
    if header.conflicts:
        c, names = next(iter(header.conflicts.items()))
        return "duplicate_column", c, f"header names {names} all map to {c}: which one holds the value is unknown"
    missing = [c for c in src.raw_columns if c not in header]
    if missing:
        return "missing_column", ",".join(missing), f"file lacks column(s) {missing}; it has {list(header)}"
    return None


def process_file(
    zone: LandingZone,
    f: LandedFile,
    src: Source,
    partition: dt.date,
    known_ids: pl.Series,
    tz: str,
    lake: Lake | None = None,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    accept: Callable[[pl.DataFrame], None] | None = None,
    reject: Callable[[pl.DataFrame], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, FileReport]:
    """Archive (if a lake is given), read and validate one landing file, in chunks of about
    ``chunk_bytes`` of input. Never raises for a bad name or bad content: the file's problem is
    reported (and a file that cannot be read is reported with its size and estimated records).
    ``accept``: called with each chunk's accepted rows as soon as they are validated (the day's
    bounded buffer, lake.spill), instead of returning them (the first frame is then empty).
    ``reject``: likewise for each chunk's rejected records (the day's quarantine, lake.spill.HeldFrame);
    the second frame then holds only a file-level marker, if any."""
    fmt, _gz = file_format(f.key)
    skip = skip_reason(f.key)
    if skip:  # never opened: the name does not become a path or an S3 request
        rep = FileReport(f.key, fmt, f.size, 0, skip[0], skip[1])
        return pl.DataFrame(), _file_marker(rep), rep
    rep = FileReport(f.key, fmt, f.size, 0)
    if lake is not None:
        with zone.open(f.key) as fh:
            rep.archive_path = lake.put_object(f"{ARCHIVE_PREFIX}/{f.key}", fh)
    if fmt == "?":
        rep.problem, rep.detail = (
            "unreadable_file",
            f"unknown file extension of {f.key.rsplit('/', 1)[-1]!r} (expected .csv, .jsonl, .parquet, optionally .gz)",
        )
        return pl.DataFrame(), _file_marker(rep), rep
    notes = ReadNotes()
    accepted, rejected = [], []
    records = 0
    try:
        with zone.open(f.key) as fh:
            for chunk in CHUNK_READERS[fmt](fh, src, notes, chunk_bytes):
                records += chunk.df.height + chunk.malformed.height
                if chunk.df.height:
                    hp = _header_problem(chunk.header, src)
                    if hp and rep.problem is None:
                        rep.problem, rep.detail = hp[0], hp[2]
                    a, r = validate_file(
                        chunk.df, f.key, src, partition, known_ids, tz, hp, decimal_comma=chunk.header.decimal_comma
                    )
                    accepted.append(a) if accept is None else accept(a)
                    rejected.append(r) if reject is None else reject(r)
                if chunk.malformed.height:
                    m = _malformed_rejects(chunk.malformed, f.key, fmt)
                    rejected.append(m) if reject is None else reject(m)
    except BaseException as e:  # corrupt Parquet/gzip, a reader panic, ...: recorded, counted, and the day blocked
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        data = zone.get_bytes(f.key)
        est = estimate_records(data, fmt)
        rep.problem = "unreadable_file"
        rep.detail = (
            f"{type(e).__name__}: {e}"[:400] + f" ({rep.bytes} bytes, about {est if est is not None else '?'} records)"
        )
        rep.estimated_records = est
        return pl.DataFrame(), _file_marker(rep), rep
    if notes.items:
        rep.detail = "; ".join(x for x in (rep.detail, str(notes)) if x)
    rep.records = records
    if records == 0:
        rep.problem, rep.detail = "empty_file", "; ".join(x for x in ("the file has no data rows", rep.detail) if x)
        return pl.DataFrame(), _file_marker(rep), rep
    # no copy: the chunks' columns are kept as chunks (a rechunk would hold every row twice)
    acc = (
        pl.concat(accepted, how="vertical_relaxed", rechunk=False)
        if len(accepted) > 1
        else (accepted[0] if accepted else pl.DataFrame())
    )
    rej = [r for r in rejected if r.height]
    rej = pl.concat(rej, how="diagonal_relaxed") if rej else _empty_rejects()
    return acc, rej, rep


def waived_files(zone: LandingZone, src: Source, partition: dt.date) -> list[FileReport]:
    """The day's files an operator waived (lake.waiver): one audit row each in the bronze index."""
    out = []
    for w in zone.list(f"{REJECTED_PREFIX}/{src.name}/{partition.isoformat()}"):
        if not w.key.endswith(WAIVER_SUFFIX):
            continue
        try:
            rec = json.loads(zone.get_bytes(w.key))
            out.append(FileReport(
                rec["key"], file_format(rec["key"])[0], int(rec["bytes"]), 0, "waived_file",
                f"waived by {rec['by']} at {rec['at']}: {rec['reason']} (moved to {w.key[: -len(WAIVER_SUFFIX)]}, sha256 {rec['sha256'][:16]})",
            ))  # fmt: skip
        except (ValueError, KeyError, TypeError) as e:
            out.append(FileReport(w.key, "?", w.size, 0, "unreadable_file", f"waiver record cannot be read: {e}"))
    return out


def _dedupe_and_flag(
    ok: pl.DataFrame, src: Source, partition: dt.date, tz: str, rules: QualityRules
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(silver rows, duplicate rejects) of accepted rows holding *all* rows of their entities for the day:
    files are in receive order, rows in file order, and the last copy of a key wins."""
    keep = _last_copy_of_day_key(ok, src, partition, tz)
    if keep.all():  # the usual case: no copy of the partition
        dups = ok.clear()
    else:
        dups = ok.filter(~keep)
        ok = ok.filter(keep)
    if dups.height:
        key = list(src.key)
        winners = ok.join(dups.select(key).unique(), on=key, how="semi").select(
            *key, _fmt("{}:{}", pl.col(_FILE), pl.col(_ROW)).alias("_kept")
        )
        dups = dups.join(winners, on=key, how="left").select(
            pl.lit("duplicate").alias("reason_code"),
            pl.lit(",".join(key)).alias("field"),
            _fmt(",".join(["{}"] * len(key)), *[pl.col(k) for k in key]).alias("value"),
            _fmt("key received again; kept the later copy at {}", pl.col("_kept")).alias("detail"),
            pl.lit(None, pl.Date).alias("target_date"),
            pl.struct([pl.col(c) for c in src.raw_columns]).struct.json_encode().alias("raw_record"),
            pl.col(_FILE),
            pl.col(_ROW),
        )
    silver = ok.with_columns(
        pl.lit(partition).alias("date"), rules.flag_expr(src.name, entity=_EIDX).alias("quality_flag")
    ).drop(_EIDX)
    return silver, dups


def build_partition(
    zone: LandingZone,
    src: Source,
    partition: dt.date,
    known_ids: pl.Series,
    *,
    lake: Lake | None = None,
    tz: str,
    rules: QualityRules = DEFAULT_RULES,
    ingested_at: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    memory_bytes: int | None = None,
) -> tuple[dict[str, pl.DataFrame | SpilledFrame], IngestResult]:
    """Read, validate, deduplicate and flag one partition; archive files if ``lake`` is given.
    Waived files of the day (``rejected/<source>/<day>/``) get an audit row in the bronze index.

    Memory: the day's accepted rows are held up to ``memory_bytes`` (default: GRIDLAKE_INGEST_MEMORY_MB,
    lake.spill); a larger day spills them to temporary Parquet buckets by entity, deduplicates and flags
    one bucket at a time, and its silver frame is a :class:`~lake.spill.SpilledFrame` the write streams
    from (call its ``close`` once written: write_partition_frames does)."""
    ingested_at = ingested_at or dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    files = list_partition_files(zone, src, partition)
    reports = []
    spill_dir = SpillDir()
    # buckets by entity keep every key together only where the key leads with the entity; a source
    # keyed otherwise (incidents: an incident number) is small and never spills
    budget = (memory_bytes or memory_budget_bytes()) if tuple(src.key)[:1] == (src.entity,) else sys.maxsize
    held = BucketSpill(_EIDX, budget, spill_dir)
    # the quarantine: held up to a quarter of the budget, then spilled piece by piece (a landing file of
    # mostly bad rows is as large as its quarantine), each piece with the partition's columns
    ts = pl.lit(ingested_at).cast(UTC_TS)
    quarantined = HeldFrame(
        spill_dir,
        "quarantine",
        max(1, (memory_bytes or memory_budget_bytes()) // 4),
        start=_empty_rejects(),
        finish=lambda q: q.with_columns(pl.lit(partition).alias("date"), ts.alias("ingested_at")),
    )
    reasons: Counter = Counter()

    def reject(r: pl.DataFrame) -> None:
        if r.height:
            reasons.update(dict(r.group_by("reason_code").len().iter_rows()))
            quarantined.add(r)

    try:
        for rep in waived_files(zone, src, partition):
            reports.append(rep)
            reject(_file_marker(rep))
        for i, f in enumerate(files):
            _, r, rep = process_file(
                zone, f, src, partition, known_ids, tz, lake, chunk_bytes=chunk_bytes, accept=held.add, reject=reject
            )
            reports.append(rep)
            reject(r)
            line = f"{src.name} {partition}: file {i + 1}/{len(files)} {f.key}: {rep.records} records"
            # one progress line per file only for a file with a problem: in a Dagster run each line is an event
            # stored (and committed) in the run's event log, ~5-10 ms CPU each, and the demo lands ~230 files a day
            if progress and rep.problem:
                progress(f"{line} [{rep.problem}]")
            else:
                _log.debug(line)
        t1 = time.perf_counter()
        flags: Counter = Counter()
        n_rejected, n_dups = quarantined.height, 0
        silver: pl.DataFrame | SpilledFrame = SpilledFrame(spill_dir, "silver") if held.spilled else None
        for ok in held.buckets():  # one frame, or (spilled) one bucket of entities at a time
            s, d = _dedupe_and_flag(ok, src, partition, tz, rules)
            del ok
            flags.update(dict(s.group_by("quality_flag").len().iter_rows()))
            if d.height:
                n_dups += d.height
                reject(d)
            if held.spilled:
                silver.append(s)
            else:
                silver = s
        if silver is None:  # no accepted row at all
            empty = pl.DataFrame(
                schema={**{c: src.silver.polars_schema()[c] for c in src.raw_columns + [_FILE, _ROW]}, _EIDX: pl.Int64}
            )
            silver = _dedupe_and_flag(empty, src, partition, tz, rules)[0]
        quarantine = quarantined.result()
    except BaseException:
        spill_dir.close()
        raise
    bronze = pl.DataFrame(
        {
            "date": [partition] * len(reports),
            "source_file": [r.key for r in reports],
            "archive_path": [r.archive_path for r in reports],
            "source_format": [r.format for r in reports],
            "bytes": [r.bytes for r in reports],
            "records": [r.records for r in reports],
            "problem": [r.problem for r in reports],
            "detail": [r.detail or None for r in reports],
        },
        schema={c.name: c.dtype for c in src.bronze.columns if c.name != "ingested_at"},
    ).with_columns(ts.alias("ingested_at"))

    n_markers = sum(1 for r in reports if r.records == 0)
    res = IngestResult(
        src.name,
        partition,
        reports,
        raw_rows=sum(r.records for r in reports),
        silver_rows=silver.height,
        quarantined_rows=n_rejected - n_markers,
        duplicate_rows=n_dups,
        flags={k: int(v) for k, v in sorted(flags.items())},
        reasons={k: int(v) for k, v in sorted(reasons.items())},
        timings_s={"read_validate": t1 - t0, "dedupe_flag": time.perf_counter() - t1},
    )
    if not res.reconciles:  # an invariant: never write a partition that lost or invented rows
        spill_dir.close()
        raise IngestError(f"{src.name} {partition}: counts do not reconcile: {res.summary()}")
    return {"bronze": bronze, "silver": silver, "quarantine": quarantine}, res


def forward_late_records(
    zone: LandingZone, src: Source, partition: dt.date, quarantine: pl.DataFrame | SpilledFrame, max_days: int = 7
) -> dict[dt.date, str]:
    """Re-land late (and early) records in the folder of the day they belong to.

    They stay in this partition's quarantine as ``late_data``/``future_data`` (with ``target_date``),
    and a JSON-lines file ``<source>/<target>/forwarded_from_<partition>.jsonl`` carries them, as
    received but with an explicit UTC offset, to their own partition: the landing sensor re-ingests
    that day. Re-running this partition rewrites the same file (idempotent). Records more than
    ``max_days`` away stay in quarantine only. Returns {target day: key written}.
    """
    sel = (
        pl.col("target_date").is_not_null()
        & pl.col(_FWD_TIME).is_not_null()
        & ((pl.col("target_date") - pl.lit(partition)).dt.total_days().abs() <= max_days)
    )
    if isinstance(quarantine, SpilledFrame):  # a spilled quarantine: one piece at a time
        fwd = pl.concat([q.filter(sel) for q in quarantine], how="diagonal_relaxed") if quarantine.height else None
    else:
        fwd = quarantine.filter(sel)
    if fwd is None or fwd.height == 0:
        return {}
    written: dict[dt.date, str] = {}
    for (target,), grp in fwd.group_by("target_date", maintain_order=True):
        lines = []
        for raw, t in zip(grp["raw_record"], grp[_FWD_TIME]):
            rec = json.loads(raw)
            rec[src.time] = t
            lines.append(json.dumps(rec))
        key = f"{src.name}/{target.isoformat()}/forwarded_from_{partition.isoformat()}.jsonl"
        zone.put_bytes(key, ("\n".join(lines) + "\n").encode())
        written[target] = key
    return written


def close_frames(frames: dict) -> None:
    """Remove the temporary files of a day's spilled frames (lake.spill), if any."""
    for f in frames.values():
        if isinstance(f, SpilledFrame):
            f.close()


def write_partition_frames(
    lake: Lake,
    src: Source,
    partition: dt.date,
    frames: dict[str, pl.DataFrame],
    res: IngestResult,
    *,
    run_id: str | None = None,
    publisher: manifest.Publisher | None = None,
    progress: Callable[[str], None] | None = None,
) -> IngestResult:
    """Replace the partition in silver, quarantine and the bronze index (each its own commit), then
    publish the day: the manifest row written last makes the three visible together (lake.manifest).
    ``publisher``: the run's open manifest (one is created otherwise)."""
    t = time.perf_counter()
    # before any data write: the manifest exists, so from now on an unpublished day is invisible
    publisher = publisher or manifest.Publisher(lake, src)

    def write(layer: str) -> WriteResult:
        w = lake.write_partition(getattr(src, layer), frames[layer], partition)
        manifest.fault_point(f"after_{layer}", src, partition)
        return w

    # the two small commits go alongside the large silver write (delta-rs releases the GIL)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            small = {layer: pool.submit(write, layer) for layer in ("quarantine", "bronze")}
            res.writes["silver"] = write("silver")  # a spilled day's silver streams from its files
            for layer, fut in small.items():
                res.writes[layer] = fut.result()
    finally:
        close_frames(frames)
    manifest.fault_point("before_manifest", src, partition)
    res.held = res.blocking_files
    if not res.held:
        counts = {
            "files": len(res.files),
            "bronze_records": res.raw_rows,
            "silver_rows": res.silver_rows,
            "quarantined_rows": res.quarantined_rows,
            "duplicate_rows": res.duplicate_rows,
        }
        res.published = publisher.publish(partition, res.writes, counts, run_id or uuid.uuid4().hex)
    # else: a file that cannot be read (or may not be opened) is held out of the manifest: readers keep
    # seeing the day's last publication (none: the day is invisible) until it is fixed or waived and re-run
    manifest.fault_point("after_manifest", src, partition)
    res.timings_s["write"] = time.perf_counter() - t
    if progress:
        progress(
            f"{src.name} {partition}: {res.raw_rows} records = {res.silver_rows} silver + "
            f"{res.quarantined_rows} quarantined + {res.duplicate_rows} duplicates; "
            + (
                f"HELD, not published: {len(res.held)} file(s) not readable ({', '.join(sorted(res.held))[:300]}): fix or waive (lake.waiver)"
                if res.held
                else "published"
            )
        )
    return res


def known_entity_ids(lake: Lake, src: Source) -> pl.Series:
    """The entity ids ``src`` accepts: the id columns of its reference table(s), in one series."""
    parts = [lake.read(t, columns=[c])[c].cast(pl.Utf8).alias(src.entity) for t, c in src.reference_columns]
    return pl.concat(parts).unique(maintain_order=True) if len(parts) > 1 else parts[0]


def ingest_partition(
    zone: LandingZone,
    lake: Lake,
    src: Source,
    partition: dt.date,
    known_ids: pl.Series,
    *,
    tz: str,
    rules: QualityRules = DEFAULT_RULES,
    progress: Callable[[str], None] | None = None,
    forward_late: bool = True,
    run_id: str | None = None,
    memory_bytes: int | None = None,
) -> IngestResult:
    """Build one partition, forward its late/early records to their own day's landing folder (see
    forward_late_records), replace it in the bronze index, silver and quarantine, and publish it."""
    return ingest_partitions(
        zone,
        lake,
        src,
        [partition],
        known_ids,
        tz=tz,
        rules=rules,
        progress=progress,
        forward_late=forward_late,
        run_id=run_id,
        memory_bytes=memory_bytes,
    )[0]


def ingest_partitions(
    zone: LandingZone,
    lake: Lake,
    src: Source,
    partitions: list[dt.date],
    known_ids: pl.Series,
    *,
    tz: str,
    rules: QualityRules = DEFAULT_RULES,
    progress: Callable[[str], None] | None = None,
    forward_late: bool = True,
    run_id: str | None = None,
    memory_bytes: int | None = None,
) -> list[IngestResult]:
    """Ingest several days (a backfill), each its own atomic partition replacement, in order.

    Pipelined on two cores: while one writer thread replaces day N in Delta (delta-rs encodes a
    partition on one core), this thread reads and validates day N+1. At most two days are in
    memory (the one being written and the one being built). Late/early records are forwarded
    right after their day is built, so a forwarded file is in place before the day it targets is
    read. A failed write stops the loop and raises; days before it are published, later days are
    not written (re-running rewrites the same forwarded files: idempotent). Each day is published
    by its own manifest row once its three tables are written; ``run_id`` names the run there.
    ``memory_bytes``: the budget of a day's held rows (default GRIDLAKE_INGEST_MEMORY_MB; see build_partition).
    """
    run_id = run_id or uuid.uuid4().hex
    publisher = manifest.Publisher(lake, src)
    results: list[IngestResult] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridlake-writer") as writer:
        pending = None
        for day in partitions:
            frames, res = build_partition(
                zone, src, day, known_ids, lake=lake, tz=tz, rules=rules, progress=progress, memory_bytes=memory_bytes
            )
            try:
                if forward_late and res.reasons.get("late_data", 0) + res.reasons.get("future_data", 0):
                    # here, not in the writer: the next day's build must see what this day forwards to it
                    res.forwarded = forward_late_records(zone, src, day, frames["quarantine"])
                if pending is not None:
                    results.append(pending.result())
            except BaseException:
                close_frames(frames)  # never written: its spilled files go now
                raise
            pending = writer.submit(
                write_partition_frames,
                lake,
                src,
                day,
                frames,
                res,
                run_id=run_id,
                publisher=publisher,
                progress=progress,
            )
            del frames, res
        if pending is not None:
            results.append(pending.result())
    return results


def reconcile_from_tables(lake, src: Source, day: dt.date, *, published: bool = True) -> dict:
    """Counts read back from the written Delta tables for one partition (the blocking checks' figures).

    ``difference`` = bronze records - (silver + quarantined + duplicates); 0 when nothing was lost.
    Files that yielded no record at all (empty, unreadable, skipped, waived: one ``source_row = 0``
    marker each) are counted apart, as ``rejected_files``. ``unreadable_files`` names each file whose
    readings may be lost (BLOCKING_FILE_PROBLEMS) with its size, estimated records and reason: the
    ``files_readable`` check fails while it is not empty. ``waived_files`` is the operators' audit trail.
    ``published=False`` counts the tables as written (a day held out of the manifest by a blocking file).
    """
    return reconcile_days(lake, src, [day], published=published)[day]


def _scan_days(lake, table, days: list[dt.date], columns: list[str], published: bool) -> pl.DataFrame:
    """``columns`` (and ``date``) of ``days`` of a day table, in one scan (one read plan for all the days)."""
    return lake.scan_days(table, days, published=published).select("date", *columns).collect()


def reconcile_days(lake, src: Source, days: list[dt.date], *, published: bool = True) -> dict[dt.date, dict]:
    """:func:`reconcile_from_tables` for several partitions, each table scanned once for all of them (a
    backfill range: one read plan and Delta log load per table instead of one per day)."""
    days = list(dict.fromkeys(days))
    cols = ["source_file", "source_format", "bytes", "records", "problem", "detail"]
    bronze = _scan_days(lake, src.bronze, days, cols, published).partition_by("date", as_dict=True)
    silver = dict(_scan_days(lake, src.silver, days, [], published).group_by("date").len().iter_rows())
    quarantine = _scan_days(lake, src.quarantine, days, ["reason_code", "source_row"], published).partition_by(
        "date", as_dict=True
    )
    empty_b = pl.DataFrame(schema={"date": pl.Date} | {c: src.bronze.polars_schema()[c] for c in cols})
    empty_q = pl.DataFrame(
        schema={"date": pl.Date} | {c: src.quarantine.polars_schema()[c] for c in ("reason_code", "source_row")}
    )
    return {
        d: _reconcile_counts(lake, bronze.get((d,), empty_b), silver.get(d, 0), quarantine.get((d,), empty_q))
        for d in days
    }


def _reconcile_counts(lake, bronze: pl.DataFrame, silver_n: int, q: pl.DataFrame) -> dict:
    records = q.filter(pl.col("source_row") > 0)
    dups = records.filter(pl.col("reason_code") == "duplicate").height
    out = {
        "bronze_records": int(bronze["records"].sum() or 0),
        "silver_rows": silver_n,
        "quarantined_rows": records.height - dups,
        "duplicate_rows": dups,
        "rejected_files": q.height - records.height,
    }
    out["difference"] = out["bronze_records"] - (out["silver_rows"] + out["quarantined_rows"] + out["duplicate_rows"])
    unreadable = {}
    for f in bronze.filter(pl.col("problem").is_in(list(BLOCKING_FILE_PROBLEMS))).iter_rows(named=True):
        est = None
        if f["problem"] == "unreadable_file":
            try:
                est = estimate_records(lake.get_object(f"{ARCHIVE_PREFIX}/{f['source_file']}"), f["source_format"])
            except (OSError, ValueError):  # not archived (no lake given) or gone: the detail still says why
                est = None
        unreadable[f["source_file"]] = {
            "problem": f["problem"],
            "bytes": f["bytes"],
            "estimated_records": est,
            "detail": f["detail"],
        }
    out["unreadable_files"] = unreadable
    out["estimated_unread_records"] = sum(v["estimated_records"] or 0 for v in unreadable.values())
    out["waived_files"] = {
        f["source_file"]: f["detail"] for f in bronze.filter(pl.col("problem") == "waived_file").iter_rows(named=True)
    }
    out["skipped_files"] = {
        f["source_file"]: f["detail"] for f in bronze.filter(pl.col("problem") == "skipped_file").iter_rows(named=True)
    }
    return out
