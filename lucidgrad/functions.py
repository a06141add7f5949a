"""torch's top-level names: `lucidgrad.cat([a, b], dim=1)`, `lucidgrad.zeros(3)`, `lucidgrad.float32`, `lucidgrad.device("cpu")`,
so a script written against `torch` runs with `import lucidgrad as torch`. Each function here is the Tensor method or
constructor of the same name (docs/torch.md maps the names that differ); nothing here computes anything itself."""
from __future__ import annotations
import math, sys, types
from typing import Sequence
from lucidgrad.dtype import dtypes, DType
from lucidgrad.device import Device
from lucidgrad.tensor import Tensor

def device(name: str, index: int | None = None) -> str:
  """torch.device: lucidgrad names a device by its string ("cpu" -> "CPU", "cuda:1" -> "CUDA:1"); checked here."""
  return Device.canonicalize(name if index is None else f"{name}:{index}")

def is_tensor(obj) -> bool:
  """torch.is_tensor: whether obj is a Tensor."""
  return isinstance(obj, Tensor)
def is_floating_point(t: Tensor) -> bool:
  """torch.is_floating_point: whether t's dtype is a float one."""
  return t.dtype.is_float()
def get_default_dtype() -> DType:
  """torch.get_default_dtype: the dtype float data and constructors get (float32 unless set)."""
  return dtypes.default_float
def set_default_dtype(dt: DType):
  """torch.set_default_dtype: the dtype float data and constructors get from now on (a float dtype)."""
  Tensor.default_float = dt
def manual_seed(seed: int):
  """torch.manual_seed: seed the global generator every random op draws from (Tensor.manual_seed)."""
  Tensor.manual_seed(seed)

def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
  """torch.tensor: a new tensor holding a copy of `data` (nested lists, numbers, a NumPy array or a Tensor)."""
  if isinstance(data, Tensor): data = data.numpy()
  return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad or None)
def as_tensor(data, dtype=None, device=None) -> Tensor:
  """torch.as_tensor: `data` itself where it is a Tensor of that dtype and device, else a converted copy."""
  if isinstance(data, Tensor):
    out = data if device is None else data.to(device)
    return out if dtype is None else out.cast(dtype)
  return Tensor(data, dtype=dtype, device=device)
def from_numpy(a) -> Tensor:
  """torch.from_numpy: a Tensor of the array's values and dtype (a copy: lucidgrad.from_dlpack shares the memory)."""
  return Tensor(a)

def _like(ctor):
  def like(input: Tensor, *args, dtype=None, device=None, **kw) -> Tensor:
    """torch's *_like: the constructor of the same name with input's shape, and its dtype and device unless given."""
    return ctor(*input.shape, *args, dtype=dtype or input.dtype, device=device or input.device, **kw)
  return like
# constructors take the shape as separate ints or one sequence, as torch's do
zeros, ones, empty, rand, randn = Tensor.zeros, Tensor.ones, Tensor.empty, Tensor.rand, Tensor.randn
full, arange, linspace, eye, randint, randperm, einsum = Tensor.full, Tensor.arange, Tensor.linspace, Tensor.eye, Tensor.randint, Tensor.randperm, Tensor.einsum
tril_indices, triu_indices = Tensor.tril_indices, Tensor.triu_indices
zeros_like, ones_like, empty_like, rand_like, randn_like = (_like(c) for c in (Tensor.zeros, Tensor.ones, Tensor.empty, Tensor.rand, Tensor.randn))
def full_like(input: Tensor, fill_value, dtype=None, device=None) -> Tensor:
  """torch.full_like: fill_value in input's shape, with its dtype and device unless given."""
  return Tensor.full(input.shape, fill_value, dtype=dtype or input.dtype, device=device or input.device)

# ---- joins over a sequence of tensors ----
def _first(tensors: Sequence[Tensor], what: str) -> Tensor:
  if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)): raise TypeError(f"{what}: expected a list or tuple of tensors, got {type(tensors).__name__}")
  if not tensors: raise ValueError(f"{what}: expected a non-empty list of tensors")
  return tensors[0]
def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
  """torch.cat: the tensors joined along dim (Tensor.cat)."""
  return _first(tensors, "cat").cat(*tensors[1:], dim=dim)
concat = concatenate = cat
def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
  """torch.stack: the tensors joined along a new axis at dim (Tensor.stack)."""
  return _first(tensors, "stack").stack(*tensors[1:], dim=dim)
