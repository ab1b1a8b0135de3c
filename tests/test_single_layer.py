"""constructions.single_layer: the one-head hypotheses, the score vector, the forward passes and their mpmath twins,
and the first-order rounding floors -- sound against mpmath-measured errors of float32 evaluations on adversarial
instances, and each equal to its documented formula re-derived entry by entry with explicit loops."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from constructions import single_layer as sl
from constructions.residual_mlp import mp_mlp
from constructions.transformer import MLP, Head, Layer, attention, mp_matrix, prompt_tuned, random_contractive_mlp
from tests.oracles import gamma_ref

U32 = 2.0**-24
LD_DISTINCT = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant
needs_ld = pytest.mark.skipif(not LD_DISTINCT, reason="long double is float64 on this platform")


def _ctx(prec=200):
    ctx = mpmath.MPContext()
    ctx.prec = prec
    return ctx


def _ld(a):
    """a as long double with low bits that float64 cannot hold (rounding to float64 changes almost every entry)."""
    return np.asarray(a, dtype=np.longdouble) * (np.longdouble(1) + np.longdouble(2) ** -60)


def _f32(a):
    return np.asarray(a, dtype=np.float32)


def _head(rng, d, s, scale=1.0):
    return Head(*(rng.normal(0.0, scale / math.sqrt(d), size=sh) for sh in ((s, d), (s, d), (s, d), (d, s))))


def _round32(obj):
    """The same Head / MLP / Layer / array with every entry rounded to float32, kept as float64."""
    r = lambda a: np.asarray(a, dtype=np.float32).astype(np.float64)  # noqa: E731
    if isinstance(obj, Head):
        return Head(*map(r, (obj.Wq, obj.Wk, obj.Wv, obj.Wo)))
    if isinstance(obj, MLP):
        return MLP(*map(r, (obj.W1, obj.b1, obj.W2, obj.b2)))
    if isinstance(obj, Layer):
        return Layer(tuple(_round32(h) for h in sl.heads_of(obj)), _round32(obj.mlp))
    return r(obj)


def _as32(obj):
    if isinstance(obj, Head):
        return Head(*map(_f32, (obj.Wq, obj.Wk, obj.Wv, obj.Wo)))
    if isinstance(obj, MLP):
        return MLP(*map(_f32, (obj.W1, obj.b1, obj.W2, obj.b2)))
    return Layer(tuple(_as32(h) for h in sl.heads_of(obj)), _as32(obj.mlp))


# ---------------------------------------------------------------------------------------------
# hypotheses and the pieces of one head


def test_heads_and_single_head():
    rng = np.random.default_rng(0)
    h1, h2 = _head(rng, 3, 2), _head(rng, 3, 2)
    mlp = random_contractive_mlp(rng, 3, 4, 0.5)
    assert sl.heads_of(Layer(h1, mlp)) == (h1,) and sl.heads_of(Layer([h1, h2], mlp)) == (h1, h2)
    assert sl.single_head(Layer((h1,), mlp)) is h1
    with pytest.raises(ValueError, match=r"hypothesis h = 1 \(single head\) violated: the layer has 2 heads"):
        sl.single_head(Layer((h1, h2), mlp))


def test_value_matrix_is_wo_wv_in_float64():
    rng = np.random.default_rng(1)
    h = _head(rng, 3, 2)
    M = sl.value_matrix(h)
    want = [[sum(Fraction(h.Wo[i, k]) * Fraction(h.Wv[k, j]) for k in range(2)) for j in range(3)] for i in range(3)]
    assert M.shape == (3, 3) and np.allclose(M, np.array(want, dtype=float), rtol=1e-15, atol=0)
    # long-double weights are rounded to float64 first: the result is exactly that of the rounded weights
    for hl in (Head(h.Wq, h.Wk, h.Wv, _ld(h.Wo)), Head(h.Wq, h.Wk, _ld(h.Wv), h.Wo)):
        got = sl.value_matrix(hl)
        ref = sl.value_matrix(Head(*(np.asarray(w, dtype=np.float64) for w in (hl.Wq, hl.Wk, hl.Wv, hl.Wo))))
        assert got.dtype == np.float64 and np.array_equal(got, ref), "value_matrix must compute in float64"


def test_require_invertible_values_threshold():
    eye = np.eye(2)
    mk = lambda diag: Head(eye, eye, np.diag(diag), eye)  # noqa: E731  M = W_o W_v = diag(...)
    M = sl.require_invertible_values(mk([2.0, 1.0]), max_cond=2.0)  # cond = 2 exactly: at the limit, accepted
    assert np.array_equal(M, np.diag([2.0, 1.0]))
    with pytest.raises(ValueError, match=r"hypothesis W_o W_v invertible violated: cond\(W_o W_v\) = 2 > 2e\+00"):
        sl.require_invertible_values(mk([2.0, 1.0]), max_cond=1.999)
    # the default limit is 1e12: cond = 1e12 + 0.5 (diagonal M: singular values exact) is refused, 1e12 - 1 kept
    c = float(np.linalg.cond(np.diag([1.0, 1.0 / (1e12 + 0.5)])))
    assert 1e12 < c < 1e12 + 1
    with pytest.raises(ValueError, match=r"W_o W_v invertible violated: cond\(W_o W_v\) = 1e\+12 > 1e\+12"):
        sl.require_invertible_values(mk([1.0, 1.0 / (1e12 + 0.5)]))
    sl.require_invertible_values(mk([1.0, 1.0 / (1e12 - 1.0)]))
    with pytest.raises(ValueError, match="W_o W_v invertible violated"):
        sl.require_invertible_values(mk([1.0, 0.0]))  # singular: cond inf


def _score_loop(h, x):
    Wq, Wk = h.Wq, h.Wk
    s, d = Wq.shape
    q = [sum(Fraction(Wq[k, i]) * Fraction(x[i]) for i in range(d)) for k in range(s)]
    return [float(sum(Fraction(Wk[k, j]) * q[k] for k in range(s))) for j in range(Wk.shape[1])]


def test_score_vector_is_wk_t_wq_x():
    rng = np.random.default_rng(2)
    h, x = _head(rng, 4, 3), rng.normal(size=4)
    g = sl.score_vector(h, x)
    assert g.shape == (4,) and np.allclose(g, _score_loop(h, x), rtol=1e-13, atol=1e-15)
    assert np.array_equal(sl.score_vector(h, x.reshape(-1, 1)), g), "a column query is flattened"
    assert np.array_equal(sl.score_vector(h, x.reshape(1, -1)), g), "a row query is flattened"
    hl = Head(_ld(h.Wq), _ld(h.Wk), h.Wv, h.Wo)
    got, ref = sl.score_vector(hl, _ld(x)), sl.score_vector(_round_f64(hl), _ld(x).astype(np.float64))
    assert got.dtype == np.float64 and np.array_equal(got, ref), "score_vector must compute in float64"
    got = sl.score_vector(h, _ld(x))
    assert got.dtype == np.float64 and np.array_equal(got, sl.score_vector(h, _ld(x).astype(np.float64)))


def _round_f64(h):
    return Head(*(np.asarray(w, dtype=np.float64) for w in (h.Wq, h.Wk, h.Wv, h.Wo)))


def _score_rounding_loop(h, x, u):
    """gamma_s |W_k|^T |W_q x| + |W_k|^T gamma_d |W_q||x|, entry by entry (s = rows of W_q, d = x.size)."""
    Wq, Wk = h.Wq, h.Wk
    s, d = Wq.shape
    q = [sum(Wq[k, i] * x[i] for i in range(d)) for k in range(s)]
    qa = [sum(abs(Wq[k, i]) * abs(x[i]) for i in range(d)) for k in range(s)]
    gs, gd = gamma_ref(s, u), gamma_ref(d, u)
    return [sum(abs(Wk[k, j]) * (gs * abs(q[k]) + gd * qa[k]) for k in range(s)) for j in range(d)]


@pytest.mark.parametrize("u", [2.0**-53, U32, 2.0**-8])
def test_score_vector_rounding_is_its_formula(u):
    rng = np.random.default_rng(3)
    for s, d in ((2, 5), (6, 3)):  # s != d both ways: gamma_s and gamma_d are told apart
        h, x = _head(rng, d, s), rng.normal(size=d)
        x[0] = -float(h.Wq[0, 1:] @ x[1:]) / h.Wq[0, 0]  # (W_q x)_0 ~ 0: the two terms differ a lot
        E = sl.score_vector_rounding(h, x, u)
        assert E.shape == (d,)
        np.testing.assert_allclose(E, _score_rounding_loop(h, x, u), rtol=1e-12, atol=0)
        assert np.array_equal(sl.score_vector_rounding(h, x.reshape(-1, 1), u), E), "a column query is flattened"
        hl = Head(_ld(h.Wq), _ld(h.Wk), h.Wv, h.Wo)
        got = sl.score_vector_rounding(hl, _ld(x), u)
        ref = sl.score_vector_rounding(_round_f64(hl), _ld(x).astype(np.float64), u)
        assert got.dtype == np.float64 and np.array_equal(got, ref)
        got = sl.score_vector_rounding(h, _ld(x), u)
        assert got.dtype == np.float64 and np.array_equal(got, sl.score_vector_rounding(h, _ld(x).astype(float), u))


def test_score_vector_rounding_is_sound_in_float32():
    """|fl32(W_k^T (W_q x)) - exact| <= the floor (u = 2^-24), exact from mpmath, with cancelling W_q x."""
    rng, ctx = np.random.default_rng(4), _ctx()
    worst = 0.0
    for t in range(30):
        d, s = int(rng.integers(2, 7)), int(rng.integers(2, 7))
        h = _round32(_head(rng, d, s, 10.0 ** rng.uniform(-1, 2)))
        x = rng.normal(size=d) * 10.0 ** rng.uniform(-2, 2)
        if t % 2:  # near-cancellation in (W_q x)_0
            x[0] = -float(h.Wq[0, 1:] @ x[1:]) / h.Wq[0, 0]
        x = _round32(x)
        g32 = _f32(h.Wk).T @ (_f32(h.Wq) @ _f32(x))
        exact = (mp_matrix(ctx, h.Wk).T * (mp_matrix(ctx, h.Wq) * mp_matrix(ctx, x)))
        E = sl.score_vector_rounding(h, x, U32)
        for j in range(d):
            err = abs(ctx.mpf(float(g32[j])) - exact[j])
            assert err <= ctx.mpf(float(E[j])), f"score floor unsound at trial {t}, entry {j}"
            worst = max(worst, float(err / ctx.mpf(float(E[j]))) if E[j] > 0 else 0.0)
    assert worst > 1e-3, "the float32 evaluation must actually err (a vacuous comparison tests nothing)"


def test_logsumexp():
    ctx = _ctx()
    for v in ([0.3, -1.2, 2.5], [1000.0, 999.0, -5.0], [-800.0, -801.5], [7.0]):
        want = ctx.log(ctx.fsum(ctx.exp(ctx.mpf(t)) for t in v))
        assert sl.logsumexp(v) == pytest.approx(float(want), rel=1e-14, abs=1e-14)
    # exact rationals (an object array) are converted to float64 first
    v = [Fraction(1, 3), Fraction(-2, 7), Fraction(5, 2)]
    assert sl.logsumexp(v) == sl.logsumexp([float(t) for t in v])


# ---------------------------------------------------------------------------------------------
# forward passes and the mpmath rung


def _att_mp(ctx, heads, x, S):
    """sum_h W_o W_v S softmax((W_k S)^T W_q x), written out at ctx's digits."""
    d, n = S.shape
    out = [ctx.mpf(0)] * d
    for h in heads:
        q = [ctx.fsum(ctx.mpf(h.Wq[k, i]) * x[i] for i in range(d)) for k in range(h.Wq.shape[0])]
        sc = [ctx.fsum(ctx.mpf(h.Wk[k, i]) * ctx.mpf(S[i, c]) * q[k] for k in range(len(q)) for i in range(d))
              for c in range(n)]
        e = [ctx.exp(t - max(sc)) for t in sc]
        w = [t / ctx.fsum(e) for t in e]
        V = [[ctx.fsum(ctx.mpf(h.Wv[k, i]) * ctx.mpf(S[i, c]) for i in range(d)) for c in range(n)]
             for k in range(len(q))]
        Vw = [ctx.fsum(V[k][c] * w[c] for c in range(n)) for k in range(len(q))]
        out = [out[i] + ctx.fsum(ctx.mpf(h.Wo[i, k]) * Vw[k] for k in range(len(q))) for i in range(d)]
    return out


