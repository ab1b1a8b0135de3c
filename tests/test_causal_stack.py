"""constructions.causal_stack against independent arithmetic: the Schur bound of the causal attention map (exact
diagonal instances, finite-difference Jacobians), the certificate's radius recursion (hand evaluation, actual token
norms), the layer-wise inversion (forward truth, first steps), and the rounding bounds' documented formulas."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from constructions import causal_stack as cs
from constructions.precision import gamma
from constructions.residual_mlp import inverse_iterations, mlp_eval_rounding, mlp_kappa
from constructions.single_layer import attention_rounding, mlp_rounding
from constructions.transformer import MLP, Head, Layer, prompt_tuned, random_contractive_mlp
from tests.oracles import softmax_attention_ref

# ---------------------------------------------------------------------------------------------
# helpers: an attention written out by hand, diagonal heads with exact norms


def _causal_map(heads, P, X):
    """X -> [Att(x_j, [P, x_1..x_j])]_j, flattened column-major."""
    cols = [
        softmax_attention_ref(heads, X[:, j], np.concatenate([P, X[:, : j + 1]], axis=1)) for j in range(X.shape[1])
    ]
    return np.concatenate(cols)


def _fd_jacobian_norm(heads, P, X, h=1e-6):
    d, m = X.shape
    J = np.zeros((d * m, d * m))
    for c in range(d * m):
        E = np.zeros(d * m)
        E[c] = h
        Ep = E.reshape(m, d).T
        J[:, c] = (_causal_map(heads, P, X + Ep) - _causal_map(heads, P, X - Ep)) / (2 * h)
    return float(np.linalg.svd(J, compute_uv=False)[0])


def _diag_head(q, k, v, o):
    return Head(
        np.diag(np.asarray(q, float)),
        np.diag(np.asarray(k, float)),
        np.diag(np.asarray(v, float)),
        np.diag(np.asarray(o, float)),
    )


def _lip_exact(params, R, m):
    """The documented sum_h ||M|| sqrt((alpha + beta)(m alpha + beta)), alpha = 1 + 2R^2||G||, beta = 4R^2||G||,
    with ||M||, ||G|| the largest |o_i v_i|, |k_i q_i| of diagonal heads, in exact rationals up to the sqrt."""
    R = Fraction(R)
    total = 0.0
    for q, k, v, o in params:
        G = max(abs(Fraction(a) * Fraction(b)) for a, b in zip(k, q, strict=True))
        M = max(abs(Fraction(a) * Fraction(b)) for a, b in zip(o, v, strict=True))
        al, be = 1 + 2 * R * R * G, 4 * R * R * G
        total += float(M) * math.sqrt(float((al + be) * (m * al + be)))
    return total


def _zero_mlp(d):
    return MLP(np.zeros((d, d)), np.zeros(d), np.zeros((d, d)), np.zeros(d))


def _ball(rng, d, n, radius):
    Z = rng.normal(size=(d, n))
    return Z / np.linalg.norm(Z, axis=0, keepdims=True) * rng.uniform(0.3 * radius, radius, (1, n))


def _sv1(A):
    return float(np.linalg.svd(np.asarray(A, dtype=np.float64), compute_uv=False)[0])


# ---------------------------------------------------------------------------------------------
# causal_attention_lipschitz


_HEADS = [
    ((0.5, -0.25, 0.75), (0.5, 1.0, -0.5), (0.25, 0.5, -1.0), (1.0, 0.5, 0.25)),
    ((1.5, 0.125, -0.5), (-0.25, 2.0, 1.0), (0.75, -0.5, 0.5), (0.5, 1.0, 2.0)),
]


@pytest.mark.parametrize("R, m", [(0.7, 3), (1.3, 2), (0.4, 5)])
def test_causal_attention_lipschitz_is_its_documented_formula(R, m):
    heads = [_diag_head(*p) for p in _HEADS]
    got = cs.causal_attention_lipschitz(heads, R, m)
    assert got == pytest.approx(_lip_exact(_HEADS, R, m), rel=1e-12, abs=0.0), (
        "sum_h ||M|| sqrt(row * col) (Schur test)"
    )
    one = cs.causal_attention_lipschitz(heads[1:], R, m)
    assert one == pytest.approx(_lip_exact(_HEADS[1:], R, m), rel=1e-12, abs=0.0)
    assert got == pytest.approx(one + _lip_exact(_HEADS[:1], R, m), rel=1e-12, abs=0.0), "summed over heads"
    h32 = [Head(*(np.asarray(w, dtype=np.float32) for w in (h.Wq, h.Wk, h.Wv, h.Wo))) for h in heads]
    assert cs.causal_attention_lipschitz(h32, R, m) == got  # dyadic weights: float32 is exact


def test_causal_attention_lipschitz_bounds_the_numerical_jacobian_and_is_tight_without_scores():
    rng = np.random.default_rng(0)
    d = 3
    worst = math.inf
    for trial in range(6):
        Wq, Wk, Wv, Wo = (rng.normal(size=(d, d)) for _ in range(4))
        sg = 0.6 if trial % 2 else 2.0
        head = Head(Wq * sg / _sv1(Wk.T @ Wq) ** 0.5, Wk * sg / _sv1(Wk.T @ Wq) ** 0.5, Wv, Wo)
        m, mp = 1 + trial % 3, trial % 2
        R = 1.0
        P, X = _ball(rng, d, mp, R), _ball(rng, d, m, R)
        true = _fd_jacobian_norm([head], P, X)
        bound = cs.causal_attention_lipschitz([head], R, m)
        assert true <= bound * (1 + 1e-7), f"Schur bound {bound} below the Jacobian norm {true} (trial {trial})"
        worst = min(worst, bound / true)
    assert worst >= 1.0
    # m = 1, no prompt: Att(x, [x]) = M x, Jacobian M exactly; G -> 0 makes the bound ||M||(1 + 6R^2 G) -> ||M||
    for G in (1e-4, 1e-3):
        Wq, Wk, Wv, Wo = (rng.normal(size=(d, d)) for _ in range(4))
        c = (G / _sv1(Wk.T @ Wq)) ** 0.5
        head = Head(Wq * c, Wk * c, Wv, Wo)
        X = _ball(rng, d, 1, 1.0)
        true = _fd_jacobian_norm([head], np.zeros((d, 0)), X)
        bound = cs.causal_attention_lipschitz([head], 1.0, 1)
        assert true == pytest.approx(_sv1(Wo @ Wv), rel=1e-7, abs=0.0)
        assert 1.0 <= bound / true <= 1.0 + 6.0 * G + 1e-7, f"nearly attained at G = {G}: ratio {bound / true}"


# ---------------------------------------------------------------------------------------------
# causal_certificate


def _stack(rng, d, L, kap, heads_per_layer=2, M=0.05, G=1e-3):
    layers = []
    for _ in range(L):
        heads = []
        for _ in range(heads_per_layer):
            Wq, Wk, Wv, Wo = (rng.normal(size=(d, d)) for _ in range(4))
            cM, cG = (M / _sv1(Wo @ Wv)) ** 0.5, (G / _sv1(Wk.T @ Wq)) ** 0.5
            heads.append(Head(Wq * cG, Wk * cG, Wv * cM, Wo * cM))
        layers.append(Layer(tuple(heads), random_contractive_mlp(rng, d, 2 * d, kap, bias_scale=0.3), causal=True))
    return layers


def _cert_by_hand(layers, cap, rin, m):
    """The documented recursion: R = max(RX, RP); RX <- (1+k)(RX + ||M|| R) + ||MLP(0)||,
    RP <- (1+k)(RP + ||M|| RP) + ||MLP(0)||; a = sum_h ||M_h|| sqrt((al+be)(m al+be))."""
    RX, RP = rin, cap
    a_s, k_s, radii = [], [], []
    for ly in layers:
        W1, b1, W2, b2 = ly.mlp.W1, ly.mlp.b1, ly.mlp.W2, ly.mlp.b2
        k = _sv1(W1) * _sv1(W2)
        R = max(RX, RP)
        a = 0.0
        Mn = 0.0
        for h in ly.heads:
            Mh, Gh = _sv1(h.Wo @ h.Wv), _sv1(h.Wk.T @ h.Wq)
            al, be = 1 + 2 * R * R * Gh, 4 * R * R * Gh
            a += Mh * math.sqrt((al + be) * (m * al + be))
            Mn += Mh
        hid = [max(float(b1[i]), 0.0) for i in range(len(b1))]
        m0 = math.sqrt(sum((sum(W2[o, i] * hid[i] for i in range(len(hid))) + b2[o]) ** 2 for o in range(len(b2))))
        a_s.append(a)
        k_s.append(k)
        radii.append(R)
        RX, RP = (1 + k) * (RX + Mn * R) + m0, (1 + k) * (RP + Mn * RP) + m0
    return a_s, k_s, radii


@pytest.mark.parametrize("cap, rin", [(0.4, 1.0), (1.2, 0.3)])  # the X radius dominates / the prompt's dominates
def test_causal_certificate_recursion_by_hand_and_radii_bound_actual_token_norms(cap, rin):
    rng = np.random.default_rng(3)
    d, m, L = 3, 3, 3
    layers = _stack(rng, d, L, 0.4)
    cert = cs.causal_certificate(layers, cap, rin, m)
    a_s, k_s, radii = _cert_by_hand(layers, cap, rin, m)
    assert isinstance(cert.radius, tuple) and len(cert.radius) == L
    np.testing.assert_allclose(cert.radius, radii, rtol=1e-12, err_msg="radius recursion")
    np.testing.assert_allclose(cert.a, a_s, rtol=1e-12, err_msg="a_l at the layer's radius")
    np.testing.assert_allclose(cert.kappa, k_s, rtol=1e-12)
    assert cert.Lambda == pytest.approx(
        math.prod((1 - a) * (1 - k) for a, k in zip(a_s, k_s, strict=True)), rel=1e-12, abs=0.0
    )
    worst = 0.0
    for _ in range(20):
        P, X = _ball(rng, d, 2, cap), _ball(rng, d, m, rin)
        Z = np.concatenate([P, X], axis=1)
        for li, ly in enumerate(layers):
            nmax = float(np.linalg.norm(Z, axis=0).max())
            assert nmax <= cert.radius[li] * (1 + 1e-12), f"layer {li} input token norm {nmax} > {cert.radius[li]}"
            worst = max(worst, nmax / cert.radius[li])
            Z = ly(Z)
    assert worst > 0.3  # the radii are not vacuous


def test_causal_certificate_rejects_a_equal_to_one_and_between_one_and_two():
    d = 2
    for o, a in ((0.5, 1.0), (0.75, 1.5)):  # G = 0: a = ||M|| sqrt(m) = o * 2 at m = 4, exactly
        head = Head(np.zeros((d, d)), np.eye(d), np.eye(d), o * np.eye(d))
        layer = Layer((head,), _zero_mlp(d), causal=True)
        assert cs.causal_attention_lipschitz((head,), 1.0, 4) == a
        with pytest.raises(ValueError, match=r"Lip\(A_l\) <= a_l < 1 violated at layer 0"):
            cs.causal_certificate([layer], 1.0, 1.0, 4)
    head = Head(np.zeros((d, d)), np.eye(d), np.eye(d), 0.25 * np.eye(d))
    cert = cs.causal_certificate([Layer((head,), _zero_mlp(d), causal=True)], 1.0, 2.0, 4)
    assert cert.a == (0.5,) and cert.kappa == (0.0,) and cert.radius == (2.0,)


# ---------------------------------------------------------------------------------------------
# causal_prompt_states, causal_inverse


def test_causal_prompt_states_are_float64_layer_by_layer():
    rng = np.random.default_rng(4)
    layers = _stack(rng, 3, 2, 0.3)
    for P in (np.arange(6).reshape(3, 2) % 2, rng.normal(size=(3, 2)).astype(np.float32)):
        st = cs.causal_prompt_states(layers, P)
        assert len(st) == 3 and all(s.dtype == np.float64 for s in st), "numpy float64 states"
        Z = np.asarray(P, dtype=np.float64)
        assert np.array_equal(st[0], Z)
        for li, ly in enumerate(layers):
            Z = ly(Z)
            assert np.array_equal(st[li + 1], Z)


def _forward_states(layers, P, X):
    """Per layer: the true X part of its input X^l and of X^l + A_l(X^l), from the bidirectional-free forward."""
    Z = np.concatenate([P, X], axis=1)
    mp = P.shape[1]
    Xs, Zs = [], []
    for ly in layers:
        Xs.append(Z[:, mp:].copy())
        Zs.append(
            np.stack(
                [
                    Z[:, mp + j] + softmax_attention_ref(ly.heads, Z[:, mp + j], Z[:, : mp + j + 1])
                    for j in range(X.shape[1])
                ],
                axis=1,
            )
        )
        Z = ly(Z)
    return Xs, Zs, Z[:, mp:]


def test_causal_inverse_recovers_each_layer_in_forward_order():
    rng = np.random.default_rng(5)
    d, m, L = 3, 3, 3
    layers = _stack(rng, d, L, 0.5, M=0.1, G=0.005)
    P, X = _ball(rng, d, 2, 1.0), _ball(rng, d, m, 1.0)
    cert = cs.causal_certificate(layers, 1.0, 1.0, m)
    Xs, Zs, Y = _forward_states(layers, P, X)
    rates = (0.3, 0.05, 0.6)  # distinct step counts per layer
    inv = cs.causal_inverse(layers, P, Y, rates=rates)
    assert inv.iterations == tuple(inverse_iterations(r) for r in rates)
    assert np.abs(inv.X - X).max() <= 1e-12
    Ps = cs.causal_prompt_states(layers, P)
    for li in range(L):
        assert np.abs(inv.Xs[li] - Xs[li]).max() <= 1e-12, f"Xs[{li}] is layer {li}'s input"
        assert np.abs(inv.Zs[li] - Zs[li]).max() <= 1e-12, f"Zs[{li}] is MLP_{li}^-1 of layer {li}'s output"
        s1 = [
            float(
                np.linalg.norm(
                    softmax_attention_ref(
                        layers[li].heads,
                        inv.Zs[li][:, j],
                        np.concatenate([Ps[li], inv.Xs[li][:, :j], inv.Zs[li][:, j : j + 1]], axis=1),
                    )
                )
            )
            for j in range(m)
        ]  # x_1 = z - Att(z, ...) from x_0 = z: the first step is ||Att(z, [P^l, x_<j, z])||
        np.testing.assert_allclose(inv.att_step1[li], s1, rtol=1e-10, err_msg=f"first steps of layer {li}")
    inv_d = cs.causal_inverse(layers, P, Y)
    assert inv_d.iterations == (200,) * L, "max_iter defaults to 200 without rates"
    assert cs.causal_inverse(layers, P, Y, rates=None, max_iter=7).iterations == (7,) * L
    assert np.abs(inv_d.X - X).max() <= 1e-12
    assert min(cert.a) > 0


def test_causal_inverse_stops_only_on_a_zero_step():
    # G = 0 (uniform weights), prompt 0, M = I, MLP = id: x + (0 + x)/2 = z; from x = z = (2, 0) the first step
    # x_1 = z - z/2 has length exactly 1; the fixed point is 2z/3
    d = 2
    head = Head(np.zeros((d, d)), np.eye(d), np.eye(d), np.eye(d))
    layer = Layer((head,), _zero_mlp(d), causal=True)
    inv = cs.causal_inverse([layer], np.zeros((d, 1)), np.array([[2.0], [0.0]]))
    assert inv.att_step1[0][0] == 1.0
    np.testing.assert_allclose(inv.X[:, 0], [4.0 / 3.0, 0.0], atol=1e-14, err_msg="continued past a unit step")


def test_causal_inverse_of_the_empty_stack_is_the_float64_input():
    Y = np.random.default_rng(6).normal(size=(3, 2)).astype(np.float32)
    inv = cs.causal_inverse([], np.zeros((3, 1)), Y)
    assert inv.X.dtype == np.float64 and np.array_equal(inv.X, Y.astype(np.float64))
    assert inv.Zs == inv.Xs == inv.att_step1 == inv.iterations == ()


# ---------------------------------------------------------------------------------------------
# causal_layer_rounding, causal_inverse_bound


def _layer_rounding_by_hand(layer, P, X, u):
    S = np.concatenate([P, X], axis=1)
    mp = P.shape[1]
    E = []
    for j in range(S.shape[1]):
        keys = np.stack([S[:, k] for k in range(j + 1)], axis=1)  # causal: keys 0..j
        o, Eo = attention_rounding(layer, S[:, j], keys, u)
        z = S[:, j] + o
        _, Ej = mlp_rounding(layer.mlp, z, Eo + u * np.abs(z), u)
        E.append(math.sqrt(sum(float(e) ** 2 for e in Ej)))
    return math.sqrt(sum(e * e for e in E[mp:])), math.sqrt(sum(e * e for e in E[:mp]))


@pytest.mark.parametrize("u", [2.0**-53, 2.0**-24])
def test_causal_layer_rounding_is_its_documented_formula(u):
    rng = np.random.default_rng(7)
    layer = _stack(rng, 3, 1, 0.5, M=0.3, G=0.5)[0]
    P, X = _ball(rng, 3, 2, 1.0), _ball(rng, 3, 3, 1.0)
    ex, ep = cs.causal_layer_rounding(layer, P, X, u)
    wx, wp = _layer_rounding_by_hand(layer, P, X, u)
    assert ex == pytest.approx(wx, rel=1e-12, abs=0.0) and ep == pytest.approx(wp, rel=1e-12, abs=0.0)
    assert ex != pytest.approx(ep, rel=1e-3, abs=0.0)  # X and prompt columns are told apart
    f32 = cs.causal_layer_rounding(layer, P.astype(np.float32), X.astype(np.float32), u)
    r64 = cs.causal_layer_rounding(
        layer, P.astype(np.float32).astype(np.float64), X.astype(np.float32).astype(np.float64), u
    )
    assert f32 == r64


def test_causal_layer_rounding_bounds_a_float32_forward():
    rng = np.random.default_rng(8)
    d = 3
    for trial in range(4):
        ly = _stack(rng, d, 1, 0.6, M=0.5, G=1.0)[0]
        r32 = [
            Head(*(np.asarray(w, np.float32).astype(np.float64) for w in (h.Wq, h.Wk, h.Wv, h.Wo))) for h in ly.heads
        ]
        mlp = MLP(*(np.asarray(w, np.float32).astype(np.float64) for w in (ly.mlp.W1, ly.mlp.b1, ly.mlp.W2, ly.mlp.b2)))
        layer = Layer(tuple(r32), mlp, causal=True)
        P, X = (_ball(rng, d, n, 2.0).astype(np.float32).astype(np.float64) for n in (2, 3))
        ex, ep = cs.causal_layer_rounding(layer, P, X, 2.0**-24)
        l32 = Layer(
            tuple(Head(*(w.astype(np.float32) for w in (h.Wq, h.Wk, h.Wv, h.Wo))) for h in r32),
            MLP(*(w.astype(np.float32) for w in (mlp.W1, mlp.b1, mlp.W2, mlp.b2))),
            causal=True,
        )
        S = np.concatenate([P, X], axis=1)
        err = np.linalg.norm(l32(S.astype(np.float32)).astype(np.float64) - layer(S), axis=0)
        assert float(np.linalg.norm(err[2:])) <= ex, f"X columns, trial {trial}"
        assert float(np.linalg.norm(err[:2])) <= ep, f"prompt columns, trial {trial}"


def _inverse_bound_by_hand(layers, P, Y, inv, cert, u):
    """The docstring's recursion, column by column with explicit sums."""
    Ps = cs.causal_prompt_states(layers, P)
    L = len(layers)
    dP = [0.0]
    for li, ly in enumerate(layers):
        eP = _layer_rounding_by_hand(ly, Ps[li], np.zeros((Ps[li].shape[0], 0)), u)[1]
        dP.append((1 + cert.kappa[li]) * (1 + cert.a[li]) * dP[li] + eP)
    nrm = lambda v: math.sqrt(sum(float(t) ** 2 for t in v))  # noqa: E731
    delta = 0.0
    for li in reversed(range(L)):
        ly, a = layers[li], cert.a[li]
        r, d = np.asarray(ly.mlp.W1).shape
        kap = mlp_kappa(ly.mlp) * (1 + 8 * (r + d) * u)
        Yl = np.asarray(Y, dtype=np.float64) if li == L - 1 else inv.Xs[li + 1]
        Z, Xr = inv.Zs[li], inv.Xs[li]
        ET = mlp_eval_rounding(ly.mlp, Z, u)
        F = ly.mlp.residual_part(Yl)
        E_Z, eps = [], []
        for j in range(Z.shape[1]):
            rho_T = nrm(ET[:, j] + u * np.abs(Yl[:, j]))
            E_Z.append((rho_T + kap ** inverse_iterations(kap) * nrm(F[:, j])) / (1 - kap))
            keys = np.concatenate([Ps[li], Xr[:, : j + 1]], axis=1)
            o, Eo = attention_rounding(ly, Xr[:, j], keys, u)
            rho_A = nrm(Eo + u * (np.abs(Z[:, j]) + np.abs(o)))
            eps.append((a ** inv.iterations[li] * inv.att_step1[li][j] + rho_A) / (1 - a))
        eta = (nrm(E_Z) + (1 + a) * nrm(eps)) / (1 - a)
        rho = _layer_rounding_by_hand(ly, Ps[li], Xr, u)[0]
        delta = (delta + rho + 2 * (1 + kap) * a * dP[li]) / ((1 - a) * (1 - kap)) + eta
    return delta * (1 + gamma(2 * np.asarray(Y).size + 2, u))


