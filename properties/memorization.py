"""Claims on table prompts, memorization and prompt-length counting of Hu et al. 2024 (hu2024.md §2.5, §3.3, §5).

hu24.table_prompt_counting   item 17: L_p = L K^{dL} = counting bound (tight); lookup = the table on every cell [D]
hu24.pt_memo_growth          item 18: prompt tokens >= L (3(C+1/2)(dL)^(1/alpha))^{dL} (1/eps)^{dL}           [P]
hu24.dataset_memorization    item 23: FF1 + table prompt readout within (C+1/2) delta (dL)^(1/alpha) <= eps [D]
hu24.arbitrary_memorization  item 24: any dataset, distinct cells: exact, L_p = L N_S (tight count)           [D]
hu24.counting_bounds         §2.5: the counting functions against exact integer counts (and enumeration)    [D]

The value maps FF2 (items 13, 14, 16) are claimed in properties.value_maps. Instances hold their arrays (the
Lipschitz targets' parameters too, materialised at draw time), so counterexample files replay on any numpy build.
"""

from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import verify
from constructions import memorization as mem
from constructions import quantization as qz
from constructions.lipschitz import KINDS, LipschitzMap, alpha_norm, random_lipschitz
from constructions.precision import gamma, unit_roundoff

U64 = unit_roundoff("float64")
_ALPHAS = (1.0, 1.5, 2.0, 3.0, 8.0)


def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def lipschitz_target(seed: int, d: int, L: int, C: float, alpha: float, kind: str) -> dict:
    """A random C-Lipschitz target materialised as data: {d, L, C, alpha, kind, params (arrays)}."""
    f = random_lipschitz(seed, d, L, C, alpha, kind)
    return {"d": d, "L": L, "C": float(C), "alpha": float(alpha), "kind": kind,
            "params": {k: np.asarray(v, dtype=np.float64) for k, v in f.params.items()}}


def target_map(t: dict) -> LipschitzMap:
    """The LipschitzMap of a materialised target (its stored arrays, not a seed)."""
    return LipschitzMap(t["d"], t["L"], t["C"], t["alpha"], t["kind"], dict(t["params"]))


# --------------------------------------------------------------------------------------------
# Table prompt (item 17)
# --------------------------------------------------------------------------------------------


@st.composite
def table_instances(draw):
    d, L = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    K = draw(st.integers(2, 5).filter(lambda k: k ** (d * L) <= 4096))
    N = K ** (d * L)
    return {"d": d, "L": L, "K": K,
            "cells": draw(hnp.arrays(np.int64, (N, d, L), elements=st.integers(0, K - 1))),
            "offsets": draw(hnp.arrays(np.float64, (N, d, L), elements=_floats(0.0, 0.999)))}


@verify.claim(
    "hu24.table_prompt_counting",
    source="Hu et al. 2024 (hu2024.md §2.5, §3.3, §5 item 17) [D]; wang2023.md §2.1",
    statement="P_T[:, L idx(QX) : +L] = T[idx(QX)] for every cell; L_p = L K^{dL} = counting bound "
              "L K^{dL} log K/log K",
    strategy=table_instances(),
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="K^{dL} <= 4096 cells (every cell read back)",
)
def check_table_prompt(inst, backend):
    d, L, K = inst["d"], inst["L"], inst["K"]
    T = (inst["cells"] + 0.5) / K
    N = T.shape[0]
    P = mem.table_prompt(T, d, L, K)
    X = qz.all_grid_points(d, L, K) + inst["offsets"] / K  # one point inside every cell, grid order
    worst = max(float(np.abs(mem.lookup_from_prompt(P, X[i], K, L) - T[i]).max()) for i in range(N))
    Lp = mem.prompt_length(d, L, K)
    cb = mem.counting_lower_bound(d, L, K)
    return verify.Evidence(
        worst, 1.0 / K,  # stored entries differ by >= delta when a block is misread, equal when read right
        notes=f"all {N} cells read back; max |read - T| = {worst}",
        resources={"L_p": Lp, "N": N, "K": K, "dL": d * L},
        conditions=(
            verify.Condition("shape", P.shape == (d, L * N), f"prompt {P.shape} vs (d, L K^dL) = {(d, L * N)}"),
            verify.Condition("length", Lp == L * N, f"prompt_length {Lp} vs L K^dL = {L * N}"),
            verify.Condition("counting", abs(cb - L * N) <= gamma(6, U64) * L * N,
                             f"counting bound {cb} vs L K^dL = {L * N}"),
            verify.Condition("least", mem.log_prompt_count(d, Lp, K) >= mem.log_table_count(d, L, K)
                             > mem.log_prompt_count(d, Lp - 1, K),
                             "L_p is not the least length whose prompts outnumber the tables"),
        ),
    )


