"""Pattern rewriting: hand-written composites become fused primitives at eval time.

The executor calls :func:`rewrite` on the collected pending nodes. A match never modifies the
user's nodes: it returns, for the anchor node (the pattern's output), a *shadow* node built with the
public ``mc.fast`` builders whose inputs are the pattern's leaves. The executor computes the shadow
in place of the anchor, and the inner nodes, now unused, are skipped. Inner nodes must be pending,
used only inside the pattern, and not visible from outside the plan (not requested or referenced),
so nobody can observe that they were never computed.

Patterns (see docs/fusion.md):
- LoRA:     (x @ a) @ b * s,  s * ((x @ a) @ b),  ((x @ a) * s) @ b       -> fast.lora
- softmax:  exp(x - max(x, ax, keepdims)) / sum(that exp, ax, keepdims)   -> softmax
- RMSNorm:  x * rsqrt(mean(x*x, -1, keepdims) + eps) [* w]  (also / sqrt) -> fast.rms_norm
- LayerNorm: (x - mean(x)) * rsqrt(var(x) + eps) [* w] [+ b] (also / sqrt, mean of squares)
Then, on the metal device only, elementwise regions (_fusion_regions.pxi) -> one program dispatch.
"""
from metalcandle._graph cimport (Tensor, OP_MUL, OP_DIV, OP_ADD, OP_SUB, OP_MATMUL, OP_EXP,
                                 OP_MAX, OP_SUM, OP_MEAN, OP_VAR, OP_RSQRT, OP_SQRT, OP_SQUARE,
                                 OP_POW, F_SCALAR, F_REFLECTED, F_KEEPDIMS, OP_RMS_NORM,
                                 OP_LAYER_NORM, OP_REGION, OP_WHERE, OP_COUNT, DT_BOOL,
                                 DT_FLOAT16, DT_BFLOAT16, DT_FLOAT32, new_node, MAXDIM,
                                 FIRST_UNARY, OP_ANY)

enabled = True     # mc.set_fusion(False) turns rewriting off (debugging)
_stats = {"rewrites": 0, "lora": 0, "softmax": 0, "rms_norm": 0, "layer_norm": 0,
          "regions": 0, "region_ops": 0, "plan_hits": 0, "plan_misses": 0}
_fast = None


cdef class _Ctx:
    cdef list order
    cdef Py_ssize_t *uses
    cdef char *kept
    cdef char *claimed

    cdef bint inner(self, object v, Py_ssize_t n_uses):
        # A pending node used exactly n_uses times in the plan, by the pattern only.
        cdef Tensor t = <Tensor>v
        if t.status != 0 or t.slot < 0 or t.slot >= len(self.order) or self.order[t.slot] is not t:
            return False
        return not self.kept[t.slot] and not self.claimed[t.slot] and self.uses[t.slot] == n_uses

    cdef void claim(self, object v):
        self.claimed[(<Tensor>v).slot] = 1


cdef inline int opn(Tensor t) noexcept:
    # The primitive of a node the matchers may look inside: an evaluated node has dropped its
    # inputs, so it is a leaf to them (-1), whatever op computed it.
    return t.op if t.status == 0 else -1


cdef inline bint is_op(object v, int op):
    return opn(<Tensor>v) == op


cdef inline bint tt(Tensor t):
    # binary node with two tensor operands
    return not (t.flags & F_SCALAR)


cdef bint last_axis_keep(Tensor r, Tensor x):
    return (r.flags & F_KEEPDIMS) and r.aux == (x.ndim - 1,)


cdef object match_lora(_Ctx c, Tensor t):
    cdef Tensor p, h
    if opn(t) == OP_MUL and (t.flags & F_SCALAR) and type(t.scalar) is not bool:
        p = <Tensor>t.inputs[0]
        if opn(p) == OP_MATMUL and c.inner(p, 1):
            h = <Tensor>p.inputs[0]
            if opn(h) == OP_MATMUL and c.inner(h, 1) and (<Tensor>h.inputs[1]).ndim == 2 \
                    and (<Tensor>p.inputs[1]).ndim == 2:
                c.claim(p); c.claim(h)
                _stats["lora"] += 1
                return _fast.lora(h.inputs[0], h.inputs[1], p.inputs[1], float(t.scalar))
    if opn(t) == OP_MATMUL and (<Tensor>t.inputs[1]).ndim == 2:
        p = <Tensor>t.inputs[0]
        if opn(p) == OP_MUL and (p.flags & F_SCALAR) and type(p.scalar) is not bool and c.inner(p, 1):
            h = <Tensor>p.inputs[0]
            if opn(h) == OP_MATMUL and c.inner(h, 1) and (<Tensor>h.inputs[1]).ndim == 2:
                c.claim(p); c.claim(h)
                _stats["lora"] += 1
                return _fast.lora(h.inputs[0], h.inputs[1], t.inputs[1], float(p.scalar))
    return None


