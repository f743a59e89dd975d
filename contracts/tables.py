"""The base types of every table contract: ``Column``, ``Table``, the UTC timestamp type and the
columns many tables share (the daily partition key, lineage, ingestion time).

Conventions
- timestamps in silver and gold are UTC (``Datetime("us", "UTC")``);
- ``date`` is the *utility's local* calendar day (the daily partition key), a ``Date``;
- bronze keeps every raw field as text, exactly as received, plus lineage columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

UTC_TS = pl.Datetime("us", "UTC")


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


_LINEAGE = (
    Column("source_file", pl.Utf8, False, "landing file the record came from (relative key)"),
    Column("source_row", pl.Int64, False, "1-based data row number in that file (header excluded)"),
)
_INGESTED = Column("ingested_at", UTC_TS, False, "when the ingestion run read the file")
_DATE = Column("date", pl.Date, False, "utility-local day; the daily partition key")
