"""Energy balance and non-technical-loss (NTL) suspects: how utilities find theft.

A bypassed meter barely changes its own readings' shape; it shows where the transformer's SCADA
energy and the sum of its meters drift apart. Per transformer and local day:

- ``supplied_kwh``: SCADA apparent energy (kVAh, the hourly mean kVA) converted to kWh with the
  power factor the transformer's meters report (their summed kWh over their summed kVAh);
- ``metered_kwh``: the meters' net energy (demand x interval);
- ``technical_loss_kwh``: the transformer's own losses from its loading, ``rating x (no_load +
  load_loss x k^2)`` per hour with k = kVA / rating (IEEE C57-style no-load and load losses);
- ``unexplained_kwh`` = supplied - metered - technical, and its rise over the transformer's own
  baseline (median of the previous ``baseline_days``); feeders are the sums of their transformers.

SCADA stamps a sample at the end of the interval it averages, meters at the start
(``scada_time_is_end``): the SCADA is shifted back by its interval before the hours are matched.

Suspects (:func:`ntl_suspects`), the way NTL analytics work: a transformer's unexplained loss must rise
materially and significantly (a CUSUM of the daily rise in robust sigmas of its own baseline days);
then the hours since that change are explained, meter by meter, by a change point in one meter's
readings: energy taken behind a meter is ``h`` x what it still reads, hour by hour, from the hour the
bypass began, so the loss follows that meter's own (noisy) load and the meter's reading drops, against
its own history scaled by its peers, by the share ``h / (1 + h)`` the fit implies. A meter whose
exact zeros or frozen readings are new explains the loss as a meter fault instead (kind
``meter_fault``). Every threshold is a utility profile setting (contracts.profile.EnergyBalanceSettings).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from contracts.profile import EnergyBalanceSettings, UtilityProfile

from .features import require_columns

_log = logging.getLogger(__name__)


_D = EnergyBalanceSettings()  # the defaults, declared once in the utility profile's schema


@dataclass(frozen=True)
class BalanceConfig:
    """Settings of the balance and the suspect ranking; the meaning of each is documented on
    :class:`contracts.profile.EnergyBalanceSettings` (where the utility sets them): build with
    :meth:`from_profile`."""

    #: the utility's zone (local days)
    timezone: str
    no_load_loss: float = _D.no_load_loss
    load_loss: float = _D.load_loss
    baseline_days: int = _D.baseline_days
    min_baseline_days: int = _D.min_baseline_days
    baseline_quantile: float = _D.baseline_quantile
    min_rise_kwh: float = _D.min_rise_kwh
    min_rise_share: float = _D.min_rise_share
    cusum_k: float = _D.cusum_k
    cusum_h: float = _D.cusum_h
    window_days: int = _D.window_days
    min_change_hours: int = _D.min_change_hours
    min_explained: float = _D.min_explained
    min_gain: float = _D.min_gain
    min_fault_explained: float = _D.min_fault_explained
    drop_tolerance: float = _D.drop_tolerance
    top_n: int = _D.top_n
    max_baseline_fault_share: float = _D.max_baseline_fault_share
    scada_time_is_end: bool = _D.scada_time_is_end
    persist_days: int = _D.persist_days
    min_theft_share: float = _D.min_theft_share
    excess_over_noise: bool = _D.excess_over_noise
    joint_bar: bool = _D.joint_bar
    joint_fit: bool = _D.joint_fit
    mask_fault_hours: bool = _D.mask_fault_hours

    @classmethod
    def from_profile(cls, profile: UtilityProfile, timezone: str | None = None) -> BalanceConfig:
        """The utility profile's ``energy_balance`` settings in its zone (or ``timezone``)."""
        return cls(timezone=timezone or profile.timezone, **profile.energy_balance.model_dump())

    @property
    def history_days(self) -> int:
        """Days of readings before a scored day the baselines and the attribution window need."""
        return self.baseline_days + self.window_days + self.persist_days - 1


def _reading_hours() -> pl.Expr:
    """``_h``: hours each reading covers (gap to the meter's previous reading, the first takes the next gap; 0..1 h)."""
    return (
        pl.col("reading_time")
        .diff()
        .over("meter_id")
        .dt.total_seconds()
        .truediv(3600.0)
        .fill_null(strategy="backward")
        .over("meter_id")
        .clip(0.0, 1.0)
        .alias("_h")
    )


