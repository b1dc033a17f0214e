"""The executor: collect pending nodes, run them, release buffers early, then commit.

One ``eval`` is: an iterative post-order walk from the requested tensors over *pending* nodes only;
a run in that order on the calling thread, releasing each intermediate buffer after its last use
and donating a dying input buffer to an elementwise output; and, only once everything succeeded, a
commit that stores buffers in the nodes that someone can still see and detaches their inputs. A
failure therefore leaves every node exactly as it was (pending, inputs intact).
"""
cimport cython
from cpython.ref cimport PyObject
from cpython.list cimport PyList_GET_ITEM
from libc.stdlib cimport malloc, free

from metalcandle._graph cimport (Tensor, OP_COUNT, FIRST_UNARY, LAST_BINARY, OP_WHERE, OP_CAST)
from metalcandle import _graph
from metalcandle cimport _fusion

from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_acquire_lock,
                               PyThread_release_lock, NOWAIT_LOCK, WAIT_LOCK)

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject *o)

# Planning (collect -> rewrite -> tables) writes scratch fields of the nodes (visit, slot) and
# reads them back; rewriting may run Python code, where another thread can take over. One lock
# makes planning one-at-a-time across threads; the run itself (NumPy kernels release the GIL,
# Metal waits) is outside it, reading only this plan's own tables.
cdef PyThread_type_lock _plan_lock = PyThread_allocate_lock()


cdef inline void _lock_plan() noexcept:
    if not PyThread_acquire_lock(_plan_lock, NOWAIT_LOCK):
        with nogil:
            PyThread_acquire_lock(_plan_lock, WAIT_LOCK)

cdef long long _epoch = 0
cdef list _impls = None
cdef object _ndarray = None, _asarray = None, _errstate = None
cdef object _fast_run = None
cdef object _metal = None        # the Metal backend, loaded when a metal node is first evaluated
cdef char _fast_ok[OP_COUNT]
cdef dict _stats = {"evals": 0, "nodes": 0, "donated": 0, "released": 0}


def _set_fast_path(int op, bint on):
    """Route primitive ``op`` through the C fast path for small CPU arrays (on, the default when it
    covers the op) or always through the backend table (off: tests that spy on that table)."""
    from metalcandle.backends import _cpu_fast
    if _impls is None:
        _load_backend()
    if not 0 <= op < OP_COUNT:
        raise ValueError(f"_set_fast_path: no primitive {op}")
    _fast_ok[op] = on and op in _cpu_fast.covered


def stats():
    """Counters since start: evals, nodes run, buffers donated/released early, pattern rewrites."""
    from metalcandle import _fusion as f
    return dict(_stats, **{"fusion_" + k: v for k, v in f._stats.items()})


cdef int _load_backend() except -1:
    cdef int i
    global _impls, _ndarray, _asarray, _errstate
    from metalcandle.backends import numpy_backend
    import numpy
    _impls = numpy_backend.IMPLS
    _ndarray = numpy.ndarray
    _asarray = numpy.asarray
    _errstate = numpy.errstate
    global _fast_run
    from metalcandle.backends import _cpu_fast
    for i in range(OP_COUNT):
        _fast_ok[i] = i in _cpu_fast.covered
    _fast_run = _cpu_fast.run
    if len(_impls) != OP_COUNT:
        raise ImportError("metalcandle: numpy backend table is out of step with the op list")
    return 0


cdef int _flatten(object x, list out) except -1:
    # Nested lists/tuples/dicts of tensors, as mx.eval accepts; other leaves are ignored.
    if type(x) is Tensor:
        out.append(x)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _flatten(v, out)
    elif isinstance(x, dict):
        for v in (<dict>x).values():
            _flatten(v, out)
    return 0


def eval(*args):
    """Compute every tensor in ``args`` (tensors or nested lists/tuples/dicts of them) in one pass.

    >>> import metalcandle as mc
    >>> a = mc.ones((2,)) + 1
    >>> b = a * 3
    >>> mc.eval(a, {"b": b})
    >>> b.tolist()
    [6.0, 6.0]
    """
    cdef list outs = []
    _flatten(args, outs)
    if outs:
        run(outs)


