"""Polynomial-method ("fast") attention of Alman & Song 2023 and its prompt-tuning form (Hu et al. 2024).

Att(Q, K, V) = D^-1 A V,  A = exp(scale Q K^T),  D = diag(A 1)         (AS23 §1, rows are tokens here)
A ~ Ã = P(scale Q K^T) = phi(Q) psi(K)^T,  rank r = C(d+g, g)          (AS23 Lemma 3.x; tighter count, digest §1.3)
|Ã - A| <= rho A entrywise  =>  ||D̃^-1 Ã V - D^-1 A V||_max <= 2 rho/(1 - rho) ||V||_max   (digest §1.3 step 4)

One array-API code path (numpy, torch, jax through array_api_compat): the features are built by
gather-and-multiply from a plan computed once per (d, g), the n x n matrix is never formed, and
keys/queries are processed in chunks so memory is O(chunk r + r d_v). ``polynomial_attention`` is
jit-able under jax when ``beta`` is passed (the degree must be static).

The a-priori relative error bounds rho(g, beta) on [-beta, beta] (fast_attention.md §4.2):
  centred Taylor    rho <= e^beta beta^(g+1) / (g+1)!
  Chebyshev interp. rho <= 2 (beta/2)^(g+1) e^(2 beta) / (g+1)!
each plus the float64 rounding of the monomial coefficients, u * sum_j |c_j| beta^j * e^beta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from constructions.precision import unit_roundoff

U64 = unit_roundoff("float64")
KINDS = ("chebyshev", "taylor")
G_MAX = 400  # largest polynomial degree searched; beyond it the instance is out of reach anyway
DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes for one chunk of features plus the r x (d_v+1) state
# ~4 MiB of features per chunk: stays in cache (measured, d=4, r=495: 1024 tokens per chunk beat 2824 by 7x)
_CHUNK_TARGET_BYTES = 1 << 22
_CHUNK_MIN_TOKENS = 512  # measured, d=8, r=12870, n=4096: 40 tokens 8.5 s, 128 4.8 s, 512 3.9 s
_GRID = 4097


# --------------------------------------------------------------------------------------------------------------
# Step 1: the polynomial
# --------------------------------------------------------------------------------------------------------------


def log_rho_bound(kind: str, g: int, beta: float) -> float:
    """log of the a-priori relative error bound of the exact degree-g polynomial on [-beta, beta] (-inf if 0)."""
    if beta == 0.0:
        return -math.inf
    lb = math.log(beta)
    if kind == "taylor":
        return beta + (g + 1) * lb - math.lgamma(g + 2)
    if kind == "chebyshev":
        return math.log(2.0) + (g + 1) * (lb - math.log(2.0)) + 2.0 * beta - math.lgamma(g + 2)
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def coefficient_floor(beta: float) -> float:
    """Relative error from float64 coefficients c_j ~ 1/j!: u * sum|c_j| beta^j * e^beta <= 2 u e^(2 beta)."""
    return 2.0 * U64 * math.exp(min(2.0 * beta, 700.0))


def rho_bound(kind: str, g: int, beta: float) -> float:
    """Rigorous sup_{|x| <= beta} |P(x)/e^x - 1| for the float64-coefficient polynomial of degree g."""
    lr = log_rho_bound(kind, g, beta)
    core = 0.0 if lr == -math.inf else math.exp(min(lr, 700.0))
    return core + (coefficient_floor(beta) if beta > 0 else 0.0)


def required_degree(beta: float, eps: float, kind: str = "chebyshev", g_max: int = G_MAX) -> int:
    """Least g with rho_bound(kind, g, beta) <= eps (ValueError naming the limit when none <= g_max exists)."""
    _check_eps(eps)
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be finite and >= 0, got {beta!r}")
    if beta == 0.0:
        return 0
    floor = coefficient_floor(beta)
    if floor >= eps:
        raise ValueError(
            f"eps={eps:g} is below the float64 floor u*e^(2 beta)={floor:.3g} at beta={beta:g}: "
            "no polynomial in float64 coefficients certifies it (lower beta or raise eps)"
        )
    target = math.log(eps - floor)
    for g in range(g_max + 1):
        if log_rho_bound(kind, g, beta) <= target:
            return g
    raise ValueError(f"degree needed for eps={eps:g} at beta={beta:g} exceeds g_max={g_max}")


def degree_for_log_eps(beta: float, log_eps: float, kind: str = "chebyshev", g_max: int = 10**6) -> int:
    """Least g with log rho_exact(g, beta) <= log_eps, ignoring the float64 floor (for asymptotic rank tables)."""
    if beta == 0.0:
        return 0
    # log rho is concave in g (its step is log beta - log(g + 2)): the degrees that meet log eps are [0, a) and
    # (b, inf), so g = 0 is tested first and the search brackets the tail (beta > 1, eps >= 1 has both parts)
    if log_rho_bound(kind, 0, beta) <= log_eps:
        return 0
    lo, hi = 0, 1
    while log_rho_bound(kind, hi, beta) > log_eps:
        if hi >= g_max:
            raise ValueError(f"degree needed exceeds g_max={g_max} (beta={beta:g}, log eps={log_eps:g})")
        lo, hi = hi, min(2 * hi, g_max)
    while lo < hi:  # bound(lo) > log eps >= bound(hi), and the tail is where the bound meets log eps
        mid = (lo + hi) // 2
        if log_rho_bound(kind, mid, beta) <= log_eps:
            hi = mid
        else:
            lo = mid + 1
    return lo


@lru_cache(maxsize=512)
def _coefficients(kind: str, g: int, beta: float) -> tuple[float, ...]:
    """Monomial coefficients of the degree-g approximant, computed in mpmath and rounded once to float64."""
    if kind == "taylor" or beta == 0.0:
        return tuple(1 / math.factorial(j) for j in range(g + 1))  # int / int: rounded once, no OverflowError past 170!
    import mpmath

    ctx = mpmath.MPContext()
    ctx.dps = 30 + int(0.7 * g)  # T_m has coefficients up to 2^(m-1): cancellation needs ~0.3 g extra digits
    b = ctx.mpf(beta)
    m = g + 1
    thetas = [ctx.pi * (k + ctx.mpf(1) / 2) / m for k in range(m)]
    fvals = [ctx.exp(b * ctx.cos(t)) for t in thetas]
    a = [2 * ctx.fsum(f * ctx.cos(j * t) for f, t in zip(fvals, thetas, strict=True)) / m for j in range(m)]
    a[0] /= 2
    # sum_j a_j T_j(t) in the monomial basis of t, then t = x / beta
    poly = [ctx.mpf(0)] * m
    t_prev, t_cur = [ctx.mpf(1)], [ctx.mpf(0), ctx.mpf(1)]
    for j in range(m):
        tj = t_prev if j == 0 else t_cur
        for i, c in enumerate(tj):
            poly[i] += a[j] * c
        if j >= 1:
            t_next = [ctx.mpf(0)] + [2 * c for c in t_cur]
            for i, c in enumerate(t_prev):
                t_next[i] -= c
            t_prev, t_cur = t_cur, t_next
    return tuple(float(poly[i] / b**i) for i in range(m))


def horner(coeffs, x, xp=None):
    """sum_j coeffs[j] x^j in the namespace of x."""
    xp = xp or array_namespace(x)
    acc = xp.zeros_like(x) + coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = acc * x + c
    return acc


@dataclass(frozen=True)
class ExpPolynomial:
    """P(x) ~ e^x on [-beta, beta] with sup |P/e^x - 1| <= rho_bound (rigorous) and rho_measured (dense grid)."""

    kind: str
    beta: float
    eps: float
    degree: int
    coeffs: tuple[float, ...]
    rho_bound: float
    rho_measured: float

    def __call__(self, x):
        return horner(self.coeffs, x)


def measured_rho(coeffs, beta: float, points: int = _GRID) -> float:
    """max |P(x) e^-x - 1| over a dense grid of [-beta, beta] (float64)."""
    x = np.linspace(-beta, beta, points)
    return float(np.max(np.abs(horner(coeffs, x, np) * np.exp(-x) - 1.0)))


def exp_polynomial(beta: float, eps: float, kind: str = "chebyshev", *, degree: int | None = None) -> ExpPolynomial:
    """The least-degree polynomial of ``kind`` with rigorous relative error <= eps on [-beta, beta] (AA22 / AS23 L3.1).

    ``degree`` overrides the choice (the certificate then reports rho_bound(degree), which may exceed eps).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    beta = float(beta)
    g = required_degree(beta, eps, kind) if degree is None else int(degree)
    if g < 0 or g > G_MAX:
        raise ValueError(f"degree must lie in [0, {G_MAX}], got {g}")
    coeffs = _coefficients(kind, g, beta)
    return ExpPolynomial(kind, beta, float(eps), g, coeffs, rho_bound(kind, g, beta), measured_rho(coeffs, beta))


