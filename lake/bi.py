"""The DuckDB catalog for BI tools: ``docs/BI.md`` generated from the table declarations, and the
example queries of the dashboards utilities build on this data.

Everything in the document comes from ``contracts`` (tables, layers, keys, partitions, column
types as DuckDB names them, meanings, bounds, allowed values) and from :data:`DASHBOARDS` below, so
the document cannot drift from the contracts: ``tests/lake/test_bi.py`` fails when the committed file
differs from :func:`render_markdown`, and runs every dashboard query against a real catalog.

    python -m lake.bi docs/BI.md            # regenerate
    python -m lake.bi --check docs/BI.md    # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from contracts import TABLES, Table, load_profile
from lake.catalog import DEFAULT_LAYERS

LAYER_MEANING = {
    "reference": "network topology and assets (meters, transformers, weather stations); no partition",
    "silver": "validated source records: typed, UTC timestamps, deduplicated, with a quality flag and lineage",
    "quarantine": "every rejected source record with its reason code, the offending field and the raw record",
    "gold": "rollups, forecasts, grid-ML scores, alerts and optimal schedules: what dashboards read",
    "truth": "the simulator's ground truth (labelled events, customer archetypes); absent on real data",
    "bronze": "one row per landing file received (byte-exact archive index)",
}


@dataclass(frozen=True)
class Dashboard:
    name: str
    title: str
    purpose: str
    sql: str

    @property
    def tables(self) -> list[str]:
        """Declared tables the query reads (in declaration order)."""
        import re

        words = set(re.findall(r"\b[a-z][a-z0-9_]*\b", self.sql))
        return [t for t in TABLES if t in words]


#: where a query shows local time: replaced by the utility profile's zone when the queries are made
#: (:func:`dashboards`), so the SQL and docs/BI.md carry the zone of the profile they were generated for
TZ_TOKEN = "{tz}"

_TEMPLATES: tuple[Dashboard, ...] = (
    Dashboard(
        "grid_overview",
        "Grid overview",
        "One row per local day and feeder: energy, peak demand, meters reporting, flagged readings, and the "
        "feeder's voltage and transformer-loading health. The landing page of an operations dashboard.",
        """
SELECT d.date,
       d.entity_id                                   AS feeder_id,
       round(d.energy_kwh / 1000, 3)                 AS energy_mwh,
       round(d.peak_kw, 1)                           AS peak_kw,
       m.meters_reporting,
       d.n_flagged                                   AS flagged_readings,
       round(h.pct_voltage_outside_210_250, 2)       AS pct_voltage_outside_210_250,
       h.transformers_over_80pct,
       h.transformers_over_100pct,
       round(h.max_loading_pct, 1)                   AS max_transformer_loading_pct
FROM gold_load_daily d
LEFT JOIN gold_grid_health_daily h ON h.date = d.date AND h.feeder_id = d.entity_id
LEFT JOIN (SELECT g.date, r.feeder_id, count(DISTINCT g.entity_id) AS meters_reporting
           FROM gold_load_daily g JOIN ref_meters r ON r.meter_id = g.entity_id
           WHERE g.level = 'meter' GROUP BY ALL) m ON m.date = d.date AND m.feeder_id = d.entity_id
WHERE d.level = 'feeder'
ORDER BY d.date, feeder_id
""",
    ),
    Dashboard(
        "transformer_health",
        "Transformer health",
        "Per transformer: its latest failure probability (72 h), remaining useful life and status from the "
        "grid-ML scores, the customers and load behind it, and its peak loading and hot spot over the last "
        "7 days of gold load. Sorted by risk: the maintenance crew's worklist.",
        """
WITH latest AS (
    SELECT * FROM gold_transformer_risk
    QUALIFY row_number() OVER (PARTITION BY transformer_id ORDER BY as_of DESC) = 1
), loading AS (
    SELECT entity_id AS transformer_id, max(loading_pct_max) AS peak_loading_pct_7d, max(peak_kw) AS peak_kw_7d
    FROM gold_load_daily
    WHERE level = 'transformer' AND date > (SELECT max(date) FROM gold_load_daily) - INTERVAL 7 DAY
    GROUP BY ALL
)
SELECT t.transformer_id, t.feeder_id, t.rating_kva, t.install_year, t.last_maintenance,
       l.as_of, round(l.failure_probability_72h, 4) AS failure_probability_72h,
       round(l.rul_hours, 0) AS rul_hours, l.status, l.customers_downstream,
       round(l.load_downstream_kw, 1) AS load_downstream_kw, round(l.hot_spot_max_24h, 1) AS hot_spot_max_24h,
       round(g.peak_loading_pct_7d, 1) AS peak_loading_pct_7d, round(g.peak_kw_7d, 1) AS peak_kw_7d
