"""Claims about Lemma D, the one-layer, one-head contextual mapping (Hu et al. 2024 any-rank lemma; hu2024.md §2.3).

hu24.lemma_d_norm               ||y|| <= r_max + eps/4 (minus its e^{-2R} floor, log scale)         (§5 item 6)
hu24.lemma_d_token_separation   different tokens: ||y - y'|| >= eps/2                               (item 7)
hu24.lemma_d_context_separation same token, non-permutation contexts: ||y - y'|| >= delta (closed form) (item 8)
hu24.lemma_d_data_constant      same with any c' <= c_emp in place of c                             (item 9)

The Boltzmann lemma and the projection are in properties/boltzmann.py; the any-rank padding, permutation
equivariance and the float64 negative control in properties/contextual_rank.py.

Gap claims are stated on a log scale, because the floors reach 10^-5000: observed = log10(1/measured gap),
bound = log10(1/floor), so ratio = ln(gap)/ln(floor) <= 1 iff gap >= floor (both < 1); ratio 0.8 means the
measured gap is floor^0.8.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
from hypothesis import strategies as st

import verify
from constructions import contextual as cm
from properties.strategies import lemma_d_instances

LN10 = math.log(10.0)
SOURCE = "Hu et al. 2024 (any-rank contextual lemma), K&S 2024 Lemma 1 / Thm 2; hu2024.md §2.3"


def need_numpy(backend):
    if backend.name != "numpy":
        raise verify.UnsupportedPrecision(f"mpmath-exact check; digits chosen inside, not {backend.label}")


def log_evidence(log_gap, log_floor, notes, resources):
    """Evidence on the log scale (natural logs in, log10 out)."""
    obs = -float(log_gap) / LN10
    bnd = -float(log_floor) / LN10
    if bnd <= 0:
        raise ValueError(f"floor {bnd} >= 1: use the linear form")
    return verify.Evidence(observed=obs, bound=bnd, notes=notes, resources=resources, precision="mpmath")


# --------------------------------------------------------------------------------------------
# Lemma D heads from materialised instances
# --------------------------------------------------------------------------------------------

lemma_instances = lemma_d_instances()


def lemma_setup(inst, c="frac", max_dps=8000):
    """(head, seqs) from the stored V, sequences, w and e: c = c_frac * c_emp ("frac"), or "theory", or a number."""
    V = np.asarray(inst["V"], dtype=np.float64)
    seqs = [np.asarray(X, dtype=np.float64) for X in inst["seqs"]]
    e = None if inst.get("e") is None else np.asarray(inst["e"], dtype=np.float64)
    w = np.asarray(inst["w"], dtype=np.float64)
    if c == "frac":
        head0 = cm.lemma_d(seqs, vocab=V, c="empirical", w=w, e=e)
        c = inst["c_frac"] * head0.c_emp
    head = cm.lemma_d(seqs, vocab=V, c=c, w=w, e=e)
    if head.dps > max_dps:
        raise verify.OutOfReach(f"{head.dps} digits (R = {head.R:.4g}) exceed the {max_dps}-digit budget of this claim")
    return head, seqs


def res(head, seqs, ctx, **kw):
    r = {"d": head.d, "n": head.n, "|V|": head.n_vocab, "seqs": len(seqs), "dps": ctx.dps, "R": round(head.R, 1),
         "c": f"{head.c:.4g}", "c_emp": f"{head.c_emp:.4g}"}
    r.update(kw)
    return r


# --------------------------------------------------------------------------------------------
# items 6, 7: norm and different-token separation
# --------------------------------------------------------------------------------------------


def _norm_check(inst):
    """Unused fraction of the eps/4 allowance, on the log scale against its derived floor.

    ||y_k|| <= ||x_k|| + kappa |s_k| (kappa = eps/(4 r_max), s_k = sum_l sigma_l p_l, p = w^T x) and
    r_max - |s_k| >= sum_l sigma_l (P - sgn(s_k) p_l) >= sigma_min c eps (P = max |p_l|; two distinct tokens of the
    sequence have |p_l - p_l'| >= c eps; sigma_min >= e^{-2R}/n), so the slack r_max + eps/4 - ||y_k|| is at least
    (eps/4) c eps e^{-2R}/(r_max n). The bound r_max + eps/4 itself is attained up to that e^{-2R}-small term (the
    largest token attends to itself), so a linear ratio reads 1 in float64; the log scale shows the real margin.
    """
    head, seqs = lemma_setup(inst)
    ctx = head.context()
    outs = [head.apply_mp(X, ctx) for X in seqs]
    mx = max(ctx.sqrt(ctx.fsum(v * v for v in y)) for o in outs for y in o)
    quarter = ctx.mpf(head.eps) / 4
    unused = (ctx.mpf(head.r_max) + quarter - mx) / quarter
    log_floor = ctx.log(ctx.mpf(head.c) * ctx.mpf(head.eps) / (ctx.mpf(head.r_max) * head.n)) - 2 * head.R_mp(ctx)
    r = res(head, seqs, ctx, max_norm=f"{float(mx):.6g}", r_bound=f"{head.r_bound:.6g}")
    excess = mpmath.nstr(-unused * quarter, 3)
    inside = verify.Condition("norm", unused > 0, f"max ||y|| exceeds r_max + eps/4 by {excess}")
    if not inside.ok:
        return verify.Evidence(observed=1.0, bound=1.0, precision="mpmath", resources=r, conditions=(inside,))
    return log_evidence(ctx.log(unused), log_floor,
                        f"unused fraction of eps/4: 10^{float(ctx.log10(unused)):.1f} against the floor "
                        f"c eps e^(-2R)/(r_max n) = 10^{float(log_floor) / LN10:.1f}", r)


@verify.claim(
    "hu24.lemma_d_norm",
    source=SOURCE + " Lemma D; §5 item 6",
    statement="Lemma D head: ||x_k + Att(X)_k|| <= r_max + (eps/4)(1 - c eps e^{-2R}/(r_max n)) for every token "
              "(log scale: unused fraction of eps/4 >= its floor)",
    strategy=lemma_instances,
    provenance="derived",
    precision="mpmath",
    limits="d <= 3, |V| <= 5, n <= 3, <= 12 sequences; c' = c_frac * c_emp keeps dps < 400",
    max_examples=30,
)
def check_lemma_d_norm(inst, backend):
    need_numpy(backend)
    return _norm_check(inst)


# unpatched, inside a dict (a patch rebinds module-level names bound to the patched object; class-attribute
# patches cannot pass ``original``)
_UNPATCHED = {"output_scale_mp": cm.ContextualHead.output_scale_mp}


def _scale_times(k):
    """Patches multiplying W_O's scale by k in float64 (weights) and in mpmath (apply_mp)."""

    def output_scale_mp(self, ctx):
        return k * _UNPATCHED["output_scale_mp"](self, ctx)

    return {"constructions.contextual.ContextualHead.output_scale": property(
                lambda self: k * self.scale_factor * self.eps / (4.0 * self.r_max)),
            "constructions.contextual.ContextualHead.output_scale_mp": output_scale_mp}


verify.patch_mutant("hu24.lemma_d_norm", "output_scale_doubled", _scale_times(2.0),
                    description="W_O = eps/(2 r_max) e instead of eps/(4 r_max)")


def _token_sep_check(inst):
    head, seqs = lemma_setup(inst)
    ctx = head.context()
    g = cm.measure_gaps(head, seqs, ctx)
    return verify.Evidence(observed=head.eps / 2, bound=float(g.min_diff_token),
                           precision="mpmath",
                           notes="observed: the floor eps/2; bound: the measured min distance between outputs of "
                                 "different tokens (ratio = floor/gap)",
                           resources=res(head, seqs, ctx, pairs=g.n_diff_pairs))


@verify.claim(
    "hu24.lemma_d_token_separation",
    source=SOURCE + " Lemma D; §5 item 7",
    statement="Lemma D head: outputs of different tokens (any contexts) are >= eps/2 apart (ratio = (eps/2)/gap)",
    strategy=lemma_instances,
    provenance="derived",
    precision="mpmath",
    limits="d <= 3, |V| <= 5, n <= 3, <= 12 sequences (all output pairs compared)",
    max_examples=30,
)
def check_lemma_d_tokens(inst, backend):
    need_numpy(backend)
    return _token_sep_check(inst)


# W_O x4 moves each token up to eps; the lemma allows any unit e, and with e = -w in a mixed-sign d = 1 vocabulary
# the tokens nearest 0 on either side move towards each other, within eps/2 (with e = w, or tokens of one sign, all
# tokens move alike and x4 goes unseen: hence the drawn family, e random = +-1)
verify.patch_mutant("hu24.lemma_d_token_separation", "output_scale_x4", _scale_times(4.0),
                    strategy=lemma_d_instances(d=st.just(1), mixed=st.just(True), e_random=st.just(True)),
                    description="W_O = (eps/r_max) e: four times the lemma's output scale")


# --------------------------------------------------------------------------------------------
# items 8, 9: same-token separation
# --------------------------------------------------------------------------------------------

# d = 2 only with |V| = 3, n = 2 (c_theory^2 ~ 5e-3 keeps R ~ 3500); d = 1 three times as often
_literal_1 = lemma_d_instances(d=st.just(1), n_vocab=st.integers(3, 4), mixed=st.just(True) | st.booleans(),
                               e_random=st.just(False), limit=8)
_literal_2 = lemma_d_instances(d=st.just(2), n_vocab=st.just(3), n=st.just(2), mixed=st.booleans(),
                               e_random=st.just(False), limit=8)
literal_instances = st.one_of(_literal_1, _literal_1, _literal_1, _literal_2)


def _literal_setup(inst):
    return lemma_setup(inst, c="theory")


def same_token_check(head, seqs, label):
    ctx = head.context()
    g = cm.measure_gaps(head, seqs, ctx)
    if g.n_same_pairs == 0:
        raise verify.OutOfReach("no same-token pair in non-permutation contexts among the drawn sequences")
    return ctx, g


@verify.claim(
    "hu24.lemma_d_context_separation",
    source=SOURCE + " Lemma D closed form; §5 item 8",
    statement="Lemma D (c = c_theory): same token, non-permutation contexts: ||y - y'|| >= delta = "
              "2(ln n)^2 eps^2 r_min/(r_max^2 (|V|+1)^4 (2ln n+3) pi d) "
              "e^{-(|V|+1)^4 (2ln n+3) pi d r_max^2/(4 eps r_min)}",
    strategy=literal_instances,
    provenance="derived",
    precision="mpmath",
    limits="d=1: |V| <= 4, n <= 3; d=2: |V|=3, n=2; <= 8 sequences: the literal lemma needs dps ~ 1.6k-4.5k",
    max_examples=12,
)
def check_context_separation(inst, backend):
    need_numpy(backend)
    head, seqs = _literal_setup(inst)
    ctx, g = same_token_check(head, seqs, "closed-form delta")
    return log_evidence(g.log_min_same_token, head.log_delta_closed(ctx),
                        f"{g.n_same_pairs} same-token/non-permutation pairs; closed-form delta",
                        res(head, seqs, ctx, log10_gap=round(float(g.log_min_same_token) / LN10, 2)))


def _exponent_term(n, eps, r_min, r_max, n_vocab, d, ctx, power=4):
    return ctx.mpf(n_vocab + 1) ** power * (2 * ctx.log(n) + 3) * ctx.pi * d * ctx.mpf(r_max) ** 2 / (
        4 * ctx.mpf(eps) * ctx.mpf(r_min))


@verify.mutant("hu24.lemma_d_context_separation", "vocab_power_2_in_exponent",
               patch="constructions.contextual.log_delta_closed")
def mutant_closed_form_power(n, eps, r_min, r_max, n_vocab, d, ctx, *, original):
    """The closed form with (|V|+1)^2 instead of (|V|+1)^4 inside the exponential."""
    return (original(n, eps, r_min, r_max, n_vocab, d, ctx) + _exponent_term(n, eps, r_min, r_max, n_vocab, d, ctx)
            - _exponent_term(n, eps, r_min, r_max, n_vocab, d, ctx, power=2))


@verify.mutant("hu24.lemma_d_context_separation", "boltzmann_floor_e_minus_R",
               patch="constructions.contextual.log_delta_closed")
def mutant_closed_form_half(n, eps, r_min, r_max, n_vocab, d, ctx, *, original):
    """Lemma C's e^{-2R} taken as e^{-R}: half the closed form's exponent."""
    return original(n, eps, r_min, r_max, n_vocab, d, ctx) + _exponent_term(n, eps, r_min, r_max, n_vocab, d, ctx) / 2


data_instances = lemma_d_instances(n=st.integers(2, 4))


@verify.claim(
    "hu24.lemma_d_data_constant",
    source=SOURCE + " Lemma D with data constants; §5 item 9",
    statement="Lemma D with any c' <= c_emp: same-token gap >= (eps/(4 r_max)) (ln n)^2 e^{-2 xi' r_max^2}/(xi' r_max),"
              " xi' = (2ln n+3)/(c'^2 eps r_min)",
    strategy=data_instances,
    provenance="derived",
    precision="mpmath",
    limits="d <= 3, |V| <= 5, n <= 4, <= 12 sequences; c' in [0.3, 1] c_emp keeps dps < 1000",
    max_examples=30,
)
def check_data_constant(inst, backend):
    need_numpy(backend)
    head, seqs = lemma_setup(inst)
    ctx, g = same_token_check(head, seqs, "floor with c'")
    return log_evidence(g.log_min_same_token, head.log_delta(ctx),
                        f"{g.n_same_pairs} same-token/non-permutation pairs; floor with c'",
                        res(head, seqs, ctx, log10_gap=round(float(g.log_min_same_token) / LN10, 2)))


@verify.mutant("hu24.lemma_d_data_constant", "r_min_for_r_max_in_exponent",
               patch="constructions.contextual.ContextualHead.log_delta")
def mutant_data_rmin(self, ctx):
    """The floor built with r_min where r_max belongs (a wrong logit radius in e^{-2 xi r^2})."""
    return cm.log_delta_for_xi(self.n, self.eps, self.r_min, self.xi_mp(ctx), ctx)
