"""constructions.contextual pinned against independent arithmetic (Lemma D's formulas, the head's evaluation, the
gap measurement and the arb certificate), so that a changed operator, constant, default or branch shows.

References are recomputed here: formulas in a separate, more precise mpmath context, softmax layers by explicit
loops, projection constants by brute force over pairs, random draws replayed from a fresh generator.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from constructions import contextual as cm
from constructions import transformer as tr

V1 = np.array([[-2.0, 1.0, 2.0, 3.0]])
V2 = np.array([[1.0, 2.0, -1.5], [0.5, -1.0, 1.0]])
# d = 1 vocabulary with r_min = 0.75, r_max = 2, eps_min = 1.25 (no constant equals 1)
V3 = np.array([[-1.5, 0.75, 2.0]])

HEAD_KW = dict(
    w=np.array([0.6, 0.8]),
    e=np.array([0.8, -0.6]),
    n=3,
    eps=1.7,
    r_min=1.3,
    r_max=2.2,
    c=0.9,
    c_emp=0.95,
    n_vocab=4,
    xi_factor=1.5,
    scale_factor=1.25,
)


def _ref(dps: int = 100) -> mpmath.MPContext:
    M = mpmath.MPContext()
    M.dps = dps
    return M


def _close(a, b, rel: float) -> bool:
    """|a - b| <= rel |b| in a 100-digit context (a, b: mpf of any context, or floats)."""
    M = _ref()
    a, b = M.mpf(a), M.mpf(b)
    return abs(a - b) <= M.mpf(rel) * abs(b)


def _head(**kw) -> cm.ContextualHead:
    return cm.ContextualHead(**{**HEAD_KW, **kw})


def _xi_ref(M, n, eps, r_min, c, xi_factor=1.0):
    return M.mpf(xi_factor) * (2 * M.log(n) + 3) / (M.mpf(c) ** 2 * M.mpf(eps) * M.mpf(r_min))


def _brute_c(w, V) -> float:
    """min over distinct u, u' in V u {0} of |w^T (u - u')| / ||u - u'||, by explicit loops."""
    U = [list(map(float, col)) for col in np.asarray(V, dtype=np.float64).T] + [[0.0] * V.shape[0]]
    best = math.inf
    for a, b in itertools.combinations(U, 2):
        diff = [x - y for x, y in zip(a, b, strict=True)]
        nrm = math.sqrt(sum(t * t for t in diff))
        if nrm > 0:
            best = min(best, abs(sum(wi * t for wi, t in zip(w, diff, strict=True))) / nrm)
    return best


def _replay_projection(V, seed, best_of=1):
    """Rejection sampling of a c_theory-separating unit w, replayed from default_rng(seed)."""
    rng = np.random.default_rng(seed)
    d, m = V.shape
    ct = (m + 1) ** -2 * math.sqrt(8.0 / (math.pi * d))
    best, accepted = None, 0
    while accepted < best_of:
        v = rng.standard_normal(d)
        w = v / np.linalg.norm(v)
        ce = _brute_c(w, V)
        if ce >= ct:
            accepted += 1
            if best is None or ce > best[1]:
                best = (w, ce)
    return best


def _layer_ref(M, X, w, e, xi, scale):
    """y_k = x_k + scale e sum_l softmax(xi p_k p)_l p_l with p_l = w^T x_l (explicit loops, no max shift)."""
    X = np.asarray(X, dtype=np.float64)
    d, n = X.shape
    cols = [[M.mpf(float(X[i, j])) for i in range(d)] for j in range(n)]
    wm, em = [M.mpf(float(v)) for v in w], [M.mpf(float(v)) for v in e]
    p = [sum(wm[i] * col[i] for i in range(d)) for col in cols]
    out = []
    for k in range(n):
        ex = [M.exp(M.mpf(xi) * p[k] * pl) for pl in p]
        s = sum(x * pl for x, pl in zip(ex, p, strict=True)) / sum(ex)
        out.append([cols[k][i] + M.mpf(scale) * em[i] * s for i in range(d)])
    return out


# --------------------------------------------------------------------------------------------
# closed-form constants
# --------------------------------------------------------------------------------------------


def test_xi_for_float_path_matches_formula():
    M = _ref()
    for n, eps, r_min, c in [(2, 0.7, 1.3, 0.4), (5, 1.9, 0.6, 0.25), (17, 0.35, 2.5, 1.7)]:
        got = cm.xi_for(n, eps, r_min, c)
        assert isinstance(got, float)
        assert got == cm.xi_for(n, eps, r_min, c, None)  # ctx defaults to None: the float path
        assert got == pytest.approx(float(_xi_ref(M, n, eps, r_min, c)), rel=1e-14, abs=0.0)


def test_xi_for_mp_path_matches_formula():
    ctx = cm.mp_context(60)
    M = _ref()
    for n, eps, r_min, c in [(2, 0.7, 1.3, 0.4), (5, 1.9, 0.6, 0.25), (17, 0.35, 2.5, 1.7)]:
        got = cm.xi_for(n, eps, r_min, c, ctx)
        assert isinstance(got, ctx.mpf)
        assert _close(got, _xi_ref(M, n, eps, r_min, c), 1e-55)


def test_log_delta_for_xi_matches_lemma_c_through_d():
    ctx = cm.mp_context(60)
    M = _ref()
    for n, eps, r_max, xi in [(6, 0.3, 1.9, 2.7), (2, 1.4, 0.8, 11.5), (9, 2.2, 3.1, 0.45)]:
        eps_m, r_m, xi_m = M.mpf(eps), M.mpf(r_max), M.mpf(xi)
        delta = eps_m / (4 * r_m) * M.log(n) ** 2 * M.exp(-2 * xi_m * r_m**2) / (xi_m * r_m)
        got = cm.log_delta_for_xi(n, eps, r_max, xi, ctx)
        assert _close(got, M.log(delta), 1e-50)