def _meter_hours(meters: pl.DataFrame, ref_meters: pl.DataFrame, tz: str | None = None) -> pl.DataFrame:
    """Per meter and UTC hour: mean P (kW), mean Q (kvar, from the power factor), energy (kWh), readings
    at exactly zero or frozen (``fault_n``) and zero readings in the local night, 0-5 h (``night_zero_n``)."""
    require_columns(meters, ("meter_id", "reading_time", "demand_kw", "power_factor"), "meter readings")
    require_columns(ref_meters, ("meter_id", "transformer_id"), "ref_meters")
    m = (
        meters.join(ref_meters.select("meter_id", "transformer_id"), on="meter_id", how="inner")
        .sort("meter_id", "reading_time")
        .with_columns(
            _reading_hours(),
            pl.col("demand_kw").cast(pl.Float64).fill_nan(None).fill_null(0.0).alias("_p"),
        )
        .with_columns(
            (
                pl.col("_p").abs()
                * (
                    1.0 / pl.col("power_factor").cast(pl.Float64).fill_nan(None).fill_null(1.0).clip(0.3, 1.0) ** 2
                    - 1.0
                ).sqrt()
            ).alias("_q"),
            pl.col("reading_time").dt.truncate("1h").alias("hour"),
        )
    )
    # readings at exactly 0 kW or repeating the previous value exactly (a meter reports 4 decimals)
    zero = pl.col("_p").abs() < 1e-9
    frozen = (pl.col("_p") == pl.col("_p").shift(1).over("meter_id")).fill_null(False) & ~zero
    night = pl.col("reading_time").dt.convert_time_zone(tz).dt.hour() < 5 if tz else pl.lit(False)
    return (
        m.with_columns((zero | frozen).alias("_f"), (zero & night).alias("_nz"))
        .group_by("transformer_id", "meter_id", "hour")
        .agg(
            pl.col("_p").mean(),
            pl.col("_q").mean(),
            (pl.col("_p") * pl.col("_h")).sum().alias("kwh"),
            pl.col("_f").sum().cast(pl.Int32).alias("fault_n"),
            pl.col("_nz").sum().cast(pl.Int32).alias("night_zero_n"),
        )
    )


