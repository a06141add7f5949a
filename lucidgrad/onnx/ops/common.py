"""Helpers the ONNX op families share: ONNX's element types as lucidgrad dtypes, host values of shape-like inputs,
axis normalisation, and the dtype rules ONNX keeps where PyTorch's promotion would differ."""
from __future__ import annotations
import numpy as np
from lucidgrad import Tensor, dtypes
from lucidgrad.dtype import DType

# TensorProto.DataType -> lucidgrad dtype (the types lucidgrad has; 8 is STRING, handled by the ops that take strings)
ONNX_DTYPES: dict[int, DType] = {1: dtypes.float32, 2: dtypes.uint8, 3: dtypes.int8, 4: dtypes.uint16, 5: dtypes.int16, 6: dtypes.int32,
                                 7: dtypes.int64, 9: dtypes.bool, 10: dtypes.float16, 11: dtypes.float64, 12: dtypes.uint32, 13: dtypes.uint64,
                                 16: dtypes.bfloat16}
ONNX_TYPE_NAMES = {0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128", 17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2",
                   20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2"}

def onnx_dtype(code: int, op: str) -> DType:
  """The lucidgrad dtype of ONNX element type `code`; NotImplementedError naming `op` for one lucidgrad lacks."""
  if (dt := ONNX_DTYPES.get(int(code))) is None:
    raise NotImplementedError(f"ONNX {op}: element type {ONNX_TYPE_NAMES.get(int(code), code)} has no lucidgrad dtype")
  return dt

def ints(ctx, t) -> list[int]:
  """A shape-like input (Tensor or array) as Python ints, read on the host through ctx.const."""
  return [int(v) for v in np.asarray(ctx.const(t)).reshape(-1)]

def scalar(ctx, t) -> float | int:
  """A 0-d or 1-element input as a Python number."""
  v = np.asarray(ctx.const(t)).reshape(-1)
  if v.size != 1: raise ValueError(f"expected one value, got shape {np.asarray(ctx.const(t)).shape}")
  return v[0].item()

def axis(a: int, ndim: int, op: str) -> int:
  """`a` in [0, ndim), ValueError naming `op` when out of [-ndim, ndim)."""
  if not -ndim <= a < max(ndim, 1): raise ValueError(f"ONNX {op}: axis {a} out of range for rank {ndim}")
  return a % max(ndim, 1)

def given(inputs: list, i: int):
  """inputs[i], or None where it is absent (omitted or past the end)."""
  return inputs[i] if i < len(inputs) else None

def same_dtype(out: Tensor, like: Tensor) -> Tensor:
  """out cast to like's dtype: ONNX keeps the input's type where PyTorch would promote (ints to float, bool to int)."""
  return out if out.dtype == like.dtype else out.cast(like.dtype)

def const_like(x: Tensor, value, dtype: DType | None = None) -> Tensor:
  """A Tensor of `value` (array-like) on x's device with dtype (default x's)."""
  dt = dtype or x.dtype
  if dt == dtypes.bfloat16: return Tensor(np.asarray(value, dtype=np.float32), device=x.device).cast(dt)  # NumPy has no bfloat16
  return Tensor(np.asarray(value, dtype=dt.np), device=x.device)
