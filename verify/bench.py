"""`prompt-limits bench attention`: exact vs polynomial-method (Alman–Song) attention, scaling in n.

Runs every method at n = n_min ... n_max (powers of two) at fixed (d, B, eps), alternating the methods inside
each repeat so that machine load hits all of them alike; medians of the repeats. Feature construction is
included in the polynomial method's time. Writes reports/bench_attention.md, and with matplotlib
reports/figures/attention_scaling.png and reports/figures/phase_transition.png (fast_attention.md §4.6).

Standalone: python -m verify.bench attention [--n-max 65536 --d 4 --B 1 --eps 1e-6 --device cpu]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from constructions import fast_attention as fa

REF_ROWS = 256  # query rows compared against the float64 reference (keeps the reference O(REF_ROWS n))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prompt-limits bench attention", description=__doc__.split("\n\n")[0])
    p.add_argument("--n-min", type=int, default=2**8)
    p.add_argument("--n-max", type=int, default=2**16)
    p.add_argument("--d", type=int, default=4, help="head dimension (d_v = d)")
    p.add_argument("--B", type=float, default=1.0, help="entry bound of Q and K (AS23 scaling 1/d: beta = B^2)")
    p.add_argument("--eps", type=float, default=1e-6, help="relative kernel error target")
    p.add_argument("--kind", choices=fa.KINDS, default="chebyshev")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="dtype of the torch methods")
    p.add_argument("--max-call-seconds", type=float, default=3.0, help="drop a method for larger n past this time")
    p.add_argument("--phase-n", type=int, default=4096, help="n for the phase-transition figure")
    p.add_argument("--out", default="reports", help="directory for bench_attention.md and figures/")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    return p


def _sync(device):
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _methods(args, torch):
    """name -> (fn(Q, K, V) -> out, kind) with arrays already on the method's library/device."""
    scale = 1.0 / args.d
    ms = {"numpy exact f64": ("numpy", lambda Q, K, V: fa.exact_attention(Q, K, V, scale=scale), "exact")}
    if torch is not None:
        import torch.nn.functional as F

        def naive(Q, K, V):
            return torch.softmax(scale * (Q @ K.T), dim=-1) @ V

        def sdpa(Q, K, V):
            return F.scaled_dot_product_attention(Q[None], K[None], V[None], scale=scale)[0]

        ms[f"torch naive {args.dtype}"] = ("torch", naive, "exact")
        ms[f"torch SDPA {args.dtype}"] = ("torch", sdpa, "exact")
    ms["poly numpy f64"] = ("numpy", None, "fast")
    if torch is not None:
        ms[f"poly torch {args.dtype}"] = ("torch", None, "fast")
    return ms


