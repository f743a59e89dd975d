"""`make demo`: simulate a small utility and run the whole chain as Dagster jobs, then summarise it.

Everything is local: a SQLite Dagster instance under ``.demo/dagster_home``, landing files under
``.demo/landing``, Delta tables under ``.demo/lake``, MLflow in ``.demo/mlflow.db``, the DuckDB
catalog and the HTML report in ``warehouse/``. The landing zone and the lake start empty on every
run (partitions are replaced, so the figures of a second run are those of the first); the MLflow
registry and the Dagster instance are kept, so a second run shows champion/challenger at work.

The stages run in the order a night would (:data:`STAGES`; a stage is appended to that list to
extend the demo, e.g. alert delivery), for the demo's *last day* D:

1. ``simulate``: a utility with ``--days`` of history lands its raw files (faults in the last days);
2. ``ingest``: ``daily_ingest`` as one backfill run over the history, the nightly runs of the
   last days, then the late-data replays (the days that received records forwarded from a later
   day, as the landing sensor re-runs them);
3. ``gold``: the monthly rollups and the DuckDB catalog;
4. ``training``: the nightly retrain as of the night before D (forecasts, grid ML; MLflow
   champion/challenger), so nothing the models learn comes from D;
5. ``scoring``: the day-ahead forecasts issued at the end of D-1 (they cover D), today's issue and
   peak demand of D, and the grid-ML scoring of D (anomalies, alerts, transformer risk, segments, DR);
6. ``optimisation``: battery, EV, DC-OPF and unit commitment for D from those forecasts;
7. ``alerts``: D's critical batch alerts through the streaming bridge's delivery path: a private
   Alertmanager (the repo's routing) -> the bridge's webhook receiver -> PostgreSQL ``alerts`` tables
   (schema ``--alerts-schema``, wiped first) and MQTT, started for the stage and stopped after it.

Then the catalog is refreshed, the HTML report written, and an operator's summary printed from
the catalog (forecast accuracy of D against its actuals and the naive baseline, risks, anomalies,
segments, savings, OPF and UC, alerts delivered by severity and receiver) plus an analyst query. ``benchmarks/results/demo.json`` gets each
stage's wall time and the row count of every gold table.

    python -m pipelines.demo [--meters 400] [--days 24] [--start 2026-03-03] [--seed 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assets.nightly import training_config
from contracts.profile import DEMO_PROFILE, read_profile

ROOT = Path(__file__).resolve().parents[1]
#: the demo utility's zone (its profile's): the simulator's clocks and, unless set, GRIDLAKE_TIMEZONE
TZ = read_profile(DEMO_PROFILE).timezone

#: nightly (faulty) days at the end of the history; the days before arrive as one clean backfill
NIGHTLY_DAYS = 2

#: training window (days before the last day): three weeks, or what a shorter demo has
WINDOW_DAYS = 21
#: the load models need 15 days before their first of 3 backtest origins (18-day window), then the last day;
#: one day to spare for the hour alignment of the PV backtest
MIN_DAYS = 20


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ============================================================================================
# the demo's state and its Dagster runs
# ============================================================================================
@dataclass
class Demo:
    """What the stages share: the simulated period, the instance, the definitions, what ran."""

    meters: int
    days: list[dt.date]
    seed: int
    home: Path
    catalog: Path
    instance: Any = None
    defs: Any = None
    zone: Any = None
    sim: Any = None
    runs: list[dict] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def last(self) -> dt.date:
        return self.days[-1]

    def run(
        self,
        job: str,
        partition: dt.date | None = None,
        *,
        until: dt.date | None = None,
        ops: dict | None = None,
        assets: list[str] | None = None,
        label: str = "",
        resources: dict | None = None,
    ) -> Any:
        """Execute ``job`` in-process on the demo's instance (one partition, or the range partition..until
        in one backfill run); print one progress line; stop the demo if the run fails."""
        from dagster import AssetKey

        tags = {}
        key = partition.isoformat() if partition and until is None else None
        if until is not None:
            tags = {
                "dagster/asset_partition_range_start": partition.isoformat(),
                "dagster/asset_partition_range_end": until.isoformat(),
            }
        t = time.time()
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, partition_key=key, tags=tags, raise_on_error=False,
            asset_selection=[AssetKey(a) for a in assets] if assets else None,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}, "ops": ops or {},
                        **({"resources": resources} if resources else {})},
        )  # fmt: skip
        checks = [
            e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        failed = [
            f"{c.asset_key.to_user_string()}:{c.check_name}"
            for c in checks
            if not c.passed and c.severity.value == "ERROR"
        ]
        warned = sorted(
            {
                f"{c.asset_key.to_user_string()}:{c.check_name}"
                for c in checks
                if not c.passed and c.severity.value != "ERROR"
            }
        )
        mats = result.get_asset_materialization_events()
        span = f"{partition}..{until}" if until else (str(partition) if partition else "")
        seconds = time.time() - t
        self.runs.append(
            {
                "job": job,
                "partitions": span,
                "run_id": result.run_id,
                "success": result.success,
                "seconds": round(seconds, 2),
            }
        )
        _say(
            f"  {job}{' ' + span if span else ''}{' (' + label + ')' if label else ''}: {'ok' if result.success else 'FAILED'} in {seconds:.1f}s, "
            f"{len(mats)} materialisations, {len(checks)} checks"
            + (f", failed: {failed}" if failed else "")
            + (f", warnings: {warned}" if warned else "")
        )
        if not result.success:
            dh = os.environ["DAGSTER_HOME"]
            raise SystemExit(
                f"run {result.run_id} of {job} failed; see it with DAGSTER_HOME={dh} .venv/bin/dagster dev -w workspace.yaml"
            )
        return result


def _metadata(result, asset: str) -> dict:
    """The latest materialisation metadata of ``asset`` in a run (plain values)."""
    mats = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in mats[-1].materialization.metadata.items()} if mats else {}


# ============================================================================================
# the stages, in the order of a night
# ============================================================================================
def simulate(demo: Demo) -> None:
    """Land the reference data and every day's raw files; the last days carry every class of fault."""
    from lake.landing import LocalLanding
    from simulator import BadRecordRates, EventRates, SimConfig, Simulator, write_landing_day, write_landing_reference

    # a few incidents a month on a 400-meter utility (the defaults are per asset-year on a big fleet):
    # enough transformer failures and meter faults for the grid models to learn and show
    events = EventRates(failures_per_transformer_year=2.5, stuck_per_meter_year=0.4, zero_per_meter_year=0.4,
                        theft_per_meter_year=0.3, sags_per_transformer_year=6.0)  # fmt: skip
    demo.sim = sim = Simulator(
        SimConfig(
            n_meters=demo.meters, start=demo.days[0], days=len(demo.days), seed=demo.seed, timezone=TZ, events=events
        )
    )
    demo.zone = zone = LocalLanding(os.environ["GRIDLAKE_LANDING"])
    write_landing_reference(sim, zone)
    # the nightly meter feed's realistic trickle of bad input: every class lands in quarantine with a
    # reason. The second day of the history also had a head-end export with a renamed column (a whole
    # file quarantined as missing_column: a quarter of the meters missing that day); on the nightly days
    # every record stays recoverable, so the last day's actuals are complete and the forecast is judged
    # against the real load (and the same day last week, the weekly baseline, is complete too)
    trickle = dict(
        malformed_line=0.001,
        wrong_type=0.001,
        out_of_range=0.001,
        duplicate=0.002,
        unknown_entity=0.0005,
        empty_files=1,
    )
    faults = {d: BadRecordRates(**trickle, late_files=1) for d in demo.days[-NIGHTLY_DAYS:]}
    faults[demo.days[1]] = BadRecordRates(**trickle, renamed_column_files=1)
    fmt = {"meter_readings": ("csv", "parquet", "jsonl"), "scada": "parquet", "weather": "csv"}
    for d in demo.days:
        write_landing_day(
            sim, d, zone, formats=fmt, sources=("scada", "weather", "weather_forecast", "incidents"), rows_per_file=200
        )
        write_landing_day(sim, d, zone, formats=fmt, bad=faults.get(d), sources=("meter_readings",), rows_per_file=100)
    _say(
        f"  landed {len(demo.days)} days of meter readings, SCADA, weather, weather forecasts (NWP) and incident records ({demo.days[0]}..{demo.last}); "
        f"bad records on {', '.join(str(d) for d in sorted(faults))}"
    )


