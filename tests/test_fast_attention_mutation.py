"""constructions.fast_attention pinned against independent arithmetic (closed forms typed out here, loops over
explicit monomial multisets, math.comb / enumeration counts, hand-counted chunk sizes, Fractions), every default
argument, every ValueError boundary (with the attaining instances of the <= / < comparisons), the dtype and device
handling (torch "meta" tensors stand in for traced arrays: float() of them fails like a jax tracer's), the
namespace checks and the certificate fields: what tests/test_fast_attention.py leaves to chance."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from constructions import fast_attention as fa

U = 2.0**-53  # float64 unit roundoff, typed out (not taken from constructions.precision)


# --------------------------------------------------------------------------------------------------------------
# independent references
# --------------------------------------------------------------------------------------------------------------


def _rho_taylor(g, beta):
    return math.exp(beta) * beta ** (g + 1) / math.factorial(g + 1)


def _rho_cheb(g, beta):
    return 2.0 * (beta / 2.0) ** (g + 1) * math.exp(2.0 * beta) / math.factorial(g + 1)


def _rho(kind, g, beta):
    return _rho_taylor(g, beta) if kind == "taylor" else _rho_cheb(g, beta)


def _log_rho(kind, g, beta):
    """The log bound as the module's docstring states it, in log form (same float expression)."""
    lb = math.log(beta)
    if kind == "taylor":
        return beta + (g + 1) * lb - math.lgamma(g + 2)
    return math.log(2.0) + (g + 1) * (lb - math.log(2.0)) + 2.0 * beta - math.lgamma(g + 2)


def _least_degree(kind, beta, eps):
    floor = 2.0 * U * math.exp(2.0 * beta)
    return next(g for g in range(1000) if _rho(kind, g, beta) <= eps - floor)


def _multisets(d, g):
    """Monomials of degree <= g in d variables in the plan's documented order, as sorted variable tuples: degree j,
    largest variable c, then the degree-(j-1) monomials whose largest variable is <= c, in their own order."""
    blocks = [[()]]
    for _ in range(g):
        blocks.append([m + (c,) for c in range(d) for m in blocks[-1] if not m or m[-1] <= c])
    return blocks


def _multinomial(m):
    out = math.factorial(len(m))
    for v in set(m):
        out //= math.factorial(m.count(v))
    return out


def _mono(m, x):
    out = 1.0
    for v in m:
        out *= x[v]
    return out


def _poly(coeffs, x):
    return sum(c * x**j for j, c in enumerate(coeffs))


def _close(got, want, rel, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.max(np.abs(got - want), initial=0.0)
    tol = rel * np.max(np.abs(want), initial=0.0)
    assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g}"


def _attention_ref(Q, K, V, scale, kernel):
    """sum_j kernel(scale q_i . k_j) v_j / sum_j kernel(.) by explicit loops."""
    out = np.empty((Q.shape[0], V.shape[1]))
    for i in range(Q.shape[0]):
        w = [kernel(scale * sum(float(Q[i, t]) * float(K[j, t]) for t in range(Q.shape[1]))) for j in range(K.shape[0])]
        z = sum(w)
        for c in range(V.shape[1]):
            out[i, c] = sum(wj * float(V[j, c]) for j, wj in enumerate(w)) / z
    return out


def _softmax_ref(Q, K, V, scale):
    out = np.empty((Q.shape[0], V.shape[1]))
    for i in range(Q.shape[0]):
        s = [scale * sum(float(Q[i, t]) * float(K[j, t]) for t in range(Q.shape[1])) for j in range(K.shape[0])]
        m = max(s)
        w = [math.exp(x - m) for x in s]
        for c in range(V.shape[1]):
            out[i, c] = sum(wj * float(V[j, c]) for j, wj in enumerate(w)) / sum(w)
    return out


def _rng_qkv(nq, nk, d, dv, B=0.9, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-B, B, (nq, d)), rng.uniform(-B, B, (nk, d)), rng.normal(size=(nk, dv))


class _Spy(np.ndarray):
    """ndarray subclass recording the shapes of every matmul it takes part in (the block structure of a call)."""

    log: list | None = None

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raw = [np.asarray(x).view(np.ndarray) if isinstance(x, _Spy) else x for x in inputs]
        result = getattr(ufunc, method)(*raw, **kwargs)
        if ufunc is np.matmul and _Spy.log is not None:
            _Spy.log.append((raw[0].shape, raw[1].shape))
        return result.view(_Spy) if isinstance(result, np.ndarray) else result

    def __array_function__(self, func, types, args, kwargs):
        result = super().__array_function__(func, types, args, kwargs)
        return result.view(_Spy) if isinstance(result, np.ndarray) and not isinstance(result, _Spy) else result


def _torch():
    return pytest.importorskip("torch", reason="torch not installed")


# --------------------------------------------------------------------------------------------------------------
# Step 1: bounds, degrees, coefficients
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("beta", "g"), [(0.5, 0), (1.0, 3), (2.5, 7), (7.0, 2), (0.3, 12)])
def test_log_rho_bound_is_the_documented_closed_form(beta, g):
    for kind in fa.KINDS:
        got = math.exp(fa.log_rho_bound(kind, g, beta))
        want = _rho(kind, g, beta)
        assert got == pytest.approx(want, rel=1e-12, abs=0.0), f"{kind} bound at g={g}, beta={beta}"


def test_log_rho_bound_zero_beta_and_bad_kind():
    assert fa.log_rho_bound("taylor", 3, 0.0) == -math.inf and fa.log_rho_bound("chebyshev", 0, 0.0) == -math.inf
    with pytest.raises(ValueError, match="kind must be one of"):
        fa.log_rho_bound("TAYLOR", 2, 1.0)


