"""lucidgrad: a small deep-learning framework. A lazy Tensor, one UOp IR, fused kernels compiled for the CPU."""
from lucidgrad.tensor import Tensor, no_grad, enable_grad, set_grad_enabled, inference_mode, is_grad_enabled, is_inference_mode_enabled
from lucidgrad.tensor_print import set_printoptions, get_printoptions, printoptions
from lucidgrad.dtype import dtypes, DType
from lucidgrad.device import Device
from lucidgrad.helpers import Context, GlobalCounters, getenv, DEBUG
from lucidgrad.engine.jit import jit, JitError
from lucidgrad.engine.profile import profile, marker
from lucidgrad.uop.ops import Variable
from lucidgrad import cuda, utils  # noqa: F401  (torch.cuda, torch.utils.data as attributes)
from lucidgrad.functions import *  # noqa: F401,F403  (torch's top-level names: dtypes, constructors, cat, ...)
from lucidgrad.functions import __all__ as _torch_names
__all__ = ["Tensor", "no_grad", "enable_grad", "set_grad_enabled", "inference_mode", "is_grad_enabled", "is_inference_mode_enabled",
           "set_printoptions", "get_printoptions", "printoptions", "from_dlpack", "save", "load", "dtypes", "DType", "Device", "Context",
           "GlobalCounters", "getenv", "DEBUG", "jit", "JitError", "profile", "marker", "Variable", "cuda", "utils", "tensor", "device", *_torch_names]  # noqa: F405

def from_dlpack(obj) -> Tensor:
  """torch.from_dlpack: a CPU Tensor on the memory of `obj` (a torch tensor, a NumPy array, a DLPack capsule), without a
  copy where the memory allows (Tensor.from_dlpack)."""
  return Tensor.from_dlpack(obj)

def save(obj, f) -> None:
  """torch.save without pickle: `obj` -- tensors, numbers, strings, None, in any nesting of dicts, lists and tuples --
  to a safetensors file at path `f` (or a writable binary file object). See lucidgrad.nn.state.save."""
  from lucidgrad.nn.state import save as save_
  save_(obj, f)

def load(f, map_location: str | None = None, **kwargs):
  """torch.load without running code: what save() wrote (or a plain safetensors file, or a torch.save file through
  torch_load's safe reader). See lucidgrad.nn.state.load."""
  from lucidgrad.nn.state import load as load_
  return load_(f, map_location, **kwargs)

def __getattr__(name: str):
  """`lucidgrad.nn` and `lucidgrad.optim` (torch.nn, torch.optim) on first use: importing them costs ~60 ms that a
  script without layers need not pay."""
  if name in ("nn", "optim"):
    import importlib
    return importlib.import_module(f"lucidgrad.{name}")
  raise AttributeError(f"module 'lucidgrad' has no attribute {name!r}")
