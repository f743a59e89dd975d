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

Suspects (:func:`ntl_suspects`): on a transformer-day whose unexplained loss rose significantly
(above ``min_rise_kwh`` / ``min_rise_share`` of the supply and ``rise_sigmas`` robust deviations of
its baseline), energy taken behind a meter follows that customer's own load shape: the hourly
unexplained loss of the last ``window_hours`` (less what a ridge fit on the baseline hours expects
from the load: metering and power-factor error) is matched against each meter's hourly energy;
the score is their correlation (with a positive slope, the implied hidden share). Meters scoring
``min_score`` or more are suspects, ranked per transformer (rank 1 = most likely).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .features import require_columns


@dataclass(frozen=True)
class BalanceConfig:
    #: the utility's zone (local days)
    timezone: str
    #: transformer losses per hour as shares of the rating: no-load (core) and load (copper, at k = 1)
    no_load_loss: float = 0.002
    load_loss: float = 0.01
    #: days of history the baselines (unexplained loss, each meter's daily energy) are medians of
    baseline_days: int = 14
    min_baseline_days: int = 7
    #: a transformer-day is examined when its unexplained loss rose by at least this much, and this
    #: share of its supplied energy ...
    min_rise_kwh: float = 2.0
    min_rise_share: float = 0.015
    #: ... and by this many robust standard deviations (1.4826 MAD) of its baseline days ...
    rise_sigmas: float = 3.0
    #: ... on this many consecutive days (a bypass persists; one odd day is noise)
    persist_days: int = 1
    #: a meter is a suspect from this score (0..1) on
    min_score: float = 0.5
    top_n: int = 3
    #: hours of hourly balance a suspect's load shape is matched against (ending with the examined day)
    window_hours: int = 48
    #: ridge penalty of the per-transformer baseline fit of unexplained loss on the meters' energy
    ridge: float = 1.0


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


