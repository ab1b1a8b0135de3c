"""constructions.single_memorizer against independent arithmetic: the mass bound's length (closed form, its minimum
over the ray, the max_k boundary), Brent's and Newton's roots (50-digit roots of the documented F), the float and
mpmath constructions (every stored intermediate recomputed by hand, the memorization Att(x, [P, X]) = t at 50
digits), the a-priori attention bound (its documented formula term by term, soundness against the exact residual),
and the prompt mass gap (entropy, its rounding bound, the mpmath rung)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from constructions import single_memorizer as sm_mod
from constructions.single_layer import EXP_ULPS, attend, attention_rounding, score_vector_rounding
from constructions.transformer import MLP, Head, Layer
from tests.oracles import gamma_ref

U = 2.0**-53

# ---------------------------------------------------------------------------------------------
# helpers written out by hand (independent of single_layer / transformer)


def _g(head, x):
    """g = W_k^T (W_q x) by explicit loops."""
    Wq, Wk = np.asarray(head.Wq, dtype=np.float64), np.asarray(head.Wk, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    q = [sum(Wq[i, j] * x[j] for j in range(x.size)) for i in range(Wq.shape[0])]
    return np.array([sum(Wk[i, r] * q[i] for i in range(Wk.shape[0])) for r in range(Wk.shape[1])])


def _M(head):
    return np.asarray(head.Wo, dtype=np.float64) @ np.asarray(head.Wv, dtype=np.float64)


def _att(head, x, S, mult=None):
    """W_o W_v S softmax(S^T g) with key multiplicities, looped by hand."""
    S = np.asarray(S, dtype=np.float64)
    g = _g(head, x)
    mult = [1] * S.shape[1] if mult is None else mult
    sc = [float(S[:, j] @ g) for j in range(S.shape[1])]
    mx = max(sc)
    w = [m * math.exp(s - mx) for m, s in zip(mult, sc, strict=True)]
    v = sum((w[j] / sum(w)) * S[:, j] for j in range(S.shape[1]))
    return _M(head) @ v


def _ctx(dps):
    mp = mpmath.MPContext()
    mp.dps = dps
    return mp


def _col(mp, a):
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    return mp.matrix([[mp.mpf(float(v))] for v in a])


def _mat(mp, A):
    A = np.asarray(A, dtype=np.float64)
    return mp.matrix([[mp.mpf(float(v)) for v in row] for row in A])


def _mp_g(mp, head, x):
    return _mat(mp, head.Wk).T * (_mat(mp, head.Wq) * _col(mp, x))


def _mp_att(mp, head, x, keys, mult):
    """Att(x, keys) at mp's digits, the keys given as mp columns with multiplicities (each copy summed)."""
    g = _mp_g(mp, head, x)
    sc = [mp.fsum(z[i] * g[i] for i in range(g.rows)) for z in keys]
    num = mp.zeros(g.rows, 1)
    Z = mp.mpf(0)
    for z, m, s in zip(keys, mult, sc, strict=True):
        for _ in range(m):
            num += mp.exp(s) * z
            Z += mp.exp(s)
    return _mat(mp, head.Wo) * (_mat(mp, head.Wv) * (num / Z))


def _mp_lse(mp, vals):
    return mp.log(mp.fsum(mp.exp(v) for v in vals))


def _mp_F(mp, k, log_zx, b0, sigma):
    return lambda v: mp.log(k) + b0 + (1 + mp.exp(v)) * sigma + v - log_zx


def _instance(seed, d=3, n=3, sgn=-1.0, amp=0.5):
    """A random head and example with t = c + M delta, g.delta = sgn amp ||g|| (sigma's sign chosen by sgn)."""
    rng = np.random.default_rng(seed)
    head = Head(*(rng.normal(size=(d, d)) * 0.6 for _ in range(4)))
    x, X = rng.normal(size=d), rng.normal(size=(d, n))
    g, c = _g(head, x), _att(head, x, X)
    delta = rng.normal(size=d)
    delta = delta - (g @ delta) / (g @ g) * g + sgn * amp * g / np.linalg.norm(g)
    return head, x, X, c + _M(head) @ delta


def _singular_head(d=3):
    rng = np.random.default_rng(0)
    Wv = rng.normal(size=(d, d))
    Wv[2] = Wv[0] + Wv[1]
    return Head(rng.normal(size=(d, d)), rng.normal(size=(d, d)), Wv, rng.normal(size=(d, d)))


# ---------------------------------------------------------------------------------------------
# constants and the prompt


def test_module_constants():
    assert sm_mod.U64 == 2.0**-53
    assert sm_mod.ROOT_XTOL == 4 * 2.0**-53
    assert sm_mod.ROOT_RTOL == 4 * 2.0**-52 and type(sm_mod.ROOT_RTOL) is float


def test_prompt_is_k_copies_of_p():
    p = np.array([1.5, -2.0, 0.25])
    for k in (1, 4):
        P = sm_mod.SingleMemorizer(k, p, 2.0, 0.0, -1.0).prompt()
        assert P.shape == (3, k)
        for j in range(k):
            np.testing.assert_array_equal(P[:, j], p)
    sm = sm_mod.SingleMemorizer(2, p, 2.0, 0.0, -1.0)
    assert (sm.u, sm.b0, sm.log_zx) == (0.0, 0.0, 0.0)
    assert all(f is None for f in (sm.g, sm.c, sm.q0, sm.q1, sm.lu_abs, sm.p_mp, sm.s_mp))


# ---------------------------------------------------------------------------------------------
# memorizer_length