def hstack(tensors: Sequence[Tensor]) -> Tensor:
  """torch.hstack: cat along dim 1 (dim 0 for 1-D tensors)."""
  return cat(tensors, dim=0 if _first(tensors, "hstack").ndim == 1 else 1)
def vstack(tensors: Sequence[Tensor]) -> Tensor:
  """torch.vstack: cat along dim 0, 1-D tensors taken as rows."""
  return cat([t.reshape(1, -1) if t.ndim < 2 else t for t in tensors], dim=0)
def where(condition: Tensor, input, other) -> Tensor:
  """torch.where: input where condition holds, else other (Tensor.where)."""
  return condition.where(input, other)

# ---- the Tensor method of the same name, called on its first argument (sum, max, abs, round, pow shadow the builtins in
# this module from here on: nothing below calls them) ----
def _method(name: str):
  def fn(input: Tensor, *args, **kwargs):
    if not isinstance(input, Tensor): raise TypeError(f"{name}: expected a Tensor as the first argument, got {type(input).__name__}")
    return getattr(input, name)(*args, **kwargs)
  fn.__name__ = fn.__qualname__ = name
  fn.__doc__ = f"torch.{name}(input, ...): `input.{name}(...)` (see Tensor.{name})."
  return fn

METHODS = """abs neg exp exp2 log log2 log10 log1p expm1 sqrt rsqrt sin cos tan tanh sigmoid relu square sign floor ceil round trunc
  reciprocal erf clamp clip maximum minimum pow sum prod mean var std max min argmax argmin cumsum cumprod sort argsort topk
  softmax log_softmax logsumexp matmul reshape flatten squeeze unsqueeze transpose permute split chunk gather
  index_select take_along_dim tril triu flip roll masked_fill lerp isnan isinf isfinite eq ne lt le gt ge logical_not
  logical_and logical_or dot acos asin atan atan2 cosh sinh acosh asinh atanh fmod remainder copysign logaddexp logaddexp2
  logcumsumexp hypot all any amax amin aminmax isclose allclose equal std_mean var_mean median mode kthvalue cummax cummin diag
  diagonal diag_embed trace cross kron rot90 narrow movedim moveaxis cdist bincount histc searchsorted bucketize masked_select
  nonzero argwhere unique repeat_interleave unflatten eq ne lt le gt ge outer mv addmm baddbmm true_divide negative t numel
  clone detach""".split()
for _n in METHODS: globals()[_n] = _method(_n)
mm = bmm = _method("matmul")
del _n

# ---- dtypes under torch's names (torch.float is float32, torch.long int64, ...): last, as `float`, `int` and `bool`
# shadow the builtins in this module from here on
float32 = float = dtypes.float32
float64 = double = dtypes.float64
float16 = half = dtypes.float16
bfloat16 = dtypes.bfloat16
int8, int16, int32, int64, uint8 = dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64, dtypes.uint8
uint16, uint32, uint64 = dtypes.uint16, dtypes.uint32, dtypes.uint64
short, int, long = dtypes.int16, dtypes.int32, dtypes.int64  # noqa: A001 -- torch's names, shadowing the builtins here only
bool = dtypes.bool  # noqa: A001
pi, e, inf, nan = math.pi, math.e, math.inf, math.nan

def _callable_module(name: str, fn) -> None:
  """`lucidgrad.tensor` and `lucidgrad.device` are modules (the Tensor's code, the devices') and also torch's names of
  two functions: the module itself is made callable as that function, so `lucidgrad.tensor([1, 2])` and
  `lucidgrad.device("cuda")` work and `import lucidgrad.tensor` still gives the module (a module attribute of the same
  name would hide it)."""
  mod = sys.modules[name]
  mod.__class__ = type(f"{type(mod).__name__}", (type(mod),), {"__call__": lambda self, *args, **kw: fn(*args, **kw), "__doc__": mod.__doc__})
_callable_module("lucidgrad.tensor", tensor)
_callable_module("lucidgrad.device", device)

# what `from lucidgrad.functions import *` brings into the package: everything public here but the two names above
__all__ = [n for n, v in globals().items() if not n.startswith("_") and not isinstance(v, types.ModuleType) and n not in
           ("annotations", "Sequence", "Device", "Tensor", "DType", "dtypes", "tensor", "device")]