FROM ref_transformers t
LEFT JOIN latest l USING (transformer_id)
LEFT JOIN loading g USING (transformer_id)
ORDER BY l.failure_probability_72h DESC NULLS LAST, g.peak_loading_pct_7d DESC NULLS LAST
""",
    ),
    Dashboard(
        "power_quality",
        "Power quality: voltage bands",
        "Share of meter readings per voltage band (nominal 230 V; the quality rules flag 210-250 V as the "
        "warning band edges) per feeder and local day. Readings without supply (empty voltage) are counted "
        "apart, not hidden.",
        """
SELECT s.date,
       r.feeder_id,
       count(*)                                                          AS readings,
       count(*) FILTER (WHERE s.voltage IS NULL)                         AS no_supply,
       count(*) FILTER (WHERE s.voltage < 210)                           AS below_210,
       count(*) FILTER (WHERE s.voltage >= 210 AND s.voltage < 220)      AS v210_220,
       count(*) FILTER (WHERE s.voltage >= 220 AND s.voltage <= 240)     AS v220_240,
       count(*) FILTER (WHERE s.voltage > 240 AND s.voltage <= 250)      AS v240_250,
       count(*) FILTER (WHERE s.voltage > 250)                           AS above_250,
       round(100.0 * count(*) FILTER (WHERE s.voltage < 210 OR s.voltage > 250)
             / nullif(count(s.voltage), 0), 3)                           AS pct_outside_210_250,
       round(min(s.voltage), 1) AS v_min, round(quantile_cont(s.voltage, 0.5), 1) AS v_median, round(max(s.voltage), 1) AS v_max
FROM silver_meter_readings s
JOIN ref_meters r USING (meter_id)
GROUP BY ALL
ORDER BY s.date, r.feeder_id
""",
    ),
    Dashboard(
        "forecast_vs_actual",
        "Demand forecast vs actual",
        "Per feeder and hour: the newest forecast issued before the hour (p10/p50/p90) against the metered "
        "hourly mean demand, the error and whether the actual fell inside the p10-p90 band. Aggregate "
        "this for MAPE and band coverage per day.",
        """
WITH newest AS (
    SELECT entity_id, period_start, p10, p50, p90, model, model_version, issued_at
    FROM gold_load_forecast
    WHERE level = 'feeder' AND issued_at < period_start
    QUALIFY row_number() OVER (PARTITION BY entity_id, period_start ORDER BY issued_at DESC) = 1
)
SELECT f.entity_id AS feeder_id,
       f.period_start,
       f.issued_at,
       f.model, f.model_version,
       round(f.p10, 2) AS p10_kw, round(f.p50, 2) AS p50_kw, round(f.p90, 2) AS p90_kw,
       round(a.mean_kw, 2) AS actual_kw,
       round(f.p50 - a.mean_kw, 2) AS error_kw,
       round(100 * abs(f.p50 - a.mean_kw) / nullif(a.mean_kw, 0), 2) AS ape_pct,
       a.mean_kw BETWEEN f.p10 AND f.p90 AS inside_p10_p90
FROM newest f
JOIN gold_load_hourly a ON a.level = 'feeder' AND a.entity_id = f.entity_id AND a.period_start = f.period_start
ORDER BY f.period_start, feeder_id
""",
    ),
    Dashboard(
        "anomaly_tracker",
        "Anomaly tracker",
        "Per local day, asset type and status: how many readings/samples the anomaly ensemble scored, how "
        "many assets were affected, the highest score, and the most frequent reason. Drill into "
        "gold_anomaly_scores by asset_id for the time series.",
        """
SELECT date,
       asset_type,
       status,
       count(*)                    AS points,
       count(DISTINCT asset_id)    AS assets,
       round(max(score), 4)        AS max_score,
       round(avg(score), 4)        AS mean_score,
       mode(reason)                AS most_common_reason,
       min(model_version)          AS model_version
FROM gold_anomaly_scores
GROUP BY date, asset_type, status
ORDER BY date, asset_type, CASE status WHEN 'critical' THEN 0 WHEN 'alert' THEN 1 WHEN 'monitoring' THEN 2 ELSE 3 END
""",
    ),
    Dashboard(
        "segment_distribution",
        "Customer segment distribution",
        "The latest segmentation: meters per segment and tariff with their share, mean daily energy, typical "
        "peak hour and how many have PV or an EV; provisional assignments (short history) are counted apart.",
        """
