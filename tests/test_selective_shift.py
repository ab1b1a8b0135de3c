"""constructions.selective_shift against independent arithmetic: the plan's checks and constants (t_l, t_r, the
int64 budget), the column ids of quantized sequences (Fractions, invalid entries, dtypes), the hardmax xi with its
tie rule, the selective-shift stack and global shift (a hand-written Fraction recursion, the int64 -> Python-int
switch at its exact thresholds, the record), the grid enumeration, the P1-P4 report (every field, boundary values),
and the weight-level heads and their batched attention (hand loops over keys)."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from constructions import selective_shift as ss
from constructions.transformer import Head

SAFE = 2**60  # the module's documented int64 budget (INT64_SAFE)

# ---------------------------------------------------------------------------------------------
# independent arithmetic: powers by repeated products, ids from their definition, the recursion on Python numbers


def _pow(K, e):
    r = 1
    for _ in range(e):
        r *= K
    return r


def _valid_ids(d, n, K):
    """Every valid column id in units (value * 2K) from its definition sum_i K^i (j + k_i / K), increasing."""
    U = 2 * K
    out = set()
    for j in range(n):
        for digits in itertools.product(range(K), repeat=d):
            v = sum(_pow(K, i) * (j + Fraction(k, K)) for i, k in enumerate(digits))
            out.add(v * U)
    assert all(x.denominator == 1 for x in out)
    return sorted(int(x) for x in out)


def _id_ref(cells_b, K, invalid_b=None, J=None):
    """Ids (units) of one sequence (d, n): column j has value sum_i K^i (j + k_ij / K), an invalid entry is -J."""
    d, n = len(cells_b), len(cells_b[0])
    out = []
    for j in range(n):
        v = Fraction(0)
        for i in range(d):
            entry = -J if invalid_b is not None and invalid_b[i][j] else j + Fraction(int(cells_b[i][j]), K)
            v += _pow(K, i) * entry
        v *= 2 * K
        assert v.denominator == 1
        out.append(int(v))
    return out


def _xi_ref(row, b):
    """xi(q; b)_j = max_k q_k if q_j > b, min_k q_k if q_j < b, the mean of all q_k if q_j == b."""
    mx, mn, mean = max(row), min(row), Fraction(sum(row), len(row))
    return [mx if x > b else mn if x < b else mean for x in row]


def _ctx_ref(rows, d, n, K, scale=None, skip_global=False):
    """The documented stack on Python numbers: q <- q + s [xi(q; g - 1) - xi(q; g + 1)] for every valid id g
    (units, increasing), then q <- q + n K^{(n+1)d+1} xi(q; 0). Returns (outputs, the smallest positive key gap
    before each layer over the batch, min |q| before the global shift)."""
    s = _pow(K, d) if scale is None else scale
    qs = [list(r) for r in rows]
    layer_gaps = []
    for g in _valid_ids(d, n, K):
        gaps = []
        for q in qs:
            srt = sorted(q)
            gaps += [b - a for a, b in zip(srt, srt[1:], strict=False) if b - a > 0]
        layer_gaps.append(min(gaps) if gaps else None)
        qs = [[x + s * (a - b) for x, a, b in zip(q, _xi_ref(q, g - 1), _xi_ref(q, g + 1), strict=True)] for q in qs]
    pre = min(abs(x) for q in qs for x in q)
    if not skip_global:
        c = n * _pow(K, (n + 1) * d + 1)
        qs = [[x + c * y for x, y in zip(q, _xi_ref(q, 0), strict=True)] for q in qs]
    return qs, layer_gaps, pre


def _assert_exact(got, ref):
    got = np.asarray(got)
    assert got.shape == (len(ref), len(ref[0]))
    for r, row in enumerate(ref):
        for j, v in enumerate(row):
            assert got[r, j] == v, (r, j, got[r, j], v)


def _all_python_ints(a):
    return all(type(v) is int for v in np.asarray(a).ravel().tolist())


def _cells_ref(d, n, K):
    """All K^{dn} digit arrays, token-major lexicographic (token 0's d digits most significant)."""
    out = []
    for t in itertools.product(range(K), repeat=d * n):
        out.append([[t[j * d + i] for j in range(n)] for i in range(d)])
    return np.array(out, dtype=np.int64).reshape(-1, d, n)


# ---------------------------------------------------------------------------------------------
# ShiftPlan


def test_plan_accepts_the_smallest_instance_and_refuses_each_bound():
    p = ss.ShiftPlan(1, 1, 2)  # d = 1, n = 1, K = 2 are all allowed
    assert (p.d, p.n, p.K) == (1, 1, 2)
    assert ss.ShiftPlan(2.0, 1, 2).d == 2  # an integral float is an integer
    with pytest.raises(ValueError, match="need d >= 1 and n >= 1"):
        ss.ShiftPlan(0, 1, 2)
    with pytest.raises(ValueError, match="need d >= 1 and n >= 1"):
        ss.ShiftPlan(1, 0, 2)
    with pytest.raises(ValueError, match=r"K = 1/delta >= 2"):
        ss.ShiftPlan(1, 1, 1)
    with pytest.raises(ValueError, match="d must be an integer"):
        ss.ShiftPlan(True, 1, 2)  # bools are refused although int(True) == True
    with pytest.raises(ValueError, match="n must be an integer"):
        ss.ShiftPlan(1, 2.5, 2)
    with pytest.raises(ValueError, match="K must be an integer"):
        ss.ShiftPlan(1, 1, 2.5)
    with pytest.raises(ValueError, match="K must be an integer"):
        ss.ShiftPlan(1, 1, False)


def test_plan_constants_are_the_documented_formulas():
    d, n, K = 2, 3, 3
    p = ss.ShiftPlan(d, n, K)
    assert p.delta == Fraction(1, 3) and p.unit == 6
    assert p.u == (1, 3) and p.S == 4
    assert p.J == n + 3 * n * _pow(K, d * n)
    assert p.shift_scale == 9 and p.global_scale == n * _pow(K, (n + 1) * d + 1)
    assert p.valid_ids_units.tolist() == _valid_ids(d, n, K)
    assert p.n_selective_layers == n * 9 and p.n_attention_layers == n * 9 + 1 and p.n_sequences == _pow(K, 6)


@pytest.mark.parametrize("d, n, K", [(2, 3, 3), (3, 2, 2), (1, 1, 2), (2, 2, 5)])
def test_t_bounds_are_the_corrected_and_the_typo_formulas(d, n, K):
    p = ss.ShiftPlan(d, n, K)
    t_l = n * _pow(K, 2 * n * d) * (_pow(K, d) - 1)
    t_r = n * n * _pow(K, 2 * (n + 1) * d + 1) + n * _pow(K, (n + 1) * d)
    got = p.t_bounds(typo=False)
    assert got == (t_l, t_r)
    assert all(type(x) is Fraction for x in got)
    assert p.t_bounds() == got  # typo defaults to False
    typo = p.t_bounds(typo=True)
    assert typo == (n * _pow(K, 2 * (n + 1) * d) * (_pow(K, d) - 1), t_r)
    assert typo[0] > t_l and all(type(x) is Fraction for x in typo)


@pytest.mark.parametrize("d, n, K", [(2, 3, 3), (1, 2, 2), (1, 1, 5)])
def test_max_abs_units_valid_is_twice_t_r_in_units_plus_one(d, n, K):
    p = ss.ShiftPlan(d, n, K)
    t_r = n * n * _pow(K, 2 * (n + 1) * d + 1) + n * _pow(K, (n + 1) * d)
    assert p.max_abs_units_valid() == 2 * (2 * K) * t_r + 1
    assert type(p.max_abs_units_valid()) is int


def test_max_abs_units_valid_bounds_every_valid_output():
    for size in [(1, 2, 2), (2, 2, 2), (1, 3, 3)]:
        p = ss.ShiftPlan(*size)
        q = ss.contextual_ids(ss.ids_from_cells(ss.enumerate_cells(*size), p), p)
        top = max(abs(int(v)) for v in q.ravel().tolist())
        assert top <= p.max_abs_units_valid()
        assert top > p.max_abs_units_valid() // (8 * p.K)  # within a factor 8K (Yun's bound is not attained)


# ---------------------------------------------------------------------------------------------
# ids_from_cells


def test_ids_from_cells_is_the_documented_sum():
    d, n, K = 2, 3, 3
    p = ss.ShiftPlan(d, n, K)
    cells = np.random.default_rng(0).integers(0, K, size=(5, d, n))
    got = ss.ids_from_cells(cells, p)
    assert got.shape == (5, n) and got.dtype == np.int64
    _assert_exact(got, [_id_ref(c.tolist(), K) for c in cells])
    # the valid ids of the plan are exactly the ids of every single column
    every = ss.ids_from_cells(ss.enumerate_cells(d, n, K), p)
    assert sorted(set(every.ravel().tolist())) == _valid_ids(d, n, K)


def test_ids_from_cells_sends_invalid_entries_to_minus_J():
    d, n, K = 2, 3, 3
    p = ss.ShiftPlan(d, n, K)
    rng = np.random.default_rng(1)
    cells = rng.integers(0, K, size=(4, d, n))
    invalid = rng.random(size=(4, d, n)) < 0.4
    invalid[0] = False  # one fully valid sequence
    got = ss.ids_from_cells(cells, p, invalid=invalid)
    _assert_exact(got, [_id_ref(c.tolist(), K, v.tolist(), p.J) for c, v in zip(cells, invalid, strict=True)])
    assert (got[0] == ss.ids_from_cells(cells[:1], p)[0]).all()
    # a 0/1 integer mask and a nested list of bools are the same mask; invalid=None is all valid
    np.testing.assert_array_equal(ss.ids_from_cells(cells, p, invalid=invalid.astype(int)), got)
    np.testing.assert_array_equal(ss.ids_from_cells(cells, p, invalid=invalid.tolist()), got)
    np.testing.assert_array_equal(ss.ids_from_cells(cells, p, invalid=None), ss.ids_from_cells(cells, p))
    # one invalid entry in row i of column j contributes K^i (-J) in place of K^i (j + k/K)
    one = np.zeros((1, d, n), dtype=bool)
    one[0, 1, 2] = True
    diff = ss.ids_from_cells(cells[:1], p, invalid=one)[0] - ss.ids_from_cells(cells[:1], p)[0]
    assert diff.tolist() == [0, 0, 2 * K * K * (-p.J - (2 + Fraction(int(cells[0, 1, 2]), K)))]


def test_ids_from_cells_reads_any_integer_cells_and_checks_the_shape():
    d, n, K = 2, 3, 3
    p = ss.ShiftPlan(d, n, K)
    cells = np.random.default_rng(2).integers(0, K, size=(3, d, n))
    ref = ss.ids_from_cells(cells, p)
    for c in (cells.astype(np.int32), cells.astype(np.float64), cells.tolist(), cells.astype(np.uint8)):
        got = ss.ids_from_cells(c, p)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError, match="do not match plan"):
        ss.ids_from_cells(cells.transpose(0, 2, 1), p)  # (B, n, d)
    with pytest.raises(ValueError, match="do not match plan"):
        ss.ids_from_cells(cells[:, :1, :], p)  # d wrong only
    with pytest.raises(ValueError, match="do not match plan"):
        ss.ids_from_cells(cells[:, :, :2], p)  # n wrong only