def _fit(ns, ts):
    """Slope of log t against log n over the points above 2 ms (launch overhead region dropped)."""
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, ts, strict=True) if t is not None and t > 2e-3]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def attention_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.n_min < 2 or args.n_max < args.n_min:
        print(f"bench attention: need 2 <= n-min <= n-max, got {args.n_min}, {args.n_max}", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        torch = None
        print("bench attention: torch not installed; timing numpy only")
    if args.device == "cuda" and (torch is None or not torch.cuda.is_available()):
        print("bench attention: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    from tabulate import tabulate

    d, scale = args.d, 1.0 / args.d
    ns = [2**k for k in range(math.ceil(math.log2(args.n_min)), int(math.log2(args.n_max)) + 1)]
    beta = scale * d * args.B**2
    try:
        poly, plan, _ = fa.plan_attention(ns[-1], d, d, beta, args.eps, kind=args.kind)
    except ValueError as exc:
        print(f"bench attention: {exc}", file=sys.stderr)
        return 2
    r = plan.r
    n_pred = 2 * r * (d + 2) / (2 * d + 1)
    tdt = None if torch is None else getattr(torch, args.dtype)
    threads = torch.get_num_threads() if torch is not None else "n/a"
    print(f"bench attention: d={d} B={args.B} beta={beta:g} eps={args.eps:g} {args.kind} g={poly.degree} r={r} "
          f"predicted crossover n*~{n_pred:.0f}; n={ns[0]}..{ns[-1]}, repeats={args.repeats}, torch threads={threads}, "
          f"device={args.device}", flush=True)
    methods = _methods(args, torch)
    times = {m: {} for m in methods}
    errors, alive = {}, dict.fromkeys(methods, True)
    rng = np.random.default_rng(args.seed)
    for n in ns:
        Q, K = rng.uniform(-args.B, args.B, size=(n, d)), rng.uniform(-args.B, args.B, size=(n, d))
        Q[0], K[0], K[-1] = args.B, args.B, -args.B  # adversarial rows reach |score| = beta
        V = rng.uniform(-1.0, 1.0, size=(n, d))
        ref = fa.exact_attention(Q[:REF_ROWS], K, V, scale=scale)
        data = {"numpy": (Q, K, V)}
        if torch is not None:
            data["torch"] = tuple(torch.as_tensor(a, dtype=tdt, device=args.device) for a in (Q, K, V))
        samples = {m: [] for m in methods}
        for rep in range(args.repeats + 1):  # repeat 0 is the warm-up
            for m, (lib, fn, kind) in methods.items():
                if not alive[m]:
                    continue
                if kind == "exact" and lib == "torch" and "naive" in m and n * n * 8 > 2**31:
                    alive[m] = False  # the n x n matrix alone would exceed 2 GiB
                    print(f"  {m}: stops before n={n} (n x n matrix {n * n * 8 / 2**30:.0f} GiB)", flush=True)
                    continue
                q, k, v = data[lib]
                _sync(args.device)
                t0 = time.perf_counter()
                if kind == "fast":
                    out, cert = fa.polynomial_attention(q, k, v, eps=args.eps, scale=scale, beta=beta, kind=args.kind)
                else:
                    out = fn(q, k, v)
                _sync(args.device)
                dt = time.perf_counter() - t0
                if rep > 0:
                    samples[m].append(dt)
                if rep == 1:
                    o = out[:REF_ROWS]
                    o = o.detach().cpu().double().numpy() if lib == "torch" else np.asarray(o)
                    errors[(m, n)] = float(np.max(np.abs(o - ref)))
                    if kind == "fast":
                        errors[("bound", n)] = cert.output_bound
        for m in methods:
            if samples[m]:
                times[m][n] = statistics.median(samples[m])
                if times[m][n] > args.max_call_seconds:
                    alive[m] = False
        line = "  ".join(f"{m}={times[m][n] * 1e3:.1f}ms" for m in methods if n in times[m])
        print(f"n={n:>6}: {line}", flush=True)

    fast_names = [m for m in methods if methods[m][2] == "fast"]
    exact_names = [m for m in methods if methods[m][2] == "exact"]
    pairs = [(x, f) for x in exact_names for f in fast_names if methods[x][0] == methods[f][0] and "naive" not in x]
    headers = ["n"] + [f"{m} [ms]" for m in methods] + [f"{x} / {f}" for x, f in pairs]
    headers += ["fast max err (per fast method)", "a-priori bound (exact arithmetic)"]
    rows = []
    for n in ns:
        row = [n] + [f"{times[m][n] * 1e3:.2f}" if n in times[m] else "—" for m in methods]
        for x, f in pairs:
            row.append(f"{times[x][n] / times[f][n]:.2f}" if n in times[x] and n in times[f] else "—")
        errs = [errors.get((m, n)) for m in fast_names]
        row.append(", ".join(f"{e:.2e}" for e in errs if e is not None) or "—")
        row.append(f"{errors[('bound', n)]:.2e}" if ("bound", n) in errors else "—")
        rows.append(row)
    slope_rows = []
    for m in methods:
        nn = sorted(times[m])
        slope = _fit(nn, [times[m][n] for n in nn])
        local = [math.log2(times[m][b] / times[m][a]) / math.log2(b / a) for a, b in zip(nn, nn[1:], strict=False)]
        slope_rows.append([m, "—" if slope is None else f"{slope:.2f}", " ".join(f"{s:.2f}" for s in local[-4:])])
    cross_rows = []
    for x in exact_names:
        for f in fast_names:
            common = [n for n in ns if n in times[x] and n in times[f]]
            # n* = the smallest n from which the fast method stays faster (single noisy wins do not count)
            won = [n for i, n in enumerate(common) if all(times[f][m] < times[x][m] for m in common[i:])]
            first = won[0] if won else f"> {common[-1] if common else '—'}"
            cross_rows.append([f"{f} vs {x}", first, f"{n_pred:.0f}"])
    table = tabulate(rows, headers, tablefmt="github")
    slopes = tabulate(slope_rows, ["method", "fitted slope (t > 2 ms)", "last local slopes"], tablefmt="github")
    cross = tabulate(cross_rows, ["pair", "measured crossover n*", "predicted n* = 2r(d+2)/(2d+1)"],
                     tablefmt="github")
    print(table)
    print(slopes)
    print(cross)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "bench_attention.md"
    head = (f"# Attention scaling: exact vs polynomial method\n\n"
            f"d = d_v = {d}, B = {args.B}, scale 1/d, beta = {beta:g}, "
            f"eps = {args.eps:g}, {args.kind} degree g = {poly.degree}, rank r = C(d+g, g) = {r}; "
            f"device {args.device}, "
            f"torch threads {threads}, torch dtype {args.dtype}; medians of {args.repeats} alternating repeats; "
            f"errors against float64 exact attention on the first {REF_ROWS} query rows "
            f"(float32 errors include float32 rounding; the bound is for exact arithmetic).\n\n")
    md.write_text(head + table + "\n\n" + slopes + "\n\n" + cross + "\n")
    print(f"wrote {md}")
    if args.no_plots:
        return 0
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench attention: matplotlib is not installed; no figures (pip install matplotlib)")
        return 0
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for m in methods:
        nn = sorted(times[m])
        ax.loglog(nn, [times[m][n] for n in nn], "o-" if methods[m][2] == "fast" else "s--", label=m)
    ax.axvline(n_pred, color="grey", lw=0.8, ls=":", label=f"predicted n* ~ {n_pred:.0f}")
    ax.set_xlabel("n (tokens)")
    ax.set_ylabel("time [s]")
    ax.set_title(f"d={d}, B={args.B}, eps={args.eps:g}, r={r}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(fig_dir / "attention_scaling.png", dpi=120)
    plt.close(fig)
    _phase_figure(args, fig_dir / "phase_transition.png", plt)
    print(f"wrote {fig_dir / 'attention_scaling.png'} and {fig_dir / 'phase_transition.png'}")
    return 0


def _phase_figure(args, path, plt, n_err=256):
    """Required degree/rank and achieved error against B at fixed n, d (this algorithm only; not a SETH proof)."""
    n, d = args.phase_n, args.d
    thr = math.sqrt(math.log(n))
    Bs = np.linspace(0.1, max(3.0, 1.6 * thr), 30)
    ranks, errs = [], []
    rng = np.random.default_rng(args.seed)
    for B in Bs:
        beta = float(B * B)
        g = fa.degree_for_log_eps(beta, math.log(args.eps), args.kind)
        r = fa.feature_rank(d, g)
        ranks.append(r)
        err = math.nan
        if r <= 5000:
            try:
                Q, K = rng.uniform(-B, B, size=(n_err, d)), rng.uniform(-B, B, size=(n_err, d))
                Q[0], K[0], K[-1] = B, B, -B
                V = rng.uniform(-1, 1, size=(n_err, d))
                out, _ = fa.polynomial_attention(Q, K, V, eps=args.eps, scale=1.0 / d, kind=args.kind)
                err = float(np.max(np.abs(out - fa.exact_attention(Q, K, V, scale=1.0 / d))))
            except ValueError:
                pass
        errs.append(err)
        print(f"  phase: B={B:.2f} beta={beta:.2f} g={g} r={r} err={err:.2e}", flush=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    dl = max(1, round(math.log2(n)))
    ax.semilogy(Bs, ranks, "o-", label=f"rank r = C(d+g,g), d={d}, eps={args.eps:g}")
    ax.semilogy(Bs, [fa.feature_rank(dl, fa.degree_for_log_eps(float(B * B), -math.log(n), args.kind)) for B in Bs],
                "s-", ms=3, label=f"rank at d = log2 n = {dl}, eps = 1/n (hardness regime)")
    ax.semilogy(Bs, [n] * len(Bs), "k:", lw=0.8, label=f"n = {n} (rank >= n: no gain over exact)")
    ax.axvline(thr, color="red", lw=1, ls="--", label=f"B = sqrt(ln n) = {thr:.2f}")
    ax.set_xlabel("entry bound B (beta = B^2, scale 1/d)")
    ax.set_ylabel("rank r")
    ax2 = ax.twinx()
    ax2.semilogy(Bs, errs, "g^", ms=4, label=f"achieved max error (float64, n={n_err})")
    ax2.set_ylabel("achieved error")
    ax.set_title(f"this algorithm's rank vs B (d={d}, n={n}); SETH is asymptotic")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "attention":
        print("usage: python -m verify.bench attention [options]  (see --help)", file=sys.stderr)
        return 2
    return attention_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
