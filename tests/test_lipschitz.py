"""constructions.lipschitz: each family is the map its docstring states, its certified constant C is sound
(>= every measured difference quotient) and exact (attained) where the family attains it; the norm and the
Schur test are the textbook ones; the empirical estimate is a true lower estimate over close pairs in the cube.
"""

from __future__ import annotations

import numpy as np
import pytest

from constructions import lipschitz as lip

ALPHAS = (1.0, 1.5, 2.0, 3.0)


def _quotients(f, X, Xp):
    """||f(X) - f(X')||_alpha / ||X - X'||_alpha, pair by pair (batch axis 0)."""
    num = lip.alpha_norm(f(X) - f(Xp), f.alpha, axis=(1, 2))
    den = lip.alpha_norm(X - Xp, f.alpha, axis=(1, 2))
    return num / den


def _pairs(rng, n, d, L, scale):
    X = rng.uniform(size=(n, d, L))
    return X, np.clip(X + rng.normal(scale=scale, size=X.shape), 0.0, 1.0)


# --- the entry-wise norm and the Schur test --------------------------------------------------------------


@pytest.mark.parametrize("alpha", ALPHAS + (4.5,))
def test_alpha_norm_is_the_entrywise_vector_norm(alpha):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5, 3, 4))  # negative entries: the norm takes absolute values
    assert lip.alpha_norm(X, alpha) == pytest.approx(np.linalg.norm(X.ravel(), ord=alpha), rel=1e-13)
    per_item = lip.alpha_norm(X, alpha, axis=(1, 2))
    assert per_item.shape == (5,)
    assert np.allclose(per_item, [np.linalg.norm(x.ravel(), ord=alpha) for x in X], rtol=1e-13)
    per_row = lip.alpha_norm(X[0], alpha, axis=1)
    assert np.allclose(per_row, [np.linalg.norm(r, ord=alpha) for r in X[0]], rtol=1e-13)


def test_alpha_norm_computes_in_float64():
    """float32 (or integer) input is promoted first: the norm of 10^4 entries 1/3 is not float32-rounded."""
    X = np.full((100, 100), 1 / 3, dtype=np.float32)
    exact = np.sqrt(np.sum(np.float64(X[0, 0]) ** 2) * 10**4)
    got = lip.alpha_norm(X, 2.0)
    assert np.asarray(got).dtype == np.float64 and got == pytest.approx(exact, rel=1e-14)
    assert np.asarray(lip.alpha_norm(X, 1.0)).dtype == np.float64
    assert np.asarray(lip.alpha_norm(np.array([[3, -4]]), 1.0)).dtype == np.float64


def test_alpha_norm_exact_values():
    assert lip.alpha_norm([[3, -4]], 2) == 5.0  # integer input is converted
    assert lip.alpha_norm([[3, -4]], 1) == 7.0
    assert lip.alpha_norm([[-2.0]], 3.0) == pytest.approx(2.0, rel=1e-15)
    assert lip.alpha_norm(np.zeros((2, 2)), 1.5) == 0.0


def test_schur_bound_exact_value():
    A = np.array([[1.0, 2.0], [3.0, -4.0]])  # column abs-sums 4, 6; row abs-sums 3, 7
    assert lip.schur_bound(A, 1.0) == pytest.approx(6.0, rel=1e-15)  # = ||A||_{1->1}
    assert lip.schur_bound(A, 2.0) == pytest.approx(np.sqrt(42.0), rel=1e-15)
    assert lip.schur_bound(A, 3.0) == pytest.approx(6.0 ** (1 / 3) * 7.0 ** (2 / 3), rel=1e-14)
    assert lip.schur_bound([[0.0, -5.0, 1.0]], 2.0) == pytest.approx(np.sqrt(5.0 * 6.0), rel=1e-15)  # 1 x 3


