"""The pyomo -> HiGHS path: values, duals, quadratic objectives, re-solves and infeasibility reports."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest

from optimization.core import CompiledModel, add_constraint, diagnose_infeasibility, solve
from optimization.errors import InfeasibleError


def _transport() -> pyo.ConcreteModel:
    # two plants (cap 30, 40; cost 1, 3) serve demand 50 -> cheap plant full, dual of demand = 3
    m = pyo.ConcreteModel(name="tiny")
    m.x = pyo.Var([0, 1], bounds=(0, None))
    m.cap = pyo.Constraint([0, 1], rule=lambda m, i: m.x[i] <= [30.0, 40.0][i], doc="plant capacity")
    m.demand = pyo.Constraint(expr=m.x[0] + m.x[1] == 50.0, doc="demand")
    m.obj = pyo.Objective(expr=1.0 * m.x[0] + 3.0 * m.x[1])
    return m


def test_values_objective_and_duals_match_hand_solution() -> None:
    m = _transport()
    sol = solve(m)
    assert sol.objective == pytest.approx(30 * 1 + 20 * 3)
    np.testing.assert_allclose(sol.values(m.x), [30.0, 20.0])
    assert sol.duals(m.demand)[0] == pytest.approx(3.0)  # one more unit of demand costs 3
    np.testing.assert_allclose(sol.duals(m.cap), [-2.0, 0.0])  # relaxing plant 0 saves 3 - 1


def test_maximisation_reports_duals_in_the_models_own_sense() -> None:
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, None))
    m.c = pyo.Constraint(expr=2 * m.x <= 10)
    m.obj = pyo.Objective(expr=3 * m.x, sense=pyo.maximize)
    sol = solve(m)
    assert sol.objective == pytest.approx(15.0)
    assert sol.duals(m.c)[0] == pytest.approx(1.5)  # d(max)/d(rhs) = 3 / 2


def test_quadratic_objective_goes_to_the_hessian() -> None:
    m = pyo.ConcreteModel()
    m.x = pyo.Var([0, 1])
    m.link = pyo.Constraint(expr=m.x[0] + m.x[1] == 4)
    m.obj = pyo.Objective(expr=(m.x[0] - 3) ** 2 + 2 * m.x[1] ** 2 + m.x[0] * m.x[1])
    sol = solve(m)
    # substitute x1 = 4 - x0: f = 2 x0^2 - 18 x0 + 41, minimum at x0 = 4.5 (x1 = -0.5), f = 0.5
    x = sol.values(m.x)
    np.testing.assert_allclose(x, [4.5, -0.5], atol=1e-6)
    assert sol.objective == pytest.approx(0.5, rel=1e-6)


def test_infeasible_model_names_the_constraint_group_and_amount() -> None:
    m = _transport()
    m.demand.set_value(m.x[0] + m.x[1] == 100.0)
    with pytest.raises(InfeasibleError) as err:
        solve(m)
    assert "demand" in err.value.groups or "cap" in err.value.groups
    assert sum(err.value.groups.values()) == pytest.approx(30.0, rel=1e-6)  # 100 - (30 + 40)
    assert "cannot be met" in str(err.value)


def test_diagnosis_reports_groups_only_when_its_elastic_lp_solved() -> None:
    m = _transport()
    m.demand.set_value(m.x[0] + m.x[1] == 100.0)
    cm = CompiledModel(m)
    assert diagnose_infeasibility(cm) == {"demand": pytest.approx(30.0)}
    assert cm.diagnosis_note == ""
    # an elastic LP that cannot finish (no time at all) names nothing and says why
    assert diagnose_infeasibility(cm, time_limit=0.0) == {}
    assert "did not solve" in cm.diagnosis_note and "Time limit" in cm.diagnosis_note


def test_infeasible_model_without_a_diagnosis_says_so_honestly() -> None:
    m = _transport()
    m.demand.set_value(m.x[0] + m.x[1] == 100.0)
    with pytest.raises(InfeasibleError, match="could not diagnose.*Time limit") as err:
        solve(m, diagnose_time_limit=0.0)
    assert err.value.groups == {}
    assert "short by" not in str(err.value)  # no made-up "'integrality' short by 0"


def test_set_bounds_resolves_without_rebuilding() -> None:
    m = _transport()
    cm = CompiledModel(m)
    assert cm.solve().objective == pytest.approx(90.0)
    cm.set_bounds(m.demand, lower=20.0, upper=20.0)
    sol = cm.solve()
    assert sol.objective == pytest.approx(20.0)
    np.testing.assert_allclose(sol.values(m.x), [20.0, 0.0])


def test_template_rule_with_python_branch_falls_back_to_plain_construction() -> None:
    n = 6
    m = pyo.ConcreteModel()
    m.T = pyo.RangeSet(0, n - 1)
    m.s = pyo.Var(m.T, bounds=(0, 10))
    # 'if t == 0' cannot be templated: add_constraint must fall back, the model must still be right
    add_constraint(m, "step", m.T, lambda m, t: m.s[t] == (1.0 if t == 0 else m.s[t - 1] + 1.0))
    assert not hasattr(m.step[0], "template_expr")
    m.obj = pyo.Objective(expr=sum(m.s[t] for t in m.T))
    sol = solve(m)
    np.testing.assert_allclose(sol.values(m.s), np.arange(1, n + 1, dtype=float))


def test_fixed_variables_report_their_value() -> None:
    m = _transport()
    m.x[1].fix(25.0)
    sol = solve(m)
    np.testing.assert_allclose(sol.values(m.x), [25.0, 25.0])


def test_template_compatible_rule_is_stored_once_and_compiles_identically() -> None:
    def build(template: bool) -> pyo.ConcreteModel:
        m = pyo.ConcreteModel()
        m.T = pyo.RangeSet(0, 9)
        m.T1 = pyo.RangeSet(1, 9)
        m.s = pyo.Var(m.T, bounds=(0, 100))
        m.u = pyo.Var(m.T, bounds=(0, 3))
        m.first = pyo.Constraint(expr=m.s[0] == m.u[0])
        rule = lambda m, t: m.s[t] == 0.9 * m.s[t - 1] + m.u[t]  # noqa: E731
        if template:
            add_constraint(m, "dyn", m.T1, rule)
        else:
            m.dyn = pyo.Constraint(m.T1, rule=rule)
        m.obj = pyo.Objective(expr=-m.s[9] + sum(0.1 * t * m.u[t] for t in m.T))
        return m

    a, b = build(True), build(False)
    assert hasattr(a.dyn[1], "template_expr")
    ca, cb = CompiledModel(a), CompiledModel(b)
    assert (ca.A != cb.A).nnz == 0
    assert ca.solve().objective == pytest.approx(cb.solve().objective, rel=1e-12)