# --------------------------------------------------------------------------------------------------------------
# Step 2: the monomial feature plan, phi(q) . psi(k) = P(scale q . k)
# --------------------------------------------------------------------------------------------------------------


def feature_rank(d: int, g: int) -> int:
    """r = sum_{j<=g} C(d+j-1, j) = C(d+g, g): monomials of degree <= g in d variables."""
    return math.comb(d + g, g)


def paper_rank_bound(d: int, g: int) -> int:
    """AS23's rank bound C(2(g+d), 2g) (monomials of degree <= 2g in 2d variables)."""
    return math.comb(2 * (g + d), 2 * g)


@dataclass(frozen=True)
class FeaturePlan:
    """All monomials of degree <= g in d variables, graded, each degree ordered by its largest variable.

    Degree-j block, variable c: the monomials with largest variable c are X_c times the degree-(j-1) monomials
    whose largest variable is <= c, and those are a *prefix* of block j-1 (length C(c+j-1, j-1)). So block j is
    concat_c X_c * M_{j-1}[:C(c+j-1, j-1)]: slices and broadcast products only, no gather, no index arrays (one
    code path for numpy, torch and jax, jit-able). Multinomials are exact j!/alpha! (python ints).
    """

    d: int
    g: int
    r: int
    prefixes: tuple[tuple[int, ...], ...]  # prefixes[j-1][c] = C(c+j-1, j-1): rows of block j-1 used with X_c
    multinomials: tuple[int, ...]
    degrees: np.ndarray

    def weights(self, coeffs) -> np.ndarray:
        """psi's weights c_deg(alpha) * j!/alpha! (float64), so that phi = monomials, psi = weights * monomials."""
        pairs = zip(self.degrees.tolist(), self.multinomials, strict=True)
        return np.array([coeffs[j] * m for j, m in pairs], dtype=np.float64)

    def block_offsets(self) -> tuple[int, ...]:
        """Row offsets of the degree blocks: block j is rows [offsets[j], offsets[j+1]), C(d+j-1, j) rows."""
        return tuple([0] + [math.comb(self.d + j, j) for j in range(self.g + 1)])


