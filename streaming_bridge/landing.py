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
        self.schema = schema
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
        #: lands closed segments elsewhere (LandingProcess: a child process); None = on the calling thread
        self.lander: LandingProcess | None = None

    # ------------------------------------------------------------------ spooling
    def _new_segment(self) -> str:
        self._seq += 1
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        return f"{self.bridge_id}-{stamp}-{self._seq:04d}"

    def append(
        self,
        accepted: dict[str, pl.DataFrame],
        dead: pl.DataFrame,
        sync: bool = True,
        tables: dict[str, pa.Table] | None = None,
    ) -> None:
        """Spool one processed batch; durable (fsynced) when this returns, unless ``sync=False`` (then call
        :meth:`sync` before acknowledging: one fsync for several batches). ``tables``: the Arrow tables behind
        some of the accepted frames (the ingress screen builds them), written as they are."""
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
                    tbl = (tables or {}).get(name)
                    tbl = (df.to_arrow() if tbl is None else tbl).select(list(raw_schema(name)))  # pyarrow's select
                f = self._files.get(name)
                if f is None:
                    f = self._files[name] = _SpoolFile(self.spool_dir / self._segment / f"{name}.arrows", tbl.schema)
                elif tbl.schema != f.schema:
                    tbl = tbl.cast(f.schema)
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
        if self.lander is not None and self.lander.submit(seg):
            return []  # landed by the child process; landed_rows / landed_files follow when it is done
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
        keys = self.flush()
        if self.lander is not None:
            self.lander.close()
        return keys

    def _landed_elsewhere(self, seg: str, keys: list[str], rows: int, dead_rows: int) -> None:
        with self._lock:
            self.landed_files += keys
            self.landed_rows += rows
            self.dead_rows_written += dead_rows


def _lander_main(conn, spool_dir: str, landing: str, lake_root: str, tz: str) -> None:
    """The landing child process: lands each segment it is sent, answers with what it wrote."""
    import signal

    from lake.landing import open_landing

    for sig in (signal.SIGINT, signal.SIGTERM):  # the bridge process decides when to stop
        signal.signal(sig, signal.SIG_IGN)
    w = LandingWriter(open_landing(landing), Lake(lake_root), spool_dir, bridge_id="lander", tz=tz)
    while True:
        try:
            cmd = conn.recv()
        except (EOFError, OSError):  # the bridge is gone: its segments stay spooled, the next start lands them
            return
        if cmd[0] == "stop":
            conn.send(("stopped",))
            return
        seg = cmd[1]
        try:
            rows0, dead0 = w.landed_rows, w.dead_rows_written
            keys = w._land(seg)
            conn.send(("done", seg, keys, w.landed_rows - rows0, w.dead_rows_written - dead0))
        except Exception as e:  # noqa: BLE001 - reported; the segment stays spooled
            conn.send(("failed", seg, f"{type(e).__name__}: {e}"))


class LandingProcess:
    """Lands closed spool segments in a child process, off the bridge's GIL (the spool -> Parquet -> landing
    zone and dead letters -> Delta work of a segment held the GIL for tens of ms every flush, while the processing
    thread was scoring). Same files, same idempotency: a segment not confirmed landed stays in the spool and is
    landed by :meth:`LandingWriter.recover` at the next start; if the child dies, segments go back to the
    calling thread."""

    def __init__(self, writer: LandingWriter, landing: str, lake_root: str, on_landed=None):
        import multiprocessing as mp

        self.writer = writer
        self.on_landed = on_landed  # callback(seg, keys, rows, dead_rows, seconds), e.g. metrics
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(
            target=_lander_main,
            args=(child, str(writer.spool_dir), landing, lake_root, writer.tz),
            name="bridge-lander",
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._pending: dict[str, float] = {}
        self._cv = threading.Condition()
        self._alive = True
        self.failures: list[tuple[str, str]] = []
        self._reader = threading.Thread(target=self._read, name="bridge-lander-reader", daemon=True)
        self._reader.start()

    def submit(self, seg: str) -> bool:
        """Hand a closed segment to the child; False if it is not running (land it here instead)."""
        with self._cv:
            if not self._alive:
                return False
            self._pending[seg] = time.monotonic()
            try:
                self._conn.send(("land", seg))
            except (OSError, ValueError):
                self._pending.pop(seg, None)
                self._alive = False
                return False
        return True

    def pending(self) -> int:
        with self._cv:
            return len(self._pending)

    def wait(self, timeout: float = 60.0) -> bool:
        """Until every submitted segment is landed (True) or ``timeout`` passes."""
        end = time.monotonic() + timeout
        with self._cv:
            while self._pending and self._alive and (left := end - time.monotonic()) > 0:
                self._cv.wait(left)
            return not self._pending

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "stopped":
                break
            seg = msg[1]
            with self._cv:
                t0 = self._pending.pop(seg, time.monotonic())
                self._cv.notify_all()
            if msg[0] == "done":
                _, _, keys, rows, dead_rows = msg
                self.writer._landed_elsewhere(seg, keys, rows, dead_rows)
                if self.on_landed is not None:
                    self.on_landed(seg, keys, rows, dead_rows, time.monotonic() - t0)
            else:
                self.failures.append((seg, msg[2]))
        with self._cv:
            self._alive = False
            left = list(self._pending)
            self._pending.clear()
            self._cv.notify_all()
        for seg in left:  # the child died with segments in hand: they are still spooled, land them here
            try:
                self.writer._land(seg)
            except Exception:  # noqa: BLE001 - stays spooled; recover() at the next start
                pass

    def close(self, timeout: float = 60.0) -> bool:
        ok = self.wait(timeout)
        with self._cv:
            alive = self._alive
        if alive:
            try:
                self._conn.send(("stop",))
            except (OSError, ValueError):
                pass
        self._reader.join(10)
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
        self._conn.close()
        return ok
