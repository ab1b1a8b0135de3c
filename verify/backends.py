"""Backends: the array library, dtype and device a check runs on, plus the precision ladder.

A check receives one ``Backend``. Array checks use ``backend.xp`` (an array-API namespace from
array-api-compat), ``backend.asarray`` and ``backend.to_numpy``; exact checks use
``backend.mp`` (an mpmath context at ``backend.dps`` digits) or python-flint's arb.
The float64 numpy result is the reference.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

ARRAY_BACKENDS = ("numpy", "torch", "jax")
EXACT_BACKENDS = ("mpmath", "arb")


class BackendUnavailable(RuntimeError):
    """The requested backend or device is not installed or not present on this machine."""


def installed(name: str) -> bool:
    mod = {"numpy": "numpy", "torch": "torch", "jax": "jax", "mpmath": "mpmath", "arb": "flint"}[name]
    return importlib.util.find_spec(mod) is not None


def cuda_available(name: str) -> bool:
    if name == "torch" and installed("torch"):
        import torch

        return bool(torch.cuda.is_available())
    if name == "jax" and installed("jax"):
        import jax

        try:
            return bool(jax.devices("gpu"))
        except RuntimeError:
            return False
    return False


def _configure(name: str) -> None:
    """Pin numerics: TF32 off in torch, x64 and highest matmul precision in jax."""
    if name == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    elif name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_default_matmul_precision", "highest")


@dataclass(frozen=True)
class Backend:
    """name: numpy | torch | jax | mpmath | arb; dtype: float64 | float32; device: cpu | cuda."""

    name: str = "numpy"
    dtype: str = "float64"
    device: str = "cpu"
    dps: int = 50

    def __post_init__(self):
        if self.name not in ARRAY_BACKENDS + EXACT_BACKENDS:
            raise BackendUnavailable(f"unknown backend {self.name!r}; choose from {ARRAY_BACKENDS + EXACT_BACKENDS}")
        if self.dtype not in ("float64", "float32"):
            raise BackendUnavailable(f"unknown dtype {self.dtype!r}; use float64 or float32")
        if self.device not in ("cpu", "cuda"):
            raise BackendUnavailable(f"unknown device {self.device!r}; use cpu or cuda")

    @property
    def precision(self) -> str:
        return self.name if self.name in EXACT_BACKENDS else self.dtype

    @property
    def is_array(self) -> bool:
        return self.name in ARRAY_BACKENDS

    @property
    def label(self) -> str:
        if self.name in EXACT_BACKENDS:
            return f"{self.name}[{self.dps}]"
        return f"{self.name}/{self.dtype}/{self.device}"

    def ensure(self) -> Backend:
        """Raise BackendUnavailable with a one-line reason if this backend cannot run here."""
        if not installed(self.name):
            extra = {"torch": "torch", "jax": "jax", "arb": "exact"}.get(self.name, "")
            hint = f" (pip install -e '.[{extra}]')" if extra else ""
            raise BackendUnavailable(f"backend {self.name!r} is not installed{hint}")
        if self.device == "cuda":
            if self.name not in ("torch", "jax"):
                raise BackendUnavailable(f"backend {self.name!r} has no cuda device; use torch or jax")
            if not cuda_available(self.name):
                raise BackendUnavailable(f"no CUDA device is visible to {self.name}")
        if self.is_array:
            _configure(self.name)
        return self

    @cached_property
    def module(self):
        return importlib.import_module({"numpy": "numpy", "torch": "torch", "jax": "jax.numpy"}[self.name])

    @cached_property
    def xp(self):
        """The array-API namespace for this backend (array_api_compat wrappers)."""
        if self.name == "numpy":
            import array_api_compat.numpy as xp
        elif self.name == "torch":
            import array_api_compat.torch as xp
        elif self.name == "jax":
            _configure("jax")
            import jax.numpy as xp  # jax.numpy implements the array API itself
        else:
            raise AttributeError(f"backend {self.name!r} has no array namespace; use backend.mp")
        return xp

    @cached_property
    def mp(self):
        """An mpmath context at ``dps`` digits, private to this backend (no global state)."""
        import mpmath

        ctx = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.MPContext()
        ctx.dps = self.dps
        return ctx

    def arb(self):
        """python-flint with its (global) working precision set to ``dps`` digits, as a context manager.

        Usage: ``with backend.arb() as flint: x = flint.arb(2).sqrt()``; the previous precision is
        restored on exit, so checks at different digits do not leak into each other.
        """
        import contextlib

        try:
            import flint
        except ImportError:
            raise BackendUnavailable("python-flint is not installed (pip install -e '.[exact]')") from None

        @contextlib.contextmanager
        def ctx():
            old = flint.ctx.dps
            flint.ctx.dps = self.dps
            try:
                yield flint
            finally:
                flint.ctx.dps = old

        return ctx()

    @property
    def np_dtype(self):
        return np.float64 if self.dtype == "float64" else np.float32

    def asarray(self, x):
        """Move a numpy array (or nested list) to this backend at its dtype and device."""
        a = np.asarray(x, dtype=self.np_dtype)
        if self.name == "numpy":
            return a
        if self.name == "torch":
            import torch

            return torch.as_tensor(a, device=self.device)
        if self.name == "jax":
            import jax

            _configure("jax")
            dev = jax.devices("gpu" if self.device == "cuda" else "cpu")[0]
            return jax.device_put(a, dev)
        raise AttributeError(f"backend {self.name!r} holds no arrays")

    def to_numpy(self, a) -> np.ndarray:
        """Back to a float64 numpy array (for comparison with the reference)."""
        if self.name == "torch":
            return a.detach().cpu().to(dtype=__import__("torch").float64).numpy()
        return np.asarray(a, dtype=np.float64)

    def with_(self, **kw) -> Backend:
        return replace(self, **kw)


NUMPY64 = Backend()


def rungs_above(backend: Backend, ladder: tuple[str, ...], dps: int) -> list[Backend]:
    """The precision ladder above ``backend``: same array library at float64, then exact rungs.

    Only rungs listed in the claim's ``ladder`` are returned, so a check is never asked for an
    arithmetic it does not implement.
    """
    order = ("float32", "float64", "mpmath", "arb")
    start = order.index(backend.precision)
    out = []
    for p in order[start + 1 :]:
        if p not in ladder:
            continue
        if p == "float64":
            out.append(backend.with_(dtype="float64"))
        elif p == "mpmath":
            out.append(Backend("mpmath", dps=dps))
        elif p == "arb" and installed("arb"):
            out.append(Backend("arb", dps=dps))
    return out


def parse_backend(name: str, device: str = "cpu", dtype: str = "float64") -> Backend:
    return Backend(name=name, device=device, dtype=dtype).ensure()
