"""The prompt adversary: the best prompt a quasi-Newton search finds for a frozen single-head layer.

Lower-bound claims (no prompt beats the certificate) are only as strong as the prompts they try; this builds the
strongest cheap ones: BFGS on f(P) = (sum_i ||e_i||^(2 power))^(1/power), e_i = tau([P, X_i])_last - y_i, with the
analytic gradient of the layer (numpy float64). power = 1 is the summed squared error, power > 1 a smooth max.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from constructions.single_layer import score_vector, single_head, value_matrix
from constructions.transformer import Layer


def prompt_objective(layer: Layer, examples, power: int = 1):
    """f(flat P) -> (value, gradient) over examples (X_i, y_i) scored at X_i's last column [D].

    Forward: S = [P, X], w = softmax(S^T g), o = M S w, e = x + o + W_2 ReLU(W_1 (x + o) + b_1) + b_2 - y.
    Backward: gam = J^T de (J = I + W_2 diag(h > 0) W_1); dP = M^T gam w_P^T + g (w_P * (M P - o)^T gam).
    """
    head = single_head(layer)
    M = value_matrix(head)
    W1, b1, W2, b2 = (np.asarray(a, dtype=np.float64) for a in (layer.mlp.W1, layer.mlp.b1, layer.mlp.W2, layer.mlp.b2))
    examples = [(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)) for X, y in examples]
    gs = [score_vector(head, X[:, -1]) for X, _ in examples]
    d = M.shape[0]

    def f(flat):
        P = flat.reshape(d, -1)
        mp = P.shape[1]
        parts = []
        for (X, y), g in zip(examples, gs, strict=True):
            S = np.concatenate([P, X], axis=1)
            s = S.T @ g
            w = np.exp(s - s.max())
            w /= w.sum()
            o = M @ (S @ w)
            h = W1 @ (X[:, -1] + o) + b1
            e = X[:, -1] + o + W2 @ np.maximum(h, 0.0) + b2 - y
            parts.append((g, w, o, h, e))
        sq = np.array([p[4] @ p[4] for p in parts])
        tot = float((sq**power).sum())
        if tot == 0.0:
            return 0.0, np.zeros_like(flat)
        val = tot ** (1.0 / power)
        grad = np.zeros((d, mp))
        for (g, w, o, h, e), q in zip(parts, sq, strict=True):
            dfde = val / tot * q ** (power - 1) * 2.0 * e
            gam = dfde + W1.T @ ((h > 0) * (W2.T @ dfde))  # J^T dfde, J = I + W2 diag(h > 0) W1
            wP = w[:mp]
            grad += np.outer(M.T @ gam, wP) + np.outer(g, wP * ((M @ P - o[:, None]).T @ gam))
        return val, grad.ravel()

    return f


def optimise_prompt(fun, P0, maxiter: int) -> np.ndarray:
    """BFGS on the flattened prompt from P0 with the analytic gradient; P0 itself if the search breaks down.

    scipy's dense BFGS: at these sizes as strong as L-BFGS-B, and it avoids that routine's BLAS calls, which stall
    for seconds on a loaded multi-threaded OpenBLAS.
    """
    d = P0.shape[0]
    try:
        x = minimize(fun, P0.ravel(), jac=True, method="BFGS", options={"maxiter": maxiter}).x
    except (FloatingPointError, ValueError, OverflowError):
        return P0
    return x.reshape(d, -1) if np.all(np.isfinite(x)) else P0


def best_prompt(layer: Layer, examples, starts, *, power: int = 4, maxiter: int = 60) -> list:
    """The prompts BFGS reaches from each start (the adversary's candidates, in the order of the starts)."""
    f = prompt_objective(layer, examples, power=power)
    return [optimise_prompt(f, np.asarray(P0, dtype=np.float64), maxiter) for P0 in starts]
