"""Shared Hypothesis strategies: Lipschitz targets, FF1 quantizers, attention heads with prompts, vocabularies.

Every strategy returns a plain dict whose arrays are the instance itself (portable replay: a counterexample
file holds the arrays, not a seed). Where a family is rejection-sampled or certified by construction (a
Lipschitz map scaled to its Schur bound, a vocabulary with a separation guarantee), the seed is kept for the
record but the generated arrays are materialised into the dict at draw time and the checks read them.

Each strategy reaches its tight regime; tests/test_strategies.py shows it:

* lipschitz_targets   the signed-permutation family, where the surrogate bound (C + 1/2) delta (dL)^(1/alpha)
                      is nearly attained (errors align entry by entry);
* ff1_instances       ramps down to eta = 1e-3 delta and up to 0.49 delta, and points on every ramp edge;
* attention_instances prompts whose softmax mass underflows against the input's (lambda < 1e-300), and
                      prompts that take all the mass (1 - lambda < 1e-16);
* vocabularies        d = 1 vocabularies of mixed sign (tokens on both sides of 0) and d > 1 point sets at the
                      separation the lemma needs.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from constructions.lipschitz import KINDS, LipschitzMap, random_lipschitz

ALPHAS = (1.0, 1.5, 2.0, 3.0, 8.0)

# --------------------------------------------------------------------------------------------
# Lipschitz targets (hu2024.md §1.3: F_C, entry-wise alpha-norm)
# --------------------------------------------------------------------------------------------


def _materialise_target(inst: dict) -> dict:
    f = random_lipschitz(inst["seed"], inst["d"], inst["L"], inst["C"], inst["alpha"], inst["kind"])
    return {**inst, "params": {k: np.array(v, dtype=np.float64) for k, v in f.params.items()}}


def lipschitz_targets(*, d=None, L=None, C=None, alpha=None, kind=None, **extra):
    """{seed, d, L, C, alpha, kind, params, **extra}: a member of F_C with its arrays in ``params``.

    The certificate (Schur test / isometry / bump slopes) is the constructor's; the seed only records which
    member was drawn. ``extra`` adds further keys (strategies) to the dict.
    """
    base = st.fixed_dictionaries({
        "seed": st.integers(0, 2**32 - 1),
        "d": st.integers(1, 3) if d is None else d,
        "L": st.integers(1, 3) if L is None else L,
        "C": st.one_of(st.floats(0.0, 0.5), st.floats(0.5, 4.0)) if C is None else C,
        "alpha": st.sampled_from(ALPHAS) if alpha is None else alpha,
        "kind": st.sampled_from(KINDS) if kind is None else kind,
        **extra,
    })
    return base.map(_materialise_target)


def target_map(inst: dict) -> LipschitzMap:
    """The LipschitzMap stored in an instance of lipschitz_targets (from its arrays, not its seed)."""
    return LipschitzMap(inst["d"], inst["L"], float(inst["C"]), float(inst["alpha"]), inst["kind"],
                        {k: np.asarray(v, dtype=np.float64) for k, v in inst["params"].items()})


# --------------------------------------------------------------------------------------------
# FF1 quantizers (hu2024.md §3.2)
# --------------------------------------------------------------------------------------------


def ff1_instances(*, d=None, K=None, n=None, positional=None):
    """{d, K, n, log10_eta_frac, positional, uniform}: an FF1 quantizer and uniform draws in its token boxes.

    eta = 10^log10_eta_frac / K ranges over [1e-3, 0.49] delta; ``uniform`` (d, 64, n) in [0, 1) are the
    random tokens (positions added by the check); the ramp-edge points are derived from the quantizer.
    """

    @st.composite
    def _draw(draw):
        dd = draw(st.integers(1, 3) if d is None else d)
        KK = draw(st.integers(2, 10) if K is None else K)
        nn = draw(st.integers(1, 6) if n is None else n)
        pos = draw(st.booleans() if positional is None else positional)
        frac = draw(st.floats(-3.0, float(np.log10(0.49))))
        U = draw(hnp.arrays(np.float64, (dd, 16, nn if pos else 1),
                                 elements=st.floats(0.0, 1.0, exclude_max=True)))
        return {"d": dd, "K": KK, "n": nn, "log10_eta_frac": frac, "positional": pos, "uniform": U}

    return _draw()


# --------------------------------------------------------------------------------------------
# attention heads with a prompt (hu2024.md §1.2, wang2023.md §2.2)
# --------------------------------------------------------------------------------------------


def _gauss_like(shape, scale):
    """Arrays of standard-normal-sized entries (elements in [-3, 3]) times ``scale``."""
    return hnp.arrays(np.float64, shape, elements=st.floats(-3.0, 3.0)).map(lambda a: a * scale)


def attention_instances(*, d=None, s=None, m=None, m_p=None, weight_scale=None, prompt_scale=None, mlp=False):
    """{d, s, m, m_p, weight_scale, prompt_scale, Wq, Wk, Wv, Wo, X, P}: one head, inputs X (d x m), prompt P.

    Weights have entries of size weight_scale / sqrt(d); X in [-1, 1]; P of size prompt_scale. Large
    prompt_scale * weight_scale^2 pushes the prompt logits far above or below the input's, so one softmax
    mass underflows against the other (lambda -> 0 or 1), the regime where prompt_mixture must be computed in
    log space. mlp=True adds a token-wise ReLU MLP (W1: 2d x d, b1, W2: d x 2d, b2) of unit-sized entries.
    """

    @st.composite
    def _draw(draw):
        dd = draw(st.integers(1, 8) if d is None else d)
        ss = draw(st.integers(1, 8) if s is None else s)
        mm = draw(st.integers(1, 12) if m is None else m)
        mp = draw(st.integers(1, 48) if m_p is None else m_p)
        ws = draw(st.floats(0.05, 6.0) if weight_scale is None else weight_scale)
        ps = draw(st.floats(0.01, 50.0) if prompt_scale is None else prompt_scale)
        sd = ws / np.sqrt(dd)
        W = {k: draw(_gauss_like(sh, sd)) for k, sh in
             (("Wq", (ss, dd)), ("Wk", (ss, dd)), ("Wv", (ss, dd)), ("Wo", (dd, ss)))}
        X = draw(hnp.arrays(np.float64, (dd, mm), elements=st.floats(-1.0, 1.0)))
        P = draw(_gauss_like((dd, mp), ps))
        if mlp:
            r = 2 * dd
            W.update({"W1": draw(_gauss_like((r, dd), 1.0 / np.sqrt(dd))), "b1": draw(_gauss_like((r,), 1.0)),
                      "W2": draw(_gauss_like((dd, r), 1.0 / np.sqrt(r))), "b2": draw(_gauss_like((dd,), 1.0))})
        return {"d": dd, "s": ss, "m": mm, "m_p": mp, "weight_scale": ws, "prompt_scale": ps, **W, "X": X, "P": P}

    return _draw()


def head_of(inst: dict):
    """The constructions.transformer.Head stored in an attention instance."""
    from constructions.transformer import Head

    return Head(*(np.asarray(inst[k], dtype=np.float64) for k in ("Wq", "Wk", "Wv", "Wo")))


def prompt_log_masses(inst: dict, j: int = 0) -> tuple[float, float]:
    """(ln Z_P, ln Z_X) of query column j: the log softmax masses of the prompt and of the input."""
    h = head_of(inst)
    x = np.asarray(inst["X"])[:, j : j + 1]
    g = h.Wq @ x

    def lse(S):
        a = ((h.Wk @ np.asarray(S)).T @ g)[:, 0]
        mx = float(np.max(a))
        return mx + float(np.log(np.sum(np.exp(a - mx))))

    return lse(inst["P"]), lse(inst["X"])


# --------------------------------------------------------------------------------------------
# vocabularies for the contextual-mapping lemma (hu2024.md §2.3)
# --------------------------------------------------------------------------------------------


def vocabulary_1d(n_vocab: int, mixed: bool, picks: list[int]) -> np.ndarray:
    """A d = 1 vocabulary of ``n_vocab`` distinct integers: magnitudes from ``picks`` (1..), signs alternating
    when ``mixed`` (tokens on both sides of 0, the family where W_O's direction matters), else all positive."""
    vals: list[float] = []
    for i, p in enumerate(picks):
        v = float(p) * (-1.0 if mixed and i % 2 else 1.0)
        if v not in vals:
            vals.append(v)
    k = max(picks) + 1
    while len(vals) < n_vocab:
        if float(k) not in vals:
            vals.append(float(k))
        k += 1
    return np.array([sorted(vals[:n_vocab])], dtype=np.float64)


def separated_points(seed: int, d: int, n_vocab: int, sep: float = 0.75) -> np.ndarray:
    """d > 1: n_vocab points with norms in [1, 2] pairwise >= sep apart, by rejection sampling (seeded)."""
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        V = rng.standard_normal((d, n_vocab))
        V = V / np.linalg.norm(V, axis=0) * rng.uniform(1.0, 2.0, size=n_vocab)
        diff = V[:, :, None] - V[:, None, :]
        dist = np.sqrt(np.sum(diff * diff, axis=0))
        if np.min(dist[np.triu_indices(n_vocab, 1)]) >= sep:
            return V
    raise ValueError(f"no {n_vocab} points with separation {sep} in d = {d}")


def vocabularies(*, d=None, n_vocab=None, mixed=None):
    """{seed, d, n_vocab, mixed, V}: a vocabulary (d x |V|) for Lemma D, materialised at draw time.

    d = 1: distinct integers (step >= 1) drawn directly; d > 1: rejection-sampled separated points (seed kept).
    """

    @st.composite
    def _draw(draw):
        dd = draw(st.sampled_from([1, 1, 2, 3]) if d is None else d)
        m = draw(st.integers(3, 5) if n_vocab is None else n_vocab)
        mx = draw(st.booleans() if mixed is None else mixed)
        seed = draw(st.integers(0, 2**32 - 1))
        if dd == 1:
            # small magnitudes keep r_max (and the literal lemma's R ~ r_max^2 / r_min) within a few thousand digits
            picks = draw(st.lists(st.integers(1, m // 2 + 2), min_size=m, max_size=m))
            V = vocabulary_1d(m, mx, picks)
        else:
            V = separated_points(seed, dd, m)
        return {"seed": seed, "d": dd, "n_vocab": m, "mixed": mx, "V": V}

    return _draw()


def lemma_d_instances(*, d=None, n_vocab=None, n=None, mixed=None, limit: int = 12, c_frac=None, e_random=None,
                      **extra):
    """{V, seqs (S x d x n), w, e (or None), n, c_frac, ...}: the data of a Lemma D head, materialised at draw time.

    The sequences (<= ``limit`` duplicate-free ones over V), the separating projection w (rejection-sampled to
    c_theory) and the output direction e are drawn here from the instance's seed and stored as arrays; checks build
    the head with ``lemma_d(seqs, vocab=V, w=w, e=e, ...)`` and never re-draw.
    """
    from constructions import contextual as cm

    @st.composite
    def _draw(draw):
        voc = draw(vocabularies(d=d, n_vocab=n_vocab, mixed=mixed))
        V = voc["V"]
        nn = min(draw(st.integers(2, 3) if n is None else n), V.shape[1] - 1)
        rng = np.random.default_rng(voc["seed"] + 7)
        seqs = np.stack(cm.duplicate_free_sequences(V, nn, limit=limit, rng=rng))
        er = draw(st.booleans() if e_random is None else e_random)
        e = cm.random_unit(rng, V.shape[0]) if er else None
        ct = cm.c_theory(V.shape[1], V.shape[0])
        w, _, _ = cm.separating_projection(V, np.random.default_rng(voc["seed"]), ct)
        # the search can return its best w short of c_theory: such a draw breaks Lemma D's hypothesis, so it is
        # not an instance (lemma_d would refuse it), rather than an error of the check
        assume(V.shape[0] == 1 or cm.projection_constant(w / np.linalg.norm(w), V) >= ct)
        out = {**voc, "n": nn, "seqs": seqs, "w": w, "e": e, "e_random": er,
               "c_frac": draw(st.floats(0.3, 1.0) if c_frac is None else c_frac)}
        out.update({k: draw(v) for k, v in extra.items()})
        return out

    return _draw()
