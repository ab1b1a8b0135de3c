"""Study `attention`: exact vs polynomial-method (Alman–Song) attention, ratios measured in one run (§4.6).

Every method runs at n = n_min ... n_max (powers of two) at fixed (d, B, eps), alternating inside each repeat so
that machine load hits all alike; medians of the repeats. Exact baselines are called as documented: torch SDPA on
the 4-D layout [batch, heads, n, d] (the kernel torch chose is named), jax.nn.dot_product_attention on
[batch, n, heads, d] (jit), numpy exact blockwise. The polynomial method's time includes building its features.
Beside the times: the same two r-wide matrix products alone (chunked, as the algorithm does them), the machine's
measured matmul rate and each method's fraction of it (operations from constructions.fast_attention_cost, which
as23.flop_model checks against the running code), fitted and local slopes, the measured crossover next to the
one predicted from the operation counts, and peak memory (tracemalloc for numpy; max_memory_allocated on CUDA).

    prompt-limits study attention [--n-max 65536 --d 4 --B 1 --eps 1e-6 --dtype float64 --suffix _d4]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

import verify
from constructions import fast_attention as fa
from constructions import fast_attention_cost as fc
from properties.fast_attention import bench_methods as bm
from properties.fast_attention.bench_phase import phase_data, phase_figure, phase_table

REF_ROWS = 256  # query rows compared against the float64 reference (keeps the reference O(REF_ROWS n))
SLOPE_MIN_SECONDS = 2e-3  # the fitted slope ignores calls below this (launch and python overhead)
WARMUP_BELOW_SECONDS = 0.5  # warm-up call only while a method's calls are shorter than this
EXTRA_ROUNDS_SECONDS = 1.0  # rounds beyond --repeats while one n has taken less than this
MEMORY_N_MAX = 2**14  # tracemalloc (slow) measures numpy peak memory up to this n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prompt-limits study attention", description=__doc__.split("\n\n")[0])
    p.add_argument("--n-min", type=int, default=2**8)
    p.add_argument("--n-max", type=int, default=2**16)
    p.add_argument("--d", type=int, default=4, help="head dimension (d_v = d)")
    p.add_argument("--B", type=float, default=1.0, help="entry bound of Q and K (AS23 scaling 1/d: beta = B^2)")
    p.add_argument("--eps", type=float, default=1e-6, help="relative kernel error target")
    p.add_argument("--kind", choices=fa.KINDS, default="chebyshev")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="dtype of torch/jax methods")
    p.add_argument("--methods", default="all",
                   help="comma list among numpy-exact,torch-naive,torch-sdpa,jax-exact,poly-numpy,poly-torch,"
                        "poly-jax (default all but poly-jax on cpu)")
    p.add_argument("--max-call-seconds", type=float, default=3.0,
                   help="a method stops before the n at which its predicted call time exceeds this")
    p.add_argument("--phase-n", type=int, default=4096, help="n for the phase-transition figure")
    p.add_argument("--phase-max-rank", type=int, default=3000,
                   help="largest rank whose error the phase figure measures")
    p.add_argument("--no-phase", action="store_true", help="skip the phase-transition table and figure")
    p.add_argument("--out", default="reports", help="directory for bench_attention<suffix>.md/.json and figures/")
    p.add_argument("--suffix", default="", help="appended to the output file names, e.g. _d8")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default="", help="a line for the report (e.g. 'machine shared with other jobs')")
    return p


def _fit(ns, ts):
    """Slope of log t against log n over the points above SLOPE_MIN_SECONDS (launch overhead region dropped)."""
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, ts, strict=True) if t > SLOPE_MIN_SECONDS]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def _stop_reason(m: bm.Method, n, times, device, budget) -> str | None:
    if m.name.startswith("torch naive") and 2 * n * n * m.itemsize > 2**31 and device == "cpu":
        return f"n x n score and softmax matrices {2 * n * n * m.itemsize / 2**30:.0f} GiB > 2 GiB"
    if times:
        n_prev = max(times)
        pred = times[n_prev] * (n / n_prev) ** (2 if m.kind == "exact" else 1)
        if pred > budget:
            return f"predicted {pred:.1f} s per call > --max-call-seconds {budget:g}"
    return None


def _peak_numpy(fn, data) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn(*data)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _time_all(args, ns, methods, ctx):
    """Alternating timed runs: times[m][n] (median s), errors[(m, n)], bounds[n], peaks[(m, n)], stops[m]."""
    times = {m: {} for m in methods}
    errors, bounds, stops, peaks, mm = {}, {}, {}, {}, {}
    rng = np.random.default_rng(args.seed)
    scale = 1.0 / args.d
    for n in ns:
        Q, K = rng.uniform(-args.B, args.B, size=(n, args.d)), rng.uniform(-args.B, args.B, size=(n, args.d))
        Q[0], K[0], K[-1] = args.B, args.B, -args.B  # adversarial rows reach |score| = beta
        V = rng.uniform(-1.0, 1.0, size=(n, args.d))
        ref = fa.exact_attention(Q[:REF_ROWS], K, V, scale=scale)
        data = {lib: ctx.convert(lib, (Q, K, V)) for lib in {m.lib for m in methods.values()}}
        live = []
        for name, m in methods.items():
            if name in stops:
                continue
            why = _stop_reason(m, n, times[name], args.device, args.max_call_seconds)
            if why:
                stops[name] = f"stops before n={n}: {why}"
                print(f"  {name}: {stops[name]}", flush=True)
            else:
                live.append(name)
        warm = {name: not times[name] or times[name][max(times[name])] < WARMUP_BELOW_SECONDS for name in live}
        samples = {name: [] for name in live}
        rep, t_n = 0, time.perf_counter()
        while rep <= args.repeats or (rep <= 5 * args.repeats and time.perf_counter() - t_n < EXTRA_ROUNDS_SECONDS):
            for name in live:
                if rep == 0 and not warm[name]:
                    continue
                m = methods[name]
                ctx.sync()
                ctx.reset_peak()
                t0 = time.perf_counter()
                out, cert = m.fn(*data[m.lib])
                out = ctx.ready(out)
                dt = time.perf_counter() - t0
                if rep == 0:
                    continue
                samples[name].append(dt)
                if len(samples[name]) == 1:
                    errors[(name, n)] = float(np.max(np.abs(ctx.to_numpy(out)[:REF_ROWS] - ref)))
                    if cert is not None:
                        bounds[n] = cert.output_bound
                    gpu_peak = ctx.peak()
                    if gpu_peak is not None:
                        peaks[(name, n)] = gpu_peak
            rep += 1
        for name in live:
            times[name][n] = statistics.median(samples[name])
            if methods[name].lib == "numpy" and n <= MEMORY_N_MAX and (name, n) not in peaks:
                peaks[(name, n)] = _peak_numpy(lambda *a, f=methods[name].fn: f(*a), data["numpy"])
        mm[n] = ctx.matmuls_alone(n)
        line = "  ".join(f"{name}={times[name][n] * 1e3:.1f}ms" for name in live)
        print(f"n={n:>7}: {line}  two-matmuls={mm[n] * 1e3:.1f}ms", flush=True)
    return times, errors, bounds, stops, peaks, mm


def _rows(args, ns, methods, times, errors, bounds, peaks, mm, rate, g, chunk):
    d = args.d
    fast = [m for m in methods if methods[m].kind == "fast"]
    exact = [m for m in methods if methods[m].kind == "exact"]
    ops = {n: (fc.exact_flops(n, n, d, d), fc.lowrank_flops(n, n, d, d, g, min(chunk, n))) for n in ns}
    headers = (["n"] + [f"{m} [ms]" for m in methods] + ["two r-wide matmuls [ms]"]
               + [f"{x} / {f}" for f in fast for x in exact] + [f"{f} / matmuls" for f in fast]
               + [f"max err {f}" for f in fast] + ["a-priori bound"])
    rows = []
    for n in ns:
        row = [n] + [f"{times[m][n] * 1e3:.2f}" if n in times[m] else "—" for m in methods] + [f"{mm[n] * 1e3:.2f}"]
        row += [f"{times[x][n] / times[f][n]:.2f}" if n in times[x] and n in times[f] else "—"
                for f in fast for x in exact]
        row += [f"{times[f][n] / mm[n]:.2f}" if n in times[f] else "—" for f in fast]
        row += [f"{errors[(f, n)]:.2e}" if (f, n) in errors else "—" for f in fast]
        row.append(f"{bounds[n]:.2e}" if n in bounds else "—")
        rows.append(row)
    eff = []
    for m in methods:
        k = 0 if methods[m].kind == "exact" else 1
        nn = sorted(times[m])
        fr = [ops[n][k] / times[m][n] / rate for n in nn]
        slope = _fit(nn, [times[m][n] for n in nn])
        local = [math.log2(times[m][b] / times[m][a]) / math.log2(b / a) for a, b in zip(nn, nn[1:], strict=False)]
        pk = [(n, peaks[(m, n)]) for n in nn if (m, n) in peaks]
        eff.append([m, methods[m].detail, "—" if slope is None else f"{slope:.2f}", " ".join(f"{s:.2f}" for s in local),
                    f"{max(fr):.3f}" if fr else "—",
                    "; ".join(f"{n}: {b / 2**20:.1f} MiB" for n, b in pk[-2:]) or "—"])
    cross = []
    n_pred = fc.predicted_crossover(d, d, g, chunk)
    for f in fast:
        for x in exact:
            common = [n for n in ns if n in times[x] and n in times[f]]
            won = [n for i, n in enumerate(common) if all(times[f][k] < times[x][k] for k in common[i:])]
            first = (str(won[0]) if won[0] > common[0] else f"<= {common[0]}") if won else (
                f"> {common[-1]}" if common else "—")
            cross.append([f"{f} vs {x}", first, n_pred])
    return headers, rows, eff, cross, n_pred


@verify.study("attention", title="exact vs polynomial-method attention: times, ratios, slopes, crossover, memory")
def main(argv: list[str]) -> int:
    from tabulate import tabulate

    args = _parser().parse_args(argv)
    if args.n_min < 2 or args.n_max < args.n_min:
        print(f"study attention: need 2 <= n-min <= n-max, got {args.n_min}, {args.n_max}", file=sys.stderr)
        return 2
    try:
        ctx = bm.Context(args.device, args.dtype)
    except RuntimeError as exc:
        print(f"study attention: {exc}", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    d, scale = args.d, 1.0 / args.d
    ns = [2**k for k in range(math.ceil(math.log2(args.n_min)), int(math.log2(args.n_max)) + 1)]
    beta = scale * d * args.B**2
    try:
        poly, plan, chunk = fa.plan_attention(ns[-1], d, d, beta, args.eps, kind=args.kind,
                                              itemsize=8 if args.dtype == "float64" else 4)
    except ValueError as exc:
        print(f"study attention: {exc}", file=sys.stderr)
        return 2
    g, r = poly.degree, plan.r
    methods = bm.methods(args, ctx, beta)
    ctx.prepare_matmuls(r, d + 1, chunk)
    rate = ctx.matmul_rate()
    setting = (f"d = d_v = {d}, B = {args.B}, scale 1/d, beta = {beta:g}, eps = {args.eps:g}, {args.kind} degree "
               f"g = {g}, rank r = C(d+g, g) = {r}, chunk {chunk}; device {ctx.device_name}, {os.cpu_count()} CPUs, "
               f"threads {ctx.threads}, dtype {args.dtype} (numpy methods float64); measured matmul rate "
               f"{rate / 1e9:.1f} GFLOP/s ({ctx.rate_note})")
    print(f"study attention: {setting}", flush=True)
    times, errors, bounds, stops, peaks, mm = _time_all(args, ns, methods, ctx)
    headers, rows, eff, cross, n_pred = _rows(args, ns, methods, times, errors, bounds, peaks, mm, rate, g, chunk)
    table = tabulate(rows, headers, tablefmt="github")
    eff_t = tabulate(eff, ["method", "call", f"fitted slope (t > {SLOPE_MIN_SECONDS * 1e3:g} ms)", "local slopes",
                           "best fraction of matmul rate", "peak memory (largest n measured)"], tablefmt="github")
    cross_t = tabulate(cross, ["pair", "measured crossover n*", "predicted n* (operation counts)"], tablefmt="github")
    print(table, eff_t, cross_t, sep="\n\n")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"bench_attention{args.suffix}.md"
    stopped = "".join(f"- {m}: {why}\n" for m, why in stops.items())
    head = (f"# Attention scaling: exact vs polynomial method\n\n"
            f"Command: `prompt-limits study attention {' '.join(argv)}`\n\n{setting}.\n\n"
            + (f"{args.note}\n\n" if args.note else "")
            + f"Medians of {args.repeats} to {5 * args.repeats} alternating repeats in one process; errors against "
            f"float64 exact attention on the first {REF_ROWS} query rows (the a-priori bound 2 rho/(1-rho) "
            "||V||_max is for exact arithmetic). Ratios are times measured in this run (> 1: the polynomial method "
            "is faster). 'two r-wide matmuls' times the algorithm's two skinny products alone (features of one "
            "chunk precomputed, reused over the n/chunk chunks). Fractions of the matmul rate use the operation "
            "counts of constructions/fast_attention_cost.py (claim as23.flop_model checks them against the code). "
            "Peak memory: tracemalloc (numpy, n <= 2^14) or torch.cuda.max_memory_allocated.\n\n")
    body = table + "\n\n" + eff_t + "\n\n" + cross_t + "\n"
    if stopped:
        body += "\nMethods stopped early:\n\n" + stopped
    phase = None
    if not args.no_phase:
        phase = phase_data(args)
        body += "\n" + phase_table(args, phase)
    md.write_text(head + body)
    numbers = {"setting": setting, "d": d, "B": args.B, "eps": args.eps, "g": g, "r": r, "chunk": chunk,
               "dtype": args.dtype, "device": ctx.device_name, "matmul_rate_flops": rate, "n": ns,
               "times_s": times, "two_matmuls_s": {str(n): mm[n] for n in ns},
               "errors": {f"{m}@{n}": e for (m, n), e in errors.items()},
               "bounds": {str(n): b for n, b in bounds.items()},
               "peak_bytes": {f"{m}@{n}": b for (m, n), b in peaks.items()},
               "methods": {m: methods[m].detail for m in methods}, "crossover_predicted": n_pred,
               "crossover_measured": {row[0]: row[1] for row in cross}, "stops": stops}
    (out_dir / f"bench_attention{args.suffix}.json").write_text(json.dumps(numbers, indent=1, default=str))
    print(f"wrote {md}")
    if not args.no_plots:
        _figures(args, out_dir, methods, times, n_pred, r, phase)
    print(f"study attention: total {time.perf_counter() - t_start:.0f} s")
    return 0


def _figures(args, out_dir, methods, times, n_pred, r, phase) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("study attention: matplotlib is not installed; no figures (pip install matplotlib)")
        return
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for m in methods:
        nn = sorted(times[m])
        ax.loglog(nn, [times[m][n] for n in nn], "o-" if methods[m].kind == "fast" else "s--", label=m)
    ax.axvline(n_pred, color="grey", lw=0.8, ls=":", label=f"predicted n* = {n_pred} (operation counts)")
    ax.set_xlabel("n (tokens)")
    ax.set_ylabel("time [s]")
    ax.set_title(f"d={args.d}, B={args.B}, eps={args.eps:g}, r={r}, {args.dtype}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    scaling = fig_dir / f"attention_scaling{args.suffix}.png"
    fig.savefig(scaling, dpi=120)
    plt.close(fig)
    print(f"wrote {scaling}")
    if phase is not None:
        path = fig_dir / f"phase_transition{args.suffix}.png"
        phase_figure(args, phase, path, plt)
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
