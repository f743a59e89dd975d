"""Bounded memory for one day's rows: hold them up to a budget, spill the rest to temporary Parquet
buckets keyed by entity, and hand them back one bucket at a time, in arrival order.

Ingestion deduplicates a day on (entity, time) and flags each reading against its own entity's
average, so every step after validation needs all of one entity's rows of the day together, and
nothing else. :class:`BucketSpill` keeps the validated frames in memory while they fit the budget
(the usual day: nothing is written, the caller gets the frames back as they were); once they exceed
half of it, every held frame is split by ``key % buckets`` (the key is the entity's integer index in the
reference table, so this is a perfect hash of the entity) and appended to that bucket's temporary
Parquet files. :meth:`BucketSpill.buckets` then yields each bucket's rows in arrival order; a
bucket larger than a quarter of the budget is yielded in parts by a second split of the key, so
one part and its deduplicated, flagged copy stay within half of it. (One entity's rows of a day are
never split: a single meter beyond the budget is the limit of this design.) :class:`SpilledFrame` is a day's result written the same way (one
Parquet file a bucket) that a Delta write streams from (lake.delta.Lake.write_partition).

The budget: ``GRIDLAKE_INGEST_MEMORY_MB`` (default 512) MB for a day's rows after validation
(polars' estimated size): at most half of it held, parts of at most a quarter processed. Reading and
validating a chunk comes on top (lake.readers: about ten times ``GRIDLAKE_INGEST_CHUNK_BYTES``).
Temporary files go under ``GRIDLAKE_SPILL_DIR`` (default: the system's temporary folder) and are
removed when the day is written (or its ingestion fails).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

MEMORY_ENV = "GRIDLAKE_INGEST_MEMORY_MB"
DEFAULT_MEMORY_MB = 512
SPILL_DIR_ENV = "GRIDLAKE_SPILL_DIR"
#: buckets of the first split: enough that one bucket of a 10x-budget day is under half the budget
BUCKETS = 32
_SPILL_PARQUET = {"compression": "lz4", "statistics": False}


def memory_budget_bytes() -> int:
    """The budget for a day's held rows, from ``GRIDLAKE_INGEST_MEMORY_MB`` (a positive whole number of MB)."""
    raw = os.environ.get(MEMORY_ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MEMORY_MB << 20
    try:
        mb = int(raw)
    except ValueError:
        raise ValueError(f"{MEMORY_ENV}={raw!r}: expected a whole number of megabytes, e.g. 512") from None
    if mb <= 0:
        raise ValueError(f"{MEMORY_ENV}={raw!r}: the budget must be positive")
    return mb << 20


class SpillDir:
    """A temporary folder for one day's spilled rows (created on first use, removed by :meth:`close`)."""

    def __init__(self, prefix: str = "gridlake-spill-"):
        self.prefix, self._path = prefix, None

    @property
    def path(self) -> Path:
        if self._path is None:
            base = os.environ.get(SPILL_DIR_ENV) or None
            if base:
                Path(base).mkdir(parents=True, exist_ok=True)
            self._path = Path(tempfile.mkdtemp(prefix=self.prefix, dir=base))
        return self._path

    def close(self) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None


class BucketSpill:
    """Frames of one day held in memory up to ``budget`` bytes, spilled by ``key % buckets`` beyond it."""

    def __init__(self, key: str, budget: int, spill_dir: SpillDir, *, buckets: int = BUCKETS):
        if budget <= 0:
            raise ValueError("the memory budget must be positive")
        self.key, self.budget, self.dir, self.n = key, budget, spill_dir, buckets
        self.held: list[pl.DataFrame] = []
        self.held_bytes = 0
        self.rows = 0
        self._files: dict[int, list[tuple[Path, int]]] = {}  # bucket -> [(file, estimated bytes)]
        self._flushes = 0

    @property
    def spilled(self) -> bool:
        return self._flushes > 0

    def add(self, df: pl.DataFrame) -> None:
        if df.height == 0:
            return
        self.held.append(df)
        self.held_bytes += df.estimated_size()
        self.rows += df.height
        if self.held_bytes > self.budget // 2:
            self._flush()

    def _flush(self) -> None:
        """Append the held rows to their buckets' files, one bucket at a time (a copy of one bucket,
        not of all the held rows, is the extra memory), and let them go."""
        if not self.held:
            return
        df = pl.concat(self.held, how="vertical_relaxed", rechunk=False)
        self.held, self.held_bytes = [], 0
        bucket = (df[self.key] % self.n).to_numpy()
        for b in np.unique(bucket):
            part = df.filter(bucket == b)
            path = self.dir.path / f"b{b:03d}-{self._flushes:06d}.parquet"
            part.write_parquet(path, **_SPILL_PARQUET)
            self._files.setdefault(int(b), []).append((path, part.estimated_size()))
            del part
        self._flushes += 1

    def buckets(self) -> Iterator[pl.DataFrame]:
        """Every row once: the held frames as one frame if nothing was spilled, else one frame per
        bucket (or part of a bucket), each in arrival order and holding all rows of its keys."""
        if not self.spilled:
            if self.held:
                yield (
                    pl.concat(self.held, how="vertical_relaxed", rechunk=False) if len(self.held) > 1 else self.held[0]
                )
            self.held, self.held_bytes = [], 0
            return
        self._flush()
        part_budget = max(1, self.budget // 4)  # deduplicating and flagging a part takes about twice its size
        for b in sorted(self._files):
            files = self._files.pop(b)  # the flush number in the name keeps arrival order
            size = sum(s for _, s in files)
            paths = [str(p) for p, _ in files]
            k = math.ceil(size / part_budget)
            if k <= 1:
                yield pl.read_parquet(paths)
            else:  # a bucket too large for one pass: its keys split again, each part read on its own
                lf = pl.scan_parquet(paths)
                for j in range(k):
                    yield lf.filter((pl.col(self.key) // self.n) % k == j).collect()
            for p in paths:
                Path(p).unlink(missing_ok=True)


class SpilledFrame:
    """A frame written to Parquet files one piece at a time; iterating it reads the pieces back (again on
    every iteration, so a write that retries can stream it anew). ``height`` is its row count."""

    def __init__(self, spill_dir: SpillDir, name: str):
        self.dir, self.name = spill_dir, name
        self.paths: list[Path] = []
        self.height = 0

    def append(self, df: pl.DataFrame) -> None:
        if df.height == 0:
            return
        path = self.dir.path / f"{self.name}-{len(self.paths):05d}.parquet"
        df.write_parquet(path, **_SPILL_PARQUET)
        self.paths.append(path)
        self.height += df.height

    def __iter__(self) -> Iterator[pl.DataFrame]:
        for p in self.paths:
            yield pl.read_parquet(p)

    def collect(self) -> pl.DataFrame:
        """The whole frame in memory (tests, small days)."""
        return pl.read_parquet([str(p) for p in self.paths]) if self.paths else pl.DataFrame()

    def close(self) -> None:
        self.dir.close()


class HeldFrame:
    """Frames held in memory up to ``budget`` bytes (polars' estimate), then written out as the pieces of a
    :class:`SpilledFrame`: a day's quarantine, which for a mostly-rejected file is as large as the file
    (issue 9: a 2 GB landing file of bad rows). ``finish`` (a frame -> frame function) is applied to every
    piece as it is written and to the held frame at the end (the partition's ``date``/``ingested_at``).
    """

    def __init__(self, spill_dir: SpillDir, name: str, budget: int, *, start: pl.DataFrame | None = None, finish=None):
        if budget <= 0:
            raise ValueError("the memory budget must be positive")
        self.budget, self.finish = budget, finish or (lambda df: df)
        self.start = start  # an empty frame with every column: each piece gets them all
        self.held: list[pl.DataFrame] = []
        self.held_bytes = 0
        self.spilled = SpilledFrame(spill_dir, name)

    @property
    def height(self) -> int:
        return self.spilled.height + sum(df.height for df in self.held)

    def _concat(self) -> pl.DataFrame:
        parts = ([self.start] if self.start is not None else []) + self.held
        return pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]

    def add(self, df: pl.DataFrame) -> None:
        if df.height == 0:
            return
        self.held.append(df)
        self.held_bytes += df.estimated_size()
        if self.held_bytes > self.budget:
            self.spilled.append(self.finish(self._concat()))
            self.held, self.held_bytes = [], 0

    def result(self) -> pl.DataFrame | SpilledFrame:
        """The held rows as one frame if nothing was spilled, else the :class:`SpilledFrame` (the rest
        written as its last piece)."""
        if self.spilled.height == 0:
            return self.finish(self._concat() if self.held or self.start is not None else pl.DataFrame())
        if self.held:
            self.spilled.append(self.finish(self._concat()))
            self.held, self.held_bytes = [], 0
        return self.spilled