def hourly_balance(
    meters: pl.DataFrame,
    scada: pl.DataFrame,
    ref_meters: pl.DataFrame,
    ref_transformers: pl.DataFrame,
    cfg: BalanceConfig,
    meter_hours: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per transformer and UTC hour: supplied, metered, technical and unexplained energy (kWh)."""
    require_columns(meters, ("meter_id", "reading_time", "demand_kw", "power_factor"), "meter readings")
    require_columns(scada, ("transformer_id", "sample_time", "load_kva"), "scada")
    require_columns(ref_meters, ("meter_id", "transformer_id", "feeder_id"), "ref_meters")
    require_columns(ref_transformers, ("transformer_id", "feeder_id", "rating_kva"), "ref_transformers")
    mh = (
        (meter_hours if meter_hours is not None else _meter_hours(meters, ref_meters, cfg.timezone))
        .group_by("transformer_id", "hour")
        .agg(pl.col("_p").sum(), pl.col("_q").sum(), pl.col("kwh").sum().alias("metered_kwh"))
    )
    t = pl.col("sample_time")
    if cfg.scada_time_is_end:  # a sample averages the interval before it: stamp it with that interval's start
        t = t - t.sort().diff().median().over("transformer_id")
    sh = (
        scada.select("transformer_id", t.dt.truncate("1h").alias("hour"), pl.col("load_kva").cast(pl.Float64))
        .group_by("transformer_id", "hour")
        .agg(pl.col("load_kva").mean().alias("_skva"))
    )
    h = sh.join(mh, on=["transformer_id", "hour"], how="inner").join(
        ref_transformers.select("transformer_id", "feeder_id", pl.col("rating_kva").cast(pl.Float64)),
        on="transformer_id",
        how="left",
    )
    # the transformer's power factor as its meters see it (P over S of the same hour)
    pf = (pl.col("_p") / (pl.col("_p") ** 2 + pl.col("_q") ** 2).sqrt()).clip(0.3, 1.0).fill_nan(1.0).fill_null(1.0)
    return (
        h.with_columns(
            pl.col("hour").dt.convert_time_zone(cfg.timezone).dt.date().alias("date"),
            (pl.col("_skva") * pf).alias("supplied_kwh"),
            (
                pl.col("rating_kva")
                * (cfg.no_load_loss + cfg.load_loss * (pl.col("_skva") / pl.col("rating_kva")) ** 2)
            ).alias("technical_loss_kwh"),
        )
        .with_columns(
            (pl.col("supplied_kwh") - pl.col("metered_kwh") - pl.col("technical_loss_kwh")).alias("unexplained_kwh"),
        )
        .select(
            "transformer_id",
            "feeder_id",
            "hour",
            "date",
            "supplied_kwh",
            "metered_kwh",
            "technical_loss_kwh",
            "unexplained_kwh",
        )
    )


def energy_balance(
    meters: pl.DataFrame,
    scada: pl.DataFrame,
    ref_meters: pl.DataFrame,
    ref_transformers: pl.DataFrame,
    cfg: BalanceConfig,
    hourly: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Rows of ``gold_energy_balance``: level (transformer | feeder), entity_id, feeder_id, date, the
    energies (kWh), hours covered and the unexplained loss's baseline and rise.

    ``meters``: meter_id, reading_time, demand_kw, power_factor (silver); ``scada``: transformer_id,
    sample_time, load_kva. A transformer-hour without SCADA or meter data is left out.
    """
    h = hourly if hourly is not None else hourly_balance(meters, scada, ref_meters, ref_transformers, cfg)
    d = h.group_by("transformer_id", "feeder_id", "date").agg(
        pl.col("supplied_kwh", "metered_kwh", "technical_loss_kwh", "unexplained_kwh").sum(), pl.len().alias("hours")
    )
    tx = d.select(
        pl.lit("transformer").alias("level"),
        pl.col("transformer_id").alias("entity_id"),
        "feeder_id",
        "date",
        "supplied_kwh",
        "metered_kwh",
        "technical_loss_kwh",
        "unexplained_kwh",
        "hours",
    )
    fd = (
        d.group_by("feeder_id", "date")
        .agg(
            pl.col("supplied_kwh", "metered_kwh", "technical_loss_kwh", "unexplained_kwh").sum(), pl.col("hours").sum()
        )
        .select(
            pl.lit("feeder").alias("level"),
            pl.col("feeder_id").alias("entity_id"),
            "feeder_id",
            "date",
            "supplied_kwh",
            "metered_kwh",
            "technical_loss_kwh",
            "unexplained_kwh",
            "hours",
        )
    )
    out = pl.concat([tx, fd.with_columns(pl.col("hours").cast(tx.schema["hours"]))]).sort("level", "entity_id", "date")
    return _with_baseline(out, cfg)


def _with_baseline(df: pl.DataFrame, cfg: BalanceConfig) -> pl.DataFrame:
    """``unexplained_baseline_kwh`` (median of the previous baseline days), the rise over it and the
    rise in robust standard deviations of those days."""
    rows = []
    for (_level, _ent), g in df.group_by(["level", "entity_id"], maintain_order=True):
        u = g["unexplained_kwh"].to_numpy()
        base = np.full(len(u), np.nan)
        sig = np.full(len(u), np.nan)
        for i in range(len(u)):
            w = u[max(0, i - cfg.baseline_days) : i]
            if len(w) >= cfg.min_baseline_days:
                # the level is a low quantile of the previous days (an earlier theft or fault only adds
                # loss), the noise the MAD of day-to-day changes (a step shows as one change, not many)
                base[i] = np.quantile(w, cfg.baseline_quantile)
                # (the lower quartile of |change| / 0.3186 is sigma for normal noise, robust to up to 3 in 4
                # changes being events)
                sig[i] = np.quantile(np.abs(np.diff(w)), 0.25) / 0.3186 / np.sqrt(2.0)
        rows.append(
            g.with_columns(
                pl.Series("unexplained_baseline_kwh", base).fill_nan(None), pl.Series("_sig", sig).fill_nan(None)
            )
        )
    out = (
        pl.concat(rows)
        if rows
        else df.with_columns(
            pl.lit(None, pl.Float64).alias("unexplained_baseline_kwh"), pl.lit(None, pl.Float64).alias("_sig")
        )
    )
    rise = pl.col("unexplained_kwh") - pl.col("unexplained_baseline_kwh")
    return out.with_columns(
        rise.alias("unexplained_rise_kwh"),
        (rise / pl.max_horizontal(pl.col("_sig"), pl.lit(0.25))).alias("rise_sigmas"),
    ).drop("_sig")


def meter_daily(meters: pl.DataFrame, tz: str) -> pl.DataFrame:
    """Per meter and local day: energy (kWh) and the share of night readings (0-5 h) at zero."""
    local = pl.col("reading_time").dt.convert_time_zone(tz)
    return (
        meters.sort("meter_id", "reading_time")
        .with_columns(
            _reading_hours(),
            local.dt.date().alias("date"),
            local.dt.hour().alias("_hr"),
            pl.col("demand_kw").cast(pl.Float64).fill_nan(None).fill_null(0.0).alias("_p"),
        )
        .group_by("meter_id", "date")
        .agg(
            (pl.col("_p") * pl.col("_h")).sum().alias("kwh"),
            (pl.col("_p").filter(pl.col("_hr") < 5).abs() < 1e-3).mean().alias("night_zero_share"),
        )
    )


def gate(balance: pl.DataFrame, cfg: BalanceConfig) -> pl.DataFrame:
    """The transformer rows of ``balance`` with the gate of :func:`ntl_suspects`: ``_mat`` (material rise),
    ``_cusum`` (one-sided CUSUM of the rise in robust sigmas), ``_since`` (the day the change began) and
    ``_sig`` (the day is examined)."""
    material = (
        pl.col("unexplained_rise_kwh")
        >= pl.max_horizontal(pl.lit(cfg.min_rise_kwh), cfg.min_rise_share * pl.col("supplied_kwh"))
    ).fill_null(False)
    tb = balance.filter(pl.col("level") == "transformer").sort("entity_id", "date").with_columns(material.alias("_mat"))
    # one-sided CUSUM of the daily rise in robust sigmas: S = max(0, S + z - k), significant from h on (capped
    # at 2h so that it resets within days of a loss ending); the change began the day after S was last 0
    cus, start = [], []
    for _ent, g in tb.group_by("entity_id", maintain_order=True):
        z = g["rise_sigmas"].fill_null(0.0).to_numpy()
        dd = g["date"].to_list()
        acc, since = 0.0, dd[0] if dd else None
        for zi, di in zip(z, dd, strict=True):
            if acc == 0.0:
                since = di
            acc = min(max(0.0, acc + zi - cfg.cusum_k), 2.0 * cfg.cusum_h)
            cus.append(acc)
            start.append(since)
    tb = tb.with_columns(pl.Series("_cusum", cus, pl.Float64), pl.Series("_since", start, pl.Date)).with_columns(
        (pl.col("_mat") & (pl.col("_cusum") >= cfg.cusum_h)).alias("_sig")
    )
    return tb


def ntl_suspects(
    balance: pl.DataFrame, hourly: pl.DataFrame, meter_hours: pl.DataFrame, cfg: BalanceConfig
) -> pl.DataFrame:
    """Ranked NTL suspects per transformer-day: date, transformer_id, meter_id, kind, rank, score,
    implied_share, unexplained_rise_kwh, reason.

    1. Gate (what keeps false suspects down): a transformer-day is examined only when its unexplained
       loss rose materially (``min_rise_kwh`` and ``min_rise_share`` of its supply) and its one-sided
       CUSUM of the daily rise in robust sigmas (baseline: a low quantile of the previous days; sigma: the
       lower quartile of their day-to-day changes, robust to earlier events) reached ``cusum_h``. The change
       began the day after the CUSUM was last 0 (at most ``window_days`` back).
    2. Baseline: the median gap (supplied - metered) per local hour over the ``baseline_days`` before
       the change: what the balance normally does at that hour (metering and power-factor error).
    3. Attribution: the residual of the hours since the change is explained greedily by candidates
       (least squares through the origin): a meter from its own change hour on (hidden = h x what it
       reads; at least ``min_change_hours`` after the change), weighted by how well its own drop against
       its usual energy (per hour and day type, scaled by the transformer's supply against its usual)
       matches the implied share h / (1 + h) (Gaussian, width ``drop_tolerance``), both the implied share
       and the drop at least ``min_theft_share``; or a new meter fault (exact zeros / frozen readings:
       hidden = its usual energy minus what it reads). The first must explain ``min_explained`` of the
       residual (with ``excess_over_noise``: of the residual beyond what the baseline hours' noise leaves
       in the window), each further one ``min_gain`` of what is left (with ``joint_bar``: the theft
       suspects together ``min_explained``); ``score`` is the share explained (consistency-weighted). At
       most ``top_n`` per kind and transformer-day. With ``joint_fit`` (the default) the meter faults are
       named this way and the thieves are then fitted together (:func:`_joint_thefts`: non-negative least
       squares, backward elimination; with ``mask_fault_hours`` on the hours without a new meter fault).
    4. Persistence: a theft suspect is listed from its ``persist_days``-th consecutive day on.
    (``hourly``: :func:`hourly_balance`; ``meter_hours``: :func:`_meter_hours`.)
    """
    tb = gate(balance, cfg)
    hot_tx = tb.filter(pl.col("_sig"))["entity_id"].unique().to_list()
    out: list[tuple] = []
    if hot_tx:
        hourly = hourly.filter(pl.col("transformer_id").is_in(hot_tx)).sort("transformer_id", "hour")
        mh = meter_hours.filter(pl.col("transformer_id").is_in(hot_tx))
        for tx in sorted(hot_tx):
            days_tx = tb.filter(pl.col("entity_id") == tx)
            out.extend(_attribute(tx, days_tx, hourly.filter(pl.col("transformer_id") == tx), mh, cfg))
    df = pl.DataFrame(
        out,
        schema={
            "date": pl.Date,
            "transformer_id": pl.Utf8,
            "meter_id": pl.Utf8,
            "kind": pl.Utf8,
            "rank": pl.Int32,
            "score": pl.Float64,
            "implied_share": pl.Float64,
            "unexplained_rise_kwh": pl.Float64,
            "reason": pl.Utf8,
        },
        orient="row",
    )
    return _persistent(df, cfg.persist_days)


def _persistent(df: pl.DataFrame, days: int) -> pl.DataFrame:
    """Theft suspects listed on each of the ``days`` consecutive days up to the day (an analyst opens a case
    on a stable suspicion, not a one-day blip), re-ranked; meter faults are evidence in the readings
    themselves and stay as they are."""
    if days <= 1 or df.height == 0:
        return df
    th = df.filter(pl.col("kind") == "theft")
    keys = th.select("transformer_id", "meter_id", "date")
    keep = keys
    for k in range(1, days):
        prev = keys.with_columns(pl.col("date") + pl.duration(days=k))
        keep = keep.join(prev, on=["transformer_id", "meter_id", "date"], how="semi")
    th = (
        th.join(keep, on=["transformer_id", "meter_id", "date"], how="semi")
        .sort("date", "transformer_id", "rank")
        .with_columns(pl.col("rank").rank("ordinal").over("date", "transformer_id").cast(pl.Int32))
    )
    return pl.concat([th, df.filter(pl.col("kind") != "theft")]).sort("date", "transformer_id", "kind", "rank")


def _attribute(tx: str, days: pl.DataFrame, hourly: pl.DataFrame, mh: pl.DataFrame, cfg: BalanceConfig) -> list[tuple]:
    """Suspects of one transformer on each of its gated days (see :func:`ntl_suspects`)."""
    m = mh.filter(pl.col("transformer_id") == tx)
    ids = sorted(m["meter_id"].unique().to_list())
    if not ids or hourly.height == 0:
        return []
    grid = hourly.select("hour", "date", "supplied_kwh", "metered_kwh")

    def wide(col: str) -> np.ndarray:
        p = m.pivot(on="meter_id", index="hour", values=col)
        return grid.select("hour").join(p, on="hour", how="left").select(ids).fill_null(0.0).to_numpy()

    x, flt = wide("kwh"), wide("fault_n") > 0
    night = wide("night_zero_n") > 0
    local = grid["hour"].dt.convert_time_zone(cfg.timezone)
    hod = local.dt.hour().to_numpy()
    slot = hod + 24 * (local.dt.weekday().to_numpy() >= 6)
    hdate = grid["date"].to_numpy()
    gap = (grid["supplied_kwh"] - grid["metered_kwh"]).to_numpy()
    dlist = days["date"].to_list()
    sig, since = days["_sig"].to_list(), days["_since"].to_list()
    rise = days["unexplained_rise_kwh"].to_list()
    rows: list[tuple] = []
    for i, d in enumerate(dlist):
        if not sig[i]:
            continue
        first = max(since[i], d - timedelta(days=cfg.window_days - 1))
        t0 = np.datetime64(first)
        win = (hdate >= t0) & (hdate <= np.datetime64(d))
        base = (hdate < t0) & (hdate >= t0 - np.timedelta64(cfg.baseline_days, "D"))
        if base.sum() < cfg.min_baseline_days * 24 or win.sum() < 12:
            continue
        # what the balance normally does at this hour of the day (metering and power-factor error follow
        # the load's daily shape): the median gap per local hour over the baseline days, robust to the
        # earlier events those days may hold
        sup = grid["supplied_kwh"].to_numpy()
        hb, gb = hod[base & (sup > 1e-6)], gap[base & (sup > 1e-6)]
        norm = np.array([np.median(gb[hb == h]) if (hb == h).any() else np.median(gb) for h in range(24)])
        # hours the transformer was out (no supply: a failure) say nothing about who takes what
        live = sup[win] > 1e-6
        r = np.where(live, gap[win] - norm[hod[win]], 0.0)
        # each meter's usual energy per local hour and day type (working day / weekend) over the baseline
        # hours, scaled by how the transformer's whole supply (which includes what is hidden) compares with
        # its own usual over the same hours: the meter against its own history and its peers
        xb, fb, sb = x[base], flt[base], slot[base]
        usual, sup_usual = np.zeros((48, len(ids))), np.zeros(48)
        for h in range(48):
            sel = sb == h
            if not sel.any():
                sel = (sb % 24) == (h % 24)
            if sel.any():
                usual[h], sup_usual[h] = xb[sel].mean(axis=0), sup[base][sel].mean()
        sw = slot[win]

        def expected(k: int, tk: int, usual=usual, sup_usual=sup_usual, sw=sw, sup_w=sup[win]) -> float:
            """The meter's usual energy over the window's hours from ``tk`` on, scaled by the supply."""
            den = sup_usual[sw[tk:]].sum()
            return float(usual[sw[tk:], k].sum() * (sup_w[tk:].sum() / den if den > 0 else 1.0))

        new_fault = flt[win] & (fb.mean(axis=0) < cfg.max_baseline_fault_share)[None, :]
        den = sup_usual[sw].sum()
        fault_c = np.where(
            new_fault & live[:, None], usual[sw] * (sup[win].sum() / den if den > 0 else 1.0) - x[win], 0.0
        )
        ss0 = float(r @ r)
        if ss0 <= 0:
            continue
        # what the window's residual holds by noise alone: the baseline hours' residual variance (robust: the
        # median square is 0.455 sigma^2 for normal noise) x the live hours; a suspect's bar is a share of the
        # residual beyond it (the loss it could explain), not of the noise
        rb = gb - norm[hb]
        noise_ss = float(np.median(rb * rb) / 0.455 * live.sum()) if cfg.excess_over_noise and rb.size else 0.0
        res, chosen = r.copy(), []
        xw = np.where(live[:, None], x[win], 0.0)
        last = hdate[win] == np.datetime64(d)
        faults = [k for k in range(len(ids)) if new_fault[:, k].sum() >= 2]
        # new meter faults first: their zeros / frozen readings are evidence in the readings themselves, and a
        # fault's missing energy (estimated from the meter's usual profile, not measured hour by hour) cannot
        # explain the hourly noise, so a look-alike meter would otherwise take the loss; then thefts explain
        # what is left: the first min_explained of it, each further one min_gain of what is left after it
        phase, base_ss = ("meter_fault" if faults else "theft"), max(ss0 - noise_ss, 0.25 * ss0)
        # (with joint_fit the loop names the meter faults only; the thieves are then fitted together below)
        while len(chosen) < 2 * cfg.top_n and not (cfg.joint_fit and phase == "theft"):
            cand = self_cands = []
            if phase == "theft":
                # hidden = h x meter energy from the meter's own change hour on (best hour per meter, from
                # reverse cumulative sums: the SSE reduction of a through-origin fit is (sum x r)^2 / sum x^2)
                sxr = np.cumsum((xw * res[:, None])[::-1], axis=0)[::-1]
                sxx = np.cumsum((xw * xw)[::-1], axis=0)[::-1]
                g = np.where((sxr > 0) & (sxx > 1e-9), sxr**2 / np.maximum(sxx, 1e-9), 0.0)
                g[max(0, len(res) - cfg.min_change_hours) + 1 :] = 0.0
                for _kind, k, _g, _c, _t in chosen:
                    g[:, k] = 0.0  # a meter already named (theft or fault) is not named again
                t_best = g.argmax(axis=0)
                g_best = g[t_best, np.arange(len(ids))]
                # the meter's own drop must match the hidden share the fit implies: a thief's meter reads
                # (1 - s) of its usual use where the loss is s / (1 - s) of what it reads
                for k in range(len(ids)):
                    tk = int(t_best[k])
                    xs = xw[tk:, k]
                    h_ = float(xs @ res[tk:]) / max(float(xs @ xs), 1e-9)
                    ub_ = expected(k, tk)
                    drop_ = 1.0 - float(xs.sum()) / ub_ if ub_ > 0 else 0.0
                    cons = (
                        float(np.exp(-0.5 * ((h_ / (1.0 + h_) - drop_) / cfg.drop_tolerance) ** 2))
                        if min(h_ / (1.0 + h_), drop_) >= cfg.min_theft_share
                        else 0.0
                    )
                    cand.append(("theft", k, float(g_best[k]) * cons, tk, h_ / (1.0 + h_), drop_))
            else:
                for k in faults:
                    if any(c[1] == k for c in chosen):
                        continue
                    f = fault_c[:, k]
                    fr, ff = float(f @ res), float(f @ f)
                    cand.append(("meter_fault", k, fr * fr / ff if fr > 0 and ff > 0 else 0.0, 0, 0.0, 0.0))
            left = float(res @ res)
            best = max(cand, key=lambda c: c[2]) if cand else None
            if _log.isEnabledFor(logging.DEBUG):
                top = sorted(self_cands, key=lambda c: -c[2])[:6]
                _log.debug(
                    "%s %s %s",
                    tx,
                    d,
                    " | ".join(
                        f"{c[0][0]}:{ids[c[1]]}:{c[2] / left:.3f} s={c[4]:.2f} drop={c[5]:.2f} t0={c[3]}" for c in top
                    ),
                )
            n_kind = sum(1 for c in chosen if c[0] == phase)
            if best is None:
                ok = False
            elif phase == "meter_fault":
                ok = best[2] / left >= cfg.min_fault_explained
            elif cfg.joint_bar:  # each thief min_gain of what is left; together min_explained (below)
                ok = best[2] / max(left - noise_ss, 0.25 * left) >= cfg.min_gain
            elif n_kind == 0:
                ok = best[2] / base_ss >= cfg.min_explained
            else:  # a further thief: min_gain of what is left, and at least what the first could leave
                ok = (
                    best[2] / max(left - noise_ss, 0.25 * left) >= cfg.min_gain
                    and best[2] / base_ss >= 1.0 - cfg.min_explained
                )
            reg = np.zeros(len(res))
            if ok:
                kind, k, gain, t0k = best[:4]
                if kind == "theft":
                    reg[t0k:] = xw[t0k:, k]
                else:
                    reg = fault_c[:, k].copy()
                coef = float(reg @ res) / float(reg @ reg)
                # still going on the examined day: its hours there explain at least half of what the fit
                # expects (a bypass removed or a fault repaired days ago is not today's suspect)
                rl, el = float(res[last] @ reg[last]), coef * float(reg[last] @ reg[last])
                ok = el > 0 and rl >= 0.5 * el
            if not ok:
                if phase == "theft":
                    break
                phase, base_ss = "theft", max(float(res @ res) - noise_ss, 0.25 * float(res @ res))
                continue
            res = res - coef * reg
            chosen.append((kind, k, gain / (base_ss if kind == "theft" else ss0), coef, t0k))
        if cfg.joint_fit:
            fixed = [fault_c[:, c[1]] for c in chosen if c[0] == "meter_fault"]
            # hours a meter reads zeros / frozen values hide that meter's real use (its usual profile is only an
            # estimate of it): the thieves are fitted on the other hours, while they are most of the window
            bad = new_fault[:, faults].any(axis=1) if faults else np.zeros(len(r), dtype=bool)
            keep = live & ~bad if cfg.mask_fault_hours else live
            # (too few clean hours: the new fault is the day's explanation, a thief is named once it is not)
            if keep.sum() >= 0.5 * live.sum():
                chosen += _joint_thefts(
                    r * keep,
                    xw,
                    keep,
                    [v * keep for v in fixed],
                    expected,
                    last,
                    noise_ss * keep.sum() / max(live.sum(), 1),
                    cfg,
                    {c[1] for c in chosen},
                )
        elif cfg.joint_bar and sum(c[2] for c in chosen if c[0] == "theft") < cfg.min_explained:
            chosen = [c for c in chosen if c[0] != "theft"]
        rank = {"theft": 0, "meter_fault": 0}
        wn = x[win]
        for kind, k, gain, slope, t0k in chosen:
            rank[kind] += 1
            if rank[kind] > cfg.top_n:
                continue
            hw = hod[win]
            ub = expected(k, t0k)
            drop = 1.0 - wn[t0k:, k].sum() / ub if ub > 0 else 0.0
            nz_now = float(night[win][:, k][(hw < 5)].mean()) if (hw < 5).any() else 0.0
            nz_base = float(night[base][:, k][hod[base] < 5].mean()) if (hod[base] < 5).any() else 0.0
            if kind == "theft":
                why = (
                    f"since {first} the transformer's new loss follows this meter's load ({gain:.0%} of it "
                    f"explained; hidden ~{slope:.2f}x its metered energy, i.e. {slope / (1 + slope):.0%} of its use); "
                    f"its own use is {drop:+.0%} below its usual; night zeros {nz_base:.0%} -> {nz_now:.0%}"
                )
            else:
                why = (
                    f"since {first} this meter reports zeros/frozen values it did not before, and its missing "
                    f"usual energy explains {gain:.0%} of the transformer's new loss: a meter fault to inspect"
                )
            rows.append((d, tx, ids[k], kind, rank[kind], min(1.0, max(0.0, gain)), slope, float(rise[i]), why))
    return rows


def _consistency(share: float, drop: float, cfg: BalanceConfig) -> float:
    """How well a meter's own drop against its usual matches the hidden share a fit implies (Gaussian of
    width ``drop_tolerance``; 0 when either is below ``min_theft_share``)."""
    if min(share, drop) < cfg.min_theft_share:
        return 0.0
    return float(np.exp(-0.5 * ((share - drop) / cfg.drop_tolerance) ** 2))


def _change_hours(res: np.ndarray, xw: np.ndarray, min_change_hours: int) -> tuple[np.ndarray, np.ndarray]:
    """Per meter: the change hour whose step regressor (the meter's energy from that hour on) best fits
    ``res`` through the origin, and that fit's SSE reduction (reverse cumulative sums: (sum x r)^2 / sum x^2)."""
    sxr = np.cumsum((xw * res[:, None])[::-1], axis=0)[::-1]
    sxx = np.cumsum((xw * xw)[::-1], axis=0)[::-1]
    g = np.where((sxr > 0) & (sxx > 1e-9), sxr**2 / np.maximum(sxx, 1e-9), 0.0)
    g[max(0, len(res) - min_change_hours) + 1 :] = 0.0
    t = g.argmax(axis=0)
    return t, g[t, np.arange(xw.shape[1])]


def _joint_thefts(
    r: np.ndarray,
    xw: np.ndarray,
    keep: np.ndarray,
    fixed: list[np.ndarray],
    expected,
    last: np.ndarray,
    noise_ss: float,
    cfg: BalanceConfig,
    exclude: set[int],
) -> list[tuple]:
    """Thieves of one transformer-day fitted together (``joint_fit``): a non-negative least-squares fit
    (scipy.optimize.nnls) of the window's residual ``r`` on the step regressors of every meter whose own
    use dropped by at least ``min_theft_share`` from its change hour on, with the meter faults already
    named (``fixed``) as further columns; then backward elimination: the member with the smallest score
    (its unique share of the residual beyond the noise - what the fit loses without it - times the
    consistency of its drop with the hidden share its *joint* coefficient implies) leaves while that
    score is below ``1 - min_explained``. Two thieves on one transformer each take their own part of
    the loss instead of one of them absorbing both (and failing the drop match). The members together
    must explain ``min_explained`` of the residual beyond the noise (consistency-weighted), and each
    must still be taking energy on the examined day (``last``). Rows as the greedy's:
    (kind, meter index, score, coefficient, change hour), best first."""
    from scipy.optimize import nnls

    n_h, n_m = xw.shape
    f = np.column_stack(fixed) if fixed else np.zeros((n_h, 0))
    xf = xw * keep[:, None]  # the regressors on the hours fitted (``keep``); a meter's drop is on all its hours

    def reg(k: int, tk: int) -> np.ndarray:
        v = np.zeros(n_h)
        v[tk:] = xf[tk:, k]
        return v

    def fit(cols: list[np.ndarray]) -> tuple[np.ndarray, float]:
        a = np.column_stack([f, *cols]) if cols else f
        if a.shape[1] == 0:
            return np.zeros(0), float(r @ r)
        coef, rn = nnls(a, r, maxiter=50 * a.shape[1])
        return coef, float(rn * rn)

    def drop(k: int, tk: int) -> float:
        ub = expected(k, tk)
        return 1.0 - float(xw[tk:, k].sum()) / ub if ub > 0 else 0.0

    coef_f, ss_f = fit([])
    excess = max(ss_f - noise_ss, 0.25 * ss_f)
    if excess <= 0:
        return []
    res_f = r - (f @ coef_f if f.shape[1] else 0.0)
    t, g = _change_hours(res_f, xf, cfg.min_change_hours)
    ts = {
        k: int(t[k]) for k in range(n_m) if k not in exclude and g[k] > 0 and drop(k, int(t[k])) >= cfg.min_theft_share
    }
    members = sorted(ts, key=lambda k: -g[k])[: 4 * cfg.top_n]
    refined: set[tuple[int, ...]] = set()
    while members:
        cols = [reg(k, ts[k]) for k in members]
        coef, sse = fit(cols)
        c = coef[f.shape[1] :]
        if tuple(members) not in refined:
            # each member's change hour again, on what the others leave (a second thief's own step, not the
            # first one's), once per member set
            refined.add(tuple(members))
            fitted = f @ coef[: f.shape[1]] if f.shape[1] else np.zeros(n_h)
            for i, k in enumerate(members):
                rest = r - fitted - sum(c[j] * cols[j] for j in range(len(members)) if j != i)
                ts[k] = int(_change_hours(rest, xf[:, k : k + 1], cfg.min_change_hours)[0][0])
            cols = [reg(k, ts[k]) for k in members]
            coef, sse = fit(cols)
            c = coef[f.shape[1] :]
        score, uniq, cons = [], [], []
        for i, k in enumerate(members):
            cons.append(_consistency(c[i] / (1.0 + c[i]), drop(k, ts[k]), cfg) if c[i] > 0 else 0.0)
            # what the fit loses without it, as a share of what the others leave beyond the noise
            wo = fit(cols[:i] + cols[i + 1 :])[1] if cons[-1] > 0 else sse
            uniq.append(max(wo - sse, 0.0) / excess)
            score.append(cons[-1] * max(wo - sse, 0.0) / max(wo - noise_ss, 0.25 * wo, 1e-12))
        worst = int(np.argmin(score))
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "joint: %s",
                " | ".join(
                    f"{k}@{ts[k]} h={c[i]:.2f} drop={drop(k, ts[k]):.2f} cons={cons[i]:.2f} u={uniq[i]:.2f} "
                    f"s={score[i]:.2f}"
                    for i, k in enumerate(members)
                ),
            )
        if score[worst] < cfg.min_gain:
            members.pop(worst)
            continue
        total = (ss_f - sse) / excess * (sum(u * w for u, w in zip(uniq, cons, strict=True)) / sum(uniq))
        if total < cfg.min_explained:
            return []
        out = []
        for i, k in enumerate(members):
            # still going on the examined day: its hours there explain at least half of what the fit expects
            rest = r - (f @ coef[: f.shape[1]] if f.shape[1] else 0.0)
            rest = rest - sum(c[j] * cols[j] for j in range(len(members)) if j != i)
            rl, el = float(rest[last] @ cols[i][last]), c[i] * float(cols[i][last] @ cols[i][last])
            if (el > 0 and rl >= 0.5 * el) or not keep[last].any():
                out.append(("theft", k, min(1.0, float(score[i])), float(c[i]), ts[k]))
        return sorted(out, key=lambda x: -x[2])
    return []