def test_coefficient_floor_is_2u_e_2beta_capped_at_e700():
    for beta in (0.0, 0.3, 5.0, 349.0):
        assert fa.coefficient_floor(beta) == 2.0 * U * math.exp(2.0 * beta), beta
    for beta in (350.5, 1000.0):
        assert fa.coefficient_floor(beta) == 2.0 * U * math.exp(700.0), f"cap at e^700, beta={beta}"


def test_rho_bound_adds_the_floor_and_caps():
    assert fa.rho_bound("taylor", 4, 0.0) == 0.0 and fa.rho_bound("chebyshev", 0, 0.0) == 0.0, "beta = 0: exact"
    for kind, g, beta in (("taylor", 2, 0.5), ("chebyshev", 3, 1.5), ("taylor", 20, 0.5), ("chebyshev", 25, 0.7)):
        want = _rho(kind, g, beta) + 2.0 * U * math.exp(2.0 * beta)
        assert fa.rho_bound(kind, g, beta) == pytest.approx(want, rel=1e-12, abs=0.0), (kind, g, beta)
    # the floor dominates at high degree: it must be added (not subtracted, not dropped)
    assert fa.rho_bound("taylor", 20, 0.5) >= 2.0 * U * math.exp(1.0)
    # the e^700 cap of the core: log bound 700 + ln 700 > 700 (taylor), +inf (chebyshev, 2 beta overflows)
    assert fa.rho_bound("taylor", 0, 700.0) == math.exp(700.0) + 2.0 * U * math.exp(700.0)
    assert fa.rho_bound("chebyshev", 0, 1e308) == math.exp(700.0) + 2.0 * U * math.exp(700.0)


@pytest.mark.parametrize(("beta", "eps"), [(0.3, 1e-2), (1.0, 1e-6), (4.0, 1e-9), (10.0, 3e-7), (2.0, 0.5)])
def test_required_degree_is_the_least_certified_degree(beta, eps):
    for kind in fa.KINDS:
        want = _least_degree(kind, beta, eps)
        assert fa.required_degree(beta, eps, kind) == want, f"{kind}, beta={beta}, eps={eps}"
    assert fa.required_degree(beta, eps) == _least_degree("chebyshev", beta, eps), "default kind is chebyshev"


def test_required_degree_default_kind_differs_from_taylor():
    assert fa.required_degree(4.0, 1e-9) == _least_degree("chebyshev", 4.0, 1e-9) != _least_degree("taylor", 4.0, 1e-9)


def test_required_degree_g_max_boundary_and_errors():
    g = _least_degree("taylor", 1.0, 1e-6)
    assert fa.required_degree(1.0, 1e-6, "taylor", g_max=g) == g
    with pytest.raises(ValueError, match=f"exceeds g_max={g - 1}"):
        fa.required_degree(1.0, 1e-6, "taylor", g_max=g - 1)
    assert fa.required_degree(0.0, 0.5) == 0 and fa.required_degree(0.0, 1e-300, "taylor") == 0
    for bad in (math.inf, -1.0, math.nan):
        with pytest.raises(ValueError, match="beta must be finite"):
            fa.required_degree(bad, 1e-3)
    with pytest.raises(ValueError, match="eps must lie in"):
        fa.required_degree(1.0, 0.0)
    floor = 2.0 * U * math.exp(10.0)
    with pytest.raises(ValueError, match="float64 floor"):
        fa.required_degree(5.0, floor)  # eps equal to the floor: nothing is left for the polynomial
    assert fa.required_degree(5.0, math.nextafter(floor, 1.0) * 4) >= 0


def test_required_degree_accepts_equality_at_the_target():
    """Attaining instance: log(eps - floor) equals the log bound at g = 3 exactly, so g = 3 (not 4) is least."""
    beta, g = 0.5, 3
    floor, lr = 2.0 * U * math.exp(2.0 * beta), _log_rho("taylor", g, beta)
    eps = math.exp(lr) + floor
    for _ in range(200):
        if math.log(eps - floor) == lr:
            break
        eps = math.nextafter(eps, 0.0 if math.log(eps - floor) > lr else 1.0)
    assert math.log(eps - floor) == lr, "no attaining eps found (the test's own search)"
    assert _log_rho("taylor", g - 1, beta) > lr
    assert fa.required_degree(beta, eps, "taylor") == g


@pytest.mark.parametrize(("beta", "log_eps"), [(0.25, -5.0), (1.0, -20.0), (3.0, -60.0), (0.7, -1.0)])
def test_degree_for_log_eps_is_the_least_degree(beta, log_eps):
    for kind in fa.KINDS:
        want = next(g for g in range(10_000) if _log_rho(kind, g, beta) <= log_eps)
        assert fa.degree_for_log_eps(beta, log_eps, kind) == want, (kind, beta, log_eps)
    want = next(g for g in range(10_000) if _log_rho("chebyshev", g, beta) <= log_eps)
    assert fa.degree_for_log_eps(beta, log_eps) == want, "default kind is chebyshev"


def test_degree_for_log_eps_small_degrees_and_ties():
    assert fa.degree_for_log_eps(0.0, -50.0) == 0
    assert fa.degree_for_log_eps(0.25, -1.0, "taylor") == 0  # 0.25 + ln 0.25 = -1.14 <= -1
    # beta = 5: the bound rises over g = 0..3 before it falls; g = 0 already meets log eps = 7.6, and a log eps
    # equal to the g = 1 bound (a tie) is met by g = 0 as well
    assert fa.degree_for_log_eps(5.0, 7.6, "taylor") == 0
    assert fa.degree_for_log_eps(5.0, _log_rho("taylor", 1, 5.0), "taylor") == 0
    # a tie at the answer: log eps equal to the g = 5 bound gives 5
    assert fa.degree_for_log_eps(0.5, _log_rho("taylor", 5, 0.5), "taylor") == 5
    assert fa.degree_for_log_eps(0.5, _log_rho("chebyshev", 6, 0.5), "chebyshev") == 6


