"""N-1 line-contingency screening for the DC-OPF, and security-constrained re-dispatch.

Screening uses distribution factors of the solved case (MATPOWER's ``makePTDF``/``makeLODF``
definitions, computed here with one sparse LU of the reduced B matrix):

* ``PTDF[l, i]``: MW on branch ``l`` per MW injected at bus ``i`` and withdrawn at the reference bus;
* ``LODF[l, k] = H[l, k] / (1 - H[k, k])`` with ``H[l, k] = PTDF[l, f_k] - PTDF[l, t_k]``: the share
  of branch ``k``'s pre-outage flow that moves onto branch ``l`` when ``k`` trips, so
  ``flow_l after = flow_l + LODF[l, k] * flow_k`` for every single outage at once (a matrix product,
  no re-solve). A branch with ``H[k, k] = 1`` is a bridge: its outage splits the network (islanding),
  which the DC screening cannot price; those are listed, not screened.

Re-dispatch: for each of the worst ``redispatch_worst`` contingencies ``k`` on its own, the DC-OPF
with the post-outage limits ``-rate_l <= flow_l + LODF[l, k] flow_k <= rate_l`` on every rated
branch (a preventive security-constrained OPF), solved through :func:`optimization.dcopf.solve_dcopf`
(so verified, with its fallbacks), then re-screened for that outage. A contingency no re-dispatch can
secure is reported as infeasible with the constraint groups that block it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from optimization.dcopf import OPFResult, b_matrices, load_case, solve_dcopf
from optimization.errors import InfeasibleError, InputError

#: 1 - H[k, k] below this: the outage of k islands part of the network
ISLANDING_TOL = 1e-8


@dataclass
class N1Result:
    """Screening of every single-branch outage of a solved DC-OPF."""

    #: one row per (outage, overloaded branch): pre/post flow, rating, post-outage loading %
    overloads: pl.DataFrame
    #: one row per screened outage with at least one overload: count and worst loading
    contingencies: pl.DataFrame
    #: security-constrained re-dispatch of the worst outages: cost before/after, overloads left
    redispatch: pl.DataFrame
    #: branches (ppc rows) whose outage islands the network (not screened)
    islanding: list[int]
    base: OPFResult
    #: the secured re-dispatch per contingency branch (ppc row) that could be secured
    secured: dict[int, OPFResult]
    screening_seconds: float
    redispatch_seconds: float
    lodf: np.ndarray = field(repr=False)


def distribution_factors(d: dict[str, Any], ref: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(PTDF, LODF) of the live network in :func:`optimization.dcopf.build_dcopf`'s data ``d``.

    PTDF is (branches x buses) with bus ``ref`` (position) as the slack; LODF is (branches x
    branches) with -1 on the diagonal and NaN columns for islanding outages.
    """
    import scipy.sparse.linalg as spla  # on first use, as optimization.battery's brentq

    nb, nl = d["bus_ids"].size, d["li"].size
    f, t = d["f"], d["t"]
    _, Bf, Bbus = b_matrices(d)
    keep = np.flatnonzero(np.arange(nb) != ref)
    try:
        lu = spla.splu(Bbus[keep][:, keep].tocsc())
    except RuntimeError as exc:  # singular: the live network has more than one island
        raise InputError(f"N-1 screening needs one connected network: the B matrix is singular ({exc})") from None
    X = lu.solve(Bf[:, keep].toarray().T)  # (nb-1) x nl = B_red^-1 Bf_red^T
    ptdf = np.zeros((nl, nb))
    ptdf[:, keep] = X.T
    H = ptdf[:, f] - ptdf[:, t]
    den = 1.0 - np.diag(H)
    islanding = np.abs(den) < ISLANDING_TOL
    with np.errstate(divide="ignore", invalid="ignore"):
        lodf = H / np.where(islanding, np.nan, den)[None, :]
    np.fill_diagonal(lodf, -1.0)
    lodf[:, islanding] = np.nan
    return ptdf, lodf


def post_contingency_flows(flow: np.ndarray, lodf: np.ndarray) -> np.ndarray:
    """(monitored x outaged) post-outage flows: ``flow_l + LODF[l, k] * flow_k``."""
    return flow[:, None] + lodf * flow[None, :]