@pytest.mark.parametrize(
    "log_zx, b0, sigma", [(2.0, 0.3, -0.5), (1.2, -0.7, -3.0), (5.5, 1.25, -0.05), (0.4, 2.0, -1.0)]
)
def test_memorizer_length_is_the_mass_bound_minimum_plus_one(log_zx, b0, sigma):
    mp = _ctx(50)
    k, k_lower = sm_mod.memorizer_length(log_zx, b0, sigma, 1e15)
    # Z_X e^-b(s) / (s - 1), b(s) = b0 + s sigma, minimised over s > 1 at s* = 1 + 1/|sigma|
    h = lambda s: mp.exp(log_zx - b0 - s * sigma) / (s - 1)  # noqa: E731
    s_star = 1 + 1 / mp.mpf(-sigma)
    want = h(s_star)
    assert k_lower == pytest.approx(float(want), rel=1e-13, abs=0.0)
    for ds in (mp.mpf("1e-3"), mp.mpf("0.1"), mp.mpf(1)):  # s* is the minimum on the ray
        assert h(s_star + ds) > want
        if s_star - ds > 1:
            assert h(s_star - ds) > want
    assert type(k) is int and k == max(1, math.ceil(float(want))) + 1
    assert k - 1 >= k_lower


def test_memorizer_length_small_mass_needs_two_tokens():
    # k_lower < 1: ceil(k_lower) = 1 and k = 2; k_lower underflowing to 0 still gives k = max(1, 0) + 1 = 2
    k, lo = sm_mod.memorizer_length(-5.0, 0.0, -1.0, 1e15)  # log k_lower = -5 - (0 - 2) - log 1 = -3
    assert k == 2 and lo == pytest.approx(math.exp(-3.0), rel=1e-15, abs=0.0)
    k, lo = sm_mod.memorizer_length(-900.0, 0.0, -1.0, 1e15)
    assert k == 2 and lo == 0.0


def test_memorizer_length_nonnegative_sigma_is_one_token():
    for sigma in (0.5, 1.0, 3.0, 1e-300):
        assert sm_mod.memorizer_length(2.0, 0.3, sigma, 1e15) == (1, 0.0)
    # sigma = 0: b(s) = b0 is constant, so inf_{s > 1} Z_X e^-b0 / (s - 1) = 0 (not the value at s = 2)
    assert sm_mod.memorizer_length(2.0, 0.3, 0.0, 1e15) == (1, 0.0)
    assert sm_mod.memorizer_length(800.0, -5.0, 0.0, 1e15) == (1, 0.0)


def test_memorizer_length_max_k_boundary():
    # sigma = -1: s* = 2, log(s* - 1) = 0, so log k_lower = log_zx + 2 exactly; put it at log(max_k)
    L = math.log(8.0)
    log_zx = L - 2.0
    assert log_zx - (0.0 + 2.0 * -1.0) - math.log(1.0) == L
    k, lo = sm_mod.memorizer_length(log_zx, 0.0, -1.0, 8.0)  # log k_lower = log max_k: allowed
    assert lo == math.exp(L) and k == math.ceil(math.exp(L)) + 1
    below = 8.0
    while math.log(below) == L:  # the largest max_k whose log is below log k_lower
        below = float(np.nextafter(below, 0.0))
    with pytest.raises(ValueError, match="max_k"):
        sm_mod.memorizer_length(log_zx, 0.0, -1.0, below)


def test_memorizer_length_clips_k_lower_at_e700():
    # log k_lower = 705 (sigma = -1, b0 = 0): k_lower is reported as e^700, k is the exact ceil + 1
    k, lo = sm_mod.memorizer_length(703.0, 0.0, -1.0, 1e308)
    assert lo == math.exp(700.0)
    assert k == math.ceil(math.exp(705.0)) + 1
    with pytest.raises(ValueError, match="max_k"):
        sm_mod.memorizer_length(703.0, 0.0, -1.0, 1e300)


# ---------------------------------------------------------------------------------------------
# memorizer_root


def _mp_root(k, log_zx, b0, sigma, guess):
    mp = _ctx(50)
    F = _mp_F(mp, k, mp.mpf(log_zx), mp.mpf(b0), mp.mpf(sigma))
    return mp.findroot(F, mp.mpf(guess)), F, mp


def _tol(u):
    return 2 * (sm_mod.ROOT_XTOL + sm_mod.ROOT_RTOL * abs(u)) + 4 * math.ulp(abs(u) + 1.0)


@pytest.mark.parametrize(
    "k, log_zx, b0, sigma",
    [
        (25, 2.0729020827776843, 0.983508051422487, -1.0385224702243996),  # a construction's numbers
        (14, 2.0, 0.3, -0.5),
        (3, 5.0, 0.1, -0.004),  # root far below u* = log 250
        (2, -25.0, -0.2, -20.0),  # u* < 0
        (1, 30.0, 0.0, 1.0),  # sigma > 0: the bracket grows to u_hi = 7
        (1, 1500.0, 1.0, 10.0),
        (1, 2.0, 0.5, 0.5),
        (1, 0.4, 0.0, 0.2),
        (1, 3.0, -1.0, 0.0),  # sigma = 0: F linear
        (7, 400.0 + math.log(7.0), 0.0, 0.0),  # sigma = 0, root 400 (the bracket reaches 511)
        (1, 510.5, 0.0, 0.0),
    ],
)
def test_memorizer_root_solves_F(k, log_zx, b0, sigma):
    u = sm_mod.memorizer_root(k, log_zx, b0, sigma)
    guess = u if math.isfinite(u) else 0.0
    root, F, mp = _mp_root(k, log_zx, b0, sigma, guess)
    assert abs(F(root)) < mp.mpf("1e-40")
    assert abs(u - float(root)) <= _tol(u), f"u = {u!r}, 50-digit root {root}"
    if sigma < 0:
        assert u < -math.log(-sigma), "on F's increasing branch, below u* = log(1/|sigma|)"


