"""Writing simulated days as landing files (CSV, JSON lines, Parquet), with controlled bad records.

Layout: ``<source>/<YYYY-MM-DD>/<source>_<YYYY-MM-DD>_<part:03d>.<ext>``, the date being the utility-local
day. Parts split the entities (meters, transformers, stations), never one entity's day across files.

Formats, as head-ends export them:

- CSV: header row; timestamps as *naive local* time ``YYYY-MM-DD HH:MM:SS``. On the fall-back day the
  01:xx hour appears twice per meter, in order (the reader resolves it by order); on the spring-forward
  day the missing hour simply has no rows.
- JSON lines: one object per line; timestamps ISO 8601 in local time with the UTC offset.
- Parquet: typed columns, ``timestamp[us, tz=UTC]``, float64 measures, string ids.

Every injected fault is recorded in the returned :class:`LandingManifest` with the exact 1-based data
row numbers (header excluded) of the file that carries it, so an ingestion run can be reconciled
against it exactly. Fault classes are named like the quarantine reason codes in
``contracts.REASON_CODES``. Rows are never given two faults, and the fall-back hour's rows are never
duplicated, broken or re-labelled with an unknown id (any of those leaves a meter with a lone or a
triple ambiguous local time, which would make order-based resolution itself fail).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from dataclasses import fields as dc_fields
from datetime import date, timedelta

import numpy as np
import polars as pl

from contracts import SOURCES, UTC_TS

from .config import BadRecordRates
from .core import Simulator

STREAM_LANDING = 20
FORMATS = ("csv", "jsonl", "parquet")
SOURCE_NAMES = tuple(SOURCES)

#: the column given a wrong name in a "renamed column" file (none of these is an accepted alias)
RENAMES: dict[str, tuple[str, str]] = {
    "meter_readings": ("voltage", "volts"),
    "scada": ("hot_spot_temp_c", "hotspot_c"),
    "weather": ("temp_air_c", "temperature_c"),
    "incidents": ("outcome", "result"),
    "weather_forecast": ("temp_air_c", "t2m"),
}
#: out-of-range mutations per source: (field, value) where "neg" means -|x| - 0.5
OUT_OF_RANGE: dict[str, tuple[tuple[str, float | str], ...]] = {
    "meter_readings": (("voltage", 999.0), ("power_factor", 1.7), ("consumption_kwh", "neg")),
    "scada": (("frequency_hz", 99.0), ("top_oil_temp_c", 999.0), ("load_kva", "neg")),
    "weather": (("ghi_wm2", "neg"), ("temp_air_c", 99.0), ("cloud_cover", 1.7)),
    "incidents": (("incident_type", "blackout"), ("outcome", "maybe")),
    "weather_forecast": (("ghi_wm2", "neg"), ("temp_air_c", 99.0)),
}
WRONG_TYPE_TOKENS = ("abc", "#VALUE!", "12..5", "x1")
#: ids that are certainly not in the reference tables
_UNKNOWN_ID = {
    "meter_readings": "M9{:05d}",
    "scada": "T9{:04d}",
    "weather": "WX{:03d}",
    "incidents": "X9{:05d}",
    "weather_forecast": "WX{:03d}",
}


@dataclass
class LandingFile:
    """One landing file and what was injected into it."""

    key: str
    source: str
    format: str
    partition: date  # the folder's local day
    data_date: date  # the local day the readings belong to (partition - 1 day for late files)
    rows: int  # data rows written (header excluded)
    #: fault class -> sorted 1-based data row numbers
    faults: dict[str, list[int]] = field(default_factory=dict)
    #: for wrong_type / out_of_range: the field hit in each row listed in ``faults`` (same order)
    fields: dict[str, list[str]] = field(default_factory=dict)
    #: whole-file faults: empty_file | missing_column | late_data
    file_faults: list[str] = field(default_factory=list)
    #: contract name -> name written, for a missing_column file
    renamed: dict[str, str] = field(default_factory=dict)
    #: for each row in ``faults["duplicate"]`` (same order): [file key, row] of the original it re-sends
    #: (always received earlier: earlier in the same file or in a lower-numbered file)
    duplicate_of: list[list] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dc_fields(self)}  # shallow: asdict deep-copies every row list
        d["partition"] = self.partition.isoformat()
        d["data_date"] = self.data_date.isoformat()
        return d


@dataclass
class LandingManifest:
    """Everything :func:`write_landing_day` wrote for one day."""

    day: date
    files: list[LandingFile]

    def for_source(self, source: str) -> list[LandingFile]:
        return [f for f in self.files if f.source == source]

    def rows_written(self, source: str | None = None) -> int:
        return sum(f.rows for f in self.files if source is None or f.source == source)

    def counts(self, source: str | None = None) -> dict[str, int]:
        """Rows per row-level fault class, plus the number of files per file-level fault."""
        out: dict[str, int] = {}
        for f in self.files:
            if source is not None and f.source != source:
                continue
            for k, rows in f.faults.items():
                out[k] = out.get(k, 0) + len(rows)
            for k in f.file_faults:
                out[f"{k}_files"] = out.get(f"{k}_files", 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"day": self.day.isoformat(), "files": [f.to_dict() for f in self.files]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


def _source_frame(sim: Simulator, source: str, d: date) -> pl.DataFrame:
    return {
        "meter_readings": sim.meter_readings,
        "scada": sim.scada,
        "weather": sim.weather,
        "incidents": sim.incidents,
        "weather_forecast": sim.weather_forecast,
    }[source](d)


def _formats_for(formats, source: str) -> tuple[str, ...]:
    if formats is None:
        fm: tuple[str, ...] = ("csv",)
    elif isinstance(formats, str):
        fm = (formats,)
    elif isinstance(formats, dict):
        unknown = sorted(set(formats) - set(SOURCE_NAMES))
        if unknown:
            raise ValueError(f"formats: unknown source(s) {unknown}; sources are {list(SOURCE_NAMES)}")
        v = formats.get(source, ("csv",))
        fm = (v,) if isinstance(v, str) else tuple(v)
    else:
        fm = tuple(formats)
    bad = [x for x in fm if x not in FORMATS]
    if not fm or bad:
        raise ValueError(f"formats for {source}: {list(fm)} invalid; choose from {list(FORMATS)}")
    return fm


def _to_text_frame(df: pl.DataFrame, source: str, fmt: str, tz: str) -> pl.DataFrame:
    tcol = SOURCES[source].time
    local = pl.col(tcol).dt.convert_time_zone(tz)
    # a reading stream's CSV carries naive local times (head-end style); a record source with other
    # timestamps (incidents, a work-order system's export) writes every time with its offset
    pattern = "%Y-%m-%d %H:%M:%S" if fmt == "csv" and not SOURCES[source].attributes else "%Y-%m-%dT%H:%M:%S%:z"
    # other timestamps (an incident's start, end, report) are written with their offset: never ambiguous
    other = [a.name for a in SOURCES[source].attributes if a.dtype == UTC_TS]
    return df.with_columns(
        local.dt.strftime(pattern).alias(tcol),
        *[pl.col(c).dt.convert_time_zone(tz).dt.strftime("%Y-%m-%dT%H:%M:%S%:z").alias(c) for c in other],
    )


def _serialize(
    df: pl.DataFrame,
    source: str,
    fmt: str,
    tz: str,
    text_faults: list[tuple[int, str, str | None]],
    rng: np.random.Generator,
    rename: tuple[str, str] | None,
) -> bytes:
    """Bytes of one file. ``text_faults``: (0-based row, class, field) for malformed/wrong_type rows."""
    if fmt == "parquet":
        if rename:
            df = df.rename({rename[0]: rename[1]})
        buf = io.BytesIO()
        df.write_parquet(buf)
        return buf.getvalue()
    tdf = _to_text_frame(df, source, fmt, tz)
    if rename:
        tdf = tdf.rename({rename[0]: rename[1]})
    if fmt == "csv":
        text = tdf.write_csv()  # measures are already rounded to 4 decimals: shortest repr is exact
        if not text_faults:
            return text.encode()
        lines = text.split("\n")
        cols = tdf.columns
        for row, cls, fld in text_faults:
            parts = lines[row + 1].split(",")  # ids, numbers and timestamps never contain commas
            if cls == "wrong_type":
                parts[cols.index(fld)] = WRONG_TYPE_TOKENS[int(rng.integers(len(WRONG_TYPE_TOKENS)))]
            elif rng.random() < 0.5:
                parts = parts[:-1]  # a field lost
            else:
                parts = parts + ["0.0000"]  # a field too many
            lines[row + 1] = ",".join(parts)
        return "\n".join(lines).encode()
    # JSON lines
    text = tdf.write_ndjson() if tdf.height else ""
    if not text_faults:
        return text.encode()
    lines = text.split("\n")
    for row, cls, fld in text_faults:
        if cls == "wrong_type":
            obj = json.loads(lines[row])
            obj[fld] = WRONG_TYPE_TOKENS[int(rng.integers(len(WRONG_TYPE_TOKENS)))]
            lines[row] = json.dumps(obj, separators=(",", ":"))
        else:
            lines[row] = lines[row][: max(1, len(lines[row]) // 2)]  # truncated object
    return "\n".join(lines).encode()


def _ambiguous_rows(df: pl.DataFrame, source: str, tz: str) -> np.ndarray:
    """Rows whose naive local time occurs twice for the same record key (the fall-back hour)."""
    src = SOURCES[source]
    key = [
        pl.col(c).dt.convert_time_zone(tz).dt.replace_time_zone(None) if c == src.time else pl.col(c)
        for c in (src.key if src.time in src.key else (src.entity, src.time))
    ]
    return df.select(pl.struct(key).is_duplicated()).to_series().to_numpy()


def write_landing_reference(sim: Simulator, zone) -> list[str]:
    """Write ``reference/<table>.parquet`` and ``truth/<table>.parquet``; returns the keys written."""
    keys = []
    for folder, tables in (("reference", sim.reference()), ("truth", sim.truth())):
        for name, df in tables.items():
            buf = io.BytesIO()
            df.write_parquet(buf)
            key = f"{folder}/{name}.parquet"
            zone.put_bytes(key, buf.getvalue())
            keys.append(key)
    return keys


def write_landing_day(
    sim: Simulator,
    d: date,
    zone,
    formats: dict[str, str | tuple[str, ...]] | tuple[str, ...] | str | None = None,
    bad: BadRecordRates | None = None,
    rows_per_file: int = 50_000,
    sources: tuple[str, ...] = SOURCE_NAMES,
    write_manifest: bool = True,
) -> LandingManifest:
    """Write day ``d`` of every source to ``zone`` and return what was written and injected.

    ``formats`` gives, per source, the formats the parts rotate through (default CSV everywhere); a
    tuple or a single name applies to all sources. ``rows_per_file`` sets how many entities go in one
    file (whole entity-days per file). ``bad`` (default: none) controls the injected faults. With
    ``write_manifest`` the manifest is also stored as ``manifests/<YYYY-MM-DD>.json``.
    """
    cfg = sim.cfg
    cfg.check_day(d)
    bad = bad or BadRecordRates()
    if not isinstance(bad, BadRecordRates):
        raise ValueError(f"bad must be a BadRecordRates, got {type(bad).__name__}")
    if not isinstance(rows_per_file, int) or rows_per_file < 1:
        raise ValueError(f"rows_per_file must be a positive int, got {rows_per_file!r}")
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"sources: unknown {unknown}; known: {list(SOURCE_NAMES)}")
    manifest = LandingManifest(day=d, files=[])
    for si, source in enumerate(SOURCE_NAMES):
        if source in sources:
            fm = _formats_for(formats, source)
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_LANDING, d.toordinal(), si]))
            manifest.files.extend(_write_source(sim, d, zone, source, fm, bad, rows_per_file, rng))
    if write_manifest:
        zone.put_bytes(f"manifests/{d.isoformat()}.json", manifest.to_json().encode())
    return manifest


_CODE = {c: i + 1 for i, c in enumerate(BadRecordRates.ROW_CLASSES)}  # 0 = clean row
_MALFORMED, _WRONG, _OOR, _DUP, _UNK = (_CODE[c] for c in BadRecordRates.ROW_CLASSES)


def _is_dst_change(d: date, tz: str) -> bool:
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    z = ZoneInfo(tz)
    a = datetime.combine(d, time(0), tzinfo=z).utcoffset()
    b = datetime.combine(d + timedelta(days=1), time(0), tzinfo=z).utcoffset()
    return a != b


def _write_source(sim, d, zone, source, fm, bad: BadRecordRates, rows_per_file, rng) -> list[LandingFile]:
    cfg = sim.cfg
    src = SOURCES[source]
    tz = cfg.timezone
    df = _source_frame(sim, source, d)
    ent = df[src.entity]
    n_ent = ent.n_unique()
    per_entity = max(1, df.height // max(1, n_ent))
    ents_per_file = max(1, rows_per_file // per_entity)
    # entity-major frames: an entity's rows are contiguous, so a part is a slice
    rid = ent.rle_id().to_numpy()
    bounds = np.append(np.searchsorted(rid, np.arange(0, n_ent, ents_per_file), side="left"), df.height)
    parts = [df.slice(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])]
    n_parts = len(parts)
    fmts = [fm[i % len(fm)] for i in range(n_parts)]
    ambiguous = _ambiguous_rows(df, source, tz) if _is_dst_change(d, tz) else np.zeros(df.height, dtype=bool)

    renamed_parts = set(rng.permutation(n_parts)[: min(bad.renamed_column_files, n_parts)].tolist())
    # the fields a row fault can hit: wrong types in the measures (or, for a source without any, its
    # timestamps), out-of-range values in OUT_OF_RANGE's fields
    wrong_fields = [m.name for m in src.measures] or [a.name for a in src.attributes if a.dtype == UTC_TS]
    measures = wrong_fields + [c for c, _ in OUT_OF_RANGE[source] if c not in wrong_fields]
    choices = OUT_OF_RANGE[source]
    rates = np.array([getattr(bad, c) for c in BadRecordRates.ROW_CLASSES])
    edges = np.cumsum(rates)
    unknown_counter = 0

    # 1) draw row faults per part and apply those that live in values (ids, out-of-range numbers,
    #    duplicate copies); 2) order rows and record their numbers; 3) serialise, breaking lines/types
    staged: list[pl.DataFrame] = []
    extra_tail: list[list[pl.DataFrame]] = [[] for _ in range(n_parts)]
    for i, part in enumerate(parts):
        n = part.height
        code = np.zeros(n, dtype=np.int8)
        fld = np.full(n, -1, dtype=np.int8)  # index into measures
        if i not in renamed_parts and n and rates.sum() > 0:
            pick = np.searchsorted(edges, rng.random(n), side="right")
            code = np.where(pick < len(rates), pick + 1, 0).astype(np.int8)
            if fmts[i] == "parquet":  # typed columns: cannot hold a wrong type or a broken line
                code[(code == _MALFORMED) | (code == _WRONG)] = 0
            # keep the fall-back hour's rows intact and unique per meter: a dropped line, a changed id
            # or an extra copy would leave a lone ambiguous time that no reader can place
            amb = ambiguous[int(bounds[i]) : int(bounds[i + 1])]
            code[np.isin(code, (_DUP, _MALFORMED, _UNK)) & amb] = 0
        wt = code == _WRONG
        fld[wt] = rng.integers(0, len(wrong_fields), int(wt.sum()))
        oor = code == _OOR
        oor_pick = rng.integers(0, len(choices), int(oor.sum()))
        fld[oor] = [measures.index(choices[j][0]) for j in oor_pick]

        p = part.with_columns(
            pl.Series("_fault", code, dtype=pl.Int8),
            pl.Series("_field", fld, dtype=pl.Int8),
            pl.Series("_ord", np.arange(n, dtype=float) * 2.0),
            pl.Series("_uid", i * 1_000_000_000 + np.arange(n, dtype=np.int64)),
        )
        if oor.any():
            for name, value in choices:
                mask = oor & (fld == measures.index(name))
                if mask.any():
                    new = (
                        (-pl.col(name).abs() - 0.5)
                        if value == "neg"
                        else pl.lit(value)
                        if isinstance(value, str)
                        else pl.lit(float(value))
                    )
                    p = p.with_columns(pl.when(pl.Series(mask)).then(new).otherwise(pl.col(name)).alias(name))
        unk = np.flatnonzero(code == _UNK)
        if unk.size:
            fake = [_UNKNOWN_ID[source].format(unknown_counter + k + 1) for k in range(unk.size)]
            unknown_counter += unk.size
            repl = pl.Series(np.full(n, None, dtype=object)).cast(pl.Utf8).scatter(unk, fake)
            p = p.with_columns(pl.coalesce(repl, pl.col(src.entity)).alias(src.entity))
        # duplicates: the original stays clean, an exact copy is re-sent here or in another file
        dups = np.flatnonzero(code == _DUP)
        if dups.size:
            p = p.with_columns(
                pl.when(pl.col("_fault") == _DUP).then(0).otherwise(pl.col("_fault")).cast(pl.Int8).alias("_fault")
            )
            copies = p[dups.tolist()].with_columns(
                pl.lit(_DUP, pl.Int8).alias("_fault"), (pl.col("_ord") + 1.0).alias("_ord")
            )
            # a re-send arrives after the original: later in the same file or in a later file
            targets = [j for j in range(i + 1, n_parts) if j not in renamed_parts]
            to_other = rng.random(dups.size) < 0.5 if targets else np.zeros(dups.size, dtype=bool)
            p = pl.concat([p, copies.filter(pl.Series(~to_other))])
            for r in np.flatnonzero(to_other):
                extra_tail[targets[int(rng.integers(len(targets)))]].append(copies[int(r) : int(r) + 1])
        staged.append(p)

    files: list[LandingFile] = []
    where: dict[int, tuple[str, int]] = {}  # uid of a re-sent original -> (file key, 1-based row)
    part_no = 0
    for i, p in enumerate(staged):
        if extra_tail[i]:
            tail = pl.concat(extra_tail[i])
            tail = tail.with_columns((1e12 + pl.int_range(pl.len()).cast(pl.Float64)).alias("_ord"))
            p = pl.concat([p, tail])
        p = p.sort("_ord", maintain_order=True)
        code = p["_fault"].to_numpy()
        fld = p["_field"].to_numpy()
        uid = p["_uid"].to_numpy()
        key = _key(source, d, part_no, fmts[i])
        is_copy = code == _DUP
        if is_copy.any() or any(extra_tail[j] for j in range(i + 1, n_parts)):
            wanted = np.unique(
                np.concatenate(
                    [uid[is_copy]] + [t["_uid"].to_numpy() for j in range(i + 1, n_parts) for t in extra_tail[j]]
                )
            )
            for r in np.flatnonzero(~is_copy & np.isin(uid, wanted)):
                where[int(uid[r])] = (key, int(r) + 1)
        data = p.drop("_fault", "_field", "_ord", "_uid")
        text_rows = np.flatnonzero((code == _MALFORMED) | (code == _WRONG))
        text_faults = [
            (int(r), BadRecordRates.ROW_CLASSES[code[r] - 1], measures[fld[r]] if code[r] == _WRONG else None)
            for r in text_rows
        ]
        rename = RENAMES[source] if i in renamed_parts else None
        lf = _put(zone, source, d, d, part_no, fmts[i], data, tz, text_faults, rng, rename)
        for c in BadRecordRates.ROW_CLASSES:
            rows = np.flatnonzero(code == _CODE[c])
            if rows.size:
                lf.faults[c] = (rows + 1).tolist()
                if c in ("wrong_type", "out_of_range"):
                    lf.fields[c] = [measures[fld[r]] for r in rows]
        lf.duplicate_of = [list(where[int(uid[r])]) for r in np.flatnonzero(is_copy)]
        if rename:
            lf.file_faults.append("missing_column")
            lf.renamed = {rename[0]: rename[1]}
        files.append(lf)
        part_no += 1

    # late files: readings of the previous day landing in today's folder
    if bad.late_files:
        prev = d - timedelta(days=1)
        pdf = _source_frame(sim, source, prev)
        pents = pdf[src.entity].unique(maintain_order=True)
        if pents.len() == 0:  # nothing recorded the day before (an incidents export): no late file to send
            return _empty_tail(files, bad, fm, n_parts, zone, source, d, df, tz, rng, part_no)
        take = max(1, min(ents_per_file, int(np.ceil(0.05 * pents.len()))))
        for k in range(bad.late_files):
            chosen = pents.gather(np.sort(rng.choice(pents.len(), size=min(take, pents.len()), replace=False)))
            late = pdf.filter(pl.col(src.entity).is_in(chosen.implode()))
            fmt = fm[(n_parts + k) % len(fm)]
            lf = _put(zone, source, d, prev, part_no, fmt, late, tz, [], rng, None)
            lf.file_faults.append("late_data")
            lf.faults["late_data"] = list(range(1, late.height + 1))
            files.append(lf)
            part_no += 1
    return _empty_tail(files, bad, fm, n_parts, zone, source, d, df, tz, rng, part_no)


def _empty_tail(files, bad, fm, n_parts, zone, source, d, df, tz, rng, part_no) -> list[LandingFile]:
    for k in range(bad.empty_files):
        fmt = fm[(n_parts + bad.late_files + k) % len(fm)]
        lf = _put(zone, source, d, d, part_no, fmt, df.clear(), tz, [], rng, None)
        lf.file_faults.append("empty_file")
        files.append(lf)
        part_no += 1
    return files


def _key(source: str, d: date, part_no: int, fmt: str) -> str:
    return f"{source}/{d.isoformat()}/{source}_{d.isoformat()}_{part_no:03d}.{fmt}"


def _put(zone, source, d, data_date, part_no, fmt, data, tz, text_faults, rng, rename) -> LandingFile:
    key = _key(source, d, part_no, fmt)
    zone.put_bytes(key, _serialize(data, source, fmt, tz, text_faults, rng, rename))
    return LandingFile(key=key, source=source, format=fmt, partition=d, data_date=data_date, rows=data.height)