cdef list collect(list outs, long long ep):
    # Iterative post-order walk; a node's slot is -1 while its inputs are being visited.
    cdef list order = []
    cdef list stack = []
    cdef Tensor t, u
    for t in outs:
        if t.status == 0 and t.visit != ep:
            stack.append(t)
            while stack:
                u = <Tensor>stack[len(stack) - 1]
                if u.visit != ep:
                    u.visit = ep
                    u.slot = -1
                    for v in u.inputs:
                        if (<Tensor>v).status == 0 and (<Tensor>v).visit != ep:
                            stack.append(v)
                else:
                    stack.pop()
                    if u.slot == -1:
                        u.slot = len(order)
                        order.append(u)
    return order


@cython.boundscheck(False)
@cython.wraparound(False)
cdef run(list outs):
    if _impls is None:
        _load_backend()
    if len(outs) == 1 and _single(<Tensor>outs[0]):
        return
    _lock_plan()
    cdef bint locked = True
    try:
        _run(outs, &locked)
    finally:
        if locked:
            PyThread_release_lock(_plan_lock)


cdef bint _single(Tensor t) except -1:
    # One pending CPU node whose inputs are all evaluated (`(a + 1).item()`, a step's last op):
    # there is nothing to plan, rewrite, release or donate, so the C fast path runs it directly
    # (~0.3 us less per eval). Anything else, or a case the fast path declines, takes the
    # general route. The commit is the same as run's (docs/design.md, Threads).
    if t.status != 0 or t.device != 0 or not _fast_ok[t.op]:
        return False
    cdef list ins = []
    for v in t.inputs:
        if (<Tensor>v).status == 0:
            return False
        ins.append((<Tensor>v).data)
    r = _fast_run(t, t.op, ins, None)
    if r is None:
        return False
    _commit(t, r)
    _stats["evals"] += 1
    _stats["nodes"] += 1
    return True


cdef inline void _commit(Tensor t, object data):
    # The node holds its value from now on and lets go of its inputs (they can be freed).
    t.data = data
    t.status = 1
    t.inputs = ()


