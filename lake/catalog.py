"""The DuckDB catalog that analysts and BI tools open: one view per Delta table of the lake.

``refresh_catalog(lake, "warehouse/gridlake.duckdb")`` writes, into one DuckDB database file,

- a view per existing Delta table (``silver_meter_readings``, ``gold_load_daily``, ...) defined as
  ``SELECT * FROM delta_scan('<table uri>')``: the view stores no data, every query reads the
  table's *current* Delta snapshot, so a replaced partition shows up without copying anything;
- except for the day tables of ingestion (``bronze_*_files``, ``silver_*``, ``quarantine_*``), whose
  views show *published* days only (lake.manifest): they read the Delta version current at refresh
  (``delta_scan(..., version => n)``) minus days not published yet, plus, for a day being
  re-written, its previous publication by time travel. A day published after the refresh shows
  up at the next refresh (the ``refresh_catalog`` job runs after every ingestion);
- ``ingest_manifest_<source>``: every day publication (versions, counts, run, time);
- ``catalog_tables``: one row per declared column (table, layer, column, type, description, key and
  partition membership, bounds, allowed values) plus per-table status (view present, row count and
  Delta version at refresh time), built from ``contracts`` so nothing is typed twice;
- ``catalog_meta``: the lake root the views point to and when the catalog was refreshed.

Concurrency (why the file is swapped, not edited in place)
DuckDB lets one process open a file read-write, and only while *no other process* has it open at
all: a BI tool holding a read-only connection would block every refresh. ``refresh_catalog``
therefore copies the current catalog to a temporary file next to it, updates the copy, closes it
and atomically renames it over the old file (``os.replace``). Readers keep reading the file they
opened; every connection opened after the rename sees the new views. Concurrent refreshes are
serialised by an advisory lock on ``<catalog>.lock``. A process that holds the catalog open
*read-write* makes the refresh stop with ``CatalogLockedError`` instead of losing that process's
writes. The catalog is generated: keep your own tables and views in your own database and
``ATTACH`` this one read-only.

Extensions offline
The delta (and, for S3, httpfs) extensions come from the ``duckdb-extension-delta`` /
``duckdb-extension-httpfs`` wheels pinned with duckdb 1.5.5; ``_load_extensions`` installs them
from the file inside the installed package (its path is looked up, never hard-coded) and disables
DuckDB's automatic downloads, which cannot work here and would only slow the failure down.

S3 credentials
For an ``s3://`` lake each connection creates a *temporary* DuckDB secret (``CREATE SECRET``, not
``PERSISTENT``) from the standard ``AWS_*`` environment variables. Nothing secret is written to the
catalog file or to ``~/.duckdb/stored_secrets``; every reader needs the same environment, and
``connect`` creates the secret for it because the catalog records the lake root.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib.util
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from contracts import TABLES, Table
from lake.delta import Lake
from lake.manifest import ReadPlan, day_table_role, plan

#: layers that get views by default, in the order they are listed
DEFAULT_LAYERS = ("reference", "silver", "quarantine", "gold", "truth", "bronze", "manifest")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
#: characters never accepted in a table URI that ends up inside a SQL string literal
_URI_FORBIDDEN = re.compile(r"['\";\\\x00-\x1f\x7f]")
#: tables the catalog owns besides the views
_META_TABLES = ("catalog_tables", "catalog_meta")


class CatalogLockedError(RuntimeError):
    """The catalog file is held read-write by another connection or process."""


# ----------------------------------------------------------------------------- SQL safety


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe SQL identifier for a view (``^[a-z][a-z0-9_]*$``)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"refusing table name {name!r}: view names must match ^[a-z][a-z0-9_]*$")
    if name in _META_TABLES:
        raise ValueError(f"refusing table name {name!r}: reserved for the catalog itself")
    return name


def sql_literal_uri(uri: str) -> str:
    """``uri`` as a single-quoted SQL literal, after validating it.

    Accepted: an absolute local path or an ``s3://bucket/...`` URI, without quotes, semicolons,
    backslashes or control characters (newlines). Quotes would be doubled anyway; refusing them
    keeps a hostile lake root from reaching DuckDB at all.
    """
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"refusing table URI {uri!r}: empty")
    bad = _URI_FORBIDDEN.search(uri)
    if bad:
        raise ValueError(f"refusing table URI {uri!r}: it contains the forbidden character {bad.group()!r}")
    if uri.startswith("s3://"):
        if not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/|$)", uri):
            raise ValueError(f"refusing table URI {uri!r}: not a valid s3://bucket/prefix")
    elif "://" in uri or not os.path.isabs(uri):
        raise ValueError(f"refusing table URI {uri!r}: use an absolute local path or s3://bucket/prefix")
    return "'" + uri.replace("'", "''") + "'"


def _sql_string(value: str, what: str) -> str:
    """A configuration value (e.g. from the environment) as a SQL string literal."""
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError(f"{what} contains control characters; refusing to pass it to DuckDB")
    return "'" + value.replace("'", "''") + "'"


# ----------------------------------------------------------------------------- connections


def _extension_file(name: str) -> Path:
    """The extension binary shipped in the ``duckdb-extension-<name>`` wheel for this duckdb."""
    package = f"duckdb_extension_{name}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"DuckDB extension {name!r} is not installed: pip install duckdb-extension-{name}=={duckdb.__version__}"
        )
    path = (
        Path(next(iter(spec.submodule_search_locations)))
        / "extensions"
        / f"v{duckdb.__version__}"
        / f"{name}.duckdb_extension"
    )
    if not path.is_file():
        raise RuntimeError(
            f"{package} has no build for duckdb {duckdb.__version__} (looked for {path}); "
            f"pin duckdb-extension-{name}=={duckdb.__version__}"
        )
    return path


def _load_extensions(con: duckdb.DuckDBPyConnection, s3: bool) -> None:
    """LOAD delta (and httpfs for S3), installing from the wheel's file when not installed yet."""
    con.execute("SET autoinstall_known_extensions = false")
    for name in ("httpfs", "delta") if s3 else ("delta",):
        try:
            con.execute(f"LOAD {name}")
        except duckdb.Error:
            con.execute(f"INSTALL {sql_literal_uri(str(_extension_file(name)))}")
            con.execute(f"LOAD {name}")


