"""Customer segmentation: clustering normalised daily load profiles into the named segments.

Profile features per meter (why): the weekday and the day-off mean profiles by local hour, each
divided by the meter's mean absolute demand (so *when* energy is used matters, not how much);
``avg_daily_kwh`` (size, log-scaled), the weekday ``peak_hour`` (as sine/cosine, 23 h is next to
0 h), ``weekend_ratio``, ``seasonal_cv`` (day-to-day variation: weather-driven HVAC), and the solar /
EV flags from the meter reference.

Names. K-means is seeded with the centroids of a labelled reference panel (customers whose segment is
known: surveys, programme enrolments; here the simulator's archetypes) and every cluster is then
named by a Hungarian assignment against that panel. So the same customer gets the same name on every
rerun and retrain, whatever order k-means happens to number its clusters in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from .features import FeatureInputError, require_columns

PROFILE_HOURS = 24


@dataclass(frozen=True)
class SegmentConfig:
    #: the utility's zone (local days and hours)
    timezone: str
    #: local peak window [start, end) hours (the profile's ``tariffs.peak_window.bounds``), used for the
    #: peak-energy column recommendations need
    peak_hours: tuple[int, int]
    #: ``holidays`` country code: public holidays count as days off
    holiday_country: str
    #: fewer days than this: the segment is marked provisional
    min_days: int = 7
    seed: int = 0
    #: clusters of an unsupervised fit (no panel); clusters that read the same are merged into one segment
    n_segments: int = 14
    #: k-means restarts of an unsupervised fit (the best inertia wins)
    n_init: int = 20


def _day_off(dates: pl.Series, country: str) -> pl.Series:
    import holidays

    years = sorted({d.year for d in dates.drop_nulls().unique().to_list()}) or [2026]
    hol = holidays.country_holidays(country, years=years)
    return dates.map_elements(lambda d: d.weekday() >= 5 or d in hol, return_dtype=pl.Boolean)


def profile_features(readings: pl.DataFrame, ref_meters: pl.DataFrame | None, cfg: SegmentConfig) -> pl.DataFrame:
    """One row per meter: normalised profiles ``wd_00..wd_23``, ``we_00..we_23`` and the summary features.

    A meter with only working days (or only days off) in its history reuses the profile it has for
    the missing day type (weekend_ratio 1) and is flagged through ``history_days``.
    """
    require_columns(readings, ("meter_id", "reading_time", "demand_kw", "consumption_kwh"), "meter readings")
    if readings.height == 0:
        raise FeatureInputError("meter readings: empty frame, no profiles to build")
    local = pl.col("reading_time").dt.convert_time_zone(cfg.timezone)
    r = readings.select(
        "meter_id",
        local.dt.date().alias("day"),
        local.dt.hour().alias("hour"),
        pl.col("demand_kw").cast(pl.Float64).fill_nan(None),
        pl.col("consumption_kwh").cast(pl.Float64).fill_nan(None),
    )
    days = r.select(pl.col("day").unique())
    days = days.with_columns(_day_off(days["day"], cfg.holiday_country).alias("off"))
    r = r.join(days, on="day", how="left")
    a, b = cfg.peak_hours
    daily = r.group_by("meter_id", "day", "off").agg(
        pl.col("consumption_kwh").sum().alias("kwh"),
        pl.col("consumption_kwh").filter(pl.col("hour").is_between(a, b - 1)).sum().alias("peak_kwh"),
    )
    summ = (
        daily.group_by("meter_id")
        .agg(
            pl.col("kwh").mean().alias("avg_daily_kwh"),
            pl.col("peak_kwh").mean().alias("peak_kwh_per_day"),
            (pl.col("kwh").std() / (pl.col("kwh").mean() + 1e-6)).fill_null(0.0).alias("seasonal_cv"),
            pl.col("kwh").filter(pl.col("off")).mean().alias("_off"),
            pl.col("kwh").filter(~pl.col("off")).mean().alias("_on"),
            pl.len().alias("history_days"),
        )
        .with_columns((pl.col("_off") / (pl.col("_on") + 1e-6)).fill_null(1.0).fill_nan(1.0).alias("weekend_ratio"))
        .drop("_off", "_on")
    )
    prof = (
        r.group_by("meter_id", "off", "hour")
        .agg(pl.col("demand_kw").mean())
        .with_columns(
            (
                pl.when(pl.col("off")).then(pl.lit("we_")).otherwise(pl.lit("wd_"))
                + pl.col("hour").cast(pl.Utf8).str.zfill(2)
            ).alias("col")
        )
        .pivot(on="col", index="meter_id", values="demand_kw")
    )
    wd = [f"wd_{h:02d}" for h in range(PROFILE_HOURS)]
    we = [f"we_{h:02d}" for h in range(PROFILE_HOURS)]
    for c in wd + we:
        if c not in prof.columns:
            prof = prof.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
    # a missing day type borrows the other one; a missing hour borrows the day type's mean
    prof = prof.with_columns([pl.coalesce(pl.col(w), pl.col(e)).alias(w) for w, e in zip(wd, we)]).with_columns(
        [pl.coalesce(pl.col(e), pl.col(w)).alias(e) for w, e in zip(wd, we)]
    )
    prof = prof.with_columns([pl.col(c).fill_null(pl.mean_horizontal(wd + we)) for c in wd + we])
    scale = pl.mean_horizontal([pl.col(c).abs() for c in wd + we]) + 1e-6
    prof = prof.with_columns([(pl.col(c) / scale).alias(c) for c in wd + we])
    wdv = prof.select(wd).to_numpy()
    prof = prof.with_columns(pl.Series("peak_hour", wdv.argmax(axis=1).astype(np.int32)))
    out = summ.join(prof, on="meter_id", how="inner")
    if ref_meters is not None:
        require_columns(ref_meters, ("meter_id", "has_pv", "has_ev"), "ref_meters")
        cols = ["meter_id", "has_pv", "has_ev"] + (["customer_id"] if "customer_id" in ref_meters.columns else [])
        out = out.join(ref_meters.select(cols), on="meter_id", how="left")
    for c in ("has_pv", "has_ev"):
        out = out.with_columns(pl.col(c).fill_null(False) if c in out.columns else pl.lit(False).alias(c))
    if "customer_id" not in out.columns:
        out = out.with_columns(pl.lit(None, dtype=pl.Utf8).alias("customer_id"))
    return out.sort("meter_id")


def _matrix(pf: pl.DataFrame) -> np.ndarray:
    wd = [f"wd_{h:02d}" for h in range(PROFILE_HOURS)]
    we = [f"we_{h:02d}" for h in range(PROFILE_HOURS)]
    ph = pf["peak_hour"].to_numpy().astype(float) * 2 * math.pi / 24
    extra = np.column_stack(
        [
            np.log1p(np.clip(pf["avg_daily_kwh"].to_numpy(), 0, None)),
            np.sin(ph),
            np.cos(ph),
            np.clip(pf["weekend_ratio"].to_numpy(), 0, 5),
            np.clip(pf["seasonal_cv"].to_numpy(), 0, 5),
            pf["has_pv"].cast(pl.Float64).to_numpy(),
            pf["has_ev"].cast(pl.Float64).to_numpy(),
        ]
    )
    return np.column_stack([pf.select(wd + we).to_numpy(), extra]).astype(np.float64)


@dataclass
class SegmentModel:
    config: SegmentConfig
    version: str = "unregistered"
    names_: list[str] = field(default_factory=list)
    scaler_: object = None
    kmeans_: object = None
    cluster_name_: dict[int, str] = field(default_factory=dict)
    #: unsupervised fit: the descriptors each cluster was named from
    descriptors_: dict[int, dict[str, float]] = field(default_factory=dict)

    def fit(self, profiles: pl.DataFrame, panel: pl.DataFrame | None = None) -> SegmentModel:
        """Cluster ``profiles`` (from :func:`profile_features`). Without ``panel``: k-means on the
        profiles alone, each cluster named from its interpretable descriptors (:func:`name_clusters`).
        With ``panel`` (meter_id, segment: a labelled subset of the same meters): seeded and named from
        it (every segment name needs members)."""
        from scipy.optimize import linear_sum_assignment
        from sklearn.cluster import KMeans
        from sklearn.preprocessing import StandardScaler

        if panel is None:
            return self._fit_unsupervised(profiles)
        require_columns(panel, ("meter_id", "segment"), "segment panel")
        lab = profiles.select("meter_id").join(panel.select("meter_id", "segment"), on="meter_id", how="left")[
            "segment"
        ]
        self.names_ = sorted(set(lab.drop_nulls().to_list()))
        if len(self.names_) < 2:
            raise ValueError(
                f"segment panel: need at least 2 named segments among the profiled meters, got {self.names_}"
            )
        x = _matrix(profiles)
        self.scaler_ = StandardScaler().fit(x)
        xs = self.scaler_.transform(x)
        labs = lab.to_numpy()
        init = np.vstack([xs[labs == n].mean(axis=0) for n in self.names_])
        self.kmeans_ = KMeans(n_clusters=len(self.names_), init=init, n_init=1, random_state=self.config.seed).fit(xs)
        known = lab.is_not_null().to_numpy()
        cont = np.zeros((len(self.names_), len(self.names_)))
        np.add.at(cont, (self.kmeans_.labels_[known], [self.names_.index(n) for n in labs[known]]), 1)
        rows, cols = linear_sum_assignment(-cont)
        self.cluster_name_ = {int(r): self.names_[c] for r, c in zip(rows, cols)}
        return self

    def _fit_unsupervised(self, profiles: pl.DataFrame) -> SegmentModel:
        from sklearn.cluster import KMeans
        from sklearn.preprocessing import StandardScaler

        k = self.config.n_segments
        if profiles.height < k:
            raise ValueError(f"segments: {profiles.height} profiled meters cannot make {k} clusters (n_segments)")
        x = _matrix(profiles)
        self.scaler_ = StandardScaler().fit(x)
        self.kmeans_ = KMeans(n_clusters=k, n_init=self.config.n_init, random_state=self.config.seed).fit(
            self.scaler_.transform(x)
        )
        self.descriptors_ = cluster_descriptors(profiles, self.kmeans_.labels_)
        self.cluster_name_ = name_clusters(self.descriptors_)
        self.names_ = sorted(self.cluster_name_.values())
        return self

    def predict(self, profiles: pl.DataFrame) -> pl.DataFrame:
        """meter_id, customer_id, segment, distance, provisional, summary features."""
        if self.kmeans_ is None:
            raise RuntimeError("SegmentModel is not fitted")
        xs = self.scaler_.transform(_matrix(profiles))
        d = self.kmeans_.transform(xs)
        k = d.argmin(axis=1)
        return profiles.select(
            "meter_id",
            "customer_id",
            "history_days",
            "avg_daily_kwh",
            "peak_kwh_per_day",
            "peak_hour",
            "weekend_ratio",
            "seasonal_cv",
            "has_pv",
            "has_ev",
        ).with_columns(
            pl.Series("segment", [self.cluster_name_[int(i)] for i in k], dtype=pl.Utf8),
            pl.Series("distance", d[np.arange(len(k)), k]),
            (pl.col("history_days") < self.config.min_days).alias("provisional"),
            pl.col("history_days").cast(pl.Int64),
        )


#: interpretable descriptors a cluster is named from (means over its members)
DESCRIPTORS = (
    "peak_hour",
    "night_share",
    "morning_share",
    "midday_share",
    "evening_share",
    "late_share",
    "weekend_ratio",
    "weekend_shape_change",
    "peak_to_mean",
    "pv_share",
    "ev_share",
    "seasonal_cv",
    "avg_daily_kwh",
)


def meter_descriptors(profiles: pl.DataFrame) -> pl.DataFrame:
    """Per meter: where the working-day energy sits (shares of the normalised profile by hour band),
    its peak hour, how peaky it is, how the day off differs, and the PV / EV / size / seasonality."""
    wd = np.clip(profiles.select([f"wd_{h:02d}" for h in range(PROFILE_HOURS)]).to_numpy(), 0, None)
    we = np.clip(profiles.select([f"we_{h:02d}" for h in range(PROFILE_HOURS)]).to_numpy(), 0, None)
    tot = wd.sum(axis=1, keepdims=True) + 1e-9

    def share(a: int, b: int) -> np.ndarray:
        return wd[:, a:b].sum(axis=1) / tot[:, 0]

    nwd, nwe = wd / tot, we / (we.sum(axis=1, keepdims=True) + 1e-9)
    return profiles.select("meter_id").with_columns(
        pl.Series("peak_hour", wd.argmax(axis=1).astype(np.float64)),
        pl.Series("night_share", share(0, 6)),
        pl.Series("morning_share", share(6, 10)),
        pl.Series("midday_share", share(10, 16)),
        pl.Series("evening_share", share(16, 22)),
        pl.Series("late_share", share(22, 24)),
        pl.Series("weekend_ratio", np.clip(profiles["weekend_ratio"].to_numpy(), 0, 5)),
        pl.Series("weekend_shape_change", np.abs(nwd - nwe).sum(axis=1)),
        pl.Series("peak_to_mean", wd.max(axis=1) / (wd.mean(axis=1) + 1e-9)),
        pl.Series("pv_share", profiles["has_pv"].cast(pl.Float64).to_numpy()),
        pl.Series("ev_share", profiles["has_ev"].cast(pl.Float64).to_numpy()),
        pl.Series("seasonal_cv", profiles["seasonal_cv"].to_numpy()),
        pl.Series("avg_daily_kwh", profiles["avg_daily_kwh"].to_numpy()),
    )


def cluster_descriptors(profiles: pl.DataFrame, labels: np.ndarray) -> dict[int, dict[str, float]]:
    """Mean :func:`meter_descriptors` per cluster label (peak hour: circular mean, in hours)."""
    d = meter_descriptors(profiles).with_columns(pl.Series("_c", np.asarray(labels, dtype=np.int64)))
    ang = d["peak_hour"].to_numpy() * 2 * math.pi / 24
    d = d.with_columns(pl.Series("_s", np.sin(ang)), pl.Series("_co", np.cos(ang)))
    agg = d.group_by("_c").agg(
        [pl.col(c).mean() for c in DESCRIPTORS if c != "peak_hour"]
        + [pl.col("_s").mean(), pl.col("_co").mean(), pl.len().alias("members")]
    )
    out = {}
    for r in agg.iter_rows(named=True):
        ph = (math.atan2(r["_s"], r["_co"]) * 24 / (2 * math.pi)) % 24
        out[int(r["_c"])] = {
            "peak_hour": round(ph, 2),
            **{c: float(r[c]) for c in DESCRIPTORS if c != "peak_hour"},
            "members": int(r["members"]),
        }
    return out


def describe(d: dict[str, float]) -> str:
    """A segment name from one cluster's descriptors (first rule that holds, in this order):

    PV on most members -> ``solar_battery``; EV on most -> ``ev_charging``; a flat profile
    (peak <= 1.35x its mean) -> ``high_all_day``; days off below half of working days ->
    ``business_hours_commercial`` (peak 8-17 h) or ``early_morning_industrial`` (peak before 8 h);
    the peak between 1 and 5 h -> ``efficiency_optimiser``; between 22 and 1 h -> ``night_owl``; a day
    off shaped unlike a working day -> ``weekend_shift``; a peak 6-9 h with a flat rest ->
    ``low_use``; morning and evening both heavy -> ``seasonal_heavy_hvac``; the midday the largest
    band -> ``retired_all_day``; otherwise ``evening_residential_peak``.
    """
    ph = d["peak_hour"]
    if d["pv_share"] >= 0.5:
        return "solar_battery"
    if d["ev_share"] >= 0.5:
        return "ev_charging"
    if d["peak_to_mean"] <= 1.35:
        return "high_all_day"
    if d["weekend_ratio"] < 0.5:
        return "early_morning_industrial" if ph < 8 else "business_hours_commercial"
    if 1 <= ph < 5.5:
        return "efficiency_optimiser"
    if ph >= 21.5 or ph < 1:
        return "night_owl"
    if d["weekend_shape_change"] >= 0.45:
        return "weekend_shift"
    if 5.5 <= ph < 10 and d["morning_share"] < 0.3 and d["evening_share"] < 0.3:
        return "low_use"
    if d["morning_share"] >= 0.2 and d["evening_share"] >= 0.3:
        return "seasonal_heavy_hvac"
    if d["midday_share"] >= max(d["evening_share"], d["morning_share"]):
        return "retired_all_day"
    return "evening_residential_peak"


def name_clusters(desc: dict[int, dict[str, float]]) -> dict[int, str]:
    """Cluster -> segment name: :func:`describe` of its descriptors. Clusters that read the same are one
    segment (k-means may split a large or varied group in two; a name per cluster would then hang on
    which half a customer fell in, and change from one refit to the next)."""
    return {c: describe(d) for c, d in desc.items()}


def segment_holdout_metrics(model: SegmentModel, profiles: pl.DataFrame, eval_panel: pl.DataFrame) -> dict:
    """How well ``model`` names the held-out panel meters (``eval_panel``: meter_id, segment).

    ``name_accuracy`` (share of held-out meters given their panel segment: the promotion metric),
    ``ari`` (adjusted Rand index: agreement of the grouping whatever the names) and ``eval_meters``
    (held-out meters that have a profile).
    """
    from sklearn.metrics import adjusted_rand_score

    j = model.predict(profiles).join(eval_panel, on="meter_id", suffix="_true")
    return {
        "name_accuracy": float((j["segment"] == j["segment_true"]).mean()),
        "ari": float(adjusted_rand_score(j["segment_true"], j["segment"])),
        "eval_meters": float(j.height),
    }


def segment_distribution(segments: pl.DataFrame) -> dict[str, int]:
    return dict(sorted(segments.group_by("segment").len().iter_rows()))


def as_of_day(readings: pl.DataFrame, tz: str) -> date:
    return readings.select(pl.col("reading_time").dt.convert_time_zone(tz).dt.date().max()).item()