cdef object match_softmax(_Ctx c, Tensor t):
    cdef Tensor e, s, z, m, x
    if opn(t) != OP_DIV or not tt(t):
        return None
    e, s = <Tensor>t.inputs[0], <Tensor>t.inputs[1]
    if opn(e) != OP_EXP or opn(s) != OP_SUM or s.inputs[0] is not e or not (s.flags & F_KEEPDIMS):
        return None
    if not (c.inner(e, 2) and c.inner(s, 1)):
        return None
    z = <Tensor>e.inputs[0]
    if opn(z) != OP_SUB or not tt(z) or not c.inner(z, 1):
        return None
    x, m = <Tensor>z.inputs[0], <Tensor>z.inputs[1]
    if opn(m) != OP_MAX or m.inputs[0] is not x or not (m.flags & F_KEEPDIMS) or not c.inner(m, 1):
        return None
    if len(m.aux) != 1 or m.aux != s.aux:
        return None
    c.claim(e); c.claim(s); c.claim(z); c.claim(m)
    _stats["softmax"] += 1
    return _fast.softmax(x, m.aux[0])


cdef object square_of(_Ctx c, object v, Tensor x):
    # v == x*x / square(x) / x**2, used once
    cdef Tensor q = <Tensor>v
    if not c.inner(q, 1):
        return False
    if opn(q) == OP_SQUARE and q.inputs[0] is x:
        return True
    if opn(q) == OP_MUL and tt(q) and q.inputs[0] is x and q.inputs[1] is x:
        return True
    return opn(q) == OP_POW and (q.flags & F_SCALAR) and not (q.flags & F_REFLECTED) \
        and q.scalar == 2 and q.inputs[0] is x


cdef object inv_std(_Ctx c, Tensor t):
    # t = x * rsqrt(A) | rsqrt(A) * x | x / sqrt(A), with A = stat + eps: (x, rsqrt/sqrt node, A)
    cdef Tensor a, b, r, add
    if (opn(t) != OP_MUL and opn(t) != OP_DIV) or not tt(t):
        return None
    a, b = <Tensor>t.inputs[0], <Tensor>t.inputs[1]
    if opn(t) == OP_MUL:
        if opn(b) == OP_RSQRT:
            r = b
        elif opn(a) == OP_RSQRT:
            r, a = a, b
        else:
            return None
    elif opn(t) == OP_DIV and opn(b) == OP_SQRT:
        r = b
    else:
        return None
    if not c.inner(r, 1):
        return None
    add = <Tensor>r.inputs[0]
    if opn(add) != OP_ADD or not (add.flags & F_SCALAR) or type(add.scalar) is bool \
            or not c.inner(add, 1) or not add.scalar >= 0:
        return None
    return a, r, add


cdef int square_refs(object v):
    # how many times the squared operand is referenced by the square node
    return 2 if opn(<Tensor>v) == OP_MUL else 1


