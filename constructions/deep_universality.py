"""Wang et al. 2023's deep prompt-tuning universality construction (Thm 1, Lemmas 1-2; wang2023.md §2.1, §3.2).

Frozen network (Yun et al. 2020 T-bar^{2,1,1}, token dimension D = d+1, last coordinate a constant 1 for biases):

1. positional encoding Z = [P, X] + E, E_{:,j} = j 1_d (0-based), n = m_p + m;
2. quantization FF stack [V, DiT App. E.2.1]: per coordinate i, one layer zeta_1 (entries outside [0, n) -> -J),
   then one layer zeta_2 per level k = 0..nK-1 (t in [k delta, (k+1) delta) -> k delta): d n K + d layers;
3. selective-shift attention stack (constructions.selective_shift): n K^d + 1 layers, 2 heads of size 1;
4. cleanup FF: X <- X - (M+1) 1_d zeta_3(u^T X) (zeta_3 = 0 on [t_l, t_r], 1 outside), then
   X <- X + e_i zeta_4(e_i^T X), zeta_4(t) = max(-t, 0), i = 1..d: 1 + d layers; invalid columns become 0;
5. value-map FF: one layer per valid grid sequence G and scored column j (m K^{dn} layers):
   X <- X + (A_G[:,j] - Z_G[:,j]) zeta_5(u^T X - q_G[j]), zeta_5 = 1 on [-delta/2, delta/2), else 0,
   with A_G[:,j] read from the table block of G's prompt part (so the network does not depend on f).

Target quantization [D, wang2023.md §2.1]: fbar = Q o f o Q with the round-down quantizer Q (1 -> 1 - delta);
sup ||f - fbar||_p < (L+1) delta (dm)^{1/p}; delta = 1/ceil(2(L+1)(dm)^{1/p}/eps) gives d_p(f, fbar) < eps/2.
The table prompt P(f) = [fbar(G_1), ..., fbar(G_N)] has m_p = m delta^{-dm} columns, which meets the counting
bound delta^{-d m_p} >= (delta^{-dm})^{delta^{-dm}} with equality.

Softmax/ReLU version (Yun Lemma 9 [R]; quantitative form derived here [D]): hardmax -> softmax(lam .) and each
zeta -> <= 4 ReLUs with ramps placed where the hardmax network's lattice values never fall (zeta_1, zeta_2 on the
left of their jumps, width eta_q; zeta_3 ramps inside (t_l - delta, t_l - delta/2) and (t_r + delta/2, t_r + delta);
zeta_5 flat on [-delta/4, delta/4], zero outside (-delta/2, delta/2)). On grid inputs the soft network then
differs from the hardmax one only through softmax, and ``lambda_threshold`` bounds that difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from constructions.deep_resource_counts import (  # noqa: F401  (re-exported)
    counting_bound_mp,
    counting_check,
    resource_counts,
)
from constructions.memorization import (
    prompt_length,
    table_prompt,
    value_map_node_count,
)
from constructions.precision import unit_roundoff
from constructions.quantization import all_grid_points, cell_index, grid_index, quantize
from constructions.selective_shift import (
    ShiftPlan,
    TooLarge,
    all_shift_layers,
    batched_attention,
    contextual_ids,
    enumerate_cells,
    ids_from_cells,
)
from constructions.yun_activations import (  # noqa: F401  (re-exported: the public names stay importable here)
    SoftParams,
    ff_layer_mlp,
    relu_eval,
    relu_form,
    soft_params,
    zeta1,
    zeta2,
    zeta3,
    zeta4,
    zeta5,
)

MAX_NODES = 20_000  # value-map layers of a network built for the default profile

__all__ = [
    "DeepNetwork",
    "TooLarge",
    "apply_value_map",
    "build_network",
    "choose_K",
    "counting_check",
    "exact_cells",
    "exact_outputs",
    "float_outputs",
    "lambda_threshold",
    "resource_counts",
    "soft_params",
    "sup_bound",
    "wang_surrogate",
    "wang_table_prompt",
]


# --------------------------------------------------------------------------------------------
# Quantized surrogate (Lemma 1, [D])
# --------------------------------------------------------------------------------------------


def choose_K(L: float, d: int, m: int, p: float, eps: float, factor: float = 2.0) -> int:
    """K = 1/delta = ceil(2 (L+1) (dm)^{1/p} / eps)  (wang2023.md §2.1 'Choice of delta'); factor for mutants."""
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be > 0, got {eps}")
    if not (np.isfinite(L) and L >= 0):
        raise ValueError(f"Lipschitz constant L must be >= 0, got {L}")
    if not (np.isfinite(p) and p >= 1):
        raise ValueError(f"p must satisfy 1 <= p < inf, got {p}")
    if int(d) != d or d < 1 or int(m) != m or m < 1:
        raise ValueError(f"d and m must be positive integers, got d={d}, m={m}")
    return max(2, int(math.ceil(factor * (L + 1) * (d * m) ** (1.0 / p) / eps)))


def sup_bound(L: float, d: int, m: int, p: float, K: int, plus_one: bool = True) -> float:
    """(L + 1) delta (dm)^{1/p}: sup_X ||f(X) - fbar(X)||_p for f in F_L, fbar = Q o f o Q (strict)."""
    return (L + (1.0 if plus_one else 0.0)) / K * (d * m) ** (1.0 / p)


def wang_surrogate(f, K: int):
    """fbar = Q o f o Q (round-down output grid; values in {0, delta, .., 1 - delta})."""

    def fbar(X):
        return quantize(f(quantize(X, K)), K)

    return fbar


def wang_table(f, d: int, m: int, K: int) -> np.ndarray:
    """Table T[idx(G)] = fbar(G) (N, d, m) in constructions.quantization.grid_index order, round-down values."""
    G = all_grid_points(d, m, K)
    return quantize(np.asarray(f(G), dtype=np.float64), K)


def wang_table_prompt(f, d: int, m: int, K: int, centre: bool = True) -> np.ndarray:
    """P(f) (d, m K^{dm}) = [fbar(G_1), ..., fbar(G_N)] (memorization.table_prompt layout, round-down table).

    centre=True stores each entry at its cell centre fbar + delta/2: the network reads a prompt token only through
    its cell, and for non-dyadic delta the float64 grid point k/K can sit below k/K and fall into cell k-1.
    """
    T = wang_table(f, d, m, K)
    return table_prompt(T + 0.5 / K if centre else T, d, m, K)


def exact_cells(X, K: int) -> np.ndarray:
    """floor(K x) computed exactly for float64 x (cell_index can round K x across an integer).

    Entries are not clipped: x = 1 gives K (the network sends it to the next column's band or to -J).
    """
    X = np.asarray(X, dtype=np.float64)
    k = np.floor(X * K).astype(np.int64)
    near = np.abs(X * K - np.rint(X * K)) < 1e-9 * max(1, K)
    for idx in zip(*np.nonzero(near), strict=True):
        k[idx] = math.floor(Fraction(float(X[idx])) * K)
    return k


# --------------------------------------------------------------------------------------------
# Resource counts (constructions.deep_resource_counts, re-exported)
# --------------------------------------------------------------------------------------------


def resource_counts_eps(d: int, m: int, L: float, p: float, eps: float) -> dict:
    """resource_counts at K = choose_K(L, d, m, p, eps)."""
    return resource_counts(d, m, choose_K(L, d, m, p, eps))


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DeepNetwork:
    """The exact hardmax network for (d, m, K): the value-map nodes are the whole f-independent table."""

    d: int
    m: int
    K: int
    plan: ShiftPlan
    node_ids: np.ndarray  # (M,) contextual ids in units of delta/2, sorted increasing (= layer order)
    node_delta: np.ndarray  # (M, d) A_G[:, j] - Z_G[:, j] in units
    typo_t_l: bool = False

    @property
    def m_p(self) -> int:
        return self.plan.n - self.m

    @property
    def n(self) -> int:
        return self.plan.n

    @property
    def delta(self) -> Fraction:
        return Fraction(1, self.K)

    @property
    def t_bounds(self) -> tuple[Fraction, Fraction]:
        return self.plan.t_bounds(typo=self.typo_t_l)

    @property
    def n_value_layers(self) -> int:
        return int(self.node_ids.shape[0])

    def counts(self) -> dict:
        """Layer counts of this built network (not from the formula): compare with resource_counts."""
        d, n, K = self.d, self.n, self.K
        return {
            "quantization_ffn_layers": d * (1 + n * K),
            "attention_layers": len(self.plan.valid_ids_units) + 1,
            "cleanup_ffn_layers": 1 + d,
            "value_map_ffn_layers": self.n_value_layers,
            "L_p": self.m_p,
            "n": n,
        }

    @property
    def cleanup_M(self) -> float:
        """M of the cleanup layer: a bound on every entry reachable from X in [0,1]^{d x m} (float, may be huge).

        Quantized entries lie in [-J, n]; ids in [-S(J+n), S(J+n)]; each selective shift at most multiplies the
        largest |id| by (1 + 2K^d), the global shift by (1 + n K^{(n+1)d+1}).
        """
        p = self.plan
        lg = (
            math.log(p.S * (p.J + p.n))
            + p.n_selective_layers * math.log(1 + 2 * p.shift_scale)
            + math.log(1 + p.global_scale)
        )
        return math.exp(min(lg, 700.0))


def _node_table(plan: ShiftPlan, m: int, cells: np.ndarray, q: np.ndarray, ids0: np.ndarray):
    """(node ids, node deltas) for all valid sequences: targets read from each sequence's own table block."""
    from constructions.quantization import grid_index as gidx

    N, d, n = cells.shape
    m_p = n - m
    K = plan.K
    U = plan.unit
    blocks = gidx(cells[:, :, m_p:], K)  # idx of the grid input part
    ids, deltas = [], []
    for j in range(m):
        col = m_p + j
        # target digits: prompt column m*idx + j of the same sequence
        tgt = cells[np.arange(N), :, m * blocks + j]  # (N, d)
        A = 2 * tgt.astype(q.dtype)
        Z = (U * col + 2 * cells[:, :, col]).astype(q.dtype)
        Z[:, 0] = Z[:, 0] + (q[:, col] - ids0[:, col])
        ids.append(q[:, col])
        deltas.append(A - Z)
    ids = np.concatenate(ids)
    deltas = np.concatenate(deltas, axis=0)
    order = np.argsort(ids, kind="stable")
    return ids[order], deltas[order]


@lru_cache(maxsize=16)
def build_network(d: int, m: int, K: int, max_nodes: int = MAX_NODES, typo_t_l: bool = False) -> DeepNetwork:
    """Build (and cache) the network: enumerates all K^{dn} valid grid sequences, n = m(1 + K^{dm}).

    Raises TooLarge when the m K^{dn} value-map layers exceed max_nodes.
    """
    m_p = prompt_length(d, m, K)
    n = m_p + m
    M = value_map_node_count(d, m, K)
    if M > max_nodes:
        raise TooLarge(f"value map needs m K^(dn) = {m}*{K}^{d * n} = {M} layers (> budget {max_nodes})")
    plan = ShiftPlan(d, n, K)
    cells = enumerate_cells(d, n, K)
    ids0 = ids_from_cells(cells, plan)
    q = contextual_ids(ids0, plan)
    node_ids, node_delta = _node_table(plan, m, cells, q, ids0)
    net = DeepNetwork(d, m, K, plan, node_ids, node_delta, typo_t_l)
    _assert_guards(net)
    return net


def _assert_guards(net: DeepNetwork) -> None:
    """The two facts that make the value-map stack act as a lookup (wang2023.md §3.2 step 8).

    (i) node ids pairwise >= delta apart (so at most one window [q - delta/2, q + delta/2) holds an id);
    (ii) every target id u^T A is < t_l - delta (so a moved column can fire no later layer).
    """
    U = net.plan.unit
    ids = net.node_ids
    gaps = np.diff(ids)
    if gaps.size and int(np.min(gaps)) < 2:
        raise AssertionError(f"value-map nodes closer than delta: min gap {int(np.min(gaps))} units")
    t_l, _ = net.plan.t_bounds()
    max_target_units = 2 * sum(net.K**i * (net.K - 1) for i in range(net.d))
    if Fraction(max_target_units + 2, U) > t_l:
        raise AssertionError("target ids reach t_l: a moved column could fire a later value-map layer")


def _sequence_cells(net: DeepNetwork, P, X):
    """Quantize [P, X] + E exactly: (cells (B, d, n), invalid mask)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 2:
        X = X[None]
    B = X.shape[0]
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (net.d, net.m_p):
        raise ValueError(f"prompt must have shape (d, m_p) = ({net.d}, {net.m_p}), got {P.shape}")
    if X.shape[1:] != (net.d, net.m):
        raise ValueError(f"inputs must have shape (B, d, m) = (B, {net.d}, {net.m}), got {X.shape}")
    Zr = np.concatenate([np.broadcast_to(P, (B,) + P.shape), X], axis=2)
    k = exact_cells(Zr, net.K)  # floor(K x); the positional offset j adds jK, so cells are k (band j if 0<=k<K)
    j = np.arange(net.n)[None, None, :]
    z_level = k + j * net.K  # floor(K (x + j))
    invalid = (z_level < 0) | (z_level >= net.n * net.K)
    return k, invalid


def exact_outputs(net: DeepNetwork, P, X, *, skip_cleanup: bool = False) -> np.ndarray:
    """Hardmax network output on [P, X] in exact arithmetic, as integers in units of delta/2 (B, d, m).

    Equivalent to applying the m K^{dn} value-map layers in order (they are sorted by node id): by the guards
    of _assert_guards a column fires at most the one layer whose node equals its id.
    """
    cells, invalid = _sequence_cells(net, P, X)
    plan = net.plan
    ids0 = ids_from_cells(np.where(invalid, 0, cells), plan, invalid)
    q = contextual_ids(ids0, plan)
    B = cells.shape[0]
    U = plan.unit
    t_l, t_r = net.t_bounds
    out = np.zeros((B, net.d, net.m), dtype=object)
    for jj in range(net.m):
        col = net.m_p + jj
        qc = q[:, col]
        Z = (U * col + 2 * cells[:, :, col]).astype(object)
        Z = np.where(invalid[:, :, col], -U * plan.J, Z)
        Z[:, 0] = Z[:, 0] + (qc - ids0[:, col])
        for b in range(B):
            qv = Fraction(qc[b]) / U
            if not skip_cleanup and not (t_l <= qv <= t_r):
                out[b, :, jj] = 0  # cleaned: zeta_3 = 1, every entry <= M, zeta_4 clamps to 0
                continue
            i = int(np.searchsorted(net.node_ids, int(qc[b]))) if not isinstance(qc[b], Fraction) else -1
            if 0 <= i < net.n_value_layers and net.node_ids[i] == qc[b]:
                out[b, :, jj] = Z[b] + net.node_delta[i].astype(object)
            else:
                out[b, :, jj] = Z[b]
    return out


def fbar_units(f, X, K: int) -> np.ndarray:
    """fbar(X) = Q(f(Q X)) in units of delta/2, with Q computed from exact cells (int array)."""
    X = np.asarray(X, dtype=np.float64)
    c = np.clip(exact_cells(X, K), 0, K - 1)
    Y = np.asarray(f(c / K), dtype=np.float64)
    return 2 * cell_index(Y, K)


# --------------------------------------------------------------------------------------------
# Float evaluation (weight level): hardmax or softmax/ReLU
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _shift_layers_cached(d, n, K, lam):
    return all_shift_layers(ShiftPlan(d, n, K), lam)


def float_outputs(net: DeepNetwork, P, X, params: SoftParams = SoftParams(), *, lam_scale_layers=None):
    """The network on [P, X] in float64 at the weight level: (B, d, m) outputs (real values, not units).

    params.hard: hardmax heads (transformer.Head through batched_attention) and exact zetas; else softmax with
    inverse temperature params.lam folded into W_k, and the soft zetas (ramp width params.eta_q for zeta_1,2).
    The value-map stack is applied in its layer order (increasing node id) event by event: a layer changes only
    the columns inside its support, so only those are visited.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 2:
        X = X[None]
    B = X.shape[0]
    d, n, K = net.d, net.n, net.K
    if K & (K - 1):
        raise ValueError(f"float64 weight-level evaluation needs a dyadic delta = 2^-k (exact thresholds), got K = {K}")
    plan = net.plan
    delta = 1.0 / K
    soft = not params.hard
    E = np.arange(n, dtype=np.float64)[None, None, :]
    Z = np.empty((B, d + 1, n))
    Z[:, :d, :] = np.concatenate([np.broadcast_to(np.asarray(P, dtype=np.float64), (B, d, net.m_p)), X], axis=2) + E
    Z[:, d, :] = 1.0
    J = float(plan.J)
    eta = params.eta_q if soft else 0.0
    for i in range(d):
        Z[:, i] += zeta1(Z[:, i], n, J, eta)
        for k in range(n * K):
            Z[:, i] += zeta2(Z[:, i] - k / K, delta, eta)
    layers = _shift_layers_cached(d, n, K, None if params.hard else float(params.lam))
    for heads in layers:
        Z = Z + batched_attention(heads, Z, hard=params.hard)
    u = np.array(plan.u, dtype=np.float64)
    q = np.einsum("i,bin->bn", u, Z[:, :d])
    t_l, t_r = (float(t) for t in net.t_bounds)
    Mc = net.cleanup_M
    Z[:, :d] -= (Mc + 1.0) * zeta3(q, t_l, t_r, delta, soft)[:, None, :]
    for i in range(d):
        Z[:, i] += zeta4(Z[:, i])
    out = Z[:, :d, net.m_p :].copy()
    apply_value_map(net, out, soft)
    return out


def apply_value_map(net: DeepNetwork, out: np.ndarray, soft: bool) -> None:
    """Apply the sorted value-map layers to the scored columns out (B, d, m) in place, layer order respected.

    Layer G, j adds (A_G - Z_G)[:, j] zeta_5(u^T x - q_G[j]); the supports are disjoint windows of width delta
    around the sorted node ids, so a column at id q can only be in the window of the node just below or just above
    it, and once moved its id is a target id below t_l - delta, where no later layer fires (_assert_guards).
    """
    U = net.plan.unit
    nodes = net.node_ids.astype(np.float64) / U
    deltas = net.node_delta.astype(np.float64) / U
    delta = 1.0 / net.K
    u = np.array(net.plan.u, dtype=np.float64)
    B, d, m = out.shape
    last = np.full((B, m), -1, dtype=np.int64)
    for _ in range(4):
        q = np.einsum("i,bim->bm", u, out)
        pos = np.searchsorted(nodes, q)
        # supports are disjoint intervals of length delta around sorted nodes: only nodes pos-1, pos can hold q
        lo = np.clip(pos - 1, 0, nodes.size - 1)
        hi = np.clip(pos, 0, nodes.size - 1)
        z_lo = zeta5(q - nodes[lo], delta, soft)
        z_hi = zeta5(q - nodes[hi], delta, soft)
        use_hi = (z_hi != 0) & (hi > last)
        use_lo = (z_lo != 0) & (lo > last) & ~use_hi
        hit = use_hi | use_lo
        if not np.any(hit):
            return
        c = np.where(use_hi, hi, lo)
        z = np.where(use_hi, z_hi, z_lo)
        bi, mi = np.nonzero(hit)
        out[bi, :, mi] += deltas[c[bi, mi]] * z[bi, mi][:, None]
        last[bi, mi] = c[bi, mi]
    raise AssertionError("value-map events did not settle (a column fired more than 3 layers)")


_value_map_events = apply_value_map  # the old private name


# --------------------------------------------------------------------------------------------
# The softmax threshold [D]
# --------------------------------------------------------------------------------------------


def amplification_log(plan: ShiftPlan) -> float:
    """log Lambda, Lambda = R [(1 + c)((1 + 2K^d)^{L_s} - 1) + c], R = n K^{(n+1)d}, c = n K^{(n+1)d+1}.

    Derivation [D]: let eps_l bound the id error of the softmax network against the hardmax one after l layers
    (grid inputs, so quantization is exact). A head's output is a convex combination of keys; with the hardmax
    trajectory's key gap >= delta and query margin |q_j - b| >= delta/2, while eps_l <= delta/4 every score gap is
    >= (delta - 2 eps)(delta/2 - eps) >= delta^2/8, so the weight off the hardmax key is <= w = (n-1) e^{-lam delta^2/8}
    and |xi_soft - xi_hard| <= eps_l + w R (keys lie in [0, R], Yun Lemma 10). Hence
    eps_{l+1} <= (1 + 2K^d) eps_l + 2K^d w R over the L_s = n K^d selective shifts, and the global shift (scale c,
    query margin >= delta) gives eps_final <= (1 + c) eps_{L_s} + c w R = w Lambda.
    """
    n, d, K = plan.n, plan.d, plan.K
    Ls = plan.n_selective_layers
    logR = math.log(n) + (n + 1) * d * math.log(K)
    c = plan.global_scale
    log_amp = Ls * math.log(1 + 2 * K**d)
    # (1 + c)((1 + 2K^d)^{L_s} - 1) + c <= 2 (1 + c)(1 + 2K^d)^{L_s}
    return logR + math.log(2.0) + math.log1p(c) + log_amp


def lambda_threshold(plan: ShiftPlan, tau: float, gap_factor: float = 1.0 / 8.0, with_amplification: bool = True):
    """lam* = ln((n-1) Lambda / tau) / (gap_factor delta^2): for lam >= lam*, every id (hence every scored output
    entry) of the softmax network on a grid input is within tau of the hardmax network's, provided tau <= delta/4.

    gap_factor and with_amplification exist for mutants (a wrong gap, the layer amplification forgotten).
    """
    delta = 1.0 / plan.K
    if not (0 < tau <= delta / 4):
        raise ValueError(f"tau must satisfy 0 < tau <= delta/4 = {delta / 4}, got {tau}")
    n = plan.n
    logL = amplification_log(plan) if with_amplification else math.log(n) + (n + 1) * plan.d * math.log(plan.K)
    return (math.log(max(n - 1, 1)) + logL - math.log(tau)) / (gap_factor * delta**2)


def float_rounding_floor(net: DeepNetwork, u: float | None = None) -> float:
    """Rounding floor of the float64 softmax network's outputs: 8 u t_r (L_att + 4) (ids reach t_r; each layer
    rounds once at that magnitude, and the value map cancels the large first coordinate); u = float64's."""
    u = unit_roundoff("float64") if u is None else u
    t_r = float(net.plan.t_bounds()[1])
    return 8.0 * u * t_r * (net.plan.n_attention_layers + 4)


def ramp_width_for(net: DeepNetwork, eps: float, p: float) -> float:
    """eta_q with (d m K eta_q)^{1/p} (B_R + (dm)^{1/p}) <= eps/4: the quantizer ramps' share of d_p [D].

    B_R bounds every output entry norm on the ramp set: cleanup_M after attention plus, per value-map layer, the
    largest |A - Z| (all layers could fire in order).
    """
    d, m, K = net.d, net.m, net.K
    max_delta = float(np.max(np.abs(net.node_delta.astype(np.float64)))) / net.plan.unit
    B_R = (d * m) ** (1.0 / p) * (net.cleanup_M + net.n_value_layers * max_delta)
    return (eps / 4.0) ** p / (d * m * K * (B_R + (d * m) ** (1.0 / p)) ** p)


def ramp_term(net: DeepNetwork, eta_q: float, p: float) -> float:
    """(d m K eta_q)^{1/p} (B_R + (dm)^{1/p}): the ramp set's contribution to d_p (bounded, not sampled)."""
    d, m, K = net.d, net.m, net.K
    max_delta = float(np.max(np.abs(net.node_delta.astype(np.float64)))) / net.plan.unit
    B_R = (d * m) ** (1.0 / p) * (net.cleanup_M + net.n_value_layers * max_delta)
    return (d * m * K * eta_q) ** (1.0 / p) * (B_R + (d * m) ** (1.0 / p))


def grid_inputs(d: int, m: int, K: int) -> np.ndarray:
    """All K^{dm} grid inputs (lower corners) in grid_index order (N, d, m)."""
    return all_grid_points(d, m, K)


def grid_index_of(X, K: int) -> np.ndarray:
    return grid_index(np.clip(exact_cells(X, K), 0, K - 1), K)