@lru_cache(maxsize=64)
def feature_plan(d: int, g: int) -> FeaturePlan:
    if d < 1 or g < 0:
        raise ValueError(f"need d >= 1 and g >= 0, got d={d}, g={g}")
    last, run, mult = [-1], [0], [1]  # degree 0: the empty multiset (largest variable -1: a prefix of every c)
    mults, degs, prefixes = [1], [0], []
    for j in range(1, g + 1):
        pre = tuple(math.comb(c + j - 1, j - 1) for c in range(d))
        nl, nr, nm = [], [], []
        for c in range(d):
            for p in range(pre[c]):  # parents with largest variable <= c, extended by c
                run_c = run[p] + 1 if last[p] == c else 1
                nl.append(c)
                nr.append(run_c)
                nm.append(mult[p] * j // run_c)  # j!/alpha! = (j-1)!/alpha'! * j / alpha_c, exact
        prefixes.append(pre)
        mults.extend(nm)
        degs.extend([j] * len(nm))
        last, run, mult = nl, nr, nm
    r = len(mults)
    assert r == feature_rank(d, g)
    return FeaturePlan(d, g, r, tuple(prefixes), tuple(mults), np.array(degs))


def monomial_blocks(plan: FeaturePlan, Xt, xp=None) -> list:
    """Monomials of the columns of Xt (d x m) by degree: block j is C(d+j-1, j) x m (prefix slices x rows of Xt)."""
    xp = xp or array_namespace(Xt)
    prev = xp.ones((1, Xt.shape[1]), dtype=Xt.dtype, device=array_device(Xt))
    blocks = [prev]
    for pre in plan.prefixes:
        parts = [prev[: pre[c], :] * Xt[c : c + 1, :] for c in range(plan.d)]
        prev = parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)
        blocks.append(prev)
    return blocks


