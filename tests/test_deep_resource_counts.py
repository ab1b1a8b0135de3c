"""constructions.deep_resource_counts against exact integer arithmetic: every key, every branch.

The claim wang23.universality.resource_counts compares the counts with built networks, which exist only for the
smallest sizes; here the same formulas (wang2023.md §2.1 table, §3.2) are evaluated with Python ints, and the
'~10^x' strings of the large branches are compared with log10 of the exact counts to their 4 significant digits.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from constructions import deep_resource_counts as rc


def _exact(d, m, K, value_map=True):
    m_p = m * K ** (d * m)
    n = m_p + m
    out = {"L_p": m_p, "n": n, "attention_layers": n * K**d + 1, "quantization_ffn_layers": d * n * K + d}
    if value_map:
        out["value_map_ffn_layers"] = m * K ** (d * n)
    return out


def _log10_int(x: int) -> float:
    s = str(x)
    head = s[:17]
    return len(s) - 1 + math.log10(int(head) / 10 ** (len(head) - 1))


def _tr_units(d, n, K) -> int:
    """t_r = n^2 K^{2(n+1)d+1} + n K^{(n+1)d} in units of delta/2."""
    return 2 * K * (n * n * K ** (2 * (n + 1) * d + 1) + n * K ** ((n + 1) * d))


def _parse(s: str) -> float:
    assert s.startswith("~10^") and "(" not in s, s
    return float(s[4:])


def _close4(s: str, exact_log10: float) -> None:
    assert abs(_parse(s) - exact_log10) <= 5e-4 * max(1.0, abs(exact_log10)), (s, exact_log10)


@pytest.mark.parametrize("size", [(1, 1, 2), (2, 1, 2), (1, 2, 2), (1, 1, 5), (1, 1, 6), (1, 2, 3), (3, 1, 2)])
def test_exact_branch_every_key(size):
    d, m, K = size
    r = rc.resource_counts(d, m, K)
    ex = _exact(d, m, K)
    for k, v in ex.items():
        assert r[k] == v and isinstance(r[k], int), (k, r[k], v)
    assert r["K"] == K and r["delta"] == 1.0 / K
    assert (r["heads"], r["head_size"], r["ffn_width"], r["token_dim"], r["cleanup_ffn_layers"]) == (2, 1, 4, d + 1,
                                                                                                      1 + d)
    assert r["ffn_layers"] == ex["quantization_ffn_layers"] + 1 + d + ex["value_map_ffn_layers"]
    assert abs(r["log10_value_map_ffn_layers"] - _log10_int(ex["value_map_ffn_layers"])) < 1e-9
    digits = len(str(_tr_units(d, ex["n"], K)))
    assert digits <= r["digits"] <= digits + 1, (r["digits"], digits)


def test_value_map_above_10_18_is_a_string_while_the_prompt_is_exact():
    d, m, K = 2, 2, 3  # m_p = 162 exact; value map 2 * 3^328
    r = rc.resource_counts(d, m, K)
    ex = _exact(d, m, K)
    assert r["L_p"] == 162 and r["n"] == 164 and r["attention_layers"] == ex["attention_layers"]
    _close4(r["value_map_ffn_layers"], _log10_int(ex["value_map_ffn_layers"]))
    assert r["ffn_layers"] == r["value_map_ffn_layers"]  # the value map dominates the sum at 4 digits
    digits = len(str(_tr_units(d, 164, K)))
    assert digits <= r["digits"] <= digits + 1


def test_huge_prompt_branch_strings_match_exact_logs():
    d, m, K = 1, 1, 10**16  # L_p = 10^16 >= 10^15: nothing is exact
    r = rc.resource_counts(d, m, K)
    ex = _exact(d, m, K, value_map=False)
    for k in ("L_p", "n", "attention_layers", "quantization_ffn_layers"):
        _close4(r[k], _log10_int(ex[k]))
    n = ex["n"]
    log_vm = float(Fraction(d * n) * 16)  # log10(m K^{dn}) with log10 K = 16
    assert abs(r["log10_value_map_ffn_layers"] - log_vm) <= 1e-12 * log_vm
    _close4(r["value_map_ffn_layers"], log_vm)
    _close4(r["ffn_layers"], log_vm)
    log_tr = 2 * math.log10(n) + (2 * (n + 1) * d + 1) * 16 + math.log10(2 * K)
    _close4(r["digits"], math.log10(log_tr))  # digits ~ log10 t_r, itself ~10^17.5


def test_doubly_exponential_branch():
    d, m, K = 2, 1, 10**150  # log10 n = 300: the value map has ~10^(10^302.8) layers
    r = rc.resource_counts(d, m, K)
    log_n = math.log10(m) + d * m * 150
    ll = log_n + math.log10(d * 150)  # log10 log10 (m K^{dn}) = log10(d n log10 K)
    assert r["log10_value_map_ffn_layers"] == math.inf
    assert r["value_map_ffn_layers"] == r["ffn_layers"] == f"~10^(10^{ll:.4g})"
    _close4(r["digits"], ll + math.log10(2))
    _close4(r["L_p"], log_n)
    _close4(r["attention_layers"], log_n + d * 150)
    _close4(r["quantization_ffn_layers"], math.log10(d) + log_n + 150)


def test_big_keeps_exact_ints_below_10_18_only():
    assert rc._big(17.99, 5) == 5 and isinstance(rc._big(17.99, 5.0), int)
    assert rc._big(18.0, 5) == "~10^18" and rc._big(3.0) == "~10^3" and rc._big(123.456789) == "~10^123.5"
    assert rc._bigbig(302.47712) == "~10^(10^302.5)"


@pytest.mark.parametrize("args", [(0, 1, 2), (1.5, 1, 2), (1, 0, 2), (1, 1.5, 2), (1, 1, 1), (1, 1, 2.5)])
def test_bad_sizes_are_refused(args):
    with pytest.raises(ValueError, match="positive integers"):
        rc.resource_counts(*args)


@pytest.mark.parametrize("d, m, K", [(1, 1, 2), (2, 1, 3), (1, 2, 4)])
def test_counting_check_and_bound(d, m, K):
    m_p = m * K ** (d * m)
    logC, logP = rc.counting_check(d, m, K)
    assert logC == pytest.approx(d * m * K ** (d * m) * math.log(K), rel=1e-15)
    assert logP == pytest.approx(d * m_p * math.log(K), rel=1e-15) and logC == pytest.approx(logP, rel=1e-15)
    assert rc.counting_check(d, m, K, m_p - 1)[1] == pytest.approx(d * (m_p - 1) * math.log(K), rel=1e-15)
    assert rc.counting_check(d, m, K, m_p - 1)[0] == logC
    assert rc.counting_bound_mp(d, m, K) == pytest.approx(m_p, rel=1e-15)


def test_branch_thresholds_sit_where_documented():
    """L_p exact below 10^15 only; the value map exact below 10^18 only; digits exact below 10^15 only."""
    assert isinstance(rc.resource_counts(1, 1, 10**14)["L_p"], int)
    assert rc.resource_counts(1, 1, 10**15)["L_p"] == "~10^15"  # log10 L_p = 15 exactly: a string
    assert rc.resource_counts(1, 1, 3 * 10**15)["L_p"] == "~10^15.48"
    two = rc.resource_counts(1, 2, 10**8)  # log10 L_p = log10 2 + 16 (the dm in the exponent, not d/m)
    assert two["L_p"] == "~10^16.3" and two["n"] == "~10^16.3"
    assert rc.resource_counts(1, 1, 14)["value_map_ffn_layers"] == 14**15  # ~10^17.2: exact
    assert rc.resource_counts(1, 1, 15)["value_map_ffn_layers"] == "~10^18.82"  # 15^16 ~ 6.6e18: a string
    assert rc.resource_counts(1, 1, 15)["ffn_layers"] == "~10^18.82"  # and so is the sum it dominates
    assert rc.resource_counts(1, 1, 5 * 10**13)["digits"] == "~10^15.14"  # ~1.4e15 digits: a string
    assert isinstance(rc.resource_counts(1, 1, 10**13)["digits"], int)
