"""Batch path: gold_alerts rows -> Alert -> the same outbox and Alertmanager as the stream, posted once per
gold fingerprint; and the Dagster glue (the alert_notifications asset, the scoring -> posting sensor, the
critical-alert -> failure-risk rescoring sensor) on a real Dagster instance, Alertmanager and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pytest
from bridge_delivery_helpers import query, wait_until
from dagster_postgres import PostgresRunStorage

from contracts import GOLD_ALERTS
from lake.delta import Lake
from streaming_bridge.am_client import AlertmanagerClient
from streaming_bridge.amproc import AlertmanagerProcess
from streaming_bridge.batch import gold_alerts_to_alerts, topology
from streaming_bridge.outbox import Outbox

DAY = dt.date(2026, 11, 30)
UTC = dt.UTC


def gold_rows(specs: list[tuple[str, str, str, str, float]]) -> pl.DataFrame:
    """(asset_type, asset_id, rule, severity, score) -> gold_alerts rows of DAY."""
    rows = []
    for k, (kind, aid, rule, sev, score) in enumerate(specs):
        w = dt.datetime(2026, 11, 30, 14, tzinfo=UTC) + dt.timedelta(hours=k)
        rows.append(
            {
                "date": DAY,
                "fingerprint": f"{k:040x}",
                "asset_type": kind,
                "asset_id": aid,
                "rule": rule,
                "severity": sev,
                "score": score,
                "window_start": w,
                "window_end": w + dt.timedelta(hours=1),
                "first_seen": w,
                "last_seen": w + dt.timedelta(minutes=30),
                "n_points": 3,
                "reason": "hot_spot_c 4.1 robust z",
                "model_version": "grid_anomaly_transformer:v3",
            }
        )
    return GOLD_ALERTS.conform(pl.DataFrame(rows))


ROWS = [
    ("transformer", "TX-1", "failure_risk", "critical", 0.91),
    ("meter", "M-7", "anomaly_score", "critical", 0.97),
    ("meter", "M-8", "anomaly_score", "alert", 0.72),
]
REF_METERS = pl.DataFrame(
    {
        "meter_id": ["M-7", "M-8"],
        "transformer_id": ["TX-1", "TX-1"],
        "feeder_id": ["F-1", "F-1"],
        "substation_id": ["S-1", "S-1"],
    }
)
REF_TX = pl.DataFrame({"transformer_id": ["TX-1"], "feeder_id": ["F-1"], "substation_id": ["S-1"]})


def test_gold_rows_become_alerts_with_routing_labels():
    t = dt.datetime(2026, 12, 2, 16, tzinfo=UTC)
    pairs = gold_alerts_to_alerts(gold_rows(ROWS), topology(REF_METERS, REF_TX), now=t)
    assert [k for k, _ in pairs] == [f"{0:040x}", f"{1:040x}"]  # critical only by default
    tx, meter = (a for _, a in pairs)
    assert dict(tx.labels) == {
        "alertname": "TransformerFailureRisk",
        "severity": "critical",
        "asset_type": "transformer",
        "asset_id": "TX-1",
        "source": "batch",
        "transformer": "TX-1",
        "feeder": "F-1",
        "region": "S-1",
    }
    assert (
        meter.labels["alertname"] == "MeterAnomaly"
        and meter.labels["transformer"] == "TX-1"
        and meter.labels["region"] == "S-1"
    )
    assert (
        tx.starts_at == t
        and tx.ends_at == t + dt.timedelta(hours=4)
        and tx.annotations["value"] == "0.9100"
        and "2026-11-30T14:00:00+00:00" in tx.annotations["window"]
    )
    assert (
        tx.annotations["dagster_url"].endswith("/assets/gold_alerts?partition=2026-11-30") and tx.annotations["runbook"]
    )
    both = gold_alerts_to_alerts(gold_rows(ROWS), min_severity="alert", now=t)
    assert [a.severity for _, a in both] == ["critical", "critical", "warning"]
    assert "transformer" not in both[2][1].labels  # no topology given: no guessed labels


def test_gold_rows_errors_name_the_problem():
    with pytest.raises(ValueError, match="lack column"):
        gold_alerts_to_alerts(gold_rows(ROWS).drop("reason"))
    with pytest.raises(ValueError, match="no alert name for rule 'failure_risk' on 'meter'"):
        gold_alerts_to_alerts(gold_rows([("meter", "M-1", "failure_risk", "critical", 0.9)]))
    with pytest.raises(ValueError, match="min_severity"):
        gold_alerts_to_alerts(gold_rows(ROWS), min_severity="warning")


def test_outbox_submit_with_keys_is_idempotent_across_processes_of_the_file(tmp_path):
    pairs = gold_alerts_to_alerts(gold_rows(ROWS), min_severity="alert")
    client = AlertmanagerClient("http://127.0.0.1:9", timeout=0.2)  # nothing listens: rows stay queued
    a = Outbox(tmp_path / "ob.db", client, start=False)
    assert a.submit([x for _, x in pairs[:2]], keys=[k for k, _ in pairs[:2]]) == 2
    a.close(0)
    b = Outbox(tmp_path / "ob.db", client, start=False)
    assert b.submit([x for _, x in pairs], keys=[k for k, _ in pairs]) == 1 and b.depth() == 3
    with pytest.raises(ValueError, match="3 alerts but 1 keys"):
        b.submit([x for _, x in pairs], keys=["k"])
    b.close(0)


# ---------------------------------------------------------------------------------------------------------
# Dagster glue on a real instance
# ---------------------------------------------------------------------------------------------------------
def _resources(tmp_path, am_url: str, schema: str = "public", settle_s: float = 1.0):
    from assets.resources import AlertingResource, LakeResource

    return {
        "lake": LakeResource(root=str(tmp_path / "lake")),
        "alerting": AlertingResource(
            alertmanager_url=am_url,
            outbox_path=str(tmp_path / "batch_outbox.db"),
            alerts_schema=schema,
            flush_timeout_s=3,
            settle_s=settle_s,
        ),
    }


def _materialize(tmp_path, am_url, instance):
    from dagster import materialize

    from assets.alerting import alert_notifications

    return materialize(
        [alert_notifications],
        partition_key=DAY.isoformat(),
        resources=_resources(tmp_path, am_url),
        instance=instance,
        raise_on_error=False,
    )


@pytest.mark.postgres
@pytest.mark.mqtt
def test_alert_notifications_asset_posts_each_gold_alert_once(tmp_path, am_config, receiver, store):
    from dagster import DagsterInstance

    lake = Lake(tmp_path / "lake")
    lake.write_partition(GOLD_ALERTS, gold_rows(ROWS), DAY)
    instance = DagsterInstance.ephemeral()
    am = AlertmanagerProcess(am_config, storage_dir=tmp_path / "am")  # not started yet: an outage
    try:
        down = _materialize(tmp_path, am.url, instance)
        assert not down.success
        err = next(e for e in down.all_events if e.is_step_failure).step_failure_data.error.cause.message
        assert "2 alerts not yet accepted by Alertmanager" in err and "batch_outbox.db" in err

        am.start()
        up = _materialize(tmp_path, am.url, instance)
        assert up.success
        md = up.asset_materializations_for_node("alert_notifications")[0].metadata
        assert (
            md["eligible"].value == 2 and md["newly_posted"].value == 0 and md["already_posted"].value == 2
        )  # submitted by the failed run
        wait_until(
            lambda: query(store, "SELECT count(*) FROM {s}.alert_deliveries WHERE receiver = 'pager'") == [(2,)],
            10,
            what="the pages",
        )
        assert sorted(a["labels"]["asset_id"] for a in AlertmanagerClient(am.url).alerts()) == ["M-7", "TX-1"]
        again = _materialize(tmp_path, am.url, instance)
        assert (
            again.success
            and again.asset_materializations_for_node("alert_notifications")[0].metadata["newly_posted"].value == 0
        )
        time.sleep(1.5)
        assert query(store, "SELECT count(*), max(attempts) FROM {s}.alert_deliveries WHERE receiver = 'pager'") == [
            (2, 1)
        ]
    finally:
        am.close()


@pytest.mark.postgres
def test_critical_alert_sensor_requests_failure_risk_rescoring(pg_dagster_home, store, tmp_path):
    from dagster import DagsterInstance, SkipReason, build_sensor_context

    from assets.resources import GridSettings
    from pipelines.sensors import critical_alert_sensor

    def notify(fp: str, tx: str, severity: str, starts: dt.datetime, status: str = "firing"):
        labels = {
            "alertname": "TransformerHotSpot",
            "severity": severity,
            "asset_type": "transformer",
            "asset_id": tx,
            "transformer": tx,
        }
        store.record(
            "bridge",
            [
                {
                    "status": status,
                    "fingerprint": fp,
                    "labels": labels,
                    "annotations": {},
                    "startsAt": starts.isoformat(),
                }
            ],
        )

    # 03:30 UTC on 1 Dec is still 30 Nov in New York
    notify("aa01", "TX-1", "critical", dt.datetime(2026, 12, 1, 3, 30, tzinfo=UTC))
    notify("aa02", "TX-2", "critical", dt.datetime(2026, 12, 1, 15, 0, tzinfo=UTC))
    notify("aa03", "TX-3", "warning", dt.datetime(2026, 12, 1, 15, 0, tzinfo=UTC))
    notify("aa04", "TX-4", "critical", dt.datetime(2026, 12, 1, 15, 0, tzinfo=UTC), status="resolved")
    notify("aa05", "TX-5", "critical", dt.datetime(2026, 12, 1, 16, 0, tzinfo=UTC))
    res = {
        "alerting": _resources(tmp_path, "http://127.0.0.1:9093", store.schema)["alerting"],
        "grid": GridSettings(timezone="America/New_York"),
    }
    instance = DagsterInstance.get()
    assert isinstance(instance.run_storage, PostgresRunStorage)  # deploy/dagster.yaml: the pooled subclass

    # received less than settle_s ago: not settled yet (an hour's settle, so a slow machine cannot outrun it)
    unsettled = {**res, "alerting": _resources(tmp_path, "http://127.0.0.1:9093", store.schema, 3600.0)["alerting"]}
    assert isinstance(critical_alert_sensor(build_sensor_context(instance=instance, resources=unsettled)), SkipReason)

    def evaluate(cursor: str | None = None):
        """One sensor evaluation: (its context, the run requests, or None while it skips)."""
        ctx = build_sensor_context(cursor=cursor, instance=instance, resources=res)
        out = critical_alert_sensor(ctx)
        return ctx, None if isinstance(out, SkipReason) else list(out)

    # settle_s = 1 s: polled with a deadline instead of a fixed sleep (a loaded machine may take longer). The
    # notifications settle one by one, so a poll can catch TX-2 settled and TX-5 (recorded last) not yet: wait until the
    # last one recorded is among the requests, then check the whole grouping
    def all_settled():
        ctx, reqs = evaluate()
        return reqs and any("TX-5" in r.tags["gridlake/transformers"] for r in reqs) and (ctx, reqs)

    ctx, reqs = wait_until(all_settled, 30, 0.2, what="the settled critical alerts")
    assert [(r.partition_key, r.tags["gridlake/transformers"]) for r in reqs] == [
        ("2026-11-30", "TX-1"),
        ("2026-12-01", "TX-2,TX-5"),
    ]
    assert all(r.tags["gridlake/trigger"] == "critical_alert" for r in reqs)
    assert evaluate(ctx.cursor)[1] is None  # nothing new after the cursor
    notify("aa06", "TX-6", "critical", dt.datetime(2026, 12, 1, 17, 0, tzinfo=UTC))
    _, [late] = wait_until(lambda: (r := evaluate(ctx.cursor))[1] and r, 30, 0.2, what="the late critical alert")
    assert (late.partition_key, late.tags["gridlake/transformers"]) == ("2026-12-01", "TX-6")
    # the request is launchable: the job exists for that partition in the code location
    from pipelines.definitions import defs

    job = defs.get_job_def("failure_risk_rescoring")
    assert late.partition_key in job.partitions_def.get_partition_keys(dynamic_partitions_store=instance)


def test_critical_alert_sensor_skips_without_an_alerts_table(pg_dagster_home, pg_schema, tmp_path):
    from dagster import DagsterInstance, SkipReason, build_sensor_context

    from assets.resources import GridSettings
    from pipelines.sensors import critical_alert_sensor

    res = {"alerting": _resources(tmp_path, "http://127.0.0.1:9093", pg_schema)["alerting"], "grid": GridSettings()}
    out = critical_alert_sensor(build_sensor_context(instance=DagsterInstance.get(), resources=res))
    assert isinstance(out, SkipReason) and "no alerts table" in out.skip_message


def test_scoring_success_requests_posting_for_the_same_day():
    from dagster import DagsterInstance, build_run_status_sensor_context, job, op

    from pipelines.sensors import post_alerts_after_scoring

    @op
    def noop():
        return 1

    @job(tags={"dagster/partition": "2026-11-30"})
    def grid_ml_scoring_stand_in():
        noop()

    instance = DagsterInstance.ephemeral()
    result = grid_ml_scoring_stand_in.execute_in_process(instance=instance)
    ctx = build_run_status_sensor_context(
        sensor_name="post_alerts_after_scoring",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_success_event(),
    )
    req = post_alerts_after_scoring(ctx)
    assert req.partition_key == "2026-11-30" and req.run_key == result.run_id


@pytest.mark.postgres
def test_duckdb_catalog_carries_a_snapshot_of_the_alert_tables(tmp_path, store):
    import duckdb
    from dagster import DagsterInstance, materialize

    from assets.catalog import duckdb_catalog
    from assets.resources import AlertingResource, CatalogResource, LakeResource

    labels = {
        "alertname": "TransformerHotSpot",
        "severity": "critical",
        "asset_type": "transformer",
        "asset_id": "TX-1",
        "transformer": "TX-1",
    }
    store.record(
        "pager",
        [
            {
                "status": "firing",
                "fingerprint": "ab12",
                "labels": labels,
                "annotations": {"summary": "hot"},
                "startsAt": "2026-12-02T10:00:00.5Z",
            }
        ],
    )
    store.record(
        "bridge",
        [
            {
                "status": "firing",
                "fingerprint": "ab12",
                "labels": labels,
                "annotations": {"summary": "hot"},
                "startsAt": "2026-12-02T10:00:00.5Z",
            }
        ],
    )
    cat = tmp_path / "gridlake.duckdb"
    res = {
        "lake": LakeResource(root=str(tmp_path / "lake")),
        "catalog": CatalogResource(path=str(cat)),
        "alerting": AlertingResource(alerts_schema=store.schema),
    }
    r = materialize([duckdb_catalog], resources=res, instance=DagsterInstance.ephemeral())
    assert r.success
    with duckdb.connect(str(cat), read_only=True) as con:
        assert con.execute(
            "SELECT fingerprint, severity, transformer, json_extract_string(annotations, '$.summary'), starts_at FROM alerts"
        ).fetchall() == [("ab12", "critical", "TX-1", "hot", dt.datetime(2026, 12, 2, 10, 0, 0, 500000, tzinfo=UTC))]
        assert con.execute("SELECT receiver, attempts FROM alert_deliveries ORDER BY 1").fetchall() == [
            ("bridge", 1),
            ("pager", 1),
        ]
    # no alert tables (bridge not deployed): the catalog still refreshes, without them
    res["alerting"] = AlertingResource(alerts_schema="gl_no_such_schema")
    assert materialize([duckdb_catalog], resources=res, instance=DagsterInstance.ephemeral()).success
    with duckdb.connect(str(cat), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM alerts").fetchone() == (1,)  # kept from the earlier refresh, dated:
        [(at,)] = con.execute("SELECT value FROM catalog_meta WHERE key = 'snapshot_at:alerts'").fetchall()
        assert at < con.execute("SELECT value FROM catalog_meta WHERE key = 'refreshed_at'").fetchone()[0]


@pytest.mark.postgres
@pytest.mark.mqtt
def test_model_drift_reaches_alertmanager_through_the_same_outbox(tmp_path, alertmanager):
    """Issue 14: a drifted model (gold_model_drift) raises a ModelDrift alert on the batch path; rows
    that did not drift, or could not tell, raise none, and a re-run posts nothing new."""
    from dagster import DagsterInstance, materialize

    from assets.alerting import model_drift_notifications
    from contracts import GOLD_MODEL_DRIFT

    lake = Lake(tmp_path / "lake")
    rows = GOLD_MODEL_DRIFT.conform(
        pl.DataFrame(
            {
                "date": [DAY] * 3,
                "model": ["grid_anomaly_meter:v4"] * 3,
                "metric": ["input:level_ratio", "score", "realised_precision"],
                "value": [0.61, 0.05, None],
                "threshold": [0.25, 0.25, 0.2],
                "rows": [28_800, 28_800, 0],
                "drifted": [True, False, None],
            }
        )
    )
    lake.write_partition(GOLD_MODEL_DRIFT, rows, DAY)
    instance = DagsterInstance.ephemeral()

    def run():
        return materialize(
            [model_drift_notifications],
            partition_key=DAY.isoformat(),
            resources=_resources(tmp_path, alertmanager.url),
            instance=instance,
        )

    first = run()
    md = first.asset_materializations_for_node("model_drift_notifications")[0].metadata
    assert md["drifted"].value == 1 and md["newly_posted"].value == 1
    wait_until(
        lambda: any(a["labels"]["alertname"] == "ModelDrift" for a in AlertmanagerClient(alertmanager.url).alerts()),
        10,
        what="the ModelDrift alert",
    )
    [a] = [a for a in AlertmanagerClient(alertmanager.url).alerts() if a["labels"]["alertname"] == "ModelDrift"]
    assert a["labels"]["asset_id"] == "grid_anomaly_meter:v4" and a["labels"]["metric"] == "input:level_ratio"
    assert (
        a["labels"]["severity"] == "warning"
        and "0.610" in a["annotations"]["summary"]
        and "Retrain" in a["annotations"]["runbook"]
    )
    assert run().asset_materializations_for_node("model_drift_notifications")[0].metadata["newly_posted"].value == 0
