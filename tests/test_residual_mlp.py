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
    Z, it = rm.mlp_inverse(mlp, Y)
    assert it <= rm.inverse_iterations(rm.mlp_kappa(mlp)) and np.abs(mlp(Z) - Y).max() <= 1e-13
    z, it1 = rm.mlp_inverse(mlp, Y[:, 0])  # a single token: a vector in, a vector out
    assert z.shape == (3,) and np.abs(z - Z[:, 0]).max() <= 1e-13 and it1 >= 1
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
