"""The vectorised template compiler builds exactly the LP pyomo's own compiler builds, and is used."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyomo.environ as pyo
import pytest

import optimization.core as core
from optimization.battery import BatterySpec, build_battery_model
from optimization.core import CompiledModel, add_constraint

SPEC = BatterySpec(
    power_kw=500.0,
    energy_kwh=1000.0,
    charge_efficiency=0.93,
    discharge_efficiency=0.96,
    soc_min_frac=0.1,
    soc_max_frac=0.95,
    degradation_cost_per_mwh=3.0,
)

CASES: dict[str, dict[str, Any]] = {
    "arbitrage": {},
    "site_peak_reg": {
        "load_kw": "load",
        "pv_kw": "pv",
        "demand_charge_per_kw": 8.0,
        "reg_price": "reg",
        "grid_import_limit_kw": 900.0,
    },
    "unmet_milp": {
        "load_kw": "load",
        "pv_kw": "pv",
        "allow_unmet": True,
        "milp": True,
        "export_price": "xp",
        "grid_export_limit_kw": 600.0,
    },
}


def _inputs(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    h = np.arange(n) / 4.0
    return {
        "price": 40 + 25 * np.sin(2 * np.pi * (h - 9) / 24) + rng.normal(0, 6, n) - 30 * (rng.random(n) < 0.05),
        "load": 300 + 150 * rng.random(n),
        "pv": np.clip(400 * np.sin(np.pi * (h % 24 - 6) / 12), 0, None),
        "reg": 10 + 5 * rng.random(n),
        "xp": np.full(n, 20.0),
    }


def _kwargs(case: str, data: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: data[v] if isinstance(v, str) else v for k, v in CASES[case].items()}


def _reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force pyomo's LinearStandardFormCompiler (the path every model took before)."""

    def refuse(model: Any, **_: Any) -> Any:
        raise core._NotVectorisable("reference run")

    monkeypatch.setattr(core, "_fast_standard_form", refuse)


@pytest.mark.parametrize("case", list(CASES))
def test_fast_path_builds_the_same_lp_as_pyomo(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 96 * 2
    data = _inputs(n)
    m_fast, _ = build_battery_model(SPEC, data["price"], **_kwargs(case, data))
    core._fast_standard_form(m_fast)  # raises if the battery model ever stops being vectorisable
    fast = CompiledModel(m_fast)
    s_fast = fast.solve(mip_rel_gap=0.0)

    m_ref, _ = build_battery_model(SPEC, data["price"], **_kwargs(case, data))
    _reference(monkeypatch)
    ref = CompiledModel(m_ref)
    s_ref = ref.solve(mip_rel_gap=0.0)

    # same matrix row by row: compare the dense form with rows keyed by constraint name/index
    # (a ranged row is one row here and two rows in pyomo's mixed form)
    def rows(cm: CompiledModel) -> dict[tuple[str, Any, float, float], tuple[float, ...]]:
        A = cm.A.toarray()
        names = [str(v.name) for v in cm.columns]
        order = np.argsort(names)
        return {
            (c.parent_component().name, c.index(), round(lo, 9), round(hi, 9)): tuple(np.round(A[i, order], 12))
            for i, (c, lo, hi) in enumerate(zip(cm.row_cons, cm.row_lower, cm.row_upper))
        }

    assert rows(fast) == rows(ref)
    assert s_fast.objective == pytest.approx(s_ref.objective, rel=1e-9, abs=1e-9)
    if case == "arbitrage":  # unique optimum (prices distinct): the schedules agree too
        for var in (m_fast.charge, m_fast.discharge, m_fast.soc):
            assert np.allclose(s_fast.values(var), s_ref.values(m_ref.find_component(var.name)), atol=1e-5)


def test_param_coefficients_and_offsets_vectorise() -> None:
    """A template with a Param coefficient, a shifted index and a constant on both sides."""
    m = pyo.ConcreteModel()
    with core.paused_gc():
        m.T = pyo.RangeSet(1, 6)
        m.a = pyo.Param(m.T, initialize={t: float(t) for t in range(1, 7)})
        m.x = pyo.Var(pyo.RangeSet(0, 6), bounds=(0, 10))
        add_constraint(m, "c", m.T, lambda m, t: 3 + m.a[t] * m.x[t] - 2 * m.x[t - 1] >= 1 + m.a[t])
        m.x0 = pyo.Constraint(expr=m.x[0] == 1)
        m.obj = pyo.Objective(expr=sum(m.x[t] for t in range(7)))
    out = core._fast_standard_form(m)
    A = out["A"].toarray()
    for r, t in enumerate(range(1, 7)):
        expect = np.zeros(7)
        expect[t] += t
        expect[t - 1] -= 2
        assert np.allclose(A[r], expect)
        assert out["row_lower"][r] == pytest.approx(t - 2) and out["row_upper"][r] == np.inf
    sol = CompiledModel(m).solve()
    x = sol.values(m.x)
    # x[t] >= (2 x[t-1] + t - 2) / t from x[0] = 1, each at its smallest value
    want = [1.0]
    for t in range(1, 7):
        want.append(max(0.0, (2 * want[-1] + t - 2) / t))
    assert np.allclose(x, want, atol=1e-7)


def test_models_outside_the_fast_shape_fall_back() -> None:
    """Two-dimensional indices and fixed variables take pyomo's compiler (and still solve right)."""
    m = pyo.ConcreteModel()
    m.x = pyo.Var([0, 1], [0, 1], bounds=(0, 5))
    m.c = pyo.Constraint([0, 1], rule=lambda m, i: m.x[i, 0] + m.x[i, 1] >= 2 + i)
    m.x[0, 0].fix(0.5)
    m.obj = pyo.Objective(expr=sum(m.x.values()))
    with pytest.raises(core._NotVectorisable):
        core._fast_standard_form(m)
    assert CompiledModel(m).solve().objective == pytest.approx(0.5 + 1.5 + 3.0)


def test_templates_the_arrays_cannot_evaluate_fall_back() -> None:
    """A Param with a default (sparse values) and a sum over an index-dependent range."""
    m = pyo.ConcreteModel()
    m.T = pyo.RangeSet(0, 4)
    m.w = pyo.Param(m.T, initialize={0: 2.0}, default=1.0)
    m.x = pyo.Var(m.T, bounds=(0, 10))
    add_constraint(m, "c", m.T, lambda m, t: m.w[t] * m.x[t] >= 2)
    add_constraint(m, "cum", m.T, lambda m, t: sum(m.x[s] for s in range(t + 1)) <= 3 * (t + 1))
    m.obj = pyo.Objective(expr=sum(m.x.values()))
    with pytest.raises(core._NotVectorisable):
        core._fast_standard_form(m)
    sol = CompiledModel(m).solve()
    assert np.allclose(sol.values(m.x), [1.0, 2.0, 2.0, 2.0, 2.0], atol=1e-7)
