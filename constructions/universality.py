"""The assembled one-layer, one-head prompt-tuned approximator (Hu et al. 2024, PT_uni_two_layer_FF2 /
PT_uni_multi_layer_FF2; reconstruction [D] of hu2024.md §3.2–3.6).

tau(Z) = FF2( Attn( FF1(Z + E) ) ), read at the last L columns, with

* E: positional offsets, column j (1-based) + j 1_d, so tokens are duplicate-free and >= 1;
* FF1: the ramp staircase t -> delta floor(t/delta) on [1, n+1) (constructions.quantization.FF1Quantizer);
* Attn: Lemma D's single head over the vocabulary of all positioned grid tokens (|V| = n K^d, eps = delta,
  r_min = sqrt(d), r_max = sqrt(d)(n + 1 - delta)); d = 1 uses w = 1 (c = 1), d > 1 the lemma's c_theory;
* FF2: one wide residual ReLU FFN through the M = K^{d(L_p+L)} L contextual ids z = u^T y (``two_ffn``), or
  M narrow bump layers (``multi_ffn``), mapping each id to the centred table value stored in the prompt.

tau depends only on (d, L, K, eta); ``prompt_for(f)`` is the table prompt P_f = [fbar(G_1), ..., fbar(G_N)],
L_p = L K^{dL}. Sizes are doubly exponential, so every builder checks the node count and the digits against a
budget before allocating anything (``resource_counts`` computes them without building).

FF2 is constructions.memorization's InterpolationFFN with extend="flat" (M hidden ReLUs, not M - 1): the extra
unit makes the interpolant flat beyond the extreme ids, so the output stays bounded on FF1's ramp set; without it
the d_alpha bound fails there (slopes reach e^{2R}). The multi-FFN variant is its BumpStack.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from constructions import contextual as cm
from constructions import quantization as qz
from constructions.memorization import BumpStack, InterpolationFFN

DEFAULT_MAX_NODES = 5_000
DEFAULT_MAX_DPS = 4_000
VARIANTS = ("two_ffn", "multi_ffn")


# --------------------------------------------------------------------------------------------
# validation and counts
# --------------------------------------------------------------------------------------------


def _validate(d, L, C, alpha, eps, variant):
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if isinstance(d, bool) or int(d) != d or d < 1 or isinstance(L, bool) or int(L) != L or L < 1:
        raise ValueError(f"d and L must be positive integers, got d={d}, L={L}")
    if not (eps is not None and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be > 0, got {eps}")
    if not (math.isfinite(C) and C >= 0):
        raise ValueError(f"Lipschitz constant C must be >= 0, got {C}")
    if not (math.isfinite(alpha) and alpha >= 1):
        raise ValueError(f"alpha must satisfy 1 <= alpha < inf, got {alpha}")


def _resolve_K(d, L, C, alpha, eps, K=None, delta=None) -> int:
    if delta is not None:
        if not (math.isfinite(delta) and 0 < delta <= 1):
            raise ValueError(f"delta must lie in (0, 1], got {delta}")
        k = 1.0 / delta
        if abs(k - round(k)) > 1e-9 * k:
            raise ValueError(f"1/delta = {k:.6g} is not an integer: the grid needs K = 1/delta levels")
        Kd = int(round(k))
        if K is not None and int(K) != Kd:
            raise ValueError(f"K = {K} and delta = {delta} disagree")
        K = Kd
    if K is None:
        K = qz.choose_K(C, d, L, alpha, eps)
    K = qz.check_K(K)
    if K < 2:
        raise ValueError(f"K = {K}: the construction needs K >= 2 grid levels")
    return K


def _log10_big(x: int) -> float:
    x = int(x)
    if x <= 0:
        return -math.inf
    s = x.bit_length()
    if s < 1000:
        return math.log10(x)
    return (s - 60) * math.log10(2) + math.log10(x >> (s - 60))


def ramp_sup_bound(d: int, L: int, n: int, alpha: float) -> float:
    """Bound on ||tau([P,X]) - f(X)||_alpha on the ramp set: entries of tau lie within 2n + 4 of [0, 1]."""
    return (2.0 * n + 5.0) * (d * L) ** (1.0 / alpha)


def choose_eta(d, L, K, C, alpha, eps) -> float:
    """A power of ten eta < delta/4 with ramp term ramp_sup (dLK eta)^{1/alpha} <= eps/3 (hu2024.md §3.2)."""
    n = L * K ** (d * L) + L
    budget = min(0.25 / K, (eps / 3.0 / ramp_sup_bound(d, L, n, alpha)) ** alpha / (d * L * K))
    return 10.0 ** (-math.ceil(-math.log10(budget)))


def resource_counts(d, L, C, alpha, eps, variant="two_ffn", K=None, delta=None) -> dict:
    """Resource counts of the construction without building anything (exact ints where they fit).

    Keys: attention_layers, heads, ffn_layers, ffn_widths, L_p, nodes_M, dps, K, delta, n, plus
    log10_nodes_M, vocab, c, R, eps_guaranteed. Huge counts come back as strings '~10^x'.
    """
    _validate(d, L, C, alpha, eps, variant)
    K = _resolve_K(d, L, C, alpha, eps, K, delta)
    dL = d * L
    N = K**dL if dL * math.log10(K) < 5000 else None
    if N is None:
        log10_N = dL * math.log10(K)
        return _symbolic_counts(d, L, K, variant, log10_N)
    L_p = L * N
    n = L_p + L
    if n >= 1e300:  # every float-valued count (log10 M, radii, eta) overflows: symbolic counts, exact L_p and n
        out = _symbolic_counts(d, L, K, variant, dL * math.log10(K))
        out.update(L_p=L_p, n=n)
        return out
    log10_M = d * n * math.log10(K) + math.log10(L)
    nodes = K ** (d * n) * L if log10_M <= 300 else f"~10^{log10_M:.0f}"
    vocab = n * K**d
    c = 1.0 if d == 1 else cm.c_theory(vocab, d)
    delta_f = 1.0 / K
    r_min, r_max = math.sqrt(d), math.sqrt(d) * (n + 1 - delta_f)
    try:
        R = cm.xi_for(n, delta_f, r_min, c) * r_max**2
        dps = cm.dps_for(R)
    except (OverflowError, ValueError, ZeroDivisionError):  # c^2 underflows to 0 for a huge vocabulary
        R, dps = math.inf, "~inf"
    ff1_w = d * (2 * (n * K - 1) + 1)
    if variant == "two_ffn":
        ffn_layers, widths = 2, (ff1_w, nodes)
    else:
        ffn_layers = 1 + nodes if isinstance(nodes, int) else f"1 + {nodes}"
        widths = (ff1_w, 4)
    eta = choose_eta(d, L, K, C, alpha, eps) if n < 1e12 else 0.0
    eps_g = qz.surrogate_sup_bound(C, d, L, alpha, K) + ramp_sup_bound(d, L, n, alpha) * (dL * K * eta) ** (1 / alpha)
    if isinstance(dps, int):
        dps = dps + max(0, math.ceil(-math.log10(eta))) + 5 if eta > 0 else dps
    return {
        "attention_layers": 1,
        "heads": 1,
        "ffn_layers": ffn_layers,
        "ffn_widths": widths,
        "L_p": L_p,
        "nodes_M": nodes,
        "dps": dps,
        "K": K,
        "delta": delta_f,
        "n": n,
        "log10_nodes_M": log10_M,
        "vocab": vocab,
        "c": c,
        "R": R,
        "eta": eta,
        "eps_guaranteed": eps_g,
        "variant": variant,
    }


def _symbolic_counts(d, L, K, variant, log10_N) -> dict:
    log10_Lp = math.log10(L) + log10_N
    log10_M = d * (10**log10_Lp) * math.log10(K) if log10_Lp < 300 else math.inf
    s = f"~10^{log10_M:.4g}" if math.isfinite(log10_M) else f"~10^(10^{log10_Lp + math.log10(d * math.log10(K)):.4g})"
    return {
        "attention_layers": 1, "heads": 1, "ffn_layers": 2 if variant == "two_ffn" else f"1 + {s}",
        "ffn_widths": ("huge", s if variant == "two_ffn" else 4), "L_p": f"~10^{log10_Lp:.4g}", "nodes_M": s,
        "dps": "~inf", "K": K, "delta": 1.0 / K, "n": f"~10^{log10_Lp:.4g}", "log10_nodes_M": log10_M,
        "vocab": "huge", "c": None, "R": math.inf, "eta": 0.0, "eps_guaranteed": math.nan, "variant": variant,
    }


def check_budget(counts: dict, max_nodes: int, max_dps: int) -> None:
    """ValueError naming the count and the budget when a build would exceed it (called before allocating)."""
    M, dps = counts["nodes_M"], counts["dps"]
    if not isinstance(M, int) or M > max_nodes:
        raise ValueError(f"node count M = {M} exceeds the node budget {max_nodes} "
                         f"(K={counts['K']}, L_p={counts['L_p']}, n={counts['n']})")
    if not isinstance(dps, int) or dps > max_dps:
        raise ValueError(f"{dps} digits needed (R = {counts['R']:.4g}) exceed the digits budget {max_dps}")


# --------------------------------------------------------------------------------------------
# the transformer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PromptTunedTransformer:
    """tau with one attention layer (one head), FF1 before it and FF2 (one wide or M narrow layers) after.

    Independent of the target f: ``prompt_for(f)`` builds P_f; ``__call__(Z)`` evaluates tau([P, X]) on
    Z = [P, X] (d x (L_p + L)) in mpmath and returns the last L columns as float64 (``exact=True``: ctx numbers).
    """

    d: int
    L: int
    K: int
    variant: str
    eta: float
    ff1: qz.FF1Quantizer
    head: cm.ContextualHead
    ff2: object
    ctx: object
    resources: dict
    node_min_gap_log10: float
    floor: object  # mpf in ctx: the derived floor of 'exact' outputs (see _rounding_floor)
    build_seconds: float
    _prompt_cache: dict = field(default_factory=dict, repr=False)

    @property
    def L_p(self) -> int:
        return self.resources["L_p"]

    @property
    def n(self) -> int:
        return self.L_p + self.L

    @property
    def delta(self) -> float:
        return 1.0 / self.K

    def prompt_for(self, f_or_table) -> np.ndarray:
        """P_f (d x L_p): column idx(G) L + k holds fbar(G)[:, k] (token-major lexicographic grid order)."""
        T = f_or_table if isinstance(f_or_table, np.ndarray) else qz.lookup_table(f_or_table, self.d, self.L, self.K)
        T = np.asarray(T, dtype=np.float64)
        N = self.K ** (self.d * self.L)
        if T.shape != (N, self.d, self.L):
            raise ValueError(f"table must have shape {(N, self.d, self.L)}, got {T.shape}")
        return T.transpose(1, 0, 2).reshape(self.d, N * self.L)

    def _ff1_columns(self, cols, offset):
        """FF1(x + position) for raw columns (lists of numbers) starting at 0-based column ``offset``."""
        ctx = self.ctx
        rows = [[ctx.mpf(float(c[i])) + (offset + j + 1) for j, c in enumerate(cols)] for i in range(self.d)]
        out = self.ff1.apply_mp(rows, ctx)
        return [[out[i, j] for i in range(self.d)] for j in range(len(cols))]

    def _prompt_tokens(self, P):
        key = P.tobytes()
        hit = self._prompt_cache.get(key)
        if hit is None:
            cols = [P[:, j] for j in range(P.shape[1])]
            hit = self._ff1_columns(cols, 0)
            if len(self._prompt_cache) > 64:
                self._prompt_cache.clear()
            self._prompt_cache[key] = hit
        return hit

    def forward_exact(self, P, X):
        """tau([P, X])_{:, L_p:} as L d-lists of ctx numbers (attention is evaluated only at the read columns:
        every later layer is token-wise, so the other columns cannot influence them)."""
        P = np.asarray(P, dtype=np.float64)
        X = np.asarray(X, dtype=np.float64)
        if P.shape != (self.d, self.L_p) or X.shape != (self.d, self.L):
            raise ValueError(f"expected P {(self.d, self.L_p)} and X {(self.d, self.L)}, got {P.shape}, {X.shape}")
        toks = self._prompt_tokens(P) + self._ff1_columns([X[:, j] for j in range(self.L)], self.L_p)
        ys = self.head.apply_mp(toks, self.ctx, queries=range(self.L_p, self.n))
        return [self.ff2.apply_column(y, self.ctx) for y in ys]

    def __call__(self, Z, exact: bool = False):
        Z = np.asarray(Z, dtype=np.float64)
        out = self.forward_exact(Z[:, : self.L_p], Z[:, self.L_p :])
        if exact:
            return out
        return np.array([[float(v) for v in col] for col in out]).T

    def predict(self, P, Xs) -> np.ndarray:
        """float64 outputs (B, d, L) for a batch of inputs Xs (B, d, L) under prompt P."""
        return np.stack([self(np.concatenate([P, X], axis=1)) for X in np.asarray(Xs, dtype=np.float64)])

    def in_ramp_set(self, X) -> bool:
        """Whether some entry of X + E (input columns) lies on an FF1 ramp."""
        X = np.asarray(X, dtype=np.float64)
        E = np.arange(self.L_p + 1, self.n + 1, dtype=np.float64)[None, :]
        return bool(np.any(self.ff1.in_ramp_set(X + E)))

    def ramp_term(self, alpha: float) -> float:
        """Ramp contribution to d_alpha: ramp_sup_bound * (measure of the input ramp set)^(1/alpha)."""
        mu = self.d * self.L * self.K * self.eta
        return ramp_sup_bound(self.d, self.L, self.n, alpha) * mu ** (1.0 / alpha)


def _enumerate_nodes(d, L, K, ff1, head, ctx, u, positional=True, restrict_prompts=None):
    """Contextual ids and targets for every grid prompt x grid input x read column (M = K^{dn} L nodes).

    Uses FF1 (the network) on each (position, cell) once and exp(xi p_q p_l) per (query cell, key position,
    key cell) once; each sequence then costs n multiply-adds per read column.
    """
    N = K ** (d * L)
    L_p = L * N
    n = L_p + L
    cells = list(itertools.product(range(K), repeat=d))
    delta = ctx.mpf(1) / K
    # FF1 outputs at each position for each cell (input = the cell centre, off every ramp)
    tok = []
    for j in range(n):
        cols = [[(ci + 0.5) / K for ci in cell] for cell in cells]
        off = (j + 1) if positional else 1
        rows = [[ctx.mpf(float(c[i])) + off for c in cols] for i in range(d)]
        out = ff1.apply_mp(rows, ctx)
        tok.append([[out[i, m] for i in range(d)] for m in range(len(cells))])
    w = [ctx.mpf(float(x)) for x in head.w]
    e = [ctx.mpf(float(x)) for x in head.e]
    p = [[ctx.fsum(a * b for a, b in zip(w, t, strict=False)) for t in tj] for tj in tok]
    xi = head._xi_mp(ctx)
    scale = ctx.mpf(head.eps) / (4 * ctx.mpf(head.r_max))
    # E[k][qc][j][kc] = exp(xi p_q p_key)
    ex = [[[[ctx.exp(xi * p[L_p + k][qc] * p[j][kc]) for kc in range(len(cells))] for j in range(n)]
           for qc in range(len(cells))] for k in range(L)]
    uu = [ctx.mpf(float(x)) for x in u]
    z, v, targets = [], [], []
    prompt_iter = itertools.product(range(len(cells)), repeat=L_p) if restrict_prompts is None else restrict_prompts
    for pc in prompt_iter:
        for gc in itertools.product(range(len(cells)), repeat=L):
            seq = tuple(pc) + gc
            # idx(G): token-major lexicographic digits G[:,0], G[:,1], ...
            idx = 0
            for c in gc:
                for ci in cells[c]:
                    idx = idx * K + ci
            for k in range(L):
                qc = gc[k]
                E = ex[k][qc]
                num = ctx.fsum(E[j][seq[j]] * p[j][seq[j]] for j in range(n))
                den = ctx.fsum(E[j][seq[j]] for j in range(n))
                s = num / den
                x = tok[L_p + k][qc]
                y = [x[i] + scale * e[i] * s for i in range(d)]
                tc = cells[pc[idx * L + k]]
                t = [(ci + ctx.mpf(0.5)) * delta for ci in tc]
                z.append(ctx.fsum(a * b for a, b in zip(uu, y, strict=False)))
                v.append([t[i] - y[i] for i in range(d)])
                targets.append(t)
    return z, v, targets


def build_ff2(z, v, targets, u, ctx, variant="two_ffn"):
    """FF2 through the contextual ids z with increments v = t - y (constructions.memorization's value maps).

    two_ffn: InterpolationFFN with extend="flat" (M ReLUs: constant beyond the extreme ids, so the output stays
    bounded on FF1's ramp set, where ids fall outside the node range; the linear extension's last slope reaches
    e^{2R}); multi_ffn: BumpStack (M layers of 4 ReLUs) guarded by the target ids u^T t (targets lie in [0,1],
    below every id, which is >= 1 after the positional offsets).
    """
    if variant == "two_ffn":
        return InterpolationFFN.from_nodes(z, v, u, ctx, extend="flat")
    tz = [ctx.fsum(ctx.mpf(float(a)) * b for a, b in zip(u, t, strict=False)) for t in targets]
    return BumpStack.from_nodes(z, v, [float(x) for x in u], target_ids=tz, ctx=ctx)


def _rounding_floor(ff2, ctx, counts, eta):
    """Floor for 'exact' outputs, in ctx (an mpf: as a float it underflows at dps > 308).

    slope x id error + accumulated rounding, id error ~ 10^{-dps} times FF1's 1/eta amplification (n K
    breakpoints) plus the softmax's R r_max n amplification. A worst-case first-order derivation (FF1's
    crossings of powers of two amplified by 1 + 2R and the largest FF2 slope) lands at the same size, so
    the ~1e-6 ratios seen are slack in the worst case, not padding.
    """
    smax = ff2.max_output_weight(ctx)
    n, K, R = counts["n"], counts["K"], counts["R"]
    ulp = ctx.mpf(2) ** (-ctx.prec)  # the context's unit roundoff (precision.backend_unit_roundoff's mpmath rule)
    id_err = ulp * ((n + 1) * n * K / ctx.mpf(eta) + (R + 10) * (n + 2) * n)
    return smax * id_err + ulp * counts["nodes_M"] * 10 * (n + 2)


@functools.lru_cache(maxsize=16)
def _build_cached(d, L, K, eta, variant, C, alpha, eps) -> PromptTunedTransformer:
    t0 = time.perf_counter()
    counts = resource_counts(d, L, C, alpha, eps, variant, K=K)
    dps_work = counts["dps"]
    ctx = cm.mp_context(dps_work, max_dps=10**9)
    N = K ** (d * L)
    n = L * N + L
    ff1 = qz.FF1Quantizer(d, K, n, eta, positional=True)
    vocab = np.array([[(j + 1) + (ci / K) for ci in cell] for j in range(n)
                      for cell in itertools.product(range(K), repeat=d)]).T
    head = _universality_head(vocab, n, K, d)
    u = head.w if d == 1 else np.abs(cm.random_unit(np.random.default_rng(1), d))
    z, v, targets = _enumerate_nodes(d, L, K, ff1, head, ctx, u)
    ff2 = build_ff2(z, v, targets, u, ctx, variant)
    zs = sorted(z)
    gap = min(b - a for a, b in zip(zs, zs[1:], strict=False))
    res = dict(counts)
    if variant == "two_ffn":
        res["ffn_widths"] = (ff1.hidden_width, ff2.hidden_width)
    else:
        res["ffn_layers"] = 1 + ff2.depth
        res["ffn_widths"] = (ff1.hidden_width, ff2.width)
    floor = _rounding_floor(ff2, ctx, counts, eta)
    return PromptTunedTransformer(d, L, K, variant, eta, ff1, head, ff2, ctx, res,
                                  float(ctx.log10(gap)), floor, time.perf_counter() - t0)


def _universality_head(vocab, n, K, d) -> cm.ContextualHead:
    """Lemma D over all positioned grid tokens: eps = delta, r_min = sqrt(d); d = 1: w = e = 1, c = 1.

    d > 1: eps = min(delta, the float vocabulary's own separation). For a non-dyadic K the float tokens
    j + 1 + c/K are rounded, so their spacing comes out a few ulps below 1/K; the head is built for the
    tokens it is given, whose separation is what Lemma D's hypothesis needs (a smaller eps is the sound side).
    """
    if d == 1:
        r_min, r_max = 1.0, float(n + 1 - 1.0 / K)
        return cm.ContextualHead(w=np.ones(1), e=np.ones(1), n=n, eps=1.0 / K, r_min=r_min, r_max=r_max, c=1.0,
                                 c_emp=1.0, n_vocab=vocab.shape[1])
    eps = min(1.0 / K, cm.separation(vocab)[2])
    return cm.lemma_d(vocab=vocab, n=n, eps=eps, c="theory", rng=np.random.default_rng(0))


def build_prompt_tuned_transformer(d, L, C, alpha, eps, variant="two_ffn", K=None, delta=None,
                                   max_nodes=DEFAULT_MAX_NODES, max_dps=DEFAULT_MAX_DPS) -> PromptTunedTransformer:
    """The frozen tau for (d, L, C, alpha, eps): K = choose_K(...) unless K (or delta = 1/K) is given.

    Refuses (ValueError naming the count and the budget) before allocating when the node count M or the digits
    exceed max_nodes / max_dps. Cached per size: tau does not depend on f (hu2024.md §5 item 21).
    Guarantee (hu2024.md §3.1-3.2 [D]): d_alpha(tau([P_f, .])_{:, L_p:}, f) <= (C + 1/2) delta (dL)^{1/alpha}
    + ramp term = resources["eps_guaranteed"], which is <= 2 eps / 3 when K = choose_K(C, d, L, alpha, eps).
    """
    _validate(d, L, C, alpha, eps, variant)
    K = _resolve_K(d, L, C, alpha, eps, K, delta)
    counts = resource_counts(d, L, C, alpha, eps, variant, K=K)
    check_budget(counts, max_nodes, max_dps)
    return _build_cached(int(d), int(L), K, counts["eta"], variant, float(C), float(alpha), float(eps))


def estimate_build_seconds(counts: dict, sec_per_op: float | None = None) -> float:
    """Rough build time: M nodes x (2n + 8) multiply-adds at the needed digits (pure-python mpmath)."""
    M, dps = counts["nodes_M"], counts["dps"]
    if not isinstance(M, int) or not isinstance(dps, int):
        return math.inf
    if sec_per_op is None:
        sec_per_op = 2e-6 * (1 + (dps / 300.0) ** 1.6)
    return M * (2 * counts["n"] + 8) * sec_per_op
