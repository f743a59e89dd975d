"""The great-expectations suite of a table evaluated in polars: a backfill's per-day screen.

Why this module exists
- ``quality.expectations.validate_frame`` runs a table's GX suite on one partition. GX's cost is
  mostly fixed per call (building the metric graph of ~15-25 expectations in Python: ~0.2-0.3 s CPU
  even on an empty frame) plus pandas work that grows with the rows; a year's backfill calls it
  365 x 5 times (four silver tables and gold_load_hourly), which alone is ~20 minutes of CPU on this
  machine (docs/DECISIONS.md, "Year backfill").
- :func:`evaluate_suite` evaluates the **same** ``ExpectationSpec`` list (``quality.expectations.suite_for``:
  the declarations of ``contracts`` and the thresholds of ``quality.rules``) with polars expressions,
  in one query per frame, and returns the same ``ValidationOutcome`` GX's path returns: success,
  unexpected count and percent and a few unexpected values per expectation, with GX's semantics
  (NaN counts as missing, nulls are skipped by value expectations, ``mostly`` on the non-null
  share, ``row_condition`` filters first, compound keys count every copy of a repeated key).
  tests/quality/test_suite_polars.py checks the two engines agree on clean and broken frames.

What GX still runs (assets.ingestion.gx_checks): every single-day run as before, and in a backfill
range the days the polars screen finds a failing expectation (GX's own report for them) plus the
range's last day, whose two outcomes must agree expectation by expectation (a live cross-check of the
engines on real data; disagreement fails the blocking check). Library code: no dagster import.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import polars as pl

from contracts import Table
from quality.expectations import ExpectationOutcome, ExpectationSpec, ValidationOutcome, _jsonable, suite_for

#: the expectation classes evaluated here; a suite with any other falls back to GX
SUPPORTED = frozenset(
    {
        "ExpectColumnValuesToNotBeNull",
        "ExpectColumnValuesToBeBetween",
        "ExpectColumnValuesToBeInSet",
        "ExpectColumnValuesToNotBeInSet",
        "ExpectColumnValuesToBeUnique",
        "ExpectCompoundColumnsToBeUnique",
    }
)


def supported(specs: Sequence[ExpectationSpec]) -> bool:
    """True if every spec is one :func:`evaluate_suite` evaluates (else validate with GX)."""
    return all(
        s.expectation in SUPPORTED and set(dict(s.params)) <= {"min_value", "max_value", "mostly", "value_set", "row_condition", "condition_parser"}
        and dict(s.params).get("condition_parser", "pandas") == "pandas"
        for s in specs
    )  # fmt: skip


def _missing(col: str) -> pl.Expr:
    """Missing as pandas sees it (the frame's float NaN are nulls by now: see ``_as_pandas_sees_it``)."""
    return pl.col(col).is_null()


def _as_pandas_sees_it(df: pl.DataFrame) -> pl.DataFrame:
    """Float NaN as null: pandas (hence GX) treats NaN as missing, and ``DataFrame.query`` compares it as
    false, where polars orders NaN above every number."""
    floats = [c for c, t in df.schema.items() if t.is_float()]
    return df.with_columns(pl.col(floats).fill_nan(None)) if floats else df


def _condition(cond: str) -> pl.Expr:
    """A GX pandas ``row_condition`` (``a < 1.0 or b > c + 2.0``: comparisons, ``and``/``or``, arithmetic)
    as a polars expression; a missing operand makes the comparison false, as in ``DataFrame.query``."""
    return pl.sql_expr(cond).fill_null(False)


def _spec_exprs(df: pl.DataFrame, s: ExpectationSpec, i: int) -> tuple[list[pl.Expr], pl.Expr, pl.Expr | None]:
    """(aggregations, unexpected-row mask, row filter) of spec ``i``: the aggregations give its element count
    ``_n{i}`` (rows it considers, after its row condition and, for value expectations, non-missing) and its
    unexpected count ``_u{i}``."""
    p = dict(s.params)
    cond = _condition(p["row_condition"]) if "row_condition" in p else None
    scope = cond if cond is not None else pl.lit(True)
    if s.expectation == "ExpectColumnValuesToNotBeNull":
        bad = scope & _missing(s.columns[0])
        n = cond.sum() if cond is not None else pl.len()
        return [n.alias(f"_n{i}"), bad.sum().alias(f"_u{i}")], bad, cond
    if s.expectation in ("ExpectColumnValuesToBeUnique", "ExpectCompoundColumnsToBeUnique"):
        cols = list(s.columns)
        if s.expectation == "ExpectColumnValuesToBeUnique":
            present = scope & ~_missing(cols[0])
        else:  # GX ignores a row only when all of its key columns are missing
            present = scope & ~pl.all_horizontal([_missing(c) for c in cols])
        key = pl.col(cols[0]) if len(cols) == 1 else pl.struct(cols)
        # GX counts duplicates among the rows it considers (pandas duplicated(keep=False) on them)
        bad = present & key.is_duplicated()
        return [present.sum().alias(f"_n{i}"), bad.sum().alias(f"_u{i}")], bad, cond
    col = s.columns[0]
    present = scope & ~_missing(col)
    v = pl.col(col)
    if s.expectation == "ExpectColumnValuesToBeBetween":
        out = pl.lit(False)
        if p.get("min_value") is not None:
            out = out | (v < p["min_value"])
        if p.get("max_value") is not None:
            out = out | (v > p["max_value"])
    elif s.expectation == "ExpectColumnValuesToBeInSet":
        out = ~v.is_in(list(p["value_set"]))
    elif s.expectation == "ExpectColumnValuesToNotBeInSet":
        out = v.is_in(list(p["value_set"]))
    else:  # pragma: no cover - guarded by supported()
        raise ValueError(f"{s.name}: {s.expectation} is not evaluated in polars")
    bad = present & out.fill_null(False)
    return [present.sum().alias(f"_n{i}"), bad.sum().alias(f"_u{i}")], bad, cond


def evaluate_suite(
    table: Table,
    df: pl.DataFrame,
    specs: Sequence[ExpectationSpec] | None = None,
    max_examples: int = 5,
) -> ValidationOutcome:
    """``validate_frame(table, df, specs)``'s outcome, computed with polars (see the module doc).

    One query counts every expectation; the unexpected values are only collected for expectations
    that failed or have unexpected rows. Raises ValueError like ``validate_frame`` for a frame lacking a
    declared column, and for a suite with an expectation class not evaluated here (see :func:`supported`).
    """
    specs_t = tuple(suite_for(table) if specs is None else specs)
    missing = [c for c in table.column_names if c not in df.columns]
    needed = list(dict.fromkeys(c for s in specs_t for c in s.referenced_columns))
    missing += [c for c in needed if c not in df.columns and c not in missing]
    if missing:
        raise ValueError(f"table {table.name}: frame lacks declared column(s) {missing}; it has {df.columns}")
    if not supported(specs_t):
        raise ValueError(f"table {table.name}: suite has expectations not evaluated in polars: use validate_frame")
    t0 = time.perf_counter()
    df = _as_pandas_sees_it(df.select(needed))
    parts = [_spec_exprs(df, s, i) for i, s in enumerate(specs_t)]
    counts = df.select([a for aggs, _, _ in parts for a in aggs]).row(0, named=True) if specs_t else {}
    outcomes = []
    for i, (s, (_, bad, _)) in enumerate(zip(specs_t, parts)):
        n, u = int(counts[f"_n{i}"] or 0), int(counts[f"_u{i}"] or 0)
        mostly = dict(s.params).get("mostly", 1.0)
        # GX: a vacuous expectation (no row in scope) succeeds; its percent is then undefined
        pct = (100.0 * u / n) if n else None
        success = True if n == 0 else ((n - u) / n >= mostly if mostly < 1.0 else u == 0)
        examples: list[Any] = []
        if u and max_examples:
            rows = (
                df.select(bad.alias("_bad"), *[pl.col(c) for c in s.columns]).filter(pl.col("_bad")).head(max_examples)
            )
            if len(s.columns) > 1:
                examples = [{c: r[c] for c in s.columns} for r in rows.iter_rows(named=True)]
            else:
                examples = rows[s.columns[0]].to_list()
        outcomes.append(
            ExpectationOutcome(
                name=s.name,
                expectation=s.expectation,
                columns=list(s.columns),
                blocking=s.blocking,
                success=success,
                unexpected_count=u,
                unexpected_percent=pct,
                examples=_jsonable([None if isinstance(x, float) and math.isnan(x) else x for x in examples]),
                example_rows=[],
                description=s.description,
            )
        )
    return ValidationOutcome.of(table.name, df.height, outcomes, t0)


def disagreements(a: ValidationOutcome, b: ValidationOutcome) -> list[str]:
    """Expectations whose success or unexpected count differs between two outcomes of the same suite."""
    bb = {r.name: r for r in b.results}
    out = []
    for r in a.results:
        o = bb.get(r.name)
        if (
            o is None
            or o.success != r.success
            or (o.error is None and r.error is None and o.unexpected_count != r.unexpected_count)
        ):
            out.append(r.name)
    return out  # fmt: skip


__all__ = ["SUPPORTED", "disagreements", "evaluate_suite", "supported"]
