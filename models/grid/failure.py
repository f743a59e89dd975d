"""Transformer failure prediction (72 h) and remaining useful life, plus outage impact.

Snapshots are hourly per transformer. Features (why):
- ``age_years``, ``days_since_maintenance``: insulation ages and maintenance resets wear;
- ``utilisation_mean_24h``/``_max_24h``: loading drives the hot spot and ageing;
- ``top_oil_mean_24h``, ``hot_spot_max_24h``: the temperatures themselves;
- ``excess_rise_6h``/``_24h``: top-oil rise the load and ambient do not explain (IEEE C57.91 model,
  see :mod:`models.grid.features`): losses turning into heat, i.e. falling efficiency;
- ``efficiency_trend``: change of that excess over the last 18 h (K): degradation accelerates;
- ``anomaly_count_7d``: SCADA samples the anomaly ensemble put at or above its alert threshold.

Models: an XGBoost classifier for "fails within 72 h" and an XGBoost accelerated-failure-time
survival model (``survival:aft``) for the remaining useful life, which uses the snapshots whose
failure lies beyond the observed period as right-censored instead of dropping or mislabelling them.

Labels are the failures a utility recorded (``incidents``): late and incomplete. The run-up of a loss of
supply SCADA saw but no recorded failure explains is left out of training rather than learnt as healthy
(:func:`failure_targets`); the classifier's probability is calibrated (isotonic, out-of-fold by
transformer) so the alert band means the failure rate it says. With fewer than
``FailureConfig.min_recorded_failures`` recorded failures the model scores with a documented physics prior
(:class:`PhysicsPrior`: the unexplained top-oil rise as a robust z-score) and reports ``mode`` =
``physics_prior``. A fitted model carries its training-window profile for drift monitoring
(:mod:`models.grid.drift`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import polars as pl

from .config import AlertThresholds, FeatureConfig
from .evaluate import brier_score
from .features import FeatureInputError, require_columns, transformer_features

FAILURE_FEATURES: tuple[str, ...] = (
    "age_years",
    "days_since_maintenance",
    "utilisation_mean_24h",
    "utilisation_max_24h",
    "top_oil_mean_24h",
    "hot_spot_max_24h",
    "excess_rise_6h",
    "excess_rise_24h",
    "efficiency_trend",
    "anomaly_count_7d",
)


#: what the physics prior (:class:`PhysicsPrior`) reads, beside :data:`FAILURE_FEATURES`:
#: ``excess_above_min_72h``: the 6 h excess rise above its own 72 h minimum (a per-transformer baseline);
#: ``excess_slope_12h``: change of the 3 h excess over the last 12 h, K/h (how fast it grows)
PRIOR_FEATURES: tuple[str, ...] = ("excess_above_min_72h", "excess_slope_12h")


@dataclass(frozen=True)
class FailureConfig:
    #: risk bands for P(failure within the horizon): the profile's ``alert_bands.failure_risk``
    thresholds: AlertThresholds
    horizon_h: float = 72.0
    n_estimators: int = 200
    max_depth: int = 4
    learning_rate: float = 0.05
    n_jobs: int = 2
    seed: int = 0
    #: "isotonic": map the classifier's probability through an isotonic fit on out-of-fold predictions
    #: (folds grouped by transformer), so a band means the failure rate it says; "none": raw probability
    calibration: str = "isotonic"
    calibration_folds: int = 4
    #: fewer distinct recorded failures than this in the training window: score with the physics prior
    #: (:class:`PhysicsPrior`) instead of a classifier that has too few examples to learn from
    min_recorded_failures: int = 10
    #: physics prior: robust z-score of the unexplained top-oil rise at which P reaches the alert band
    prior_alert_z: float = 6.0
    #: physics prior: logit of P per robust sigma
    prior_slope: float = 1.0
    #: physics prior, RUL: unexplained top-oil rise (K) taken as the end of life when extrapolated; the
    #: margin between the profile's warn (110 degC) and anomaly (140 degC) hot-spot levels
    prior_critical_rise_c: float = 30.0


def hourly_snapshots(
    scada: pl.DataFrame,
    ref_transformers: pl.DataFrame,
    weather: pl.DataFrame | None,
    anomaly_flags: pl.DataFrame | None = None,
    *,
    cfg: FeatureConfig,
    features: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per transformer and hour (``as_of`` = end of the hour) with :data:`FAILURE_FEATURES`,
    :data:`PRIOR_FEATURES` and ``supply_lost`` (a sample of the hour read under half the nominal voltage).

    ``anomaly_flags``: (asset_id, time) of SCADA samples at/above the anomaly alert threshold; None
    means no anomaly scores are available (the count is then 0, which the model was trained to see
    only if it was trained the same way: pass the same kind of input at fit and predict time).
    ``features``: :func:`transformer_features` of the same inputs, if the caller has them already.
    """
    require_columns(ref_transformers, ("transformer_id", "install_year", "last_maintenance"), "ref_transformers")
    f = transformer_features(scada, ref_transformers, weather, cfg) if features is None else features
    temps = scada.select(
        pl.col("transformer_id").alias("asset_id"),
        pl.col("sample_time").dt.convert_time_zone("UTC").alias("time"),
        pl.col("top_oil_temp_c").cast(pl.Float64).fill_nan(None),
        pl.col("hot_spot_temp_c").cast(pl.Float64).fill_nan(None),
        # supply lost: the secondary reads (near) zero volts while the feed reports
        (pl.col("voltage_v").cast(pl.Float64).fill_nan(None) < 0.5 * cfg.transformer_nominal_v).alias("_dead"),
    )
    f = f.join(temps, on=["asset_id", "time"], how="left")
    h = (
        f.group_by_dynamic("time", every="1h", group_by="asset_id", closed="left", label="right")
        .agg(
            pl.col("utilisation").mean().alias("_u_mean"),
            pl.col("utilisation").max().alias("_u_max"),
            pl.col("top_oil_temp_c").mean().alias("_top"),
            pl.col("hot_spot_temp_c").max().alias("_hot"),
            pl.col("excess_rise").mean().alias("_excess"),
            pl.col("_dead").fill_null(False).any().alias("supply_lost"),
        )
        .rename({"time": "as_of"})
        .sort("asset_id", "as_of")
    )
    if anomaly_flags is not None and anomaly_flags.height:
        require_columns(anomaly_flags, ("asset_id", "time"), "anomaly_flags")
        cnt = (
            anomaly_flags.select("asset_id", pl.col("time").dt.truncate("1h") + timedelta(hours=1))
            .group_by("asset_id", "time")
            .len()
            .rename({"time": "as_of", "len": "_n"})
        )
        h = h.join(cnt.with_columns(pl.col("_n").cast(pl.Float64)), on=["asset_id", "as_of"], how="left")
    else:
        h = h.with_columns(pl.lit(None, dtype=pl.Float64).alias("_n"))
    g = "asset_id"

    def roll(c: str, how: str, w: str) -> pl.Expr:
        return getattr(pl.col(c), f"rolling_{how}_by")("as_of", window_size=w).over(g)

    h = h.with_columns(
        roll("_u_mean", "mean", "24h").alias("utilisation_mean_24h"),
        roll("_u_max", "max", "24h").alias("utilisation_max_24h"),
        roll("_top", "mean", "24h").alias("top_oil_mean_24h"),
        roll("_hot", "max", "24h").alias("hot_spot_max_24h"),
        roll("_excess", "mean", "6h").alias("excess_rise_6h"),
        roll("_excess", "mean", "24h").alias("excess_rise_24h"),
        pl.col("_n").fill_null(0.0).rolling_sum_by("as_of", window_size="7d").over(g).alias("anomaly_count_7d"),
        roll("_excess", "mean", "3h").alias("_excess_3h"),
    ).with_columns(
        (pl.col("excess_rise_6h") - pl.col("excess_rise_6h").shift(18).over(g)).alias("efficiency_trend"),
        ((pl.col("_excess_3h") - pl.col("_excess_3h").shift(12).over(g)) / 12.0).alias("excess_slope_12h"),
        (pl.col("excess_rise_6h") - pl.col("excess_rise_6h").rolling_min_by("as_of", window_size="72h").over(g)).alias(
            "excess_above_min_72h"
        ),
    )
    ref = ref_transformers.select(
        pl.col("transformer_id").alias("asset_id"),
        pl.col("install_year").cast(pl.Float64),
        pl.col("last_maintenance").cast(pl.Date),
    )
    h = h.join(ref, on="asset_id", how="left").with_columns(
        (pl.col("as_of").dt.year() + pl.col("as_of").dt.ordinal_day() / 365.25 - pl.col("install_year")).alias(
            "age_years"
        ),
        ((pl.col("as_of").dt.date() - pl.col("last_maintenance")).dt.total_days().cast(pl.Float64)).alias(
            "days_since_maintenance"
        ),
        pl.col("anomaly_count_7d").cast(pl.Int64),
    )
    return h.select(
        pl.col("asset_id").alias("transformer_id"), "as_of", *FAILURE_FEATURES, *PRIOR_FEATURES, "supply_lost"
    )


