"""Reference arithmetic for the tests, written out independently of constructions/ (explicit loops, no shared
code with the functions under test): one copy each, imported by the test files that check against it."""

from __future__ import annotations

import math

import numpy as np


def gamma_ref(n, u):
    """gamma_n = n u / (1 - n u) (Higham Thm 3.1); inf once n u >= 1."""
    return math.inf if n * u >= 1 else n * u / (1 - n * u)


def softmax_attention_ref(heads, x, S):
    """sum_h W_o W_v S softmax(S^T W_k^T W_q x) for one query x, with explicit loops over the keys."""
    S = np.asarray(S, dtype=np.float64)
    out = np.zeros(S.shape[0])
    for h in heads:
        g = np.asarray(h.Wk, dtype=np.float64).T @ (np.asarray(h.Wq, dtype=np.float64) @ x)
        sc = [float(S[:, k] @ g) for k in range(S.shape[1])]
        mx = max(sc)
        w = [math.exp(s - mx) for s in sc]
        tot = sum(w)
        v = sum((w[k] / tot) * S[:, k] for k in range(S.shape[1]))
        out = out + np.asarray(h.Wo, dtype=np.float64) @ (np.asarray(h.Wv, dtype=np.float64) @ v)
    return out