def ingest(demo: Demo) -> None:
    """History as one backfill run, the last days one nightly run each, then the late-data replays."""
    demo.run("load_reference")
    history = demo.days[:-NIGHTLY_DAYS]
    demo.run("daily_ingest", history[0], until=history[-1], label="backfill of the history, one run")
    for d in demo.days[-NIGHTLY_DAYS:]:
        demo.run("daily_ingest", d, label="nightly")
    # late records re-landed for an earlier day (lake.ingest.forward_late_records): the landing sensor
    # re-runs exactly those days
    late = sorted(
        {d for d in demo.days for f in demo.zone.list(f"meter_readings/{d.isoformat()}") if "/forwarded_from_" in f.key}
    )
    for d in late:
        demo.run("daily_ingest", d, label="late records forwarded from a later day: replay")
    demo.notes["late_replays"] = [d.isoformat() for d in late]


def gold(demo: Demo) -> None:
    for month in sorted({d.replace(day=1) for d in demo.days}):
        demo.run("monthly_rollup", month)
    demo.run("refresh_catalog")


def training(demo: Demo) -> None:
    """The nightly retrain as of the night before the last day (MLflow champion/challenger)."""
    as_of = (demo.last - dt.timedelta(days=1)).isoformat()
    ops = training_config(min(WINDOW_DAYS, len(demo.days) - 1), as_of)
    r = demo.run(
        "forecast_training",
        ops={k: ops[k] for k in ("load_forecast_models", "solar_forecast_models")},
        label=f"as of {as_of}",
    )
    for asset in ("load_forecast_models", "solar_forecast_models"):
        for m in _metadata(r, asset).get("models", []):
            _say(
                f"    {m['model_name']} v{m['version']}: {'champion' if m['promoted'] else 'challenger'} ({m['promotion_reason']})"
            )
    r = demo.run(
        "grid_ml_training",
        ops={k: ops[k] for k in ("grid_anomaly_model", "grid_failure_model", "grid_segment_model")},
        label=f"as of {as_of}",
    )
    fmd = _metadata(r, "grid_failure_model")
    demo.notes["failure_mode"] = f"{fmd.get('failure_mode')}, {fmd.get('recorded_failures')} recorded failures"
    for asset in ("grid_anomaly_model", "grid_failure_model", "grid_segment_model"):
        md = _metadata(r, asset)
        for k, v in md.items():
            if k.endswith("model_version"):
                p = k[: -len("model_version")]
                _say(f"    {v}: {'champion' if md[p + 'promoted'] else 'challenger'} ({md[p + 'promotion']})")


