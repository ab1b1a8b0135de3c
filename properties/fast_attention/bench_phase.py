"""The phase-transition part of the attention study: this algorithm's rank and error against B at fixed n.

The float32 breakdown (u e^(2 B^2) reaching eps, then 1) is a rounding effect, drawn and labelled apart from the
SETH scale B = sqrt(ln n) (fast_attention.md §4.4, §4.6 item 6). SETH is asymptotic and concerns all algorithms.
"""

from __future__ import annotations

import math

import numpy as np

from constructions import fast_attention as fa
from constructions.precision import unit_roundoff

KERNEL_BLOCK = 32  # tokens of the block on which the phase figure measures the kernel's entrywise error
KERNEL_MAX_RANK = 100_000  # r x KERNEL_BLOCK features stay ~25 MB per side in float64
U32 = unit_roundoff("float32")


def float32_marks(eps):
    """B at which the float32 kernel floor u e^(2 B^2) reaches eps, and 1 (digest §4.4): rounding, not SETH."""
    b_eps = math.sqrt(math.log(eps / U32) / 2) if eps > U32 else 0.0
    return b_eps, math.sqrt(math.log(1 / U32) / 2)


def phase_data(args) -> dict:
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


def phase_table(args, data) -> str:
    from tabulate import tabulate

    b_eps, b_one = float32_marks(args.eps)
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


def phase_figure(args, data, path, plt):
    n, d, eps = args.phase_n, args.d, args.eps
    Bs = data["B"]
    thr = math.sqrt(math.log(n))
    b_eps, b_one = float32_marks(eps)
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
