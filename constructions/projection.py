"""Tokens, vocabularies, separation and the separating projection of Lemma D (hu2024.md §2.3, §5 item 5).

Sequences are d x n arrays, tokens their columns. A unit w is c-separating on V u {0} when
c ||u - u'|| <= |w^T (u - u')| for all distinct u, u'; a random unit w is c_theory-separating with
c_theory = (|V|+1)^{-2} sqrt(8/(pi d)) with probability > 1 - 2/pi (found by rejection sampling).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

MAX_VOCAB_PAIRS = 2_000_000  # projection search compares all pairs of V u {0}


# --------------------------------------------------------------------------------------------
# vocabulary, separation, projection
# --------------------------------------------------------------------------------------------


def columns(X) -> list[tuple[float, ...]]:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"a sequence must be a d x n array (tokens are columns), got shape {X.shape}")
    return [tuple(X[:, j].tolist()) for j in range(X.shape[1])]


def vocabulary(seqs) -> np.ndarray:
    """The distinct tokens (columns) of all sequences, as a d x |V| array in first-seen order."""
    seen: dict[tuple, None] = {}
    for X in seqs:
        for col in columns(X):
            seen.setdefault(col, None)
    return np.array(list(seen), dtype=np.float64).T


def check_no_duplicates(seqs) -> None:
    """ValueError naming the first sequence that repeats a token (Lemma D assumes duplicate-free sequences)."""
    for i, X in enumerate(seqs):
        cols = columns(X)
        if len(set(cols)) != len(cols):
            raise ValueError(f"sequence {i} has a duplicate token: Lemma D needs duplicate-free sequences")


def separation(V) -> tuple[float, float, float]:
    """(r_min, r_max, eps_min): token norms and the smallest distance between distinct tokens of V (d x |V|)."""
    V = np.asarray(V, dtype=np.float64)
    norms = np.linalg.norm(V, axis=0)
    m = V.shape[1]
    if m * (m + 1) // 2 > MAX_VOCAB_PAIRS:
        raise ValueError(f"|V| = {m} tokens: {m * (m + 1) // 2} pairs exceed budget {MAX_VOCAB_PAIRS}")
    diff = V[:, :, None] - V[:, None, :]
    dist = np.sqrt(np.sum(diff * diff, axis=0))
    iu = np.triu_indices(m, 1)
    eps = float(np.min(dist[iu])) if m > 1 else math.inf
    return float(np.min(norms)), float(np.max(norms)), eps


def c_theory(n_vocab: int, d: int) -> float:
    """c = (|V|+1)^{-2} sqrt(8/(pi d)): a random unit w is c-separating with probability > 1 - 2/pi."""
    return (n_vocab + 1) ** -2 * math.sqrt(8.0 / (math.pi * d))


def projection_constant(w, V) -> float:
    """c_emp(w) = min over distinct u, u' in V u {0} of |w^T (u - u')| / ||u - u'||."""
    V = np.asarray(V, dtype=np.float64)
    U = np.concatenate([V, np.zeros((V.shape[0], 1))], axis=1)
    m = U.shape[1]
    if m * (m - 1) // 2 > MAX_VOCAB_PAIRS:
        raise ValueError(f"{m * (m - 1) // 2} vocabulary pairs exceed budget {MAX_VOCAB_PAIRS}")
    iu = np.triu_indices(m, 1)
    D = (U[:, :, None] - U[:, None, :])[:, iu[0], iu[1]]
    nrm = np.linalg.norm(D, axis=0)
    keep = nrm > 0
    return float(np.min(np.abs(np.asarray(w, dtype=np.float64) @ D[:, keep]) / nrm[keep]))


def random_unit(rng: np.random.Generator, d: int) -> np.ndarray:
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v)


def separating_projection(V, rng: np.random.Generator, c: float | None = None, max_tries: int = 200, best_of: int = 1):
    """Rejection-sample a unit w with projection_constant(w, V) >= c (default c_theory(|V|, d)).

    Returns (w, c_emp, tries). d = 1: w = (1,) gives c_emp = 1 exactly (no sampling). ``best_of`` > 1 keeps
    the best of that many accepted draws (a data-dependent c' <= c_emp is admissible, hu2024.md §5 item 9).
    """
    V = np.asarray(V, dtype=np.float64)
    d = V.shape[0]
    if d == 1:
        return np.ones(1), 1.0, 0
    target = c_theory(V.shape[1], d) if c is None else float(c)
    best, tries, accepted = None, 0, 0
    while tries < max_tries and accepted < best_of:
        tries += 1
        w = random_unit(rng, d)
        ce = projection_constant(w, V)
        if ce >= target:
            accepted += 1
            if best is None or ce > best[1]:
                best = (w, ce)
    if best is None:
        raise ValueError(f"no c-separating projection (c = {target:.3g}) in {max_tries} draws")
    return best[0], best[1], tries


def is_permutation(X, Y) -> bool:
    """Whether the columns of Y are a permutation of the columns of X."""
    return sorted(columns(X)) == sorted(columns(Y))


def same_token_pairs(seqs):
    """Yield ((i, k), (j, l)): column k of sequence i equals column l of sequence j, and the two sequences are not
    column permutations of each other (Definition B's same-token, different-context pairs)."""
    toks = [columns(X) for X in seqs]
    keys = [tuple(sorted(t)) for t in toks]
    for i, j in itertools.combinations(range(len(toks)), 2):
        if keys[i] == keys[j]:
            continue
        for k, tk in enumerate(toks[i]):
            for l, tl in enumerate(toks[j]):
                if tk == tl:
                    yield (i, k), (j, l)


def duplicate_free_sequences(V, n: int, limit: int | None = None, rng: np.random.Generator | None = None):
    """All (or ``limit`` random) ordered duplicate-free length-n sequences over the columns of V (d x |V|)."""
    V = np.asarray(V, dtype=np.float64)
    m = V.shape[1]
    if n > m:
        raise ValueError(f"no duplicate-free sequence of length {n} over {m} tokens")
    total = math.perm(m, n)
    if limit is None or total <= limit:
        return [V[:, list(p)] for p in itertools.permutations(range(m), n)]
    rng = rng or np.random.default_rng(0)
    return [V[:, list(rng.choice(m, size=n, replace=False))] for _ in range(limit)]


_columns = columns  # the old private name