_ORIG_TABLE = {"table_prompt": mem.table_prompt}


def _lookup_next_block(P, X, K, L):
    i = int(qz.grid_index(qz.cell_index(X, K), K))
    n = np.asarray(P).shape[1] // L
    j = (i + 1) % n
    return np.asarray(P)[:, j * L : (j + 1) * L]


def _blocks_reversed(f_or_table, d, L, K):
    P = _ORIG_TABLE["table_prompt"](f_or_table, d, L, K)
    return np.ascontiguousarray(P.reshape(d, -1, L)[:, ::-1, :].reshape(d, -1))


verify.patch_mutant("hu24.table_prompt_counting", "lookup_off_by_one_cell",
                    {"constructions.memorization.lookup_from_prompt": _lookup_next_block},
                    description="the reader takes block idx(QX) + 1")
verify.patch_mutant("hu24.table_prompt_counting", "length_without_L",
                    {"constructions.memorization.prompt_length": lambda d, L, K: K ** (d * L)},
                    description="L_p = K^{dL} (the L tokens per block forgotten)",
                    strategy=table_instances().filter(lambda i: i["L"] >= 2))
verify.patch_mutant("hu24.table_prompt_counting", "blocks_in_reversed_order",
                    {"constructions.memorization.table_prompt": _blocks_reversed},
                    description="the prompt's blocks written in reversed grid order")


# --------------------------------------------------------------------------------------------
# PT_memo growth (item 18)
# --------------------------------------------------------------------------------------------

memo_growth_instances = st.fixed_dictionaries(
    {"C": _floats(0.0, 4.0), "d": st.integers(1, 3), "L": st.integers(1, 3), "alpha": st.sampled_from(_ALPHAS),
     "eps": _floats(0.01, 2.0)})


@verify.claim(
    "hu24.pt_memo_growth",
    source="Hu et al. 2024 PT_memo (thm:PT_memo; hu2024.md §2.5, §5 item 18) [P, reconstructed]",
    statement="prompt tokens L K^{dL} >= L (3(C+1/2)(dL)^(1/alpha))^{dL} (1/eps)^{dL}; monotone in d, L, 1/eps",
    strategy=memo_growth_instances,
    provenance="reconstructed",
    precision="float64",
    ladder=("float64",),
    limits="dL <= 9, eps >= 0.01 (exact Python integers, compared in logs)",
    tight=0.95,
)
def check_pt_memo_growth(inst, backend):
    C, d, L, a, e = inst["C"], inst["d"], inst["L"], inst["alpha"], inst["eps"]
    v = mem.pt_memo_lower_bound(C, d, L, a, e)
    dl = d * L
    c = 3 * (C + 0.5) * dl ** (1 / a)
    log_lower = math.log(L) + dl * math.log(c / e)
    log_upper = math.log(L) + dl * math.log(c / e + 1)
    lv = math.log(v)
    K = qz.choose_K(C, d, L, a, e)
    # logs of L and c/eps carry relative rounding ~u each, dL of them: the ratio's float64 floor
    floor = 1.0 + 8 * U64 * (dl + 2) * (1.0 + abs(log_lower))
    conds = [verify.Condition("upper", lv <= log_upper + gamma(4 * dl + 8, U64) * abs(log_upper),
                              "exceeds L (3(C+1/2)(dL)^(1/alpha)/eps + 1)^{dL}")]
    for name, w in (("d", mem.pt_memo_lower_bound(C, d + 1, L, a, e)),
                    ("L", mem.pt_memo_lower_bound(C, d, L + 1, a, e)),
                    ("1/eps", mem.pt_memo_lower_bound(C, d, L, a, e / 2))):
        conds.append(verify.Condition(f"monotone_{name}", w >= v, f"not monotone in {name}: {w} < {v}"))
    conds.append(verify.Condition("counting", K < 2 or math.isclose(mem.counting_lower_bound(d, L, K), v,
                                                                      rel_tol=gamma(8, U64)),
                                  "differs from the counting bound at K = choose_K"))
    return verify.Evidence(
        math.exp(log_lower - lv), floor,
        notes=f"log10 L_p = {lv / math.log(10):.4g}, power dL = {dl} of 1/eps",
        resources={"log10_Lp": lv / math.log(10), "dL": dl, "K": K},
        conditions=tuple(conds),
    )


