"""Node -> ``np_fused`` call: unpack a fused node's params and cast inputs to its dtype."""
from metalcandle.backends import np_fused
from metalcandle.backends.np_dtypes import NP


def run(name, node, ins, out):
    dt = NP[node._dtype_code]
    ins = [a if a.dtype == dt or a.dtype.kind == "b" else a.astype(dt) for a in ins]
    aux, s = node._aux, node._scalar
    if name == "softmax":
        return np_fused.softmax(ins[0], aux)
    if name == "log_softmax":
        return np_fused.log_softmax(ins[0], aux)
    if name == "rms_norm":
        return np_fused.rms_norm(ins[0], ins[1] if aux[0] else None, s)
    if name == "layer_norm":
        has_w, has_b = aux
        w = ins[1] if has_w else None
        b = ins[-1] if has_b else None
        return np_fused.layer_norm(ins[0], w, b, s)
    if name == "rope":
        dims, trad, base, scale, offset = aux
        return np_fused.rope(ins[0], dims, trad, base, scale, offset)
    if name == "scaled_dot_product_attention":
        kind = aux[0]
        mask = "causal" if kind == "causal" else (ins[3] if kind != "none" else None)
        return np_fused.scaled_dot_product_attention(ins[0], ins[1], ins[2], s, mask)
    if name == "lora":
        return np_fused.lora(ins[0], ins[1], ins[2], s)
    if name == "lora_linear":
        return np_fused.lora_linear(ins[0], ins[1], ins[4] if aux[0] else None, ins[2], ins[3], s)
    raise KeyError(f"no CPU implementation for fused op {name!r}")
