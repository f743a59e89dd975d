"""Reading landing files, hostile ones included: encodings, compression, CSV dialects, odd Parquet types,
in chunks of bounded size.

Every reader yields ``Chunk``s: a frame of received fields (``source_row`` + the file's columns after
header mapping), the header, and a frame of lines that could not be split (``source_row``, ``unparsed``).
``source_row`` is the physical line (CSV: the header is line 0; JSON lines: 1-based) or the 1-based
Parquet row, so a record's address is the same however the file was chunked.

- Compression: gzip bytes (``.csv.gz``, ``.jsonl.gz``, or gzip content under a plain name) are
  decompressed as a stream.
- Encoding (text formats): a UTF-8 BOM is dropped; UTF-16 with a BOM is decoded (whole file); bytes that
  are not valid UTF-8 are decoded as cp1252 (Latin-1 for the five bytes cp1252 leaves undefined), and the
  file's ``notes`` say so. CR-only line endings are read as line breaks.
- CSV dialect: the delimiter is the one of ``,`` ``;`` tab ``|`` that splits the header line most; header
  names are matched to the contract case-, quote- and space-insensitively (aliases included); with a
  delimiter other than ``,`` a decimal comma in the measures is read as a decimal point
  (``Header.decimal_comma``). Two header names that map to one contract column are reported
  (``Header.conflicts``): which one holds the value is not guessable.
- Parquet: columns of a type the contract cannot use (booleans or temporal values for a measure, nested,
  binary) are rendered as text, so validation rejects them per row as ``wrong_type`` instead of raising.
- Chunks: text is cut at line boundaries every ``chunk_bytes`` of input, Parquet per row batch; memory
  for reading a file is bounded by the budget, not by the file's size.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import polars as pl

from contracts import Source

_ROW = "source_row"

#: bytes of input read per chunk (a file larger than this is read in pieces); GRIDLAKE_INGEST_CHUNK_BYTES
#: overrides. Reading and validating a chunk of CSV takes about ten times its size in memory (the lines,
#: the split fields, the parsed times and values): 16 MiB of input is ~250k rows and ~170 MB.
DEFAULT_CHUNK_BYTES = int(os.environ.get("GRIDLAKE_INGEST_CHUNK_BYTES", 16 << 20))

FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}
DELIMITERS = (",", ";", "\t", "|")
_GZIP = b"\x1f\x8b"


class Header(list):
    """The file's column names after mapping to the contract, plus what the reader learnt of the file."""

    def __init__(self, names=(), *, delimiter: str = ",", conflicts: dict[str, list[str]] | None = None):
        super().__init__(names)
        self.delimiter = delimiter
        self.decimal_comma = delimiter != ","
        self.conflicts = conflicts or {}  # contract column -> the received names that all map to it


@dataclass
class Chunk:
    df: pl.DataFrame
    header: Header
    malformed: pl.DataFrame


@dataclass
class ReadNotes:
    """What was assumed while reading (encoding, compression, dialect): goes to the bronze index detail."""

    items: list[str] = field(default_factory=list)

    def add(self, note: str, kind: str | None = None) -> None:
        """Add a note once; with ``kind``, only the first note of that kind (e.g. the first bad byte)."""
        if note not in self.items and not (kind and any(x.startswith(kind) for x in self.items)):
            self.items.append(note)

    def __str__(self) -> str:
        return "; ".join(self.items)


def file_format(key: str) -> tuple[str, bool]:
    """(csv | jsonl | parquet | ?, gzip-compressed by name) from a landing key's extension."""
    name = key.rsplit("/", 1)[-1].lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    ext = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    return FORMATS.get(ext, "?"), gz


def _empty_malformed() -> pl.DataFrame:
    return pl.DataFrame(schema={_ROW: pl.Int64, "unparsed": pl.Utf8})


@functools.lru_cache(maxsize=16)
def _name_map(src: Source) -> dict[str, str]:
    """lower-cased received name -> contract name, for the contract columns and their aliases."""
    m = {c.lower(): c for c in src.raw_columns}
    m.update({a.lower(): t for a, t in src.aliases.items()})
    return m