def _inverse_instance(seed, kap=0.6, m=3, L=3, rates=True, steps=None):
    rng = np.random.default_rng(seed)
    d = 3
    layers = _stack(rng, d, L, kap, M=0.12, G=1e-3)
    P, X = _ball(rng, d, 2, 1.0), _ball(rng, d, m, 1.0)
    cert = cs.causal_certificate(layers, 1.0, 1.0, m)
    Y = prompt_tuned(layers, P, X)
    if steps is not None:
        inv = cs.causal_inverse(layers, P, Y, max_iter=steps)
    else:
        inv = cs.causal_inverse(layers, P, Y, rates=cert.a if rates else None)
    return layers, P, X, Y, inv, cert


@pytest.mark.parametrize("u", [1.1e-16, 3.3e-8])  # not powers of 2: u |Y| rounds in float32
def test_causal_inverse_bound_is_its_documented_formula(u):
    layers, P, X, Y, inv, cert = _inverse_instance(9, steps=6)  # few steps: the a^N step_1 term is visible
    assert min(cert.a) > 0.1 and len(set(cert.a)) == 3
    got = cs.causal_inverse_bound(layers, P, Y, inv, cert, u)
    assert got == pytest.approx(_inverse_bound_by_hand(layers, P, Y, inv, cert, u), rel=1e-12, abs=0.0)
    assert cs.causal_inverse_bound(
        layers, P, Y.astype(np.float32).astype(np.float64), inv, cert, u
    ) == cs.causal_inverse_bound(layers, P, Y.astype(np.float32), inv, cert, u), "float32 Y read as float64"
    layers, P, X, Y, inv, cert = _inverse_instance(10, kap=0.9, L=2)  # kappa near 1: the SVD inflation shows
    got = cs.causal_inverse_bound(layers, P, Y, inv, cert, u)
    assert got == pytest.approx(_inverse_bound_by_hand(layers, P, Y, inv, cert, u), rel=1e-12, abs=0.0)


