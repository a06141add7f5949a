"""DLPack, the protocol by which array libraries hand each other memory without a copy. NumPy's own producer and
consumer do the work -- they manage the capsule's lifetime, the versioned and legacy formats, the read-only flag and
strides -- and this module adds the one thing NumPy lacks, bfloat16: its elements travel as uint16 through NumPy, and
the dtype in the capsule is rewritten on the way out and on the way in. Knows nothing of graphs."""
from __future__ import annotations
import ctypes
import numpy as np
from lucidgrad.dtype import DType, dtypes

KDL_CPU, KDL_CUDA = 1, 2                         # DLDeviceType
KDL_UINT, KDL_BFLOAT = 1, 4                      # DLDataTypeCode

class _DLDataType(ctypes.Structure): _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]
class _DLDevice(ctypes.Structure): _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]
class _DLTensor(ctypes.Structure):
  _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32), ("dtype", _DLDataType),
              ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]
# DLPack >= 1.0 ("dltensor_versioned"): version, manager_ctx, deleter and flags come first; before it ("dltensor") the
# tensor comes first
class _DLManagedTensorVersioned(ctypes.Structure):
  _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p),
              ("flags", ctypes.c_uint64), ("dl_tensor", _DLTensor)]

_api = ctypes.pythonapi
_api.PyCapsule_GetName.restype, _api.PyCapsule_GetName.argtypes = ctypes.c_char_p, [ctypes.py_object]
_api.PyCapsule_GetPointer.restype, _api.PyCapsule_GetPointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]

def is_capsule(x) -> bool: return type(x).__name__ == "PyCapsule"

def _dl_tensor(capsule) -> _DLTensor:
  """The DLTensor inside an unconsumed DLPack capsule (writable in place)."""
  name = _api.PyCapsule_GetName(capsule)
  if name not in (b"dltensor", b"dltensor_versioned"):
    raise BufferError(f"from_dlpack: a capsule named {name!r} is no DLPack tensor, or it was consumed already (a capsule can be used once)")
  ptr = _api.PyCapsule_GetPointer(capsule, name)
  if name == b"dltensor": return _DLTensor.from_address(ptr)
  managed = _DLManagedTensorVersioned.from_address(ptr)
  if managed.major != 1: raise BufferError(f"from_dlpack: DLPack version {managed.major}.{managed.minor} is not supported (1.x is)")
  return managed.dl_tensor

class _Capsule:
  """A producer that hands NumPy one capsule already taken from another producer."""
  def __init__(self, capsule): self.capsule = capsule
  def __dlpack__(self, **_): return self.capsule
  def __dlpack_device__(self): return (KDL_CPU, 0)

def to_numpy(obj) -> tuple[np.ndarray, DType]:
  """`obj`'s memory (anything with __dlpack__, or a DLPack capsule) as a NumPy array without a copy, and its dtype.
  bfloat16 comes as its uint16 bits. The array keeps the producer's memory alive; the producer's deleter runs when
  the array (and everything made on its memory) is gone. Host (CPU) memory only."""
  if is_capsule(obj): capsule = obj
  elif hasattr(obj, "__dlpack__"):
    dev = tuple(obj.__dlpack_device__()) if hasattr(obj, "__dlpack_device__") else (KDL_CPU, 0)
    if dev[0] != KDL_CPU:
      raise BufferError(f"from_dlpack: the {type(obj).__name__} lives on DLPack device {dev} (1 is the CPU, 2 CUDA); lucidgrad takes host "
                        "memory only: move it to the CPU first (torch: .cpu())")
    try: capsule = obj.__dlpack__(max_version=(1, 0))
    except TypeError: capsule = obj.__dlpack__()  # a producer from before DLPack 1.0
  else: raise TypeError(f"from_dlpack: a {type(obj).__name__} has no __dlpack__ and is no DLPack capsule")
  dl = _dl_tensor(capsule)
  if dl.device.device_type != KDL_CPU:
    raise BufferError(f"from_dlpack: the capsule's memory is on DLPack device {dl.device.device_type} (1 is the CPU); lucidgrad takes host memory only")
  bf16 = (dl.dtype.code, dl.dtype.bits, dl.dtype.lanes) == (KDL_BFLOAT, 16, 1)
  if bf16: dl.dtype.code = KDL_UINT
  arr = np.from_dlpack(_Capsule(capsule))
  if bf16: return arr, dtypes.bfloat16
  try: return arr, dtypes.from_np(arr.dtype)
  except TypeError as e: raise TypeError(f"from_dlpack: {e}") from None

def export(arr: np.ndarray, bfloat16: bool, max_version) -> object:
  """A DLPack capsule of `arr` (NumPy's own, so it keeps `arr` alive until the consumer is done); `bfloat16` marks the
  uint16 elements as bfloat16 bits. A versioned capsule where the consumer asks for DLPack >= 1.0."""
  capsule = arr.__dlpack__(max_version=max_version) if max_version is not None else arr.__dlpack__()
  if bfloat16: _dl_tensor(capsule).dtype.code = KDL_BFLOAT
  return capsule
