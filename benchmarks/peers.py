"""One adapter per library, so every case is written once.

An adapter holds the library's own functions (not wrappers, where the library has the op, so the
timing is the library's cost) plus ``sync``: what forces evaluation. Every timed iteration of an
eval case calls ``sync`` on its result: ``mc.eval`` / ``mx.eval`` / tinygrad ``realize`` followed
by a device synchronize / jax ``block_until_ready``. NumPy and torch-on-CPU are eager and
synchronous, so their ``sync`` does nothing.

``kind`` says how "graph build" is to be read: ``lazy`` libraries only record nodes, ``eager`` ones
compute each op as it is called (their build numbers are build+compute), ``async`` (jax) dispatches
each op eagerly and is blocked on at the end of every timed repetition.
"""
import importlib
import importlib.metadata as _md
import types

ALL = ("metalcandle", "numpy", "mlx", "torch", "tinygrad", "jax")

# How to install each peer (printed when one is missing; see benchmarks/README.md).
INSTALL = {
    "numpy": "pip install numpy",
    "mlx": 'pip install "mlx[cpu]"   (Linux; on macOS: pip install mlx)',
    "torch": "pip install torch==2.13.0   (never a plain `pip install torch`: multi-GB CUDA build)",
    "tinygrad": "pip install tinygrad   (its CPU device needs clang: apt-get install clang)",
    "jax": "pip install jax",
}


def _version(dist):
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return "?"


def _ns(**kw):
    return types.SimpleNamespace(**kw)


def _composite_softmax(exp, amax, asum):
    def softmax(x, axis=-1):
        e = exp(x - amax(x, axis, keepdims=True))
        return e / asum(e, axis, keepdims=True)
    return softmax


def _composite_rms_norm(rsqrt, mean):
    def rms_norm(x, w, eps):
        return x * rsqrt(mean(x * x, -1, keepdims=True) + eps) * w
    return rms_norm


def lora_composite(x, a, b, scale):
    return (x @ a) @ b * scale


def _metalcandle():
    import metalcandle as mc
    p = _ns(name="metalcandle", version=mc.__version__, kind="lazy", mod=mc,
            asarray=mc.array, sync=mc.eval,
            exp=mc.exp, relu=mc.relu, silu=mc.silu, rsqrt=mc.rsqrt, sqrt=mc.sqrt,
            sum=mc.sum, max=mc.max, mean=mc.mean, reshape=mc.reshape, zeros=mc.zeros)
    p.softmax, p.rms_norm, p.lora = mc.softmax, mc.fast.rms_norm, mc.fast.lora
    p.fused = {"softmax": "mc.softmax", "rms_norm": "mc.fast.rms_norm", "lora": "mc.fast.lora"}
    return p


def _numpy():
    import numpy as np

    def sync(*ts):
        return None

    def relu(x):
        return np.maximum(x, 0)

    def silu(x):
        return x / (1 + np.exp(-x))

    def rsqrt(x):
        return 1 / np.sqrt(x)

    def zeros(shape):
        return np.zeros(shape, np.float32)

    def amax(x, axis=None, keepdims=False):
        return np.max(x, axis=axis, keepdims=keepdims)

    return _ns(name="numpy", version=np.__version__, kind="eager", mod=np,
               asarray=lambda a: np.array(a), sync=sync, exp=np.exp, relu=relu, silu=silu,
               rsqrt=rsqrt, sqrt=np.sqrt, sum=np.sum, max=amax, mean=np.mean,
               reshape=np.reshape, zeros=zeros,
               softmax=_composite_softmax(np.exp, amax, np.sum),
               rms_norm=_composite_rms_norm(rsqrt, np.mean), lora=lora_composite,
               fused={"softmax": "composite", "rms_norm": "composite", "lora": "composite"})


def _mlx():
    import mlx.core as mx

    def silu(x):
        return x * mx.sigmoid(x)

    def relu(x):
        return mx.maximum(x, 0)

    def zeros(shape):
        return mx.zeros(shape)

    return _ns(name="mlx", version=_version("mlx"), kind="lazy", mod=mx,
               asarray=mx.array, sync=mx.eval, exp=mx.exp, relu=relu, silu=silu,
               rsqrt=mx.rsqrt, sqrt=mx.sqrt, sum=mx.sum, max=mx.max, mean=mx.mean,
               reshape=mx.reshape, zeros=zeros, softmax=mx.softmax,
               rms_norm=mx.fast.rms_norm, lora=lora_composite,
               fused={"softmax": "mx.softmax", "rms_norm": "mx.fast.rms_norm",
                      "lora": "composite"})