def test_ids_from_cells_switches_to_python_ints_exactly_when_the_outputs_may_pass_the_budget():
    # (3, 4, 4): every input id is small (J S U <= 2^60) but the stack's outputs may reach 2 t_r > 2^60
    p = ss.ShiftPlan(3, 4, 4)
    assert p.J * p.S * p.unit <= SAFE < p.max_abs_units_valid()
    cells = np.random.default_rng(3).integers(0, 4, size=(3, 3, 4))
    got = ss.ids_from_cells(cells, p)
    assert got.dtype == object and _all_python_ints(got)
    _assert_exact(got, [_id_ref(c.tolist(), 4) for c in cells])
    # a plan far below the budget stays int64
    small = ss.ShiftPlan(2, 2, 2)
    assert small.max_abs_units_valid() < SAFE
    assert ss.ids_from_cells(cells[:, :2, :2] % 2, small).dtype == np.int64


def test_ids_from_cells_is_exact_beyond_int64_with_invalid_entries():
    # (5, 6, 4): -J alone is beyond int64 (J ~ 18 * 4^30), so an invalid id needs Python ints
    d, n, K = 5, 6, 4
    p = ss.ShiftPlan(d, n, K)
    assert 2 * K * p.J > 2**63
    rng = np.random.default_rng(4)
    cells = rng.integers(0, K, size=(3, d, n))
    invalid = rng.random(size=(3, d, n)) < 0.3
    got = ss.ids_from_cells(cells, p, invalid=invalid)
    assert got.dtype == object and _all_python_ints(got)
    _assert_exact(got, [_id_ref(c.tolist(), K, v.tolist(), p.J) for c, v in zip(cells, invalid, strict=True)])