def test_degree_for_log_eps_is_least_where_the_bound_first_rises():
    """Regression: for beta > 1 the bound rises before it falls, so an eps >= 1 can be met at g = 0, missed over
    a middle range, and met again in the tail; the search bisected the tail and returned g = 8 for
    (beta 5, log eps 7, taylor), whose g = 0 bound is 5 + ln 5 = 6.61."""
    assert _log_rho("taylor", 0, 5.0) <= 7.0 < _log_rho("taylor", 1, 5.0)
    assert fa.degree_for_log_eps(5.0, 7.0, "taylor") == 0
    for kind in fa.KINDS:
        for beta in (1.5, 3.0, 5.0, 12.0):
            peak = max(_log_rho(kind, g, beta) for g in range(60))
            for log_eps in (-3.0, 0.0, 1.0, _log_rho(kind, 0, beta), _log_rho(kind, 0, beta) + 0.5, peak - 0.1):
                want = next(g for g in range(10_000) if _log_rho(kind, g, beta) <= log_eps)
                assert fa.degree_for_log_eps(beta, log_eps, kind) == want, (kind, beta, log_eps)


def test_degree_for_log_eps_g_max_is_the_limit_not_a_power_of_two():
    """Regression: the doubling search raised 'degree needed exceeds g_max' when its bracket passed g_max although
    the least degree was <= g_max (g = 9, g_max = 10 raised); now only a need above g_max raises."""
    log_eps = (_log_rho("taylor", 8, 1.0) + _log_rho("taylor", 9, 1.0)) / 2  # least g = 9
    assert fa.degree_for_log_eps(1.0, log_eps, "taylor") == 9
    for g_max in (9, 10, 15):
        assert fa.degree_for_log_eps(1.0, log_eps, "taylor", g_max=g_max) == 9, g_max
    with pytest.raises(ValueError, match="exceeds g_max=8"):
        fa.degree_for_log_eps(1.0, log_eps, "taylor", g_max=8)
    # a tie at g_max itself: log eps equal to the bound at g_max = 8 is met there, no raise
    assert fa.degree_for_log_eps(1.0, _log_rho("taylor", 8, 1.0), "taylor", g_max=8) == 8
    with pytest.raises(ValueError, match="exceeds g_max=1000000"):
        fa.degree_for_log_eps(1.0, -2e7, "taylor")  # needs g ~ 1.4e6 > the default 10**6
    g = fa.degree_for_log_eps(1.0, -1e7, "taylor")
    assert _log_rho("taylor", g, 1.0) <= -1e7 < _log_rho("taylor", g - 1, 1.0) and g <= 10**6


def test_horner_and_the_polynomial_call():
    x = np.array([-1.5, 0.0, 0.5, 2.0])
    for coeffs in ((3.0,), (1.0, -2.0), (0.5, -1.0, 3.0, 0.25)):
        want = [_poly(coeffs, float(t)) for t in x]
        assert fa.horner(coeffs, x).tolist() == pytest.approx(want, rel=1e-15, abs=0.0), coeffs
        assert fa.horner(coeffs, x, np).tolist() == pytest.approx(want, rel=1e-15, abs=0.0), coeffs
    p = fa.exp_polynomial(1.0, 1e-4, "taylor")
    assert p(x).tolist() == pytest.approx([_poly(p.coeffs, float(t)) for t in x], rel=1e-15, abs=0.0)


def test_measured_rho_is_the_max_over_the_symmetric_grid():
    coeffs = (1.0, 1.0, 0.5, 0.2)  # not symmetric: a one-sided grid would read another value
    # e^x (degree-8 Taylor) minus 0.01 x^2 (1 - x^2): the error peaks inside (-1, 1), zero at -1, 0, 1
    bump = [1.0 / math.factorial(j) for j in range(9)]
    bump[2] -= 0.01
    bump[4] += 0.01
    for beta, points in ((1.5, fa._GRID), (0.8, 5), (2.0, 2)):
        grid = [-beta + 2 * beta * k / (points - 1) for k in range(points)]
        want = max(abs(_poly(coeffs, t) * math.exp(-t) - 1.0) for t in grid)
        got = fa.measured_rho(coeffs, beta) if points == fa._GRID else fa.measured_rho(coeffs, beta, points)
        assert got == pytest.approx(want, rel=1e-12, abs=0.0), (beta, points)
    for points in (fa._GRID, 7, 3):  # the grid size decides the value: the maxima fall between grid points
        grid = [-1.0 + 2.0 * k / (points - 1) for k in range(points)]
        want = max(abs(_poly(bump, t) * math.exp(-t) - 1.0) for t in grid)
        got = fa.measured_rho(bump, 1.0) if points == fa._GRID else fa.measured_rho(bump, 1.0, points)
        assert got == pytest.approx(want, rel=1e-12, abs=0.0), f"{points}-point grid"


