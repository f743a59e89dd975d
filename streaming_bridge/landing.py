"""Accepted readings -> landing files (the same path as head-end files); dead letters -> their table.

Durability without holding MQTT acknowledgements for minutes: every processed batch is appended to a
local spool segment (Arrow IPC stream files, one per source, fsynced) *before* the bridge sends the
PUBACKs. Every ``flush_seconds`` (or ``flush_rows`` readings) the segment is closed and landed:

- readings of each source, split by the utility-local day of their timestamp, become one Parquet file
  ``<source>/<day>/stream-<segment>.parquet`` in the landing zone (the contract's raw columns, UTC
  timestamps), which the existing ``landing_sensor`` ingests like any head-end file. Ingestion
  deduplicates on the table key, so a reading the bridge lands twice, or one that also arrives in a
  head-end file, is harmless;
- dead letters become rows of ``stream_dead_letters`` tagged ``batch_id = <segment>``.

Both writes are idempotent per segment (same file key, Delta replace of the segment's rows), so after
a crash the leftover segments are simply landed again at start-up (:meth:`LandingWriter.recover`).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import os
import re
import shutil
import threading
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
from pyarrow import ipc

from contracts import SOURCES, STREAM_DEAD_LETTERS
from lake.delta import Lake
from lake.landing import LandingZone

DEAD = "dead_letters"
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,100}$")


@functools.cache
def raw_schema(source: str) -> pl.Schema:
    """The typed raw columns a stream landing file carries for ``source`` (silver's first columns)."""
    s = SOURCES[source].silver.polars_schema()
    src = SOURCES[source]
    return pl.Schema({c: s[c] for c in src.raw_columns})


class _SpoolFile:
    def __init__(self, path: Path, schema: pa.Schema):
        self.path = path
        self.f = open(path, "ab")
        self.w = ipc.new_stream(self.f, schema)

    def append(self, table: pa.Table) -> None:
        self.w.write_table(table)
        self.f.flush()

    def sync(self) -> None:
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.w.close()
        self.f.close()


def read_spool(path: Path) -> pl.DataFrame | None:
    """Every complete batch of a spool file (a batch torn by a crash was never acknowledged: dropped)."""
    data = path.read_bytes()
    if not data:
        return None
    try:
        reader = ipc.open_stream(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError):
        return None
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            break
        except (pa.ArrowInvalid, OSError):  # torn tail
            break
    if not batches:
        return None
    return pl.from_arrow(pa.Table.from_batches(batches, schema=reader.schema))


class LandingWriter:
    """Spools accepted readings and dead letters durably and lands them in segments."""

    def __init__(
        self,
        zone: LandingZone,
        lake: Lake,
        spool_dir: str | os.PathLike,
        *,
        bridge_id: str = "bridge",
        tz: str,
        flush_seconds: float = 60.0,
        flush_rows: int = 200_000,
        fsync: bool = True,
    ):
        if not _SEGMENT_RE.match(bridge_id):
            raise ValueError(f"bridge id {bridge_id!r}: use [A-Za-z0-9._-]")
        self.zone, self.lake, self.tz = zone, lake, tz
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.bridge_id = bridge_id
        self.flush_seconds, self.flush_rows, self.fsync = flush_seconds, flush_rows, fsync
        self._segment: str | None = None
        self._files: dict[str, _SpoolFile] = {}
        self._rows = 0
        self._opened = time.monotonic()
        self._lock = threading.Lock()
        self.landed_files: list[str] = []
        self.landed_rows = 0
        self.dead_rows_written = 0
        self._seq = 0

    # ------------------------------------------------------------------ spooling
    def _new_segment(self) -> str:
        self._seq += 1
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        return f"{self.bridge_id}-{stamp}-{self._seq:04d}"

    def append(self, accepted: dict[str, pl.DataFrame], dead: pl.DataFrame, sync: bool = True) -> None:
        """Spool one processed batch; durable (fsynced) when this returns, unless ``sync=False`` (then call
        :meth:`sync` before acknowledging: one fsync for several batches)."""
        with self._lock:
            if self._segment is None:
                self._segment = self._new_segment()
                (self.spool_dir / self._segment).mkdir()
                self._opened = time.monotonic()
            touched = []
            for name, df in list(accepted.items()) + [(DEAD, dead)]:
                if df.height == 0:
                    continue
                if name == DEAD:
                    tbl = df.drop("batch_id", strict=False).to_arrow()
                else:
                    tbl = df.select(list(raw_schema(name))).to_arrow()
                f = self._files.get(name)
                if f is None:
                    f = self._files[name] = _SpoolFile(self.spool_dir / self._segment / f"{name}.arrows", tbl.schema)
                f.append(tbl)
                touched.append(f)
                if name != DEAD:
                    self._rows += df.height
            if self.fsync and sync:
                for f in touched:
                    f.sync()

    def sync(self) -> None:
        """fsync every open spool file (group commit of the batches appended with ``sync=False``)."""
        with self._lock:
            if self.fsync:
                for f in self._files.values():
                    f.sync()

    def due(self) -> bool:
        return self._segment is not None and (
            self._rows >= self.flush_rows or time.monotonic() - self._opened >= self.flush_seconds
        )

    @property
    def spooled_rows(self) -> int:
        return self._rows

    # ------------------------------------------------------------------ landing
    def flush(self) -> list[str]:
        """Close the open segment and land it; returns the landing keys written."""
        with self._lock:
            seg = self._segment
            if seg is None:
                return []
            for f in self._files.values():
                f.close()
            self._files, self._segment, self._rows = {}, None, 0
        return self._land(seg)

    def recover(self) -> list[str]:
        """Land the segments a previous run left in the spool (crash or kill before its flush)."""
        keys: list[str] = []
        for d in sorted(p for p in self.spool_dir.iterdir() if p.is_dir()):
            if _SEGMENT_RE.match(d.name) and d.name != self._segment:
                keys += self._land(d.name)
        return keys

    def _land(self, seg: str) -> list[str]:
        d = self.spool_dir / seg
        keys: list[str] = []
        for name in SOURCES:
            p = d / f"{name}.arrows"
            df = read_spool(p) if p.exists() else None
            if df is None or df.height == 0:
                continue
            src = SOURCES[name]
            df = df.with_columns(pl.col(src.time).dt.convert_time_zone(self.tz).dt.date().alias("_day"))
            for (day,), part in df.group_by("_day", maintain_order=True):
                key = f"{name}/{day.isoformat()}/stream-{seg}.parquet"
                buf = io.BytesIO()
                part.drop("_day").write_parquet(buf)
                self.zone.put_bytes(key, buf.getvalue())
                keys.append(key)
                self.landed_rows += part.height
        p = d / f"{DEAD}.arrows"
        dead = read_spool(p) if p.exists() else None
        if dead is not None and dead.height:
            dead = dead.with_columns(pl.lit(seg).alias("batch_id"))
            self.lake.replace_batch(STREAM_DEAD_LETTERS, dead, "batch_id", seg)
            self.dead_rows_written += dead.height
        shutil.rmtree(d, ignore_errors=True)
        self.landed_files += keys
        return keys

    def close(self) -> list[str]:
        return self.flush()