def test_ids_from_cells_is_exact_for_levels_beyond_int64_and_J_beyond_float():
    # K = 2^63: the unit 2K and the weight K^{d-1} are themselves beyond int64 (and beyond exact float64)
    K = 2**63
    p = ss.ShiftPlan(2, 2, K)
    cells = np.array([[[0, K - 1], [5, 2**62]], [[K - 2, 1], [3, K - 1]]], dtype=object)
    invalid = np.array([[[False, False], [False, False]], [[False, True], [False, False]]])
    got = ss.ids_from_cells(cells, p, invalid=invalid)
    assert got.dtype == object and _all_python_ints(got)
    _assert_exact(got, [_id_ref(c.tolist(), K, v.tolist(), p.J) for c, v in zip(cells, invalid, strict=True)])
    # (1, 60, 2^18): J ~ 180 * 2^1080 has no float value at all
    d, n, K = 1, 60, 2**18
    p = ss.ShiftPlan(d, n, K)
    assert p.J // (2 * K) > 2**1024  # even J / (2K) overflows a float
    cells = np.random.default_rng(8).integers(0, K, size=(2, d, n))
    invalid = np.zeros((2, d, n), dtype=bool)
    invalid[1, 0, 7] = True
    got = ss.ids_from_cells(cells, p, invalid=invalid)
    assert got.dtype == object and _all_python_ints(got)
    _assert_exact(got, [_id_ref(c.tolist(), K, v.tolist(), p.J) for c, v in zip(cells, invalid, strict=True)])


# ---------------------------------------------------------------------------------------------
# _xi


def test_xi_picks_max_above_min_below_and_the_row_mean_on_a_tie():
    q = np.array([[1, 3, 6], [2, 8, 9], [7, 3, 9]], dtype=np.int64)
    mx, mn = q.max(axis=1, keepdims=True), q.min(axis=1, keepdims=True)
    got = ss._xi(q, 3, mx, mn)
    assert got.dtype == object
    ref = [_xi_ref(r, 3) for r in q.tolist()]
    assert ref[0][1] == Fraction(10, 3) and ref[2][1] == Fraction(19, 3)  # each tie takes its own row's mean
    for r in range(3):
        for j in range(3):
            assert got[r, j] == ref[r][j] and type(got[r, j]) is type(ref[r][j])
    assert type(got[0, 1]) is Fraction and type(got[2, 1]) is Fraction


def test_xi_without_a_tie_keeps_the_integer_dtype():
    q = np.array([[1, 4, 6], [2, 8, 9]], dtype=np.int64)
    mx, mn = q.max(axis=1, keepdims=True), q.min(axis=1, keepdims=True)
    got = ss._xi(q, 5, mx, mn)
    assert got.dtype == np.int64
    assert got.tolist() == [_xi_ref(r, 5) for r in q.tolist()] == [[1, 1, 6], [2, 9, 9]]


# ---------------------------------------------------------------------------------------------
# contextual_ids: the recursion


@pytest.mark.parametrize("size", [(1, 2, 2), (2, 2, 2), (1, 3, 3), (2, 3, 2)])
def test_contextual_ids_is_the_documented_recursion_on_every_grid_sequence(size):
    d, n, K = size
    p = ss.ShiftPlan(*size)
    ids0 = ss.ids_from_cells(ss.enumerate_cells(*size), p)
    got = ss.contextual_ids(ids0, p)
    assert got.dtype == np.int64  # far below the budget: int64 throughout
    ref, _, _ = _ctx_ref(ids0.tolist(), d, n, K)
    _assert_exact(got, ref)
    # skip_global defaults to False; skip_global=True returns the selective-shift stack alone
    np.testing.assert_array_equal(ss.contextual_ids(ids0, p, skip_global=False), got)
    pre = ss.contextual_ids(ids0, p, skip_global=True)
    _assert_exact(pre, _ctx_ref(ids0.tolist(), d, n, K, skip_global=True)[0])
    assert not np.array_equal(pre, got)


def test_contextual_ids_on_invalid_sequences_and_arbitrary_integer_ids_with_ties():
    d, n, K = 2, 3, 2
    p = ss.ShiftPlan(d, n, K)
    rng = np.random.default_rng(5)
    cells = rng.integers(0, K, size=(4, d, n))
    invalid = np.zeros((4, d, n), dtype=bool)
    invalid[1, 0, 2] = invalid[2, 1, 0] = invalid[3] = True
    ids0 = ss.ids_from_cells(cells, p, invalid=invalid)
    _assert_exact(ss.contextual_ids(ids0, p), _ctx_ref(ids0.tolist(), d, n, K)[0])
    # odd ids sit on thresholds g +- 1: the tie rule (mean of the row) is part of the recursion
    top = int(p.valid_ids_units[-1])
    ids = rng.integers(-3, top + 4, size=(7, n))
    ids[0] = [1, 0, 5]  # 1 and 5 tie with g -+ 1 for g = 0, 2, 4, 6
    got = ss.contextual_ids(ids, p)
    ref, _, _ = _ctx_ref(ids.tolist(), d, n, K)
    assert any(type(v) is Fraction and v.denominator > 1 for row in ref for v in row)
    _assert_exact(got, ref)
    # a nested list is read like the array
    _assert_exact(ss.contextual_ids(ids.tolist(), p), ref)