def test_exp_polynomial_fields_and_defaults():
    p = fa.exp_polynomial(1, 1e-6)
    g = _least_degree("chebyshev", 1.0, 1e-6)
    assert (p.kind, p.beta, p.eps, p.degree) == ("chebyshev", 1.0, 1e-6, g)
    assert type(p.beta) is float and type(p.eps) is float and len(p.coeffs) == g + 1
    assert p.rho_bound == pytest.approx(_rho_cheb(g, 1.0) + 2 * U * math.exp(2.0), rel=1e-12, abs=0.0)
    assert p.rho_measured == pytest.approx(fa.measured_rho(p.coeffs, 1.0), rel=0.0, abs=0.0)
    # Chebyshev interpolant: P equals e^x at the m = g + 1 Chebyshev nodes
    nodes = [math.cos(math.pi * (k + 0.5) / (g + 1)) for k in range(g + 1)]
    for t in nodes:
        assert _poly(p.coeffs, t) == pytest.approx(math.exp(t), rel=1e-13, abs=0.0), f"node {t}"
    t = fa.exp_polynomial(2.0, 1e-5, "taylor", degree=7)
    assert (t.kind, t.degree, t.eps) == ("taylor", 7, 1e-5)
    assert t.coeffs == tuple(float(Fraction(1, math.factorial(j))) for j in range(8))
    assert t.rho_bound == pytest.approx(_rho_taylor(7, 2.0) + 2 * U * math.exp(4.0), rel=1e-12, abs=0.0)
    # the Chebyshev degree differs from the Taylor one: the default kind is visible, and kind reaches the search
    assert fa.exp_polynomial(4.0, 1e-9).degree == _least_degree("chebyshev", 4.0, 1e-9)
    assert fa.exp_polynomial(4.0, 1e-9, "taylor").degree == _least_degree("taylor", 4.0, 1e-9)
    assert _least_degree("taylor", 4.0, 1e-9) != _least_degree("chebyshev", 4.0, 1e-9)


def test_exp_polynomial_degree_range_ends():
    """degree = 0 and degree = G_MAX are inside [0, G_MAX]. Regression: Taylor coefficients 1.0/j! overflowed
    (OverflowError) for j > 170; they are now int/int quotients, rounded once (underflowing to 0.0)."""
    p0 = fa.exp_polynomial(1.0, 0.5, "taylor", degree=0)
    assert p0.degree == 0 and p0.coeffs == (1.0,)
    top = fa.exp_polynomial(1.0, 0.5, "taylor", degree=fa.G_MAX)
    assert top.degree == fa.G_MAX == 400 and len(top.coeffs) == 401
    assert top.coeffs == tuple(float(Fraction(1, math.factorial(j))) for j in range(401))
    assert top.coeffs[-1] == 0.0 and top.rho_measured <= 1e-15
    assert fa.exp_polynomial(0.0, 0.5, degree=200).coeffs[170] == float(Fraction(1, math.factorial(170)))
    for bad in (-1, fa.G_MAX + 1):
        with pytest.raises(ValueError, match=r"degree must lie in \[0, 400\]"):
            fa.exp_polynomial(1.0, 0.5, "taylor", degree=bad)
    with pytest.raises(ValueError, match="kind must be one of"):
        fa.exp_polynomial(1.0, 0.5, "Taylor")


# --------------------------------------------------------------------------------------------------------------
# Step 2: ranks, plan, monomials, feature maps
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("d", "g"), [(1, 0), (1, 5), (2, 3), (3, 2), (4, 1), (2, 0)])
def test_ranks_count_the_monomials(d, g):
    count = sum(1 for j in range(g + 1) for _ in itertools.combinations_with_replacement(range(d), j))
    paper = sum(1 for j in range(2 * g + 1) for _ in itertools.combinations_with_replacement(range(2 * d), j))
    assert fa.feature_rank(d, g) == count, "monomials of degree <= g in d variables"
    assert fa.paper_rank_bound(d, g) == paper, "monomials of degree <= 2g in 2d variables"


def test_plan_weights_and_block_offsets_by_hand():
    plan = fa.feature_plan(2, 2)  # order: 1 | x0, x1 | x0^2, x0 x1, x1^2
    assert plan.multinomials == (1, 1, 1, 1, 2, 1)
    w = plan.weights((0.5, 3.0, 7.0))
    assert w.dtype == np.float64 and w.tolist() == [0.5, 3.0, 3.0, 7.0, 14.0, 7.0]
    assert plan.weights((1, 2, 3)).dtype == np.float64, "integer coefficients give float64 weights"
    assert plan.weights(np.array([1.0, 2.0, 3.0], dtype=np.float32)).dtype == np.float64
    assert plan.block_offsets() == (0, 1, 3, 6)
    assert fa.feature_plan(3, 3).block_offsets() == (0, 1, 4, 10, 20)
    assert fa.feature_plan(1, 0).block_offsets() == (0, 1)
    bad = fa.FeaturePlan(2, 1, 3, ((1, 1),), (1, 1, 1), np.array([0, 1]))  # one degree short
    with pytest.raises(ValueError):
        bad.weights((1.0, 1.0))


@pytest.mark.parametrize(("d", "g"), [(1, 3), (2, 0), (2, 1), (3, 3)])
def test_monomial_blocks_follow_the_documented_order(d, g):
    rng = np.random.default_rng(d * 10 + g)
    Xt = rng.uniform(-2, 2, (d, 5))
    plan = fa.feature_plan(d, g)
    blocks = fa.monomial_blocks(plan, Xt)
    want = _multisets(d, g)
    assert len(blocks) == g + 1
    for j, (blk, ms) in enumerate(zip(blocks, want, strict=True)):
        ref = [[_mono(m, Xt[:, col]) for col in range(5)] for m in ms]
        _close(blk, ref, 1e-14, f"degree-{j} block, d={d}")
    _close(fa.monomials(plan, Xt), [[_mono(m, Xt[:, c]) for c in range(5)] for ms in want for m in ms], 1e-14, "all")
    assert plan.multinomials == tuple(_multinomial(m) for ms in want for m in ms)
    for b in fa.monomial_blocks(plan, Xt.astype(np.float32)):
        assert b.dtype == np.float32, "monomials keep the input dtype"
    assert fa.monomials(plan, Xt.astype(np.float32)).dtype == np.float32