def _meter_hours(meters: pl.DataFrame, ref_meters: pl.DataFrame) -> pl.DataFrame:
    """Per meter and UTC hour: mean P (kW), mean Q (kvar, from the power factor) and energy (kWh)."""
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
    return m.group_by("transformer_id", "meter_id", "hour").agg(
        pl.col("_p").mean(), pl.col("_q").mean(), (pl.col("_p") * pl.col("_h")).sum().alias("kwh")
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
        (meter_hours if meter_hours is not None else _meter_hours(meters, ref_meters))
        .group_by("transformer_id", "hour")
        .agg(pl.col("_p").sum(), pl.col("_q").sum(), pl.col("kwh").sum().alias("metered_kwh"))
    )
    sh = (
        scada.select(
            "transformer_id", pl.col("sample_time").dt.truncate("1h").alias("hour"), pl.col("load_kva").cast(pl.Float64)
        )
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
                base[i] = np.median(w)
                sig[i] = 1.4826 * np.median(np.abs(w - base[i]))
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


def ntl_suspects(
    balance: pl.DataFrame, hourly: pl.DataFrame, meter_hours: pl.DataFrame, cfg: BalanceConfig
) -> pl.DataFrame:
    """Ranked suspects per transformer-day: date, transformer_id, meter_id, rank, score, implied_share,
    unexplained_rise_kwh, reason.

    Examined: transformer-days whose unexplained loss rose significantly (:class:`BalanceConfig`),
    on ``persist_days`` consecutive days. Energy taken behind a meter follows that customer's own
    load: the transformer's hourly unexplained loss over the last ``window_hours`` is regressed on
    each of its meters' hourly energy (through the origin); the score is the correlation of the two
    (0 if the slope is not positive), the slope the implied hidden share (hidden = slope x metered).
    A meter is a suspect from ``min_score``; the ``top_n`` best per transformer-day are listed.
    (``hourly``: :func:`hourly_balance`; ``meter_hours``: per meter and hour, transformer_id and kwh.)
    """
    sig = (
        (
            pl.col("unexplained_rise_kwh")
            >= pl.max_horizontal(pl.lit(cfg.min_rise_kwh), cfg.min_rise_share * pl.col("supplied_kwh"))
        )
        & (pl.col("rise_sigmas") >= cfg.rise_sigmas)
    ).fill_null(False)
    tb = balance.filter(pl.col("level") == "transformer").sort("entity_id", "date").with_columns(sig.alias("_sig"))
    run = pl.col("_sig").cast(pl.Int32).rolling_sum(cfg.persist_days, min_samples=1).over("entity_id")
    gap = (pl.col("date") - pl.col("date").shift(cfg.persist_days - 1).over("entity_id")).dt.total_days()
    hot = tb.filter(
        pl.col("_sig") & (run >= cfg.persist_days) & ((gap == cfg.persist_days - 1) | (cfg.persist_days == 1))
    ).select("date", pl.col("entity_id").alias("transformer_id"), "unexplained_rise_kwh", "unexplained_baseline_kwh")
    out = []
    if hot.height:
        hourly = hourly.sort("transformer_id", "hour")
        mh = meter_hours.select("transformer_id", "meter_id", "hour", "kwh")
        for (tx,), days_tx in hot.group_by(["transformer_id"], maintain_order=True):
            u_tx = hourly.filter(pl.col("transformer_id") == tx)
            m_tx = (
                mh.filter(pl.col("transformer_id") == tx).pivot(on="meter_id", index="hour", values="kwh").sort("hour")
            )
            u_tx = u_tx.join(m_tx, on="hour", how="inner").sort("hour")
            ids = [c for c in m_tx.columns if c != "hour"]
            for r in days_tx.iter_rows(named=True):
                end = u_tx.filter(pl.col("date") <= r["date"])
                w = end.tail(cfg.window_hours)
                hist = end.head(max(0, end.height - cfg.window_hours)).tail(cfg.baseline_days * 24)
                if w.height < cfg.window_hours // 2 or hist.height < cfg.min_baseline_days * 24:
                    continue
                # what the balance normally does with this load (metering/power-factor error grows with
                # it): a ridge fit of the hourly unexplained loss on the meters over the baseline hours;
                # the recent hours' residual is the new loss to attribute
                xh = hist.select(ids).fill_null(0.0).to_numpy().clip(0.0, None)
                uh = hist["unexplained_kwh"].to_numpy()
                a = np.column_stack([xh, np.ones(len(xh))])
                reg = cfg.ridge * np.eye(a.shape[1])
                reg[-1, -1] = 0.0
                beta = np.linalg.solve(a.T @ a + reg, a.T @ uh)
                x = w.select(ids).fill_null(0.0).to_numpy().clip(0.0, None)
                u = w["unexplained_kwh"].to_numpy() - np.column_stack([x, np.ones(len(x))]) @ beta
                xx = (x * x).sum(axis=0)
                slope = np.where(xx > 0, (x * u[:, None]).sum(axis=0) / np.maximum(xx, 1e-12), 0.0)
                xc, uc = x - x.mean(axis=0), u - u.mean()
                den = np.sqrt((xc * xc).sum(axis=0) * (uc * uc).sum())
                corr = np.where(den > 0, (xc * uc[:, None]).sum(axis=0) / np.maximum(den, 1e-12), 0.0)
                score = np.where(slope > 0, np.clip(corr, 0.0, 1.0), 0.0)
                order = np.argsort(-score)[: cfg.top_n]
                rank = 0
                for j in order:
                    if score[j] < cfg.min_score:
                        break
                    rank += 1
                    out.append(
                        (
                            r["date"],
                            tx,
                            ids[j],
                            rank,
                            float(score[j]),
                            float(slope[j]),
                            float(r["unexplained_rise_kwh"]),
                        )
                    )
    df = pl.DataFrame(
        out,
        schema={
            "date": pl.Date,
            "transformer_id": pl.Utf8,
            "meter_id": pl.Utf8,
            "rank": pl.Int32,
            "score": pl.Float64,
            "implied_share": pl.Float64,
            "unexplained_rise_kwh": pl.Float64,
        },
        orient="row",
    )
    return df.with_columns(
        pl.format(
            "hourly unexplained loss follows this meter's use (r={}), hidden ~{}x its metered energy; "
            "transformer's unexplained loss up {} kWh/day",
            pl.col("score").round(2),
            pl.col("implied_share").round(2),
            pl.col("unexplained_rise_kwh").round(1),
        ).alias("reason")
    )


def suspects_from_readings(
    meters: pl.DataFrame,
    scada: pl.DataFrame,
    ref_meters: pl.DataFrame,
    ref_transformers: pl.DataFrame,
    cfg: BalanceConfig,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(gold_energy_balance rows, ranked suspects) from silver-shaped meter readings and SCADA."""
    mh = _meter_hours(meters, ref_meters)
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
    }