def failure_snapshots(
    scada: pl.DataFrame, ref_transformers: pl.DataFrame, weather: pl.DataFrame | None, anomaly_model, cfg: FeatureConfig
) -> pl.DataFrame:
    """:func:`hourly_snapshots` whose ``anomaly_count_7d`` counts the SCADA samples ``anomaly_model``
    (a transformer :class:`~models.grid.anomaly.AnomalyEnsemble`) puts at or above its alert threshold.

    Pass 7 days plus a day of SCADA before the first snapshot that matters: the count looks back a
    week and the rolling features a day.
    """
    f = transformer_features(scada, ref_transformers, weather, cfg)
    s = anomaly_model.score_arrays(f)["score"]
    flags = f.select("asset_id", "time").filter(pl.Series(s >= anomaly_model.thresholds.alert))
    return hourly_snapshots(scada, ref_transformers, weather, flags, cfg=cfg, features=f)


def failure_targets(
    snapshots: pl.DataFrame, truth_events: pl.DataFrame, horizon_h: float = 72.0, unknown_before_outage: bool = True
) -> pl.DataFrame:
    """Add training targets from failure events (recorded incidents or, in benchmarks, the truth).

    - ``in_service``: False while the transformer is failed/under repair (those hours are dropped), and,
      with ``unknown_before_outage``, in the ``horizon_h`` before (and during) a loss of supply that no
      failure event explains (``supply_lost`` in the snapshots): an unrecorded failure, whose run-up must not
      be learnt as healthy;
    - ``fails_within``: the next failure starts within ``horizon_h`` after ``as_of``;
    - ``rul_lower``/``rul_upper``: hours to the next failure, or [hours to the end of the observed
      period, +inf) when none is observed (right-censored).
    """
    require_columns(truth_events, ("event_type", "asset_id", "start_time", "end_time"), "truth_events")
    fails = (
        truth_events.filter(pl.col("event_type") == "transformer_failure")
        .select(
            pl.col("asset_id").alias("transformer_id"),
            pl.col("start_time").alias("_fs"),
            pl.col("end_time").alias("_fe"),
        )
        .sort("_fs")
    )
    s = snapshots.with_row_index("_r")
    down = (
        s.select("_r", "transformer_id", "as_of")
        .join(fails, on="transformer_id", how="inner")
        .filter((pl.col("as_of") > pl.col("_fs")) & (pl.col("as_of") <= pl.col("_fe") + timedelta(hours=1)))
        .select("_r")
        .unique()
        .with_columns(pl.lit(False).alias("in_service"))
    )
    nxt = (
        s.sort("as_of")
        .join_asof(
            fails.select("transformer_id", "_fs").sort("_fs"),
            left_on="as_of",
            right_on="_fs",
            by="transformer_id",
            strategy="forward",
            check_sortedness=False,  # both sides sorted on the key overall, hence within each group
        )
        .select("_r", "_fs")
    )
    end = snapshots["as_of"].max()
    s = s.join(down, on="_r", how="left").join(nxt, on="_r", how="left").sort("_r")
    if unknown_before_outage and "supply_lost" in s.columns:
        # an hour without supply that no recorded failure explains: a failure nobody recorded (or not yet).
        # The hours before it are no evidence of health: leave them (and the outage) out of training
        lost = (
            s.filter(pl.col("supply_lost") & pl.col("in_service").is_null())
            .select("transformer_id", pl.col("as_of").alias("_lost"))
            .sort("_lost")
        )
        s = (
            s.sort("as_of")
            .join_asof(
                lost,
                left_on="as_of",
                right_on="_lost",
                by="transformer_id",
                strategy="forward",
                check_sortedness=False,
            )
            .sort("_r")
            .with_columns(
                pl.when((pl.col("_lost") - pl.col("as_of")).dt.total_seconds() <= horizon_h * 3600.0)
                .then(False)
                .otherwise(pl.col("in_service"))
                .alias("in_service")
            )
            .drop("_lost")
        )
    hours = (pl.col("_fs") - pl.col("as_of")).dt.total_seconds() / 3600.0
    to_end = (pl.lit(end) - pl.col("as_of")).dt.total_seconds() / 3600.0
    return s.with_columns(
        pl.col("in_service").fill_null(True),
        (hours.is_not_null() & (hours <= horizon_h)).fill_null(False).alias("fails_within"),
        pl.when(hours.is_not_null()).then(hours).otherwise(to_end).clip(0.5).alias("rul_lower"),
        pl.when(hours.is_not_null()).then(hours).otherwise(float("inf")).clip(0.5).alias("rul_upper"),
    ).drop("_r", "_fs")


