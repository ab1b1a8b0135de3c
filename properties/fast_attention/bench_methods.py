"""The methods the attention study times, each called as its library documents, and the device context.

torch SDPA takes [batch, heads, n, d] (the 3-D form Q[None] is the slow path on CPU: 5-6x); on CUDA the kernels
FLASH, EFFICIENT, MATH are tried in that order under torch.nn.attention.sdpa_kernel and the first that runs is
named (the head dim is zero-padded to a multiple of 8 where a kernel needs it: zero columns change neither the
scores, at an explicit scale, nor the kept output columns). jax.nn.dot_product_attention takes [batch, n, heads, d].
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from constructions import fast_attention as fa

ALL = ("numpy-exact", "torch-naive", "torch-sdpa", "jax-exact", "poly-numpy", "poly-torch", "poly-jax")


@dataclass(frozen=True)
class Method:
    name: str
    lib: str  # numpy | torch | jax: which copy of the data it takes
    kind: str  # exact | fast
    fn: Callable  # (Q, K, V) -> (out, certificate or None)
    itemsize: int
    detail: str = ""


def _torch():
    try:
        import torch
    except ImportError:
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return torch


def _jax(dtype):
    try:
        import jax
    except ImportError:
        return None
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    return jax


class Context:
    """Device, dtype and conversions; timing helpers that synchronise the device."""

    def __init__(self, device: str, dtype: str):
        self.device, self.dtype = device, dtype
        self.torch = _torch()
        self.jax = _jax(dtype)
        if device == "cuda" and (self.torch is None or not self.torch.cuda.is_available()):
            raise RuntimeError("--device cuda but torch sees no CUDA device")
        t = self.torch
        env = os.environ.get("OPENBLAS_NUM_THREADS")
        if t is not None and device == "cpu" and env and env.isdigit():
            t.set_num_threads(int(env))  # torch's pool the same size as BLAS's (oversubscribed OMP spins under load)
        self.threads = t.get_num_threads() if t is not None else env or "?"
        self.device_name = t.cuda.get_device_name() if device == "cuda" else "cpu"
        self.rate_note = ""
        self._mm = None

    def convert(self, lib, arrays):
        if lib == "numpy":
            return arrays
        if lib == "torch":
            dt = getattr(self.torch, self.dtype)
            return tuple(self.torch.as_tensor(a, dtype=dt, device=self.device) for a in arrays)
        jnp = self.jax.numpy
        dev = self.jax.devices("gpu" if self.device == "cuda" else "cpu")[0]
        return tuple(self.jax.device_put(jnp.asarray(a, dtype=self.dtype), dev) for a in arrays)

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def ready(self, out):
        if hasattr(out, "block_until_ready"):
            out.block_until_ready()
        self.sync()
        return out

    def reset_peak(self):
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def peak(self):
        return int(self.torch.cuda.max_memory_allocated()) if self.device == "cuda" else None

    @staticmethod
    def to_numpy(out):
        if hasattr(out, "detach"):
            return out.detach().cpu().double().numpy()
        return np.asarray(out, dtype=np.float64)

    def _median(self, fn, reps=3):
        ts = []
        for _ in range(reps + 1):
            self.sync()
            t0 = time.perf_counter()
            fn()
            self.sync()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts[1:])

    def matmul_rate(self) -> float:
        """Measured dense matmul rate (FLOP/s) of this device at the study's dtype (numpy float64 on cpu)."""
        if self.device == "cuda":
            t = self.torch
            m = 4096
            a = t.randn(m, m, dtype=getattr(t, self.dtype), device="cuda")
            self.rate_note = f"torch {self.dtype} {m}^3 matmul, TF32 off"
            return 2 * m**3 / self._median(lambda: a @ a)
        m = 1024
        a = np.random.default_rng(0).standard_normal((m, m))
        self.rate_note = f"numpy float64 {m}^3 matmul"
        return 2 * m**3 / self._median(lambda: a @ a, reps=5)

    def prepare_matmuls(self, r, w, chunk):
        rng = np.random.default_rng(1)
        F, S, Va = rng.standard_normal((r, chunk)), rng.standard_normal((r, w)), rng.standard_normal((chunk, w))
        if self.device == "cuda":
            F, S, Va = self.convert("torch", (F, S, Va))
        self._mm = (F, S, Va, chunk)

    def matmuls_alone(self, n) -> float:
        """The algorithm's two r-wide products alone: per chunk F Va (keys) and F^T S (queries), n/chunk chunks."""
        F, S, Va, chunk = self._mm
        c = min(chunk, n)
        Fc, Vc = F[:, :c], Va[:c]
        k = math.ceil(n / c)

        def run():
            for _ in range(k):
                Fc @ Vc
            for _ in range(k):
                Fc.T @ S

        return self._median(run)