def scoring(demo: Demo) -> None:
    """Forecasts covering the last day (issued at the end of the day before), today's, and grid ML of the day."""
    day_before = demo.last - dt.timedelta(days=1)
    demo.run(
        "forecast_scoring",
        day_before,
        assets=["gold_load_forecast", "gold_solar_forecast"],
        label="day-ahead issue covering the last day",
    )
    demo.run("forecast_scoring", demo.last, label="the last day's issue and its peak demand")
    demo.run("grid_ml_scoring", demo.last)


def optimisation(demo: Demo) -> None:
    r = demo.run("optimization_daily", demo.last)
    demo.notes["uc_cost"] = _metadata(r, "gold_uc_schedule")["cost"]  # the table holds the schedule, the run its cost
    # the next hourly scoring adds the schedules' advisories to the day's recommendations
    demo.run(
        "grid_ml_scoring",
        demo.last,
        assets=["gold_customer_segments", "gold_recommendations"],
        label="recommendations with the schedule advisories",
    )


#: what the demo posts: the day's critical gold alerts (the asset's default, PostAlertsConfig)
ALERT_SEVERITY = "critical"
#: every critical alert reaches these receivers of streaming_bridge/alertmanager.yml (bridge, pager, chat: one row
#: each in alert_deliveries; email: the SMTP sink, grouped per alertname and feeder)
CRITICAL_RECEIVERS = ("bridge", "pager", "chat", "email")


def alerts(demo: Demo) -> None:
    """Start the delivery path (Alertmanager with the repo's routing, the bridge's receiver -> PostgreSQL +
    MQTT, an SMTP sink), run ``post_batch_alerts`` for the last day, wait for the receivers, stop it all."""
    from lake.delta import Lake
    from streaming_bridge.batch import distinct_alerts, gold_alerts_to_alerts
    from streaming_bridge.stack import DeliveryStack

    schema, outbox = os.environ["GRIDLAKE_ALERTS_SCHEMA"], Path(os.environ["GRIDLAKE_BATCH_OUTBOX"])
    outbox.unlink(missing_ok=True)  # the outbox remembers what it posted: a new demo posts the day again
    # timings capped at 1 s (the critical routes already notify at once; e-mail would wait 30 s to group)
    with DeliveryStack(
        schema,
        demo.home / "alerting",
        mqtt_prefix=f"{schema}/alerts",
        reset=True,
        cap={"group_wait": "1s", "group_interval": "1s"},
    ) as stack:
        _say(
            f"  Alertmanager {stack.alertmanager_url} -> receiver {stack.receiver.url} -> PostgreSQL schema {schema} + MQTT {schema}/alerts/<severity>"
        )
        r = demo.run("post_batch_alerts", demo.last, ops={"alert_notifications": {"config": {"min_severity": ALERT_SEVERITY}}},
                     resources={"alerting": {"config": {"alertmanager_url": stack.alertmanager_url, "outbox_path": str(outbox), "alerts_schema": schema}}})  # fmt: skip
        md = _metadata(r, "alert_notifications")
        # one Alertmanager alert per label set: the hour windows of one asset are one alert
        expected = distinct_alerts(
            gold_alerts_to_alerts(
                Lake(os.environ["GRIDLAKE_LAKE_ROOT"]).read("gold_alerts", demo.last), min_severity=ALERT_SEVERITY
            )
        )
        t = time.time()
        got = stack.wait_for(dict.fromkeys(CRITICAL_RECEIVERS, expected), timeout=120)
        emails = stack.smtp.messages
        emailed = got.pop("email", 0)  # the summary's table is the PostgreSQL one: bridge, pager, chat
    _say(
        f"  {md['eligible']} {ALERT_SEVERITY} gold alerts posted ({expected} assets: one Alertmanager alert each); "
        f"at the receivers after {time.time() - t:.1f}s: {got}; {emailed} by e-mail in {emails} e-mails"
    )
    demo.notes["alert_delivery"] = {"eligible": md["eligible"], "posted": md["newly_posted"], "alertmanager_alerts": expected, "receivers": got,
                                    "emails": emails, "emailed_alerts": emailed}  # fmt: skip


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Demo], None]
    what: str


