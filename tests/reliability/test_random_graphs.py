"""Differential random-graph testing: seeded DAGs of 5-40 public ops, evaluated by metalcandle
(fusion on or off, random eval orders, held intermediates) and compared with the same graph in
float64 NumPy. Each node carries a propagated error bound (exact where every step is exact, so
comparisons, floor, argmax... only ever see exact inputs). A mismatch prints the seed and the graph.
Replay:  python tests/reliability/test_random_graphs.py SEED [SEED...] [--device metal] [-v]
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helpers as H  # noqa: E402
import metalcandle as mc  # noqa: E402
from reliability.graphgen import (  # noqa: E402
    U, NP, K, SAFETY, U32, F64, CMP, ARITH, REDUCE, UNARIES, Sc, GraphCore, castE, bcast,
    rand_shape, rand_key, run_seeds)

BLOCKS, PER_BLOCK = 40, 250               # 10,000 graphs on the CPU
METAL_PER_BLOCK = 50                      # 2,000 on Metal (the MSL simulator is slower)


class Graph(GraphCore):
    # ------------------------------------------------------------ layout
    def tf(self, x, f, expr, build):
        """A layout op: the same NumPy transform of the reference and of the error bound."""
        return self.add(f(x.ref), f(x.err), x.dt, expr, build)

    def layout(self, x):
        r, t, nm, nd, tf = self.rng, x.t, x.name, x.ref.ndim, self.tf
        kind = int(r.integers(8))
        if kind == 0:
            s = rand_shape(r, x.ref.size)
            b = [lambda: t.reshape(s), lambda: t.reshape(*s), lambda: mc.reshape(t, s)]
            return tf(x, lambda v: v.reshape(s), f"mc.reshape({nm}, {s})", b[r.integers(3)])
        if kind == 1:
            p, f = tuple(int(i) for i in r.permutation(nd)), int(r.integers(4)) if nd > 1 else 1
            a, b = (int(i) for i in r.integers(-nd, nd, 2)) if nd else (0, 0)
            return [lambda: tf(x, np.transpose, f"{nm}.T", lambda: t.T),
                    lambda: tf(x, lambda v: v.transpose(p), f"mc.transpose({nm}, {p})",
                               lambda: mc.transpose(t, p)),
                    lambda: tf(x, lambda v: np.swapaxes(v, a, b), f"mc.swapaxes({nm}, {a}, {b})",
                               lambda: mc.swapaxes(t, a, b)),
                    lambda: tf(x, lambda v: np.moveaxis(v, a, b), f"mc.moveaxis({nm}, {a}, {b})",
                               lambda: mc.moveaxis(t, a, b))][f]()
        if kind in (2, 3):
            k = rand_key(r, x.ref.shape)
            return tf(x, lambda v: v[k], f"{nm}[{k!r}]", lambda: t[k])
        if kind == 4:
            a = int(r.integers(-nd - 1, nd + 1))
            return tf(x, lambda v: np.expand_dims(v, a), f"mc.expand_dims({nm}, {a})",
                      lambda: mc.expand_dims(t, a))
        if kind == 5:
            ones = [i for i, d in enumerate(x.ref.shape) if d == 1]
            a = None if not ones or r.random() < 0.3 else ones[r.integers(len(ones))]
            return tf(x, lambda v: np.squeeze(v, a), f"mc.squeeze({nm}, {a})",
                      lambda: mc.squeeze(t, a))
        if kind == 6:
            s = tuple(int(r.integers(1, 4)) if d == 1 else d for d in x.ref.shape)
            s = ((int(r.integers(1, 3)),) if r.random() < 0.3 else ()) + s
            return tf(x, lambda v: np.broadcast_to(v, s), f"mc.broadcast_to({nm}, {s})",
                      lambda: mc.broadcast_to(t, s))
        return self.concat(x) if nd and r.random() < 0.8 else tf(
            x, lambda v: v.reshape(-1), f"{nm}.flatten()", lambda: t.flatten())

    def concat(self, x):
        r, nd, shape = self.rng, x.ref.ndim, x.ref.shape
        stack = r.random() < 0.3
        ax = int(r.integers(-nd - stack, nd + stack))
        a = ax % (nd + stack)
        parts = [x]
        for _ in range(int(r.integers(1, 3))):
            c = [n for n in self.nodes if n.ref.shape == shape or not stack and n.ref.ndim == nd
                 and all(n.ref.shape[i] == shape[i] for i in range(nd) if i != a)]
            if c and r.random() < 0.6:
                parts.append(c[r.integers(len(c))])
            else:
                s = list(shape)
                if not stack:
                    s[a] = int(r.integers(1, 4))
                parts.append(self.leaf(tuple(s), x.dt if r.random() < 0.7 else None))
        if None in parts:
            return None
        dt = parts[0].dt
        for p in parts[1:]:
            dt = H.expected_promotion(dt, p.dt)
        refs = [p.ref.astype(F64) if dt in U else p.ref for p in parts]
        errs = [np.broadcast_to(castE(p, dt), p.ref.shape) for p in parts]
        ts, names = [p.t for p in parts], ", ".join(p.name for p in parts)
        if stack:
            return self.add(np.stack(refs, ax), np.stack(errs, ax), dt,
                            f"mc.stack([{names}], {ax})", lambda: mc.stack(ts, ax))
        return self.add(np.concatenate(refs, ax), np.concatenate(errs, ax), dt,
                        f"mc.concatenate([{names}], axis={ax})",
                        lambda: mc.concatenate(ts, axis=ax))

    # ------------------------------------------------------------ matmul and mc.fast
    def matmul(self, a):
        r, sa = self.rng, a.ref.shape
        if a.dt == "bool" or not sa:
            return None
        k = sa[-1]

        def ok(n):
            s = n.ref.shape
            return n.dt != "bool" and (len(s) == 1 and s[0] == k or len(s) >= 2 and s[-2] == k
                                       and bcast(sa[:-2], s[:-2]) is not None)
        c = [n for n in self.nodes if ok(n)]
        if c and r.random() < 0.5:
            b = c[r.integers(len(c))]
        else:
            s = (k,) if r.random() < 0.2 else (k, int(r.integers(1, 5)))
            if len(sa) >= 3 and r.random() < 0.5:
                s = sa[:-2] + s
            b = self.leaf(s, a.dt if r.random() < 0.7 else None)
        if b is None or b.dt == "bool":
            return None
        if r.random() < 0.5:
            a, b = b, a
        ct = H.expected_promotion(a.dt, b.dt)
        ea, eb = castE(a, ct), castE(b, ct)
        ra, rb = (a.ref.astype(F64), b.ref.astype(F64)) if ct in U else (a.ref, b.ref)
        try:
            ref = np.matmul(ra, rb)
        except ValueError:
            return None
        err = 0.0
        if ct in U:
            ea, eb = np.broadcast_to(ea, ra.shape), np.broadcast_to(eb, rb.shape)
            A, B = np.abs(ra), np.abs(rb)
            err = (A @ eb + ea @ B + ea @ eb + (ra.shape[-1] + 2) * U32 * (A @ B)
                   + 2 * U[ct] * np.abs(ref))
        if r.random() < 0.5:
            return self.add(ref, err, ct, f"{a.name} @ {b.name}", lambda: a.t @ b.t)
        return self.add(ref, err, ct, f"mc.matmul({a.name}, {b.name})",
                        lambda: mc.matmul(a.t, b.t))

    def vec(self, d, dts=("float32", "float16")):
        c = [n for n in self.nodes if n.ref.shape == (d,) and n.dt in U]
        if c and self.rng.random() < 0.5:
            return c[self.rng.integers(len(c))]
        return self.leaf((d,), dts[self.rng.integers(len(dts))])

    def fast(self, x, kind):
        """mc.softmax / mc.fast.log_softmax / rms_norm / layer_norm (kind 0-3)."""
        r = self.rng
        if x.dt == "bool" or x.ref.ndim == 0:
            return None
        nd, d, out = x.ref.ndim, x.ref.shape[-1], x.dt
        ps = [self.vec(d) if r.random() < 0.7 else None for _ in range(kind - 1)]
        for p in ps:
            out = H.expected_promotion(out, p.dt) if p else out
        out = out if out in U else "float32"
        xf, e, fl = x.ref.astype(F64), castE(x, out), K * U[out]
        if kind < 2:
            ax = int(r.integers(-nd, nd))
            m = xf.max(axis=ax, keepdims=True)
            s = np.exp(xf - m).sum(axis=ax, keepdims=True)
            dm, n, fn = np.max(e, axis=ax, keepdims=True), xf.shape[ax], ("softmax",
                                                                             "log_softmax")[kind]
            ref = xf - m - np.log(s)
            err = 2 * dm + fl * (np.abs(ref) + 1) + n * K * U32
            if kind == 0:
                ref = np.exp(xf - m) / s
                err = ref * np.expm1(2 * dm) + (K + n) * U[out] * ref
            mod = (mc, mc.fast)[r.integers(2)]
            return self.add(ref, err, out, f"mc.fast.{fn}({x.name}, axis={ax})",
                            lambda: getattr(mod, fn)(x.t, axis=ax))
        eps, em = (1e-5, 1e-3, 0.1)[r.integers(3)], np.max(e, axis=-1, keepdims=True)
        w, b = ps + [None] * (2 - len(ps))
        wr, br = (p.ref.astype(F64) if p else v for p, v in ((w, 1.0), (b, 0.0)))
        ew, eb = (castE(p, out) if p else 0.0 for p in (w, b))
        xc = xf if kind == 2 else xf - xf.mean(axis=-1, keepdims=True)
        sig = np.sqrt((xf * xf).mean(axis=-1, keepdims=True) + eps if kind == 2 else
                      xf.var(axis=-1, keepdims=True) + eps)
        if (sig - em).min() < 0.02:
            return None
        xn = xc / sig
        ref = xn * wr + br
        err = (np.abs(wr) * ((e + (kind - 2) * em) / (sig - em) + np.abs(xc) * em / (
            sig * (sig - em))) + ew * np.abs(xn) + eb + fl * (abs(ref) + abs(wr) + abs(br)))
        wn, bn = (p.name if p else None for p in (w, b))
        if kind == 2:
            return self.add(ref, err, out, f"mc.fast.rms_norm({x.name}, {wn}, {eps})",
                            lambda: mc.fast.rms_norm(x.t, w.t if w else None, eps))
        return self.add(ref, err, out, f"mc.fast.layer_norm({x.name}, {wn}, {bn}, eps={eps})",
                        lambda: mc.fast.layer_norm(x.t, w.t if w else None, b.t if b else None,
                                                   eps=eps))

    def composite(self, x):
        """Hand-written softmax / rms_norm / layer_norm, the patterns fusion rewrites."""
        r = self.rng
        if x.dt not in U or x.ref.ndim == 0:
            return None
        kind, eps = int(r.integers(3)), Sc((1e-5, 1e-2)[r.integers(2)])
        if kind == 0:
            ax = -1 if r.random() < 0.6 else int(r.integers(-x.ref.ndim, x.ref.ndim))
            m = self.reduce("max", x, ax, True)
            d = m and self.binop("subtract", x, m)
            e = d and self.unary("exp", d)
            s = e and self.reduce("sum", e, ax, True)
            return s and self.binop("divide", e, s)
        if kind == 1:
            sq = self.binop("multiply", x, x) if r.random() < 0.5 else self.unary("square", x)
            m = sq and self.reduce("mean", sq, -1, True)
            y = m and self.unary("rsqrt", self.binop("add", m, eps) or m)
            y = y and self.binop("multiply", x, y)
        else:
            mu = self.reduce("mean", x, -1, True)
            c = mu and self.binop("subtract", x, mu)
            v = c and self.reduce("var", x, -1, True)
            q = v and self.binop("add", v, eps)
            y = q and self.binop("multiply", c, self.unary("rsqrt", q) or q)
        if y and r.random() < 0.5:
            y = self.binop("multiply", y, self.vec(x.ref.shape[-1], (x.dt,)) or y)
        if y and kind == 2 and r.random() < 0.5:
            y = self.binop("add", y, self.vec(x.ref.shape[-1], (x.dt,)) or y)
        return y

    # ------------------------------------------------------------ generation and evaluation
    def step(self, kind):
        r = self.rng
        x = self.pick()
        if kind == "unary":
            return self.unary(UNARIES[r.integers(len(UNARIES))], x)
        if kind == "binary":
            ops = ARITH + sorted(CMP) + ["logical_and", "logical_or"]
            op = ops[r.integers(len(ops))]
            if op in CMP or op.startswith("logical"):
                x = self.pick(lambda n: not n.err.any() and (n.dt == "bool") == (op[0] == "l"))
                if x is None:
                    return None
            y = self.partner(x.ref.shape, ["bool"] if op[0] == "l" else None)
            return y and self.binop(op, *((x, y) if r.random() < 0.5 else (y, x)))
        if kind == "scalar":
            ops = ARITH + sorted(CMP)
            s, op = self.scalar(), ops[r.integers(len(ops))]
            return self.binop(op, *((x, s) if r.random() < 0.7 else (s, x)))
        if kind == "where":
            c = self.pick(lambda n: n.dt == "bool")
            if c is None:
                c = self.binop("greater", self.pick(lambda n: not n.err.any()), Sc(0))
            if c is None:
                return None
            a = self.partner(c.ref.shape)
            b = self.scalar() if r.random() < 0.3 else self.partner(c.ref.shape)
            return a and self.where(c, *((a, b) if r.random() < 0.5 else (b, a)))
        if kind == "reduce":
            op = REDUCE[r.integers(len(REDUCE))]
            ax = self.axes(x.ref.ndim, single=op.startswith("arg"))
            return self.reduce(op, x, ax, bool(r.random() < 0.5), int(r.integers(2)))
        if kind in ("layout", "matmul", "composite"):
            return getattr(self, kind)(x)
        if kind == "astype":
            return self.astype(x, ("float32", "float16", "int32", "bool")[r.integers(4)])
        return self.fast(x, int(r.integers(4))) if kind == "fast" else self.leaf()

    KINDS = ("unary", "binary", "scalar", "where", "reduce", "layout", "astype", "matmul",
             "fast", "composite", "leaf")
    PROBS = (.16, .18, .12, .05, .12, .16, .05, .05, .05, .03, .03)

    def build(self):
        r = self.rng
        n_ops = int(r.integers(5, 41))
        with np.errstate(all="ignore"):
            self.leaf()
            for _ in range(20 * n_ops):
                if len(self.nodes) - len(self.leaves) >= n_ops:
                    break
                self.step(self.KINDS[r.choice(len(self.KINDS), p=self.PROBS)])
        return self

    def mismatch(self, n, stage):
        """None if the held tensor of node ``n`` has its reference value, else the message."""
        got = np.asarray(n.t)
        ok = got.dtype == NP[n.dt] and got.shape == n.ref.shape
        if ok and n.dt in U:
            diff = np.abs(got.astype(F64) - n.ref)
            bad = ~(diff <= SAFETY * n.err)
        else:
            bad = got != n.ref if ok else np.ones((), bool)
        if bad.any():
            i = tuple(np.argwhere(bad)[0]) if bad.ndim else ()
            return (f"{n.name} wrong after {stage}: got {got.dtype} {got.shape}, expected {n.dt} "
                    f"{n.ref.shape}; at {i}: got {got[i] if ok else got!r}, "
                    f"ref {n.ref[i] if ok else ''}, bound {SAFETY * n.err[i] if ok else ''}")
        return None

    def check(self, n, stage):
        msg = self.mismatch(n, stage)
        if msg:
            got = np.asarray(n.t)
            raise AssertionError(msg + self.report(n) + f"\ngot:\n{got!r}\nref:\n{n.ref!r}")

    def evaluate(self):
        """Drop most intermediates, eval in a random order with random accessors, check every
        held tensor and that no user-held input was written to."""
        r = self.rng
        fusion = bool(r.integers(2))
        self.fusion = fusion
        mc.set_fusion(fusion)
        used = {id(i) for n in self.nodes for i in n.t._inputs}
        leaves = {id(lf[0]) for lf in self.leaves}
        roots = [n for n in self.nodes if id(n.t) not in used and id(n) not in leaves]
        keep = {id(n) for n in roots} | {id(n) for n in self.nodes if r.random() < (
            0.7 if id(n) in leaves else 0.3)}
        held = [n for n in self.nodes if id(n) in keep]
        for n in self.nodes:
            n.t = n.t if id(n) in keep else None
        strategy = int(r.integers(4))
        self.info = f"fusion={fusion} strategy={strategy} held={[n.name for n in held]}"
        acc = [lambda t: t.eval(), mc.eval, np.asarray, lambda t: t.numpy(),
               lambda t: t.tolist(), lambda t: t.item() if t.size == 1 else mc.eval([t])]
        order = [held[i] for i in r.permutation(len(held))]
        try:
            if strategy == 0:
                mc.eval(*[n.t for n in roots])
            elif strategy == 1:
                for n in order[:int(r.integers(len(order) + 1))]:
                    acc[r.integers(len(acc))](n.t)
                mc.eval([n.t for n in roots])
            elif strategy == 2:
                for n in roots:
                    acc[r.integers(len(acc))](n.t)
            else:
                mc.eval({"a": [n.t for n in order[::2]]}, tuple(n.t for n in order[1::2]))
        except Exception as e:
            raise AssertionError(f"eval raised {type(e).__name__}: {e}" + self.report(True)) from e
        for n in order:
            self.check(n, f"strategy {strategy}")
        for n, a, copy in self.leaves:
            if n is not None and not np.array_equal(a, copy):
                raise AssertionError(f"input {n.name} was written to" + self.report())
        return len(self.nodes) - len(self.leaves)


def run_graph(seed):
    return Graph(seed).build().evaluate()


def run_block(seeds):
    """Run every graph (a failure does not hide the next ones); returns (ops, failures)."""
    return run_seeds(seeds, run_graph)


@pytest.mark.parametrize("block", range(BLOCKS))
def test_random_graphs(block, device, fusion_restored):
    n = METAL_PER_BLOCK if device == "metal" else PER_BLOCK
    ops, fails = run_block(range(block * PER_BLOCK, block * PER_BLOCK + n))
    assert not fails, (f"{len(fails)} of {n} graphs failed, seeds {[f[0] for f in fails]}; "
                       f"first:\n{fails[0][1]}")
    assert ops >= 5 * n


def test_generator_covers_the_public_api(device):
    seen = set()
    for seed in range(10 ** 6, 10 ** 6 + 150):
        seen.update(ln.split(" = ", 1)[1].split("(")[0] for ln in Graph(seed).build().lines)
    text = " ".join(sorted(seen))
    for needle in ("mc.where", "mc.sum", "mc.argmax", "mc.var", "mc.logsumexp", "mc.reshape",
                   "mc.transpose", "mc.concatenate", "mc.stack", "mc.expand_dims", "mc.floor",
                   "mc.broadcast_to", "mc.matmul", "mc.astype", "mc.fast.softmax", "mc.exp",
                   "mc.fast.log_softmax", "mc.fast.rms_norm", "mc.fast.layer_norm",
                   "mc.power", "mc.remainder", "mc.logical_and", "mc.asarray"):
        assert needle in text, f"{needle} never generated; saw {text}"


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Replay random graphs by seed")
    ap.add_argument("seeds", type=int, nargs="+")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("-v", action="store_true", help="print the graph even when it passes")
    args = ap.parse_args()
    mc.set_default_device(args.device)
    for sd in args.seeds:
        gr = Graph(sd).build()
        gr.evaluate()
        print(f"seed {sd}: ok" + (gr.report() if args.v else ""))
