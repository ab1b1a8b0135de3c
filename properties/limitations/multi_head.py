"""Claim wang23.multihead_caveat: Theorem 2 needs one head (wang2023.md §2.2 'Multi-head caveat' [D]).

With h = 2 heads the witness recipe IS memorized: an explicit 2-token prompt fits both examples to O(e^-gamma/2),
far below (1 - kappa) alpha D. An expected counterexample: ratio = certificate / max error >> 1.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import verify
from constructions.transformer import MLP, Head, Layer
from constructions.witness import two_head_counterexample, witness_dataset, witness_errors
from properties.limitations._common import SEEDS, layer_to, materialise


def with_two_head_arrays(inst: dict) -> dict:
    """Build the 2-head layer and its 2-token prompt from the seed now; store their arrays in the instance."""
    layer, _, P = two_head_counterexample(np.random.default_rng(inst["seed"]), inst["gamma"], inst["kappa"],
                                          inst["alpha"])
    heads = [{k: np.asarray(getattr(h, k)) for k in ("Wq", "Wk", "Wv", "Wo")} for h in layer.heads]
    mlp = {k: np.asarray(getattr(layer.mlp, k)) for k in ("W1", "b1", "W2", "b2")}
    return {**inst, "heads": heads, "mlp": mlp, "P": P}


caveat_instances = materialise(st.fixed_dictionaries(
    {"seed": SEEDS, "gamma": st.floats(24.0, 40.0), "kappa": st.floats(0.05, 0.95), "alpha": st.floats(0.05, 5.0)}
), with_two_head_arrays)

_TOKENS = (np.eye(4)[0], np.array([1.0, 1.0, 0.0, 0.0]), np.array([1.0, -1.0, 0.0, 0.0]))  # x0, x1, x2


def _caveat(inst, backend, single: bool):
    heads = tuple(Head(h["Wq"], h["Wk"], h["Wv"], h["Wo"]) for h in inst["heads"])
    layer = Layer(heads[:1] if single else heads, MLP(**inst["mlp"]))
    ds = witness_dataset(layer, inst["alpha"], tokens=_TOKENS, allow_multihead=True)
    lb = layer_to(backend, layer)
    arrs = [backend.asarray(a) for a in (ds.X1, ds.X2, ds.Y1, ds.Y2)]
    err = max(witness_errors(lb, ds, backend.asarray(inst["P"]), *arrs))
    res = {"heads": len(layer.heads), "m_p": 2, "gamma": inst["gamma"]}
    if single:
        return verify.Evidence(observed=err, bound=ds.certificate, resources=res,
                               notes="one head: error / certificate (> 1: the theorem holds again)")
    return verify.Evidence(
        observed=ds.certificate,
        bound=err,
        notes="2-head layer, witness recipe, explicit 2-token prompt: max error O(exp(-gamma/2)) << (1-kappa) alpha D",
        resources=res,
    )


@verify.claim(
    "wang23.multihead_caveat",
    source="wang2023.md §2.2 'Multi-head caveat' [D]; Wang et al. 2023 Thm 2 assumes one head [R]",
    statement="h = 2 heads: the witness bound fails, an explicit 2-token prompt fits both examples to O(e^-gamma/2)",
    strategy=caveat_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits="d = 4, gamma in [24, 40] (residual ~ e^-gamma/2 must sit below the certificate)",
    expect="counterexample",
    expect_reason="the theorem needs h = 1",
)
def check_multihead_caveat(inst, backend):
    """Expected counterexample: ratio = (1-kappa) alpha D / max_i error >> 1 for the 2-head layer's 2-token prompt."""
    return _caveat(inst, backend, single=False)


@verify.mutant("wang23.multihead_caveat", "second_head_removed")
def mutant_caveat_single_head(inst, backend):
    """Second head removed (h = 1), ratio INVERTED to error / certificate (> 1: the counterexample is gone).

    flag: the defect lives in the check. An expected-counterexample claim is caught by a ratio > 1, so a patch of
    the construction (dropping a head) could only be seen by a check that reads its ratio the other way round.
    """
    return _caveat(inst, backend, single=True)
