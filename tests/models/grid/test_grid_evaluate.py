"""Hold-out evaluation helpers of the grid training runs (models.grid.evaluate)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss

from models.grid.config import AlertThresholds
from models.grid.evaluate import anomaly_holdout_metrics, brier_score, reading_interval, training_window


def test_brier_score_matches_sklearn():
    rng = np.random.default_rng(1)
    p, y = rng.random(200), rng.random(200) < 0.3
    assert brier_score(p, y) == pytest.approx(brier_score_loss(y, p))
    assert brier_score(np.array([1.0, 0.0]), np.array([True, False])) == 0.0


def test_reading_interval_is_the_fleet_mode_with_a_default():
    ref = pl.DataFrame({"interval_minutes": [15, 30, 15]}, schema={"interval_minutes": pl.Int32})
    assert reading_interval(ref) == timedelta(minutes=15)
    assert reading_interval(ref.head(0)) == timedelta(minutes=30)
    assert reading_interval(ref.head(0), default_minutes=5) == timedelta(minutes=5)


def _days(first: date, n: int, skip: tuple[int, ...] = ()) -> list[date]:
    return [first + timedelta(days=i) for i in range(n) if i not in skip]


def test_training_window_ends_at_the_newest_day_or_as_of():
    days = _days(date(2026, 6, 1), 12, skip=(9,))  # 2026-06-10 missing
    start, end, found = training_window(reversed(days), window_days=5, min_days=3, eval_days=1)
    assert (start, end) == (date(2026, 6, 8), date(2026, 6, 12))
    assert found == [date(2026, 6, 8), date(2026, 6, 9), date(2026, 6, 11), date(2026, 6, 12)]
    start, end, found = training_window(days, window_days=3, min_days=2, eval_days=1, as_of=date(2026, 6, 5))
    assert (start, end, found) == (date(2026, 6, 3), date(2026, 6, 5), _days(date(2026, 6, 3), 3))


def test_training_window_refuses_too_little_history_and_bad_settings():
    days = _days(date(2026, 6, 1), 8)
    with pytest.raises(ValueError, match=r"found 8 day\(s\) of silver_meter_readings .*need at least 14"):
        training_window(days, window_days=28, min_days=14, eval_days=1, what="grid_anomaly_model")
    with pytest.raises(ValueError, match="found 0 days of history"):
        training_window([], window_days=28, min_days=7, eval_days=1)
    with pytest.raises(ValueError, match="eval_days .3. must be smaller than min_days .3."):
        training_window(days, window_days=7, min_days=3, eval_days=3)
    with pytest.raises(ValueError, match="must be >= 2"):
        training_window(days, window_days=1, min_days=2, eval_days=1)


class _ScoreStub:
    """An anomaly model that returns fixed scores."""

    thresholds = AlertThresholds(0.3, 0.5, 0.9)

    def __init__(self, score):
        self.score = np.asarray(score, dtype=float)

    def score_arrays(self, features):
        assert len(features) == len(self.score)  # the whole frame is scored, not only the held-out rows
        return {"score": self.score}


def _keys(n: int) -> pl.DataFrame:
    t0 = datetime(2026, 6, 1, tzinfo=timezone.utc)
    return pl.DataFrame({"asset_id": ["M1"] * n, "time": [t0 + timedelta(minutes=30 * i) for i in range(n)]})


def test_anomaly_holdout_metrics_count_only_the_held_out_rows():
    # training rows are perfectly wrong: they must not leak into the metrics
    score = [1.0, 0.0, 0.9, 0.1, 0.6, 0.2]
    labels = pl.Series([None, "theft", "theft", None, None, "theft"], dtype=pl.Utf8)
    is_eval = np.array([False, False, True, True, True, True])
    m = anomaly_holdout_metrics(_ScoreStub(score), _keys(6), labels, is_eval)
    y = np.array([1, 0, 0, 1])
    s = np.array([0.9, 0.1, 0.6, 0.2])
    assert m["eval_rows"] == 4 and m["eval_positives"] == 2
    assert m["brier"] == pytest.approx(np.mean((s - y) ** 2))
    # at the 0.5 alert: 0.9 (true) and 0.6 (false) flagged, 0.2 (true) missed
    assert (m["precision_at_alert"], m["recall_at_alert"]) == (0.5, 0.5)
    assert m["average_precision"] == pytest.approx(average_precision_score(y, s))


def test_anomaly_holdout_without_positives_has_no_average_precision():
    labels = pl.Series([None] * 4, dtype=pl.Utf8)
    m = anomaly_holdout_metrics(_ScoreStub([0.1, 0.2, 0.7, 0.0]), _keys(4), labels, np.array([False, True, True, True]))
    assert m["average_precision"] is None and m["eval_positives"] == 0
    assert m["brier"] == pytest.approx((0.2**2 + 0.7**2) / 3)