def test_schur_bound_computes_in_float64():
    A = np.full((1, 10**4), 0.1, dtype=np.float32)  # a float32 row sum of 10^4 terms is off in the 8th digit
    row = np.sum(A.astype(np.float64))
    col = np.float64(A[0, 0])
    assert lip.schur_bound(A, 2.0) == pytest.approx(np.sqrt(col * row), rel=1e-14)
    assert lip.schur_bound(A, 1.5) == pytest.approx(col ** (1 / 1.5) * row ** (1 - 1 / 1.5), rel=1e-14)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_schur_bound_is_sound_and_exact_at_alpha_one(alpha):
    rng = np.random.default_rng(2)
    A = rng.normal(size=(3, 5))  # rectangular
    s = lip.schur_bound(A, alpha)
    x = rng.normal(size=(500, 5))
    ratio = lip.alpha_norm(x @ A.T, alpha, axis=1) / lip.alpha_norm(x, alpha, axis=1)
    assert ratio.max() <= s * (1 + 1e-12)
    if alpha == 2.0:
        assert np.linalg.norm(A, 2) <= s * (1 + 1e-12)
    if alpha == 1.0:  # ||A||_{1->1} is the largest column abs-sum: attained at e_j
        j = int(np.argmax(np.abs(A).sum(axis=0)))
        assert lip.alpha_norm(A[:, j], 1.0) == pytest.approx(s, rel=1e-14)


# --- argument checks -------------------------------------------------------------------------------------

BAD = [
    dict(d=0), dict(L=0), dict(d=-1), dict(L=-2), dict(d=1.5), dict(L=2.5), dict(d=1, L=lip.MAX_DL + 1),
    dict(d=lip.MAX_DL + 1, L=1), dict(C=-1e-9), dict(C=np.inf), dict(C=np.nan), dict(alpha=0.999),
    dict(alpha=np.inf), dict(alpha=np.nan), dict(alpha=0.0),
]


@pytest.mark.parametrize("family", [lip.clipped_linear, lip.scaled_permutation, lip.bump_sum, lip.relu_net])
@pytest.mark.parametrize("bad", BAD, ids=[",".join(f"{k}={v}" for k, v in b.items()) for b in BAD])
def test_bad_arguments_are_rejected(family, bad):
    args = dict(d=2, L=2, C=1.0, alpha=2.0) | bad
    with pytest.raises(ValueError):
        family(np.random.default_rng(0), args["d"], args["L"], args["C"], args["alpha"])


def test_boundary_arguments_are_accepted():
    rng = np.random.default_rng(0)
    f = lip.bump_sum(rng, 64, 64, 1.0, 1.0)  # d L = MAX_DL exactly (bump_sum has no dense dL x dL array)
    assert f.d * f.L == lip.MAX_DL
    g = lip.bump_sum(rng, 1, lip.MAX_DL, 1.0, 1.0)
    assert g.L == lip.MAX_DL
    for family in (lip.clipped_linear, lip.scaled_permutation, lip.bump_sum, lip.relu_net):
        h = family(rng, 1, 1, 0.0, 1.0)  # C = 0 and alpha = 1 are allowed
        assert (h.C, h.alpha) == (0.0, 1.0)
        X = rng.uniform(size=(20, 1, 1))
        assert np.ptp(h(X)) == 0.0  # a 0-Lipschitz map is constant
    with pytest.raises(ValueError):
        lip.bump_sum(rng, 1, 1, 1.0, 1.0, n_bumps=0)
    with pytest.raises(ValueError):
        lip.bump_sum(rng, 1, 1, 1.0, 1.0, n_bumps=1.5)
    with pytest.raises(ValueError):
        lip.relu_net(rng, 1, 1, 1.0, 1.0, width=0)
    with pytest.raises(ValueError):
        lip.relu_net(rng, 1, 1, 1.0, 1.0, width=2.5)
    assert lip.bump_sum(rng, 1, 2, 1.0, 1.0, n_bumps=1).params["mu"].shape == (1, 2)
    assert lip.relu_net(rng, 1, 2, 1.0, 1.0, width=1).params["W1"].shape == (1, 2)
    # the signature's defaults: 4 bumps, 8 hidden units (those random_lipschitz uses)
    assert lip.bump_sum(rng, 1, 2, 1.0, 1.0).params["mu"].shape == (4, 2)
    assert lip.relu_net(rng, 1, 2, 1.0, 1.0).params["W1"].shape == (8, 2)


