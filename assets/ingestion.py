"""Ingestion assets: one multi-asset per raw source writes its bronze file index, silver and
quarantine tables for a daily partition in one pass (lake.ingest), publishes the day in its
manifest table (lake.manifest: the three become visible together), then proves the partition:

- ``reconciles`` (blocking): bronze records = silver + quarantined + duplicates, counted from the
  tables as published, and equal to the counts the manifest recorded;
- ``files_readable`` (blocking): every landing file of the day was read; a file that cannot be read
  or whose name is unsafe is named with its size and estimated records, and holds the day (and
  everything downstream of it) until it is fixed and the day re-run, or waived (lake.waiver);
- ``expectations`` (blocking): the great-expectations suite derived from the silver declaration;
- ``quarantine_rate`` (warning): the share of rejected records stays under a threshold.
"""

import datetime as dt
import logging
from collections.abc import Callable

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Config,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from assets.partitions import daily, daily_backfill
from assets.queues import queue_tags
from assets.resources import GridSettings, LakeResource, LandingResource
from contracts import SOURCES, Source
from lake.ingest import ingest_partitions, known_entity_ids
from lake.manifest import verify_days

_log = logging.getLogger(__name__)


class IngestConfig(Config):
    #: above this share of rejected records the quarantine_rate check warns
    warn_quarantine_share: float = 0.05
    #: above this share the partition is unusable: the check fails as an error and, being
    #: blocking, stops the downstream gold assets in the run
    max_quarantine_share: float = 0.5


def gx_checks(lake, table, days: dt.date | list[dt.date], held: set[dt.date] = frozenset()):
    """Run the table's great-expectations suite on written partitions (one or a backfill's range);
    ``held`` days (written, not published: a blocking file) are read as written.

    One day (the nightly run): GX validates it. A range (a backfill run): every expectation of the suite
    is evaluated on every day by quality.suite_polars (the same specs, GX's semantics, one polars query a
    day); GX itself validates the range's last day and every day the screen finds a blocking failure, and
    reports those days. On a day both engines ran they must agree expectation by expectation, else the
    blocking check fails (``engine_disagreements``). docs/DECISIONS.md "Year backfill" has the figures.

    Yields two results: ``expectations`` (blocking: the hard expectations of every day pass) and
    ``soft_expectations`` (a warning: soft rules such as the anomaly share), so soft failures are
    visible, not silent.
    """
    from quality.expectations import suite_for, validate_frame  # lazy: GX is slow to import
    from quality.suite_polars import disagreements, evaluate_suite, supported

    days = [days] if isinstance(days, dt.date) else list(days)
    screen = len(days) > 1 and supported(suite_for(table))
    outcomes, gx_days, disagree = {}, [], {}
    # one read plan per range (published days, and held days as written), filtered per day
    scans = {
        flag: lake.scan_days(table, group, published=flag)
        for flag, group in ((True, [d for d in days if d not in held]), (False, [d for d in days if d in held]))
        if group
    }
    for d in days:
        df = scans[d not in held].filter(pl.col("date") == d).collect()
        fast = evaluate_suite(table, df) if screen else None
        if fast is None or d == days[-1] or not fast.blocking_success:
            outcomes[d] = validate_frame(table, df)
            gx_days.append(d.isoformat())
            if fast is not None and (names := disagreements(outcomes[d], fast)):
                disagree[d.isoformat()] = names
        else:
            outcomes[d] = fast
        del df
    if len(days) == 1:
        only = outcomes[days[0]]
        meta = {
            k: (MetadataValue.json(v) if isinstance(v, (dict, list)) else v) for k, v in only.check_metadata().items()
        }
    else:
        meta = {
            "partitions": len(days),
            "blocking_failures": MetadataValue.json(
                {
                    d.isoformat(): [r.name for r in o.blocking_failures]
                    for d, o in outcomes.items()
                    if o.blocking_failures
                }
            ),
            "soft_failures": MetadataValue.json(
                {
                    d.isoformat(): [r.name for r in o.failures if not r.blocking]
                    for d, o in outcomes.items()
                    if not o.success
                }
            ),
            "validated_by_great_expectations": MetadataValue.json(gx_days),
            "screened_in_polars": len(days) - len(gx_days) if screen else 0,
            "engine_disagreements": MetadataValue.json(disagree),
        }
    summary = "; ".join(o.summary() for o in outcomes.values() if not o.success)
    if disagree:
        summary = f"great-expectations and the polars screen disagree on {disagree}; " + summary
    summary = summary or f"{table.name}: all expectations passed on {len(days)} partition(s)"
    yield AssetCheckResult(
        asset_key=table.name, check_name="expectations",
        passed=all(o.blocking_success for o in outcomes.values()) and not disagree,
        severity=AssetCheckSeverity.ERROR, description=summary[:2000], metadata=meta,
    )  # fmt: skip
    yield AssetCheckResult(
        asset_key=table.name, check_name="soft_expectations", passed=all(o.success for o in outcomes.values()),
        severity=AssetCheckSeverity.WARN, description=summary[:2000], metadata=meta,
    )  # fmt: skip


