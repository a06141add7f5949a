"""ONNX control flow (If, Loop, Scan), sequence ops and optional ops, registered with onnx_op. Subgraphs run through
ctx.run_graph, which lets them read the enclosing scope's values by name. Conditions and trip counts are read on the
host (ctx.const): a branch or an iteration count must be known to build the graph that follows."""
from __future__ import annotations
import numpy as np
from lucidgrad.tensor import Tensor
from lucidgrad.dtype import dtypes
from lucidgrad.onnx.ops import onnx_op

def _scalar(ctx, x, what: str, op: str):
  v = np.asarray(ctx.const(x))
  if v.size != 1: raise ValueError(f"{op}: {what} must hold one value, got shape {v.shape}")
  return v.reshape(()).item()

def _int_tensor(v: int, ctx) -> Tensor: return Tensor(np.array(v, np.int64), device=ctx.device)

def _realize(values: list):
  """Realize the Tensors among values (a loop's state), so each iteration builds on buffers, not on every earlier one."""
  ts = [t for v in values for t in (v if isinstance(v, list) else [v]) if isinstance(t, Tensor)]
  if ts: ts[0].realize(*ts[1:])

# ---- If ----
@onnx_op("If", 1)
def if_(ctx, inputs, attrs):
  cond = inputs[0]
  if cond is None: raise ValueError("If: the condition input is missing")
  branch = attrs["then_branch"] if _scalar(ctx, cond, "the condition", "If") else attrs["else_branch"]
  return ctx.run_graph(branch, [])

# ---- Loop ----
@onnx_op("Loop", 1)
def loop(ctx, inputs, attrs):
  body = attrs["body"]
  m, cond, state = inputs[0], inputs[1], list(inputs[2:])
  trip = None if m is None else int(_scalar(ctx, m, "the trip count M", "Loop"))
  keep_going = True if cond is None else bool(_scalar(ctx, cond, "the condition", "Loop"))
  n_state = len(state)
  if len(body.input) != n_state + 2: raise ValueError(f"Loop: the body takes {len(body.input)} inputs for {n_state} loop-carried values (needs {n_state + 2})")
  n_scan = len(body.output) - 1 - n_state
  if n_scan < 0: raise ValueError(f"Loop: the body has {len(body.output)} outputs for {n_state} loop-carried values (needs at least {n_state + 1})")
  scans: list[list] = [[] for _ in range(n_scan)]
  it = 0
  cond_t = Tensor(np.array(keep_going), device=ctx.device)
  while keep_going and (trip is None or it < trip):
    outs = ctx.run_graph(body, [_int_tensor(it, ctx), cond_t, *state])
    cond_t, state = outs[0], list(outs[1:1 + n_state])
    for k in range(n_scan): scans[k].append(outs[1 + n_state + k])
    it += 1
    if cond is not None:  # a while loop: the body's condition decides
      _realize([cond_t, *state])
      keep_going = bool(_scalar(ctx, cond_t, "the body's condition output", "Loop"))
  return state + [_stack(s, body.output[1 + n_state + k], "Loop") for k, s in enumerate(scans)]

def _stack(values: list, vi, op: str):
  """Per-iteration values stacked on a new leading axis; none (zero iterations): an empty tensor of the declared type."""
  if values:
    if isinstance(values[0], Tensor): return Tensor.stack(*values, dim=0) if len(values) > 1 else values[0].unsqueeze(0)
    return np.stack([np.asarray(v) for v in values])
  tt = vi.type.tensor_type if vi.type is not None else None
  from lucidgrad.onnx.runner import ONNX_TO_DTYPE
  dt = ONNX_TO_DTYPE.get(tt.elem_type, dtypes.float32) if tt is not None else dtypes.float32
  dims = [d.dim_value for d in tt.shape.dim] if tt is not None and tt.shape is not None else []
  if any(d is None for d in dims): dims = []
  return Tensor.zeros(0, *dims, dtype=dt)

