# Matmul and layout builders (views on the CPU). Included by _graph.pyx.

def matmul(a, b):
    """Matrix product with NumPy's rules: batch dims broadcast; 1-D operands are promoted and
    the added dimension removed.

    >>> import metalcandle as mc
    >>> (mc.ones((2, 3)) @ mc.ones((3,))).tolist()
    [3.0, 3.0]
    """
    cdef Tensor x = as_tensor(a, "matmul")
    cdef Tensor y = as_tensor(b, "matmul")
    cdef Py_ssize_t shp[MAXDIM]
    cdef int nd = 0, i, bx, by, nb
    cdef Py_ssize_t n, k1, k2, m, dx, dy
    if x.ndim == 0 or y.ndim == 0:
        raise ShapeError(f"matmul: operands must have at least 1 dim, got {desc(x)} @ {desc(y)}")
    k1 = x.shape[x.ndim - 1]
    k2 = y.shape[y.ndim - 2] if y.ndim >= 2 else y.shape[0]
    if k1 != k2:
        raise ShapeError(f"matmul: inner dimensions differ: {desc(x)} @ {desc(y)} ({k1} != {k2})")
    bx = x.ndim - 2 if x.ndim > 2 else 0
    by = y.ndim - 2 if y.ndim > 2 else 0
    nb = bx if bx > by else by
    for i in range(nb):
        dx = x.shape[bx - nb + i] if bx - nb + i >= 0 else 1
        dy = y.shape[by - nb + i] if by - nb + i >= 0 else 1
        if dx != dy and dx != 1 and dy != 1:
            raise BroadcastError(f"matmul: batch dimensions do not broadcast: {desc(x)} @ {desc(y)}")
        shp[nd] = dx if dy == 1 else dy
        nd += 1
    if x.ndim >= 2:
        shp[nd] = x.shape[x.ndim - 2]
        nd += 1
    if y.ndim >= 2:
        shp[nd] = y.shape[y.ndim - 1]
        nd += 1
    check_shape(nd, shp, "matmul")
    cdef int dt = PROMOTE[x.dtype][y.dtype]
    cdef Tensor t = new_node(OP_MATMUL, dt, (x, y), nd, shp)
    t.aux = dt
    return t


def reshape(x, shape):
    """New shape with the same elements; one entry may be -1 (inferred).

    >>> import metalcandle as mc
    >>> mc.arange(6).reshape(2, -1).shape
    (2, 3)
    """
    cdef Tensor a = as_tensor(x, "reshape")
    cdef Py_ssize_t shp[MAXDIM]
    cdef int nd, i, infer = -1
    cdef Py_ssize_t known = 1
    if isinstance(shape, int):
        shape = (shape,)
    try:
        seq = tuple(shape)
    except TypeError:
        raise ArgumentTypeError(f"reshape: shape must be an int or a sequence of ints, got {shape!r}") from None
    nd = len(seq)
    if nd > MAXDIM:
        raise ShapeError(f"reshape: {nd} dims exceed the maximum of {MAXDIM}")
    for i in range(nd):
        s = seq[i]
        if not isinstance(s, int) or type(s) is bool:
            raise ArgumentTypeError(f"reshape: shape entries must be ints, got {s!r}")
        if s == -1:
            if infer >= 0:
                raise ShapeError(f"reshape: only one dimension can be -1, got {seq} for {desc(a)}")
            infer = i
            shp[i] = 1
        elif s < 0:
            raise ShapeError(f"reshape: invalid dimension {s} in {seq} for {desc(a)}")
        elif s > MAX_ELEMENTS:
            raise ShapeError(f"reshape: dimension {s} in {seq} is too large for {desc(a)}")
        else:
            shp[i] = s
    check_shape(nd, shp, "reshape")
    for i in range(nd):
        known *= shp[i]
    if infer >= 0:
        if known == 0 or a.size % known:
            raise ShapeError(f"reshape: cannot reshape {desc(a)} ({a.size} elements) into {seq}")
        shp[infer] = a.size // known
    elif known != a.size:
        raise ShapeError(f"reshape: cannot reshape {desc(a)} ({a.size} elements) into {seq}")
    if nd == a.ndim and all_equal(nd, shp, a.shape):
        return a
    return new_node(OP_RESHAPE, a.dtype, (a,), nd, shp)


cdef bint all_equal(int nd, const Py_ssize_t *p, const Py_ssize_t *q) noexcept:
    cdef int i
    for i in range(nd):
        if p[i] != q[i]:
            return False
    return True