#: words of a progress line that must reach the run's event log in a range run too (a problem to act on)
_NOTEWORTHY = ("HELD", "unreadable", "unsafe", "[")


def run_log(context, days: list) -> Callable[[str], None]:
    """Where a step's per-day progress lines go: the run's event log for a one-day run; in a range run (a
    backfill) only the lines naming a problem (a held day, a file with a problem), the routine per-day lines
    to the Python log. Each line in the event log is one PostgreSQL insert (and connection) of ~5-20 ms: 8 a day
    in a backfill of the five sources and three gold tables (docs/DECISIONS.md "Year backfill: ...")."""
    if len(days) <= 1:
        return context.log.info

    def log(line: str) -> None:
        (context.log.info if any(w in line for w in _NOTEWORTHY) else _log.info)(line)

    return log


def gx_check_specs(asset: str) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(
            "expectations",
            asset=asset,
            blocking=True,
            description="great-expectations suite derived from the table declaration (hard expectations)",
        ),
        AssetCheckSpec(
            "soft_expectations",
            asset=asset,
            description="the suite's soft expectations (e.g. anomaly share); warns only",
        ),
    ]


def build_ingestion_asset(src: Source):
    silver, bronze, quarantine, manifest = src.silver.name, src.bronze.name, src.quarantine.name, src.manifest.name
    refs = sorted({t for t, _ in src.reference_columns})

    @multi_asset(
        name=f"ingest_{src.name}",
        specs=[
            AssetSpec(bronze, group_name="bronze", description=src.bronze.description, deps=refs, kinds={"delta"}),
            AssetSpec(
                silver, group_name="silver", description=src.silver.description, deps=refs, kinds={"delta", "polars"}
            ),
            AssetSpec(
                quarantine, group_name="quarantine", description=src.quarantine.description, deps=refs, kinds={"delta"}
            ),
            AssetSpec(manifest, group_name="bronze", description=src.manifest.description, deps=refs, kinds={"delta"}),
        ],
        check_specs=[
            AssetCheckSpec(
                "reconciles",
                asset=silver,
                blocking=True,
                description="bronze records = silver + quarantined + duplicates",
            ),
            AssetCheckSpec(
                "files_readable",
                asset=silver,
                blocking=True,
                description="no landing file of the day is unreadable or unsafely named (fix and re-run, or waive: lake.waiver)",
            ),
            *gx_check_specs(silver),
            AssetCheckSpec(
                "quarantine_rate",
                asset=silver,
                blocking=True,
                description="share of rejected records: warns above warn_quarantine_share, blocks above max_quarantine_share",
            ),
        ],
        partitions_def=daily,
        backfill_policy=daily_backfill,
        op_tags=queue_tags("ingest", **{"gridlake/source": src.name}),
    )
    def _ingest(
        context: AssetExecutionContext,
        config: IngestConfig,
        lake: LakeResource,
        landing: LandingResource,
        grid: GridSettings,
    ):
        # one day per run normally; a backfill runs its whole range in one run, one day's Delta
        # write overlapping the next day's validation (lake.ingest.ingest_partitions)
        days = [dt.date.fromisoformat(k) for k in context.partition_keys]
        lk = lake.lake()
        known = known_entity_ids(lk, src)
        results = ingest_partitions(
            landing.zone(),
            lk,
            src,
            days,
            known,
            tz=grid.timezone,
            progress=run_log(context, days),
            run_id=context.run_id,
        )
        one = len(results) == 1
        per_day = lambda f: MetadataValue.json({r.partition.isoformat(): f(r) for r in results})  # noqa: E731
        raw = sum(r.raw_rows for r in results)
        common = {
            "partitions": ", ".join(context.partition_keys) if one else f"{days[0]}..{days[-1]} ({len(days)})",
            "raw_rows": raw,
        }
        yield MaterializeResult(
            asset_key=silver,
            metadata={
                **common,
                "dagster/row_count": sum(r.silver_rows for r in results),
                "duplicates": sum(r.duplicate_rows for r in results),
                "quality_flags": MetadataValue.json(results[0].flags) if one else per_day(lambda r: r.flags),
                "delta_version": results[-1].writes["silver"].version,
                "uri": results[-1].writes["silver"].uri,
                "seconds": per_day(lambda r: {k: round(v, 3) for k, v in r.timings_s.items()}),
            },
        )
        yield MaterializeResult(
            asset_key=quarantine,
            metadata={
                **common,
                "dagster/row_count": sum(r.writes["quarantine"].rows for r in results),
                "reasons": MetadataValue.json(results[0].reasons) if one else per_day(lambda r: r.reasons),
                "late_records_forwarded_to": per_day(lambda r: {d.isoformat(): k for d, k in r.forwarded.items()}),
            },
        )
        yield MaterializeResult(
            asset_key=bronze,
            metadata={
                **common,
                "files": sum(len(r.files) for r in results),
                "files_with_problems": MetadataValue.json(
                    {f.key: f"{f.problem}: {f.detail}" for r in results for f in r.files if f.problem}
                ),
            },
        )
        yield MaterializeResult(
            asset_key=manifest,
            metadata={
                **common,
                "published": per_day(
                    lambda r: (
                        {k: r.published[k] for k in ("bronze_version", "silver_version", "quarantine_version")}
                        if r.published
                        else None
                    )
                ),
                # a day with a file that cannot be read is written but not published until it is fixed or waived
                "held": per_day(lambda r: r.held or None),
            },
        )
        # the library check (lake.manifest.verify_days): counts re-read from the tables as published
        # agree with each other and with the manifest row; `python -m lake.catalog reconcile` runs it for every day
        # (a day held out of the manifest by an unreadable file is counted as written); a range is read once a table
        verified = verify_days(lk, src, [r.partition for r in results], held={r.partition for r in results if r.held})
        counts = {d.isoformat(): c for d, c in verified.items()}
        yield AssetCheckResult(
            asset_key=silver,
            check_name="reconciles",
            passed=all(c["ok"] for c in counts.values()),
            metadata={
                k: (MetadataValue.json(v) if isinstance(v, (dict, list)) else v)
                for k, v in next(iter(counts.values())).items()
            }
            if one
            else {"per_partition": MetadataValue.json(counts)},
            severity=AssetCheckSeverity.ERROR,
        )
        unread = {d: c["unreadable_files"] for d, c in counts.items() if c["unreadable_files"]}
        audit = {
            d: {"waived": c["waived_files"], "skipped": c["skipped_files"]}
            for d, c in counts.items()
            if c["waived_files"] or c["skipped_files"]
        }
        yield AssetCheckResult(
            asset_key=silver,
            check_name="files_readable",
            passed=not unread,
            severity=AssetCheckSeverity.ERROR,
            description=(
                "; ".join(
                    f"{d}: {k} ({v['problem']}, {v['bytes']} bytes, ~{v['estimated_records'] if v['estimated_records'] is not None else '?'} records)"
                    for d, fs in unread.items()
                    for k, v in fs.items()
                )[:2000]
                or "every landing file was read"
            ),
            metadata={
                "unreadable_files": MetadataValue.json(unread),
                "waived_and_skipped_files": MetadataValue.json(audit),
            },
        )
        yield from gx_checks(lk, src.silver, days, held={r.partition for r in results if r.held})
        shares = {
            r.partition.isoformat(): (r.quarantined_rows / r.raw_rows) if r.raw_rows else (1.0 if r.files else 0.0)
            for r in results
        }
        worst = max(shares.values())
        yield AssetCheckResult(
            asset_key=silver,
            check_name="quarantine_rate",
            passed=worst <= config.warn_quarantine_share,
            severity=AssetCheckSeverity.ERROR if worst > config.max_quarantine_share else AssetCheckSeverity.WARN,
            metadata={
                "share": round(worst, 6),
                "share_per_partition": MetadataValue.json({k: round(v, 6) for k, v in shares.items()}),
                "warn_above": config.warn_quarantine_share,
                "block_above": config.max_quarantine_share,
                "reasons": MetadataValue.json(results[0].reasons) if one else per_day(lambda r: r.reasons),
            },
        )

    return _ingest


ingestion_assets = [build_ingestion_asset(s) for s in SOURCES.values()]
SILVER_KEYS = [AssetKey(s.silver.name) for s in SOURCES.values()]