# ---- Scan ----
def _scan_core(ctx, body, state: list, scan_in: list, attrs, n_scan_in: int, opset9: bool):
  n_state, n_out = len(state), len(body.output) - len(state)
  in_axes = list(attrs.get("scan_input_axes", [0] * n_scan_in)) if opset9 else [0] * n_scan_in
  in_dirs = list(attrs.get("scan_input_directions", [0] * n_scan_in))
  out_axes = list(attrs.get("scan_output_axes", [0] * n_out)) if opset9 else [0] * n_out
  out_dirs = list(attrs.get("scan_output_directions", [0] * n_out))
  if not scan_in: raise ValueError("Scan: needs at least one scan input")
  in_axes = [a + x.ndim if a < 0 else a for a, x in zip(in_axes, scan_in)]
  lens = {x.shape[a] for a, x in zip(in_axes, scan_in)}
  if len(lens) != 1: raise ValueError(f"Scan: scan inputs have different lengths {sorted(lens)} along their scan axes")
  n = lens.pop()
  outs: list[list] = [[] for _ in range(n_out)]
  for i in range(n):
    slices = [x[(slice(None),) * a + (n - 1 - i if d else i,)] for x, a, d in zip(scan_in, in_axes, in_dirs)]
    res = ctx.run_graph(body, [*state, *slices])
    state = list(res[:n_state])
    for k in range(n_out): outs[k].append(res[n_state + k])
  results = []
  for k, vals in enumerate(outs):
    if out_dirs[k]: vals = vals[::-1]
    if not vals: results.append(_stack([], body.output[n_state + k], "Scan")); continue
    axis = out_axes[k] + vals[0].ndim + 1 if out_axes[k] < 0 else out_axes[k]
    results.append(Tensor.stack(*vals, dim=axis) if len(vals) > 1 else vals[0].unsqueeze(axis))
  return state + results

@onnx_op("Scan", 9)
def scan(ctx, inputs, attrs):
  body, n_scan_in = attrs["body"], attrs["num_scan_inputs"]
  n_state = len(inputs) - n_scan_in
  return _scan_core(ctx, body, list(inputs[:n_state]), list(inputs[n_state:]), attrs, n_scan_in, True)

@onnx_op("Scan", 8)
def scan8(ctx, inputs, attrs):
  # opset 8: a leading batch axis on every state and scan input, and optional per-batch sequence lengths
  body, n_scan_in = attrs["body"], attrs["num_scan_inputs"]
  seq_lens, rest = inputs[0], inputs[1:]
  n_state = len(rest) - n_scan_in
  state, scan_in = rest[:n_state], rest[n_state:]
  batch = scan_in[0].shape[0]
  lens = [int(v) for v in np.asarray(ctx.const(seq_lens)).reshape(-1)] if seq_lens is not None else [scan_in[0].shape[1]] * batch
  per_batch = []
  for b in range(batch):
    sin = [x[b, :lens[b]] for x in scan_in]
    per_batch.append(_scan_core(ctx, body, [s[b] for s in state], sin, attrs, n_scan_in, False))
  return [Tensor.stack(*[r[k] for r in per_batch], dim=0) for k in range(len(per_batch[0]))] if per_batch else []

# ---- sequences (Python lists of Tensors) ----
def _seq(x, op: str) -> list:
  if not isinstance(x, list): raise TypeError(f"{op}: expected a sequence input, got {type(x).__name__}")
  return x

def _pos(ctx, p, n: int, op: str, insert: bool = False) -> int:
  i = int(_scalar(ctx, p, "the position", op))
  lo, hi = -n, n if insert else n - 1
  if not lo <= i <= hi: raise IndexError(f"{op}: position {i} is out of range for a sequence of length {n} ([{lo}, {hi}])")
  return i + n if i < 0 else i

@onnx_op("SequenceConstruct", 11)
def sequence_construct(ctx, inputs, attrs): return [list(inputs)]

@onnx_op("SequenceEmpty", 11)
def sequence_empty(ctx, inputs, attrs): return [[]]

@onnx_op("SequenceAt", 11)
def sequence_at(ctx, inputs, attrs):
  seq = _seq(inputs[0], "SequenceAt")
  return [seq[_pos(ctx, inputs[1], len(seq), "SequenceAt")]]

@onnx_op("SequenceInsert", 11)
def sequence_insert(ctx, inputs, attrs):
  seq = list(_seq(inputs[0], "SequenceInsert"))
  i = len(seq) if len(inputs) < 3 or inputs[2] is None else _pos(ctx, inputs[2], len(seq), "SequenceInsert", insert=True)
  seq.insert(i, inputs[1])
  return [seq]

@onnx_op("SequenceErase", 11)
def sequence_erase(ctx, inputs, attrs):
  seq = list(_seq(inputs[0], "SequenceErase"))
  if not seq: raise IndexError("SequenceErase: the sequence is empty")
  i = len(seq) - 1 if len(inputs) < 2 or inputs[1] is None else _pos(ctx, inputs[1], len(seq), "SequenceErase")
  del seq[i]
  return [seq]

@onnx_op("SequenceLength", 11)
def sequence_length(ctx, inputs, attrs): return [_int_tensor(len(_seq(inputs[0], "SequenceLength")), ctx)]

