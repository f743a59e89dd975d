"""Issue 14: the PyOD peers as candidates of the anomaly training, judged at the operators' alert budget."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import joblib
import numpy as np
import polars as pl
import pytest

from contracts.profile import load_profile
from models.grid.anomaly import AnomalyEnsemble
from models.grid.config import AlertThresholds, AnomalyConfig, FeatureConfig
from models.grid.evaluate import budget_metrics, label_readings
from models.grid.features import meter_features, transformer_features
from models.grid.labels import empty_events
from models.grid.peers import DEPLOYABLE_PEERS, PEERS, fit_peer, peer_raw
from models.grid.pipelines import pool_windows, select_candidate, train_anomaly
from models.registry import paired_comparison

FC = FeatureConfig.from_profile(load_profile())
BANDS = AlertThresholds.from_bands(load_profile().alert_bands.anomaly)
SMALL = AnomalyConfig(n_estimators=16, max_train_rows=6000, ae_epochs=2, nystroem_components=32, seed=1, peers=())
UTC = timezone.utc
START, DAYS = date(2026, 6, 1), 8  # the grid_sim fixture's period (conftest)


def _events(rows: list[tuple[str, str, datetime, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "event_type": [r[1] for r in rows],
            "asset_type": ["meter"] * len(rows),
            "asset_id": [r[0] for r in rows],
            "start_time": [r[2] for r in rows],
            "end_time": [r[3] for r in rows],
        },
        schema_overrides={"start_time": pl.Datetime("us", "UTC"), "end_time": pl.Datetime("us", "UTC")},
    )


def test_budget_alerts_the_top_assets_of_each_day_and_ignores_row_order():
    """5 alerts per 1,000 assets per day with 4 assets = 1 alert a day (at least one): the asset with the
    day's highest reading. Day 1's alert hits a stuck meter, day 2's a normal meter: precision 0.5. Equal
    scores are broken by asset id, so shuffling the rows changes nothing."""
    t0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
    keys, score = [], []
    for day in range(2):
        for a, s in zip(("m1", "m2", "m3", "m4"), (0.2, 0.9 if day == 0 else 0.1, 0.5, 0.95 if day == 1 else 0.3)):
            keys.append((a, t0 + timedelta(days=day)))
            score.append(s)
    keys.append(("m3", t0 + timedelta(days=1, hours=1)))
    score.append(0.95)  # ties m4's day-2 maximum: m3 < m4 by id, so m3 is alerted
    frame = pl.DataFrame(keys, schema={"asset_id": pl.Utf8, "time": pl.Datetime("us", "UTC")}, orient="row")
    ev = _events([("m2", "stuck_meter", t0 - timedelta(hours=2), t0 + timedelta(hours=3))])
    r = budget_metrics(frame, np.array(score), ev, None, "UTC")
    assert (r["alerts_per_day"], r["alerts"], r["true_alerts"], r["precision"]) == (1, 2, 1, 0.5)
    assert r["per_type"]["stuck_meter"] == {"events": 1, "detected": 1, "detection_rate": 1.0, "median_delay_h": 2.0}
    perm = np.random.default_rng(0).permutation(frame.height)
    assert budget_metrics(frame[perm], np.array(score)[perm], ev, None, "UTC") == r
    # the event on m3 on day 2 instead: the tie decides, and it goes to m3 whatever the order
    ev3 = _events([("m3", "zero_meter", t0 + timedelta(days=1), t0 + timedelta(days=1, hours=5))])
    assert budget_metrics(frame[perm], np.array(score)[perm], ev3, None, "UTC")["true_alerts"] == 1
    with pytest.raises(ValueError, match="scores for"):
        budget_metrics(frame, np.array(score[:-1]), ev, None, "UTC")


def _cand(by_event: dict[str, int], alerts: float = 60.0) -> dict:
    """A candidate's pooled budget figures from its alerts per confirmed incident."""
    true = float(sum(by_event.values()))
    return {"budget_true_alerts": true, "budget_alerts": alerts, "budget_events": float(len(by_event)),
            "precision_at_budget": round(true / alerts, 4), "budget_true_alerts_by_event": by_event}  # fmt: skip


