"""constructions.quantization pinned against independent arithmetic (loops, Fractions, mpmath), every default,
every ValueError boundary and the dtype handling: what tests/test_quantization.py leaves to chance."""

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from constructions import quantization as q
from constructions.precision import gamma

U = 2.0**-53


# ---------------------------------------------------------------------------------------------
# check_K, grid levels, cells, quantizers
# ---------------------------------------------------------------------------------------------


def test_check_K_accepts_integers_and_rejects_the_rest():
    assert q.check_K(1) == 1 and type(q.check_K(1)) is int
    assert q.check_K(3.0) == 3 and type(q.check_K(3.0)) is int
    assert q.check_K(np.int64(7)) == 7 and q.check_K(np.float64(2.0)) == 2
    assert q._check_K is q.check_K or q._check_K(5) == 5
    for bad in (True, False, "3", None, [2], 0, 0.5, 2.5, -1, np.float64(1.5)):
        with pytest.raises(ValueError):
            q.check_K(bad)


def test_grid_levels_are_k_over_K():
    for K in (1, 2, 7):
        g = q.grid_levels(K)
        assert g.dtype == np.float64 and g.tolist() == [k / K for k in range(K)]


def _cell(t, K):
    return min(max(math.floor(float(t) * K), 0), K - 1)


def test_cell_index_quantize_and_centres_against_a_loop():
    rng = np.random.default_rng(3)
    for K in (1, 2, 5, 10):
        t = np.concatenate([rng.uniform(-0.3, 1.3, size=40), np.arange(K + 1) / K, [-1e-300, 1.0, 1.5]])
        ci = q.cell_index(t, K)
        assert ci.dtype == np.int64
        assert ci.tolist() == [_cell(x, K) for x in t]
        assert q.quantize(t, K).tolist() == [_cell(x, K) / K for x in t]
        cq = q.centred_quantize(t, K)
        assert cq.tolist() == [(_cell(x, K) + 0.5) / K for x in t]
        for c, x in zip(cq, t, strict=True):  # the cell centre (2k + 1) / (2K), correctly rounded
            assert abs(Fraction(c) - Fraction(2 * _cell(x, K) + 1, 2 * K)) <= Fraction(c) * Fraction(1, 2**53)
    assert q.cell_index([-0.5, -0.01], 4).tolist() == [0, 0]  # clipped below at 0


def test_cell_index_reads_float32_in_float64():
    x = np.array([np.float32(0.7), np.float32(0.9)], dtype=np.float32)
    # float64(0.7f) * 10 = 6.99999988..., floor 6; the float32 product rounds to 7.0
    assert q.cell_index(x, 10).tolist() == [math.floor(float(v) * 10) for v in x] == [6, 8]
    assert q.quantize(x, 10).tolist() == [0.6, 0.8]


def test_surrogate_composition_and_K():
    calls = []

    def f(X):
        calls.append(np.array(X))
        return 1.0 - np.asarray(X)

    fbar = q.surrogate(f, 4.0)
    assert fbar.K == 4 and type(fbar.K) is int
    X = np.array([[0.1, 0.3, 0.99]])
    out = fbar(X)
    assert calls[-1].tolist() == [[0.0, 0.25, 0.75]]
    assert out.tolist() == [[(_cell(1 - v, 4) + 0.5) / 4 for v in (0.0, 0.25, 0.75)]]
    with pytest.raises(ValueError):
        q.surrogate(f, 2.5)


# ---------------------------------------------------------------------------------------------
# grid order
# ---------------------------------------------------------------------------------------------


def _digits(i, n, K):
    out = []
    for _ in range(n):
        out.append(i % K)
        i //= K
    return out[::-1]


def test_grid_size_exact():
    assert q.grid_size(3, 5, 7) == 7**15 and type(q.grid_size(3, 5, 7)) is int
    assert q.grid_size(2, 1, 3.0) == 9 and q.grid_size(1, 1, 1) == 1
    with pytest.raises(ValueError):
        q.grid_size(1, 1, 0)


def test_grid_index_and_cells_against_python_digits():
    rng = np.random.default_rng(4)
    for d, L, K in ((2, 3, 3), (3, 1, 4), (1, 4, 2), (2, 2, 5)):
        cells = rng.integers(0, K, size=(6, d, L))
        idx = q.grid_index(cells, K)
        ref = [sum(int(v) * K ** (d * L - 1 - r) for r, v in enumerate(c.T.ravel())) for c in cells]
        assert idx.dtype == np.int64 and idx.tolist() == ref
        back = q.grid_cells(np.array(ref), d, L, K)
        assert back.dtype == np.int64 and back.shape == (6, d, L)
        for i, c in zip(ref, back, strict=True):
            assert c.T.ravel().tolist() == _digits(i, d * L, K)
        assert np.array_equal(back, cells)
        one = q.grid_cells(ref[1], d, L, K)
        assert one.shape == (d, L) and np.array_equal(one, cells[1])
        two = q.grid_cells(np.array(ref).reshape(2, 3), d, L, K)  # any index array is read flat
        assert two.shape == (6, d, L) and np.array_equal(two, cells)
    arr = np.array([5, 7])
    q.grid_cells(arr, 1, 3, 2)
    assert arr.tolist() == [5, 7]  # the caller's array is not consumed