WITH latest AS (
    SELECT s.*, r.tariff FROM gold_customer_segments s JOIN ref_meters r USING (meter_id)
    WHERE s.as_of = (SELECT max(as_of) FROM gold_customer_segments)
)
SELECT segment,
       tariff,
       count(*)                                               AS meters,
       round(100.0 * count(*) / sum(count(*)) OVER (), 2)     AS pct_of_meters,
       round(avg(avg_daily_kwh), 2)                           AS mean_daily_kwh,
       mode(peak_hour)                                        AS typical_peak_hour,
       count(*) FILTER (WHERE has_pv)                         AS with_pv,
       count(*) FILTER (WHERE has_ev)                         AS with_ev,
       count(*) FILTER (WHERE provisional)                    AS provisional,
       max(as_of)                                             AS as_of
FROM latest
GROUP BY ALL
ORDER BY meters DESC, segment, tariff
""",
    ),
    Dashboard(
        "alert_log",
        "Alert log",
        "Every alert (asset x rule x hour window, deduplicated by fingerprint), newest first, with where the "
        "asset sits in the network (feeder, transformer) and the local time it was first seen.",
        """
SELECT a.first_seen AT TIME ZONE '{tz}'                       AS first_seen_local,
       a.severity,
       a.rule,
       a.asset_type,
       a.asset_id,
       coalesce(m.transformer_id, t.transformer_id)          AS transformer_id,
       coalesce(m.feeder_id, t.feeder_id)                    AS feeder_id,
       round(a.score, 4)                                     AS score,
       a.n_points,
       a.window_start,
       a.last_seen,
       a.reason,
       a.fingerprint
