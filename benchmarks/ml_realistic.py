"""Issue 14 sections of ``make bench-ml``: grid ML as a utility would run it (labels from incidents,
or none), compared honestly with peers, plus energy-balance theft detection and unsupervised segments.

Everything trains on fleet A (or on a warm-up period) and is evaluated on held-out data against the
simulator's truth, which only this benchmark reads. Called from :mod:`benchmarks.bench_ml`.
"""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import polars as pl

from contracts.profile import load_profile
from models.grid.anomaly import DETECTORS, AnomalyEnsemble
from models.grid.config import AlertThresholds, AnomalyConfig
from models.grid.evaluate import ALERT_BUDGET_PER_1000_PER_DAY as ALERT_BUDGET_PER_1000_METERS_DAY
from models.grid.evaluate import budget_metrics, event_detection, label_readings
from models.grid.peers import PEERS, fit_peer, peer_raw


def best_f1(y: np.ndarray, s: np.ndarray) -> float:
    """Best reading-level F1 over all thresholds (an oracle threshold: flattering, the same for all)."""
    from sklearn.metrics import precision_recall_curve

    p, r, _ = precision_recall_curve(y, s)
    f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0)
    return round(float(f.max()), 4)


def fit_peers(model: AnomalyEnsemble, train: pl.DataFrame, seed: int = 0) -> dict:
    """Isolation Forest and PyOD's ECOD, COPOD and LOF (:mod:`models.grid.peers`, the same definitions
    the anomaly training's candidates use) on the same features as the ensemble (its robust-scaled,
    clipped matrix), fitted unsupervised on a sample of the training rows."""
    xs = model._scaled(train)
    out, secs = {}, {}
    for name in PEERS:
        t = time.process_time()
        out[name] = fit_peer(name, xs, seed)
        secs[name] = round(time.process_time() - t, 2)
    return {"models": out, "fit_cpu_s": secs}


