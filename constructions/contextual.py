"""One-layer, one-head contextual mapping (Hu et al. 2024 any-rank lemma; Kajitsuka & Sato 2024 Thm 2).

Reconstruction [D] of hu2024.md §2.3, the digest's Lemma C / Lemma D:

* Boltzmann operator boltz(a) = sum_k a_k e^{a_k} / sum_k e^{a_k}. Lemma C: for entry-wise (r, delta)-separated,
  duplicate-free vectors with delta >= 2 ln n + 3 that are not permutations of each other,
  |boltz(a) - boltz(a')| > (ln n)^2 e^{-2r} and |boltz(a)| <= r.
* Projection: a unit w with c ||u - u'|| <= |w^T (u - u')| on V u {0}, c_theory = (|V|+1)^{-2} sqrt(8/(pi d));
  found by rejection sampling (fails with probability < 2/pi per draw); c_emp is the measured minimum ratio.
* Lemma D: W_Q = xi w^T, W_K = W_V = w^T, W_O = (eps/(4 r_max)) e with xi = (2 ln n + 3)/(c^2 eps r_min). For
  tokenwise (r_min, r_max, eps)-separated, duplicate-free sequences the layer x_k -> x_k + Att is an
  (r, delta)-contextual map with r = r_max + eps/4 and the closed form ``log_delta_closed`` below.

Separation is used in its non-strict form (distinct tokens at distance >= eps, logit gaps >= 2 ln n + 3): grid
vocabularies meet it with equality and the conclusions hold by continuity (every check measures the gaps).

Numerics: logits reach R = xi r_max^2 and same-token gaps are ~ e^{-2R}, so the outputs are evaluated in
mpmath at dps = ceil(2R / ln 10) + 60 (``dps_for``); float64 collapses distinct contexts bit for bit
(hu2024.md §2.3 [C]). ``certify_gaps_arb`` re-evaluates in python-flint ball arithmetic (optional extra).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import mpmath
import numpy as np

from constructions.boltzmann import (  # noqa: F401  (re-exported: the contextual API in one namespace)
    MAX_DPS,
    boltzmann,
    boltzmann_log_gap_bound,
    boltzmann_separation_threshold,
    check_entrywise_separated,
    dps_for,
    mp_context,
)
from constructions.projection import (  # noqa: F401
    MAX_VOCAB_PAIRS,
    _columns,
    c_theory,
    check_no_duplicates,
    columns,
    duplicate_free_sequences,
    is_permutation,
    projection_constant,
    random_unit,
    same_token_pairs,
    separating_projection,
    separation,
    vocabulary,
)

# --------------------------------------------------------------------------------------------
# Lemma D
# --------------------------------------------------------------------------------------------


def xi_for(n: int, eps: float, r_min: float, c: float, ctx=None):
    """xi = (2 ln n + 3) / (c^2 eps r_min): makes the logits of every query (2 ln n + 3)-separated."""
    if ctx is None:
        return (2.0 * math.log(n) + 3.0) / (c * c * eps * r_min)
    return (2 * ctx.log(n) + 3) / (ctx.mpf(c) ** 2 * ctx.mpf(eps) * ctx.mpf(r_min))


def log_delta_for_xi(n: int, eps: float, r_max: float, xi, ctx) -> mpmath.mpf:
    """ln of the same-token gap floor (eps/(4 r_max)) (ln n)^2 e^{-2 xi r_max^2} / (xi r_max) (Lemma C through D)."""
    eps, r_max, xi = ctx.mpf(eps), ctx.mpf(r_max), ctx.mpf(xi)
    return ctx.log(eps / (4 * r_max * r_max * xi)) + 2 * ctx.log(ctx.log(n)) - 2 * xi * r_max * r_max


def log_delta_closed(n: int, eps: float, r_min: float, r_max: float, n_vocab: int, d: int, ctx) -> mpmath.mpf:
    """ln delta of Lemma D's closed form (hu2024.md §2.3), with c = c_theory:

    delta = 2 (ln n)^2 eps^2 r_min / (r_max^2 (|V|+1)^4 (2 ln n + 3) pi d)
            * exp(-(|V|+1)^4 (2 ln n + 3) pi d r_max^2 / (4 eps r_min)).
    """
    ln_n = ctx.log(n)
    eps, r_min, r_max = ctx.mpf(eps), ctx.mpf(r_min), ctx.mpf(r_max)
    v4 = ctx.mpf(n_vocab + 1) ** 4
    pre = 2 * ln_n**2 * eps**2 * r_min / (r_max**2 * v4 * (2 * ln_n + 3) * ctx.pi * d)
    return ctx.log(pre) - v4 * (2 * ln_n + 3) * ctx.pi * d * r_max**2 / (4 * eps * r_min)


@dataclass(frozen=True, eq=False)
class ContextualHead:
    """The single head of Lemma D, with the data constants it was built from.

    w, e: unit vectors (float64); the head's weights are W_Q = xi w^T, W_K = W_V = w^T, W_O = scale e with
    xi = xi_factor (2 ln n + 3)/(c^2 eps r_min) and scale = eps/(4 r_max), formed exactly in the evaluation
    context. c is the separation constant used in xi (c_theory for the literal lemma, or any c' <= c_emp).
    """

    w: np.ndarray
    e: np.ndarray
    n: int
    eps: float
    r_min: float
    r_max: float
    c: float
    c_emp: float
    n_vocab: int
    xi_factor: float = 1.0
    scale_factor: float = 1.0  # multiplies W_O; 1 in the lemma (other values only demonstrate its necessity)

    @property
    def d(self) -> int:
        return int(self.w.shape[0])

    @property
    def xi(self) -> float:
        return self.xi_factor * xi_for(self.n, self.eps, self.r_min, self.c)

    @property
    def R(self) -> float:
        """Logit bound R = xi r_max^2 (Lemma C's r for the projected logits)."""
        return self.xi * self.r_max**2

    @property
    def dps(self) -> int:
        return dps_for(self.R)

    @property
    def r_bound(self) -> float:
        """r = r_max + eps/4: every output token's norm is at most this."""
        return self.r_max + self.eps / 4.0

    def with_(self, **kw) -> ContextualHead:
        return replace(self, **kw)

    def context(self, max_dps: int = MAX_DPS) -> mpmath.MPContext:
        return mp_context(self.dps, max_dps)

    def log_delta(self, ctx) -> mpmath.mpf:
        """ln of the gap floor for the constants actually used (c, xi_factor)."""
        return log_delta_for_xi(self.n, self.eps, self.r_max, self.xi_mp(ctx), ctx)

    def log_delta_closed(self, ctx) -> mpmath.mpf:
        """ln of the closed form with c_theory (valid whenever c <= ... i.e. c >= c_theory and xi_factor = 1)."""
        return log_delta_closed(self.n, self.eps, self.r_min, self.r_max, self.n_vocab, self.d, ctx)

    def xi_mp(self, ctx):
        """xi formed in ``ctx``: xi_factor (2 ln n + 3) / (c^2 eps r_min)."""
        return ctx.mpf(self.xi_factor) * xi_for(self.n, self.eps, self.r_min, self.c, ctx)

    def _xi_mp(self, ctx):  # the old private name (constructions.universality)
        return self.xi_mp(ctx)

    def R_mp(self, ctx):
        """The logit bound xi r_max^2 in ``ctx``."""
        return self.xi_mp(ctx) * ctx.mpf(self.r_max) ** 2

    @property
    def output_scale(self) -> float:
        """W_O's scale eps / (4 r_max) (times scale_factor, 1 in the lemma)."""
        return self.scale_factor * self.eps / (4.0 * self.r_max)

    def output_scale_mp(self, ctx):
        """output_scale formed in ``ctx``."""
        return ctx.mpf(self.scale_factor) * ctx.mpf(self.eps) / (4 * ctx.mpf(self.r_max))

    def mp_rounding_floor(self, ctx, s: int = 1):
        """Bound (mpf) on |apply_mp or apply_general_mp output - exact| plus the same for the logits, u = 2^-prec.

        Logits: sums of (s + d)-term products of magnitude <= R (the padding rows meet exact zeros), error
        <= (s + d + 2) u R each; a weight exp(a - max) / sum then errs relatively by <= w = 2 (s + d + 2) u R
        + (n + 3) u (first order; the exp's argument error doubles through the normalisation); the output
        x + scale e sum_l sigma_l v_l with |scale v_l| <= eps/4 adds (eps/4)(2 w + (n + d + 3) u) + u (r_max + eps/4).
        Returned: the larger of the output and logit floors (one evaluation; compare two evaluations with twice it).
        """
        u = ctx.mpf(2) ** (-ctx.prec)
        d, n, R = self.d, self.n, self.R_mp(ctx)
        w_rel = 2 * (s + d + 2) * u * R + (n + 3) * u
        quarter = ctx.mpf(self.eps) / 4
        out = quarter * (2 * w_rel + (n + d + 3) * u) + u * (ctx.mpf(self.r_max) + quarter)
        return max(out, (s + d + 2) * u * R)

    def float64_floor(self, X) -> np.ndarray:
        """Per-entry bound on |apply_f64(X) - exact| (d x n): the attention floor of the float64 weights
        (constructions.transformer.attention_rounding_floor) plus the residual add's rounding."""
        from constructions.precision import UNIT_ROUNDOFF, gamma
        from constructions.transformer import Head, attention_rounding_floor, weighted_value_magnitude

        u = UNIT_ROUNDOFF["float64"]
        X = np.asarray(X, dtype=np.float64)
        h = Head(*self.weights())
        return attention_rounding_floor(h, X, X, u) + gamma(1, u) * (np.abs(X) + weighted_value_magnitude(h, X, X))

    # ---- weights ------------------------------------------------------------------------------
    def weights(
        self, s: int = 1, rank: int | None = None, rng: np.random.Generator | None = None, pad_query: bool = False
    ):
        """(W_Q, W_K, W_V, W_O) float64 with head size s; any-rank padding of hu2024.md §2.3(a).

        W_Q = [xi w^T; 0], W_K = [w^T; B], W_V = [w^T; B'], W_O = scale e e_1^T with B, B' random so that
        rank(W_K) = rank (default min(s, d)). The logits and outputs equal the rank-1 head's exactly.
        pad_query=True fills the zero rows of W_Q too (breaks the identity; for demonstrations only).
        """
        d = self.d
        if s < 1:
            raise ValueError(f"head size s must be >= 1, got {s}")
        rank = min(s, d) if rank is None else rank
        if not 1 <= rank <= min(s, d):
            raise ValueError(f"rank(W_K) = {rank} must lie in 1..min(s, d) = {min(s, d)}")
        rng = rng or np.random.default_rng(0)
        Wq = np.zeros((s, d))
        Wq[0] = self.xi * self.w
        Wk = np.zeros((s, d))
        Wk[0] = self.w
        Wv = np.zeros((s, d))
        Wv[0] = self.w
        if s > 1:
            if rank > 1:
                # rows 1..rank-1 span directions independent of w (generic Gaussian), the rest repeat them
                G = rng.standard_normal((rank - 1, d))
                mix = rng.standard_normal((s - 1, rank - 1))
                mix[: rank - 1] = np.eye(rank - 1)
                Wk[1:] = mix @ G
            Wv[1:] = rng.standard_normal((s - 1, d))
            if pad_query:
                Wq[1:] = rng.standard_normal((s - 1, d))
        Wo = np.zeros((d, s))
        Wo[:, 0] = self.output_scale * self.e
        return Wq, Wk, Wv, Wo

    # ---- evaluation ---------------------------------------------------------------------------
    def apply_mp(self, X, ctx, queries=None):
        """Outputs y_k = x_k + scale e sum_l softmax(a)_l w^T x_l for the query columns (all by default).

        X: d x n array-like of numbers (floats are converted exactly) or lists of ctx numbers, columns = tokens.
        Returns a list of d-lists of ctx numbers, one per query column.
        """
        cols = _mp_columns(X, ctx)
        qs = range(len(cols)) if queries is None else queries
        w = [ctx.mpf(float(v)) for v in self.w]
        e = [ctx.mpf(float(v)) for v in self.e]
        xi = self.xi_mp(ctx)
        scale = self.output_scale_mp(ctx)
        p = [ctx.fsum(wi * xi_ for wi, xi_ in zip(w, col, strict=False)) for col in cols]
        out = []
        for k in qs:
            s = attend_projected(p, k, xi, ctx)
            out.append([cols[k][i] + scale * e[i] * s for i in range(len(e))])
        return out

    def apply_general_mp(self, X, ctx, Wq, Wk, Wv, Wo):
        """x_k + W_O W_V X softmax((W_K X)^T W_Q x_k) with explicit float64 weights (any-rank heads), in ctx.

        xi enters through W_Q (a float64 weight here), so compare with apply_mp at xi_factor = Wq[0]/w only
        through ``rank1_with_float_xi``.
        """
        cols = _mp_columns(X, ctx)
        M = lambda W: [[ctx.mpf(float(v)) for v in row] for row in np.asarray(W)]  # noqa: E731
        Q, Kk, Vv, O = M(Wq), M(Wk), M(Wv), M(Wo)
        mat = lambda A, x: [ctx.fsum(a * b for a, b in zip(row, x, strict=False)) for row in A]  # noqa: E731
        keys = [mat(Kk, c) for c in cols]
        vals = [mat(Vv, c) for c in cols]
        out, logits_all = [], []
        for k in range(len(cols)):
            q = mat(Q, cols[k])
            a = [ctx.fsum(x * y for x, y in zip(kk, q, strict=False)) for kk in keys]
            m = max(a)
            ex = [ctx.exp(v - m) for v in a]
            Z = ctx.fsum(ex)
            att = [ctx.fsum(ex[l] * vals[l][j] for l in range(len(cols))) / Z for j in range(len(q))]
            o = mat(O, att)
            out.append([cols[k][i] + o[i] for i in range(len(o))])
            logits_all.append(a)
        return out, logits_all

    def apply_f64(self, X) -> np.ndarray:
        """The same layer in float64 (numpy), through constructions.transformer: used by the negative control."""
        from constructions.transformer import Head, head_attention

        Wq, Wk, Wv, Wo = self.weights()
        X = np.asarray(X, dtype=np.float64)
        return X + head_attention(Head(Wq, Wk, Wv, Wo), X, X)


def attend_projected(p, k, xi, ctx):
    """sum_l softmax(xi p_k p)_l p_l for projected tokens p (max-shifted; = boltz(a) / (xi p_k))."""
    a = [xi * p[k] * pl for pl in p]
    m = max(a)
    ex = [ctx.exp(v - m) for v in a]
    return ctx.fsum(x * pl for x, pl in zip(ex, p, strict=False)) / ctx.fsum(ex)


def _mp_columns(X, ctx):
    if isinstance(X, np.ndarray):
        return [[ctx.mpf(float(v)) for v in X[:, j]] for j in range(X.shape[1])]
    if hasattr(X, "rows") and hasattr(X, "cols"):
        return [[ctx.mpf(X[i, j]) for i in range(X.rows)] for j in range(X.cols)]
    # a list of columns of numbers
    return [[ctx.mpf(v) for v in col] for col in X]


def _unit(v, name: str) -> np.ndarray:
    """v / ||v||; ValueError when ||v|| is 0 or not finite (a given w of norm 0 or 1e200 would turn into nan or 0
    and skip the separation check)."""
    v = np.asarray(v, dtype=np.float64)
    nv = float(np.linalg.norm(v))
    if not (np.isfinite(nv) and nv > 0):
        raise ValueError(f"{name} must be a nonzero vector of finite norm, got ||{name}|| = {nv:.3g}")
    return v / nv


def lemma_d(
    seqs=None,
    *,
    vocab=None,
    n: int | None = None,
    eps: float | None = None,
    c: str | float = "theory",
    rng: np.random.Generator | None = None,
    xi_factor: float = 1.0,
    e=None,
    validate: bool = True,
    best_of: int = 1,
    w=None,
) -> ContextualHead:
    """Build Lemma D's head for the sequences ``seqs`` (each d x n) or for an explicit vocabulary (d x |V|).

    c: "theory" (the lemma's c_theory; w is still required to meet it), "empirical" (c_emp of the sampled w),
    or a number c' with 0 < c' <= c_emp. eps defaults to the smallest distinct-token distance; ValueError if
    it exceeds it (separation), if a sequence repeats a token, if a token is 0 (r_min > 0) or if n < 2.
    w: a projection drawn beforehand (replaces the rejection sampling; ValueError unless it is c_theory-separating).
    """
    rng = rng or np.random.default_rng(0)
    if seqs is not None:
        seqs = [np.asarray(X, dtype=np.float64) for X in seqs]
        if not seqs:
            raise ValueError("no sequences given")
        shapes = {X.shape for X in seqs}
        if len(shapes) != 1:
            raise ValueError(f"all sequences must have one shape d x n, got {sorted(shapes)}")
        if validate:
            check_no_duplicates(seqs)
        V = vocabulary(seqs) if vocab is None else np.asarray(vocab, dtype=np.float64)
        n = seqs[0].shape[1]
    else:
        if vocab is None or n is None:
            raise ValueError("give either the sequences or (vocab, n)")
        V = np.asarray(vocab, dtype=np.float64)
    if n < 2:
        raise ValueError(f"Lemma D needs sequences of length n >= 2, got n = {n}")
    r_min, r_max, eps_min = separation(V)
    if validate and r_min <= 0:
        raise ValueError("a token is 0: Lemma D needs r_min = min ||v|| > 0")
    if eps is None:
        eps = eps_min
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"separation eps must be finite and > 0, got {eps}")
    if validate and eps > eps_min:
        raise ValueError(f"tokens are only {eps_min:.6g}-separated; eps = {eps:.6g} violates the separation hypothesis")
    d = V.shape[0]
    ct = c_theory(V.shape[1], d)
    if w is None:
        w, c_emp, _ = separating_projection(V, rng, ct, best_of=best_of)
    else:
        w = _unit(w, "w")
        c_emp = 1.0 if d == 1 else projection_constant(w, V)
        if d > 1 and c_emp < ct:
            raise ValueError(f"the given w is only {c_emp:.3g}-separating; Lemma D needs c_theory = {ct:.3g}")
    if c == "theory":
        c_used = ct
    elif c == "empirical":
        c_used = c_emp
    else:
        c_used = float(c)
        if not 0 < c_used <= c_emp:
            raise ValueError(f"projection constant c' = {c_used:.6g} must satisfy 0 < c' <= c_emp = {c_emp:.6g}")
    if xi_factor < 1:
        raise ValueError(f"xi_factor must be >= 1 (Lemma D allows any factor >= 1), got {xi_factor}")
    e = _unit(w if e is None else e, "e")
    return ContextualHead(
        w=w,
        e=e,
        n=int(n),
        eps=float(eps),
        r_min=r_min,
        r_max=r_max,
        c=c_used,
        c_emp=c_emp,
        n_vocab=int(V.shape[1]),
        xi_factor=float(xi_factor),
    )


# --------------------------------------------------------------------------------------------
# measuring the contextual-mapping property
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextGaps:
    """Measured quantities of an (r, delta)-contextual map on a dataset (mpmath numbers, natural logs)."""

    max_norm: object  # max ||y||
    min_diff_token: object  # min ||y - y'|| over outputs of different tokens
    log_min_same_token: object  # ln min ||y - y'|| over the same token in non-permutation contexts (inf if none)
    n_same_pairs: int
    n_diff_pairs: int
    worst_same_pair: tuple | None  # ((i, k), (j, l)) of the closest same-token pair


def measure_gaps(head: ContextualHead, seqs, ctx, outputs=None) -> ContextGaps:
    """Evaluate the head on every sequence in ``ctx`` and measure Definition B's quantities."""
    seqs = [np.asarray(X, dtype=np.float64) for X in seqs]
    outs = outputs if outputs is not None else [head.apply_mp(X, ctx) for X in seqs]
    toks = [columns(X) for X in seqs]
    perm_key = [tuple(sorted(t)) for t in toks]
    norm = lambda v: ctx.sqrt(ctx.fsum(x * x for x in v))  # noqa: E731
    max_norm = max(norm(y) for o in outs for y in o)
    flat = [(i, k) for i in range(len(seqs)) for k in range(len(toks[i]))]
    min_diff, min_same, worst = ctx.inf, ctx.inf, None
    n_same = n_diff = 0
    for (i, k), (j, l) in itertools.combinations(flat, 2):
        if toks[i][k] != toks[j][l]:
            n_diff += 1
            g = norm([a - b for a, b in zip(outs[i][k], outs[j][l], strict=False)])
            min_diff = min(min_diff, g)
        elif perm_key[i] != perm_key[j]:
            n_same += 1
            g = norm([a - b for a, b in zip(outs[i][k], outs[j][l], strict=False)])
            if g < min_same:
                min_same, worst = g, ((i, k), (j, l))
    log_same = ctx.log(min_same) if min_same < ctx.inf else ctx.inf
    if min_same == 0:
        log_same = -ctx.inf
    return ContextGaps(max_norm, min_diff, log_same, n_same, n_diff, worst)


# --------------------------------------------------------------------------------------------
# optional: certified enclosure in arb ball arithmetic (python-flint)
# --------------------------------------------------------------------------------------------


def certify_gaps_arb(head: ContextualHead, seqs, prec_bits: int | None = None) -> dict:
    """Re-evaluate the head in python-flint ``arb`` balls and certify the same-token gaps.

    Returns {"prec_bits", "certified_log10_min_same": a rigorous lower bound on log10 of the smallest
    same-token/non-permutation gap (-inf if some pair's balls overlap), "max_radius_log10"}. Raises ImportError
    with the extra's name if python-flint is missing. Only d = 1 heads (e = w = +-1) are supported.
    """
    try:
        import flint
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError("certify_gaps_arb needs python-flint: pip install -e '.[exact]'") from exc
    if head.d != 1:
        raise ValueError("certify_gaps_arb supports d = 1 heads only")
    prec = prec_bits or int(head.dps * 3.33) + 64
    arb = flint.arb
    with flint.ctx.workprec(prec):
        xi = arb(head.xi_factor) * (2 * arb(head.n).log() + 3) / (arb(head.c) ** 2 * arb(head.eps) * arb(head.r_min))
        scale = arb(head.eps) / (4 * arb(head.r_max))
        w, e = float(head.w[0]), float(head.e[0])
        outs = []
        for X in seqs:
            X = np.asarray(X, dtype=np.float64)
            cols = [float(v) for v in X[0]]
            p = [arb(w) * arb(x) for x in cols]
            o = []
            for k in range(len(p)):
                a = [xi * p[k] * pl for pl in p]
                m = max(a, key=lambda t: t.mid())
                ex = [(v - m).exp() for v in a]
                s = sum((x * pl for x, pl in zip(ex, p, strict=False)), arb(0)) / sum(ex, arb(0))
                o.append(arb(cols[k]) + scale * arb(e) * s)
            outs.append(o)
        best = None
        rad = 0.0
        for (i, k), (j, l) in same_token_pairs(seqs):
            diff = abs(outs[i][k] - outs[j][l])
            rad = max(rad, float(diff.rad()))
            lower = diff.lower()
            if not lower > 0:
                return {"prec_bits": prec, "certified_log10_min_same": -math.inf, "max_radius_log10": None}
            lg = float(lower.log() / arb(10).log())
            best = lg if best is None else min(best, lg)
    return {
        "prec_bits": prec,
        "certified_log10_min_same": best if best is not None else math.inf,
        "max_radius_log10": math.log10(rad) if rad > 0 else -math.inf,
    }