def test_grid_cells_reads_float_indices_as_int64():
    i = 2**60  # exact as a float, beyond 2^53: float arithmetic would lose the low digits
    got = q.grid_cells(np.array([float(i)]), 2, 19, 3)[0]
    assert got.T.ravel().tolist() == _digits(i, 38, 3)


def test_all_grid_points_order_values_and_budget():
    d, L, K = 2, 2, 3
    G = q.all_grid_points(d, L, K)
    assert G.shape == (81, d, L) and G.dtype == np.float64
    for i in (0, 1, 5, 27, 80):
        assert G[i].T.ravel().tolist() == [v / K for v in _digits(i, d * L, K)]
    G3 = q.all_grid_points(1, 3, 2)
    assert [g[0].tolist() for g in G3] == [[a / 2, b / 2, c / 2] for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    assert q.all_grid_points(2, 1, 2).shape == (4, 2, 1)
    big = q.all_grid_points(2, 2, 32)  # N d L = 2^20 * 4 = 2^22: exactly the budget, allowed
    assert big.shape == (2**20, 2, 2) and big[-1].tolist() == [[31 / 32] * 2] * 2
    with pytest.raises(ValueError, match="budget"):
        q.all_grid_points(2, 2, 33)
    with pytest.raises(ValueError, match="budget"):
        q.all_grid_points(1, 4, 33)  # 33^4 * 4 entries (> 2^22) although 33^4 / 4 is not
    with pytest.raises(ValueError, match="budget"):
        q.all_grid_points(4, 1, 33)


def test_lookup_table_is_the_centred_surrogate_on_the_grid():
    d, L, K = 1, 2, 3
    T = q.lookup_table(lambda G: G[..., ::-1] * 0.5 + 0.2, d, L, K)
    G = q.all_grid_points(d, L, K)
    for i in range(K**2):
        y = G[i][..., ::-1] * 0.5 + 0.2
        assert T[i].tolist() == [[(_cell(v, K) + 0.5) / K for v in y[0]]]


# ---------------------------------------------------------------------------------------------
# choose_K and the sup bound
# ---------------------------------------------------------------------------------------------


def _bound(C, d, L, alpha, K):
    return (C + 0.5) / K * (d * L) ** (1.0 / alpha)


def test_choose_K_formula_minimality_and_sup_bound():
    for C, d, L, alpha, eps in (
        (0.0, 1, 1, 1.0, 0.1),
        (1.5, 2, 3, 2.0, 0.1),
        (0.3, 3, 1, 3.0, 0.07),
        (2.0, 1, 5, 1.5, 1.0),
    ):
        K = q.choose_K(C, d, L, alpha, eps)
        assert K == math.ceil(3.0 * (C + 0.5) * (d * L) ** (1.0 / alpha) / eps) and type(K) is int
        assert _bound(C, d, L, alpha, K) <= eps / 3 * (1 + 1e-12)
        assert _bound(C, d, L, alpha, K - 1) > eps / 3  # smallest such K
        assert q.surrogate_sup_bound(C, d, L, alpha, K) == pytest.approx(_bound(C, d, L, alpha, K), rel=1e-14, abs=0.0)
    assert q.surrogate_sup_bound(1.0, 2, 3, 2.0, 4) == pytest.approx(1.5 / 4 * math.sqrt(6), rel=1e-14, abs=0.0)
    assert q.surrogate_sup_bound(0.0, 4, 1, 1.0, 2) == pytest.approx(1.0, rel=1e-14, abs=0.0)
    assert q.surrogate_sup_bound(0.25, 1, 3, 1.0, 3) == pytest.approx(0.75, rel=1e-14, abs=0.0)


def test_choose_K_boundaries():
    assert q.choose_K(0.0, 1, 1, 1.0, 1.5) == 1  # C = 0, alpha = 1, d = L = 1 are all allowed
    assert q.choose_K(0.0, 2, 1, 1.0, 3.0) == 1
    for C, d, L, alpha, eps in (
        (1.0, 1, 1, 1.0, math.inf),
        (1.0, 1, 1, 1.0, math.nan),
        (1.0, 1, 1, 1.0, 0.0),
        (math.inf, 1, 1, 1.0, 0.1),
        (math.nan, 1, 1, 1.0, 0.1),
        (-1e-9, 1, 1, 1.0, 0.1),
        (1.0, 1, 1, math.inf, 0.1),
        (1.0, 1, 1, math.nan, 0.1),
        (1.0, 1, 1, 0.999, 0.1),
        (1.0, 1.5, 1, 1.0, 0.1),
        (1.0, 0, 1, 1.0, 0.1),
        (1.0, 1, 1.5, 1.0, 0.1),
        (1.0, 1, 0, 1.0, 0.1),
        (1.0, 2.5, 2, 1.0, 0.1),
        (1.0, 2, 2.5, 1.0, 0.1),
    ):
        with pytest.raises(ValueError):
            q.choose_K(C, d, L, alpha, eps)


# ---------------------------------------------------------------------------------------------
# positional encoding, breakpoints, weights, ffn_apply
# ---------------------------------------------------------------------------------------------


def test_positional_encoding_loop():
    E = q.positional_encoding(3, 4)
    assert E.dtype == np.float64 and E.tolist() == [[float(c + 1) for c in range(4)] for _ in range(3)]


def test_breakpoint_gap_loop_and_empty():
    tb = np.array([0.25, 0.5, 0.75])
    Z = np.array([[-1.0, 0.0, 0.25, 0.3, 0.5, 0.6, 0.74, 0.75, 0.9]])
    ref = [[next((b - z for b in tb if b > z), math.inf) for z in Z[0]]]
    assert q.breakpoint_gap(tb, Z).tolist() == ref
    assert q.breakpoint_gap(tb, [0.6]).tolist() == [0.75 - 0.6]
    e = q.breakpoint_gap(np.array([]), [[0.1, 0.2, 0.3]])
    assert e.shape == (1, 3) and e.dtype == np.float64 and np.all(np.isinf(e))


def test_ff1_breakpoints_and_default():
    base, tb = q.ff1_breakpoints(3, 2)
    assert base == 1.0 and tb.dtype == np.float64 and tb.tolist() == [1.0 + b / 3 for b in range(1, 6)]
    base0, tb0 = q.ff1_breakpoints(4, 5, False)
    assert base0 == 0.0 and tb0.tolist() == [b / 4 for b in range(1, 4)]
    b2, t2 = q.ff1_breakpoints(4, 5, True)
    assert b2 == 1.0 and np.array_equal(t2, q.ff1_breakpoints(4, 5)[1]) and t2.size == 19


def _weights_ref(d, K, n, eta, positional):
    base = 1.0 if positional else 0.0
    nb = n * K - 1 if positional else K - 1
    tb = [base + b / K for b in range(1, nb + 1)]
    per = 2 * nb + 1
    W1, b1, W2 = np.zeros((d * per, d)), np.zeros(d * per), np.zeros((d, d * per))
    for i in range(d):
        for k, t in enumerate(tb):
            r = i * per + 2 * k
            W1[r, i] = W1[r + 1, i] = 1.0 / eta
            b1[r], b1[r + 1] = 1.0 - t / eta, -t / eta
            W2[i, r], W2[i, r + 1] = 1.0 / K, -1.0 / K
        W1[i * per + 2 * nb, i] = 1.0
        W2[i, i * per + 2 * nb] = -1.0
    return W1, b1, W2, np.full(d, base)


@pytest.mark.parametrize("positional", [True, False])
def test_ff1_weights_layout(positional):
    for d, K, n, eta in ((1, 3, 2, 0.05), (3, 4, 2, 0.01)):
        got = q.ff1_weights(d, K, n, eta, positional)
        for a, b in zip(got, _weights_ref(d, K, n, eta, positional), strict=True):
            assert a.shape == b.shape and np.array_equal(a, b)
    default = q.ff1_weights(2, 3, 2, 0.05)
    for a, b in zip(default, _weights_ref(2, 3, 2, 0.05, True), strict=True):
        assert np.array_equal(a, b)


def test_ff1_weights_budget_boundary():
    W1, _, W2, _ = q.ff1_weights(400, 13, 1, 0.01, False)  # H d = 400 * 25 * 400 = 4e6: allowed
    assert W1.shape == (10_000, 400) and W2.shape == (400, 10_000)
    with pytest.raises(ValueError, match="budget"):
        q.ff1_weights(400, 14, 1, 0.01, False)


def test_ffn_apply_loop_and_budget():
    rng = np.random.default_rng(5)
    W1, b1 = rng.normal(size=(5, 2)), rng.normal(size=5)
    W2, b2 = rng.normal(size=(2, 5)), rng.normal(size=2)
    Z = rng.normal(size=(2, 3))
    out = q.ffn_apply(W1, b1, W2, b2, Z)
    for j in range(3):
        h = [max(sum(W1[r, c] * Z[c, j] for c in range(2)) + b1[r], 0.0) for r in range(5)]
        for i in range(2):
            ref = Z[i, j] + sum(W2[i, r] * h[r] for r in range(5)) + b2[i]
            assert out[i, j] == pytest.approx(ref, rel=1e-12, abs=1e-14)
    with pytest.raises(ValueError, match="budget"):  # 5000 hidden x 5000 tokens > 2e7
        q.ffn_apply(np.ones((5000, 1)), np.zeros(5000), np.ones((1, 5000)), np.zeros(1), np.ones((1, 5000)))
    H, n = 20_000, 1000  # exactly the budget: allowed
    out = q.ffn_apply(np.ones((H, 1)), np.zeros(H), np.full((1, H), 1e-4), np.zeros(1), np.full((1, n), 0.5))
    assert out.shape == (1, n) and out[0, 0] == pytest.approx(0.5 + 1.0, rel=1e-12, abs=0.0)


# ---------------------------------------------------------------------------------------------
# rounding floors against a loop over the documented formula
# ---------------------------------------------------------------------------------------------


def test_gammas_table():
    g = q._gammas(np.array([[1, 2], [3, 3]]), 1e-3)
    assert g.dtype == np.float64 and g.tolist() == [[gamma(1, 1e-3), gamma(2, 1e-3)], [gamma(3, 1e-3)] * 2]
    assert q._gammas([0, 4], 0.01).tolist() == [0.0, 4 * 0.01 / (1 - 4 * 0.01)]
    e = q._gammas(np.zeros(0, dtype=np.int64), U)
    assert e.shape == (0,) and e.dtype == np.float64


def _rf_ref(W1, b1, W2, b2, Z, u):
    """ffn_rounding_floor term by term; fl(a) = W1 z + b1 is the documented intermediate."""
    W1, b1, W2, b2, Z = (np.asarray(w, dtype=np.float64) for w in (W1, b1, W2, b2, Z))
    H, d = W1.shape
    pre = W1 @ Z + b1[:, None]
    out = np.zeros(Z.shape)
    for j in range(Z.shape[1]):
        e_live, live = [], []
        for r in range(H):
            A = sum(abs(W1[r, c]) * abs(Z[c, j]) for c in range(d)) + abs(b1[r])
            k1 = sum(1 for c in range(d) if W1[r, c] != 0) + 1
            e_a = gamma(k1, u) * A
            live.append(pre[r, j] > -2.0 * e_a)
            e_live.append(e_a if live[-1] else 0.0)
        for i in range(W2.shape[0]):
            k2 = sum(1 for r in range(H) if live[r] and W2[i, r] != 0)
            g = gamma(k2 + 2, u)
            s = sum(abs(W2[i, r]) * e_live[r] for r in range(H))
            mag = abs(Z[i, j]) + abs(b2[i]) + sum(abs(W2[i, r]) * (max(pre[r, j], 0.0) + e_live[r]) for r in range(H))
            out[i, j] = (1.0 + g) * s + g * mag
    return out


def test_ffn_rounding_floor_matches_the_formula():
    rng = np.random.default_rng(6)
    for trial in range(6):
        d, H = int(rng.integers(1, 4)), int(rng.integers(1, 7))
        W1 = rng.normal(size=(H, d)) * (rng.uniform(size=(H, d)) < 0.7)
        b1 = rng.normal(size=H) * (rng.uniform(size=H) < 0.7)
        W2 = rng.normal(size=(d, H)) * (rng.uniform(size=(d, H)) < 0.7)
        b2 = rng.normal(size=d)
        Z = rng.normal(size=(d, 5))
        for u in (U, 1e-3, 0.02):
            got = q.ffn_rounding_floor(W1, b1, W2, b2, Z, u)
            assert got == pytest.approx(_rf_ref(W1, b1, W2, b2, Z, u), rel=1e-12, abs=0.0), (trial, u)
    assert np.array_equal(q.ffn_rounding_floor(W1, b1, W2, b2, Z), q.ffn_rounding_floor(W1, b1, W2, b2, Z, U))
    assert not np.array_equal(
        q.ffn_rounding_floor(W1, b1, W2, b2, Z), q.ffn_rounding_floor(W1, b1, W2, b2, Z, 2.0**-24)
    )


def test_ffn_rounding_floor_live_threshold_and_dead_units():
    u = U
    # unit 0: a = 1 - (1 + 10u) = -10u exactly, e_a = gamma_2 * (2 + 10u) ~ 4u: dead (a < -2 e_a), but within 3 e_a
    # unit 1: zero row, zero bias: a = e_a = 0, dead (0 > 0 fails) although its W2 weight is nonzero
    # unit 2: a ~ 0 with a large A: live, its e_a dominates the magnitude
    W1 = np.array([[1.0], [0.0], [1e10]])
    b1 = np.array([-(1.0 + 10 * u), 0.0, -1.0])
    W2 = np.array([[0.5, 3.0, 0.25]])
    b2 = np.array([0.0])
    Z = np.array([[1.0, 1e-10, 0.0]])
    for uu in (u, 1e-4):
        got = q.ffn_rounding_floor(W1, b1, W2, b2, Z, uu)
        assert got == pytest.approx(_rf_ref(W1, b1, W2, b2, Z, uu), rel=1e-12, abs=0.0)
    got = q.ffn_rounding_floor(W1[:2], b1[:2], W2[:, :2], b2, Z[:, :1], u)
    assert got[0, 0] == pytest.approx(gamma(2, u) * 1.0, rel=1e-14, abs=0.0)  # both dead: only z + 0 + b2 rounds
    # a single live unit: g = gamma_3, e_a = gamma_2 * 2
    got = q.ffn_rounding_floor(np.array([[1.0]]), np.array([1.0]), np.array([[2.0]]), np.array([0.5]), [[1.0]], u)
    e = gamma(2, u) * 2.0
    ref = (1 + gamma(3, u)) * 2.0 * e + gamma(3, u) * (1.0 + 0.5 + 2.0 * (2.0 + e))
    assert got[0, 0] == pytest.approx(ref, rel=1e-14, abs=0.0)


# ---------------------------------------------------------------------------------------------
# FF1Quantizer
# ---------------------------------------------------------------------------------------------


def test_ff1_validation_boundaries():
    F = q.FF1Quantizer(1, 4.0, 1, 1e-9)
    assert F.K == 4 and type(F.K) is int and F.positional is True and F.d == 1
    assert q.FF1Quantizer(1, 1, 1, 0.49).hidden_width == 1  # K = 1, n = 1: no breakpoint, one identity unit
    for kw, match in (
        ({"d": 1.5}, "d must"),
        ({"d": 0}, "d must"),
        ({"n_positions": 1.5}, "n_positions"),
        ({"n_positions": 0}, "n_positions"),
        ({"eta": 0.0}, "eta"),
        ({"eta": 0.125}, "eta"),
        ({"eta": math.inf}, "eta"),
        ({"eta": math.nan}, "eta"),
        ({"eta": -0.01}, "eta"),
        ({"K": 2.5}, "integer"),
    ):
        args = {"d": 1, "K": 4, "n_positions": 2, "eta": 0.01} | kw
        with pytest.raises(ValueError, match=match):
            q.FF1Quantizer(**args)
    F = q.FF1Quantizer(2, 3, 2, 0.01)
    for w in (F.W1, F.b1, F.W2, F.b2):
        assert not w.flags.writeable
    for a, b in zip((F.W1, F.b1, F.W2, F.b2), _weights_ref(2, 3, 2, 0.01, True), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("positional", [True, False])
def test_ff1_properties(positional):
    d, K, n, eta = 2, 5, 3, 0.02
    F = q.FF1Quantizer(d, K, n, eta, positional)
    nb = n * K - 1 if positional else K - 1
    assert F.delta == 1 / 5 and F.base == (1.0 if positional else 0.0) and F.hidden_width == d * (2 * nb + 1)
    assert F.breakpoints.tolist() == [F.base + b / K for b in range(1, nb + 1)]
    E = F.encoding()
    assert E.shape == (d, n) and E.tolist() == [[(c + 1.0) if positional else 0.0 for c in range(n)]] * d
    assert F.encoding(2).tolist() == [[(c + 1.0) if positional else 0.0 for c in range(2)]] * d
    assert F.per_coordinate_ramp_measure() == pytest.approx((K if positional else K - 1) * eta, rel=1e-15, abs=0.0)
    assert F.ramp_measure_bound() == pytest.approx(d * n * (K if positional else K - 1) * eta, rel=1e-15, abs=0.0)
    assert F.ramp_measure_bound(7) == pytest.approx(d * 7 * (K if positional else K - 1) * eta, rel=1e-15, abs=0.0)


def test_ff1_default_is_positional():
    a, b = q.FF1Quantizer(1, 3, 2, 0.01), q.FF1Quantizer(1, 3, 2, 0.01, True)
    assert np.array_equal(a.W1, b.W1) and np.array_equal(a.b1, b.b1) and a.base == 1.0


def test_in_ramp_set_edge_is_open():
    eta = 2.0**-8
    F = q.FF1Quantizer(1, 4, 2, eta)
    t = np.array([[1.25 - eta, 1.25 - eta + 2.0**-20, 1.25, 2.75 - eta / 2]])
    assert (1.25 - (1.25 - eta)) == eta
    assert F.in_ramp_set(t).tolist() == [[False, True, False, True]]


@pytest.mark.parametrize("positional", [True, False])
def test_staircase_loop(positional):
    F = q.FF1Quantizer(1, 4, 2, 0.01, positional)
    tb = F.breakpoints
    t = np.array([[F.base - 0.3, F.base, tb[0], tb[0] - 1e-9, tb[2] + 0.01, tb[-1], tb[-1] + 1.0]])
    ref = [[F.base + sum(1 for b in tb if z >= b) / 4 for z in t[0]]]
    assert F.staircase(t).tolist() == ref and F.staircase([0.3]).shape == (1,)


@pytest.mark.parametrize("positional", [True, False])
def test_quantize_tokens_and_decode_cells(positional):
    d, K, n = 2, 5, 3
    F = q.FF1Quantizer(d, K, n, 0.001, positional)
    X = (np.arange(d * n).reshape(d, n) % K + 0.5) / K  # cell centres, off the ramp set
    X[0, 0] = 0.33
    E = F.encoding(n)
    got = F.quantize_tokens(X)
    assert np.array_equal(got, q.ffn_apply(F.W1, F.b1, F.W2, F.b2, X + E) - E)
    assert np.allclose(got, q.quantize(X, K), rtol=0, atol=1e-12)
    assert np.array_equal(F.quantize_tokens(X.tolist()), got)
    Y = E + np.array([[0.0, 0.4, 0.61], [-0.3, 1.7, 0.79]])
    cells = F.decode_cells(Y)
    assert cells.dtype == np.int64
    assert cells.tolist() == [[min(max(round(v * K), 0), K - 1) for v in row] for row in Y - E]
    assert cells.tolist() == [[0, 2, 3], [0, 4, 4]]
    assert F.decode_cells(Y.tolist()).tolist() == cells.tolist()


def test_ff1_call_routes_ctx_to_mpmath():
    F = q.FF1Quantizer(1, 3, 2, 0.02)
    ctx = mpmath.MPContext()
    ctx.dps = 50
    Z = [[Fraction(7, 6), Fraction(17, 6)]]
    Zm = [[ctx.mpf(7) / 6, ctx.mpf(17) / 6]]
    out = F(Zm, ctx)
    assert abs(out[0, 1] - (2 + ctx.mpf(2) / 3)) < ctx.mpf(10) ** -45  # evaluated at 50 digits, not 15
    assert abs(out[0, 0] - 1) < ctx.mpf(10) ** -45
    assert F(np.array([[7 / 6, 17 / 6]])).shape == (1, 2)
    assert Z[0][0] == Fraction(7, 6)


# ---------------------------------------------------------------------------------------------
# staircase_floor against a loop
# ---------------------------------------------------------------------------------------------


def _staircase_floor_ref(F, Z, u):
    Z = np.asarray(Z, dtype=np.float64)
    pre = F.W1 @ Z + F.b1[:, None]
    H = F.W1.shape[0]
    out = _rf_ref(F.W1, F.b1, F.W2, F.b2, Z, u)
    for j in range(Z.shape[1]):
        A = [sum(abs(F.W1[r, c]) * abs(Z[c, j]) for c in range(F.d)) + abs(F.b1[r]) for r in range(H)]
        live = [pre[r, j] > -2.0 * gamma(F.d + 1, u) * A[r] for r in range(H)]
        for i in range(F.d):
            rep = gamma(4, u) * sum(abs(F.W2[i, r]) * A[r] for r in range(H) if live[r])
            out[i, j] += rep + gamma(2, u) * (F.base + abs(Z[i, j]) + 1.0)
    return out


def _near_breakpoints(F, n_ulps=24):
    pts = []
    for t in F.breakpoints:
        x = t
        pts.append(t)
        for _ in range(n_ulps):
            x = np.nextafter(x, -np.inf)
            pts.append(x)
        pts += [t - F.eta, t - 3 * F.eta, t + 0.5 / F.K]
    return np.array(pts)


@pytest.mark.parametrize("d, positional", [(1, True), (1, False), (2, True)])
def test_staircase_and_rounding_floor_match_the_formula(d, positional):
    F = q.FF1Quantizer(d, 3, 2, 0.01, positional)
    p = _near_breakpoints(F)
    Z = np.stack([p, p[::-1]])[:d]
    Z = np.concatenate([Z, np.full((d, 2), 0.0), np.full((d, 1), -0.5)], axis=1)
    for u in (U, 1e-4):
        assert F.rounding_floor(Z, u) == pytest.approx(_rf_ref(F.W1, F.b1, F.W2, F.b2, Z, u), rel=1e-12, abs=0.0)
        assert F.staircase_floor(Z, u) == pytest.approx(_staircase_floor_ref(F, Z, u), rel=1e-12, abs=0.0)
    assert np.array_equal(F.rounding_floor(Z), F.rounding_floor(Z, U))
    assert np.array_equal(F.staircase_floor(Z), F.staircase_floor(Z, U))
    assert np.array_equal(F.staircase_floor(Z.tolist()), F.staircase_floor(Z))
    assert not np.array_equal(F.staircase_floor(Z), F.staircase_floor(Z, 2.0**-30))


# ---------------------------------------------------------------------------------------------
# mpmath network, its breakpoints and its floor
# ---------------------------------------------------------------------------------------------


def _ff1_exact(t, K, n, eta, positional):
    """The FF1 network in exact rationals (eta read as its float value)."""
    base = 1 if positional else 0
    nb = n * K - 1 if positional else K - 1
    e = Fraction(eta)
    acc = base - max(t, 0)
    for b in range(1, nb + 1):
        a0 = (t - (base + Fraction(b, K))) / e
        acc += Fraction(1, K) * (max(a0 + 1, 0) - max(a0, 0))
    return t + acc


@pytest.mark.parametrize("positional", [True, False])
def test_ff1_apply_mp_against_rationals(positional):
    K, n, eta = 3, 2, 0.05
    ctx = mpmath.MPContext()
    ctx.dps = 60
    tb = [(1 if positional else 0) + Fraction(b, K) for b in range(1, (n * K if positional else K))]
    toks = [Fraction(-1, 2), Fraction(0), Fraction(1, 7), tb[0] - Fraction(1, 40), tb[0], tb[-1] - Fraction(1, 100)]
    toks += [tb[1] + Fraction(1, 100), Fraction(5, 2), Fraction(13, 4)]
    rows = [toks, toks[::-1]]
    Z = [[ctx.mpf(t.numerator) / t.denominator for t in r] for r in rows]
    out = q.ff1_apply_mp(Z, ctx, 2, K, n, eta, positional)
    assert (out.rows, out.cols) == (2, len(toks))
    for i, r in enumerate(rows):
        for j, t in enumerate(r):
            ex = _ff1_exact(t, K, n, eta, positional)
            assert abs(out[i, j] - ctx.mpf(ex.numerator) / ex.denominator) < ctx.mpf(10) ** -55, (i, j, t)
    F = q.FF1Quantizer(2, K, n, eta, positional)
    assert F.apply_mp(Z, ctx) == out and F(ctx.matrix(Z)) == out
    if positional:
        assert q.ff1_apply_mp(Z, ctx, 2, K, n, eta) == out


def test_ff1_apply_mp_context_default_and_rows():
    ctx = mpmath.MPContext()
    ctx.dps = 50
    M = ctx.matrix([[ctx.mpf(5) / 3 + ctx.mpf(1) / 7]])
    out = q.ff1_apply_mp(M, None, 1, 3, 2, 0.01)
    assert out.ctx is ctx and abs(out[0, 0] - ctx.mpf(5) / 3) < ctx.mpf(10) ** -45  # Z.ctx, 50 digits
    lst = q.ff1_apply_mp([[1.5]], None, 1, 3, 2, 0.01)
    assert lst.ctx is mpmath.mp and lst[0, 0] == mpmath.mpf(1) + mpmath.mpf(1) / 3
    with pytest.raises(ValueError, match="rows"):
        q.ff1_apply_mp([[1.5], [1.5]], ctx, 1, 3, 2, 0.01)
    with pytest.raises(ValueError, match="budget"):  # 11 breakpoints x 50000 tokens x 2 rows > 1e6
        q.ff1_apply_mp([[1.5] * 50_000] * 2, ctx, 2, 4, 3, 0.01)


def test_is_mp_matrix_needs_all_three_attributes():
    class RowsCols:
        rows, cols = 1, 1

    class Ctx:
        ctx = None

    assert q._is_mp_matrix(mpmath.matrix([[1]])) and not q._is_mp_matrix([[1.0]])
    assert not q._is_mp_matrix(RowsCols()) and not q._is_mp_matrix(Ctx())
    ctx = mpmath.MPContext()
    assert q._mp_rows(mpmath.matrix([[1, 2], [3, 4]]), ctx) == [[1, 2], [3, 4]]
    assert q._mp_rows([[0.5, 2]], ctx) == [[ctx.mpf(0.5), ctx.mpf(2)]]


@pytest.mark.parametrize("positional", [True, False])
def test_ff1_breakpoints_mp_exact(positional):
    ctx = mpmath.MPContext()
    ctx.dps = 50
    base, tbs = q.ff1_breakpoints_mp(ctx, 7, 2, positional)
    b0 = 1 if positional else 0
    assert base == b0 and isinstance(base, ctx.mpf)
    nb = 2 * 7 - 1 if positional else 6
    assert len(tbs) == nb and all(t == b0 + ctx.mpf(b) / 7 for b, t in enumerate(tbs, start=1))
    if positional:
        assert q.ff1_breakpoints_mp(ctx, 7, 2) == (base, tbs)


def _mp_floor_ref(prec, K, n, eta, positional, tokens=None):
    base = 1.0 if positional else 0.0
    nb = n * K - 1 if positional else K - 1
    tbs = [base + b / K for b in range(1, nb + 1)]
    span = n if positional else 1
    if tokens is None:
        tokens = [base + j * 0.5 / K for j in range(2 * span * K + 1)]
    pers = []
    for t in tokens:
        per = 3.0 * (2 * n + 3)
        for tb in tbs:
            diff = float(t) - tb
            a = abs(diff) / eta
            near, above = abs(diff) <= 2 * eta, diff > 2 * eta
            if near or above:
                s = 2 * (a + 3) + (2 * a + 2 * (abs(tb) + 1) / eta if near else 0.0)
                per += (s + 3) / K + (n + 3)
        pers.append(1.01 * per * 2.0**-prec)
    return pers


@pytest.mark.parametrize("positional", [True, False])
def test_ff1_mp_floor_matches_the_formula(positional):
    for K, n, eta, prec in ((3, 2, 0.05, 100), (5, 3, 0.003, 200), (2, 1, 0.2, 60)):
        ctx = mpmath.MPContext()
        ctx.prec = prec
        tok = np.array(list(_near_breakpoints(q.FF1Quantizer(1, K, n, eta, positional), 2)) + [0.0, -0.5, 7.0])
        tok = np.concatenate([tok, tok - eta * 1.99, tok + eta * 2.01])
        got = q.ff1_mp_floor(ctx, K, n, eta, positional, tokens=tok)
        ref = _mp_floor_ref(prec, K, n, eta, positional, tok)
        assert got.shape == tok.shape and isinstance(got[0], ctx.mpf)
        for g, r in zip(got, ref, strict=True):
            assert float(g) == pytest.approx(r, rel=1e-12, abs=0.0)
        worst = q.ff1_mp_floor(ctx, K, n, eta, positional)
        assert isinstance(worst, ctx.mpf)
        assert float(worst) == pytest.approx(max(_mp_floor_ref(prec, K, n, eta, positional)), rel=1e-12, abs=0.0)
        grid = [(1.0 if positional else 0.0) + j * 0.5 / K for j in range(2 * (n if positional else 1) * K + 1)]
        at = q.ff1_mp_floor(ctx, K, n, eta, positional, tokens=np.array(grid))
        assert max(at) == worst  # the token-free form is attained on the half-delta grid
        if positional:
            assert q.ff1_mp_floor(ctx, K, n, eta) == worst
            assert q.ff1_mp_floor(ctx, K, n, eta, tokens=tok[:3]).tolist() == got[:3].tolist()


def test_ff1_mp_floor_token_shapes_and_ramp_edge():
    ctx = mpmath.MPContext()
    ctx.prec = 80
    K, n, eta = 4, 2, 2.0**-4  # breakpoint 1.25; t = 1.375 is exactly 2 eta above it: on the ramp (<=)
    tok = np.array([[1.375, 1.1], [2.3, 1.0 + 2.0**-3]])
    got = q.ff1_mp_floor(ctx, K, n, eta, tokens=tok)
    assert got.shape == (2, 2)
    ref = _mp_floor_ref(80, K, n, eta, True, tok.ravel())
    for g, r in zip(got.ravel(), ref, strict=True):
        assert float(g) == pytest.approx(r, rel=1e-12, abs=0.0)
    empty = q.ff1_mp_floor(ctx, K, n, eta, tokens=np.zeros(0))
    assert empty.shape == (0,)
    for K, n, eta in ((2, 9, 0.01), (3, 6, 0.1), (2, 1, 0.2), (6, 4, 0.08)):
        worst = q.ff1_mp_floor(ctx, K, n, eta)
        assert float(worst) == pytest.approx(max(_mp_floor_ref(80, K, n, eta, True)), rel=1e-12, abs=0.0)
        worst0 = q.ff1_mp_floor(ctx, K, n, eta, False)
        assert float(worst0) == pytest.approx(max(_mp_floor_ref(80, K, n, eta, False)), rel=1e-12, abs=0.0)


@pytest.mark.parametrize("positional", [True, False])
def test_quantize_tokens_and_decode_cells_on_fewer_tokens(positional):
    F = q.FF1Quantizer(1, 4, 3, 0.01, positional)
    X = np.array([[0.3, 0.9]])
    off = np.array([[1.0, 2.0]]) if positional else np.zeros((1, 2))
    assert np.allclose(F.quantize_tokens(X), [[0.25, 0.75]], rtol=0, atol=1e-12)
    assert F.decode_cells(off + np.array([[0.5, 0.74]])).tolist() == [[2, 3]]
