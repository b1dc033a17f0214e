"""A second random-graph generator, for what graphgen.py leaves out: every dtype (bool, uint8,
int8, int16, uint32, int32, int64, float16, bfloat16 when ml_dtypes is installed, float32, float64
on the CPU device), 0-d tensors and size-0 shapes ((0,), (3, 0), (1, 0, 2)...), reductions over
size-0 axes, creation functions, integer floor_divide/remainder/power.

Values are small integers and halves, and an op is kept only when its exact (float64 / int64) result
is representable in the result dtype, so every node must match NumPy *exactly*; a few inexact ops
(mean/var/std/logsumexp, divide, exp/log/sqrt/tanh) are leaves of the DAG, compared with the
per-op tolerances of tests/helpers.py (NaN == NaN: NumPy's mean of an empty axis is NaN).
max/min/argmax/argmin over a size-0 axis (NumPy raises) must raise ShapeError at build time.
Nodes carry name/expr/deps/ref like graphgen's, so shrink.py shrinks failures here too.
"""
import importlib.util

import numpy as np

import helpers as H
import metalcandle as mc
from reliability.graphgen import register
from metalcandle import errors as E

DTYPES = ["bool", "uint8", "int8", "int16", "uint32", "int32", "int64", "float16", "float32",
          "float64"] + (["bfloat16"] if importlib.util.find_spec("ml_dtypes") else [])
SHAPES = [(), (), (0,), (3, 0), (0, 3), (1, 0, 2), (1,), (4,), (2, 3), (2, 1, 3), (3, 1)]
F64 = np.float64
EXACT_UNARY = ["negative", "abs", "square", "sign", "floor", "ceil", "round", "relu",
               "logical_not"]
EXACT_BINARY = ["add", "subtract", "multiply", "maximum", "minimum", "floor_divide", "remainder",
                "power", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
                "logical_and", "logical_or"]
INEXACT = ["mean", "var", "std", "logsumexp", "divide", "exp", "log", "sqrt", "tanh"]
REDUCE = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "argmax": np.argmax,
          "argmin": np.argmin, "all": np.all, "any": np.any}


def dtypes_here():
    return [d for d in DTYPES if d != "float64" or mc.default_device() == "cpu"]


def fits(ref, dt):
    """The exact result ``ref`` is representable in ``dt`` (no overflow, no rounding)."""
    if ref.size == 0 or dt == "bool":
        return True
    if H.kind(dt) == "f":
        r = ref.astype(F64)
        return bool(np.isfinite(r).all() and np.abs(r).max() <= 256
                    and (r.astype(H.np_dtype(dt)).astype(F64) == r).all())
    info = np.iinfo(dt)
    return bool(ref.min() >= info.min and ref.max() <= info.max)