def _closed_ref(M, n, eps, r_min, r_max, nv, d):
    ln_n, eps, r_min, r_max = M.log(n), M.mpf(eps), M.mpf(r_min), M.mpf(r_max)
    v4 = M.mpf(nv + 1) ** 4
    pre = 2 * ln_n**2 * eps**2 * r_min / (r_max**2 * v4 * (2 * ln_n + 3) * M.pi * d)
    return M.log(pre * M.exp(-v4 * (2 * ln_n + 3) * M.pi * d * r_max**2 / (4 * eps * r_min)))


def test_log_delta_closed_matches_docstring_and_general_formula():
    ctx = cm.mp_context(60)
    M = _ref()
    for n, eps, r_min, r_max, nv, d in [(5, 0.6, 0.9, 2.1, 3, 2), (3, 1.3, 1.7, 2.4, 2, 3), (7, 0.45, 0.5, 0.7, 1, 5)]:
        got = cm.log_delta_closed(n, eps, r_min, r_max, nv, d, ctx)
        assert _close(got, _closed_ref(M, n, eps, r_min, r_max, nv, d), 1e-50)
        # = the general floor at xi = xi_for(c_theory), with c_theory formed exactly
        c = (M.mpf(nv + 1) ** -2) * M.sqrt(8 / (M.pi * d))
        xi = (2 * M.log(n) + 3) / (c**2 * M.mpf(eps) * M.mpf(r_min))
        assert _close(got, cm.log_delta_for_xi(n, eps, r_max, xi, _ref()), 1e-50)


# --------------------------------------------------------------------------------------------
# ContextualHead: constants in ctx
# --------------------------------------------------------------------------------------------


def test_head_constants_in_ctx():
    h = _head()
    ctx = cm.mp_context(60)
    M = _ref()
    xi = _xi_ref(M, 3, 1.7, 1.3, 0.9, 1.5)
    assert _close(h.xi_mp(ctx), xi, 1e-55)
    assert _close(h._xi_mp(ctx), xi, 1e-55)
    assert _close(h.R_mp(ctx), xi * M.mpf(2.2) ** 2, 1e-55)
    assert _close(h.output_scale_mp(ctx), M.mpf(1.25) * M.mpf(1.7) / (4 * M.mpf(2.2)), 1e-55)
    # the float properties agree with the mp ones
    assert h.xi == pytest.approx(float(xi), rel=1e-14, abs=0.0)
    assert h.output_scale == pytest.approx(1.25 * 1.7 / 8.8, rel=1e-15, abs=0.0)
    assert h.d == 2 and h.r_bound == 2.2 + 1.7 / 4


def test_head_log_delta_and_closed_form():
    h = _head()
    ctx = cm.mp_context(60)
    M = _ref()
    xi = _xi_ref(M, 3, 1.7, 1.3, 0.9, 1.5)
    eps, r_max = M.mpf(1.7), M.mpf(2.2)
    delta = eps / (4 * r_max) * M.log(3) ** 2 * M.exp(-2 * xi * r_max**2) / (xi * r_max)
    assert _close(h.log_delta(ctx), M.log(delta), 1e-50)
    assert _close(h.log_delta_closed(ctx), _closed_ref(M, 3, 1.7, 1.3, 2.2, 4, 2), 1e-50)


def test_with_replaces_only_the_named_fields():
    h = _head()
    h2 = h.with_(eps=0.5, xi_factor=2.0)
    assert isinstance(h2, cm.ContextualHead) and h2 is not h
    assert h2.eps == 0.5 and h2.xi_factor == 2.0
    assert h.eps == 1.7 and h.xi_factor == 1.5
    for f in ("n", "r_min", "r_max", "c", "c_emp", "n_vocab", "scale_factor"):
        assert getattr(h2, f) == getattr(h, f)
    assert h2.w is h.w and h2.e is h.e


def test_context_digits_and_budget():
    h = _head()
    dps = math.ceil(2 * h.R / math.log(10)) + 60
    assert h.dps == dps
    assert h.context().dps == dps
    assert h.context(max_dps=dps).dps == dps
    with pytest.raises(ValueError, match="budget"):
        h.context(max_dps=dps - 1)
    big = h.with_(xi_factor=5000.0)  # R ~ 1e5: over the default MAX_DPS budget
    assert big.dps > cm.MAX_DPS
    with pytest.raises(ValueError, match="budget"):
        big.context()
    assert big.context(max_dps=big.dps).dps == big.dps


def _floor_ref(h, ctx, s):
    M = _ref(ctx.dps + 40)
    u = M.mpf(2) ** (-ctx.prec)
    d, n = h.d, h.n
    R = _xi_ref(M, h.n, h.eps, h.r_min, h.c, h.xi_factor) * M.mpf(h.r_max) ** 2
    w_rel = 2 * (s + d + 2) * u * R + (n + 3) * u
    q = M.mpf(h.eps) / 4
    out = q * (2 * w_rel + (n + d + 3) * u) + u * (M.mpf(h.r_max) + q)
    logit = (s + d + 2) * u * R
    return out, logit


def test_mp_rounding_floor_formula_both_branches():
    ctx = cm.mp_context(40)
    for h, branch in [(_head(eps=0.3), "logit"), (_head(eps=6.0, r_max=0.9, n=7), "out")]:
        for s in (1, 3):
            out, logit = _floor_ref(h, ctx, s)
            assert (out > logit) == (branch == "out")  # each head exercises its branch of the max
            got = h.mp_rounding_floor(ctx, s=s)
            assert _close(got, max(out, logit), 1e-30)
        assert h.mp_rounding_floor(ctx) == h.mp_rounding_floor(ctx, s=1)  # default s = 1
        assert h.mp_rounding_floor(ctx, s=2) > h.mp_rounding_floor(ctx)
    # u = 2^-prec: twice the bits, the floor shrinks by 2^prec
    h = _head(eps=0.3)
    ratio = h.mp_rounding_floor(cm.mp_context(40)) / h.mp_rounding_floor(cm.mp_context(80))
    assert 2.0**130 < float(ratio) < 2.0**135


