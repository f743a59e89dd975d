"""Grid-ML assets, materialised for real: a small simulated utility is landed and ingested through
lake.ingest, the three models are trained and registered in a real MLflow (SQLite) registry, one day
is scored into every grid gold table, and the day is scored again to prove it is replaced.

The shared fixture (ingest 8 days, train) takes most of the time: ~60-100 s on the shared 2-core
machine, hence ``slow``; the definitions test is fast."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import polars as pl
import pytest
from dagster import DagsterEventType, DagsterInstance, materialize

from contracts import DEFAULT_TIMEZONE
from models.registry import FLOAT_TIE

START = dt.date(2026, 6, 1)
DAYS = 8
DAY = START + dt.timedelta(days=DAYS - 1)  # scored day; START is its "same day last week"
TRAINING = ["grid_anomaly_model", "grid_failure_model", "grid_segment_model"]
GOLD = [
    "gold_anomaly_scores",
    "gold_alerts",
    "gold_transformer_risk",
    "gold_customer_segments",
    "gold_recommendations",
    "gold_dr_events",
    "gold_dr_participations",
    "gold_energy_balance",
    "gold_ntl_suspects",
    "gold_model_drift",
]
#: may legitimately be empty on a day (no transformer whose unexplained loss rose)
MAYBE_EMPTY = {"gold_ntl_suspects"}
WINDOW = {"window_days": 10, "min_days": 5, "eval_days": 1}
RUN_CONFIG = {
    "ops": {
        "grid_anomaly_model": {"config": {**WINDOW, "ae_epochs": 1, "n_estimators": 16, "max_train_rows": 5_000}},
        "grid_failure_model": {"config": {**WINDOW, "n_estimators": 40, "max_depth": 3}},
        "grid_segment_model": {"config": {**WINDOW}},
    }
}
SCORE_CONFIG = {
    "ops": {
        "gold_segments_and_recommendations": {"config": {"profile_days": 8}},
        # about 0.6 of the summed transformer kVA is this feeder's evening peak: 0.45 makes DR events
        "gold_demand_response": {"config": {"capacity_share": 0.45}},
    }
}


@pytest.fixture(scope="module")
def grid_lake(tmp_path_factory):
    """Landing -> lake.ingest for 8 days of a 60-meter fleet with frequent events, reference and truth
    tables loaded as assets/reference.py does, and gold_load_hourly (the DR forecast fallback)."""
    from contracts import SOURCES, TABLES
    from lake import gold
    from lake.delta import Lake
    from lake.ingest import ingest_partition, known_entity_ids
    from lake.landing import LocalLanding
    from simulator import EventRates, SimConfig, Simulator, write_landing_day, write_landing_reference

    rates = EventRates(
        failures_per_transformer_year=40.0,
        stuck_per_meter_year=6.0,
        zero_per_meter_year=6.0,
        theft_per_meter_year=2.0,
        sags_per_transformer_year=80.0,
    )
    # seed 3: five transformer failures in the 8 days, four of them before the held-out last day
    sim = Simulator(SimConfig(n_meters=60, start=START, days=DAYS, seed=3, events=rates))
    root = tmp_path_factory.mktemp("grid_ml")
    zone, lake = LocalLanding(root / "landing"), Lake(root / "lake")
    write_landing_reference(sim, zone)
    for folder, names in (
        ("reference", ("ref_meters", "ref_transformers", "ref_weather_stations")),
        ("truth", ("truth_customers", "truth_events")),
    ):
        for n in names:
            lake.write_partition(
                TABLES[n], TABLES[n].conform(pl.read_parquet(zone.local_path(f"{folder}/{n}.parquet"))), None
            )
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        write_landing_day(sim, day, zone)
        for src in SOURCES.values():
            ingest_partition(zone, lake, src, day, known_entity_ids(lake, src), tz=DEFAULT_TIMEZONE)
        hourly = gold.load_hourly(
            lake.read("silver_meter_readings", day), lake.read("ref_meters"), lake.read("ref_transformers"), day
        )
        lake.write_partition(TABLES["gold_load_hourly"], hourly, day)
    return root, lake


def _resources(root, lake):
    from assets.resources import GridSettings, LakeResource, MlflowResource

    return {
        "lake": LakeResource(root=lake.root),
        "grid": GridSettings(timezone="America/New_York"),
        "mlflow": MlflowResource(
            tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_location=(root / "artifacts").as_uri()
        ),
    }


def _meta(result, key: str) -> dict:
    for e in result.get_asset_materialization_events():
        if e.asset_key.to_user_string() == key:
            return {k: v.value for k, v in e.materialization.metadata.items()}
    raise AssertionError(f"{key} was not materialised")


def _checks(instance, run_id) -> dict:
    evs = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    return {
        (
            e.dagster_event.event_specific_data.asset_key.to_user_string(),
            e.dagster_event.event_specific_data.check_name,
        ): e.dagster_event.event_specific_data
        for e in evs
    }


@pytest.fixture(scope="module")
def trained(grid_lake):
    from assets.grid_ml import GRID_ML_ASSETS

    root, lake = grid_lake
    instance = DagsterInstance.ephemeral()
    res = materialize(
        GRID_ML_ASSETS, selection=TRAINING, instance=instance, resources=_resources(root, lake), run_config=RUN_CONFIG
    )
    assert res.success
    return root, lake, instance, res


@pytest.mark.slow
def test_training_registers_and_promotes_every_model(trained):
    from assets.resources import MlflowResource

    root, lake, _, res = trained
    an = _meta(res, "grid_anomaly_model")
    # the first version of each model becomes champion; metadata says so and names the run
    for kind in ("meter", "transformer"):
        assert an[f"{kind}/promoted"] is True and an[f"{kind}/model_version"] == f"grid_anomaly_{kind}:v1"
        assert 0.0 <= an[f"{kind}/metrics"]["brier"] <= 1.0
        # issue 14: the peers were candidates, scored on the same held-out day; the one registered is named
        c = an["candidates"][kind]
        assert set(c["precision_at_budget"]) == {"ensemble", "isolation_forest", "lof"}
        assert c["selected"] in c["precision_at_budget"] and c["why"]
        # judged on 4 rolling 1-day windows (selection_windows), each candidate trained before its window
        assert c["windows"] == [f"{DAY - dt.timedelta(days=d)}..{DAY - dt.timedelta(days=d)}" for d in (3, 2, 1, 0)]
    assert an["days_found"] == DAYS and an["window"] == f"{DAY - dt.timedelta(days=9)}..{DAY}"
    fm = _meta(res, "grid_failure_model")
    assert fm["promoted"] is True and fm["train_positives"] > 0 and fm["anomaly_model"] == "grid_anomaly_transformer:v1"
    # four recorded failures: below FailureConfig.min_recorded_failures, so the physics prior scores (and says so)
    assert fm["failure_mode"] == "physics_prior"
    reg = _resources(root, lake)["mlflow"].registry()
    run = reg.client.get_run(an["meter/run_id"])
    assert run.data.metrics["brier"] == pytest.approx(an["meter/metrics"]["brier"])
    for name in (
        "grid_anomaly_meter",
        "grid_anomaly_transformer",
        "grid_transformer_failure",
        "grid_customer_segments",
    ):
        assert reg.champion(name) is not None
    assert type(reg.load("grid_transformer_failure")).__name__ == "FailureModel"
    assert isinstance(
        MlflowResource(tracking_uri=reg.tracking_uri).registry().load_champion("grid_customer_segments").names_, list
    )


@pytest.mark.slow
def test_segment_retrain_is_promoted_only_when_it_beats_the_rescored_champion(trained):
    from assets.grid_ml import GRID_ML_ASSETS

    root, lake, instance, _ = trained
    reg = _resources(root, lake)["mlflow"].registry()
    before = reg.champion("grid_customer_segments")
    # same window, same seed: an identical model on the identical evaluation is not "better"
    same = materialize(
        GRID_ML_ASSETS,
        selection=["grid_segment_model"],
        instance=instance,
        resources=_resources(root, lake),
        run_config={"ops": {"grid_segment_model": {"config": WINDOW}}},
    )
    m = _meta(same, "grid_segment_model")
    # the same model scored twice may differ in the last bits (summation order): within the registry's tie
    # tolerance that is no gain (5.55e-17 seen in CI), so it must not be promoted
    assert m["promoted"] is False
    gain = float(re.search(r"improvement (\S+) <=", m["promotion"]).group(1))
    assert abs(gain) <= FLOAT_TIE, m["promotion"]
    assert str(reg.champion("grid_customer_segments").version) == str(before.version)
    # a shorter window ending a day earlier is a different evaluation: the champion is re-scored on it first
    other = materialize(
        GRID_ML_ASSETS,
        selection=["grid_segment_model"],
        instance=instance,
        resources=_resources(root, lake),
        run_config={
            "ops": {"grid_segment_model": {"config": {**WINDOW, "as_of": str(DAY - dt.timedelta(days=1)), "seed": 1}}}
        },
    )
    o = _meta(other, "grid_segment_model")
    champ_tags = reg.client.get_model_version("grid_customer_segments", before.version).tags
    cand = o["metrics"]["silhouette"]
    rescored = float(champ_tags["metric.silhouette"])
    assert (
        champ_tags["backtest_id"]
        == reg.client.get_model_version("grid_customer_segments", o["model_version"].split(":v")[1]).tags["backtest_id"]
    )
    assert o["promoted"] is (cand > rescored)
    now = reg.champion("grid_customer_segments")
    assert str(now.version) == (o["model_version"].split(":v")[1] if cand > rescored else str(before.version))


@pytest.mark.slow
def test_too_little_history_names_found_and_needed_days(trained):
    from assets.grid_ml import GRID_ML_ASSETS

    root, lake, instance, _ = trained
    res = materialize(
        GRID_ML_ASSETS,
        selection=["grid_anomaly_model"],
        instance=instance,
        resources=_resources(root, lake),
        run_config={"ops": {"grid_anomaly_model": {"config": {"window_days": 28, "min_days": 14}}}},
        raise_on_error=False,
    )
    assert not res.success
    msg = res.get_step_failure_events()[0].step_failure_data.error.cause.message
    assert "found 8 day(s)" in msg and "need at least 14" in msg and "silver_meter_readings" in msg


@pytest.mark.slow
def test_scoring_writes_every_gold_table_and_a_rerun_replaces_the_partition(trained):
    from assets.grid_ml import GRID_ML_ASSETS
    from contracts import TABLES

    root, lake, instance, _ = trained
    kw = dict(
        selection=GOLD,
        instance=instance,
        resources=_resources(root, lake),
        partition_key=DAY.isoformat(),
        run_config=SCORE_CONFIG,
    )
    first = materialize(GRID_ML_ASSETS, **kw)
    assert first.success
    checks = _checks(instance, first.run_id)
    assert checks[("gold_alerts", "expectations")].passed
    assert checks[("gold_alerts", "one_alert_per_fingerprint")].passed
    assert (
        checks[("gold_anomaly_scores", "expectations")].passed
        and checks[("gold_transformer_risk", "expectations")].passed
    )

    counts = {}
    for name in GOLD:
        t = TABLES[name]
        df = lake.read(t, DAY)
        assert df.schema == t.polars_schema(), name
        counts[name] = df.height
    assert all(counts[n] > 0 for n in GOLD if n not in MAYBE_EMPTY), counts
    # issue 14: the balance has every transformer and feeder; drift covers both anomaly models; risk says why
    bal = lake.read(TABLES["gold_energy_balance"], DAY)
    assert bal.filter(pl.col("level") == "transformer").height == lake.read("ref_transformers").height
    drift = lake.read(TABLES["gold_model_drift"], DAY)
    assert {m.split(":")[0] for m in drift["model"]} == {
        "grid_anomaly_meter",
        "grid_anomaly_transformer",
        "grid_transformer_failure",
    }
    fd = drift.filter(pl.col("model").str.starts_with("grid_transformer_failure"))
    assert {"score", "input:excess_rise_6h", "realised_precision"} <= set(fd["metric"])
    assert drift.filter(pl.col("metric") == "score")["value"].is_not_null().all()
    risky = lake.read(TABLES["gold_transformer_risk"], DAY).filter(pl.col("failure_probability_72h") >= 0.5)
    assert risky.height == 0 or risky["top_factor"].is_not_null().all()

    scores = lake.read(TABLES["gold_anomaly_scores"], DAY)
    silver_n = lake.read("silver_meter_readings", DAY).height + lake.read("silver_scada", DAY).height
    assert scores.height == silver_n  # one score per reading and per SCADA sample of the day
    alerts = lake.read(TABLES["gold_alerts"], DAY)
    assert alerts["fingerprint"].is_unique().all()
    for r in alerts.head(20).iter_rows(named=True):
        fp = f"{r['asset_type']}|{r['asset_id']}|{r['rule']}|{r['window_start'].isoformat()}"
        assert r["fingerprint"] == hashlib.sha1(fp.encode()).hexdigest()
    # every alert row is backed by scores at/above its rule's alert threshold in its window
    an = alerts.filter(pl.col("rule") == "anomaly_score")
    assert an.height > 0 and (an["score"] >= 0.85).all()
    risk = lake.read(TABLES["gold_transformer_risk"], DAY)
    assert risk["transformer_id"].n_unique() == lake.read("ref_transformers").height
    ev, pa = lake.read(TABLES["gold_dr_events"], DAY), lake.read(TABLES["gold_dr_participations"], DAY)
    assert set(pa["event_id"]) <= set(ev["event_id"])
    dr = _meta(first, "gold_dr_events")
    assert "same local hour last week" in dr["forecast_source"] and str(START) in dr["forecast_source"]
    seg_meta = _meta(first, "gold_customer_segments")
    assert seg_meta["dagster/row_count"] == lake.read("ref_meters").height
    assert "data:image/png;base64," in _meta(first, "gold_anomaly_scores")["score_distribution"]

    again = materialize(GRID_ML_ASSETS, **kw)
    assert again.success
    for name in GOLD:
        assert lake.read(TABLES[name], DAY).height == counts[name], name
    assert lake.read(TABLES["gold_alerts"])["fingerprint"].is_unique().all()
    assert lake.read(TABLES["gold_alerts"], DAY).sort("fingerprint").equals(alerts.sort("fingerprint"))

    # once the forecasting layer writes gold_load_forecast, DR plans against it (here: the p50 of the
    # feeder is twice its capacity all day, so one event spans the whole day)
    cap = (
        SCORE_CONFIG["ops"]["gold_demand_response"]["config"]["capacity_share"]
        * lake.read("ref_transformers")["rating_kva"].sum()
    )
    assert dr["capacity_kw"]["F001"] == pytest.approx(cap, abs=0.05)  # the metadata rounds to 0.1 kW
    times = pl.datetime_range(
        dt.datetime(2026, 6, 8, 4, tzinfo=dt.timezone.utc),
        dt.datetime(2026, 6, 9, 3, tzinfo=dt.timezone.utc),
        "1h",
        eager=True,
        time_zone="UTC",
    )
    fc = pl.DataFrame({"period_start": times}).with_columns(
        pl.lit(DAY).alias("date"),
        pl.lit("feeder").alias("level"),
        pl.lit("F001").alias("entity_id"),
        pl.lit(dt.datetime(2026, 6, 7, 4, tzinfo=dt.timezone.utc)).alias("issued_at"),
        (
            (pl.col("period_start") - pl.lit(dt.datetime(2026, 6, 7, 4, tzinfo=dt.timezone.utc)))
            .dt.total_hours()
            .cast(pl.Float64)
        ).alias("horizon_h"),
        pl.lit(1.25 * cap).alias("p05"),
        pl.lit(1.5 * cap).alias("p10"),
        pl.lit(2.0 * cap).alias("p50"),
        pl.lit(2.5 * cap).alias("p90"),
        pl.lit(2.75 * cap).alias("p95"),
        pl.lit("test").alias("model"),
        pl.lit("test:v1").alias("model_version"),
        pl.lit(None, dtype=pl.Utf8).alias("fallback_reason"),
    )
    lake.write_partition(TABLES["gold_load_forecast"], fc, DAY)
    fr = materialize(
        GRID_ML_ASSETS,
        **{
            **kw,
            "selection": ["gold_dr_events", "gold_dr_participations"],
            "run_config": {"ops": {"gold_demand_response": SCORE_CONFIG["ops"]["gold_demand_response"]}},
        },
    )
    assert fr.success and _meta(fr, "gold_dr_events")["forecast_source"].startswith("gold_load_forecast p50")
    ev = lake.read(TABLES["gold_dr_events"], DAY)
    assert ev.height == 1
    e = ev.row(0, named=True)
    assert (e["start_time"], e["end_time"]) == (times[0], times[-1] + dt.timedelta(hours=1))
    assert e["target_reduction_kw"] == pytest.approx((2.0 * cap - cap) * 1.1)


def test_definitions_with_the_grid_ml_assets_load_and_schedule():
    from dagster import Definitions

    from assets.grid_ml import GRID_ML_ASSETS
    from assets.resources import MlflowResource
    from pipelines.definitions import ALL_ASSETS, defs
    from pipelines.jobs import GRID_ML_JOBS
    from pipelines.schedules import GRID_ML_SCHEDULES

    d = Definitions(
        assets=[*ALL_ASSETS, *GRID_ML_ASSETS],
        jobs=GRID_ML_JOBS,
        schedules=GRID_ML_SCHEDULES,
        resources={**defs.resources, "mlflow": MlflowResource()},
    )
    repo = d.get_repository_def()
    sched = {s.name: s for s in repo.schedule_defs}
    assert sched["grid_ml_training_nightly"].cron_schedule == "0 2 * * *"
    assert sched["grid_ml_training_nightly"].execution_timezone == "America/New_York"
    from dagster import AssetKey

    from contracts import GRID_TABLES

    assert {AssetKey(n) for n in GRID_TABLES} <= repo.asset_graph.get_all_asset_keys()
    assert sched["grid_ml_scoring_hourly"].cron_schedule == "20 * * * *"


def test_hourly_schedule_scores_the_local_day_once_it_has_readings(tmp_path):
    """At 00:20 local on 2026-06-08 the schedule targets 2026-06-08 (not the UTC date), and skips
    while that day has no silver readings."""
    import zoneinfo

    from dagster import SkipReason, build_schedule_context

    from assets.resources import LakeResource
    from contracts import TABLES
    from lake.delta import Lake
    from pipelines.schedules import grid_ml_scoring_hourly

    lake = Lake(tmp_path / "lake")
    at = dt.datetime(2026, 6, 8, 0, 20, tzinfo=zoneinfo.ZoneInfo("America/New_York"))

    def run():
        return grid_ml_scoring_hourly(
            build_schedule_context(scheduled_execution_time=at, resources={"lake": LakeResource(root=lake.root)})
        )

    assert isinstance(run(), SkipReason)  # no table yet
    row = {
        "date": dt.date(2026, 6, 7),
        "meter_id": "M1",
        "reading_time": dt.datetime(2026, 6, 7, 12, tzinfo=dt.timezone.utc),
        "consumption_kwh": 0.5,
        "demand_kw": 1.0,
        "voltage": 230.0,
        "current_amps": 4.0,
        "power_factor": 0.95,
        "quality_flag": "ok",
        "source_file": "f.csv",
        "source_row": 1,
    }
    t = TABLES["silver_meter_readings"]
    lake.write_partition(t, pl.DataFrame([row]), dt.date(2026, 6, 7))
    assert isinstance(run(), SkipReason)  # yesterday has readings, today not yet
    lake.write_partition(
        t,
        pl.DataFrame(
            [
                {
                    **row,
                    "date": dt.date(2026, 6, 8),
                    "reading_time": dt.datetime(2026, 6, 8, 4, 0, tzinfo=dt.timezone.utc),
                }
            ]
        ),
        dt.date(2026, 6, 8),
    )
    req = run()
    assert req.partition_key == "2026-06-08"
