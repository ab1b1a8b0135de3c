"""The assembled prompt-tuned transformer (hu2024.md §3): input validation, budgets, caching, FF2 evaluation."""

from __future__ import annotations

import time

import numpy as np
import pytest

from constructions import lipschitz as lp
from constructions import quantization as qz
from constructions import universality as un

KEYS = {"attention_layers", "heads", "ffn_layers", "ffn_widths", "L_p", "nodes_M", "dps", "K", "delta", "n"}


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(eps=0.0), "eps must be > 0"),
        (dict(eps=-1.0), "eps must be > 0"),
        (dict(C=-0.5), "C must be >= 0"),
        (dict(alpha=0.5), "alpha"),
        (dict(delta=0.4), "not an integer"),
        (dict(variant="three_ffn"), "variant"),
    ],
)
def test_bad_inputs_raise(kw, match):
    args = dict(d=1, L=1, C=1.0, alpha=1.0, eps=1.0)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        un.build_prompt_tuned_transformer(**args)
    if "delta" not in kw:
        with pytest.raises(ValueError, match=match):
            un.resource_counts(**{k: v for k, v in args.items()})


def test_over_budget_refused_before_allocating():
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"node count M = 6973568802 exceeds the node budget 5000"):
        un.build_prompt_tuned_transformer(1, 2, 1.0, 1.0, 1.0, K=3)
    with pytest.raises(ValueError, match=r"digits .* exceed the digits budget 4000"):
        un.build_prompt_tuned_transformer(2, 1, 1.0, 1.0, 1.0, K=2)
    with pytest.raises(ValueError, match="node budget"):
        un.build_prompt_tuned_transformer(3, 3, 1.0, 1.0, 0.01)  # K = 100 levels: M ~ 10^(10^18)
    assert time.perf_counter() - t0 < 2.0  # refused from the counts, nothing was built


def test_resource_counts_keys_and_values():
    r = un.resource_counts(1, 2, 1.0, 1.0, 4.5, "two_ffn")
    assert KEYS <= set(r)
    assert (r["K"], r["L_p"], r["n"], r["nodes_M"]) == (2, 8, 10, 2**10 * 2)
    assert r["ffn_widths"] == (2 * (10 * 2 - 1) + 1, 2048) and r["ffn_layers"] == 2
    m = un.resource_counts(1, 2, 1.0, 1.0, 4.5, "multi_ffn")
    assert m["ffn_layers"] == 1 + 2048 and m["ffn_widths"][1] == 4
    huge = un.resource_counts(4, 4, 1.0, 2.0, 0.01)
    assert KEYS <= set(huge) and isinstance(huge["nodes_M"], str)


def test_tau_is_cached_and_exact_on_cells():
    tau = un.build_prompt_tuned_transformer(1, 1, 0.0, 2.0, 0.75, K=2)
    assert un.build_prompt_tuned_transformer(1, 1, 0.0, 2.0, 0.75, K=2) is tau
    f = lp.random_lipschitz(0, 1, 1, 1.0, 1.0, "clipped_linear")
    P = tau.prompt_for(f)
    T = qz.lookup_table(f, 1, 1, 2)
    for i, X in enumerate(qz.all_grid_points(1, 1, 2) + 0.25):
        assert np.allclose(tau(np.concatenate([P, X], axis=1)), T[i], atol=1e-15)


@pytest.mark.parametrize("variant", un.VARIANTS)
def test_fast_ff2_equals_literal_network(variant):
    tau = un.build_prompt_tuned_transformer(1, 1, 1.0, 1.0, 1.5, variant, K=3)
    ctx = tau.ctx
    z = sorted(tau.ff2.nodes)
    rng = np.random.default_rng(0)
    for zq in list(z[::7]) + [z[0] - 1, z[-1] + 1] + list(rng.uniform(3.9, 4.4, 5)):
        y = [ctx.mpf(zq)]
        a, b = tau.ff2.apply_column(y, ctx), tau.ff2.apply_mp([y], ctx)
        assert abs(a[0] - b[0, 0]) <= tau.floor  # the derived rounding floor of the exact outputs


def test_ff2_is_the_memorization_value_map_with_flat_ends():
    from constructions.memorization import BumpStack, InterpolationFFN

    two = un.build_prompt_tuned_transformer(1, 1, 1.0, 1.0, 1.5, K=3)
    multi = un.build_prompt_tuned_transformer(1, 1, 1.0, 1.0, 1.5, "multi_ffn", K=3)
    assert isinstance(two.ff2, InterpolationFFN) and two.ff2.extend == "flat"
    assert isinstance(multi.ff2, BumpStack)
    M = two.resources["nodes_M"]
    assert two.ff2.hidden_width == M == two.resources["ffn_widths"][1]  # flat: one ReLU per id
    assert multi.ff2.depth == M and multi.resources["ffn_layers"] == 1 + M


def test_flat_ends_bound_the_output():
    tau = un.build_prompt_tuned_transformer(1, 1, 1.0, 1.0, 1.5, K=3)
    ctx = tau.ctx
    z = tau.ff2.nodes
    for zq, v in ((z[0] - 100, tau.ff2.values[0]), (z[-1] + 100, tau.ff2.values[-1])):
        out = tau.ff2.apply_column([ctx.mpf(zq)], ctx)[0]
        assert abs(out - zq - v[0]) <= tau.floor  # beyond the extreme ids g is the end value


def test_sizes_table_respects_time():
    from properties.universality import sizes_table

    t0 = time.perf_counter()
    headers, rows, notes = sizes_table(max_seconds=5.0)
    assert time.perf_counter() - t0 < 30
    assert len(rows) >= 8 and all(len(r) == len(headers) for r in rows)
    assert any("not built" in r[-1] for r in rows) and any(r[-1].startswith("built") for r in rows)


def test_prompt_matches_memorization_table_prompt():
    from constructions.memorization import table_prompt

    tau = un.build_prompt_tuned_transformer(1, 2, 1.0, 1.0, 4.5, K=2)
    f = lp.random_lipschitz(1, 1, 2, 1.0, 1.0, "bump_sum")
    assert np.array_equal(tau.prompt_for(f), table_prompt(f, 1, 2, 2))


def _reaches(strategy, condition, n=300):
    from hypothesis import HealthCheck, find, settings

    return find(strategy, condition, settings=settings(max_examples=n, database=None,
                                                       suppress_health_check=list(HealthCheck)))


def test_strategies_reach_the_largest_sizes_and_both_variants():
    from properties.universality import arch_instances, table_instances, target_instances

    for s in (table_instances(), target_instances(), arch_instances):
        _reaches(s, lambda i: tuple(i["size"]) == (1, 2, 2) and i["variant"] == "multi_ffn")
        _reaches(s, lambda i: tuple(i["size"]) == (1, 1, 4) and i["variant"] == "two_ffn")
    # constant targets (C = 0) at the centred output grid: where the (C + 1/2) bound's 1/2 is attained
    _reaches(target_instances(), lambda i: i["C"] == 0.0 and i["alpha"] == 1.0)


def test_multi_ffn_guard_stores_target_ids():
    tau = un.build_prompt_tuned_transformer(1, 1, 1.0, 1.0, 1.5, "multi_ffn", K=3)
    B, ctx = tau.ff2, tau.ctx
    assert len(B.target_ids) == B.M
    lo, hi = B.guard_band()
    for z, w, t in zip(B.nodes, B.shifts, B.target_ids, strict=True):
        assert abs(z + ctx.mpf(B.u[0]) * w[0] - t) <= ctx.mpf(10) ** (-ctx.dps + 5) * abs(z)
        assert t < lo or t > hi