#: RUL reported when nothing points to a failure (no rise, or no survival model): ten years, in hours
NO_FAILURE_IN_SIGHT_H = 10 * 8766.0


@dataclass
class PhysicsPrior:
    """Failure risk without (enough) recorded failures: degrading cooling or insulation shows as a top-oil
    rise the IEEE C57.91 load/ambient model does not explain (``excess_rise``), growing towards the
    failure. The prior scores the last 6 h of that excess above its own 72 h minimum (a per-transformer
    baseline, so a nameplate offset is not a fault) as a robust z-score against the fleet's training
    window (median, 1.4826 x MAD: no labels needed), and maps it to a probability with a logistic that
    reaches the alert band at ``prior_alert_z`` sigmas. It is a documented prior, not a fitted
    probability: the model reports ``mode`` ``physics_prior`` and the bands mean "this far outside normal
    thermal behaviour". RUL is the time for the rise to reach ``prior_critical_rise_c`` at its 12 h slope.
    """

    loc: float = 0.0
    scale: float = 1.0

    FEATURE = "excess_above_min_72h"

    @classmethod
    def fit(cls, rows: pl.DataFrame) -> PhysicsPrior:
        v = rows[cls.FEATURE].cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
        if v.size == 0:
            raise ValueError(f"physics prior: no {cls.FEATURE} values in the training window")
        med = float(np.median(v))
        return cls(loc=med, scale=max(1.4826 * float(np.median(np.abs(v - med))), 0.05))

    def z(self, snapshots: pl.DataFrame) -> np.ndarray:
        v = snapshots[self.FEATURE].cast(pl.Float64).fill_nan(None).fill_null(self.loc).to_numpy()
        return (v - self.loc) / self.scale

    def probability(self, snapshots: pl.DataFrame, c: FailureConfig) -> np.ndarray:
        a = c.thresholds.alert
        logit = c.prior_slope * (self.z(snapshots) - c.prior_alert_z) + np.log(a / (1.0 - a))
        return 1.0 / (1.0 + np.exp(-logit))

    def rul_hours(self, snapshots: pl.DataFrame, c: FailureConfig) -> np.ndarray:
        rise = snapshots[self.FEATURE].cast(pl.Float64).fill_nan(None).fill_null(0.0).to_numpy() - self.loc
        slope = snapshots["excess_slope_12h"].cast(pl.Float64).fill_nan(None).fill_null(0.0).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.where(slope > 0.05, (c.prior_critical_rise_c - rise) / slope, NO_FAILURE_IN_SIGHT_H)
        return np.clip(h, 0.0, NO_FAILURE_IN_SIGHT_H)


