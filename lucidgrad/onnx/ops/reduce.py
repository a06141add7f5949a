"""ONNX reductions (Reduce*, with axes as an attribute before opset 13/18 and as an input after) and ArgMax/ArgMin."""
from __future__ import annotations
import math
import numpy as np
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import axis, given, ints, const_like, same_dtype

def _axes(ctx, x: Tensor, inputs, attrs, from_input: bool, op: str) -> list[int] | None:
  """The axes to reduce, or None for the identity (noop_with_empty_axes with no axes)."""
  ax = (ints(ctx, a) if (a := given(inputs, 1)) is not None else []) if from_input else list(attrs.get("axes", []))
  if not ax: return None if from_input and attrs.get("noop_with_empty_axes", 0) else list(range(x.ndim))
  return sorted({axis(a, x.ndim, op) for a in ax})

def _lowest(x: Tensor, high: bool):
  """The identity of min (high) or max (not high) in x's dtype: what a reduction over no elements gives."""
  dt = x.dtype
  if dt.is_float(): return math.inf if high else -math.inf
  if dt == dtypes.bool: return high
  info = np.iinfo(dt.np)
  return info.max if high else info.min

# name -> (opset where axes became an input, fn(x, axes, keepdim) -> Tensor)
def _max(x, ax, kd):
  if 0 in [x.shape[a] for a in ax]: return Tensor.full(_kept(x, ax, kd), _lowest(x, False), dtype=x.dtype, device=x.device)
  return (x.cast(dtypes.uint8) if x.dtype == dtypes.bool else x).amax(ax, keepdim=kd)
def _min(x, ax, kd):
  if 0 in [x.shape[a] for a in ax]: return Tensor.full(_kept(x, ax, kd), _lowest(x, True), dtype=x.dtype, device=x.device)
  return (x.cast(dtypes.uint8) if x.dtype == dtypes.bool else x).amin(ax, keepdim=kd)
def _kept(x, ax, kd): return tuple(1 if i in ax else s for i, s in enumerate(x.shape) if kd or i not in ax)

_REDUCERS = {
  "ReduceSum": (13, lambda x, ax, kd: x.sum(ax, keepdim=kd)),
  "ReduceMean": (18, lambda x, ax, kd: x.mean(ax, keepdim=kd) if x.dtype.is_float() else x.sum(ax, keepdim=kd).div(
    math.prod(x.shape[a] for a in ax), rounding_mode="trunc")),
  "ReduceProd": (18, lambda x, ax, kd: x.prod(ax, keepdim=kd)),
  "ReduceMax": (18, _max), "ReduceMin": (18, _min),
  "ReduceL1": (18, lambda x, ax, kd: x.abs().sum(ax, keepdim=kd)),
  "ReduceL2": (18, lambda x, ax, kd: (x * x).sum(ax, keepdim=kd).sqrt() if x.dtype.is_float() else
               (x * x).sum(ax, keepdim=kd).float().sqrt()),
  "ReduceSumSquare": (18, lambda x, ax, kd: (x * x).sum(ax, keepdim=kd)),
  "ReduceLogSum": (18, lambda x, ax, kd: x.sum(ax, keepdim=kd).log()),
  "ReduceLogSumExp": (18, lambda x, ax, kd: x.logsumexp(ax, keepdim=kd) if 0 not in [x.shape[a] for a in ax] else
                      Tensor.full(_kept(x, ax, kd), -math.inf, dtype=x.dtype, device=x.device)),
}

def _reducer(name: str, fn, from_input: bool):
  def op(ctx, inputs, attrs):
    x = inputs[0]
    ax = _axes(ctx, x, inputs, attrs, from_input, name)
    if ax is None: return [x]
    out = fn(x, ax, bool(attrs.get("keepdims", 1)))
    return [out.cast(dtypes.bool) if x.dtype == dtypes.bool else same_dtype(out, x)]
  return op

for _name, (_since, _fn) in _REDUCERS.items():
  onnx_op(_name)(_reducer(_name, _fn, False))
  onnx_op(_name, _since)(_reducer(_name, _fn, True))

def _arg(name: str, largest: bool):
  def op(ctx, inputs, attrs):
    x = inputs[0]
    ax, kd = axis(attrs.get("axis", 0), x.ndim, name), bool(attrs.get("keepdims", 1))
    src = x.cast(dtypes.uint8) if x.dtype == dtypes.bool else x
    if attrs.get("select_last_index", 0):
      flipped = src.flip(ax)
      idx = const_like(x, x.shape[ax] - 1, dtypes.int64) - (flipped.argmax(ax, keepdim=kd) if largest else flipped.argmin(ax, keepdim=kd))
    else: idx = src.argmax(ax, keepdim=kd) if largest else src.argmin(ax, keepdim=kd)
    return [idx.cast(dtypes.int64)]
  return op

onnx_op("ArgMax")(_arg("ArgMax", True))
onnx_op("ArgMin")(_arg("ArgMin", False))
