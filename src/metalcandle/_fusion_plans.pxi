# The plan cache (included by _fusion.pyx).
#
# A training or decoding step rebuilds the same graph every iteration. The rewrite decisions
# (which patterns match, which elementwise regions form and their register programs) depend only
# on the plan's structure: per node its primitive, dtype, device, shape, flags, params, how many
# plan nodes use it, whether it is observable, and which nodes/evaluated tensors feed it. That
# structure is the key; the value is a recipe per shadow node (its primitive, params and inputs
# as plan positions), so a hit rebuilds the shadows without matching or generating anything.
#
# Used for plans with metal nodes, where planning (region growth + program generation) costs
# ~0.8 us per node; on the CPU, matching costs ~15 ns per node, less than computing the key.
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t
from cpython.bytes cimport PyBytes_FromStringAndSize

PLAN_CACHE_MAX = 256
cdef dict _plans = {}


cdef object plan_key(list order, Py_ssize_t *uses, char *kept):
    """A hashable structural key of the plan, or None (a param that cannot be hashed)."""
    cdef Py_ssize_t n = len(order), i, k = 0, cap = 0
    cdef Tensor t, u
    cdef int d
    for i in range(n):
        cap += 8 + (<Tensor>order[i]).ndim + len((<Tensor>order[i]).inputs) * (4 + MAXDIM)
    cdef int64_t *buf = <int64_t *>malloc(cap * sizeof(int64_t))
    if not buf:
        raise MemoryError("eval: cannot allocate the plan key")
    cdef list params = []
    cdef dict leaves = {}        # evaluated inputs by identity: the matchers compare identities
    try:
        for i in range(n):
            t = <Tensor>order[i]
            buf[k] = t.op; buf[k + 1] = t.dtype; buf[k + 2] = t.device; buf[k + 3] = t.flags
            buf[k + 4] = kept[i]; buf[k + 5] = uses[i]; buf[k + 6] = len(t.inputs)
            buf[k + 7] = t.ndim
            k += 8
            for d in range(t.ndim):
                buf[k] = t.shape[d]
                k += 1
            for v in t.inputs:
                u = <Tensor>v
                if u.status == 0:
                    buf[k] = u.slot
                    k += 1
                    continue
                j = leaves.get(id(u))
                if j is not None:
                    buf[k] = -1 - <Py_ssize_t>j
                    k += 1
                    continue
                j = len(leaves)
                leaves[id(u)] = j
                buf[k] = -1 - <Py_ssize_t>j; buf[k + 1] = u.dtype; buf[k + 2] = u.ndim
                k += 3
                for d in range(u.ndim):
                    buf[k] = u.shape[d]
                    k += 1
            if FIRST_UNARY <= t.op <= OP_ANY:       # elementwise compute dtype, reduction axes
                params.append(t.aux)
            if t.scalar is not None:
                params.append((i, t.scalar, type(t.scalar) is bool))
        key = (PyBytes_FromStringAndSize(<char *>buf, k * sizeof(int64_t)), tuple(params))
    finally:
        free(buf)
    try:
        hash(key)
    except TypeError:
        return None
    return key


cdef tuple record(list order, list shadows, dict delta):
    """The recipe of each shadow: (plan index, op, dtype, shape, aux, scalar, flags, input refs),
    an input ref being (j, -1) for order[j] or (j, p) for order[j].inputs[p]."""
    cdef dict where = {}
    cdef Py_ssize_t j, p
    cdef Tensor s
    for j in range(len(order)):
        where[id(order[j])] = (j, -1)
    for j in range(len(order)):
        p = 0
        for v in (<Tensor>order[j]).inputs:
            where.setdefault(id(v), (j, p))
            p += 1
    recipes = []
    for i, v in enumerate(shadows):
        if v is None:
            continue
        s = <Tensor>v
        refs = tuple(where[id(w)] for w in s.inputs)
        recipes.append((i, s.op, s.dtype, s.shape_tuple(), s.aux, s.scalar, s.flags, refs))
    return (tuple(recipes), delta)


cdef list replay(list order, tuple plan):
    cdef list shadows = [None] * len(order)
    cdef Tensor s, t
    cdef Py_ssize_t shp[MAXDIM]
    cdef int d
    recipes, delta = plan
    for i, op, dtype, shape, aux, scalar, flags, refs in recipes:
        ins = tuple(order[j] if p < 0 else (<Tensor>order[j]).inputs[p] for j, p in refs)
        for d in range(len(shape)):
            shp[d] = shape[d]
        t = <Tensor>order[i]
        s = new_node(op, dtype, ins, len(shape), shp)
        s.aux = aux
        s.scalar = scalar
        s.flags = flags
        s.device = t.device
        shadows[i] = s
    for name, v in delta.items():
        _stats[name] += v
    return shadows


def clear_plans():
    """Forget every cached plan (tests; the cache is bounded and needs no care otherwise)."""
    _plans.clear()
