"""Grid quantizers, piecewise-constant surrogates and their one-FFN ReLU realisation (Hu et al. 2024 §3.1–3.2).

Conventions (hu2024.md §1.3, §3.1; reconstruction [D]):

* K = 1/delta levels per coordinate, grid levels {0, delta, ..., 1 - delta};
* Q_delta(t) = delta * min(floor(t / delta), K - 1) entry-wise (1 maps to 1 - delta); the centred version
  adds delta/2 (cell centres);
* the surrogate of f is fbar = centred_Q o f o Q_delta, constant on every cube S_G;
* grid inputs G in {0..K-1}^{d x L} (cell indices) are ordered **token-major lexicographically**: the
  digits are G[:,0] (coordinates 0..d-1), then G[:,1], ..., the first digit most significant, i.e.
  idx(G) = sum_r digit_r K^(dL-1-r) with digits = G.T.ravel(). Table prompts use this order.

The FFN quantizer (FF1) realises the staircase t -> delta*floor(t/delta) on the positional range
[1, n+1) with two ReLUs per breakpoint (ramps of width eta) plus one identity ReLU per coordinate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from constructions.precision import UNIT_ROUNDOFF as _ROUNDOFF
from constructions.precision import gamma

GRID_MAX_ENTRIES = 2**22  # budget for enumerated grids / lookup tables: N * d * L float64 entries
FF1_MAX_WEIGHT_ENTRIES = 4_000_000  # budget for the dense W1 (hidden x d) and W2 (d x hidden)
FF1_MAX_ACTIVATIONS = 20_000_000  # budget for hidden x tokens activations in one float64 call
U64 = _ROUNDOFF["float64"]


def check_K(K) -> int:
    """K as an int: ValueError unless K = 1/delta is an integer >= 1."""
    if isinstance(K, bool) or not isinstance(K, (int, np.integer, float, np.floating)):
        raise ValueError(f"K = 1/delta must be an integer >= 1, got {K!r}")
    if not float(K).is_integer() or K < 1:
        raise ValueError(f"1/delta must be an integer (K >= 1 levels per coordinate), got K = {K!r}")
    return int(K)


_check_K = check_K  # the old private name, still imported by other modules


def grid_levels(K) -> np.ndarray:
    """The K lower cell corners {0, 1/K, ..., (K-1)/K} (K = 1/delta)."""
    K = check_K(K)
    return np.arange(K, dtype=np.float64) / K


def cell_index(X, K) -> np.ndarray:
    """Integer cell indices min(floor(K t), K-1), clipped below at 0 (the domain is [0,1])."""
    K = check_K(K)
    k = np.floor(np.asarray(X, dtype=np.float64) * K)
    return np.clip(k, 0, K - 1).astype(np.int64)


def quantize(X, K) -> np.ndarray:
    """Q_delta(X) = delta * min(floor(X/delta), K-1) entry-wise, delta = 1/K (hu2024.md §3.1)."""
    return cell_index(X, K) / float(check_K(K))


def centred_quantize(X, K) -> np.ndarray:
    """Q_delta(X) + delta/2: the cell centre; its error is <= delta/2 per entry on [0,1]."""
    K = check_K(K)
    return (cell_index(X, K) + 0.5) / K


def surrogate(f, K):
    """fbar = centred_Q o f o Q_delta: piecewise constant on the cubes S_G, centred output grid.

    Bound (hu2024.md §3.1 [D]): sup_X ||f(X) - fbar(X)||_alpha <= (C + 1/2) delta (dL)^(1/alpha) for f in F_C.
    """
    K = check_K(K)

    def fbar(X):
        return centred_quantize(f(quantize(X, K)), K)

    fbar.K = K
    return fbar


def grid_size(d: int, L: int, K: int) -> int:
    """N = K^{dL}, the number of grid inputs (exact Python int)."""
    return int(check_K(K)) ** (int(d) * int(L))


def grid_index(cells, K) -> np.ndarray:
    """idx(G) for integer cells (d, L) or (B, d, L): token-major lexicographic, first digit most significant."""
    K = check_K(K)
    c = np.asarray(cells, dtype=np.int64)
    single = c.ndim == 2
    if single:
        c = c[None]
    B, d, L = c.shape
    if float(K) ** (d * L) > 2**62:
        raise ValueError(f"grid of K^(dL) = {K}^{d * L} cells exceeds budget 2^62 for int64 indices")
    digits = c.transpose(0, 2, 1).reshape(B, d * L)
    idx = np.zeros(B, dtype=np.int64)
    for r in range(d * L):
        idx = idx * K + digits[:, r]
    return idx[0] if single else idx


def grid_cells(idx, d: int, L: int, K) -> np.ndarray:
    """Inverse of grid_index: integer cells (d, L) (or (B, d, L) for an index array)."""
    K = check_K(K)
    i = np.asarray(idx, dtype=np.int64)
    single = i.ndim == 0
    i = i.reshape(-1).copy()
    digits = np.zeros((i.size, d * L), dtype=np.int64)
    for r in range(d * L - 1, -1, -1):
        digits[:, r] = i % K
        i //= K
    cells = digits.reshape(-1, L, d).transpose(0, 2, 1)
    return cells[0] if single else cells


def all_grid_points(d: int, L: int, K) -> np.ndarray:
    """All N = K^{dL} lower-corner grid inputs G (N, d, L) in token-major lexicographic order."""
    K = check_K(K)
    N = grid_size(d, L, K)
    if N * d * L > GRID_MAX_ENTRIES:
        raise ValueError(f"grid of {N} inputs x {d * L} entries exceeds budget {GRID_MAX_ENTRIES} entries")
    return grid_cells(np.arange(N), d, L, K) / float(K)


def lookup_table(f, d: int, L: int, K) -> np.ndarray:
    """T_f[idx(G)] = fbar(G) = centred_Q(f(G)) for every grid input G: array (N, d, L), N = K^{dL}."""
    G = all_grid_points(d, L, K)
    return centred_quantize(np.asarray(f(G), dtype=np.float64), K)


def choose_K(C: float, d: int, L: int, alpha: float, eps: float) -> int:
    """K = ceil(3 (C + 1/2) (dL)^(1/alpha) / eps): then (C + 1/2) delta (dL)^(1/alpha) <= eps/3 (hu2024.md §3.1)."""
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be > 0, got {eps}")
    if not (np.isfinite(C) and C >= 0):
        raise ValueError(f"Lipschitz constant C must be >= 0, got {C}")
    if not (np.isfinite(alpha) and alpha >= 1):
        raise ValueError(f"alpha must satisfy 1 <= alpha < inf, got {alpha}")
    if int(d) != d or d < 1 or int(L) != L or L < 1:
        raise ValueError(f"d and L must be positive integers, got d={d}, L={L}")
    return int(math.ceil(3.0 * (C + 0.5) * (d * L) ** (1.0 / alpha) / eps))


def surrogate_sup_bound(C: float, d: int, L: int, alpha: float, K) -> float:
    """(C + 1/2) delta (dL)^(1/alpha): the sup-norm bound of hu2024.md §3.1 / §5 item 1."""
    return (C + 0.5) / check_K(K) * (d * L) ** (1.0 / alpha)


# --------------------------------------------------------------------------------------------
# FF1: the staircase as one residual ReLU FFN
# --------------------------------------------------------------------------------------------


def positional_encoding(d: int, n: int) -> np.ndarray:
    """E (d, n) with column c (0-based) equal to (c+1) 1_d: positions 1..n, so positioned tokens are >= 1."""
    return np.tile(np.arange(1, n + 1, dtype=np.float64), (d, 1))


def breakpoint_gap(tb: np.ndarray, Z) -> np.ndarray:
    """Entry-wise t_b - t for the first breakpoint t_b > t of the sorted ``tb`` (inf past the last one).

    An entry is on the ramp set of width eta when this gap is < eta (FF1Quantizer.in_ramp_set).
    """
    Z = np.asarray(Z, dtype=np.float64)
    if tb.size == 0:
        return np.full(Z.shape, np.inf)
    nxt = np.searchsorted(tb, Z, side="right")
    return np.where(nxt < tb.size, tb[np.minimum(nxt, tb.size - 1)] - Z, np.inf)


def ff1_breakpoints(K, n_positions: int, positional: bool = True) -> tuple[float, np.ndarray]:
    """(base, t_b): base level and the breakpoints, all multiples of delta strictly inside the range.

    positional: range [1, n+1), t_b = 1 + b delta for b = 1..nK-1; unit box: [0,1], t_b = b delta, b = 1..K-1.
    """
    K = check_K(K)
    if positional:
        b = np.arange(1, n_positions * K, dtype=np.float64)
        return 1.0, 1.0 + b / K
    return 0.0, np.arange(1, K, dtype=np.float64) / K


def ff1_weights(d: int, K, n_positions: int, eta: float, positional: bool = True):
    """(W1, b1, W2, b2) of FF1(z) = z + W2 ReLU(W1 z + b1) + b2, no validation beyond shapes.

    Per coordinate i and breakpoint t_b: ReLU((t - t_b)/eta + 1) - ReLU((t - t_b)/eta) (weight +-delta),
    plus ReLU(t) with weight -1 (cancels the residual on t >= 0), and b2 = base. Hidden units are grouped
    by coordinate: [pairs for coordinate 0, identity 0, pairs for coordinate 1, identity 1, ...].
    """
    K = check_K(K)
    base, tb = ff1_breakpoints(K, n_positions, positional)
    nb = tb.size
    per = 2 * nb + 1
    H = d * per
    if H * d > FF1_MAX_WEIGHT_ENTRIES:
        raise ValueError(f"FF1 weights of {H} hidden x {d} exceed budget {FF1_MAX_WEIGHT_ENTRIES} entries")
    W1 = np.zeros((H, d))
    b1 = np.zeros(H)
    W2 = np.zeros((d, H))
    delta = 1.0 / K
    for i in range(d):
        o = i * per
        W1[o : o + 2 * nb : 2, i] = 1.0 / eta
        W1[o + 1 : o + 2 * nb : 2, i] = 1.0 / eta
        b1[o : o + 2 * nb : 2] = 1.0 - tb / eta
        b1[o + 1 : o + 2 * nb : 2] = -tb / eta
        W2[i, o : o + 2 * nb : 2] = delta
        W2[i, o + 1 : o + 2 * nb : 2] = -delta
        W1[o + 2 * nb, i] = 1.0
        W2[i, o + 2 * nb] = -1.0
    b2 = np.full(d, base)
    return W1, b1, W2, b2


def ffn_apply(W1, b1, W2, b2, Z) -> np.ndarray:
    """Residual token-wise FFN z + W2 ReLU(W1 z + b1) + b2 on the columns of Z (float64)."""
    Z = np.asarray(Z, dtype=np.float64)
    if W1.shape[0] * Z.shape[1] > FF1_MAX_ACTIVATIONS:
        raise ValueError(f"{W1.shape[0]} hidden x {Z.shape[1]} tokens exceeds budget {FF1_MAX_ACTIVATIONS}")
    return Z + W2 @ np.maximum(W1 @ Z + b1[:, None], 0.0) + b2[:, None]


def _gammas(counts, u: float) -> np.ndarray:
    """gamma_k (constructions.precision.gamma) for an integer array of term counts k."""
    counts = np.asarray(counts, dtype=np.int64)
    table = {int(k): gamma(int(k), u) for k in np.unique(counts)}
    return np.vectorize(table.__getitem__, otypes=[np.float64])(counts) if counts.size else counts.astype(float)


def ffn_rounding_floor(W1, b1, W2, b2, Z, u: float = U64) -> np.ndarray:
    """Per-entry bound on |ffn_apply(W1, b1, W2, b2, Z) - exact value| for these (float) weights and inputs.

    Operation by operation (Higham §3.1, gamma_k = k u / (1 - k u)); a term that is exactly 0 (a zero weight, an
    inactive unit) adds no rounding, so k counts the nonzero terms:
      pre-activation a = W1 z + b1 with k1 = nnz(W1 row) + 1 terms: |fl(a) - a| <= e_a = gamma_{k1} A,
        A = |W1| |z| + |b1|;
      ReLU is exact and 1-Lipschitz; a unit with a < -e_a is 0 on both sides, so only the units with
        fl(a) > -2 e_a ("live", a superset) carry e_a;
      r = W2 h over the k2 live nonzero terms, then z + r + b2 (two more roundings), g = gamma_{k2 + 2}:
        |err| <= (1 + g) |W2| e_live + g (|z| + |b2| + |W2| (|fl(h)| + e_live)).
    Every magnitude is an input or an intermediate (fl(a), fl(h)), never the output under test.
    """
    Z = np.asarray(Z, dtype=np.float64)
    W1, b1, W2, b2 = (np.asarray(w, dtype=np.float64) for w in (W1, b1, W2, b2))
    A = np.abs(W1) @ np.abs(Z) + np.abs(b1)[:, None]
    e_a = _gammas(np.count_nonzero(W1, axis=1) + 1, u)[:, None] * A
    pre = W1 @ Z + b1[:, None]
    live = pre > -2.0 * e_a
    e_h = np.where(live, e_a, 0.0)
    g = _gammas((W2 != 0).astype(np.int64) @ live.astype(np.int64) + 2, u)
    aW2 = np.abs(W2)
    mag = np.abs(Z) + np.abs(b2)[:, None] + aW2 @ (np.maximum(pre, 0.0) + e_h)
    return (1.0 + g) * (aW2 @ e_h) + g * mag


@dataclass(frozen=True, eq=False)
class FF1Quantizer:
    """FF1 of hu2024.md §3.2: one residual ReLU FFN realising t -> delta floor(t/delta) off a ramp set.

    positional=True: tokens are positioned (column c carries + (c+1) 1_d, see positional_encoding), the
    staircase covers [1, n+1) with breakpoints t_b = 1 + b delta, b = 1..nK-1, hidden width d(2(nK-1)+1).
    positional=False: unit box [0,1], breakpoints b delta, b = 1..K-1, hidden width d(2(K-1)+1).
    Exact off the ramp set R = U_b (t_b - eta, t_b); requires 0 < eta < delta/2 so that cell centres
    k delta + delta/2 (+ offset) are at distance delta/2 > eta from the next breakpoint (hu2024.md §3.3).
    """

    d: int
    K: int
    n_positions: int
    eta: float
    positional: bool = True
    W1: np.ndarray = field(init=False, repr=False)
    b1: np.ndarray = field(init=False, repr=False)
    W2: np.ndarray = field(init=False, repr=False)
    b2: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        K = check_K(self.K)
        if int(self.d) != self.d or self.d < 1:
            raise ValueError(f"d must be a positive integer, got {self.d}")
        if int(self.n_positions) != self.n_positions or self.n_positions < 1:
            raise ValueError(f"n_positions must be a positive integer, got {self.n_positions}")
        if not (np.isfinite(self.eta) and 0 < self.eta < 0.5 / K):
            raise ValueError(f"ramp width eta must satisfy 0 < eta < delta/2 = {0.5 / K}, got eta = {self.eta}")
        object.__setattr__(self, "K", K)
        W1, b1, W2, b2 = ff1_weights(self.d, K, self.n_positions, float(self.eta), self.positional)
        for name, v in zip(("W1", "b1", "W2", "b2"), (W1, b1, W2, b2), strict=False):
            v.setflags(write=False)
            object.__setattr__(self, name, v)

    @property
    def delta(self) -> float:
        return 1.0 / self.K

    @property
    def breakpoints(self) -> np.ndarray:
        return ff1_breakpoints(self.K, self.n_positions, self.positional)[1]

    @property
    def base(self) -> float:
        return 1.0 if self.positional else 0.0

    @property
    def hidden_width(self) -> int:
        """d (2 #breakpoints + 1): d(2(nK-1)+1) positional, d(2(K-1)+1) on the unit box."""
        return int(self.W1.shape[0])

    def encoding(self, n: int | None = None) -> np.ndarray:
        """The positional offsets E (d, n) (zeros when positional=False)."""
        n = self.n_positions if n is None else n
        return positional_encoding(self.d, n) if self.positional else np.zeros((self.d, n))

    def __call__(self, Z, ctx=None):
        """FF1 on the columns of Z (already positioned). mpmath matrices go to apply_mp."""
        if ctx is not None or _is_mp_matrix(Z):
            return self.apply_mp(Z, ctx)
        return ffn_apply(self.W1, self.b1, self.W2, self.b2, Z)

    def staircase(self, Z) -> np.ndarray:
        """The ideal map base + delta * #{b : t >= t_b} (= delta floor(t/delta) on the range), float breakpoints."""
        Z = np.asarray(Z, dtype=np.float64)
        cnt = np.searchsorted(self.breakpoints, Z, side="right")
        return self.base + cnt / float(self.K)

    def in_ramp_set(self, Z) -> np.ndarray:
        """Entry-wise mask: t in (t_b - eta, t_b) for some breakpoint (where FF1 may differ from the staircase)."""
        return breakpoint_gap(self.breakpoints, Z) < self.eta

    def per_coordinate_ramp_measure(self) -> float:
        """Largest measure of the ramp set inside one token's unit box: K eta positional, (K-1) eta unit box."""
        return (self.K if self.positional else self.K - 1) * self.eta

    def ramp_measure_bound(self, n_tokens: int | None = None) -> float:
        """Union bound on the measure of {X in [0,1]^{d x n_tokens} : some entry of X + E on a ramp}.

        d * n_tokens * (K eta) positional (the box edge j+1 carries a breakpoint), d n_tokens (K-1) eta unit box.
        """
        n = self.n_positions if n_tokens is None else n_tokens
        return self.d * n * self.per_coordinate_ramp_measure()

    def quantize_tokens(self, X) -> np.ndarray:
        """Raw tokens X (d, n) in [0,1] -> FF1(X + E) - E (= Q_delta(X) off the ramp set, for x < 1)."""
        X = np.asarray(X, dtype=np.float64)
        E = self.encoding(X.shape[1])
        return self(X + E) - E

    def decode_cells(self, Y) -> np.ndarray:
        """Integer cells from FF1 outputs Y (positioned): round((Y - E) K), clipped to 0..K-1."""
        Y = np.asarray(Y, dtype=np.float64)
        k = np.rint((Y - self.encoding(Y.shape[1])) * self.K)
        return np.clip(k, 0, self.K - 1).astype(np.int64)

    def rounding_floor(self, Z, u: float = U64) -> np.ndarray:
        """Per-entry rounding floor of __call__ at Z against the exact network of these float weights."""
        return ffn_rounding_floor(self.W1, self.b1, self.W2, self.b2, Z, u)

    def staircase_floor(self, Z, u: float = U64) -> np.ndarray:
        """Per-entry bound on |__call__(Z) - staircase(Z)| off the ramp set (float weights, float staircase).

        rounding_floor (evaluation) + the weights' own representation error: 1/eta, t_b, t_b/eta, 1 - t_b/eta and
        delta are each rounded once or twice (<= 3 roundings per pre-activation, relative to A = |W1||z| + |b1|,
        one per W2 entry), so the exact network of the float weights is within gamma_4 |W2| A of the ideal one;
        staircase() itself rounds twice (cnt/K, base +): gamma_2 (|base| + |z| + 1).
        """
        Z = np.asarray(Z, dtype=np.float64)
        A = np.abs(self.W1) @ np.abs(Z) + np.abs(self.b1)[:, None]
        live = (self.W1 @ Z + self.b1[:, None]) > -2.0 * gamma(self.d + 1, u) * A
        rep = gamma(4, u) * (np.abs(self.W2) @ np.where(live, A, 0.0))
        return self.rounding_floor(Z, u) + rep + gamma(2, u) * (self.base + np.abs(Z) + 1.0)

    def apply_mp(self, Z, ctx=None):
        """FF1 evaluated in mpmath at ``ctx`` (default: Z.ctx or mpmath.mp), weights formed in ctx from K, eta.

        Z: an mpmath matrix (d x n) or nested lists of numbers. Returns ctx.matrix (d x n).
        """
        return ff1_apply_mp(Z, ctx, self.d, self.K, self.n_positions, self.eta, self.positional)


def ff1_apply_mp(Z, ctx, d: int, K, n_positions: int, eta: float, positional: bool = True):
    """The FF1 network of ff1_weights(d, K, n_positions, eta, positional) evaluated in mpmath (no validation of eta)."""
    import mpmath

    K = check_K(K)
    if ctx is None:
        ctx = getattr(Z, "ctx", None) or mpmath.mp
    rows = _mp_rows(Z, ctx)
    if len(rows) != d:
        raise ValueError(f"expected {d} rows, got {len(rows)}")
    n = len(rows[0])
    base, tbs = ff1_breakpoints_mp(ctx, K, n_positions, positional)
    if len(tbs) * n * d > FF1_MAX_ACTIVATIONS // 20:
        raise ValueError(
            f"mpmath FF1 on {d}x{n} tokens x {len(tbs)} breakpoints exceeds budget {FF1_MAX_ACTIVATIONS // 20}"
        )
    Km = ctx.mpf(K)
    eta = ctx.mpf(eta)
    delta = 1 / Km
    out = ctx.matrix(d, n)
    zero = ctx.mpf(0)
    for i in range(d):
        for j in range(n):
            t = rows[i][j]
            acc = base - max(t, zero)
            for tb in tbs:
                a0 = (t - tb) / eta
                acc += delta * (max(a0 + 1, zero) - max(a0, zero))
            out[i, j] = t + acc
    return out


def ff1_mp_floor(ctx, K, n_positions: int, eta: float, positional: bool = True, tokens=None):
    """Bound (an mpf of ``ctx``) on |ff1_apply_mp(Z, ctx, ...) - the exact network| entry by entry.

    u = 2^-prec. Per breakpoint t_b and token t, with a = |t - t_b| / eta (first order in u; the factor 1.01
    covers gamma_k / (k u) at any prec >= 53):
      t < t_b - 2 eta: both ReLUs are 0 exactly, no error;
      t > t_b + 2 eta: both active, the error of a0 cancels in ReLU(a0 + 1) - ReLU(a0) = 1, leaving the roundings
        of a0 + 1 and of the difference: <= 2 (a + 3) u;
      |t - t_b| <= 2 eta (the ramp): + the error of a0 itself, 2 a u + 2 (|t_b| + 1) u / eta (t_b rounds once);
    each nonzero term is multiplied by delta (2 roundings) and added into |acc| <= n + 3 (1 rounding); base - t
    and t + acc add 3 (2n + 3) u. ``tokens`` (floats, any shape): the bound per token; None: the worst token.
    """
    K = check_K(K)
    base, tb = ff1_breakpoints(K, n_positions, positional)
    top = base + (n_positions if positional else 1)
    t = np.asarray([base + j * 0.5 / K for j in range(int(2 * (top - base) * K) + 1)] if tokens is None else tokens,
                   dtype=np.float64)
    diff = t[..., None] - tb
    a = np.abs(diff) / eta
    near = np.abs(diff) <= 2.0 * eta
    above = diff > 2.0 * eta
    s_err = np.where(above | near, 2.0 * (a + 3.0), 0.0) + np.where(near, 2.0 * a + 2.0 * (np.abs(tb) + 1.0) / eta, 0.0)
    live = above | near
    per = np.sum(np.where(live, (s_err + 3.0) / K + (n_positions + 3.0), 0.0), axis=-1) + 3.0 * (2 * n_positions + 3)
    factor = 1.01 * (per if tokens is not None else float(np.max(per)))
    u = ctx.mpf(2) ** (-ctx.prec)
    if tokens is None:
        return ctx.mpf(float(factor)) * u
    return np.vectorize(lambda f: ctx.mpf(float(f)) * u, otypes=[object])(factor)


def ff1_breakpoints_mp(ctx, K, n_positions: int, positional: bool = True):
    """(base, [t_b]) in ``ctx``: each float breakpoint of ff1_breakpoints rebuilt exactly as base + b/K.

    Derived from the float list (not recomputed), so a breakpoint dropped or shifted there is dropped or shifted
    in the mpmath network too.
    """
    K = check_K(K)
    base_f, tb_f = ff1_breakpoints(K, n_positions, positional)
    base = ctx.mpf(base_f)
    return base, [base + ctx.mpf(int(round((float(t) - base_f) * K))) / K for t in tb_f]


def _is_mp_matrix(Z) -> bool:
    """mpmath matrices of any context (each MPContext has its own matrix class)."""
    return hasattr(Z, "rows") and hasattr(Z, "cols") and hasattr(Z, "ctx")


def _mp_rows(Z, ctx):
    if _is_mp_matrix(Z):
        return [[ctx.mpf(Z[i, j]) for j in range(Z.cols)] for i in range(Z.rows)]
    return [[ctx.mpf(v) for v in row] for row in Z]