@pytest.mark.parametrize("alpha", (1.0, 2.0))
def test_one_by_one_clipped_linear_certificate(alpha):
    """n = 1: A is one Gaussian number, |A| often below 1; the scaling must still make the certificate C exactly."""
    rng = np.random.default_rng(14)
    for _ in range(10):
        A = lip.clipped_linear(rng, 1, 1, 0.7, alpha).params["A"]
        assert lip.schur_bound(A, alpha) == pytest.approx(0.7, rel=1e-12)


@pytest.mark.parametrize("alpha", (1.0, 2.0))
def test_single_bump_certificate(alpha):
    """One bump of a 1 x 1 map: ||a||/r may be below 1; the scaling must still reach C exactly."""
    rng = np.random.default_rng(13)
    for _ in range(10):
        p = lip.bump_sum(rng, 1, 1, 0.7, alpha, n_bumps=1).params
        assert float(np.sum(lip.alpha_norm(p["a"], alpha, axis=1) / p["r"])) == pytest.approx(0.7, rel=1e-12)


@pytest.mark.parametrize("alpha", (1.0, 2.0))
def test_narrow_relu_net_certificate(alpha):
    """width 1, n = 1: the Schur bounds are |w1| |w2|, often below 1; the scaling must still reach C exactly."""
    rng = np.random.default_rng(12)
    for _ in range(10):
        f = lip.relu_net(rng, 1, 1, 0.7, alpha, width=1)
        p = f.params
        assert lip.schur_bound(p["W1"], alpha) * lip.schur_bound(p["W2"], alpha) == pytest.approx(0.7, rel=1e-12)


# --- each family is the map its docstring states ----------------------------------------------------------


def _members(d=2, L=3, C=1.3, alpha=2.0, seed=5):
    return [lip.random_lipschitz(seed, d, L, C, alpha, k) for k in lip.KINDS]


@pytest.mark.parametrize("f", _members(), ids=lip.KINDS)
def test_call_is_the_stated_formula(f):
    rng = np.random.default_rng(3)
    X = rng.uniform(size=(40, f.d, f.L))
    V = X.reshape(40, -1)
    p = f.params
    if f.kind in ("clipped_linear", "permutation"):
        Y = V @ p["A"].T + p["b"]
    elif f.kind == "relu_net":
        Y = np.maximum(V @ p["W1"].T + p["b1"], 0.0) @ p["W2"].T + p["b2"]
    else:
        dist = np.array([[np.linalg.norm(v - m, ord=f.alpha) for m in p["mu"]] for v in V])
        Y = p["b"] + np.maximum(0.0, 1.0 - dist / p["r"]) @ p["a"]
    expect = np.clip(Y, 0.0, 1.0).reshape(40, f.d, f.L)
    assert np.allclose(f(X), expect, rtol=0, atol=1e-13)
    assert 0.0 < np.mean((Y > 0) & (Y < 1))  # the clip is not active everywhere: the linear part is visible
    # one input (d, L) is the batch of one; a list works; a wrong shape is refused
    assert f(X[7]).shape == (f.d, f.L) and np.array_equal(f(X[7]), f(X[7:8])[0])
    assert np.array_equal(f(X[7].tolist()), f(X[7]))
    for bad in (np.zeros((f.L, f.d)), np.zeros((2, f.d, f.L + 1)), np.zeros((f.d * f.L,))):
        with pytest.raises(ValueError):
            f(bad)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_certificate_equals_C_exactly(alpha):
    C = 1.7
    for f in _members(C=C, alpha=alpha):
        p = f.params
        if f.kind == "clipped_linear":
            cert = lip.schur_bound(p["A"], alpha)
        elif f.kind == "permutation":
            cert = lip.schur_bound(p["A"], alpha)
            S = p["A"] / C  # a signed permutation with both signs
            assert np.array_equal(np.abs(S).sum(axis=0), np.ones(6)) and np.array_equal(np.abs(S).sum(axis=1),
                                                                                          np.ones(6))
            assert set(np.unique(S)) == {-1.0, 0.0, 1.0}
        elif f.kind == "bump_sum":
            cert = float(np.sum(lip.alpha_norm(p["a"], alpha, axis=1) / p["r"]))
        else:
            cert = lip.schur_bound(p["W1"], alpha) * lip.schur_bound(p["W2"], alpha)
        assert (f.C, f.alpha) == (C, alpha)
        assert cert == pytest.approx(C, rel=1e-12), f.kind


