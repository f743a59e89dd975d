"""The DuckDB catalog analysts and BI tools open: one view per Delta table (lake.catalog), plus a snapshot
of the streaming bridge's durable alert tables (PostgreSQL) as of the refresh."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.queues import queue_tags
from assets.resources import AlertingResource, CatalogResource, LakeResource
from contracts import TABLES

CATALOG_DEPS = [n for n, t in TABLES.items() if t.layer in ("silver", "gold", "quarantine", "reference", "manifest")]


@asset(
    op_tags=queue_tags("ingest"),
    group_name="analytics",
    deps=CATALOG_DEPS,
    kinds={"duckdb"},
    description="DuckDB views over every Delta table (delta_scan)",
)
def duckdb_catalog(
    context: AssetExecutionContext, lake: LakeResource, catalog: CatalogResource, alerting: AlertingResource
) -> MaterializeResult:
    from lake.catalog import refresh_catalog

    info = refresh_catalog(lake.lake(), catalog.file(), snapshots=alerting.table_snapshots(context.log))
    context.log.info(f"catalog {catalog.file()}: {info}")
    return MaterializeResult(metadata={"path": str(catalog.file().resolve()), "catalog": MetadataValue.json(info)})