def test_float64_floor_formula_and_dtypes():
    h = _head(xi_factor=1.0, scale_factor=1.0)
    X = np.array([[0.5, -1.25, 2.0], [1.5, 0.25, -0.75]])
    u = 2.0**-53
    Wq, Wk, Wv, Wo = h.weights()
    hd = tr.Head(Wq, Wk, Wv, Wo)
    # weighted value magnitude (|Wo||Wv||X|) softmax(S), by explicit loops
    S = (Wk @ X).T @ (Wq @ X)
    VM = np.abs(Wo) @ (np.abs(Wv) @ np.abs(X))
    wvm = np.zeros_like(X)
    for k in range(3):
        ex = [math.exp(S[l, k] - S[:, k].max()) for l in range(3)]
        for r in range(2):
            wvm[r, k] = sum(VM[r, l] * ex[l] for l in range(3)) / sum(ex)
    ref = tr.attention_rounding_floor(hd, X, X, u) + (u / (1 - u)) * (np.abs(X) + wvm)
    got = h.float64_floor(X)
    assert got.dtype == np.float64 and got.shape == (2, 3)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0.0)
    assert np.all(got > tr.attention_rounding_floor(hd, X, X, u))
    Xi = np.array([[1, -2, 3], [2, 1, -1]])
    assert np.array_equal(h.float64_floor(Xi), h.float64_floor(Xi.astype(np.float64)))
    Xf = np.array(
        [[Fraction(1, 2), Fraction(-5, 4), 2], [Fraction(3, 2), Fraction(1, 4), Fraction(-3, 4)]], dtype=object
    )
    fr = h.float64_floor(Xf)
    assert fr.dtype == np.float64 and np.array_equal(fr, got)
    assert np.array_equal(h.float64_floor(X.astype(np.float32)), got)


# --------------------------------------------------------------------------------------------
# ContextualHead: weights
# --------------------------------------------------------------------------------------------


def test_weights_rank_one_values():
    h = _head()
    xi = float(_xi_ref(_ref(), 3, 1.7, 1.3, 0.9, 1.5))
    scale = 1.25 * 1.7 / (4 * 2.2)
    Wq, Wk, Wv, Wo = h.weights()
    assert [W.shape for W in (Wq, Wk, Wv, Wo)] == [(1, 2), (1, 2), (1, 2), (2, 1)]
    np.testing.assert_allclose(Wq, [[xi * 0.6, xi * 0.8]], rtol=1e-14, atol=0.0)
    assert np.array_equal(Wk, [[0.6, 0.8]]) and np.array_equal(Wv, [[0.6, 0.8]])
    np.testing.assert_allclose(Wo, [[scale * 0.8], [scale * -0.6]], rtol=1e-15, atol=0.0)
    # defaults: s = 1, rank = min(s, d), rng = default_rng(0), pad_query = False
    for a, b in zip(h.weights(), h.weights(1, 1, np.random.default_rng(0), False), strict=True):
        assert np.array_equal(a, b)
    Wq2, _, _, Wo2 = h.weights(s=2)
    assert Wq2.shape == (2, 2) and Wo2.shape == (2, 2)
    assert np.array_equal(Wq2[1], [0.0, 0.0]) and np.array_equal(Wo2[:, 1], [0.0, 0.0])


def test_weights_hypotheses_at_their_boundaries():
    h = _head()
    with pytest.raises(ValueError, match="head size"):
        h.weights(s=0)
    h.weights(s=1)
    with pytest.raises(ValueError, match="rank"):
        h.weights(s=3, rank=0)
    with pytest.raises(ValueError, match="rank"):
        h.weights(s=3, rank=3)  # min(s, d) = 2
    with pytest.raises(ValueError, match="rank"):
        h.weights(s=1, rank=2)  # min(s, d) = 1
    assert np.linalg.matrix_rank(h.weights(s=3, rank=1)[1]) == 1
    assert np.linalg.matrix_rank(h.weights(s=3, rank=2)[1]) == 2
    assert np.linalg.matrix_rank(h.weights(s=2)[1]) == 2  # default rank = min(s, d)


def _weights_replay(h, s, rank, seed, pad_query):
    rng = np.random.default_rng(seed)
    d = h.d
    Wk_pad = np.zeros((s - 1, d))
    if rank > 1:
        G = rng.standard_normal((rank - 1, d))
        mix = rng.standard_normal((s - 1, rank - 1))
        for i in range(rank - 1):
            mix[i] = 0.0
            mix[i, i] = 1.0
        Wk_pad = mix @ G
    Wv_pad = rng.standard_normal((s - 1, d))
    Wq_pad = rng.standard_normal((s - 1, d)) if pad_query else np.zeros((s - 1, d))
    return Wq_pad, Wk_pad, Wv_pad


