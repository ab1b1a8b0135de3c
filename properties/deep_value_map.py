"""The value-map stack of Wang et al. 2023's deep construction as a lookup (wang2023.md §3.2 step 8).

wang23.universality.value_map_lookup  a column near a node id (hard or soft zeta_5) moves to its target     [D]
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import verify
from constructions import deep_universality as du
from constructions.precision import unit_roundoff
from properties.deep_universality import _ORIG, DYADIC, SOURCE, _net


@st.composite
def value_map_instances(draw):
    size = draw(st.sampled_from(DYADIC))
    soft = draw(st.booleans())
    n = draw(st.integers(1, 32))
    half = 0.24 if soft else 0.49  # soft zeta_5 is 1 on |s| <= delta/4; hard on [-delta/2, delta/2)
    return {"size": size, "soft": soft,
            "nodes": draw(st.lists(st.integers(0, 2**31), min_size=n, max_size=n)),
            "s": draw(st.lists(st.floats(-half, half, allow_nan=False), min_size=n, max_size=n))}


@verify.claim(
    "wang23.universality.value_map_lookup",
    source=f"{SOURCE} §3.2 step 8 [D] (Yun et al. 2020 Lemma 7)",
    statement="a column at id q_G[j] + s, |s| < delta/2 (hard) or <= delta/4 (soft zeta_5), leaves the value-map "
    "stack as x + (A_G - Z_G)[:, j] and fires no other layer",
    strategy=value_map_instances(),
    provenance="derived",
    precision="float64",
    ladder=("float64",),
    limits="the dyadic networks (1,1,2), (1,1,4), (2,1,2), (1,2,2); up to 32 columns per instance",
)
def check_value_map_lookup(inst, backend):
    d, m, K = inst["size"]
    net = _net(d, m, K)
    U = net.plan.unit
    M = net.n_value_layers
    idx = np.asarray(inst["nodes"], dtype=np.int64) % M
    s = np.asarray(inst["s"], dtype=np.float64) / K
    q = net.node_ids[idx].astype(np.float64) / U + s
    B = idx.size
    out = np.zeros((B, d, m))
    out[:, 0, 0] = q  # u = (1, K, ...): the id of (q, 0, ..., 0) is q
    want = out.copy()
    want[:, :, 0] += net.node_delta[idx].astype(np.float64) / U
    du.apply_value_map(net, out, inst["soft"])
    err = np.abs(out - want).max(axis=(1, 2))
    # float64: q and the node ids round at |q|, the increment at its size; 4 roundings in all
    u = unit_roundoff("float64")
    floor = 4 * u * (np.abs(q) + np.abs(want).max(axis=(1, 2)) + 1.0)
    i = int(np.argmax(err / floor))
    return verify.Evidence(
        float(err[i]), float(floor[i]),
        notes=f"{B} columns at node ids + s (soft={inst['soft']}), worst s = {s[i] * K:+.3f} delta",
        resources={"d": d, "m": m, "K": K, "value_map_layers": M},
    )


_ORIG["apply_value_map"] = du.apply_value_map


def _value_map_upper_node_only(net, out, soft):
    """The value map that looks only at the node at or above the id (the neighbour below ignored)."""
    U = net.plan.unit
    nodes = net.node_ids.astype(np.float64) / U
    deltas = net.node_delta.astype(np.float64) / U
    u = np.array(net.plan.u, dtype=np.float64)
    q = np.einsum("i,bim->bm", u, out)
    hi = np.clip(np.searchsorted(nodes, q), 0, nodes.size - 1)
    z = du.zeta5(q - nodes[hi], 1.0 / net.K, soft)
    bi, mi = np.nonzero(z != 0)
    out[bi, :, mi] += deltas[hi[bi, mi]] * z[bi, mi][:, None]


verify.patch_mutant("wang23.universality.value_map_lookup", "lookup_ignores_lower_neighbour",
                    {"constructions.deep_universality.apply_value_map": _value_map_upper_node_only},
                    description="the lookup considers only the node at or above the id, not the one just below")
