"""The optimisation assets materialise end to end on a small lake and write conforming gold tables.

The lake holds gold_load_forecast / gold_solar_forecast partitions written directly (conforming
to their declarations): an older issue covering the whole day and a newer one covering only its
later hours, so the newest-issue-per-hour rule is visible in the battery's load input. A second
lake holds no forecast at all, only last week's gold_load_hourly, for the fallback path.
"""

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from dagster import materialize

from assets.optimization import OPT_ASSETS, gold_battery, gold_ev, gold_opf_dispatch
from assets.resources import AlertingResource, GridSettings, LakeResource
from contracts import OPT_TABLES, TABLES
from lake.delta import Lake
from optimization.dcopf import REFERENCE_OBJECTIVES, load_case, scaled_case, solve_dcopf
from pipelines.jobs import OPT_JOBS
from pipelines.schedules import OPT_SCHEDULES

TZ = "America/New_York"
DAY = dt.date(2026, 3, 5)  # a Thursday
UTC = pl.Datetime("us", "UTC")
RUN_CONFIG = {
    "ops": {
        "gold_opf_dispatch": {"config": {"case": "case14"}},
        "gold_uc_schedule": {"config": {"units": 6}},  # 12+ units: ~15 s of MIP on a loaded 2-core box
        "gold_ev": {
            "config": {"transformer_limit_kw": 30.0, "baseload_peak_kw": 10.0}
        },  # tight: neither serves every kWh
    }
}


def _local(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), ZoneInfo(TZ)).astimezone(dt.timezone.utc)


def _load_shape(stamps: list[dt.datetime]) -> np.ndarray:
    h = np.array([s.astimezone(ZoneInfo(TZ)).hour for s in stamps], dtype=float)
    return 300.0 + 120.0 * np.exp(-(((h - 8) / 2.5) ** 2)) + 220.0 * np.exp(-(((h - 18.5) / 2.5) ** 2))


def _pv_shape(stamps: list[dt.datetime]) -> np.ndarray:
    h = np.array([s.astimezone(ZoneInfo(TZ)).hour for s in stamps], dtype=float)
    return 150.0 * np.clip(np.sin(np.pi * (h - 6.5) / 12), 0, None)


def _issue(partition: dt.date, issued_at: dt.datetime, hours: int, values, model: str) -> pl.DataFrame:
    stamps = [issued_at + dt.timedelta(hours=k + 1) for k in range(hours)]
    p50 = values(stamps)
    return pl.DataFrame({
        "date": partition, "level": "system", "entity_id": "system", "issued_at": issued_at,
        "period_start": stamps, "horizon_h": np.arange(1, hours + 1, dtype=float),
        "p05": 0.85 * p50, "p10": 0.9 * p50, "p50": p50, "p90": 1.1 * p50, "p95": 1.15 * p50, "model": model, "model_version": "3", "fallback_reason": None,
    }).with_columns(pl.col("issued_at", "period_start").cast(UTC))  # fmt: skip


@pytest.fixture(scope="module")
def forecast_lake(tmp_path_factory) -> Lake:
    lk = Lake(tmp_path_factory.mktemp("optlake"))
    prev = DAY - dt.timedelta(days=1)
    old = _issue(prev, _local(prev, 22), 30, _load_shape, "xgboost")  # covers all of DAY
    new = _issue(DAY, _local(DAY, 3), 24, lambda s: 1.2 * _load_shape(s), "xgboost")  # DAY 04:00 onwards, 20 % higher
    lk.write_partition(TABLES["gold_load_forecast"], old, prev)
    lk.write_partition(TABLES["gold_load_forecast"], new, DAY)
    lk.write_partition(
        TABLES["gold_solar_forecast"], _issue(prev, _local(prev, 22), 30, _pv_shape, "quantile_xgboost"), prev
    )
    return lk


def _resources(lk: Lake, alertmanager_url: str = "http://127.0.0.1:9") -> dict:
    """Alerts of a replaced schedule go to an outbox file in the lake's folder (port 9: nothing listens unless a test serves one)."""
    alerting = AlertingResource(
        alertmanager_url=alertmanager_url, outbox_path=str(Path(lk.root) / "outbox.db"), flush_timeout_s=5.0
    )
    return {"lake": LakeResource(root=str(lk.root)), "grid": GridSettings(timezone=TZ), "alerting": alerting}