def peer_scores(
    peers: dict, model: AnomalyEnsemble, test: pl.DataFrame
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Raw anomaly scores (higher = more anomalous) of every peer on ``test`` and the CPU seconds."""
    xs = model._scaled(test)
    out, secs = {}, {}
    for name, m in peers["models"].items():
        t = time.process_time()
        out[name] = peer_raw(name, m, xs)
        secs[name] = round(time.process_time() - t, 2)
    return out, secs


def anomaly_comparison(a: dict, b: dict, sim_a, sim_b, truth_model_scores: dict, tz: str, feature_config) -> dict:
    """No labels vs recorded incidents vs the PyOD peers, on fleet B's meters and transformers.

    ``a``/``b``: per stream (meter, transformer) the feature frames of fleets A and B;
    ``truth_model_scores``: per stream the score of the ensemble trained on truth (the upper bound).
    """
    from models.grid.labels import incident_events, label_summary

    ev_b = sim_b.truth()["truth_events"]
    ref_a, ref_b = sim_a.reference()["ref_meters"], sim_b.reference()["ref_meters"]
    # labels a utility would have: fleet A's incidents confirmed by the end of its period
    known = a["meter"]["time"].max() + timedelta(hours=1)
    inc_events = incident_events(sim_a.incident_records(), known_by=known)
    out: dict = {
        "incident_labels": label_summary(inc_events),
        "truth_events_fleet_a": {
            t: int(n)
            for t, n in sim_a.truth()["truth_events"].group_by("event_type").len().sort("event_type").iter_rows()
        },
        "alert_budget_per_1000_meters_day": ALERT_BUDGET_PER_1000_METERS_DAY,
    }
    det_none, det_inc, prec_budget, bestf1, budget_detail, fit_info = {}, {}, {}, {}, {}, {}
    for kind in ("meter", "transformer"):
        fa, fb = a[kind], b[kind]
        lb = label_readings(fb, ev_b, ref_b, kind)
        y = lb.is_not_null().to_numpy()
        t = time.time()
        cold = AnomalyEnsemble(
            kind, feature_config, AlertThresholds.from_bands(load_profile().alert_bands.anomaly)
        ).fit(fa)
        t_cold = time.time() - t
        la_inc = label_readings(fa, inc_events, ref_a, kind)
        t = time.time()
        semi = AnomalyEnsemble(
            kind,
            feature_config,
            AlertThresholds.from_bands(load_profile().alert_bands.anomaly),
            config=AnomalyConfig(band_calibration="tail"),
        ).fit(fa, la_inc.is_not_null())
        t_semi = time.time() - t
        fit_info[kind] = {
            "no_labels": {**cold.fit_report_, "fit_s": round(t_cold, 1)},
            "incidents": {**semi.fit_report_, "fit_s": round(t_semi, 1)},
            "labelled_rows_from_incidents": int(la_inc.is_not_null().sum()),
        }
        sa_semi = semi.score_arrays(fb)
        s_cold, s_semi = cold.score_arrays(fb)["score"], sa_semi["score"]
        if kind == "meter":  # why the vote ranks as it does at the budget: each calibrated member alone
            members = {d: budget_metrics(fb, sa_semi[d], ev_b, ref_b, tz, "meter")["precision"] for d in DETECTORS}
        det_none[kind] = event_detection(fb, s_cold, cold.thresholds.alert, ev_b, ref_b, kind)
        det_inc[kind] = event_detection(fb, s_semi, semi.thresholds.alert, ev_b, ref_b, kind)
        peers = fit_peers(cold, fa)
        ps, score_cpu = peer_scores(peers, cold, fb)
        # no-label alternative: the rank average of the calibrated detectors (each score as its percentile
        # among the same detector's scores on a sample of the training rows), peers and cold ensemble alike
        ref_rows = fa.sample(n=min(20_000, fa.height), seed=0)
        ps_ref, _ = peer_scores(peers, cold, ref_rows)
        ps_ref["ensemble_no_labels"] = cold.score_arrays(ref_rows)["score"]
        rank_avg = np.mean(
            [
                np.searchsorted(np.sort(ps_ref[m]), s, side="right") / len(ps_ref[m])
                for m, s in {**ps, "ensemble_no_labels": s_cold}.items()
            ],
            axis=0,
        )
        scores = {
            "ensemble_no_labels": s_cold,
            "rank_average_no_labels": rank_avg,
            "ensemble_incidents": s_semi,
            "ensemble_truth_labels": truth_model_scores[kind],
            **ps,
        }
        bestf1[kind] = {m: best_f1(y, s) for m, s in scores.items()}
        fit_info[kind]["peer_fit_cpu_s"] = peers["fit_cpu_s"]
        fit_info[kind]["peer_score_cpu_s"] = score_cpu
        if kind == "meter":
            for m, s in scores.items():
                bm = budget_metrics(fb, s, ev_b, ref_b, tz, "meter")
                prec_budget[m] = bm["precision"]
                budget_detail[m] = {k: v for k, v in bm.items() if k != "true_alerts_by_event"}
        # at the alert band (0.85), alerts per 1,000 assets per day, for the calibrated ensembles
        days = fb["time"].dt.convert_time_zone(tz).dt.date().n_unique()
        n = fb["asset_id"].n_unique()
        for name, s in (("no_labels", s_cold), ("incidents", s_semi)):
            flagged = (
                fb.select("asset_id", pl.col("time").dt.convert_time_zone(tz).dt.date().alias("d"))
                .filter(pl.Series(s >= 0.85))
                .unique()
                .height
            )
            fit_info[kind][name]["alert_asset_days_per_1000_per_day_at_0.85"] = round(flagged / (n / 1000) / days, 2)
    out.update(
        {
            "event_detection_no_labels": det_none,
            "event_detection_incidents": det_inc,
            "precision_at_budget": prec_budget,
            "best_f1": bestf1,
            "budget_detail_meter": budget_detail,
            "precision_at_budget_ensemble_incidents_members": members,
            "fits": fit_info,
        }
    )
    return out


def failure_from_incidents(sim_a, sim_b, snap_a: pl.DataFrame, snap_b: pl.DataFrame, tz: str) -> dict:
    """The failure/RUL model trained on fleet A's *recorded* failures (incidents, late, 90 %), scored
    against fleet B's truth; with the contributing factors and maintenance recommendations. Peers on the
    same split: the same model learning the run-up of unrecorded outages as healthy (no label hygiene),
    and the physics prior with no labels at all (the cold start); and the drift of fleet B's inputs and
    scores against the training window (two fleets of one simulator: no drift expected)."""
    from models.grid.drift import drift_report
    from models.grid.failure import (
        FAILURE_FEATURES,
        FailureConfig,
        FailureModel,
        contributing_factors,
        evaluate_failure,
        failure_targets,
        to_gold_risk,
    )
    from models.grid.labels import incident_events

    known = snap_a["as_of"].max()
    inc = incident_events(sim_a.incident_records(), known_by=known, types=("transformer_failure",))
    ev_b = sim_b.truth()["truth_events"]
    cfg = FailureConfig(AlertThresholds.from_bands(load_profile().alert_bands.failure_risk))
    tg_b = failure_targets(snap_b, ev_b)
    fm = FailureModel(cfg).fit(failure_targets(snap_a, inc))
    pred = fm.predict(snap_b)
    r = evaluate_failure(pred, tg_b, ev_b, cfg.thresholds.alert, cfg.horizon_h)

    def peer(model: FailureModel) -> dict:
        e = evaluate_failure(model.predict(snap_b), tg_b, ev_b, cfg.thresholds.alert, cfg.horizon_h)
        keys = ("roc_auc", "precision_at_threshold", "recall_at_threshold", "warned", "median_lead_h")
        return {k: e[k] for k in keys} | {"mode": model.mode}

    no_hygiene = peer(FailureModel(cfg).fit(failure_targets(snap_a, inc, unknown_before_outage=False)))
    prior = peer(FailureModel(cfg).fit(failure_targets(snap_a, inc.clear())))
    drift = drift_report(
        fm.drift_profile_,
        {
            **{c: snap_b[c].cast(pl.Float64).to_numpy() for c in FAILURE_FEATURES},
            "score": pred["failure_probability_72h"].to_numpy(),
        },
        "failure",
    )
    fac = contributing_factors(fm, snap_b)
    flagged = pred.filter(pl.col("failure_probability_72h") >= fm.config.thresholds.alert).join(
        fac, on=["transformer_id", "as_of"]
    )
    impact = pl.DataFrame(
        {"transformer_id": snap_b["transformer_id"].unique(), "customers_downstream": 0, "load_downstream_kw": 0.0}
    )
    gold = to_gold_risk(pred, impact, "bench", tz, fac)
    r.update(
        {
            "recorded_failures_fleet_a": inc.height,
            "true_failures_fleet_a": int((sim_a.truth()["truth_events"]["event_type"] == "transformer_failure").sum()),
            "fit": fm.fit_report_,
            "without_label_hygiene": no_hygiene,
            "physics_prior_no_labels": prior,
            "drift_fleet_b": {
                "score_psi": round(float(drift.filter(pl.col("metric") == "score")["value"][0]), 4),
                "input_psi_max": round(float(drift.filter(pl.col("metric") != "score")["value"].max()), 4),
                "drifted": drift.filter(pl.col("drifted").fill_null(False))["metric"].to_list(),
            },
            "top_factors_when_flagged": {
                k: int(v) for k, v in flagged.group_by("top_factor").len().sort("len", descending=True).iter_rows()
            },
            "maintenance_recommended_transformers": int(
                gold.filter(pl.col("maintenance").is_not_null())["transformer_id"].n_unique()
            ),
            "transformers": int(gold["transformer_id"].n_unique()),
        }
    )
    return r


def theft_energy_balance(
    seed: int,
    n_meters: int,
    warmup_days: int,
    eval_days: int,
    rates,
    start,
    tz: str,
    follow_up_days: int = 7,
    curve: tuple[float, ...] = (),
) -> dict:
    """Energy balance + NTL suspects on a fleet simulated for ``warmup_days + eval_days + follow_up_days``
    (see :func:`evaluate_theft`)."""
    from simulator import SimConfig, Simulator

    total = warmup_days + eval_days + follow_up_days
    sim = Simulator(SimConfig(n_meters=n_meters, start=start, days=total, seed=seed, events=rates))
    days = [sim.day(start + timedelta(days=i)) for i in range(total)]
    data = {k: pl.concat([d[k] for d in days]) for k in ("meter_readings", "scada")}
    ref = sim.reference()
    from models.grid.energy_balance import BalanceConfig

    r = evaluate_theft(
        data["meter_readings"],
        data["scada"],
        ref["ref_meters"],
        ref["ref_transformers"],
        sim.truth()["truth_events"],
        BalanceConfig.from_profile(load_profile(), tz),
        start,
        warmup_days,
        eval_days,
        follow_up_days,
        curve,
    )
    return {"seed": seed, **r}


def evaluate_theft(
    meters: pl.DataFrame,
    scada: pl.DataFrame,
    ref_meters: pl.DataFrame,
    ref_transformers: pl.DataFrame,
    truth_events: pl.DataFrame,
    cfg,
    start,
    warmup_days: int,
    eval_days: int,
    follow_up_days: int = 7,
    curve: tuple[float, ...] = (),
) -> dict:
    """Thefts that start in the evaluation period are scored (the warm-up is the utility's history), each
    with its full 7-day window: a theft starting on the period's last day gets the follow-up days to be
    found, and false suspects are counted over evaluation + follow-up days. ``censored`` is the same
    count with the suspects cut at the end of the evaluation period (the protocol before the follow-up).
    ``breakdown``: :func:`theft_breakdown`; ``curve``: the operating points (top-3 rate, false suspects per
    1,000 meters per month) at each first-suspect bar ``min_explained`` in ``curve``, same fleet and balance."""
    from dataclasses import replace

    from models.grid.energy_balance import (
        _meter_hours,
        energy_balance,
        hourly_balance,
        meter_daily,
        ntl_suspects,
        theft_detection,
    )

    n_meters = ref_meters["meter_id"].n_unique()
    t = time.process_time()
    mh = _meter_hours(meters, ref_meters, cfg.timezone)
    hourly = hourly_balance(meters, scada, ref_meters, ref_transformers, cfg, meter_hours=mh)
    bal = energy_balance(meters, scada, ref_meters, ref_transformers, cfg, hourly=hourly)
    sus = ntl_suspects(bal, hourly, mh, cfg)
    cpu = time.process_time() - t
    ev = truth_events
    tz = cfg.timezone
    eval_from = start + timedelta(days=warmup_days)
    eval_to = eval_from + timedelta(days=eval_days)  # exclusive
    local_start = pl.col("start_time").dt.convert_time_zone(tz).dt.date()
    ev_eval = ev.filter((local_start >= eval_from) & (local_start < eval_to))
    sus_eval = sus.filter(pl.col("date") >= eval_from)
    r = theft_detection(sus_eval, ev_eval, ev, n_meters, eval_days + follow_up_days)
    cens = theft_detection(sus_eval.filter(pl.col("date") < eval_to), ev_eval, ev, n_meters, eval_days)
    feeders = bal.filter(pl.col("level") == "feeder")
    bd = theft_breakdown(
        bal,
        sus_eval,
        ev,
        ev_eval.filter(pl.col("event_type") == "theft"),
        ref_meters,
        meter_daily(meters, tz),
        cfg,
        eval_from,
    )
    r.update(
        {
            "warmup_days": warmup_days,
            "eval_days": eval_days,
            "follow_up_days": follow_up_days,
            "meters": n_meters,
            "cpu_s": round(cpu, 2),
            "balance_rows": bal.height,
            "unexplained_share_median": round(
                float((feeders["unexplained_kwh"] / feeders["supplied_kwh"]).median()), 4
            ),
            "transformer_days_examined": int(sus.select("transformer_id", "date").unique().height),
            "censored": {
                k: cens[k] for k in ("theft_events", "detected_within", "rate", "false_suspects_per_1000_meters_month")
            },
            "config": {k: v for k, v in cfg.__dict__.items() if k != "timezone"},
            "breakdown": bd,
        }
    )
    points = []
    for bar in curve:
        c = replace(cfg, min_explained=bar)
        sc = ntl_suspects(bal, hourly, mh, c).filter(pl.col("date") >= eval_from)
        p = theft_detection(sc, ev_eval, ev, n_meters, eval_days + follow_up_days)
        points.append(
            {
                "min_explained": bar,
                "rate": p["rate"],
                "false_suspects_per_1000_meters_month": p["false_suspects_per_1000_meters_month"],
            }
        )
    r["curve_min_explained"] = points
    return r


def segments_unsupervised(pa: pl.DataFrame, pb: pl.DataFrame, truth_b: pl.DataFrame, config) -> dict:
    """k-means on fleet A's profiles alone, named from descriptors; scored on fleet B against the
    archetypes the fit never saw (ARI, name agreement) and re-fit on 70 % of A with another seed
    (names kept for the same customer)."""
    from dataclasses import replace

    from sklearn.metrics import adjusted_rand_score

    from models.grid.segments import SegmentModel

    t = time.time()
    sm = SegmentModel(config).fit(pa)
    fit_s = time.time() - t
    seg = sm.predict(pb).join(truth_b, on="meter_id")
    sm2 = SegmentModel(replace(config, seed=11)).fit(pa.sample(fraction=0.7, seed=4, shuffle=True))
    return {
        "ari": round(adjusted_rand_score(seg["archetype"], seg["segment"]), 4),
        "name_agreement": round(float((seg["archetype"] == seg["segment"]).mean()), 4),
        "names_stable_after_refit": round(float((sm2.predict(pb)["segment"] == sm.predict(pb)["segment"]).mean()), 4),
        "names": sm.names_,
        "fit_s": round(fit_s, 2),
    }


def theft_breakdown(
    bal: pl.DataFrame,
    sus: pl.DataFrame,
    truth_events: pl.DataFrame,
    thefts: pl.DataFrame,
    ref_meters: pl.DataFrame,
    meter_day: pl.DataFrame,
    cfg,
    eval_from,
    within_days: int = 7,
    top_n: int = 3,
) -> dict:
    """Why thefts are missed and who the false suspects are, the way an NTL analyst reviews a run.

    Per theft event (``thefts``): hidden share s, the meter's usual kWh/day (its mean over the warm-up),
    the hidden kWh/day (s x its usual) against its transformer's supply, the first gated day of the
    transformer, days to its first top-``top_n`` listing, the best rank within ``within_days`` and the
    other meter events on its transformer in that week; ``why_missed`` for a miss: ``gate`` (its
    transformer never passed the gate in the week), ``listed_as_fault``, ``late`` (listed after the week),
    ``not_ranked`` (gated, never listed). Per false suspect meter (listed top-``top_n`` as theft with no
    theft of its own that day): days listed, best score and what was going on on its transformer
    (``neighbour_theft``, ``meter_fault`` on another meter or itself, ``none``)."""
    from models.grid.energy_balance import gate

    tz = cfg.timezone
    g = gate(bal, cfg).select(pl.col("entity_id").alias("transformer_id"), "date", "_sig", "supplied_kwh")
    tx_of = dict(ref_meters.select("meter_id", "transformer_id").iter_rows())
    usual = dict(
        meter_day.filter(pl.col("date") < eval_from).group_by("meter_id").agg(pl.col("kwh").mean()).iter_rows()
    )
    loc = lambda c: pl.col(c).dt.convert_time_zone(tz).dt.date()  # noqa: E731
    ev = truth_events.filter(pl.col("asset_type") == "meter").with_columns(
        loc("start_time").alias("_a"), loc("end_time").alias("_b")
    )
    ev = ev.with_columns(pl.col("asset_id").replace_strict(tx_of, default=None).alias("transformer_id"))
    th_sus = sus.filter((pl.col("kind") == "theft") & (pl.col("rank") <= top_n))
    fault_sus = sus.filter(pl.col("kind") == "meter_fault")
    events = []
    for e in thefts.with_columns(loc("start_time").alias("_a"), loc("end_time").alias("_b")).iter_rows(named=True):
        m, tx, a = e["asset_id"], tx_of.get(e["asset_id"]), e["_a"]
        wk_end = min(e["_b"], a + timedelta(days=within_days))
        gt = g.filter((pl.col("transformer_id") == tx) & (pl.col("date") >= a) & (pl.col("date") <= wk_end))
        supply = float(gt["supplied_kwh"].mean()) if gt.height else float("nan")
        gated = gt.filter(pl.col("_sig"))["date"].min()
        mine = th_sus.filter((pl.col("meter_id") == m) & (pl.col("date") >= a) & (pl.col("date") <= e["_b"]))
        first = mine["date"].min()
        in_wk = mine.filter(pl.col("date") <= wk_end)
        others = ev.filter(
            (pl.col("transformer_id") == tx)
            & (pl.col("asset_id") != m)
            & (pl.col("_a") <= wk_end)
            & (pl.col("_b") >= a - timedelta(days=cfg.window_days))
        )
        faulted = fault_sus.filter((pl.col("meter_id") == m) & (pl.col("date") >= a) & (pl.col("date") <= wk_end))
        hidden = e["magnitude"] * usual.get(m, float("nan"))
        days_to = (first - a).days if first is not None else None
        hit = days_to is not None and days_to <= within_days
        why = None
        if not hit:
            why = (
                "gate"
                if gated is None
                else "listed_as_fault"
                if faulted.height
                else "late"
                if first is not None
                else "not_ranked"
            )
        events.append(
            {
                "event_id": e["event_id"],
                "meter_id": m,
                "transformer_id": tx,
                "start": str(a),
                "days": (e["_b"] - a).days,
                "share": e["magnitude"],
                "usual_kwh_day": round(usual.get(m, float("nan")), 1),
                "hidden_kwh_day": round(hidden, 1),
                "hidden_of_supply": round(hidden / supply, 4) if supply == supply and supply > 0 else None,
                "days_to_gate": (gated - a).days if gated is not None else None,
                "days_to_top": days_to,
                "best_rank_in_week": int(in_wk["rank"].min()) if in_wk.height else None,
                "others_on_tx": [f"{k}:{x}" for k, x in others.select("event_type", "asset_id").iter_rows()],
                "hit": hit,
                "why_missed": why,
            }
        )
    stealing = ev.filter(pl.col("event_type") == "theft")
    fs = []
    for m, rows in th_sus.group_by("meter_id"):
        m = m[0]
        mine = stealing.filter(pl.col("asset_id") == m)
        days = rows["date"].to_list()
        false_days = [d for d in days if not any(a <= d <= b for a, b in mine.select("_a", "_b").iter_rows())]
        if not false_days:
            continue
        tx = tx_of.get(m)
        d0, d1 = min(false_days), max(false_days)
        near = ev.filter(
            (pl.col("transformer_id") == tx)
            & (pl.col("_a") <= d1)
            & (pl.col("_b") >= d0 - timedelta(days=cfg.window_days))
        )
        kinds = set(near.filter(pl.col("asset_id") != m)["event_type"].to_list())
        own = set(near.filter(pl.col("asset_id") == m)["event_type"].to_list())
        fs.append(
            {
                "meter_id": m,
                "transformer_id": tx,
                "first": str(d0),
                "days_listed": len(false_days),
                "best_rank": int(rows.filter(pl.col("date").is_in(false_days))["rank"].min()),
                "max_score": round(float(rows.filter(pl.col("date").is_in(false_days))["score"].max()), 3),
                "context": "neighbour_theft"
                if "theft" in kinds
                else "own_meter_fault"
                if own
                else "meter_fault"
                if kinds
                else "none",
                "events_on_tx": [f"{k}:{x}" for k, x in near.select("event_type", "asset_id").iter_rows()],
            }
        )
    missed = [e for e in events if not e["hit"]]
    return {
        "events": events,
        "missed_by_reason": {
            r: sum(1 for e in missed if e["why_missed"] == r) for r in ("gate", "not_ranked", "listed_as_fault", "late")
        },
        "false_suspects": fs,
        "false_by_context": {
            c: sum(1 for f in fs if f["context"] == c)
            for c in ("neighbour_theft", "meter_fault", "own_meter_fault", "none")
        },
    }


def champion_selection(
    seed_a: int, seed_b: int, fleet, tz: str, feature_config, bands, eval_days: int = 5, windows: int | None = None
) -> dict:
    """Which anomaly candidate the champion policy hands on, and how good that choice is (meter stream).

    ``fleet(seed) -> (simulator, frames)``. Fleet ``seed_a`` is the utility's history: the anomaly
    training (:func:`models.grid.pipelines.train_anomaly`, the ensemble and the deployable peers) judges
    the candidates on a rolling-origin backtest over the whole period (``windows`` held-out windows of
    ``eval_days``, default as many as fit after ``eval_days`` of history, at most 4, each candidate
    trained only before its window) on the incidents confirmed by the end of the period, and keeps the
    ensemble unless a peer wins beyond the noise (or, with no labels, keeps it: one window suffices).
    Fleet ``seed_b`` is the future: every candidate, fitted on all of fleet A the same way
    (:meth:`AnomalyEnsemble.with_peer`), is scored on it at the alert budget against the truth. The
    selected candidate is ``right`` if it is the future's best or the best does not beat it beyond the
    noise there (the same paired comparison over fleet B's true events); ``fleet_b_rank_of_selected`` is
    the strict rank."""
    from models.grid.features import local_date, meter_features
    from models.grid.labels import empty_events, incident_events
    from models.grid.pipelines import train_anomaly

    sim_a, a = fleet(seed_a)
    sim_b, b = fleet(seed_b)
    fa, fb = meter_features(a["meter_readings"], feature_config), meter_features(b["meter_readings"], feature_config)
    del a, b
    ref_a, ref_b = sim_a.reference()["ref_meters"], sim_b.reference()["ref_meters"]
    ev_b = sim_b.truth()["truth_events"]
    known = fa["time"].max() + timedelta(hours=1)
    inc = incident_events(sim_a.incident_records(), known_by=known)
    cfg = AnomalyConfig(band_calibration="tail")
    days = sorted(fa.select(local_date("time", tz)).to_series().unique().to_list())
    if windows is None:
        windows = max(1, min(4, (len(days) - eval_days) // eval_days))
    out: dict = {"seeds": [seed_a, seed_b], "held_out_days_per_window": eval_days}
    out.update(future_check(fa, fb, inc, ref_a, ref_b, ev_b, tz, feature_config, bands, cfg))
    best = out["fleet_b_best"]
    eval_from, end = days[-eval_days], days[-1]
    for setting, events, w in (("no_labels", empty_events(), 1), ("incidents", inc, windows)):
        t = time.process_time()
        tr = train_anomaly("meter", fa, events, ref_a, tz, eval_from, end, cfg, feature_config, bands, windows=w)
        sel = tr.report["selected"]
        pooled = tr.report["candidates"]
        out[setting] = {
            "selected": sel,
            "why": tr.report["selection"],
            "windows": tr.report["windows"],
            "promotion_metric": tr.metric,
            "held_out_confirmed_events": int(pooled[sel]["budget_events"]),
            "held_out_true_alerts_of_alerts": {
                n: [int(m["budget_true_alerts"]), int(m["budget_alerts"])] for n, m in pooled.items()
            },
            "held_out_precision_at_budget": {n: m["precision_at_budget"] for n, m in pooled.items()},
            "comparisons": tr.report["comparisons"],
            "fleet_b_precision_of_selected": out["fleet_b_precision_at_budget"][sel],
            "fleet_b_rank_of_selected": 1
            + sum(v > out["fleet_b_precision_at_budget"][sel] for v in out["fleet_b_precision_at_budget"].values()),
            "right": sel == best or not out["fleet_b_best_beats"].get(sel, False),
            "cpu_s": round(time.process_time() - t, 1),
        }
    return out


#: LOF settings measured by :func:`lof_cost`: (name, training rows, n_neighbors, algorithm)
LOF_VARIANTS = (
    ("rows10k_k20_auto", 10_000, 20, "auto"),
    ("rows10k_k20_kd_tree", 10_000, 20, "kd_tree"),
    ("rows10k_k20_brute", 10_000, 20, "brute"),
    ("rows5k_k20_auto", 5_000, 20, "auto"),
    ("rows10k_k10_auto", 10_000, 10, "auto"),
    ("rows3k_k20_auto", 3_000, 20, "auto"),
)


def lof_cost(seed_a: int, seed_b: int, fleet, tz: str, feature_config, bands, variants=LOF_VARIANTS) -> dict:
    """CPU seconds of LOF fit + score per 1,000 meters (fleet B, all its readings) and its precision at
    the alert budget on fleet B's truth, per setting: the same features and training sample rule as the
    deployed peer (:func:`models.grid.peers.fit_peer`; a monotone calibration does not change the
    budget's daily top-k, so raw scores give the deployed candidate's precision)."""
    from pyod.models.lof import LOF

    from models.grid.features import meter_features

    sim_a, a = fleet(seed_a)
    sim_b, b = fleet(seed_b)
    fa, fb = meter_features(a["meter_readings"], feature_config), meter_features(b["meter_readings"], feature_config)
    del a, b
    ev_b, ref_b = sim_b.truth()["truth_events"], sim_b.reference()["ref_meters"]
    ens = AnomalyEnsemble("meter", feature_config, bands, config=AnomalyConfig()).fit(fa)
    xa, xb = ens._scaled(fa), ens._scaled(fb)
    meters = fb["asset_id"].n_unique()
    out: dict = {"seeds": [seed_a, seed_b], "meters": meters, "rows_scored": len(xb), "features": xa.shape[1]}
    for name, rows, k, algo in variants:
        idx = np.sort(np.random.default_rng(0).choice(len(xa), min(rows, len(xa)), replace=False))
        t = time.process_time()
        m = LOF(n_neighbors=k, algorithm=algo, novelty=True).fit(np.ascontiguousarray(xa[idx]))
        fit_s = time.process_time() - t
        t = time.process_time()
        s = np.asarray(m.decision_function(xb), dtype=np.float64)
        score_s = time.process_time() - t
        r = budget_metrics(fb, s, ev_b, ref_b, tz, "meter")
        out[name] = {
            "fit_cpu_s": round(fit_s, 2),
            "score_cpu_s": round(score_s, 2),
            "cpu_s_per_1000_meters": round((fit_s + score_s) / meters * 1000, 2),
            "precision_at_budget": r["precision"],
            "true_alerts": r["true_alerts"],
            "event_recall": r["event_recall"],
        }
        print(f"  LOF {name}: {out[name]}", flush=True)
    return out


def future_check(fa, fb, inc, ref_a, ref_b, ev_b, tz: str, feature_config, bands, cfg) -> dict:
    """Every candidate fitted on all of fleet A with its incidents (as the anomaly training would), scored on
    fleet B at the alert budget against the truth: the precision table, the best, and whether the best
    beats each other candidate beyond the noise (the policy's own paired comparison, the other as the
    incumbent, over fleet B's true events)."""
    from models.grid.pipelines import compare_candidates

    t = time.process_time()
    lab = label_readings(fa, inc, ref_a, "meter").is_not_null().to_numpy()
    ens = AnomalyEnsemble("meter", feature_config, bands, config=cfg).fit(fa, lab)
    cands = {"ensemble": ens, **{p: ens.with_peer(p, fa, lab) for p in cfg.peers}}
    future = {}
    for n, m in cands.items():
        r = budget_metrics(fb, m.score_arrays(fb)["score"], ev_b, ref_b, tz, "meter")
        future[n] = {
            "budget_true_alerts": float(r["true_alerts"]),
            "budget_alerts": float(r["alerts"]),
            "budget_events": float(r["events"]),
            "budget_true_alerts_by_event": r["true_alerts_by_event"],
            "precision_at_budget": r["precision"],
            "event_recall": r["event_recall"],
        }
    del cands, ens
    table = {n: r["precision_at_budget"] for n, r in future.items()}
    best = sorted(table, key=lambda n: -table[n])[0]
    vs = {n: compare_candidates(future, n)[best] for n in future if n != best}
    return {
        "fleet_b_precision_at_budget": table,
        "fleet_b_event_recall_at_budget": {n: r["event_recall"] for n, r in future.items()},
        "fleet_b_true_events": int(future["ensemble"]["budget_events"]),
        "fleet_b_best": best,
        # does the future's best beat each other candidate beyond the noise (that one as the incumbent)?
        "fleet_b_best_vs_others": {n: c.describe() for n, c in vs.items()},
        "fleet_b_best_beats": {n: c.better for n, c in vs.items()},
        "fleet_b_true_alerts_by_event": {n: r["budget_true_alerts_by_event"] for n, r in future.items()},
        "candidates_cpu_s": round(time.process_time() - t, 1),
    }


def refresh_future(part: dict, seed_a: int, seed_b: int, fleet, tz: str, feature_config, bands) -> dict:
    """A saved :func:`champion_selection` part with its future-fleet check recomputed
    (:func:`future_check`) and each setting's ``right`` and rank re-derived from it; the selections are
    the part's (they do not depend on fleet B)."""
    from models.grid.features import meter_features
    from models.grid.labels import incident_events

    sim_a, a = fleet(seed_a)
    sim_b, b = fleet(seed_b)
    fa, fb = meter_features(a["meter_readings"], feature_config), meter_features(b["meter_readings"], feature_config)
    del a, b
    inc = incident_events(sim_a.incident_records(), known_by=fa["time"].max() + timedelta(hours=1))
    fut = future_check(
        fa,
        fb,
        inc,
        sim_a.reference()["ref_meters"],
        sim_b.reference()["ref_meters"],
        sim_b.truth()["truth_events"],
        tz,
        feature_config,
        bands,
        AnomalyConfig(band_calibration="tail"),
    )
    out = {**part, **fut}
    table, best = fut["fleet_b_precision_at_budget"], fut["fleet_b_best"]
    for setting in ("no_labels", "incidents"):
        sel = out[setting]["selected"]
        out[setting] = {
            **out[setting],
            "fleet_b_precision_of_selected": table[sel],
            "fleet_b_rank_of_selected": 1 + sum(v > table[sel] for v in table.values()),
            "right": sel == best or not fut["fleet_b_best_beats"].get(sel, False),
        }
    return out