@pytest.mark.backends
def test_monomials_and_feature_maps_keep_the_device():
    torch = _torch()
    Xt = torch.zeros((3, 4), dtype=torch.float32, device="meta")
    plan = fa.feature_plan(3, 2)
    for b in fa.monomial_blocks(plan, Xt):
        assert b.device.type == "meta" and b.dtype == torch.float32
    m = fa.monomials(plan, Xt)
    assert m.device.type == "meta" and tuple(m.shape) == (10, 4)
    Q = torch.zeros((4, 3), dtype=torch.float32, device="meta")
    fq, fk = fa.feature_maps(plan, fa.exp_polynomial(1.0, 1e-2, degree=2), Q, Q, 0.5)
    assert fq.device.type == fk.device.type == "meta" and fk.dtype == torch.float32


def test_feature_maps_are_scaled_monomials_with_weights():
    d, g, scale = 3, 3, 0.3
    Q, K, _ = _rng_qkv(4, 6, d, 1, B=1.2, seed=4)
    poly = fa.exp_polynomial(1.0, 1e-3, "taylor", degree=g)
    plan = fa.feature_plan(d, g)
    fq, fk = fa.feature_maps(plan, poly, Q, K, scale)
    s = math.sqrt(scale)
    ms = [m for block in _multisets(d, g) for m in block]
    ref_q = [[_mono(m, s * Q[i]) for i in range(4)] for m in ms]
    ref_k = [[poly.coeffs[len(m)] * _multinomial(m) * _mono(m, s * K[i]) for i in range(6)] for m in ms]
    _close(fq, ref_q, 1e-14, "phi(Q)")
    _close(fk, ref_k, 1e-14, "psi(K)")
    fq32, fk32 = fa.feature_maps(plan, poly, Q.astype(np.float32), K.astype(np.float32), scale)
    assert fq32.dtype == np.float32 and fk32.dtype == np.float32, "features keep float32"


def test_poly_and_lowrank_kernels_equal_p_of_the_scores():
    d, scale = 2, 0.7
    Q, K, _ = _rng_qkv(3, 5, d, 1, B=1.0, seed=6)
    poly = fa.exp_polynomial(1.0, 1e-4, degree=6)
    ref = [[_poly(poly.coeffs, scale * float(Q[i] @ K[j])) for j in range(5)] for i in range(3)]
    _close(fa.poly_kernel(poly, Q, K, scale), ref, 1e-14, "poly_kernel")
    _close(fa.lowrank_kernel(poly, Q, K, scale), ref, 1e-13, "lowrank_kernel")


# --------------------------------------------------------------------------------------------------------------
# validation, half-width, itemsize
# --------------------------------------------------------------------------------------------------------------


def test_check_eps_boundaries():
    for ok in (1e-300, 0.5, math.nextafter(1.0, 0.0), 1e-6):
        fa._check_eps(ok)
    for bad in (0.0, 1.0, 1.5, -0.1, math.inf, math.nan, "0.5", None, Fraction(1, 2)):
        with pytest.raises(ValueError, match="eps must lie in"):
            fa._check_eps(bad)


def test_score_halfwidth_is_the_cauchy_schwarz_bound_nudged():
    Q = np.array([[3.0, 4.0], [1.0, 1.0], [0.0, 2.0]])
    K = np.array([[5.0, 12.0], [0.0, 1.0], [1.0, 0.0]])
    assert fa.score_halfwidth(Q, K, 0.5) == 32.5 * (1.0 + 8 * U), "0.5 * 5 * 13 times (1 + 4 d u)"
    # d = 1: Cauchy-Schwarz and the entry bound agree (6), any other combination of the two maxima is smaller
    assert fa.score_halfwidth(np.array([[2.0]]), np.array([[3.0]]), 1.0) == 6.0 * (1.0 + 4 * U)
    Q3 = np.array([[1.0, 2.0, 2.0]])
    assert fa.score_halfwidth(Q3, Q3, 2.0) == 18.0 * (1.0 + 12 * U)


@pytest.mark.backends
def test_traced_arrays_need_beta():
    torch = _torch()
    Q = torch.zeros((4, 2), dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match="pass beta= explicitly"):
        fa.score_halfwidth(Q, Q, 1.0)
    fa.validate_inputs(Q, Q, Q, 1e-3, 1.0)  # finiteness cannot be read: accepted, like a jax tracer


def test_validate_inputs_names_each_array():
    Q, K, V = _rng_qkv(3, 4, 2, 5)
    fa.validate_inputs(Q, K, V, 0.5, 0.5)
    fa.validate_inputs(Q[:1, :1], K[:1, :1], V[:1, :1], 0.5, 2)  # one token, one feature
    cases = [
        ((Q[0], K, V), r"^Q must be 2-D"),
        ((Q, K[0], V), r"^K must be 2-D"),
        ((Q, K, V[0]), r"^V must be 2-D"),
        ((Q, K[:, :1], V), "share the feature dimension"),
        ((Q, K, V[:3]), "same number of tokens"),
        ((Q[:0], K, V), "empty input"),
        ((Q, K[:0], V[:0]), "empty input"),
        ((Q[:, :0], K[:, :0], V), "empty input"),
        ((Q, K, V[:, :0]), "empty input"),
    ]
    for (q, k, v), msg in cases:
        with pytest.raises(ValueError, match=msg):
            fa.validate_inputs(q, k, v, 0.5, 1.0)
    for i, name in enumerate("QKV"):
        arrs = [Q.copy(), K.copy(), V.copy()]
        arrs[i][0, 0] = math.nan
        with pytest.raises(ValueError, match=f"^{name} has non-finite entries"):
            fa.validate_inputs(*arrs, 0.5, 1.0)
    for bad in (0, 0.0, -1.0, math.inf, math.nan, "1", None):
        with pytest.raises(ValueError, match="scale must be a finite number > 0"):
            fa.validate_inputs(Q, K, V, 0.5, bad)
    with pytest.raises(ValueError, match="eps must lie in"):
        fa.validate_inputs(Q, K, V, 1.0, 1.0)