def test_attend_and_attend_all():
    rng, ctx = np.random.default_rng(5), _ctx(120)
    d, s, n = 3, 2, 4
    h1, h2 = _head(rng, d, s, 2.0), _head(rng, d, s, 2.0)
    S, x = rng.normal(size=(d, n)), rng.normal(size=d)
    a1 = sl.attend(h1, x, S)
    assert a1.shape == (d,)
    np.testing.assert_allclose(a1, [float(t) for t in _att_mp(ctx, (h1,), x, S)], rtol=1e-12, atol=1e-14)
    a12 = sl.attend_all(Layer((h1, h2), None), x.reshape(-1, 1), S)
    assert a12.shape == (d,)
    np.testing.assert_allclose(a12, [float(t) for t in _att_mp(ctx, (h1, h2), x, S)], rtol=1e-12, atol=1e-14)
    assert np.array_equal(sl.attend_all(Layer(h1, None), x, S), a1), "a bare Head is the one head"
    # long-double x or S are rounded to float64 first (attention itself then runs in float64)
    xl, Sl, L2 = _ld(x), _ld(S), Layer((h1, h2), None)
    for got, ref in ((sl.attend(h1, xl, S), sl.attend(h1, xl.astype(float), S)),
                     (sl.attend(h1, x, Sl), sl.attend(h1, x, Sl.astype(float))),
                     (sl.attend_all(L2, xl, S), sl.attend_all(L2, xl.astype(float), S)),
                     (sl.attend_all(L2, x, Sl), sl.attend_all(L2, x, Sl.astype(float)))):
        assert got.dtype == np.float64 and np.array_equal(got, ref), "attend / attend_all must compute in float64"