#: The chain, in the order of a night. Append a Stage to extend the demo (it runs before the
#: catalog refresh, the report and the summary, which always close the demo).
STAGES: list[Stage] = [
    Stage("simulate", simulate, "simulate the utility and land its raw files"),
    Stage("ingest", ingest, "landing -> bronze/silver/quarantine -> gold, late-data replays"),
    Stage("gold", gold, "monthly rollups and the DuckDB catalog"),
    Stage("training", training, "nightly training: load/PV forecasts, grid ML (MLflow champion/challenger)"),
    Stage("scoring", scoring, "forecasts for the last day, grid-ML scoring of the last day"),
    Stage("optimisation", optimisation, "battery, EV, DC-OPF and unit commitment for the last day"),
    Stage("alerts", alerts, "the last day's critical alerts through Alertmanager to the bridge's receivers"),
]


def publish(demo: Demo) -> None:
    """The analysts' catalog over every table the chain wrote, and the day's HTML report."""
    demo.run("refresh_catalog")
    r = demo.run("publish_report", demo.last)
    demo.notes["report"] = _metadata(r, "daily_report")["path"]


# ============================================================================================
# the operator's summary (every figure from the DuckDB catalog, as an analyst would query it)
# ============================================================================================
def _q(demo: Demo, sql: str, **params) -> Any:
    from lake.catalog import query

    return query(demo.catalog, sql, params or None)


def forecast_accuracy(demo: Demo):
    """MAPE on the last day of the champion's day-ahead p50 and of the naive baselines (the same
    local hour the day before / a week before), per entity, against the metered hourly load."""
    return _q(demo, """
        WITH actual AS (
            SELECT entity_id, period_start, mean_kw FROM gold_load_hourly WHERE level = 'feeder'
            UNION ALL
            SELECT 'system', period_start, sum(mean_kw) FROM gold_load_hourly WHERE level = 'feeder' GROUP BY period_start
        ), day AS (
            SELECT * FROM actual WHERE CAST(period_start AT TIME ZONE $tz AS DATE) = $day
        ), fc AS (
            SELECT entity_id, period_start, p50, p10, p90, model, model_version FROM gold_load_forecast
            WHERE date = $day - 1 AND CAST(period_start AT TIME ZONE $tz AS DATE) = $day
        )
        SELECT d.entity_id,
               any_value(fc.model || ' v' || fc.model_version)                                  AS champion,
               round(100 * avg(abs(fc.p50 - d.mean_kw) / d.mean_kw), 2)                          AS mape_champion,
               round(100 * avg(abs(y.mean_kw - d.mean_kw) / d.mean_kw), 2)                       AS mape_naive_day,
               round(100 * avg(abs(w.mean_kw - d.mean_kw) / d.mean_kw), 2)                       AS mape_naive_week,
               round(100 * avg(CASE WHEN d.mean_kw BETWEEN fc.p10 AND fc.p90 THEN 1 ELSE 0 END), 1) AS p10_p90_coverage_pct,
               count(*)                                                                          AS hours
        FROM day d
        JOIN fc USING (entity_id, period_start)
        LEFT JOIN actual y ON y.entity_id = d.entity_id AND y.period_start = d.period_start - INTERVAL 1 DAY
        LEFT JOIN actual w ON w.entity_id = d.entity_id AND w.period_start = d.period_start - INTERVAL 7 DAY
        GROUP BY d.entity_id ORDER BY d.entity_id = 'system' DESC, d.entity_id
    """, tz=TZ, day=demo.last)  # fmt: skip