def test_weights_padding_replays_the_generator():
    h3 = _head(w=np.array([0.48, 0.6, 0.64]), e=np.array([0.0, 0.6, 0.8]))
    for hd, s, rank, seed, pad in [
        (h3, 4, 3, 7, False),
        (h3, 4, 2, 3, True),
        (_head(), 2, 2, 5, False),
        (h3, 3, 1, 2, True),
        (_head(), 3, 2, 11, True),
    ]:
        Wq, Wk, Wv, Wo = hd.weights(s=s, rank=rank, rng=np.random.default_rng(seed), pad_query=pad)
        q, k, v = _weights_replay(hd, s, rank, seed, pad)
        assert np.array_equal(Wq[1:], q) and np.array_equal(Wk[1:], k) and np.array_equal(Wv[1:], v)
        assert np.array_equal(Wk[0], hd.w) and np.array_equal(Wv[0], hd.w)
        assert np.array_equal(Wq[0], hd.xi * hd.w)
        assert np.array_equal(Wo[:, 0], hd.output_scale * hd.e) and not Wo[:, 1:].any()
        assert np.linalg.matrix_rank(Wk) == rank
    # default generator: default_rng(0), not a fresh entropy draw
    a = h3.weights(s=4, rank=3)
    b = h3.weights(s=4, rank=3, rng=np.random.default_rng(0))
    c = h3.weights(s=4, rank=3, rng=np.random.default_rng(1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


# --------------------------------------------------------------------------------------------
# ContextualHead: evaluation
# --------------------------------------------------------------------------------------------

XE = np.array([[0.5, -1.25, 2.0, 0.75], [1.5, 0.25, -0.75, -1.0]])


def test_apply_mp_matches_explicit_layer():
    h = _head()
    ctx = cm.mp_context(60)
    M = _ref()
    xi = _xi_ref(M, 3, 1.7, 1.3, 0.9, 1.5)
    scale = M.mpf(1.25) * M.mpf(1.7) / (4 * M.mpf(2.2))
    ref = _layer_ref(M, XE, h.w, h.e, xi, scale)
    out = h.apply_mp(XE, ctx)
    assert len(out) == 4 and all(len(y) == 2 for y in out)
    for y, r in zip(out, ref, strict=True):
        for a, b in zip(y, r, strict=True):
            assert _close(a, b, 1e-50)
    # the layer moves every token (not the identity) by at most eps/4 * scale_factor
    assert all(abs(out[k][i] - XE[i, k]) > 1e-3 for k in range(4) for i in range(2))
    # queries: the named columns, in the given order
    sub = h.apply_mp(XE, ctx, queries=[2, 0])
    assert sub == [out[2], out[0]]
    assert h.apply_mp(XE, ctx, queries=None) == out
    # int / float32 / list-of-columns inputs read the same numbers
    assert h.apply_mp(XE.astype(np.float32).astype(np.float64), ctx) == h.apply_mp(XE.astype(np.float32), ctx)
    assert h.apply_mp([list(col) for col in XE.T], ctx) == out
    Xi = np.array([[1, -2, 3], [2, 1, -1]])
    assert h.apply_mp(Xi, ctx) == h.apply_mp(Xi.astype(np.float64), ctx)


def test_apply_general_mp_matches_explicit_attention():
    rng = np.random.default_rng(42)
    Wq, Wk = 0.7 * rng.standard_normal((3, 2)), 0.6 * rng.standard_normal((3, 2))
    Wv, Wo = rng.standard_normal((3, 2)), rng.standard_normal((2, 3))
    h = _head()
    ctx = cm.mp_context(50)
    M = _ref()
    out, logits = h.apply_general_mp(XE, ctx, Wq, Wk, Wv, Wo)
    Mq, Mk, Mv, Mo = (M.matrix(W.tolist()) for W in (Wq, Wk, Wv, Wo))
    Xm = M.matrix(XE.tolist())
    assert len(out) == 4 and len(logits) == 4
    for k in range(4):
        q = Mq * Xm[:, k]
        a = [(Mk * Xm[:, l]).T * q for l in range(4)]
        a = [t[0, 0] for t in a]
        ex = [M.exp(t) for t in a]
        att = sum((ex[l] * (Mv * Xm[:, l]) for l in range(4)), M.matrix(3, 1)) / sum(ex)
        y = Xm[:, k] + Mo * att
        assert len(out[k]) == 2 and len(logits[k]) == 4
        for i in range(2):
            assert _close(out[k][i], y[i, 0], 1e-40)
        for l in range(4):
            assert _close(logits[k][l], a[l], 1e-40)


def test_apply_general_mp_rank_one_equals_apply_mp():
    h = _head()
    ctx = cm.mp_context(60)
    Wq, Wk, Wv, Wo = h.weights()
    # with xi entering through Wq in float64, the two evaluations agree to float64 relative precision of xi
    a, _ = h.apply_general_mp(XE, ctx, Wq, Wk, Wv, Wo)
    b = h.apply_mp(XE, ctx)
    for ya, yb in zip(a, b, strict=True):
        for s, t in zip(ya, yb, strict=True):
            assert abs(s - t) < 1e-12


def test_apply_f64_matches_explicit_float_layer_and_reads_float64():
    h = _head(xi_factor=1.0, scale_factor=1.0)
    Wq, Wk, Wv, Wo = h.weights()
    got = h.apply_f64(XE)
    ref = np.empty_like(XE)
    for k in range(4):
        a = [float((Wk @ XE[:, l]) @ (Wq @ XE[:, k])) for l in range(4)]
        ex = [math.exp(t - max(a)) for t in a]
        att = sum(ex[l] * (Wv @ XE[:, l]) for l in range(4)) / sum(ex)
        ref[:, k] = XE[:, k] + Wo @ att
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=0.0)
    assert not np.allclose(got, XE, rtol=0.0, atol=1e-3)  # the residual adds a visible attention term
    # the mp evaluation agrees to float64 accuracy
    mp_out = h.apply_mp(XE, cm.mp_context(40))
    for k in range(4):
        for i in range(2):
            assert abs(float(mp_out[k][i]) - got[i, k]) < 1e-12
    Xf = np.array([[Fraction(v).limit_denominator(100) for v in row] for row in XE], dtype=object)
    assert np.array_equal(h.apply_f64(Xf), got)
    Xi = np.array([[1, -2, 3], [2, 1, -1]])
    assert np.array_equal(h.apply_f64(Xi), h.apply_f64(Xi.astype(np.float64)))


def test_attend_projected_is_softmax_average():
    ctx = cm.mp_context(50)
    M = _ref()
    p = [ctx.mpf(v) for v in ("0.7", "-1.3", "2.1", "0.4")]
    for xi in (ctx.mpf("0.9"), ctx.mpf(7)):
        for k in range(4):
            ex = [M.exp(M.mpf(xi) * M.mpf(p[k]) * M.mpf(pl)) for pl in p]
            ref = sum(x * M.mpf(pl) for x, pl in zip(ex, p, strict=True)) / sum(ex)
            got = cm.attend_projected(p, k, xi, ctx)
            assert _close(got, ref, 1e-45)
            # = boltz(a) / (xi p_k) (the module docstring's identity)
            a = [xi * p[k] * pl for pl in p]
            assert _close(got, cm.boltzmann(a, ctx) / (xi * p[k]), 1e-40)


def test_mp_columns_three_input_kinds():
    ctx = cm.mp_context(50)
    X = np.array([[0.1, 2.0, -3.5], [1.25, -0.3, 4.0]], dtype=np.float32)
    cols = cm._mp_columns(X, ctx)
    assert cols == [[ctx.mpf(float(X[i, j])) for i in range(2)] for j in range(3)]
    third = ctx.mpf(1) / 3
    Mx = ctx.matrix([[third, 2], [5, -third], [7, 8]])  # 3 x 2: columns of length 3
    mc = cm._mp_columns(Mx, ctx)
    assert mc == [[third, ctx.mpf(5), ctx.mpf(7)], [ctx.mpf(2), -third, ctx.mpf(8)]]
    lc = cm._mp_columns([["0.1", "0.2"], [third, 3]], ctx)
    assert lc == [[ctx.mpf("0.1"), ctx.mpf("0.2")], [third, ctx.mpf(3)]]
    assert lc[0][0] != ctx.mpf(0.1)  # strings keep their decimal value at ctx precision

    class Tagged(list):  # a list of columns that happens to carry a ``rows`` attribute
        rows = 2

    assert cm._mp_columns(Tagged([[1, 2], [3, 4]]), ctx) == [[1, 2], [3, 4]]


# --------------------------------------------------------------------------------------------
# lemma_d
# --------------------------------------------------------------------------------------------

FIELDS = ("n", "eps", "r_min", "r_max", "c", "c_emp", "n_vocab", "xi_factor", "scale_factor")


def _same_head(a, b):
    return all(getattr(a, f) == getattr(b, f) for f in FIELDS) and np.array_equal(a.w, b.w) and np.array_equal(a.e, b.e)


def test_lemma_d_defaults_pinned():
    seqs = cm.duplicate_free_sequences(V2, 2)
    h = cm.lemma_d(seqs)
    explicit = cm.lemma_d(
        seqs,
        c="theory",
        rng=np.random.default_rng(0),
        xi_factor=1.0,
        e=None,
        validate=True,
        best_of=1,
        w=None,
        vocab=None,
        eps=None,
    )
    assert _same_head(h, explicit)
    assert h.xi_factor == 1.0 and h.scale_factor == 1.0
    assert not _same_head(h, cm.lemma_d(seqs, rng=np.random.default_rng(1)))
    assert not _same_head(h, cm.lemma_d(seqs, best_of=2))
    assert not _same_head(h, cm.lemma_d(seqs, xi_factor=2.0))


def test_lemma_d_fields_from_independent_arithmetic():
    seqs = cm.duplicate_free_sequences(V2, 2)
    h = cm.lemma_d(seqs, rng=np.random.default_rng(5))
    norms = [math.hypot(*col) for col in V2.T]
    dists = [math.dist(a, b) for a, b in itertools.combinations(V2.T.tolist(), 2)]
    ct = 4**-2 * math.sqrt(8.0 / (math.pi * 2))
    w, ce = _replay_projection(V2, 5)
    assert h.n == 2 and isinstance(h.n, int) and h.n_vocab == 3 and h.d == 2
    assert h.r_min == pytest.approx(min(norms), rel=1e-15, abs=0.0)
    assert h.r_max == pytest.approx(max(norms), rel=1e-15, abs=0.0)
    assert h.eps == pytest.approx(min(dists), rel=1e-15, abs=0.0)
    assert h.c == pytest.approx(ct, rel=1e-15, abs=0.0)
    assert np.allclose(h.w, w, rtol=0.0, atol=1e-15) and np.allclose(h.e, h.w, rtol=0.0, atol=1e-15)  # e = w
    assert h.c_emp == pytest.approx(ce, rel=1e-12, abs=0.0) and h.c_emp >= h.c
    assert h.w.dtype == np.float64 and h.e.dtype == np.float64
    # best_of = 3: the best of the first three accepted draws
    h3 = cm.lemma_d(seqs, rng=np.random.default_rng(0), best_of=3)
    w3, ce3 = _replay_projection(V2, 0, best_of=3)
    assert np.allclose(h3.w, w3, rtol=0.0, atol=1e-15)
    assert h3.c_emp == pytest.approx(ce3, rel=1e-12, abs=0.0) and ce3 > _replay_projection(V2, 0)[1]
    # c options
    he = cm.lemma_d(seqs, rng=np.random.default_rng(5), c="empirical")
    assert he.c == h.c_emp
    hn = cm.lemma_d(seqs, rng=np.random.default_rng(5), c=0.5 * h.c_emp)
    assert hn.c == 0.5 * h.c_emp
    assert cm.lemma_d(seqs, rng=np.random.default_rng(5), c=h.c_emp).c == h.c_emp  # c' = c_emp is allowed


def test_lemma_d_c_number_and_xi_factor_boundaries():
    seqs = cm.duplicate_free_sequences(V1, 2)
    for bad in (0.0, -0.1, 1.0 + 1e-12):  # d = 1: c_emp = 1
        with pytest.raises(ValueError, match="c_emp"):
            cm.lemma_d(seqs, c=bad)
    assert cm.lemma_d(seqs, c=0.3).c == 0.3
    assert cm.lemma_d(seqs, c=1).c == 1.0
    with pytest.raises(ValueError, match="xi_factor"):
        cm.lemma_d(seqs, xi_factor=0.999)
    assert cm.lemma_d(seqs, xi_factor=1).xi_factor == 1.0
    h = cm.lemma_d(seqs, xi_factor=1.5)
    assert h.xi_factor == 1.5 and h.xi == pytest.approx(1.5 * cm.lemma_d(seqs).xi, rel=1e-15, abs=0.0)


def test_lemma_d_sequence_checks():
    with pytest.raises(ValueError, match="no sequences"):
        cm.lemma_d([])
    with pytest.raises(ValueError, match="one shape"):
        cm.lemma_d([np.array([[1.0, 2.0]]), np.array([[1.0, 2.0, 3.0]])])
    with pytest.raises(ValueError, match="n >= 2"):
        cm.lemma_d([np.array([[1.0]])])
    h = cm.lemma_d([np.array([[1.0, 2.0]])])  # a single sequence, n = 2 is enough
    assert h.n == 2 and h.n_vocab == 2 and h.d == 1
    hi = cm.lemma_d([np.array([[1, 3]]), np.array([[3, 2]])])  # int tokens read as float64
    hf = cm.lemma_d([np.array([[1.0, 3.0]]), np.array([[3.0, 2.0]])])
    assert _same_head(hi, hf) and hi.n_vocab == 3 and hi.r_min == 1.0 and hi.r_max == 3.0 and hi.eps == 1.0
    # validate=False: duplicates and a zero token are let through
    hv = cm.lemma_d([np.array([[1.0, 2.0, 1.0]])], validate=False)
    assert hv.n == 3 and hv.n_vocab == 2
    hz = cm.lemma_d([np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])], validate=False)
    assert hz.r_min == 0.0 and hz.r_max == 1.0
    # tokens of norm in (0, 1] are fine (r_min > 0 is the hypothesis)
    assert cm.lemma_d([np.array([[0.5, -0.25]])]).r_min == 0.25


