"""ONNX quantisation: QuantizeLinear/DequantizeLinear (per tensor, per axis, blocked), DynamicQuantizeLinear, the
integer ops MatMulInteger's siblings ConvInteger, QLinearMatMul and QLinearConv. Integer zero points are subtracted in
int32; rounding is half to even, as the spec asks."""
from __future__ import annotations
import numpy as np
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import axis, given, onnx_dtype
from lucidgrad.onnx.ops.nn import conv

def _per(x: Tensor, p: Tensor, ax: int, block: int) -> Tensor:
  """Scale or zero point p broadcast against x: a scalar, one value per index of axis `ax`, or one per block along it."""
  if p.ndim == 0 or p.numel() == 1 and block == 0: return p.reshape(())
  if block:
    p = p.repeat_interleave(block, dim=ax)
    return p.shrink(tuple((0, s) for s in x.shape))
  return p.reshape([-1 if i == ax else 1 for i in range(x.ndim)])

def _axis(attrs, x: Tensor, scale: Tensor, op: str) -> int:
  """The quantisation axis; only checked where the scale is per axis or per block (the default 1 may not exist otherwise)."""
  return axis(attrs.get("axis", 1), x.ndim, op) if scale.numel() > 1 or attrs.get("block_size", 0) else 0

def _range(dt) -> tuple[int, int]:
  info = np.iinfo(dt.np)
  return int(info.min), int(info.max)

def _quantize(x: Tensor, scale: Tensor, zp: Tensor | None, out_dt, ax: int, block: int) -> Tensor:
  lo, hi = _range(out_dt)
  y = (x.cast(dtypes.float32) / _per(x, scale, ax, block).cast(dtypes.float32)).round()
  if zp is not None: y = y + _per(x, zp, ax, block).cast(dtypes.float32)
  return y.clip(lo, hi).cast(out_dt)

@onnx_op("QuantizeLinear", 10)
def quantize_linear(ctx, inputs, attrs):
  x, scale, zp = inputs[0], inputs[1], given(inputs, 2)
  out_dt = zp.dtype if zp is not None else onnx_dtype(attrs.get("output_dtype", 2) or 2, "QuantizeLinear")
  if not out_dt.is_int(): raise NotImplementedError(f"ONNX QuantizeLinear: output type {out_dt} is not supported")
  ax = _axis(attrs, x, scale, "QuantizeLinear")
  return [_quantize(x, scale, zp, out_dt, ax, attrs.get("block_size", 0))]

@onnx_op("DequantizeLinear", 10)
def dequantize_linear(ctx, inputs, attrs):
  x, scale, zp = inputs[0], inputs[1], given(inputs, 2)
  ax = _axis(attrs, x, scale, "DequantizeLinear")
  block = attrs.get("block_size", 0)
  out_dt = onnx_dtype(attrs["output_dtype"], "DequantizeLinear") if attrs.get("output_dtype") else scale.dtype
  v = x.cast(dtypes.int32) if x.dtype.is_int() else x
  if zp is not None: v = v - _per(x, zp, ax, block).cast(v.dtype)
  return [(v.cast(dtypes.float32) * _per(x, scale, ax, block).cast(dtypes.float32)).cast(out_dt)]

@onnx_op("DynamicQuantizeLinear", 11)
def dynamic_quantize_linear(ctx, inputs, attrs):
  x = inputs[0].cast(dtypes.float32)
  lo, hi = x.min().minimum(Tensor(0.0, device=x.device)), x.max().maximum(Tensor(0.0, device=x.device))
  scale = (hi - lo) / 255
  zp = (-lo / scale).round().clip(0, 255).cast(dtypes.uint8)
  return [_quantize(x, scale, zp, dtypes.uint8, 0, 0), scale, zp]

def _centered(t: Tensor, zp: Tensor | None, per_axis_shape=None) -> Tensor:
  v = t.cast(dtypes.int32)
  if zp is None: return v
  z = zp.cast(dtypes.int32)
  return v - (z.reshape(per_axis_shape) if per_axis_shape is not None and z.ndim else z)

@onnx_op("ConvInteger", 10)
def conv_integer(ctx, inputs, attrs):
  x, w, xz, wz = inputs[0], inputs[1], given(inputs, 2), given(inputs, 3)
  xi, wi = _centered(x, xz), _centered(w, wz, [-1] + [1] * (w.ndim - 1))
  return [conv(ctx, [xi, wi], attrs)[0].cast(dtypes.int32)]

def _requantize(acc: Tensor, scale: Tensor, y_scale: Tensor, y_zp: Tensor | None, out_dt) -> Tensor:
  lo, hi = _range(out_dt)
  y = (acc.cast(dtypes.float32) * (scale.cast(dtypes.float32) / y_scale.cast(dtypes.float32))).round()
  if y_zp is not None: y = y + y_zp.cast(dtypes.float32)
  return y.clip(lo, hi).cast(out_dt)

@onnx_op("QLinearMatMul", 10)
def qlinear_matmul(ctx, inputs, attrs):
  a, a_s, a_z, b, b_s, b_z, y_s, y_z = (given(inputs, i) for i in range(8))  # the zero points are optional
  ai = _centered(a, a_z, [-1, 1] if a_z is not None and a_z.ndim else None)
  bi = _centered(b, b_z, [1, -1] if b_z is not None and b_z.ndim else None)
  a_sc = a_s.reshape(-1, 1) if a_s.ndim else a_s
  b_sc = b_s.reshape(1, -1) if b_s.ndim else b_s
  acc = ai @ bi
  return [_requantize(acc, a_sc.cast(dtypes.float32) * b_sc.cast(dtypes.float32), y_s, y_z, y_z.dtype if y_z is not None else dtypes.uint8)]

@onnx_op("QLinearConv", 10)
def qlinear_conv(ctx, inputs, attrs):
  x, x_s, x_z, w, w_s, w_z, y_s, y_z = (given(inputs, i) for i in range(8))
  b = given(inputs, 8)
  xi, wi = _centered(x, x_z), _centered(w, w_z, [-1] + [1] * (w.ndim - 1))
  acc = conv(ctx, [xi, wi], attrs)[0].cast(dtypes.int32)
  if b is not None: acc = acc + b.cast(dtypes.int32).reshape(1, -1, *[1] * (x.ndim - 2))
  scale = x_s.cast(dtypes.float32) * (w_s.cast(dtypes.float32).reshape(1, -1, *[1] * (x.ndim - 2)) if w_s.ndim else w_s.cast(dtypes.float32))
  return [_requantize(acc, scale, y_s, y_z, y_z.dtype if y_z is not None else dtypes.uint8)]
