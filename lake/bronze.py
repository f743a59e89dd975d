"""Bronze, record by record: every record of a partition as received, with its lineage.

Bronze stores each landing file byte-exact (``<lake>/bronze_archive/<landing key>``) plus one index
row per file (``bronze_<source>_files``: format, bytes, records, file-level problem, ingestion
time). This module gives the record-level view of that archive: the same readers ingestion used
(lake.ingest.READERS) re-read the archived bytes, so a record's ``(source_file, source_row)`` here is
exactly the address silver and quarantine carry.

    >>> read_records(lake, SOURCES["meter_readings"], date(2026, 1, 12))  # doctest: +SKIP

Columns: ``date, source_file, source_row, ingested_at``, then every received field as text (the
file's own header after alias mapping; Parquet values rendered as text), and ``unparsed`` for a
line that could not be split into fields. The row count equals the index's ``records`` total,
which equals silver + quarantined + duplicates for the partition.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from contracts import Source
from lake.delta import Lake
from lake.ingest import _ROW, ARCHIVE_PREFIX, READERS

LINEAGE = ["date", "source_file", "source_row", "ingested_at"]


def read_records(lake: Lake, src: Source, day: dt.date) -> pl.DataFrame:
    """All records of ``src``'s archived landing files for ``day``, as received, in file and row order."""
    index = lake.read(src.bronze, day).sort("ingested_at", "source_file")
    parts: list[pl.DataFrame] = []
    for f in index.iter_rows(named=True):
        if f["records"] == 0 or f["source_format"] not in READERS:
            continue  # empty or unreadable: the index row (with its problem) is the whole story
        data = lake.get_object(f"{ARCHIVE_PREFIX}/{f['source_file']}")
        df, _header, malformed = READERS[f["source_format"]](data, src)
        fields = [c for c in df.columns if c != _ROW]
        df = df.select(pl.col(_ROW), *[pl.col(c).cast(pl.Utf8) for c in fields])
        if malformed.height:
            df = pl.concat([df, malformed], how="diagonal_relaxed")
        parts.append(
            df.with_columns(
                pl.lit(day).alias("date"),
                pl.lit(f["source_file"]).alias("source_file"),
                pl.lit(f["ingested_at"]).alias("ingested_at"),
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={"date": pl.Date, "source_file": pl.Utf8, _ROW: pl.Int64, "ingested_at": index.schema["ingested_at"]}
        )
    out = pl.concat(parts, how="diagonal_relaxed")
    rest = [c for c in out.columns if c not in LINEAGE and c != "unparsed"] + (
        ["unparsed"] if "unparsed" in out.columns else []
    )
    return out.select(*LINEAGE, *rest).sort("source_file", _ROW, maintain_order=True)
