"""Configuration of the grid ML library: thresholds, physics constants, tariffs, DR rules.

Every number a utility would want to change lives here as a frozen dataclass with validation, so a
Dagster ``Config`` (or a YAML file) can build them and a bad value fails at load time with the field
named, not deep inside a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: registered model names in the MLflow registry (training assets register them, batch scoring and the
#: streaming bridge load their ``champion`` alias)
MODEL_ANOMALY = {"meter": "grid_anomaly_meter", "transformer": "grid_anomaly_transformer"}
MODEL_FAILURE = "grid_transformer_failure"
MODEL_SEGMENTS = "grid_customer_segments"


def _finite(owner: str, name: str, v: object, lo: float | None = None, hi: float | None = None) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise ValueError(f"{owner}.{name} must be a finite number, got {v!r}")
    if lo is not None and v < lo:
        raise ValueError(f"{owner}.{name} must be >= {lo}, got {v!r}")
    if hi is not None and v > hi:
        raise ValueError(f"{owner}.{name} must be <= {hi}, got {v!r}")


@dataclass(frozen=True)
class AlertThresholds:
    """The utility's score bands: ``[monitoring, alert)`` is watched, ``>= alert`` raises an alert,
    ``>= critical`` is critical. They apply to calibrated scores in 0..1 (anomaly) and are reused,
    with their own values, for the failure risk. No defaults: the values are the utility profile's
    ``alert_bands`` (:meth:`from_bands`)."""

    monitoring: float
    alert: float
    critical: float

    @classmethod
    def from_bands(cls, bands) -> AlertThresholds:
        """From one section of the profile's alert bands (``profile.alert_bands.anomaly`` or
        ``.failure_risk``: any object with ``monitoring``, ``alert``, ``critical``)."""
        return cls(bands.monitoring, bands.alert, bands.critical)

    def __post_init__(self) -> None:
        for n in ("monitoring", "alert", "critical"):
            _finite("AlertThresholds", n, getattr(self, n), 0.0, 1.0)
        if not (self.monitoring <= self.alert <= self.critical):
            raise ValueError(
                f"AlertThresholds must satisfy monitoring <= alert <= critical, got "
                f"{self.monitoring}, {self.alert}, {self.critical}"
            )

    def status(self, score: float) -> str:
        """Band name of one score (vectorised form: :func:`models.grid.anomaly.status_expr`)."""
        if score >= self.critical:
            return "critical"
        if score >= self.alert:
            return "alert"
        if score >= self.monitoring:
            return "monitoring"
        return "normal"


@dataclass(frozen=True)
class FeatureConfig:
    """How raw readings become features (see :mod:`models.grid.features`). The zone and nominal values
    have no defaults: they are the utility profile's (:meth:`from_profile`)."""

    #: the utility's zone (the profile's ``timezone``)
    timezone: str
    #: nominal service voltage of the meters (V; the profile's ``quality.meter.nominal_v``)
    meter_nominal_v: float
    #: nominal secondary voltage reported by transformer SCADA (V; ``quality.scada.nominal_v``)
    transformer_nominal_v: float
    #: ``quality.scada.nominal_frequency_hz``
    nominal_frequency_hz: float
    #: the "rolling mean" a reading is compared with: the meter's previous day
    short_window: str = "1d"
    #: the level a meter's last day is compared with: the 7 days before it (theft, zero meters)
    long_window: str = "7d"
    #: readings in the short flat-line window (a stuck register repeats the same value)
    flat_readings: int = 4
    #: readings per autoencoder window
    window: int = 8
    # IEEE C57.91 clause 7 top-oil model with ONAN defaults: the expected top-oil rise for the load,
    # so a rise the load does not explain (degraded cooling, insulation losses) stands out. Replace
    # with nameplate values where the utility has them.
    top_oil_rise_rated_c: float = 55.0
    loss_ratio: float = 4.5
    oil_exponent: float = 0.8
    tau_top_oil_min: float = 180.0

    @classmethod
    def from_profile(cls, profile, **overrides) -> FeatureConfig:
        """The profile's zone and nominal values (``profile``: a :class:`contracts.profile.UtilityProfile`);
        ``overrides``: the other fields (windows, thermal model)."""
        q = profile.quality
        return cls(
            timezone=profile.timezone,
            meter_nominal_v=q.meter.nominal_v,
            transformer_nominal_v=q.scada.nominal_v,
            nominal_frequency_hz=q.scada.nominal_frequency_hz,
            **overrides,
        )

    def __post_init__(self) -> None:
        for n in (
            "meter_nominal_v",
            "transformer_nominal_v",
            "nominal_frequency_hz",
            "top_oil_rise_rated_c",
            "loss_ratio",
            "oil_exponent",
            "tau_top_oil_min",
        ):
            _finite("FeatureConfig", n, getattr(self, n), 1e-9)
        for n in ("flat_readings", "window"):
            v = getattr(self, n)
            if not isinstance(v, int) or v < 2:
                raise ValueError(f"FeatureConfig.{n} must be an int >= 2, got {v!r}")


