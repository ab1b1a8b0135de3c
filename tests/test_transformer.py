"""constructions.transformer: softmax/hardmax columns, attention (causal masks, multi-head), the residual MLP, the
layer and the prompt, the prompt-mixture decomposition, the random constructors, the mpmath twins and the rounding
floors -- each checked against independent arithmetic (explicit per-column loops, mpmath), the floors both as sound
bounds on mpmath-measured float32 errors and as their documented formulas recomputed term by term.

Everything is called through the module (``tf.attention``), so a substituted function is the one under test."""

from __future__ import annotations

import math

import array_api_compat.numpy as anp
import mpmath
import numpy as np
import pytest

import constructions.transformer as tf
from tests.oracles import gamma_ref
from verify.backends import Backend

U32 = 2.0**-24
TINY32 = 2.0**-126


def _ctx(dps=40):
    ctx = mpmath.MPContext()
    ctx.dps = dps
    return ctx


def _head(seed, d, s, scale=1.0):
    rng = np.random.default_rng(seed)
    return tf.Head(*(rng.normal(0.0, scale, size=sh) for sh in ((s, d), (s, d), (s, d), (d, s))))


def _f32head(h):
    return tf.Head(*(np.asarray(w, dtype=np.float32) for w in (h.Wq, h.Wk, h.Wv, h.Wo)))


def _softmax_ref(col):
    col = np.asarray(col, dtype=np.float64)
    e = np.exp(col - col.max())
    return e / e.sum()


def _weights_ref(head, Xq, Xk, causal_offset=None, hard=False):
    """Per-query loop: scores over the allowed keys, then softmax (or uniform on the exact maxima)."""
    K, Q = np.asarray(head.Wk) @ np.asarray(Xk), np.asarray(head.Wq) @ np.asarray(Xq)
    nk, nq = K.shape[1], Q.shape[1]
    A = np.zeros((nk, nq))
    for j in range(nq):
        allowed = [i for i in range(nk) if causal_offset is None or i <= causal_offset + j]
        sc = np.array([float(K[:, i] @ Q[:, j]) for i in allowed])
        if hard:
            w = (sc == sc.max()).astype(float)
            w = w / w.sum()
        else:
            w = _softmax_ref(sc)
        A[allowed, j] = w
    return A


def _head_ref(head, Xq, Xk, causal_offset=None, hard=False):
    A = _weights_ref(head, Xq, Xk, causal_offset, hard)
    return np.asarray(head.Wo) @ (np.asarray(head.Wv) @ np.asarray(Xk) @ A)


def _mp_head(head, Xq, Xk, ctx):
    """Exact (ctx.dps digits) head output, d x n_q, as an mpmath matrix, written independently."""
    M = [ctx.matrix(np.asarray(w, dtype=np.float64).tolist()) for w in (head.Wq, head.Wk, head.Wv, head.Wo)]
    Wq, Wk, Wv, Wo = M
    Xq = ctx.matrix(np.asarray(Xq, dtype=np.float64).tolist())
    Xk = ctx.matrix(np.asarray(Xk, dtype=np.float64).tolist())
    K, Q, V = Wk * Xk, Wq * Xq, Wo * (Wv * Xk)
    out = ctx.matrix(V.rows, Q.cols)
    for j in range(Q.cols):
        sc = [ctx.fsum(K[r, i] * Q[r, j] for r in range(K.rows)) for i in range(K.cols)]
        mx = max(sc)
        w = [ctx.exp(v - mx) for v in sc]
        z = ctx.fsum(w)
        for r in range(V.rows):
            out[r, j] = ctx.fsum(V[r, i] * w[i] for i in range(K.cols)) / z
    return out


def _close(a, b, rel=1e-12):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=rel, atol=0.0)


# a generic instance: d != s != n != n_q, several distinct query columns
D, S_, N, NQ = 3, 2, 5, 4
H0 = _head(1, D, S_, 0.9)
XK0 = np.random.default_rng(2).normal(size=(D, N))
XQ0 = np.random.default_rng(3).normal(size=(D, NQ))


def _level_head():
    """Logits S_lq = c_q + t_l: every column has the same softmax, but the columns sit at levels 0, 1000, -1000."""
    rng = np.random.default_rng(7)
    head = tf.Head(np.eye(2), np.eye(2), rng.normal(size=(3, 2)), rng.normal(size=(2, 3)))
    t = np.array([0.3, -0.5, 1.25, 0.0])
    Xk = np.vstack([np.ones(4), t])
    Xq = np.array([[0.0, 1000.0, -1000.0], [1.0, 1.0, 1.0]])
    return head, Xq, Xk, t


# ------------------------------------------------------------------------------------------------------------------
# softmax / hardmax columns
# ------------------------------------------------------------------------------------------------------------------


def test_softmax_columns_is_a_per_column_softmax():
    S = np.array([[0.5, -1.0, 3.0], [2.0, 0.25, -2.0], [-1.5, 4.0, 0.0], [0.0, 1.0, 1.0]])
    ref = np.column_stack([_softmax_ref(S[:, j]) for j in range(3)])
    for out in (tf.softmax_columns(S), tf.softmax_columns(S, anp)):
        _close(out, ref, 1e-14)
    _close(tf.softmax_columns(S).sum(axis=0), np.ones(3), 1e-15)


def test_softmax_columns_shifts_each_column_by_its_own_maximum():
    # columns at levels 0, 1000, -1000: a global shift underflows, an added shift overflows
    t = np.array([0.3, -0.5, 1.25, 0.0])
    S = t[:, None] + np.array([0.0, 1000.0, -1000.0])[None, :]
    out = tf.softmax_columns(S)
    assert np.all(np.isfinite(out))
    for j in range(3):
        _close(out[:, j], _softmax_ref(t), 1e-12)