verify.patch_mutant("hu24.pt_memo_growth", "exponent_d_not_dl",
                    {"constructions.memorization.pt_memo_lower_bound":
                     lambda C, d, L, a, e: L * qz.choose_K(C, d, L, a, e) ** d},
                    description="L K^d tokens: exponential in d only")
verify.patch_mutant("hu24.pt_memo_growth", "k_without_dl_factor",
                    {"constructions.quantization.choose_K":
                     lambda C, d, L, a, e: int(math.ceil(3.0 * (C + 0.5) / e))},
                    description="K = ceil(3(C+1/2)/eps): the (dL)^(1/alpha) factor dropped from the grid size")


# --------------------------------------------------------------------------------------------
# Memorization through FF1 + table prompt (item 23)
# --------------------------------------------------------------------------------------------


@st.composite
def dataset_instances(draw, small_C=False, n_samples=None):
    d, L = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    K = draw(st.integers(2, 6).filter(lambda k: L * k ** (d * L) <= 256))
    C = draw(_floats(0.0, 0.015) if small_C else st.one_of(_floats(0.0, 0.3), _floats(0.3, 3.0)))
    alpha, kind = draw(st.sampled_from(_ALPHAS)), draw(st.sampled_from(KINDS))
    n = n_samples or draw(st.integers(1, 40))
    return {"d": d, "L": L, "K": K, "C": C, "alpha": alpha,
            "target": lipschitz_target(draw(st.integers(0, 2**32 - 1)), d, L, C, alpha, kind),
            "X": draw(hnp.arrays(np.float64, (n, d, L), elements=_floats(0.0, 0.999999)))}


@verify.claim(
    "hu24.dataset_memorization",
    source="Hu et al. 2024 (hu2024.md §3.2–3.3, §5 item 23) [D]",
    statement="data off the ramps: max_i ||readout(FF1[P_f, X_i]) - Y_i||_alpha <= (C+1/2) delta (dL)^(1/alpha) <= eps",
    strategy=dataset_instances(),
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="L K^{dL} <= 256 prompt tokens (FF1 width d(2(nK-1)+1), n = L_p + L); readout = exact lookup, no attention",
    tight=0.8,
)
def check_dataset_memorization(inst, backend):
    d, L, C, a = inst["d"], inst["L"], inst["C"], inst["alpha"]
    eps = 3 * (C + 0.5) * (d * L) ** (1 / a) / inst["K"]  # the eps for which choose_K returns (about) K
    K = qz.choose_K(C, d, L, a, eps)
    if L * K ** (d * L) > 400:
        raise verify.OutOfReach(f"L K^(dL) = {L * K ** (d * L)} prompt tokens after choose_K rounding")
    f = target_map(inst["target"])
    X = inst["X"]
    Y = f(X)
    P = mem.table_prompt(f, d, L, K)
    Lp = P.shape[1]
    # ramp width adapted to the data: half the smallest gap from a positioned entry Z = X + E up to the next
    # breakpoint, taken on the floats FF1 receives (X*K - floor(X*K) rounds X = fl(1/3) up to a level and missed
    # that Z sits 1 ulp below t_b). t_b - Z is exact (Sterbenz: 1 <= Z < t_b <= Z + delta <= 2Z).
    E = qz.positional_encoding(d, Lp + L)[:, Lp:]
    Z = X + E
    gap = qz.breakpoint_gap(qz.ff1_breakpoints(K, Lp + L, positional=True)[1], Z)
    eta = min(0.25 / K, 0.5 * float(gap.min()))
    if eta <= 1e-9 / K:
        raise verify.OutOfReach("a data entry sits within 1e-9 delta below a grid level")
    F = qz.FF1Quantizer(d, K, Lp + L, eta, positional=True)
    reader = mem.FF1TableReader.build(F, P, L)
    in_ramp = sum(int(F.in_ramp_set(Z[i]).any()) for i in range(X.shape[0]))
    worst = max(float(alpha_norm(reader(X[i]) - Y[i], a)) for i in range(X.shape[0]))
    bound = qz.surrogate_sup_bound(C, d, L, a, K)
    return verify.Evidence(
        worst, bound,
        notes=f"eps = {eps:.3g}; eta = {eta:.3g}; {in_ramp} samples on a ramp",
        resources={"K": K, "L_p": Lp, "n_samples": X.shape[0], "ff1_width": F.hidden_width},
        conditions=(verify.Condition("eps", bound <= eps * (1 + gamma(8, U64)), f"bound {bound} > eps {eps}"),
                    verify.Condition("off_ramp", in_ramp == 0, f"{in_ramp} samples on a ramp")),
    )


