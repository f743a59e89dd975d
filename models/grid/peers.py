"""Peer detectors: Isolation Forest and PyOD's ECOD, COPOD and LOF, on the ensemble's own features.

They are the candidates the anomaly ensemble is compared with (``make bench-ml``) and, since issue 14,
candidates of the anomaly training itself (:func:`models.grid.pipelines.train_anomaly`): each is fitted
unsupervised on the same training rows as the ensemble's detectors, on the same robust-scaled, clipped
feature matrix (:meth:`models.grid.anomaly.AnomalyEnsemble._scaled`), and deployed inside an
:class:`~models.grid.anomaly.AnomalyEnsemble` (:meth:`~models.grid.anomaly.AnomalyEnsemble.with_peer`) so
scoring, bands, gold tables and drift monitoring are unchanged whichever candidate wins.

Sizes: LOF is a k-nearest-neighbour query per scored row against its training rows, so it is fitted on
fewer rows (``LOF_ROWS``) and queries by brute force (measured, ``make bench-ml --lof-cost-only``: 3x less
CPU than the tree the default picks, same neighbours); the others on ``MAX_ROWS``.
"""

from __future__ import annotations

import numpy as np

PEERS = ("isolation_forest", "ecod", "copod", "lof")
#: the peers a model can be deployed as. PyOD's ECOD and COPOD score a batch *together with* their
#: training rows (``decision_function`` rebuilds the empirical CDFs on training + batch), so a reading's
#: score depends on which readings it was scored with (measured: 0.44 alone vs 0.72 in a batch, for the
#: same reading): fine for a benchmark table, wrong for a scorer of live readings. They stay peers of
#: ``make bench-ml``, not candidates.
DEPLOYABLE_PEERS = ("isolation_forest", "lof")
MAX_ROWS = 40_000
LOF_ROWS = 10_000


def fit_peer(name: str, xs: np.ndarray, seed: int = 0):
    """Fit peer ``name`` on the scaled matrix ``xs`` (a sample of it: :data:`MAX_ROWS`, :data:`LOF_ROWS`)."""
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD
    from pyod.models.lof import LOF
    from sklearn.ensemble import IsolationForest

    makers = {
        "isolation_forest": lambda: IsolationForest(n_estimators=100, random_state=seed, n_jobs=1),
        "ecod": ECOD,
        "copod": COPOD,
        # brute force: the same exact neighbours as the default's KD/ball tree (same scores, same precision
        # at the budget), 3x less CPU on these ~12-d features (BLAS distance blocks; trees degrade in 12-d)
        "lof": lambda: LOF(n_neighbors=20, novelty=True, algorithm="brute"),
    }
    if name not in makers:
        raise ValueError(f"unknown peer detector {name!r}; known: {PEERS}")
    rows = min(LOF_ROWS if name == "lof" else MAX_ROWS, len(xs))
    if rows < 2:
        raise ValueError(f"peer {name}: need at least 2 training rows, got {len(xs)}")
    idx = np.sort(np.random.default_rng(seed).choice(len(xs), rows, replace=False))
    x = xs[idx].astype(np.float64) if name == "lof" else xs[idx]  # brute-force distances: float64, see peer_raw
    return makers[name]().fit(np.ascontiguousarray(x))


def peer_raw(name: str, model, xs: np.ndarray) -> np.ndarray:
    """Raw anomaly score of a fitted peer (higher = more anomalous), float64."""
    if name == "isolation_forest":
        return -np.asarray(model.score_samples(xs), dtype=np.float64)
    if name == "lof":  # brute force expands |a-b|^2 = |a|^2+|b|^2-2ab: in float32 that reorders near ties
        xs = np.asarray(xs, dtype=np.float64)
    return np.asarray(model.decision_function(xs), dtype=np.float64)