@dataclass(frozen=True)
class AnomalyConfig:
    """Sizes of the three detectors. Small on purpose: 2 shared cores, scoring >= 200k readings/s."""

    n_estimators: int = 64  # isolation forest trees
    max_samples: int = 256  # rows per tree (Liu et al.'s default)
    max_train_rows: int = 40_000  # unsupervised fit sample
    nystroem_components: int = 64  # RBF feature map for the linear one-class SVM
    ocsvm_nu: float = 0.02
    ae_hidden: int = 16
    ae_code: int = 4
    ae_epochs: int = 8
    ae_batch: int = 512
    ae_lr: float = 3e-3
    #: share of the labelled rows held back to calibrate the vote (split by asset)
    calibration_share: float = 0.4
    #: calibration rows kept (uniform sample: the prevalence, hence the probabilities, stay unbiased)
    max_calibration_rows: int = 100_000
    torch_threads: int = 1
    seed: int = 0
    #: cold start (no labelled anomaly): the share of rows expected to be anomalous. Scores are then
    #: calibrated on their own distribution so that the alert band (0.85) is the top ``contamination``
    #: of the calibration rows, monitoring (0.70) the top 2x and critical (0.95) the top 1/3 of it
    contamination: float = 0.01
    #: fewer labelled anomalous rows than this on the calibration assets: calibrate without labels
    min_labelled_rows: int = 20
    #: with labels, what the bands are read on: "probability" (the calibrated P(labelled anomaly): right
    #: when the labels are complete, e.g. a fully investigated panel) or "tail" (labels learn each
    #: detector's calibration and the vote weights; the bands are then tail shares of the vote on the
    #: calibration rows, contamination = max(contamination, labelled share): right for incidents, which
    #: confirm only part of the events, so a calibrated probability rarely reaches the bands)
    band_calibration: str = "probability"
    #: peer detectors fitted next to the ensemble as candidates of the champion policy (models.grid.peers;
    #: models.grid.pipelines.select_candidate); () = the ensemble alone
    #: (only the batch-independent ones: models.grid.peers.DEPLOYABLE_PEERS)
    peers: tuple[str, ...] = ("isolation_forest", "lof")

    def __post_init__(self) -> None:
        _finite("AnomalyConfig", "contamination", self.contamination, 1e-5, 0.2)
        from .peers import DEPLOYABLE_PEERS

        unknown = [p for p in self.peers if p not in DEPLOYABLE_PEERS]
        if unknown:
            raise ValueError(
                f"AnomalyConfig.peers: {unknown} cannot be deployed; candidates: {list(DEPLOYABLE_PEERS)} "
                "(ECOD/COPOD score a batch together with their training rows: models.grid.peers)"
            )
        if self.band_calibration not in ("probability", "tail"):
            raise ValueError(
                f"AnomalyConfig.band_calibration must be 'probability' or 'tail', got {self.band_calibration!r}"
            )
        for n in (
            "n_estimators",
            "max_samples",
            "max_train_rows",
            "nystroem_components",
            "ae_hidden",
            "ae_code",
            "ae_epochs",
            "ae_batch",
            "torch_threads",
            "max_calibration_rows",
            "min_labelled_rows",
        ):
            v = getattr(self, n)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"AnomalyConfig.{n} must be a positive int, got {v!r}")
        _finite("AnomalyConfig", "ocsvm_nu", self.ocsvm_nu, 1e-6, 1.0)
        _finite("AnomalyConfig", "ae_lr", self.ae_lr, 1e-9)
        _finite("AnomalyConfig", "calibration_share", self.calibration_share, 0.05, 0.95)