_ORIG_READER = {"call": mem.FF1TableReader.__call__}


def _uncentred(self, X):
    return _ORIG_READER["call"](self, X) - 0.5 / self.ff1.K


def _offsets_kept(ff1, P, L, chunk=64):
    P = np.asarray(P, dtype=np.float64)
    Lp = P.shape[1]
    Z = P + ff1.encoding(Lp + L)[:, :Lp]
    YP = np.concatenate([ff1(Z[:, s : s + chunk]) for s in range(0, Lp, chunk)], axis=1)
    return mem.FF1TableReader(ff1, np.rint(YP * ff1.K).clip(0, ff1.K - 1).astype(np.int64), int(L))


verify.patch_mutant("hu24.dataset_memorization", "uncentred_readout",
                    {"constructions.memorization.FF1TableReader.__call__": _uncentred},
                    strategy=dataset_instances(small_C=True, n_samples=40),
                    description="the prompt token's lower corner read without the + delta/2")
verify.patch_mutant("hu24.dataset_memorization", "prompt_offsets_not_removed",
                    {"constructions.memorization.FF1TableReader.build": _offsets_kept},
                    description="prompt cells decoded without subtracting the positional offsets")


# --------------------------------------------------------------------------------------------
# Arbitrary finite datasets (item 24)
# --------------------------------------------------------------------------------------------


@st.composite
def arbitrary_instances(draw):
    d, L, K = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(2, 16))
    N = K ** (d * L)
    idx = draw(st.lists(st.integers(0, N - 1), min_size=1, max_size=min(48, N), unique=True))
    n = len(idx)
    return {"d": d, "L": L, "K": K, "include_keys": draw(st.booleans()),
            "cells": np.asarray(qz.grid_cells(np.asarray(idx, dtype=np.int64), d, L, K), dtype=np.int64),
            "offsets": draw(hnp.arrays(np.float64, (n, d, L), elements=_floats(0.0, 0.999))),
            "Y": draw(hnp.arrays(np.float64, (n, d, L), elements=_floats(0.0, 1.0)))}


@verify.claim(
    "hu24.arbitrary_memorization",
    source="Hu et al. 2024 (hu2024.md §2.5, §5 item 24) [D]",
    statement="distinct cells => the prompt recalls Qc(Y_i) exactly (also through FF1); L_p = L N_S = counting bound",
    strategy=arbitrary_instances(),
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="N_S <= 48 samples, dL <= 9, K <= 16 (L_p <= 288, FF1 width <= 3(2 L_p K + 1))",
)
def check_arbitrary_memorization(inst, backend):
    d, L, K, keys = inst["d"], inst["L"], inst["K"], inst["include_keys"]
    X = (inst["cells"] + inst["offsets"]) / K
    Y = inst["Y"]
    n = X.shape[0]
    M = mem.memorizing_prompt((X, Y), K, include_keys=keys)
    worst, missing = 0.0, 0
    for i in range(n):
        try:
            got = M.decode(X[i])
        except ValueError:
            missing += 1
            continue
        worst = max(worst, float(np.abs(got - qz.centred_quantize(Y[i], K)).max()))
    # the stored tokens are cell centres: FF1 (positional, eta = delta/4) maps them to lower corners exactly
    F = qz.FF1Quantizer(d, K, M.length, 0.25 / K)
    E = F.encoding(M.length)
    dec = (F.decode_cells(np.concatenate([F(M.P[:, s : s + 64] + E[:, s : s + 64])
                                          for s in range(0, M.length, 64)], axis=1)) + 0.5) / K
    worst = max(worst, float(np.abs(dec - M.P).max()))
    need = (2 if keys else 1) * L * n
    # the counting bound in exact integers: #prompts K^{d L_p} vs #datasets (binom(N, N_S) if keys) K^{dL N_S}
    datasets = (math.comb(K ** (d * L), n) if keys else 1) * K ** (d * L * n)
    return verify.Evidence(
        worst, 1.0 / K,  # stored values are cell centres: a wrong one is off by >= delta
        notes=f"{n} samples recalled; L_p {M.length}",
        resources={"L_p": M.length, "N_S": n, "K": K},
        conditions=(
            verify.Condition("recall", missing == 0, f"{missing} samples not found in the prompt"),
            verify.Condition("length", M.length == need == mem.memorizing_prompt_length(n, L, keys),
                             f"length {M.length} vs {need}"),
            verify.Condition("counting", K ** (d * M.length) >= datasets,
                             f"length {M.length} below the counting bound"),
            verify.Condition("tight", keys or K ** (d * (M.length - 1)) < datasets,
                             f"length {M.length} not tight against the counting bound"),
        ),
    )


