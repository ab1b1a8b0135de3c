"""Polynomial attention on a prompt-tuned sequence: APTI by AS23 on Z = [P, X] (Hu et al. 2024 §1.4; columns = tokens).

B_P, B_X: max entries of the prompt-/input-induced queries and keys, B = max(B_P, B_X); beta: a-priori logit half-width.
"""

from __future__ import annotations

from dataclasses import dataclass

from array_api_compat import array_namespace

from constructions.fast_attention import (
    DEFAULT_MEMORY_BUDGET,
    AttentionCertificate,
    polynomial_attention,
    score_halfwidth,
    validate_inputs,
)


@dataclass(frozen=True)
class PromptNorms:
    """B_P, B_X: max entries of prompt-/input-induced queries and keys; B = max(B_P, B_X); beta: logit half-width."""

    B_P: float
    B_X: float
    B: float
    beta: float


def prompt_norms(head, P, X, *, scale: float = 1.0) -> PromptNorms:
    """Entry bounds of W_Q Z and W_K Z split by prompt/input columns, and the a-priori logit half-width."""
    xp = array_namespace(P, X)

    def entry(Wz):
        return float(xp.max(xp.abs(Wz))) if Wz.shape[1] else 0.0

    qp, kp = xp.matmul(head.Wq, P), xp.matmul(head.Wk, P)
    qx, kx = xp.matmul(head.Wq, X), xp.matmul(head.Wk, X)
    B_P = max(entry(qp), entry(kp))
    B_X = max(entry(qx), entry(kx))
    Q = xp.matrix_transpose(xp.concat([qp, qx], axis=1))
    K = xp.matrix_transpose(xp.concat([kp, kx], axis=1))
    return PromptNorms(B_P, B_X, max(B_P, B_X), score_halfwidth(Q, K, scale))


@dataclass(frozen=True)
class PromptAttention:
    output: object  # d x (L_p + L): W_O W_V Z D̃^-1 Ã-columns, all query columns of Z
    certificate: AttentionCertificate
    norms: PromptNorms


def prompt_polynomial_attention(head, P, X, *, eps: float, scale: float = 1.0, kind: str = "chebyshev",
                                chunk: int | None = None,
                                memory_budget: int = DEFAULT_MEMORY_BUDGET) -> PromptAttention:
    """APTI(d, L, L_p, B, delta_F) by AS23 on Z = [P, X]: output columns j = sum_i softmax_i(scale k_i . q_j) v_i.

    Matches transformer.head_attention(head, Z, Z) when scale = 1 (Hu et al. put no scale inside exp).
    """
    xp = array_namespace(P, X)
    if len(P.shape) != 2 or len(X.shape) != 2 or P.shape[0] != X.shape[0]:
        raise ValueError(f"P and X must be d x L_p and d x L with the same d, got {tuple(P.shape)}, {tuple(X.shape)}")
    Z = xp.concat([P, X], axis=1)
    Q = xp.matrix_transpose(xp.matmul(head.Wq, Z))
    K = xp.matrix_transpose(xp.matmul(head.Wk, Z))
    V = xp.matrix_transpose(xp.matmul(head.Wo, xp.matmul(head.Wv, Z)))
    validate_inputs(Q, K, V, eps, scale)
    norms = prompt_norms(head, P, X, scale=scale)
    out, cert = polynomial_attention(Q, K, V, eps=eps, scale=scale, chunk=chunk, beta=norms.beta, kind=kind,
                                     memory_budget=memory_budget)
    return PromptAttention(xp.matrix_transpose(out), cert, norms)