def test_contextual_ids_ties_at_thresholds_between_blocks_of_valid_ids():
    # d = 2: U S - 2 is not a valid id (blocks j = 0 and j = 1 are separated), so a column there is never shifted
    # by the layer g = U S, whose thresholds are U S -+ 1
    d, n, K = 2, 2, 2
    p = ss.ShiftPlan(d, n, K)
    US = p.unit * p.S
    assert US - 2 not in _valid_ids(d, n, K) and US in _valid_ids(d, n, K)
    ids = np.array([[US - 2, -8], [US - 2, US + 40], [-4, US - 2]])
    _assert_exact(ss.contextual_ids(ids, p), _ctx_ref(ids.tolist(), d, n, K)[0])
    _assert_exact(ss.contextual_ids(ids, p, skip_global=True), _ctx_ref(ids.tolist(), d, n, K, skip_global=True)[0])


def test_contextual_ids_global_shift_threshold_is_zero():
    p = ss.ShiftPlan(1, 2, 2)
    ids = np.array([[1, -4], [0, 6], [-2, 2]])
    # scale 0 leaves the ids as they are; then the global shift adds c * xi(q; 0), the mean on q_j == 0
    got = ss.contextual_ids(ids, p, scale=0)
    c = p.global_scale
    assert got[0].tolist() == [1 + c * 1, -4 + c * (-4)]
    assert got[1].tolist() == [0 + c * 3, 6 + c * 6]  # the tie at 0 takes the mean (0 + 6) / 2
    assert got[2].tolist() == [-2 + c * (-2), 2 + c * 2]
    _assert_exact(got, _ctx_ref(ids.tolist(), 1, 2, 2, scale=0)[0])


def test_contextual_ids_scale_overrides_the_selective_factor_only():
    d, n, K = 1, 3, 2
    p = ss.ShiftPlan(d, n, K)
    ids0 = ss.ids_from_cells(ss.enumerate_cells(d, n, K), p)
    default = ss.contextual_ids(ids0, p)
    np.testing.assert_array_equal(ss.contextual_ids(ids0, p, scale=p.shift_scale), default)
    for s in (1, 3, -2):
        got = ss.contextual_ids(ids0, p, scale=s)
        _assert_exact(got, _ctx_ref(ids0.tolist(), d, n, K, scale=s)[0])
        assert not np.array_equal(got, default)
    # scale 0: only the global shift acts
    _assert_exact(ss.contextual_ids(ids0, p, scale=0, skip_global=True), ids0.tolist())


def test_contextual_ids_checks_the_shape():
    p = ss.ShiftPlan(1, 2, 2)
    with pytest.raises(ValueError, match=r"ids must have shape \(B, n=2\)"):
        ss.contextual_ids(np.array([0, 4]), p)  # 1-D
    with pytest.raises(ValueError, match=r"ids must have shape"):
        ss.contextual_ids(np.zeros((3, 3), dtype=np.int64), p)  # n + 1 columns
    with pytest.raises(ValueError, match=r"ids must have shape"):
        ss.contextual_ids(np.zeros((3, 2, 1), dtype=np.int64), p)  # 3-D
    assert ss.contextual_ids(np.zeros((3, 2), dtype=np.int64), p).shape == (3, 2)


def test_contextual_ids_object_input_stays_exact_python_ints():
    d, n, K = 2, 2, 2
    p = ss.ShiftPlan(d, n, K)
    ids0 = ss.ids_from_cells(ss.enumerate_cells(d, n, K), p)
    got = ss.contextual_ids(ids0.astype(object), p)
    assert got.dtype == object and _all_python_ints(got)
    np.testing.assert_array_equal(got.astype(np.int64), ss.contextual_ids(ids0, p))


def test_contextual_ids_is_exact_when_the_outputs_pass_int64():
    # (1, 28, 2): outputs reach ~ n^2 K^{2(n+1)d+1} units > 2^63; int64 input ids must switch to Python ints
    d, n, K = 1, 28, 2
    p = ss.ShiftPlan(d, n, K)
    rng = np.random.default_rng(6)
    cells = rng.integers(0, K, size=(3, d, n))
    invalid = np.zeros((3, d, n), dtype=bool)
    invalid[2, 0, 5] = True
    ids_obj = ss.ids_from_cells(cells, p, invalid=invalid)
    assert ids_obj.dtype == object
    ids64 = ids_obj.astype(np.int64)
    got = ss.contextual_ids(ids64, p)
    ref, _, _ = _ctx_ref(ids_obj.tolist(), d, n, K)
    assert max(abs(v) for row in ref for v in row) > 2**63
    assert got.dtype == object and _all_python_ints(got)
    _assert_exact(got, ref)
    np.testing.assert_array_equal(ss.contextual_ids(ids_obj, p), got)
    # the stack alone already leaves int64 for this plan
    pre_ref = _ctx_ref(ids_obj.tolist(), d, n, K, skip_global=True)[0]
    assert max(abs(v) for row in pre_ref for v in row) > 2**63
    pre = ss.contextual_ids(ids64, p, skip_global=True)
    assert pre.dtype == object
    _assert_exact(pre, pre_ref)