def monomials(plan: FeaturePlan, Xt, xp=None):
    """All monomials of the columns of Xt (d x m): an r x m array."""
    xp = xp or array_namespace(Xt)
    blocks = monomial_blocks(plan, Xt, xp)
    return blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=0)


def feature_maps(plan: FeaturePlan, poly: ExpPolynomial, Q, K, scale: float):
    """(phi(Q), psi(K)) as r x n arrays with phi(Q)^T psi(K) = P(scale Q K^T) (Q, K: rows are tokens)."""
    xp = array_namespace(Q, K)
    s = math.sqrt(scale)
    w = xp.asarray(plan.weights(poly.coeffs), dtype=K.dtype, device=array_device(K))
    return monomials(plan, xp.matrix_transpose(Q) * s, xp), w[:, None] * monomials(plan, xp.matrix_transpose(K) * s, xp)


def poly_kernel(poly: ExpPolynomial, Q, K, scale: float):
    """P(scale Q K^T) evaluated directly (quadratic; the reference for the low-rank identity)."""
    xp = array_namespace(Q, K)
    return horner(poly.coeffs, scale * xp.matmul(Q, xp.matrix_transpose(K)), xp)


def lowrank_kernel(poly: ExpPolynomial, Q, K, scale: float):
    """phi(Q)^T psi(K): the n x n low-rank kernel (quadratic memory; for checks only)."""
    xp = array_namespace(Q, K)
    plan = feature_plan(Q.shape[1], poly.degree)
    fq, fk = feature_maps(plan, poly, Q, K, scale)
    return xp.matmul(xp.matrix_transpose(fq), fk)


# --------------------------------------------------------------------------------------------------------------
# Step 3: normalised output, chunked
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionCertificate:
    """What polynomial_attention guarantees: ||out - Att||_max <= output_bound = 2 rho/(1-rho) ||V||_max."""

    n: int
    d: int
    scale: float
    beta: float
    kind: str
    eps: float
    degree: int
    rank: int
    paper_rank_bound: int
    rho: float
    rho_measured: float
    v_max: float
    output_bound: float
    chunk: int


def _check_eps(eps) -> None:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and 0.0 < eps < 1.0):
        raise ValueError(f"eps must lie in (0, 1) (relative kernel error), got {eps!r}")


def _concrete(x):
    """float(x), or None for a traced (jax.jit) value."""
    try:
        return float(x)
    except Exception:  # jax raises ConcretizationTypeError (a TypeError) on tracers
        return None


def score_halfwidth(Q, K, scale: float) -> float:
    """A-priori beta >= max |scale q_i . k_j| in O(n d): min(Cauchy-Schwarz, entry bound) (digest §4.1)."""
    xp = array_namespace(Q, K)
    cs = xp.sqrt(xp.max(xp.sum(Q * Q, axis=1))) * xp.sqrt(xp.max(xp.sum(K * K, axis=1)))
    ent = Q.shape[1] * xp.max(xp.abs(Q)) * xp.max(xp.abs(K))
    b = _concrete(scale * xp.minimum(cs, ent))
    if b is None:
        raise ValueError("beta cannot be computed from traced arrays: pass beta= explicitly under jax.jit")
    # the float reduction may round below the true maximum; one relative ulp-scale nudge keeps it an upper bound
    return b * (1.0 + 4 * Q.shape[1] * U64)