def test_lemma_d_explicit_vocabulary():
    seqs = cm.duplicate_free_sequences(V1[:, :3], 2)
    h = cm.lemma_d(seqs, vocab=V1)  # the vocabulary, not the tokens seen, sets the constants
    assert h.n_vocab == 4 and h.r_max == 3.0 and h.r_min == 1.0 and h.n == 2
    assert h.c == pytest.approx(5**-2 * math.sqrt(8.0 / math.pi), rel=1e-15, abs=0.0)
    hv = cm.lemma_d(vocab=V1, n=3)
    assert hv.n == 3 and isinstance(hv.n, int) and hv.n_vocab == 4
    assert _same_head(cm.lemma_d(vocab=V1.astype(int), n=3), hv)
    for kw in (dict(vocab=V1), dict(n=3), {}):
        with pytest.raises(ValueError, match="either"):
            cm.lemma_d(**kw)
    with pytest.raises(ValueError, match="n >= 2"):
        cm.lemma_d(vocab=V1, n=1)
    assert cm.lemma_d(vocab=V1, n=2).n == 2


def test_lemma_d_eps_hypothesis():
    seqs = cm.duplicate_free_sequences(V3, 2)
    assert cm.lemma_d(seqs).eps == 1.25
    assert cm.lemma_d(seqs, eps=1.25).eps == 1.25  # eps = eps_min is allowed (non-strict separation)
    assert cm.lemma_d(seqs, eps=0.5).eps == 0.5
    with pytest.raises(ValueError, match="separation hypothesis"):
        cm.lemma_d(seqs, eps=1.26)
    assert cm.lemma_d(seqs, eps=1.26, validate=False).eps == 1.26
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="finite"):
            cm.lemma_d(seqs, eps=bad)