# ---------------------------------------------------------------------------------------------
# contextual_ids: the int64 -> Python int switch at its thresholds. Rows of negative ids below every threshold
# (>= -1) are never shifted, so the only observable is the dtype; the selective switch reads
# (max |max_k q| + max |min_k q|) (2 |s| + 1) > 2^60, the global one (max |q| + max |max_k q| + max |min_k q|) (c + 1).


def _stack_dtype(rows, plan, scale):
    ids = np.array(rows, dtype=np.int64)
    got = ss.contextual_ids(ids, plan, scale=scale, skip_global=True)
    np.testing.assert_array_equal(got.astype(object), ids.astype(object))  # nothing moved
    if got.dtype == object:
        assert _all_python_ints(got)
    return str(got.dtype)


def test_selective_switch_at_scale_zero_is_strict_at_the_budget():
    p = ss.ShiftPlan(1, 2, 2)
    a = 2**58
    assert _stack_dtype([[-a, -3 * a], [-2, -4]], p, 0) == "int64"  # (a + 3a) * 1 = 2^60: not above
    assert _stack_dtype([[-a, -3 * a - 2], [-2, -4]], p, 0) == "object"  # 2^60 + 2
    assert _stack_dtype([[-2, -4], [-6, -8]], p, 0) == "int64"


def test_selective_switch_at_scale_one_uses_two_s_plus_one():
    p = ss.ShiftPlan(1, 2, 2)
    for s in (1, -1):  # |s| is used
        lo = 2**58 + 2  # A = 2 + lo: 3 A <= 2^60 < 4 A, with 3 = 2 |s| + 1
        assert 3 * (2 + lo) <= SAFE < 4 * (2 + lo)
        assert _stack_dtype([[-2, -lo]], p, s) == "int64"
        hi = 3 * 2**58 + 2  # 3 hi > 2^60
        assert 3 * (2**58 + hi) > SAFE
        assert _stack_dtype([[-(2**58), -hi]], p, s) == "object"


def test_selective_switch_reads_the_maximum_and_minimum_magnitudes():
    p = ss.ShiftPlan(1, 2, 2)
    a = 2**59 + 2  # |max| = |min| = a: (a + a) * 1 > 2^60 although each alone is below
    assert _stack_dtype([[-a, -a]], p, 0) == "object"
    # the largest |max_k q| and the largest |min_k q| over the batch, from different rows: 2^59 + (2^59 + 2)
    # although neither row alone passes the budget (2^60 and 2^59 + 4)
    assert _stack_dtype([[-(2**59), -(2**59)], [-2, -(2**59) - 2]], p, 0) == "object"
    assert _stack_dtype([[-(2**59), -(2**59)], [-2, -(2**59)]], p, 0) == "int64"


def test_selective_switch_with_a_column_above_every_threshold_keeps_python_ints():
    p = ss.ShiftPlan(1, 2, 2)
    big = 2**59  # far above the largest valid id: xi = max for it, xi = min for the negative column
    rows = [[-(2**59) - 2, big], [-4, big]]
    ids = np.array(rows, dtype=np.int64)
    got = ss.contextual_ids(ids, p, scale=0, skip_global=True)
    assert got.dtype == object and _all_python_ints(got)
    assert got.tolist() == rows
    # with the default scale the stack moves nothing in these rows either, and the result is exact
    got = ss.contextual_ids(ids, p)
    assert got.dtype == object and _all_python_ints(got)
    _assert_exact(got, _ctx_ref(rows, 1, 2, 2)[0])


def _global_run(X, plan):
    rows = [[-X, X]]
    got = ss.contextual_ids(np.array(rows, dtype=np.int64), plan)
    c = plan.global_scale
    assert got.tolist() == [[-X - c * X, X + c * X]]
    if got.dtype == object:
        assert _all_python_ints(got)
    return str(got.dtype)


def test_global_switch_thresholds():
    p = ss.ShiftPlan(1, 2, 2)
    c = p.global_scale
    assert c == 32
    # the stack keeps int64 and moves nothing: (X + X) (2 K^d + 1) <= 2^60
    x_obj = SAFE // (3 * (c + 1)) + 2
    x_obj += x_obj % 2
    assert 3 * x_obj * (c + 1) > SAFE >= 3 * x_obj * (c - 1) and 2 * x_obj * 5 <= SAFE
    assert x_obj * (c + 1) <= SAFE  # a single magnitude X stays below: only the sum of all three passes
    assert _global_run(x_obj, p) == "object"
    x_int = SAFE // (3 * (c + 1))
    x_int -= x_int % 2
    assert 3 * x_int * (c + 1) <= SAFE < 3 * x_int * (c + 2)
    assert _global_run(x_int, p) == "int64"
    assert _global_run(10, p) == "int64"


# ---------------------------------------------------------------------------------------------
# contextual_ids: record


def test_record_on_a_grid_run():
    d, n, K = 1, 3, 3
    p = ss.ShiftPlan(d, n, K)
    ids0 = ss.ids_from_cells(ss.enumerate_cells(d, n, K), p)
    rec = {}
    got = ss.contextual_ids(ids0, p, record=rec)
    np.testing.assert_array_equal(got, ss.contextual_ids(ids0, p))  # recording changes nothing
    _, gaps, pre = _ctx_ref(ids0.tolist(), d, n, K)
    assert rec == {"min_key_gap_units": min(gaps), "min_abs_global_query_units": pre}
    assert type(rec["min_key_gap_units"]) is int and type(rec["min_abs_global_query_units"]) is int
    rec2 = {}
    ss.contextual_ids(ids0, p, record=rec2, skip_global=True)
    assert rec2 == {"min_key_gap_units": min(gaps)}


