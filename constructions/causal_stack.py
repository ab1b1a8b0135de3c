"""Causal prompt-tuned stacks are injective (Wang et al. 2023 Thm 5 [R]; wang2023.md §2.4, §3.5 [D]).

With causal masking the prompt's states never see X, and layer l maps X^l -> MLP_l(X^l + A_l(X^l)). If
Lip(A_l) <= a_l < 1 and Lip(MLP_l - id) <= kappa_l < 1, X -> g_P(X) is injective with lower-Lipschitz constant

    Lambda = prod_l (1 - a_l)(1 - kappa_l),  so X1 != X2, Y1 = Y2  =>  max_i ||g_P(X_i) - Y|| >= Lambda ||X1 - X2|| / 2

for every prompt within the norm cap the a_l are certified over; X is recovered layer by layer by fixed points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from constructions.precision import gamma
from constructions.residual_mlp import (
    affine_mlp,
    inverse_iterations,
    mlp_apply,
    mlp_eval_rounding,
    mlp_inverse,
    mlp_kappa,
    require_contractive,
)
from constructions.single_layer import attend_all, attention_rounding, heads_of, mlp_rounding, value_matrix
from constructions.transformer import Head, Layer, random_contractive_mlp, spectral_norm


@dataclass(frozen=True)
class CausalCertificate:
    """Lambda = prod_l (1 - a_l)(1 - kappa_l) with a_l a certified Lipschitz bound of the causal attention map."""

    a: tuple
    kappa: tuple
    radius: tuple  # token-norm bound on each layer's input (X part and prompt states)

    @property
    def Lambda(self) -> float:
        out = 1.0
        for a, k in zip(self.a, self.kappa, strict=True):
            out *= (1.0 - a) * (1.0 - k)
        return out


def causal_attention_lipschitz(heads, R: float, m: int) -> float:
    """Lipschitz bound (Frobenius) of X -> [Att(x_j, [P, x_1..x_j])]_j when all keys have norm <= R [D].

    Block (j, k) of the Jacobian is w_jk M (I + (z_k - mu_j)(G x_j)^T) plus, for k = j, M Cov_w G: norms
    <= w_jk ||M|| (1 + 2 R^2 ||G||) + [k = j] 4 R^2 ||M|| ||G||. Rows sum to <= ||M||(alpha + beta), columns to
    <= ||M||(m alpha + beta); the Schur test gives ||J|| <= sqrt(row * col). Summed over heads.
    """
    total = 0.0
    for h in heads:
        M = spectral_norm(value_matrix(h))
        G = spectral_norm(np.asarray(h.Wk, dtype=np.float64).T @ np.asarray(h.Wq, dtype=np.float64))
        al = 1.0 + 2.0 * R * R * G
        be = 4.0 * R * R * G
        total += M * math.sqrt((al + be) * (m * al + be))
    return total


def causal_certificate(layers, prompt_cap: float, input_radius: float, m: int) -> CausalCertificate:
    """Radii, a_l and kappa_l for a causal stack, uniform over prompts with token norms <= prompt_cap.

    Each layer: ||x + Att|| <= R + ||M|| R_keys, ||MLP(z)|| <= (1 + kappa)||z|| + ||MLP(0)||. ValueError when a
    layer violates the hypotheses (kappa_l < 1, a_l < 1, causal masking).
    """
    a_s, k_s, radii = [], [], []
    RX, RP = float(input_radius), float(prompt_cap)
    for li, layer in enumerate(layers):
        if not layer.causal:
            raise ValueError(f"hypothesis causal masking violated at layer {li}: prompt states would depend on X")
        kappa = require_contractive(layer.mlp)
        R = max(RX, RP)
        a = causal_attention_lipschitz(heads_of(layer), R, m)
        if not a < 1.0:
            raise ValueError(f"hypothesis Lip(A_l) <= a_l < 1 violated at layer {li}: certified a_l = {a:.4g}")
        a_s.append(a)
        k_s.append(kappa)
        radii.append(R)
        Mn = sum(spectral_norm(value_matrix(h)) for h in heads_of(layer))
        m0 = float(np.linalg.norm(mlp_apply(layer.mlp, np.zeros(np.asarray(layer.mlp.W1).shape[1]))))
        RX = (1.0 + kappa) * (RX + Mn * R) + m0
        RP = (1.0 + kappa) * (RP + Mn * RP) + m0  # prompt tokens attend to prompt tokens only
    return CausalCertificate(tuple(a_s), tuple(k_s), tuple(radii))


def causal_prompt_states(layers, P) -> list:
    """[P^0, P^1, ..., P^L]: with causal masking the prompt's states never see X."""
    states = [np.asarray(P, dtype=np.float64)]
    for layer in layers:
        states.append(layer(states[-1]))
    return states