@dataclass
class FailureModel:
    config: FailureConfig
    version: str = "unregistered"
    classifier_: object = None
    survival_: object = None
    #: isotonic map raw -> calibrated probability (None: uncalibrated)
    calibrator_: object = None
    #: training-window reference of every input and of the (out-of-fold) score, for monitoring
    #: (:func:`models.grid.drift.reference_profile`)
    drift_profile_: dict = field(default_factory=dict)
    fit_report_: dict = field(default_factory=dict)
    #: "supervised" (classifier on recorded failures) or "physics_prior" (too few recorded failures)
    mode_: str = "supervised"
    prior_: PhysicsPrior | None = None

    def fit(self, targets: pl.DataFrame) -> FailureModel:
        """Fit on :func:`failure_targets` output (rows out of service are skipped)."""
        import xgboost as xgb

        require_columns(targets, FAILURE_FEATURES + ("in_service", "fails_within", "rul_lower", "rul_upper"), "targets")
        t = targets.filter(pl.col("in_service"))
        y = t["fails_within"].to_numpy()
        c = self.config
        failures = recorded_failures(t)
        self.prior_ = PhysicsPrior.fit(t)
        if failures < c.min_recorded_failures:
            return self._fit_prior(t, y, failures)
        if y.sum() == len(y):
            raise ValueError(
                f"failure model: every one of the {len(y)} snapshots precedes a failure: nothing to contrast"
            )
        self.mode_ = "supervised"
        x = t.select(FAILURE_FEATURES).to_numpy().astype(np.float32)

        def classifier():
            return xgb.XGBClassifier(
                n_estimators=c.n_estimators,
                max_depth=c.max_depth,
                learning_rate=c.learning_rate,
                n_jobs=c.n_jobs,
                random_state=c.seed,
                eval_metric="auc",
            )

        self.classifier_ = classifier().fit(x, y)
        score = self.classifier_.predict_proba(x)[:, 1]
        self.calibrator_ = None
        if c.calibration == "isotonic":
            oof = self._out_of_fold(classifier, x, y, t["transformer_id"].to_numpy())
            if oof is not None:
                from sklearn.isotonic import IsotonicRegression

                self.calibrator_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(oof, y)
                score = self.calibrator_.predict(oof)
        elif c.calibration != "none":
            raise ValueError(f"FailureConfig.calibration must be 'isotonic' or 'none', got {c.calibration!r}")
        from .drift import reference_profile

        self.drift_profile_ = reference_profile(
            {**{n: x[:, i] for i, n in enumerate(FAILURE_FEATURES)}, "score": score}
        )
        flag = score >= c.thresholds.alert
        self.fit_report_ = {
            "train_snapshots": int(len(y)),
            "train_positives": int(y.sum()),
            "calibration": "isotonic" if self.calibrator_ is not None else "none",
            # out-of-fold when calibrated: what the alert band meant on transformers the fit did not see
            "train_precision_at_alert": round(float((flag & y).sum() / flag.sum()), 4) if flag.sum() else None,
            "train_recall_at_alert": round(float((flag & y).sum() / y.sum()), 4),
        }
        self._fit_survival(x, t)
        self.fit_report_["mode"] = self.mode_
        self.fit_report_["recorded_failures"] = failures
        return self

    def _fit_survival(self, x: np.ndarray, t: pl.DataFrame) -> None:
        import xgboost as xgb

        c = self.config
        d = xgb.DMatrix(x)
        d.set_float_info("label_lower_bound", t["rul_lower"].to_numpy())
        d.set_float_info("label_upper_bound", t["rul_upper"].to_numpy())
        self.survival_ = xgb.train(
            {
                "objective": "survival:aft",
                "eval_metric": "aft-nloglik",
                "aft_loss_distribution": "normal",
                "aft_loss_distribution_scale": 1.0,
                "tree_method": "hist",
                "learning_rate": c.learning_rate,
                "max_depth": c.max_depth,
                "nthread": c.n_jobs,
                "seed": c.seed,
            },
            d,
            num_boost_round=c.n_estimators,
        )

    def _fit_prior(self, t: pl.DataFrame, y: np.ndarray, failures: int) -> FailureModel:
        """Too few recorded failures for a classifier: the physics prior scores, the survival model still
        learns from what there is (censored snapshots included) when at least one failure is recorded."""
        from .drift import reference_profile

        c = self.config
        self.mode_, self.classifier_, self.calibrator_ = "physics_prior", None, None
        x = t.select(FAILURE_FEATURES).to_numpy().astype(np.float32)
        self.survival_ = None
        if y.sum():
            self._fit_survival(x, t)
        score = self.prior_.probability(t, c)
        self.drift_profile_ = reference_profile(
            {**{n: x[:, i] for i, n in enumerate(FAILURE_FEATURES)}, "score": score}
        )
        flag = score >= c.thresholds.alert
        self.fit_report_ = {
            "mode": self.mode_,
            "recorded_failures": failures,
            "min_recorded_failures": c.min_recorded_failures,
            "train_snapshots": int(len(y)),
            "train_positives": int(y.sum()),
            "calibration": "none (physics prior)",
            "prior_loc_k": round(self.prior_.loc, 4),
            "prior_scale_k": round(self.prior_.scale, 4),
            "train_precision_at_alert": round(float((flag & y).sum() / flag.sum()), 4) if flag.sum() else None,
            "train_recall_at_alert": round(float((flag & y).sum() / y.sum()), 4) if y.sum() else None,
        }
        return self

    def _out_of_fold(self, classifier, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray | None:
        """Raw probabilities of each row from a classifier fitted without its transformer (GroupKFold);
        None when the positives sit on fewer transformers than folds (nothing honest to calibrate on)."""
        from sklearn.model_selection import GroupKFold

        k = self.config.calibration_folds
        if len(np.unique(groups[y.astype(bool)])) < k:
            return None
        oof = np.empty(len(y), dtype=np.float64)
        for tr, te in GroupKFold(n_splits=k).split(x, y, groups):
            if y[tr].sum() == 0:
                return None
            oof[te] = classifier().fit(x[tr], y[tr]).predict_proba(x[te])[:, 1]
        return oof

    @property
    def mode(self) -> str:
        """How the model scores: ``supervised`` or ``physics_prior`` (models pickled before the prior existed
        are supervised)."""
        return getattr(self, "mode_", "supervised")

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(failure within the horizon) for feature rows ``x`` (calibrated if the model is)."""
        p = self.classifier_.predict_proba(x)[:, 1]
        return p if self.calibrator_ is None else self.calibrator_.predict(p)

    def predict(self, snapshots: pl.DataFrame) -> pl.DataFrame:
        """transformer_id, as_of, failure_probability_72h, rul_hours, status, features."""
        import xgboost as xgb

        if self.classifier_ is None and self.prior_ is None:
            raise RuntimeError("FailureModel is not fitted")
        require_columns(snapshots, ("transformer_id", "as_of") + FAILURE_FEATURES, "snapshots")
        x = snapshots.select(FAILURE_FEATURES).to_numpy().astype(np.float32)
        if self.mode == "physics_prior":
            p = self.prior_.probability(snapshots, self.config)
        else:
            p = self.probability(x)
        if self.survival_ is not None:
            rul = self.survival_.predict(xgb.DMatrix(x))
        else:
            rul = self.prior_.rul_hours(snapshots, self.config)
        th = self.config.thresholds
        from .anomaly import status_expr

        return snapshots.with_columns(
            pl.Series("failure_probability_72h", p.astype(np.float64)),
            pl.Series("rul_hours", np.asarray(rul, dtype=np.float64)),
        ).with_columns(status_expr(pl.col("failure_probability_72h"), th).alias("status"))


def recorded_failures(targets: pl.DataFrame) -> int:
    """Distinct failures the targets were labelled from: runs of ``fails_within`` snapshots per transformer."""
    t = targets.sort("transformer_id", "as_of")
    starts = t.select(
        (pl.col("fails_within") & ~pl.col("fails_within").shift(1, fill_value=False).over("transformer_id")).sum()
    ).item()
    return int(starts or 0)


#: a transformer whose remaining useful life is below this gets a maintenance recommendation
MAINTENANCE_RUL_DAYS = 90.0


def contributing_factors(model: FailureModel, snapshots: pl.DataFrame, top: int = 3) -> pl.DataFrame:
    """Why each snapshot is flagged: the ``top`` features pushing P(failure) up most, from the
    classifier's exact per-prediction contributions (XGBoost ``pred_contribs``: tree SHAP values, in
    log-odds), as ``"feature=value (+0.42)"`` strings in ``factors`` and the leading one in ``top_factor``."""
    import xgboost as xgb

    x = snapshots.select(FAILURE_FEATURES).to_numpy().astype(np.float32)
    if len(x) == 0:
        return snapshots.select("transformer_id", "as_of").with_columns(
            pl.lit(None, pl.Utf8).alias("top_factor"), pl.lit(None, pl.Utf8).alias("factors")
        )
    if model.mode == "physics_prior":
        return _prior_factors(model, snapshots)
    contrib = model.classifier_.get_booster().predict(xgb.DMatrix(x), pred_contribs=True)[:, :-1]
    order = np.argsort(-contrib, axis=1)[:, :top]
    texts, first = [], []
    for i in range(len(x)):
        parts = [f"{FAILURE_FEATURES[j]}={x[i, j]:.3g} ({contrib[i, j]:+.2f})" for j in order[i] if contrib[i, j] > 0]
        texts.append("; ".join(parts) or None)
        first.append(FAILURE_FEATURES[order[i, 0]] if contrib[i, order[i, 0]] > 0 else None)
    return snapshots.select("transformer_id", "as_of").with_columns(
        pl.Series("top_factor", first, dtype=pl.Utf8), pl.Series("factors", texts, dtype=pl.Utf8)
    )


def _prior_factors(model: FailureModel, snapshots: pl.DataFrame) -> pl.DataFrame:
    """The physics prior's one reason: the unexplained top-oil rise above its own 72 h baseline, in robust
    sigmas, with how fast it grows; null where the rise is not above the fleet's median."""
    z = model.prior_.z(snapshots)
    up = z > 0
    text = snapshots.select(
        pl.format(
            "{}={} K (z {}); excess_slope_12h={} K/h",
            pl.lit(PhysicsPrior.FEATURE),
            pl.col(PhysicsPrior.FEATURE).round(2),
            pl.Series(np.round(z, 1)),
            pl.col("excess_slope_12h").round(3),
        )
    ).to_series()
    return snapshots.select("transformer_id", "as_of").with_columns(
        pl.Series("top_factor", [PhysicsPrior.FEATURE if u else None for u in up], dtype=pl.Utf8),
        pl.when(pl.Series(up)).then(text).otherwise(None).alias("factors"),
    )