def transpose(x, axes=None):
    """Permute dimensions (default: reverse them)."""
    cdef Tensor a = as_tensor(x, "transpose")
    cdef Py_ssize_t shp[MAXDIM]
    cdef int i
    if axes is None:
        perm = tuple(range(a.ndim - 1, -1, -1))
    else:
        try:
            items = tuple(axes)
        except TypeError:
            raise ArgumentTypeError(f"transpose: axes must be a sequence of ints, got {axes!r}") from None
        if len(items) != a.ndim:
            raise AxisError(f"transpose: axes {items} do not match {desc(a)}")
        perm = tuple([norm_axis(v, a.ndim, "transpose", a) for v in items])
        if len(set(perm)) != a.ndim:
            raise AxisError(f"transpose: repeated axis in {items} for {desc(a)}")
    if perm == tuple(range(a.ndim)):
        return a
    for i in range(a.ndim):
        shp[i] = a.shape[<int>perm[i]]
    cdef Tensor t = new_node(OP_TRANSPOSE, a.dtype, (a,), a.ndim, shp)
    t.aux = perm
    return t


def swapaxes(x, axis1, axis2):
    """Exchange two axes."""
    cdef Tensor a = as_tensor(x, "swapaxes")
    i = norm_axis(axis1, a.ndim, "swapaxes", a)
    j = norm_axis(axis2, a.ndim, "swapaxes", a)
    perm = list(range(a.ndim))
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


def moveaxis(x, source, destination):
    """Move one axis to a new position, keeping the order of the others."""
    cdef Tensor a = as_tensor(x, "moveaxis")
    s = norm_axis(source, a.ndim, "moveaxis", a)
    d = norm_axis(destination, a.ndim, "moveaxis", a)
    perm = [i for i in range(a.ndim) if i != s]
    perm.insert(d, s)
    return transpose(a, perm)


def broadcast_to(x, shape):
    """Broadcast to ``shape`` (NumPy rules; a view on the CPU)."""
    cdef Tensor a = as_tensor(x, "broadcast_to")
    cdef Py_ssize_t shp[MAXDIM]
    cdef int nd = parse_shape(shape, shp, "broadcast_to")
    cdef int i, j
    if nd < a.ndim:
        raise BroadcastError(f"broadcast_to: cannot broadcast {desc(a)} to {fmt_shape(nd, shp)}")
    for i in range(a.ndim):
        j = nd - a.ndim + i
        if a.shape[i] != shp[j] and a.shape[i] != 1:
            raise BroadcastError(f"broadcast_to: cannot broadcast {desc(a)} to {fmt_shape(nd, shp)}")
    if nd == a.ndim and all_equal(nd, shp, a.shape):
        return a
    return new_node(OP_BROADCAST, a.dtype, (a,), nd, shp)


def expand_dims(x, axis):
    """Insert size-1 dimensions at ``axis`` (int or tuple), as in NumPy."""
    cdef Tensor a = as_tensor(x, "expand_dims")
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    nd = a.ndim + len(axes)
    try:
        pos = sorted(norm_axis(v, nd, "expand_dims") for v in axes)
    except AxisError as e:
        raise AxisError(f"{e} (the result of expand_dims on {desc(a)})") from None
    if len(set(pos)) != len(pos):
        raise AxisError(f"expand_dims: repeated axis in {axis!r} for {desc(a)}")
    shape = list(a.shape_tuple())
    for p in pos:
        shape.insert(p, 1)
    return reshape(a, shape)


def squeeze(x, axis=None):
    """Remove size-1 dimensions (all of them, or those in ``axis``)."""
    cdef Tensor a = as_tensor(x, "squeeze")
    shape = a.shape_tuple()
    if axis is None:
        return reshape(a, [s for s in shape if s != 1])
    axes = norm_axes(axis, a.ndim, "squeeze", a)
    for i in axes:
        if shape[i] != 1:
            raise ShapeError(f"squeeze: axis {i} of {desc(a)} has size {shape[i]}, not 1")
    return reshape(a, [s for i, s in enumerate(shape) if i not in axes])


def flatten(x):
    """Collapse to one dimension."""
    return reshape(x, (-1,))