def test_hardmax_columns_splits_ties_uniformly_per_column():
    S = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 2.0], [3.0, 0.0, 2.0], [0.0, 1.0, -7.0]])
    want = np.array([[0, 0.5, 1 / 3], [0.5, 0.5, 1 / 3], [0.5, 0, 1 / 3], [0, 0, 0]])
    for out in (tf.hardmax_columns(S), tf.hardmax_columns(S, anp)):
        _close(out, want, 1e-15)
    out32 = tf.hardmax_columns(S.astype(np.float32))
    assert out32.dtype == np.float32
    _close(out32, want, 1e-7)


# ------------------------------------------------------------------------------------------------------------------
# attention
# ------------------------------------------------------------------------------------------------------------------


def test_attention_weights_soft_default():
    A = tf.attention_weights(H0, XQ0, XK0)
    assert A.shape == (N, NQ)
    _close(A, _weights_ref(H0, XQ0, XK0), 1e-12)


@pytest.mark.parametrize("off", [0, 2])
def test_attention_weights_causal_mask(off):
    A = tf.attention_weights(H0, XQ0, XK0, causal_offset=off)
    ref = _weights_ref(H0, XQ0, XK0, causal_offset=off)
    _close(A, ref, 1e-12)
    for j in range(NQ):
        assert np.all(A[off + j + 1 :, j] == 0.0) and np.all(A[: off + j + 1, j] > 0.0)


