"""Day publication: a day's bronze index, silver and quarantine become visible together, or not at all.

Ingesting a day replaces its partition in three Delta tables, three commits that no Delta
transaction can span. The day is therefore *published* by a fourth, last commit: a row appended
to ``ingest_manifest_<source>`` (declared in contracts) naming the Delta version of each of
the three tables that holds the day, its counts and the run. Readers see a day exactly as its
newest manifest row names it:

- a day with no manifest row is invisible (a first ingestion killed half-way shows nothing);
- a published day whose partition was written again after its publication (a re-run in flight,
  or one killed before publishing) is read from the version the manifest names (Delta time
  travel), so readers keep seeing the previous publication, never a mixture;
- every other published day is read from one pinned snapshot of the table: in the steady state
  a read is one scan, as before.

:func:`plan` works this out per table (:class:`ReadPlan`); ``Lake.scan/read/read_days`` use it for
the three day tables, and lake.catalog turns it into the DuckDB view. Which commits are in flight
is known without any extra write: every version of a table that no manifest row names was written
by an unpublished ingestion, and its commit file says which day it touched.

Order of reading matters and is fixed here: the table's version is pinned *before* the manifest is
read, so a write that lands in between is either unpublished (hence time-travelled around) or
published (its manifest row is seen).

A lake whose manifest table does not exist predates publication: its tables are read as they are.
The writer creates the manifest table before the first data write, so a lake written by this
version of ingestion always has one.

:func:`verify` re-counts every published day from the tables as published and compares with the
manifest (``python -m lake.catalog reconcile LAKE``); the Dagster ``reconciles`` check calls
:func:`verify_day`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from contracts import SOURCES, Source, Table
from lake.delta import Lake, WriteResult

ROLES = ("bronze", "silver", "quarantine")


def day_table_role(table: Table | str) -> tuple[Source, str] | None:
    """(source, role) if ``table`` is one of the day tables a manifest publishes, else None."""
    name = table if isinstance(table, str) else table.name
    for src in SOURCES.values():
        for role, t in src.day_tables.items():
            if t.name == name:
                return src, role
    return None


# ----------------------------------------------------------------------------- writing


def ensure_manifest(lake: Lake, src: Source) -> DeltaTable:
    """The manifest table, created empty if absent: from then on unpublished days are invisible."""
    return lake.create(src.manifest)


#: the manifest is compacted when its snapshot has more files than this
COMPACT_ABOVE_FILES = 32


class Publisher:
    """Publishes the days of one source. Creating it creates the manifest table (so it must exist
    before the first data write); it keeps the table open across the days of a run, so a
    publication is one small append commit."""

    def __init__(self, lake: Lake, src: Source):
        self.lake, self.src = lake, src
        self.table = ensure_manifest(lake, src)

    def publish(
        self, day: dt.date, writes: dict[str, WriteResult], counts: dict[str, int], run_id: str, *, retries: int = 5
    ) -> dict:
        """Append the manifest row that makes ``day`` visible at the versions of ``writes`` (one commit)."""
        src = self.src
        missing = [r for r in ROLES if r not in writes]
        if missing:
            raise ValueError(f"{src.name} {day}: cannot publish without the {missing} write(s)")
        row = {
            "source": src.name,
            "date": day,
            "run_id": run_id,
            **{f"{r}_version": writes[r].version for r in ROLES},
            **{
                k: int(counts[k])
                for k in ("files", "bronze_records", "silver_rows", "quarantined_rows", "duplicate_rows")
            },
            "published_at": dt.datetime.now(dt.timezone.utc),
        }
        frame = pl.DataFrame([row])
        for attempt in range(retries + 1):
            try:
                self.lake.append(src.manifest, frame, target=self.table)
                break
            except CommitFailedError:
                if attempt == retries:
                    raise
                time.sleep(0.1 * (attempt + 1))
                self.table = self.lake.delta(src.manifest)  # another run published meanwhile: retry on its version
        if len(self.table.file_uris()) > COMPACT_ABOVE_FILES:
            # every reader reads the whole manifest: keep it a few files (measured: 1,000 one-row
            # files read in 194 ms, compacted 21 ms). A compaction changes no data (dataChange=false).
            try:
                self.table.optimize.compact()
            except CommitFailedError:  # another run published meanwhile: it, or the next day, compacts
                self.table = self.lake.delta(self.src.manifest)
        return row


def publish(
    lake: Lake, src: Source, day: dt.date, writes: dict[str, WriteResult], counts: dict[str, int], run_id: str
) -> dict:
    """One publication (see :class:`Publisher`)."""
    return Publisher(lake, src).publish(day, writes, counts, run_id)


#: test hook: ``GRIDLAKE_KILL_AT=<point>[@<YYYY-MM-DD>]`` makes the writing process SIGKILL itself
#: at that point of a day's write (after_bronze, after_quarantine, after_silver, before_manifest,
#: after_manifest), so tests can prove a kill anywhere leaves readers on the previous publication
KILL_POINTS = ("after_bronze", "after_quarantine", "after_silver", "before_manifest", "after_manifest")
KILL_ENV = "GRIDLAKE_KILL_AT"


def fault_point(point: str, src: Source, day: dt.date) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    want, _, on_day = spec.partition("@")
    if want not in KILL_POINTS:
        raise ValueError(f"{KILL_ENV}={spec!r}: the point must be one of {KILL_POINTS}")
    if want == point and (not on_day or on_day == day.isoformat()):
        os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------- reading


def publications(lake: Lake, src: Source) -> pl.DataFrame | None:
    """Every manifest row of ``src`` (all publications, oldest first); None if there is no manifest."""
    try:
        snapshot = lake.delta(src.manifest)
    except TableNotFoundError:
        return None
    return pl.scan_delta(snapshot).collect().sort("published_at")


def published(lake: Lake, src: Source) -> pl.DataFrame:
    """The manifest row in force for each published day of ``src`` (the newest), by date."""
    pubs = publications(lake, src)
    if pubs is None:
        return pl.DataFrame(schema=src.manifest.polars_schema())
    return pubs.group_by("date", maintain_order=True).last().sort("date")


@dataclass(frozen=True)
class ReadPlan:
    """How to read a day table so that every day is seen as published.

    ``pinned``: the snapshot most days are read from (None: the table does not exist);
    ``exclude``: days present in that snapshot that must not be read from it (never published, or
    written again since publication); ``travel``: (version, day) read by time travel instead.
    ``managed`` is False for a table no manifest governs (read as it stands).
    """

    table: Table
    uri: str
    pinned: int | None
    exclude: tuple[dt.date, ...] = ()
    travel: tuple[tuple[int, dt.date], ...] = ()
    managed: bool = True
    _snapshot: DeltaTable | None = field(default=None, compare=False, repr=False)

    def scan(self, lake: Lake) -> pl.LazyFrame:
        """One lazy frame of what readers may see (unmanaged: the current table)."""
        if self.pinned is None:
            return pl.DataFrame(schema=self.table.polars_schema()).lazy()
        parts = [
            pl.scan_delta(
                self._snapshot if self._snapshot is not None else self.uri,
                version=None if self._snapshot is not None else self.pinned,
                storage_options=lake.storage_options,
            )
        ]
        if self.exclude:
            parts[0] = parts[0].filter(~pl.col("date").is_in(list(self.exclude)))
        for version, day in self.travel:
            parts.append(
                pl.scan_delta(self.uri, version=version, storage_options=lake.storage_options).filter(
                    pl.col("date") == day
                )
            )
        return parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical")

    def sql(self, quote_uri) -> str:
        """The same as DuckDB SQL over ``delta_scan`` (``quote_uri`` validates and quotes the URI)."""
        uri = quote_uri(self.uri)
        if not self.managed:
            return f"SELECT * FROM delta_scan({uri})"
        days = lambda ds: ", ".join(f"DATE '{d.isoformat()}'" for d in ds)  # noqa: E731 - dates only: no injection
        main = f"SELECT * FROM delta_scan({uri}, version => {int(self.pinned)})"
        if self.exclude:
            main += f" WHERE date NOT IN ({days(self.exclude)})"
        parts = [main] + [
            f"SELECT * FROM delta_scan({uri}, version => {int(v)}) WHERE date = {days([d])}" for v, d in self.travel
        ]
        return "\nUNION ALL ".join(parts)


def _snapshot_days(snapshot: DeltaTable) -> set[dt.date]:
    actions = pa.table(snapshot.get_add_actions(flatten=True))
    col = "partition.date"
    if col not in actions.column_names or actions.num_rows == 0:
        return set()
    return set(pl.from_arrow(actions[col]).cast(pl.Date).unique().to_list())


def plan(lake: Lake, table: Table | str, days: set[dt.date] | None = None) -> ReadPlan:
    """The read plan for a table as published, optionally only for ``days``."""
    role = day_table_role(table)
    tbl = table if isinstance(table, Table) else None
    if tbl is None:
        from contracts import table as lookup

        tbl = lookup(table)  # type: ignore[arg-type]
    uri = lake.uri(tbl)
    try:
        snapshot = lake.delta(tbl)  # pinned first (see the module docstring)
    except TableNotFoundError:
        return ReadPlan(tbl, uri, None, managed=role is not None)
    pinned = snapshot.version()
    pubs = publications(lake, role[0]) if role is not None else None
    if pubs is None:
        return ReadPlan(tbl, uri, pinned, managed=False, _snapshot=snapshot)
    src, r = role
    col = f"{r}_version"
    named = set(pubs[col].to_list())
    latest = dict(pubs.group_by("date", maintain_order=True).last().select("date", col).iter_rows())
    dirty = {d for d, v in latest.items() if v > pinned}
    for u in range(pinned + 1):
        if u in named:
            continue
        touched = lake.commit_partitions(tbl, u)  # None: the commit file is gone (log cleanup)
        for d in latest if touched is None else touched:
            if d in latest and u > latest[d]:
                dirty.add(d)
    present = _snapshot_days(snapshot)
    exclude = (present - set(latest)) | (present & dirty)
    travel = sorted((latest[d], d) for d in dirty)
    if days is not None:
        exclude &= days
        travel = [(v, d) for v, d in travel if d in days]
    return ReadPlan(tbl, uri, pinned, tuple(sorted(exclude)), tuple(travel), True, snapshot)


# ----------------------------------------------------------------------------- reconciliation


def verify_day(lake: Lake, src: Source, day: dt.date, *, attempts: int = 3, held: bool = False) -> dict:
    """Counts of one day re-read from the tables as published, checked against its manifest row.

    ``ok`` when the day is published, ``bronze records = silver + quarantined + duplicates`` holds
    in the tables (``difference`` 0) and every count equals what the manifest recorded. The three
    tables are read one after the other: if the day is published anew meanwhile (the manifest row
    changed), the day is counted again, so the figures always come from one publication.

    ``held``: the day was just written and held out of the manifest (a blocking file, see
    lake.ingest.write_partition_frames): its tables are counted as written, and ``ok`` says only
    whether they reconcile (``published`` False, ``held`` True).
    """
    return verify_days(lake, src, [day], attempts=attempts, held={day} if held else set())[day]


def verify_days(
    lake: Lake, src: Source, days: list[dt.date], *, attempts: int = 3, held: set[dt.date] = frozenset()
) -> dict[dt.date, dict]:
    """:func:`verify_day` for several days (a backfill range), each table and the manifest read once for
    all of them rather than once a day; the ``held`` days are counted as written."""
    from lake.ingest import reconcile_days  # the check's own counting (lake.ingest imports this module)

    days = list(dict.fromkeys(days))
    out: dict[dt.date, dict] = {}
    kept = [d for d in days if d in held]
    if kept:
        for d, counts in reconcile_days(lake, src, kept, published=False).items():
            out[d] = {
                "source": src.name,
                "date": d.isoformat(),
                "published": False,
                "held": True,
                **counts,
                "ok": counts["difference"] == 0,
            }
    pub = [d for d in days if d not in held]

    def rows() -> dict[dt.date, dict]:
        r = published(lake, src).filter(pl.col("date").is_in(pub))
        return {x["date"]: x for x in r.iter_rows(named=True)}

    if pub:
        for _ in range(attempts):
            m = rows()
            counts = reconcile_days(lake, src, pub)
            if rows() == m:  # no day re-published while the tables were counted
                break
        for d in pub:
            c, row = counts[d], m.get(d)
            o = {"source": src.name, "date": d.isoformat(), "published": row is not None, **c}
            if row is not None:
                o["run_id"] = row["run_id"]
                o["manifest_mismatch"] = {
                    k: {"manifest": row[k], "tables": c[k]}
                    for k in ("bronze_records", "silver_rows", "quarantined_rows", "duplicate_rows")
                    if row[k] != c[k]
                }
            o["ok"] = bool(row is not None and c["difference"] == 0 and not o.get("manifest_mismatch"))
            out[d] = o
    return {d: out[d] for d in days}


def verify(lake: Lake, sources: list[Source] | None = None) -> list[dict]:
    """:func:`verify_day` for every published day of every source (or of ``sources``)."""
    out = []
    for src in sources or list(SOURCES.values()):
        out.extend(verify_days(lake, src, published(lake, src)["date"].to_list()).values())
    return out


def _json_default(o):
    return o.isoformat() if isinstance(o, (dt.date, dt.datetime)) else str(o)


def verify_report(lake: Lake) -> tuple[bool, str]:
    """(all published days reconcile, a JSON report) for the command line."""
    rows = verify(lake)
    bad = [r for r in rows if not r["ok"]]
    report = {"published_days": len(rows), "failing": bad, "ok": not bad}
    return not bad, json.dumps(report, indent=2, default=_json_default)