def concatenate(arrays, axis=0):
    """Join tensors along an existing axis; dtypes are promoted.

    >>> import metalcandle as mc
    >>> mc.concatenate([mc.ones((1, 2)), mc.zeros((2, 2))]).shape
    (3, 2)
    """
    cdef list ts = [as_tensor(v, "concatenate") for v in arrays]
    cdef Tensor first, t
    cdef Py_ssize_t shp[MAXDIM]
    cdef int ax, i, dt
    if not ts:
        raise ArgumentError("concatenate: needs at least one tensor")
    first = ts[0]
    if first.ndim == 0:
        raise ShapeError("concatenate: 0-d tensors cannot be concatenated")
    ax = norm_axis(axis, first.ndim, "concatenate", first)
    dt = first.dtype
    for i in range(first.ndim):
        shp[i] = first.shape[i]
    shp[ax] = 0
    for t in ts:
        if t.ndim != first.ndim:
            raise ShapeError("concatenate: all tensors need the same number of dims, got "
                             + ", ".join(desc(<Tensor>v) for v in ts))
        for i in range(first.ndim):
            if i != ax and t.shape[i] != first.shape[i]:
                raise ShapeError(f"concatenate: shapes differ off axis {ax}: "
                                 + ", ".join(desc(<Tensor>v) for v in ts))
        shp[ax] += t.shape[ax]
        dt = PROMOTE[dt][t.dtype]
    cdef Tensor out = new_node(OP_CONCAT, dt, tuple(ts), first.ndim, shp)
    out.aux = ax
    return out


def stack(arrays, axis=0):
    """Join tensors along a new axis."""
    ts = [as_tensor(v, "stack") for v in arrays]
    if not ts:
        raise ArgumentError("stack: needs at least one tensor")
    shape = (<Tensor>ts[0]).shape_tuple()
    for t in ts:
        if (<Tensor>t).shape_tuple() != shape:
            raise ShapeError("stack: all tensors need the same shape, got "
                             + ", ".join(desc(<Tensor>v) for v in ts))
    ax = norm_axis(axis, len(shape) + 1, "stack")
    return concatenate([expand_dims(t, ax) for t in ts], ax)