def test_lemma_d_given_projection():
    seqs = cm.duplicate_free_sequences(V2, 2)
    w, ce = _replay_projection(V2, 9)
    h = cm.lemma_d(seqs, w=list(3.0 * w))  # rescaled: normalised back
    assert np.allclose(h.w, w, rtol=0.0, atol=1e-15) and h.w.dtype == np.float64
    assert h.c_emp == pytest.approx(_brute_c(h.w, V2), rel=1e-12, abs=0.0)
    w32 = np.array([3.0, 4.0], dtype=np.float32)
    V = np.array([[1.0, 1.0], [1.0, 2.0]])
    h32 = cm.lemma_d(vocab=V, n=2, w=w32, c="empirical")
    assert h32.w.dtype == np.float64 and np.array_equal(h32.w, np.array([3.0, 4.0]) / 5.0)
    assert h32.c_emp == pytest.approx(_brute_c([0.6, 0.8], V), rel=1e-12, abs=0.0)
    with pytest.raises(ValueError, match="separating"):
        cm.lemma_d(vocab=V, n=2, w=[1.0, 0.0])  # w^T ((1,1) - (1,2)) = 0
    # boundary: c_emp == c_theory exactly is accepted (the hypothesis is c_emp >= c_theory)
    ct = cm.c_theory(2, 2)
    hb = cm.lemma_d(vocab=V, n=2, w=[0.9921093655816755, ct])
    assert hb.c_emp == ct and hb.c == ct
    # d = 1: c_emp = 1 without a search, whatever the sign or scale of w
    h1 = cm.lemma_d(cm.duplicate_free_sequences(V3, 2), w=[-2.5])
    assert h1.c_emp == 1.0 and np.array_equal(h1.w, [-1.0])
    with np.errstate(over="ignore"):  # ||u - u'|| = 2e154 squares past float64's range: no pairwise search
        hbig = cm.lemma_d(vocab=[[1e154, -1e154]], n=2, eps=1.0, w=[1.0], c="empirical")
    assert hbig.c_emp == 1.0 and hbig.c == 1.0


