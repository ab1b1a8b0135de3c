"""Counting claims and resource tables of Wang et al. 2023's deep construction (wang2023.md §2.1, §3.2).

wang23.universality.prompt_counting   delta^{-d m_p} >= (delta^{-dm})^{delta^{-dm}} <=> m_p >= m delta^{-dm}, tight  [D]
wang23.universality.resource_counts   resource_counts = the built network's counts; n_sequences by enumeration  [D]

and the Wang-vs-Hu resource table. Shares the built networks and originals of properties.deep_universality.
"""

from __future__ import annotations

import itertools
import math

from hypothesis import strategies as st

import verify
from constructions import deep_universality as du
from constructions import selective_shift as ss
from properties.deep_universality import _ORIG, REACHABLE, SOURCE, _net

# --------------------------------------------------------------------------------------------
# 6. counting bound on m_p, its tightness, and the table bijection
# --------------------------------------------------------------------------------------------

counting_instances = st.fixed_dictionaries(
    {"d": st.integers(1, 3), "m": st.integers(1, 3), "K": st.integers(2, 6)}
)


def _counting(inst):
    d, m, K = inst["d"], inst["m"], inst["K"]
    m_p = du.prompt_length(d, m, K)
    logC, logP = du.counting_check(d, m, K, m_p)
    short = du.counting_check(d, m, K, m_p - 1)[1] if m_p > 1 else 0.0
    tight = f"; one token fewer gives ratio {logC / short:.6g}" if short > 0 else ""
    return verify.Evidence(
        observed=logC,
        bound=logP,
        notes=f"log C = dm K^(dm) log K = {logC:.6g}; log #prompts(m_p = {m_p}) = d m_p log K = {logP:.6g}{tight}",
        resources={"m_p": m_p, "counting_bound": du.counting_bound_mp(d, m, K), "K": K},
    )


@verify.claim(
    "wang23.universality.prompt_counting",
    source=f"{SOURCE} §2.1 'Prompt length by counting' [D, C]",
    statement="log C = dm delta^{-dm} log(1/delta) <= d m_p log(1/delta) iff m_p >= m delta^{-dm}; the table"
    " encoding (m_p = m delta^{-dm}) attains equality",
    strategy=counting_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="dm <= 9, K <= 6: logs in float64 (exactly equal at the table length)",
    tight=0.99,
)
def check_prompt_counting(inst, backend):
    return _counting(inst)


verify.patch_mutant("wang23.universality.prompt_counting", "one_token_short",
                    {"constructions.memorization.prompt_length": lambda d, m, K: _ORIG["prompt_length"](d, m, K) - 1},
                    description="m_p = m delta^{-dm} - 1")


# --------------------------------------------------------------------------------------------
# 7. resource counts against the built network and enumeration
# --------------------------------------------------------------------------------------------

resource_instances = st.fixed_dictionaries({"size": st.sampled_from(REACHABLE)})


def _resource_check(inst):
    d, m, K = inst["size"]
    net = _net(d, m, K)
    plan = net.plan
    rc = du.resource_counts(d, m, K)
    built = net.counts()
    enum = sum(1 for _ in itertools.product(range(K), repeat=d * plan.n))  # grid sequences, enumerated
    U = plan.unit
    tr_digits = len(str(int(plan.t_bounds()[1] * U)))
    checks = {
        **{k: (built[k], rc[k]) for k in built},
        "n_sequences": (plan.n_sequences, enum),
        "value_map = m x sequences": (net.n_value_layers, m * enum),
        "attention_layers (weights)": (len(ss.all_shift_layers(plan)), rc["attention_layers"]),
        "plan.n_attention_layers": (plan.n_attention_layers, rc["attention_layers"]),
        "ffn_layers": (rc["ffn_layers"], built["quantization_ffn_layers"] + built["cleanup_ffn_layers"]
                       + built["value_map_ffn_layers"]),
    }
    bad = [f"{k}: {a} != {b}" for k, (a, b) in checks.items() if a != b]
    digits_ok = tr_digits <= rc["digits"] <= tr_digits + 1
    return verify.Evidence(
        0.0, 1.0,
        notes="; ".join(bad) or f"all {len(checks)} counts agree; t_r has {tr_digits} digits in units",
        resources={"d": d, "m": m, "K": K, "sequences": enum, **built},
        conditions=(verify.Condition("counts", not bad, "; ".join(bad)),
                    verify.Condition("digits", digits_ok, f"digits {rc['digits']} vs t_r's {tr_digits} in units")),
    )


@verify.claim(
    "wang23.universality.resource_counts",
    source=f"{SOURCE} §2.1 resource table, §3.2 [D]",
    statement="resource_counts(d, m, K) = the built network's layer counts; n_sequences = K^{dn} by enumeration;"
    " value-map layers = m x sequences; digits = those of t_r in units of delta/2 (+1)",
    strategy=resource_instances,
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="the networks of REACHABLE (value map <= 15,625 layers); sequences enumerated one by one",
)
def check_resource_counts(inst, backend):
    return _resource_check(inst)


