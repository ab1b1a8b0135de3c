"""Value maps FF2 of Hu et al. 2024 §3.5 (hu2024.md §5 items 13, 14, 16): residual ReLU FFNs that move each node
input y_m to its target t_m through its id z_m = u^T y_m.

* InterpolationFFN: FF2(y) = y + g(u^T y), g piecewise linear through the M sorted nodes (M - 1 hidden ReLUs, or M
  with extend="flat": constant beyond the extreme nodes);
* BumpStack: M residual layers of 4 ReLUs, layer m adding w_m bump_m(u^T y), under a target guard.

Every evaluation exists in float64 and in mpmath at a caller-given context. Re-exported by constructions.memorization.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from constructions.transformer import MLP

INTERP_MAX_NODES = 2**20  # float64 interpolation FFN: M nodes -> (M - 1) x d weights
BUMP_MAX_LAYERS = 2**16  # layers of a materialised BumpStack evaluated in float64
MP_MAX_WORK = 5_000_000  # mpmath multiply-adds per call (nodes x tokens)

EXTENSIONS = ("linear", "flat")


def _rows(Y, ctx=None):
    """(d, n) numbers from an mpmath matrix or an array-like (as ctx.mpf when ctx is given)."""
    if hasattr(Y, "rows") and hasattr(Y, "cols"):
        R = [[Y[i, j] for j in range(Y.cols)] for i in range(Y.rows)]
    else:
        R = [list(r) for r in np.asarray(Y, dtype=object)]
    return [[ctx.mpf(v) for v in r] for r in R] if ctx is not None else R


def _numbers(ctx):
    return (lambda v: ctx.mpf(v)) if ctx is not None else float


def _projection(u, d, conv):
    """u as a list of d numbers; e_1 = (1,) is the default only when d = 1."""
    if u is None:
        if d != 1:
            raise ValueError("a projection u is required for d > 1")
        u = [1.0]
    ul = [conv(v) for v in (u.tolist() if hasattr(u, "tolist") else u)]
    if len(ul) != d:
        raise ValueError(f"u must have length d = {d}, got {len(ul)}")
    return ul


def _ids_and_increments(Y, T, u, ctx):
    """From node inputs Y (M, d) and targets T (M, d): u (list), ids z_m = u^T y_m, increments t_m - y_m, targets."""
    Yl = _rows(Y, ctx)
    Tl = _rows(T, ctx)
    if not Yl or len(Tl) != len(Yl):
        raise ValueError(f"need M >= 1 node inputs and as many targets, got {len(Yl)} and {len(Tl)}")
    ul = _projection(u, len(Yl[0]), _numbers(ctx))
    z = [sum(a * b for a, b in zip(ul, y, strict=False)) for y in Yl]
    V = [[t - y for t, y in zip(tr, yr, strict=False)] for tr, yr in zip(Tl, Yl, strict=False)]
    return ul, z, V, Tl


def _ident(u, y, ctx):
    """The id u^T y of one token (d numbers) in ctx."""
    return ctx.fsum(ctx.mpf(a) * b for a, b in zip(u, y, strict=False))


@dataclass(frozen=True, eq=False)
class InterpolationFFN:
    """Two-FFN value map (hu2024.md §3.5): FF2(y) = y + g(u^T y), g piecewise linear through (z_m, v_m).

    g(z) = v_1 + sum_m a_m ReLU(z - z_m), a_1 = s_1, a_m = s_m - s_{m-1}, s_m = (v_{m+1} - v_m)/(z_{m+1} - z_m);
    exact at every node (g(z_k) = v_k), flat (= v_1) below z_1. Beyond z_M:
    extend="linear": the last slope continues, M - 1 hidden ReLUs (the digest's count);
    extend="flat": one more ReLU at z_M with a_M = -s_{M-1}, g = v_M beyond z_M, M hidden ReLUs (keeps the
    output bounded off the nodes: the assembled transformer needs it on FF1's ramp set).
    The ReLUs are shared by the d output coordinates (the digest counts per coordinate: an upper bound).
    v_m = t_m - y_m. Numbers are stored as given (floats, or ctx.mpf when built with a context).
    """

    u: tuple
    nodes: tuple
    values: tuple  # M tuples of length d
    extend: str = "linear"
    _tables: dict = field(default_factory=dict, repr=False)  # per binary precision: prefix sums for apply_column

    def __post_init__(self):
        if self.extend not in EXTENSIONS:
            raise ValueError(f"extend must be one of {EXTENSIONS}, got {self.extend!r}")

    @classmethod
    def from_nodes(cls, z, values, u=None, ctx=None, *, sort: bool = True, extend: str = "linear"):
        """Nodes z (M,) distinct, residual increments values (M, d), projection u (d,) (default e_1 when d=1)."""
        conv = _numbers(ctx)
        zl = [conv(v) for v in (z.tolist() if hasattr(z, "tolist") else z)]
        V = [[conv(x) for x in (row.tolist() if hasattr(row, "tolist") else row)] for row in values]
        M = len(zl)
        if M < 1 or len(V) != M:
            raise ValueError(f"need M >= 1 nodes and M value rows, got {M} nodes and {len(V)} rows")
        d = len(V[0])
        if any(len(r) != d for r in V):
            raise ValueError("value rows must all have length d")
        if ctx is None and M > INTERP_MAX_NODES:
            raise ValueError(f"{M} interpolation nodes exceed budget {INTERP_MAX_NODES}")
        ul = _projection(u, d, conv)
        if sort:
            order = sorted(range(M), key=lambda i: zl[i])
            zl = [zl[i] for i in order]
            V = [V[i] for i in order]
        for a, b in zip(zl, zl[1:], strict=False):
            if not a < b:
                raise ValueError(f"interpolation nodes (ids) must be distinct (and sorted), found {a} !< {b}")
        return cls(tuple(ul), tuple(zl), tuple(tuple(r) for r in V), extend)

    @classmethod
    def from_targets(cls, Y, T, u=None, ctx=None, *, sort: bool = True, extend: str = "linear"):
        """Nodes at the inputs Y (M, d) with targets T (M, d): z_m = u^T y_m, v_m = t_m - y_m."""
        ul, z, V, _ = _ids_and_increments(Y, T, u, ctx)
        return cls.from_nodes(z, V, ul, ctx, sort=sort, extend=extend)

    @property
    def M(self) -> int:
        return len(self.nodes)

    @property
    def d(self) -> int:
        return len(self.u)

    @property
    def hidden_width(self) -> int:
        """M - 1 (linear) or M (flat) ReLUs; 0 for a single node (g is the constant v_1)."""
        return 0 if self.M < 2 else self.M - 1 + (self.extend == "flat")

    def coefficients(self, conv=float):
        """(z, a, v_1): the ReLU offsets z_m, output weights a_m (hidden_width d-vectors), computed with ``conv``."""
        z = [conv(v) for v in self.nodes]
        V = [[conv(x) for x in r] for r in self.values]
        s = [[(V[m + 1][i] - V[m][i]) / (z[m + 1] - z[m]) for i in range(self.d)] for m in range(self.M - 1)]
        a = [s[0]] + [[s[m][i] - s[m - 1][i] for i in range(self.d)] for m in range(1, self.M - 1)] if s else []
        if s and self.extend == "flat":
            a.append([-x for x in s[-1]])
        return z, a, V[0]

    def weights(self):
        """(W1, b1, W2, b2) float64: W1 = 1 u^T (H x d), b1 = -z_m, W2 = [a_m] (d x H), b2 = v_1, H = hidden_width."""
        try:
            z, a, v1 = self.coefficients(float)
        except ZeroDivisionError:
            raise ValueError("float64 weights overflow (node gaps below float64 resolution): use apply_mp") from None
        H = self.hidden_width
        W1 = np.tile(np.asarray([float(x) for x in self.u]), (H, 1))
        b1 = -np.asarray(z[:H], dtype=np.float64)
        W2 = np.asarray(a, dtype=np.float64).T.reshape(self.d, H)
        b2 = np.asarray(v1, dtype=np.float64)
        if not (np.all(np.isfinite(W2)) and np.all(np.isfinite(b1))):
            raise ValueError("float64 weights overflow (node gaps too small for float64): use apply_mp")
        return W1, b1, W2, b2

    def mlp(self) -> MLP:
        return MLP(*self.weights())

    def __call__(self, Y, ctx=None):
        """FF2 on the columns of Y (d, n): float64 numpy, or mpmath when ctx is given / Y is an mpmath matrix."""
        if ctx is not None or hasattr(Y, "rows"):
            return self.apply_mp(Y, ctx)
        return self.mlp()(np.asarray(Y, dtype=np.float64))

    def apply_mp(self, Y, ctx=None):
        """FF2 in mpmath at ``ctx``, literally: every hidden unit summed (weights formed in ctx from the nodes)."""
        import mpmath

        ctx = ctx or getattr(Y, "ctx", None) or mpmath.mp
        R = _rows(Y, ctx)
        n = len(R[0])
        if self.M * n > MP_MAX_WORK:
            raise ValueError(f"{self.M} nodes x {n} tokens exceeds mpmath budget {MP_MAX_WORK}")
        z, a, v1 = self.coefficients(ctx.mpf)
        u = [ctx.mpf(x) for x in self.u]
        zero = ctx.mpf(0)
        out = ctx.matrix(self.d, n)
        for j in range(n):
            zz = ctx.fsum(u[i] * R[i][j] for i in range(self.d))
            h = [max(zz - z[m], zero) for m in range(self.hidden_width)]
            for i in range(self.d):
                out[i, j] = R[i][j] + v1[i] + ctx.fsum(a[m][i] * h[m] for m in range(self.hidden_width))
        return out

    def tables(self, ctx):
        """(z, A, B, v_1, a) in ctx, cached per precision: A_j = sum_{m<=j} a_m, B_j = sum_{m<=j} a_m z_m."""
        hit = self._tables.get(ctx.prec)
        if hit is None:
            z, a, v1 = self.coefficients(ctx.mpf)
            z = z[: self.hidden_width]
            A, B = [], []
            sa, sb = [ctx.mpf(0)] * self.d, [ctx.mpf(0)] * self.d
            for zm, am in zip(z, a, strict=True):
                sa = [sa[i] + am[i] for i in range(self.d)]
                sb = [sb[i] + am[i] * zm for i in range(self.d)]
                A.append(sa)
                B.append(sb)
            hit = (z, A, B, v1, a)
            self._tables[ctx.prec] = hit
        return hit

    def apply_column(self, y, ctx):
        """The same network on one token y (d numbers) in ctx, in O(d log M): the active units (z_m < u^T y) are
        a prefix of the sorted offsets, so sum_m a_m ReLU(z - z_m) = A_j z - B_j with prefix sums A, B."""
        z, A, B, v1, _ = self.tables(ctx)
        zq = _ident(self.u, y, ctx)
        j = bisect.bisect_left(z, zq)
        g = v1 if j == 0 else [v1[i] + A[j - 1][i] * zq - B[j - 1][i] for i in range(self.d)]
        return [y[i] + g[i] for i in range(self.d)]

    def max_output_weight(self, ctx):
        """max_m,i |a_m,i|: the slope that amplifies an error in the id into the output."""
        a = self.tables(ctx)[4]
        return max((abs(x) for r in a for x in r), default=ctx.mpf(0))

    def magnitude_mp(self, Y, ctx):
        """Per column, max over coordinates: |y| + |v_1| + sum_m |a_m| (ReLU(z - z_m) + 2 (|u|.|y| + |z_m|)).

        The scale of the rounding floor: the output sum's terms, plus the rounding of the id z = u^T y and of
        the stored nodes z_m (each O(unit roundoff x magnitude)) amplified by the slope coefficients |a_m|.
        """
        R = _rows(Y, ctx)
        z, a, v1 = self.coefficients(ctx.mpf)
        u = [ctx.mpf(x) for x in self.u]
        res = []
        for j in range(len(R[0])):
            zz = ctx.fsum(u[i] * R[i][j] for i in range(self.d))
            zmag = ctx.fsum(abs(u[i] * R[i][j]) for i in range(self.d))
            h = [max(zz - z[m], 0) + 2 * (zmag + abs(z[m])) for m in range(self.hidden_width)]
            res.append(
                max(
                    abs(R[i][j]) + abs(v1[i]) + ctx.fsum(abs(a[m][i]) * h[m] for m in range(self.hidden_width))
                    for i in range(self.d)
                )
            )
        return res


def _bump(zp, zero):
    """ReLU(z'+2) - ReLU(z'+1) - ReLU(z'-1) + ReLU(z'-2)."""
    return max(zp + 2, zero) - max(zp + 1, zero) - max(zp - 1, zero) + max(zp - 2, zero)


@dataclass(frozen=True, eq=False)
class BumpStack:
    """Deep narrow value map (hu2024.md §3.5): M residual layers, layer m: y <- y + w_m bump_m(u^T y).

    bump_m(z) = ReLU(z'+2) - ReLU(z'+1) - ReLU(z'-1) + ReLU(z'-2), z' = (z - z_m)/h: 1 on |z'| <= 1, 0 on |z'| >= 2;
    w_m = t_m - y_m; target_ids = u^T t_m (= z_m + u^T w_m), as checked by the guard.
    Requires h < (min node gap)/4 (bumps of other nodes vanish at z_m) and the target guard:
    u^T t_m outside [min z - 3h, max z + 3h] for every m, so that no later bump fires on a moved token.
    4 ReLUs per layer, depth M: the width-depth trade-off against InterpolationFFN's M - 1 (hu2024.md §5 item 16).
    """

    u: tuple
    nodes: tuple
    shifts: tuple  # M tuples of length d
    h: object
    guarded: bool = True
    target_ids: tuple = ()  # u^T t_m of the targets the guard was checked against (empty: no guard information)
    _tables: dict = field(default_factory=dict, repr=False)  # per binary precision: sorted ids for apply_column

    @classmethod
    def from_nodes(cls, z, shifts, u=None, *, target_ids=(), h=None, ctx=None, guard: bool = True) -> BumpStack:
        """Layers in the given order at ids z with increments ``shifts``; h defaults to (min gap)/5.

        ValueError if ids coincide, or (guard=True) if h >= gap/4 or a target id u^T t lies in the guard band.
        """
        conv = _numbers(ctx)
        z = [conv(v) for v in z]
        M = len(z)
        if M < 1 or len(shifts) != M:
            raise ValueError(f"need M >= 1 node ids and as many shifts, got {M} and {len(shifts)}")
        if ctx is None and M > BUMP_MAX_LAYERS:
            raise ValueError(f"{M} bump layers exceed budget {BUMP_MAX_LAYERS}")
        ul = _projection(u, len(shifts[0]), conv)
        zs = sorted(z)
        gap = min((b - a for a, b in zip(zs, zs[1:], strict=False)), default=None)
        if gap is not None and not gap > 0:
            raise ValueError("node ids u^T y_m must be distinct (two ids coincide)")
        h = conv(h) if h is not None else (gap / 5 if gap is not None else conv(1))
        if not h > 0:
            raise ValueError(f"bump half-width h must be > 0, got {h}")
        if guard:
            if gap is not None and not h < gap / 4:
                raise ValueError(f"bump half-width h = {h} violates h < (min node gap)/4 = {gap / 4}")
            lo, hi = zs[0] - 3 * h, zs[-1] + 3 * h
            for m, zt in enumerate(target_ids):
                if lo <= zt <= hi:
                    raise ValueError(
                        f"target guard fails: u^T t_{m} = {zt} lies in [min z - 3h, max z + 3h] = [{lo}, {hi}]"
                    )
        w = tuple(tuple(conv(x) for x in r) for r in shifts)
        return cls(tuple(ul), tuple(z), w, h, guard, tuple(conv(zt) for zt in target_ids))

    def guard_band(self):
        """[min z - 3h, max z + 3h]: a target id inside it could make a later layer fire on a moved token."""
        return min(self.nodes) - 3 * self.h, max(self.nodes) + 3 * self.h

    @classmethod
    def from_targets(cls, Y, T, u=None, h=None, ctx=None, *, guard: bool = True) -> BumpStack:
        """Layers in the given order, node m at u^T y_m moving it to t_m; see from_nodes."""
        ul, z, V, Tl = _ids_and_increments(Y, T, u, ctx)
        tz = [sum(a * b for a, b in zip(ul, t, strict=False)) for t in Tl]
        return cls.from_nodes(z, V, ul, target_ids=tz, h=h, ctx=ctx, guard=guard)

    @property
    def M(self) -> int:
        return len(self.nodes)

    @property
    def d(self) -> int:
        return len(self.u)

    @property
    def depth(self) -> int:
        return self.M

    @property
    def width(self) -> int:
        return 4

    def layers(self) -> list[MLP]:
        """The M residual FFNs (float64): W1 = u^T/h (4 rows), b1 = -z_m/h + (2, 1, -1, -2), W2 = w_m (1,-1,-1,1)."""
        h = float(self.h)
        u = np.asarray([float(x) for x in self.u])
        W1 = np.tile(u / h, (4, 1))
        out = []
        for zm, wm in zip(self.nodes, self.shifts, strict=False):
            b1 = -float(zm) / h + np.array([2.0, 1.0, -1.0, -2.0])
            W2 = np.outer(np.asarray([float(x) for x in wm]), [1.0, -1.0, -1.0, 1.0])
            out.append(MLP(W1, b1, W2, np.zeros(self.d)))
        return out

    def __call__(self, Y, ctx=None):
        if ctx is not None or hasattr(Y, "rows"):
            return self.apply_mp(Y, ctx)
        Y = np.asarray(Y, dtype=np.float64)
        for layer in self.layers():
            Y = layer(Y)
        return Y

    def apply_mp(self, Y, ctx=None):
        """The M layers in mpmath at ``ctx``, literally (every layer evaluated)."""
        import mpmath

        ctx = ctx or getattr(Y, "ctx", None) or mpmath.mp
        R = _rows(Y, ctx)
        n = len(R[0])
        if self.M * n > MP_MAX_WORK:
            raise ValueError(f"{self.M} layers x {n} tokens exceeds mpmath budget {MP_MAX_WORK}")
        u = [ctx.mpf(x) for x in self.u]
        h = ctx.mpf(self.h)
        zero = ctx.mpf(0)
        for zm, wm in zip(self.nodes, self.shifts, strict=False):
            zm = ctx.mpf(zm)
            wm = [ctx.mpf(x) for x in wm]
            for j in range(n):
                b = _bump((ctx.fsum(u[i] * R[i][j] for i in range(self.d)) - zm) / h, zero)
                if b != 0:
                    for i in range(self.d):
                        R[i][j] = R[i][j] + wm[i] * b
        out = ctx.matrix(self.d, n)
        for i in range(self.d):
            for j in range(n):
                out[i, j] = R[i][j]
        return out

    def tables(self, ctx):
        """(sorted ids, their layer indices, z, w, h) in ctx, cached per precision."""
        hit = self._tables.get(ctx.prec)
        if hit is None:
            z = [ctx.mpf(v) for v in self.nodes]
            order = sorted(range(self.M), key=lambda m: z[m])
            w = [[ctx.mpf(x) for x in r] for r in self.shifts]
            hit = ([z[m] for m in order], order, z, w, ctx.mpf(self.h))
            self._tables[ctx.prec] = hit
        return hit

    def apply_column(self, y, ctx):
        """The M layers on one token y (d numbers) in ctx, evaluating only layers that can fire.

        Layer m adds w_m bump_m, and bump_m = 0 outside the window (z_m - 2h, z_m + 2h) (below it all four ReLUs
        vanish; above it they cancel: (z'+2) - (z'+1) - (z'-1) + (z'-2) = 0, to rounding in apply_mp). So in
        layer order, the next layer to act is the first later one whose window holds the current id.
        """
        zs, order, z, w, h = self.tables(ctx)
        zero = ctx.mpf(0)
        y = list(y)
        done = -1
        while True:
            zq = _ident(self.u, y, ctx)
            lo, hi = bisect.bisect_left(zs, zq - 2 * h), bisect.bisect_right(zs, zq + 2 * h)
            later = [order[r] for r in range(lo, hi) if order[r] > done]
            if not later:
                return y
            m = min(later)
            b = _bump((zq - z[m]) / h, zero)
            y = [y[i] + w[m][i] * b for i in range(self.d)]
            done = m

    def max_output_weight(self, ctx):
        """max_m,i |w_m,i| / h: the bump's slope times its increment (amplifies an error in the id)."""
        _, _, _, w, h = self.tables(ctx)
        return max(abs(x) for r in w for x in r) / h
