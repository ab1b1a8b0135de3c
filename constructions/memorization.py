"""Table-encoding prompts, value (lookup) FFNs and prompt-length counting (Hu et al. 2024 §2.5, §3.3, §3.5).

Reconstruction [D] (hu2024.md; the paper's exact PT_memo statement was not available):

* table prompt P_f = [T_f[G_1], ..., T_f[G_N]] in R^{d x L N}, N = K^{dL}, grid inputs in token-major
  lexicographic order (constructions.quantization.grid_index): L_p = L K^{dL};
* counting bound for constructions whose prompt passes a finite quantizer with K_P levels and whose
  outputs take K_out levels: K_P^{d L_p} >= K_out^{dL N}  <=>  L_p >= L K^{dL} log K_out / log K_P;
* value map FF2: residual piecewise-linear interpolation through M sorted nodes (M - 1 hidden ReLUs, or M with
  extend="flat": constant beyond the extreme nodes, the version constructions.universality assembles), or its
  deep narrow version, M residual layers of 4 ReLUs (bumps) under a target guard.

Every evaluation exists in float64 and in mpmath at a caller-given context (the assembled transformer needs
hundreds of digits: node gaps reach 10^-281, hu2024.md §3.6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from constructions.quantization import (
    GRID_MAX_ENTRIES,
    cell_index,
    centred_quantize,
    check_K,
    choose_K,
    grid_index,
    grid_size,
    lookup_table,
)

# the value maps FF2 live in constructions.value_maps; re-exported so their public names stay importable here
from constructions.value_maps import (  # noqa: F401
    BUMP_MAX_LAYERS,
    EXTENSIONS,
    INTERP_MAX_NODES,
    MP_MAX_WORK,
    BumpStack,
    InterpolationFFN,
)

PROMPT_MAX_ENTRIES = GRID_MAX_ENTRIES  # d * L_p float64 entries of a materialised prompt
BIGINT_MAX_DIGITS = 1_000_000  # exact prompt-length integers above this many digits are refused
BINOMIAL_EXACT_DIGITS = 20_000  # log C(N, k) from the exact integer below this many digits, else a sum of logs


def log_binomial(N: int, k: int) -> float:
    """log C(N, k), correctly rounded up to a few ulps of the result (not of log N!).

    lgamma(N + 1) - lgamma(k + 1) - lgamma(N - k + 1) cancels catastrophically when N >> k: its error is
    ~ u N log N, against a result ~ k log N. Here: the exact integer C(N, k) when it has at most
    BINOMIAL_EXACT_DIGITS digits (math.log of an int is accurate to a few ulps), else fsum of the k' = min(k, N-k)
    positive terms log((N - i) / (i + 1)), each within 2u of its value (relative error <= gamma_{2}).
    """
    N, k = int(N), int(k)
    if not 0 <= k <= N:
        raise ValueError(f"C(N, k) needs 0 <= k <= N, got N={N}, k={k}")
    k = min(k, N - k)
    if k == 0:
        return 0.0
    if k * math.log10(N) <= BINOMIAL_EXACT_DIGITS:
        return math.log(math.comb(N, k))
    return math.fsum(math.log((N - i) / (i + 1)) for i in range(k))


# --------------------------------------------------------------------------------------------
# Table prompt and counting
# --------------------------------------------------------------------------------------------


def prompt_length(d: int, L: int, K) -> int:
    """L_p = L K^{dL} of the table encoding (hu2024.md §3.3, §5 item 17), an exact Python int."""
    K = check_K(K)
    if d * L * math.log10(max(K, 2)) > BIGINT_MAX_DIGITS:
        raise ValueError(f"L K^(dL) with dL = {d * L}, K = {K} exceeds budget {BIGINT_MAX_DIGITS} digits")
    return int(L) * grid_size(d, L, K)


def table_prompt(f_or_table, d: int, L: int, K) -> np.ndarray:
    """P_f (d, L K^{dL}): block i (columns iL .. iL+L-1) is fbar(G_i), cell-centre values.

    f_or_table: a map f on (B, d, L) batches (its surrogate table is formed by lookup_table) or a table of
    shape (N, d, L) in grid order.
    """
    K = check_K(K)
    N = grid_size(d, L, K)
    if N * d * L > PROMPT_MAX_ENTRIES:
        raise ValueError(f"table prompt of {N} x {d * L} entries exceeds budget {PROMPT_MAX_ENTRIES}")
    T = lookup_table(f_or_table, d, L, K) if callable(f_or_table) else np.asarray(f_or_table, dtype=np.float64)
    if T.shape != (N, d, L):
        raise ValueError(f"table must have shape (K^(dL), d, L) = ({N}, {d}, {L}), got {T.shape}")
    return np.ascontiguousarray(T.transpose(1, 0, 2).reshape(d, N * L))


def lookup_from_prompt(P, X, K, L: int) -> np.ndarray:
    """The ideal meta-function gbar([P, X]) = P[:, L idx(Q X) : L idx(Q X) + L] (wang2023.md §2.1; (d, L))."""
    P = np.asarray(P)
    X = np.asarray(X, dtype=np.float64)
    i = int(grid_index(cell_index(X, K), K))
    if (i + 1) * L > P.shape[1]:
        raise ValueError(f"prompt of {P.shape[1]} columns has no block {i} of length {L}")
    return P[:, i * L : (i + 1) * L]


@dataclass(frozen=True, eq=False)
class FF1TableReader:
    """readout(FF1([P, X] + E)): the table prompt read through the quantizer FF1 (hu2024.md §3.2-3.3, item 23).

    FF1 (positional, n = L_p + L positions) maps every token to its cell's lower corner plus its offset; the
    prompt tokens' cells are decoded once (FF1 output minus the offsets, times K), the input's cells give the
    block index idx(Q X), and the block is read at its cell centres (cells + 1/2) delta. Exact off the ramp set.
    """

    ff1: object  # constructions.quantization.FF1Quantizer with positional=True over L_p + L positions
    prompt_cells: np.ndarray  # (d, L_p) integer cells of the prompt tokens, decoded from FF1's outputs
    L: int

    @classmethod
    def build(cls, ff1, P, L: int, chunk: int = 64) -> FF1TableReader:
        P = np.asarray(P, dtype=np.float64)
        Lp = P.shape[1]
        E = ff1.encoding(Lp + L)[:, :Lp]
        Z = P + E
        YP = np.concatenate([ff1(Z[:, s : s + chunk]) for s in range(0, Lp, chunk)], axis=1)
        cells = np.rint((YP - E) * ff1.K).clip(0, ff1.K - 1).astype(np.int64)
        cells.setflags(write=False)
        return cls(ff1, cells, int(L))

    @property
    def L_p(self) -> int:
        return int(self.prompt_cells.shape[1])

    def input_cells(self, X) -> np.ndarray:
        """The (d, L) cells of an input X (d, L) through FF1 at positions L_p .. L_p + L - 1."""
        X = np.asarray(X, dtype=np.float64)
        E = self.ff1.encoding(self.L_p + self.L)[:, self.L_p :]
        return np.rint((self.ff1(X + E) - E) * self.ff1.K).clip(0, self.ff1.K - 1).astype(np.int64)

    def __call__(self, X) -> np.ndarray:
        """The (d, L) centred values of the prompt block idx(cells of X)."""
        j = int(grid_index(self.input_cells(X), self.ff1.K))
        return (self.prompt_cells[:, j * self.L : (j + 1) * self.L] + 0.5) / self.ff1.K


def counting_lower_bound(d: int, L: int, K, K_out=None, K_P=None) -> float:
    """L_p >= L K^{dL} log K_out / log K_P (hu2024.md §2.5 [D]): K_P^{d L_p} prompts vs K_out^{dL K^{dL}} tables.

    Valid for constructions whose prompt information passes a quantizer with K_P levels per coordinate.
    """
    K = check_K(K)
    K_out = K if K_out is None else check_K(K_out)
    K_P = K if K_P is None else check_K(K_P)
    if K_P < 2:
        raise ValueError(f"K_P must be >= 2 (a 1-level prompt carries no information), got {K_P}")
    return float(L) * float(K) ** (d * L) * math.log(K_out) / math.log(K_P)


def log_prompt_count(d: int, L_p: int, K_P) -> float:
    """log #grid prompts = d L_p log K_P."""
    return d * L_p * math.log(check_K(K_P))