def _counts_quantization_without_d(d, m, K):
    r = dict(_ORIG["resource_counts"](d, m, K))
    r["quantization_ffn_layers"] -= d
    return r


def _counts_value_map_without_m(d, m, K):
    r = dict(_ORIG["resource_counts"](d, m, K))
    r["value_map_ffn_layers"] //= m
    return r


verify.patch_mutant("wang23.universality.resource_counts", "n_sequences_off_by_one",
                    {"constructions.selective_shift.ShiftPlan.n_sequences":
                     property(lambda self: self.K ** (self.d * self.n) - 1)},
                    description="ShiftPlan.n_sequences = K^{dn} - 1")
verify.patch_mutant("wang23.universality.resource_counts", "n_sequences_exponent_d_plus_n",
                    {"constructions.selective_shift.ShiftPlan.n_sequences":
                     property(lambda self: self.K ** (self.d + self.n))},
                    description="ShiftPlan.n_sequences = K^{d+n}")
verify.patch_mutant("wang23.universality.resource_counts", "quantization_layers_without_zeta1",
                    {"constructions.deep_universality.resource_counts": _counts_quantization_without_d},
                    description="quantization FFN layers d n K (the d zeta_1 layers forgotten)")
verify.patch_mutant("wang23.universality.resource_counts", "value_map_without_m",
                    {"constructions.deep_universality.resource_counts": _counts_value_map_without_m},
                    strategy=st.fixed_dictionaries({"size": st.just((1, 2, 2))}),
                    description="value-map layers K^{dn} (the m scored columns forgotten)")


# --------------------------------------------------------------------------------------------
# comparison table
# --------------------------------------------------------------------------------------------

HU_VARIANTS = ("multi_ffn", "two_ffn")
TABLE_ROWS = ((1, 1, 1.0, 1.0, 1.0), (1, 1, 1.0, 1.0, 0.5), (1, 2, 1.0, 1.0, 1.0), (2, 1, 1.0, 1.0, 1.0),
              (2, 2, 1.0, 1.0, 0.5), (4, 4, 1.0, 2.0, 0.1))


def _fmt(v):
    """Ints above 10^18 as '~10^x' (Hu's counts come back exact), tuples element-wise."""
    if isinstance(v, tuple):
        return "(" + ", ".join(str(_fmt(x)) for x in v) + ")"
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and abs(v) >= 10**18:
        return f"~10^{len(str(abs(v))) - 1 + math.log10(int(str(abs(v))[:15]) / 10**14):.4g}"
    if isinstance(v, float):
        return f"{v:.3g}"
    return v


def _hu_counts(d, L, C, alpha, eps):
    """Hu et al.'s counts from constructions.universality.resource_counts (None while that module is missing)."""
    try:
        from constructions import universality as hu
    except ImportError:
        return None
    return [(v, hu.resource_counts(d, L, C, alpha, eps, v)) for v in HU_VARIANTS]


@verify.table("wang23_vs_hu24", title="Resources: Wang et al. 2023 (deep) vs Hu et al. 2024 (one attention layer)",
              in_report=True, claims=("wang23.universality.*", "hu24.architecture", "hu24.pt_memo_growth"))
def comparison_table(max_seconds: float = 60.0):
    headers = ["d", "L (=m)", "C (=Lip)", "alpha (=p)", "eps", "construction", "K=1/delta", "attention layers",
               "heads", "FFN layers", "FFN width", "prompt length", "digits"]
    rows = []
    for d, L, C, a, eps in TABLE_ROWS:
        w = du.resource_counts_eps(d, L, C, a, eps)
        rows.append([d, L, C, a, eps, "Wang23 (Yun-style, hardmax T^{2,1,1})", w["K"], w["attention_layers"],
                     "2 x size 1", w["ffn_layers"], w["ffn_width"], w["L_p"], w["digits"]])
        hu = _hu_counts(d, L, C, a, eps)
        if hu is None:
            rows.append([d, L, C, a, eps, "Hu24: constructions.universality not available"] + [""] * 7)
            continue
        for variant, r in hu:
            rows.append([d, L, C, a, eps, f"Hu24 ({variant})", r.get("K"), r.get("attention_layers"), r.get("heads"),
                         r.get("ffn_layers"), r.get("ffn_widths"), r.get("L_p"), r.get("dps")])
    notes = ("Wang: K from delta = 1/ceil(2(L+1)(dm)^{1/p}/eps) (round-down surrogate); n = m(1+K^{dm});"
             " attention n K^d + 1; FFN d n K + d (quantization) + 1 + d (cleanup) + m K^{dn} (value map);"
             " digits = decimal digits of the largest contextual id t_r in units of delta/2 (exact evaluation)."
             " Hu: constructions.universality.resource_counts (K from (C+1/2), centred surrogate); dps = mpmath digits."
             " Counts above 10^18 printed as 10^x.")
    return headers, [[_fmt(v) for v in r] for r in rows], notes