@dataclass(frozen=True)
class CausalInversion:
    """The recovered input and, per layer (forward order), what the inversion computed: Zs[l] = MLP_l^-1 of the
    layer's output, Xs[l] the recovered layer input, att_step1[l] the first fixed-point step of each column."""

    X: np.ndarray
    Zs: tuple
    Xs: tuple
    att_step1: tuple
    iterations: tuple


def causal_inverse(layers, P, Y, rates=None, max_iter: int = 200) -> CausalInversion:
    """Recover X from Y = g_P(X) = tau_L(...tau_1([P, X]))_{:, m_p:} layer by layer [D].

    Per layer: Z = MLP^-1(Y) (mlp_inverse), then for j = 1..m solve x_j + Att(x_j, [P^l, x_<j, x_j]) = z_j by the
    fixed point x_j <- z_j - Att(...), a contraction with rate <= a_l < 1: inverse_iterations(a_l) steps when the
    certified rates a_l are given (else max_iter), stopping early only on a zero step (no stagnation stop: it
    leaves errors far above rounding when the rate is near 1).
    """
    Ps = causal_prompt_states(layers, P)
    Xc = np.asarray(Y, dtype=np.float64)
    Zs, Xs, steps1, its = [], [], [], []
    for li in range(len(layers) - 1, -1, -1):
        layer, Pl = layers[li], Ps[li]
        n_it = max_iter if rates is None else inverse_iterations(rates[li])
        Z, _ = mlp_inverse(layer.mlp, Xc)
        X = np.zeros_like(Z)
        s1 = np.zeros(Z.shape[1])
        for j in range(Z.shape[1]):
            x = Z[:, j].copy()
            for it in range(n_it):
                S = np.concatenate([Pl, X[:, :j], x[:, None]], axis=1)
                xn = Z[:, j] - attend_all(layer, x, S)
                step = float(np.linalg.norm(xn - x))
                if it == 0:
                    s1[j] = step
                x = xn
                if step == 0.0:
                    break
            X[:, j] = x
        Zs.append(Z)
        Xs.append(X)
        steps1.append(s1)
        its.append(n_it)
        Xc = X
    return CausalInversion(Xc, tuple(Zs[::-1]), tuple(Xs[::-1]), tuple(steps1[::-1]), tuple(its[::-1]))


def causal_layer_rounding(layer: Layer, P, X, u: float) -> tuple[float, float]:
    """(||E_X||_F, ||E_P||_F): rounding bounds of one causal layer's float forward on [P, X], over the X columns
    and over the prompt columns: per column j, attention_rounding over keys 0..j and mlp_rounding."""
    S = np.concatenate([np.asarray(P, dtype=np.float64), np.asarray(X, dtype=np.float64)], axis=1)
    mp = np.asarray(P).shape[1]
    E = np.zeros(S.shape[1])
    for j in range(S.shape[1]):
        o, Eo = attention_rounding(layer, S[:, j], S[:, : j + 1], u)
        z = S[:, j] + o
        _, Ej = mlp_rounding(layer.mlp, z, Eo + u * np.abs(z), u)
        E[j] = np.linalg.norm(Ej)
    return float(np.linalg.norm(E[mp:])), float(np.linalg.norm(E[:mp]))