_ORIG = {"memorizing_prompt": mem.memorizing_prompt}  # a dict: patches rebind module globals, not these


def _insertion_order(dataset, K, include_keys=False):
    M = _ORIG["memorizing_prompt"](dataset, K, include_keys)
    Xs, Ys = dataset
    V = qz.centred_quantize(Ys, K)
    blocks = np.concatenate([qz.centred_quantize(Xs, K), V], axis=2) if include_keys else V
    P = np.ascontiguousarray(blocks.transpose(1, 0, 2).reshape(M.d, -1))
    return mem.MemorizingPrompt(P, M.keys, M.d, M.L, M.K, include_keys)


def _one_short(dataset, K, include_keys=False):
    Xs, Ys = dataset
    if len(Xs) < 2:
        return _ORIG["memorizing_prompt"](dataset, K, include_keys)
    return _ORIG["memorizing_prompt"]((Xs[:-1], Ys[:-1]), K, include_keys)


verify.patch_mutant("hu24.arbitrary_memorization", "blocks_in_insertion_order",
                    {"constructions.memorization.memorizing_prompt": _insertion_order},
                    strategy=arbitrary_instances().filter(lambda i: i["cells"].shape[0] >= 3),
                    description="blocks stored in dataset order while the reader ranks inputs by cell index")
verify.patch_mutant("hu24.arbitrary_memorization", "one_block_short",
                    {"constructions.memorization.memorizing_prompt": _one_short},
                    description="the prompt built from all but the last sample (under the counting bound)")


# --------------------------------------------------------------------------------------------
# The counting functions (§2.5): exact integers, enumeration on small sizes
# --------------------------------------------------------------------------------------------


@st.composite
def counting_instances(draw):
    d, L, K = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(2, 16))
    N = K ** (d * L)
    return {"d": d, "L": L, "K": K, "K_out": draw(st.integers(2, 16)), "K_P": draw(st.integers(2, 16)),
            "n_samples": draw(st.integers(1, min(48, N))), "L_p": draw(st.integers(1, 400))}


def _ratio(computed, exact, floor):
    return float(abs(mpmath.mpf(computed) - exact) / floor)