def test_mp_attend_sums_the_heads():
    rng, ctx = np.random.default_rng(6), _ctx(120)
    d, s, n = 3, 4, 5
    heads = tuple(_head(rng, d, s, 2.0) for _ in range(3))
    S = rng.normal(size=(d, n))
    x = S[:, -1]
    got = sl.mp_attend(ctx, Layer(heads, None), x, S)
    want = _att_mp(ctx, heads, x, S)
    assert (got.rows, got.cols) == (d, 1)
    for i in range(d):
        assert abs(got[i, 0] - want[i]) <= ctx.mpf(10) ** -30 * (1 + abs(want[i])), "sum over all three heads"


def test_mp_float_rounds_to_the_requested_side():
    ctx = _ctx()
    one = ctx.mpf(1)
    up, down = float(np.nextafter(1.0, 2.0)), float(np.nextafter(1.0, 0.0))
    above, below = one + ctx.mpf(2) ** -70, one - ctx.mpf(2) ** -70  # both round to nearest 1.0
    assert float(above) == 1.0 == float(below)
    assert sl.mp_float(ctx, above, +1) == up and sl.mp_float(ctx, above, -1) == 1.0
    assert sl.mp_float(ctx, below, +1) == 1.0 and sl.mp_float(ctx, below, -1) == down
    assert sl.mp_float(ctx, ctx.mpf(1.5), +1) == 1.5 == sl.mp_float(ctx, ctx.mpf(1.5), -1)  # exact: unchanged
    for v in (above, below, ctx.mpf(1.5), -above):  # any other direction: the plain (nearest) conversion
        assert sl.mp_float(ctx, v, 0) == float(v)
    neg = -above  # -1 - 2^-70: nearest -1.0 lies above it
    assert sl.mp_float(ctx, neg, -1) == -up and sl.mp_float(ctx, neg, +1) == -1.0
    big = ctx.mpf(10) ** 400  # beyond float64: inf stays inf (nextafter only for finite floats)
    assert sl.mp_float(ctx, big, -1) == math.inf == sl.mp_float(ctx, big, +1)
    assert sl.mp_float(ctx, -big, +1) == -math.inf
    rng = np.random.default_rng(7)
    for _ in range(200):  # random 200-bit numbers: each side holds, and the result is adjacent to v
        v = ctx.mpf(rng.normal()) * (1 + ctx.mpf(rng.normal()) * ctx.mpf(2) ** -55)
        lo, hi = sl.mp_float(ctx, v, -1), sl.mp_float(ctx, v, +1)
        assert ctx.mpf(lo) <= v <= ctx.mpf(hi) and hi in (lo, float(np.nextafter(lo, np.inf)))