def test_a_clearly_better_challenger_is_promoted_and_a_noise_level_one_is_not():
    """The champion policy's paired comparison over confirmed incidents: a peer that alerts more on 14 of
    16 incidents (and less on none) replaces the ensemble; one that wins 6 incidents and loses 4 (net +3
    alerts, precision 0.32 vs 0.27) does not, nor does one winning 2 of 2 differing incidents by a lot
    (too few units to know the noise), nor a tie; with two such peers the clear one wins."""
    ev = [f"e{i}" for i in range(16)]
    base = dict.fromkeys(ev, 1)
    clear = {e: (3 if i < 14 else 1) for i, e in enumerate(ev)}
    noise = {e: (2 if i < 5 else 0 if i < 9 else 1) for i, e in enumerate(ev)}
    noise["e15"] = 3  # net +3 (precision 0.32 vs 0.27 at 60 alerts)
    few = {e: (6 if i < 2 else 1) for i, e in enumerate(ev)}
    name, why = select_candidate({"ensemble": _cand(base), "lof": _cand(clear)})
    assert name == "lof" and "beyond the noise" in why and "44 of 60" in why
    for other in (noise, few, dict(base)):
        name, why = select_candidate({"ensemble": _cand(base), "lof": _cand(other)})
        assert name == "ensemble" and "within the noise" in why and "kept (incumbent)" in why, other
    assert _cand(noise)["precision_at_budget"] > _cand(base)["precision_at_budget"]  # the old rule took it
    name, _ = select_candidate({"ensemble": _cand(base), "isolation_forest": _cand(noise), "lof": _cand(clear)})
    assert name == "lof"
    # another incumbent (e.g. the champion's candidate) is kept the same way
    assert select_candidate({"ensemble": _cand(clear), "lof": _cand(noise)}, incumbent="lof")[0] == "ensemble"
    assert select_candidate({"ensemble": _cand(few), "lof": _cand(base)}, incumbent="lof")[0] == "lof"
    # cold start: no confirmed incident anywhere, the incumbent is kept
    cold = {"budget_true_alerts": 0.0, "budget_alerts": 6.0, "budget_events": 0.0}
    name, why = select_candidate({"ensemble": cold, "lof": dict(cold)})
    assert name == "ensemble" and "cold start" in why
    with pytest.raises(ValueError, match="no candidates"):
        select_candidate({})
    with pytest.raises(ValueError, match="cannot be deployed"):
        AnomalyConfig(peers=("knn",))
    with pytest.raises(ValueError, match="ECOD/COPOD"):
        AnomalyConfig(peers=("ecod",))


def test_paired_comparison_needs_a_gain_beyond_bootstrap_and_sign_test():
    c = paired_comparison([3, 2, 2, 4, 1, 2, 3], [1, 1, 1, 1, 1, 1, 1])
    assert c.better and c.gain == 10 and c.lower > 0 and c.sign_p == pytest.approx(1 / 64) and c.differing == 6
    # the same gain from 2 units: the bootstrap alone would say better (every resample gains), the sign
    # test (p 0.25) says it is too few incidents to tell
    c2 = paired_comparison([6, 6, 1], [1, 1, 1])
    assert c2.lower > 0 and c2.sign_p == 0.25 and not c2.better
    assert not paired_comparison([1, 2], [1, 2]).better  # a tie
    assert not paired_comparison([], []).better
    assert paired_comparison([2, 0, 2, 0, 2, 2], [0, 2, 0, 2, 0, 0]).lower <= 0  # 4 wins, 2 losses: noise
    with pytest.raises(ValueError, match="same units"):
        paired_comparison([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="non-finite"):
        paired_comparison([1.0, float("nan")], [1.0, 1.0])


def test_pool_windows_sums_alerts_and_incidents_over_the_windows():
    w1 = {"ensemble": _cand({"a": 1, "b": 0}, 10), "lof": _cand({"a": 2, "b": 1}, 10)}
    w2 = {"ensemble": _cand({"b": 2, "c": 1}, 10), "lof": _cand({"b": 0, "c": 0}, 10)}
    p = pool_windows([w1, w2])
    assert p["ensemble"]["budget_true_alerts_by_event"] == {"a": 1, "b": 2, "c": 1}
    assert p["lof"]["budget_true_alerts_by_event"] == {"a": 2, "b": 1, "c": 0}
    assert (p["ensemble"]["budget_true_alerts"], p["ensemble"]["budget_alerts"], p["ensemble"]["budget_events"]) == (
        4.0,
        20.0,
        3.0,  # a, b and c: b spans both windows
    )
    assert p["lof"]["precision_at_budget"] == 0.15 and p["lof"]["windows"] == 2


@pytest.fixture(scope="module")
def tx(grid_sim, grid_data):
    f = transformer_features(grid_data["scada"], grid_sim.reference()["ref_transformers"], grid_data["weather"], FC)
    y = label_readings(f, grid_sim.truth()["truth_events"], stream="transformer").is_not_null().to_numpy()
    return f, y, AnomalyEnsemble("transformer", FC, BANDS, config=replace(SMALL, band_calibration="tail")).fit(f, y)


@pytest.mark.parametrize("peer", DEPLOYABLE_PEERS)
def test_a_peer_candidate_scores_its_own_ranking_in_the_ensembles_frame(tx, peer):
    """with_peer: the score is the peer's (same order as its raw score, calibrated to the bands on the
    calibration assets), the detector columns stay the ensemble's, the fast and the reference path agree
    and the candidate survives a pickle round trip (what MLflow stores)."""
    f, y, ens = tx
    cand = ens.with_peer(peer, f, y)
    assert cand.candidate == peer and ens.candidate == "ensemble" and ens.peer_ is None
    assert cand.fit_report_["candidate"] == peer and cand.fit_report_["peer_calibration"] == "tail"
    s, s_ens = cand.score_arrays(f), ens.score_arrays(f)
    assert np.all((s["score"] >= 0) & (s["score"] <= 1))
    for d in ("isolation_forest", "autoencoder", "ocsvm"):
        np.testing.assert_array_equal(s[d], s_ens[d])
    assert not np.allclose(s["score"], s_ens["score"])
    raw = peer_raw(peer, cand.peer_, s["scaled"])
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(s["score"][order]) >= -1e-12)  # monotone in the peer's raw score
    ref = cand._score_arrays_reference(f)
    np.testing.assert_allclose(s["score"], ref["score"], atol=1e-9)
    # the bands are tail shares of the calibration rows: ~contamination-or-labelled share above 0.85
    share = float((s["score"] >= BANDS.alert).mean())
    c = max(ens.config.contamination, ens.fit_report_["calibration_anomalies"] / ens.fit_report_["calibration_rows"])
    assert 0.3 * c <= share <= 3.0 * c
    back = joblib.load(io.BytesIO(cand.to_bytes()))
    np.testing.assert_allclose(back.score_arrays(f)["score"], s["score"], atol=1e-12)
    assert set(back.drift_profile_) == set(ens.drift_profile_)
    assert back.score(f.head(50))["score"].to_list() == pytest.approx(s["score"][:50].tolist())