def top_risks(demo: Demo):
    """The riskiest transformers of the last day, their predicted remaining life, and the lead: hours
    from their first hour at or above the alert band to a failure recorded in truth_events."""
    return _q(demo, """
        WITH r AS (SELECT * FROM gold_transformer_risk WHERE date = $day),
        top AS (
            SELECT transformer_id, max(failure_probability_72h) AS p_fail_72h, arg_max(rul_hours, failure_probability_72h) AS rul_h,
                   arg_max(status, failure_probability_72h) AS status, any_value(customers_downstream) AS customers,
                   min(as_of) FILTER (WHERE status IN ('alert', 'critical')) AS first_alert
            FROM r GROUP BY transformer_id
        ), failure AS (  -- the first failure recorded from 3 days before the day on
            SELECT asset_id AS transformer_id, min(start_time) AS failed_at FROM truth_events
            WHERE event_type = 'transformer_failure' AND start_time >= (SELECT min(as_of) FROM r) - INTERVAL 3 DAY GROUP BY asset_id
        )
        SELECT t.transformer_id, round(p_fail_72h, 3) AS p_fail_72h, round(rul_h, 1) AS rul_h, status, customers,
               strftime(f.failed_at AT TIME ZONE $tz, '%m-%d %H:%M') AS recorded_failure,
               CASE WHEN f.failed_at >= t.first_alert THEN round(date_diff('minute', t.first_alert, f.failed_at) / 60.0, 1) END AS lead_h
        FROM top t LEFT JOIN failure f USING (transformer_id)
        ORDER BY p_fail_72h DESC, t.transformer_id LIMIT 5
    """, tz=TZ, day=demo.last)  # fmt: skip


def anomaly_counts(demo: Demo):
    """The last day's alerts by asset type, rule and severity, and the true incidents of the day by type."""
    alerts = _q(demo, """
        SELECT asset_type, rule, severity, count(*) AS alerts, count(DISTINCT asset_id) AS assets
        FROM gold_alerts WHERE date = $day GROUP BY ALL ORDER BY ALL
    """, day=demo.last)  # fmt: skip
    truth = _q(demo, """
        SELECT event_type, count(*) AS recorded_incidents FROM truth_events
        WHERE start_time < (SELECT max(time) FROM gold_anomaly_scores WHERE date = $day)
          AND coalesce(end_time, start_time) >= (SELECT min(time) FROM gold_anomaly_scores WHERE date = $day)
        GROUP BY ALL ORDER BY ALL
    """, day=demo.last)  # fmt: skip
    return alerts, truth


def segment_mix(demo: Demo):
    return _q(demo, """
        SELECT segment, count(*) AS meters, round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct,
               round(avg(avg_daily_kwh), 1) AS avg_daily_kwh
        FROM gold_customer_segments WHERE as_of = $day GROUP BY segment ORDER BY meters DESC, segment
    """, day=demo.last)  # fmt: skip


def savings(demo: Demo):
    battery = _q(demo, """
        SELECT site_id, round(power_kw) AS power_kw, round(energy_kwh) AS energy_kwh,
               round(baseline_energy_cost + baseline_demand_charge, 2) AS baseline_cost,
               round(energy_cost + demand_charge + degradation_cost, 2) AS cost_with_battery,
               round(savings, 2) AS savings, round(baseline_peak_import_kw, 1) AS baseline_peak_kw, round(peak_import_kw, 1) AS peak_kw
        FROM gold_battery_daily WHERE date = $day
    """, day=demo.last)  # fmt: skip
    ev = _q(demo, """
        WITH sched AS (
            SELECT strategy, period_start, sum(power_kw) AS kw FROM gold_ev_schedule WHERE date = $day GROUP BY ALL
        ), priced AS (
            SELECT s.strategy, sum(s.kw * 5 / 60 * b.price_per_mwh / 1000) AS cost, max(s.kw) AS peak_kw
            FROM sched s ASOF JOIN (SELECT period_start, price_per_mwh FROM gold_battery_schedule WHERE date = $day) b
              ON s.period_start >= b.period_start
            GROUP BY s.strategy
        ), served AS (
            SELECT strategy, sum(delivered_kwh) AS delivered_kwh, 100 * sum(delivered_kwh) / sum(requested_kwh) AS delivered_pct
            FROM gold_ev_sessions WHERE date = $day GROUP BY strategy
        )
        SELECT strategy, round(delivered_kwh, 1) AS delivered_kwh, round(delivered_pct, 2) AS delivered_pct,
               round(cost, 2) AS energy_cost, round(cost / delivered_kwh * 100, 2) AS cents_per_kwh, round(peak_kw, 1) AS peak_kw
        FROM served JOIN priced USING (strategy) ORDER BY strategy
    """, day=demo.last)  # fmt: skip
    return battery, ev