def _sdpa(ctx, scale):
    """(fn, detail): torch SDPA on the 4-D layout; on CUDA the first kernel of FLASH, EFFICIENT, MATH that runs."""
    t = ctx.torch
    import torch.nn.functional as F

    def call(Q, K, V, pad=0):
        q, k, v = (x[None, None] for x in (Q, K, V))
        if pad:
            q, k, v = (t.nn.functional.pad(x, (0, pad)) for x in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)[0, 0]
        return out[:, : V.shape[1]] if pad else out

    if ctx.device != "cuda":
        probe = t.zeros((1, 1, 8, 4), dtype=getattr(t, ctx.dtype))
        try:
            from torch.nn.attention import SDPBackend

            names = {int(getattr(SDPBackend, k)): k for k in dir(SDPBackend) if k.isupper()}
            kernel = names.get(int(t._fused_sdp_choice(probe, probe, probe)), "?")
        except (ImportError, AttributeError, RuntimeError):
            kernel = "not reported"
        return (lambda Q, K, V: (call(Q, K, V), None)), f"4-D [1,1,n,d], cpu kernel {kernel}"
    from torch.nn.attention import SDPBackend, sdpa_kernel

    x = t.zeros((16, 4), dtype=getattr(t, ctx.dtype), device="cuda")
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"):
        backend = getattr(SDPBackend, name)
        for pad in (0, (-x.shape[1]) % 8):
            try:
                with sdpa_kernel([backend]):
                    call(x, x, x, pad)
            except RuntimeError:
                continue

            def fn(Q, K, V, backend=backend, pad=pad):
                with sdpa_kernel([backend]):
                    return call(Q, K, V, (-Q.shape[1]) % 8 if pad else 0), None

            return fn, f"4-D [1,1,n,d], kernel {name}" + (" (head dim zero-padded to a multiple of 8)" if pad else "")
    raise RuntimeError("no SDPA kernel runs at this dtype")


def methods(args, ctx, beta) -> dict[str, Method]:
    scale = 1.0 / args.d
    wanted = set(ALL if args.methods == "all" else args.methods.split(","))
    if args.methods == "all" and ctx.device == "cpu":
        wanted.discard("poly-jax")  # jit of the chunk loop compiles per n for tens of seconds on CPU
    size = 4 if args.dtype == "float32" else 8
    ms = {}

    def poly(Q, K, V):
        return fa.polynomial_attention(Q, K, V, eps=args.eps, scale=scale, beta=beta, kind=args.kind)

    if "numpy-exact" in wanted:
        ms["numpy exact f64"] = Method("numpy exact f64", "numpy", "exact",
                                       lambda Q, K, V: (fa.exact_attention(Q, K, V, scale=scale), None), 8,
                                       "exact_attention, 256-query blocks")
    t = ctx.torch
    if t is not None and "torch-naive" in wanted:
        ms[f"torch naive {args.dtype}"] = Method(f"torch naive {args.dtype}", "torch", "exact",
                                                 lambda Q, K, V: (t.softmax(scale * (Q @ K.T), dim=-1) @ V, None),
                                                 size, "softmax(s Q K^T) V, n x n")
    if t is not None and "torch-sdpa" in wanted:
        fn, detail = _sdpa(ctx, scale)
        ms[f"torch SDPA {args.dtype}"] = Method(f"torch SDPA {args.dtype}", "torch", "exact", fn, size, detail)
    j = ctx.jax
    if j is not None and "jax-exact" in wanted:
        f = j.jit(lambda q, k, v: j.nn.dot_product_attention(q[None, :, None, :], k[None, :, None, :],
                                                             v[None, :, None, :], scale=scale)[0, :, 0, :])
        ms[f"jax dpa {args.dtype}"] = Method(f"jax dpa {args.dtype}", "jax", "exact",
                                             lambda Q, K, V: (f(Q, K, V), None), size,
                                             "jax.nn.dot_product_attention [1,n,1,d], jit, xla")
    if "poly-numpy" in wanted:
        ms["poly numpy f64"] = Method("poly numpy f64", "numpy", "fast", poly, 8, "polynomial_attention, chunked")
    if t is not None and "poly-torch" in wanted:
        ms[f"poly torch {args.dtype}"] = Method(f"poly torch {args.dtype}", "torch", "fast", poly, size,
                                                "polynomial_attention, chunked")
    if j is not None and "poly-jax" in wanted:
        pj = j.jit(lambda q, k, v: poly(q, k, v)[0])
        ms[f"poly jax {args.dtype}"] = Method(f"poly jax {args.dtype}", "jax", "fast",
                                              lambda Q, K, V: (pj(Q, K, V), None), size,
                                              "polynomial_attention under jax.jit (beta static)")
    return ms


def sdpa_documented(torch, Q, K, V, scale):
    """The call torch documents: 4-D [batch, heads, n, d] tensors (the test checks the bench makes this same call)."""
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(Q[None, None], K[None, None], V[None, None], scale=scale)[0, 0]
