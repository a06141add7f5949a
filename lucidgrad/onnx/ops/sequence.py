"""ONNX sequence and optional ops that need no subgraph: a sequence is a Python list of Tensors, an empty optional is
ctx.NONE_OPTIONAL (SequenceMap and the control ops are the runner's)."""
from __future__ import annotations
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import axis, given, ints, scalar

def _pos(ctx, seq: list, t, default: int, insert: bool, op: str) -> int:
  p = int(scalar(ctx, t)) if t is not None else default
  n = len(seq) + (1 if insert else 0)
  if not -n <= p < n: raise IndexError(f"ONNX {op}: position {p} out of range for a sequence of {len(seq)}")
  return p % n if n else 0

@onnx_op("SequenceEmpty", 11)
def sequence_empty(ctx, inputs, attrs): return [[]]

@onnx_op("SequenceConstruct", 11)
def sequence_construct(ctx, inputs, attrs): return [list(inputs)]

@onnx_op("SequenceInsert", 11)
def sequence_insert(ctx, inputs, attrs):
  seq, t = list(inputs[0]), inputs[1]
  p = _pos(ctx, seq, given(inputs, 2), len(seq), True, "SequenceInsert")
  return [seq[:p] + [t] + seq[p:]]

@onnx_op("SequenceAt", 11)
def sequence_at(ctx, inputs, attrs): return [inputs[0][_pos(ctx, inputs[0], inputs[1], 0, False, "SequenceAt")]]

@onnx_op("SequenceErase", 11)
def sequence_erase(ctx, inputs, attrs):
  seq = list(inputs[0])
  del seq[_pos(ctx, seq, given(inputs, 1), -1, False, "SequenceErase")]
  return [seq]

@onnx_op("SequenceLength", 11)
def sequence_length(ctx, inputs, attrs): return [Tensor(len(inputs[0]), dtype=dtypes.int64, device=ctx.device)]

@onnx_op("SplitToSequence", 11)
def split_to_sequence(ctx, inputs, attrs):
  x, split = inputs[0], given(inputs, 1)
  ax = axis(attrs.get("axis", 0), x.ndim, "SplitToSequence")
  if split is None:
    parts = x.split(1, ax)
    return [[p.squeeze(ax) for p in parts] if attrs.get("keepdims", 1) == 0 else list(parts)]
  s = ints(ctx, split)
  if split.ndim == 0: return [list(x.split(s[0], ax))]
  return [list(x.split(s, ax))]

@onnx_op("ConcatFromSequence", 11)
def concat_from_sequence(ctx, inputs, attrs):
  seq = inputs[0]
  if attrs.get("new_axis", 0):
    return [Tensor.stack(*seq, dim=axis(attrs["axis"], seq[0].ndim + 1, "ConcatFromSequence"))]
  return [Tensor.cat(*seq, dim=axis(attrs["axis"], seq[0].ndim, "ConcatFromSequence"))]

@onnx_op("Optional", 15)
def optional(ctx, inputs, attrs):
  x = given(inputs, 0)
  return [ctx.NONE_OPTIONAL if x is None else x]

@onnx_op("OptionalHasElement", 15)
def optional_has_element(ctx, inputs, attrs):
  x = given(inputs, 0)
  return [Tensor(x is not None and x is not ctx.NONE_OPTIONAL, device=ctx.device)]

@onnx_op("OptionalGetElement", 15)
def optional_get_element(ctx, inputs, attrs):
  x = inputs[0]
  if x is None or x is ctx.NONE_OPTIONAL: raise ValueError("ONNX OptionalGetElement: the optional is empty")
  return [x]