def advisories(demo: Demo):
    """The day's site advisories derived from the battery and EV schedules (gold_recommendations)."""
    return _q(demo, """
        SELECT kind, message, est_monthly_savings, est_monthly_co2_kg, confidence
        FROM gold_recommendations WHERE as_of = $day AND kind IN ('battery_schedule', 'ev_charging') ORDER BY kind
    """, day=demo.last)  # fmt: skip


def grid_costs(demo: Demo):
    opf = _q(demo, """
        SELECT any_value(case_name) AS network, CAST(round(sum(cost_per_h) FILTER (WHERE kind = 'system')) AS BIGINT) AS opf_cost_day,
               round(min(lmp) FILTER (WHERE kind = 'bus'), 2) AS lmp_min, round(max(lmp) FILTER (WHERE kind = 'bus'), 2) AS lmp_max,
               count(*) FILTER (WHERE kind = 'branch' AND loading_pct >= 99.99) AS congested_branch_hours
        FROM gold_opf_dispatch WHERE date = $day
    """, day=demo.last)  # fmt: skip
    uc = _q(demo, """
        SELECT count(DISTINCT unit) FILTER (WHERE unit <> 'system') AS units,
               sum(CASE WHEN is_start THEN 1 ELSE 0 END) AS starts,
               round(sum(p_mw) FILTER (WHERE unit <> 'system'), 1) AS energy_mwh,
               round(max(load_mw), 1) AS peak_load_mw
        FROM gold_uc_schedule WHERE date = $day
    """, day=demo.last)  # fmt: skip
    return opf, uc


def alert_deliveries(demo: Demo):
    """Alerts delivered by severity and receiver (the catalog's snapshot of the bridge's PostgreSQL tables),
    and the delivery latency (startsAt -> received_at at the bridge's receiver)."""
    by = _q(demo, """
        SELECT a.severity, d.receiver, a.alertname, count(*) AS alerts, count(DISTINCT a.asset_id) AS assets
        FROM alert_deliveries d JOIN alerts a USING (fingerprint, starts_at, status)
        WHERE status = 'firing' GROUP BY ALL ORDER BY ALL
    """)  # fmt: skip
    latency = _q(demo, """
        SELECT count(*) AS alerts, round(median(epoch(received_at - starts_at)), 3) AS p50_s, round(max(epoch(received_at - starts_at)), 3) AS max_s
        FROM alerts WHERE status = 'firing'
    """)  # fmt: skip
    return by, latency


def analyst_query(demo: Demo):
    """Feeders ranked by their evening peak (17-21 h local) over the last week, with their load factor."""
    return _q(demo, """
        SELECT entity_id AS feeder,
               round(max(peak_kw) FILTER (WHERE hour(period_start AT TIME ZONE $tz) BETWEEN 17 AND 21), 1) AS evening_peak_kw,
               round(avg(mean_kw) / max(peak_kw), 3) AS load_factor,
               round(sum(energy_kwh) / 1000, 2) AS mwh
        FROM gold_load_hourly
        WHERE level = 'feeder' AND date > $day - 7
        GROUP BY entity_id ORDER BY evening_peak_kw DESC LIMIT 5
    """, tz=TZ, day=demo.last)  # fmt: skip


def gold_row_counts(demo: Demo) -> dict[str, int]:
    """Rows of every gold table in the lake (whole table)."""
    from contracts import TABLES
    from lake.delta import Lake

    lk = Lake(os.environ["GRIDLAKE_LAKE_ROOT"])
    import polars as pl

    return {
        n: int(lk.scan(n).select(pl.len()).collect().item())
        for n in sorted(TABLES)
        if n.startswith("gold_") and lk.exists(n)
    }