def causal_inverse_bound(layers, P, Y, inv: CausalInversion, cert: CausalCertificate, u: float) -> float:
    """A bound on ||X~ - X||_F for X~ = causal_inverse(fl(g_P(X))) [D], derived from the inputs layer by layer.

    delta_L = 0; delta_l = (delta_{l+1} + rho_l + 2 (1 + kappa_l) a_l dP_l) / Lambda_l + eta_l, Lambda_l =
    (1 - a_l)(1 - kappa_l): rho_l the forward's rounding (causal_layer_rounding), dP_l the prompt states' rounding
    (forward and inverse may round them differently), eta_l the inversion's own error: the MLP fixed point
    (rho_T + kappa^N ||F(Y)||)/(1 - kappa) per column and the columns' fixed points (a^N step_1 + rho_A)/(1 - a),
    turned into an error of the layer's inverse by the residual argument ||R|| / (1 - a), R <= (1 + a) eps.
    """
    Ps = causal_prompt_states(layers, P)
    L = len(layers)
    dP = [0.0]
    for li, layer in enumerate(layers):
        _, eP = causal_layer_rounding(layer, Ps[li], np.zeros((Ps[li].shape[0], 0)), u)
        dP.append((1 + cert.kappa[li]) * (1 + cert.a[li]) * dP[-1] + eP)
    delta = 0.0
    for li in range(L - 1, -1, -1):
        layer, a = layers[li], cert.a[li]
        W1 = np.asarray(layer.mlp.W1)
        kap = mlp_kappa(layer.mlp) * (1.0 + 8.0 * sum(W1.shape) * u)  # the SVD's error in kappa, upward
        Yl = np.asarray(Y, dtype=np.float64) if li == L - 1 else inv.Xs[li + 1]
        Z, Xr = inv.Zs[li], inv.Xs[li]
        rho_T = np.linalg.norm(mlp_eval_rounding(layer.mlp, Z, u) + u * np.abs(Yl), axis=0)
        step1 = np.linalg.norm(layer.mlp.residual_part(Yl), axis=0)
        E_Z = (rho_T + kap ** inverse_iterations(kap) * step1) / (1.0 - kap)
        eps = np.zeros(Z.shape[1])
        for j in range(Z.shape[1]):
            S = np.concatenate([Ps[li], Xr[:, : j + 1]], axis=1)
            o, Eo = attention_rounding(layer, Xr[:, j], S, u)
            rho_A = float(np.linalg.norm(Eo + u * (np.abs(Z[:, j]) + np.abs(o))))
            eps[j] = (a ** inv.iterations[li] * inv.att_step1[li][j] + rho_A) / (1.0 - a)
        eta = (float(np.linalg.norm(E_Z)) + (1.0 + a) * float(np.linalg.norm(eps))) / (1.0 - a)
        rho, _ = causal_layer_rounding(layer, Ps[li], Xr, u)
        delta = (delta + rho + 2.0 * (1.0 + kap) * a * dP[li]) / ((1.0 - a) * (1.0 - kap)) + eta
    return delta * (1.0 + gamma(2 * np.asarray(Y).size + 2, u))  # the Frobenius norm of the computed difference


def random_causal_stack(
    rng: np.random.Generator,
    d: int,
    L: int,
    kappa: float,
    att_scale: float,
    score_scale: float,
    radius: float,
    mlp_kind: str = "contract",
) -> list:
    """L causal single-head layers with ||W_o W_v|| = att_scale, ||W_k^T W_q|| = score_scale, MLP kappa."""
    layers = []
    R = radius
    for _ in range(L):
        Wq, Wk, Wv, Wo = (rng.normal(size=(d, d)) for _ in range(4))
        cM = math.sqrt(att_scale / spectral_norm(Wo @ Wv))
        cG = math.sqrt(score_scale / spectral_norm(Wk.T @ Wq))
        head = Head(Wq * cG, Wk * cG, Wv * cM, Wo * cM)
        if mlp_kind == "contract":
            mlp = affine_mlp(rng, d, d, kappa, sign=-1.0, radius=4 * R)
        else:
            mlp = random_contractive_mlp(rng, d, 2 * d, kappa, bias_scale=0.3)
        layers.append(Layer((head,), mlp, causal=True))
        R = (1 + kappa) * R * (1 + att_scale) + 1.0
    return layers