def test_lemma_d_output_direction():
    seqs = cm.duplicate_free_sequences(V2, 2)
    e32 = np.array([3.0, -4.0], dtype=np.float32)
    h = cm.lemma_d(seqs, e=e32)
    assert h.e.dtype == np.float64 and np.array_equal(h.e, np.array([3.0, -4.0]) / 5.0)
    assert not np.array_equal(h.e, h.w)
    assert np.array_equal(cm.lemma_d(seqs, e=[0.0, 2.0]).e, [0.0, 1.0])


# --------------------------------------------------------------------------------------------
# measure_gaps on outputs given directly
# --------------------------------------------------------------------------------------------


def _gaps_ref(seqs, outs):
    """Brute force over position pairs in order: (max ||y||^2, min diff-token ||.||^2, min same ||.||^2, first argmin,
    n_same, n_diff), exactly in Fractions."""
    toks = [[tuple(float(v) for v in col) for col in np.asarray(X, dtype=np.float64).T] for X in seqs]
    flat = [(i, k) for i in range(len(seqs)) for k in range(len(toks[i]))]
    sq = lambda v: sum(Fraction(x) ** 2 for x in v)  # noqa: E731
    mx = max(sq(outs[i][k]) for i, k in flat)
    md, ms, worst, ns, nd = None, None, None, 0, 0
    for a in range(len(flat)):
        for b in range(a + 1, len(flat)):
            (i, k), (j, l) = flat[a], flat[b]
            g = sq([Fraction(x) - Fraction(y) for x, y in zip(outs[i][k], outs[j][l], strict=True)])
            if toks[i][k] != toks[j][l]:
                nd += 1
                md = g if md is None or g < md else md
            elif sorted(toks[i]) != sorted(toks[j]):
                ns += 1
                if ms is None or g < ms:
                    ms, worst = g, ((i, k), (j, l))
    return mx, md, ms, worst, ns, nd


def _mpsqrt(ctx, q):
    return ctx.sqrt(ctx.mpf(q.numerator) / q.denominator)


def test_measure_gaps_brute_force_on_given_outputs():
    ctx = cm.mp_context(50)
    seqs = [np.array([[1.0, 2.0]]), np.array([[2.0, 1.0]]), np.array([[1.0, 3.0]]), np.array([[3.0, 2.0]])]
    # outputs (y1, y2) per token, binary-exact; the smallest same-token gap, 0.5, is attained twice
    vals = [[(1.0, 0.0), (2.0, 0.5)], [(2.25, 0.5), (1.0, 0.25)], [(1.5, 0.0), (3.0, 1.0)], [(3.0, 0.5), (2.0, -0.5)]]
    outs = [[[ctx.mpf(x) for x in y] for y in o] for o in vals]
    g = cm.measure_gaps(None, seqs, ctx, outputs=outs)
    mx, md, ms, worst, ns, nd = _gaps_ref(seqs, vals)
    assert (g.n_same_pairs, g.n_diff_pairs) == (ns, nd) == (5, 21)
    assert _close(g.max_norm, _mpsqrt(ctx, mx), 1e-45)
    assert _close(g.min_diff_token, _mpsqrt(ctx, md), 1e-45)
    assert _close(g.log_min_same_token, ctx.log(_mpsqrt(ctx, ms)), 1e-45)
    assert g.worst_same_pair == worst == ((0, 0), (2, 0))  # the first of the tied pairs
    assert isinstance(g, cm.ContextGaps)


def test_measure_gaps_limits():
    ctx = cm.mp_context(30)
    seqs = [np.array([[1.0, 2.0]]), np.array([[1.0, 3.0]])]
    # same-token gap exactly 1: ln 1 = 0
    outs = [[[ctx.mpf(0)], [ctx.mpf(5)]], [[ctx.mpf(1)], [ctx.mpf(9)]]]
    g = cm.measure_gaps(None, seqs, ctx, outputs=outs)
    assert g.log_min_same_token == 0 and g.n_same_pairs == 1 and g.n_diff_pairs == 5
    assert g.min_diff_token == 4 and g.max_norm == 9 and g.worst_same_pair == ((0, 0), (1, 0))
    # colliding outputs: -inf
    outs0 = [[[ctx.mpf(0)], [ctx.mpf(5)]], [[ctx.mpf(0)], [ctx.mpf(9)]]]
    g0 = cm.measure_gaps(None, seqs, ctx, outputs=outs0)
    assert g0.log_min_same_token == -ctx.inf and g0.worst_same_pair == ((0, 0), (1, 0))
    # permutations only: no same-token pair, +inf
    perm = [np.array([[1.0, 2.0]]), np.array([[2.0, 1.0]])]
    outs_p = [[[ctx.mpf(1)], [ctx.mpf(2)]], [[ctx.mpf(1.5)], [ctx.mpf(-3)]]]
    gp = cm.measure_gaps(None, perm, ctx, outputs=outs_p)
    assert gp.log_min_same_token == ctx.inf and gp.n_same_pairs == 0 and gp.worst_same_pair is None
    assert gp.n_diff_pairs == 4 and gp.min_diff_token == 0.5 and gp.max_norm == 3
    # nothing to compare at all: both minima stay +inf
    one = [np.array([[1.0]]), np.array([[1.0]])]
    g1 = cm.measure_gaps(None, one, ctx, outputs=[[[ctx.mpf(-4)]], [[ctx.mpf(2)]]])
    assert g1.min_diff_token == ctx.inf and g1.n_diff_pairs == 0 and g1.n_same_pairs == 0 and g1.max_norm == 4