def summary(demo: Demo) -> dict[str, Any]:
    """Print the operator's summary; return its figures (for demo.json)."""
    import polars as pl

    pl.Config.set_tbl_hide_dataframe_shape(True)
    pl.Config.set_tbl_hide_column_data_types(True)
    pl.Config.set_tbl_rows(20)
    pl.Config.set_tbl_cols(12)
    pl.Config.set_fmt_str_lengths(40)
    day = demo.last
    out: dict[str, Any] = {}

    def show(title: str, df) -> None:
        print(f"\n== {title}")
        print(df)

    acc = forecast_accuracy(demo)
    show(
        f"Load forecast for {day}: day-ahead champion (issued at the end of {day - dt.timedelta(days=1)}) vs naive baselines, MAPE %",
        acc,
    )
    out["forecast_mape"] = acc.to_dicts()
    risks = top_risks(demo)
    show(
        f"Top transformer risks on {day} (failure model: {demo.notes.get('failure_mode')}; p_fail_72h: max hourly "
        "probability; lead_h: first alert-band hour to a recorded failure)",
        risks,
    )
    out["top_risks"] = risks.to_dicts()
    out["failure_mode"] = demo.notes.get("failure_mode")
    alerts, truth = anomaly_counts(demo)
    show(f"Alerts raised on {day} by asset type, rule and severity", alerts)
    show(f"Incidents recorded (simulator truth) overlapping {day}", truth)
    out["alerts"], out["incidents"] = alerts.to_dicts(), truth.to_dicts()
    seg = segment_mix(demo)
    show(f"Customer segments as of {day}", seg)
    out["segments"] = seg.to_dicts()
    battery, ev = savings(demo)
    show(f"Battery at the system meter on {day}: cost vs no battery ($, the utility profile's tariff)", battery)
    show(f"EV charging on {day}: optimal vs baselines (Caltech sessions, same tariff)", ev)
    out["battery"], out["ev"] = battery.to_dicts(), ev.to_dicts()
    adv = advisories(demo)
    show(f"Advisories from the schedules of {day} (monthly $ and kg CO2 saved against the baselines)", adv)
    out["advisories"] = adv.to_dicts()
    opf, uc = grid_costs(demo)
    show(
        f"DC-OPF over the day ({opf['network'][0]}, loads shaped by the system forecast): cost $ and LMP range $/MWh",
        opf,
    )
    uc_cost = _uc_cost(demo)
    show(f"Unit commitment of the day: cost ${uc_cost:,.2f}", uc)
    out["opf"], out["uc"] = opf.to_dicts(), {**uc.to_dicts()[0], "cost": uc_cost}
    delivered, latency = alert_deliveries(demo)
    show(
        f"Alerts delivered for {day} by severity and receiver (Alertmanager -> the bridge's receivers; PostgreSQL alerts tables)",
        delivered,
    )
    lat = latency.to_dicts()[0]
    print(
        f"   delivery latency startsAt -> received_at: p50 {lat['p50_s']} s, max {lat['max_s']} s over {lat['alerts']} alerts"
    )
    out["alerts_delivered"] = delivered.to_dicts()
    out["alert_delivery_latency_s"] = lat
    aq = analyst_query(demo)
    show("Analyst query: feeders by evening peak (17-21 h local) over the last week", aq)
    out["analyst_query"] = aq.to_dicts()
    return out


def _uc_cost(demo: Demo) -> float:
    """UC cost of the last day from the optimisation run's materialisation (the table holds the schedule)."""
    return round(float(demo.notes["uc_cost"]), 2)


