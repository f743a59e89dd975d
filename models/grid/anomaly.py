"""Anomaly ensemble: isolation forest + window autoencoder (PyTorch Lightning) + one-class SVM,
combined by a calibrated vote into one score in 0..1 per meter reading or SCADA sample.

Why three detectors: they fail differently. The isolation forest isolates rows with extreme single
features (a zero voltage, a huge level drop) but is blind to rows that are only odd *in sequence*;
the autoencoder sees a short window of consecutive readings (a flat-lined register, a dip-and-recover
sag) and flags windows it cannot reconstruct; the one-class SVM (RBF feature map + linear SGD
one-class SVM, so it scores in O(rows)) draws a smooth boundary around the joint normal region and
catches combinations no single feature exposes.

Why *calibrated* voting: raw scores live on different scales (path lengths, reconstruction errors,
signed margins). Each detector's score is calibrated into a probability by isotonic regression on
labelled readings held out by asset (monotone, and unlike a Platt sigmoid it can follow a detector
whose evidence is all in the far tail); the vote is a logistic regression over the three calibrated
log-odds fitted on the same rows: a weighted vote whose output is again a probability, so the utility's bands (0.7 monitoring, 0.85 alert, 0.95
critical; :class:`~models.grid.config.AlertThresholds`) mean the same thing for every asset type and
every retrain. Labels come from confirmed cases (the ``incidents`` source: work orders and
investigations, late and incomplete).

Cold start (no or too few labelled anomalies, :attr:`AnomalyConfig.min_labelled_rows`): every
detector's raw score is calibrated on its own distribution over the calibration rows, by the tail
share ``q`` of rows scoring at least as high: the alert band (0.85 by default) is the top
``contamination`` of the rows, monitoring (0.70) the top twice that and critical (0.95) the top
third of it; the rest of the distribution spreads over 0..monitoring (:func:`_tail_map`). The vote is the mean of the detectors' log-odds, mapped through the same tail rule on
the calibration rows (``post_``): the bands mean "as rare as the rarest 2 % / 1 % / 0.33 % of
readings" until labels arrive. ``fit_report_["mode"]`` says which calibration a model has.

The detectors themselves are unsupervised and are fitted on readings not labelled as events.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import polars as pl

from .config import AlertThresholds, AnomalyConfig, FeatureConfig
from .features import (
    METER_FEATURES,
    METER_WINDOW_FEATURES,
    TRANSFORMER_FEATURES,
    TRANSFORMER_WINDOW_FEATURES,
    FeatureInputError,
    require_columns,
    window_matrix,
)

DETECTORS = ("isolation_forest", "autoencoder", "ocsvm")
KINDS = {
    "meter": (METER_FEATURES, METER_WINDOW_FEATURES),
    "transformer": (TRANSFORMER_FEATURES, TRANSFORMER_WINDOW_FEATURES),
}
#: scaled feature values are clipped here: a 1,000-sigma outlier is as anomalous as a 10-sigma one,
#: and unbounded inputs would dominate the RBF map and the autoencoder's loss
CLIP = 10.0


def status_expr(score: pl.Expr, th: AlertThresholds) -> pl.Expr:
    """Vectorised :meth:`AlertThresholds.status`."""
    return (
        pl.when(score >= th.critical)
        .then(pl.lit("critical"))
        .when(score >= th.alert)
        .then(pl.lit("alert"))
        .when(score >= th.monitoring)
        .then(pl.lit("monitoring"))
        .otherwise(pl.lit("normal"))
    )


def asset_in_share(asset_ids: pl.Series, share: float, salt: str = "calibration") -> np.ndarray:
    """Deterministic split by asset: True for about ``share`` of the assets (sha1 of salt|id)."""
    uniq = asset_ids.unique().to_list()
    pick = {a: int(hashlib.sha1(f"{salt}|{a}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share for a in uniq}
    return asset_ids.replace_strict(pick, return_dtype=pl.Boolean).to_numpy()


def _autoencoder_module(n_in: int, hidden: int, code: int, lr: float):
    import pytorch_lightning as L
    import torch
    from torch import nn

    class WindowAutoencoder(L.LightningModule):
        """A tiny MLP autoencoder over a flattened window of scaled features."""

        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(n_in, hidden),
                nn.ReLU(),
                nn.Linear(hidden, code),
                nn.ReLU(),
                nn.Linear(code, hidden),
                nn.ReLU(),
                nn.Linear(hidden, n_in),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, _idx):
            (x,) = batch
            return nn.functional.mse_loss(self.net(x), x)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=lr)

    return WindowAutoencoder()


@dataclass
class AnomalyEnsemble:
    """Fitted ensemble for one asset kind (``meter`` or ``transformer``).

    Use :func:`models.grid.features.meter_features` / ``transformer_features`` to build its input.
    """

    kind: str
    #: how the input features were built (the utility's zone among them)
    feature_config: FeatureConfig
    #: the utility's bands (the profile's ``alert_bands.anomaly``: :meth:`AlertThresholds.from_bands`)
    thresholds: AlertThresholds
    config: AnomalyConfig = field(default_factory=AnomalyConfig)
    version: str = "unregistered"
    # fitted state
    medians_: np.ndarray | None = None
    scaler_: object = None
    iforest_: object = None
    ocsvm_: object = None
    ae_: object = None
    ae_fill_: np.ndarray | None = None
    iso_: dict = field(default_factory=dict)
    vote_: object = None
    #: cold start only: (x, y) of the tail mapping applied to the vote's output (None = supervised)
    post_: tuple | None = None
    #: training-window reference of every input and of the score (models.grid.drift.reference_profile)
    drift_profile_: dict = field(default_factory=dict)
    fit_report_: dict = field(default_factory=dict)
    #: a peer candidate deployed in the ensemble's place (:meth:`with_peer`): its name, the fitted
    #: detector (models.grid.peers) and the (x, y) knots calibrating its raw score to 0..1; None = the vote
    peer_name_: str | None = None
    peer_: object = None
    peer_cal_: tuple | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"AnomalyEnsemble.kind must be one of {sorted(KINDS)}, got {self.kind!r}")

    @property
    def features(self) -> tuple[str, ...]:
        return KINDS[self.kind][0]

    @property
    def window_features(self) -> tuple[str, ...]:
        return KINDS[self.kind][1]

    # ------------------------------------------------------------------ matrices
    def _check(self, features: pl.DataFrame) -> None:
        require_columns(features, ("asset_id", "time") + self.features, f"{self.kind} features")
        if features.height == 0:
            raise FeatureInputError(f"{self.kind} features: empty frame, nothing to score")

    def _scaled(self, features: pl.DataFrame) -> np.ndarray:
        x = features.select(self.features).to_numpy().astype(np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            x[bad] = np.broadcast_to(self.medians_, x.shape)[bad]
        return np.clip((x - self.scaler_.center_) / self.scaler_.scale_, -CLIP, CLIP).astype(np.float32)

    def _windows(self, features: pl.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
        w = window_matrix(features, self.window_features, self.feature_config.window, self.ae_fill_, rows)
        cols = [self.features.index(c) for c in self.window_features]
        center = np.tile(self.scaler_.center_[cols], self.feature_config.window)
        scale = np.tile(self.scaler_.scale_[cols], self.feature_config.window)
        w = np.clip((w - center) / scale, -CLIP, CLIP).astype(np.float32)
        return w

    def _fast(self) -> _FastScorer:
        """The numpy form of the fitted detectors, built once per fitted state (not pickled)."""
        # keyed on the fitted objects themselves (held by the scorer, so their ids cannot be reused):
        # re-fitting or swapping a detector rebuilds it
        key = (
            self.scaler_,
            self.medians_,
            self.iforest_,
            self.ocsvm_,
            self.ae_,
            self.ae_fill_,
            self.vote_,
            self.post_,
            self.peer_,
            self.peer_cal_,
            *(self.iso_.get(d) for d in DETECTORS),
            self.feature_config,
            self.config,
        )
        fast = self.__dict__.get("_fast_scorer")
        if fast is None or len(fast.key) != len(key) or any(a is not b for a, b in zip(fast.key, key)):
            fast = _FastScorer(self, key)
            self.__dict__["_fast_scorer"] = fast
        return fast

    def __getstate__(self) -> dict:
        # the fast scorer is derived state: rebuilt after load, so the file format is unchanged
        return {k: v for k, v in self.__dict__.items() if k != "_fast_scorer"}

    def _raw(self, features: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Raw detector scores (higher = more anomalous), columns in DETECTORS order, and the scaled matrix.

        Computed by :class:`_FastScorer`; :meth:`_raw_reference` is the same through the libraries'
        own scoring calls (sklearn ``score_samples``/``decision_function``, the torch module on
        the whole window matrix) and the tests hold the two together.
        """
        fast = self._fast()
        x, new_asset = fast.matrix(features)
        return fast.raw(x, new_asset)

    def _raw_reference(self, features: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The reference path the fast scorer must reproduce (slow: sklearn's per-tree Python loop,
        its generic kernel code, one torch call over every window)."""
        import torch

        torch.set_num_threads(self.config.torch_threads)
        xs = self._scaled(features)
        s_if = -self.iforest_.score_samples(xs)
        s_sv = -self.ocsvm_.decision_function(xs).astype(np.float64)
        with torch.inference_mode():
            w = torch.from_numpy(self._windows(features))
            err = ((self.ae_(w) - w) ** 2).mean(dim=1).numpy()
        s_ae = np.log(err.astype(np.float64) + 1e-6)
        return np.column_stack([s_if, s_ae, s_sv]), xs

    def _ocsvm_decision(self, xs: np.ndarray) -> np.ndarray:
        """The one-class SVM margin (``pipeline.decision_function``, same float32 steps), see
        :meth:`_FastScorer.ocsvm_margin`."""
        return self._fast().ocsvm_margin(xs)

    def _calibrated(self, raw: np.ndarray) -> np.ndarray:
        """Per-detector calibrated probabilities, columns in DETECTORS order."""
        return self._fast().calibrated(raw)

    def _calibrated_reference(self, raw: np.ndarray) -> np.ndarray:
        return np.column_stack([self.iso_[d].predict(raw[:, i]) for i, d in enumerate(DETECTORS)])

    def _post(self, p: np.ndarray) -> np.ndarray:
        """The cold-start tail mapping of the vote (identity for a supervised calibration)."""
        if self.post_ is None:
            return p
        xt, yt = self.post_
        return np.interp(p, xt, yt)

    @property
    def mode(self) -> str:
        """'cold_start' (calibrated on the score distribution), 'semi_supervised' (bands on the probability
        calibrated on labelled incidents) or 'semi_supervised_tail' (labels for the detectors' calibration
        and the vote weights, bands as tail shares: AnomalyConfig.band_calibration)."""
        return self.__dict__.get("mode_") or ("cold_start" if self.post_ is not None else "semi_supervised")

    @property
    def candidate(self) -> str:
        """What ``score`` is: ``"ensemble"`` (the calibrated vote) or the name of a peer (:meth:`with_peer`)."""
        return self.__dict__.get("peer_name_") or "ensemble"

    def _peer_score(self, xs: np.ndarray) -> np.ndarray:
        """The deployed peer's calibrated score of the scaled rows ``xs`` (monotone in its raw score)."""
        from .peers import peer_raw

        return np.interp(peer_raw(self.peer_name_, self.peer_, xs), *self.peer_cal_)

    @staticmethod
    def _logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-4, 1 - 1e-4)
        return np.log(p / (1 - p))

    # ------------------------------------------------------------------ fit
    def fit(self, features: pl.DataFrame, labels: np.ndarray | pl.Series | None = None) -> AnomalyEnsemble:
        """Fit the detectors on unlabelled-normal rows and calibrate the vote on held-out assets.

        ``labels``: one bool per row of ``features`` (True = reading inside a confirmed incident), e.g.
        ``event_type.is_not_null()`` from :func:`models.grid.evaluate.label_readings`; None (or fewer
        than ``min_labelled_rows`` anomalous rows on the calibration assets) = cold start.
        """
        import pytorch_lightning as L
        import torch
        from sklearn.ensemble import IsolationForest
        from sklearn.isotonic import IsotonicRegression
        from sklearn.kernel_approximation import Nystroem
        from sklearn.linear_model import LogisticRegression, SGDOneClassSVM
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import RobustScaler

        self._check(features)
        self.__dict__.pop("_fast_scorer", None)
        self.peer_name_, self.peer_, self.peer_cal_ = None, None, None
        y = self._labels(features, labels)
        cfg = self.config
        train, cal_rows, cold = self._split(features, y)
        # only the sampled rows become matrices (issue 13: the whole window's float64 matrix and its
        # autoencoder windows were 5+ GB at 10,000 meters x 21 days; the sample is the same rows as before)
        xt = features[train].select(self.features).to_numpy().astype(np.float64)
        self.medians_ = np.nanmedian(np.where(np.isfinite(xt), xt, np.nan), axis=0)
        self.medians_ = np.where(np.isfinite(self.medians_), self.medians_, 0.0)
        self.scaler_ = RobustScaler().fit(np.where(np.isfinite(xt), xt, self.medians_))
        # a missing measure is rare and telling (no supply, broken sensor): one counts as 10 "sigmas"
        self.scaler_.scale_[self.features.index("n_missing")] = 0.1
        cols = [self.features.index(c) for c in self.window_features]
        self.ae_fill_ = self.medians_[cols]
        xs = self._scaled(features[train])

        self.iforest_ = IsolationForest(
            n_estimators=cfg.n_estimators, max_samples=min(cfg.max_samples, len(xs)), random_state=cfg.seed, n_jobs=1
        ).fit(xs)
        self.ocsvm_ = make_pipeline(
            Nystroem(
                gamma=1.0 / xs.shape[1], n_components=min(cfg.nystroem_components, len(xs)), random_state=cfg.seed
            ),
            SGDOneClassSVM(nu=cfg.ocsvm_nu, random_state=cfg.seed),
        ).fit(xs)

        torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        wins = self._windows(features, train)
        self.ae_ = _autoencoder_module(wins.shape[1], cfg.ae_hidden, cfg.ae_code, cfg.ae_lr)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(wins)), batch_size=cfg.ae_batch, shuffle=True
        )
        for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
        trainer = L.Trainer(
            max_epochs=cfg.ae_epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(self.ae_, loader)
        # keep the plain network: scoring needs no Trainer, and a module-level class pickles
        self.ae_ = self.ae_.net.eval()

        # calibration on held-out assets
        raw, _ = self._raw(features[cal_rows])
        yc = y[cal_rows]
        self.post_ = None
        if cold:
            self.iso_ = {
                d: IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                    *_tail_map(raw[:, i], cfg.contamination, self.thresholds)
                )
                for i, d in enumerate(DETECTORS)
            }
            self.vote_ = _mean_vote(len(DETECTORS))
            self.post_ = _tail_map(
                self.vote_.predict_proba(self._logit(self._calibrated(raw)))[:, 1], cfg.contamination, self.thresholds
            )
            self.__dict__.pop("_fast_scorer", None)
        else:
            self.iso_ = {
                d: IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw[:, i], yc)
                for i, d in enumerate(DETECTORS)
            }
            self.vote_ = LogisticRegression().fit(self._logit(self._calibrated(raw)), yc)
            if cfg.band_calibration == "tail":
                share = max(cfg.contamination, float(yc.mean()))
                self.post_ = _tail_map(
                    self.vote_.predict_proba(self._logit(self._calibrated(raw)))[:, 1], share, self.thresholds
                )
        self.mode_ = "cold_start" if cold else ("semi_supervised_tail" if self.post_ is not None else "semi_supervised")
        # what monitoring compares scoring days with (models.grid.drift): the training rows' inputs and
        # the calibration rows' scores
        from .drift import reference_profile

        cal_score = self._post(self.vote_.predict_proba(self._logit(self._calibrated(raw)))[:, 1])
        self.drift_profile_ = reference_profile(
            {**{n: xt[:, i] for i, n in enumerate(self.features)}, "score": cal_score}
        )
        self.fit_report_ = {
            "mode": self.mode,
            "train_rows": int(len(train)),
            "calibration_rows": int(cal_rows.size),
            "calibration_anomalies": int(yc.sum()),
            "labelled_rows": int(y.sum()),
            "contamination": cfg.contamination if cold else None,
            "vote_weights": dict(zip(DETECTORS, [round(float(w), 4) for w in self.vote_.coef_[0]])),
            "candidate": "ensemble",
        }
        return self

    @staticmethod
    def _labels(features: pl.DataFrame, labels) -> np.ndarray:
        if labels is None:
            return np.zeros(features.height, dtype=bool)
        y = np.asarray(labels.to_numpy() if isinstance(labels, pl.Series) else labels).astype(bool)
        if y.shape != (features.height,):
            raise ValueError(f"labels: need one per feature row ({features.height}), got shape {y.shape}")
        return y

    def _split(self, features: pl.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """(training rows, calibration rows, cold start?) of a fit: the detectors train on a sample of
        the normal rows of the training assets, the calibration uses a sample of the other assets' rows."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        calib = asset_in_share(features["asset_id"], cfg.calibration_share)
        if not calib.any() or calib.all():
            raise ValueError(
                f"{self.kind} anomaly fit: {features['asset_id'].n_unique()} asset(s) cannot be split into "
                f"training and calibration assets (calibration_share {cfg.calibration_share}); give more assets"
            )
        cold = int((y & calib).sum()) < cfg.min_labelled_rows
        if not (~y & ~calib).any():
            raise ValueError(f"{self.kind} anomaly fit: no normal rows on the training assets")
        train = np.flatnonzero(~y & ~calib)
        if train.size > cfg.max_train_rows:
            train = np.sort(rng.choice(train, cfg.max_train_rows, replace=False))
        cal_rows = np.flatnonzero(calib)
        if cal_rows.size > cfg.max_calibration_rows:
            cal_rows = np.sort(rng.choice(cal_rows, cfg.max_calibration_rows, replace=False))
        return train, cal_rows, cold

    def with_peer(
        self, name: str, features: pl.DataFrame, labels: np.ndarray | pl.Series | None = None
    ) -> AnomalyEnsemble:
        """A copy of this fitted ensemble whose ``score`` is peer ``name`` (:mod:`models.grid.peers`)
        instead of the vote: a candidate of the champion policy (:func:`models.grid.pipelines.train_anomaly`).

        ``features``/``labels`` must be what this ensemble was fitted on: the peer trains on the same
        rows (normal rows of the training assets, on the same scaled features) and its raw score is
        calibrated on the same calibration assets, by the same rule as the vote: the tail map without
        labels or with ``band_calibration="tail"``, isotonic regression on the labels otherwise. The
        detector columns (and the reasons) stay the ensemble's, so gold tables and monitoring keep their shape.
        """
        import copy

        from sklearn.isotonic import IsotonicRegression

        from .drift import reference_profile
        from .peers import DEPLOYABLE_PEERS, fit_peer, peer_raw

        if name not in DEPLOYABLE_PEERS:
            raise ValueError(
                f"with_peer: {name!r} cannot be deployed (its score of a reading depends on the batch); "
                f"candidates: {list(DEPLOYABLE_PEERS)}"
            )
        if self.vote_ is None:
            raise RuntimeError("AnomalyEnsemble.with_peer: fit the ensemble first")
        self._check(features)
        y = self._labels(features, labels)
        cfg = self.config
        train, cal_rows, cold = self._split(features, y)
        peer = fit_peer(name, self._scaled(features[train]), cfg.seed)
        raw = peer_raw(name, peer, self._scaled(features[cal_rows]))
        yc = y[cal_rows]
        if cold or cfg.band_calibration == "tail":
            share = cfg.contamination if cold else max(cfg.contamination, float(yc.mean()))
            cal, how = _tail_map(raw, share, self.thresholds), "tail"
        else:
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, yc)
            cal, how = (np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_)), "isotonic"
        m = copy.copy(self)
        m.__dict__.pop("_fast_scorer", None)
        m.peer_name_, m.peer_, m.peer_cal_ = name, peer, cal
        m.version = "unregistered"
        m.drift_profile_ = {**self.drift_profile_, **reference_profile({"score": np.interp(raw, *cal)})}
        m.fit_report_ = {**self.fit_report_, "candidate": name, "peer_calibration": how}
        return m

    # ------------------------------------------------------------------ score
    def score_arrays(self, features: pl.DataFrame) -> dict[str, np.ndarray]:
        """Calibrated scores per row: ``score`` (the vote) and one per detector; plus ``scaled`` features."""
        return self._score_arrays(features)[0]

    def _score_arrays(self, features: pl.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """:meth:`score_arrays` and the raw feature matrix (``score`` reuses it for the reasons)."""
        if self.vote_ is None:
            raise RuntimeError("AnomalyEnsemble is not fitted; call fit() or load()")
        self._check(features)
        fast = self._fast()
        x, new_asset = fast.matrix(features)
        return fast.score(x, new_asset), x

    def _score_arrays_reference(self, features: pl.DataFrame) -> dict[str, np.ndarray]:
        """:meth:`score_arrays` through the libraries' own predict calls (what the tests compare with)."""
        raw, xs = self._raw_reference(features)
        cal = self._calibrated_reference(raw)
        out = {"score": self._post(self.vote_.predict_proba(self._logit(cal))[:, 1])}
        if self.peer_ is not None:
            out["score"] = self._peer_score(xs)
        for i, d in enumerate(DETECTORS):
            out[d] = cal[:, i]
        out["scaled"] = xs
        return out

    def score(self, features: pl.DataFrame) -> pl.DataFrame:
        """Scores as a frame: asset_id, time, score, per-detector scores, status, reason (see
        :data:`contracts.GOLD_ANOMALY_SCORES`, which :func:`to_gold_scores` conforms to)."""
        s, x = self._score_arrays(features)
        th = self.thresholds
        out = features.select("asset_id", "time").with_columns(
            pl.Series("score", s["score"]),
            pl.Series("score_isolation_forest", s["isolation_forest"]),
            pl.Series("score_autoencoder", s["autoencoder"]),
            pl.Series("score_ocsvm", s["ocsvm"]),
        )
        out = out.with_columns(status_expr(pl.col("score"), th).alias("status"))
        reason = np.full(out.height, None, dtype=object)
        flagged = np.flatnonzero(s["score"] >= th.monitoring)
        if flagged.size:
            z = s["scaled"][flagged]
            j = np.abs(z).argmax(axis=1)
            raw = x[flagged]
            for k, (row, col) in enumerate(zip(flagged, j)):
                v = raw[k, col]
                shown = "missing" if not np.isfinite(v) else f"{v:.4g}"
                reason[row] = (
                    f"{self.features[col]}={shown} (robust z {z[k, col]:+.1f}; typical {self.medians_[col]:.4g})"
                )
        return out.with_columns(pl.Series("reason", reason.tolist(), dtype=pl.Utf8))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted ensemble (one joblib file; the autoencoder pickles with it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path)
        return path

    @staticmethod
    def load(path: str | Path) -> AnomalyEnsemble:
        obj = joblib.load(Path(path))
        if not isinstance(obj, AnomalyEnsemble):
            raise ValueError(f"{path}: not an AnomalyEnsemble (got {type(obj).__name__})")
        return obj

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        joblib.dump(self, buf)
        return buf.getvalue()


def _tail_map(
    raw: np.ndarray, contamination: float, bands: AlertThresholds, points: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the cold-start calibration, q = share of ``raw`` at or above x: the alert band is the
    top ``contamination`` of the rows, monitoring the top twice that, critical the top third of it
    (piecewise linear in q between them); the rest of the distribution spreads linearly over
    0..monitoring (the order of ordinary rows is kept). At most ``points`` knots, denser in the tail,
    x strictly increasing."""
    r = np.sort(np.asarray(raw, dtype=np.float64))
    n = r.size
    if n == 0:
        raise ValueError("cold-start calibration: no calibration rows")
    # knots at tail shares from 1 down to 1/n, log-spaced (the tail is where the bands are)
    q = np.unique(np.concatenate([np.geomspace(1.0 / n, 1.0, points), np.linspace(0.0, 1.0, 33)[1:]]))
    idx = np.clip(np.ceil(n * (1.0 - q)).astype(int), 0, n - 1)
    x = r[idx]
    tail = (n - np.searchsorted(r, x, side="left")) / n  # share of rows >= x (ties count)
    c = contamination
    y = np.interp(tail, [0.0, c / 3, c, 2 * c, 1.0], [1.0, bands.critical, bands.alert, bands.monitoring, 0.0])
    x, first = np.unique(x, return_index=True)
    y = np.maximum.accumulate(y[first])
    if x.size == 1:  # a constant score: nothing is rarer than anything else
        x, y = np.array([x[0], x[0] + 1e-12]), np.array([0.0, 0.0])
    return x, y


def _mean_vote(n: int):
    """A fitted-looking LogisticRegression that averages the detectors' log-odds (cold start)."""
    from sklearn.linear_model import LogisticRegression

    v = LogisticRegression()
    v.classes_ = np.array([False, True])
    v.coef_ = np.full((1, n), 1.0 / n)
    v.intercept_ = np.zeros(1)
    v.n_features_in_ = n
    return v


#: below this many rows the isolation forest walks all trees at once in numpy (one call per tree
#: level); above it each tree's Cython ``apply`` runs over a chunk of rows (one call per tree)
_SMALL_BATCH = 256
#: rows per chunk scored by one thread
_CHUNK = 16_384
#: rows per OCSVM kernel block: (rows x components) float64 stays in the L2 cache
_SV_CHUNK = 2_048
#: batches from this size are split over threads (every heavy step below releases the GIL)
_PARALLEL_ROWS = 20_000
_THREADS = max(1, min(2, os.cpu_count() or 1))


class _FastScorer:
    """The fitted ensemble as plain arrays, scoring the same numbers as the libraries' own calls.

    Why it exists (issue 4: >= 200k readings/s, one reading < 10 ms): the fitted models are fine,
    their generic scoring calls are not.

    - Isolation forest: sklearn's ``score_samples`` runs a joblib loop over the trees with
      per-tree config/warnings bookkeeping (~50 us per tree and call, i.e. >3 ms for one reading).
      Here large batches call each tree's Cython ``apply`` directly and add the precomputed
      per-leaf path length (``decision_path_length + average_path_length - 1``, sklearn's terms, in
      the same order, so depths agree bit for bit); small batches walk all trees at once, level by
      level, over the concatenated node arrays (``children_left/right``, ``feature``, ``threshold``).
    - One-class SVM: the Nystroem RBF kernel in exactly sklearn's steps (float64 distances, float32
      kernel), then projection and margin as one float64 product (see ``__init__``), on row chunks
      that stay in cache, without sklearn's per-call validation.
    - Autoencoder: windows gathered from the already imputed matrix (no second frame extraction, no
      string comparison per window), fed chunk by chunk to the same torch module under
      ``inference_mode``.
    - Isotonic calibration is ``np.interp`` over the fitted thresholds (what sklearn's interp1d
      computes), the vote a dot product and a logistic.

    Big batches are cut into chunks scored by two threads. Built from a fitted ensemble and cached
    on it (never pickled: :meth:`AnomalyEnsemble.__getstate__`).
    """

    def __init__(self, m: AnomalyEnsemble, key: tuple) -> None:
        self.key = key
        self.features = m.features
        self.torch_threads = m.config.torch_threads
        self.window = m.feature_config.window
        self.center = np.asarray(m.scaler_.center_, dtype=np.float64)
        self.scale = np.asarray(m.scaler_.scale_, dtype=np.float64)
        self.medians = np.asarray(m.medians_, dtype=np.float64)
        self.wcols = [m.features.index(c) for c in m.window_features]
        self.wfill = np.asarray(m.ae_fill_).astype(np.float32)
        self.ae = m.ae_
        self._init_forest(m.iforest_, len(self.features))
        ny, svm = m.ocsvm_.steps[0][1], m.ocsvm_.steps[1][1]
        if getattr(ny, "kernel", None) != "rbf" or ny.kernel_params:
            raise ValueError(f"fast scorer expects the Nystroem RBF map it was built for, got {ny.kernel!r}")
        comp = np.asarray(ny.components_).astype(np.float64)
        self.sv_comp_sq = np.einsum("ij,ij->i", comp, comp)[None, :]
        # -2 * (x @ c.T) == x @ (-2 c).T bit for bit (scaling by a power of two is exact): one pass less
        self.sv_comp_m2T = np.ascontiguousarray((-2.0 * comp).T)
        self.sv_gamma = ny.gamma if ny.gamma is not None else 1.0 / comp.shape[1]
        # projection and margin folded into one float64 vector: sklearn does both in float32, and
        # float32 sgemm results move by ~3e-8 with batch size and BLAS threads (measured), which the
        # steep parts of the isotonic calibration turn into ~1e-4 score changes. In float64 a score
        # no longer depends on how many rows were scored with it.
        self.sv_w = np.asarray(ny.normalization_, dtype=np.float64).T @ np.asarray(svm.coef_, dtype=np.float64).ravel()
        self.sv_offset = float(np.ravel(svm.offset_)[0])
        # calibration and vote (absent while fit() computes the raw scores it calibrates on)
        self.iso = (
            [
                (
                    np.asarray(m.iso_[d].X_thresholds_),
                    np.asarray(m.iso_[d].y_thresholds_),
                    m.iso_[d].X_min_,
                    m.iso_[d].X_max_,
                )
                for d in DETECTORS
            ]
            if all(d in m.iso_ for d in DETECTORS)
            else None
        )
        self.vote = (
            (m.vote_.coef_.ravel().astype(np.float64), float(m.vote_.intercept_[0])) if m.vote_ is not None else None
        )
        self.post = m.post_
        self.peer = m if m.peer_ is not None else None

    def _init_forest(self, forest, n_features: int) -> None:
        from sklearn.ensemble._iforest import _average_path_length

        n = len(forest.estimators_)
        self.if_denominator = n * _average_path_length([forest._max_samples])[0]
        # sklearn passes X itself when every feature is used, else X[:, estimators_features_[i]]
        subsample = forest._max_features != n_features
        self.if_trees = []
        lefts, rights, feats, thrs, vals, roots = [], [], [], [], [], []
        offset = 0
        for i, est in enumerate(forest.estimators_):
            t = est.tree_
            cols = np.asarray(forest.estimators_features_[i]) if subsample else None
            leafv = forest._decision_path_lengths[i] + forest._average_path_length_per_tree[i] - 1.0
            self.if_trees.append((t, cols, leafv))
            leaf = t.children_left < 0
            own = np.arange(t.node_count) + offset
            lefts.append(np.where(leaf, own, t.children_left + offset))
            rights.append(np.where(leaf, own, t.children_right + offset))
            f = np.where(leaf, 0, t.feature)
            feats.append(cols[f] if cols is not None else f)
            thrs.append(np.where(leaf, 0.0, t.threshold))
            vals.append(np.where(leaf, leafv, 0.0))
            roots.append(offset)
            offset += t.node_count
        self.if_left, self.if_right = np.concatenate(lefts), np.concatenate(rights)
        self.if_feature, self.if_threshold = np.concatenate(feats).astype(np.intp), np.concatenate(thrs)
        self.if_value, self.if_roots = np.concatenate(vals), np.asarray(roots, dtype=np.intp)
        self.if_depth = max(est.tree_.max_depth for est in forest.estimators_)

    # ------------------------------------------------------------------ input
    def matrix(self, features: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Raw feature matrix (float64, NaN kept) and the rows where a new asset starts."""
        x = np.ascontiguousarray(features.select(self.features).to_numpy(), dtype=np.float64)
        ids = features["asset_id"]
        if ids.dtype == pl.Categorical:
            ids = ids.to_physical()
        new = np.ones(len(x), dtype=bool)
        if len(x) > 1:
            new[1:] = (ids[1:] != ids[:-1]).to_numpy()
        return x, new

    # ------------------------------------------------------------------ detectors
    def scaled(self, x: np.ndarray) -> np.ndarray:
        """As :meth:`AnomalyEnsemble._scaled`: medians for missing values, robust scale, clip, float32."""
        x = x.copy()
        bad = ~np.isfinite(x)
        if bad.any():
            x[bad] = np.broadcast_to(self.medians, x.shape)[bad]
        return np.clip((x - self.center) / self.scale, -CLIP, CLIP).astype(np.float32)

    def iforest_score(self, xs: np.ndarray) -> np.ndarray:
        """``-IsolationForest.score_samples(xs)`` (higher = more anomalous)."""
        if len(xs) < _SMALL_BATCH:
            node = np.repeat(self.if_roots[None, :], len(xs), axis=0)
            for _ in range(self.if_depth):
                v = np.take_along_axis(xs, self.if_feature[node], axis=1)
                node = np.where(v <= self.if_threshold[node], self.if_left[node], self.if_right[node])
            depths = self.if_value[node].sum(axis=1)
        else:
            xs = np.ascontiguousarray(xs, dtype=np.float32)
            depths = np.zeros(len(xs))
            for tree, cols, leafv in self.if_trees:
                depths += leafv[tree.apply(xs if cols is None else np.ascontiguousarray(xs[:, cols]))]
        d = self.if_denominator
        return 2.0 ** (-(depths / d) if d != 0 else -np.ones_like(depths))

    def ocsvm_margin(self, xs: np.ndarray) -> np.ndarray:
        """``Pipeline(Nystroem, SGDOneClassSVM).decision_function(xs)``: the RBF kernel in sklearn's
        exact steps (float64 distances, float32 kernel), the projection and margin in float64."""
        out = np.empty(len(xs))
        for a in range(0, len(xs), _SV_CHUNK):
            x = xs[a : a + _SV_CHUNK].astype(np.float64)
            d = x @ self.sv_comp_m2T
            d += np.einsum("ij,ij->i", x, x)[:, None]
            d += self.sv_comp_sq
            k = d.astype(np.float32)
            np.maximum(k, 0, out=k)
            k *= -self.sv_gamma
            np.exp(k, out=k)
            out[a : a + _SV_CHUNK] = k.astype(np.float64) @ self.sv_w - self.sv_offset
        return out

    def windows(self, x: np.ndarray, start: np.ndarray, a: int, b: int) -> np.ndarray:
        """Scaled autoencoder windows of rows a..b, as :meth:`AnomalyEnsemble._windows` builds them."""
        lo = max(0, a - self.window + 1)
        w = x[lo:b, self.wcols].astype(np.float32)
        bad = ~np.isfinite(w)
        if bad.any():
            w[bad] = np.broadcast_to(self.wfill, w.shape)[bad]
        cols = self.wcols
        w = np.clip((w - self.center[cols]) / self.scale[cols], -CLIP, CLIP).astype(np.float32)
        k = len(cols)
        out = np.empty((b - a, self.window * k), dtype=np.float32)
        idx = np.arange(a, b)
        for j, lag in enumerate(range(self.window - 1, -1, -1)):
            out[:, j * k : (j + 1) * k] = w[np.maximum(idx - lag, start[a:b]) - lo]
        return out

    def ae_score(self, w: np.ndarray) -> np.ndarray:
        """Log mean squared reconstruction error of each window."""
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(w)
            err = ((self.ae(t) - t) ** 2).mean(dim=1).numpy()
        return np.log(err.astype(np.float64) + 1e-6)

    # ------------------------------------------------------------------ scoring
    def _chunk(self, x: np.ndarray, start: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        xs = self.scaled(x[a:b])
        raw = np.empty((b - a, 3))
        raw[:, 0] = self.iforest_score(xs)
        raw[:, 1] = self.ae_score(self.windows(x, start, a, b))
        raw[:, 2] = -self.ocsvm_margin(xs)
        return raw, xs

    def raw(self, x: np.ndarray, new_asset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw detector scores (DETECTORS order) and the scaled matrix, chunked over threads."""
        import torch

        if torch.get_num_threads() != self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        n = len(x)
        start = np.maximum.accumulate(np.where(new_asset, np.arange(n), 0))
        if n < _PARALLEL_ROWS or _THREADS == 1:
            return self._chunk(x, start, 0, n)
        from threadpoolctl import threadpool_limits

        raw, xs = np.empty((n, 3)), np.empty((n, len(self.features)), dtype=np.float32)
        bounds = [(a, min(a + _CHUNK, n)) for a in range(0, n, _CHUNK)]

        def run(ab: tuple[int, int]) -> None:
            a, b = ab
            raw[a:b], xs[a:b] = self._chunk(x, start, a, b)

        # two Python threads, each with a single-threaded BLAS: no oversubscription of the 2 cores
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(_THREADS) as pool:
            list(pool.map(run, bounds))
        return raw, xs

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        """Isotonic calibration (clip to the fitted range, then linear interpolation, as sklearn's)."""
        if self.iso is None:
            raise RuntimeError("AnomalyEnsemble is not calibrated yet")
        return np.column_stack(
            [np.interp(np.clip(raw[:, i], lo, hi), xt, yt) for i, (xt, yt, lo, hi) in enumerate(self.iso)]
        )

    def score(self, x: np.ndarray, new_asset: np.ndarray) -> dict[str, np.ndarray]:
        from scipy.special import expit  # scipy on first use: importing the Dagster definitions does not need it

        raw, xs = self.raw(x, new_asset)
        cal = self.calibrated(raw)
        coef, intercept = self.vote
        z = AnomalyEnsemble._logit(cal) @ coef + intercept
        out = {"score": expit(z) if self.post is None else np.interp(expit(z), *self.post)}
        if self.peer is not None:
            out["score"] = self.peer._peer_score(xs)
        for i, d in enumerate(DETECTORS):
            out[d] = cal[:, i]
        out["scaled"] = xs
        return out
