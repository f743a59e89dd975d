"""The daily operator report (``warehouse/report/index.html``): a thin asset over :mod:`reporting.report`.

It reads the day's gold tables (forecasts, schedules, grid ML) and writes one self-contained HTML
file next to the DuckDB catalog; the key plots are also attached to the materialisation.
Delivered alerts come from the catalog's snapshot of the streaming bridge's PostgreSQL ``alerts`` table
(refreshed by ``duckdb_catalog``) when it holds one; otherwise the report says none were delivered.
"""

from pathlib import Path

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from assets.partitions import daily_open, lookback_dep, partition_day
from assets.queues import queue_tags
from assets.resources import CatalogResource, GridSettings, LakeResource
from lake.plots import png_markdown

GROUP = "reports"


def delivered_alerts(catalog_file: Path):
    """The catalog's snapshot of the bridge's ``alerts`` table (firing states) with ``occurred_at``: the start of
    the gold window a batch alert reports (annotation ``window``), else its ``startsAt``; None without a snapshot."""
    from lake.catalog import query

    if (
        not Path(catalog_file).exists()
        or query(catalog_file, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'alerts'").item() == 0
    ):
        return None
    return query(
        catalog_file,
        """
        SELECT *, coalesce(try_cast(split_part(json_extract_string(annotations, '$.window'), ' .. ', 1) AS TIMESTAMPTZ), starts_at) AS occurred_at
        FROM alerts WHERE status = 'firing' ORDER BY occurred_at, fingerprint
    """,
    )  # fmt: skip"


#: the figures shown in the Dagster UI (all of them are in the HTML file)
KEY_FIGURES = ("load_forecast_system", "battery_schedule", "ev_charging", "transformer_risk", "anomaly_timeline")


class ReportConfig(Config):
    out_dir: str = Field(
        "", description="folder of index.html; empty = 'report' next to the DuckDB catalog (warehouse/report)"
    )
    ev_limit_kw: float | None = Field(
        None, description="the EV site limit drawn on the EV plot (None: the profile's, as gold_ev)"
    )


@asset(
    op_tags=queue_tags("score"),
    group_name=GROUP,
    partitions_def=daily_open,
    deps=[
        lookback_dep("gold_load_forecast", 3),
        lookback_dep("gold_solar_forecast", 3),
        lookback_dep("gold_load_hourly", 1),
        "gold_battery_schedule",
        "gold_battery_daily",
        "gold_ev_schedule",
        "gold_ev_sessions",
        "gold_transformer_risk",
        "gold_anomaly_scores",
        "gold_alerts",
        "gold_customer_segments",
    ],  # fmt: skip
    kinds={"html", "matplotlib"},
    description="Self-contained HTML report of one local day: forecasts vs actuals, schedules, risks, anomalies, segments, alerts",
)
def daily_report(
    context: AssetExecutionContext,
    config: ReportConfig,
    lake: LakeResource,
    catalog: CatalogResource,
    grid: GridSettings,
) -> MaterializeResult:
    from reporting.report import build_report, write_report

    lk, day = lake.lake(), partition_day(context)
    delivered = delivered_alerts(catalog.file())
    profile = grid.profile()
    report = build_report(
        lk,
        day,
        profile,
        ev_limit_kw=config.ev_limit_kw if config.ev_limit_kw is not None else profile.ev.transformer_limit_kw,
        delivered_alerts=delivered,
    )
    path = write_report(report, Path(config.out_dir) if config.out_dir else catalog.file().parent / "report")
    figs = report.figures
    return MaterializeResult(metadata={
        "path": MetadataValue.path(str(path.resolve())),
        "bytes": path.stat().st_size,
        "sections": MetadataValue.json([s.title for s in report.sections]),
        "figures": len(figs),
        **{f"plot_{k}": MetadataValue.md(png_markdown(figs[k].png, figs[k].title)) for k in KEY_FIGURES if k in figs},
    })  # fmt: skip


REPORT_ASSETS = [daily_report]
