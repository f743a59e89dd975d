"""MATPOWER .m case files: a hand-written case, MATPOWER's own case300.m, a pandapower case written and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optimization.dcopf import MATPOWER_CASE300_M_OBJECTIVE, REFERENCE_OBJECTIVES, load_case, solve_dcopf
from optimization.errors import InputError
from optimization.matpower import read_matpower_case, write_matpower_case

DATA = Path(__file__).parent / "data"

# three buses in a triangle (x = 0.1 p.u. each), numbered 10/20/30 as MATPOWER allows; the cheap
# generator at bus 10 ($10/MWh) is held back by the 90 MW line 10-30, the dear one at 20 ($30/MWh)
# fills in. flow(10->30) = P10/3 + load/3 <= 90 -> P10 = 120, P20 = 30: cost 2100 $/h; one more MW of
# load at bus 30 needs P10 - 1, P20 + 2: LMP 50 $/MWh.
TRIANGLE = """function mpc = triangle
%TRIANGLE  a case written for the test
mpc.version = '2';
mpc.baseMVA = 100;   % MVA
mpc.bus = [
\t10\t3\t0\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
\t20\t2\t0\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
\t30\t1\t150\t0\t0\t0\t1\t1\t0\t230\t1\t1.1\t0.9;
];
mpc.gen = [
\t10\t0\t0\tInf\t-Inf\t1\t100\t1\t200\t0;
\t20\t0\t0\tInf\t-Inf\t1\t100\t1\t200\t0;
];
mpc.branch = [
\t10\t30\t0\t0.1\t0\t90\t0\t0\t0\t0\t1\t-360\t360;
\t20\t30\t0\t0.1\t0\t0\t0\t0\t0\t0\t1\t-360\t360;   % rateA 0: unlimited
\t10\t20\t0\t0.1\t0\t0\t0\t0\t0\t0\t1 ...
\t\t-360\t360;
];
mpc.bus_name = {
\t'North';
\t'South';
\t'Load';
};
mpc.gencost = [
\t2\t0\t0\t2\t10\t0;
\t2\t0\t0\t2\t30\t0;
];
"""


def test_a_hand_written_case_solves_to_its_hand_solution(tmp_path: Path) -> None:
    path = tmp_path / "triangle.m"
    path.write_text(TRIANGLE)
    ppc = read_matpower_case(path)
    assert ppc["name"] == "triangle" and ppc["baseMVA"] == 100.0 and ppc["branch"].shape == (3, 13)
    assert ppc["gen"][0, 3] == np.inf
    res = solve_dcopf(path)
    assert res.objective == pytest.approx(2100.0, rel=1e-9)
    np.testing.assert_allclose(res.generators["p_mw"].to_numpy(), [120.0, 30.0], atol=1e-6)
    lmp = dict(zip(res.buses["bus"].to_list(), res.buses["lmp"].to_list()))
    assert lmp[30] == pytest.approx(50.0, rel=1e-6) and lmp[10] == pytest.approx(10.0, rel=1e-6)
    assert res.branches.filter(res.branches["rate_a_mw"] == 0).height == 2  # read as unlimited


def test_matpowers_own_case300_gives_matpowers_optimum() -> None:
    res = solve_dcopf(DATA / "case300.m")
    assert res.objective == pytest.approx(MATPOWER_CASE300_M_OBJECTIVE, rel=1e-9)
    # and pandapower's conversion of it the (different) figure stored as its reference
    assert solve_dcopf("case300").objective == pytest.approx(REFERENCE_OBJECTIVES["case300"], rel=1e-9)


def test_a_pandapower_case_written_as_m_reads_back_and_solves_the_same(tmp_path: Path) -> None:
    ppc = load_case("case118")
    path = write_matpower_case(ppc, tmp_path / "case118_pp.m")
    back = read_matpower_case(path)
    for key, n in (("bus", 13), ("branch", 13)):
        a, b = np.array(ppc[key][:, :n], dtype=float), back[key]
        a[:, 0] += 1  # written 1-based: MATPOWER bus numbers are positive
        if key == "branch":
            a[:, 1] += 1
        np.testing.assert_array_equal(a, b)
    assert solve_dcopf(path).objective == pytest.approx(REFERENCE_OBJECTIVES["case118"], rel=1e-6)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.replace("\t150\t", "\t15O\t"), r"triangle\.m:8 \(mpc\.bus, row 3\): '15O' is not a number"),
        (
            lambda s: s.replace("\t20\t30\t0\t0.1\t0\t0\t0\t0\t0\t0\t1\t-360\t360;", "\t20\t30\t0\t0.1;"),
            r"mpc\.branch\): row 2 has 4 values, row 1 has 13",
        ),
        (lambda s: s.replace("mpc.gencost", "mpc.gencost_missing"), r"no mpc\.gencost"),
        (lambda s: s.replace("\t20\t2\t0", "\t21\t2\t0"), r"mpc\.gen row 2 refers to bus 20"),
        (
            lambda s: s.replace("mpc.baseMVA = 100;", "system('rm -rf /');"),
            r"triangle\.m:4: not a 'mpc\.<field> = \.\.\.' assignment",
        ),
    ],
)
def test_malformed_case_files_are_refused_naming_file_line_and_field(tmp_path: Path, edit, message: str) -> None:
    path = tmp_path / "triangle.m"
    path.write_text(edit(TRIANGLE))
    with pytest.raises(InputError, match=message):
        load_case(path)