def test_record_takes_the_smallest_positive_gap_over_all_layers():
    p = ss.ShiftPlan(1, 2, 2)
    rows = [[0, 1], [-10, -6], [-20, -4]]  # row 0 has gap 1 before layer 0, then its two ids meet
    _, gaps, pre = _ctx_ref(rows, 1, 2, 2)
    assert gaps[0] == 1 and gaps[-1] == 4  # the smallest gap is not the last layer's
    rec = {}
    got = ss.contextual_ids(np.array(rows), p, record=rec)
    _assert_exact(got, _ctx_ref(rows, 1, 2, 2)[0])
    assert rec == {"min_key_gap_units": 1, "min_abs_global_query_units": int(pre)}
    # equal ids within a row are no gap; a gap of 1 unit counts
    rec = {}
    ss.contextual_ids(np.array([[-6, -6], [-10, -4]]), p, record=rec)
    assert rec == {"min_key_gap_units": 6, "min_abs_global_query_units": 4}
    rec = {}
    ss.contextual_ids(np.array([[-6, -5], [-10, -4]]), p, record=rec)
    assert rec == {"min_key_gap_units": 1, "min_abs_global_query_units": 4}
    rec = {}
    ss.contextual_ids(np.array([[-6, -6], [-4, -4]]), p, record=rec)  # no positive gap anywhere
    assert rec == {"min_key_gap_units": None, "min_abs_global_query_units": 4}


# ---------------------------------------------------------------------------------------------
# enumerate_cells


@pytest.mark.parametrize("d, n, K", [(1, 3, 2), (2, 1, 3), (1, 2, 3), (2, 2, 2)])
def test_enumerate_cells_is_token_major_lexicographic(d, n, K):
    got = ss.enumerate_cells(d, n, K)
    assert got.shape == (_pow(K, d * n), d, n)
    np.testing.assert_array_equal(got, _cells_ref(d, n, K))


def test_enumerate_cells_budget():
    assert len(ss.enumerate_cells(1, 2, 2, limit=4)) == 4  # N == limit is allowed
    with pytest.raises(ss.TooLarge, match=r"2\^2 = 4 grid sequences exceeds budget 3"):
        ss.enumerate_cells(1, 2, 2, limit=3)
    assert issubclass(ss.TooLarge, ValueError)
    # default budget MAX_SEQUENCES = 300 000: 3^11 = 177 147 fits, 3^12 = 531 441 does not
    assert ss.MAX_SEQUENCES == 300_000
    assert len(ss.enumerate_cells(1, 11, 3)) == 177_147
    with pytest.raises(ss.TooLarge, match="531441 grid sequences exceeds budget 300000"):
        ss.enumerate_cells(1, 12, 3)


# ---------------------------------------------------------------------------------------------
# contextual_report

# plan (1, 2, 2): unit U = 4, t_l = 32, t_r = 528 (units 128 and 2112); typo t_l = 128 (units 512)
_Q_VALID = np.array([[128, 2112], [127, Fraction(261, 2)], [131, 131], [2113, 300]], dtype=object)


def test_contextual_report_fields_by_hand():
    p = ss.ShiftPlan(1, 2, 2)
    assert p.t_bounds() == (32, 528)
    r = ss.contextual_report(p, _Q_VALID)
    # sorted units: 127, 128, 261/2, 131, 131, 300, 2112, 2113
    assert r.n_valid == 4 and type(r.n_valid) is int
    assert r.n_invalid == 0 and r.p4_violations == 0
    assert r.distinct_violations == 1  # 131 twice
    assert r.min_gap == Fraction(1, 8) and type(r.min_gap) is Fraction  # 131 - 261/2 = 1/2 unit
    assert r.min_valid == Fraction(127, 4) and r.max_valid == Fraction(2113, 4)
    assert r.p3_violations == 2  # 127 and 2113; t_l and t_r themselves are inside
    assert (r.t_l, r.t_r) == (32, 528)
    assert ss.contextual_report(p, _Q_VALID, typo=False) == r  # typo defaults to False
    rt = ss.contextual_report(p, _Q_VALID, typo=True)
    assert (rt.t_l, rt.t_r) == (128, 528)
    assert rt.p3_violations == 7  # everything below 512 units, and 2113


def test_contextual_report_gap_of_one_unit_and_duplicates():
    p = ss.ShiftPlan(1, 2, 2)
    q = np.array([[200, 201], [200, 300], [300, 200]], dtype=np.int64)
    r = ss.contextual_report(p, q)
    assert r.distinct_violations == 3  # 200 three times, 300 twice
    assert r.min_gap == Fraction(1, 4)  # one unit
    assert (r.min_valid, r.max_valid) == (50, 75)
    assert r.n_valid == 3 and r.p3_violations == 0
    # all equal: no positive gap, min_gap is 0
    r = ss.contextual_report(p, np.array([[400, 400]]))
    assert r.min_gap == Fraction(0) and type(r.min_gap) is Fraction and r.distinct_violations == 1
    assert r.n_valid == 1


def test_contextual_report_reads_float_and_int_outputs_alike():
    p = ss.ShiftPlan(1, 2, 2)
    q = np.array([[128, 2112], [127, 130], [131, 131], [2113, 300]], dtype=np.int64)
    ref = ss.contextual_report(p, q)
    assert ss.contextual_report(p, q.astype(np.float64)) == ref
    assert ss.contextual_report(p, q.astype(object)) == ref
    assert ss.contextual_report(p, q.tolist()) == ref


def test_contextual_report_counts_invalid_ids_inside_the_closed_interval():
    p = ss.ShiftPlan(1, 2, 2)
    qi = np.array([[128, -5], [2112, 2113], [500, 127], [Fraction(257, 2), 10**30]], dtype=object)
    r = ss.contextual_report(p, _Q_VALID, qi)
    assert r.n_invalid == 4  # rows, not entries or columns
    assert r.p4_violations == 4  # 128 (= t_l), 2112 (= t_r), 500, 257/2
    assert ss.contextual_report(p, _Q_VALID, qi[:3]).p4_violations == 3
    assert ss.contextual_report(p, _Q_VALID, qi[:3]).n_invalid == 3
    assert ss.contextual_report(p, _Q_VALID, qi, typo=True).p4_violations == 1  # [512, 2112] units: only 2112
    empty = ss.contextual_report(p, _Q_VALID, np.zeros((0, 2), dtype=np.int64))
    assert (empty.n_invalid, empty.p4_violations) == (0, 0)
    none = ss.contextual_report(p, _Q_VALID, None)
    assert (none.n_invalid, none.p4_violations) == (0, 0)