def _tie_head():
    """Integer data: keys 0 and 1 coincide, so their scores tie exactly (also under a causal mask)."""
    Wv = np.array([[1.0, -2.0, 0.0], [3.0, 1.0, 1.0], [0.0, 2.0, -1.0]])
    Wo = np.array([[1.0, 0.0, 2.0], [2.0, -1.0, 0.0], [0.0, 1.0, 1.0]])
    Xk = np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    Xq = np.array([[2.0, 1.0, 3.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    return tf.Head(np.eye(3), np.eye(3), Wv, Wo), Xq, Xk


@pytest.mark.parametrize("off", [None, 0, 1])
def test_attention_weights_hard_with_ties(off):
    head, Xq, Xk = _tie_head()
    ref = _weights_ref(head, Xq, Xk, causal_offset=off, hard=True)
    assert np.any((ref > 0) & (ref < 1))  # a genuine tie is present
    _close(tf.attention_weights(head, Xq, Xk, hard=True, causal_offset=off), ref, 1e-15)
    _close(tf.head_attention(head, Xq, Xk, hard=True, causal_offset=off), _head_ref(head, Xq, Xk, off, True), 1e-14)
    _close(tf.attention(head, Xq, Xk, hard=True, causal_offset=off), _head_ref(head, Xq, Xk, off, True), 1e-14)


def test_attention_weights_float32_stays_float32_under_the_mask():
    h32 = _f32head(H0)
    A = tf.attention_weights(h32, XQ0.astype(np.float32), XK0.astype(np.float32), causal_offset=1)
    assert A.dtype == np.float32
    _close(A, _weights_ref(h32, XQ0.astype(np.float32), XK0.astype(np.float32), causal_offset=1), 1e-5)


def test_attention_stays_on_the_input_device():
    """torch's meta device has no CPU fallback: a mask built on another device is refused there."""
    torch = pytest.importorskip("torch")  # the torch tox env runs it; the core (numpy) env has no torch
    meta = tf.Head(*(torch.zeros(w.shape, dtype=torch.float64, device="meta") for w in (H0.Wq, H0.Wk, H0.Wv, H0.Wo)))
    Xq, Xk = torch.zeros((D, NQ), device="meta", dtype=torch.float64), torch.zeros((D, N), device="meta").double()
    A = tf.attention_weights(meta, Xq, Xk, causal_offset=0)
    assert A.device.type == "meta" and tuple(A.shape) == (N, NQ)
    assert tf.head_attention(meta, Xq, Xk, causal_offset=1).device.type == "meta"


def test_mixed_libraries_are_refused():
    """By the namespace check up front (not by a later crash inside a matmul or a reduction)."""
    torch = pytest.importorskip("torch")  # the torch tox env runs it; the core (numpy) env has no torch
    T = torch.as_tensor
    with pytest.raises(TypeError, match="namespace"):
        tf.attention_weights(H0, XQ0, T(XK0))
    with pytest.raises(TypeError, match="namespace"):
        tf.attention_weights(H0, T(XQ0), XK0)
    with pytest.raises(TypeError, match="namespace"):
        tf.prepend(XQ0, T(XK0))
    with pytest.raises(TypeError, match="namespace"):
        tf.prepend(T(XQ0), XK0)
    x, P, X = XQ0[:, :1], XK0[:, :2], XK0[:, 2:]
    for args in ((T(x), P, X), (x, T(P), X), (x, P, T(X))):
        with pytest.raises(TypeError, match="namespace"):
            tf.prompt_mixture(H0, *args)


@pytest.mark.parametrize("off", [None, 0, 2])
def test_head_attention(off):
    out = tf.head_attention(H0, XQ0, XK0, causal_offset=off)
    assert out.shape == (D, NQ)
    _close(out, _head_ref(H0, XQ0, XK0, off), 1e-12)


def test_attention_sums_heads():
    H1 = _head(11, D, S_, 1.3)
    for off in (None, 1):
        want = _head_ref(H0, XQ0, XK0, off) + _head_ref(H1, XQ0, XK0, off)
        _close(tf.attention((H0, H1), XQ0, XK0, causal_offset=off), want, 1e-12)
        _close(tf.attention([H1, H0], XQ0, XK0, causal_offset=off), want, 1e-12)
    _close(tf.attention(H1, XQ0, XK0), _head_ref(H1, XQ0, XK0), 1e-12)
    _close(tf.attention((H1,), XQ0, XK0), _head_ref(H1, XQ0, XK0), 1e-12)


def test_torch_and_numpy_agree():
    torch = pytest.importorskip("torch")  # the torch tox env runs it; the core (numpy) env has no torch
    H1 = _head(11, D, S_, 1.3)
    th = [tf.head_to(Backend("torch"), h) for h in (H0, H1)]
    Xq, Xk = torch.as_tensor(XQ0), torch.as_tensor(XK0)
    for off in (None, 0, 2):
        out = tf.attention(th, Xq, Xk, causal_offset=off)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
        _close(out.numpy(), tf.attention((H0, H1), XQ0, XK0, causal_offset=off), 1e-12)
    lam, aP, aX = tf.prompt_mixture(th[0], Xq[:, :1], Xk[:, :2], Xk[:, 2:])
    lam_n, aP_n, aX_n = tf.prompt_mixture(H0, XQ0[:, :1], XK0[:, :2], XK0[:, 2:])
    assert float(lam) == pytest.approx(float(lam_n), rel=1e-12, abs=0.0)
    _close(aP.numpy(), aP_n, 1e-12)
    _close(aX.numpy(), aX_n, 1e-12)


# ------------------------------------------------------------------------------------------------------------------
# MLP, layer, prompt
# ------------------------------------------------------------------------------------------------------------------


def _mlp(seed, d=D, r=4):
    rng = np.random.default_rng(seed)
    return tf.MLP(rng.normal(size=(r, d)), rng.normal(size=r), rng.normal(size=(d, r)), rng.normal(size=d))


def _mlp_ref(mlp, X):
    out = np.empty_like(X)
    for j in range(X.shape[1]):
        h = mlp.W1 @ X[:, j] + mlp.b1
        out[:, j] = X[:, j] + mlp.W2 @ np.maximum(h, 0.0) + mlp.b2
    return out


def test_mlp_residual_relu():
    mlp = _mlp(5)
    X = np.random.default_rng(6).normal(size=(D, 6))
    H = mlp.W1 @ X + mlp.b1[:, None]
    assert np.any(H > 0) and np.any(H < 0)  # both ReLU branches are exercised
    _close(mlp(X), _mlp_ref(mlp, X), 1e-12)
    _close(mlp.residual_part(X), _mlp_ref(mlp, X) - X, 1e-12)


@pytest.mark.parametrize("hard,causal", [(False, False), (False, True), (True, False), (True, True)])
def test_layer(hard, causal):
    H1 = _head(12, D, S_)
    mlp = _mlp(13)
    X = np.random.default_rng(14).normal(size=(D, 5))
    layer = tf.Layer((H0, H1), mlp, hard=hard, causal=causal)
    off = 0 if causal else None
    att = _head_ref(H0, X, X, off, hard) + _head_ref(H1, X, X, off, hard)
    _close(layer(X), _mlp_ref(mlp, X + att), 1e-11)
    if not hard and not causal:
        _close(tf.Layer((H0, H1), mlp)(X), _mlp_ref(mlp, X + att), 1e-11)


def test_prepend_and_prompt_tuned():
    P = np.random.default_rng(15).normal(size=(D, 2))
    X = np.random.default_rng(16).normal(size=(D, 3))
    Z = tf.prepend(P, X)
    assert Z.shape == (D, 5)
    assert np.array_equal(Z[:, :2], P) and np.array_equal(Z[:, 2:], X)
    L1 = tf.Layer((H0,), _mlp(17), causal=True)
    L2 = tf.Layer((_head(18, D, S_),), _mlp(19))
    one = L1(np.hstack([P, X]))
    _close(tf.prompt_tuned(L1, P, X), one[:, 2:], 1e-14)
    _close(tf.prompt_tuned([L1, L2], P, X), L2(one)[:, 2:], 1e-14)
    _close(tf.prompt_tuned((L1, L2), P, X), L2(one)[:, 2:], 1e-14)


# ------------------------------------------------------------------------------------------------------------------
# prompt mixture and the mpmath twins
# ------------------------------------------------------------------------------------------------------------------


def _mix_instance(seed, m_p=3, m=4, shift=0.0):
    h = _head(seed, D, S_, 1.1)
    rng = np.random.default_rng(seed + 100)
    x = rng.normal(size=(D, 1))
    return h, x, rng.normal(size=(D, m_p)) + shift, rng.normal(size=(D, m))


def _lam_mp(head, x, P, X, ctx):
    Wq, Wk = ctx.matrix(head.Wq.tolist()), ctx.matrix(head.Wk.tolist())
    g = Wq * ctx.matrix(np.asarray(x).reshape(-1, 1).tolist())

    def mass(S):
        K = Wk * ctx.matrix(S.tolist())
        return ctx.fsum(ctx.exp(ctx.fsum(K[r, i] * g[r, 0] for r in range(K.rows))) for i in range(K.cols))

    zp, zx = mass(P), mass(X)
    return zp / (zp + zx)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prompt_mixture_decomposes_attention(seed):
    head, x, P, X = _mix_instance(seed, m_p=2 + seed, m=3)
    lam, aP, aX = tf.prompt_mixture(head, x, P, X)
    ctx = _ctx()
    assert float(lam) == pytest.approx(float(_lam_mp(head, x, P, X, ctx)), rel=1e-13, abs=0.0)
    _close(aP, _head_ref(head, x, P), 1e-12)
    _close(aX, _head_ref(head, x, X), 1e-12)
    _close(lam * aP + (1 - lam) * aX, _head_ref(head, x, np.hstack([P, X])), 1e-11)


def test_prompt_mixture_lambda_survives_underflow():
    head = tf.Head(np.eye(2), np.eye(2), np.eye(2), np.eye(2))
    x = np.array([[1.0], [0.0]])
    P = np.array([[-800.0, -801.0], [0.0, 1.0]])  # both masses underflow in linear space (e^-800, e^-790)
    X = np.array([[-790.0, -789.5, -790.25], [1.0, 0.0, 2.0]])
    lam, _, _ = tf.prompt_mixture(head, x, P, X)
    z_p = mpmath.exp(-800) + mpmath.exp(-801)
    z_x = mpmath.exp(-790) + mpmath.exp(-789.5) + mpmath.exp(-790.25)
    assert float(lam) == pytest.approx(float(z_p / (z_p + z_x)), rel=1e-12, abs=0.0)


def test_mp_matrix():
    ctx = _ctx(30)
    a = np.array([[0.1, -2.0, 3.5], [1e-300, 7.0, -0.3]])
    M = tf.mp_matrix(ctx, a)
    assert (M.rows, M.cols) == (2, 3)
    assert all(M[i, j] == ctx.mpf(float(a[i, j])) for i in range(2) for j in range(3))
    v = tf.mp_matrix(ctx, np.array([0.1, 0.2, 0.3]))
    assert (v.rows, v.cols) == (3, 1) and v[2, 0] == ctx.mpf(0.3)
    third = ctx.mpf(1) / 3  # not a float64: converted (rounded) to float64 first
    T = tf.mp_matrix(ctx, [[third, 1.0]])
    assert T[0, 0] == ctx.mpf(1.0 / 3.0) and T[0, 0] != third


@pytest.mark.parametrize("shape", ["flat", "column"])
def test_head_attention_mp_matches_float64(shape):
    ctx = _ctx(40)
    for q in range(NQ):
        x = XQ0[:, q] if shape == "flat" else XQ0[:, q : q + 1]
        out = tf.head_attention_mp(ctx, H0, x, XK0)
        assert len(out) == D
        _close([float(v) for v in out], _head_ref(H0, XQ0[:, q : q + 1], XK0)[:, 0], 1e-13)


def test_prompt_mixture_mp_matches_float64():
    ctx = _ctx(40)
    for seed in (0, 3):
        head, x, P, X = _mix_instance(seed, m_p=2, m=5, shift=0.5 * seed)
        lam, aP, aX = tf.prompt_mixture_mp(ctx, head, x[:, 0], P, X)
        assert float(lam) == pytest.approx(float(_lam_mp(head, x, P, X, ctx)), rel=1e-30, abs=0.0)
        _close([float(v) for v in aP], _head_ref(head, x, P)[:, 0], 1e-13)
        _close([float(v) for v in aX], _head_ref(head, x, X)[:, 0], 1e-13)


# ------------------------------------------------------------------------------------------------------------------
# random constructors and conversions
# ------------------------------------------------------------------------------------------------------------------


def test_random_head_draws():
    for kw, scale in (({}, 1.0), ({"scale": 3.0}, 3.0)):
        h = tf.random_head(np.random.default_rng(21), 4, 3, **kw)
        rng = np.random.default_rng(21)
        sd = scale / 2.0
        want = [rng.normal(0.0, sd, size=sh) for sh in ((3, 4), (3, 4), (3, 4), (4, 3))]
        for w, ref in zip((h.Wq, h.Wk, h.Wv, h.Wo), want, strict=True):
            assert w.shape == ref.shape and np.array_equal(w, ref)


def test_head_to_and_mlp_to():
    torch = pytest.importorskip("torch")  # the torch tox env runs it; the core (numpy) env has no torch
    b32 = Backend(dtype="float32")
    h = tf.head_to(b32, H0)
    for w, ref in zip((h.Wq, h.Wk, h.Wv, h.Wo), (H0.Wq, H0.Wk, H0.Wv, H0.Wo), strict=True):
        assert w.dtype == np.float32 and np.array_equal(w, ref.astype(np.float32))
    mlp = _mlp(22)
    m = tf.mlp_to(Backend("torch"), mlp)
    for w, ref in zip((m.W1, m.b1, m.W2, m.b2), (mlp.W1, mlp.b1, mlp.W2, mlp.b2), strict=True):
        assert isinstance(w, torch.Tensor) and np.array_equal(w.numpy(), ref)


def test_spectral_norm():
    W = np.random.default_rng(23).normal(size=(4, 3))
    sv = np.linalg.svd(W, compute_uv=False)
    assert sv[1] > 0.1 * sv[0]  # rank > 1: the spectral and Frobenius norms differ
    assert tf.spectral_norm(W) == pytest.approx(sv[0], rel=1e-14, abs=0.0)
    W32 = W.astype(np.float32)
    want = np.linalg.svd(W32.astype(np.float64), compute_uv=False)[0]
    assert tf.spectral_norm(W32) == pytest.approx(want, rel=1e-14, abs=0.0)
    assert tf.spectral_norm(W.tolist()) == pytest.approx(sv[0], rel=1e-14, abs=0.0)


@pytest.mark.parametrize("kappa", [0.0, 0.5, 1.7])
def test_random_contractive_mlp(kappa):
    for kw, bs in (({}, 1.0), ({"bias_scale": 0.25}, 0.25)):
        mlp = tf.random_contractive_mlp(np.random.default_rng(24), 3, 5, kappa, **kw)
        rng = np.random.default_rng(24)
        W1, W2 = rng.normal(size=(5, 3)), rng.normal(size=(3, 5))
        b1, b2 = rng.normal(scale=bs, size=5), rng.normal(scale=bs, size=3)
        c = math.sqrt(kappa / (np.linalg.svd(W1, compute_uv=False)[0] * np.linalg.svd(W2, compute_uv=False)[0]))
        _close(mlp.W1, W1 * c, 1e-14)
        _close(mlp.W2, W2 * c, 1e-14)
        assert np.array_equal(mlp.b1, b1) and np.array_equal(mlp.b2, b2)
        lip = np.linalg.norm(mlp.W1, 2) * np.linalg.norm(mlp.W2, 2)
        assert lip == pytest.approx(kappa, rel=1e-12, abs=0.0)


def test_random_contractive_mlp_kappa_zero_needs_no_norm():
    """kappa = 0 scales by 0 without dividing by the norms, so even a zero-width hidden layer (r = 0) is fine."""
    mlp = tf.random_contractive_mlp(np.random.default_rng(0), 3, 0, 0.0)
    assert mlp.W1.shape == (0, 3) and mlp.W2.shape == (3, 0)
    X = np.random.default_rng(1).normal(size=(3, 2))
    _close(mlp(X), X + mlp.b2[:, None], 1e-15)


def test_random_contractive_mlp_refuses_negative_kappa():
    with pytest.raises(ValueError):
        tf.random_contractive_mlp(np.random.default_rng(0), 2, 2, -0.1)


# ------------------------------------------------------------------------------------------------------------------
# rounding floors: the documented formulas, term by term
# ------------------------------------------------------------------------------------------------------------------


def _mm(A, B):
    """A @ B by explicit loops in Python floats."""
    return np.array([[math.fsum(A[i, k] * B[k, j] for k in range(A.shape[1])) for j in range(B.shape[1])]
                     for i in range(A.shape[0])]).reshape(A.shape[0], B.shape[1])


def _arf_parts_ref(head, Xq, Xk, u, tiny):
    """attention_rounding_floor's documented bound, one query column, key and output row at a time."""
    Wq, Wk, Wv, Wo = (np.asarray(w, dtype=np.float64) for w in (head.Wq, head.Wk, head.Wv, head.Wo))
    Xq, Xk = np.asarray(Xq, dtype=np.float64), np.asarray(Xk, dtype=np.float64)
    d, n, s, nq = Xk.shape[0], Xk.shape[1], Wq.shape[0], Xq.shape[1]
    sv = Wv.shape[0]  # the value width: W_o's inner size
    u64 = 2.0**-53
    g = {k: (gamma_ref(k, u), gamma_ref(k, u64), gamma_ref(k, max(u, u64))) for k in (d, s, sv, n, max(n - 1, 1))}
    K, Q, V = _mm(Wk, Xk), _mm(Wq, Xq), _mm(Wv, Xk)
    mK, mQ, mV = _mm(abs(Wk), abs(Xk)), _mm(abs(Wq), abs(Xq)), _mm(abs(Wv), abs(Xk))
    aK = abs(K) + (g[d][0] + g[d][1]) * mK
    aQ = abs(Q) + (g[d][0] + g[d][1]) * mQ
    aV = abs(V) + (g[d][0] + g[d][1]) * mV
    M = _mm(Wo, V)
    VM = _mm(abs(Wo), mV)
    WoVm = _mm(abs(Wo), abs(V))
    floor, mag = np.empty((d, nq)), np.empty((d, nq))
    parts = {k: np.zeros((n, nq)) for k in ("S", "e", "e64", "ex", "A", "Aup", "alpha", "a64", "dead")}
    parts.update({k: np.zeros((1, nq)) for k in ("beta", "b64", "ok")})
    for q in range(nq):
        S = [math.fsum(K[c, l] * Q[c, q] for c in range(s)) for l in range(n)]

        def e_at(i, q=q):  # i = 0: at u, 1: at 2^-53, 2: at max(u, 2^-53)
            return [g[s][i] * math.fsum(aK[c, l] * aQ[c, q] for c in range(s))
                    + math.fsum(g[d][i] * mK[c, l] * aQ[c, q] for c in range(s))
                    + math.fsum(aK[c, l] * g[d][i] * mQ[c, q] for c in range(s)) for l in range(n)]

        e, e64, ex = e_at(0), e_at(1), e_at(2)
        top = max(S)
        spread = [abs(x - top) for x in S]
        sp = [spread[l] + ex[l] + max(ex) for l in range(n)]
        E = [math.exp(x - top) for x in S]
        A = [x / math.fsum(E) for x in E]

        def alpha_of(uk, ee, l, sp=sp):
            return math.expm1(ee[l] + uk * sp[l] * (1 + uk) + math.log1p(2 * uk) + math.log1p(uk))

        def tau_of(uk, l, sp=sp):
            return math.expm1(uk * sp[l] * (1 + uk) + math.log1p(2 * uk))

        dead = [A[l] == 0.0 and tiny > 0 and ex[l] + max(ex) + u64 * spread[l] < 30.0 for l in range(n)]
        e64_live, e_live = max(e64[l] for l in range(n) if not dead[l]), max(e[l] for l in range(n) if not dead[l])
        a64 = [0.0 if dead[l] else alpha_of(u64, e64, l) for l in range(n)]
        alpha = [alpha_of(u, e, l) for l in range(n)]
        for key, val in (("S", S), ("e", e), ("e64", e64), ("ex", ex), ("A", A), ("alpha", alpha), ("dead", dead)):
            parts[key][:, q] = val
        parts["a64"][:, q] = a64
        g1, g64 = g[max(n - 1, 1)][0], g[max(n - 1, 1)][1]
        floor[:, q] = mag[:, q] = math.inf
        if not (g1 < 1 and max(a64) < 1):
            continue
        t64 = max(0.0 if dead[l] else tau_of(u64, l) for l in range(n))
        b64 = math.expm1(e64_live - math.log1p(-t64) - math.log1p(-g64))
        parts["b64"][0, q] = b64
        if not b64 < 1:
            continue
        Aup = [A[l] / ((1 - a64[l]) * (1 - b64)) for l in range(n)]
        parts["Aup"][:, q] = Aup
        tau_bar = min(max(tau_of(u, l) for l in range(n)), math.fsum(Aup[l] * tau_of(u, l) for l in range(n)))
        if not tau_bar < 1:
            continue
        beta = math.expm1(e_live - math.log1p(-tau_bar) - math.log1p(-g1))
        parts["beta"][0, q], parts["ok"][0, q] = beta, 1.0
        Ah = [Aup[l] * (1 + alpha[l]) * (1 + beta) for l in range(n)]
        dA = [alpha[l] + beta + alpha[l] * beta for l in range(n)]
        dA64 = [a64[l] + b64 + a64[l] * b64 for l in range(n)]
        gd, gs, gn = g[d][0], g[sv][0], g[n][0]
        hd, hs, hn = g[d][1], g[sv][1], g[n][1]
        Y = [abs(math.fsum(V[c, l] * A[l] for l in range(n)))
             + math.fsum((gn + hn) * aV[c, l] * Ah[l] + (gd + hd) * mV[c, l] * Ah[l]
                         + aV[c, l] * Aup[l] * (dA[l] + dA64[l]) for l in range(n)) for c in range(sv)]
        widen = 1 + 1e-9  # documented: covers 2 gamma_{2(n+d+s)+30}(2^-53) while n + d + s < 10^6
        for r in range(d):
            WoV = [abs(M[r, l]) + hs * WoVm[r, l] + hd * VM[r, l] for l in range(n)]
            wva = (abs(math.fsum(M[r, l] * A[l] for l in range(n)))
                   + math.fsum(hn * abs(M[r, l]) * A[l] for l in range(n))
                   + math.fsum((hs * WoVm[r, l] + hd * VM[r, l]) * Aup[l] + WoV[l] * Aup[l] * dA64[l]
                               for l in range(n)))
            err = (math.fsum(gd * VM[r, l] * Ah[l] for l in range(n))
                   + math.fsum(WoV[l] * Aup[l] * alpha[l] for l in range(n)) * (1 + beta) + beta * wva
                   + math.fsum(gn * abs(Wo[r, c]) * aV[c, l] * Ah[l] for c in range(sv) for l in range(n))
                   + math.fsum(gs * abs(Wo[r, c]) * Y[c] for c in range(sv)) + math.fsum(VM[r]) * tiny)
            floor[r, q], mag[r, q] = err * widen, wva * widen
    return floor, mag, parts


def _arf_ref(head, Xq, Xk, u, tiny):
    return _arf_parts_ref(head, Xq, Xk, u, tiny)[0]


def _check_parts(head, Xq, Xk, u, tiny):
    """The floor's intermediates, each against the reference: the u-level slack terms are ~1e-16 of the floor, so
    only a direct comparison sees them."""
    floor, mag, ref = _arf_parts_ref(head, Xq, Xk, u, tiny)
    S, eS, e64, eSx = tf._logit_errors(head, Xq, Xk, u)
    for name, got in (("S", S), ("e", eS), ("e64", e64), ("ex", eSx)):
        _close(got, ref[name], 1e-12)
    sb = tf._softmax_bounds(S, eS, e64, eSx, u, tiny)
    assert np.array_equal(sb.dead, ref["dead"] == 1.0) and np.array_equal(sb.ok, ref["ok"] == 1.0)
    ok = sb.ok[0]
    for name in ("A", "alpha", "a64"):
        _close(getattr(sb, name), ref[name], 1e-12)
    for name in ("Aup", "beta"):
        _close(getattr(sb, name)[:, ok], ref[name][:, ok], 1e-12)
    _close(sb.b64[:, ok], ref["b64"][:, ok], 1e-12)
    got_floor, got_mag = tf._attention_floor_and_magnitude(head, Xq, Xk, u, tiny)
    _close(got_floor, floor, 1e-12)
    _close(got_mag, mag, 1e-12)
    return sb


def _wvm_ref(head, Xq, Xk):
    VM = np.abs(np.asarray(head.Wo, float)) @ np.abs(np.asarray(head.Wv, float)) @ np.abs(np.asarray(Xk, float))
    return VM @ _weights_ref(tf.Head(*(np.asarray(w, float) for w in (head.Wq, head.Wk, head.Wv, head.Wo))), Xq, Xk)


def _pmf_ref(head, x, P, X, u, tiny, clip=700.0):
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    Wq, Wk = np.asarray(head.Wq, float), np.asarray(head.Wk, float)
    d, s = x.shape[0], Wq.shape[0]
    (fP, mP), (fX, mX) = ((a[:, 0] for a in _arf_parts_ref(head, x, Z, u, tiny)[:2]) for Z in (P, X))

    def logmass(Sm):
        a = ((Wk @ Sm).T @ (Wq @ x))[:, 0]
        lse = a.max() + math.log(np.exp(a - a.max()).sum())
        err = (gamma_ref(2 * d + s, u) * ((np.abs(Wk) @ np.abs(Sm)).T @ (np.abs(Wq) @ np.abs(x)))).max()
        return lse, err

    (lp, ep), (lx, ex) = logmass(P), logmass(X)
    e = ep + ex + gamma_ref(max(P.shape[1], X.shape[1]) + 3, u) * (abs(lp) + abs(lx) + 2.0)
    lam = 1.0 / (1.0 + math.exp(min(lx - lp, clip)))
    dlam = lam * (1.0 - lam) * math.expm1(e) + 3.0 * u + tiny
    return dlam * (mP + mX) + np.maximum(fP, fX) + 6.0 * u * (mP + mX + fP + fX)


def _floor_instances():
    lh, lxq, lxk, _ = _level_head()
    return [(H0, XQ0, XK0), (_head(31, 2, 4, 0.7), XQ0[:2, :3] * 1.5, XK0[:2, :]), (lh, lxq, lxk)]


@pytest.mark.parametrize(
    "u,tiny", [(1e-3, 0.0), (1e-3, 1e-4), (U32, 2.0**-1022), (2.0**-53, 2.0**-1022), (1e-20, 0.0)]
)
def test_attention_rounding_floor_formula(u, tiny):
    for head, Xq, Xk in _floor_instances():
        got = tf.attention_rounding_floor(head, Xq, Xk, u, tiny)
        assert got.shape == (Xk.shape[0], Xq.shape[1])
        _close(got, _arf_ref(head, Xq, Xk, u, tiny), 1e-12)
        assert _check_parts(head, Xq, Xk, u, tiny).ok.all()
    if tiny == 2.0**-1022:
        _close(tf.attention_rounding_floor(H0, XQ0, XK0, u), _arf_ref(H0, XQ0, XK0, u, tiny), 1e-12)


def test_floors_read_float32_inputs_in_float64():
    h32, xq, xk = _f32head(H0), XQ0.astype(np.float32), XK0.astype(np.float32)
    got = tf.attention_rounding_floor(h32, xq, xk, 1e-3, 1e-4)
    assert got.dtype == np.float64
    _close(got, _arf_ref(h32, xq, xk, 1e-3, 1e-4), 1e-12)
    w = tf.weighted_value_magnitude(h32, xq, xk)
    assert w.dtype == np.float64
    _close(w, _wvm_ref(h32, xq, xk), 1e-12)
    p = tf.prompt_mixture_floor(h32, xq[:, 0], xk[:, :2], xk[:, 2:], 1e-3, 1e-4)
    assert p.dtype == np.float64
    _close(p, _pmf_ref(h32, xq[:, 0], xk[:, :2], xk[:, 2:], 1e-3, 1e-4), 1e-12)


def test_weighted_value_magnitude_formula_and_bound():
    for head, Xq, Xk in _floor_instances():
        got = tf.weighted_value_magnitude(head, Xq, Xk)
        assert got.shape == (Xk.shape[0], Xq.shape[1])
        _close(got, _wvm_ref(head, Xq, Xk), 1e-12)
        assert np.all(np.abs(_head_ref(head, Xq, Xk)) <= got * (1 + 1e-12))


def _pmf_instances():
    out = []
    for seed, m_p, m in ((0, 2, 5), (1, 4, 3), (2, 3, 3)):
        head, x, P, X = _mix_instance(seed, m_p, m, shift=0.3)
        out.append((head, x[:, 0], P, X))
    return out


@pytest.mark.parametrize("u,tiny", [(1e-3, 0.0), (1e-3, 1e-4), (3e-5, 1e-9), (U32, 2.0**-1022)])
def test_prompt_mixture_floor_formula(u, tiny):
    for head, x, P, X in _pmf_instances():
        got = tf.prompt_mixture_floor(head, x, P, X, u, tiny)
        assert got.shape == (D,)
        _close(got, _pmf_ref(head, x, P, X, u, tiny), 1e-12)
    head, x, P, X = _pmf_instances()[0]
    _close(tf.prompt_mixture_floor(head, x, P, X, u), _pmf_ref(head, x, P, X, u, 2.0**-1022), 1e-12)


def test_prompt_mixture_floor_clips_the_exponent_at_700():
    """l_X - l_P = 700.5 with a log-sum-exp error near 700 (many keys, large u): lam = 1/(1 + e^700) is visible."""
    one = np.ones((1, 1))
    head = tf.Head(one, one, one, one)
    n, u = 985, 5e-4
    P, X, x = np.zeros((1, n)), np.full((1, n), 700.5), np.ones(1)
    got = tf.prompt_mixture_floor(head, x, P, X, u, 0.0)
    want = _pmf_ref(head, x, P, X, u, 0.0)
    assert np.all(np.isfinite(want))
    _close(got, want, 1e-12)
    assert abs(_pmf_ref(head, x, P, X, u, 0.0, clip=700.5)[0] - want[0]) > 1e-4 * want[0]


def test_prompt_mixture_floor_terms_are_all_visible():
    """On the formula instances every term moves the floor by far more than the 1e-12 tolerance."""
    head, x, P, X = _pmf_instances()[0]
    u, tiny = 1e-3, 1e-4
    base = _pmf_ref(head, x, P, X, u, tiny)
    fmax = np.maximum(_arf_ref(head, x[:, None], P, u, tiny)[:, 0], _arf_ref(head, x[:, None], X, u, tiny)[:, 0])
    w = _wvm_ref(head, x[:, None], P)[:, 0] + _wvm_ref(head, x[:, None], X)[:, 0]
    dlam_w = base - fmax - 6 * u * w
    for part in (fmax, 6 * u * w, dlam_w - (3 * u + tiny) * w, (3 * u + tiny) * w):
        assert np.all(part > 1e-6 * base)


# ------------------------------------------------------------------------------------------------------------------
# rounding floors: sound against mpmath-measured float32 errors
# ------------------------------------------------------------------------------------------------------------------


def _sound_instances():
    lh, lxq, lxk, _ = _level_head()
    out = [(lh, lxq, lxk)]
    for seed, d, s, n, nq, scale in ((40, 3, 2, 6, 3, 1.0), (41, 2, 5, 9, 2, 2.5), (42, 4, 4, 3, 4, 0.6)):
        rng = np.random.default_rng(seed)
        out.append((_head(seed, d, s, scale), rng.normal(size=(d, nq)), rng.normal(size=(d, n))))
    return [(_f32head(h), np.asarray(q, np.float32), np.asarray(k, np.float32)) for h, q, k in out]


def test_attention_rounding_floor_is_sound_in_float32():
    ctx = _ctx(40)
    for head, Xq, Xk in _sound_instances():
        fl = tf.head_attention(head, Xq, Xk)
        assert fl.dtype == np.float32
        exact = _mp_head(head, Xq, Xk, ctx)
        err = np.array(
            [[abs(ctx.mpf(float(fl[r, q])) - exact[r, q]) for q in range(fl.shape[1])] for r in range(fl.shape[0])]
        )
        floor = tf.attention_rounding_floor(head, Xq, Xk, U32, TINY32)
        assert np.all(err <= floor)
        assert np.all(floor <= 1e-3 * tf.weighted_value_magnitude(head, Xq, Xk) + 1e-30)  # not vacuous


def test_prompt_mixture_floor_is_sound_in_float32():
    ctx = _ctx(40)
    for seed, m_p, m in ((50, 2, 5), (51, 6, 2), (52, 3, 3)):
        head, x, P, X = _mix_instance(seed, m_p, m, shift=0.4)
        head, x, P, X = _f32head(head), x.astype(np.float32), P.astype(np.float32), X.astype(np.float32)
        lam, aP, aX = tf.prompt_mixture(head, x, P, X)
        fl = (lam * aP + (1 - lam) * aX)[:, 0]
        assert fl.dtype == np.float32
        exact = _mp_head(head, x, np.hstack([P, X]), ctx)
        err = np.array([abs(ctx.mpf(float(fl[r])) - exact[r, 0]) for r in range(fl.shape[0])])
        floor = tf.prompt_mixture_floor(head, x[:, 0], P, X, U32, TINY32)
        assert np.all(err <= floor)
        w = tf.weighted_value_magnitude(head, x, P)[:, 0] + tf.weighted_value_magnitude(head, x, X)[:, 0]
        assert np.all(floor <= 1e-3 * w)


def test_attention_rounding_floor_underflowing_and_unbounded_columns():
    one = np.ones((1, 1))
    head = tf.Head(one, one, one, one)
    # a key 800 below the top: its float64 weight is 0, so only the tiny term covers it (finite, the reference's value)
    xk = np.array([[0.0, -800.0, 0.5]])
    got = tf.attention_rounding_floor(head, one, xk, 2.0**-53, 2.0**-1022)
    assert np.all(np.isfinite(got)) and got[0, 0] > 0
    _close(got, _arf_ref(head, one, xk, 2.0**-53, 2.0**-1022), 1e-12)
    _close(tf.attention_rounding_floor(head, one, xk, 2.0**-53, 0.0), _arf_ref(head, one, xk, 2.0**-53, 0.0), 1e-12)
    # a key 1e16 below: u |spread| and its logit's error (~3) exceed 1, yet its weight is 0 either way: still finite
    far = np.array([[0.0, -1e16, 0.5]])
    got = tf.attention_rounding_floor(head, one, far, 2.0**-53, 2.0**-1022)
    assert np.all(np.isfinite(got)), got
    assert _check_parts(head, one, far, 2.0**-53, 2.0**-1022).dead[1, 0]
    _close(got, _arf_ref(head, one, far, 2.0**-53, 2.0**-1022), 1e-12)
    assert np.all(np.isinf(tf.attention_rounding_floor(head, one, far, 2.0**-53, 0.0)))  # no tiny: no way to cover it
    # n u >= 1 (no relative bound on the n-term sum) and a 1e17 logit (its error alone exceeds 1): unbounded, never nan
    for u, keys in ((0.4, np.ones((1, 3))), (2.0**-53, np.array([[0.0, 1e17]]))):
        got = tf.attention_rounding_floor(head, one, keys, u, 2.0**-1022)
        assert np.all(np.isinf(got)) and np.all(np.isinf(_arf_ref(head, one, keys, u, 2.0**-1022)))
    # keys 3e16 .. 6e16 below the top: the dead-key criterion (errors + u spread < 30) flips across them
    status = []
    for far_key in (3e16, 4.5e16, 6e16):
        keys = np.array([[0.0, -far_key, 0.5]])
        for tn in (2.0**-1022, 0.0):
            sb = _check_parts(head, one, keys, 2.0**-53, tn)
            status.append((bool(sb.dead[1, 0]), bool(sb.ok[0, 0])))
    assert (True, True) in status and (False, False) in status, status
    # two query columns: the criterion and the live maxima are per column (a 1e-11 query makes the far key dead)
    sb = _check_parts(head, np.array([[1.0, 1e-11]]), np.array([[0.0, -4.5e16, 0.5, -3e16]]), 2.0**-53, 2.0**-1022)
    assert sb.dead[1, 1] and not sb.ok[0, 0] and sb.ok[0, 1]
    # the criterion uses each column's own largest logit error: the key at -1e17 makes column 0's ~33, which keeps
    # its 1e4-below key live there, while in column 1 (query 0.1: errors ~3) both far keys are dead
    sb = _check_parts(head, np.array([[1.0, 0.1]]), np.array([[0.0, -1e17, -1e4, 0.5]]), 2.0**-53, 2.0**-1022)
    assert sb.dead[1, 1] and sb.dead[2, 1] and not sb.dead[2, 0]
    # one column unbounded, the other finite: the columns are decided separately
    two = tf.attention_rounding_floor(head, np.array([[1.0, 1e-30]]), np.array([[0.0, 1e17]]), 2.0**-53, 2.0**-1022)
    assert np.isinf(two[0, 0]) and np.isfinite(two[0, 1])


def test_attention_rounding_floor_each_unbounded_condition_alone():
    """Each reason for an unbounded column, with the others satisfied: the n-term sum's gamma_{n-1} >= 1 (u = 0.01,
    102 keys), the normaliser's 2^-53 error b64 >= 1 with every per-weight a64 < 1 (logits 1.8e15 and 0.8e15), and
    the numerators' rounding tau_bar >= 1 (u = 0.22, 0.45 over two close keys)."""
    one = np.ones((1, 1))
    head = tf.Head(one, one, one, one)
    cases = (
        (0.01, np.linspace(0.0, 1.0, 102)[None, :], "g1"),  # gamma_101(0.01) = inf
        (0.01, np.linspace(0.0, 1.0, 56)[None, :], "g1"),  # gamma_55(0.01) = 1.22: in [1, 2)
        (2.0**-53, np.array([[1.8e15, 0.8e15]]), "b64"),
        (0.45, np.array([[0.0, -1.0]]), "tau"),
        (0.22, np.array([[0.0, -1.0]]), "tau"),  # tau_bar = 1.41: in [1, 2)
    )
    for u, keys, why in cases:
        sb = _check_parts(head, one, keys, u, 0.0)
        assert not sb.ok.any(), why
        assert np.all(np.isinf(tf.attention_rounding_floor(head, one, keys, u, 0.0))), why
        if why == "b64":
            assert np.max(sb.a64) < 1.0 <= sb.b64[0, 0] < 2.0
        else:
            assert np.max(sb.a64) < 1.0 and sb.b64[0, 0] < 1.0, why
    # the same keys one step inside each limit are bounded
    for u, keys in ((0.01, np.linspace(0.0, 1.0, 40)[None, :]), (2.0**-53, np.array([[1.2e15, 0.2e15]])),
                    (0.1, np.array([[0.0, -1.0]]))):
        assert _check_parts(head, one, keys, u, 0.0).ok.all()