def maintenance_recommendation(rul_days: float = MAINTENANCE_RUL_DAYS) -> pl.Expr:
    """Text per prediction row: a maintenance recommendation when the remaining useful life is below
    ``rul_days`` (urgent when the 72 h failure probability is at the alert band too), else null."""
    rul_d = pl.col("rul_hours") / 24.0
    return (
        pl.when(rul_d < 3)
        .then(pl.format("replace or repair now: remaining life {} h", pl.col("rul_hours").round(0)))
        .when(rul_d < rul_days)
        .then(pl.format("schedule maintenance within {} days (remaining life estimate)", rul_d.floor().cast(pl.Int64)))
        .otherwise(pl.lit(None, pl.Utf8))
    )


def failure_holdout_metrics(model: FailureModel, eval_targets: pl.DataFrame) -> dict:
    """Metrics of ``model`` on held-out in-service :func:`failure_targets` rows.

    Brier score of P(failure within the horizon) (the promotion metric), ROC-AUC (None when the
    rows are all of one class), precision/recall at the model's alert threshold (recall None without
    a positive) and the snapshot and positive counts.
    """
    from sklearn.metrics import roc_auc_score

    p = model.predict(eval_targets)["failure_probability_72h"].to_numpy()
    y = eval_targets["fails_within"].to_numpy()
    flag = p >= model.config.thresholds.alert
    return {
        "brier": brier_score(p, y),
        "eval_snapshots": float(len(y)),
        "eval_positives": float(y.sum()),
        "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None,
        "precision_at_alert": float((flag & y).sum() / flag.sum()) if flag.sum() else 0.0,
        "recall_at_alert": float((flag & y).sum() / y.sum()) if y.sum() else None,
    }


