"""`prompt-limits bench attention`: exact vs polynomial-method (Alman–Song) attention, scaling in n.

Runs every method at n = n_min ... n_max (powers of two) at fixed (d, B, eps), alternating the methods inside
each repeat so that machine load hits all of them alike; medians of the repeats. Feature construction is
included in the polynomial method's time. A method stops before the first n at which its predicted call time
(last time x (n/n_prev)^2 for exact, ^1 for the polynomial method) exceeds --max-call-seconds, so a default run
stays within a few minutes. Writes reports/bench_attention<suffix>.md, and with matplotlib
reports/figures/attention_scaling<suffix>.png and reports/figures/phase_transition<suffix>.png (fast_attention.md
§4.6). The phase figure shows this algorithm's required rank and achieved error against B at fixed n, with
B = sqrt(ln n) marked; the float32 breakdown (u e^(2 B^2) reaching eps, then 1) is a rounding effect, drawn and
labelled apart from the SETH scale.

Standalone: python -m verify.bench attention [--n-max 65536 --d 4 --B 1 --eps 1e-6 --device cpu --suffix _d4]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from constructions import fast_attention as fa

REF_ROWS = 256  # query rows compared against the float64 reference (keeps the reference O(REF_ROWS n))
SLOPE_MIN_SECONDS = 2e-3  # the fitted slope ignores calls below this (launch and python overhead)
WARMUP_BELOW_SECONDS = 0.5  # warm-up call only while a method's calls are shorter than this
EXTRA_ROUNDS_SECONDS = 1.0  # rounds beyond --repeats while one n has taken less than this
KERNEL_BLOCK = 32  # tokens of the block on which the phase figure measures the kernel's entrywise error
KERNEL_MAX_RANK = 100_000  # r x KERNEL_BLOCK features stay ~25 MB per side in float64
U32 = 2.0**-24


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
    p.add_argument("--max-call-seconds", type=float, default=3.0,
                   help="a method stops before the n at which its predicted call time exceeds this")
    p.add_argument("--phase-n", type=int, default=4096, help="n for the phase-transition figure")
    p.add_argument("--phase-max-rank", type=int, default=3000,
                   help="largest rank whose error the phase figure measures")
    p.add_argument("--out", default="reports", help="directory for bench_attention<suffix>.md and figures/")
    p.add_argument("--suffix", default="", help="appended to the output file names, e.g. _d8")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    return p


@dataclass(frozen=True)
class Method:
    lib: str  # numpy | torch: which copy of the data it takes
    kind: str  # exact | fast
    fn: Callable  # (Q, K, V) -> (out, certificate or None)
    itemsize: int


def _sync(device):
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _methods(args, torch, beta) -> dict[str, Method]:
    scale = 1.0 / args.d

    def poly(Q, K, V):
        return fa.polynomial_attention(Q, K, V, eps=args.eps, scale=scale, beta=beta, kind=args.kind)

    tsize = 4 if args.dtype == "float32" else 8
    ms = {"numpy exact f64": Method("numpy", "exact", lambda Q, K, V: (fa.exact_attention(Q, K, V, scale=scale), None),
                                    8)}
    if torch is not None:
        import torch.nn.functional as F

        def naive(Q, K, V):
            return torch.softmax(scale * (Q @ K.T), dim=-1) @ V, None

        def sdpa(Q, K, V):
            return F.scaled_dot_product_attention(Q[None], K[None], V[None], scale=scale)[0], None

        ms[f"torch naive {args.dtype}"] = Method("torch", "exact", naive, tsize)
        ms[f"torch SDPA {args.dtype}"] = Method("torch", "exact", sdpa, tsize)
    ms["poly numpy f64"] = Method("numpy", "fast", poly, 8)
    if torch is not None:
        ms[f"poly torch {args.dtype}"] = Method("torch", "fast", poly, tsize)
    return ms


def _fit(ns, ts):
    """Slope of log t against log n over the points above SLOPE_MIN_SECONDS (launch overhead region dropped)."""
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, ts, strict=True) if t > SLOPE_MIN_SECONDS]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def _stop_reason(name, m: Method, n, times, device, budget) -> str | None:
    """Why method m should not run at n (None: run it)."""
    if m.kind == "exact" and "naive" in name and 2 * n * n * m.itemsize > 2**31 and device == "cpu":
        return f"n x n score and softmax matrices {2 * n * n * m.itemsize / 2**30:.0f} GiB > 2 GiB"
    if times:
        n_prev = max(times)
        pred = times[n_prev] * (n / n_prev) ** (2 if m.kind == "exact" else 1)
        if pred > budget:
            return f"predicted {pred:.1f} s per call > --max-call-seconds {budget:g}"
    return None


def _time_all(args, ns, methods, torch, tdt, scale):
    """Alternating timed runs; returns times[m][n] (median seconds), errors[(m, n)], bounds[n], stops[m]."""
    times = {m: {} for m in methods}
    errors, bounds, stops = {}, {}, {}
    rng = np.random.default_rng(args.seed)
    for n in ns:
        Q, K = rng.uniform(-args.B, args.B, size=(n, args.d)), rng.uniform(-args.B, args.B, size=(n, args.d))
        Q[0], K[0], K[-1] = args.B, args.B, -args.B  # adversarial rows reach |score| = beta
        V = rng.uniform(-1.0, 1.0, size=(n, args.d))
        ref = fa.exact_attention(Q[:REF_ROWS], K, V, scale=scale)
        data = {"numpy": (Q, K, V)}
        if torch is not None:
            data["torch"] = tuple(torch.as_tensor(a, dtype=tdt, device=args.device) for a in (Q, K, V))
        live = []
        for name, m in methods.items():
            if name in stops:
                continue
            why = _stop_reason(name, m, n, times[name], args.device, args.max_call_seconds)
            if why:
                stops[name] = f"stops before n={n}: {why}"
                print(f"  {name}: {stops[name]}", flush=True)
            else:
                live.append(name)
        warm = {name: not times[name] or times[name][max(times[name])] < WARMUP_BELOW_SECONDS for name in live}
        samples = {name: [] for name in live}
        rep, t_n = 0, time.perf_counter()
        # repeat 0 is the warm-up; fast rounds are repeated (up to 5x --repeats) while they fit ~1 s per n, so
        # that the medians of millisecond calls are not one noisy sample on a shared machine
        while rep <= args.repeats or (rep <= 5 * args.repeats and time.perf_counter() - t_n < EXTRA_ROUNDS_SECONDS):
            for name in live:
                if rep == 0 and not warm[name]:
                    continue
                m = methods[name]
                q, k, v = data[m.lib]
                _sync(args.device)
                t0 = time.perf_counter()
                out, cert = m.fn(q, k, v)
                _sync(args.device)
                dt = time.perf_counter() - t0
                if rep == 0:
                    continue
                samples[name].append(dt)
                if len(samples[name]) == 1:
                    o = out[:REF_ROWS]
                    o = o.detach().cpu().double().numpy() if m.lib == "torch" else np.asarray(o)
                    errors[(name, n)] = float(np.max(np.abs(o - ref)))
                    if cert is not None:
                        bounds[n] = cert.output_bound
            rep += 1
        for name in live:
            times[name][n] = statistics.median(samples[name])
        line = "  ".join(f"{name}={times[name][n] * 1e3:.1f}ms" for name in live)
        print(f"n={n:>6}: {line}", flush=True)
    return times, errors, bounds, stops


def _tables(ns, methods, times, errors, bounds, n_pred, r):
    from tabulate import tabulate

    fast = [m for m in methods if methods[m].kind == "fast"]
    exact = [m for m in methods if methods[m].kind == "exact"]
    pairs = [(x, f) for x in exact for f in fast if methods[x].lib == methods[f].lib]
    headers = ["n"] + [f"{m} [ms]" for m in methods] + [f"{x} / {f}" for x, f in pairs]
    headers += [f"max err {f}" for f in fast] + ["a-priori bound (exact arithmetic)"]
    rows = []
    for n in ns:
        row = [n] + [f"{times[m][n] * 1e3:.2f}" if n in times[m] else "—" for m in methods]
        row += [f"{times[x][n] / times[f][n]:.2f}" if n in times[x] and n in times[f] else "—" for x, f in pairs]
        row += [f"{errors[(f, n)]:.2e}" if (f, n) in errors else "—" for f in fast]
        row.append(f"{bounds[n]:.2e}" if n in bounds else "—")
        rows.append(row)
    slope_rows = []
    for m in methods:
        nn = sorted(times[m])
        slope = _fit(nn, [times[m][n] for n in nn])
        local = [math.log2(times[m][b] / times[m][a]) / math.log2(b / a) for a, b in zip(nn, nn[1:], strict=False)]
        slope_rows.append([m, "—" if slope is None else f"{slope:.2f}", " ".join(f"{s:.2f}" for s in local)])
    cross_rows = []
    for x, f in pairs:
        common = [n for n in ns if n in times[x] and n in times[f]]
        # n* = the smallest n from which the fast method stays faster (single noisy wins do not count)
        won = [n for i, n in enumerate(common) if all(times[f][k] < times[x][k] for k in common[i:])]
        if won:
            first = str(won[0]) if won[0] > common[0] else f"<= {common[0]}"
        else:
            first = f"> {common[-1]}" if common else "—"
        cross_rows.append([f"{f} vs {x}", first, f"{n_pred:.0f}", r])
    return (tabulate(rows, headers, tablefmt="github"),
            tabulate(slope_rows, ["method", f"fitted slope (t > {SLOPE_MIN_SECONDS * 1e3:g} ms)",
                                  "local slopes between consecutive n"], tablefmt="github"),
            tabulate(cross_rows, ["pair", "measured crossover n*", "predicted n* = 2r(d+2)/(2d+1)", "r"],
                     tablefmt="github"))


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
    t_start = time.perf_counter()
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
    setting = (f"d = d_v = {d}, B = {args.B}, scale 1/d, beta = {beta:g}, eps = {args.eps:g}, {args.kind} degree "
               f"g = {poly.degree}, rank r = C(d+g, g) = {r}; device {args.device}, {os.cpu_count()} CPUs, "
               f"torch threads {threads}, torch dtype {args.dtype}")
    print(f"bench attention: {setting}; predicted crossover n*~{n_pred:.0f}; n={ns[0]}..{ns[-1]}, "
          f"repeats={args.repeats}, call cap {args.max_call_seconds:g} s", flush=True)
    methods = _methods(args, torch, beta)
    times, errors, bounds, stops = _time_all(args, ns, methods, torch, tdt, scale)
    table, slopes, cross = _tables(ns, methods, times, errors, bounds, n_pred, r)
    print(table)
    print(slopes)
    print(cross)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"bench_attention{args.suffix}.md"
    stopped = "".join(f"- {m}: {why}\n" for m, why in stops.items())
    head = (f"# Attention scaling: exact vs polynomial method\n\n"
            f"Command: `python -m verify.bench attention {' '.join(argv)}`\n\n{setting}; medians of {args.repeats} "
            f"to {5 * args.repeats} alternating repeats in one process (more rounds while one n takes "
            f"< {EXTRA_ROUNDS_SECONDS:g} s; a warm-up call while calls take < {WARMUP_BELOW_SECONDS:g} s); "
            f"errors against float64 exact attention on the first {REF_ROWS} query rows (float32 errors include "
            f"float32 rounding; the a-priori bound 2 rho/(1-rho) ||V||_max is for exact arithmetic). "
            f"Ratios exact / fast are times measured in this run; > 1 means the polynomial method is faster.\n\n")
    body = table + "\n\n" + slopes + "\n\n" + cross + "\n"
    if stopped:
        body += "\nMethods stopped early:\n\n" + stopped
    phase = _phase_data(args)
    body += "\n" + _phase_table(args, phase)
    md.write_text(head + body)
    print(f"wrote {md}")
    if not args.no_plots:
        _figures(args, out_dir, methods, times, n_pred, r, phase)
    print(f"bench attention: total {time.perf_counter() - t_start:.0f} s")
    return 0


def _figures(args, out_dir, methods, times, n_pred, r, phase) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench attention: matplotlib is not installed; no figures (pip install matplotlib)")
        return
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for m in methods:
        nn = sorted(times[m])
        ax.loglog(nn, [times[m][n] for n in nn], "o-" if methods[m].kind == "fast" else "s--", label=m)
    ax.axvline(n_pred, color="grey", lw=0.8, ls=":", label=f"predicted n* ~ {n_pred:.0f}")
    ax.set_xlabel("n (tokens)")
    ax.set_ylabel("time [s]")
    ax.set_title(f"d={args.d}, B={args.B}, eps={args.eps:g}, r={r}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    scaling = fig_dir / f"attention_scaling{args.suffix}.png"
    fig.savefig(scaling, dpi=120)
    plt.close(fig)
    path = fig_dir / f"phase_transition{args.suffix}.png"
    _phase_figure(args, phase, path, plt)
    print(f"wrote {scaling} and {path}")


def _float32_marks(eps):
    """B at which the float32 kernel floor u e^(2 B^2) reaches eps, and 1 (digest §4.4): rounding, not SETH."""
    b_eps = math.sqrt(math.log(eps / U32) / 2) if eps > U32 else 0.0
    return b_eps, math.sqrt(math.log(1 / U32) / 2)


def _phase_data(args) -> dict:
    """Required rank and achieved errors against B at n = --phase-n, d = --d (this algorithm only).

    out64/out32: max |out - Att| at n tokens where r <= --phase-max-rank (float32: the same polynomial in float32
    arithmetic on float32-rounded inputs, against float64 attention of those inputs); ker64/ker32: the entrywise
    max |Ã/A - 1| on a KERNEL_BLOCK x KERNEL_BLOCK block with the adversarial rows (r <= KERNEL_MAX_RANK), which is
    where float32 breaks down (digest §4.4). The degree comes from the exact-arithmetic bound (no float64 floor).
    """
    n, d, eps = args.phase_n, args.d, args.eps
    scale = 1.0 / d
    thr = math.sqrt(math.log(n))
    Bs = np.linspace(0.1, max(3.5, 1.25 * thr), 24)
    rng = np.random.default_rng(args.seed)
    Q0, K0 = rng.uniform(-1, 1, size=(n, d)), rng.uniform(-1, 1, size=(n, d))
    Q0[0], K0[0], K0[-1] = 1.0, 1.0, -1.0
    K0[1] = -1.0  # the block's keys include both signs of the adversarial row
    V = rng.uniform(-1, 1, size=(n, d))
    V32 = V.astype(np.float32)
    dl = max(1, round(math.log2(n)))
    cols = ("B", "g", "r", "r_log", "out64", "out32", "bound", "ker64", "ker32")
    data = {c: [] for c in cols}
    for B in Bs:
        beta = float(B * B)
        g = fa.degree_for_log_eps(beta, math.log(eps), args.kind)
        r = fa.feature_rank(d, g)
        row = dict.fromkeys(cols, math.nan)
        g_log = fa.degree_for_log_eps(beta, -math.log(n), args.kind)  # d = log2 n, eps = 1/n: the hardness regime
        row.update(B=float(B), g=g, r=r, r_log=fa.feature_rank(dl, g_log))
        Q, K = B * Q0, B * K0
        Q32, K32 = Q.astype(np.float32), K.astype(np.float32)
        if r <= KERNEL_MAX_RANK:
            poly = fa.exp_polynomial(beta, eps, args.kind, degree=g)
            m = min(n, KERNEL_BLOCK)
            for key, (q, k) in (("ker64", (Q[:m], K[:m])), ("ker32", (Q32[:m], K32[:m]))):
                A = np.exp(scale * (q.astype(np.float64) @ k.astype(np.float64).T))
                row[key] = float(np.max(np.abs(fa.lowrank_kernel(poly, q, k, scale).astype(np.float64) / A - 1)))
        if r <= args.phase_max_rank:
            try:
                out, cert = fa.polynomial_attention(Q, K, V, eps=eps, scale=scale, kind=args.kind, degree=g)
                row["out64"] = float(np.max(np.abs(out - fa.exact_attention(Q, K, V, scale=scale))))
                row["bound"] = cert.output_bound
                out32, _ = fa.polynomial_attention(Q32, K32, V32, eps=eps, scale=scale, kind=args.kind, degree=g,
                                                   beta=cert.beta * (1 + 1e-6))
                exact32 = fa.exact_attention(*(a.astype(np.float64) for a in (Q32, K32, V32)), scale=scale)
                row["out32"] = float(np.max(np.abs(out32.astype(np.float64) - exact32)))
            except ValueError as exc:  # memory budget
                print(f"  phase: B={B:.2f}: {exc}", flush=True)
        for c in cols:
            data[c].append(row[c])
        print("  phase: " + " ".join(f"{c}={row[c]:.3g}" for c in cols), flush=True)
    return data


def _phase_table(args, data) -> str:
    from tabulate import tabulate

    b_eps, b_one = _float32_marks(args.eps)
    rows = [[f"{data['B'][i]:.2f}", data["g"][i], data["r"][i], f"{data['r_log'][i]:.3g}"]
            + [f"{data[c][i]:.2e}" if math.isfinite(data[c][i]) else "—"
               for c in ("out64", "out32", "bound", "ker64", "ker32")] for i in range(len(data["B"]))]
    headers = ["B", "g", f"r (d={args.d})", "r (d=log2 n, eps=1/n)", "out err f64", "out err f32",
               "a-priori bound", "kernel max|Ã/A-1| f64", "kernel f32"]
    return (f"## Rank and error against B (n = {args.phase_n}, d = {args.d}, eps = {args.eps:g})\n\n"
            f"This algorithm only; SETH is asymptotic and concerns all algorithms. B = sqrt(ln n) = "
            f"{math.sqrt(math.log(args.phase_n)):.2f}. float32 marks (rounding, not SETH): the kernel floor "
            f"u e^(2B^2) reaches eps at B = {b_eps:.2f} and 1 at B = {b_one:.2f} (float32 kernel breakdown). Output "
            f"errors where r <= {args.phase_max_rank}, kernel errors on a {KERNEL_BLOCK}-token block where "
            f"r <= {KERNEL_MAX_RANK}.\n\n" + tabulate(rows, headers, tablefmt="github") + "\n")


def _phase_figure(args, data, path, plt):
    n, d, eps = args.phase_n, args.d, args.eps
    Bs = data["B"]
    thr = math.sqrt(math.log(n))
    b_eps, b_one = _float32_marks(eps)
    fig, ax = plt.subplots(figsize=(7.6, 6.4))
    ax.semilogy(Bs, data["r"], "o-", label=f"required rank r = C(d+g,g), d={d}, eps={eps:g}")
    ax.semilogy(Bs, data["r_log"], "s-", ms=3, label=f"required rank at d = log2 n = {max(1, round(math.log2(n)))}, "
                "eps = 1/n")
    ax.semilogy(Bs, [n] * len(Bs), "k:", lw=0.8, label=f"n = {n} (rank >= n: no gain over exact)")
    ax.axvline(thr, color="red", lw=1.2, ls="--", label=f"B = sqrt(ln n) = {thr:.2f} (SETH scale)")
    ax.axvspan(b_one, max(Bs[-1], b_one), color="orange", alpha=0.12,
               label=f"float32 kernel breakdown u e^(2B^2) >= 1 (B >= {b_one:.2f}): rounding, not SETH")
    if 0 < b_eps < Bs[-1]:
        ax.axvline(b_eps, color="orange", lw=1, ls="-.", label=f"float32 floor u e^(2B^2) = eps at B = {b_eps:.2f}")
    ax.set_xlabel("entry bound B (beta = B^2, scale 1/d)")
    ax.set_ylabel("rank r")
    ax2 = ax.twinx()
    ax2.semilogy(Bs, data["out64"], "g^", ms=5, label=f"output max error, float64 (n={n})")
    ax2.semilogy(Bs, data["out32"], "mv", ms=5, label=f"output max error, float32 (n={n})")
    ax2.semilogy(Bs, data["bound"], "g-", lw=0.8, label="a-priori output bound 2 rho/(1-rho) ||V||_max")
    ax2.semilogy(Bs, data["ker64"], "gx", ms=5, label="kernel max |Ã/A - 1|, float64")
    ax2.semilogy(Bs, data["ker32"], "m+", ms=7, label="kernel max |Ã/A - 1|, float32")
    ax2.axhline(eps, color="grey", lw=0.6, ls="--", label=f"eps = {eps:g}")
    ax2.set_ylabel("error")
    ax.set_title(f"this algorithm's rank and error vs B (d={d}, n={n}); SETH is asymptotic", fontsize=10)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    fig.legend(h1 + h2, l1 + l2, fontsize=6.5, loc="lower center", ncol=2)
    fig.subplots_adjust(bottom=0.3, top=0.94, left=0.1, right=0.88)
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
