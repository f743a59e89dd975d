"""MATPOWER case files (``.m``, case format version 2) in and out, as PYPOWER-style ppc dicts.

A case file is MATLAB code, but only a tiny subset of it: ``function mpc = name``, scalar
assignments (``mpc.baseMVA = 100;``), numeric matrices (``mpc.bus = [ 1 3 0 ...; ... ];``, rows
ended by ``;`` or a newline, ``...`` continuations, ``Inf``/``NaN``), strings and cell arrays
(``mpc.bus_name = { 'a'; 'b' };``, skipped) and ``%`` comments. This reads exactly that subset and
refuses anything else with the file, line and field named, instead of running MATLAB/Octave.

Semantics are MATPOWER's: ``rateA = 0`` means *unlimited* (:mod:`optimization.dcopf` follows
that); ``gencost`` may carry a second block of rows for reactive costs (ignored by the DC-OPF).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from optimization.errors import InputError

#: fields every case needs, and the fewest columns MATPOWER's format allows for each matrix
MIN_COLUMNS = {"bus": 13, "gen": 10, "branch": 11}
#: how many of each matrix's columns :func:`write_matpower_case` writes (MATPOWER's documented set)
STANDARD_COLUMNS = {"bus": 13, "gen": 21, "branch": 13}

_ASSIGN = re.compile(r"^\s*(?P<var>[A-Za-z]\w*)\.(?P<field>[A-Za-z]\w*)\s*=\s*(?P<rest>.*)$")
_FUNCTION = re.compile(r"^\s*function\s+(?P<out>\w+)\s*=\s*(?P<name>\w+)")
_NUMBER = {"inf": np.inf, "+inf": np.inf, "-inf": -np.inf, "nan": np.nan}


def _strip_comment(line: str) -> str:
    """The line without its ``%`` comment (a ``%`` inside a quoted string is kept)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == "'":
            quoted = not quoted
        elif ch == "%" and not quoted:
            return line[:i]
    return line


def _number(tok: str, where: str) -> float:
    low = tok.lower()
    if low in _NUMBER:
        return float(_NUMBER[low])
    try:
        return float(tok)
    except ValueError:
        raise InputError(f"{where}: {tok!r} is not a number") from None


