"""Pyomo model -> HiGHS, fast: the one solve path every gridlake model uses.

Why not ``pyo.SolverFactory("highs")`` / appsi? Measured on this machine for the one-year battery LP
(35,040 quarter-hours, 105k columns): HiGHS itself needs ~2.5 s, but the persistent interfaces spend
~10 s *before* HiGHS starts, walking every constraint with ``generate_standard_repn`` and recording
mutable-parameter bookkeeping row by row, then another pass loading 105k values back into pyomo
variables. Model construction added ~2 s on top, mostly garbage-collector passes triggered by the
hundreds of thousands of small expression objects, plus pyomo ``Param`` lookups in expressions.

The fix, all inside pyomo's public/experimental machinery:

1. build under :class:`pyomo.common.gc_manager.PauseGC` (the writers already do this internally);
2. declare large time-indexed constraints as *templates* (:func:`templated_constraints`): pyomo
   stores one expression per constraint family instead of 35k, and the standard-form compiler
   expands it with generated code (pyomo's ``TEMPLATIZE_CONSTRAINTS`` switch, toggled only for
   the duration of a ``with`` block);
3. write big objectives as a single ``LinearExpression`` from coefficient/variable lists;
4. compile the whole model at once with pyomo's ``LinearStandardFormCompiler`` (``mixed_form``:
   scipy CSC matrix + row senses) and hand the arrays to ``highspy`` with one ``passModel`` call;
5. read the solution back as numpy arrays per indexed component (no per-variable ``set_value``).

A quadratic objective (DC-OPF generator costs) is split off: the constraints go through the
compiler, the objective through ``generate_standard_repn(quadratic=True)`` into a HiGHS Hessian.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import highspy
import numpy as np
import pyomo.core.base.constraint as _pyomo_constraint
import pyomo.environ as pyo
from pyomo.common.gc_manager import PauseGC
from pyomo.core.expr.numeric_expr import LinearExpression
from pyomo.repn import generate_standard_repn
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from optimization.errors import InfeasibleError, InputError

INF = highspy.kHighsInf
#: seconds the elastic LP of :func:`diagnose_infeasibility` may take before the diagnosis gives up
DIAGNOSIS_TIME_LIMIT_S = 30.0
log = logging.getLogger(__name__)

__all__ = [
    "CompiledModel",
    "Solution",
    "add_constraint",
    "linear_sum",
    "paused_gc",
    "solve",
    "templated_constraints",
]


@contextlib.contextmanager
def templated_constraints() -> Iterator[None]:
    """Within this block, indexed ``Constraint(rule=...)`` families are stored as one template.

    The switch is a pyomo module global: do not build models in several *threads* of one process
    at once (Dagster's default multiprocess executor is fine).
    Rules must take their data from ``Param`` components or constants. Use :func:`add_constraint`
    for rules that may not be template-compatible (a Python ``if`` on the index, numpy indexing):
    it retries them with ordinary construction.
    """
    old = _pyomo_constraint.TEMPLATIZE_CONSTRAINTS
    _pyomo_constraint.TEMPLATIZE_CONSTRAINTS = True
    try:
        yield
    finally:
        _pyomo_constraint.TEMPLATIZE_CONSTRAINTS = old


def add_constraint(block: Any, name: str, index: Any, rule: Any, doc: str = "") -> Any:
    """Add an indexed constraint family, templated when pyomo can template the rule.

    pyomo's template construction only falls back by itself for some rules; a rule with a Python
    ``if`` on the index raises instead. Here any failure to templatise is retried as ordinary
    per-index construction (quietly: pyomo logs the first attempt's error), so callers never
    have to know which rules are template-compatible; they only get faster when they are.
    """
    from pyomo.common.log import LoggingIntercept

    try:
        with templated_constraints(), LoggingIntercept(level=logging.ERROR, module="pyomo.core"):
            block.add_component(name, pyo.Constraint(index, rule=rule, doc=doc))
    except Exception:
        if block.component(name) is not None:
            block.del_component(name)
        block.add_component(name, pyo.Constraint(index, rule=rule, doc=doc))
    return block.component(name)


def paused_gc() -> PauseGC:
    """Pause the cyclic GC while building a large model (each pass walks every live object)."""
    return PauseGC()


def linear_sum(coefs: Iterable[float], variables: Iterable[Any], constant: float = 0.0) -> LinearExpression:
    """One flat ``LinearExpression``: far cheaper to build and compile than ``sum(c * x)``."""
    return LinearExpression(
        constant=float(constant),
        linear_coefs=[float(c) for c in coefs],
        linear_vars=list(variables),
    )


@dataclass
class Solution:
    """A solved model's numbers, addressed by pyomo component (values in ``component.values()`` order)."""

    status: str
    objective: float
    solve_seconds: float
    mip_gap: float | None
    _x: np.ndarray = field(repr=False)
    _row_dual: np.ndarray | None = field(repr=False)
    _col_of: dict[int, int] = field(repr=False)
    _row_of: dict[int, int] = field(repr=False)
    _dual_sign: float = field(repr=False, default=1.0)

    def values(self, var: Any) -> np.ndarray:
        """Primal values of an indexed ``Var`` (or one ``VarData``) as a float array.

        Fixed variables report their fixed value. A variable the compiler dropped (it appears in no
        constraint and not in the objective) is free and costless; it is reported at the point of
        its bounds nearest zero.
        """
        datas = list(_members(var).values())
        get = self._col_of.get
        idx = np.fromiter((get(i, -1) for i in map(id, datas)), dtype=np.int64, count=len(datas))
        out = self._x[idx]
        for k in np.flatnonzero(idx < 0):
            v = datas[k]
            if v.fixed:
                out[k] = v.value
            else:
                lb, ub = v.bounds
                out[k] = min(max(0.0, lb if lb is not None else -np.inf), ub if ub is not None else np.inf)
        return out

    def duals(self, con: Any) -> np.ndarray:
        """Marginal value of each constraint's bound: d(objective) / d(right-hand side).

        For an equality ``generation - flows == demand`` this is the locational marginal price.
        Sign follows the model's own sense (a maximisation reports d(max objective)/d(rhs)).
        """
        if self._row_dual is None:
            raise ValueError("duals are only available for continuous problems (LP/QP), not MILPs")
        datas = list(con.values()) if con.is_indexed() else [con]
        out = np.full(len(datas), np.nan)
        for k, c in enumerate(datas):
            i = self._row_of.get(id(c))
            if i is not None:
                out[k] = self._dual_sign * self._row_dual[i]
        return out


class CompiledModel:
    """A pyomo model compiled once to CSC matrices and loaded into a ``highspy.Highs`` instance.

    Keep the object to re-solve after changing right-hand sides (:meth:`set_bounds`), e.g. a
    sweep over a site power limit, without rebuilding anything; HiGHS warm-starts from the last basis.
    """

    def __init__(self, model: pyo.ConcreteModel) -> None:
        objectives = list(model.component_data_objects(pyo.Objective, active=True))
        if len(objectives) != 1:
            raise InputError(f"model {model.name!r} must have exactly one active objective, has {len(objectives)}")
        obj = objectives[0]
        self.model = model
        self.sense = obj.sense
        sign = 1.0 if self.sense == pyo.minimize else -1.0
        expr = obj.expr
        hessian = None
        with PauseGC():
            # The objective is taken apart here rather than by the compiler: a flat LinearExpression
            # already holds its coefficient and variable lists (walking 70k terms through the
            # compiler's visitor costs ~0.2 s), and HiGHS wants quadratic terms as a Hessian.
            if isinstance(expr, LinearExpression):
                lin_vars, lin_coefs, constant, repn = expr.linear_vars, expr.linear_coefs, expr.constant, None
            elif _is_quadratic(obj):
                repn = generate_standard_repn(expr, quadratic=True, compute_values=True)
                lin_vars, lin_coefs, constant = repn.linear_vars, repn.linear_coefs, repn.constant
            else:
                repn = generate_standard_repn(expr, quadratic=False, compute_values=True)
                if repn.nonlinear_expr is not None:
                    raise InputError(f"model {model.name!r}: objective is neither linear nor quadratic")
                lin_vars, lin_coefs, constant = repn.linear_vars, repn.linear_coefs, repn.constant
            try:
                fast = _fast_standard_form(model)
            except _NotVectorisable as exc:
                log.debug("model %r: pyomo standard-form compiler (%s)", model.name, exc)
                fast = None
            if fast is not None:
                A, columns, col_of = fast["A"], fast["columns"], fast["col_of"]
                row_lo, row_hi, row_cons = fast["row_lower"], fast["row_upper"], fast["row_cons"]
            else:
                obj.deactivate()
                try:
                    info = LinearStandardFormCompiler().write(model, mixed_form=True)
                finally:
                    obj.activate()
                A = info.A
                columns = list(info.columns)
                col_of = dict(zip(map(id, columns), range(len(columns))))
                rows = info.rows
                rhs = np.asarray(info.rhs, dtype=float)
                kinds = np.fromiter((r.bound_type for r in rows), dtype=np.int8, count=len(rows))
                row_lo = np.where(kinds == 1, -INF, rhs)
                row_hi = np.where(kinds == -1, INF, rhs)
                row_cons = list(map(_CON, rows))
            n_rows = A.shape[0]
            offset = sign * float(pyo.value(constant))
            # objective-only variables become columns too; fixed ones move to the offset
            quad_vars = (
                [w for pair in repn.quadratic_vars for w in pair] if repn is not None and repn.quadratic_vars else []
            )
            for v in itertools.chain(lin_vars, quad_vars):
                if id(v) not in col_of:
                    if v.fixed:
                        continue
                    col_of[id(v)] = len(columns)
                    columns.append(v)
            if len(columns) > A.shape[1]:
                import scipy.sparse as sp

                A = sp.hstack([A, sp.csc_array((n_rows, len(columns) - A.shape[1]))], format="csc")
            if fast is None:
                # declaration order of the variables (the order a hand-written matrix model would
                # use), not the order the compiler happened to meet them in
                A, columns, col_of = _natural_order(model, A, columns, col_of)
            try:  # plain numbers (the usual case) convert in C; Param/expressions via value()
                coefs = np.asarray(lin_coefs, dtype=float)
            except (TypeError, ValueError):
                coefs = np.fromiter((float(pyo.value(c)) for c in lin_coefs), dtype=float, count=len(lin_coefs))
            idx = np.fromiter(
                map(col_of.get, map(id, lin_vars), itertools.repeat(-1)), dtype=np.int64, count=len(lin_coefs)
            )
            fixed = idx < 0
            if fixed.any():
                offset += sign * float(sum(coefs[k] * lin_vars[k].value for k in np.flatnonzero(fixed)))
            cost = np.zeros(len(columns))
            np.add.at(cost, idx[~fixed], sign * coefs[~fixed])
            if repn is not None and repn.quadratic_vars:
                hessian = _hessian(repn, col_of, len(columns), sign)
            self.columns = columns
            self.col_of = col_of
            # first row wins for ranged constraints (two rows): build the dict from the end
            self.row_of: dict[int, int] = dict(zip(map(id, reversed(row_cons)), range(n_rows - 1, -1, -1)))
            self.row_cons = row_cons
            lb, ub, integer = _column_bounds(columns)
            bad = np.flatnonzero(lb > ub)
            if bad.size:
                names = [columns[j].name for j in bad[:5]]
                raise InfeasibleError(
                    f"variable bounds cross (lower > upper) for {names}",
                    {"variable_bounds": float((lb - ub)[bad].sum())},
                )
        self.A, self.cost, self.offset, self.hessian = A, cost, offset, hessian
        self.col_lower, self.col_upper, self.integer = lb, ub, integer
        self.row_lower, self.row_upper = row_lo, row_hi
        self.is_mip = bool(integer.any())
        self._violations: dict[str, list] = {}
        self.diagnosis_note = ""
        self.highs = self._load()

    def _load(self) -> highspy.Highs:
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        lp = highspy.HighsLp()
        lp.num_col_ = len(self.columns)
        lp.num_row_ = self.A.shape[0]
        lp.col_cost_ = self.cost
        lp.offset_ = self.offset
        lp.col_lower_ = self.col_lower
        lp.col_upper_ = self.col_upper
        lp.row_lower_ = self.row_lower
        lp.row_upper_ = self.row_upper
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = self.A.indptr
        lp.a_matrix_.index_ = self.A.indices
        lp.a_matrix_.value_ = self.A.data
        if self.is_mip:
            lp.integrality_ = [
                highspy.HighsVarType.kInteger if b else highspy.HighsVarType.kContinuous for b in self.integer
            ]
        if self.hessian is not None:
            model = highspy.HighsModel()
            model.lp_ = lp
            model.hessian_ = self.hessian
            status = h.passModel(model)
        else:
            status = h.passModel(lp)
        if status == highspy.HighsStatus.kError:
            raise InputError(
                f"HiGHS rejected model {self.model.name!r} (non-finite coefficient or non-convex objective?)"
            )
        return h

    def set_bounds(self, con: Any, lower: Any = None, upper: Any = None) -> None:
        """Change the bounds of an indexed constraint's rows in place (values in ``con.values()`` order).

        Only constraints compiled to a single row each (equalities or one-sided) are supported.
        """
        datas = list(con.values()) if con.is_indexed() else [con]
        pos = [self.row_of.get(id(c), -1) for c in datas]
        # a constraint without variables (e.g. a period no car is present) has no row: keep only real rows
        keep = np.array([p >= 0 for p in pos], dtype=bool)
        idx = np.array([p for p in pos if p >= 0], dtype=np.int32)
        lo = (
            self.row_lower[idx] if lower is None else np.broadcast_to(np.asarray(lower, float), keep.shape)[keep].copy()
        )
        hi = (
            self.row_upper[idx] if upper is None else np.broadcast_to(np.asarray(upper, float), keep.shape)[keep].copy()
        )
        lo = np.where(np.isfinite(lo), lo, -INF)
        hi = np.where(np.isfinite(hi), hi, INF)
        self.row_lower[idx] = lo
        self.row_upper[idx] = hi
        self.highs.changeRowsBounds(len(idx), idx, lo, hi)

    def solve(
        self,
        *,
        mip_rel_gap: float = 1e-4,
        time_limit: float | None = None,
        options: dict[str, Any] | None = None,
        diagnose: bool = True,
        diagnose_time_limit: float = DIAGNOSIS_TIME_LIMIT_S,
    ) -> Solution:
        """Run HiGHS; raise :class:`InfeasibleError` naming the violated constraint groups if infeasible."""
        h = self.highs
        h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
        if time_limit is not None:
            h.setOptionValue("time_limit", float(time_limit))
        for k, v in (options or {}).items():
            h.setOptionValue(k, v)
        t0 = time.perf_counter()
        h.run()
        seconds = time.perf_counter() - t0
        status = h.getModelStatus()
        info = h.getInfo()
        has_primal = info.primal_solution_status == 2
        if (
            status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible)
            and not has_primal
        ):
            if status == highspy.HighsModelStatus.kUnboundedOrInfeasible:
                # presolve cannot tell which; ask again without it
                h.setOptionValue("presolve", "off")
                h.run()
                h.setOptionValue("presolve", "choose")
                status = h.getModelStatus()
            if status != highspy.HighsModelStatus.kUnbounded:
                if diagnose:
                    groups = diagnose_infeasibility(self, time_limit=diagnose_time_limit)
                    note = self.diagnosis_note
                else:
                    groups, note = {}, "diagnosis switched off"
                raise InfeasibleError(_infeasible_message(self.model, groups, self._violations, note), groups)
        if status == highspy.HighsModelStatus.kUnbounded:
            raise InputError(f"model {self.model.name!r} is unbounded: a cost or limit is missing")
        if not has_primal or (not self.is_mip and status != highspy.HighsModelStatus.kOptimal):
            # an LP/QP stopped early is not a schedule anyone should act on; a MIP stopped at a
            # time limit with an incumbent is, and reports its gap
            raise RuntimeError(
                f"HiGHS did not solve {self.model.name!r} to optimality: {h.modelStatusToString(status)}"
            )
        sol = h.getSolution()
        x = np.asarray(sol.col_value, dtype=float)
        row_dual = None if self.is_mip else np.asarray(sol.row_dual, dtype=float)
        sign = 1.0 if self.sense == pyo.minimize else -1.0
        gap = float(info.mip_gap) if self.is_mip else None
        return Solution(
            status=h.modelStatusToString(status),
            objective=sign * float(info.objective_function_value),
            solve_seconds=seconds,
            mip_gap=gap,
            _x=x,
            _row_dual=row_dual,
            _col_of=self.col_of,
            _row_of=self.row_of,
            _dual_sign=sign,
        )


def solve(model: pyo.ConcreteModel, **kwargs: Any) -> Solution:
    """Compile and solve ``model`` once (see :meth:`CompiledModel.solve` for options)."""
    return CompiledModel(model).solve(**kwargs)


def diagnose_infeasibility(
    cm: CompiledModel, top: int = 5, time_limit: float = DIAGNOSIS_TIME_LIMIT_S
) -> dict[str, float]:
    """Smallest total constraint violation per constraint group (pyomo component name).

    Solves the elastic LP ``min sum(s+ + s-)`` s.t. ``row_lower <= A x + s+ - s- <= row_upper`` with
    the original variable bounds (integrality relaxed). Rows are grouped by the pyomo constraint
    component that owns them, which is how models name their physics ("energy_request",
    "transformer_limit", "power_balance"), so the error says *what* cannot be met, by how much.

    The diagnosis checks itself: it returns ``{}`` and leaves the reason in ``cm.diagnosis_note``
    (the caller then says "could not diagnose") when the elastic LP does not reach optimality
    within ``time_limit`` seconds, or when it finds no violation in a continuous model (HiGHS's
    "infeasible" was then numerical, and naming a group would be made up). Only for a MIP does
    "no violation" mean something: the relaxation is feasible, so ``integrality`` is the cause.
    """
    import scipy.sparse as sp

    cm.diagnosis_note = ""
    cm._violations = {}
    m, n = cm.A.shape
    eye = sp.identity(m, format="csc")
    A = sp.hstack([cm.A, eye, -eye], format="csc")
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    lp = highspy.HighsLp()
    lp.num_col_ = n + 2 * m
    lp.num_row_ = m
    lp.col_cost_ = np.concatenate([np.zeros(n), np.ones(2 * m)])
    lp.col_lower_ = np.concatenate([cm.col_lower, np.zeros(2 * m)])
    lp.col_upper_ = np.concatenate([cm.col_upper, np.full(2 * m, INF)])
    lp.row_lower_ = cm.row_lower
    lp.row_upper_ = cm.row_upper
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr
    lp.a_matrix_.index_ = A.indices
    lp.a_matrix_.value_ = A.data
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        cm.diagnosis_note = (
            f"the elastic LP did not solve ({h.modelStatusToString(status)}, time limit {time_limit:g} s)"
        )
        return {}
    x = np.asarray(h.getSolution().col_value)
    viol = x[n : n + m] + x[n + m :]
    groups: dict[str, float] = {}
    worst: dict[str, list[tuple[float, Any]]] = {}
    for i in np.flatnonzero(viol > 1e-7):
        con = cm.row_cons[i]
        comp = con.parent_component()
        groups[comp.name] = groups.get(comp.name, 0.0) + float(viol[i])
        worst.setdefault(comp.name, []).append((float(viol[i]), con.index()))
    cm._violations = {k: sorted(v, key=lambda t: -t[0])[:top] for k, v in worst.items()}
    if not groups:
        if not cm.is_mip:
            cm.diagnosis_note = (
                "the elastic LP meets every constraint, so the infeasibility HiGHS reported is numerical"
            )
            return {}
        groups["integrality"] = 0.0
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def _infeasible_message(
    model: pyo.ConcreteModel, groups: dict[str, float], worst: dict[str, list] | None = None, note: str = ""
) -> str:
    if not groups:
        return f"model {model.name!r} is infeasible; could not diagnose which constraints cannot be met" + (
            f": {note}" if note else ""
        )
    parts = []
    for name, amount in groups.items():
        comp = model.find_component(name)
        doc = f" ({comp.doc})" if comp is not None and getattr(comp, "doc", None) else ""
        where = ""
        if worst and worst.get(name):
            where = ", worst at index " + ", ".join(f"{idx!r} ({v:.4g})" for v, idx in worst[name][:3])
        parts.append(f"'{name}'{doc} short by {amount:.6g}{where}")
    return f"model {model.name!r} is infeasible: constraint group(s) that cannot be met: " + "; ".join(parts)


def _natural_order(
    model: Any, A: Any, columns: list[Any], col_of: dict[int, int]
) -> tuple[Any, list[Any], dict[int, int]]:
    """Permute columns into variable declaration order (each component's members in index order).

    pyomo's variable recorder registers a whole indexed component at once, so a component usually
    occupies one contiguous run of columns: check its first and last member and move the run as a
    block (O(number of components)); fall back to member-wise lookups otherwise.
    """
    parts: list[np.ndarray] = []
    for comp in model.component_objects(pyo.Var, active=True, descend_into=True):
        size = len(comp)
        if not size:
            continue
        index = comp.index_set()
        if comp.is_indexed() and index.isordered() and len(index) == size:
            first, last = comp[index.first()], comp[index.last()]
        else:
            vals = list(comp.values())
            first, last = vals[0], vals[-1]
        j0, j1 = col_of.get(id(first)), col_of.get(id(last))
        if j0 is not None and j1 is not None and j1 - j0 == size - 1:
            parts.append(np.arange(j0, j1 + 1))
        else:
            parts.append(
                np.fromiter((j for j in map(col_of.get, map(id, comp.values())) if j is not None), dtype=np.int64)
            )
    if not parts:
        return A, columns, col_of
    perm = np.concatenate(parts)
    n = len(columns)
    if perm.size != n or np.array_equal(perm, np.arange(n)) or not (np.bincount(perm, minlength=n) == 1).all():
        return A, columns, col_of
    columns = [columns[j] for j in perm]
    return A[:, perm].tocsc(), columns, dict(zip(map(id, columns), range(n)))


def _is_quadratic(obj: Any) -> bool:
    expr = obj.expr
    if isinstance(expr, LinearExpression) or not hasattr(expr, "polynomial_degree"):
        return False
    return expr.polynomial_degree() not in (0, 1)


def _column_bounds(columns: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bounds and integrality per column, read from the ``VarData`` slots in bulk.

    ``VarData.bounds`` re-derives the domain's bounds on every call (~7 us each, 0.7 s for a
    one-year battery model). Domains are shared objects (``Reals``, ``Binary``), so their bounds and
    integrality are computed once per distinct domain; numeric bounds go through numpy, where
    ``None`` becomes NaN (= no bound) and a ``Param``-valued bound converts via ``float()``.
    """
    n = len(columns)
    with np.errstate(invalid="ignore"):
        lo = np.array(list(map(_LB, columns)), dtype=float)
        hi = np.array(list(map(_UB, columns)), dtype=float)
    doms = list(map(_DOM, columns))
    distinct: dict[int, Any] = {id(d): d for d in doms}
    info = {}
    for k, d in distinct.items():
        dl, du = d.bounds()
        interval = d.get_interval()
        info[k] = (-INF if dl is None else dl, INF if du is None else du, interval[2] not in (0, None))
    if len(info) == 1:
        ((dl, du, is_int),) = info.values()
        dlb, dub, integer = np.full(n, dl), np.full(n, du), np.full(n, is_int)
    else:
        keys = list(info)
        code = {k: i for i, k in enumerate(keys)}
        idx = np.fromiter((code[id(d)] for d in doms), dtype=np.int64, count=n)
        table = np.array([info[k] for k in keys], dtype=float)
        dlb, dub, integer = table[idx, 0], table[idx, 1], table[idx, 2].astype(bool)
    lb = np.where(np.isnan(lo), dlb, np.maximum(np.nan_to_num(lo, nan=-INF), dlb))
    ub = np.where(np.isnan(hi), dub, np.minimum(np.nan_to_num(hi, nan=INF), dub))
    return lb, ub, integer


_CON = operator.attrgetter("constraint")
_LB = operator.attrgetter("_lb")
_UB = operator.attrgetter("_ub")
_DOM = operator.attrgetter("_domain")


def _hessian(repn: Any, col_of: dict[int, int], n: int, sign: float) -> highspy.HighsHessian:
    """HiGHS wants 0.5 x'Qx with Q lower-triangular CSC; pyomo gives sum c_k x_i x_j."""
    import scipy.sparse as sp

    rows, cols, vals = [], [], []
    for (v1, v2), c in zip(repn.quadratic_vars, repn.quadratic_coefs):
        i, j = col_of[id(v1)], col_of[id(v2)]
        if i == j:
            rows.append(i), cols.append(i), vals.append(2.0 * sign * float(c))
        else:
            hi, lo = max(i, j), min(i, j)
            rows.append(hi), cols.append(lo), vals.append(sign * float(c))
    Q = sp.csc_array((vals, (rows, cols)), shape=(n, n))
    Q.sum_duplicates()
    hess = highspy.HighsHessian()
    hess.dim_ = n
    hess.format_ = highspy.HessianFormat.kTriangular
    hess.start_ = Q.indptr.astype(np.int32)
    hess.index_ = Q.indices.astype(np.int32)
    hess.value_ = Q.data
    return hess


# --------------------------------------------------------------------------------------------
# Vectorised expansion of constraint templates
# --------------------------------------------------------------------------------------------


class _NotVectorisable(Exception):
    """The fast compiler cannot take this model; the caller falls back to pyomo's compiler."""


class _RangeMap:
    """``name[i]`` for a numpy array ``i`` of indices over a contiguous integer range.

    The code pyomo generates for a constraint template reads ``x1[t]`` / ``x1[t - 1]`` from a
    dict (column of variable ``x1`` at index ``t``). Substituting this array-backed map and
    passing *all* indices of the family at once as one numpy array turns the 35k generated-code
    calls into one vectorised call. An index outside the range raises (so no silent wrap-around).
    """

    __slots__ = ("values", "lo")

    def __init__(self, values: np.ndarray, lo: int) -> None:
        self.values, self.lo = values, lo

    def __getitem__(self, idx: Any) -> Any:
        k = np.asarray(idx) - self.lo
        if k.dtype.kind not in "iu" or (k.size and (k.min() < 0 or k.max() >= self.values.size)):
            raise _NotVectorisable("index outside the component's range")
        return self.values[k]


def _int_range(keys: list[Any]) -> int | None:
    """The first key if ``keys`` are exactly the consecutive integers from it, else ``None``."""
    if not keys or type(keys[0]) is not int or type(keys[-1]) is not int:
        return None
    lo = keys[0]
    if keys[-1] - lo != len(keys) - 1 or keys != list(range(lo, lo + len(keys))):
        return None
    return lo


class _FastRecorder:
    """Stands in for pyomo's ``TemplateVarRecorder``: all columns are known up front (declaration
    order), and each 1-D integer-indexed ``Var`` is exposed to generated code as a :class:`_RangeMap`."""

    def __init__(self, columns: list[Any], var_comps: list[Any]) -> None:
        from pyomo.core.base.label import NumericLabeler
        from pyomo.core.expr import SymbolMap

        ids = list(map(id, columns))
        self.var_order = dict(zip(ids, range(len(columns))))
        self.var_map = dict(zip(ids, columns))
        self.var_list = columns
        self.env: dict[Any, Any] = {None: 0}
        self.symbolmap = SymbolMap(NumericLabeler("x"))
        self._first_col: dict[int, tuple[int, int | None, int]] = {}
        j = 0
        for comp in var_comps:
            keys = list(_members(comp)) if comp.is_indexed() else None
            lo = _int_range(keys) if keys is not None else None
            self._first_col[id(comp)] = (j, lo, len(comp))
            j += len(comp)

    def add(self, var: Any) -> None:
        comp = var.parent_component()
        name = self.symbolmap.getSymbol(comp)
        if name in self.env:
            return
        j, lo, size = self._first_col[id(comp)]
        if lo is None:
            raise _NotVectorisable(f"variable {comp.name} is not indexed by one integer range")
        self.env[name] = _RangeMap(np.arange(j, j + size), lo)


def _vectorise_params(env: dict[Any, Any]) -> None:
    """Parameter dicts the template visitor put into ``env`` become array maps too."""
    for k, v in list(env.items()):
        if isinstance(v, dict) and k != "__builtins__":
            keys = list(v)
            lo = _int_range(keys)
            if lo is None:
                raise _NotVectorisable(f"a Param is not indexed by one full integer range: {k}={str(v)[:80]}")
            env[k] = _RangeMap(np.fromiter(v.values(), dtype=float, count=len(v)), lo)


def _evaluate(fn: Any, idx: np.ndarray) -> tuple[Any, list[Any], list[Any]]:
    if fn is None or not callable(fn):
        return fn, [], []
    ind: list[Any] = []
    dat: list[Any] = []
    const = fn(ind, dat, idx)
    return const, ind, dat


def _members(comp: Any) -> dict[Any, Any]:
    """index -> data of a constructed component, in index order, without iterating its index set.

    Iterating a ``RangeSet`` costs ~2.5 us per member in pyomo (a generator per element), which
    is 0.25 s for the 105k variables of a one-year battery model. A dense indexed component's
    ``_data`` dict holds the same members in the same (construction = index) order; when the
    sizes disagree (sparse component) the public iteration is used.
    """
    if not comp.is_indexed():
        return {None: comp}
    data = getattr(comp, "_data", None)
    if isinstance(data, dict) and len(data) == len(comp.index_set()):
        return data
    return dict(comp.items())


def _fast_standard_form(model: pyo.ConcreteModel, max_plain_rows: int = 2000) -> dict[str, Any]:
    """Compile a model whose big constraint families are templates over one integer range.

    Each templated family is expanded with one vectorised call of the code pyomo generates for its
    template; the few ordinary constraints go through ``generate_standard_repn``. Columns are all
    variables in declaration order. Raises :class:`_NotVectorisable` (caller falls back to pyomo's
    ``LinearStandardFormCompiler``) for anything outside that shape: sub-blocks, fixed variables,
    multi-dimensional indices, many ordinary rows, non-numeric template pieces.
    """
    import scipy.sparse as sp
    from pyomo.repn.linear_template import LinearTemplateRepnVisitor

    if next(model.component_objects(pyo.Block, descend_into=True), None) is not None:
        raise _NotVectorisable("model has sub-blocks")
    var_comps = list(model.component_objects(pyo.Var, active=True, descend_into=False))
    columns = [v for comp in var_comps for v in _members(comp).values()]
    if any(map(_FIXED, columns)):
        raise _NotVectorisable("model has fixed variables")
    cons = list(model.component_objects(pyo.Constraint, active=True, descend_into=False))
    plain = sum(len(c) for c in cons if not (c.is_indexed() and c and hasattr(next(iter(c.values())), "template_expr")))
    if plain > max_plain_rows:
        raise _NotVectorisable(f"{plain} non-templated constraint rows")
    rec = _FastRecorder(columns, var_comps)
    visitor = LinearTemplateRepnVisitor({}, var_recorder=rec)
    order = rec.var_order
    r_i: list[np.ndarray] = []
    c_i: list[np.ndarray] = []
    v_i: list[np.ndarray] = []
    lo_parts: list[np.ndarray] = []
    hi_parts: list[np.ndarray] = []
    row_cons: list[Any] = []
    n_rows = 0
    for comp in cons:
        members = _members(comp)
        datas = [d for d in members.values() if d.active]
        if not datas:
            continue
        first = datas[0]
        if comp.is_indexed() and hasattr(first, "template_expr"):
            tinfo = first.template_expr()
            keys = list(members)
            if (
                len(datas) != len(keys)
                or _int_range(keys) is None
                or any(d.template_expr() is not tinfo for d in datas)
            ):
                raise _NotVectorisable(f"constraint {comp.name} is not one template over an integer range")
            idx = np.asarray(keys, dtype=np.int64)
            R = idx.size
            rows = np.arange(n_rows, n_rows + R)
            try:
                body, lb, ub = visitor._generate_expanded_template(first, tinfo)
                _vectorise_params(rec.env)
                offset, ind, dat = _evaluate(body, idx)
                lbv, lb_ind, _ = _evaluate(lb, idx)
                ubv, ub_ind, _ = _evaluate(ub, idx)
                if lb_ind or ub_ind:
                    raise _NotVectorisable(f"constraint {comp.name} has variable bounds")
                for j, a in zip(ind, dat):
                    jj = np.broadcast_to(np.asarray(j, dtype=np.int64), (R,))
                    aa = np.broadcast_to(np.asarray(a, dtype=float), (R,))
                    r_i.append(rows), c_i.append(jj), v_i.append(aa)
                off = np.broadcast_to(np.asarray(offset, dtype=float), (R,))
                lo = np.full(R, -INF) if lbv is None else np.broadcast_to(np.asarray(lbv, dtype=float), (R,)) - off
                hi = np.full(R, INF) if ubv is None else np.broadcast_to(np.asarray(ubv, dtype=float), (R,)) - off
            except _NotVectorisable:
                raise
            except Exception as exc:  # anything the generated code cannot do on arrays: pyomo's compiler can
                raise _NotVectorisable(
                    f"constraint {comp.name}: template not vectorisable ({type(exc).__name__}: {exc})"
                ) from exc
            row_cons.extend(datas)
        else:
            lo_l, hi_l = [], []
            rows_l, cols_l, vals_l = [], [], []
            for d in datas:
                lb_e, body_e, ub_e = d.to_bounded_expression(evaluate_bounds=True)
                repn = generate_standard_repn(body_e, compute_values=True, quadratic=False)
                if repn.nonlinear_expr is not None:
                    raise InputError(f"constraint {d.name} is not linear")
                if lb_e is None and ub_e is None:
                    continue
                k = n_rows + len(lo_l)
                for v, a in zip(repn.linear_vars, repn.linear_coefs):
                    j = order.get(id(v))
                    if j is None:
                        raise _NotVectorisable(
                            f"constraint {d.name} uses variable {v.name} from outside the model's own Var components"
                        )
                    rows_l.append(k), cols_l.append(j), vals_l.append(float(a))
                c0 = float(repn.constant)
                lo_l.append(-INF if lb_e is None else float(lb_e) - c0)
                hi_l.append(INF if ub_e is None else float(ub_e) - c0)
                row_cons.append(d)
            R = len(lo_l)
            (
                r_i.append(np.asarray(rows_l, dtype=np.int64)),
                c_i.append(np.asarray(cols_l, dtype=np.int64)),
                v_i.append(np.asarray(vals_l, dtype=float)),
            )
            lo, hi = np.asarray(lo_l, dtype=float), np.asarray(hi_l, dtype=float)
        lo_parts.append(lo), hi_parts.append(hi)
        n_rows += R
    n = len(columns)
    if r_i:
        A = sp.csc_array((np.concatenate(v_i), (np.concatenate(r_i), np.concatenate(c_i))), shape=(n_rows, n))
        A.sum_duplicates()
    else:
        A = sp.csc_array((0, n))
    row_lo = np.concatenate(lo_parts) if lo_parts else np.empty(0)
    row_hi = np.concatenate(hi_parts) if hi_parts else np.empty(0)
    return {"A": A, "columns": columns, "col_of": order, "row_lower": row_lo, "row_upper": row_hi, "row_cons": row_cons}


_FIXED = operator.attrgetter("fixed")
