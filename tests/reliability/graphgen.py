"""The core of the random-graph generator used by test_random_graphs.py: operands, elementwise
ops, reductions, each with a float64 NumPy reference and a propagated error bound.
See docs/reliability.md."""
import operator as O
import re
from types import SimpleNamespace

import numpy as np

import helpers as H
import metalcandle as mc

U = {"float16": 2.0 ** -11, "float32": 2.0 ** -24}      # unit roundoff of the float dtypes
TINY = {"float16": 2.0 ** -14, "float32": 2.0 ** -126}  # smallest normal (flush-to-zero allowed)
NP = {"float16": np.float16, "float32": np.float32, "int32": np.int32, "int64": np.int64,
      "bool": np.bool_}
LIM = {"float16": 2e3, "float32": 1e4, "int32": 2 ** 24, "int64": 2 ** 40, "bool": 2}
K = 16            # ulps allowed per transcendental function (Metal fast math included)
SAFETY = 4.0      # slack on the propagated bound
U32 = U["float32"]
F64 = np.float64

UNARY_EXACT = {"negative": np.negative, "abs": np.abs, "relu": lambda x: np.maximum(x, 0)}
DISC = {"floor": np.floor, "ceil": np.ceil, "round": np.rint, "sign": np.sign,
        "logical_not": lambda x: x == 0}
MONO = {"exp": (-60, 8), "expm1": (-60, 8), "log": (0.05, 1e9), "log1p": (-0.9, 1e9),
        "sqrt": (0.0, 1e9), "rsqrt": (0.05, 1e9), "tanh": None, "sigmoid": None, "erf": None,
        "reciprocal": None}
LIP = {"sin": 1.0, "cos": 1.0, "gelu": 1.13, "gelu_approx": 1.13, "silu": 1.1}
UNARIES = list(UNARY_EXACT) + list(DISC) + list(MONO) + list(LIP) + ["square"]
METHOD = {"exp", "log", "sqrt", "abs", "square"}
OPF = dict(zip(("add subtract multiply divide floor_divide remainder power equal not_equal less "
                "less_equal greater greater_equal logical_and logical_or").split(),
               zip("+ - * / // % ** == != < <= > >= & |".split(),
                   (O.add, O.sub, O.mul, O.truediv, O.floordiv, O.mod, O.pow, O.eq, O.ne, O.lt,
                    O.le, O.gt, O.ge, O.and_, O.or_))))
CMP = {"equal", "not_equal", "less", "less_equal", "greater", "greater_equal"}
ARITH = ["add", "subtract", "multiply", "divide", "floor_divide", "remainder", "power",
         "maximum", "minimum"]
REDUCE = ["sum", "mean", "prod", "max", "min", "argmax", "argmin", "var", "std", "logsumexp",
          "all", "any"]


class Sc:
    """A weak Python scalar operand."""
    def __init__(self, v):
        self.v, self.dt, self.name, self.t = v, None, repr(v), v
        self.ref = np.array(v, np.int64 if type(v) in (int, bool) else F64)
        self.err = np.zeros(())


def castE(n, to):
    """Error of ``n``'s value once converted to dtype ``to`` (ref stays the ideal value)."""
    if to not in U:
        return n.err
    if n.dt is None:
        return np.abs(n.ref - float(NP[to](n.v)))
    if n.dt == to or (n.dt == "float16" and to == "float32"):
        return n.err
    r = n.ref.astype(F64)
    exact = (n.err == 0) & (r.astype(NP[to]).astype(F64) == r)
    return np.where(exact, 0.0, n.err + U[to] * (np.abs(r) + n.err) + TINY[to])


def rnd(r, dt, e, k=2):
    """Error after a correctly rounded op: none where inputs are exact and r is representable."""
    if dt not in U:
        return e
    exact = (e == 0) & (r.astype(NP[dt]).astype(F64) == r)
    return np.where(exact, 0.0, e + k * U[dt] * np.abs(r))


def trans(r, dt, e, absolute=1.0):
    return e + K * U[dt] * (np.abs(r) + absolute)


