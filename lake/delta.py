"""Delta Lake storage for gridlake tables: a local folder or an s3:// prefix.

One writer for every table: it conforms the frame to the table's declared schema (contracts),
replaces exactly one partition atomically (Delta ``replaceWhere`` via ``predicate``), retries on a
concurrent-commit conflict, and returns what it wrote.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl
import pyarrow as pa
from deltalake import ColumnProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from contracts import Table

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_BATCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")

#: one writer setting for every table (and for the benchmark's bare copy). The lineage row number
#: is unique per file and increasing: delta-encoded without a dictionary attempt (measured: the
#: silver write 0.089 -> 0.082 s CPU per 480k rows; the other columns keep the defaults).
WRITER_PROPERTIES = WriterProperties(
    compression="SNAPPY",
    column_properties={"source_row": ColumnProperties(dictionary_enabled=False, encoding="DELTA_BINARY_PACKED")},
)


def s3_storage_options_from_env() -> dict[str, str]:
    """Storage options for delta-rs from the standard AWS_* environment variables (never from code)."""
    opts: dict[str, str] = {}
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL"):
        if os.environ.get(k):
            opts[k] = os.environ[k]
    opts.setdefault("AWS_REGION", "us-east-1")
    endpoint = opts.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        opts["AWS_ALLOW_HTTP"] = "true"
    # Commit coordination: every commit file is created with a conditional PUT (If-None-Match: *), so of two
    # writers racing for version N exactly one wins and the other retries on top of it (write_partition). This is
    # delta-rs 1.x's documented mechanism for S3 (its DynamoDB log store was removed in 1.0; AWS S3 has had
    # conditional writes since 2024-08, MinIO, R2 and moto 5.x have them too). Set here explicitly, not left to
    # a default: tests/lake/test_concurrent_writers.py checks it on moto, in processes racing for one table.
    opts["AWS_CONDITIONAL_PUT"] = "etag"
    return opts


@dataclass(frozen=True)
class WriteResult:
    table: str
    uri: str
    version: int
    rows: int
    partition: str | None


class Lake:
    """The lake root holding one Delta table per declared table name."""

    def __init__(self, root: str | os.PathLike, storage_options: dict[str, str] | None = None):
        root = str(root)
        if root.startswith("s3://"):
            self.root = root.rstrip("/")
            self.storage_options = storage_options if storage_options is not None else s3_storage_options_from_env()
        elif "://" in root:
            raise ValueError(f"unsupported lake URI {root!r}: use a local path or s3://bucket/prefix")
        else:
            self.root = str(Path(root).resolve())
            Path(self.root).mkdir(parents=True, exist_ok=True)
            self.storage_options = storage_options
        self.is_s3 = self.root.startswith("s3://")

    def uri(self, table: Table | str) -> str:
        name = table if isinstance(table, str) else table.name
        if not _NAME_RE.match(name):
            raise ValueError(f"bad table name {name!r}")
        return f"{self.root}/{name}"

    def exists(self, table: Table | str) -> bool:
        try:
            DeltaTable(self.uri(table), storage_options=self.storage_options)
            return True
        except TableNotFoundError:
            return False

    def delta(self, table: Table | str) -> DeltaTable:
        return DeltaTable(self.uri(table), storage_options=self.storage_options)

    # ------------------------------------------------------------------ writing
    def write_partition(
        self, table: Table, df: pl.DataFrame | Iterable[pl.DataFrame], partition: dt.date | None, *, retries: int = 5
    ) -> WriteResult:
        """Replace exactly the rows of one partition (or the whole table if it is unpartitioned).

        Every row of ``df`` must belong to ``partition``: a row that does not is a bug upstream,
        and the write refuses it rather than spilling into another partition.

        ``df`` may also be an iterable of frames (e.g. a lake.spill.SpilledFrame): they are conformed
        and streamed into the same single commit one at a time, so the write holds one piece, not the
        partition (the iterable is iterated again if the commit has to be retried).
        """
        predicate = None
        col = None
        if table.partition_by:
            if partition is None:
                raise ValueError(f"{table.name} is partitioned by {table.partition_by}; give a partition")
            if not isinstance(partition, dt.date):
                raise TypeError(f"partition must be a date, got {partition!r}")
            col = table.partition_by[0]
            predicate = f"{col} = '{partition.isoformat()}'"  # isoformat of a date: no injection possible

        def conform(piece: pl.DataFrame) -> pl.DataFrame:
            piece = table.conform(piece)
            if col is not None:
                stray = piece.filter(pl.col(col) != partition).height
                if stray:
                    raise ValueError(f"{table.name}: {stray} row(s) outside partition {col}={partition}")
            return piece

        if not isinstance(df, pl.DataFrame):
            return self._write_partition_streamed(table, df, partition, conform, retries=retries)
        data = conform(df)
        uri = self.uri(table)
        target = self._open_or_create(table)  # loaded once: the write and the version below reuse it
        for attempt in range(retries + 1):
            try:
                # the polars frame goes over the Arrow C stream as is (no copy); the table was
                # created with the declared Arrow schema, so nullability is enforced by Delta
                write_deltalake(
                    target,
                    data,
                    partition_by=list(table.partition_by) or None,
                    mode="overwrite",
                    predicate=predicate,
                    storage_options=self.storage_options,
                    writer_properties=WRITER_PROPERTIES,
                )
                break
            except CommitFailedError:
                if attempt == retries:
                    raise
                time.sleep(0.2 * (attempt + 1))
                target = self.delta(table)  # another writer committed: retry on its version
        version = target.version()  # the written table object is updated in place by the commit
        return WriteResult(table.name, uri, version, data.height, partition.isoformat() if partition else None)

    #: rows per data file of a streamed partition write (a file is written piece by piece, never held)
    STREAMED_FILE_ROWS = 8_000_000

    def _write_partition_streamed(
        self, table: Table, pieces: Iterable[pl.DataFrame], partition: dt.date, conform, *, retries: int
    ) -> WriteResult:
        """One partition replaced in one commit from a stream of frames, in bounded memory.

        ``write_deltalake`` given a stream reads it ahead of its Parquet encoder into an unbounded
        buffer (measured: a 13 M-row stream peaked at 855 MB, 443 MB when the producer was slowed), so
        a spilled day would need memory for all its rows again. Here each piece is appended to a
        Parquet data file of the partition (pyarrow's writer, the table's writer settings: SNAPPY,
        source_row delta-encoded) as it arrives, and the files are committed together by one Delta
        transaction (``create_write_transaction``, mode overwrite with the partition as filter: the
        replaceWhere of the in-memory path). Files of a killed write are never committed, so no reader
        sees them (delta ``vacuum`` removes them). Stats carry numRecords and nullCount (no min/max:
        the date partition is what readers prune by).
        """
        import uuid

        import pyarrow.parquet as pq
        from deltalake.transaction import AddAction

        if list(table.partition_by) != ["date"]:
            raise ValueError(f"{table.name}: a streamed write needs a table partitioned by date")
        arrow_schema = table.arrow_schema()
        file_schema = pa.schema([f for f in arrow_schema if f.name != "date"])
        part_dir = f"date={partition.isoformat()}"
        target = self._open_or_create(table)
        actions: list[AddAction] = []
        rows = 0
        state: dict = {}

        def close_file() -> None:
            if not state:
                return
            state["writer"].close()
            name, local = state["name"], state["local"]
            if self.is_s3:
                with open(local, "rb") as fh:
                    self.put_object(f"{table.name}/{part_dir}/{name}", fh)
                size = os.path.getsize(local)
                os.unlink(local)
            else:
                size = os.path.getsize(local)
            stats = {"numRecords": state["rows"], "nullCount": state["nulls"]}
            actions.append(
                AddAction(
                    f"{part_dir}/{name}",
                    size,
                    {"date": partition.isoformat()},
                    int(time.time() * 1000),
                    True,
                    json.dumps(stats),
                )
            )
            state.clear()

        for piece in pieces:
            piece = conform(piece)
            if piece.height == 0:
                continue
            if not state:
                name = f"part-{uuid.uuid4()}-c000.snappy.parquet"
                if self.is_s3:
                    import tempfile

                    local = os.path.join(tempfile.mkdtemp(prefix="gridlake-delta-"), name)
                else:
                    Path(self.uri(table), part_dir).mkdir(parents=True, exist_ok=True)
                    local = str(Path(self.uri(table), part_dir, name))
                writer = pq.ParquetWriter(
                    local,
                    file_schema,
                    compression="snappy",
                    use_dictionary=[f.name for f in file_schema if f.name != "source_row"],
                    column_encoding={"source_row": "DELTA_BINARY_PACKED"}
                    if "source_row" in file_schema.names
                    else None,
                )
                state.update(writer=writer, name=name, local=local, rows=0, nulls={f.name: 0 for f in file_schema})
            data = piece.drop("date").to_arrow().cast(file_schema)
            state["writer"].write_table(data)
            state["rows"] += data.num_rows
            for c in file_schema.names:
                state["nulls"][c] += data.column(c).null_count
            rows += data.num_rows
            del data, piece
            if state["rows"] >= self.STREAMED_FILE_ROWS:
                close_file()
        close_file()
        if not actions:  # nothing to add: the in-memory path replaces the partition by an empty frame
            return self.write_partition(table, pl.DataFrame(schema=table.polars_schema()), partition, retries=retries)
        before = target.version()
        for attempt in range(retries + 1):
            try:
                target.create_write_transaction(
                    actions,
                    mode="overwrite",
                    schema=arrow_schema,
                    partition_by=["date"],
                    partition_filters=[("date", "=", partition.isoformat())],
                )
                break
            except CommitFailedError:
                if attempt == retries:
                    raise
                time.sleep(0.2 * (attempt + 1))
                target = self.delta(table)  # another writer committed: the same files, committed on its version
        # the commit's own version (the manifest names it): the first commit after ``before`` adding our file
        version, marker = before + 1, json.dumps(actions[0].path)
        while True:
            text = self._commit_text(table, version)
            if text is None:
                raise RuntimeError(
                    f"{table.name}: committed {actions[0].path} but found no commit adding it after version {before}"
                )
            if marker in text:
                break
            version += 1
        return WriteResult(table.name, self.uri(table), version, rows, partition.isoformat())

    def create(self, table: Table) -> DeltaTable:
        """The table, created empty with its declared schema if it does not exist yet."""
        return self._open_or_create(table)

    def append(self, table: Table, df: pl.DataFrame, *, target: DeltaTable | None = None) -> WriteResult:
        """Append rows (one commit); used for append-only logs such as the day manifest.

        ``target``: the table already open (it is updated in place by the commit), to skip loading it.
        """
        data = table.conform(df)
        target = target if target is not None else self._open_or_create(table)
        write_deltalake(
            target,
            data,
            partition_by=list(table.partition_by) or None,
            mode="append",
            storage_options=self.storage_options,
            writer_properties=WRITER_PROPERTIES,
        )
        return WriteResult(table.name, self.uri(table), target.version(), data.height, None)

    def _commit_text(self, table: Table | str, version: int) -> str | None:
        """The JSON lines of one commit of the table's log, None if that commit file does not exist."""
        rel = f"_delta_log/{int(version):020d}.json"
        try:
            if self.is_s3:
                bucket, _, prefix = self.uri(table)[len("s3://") :].partition("/")
                return self._s3().get_object(Bucket=bucket, Key=f"{prefix}/{rel}")["Body"].read().decode()
            return (Path(self.uri(table)) / rel).read_text()
        except FileNotFoundError:
            return None
        except Exception as e:  # S3 NoSuchKey
            if "NoSuchKey" in type(e).__name__ or "NoSuchKey" in str(e):
                return None
            raise

    def commit_partitions(self, table: Table | str, version: int) -> set[dt.date] | None:
        """The ``date`` partitions whose data one commit of the table changed (from its log entry).

        None if the commit file no longer exists (log cleanup after a checkpoint). Only the
        ``date`` partition key is read: the day tables are partitioned by it.
        """
        text = self._commit_text(table, version)
        if text is None:
            return None
        days: set[dt.date] = set()
        for line in text.splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            for kind in ("add", "remove"):
                a = action.get(kind)
                if a and a.get("dataChange", True):
                    value = (a.get("partitionValues") or {}).get("date")
                    if value:
                        days.add(dt.date.fromisoformat(value))
        return days

    def replace_batch(
        self, table: Table, df: pl.DataFrame, column: str, value: str, *, retries: int = 5
    ) -> WriteResult:
        """Replace the rows whose ``column`` equals ``value`` by ``df`` (all of which must carry it): an
        idempotent append for writers that may re-send a batch after a crash (the streaming bridge)."""
        if not _BATCH_RE.match(value):
            raise ValueError(f"batch id {value!r}: use [A-Za-z0-9._-], at most 128 characters")
        data = table.conform(df)
        if data.filter(pl.col(column) != value).height:
            raise ValueError(f"{table.name}: rows with {column} other than {value!r}")
        target = self._open_or_create(table)
        for attempt in range(retries + 1):
            try:
                write_deltalake(
                    target,
                    data,
                    partition_by=list(table.partition_by) or None,
                    mode="overwrite",
                    predicate=f"{table.column(column).name} = '{value}'",  # value checked above: no quoting possible
                    storage_options=self.storage_options,
                    writer_properties=WRITER_PROPERTIES,
                )
                break
            except CommitFailedError:
                if attempt == retries:
                    raise
                time.sleep(0.2 * (attempt + 1))
                target = self.delta(table)
        return WriteResult(table.name, self.uri(table), target.version(), data.height, None)

    def _open_or_create(self, table: Table) -> DeltaTable:
        try:
            return self.delta(table)
        except TableNotFoundError:
            pass
        try:
            DeltaTable.create(
                self.uri(table),
                schema=table.arrow_schema(),
                partition_by=list(table.partition_by) or None,
                name=table.name,
                description=table.description[:500] or None,
                storage_options=self.storage_options,
            )
        except Exception:  # a concurrent writer created it first: fine if it now exists
            if not self.exists(table):
                raise
        return self.delta(table)

    # ------------------------------------------------------------------ raw objects
    def _s3(self):
        import boto3

        opts = self.storage_options or {}
        return boto3.client(
            "s3",
            endpoint_url=opts.get("AWS_ENDPOINT_URL"),
            region_name=opts.get("AWS_REGION"),
            aws_access_key_id=opts.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=opts.get("AWS_SECRET_ACCESS_KEY"),
        )

    def object_path(self, relpath: str) -> str:
        """The URI of a raw object (e.g. an archived landing file) under the lake root."""
        from lake.landing import check_key

        return f"{self.root}/{check_key(relpath)}"

    def put_object(self, relpath: str, data: bytes | BinaryIO) -> str:
        """Store bytes (or a binary stream, copied in pieces) unchanged under the lake root (local file or
        S3 object); returns the URI."""
        uri = self.object_path(relpath)
        if self.is_s3:
            bucket, _, key = uri[len("s3://") :].partition("/")
            if isinstance(data, bytes):
                self._s3().put_object(Bucket=bucket, Key=key, Body=data)
            else:
                self._s3().upload_fileobj(data, bucket, key)
        else:
            p = Path(uri)
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(p.name + ".tmp")
            if isinstance(data, bytes):
                tmp.write_bytes(data)
            else:
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(data, out, 8 << 20)
            tmp.replace(p)
        return uri

    def get_object(self, relpath: str) -> bytes:
        uri = self.object_path(relpath)
        if self.is_s3:
            bucket, _, key = uri[len("s3://") :].partition("/")
            return self._s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        return Path(uri).read_bytes()

    # ------------------------------------------------------------------ reading
    # The day tables of ingestion (bronze index, silver, quarantine) are read *as published*
    # (lake.manifest): a day shows up only once its manifest row names it, and a day being
    # re-written keeps showing its previous publication. ``published=False`` reads the table as it
    # stands (diagnostics, tests of the writer). Other tables are always read as they stand.
    def scan(self, table: Table | str, *, published: bool = True, days: set[dt.date] | None = None) -> pl.LazyFrame:
        """A lazy frame of the table (a day table as published, restricted to ``days`` if given)."""
        lf = self._lazy(table, published, days)
        return lf if lf is not None else pl.scan_delta(self.uri(table), storage_options=self.storage_options)

    def _lazy(self, table: Table | str, published: bool, days: set[dt.date] | None) -> pl.LazyFrame | None:
        """The lazy frame, or None if the table does not exist (one Delta log load either way)."""
        if published:
            from lake.manifest import day_table_role, plan

            if day_table_role(table) is not None:
                p = plan(self, table, days)
                return p.scan(self) if p.pinned is not None else None
        try:
            return pl.scan_delta(self.delta(table))
        except TableNotFoundError:
            return None

    def scan_days(self, table: Table | str, days, *, published: bool = True) -> pl.LazyFrame:
        """Lazy rows of ``days`` of a date-partitioned table, from one read plan for all of them (a backfill
        range filters it per day: one Delta log load and manifest read per table, not one per day).
        An absent table raises a clear error, as :meth:`read` does."""
        days = sorted(set(days))
        lf = self._lazy(table, published, set(days))
        if lf is None:
            raise FileNotFoundError(f"Delta table {self.uri(table)} does not exist yet: materialise its producer first")
        return lf.filter(pl.col("date").is_in(days))

    def read_days(
        self, table: Table, lo: dt.date, hi: dt.date, columns: list[str] | None = None, *, published: bool = True
    ) -> pl.DataFrame:
        """Rows of a date-partitioned table with ``lo <= date <= hi``.

        An absent table reads as an empty frame with the declared schema (callers that must
        tell "absent" from "no rows" check :meth:`exists` first).
        """
        if not table.partition_by or table.partition_by[0] != "date":
            raise ValueError(f"{table.name} is not partitioned by date (partition_by={table.partition_by})")
        span = {lo + dt.timedelta(days=i) for i in range((hi - lo).days + 1)} if hi >= lo else set()
        lf = self._lazy(table, published, span)
        if lf is None:
            return pl.DataFrame(schema=table.polars_schema()).select(columns or table.column_names)
        lf = lf.filter(pl.col("date").is_between(lo, hi))
        return (lf.select(columns) if columns else lf).collect()

    def read(
        self,
        table: Table | str,
        partition: dt.date | None = None,
        columns: list[str] | None = None,
        *,
        published: bool = True,
    ) -> pl.DataFrame:
        """Read a table (optionally one partition) into polars; an absent table raises a clear error."""
        tbl = table if isinstance(table, Table) else None
        col = tbl.partition_by[0] if tbl and tbl.partition_by else "date"
        lf = self._lazy(table, published, {partition} if partition is not None and col == "date" else None)
        if lf is None:
            raise FileNotFoundError(f"Delta table {self.uri(table)} does not exist yet: materialise its producer first")
        if partition is not None:
            lf = lf.filter(pl.col(col) == partition)
        if columns is not None:
            lf = lf.select(columns)
        return lf.collect()
