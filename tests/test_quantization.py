"""Quantization / Lipschitz-target API: invariants, bad inputs, mpmath path (hu2024.md §3.1–3.3)."""

import math

import mpmath
import numpy as np
import pytest

from constructions import lipschitz as lip
from constructions import quantization as q


@pytest.mark.parametrize("kind", lip.KINDS)
def test_random_lipschitz_certificate_and_range(kind):
    rng = np.random.default_rng(0)
    for alpha in (1.0, 2.0, 3.5):
        f = lip.random_lipschitz(7, 2, 2, 1.7, alpha, kind)
        assert f.kind == kind and (f.d, f.L, f.C, f.alpha) == (2, 2, 1.7, alpha)
        Y = f(rng.uniform(size=(50, 2, 2)))
        assert Y.shape == (50, 2, 2) and Y.min() >= 0 and Y.max() <= 1
        assert lip.empirical_lipschitz(f, rng) <= 1.7 * (1 + 1e-12)
    g = lip.random_lipschitz(7, 2, 2, 1.7, 2.0, kind)
    X = rng.uniform(size=(2, 2))
    assert np.array_equal(g(X), lip.random_lipschitz(7, 2, 2, 1.7, 2.0, kind)(X))  # deterministic


def test_lipschitz_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="alpha"):
        lip.clipped_linear(rng, 1, 1, 1.0, 0.5)
    with pytest.raises(ValueError, match="C must"):
        lip.bump_sum(rng, 1, 1, -1.0, 1.0, 3)
    with pytest.raises(ValueError, match="unknown Lipschitz family"):
        lip.random_lipschitz(0, 1, 1, 1.0, 1.0, "nope")
    with pytest.raises(ValueError, match="budget"):
        lip.relu_net(rng, 100, 100, 1.0, 1.0, 4)


def test_quantize_and_centres():
    K = 5
    assert np.allclose(q.grid_levels(K), [0, 0.2, 0.4, 0.6, 0.8])
    t = np.array([0.0, 0.19999, 0.2, 0.99, 1.0])
    assert np.allclose(q.quantize(t, K), [0, 0, 0.2, 0.8, 0.8])
    assert np.allclose(q.centred_quantize(t, K), [0.1, 0.1, 0.3, 0.9, 0.9])
    f = lip.random_lipschitz(1, 1, 2, 1.0, 2.0, "permutation")
    fbar = q.surrogate(f, K)
    X = np.array([[0.33, 0.91]])
    assert np.array_equal(fbar(X), q.centred_quantize(f(q.quantize(X, K)), K))


def test_grid_order_and_table():
    d, L, K = 2, 2, 3
    G = q.all_grid_points(d, L, K)
    assert G.shape == (K ** (d * L), d, L)
    idx = q.grid_index(q.cell_index(G, K), K)
    assert np.array_equal(idx, np.arange(K ** (d * L)))
    # token-major: the first token's first coordinate is the most significant digit
    assert np.array_equal(q.grid_cells(K ** 3, d, L, K), [[1, 0], [0, 0]])
    f = lip.random_lipschitz(3, d, L, 0.8, 1.0, "relu_net")
    T = q.lookup_table(f, d, L, K)
    assert np.array_equal(T[17], q.surrogate(f, K)(G[17]))


@pytest.mark.parametrize(
    "C, alpha, eps, match",
    [(1.0, 1.0, 0.0, "eps"), (1.0, 1.0, -0.1, "eps"), (-1.0, 1.0, 0.1, "C"), (1.0, 0.5, 0.1, "alpha")],
)
def test_choose_K_rejects(C, alpha, eps, match):
    with pytest.raises(ValueError, match=match):
        q.choose_K(C, 1, 1, alpha, eps)


def test_choose_K_value():
    K = q.choose_K(1.5, 2, 3, 2.0, 0.1)
    assert K == math.ceil(3 * 2.0 * math.sqrt(6) / 0.1)
    assert q.surrogate_sup_bound(1.5, 2, 3, 2.0, K) <= 0.1 / 3


