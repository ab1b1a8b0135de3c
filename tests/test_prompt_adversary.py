"""constructions.prompt_adversary: the objective against a direct forward pass, its gradient, and the search's
arguments (power, maxiter, starts) reaching scipy's BFGS."""

from __future__ import annotations

import numpy as np
import pytest

from constructions.prompt_adversary import best_prompt, optimise_prompt, prompt_objective
from constructions.residual_mlp import mlp_apply
from constructions.single_layer import attend, score_vector, single_head, value_matrix
from constructions.transformer import Layer, random_contractive_mlp, random_head


def _setup(d=3, n_cols=3, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    layer = Layer((random_head(rng, d, d, scale),), random_contractive_mlp(rng, d, 2 * d, 0.5))
    ex = [(rng.normal(size=(d, n_cols)), rng.normal(size=d)) for _ in range(3)]
    return rng, layer, ex


def _direct(layer, ex, P, power):
    head = single_head(layer)
    sq = []
    for X, y in ex:
        x = X[:, -1]
        z = x + attend(head, x, np.concatenate([P, X], axis=1))
        e = mlp_apply(layer.mlp, z) - y
        sq.append(float(e @ e))
    return float(np.sum(np.array(sq) ** power) ** (1.0 / power))


@pytest.mark.parametrize("power", [1, 2, 4])
def test_objective_is_the_layer_error_at_the_last_column(power):
    rng, layer, ex = _setup(n_cols=3)  # three columns: the last one, not the second, is scored
    P = rng.normal(size=(3, 2))
    f = prompt_objective(layer, ex, power=power)
    val, grad = f(P.ravel())
    assert val == pytest.approx(_direct(layer, ex, P, power), rel=1e-12)
    h = 1e-6
    fd = np.array([(f(P.ravel() + h * e)[0] - f(P.ravel() - h * e)[0]) / (2 * h) for e in np.eye(P.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)
    # inputs of other dtypes are read as float64
    ex32 = [(X.astype(np.float32).astype(np.float64), y) for X, y in ex]
    val64 = prompt_objective(layer, ex32, power=power)(P.ravel())[0]
    val32 = prompt_objective(layer, [(X.astype(np.float32), y) for X, y in ex], power=power)(P.ravel())[0]
    assert val32 == val64
    assert prompt_objective(layer, [(np.ones((3, 2), dtype=int), np.zeros(3, dtype=int))])(P.ravel())[0] == \
        prompt_objective(layer, [(np.ones((3, 2)), np.zeros(3))])(P.ravel())[0]


def test_objective_survives_large_scores_and_an_exact_fit():
    rng, layer, ex = _setup(scale=30.0)
    P = 20.0 * rng.normal(size=(3, 2))
    val, grad = prompt_objective(layer, ex)(P.ravel())
    assert np.isfinite(val) and np.all(np.isfinite(grad))
    # targets equal to the layer's outputs: the objective is 0 with a zero (not nan) gradient
    f = prompt_objective(layer, ex)
    head = single_head(layer)
    fit = []
    for X, _ in ex:  # the objective's own forward pass, in its order of operations, so e = 0 exactly
        x = X[:, -1]
        S = np.concatenate([P, X], axis=1)
        s = S.T @ score_vector(head, x)
        w = np.exp(s - s.max())
        w /= w.sum()
        o = value_matrix(head) @ (S @ w)
        W1, b1, W2, b2 = layer.mlp.W1, layer.mlp.b1, layer.mlp.W2, layer.mlp.b2
        fit.append((X, x + o + W2 @ np.maximum(W1 @ (x + o) + b1, 0.0) + b2))
    val, grad = prompt_objective(layer, fit)(P.ravel())
    assert val == 0.0 and np.array_equal(grad, np.zeros(P.size))
    assert f(P.ravel())[0] > 0


def test_optimise_prompt_honours_maxiter_and_falls_back_to_the_start():
    rng, layer, ex = _setup()
    f = prompt_objective(layer, ex, power=4)
    calls = []

    def counted(x):
        calls.append(1)
        return f(x)

    P0 = rng.normal(size=(3, 2))
    P1 = optimise_prompt(counted, P0, maxiter=1)
    few = len(calls)
    calls.clear()
    Pm = optimise_prompt(counted, P0, maxiter=100)
    assert P1.shape == Pm.shape == (3, 2) and few < len(calls)
    assert f(Pm.ravel())[0] < f(P1.ravel())[0] < f(P0.ravel())[0]

    def overflowing(x):
        raise FloatingPointError("overflow")

    assert optimise_prompt(overflowing, P0, 10) is P0

    def to_infinity(x):
        return float(-np.sum(x)), np.full_like(x, -np.inf)  # an unbounded descent: BFGS leaves the finite range

    with np.errstate(all="ignore"):  # scipy's line search meets the infinite gradient: x becomes nan
        assert optimise_prompt(to_infinity, P0, 5) is P0


def test_best_prompt_defaults_are_power_4_and_60_iterations():
    rng, layer, ex = _setup(seed=2)
    starts = [rng.normal(size=(3, 2)), rng.normal(size=(3, 1))]
    got = best_prompt(layer, ex, starts)
    f4 = prompt_objective(layer, ex, power=4)
    want = [optimise_prompt(f4, s, 60) for s in starts]
    assert [g.shape for g in got] == [(3, 2), (3, 1)]
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)
    one = best_prompt(layer, ex, starts[:1], power=1, maxiter=2)[0]
    assert np.array_equal(one, optimise_prompt(prompt_objective(layer, ex, power=1), starts[0], 2))
    s32 = [s.astype(np.float32) for s in starts[:1]]
    assert np.array_equal(best_prompt(layer, ex, s32)[0],
                          best_prompt(layer, ex, [s32[0].astype(np.float64)])[0])


def test_objective_default_power_is_the_summed_squared_error():
    rng, layer, ex = _setup(seed=4)
    x = rng.normal(size=6)
    assert prompt_objective(layer, ex)(x)[0] == prompt_objective(layer, ex, power=1)(x)[0] != \
        prompt_objective(layer, ex, power=2)(x)[0]