# ============================================================================================
# main
# ============================================================================================
def _environment(home: Path, alerts_schema: str = "gridlake_demo") -> Path:
    """Point the pipeline at the demo's home (embedded SQLite instance); returns the catalog path."""
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    # the embedded default: a dagster.yaml without storage settings => SQLite storage inside
    # DAGSTER_HOME (it only turns telemetry off, so the demo's output stays the demo's)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    if not (dagster_home / "dagster.yaml").exists():
        (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # the demo's own landing zone and lake start empty each time, so a second `make demo` prints
    # exactly what the first did; a lake or landing zone given by environment is never touched
    for var, sub in (("GRIDLAKE_LAKE_ROOT", "lake"), ("GRIDLAKE_LANDING", "landing")):
        if var not in os.environ:
            shutil.rmtree(home / sub, ignore_errors=True)
            os.environ[var] = str(home / sub)
    # one catalog per lake: the default demo uses the README's warehouse/, another --home its own
    warehouse = ROOT / "warehouse" if home == (ROOT / ".demo").resolve() else home / "warehouse"
    os.environ.setdefault("GRIDLAKE_CATALOG", str(warehouse / "gridlake.duckdb"))
    os.environ.setdefault("GRIDLAKE_START_DATE", read_profile(DEMO_PROFILE).partition_start.isoformat())
    os.environ.setdefault("GRIDLAKE_TIMEZONE", TZ)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    # the alerts stage's PostgreSQL schema (wiped at each run: never a shared one from the environment)
    from streaming_bridge.receiver import check_identifier

    os.environ["GRIDLAKE_ALERTS_SCHEMA"] = check_identifier(alerts_schema, "--alerts-schema")
    os.environ["GRIDLAKE_BATCH_OUTBOX"] = str(home / "batch_alert_outbox.db")
    return Path(os.environ["GRIDLAKE_CATALOG"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meters", type=int, default=400)
    ap.add_argument(
        "--days",
        type=int,
        default=24,
        help=f"days simulated (>= {MIN_DAYS}); the models train on up to {WINDOW_DAYS} days before the last one",
    )
    ap.add_argument(
        "--start",
        type=dt.date.fromisoformat,
        default=dt.date(2026, 3, 3),
        help="first local day (the default spans the US spring-forward)",
    )
    ap.add_argument(
        "--seed",
        type=int,
        default=10,
        help="simulator seed (10: a transformer fails on the default last day, a Thursday)",
    )
    ap.add_argument("--home", type=Path, default=ROOT / ".demo")
    ap.add_argument(
        "--alerts-schema",
        default="gridlake_demo",
        help="PostgreSQL schema of the delivered alerts (dropped and rebuilt on each run)",
    )
    ap.add_argument(
        "--results",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "demo.json",
        help="stage timings and gold row counts",
    )
    args = ap.parse_args(argv)
    if args.days < MIN_DAYS:
        ap.error(
            f"--days must be >= {MIN_DAYS} (the models need 18 days of history and 3 backtest days before the last day), got {args.days}"
        )

    t0 = time.time()
    home = args.home.resolve()
    if args.alerts_schema in ("public", "pg_catalog", "information_schema"):
        ap.error(f"--alerts-schema {args.alerts_schema}: the demo drops it on each run; give a schema of its own")
    catalog = _environment(home, args.alerts_schema)
    days = [args.start + dt.timedelta(days=i) for i in range(args.days)]
    demo = Demo(meters=args.meters, days=days, seed=args.seed, home=home, catalog=catalog)
    _say(
        f"gridlake demo: {args.meters} meters x {args.days} days ({days[0]}..{days[-1]}, seed {args.seed}); the night before and the day {demo.last}"
    )

    import warnings

    from dagster import BetaWarning, DagsterInstance

    warnings.filterwarnings("ignore", category=BetaWarning)  # backfill_policy is beta in Dagster 1.13
    warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")  # MLflow pyfunc notice

    from pipelines.definitions import defs

    demo.defs, demo.instance = defs, DagsterInstance.get()
    _say(
        f"Dagster instance: {type(demo.instance.run_storage).__name__} under {os.environ['DAGSTER_HOME']}; MLflow: {os.environ['MLFLOW_TRACKING_URI']}"
    )

    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds of the demo process per stage: the wall time it needs on an idle machine
    stages = [*STAGES, Stage("publish", publish, "refresh the catalog over every table written, write the HTML report")]
    for i, stage in enumerate(stages, 1):
        _say(f"[{i}/{len(stages)}] {stage.name}: {stage.what}")
        t, c = time.time(), time.process_time()
        stage.run(demo)
        timings[stage.name], cpu[stage.name] = round(time.time() - t, 2), round(time.process_time() - c, 2)
        _say(f"[{i}/{len(stages)}] {stage.name} done in {timings[stage.name]:.1f}s ({cpu[stage.name]:.1f}s CPU)")

    _say(f"chain done in {time.time() - t0:.0f}s. Operator summary for {demo.last} from the DuckDB catalog {catalog}:")
    figures = summary(demo)
    total = round(time.time() - t0, 2)
    rows = gold_row_counts(demo)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({
        "what": "make demo: wall time per stage (s) and the rows of every gold table it produced",
        "meters": args.meters, "days": args.days, "first_day": str(days[0]), "last_day": str(demo.last), "seed": args.seed,
        "stage_seconds": timings, "stage_cpu_seconds": cpu, "total_seconds": total, "total_cpu_seconds": round(time.process_time(), 2), "gold_table_rows": rows, "runs": demo.runs,
        "late_replays": demo.notes.get("late_replays", []), "alert_delivery": demo.notes.get("alert_delivery"), "summary": figures,
    }, indent=2, default=str) + "\n")  # fmt: skip
    print(f"\nStage timings (s): {timings}; total {total:.0f}s ({time.process_time():.0f}s CPU) -> {args.results}")
    print(f"Look at it: {demo.notes['report']}   (self-contained HTML, opens from disk)")
    print(
        f"Explore it: DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev -w workspace.yaml   (or make dev)"
    )
    print(f'Query it:   .venv/bin/python -m lake.catalog sql {catalog} "SELECT * FROM catalog_tables LIMIT 5"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