def screen_n1(
    case: Any,
    *,
    redispatch_worst: int = 3,
    rating_factor: float = 1.0,
    **opf_kwargs: Any,
) -> N1Result:
    """N-1 screening of every in-service branch of ``case``'s DC-OPF, plus re-dispatch of the worst outages.

    A post-outage flow above ``rating_factor`` x rate A (emergency ratings above the normal one are
    common: pass e.g. 1.2) is an overload; unrated branches (rate A = 0) are never overloaded.
    ``opf_kwargs`` go to :func:`optimization.dcopf.solve_dcopf` for both the base case and the re-dispatch.
    """
    if not rating_factor > 0:
        raise InputError(f"rating_factor must be > 0, got {rating_factor!r}")
    ppc = load_case(case)
    base = solve_dcopf(ppc, **opf_kwargs)
    t0 = time.perf_counter()
    d = base.data
    _, lodf = distribution_factors(d, ref=_ref_position(d, ppc))
    flow = base.branches["p_mw"].to_numpy()
    overloads, per_outage, islanding = _screen(d, flow, lodf, rating_factor)
    screening = time.perf_counter() - t0
    t1 = time.perf_counter()
    rows, secured = [], {}
    for r in per_outage.head(max(0, int(redispatch_worst))).iter_rows(named=True):
        k = r["position"]
        row = {"contingency_branch": r["contingency_branch"], "overloads_before": r["overloads"], "worst_loading_pct_before": r["worst_loading_pct"],
               "overloads_after": None, "worst_loading_pct_after": None, "base_cost_per_h": base.objective, "secured_cost_per_h": None}  # fmt: skip
        try:
            sec = solve_dcopf(ppc, **opf_kwargs, security={k: lodf[:, k]}, security_rating_factor=rating_factor)
        except InfeasibleError as exc:
            row["status"] = f"infeasible: {', '.join(exc.groups) or exc}"
        else:
            secured[r["contingency_branch"]] = sec
            f_sec = sec.branches["p_mw"].to_numpy()
            post = f_sec + np.nan_to_num(lodf[:, k]) * f_sec[k]
            rated = (d["rate"] > 0) & (np.arange(d["rate"].size) != k)
            loading = 100.0 * np.abs(post[rated]) / d["rate"][rated]
            row.update(status="secured", secured_cost_per_h=sec.objective, overloads_after=int((loading > 100.0 * rating_factor + 1e-4).sum()),
                       worst_loading_pct_after=float(loading.max(initial=0.0)))  # fmt: skip
        rows.append(row)
    redispatch = pl.DataFrame(rows, schema=_REDISPATCH_SCHEMA)
    return N1Result(
        overloads,
        per_outage.drop("position"),
        redispatch,
        islanding,
        base,
        secured,
        screening,
        time.perf_counter() - t1,
        lodf,
    )


_REDISPATCH_SCHEMA = {
    "contingency_branch": pl.Int64, "overloads_before": pl.Int64, "worst_loading_pct_before": pl.Float64, "overloads_after": pl.Int64,
    "worst_loading_pct_after": pl.Float64, "base_cost_per_h": pl.Float64, "secured_cost_per_h": pl.Float64, "status": pl.Utf8,
}  # fmt: skip


def _ref_position(d: dict[str, Any], ppc: dict[str, Any]) -> int:
    bus = np.asarray(ppc["bus"], dtype=float)
    refs = bus[bus[:, 1] == 3, 0].astype(int)
    pos = np.flatnonzero(np.isin(d["bus_ids"], refs))
    return int(pos[0]) if pos.size else int(d["gbus"][0]) if d["gbus"].size else 0


def _screen(
    d: dict[str, Any], flow: np.ndarray, lodf: np.ndarray, rating_factor: float
) -> tuple[pl.DataFrame, pl.DataFrame, list[int]]:
    rate = d["rate"] * rating_factor
    islanding_cols = np.isnan(lodf).all(axis=0)
    post = post_contingency_flows(flow, np.nan_to_num(lodf))
    over = (rate[:, None] > 0) & (np.abs(post) > rate[:, None] + 1e-6)
    np.fill_diagonal(over, False)
    over[:, islanding_cols] = False
    mon, out = np.nonzero(over)
    li, ids = d["li"], d["bus_ids"]
    loading = 100.0 * np.abs(post[mon, out]) / d["rate"][mon]
    overloads = pl.DataFrame(
        {
            "contingency_branch": li[out].astype(np.int64), "contingency_from_bus": ids[d["f"][out]].astype(np.int64),
            "contingency_to_bus": ids[d["t"][out]].astype(np.int64), "monitored_branch": li[mon].astype(np.int64),
            "from_bus": ids[d["f"][mon]].astype(np.int64), "to_bus": ids[d["t"][mon]].astype(np.int64),
            "pre_flow_mw": flow[mon], "post_flow_mw": post[mon, out], "rate_mw": d["rate"][mon], "loading_pct": loading,
        }
    ).sort(["loading_pct"], descending=True)  # fmt: skip
    per = (
        pl.DataFrame(
            {"position": out.astype(np.int64), "contingency_branch": li[out].astype(np.int64), "loading": loading}
        )
        .group_by("position", "contingency_branch")
        .agg(pl.len().cast(pl.Int64).alias("overloads"), pl.col("loading").max().alias("worst_loading_pct"))
        .sort(["worst_loading_pct", "contingency_branch"], descending=[True, False])
    )
    return overloads, per, [int(x) for x in li[islanding_cols]]


def screening_table(res: N1Result) -> pl.DataFrame:
    """One long frame of a screening: ``overload`` rows (outage x overloaded branch) and ``redispatch`` rows
    (``monitored_branch`` -1, the worst pre-re-dispatch loading, costs, overloads left, status)."""
    over = res.overloads.select(
        pl.lit("overload").alias("kind"), "contingency_branch", "monitored_branch", "from_bus", "to_bus",
        "pre_flow_mw", "post_flow_mw", "rate_mw", "loading_pct",
    )  # fmt: skip
    red = res.redispatch.select(
        pl.lit("redispatch").alias("kind"), "contingency_branch", pl.lit(-1, dtype=pl.Int64).alias("monitored_branch"),
        pl.col("worst_loading_pct_before").alias("loading_pct"), "overloads_after", "base_cost_per_h", "secured_cost_per_h", "status",
    )  # fmt: skip
    return pl.concat([over, red], how="diagonal_relaxed")