def test_contextual_report_on_a_real_run_matches_the_recursion():
    d, n, K = 1, 3, 2
    p = ss.ShiftPlan(d, n, K)
    cells = ss.enumerate_cells(d, n, K)
    ref, _, _ = _ctx_ref(ss.ids_from_cells(cells, p).tolist(), d, n, K)
    vals = sorted(v for row in ref for v in row)
    q = ss.contextual_ids(ss.ids_from_cells(cells, p), p)
    r = ss.contextual_report(p, q)
    assert r.n_valid == len(ref) == 8
    assert r.distinct_violations == 0 == len(vals) - len(set(vals))
    assert r.min_gap == Fraction(min(b - a for a, b in itertools.pairwise(vals)), 2 * K)
    assert r.min_gap == 2  # the digest's value for (1, 3, 2) (tests/test_deep_universality)
    assert (r.min_valid, r.max_valid) == (Fraction(vals[0], 4), Fraction(vals[-1], 4))
    assert r.p3_violations == 0
    # invalid sequences: P4 holds (none of their ids in [t_l, t_r])
    invalid = np.zeros_like(cells, dtype=bool)
    invalid[:, 0, 1] = True
    qi = ss.contextual_ids(ss.ids_from_cells(cells, p, invalid=invalid), p)
    r = ss.contextual_report(p, q, qi)
    assert r.n_invalid == 8 and r.p4_violations == 0


# ---------------------------------------------------------------------------------------------
# shift_heads, all_shift_layers


def _heads_literal(plan, b_scale, lam=1.0, dtype=np.float64):
    """Head matrices by hand: W_q = [u, -b], W_k = lam [u, 0], W_v = [u, 0], W_o = scale e_1."""
    u = [float(_pow(plan.K, i)) for i in range(plan.d)]
    out = []
    for b, scale in b_scale:
        wo = np.zeros((plan.d + 1, 1), dtype=dtype)
        wo[0, 0] = scale
        out.append(
            (
                np.array([u + [-float(b)]], dtype=dtype),
                np.array([[lam * x for x in u] + [0.0]], dtype=dtype),
                np.array([u + [0.0]], dtype=dtype),
                wo,
            )
        )
    return out


def _assert_heads(heads, literal, dtype=np.float64):
    assert len(heads) == len(literal)
    for h, lit in zip(heads, literal, strict=True):
        assert isinstance(h, Head)
        for w, ref in zip((h.Wq, h.Wk, h.Wv, h.Wo), lit, strict=True):
            assert w.shape == ref.shape and w.dtype == dtype
            np.testing.assert_array_equal(w, ref)


def test_shift_heads_selective_layer_by_hand():
    p = ss.ShiftPlan(2, 2, 2)  # u = (1, 2), delta / 2 = 1/4, K^d = 4
    lit = _heads_literal(p, [(0.75, 4.0), (1.25, -4.0)])
    _assert_heads(ss.shift_heads(p, Fraction(1)), lit)
    _assert_heads(ss.shift_heads(p, 1.0), lit)  # a float g
    _assert_heads(ss.shift_heads(p, Fraction(1), lam=None), lit)  # lam = None is hardmax use: W_k = [u, 0]
    _assert_heads(ss.shift_heads(p, Fraction(3, 2), lam=2.5), _heads_literal(p, [(1.25, 4.0), (1.75, -4.0)], 2.5))
    _assert_heads(ss.shift_heads(p, Fraction(1), lam=1), lit)


def test_shift_heads_global_layer_by_hand():
    p = ss.ShiftPlan(2, 2, 2)
    assert p.global_scale == 256
    lit = _heads_literal(p, [(0.0, 256.0)])
    _assert_heads(ss.shift_heads(p, None), lit)
    _assert_heads(ss.shift_heads(p, None, lam=3.0), _heads_literal(p, [(0.0, 256.0)], 3.0))


def test_shift_heads_dtype():
    p = ss.ShiftPlan(2, 2, 4)  # delta / 2 = 1/8: biases 5/8 and 7/8 are exact in float32
    lit = _heads_literal(p, [(0.625, 16.0), (0.875, -16.0)], 2.0, dtype=np.float32)
    _assert_heads(ss.shift_heads(p, Fraction(3, 4), lam=2.0, dtype=np.float32), lit, dtype=np.float32)
    _assert_heads(
        ss.shift_heads(p, None, lam=2.0, dtype=np.float32),
        _heads_literal(p, [(0.0, float(p.global_scale))], 2.0, dtype=np.float32),
        dtype=np.float32,
    )
    # the default is float64
    _assert_heads(ss.shift_heads(p, Fraction(3, 4)), _heads_literal(p, [(0.625, 16.0), (0.875, -16.0)]))


def test_all_shift_layers_are_every_valid_id_then_the_global_shift():
    p = ss.ShiftPlan(2, 2, 2)
    gs = _valid_ids(2, 2, 2)
    for lam in (None, 2.5):
        layers = ss.all_shift_layers(p, lam=lam)
        assert len(layers) == len(gs) + 1 == p.n_attention_layers
        lm = 1.0 if lam is None else lam
        for heads, g in zip(layers[:-1], gs, strict=True):
            b = Fraction(g, 4)
            lit = _heads_literal(p, [(b - Fraction(1, 4), 4.0), (b + Fraction(1, 4), -4.0)], lm)
            _assert_heads(heads, lit)
        _assert_heads(layers[-1], _heads_literal(p, [(0.0, 256.0)], lm))
    # lam defaults to None (W_k = [u, 0])
    for a, b in zip(ss.all_shift_layers(p), ss.all_shift_layers(p, lam=None), strict=True):
        for ha, hb in zip(a, b, strict=True):
            np.testing.assert_array_equal(ha.Wk, hb.Wk)