@pytest.mark.backends
def test_mixed_namespaces_are_refused():
    torch = _torch()
    Q, K, V = _rng_qkv(3, 4, 2, 2)
    poly, plan = fa.exp_polynomial(1.0, 1e-2, degree=2), fa.feature_plan(2, 2)
    for i in range(3):
        arrs = [Q, K, V]
        arrs[i] = torch.as_tensor(arrs[i])
        q, k, v = arrs
        with pytest.raises(TypeError, match="Multiple namespaces"):
            fa.validate_inputs(q, k, v, 0.5, 1.0)
        with pytest.raises(TypeError, match="Multiple namespaces"):
            fa.lowrank_apply(plan, poly, q, k, v, 0.5, 2)
        with pytest.raises(TypeError, match="Multiple namespaces"):
            fa.exact_attention(q, k, v, scale=0.5)
        if i < 2:
            for fn in (
                fa.score_halfwidth,
                lambda a, b, s: fa.poly_kernel(poly, a, b, s),
                lambda a, b, s: fa.lowrank_kernel(poly, a, b, s),
                lambda a, b, s: fa.feature_maps(plan, poly, a, b, s),
            ):
                with pytest.raises(TypeError, match="Multiple namespaces"):
                    fn(q, k, 0.5)


def test_itemsize_is_4_for_float32_only():
    assert fa._itemsize(np.zeros(1, dtype=np.float32)) == 4
    for dt in (np.float64, np.float16, np.int64):
        assert fa._itemsize(np.zeros(1, dtype=dt)) == 8, dt


@pytest.mark.backends
def test_itemsize_of_torch_float32():
    torch = _torch()
    assert fa._itemsize(torch.zeros(1, dtype=torch.float32)) == 4
    assert fa._itemsize(torch.zeros(1, dtype=torch.float64)) == 8


# --------------------------------------------------------------------------------------------------------------
# plan_attention: degree, chunk rule, memory budget
# --------------------------------------------------------------------------------------------------------------


def test_plan_attention_defaults_and_types():
    poly, plan, chunk = fa.plan_attention(40, 2, 3, 1.0, 1e-6)
    g = _least_degree("chebyshev", 1.0, 1e-6)
    assert (poly.kind, poly.degree, poly.beta, poly.eps) == ("chebyshev", g, 1.0, 1e-6)
    assert (plan.d, plan.g, plan.r) == (2, g, math.comb(2 + g, g))
    assert chunk == 40 and type(chunk) is int
    poly, plan, chunk = fa.plan_attention(40, 3, 1, 1.0, 1e-6, kind="taylor", degree=np.int64(4), chunk=np.int64(7))
    assert (poly.kind, poly.degree, plan.d, plan.g, chunk) == ("taylor", 4, 3, 4, 7) and type(chunk) is int
    assert fa.plan_attention(40, 3, 1, 1.0, 1e-6, kind="taylor")[0].degree == _least_degree("taylor", 1.0, 1e-6)


@pytest.mark.parametrize(
    ("n", "d", "g", "itemsize", "budget", "want"),
    [
        (10, 2, 2, 8, fa.DEFAULT_MEMORY_BUDGET, 10),  # n < 16: all tokens
        (20000, 4, 4, 8, fa.DEFAULT_MEMORY_BUDGET, (1 << 22) // (8 * 70)),  # cache target: 7489 tokens
        (20000, 4, 4, 4, fa.DEFAULT_MEMORY_BUDGET, (1 << 22) // (4 * 70)),  # float32: 14979
        (1000, 8, 5, 8, fa.DEFAULT_MEMORY_BUDGET, 512),  # r = 1287: the 512-token floor
        (300, 8, 5, 8, fa.DEFAULT_MEMORY_BUDGET, 300),  # the floor is capped by n
        (1000, 2, 2, 8, 48 * 3 * 101, 100),  # the budget: 101 - 1 tokens of 3 r-wide temporaries
        (20, 2, 2, 8, 48 * 3 * 20, 19),  # the budget below the 16-token minimum of the cache rule
        (1, 2, 2, 8, 250, 1),  # budget // (3 * 8 r) - 1 = 0: at least one token
        (1, 2, 2, 8, fa.DEFAULT_MEMORY_BUDGET, 1),
    ],
)
def test_plan_attention_chunk_rule(n, d, g, itemsize, budget, want):
    """chunk = max(min(n, 16), min(n, max(4 MiB // (itemsize r), 512))), then
    max(1, min(chunk, budget // (3 itemsize r) - 1, n))."""
    _, plan, chunk = fa.plan_attention(n, d, 1, 0.5, 0.5, degree=g, itemsize=itemsize, memory_budget=budget)
    assert plan.r == math.comb(d + g, g)
    assert chunk == want, f"n={n}, r={plan.r}, itemsize={itemsize}, budget={budget}: chunk {chunk}, expected {want}"


def test_plan_attention_memory_budget_boundary():
    # r = C(2+1, 1) = 3, d_v = 2: need = itemsize r (3 c + d_v + 1)
    for chunk, itemsize, c in ((None, 8, 5), (3, 8, 3), (None, 4, 5), (1, 8, 1)):
        need = itemsize * 3 * (3 * c + 2 + 1)
        kw = {"chunk": chunk, "itemsize": itemsize, "degree": 1}
        assert fa.plan_attention(5, 2, 2, 0.5, 0.5, memory_budget=need, **kw)[2] >= 1
        with pytest.raises(ValueError, match="over the memory budget"):
            fa.plan_attention(5, 2, 2, 0.5, 0.5, memory_budget=need - 1, **kw)
    need8 = 8 * 3 * (3 * 5 + 3)  # the default itemsize is 8
    fa.plan_attention(5, 2, 2, 0.5, 0.5, degree=1, memory_budget=need8)
    with pytest.raises(ValueError, match="over the memory budget"):
        fa.plan_attention(5, 2, 2, 0.5, 0.5, degree=1, memory_budget=need8 - 1)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="chunk must be >= 1"):
            fa.plan_attention(5, 2, 2, 0.5, 0.5, chunk=bad)
    assert fa.plan_attention(5, 2, 2, 0.5, 0.5, chunk=1)[2] == 1


# --------------------------------------------------------------------------------------------------------------
# Step 3: the low-rank apply, the certified attention, exact attention
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nq", "nk", "d", "dv", "g", "chunk"),
    [(5, 7, 2, 3, 3, 2), (7, 4, 3, 1, 2, 3), (3, 3, 1, 2, 0, 5), (6, 6, 2, 3, 1, 6)],
)
def test_lowrank_apply_is_normalised_p_attention(nq, nk, d, dv, g, chunk):
    Q, K, V = _rng_qkv(nq, nk, d, dv, B=1.0, seed=nq + nk)
    scale = 0.3
    poly = fa.exp_polynomial(1.0, 1e-3, "taylor", degree=g)
    out = fa.lowrank_apply(fa.feature_plan(d, g), poly, Q, K, V, scale, chunk)
    _close(out, _attention_ref(Q, K, V, scale, lambda x: _poly(poly.coeffs, x)), 1e-12, "lowrank_apply")
    out32 = fa.lowrank_apply(fa.feature_plan(d, g), poly, *(a.astype(np.float32) for a in (Q, K, V)), scale, chunk)
    assert out32.dtype == np.float32, "float32 in, float32 out"