def test_ff1_bad_inputs():
    with pytest.raises(ValueError, match="integer"):
        q.FF1Quantizer(1, 2.5, 1, 0.01)
    with pytest.raises(ValueError, match="delta/2"):
        q.FF1Quantizer(1, 4, 1, 0.125)
    with pytest.raises(ValueError, match="budget"):
        q.FF1Quantizer(4, 1000, 1000, 1e-6)
    with pytest.raises(ValueError, match="integer"):
        q.grid_levels(0)


@pytest.mark.parametrize("positional", [True, False])
def test_ff1_api(positional):
    d, K, n, eta = 2, 4, 3, 0.01
    F = q.FF1Quantizer(d, K, n, eta, positional)
    nb = n * K - 1 if positional else K - 1
    assert F.hidden_width == d * (2 * nb + 1) and F.W1.shape == (F.hidden_width, d)
    assert F.W2.shape == (d, F.hidden_width) and F.b1.shape == (F.hidden_width,) and F.b2.shape == (d,)
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(d, n))
    Z = X + F.encoding()
    ramp = F.in_ramp_set(Z)
    err = np.abs(F(Z) - F.staircase(Z))
    assert np.all(err[~ramp] <= F.rounding_floor(Z)[~ramp])
    # cell centres pass exactly to the lower corner (+ offset)
    C = (np.arange(K) + 0.5)[None, :].repeat(d, 0) / K
    for j in range(n if positional else 1):
        off = (j + 1.0) if positional else 0.0
        out = F(C + off)
        assert np.allclose(out - off, np.arange(K)[None, :] / K, atol=1e-12, rtol=0)
    assert F.ramp_measure_bound(2) == d * 2 * (K if positional else K - 1) * eta


def test_ff1_mpmath_path_agrees():
    F = q.FF1Quantizer(1, 3, 2, 0.02)
    ctx = mpmath.MPContext()
    ctx.dps = 40
    Z = [[ctx.mpf(1) + ctx.mpf(1) / 6, ctx.mpf(2) + ctx.mpf(5) / 6]]  # cell centres at positions 1, 2
    out = F(ctx.matrix(Z))
    assert abs(out[0, 0] - 1) < ctx.mpf(10) ** -35
    assert abs(out[0, 1] - (2 + ctx.mpf(2) / 3)) < ctx.mpf(10) ** -35
    assert F.apply_mp(Z, ctx)[0, 1] == out[0, 1]


# ---------------------------------------------------------------------------------------------
# rounding floors against an exact (mpmath / rational) measurement: sound on adversarial, cancelling
# instances, and within 100x of the true error on typical ones
# ---------------------------------------------------------------------------------------------

_MP = mpmath.MPContext()
_MP.prec = 400


def _ffn_exact_error(W1, b1, W2, b2, Z):
    """|ffn_apply - exact| entry-wise, the exact network of the same float weights evaluated at 400 bits."""
    out = q.ffn_apply(W1, b1, W2, b2, Z)
    m = lambda a: _MP.matrix(np.asarray(a, dtype=np.float64).reshape(np.shape(a)[0], -1).tolist())  # noqa: E731
    H = m(W1) * m(Z)
    for i in range(H.rows):
        for j in range(H.cols):
            H[i, j] = max(H[i, j] + _MP.mpf(float(b1[i])), 0)
    Y = m(Z) + m(W2) * H
    return np.array([[float(abs(_MP.mpf(float(out[i, j])) - Y[i, j] - _MP.mpf(float(b2[i]))))
                      for j in range(Z.shape[1])] for i in range(Z.shape[0])])


def _random_ffn(rng, cancel):
    d, m = int(rng.integers(1, 6)), int(rng.integers(1, 40))
    W1 = rng.normal(size=(m, d)) * 10 ** rng.uniform(-2, 3)
    b1 = rng.normal(size=m) * 10 ** rng.uniform(-2, 3)
    W2, b2 = rng.normal(size=(d, m)), rng.normal(size=d)
    Z = rng.normal(size=(d, 8)) * 10 ** rng.uniform(-1, 2)
    if cancel:  # b2 = -(z + W2 h) on the first token: the output cancels to ~0 there
        b2 = -(Z + W2 @ np.maximum(W1 @ Z + b1[:, None], 0.0))[:, 0]
    return W1, b1, W2, b2, Z