def test_mp_last_output_is_the_layer_at_high_precision():
    rng, ctx = np.random.default_rng(8), _ctx(150)
    d = 3
    layer = Layer((_head(rng, d, 2, 2.0), _head(rng, d, 2, 2.0)), random_contractive_mlp(rng, d, 5, 0.6))
    P, X = rng.normal(size=(d, 2)), rng.normal(size=(d, 3))
    got = sl.mp_last_output(ctx, layer, P, X)
    S = np.concatenate([P, X], axis=1)
    att = _att_mp(ctx, sl.heads_of(layer), S[:, -1], S)
    want = mp_mlp(ctx, layer.mlp, ctx.matrix([ctx.mpf(S[i, -1]) + att[i] for i in range(d)]))
    assert (got.rows, got.cols) == (d, 1)
    for i in range(d):
        assert abs(got[i, 0] - want[i]) <= ctx.mpf(10) ** -35
    fl = prompt_tuned(layer, P, X)[:, -1]
    np.testing.assert_allclose([float(got[i, 0]) for i in range(d)], fl, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# the rounding floors: formulas re-derived with loops


def _attention_rounding_loop(layer, x, S, u, extra):
    d, n = S.shape
    o_tot, E_tot = [0.0] * d, [0.0] * d
    for h in sl.heads_of(layer):
        Wq, Wk, Wv, Wo = h.Wq, h.Wk, h.Wv, h.Wo
        s = Wq.shape[0]
        gd, gs, gn, gse = gamma_ref(d + extra, u), gamma_ref(s, u), gamma_ref(n, u), gamma_ref(s + extra, u)
        a = [[sum(Wk[k, i] * S[i, c] for i in range(d)) for c in range(n)] for k in range(s)]
        Ea = [[gd * sum(abs(Wk[k, i]) * abs(S[i, c]) for i in range(d)) for c in range(n)] for k in range(s)]
        b = [sum(Wq[k, i] * x[i] for i in range(d)) for k in range(s)]
        Eb = [gd * sum(abs(Wq[k, i]) * abs(x[i]) for i in range(d)) for k in range(s)]
        sc = [sum(a[k][c] * b[k] for k in range(s)) for c in range(n)]
        Es = [gs * sum(abs(a[k][c]) * abs(b[k]) for k in range(s)) + sum(Ea[k][c] * abs(b[k]) for k in range(s))
              + sum(abs(a[k][c]) * Eb[k] for k in range(s)) for c in range(n)]
        j = max(range(n), key=lambda c: sc[c])
        z = [sc[c] - sc[j] for c in range(n)]
        Ez = [Es[c] + Es[j] + u * abs(z[c]) for c in range(n)]  # the shift's two errors and its own rounding
        rel_e = [Ez[c] + 4.0 * u for c in range(n)]  # exp: 4 ulps on top of d exp = exp dz
        rel_w = [rel_e[c] + max(rel_e) + gn + u for c in range(n)]  # over the n-term sum, then the division
        ex = [math.exp(t) for t in z]
        w = [t / sum(ex) for t in ex]
        V = [[sum(Wv[k, i] * S[i, c] for i in range(d)) for c in range(n)] for k in range(s)]
        EV = [[gd * sum(abs(Wv[k, i]) * abs(S[i, c]) for i in range(d)) for c in range(n)] for k in range(s)]
        Vw = [sum(V[k][c] * w[c] for c in range(n)) for k in range(s)]
        EVw = [gn * sum(abs(V[k][c]) * w[c] for c in range(n)) + sum(EV[k][c] * w[c] for c in range(n))
               + sum(abs(V[k][c]) * rel_w[c] * w[c] for c in range(n)) for k in range(s)]
        o = [sum(Wo[i, k] * Vw[k] for k in range(s)) for i in range(d)]
        Eo = [gse * sum(abs(Wo[i, k]) * abs(Vw[k]) for k in range(s)) + sum(abs(Wo[i, k]) * EVw[k] for k in range(s))
              for i in range(d)]
        o_tot = [o_tot[i] + o[i] for i in range(d)]
        E_tot = [E_tot[i] + Eo[i] + u * abs(o_tot[i]) for i in range(d)]
    return np.array(o_tot), np.array(E_tot)


def _mlp_rounding_loop(mlp, z, Ez, u, extra):
    W1, b1, W2, b2 = mlp.W1, mlp.b1, mlp.W2, mlp.b2
    r, d = W1.shape
    hp = [sum(W1[k, i] * z[i] for i in range(d)) + b1[k] for k in range(r)]
    Eh = [gamma_ref(d + 1 + extra, u) * (sum(abs(W1[k, i]) * abs(z[i]) for i in range(d)) + abs(b1[k]))
          + sum(abs(W1[k, i]) * Ez[i] for i in range(d)) for k in range(r)]
    h = [max(t, 0.0) for t in hp]
    R = [sum(W2[i, k] * h[k] for k in range(r)) + b2[i] for i in range(d)]
    ER = [gamma_ref(r + 1 + extra, u) * (sum(abs(W2[i, k]) * h[k] for k in range(r)) + abs(b2[i]))
          + sum(abs(W2[i, k]) * Eh[k] for k in range(r)) for i in range(d)]
    out = [z[i] + R[i] for i in range(d)]
    return np.array(out), np.array([Ez[i] + ER[i] + u * abs(out[i]) for i in range(d)])


def _layer(rng, d, s, r, heads, scale=2.0):
    return Layer(tuple(_head(rng, d, s, scale) for _ in range(heads)), random_contractive_mlp(rng, d, r, 0.7))


@pytest.mark.parametrize("u", [2.0**-53, U32])
@pytest.mark.parametrize("extra", [0, 2])
def test_attention_rounding_is_its_formula(u, extra):
    rng = np.random.default_rng(9)
    for d, s, n, heads in ((3, 5, 4, 1), (4, 2, 6, 2), (2, 3, 3, 3)):  # s != d, n != d, one and several heads
        layer = _layer(rng, d, s, 3, heads)
        S = rng.normal(size=(d, n)) * 2.0
        x = S[:, -1]
        o, E = sl.attention_rounding(layer, x, S, u, extra)
        o_want, E_want = _attention_rounding_loop(layer, x, S, u, extra)
        assert o.shape == E.shape == (d,)
        np.testing.assert_allclose(o, o_want, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(o, sl.attend_all(layer, x, S), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(E, E_want, rtol=1e-12, atol=0)
        oc, Ec = sl.attention_rounding(layer, x.reshape(-1, 1), S, u, extra)
        assert np.array_equal(oc, o) and np.array_equal(Ec, E), "a column query is flattened"
        if extra == 0:
            o0, E0 = sl.attention_rounding(layer, x, S, u)
            assert np.array_equal(o0, o) and np.array_equal(E0, E), "extra defaults to 0"


@needs_ld
def test_rounding_floors_convert_long_double_inputs_to_float64():
    rng = np.random.default_rng(10)
    d = 3
    layer = _layer(rng, d, 2, 4, 1)
    S = rng.normal(size=(d, 4))
    x = S[:, -1]
    hl = Head(*(_ld(w) for w in vars(layer.heads[0]).values()))
    ldl = Layer((hl,), layer.mlp)
    lref = Layer((_round_f64(hl),), layer.mlp)
    for args, ref in (((layer, _ld(x), S), (layer, _ld(x).astype(float), S)),
                      ((layer, x, _ld(S)), (layer, x, _ld(S).astype(float))),
                      ((ldl, x, S), (lref, x, S))):
        (o, E), (o2, E2) = sl.attention_rounding(*args, U32), sl.attention_rounding(*ref, U32)
        assert o.dtype == E.dtype == np.float64 and np.array_equal(o, o2) and np.array_equal(E, E2)
    mlp = layer.mlp
    mll = MLP(*(_ld(w) for w in (mlp.W1, mlp.b1, mlp.W2, mlp.b2)))
    mlr = MLP(*(np.asarray(w, dtype=np.float64) for w in (mll.W1, mll.b1, mll.W2, mll.b2)))
    z, Ez = rng.normal(size=d), np.full(d, 1e-7)
    for (m1, z1), (m2, z2) in (((mll, z), (mlr, z)), ((mlp, _ld(z)), (mlp, _ld(z).astype(float)))):
        (o, E), (o2, E2) = sl.mlp_rounding(m1, z1, Ez, U32), sl.mlp_rounding(m2, z2, Ez, U32)
        assert o.dtype == E.dtype == np.float64 and np.array_equal(o, o2) and np.array_equal(E, E2)
    # the scalar floors: long-double prompts, inputs or points give exactly the float64 floor of their roundings
    for seed in range(12):
        r2 = np.random.default_rng(100 + seed)
        lay = _layer(r2, 4, 3, 6, 1)
        P, X = r2.normal(size=(4, 2)) * 3.0, r2.normal(size=(4, 2)) * 3.0
        want = sl.last_output_rounding(lay, P, X, U32, 2)
        PL, XL = _ld(P), _ld(X)
        assert sl.last_output_rounding(lay, PL, X, U32, 2) == sl.last_output_rounding(lay, PL.astype(float), X, U32, 2)
        assert sl.last_output_rounding(lay, P, XL, U32, 2) == sl.last_output_rounding(lay, P, XL.astype(float), U32, 2)
        assert want == sl.last_output_rounding(lay, P, X, U32, 2)
        zz = _ld(r2.normal(size=4) * 5.0)
        assert sl.target_rounding(lay.mlp, zz, U32) == sl.target_rounding(lay.mlp, zz.astype(float), U32)


@pytest.mark.parametrize("u", [2.0**-53, U32])
@pytest.mark.parametrize("extra", [0, 2])
def test_mlp_rounding_is_its_formula(u, extra):
    rng = np.random.default_rng(11)
    for d, r in ((3, 5), (4, 2)):
        m0 = random_contractive_mlp(rng, d, r, 0.8, bias_scale=2.0)
        z, Ez = rng.normal(size=d) * 2.0, rng.uniform(0.0, 1e-5, size=d)
        # b_1 puts the pre-activations at +-0.5 alternately: both sides of the ReLU hinge, none at 1
        mlp = MLP(m0.W1, -m0.W1 @ z + 0.5 * (-1.0) ** np.arange(r), m0.W2, m0.b2)
        out, E = sl.mlp_rounding(mlp, z, Ez, u, extra)
        o_want, E_want = _mlp_rounding_loop(mlp, z, Ez, u, extra)
        assert out.shape == E.shape == (d,)
        np.testing.assert_allclose(out, o_want, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(out, mlp(z.reshape(-1, 1))[:, 0], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(E, E_want, rtol=1e-12, atol=0)
        oc, Ec = sl.mlp_rounding(mlp, z.reshape(-1, 1), Ez, u, extra)
        assert np.array_equal(oc, out) and np.array_equal(Ec, E), "a column z is flattened"
        if extra == 0:
            o0, E0 = sl.mlp_rounding(mlp, z, Ez, u)
            assert np.array_equal(o0, out) and np.array_equal(E0, E), "extra defaults to 0"


def _last_output_loop(layer, P, X, u, extra):
    S = np.concatenate([P, X], axis=1)
    x = S[:, -1]
    o, Eo = _attention_rounding_loop(layer, x, S, u, extra)
    z = x + o
    _, E = _mlp_rounding_loop(layer.mlp, z, Eo + (1 + extra) * u * np.abs(z), u, extra)
    return math.sqrt(sum(float(t) ** 2 for t in E))


@pytest.mark.parametrize("u", [2.0**-53, U32])
@pytest.mark.parametrize("extra", [0, 2])
def test_last_output_and_target_rounding_are_their_formulas(u, extra):
    rng = np.random.default_rng(12)
    for d, s, heads in ((3, 4, 1), (4, 2, 2)):
        layer = _layer(rng, d, s, 5, heads)
        P, X = rng.normal(size=(d, 3)) * 2.0, rng.normal(size=(d, 3)) * 2.0  # 6 columns, all distinct
        got = sl.last_output_rounding(layer, P, X, u, extra)
        assert got == pytest.approx(_last_output_loop(layer, P, X, u, extra), rel=1e-12)
        if extra == 0:
            assert sl.last_output_rounding(layer, P, X, u) == got, "extra defaults to 0"
        z = rng.normal(size=d) * 3.0
        _, E = _mlp_rounding_loop(layer.mlp, z, u * np.abs(z), u, 0)
        assert sl.target_rounding(layer.mlp, z, u) == pytest.approx(math.sqrt(sum(t * t for t in E)), rel=1e-12)
        assert sl.target_rounding(layer.mlp, z.reshape(-1, 1), u) == sl.target_rounding(layer.mlp, z, u)


# ---------------------------------------------------------------------------------------------
# the rounding floors: sound against mpmath-measured errors of float32 evaluations


def _adversarial_layer(rng, t):
    d, s = int(rng.integers(2, 6)), int(rng.integers(1, 6))
    heads = 1 + t % 3
    hs = [_head(rng, d, s, 10.0 ** rng.uniform(-0.5, 1.0)) for _ in range(heads)]
    if heads >= 2 and t % 2:  # two heads nearly cancelling: |o| << the sum of |o_h|
        h = hs[0]
        hs[1] = Head(h.Wq, h.Wk, h.Wv, -h.Wo * (1 + 1e-3))
    return _round32(Layer(tuple(hs), random_contractive_mlp(rng, d, int(rng.integers(1, 8)), 0.9, 3.0)))


def test_attention_and_last_output_floors_are_sound_in_float32():
    """Logits spread over up to ~60 (weights far from uniform), near ties, cancelling heads, n up to 30 keys."""
    rng, ctx = np.random.default_rng(13), _ctx(160)
    worst_att = worst_last = 0.0
    for t in range(24):
        layer = _adversarial_layer(rng, t)
        d = layer.mlp.W1.shape[1]
        n = int(rng.integers(1, 30))
        S = rng.normal(size=(d, n)) * 10.0 ** rng.uniform(-1, 0.7)
        if n >= 2 and t % 3 == 0:
            S[:, 0] = S[:, -1] * (1 + 1e-6)  # a near tie with the query itself
        S = _round32(S)
        sc = np.concatenate([(h.Wk @ S).T @ (h.Wq @ S[:, -1]) for h in layer.heads])
        if np.ptp(sc) > 80:  # keep exp(z) above float32's underflow
            continue
        x = S[:, -1]
        l32 = _as32(layer)
        o32 = attention(l32.heads, _f32(x).reshape(-1, 1), _f32(S))[:, 0]
        exact = sl.mp_attend(ctx, layer, x, S)
        _, E = sl.attention_rounding(layer, x, S, U32)
        for i in range(d):
            err = abs(ctx.mpf(float(o32[i])) - exact[i, 0])
            assert err <= ctx.mpf(float(E[i])), f"attention floor unsound at trial {t}, entry {i}"
            worst_att = max(worst_att, float(err / ctx.mpf(float(E[i]))))
        m = max(1, n // 2)
        P, X = S[:, :n - m], S[:, n - m:]
        fl = prompt_tuned(l32, _f32(P), _f32(X))[:, -1]
        ex = sl.mp_last_output(ctx, layer, P, X)
        dev = ctx.sqrt(ctx.fsum((ctx.mpf(float(fl[i])) - ex[i, 0]) ** 2 for i in range(d)))
        bound = sl.last_output_rounding(layer, P, X, U32)
        assert dev <= ctx.mpf(bound), f"last-output floor unsound at trial {t}"
        worst_last = max(worst_last, float(dev / bound))
    assert worst_att > 1e-3 and worst_last > 1e-3, "float32 must actually err on these instances"


def test_mlp_and_target_floors_are_sound_in_float32():
    """z rounded to float32 (|z~ - z| <= u|z|), pre-activations straddling 0, large biases (cancellation)."""
    rng, ctx = np.random.default_rng(14), _ctx(160)
    worst = 0.0
    for t in range(40):
        d, r = int(rng.integers(1, 6)), int(rng.integers(1, 9))
        mlp = _round32(random_contractive_mlp(rng, d, r, 0.95, 10.0 ** rng.uniform(-1, 1.5)))
        z = rng.normal(size=d) * 10.0 ** rng.uniform(-1, 1.5)  # float64, not float32-representable
        z32 = _f32(z)
        out32 = MLP(*map(_f32, (mlp.W1, mlp.b1, mlp.W2, mlp.b2)))(z32.reshape(-1, 1))[:, 0]
        exact = mp_mlp(ctx, mlp, mp_matrix(ctx, z))
        dev = ctx.sqrt(ctx.fsum((ctx.mpf(float(out32[i])) - exact[i]) ** 2 for i in range(d)))
        bound = sl.target_rounding(mlp, z, U32)
        assert dev <= ctx.mpf(bound), f"target floor unsound at trial {t}"
        _, E = sl.mlp_rounding(mlp, z, U32 * np.abs(z), U32)
        for i in range(d):
            assert abs(ctx.mpf(float(out32[i])) - exact[i]) <= ctx.mpf(float(E[i])), f"mlp floor, trial {t}"
        worst = max(worst, float(dev / bound))
    assert worst > 1e-2, "float32 must actually err on these instances"
