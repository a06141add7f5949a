"""ONNX Cast and CastLike (the `saturate` attribute only changes float8 casts, a type lucidgrad lacks), strings parsed to
numbers on the host."""
from __future__ import annotations
import numpy as np
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import onnx_dtype

def _cast(ctx, x, to: int | None, like: Tensor | np.ndarray | None, op: str):
  if isinstance(like, np.ndarray) or to == 8:  # to STRING
    raise NotImplementedError(f"ONNX {op}: casting to STRING is not supported")
  dt = like.dtype if like is not None else onnx_dtype(to, op)
  if isinstance(x, np.ndarray):  # STRING -> number: parsed on the host, as the values are text
    vals = np.array([float(v) for v in x.reshape(-1)], dtype=np.float64).reshape(x.shape)
    return Tensor(vals.astype(np.float32 if dt == dtypes.bfloat16 else dt.np), device=ctx.device).cast(dt)
  return x.cast(dt)

@onnx_op("Cast")
def cast(ctx, inputs, attrs):
  to = attrs["to"]
  if isinstance(to, str): to = {"float": 1, "float16": 10, "double": 11, "int32": 6, "int64": 7, "bool": 9}[to.lower()]  # opset 1 named types
  return [_cast(ctx, inputs[0], to, None, "Cast")]

@onnx_op("CastLike", 15)
def cast_like(ctx, inputs, attrs): return [_cast(ctx, inputs[0], None, inputs[1], "CastLike")]
