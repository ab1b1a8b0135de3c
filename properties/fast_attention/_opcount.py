"""An operation-counting numpy array: the measured side of the FLOP-model claim (counting convention of
constructions.fast_attention_cost: matmul 2 m k p, elementwise 1 per output entry, a k-to-1 reduction k - 1)."""

from __future__ import annotations

import numpy as np


class Counter:
    def __init__(self):
        self.ops = 0
        self.calls = {}


class Counted(np.ndarray):
    """ndarray subclass that adds every ufunc's operations to ``Counted.counter`` (one counter at a time)."""

    counter: Counter | None = None

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raw = [np.asarray(x).view(np.ndarray) if isinstance(x, Counted) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, Counted) else o for o in kwargs["out"])
        result = getattr(ufunc, method)(*raw, **kwargs)
        c = Counted.counter
        if c is not None:
            if method == "__call__" and ufunc is np.matmul:
                a, b = (np.asarray(x) for x in raw[:2])
                ops = 2 * a.shape[-2] * a.shape[-1] * b.shape[-1]
            elif method == "__call__":
                ops = int(np.size(result))
            elif method == "reduce":
                ops = int(np.size(raw[0]) - np.size(result))
            else:
                raise NotImplementedError(f"op counting of ufunc method {method!r}")
            c.ops += ops
            c.calls[ufunc.__name__] = c.calls.get(ufunc.__name__, 0) + ops
        if isinstance(result, np.ndarray) and not isinstance(result, Counted):
            return result.view(Counted)
        return result


    def __array_function__(self, func, types, args, kwargs):
        # concatenate, take, ... (no arithmetic): keep the result counted so later ops are seen
        result = super().__array_function__(func, types, args, kwargs)
        if isinstance(result, np.ndarray) and not isinstance(result, Counted):
            return result.view(Counted)
        return result


def counted(a) -> Counted:
    return np.asarray(a, dtype=np.float64).view(Counted)


def count(fn, *args, **kw) -> tuple[object, Counter]:
    """(fn(*args), the operations it performed on Counted arrays)."""
    c = Counter()
    Counted.counter = c
    try:
        out = fn(*args, **kw)
    finally:
        Counted.counter = None
    return out, c