@cython.boundscheck(False)
@cython.wraparound(False)
cdef _run(list outs, bint *locked):
    global _epoch
    _epoch += 1
    cdef long long ep = _epoch
    cdef list order = collect(outs, ep)
    cdef Py_ssize_t n = len(order)
    if n == 0:
        return
    cdef Py_ssize_t i, k, total = 0
    cdef Tensor t, u
    cdef list srcs = order
    cdef list leaves
    cdef list guard = [None]          # the errstate context, once entered (see quiet())
    for i in range(n):
        total += len((<Tensor>order[i]).inputs) + 5   # + room for a shadow's extra inputs
    # Flat C tables: input slots (-1: already evaluated) per node, remaining uses, kept flags.
    cdef Py_ssize_t *start = <Py_ssize_t *>malloc((n + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t *slots = <Py_ssize_t *>malloc((total + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t *uses = <Py_ssize_t *>malloc(n * sizeof(Py_ssize_t))
    cdef char *kept = <char *>malloc(2 * n)
    if not start or not slots or not uses or not kept:
        free(start); free(slots); free(uses); free(kept)
        raise MemoryError("eval: cannot allocate the plan tables")
    cdef char *dead = kept + n
    try:
        _count_uses(order, n, uses)
        for i in range(n):
            kept[i] = 0
            dead[i] = 0
        for v in outs:
            if (<Tensor>v).status == 0:
                kept[(<Tensor>v).slot] = 1
        v = None
        # A node referenced from outside this plan (a user variable, another pending graph) keeps
        # its buffer: refs beyond the order list and in-plan consumers mean someone else holds it.
        for i in range(n):
            if Py_REFCNT(PyList_GET_ITEM(order, i)) > 1 + uses[i]:
                kept[i] = 1
        shadows = _fusion.rewrite(order, uses, kept)
        if shadows is not None:
            srcs = [order[i] if shadows[i] is None else shadows[i] for i in range(n)]
            _count_uses(srcs, n, uses)
            # Nodes nobody needs any more (the insides of a rewritten pattern) are skipped.
            for i in range(n - 1, -1, -1):
                if uses[i] == 0 and not kept[i]:
                    dead[i] = 1
                    for w in (<Tensor>srcs[i]).inputs:
                        if (<Tensor>w).status == 0:
                            uses[(<Tensor>w).slot] -= 1
        k = 0
        leaves = []
        for i in range(n):
            start[i] = k
            if dead[i]:
                continue
            for w in (<Tensor>srcs[i]).inputs:
                u = <Tensor>w
                if u.status == 0:
                    slots[k] = u.slot
                else:
                    # evaluated inputs are read now, so another thread committing a shared node
                    # while this plan runs cannot pull them away (docs/design.md, Threads)
                    slots[k] = -1 - len(leaves)
                    leaves.append(u.data)
                k += 1
        start[n] = k
        locked[0] = False
        PyThread_release_lock(_plan_lock)
        # IEEE semantics, as on the GPU: inf/nan results are values, not warnings. The NumPy
        # errstate (~0.9 us) is entered only once a NumPy implementation runs (quiet()), so an
        # eval served entirely by the C fast path does without it.
        try:
            vals = execute(srcs, order, n, start, slots, uses, kept, dead, leaves, guard)
            if _metal is not None:
                _metal.finish()     # one sync per eval, before anything is committed
        finally:
            if guard[0] is not None:
                guard[0].__exit__(None, None, None)
        for i in range(n):
            if kept[i]:
                _commit(<Tensor>order[i], vals[i])
        _stats["evals"] += 1
        _stats["nodes"] += n
    finally:
        free(start); free(slots); free(uses); free(kept)


cdef void _count_uses(list srcs, Py_ssize_t n, Py_ssize_t *uses):
    cdef Py_ssize_t i
    for i in range(n):
        uses[i] = 0
    for i in range(n):
        for v in (<Tensor>srcs[i]).inputs:
            if (<Tensor>v).status == 0:
                uses[(<Tensor>v).slot] += 1


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline int quiet(list guard) except -1:
    if guard[0] is None:
        ctx = _errstate(all="ignore")
        ctx.__enter__()
        guard[0] = ctx
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef list execute(list srcs, list order, Py_ssize_t n, Py_ssize_t *start, Py_ssize_t *slots,
                  Py_ssize_t *uses, char *kept, char *dead, list leaves, list guard):
    cdef list vals = [None] * n
    cdef list ins
    cdef Py_ssize_t i, k, s, donor
    cdef Tensor t, u
    cdef int op
    cdef object out, buf, r
    cdef list impls = _impls
    global _metal
    for i in range(n):
        if dead[i]:
            continue
        t = <Tensor>srcs[i]
        op = t.op
        if t.device != 0 and _metal is None:
            from metalcandle.backends import metal_backend
            _metal = metal_backend.get()
        ins = []
        donor = -1
        for k in range(start[i], start[i + 1]):
            s = slots[k]
            if s >= 0:
                ins.append(vals[s])
                if uses[s] == 1 and not kept[s]:
                    donor = s
            else:
                ins.append(leaves[-1 - s])
        out = None
        if donor >= 0 and (FIRST_UNARY <= op <= LAST_BINARY or op == OP_WHERE) and op != OP_CAST:
            u = <Tensor>order[donor]
            # The dying input's buffer becomes the output if it is a plain owner of its memory
            # that nothing else (no view, no other node) refers to, with our shape and dtype.
            if u.dtype == t.dtype and u.ndim == t.ndim and _same_shape(u, t) \
                    and Py_REFCNT(PyList_GET_ITEM(vals, donor)) == 2:
                buf = vals[donor]
                if buf.base is None and buf.flags.writeable:
                    out = buf
        try:
            r = None
            if t.device != 0:
                quiet(guard)
                r = (<object>(<list>_metal.impls)[op])(t, ins, out)
            else:
                if _fast_ok[op]:
                    r = _fast_run(t, op, ins, out)
                if r is None:
                    quiet(guard)
                    r = (<object>impls[op])(t, ins, out)
        except Exception as e:
            if hasattr(e, "add_note"):
                e.add_note(f"while evaluating {_graph.op_names[op]} -> {t.shape_tuple()} "
                           f"{_graph.DTYPES_LIST[t.dtype].name}; "
                           "every requested tensor is still pending and can be evaluated again")
            raise
        # NumPy returns scalars for 0-d results; nodes always hold arrays.
        vals[i] = r if type(r) is _ndarray else _asarray(r)
        if out is not None:
            _stats["donated"] += 1
        ins = None
        out = None
        buf = None
        r = None        # (a held result would block its donation to the next node)
        for k in range(start[i], start[i + 1]):
            s = slots[k]
            if s >= 0:
                uses[s] -= 1
                if uses[s] == 0 and not kept[s]:
                    vals[s] = None
                    _stats["released"] += 1
    return vals


cdef inline bint _same_shape(Tensor a, Tensor b) noexcept:
    cdef int i
    for i in range(a.ndim):
        if a.shape[i] != b.shape[i]:
            return False
    return True
