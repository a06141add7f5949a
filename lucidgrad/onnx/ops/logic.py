"""ONNX comparison, logic and bitwise ops, Where, IsNaN/IsInf and BitCast."""
from __future__ import annotations
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import onnx_dtype, same_dtype

def _register(name: str, fn, since: int = 1):
  onnx_op(name, since)(lambda ctx, inputs, attrs: [fn(*inputs)])

for _name, _fn in {"Equal": Tensor.eq, "Greater": Tensor.gt, "Less": Tensor.lt, "GreaterOrEqual": Tensor.ge, "LessOrEqual": Tensor.le,
                   "And": Tensor.logical_and, "Or": Tensor.logical_or, "Xor": Tensor.logical_xor, "Not": Tensor.logical_not,
                   "BitwiseNot": Tensor.bitwise_not, "IsNaN": Tensor.isnan}.items():
  _register(_name, _fn)
for _name, _fn in {"BitwiseAnd": Tensor.bitwise_and, "BitwiseOr": Tensor.bitwise_or, "BitwiseXor": Tensor.bitwise_xor}.items():
  _register(_name, lambda a, b, fn=_fn: same_dtype(fn(a, b), a))

@onnx_op("Where")
def where(ctx, inputs, attrs):
  cond, x, y = inputs
  return [cond.cast(dtypes.bool).where(x, y)]

@onnx_op("IsInf", 10)
def isinf(ctx, inputs, attrs):
  x = inputs[0]
  pos, neg = attrs.get("detect_positive", 1), attrs.get("detect_negative", 1)
  if pos and neg: return [x.isinf()]
  return [x.isinf() & (x > 0)] if pos else [x.isinf() & (x < 0)] if neg else [Tensor.zeros(*x.shape, dtype=dtypes.bool, device=x.device)]

@onnx_op("BitShift", 11)
def bitshift(ctx, inputs, attrs):
  x, n = inputs
  d = attrs.get("direction")
  if d not in ("LEFT", "RIGHT"): raise ValueError(f"ONNX BitShift: direction must be 'LEFT' or 'RIGHT', got {d!r}")
  n, bits = n.cast(x.dtype), x.dtype.itemsize * 8
  # a shift out of [0, bits) fills with the sign for a right shift of a signed type and with 0 otherwise
  valid = (n >= 0) & (n < bits)
  n = valid.where(n, Tensor.zeros_like(n))
  out = same_dtype(x.lshift(n) if d == "LEFT" else x.rshift(n), x)
  fill = (x < 0).where(-Tensor.ones_like(x), Tensor.zeros_like(x)) if d == "RIGHT" and not x.dtype.is_unsigned() else Tensor.zeros_like(x)
  return [valid.where(out, fill)]

@onnx_op("BitCast", 26)
def bitcast(ctx, inputs, attrs):
  x, to = inputs[0], onnx_dtype(attrs["to"], "BitCast")
  if to.itemsize != x.dtype.itemsize: raise ValueError(f"ONNX BitCast: {x.dtype} and {to} differ in size")
  return [x.bitcast(to)]