@pytest.mark.parametrize("seed, kap", [(11, 0.3), (12, 0.8), (13, 0.95)])
def test_causal_inverse_bound_is_sound_against_the_true_input(seed, kap):
    layers, P, X, Y, inv, cert = _inverse_instance(seed, kap=kap)
    err = float(np.linalg.norm(inv.X - X))
    bound = cs.causal_inverse_bound(layers, P, Y, inv, cert, 2.0**-53)
    assert err <= bound, f"inversion error {err} above the derived bound {bound}"
    assert bound * cert.Lambda < 1e-12  # rounding-level once the certified amplification 1/Lambda is taken out
    layers, P, X, Y, inv, cert = _inverse_instance(seed, kap=kap, steps=3)  # stopped early: the bound grows
    err = float(np.linalg.norm(inv.X - X))
    bound = cs.causal_inverse_bound(layers, P, Y, inv, cert, 2.0**-53)
    assert err <= bound and err > 1e-12, f"early-stopped error {err} vs bound {bound}"


# ---------------------------------------------------------------------------------------------
# random_causal_stack


@pytest.mark.parametrize("kind", ["contract", "random", None])
def test_random_causal_stack_scales_and_mlps(kind):
    d, L, kappa, att, sc, radius = 3, 3, 0.4, 0.07, 0.02, 0.8
    args = (np.random.default_rng(14), d, L, kappa, att, sc, radius)
    layers = cs.random_causal_stack(*args) if kind is None else cs.random_causal_stack(*args, mlp_kind=kind)
    rng = np.random.default_rng(14)  # the same draws, replayed: four d x d normals per head, then the MLP
    R = radius
    for li, ly in enumerate(layers):
        assert ly.causal and len(ly.heads) == 1
        h = ly.heads[0]
        assert _sv1(h.Wo @ h.Wv) == pytest.approx(att, rel=1e-12, abs=0.0), "||W_o W_v|| = att_scale"
        assert _sv1(h.Wk.T @ h.Wq) == pytest.approx(sc, rel=1e-12, abs=0.0), "||W_k^T W_q|| = score_scale"
        assert mlp_kappa(ly.mlp) == pytest.approx(kappa, rel=1e-12, abs=0.0)
        Wq, Wk, Wv, Wo = (rng.normal(size=(d, d)) for _ in range(4))
        cM, cG = math.sqrt(att / _sv1(Wo @ Wv)), math.sqrt(sc / _sv1(Wk.T @ Wq))
        for w, want in zip((h.Wq, h.Wk, h.Wv, h.Wo), (Wq * cG, Wk * cG, Wv * cM, Wo * cM), strict=True):
            np.testing.assert_allclose(w, want, rtol=1e-14)
        if kind == "random":
            r = 2 * d
            W1, W2 = rng.normal(size=(r, d)), rng.normal(size=(d, r))
            c = math.sqrt(kappa / (_sv1(W1) * _sv1(W2)))
            b1, b2 = rng.normal(scale=0.3, size=r), rng.normal(scale=0.3, size=d)
            for w, want in zip((ly.mlp.W1, ly.mlp.b1, ly.mlp.W2, ly.mlp.b2), (W1 * c, b1, W2 * c, b2), strict=True):
                np.testing.assert_allclose(w, want, rtol=1e-14)
        else:
            # affine_mlp(d, d, kappa, sign=-1, radius=4R): (1 - kappa) z on ||z|| <= 4R, R the recursion below
            Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
            np.testing.assert_allclose(ly.mlp.W2 @ ly.mlp.W1, -kappa * np.eye(d), atol=1e-14)
            np.testing.assert_allclose(ly.mlp.W1, math.sqrt(kappa) * Q, rtol=1e-14)
            np.testing.assert_allclose(ly.mlp.b1, np.full(d, math.sqrt(kappa) * 4 * R + 1.0), rtol=1e-14)
            z = np.random.default_rng(100 + li).normal(size=(d, 4))  # not from rng: the stack's draws stay in step
            z *= 4 * R / np.linalg.norm(z, axis=0)
            np.testing.assert_allclose(ly.mlp(z), (1 - kappa) * z, atol=1e-12, err_msg=f"affine on the ball, {li}")
        R = (1 + kappa) * R * (1 + att) + 1.0