def _create_s3_secret(con: duckdb.DuckDBPyConnection, lake_root: str) -> None:
    """A temporary DuckDB S3 secret from AWS_* environment variables, scoped to the lake's bucket."""
    env = os.environ
    missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not env.get(k)]
    if missing:
        raise RuntimeError(f"lake {lake_root} is on S3 but the environment lacks {missing}")
    bucket = urlparse(lake_root).netloc
    opts = {
        "TYPE": "s3",
        "KEY_ID": _sql_string(env["AWS_ACCESS_KEY_ID"], "AWS_ACCESS_KEY_ID"),
        "SECRET": _sql_string(env["AWS_SECRET_ACCESS_KEY"], "AWS_SECRET_ACCESS_KEY"),
        "REGION": _sql_string(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1", "AWS_REGION"),
        "SCOPE": sql_literal_uri(f"s3://{bucket}"),
    }
    if env.get("AWS_SESSION_TOKEN"):
        opts["SESSION_TOKEN"] = _sql_string(env["AWS_SESSION_TOKEN"], "AWS_SESSION_TOKEN")
    endpoint = env.get("AWS_ENDPOINT_URL")
    if endpoint:
        u = urlparse(endpoint)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValueError(f"AWS_ENDPOINT_URL must look like http(s)://host[:port], got {endpoint!r}")
        opts["ENDPOINT"] = _sql_string(u.netloc, "AWS_ENDPOINT_URL")
        opts["URL_STYLE"] = "'path'"  # moto / MinIO style endpoints serve buckets as paths
        opts["USE_SSL"] = "true" if u.scheme == "https" else "false"
    body = ", ".join(f"{k} {v}" for k, v in opts.items())
    con.execute(f"CREATE OR REPLACE TEMPORARY SECRET gridlake_s3 ({body})")


def _is_lock_error(e: Exception) -> bool:
    # "Could not set lock on file ... Conflicting lock is held in <process> (PID n)" from another
    # process; "different configuration" when this process already holds it in the other mode
    msg = str(e).lower()
    return "could not set lock" in msg or "conflicting lock" in msg or "different configuration" in msg


def _open(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as e:
        if _is_lock_error(e):
            mode = "read-only" if read_only else "read-write"
            raise CatalogLockedError(
                f"DuckDB catalog {path} cannot be opened {mode}: another connection holds it "
                f"{'read-write' if read_only else 'open'} ({e}). Readers should use read_only=True; "
                "refresh_catalog swaps the file atomically and never needs this lock."
            ) from e
        raise


def _catalog_lake_root(con: duckdb.DuckDBPyConnection) -> str | None:
    have = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND table_name = 'catalog_meta'"
    ).fetchone()[0]
    if not have:
        return None
    row = con.execute("SELECT value FROM catalog_meta WHERE key = 'lake_root'").fetchone()
    return row[0] if row else None


def _prepare(con: duckdb.DuckDBPyConnection, lake_root: str | None) -> None:
    s3 = bool(lake_root and lake_root.startswith("s3://"))
    _load_extensions(con, s3)
    con.execute("SET TimeZone = 'UTC'")  # lake timestamps are UTC; show them so
    if s3:
        _create_s3_secret(con, lake_root)  # type: ignore[arg-type]


def connect(catalog_path: str | os.PathLike, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to the catalog with delta loaded (and an S3 secret for an S3 lake).

    Close it when done (``with connect(p, read_only=True) as con:``). Note that DuckDB shares one
    database instance per file within a process: while any connection to the catalog is open in
    this process, new connections reuse it and do not see a refresh made since.
    """
    path = Path(catalog_path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"DuckDB catalog {path} does not exist yet: run lake.catalog.refresh_catalog first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only)
    try:
        _prepare(con, _catalog_lake_root(con))
    except BaseException:
        con.close()
        raise
    return con


def query(catalog_path: str | os.PathLike, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
    """Run one SQL query on the catalog (read-only connection) and return a Polars frame."""
    with connect(catalog_path, read_only=True) as con:
        return con.execute(sql, params).pl()


# ----------------------------------------------------------------------------- refresh


@contextlib.contextmanager
def _refresh_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """Serialise refreshes of one catalog file across processes (advisory flock on a sidecar)."""
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CatalogLockedError(
                        f"another refresh of {path} has held {lock_path} for more than {timeout_s:g} s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _delta_status(lake: Lake, table: Table) -> tuple[int | None, int | None]:
    """(row count, version) of a Delta table from its log alone: no data file is read."""
    dt_ = lake.delta(table)
    rows: int | None = None
    try:
        actions = pa.table(dt_.get_add_actions(flatten=True))
        if "num_records" in actions.column_names and actions["num_records"].null_count == 0:
            rows = int(pc.sum(actions["num_records"]).as_py() or 0)
    except Exception:  # statistics are optional in Delta; a missing count is not an error
        rows = None
    return rows, dt_.version()


def _declared_rows(
    tables: list[Table],
    con: duckdb.DuckDBPyConnection,
    status: dict[str, dict[str, Any]],
    lake: Lake,
    refreshed_at: dt.datetime,
) -> pl.DataFrame:
    rows = []
    for t in tables:
        types = con.from_arrow(t.arrow_schema().empty_table()).types  # DuckDB's own name for each type
        st = status[t.name]
        for pos, (c, typ) in enumerate(zip(t.columns, types), start=1):
            rows.append(
                {
                    "table_name": t.name,
                    "layer": t.layer,
                    "table_description": t.description,
                    "column_position": pos,
                    "column_name": c.name,
                    "column_type": str(typ),
                    "nullable": c.nullable,
                    "description": c.description,
                    "is_key": c.name in t.key,
                    "is_partition": c.name in t.partition_by,
                    "min_value": c.min,
                    "max_value": c.max,
                    "allowed_values": ", ".join(c.allowed) if c.allowed else None,
                    "view_available": st["available"],
                    "row_count": st["rows"],
                    "delta_version": st["version"],
                    "uri": lake.uri(t),
                    "refreshed_at": refreshed_at,
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "table_name": pl.Utf8,
            "layer": pl.Utf8,
            "table_description": pl.Utf8,
            "column_position": pl.Int32,
            "column_name": pl.Utf8,
            "column_type": pl.Utf8,
            "nullable": pl.Boolean,
            "description": pl.Utf8,
            "is_key": pl.Boolean,
            "is_partition": pl.Boolean,
            "min_value": pl.Float64,
            "max_value": pl.Float64,
            "allowed_values": pl.Utf8,
            "view_available": pl.Boolean,
            "row_count": pl.Int64,
            "delta_version": pl.Int64,
            "uri": pl.Utf8,
            "refreshed_at": pl.Datetime("us", "UTC"),
        },
    )


def refresh_catalog(
    lake: Lake,
    catalog_path: str | os.PathLike,
    tables: Iterable[Table] | None = None,
    *,
    layers: Iterable[str] = DEFAULT_LAYERS,
    lock_timeout_s: float = 30.0,
    snapshots: Mapping[str, pl.DataFrame] | None = None,
) -> dict[str, Any]:
    """Create or replace the views of ``tables`` (default: every declared table of ``layers``).

    ``snapshots``: tables that live outside the lake (e.g. the streaming bridge's PostgreSQL ``alerts``),
    copied into the catalog as DuckDB tables as of this refresh (name -> frame).

    Tables whose Delta table does not exist yet are skipped, and a view left over from an earlier
    refresh is dropped. Views of tables not selected this time are kept. Returns a JSON-ready
    summary: ``views`` created, ``skipped`` absent tables, ``row_counts`` and ``versions`` read
    from the Delta logs, the catalog path and the time taken.
    """
    t0 = time.perf_counter()
    path = Path(catalog_path).resolve()
    layers = tuple(layers)
    if tables is None:
        selected = [t for layer in layers for t in TABLES.values() if t.layer == layer]
    else:
        selected = list(tables)
    for t in selected:  # refuse anything hostile before touching a file
        check_name(t.name)
    snapshots = dict(snapshots or {})
    for name in snapshots:
        check_name(name)
    uris = {t.name: sql_literal_uri(lake.uri(t)) for t in selected}

    status: dict[str, dict[str, Any]] = {}
    plans: dict[str, ReadPlan] = {}
    for t in selected:
        if day_table_role(t) is not None:  # a day table: its view shows published days only
            p = plans[t.name] = plan(lake, t)
            if p.pinned is None:
                status[t.name] = {"available": False, "rows": None, "version": None}
            else:
                rows, _ = _delta_status(lake, t) if not (p.exclude or p.travel) else (None, None)
                status[t.name] = {
                    "available": True,
                    "rows": rows,
                    "version": p.pinned,
                    "unpublished_days": list(p.exclude),
                    "previous_publication_days": [d for _, d in p.travel],
                }
        elif lake.exists(t):
            rows, version = _delta_status(lake, t)
            status[t.name] = {"available": True, "rows": rows, "version": version}
        else:
            status[t.name] = {"available": False, "rows": None, "version": None}

    path.parent.mkdir(parents=True, exist_ok=True)
    refreshed_at = dt.datetime.now(dt.timezone.utc)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with _refresh_lock(path, lock_timeout_s):
        try:
            if path.exists():
                # a read-only open fails only if someone holds the file read-write: their writes
                # would be lost by the swap, so stop. While it is open no writer can start.
                with _open(path, read_only=True) as old:
                    previous_root = _catalog_lake_root(old)
                    shutil.copyfile(path, tmp)
                if previous_root not in (None, lake.root):
                    raise ValueError(
                        f"catalog {path} points at lake {previous_root}, not {lake.root}: use one catalog file per lake"
                    )
            with duckdb.connect(str(tmp)) as con:
                _prepare(con, lake.root)
                con.execute("CREATE TABLE IF NOT EXISTS catalog_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
                con.execute(
                    "INSERT OR REPLACE INTO catalog_meta VALUES ('lake_root', ?), ('refreshed_at', ?), ('duckdb_version', ?)",
                    [lake.root, refreshed_at.isoformat(), duckdb.__version__],
                )
                for t in selected:
                    if status[t.name]["available"]:
                        body = (
                            plans[t.name].sql(sql_literal_uri)
                            if t.name in plans
                            else f"SELECT * FROM delta_scan({uris[t.name]})"
                        )
                        con.execute(f'CREATE OR REPLACE VIEW "{t.name}" AS {body}')
                        if status[t.name]["rows"] is None and t.name in plans:  # some days excluded: count the view
                            status[t.name]["rows"] = con.execute(f'SELECT count(*) FROM "{t.name}"').fetchone()[0]
                        con.execute(f'COMMENT ON VIEW "{t.name}" IS {_sql_string(t.description, "description")}')
                    else:
                        con.execute(f'DROP VIEW IF EXISTS "{t.name}"')
                for name, frame in snapshots.items():
                    con.register("_snapshot", frame.to_arrow())
                    con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM _snapshot')
                    con.unregister("_snapshot")
                    # a snapshot not refreshed this time (its source unreachable) is kept; this says how old it is
                    con.execute(
                        "INSERT OR REPLACE INTO catalog_meta VALUES (?, ?)",
                        [f"snapshot_at:{name}", refreshed_at.isoformat()],
                    )
                decl = _declared_rows(selected, con, status, lake, refreshed_at)
                con.register("_decl", decl)
                con.execute("CREATE TABLE IF NOT EXISTS catalog_tables AS SELECT * FROM _decl LIMIT 0")
                con.execute("DELETE FROM catalog_tables WHERE table_name IN (SELECT DISTINCT table_name FROM _decl)")
                con.execute("INSERT INTO catalog_tables BY NAME SELECT * FROM _decl")
                con.unregister("_decl")
                con.execute("CHECKPOINT")
            os.replace(tmp, path)  # atomic: readers see the old or the new catalog, never a mix
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                leftover.unlink(missing_ok=True)

    return {
        "catalog": str(path),
        "lake": lake.root,
        "views": [t.name for t in selected if status[t.name]["available"]],
        "skipped": [t.name for t in selected if not status[t.name]["available"]],
        "row_counts": {n: s["rows"] for n, s in status.items() if s["available"]},
        "versions": {n: s["version"] for n, s in status.items() if s["available"]},
        "held_back": {
            n: {
                "unpublished_days": [d.isoformat() for d in s["unpublished_days"]],
                "previous_publication_days": [d.isoformat() for d in s["previous_publication_days"]],
            }
            for n, s in status.items()
            if s.get("unpublished_days") or s.get("previous_publication_days")
        },
        "snapshots": {n: f.height for n, f in snapshots.items()},
        "seconds": round(time.perf_counter() - t0, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m lake.catalog refresh LAKE CATALOG`` or ``python -m lake.catalog sql CATALOG "SELECT ..."``."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m lake.catalog", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("refresh", help="create/replace the views of every existing Delta table")
    r.add_argument("lake", help="lake root: a local folder or s3://bucket/prefix")
    r.add_argument("catalog", help="DuckDB file, e.g. warehouse/gridlake.duckdb")
    q = sub.add_parser("sql", help="run one read-only query and print the result")
    q.add_argument("catalog")
    q.add_argument("sql")
    v = sub.add_parser("reconcile", help="check that every published day reconciles (exit status 1 if one does not)")
    v.add_argument("lake", help="lake root: a local folder or s3://bucket/prefix")
    args = p.parse_args(argv)
    if args.cmd == "refresh":
        print(json.dumps(refresh_catalog(Lake(args.lake), args.catalog), indent=2))
    elif args.cmd == "reconcile":
        from lake.manifest import verify_report

        ok, report = verify_report(Lake(args.lake))
        print(report)
        return 0 if ok else 1
    else:
        with pl.Config(tbl_rows=50, tbl_cols=20):
            print(query(args.catalog, args.sql))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