def test_measure_gaps_evaluates_the_head_by_default():
    seqs = cm.duplicate_free_sequences(V3, 2)
    h = cm.lemma_d(seqs, c="empirical")
    ctx = h.context()
    outs = [h.apply_mp(X, ctx) for X in seqs]
    g = cm.measure_gaps(h, seqs, ctx)
    assert g == cm.measure_gaps(h, seqs, ctx, outputs=outs)
    assert g == cm.measure_gaps(h, [X.astype(np.float32) for X in seqs], ctx)
    assert g == cm.measure_gaps(h, [X.tolist() for X in seqs], ctx)
    # Lemma D: outputs bounded by r = r_max + eps/4, same-token gaps above the floor
    assert g.max_norm <= h.r_bound and g.log_min_same_token > h.log_delta(ctx)
    assert (g.n_same_pairs, g.n_diff_pairs) == _gaps_ref(seqs, [[(0.0,)] * 2] * len(seqs))[4:] == (12, 48)


# --------------------------------------------------------------------------------------------
# certify_gaps_arb
# --------------------------------------------------------------------------------------------


def _cert_head():
    seqs = cm.duplicate_free_sequences(V3, 2)
    h = cm.lemma_d(seqs, c=0.5, xi_factor=1.5, e=[-1.0])
    return h, seqs


def _log10_gap_ref(h, seqs):
    """log10 of the smallest same-token gap, from an explicit layer at h.dps + 40 digits."""
    M = _ref(h.dps + 40)
    xi = _xi_ref(M, h.n, h.eps, h.r_min, h.c, h.xi_factor)
    scale = M.mpf(h.eps) / (4 * M.mpf(h.r_max))
    outs = [_layer_ref(M, X, h.w, h.e, xi, scale) for X in seqs]
    gaps = [abs(outs[i][k][0] - outs[j][l][0]) for (i, k), (j, l) in cm.same_token_pairs(seqs)]
    return [float(M.log10(g)) for g in gaps]


def test_certify_gaps_arb_encloses_the_true_gap():
    pytest.importorskip("flint")
    h, seqs = _cert_head()
    assert h.c == 0.5 and h.eps == 1.25 and h.r_min == 0.75 and h.r_max == 2.0 and h.e[0] == -1.0
    ref = _log10_gap_ref(h, seqs)
    true = min(ref)
    assert ref.index(true) != len(ref) - 1  # the smallest gap is not the last pair's
    cert = cm.certify_gaps_arb(h, seqs)
    assert set(cert) == {"prec_bits", "certified_log10_min_same", "max_radius_log10"}
    assert cert["prec_bits"] == int(h.dps * 3.33) + 64
    assert cert["certified_log10_min_same"] <= true + 1e-12  # a lower bound ...
    assert cert["certified_log10_min_same"] == pytest.approx(true, rel=1e-12, abs=0.0)  # ... and a tight one
    assert -math.inf < cert["max_radius_log10"] < true - 50
    explicit = cm.certify_gaps_arb(h, seqs, prec_bits=4 * h.dps)
    assert explicit["prec_bits"] == 4 * h.dps
    assert explicit["certified_log10_min_same"] == pytest.approx(true, rel=1e-12, abs=0.0)
    assert explicit["max_radius_log10"] < cert["max_radius_log10"]  # more bits, narrower balls


def test_certify_gaps_arb_failure_and_empty_cases():
    pytest.importorskip("flint")
    h, seqs = _cert_head()
    low = cm.certify_gaps_arb(h, seqs, prec_bits=64)  # balls far wider than the ~1e-90 gaps
    assert low == {"prec_bits": 64, "certified_log10_min_same": -math.inf, "max_radius_log10": None}
    none = cm.certify_gaps_arb(h, seqs[:1], prec_bits=200)  # one sequence: no same-token pair
    assert none == {"prec_bits": 200, "certified_log10_min_same": math.inf, "max_radius_log10": -math.inf}
    # an exact collision (off Lemma D's hypothesis r_min > 0): token 0 in two contexts of mean 0 has output
    # exactly 0 in both, a zero-width ball at 0, which certifies nothing
    h0 = cm.ContextualHead(w=np.ones(1), e=np.ones(1), n=3, eps=1.0, r_min=1.0, r_max=2.0, c=1.0, c_emp=1.0, n_vocab=5)
    hit = cm.certify_gaps_arb(h0, [np.array([[0.0, 1.0, -1.0]]), np.array([[0.0, 2.0, -2.0]])], prec_bits=128)
    assert hit == {"prec_bits": 128, "certified_log10_min_same": -math.inf, "max_radius_log10": None}
    h2 = cm.lemma_d(cm.duplicate_free_sequences(V2, 2))
    with pytest.raises(ValueError, match="d = 1"):
        cm.certify_gaps_arb(h2, cm.duplicate_free_sequences(V2, 2))


@pytest.mark.parametrize("w", [[1e200], [0.0], [np.inf], [np.nan]])
def test_lemma_d_refuses_a_given_projection_without_a_finite_nonzero_norm(w):
    # ||w|| = inf (1e200 squared overflows) or 0 would give w = 0 or nan and skip the separation check
    seqs = cm.duplicate_free_sequences(np.array([[-2.0, 1.0, 2.0, 3.0]]), 2)
    with pytest.raises(ValueError, match=r"^w must be a nonzero vector of finite norm"):
        cm.lemma_d(seqs, w=w)
    with pytest.raises(ValueError, match=r"^e must be a nonzero vector of finite norm"):
        cm.lemma_d(seqs, w=[1.0], e=w)


def test_lemma_d_normalises_a_given_projection_of_any_finite_norm_to_float64():
    seqs = cm.duplicate_free_sequences(np.array([[-2.0, 1.0, 2.0, 3.0]]), 2)
    for w in ([0.25], [-3.0], np.array([0.5], dtype=np.float32), np.array([7])):
        head = cm.lemma_d(seqs, w=w)
        want = np.sign(float(np.asarray(w)[0]))
        assert head.w.dtype == np.float64 and head.e.dtype == np.float64
        assert head.w[0] == want and head.e[0] == want, f"w = {w!r}: unit w and e = w / ||w||"
    head = cm.lemma_d(seqs, w=[0.25], e=np.array([-0.125], dtype=np.float32))
    assert head.e.dtype == np.float64 and head.e[0] == -1.0
