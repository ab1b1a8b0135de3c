"""JSON encoding of instances and counterexample files (never pickle).

Arrays become {"__ndarray__": nested list, "dtype", "shape"}; floats round-trip exactly through
JSON (Python writes the shortest repr); non-finite floats, tuples, fractions and mpmath numbers are
tagged so that a replayed instance is bit-for-bit the drawn one. An mpf is stored exactly as its raw
(sign, mantissa, exponent, bitcount) tuple, the mantissa in hex (a few characters per 4 bits, whatever the
context's precision), an mpc as two of them: no decimal string, no rounding, no dependence on the reader's
mpmath precision. Nothing depends on a random generator's stream, so a file replays on any numpy build.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np

FORMAT = "prompt-limits/counterexample/2"
READABLE = ("prompt-limits/counterexample/1", FORMAT)


class CorruptFile(ValueError):
    """A counterexample file that is not valid JSON of our format."""


def encode(x):
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise TypeError(f"cannot encode an array of dtype {x.dtype}")
        data = x.tolist()
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            data = np.vectorize(lambda v: v if math.isfinite(v) else repr(v), otypes=[object])(x).tolist()
        return {"__ndarray__": data, "dtype": str(x.dtype), "shape": list(x.shape)}
    if isinstance(x, np.generic):
        return encode(x.item())
    if isinstance(x, Fraction):
        return {"__fraction__": f"{x.numerator}/{x.denominator}"}
    if isinstance(x, tuple):
        return {"__tuple__": [encode(v) for v in x]}
    if isinstance(x, list):
        return [encode(v) for v in x]
    if isinstance(x, dict):
        bad = [k for k in x if not isinstance(k, str)]
        if bad:
            raise TypeError(f"instance dict keys must be strings, got {bad[0]!r}")
        return {k: encode(v) for k, v in x.items()}
    if hasattr(x, "_mpf_"):
        return {"__mpf__": _raw(x._mpf_)}
    if hasattr(x, "_mpc_"):
        return {"__mpc__": [_raw(x._mpc_[0]), _raw(x._mpc_[1])]}
    raise TypeError(f"cannot encode {type(x).__name__} in an instance; use numbers, lists, dicts or numpy arrays")


def decode(x):
    if isinstance(x, list):
        return [decode(v) for v in x]
    if not isinstance(x, dict):
        return x
    if "__float__" in x:
        return float(x["__float__"])
    if "__ndarray__" in x:
        dtype = np.dtype(x["dtype"])
        data = x["__ndarray__"]
        arr = np.array(_floats(data), dtype=dtype) if dtype.kind == "f" else np.array(data, dtype=dtype)
        return arr.reshape(x["shape"])
    if "__tuple__" in x:
        return tuple(decode(v) for v in x["__tuple__"])
    if "__fraction__" in x:
        return Fraction(x["__fraction__"])
    if "__mpf__" in x:
        import mpmath

        v = x["__mpf__"]
        return mpmath.mp.make_mpf(_unraw(v)) if isinstance(v, list) else mpmath.mpf(v)  # format 1: a decimal string
    if "__mpc__" in x:
        import mpmath

        re_, im_ = x["__mpc__"]
        if isinstance(re_, list):
            return mpmath.mp.make_mpc((_unraw(re_), _unraw(im_)))
        return mpmath.mpc(mpmath.mpf(re_), mpmath.mpf(im_))
    return {k: decode(v) for k, v in x.items()}


def _raw(t) -> list:
    sign, man, exp, bc = t
    return [int(sign), format(int(man), "x"), int(exp), int(bc)]


def _unraw(v) -> tuple:
    from mpmath.libmp import MPZ

    sign, man, exp, bc = v
    return (int(sign), MPZ(int(man, 16)), int(exp), int(bc))


def _floats(data):
    if isinstance(data, list):
        return [_floats(v) for v in data]
    return float(data) if isinstance(data, str) else data


def dumps(obj) -> str:
    return json.dumps(obj, indent=1, allow_nan=False)


def load_counterexample(path) -> dict:
    """Read and validate a counterexample file; raise CorruptFile with a one-line reason."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise CorruptFile(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptFile(f"{path}: cannot read ({exc.__class__.__name__})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptFile(f"{path}: not valid JSON (truncated or corrupt at line {exc.lineno})") from None
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith("prompt-limits/counterexample/"):
        raise CorruptFile(f"{path}: not a prompt-limits counterexample (expected format {FORMAT!r})")
    if doc["format"] not in READABLE:
        raise CorruptFile(f"{path}: counterexample format {doc['format']!r} needs a newer prompt-limits"
                          f" (this one reads {', '.join(READABLE)})")
    for key in ("claim", "backend", "instance", "evidence"):
        if key not in doc:
            raise CorruptFile(f"{path}: missing field {key!r}")
    try:
        doc["instance"] = decode(doc["instance"])
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptFile(f"{path}: instance cannot be decoded ({exc})") from None
    return doc