def to_gold_risk(
    predictions: pl.DataFrame, impact: pl.DataFrame, version: str, tz: str, factors: pl.DataFrame | None = None
) -> pl.DataFrame:
    """:meth:`FailureModel.predict` output joined with :func:`outage_impact` (and, if given,
    :func:`contributing_factors`), as ``gold_transformer_risk`` rows with the maintenance recommendation.

    ``date`` is the local date of ``as_of``; a negative RUL is clipped to 0 h; a transformer missing
    from ``impact`` has 0 customers and 0 kW downstream; ``model_version`` is ``version``.
    """
    out = predictions.join(impact, on="transformer_id", how="left")
    if factors is not None:
        out = out.join(factors, on=["transformer_id", "as_of"], how="left")
    else:
        out = out.with_columns(pl.lit(None, pl.Utf8).alias("top_factor"), pl.lit(None, pl.Utf8).alias("factors"))
    return out.with_columns(
        pl.col("as_of").dt.convert_time_zone(tz).dt.date().alias("date"),
        pl.col("rul_hours").clip(lower_bound=0.0),
        pl.col("customers_downstream").fill_null(0),
        pl.col("load_downstream_kw").fill_null(0.0),
        pl.lit(version).alias("model_version"),
    ).with_columns(maintenance_recommendation().alias("maintenance"))


