"""The champion anomaly model in the stream, hot-reloaded when the MLflow ``champion`` alias moves.

``ChampionScorer`` scores SCADA samples with the transformer anomaly ensemble the batch graph trains
and promotes (``models.grid.config.MODEL_ANOMALY["transformer"]``, ``models:/<name>@champion``), with
the same feature code as batch scoring (``models.grid.features.transformer_features``). Its features
look back (thermal model, rolling voltage), so the scorer keeps a bounded history per transformer
(``history_rows`` samples) and builds features over history + the new samples of the batch's
transformers, scoring only the new rows.

Every ``check_every_s`` it asks the registry which version holds the alias; a new one is loaded in a
background thread and swapped in atomically between batches, so scoring never waits for MLflow.

Alerts: ``TransformerAnomaly`` at the model's own bands (``AlertThresholds``: >= alert -> warning,
>= critical -> critical), resolved when the score falls below the monitoring band; the model version
and its reason (the most unusual feature) are annotations, not labels, so a reload does not change
an active alert's identity.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import polars as pl

from models.grid.config import MODEL_ANOMALY
from models.grid.features import SCADA_INPUT, transformer_features
from streaming_bridge.alerts import Alert

log = logging.getLogger(__name__)
RUNBOOK = "Compare with the transformer's SCADA trend and the failure-risk score; inspect if it persists."


class ChampionScorer:
    def __init__(
        self,
        name: str = MODEL_ANOMALY["transformer"],
        *,
        registry: Any = None,
        tracking_uri: str | None = None,
        check_every_s: float = 30.0,
        history_rows: int = 96,
        ref_transformers: pl.DataFrame | None = None,
        background: bool = True,
    ):
        if registry is None:
            from models.registry import ModelRegistry

            registry = ModelRegistry(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///.demo/mlflow.db"))
        self.reg = registry
        self.name = name
        self.check_every_s = check_every_s
        self.history_rows = history_rows
        self.ref_transformers = ref_transformers
        self.background = background
        self.model: Any = None
        self.version: str | None = None
        self.reloads = 0
        self._checked = 0.0
        self._loading: threading.Thread | None = None
        self._lock = threading.Lock()
        self._history: pl.DataFrame | None = None
        self.active: dict[str, Alert] = {}
        self.maybe_reload(force=True, wait=True)

    # ------------------------------------------------------------------ hot reload
    def _load(self, version: str) -> None:
        try:
            model = self.reg.load(self.name)
            with self._lock:
                self.model, self.version = model, version
                self.reloads += 1
            log.info("anomaly model %s: champion v%s loaded", self.name, version)
        except Exception as e:  # noqa: BLE001 - keep scoring with the model we have
            log.warning("anomaly model %s v%s could not be loaded: %s", self.name, version, e)

    def maybe_reload(self, force: bool = False, wait: bool = False) -> bool:
        """Load the champion if the alias moved (checked at most every ``check_every_s``)."""
        if not force and time.monotonic() - self._checked < self.check_every_s:
            return False
        if self._loading is not None and self._loading.is_alive():
            return False
        self._checked = time.monotonic()
        mv = self.reg.champion(self.name)
        if mv is None or str(mv.version) == self.version:
            return False
        if self.background and not wait:
            self._loading = threading.Thread(
                target=self._load, args=(str(mv.version),), name="champion-load", daemon=True
            )
            self._loading.start()
        else:
            self._load(str(mv.version))
        return True

    @property
    def model_version(self) -> str:
        return f"{self.name}:v{self.version}" if self.version else ""

    # ------------------------------------------------------------------ scoring
    def score(self, accepted: dict[str, pl.DataFrame], bridge) -> list[Alert]:
        scada = accepted.get("scada")
        with self._lock:
            model, mv = self.model, self.model_version
        if scada is None or scada.height == 0 or model is None:
            return []
        new = scada.select(SCADA_INPUT)
        ids = new["transformer_id"].unique()
        hist = (
            self._history.filter(pl.col("transformer_id").is_in(ids.implode()))
            if self._history is not None
            else new.clear()
        )
        frame = pl.concat(
            [hist.with_columns(pl.lit(False).alias("_new")), new.with_columns(pl.lit(True).alias("_new"))]
        )
        frame = frame.unique(["transformer_id", "sample_time"], keep="first", maintain_order=True).sort(
            "transformer_id", "sample_time"
        )
        ref = self.ref_transformers if self.ref_transformers is not None else bridge.topo.transformers
        feats = transformer_features(
            frame.drop("_new"), ref, None, model.feature_config
        )  # the zone the model was trained in
        scores = model.score(feats)
        # transformer_features returns rows sorted by (asset_id, time), as frame is
        scored = scores.with_columns(frame["_new"].alias("_new")).filter(pl.col("_new"))
        # keep the last history_rows samples per transformer
        keep = frame.drop("_new").group_by("transformer_id", maintain_order=True).tail(self.history_rows)
        rest = (
            self._history.filter(~pl.col("transformer_id").is_in(ids.implode())) if self._history is not None else None
        )
        self._history = pl.concat([rest, keep]) if rest is not None else keep
        return self._alerts(scored, model.thresholds, mv, bridge)

    def _alerts(self, scored: pl.DataFrame, th, mv: str, bridge) -> list[Alert]:
        out: list[Alert] = []
        hot = scored.filter(
            (pl.col("score") >= th.alert)
            | pl.col("asset_id").is_in(pl.Series(list(self.active), dtype=pl.Utf8).implode())
        )
        for asset, t, s, reason in hot.select("asset_id", "time", "score", "reason").iter_rows():
            a = self.active.get(asset)
            if a is None and s >= th.alert:
                sev = "critical" if s >= th.critical else "warning"
                a = bridge.topo.alert(
                    "TransformerAnomaly",
                    sev,
                    "transformer",
                    asset,
                    starts_at=t,
                    summary="the champion anomaly model scores the transformer's telemetry as anomalous",
                    value=f"anomaly score {s:.3f}",
                    limit=f">= {th.alert:g} ({'critical >= ' + format(th.critical, 'g')})",
                    runbook=RUNBOOK,
                    extra_annotations={"model": mv, "reason": reason or ""},
                )
                self.active[asset] = a
                out.append(a)
            elif a is not None and s < th.monitoring:
                out.append(bridge.topo.resolve(self.active.pop(asset), t))
        return out
