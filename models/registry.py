"""MLflow model registry for gridlake: log, register, champion/challenger, load champion.

Plain library code over :class:`mlflow.MlflowClient` (no fluent global state, no Dagster), so
the Dagster resource in pipelines/ is a thin wrapper and the grid-ML models reuse it unchanged.

Policy
------
* every training run logs params, backtest metrics, figures (e.g. forecast vs actual) and the
  model artefact (any flavour: ``sklearn``, ``xgboost``, ``pytorch``, ``pyfunc``; plain Python
  objects such as gridlake forecasters go through ``pyfunc`` wrapped in :class:`PickledModel`);
* the run's model is registered as a new version, tagged with its metrics and ``backtest_id``;
* the ``champion`` alias moves to the new version only if it beats the current champion on the
  **same backtest** (same ``backtest_id``: same data span, origins and horizon). Otherwise the
  new version gets the ``challenger`` alias. The very first version becomes champion.
* scoring loads by alias: :meth:`ModelRegistry.load_champion`.
* one call applies the policy to a fitted candidate, for load/PV forecasting and grid ML alike:
  :meth:`ModelRegistry.challenge` on a :class:`Trained` (what a storage-free training pipeline,
  ``models.forecast.pipeline`` or ``models.grid.pipelines``, returns); :func:`run_summary` is the
  outcome as asset metadata shows it. Scoring falls back when the champion cannot be used for one of
  :func:`champion_failures` (also importable as :data:`CHAMPION_FAILURES`).

MLflow (~1-2 CPU s to import) is imported on first use, not when this module is: every process that loads the
Dagster definitions (code server, ``dagster definitions validate``, each run's and Celery worker's process) imports
this module, and most of them never talk to the registry.

Storage: any tracking URI. Default ``sqlite:///mlflow.db`` (MLflow >= 3.7's default; the file
store ``./mlruns`` still works but is in maintenance mode and weak on the registry).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CHAMPION = "champion"
#: relative difference of two metric values below which they count as equal (float rounding, not skill)
FLOAT_TIE = 1e-9
CHALLENGER = "challenger"
FLAVORS = ("pyfunc", "sklearn", "xgboost", "pytorch")


#: model-version tag: the champion drifted in production and is to be retrained (value: why)
RETRAIN_TAG = "retrain_requested"


def champion_failures(*extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    """Why a champion cannot be used at scoring time (no champion, the store unreachable, the artefact
    gone), plus ``extra``: the scoring pipelines then issue their documented fallback forecast.

    A function so that ``except champion_failures(...)`` imports MLflow only when an exception reaches it."""
    from mlflow.exceptions import MlflowException

    return (LookupError, MlflowException, OSError, *extra)


@dataclass
class Trained:
    """A fitted candidate and what the champion policy (:meth:`ModelRegistry.challenge`) needs to judge it.

    ``rescore`` scores another model (the champion) on the candidate's backtest: the metric value, or a
    dict of metrics holding ``metric``. ``figures`` are logged with the run; ``report`` holds what the
    training computed for the asset's metadata (score tables, candidate ranks), never logged."""

    model: Any
    metrics: dict[str, float | None]
    backtest_id: str
    metric: str
    higher_is_better: bool
    rescore: Callable[[Any], float | Mapping[str, float]]
    params: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


#: the keys of a :meth:`ModelRegistry.challenge` outcome that :func:`run_summary` keeps
SUMMARY_KEYS = ("model_name", "version", "run_id", "promoted", "alias", "champion_version_before", "promotion_reason")


