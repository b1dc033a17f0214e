"""Metal kernels of the fused primitives other than softmax and rms_norm (those live in
metal_backend): ``KERNELS[name](backend, node, ins)`` encodes the dispatch(es) and returns the
output (a NumPy view of device memory), or None to let the NumPy implementation run instead."""

KERNELS = {}
