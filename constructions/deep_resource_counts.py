"""Resource counts of Wang et al. 2023's deep construction (wang2023.md §2.1 table, §3.2) and its prompt-length
counting bound, computed without building anything (exact ints below 10^18, else '~10^x').
Re-exported by constructions.deep_universality.
"""

from __future__ import annotations

import math

from constructions.memorization import counting_lower_bound, log_prompt_count, log_table_count, prompt_length


def _big(log10_x: float, exact=None):
    """An exact int when below 10^18, else '~10^x' (like constructions.universality.resource_counts)."""
    if exact is not None and log10_x < 18:
        return int(exact)
    return f"~10^{log10_x:.4g}"


def _bigbig(log10_log10_x: float) -> str:
    return f"~10^(10^{log10_log10_x:.4g})"


def resource_counts(d: int, m: int, K: int) -> dict:
    """Layer, width and prompt counts of the exact hardmax construction (wang2023.md §2.1 table, §3.2).

    n = m_p + m with m_p = m K^{dm}; attention n K^d + 1 (2 heads of size 1); FFN d n K + d (quantization)
    + 1 + d (cleanup) + m K^{dn} (value map), 4 hidden ReLUs each in the softmax/ReLU version; digits = decimal
    digits of the largest contextual id t_r = n^2 K^{2(n+1)d+1} + n K^{(n+1)d} in units of delta/2.
    Counts above 10^18 come back as strings '~10^x' (or '~10^(10^y)' when doubly exponential).
    """
    if int(d) != d or d < 1 or int(m) != m or m < 1 or int(K) != K or K < 2:
        raise ValueError(f"need positive integers d, m and K >= 2, got d={d}, m={m}, K={K}")
    lk = math.log10(K)
    log_mp = math.log10(m) + d * m * lk
    exact = log_mp < 15
    m_p = m * K ** (d * m) if exact else None
    n = m_p + m if exact else None
    log_n = math.log10(n) if exact else log_mp
    out = {"K": K, "delta": 1.0 / K, "heads": 2, "head_size": 1, "ffn_width": 4, "token_dim": d + 1,
           "cleanup_ffn_layers": 1 + d}
    out["L_p"] = m_p if exact else _big(log_mp)
    out["n"] = n if exact else _big(log_n)
    out["attention_layers"] = n * K**d + 1 if exact else _big(log_n + d * lk)
    out["quantization_ffn_layers"] = d * n * K + d if exact else _big(math.log10(d) + log_n + lk)
    if log_n < 300:
        nf = 10**log_n
        log_vm = math.log10(m) + d * nf * lk
        out["log10_value_map_ffn_layers"] = log_vm
        vm = m * K ** (d * n) if exact and log_vm < 18 else None
        out["value_map_ffn_layers"] = _big(log_vm, vm)
        out["ffn_layers"] = (
            out["quantization_ffn_layers"] + out["cleanup_ffn_layers"] + vm if vm is not None else _big(log_vm)
        )
        log_tr = 2 * log_n + (2 * (nf + 1) * d + 1) * lk + math.log10(2 * K)
        digits = math.ceil(log_tr) + 1
        out["digits"] = digits if digits < 10**15 else _big(math.log10(digits))
    else:
        ll = log_n + math.log10(d * lk)
        out["log10_value_map_ffn_layers"] = math.inf
        out["value_map_ffn_layers"] = out["ffn_layers"] = _bigbig(ll)
        out["digits"] = _big(ll + math.log10(2))
    return out


def counting_check(d: int, m: int, K: int, m_p: int | None = None) -> tuple[float, float]:
    """(log C, log #grid prompts of length m_p): C = (K^{dm})^{K^{dm}} quantized functions (wang2023.md §2.1).

    m_p defaults to the table length m K^{dm}, where both are equal (the counting bound is tight).
    """
    m_p = prompt_length(d, m, K) if m_p is None else int(m_p)
    return log_table_count(d, m, K), log_prompt_count(d, m_p, K)


def counting_bound_mp(d: int, m: int, K: int) -> float:
    """m_p >= m delta^{-dm} (same-grid prompts): memorization.counting_lower_bound with K_out = K_P = K."""
    return counting_lower_bound(d, m, K)
