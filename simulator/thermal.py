"""Transformer top-oil and hot-spot temperatures: the IEEE C57.91 (clause 7) exponential model.

Ultimate rises for a per-unit load K (= kVA / rating):

    top-oil rise   dTO_U = dTO_R * ((K^2 R + 1) / (R + 1)) ** n
    hot-spot rise  dH_U  = dH_R * K ** (2 m)

and each rise approaches its ultimate value exponentially (time constants tau_TO, tau_W). With load
and ambient held constant over a step, the exact solution of that first-order response is used, so
the result does not depend on a small integration step. The state is carried in arrays over all
transformers at once; only the (short) time loop is in Python.

Default constants are those IEEE C57.91 tabulates for a 65 degC-rise ONAN distribution transformer
(110 degC hot spot at rated load and 30 degC ambient).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ThermalParams:
    top_oil_rise_rated_c: float = 55.0  # dTO_R
    hot_spot_gradient_rated_c: float = 25.0  # dH_R
    loss_ratio: float = 4.5  # R: load losses / no-load losses at rated load
    n: float = 0.8  # oil exponent (ONAN)
    m: float = 0.8  # winding exponent (ONAN)
    tau_top_oil_min: float = 180.0
    tau_winding_min: float = 7.0


def ultimate_rises(k: np.ndarray, p: ThermalParams) -> tuple[np.ndarray, np.ndarray]:
    """Ultimate top-oil rise over ambient and hot-spot rise over top oil for per-unit load ``k``."""
    k2 = np.square(k)
    top = p.top_oil_rise_rated_c * ((k2 * p.loss_ratio + 1.0) / (p.loss_ratio + 1.0)) ** p.n
    hot = p.hot_spot_gradient_rated_c * k2**p.m
    return top, hot


def simulate(
    k: np.ndarray,
    ambient_c: np.ndarray,
    step_min: float,
    extra_top_oil_c: np.ndarray | None = None,
    p: ThermalParams = ThermalParams(),
) -> tuple[np.ndarray, np.ndarray]:
    """Top-oil and hot-spot temperatures, arrays [time, transformer].

    ``k`` is the per-unit load held over each step, ``ambient_c`` the ambient per step (broadcast over
    transformers), ``extra_top_oil_c`` an additional ultimate top-oil rise (degraded cooling during an
    overheating event). The state starts at steady state for the first step: callers make that
    harmless with a warm-up window several time constants long.
    """
    k = np.asarray(k, dtype=float)
    amb = np.broadcast_to(np.asarray(ambient_c, dtype=float).reshape(k.shape[0], -1), k.shape)
    top_u, hot_u = ultimate_rises(k, p)
    if extra_top_oil_c is not None:
        top_u = top_u + extra_top_oil_c
    a_to = np.exp(-step_min / p.tau_top_oil_min)
    a_w = np.exp(-step_min / p.tau_winding_min)
    top = np.empty_like(k)
    hot = np.empty_like(k)
    d_to = top_u[0].copy()
    d_h = hot_u[0].copy()
    for i in range(k.shape[0]):
        # value at the *end* of step i, load k[i] having acted over the step
        d_to = top_u[i] + (d_to - top_u[i]) * a_to
        d_h = hot_u[i] + (d_h - hot_u[i]) * a_w
        top[i] = amb[i] + d_to
        hot[i] = amb[i] + d_to + d_h
    return top, hot