def rand_shape(r, size):
    """A random shape of ``size`` elements with 0-4 dims, sometimes with a -1."""
    k, p, m = int(r.integers(0 if size == 1 else 1, 5)), 2, size
    dims = [1] * k
    while m > 1:
        while m % p:
            p += 1
        dims[r.integers(k)] *= p
        m //= p
    if dims and r.random() < 0.3:
        dims[r.integers(k)] = -1
    return tuple(dims)


def rand_key(r, shape):
    """A random basic index: ints, slices with steps, None, Ellipsis, fewer keys than dims."""
    key = []
    for d in shape:
        u = r.random()
        if u < 0.2:
            key.append(int(r.integers(-d, d)))
        else:
            b = [None if u > 0.7 or r.random() < 0.4 else int(r.integers(-d - 1, d + 2))
                 for _ in "ab"]
            key.append(slice(b[0], b[1], [None, 1, 2, -1, -2, 3][r.integers(6)] if u < 0.7
                             else None))
        if r.random() < 0.08:
            key.append(None)
    if r.random() < 0.15:
        key = [Ellipsis] + key[int(r.integers(len(key) + 1)):]
    elif key and r.random() < 0.3:
        key = key[:int(r.integers(len(key)))]
    return key[0] if len(key) == 1 and r.random() < 0.5 else tuple(key)