@pytest.fixture(scope="module")
def run(forecast_lake):
    result = materialize(
        OPT_ASSETS, partition_key=DAY.isoformat(), resources=_resources(forecast_lake), run_config=RUN_CONFIG
    )
    assert result.success
    mats = {
        m.asset_key.to_user_string(): m.event_specific_data.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    return forecast_lake, mats


def _conforms(lk: Lake, name: str) -> pl.DataFrame:
    """The partition, checked against its declaration: exact schema, nulls, bounds, allowed values."""
    t = TABLES[name]
    df = lk.read(t, DAY)
    assert df.schema == t.polars_schema(), name
    assert df.height > 0, name
    for c in t.columns:
        col = df[c.name]
        if not c.nullable:
            assert col.null_count() == 0, f"{name}.{c.name} has nulls"
        if c.min is not None:
            assert col.drop_nulls().min() >= c.min - 1e-6, f"{name}.{c.name} below {c.min}"
        if c.max is not None:
            assert col.drop_nulls().max() <= c.max + 1e-6, f"{name}.{c.name} above {c.max}"
        if c.allowed is not None:
            assert set(col.drop_nulls().to_list()) <= set(c.allowed), f"{name}.{c.name}"
    if t.key:
        assert df.select(t.key).is_duplicated().sum() == 0, f"{name}: duplicate keys {t.key}"
    assert df["date"].unique().to_list() == [DAY]
    return df


def test_every_schedule_table_conforms_to_its_declaration(run) -> None:
    lk, mats = run
    assert set(mats) == set(OPT_TABLES)
    for name in OPT_TABLES:
        _conforms(lk, name)
    for name in ("gold_battery_schedule", "gold_ev_schedule", "gold_opf_dispatch", "gold_uc_schedule"):
        md = mats[name]
        picture = (
            next(v.value for k, v in md.items() if isinstance(v.value, str) and v.value.startswith("!["))
            if md
            else None
        )
        assert picture and "data:image/png;base64," in picture, f"{name}: no plot in metadata"


def test_battery_uses_the_newest_issue_per_hour_and_keeps_soc_in_bounds(run) -> None:
    lk, mats = run
    s = lk.read(TABLES["gold_battery_schedule"], DAY).sort("period_start")
    d = lk.read(TABLES["gold_battery_daily"], DAY).row(0, named=True)
    assert s.height == 96  # 15-minute periods of a 24-hour local day
    stamps = s["period_start"].to_list()
    # hours 00-03 local come from the older issue, 04+ from the newer (20 % higher) one; gross = net + PV
    expected_net = np.where([t >= _local(DAY, 4) for t in stamps], 1.2, 1.0) * _load_shape(
        [t.replace(minute=0) for t in stamps]
    )
    np.testing.assert_allclose(
        s["load_kw"].to_numpy(), expected_net + _pv_shape([t.replace(minute=0) for t in stamps]), rtol=1e-9
    )
    assert s["pv_kw"].max() > 100
    # SOC within [0, capacity], the end no emptier than the start, site power balance holds
    assert s["soc_kwh"].min() >= -1e-6 and s["soc_kwh"].max() <= d["energy_kwh"] + 1e-6
    assert s["soc_kwh"][-1] >= 0.5 * d["energy_kwh"] - 1e-6
    balance = (
        s["grid_import_kw"] - s["grid_export_kw"] + s["discharge_kw"] - s["charge_kw"] - (s["load_kw"] - s["pv_kw"])
    )
    assert balance.abs().max() < 1e-6
    assert d["savings"] > 0 and d["peak_import_kw"] < d["baseline_peak_import_kw"]
    assert (
        "gold_load_forecast" in d["inputs"] and "gold_solar_forecast" in d["inputs"] and "fallback" not in d["inputs"]
    )
    assert mats["gold_battery_schedule"]["solve_seconds"].value >= 0


def test_ev_optimum_delivers_at_least_edf_within_the_limit(run) -> None:
    lk, mats = run
    sess = lk.read(TABLES["gold_ev_sessions"], DAY)
    sched = lk.read(TABLES["gold_ev_schedule"], DAY)
    delivered = dict(sess.group_by("strategy").agg(pl.col("delivered_kwh").sum()).iter_rows())
    assert delivered["optimal"] >= delivered["edf"] - 1e-6
    requested = sess.filter(pl.col("strategy") == "optimal")["requested_kwh"].sum()
    assert delivered["edf"] < delivered["optimal"] < requested  # the limit binds; the LP schedules it better than EDF
    assert delivered["uncontrolled"] >= delivered["optimal"] - 1e-6  # uncontrolled ignores the limit
    # the schedule rows add up to the per-session totals, and the optimum + the forecast baseload respect the 30 kW limit
    opt = sched.filter(pl.col("strategy") == "optimal")
    assert abs(opt["power_kw"].sum() * 5 / 60 - delivered["optimal"]) < 1e-6
    ev_kw = opt.group_by("period_start").agg(pl.col("power_kw").sum()).sort("period_start")
    hours = [_local(DAY, k) for k in range(24)]
    base_h = np.where(np.arange(24) >= 4, 1.2, 1.0) * _load_shape(hours)  # newest issue per hour, as the battery's load
    base_h = 10.0 * base_h / base_h.max()  # scaled to baseload_peak_kw at the forecast peak
    h = ev_kw["period_start"].dt.convert_time_zone(TZ).dt.hour().to_numpy()  # after midnight the day's profile repeats
    assert (ev_kw["power_kw"].to_numpy() + base_h[h]).max() <= 30.0 + 1e-6
    assert (ev_kw["power_kw"].to_numpy() + base_h[h]).max() >= 30.0 - 1e-3  # and it binds
    md = mats["gold_ev_schedule"]
    assert md["safety_status"].value == "passed" and "gold_load_forecast" in md["baseload_source"].value
    assert 99.0 <= md["transformer_peak_utilisation_pct"].value <= 100.0 + 1e-6
    # cost per session adds up; savings vs uncontrolled are the difference of the strategies' costs
    cost = dict(sess.group_by("strategy").agg(pl.col("cost").sum()).iter_rows())
    sv = md["savings_vs_uncontrolled"].value
    assert sv["cost_savings"] == pytest.approx(cost["uncontrolled"] - cost["optimal"], abs=1e-3)
    assert sess.filter(pl.col("strategy") == "optimal")["safety_status"].unique().to_list() == ["passed"]
    assert (
        sess.filter(pl.col("strategy") != "optimal")["safety_status"].null_count()
        == sess.filter(pl.col("strategy") != "optimal").height
    )
    # real sessions re-timed to the same weekday, arrivals on the local day
    assert sess["source_session_date"][0].weekday() == DAY.weekday()
    assert sess["arrival_time"].dt.convert_time_zone(TZ).dt.date().unique().to_list() == [DAY]
    assert mats["gold_ev_schedule"]["sessions"].value == sess.filter(pl.col("strategy") == "optimal").height


def test_opf_objective_equals_the_library_direct_solve(run) -> None:
    lk, _ = run
    df = lk.read(TABLES["gold_opf_dispatch"], DAY)
    system = df.filter(pl.col("kind") == "system").sort("period_start")
    assert system.height == 24 and df.filter(pl.col("kind") == "bus").height == 24 * 14
    base = load_case("case14")
    for row in system.head(3).iter_rows(named=True):
        direct = solve_dcopf(scaled_case(base, row["load_scale"]))
        assert row["cost_per_h"] == pytest.approx(direct.objective, rel=1e-9)
    # at the forecast peak the case's own loads apply: MATPOWER's published optimum
    peak = system.sort("load_scale").row(-1, named=True)
    assert peak["load_scale"] == pytest.approx(1.0)
    assert peak["cost_per_h"] == pytest.approx(REFERENCE_OBJECTIVES["case14"], rel=1e-6)
    assert system["cost_per_h"].min() < peak["cost_per_h"]


def test_uc_meets_load_every_hour(run) -> None:
    lk, mats = run
    df = lk.read(TABLES["gold_uc_schedule"], DAY)
    units = df.filter(pl.col("unit") != "system")
    system = df.filter(pl.col("unit") == "system").sort("period_start")
    assert units["unit"].n_unique() == 6 and system.height == 24
    assert units.filter(~pl.col("is_on") & (pl.col("p_mw") > 1e-6)).height == 0
    thermal = units.group_by("period_start").agg(pl.col("p_mw").sum()).sort("period_start")["p_mw"]
    served = thermal + system["renewable_used_mw"] + system["unserved_mw"]
    np.testing.assert_allclose(served.to_numpy(), system["load_mw"].to_numpy(), rtol=1e-6)
    assert system["renewable_used_mw"].max() > 0  # PV forecast enters as renewables
    assert mats["gold_uc_schedule"]["mip_gap"].value <= 1e-3 + 1e-9


def test_rematerialising_replaces_the_partition(run) -> None:
    lk, _ = run
    names = ("gold_battery_schedule", "gold_battery_daily")
    before = {n: lk.read(TABLES[n], DAY).sort(TABLES[n].key) for n in names}
    v0 = lk.delta(TABLES["gold_battery_schedule"]).version()
    result = materialize([gold_battery], partition_key=DAY.isoformat(), resources=_resources(lk))
    assert result.success
    assert lk.delta(TABLES["gold_battery_schedule"]).version() == v0 + 1
    for n in names:  # same rows, not twice as many: the partition was replaced
        after = lk.read(TABLES[n], DAY).sort(TABLES[n].key)
        assert after.height == before[n].height
        assert after.drop("solve_seconds" if "solve_seconds" in after.columns else []).equals(
            before[n].drop("solve_seconds" if "solve_seconds" in after.columns else [])
        )


def test_without_forecasts_the_fallback_is_last_week_and_named(tmp_path) -> None:
    lk = Lake(tmp_path / "lake")
    src = DAY - dt.timedelta(days=7)
    stamps = [_local(src, 0) + dt.timedelta(hours=k) for k in range(24)]
    rows = []
    for feeder, share in (("F1", 0.6), ("F2", 0.4)):
        kw = share * _load_shape(stamps)
        rows.append(pl.DataFrame({
            "date": src, "level": "feeder", "entity_id": feeder, "period_start": stamps, "energy_kwh": kw, "mean_kw": kw,
            "peak_kw": 1.1 * kw, "n_readings": 4, "n_flagged": 0, "rating_kva": None, "loading_pct_max": None,
        }).with_columns(pl.col("period_start").cast(UTC)))  # fmt: skip
    lk.write_partition(TABLES["gold_load_hourly"], pl.concat(rows), src)
    result = materialize([gold_battery], partition_key=DAY.isoformat(), resources=_resources(lk))
    assert result.success
    md = {
        m.asset_key.to_user_string(): m.event_specific_data.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    source = md["gold_battery_schedule"]["load_source"].value
    assert (
        source.startswith("fallback: gold_load_hourly")
        and str(src) in source
        and "gold_load_forecast does not exist" in source
    )
    assert md["gold_battery_schedule"]["pv_source"].value.startswith("none")
    s = lk.read(TABLES["gold_battery_schedule"], DAY).sort("period_start")
    hourly = s.filter(pl.col("period_start").dt.minute() == 0)["load_kw"].to_numpy()
    np.testing.assert_allclose(
        hourly, _load_shape([_local(DAY, 0) + dt.timedelta(hours=k) for k in range(24)]), rtol=1e-9
    )
    assert lk.read(TABLES["gold_battery_daily"], DAY)["inputs"][0].startswith("load: fallback: gold_load_hourly")


def test_the_graph_is_exported_for_the_code_location(tmp_path) -> None:
    from dagster import Definitions, build_schedule_context

    defs = Definitions(
        assets=OPT_ASSETS,
        jobs=OPT_JOBS,
        schedules=OPT_SCHEDULES,
        resources={"lake": LakeResource(root=str(tmp_path)), "grid": GridSettings(), "alerting": AlertingResource()},
    )
    job = defs.resolve_job_def("optimization_daily")
    assert job.partitions_def is not None
    when = dt.datetime(2026, 3, 5, 4, 0, tzinfo=ZoneInfo(TZ))
    defs.get_repository_def().load_all_definitions()
    req = OPT_SCHEDULES[0](build_schedule_context(scheduled_execution_time=when))
    assert req.partition_key == "2026-03-05"
    graph = defs.resolve_asset_graph()
    from dagster import AssetKey

    for name in OPT_TABLES:
        assert graph.get(AssetKey(name)).is_materializable
    assert AssetKey("gold_load_forecast") in graph.get(AssetKey("gold_battery_schedule")).parent_keys


def test_bad_config_and_infeasible_days_fail_with_named_causes(forecast_lake) -> None:
    from pydantic import ValidationError

    from contracts.profile import DEMO_PROFILE, Tariffs, read_profile

    good = read_profile(DEMO_PROFILE).tariffs.model_dump()
    with pytest.raises(ValidationError, match=r"1 \(flat\) or 24"):
        Tariffs.model_validate({**good, "carbon_kg_per_mwh": [400.0, 300.0]})
    with pytest.raises(ValidationError, match="local hours must be 0..23"):
        Tariffs.model_validate({**good, "wholesale": {**good["wholesale"], "shoulder_hours": [17, 24]}})
    with pytest.raises(ValidationError, match="end_hour 16 must be after start_hour 17"):
        Tariffs.model_validate({**good, "peak_window": {"start_hour": 17, "end_hour": 16}})
    # loads x10 at the peak: demand above case14's generation capacity -> power_balance named
    config = {"ops": {"gold_opf_dispatch": {"config": {"case": "case14", "peak_load_scale": 10.0}}}}
    result = materialize(
        [gold_opf_dispatch],
        partition_key=DAY.isoformat(),
        resources=_resources(forecast_lake),
        run_config=config,
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    assert "power_balance" in failure.error.message
    assert "power_balance" in failure.user_failure_data.metadata["infeasible_groups"].value


def test_economics_project_the_produced_days(run) -> None:
    lk, mats = run
    econ = lk.read(TABLES["gold_battery_economics"], DAY).sort("year")
    daily_row = lk.read(TABLES["gold_battery_daily"], DAY).row(0, named=True)
    assert econ.height == 15 and econ["days_used"].unique().to_list() == [1]
    assert econ["annual_savings"][0] == pytest.approx(daily_row["savings"] * 365)
    assert econ["capex"][0] == pytest.approx(daily_row["energy_kwh"] * 300.0 + daily_row["power_kw"] * 150.0)
    assert econ["cumulative_cash_flow"][-1] == pytest.approx(-econ["capex"][0] + econ["cash_flow"].sum())
    assert mats["gold_battery_economics"]["assumptions"].value["discount_rate"] == 0.07


class _AlertSink:
    """A local HTTP endpoint that records what the outbox posts to /api/v2/alerts (Alertmanager's API)."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        posted = self.posted = []

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posted.extend(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_a_schedule_breaking_the_transformer_limit_is_replaced_and_alerted(forecast_lake, tmp_path) -> None:
    """The model does not see the transformer limit; the gate does: charging at night above it -> hold + alert."""
    lk = Lake(tmp_path / "lake")
    for t in ("gold_load_forecast", "gold_solar_forecast"):
        for d in (DAY - dt.timedelta(days=1), DAY):
            if d in set(forecast_lake.read(TABLES[t])["date"].to_list()):
                lk.write_partition(TABLES[t], forecast_lake.read(TABLES[t], d), d)
    sink = _AlertSink()
    try:
        cfg = {
            "ops": {"gold_battery": {"config": {"transformer_limit_kw": 400.0}}}
        }  # night load ~300-360 kW + charging
        result = materialize(
            [gold_battery], partition_key=DAY.isoformat(), resources=_resources(lk, sink.url), run_config=cfg
        )
        assert result.success
    finally:
        sink.close()
    md = {
        m.asset_key.to_user_string(): m.event_specific_data.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    sched = md["gold_battery_schedule"]
    assert sched["safety_status"].value == "fallback:hold"
    assert "transformer_limit" in sched["safety_violations"].value
    assert sched["safety_alert"].value["delivered"] is True
    s = lk.read(TABLES["gold_battery_schedule"], DAY)
    assert s["charge_kw"].abs().max() == 0 and s["discharge_kw"].abs().max() == 0  # what was published is the hold
    d = lk.read(TABLES["gold_battery_daily"], DAY).row(0, named=True)
    assert (
        d["safety_status"] == "fallback:hold"
        and d["safety_violations"] > 0
        and d["savings"] == pytest.approx(0.0, abs=1e-6)
    )
    [alert] = [a for a in sink.posted if a["labels"]["alertname"] == "UnsafeBatterySchedule"]
    assert alert["labels"]["severity"] == "warning" and alert["labels"]["asset_id"] == "system"
    assert "transformer_limit" in alert["annotations"]["rules"] and "hold" in alert["annotations"]["summary"]


def test_regulation_and_v2g_come_from_the_asset_config(forecast_lake, tmp_path) -> None:
    lk = Lake(tmp_path / "lake")
    for t in ("gold_load_forecast", "gold_solar_forecast"):
        for d in set(forecast_lake.read(TABLES[t])["date"].to_list()):
            lk.write_partition(TABLES[t], forecast_lake.read(TABLES[t], d), d)
    from optimization.daily import ev_sessions_for_day

    stations = sorted(set(ev_sessions_for_day(DAY, TZ)[0]["station_id"].to_list()))[::2]  # every other port opted in
    cfg = {"ops": {
        "gold_battery": {"config": {"reg_price_per_mw_h": 40.0, "reg_soc_buffer_h": 0.5}},
        "gold_ev": {"config": {"transformer_limit_kw": 200.0, "baseload_peak_kw": 10.0, "v2g_opt_in_stations": stations,
                               "v2g_wear_cost_per_mwh": 20.0}},  # export at the tariff price: 180 $/MWh in 16-21 h
    }}  # fmt: skip
    result = materialize(
        [gold_battery, gold_ev], partition_key=DAY.isoformat(), resources=_resources(lk), run_config=cfg
    )
    assert result.success
    s = lk.read(TABLES["gold_battery_schedule"], DAY)
    d = lk.read(TABLES["gold_battery_daily"], DAY).row(0, named=True)
    assert s["reserve_kw"].max() > 0 and d["reserve_revenue"] > 0 and d["safety_status"] == "passed"
    # the headroom the award needs is kept: |net| + reserve <= rating
    assert ((s["discharge_kw"] - s["charge_kw"]).abs() + s["reserve_kw"]).max() <= d["power_kw"] + 1e-6
    ev = lk.read(TABLES["gold_ev_schedule"], DAY).filter(pl.col("strategy") == "optimal")
    exporters = set(ev.filter(pl.col("power_kw") < 0)["station_id"].to_list())
    assert exporters and exporters <= set(stations)
    sess = lk.read(TABLES["gold_ev_sessions"], DAY).filter(pl.col("strategy") == "optimal")
    assert sess["safety_status"].to_list() == ["passed"] * sess.height


def test_advisories_from_the_published_schedules(run) -> None:
    from assets.optimization import advisories_for_day

    lk, _ = run
    adv = advisories_for_day(lk, DAY, TZ)
    assert set(adv["kind"]) == {"battery_schedule", "ev_charging"}
    b = adv.filter(pl.col("kind") == "battery_schedule").row(0, named=True)
    d = lk.read(TABLES["gold_battery_daily"], DAY).row(0, named=True)
    assert b["message"].startswith("Charge the battery at ") and "during low rates ($50/MWh)" in b["message"]
    assert b["est_monthly_savings"] == pytest.approx(30.44 * d["savings"], abs=0.01)
    assert b["est_monthly_co2_kg"] == pytest.approx(30.44 * (d["baseline_carbon_kg"] - d["carbon_kg"]), abs=0.01)
    # the test forecasts carry p10 = 0.9 p50 and p90 = 1.1 p50: confidence 1 - 0.1
    assert b["confidence"] == pytest.approx(0.9)
    e = adv.filter(pl.col("kind") == "ev_charging").row(0, named=True)
    sess = lk.read(TABLES["gold_ev_sessions"], DAY)
    cost = dict(sess.group_by("strategy").agg(pl.col("cost").sum()).iter_rows())
    assert e["est_monthly_savings"] == pytest.approx(30.44 * (cost["uncontrolled"] - cost["optimal"]), abs=0.01)
    assert e["message"].startswith(("Shift EV charging from", "Keep EV charging around"))
    # they conform to the recommendations table (with the customer rows' columns left null)
    t = TABLES["gold_recommendations"]
    t.conform(adv.with_columns(pl.lit(DAY).alias("as_of")))


def test_n1_screening_reads_the_days_peak_hour_of_the_opf_and_writes_its_table(tmp_path) -> None:
    from assets.contingency import gold_n1_screening
    from optimization.contingency import screen_n1

    lk = Lake(str(tmp_path))
    stamps = [dt.datetime(2026, 3, 5, h, tzinfo=dt.timezone.utc) for h in range(3)]
    system = pl.DataFrame({"date": DAY, "period_start": stamps, "case_name": "case39", "kind": "system", "element": 0,
                           "p_mw": [5000.0, 6000.0, 5500.0], "cost_per_h": 1.0, "load_scale": [0.8, 1.0, 0.9]})  # fmt: skip
    opf = TABLES["gold_opf_dispatch"]
    system = pl.concat(
        [pl.DataFrame(schema=opf.polars_schema()), system.with_columns(pl.col("period_start").cast(UTC))],
        how="diagonal_relaxed",
    )
    lk.write_partition(opf, system, DAY)
    result = materialize(
        [gold_n1_screening], partition_key=DAY.isoformat(), resources={"lake": LakeResource(root=str(tmp_path))}
    )
    assert result.success
    out = lk.read_days(TABLES["gold_n1_screening"], DAY, DAY)
    ref = screen_n1(scaled_case(load_case("case39"), 1.0))
    assert out.filter(pl.col("kind") == "overload").height == ref.overloads.height > 0
    red = out.filter(pl.col("kind") == "redispatch").sort("loading_pct", descending=True)
    assert red["contingency_branch"].to_list() == ref.redispatch["contingency_branch"].to_list()
    assert (red["status"] == "secured").all() and (red["period_start"] == stamps[1]).all()


def test_asset_overrides_of_the_settings_are_validated() -> None:
    from pydantic import ValidationError

    from assets.optimization import settings
    from optimization.settings import DEFAULT_SETTINGS

    s = settings(DEFAULT_SETTINGS, regulation={"price_per_mw_h": 8.0, "soc_buffer_h": None})
    assert s.regulation.price_per_mw_h == 8.0 and s.regulation.soc_buffer_h == DEFAULT_SETTINGS.regulation.soc_buffer_h
    with pytest.raises(ValidationError, match="safety.export_limit_kw"):
        settings(DEFAULT_SETTINGS, safety={"export_limit_kw": -1.0})


def test_opf_and_uc_tables_carry_emissions_and_renewable_share(run) -> None:
    """case14 has no listed renewables: every generator thermal, typed by merit order, CO2 from the profile's factors."""
    from contracts.profile import load_profile
    from optimization.daily import opf_generation

    lk, mats = run
    df = lk.read(TABLES["gold_opf_dispatch"], DAY)
    system, gens = df.filter(pl.col("kind") == "system"), df.filter(pl.col("kind") == "generator")
    assert system["co2_t_per_h"].null_count() == 0 and system["renewable_share"].null_count() == 0
    assert gens["co2_t_per_h"].null_count() == 0 and (system["co2_t_per_h"] > 0).all()
    factors = opf_generation(
        load_case("case14"), load_profile().optimization.dispatch, "case14", None, 24
    ).co2_t_per_mwh
    np.testing.assert_allclose(
        gens["co2_t_per_h"].to_numpy(), gens["p_mw"].to_numpy() * factors[gens["element"].to_numpy()]
    )
    per_hour = gens.group_by("period_start").agg(pl.col("co2_t_per_h").sum()).sort("period_start")["co2_t_per_h"]
    np.testing.assert_allclose(system.sort("period_start")["co2_t_per_h"].to_numpy(), per_hour.to_numpy(), rtol=1e-12)
    assert (system["renewable_share"] == 0).all()
    uc = lk.read(TABLES["gold_uc_schedule"], DAY)
    uc_sys = uc.filter(pl.col("unit") == "system")
    assert uc["co2_t_per_h"].null_count() == 0 and (uc_sys["co2_t_per_h"] > 0).all()
    assert uc_sys["renewable_share"].null_count() == 0 and uc_sys["renewable_share"].max() > 0  # PV at noon
    assert mats["gold_uc_schedule"]["emissions_t_day"].value == pytest.approx(
        float(uc_sys["co2_t_per_h"].sum()), rel=1e-3
    )


def test_opf_renewables_never_exceed_their_forecast(forecast_lake, tmp_path) -> None:
    """case118 with the profile's solar and wind generators: each hour's output <= its cap, the cap is the PV
    forecast on the case's scale (solar) or the flat wind fallback, and the day's renewable share is reported."""
    from assets.optimization import site_inputs
    from contracts.profile import load_profile

    disp = load_profile().optimization.dispatch
    units = disp.renewables["case118"]
    config = {"ops": {"gold_opf_dispatch": {"config": {"case": "case118"}}}}
    result = materialize(
        [gold_opf_dispatch], partition_key=DAY.isoformat(), resources=_resources(forecast_lake), run_config=config
    )
    assert result.success
    md = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    df = forecast_lake.read(TABLES["gold_opf_dispatch"], DAY)
    gens = df.filter(pl.col("kind") == "generator").sort("period_start", "element")
    system = df.filter(pl.col("kind") == "system").sort("period_start")
    # the caps, recomputed from the lake: PV forecast x (case demand / the day's peak gross load), split by Pmax
    inp = site_inputs(forecast_lake, "system", DAY, TZ)
    base = load_case("case118")
    solar_mw = inp["pv_kw"] * base["bus"][:, 2].sum() / inp["load_kw"].max()
    pmax = base["gen"][:, 8]
    solar_cap = {g: np.minimum(solar_mw * pmax[g] / pmax[units.solar].sum(), pmax[g]) for g in units.solar}
    for g in units.solar + units.wind:
        rows = gens.filter(pl.col("element") == g)
        cap = solar_cap[g] if g in solar_cap else np.full(24, disp.wind_capacity_factor * pmax[g])
        assert rows.height == 24
        np.testing.assert_allclose(rows["limit_mw"].to_numpy(), cap, rtol=1e-9, atol=1e-9)
        assert (rows["p_mw"].to_numpy() <= cap + 1e-6).all()
        assert (rows["co2_t_per_h"] == 0).all()
    # solar is 0 at night and generates at noon; renewables take a share of every hour (wind)
    solar = (
        gens.filter(pl.col("element").is_in(units.solar))
        .group_by("period_start")
        .agg(pl.col("p_mw").sum())
        .sort("period_start")
    )
    assert solar["p_mw"][0] == pytest.approx(0.0, abs=1e-9) and solar["p_mw"].max() > 100.0
    assert (system["renewable_share"] > 0).all() and system["renewable_share"].max() < 1.0
    ren = (
        gens.filter(pl.col("element").is_in(units.solar + units.wind))
        .group_by("period_start")
        .agg(pl.col("p_mw").sum())
        .sort("period_start")
    )
    total = gens.group_by("period_start").agg(pl.col("p_mw").sum()).sort("period_start")
    np.testing.assert_allclose(
        system["renewable_share"].to_numpy(), (ren["p_mw"] / total["p_mw"]).to_numpy(), rtol=1e-9
    )
    assert "wind" in md["generation_source"].value and md["generator_types"].value["solar"] == len(units.solar)


def test_a_day_of_zero_load_fails_the_shaped_schedules_and_not_the_battery(tmp_path) -> None:
    from assets.optimization import gold_uc_schedule

    lk = Lake(tmp_path / "lake")
    prev = DAY - dt.timedelta(days=1)
    lk.write_partition(
        TABLES["gold_load_forecast"], _issue(prev, _local(prev, 22), 30, lambda s: np.zeros(len(s)), "xgboost"), prev
    )
    for asset, name in (
        (gold_opf_dispatch, "gold_opf_dispatch"),
        (gold_uc_schedule, "gold_uc_schedule"),
        (gold_ev, "gold_ev_schedule"),
    ):
        result = materialize([asset], partition_key=DAY.isoformat(), resources=_resources(lk), raise_on_error=False)
        assert not result.success, name
        failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
        assert f"{name} {DAY}: the load input of 'system' is 0 all day" in failure.error.cause.message, name
    config = {"ops": {"gold_battery": {"config": {"power_kw": 50.0}}}}
    assert materialize(
        [gold_battery], partition_key=DAY.isoformat(), resources=_resources(lk), run_config=config
    ).success
    s = lk.read(TABLES["gold_battery_schedule"], DAY)
    assert (s["load_kw"] == 0).all() and s["charge_kw"].max() > 0  # it still arbitrates on the tariff