@pytest.mark.backends
def test_lowrank_apply_and_attention_on_traced_like_arrays():
    torch = _torch()
    Q, K, V = (torch.zeros((6, w), dtype=torch.float32, device="meta") for w in (2, 2, 3))
    out = fa.lowrank_apply(fa.feature_plan(2, 2), fa.exp_polynomial(1.0, 1e-2, degree=2), Q, K, V, 0.5, 4)
    assert out.device.type == "meta" and tuple(out.shape) == (6, 3) and out.dtype == torch.float32
    out, cert = fa.polynomial_attention(Q, K, V, eps=1e-3, scale=0.5, beta=1.0, chunk=4)
    assert out.device.type == "meta" and tuple(out.shape) == (6, 3)
    assert math.isnan(cert.v_max) and math.isnan(cert.output_bound), "unreadable V: the bound is nan, not a number"
    assert cert.beta == 1.0 and cert.chunk == 4 and cert.degree == _least_degree("chebyshev", 1.0, 1e-3)


def test_polynomial_attention_certificate_fields():
    Q, K, V = _rng_qkv(5, 9, 2, 3, B=0.8, seed=11)
    V = 2.5 * V
    out, c = fa.polynomial_attention(Q, K, V, eps=1e-5, scale=1)
    beta = (
        1.0
        * math.sqrt(max(sum(x * x for x in q) for q in Q.tolist()))
        * math.sqrt(max(sum(x * x for x in k) for k in K.tolist()))
    )
    g = _least_degree("chebyshev", c.beta, 1e-5)
    rho = _rho_cheb(g, c.beta) + 2 * U * math.exp(2 * c.beta)
    vmax = float(np.max(np.abs(V)))
    assert (c.n, c.d, c.kind, c.eps, c.degree, c.chunk) == (5, 2, "chebyshev", 1e-5, g, 9)
    assert type(c.scale) is float and c.scale == 1.0 and type(c.eps) is float
    assert c.beta == pytest.approx(beta, rel=1e-14, abs=0.0)
    assert (c.rank, c.paper_rank_bound) == (math.comb(2 + g, g), math.comb(2 * (g + 2), 2 * g))
    assert c.rho == pytest.approx(rho, rel=1e-12, abs=0.0) and c.v_max == vmax
    assert c.rho_measured == fa.measured_rho(fa.exp_polynomial(c.beta, 1e-5).coeffs, c.beta)
    assert c.output_bound == 2 * c.rho / (1 - c.rho) * vmax
    poly = fa.exp_polynomial(c.beta, 1e-5)
    _close(out, _attention_ref(Q, K, V, 1.0, lambda x: _poly(poly.coeffs, x)), 1e-12, "output")
    assert np.max(np.abs(out - _softmax_ref(Q, K, V, 1.0))) <= c.output_bound


def test_polynomial_attention_passes_every_argument():
    Q, K, V = _rng_qkv(4, 30, 3, 2, B=0.6, seed=12)
    out, c = fa.polynomial_attention(Q, K, V, eps=1e-4, scale=0.5, chunk=7, kind="taylor", degree=5)
    assert (c.kind, c.degree, c.chunk, c.n, c.d) == ("taylor", 5, 7, 4, 3)
    assert c.rho == pytest.approx(_rho_taylor(5, c.beta) + 2 * U * math.exp(2 * c.beta), rel=1e-12, abs=0.0)
    poly = fa.exp_polynomial(1.0, 1e-4, "taylor", degree=5)
    _close(out, _attention_ref(Q, K, V, 0.5, lambda x: _poly(poly.coeffs, x)), 1e-12, "taylor output")
    # the chunk rule sees max(n_q, n_k) tokens, either way round
    assert fa.polynomial_attention(Q, K, V, eps=1e-4, scale=0.5)[1].chunk == 30
    assert fa.polynomial_attention(K, Q, V[:4], eps=1e-4, scale=0.5)[1].chunk == 30
    Q = 4 * Q
    _, c = fa.polynomial_attention(Q, K, V, eps=1e-4, scale=0.5, kind="taylor")
    assert c.degree == _least_degree("taylor", c.beta, 1e-4) != _least_degree("chebyshev", c.beta, 1e-4)
    # the memory budget reaches the plan, with the inputs' itemsize (float32: 4 bytes)
    g = c.degree
    r = math.comb(3 + g, g)
    need32 = 4 * r * (3 * 16 + 2 + 1)
    f32 = [a.astype(np.float32) for a in (Q, K, V)]
    fa.polynomial_attention(*f32, eps=1e-4, scale=0.5, kind="taylor", memory_budget=need32)
    with pytest.raises(ValueError, match="over the memory budget"):
        fa.polynomial_attention(*f32, eps=1e-4, scale=0.5, kind="taylor", memory_budget=need32 - 1)