def suspects_from_readings(
    meters: pl.DataFrame,
    scada: pl.DataFrame,
    ref_meters: pl.DataFrame,
    ref_transformers: pl.DataFrame,
    cfg: BalanceConfig,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(gold_energy_balance rows, ranked suspects) from silver-shaped meter readings and SCADA."""
    mh = _meter_hours(meters, ref_meters, cfg.timezone)
    h = hourly_balance(meters, scada, ref_meters, ref_transformers, cfg, meter_hours=mh)
    bal = energy_balance(meters, scada, ref_meters, ref_transformers, cfg, hourly=h)
    return bal, ntl_suspects(bal, h, mh, cfg)


def theft_detection(
    suspects: pl.DataFrame,
    truth_events: pl.DataFrame,
    all_events: pl.DataFrame | None,
    n_meters: int,
    days: int,
    within_days: int = 7,
    top_n: int = 3,
) -> dict:
    """Evaluation against labelled thefts (benchmarks and tests only).

    ``rate``: share of the theft events in ``truth_events`` whose meter is among the top ``top_n``
    suspects of its transformer within ``within_days`` of the start. False suspects: distinct meters
    listed while not stealing, per 1,000 meters per 30 days; ``..._excl_meter_faults`` leaves out
    meters with an active stuck/zero fault (a real non-technical loss, just not theft).
    ``all_events`` (default ``truth_events``) says which meters were stealing or faulty when listed.
    """
    all_events = truth_events if all_events is None else all_events

    def active(kinds: tuple[str, ...]) -> pl.DataFrame:
        return all_events.filter(pl.col("event_type").is_in(list(kinds))).select(
            pl.col("asset_id").alias("meter_id"),
            pl.col("start_time").dt.date().alias("_a"),
            pl.col("end_time").dt.date().alias("_b"),
        )

    th = truth_events.filter(pl.col("event_type") == "theft").select(
        "event_id", pl.col("asset_id").alias("meter_id"), "start_time", "end_time"
    )
    faults = suspects.filter(pl.col("kind") == "meter_fault") if "kind" in suspects.columns else suspects.clear()
    if "kind" in suspects.columns:
        suspects = suspects.filter(pl.col("kind") == "theft")
    s = suspects.filter(pl.col("rank") <= top_n)
    hits = (
        th.join(s.select("meter_id", "date"), on="meter_id", how="inner")
        .filter((pl.col("date") >= pl.col("start_time").dt.date()) & (pl.col("date") <= pl.col("end_time").dt.date()))
        .with_columns((pl.col("date") - pl.col("start_time").dt.date()).dt.total_days().alias("days_to"))
        .group_by("event_id")
        .agg(pl.col("days_to").min())
    )
    ok = hits.filter(pl.col("days_to") <= within_days)
    listed = s.select("meter_id", "date").unique()

    def during(kinds: tuple[str, ...]) -> pl.DataFrame:
        return (
            listed.join(active(kinds), on="meter_id", how="inner")
            .filter((pl.col("date") >= pl.col("_a")) & (pl.col("date") <= pl.col("_b")))
            .select("meter_id", "date")
            .unique()
        )

    false = listed.join(during(("theft",)), on=["meter_id", "date"], how="anti")
    false_x = listed.join(during(("theft", "zero_meter", "stuck_meter")), on=["meter_id", "date"], how="anti")
    per = (n_meters / 1000.0) * (days / 30.0)
    return {
        "theft_events": th.height,
        "detected_within": ok.height,
        "rate": round(ok.height / th.height, 4) if th.height else None,
        "median_days_to_top": float(hits["days_to"].median()) if hits.height else None,
        "false_suspect_meters": false["meter_id"].n_unique(),
        "false_suspects_per_1000_meters_month": round(false["meter_id"].n_unique() / per, 3),
        "false_suspect_meters_excl_meter_faults": false_x["meter_id"].n_unique(),
        "false_suspects_per_1000_meters_month_excl_meter_faults": round(false_x["meter_id"].n_unique() / per, 3),
        "false_suspect_meter_days": false.height,
        # meters listed as a meter fault (zeros / frozen readings explaining the loss), and how many of
        # them had a true stuck/zero fault or theft while listed
        "meter_fault_meters_listed": faults["meter_id"].n_unique(),
        "meter_fault_meters_true": faults.select("meter_id", "date")
        .join(active(("zero_meter", "stuck_meter", "theft")), on="meter_id", how="inner")
        .filter((pl.col("date") >= pl.col("_a")) & (pl.col("date") <= pl.col("_b")))["meter_id"]
        .n_unique(),
    }