@onnx_op("SplitToSequence", 11)
def split_to_sequence(ctx, inputs, attrs):
  x, split = inputs[0], inputs[1] if len(inputs) > 1 else None
  axis = attrs.get("axis", 0)
  axis = axis + x.ndim if axis < 0 else axis
  if not 0 <= axis < x.ndim: raise ValueError(f"SplitToSequence: axis {attrs.get('axis', 0)} is out of range for rank {x.ndim}")
  n = x.shape[axis]
  if split is None:
    parts = [x.narrow(axis, i, 1) for i in range(n)]
    return [parts if attrs.get("keepdims", 1) else [p.squeeze(axis) for p in parts]]
  s = np.asarray(ctx.const(split)).astype(np.int64)
  if s.ndim == 0:
    if s <= 0: raise ValueError(f"SplitToSequence: split must be positive, got {int(s)}")
    sizes = [int(s)] * (n // int(s)) + ([n % int(s)] if n % int(s) else [])
  else:
    sizes = [int(v) for v in s]
    if sum(sizes) != n or any(v < 0 for v in sizes): raise ValueError(f"SplitToSequence: split {sizes} does not add up to dim {axis} of size {n}")
  out, start = [], 0
  for sz in sizes: out.append(x.narrow(axis, start, sz)); start += sz
  return [out]

@onnx_op("ConcatFromSequence", 11)
def concat_from_sequence(ctx, inputs, attrs):
  seq = _seq(inputs[0], "ConcatFromSequence")
  if not seq: raise ValueError("ConcatFromSequence: the sequence is empty")
  axis, new_axis = attrs["axis"], attrs.get("new_axis", 0)
  rank = seq[0].ndim + (1 if new_axis else 0)
  if not -rank <= axis < rank: raise ValueError(f"ConcatFromSequence: axis {axis} is out of range for rank {rank}")
  axis = axis + rank if axis < 0 else axis
  if new_axis: return [Tensor.stack(*seq, dim=axis) if len(seq) > 1 else seq[0].unsqueeze(axis)]
  return [Tensor.cat(*seq, dim=axis) if len(seq) > 1 else seq[0]]

@onnx_op("SequenceMap", 17)
def sequence_map(ctx, inputs, attrs):
  body = attrs["body"]
  first = _seq(inputs[0], "SequenceMap")
  n = len(first)
  for k, x in enumerate(inputs[1:], 1):
    if isinstance(x, list) and len(x) != n: raise ValueError(f"SequenceMap: input {k} is a sequence of length {len(x)}, input 0 of length {n}")
  outs: list[list] = [[] for _ in body.output]
  for i in range(n):
    res = ctx.run_graph(body, [x[i] if isinstance(x, list) else x for x in inputs])
    for k, r in enumerate(res): outs[k].append(r)
  return outs

# ---- optionals: a value, or ctx.NONE_OPTIONAL ----
@onnx_op("Optional", 15)
def optional(ctx, inputs, attrs):
  return [inputs[0] if inputs and inputs[0] is not None else ctx.NONE_OPTIONAL]

def _has(ctx, x) -> bool: return x is not None and x is not ctx.NONE_OPTIONAL

@onnx_op("OptionalHasElement", 15)
def optional_has_element(ctx, inputs, attrs):
  x = inputs[0] if inputs else None
  if x is None and ctx.opset < 18: raise ValueError("OptionalHasElement: the input is required before opset 18")
  return [Tensor(np.array(_has(ctx, x)), device=ctx.device)]

@onnx_op("OptionalGetElement", 15)
def optional_get_element(ctx, inputs, attrs):
  x = inputs[0] if inputs else None
  if not _has(ctx, x): raise ValueError("OptionalGetElement: the optional is empty")
  return [x]

# ---- Gradient (ai.onnx.preview.training): lucidgrad's autodiff on the lazy graph that computed y ----
@onnx_op("Gradient", 1, domain="ai.onnx.preview.training")
def gradient(ctx, inputs, attrs):
  xs, y_name = attrs["xs"], attrs["y"]
  y = ctx.scope.get(y_name)
  if not isinstance(y, Tensor): raise ValueError(f"Gradient: y {y_name!r} is not a tensor computed before this node")
  seed = Tensor.ones(*y.shape, dtype=y.dtype, device=ctx.device)
  out = []
  for name, x in zip(xs, inputs[:len(xs)]):
    if not isinstance(x, Tensor) or not x.dtype.is_float(): raise NotImplementedError(f"Gradient: x {name!r} must be a float tensor")
    try: out.append(y.gradient(x, gradient=seed)[0])
    except RuntimeError: out.append(x.zeros_like())  # y does not depend on x
  return out
