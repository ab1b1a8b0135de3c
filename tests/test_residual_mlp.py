"""constructions.residual_mlp: the inverse's step count and shapes, and the pair-norm rounding floor's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from constructions import residual_mlp as rm
from constructions.precision import gamma
from constructions.transformer import random_contractive_mlp


@pytest.mark.parametrize("kappa, n", [(math.exp(-1.0), 50), (0.5, 10 + math.ceil(40 / math.log(2))), (0.0, 11),
                                      (1.0, 40010), (math.exp(-80.0), 11)])
def test_inverse_iterations_reach_e_minus_40(kappa, n):
    assert rm.inverse_iterations(kappa) == n


def test_mlp_inverse_counts_its_steps_and_keeps_the_shape():
    rng = np.random.default_rng(0)
    mlp = random_contractive_mlp(rng, 3, 6, 0.5)
    Y = rng.normal(size=(3, 4))
    Z, it = rm.mlp_inverse(mlp, Y, max_iter=5)
    assert it == 5 and Z.shape == (3, 4)  # no exact-zero step within 5: all 5 taken and counted
    Zm = Y.copy()
    for _ in range(5):
        Zm = Y - mlp.residual_part(Zm)
    assert np.array_equal(Z, Zm)  # exactly five fixed-point steps z <- y - F(z) from z = y
    Z, it = rm.mlp_inverse(mlp, Y)
    # the iterate stops changing (a step exactly 0) long before the e^-40 step count
    assert it < rm.inverse_iterations(rm.mlp_kappa(mlp)) and np.abs(mlp(Z) - Y).max() <= 1e-13
    z, it1 = rm.mlp_inverse(mlp, Y[:, 0])  # a single token: a vector in, a vector out
    assert z.shape == (3,) and np.abs(z - Z[:, 0]).max() <= 1e-13 and it1 >= 1
    assert rm.mlp_inverse(mlp, Y, tol=-1.0)[1] == it  # no tolerance at all: still stops on the exact zero step
    Zt, itt = rm.mlp_inverse(mlp, Y, tol=1e-3)
    assert itt < it and np.abs(Zt - Z).max() <= 1e-2


def _pair_floor(mlp, X1, X2, u):
    d = X1.shape[0]
    F1, F2 = mlp(X1), mlp(X2)
    E = rm.mlp_eval_rounding(mlp, X1, u) + rm.mlp_eval_rounding(mlp, X2, u) + u * (np.abs(F1) + np.abs(F2))
    g = gamma(d + 1, u)
    ef = np.array([math.sqrt(sum(float(v) ** 2 for v in E[:, j])) * (1 + g)
                   + g * math.sqrt(sum(float(v) ** 2 for v in (F1 - F2)[:, j])) for j in range(X1.shape[1])])
    ex = np.array([(u + g) * math.sqrt(sum(float(v) ** 2 for v in (np.abs(X1) + np.abs(X2))[:, j]))
                   for j in range(X1.shape[1])])
    return ef, ex


@pytest.mark.parametrize("u", [2.0**-53, 2.0**-11])
def test_pair_norm_rounding_is_its_documented_formula(u):
    rng = np.random.default_rng(1)
    mlp = random_contractive_mlp(rng, 4, 7, 0.8)
    X1, X2 = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))  # d = 4 tokens of size 4, 6 columns: d != n
    ef, ex = rm.pair_norm_rounding(mlp, X1, X2, u)
    want_f, want_x = _pair_floor(mlp, X1, X2, u)
    assert ef.shape == ex.shape == (6,)
    np.testing.assert_allclose(ef, want_f, rtol=1e-13)
    np.testing.assert_allclose(ex, want_x, rtol=1e-13)
    f32 = rm.pair_norm_rounding(mlp, X1.astype(np.float32), X2.astype(np.float32), u)
    X1r, X2r = (X.astype(np.float32).astype(np.float64) for X in (X1, X2))
    f64 = rm.pair_norm_rounding(mlp, X1r, X2r, u)
    assert np.array_equal(f32[0], f64[0]) and np.array_equal(f32[1], f64[1])


def _eval_floor_loop(mlp, X, u):
    """mlp_eval_rounding's documented e1, e2, e, one entry at a time."""
    W1, b1, W2, b2 = mlp.W1, mlp.b1, mlp.W2, mlp.b2
    r, d = W1.shape
    out = np.empty(X.shape)
    for j in range(X.shape[1]):
        x = X[:, j]
        e1 = [gamma(d + 1, u) * (sum(abs(W1[i, k]) * abs(x[k]) for k in range(d)) + abs(b1[i])) for i in range(r)]
        h = [max(sum(W1[i, k] * x[k] for k in range(d)) + b1[i], 0.0) for i in range(r)]
        for o in range(W2.shape[0]):
            e2 = gamma(r + 1, u) * (sum(abs(W2[o, i]) * (h[i] + e1[i]) for i in range(r)) + abs(b2[o])) \
                + sum(abs(W2[o, i]) * e1[i] for i in range(r))
            f = sum(W2[o, i] * h[i] for i in range(r)) + b2[o]
            out[o, j] = e2 * (1.0 + u) + u * (abs(x[o]) + abs(f) + e2)
    return out


@pytest.mark.parametrize("u", [2.0**-53, 2.0**-11])
def test_mlp_eval_rounding_is_its_documented_formula(u):
    rng = np.random.default_rng(2)
    mlp = random_contractive_mlp(rng, 3, 5, 0.7)
    mlp = type(mlp)(mlp.W1, rng.normal(size=5), mlp.W2, rng.normal(size=3))  # nonzero biases of both signs
    X = rng.normal(size=(3, 4)) * 3
    got = rm.mlp_eval_rounding(mlp, X, u)
    np.testing.assert_allclose(got, _eval_floor_loop(mlp, X, u), rtol=1e-12)
    Xr = X.astype(np.float32)
    assert np.array_equal(rm.mlp_eval_rounding(mlp, Xr, u), rm.mlp_eval_rounding(mlp, Xr.astype(np.float64), u))


def test_affine_mlp_and_the_contraction_hypothesis():
    rng = np.random.default_rng(3)
    kappa, radius = 0.64, 2.0
    for sign in (-1.0, 1.0):
        mlp = rm.affine_mlp(rng, 3, 5, kappa, sign=sign, radius=radius)
        assert np.allclose(mlp.b1, math.sqrt(kappa) * radius + 1.0) and rm.mlp_kappa(mlp) == pytest.approx(kappa)
        z = rng.normal(size=3)
        z *= 1.9 / np.linalg.norm(z)
        np.testing.assert_allclose(rm.mlp_apply(mlp, z), (1 + sign * kappa) * z, atol=1e-13)
        np.testing.assert_allclose(rm.mlp_apply(mlp, np.zeros(3)), 0.0, atol=1e-15)
    default = rm.affine_mlp(np.random.default_rng(4), 2, 2, 0.25)  # sign = -1, radius = 1 by default
    assert np.allclose(default.b1, 1.5) and np.allclose(default.W2 @ default.W1, -0.25 * np.eye(2))
    assert rm.mlp_apply(default, [1, 0]).dtype == np.float64
    with pytest.raises(ValueError, match="r >= d"):
        rm.affine_mlp(rng, 3, 2, 0.5)
    W = np.eye(2)
    from constructions.transformer import MLP

    with pytest.raises(ValueError, match="violated: kappa = 1$"):
        rm.require_contractive(MLP(W, np.zeros(2), W, np.zeros(2)))  # kappa = 1 exactly: not contractive