def run_summary(out: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """One registered run as asset metadata shows it: ``extra`` (e.g. the entity), the registry's
    outcome (:data:`SUMMARY_KEYS`) and the candidate's metrics."""
    return {**extra, **{k: out[k] for k in SUMMARY_KEYS}} | {
        "metrics": {k[len("metric_") :]: v for k, v in out.items() if k.startswith("metric_")}
    }


_PICKLED_MODEL: type | None = None


def _pickled_model() -> type:
    """The class :data:`PickledModel`, defined on first use (it subclasses MLflow's ``PythonModel``)."""
    global _PICKLED_MODEL
    if _PICKLED_MODEL is None:
        import mlflow.pyfunc

        class PickledModel(mlflow.pyfunc.PythonModel):
            """pyfunc wrapper around any picklable Python object (e.g. a fitted gridlake Forecaster).

            ``predict(context, model_input)``: for a Forecaster, ``model_input`` is the recent history
            (with ``horizon`` given in ``params``), so scoring = roll state forward + forecast.
            """

            def __init__(self, obj: Any):
                self.obj = obj

            def predict(self, context, model_input, params: dict | None = None):
                params = params or {}
                obj = self.obj
                if hasattr(obj, "update") and hasattr(obj, "predict") and "horizon" in params:
                    return obj.update(model_input).predict(int(params["horizon"])).to_pandas()
                return obj.predict(model_input)

        # pickled models (already registered ones too) name it models.registry.PickledModel: the module
        # __getattr__ below resolves that name to this class
        PickledModel.__qualname__ = "PickledModel"
        PickledModel.__module__ = __name__
        _PICKLED_MODEL = PickledModel
    return _PICKLED_MODEL


def __getattr__(name: str) -> Any:
    """``PickledModel`` and ``CHAMPION_FAILURES``, resolved (and MLflow imported) on first access."""
    if name == "PickledModel":
        return _pickled_model()
    if name == "CHAMPION_FAILURES":
        return champion_failures()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_FLAVOR_PACKAGES = {"sklearn": "scikit-learn", "xgboost": "xgboost-cpu", "pytorch": "torch"}


def backtest_id(*parts: Any) -> str:
    """Identity of a backtest (entity, data span, origins, horizon, ...): same parts -> same id.

    Champion and challenger are only compared on the same ``backtest_id``.
    """
    import hashlib

    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PairedComparison:
    """A challenger judged against the incumbent on the same units (events, windows, days): see
    :func:`paired_comparison`. ``gain``: the challenger's total minus the incumbent's (higher is better);
    ``lower``: the bootstrap's ``alpha`` quantile of that gain; ``sign_p``: the one-sided sign test's p-value
    over the units where they differ; ``better``: the challenger wins by more than the sampling noise."""

    units: int
    differing: int
    gain: float
    lower: float
    sign_p: float
    alpha: float
    better: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"gain {self.gain:+.6g} over {self.units} units ({self.differing} differ), bootstrap "
            f"{1 - self.alpha:.1%} lower bound {self.lower:+.6g}, sign test p {self.sign_p:.3g}: "
            + ("better" if self.better else "within the noise")
        )


def paired_comparison(
    challenger: Any, incumbent: Any, *, alpha: float = 0.05, n_boot: int = 4000, seed: int = 0
) -> PairedComparison:
    """Does the challenger beat the incumbent by more than the sampling noise? The champion policy's rule
    when each model's score is a sum over units both were judged on (e.g. true alerts per confirmed
    incident, or per held-out window; higher is better).

    The paired differences are resampled over units (bootstrap, ``n_boot`` draws, fixed ``seed``): the
    challenger wins only if the ``alpha`` quantile of its total gain is above zero **and** the one-sided
    sign test over the units where the two differ has p <= ``alpha`` (a bootstrap of 2-3 units says
    nothing about the noise; the sign test needs 5 units all in the challenger's favour at 0.05). A tie
    or a noise-level gain keeps the incumbent."""
    c = np.asarray(challenger, dtype=np.float64)
    i = np.asarray(incumbent, dtype=np.float64)
    if c.ndim != 1 or c.shape != i.shape:
        raise ValueError(f"paired_comparison: need two 1-d arrays of the same units, got {c.shape} and {i.shape}")
    if not (0 < alpha < 0.5) or n_boot < 100:
        raise ValueError(f"paired_comparison: alpha in (0, 0.5) and n_boot >= 100, got {alpha}, {n_boot}")
    if not (np.isfinite(c).all() and np.isfinite(i).all()):
        raise ValueError("paired_comparison: non-finite unit scores")
    d = c - i
    n, gain = len(d), float(d.sum())
    if n == 0:
        return PairedComparison(0, 0, 0.0, 0.0, 1.0, alpha, False)
    sums = d[np.random.default_rng(seed).integers(0, n, size=(n_boot, n))].sum(axis=1)
    lower = float(np.quantile(sums, alpha))
    nz = d[np.abs(d) > FLOAT_TIE]
    wins = int((nz > 0).sum())
    # one-sided sign test: P(Binomial(m, 1/2) >= wins)
    m = len(nz)
    sign_p = float(sum(math.comb(m, k) for k in range(wins, m + 1)) / 2**m) if m else 1.0
    better = gain > FLOAT_TIE and lower > 0 and sign_p <= alpha
    return PairedComparison(n, m, gain, lower, sign_p, alpha, better)