cdef object match_norm(_Ctx c, Tensor t):
    # anchor: [ADD(., bias)] of [MUL(., w)] of core, core = x * rsqrt(stat + eps) or x / sqrt(...)
    cdef Tensor node = t, w = None, bias = None, x = None, r = None, add, stat, xc, x0, mu
    cdef list wrappers = []
    if opn(node) == OP_ADD and tt(node) and (<Tensor>node.inputs[1]).ndim == 1 \
            and c.inner(node.inputs[0], 1):
        bias = <Tensor>node.inputs[1]
        node = <Tensor>node.inputs[0]
        wrappers.append(node)
    if opn(node) == OP_MUL and tt(node) and (<Tensor>node.inputs[1]).ndim == 1 \
            and (is_op(node.inputs[0], OP_MUL) or is_op(node.inputs[0], OP_DIV)) \
            and c.inner(node.inputs[0], 1):
        w = <Tensor>node.inputs[1]
        node = <Tensor>node.inputs[0]
        wrappers.append(node)
    found = inv_std(c, node)
    if found is None:
        return None
    x, r, add = found
    stat = <Tensor>add.inputs[0]
    if (opn(stat) != OP_MEAN and opn(stat) != OP_VAR) or not c.inner(stat, 1) or x.ndim == 0:
        return None
    D = x.shape[x.ndim - 1]
    for p in (w, bias):
        if p is not None and (<Tensor>p).shape[0] != D:
            return None
    if opn(stat) == OP_MEAN and bias is None and last_axis_keep(stat, x) \
            and square_of(c, stat.inputs[0], x):
        for v in wrappers:
            c.claim(v)
        c.claim(r); c.claim(add); c.claim(stat); c.claim(stat.inputs[0])
        _stats["rms_norm"] += 1
        return _fast.rms_norm(x, w, float(add.scalar))
    # LayerNorm: x is the centred xc = x0 - mean(x0)
    xc = x
    if opn(xc) != OP_SUB or not tt(xc):
        return None
    x0, mu = <Tensor>xc.inputs[0], <Tensor>xc.inputs[1]
    if opn(mu) != OP_MEAN or mu.inputs[0] is not x0 or not last_axis_keep(mu, x0) or not c.inner(mu, 1):
        return None
    if not last_axis_keep(stat, x0):
        return None
    if opn(stat) == OP_VAR:
        if stat.inputs[0] is not x0 or stat.scalar or not c.inner(xc, 1):
            return None
    elif not (square_of(c, stat.inputs[0], xc) and c.inner(xc, 1 + square_refs(stat.inputs[0]))):
        return None
    for v in wrappers:
        c.claim(v)
    for v in (r, add, stat, xc, mu):
        c.claim(v)
    if opn(stat) == OP_MEAN:
        c.claim(stat.inputs[0])
    _stats["layer_norm"] += 1
    return _fast.layer_norm(x0, w, bias, float(add.scalar))


cdef _Ctx new_ctx(list order, Py_ssize_t *uses, char *kept, bytearray claimed):
    cdef _Ctx c = _Ctx.__new__(_Ctx)
    c.order = order
    c.uses = uses
    c.kept = kept
    c.claimed = claimed
    return c


cdef list rewrite(list order, Py_ssize_t *uses, char *kept):
    """Shadow node per plan index (None: computed as written), or None for no rewrite."""
    cdef Py_ssize_t n = len(order), i
    cdef bint on_metal = False
    if not enabled or n < 2:
        return None
    for i in range(n):
        if (<Tensor>order[i]).device != 0:
            on_metal = True
            break
    if not on_metal:
        return plan(order, uses, kept, False)
    key = plan_key(order, uses, kept)
    if key is not None:
        cached = _plans.get(key)
        if cached is not None:
            _stats["plan_hits"] += 1
            return replay(order, cached)
        _stats["plan_misses"] += 1
    before = dict(_stats)
    shadows = plan(order, uses, kept, True)
    if key is not None:
        if len(_plans) >= PLAN_CACHE_MAX:
            _plans.clear()
        delta = {k: v - before[k] for k, v in _stats.items() if v != before[k]}
        delta.pop("plan_misses", None)
        _plans[key] = record(order, shadows or [], delta)
    return shadows


cdef list plan(list order, Py_ssize_t *uses, char *kept, bint on_metal):
    global _fast
    cdef Py_ssize_t n = len(order), i
    cdef Tensor t
    cdef list shadows = None
    cdef _Ctx c = None
    cdef bytearray claimed = None
    for i in range(n - 1, -1, -1):
        t = <Tensor>order[i]
        if t.op != OP_MUL and t.op != OP_DIV and t.op != OP_ADD and t.op != OP_MATMUL:
            continue
        if shadows is None:
            if _fast is None:
                from metalcandle import fast
                _fast = fast
            claimed = bytearray(n)
            c = new_ctx(order, uses, kept, claimed)
            shadows = [None] * n
        if c.claimed[i]:
            continue
        s = match_lora(c, t)
        if s is None:
            s = match_softmax(c, t)
        if s is None and (t.op == OP_MUL or t.op == OP_DIV or t.op == OP_ADD):
            s = match_norm(c, t)
        if s is not None:
            if (<Tensor>s).dtype != t.dtype or (<Tensor>s).shape_tuple() != t.shape_tuple():
                continue   # the composite promoted differently; compute it as written
            (<Tensor>s).device = t.device
            c.claimed[i] = 1
            shadows[i] = s
            _stats["rewrites"] += 1
    if on_metal:
        if shadows is None:
            claimed = bytearray(n)
            c = new_ctx(order, uses, kept, claimed)
            shadows = [None] * n
        find_regions(c, order, shadows)
    return shadows


include "_fusion_regions.pxi"
include "_fusion_plans.pxi"


def set_fusion(flag):
    """Turn automatic pattern rewriting on or off (for debugging; on by default).

    >>> import metalcandle as mc
    >>> mc.set_fusion(False); mc.set_fusion(True)
    """
    global enabled
    enabled = bool(flag)