def read_matpower_case(path: str | Path) -> dict[str, Any]:
    """A ppc dict (``baseMVA``, ``bus``, ``gen``, ``branch``, ``gencost`` if present, ``version``, ``name``).

    Raises :class:`InputError` naming the file, line and field for a malformed file: an unknown
    construct, a non-numeric entry, rows of unequal length, too few columns or a missing field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read MATPOWER case ({exc})") from None
    lines = text.splitlines()
    out: dict[str, Any] = {"name": path.stem}
    var = "mpc"
    i = 0
    while i < len(lines):
        lineno = i + 1
        code = _strip_comment(lines[i]).strip()
        i += 1
        if not code:
            continue
        fn = _FUNCTION.match(code)
        if fn:
            var, out["name"] = fn.group("out"), fn.group("name")
            continue
        if code.startswith("function"):
            raise InputError(
                f"{path}:{lineno}: only version 2 case files ('function mpc = name') are supported, got {code!r}"
            )
        if code in ("end", "return"):
            continue
        m = _ASSIGN.match(code)
        if not m or m.group("var") != var:
            raise InputError(f"{path}:{lineno}: not a '{var}.<field> = ...' assignment: {code[:80]!r}")
        field, rest = m.group("field"), m.group("rest").strip()
        where = f"{path}:{lineno} ({var}.{field})"
        if rest.startswith("["):
            body, i = _collect(lines, i, rest[1:], "]", where)
            out[field] = _matrix(body, path, f"{var}.{field}")
        elif rest.startswith("{"):
            _, i = _collect(lines, i, rest[1:], "}", where)  # cell arrays (names): not needed for the models
        elif rest.startswith("'"):
            out[field] = rest.rstrip(";").strip().strip("'")
        else:
            out[field] = _number(rest.rstrip(";").strip(), where)
    _check(out, path)
    return out


def _collect(lines: list[str], i: int, first: str, close: str, where: str) -> tuple[list[tuple[int, str]], int]:
    """The (line number, text) pieces of a bracketed value up to its closing bracket, and the next line index."""
    pieces: list[tuple[int, str]] = []
    text, lineno = first, i
    while True:
        code = _strip_comment(text)
        if close in code:
            pieces.append((lineno, code[: code.index(close)]))
            return pieces, i
        pieces.append((lineno, code))
        if i >= len(lines):
            raise InputError(f"{where}: no closing {close!r} before the end of the file")
        text, lineno, i = lines[i], i + 1, i + 1


def _matrix(pieces: list[tuple[int, str]], path: Path, field: str) -> np.ndarray:
    rows: list[list[float]] = []
    current: list[float] = []
    for lineno, code in pieces:
        code = code.replace(",", " ")
        continued = code.rstrip().endswith("...")
        if continued:
            code = code.rstrip()[:-3]
        for k, chunk in enumerate(code.split(";")):
            if k > 0 and current:  # a ';' ends a row
                rows.append(current)
                current = []
            for tok in chunk.split():
                current.append(_number(tok, f"{path}:{lineno} ({field}, row {len(rows) + 1})"))
        if not continued and current:  # so does a newline
            rows.append(current)
            current = []
    if current:
        rows.append(current)
    if not rows:
        return np.zeros((0, 0))
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        n = len(rows[0])
        bad = next(k for k, r in enumerate(rows) if len(r) != n)
        raise InputError(f"{path} ({field}): row {bad + 1} has {len(rows[bad])} values, row 1 has {n}")
    return np.array(rows, dtype=float)


def _check(ppc: dict[str, Any], path: Path) -> None:
    for key in ("baseMVA", "bus", "gen", "branch"):
        if key not in ppc:
            raise InputError(f"{path}: MATPOWER case lacks mpc.{key}")
    if not isinstance(ppc["baseMVA"], float) or not ppc["baseMVA"] > 0:
        raise InputError(f"{path}: mpc.baseMVA must be a positive number, got {ppc['baseMVA']!r}")
    for key, n in MIN_COLUMNS.items():
        a = ppc[key]
        if not isinstance(a, np.ndarray) or a.ndim != 2 or a.shape[0] == 0:
            raise InputError(f"{path}: mpc.{key} must be a non-empty matrix")
        if a.shape[1] < n:
            raise InputError(f"{path}: mpc.{key} has {a.shape[1]} columns, MATPOWER's format needs at least {n}")
    if "gencost" in ppc:
        gc = ppc["gencost"]
        if gc.ndim != 2 or gc.shape[1] < 5:
            raise InputError(f"{path}: mpc.gencost must be a matrix with at least 5 columns")
        if gc.shape[0] < ppc["gen"].shape[0]:
            raise InputError(f"{path}: mpc.gencost has {gc.shape[0]} rows for {ppc['gen'].shape[0]} generators")
        need = 4 + np.where(gc[:, 0] == 1, 2, 1) * gc[:, 3]
        short = np.flatnonzero(need > gc.shape[1])
        if short.size:
            r = int(short[0])
            raise InputError(
                f"{path}: mpc.gencost row {r + 1} declares {int(gc[r, 3])} cost terms but has only {gc.shape[1] - 4} values"
            )
    ids = ppc["bus"][:, 0]
    if np.any(ids != np.round(ids)) or len(np.unique(ids)) != ids.size:
        raise InputError(f"{path}: mpc.bus column 1 (bus_i) must hold distinct integers")
    known = set(ids.astype(int).tolist())
    for key, cols in (("gen", (0,)), ("branch", (0, 1))):
        for c in cols:
            missing = np.flatnonzero(~np.isin(ppc[key][:, c], ids))
            if missing.size:
                r = int(missing[0])
                raise InputError(
                    f"{path}: mpc.{key} row {r + 1} refers to bus {ppc[key][r, c]:g}, which mpc.bus does not have ({len(known)} buses)"
                )


def write_matpower_case(ppc: dict[str, Any], path: str | Path, name: str | None = None) -> Path:
    """Write ``ppc`` as a MATPOWER version-2 case file (MATPOWER's standard columns, full precision).

    Bus numbers must be positive integers in MATPOWER: a 0-based ppc (pandapower's ``to_ppc``) is
    shifted by one (bus, generator bus and branch ends alike) so the file loads in MATPOWER too.
    """
    path = Path(path)
    name = name or path.stem
    if not re.fullmatch(r"[A-Za-z]\w*", name):
        raise InputError(f"case name {name!r} must be a MATLAB identifier (letters, digits, underscore)")
    bus = np.array(ppc["bus"], dtype=float)[:, : STANDARD_COLUMNS["bus"]]
    gen = np.array(ppc["gen"], dtype=float)[:, : STANDARD_COLUMNS["gen"]]
    branch = np.array(ppc["branch"], dtype=float)[:, : STANDARD_COLUMNS["branch"]]
    if bus[:, 0].min() < 1:
        shift = 1.0 - bus[:, 0].min()
        bus[:, 0] += shift
        gen[:, 0] += shift
        branch[:, :2] += shift
    parts = [f"function mpc = {name}", f"%{name.upper()}  written by gridlake (optimization.matpower)", "", "mpc.version = '2';",
             f"mpc.baseMVA = {float(ppc['baseMVA']):.17g};"]  # fmt: skip
    matrices = [("bus", bus), ("gen", gen), ("branch", branch)]
    if "gencost" in ppc:
        matrices.append(("gencost", np.asarray(ppc["gencost"], dtype=float)))
    for key, a in matrices:
        parts.append(f"mpc.{key} = [")
        parts += ["\t" + "\t".join(_fmt(v) for v in row) + ";" for row in a]
        parts.append("];")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _fmt(v: float) -> str:
    if np.isnan(v):
        return "NaN"
    if np.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.17g}"