def _pinned_requirements(flavor: str) -> list[str]:
    """Exact versions of the packages a gridlake model needs, from this environment."""
    from importlib.metadata import PackageNotFoundError, version

    pkgs = ["mlflow", "numpy", "pandas", "polars", "scikit-learn", "xgboost-cpu", "statsmodels"]
    pkgs.append(_FLAVOR_PACKAGES.get(flavor, "cloudpickle"))
    out = []
    for p in dict.fromkeys(pkgs):
        try:
            out.append(f"{p}=={version(p)}")
        except PackageNotFoundError:
            continue
    return out


@dataclass
class Promotion:
    """Outcome of a champion/challenger decision (what the asset metadata shows)."""

    model_name: str
    version: str
    promoted: bool
    alias: str
    metric: str
    candidate_value: float
    champion_version: str | None
    champion_value: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers among ``metrics`` (what MLflow tags can hold and promotion compares)."""
    out = {}
    for k, v in metrics.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[k] = f
    return out


class ModelRegistry:
    """Registry operations on one MLflow tracking/registry store."""

    def __init__(
        self,
        tracking_uri: str = "sqlite:///mlflow.db",
        *,
        registry_uri: str | None = None,
        experiment: str = "gridlake",
        artifact_location: str | None = None,
    ):
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=self.registry_uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            exp.experiment_id
            if exp is not None
            else self.client.create_experiment(experiment, artifact_location=artifact_location)
        )

    # ------------------------------------------------------------------ logging
    def log_training_run(
        self,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        model: Any = None,
        flavor: str = "pyfunc",
        figures: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        run_name: str | None = None,
    ) -> str:
        """Create a run with params, metrics, figures and the model artefact; return run id.

        Non-finite metrics are rejected (a NaN MAPE must not become a champion by accident).
        """
        bad = {k: v for k, v in metrics.items() if v is None or not math.isfinite(float(v))}
        if bad:
            raise ValueError(f"metrics must be finite numbers, got {bad}")
        if flavor not in FLAVORS:
            raise ValueError(f"unknown model flavour {flavor!r}; supported: {FLAVORS}")
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags or {}))
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            )
            for path, fig in (figures or {}).items():
                self.client.log_figure(run_id, fig, path)
            if model is not None:
                self._log_model(run_id, model, flavor)
            self.client.set_terminated(run_id, "FINISHED")
        except Exception:
            self.client.set_terminated(run_id, "FAILED")
            raise
        return run_id

    def _log_model(self, run_id: str, model: Any, flavor: str) -> None:
        mod = importlib.import_module(f"mlflow.{flavor}")
        # explicit requirements: MLflow's inference re-imports the model in a subprocess (tens of
        # seconds here) and would list whatever happens to be imported
        reqs = _pinned_requirements(flavor)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model")
            if flavor == "pyfunc":
                pm = model if isinstance(model, mod.PythonModel) else _pickled_model()(model)
                mod.save_model(path, python_model=pm, pip_requirements=reqs)
            else:
                mod.save_model(model, path, pip_requirements=reqs)
            self.client.log_artifacts(run_id, path, "model")
        self.client.set_tag(run_id, "gridlake.model_flavor", flavor)

    # ------------------------------------------------------------------ registry
    def register(self, run_id: str, name: str, *, backtest_id: str, metrics: Mapping[str, float] | None = None) -> str:
        """Register the run's ``model`` artefact as a new version of ``name``; return the version."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name)
        run = self.client.get_run(run_id)
        flavor = run.data.tags.get("gridlake.model_flavor")
        if flavor is None:
            raise ValueError(f"run {run_id} logged no model artefact; nothing to register")
        mets = dict(metrics) if metrics is not None else dict(run.data.metrics)
        tags = {
            "backtest_id": backtest_id,
            "flavor": flavor,
            **{f"metric.{k}": repr(float(v)) for k, v in mets.items()},
        }
        mv = self.client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run_id, tags=tags)
        return str(mv.version)

    def champion(self, name: str):
        """The champion ModelVersion, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, CHAMPION)
        except MlflowException:
            return None

    def promote_if_better(
        self,
        name: str,
        version: str,
        *,
        metric: str = "mape",
        higher_is_better: bool = False,
        min_improvement: float = 0.0,
    ) -> Promotion:
        """Move ``champion`` to ``version`` iff it beats the champion on the same backtest."""
        mv = self.client.get_model_version(name, version)
        key = f"metric.{metric}"
        if key not in mv.tags:
            raise ValueError(f"{name} v{version} has no metric {metric!r}; tags: {sorted(mv.tags)}")
        cand = float(mv.tags[key])
        champ = self.champion(name)
        if champ is None:
            self._set_champion(name, version)
            return Promotion(name, version, True, CHAMPION, metric, cand, None, None, "no champion yet")
        champ_v = str(champ.version)
        if champ_v == str(mv.version):
            return Promotion(name, version, True, CHAMPION, metric, cand, champ_v, cand, "already champion")
        champ_val = float(champ.tags[key]) if key in champ.tags else None
        if champ.tags.get("backtest_id") != mv.tags.get("backtest_id") or champ_val is None:
            reason = (
                f"not comparable: champion v{champ.version} was scored on backtest "
                f"{champ.tags.get('backtest_id')!r}, candidate on {mv.tags.get('backtest_id')!r}; "
                "re-score the champion on the candidate's backtest"
            )
            better = False
        else:
            gain = (cand - champ_val) if higher_is_better else (champ_val - cand)
            # the same model scored twice can differ in the last bits (summation order): a gain within
            # float rounding is no gain, or a retrain on unchanged data would flip the champion each night
            better = gain > min_improvement + FLOAT_TIE * max(1.0, abs(champ_val))
            cmp = ">" if better else "<="
            reason = f"{metric} improvement {gain:.6g} {cmp} {min_improvement:g} vs champion v{champ.version}"
        if better:
            self._set_champion(name, version)
            return Promotion(name, version, True, CHAMPION, metric, cand, champ_v, champ_val, reason)
        self.client.set_registered_model_alias(name, CHALLENGER, version)
        return Promotion(name, version, False, CHALLENGER, metric, cand, champ_v, champ_val, reason)

    def _set_champion(self, name: str, version: str) -> None:
        from mlflow.exceptions import MlflowException

        self.client.set_registered_model_alias(name, CHAMPION, version)
        try:
            if str(self.client.get_model_version_by_alias(name, CHALLENGER).version) == str(version):
                self.client.delete_registered_model_alias(name, CHALLENGER)
        except MlflowException:
            pass

    def load(self, name: str, alias: str = CHAMPION) -> Any:
        """Load the version behind ``alias`` in its native flavour (unwrapped for PickledModel)."""
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            raise LookupError(f"registered model {name!r} has no {alias!r} alias") from exc
        flavor = mv.tags.get("flavor", "pyfunc")
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=mv.source, tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
        )
        model = importlib.import_module(f"mlflow.{flavor}").load_model(local)
        if flavor == "pyfunc":
            inner = model.unwrap_python_model()
            return inner.obj if isinstance(inner, _pickled_model()) else model
        return model

    def load_champion(self, name: str) -> Any:
        return self.load(name, CHAMPION)

    def champion_model(self, name: str, producer: str) -> tuple[Any, str]:
        """(model, version) of the champion; LookupError naming the training asset ``producer`` if none."""
        mv = self.champion(name)
        if mv is None:
            raise LookupError(f"registered model {name!r} has no champion yet: materialise {producer}")
        return self.load(name), str(mv.version)

    # ------------------------------------------------------------------ drift -> retraining
    def mark_for_retraining(self, name: str, reason: str) -> str | None:
        """Tag the champion version ``retrain_requested=reason`` (e.g. a forecast-accuracy drift);
        the nightly training reads it (:meth:`retrain_requested`). Returns the version, None if no champion."""
        champ = self.champion(name)
        if champ is None:
            return None
        self.client.set_model_version_tag(name, champ.version, RETRAIN_TAG, reason)
        return str(champ.version)

    def retrain_requested(self, name: str) -> str | None:
        """Why the champion was marked for retraining, or None."""
        champ = self.champion(name)
        return None if champ is None else champ.tags.get(RETRAIN_TAG)

    # ------------------------------------------------------------------ one call for assets
    def challenge(
        self,
        name: str,
        model: Any,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, float | None],
        backtest_id: str,
        metric: str,
        higher_is_better: bool,
        rescore: Any,
        flavor: str = "pyfunc",
        figures: Mapping[str, Any] | None = None,
        log: Any = None,
    ) -> dict[str, Any]:
        """The champion policy: re-score the current champion on the candidate's backtest (``rescore``:
        model -> metric value, or a dict of metrics), tag it with that evaluation, then log, register and
        promote the candidate iff it beats the champion there. A champion that cannot be loaded or
        re-scored stays "not comparable" (said through ``log``, e.g. a Dagster logger's ``warning``).

        The outcome adds ``champion_rescored`` (the champion's ``metric`` on this backtest, None without
        one) and ``champion_metrics`` (all its metrics there: re-scored now, or read from its tags when it
        was already scored on this backtest)."""
        champ = self.champion(name)
        rescored, champ_metrics = None, None
        if champ is not None and champ.tags.get("backtest_id") == backtest_id:
            champ_metrics = {k[len("metric.") :]: float(v) for k, v in champ.tags.items() if k.startswith("metric.")}
            rescored = champ_metrics.get(metric)
        elif champ is not None:
            try:
                got = rescore(self.load(name))
                champ_metrics = _finite(got if isinstance(got, Mapping) else {metric: got})
            except Exception as e:  # an unloadable/incompatible champion stays "not comparable"; say so
                if log is not None:
                    log(f"{name}: champion v{champ.version} could not be re-scored on {backtest_id}: {e!r}")
            rescored = (champ_metrics or {}).get(metric)
            if rescored is not None:
                for k, v in champ_metrics.items():
                    self.client.set_model_version_tag(name, champ.version, f"metric.{k}", repr(v))
                self.client.set_model_version_tag(name, champ.version, "backtest_id", backtest_id)
            else:
                champ_metrics = None
        finite = _finite(metrics)
        out = self.train_register_promote(
            name,
            params=params,
            metrics=finite,
            backtest_id=backtest_id,
            model=model,
            flavor=flavor,
            figures=figures,
            metric=metric,
            higher_is_better=higher_is_better,
        )
        out["champion_rescored"] = rescored
        out["champion_metrics"] = champ_metrics
        out["model_uri"] = f"models:/{name}@champion"
        return out

    def train_register_promote(
        self,
        name: str,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        backtest_id: str,
        model: Any,
        flavor: str = "pyfunc",
        figures: Mapping[str, Any] | None = None,
        metric: str = "mape",
        higher_is_better: bool = False,
    ) -> dict[str, Any]:
        """log -> register -> promote; returns a flat dict for Dagster asset metadata."""
        run_id = self.log_training_run(
            params=params,
            metrics=metrics,
            model=model,
            flavor=flavor,
            figures=figures,
            run_name=name,
            tags={"backtest_id": backtest_id},
        )
        version = self.register(run_id, name, backtest_id=backtest_id, metrics=metrics)
        p = self.promote_if_better(name, version, metric=metric, higher_is_better=higher_is_better)
        return {
            "run_id": run_id,
            "model_name": name,
            "version": version,
            **{f"metric_{k}": float(v) for k, v in metrics.items()},
            "promoted": p.promoted,
            "alias": p.alias,
            "champion_version_before": p.champion_version,
            "promotion_reason": p.reason,
        }
