"""Fast (polynomial-method) attention: input validation, jit, GPU parity, and the bench smoke run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from constructions import fast_attention as fa
from constructions import fast_attention_cost as fc
from constructions import fast_attention_prompt as fp
from constructions.transformer import head_attention, random_head


def _qkv(n=16, d=3, B=0.8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-B, B, (n, d)), rng.uniform(-B, B, (n, d)), rng.normal(size=(n, 2))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda Q, K, V: (Q, K, V, {"eps": 0.0}), "eps must lie in"),
        (lambda Q, K, V: (Q, K, V, {"eps": 1.0}), "eps must lie in"),
        (lambda Q, K, V: (Q, K, V, {"eps": float("nan")}), "eps must lie in"),
        (lambda Q, K, V: (Q, K, V, {"scale": -1.0}), "scale must be"),
        (lambda Q, K, V: (Q[:, :2], K, V, {}), "share the feature dimension"),
        (lambda Q, K, V: (Q, K[:-1], V, {}), "same number of tokens"),
        (lambda Q, K, V: (Q[0], K, V, {}), "must be 2-D"),
        (lambda Q, K, V: (np.where(Q > 0.5, np.inf, Q), K, V, {}), "non-finite"),
        (lambda Q, K, V: (Q, K, np.where(V > 1, np.nan, V), {}), "non-finite"),
        (lambda Q, K, V: (Q, K, V, {"beta": 1e-3}), "below the a-priori score half-width"),
        (lambda Q, K, V: (Q * 40, K * 40, V, {"eps": 1e-6}), "float64 floor"),
        (lambda Q, K, V: (Q, K, V, {"memory_budget": 1024}), "memory budget"),
    ],
)
def test_bad_input_raises_naming_the_limit(change, message):
    Q, K, V, kw = change(*_qkv())
    kw = {"eps": 1e-6, "scale": 1.0 / 3, **kw}
    with pytest.raises(ValueError, match=message):
        fa.polynomial_attention(Q, K, V, **kw)


def test_rank_budget_checked_before_allocation():
    rng = np.random.default_rng(1)
    Q = rng.uniform(-1, 1, (8, 64))
    # r = C(64+g, g) is astronomically large: the error must come from the count, not from a failed allocation
    with pytest.raises(ValueError, match=r"rank r = C\(d\+g, g\)"):
        fa.polynomial_attention(Q, Q, Q[:, :2], eps=1e-6, scale=1.0 / 64)


def test_exp_polynomial_bad_kind_and_degree():
    with pytest.raises(ValueError, match="kind"):
        fa.exp_polynomial(1.0, 1e-3, "pade")
    with pytest.raises(ValueError, match="degree"):
        fa.exp_polynomial(1.0, 1e-3, degree=fa.G_MAX + 1)


def test_plan_multinomials_are_exact_integers():
    plan = fa.feature_plan(3, 25)
    assert plan.r == math.comb(28, 25)
    assert all(isinstance(m, int) for m in plan.multinomials)
    # the largest multinomial of degree 25 in 3 variables: 25!/(9! 8! 8!), beyond float64's exact integers
    assert max(plan.multinomials) == math.factorial(25) // (math.factorial(9) * math.factorial(8) ** 2)
    # each degree's multinomials sum to d^j (the full tensor power)
    assert plan.prefixes[2] == tuple(math.comb(c + 2, 2) for c in range(3))
    for j in range(26):
        assert sum(m for m, g in zip(plan.multinomials, plan.degrees.tolist(), strict=True) if g == j) == 3**j


def test_matches_exact_attention_and_certificate():
    Q, K, V = _qkv(n=200, d=4, B=1.0)
    out, cert = fa.polynomial_attention(Q, K, V, eps=1e-6, scale=0.25, chunk=37)
    err = np.abs(out - fa.exact_attention(Q, K, V, scale=0.25)).max()
    assert cert.rank == math.comb(4 + cert.degree, cert.degree) <= cert.paper_rank_bound
    assert cert.rho <= 1e-6 and err <= cert.output_bound


def test_prompt_wrapper_matches_transformer_head():
    rng = np.random.default_rng(3)
    head = random_head(rng, 3, 2, 0.8)
    P, X = rng.normal(size=(3, 5)), rng.uniform(-1, 1, (3, 7))
    res = fp.prompt_polynomial_attention(head, P, X, eps=1e-8)
    Z = np.concatenate([P, X], axis=1)
    assert np.abs(res.output - head_attention(head, Z, Z)).max() <= res.certificate.output_bound
    assert res.norms.B == max(res.norms.B_P, res.norms.B_X) >= res.norms.B_X


@pytest.mark.backends
def test_jax_jit():
    jax = pytest.importorskip("jax", reason="jax not installed")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    Q, K, V = _qkv(n=50, d=3)
    f = jax.jit(lambda q, k, v: fa.polynomial_attention(q, k, v, eps=1e-7, scale=1 / 3, beta=1.0, chunk=16)[0])
    out = np.asarray(f(jnp.asarray(Q), jnp.asarray(K), jnp.asarray(V)))
    ref, cert = fa.polynomial_attention(Q, K, V, eps=1e-7, scale=1 / 3, beta=1.0, chunk=16)
    assert np.abs(out - ref).max() <= 1e-13
    assert np.abs(out - fa.exact_attention(Q, K, V, scale=1 / 3)).max() <= cert.output_bound
    with pytest.raises(ValueError, match="pass beta"):
        jax.jit(lambda q, k, v: fa.polynomial_attention(q, k, v, eps=1e-7, scale=1.0)[0])(Q, K, V)


@pytest.mark.gpu
def test_backend_parity_on_cuda():
    torch = pytest.importorskip("torch", reason="torch not installed")
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda is not available on this machine")
    from hypothesis import given, settings

    from properties.fast_attention.parity import check_backend_parity, parity_instances
    from verify import Backend

    backend = Backend("torch", device="cuda").ensure()

    @settings(max_examples=40, deadline=None, database=None)
    @given(parity_instances)
    def run(inst):
        ev = check_backend_parity(inst, backend)
        assert ev.ratio <= 1.0, (inst, ev)

    run()


def test_bench_smoke(tmp_path, capsys):
    import json

    from properties.fast_attention.bench import main

    rc = main(["--n-min", "16", "--n-max", "64", "--d", "2", "--B", "0.5", "--eps", "1e-4",
               "--repeats", "1", "--phase-n", "64", "--out", str(tmp_path), "--no-plots"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "fitted slope" in out and "crossover" in out and "matmul rate" in out
    md = (tmp_path / "bench_attention.md").read_text()
    assert "measured crossover n*" in md and "Rank and error against B" in md and "float32 kernel breakdown" in md
    assert "two r-wide matmuls" in md and "peak memory" in md
    numbers = json.loads((tmp_path / "bench_attention.json").read_text())
    assert numbers["matmul_rate_flops"] > 0 and numbers["crossover_predicted"] >= 1
    assert main(["--n-min", "64", "--n-max", "16"]) == 2


def test_study_is_registered():
    import verify
    from properties.fast_attention import bench

    assert verify.STUDIES["attention"].main is bench.main


@pytest.mark.backends
def test_bench_sdpa_call_is_the_documented_4d_call(monkeypatch):
    """The bench's SDPA makes torch's documented 4-D call: the same layout (shapes, strides, contiguity), dtype and
    scale reach F.scaled_dot_product_attention, and the same values come back. A structural check, not a timing:
    the speed itself is the benchmark's to measure (tools/ and the README), never a timed unit test."""
    torch = pytest.importorskip("torch", reason="torch not installed")
    from types import SimpleNamespace

    import torch.nn.functional as F

    from properties.fast_attention import bench_methods as bm

    ctx = bm.Context("cpu", "float64")
    args = SimpleNamespace(d=4, eps=1e-6, kind="chebyshev", dtype="float64", methods="torch-sdpa")
    sdpa = bm.methods(args, ctx, 1.0)["torch SDPA float64"]
    assert "4-D" in sdpa.detail
    Q, K, _ = _qkv(n=1024, d=4, B=1.0)
    Q, K, V = (torch.as_tensor(a) for a in (Q, K, np.random.default_rng(2).normal(size=(1024, 4))))
    real, seen = F.scaled_dot_product_attention, []

    def spy(q, k, v, *a, **kw):
        seen.append(tuple((x.shape, x.stride(), x.is_contiguous(), x.dtype) for x in (q, k, v)) + (a, kw))
        return real(q, k, v, *a, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    ours = sdpa.fn(Q, K, V)[0]
    documented = bm.sdpa_documented(torch, Q, K, V, 0.25)
    assert len(seen) == 2 and seen[0] == seen[1], f"the bench's call {seen[0]} is not the documented {seen[1]}"
    assert seen[0][0][0] == (1, 1, 1024, 4) and seen[0][0][2], "4-D [batch, heads, n, d], contiguous"
    assert torch.equal(ours, documented)


def test_flop_model_counts_the_code():
    """The FLOP model equals the operations counted on the running code (small sizes, exact integers)."""
    from constructions import fast_attention_cost as fc
    from properties.fast_attention._opcount import count, counted

    rng = np.random.default_rng(0)
    for nq, nk, d, dv, g, chunk in [(7, 9, 3, 2, 4, 4), (16, 16, 2, 1, 3, 16), (5, 13, 4, 3, 2, 3), (1, 1, 1, 1, 0, 1)]:
        Q, K, V = (counted(rng.uniform(-1, 1, (n, w))) for n, w in ((nq, d), (nk, d), (nk, dv)))
        poly = fa.exp_polynomial(0.5, 1e-3, degree=g)
        _, c = count(fa.lowrank_apply, fa.feature_plan(d, g), poly, Q, K, V, 0.3, chunk)
        assert c.ops == fc.lowrank_flops(nq, nk, d, dv, g, chunk)
        _, c = count(fa.exact_attention, Q, K, V, scale=0.3, block=4)
        assert c.ops == fc.exact_flops(nq, nk, d, dv)
    n_star = fc.predicted_crossover(4, 4, 8, 1059)
    assert fc.lowrank_flops(n_star, n_star, 4, 4, 8, 1059) <= fc.exact_flops(n_star, n_star, 4, 4)
    assert fc.lowrank_flops(n_star - 1, n_star - 1, 4, 4, 8, 1059) > fc.exact_flops(n_star - 1, n_star - 1, 4, 4)


def test_feature_map_float32_and_torch_match_numpy():
    torch = pytest.importorskip("torch", reason="torch not installed")
    Q, K, V = _qkv(n=64, d=4, B=1.0)
    ref, _ = fa.polynomial_attention(Q, K, V, eps=1e-6, scale=0.25, chunk=20, beta=1.0)
    for dt, tol in ((torch.float64, 1e-13), (torch.float32, 1e-5)):
        out, _ = fa.polynomial_attention(*(torch.as_tensor(a, dtype=dt) for a in (Q, K, V)), eps=1e-6, scale=0.25,
                                         chunk=20, beta=1.0)
        assert np.abs(out.double().numpy() - ref).max() <= tol


def test_rank_exponent_lgamma_matches_exact_binomial():
    from properties.fast_attention.scaling import rank_exponents

    for (g, e), k in zip(rank_exponents(lambda ln_n: 0.5, 1.0, "chebyshev", (64, 256)), (64, 256), strict=True):
        assert abs(e - math.log(math.comb(k + g, g)) / (k * math.log(2))) <= 1e-12 * max(e, 1.0)


def test_parity_floor_covers_zero_naive_error():
    """beta = 0: every feature is 1, the naive error can be exactly 0 and the floor alone must hold the chunked sum."""
    from properties.fast_attention.parity import check_backend_parity
    from verify import Backend

    rng = np.random.default_rng(5)
    inst = {"n": 64, "d": 1, "dv": 3, "beta": 0.0, "log10_eps": -6.0, "kind": "taylor", "scaling": "1",
            "adversarial": False, "adversarial_v": False, "chunk": 1, "dtype": "float32",
            "Qu": rng.uniform(-1, 1, (64, 1)), "Ku": rng.uniform(-1, 1, (64, 1)), "V": rng.normal(size=(64, 3)),
            "perm_q": np.arange(64), "perm_k": np.arange(64)}
    ev = check_backend_parity(inst, Backend("numpy").ensure())
    assert ev.resources["fwd_atol"] > 0 and ev.ratio <= 1.0, ev


def test_lowrank_memory_peak_ignores_other_threads():
    """Regression (thorough sweep on 2 Dask workers): tracemalloc counts every thread, so a worker's comm thread
    lifted the traced peak past the model. With another thread allocating, the measured peak must equal the
    single-threaded one (the measurement moves to a forked child)."""
    import threading
    import time

    from properties.fast_attention import cost

    n, d, dv, g, chunk = 256, 2, 1, 1, 8
    rng = np.random.default_rng(0)
    Q, K, V = rng.uniform(-1, 1, (n, d)), rng.uniform(-1, 1, (n, d)), rng.uniform(-1, 1, (n, dv))
    plan, poly = fa.feature_plan(d, g), cost._poly(g)
    fa.lowrank_apply(plan, poly, Q, K, V, 0.5, chunk)  # first-call caches, in this process (a child inherits them)
    alone = cost._traced_peak_here(plan, poly, Q, K, V, chunk)
    stop = threading.Event()

    def allocate():
        while not stop.is_set():
            _ = [bytearray(4096) for _ in range(4)]
            time.sleep(1e-4)

    t = threading.Thread(target=allocate)
    t.start()
    try:
        # the allocating thread must get scheduled during one measurement; on a loaded machine that can take a few
        noisy_here = alone
        for _ in range(40):
            noisy_here = max(noisy_here, cost._traced_peak_here(plan, poly, Q, K, V, chunk))
            if noisy_here > alone + 4096:
                break
        measured = [cost._traced_peak(plan, poly, Q, K, V, chunk) for _ in range(3)]
    finally:
        stop.set()
        t.join()
    assert noisy_here > alone + 4096, "the allocating thread did not disturb tracemalloc: the test shows nothing"
    # the child's own call frame may add a few bytes; another thread's 16 kB blocks may not
    assert len(set(measured)) == 1 and abs(measured[0] - alone) <= 256, (measured, alone)


def test_prompt_wrapper_norms_scale_chunk_and_budget():
    """Each argument of prompt_polynomial_attention reaches the certificate; entry norms split by P and X."""
    rng = np.random.default_rng(5)
    head = random_head(rng, 3, 2, 0.8)
    P, X = 3.0 * rng.normal(size=(3, 4)), rng.uniform(-1, 1, (3, 6))
    n = fp.prompt_norms(head, P, X)
    qp, kp, qx, kx = head.Wq @ P, head.Wk @ P, head.Wq @ X, head.Wk @ X
    assert n.B_P == max(np.abs(qp).max(), np.abs(kp).max()) and n.B_X == max(np.abs(qx).max(), np.abs(kx).max())
    Q, K = np.concatenate([qp, qx], axis=1).T, np.concatenate([kp, kx], axis=1).T
    assert n.beta == fa.score_halfwidth(Q, K, 1.0) and fp.prompt_norms(head, P, X, scale=0.5).beta == \
        fa.score_halfwidth(Q, K, 0.5)
    empty = fp.prompt_norms(head, P[:, :0], X)  # no prompt: B_P = 0, not an error
    assert empty.B_P == 0.0 and empty.B == empty.B_X == n.B_X
    res = fp.prompt_polynomial_attention(head, P, X, eps=1e-6, scale=0.5, chunk=3, kind="taylor")
    c = res.certificate
    assert (c.scale, c.chunk, c.kind, c.n) == (0.5, 3, "taylor", 10) and res.norms.beta == c.beta
    assert res.norms == fp.prompt_norms(head, P, X, scale=0.5)
    Z = np.concatenate([P, X], axis=1)
    Zq, Zk = (head.Wq @ Z).T, (head.Wk @ Z).T
    ref = fa.exact_attention(Zq, Zk, (head.Wo @ (head.Wv @ Z)).T, scale=0.5).T
    assert res.output.shape == (3, 10) and np.abs(res.output - ref).max() <= c.output_bound
    with pytest.raises(ValueError, match="over the memory budget"):
        fp.prompt_polynomial_attention(head, P, X, eps=1e-6, scale=0.5, memory_budget=64)
    for bad_P, bad_X in ((P[:, 0], X), (P, X[:, 0]), (P[:2], X)):
        with pytest.raises(ValueError, match="d x L_p and d x L"):
            fp.prompt_polynomial_attention(head, bad_P, bad_X, eps=1e-6)


@pytest.mark.parametrize("n_q, n_k, d, dv, g, chunk", [(100, 100, 2, 3, 2, 16), (7, 300, 3, 1, 1, 1000),
                                                       (50, 20, 1, 2, 4, 8)])
def test_cost_models_are_their_documented_formulas(n_q, n_k, d, dv, g, chunk):
    r = math.comb(d + g, g)
    m = min(chunk, max(n_q, n_k))
    assert fc.lowrank_peak_elements(n_q, n_k, d, dv, g, chunk) == (
        n_k * (dv + 2) + (d * m + 3 * r * m + 2 * m * (dv + 1)) + 3 * r * (dv + 1) + 2 * n_q * dv)
    assert fc.exact_flops(n_q, n_k, d, dv) == n_q * (2 * n_k * (d + dv) + 5 * n_k - 2 + dv)
    assert fc.lowrank_flops(n_q, n_k, d, dv, g, chunk) == (
        (n_q + n_k) * (d + r - 1 + 2 * r * (dv + 1)) + math.ceil(n_k / chunk) * r * (dv + 1)
        + n_q * (g * (dv + 1) + dv))


@pytest.mark.parametrize("d, dv, g, chunk", [(1, 1, 1, 64), (2, 2, 2, 256), (4, 4, 3, 128), (3, 1, 5, 8)])
def test_predicted_crossover_is_the_least_winning_n(d, dv, g, chunk):
    n = fc.predicted_crossover(d, dv, g, chunk)

    def wins(k):
        return fc.lowrank_flops(k, k, d, dv, g, min(chunk, k)) <= fc.exact_flops(k, k, d, dv)

    assert n >= 1 and wins(n) and (n == 1 or not wins(n - 1))