# ---------------------------------------------------------------------------------------------
# batched_attention


def _att_ref(heads, Zb, hard):
    """sum_h W_o W_v sum_k z_k A_kj with explicit loops over keys; A softmax or hardmax (tied maxima averaged)."""
    D, n = Zb.shape
    out = np.zeros((D, n))
    for h in heads:
        Wq, Wk, Wv, Wo = (np.asarray(w, dtype=np.float64) for w in (h.Wq, h.Wk, h.Wv, h.Wo))
        for j in range(n):
            sc = [float((Wk @ Zb[:, k]) @ (Wq @ Zb[:, j])) for k in range(n)]
            top = max(sc)
            w = [1.0 if s == top else 0.0 for s in sc] if hard else [math.exp(s - top) for s in sc]
            tot = sum(w)
            v = sum((w[k] / tot) * (Wv @ Zb[:, k]) for k in range(n))
            out[:, j] += Wo @ v
    return out


def test_batched_attention_random_heads_soft_and_hard():
    rng = np.random.default_rng(7)
    D, s, n, B = 3, 2, 4, 3
    heads = [Head(*(rng.normal(size=(s, D)) for _ in range(3)), rng.normal(size=(D, s))) for _ in range(2)]
    Z = rng.normal(size=(B, D, n))
    got = ss.batched_attention(heads, Z, hard=False)
    assert got.shape == (B, D, n)
    for b in range(B):
        np.testing.assert_allclose(got[b], _att_ref(heads, Z[b], False), rtol=1e-12, atol=1e-13)
    # hardmax with exact ties: integer weights and tokens, a repeated column
    iheads = [Head(*(rng.integers(-2, 3, size=(s, D)).astype(float) for _ in range(3)), np.eye(D, s)) for _ in range(2)]
    Zi = rng.integers(-2, 3, size=(B, D, n)).astype(float)
    Zi[:, :, 3] = Zi[:, :, 1]
    got = ss.batched_attention(iheads, Zi, hard=True)
    for b in range(B):
        np.testing.assert_allclose(got[b], _att_ref(iheads, Zi[b], True), rtol=1e-14, atol=1e-14)
    # a single head in a tuple is the one-head sum
    one = ss.batched_attention(heads[:1], Z, hard=False)
    two = ss.batched_attention(heads, Z, hard=False)
    np.testing.assert_allclose(two - one, ss.batched_attention(heads[1:], Z, hard=False), rtol=1e-12, atol=1e-13)


def test_batched_attention_softmax_subtracts_each_column_max():
    # scores lam x_k x_j up to +-1000 (exp overflows without the shift); column x_j = 0 has all scores 0
    x = np.array([-10.0, 0.0, 5.0, 10.0])
    Z = np.stack([np.stack([x, np.ones(4)]), np.stack([x[::-1], np.ones(4)])])  # (2, 2, 4)
    head = Head(np.array([[1.0, 0.0]]), np.array([[10.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[1.0], [0.0]]))
    for hard in (False, True):
        got = ss.batched_attention([head], Z, hard=hard)
        assert np.isfinite(got).all()
        for b in range(2):
            np.testing.assert_allclose(got[b], _att_ref([head], Z[b], hard), rtol=1e-13, atol=1e-13)
    got = ss.batched_attention([head], Z, hard=False)
    assert got[0, 0, 3] == pytest.approx(10.0, rel=1e-12, abs=0.0)  # x_j = 10 attends to x_k = 10
    assert got[0, 0, 1] == pytest.approx(1.25, rel=1e-12, abs=0.0)  # x_j = 0: the mean of x
    assert got[0, 0, 0] == pytest.approx(-10.0, rel=1e-12, abs=0.0)


def test_batched_attention_of_shift_heads_is_the_id_shift():
    d, n, K = 2, 2, 2
    p = ss.ShiftPlan(d, n, K)
    cells = ss.enumerate_cells(d, n, K)  # (16, 2, 2)
    Z = np.concatenate([np.arange(n)[None, None, :] + cells / K, np.ones((len(cells), 1, n))], axis=1)
    ids = [[sum(_pow(K, i) * Fraction(Z[b, i, j]) for i in range(d)) for j in range(n)] for b in range(len(Z))]
    for g in (Fraction(1), Fraction(7, 2), None):
        for hard, lam in ((True, None), (False, 200.0)):
            out = ss.batched_attention(ss.shift_heads(p, g, lam=lam), Z, hard=hard)
            assert (out[:, 1:, :] == 0).all()
            for b, row in enumerate(ids):
                if g is None:
                    ref = [p.global_scale * v for v in _xi_ref(row, 0)]
                else:
                    lo, hi = _xi_ref(row, g - Fraction(1, 4)), _xi_ref(row, g + Fraction(1, 4))
                    ref = [p.shift_scale * (a - c) for a, c in zip(lo, hi, strict=True)]
                if hard:
                    assert out[b, 0].tolist() == [float(v) for v in ref]
                else:  # lam 200 against score gaps >= 1/4: within e^-50 of the hardmax
                    np.testing.assert_allclose(out[b, 0], [float(v) for v in ref], rtol=0, atol=1e-12)


def test_batched_attention_keeps_float32():
    p = ss.ShiftPlan(2, 2, 4)
    Z = np.concatenate([np.arange(2)[None, None, :] + np.array([[[1, 2], [3, 0]]]) / 4, np.ones((1, 1, 2))], axis=1)
    Z32 = Z.astype(np.float32)
    for hard in (True, False):
        h32 = ss.shift_heads(p, Fraction(3, 4), lam=4.0, dtype=np.float32)
        got = ss.batched_attention(h32, Z32, hard=hard)
        assert got.dtype == np.float32
        ref = ss.batched_attention(ss.shift_heads(p, Fraction(3, 4), lam=4.0), Z, hard=hard)
        assert ref.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
