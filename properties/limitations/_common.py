"""Shared strategies and builders of the limitations claims: every instance carries its arrays."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from constructions.residual_mlp import affine_mlp
from constructions.transformer import MLP, Head, Layer, head_to, mlp_to, random_contractive_mlp, random_head

MAX_TOKENS = 4096  # identical-token memorizers longer than this are out of reach (memory/time per instance)
SEEDS = st.integers(0, 2**32 - 1)


def materialise(params, *builders):
    """params.map(builder)... : each builder draws arrays from the instance's seed at generation time and stores
    them; an instance a builder cannot construct (ValueError: a hypothesis of the construction fails for this
    draw, e.g. an inactive ReLU) is rejected, never handed to the check."""

    def build(inst):
        try:
            for b in builders:
                inst = b(inst)
        except ValueError:
            return None
        return inst

    return params.map(build).filter(lambda inst: inst is not None)


def layer_to(backend, layer: Layer) -> Layer:
    """The layer with its weights on ``backend`` (dtype and device)."""
    return Layer(tuple(head_to(backend, h) for h in layer.heads), mlp_to(backend, layer.mlp), layer.hard, layer.causal)


def layer_arrays(layer: Layer) -> dict:
    """The single-head layer's weights as named float64 arrays (stored in an instance)."""
    h = layer.heads[0]
    m = layer.mlp
    names = ("Wq", "Wk", "Wv", "Wo", "W1", "b1", "W2", "b2")
    return {k: np.asarray(v, dtype=np.float64) for k, v in zip(names, (h.Wq, h.Wk, h.Wv, h.Wo, m.W1, m.b1, m.W2, m.b2),
                                                                 strict=True)}


def stored_layer(inst, causal: bool = False) -> Layer:
    """The single-head layer whose weights the instance stores."""
    return Layer((Head(inst["Wq"], inst["Wk"], inst["Wv"], inst["Wo"]),),
                 MLP(inst["W1"], inst["b1"], inst["W2"], inst["b2"]), causal=causal)


layer_params = {
    "seed": SEEDS,
    "d": st.integers(2, 6),
    "full_head": st.booleans(),
    "kappa": st.floats(0.05, 0.95),
    "alpha": st.floats(0.05, 5.0),
    "tight": st.booleans(),
    "spread": st.floats(0.5, 4.0),
    "weight_scale": st.floats(0.3, 3.0),
}


def witness_layer(inst, rng) -> Layer:
    """A single-head layer; tight=True uses the MLP z -> (1 - kappa) z (attains the lower Lipschitz constant)."""
    d = inst["d"]
    head = random_head(rng, d, d if inst["full_head"] else 1, inst["weight_scale"])
    if inst["tight"]:
        mlp = affine_mlp(rng, d, 2 * d, inst["kappa"], sign=-1.0, radius=10.0 * (1 + inst["spread"]))
    else:
        mlp = random_contractive_mlp(rng, d, 2 * d, inst["kappa"])
    return Layer((head,), mlp)


def with_witness_arrays(inst: dict) -> dict:
    """Draw the layer and the witness tokens (x0, x1, x2) from the seed, retrying while c1 = c2, and store them."""
    from constructions.witness import witness_dataset

    rng = np.random.default_rng(inst["seed"])
    layer = witness_layer(inst, rng)
    ds = witness_dataset(layer, inst["alpha"], rng, spread=inst["spread"])
    return {**inst, **layer_arrays(layer), "x0": ds.x0.copy(), "x1": ds.X1[:, 0].copy(), "x2": ds.X2[:, 0].copy(),
            "rest_seed": int(rng.integers(2**32))}


def stored_witness(inst):
    """(layer, dataset) rebuilt deterministically from the instance's arrays."""
    from constructions.witness import witness_dataset

    layer = stored_layer(inst)
    return layer, witness_dataset(layer, inst["alpha"], tokens=(inst["x0"], inst["x1"], inst["x2"]))