FLOOR_FACTORS = {}  # measured over-estimation factors (median floor / error), printed by -s


def test_ffn_rounding_floor_is_sound_and_tight():
    rng = np.random.default_rng(0)
    worst, typical = 0.0, []
    for trial in range(40):
        cancel = trial % 2 == 1
        W1, b1, W2, b2, Z = _random_ffn(rng, cancel)
        err = _ffn_exact_error(W1, b1, W2, b2, Z)
        floor = q.ffn_rounding_floor(W1, b1, W2, b2, Z)
        worst = max(worst, float(np.max(err / floor)))
        if not cancel and err.max() > 0:
            typical.append(float(np.max(floor) / np.max(err)))
    FLOOR_FACTORS["ffn_rounding_floor"] = float(np.median(typical))
    assert worst <= 1.0, f"ffn_rounding_floor below the true error by {worst}"
    assert np.median(typical) <= 100.0, f"ffn_rounding_floor over-estimates {np.median(typical):.3g}x"


def _ff1_points(F, rng):
    n = F.n_positions if F.positional else 1
    U = rng.uniform(0, 1, size=(F.d, 32 * n)) + np.tile(F.encoding(n), (1, 32))
    offs = np.array([0.0, 1e-13, -1e-13, -F.eta, -1.05 * F.eta, -2.5 * F.eta, 0.5 / F.K])
    pts = (F.breakpoints[:, None] + offs[None, :]).reshape(-1)
    pts = pts[(pts >= F.base) & (pts <= F.base + n)]
    return np.concatenate([U, np.tile(pts, (F.d, 1))], axis=1)


def test_ff1_staircase_floor_is_sound_and_tight():
    """|FF1(z) - staircase(z)| <= staircase_floor(z) off the ramp set; the reference is exact (rationals)."""
    from fractions import Fraction

    rng = np.random.default_rng(1)
    worst, typical = 0.0, []
    for _ in range(40):
        d, K, n = int(rng.integers(1, 4)), int(rng.integers(2, 11)), int(rng.integers(1, 7))
        F = q.FF1Quantizer(d, K, n, 10 ** rng.uniform(-3, math.log10(0.49)) / K, bool(rng.integers(0, 2)))
        Z = _ff1_points(F, rng)
        off = ~F.in_ramp_set(Z)
        cnt = np.searchsorted(F.breakpoints, Z, side="right")  # the network's jumps sit at the float breakpoints
        out = F(Z)
        err = np.array([[float(abs(Fraction(float(out[i, j])) - Fraction(F.base) - Fraction(int(cnt[i, j]), K)))
                         for j in range(Z.shape[1])] for i in range(d)])
        r = (err / F.staircase_floor(Z))[off]
        worst = max(worst, float(r.max()))
        if r.max() > 0:
            typical.append(1.0 / float(r.max()))
    FLOOR_FACTORS["FF1Quantizer.staircase_floor"] = float(np.median(typical))
    assert worst <= 1.0, f"staircase_floor below the true error by {worst}"
    assert np.median(typical) <= 100.0, f"staircase_floor over-estimates {np.median(typical):.3g}x"