FROM gold_alerts a
LEFT JOIN ref_meters m ON a.asset_type = 'meter' AND m.meter_id = a.asset_id
LEFT JOIN ref_transformers t ON a.asset_type = 'transformer' AND t.transformer_id = a.asset_id
ORDER BY a.first_seen DESC, a.severity, a.asset_id
""",
    ),
)


def dashboards(tz: str) -> tuple[Dashboard, ...]:
    """The dashboard queries for a utility in zone ``tz`` (an IANA name, e.g. the profile's ``timezone``)."""
    from zoneinfo import ZoneInfo

    ZoneInfo(tz)  # an unknown zone fails here, not inside a BI tool; the name is then safe to quote in SQL
    return tuple(Dashboard(d.name, d.title, d.purpose, d.sql.replace(TZ_TOKEN, tz)) for d in _TEMPLATES)


#: the queries for this deployment's zone (``load_profile().timezone``: GRIDLAKE_PROFILE / GRIDLAKE_TIMEZONE)
DASHBOARDS: tuple[Dashboard, ...] = dashboards(load_profile().timezone)


def dashboard(name: str) -> Dashboard:
    for d in DASHBOARDS:
        if d.name == name:
            return d
    raise KeyError(f"no dashboard {name!r}; known: {[d.name for d in DASHBOARDS]}")


# ----------------------------------------------------------------------------- document
def _duckdb_types(t: Table) -> list[str]:
    import duckdb

    with duckdb.connect() as con:
        return [str(x) for x in con.from_arrow(t.arrow_schema().empty_table()).types]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _constraints(c) -> str:
    parts = []
    if c.min is not None or c.max is not None:
        lo = "" if c.min is None else f"{c.min:g}"
        hi = "" if c.max is None else f"{c.max:g}"
        parts.append(f"range [{lo}, {hi}]")
    if c.allowed:
        parts.append("one of " + ", ".join(f"`{v}`" for v in c.allowed))
    return "; ".join(parts)


def render_markdown(tz: str | None = None) -> str:
    """The whole docs/BI.md, deterministic (no timestamps, no paths of this machine), for the utility in
    zone ``tz`` (default: the profile's, read now: ``load_profile().timezone``)."""
    tz = tz or load_profile().timezone
    boards = dashboards(tz)
    out: list[str] = []
    w = out.append
    w("<!-- Generated by `python -m lake.bi docs/BI.md` from contracts/ and lake/bi.py: do not edit by hand. -->")
    w("# The gridlake catalog for BI tools\n")
    w(
        "`warehouse/gridlake.duckdb` (the `duckdb_catalog` asset; `GRIDLAKE_CATALOG`) holds one **view** per Delta "
        "table of the lake (`SELECT * FROM delta_scan(...)`: no copy, every query reads the current table) plus "
        "`catalog_tables` (this document's column list as a table, with row counts and Delta versions at the last "
        "refresh) and `catalog_meta` (lake root, refresh time).\n"
    )
    w("## Connecting\n")
    w(
        "- Open the file **read-only** with DuckDB 1.5.5 (the version the catalog is written with) and the `delta` "
        "extension (`duckdb-extension-delta==1.5.5`; `lake.catalog.connect` installs it from the wheel, offline). "
        "The catalog is regenerated by atomic swap after each ingest: readers are never blocked, new connections "
        "see the new views."
    )
    w(
        '- Python: `lake.catalog.query("warehouse/gridlake.duckdb", sql)`; command line: '
        '`.venv/bin/python -m lake.catalog sql warehouse/gridlake.duckdb "SELECT ..."`.'
    )
    w(
        "- BI tools: any DuckDB driver that can `LOAD delta` (e.g. the DuckDB JDBC/ODBC drivers or SQLAlchemy "
        "`duckdb-engine`) with `access_mode=READ_ONLY`. Keep your own tables in your own database and `ATTACH` "
        "this file read-only."
    )
    w(
        "- An S3 lake: the reader needs the same `AWS_*` environment variables as the pipeline (a temporary secret "
        "is created per connection; nothing secret is stored in the file).\n"
    )
    w("## Conventions\n")
    w(
        f"- Timestamps are UTC (`TIMESTAMP WITH TIME ZONE`). Show local time with `ts AT TIME ZONE '{tz}'`: "
        f"`{tz}` is the zone of the utility profile this document and its queries were generated for "
        "(`GRIDLAKE_PROFILE` / `GRIDLAKE_TIMEZONE`); another utility regenerates them with its own profile."
    )
    w(
        "- `date` is the utility's **local** calendar day and the daily partition: filter on it first (partition "
        "pruning). A local day has 23, 24 or 25 hours."
    )
    w("- Energy in kWh, demand in kW, voltage in V, prices in $/MWh, carbon in kg/MWh.")
    w("- A table that has not been produced yet has no view (see `catalog_tables.view_available`).\n")
    w("## Dashboards: example queries\n")
    w("Each query runs as written on the catalog (tested in `tests/lake/test_bi.py`).\n")
    for d in boards:
        w(f"### {d.title} (`{d.name}`)\n")
        w(d.purpose + "\n")
        w("Reads: " + ", ".join(f"[`{t}`](#{t})" for t in d.tables) + ".\n")
        w("```sql\n" + d.sql.strip() + ";\n```\n")
    w("## Views by layer\n")
    layers = [lay for lay in DEFAULT_LAYERS if any(t.layer == lay for t in TABLES.values())]
    for lay in layers:
        w(f"- **{lay}**: {LAYER_MEANING.get(lay, '')}")
    w("")
    w("| view | layer | what it holds | key | partition |")
    w("|---|---|---|---|---|")
    for lay in layers:
        for t in (t for t in TABLES.values() if t.layer == lay):
            w(
                f"| [`{t.name}`](#{t.name}) | {lay} | {_cell(t.description)} | {', '.join(t.key)} | {', '.join(t.partition_by)} |"
            )
    w("")
    w("## Columns\n")
    for lay in layers:
        for t in (t for t in TABLES.values() if t.layer == lay):
            w(f"### {t.name}\n")
            w(
                f"{t.description[:1].upper() + t.description[1:]} ({lay}; key: {', '.join(t.key) or '-'}; "
                f"partition: {', '.join(t.partition_by) or '-'}).\n"
            )
            w("| column | type | null | meaning | valid values |")
            w("|---|---|---|---|---|")
            for c, typ in zip(t.columns, _duckdb_types(t)):
                w(
                    f"| `{c.name}` | {typ} | {'yes' if c.nullable else 'no'} | {_cell(c.description)} | {_constraints(c)} |"
                )
            w("")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lake.bi", description="Write (or --check) docs/BI.md")
    ap.add_argument("path", type=Path, nargs="?", default=Path("docs/BI.md"))
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from what would be generated")
    args = ap.parse_args(argv)
    text = render_markdown()
    if args.check:
        current = args.path.read_text(encoding="utf-8") if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is stale: run `python -m lake.bi {args.path}`", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(text, encoding="utf-8")
    print(
        f"wrote {args.path} ({len(text.splitlines())} lines, {len(DASHBOARDS)} dashboards for {load_profile().timezone}, {len(TABLES)} tables)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