def map_names(names: list[str], src: Source) -> tuple[list[str], dict[str, list[str]]]:
    """Contract names for received names (case/quote/space-insensitive), and the conflicts: a contract
    column that two received names map to. Conflicting and repeated names keep their received spelling
    (made unique), so no value is lost and no column silently wins."""
    lookup = _name_map(src)
    clean = [n.strip().strip('"').strip() for n in names]
    mapped = [lookup.get(n.lower(), n) for n in clean]
    counts: dict[str, list[str]] = {}
    for n, m in zip(clean, mapped):
        counts.setdefault(m, []).append(n)
    conflicts = {m: ns for m, ns in counts.items() if len(ns) > 1}
    out, seen = [], set()
    for n, m in zip(clean, mapped):
        name = m if m not in conflicts else n
        base, i = name, 1
        while name in seen:
            i += 1
            name = f"{base}#{i}"
        seen.add(name)
        out.append(name)
    return out, conflicts


# ------------------------------------------------------------------ bytes -> line-aligned text chunks
def _decode(raw: bytes, notes: ReadNotes, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        try:
            text = raw.decode("cp1252")
            notes.add(f"not valid UTF-8 (byte {offset + e.start}); decoded as cp1252", kind="not valid UTF-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
            notes.add(f"not valid UTF-8 (byte {offset + e.start}); decoded as latin-1", kind="not valid UTF-8")
        return text


def open_stream(fh: BinaryIO, notes: ReadNotes) -> BinaryIO:
    """``fh`` (seekable), decompressed if it holds gzip bytes."""
    head = fh.read(2)
    fh.seek(0)
    if head == _GZIP:
        notes.add("gzip-compressed")
        return gzip.GzipFile(fileobj=fh, mode="rb")
    return fh


def text_chunks(fh: BinaryIO, notes: ReadNotes, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[str]:
    """The file's text in pieces of about ``chunk_bytes`` input bytes, each ending at a line break."""
    fh = open_stream(fh, notes)
    first = fh.read(chunk_bytes)
    if first[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with a BOM: newline bytes are not aligned; whole file
        notes.add("UTF-16 (BOM)")
        text = (first + fh.read()).decode("utf-16")
        yield text.replace("\r\n", "\n").replace("\r", "\n") if "\n" not in text else text
        return
    if b"\x00" in first[:4096]:  # not text: a binary file (Parquet, a spreadsheet, ...) under a text name
        raise ValueError("binary content (NUL bytes) in a text file; is it UTF-16 without a BOM, or another format?")
    if first[:3] == b"\xef\xbb\xbf":
        notes.add("UTF-8 BOM dropped")
        first = first[3:]
    cr_only = b"\n" not in first and b"\r" in first
    if cr_only:
        notes.add("CR line endings")
    nl = b"\r" if cr_only else b"\n"
    carry, buf, offset = b"", first, 0
    while buf:
        buf = carry + buf
        cut = buf.rfind(nl)
        if cut < 0:
            carry = buf
        else:
            piece, carry = buf[: cut + 1], buf[cut + 1 :]
            if cr_only:
                piece = piece.replace(b"\r", b"\n")
            yield _decode(piece, notes, offset)
            offset += len(piece)
        buf = fh.read(chunk_bytes)
    if carry:
        yield _decode(carry.replace(b"\r", b"\n") if cr_only else carry, notes, offset)


def _lines(text: str, first_index: int) -> pl.DataFrame:
    """Physical lines of a text piece with their 0-based file line index, CR stripped (vectorised)."""
    if text.endswith("\n"):
        text = text[:-1]
    return (
        pl.DataFrame({"line": [text]})
        .select(pl.col("line").str.split("\n"))
        .explode("line")
        .with_row_index("_idx", offset=0)
        .with_columns(
            pl.col("line").str.strip_suffix("\r"), (pl.col("_idx").cast(pl.Int64) + first_index).alias("_idx")
        )
    )


# ------------------------------------------------------------------ CSV
def csv_header(line: str, src: Source) -> Header:
    line = line.rstrip("\r")
    delim = max(DELIMITERS, key=lambda d: (line.count(d), d == ","))
    names = next(csv.reader([line], delimiter=delim)) if line else []
    mapped, conflicts = map_names(names, src)
    return Header(mapped, delimiter=delim, conflicts=conflicts)


def _csv_body(lines: pl.DataFrame, header: Header) -> tuple[pl.DataFrame, pl.DataFrame]:
    n, d = len(header), header.delimiter
    # blank lines (the trailing one included) are not records; row numbers stay physical
    body = lines.filter(pl.col("line") != "").rename({"_idx": _ROW})
    quoted = pl.col("line").str.contains('"', literal=True)
    nfields = pl.col("line").str.count_matches(d, literal=True) + 1
    plain = body.filter(~quoted)
    parts = [
        plain.filter(nfields == n)
        .select(_ROW, pl.col("line").str.split_exact(d, n - 1).struct.rename_fields(list(header)).alias("_s"))
        .unnest("_s")
    ]
    bad = [plain.filter(nfields != n).select(_ROW, pl.col("line").alias("unparsed"))]
    rare = body.filter(quoted)
    if rare.height:  # quoted fields: the csv module, row by row (rare in meter exports)
        ok_rows, bad_rows = [], []
        for r, line in zip(rare[_ROW], rare["line"]):
            try:
                fields = next(csv.reader([line], delimiter=d))
            except csv.Error:
                fields = []
            (ok_rows.append((r, fields)) if len(fields) == n else bad_rows.append((r, line)))
        if ok_rows:
            parts.append(
                pl.DataFrame(
                    {_ROW: [r for r, _ in ok_rows], **{h: [f[i] for _, f in ok_rows] for i, h in enumerate(header)}},
                    schema={_ROW: pl.Int64, **dict.fromkeys(header, pl.Utf8)},
                )
            )
        if bad_rows:
            bad.append(
                pl.DataFrame(
                    {_ROW: [r for r, _ in bad_rows], "unparsed": [l for _, l in bad_rows]},
                    schema={_ROW: pl.Int64, "unparsed": pl.Utf8},
                )
            )
    df = pl.concat(parts, how="vertical_relaxed").with_columns([pl.col(h).str.strip_chars() for h in header])
    return df, pl.concat(bad)


def csv_chunks(fh: BinaryIO, src: Source, notes: ReadNotes, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[Chunk]:
    header: Header | None = None
    next_index = 0
    for text in text_chunks(fh, notes, chunk_bytes):
        lines = _lines(text, next_index)
        next_index += lines.height
        if header is None:
            if lines.height == 0:
                continue
            header = csv_header(lines["line"][0], src)
            if header.delimiter != ",":
                notes.add(f"delimiter {header.delimiter!r}, decimal comma accepted")
            lines = lines.slice(1)
        if not header:
            continue
        df, bad = _csv_body(lines, header)
        yield Chunk(df, header, bad)


# ------------------------------------------------------------------ JSON lines
def jsonl_chunks(
    fh: BinaryIO, src: Source, notes: ReadNotes, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[Chunk]:
    lookup = _name_map(src)
    next_index = 0
    header: dict[str, None] = {}  # every key seen so far in the file: a key of an earlier chunk is not missing later
    for text in text_chunks(fh, notes, chunk_bytes):
        lines = _lines(text, next_index)
        next_index += lines.height
        lines = lines.filter(pl.col("line").str.strip_chars() != "")
        rows: list[dict] = []
        bad: list[tuple[int, str]] = []
        for idx, line in zip(lines["_idx"], lines["line"]):
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
                rec: dict = {_ROW: idx + 1}
                for k, v in obj.items():
                    k = lookup.get(k.strip().lower(), k)
                    if k in rec:
                        raise ValueError(f"two fields for {k}")
                    rec[k] = None if v is None else (v if isinstance(v, str) else json.dumps(v))
            except ValueError:
                bad.append((idx + 1, line))
                continue
            for k in rec:
                if k != _ROW:
                    header.setdefault(k, None)
            rows.append(rec)
        cols = list(header)
        df = (
            pl.DataFrame(rows, schema={_ROW: pl.Int64, **dict.fromkeys(cols, pl.Utf8)})
            if rows
            else pl.DataFrame(schema={_ROW: pl.Int64})
        )
        malformed = pl.DataFrame(
            {_ROW: [r for r, _ in bad], "unparsed": [l for _, l in bad]}, schema={_ROW: pl.Int64, "unparsed": pl.Utf8}
        )
        yield Chunk(df, Header(cols), malformed)


# ------------------------------------------------------------------ Parquet
_KEEP_TYPES = (pl.Utf8, pl.String, pl.Null)


def _usable(dtype: pl.DataType, role: str) -> bool:
    if dtype in _KEEP_TYPES:
        return True
    if role == "measure":
        return dtype.is_numeric()
    if role == "time":
        return isinstance(dtype, pl.Datetime)
    if role == "entity":
        return dtype.is_integer()
    # other columns only travel in raw_record: anything JSON can carry as is
    return dtype.is_numeric() or dtype == pl.Boolean or isinstance(dtype, (pl.Datetime, pl.Date))


def _as_text(s: pl.Series) -> pl.Series:
    try:
        if not s.dtype.is_nested() and s.dtype != pl.Binary:
            return s.cast(pl.Utf8)
    except Exception:  # noqa: BLE001 - fall back to Python rendering below
        pass
    render = lambda v: None if v is None else (v.hex() if isinstance(v, bytes) else json.dumps(v, default=str))  # noqa: E731
    return pl.Series(s.name, [render(v) for v in s.to_list()], dtype=pl.Utf8)


def normalise_parquet(df: pl.DataFrame, src: Source, row_offset: int = 0) -> tuple[pl.DataFrame, Header]:
    names, conflicts = map_names(df.columns, src)
    if names != df.columns:
        df = df.rename(dict(zip(df.columns, names)))
    roles = {src.entity: "entity", src.time: "time", **{m.name: "measure" for m in src.measures}}
    schema = df.schema  # once: each df.schema builds a new Schema
    bad = [c for c in df.columns if not _usable(schema[c], roles.get(c, "other"))]
    if bad:
        df = df.with_columns([_as_text(df[c]) for c in bad])
    df = df.with_columns(pl.int_range(row_offset + 1, row_offset + pl.len() + 1, dtype=pl.Int64).alias(_ROW))
    return df, Header(names, conflicts=conflicts)


def parquet_chunks(
    fh: BinaryIO, src: Source, notes: ReadNotes, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[Chunk]:
    fh = open_stream(fh, notes)
    fh.seek(0, io.SEEK_END) if fh.seekable() else None
    size = fh.tell() if fh.seekable() else -1
    fh.seek(0)
    if 0 <= size <= chunk_bytes:  # the usual case: one read
        df, header = normalise_parquet(pl.read_parquet(fh), src)
        yield Chunk(df, header, _empty_malformed())
        return
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(fh)
    meta = pf.metadata
    row_bytes = max(
        1, sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) // max(1, meta.num_rows)
    )
    batch = max(1024, chunk_bytes // (4 * row_bytes))  # decoded rows take a few times their encoded size
    offset = 0
    for rb in pf.iter_batches(batch_size=batch):
        df, header = normalise_parquet(pl.from_arrow(rb), src, offset)
        offset += df.height
        yield Chunk(df, header, _empty_malformed())


CHUNK_READERS = {"csv": csv_chunks, "jsonl": jsonl_chunks, "parquet": parquet_chunks}


def read_all(fmt: str, data: bytes, src: Source) -> tuple[pl.DataFrame, Header, pl.DataFrame]:
    """A whole file's records at once (the bronze record view)."""
    chunks = list(CHUNK_READERS[fmt](io.BytesIO(data), src, ReadNotes()))
    if not chunks:
        return pl.DataFrame(schema={_ROW: pl.Int64}), Header(), _empty_malformed()
    return (
        pl.concat([c.df for c in chunks], how="diagonal_relaxed"),
        chunks[0].header,
        pl.concat([c.malformed for c in chunks], how="diagonal_relaxed"),
    )


def estimate_records(data: bytes, fmt: str) -> int | None:
    """Best estimate of the records in a file that could not be read (line count, Parquet metadata)."""
    try:
        if data[:2] == _GZIP:
            data = gzip.decompress(data)
    except Exception:  # noqa: BLE001 - a truncated gzip: count what is there
        try:
            data = gzip.GzipFile(fileobj=io.BytesIO(data)).read1(1 << 30)
        except Exception:  # noqa: BLE001
            pass
    if fmt == "parquet" or data[:4] == b"PAR1":
        try:
            import pyarrow.parquet as pq

            return pq.read_metadata(io.BytesIO(data)).num_rows
        except Exception:  # noqa: BLE001
            return None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        data = data.decode("utf-16", errors="replace").encode()
    nl = b"\n" if b"\n" in data else b"\r"
    lines = [ln for ln in data.split(nl) if ln.strip()]
    return max(0, len(lines) - (1 if fmt == "csv" else 0))