def bcast(*shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        return None


def register(g, prefix, ref, dt, expr, build, **extra):
    """Build the node ``expr`` (by ``build()``) as the next node of graph ``g``: checked against
    the reference's dtype and shape, named ``<prefix><index>``, its text kept for the report."""
    name = f"{prefix}{len(g.nodes)}"
    g.lines.append(f"{name} = {expr}   # {dt} {ref.shape}")
    try:
        t = build()
    except Exception as e:
        raise AssertionError(f"{name}: building raised {type(e).__name__}: {e}" + g.report()) from None
    if t.dtype.name != dt or t.shape != ref.shape:
        raise AssertionError(f"{name}: built {t.dtype.name} {t.shape}, expected {dt} "
                             f"{ref.shape}" + g.report())
    n = SimpleNamespace(t=t, ref=ref, dt=dt, name=name, expr=expr,
                        deps=sorted(set(re.findall(rf"\b{prefix}\d+\b", expr)) & g.names), **extra)
    g.names.add(name)
    g.nodes.append(n)
    return n


def run_seeds(seeds, run_one):
    """run_one(seed) -> ops for every seed (a failure does not hide the next ones);
    returns (ops, [(seed, message)])."""
    ops, fails = 0, []
    for seed in seeds:
        try:
            ops += run_one(seed)
        except AssertionError as e:
            fails.append((seed, str(e)))
            if mc.default_device() == "metal":
                mc.metal.reset()
    return ops, fails


class GraphCore:
    """A random graph under construction: nodes with their tensors, references and bounds."""

    def __init__(self, seed):
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.nodes, self.lines, self.leaves, self.info = [], [], [], ""
        self.names = set()

    def report(self, failed=None):
        """Seed, replay command, (when ``failed``: a node, or True for a failed eval) a shrunk
        minimal reproduction (shrink.py), then the whole graph."""
        dev = mc.default_device()
        head = (f"\n--- random graph seed={self.seed} device={dev} {self.info}\nreplay: python "
                f"tests/reliability/test_random_graphs.py {self.seed} --device {dev}\n")
        if failed is not None:
            from reliability.shrink import shrink
            head += shrink(self, failed) + "\n--- full graph:\n"
        return head + "\n".join(self.lines)

    def add(self, ref, err, dt, expr, build):
        ref = np.asarray(ref)
        err = np.broadcast_to(np.asarray(err, F64), ref.shape)
        if ref.size == 0 or ref.size > 256:
            return None
        if dt in U:
            err = np.where(err > 0, err + TINY[dt], 0.0)      # underflow / flush to zero
            if not (np.isfinite(ref).all() and np.abs(ref).max() <= LIM[dt]
                    and (err <= 0.05 * (np.abs(ref) + 1)).all()):
                return None
        elif dt != "bool" and np.abs(ref).max() > LIM[dt]:
            return None
        return register(self, "n", ref, dt, expr, build, err=err, val=None)

    # ------------------------------------------------------------ operands
    def leaf(self, shape=None, dt=None):
        r = self.rng
        if shape is None:
            shape = tuple(int(d) for d in r.integers(1, 5, r.integers(0, 4)))
        dt = dt or str(r.choice(["float32", "float32", "float16", "int32", "bool"]))
        a = H.rand(r, shape, dt)
        how = int(r.integers(3))
        if how == 2 and dt in ("float32", "int32", "bool"):
            expr, build = f"mc.array(<{dt} {shape} list>)", lambda: mc.array(a.tolist())
        else:
            fn = (mc.array, mc.asarray)[how % 2]
            expr, build = f"mc.{fn.__name__}(<{dt} {shape} ndarray>)", lambda: fn(a)
        ref = a.astype(F64) if dt in U else (a.copy() if dt == "bool" else a.astype(np.int64))
        n = self.add(ref, 0.0, dt, expr, build)
        if n is not None:      # for the shrunk repro: the values themselves, runnable
            n.val, n.expr = a.copy(), expr.split("(<")[0] + (
                f"({a.tolist()!r})" if "list>" in expr else f"(np.array({a.tolist()!r}, {dt!r}))")
        self.leaves.append((n, a, a.copy()))
        return n

    def pick(self, pred=lambda n: True):
        c = [n for n in self.nodes if pred(n)]
        return c[max(self.rng.integers(len(c), size=2))] if c else None

    def partner(self, shape, dts=None):
        r = self.rng
        if r.random() < 0.6:
            c = [n for n in self.nodes if bcast(shape, n.ref.shape) is not None
                 and (dts is None or n.dt in dts)]
            if c:
                return c[r.integers(len(c))]
        s = [1 if r.random() < 0.3 else d for d in shape[r.integers(len(shape) + 1):]]
        if len(s) == len(shape) and r.random() < 0.2:
            s = [int(r.integers(1, 3))] + s
        return self.leaf(tuple(s), str(r.choice(dts)) if dts else None)

    def scalar(self):
        vals = (2, -3, 1, 0.5, 1.5, -0.25, 3.0, 0.1, True)
        return Sc(vals[self.rng.integers(len(vals))])

    # ------------------------------------------------------------ elementwise
    def unary(self, name, x):
        out = H.unary_out(name, x.dt)
        if x.dt == "bool" and name != "logical_not":
            return None
        e = castE(x, out) if out in U else x.err
        xr = x.ref.astype(F64) if out in U else x.ref
        dom = MONO.get(name)
        if dom and not ((xr - e).min() > dom[0] and (xr + e).max() < dom[1]) or (
                name == "reciprocal" and (np.abs(xr) - e).min() <= 0.2):
            if name in ("exp", "expm1"):
                return None
            x = self.adapt(x, 0.5 if name == "reciprocal" else 1.0)   # log(abs(x) + 1) etc.
            return x and self.unary(name, x)
        f = DISC.get(name) or UNARY_EXACT.get(name) or H.UNARY[name][1]
        ref = f(xr)
        if name in DISC:
            if e.any():
                return None
            err = 0.0
        elif name in UNARY_EXACT:
            err = e
        elif name == "square":
            err = rnd(ref, out, 2 * np.abs(xr) * e + e * e)
        elif name in MONO:
            err = trans(ref, out, np.maximum(np.abs(f(xr + e) - ref), np.abs(f(xr - e) - ref)))
        else:
            err = trans(ref, out, LIP[name] * e, np.abs(xr) + 1)
        fn = H.UNARY[name][0]
        form = self.rng.integers(3)
        if form == 0 and name in METHOD:
            return self.add(ref, err, out, f"{x.name}.{name}()", lambda: getattr(x.t, name)())
        if form == 1 and name in ("negative", "abs"):
            f2 = O.neg if name == "negative" else abs
            return self.add(ref, err, out, f"{f2.__name__}({x.name})", lambda: f2(x.t))
        return self.add(ref, err, out, f"mc.{name}({x.name})", lambda: fn(x.t))

    def adapt(self, x, c):
        a = self.unary("abs", x)
        return a and self.binop("add", a, Sc(c))

    def binop(self, op, a, b):
        r = self.rng
        if isinstance(a, Sc):
            ct = H.weak_result(b.dt, a.v)
        elif isinstance(b, Sc):
            ct = H.weak_result(a.dt, b.v)
        else:
            ct = H.expected_promotion(a.dt, b.dt)
        out = H.binary_out(op, ct)
        if op.startswith("logical"):
            if a.dt != "bool" or b.dt != "bool":
                return None
        elif ct == "bool" and op not in CMP or op in ("floor_divide", "remainder") and ct in U:
            return None
        fa, fb = castE(a, ct), castE(b, ct)
        ra, rb = (a.ref.astype(F64), b.ref.astype(F64)) if ct in U else (a.ref, b.ref)
        if op in CMP or op.startswith("logical"):
            if fa.any() or fb.any():
                return None
            ref, err = getattr(np, op)(ra, rb), 0.0
        elif op in ("add", "subtract", "multiply"):
            ref = getattr(np, op)(ra, rb)
            e = fa + fb if op != "multiply" else np.abs(ra) * fb + np.abs(rb) * fa + fa * fb
            err = rnd(ref, out, e)
        elif op == "divide":
            d = np.abs(rb) - fb
            if d.min() < 0.25:
                return None
            ref = ra / rb
            err = (fa + np.abs(ref) * fb) / d + 4 * U[out] * np.abs(ref)
        elif op in ("floor_divide", "remainder"):
            if not rb.all():
                return None
            ref, err = getattr(np, op)(ra, rb), 0.0
        elif op == "power":
            if ct in U:
                if (ra - fa).min() < 0.25 or ra.max() > 6 or np.abs(rb).max() > 3:
                    return None
                ref = ra ** rb
                dev = max(np.max(np.abs((ra + s * fa) ** (rb + t * fb) - ref))
                          for s in (-1, 1) for t in (-1, 1))
                err = trans(ref, out, dev)
            else:
                if rb.min() < 0 or rb.max() > 3 or np.abs(ra).max() > 20:
                    return None
                ref, err = ra ** rb, 0.0
        else:
            ref, err = getattr(np, op)(ra, rb), np.maximum(fa, fb)
        expr = f"mc.{op}({a.name}, {b.name})"
        if op in OPF and r.random() < 0.5:
            expr = f"{a.name} {OPF[op][0]} {b.name}"
            return self.add(ref, err, out, expr, lambda: OPF[op][1](a.t, b.t))
        return self.add(ref, err, out, expr, lambda: getattr(mc, op)(a.t, b.t))

    def where(self, c, a, b):
        if isinstance(a, Sc) and isinstance(b, Sc) or b is None or bcast(
                c.ref.shape, a.ref.shape, b.ref.shape) is None:
            return None
        dt = (H.weak_result(b.dt, a.v) if isinstance(a, Sc) else H.weak_result(a.dt, b.v)
              if isinstance(b, Sc) else H.expected_promotion(a.dt, b.dt))
        ra, rb = (a.ref.astype(F64), b.ref.astype(F64)) if dt in U else (a.ref, b.ref)
        ref = np.where(c.ref, ra, rb)
        err = np.where(c.ref, castE(a, dt), castE(b, dt))
        return self.add(ref, err, dt, f"mc.where({c.name}, {a.name}, {b.name})",
                        lambda: mc.where(c.t, a.t, b.t))

    def astype(self, x, to):
        if to in U:
            ref, err = x.ref.astype(F64), castE(x, to)
        elif x.err.any():
            return None
        elif to == "bool":
            ref, err = x.ref != 0, 0.0
        else:
            ref, err = np.trunc(x.ref).astype(np.int64), 0.0
        spec = getattr(mc, to) if to != "bool" else mc.bool_
        if self.rng.random() < 0.5:
            return self.add(ref, err, to, f"{x.name}.astype(mc.{to})", lambda: x.t.astype(spec))
        return self.add(ref, err, to, f"mc.astype({x.name}, {to!r})", lambda: mc.astype(x.t, to))

    # ------------------------------------------------------------ reductions
    def axes(self, nd, single=False):
        r, u = self.rng, self.rng.random()
        if nd == 0 or u < 0.25:
            return None
        if single or u < 0.7:
            return int(r.integers(-nd, nd))
        ax = r.choice(nd, int(r.integers(1, nd + 1)), replace=False)
        return tuple(int(a - nd) if r.random() < 0.3 else int(a) for a in ax)

    def reduce(self, op, x, axis, keepdims, ddof=0):
        fl = x.dt in U
        if x.dt == "bool" and op not in ("sum", "all", "any"):
            return None
        out = {"sum": x.dt if fl else "int64", "prod": x.dt if fl else "int64", "max": x.dt,
               "min": x.dt, "argmax": "int64", "argmin": "int64", "all": "bool",
               "any": "bool"}.get(op, x.dt if fl else "float32")
        nd = x.ref.ndim
        axt = tuple(range(nd)) if axis is None else (axis,) if isinstance(axis, int) else axis
        n = int(np.prod([x.ref.shape[a] for a in axt]))
        kw = dict(axis=axis, keepdims=keepdims)
        e = castE(x, out) if out in U else x.err
        xf = x.ref.astype(F64) if out in U else x.ref
        if op in ("argmax", "argmin", "all", "any", "prod") and e.any():
            return None
        if op == "sum":
            ref = np.sum(xf, **kw)
            err = (np.sum(e, **kw) + n * U32 * np.sum(np.abs(xf), **kw) + 2 * U[out] * np.abs(ref)
                   if out in U else 0.0)
        elif op == "mean":
            ref = np.mean(xf, **kw)
            err = (np.sum(e, **kw) / n + U32 * np.sum(np.abs(xf), **kw)
                   + 2 * U[out] * np.abs(ref))
        elif op == "prod":
            if n > 6 or np.abs(xf).max() > 4:
                return None
            ref = np.prod(xf, **kw)
            err = 2 * (n + 1) * U[out] * np.abs(ref) if out in U else 0.0
        elif op in ("max", "min", "all", "any", "argmax", "argmin"):
            ref = getattr(np, op)(xf, **kw)
            err = np.max(e, **kw) if op in ("max", "min") else 0.0
        elif op in ("var", "std"):
            if n - ddof <= 0:
                return None
            ref = getattr(np, op)(xf, ddof=ddof, **kw)
            em = np.max(e, **kw)
            m = np.abs(xf - np.mean(xf, axis=axis, keepdims=True))
            core = ((2 * np.max(m, **kw) * em + em * em + 4 * n * U32 * np.mean(xf * xf, **kw))
                    * n / (n - ddof))
            if op == "std":
                if ref.min() < 0.05:
                    return None
                core = core / ref
            err = trans(ref, out, core, 0.0)
        else:   # logsumexp
            m = np.max(xf, axis=axis, keepdims=True)
            ref = (np.log(np.sum(np.exp(xf - m), axis=axis, keepdims=True)) + m).reshape(
                np.sum(xf, **kw).shape)
            err = trans(ref, out, np.max(e, **kw) + n * K * U32)
        extra = f", ddof={ddof}" if op in ("var", "std") else ""
        expr = f"mc.{op}({x.name}, axis={axis}, keepdims={keepdims}{extra})"
        kwd = dict(kw, ddof=ddof) if extra else kw
        if self.rng.random() < 0.5 and op != "logsumexp":   # Tensor.logsumexp: in the .pyi only
            return self.add(ref, err, out, expr, lambda: getattr(x.t, op)(**kwd))
        return self.add(ref, err, out, expr, lambda: getattr(mc, op)(x.t, **kwd))
