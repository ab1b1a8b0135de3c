"""The activations zeta_1..zeta_5 of Yun et al. 2020's construction as used by Wang et al. 2023 (wang2023.md §3.2),
hard (exact piecewise-linear, the hardmax network) and soft (ramps placed where the hardmax network's lattice values
never fall), their <= 4-ReLU realisations (Yun Lemma 9) and one residual construction layer as a transformer.MLP.
Re-exported by constructions.deep_universality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from constructions.transformer import MLP


@dataclass(frozen=True)
class SoftParams:
    """Softmax inverse temperature and the quantizer ramp width (None: hardmax and exact zetas)."""

    lam: float | None = None
    eta_q: float = 0.0

    @property
    def hard(self) -> bool:
        return self.lam is None


def soft_params(lam: float | None, eta_q: float = 0.0) -> SoftParams:
    if lam is not None and not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"softmax inverse temperature lam must be > 0, got {lam}")
    if not (0.0 <= eta_q):
        raise ValueError(f"ramp width eta_q must be >= 0, got {eta_q}")
    return SoftParams(lam, float(eta_q))


def zeta1(t, n, J, eta=0.0):
    """-t - J for t < 0 or t >= n, else 0; soft: ramps on (-eta, 0) and (n - eta, n)."""
    out = np.where((t < 0) | (t >= n), -t - J, 0.0)
    if eta > 0:
        left = (t > -eta) & (t < 0)
        out = np.where(left, t * (J - eta) / eta, out)
        right = (t > n - eta) & (t < n)
        out = np.where(right, -(t - (n - eta)) * (n + J) / eta, out)
    return out


def zeta2(t, delta, eta=0.0):
    """-t on [0, delta), else 0; soft: linear from -(delta - eta) to 0 on (delta - eta, delta)."""
    out = np.where((t >= 0) & (t < delta), -t, 0.0)
    if eta > 0:
        ramp = (t > delta - eta) & (t < delta)
        out = np.where(ramp, -(delta - eta) * (delta - t) / eta, out)
    return out


def zeta3(t, t_l, t_r, delta, soft=False):
    """1 outside [t_l, t_r], 0 inside; soft: 0 on [t_l - delta/2, t_r + delta/2], ramps of width delta/2 outside."""
    if not soft:
        return np.where((t < t_l) | (t > t_r), 1.0, 0.0)
    lo = np.clip((t_l - delta / 2 - t) / (delta / 2), 0.0, 1.0)
    hi = np.clip((t - t_r - delta / 2) / (delta / 2), 0.0, 1.0)
    return lo + hi


def zeta4(t):
    return np.maximum(-t, 0.0)


def zeta5(t, delta, soft=False):
    """1 on [-delta/2, delta/2), else 0; soft: 1 on [-delta/4, delta/4], 0 outside (-delta/2, delta/2)."""
    if not soft:
        return np.where((t >= -delta / 2) & (t < delta / 2), 1.0, 0.0)
    return np.clip((delta / 2 - np.abs(t)) / (delta / 4), 0.0, 1.0)


def relu_form(kind: str, **kw):
    """(alphas, betas, weights, bias) with zeta(t) = sum_i w_i ReLU(alpha_i t + beta_i) + bias: <= 4 ReLUs.

    The ReLU realisation of each soft zeta (Yun Lemma 9's 4-ReLU replacement); agrees with the piecewise form.
    """
    if kind == "zeta1":
        n, J, e = kw["n"], kw["J"], kw["eta"]
        return ([-1.0, -1.0, 1.0, 1.0], [0.0, -e, -(n - e), -n], [1 - J / e, J / e, -(n + J) / e, (n + J) / e - 1], 0.0)
    if kind == "zeta2":
        dl, e = kw["delta"], kw["eta"]
        return ([1.0, 1.0, 1.0], [0.0, -(dl - e), -dl], [-1.0, dl / e, -(dl - e) / e], 0.0)
    if kind == "zeta3":
        tl, tr, dl = kw["t_l"], kw["t_r"], kw["delta"]
        h = dl / 2
        return (
            [-1 / h, -1 / h, 1 / h, 1 / h],
            [(tl - dl / 2) / h, (tl - dl) / h, -(tr + dl / 2) / h, -(tr + dl) / h],
            [1.0, -1.0, 1.0, -1.0],
            0.0,
        )
    if kind == "zeta4":
        return ([-1.0], [0.0], [1.0], 0.0)
    if kind == "zeta5":
        dl = kw["delta"]
        h = dl / 4
        return ([1 / h] * 4, [dl / 2 / h, dl / 4 / h, -dl / 4 / h, -dl / 2 / h], [1.0, -1.0, -1.0, 1.0], 0.0)
    raise ValueError(f"unknown activation {kind!r}")


def relu_eval(form, t):
    a, b, w, c = form
    return sum(wi * np.maximum(ai * t + bi, 0.0) for ai, bi, wi in zip(a, b, w, strict=True)) + c


def ff_layer_mlp(a_in, shift: float, v_out, form) -> MLP:
    """The residual MLP x -> x + v zeta(a^T x - shift) of one construction FF layer (transformer.MLP)."""
    al, be, w = (np.asarray(x, dtype=np.float64) for x in form[:3])
    c = float(form[3])
    a_in = np.asarray(a_in, dtype=np.float64)
    v_out = np.asarray(v_out, dtype=np.float64)
    W1 = al[:, None] * a_in[None, :]
    b1 = be - al * shift
    W2 = v_out[:, None] * w[None, :]
    b2 = v_out * c
    return MLP(W1, b1, W2, b2)