def test_ff1_mp_floor_is_sound_and_tight():
    """ff1_apply_mp at 30-60 digits against the same network at 300 digits, on off-ramp and ramp-edge tokens."""
    rng = np.random.default_rng(2)
    hi = mpmath.MPContext()
    hi.dps = 300
    worst, typical = 0.0, []
    for _ in range(20):
        K, n = int(rng.integers(2, 9)), int(rng.integers(1, 5))
        eta = 10 ** rng.uniform(-3, math.log10(0.49)) / K
        F = q.FF1Quantizer(1, K, n, eta)
        lo = mpmath.MPContext()
        lo.dps = int(rng.integers(30, 61))
        Z = _ff1_points(F, rng)[:, :40]
        a = q.ff1_apply_mp(Z.tolist(), lo, 1, K, n, eta)
        b = q.ff1_apply_mp(Z.tolist(), hi, 1, K, n, eta)
        err = [abs(hi.mpf(a[0, j]) - b[0, j]) for j in range(Z.shape[1])]
        floor = q.ff1_mp_floor(lo, K, n, eta, tokens=Z[0])
        assert max(err) <= q.ff1_mp_floor(lo, K, n, eta)  # the token-free form bounds every token
        r = [float(e / f) for e, f in zip(err, floor, strict=True)]
        worst = max(worst, max(r))
        if max(r) > 0:
            typical.append(1.0 / max(r))
    FLOOR_FACTORS["ff1_mp_floor"] = float(np.median(typical))
    assert worst <= 1.0, f"ff1_mp_floor below the true error by {worst}"
    assert np.median(typical) <= 100.0, f"ff1_mp_floor over-estimates {np.median(typical):.3g}x"


def test_mp_breakpoints_follow_the_float_ones():
    """ff1_breakpoints_mp rebuilds each float breakpoint exactly, so a patch of the float list reaches mpmath."""
    ctx = mpmath.MPContext()
    ctx.dps = 50
    base, tbs = q.ff1_breakpoints_mp(ctx, 4, 3)
    assert base == 1 and len(tbs) == 3 * 4 - 1
    assert all(t == 1 + ctx.mpf(b) / 4 for b, t in enumerate(tbs, start=1))


def test_grid_index_shapes_dtype_and_budget():
    """Single cells give a scalar, batches an int64 vector; the int64 budget K^(dL) <= 2^62 is exact."""
    cells = np.array([[1.0, 0.0], [2.0, 1.0]])  # float cells are read as integers
    i = q.grid_index(cells, 3)
    assert np.ndim(i) == 0 and i == 1 * 27 + 2 * 9 + 0 * 3 + 1
    batch = q.grid_index(np.stack([cells, cells * 0]), 3)
    assert batch.dtype == np.int64 and batch.tolist() == [i, 0]
    top = q.grid_index(np.ones((1, 62), dtype=np.int64), 2)
    assert top == 2**62 - 1 and q.grid_index(np.ones((2, 31), dtype=np.int64), 2) == 2**62 - 1
    with pytest.raises(ValueError, match="budget"):
        q.grid_index(np.zeros((1, 63), dtype=np.int64), 2)
    back = q.grid_cells(np.array([i, 0]), 2, 2, 3)
    assert back.dtype == np.int64 and np.array_equal(back[0], cells) and np.array_equal(back[1], 0 * cells)
    assert np.array_equal(q.grid_cells(i, 2, 2, 3), cells) and q.grid_cells(i, 2, 2, 3).shape == (2, 2)


@pytest.mark.parametrize("positional", [True, False])
def test_ramp_set_and_staircase_at_the_edges(positional):
    """The ramp set is the open interval (t_b - eta, t_b); the staircase counts t_b itself (side right)."""
    K, n, eta = 4, 2, 0.01
    F = q.FF1Quantizer(1, K, n, eta, positional)
    tb = F.breakpoints
    t = np.array([[tb[0] - eta / 2, tb[0], tb[0] - eta, tb[0] - 1.01 * eta, tb[-1] + 0.5 / K, tb[-1] - eta / 2]])
    assert F.in_ramp_set(t).tolist() == [[True, False, False, False, False, True]]
    assert np.allclose(F.staircase(t), F.base + np.array([[0, 1, 0, 0, tb.size, tb.size - 1]]) / K, rtol=0, atol=0)
    assert F.in_ramp_set(t).shape == t.shape and F.staircase(t).shape == t.shape
    assert F.ramp_measure_bound() == n * (K if positional else K - 1) * eta