def test_polynomial_attention_given_beta():
    Q = np.array([[3.0, 4.0], [0.0, 1.0]])
    K = np.array([[0.6, 0.8], [1.0, 0.0]])
    V = np.array([[1.0, -2.0], [0.5, 4.0]])
    data = fa.score_halfwidth(Q, K, 0.1)
    for beta in (data, data * (1 + 5e-13), 3.0, 1):
        _, c = fa.polynomial_attention(Q, K, V, eps=1e-6, scale=0.1, beta=beta)
        assert c.beta == float(beta) and type(c.beta) is float
    b = data / (1 + 1e-12)  # attaining instance of the 1e-12 tolerance: b (1 + 1e-12) == data exactly
    for _ in range(100):
        if b * (1 + 1e-12) == data:
            break
        b = math.nextafter(b, math.inf if b * (1 + 1e-12) < data else 0.0)
    assert b * (1 + 1e-12) == data, "no attaining beta found (the test's own search)"
    assert fa.polynomial_attention(Q, K, V, eps=1e-6, scale=0.1, beta=b)[1].beta == b
    for beta in (data * (1 - 1e-9), data / 1.5, 0.0):
        with pytest.raises(ValueError, match="below the a-priori score half-width"):
            fa.polynomial_attention(Q, K, V, eps=1e-6, scale=0.1, beta=beta)
    for beta in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="beta must be finite and >= 0"):
            fa.polynomial_attention(Q, K, V, eps=1e-6, scale=0.1, beta=beta, degree=2, kind="taylor")
    # beta = 0 is allowed (Q = 0): every score is 0 and the output is the mean of V
    out, c = fa.polynomial_attention(np.zeros((3, 2)), K, V, eps=1e-6, scale=0.1, beta=0.0)
    assert c.beta == 0.0 and c.degree == 0 and c.rho == 0.0 and c.output_bound == 0.0
    _close(out, np.tile(V.mean(axis=0), (3, 1)), 1e-15, "mean of V")


def test_output_bound_is_infinite_once_rho_reaches_one():
    Q = np.zeros((2, 1))
    V = np.array([[1.0], [3.0]])
    for beta, g, kind in ((3.0, 0, "taylor"), (2.0, 1, "chebyshev"), (1.6, 0, "taylor")):
        _, c = fa.polynomial_attention(Q, Q, V, eps=0.5, scale=1.0, beta=beta, degree=g, kind=kind)
        assert c.rho == pytest.approx(_rho(kind, g, beta) + 2 * U * math.exp(2 * beta), rel=1e-12, abs=0.0)
        assert c.rho >= 1.0 and c.output_bound == math.inf, (beta, g, kind, c.rho)
    lo, hi = 0.5, 1.0  # bisect beta for rho = 1 exactly (taylor, g = 0: e^beta beta + floor); then the bound is inf
    for _ in range(200):
        mid = (lo + hi) / 2
        if fa.rho_bound("taylor", 0, mid) < 1.0:
            lo = mid
        else:
            hi = mid
    beta = next((b for b in (lo, hi) if fa.rho_bound("taylor", 0, b) == 1.0), None)
    if beta is not None:
        _, c = fa.polynomial_attention(Q, Q, V, eps=0.5, scale=1.0, beta=beta, degree=0, kind="taylor")
        assert c.rho == 1.0 and c.output_bound == math.inf
    _, c = fa.polynomial_attention(Q, Q, V, eps=0.5, scale=1.0, beta=lo, degree=0, kind="taylor")
    assert c.rho < 1.0 and c.output_bound == 2 * c.rho / (1 - c.rho) * 3.0


def test_exact_attention_blocks_and_large_scores():
    Q, K, V = _rng_qkv(5, 4, 3, 2, B=1.0, seed=21)
    for block in (1, 2, 3, 5, 256):
        _close(fa.exact_attention(Q, K, V, scale=0.7, block=block), _softmax_ref(Q, K, V, 0.7), 1e-13, f"block {block}")
    # scores near 900 in one row and near 0 in the other: the per-row max shift keeps both finite
    Qb = np.array([[30.0], [0.01]])
    Kb = np.array([[30.0], [29.0], [-1.0]])
    Vb = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    _close(fa.exact_attention(Qb, Kb, Vb, scale=1.0), _softmax_ref(Qb, Kb, Vb, 1.0), 1e-13, "large scores")


def test_exact_attention_default_block_is_256_queries():
    Q, K, V = _rng_qkv(257, 3, 2, 2, B=0.5, seed=22)
    _Spy.log = []
    try:
        out = fa.exact_attention(Q.view(_Spy), K.view(_Spy), V.view(_Spy), scale=0.5)
        log = _Spy.log
    finally:
        _Spy.log = None
    score_calls = [a for a, b in log if b == (2, 3)]
    assert score_calls == [(256, 2), (1, 2)], f"query blocks {score_calls}, expected 256 then 1"
    assert out.shape == (257, 2)