def validate_inputs(Q, K, V, eps, scale):
    for name, a in (("Q", Q), ("K", K), ("V", V)):
        if len(a.shape) != 2:
            raise ValueError(f"{name} must be 2-D (tokens x features), got shape {tuple(a.shape)}")
    if Q.shape[1] != K.shape[1]:
        raise ValueError(f"Q and K must share the feature dimension, got {Q.shape[1]} and {K.shape[1]}")
    if K.shape[0] != V.shape[0]:
        raise ValueError(f"K and V must have the same number of tokens, got {K.shape[0]} and {V.shape[0]}")
    if min(Q.shape[0], K.shape[0], Q.shape[1], V.shape[1]) < 1:
        raise ValueError(f"empty input: Q {tuple(Q.shape)}, K {tuple(K.shape)}, V {tuple(V.shape)}")
    _check_eps(eps)
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    xp = array_namespace(Q, K, V)
    for name, a in (("Q", Q), ("K", K), ("V", V)):
        ok = _concrete(xp.all(xp.isfinite(a)))
        if ok is not None and not ok:
            raise ValueError(f"{name} has non-finite entries (nan or inf)")


def _itemsize(x) -> int:
    return 4 if "float32" in str(x.dtype) else 8


def plan_attention(n: int, d: int, dv: int, beta: float, eps: float, *, kind="chebyshev", itemsize=8,
                   chunk=None, memory_budget=DEFAULT_MEMORY_BUDGET, degree=None):
    """(poly, plan, chunk) for an instance, checking the memory budget BEFORE building anything of size r."""
    g = required_degree(beta, eps, kind) if degree is None else int(degree)
    r = feature_rank(d, g)
    c_min = min(n, 16) if chunk is None else int(chunk)
    if c_min < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    need = itemsize * r * (3 * c_min + dv + 1)  # monomial blocks + gather temporaries + state
    if need > memory_budget:
        raise ValueError(
            f"rank r = C(d+g, g) = C({d}+{g}, {g}) = {r} needs {need / 2**20:.1f} MiB per chunk of {c_min} tokens, "
            f"over the memory budget of {memory_budget / 2**20:.1f} MiB (beta={beta:g}, eps={eps:g})"
        )
    if chunk is None:
        # at large r the cache target leaves too few tokens for an efficient GEMM: at least _CHUNK_MIN_TOKENS
        chunk = max(c_min, min(n, max(_CHUNK_TARGET_BYTES // (itemsize * r), _CHUNK_MIN_TOKENS)))
        chunk = max(1, min(chunk, memory_budget // (itemsize * r * 3) - 1, n))
    poly = exp_polynomial(beta, eps, kind, degree=g)
    return poly, feature_plan(d, g), int(chunk)


def lowrank_apply(plan: FeaturePlan, poly: ExpPolynomial, Q, K, V, scale: float, chunk: int):
    """D̃^-1 phi(Q)^T (psi(K) [V | 1]), keys and queries in chunks; jit-friendly (static shapes, python loops).

    Per degree block j: S_j = w_j * (M_j(K') [V | 1]) (the weights applied to the r_j x (d_v+1) state, not to
    the r_j x chunk features), Y = sum_j M_j(Q')^T S_j, out = Y[:, :d_v] / Y[:, d_v]; K' = sqrt(scale) K.
    """
    xp = array_namespace(Q, K, V)
    dev = array_device(K)
    s = math.sqrt(scale)
    w = xp.asarray(plan.weights(poly.coeffs), dtype=K.dtype, device=dev)[:, None]
    offsets = plan.block_offsets()
    Va = xp.concat([V, xp.ones((V.shape[0], 1), dtype=V.dtype, device=dev)], axis=1)
    # per-degree blocks: no r x chunk concatenation, one skinny GEMM per degree
    S = [None] * (plan.g + 1)
    for a in range(0, K.shape[0], chunk):
        blocks = monomial_blocks(plan, xp.matrix_transpose(K[a : a + chunk, :]) * s, xp)
        for j, blk in enumerate(blocks):
            part = xp.matmul(blk, Va[a : a + chunk, :])
            S[j] = part if S[j] is None else S[j] + part
    S = [w[offsets[j] : offsets[j + 1]] * S[j] for j in range(plan.g + 1)]
    outs = []
    for a in range(0, Q.shape[0], chunk):
        blocks = monomial_blocks(plan, xp.matrix_transpose(Q[a : a + chunk, :]) * s, xp)
        Y = None
        for j, blk in enumerate(blocks):
            part = xp.matmul(xp.matrix_transpose(blk), S[j])
            Y = part if Y is None else Y + part
        outs.append(Y[:, :-1] / Y[:, -1:])
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)


def polynomial_attention(Q, K, V, *, eps: float, scale: float, chunk: int | None = None, beta: float | None = None,
                         kind: str = "chebyshev", memory_budget: int = DEFAULT_MEMORY_BUDGET,
                         degree: int | None = None):
    """Alman–Song attention: (output, AttentionCertificate); rows are tokens, Q, K: n x d, V: n x d_v.

    beta: score half-width the polynomial covers; computed from Q, K if None (pass it under jax.jit, where it
    must be a python float). A given beta smaller than the data's a-priori half-width is a ValueError.
    """
    validate_inputs(Q, K, V, eps, scale)
    if beta is None:
        beta = score_halfwidth(Q, K, scale)
    else:
        beta = float(beta)
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be finite and >= 0, got {beta!r}")
        try:
            data_beta = score_halfwidth(Q, K, scale)
        except ValueError:  # traced under jit: the caller vouches for beta
            data_beta = None
        if data_beta is not None and data_beta > beta * (1 + 1e-12):
            raise ValueError(
                f"beta={beta:g} is below the a-priori score half-width {data_beta:g} of Q, K: the bound would not hold"
            )
    n, d = Q.shape
    poly, plan, chunk = plan_attention(
        max(Q.shape[0], K.shape[0]), d, V.shape[1], beta, eps, kind=kind, itemsize=_itemsize(Q), chunk=chunk,
        memory_budget=memory_budget, degree=degree,
    )
    out = lowrank_apply(plan, poly, Q, K, V, scale, chunk)
    xp = array_namespace(V)
    vmax = _concrete(xp.max(xp.abs(V)))
    vmax = math.nan if vmax is None else vmax
    rho = poly.rho_bound
    bound = 2 * rho / (1 - rho) * vmax if rho < 1 else math.inf
    cert = AttentionCertificate(
        n=n, d=d, scale=float(scale), beta=beta, kind=kind, eps=float(eps), degree=poly.degree, rank=plan.r,
        paper_rank_bound=paper_rank_bound(d, poly.degree), rho=rho, rho_measured=poly.rho_measured, v_max=vmax,
        output_bound=bound, chunk=chunk,
    )
    return out, cert


def exact_attention(Q, K, V, *, scale: float, block: int = 256):
    """softmax(scale Q K^T) V blockwise over queries (O(block n) memory), in the inputs' namespace and dtype."""
    xp = array_namespace(Q, K, V)
    Kt = xp.matrix_transpose(K)
    outs = []
    for a in range(0, Q.shape[0], block):
        S = scale * xp.matmul(Q[a : a + block, :], Kt)
        E = xp.exp(S - xp.max(S, axis=1, keepdims=True))
        outs.append(xp.matmul(E, V) / xp.sum(E, axis=1, keepdims=True))
    return outs[0] if len(outs) == 1 else xp.concat(outs, axis=0)
