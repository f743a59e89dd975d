"""The simulated fleet: network topology, customers, their equipment and transformer ratings.

Everything here is drawn once from ``(seed, STREAM_FLEET)`` so it is identical for every day and
every process. Meters are numbered transformer by transformer, so the meters of one transformer are
a contiguous block of columns and aggregating to transformers is one ``np.add.reduceat``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from contracts import TABLES

from .archetypes import ARCHETYPE_NAMES, ARCHETYPES, shape_table
from .config import SimConfig
from .weather import STATION_ID, load_tmy

STREAM_FLEET = 1
STANDARD_KVA = np.array([15.0, 25.0, 37.5, 50.0, 75.0, 100.0, 167.0, 250.0, 333.0, 500.0, 750.0, 1000.0])
#: DC/AC ratio of rooftop PV systems (inverter sized below the array, as is usual)
PV_DC_AC_RATIO = 1.2
#: coincidence of the peaks of 8-12 customers on one transformer
DIVERSITY = 0.75


@dataclass
class Fleet:
    """Per-meter and per-transformer parameters as arrays, plus the reference frames."""

    meter_ids: np.ndarray  # str, ordered by transformer
    arch: np.ndarray  # int index into ARCHETYPES
    arch2: np.ndarray  # the archetype blended into the customer's shape
    blend: np.ndarray  # its share, 0..profile_blend
    tx_of_meter: np.ndarray  # int transformer index per meter
    tx_start: np.ndarray  # first meter index of each transformer (for reduceat)
    scale_kw: np.ndarray
    shift_slots: np.ndarray  # peak shift in SHAPE_STEP_MIN slots (+- 1 h)
    heat_kw_per_c: np.ndarray
    cool_kw_per_c: np.ndarray
    noise_sigma: np.ndarray
    pf_base: np.ndarray
    v_drop: np.ndarray  # volts of drop per kW/scale along the service drop
    v_offset: np.ndarray  # static offset of the meter's voltage (V)
    # PV + battery (solar_battery customers)
    solar_idx: np.ndarray  # meter indices with PV
    pv_kw_dc: np.ndarray  # per solar meter
    pv_tilt: np.ndarray
    pv_azimuth: np.ndarray
    batt_kwh: np.ndarray
    batt_kw: np.ndarray
    # EV (ev_charging customers)
    ev_idx: np.ndarray
    ev_kw: np.ndarray
    ev_habit_h: np.ndarray  # personal usual plug-in hour
    # transformers
    tx_ids: np.ndarray
    rating_kva: np.ndarray
    v0_tx: np.ndarray  # no-load secondary voltage (tap setting)
    hazard: np.ndarray  # relative failure propensity, mean 1
    shapes: np.ndarray  # archetype shape table
    ref: dict[str, pl.DataFrame]
    customers: pl.DataFrame


def _ids(prefix: str, n: int, width: int) -> np.ndarray:
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)])


def build_fleet(cfg: SimConfig) -> Fleet:
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_FLEET]))
    n = cfg.n_meters
    k = len(ARCHETYPES)

    # archetypes: an exactly balanced shuffle for an even mix (clean clustering truth), else weighted
    if cfg.archetype_weights is None:
        arch = rng.permutation(np.resize(np.arange(k), n))
    else:
        w = np.array([cfg.archetype_weights.get(name, 0.0) for name in ARCHETYPE_NAMES], dtype=float)
        arch = rng.choice(k, size=n, p=w / w.sum())

    # meters -> transformers: consecutive groups of lo..hi meters
    lo, hi = cfg.meters_per_transformer
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(lo, hi + 1)))
    sizes[-1] -= sum(sizes) - n
    n_tx = len(sizes)
    tx_of_meter = np.repeat(np.arange(n_tx), sizes)
    tx_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])

    n_feeders = min(cfg.feeders, n_tx)
    n_subs = min(cfg.substations, n_feeders)
    feeder_of_tx = np.repeat(np.arange(n_feeders), [len(a) for a in np.array_split(np.arange(n_tx), n_feeders)])
    sub_of_feeder = np.repeat(np.arange(n_subs), [len(a) for a in np.array_split(np.arange(n_feeders), n_subs)])

    arch2 = (arch + rng.integers(1, k, n)) % k  # any other archetype
    blend = rng.uniform(0.0, cfg.profile_blend, n)
    a = [ARCHETYPES[i] for i in range(k)]
    base_scale = np.array([x.scale_kw for x in a])[arch]
    scale = base_scale * rng.lognormal(0.0, 0.3, n)
    shift_slots = np.round(rng.uniform(-1.0, 1.0, n) * 60 / 5).astype(int)
    heat = np.array([x.heat_kw_per_c for x in a])[arch] * scale * rng.lognormal(0.0, 0.3, n)
    cool = np.array([x.cool_kw_per_c for x in a])[arch] * scale * rng.lognormal(0.0, 0.3, n)
    noise = np.array([x.noise_sigma for x in a])[arch] * rng.uniform(0.8, 1.2, n)
    pf = np.clip(np.array([x.power_factor for x in a])[arch] + rng.normal(0, 0.015, n), 0.75, 0.995)
    v_drop = rng.uniform(0.5, 2.0, n)
    v_offset = rng.normal(0.0, 1.2, n)

    solar_arch = ARCHETYPE_NAMES.index("solar_battery")
    ev_arch = ARCHETYPE_NAMES.index("ev_charging")
    solar_idx = np.flatnonzero(arch == solar_arch)
    ns = solar_idx.size
    # arrays sized to offset ~90-110 % of the household's annual use (~1,350 kWh per kWdc here), so the
    # net shape of the archetype does not depend on the customer's size
    annual_kwh = scale[solar_idx] * shape_table()[solar_arch].mean() * 8766.0
    pv_kw_dc = np.round(np.clip(annual_kwh / 1350.0 * rng.uniform(0.9, 1.1, ns), 2.0, 20.0), 1)
    pv_tilt = np.round(rng.uniform(15.0, 35.0, ns), 1)
    pv_az = np.round(np.clip(rng.normal(180.0, 25.0, ns), 100.0, 260.0), 1)
    batt_kwh = np.where(pv_kw_dc > 7.0, 13.5, 10.0)
    batt_kw = np.where(batt_kwh > 12, 5.0, 4.0)
    ev_idx = np.flatnonzero(arch == ev_arch)
    ev_kw = rng.choice([6.6, 7.2, 7.7], size=ev_idx.size)
    ev_habit = rng.uniform(18.5, 20.0, ev_idx.size)

    # transformer rating: the smallest standard size above the diversified design peak of the meters
    # below it (design day: 20 degC of heating or 13 degC of cooling at full occupancy), times a
    # planning factor -- most units end up with headroom, a tail runs hot in a heat wave
    shapes = shape_table()
    peak_unit = shapes.max(axis=(1, 2))[arch]
    hvac_margin = 1.5 * np.maximum(20.0 * heat, 13.0 * cool)
    ev_extra = np.zeros(n)
    ev_extra[ev_idx] = ev_kw
    meter_peak_kva = (scale * peak_unit + hvac_margin + ev_extra) / pf
    diversified = np.add.reduceat(meter_peak_kva, tx_start) * DIVERSITY
    sizing = rng.uniform(0.7, 1.25, n_tx)
    target = diversified * sizing
    rating = STANDARD_KVA[np.minimum(np.searchsorted(STANDARD_KVA, target), STANDARD_KVA.size - 1)]
    loading_ratio = diversified / rating

    # age and maintenance, and a failure propensity that grows with both and with loading
    age = np.clip(rng.gamma(3.0, 8.0, n_tx), 0, 55).astype(int)
    install_year = cfg.start.year - age
    years_since_maint = np.minimum(rng.exponential(3.0, n_tx), np.maximum(age, 0.2))
    last_maint = np.array(
        [date.fromordinal(cfg.start.toordinal() - max(1, int(y * 365.25))) for y in years_since_maint]
    )
    log_h = 0.05 * (age - 20) + 0.25 * (years_since_maint - 3) + 1.5 * (loading_ratio - 0.8)
    hazard = np.exp(log_h)
    hazard /= hazard.mean()
    v0 = rng.normal(236.0, 1.5, n_tx)

    # coordinates around Greensboro: substation -> feeder -> transformer -> meter jitter
    tmy = load_tmy()
    sub_xy = np.column_stack(
        [tmy.latitude + rng.uniform(-0.12, 0.12, n_subs), tmy.longitude + rng.uniform(-0.15, 0.15, n_subs)]
    )
    feeder_xy = sub_xy[sub_of_feeder] + rng.normal(0, 0.02, (n_feeders, 2))
    tx_xy = feeder_xy[feeder_of_tx] + rng.normal(0, 0.004, (n_tx, 2))
    meter_xy = tx_xy[tx_of_meter] + rng.normal(0, 0.0005, (n, 2))

    meter_ids = _ids("M", n, 6)
    tx_ids = _ids("T", n_tx, 5)
    feeder_ids = _ids("F", n_feeders, 3)
    sub_ids = _ids("S", n_subs, 2)
    tariff = np.array([x.tariff for x in a])[arch]
    has_pv = np.zeros(n, dtype=bool)
    has_pv[solar_idx] = True
    has_ev = np.zeros(n, dtype=bool)
    has_ev[ev_idx] = True
    pv_dc_full = np.zeros(n)
    pv_dc_full[solar_idx] = pv_kw_dc
    tilt_full = np.zeros(n)
    tilt_full[solar_idx] = pv_tilt
    az_full = np.zeros(n)
    az_full[solar_idx] = pv_az

    ref_meters = TABLES["ref_meters"].conform(
        pl.DataFrame(
            {
                "meter_id": meter_ids,
                "customer_id": _ids("C", n, 6),
                "transformer_id": tx_ids[tx_of_meter],
                "feeder_id": feeder_ids[feeder_of_tx[tx_of_meter]],
                "substation_id": sub_ids[sub_of_feeder[feeder_of_tx[tx_of_meter]]],
                "tariff": tariff,
                "latitude": np.round(meter_xy[:, 0], 6),
                "longitude": np.round(meter_xy[:, 1], 6),
                "has_pv": has_pv,
                "pv_kw_dc": pv_dc_full,
                "pv_tilt_deg": tilt_full,
                "pv_azimuth_deg": az_full,
                "has_ev": has_ev,
                "has_battery": has_pv,  # every solar_battery customer has both
                "dr_opt_in": rng.random(n) < 0.2,
                "interval_minutes": np.full(n, cfg.interval_minutes),
            }
        )
    )
    ref_tx = TABLES["ref_transformers"].conform(
        pl.DataFrame(
            {
                "transformer_id": tx_ids,
                "feeder_id": feeder_ids[feeder_of_tx],
                "substation_id": sub_ids[sub_of_feeder[feeder_of_tx]],
                "rating_kva": rating,
                "install_year": install_year,
                "last_maintenance": pl.Series(list(last_maint), dtype=pl.Date),
            }
        )
    )
    ref_ws = TABLES["ref_weather_stations"].conform(
        pl.DataFrame(
            {
                "station_id": [STATION_ID],
                "name": [tmy.name],
                "latitude": [tmy.latitude],
                "longitude": [tmy.longitude],
                "altitude_m": [tmy.altitude],
            }
        )
    )
    customers = TABLES["truth_customers"].conform(
        pl.DataFrame({"meter_id": meter_ids, "archetype": np.array(ARCHETYPE_NAMES)[arch]})
    )
    return Fleet(
        meter_ids=meter_ids,
        arch=arch,
        arch2=arch2,
        blend=blend,
        tx_of_meter=tx_of_meter,
        tx_start=tx_start,
        scale_kw=scale,
        shift_slots=shift_slots,
        heat_kw_per_c=heat,
        cool_kw_per_c=cool,
        noise_sigma=noise,
        pf_base=pf,
        v_drop=v_drop,
        v_offset=v_offset,
        solar_idx=solar_idx,
        pv_kw_dc=pv_kw_dc,
        pv_tilt=pv_tilt,
        pv_azimuth=pv_az,
        batt_kwh=batt_kwh,
        batt_kw=batt_kw,
        ev_idx=ev_idx,
        ev_kw=ev_kw,
        ev_habit_h=ev_habit,
        tx_ids=tx_ids,
        rating_kva=rating,
        v0_tx=v0,
        hazard=hazard,
        shapes=shapes,
        ref={"ref_meters": ref_meters, "ref_transformers": ref_tx, "ref_weather_stations": ref_ws},
        customers=customers,
    )


def expected_unit_mean(arch: np.ndarray) -> np.ndarray:
    """Mean of each meter's archetype shape (kW per unit scale), used to size frozen readings."""
    return shape_table().mean(axis=(1, 2))[arch]