def log_table_count(d: int, L: int, K, K_out=None) -> float:
    """log #piecewise-constant targets = dL K^{dL} log K_out."""
    K = check_K(K)
    K_out = K if K_out is None else check_K(K_out)
    return d * L * float(K) ** (d * L) * math.log(K_out)


def value_map_node_count(d: int, L: int, K) -> int:
    """M = K^{d(L_p + L)} L with L_p = L K^{dL}: contextual ids the value map must place (hu2024.md §2.4)."""
    K = check_K(K)
    Lp = prompt_length(d, L, K)
    if d * (Lp + L) * math.log10(max(K, 2)) > BIGINT_MAX_DIGITS:
        raise ValueError(f"M = K^(d(L_p+L)) L has more than budget {BIGINT_MAX_DIGITS} digits")
    return K ** (d * (Lp + L)) * L


def pt_memo_lower_bound(C: float, d: int, L: int, alpha: float, eps: float) -> int:
    """Prompt tokens L K^{dL} with K = choose_K(C, d, L, alpha, eps): >= L (3 (C + 1/2) (dL)^(1/alpha) / eps)^{dL}.

    The PT_memo shape (hu2024.md §2.5, §5 item 18; reconstructed): exponential in dL, a power dL of 1/eps.
    """
    K = choose_K(C, d, L, alpha, eps)
    return prompt_length(d, L, K)