def test_random_signs_and_permutation():
    f = lip.random_lipschitz(0, 4, 8, 1.0, 1.0, "permutation")
    S = f.params["A"]
    signs = S[S != 0]
    assert 0 < np.sum(signs > 0) < 32  # both signs occur (2^-31 chance to fail for a fair draw)
    assert not np.array_equal(np.abs(S), np.eye(32))  # the permutation is not the identity


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("kind", lip.KINDS)
def test_certified_constant_is_sound(kind, alpha):
    rng = np.random.default_rng(4)
    for seed in range(3):
        f = lip.random_lipschitz(seed, 2, 2, 2.5, alpha, kind)
        for scale in (1e-3, 0.05, 0.5):
            X, Xp = _pairs(rng, 400, 2, 2, scale)
            q = _quotients(f, X, Xp)
            assert np.nanmax(q) <= 2.5 * (1 + 1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_isometry_family_attains_C(alpha):
    """The scaled signed permutation is C times an isometry: the quotient is exactly C where nothing clips."""
    C = 3.0
    f = lip.random_lipschitz(11, 2, 3, C, alpha, "permutation")
    n = 6
    centre = np.full((2, 3), 0.5)
    u = (f.params["A"] @ centre.ravel() + f.params["b"])  # the image of X = 1/2 before clipping
    assert np.all((u > 0) & (u < 1)) and np.array_equal(f(centre).ravel(), u)
    assert len(np.unique(u)) == n  # b places the centre at a random interior point, entry by entry
    step = 0.4 * min(u.min(), 1 - u.max()) / C  # small enough that no entry of f reaches 0 or 1
    rng = np.random.default_rng(6)
    for _ in range(20):
        v = rng.normal(size=(2, 3))
        Xp = centre + step * v / np.abs(v).max()
        q = _quotients(f, centre[None], Xp[None])[0]
        assert q == pytest.approx(C, rel=1e-10)


def test_clipped_linear_attains_C_at_alpha_one():
    """At alpha = 1 the Schur bound is ||A||_{1->1}, the largest column sum: attained along that coordinate."""
    C = 2.0
    f = lip.random_lipschitz(3, 2, 2, C, 1.0, "clipped_linear")
    A = f.params["A"]
    j = int(np.argmax(np.abs(A).sum(axis=0)))
    centre = np.full(4, 0.5)
    u = A @ centre + f.params["b"]
    assert np.all((u >= 0.25) & (u <= 0.75))  # b centres the image of X = 1/2 in [1/4, 3/4]
    e = np.zeros(4)
    e[j] = 0.1 / C  # |A e| <= C |e| = 0.1 < 1/4: nothing clips
    X, Xp = centre.reshape(1, 2, 2), (centre + e).reshape(1, 2, 2)
    assert _quotients(f, X, Xp)[0] == pytest.approx(C, rel=1e-12)


@pytest.mark.parametrize("C", (0.5, 4.0, 50.0))
@pytest.mark.parametrize("kind", ("clipped_linear", "relu_net"))
def test_centre_maps_inside(kind, C):
    for seed in range(4):
        f = lip.random_lipschitz(seed, 2, 2, C, 2.0, kind)
        Y = f(np.full((2, 2), 0.5))
        assert np.all((Y >= 0.25) & (Y <= 0.75)), kind  # unclipped, in [1/4, 3/4] by the choice of b
        assert len(np.unique(Y)) == 4  # a random point, entry by entry


def test_relu_net_hidden_layer_is_used():
    """The hidden ReLU is active on part of the cube and inactive on another part (b1 is a real offset)."""
    f = lip.random_lipschitz(2, 2, 2, 1.0, 2.0, "relu_net")
    p = f.params
    V = np.random.default_rng(7).uniform(size=(500, 4))
    H = V @ p["W1"].T + p["b1"]
    assert 0.05 < np.mean(H > 0) < 0.95
    assert len(np.unique(p["b1"])) == 8 and p["W1"].shape == (8, 4) and p["W2"].shape == (4, 8)


def test_relu_net_shape_does_not_depend_on_C():
    """W1 and b1 both scale with sqrt(C / s): where each ReLU kinks in the cube is the same for every C."""
    V = np.random.default_rng(8).uniform(size=(300, 4))
    patterns = []
    for C in (1e-6, 0.01, 1.0, 30.0):
        p = lip.random_lipschitz(4, 2, 2, C, 2.0, "relu_net").params
        patterns.append(V @ p["W1"].T + p["b1"] > 0)
    assert all(np.array_equal(patterns[0], q) for q in patterns[1:])


def test_bump_sum_parameters():
    n = 6
    for alpha in (1.0, 2.0):
        f = lip.random_lipschitz(9, 2, 3, 1.0, alpha, "bump_sum")
        p = f.params
        assert p["mu"].shape == (4, n) and p["a"].shape == (4, n) and p["r"].shape == (4,)
        assert np.all((p["mu"] >= 0) & (p["mu"] <= 1))  # centres in the cube
        assert np.all((p["r"] >= 0.2 * n ** (1 / alpha)) & (p["r"] <= n ** (1 / alpha)))  # radii up to the diameter
        assert np.all((p["b"] >= 0.25) & (p["b"] <= 0.75)) and len(np.unique(p["b"])) == n
        assert np.ptp(p["mu"]) > 0.5 and len(np.unique(p["r"])) == 4  # random centres and radii
        assert p["r"].min() < 0.9 * n ** (1 / alpha)
        # at a bump's centre phi_k = 1: f(mu_k) - b is sum_j a_j phi_j(mu_k) with phi_k(mu_k) = 1
        mu0 = p["mu"][0]
        phi = np.maximum(0.0, 1.0 - np.array([np.linalg.norm(mu0 - m, ord=alpha) for m in p["mu"]]) / p["r"])
        assert phi[0] == 1.0
        assert np.allclose(f(mu0.reshape(2, 3)).ravel(), np.clip(p["b"] + phi @ p["a"], 0, 1), atol=1e-13)


# --- random_lipschitz ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", lip.KINDS)
def test_random_lipschitz_is_a_function_of_its_arguments(kind):
    f = lip.random_lipschitz(7, 2, 3, 1.5, 2.0, kind)
    g = lip.random_lipschitz(7, 2, 3, 1.5, 2.0, kind)
    assert f.kind == kind and (f.d, f.L, f.C, f.alpha) == (2, 3, 1.5, 2.0)
    assert f.params.keys() == g.params.keys()
    assert all(np.array_equal(f.params[k], g.params[k]) for k in f.params)
    h = lip.random_lipschitz(8, 2, 3, 1.5, 2.0, kind)
    assert any(not np.array_equal(f.params[k], h.params[k]) for k in f.params)  # the seed matters
    # seeds are taken mod 2^32, so negative and huge seeds are accepted
    m = lip.random_lipschitz(-1, 2, 3, 1.5, 2.0, kind)
    w = lip.random_lipschitz(2**32 - 1, 2, 3, 1.5, 2.0, kind)
    assert all(np.array_equal(m.params[k], w.params[k]) for k in m.params)
    assert all(np.array_equal(f.params[k], lip.random_lipschitz(7 + 2**32, 2, 3, 1.5, 2.0, kind).params[k])
               for k in f.params)


def test_random_lipschitz_kinds_differ_and_sizes():
    fs = _members(d=1, L=2)
    assert [f.kind for f in fs] == list(lip.KINDS)
    assert fs[2].params["mu"].shape == (4, 2) and fs[3].params["W1"].shape == (8, 2)
    # the kind enters the seed: clipped_linear and permutation draw from different streams
    a, b = fs[0].params["b"], fs[1].params["b"]
    assert not np.allclose(a, b)
    with pytest.raises(ValueError):
        lip.random_lipschitz(0, 1, 1, 1.0, 1.0, "Clipped_linear")
    assert lip.random_lipschitz(0, 1, 2, 1.0, 1.0).kind == "clipped_linear"  # the signature's default family


# --- empirical_lipschitz ---------------------------------------------------------------------------------


class _Spy:
    """A LipschitzMap look-alike recording its inputs."""

    def __init__(self, f):
        self.f, self.d, self.L, self.alpha, self.calls = f, f.d, f.L, f.alpha, []

    def __call__(self, X):
        self.calls.append(np.array(X, copy=True))
        return self.f(X)


def _affine(c, d=2, L=2, alpha=2.0):
    """f(X) = c X + (1 - c)/2 with 0 < c <= 1: maps the cube into itself, never clips, Lipschitz exactly c."""
    n = d * L
    return lip.LipschitzMap(d, L, c, alpha, "clipped_linear", {"A": c * np.eye(n), "b": np.full(n, (1 - c) / 2)})


@pytest.mark.parametrize("alpha", (1.0, 2.0, 3.0))
def test_empirical_lipschitz_is_exact_on_an_affine_map(alpha):
    f = _affine(0.6, alpha=alpha)
    est = lip.empirical_lipschitz(f, np.random.default_rng(0))
    assert est == pytest.approx(0.6, rel=1e-9)


def test_empirical_lipschitz_samples_close_pairs_in_the_cube():
    spy = _Spy(_affine(0.5, d=2, L=3))
    lip.empirical_lipschitz(spy, np.random.default_rng(1))
    X, Xp = spy.calls
    assert X.shape == Xp.shape == (2000, 2, 3)  # the signature's default n_pairs
    for Z in (X, Xp):
        assert Z.min() >= 0.0 and Z.max() <= 1.0
    assert X.min() < 0.02 and X.max() > 0.98  # uniform over the whole cube
    D = Xp - X
    assert 0.02 < np.median(np.abs(D)) < 0.06  # close pairs: N(0, 0.05) steps (median |step| ~ 0.034)
    assert np.mean(D > 0) > 0.3 and np.mean(D < 0) > 0.3  # steps in both directions
    assert len(np.unique(np.round(D, 12))) > 5000  # an independent step per entry
    spy2 = _Spy(_affine(0.5))
    lip.empirical_lipschitz(spy2, np.random.default_rng(1), n_pairs=50, scale=0.2)
    assert 0.08 < np.median(np.abs(spy2.calls[1] - spy2.calls[0])) < 0.2


def test_empirical_lipschitz_lower_estimate_and_degenerate_pairs():
    rng = np.random.default_rng(2)
    for kind in lip.KINDS:
        f = lip.random_lipschitz(1, 2, 2, 1.2, 2.0, kind)
        est = lip.empirical_lipschitz(f, rng, n_pairs=500)
        assert 0.0 < est <= 1.2 * (1 + 1e-12)
    # no distinct pair (scale 0): nothing measured, the estimate is 0 (never nan, never an error)
    assert lip.empirical_lipschitz(_affine(0.5), rng, n_pairs=10, scale=0.0) == 0.0
