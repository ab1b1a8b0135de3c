"""Table prompts, memorizing prompts and value-map FFNs: API, bad inputs, mpmath paths (hu2024.md §2.5, §3.5)."""

import math

import mpmath
import numpy as np
import pytest

from constructions import memorization as mem
from constructions import quantization as q
from constructions.lipschitz import random_lipschitz


def test_table_prompt_shape_and_lookup():
    d, L, K = 1, 2, 3
    f = random_lipschitz(2, d, L, 1.0, 1.0, "clipped_linear")
    P = mem.table_prompt(f, d, L, K)
    assert P.shape == (d, mem.prompt_length(d, L, K)) == (1, 18)
    T = q.lookup_table(f, d, L, K)
    assert np.array_equal(mem.table_prompt(T, d, L, K), P)
    G = q.all_grid_points(d, L, K)
    for i in range(G.shape[0]):
        assert np.array_equal(mem.lookup_from_prompt(P, G[i] + 0.2 / K, K, L), T[i])
    assert mem.counting_lower_bound(d, L, K) == mem.prompt_length(d, L, K)
    with pytest.raises(ValueError, match="shape"):
        mem.table_prompt(T[:-1], d, L, K)
    with pytest.raises(ValueError, match="budget"):
        mem.table_prompt(f, 3, 3, 20)
    with pytest.raises(ValueError, match="K_P"):
        mem.counting_lower_bound(1, 1, 2, K_P=1)


def test_memorizing_prompt():
    rng = np.random.default_rng(0)
    K, n = 8, 6
    Xs = (rng.choice(K**2, n, replace=False)[:, None, None] // np.array([[[K, 1]]]) % K + 0.5) / K
    Ys = rng.uniform(size=(n, 1, 2))
    for keys in (False, True):
        m = mem.memorizing_prompt((Xs, Ys), K, include_keys=keys)
        assert m.length == mem.memorizing_prompt_length(n, 2, keys)
        for i in range(n):
            assert np.array_equal(m.decode(Xs[i]), q.centred_quantize(Ys[i], K))
    assert mem.memorization_counting_bound(n, 1, 2, K) == pytest.approx(2 * n)
    pairs = [(Xs[0], Ys[0]), (Xs[0] + 0.01 / K, Ys[1])]
    with pytest.raises(ValueError, match="not distinct"):
        mem.memorizing_prompt(pairs, K)


def test_pt_memo_lower_bound_shape():
    C, d, L, alpha = 1.0, 1, 2, 2.0
    b = [mem.pt_memo_lower_bound(C, d, L, alpha, e) for e in (0.4, 0.2, 0.1)]
    assert b[0] < b[1] < b[2]
    K = q.choose_K(C, d, L, alpha, 0.1)
    assert b[2] == L * K ** (d * L)
    with pytest.raises(ValueError, match="eps"):
        mem.pt_memo_lower_bound(C, d, L, alpha, 0.0)
    assert mem.value_map_node_count(1, 1, 2) == 2 ** (1 * (2 + 1)) * 1


def test_interpolation_ffn_float_and_mp():
    rng = np.random.default_rng(3)
    M, d = 12, 2
    Y = rng.normal(size=(M, d))
    T = rng.uniform(size=(M, d))
    u = np.array([0.6, 0.8])
    F = mem.InterpolationFFN.from_targets(Y, T, u)
    assert F.hidden_width == M - 1
    W1, b1, W2, b2 = F.weights()
    assert W1.shape == (M - 1, d) and W2.shape == (d, M - 1)
    assert np.abs(F(Y.T) - T.T).max() < 1e-10
    ctx = mpmath.MPContext()
    ctx.dps = 60
    Fm = mem.InterpolationFFN.from_targets(Y, T, u, ctx=ctx)
    out = Fm(ctx.matrix(Y.T.tolist()), ctx)
    assert max(abs(out[i, j] - T[j, i]) for i in range(d) for j in range(M)) < ctx.mpf(10) ** -50
    with pytest.raises(ValueError, match="distinct"):
        mem.InterpolationFFN.from_nodes([0.0, 0.0], [[1.0], [2.0]])
    with pytest.raises(ValueError, match="projection"):
        mem.InterpolationFFN.from_targets(Y, T)


def test_interpolation_ffn_tiny_gaps_need_mp():
    ctx = mpmath.MPContext()
    ctx.dps = 400
    z = [ctx.mpf(1), 1 + ctx.mpf(10) ** -320, ctx.mpf(2)]
    F = mem.InterpolationFFN.from_nodes(z, [[0.25], [0.75], [0.5]], ctx=ctx)
    with pytest.raises(ValueError, match="overflow"):
        F.weights()
    out = F.apply_mp([z], ctx)
    assert abs(out[0, 1] - (z[1] + ctx.mpf(0.75))) < ctx.mpf(10) ** -60


def test_bump_stack_guard_and_width():
    rng = np.random.default_rng(1)
    M, d = 8, 2
    u = np.array([0.6, 0.8])
    Y = rng.normal(size=(M, d))
    T = rng.uniform(size=(M, d)) - 30 * u
    B = mem.BumpStack.from_targets(Y, T, u)
    assert B.depth == M and B.width == 4 and len(B.layers()) == M
    assert np.abs(B(Y.T) - T.T).max() < 1e-9
    with pytest.raises(ValueError, match="guard"):
        mem.BumpStack.from_targets(Y, rng.uniform(size=(M, d)) * 0 + Y[::-1], u)
    z = Y @ u
    gap = np.min(np.diff(np.sort(z)))
    with pytest.raises(ValueError, match="min node gap"):
        mem.BumpStack.from_targets(Y, T, u, h=gap / 3)
    ctx = mpmath.MPContext()
    ctx.dps = 30
    out = B.apply_mp(Y.T.tolist(), ctx)
    assert max(abs(out[i, j] - T[j, i]) for i in range(d) for j in range(M)) < 1e-9
    assert math.isclose(float(B.h), gap / 5)
