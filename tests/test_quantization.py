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
