"""great-expectations suites derived from the table declarations, and a validator for Polars frames.

Why this module exists
- The hard bounds, allowed values, nullability and keys of every table are declared once in
  ``contracts``; the soft thresholds live in ``quality.rules``. ``suite_for`` turns those
  declarations into great-expectations (GX 1.x) expectations so that nothing is typed twice: a new
  column or a changed bound changes the suite automatically.
- ``validate_frame`` runs the suite on one partition (a Polars frame) and returns a plain, JSON-ready
  dataclass. Dagster asset checks (in ``assets/``, written elsewhere) put it into check metadata;
  this module is library code and does not import dagster.

Blocking vs soft
- *blocking* (hard) expectations: not-null, declared min/max bounds, allowed values, key
  uniqueness. Ingestion quarantines rows that break these, so a silver partition that fails one is
  a pipeline bug and downstream assets should not run.
- *soft* expectations (``blocking=False``) watch things that may legitimately move: the share of
  rows flagged ``anomaly`` and the share of rows outside the ``quality.rules`` warning bands (GX
  ``mostly``: a failure means "more than X % of rows", not "any row"), and whether the flags agree
  with the rules in force (GX ``row_condition``).

Cost
- ``import great_expectations`` takes several seconds, so it happens lazily on the first
  validation, once per process; the ephemeral context, its pandas data source and the suites are
  cached (suites per table and spec tuple). A lock serialises use of the shared GX context, which is
  not documented as thread-safe.
- Only the columns the suite references are converted to pandas, with Arrow-backed dtypes where GX
  handles them, to keep the copy of a large partition small (see ``_to_pandas``).
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from contracts import Table
from quality.rules import DEFAULT_RULES, QualityRules

#: default ceiling of the soft "share of rows flagged anomaly" expectation on silver tables
DEFAULT_MAX_ANOMALY_SHARE = 0.05
#: default ceiling of the soft "share of rows outside a warning band" expectations
DEFAULT_MAX_WARNING_SHARE = 0.05


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation, as plain data (hashable, so suites can be cached by their specs).

    ``expectation`` is the GX 1.x class name in ``great_expectations.expectations``; ``params`` are
    its keyword arguments besides the column(s), as sorted (name, value) pairs with tuples instead of
    lists (hashable). ``name`` is stable and unique within a suite, e.g. ``voltage:between``; the
    outcome of each expectation is reported under it.
    """

    name: str
    expectation: str
    columns: tuple[str, ...]
    blocking: bool
    params: tuple[tuple[str, Any], ...] = ()
    description: str = ""
    #: columns a ``row_condition`` in ``params`` reads (converted to pandas with ``columns``)
    condition_columns: tuple[str, ...] = ()

    @property
    def referenced_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.columns + self.condition_columns))

    def gx_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the GX expectation class."""
        kw: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}
        if self.expectation in _MULTI_COLUMN:
            kw["column_list"] = list(self.columns)
        else:
            if len(self.columns) != 1:
                raise ValueError(f"expectation {self.name}: {self.expectation} takes one column, got {self.columns}")
            kw["column"] = self.columns[0]
        return kw

    def to_gx(self) -> Any:
        """Build the GX expectation object (imports great_expectations: call lazily)."""
        import great_expectations.expectations as gxe

        try:
            cls = getattr(gxe, self.expectation)
        except AttributeError:
            raise ValueError(f"expectation {self.name}: GX has no expectation class {self.expectation!r}") from None
        return cls(**self.gx_kwargs(), meta={"gridlake_spec": self.name, "blocking": self.blocking})


_MULTI_COLUMN = {"ExpectCompoundColumnsToBeUnique", "ExpectMulticolumnValuesToBeUnique"}


def _params(**kw: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in kw.items() if v is not None))


# ------------------------------------------------------------------------------------------ suites


def _soft_rule_specs(table: Table, rules: QualityRules, max_warning_share: float) -> list[ExpectationSpec]:
    """Soft expectations that reuse the numbers of ``quality.rules`` (silver tables only).

    Two kinds:
    - ``<column>:warning_band_share``: at most ``max_warning_share`` of the rows outside a warning
      band (a feeder with many low-voltage readings is worth a look, not a stopped pipeline);
    - ``quality_flag:<rule>_rule``: rows that meet a rule's condition carry the flag the rule gives
      (GX ``row_condition``), i.e. the flags in silver agree with the rules in force. They are soft
      because a partition written under older rule settings legitimately disagrees.
    The meter 'anomaly' rule (3x the meter's mean in the partition) needs a group mean, which a
    row condition cannot express; it is not cross-checked here.
    """
    mostly = round(1.0 - max_warning_share, 10)
    specs: list[ExpectationSpec] = []

    def band(col: str, lo: float | None, hi: float | None, why: str) -> None:
        specs.append(
            ExpectationSpec(
                f"{col}:warning_band_share",
                "ExpectColumnValuesToBeBetween",
                (col,),
                False,
                _params(min_value=lo, max_value=hi, mostly=mostly),
                f"at most {max_warning_share:.0%} of rows {why} (quality.rules warning band)",
            )
        )

    def flag_rule(rule: str, condition: str, columns: tuple[str, ...], flags: tuple[str, ...], why: str) -> None:
        """Rows matching ``condition`` (pandas query syntax) must carry one of ``flags``."""
        specs.append(
            ExpectationSpec(
                f"quality_flag:{rule}_rule",
                "ExpectColumnValuesToBeInSet",
                ("quality_flag",),
                False,
                _params(value_set=flags, row_condition=condition, condition_parser="pandas"),
                why,
                condition_columns=columns,
            )
        )

    not_ok = ("warning", "anomaly")
    if table.name == "silver_meter_readings":
        m = rules.meter
        band(
            "voltage",
            m.warn_voltage_low,
            m.warn_voltage_high,
            f"outside {m.warn_voltage_low:g}-{m.warn_voltage_high:g} V",
        )
        flag_rule(
            "voltage",
            f"voltage < {m.warn_voltage_low!r} or voltage > {m.warn_voltage_high!r}",
            ("voltage",),
            not_ok,
            "readings outside the voltage warning band are not flagged ok",
        )
    elif table.name == "silver_scada":
        s = rules.scada
        band("hot_spot_temp_c", None, s.warn_hot_spot_c, f"with hot-spot above {s.warn_hot_spot_c:g} degC")
        band(
            "frequency_hz",
            s.warn_frequency_low,
            s.warn_frequency_high,
            f"with frequency outside {s.warn_frequency_low:g}-{s.warn_frequency_high:g} Hz",
        )
        flag_rule(
            "hot_spot_anomaly",
            f"hot_spot_temp_c > {s.anomaly_hot_spot_c!r}",
            ("hot_spot_temp_c",),
            ("anomaly",),
            f"samples with hot-spot above {s.anomaly_hot_spot_c:g} degC are flagged anomaly",
        )
        flag_rule(
            "scada_warning",
            f"hot_spot_temp_c > {s.warn_hot_spot_c!r} or frequency_hz < {s.warn_frequency_low!r} "
            f"or frequency_hz > {s.warn_frequency_high!r}",
            ("hot_spot_temp_c", "frequency_hz"),
            not_ok,
            "samples breaking the hot-spot or frequency warning limits are not flagged ok",
        )
    elif table.name == "silver_incidents":
        flag_rule(
            "incident_times",
            "end_time < start_time",
            ("end_time", "start_time"),
            not_ok,
            "work orders ending before they start are not flagged ok",
        )
    elif table.name in ("silver_weather", "silver_weather_forecast"):
        w = rules.weather
        flag_rule(
            "dhi_over_ghi",
            f"dhi_wm2 > ghi_wm2 + {w.warn_dhi_over_ghi_wm2!r}",
            ("dhi_wm2", "ghi_wm2"),
            not_ok,
            f"observations with DHI above GHI + {w.warn_dhi_over_ghi_wm2:g} W/m2 are not flagged ok",
        )
        if table.name == "silver_weather_forecast":
            flag_rule(
                "analysis_hour",
                "valid_at < issued_at",
                ("valid_at", "issued_at"),
                not_ok,
                "forecast hours valid before their issue was published (analysis hours) are not flagged ok",
            )
    return specs


def suite_for(
    table: Table,
    rules: QualityRules = DEFAULT_RULES,
    *,
    max_anomaly_share: float = DEFAULT_MAX_ANOMALY_SHARE,
    max_warning_share: float = DEFAULT_MAX_WARNING_SHARE,
) -> list[ExpectationSpec]:
    """The expectation suite of ``table``, derived only from its declaration (and ``rules``).

    Blocking: not-null for every non-nullable column, between for bounded columns, in-set for
    columns with ``allowed`` values, and uniqueness of the key. The key is checked together with
    the partition columns (e.g. ``date`` + ``feeder_id``): a key like gold_grid_health_daily's
    ``feeder_id`` is only unique within a day, and for keys that already determine the partition
    (``meter_id`` + ``reading_time``) adding the day changes nothing.

    Soft (silver only): the share of ``quality_flag == 'anomaly'`` stays under
    ``max_anomaly_share``, the share of rows outside the rules' warning bands stays under
    ``max_warning_share``, and rows meeting a rule's condition carry its flag
    (see ``_soft_rule_specs``).
    """
    for share, what in ((max_anomaly_share, "max_anomaly_share"), (max_warning_share, "max_warning_share")):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{what} must be a fraction in [0, 1], got {share}")
    specs: list[ExpectationSpec] = []
    for c in table.columns:
        if not c.nullable:
            specs.append(
                ExpectationSpec(
                    f"{c.name}:not_null",
                    "ExpectColumnValuesToNotBeNull",
                    (c.name,),
                    True,
                    description=f"{c.name} is required",
                )
            )
        if c.min is not None or c.max is not None:
            specs.append(
                ExpectationSpec(
                    f"{c.name}:between",
                    "ExpectColumnValuesToBeBetween",
                    (c.name,),
                    True,
                    _params(min_value=c.min, max_value=c.max),
                    f"{c.name} within its hard bounds [{c.min}, {c.max}]",
                )
            )
        if c.allowed is not None:
            specs.append(
                ExpectationSpec(
                    f"{c.name}:in_set",
                    "ExpectColumnValuesToBeInSet",
                    (c.name,),
                    True,
                    _params(value_set=tuple(c.allowed)),
                    f"{c.name} is one of {', '.join(c.allowed)}",
                )
            )
    if table.key:
        key = tuple(dict.fromkeys(table.partition_by + table.key))
        if len(key) == 1:
            specs.append(
                ExpectationSpec(
                    "key:unique", "ExpectColumnValuesToBeUnique", key, True, description=f"{key[0]} is unique"
                )
            )
        else:
            specs.append(
                ExpectationSpec(
                    "key:unique",
                    "ExpectCompoundColumnsToBeUnique",
                    key,
                    True,
                    description=f"({', '.join(key)}) is unique",
                )
            )
    if table.layer == "silver" and "quality_flag" in table.column_names:
        specs.append(
            ExpectationSpec(
                "quality_flag:anomaly_share",
                "ExpectColumnValuesToNotBeInSet",
                ("quality_flag",),
                False,
                _params(value_set=("anomaly",), mostly=round(1.0 - max_anomaly_share, 10)),
                f"at most {max_anomaly_share:.0%} of rows flagged anomaly",
            )
        )
        specs.extend(_soft_rule_specs(table, rules, max_warning_share))
    names = [s.name for s in specs]
    assert len(names) == len(set(names)), f"duplicate expectation names in suite of {table.name}: {names}"
    return specs


# ------------------------------------------------------------------------------------------ outcomes


@dataclass
class ExpectationOutcome:
    """The result of one expectation, JSON-serialisable."""

    name: str
    expectation: str
    columns: list[str]
    blocking: bool
    success: bool
    unexpected_count: int | None
    #: percent of the non-null rows that broke the expectation (GX's ``unexpected_percent``)
    unexpected_percent: float | None
    #: a few failing values (GX ``partial_unexpected_list``); dicts for multi-column expectations
    examples: list[Any] = field(default_factory=list)
    #: 0-based row positions of those examples in the validated frame
    example_rows: list[int] = field(default_factory=list)
    description: str = ""
    #: set when GX raised while evaluating the expectation (counted as a failure)
    error: str | None = None


@dataclass
class ValidationOutcome:
    """The result of validating one frame against one suite, JSON-serialisable (``to_dict``)."""

    table: str
    success: bool
    blocking_success: bool
    n_rows: int
    results: list[ExpectationOutcome]
    seconds: float

    @classmethod
    def of(cls, table: str, n_rows: int, results: list[ExpectationOutcome], t0: float) -> ValidationOutcome:
        """The outcome of ``results`` (one per expectation), timed from ``time.perf_counter()`` value ``t0``."""
        return cls(
            table=table,
            success=all(o.success for o in results),
            blocking_success=all(o.success for o in results if o.blocking),
            n_rows=n_rows,
            results=results,
            seconds=round(time.perf_counter() - t0, 3),
        )

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success]

    @property
    def blocking_failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if r.blocking and not r.success]

    def result(self, name: str) -> ExpectationOutcome:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(
            f"no expectation {name!r} in the outcome for {self.table}; have {[r.name for r in self.results]}"
        )

    def summary(self) -> str:
        """One line for logs and check descriptions."""
        if self.success:
            return f"{self.table}: all {len(self.results)} expectations passed on {self.n_rows} rows"
        parts = [
            f"{r.name} ({'blocking' if r.blocking else 'soft'}: {r.unexpected_count} unexpected)"
            if r.error is None
            else f"{r.name} (error: {r.error})"
            for r in self.failures
        ]
        return (
            f"{self.table}: {len(parts)} of {len(self.results)} expectations failed on {self.n_rows} rows: "
            + ", ".join(parts)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check_metadata(self) -> dict[str, Any]:
        """A compact, JSON-ready dict for Dagster asset-check metadata (plain values only).

        Top-level numbers and name lists show up as separate entries in the Dagster UI; the
        per-expectation details (counts, percents, examples, errors) are under ``expectations``.
        """
        return {
            "n_rows": self.n_rows,
            "seconds": self.seconds,
            "blocking_failures": [r.name for r in self.blocking_failures],
            "soft_failures": [r.name for r in self.failures if not r.blocking],
            "expectations": {
                r.name: {
                    k: v
                    for k, v in asdict(r).items()
                    if k in ("success", "blocking", "unexpected_count", "unexpected_percent", "examples", "error")
                    and (v not in (None, []) or k in ("success", "blocking"))
                }
                for r in self.results
            },
        }


def _jsonable(v: Any) -> Any:
    """Turn GX/pandas/numpy values into JSON types (timestamps as ISO text, NaN as None)."""
    if v is None or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (dt.datetime, dt.date, dt.time)):  # includes pandas.Timestamp
        return v.isoformat()
    try:
        import pandas as pd

        if v is pd.NaT or (pd.api.types.is_scalar(v) and pd.isna(v)):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item"):  # numpy / arrow scalars
        try:
            return _jsonable(v.item())
        except (TypeError, ValueError):
            pass
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def _gx_error(info: Any) -> str | None:
    """The message of an exception GX caught while computing an expectation's metrics, if any.

    GX 1.x reports it either flat (``{"raised_exception": True, "exception_message": ...}``) or
    nested per metric (``{"MetricConfigurationID(...)": {...}}``); both shapes are handled.
    """
    if not isinstance(info, dict) or not info:
        return None
    if "raised_exception" in info:
        if info.get("raised_exception"):
            return str(info.get("exception_message") or "GX raised while evaluating the expectation")
        return None
    for metric, sub in info.items():
        msg = _gx_error(sub)
        if msg:
            return f"{msg} (metric {metric})"
    return None


# ------------------------------------------------------------------------------------------ GX runtime

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}
_SUITES: dict[tuple[str, tuple[ExpectationSpec, ...]], Any] = {}


def _batch_definition(table_name: str) -> Any:
    """The cached whole-dataframe batch definition of ``table_name`` (caller holds ``_LOCK``)."""
    if "context" not in _STATE:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx = gx.get_context(mode="ephemeral")
        # tqdm bars on every validation only clutter Dagster logs
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        _STATE["context"] = ctx
        _STATE["source"] = ctx.data_sources.add_pandas("gridlake")
        _STATE["batch_definitions"] = {}
    defs: dict[str, Any] = _STATE["batch_definitions"]
    if table_name not in defs:
        asset = _STATE["source"].add_dataframe_asset(table_name)
        defs[table_name] = asset.add_batch_definition_whole_dataframe("whole_partition")
    return defs[table_name]


def _suite(table_name: str, specs: tuple[ExpectationSpec, ...]) -> Any:
    """The cached GX ExpectationSuite for these specs (caller holds ``_LOCK``)."""
    key = (table_name, specs)
    if key not in _SUITES:
        import great_expectations as gx

        suite = gx.ExpectationSuite(name=f"{table_name}_{len(_SUITES)}")
        for s in specs:
            suite.add_expectation(s.to_gx())
        _SUITES[key] = suite
    return _SUITES[key]


def _to_pandas(df: pl.DataFrame) -> Any:
    """Convert the (already column-pruned) frame to pandas for GX's pandas engine.

    Text and date columns stay Arrow-backed (``pd.ArrowDtype``): no Python object per cell. On a
    500k-row meter partition the pandas copy shrinks from ~130 MB to ~55 MB and the validation
    runs ~25 % faster (GX's null check on object strings alone took ~0.6 s).
    Numeric and timestamp columns become NumPy dtypes on purpose: there GX/pandas treat a float NaN
    as missing, so a NaN measure fails its not-null expectation (an Arrow-backed float would hide
    NaN from the null check).
    """
    import pandas as pd
    import pyarrow as pa

    def mapper(t: pa.DataType) -> Any:
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_date(t):
            return pd.ArrowDtype(t)
        return None

    return df.to_arrow().to_pandas(types_mapper=mapper)


def validate_frame(
    table: Table,
    df: pl.DataFrame,
    specs: Sequence[ExpectationSpec] | None = None,
    max_examples: int = 5,
) -> ValidationOutcome:
    """Validate one partition (or any frame) of ``table`` with great-expectations.

    ``specs`` defaults to ``suite_for(table)``. Only the referenced columns are converted to
    pandas. ``success`` is True when every expectation passed; ``blocking_success`` when every
    blocking one did (soft failures are warnings). A frame lacking a declared column (or a column a
    custom spec references) raises ValueError naming the table and the columns: that is a schema
    problem, not a data-quality result.
    """
    if max_examples < 0:
        raise ValueError(f"max_examples must be >= 0, got {max_examples}")
    specs_t = tuple(suite_for(table) if specs is None else specs)
    missing = [c for c in table.column_names if c not in df.columns]
    needed = list(dict.fromkeys(c for s in specs_t for c in s.referenced_columns))
    missing += [c for c in needed if c not in df.columns and c not in missing]
    if missing:
        raise ValueError(f"table {table.name}: frame lacks declared column(s) {missing}; it has {df.columns}")
    names = [s.name for s in specs_t]
    if len(names) != len(set(names)):
        raise ValueError(f"table {table.name}: expectation names must be unique, got {names}")

    t0 = time.perf_counter()
    pdf = _to_pandas(df.select(needed))
    by_name = {s.name: s for s in specs_t}
    with _LOCK:
        batch = _batch_definition(table.name).get_batch(batch_parameters={"dataframe": pdf})
        suite = _suite(table.name, specs_t)
        res = batch.validate(
            suite,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": max(max_examples, 1)},
        )
    del pdf, batch

    outcomes: list[ExpectationOutcome] = []
    for r in res.results:
        spec = by_name[r.expectation_config.meta["gridlake_spec"]]
        result = r.result or {}
        error = _gx_error(r.exception_info)
        outcomes.append(
            ExpectationOutcome(
                name=spec.name,
                expectation=spec.expectation,
                columns=list(spec.columns),
                blocking=spec.blocking,
                success=bool(r.success) and error is None,
                unexpected_count=_jsonable(result.get("unexpected_count")),
                unexpected_percent=_jsonable(result.get("unexpected_percent")),
                examples=_jsonable(list(result.get("partial_unexpected_list") or [])[:max_examples]),
                example_rows=_jsonable(list(result.get("partial_unexpected_index_list") or [])[:max_examples]),
                description=spec.description,
                error=error,
            )
        )
    order = {n: i for i, n in enumerate(names)}
    outcomes.sort(key=lambda o: order[o.name])
    return ValidationOutcome.of(table.name, df.height, outcomes, t0)