def split(x, indices_or_sections, axis=0):
    """Split into a list of tensors: ``n`` equal sections or at the given indices."""
    cdef Tensor a = as_tensor(x, "split")
    ax = norm_axis(axis, a.ndim, "split", a)
    n = a.shape[ax]
    if isinstance(indices_or_sections, int):
        k = indices_or_sections
        if k <= 0 or n % k:
            raise ShapeError(f"split: axis {ax} of {desc(a)} (size {n}) does not split into {k} equal parts")
        bounds = [i * (n // k) for i in range(k + 1)]
    else:
        bounds = [0] + [_bi.min(_bi.max(int(i) + n if int(i) < 0 else int(i), 0), n)
                        for i in indices_or_sections] + [n]
    idx = [slice(None)] * a.ndim
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        idx[ax] = slice(lo, _bi.max(lo, hi))
        out.append(getitem(a, tuple(idx)))
    return out


def getitem(x, key):
    """Basic indexing (ints, slices with steps, None, Ellipsis); an integer tensor or list as the
    index gathers along axis 0 (``take``)."""
    cdef Tensor a = as_tensor(x, "getitem")
    cdef Py_ssize_t shp[MAXDIM]
    cdef int nd = 0, dim = 0, i, nreal = 0, ell = -1
    cdef Py_ssize_t n, start, stop, step, ix, length
    if type(key) is not tuple:
        if type(key) is Tensor or isinstance(key, list) or hasattr(key, "__array__"):
            if type(key) is Tensor and (<Tensor>key).dtype == DT_BOOL:
                raise IndexingError(
                    f"getitem: boolean mask indexing of {desc(a)} by {desc(key)} has a shape that "
                    "depends on the data, which a lazy graph cannot know when it is built; use "
                    "mc.where(mask, x, fill), or index the evaluated NumPy array")
            return take(a, key, 0)
        key = (key,)
    i = 0
    for k in key:
        if k is Ellipsis:
            if ell >= 0:
                raise IndexingError("getitem: an index can only have a single ellipsis ('...')")
            ell = i
        elif k is not None:
            nreal += 1
        i += 1
    if nreal > a.ndim:
        raise IndexingError(f"getitem: too many indices ({nreal}) for {desc(a)}")
    items = []
    for k in key:
        if k is Ellipsis:
            for i in range(a.ndim - nreal):
                items.append(slice(None))
                shp[nd] = a.shape[dim]
                nd += 1
                dim += 1
        elif k is None:
            items.append(None)
            shp[nd] = 1
            nd += 1
        elif type(k) is slice:
            # (the C form of k.indices(n) and len(range(...)): no Python calls per slice)
            PySlice_GetIndicesEx(k, a.shape[dim], &start, &stop, &step, &length)
            # a stop of -1 means "past index 0"; as a slice bound -1 would be the last element
            items.append(slice(start, stop if stop >= 0 else None, step))
            shp[nd] = length
            nd += 1
            dim += 1
        elif type(k) is Tensor or isinstance(k, list):
            raise IndexingError("getitem: advanced indexing inside a tuple is not supported; "
                             "use take / take_along_axis")
        elif type(k) is int or (hasattr(k, "__index__") and type(k) is not bool):
            if type(k) is not int:
                k = k.__index__()
            ix = k if -(1 << 62) < k < (1 << 62) else (1 << 62)  # out of bounds below
            n = a.shape[dim]
            if ix < -n or ix >= n:
                raise IndexingError(f"getitem: index {k} is out of bounds for axis {dim} with "
                                    f"size {n} of {desc(a)}")
            items.append(ix + n if ix < 0 else ix)
            dim += 1
        else:
            raise IndexingError(f"getitem: unsupported index {k!r} (ints, slices, None, ... only)")
        if nd > MAXDIM:
            raise ShapeError(f"getitem: more than {MAXDIM} dims")
    while dim < a.ndim:
        items.append(slice(None))
        shp[nd] = a.shape[dim]
        nd += 1
        dim += 1
    cdef Tensor t = new_node(OP_SLICE, a.dtype, (a,), nd, shp)
    t.aux = tuple(items)
    return t


def take(x, indices, axis=None):
    """Gather elements along ``axis`` (None: of the flattened tensor), as ``numpy.take``.

    >>> import metalcandle as mc
    >>> mc.take(mc.array([10, 20, 30]), mc.array([2, 0])).tolist()
    [30, 10]
    """
    cdef Tensor a = as_tensor(x, "take")
    cdef Tensor idx = as_tensor(indices, "take")
    cdef Py_ssize_t shp[MAXDIM]
    cdef int nd = 0, i, ax
    if not is_int(idx.dtype):
        raise DTypeError(f"take: indices must be integers, got {desc(idx)}")
    cdef Tensor orig = a
    if axis is None:
        a = reshape(a, (-1,))
        ax = 0
    else:
        ax = norm_axis(axis, a.ndim, "take", a)
    if a.shape[ax] == 0 and idx.size:
        raise IndexingError(f"take: cannot take from an empty axis of {desc(a)}")
    if idx.status == 1 and idx.size:
        # indices given as data (a list, an array, an evaluated tensor) are checked now
        lo, hi = int(idx.data.min()), int(idx.data.max())
        if lo < -a.shape[ax] or hi >= a.shape[ax]:
            raise IndexingError(f"take: index {hi if hi >= a.shape[ax] else lo} is out of bounds "
                                f"for axis {ax} with size {a.shape[ax]} of {desc(orig)}"
                                + (" (flattened)" if axis is None else ""))
    for i in range(ax):
        shp[nd] = a.shape[i]; nd += 1
    for i in range(idx.ndim):
        shp[nd] = idx.shape[i]; nd += 1
    for i in range(ax + 1, a.ndim):
        shp[nd] = a.shape[i]; nd += 1
    check_shape(nd, shp, "take")
    cdef Tensor t = new_node(OP_TAKE, a.dtype, (a, idx), nd, shp)
    t.aux = ax
    return t


def take_along_axis(x, indices, axis):
    """Gather with an index tensor of the same rank, as ``numpy.take_along_axis``."""
    cdef Tensor a = as_tensor(x, "take_along_axis")
    cdef Tensor idx = as_tensor(indices, "take_along_axis")
    cdef Py_ssize_t shp[MAXDIM]
    cdef int i, ax
    if not is_int(idx.dtype):
        raise DTypeError(f"take_along_axis: indices must be integers, got {desc(idx)}")
    if axis is None:
        a = reshape(a, (-1,))
        ax = 0
    else:
        ax = norm_axis(axis, a.ndim, "take_along_axis", a)
    if idx.ndim != a.ndim:
        raise ShapeError(f"take_along_axis: indices {desc(idx)} need the same number of dims as {desc(a)}")
    for i in range(a.ndim):
        if i == ax:
            shp[i] = idx.shape[i]
        elif a.shape[i] == idx.shape[i] or idx.shape[i] == 1:
            shp[i] = a.shape[i]
        elif a.shape[i] == 1:
            shp[i] = idx.shape[i]
        else:
            raise BroadcastError(f"take_along_axis: {desc(idx)} does not broadcast with {desc(a)} off axis {ax}")
    cdef Tensor t = new_node(OP_TAKE_ALONG, a.dtype, (a, idx), a.ndim, shp)
    t.aux = ax
    return t
