"""constructions.witness against independent arithmetic: the targets' formula, the dataset's layout and draws, the
certificate at 30 digits (defect, rounding down), the error maps (float and mpmath), the zero-mass prompt's
underflow and tightness, and the two-head counterexample that the theorem's h = 1 hypothesis excludes."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from constructions import witness as wt
from constructions.residual_mlp import affine_mlp
from constructions.transformer import MLP, Head, Layer, random_contractive_mlp
from tests.oracles import softmax_attention_ref


def _mlp(mlp, z):
    return z + mlp.W2 @ np.maximum(mlp.W1 @ z + mlp.b1, 0.0) + mlp.b2


def _layer(seed, d=3, kappa=0.5, heads=1, bias=0.4):
    rng = np.random.default_rng(seed)
    hs = tuple(Head(*(rng.normal(size=(d, d)) * 0.6 for _ in range(4))) for _ in range(heads))
    return Layer(hs, random_contractive_mlp(rng, d, 2 * d, kappa, bias_scale=bias)), rng


def _tight_layer(seed, d=3, kappa=0.5):
    """Single head, MLP z -> (1 - kappa) z on ||z|| <= 100 (affine_mlp: every ReLU active there)."""
    rng = np.random.default_rng(seed)
    head = Head(*(rng.normal(size=(d, d)) * 0.6 for _ in range(4)))
    return Layer((head,), affine_mlp(np.random.default_rng(seed + 1000), d, d, kappa, radius=100.0)), rng


def test_witness_targets_push_both_outward_by_alpha():
    c1, c2 = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    t1, t2 = wt.witness_targets(c1, c2, 0.25)
    np.testing.assert_array_equal(t1, [1.125, 2.75])  # c1 + (c1 - c2)/4, exact in binary
    np.testing.assert_array_equal(t2, [0.375, -1.75])
    assert np.linalg.norm(t1 - t2) == pytest.approx(1.5 * np.linalg.norm(c1 - c2), rel=1e-15, abs=0.0)


def test_witness_dataset_from_tokens_is_the_documented_recipe():
    layer, _ = _layer(1)
    head = layer.heads[0]
    x0, x1, x2 = np.array([0.3, -0.2, 0.5]), np.array([1.0, 0.4, -0.7]), np.array([-0.6, 0.9, 0.2])
    ds = wt.witness_dataset(layer, 0.7, tokens=(x0.tolist(), x1[:, None], x2))  # any shape, reshaped to d
    np.testing.assert_array_equal(ds.X1, np.stack([x1, x0], axis=1))
    np.testing.assert_array_equal(ds.X2, np.stack([x2, x0], axis=1))
    np.testing.assert_array_equal(ds.x0, x0)
    c1, c2 = softmax_attention_ref((head,), x0, ds.X1), softmax_attention_ref((head,), x0, ds.X2)
    np.testing.assert_allclose(ds.c1, c1, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ds.c2, c2, rtol=1e-13, atol=1e-15)
    D = float(np.linalg.norm(c1 - c2))
    assert ds.D == pytest.approx(D, rel=1e-12, abs=0.0) and ds.D > 0.05
    np.testing.assert_allclose(ds.t1, c1 + 0.7 * (c1 - c2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ds.t2, c2 + 0.7 * (c2 - c1), rtol=1e-12, atol=1e-15)
    y11 = _mlp(layer.mlp, x1 + softmax_attention_ref((head,), x1, ds.X1))
    y21 = _mlp(layer.mlp, x2 + softmax_attention_ref((head,), x2, ds.X2))
    np.testing.assert_allclose(ds.Y1, np.stack([y11, _mlp(layer.mlp, x0 + ds.t1)], axis=1), rtol=1e-12)
    np.testing.assert_allclose(ds.Y2, np.stack([y21, _mlp(layer.mlp, x0 + ds.t2)], axis=1), rtol=1e-12)
    assert ds.alpha == 0.7 and type(ds.alpha) is float
    kappa = float(np.linalg.norm(layer.mlp.W1, 2) * np.linalg.norm(layer.mlp.W2, 2))
    assert ds.kappa == pytest.approx(kappa, rel=1e-12, abs=0.0) and ds.kappa == pytest.approx(0.5, rel=1e-12, abs=0.0)
    assert ds.certificate == pytest.approx((1 - kappa) * 0.7 * D, rel=1e-12, abs=0.0)
    assert ds.attention_infimum == pytest.approx(0.7 * D, rel=1e-12, abs=0.0)
    # the ints alpha = 2 is stored as a float
    assert type(wt.witness_dataset(layer, 2, tokens=(x0, x1, x2)).alpha) is float


def test_witness_dataset_draws_three_tokens_of_the_given_spread():
    layer, _ = _layer(2)
    ds = wt.witness_dataset(layer, 1.0, np.random.default_rng(9), spread=2.5)
    r = np.random.default_rng(9)
    x0, x1, x2 = (2.5 * r.normal(size=3) for _ in range(3))
    np.testing.assert_array_equal(ds.X1, np.stack([x1, x0], axis=1))
    np.testing.assert_array_equal(ds.X2, np.stack([x2, x0], axis=1))
    ds1 = wt.witness_dataset(layer, 1.0, np.random.default_rng(9))  # spread defaults to 1
    r = np.random.default_rng(9)
    x0, x1, x2 = (r.normal(size=3) for _ in range(3))
    np.testing.assert_array_equal(ds1.X1, np.stack([x1, x0], axis=1))


def test_witness_dataset_reads_given_tokens_as_float64():
    layer, _ = _layer(1)
    toks = [np.array([0.3, -0.2, 0.5]), np.array([1.0, 0.4, -0.7]), np.array([-0.6, 0.9, 0.2])]
    ds32 = wt.witness_dataset(layer, 0.7, tokens=tuple(t.astype(np.float32) for t in toks))
    ds64 = wt.witness_dataset(layer, 0.7, tokens=tuple(t.astype(np.float32).astype(np.float64) for t in toks))
    assert ds32.X1.dtype == np.float64 and ds32.X2.dtype == np.float64
    for a, b in zip((ds32.X1, ds32.X2, ds32.Y1, ds32.Y2), (ds64.X1, ds64.X2, ds64.Y1, ds64.Y2), strict=True):
        np.testing.assert_array_equal(a, b)
    dsi = wt.witness_dataset(layer, 0.7, tokens=(np.array([1, 0, 0]), np.array([0, 1, 0]), np.array([0, 0, 1])))
    assert dsi.X1.dtype == np.float64


class _CountingRng:
    """normal() always returns the same vector (so c1 = c2 every try) and counts the calls."""

    def __init__(self):
        self.calls = 0

    def normal(self, size):
        self.calls += 1
        return np.ones(size)


def test_witness_dataset_retries_exactly_100_draws_then_fails():
    layer, _ = _layer(3)
    rng = _CountingRng()
    with pytest.raises(ValueError, match="100 tries"):
        wt.witness_dataset(layer, 1.0, rng)
    assert rng.calls == 300  # three tokens per try


def test_witness_dataset_gap_is_strict_and_named():
    layer, _ = _layer(4)
    toks = (np.array([0.3, -0.2, 0.5]), np.array([1.0, 0.4, -0.7]), np.array([-0.6, 0.9, 0.2]))
    D = wt.witness_dataset(layer, 1.0, tokens=toks).D
    with pytest.raises(ValueError, match="min_gap"):
        wt.witness_dataset(layer, 1.0, tokens=toks, min_gap=D)  # D <= min_gap: refused
    assert wt.witness_dataset(layer, 1.0, tokens=toks, min_gap=np.nextafter(D, 0)).D == D
    same = (toks[0], toks[1], toks[1])
    with pytest.raises(ValueError, match="c1 != c2"):
        wt.witness_dataset(layer, 1.0, tokens=same)
    # the default gap is 1e-6: a gap of 1e-7 between the two inputs' attention outputs is refused
    near = (toks[0], toks[1], toks[1] + 1e-7)
    with pytest.raises(ValueError, match="min_gap = 1e-06"):
        wt.witness_dataset(layer, 1.0, tokens=near)


def test_witness_dataset_hypotheses():
    two, rng = _layer(5, heads=2)
    with pytest.raises(ValueError, match="h = 1"):
        wt.witness_dataset(two, 1.0, rng)
    assert wt.witness_dataset(two, 1.0, rng, allow_multihead=True).D > 0
    one, rng = _layer(5)
    for alpha in (0.0, -0.5):
        with pytest.raises(ValueError, match="alpha > 0"):
            wt.witness_dataset(one, alpha, rng)
    assert wt.witness_dataset(one, 1e-300, rng).alpha == 1e-300
    loose, rng = _layer(5, kappa=1.0)
    with pytest.raises(ValueError, match="kappa"):
        wt.witness_dataset(loose, 1.0, rng)


def _cert_by_hand(layer, ds, dps):
    mp = mpmath.MPContext()
    mp.dps = dps
    M = lambda a: mp.matrix(np.asarray(a, dtype=np.float64).reshape(len(a), -1).tolist())  # noqa: E731

    def att(x, S):
        head = layer.heads[0]
        g = M(head.Wk).T * (M(head.Wq) * M(x))
        sc = [mp.fsum(S[r, k] * g[r] for r in range(S.shape[0])) for k in range(S.shape[1])]
        w = [mp.exp(s) for s in sc]
        v = M(np.zeros(S.shape[0]))
        for k in range(S.shape[1]):
            v += (w[k] / mp.fsum(w)) * M(S[:, k])
        return M(head.Wo) * (M(head.Wv) * v)

    def mlp(z):
        h = M(layer.mlp.W1) * z + M(layer.mlp.b1)
        return z + M(layer.mlp.W2) * mp.matrix([max(h[i], 0) for i in range(h.rows)]) + M(layer.mlp.b2)

    def sn(W):
        A = M(W)
        return mp.sqrt(max(mp.eigsy(A.T * A, eigvals_only=True)))

    c1, c2 = att(ds.x0, ds.X1), att(ds.x0, ds.X2)
    a = mp.mpf(ds.alpha)
    t1, t2 = c1 + a * (c1 - c2), c2 + a * (c2 - c1)
    x0 = M(ds.x0)
    defect = max(mp.norm(mlp(x0 + t1) - M(ds.Y1[:, -1])), mp.norm(mlp(x0 + t2) - M(ds.Y2[:, -1])))
    return (1 - sn(layer.mlp.W1) * sn(layer.mlp.W2)) * a * mp.norm(c1 - c2) - defect, defect, mp


def test_witness_certificate_lower_is_the_30_digit_certificate_rounded_down():
    layer, rng = _layer(6)
    ds = wt.witness_dataset(layer, 0.9, rng)
    cert, defect = wt.witness_certificate_lower(layer, ds)
    want, want_defect, mp = _cert_by_hand(layer, ds, 30)
    assert mp.mpf(cert) <= want and float(want) - cert <= 2 * abs(cert) * 2.0**-52, "rounded down, by <= 1 ulp"
    assert 0 < defect < 1e-14 and defect == pytest.approx(float(want_defect), rel=1e-6, abs=0.0)
    assert cert == pytest.approx(ds.certificate, rel=1e-12, abs=0.0)
    # a stored target moved by 1e-3 along e_0 is a defect of 1e-3: the certificate drops by it
    bent = wt.WitnessDataset(
        ds.X1,
        ds.X2,
        ds.Y1 + np.array([[0.0, 1e-3], [0.0, 0.0], [0.0, 0.0]]),
        ds.Y2,
        ds.c1,
        ds.c2,
        ds.t1,
        ds.t2,
        ds.alpha,
        ds.kappa,
        ds.D,
    )
    cb, db = wt.witness_certificate_lower(layer, bent)
    assert db == pytest.approx(1e-3, rel=1e-9, abs=0.0)
    assert cb == pytest.approx(cert - 1e-3, rel=1e-9, abs=0.0)
    wb, _, _ = _cert_by_hand(layer, bent, 30)
    assert mp.mpf(cb) <= wb
    # only the last column is read: a changed first column changes nothing
    shift = np.array([[5.0, 0.0]] * 3)
    first = wt.WitnessDataset(
        ds.X1, ds.X2, ds.Y1 + shift, ds.Y2 - shift, ds.c1, ds.c2, ds.t1, ds.t2, ds.alpha, ds.kappa, ds.D
    )
    assert wt.witness_certificate_lower(layer, first) == (cert, defect)


def test_witness_certificate_lower_keeps_an_exactly_representable_certificate():
    # G = 0 (W_q = 0): uniform weights, c_i = (x_i + x0)/2 and D = ||x1 - x2|| / 2 = 5; kappa = 0 (W_1 = W_2 = 0) and
    # dyadic tokens: the 30-digit certificate is (1 - 0) * 0.5 * 5 = 2.5 exactly, a float: no step down
    d = 3
    I3 = np.eye(d)
    layer = Layer(
        (Head(np.zeros((d, d)), I3, I3, I3),), MLP(np.zeros((6, d)), np.ones(6), np.zeros((d, 6)), np.ones(d))
    )
    ds = wt.witness_dataset(layer, 0.5, tokens=(np.array([0.5, 0.0, 1.0]), np.array([6.0, 8.0, 0.0]), np.zeros(d)))
    assert ds.D == 5.0 and ds.kappa == 0.0
    assert wt.witness_certificate_lower(layer, ds) == (2.5, 0.0)


def test_witness_certificate_lower_rounds_down_at_every_precision():
    hits = 0
    for seed in range(12):
        layer, rng = _layer(20 + seed)
        ds = wt.witness_dataset(layer, 0.6, rng)
        for dps in (20, 40):
            cert, _ = wt.witness_certificate_lower(layer, ds, dps=dps)
            want, _, mp = _cert_by_hand(layer, ds, dps)
            assert mp.mpf(cert) <= want, f"seed {seed}, dps {dps}: {cert} above the certificate {want}"
            hits += mp.mpf(float(want)) > want  # float(want) rounded up: the function had to step down
    assert hits > 0, "no instance exercised the step down"


def test_witness_certificate_lower_uses_the_given_digits():
    layer, rng = _layer(7)
    ds = wt.witness_dataset(layer, 0.9, rng)
    _, d30 = wt.witness_certificate_lower(layer, ds)
    _, d8 = wt.witness_certificate_lower(layer, ds, dps=8)
    assert d8 > 1e-10 > d30  # at 8 digits the recomputed targets differ from the float64 ones near 1e-8
    # 30 digits by default: the defect (a difference of float64 targets from their 30-digit values) is exact to
    # about 1e-14 relative, so its float differs between 30 and 31 digits on this instance
    assert wt.witness_certificate_lower(layer, ds) == wt.witness_certificate_lower(layer, ds, dps=30)
    assert wt.witness_certificate_lower(layer, ds, dps=31)[1] != d30


def test_witness_errors_float_mpmath_and_backend_arrays():
    layer, rng = _layer(8)
    ds = wt.witness_dataset(layer, 1.0, rng)
    P = rng.normal(size=(3, 2))
    e = wt.witness_errors(layer, ds, P)
    mp = mpmath.MPContext()
    mp.dps = 30
    em = wt.mp_witness_errors(mp, layer, ds, P)
    for i, (X, Y) in enumerate(((ds.X1, ds.Y1), (ds.X2, ds.Y2))):
        S = np.concatenate([P, X], axis=1)
        want = float(
            np.linalg.norm(_mlp(layer.mlp, S[:, -1] + softmax_attention_ref(layer.heads, S[:, -1], S)) - Y[:, -1])
        )
        assert e[i] == pytest.approx(want, rel=1e-12, abs=0.0)
        assert float(em[i]) == pytest.approx(want, rel=1e-12, abs=0.0)
        assert isinstance(em[i], mp.mpf)
    assert e[0] != pytest.approx(e[1], rel=1e-3, abs=0.0)
    # explicit arrays replace the dataset's: swapping the examples swaps the errors
    assert wt.witness_errors(layer, ds, P, X1=ds.X2, X2=ds.X1, Y1=ds.Y2, Y2=ds.Y1) == (e[1], e[0])
    assert wt.witness_errors(layer, ds, P, X2=ds.X1, Y2=ds.Y1) == (e[0], e[0])
    assert wt.witness_errors(layer, ds, P, X1=ds.X2, Y1=ds.Y2) == (e[1], e[1])
    assert all(type(v) is float for v in e)


def test_zero_mass_prompt_underflows_and_attains_the_certificate_on_the_tight_mlp():
    for seed in range(4):
        layer, rng = _tight_layer(30 + seed, kappa=0.3 + 0.15 * seed)
        ds = wt.witness_dataset(layer, 0.5 + seed, rng)
        P = wt.zero_mass_prompt(layer, ds)
        assert P.shape == (3, 1)
        head = layer.heads[0]
        g = np.asarray(head.Wk).T @ (np.asarray(head.Wq) @ ds.x0)
        low = min(float((ds.X1.T @ g).min()), float((ds.X2.T @ g).min()))
        assert float(P[:, 0] @ g) == pytest.approx(low - 800.0, rel=1e-12, abs=0.0), "800 below the lowest key"
        e = wt.witness_errors(layer, ds, P)
        assert max(e) == pytest.approx(ds.certificate, rel=1e-9, abs=0.0), f"seed {seed}: attains (1 - kappa) alpha D"
        assert min(e) == pytest.approx(ds.certificate, rel=1e-9, abs=0.0)  # both examples sit at the infimum
    # g = 0 (a zero query map): no token scores lower; the prompt is the zero token, not 0 * inf = nan
    layer, rng = _tight_layer(40)
    head = layer.heads[0]
    flat = Layer((Head(np.zeros((3, 3)), head.Wk, head.Wv, head.Wo),), layer.mlp)
    ds = wt.witness_dataset(flat, 1.0, tokens=(np.ones(3), np.array([1.0, 0, 0]), np.array([0, 0, 1.0])))
    np.testing.assert_array_equal(wt.zero_mass_prompt(flat, ds), np.zeros((3, 1)))


def test_zero_mass_prompt_rejects_two_heads():
    layer, rng = _layer(9, heads=2)
    ds = wt.witness_dataset(layer, 1.0, rng, allow_multihead=True)
    with pytest.raises(ValueError, match="h = 1"):
        wt.zero_mass_prompt(layer, ds)


@pytest.mark.parametrize("gamma", [20.0, 40.0])
def test_two_head_counterexample_memorizes_the_witness(gamma):
    layer, ds, P = wt.two_head_counterexample(np.random.default_rng(11), gamma, 0.5, 1.0)
    assert len(layer.heads) == 2 and P.shape == (4, 2)
    np.testing.assert_array_equal(ds.x0, np.eye(4)[0])
    np.testing.assert_array_equal(ds.X1[:, 0], [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(ds.X2[:, 0], [1.0, -1.0, 0.0, 0.0])
    np.testing.assert_array_equal(P[[1, 2]], [[0.75, -0.75], [-0.25, -0.25]])
    assert ds.kappa == pytest.approx(0.5, rel=1e-12, abs=0.0) and ds.alpha == 1.0
    for sgn, h in zip((1.0, -1.0), layer.heads, strict=True):
        G = np.asarray(h.Wk).T @ np.asarray(h.Wq)
        np.testing.assert_array_equal(G[:, 0], gamma * np.array([0.0, sgn, 1.0, 0.0]))
        assert np.all(np.asarray(h.Wo)[[1, 2]] == 0), "values write only coordinates 0 and 3"
    e = wt.witness_errors(layer, ds, P)
    assert max(e) <= 10 * math.exp(-gamma / 2) * ds.D, f"errors {e} not O(e^-gamma/2)"
    assert max(e) < 1e-3 * ds.certificate  # far below what a single head must leave
    assert max(wt.witness_errors(layer, ds, np.zeros((4, 2)))) > 0.1 * ds.certificate
