"""The 12 customer archetypes: daily load shapes, size, weather sensitivity and noise.

Shapes are hourly anchor points (kW per unit of customer scale, hour-of-day 0..23, local clock) for
working days and for weekends/US public holidays. They were drawn so that the *normalised* weekday and
weekend profiles of the archetypes differ in where their energy sits in the day (the clustering
benchmark divides each profile by its mean, so size alone cannot separate them); realism comes from
per-customer scale, +-1 h peak shift, day-to-day scale jitter and interval noise on top.

``solar_battery`` and ``ev_charging`` get their signature from physics added later (PV and a
battery, 7 kW charging sessions), not from the shape here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Archetype:
    name: str
    tariff: str  # residential | commercial | industrial
    weekday: tuple[float, ...]  # 24 hourly anchors
    weekend: tuple[float, ...]
    scale_kw: float  # median customer size (multiplies the shape)
    heat_kw_per_c: float  # per unit scale, per degC below HEAT_BASE_C
    cool_kw_per_c: float  # per unit scale, per degC above COOL_BASE_C
    noise_sigma: float  # lognormal sigma of interval noise
    power_factor: float  # typical displacement power factor


def _h(*pairs: tuple[int, float]) -> tuple[float, ...]:
    """24 hourly values from (hour, value) anchors, linear in between (periodic)."""
    hours = np.array([p[0] for p in pairs], dtype=float)
    vals = np.array([p[1] for p in pairs], dtype=float)
    out = np.interp(np.arange(24), hours, vals, period=24)
    return tuple(float(v) for v in out)


HEAT_BASE_C = 15.0
COOL_BASE_C = 22.0

ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "evening_residential_peak",
        "residential",
        _h((0, 0.4), (4, 0.3), (6, 0.4), (7, 0.8), (9, 0.45), (15, 0.45), (17, 1.1), (19, 2.2), (20, 2.1), (22, 0.9)),
        _h((0, 0.45), (5, 0.3), (8, 0.6), (11, 0.8), (15, 0.75), (17, 1.2), (19, 2.1), (21, 1.6), (23, 0.7)),
        1.1,
        0.03,
        0.08,
        0.25,
        0.96,
    ),
    Archetype(
        "business_hours_commercial",
        "commercial",
        _h((0, 0.3), (6, 0.3), (8, 1.7), (9, 2.0), (16, 2.0), (18, 0.9), (20, 0.35), (23, 0.3)),
        _h((0, 0.3), (23, 0.32)),
        6.0,
        0.02,
        0.12,
        0.12,
        0.90,
    ),
    Archetype(
        "early_morning_industrial",
        "industrial",
        _h((0, 0.5), (3, 0.5), (4, 1.4), (5, 2.3), (12, 2.3), (14, 1.2), (15, 0.55), (23, 0.5)),
        _h((0, 0.5), (5, 0.6), (12, 0.6), (14, 0.5)),
        12.0,
        0.0,
        0.05,
        0.10,
        0.85,
    ),
    Archetype(  # gross household load; PV + battery make the net shape
        "solar_battery",
        "residential",
        _h((0, 0.5), (5, 0.45), (7, 0.9), (9, 0.8), (12, 0.9), (16, 1.0), (18, 1.5), (21, 1.3), (23, 0.7)),
        _h((0, 0.5), (6, 0.45), (9, 1.0), (13, 1.1), (17, 1.3), (20, 1.4), (23, 0.7)),
        1.3,
        0.03,
        0.08,
        0.20,
        0.97,
    ),
    Archetype(  # base household load; 7 kW evening charging sessions are added on top
        "ev_charging",
        "residential",
        _h((0, 0.45), (5, 0.4), (7, 0.8), (9, 0.5), (16, 0.5), (18, 1.1), (20, 1.0), (23, 0.6)),
        _h((0, 0.45), (7, 0.45), (10, 0.8), (16, 0.8), (18, 1.1), (20, 1.0), (23, 0.6)),
        1.0,
        0.03,
        0.08,
        0.20,
        0.95,
    ),
    Archetype(
        "night_owl",
        "residential",
        _h((0, 2.0), (2, 1.7), (4, 0.8), (6, 0.3), (11, 0.3), (13, 0.7), (16, 0.8), (19, 1.1), (22, 1.9)),
        _h((0, 2.1), (3, 1.8), (5, 0.8), (7, 0.3), (12, 0.35), (14, 0.8), (18, 1.0), (22, 2.0)),
        0.9,
        0.03,
        0.07,
        0.25,
        0.95,
    ),
    Archetype(  # works weekend shifts: home on weekdays, away on weekend days
        "weekend_shift",
        "residential",
        _h((0, 0.4), (6, 0.4), (8, 1.2), (11, 1.5), (15, 1.4), (18, 1.3), (21, 0.9), (23, 0.5)),
        _h((0, 0.4), (5, 0.4), (6, 1.1), (7, 0.3), (17, 0.3), (19, 1.8), (21, 1.6), (23, 0.7)),
        1.0,
        0.03,
        0.08,
        0.25,
        0.95,
    ),
    Archetype(
        "retired_all_day",
        "residential",
        _h((0, 0.35), (5, 0.35), (7, 0.9), (9, 1.3), (12, 1.45), (15, 1.25), (18, 1.4), (20, 1.0), (22, 0.5)),
        _h((0, 0.35), (5, 0.35), (7, 0.9), (9, 1.3), (12, 1.45), (15, 1.25), (18, 1.4), (20, 1.0), (22, 0.5)),
        0.9,
        0.04,
        0.08,
        0.20,
        0.96,
    ),
    Archetype(  # electric heat + big AC on a setback thermostat: night setback, morning and evening recovery
        "seasonal_heavy_hvac",
        "residential",
        _h(
            (0, 0.35),
            (4, 0.3),
            (5, 0.9),
            (6, 2.0),
            (8, 1.8),
            (10, 0.6),
            (14, 0.6),
            (16, 1.4),
            (18, 1.9),
            (20, 1.7),
            (22, 0.6),
        ),
        _h(
            (0, 0.35),
            (5, 0.3),
            (6, 0.9),
            (8, 1.9),
            (10, 1.6),
            (12, 0.8),
            (15, 0.9),
            (17, 1.6),
            (19, 1.9),
            (21, 1.5),
            (23, 0.5),
        ),
        1.2,
        0.25,
        0.30,
        0.18,
        0.93,
    ),
    Archetype(  # time-of-use optimiser: timers push water heating, laundry, dishwasher to 1-5 am
        "efficiency_optimiser",
        "residential",
        _h((0, 0.6), (1, 1.6), (2, 2.3), (4, 2.3), (5, 1.2), (6, 0.4), (16, 0.3), (19, 0.45), (22, 0.4)),
        _h((0, 0.6), (1, 1.6), (2, 2.3), (4, 2.3), (5, 1.2), (6, 0.4), (16, 0.35), (19, 0.45), (22, 0.4)),
        1.0,
        0.02,
        0.05,
        0.20,
        0.97,
    ),
    Archetype(  # 24/7 site (cold store, telecom shelter): flat
        "high_all_day",
        "commercial",
        _h((0, 1.0), (8, 1.0), (14, 1.08), (20, 1.0)),
        _h((0, 1.0), (8, 1.0), (14, 1.06), (20, 1.0)),
        4.0,
        0.0,
        0.06,
        0.06,
        0.92,
    ),
    Archetype(  # small flat with a sharp breakfast spike and a flat evening
        "low_use",
        "residential",
        _h((0, 0.7), (5, 0.7), (6, 1.2), (7, 3.0), (8, 1.2), (9, 0.7), (23, 0.7)),
        _h((0, 0.7), (7, 0.7), (8, 1.2), (9, 2.6), (10, 1.2), (11, 0.7), (23, 0.7)),
        0.3,
        0.01,
        0.02,
        0.35,
        0.97,
    ),
)

ARCHETYPE_NAMES: tuple[str, ...] = tuple(a.name for a in ARCHETYPES)
BY_NAME: dict[str, Archetype] = {a.name: a for a in ARCHETYPES}

#: resolution of the shape lookup table (minutes); profiles are sampled at interval midpoints
SHAPE_STEP_MIN = 5


def shape_table() -> np.ndarray:
    """Array [archetype, daytype(0=working, 1=weekend/holiday), slot] of kW per unit scale.

    Slots are SHAPE_STEP_MIN apart over 24 h; values interpolate the hourly anchors periodically, so a
    per-customer peak shift is a cheap index offset rather than a re-interpolation per meter.
    """
    slots = np.arange(0, 24 * 60, SHAPE_STEP_MIN) / 60.0
    out = np.empty((len(ARCHETYPES), 2, slots.size))
    for i, a in enumerate(ARCHETYPES):
        for j, anchors in enumerate((a.weekday, a.weekend)):
            out[i, j] = np.interp(slots, np.arange(24), np.asarray(anchors), period=24)
    return out