@verify.claim(
    "hu24.counting_bounds",
    source="Hu et al. 2024 (hu2024.md §2.5) [D]: K_P^{d L_p} >= K_out^{dL N} (x binom(K^{dL}, N_S) with keys)",
    statement="counting_lower_bound, log_prompt_count, log_table_count, memorization_counting_bound equal the logs of "
              "the exact integer counts to their derived rounding floors; binomials match enumeration",
    strategy=counting_instances(),
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="dL <= 9, K <= 16, N_S <= 48: exact integers up to ~10^1300; enumeration for K^{dL} <= 8",
)
def check_counting_bounds(inst, backend):
    d, L, K, Ko, Kp, n, Lp = (inst[k] for k in ("d", "L", "K", "K_out", "K_P", "n_samples", "L_p"))
    mp = mpmath.MPContext()
    mp.prec = 200
    N = K ** (d * L)
    lKo, lKp = mp.log(Ko), mp.log(Kp)
    A = d * L * n * lKo  # log K_out^{dL N_S}
    B = mp.log(math.comb(N, n))  # log binom(N, N_S), from the exact integer
    D = d * lKp
    k = min(n, N - n)
    ratios = {
        # L K^{dL} log K_out / log K_P: pow, two logs, two products and a quotient: gamma_6
        "counting_lower_bound": _ratio(mem.counting_lower_bound(d, L, K, Ko, Kp), L * mp.mpf(N) * lKo / lKp,
                                       gamma(6, U64) * L * N * lKo / lKp),
        "log_prompt_count": _ratio(mem.log_prompt_count(d, Lp, Kp), d * Lp * lKp, gamma(3, U64) * d * Lp * lKp),
        "log_table_count": _ratio(mem.log_table_count(d, L, K, Ko), d * L * mp.mpf(N) * lKo,
                                  gamma(4, U64) * d * L * N * lKo),
        "memorization_counting_bound": _ratio(mem.memorization_counting_bound(n, d, L, K, Ko, Kp), A / D,
                                              gamma(6, U64) * A / D),
        # + log binom: 3u |B| (log of an exact integer) or, summed term by term, (k + 1) u absolute more
        "memorization_counting_bound_keys": _ratio(mem.memorization_counting_bound(n, d, L, K, Ko, Kp, True),
                                                   (A + B) / D, (gamma(6, U64) * (A + B) + (k + 1) * U64) / D),
    }
    conds = []
    if N <= 8:  # enumeration: the binomial and the number of datasets with distinct cells
        enum = sum(1 for _ in itertools.combinations(range(N), n))
        conds.append(verify.Condition("binomial", enum == math.comb(N, n), f"{enum} subsets vs C({N}, {n})"))
    # the least integer L_p with K_P^{d L_p} >= #datasets, exactly, against the real bound
    datasets = math.comb(N, n) * Ko ** (d * L * n)
    b = mem.memorization_counting_bound(n, d, L, K, Ko, Kp, True)
    least = next(m for m in itertools.count(max(int(b) - 2, 0)) if Kp ** (d * m) >= datasets)
    near_int = abs(b - round(b)) <= 1e-9 * max(1.0, b)
    conds.append(verify.Condition("least_length", near_int or least == math.ceil(b),
                                  f"least L_p = {least} vs ceil(bound) = {math.ceil(b)}"))
    name = max(ratios, key=ratios.get)
    return verify.Evidence(
        ratios[name], 1.0,
        notes=f"worst: {name} ({ratios[name]:.3g} x its floor); least keyed L_p = {least}",
        resources={"N": N, "N_S": n, "K_out": Ko, "K_P": Kp},
        conditions=tuple(conds),
    )


def _log_binomial_lgamma(N, k):
    return math.lgamma(N + 1) - math.lgamma(k + 1) - math.lgamma(N - k + 1)


_ORIG_COUNT = {"counting_lower_bound": mem.counting_lower_bound}

verify.patch_mutant("hu24.counting_bounds", "log_binomial_by_lgamma",
                    {"constructions.memorization.log_binomial": _log_binomial_lgamma},
                    description="log C(N, k) as lgamma(N+1) - lgamma(k+1) - lgamma(N-k+1): cancels when N >> k")
verify.patch_mutant("hu24.counting_bounds", "K_out_and_K_P_swapped",
                    {"constructions.memorization.counting_lower_bound":
                     lambda d, L, K, K_out=None, K_P=None: _ORIG_COUNT["counting_lower_bound"](d, L, K, K_P, K_out)},
                    description="L K^{dL} log K_P / log K_out")
verify.patch_mutant("hu24.counting_bounds", "table_count_without_L",
                    {"constructions.memorization.log_table_count":
                     lambda d, L, K, K_out=None: d * float(K) ** (d * L) * math.log(K if K_out is None else K_out)},
                    description="log #tables = d K^{dL} log K_out (the L tokens per block forgotten)")
verify.patch_mutant("hu24.counting_bounds", "binomial_dropped",
                    {"constructions.memorization.log_binomial": lambda N, k: 0.0},
                    description="memorization with keys counted as if the input set were known")