# --------------------------------------------------------------------------------------------
# Arbitrary finite datasets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MemorizingPrompt:
    """A prompt memorizing a finite dataset with distinct quantized inputs (hu2024.md §5 item 24).

    include_keys=False: P holds the centred quantized targets, one L-token block per sample, in increasing
    idx(Q X^(i)); the reader knows the input set (keys), the prompt carries the targets: L_p = L N_S.
    include_keys=True: each sample is [centred Q X^(i), centred Q Y^(i)] (2L tokens): the reader needs nothing
    but P (it matches keys read off P): L_p = 2 L N_S.
    """

    P: np.ndarray
    keys: np.ndarray
    d: int
    L: int
    K: int
    include_keys: bool = False

    @property
    def length(self) -> int:
        return int(self.P.shape[1])

    def _keys_from_prompt(self) -> np.ndarray:
        n = self.keys.size
        blocks = self.P.reshape(self.d, n, 2 * self.L)[:, :, : self.L].transpose(1, 0, 2)
        return grid_index(cell_index(blocks, self.K), self.K)

    def decode(self, X) -> np.ndarray:
        """The stored target block (d, L) for input X; ValueError if Q X is not one of the dataset's cells."""
        i = int(grid_index(cell_index(X, self.K), self.K))
        keys = self._keys_from_prompt() if self.include_keys else self.keys
        r = int(np.searchsorted(keys, i))
        if r >= keys.size or keys[r] != i:
            raise ValueError(f"input cell {i} is not in the memorized dataset")
        w = 2 * self.L if self.include_keys else self.L
        o = r * w + (self.L if self.include_keys else 0)
        return self.P[:, o : o + self.L]


def memorizing_prompt_length(n_samples: int, L: int, include_keys: bool = False) -> int:
    """L N_S (targets only) or 2 L N_S (keys and targets)."""
    return (2 if include_keys else 1) * int(L) * int(n_samples)


def memorization_counting_bound(n_samples: int, d: int, L: int, K, K_out=None, K_P=None, include_keys=False):
    """Counting lower bound on L_p for memorizing N_S samples.

    Known input set: K_P^{d L_p} >= K_out^{dL N_S}  <=>  L_p >= L N_S log K_out / log K_P.
    Unknown input set (keys in the prompt): K_P^{d L_p} >= binom(K^{dL}, N_S) K_out^{dL N_S}.
    """
    K = check_K(K)
    K_out = K if K_out is None else check_K(K_out)
    K_P = K if K_P is None else check_K(K_P)
    if K_P < 2:
        raise ValueError(f"K_P must be >= 2, got {K_P}")
    logs = d * L * n_samples * math.log(K_out)
    if include_keys:
        logs += log_binomial(grid_size(d, L, K), n_samples)
    return logs / (d * math.log(K_P))


def memorizing_prompt(dataset, K, include_keys: bool = False) -> MemorizingPrompt:
    """Memorizing prompt for dataset = (Xs, Ys) arrays (N_S, d, L) or a sequence of (X, Y) pairs.

    Targets are stored as cell centres centred_Q(Y): exact memorization of the quantized targets; length
    memorizing_prompt_length(N_S, L, include_keys). ValueError if two inputs share a quantization cell.
    """
    K = check_K(K)
    if isinstance(dataset, tuple) and len(dataset) == 2 and np.ndim(dataset[0]) == 3:
        Xs, Ys = (np.asarray(a, dtype=np.float64) for a in dataset)
    else:
        pairs = list(dataset)
        if not pairs:
            raise ValueError("dataset is empty")
        Xs = np.stack([np.asarray(x, dtype=np.float64) for x, _ in pairs])
        Ys = np.stack([np.asarray(y, dtype=np.float64) for _, y in pairs])
    if Xs.ndim != 3 or Xs.shape != Ys.shape:
        raise ValueError(f"inputs and targets must both have shape (N_S, d, L), got {Xs.shape} and {Ys.shape}")
    n, d, L = Xs.shape
    if n * d * L * (2 if include_keys else 1) > PROMPT_MAX_ENTRIES:
        raise ValueError(f"memorizing prompt of {n} samples x {d * L} entries exceeds budget {PROMPT_MAX_ENTRIES}")
    idx = grid_index(cell_index(Xs, K), K)
    order = np.argsort(idx, kind="stable")
    keys = idx[order]
    if np.any(keys[1:] == keys[:-1]):
        raise ValueError("quantized inputs are not distinct: two samples share a grid cell (increase K)")
    V = centred_quantize(Ys[order], K)
    if include_keys:
        Kc = centred_quantize(Xs[order], K)
        blocks = np.concatenate([Kc, V], axis=2)  # (n, d, 2L)
    else:
        blocks = V
    P = np.ascontiguousarray(blocks.transpose(1, 0, 2).reshape(d, -1))
    keys.setflags(write=False)
    return MemorizingPrompt(P, keys, d, L, K, include_keys)
