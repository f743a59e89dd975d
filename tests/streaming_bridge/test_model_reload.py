"""The champion anomaly model in the stream: scored with the batch feature code, and hot-reloaded when the
``champion`` alias moves (a new version promoted mid-stream through the registry's real promotion path)."""

from __future__ import annotations

import copy
import datetime as dt
import threading

import polars as pl
import pytest

from contracts.profile import load_profile
from models.grid.anomaly import AnomalyEnsemble
from models.grid.config import MODEL_ANOMALY, AlertThresholds, AnomalyConfig, FeatureConfig
from models.grid.evaluate import label_readings
from models.grid.features import transformer_features
from models.registry import ModelRegistry
from streaming_bridge.model import ChampionScorer
from streaming_bridge.service import Bridge, BridgeConfig
from streaming_bridge.topics import Topics
from tests.streaming_bridge.bridge_helpers import (
    ListSink,
    publish_all,
    publisher,
    wait_until,
)

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]
NAME = MODEL_ANOMALY["transformer"]
START = dt.date(2026, 6, 1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from simulator import EventRates, SimConfig, Simulator

    sim = Simulator(
        SimConfig(
            n_meters=120,
            start=START,
            days=4,
            seed=5,
            events=EventRates(failures_per_transformer_year=40.0, sags_per_transformer_year=40.0),
        )
    )
    scada = pl.concat([sim.day(START + dt.timedelta(days=i))["scada"] for i in range(4)])
    ref = sim.reference()["ref_transformers"]
    f = transformer_features(scada, ref, None, FeatureConfig.from_profile(load_profile()))
    lab = label_readings(f, sim.truth()["truth_events"], sim.reference()["ref_meters"], "transformer")
    model = AnomalyEnsemble(
        "transformer",
        FeatureConfig.from_profile(load_profile()),
        AlertThresholds.from_bands(load_profile().alert_bands.anomaly),
        config=AnomalyConfig(n_estimators=16, max_train_rows=4000, ae_epochs=1, nystroem_components=16),
    ).fit(f, lab.is_not_null())
    reg = ModelRegistry(f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db")
    run = reg.log_training_run(params={}, metrics={"brier": 0.10}, model=model)
    v1 = reg.register(run, NAME, backtest_id="bt", metrics={"brier": 0.10})
    assert reg.promote_if_better(NAME, v1, metric="brier").promoted
    return sim, scada, model, reg


def test_champion_scores_the_stream_and_a_promotion_mid_stream_is_picked_up(
    trained, lake_and_landing, tmp_path, shared_mosquitto, prefix
):
    sim, scada, model, reg = trained
    lake, zone = lake_and_landing
    # the bridge's topology is the simulated fleet the model was trained on
    from contracts import TABLES

    for n in ("ref_meters", "ref_transformers"):
        lake.write_partition(TABLES[n], TABLES[n].conform(sim.reference()[n]), None)
    scorer = ChampionScorer(NAME, registry=reg, check_every_s=0.2, ref_transformers=sim.reference()["ref_transformers"])
    assert scorer.version == "1"
    sink = ListSink()
    cfg = BridgeConfig(
        mqtt_port=shared_mosquitto,
        client_id=f"b-{prefix[:14]}",
        topic_prefix=prefix,
        spool_dir=str(tmp_path / "spool"),
        http_port=-1,
    )
    cfg.ingress.max_age = dt.timedelta(days=3650)
    b = Bridge(cfg, sink, lake=lake, zone=zone, scorer=scorer)
    b.start()
    th = threading.Thread(target=b.run, daemon=True)
    th.start()
    T = Topics(prefix)
    pub = publisher(shared_mosquitto)

    def send(rows: pl.DataFrame) -> None:
        publish_all(
            pub,
            [
                (T.scada(r["transformer_id"]), {**r, "sample_time": r["sample_time"].isoformat()})
                for r in rows.iter_rows(named=True)
            ],
        )

    try:
        day2 = scada.filter(pl.col("sample_time").dt.date() == START + dt.timedelta(days=2)).sort("sample_time")
        first, second = day2.head(day2.height // 2), day2.tail(day2.height - day2.height // 2)
        send(first)
        wait_until(lambda: b.counts["accepted"] == first.height, timeout=20)
        v1_alerts = [a for a in sink.alerts if a.labels["alertname"] == "TransformerAnomaly"]
        assert all(a.annotations["model"] == f"{NAME}:v1" for a in v1_alerts)
        n_v1 = len(v1_alerts)
        # promote v2 (same model, a utility that wants every transformer watched: alert band 0) mid-stream
        m2 = copy.copy(model)
        m2.thresholds = AlertThresholds(monitoring=0.0, alert=0.0, critical=1.0)
        run = reg.log_training_run(params={}, metrics={"brier": 0.05}, model=m2)
        v2 = reg.register(run, NAME, backtest_id="bt", metrics={"brier": 0.05})
        assert reg.promote_if_better(NAME, v2, metric="brier").promoted
        wait_until(lambda: scorer.version == v2, timeout=30)
        already = set(scorer.active)  # transformers whose v1 alert is still active
        send(second)
        wait_until(lambda: b.counts["accepted"] == day2.height, timeout=20)
        v2_alerts = [
            a
            for a in sink.alerts
            if a.labels["alertname"] == "TransformerAnomaly" and a.annotations["model"] == f"{NAME}:v2"
        ]
        # with the alert band at 0 every transformer not already alerting fires once, on v2
        assert {a.labels["asset_id"] for a in v2_alerts} == set(second["transformer_id"].unique()) - already
        assert len(sink.alerts) >= n_v1 + len(v2_alerts) and scorer.reloads == 2
        assert all(a.severity == "warning" for a in v2_alerts)  # scores < 1.0 = critical band
    finally:
        pub.loop_stop()
        pub.disconnect()
        b.stop()
        th.join(20)