def test_peers_rank_an_outlier_first_and_only_batch_independent_ones_are_candidates(tx):
    xs = np.random.default_rng(1).normal(size=(500, 4)).astype(np.float32)
    xs[0] = 8.0
    for p in PEERS:
        m = fit_peer(p, xs)
        r = peer_raw(p, m, xs)
        assert r.shape == (500,) and r.argmax() == 0, p
        # a reading's score alone vs in a batch: ECOD/COPOD rebuild their CDFs on training + batch
        alone = peer_raw(p, m, xs[5:6])[0]
        assert (abs(alone - r[5]) < 1e-9) == (p in DEPLOYABLE_PEERS), p
    f, y, ens = tx
    with pytest.raises(ValueError, match="cannot be deployed"):
        ens.with_peer("ecod", f, y)
    with pytest.raises(ValueError, match="unknown peer"):
        fit_peer("knn", xs)
    with pytest.raises(ValueError, match="at least 2"):
        fit_peer("ecod", xs[:1])


@pytest.mark.slow  # ~90 s: three candidates fitted on three windows, then the cold start, on 120 meters
def test_train_anomaly_judges_every_candidate_on_rolling_windows(grid_sim, grid_data):
    """Every candidate is fitted before each of three 2-day windows and scored on it; the budget figures
    pooled over the windows decide (the incumbent unless a peer wins beyond the noise); the model handed
    on is the one fitted before the last window, with that window's metrics (the registry's backtest).
    Without incidents the ensemble is kept (promotion metric: Brier)."""
    f = meter_features(grid_data["meter_readings"], FC)
    ref = grid_sim.reference()["ref_meters"]
    ev = grid_sim.truth()["truth_events"]
    cfg = replace(SMALL, band_calibration="tail", peers=DEPLOYABLE_PEERS)
    eval_from, end = START + timedelta(days=DAYS - 2), START + timedelta(days=DAYS - 1)
    t = train_anomaly("meter", f, ev, ref, FC.timezone, eval_from, end, cfg, FC, BANDS, windows=4)
    # 4 windows of 2 days in 8 days: the first (days 0-1) has no history before it and is skipped
    assert t.report["windows"] == [f"{START + timedelta(days=d)}..{START + timedelta(days=d + 1)}" for d in (2, 4, 6)]
    pooled, per_w = t.report["candidates"], t.report["per_window"]
    assert list(pooled) == ["ensemble", *DEPLOYABLE_PEERS]
    for n, c in pooled.items():
        assert c["budget_true_alerts"] == sum(w[n]["budget_true_alerts"] for w in per_w.values())
        assert c["budget_events"] > 0 and c["windows"] == 3
    last = per_w[t.report["windows"][-1]]
    assert {c["eval_rows"] for c in last.values()} == {t.metrics["eval_rows"]}
    comps = t.report["comparisons"]
    winners = [n for n, c in comps.items() if c["better"]]
    assert t.report["selected"] == (max(winners, key=lambda n: comps[n]["gain"]) if winners else "ensemble")
    assert t.model.candidate == t.report["selected"] == t.params["candidate"]
    assert t.params["train_rows"] == int((f.select(pl.col("time")).height) - t.metrics["eval_rows"])
    assert (t.metric, t.higher_is_better) == ("precision_at_budget", True)
    assert t.rescore(t.model)["precision_at_budget"] == t.metrics["precision_at_budget"]
    cold = train_anomaly("meter", f, empty_events(), ref, FC.timezone, eval_from, end, cfg, FC, BANDS)
    assert cold.report["selected"] == "ensemble" and "cold start" in cold.report["selection"]
    assert (cold.metric, cold.higher_is_better) == ("brier", False) and cold.model.mode == "cold_start"
    with pytest.raises(ValueError, match="windows must be"):
        train_anomaly("meter", f, ev, ref, FC.timezone, eval_from, end, cfg, FC, BANDS, windows=0)