class EdgeGraph:
    def __init__(self, seed):
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.nodes, self.lines, self.names, self.info, self.fusion = [], [], set(), "", True
        self.leaves = []

    def report(self, failed=None):
        from reliability.shrink import shrink
        dev = mc.default_device()
        return (f"\n--- edge graph seed={self.seed} device={dev} {self.info}\n"
                + (shrink(self, failed) + "\n--- full graph:\n" if failed is not None else "")
                + "\n".join(self.lines))

    def add(self, ref, dt, expr, build, exact=True, op=None):
        ref = np.asarray(ref)
        if exact and not fits(ref, dt):
            return None
        return register(self, "e", ref, dt, expr, build, exact=exact, op=op)

    # ------------------------------------------------------------ leaves and creation
    def leaf(self, shape=None, dt=None):
        r = self.rng
        shape = SHAPES[r.integers(len(SHAPES))] if shape is None else shape
        dts = dtypes_here()
        dt = dt or dts[r.integers(len(dts))]
        k, how = H.kind(dt), int(r.integers(5))
        if k == "b":
            a = r.random(shape) < 0.5
        elif k == "f":
            a = (r.integers(-8, 9, shape) * 0.5).astype(H.np_dtype(dt))
        else:
            a = r.integers(0 if k == "u" else -6, 7, shape).astype(dt)
        spec = f"mc.{'bool_' if dt == 'bool' else dt}"
        ref = a.astype(F64) if k == "f" else a.copy() if k == "b" else a.astype(np.int64)
        if how == 3 and a.size:
            v = a.flat[0].item()
            return self.add(np.full(shape, ref.flat[0]), dt, f"mc.full({shape}, {v!r}, {spec})",
                            lambda: mc.full(shape, v, getattr(mc, spec[3:])))
        if how == 4:
            f = ("zeros", "ones")[r.integers(2)]
            return self.add(getattr(np, f)(shape, ref.dtype), dt, f"mc.{f}({shape}, {spec})",
                            lambda: getattr(mc, f)(shape, getattr(mc, spec[3:])))
        fn = (mc.array, mc.asarray, mc.array)[how % 3]
        lit = f"np.array({a.tolist()!r}, {dt!r})" if a.size else f"np.zeros({shape}, {dt!r})"
        how = how if a.size else 0
        if how == 2:                       # a Python list with an explicit dtype
            lit, build = f"{a.tolist()!r}, dtype={spec}", lambda: mc.array(a.tolist(),
                                                                         dtype=getattr(mc, spec[3:]))
        else:
            build = lambda: fn(a)         # noqa: E731
        n = self.add(ref, dt, f"mc.{fn.__name__ if how != 2 else 'array'}({lit})", build)
        self.leaves.append((n, a, a.copy()))
        return n

    def pick(self, pred=lambda n: True):
        c = [n for n in self.nodes if n.exact and pred(n)]
        return c[self.rng.integers(len(c))] if c else None

    def partner(self, shape):
        if self.rng.random() < 0.5:
            n = self.pick(lambda n: _bc(shape, n.ref.shape) is not None)
            if n is not None:
                return n
        s = tuple(1 if self.rng.random() < 0.3 else d for d in shape)
        return self.leaf(s[int(self.rng.integers(len(s) + 1)):])

    # ------------------------------------------------------------ ops
    def unary(self, op, x):
        if (x.dt == "bool") != (op == "logical_not"):
            return None
        out = H.unary_out(op, x.dt)
        with np.errstate(all="ignore"):
            ref = H.unary_ref(op, x.ref, out)
        if H.kind(x.dt) == "u" and op == "negative":
            ref = (-x.ref) % (2 ** (8 * np.dtype(x.dt).itemsize))     # wraps, as NumPy
        return self.add(ref, out, f"mc.{op}({x.name})", lambda: getattr(mc, op)(x.t))

    def binary(self, op, a, b):
        if op.startswith("logical") and (a.dt != "bool" or b.dt != "bool"):
            return None
        ct = H.expected_promotion(a.dt, b.dt)
        if ct == "bool" and op not in H.COMPARISONS or _bc(a.ref.shape, b.ref.shape) is None:
            return None
        out = H.binary_out(op, ct)
        ra, rb = a.ref, b.ref
        if op in ("floor_divide", "remainder") and (rb == 0).any():
            return None
        if op == "power" and (H.kind(ct) != "f" and (rb < 0).any() or (np.abs(ra) > 4).any()
                              or (rb > 3).any() or H.kind(ct) == "f" and (rb % 1).any()):
            return None
        with np.errstate(all="ignore"):
            ref = getattr(np, op if op != "power" else "power")(ra, rb)
        expr = f"mc.{op}({a.name}, {b.name})"
        return self.add(ref, out, expr, lambda: getattr(mc, op)(a.t, b.t))

    def scalar(self, op, a):
        if a.dt == "bool" or op not in ("add", "subtract", "multiply", "maximum", "less"):
            return None
        v = [2, -1, 3, 0.5, True][self.rng.integers(5)]
        out = H.binary_out(op, H.weak_result(a.dt, v))
        ref = getattr(np, op)(a.ref.astype(F64) if H.kind(out) == "f" else a.ref, v)
        if H.kind(a.dt) == "u" and type(v) is int and v < 0:
            return None            # weak int scalar out of the unsigned range: OverflowError
        return self.add(ref, out, f"{a.name} {'+-*'[('add', 'subtract', 'multiply').index(op)]}"
                        f" {v!r}" if op in ("add", "subtract", "multiply") else
                        f"mc.{op}({a.name}, {v!r})", lambda: getattr(mc, op)(a.t, v))

    def where(self, c, a, b):
        if _bc(c.ref.shape, a.ref.shape, b.ref.shape) is None:
            return None
        dt = H.expected_promotion(a.dt, b.dt)
        return self.add(np.where(c.ref, a.ref, b.ref), dt,
                        f"mc.where({c.name}, {a.name}, {b.name})",
                        lambda: mc.where(c.t, a.t, b.t))

    def astype(self, x, to):
        if H.kind(to) in "iu" and H.kind(x.dt) == "f" and (x.ref % 1).any():
            return None
        if H.kind(to) == "u" and (x.ref < 0).any():
            return None
        ref = x.ref != 0 if to == "bool" else x.ref.astype(F64 if H.kind(to) == "f" else np.int64)
        spec = "bool_" if to == "bool" else to
        return self.add(ref, to, f"{x.name}.astype(mc.{spec})", lambda: x.t.astype(
            getattr(mc, spec)))

    def reduce(self, op, x, axis, keepdims):
        if x.dt == "bool" and op in ("max", "min"):
            return None
        nd = x.ref.ndim
        axt = tuple(range(nd)) if axis is None else (axis,) if isinstance(axis, int) else axis
        empty = any(x.ref.shape[a] == 0 for a in axt) or not x.ref.size and not axt
        expr = f"mc.{op}({x.name}, axis={axis}, keepdims={keepdims})"
        if op in ("max", "min", "argmax", "argmin") and empty:
            try:
                getattr(mc, op)(x.t, axis=axis, keepdims=keepdims)
            except E.ShapeError as e:
                assert op in str(e) and "zero-size" in str(e), f"{expr}: message {e}"
                return None
            raise AssertionError(f"{expr}: no ShapeError for a zero-size axis" + self.report())
        if op == "prod" and x.ref.size and np.abs(x.ref).max() > 2:
            return None
        ref = REDUCE[op](x.ref, axis=axis, keepdims=keepdims)
        k = H.kind(x.dt)
        out = {"sum": None, "prod": None, "all": "bool", "any": "bool", "argmax": "int64",
               "argmin": "int64"}.get(op, x.dt)
        out = out or (x.dt if k == "f" else "int64")
        if op in ("sum", "prod") and H.kind(out) == "f" and H.np_dtype(out).itemsize == 2:
            if not fits(np.sum(np.abs(x.ref), axis=axis), out):
                return None         # every partial sum exact, whatever the summation order
        return self.add(ref, out, expr, lambda: getattr(mc, op)(x.t, axis=axis,
                                                                 keepdims=keepdims))

    def inexact(self, op, x):
        """A DAG leaf compared with a tolerance: reductions producing floats, divide, exp..."""
        out = x.dt if H.kind(x.dt) == "f" else "float32"
        if x.dt == "bool":
            return None
        xf = x.ref.astype(F64)
        with np.errstate(all="ignore"):
            if op in ("mean", "var", "std", "logsumexp"):
                ax = None if x.ref.ndim == 0 else int(self.rng.integers(x.ref.ndim))
                if op == "logsumexp":
                    m = np.max(xf, axis=ax, keepdims=True, initial=-np.inf)
                    m = np.where(np.isfinite(m), m, 0)
                    ref = np.log(np.sum(np.exp(xf - m), axis=ax, keepdims=True)) + m
                    ref = ref.reshape(np.sum(xf, axis=ax).shape)
                else:
                    ref = getattr(np, op)(xf, axis=ax)
                return self.add(ref, out, f"mc.{op}({x.name}, axis={ax})",
                                lambda: getattr(mc, op)(x.t, axis=ax), False, op)
            if op == "divide":
                b = self.partner(x.ref.shape)
                if b is None or b.dt == "bool" or (b.ref == 0).any() or _bc(
                        x.ref.shape, b.ref.shape) is None:
                    return None
                out = H.binary_out("divide", H.expected_promotion(x.dt, b.dt))
                return self.add(xf / b.ref, out, f"mc.divide({x.name}, {b.name})",
                                lambda: mc.divide(x.t, b.t), False, op)
            if op in ("log", "sqrt") and (xf <= 0).any() or op == "exp" and (xf > 8).any():
                return None
            ref = getattr(np, op)(xf)
            return self.add(ref, out, f"mc.{op}({x.name})", lambda: getattr(mc, op)(x.t),
                            False, op)

    def layout(self, x):
        r, s, t, nm = self.rng, x.ref.shape, x.t, x.name
        kind = int(r.integers(6))
        if kind == 0:
            new = tuple(int(d) for d in r.permutation(list(s) + [1] * int(r.integers(2))))
            return self.add(x.ref.reshape(new), x.dt, f"mc.reshape({nm}, {new})",
                            lambda: mc.reshape(t, new))
        if kind == 1:
            return self.add(x.ref.T, x.dt, f"{nm}.T", lambda: t.T)
        if kind == 2 and s:
            k = tuple(slice(int(r.integers(-1, d + 2)), int(r.integers(-1, d + 2))) for d in s)
            return self.add(x.ref[k], x.dt, f"{nm}[{k!r}]", lambda: t[k])
        if kind == 3:
            new = (int(r.integers(0, 3)),) + s
            return self.add(np.broadcast_to(x.ref, new), x.dt, f"mc.broadcast_to({nm}, {new})",
                            lambda: mc.broadcast_to(t, new))
        if kind == 4 and s:
            ax = int(r.integers(len(s)))
            o = self.pick(lambda n: n.ref.ndim == len(s) and all(
                n.ref.shape[i] == d for i, d in enumerate(s) if i != ax)) or x
            dt = H.expected_promotion(x.dt, o.dt)
            return self.add(np.concatenate([x.ref, o.ref], ax), dt,
                            f"mc.concatenate([{nm}, {o.name}], axis={ax})",
                            lambda: mc.concatenate([t, o.t], axis=ax))
        if kind == 5 and s and x.dt != "bool":
            k = s[-1]
            o = self.pick(lambda n: n.ref.ndim == 2 and n.ref.shape[0] == k and n.dt != "bool")
            o = o or self.leaf((k, int(r.integers(0, 3))), x.dt)
            if o is None or o.dt == "bool" or x.ref.ndim > 2 or not fits(
                    np.abs(x.ref.astype(F64)) @ np.abs(o.ref.astype(F64)), o.dt):
                return None
            dt = H.expected_promotion(x.dt, o.dt)
            ref = np.matmul(x.ref.astype(F64 if H.kind(dt) == "f" else np.int64), o.ref)
            return self.add(ref, dt, f"mc.matmul({nm}, {o.name})", lambda: mc.matmul(t, o.t))
        return self.add(np.expand_dims(x.ref, 0), x.dt, f"mc.expand_dims({nm}, 0)",
                        lambda: mc.expand_dims(t, 0))

    # ------------------------------------------------------------ generation and checks
    def build(self, n_ops=None):
        r = self.rng
        n_ops = n_ops or int(r.integers(4, 16))
        self.leaf()
        for _ in range(10 * n_ops):
            if len(self.nodes) - len(self.leaves) >= n_ops:
                break
            x, u = self.pick(), r.random()
            if u < 0.2:
                self.unary(EXACT_UNARY[r.integers(len(EXACT_UNARY))], x)
            elif u < 0.45:
                op = EXACT_BINARY[r.integers(len(EXACT_BINARY))]
                y = self.partner(x.ref.shape)
                y and self.binary(op, *((x, y) if r.random() < 0.5 else (y, x)))
            elif u < 0.5:
                self.scalar(["add", "subtract", "multiply", "maximum", "less"][r.integers(5)], x)
            elif u < 0.55:
                c = self.pick(lambda n: n.dt == "bool")
                y = self.partner(x.ref.shape)
                c and y and self.where(c, x, y)
            elif u < 0.65:
                dts = dtypes_here()
                self.astype(x, dts[r.integers(len(dts))])
            elif u < 0.8:
                nd = x.ref.ndim
                ax = None if nd == 0 or r.random() < 0.3 else int(r.integers(-nd, nd))
                op = list(REDUCE)[r.integers(len(REDUCE))]
                self.reduce(op, x, ax, bool(r.random() < 0.5))
            elif u < 0.92:
                self.layout(x)
            elif u < 0.96:
                self.inexact(INEXACT[r.integers(len(INEXACT))], x)
            else:
                self.leaf()
        return self

    def mismatch(self, n, stage):
        got = np.asarray(n.t)
        if got.dtype != H.np_dtype(n.dt) or got.shape != n.ref.shape:
            return f"{n.name} after {stage}: got {got.dtype} {got.shape}, want {n.dt} {n.ref.shape}"
        if n.exact:
            g = H.as_f64(got) if H.kind(n.dt) == "f" else got
            ok = np.array_equal(g, n.ref)
        else:
            rt, at = H.tol(n.op, n.dt)
            ok = np.allclose(H.as_f64(got), n.ref, rtol=rt, atol=at, equal_nan=True) and (
                np.isnan(H.as_f64(got)) == np.isnan(n.ref)).all()
        return None if ok else (f"{n.name} wrong after {stage}:\n got {got!r}\n ref "
                                f"{n.ref!r}")

    def evaluate(self):
        r = self.rng
        self.fusion = bool(r.integers(2))
        mc.set_fusion(self.fusion)
        held = [n for n in self.nodes if r.random() < 0.6 or n is self.nodes[-1]]
        keep = {id(n) for n in held}
        for n in self.nodes:
            n.t = n.t if id(n) in keep else None
        self.info = f"fusion={self.fusion} held={[n.name for n in held]}"
        try:
            if r.random() < 0.5:
                mc.eval([n.t for n in held])
            else:
                for i in r.permutation(len(held)):
                    held[i].t.eval()
        except Exception as e:
            raise AssertionError(f"eval raised {type(e).__name__}: {e}" + self.report(True)) from e
        for n in held:
            msg = self.mismatch(n, "eval")
            if msg:
                raise AssertionError(msg + self.report(n))
        for n, a, copy in self.leaves:
            if n is not None and not np.array_equal(a, copy):
                raise AssertionError(f"input {n.name} was written to" + self.report())
        return len(self.nodes) - len(self.leaves)


def _bc(*shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        return None
