"""constructions.rank_obstruction against closed forms, brute force and independent re-derivations: the certificates
(A), (B) and their adversary, the case-(B) dataset's hypotheses and draws, the prompt lower bound, lambda_i, the
LoRA residual bound's formula and the W_2 update (wang2023.md §2.3)."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.linalg

from constructions import rank_obstruction as ro
from constructions.precision import gamma
from constructions.residual_mlp import affine_mlp, mlp_apply
from constructions.single_layer import logsumexp
from constructions.transformer import MLP, Head, Layer, random_head

LONG = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant  # an extended type whose values float64 rounds
needs_long = pytest.mark.skipif(not LONG, reason="np.longdouble is float64 on this platform")


def _long_off(a, k=1):
    """a (float64) plus k 2^-60 |a| in extended precision: rounds back to a in float64."""
    a = np.asarray(a, dtype=np.float64)
    return a.astype(np.longdouble) * (1 + np.longdouble(k) * np.longdouble(2.0) ** -60)


def _smin(M):
    return float(np.linalg.svd(np.asarray(M, dtype=np.float64), compute_uv=False)[-1])


# ---------------------------------------------------------------------------------------------------------------
# certificates


def test_certificate_A_closed_form_square_and_dtypes():
    V = np.diag([3.0, 2.0])  # n = d = 2 is allowed (n <= d)
    C = np.array([[1.0, 0.0], [0.0, 0.5]])
    assert ro.certificate_A(C, V) == pytest.approx(2.0 - 1.0, rel=1e-15), "sigma_min(V) - ||C||_2 = 2 - 1"
    assert ro.certificate_A([[1, 0], [0, 0]], [[3, 0], [0, 2]]) == pytest.approx(1.0, rel=1e-15)  # int lists
    with pytest.raises(ValueError, match=r"n <= d, got n = 3 > d = 2"):
        ro.certificate_A(np.ones((2, 3)), np.ones((2, 3)))
    rng = np.random.default_rng(0)
    C, V = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)) * 3.0
    C32, V32 = C.astype(np.float32), V.astype(np.float32)
    want = _smin(V32.astype(np.float64)) - float(np.linalg.norm(C32.astype(np.float64), 2))
    got = ro.certificate_A(C32, V32)
    assert got == pytest.approx(want, rel=1e-13, abs=1e-14), "float32 input must be evaluated in float64"


def test_certificate_B_closed_form_and_inputs():
    C = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert ro.certificate_B(C, [0.0, 0.0, 2.0]) == pytest.approx(1.0, rel=1e-15), "[C, w] = diag(1, 1, 2)"
    assert ro.certificate_B(C, [1.0, 1.0, 0.0]) <= 1e-15, "w in span(C): [C, w] singular"
    with pytest.raises(ValueError, match=r"n \+ 1 <= d, got n \+ 1 = 4 > d = 3"):
        ro.certificate_B(np.ones((3, 3)), np.ones(3))
    rng = np.random.default_rng(1)
    C, w = rng.normal(size=(5, 3)), rng.normal(size=5)
    want = _smin(np.column_stack([C, w]))
    # exact rationals (object arrays) and a column-shaped w are accepted and rounded to float64
    Cq = [[Fraction(float(v)) for v in row] for row in C]
    wq = [[Fraction(float(v))] for v in w]
    assert ro.certificate_B(Cq, wq) == pytest.approx(want, rel=1e-14)
    assert ro.certificate_B(C, [Fraction(float(v)) for v in w]) == pytest.approx(want, rel=1e-14)
    if LONG:  # extended-precision input is rounded to float64 first (numpy's SVD has no extended type)
        assert ro.certificate_B(_long_off(C), w) == pytest.approx(want, rel=1e-14)
        assert ro.certificate_B(C, _long_off(w)) == pytest.approx(want, rel=1e-14)


def test_certificates_are_sound_and_tight_on_attaining_families():
    # (A): C = -c I, V = diag(v), v_i > c: sigma_n(C + V diag s) = min_i (s_i v_i - c) >= v_min - c, equality at s = 1
    C, V = -np.eye(3), np.diag([3.0, 5.0, 7.0])
    cert = ro.certificate_A(C, V)
    assert cert == pytest.approx(2.0, rel=1e-15)
    worst = ro.ray_sigma_min(C, V, 1.0)
    assert worst == pytest.approx(2.0, rel=1e-12), f"(A) attained at s = 1: adversary {worst}, certificate {cert}"
    # (B): C = [I_2; 0], w = 2 e_3: sigma_n(C + w t^T) >= sigma_min([C, w]) = 1, equality at t = 0
    C, w, beta = np.vstack([np.eye(2), np.zeros((1, 2))]), np.array([0.0, 0.0, 2.0]), np.array([1.0, -0.5])
    cert = ro.certificate_B(C, w)
    worst = ro.ray_sigma_min(C, np.outer(w, beta), None)
    assert cert == pytest.approx(1.0, rel=1e-15)
    assert cert - 1e-12 <= worst <= cert * (1 + 1e-8), f"(B) attained at s = 0: adversary {worst}, cert {cert}"
    # soundness on random instances against a brute-force grid over s (both cases)
    rng = np.random.default_rng(2)
    grid = np.linspace(-6.0, 6.0, 241)
    for _ in range(4):
        C, w, beta = rng.normal(size=(3, 2)) * 0.3, rng.normal(size=3), rng.normal(size=2)
        V = np.outer(w, beta)
        brute = min(_smin(C + V * np.array([a, b])[None, :]) for a in grid for b in grid)
        cert = ro.certificate_B(C, w)
        assert cert <= brute + 1e-12, f"(B) unsound: certificate {cert} > grid minimum {brute}"
        assert cert <= ro.ray_sigma_min(C, V, None) + 1e-12


# ---------------------------------------------------------------------------------------------------------------
# the adversary


def _ray_brute(C, V, lower, grid):
    best = math.inf
    for s in np.array(np.meshgrid(*([grid] * C.shape[1]))).reshape(C.shape[1], -1).T:
        s = s if lower is None else np.maximum(s, lower)
        best = min(best, _smin(C + V * s[None, :]))
    return best


def test_ray_sigma_min_closed_forms_case_A():
    # n = 1: sigma_1 = |c + s v| over s >= 1
    assert ro.ray_sigma_min(np.array([[-1.0]]), np.array([[3.0]]), 1.0) == pytest.approx(2.0, rel=1e-14), (
        "the minimum over s >= 1 of |3 s - 1| is 2 at the ray's vertex s = 1"
    )
    # vertex minimum of a non-quadratic f: ||(3 s - 1, 1)|| over s >= 1 is sqrt(5) at s = 1, found exactly
    got = ro.ray_sigma_min(np.array([[-1.0], [1.0]]), np.array([[3.0], [0.0]]), 1.0)
    assert got == pytest.approx(math.sqrt(5.0), rel=1e-15), f"vertex minimum sqrt(5) expected, got {got!r}"
    # an interior minimum: |2 s - 5| = 0 at s = 2.5 (s = 1 is a stationary point of v -> |2 (1 + v^2) - 5|)
    got = ro.ray_sigma_min(np.array([[-5.0]]), np.array([[2.0]]), 1.0)
    assert got < 1e-7, f"the adversary must find the interior zero at s = 2.5, got {got}"
    # n = 3 reads the smallest of three singular values (C, V diagonal: min_i |c_i + s_i v_i|)
    C, V = np.diag([-1.0, -1.0, -1.0]), np.diag([3.0, 5.0, 7.0])
    assert ro.ray_sigma_min(C, V, 1.0) == pytest.approx(2.0, rel=1e-12)
    # d = 3 > n = 2 random instance against a brute-force grid (the adversary's value is some f(s) >= the true min)
    rng = np.random.default_rng(3)
    C, V = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)) * 2.0
    brute = _ray_brute(C, V, 1.0, np.linspace(1.0, 6.0, 201))
    got = ro.ray_sigma_min(C, V, 1.0)
    assert got <= brute * (1 + 1e-3) + 1e-9, f"adversary {got} worse than the grid {brute}"


def test_ray_sigma_min_returns_a_vertex_minimum_exactly():
    """The first start is the ray's vertex s = 1 (v = 0), and the value there counts: a minimum at the vertex is
    returned bit-exactly. Columns (3 s_1 - 1) e_1 + e_4, (4 s_2 - 1) e_2 + e_4, (5 s_3 - 1) e_3 + e_4: the Gram matrix
    diag(a_i^2) + 1 1^T grows (in the PSD order) with every s_i >= 1, so sigma_3 is smallest at s = 1."""
    C = np.vstack([-np.eye(3), np.ones((1, 3))])
    V = np.vstack([np.diag([3.0, 4.0, 5.0]), np.zeros((1, 3))])
    at_vertex = _smin(C + V)
    grid = np.linspace(1.0, 3.0, 9)
    assert at_vertex <= _ray_brute(C, V, 1.0, grid), "the vertex is the minimum on a grid of the ray"
    got = ro.ray_sigma_min(C, V, 1.0)
    assert got == at_vertex, f"vertex minimum {at_vertex!r} expected exactly, got {got!r}"


def test_ray_sigma_min_explores_negative_s():
    """s in R^n (lower=None): on this instance the minimum (about 0) lies at s < 0 and only the negative start
    reaches it; a 61 x 61 grid over [-6, 6]^2 gets lower than a start
    confined to s > 0."""
    rng = np.random.default_rng(35)
    C, V = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)) * 2.0
    g = np.linspace(-6.0, 6.0, 61)
    grid = min(_smin(C + V * np.array([a, b])[None, :]) for a in g for b in g)
    got = ro.ray_sigma_min(C, V, None)
    assert got <= grid and got < 1e-6, f"adversary {got} vs grid {grid}"
    assert ro.ray_sigma_min(C, V, None) == got, "seeded random starts: the same value again"


def _ray_replay(C, V, lower, maxiter=80, seed=0):
    """The documented search, written out: starts 1, 3, U(0, 5)^n, -U(0, 5)^n from default_rng(seed), BFGS."""
    from scipy.optimize import minimize

    n = C.shape[1]
    s_of = (lambda v: v) if lower is None else (lambda v: lower + v * v)
    f = lambda v: _smin(C + V * s_of(v)[None, :])  # noqa: E731
    r = np.random.default_rng(seed)
    best = math.inf
    for s0 in (np.ones(n), np.full(n, 3.0), r.uniform(0.0, 5.0, n), -r.uniform(0.0, 5.0, n)):
        v0 = s0 if lower is None else np.sqrt(np.maximum(s0 - lower, 0.0))
        best = min(best, float(minimize(f, v0, method="BFGS", options={"maxiter": maxiter}).fun), f(v0))
    return best


@pytest.mark.parametrize("seed", [3, 21])
def test_ray_sigma_min_is_the_documented_search(seed):
    # ill-scaled instances on which BFGS runs out of its 80 iterations: the iteration cap and every start show
    rng = np.random.default_rng(seed)
    n = 5
    C, V = rng.normal(size=(6, n)) * rng.uniform(0.1, 10), rng.normal(size=(6, n)) * np.exp(rng.normal(size=n) * 2)
    got = ro.ray_sigma_min(C, V, 1.0)
    assert got == _ray_replay(C, V, 1.0)
    assert got > _ray_replay(C, V, 1.0, maxiter=81), "at most 80 iterations"
    assert got != _ray_replay(C, V, 1.0, seed=1)
    assert ro.ray_sigma_min(C, V, None) == _ray_replay(C, V, None)


def test_ray_sigma_min_case_B_and_determinism():
    # n = 1, s in R: ||(1 + s, 1)|| has its minimum 1 at s = -1 < 0
    got = ro.ray_sigma_min(np.array([[1.0], [1.0]]), np.array([[1.0], [0.0]]), None)
    assert got == pytest.approx(1.0, rel=1e-9)
    rng = np.random.default_rng(4)
    C, w, beta = rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=3)
    V = np.outer(w, beta)
    a = ro.ray_sigma_min(C, V, None)
    assert a >= ro.certificate_B(C, w) - 1e-12
    assert ro.ray_sigma_min(C, V, None) == a, "the adversary's random starts are seeded: same input, same value"
    C, V = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    a = ro.ray_sigma_min(C, V, 1.0)
    assert ro.ray_sigma_min(C, V, 1.0) == a
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. scipy's OptimizeWarning for an unknown solver option
        ro.ray_sigma_min(C, V, 1.0)
        ro.ray_sigma_min(C, V, None)


# ---------------------------------------------------------------------------------------------------------------
# the case-(B) dataset


def _affine_layer(rng, d, kappa=0.5, radius=20.0):
    return Layer((random_head(rng, d, d),), affine_mlp(rng, d, 2 * d, kappa, radius=radius))


def _small_mlp(rng, d, r, b1, scale=0.2):
    W1, W2 = rng.normal(size=(r, d)), rng.normal(size=(d, r))
    W1 *= scale / np.linalg.norm(W1, 2)
    W2 *= scale / np.linalg.norm(W2, 2)
    return MLP(W1, np.asarray(b1, dtype=np.float64), W2, rng.normal(size=d) * 0.1)


def test_dataset_is_the_documented_construction():
    rng = np.random.default_rng(5)
    d, n = 5, 3
    layer = Layer((random_head(rng, d, d),), _small_mlp(rng, d, 4, np.full(4, 3.0)))
    Xs = [rng.uniform(-1, 1, size=(d, 3)) for _ in range(n)]  # three tokens: the query is the last one
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    beta = np.array([0.7, -1.2, 0.4])
    ds = ro.rank_obstruction_dataset(layer, n, Xs=Xs, u=u, beta=beta)
    assert ds.n == n and ds.kappa == pytest.approx(0.04, rel=1e-12)
    W1, b1, W2 = layer.mlp.W1, layer.mlp.b1, layer.mlp.W2
    for i, X in enumerate(Xs):
        out = layer(X)[:, -1]  # the layer's own forward pass: MLP(x + Att(x, X)) at the last token
        assert np.allclose(ds.Y[:, i], out + beta[i] * u, rtol=0, atol=1e-13), "y_i = tau(X_i)_last + beta_i u"
        assert np.allclose(
            ds.C[:, i] + X[:, -1],
            np.linalg.solve(np.eye(d) + W2 @ W1, out - layer.mlp.b2 - W2 @ b1),
            rtol=0,
            atol=1e-12,
        ), "c_i + x_i = z_i: the all-active MLP's affine inverse of tau(X_i)_last"
        assert np.allclose(mlp_apply(layer.mlp, X[:, -1] + ds.T[:, i]), ds.Y[:, i], rtol=0, atol=1e-12), (
            "t_i = MLP^-1(y_i) - x_i"
        )
        z = X[:, -1] + ds.C[:, i]
        assert np.allclose(ds.H[:, i], W1 @ z + b1, rtol=0, atol=1e-13), "H = ReLU(W_1 z + b_1), all active"
    assert np.allclose((np.eye(d) + W2 @ W1) @ ds.w, u, rtol=0, atol=1e-14), "J w = u"
    assert ds.certificate == ro.certificate_B(ds.C, ds.w)
    # the Jacobian J = I + W_2 W_1 against finite differences of the MLP at an all-active point
    z0 = Xs[0][:, -1] + ds.C[:, 0]
    h = 1e-6
    J = np.column_stack(
        [(mlp_apply(layer.mlp, z0 + h * e) - mlp_apply(layer.mlp, z0 - h * e)) / (2 * h) for e in np.eye(d)]
    )
    assert np.allclose(J @ ro.common_direction(layer.mlp, u), u, rtol=0, atol=1e-8)


def test_dataset_dtypes_and_extended_precision_weights():
    rng = np.random.default_rng(6)
    d, n = 4, 2
    layer = _affine_layer(rng, d)
    Xs = [rng.uniform(-1, 1, size=(d, 2)).astype(np.float32) for _ in range(n)]
    u = (np.eye(d)[0]).astype(np.float32)
    beta = np.array([1.0, -0.5], dtype=np.float32)
    ds = ro.rank_obstruction_dataset(layer, n, Xs=Xs, u=u, beta=beta)
    assert all(X.dtype == np.float64 for X in ds.Xs) and ds.u.dtype == np.float64 and ds.beta.dtype == np.float64
    assert ds.H.dtype == np.float64 and ds.T.dtype == np.float64
    if LONG:
        m = layer.mlp
        for field in ("W1", "b1"):
            parts = {"W1": m.W1, "b1": m.b1, "W2": m.W2, "b2": m.b2}
            parts[field] = _long_off(parts[field], 3)
            ly = Layer(layer.heads, MLP(**parts))
            got = ro.rank_obstruction_dataset(ly, n, Xs=Xs, u=u, beta=beta)
            assert got.H.dtype == np.float64, f"H from extended-precision {field} must be float64"
            assert np.array_equal(got.H, ds.H), f"{field} rounded to float64 before H = ReLU(W_1 Z + b_1)"


def test_dataset_draws():
    """Xs ~ U[-1, 1]^{d x 2}, u uniform on the sphere, beta_i = beta_scale * (+-1) * U[0.5, 1.5] (default scale 1)."""
    rng = np.random.default_rng(7)
    layer = _affine_layer(rng, 4)
    xs, mags, mags_vary = [], [], True
    for k in range(40):
        ds = ro.rank_obstruction_dataset(layer, 3, np.random.default_rng(100 + k))
        assert all(X.shape == (4, 2) for X in ds.Xs)
        assert np.linalg.norm(ds.u) == pytest.approx(1.0, abs=1e-15)
        xs.append(np.concatenate([X.ravel() for X in ds.Xs]))
        mags.append(np.abs(ds.beta))
        mags_vary &= len(set(np.abs(ds.beta).tolist())) == 3
    signs = np.sign(
        np.array([ro.rank_obstruction_dataset(layer, 3, np.random.default_rng(300 + k)).beta for k in range(40)])
    )
    assert np.all(np.abs(signs) == 1) and np.any(signs.min(axis=1) != signs.max(axis=1)), (
        "signs are drawn per example from {-1, +1}"
    )
    assert (signs == 1).mean() == pytest.approx(0.5, abs=0.15) and mags_vary
    xs, mags = np.concatenate(xs), np.concatenate(mags)
    assert xs.min() >= -1.0 and xs.max() <= 1.0 and xs.min() < -0.98 and xs.max() > 0.98
    assert mags.min() >= 0.5 and mags.max() <= 1.5 and mags.min() < 0.52 and mags.max() > 1.48, (
        f"|beta| in [0.5, 1.5] (default beta_scale = 1): {mags.min()} .. {mags.max()}"
    )
    ds = ro.rank_obstruction_dataset(layer, 3, np.random.default_rng(9), beta_scale=1e-3)
    assert np.all((np.abs(ds.beta) >= 0.5e-3) & (np.abs(ds.beta) <= 1.5e-3))


def test_dataset_hypotheses():
    rng = np.random.default_rng(8)
    d = 4
    layer = _affine_layer(rng, d)
    with pytest.raises(ValueError, match=r"n \+ 1 <= d"):
        ro.rank_obstruction_dataset(layer, 4, rng)
    with pytest.raises(ValueError, match=r"h = 1"):
        ro.rank_obstruction_dataset(Layer(layer.heads * 2, layer.mlp), 2, rng)
    # r = n is allowed, r < n is not
    mlp2 = _small_mlp(rng, d, 2, np.full(2, 3.0))
    ds = ro.rank_obstruction_dataset(Layer(layer.heads, mlp2), 2, rng)
    assert ds.H.shape == (2, 2)
    with pytest.raises(ValueError, match=r"r >= n .* r = 2, n = 3"):
        ro.rank_obstruction_dataset(Layer(layer.heads, mlp2), 3, rng)
    # activity: pre-activations in (0, 1) are active; H is then W_1 z + b_1 itself (not clipped at 1)
    mlp = _small_mlp(rng, d, 4, np.full(4, 0.6), scale=0.05)
    Xs = [rng.uniform(-1, 1, size=(d, 2)) for _ in range(2)]
    u, beta = np.eye(d)[1], np.array([0.5, -0.5])
    ds = ro.rank_obstruction_dataset(Layer(layer.heads, mlp), 2, Xs=Xs, u=u, beta=beta)
    Z = np.column_stack([X[:, -1] for X in Xs]) + ds.C
    pre = mlp.W1 @ Z + mlp.b1[:, None]
    assert 0 < pre.min() and pre.max() < 1 and np.allclose(ds.H, pre, rtol=0, atol=1e-15)
    # a ReLU exactly at its kink (pre-activation 0 everywhere) is not active
    W1 = mlp.W1.copy()
    W1[0] = 0.0
    b1 = mlp.b1.copy()
    b1[0] = 0.0
    with pytest.raises(ValueError, match=r"all ReLUs active on z_i and z_i \+ beta_i w"):
        ro.rank_obstruction_dataset(Layer(layer.heads, MLP(W1, b1, mlp.W2, mlp.b2)), 2, Xs=Xs, u=u, beta=beta)


def test_dataset_checks_the_shifted_points_z_plus_beta_w():
    """One ReLU watches e_1: active at z_i, and at z_i + beta_i w iff beta_i w_1 > -(z_i)_1 - b."""
    rng = np.random.default_rng(9)
    d = 4
    head = random_head(rng, d, d)
    W1 = np.zeros((3, d))
    W1[0, 0] = 0.5
    W1[1, 1] = W1[2, 2] = 0.01
    b1 = np.array([1.0, 5.0, 5.0])
    mlp = MLP(W1, b1, np.zeros((d, 3)), np.zeros(d))  # J = I: w = u
    layer = Layer((head,), mlp)
    Xs = [rng.uniform(-1, 1, size=(d, 2)) for _ in range(2)]
    Z = np.column_stack([X[:, -1] for X in Xs]) + np.column_stack([ro.attend(head, X[:, -1], X) for X in Xs])
    u = np.eye(d)[0]
    for b in (-6.0, 6.0, -0.5, 0.5):
        beta = np.array([b, b])
        pre = min((W1 @ Z + b1[:, None]).min(), (W1 @ (Z + np.outer(u, beta)) + b1[:, None]).min())
        if pre > 0:
            ro.rank_obstruction_dataset(layer, 2, Xs=Xs, u=u, beta=beta)
        else:
            with pytest.raises(ValueError, match=r"ReLUs active"):
                ro.rank_obstruction_dataset(layer, 2, Xs=Xs, u=u, beta=beta)
    assert (
        (W1 @ (Z + np.outer(u, [-6.0, -6.0])) + b1[:, None]).min()
        < 0
        < (W1 @ (Z + np.outer(u, [6.0, 6.0])) + b1[:, None]).min()
    ), "the instance separates the two signs"


def test_mlp_active_everywhere_and_common_direction():
    rng = np.random.default_rng(10)
    mlp = _small_mlp(rng, 3, 5, rng.uniform(-1, 1, 5))
    Z = rng.normal(size=(3, 4))
    want = min(
        sum(float(mlp.W1[k, j]) * float(Z[j, i]) for j in range(3)) + float(mlp.b1[k])
        for k in range(5)
        for i in range(4)
    )
    assert ro.mlp_active_everywhere(mlp, Z) == pytest.approx(want, rel=1e-13, abs=1e-15)
    u = rng.normal(size=3)
    w = ro.common_direction(mlp, u)
    assert np.allclose(w + mlp.W2 @ (mlp.W1 @ w), u, rtol=0, atol=1e-14), "(I + W_2 W_1) w = u"
    if LONG:  # extended-precision inputs are rounded to float64: here to an exact kink (0)
        one, m1 = np.array([[1.0]]), np.array([-1.0])
        assert ro.mlp_active_everywhere(MLP(_long_off(one), m1, one, m1), one) == 0.0
        assert ro.mlp_active_everywhere(MLP(one, _long_off(m1), one, m1), one) == 0.0
        assert ro.mlp_active_everywhere(MLP(one, m1, one, m1), _long_off(one)) == 0.0
        want = np.linalg.solve(np.eye(3) + mlp.W2 @ mlp.W1, u)
        for W1, W2 in ((_long_off(mlp.W1), mlp.W2), (mlp.W1, _long_off(mlp.W2))):
            got = ro.common_direction(MLP(W1, mlp.b1, W2, mlp.b2), u)
            assert np.array_equal(got, want)


# ---------------------------------------------------------------------------------------------------------------
# the prompt lower bound and lambda_i


def test_rank_lower_bound_formulas():
    lam = [0.2, 0.5, 0.8]
    k, c = 0.5, 3.0
    assert ro.rank_lower_bound(k, c, lam, "B") == pytest.approx(0.5 * 3.0 * 0.2, rel=1e-15)
    assert ro.rank_lower_bound(k, c, lam) == ro.rank_lower_bound(k, c, lam, "B"), "case B is the default"
    want_a = float(Fraction(1, 2) * 3 * (Fraction(1, 5) / Fraction(4, 5)))  # (1 - kappa) cert min/max = 0.375
    assert ro.rank_lower_bound(k, c, lam, "A") == pytest.approx(want_a, rel=1e-15)
    assert ro.rank_lower_bound(0.25, 2.0, [0.5, 0.5], "A") == pytest.approx(1.5, rel=1e-15)
    for bad in ("a", "b", "C", ""):
        with pytest.raises(ValueError, match=r"case must be 'A' or 'B'"):
            ro.rank_lower_bound(k, c, lam, bad)
    lam32 = np.array([0.1, 0.3, 0.7], dtype=np.float32)
    lo, hi = Fraction(float(lam32[0])), Fraction(float(lam32[2]))
    want = float(Fraction(1, 2) * 3 * lo / hi)
    assert ro.rank_lower_bound(k, c, lam32, "A") == pytest.approx(want, rel=1e-15), "min/max in float64"


def _lambda_brute(head, X, P):
    g = np.asarray(head.Wk).T @ (np.asarray(head.Wq) @ X[:, -1])
    zp = sum(math.exp(float(P[:, j] @ g)) for j in range(P.shape[1]))
    zx = sum(math.exp(float(X[:, j] @ g)) for j in range(X.shape[1]))
    return zp / (zp + zx)


def test_prompt_lambdas_against_explicit_sums():
    rng = np.random.default_rng(11)
    d = 3
    head = random_head(rng, d, d, 0.5)
    Xs = [rng.normal(size=(d, 3)) for _ in range(3)]  # three tokens: the query is the last column
    for mp in (1, 4):
        P = rng.normal(size=(d, mp))
        got = ro.prompt_lambdas(head, Xs, P)
        want = [_lambda_brute(head, X, P) for X in Xs]
        assert got.shape == (3,) and np.allclose(got, want, rtol=1e-13, atol=0), f"lambda_i = Z_P/(Z_P + Z_X): {got}"
    # faint prompts: t = log Z_X - log Z_P far above 709 (where e^t overflows) gives e^-t / (1 + e^-t), no clamp:
    # keys 0 and 1 score 0 and 1 (query 1, g = 1), the prompt token p scores p
    one = np.array([[1.0]])
    hd = Head(one, one, one, one)
    X = [np.array([[0.0, 1.0]])]
    t_of = lambda p: math.log(1.0 + math.e) - p  # noqa: E731
    for p in (-739.0, -720.0, -2.0, 0.5, 3.0):
        t = t_of(p)
        want = math.exp(-t) / (1.0 + math.exp(-t)) if t > 0 else 1.0 / (1.0 + math.exp(t))
        lam = ro.prompt_lambdas(hd, X, np.array([[p]]))[0]
        assert lam == pytest.approx(want, rel=1e-12, abs=0.0), f"prompt score {p}: lambda {lam} vs {want}"
    lam = ro.prompt_lambdas(hd, X, np.array([[-739.0]]))[0]
    assert 0.0 < lam < 1.0 / (1.0 + math.exp(700.0)), "no clamp at e^700: the faint prompt's weight is not overstated"
    assert ro.prompt_lambdas(hd, X, np.array([[-1000.0]]))[0] == 0.0, "underflows to 0, never above the true value"
    assert ro.prompt_lambdas(hd, X, np.array([[math.log(1.0 + math.e)]]))[0] == 0.5  # t = 0: Z_P = Z_X
    # a loud prompt (t = -798): 1 / (1 + e^t) = 1, where e^-t would overflow
    assert ro.prompt_lambdas(hd, X, np.array([[800.0]]))[0] == 1.0
    # the branch for t > 0 is e^-t / (1 + e^-t), bit for bit: at t = 0.983... it differs from 1 / (1 + e^t) by an ulp
    p = 0.33
    t = logsumexp(np.array([0.0, 1.0])) - p  # the function's own t, to the bit
    assert 0 < t < 1 and math.exp(-t) / (1.0 + math.exp(-t)) != 1.0 / (1.0 + math.exp(t))
    assert ro.prompt_lambdas(hd, X, np.array([[p]]))[0] == math.exp(-t) / (1.0 + math.exp(-t))


# ---------------------------------------------------------------------------------------------------------------
# LoRA


def _dataset_without_pivoting(seed):
    rng = np.random.default_rng(seed)
    d, r, n = 6, 12, 4
    for _ in range(50):
        layer = _affine_layer(rng, d)
        ds = ro.rank_obstruction_dataset(layer, n, rng)
        G = ds.H.T @ ds.H
        if np.array_equal(scipy.linalg.lu_factor(G)[1], np.arange(n)):
            return layer, ds, r, n
    raise AssertionError("no pivot-free instance drawn")


@pytest.mark.parametrize("u", [2.0**-53, 2.0**-24])
def test_lora_hidden_residual_bound_is_its_formula(u):
    layer, ds, r, n = _dataset_without_pivoting(12)
    upd = ro.lora_rank1(ds)
    got = ro.lora_hidden_residual_bound(ds, upd, u)
    H, y = ds.H, upd.y
    P, L, U = scipy.linalg.lu(H.T @ H)  # G = P L U (a second route to the factors; P = I here)
    assert np.array_equal(P, np.eye(n))
    LU = [[sum(abs(L[i, k]) * abs(U[k, j]) for k in range(n)) for j in range(n)] for i in range(n)]
    HH = [[sum(abs(H[k, i]) * abs(H[k, j]) for k in range(r)) for j in range(n)] for i in range(n)]
    for i in range(n):
        want = gamma(3 * n, u) * sum(LU[i][j] * abs(y[j]) for j in range(n)) + (gamma(r, u) + gamma(n, u)) * sum(
            HH[i][j] * abs(y[j]) for j in range(n)
        )
        assert got[i] == pytest.approx(want, rel=1e-12), f"example {i}: {got[i]} vs {want}"
    # soundness in float64: the computed v~ meets H^T v~ = beta to within the bound
    resid = np.array(
        [
            abs(
                float(
                    sum(Fraction(float(H[k, i])) * Fraction(float(upd.v[k])) for k in range(r))
                    - Fraction(float(ds.beta[i]))
                )
            )
            for i in range(n)
        ]
    )
    assert np.all(resid <= ro.lora_hidden_residual_bound(ds, upd, 2.0**-53)), f"residuals {resid} exceed the bound"


def test_lora_update_and_with_w2_update():
    layer, ds, r, n = _dataset_without_pivoting(13)
    upd = ro.lora_rank1(ds)
    assert upd.params == 6 + r and np.linalg.matrix_rank(upd.delta) == 1
    assert np.allclose(ds.H.T @ upd.v, ds.beta, rtol=0, atol=1e-12), "H^T v = beta"
    rng = np.random.default_rng(14)
    X = rng.normal(size=(6, 3))
    delta = rng.normal(size=(6, r)) * 0.01
    for hard in (False, True):
        for causal in (False, True):
            ly = Layer(layer.heads, layer.mlp, hard, causal)
            new = ro.with_w2_update(ly, delta)
            assert (new.hard, new.causal) == (hard, causal) and new.heads is ly.heads
            assert np.array_equal(new.mlp.W2, np.asarray(layer.mlp.W2) + delta)
            assert new.mlp.W1 is layer.mlp.W1 and new.mlp.b1 is layer.mlp.b1 and new.mlp.b2 is layer.mlp.b2
            assert np.array_equal(ro.with_w2_update(ly, 0.0)(X), ly(X)), "a zero update is the same layer"
