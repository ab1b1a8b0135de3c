"""Claims: the rank obstruction and the rank-1 LoRA memorizer (Wang et al. 2023 Thms 3-4 [R]; wang2023.md §2.3 [D]).

* wang23.rank_certificate: certificates (A) and (B) lower-bound sigma_n of every admissible choice of prompt points.
* wang23.rank_prompt_lower_bound: a prompt with m_p < n errs by >= (1-kappa) sigma_min([C,w]) min_i lambda_i.
* wang23.lora_memorizer: Delta W_2 = u beta^T H^+ (d + r parameters) fits case (B) exactly, to a derived floor.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import verify
from constructions.precision import backend_unit_roundoff, gamma
from constructions.prompt_adversary import best_prompt
from constructions.rank_obstruction import (
    certificate_A,
    certificate_B,
    lora_hidden_residual_bound,
    lora_rank1,
    prompt_lambdas,
    rank_lower_bound,
    rank_obstruction_dataset,
    ray_sigma_min,
    with_w2_update,
)
from constructions.residual_mlp import affine_mlp
from constructions.single_layer import attention_rounding, last_output_rounding, mlp_rounding
from constructions.transformer import MLP, Layer, prompt_tuned, random_head, spectral_norm
from properties.limitations._common import SEEDS, layer_arrays, layer_to, materialise, stored_layer

rank_params = {  # the case-(B) layer and dataset: shared by the certificate, prompt and LoRA claims
    "seed": SEEDS,
    "d": st.integers(3, 7),
    "n_frac": st.floats(0.0, 1.0),
    "kappa": st.floats(0.05, 0.95),
    "weight_scale": st.floats(0.3, 2.0),
    "beta_log10": st.floats(-3.0, 0.5),
}


def _rank_layer(inst, rng):
    d = inst["d"]
    head = random_head(rng, d, d, inst["weight_scale"])
    mlp = affine_mlp(rng, d, 2 * d, inst["kappa"], sign=float(rng.choice([-1.0, 1.0])), radius=20.0)
    # perturb W2 to a generic contraction (not only +-kappa I) while keeping every ReLU active
    G = rng.normal(size=np.asarray(mlp.W2).shape)
    W2 = np.asarray(mlp.W2) + 0.3 * math.sqrt(inst["kappa"]) * G / spectral_norm(G)
    W2 *= math.sqrt(inst["kappa"]) / spectral_norm(W2)
    return Layer((head,), MLP(mlp.W1, mlp.b1, W2, -W2 @ np.asarray(mlp.b1)))


def with_rank_arrays(inst: dict) -> dict:
    """Draw the layer and the case-(B) dataset (X_i, u, beta) from the seed now and store them; n = 2 + n_frac (d-3)."""
    rng = np.random.default_rng(inst["seed"])
    n = 2 + int(inst["n_frac"] * (inst["d"] - 3))  # 2 <= n <= d - 1 (case B needs n + 1 <= d)
    layer = _rank_layer(inst, rng)
    ds = rank_obstruction_dataset(layer, n, rng, beta_scale=10.0 ** inst["beta_log10"])
    return {**inst, **layer_arrays(layer), "Xs": list(ds.Xs), "u": ds.u, "beta": ds.beta,
            "rest_seed": int(rng.integers(2**32))}


def stored_rank(inst):
    layer = stored_layer(inst)
    return layer, rank_obstruction_dataset(layer, len(inst["Xs"]), Xs=inst["Xs"], u=inst["u"], beta=inst["beta"])


def with_case_A_directions(inst: dict) -> dict:
    """Case (A): random directions V scaled so that sigma_min(V) = R_factor * (||C||_2 + 1e-3) (> ||C||_2)."""
    _, ds = stored_rank(inst)
    V = np.random.default_rng(inst["rest_seed"]).normal(size=ds.C.shape)
    smin = np.linalg.svd(V, compute_uv=False)[-1]
    return {**inst, "V": V * (inst["R_factor"] * (spectral_norm(ds.C) + 1e-3) / smin + 1e-9)}


rank_instances = materialise(st.fixed_dictionaries(
    {**rank_params, "case": st.sampled_from(["A", "B"]), "R_factor": st.floats(1.0, 4.0)}
), with_rank_arrays, with_case_A_directions)


@verify.claim(
    "wang23.rank_certificate",
    source="Wang et al. 2023 Thm 3 [R]; wang2023.md §2.3 certificates (A), (B) [D]; §5 items 16-17",
    statement="(A) s_n(C + V diag s) >= s_min(V) - ||C|| (s >= 1); (B) s_n(C + w (s b)^T) >= s_min([C,w])",
    strategy=rank_instances,
    provenance="derived",
    precision="float64",
    limits="3 <= d <= 7, 2 <= n <= d - 1; adversary: BFGS over s from 4 starts",
    tight=0.9,
)
def check_rank_certificate(inst, backend):
    _, ds = stored_rank(inst)
    if inst["case"] == "B":
        V, cert, lower = np.outer(ds.w, ds.beta), certificate_B(ds.C, ds.w), None
    else:
        V, lower = inst["V"], 1.0
        cert = certificate_A(ds.C, V)
    worst = ray_sigma_min(ds.C, V, lower)
    return verify.Evidence(
        observed=cert,
        bound=worst,
        notes=f"case {inst['case']}: certificate vs min over the rays of sigma_n([c_i + s_i v_i])",
        resources={"n": ds.n, "d": inst["d"], "case": inst["case"]},
    )


@verify.mutant("wang23.rank_certificate", "certificate_B_ignores_w",
               patch="constructions.rank_obstruction.certificate_B",
               strategy=rank_instances.filter(lambda i: i["case"] == "B"))
def mutant_rank_sigma_C(C, w):
    """Case (B) certified by sigma_min(C) alone: a rank-1 move along w can lower sigma_n below it."""
    return float(np.linalg.svd(np.asarray(C, dtype=np.float64), compute_uv=False)[-1])


@verify.mutant("wang23.rank_certificate", "ray_includes_s_below_1",
               patch="constructions.rank_obstruction.ray_sigma_min",
               strategy=rank_instances.filter(lambda i: i["case"] == "A"))
def mutant_rank_s_below_1(C, V, lower, *, original):
    """Case (A) over s >= 0 instead of the open ray s > 1: s -> 0 brings back sigma_n(C) < certificate."""
    return original(C, V, None if lower is None else 0.0)


def with_rank_prompts(inst: dict) -> dict:
    """For every m_p < n: a random prompt of scale 10^prompt_log10_scale and a BFGS start, drawn now and stored."""
    rng = np.random.default_rng(inst["rest_seed"])
    d, n = inst["d"], len(inst["Xs"])
    scale = 10.0 ** inst["prompt_log10_scale"]
    return {**inst, "prompts": [rng.normal(0.0, scale, size=(d, mp)) for mp in range(1, n)],
            "starts": [rng.normal(0.0, 1.0, size=(d, mp)) for mp in range(1, n)]}


rank_prompt_instances = materialise(st.fixed_dictionaries(
    {**rank_params, "prompt_log10_scale": st.floats(-2.0, 1.5), "adversary": st.booleans()}
), with_rank_arrays, with_rank_prompts)


@verify.claim(
    "wang23.rank_prompt_lower_bound",
    source="Wang et al. 2023 Thm 3 [R]; wang2023.md §2.3 rank obstruction [D], quantified here [D]",
    statement="case (B), m_p < n: ||(tau([P,X_i])_last - y_i)_i||_F >= (1-kappa) sigma_min([C,w]) min_i lambda_i",
    strategy=rank_prompt_instances,
    provenance="derived",
    precision="float64",
    limits="3 <= d <= 7, 2 <= n <= d - 1, every m_p < n; adversary: BFGS (60 its) per m_p",
)
def check_rank_prompt(inst, backend):
    layer, ds = stored_rank(inst)
    head = layer.heads[0]
    cert = certificate_B(ds.C, ds.w)
    prompts = list(inst["prompts"])
    if inst["adversary"]:
        prompts += best_prompt(layer, [(X, ds.Y[:, i]) for i, X in enumerate(ds.Xs)], inst["starts"], power=1)
    worst_ratio, worst = -math.inf, None
    lb = layer_to(backend, layer)
    for P in prompts:
        lam = prompt_lambdas(head, ds.Xs, P)
        bound = rank_lower_bound(ds.kappa, cert, lam, "B")
        Pb = backend.asarray(P)
        err2 = 0.0
        for i, X in enumerate(ds.Xs):
            e = backend.to_numpy(prompt_tuned(lb, Pb, backend.asarray(X)))[:, -1] - ds.Y[:, i]
            err2 += float(e @ e)
        err = math.sqrt(err2)
        r = bound / err if err > 0 else math.inf
        if r > worst_ratio:
            worst_ratio, worst = r, (bound, err, P.shape[1], float(lam.min()))
    bound, err, mp, lmin = worst
    longest = max(P.shape[1] for P in prompts)
    return verify.Evidence(
        observed=bound,
        bound=err,
        conditions=(verify.Condition("m_p < n", longest < ds.n, f"a prompt of {longest} tokens, n = {ds.n}"),),
        notes="(1-kappa) sigma_min([C,w]) min_i lambda_i <= ||errors||_F for every prompt with m_p < n",
        resources={"n": ds.n, "d": inst["d"], "m_p": mp, "min_lambda": lmin, "prompt_params_needed": ds.n * inst["d"]},
    )


@verify.mutant(
    "wang23.rank_prompt_lower_bound",
    "drops_min_lambda",
    patch="constructions.rank_obstruction.rank_lower_bound",
    strategy=materialise(st.fixed_dictionaries(
        {**rank_params, "beta_log10": st.floats(-3.0, -1.5), "prompt_log10_scale": st.floats(-2.0, 1.5),
         "adversary": st.just(True)}
    ), with_rank_arrays, with_rank_prompts),
)
def mutant_rank_prompt_no_lambda(kappa, cert, lambdas, case="B"):
    """(1-kappa) sigma_min([C,w]) without min_i lambda_i: a faint prompt (lambda -> 0) leaves only |beta| error."""
    return (1.0 - kappa) * cert


lora_instances = materialise(st.fixed_dictionaries(rank_params), with_rank_arrays)


@verify.claim(
    "wang23.lora_memorizer",
    source="Wang et al. 2023 Thm 4 / remark [R]; wang2023.md §2.3 rank-1 LoRA memorizer [D]; §5 item 18",
    statement="case (B): rank-1 Delta W_2 = u beta^T H^+ (d + r params) fits n examples to rounding (prompts: >= nd)",
    strategy=lora_instances,
    provenance="derived",
    precision="float64",
    ladder=("float32", "float64"),
    backends=("numpy", "torch", "jax"),
    limits="3 <= d <= 7, 2 <= n <= d - 1, r = 2d",
)
def check_lora(inst, backend):
    """max_i ||tau'(X_i)_last - y_i|| against, per example, the evaluation's rounding (last_output_rounding of the
    updated layer) + Lip(MLP') (|E_c| + u |z|) (the float z_i = x_i + c_i the targets were built from) + the
    hidden-space residual of v (lora_hidden_residual_bound) + |v| E_H (the float H) + the targets' rounding."""
    layer, ds = stored_rank(inst)
    upd = lora_rank1(ds)
    tuned = with_w2_update(layer, upd.delta)
    lb = layer_to(backend, tuned)
    u = backend_unit_roundoff(backend)
    u64 = 2.0**-53
    extra = 0 if backend.dtype == "float64" else 2
    W1, b1 = np.asarray(layer.mlp.W1), np.asarray(layer.mlp.b1)
    lip = 1.0 + spectral_norm(tuned.mlp.W2) * spectral_norm(W1)
    hid = lora_hidden_residual_bound(ds, upd, u64)
    worst, worst_ratio, res = None, -1.0, []
    for i, X in enumerate(ds.Xs):
        out = backend.to_numpy(prompt_tuned(lb, backend.asarray(np.zeros((inst["d"], 0))), backend.asarray(X)))[:, -1]
        resid = float(np.linalg.norm(out - ds.Y[:, i]))
        z = X[:, -1] + ds.C[:, i]
        _, Ec = attention_rounding(layer, X[:, -1], X, u64)
        E_H = gamma(W1.shape[1] + 1, u64) * (np.abs(W1) @ np.abs(z) + np.abs(b1))
        _, Ey = mlp_rounding(layer.mlp, z, np.zeros_like(z), u64)
        y_round = float(np.linalg.norm(Ey + u64 * np.abs(ds.u * ds.beta[i]) + u64 * np.abs(ds.Y[:, i])))
        floor = (last_output_rounding(tuned, np.zeros((inst["d"], 0)), X, u, extra)
                 + lip * (float(np.linalg.norm(Ec)) + u64 * float(np.linalg.norm(z)))
                 + (hid[i] + float(np.abs(upd.v) @ E_H)) * (1.0 + gamma(inst["d"] + 2, u64)) + y_round)
        res.append((resid, floor))
        if resid / floor > worst_ratio:
            worst_ratio, worst = resid / floor, (resid, floor)
    d, r = inst["d"], ds.H.shape[0]
    rank = int(np.linalg.matrix_rank(upd.delta))
    return verify.Evidence(
        observed=worst[0],
        bound=worst[1],
        conditions=(
            verify.Condition("rank 1", rank == 1, f"rank Delta W_2 = {rank}"),
            verify.Condition("d + r parameters", upd.params == d + r, f"{upd.params} parameters, d + r = {d + r}"),
        ),
        notes="rank-1 Delta W_2 = u beta^T H^+ fits case (B) exactly; worst example's residual vs its derived floor",
        resources={"lora_params": upd.params, "prompt_params_needed": ds.n * d, "n": ds.n, "r": r},
    )


@verify.mutant("wang23.lora_memorizer", "transpose_for_pseudoinverse",
               patch="constructions.rank_obstruction.lora_rank1")
def mutant_lora_transpose(ds):
    """Delta W_2 = u beta^T H^T (the transpose where the pseudo-inverse belongs): the update misses the targets."""
    from constructions.rank_obstruction import LoRAUpdate

    return LoRAUpdate(ds.u.copy(), ds.H @ ds.beta, ds.beta)


@verify.mutant("wang23.lora_memorizer", "hidden_activations_dropped_bias",
               patch="constructions.rank_obstruction.rank_obstruction_dataset")
def mutant_lora_bias(layer, n, rng=None, beta_scale=1.0, *, Xs=None, u=None, beta=None, original):
    """H = ReLU(W_1 Z) without b_1: the update is solved for the wrong hidden activations."""
    ds = original(layer, n, rng, beta_scale, Xs=Xs, u=u, beta=beta)
    Z = np.stack([X[:, -1] for X in ds.Xs], axis=1) + ds.C
    H = np.maximum(np.asarray(layer.mlp.W1) @ Z, 0.0)
    return type(ds)(ds.Xs, ds.Y, ds.C, ds.T, ds.w, ds.u, ds.beta, H, ds.kappa)


@verify.mutant("wang23.lora_memorizer", "parameter_count_d_times_r",
               patch="constructions.rank_obstruction.LoRAUpdate.params")
@property
def mutant_lora_params(self):
    """LoRAUpdate.params = d r (a full update's count) instead of d + r: the report's resource count is a claim too."""
    return self.u.size * self.v.size