def test_memorizer_root_returns_u_star_when_k_is_too_small():
    # F(u*) < 0: no root; u* = -log|sigma| is returned exactly
    for k, log_zx, b0, sigma in ((1, 5.0, 0.0, -1.0), (2, 4.0, 0.5, -0.25), (1, 2.0, 0.0, -3.0)):
        mp = _ctx(30)
        us = -math.log(abs(sigma))
        assert _mp_F(mp, k, log_zx, b0, sigma)(mp.mpf(us)) < 0
        assert sm_mod.memorizer_root(k, log_zx, b0, sigma) == us


def test_memorizer_root_with_F_of_u_star_just_positive_finds_the_root():
    # F(u*) in (0, 1): a root exists below u* and Brent must find it (not return u*)
    k, b0, sigma = 1, 0.0, -0.5  # u* = log 2
    mp = _ctx(30)
    us = -math.log(0.5)
    log_zx = float(_mp_F(mp, k, 0, b0, sigma)(mp.mpf(us))) - 0.5  # F(u*) = 0.5
    u = sm_mod.memorizer_root(k, log_zx, b0, sigma)
    root, F, _ = _mp_root(k, log_zx, b0, sigma, us - 1.0)
    assert u < us and abs(u - float(root)) <= _tol(u)


def test_memorizer_root_sigma_zero_up_to_the_float_range_then_a_named_divergence():
    # sigma = 0: F(u) = log k + b0 + u - log Z_X, root u = log Z_X - log k - b0; roots up to U_MAX = 709 are found
    # (the bracket doubles 1, 3, ..., 511 and then stops at 709), beyond it s = 1 + e^u overflows: ValueError
    assert sm_mod.U_MAX == 709.0
    for root in (600.0, 708.5, 709.0):
        u = sm_mod.memorizer_root(1, root, 0.0, 0.0)
        assert abs(u - root) <= _tol(u), f"sigma = 0 root {root}: got {u}"
        assert math.isfinite(1.0 + math.exp(u))
    for log_zx in (709.5, 5000.0):
        with pytest.raises(ValueError, match="diverges"):
            sm_mod.memorizer_root(1, log_zx, 0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# memorizer_root_mp and mp_root_tolerance


def test_mp_root_tolerance_formula():
    for prec in (53, 100, 333):
        mp = mpmath.MPContext()
        mp.prec = prec
        for u0 in (0.0, 0.3, -0.9, 1.5, -1.7, 12.0):
            assert sm_mod.mp_root_tolerance(mp, u0) == 2.0 ** (8 - prec) * max(1.0, abs(u0))
            assert type(sm_mod.mp_root_tolerance(mp, u0)) is float


@pytest.mark.parametrize(
    "k, log_zx, b0, sigma",
    [
        (25, 2.0729020827776843, 0.983508051422487, -1.0385224702243996),
        (14, 2.0, 0.3, -0.5),
        (2, -25.0, -0.2, -20.0),
        (1, 30.0, 0.0, 1.0),
        (1, 0.4, 0.0, 0.2),
        (1, 3.0, -1.0, 0.0),
    ],
)
def test_memorizer_root_mp_is_newton_to_ctx_digits(k, log_zx, b0, sigma):
    u0 = sm_mod.memorizer_root(k, log_zx, b0, sigma)
    for dps in (30, 300):  # 300 digits: a linearly convergent iteration cannot reach the tolerance in 60 steps
        mp = _ctx(dps)
        lz, bb, ss = mp.mpf(log_zx), mp.mpf(b0), mp.mpf(sigma)
        u = sm_mod.memorizer_root_mp(mp, k, lz, bb, ss, u0)
        assert isinstance(u, mp.mpf)
        hi = _ctx(dps + 40)
        F = _mp_F(hi, k, hi.mpf(log_zx), hi.mpf(b0), hi.mpf(sigma))
        root = hi.findroot(F, hi.mpf(u))
        tol = sm_mod.mp_root_tolerance(mp, u0)
        assert abs(hi.mpf(u) - root) <= tol / 16, "Newton converged quadratically past its last step"


def test_memorizer_root_mp_returns_u_star_without_a_root():
    mp = _ctx(40)
    for k, log_zx, b0, sigma in ((1, 5.0, 0.0, -1.0), (2, 4.0, 0.5, -0.25), (1, 2.0, 0.0, -3.0)):
        u = sm_mod.memorizer_root_mp(mp, k, mp.mpf(log_zx), mp.mpf(b0), mp.mpf(sigma), 0.123)
        assert u == -mp.log(mp.mpf(-sigma))


def test_memorizer_root_mp_root_just_below_u_star():
    # sigma = -0.5 (|sigma| < 1): a root between log|sigma| and u*, F(u*) small and positive
    mp = _ctx(40)
    sigma, b0, k = mp.mpf(-0.5), mp.mpf(0), 1
    us = -mp.log(-sigma)
    log_zx = _mp_F(mp, k, 0, b0, sigma)(us) - mp.mpf("0.01")
    u0 = sm_mod.memorizer_root(k, float(log_zx), 0.0, -0.5)
    u = sm_mod.memorizer_root_mp(mp, k, log_zx, b0, sigma, u0)
    assert mp.log(-sigma) < u < us
    assert abs(_mp_F(mp, k, log_zx, b0, sigma)(u)) < mp.mpf("1e-35")


# ---------------------------------------------------------------------------------------------
# single_example_memorizer


def _check_construction(head, x, X, t, sm, mp):
    """Every stored intermediate recomputed by hand, and Att(x, [P, X]) = t at mp's digits."""
    d = X.shape[0]
    g = _g(head, x)
    np.testing.assert_allclose(sm.g, g, rtol=1e-14, atol=1e-15)
    c = _att(head, x, X)
    np.testing.assert_allclose(sm.c, c, rtol=1e-13, atol=1e-15)
    M = _M(head)
    np.testing.assert_allclose(M @ sm.q0, c, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(M @ sm.q1, t - c, rtol=1e-12, atol=1e-14)
    assert sm.log_zx == pytest.approx(
        math.log(sum(math.exp(float(X[:, j] @ g)) for j in range(X.shape[1]))), rel=1e-14, abs=1e-15
    )
    assert sm.b0 == pytest.approx(float(g @ np.linalg.solve(M, c)), rel=1e-12, abs=0.0)
    assert sm.sigma == pytest.approx(float(g @ np.linalg.solve(M, t - c)), rel=1e-12, abs=0.0)
    assert type(sm.b0) is float and type(sm.sigma) is float and type(sm.k) is int
    k, lo = sm_mod.memorizer_length(sm.log_zx, sm.b0, sm.sigma, 1e15)
    assert (sm.k, sm.k_lower) == (k, lo)
    assert sm.s == 1.0 + math.exp(sm.u) and sm.s > 1.0
    np.testing.assert_array_equal(sm.p, sm.q0 + sm.s * sm.q1)
    # the ray equation log k + b0 + s sigma + log(s - 1) = log Z_X
    assert math.log(sm.k) + sm.b0 + sm.s * sm.sigma + math.log(sm.s - 1.0) == pytest.approx(sm.log_zx, abs=1e-13)
    # |L||U| of the pivoted LU: P M = L U, L unit lower, U upper
    from scipy.linalg import lu

    Pm, L, Uf = lu(M)
    np.testing.assert_allclose(sm.lu_abs, np.abs(L) @ np.abs(Uf), rtol=1e-14, atol=0.0)
    assert sm.lu_abs.shape == (d, d) and np.all(sm.lu_abs >= np.abs(Pm.T @ M) * (1 - 1e-14))
    # memorization, exactly (50 digits) at the stored float prompt: Att(x, [P, X]) = t to rounding level
    keys = [_col(mp, sm.p)] + [_col(mp, X[:, j]) for j in range(X.shape[1])]
    a = _mp_att(mp, head, x, keys, [sm.k] + [1] * X.shape[1])
    assert float(mp.norm(a - _col(mp, t))) < 1e-12 * max(1.0, float(np.linalg.norm(t)))
    assert sm.k >= sm.k_lower


@pytest.mark.parametrize("seed, sgn, amp", [(4, -1.0, 0.5), (0, -1.0, 0.5), (3, 1.0, 0.5), (1, 1.0, 0.2)])
def test_single_example_memorizer_fits_the_example(seed, sgn, amp):
    head, x, X, t = _instance(seed, sgn=sgn, amp=amp)
    sm = sm_mod.single_example_memorizer(head, x, X, t)
    mp = _ctx(50)
    _check_construction(head, x, X, t, sm, mp)
    assert (sm.sigma < 0) == (sgn < 0)
    if sgn > 0:
        assert sm.k == 1 and sm.k_lower == 0.0
    else:
        assert sm.k > 1
    assert sm.p_mp is None and sm.s_mp is None


def test_single_example_memorizer_seed4_needs_25_tokens():
    head, x, X, t = _instance(4)
    sm = sm_mod.single_example_memorizer(head, x, X, t)
    assert sm.k == 25 and 23 < sm.k_lower < 24


def test_single_example_memorizer_max_k_default_and_given():
    head, x, X, t = _instance(3, sgn=-1.0)  # k ~ 5004
    sm = sm_mod.single_example_memorizer(head, x, X, t)
    assert sm.k == sm_mod.single_example_memorizer(head, x, X, t, max_k=1e15).k == 5004
    with pytest.raises(ValueError, match="max_k"):
        sm_mod.single_example_memorizer(head, x, X, t, max_k=1000.0)
    # the default 1e15 refuses a target needing ~1e16 tokens, a larger max_k admits it
    head, x, X, t = _instance(3, sgn=-1.0, amp=3.0)
    with pytest.raises(ValueError, match="max_k"):
        sm_mod.single_example_memorizer(head, x, X, t)
    big = sm_mod.single_example_memorizer(head, x, X, t, max_k=1e20)
    assert 1e15 < big.k_lower < 1e20 and big.k == math.ceil(big.k_lower) + 1


def test_single_example_memorizer_hypotheses():
    head, x, X, _ = _instance(2)
    c = attend(head, x, X)
    with pytest.raises(ValueError, match="empty prompt"):
        sm_mod.single_example_memorizer(head, x, X, c.copy())
    with pytest.raises(ValueError, match="empty prompt"):
        sm_mod.single_example_memorizer(head, x, X, c.reshape(-1, 1))
    with pytest.raises(ValueError, match="invertible"):
        sm_mod.single_example_memorizer(_singular_head(), x, X, c + 1.0)


def test_single_example_memorizer_reads_inputs_as_float64_columns():
    head, x, X, t = _instance(0)
    ref = sm_mod.single_example_memorizer(head, x, X, t)
    x32, X32, t32 = (a.astype(np.float32) for a in (x, X, t))
    a = sm_mod.single_example_memorizer(head, x32, X32, t32)
    b = sm_mod.single_example_memorizer(head, *(z.astype(np.float64) for z in (x32, X32, t32)))
    for f in ("p", "g", "c", "q0", "q1", "lu_abs"):
        assert getattr(a, f).dtype == np.float64
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert (a.k, a.s, a.u, a.sigma, a.b0, a.log_zx) == (b.k, b.s, b.u, b.sigma, b.b0, b.log_zx)
    # columns and lists are read as vectors
    c = sm_mod.single_example_memorizer(head, x.reshape(-1, 1), X.tolist(), t.reshape(-1, 1))
    np.testing.assert_array_equal(c.p, ref.p)
    assert c.p.shape == (3,) and (c.k, c.s) == (ref.k, ref.s)
    # integer inputs
    xi, Xi = np.array([1, 0, -1]), np.array([[1, 0], [0, 1], [2, -1]])
    ti = np.array([3, -2, 1])
    mi = sm_mod.single_example_memorizer(head, xi, Xi, ti, max_k=1e300)
    mf = sm_mod.single_example_memorizer(head, xi.astype(float), Xi.astype(float), ti.astype(float), max_k=1e300)
    np.testing.assert_array_equal(mi.p, mf.p)


def test_single_example_memorizer_at_mpmath_digits():
    head, x, X, t = _instance(4)
    mp = _ctx(40)
    sm = sm_mod.single_example_memorizer(head, x, X, t, ctx=mp)
    flo = sm_mod.single_example_memorizer(head, x, X, t)
    assert sm.k == flo.k and sm.u == flo.u
    np.testing.assert_array_equal(sm.p, flo.p)
    # the same construction at 40 digits, by hand: q0, q1 by an mp solve, log Z_X, F's root, p = q0 + s q1
    M = _mat(mp, head.Wo) * _mat(mp, head.Wv)
    g = _mp_g(mp, head, x)
    Xc = [_col(mp, X[:, j]) for j in range(X.shape[1])]
    c = _mp_att(mp, head, x, Xc, [1] * len(Xc))
    q0, q1 = mp.inverse(M) * c, mp.inverse(M) * (_col(mp, t) - c)
    b0, sigma = mp.fsum(g[i] * q0[i] for i in range(3)), mp.fsum(g[i] * q1[i] for i in range(3))
    log_zx = _mp_lse(mp, [mp.fsum(z[i] * g[i] for i in range(3)) for z in Xc])
    u = mp.findroot(_mp_F(mp, sm.k, log_zx, b0, sigma), mp.mpf(flo.u))
    s = 1 + mp.exp(u)
    assert isinstance(sm.s_mp, mp.mpf)
    assert abs(sm.s_mp - s) < mp.mpf("1e-36") * s
    assert mp.norm(sm.p_mp - (q0 + s * q1)) < mp.mpf("1e-35")
    # memorization at 40 digits: Att(x, [P_mp, X]) = t to the ctx's precision
    a = _mp_att(mp, head, x, [sm.p_mp] + Xc, [sm.k] + [1] * len(Xc))
    assert mp.norm(a - _col(mp, t)) < mp.mpf("1e-34")
    # a positive sigma (k = 1) at 40 digits
    head, x, X, t = _instance(3, sgn=1.0)
    sm = sm_mod.single_example_memorizer(head, x, X, t, ctx=mp)
    Xc = [_col(mp, X[:, j]) for j in range(X.shape[1])]
    a = _mp_att(mp, head, x, [sm.p_mp] + Xc, [1] + [1] * len(Xc))
    assert sm.k == 1 and mp.norm(a - _col(mp, t)) < mp.mpf("1e-34")


def test_single_example_memorizer_mp_without_a_root_keeps_u_star():
    # a hand-built k too small: _mp_memorizer returns the best reachable u* = log(1/|sigma|) at ctx's digits
    head, x, X, t = _instance(4)
    mp = _ctx(40)
    p, s = sm_mod._mp_memorizer(mp, head, x, X, t, 1, 0.0)
    M = _mat(mp, head.Wo) * _mat(mp, head.Wv)
    g = _mp_g(mp, head, x)
    Xc = [_col(mp, X[:, j]) for j in range(X.shape[1])]
    c = _mp_att(mp, head, x, Xc, [1] * len(Xc))
    q0, q1 = mp.inverse(M) * c, mp.inverse(M) * (_col(mp, t) - c)
    sigma = mp.fsum(g[i] * q1[i] for i in range(3))
    assert abs(s - (1 + 1 / (-sigma))) < mp.mpf("1e-35")
    assert mp.norm(p - (q0 + s * q1)) < mp.mpf("1e-34")


# ---------------------------------------------------------------------------------------------
# memorizer_attention_bound


def _bound_by_hand(head, x, X, t, sm, u, xtol, rtol):
    """The docstring's bound, term by term (Ec, Eg from single_layer's rounding bounds)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    X = np.asarray(X, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    d, n = X.shape
    A = np.abs(_M(head))
    s, k, uu, g, c, q0, q1 = sm.s, sm.k, sm.u, sm.g, sm.c, sm.q0, sm.q1
    _, Ec = attention_rounding(Layer((head,), None), x, X, u)
    nEc, ntc = math.sqrt(sum(e * e for e in Ec)), math.sqrt(sum(e * e for e in (t - c)))
    aq = [abs(q0[i]) + s * abs(q1[i]) for i in range(d)]
    delta = [gamma_ref(2, u) * a for a in aq]
    r0 = gamma_ref(3 * d, u) * np.linalg.norm(sm.lu_abs @ np.abs(q0))
    r1 = gamma_ref(3 * d, u) * np.linalg.norm(sm.lu_abs @ np.abs(q1))
    Md = math.sqrt(sum(sum(A[i, j] * delta[j] for j in range(d)) ** 2 for i in range(d)))
    Mp_b = (s - 1) * nEc + r0 + s * u * ntc + s * r1 + Md
    Eg = score_vector_rounding(head, x, u)
    ex = math.exp(uu)
    e_s = u * s + EXP_ULPS * u * ex
    gd = gamma_ref(d, u)
    gp = sum(Eg[i] * aq[i] for i in range(d))
    gp += gd * sum(abs(g[i]) * abs(q0[i]) for i in range(d))
    gp += e_s * abs(sum(g[i] * q1[i] for i in range(d)))
    gp += (1 + ex) * gd * sum(abs(g[i]) * abs(q1[i]) for i in range(d))
    gp += sum((abs(g[i]) + Eg[i]) * delta[i] for i in range(d))
    v = [sum(X[i, j] * g[i] for i in range(d)) for j in range(n)]
    Ev = [
        gd * sum(abs(X[i, j]) * abs(g[i]) for i in range(d)) + sum(abs(X[i, j]) * Eg[i] for i in range(d))
        for j in range(n)
    ]
    vm = max(v)
    lse = max(Ev) + u * max(vm - vj for vj in v) + EXP_ULPS * u + gamma_ref(max(n - 1, 1), u)
    lse += u * abs(sm.log_zx - vm) + u * abs(sm.log_zx)
    lk = abs(math.log(k))
    rho = gamma_ref(4, u) * (lk + abs(sm.b0) + (1 + ex) * abs(sm.sigma) + abs(uu) + abs(sm.log_zx))
    rho += (EXP_ULPS + 2) * u * (lk + (1 + ex) * abs(sm.sigma))
    tol = xtol + rtol * abs(uu)
    slope = 1 + math.exp(uu + 2 * tol) * abs(sm.sigma)
    D = min(rho + 2 * tol * slope + gp + lse, 700.0)
    lam_s = ex / (1 + ex) * math.expm1(D) * math.exp(D) + e_s
    return Mp_b + lam_s * (ntc + nEc)


@pytest.mark.parametrize("seed, sgn, n", [(4, -1.0, 3), (0, -1.0, 1), (2, -1.0, 2), (3, 1.0, 4), (1, 1.0, 3)])
def test_memorizer_attention_bound_is_the_documented_formula(seed, sgn, n):
    head, x, X, t = _instance(seed, n=n, sgn=sgn)
    sm = sm_mod.single_example_memorizer(head, x, X, t)
    b = sm_mod.memorizer_attention_bound(head, x, X, t, sm)
    assert type(b) is float
    assert b == sm_mod.memorizer_attention_bound(head, x, X, t, sm, 2.0**-53, 4 * 2.0**-53, 4 * 2.0**-52)
    assert b == pytest.approx(_bound_by_hand(head, x, X, t, sm, U, 4 * U, 8 * U), rel=1e-13, abs=0.0)
    # each default matters
    for kw in ({"u": 2.0**-40}, {"xtol": 1e-10}, {"rtol": 1e-10}):
        assert sm_mod.memorizer_attention_bound(head, x, X, t, sm, **kw) > b
    # coarser arithmetic and Brent tolerances: the second-order parts (e^Delta, e^{2 tol}) count
    for u, xtol, rtol in ((1e-6, 1e-3, 1e-3), (2.0**-24, 0.0, 0.05), (1e-8, 0.2, 0.0)):
        got = sm_mod.memorizer_attention_bound(head, x, X, t, sm, u, xtol, rtol)
        assert got == pytest.approx(_bound_by_hand(head, x, X, t, sm, u, xtol, rtol), rel=1e-12, abs=0.0)


def test_memorizer_attention_bound_is_sound_at_50_digits():
    mp = _ctx(50)
    for seed, sgn in ((4, -1.0), (0, -1.0), (3, 1.0), (3, -1.0)):
        head, x, X, t = _instance(seed, sgn=sgn)
        sm = sm_mod.single_example_memorizer(head, x, X, t)
        keys = [_col(mp, sm.p)] + [_col(mp, X[:, j]) for j in range(X.shape[1])]
        exact = float(mp.norm(_mp_att(mp, head, x, keys, [sm.k] + [1] * X.shape[1]) - _col(mp, t)))
        b = sm_mod.memorizer_attention_bound(head, x, X, t, sm)
        assert exact <= b < 1e-9, f"seed {seed}: exact residual {exact:.3g} vs bound {b:.3g}"


def test_memorizer_attention_bound_reads_inputs_as_float64():
    head, x, X, t = _instance(4)
    sm = sm_mod.single_example_memorizer(head, x, X, t)
    b = sm_mod.memorizer_attention_bound(head, x, X, t, sm)
    assert sm_mod.memorizer_attention_bound(head, x.reshape(-1, 1), X.tolist(), t.reshape(-1, 1), sm) == b
    head32 = Head(*(np.asarray(w, dtype=np.float32) for w in (head.Wq, head.Wk, head.Wv, head.Wo)))
    head64 = Head(*(np.asarray(w, dtype=np.float32).astype(np.float64) for w in (head.Wq, head.Wk, head.Wv, head.Wo)))
    x32, X32, t32 = (a.astype(np.float32) for a in (x, X, t))
    b32 = sm_mod.memorizer_attention_bound(head32, x32, X32, t32, sm)
    b64 = sm_mod.memorizer_attention_bound(head64, *(a.astype(np.float64) for a in (x32, X32, t32)), sm)
    assert b32 == b64


def test_memorizer_attention_bound_clips_delta_at_700():
    # a hand-built memorizer with u = -720 (e^u subnormal) and a huge Brent tolerance: Delta is clipped to 700,
    # lam s - 1 = e^700 e^u / (1 + e^u) expm1(700) + e_s stays finite
    head, x, X, t = _instance(4)
    sm = sm_mod.single_example_memorizer(head, x, X, t)
    fake = sm_mod.SingleMemorizer(
        sm.k,
        sm.p,
        1.0 + math.exp(-720.0),
        sm.k_lower,
        sm.sigma,
        -720.0,
        sm.b0,
        sm.log_zx,
        sm.g,
        sm.c,
        sm.q0,
        sm.q1,
        sm.lu_abs,
    )
    b = sm_mod.memorizer_attention_bound(head, x, X, t, fake, U, 400.0, 0.0)
    mp = _ctx(30)
    ex = mp.mpf(math.exp(-720.0))
    lam_s = mp.exp(700) * ex / (1 + ex) * mp.expm1(700)
    _, Ec = attention_rounding(Layer((head,), None), x, X, U)
    want = lam_s * (mp.mpf(float(np.linalg.norm(t - sm.c))) + mp.mpf(float(np.linalg.norm(Ec))))
    assert math.isfinite(b) and b == pytest.approx(float(want), rel=1e-9, abs=0.0)


# ---------------------------------------------------------------------------------------------
# mp_memorizer_output


def _mlp(rng, d, r):
    return MLP(
        rng.normal(size=(r, d)) * 0.4, rng.normal(size=r) * 0.5, rng.normal(size=(d, r)) * 0.4, rng.normal(size=d) * 0.3
    )


def test_mp_memorizer_output_is_tau_of_the_k_copies():
    mp = _ctx(40)
    for seed, n in ((4, 3), (0, 2)):
        rng = np.random.default_rng(100 + seed)
        d = 3
        head = Head(*(rng.normal(size=(d, d)) * 0.6 for _ in range(4)))
        X = rng.normal(size=(d, n))
        x = X[:, -1]
        c = _att(head, x, X)
        t = c + _M(head) @ (-0.3 * _g(head, x) / np.linalg.norm(_g(head, x)))
        mlp = _mlp(rng, d, 5)
        layer = Layer((head,), mlp)
        sm = sm_mod.single_example_memorizer(head, x, X, t, ctx=mp)
        out = sm_mod.mp_memorizer_output(mp, layer, sm, X)
        # by hand: every one of the k copies a separate key, then x + Att, then the MLP with explicit ReLU
        Xc = [_col(mp, X[:, j]) for j in range(n)]
        keys = [sm.p_mp] * sm.k + Xc
        z = _col(mp, x) + _mp_att(mp, head, x, keys, [1] * len(keys))
        h = _mat(mp, mlp.W1) * z + _col(mp, mlp.b1)
        h = mp.matrix([[max(h[i], 0)] for i in range(h.rows)])
        want = z + _mat(mp, mlp.W2) * h + _col(mp, mlp.b2)
        assert out.rows == d and out.cols == 1
        assert mp.norm(out - want) < mp.mpf("1e-35")
        # and it is the target MLP(x + t) (memorization at 40 digits)
        zt = _col(mp, x) + _col(mp, t)
        ht = _mat(mp, mlp.W1) * zt + _col(mp, mlp.b1)
        ht = mp.matrix([[max(ht[i], 0)] for i in range(ht.rows)])
        assert mp.norm(out - (zt + _mat(mp, mlp.W2) * ht + _col(mp, mlp.b2))) < mp.mpf("1e-33")
        assert sm.k > 1


# ---------------------------------------------------------------------------------------------
# the prompt mass gap


def _entropy(head, x, P):
    g = _g(head, x)
    sc = [float(P[:, j] @ g) for j in range(P.shape[1])]
    mx = max(sc)
    w = [math.exp(s - mx) for s in sc]
    w = [v / sum(w) for v in w]
    return -sum(v * math.log(v) for v in w if v > 0)


def _prompt(seed, d=3, m=4, scale=1.0):
    rng = np.random.default_rng(seed)
    head = Head(*(rng.normal(size=(d, d)) * 0.7 for _ in range(4)))
    return head, rng.normal(size=d), rng.normal(size=(d, m)) * scale


@pytest.mark.parametrize("seed, m", [(0, 4), (1, 1), (2, 7), (3, 2)])
def test_prompt_mass_gap_is_the_attention_entropy(seed, m):
    head, x, P = _prompt(seed, m=m)
    gap, logm = sm_mod.prompt_mass_gap(head, x, P)
    assert logm == math.log(m)
    assert gap == pytest.approx(_entropy(head, x, P), rel=1e-9, abs=1e-13)
    assert gap <= logm + 1e-12


def test_prompt_mass_gap_attains_log_m_on_identical_tokens_and_reads_float64():
    head, x, P = _prompt(5, m=6)
    Q = np.repeat(P[:, :1], 6, axis=1)  # uniform weights: entropy = log m_p, the bound attained
    gap, logm = sm_mod.prompt_mass_gap(head, x, Q)
    assert gap / logm == pytest.approx(1.0, rel=1e-12, abs=0.0)
    P32 = P.astype(np.float32)
    assert sm_mod.prompt_mass_gap(head, x, P32) == sm_mod.prompt_mass_gap(head, x, P32.astype(np.float64))
    Pi = np.array([[1, 0, 2], [0, 1, -1], [1, 1, 0]])
    assert sm_mod.prompt_mass_gap(head, x, Pi) == sm_mod.prompt_mass_gap(head, x, Pi.astype(np.float64))
    with pytest.raises(ValueError, match="invertible"):
        sm_mod.prompt_mass_gap(_singular_head(), x, P)


def test_logsumexp_rounding_formula():
    for v, Ev, u in (
        ([0.5, -1.25, 3.0, 2.0], [1e-15, 3e-15, 2e-15, 0.0], U),
        ([2.0, -7.0], [0.0, 1e-12], 1e-8),
        ([-4.0], [5e-16], U),
        ([10.0, 9.5, -3.0, 1.0, 0.0], [1e-3, 0.0, 0.0, 0.0, 2e-3], 1e-4),
    ):
        vv = np.array(v)
        L = float(mpmath.log(mpmath.fsum(mpmath.exp(a) for a in v)))
        n = len(v)
        want = max(Ev) + u * (max(v) - min(v)) + EXP_ULPS * u + gamma_ref(max(n - 1, 1), u)
        want += u * abs(L - max(v)) + u * abs(L)
        got = sm_mod.logsumexp_rounding(vv, np.array(Ev), u)
        assert type(got) is float and got == pytest.approx(want, rel=1e-13, abs=0.0)
        assert sm_mod.logsumexp_rounding(v, np.array(Ev), u) == got  # a list is read as float64
    # float32 logits are read as float64 before the shift (a float32 shift would lose the 1e-8)
    v32 = np.array([1.0, -1e-8, 0.5], dtype=np.float32)
    v64 = v32.astype(np.float64)
    E = np.zeros(3)
    assert sm_mod.logsumexp_rounding(v32, E, 0.01) == sm_mod.logsumexp_rounding(v64, E, 0.01)
    assert sm_mod.logsumexp_rounding([1, -2, 0], E, 0.01) == sm_mod.logsumexp_rounding([1.0, -2.0, 0.0], E, 0.01)


def _mass_gap_rounding_by_hand(head, x, P, u):
    d, m = P.shape
    g = _g(head, x)
    Eg = score_vector_rounding(head, x, u)
    v = P.T @ g
    Ev = np.array(
        [
            gamma_ref(d, u) * sum(abs(P[i, j]) * abs(g[i]) for i in range(d))
            + sum(abs(P[i, j]) * Eg[i] for i in range(d))
            for j in range(m)
        ]
    )
    E_lse = sm_mod.logsumexp_rounding(v, Ev, u)
    _, Ea = attention_rounding(Layer((head,), None), x, P, u)
    M = _M(head)
    from scipy.linalg import lu

    Pm, L, Uf = lu(M)
    q = np.linalg.solve(M, _att(head, x, P))
    mtg = np.abs(np.linalg.solve(M.T, g))
    E_q = gamma_ref(3 * d, u) * float(mtg @ (np.abs(L) @ np.abs(Uf) @ np.abs(q))) + float(mtg @ Ea)
    E_dot = float(Eg @ np.abs(q)) + gamma_ref(d, u) * float(np.abs(g) @ np.abs(q))
    Lz = math.log(sum(math.exp(a) for a in v))
    return E_lse + E_q + E_dot + u * (abs(Lz) + abs(float(g @ q)))


@pytest.mark.parametrize("seed, m", [(0, 4), (1, 1), (2, 7), (3, 2)])
def test_mass_gap_rounding_formula_and_soundness(seed, m):
    head, x, P = _prompt(seed, m=m)
    b = sm_mod.mass_gap_rounding(head, x, P)
    assert type(b) is float
    assert b == sm_mod.mass_gap_rounding(head, x, P, 2.0**-53)
    assert b == pytest.approx(_mass_gap_rounding_by_hand(head, x, P, U), rel=1e-10, abs=0.0)
    assert sm_mod.mass_gap_rounding(head, x, P, 1e-6) == pytest.approx(
        _mass_gap_rounding_by_hand(head, x, P, 1e-6), rel=1e-10, abs=0.0
    )
    assert sm_mod.mass_gap_rounding(head, x, P, 2.0**-40) > b
    # sound: the float gap is within the bound of the 50-digit gap
    mp = _ctx(50)
    gap, _ = sm_mod.prompt_mass_gap(head, x, P)
    exact, _ = sm_mod.mp_prompt_mass_gap(mp, head, x, P)
    assert abs(mp.mpf(gap) - exact) <= b
    # inputs read as float64 vectors and matrices
    assert sm_mod.mass_gap_rounding(head, x.reshape(-1, 1), P.tolist()) == b
    with pytest.raises(ValueError, match="invertible"):
        sm_mod.mass_gap_rounding(_singular_head(), x, P)


@pytest.mark.parametrize("seed, m", [(0, 4), (1, 1), (2, 7)])
def test_mp_prompt_mass_gap_is_the_entropy_at_ctx_digits(seed, m):
    head, x, P = _prompt(seed, m=m)
    mp = _ctx(40)
    gap, logm = sm_mod.mp_prompt_mass_gap(mp, head, x, P)
    assert isinstance(gap, mp.mpf) and logm == mp.log(m)
    g = _mp_g(mp, head, x)
    sc = [mp.fsum(P[i, j] * g[i] for i in range(3)) for j in range(m)]
    Z = mp.fsum(mp.exp(s) for s in sc)
    H = -mp.fsum((mp.exp(s) / Z) * (s - mp.log(Z)) for s in sc)
    assert abs(gap - H) < mp.mpf("1e-33")
    assert sm_mod.mp_prompt_mass_gap(mp, head, x, P.tolist()) == (gap, logm)
    with pytest.raises(ValueError, match="invertible"):
        sm_mod.mp_prompt_mass_gap(mp, _singular_head(), x, P)
