# Elementwise regions (included by _fusion.pyx).
#
# On the metal device, a connected set of float elementwise nodes that nobody outside the set
# observes becomes one OP_REGION node: a small register program run by ONE shipped kernel
# (shaders/program.metal), so any region structure is one dispatch and compiles nothing new.
# The program's opcodes are shared with the shader (a test compares the two tables).

# graph op name -> opcode of shaders/program.metal (0 LOAD and 1 CONST are not graph ops)
REGION_OPCODES = {
    "negative": 2, "abs": 3, "sign": 4, "square": 5, "sqrt": 6, "rsqrt": 7, "reciprocal": 8,
    "exp": 9, "log": 10, "sin": 11, "cos": 12, "tanh": 13, "sigmoid": 14, "relu": 15,
    "silu": 16, "gelu": 17, "gelu_approx": 18, "floor": 19, "ceil": 20, "add": 21,
    "subtract": 22, "multiply": 23, "divide": 24, "maximum": 25, "minimum": 26, "power": 27,
    "where": 28,
}
RC_LOAD, RC_CONST = 0, 1
REGION_MAX_INPUTS = 24
REGION_MAX_CODE = 96
REGION_MAX_CONSTS = 32
REGION_REGS = 32
REGION_MAX_OPS = 40     # + 24 loads + 32 constants <= 96 instructions

cdef signed char _rcode[OP_COUNT]


cdef _init_rcode():
    from metalcandle._graph import op_names
    cdef int i
    for i in range(OP_COUNT):
        _rcode[i] = REGION_OPCODES.get(op_names[i], -1)


_init_rcode()


cdef bint region_op(Tensor t, int dt):
    # t computes in float dtype dt from operands of dtype dt (a where's condition: bool)
    cdef int k = 0
    if _rcode[t.op] < 0 or t.dtype != dt or t.device == 0:
        return False
    if not isinstance(t.aux, int) or <int>t.aux != dt:
        return False
    if (t.flags & F_SCALAR) and not isinstance(t.scalar, (int, float)):
        return False
    for v in t.inputs:
        if t.op == OP_WHERE and k == 0:
            if (<Tensor>v).dtype != DT_BOOL:
                return False
        elif (<Tensor>v).dtype != dt:
            return False
        k += 1
    return True


cdef class _Region:
    cdef list code, consts, externals, free
    cdef dict ext_left, ext_reg, mem_reg

    cdef int alloc(self) except -2:
        if not self.free:
            return -1
        return self.free.pop()

    cdef int operand(self, object v, set members, list temps) except -2:
        cdef int r
        key = id(v)
        if key in members:
            r = self.mem_reg.pop(key)
            temps.append(r)
            return r
        if key not in self.ext_reg:
            r = self.alloc()
            if r < 0:
                return -1
            self.code.append((RC_LOAD, r, self.ext_index(v), 0, 0))
            self.ext_reg[key] = r
        r = self.ext_reg[key]
        self.ext_left[key] -= 1
        if self.ext_left[key] == 0:
            temps.append(r)
        return r

    cdef int ext_index(self, object v):
        cdef int i
        for i in range(len(self.externals)):
            if self.externals[i] is v:
                return i
        self.externals.append(v)
        return len(self.externals) - 1


cdef bint fits(Tensor u, Tensor root) noexcept:
    # A member computes once per output element: it may broadcast into the root's shape if that
    # repeats its work at most 8 times (cheap next to a separate dispatch and a memory round trip).
    cdef int i, off = root.ndim - u.ndim
    if off < 0 or root.size > 8 * u.size:
        return False
    for i in range(u.ndim):
        if u.shape[i] != root.shape[off + i] and u.shape[i] != 1:
            return False
    return True


cdef object grow_region(_Ctx c, Tensor root, list shadows):
    """The region node computing ``root``, or None. Members: root plus inputs absorbed while
    they are eligible, pending, used once (by the region) and unobserved, within the kernel's
    limits (inputs, constants, instructions)."""
    cdef int dt = root.dtype
    cdef list members = [root], stack = [root]
    cdef set mids = {id(root)}
    cdef dict ext_uses = {}
    cdef Py_ssize_t n_consts = (root.flags & F_SCALAR) != 0
    cdef Py_ssize_t pending = len(root.inputs)     # input edges not yet looked at
    cdef Tensor m, u
    while stack:
        m = <Tensor>stack.pop()
        for v in m.inputs:
            u = <Tensor>v
            pending -= 1
            # (every unexamined edge may still become an input: the bound below is safe)
            if id(u) not in mids and len(members) < REGION_MAX_OPS and region_op(u, dt) \
                    and fits(u, root) and c.inner(u, 1) and shadows[u.slot] is None \
                    and len(ext_uses) + pending + len(u.inputs) <= REGION_MAX_INPUTS \
                    and n_consts + ((u.flags & F_SCALAR) != 0) <= REGION_MAX_CONSTS:
                members.append(u)
                mids.add(id(u))
                stack.append(u)
                pending += len(u.inputs)
                n_consts += (u.flags & F_SCALAR) != 0
            else:
                ext_uses[id(u)] = ext_uses.get(id(u), 0) + 1
    if len(members) < 2 or len(ext_uses) > REGION_MAX_INPUTS:
        return None
    members.sort(key=lambda t: (<Tensor>t).slot)     # a topological order
    cdef _Region g = _Region.__new__(_Region)
    g.code, g.consts, g.externals = [], [], []
    g.free = list(range(REGION_REGS - 1, -1, -1))
    g.ext_left, g.ext_reg, g.mem_reg = ext_uses, {}, {}
    cdef list temps, ops
    cdef int r, dst
    for v in members:
        m = <Tensor>v
        temps, ops = [], []
        for w in m.inputs:
            r = g.operand(w, mids, temps)
            if r < 0:
                return None
            ops.append(r)
        if m.flags & F_SCALAR:
            r = g.alloc()
            if r < 0:
                return None
            g.code.append((RC_CONST, r, len(g.consts), 0, 0))
            g.consts.append(float(m.scalar))
            temps.append(r)
            if m.flags & F_REFLECTED:
                ops.insert(0, r)
            else:
                ops.append(r)
        g.free.extend(temps)
        dst = g.alloc()
        if dst < 0:
            return None     # more than 32 values live at once: the ops run as written
        ops += [0] * (3 - len(ops))
        g.code.append((_rcode[m.op], dst, ops[0], ops[1], ops[2]))
        g.mem_reg[id(m)] = dst
    if len(g.code) > REGION_MAX_CODE:
        return None
    for v in members[:-1]:
        c.claim(v)
    cdef Tensor s = new_node(OP_REGION, dt, tuple(g.externals), root.ndim, root.shape)
    s.device = root.device
    s.aux = (b"".join(bytes(ins) + b"\0\0\0" for ins in g.code), tuple(g.consts))
    _stats["regions"] += 1
    _stats["region_ops"] += len(members)
    return s


cdef list find_regions(_Ctx c, list order, list shadows):
    cdef Py_ssize_t i
    cdef Tensor t
    for i in range(len(order) - 1, -1, -1):
        t = <Tensor>order[i]
        if t.device == 0 or shadows[i] is not None or c.claimed[i] or _rcode[t.op] < 0:
            continue
        if t.dtype != DT_FLOAT32 and t.dtype != DT_FLOAT16 and t.dtype != DT_BFLOAT16:
            continue
        if not region_op(t, t.dtype):
            continue
        s = grow_region(c, t, shadows)
        if s is not None:
            c.claimed[i] = 1
            shadows[i] = s
    return shadows