def _torch():
    import torch
    import torch.nn.functional as F
    torch.set_grad_enabled(False)

    def sync(*ts):
        return None

    def asum(x, axis=None, keepdims=False):
        return torch.sum(x) if axis is None else torch.sum(x, dim=axis, keepdim=keepdims)

    def amax(x, axis=None, keepdims=False):
        return torch.amax(x) if axis is None else torch.amax(x, dim=axis, keepdim=keepdims)

    def mean(x, axis=None, keepdims=False):
        return torch.mean(x) if axis is None else torch.mean(x, dim=axis, keepdim=keepdims)

    def rms_norm(x, w, eps):
        return F.rms_norm(x, (x.shape[-1],), w, eps)

    def zeros(shape):
        return torch.zeros(shape)

    return _ns(name="torch", version=torch.__version__, kind="eager", mod=torch,
               asarray=lambda a: torch.from_numpy(a.copy()), sync=sync, exp=torch.exp,
               relu=torch.relu, silu=F.silu, rsqrt=torch.rsqrt, sqrt=torch.sqrt, sum=asum,
               max=amax, mean=mean, reshape=torch.reshape, zeros=zeros,
               softmax=lambda x, axis=-1: torch.softmax(x, axis), rms_norm=rms_norm,
               lora=lora_composite,
               fused={"softmax": "torch.softmax", "rms_norm": "F.rms_norm",
                      "lora": "composite"})


def _tinygrad():
    from tinygrad import Tensor, Device
    dev = Device[Device.DEFAULT]     # fails here (not mid-run) when no device works

    def sync(*ts):
        # realize schedules and launches; the CPU device may still be running, so wait for it.
        ts[0].realize(*ts[1:])
        dev.synchronize()

    def asarray(a):
        t = Tensor(a.copy()).realize()
        dev.synchronize()
        return t

    def asum(x, axis=None, keepdims=False):
        return x.sum(axis, keepdims)

    def amax(x, axis=None, keepdims=False):
        return x.max(axis, keepdims)

    def mean(x, axis=None, keepdims=False):
        return x.mean(axis, keepdims)

    return _ns(name="tinygrad", version=_version("tinygrad"), kind="lazy", mod=Tensor,
               device=Device.DEFAULT, asarray=asarray, sync=sync, exp=Tensor.exp,
               relu=Tensor.relu, silu=Tensor.silu, rsqrt=Tensor.rsqrt, sqrt=Tensor.sqrt,
               sum=asum, max=amax, mean=mean, reshape=Tensor.reshape,
               zeros=lambda shape: Tensor.zeros(*shape),
               softmax=lambda x, axis=-1: x.softmax(axis),
               rms_norm=_composite_rms_norm(Tensor.rsqrt, mean), lora=lora_composite,
               fused={"softmax": "Tensor.softmax", "rms_norm": "composite",
                      "lora": "composite"})


def _jax():
    import jax
    import jax.numpy as jnp

    def sync(*ts):
        jax.block_until_ready(ts)

    def asarray(a):
        return jax.block_until_ready(jnp.asarray(a))

    def zeros(shape):
        return jnp.zeros(shape, jnp.float32)

    return _ns(name="jax", version=jax.__version__, kind="async", mod=jnp,
               asarray=asarray, sync=sync, exp=jnp.exp, relu=jax.nn.relu, silu=jax.nn.silu,
               rsqrt=jax.lax.rsqrt, sqrt=jnp.sqrt, sum=jnp.sum, max=jnp.max, mean=jnp.mean,
               reshape=jnp.reshape, zeros=zeros,
               softmax=lambda x, axis=-1: jax.nn.softmax(x, axis=axis),
               rms_norm=_composite_rms_norm(jax.lax.rsqrt, jnp.mean), lora=lora_composite,
               fused={"softmax": "jax.nn.softmax", "rms_norm": "composite",
                      "lora": "composite"})


_LOADERS = {"metalcandle": _metalcandle, "numpy": _numpy, "mlx": _mlx, "torch": _torch,
            "tinygrad": _tinygrad, "jax": _jax}
_MODULE = {"metalcandle": "metalcandle", "numpy": "numpy", "mlx": "mlx.core", "torch": "torch",
           "tinygrad": "tinygrad", "jax": "jax"}


def load(names, with_metalcandle=True):
    """Adapters for ``names`` (metalcandle first unless told not to) and notes on those skipped."""
    peers, notes = [], []
    first = ["metalcandle"] if with_metalcandle else []
    for name in first + [n for n in names if n not in first]:
        if name not in _LOADERS:
            notes.append(f"{name}: unknown peer (choose from {', '.join(ALL[1:])})")
            continue
        try:
            importlib.import_module(_MODULE[name])
        except ImportError as e:
            notes.append(f"{name}: not installed ({e.__class__.__name__}: {e}); "
                         f"install with: {INSTALL.get(name, 'pip install ' + name)}")
            continue
        try:
            peers.append(_LOADERS[name]())
        except Exception as e:  # a peer that imports but cannot run (no device, no compiler)
            notes.append(f"{name}: installed but unusable here ({e.__class__.__name__}: {e}); "
                         f"see: {INSTALL.get(name, '')}")
    return peers, notes