def outage_impact(
    ref_meters: pl.DataFrame, ref_transformers: pl.DataFrame, meter_readings: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Customers and load downstream of each transformer: what a failure would cut off.

    ``load_downstream_kw`` is the meters' mean demand over the readings given (pass the last 24 h).
    A transformer with no meters gets 0 customers and 0 kW (not an error: spares, street lighting).
    Meters pointing at a transformer the reference does not know are an error.
    """
    require_columns(ref_meters, ("meter_id", "transformer_id"), "ref_meters")
    require_columns(ref_transformers, ("transformer_id",), "ref_transformers")
    orphans = sorted(set(ref_meters["transformer_id"].to_list()) - set(ref_transformers["transformer_id"].to_list()))
    if orphans:
        raise FeatureInputError(
            f"ref_meters: {len(orphans)} transformer id(s) not in ref_transformers, e.g. {orphans[:5]}"
        )
    m = ref_meters.select("meter_id", "transformer_id")
    if meter_readings is not None and meter_readings.height:
        require_columns(meter_readings, ("meter_id", "demand_kw"), "meter readings")
        load = meter_readings.group_by("meter_id").agg(
            pl.col("demand_kw").cast(pl.Float64).fill_nan(None).mean().alias("_kw")
        )
        m = m.join(load, on="meter_id", how="left")
    else:
        m = m.with_columns(pl.lit(None, dtype=pl.Float64).alias("_kw"))
    per = m.group_by("transformer_id").agg(
        pl.len().cast(pl.Int64).alias("customers_downstream"),
        pl.col("_kw").fill_null(0.0).clip(lower_bound=0.0).sum().alias("load_downstream_kw"),
    )
    return (
        ref_transformers.select("transformer_id")
        .join(per, on="transformer_id", how="left")
        .with_columns(pl.col("customers_downstream").fill_null(0), pl.col("load_downstream_kw").fill_null(0.0))
    )


def evaluate_failure(
    pred: pl.DataFrame, targets: pl.DataFrame, truth_events: pl.DataFrame, threshold: float, horizon_h: float = 72.0
) -> dict:
    """ROC-AUC, precision/recall at the alert threshold, and warning lead times per failure.

    Lead time of a failure = failure start minus the first snapshot in the ``horizon_h`` before it
    whose probability reaches the threshold (0 h if none: a missed failure counts as no warning).
    """
    from sklearn.metrics import roc_auc_score

    j = pred.join(
        targets.select("transformer_id", "as_of", "in_service", "fails_within"),
        on=["transformer_id", "as_of"],
        how="inner",
    ).filter(pl.col("in_service"))
    y = j["fails_within"].to_numpy()
    p = j["failure_probability_72h"].to_numpy()
    flag = p >= threshold
    out = {
        "snapshots": int(len(y)),
        "positives": int(y.sum()),
        "roc_auc": round(float(roc_auc_score(y, p)), 4) if 0 < y.sum() < len(y) else None,
        "precision_at_threshold": round(float((flag & y).sum() / flag.sum()), 4) if flag.sum() else 0.0,
        "recall_at_threshold": round(float((flag & y).sum() / y.sum()), 4) if y.sum() else 0.0,
    }
    t0, t1 = pred["as_of"].min(), pred["as_of"].max()
    fails = truth_events.filter(
        (pl.col("event_type") == "transformer_failure")
        & (pl.col("start_time") > t0 + timedelta(hours=horizon_h))
        & (pl.col("start_time") <= t1)
    ).select(pl.col("asset_id").alias("transformer_id"), pl.col("start_time").alias("fail"))
    warned = (
        pred.filter(pl.col("failure_probability_72h") >= threshold)
        .join(fails, on="transformer_id", how="inner")
        .filter((pl.col("as_of") < pl.col("fail")) & (pl.col("as_of") >= pl.col("fail") - timedelta(hours=horizon_h)))
        .group_by("transformer_id", "fail")
        .agg(((pl.col("fail").first() - pl.col("as_of").min()).dt.total_seconds() / 3600.0).alias("lead_h"))
    )
    leads = fails.join(warned, on=["transformer_id", "fail"], how="left")["lead_h"].fill_null(0.0).to_numpy()
    out["failures"] = int(len(leads))
    out["warned"] = int((leads > 0).sum())
    out["median_lead_h"] = round(float(np.median(leads)), 2) if len(leads) else None
    out["median_lead_h_warned"] = round(float(np.median(leads[leads > 0])), 2) if (leads > 0).any() else None
    return out
