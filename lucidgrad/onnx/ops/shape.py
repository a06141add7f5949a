"""ONNX shape and indexing ops: Reshape, Flatten, (Un)Squeeze, Transpose, Concat, Split, Slice, the Gather/Scatter
family, Expand, Tile, Pad, Shape, Size, Range, OneHot, NonZero, TopK, Unique, Trilu, CumSum/CumProd, Constant*,
EyeLike, Compress, DepthToSpace/SpaceToDepth, ReverseSequence, CenterCropPad.

Shapes, axes, pads and counts are read on the host (ctx.const); the data itself stays in the Tensor graph, except where
the output's shape depends on the data (NonZero, Unique, Compress's condition)."""
from __future__ import annotations
import math
import numpy as np
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import axis, given, ints, scalar, onnx_dtype, const_like, same_dtype

def _fix_index(idx: Tensor, n: int) -> Tensor:
  """Negative indices counted from the end, as ONNX allows."""
  idx = idx.cast(dtypes.int64)
  return (idx < 0).where(idx + n, idx)

# ---------------------------------------------------------------- reshaping

def _reshape(x: Tensor, shape: list[int], allowzero: bool) -> Tensor:
  shape = [x.shape[i] if s == 0 and not allowzero else s for i, s in enumerate(shape)]
  if shape.count(-1) > 1: raise ValueError(f"ONNX Reshape: more than one -1 in shape {shape}")
  if -1 in shape:
    known = math.prod(s for s in shape if s != -1)
    shape[shape.index(-1)] = x.numel() // known if known else 0
  if math.prod(shape) != x.numel(): raise ValueError(f"ONNX Reshape: cannot reshape {x.shape} to {shape}")
  return x.reshape(shape)

@onnx_op("Reshape")
def reshape_v1(ctx, inputs, attrs): return [_reshape(inputs[0], list(attrs["shape"]), False)]

@onnx_op("Reshape", 5)
def reshape(ctx, inputs, attrs): return [_reshape(inputs[0], ints(ctx, inputs[1]), bool(attrs.get("allowzero", 0)))]

@onnx_op("Flatten")
def flatten(ctx, inputs, attrs):
  x = inputs[0]
  a = attrs.get("axis", 1)
  a = a + x.ndim if a < 0 else a
  if not 0 <= a <= x.ndim: raise ValueError(f"ONNX Flatten: axis {attrs.get('axis')} out of range for rank {x.ndim}")
  return [x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))]

def _axes_arg(ctx, inputs, attrs, since_input: bool) -> list[int] | None:
  if since_input: return ints(ctx, inputs[1]) if given(inputs, 1) is not None else None
  return list(attrs["axes"]) if "axes" in attrs else None

def _squeeze(since_input: bool):
  def op(ctx, inputs, attrs):
    x = inputs[0]
    ax = _axes_arg(ctx, inputs, attrs, since_input)
    ax = [i for i, s in enumerate(x.shape) if s == 1] if ax is None else [axis(a, x.ndim, "Squeeze") for a in ax]
    if any(x.shape[a] != 1 for a in ax): raise ValueError(f"ONNX Squeeze: axes {ax} of shape {x.shape} are not all 1")
    return [x.reshape([s for i, s in enumerate(x.shape) if i not in ax])]
  return op

def _unsqueeze(since_input: bool):
  def op(ctx, inputs, attrs):
    x = inputs[0]
    ax = _axes_arg(ctx, inputs, attrs, since_input) or []
    rank = x.ndim + len(ax)
    ax = sorted(axis(a, rank, "Unsqueeze") for a in ax)
    if len(set(ax)) != len(ax): raise ValueError(f"ONNX Unsqueeze: repeated axes {ax}")
    shape, it = [], iter(x.shape)
    for i in range(rank): shape.append(1 if i in ax else next(it))
    return [x.reshape(shape)]
  return op

onnx_op("Squeeze")(_squeeze(False)); onnx_op("Squeeze", 13)(_squeeze(True))
onnx_op("Unsqueeze")(_unsqueeze(False)); onnx_op("Unsqueeze", 13)(_unsqueeze(True))

@onnx_op("Transpose")
def transpose(ctx, inputs, attrs):
  x = inputs[0]
  return [x.permute(list(attrs.get("perm", range(x.ndim - 1, -1, -1))))]

@onnx_op("Concat")
def concat(ctx, inputs, attrs):
  xs = [x for x in inputs if x is not None]
  return [Tensor.cat(*xs, dim=axis(attrs["axis"], xs[0].ndim, "Concat"))]

def _split(x: Tensor, ax: int, sizes: list[int]) -> list[Tensor]:
  if sum(sizes) != x.shape[ax]: raise ValueError(f"ONNX Split: sizes {sizes} do not sum to {x.shape[ax]} (axis {ax} of {x.shape})")
  outs, start = [], 0
  for s in sizes:
    outs.append(x.shrink(tuple((start, start + s) if i == ax else (0, n) for i, n in enumerate(x.shape))))
    start += s
  return outs

def _split_op(split_from_input: bool):
  def op(ctx, inputs, attrs):
    x = inputs[0]
    ax = axis(attrs.get("axis", 0), x.ndim, "Split")
    sizes = (ints(ctx, inputs[1]) if given(inputs, 1) is not None else None) if split_from_input else attrs.get("split")
    if sizes is None and "num_outputs" in attrs:
      n = attrs["num_outputs"]
      each = -(-x.shape[ax] // n)
      sizes = [each] * (x.shape[ax] // each) + ([x.shape[ax] % each] if x.shape[ax] % each else [])
    if sizes is None:
      n = getattr(ctx, "num_outputs", None)  # the node's output count: only the runner knows it
      if n is None: raise NotImplementedError("ONNX Split: no 'split' and no 'num_outputs', and the runner's ctx gives no num_outputs")
      if x.shape[ax] % n: raise ValueError(f"ONNX Split: axis {ax} of {x.shape} does not split evenly into {n}")
      sizes = [x.shape[ax] // n] * n
    return _split(x, ax, list(sizes))
  return op

onnx_op("Split")(_split_op(False)); onnx_op("Split", 13)(_split_op(True))

def _slice(x: Tensor, starts, ends, axes, steps) -> Tensor:
  axes = list(range(len(starts))) if axes is None else [axis(a, x.ndim, "Slice") for a in axes]
  steps = [1] * len(starts) if steps is None else steps
  index = [slice(None)] * x.ndim
  for a, st, en, sp in zip(axes, starts, ends, steps):
    if sp == 0: raise ValueError("ONNX Slice: a step of 0")
    start, stop, step = slice(st, en, sp).indices(x.shape[a])
    index[a] = slice(start, stop if stop >= 0 else None, step)  # a stop of -1 here means "past index 0", not "the last"
  return x[tuple(index)] if any(s != slice(None) for s in index) else x

@onnx_op("Slice")
def slice_v1(ctx, inputs, attrs):
  return [_slice(inputs[0], list(attrs["starts"]), list(attrs["ends"]), attrs.get("axes"), None)]

@onnx_op("Slice", 10)
def slice_(ctx, inputs, attrs):
  opt = lambda i: ints(ctx, t) if (t := given(inputs, i)) is not None else None
  return [_slice(inputs[0], ints(ctx, inputs[1]), ints(ctx, inputs[2]), opt(3), opt(4))]

# ---------------------------------------------------------------- gather and scatter

@onnx_op("Gather")
def gather(ctx, inputs, attrs):
  x, idx = inputs
  ax = axis(attrs.get("axis", 0), x.ndim, "Gather")
  idx = _fix_index(idx, x.shape[ax])
  return [x.index_select(ax, idx.reshape(-1)).reshape(*x.shape[:ax], *idx.shape, *x.shape[ax + 1:])]

@onnx_op("GatherElements", 11)
def gather_elements(ctx, inputs, attrs):
  x, idx = inputs
  ax = axis(attrs.get("axis", 0), x.ndim, "GatherElements")
  return [x.gather(ax, _fix_index(idx, x.shape[ax]))]

def _nd_flat(x: Tensor, idx: Tensor, b: int) -> tuple[Tensor, int, tuple[int, ...]]:
  """GatherND/ScatterND's indices (batch..., q..., m) as flat row numbers into x viewed as (rows, rest)."""
  m = idx.shape[-1]
  dims = x.shape[b:b + m]
  if b + m > x.ndim: raise ValueError(f"ONNX GatherND/ScatterND: index depth {m} with batch_dims {b} exceeds rank {x.ndim}")
  idx = idx.cast(dtypes.int64)
  idx = (idx < 0).where(idx + const_like(idx, list(dims)), idx)
  strides = [math.prod(dims[k + 1:]) for k in range(m)]
  flat = (idx * const_like(idx, strides)).sum(-1) if m else Tensor.zeros(idx.shape[:-1], dtype=dtypes.int64, device=idx.device)
  nb, per = math.prod(x.shape[:b]), math.prod(dims)
  if b:  # each batch's rows start at batch * per
    flat = flat.reshape(nb, -1) + Tensor.arange(nb, dtype=dtypes.int64, device=idx.device).reshape(nb, 1) * per
  return flat.reshape(-1), nb * per, x.shape[b + m:]

@onnx_op("GatherND", 11)
def gather_nd(ctx, inputs, attrs):
  x, idx = inputs
  b = attrs.get("batch_dims", 0)
  flat, rows, rest = _nd_flat(x, idx, b)
  out = x.reshape(rows, math.prod(rest)).index_select(0, flat)
  return [out.reshape(*idx.shape[:-1], *rest)]

_SCATTER_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}

def _scatter(x: Tensor, ax: int, idx: Tensor, upd: Tensor, reduction: str, op: str) -> Tensor:
  if reduction == "none": return x.scatter(ax, idx, upd)
  if reduction not in _SCATTER_REDUCE: raise ValueError(f"ONNX {op}: unknown reduction {reduction!r}")
  return x.scatter_reduce(ax, idx, upd, _SCATTER_REDUCE[reduction], include_self=True)

def _scatter_elements(ctx, inputs, attrs):
  x, idx, upd = inputs
  ax = axis(attrs.get("axis", 0), x.ndim, "ScatterElements")
  return [_scatter(x, ax, _fix_index(idx, x.shape[ax]), upd, attrs.get("reduction", "none"), "ScatterElements")]

onnx_op("Scatter", 9)(_scatter_elements)
onnx_op("ScatterElements", 11)(_scatter_elements)

@onnx_op("ScatterND", 11)
def scatter_nd(ctx, inputs, attrs):
  x, idx, upd = inputs
  flat, rows, rest = _nd_flat(x, idx, 0)
  width = math.prod(rest)
  upd = upd.reshape(-1, width)
  index = flat.reshape(-1, 1).expand(flat.shape[0], width)
  return [_scatter(x.reshape(rows, width), 0, index, upd, attrs.get("reduction", "none"), "ScatterND").reshape(x.shape)]

# ---------------------------------------------------------------- broadcasting, tiling, padding

@onnx_op("Expand", 8)
def expand(ctx, inputs, attrs):
  x, shape = inputs[0], ints(ctx, inputs[1])
  rank = max(x.ndim, len(shape))
  xs, ss = (1,) * (rank - x.ndim) + tuple(x.shape), [1] * (rank - len(shape)) + shape
  for a, b in zip(xs, ss):
    if a != b and 1 not in (a, b): raise ValueError(f"ONNX Expand: shape {x.shape} does not broadcast to {shape}")
  return [x.reshape(xs).expand(*[max(a, b) if 0 not in (a, b) else 0 for a, b in zip(xs, ss)])]

@onnx_op("Tile", 6)
def tile(ctx, inputs, attrs): return [inputs[0].repeat(*ints(ctx, inputs[1]))]

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}

def _pad(x: Tensor, pads: list[int], mode: str, value, axes: list[int] | None = None) -> Tensor:
  if mode not in _PAD_MODES: raise ValueError(f"ONNX Pad: unknown mode {mode!r}")
  axes = list(range(x.ndim)) if axes is None else [axis(a, x.ndim, "Pad") for a in axes]
  if len(pads) != 2 * len(axes): raise ValueError(f"ONNX Pad: {len(pads)} pads for {len(axes)} axes")
  pairs = [(0, 0)] * x.ndim
  for k, a in enumerate(axes): pairs[a] = (pads[k], pads[k + len(axes)])
  if mode == "constant": return x.pad(pairs, value=value)
  return x.pad(pairs, mode=_PAD_MODES[mode])

@onnx_op("Pad")
def pad_v1(ctx, inputs, attrs):
  return [_pad(inputs[0], list(attrs.get("pads", attrs.get("paddings"))), attrs.get("mode", "constant"), attrs.get("value", 0.0))]

@onnx_op("Pad", 11)
def pad(ctx, inputs, attrs):
  x = inputs[0]
  value = scalar(ctx, v) if (v := given(inputs, 2)) is not None else 0
  axes = ints(ctx, a) if (a := given(inputs, 3)) is not None else None
  return [_pad(x, ints(ctx, inputs[1]), attrs.get("mode", "constant"), value, axes)]

# ---------------------------------------------------------------- shape values and generators

@onnx_op("Shape")
def shape(ctx, inputs, attrs):
  x = inputs[0]
  dims = list(x.shape)
  start, end = attrs.get("start", 0), attrs.get("end", len(dims))
  return [Tensor(np.array(dims[slice(*slice(start, end).indices(len(dims)))], dtype=np.int64), device=ctx.device)]

@onnx_op("Size")
def size(ctx, inputs, attrs): return [Tensor(np.array(math.prod(inputs[0].shape), dtype=np.int64), device=ctx.device)]

@onnx_op("Range", 11)
def range_(ctx, inputs, attrs):
  start, limit, delta = (scalar(ctx, t) for t in inputs)
  n = max(math.ceil((limit - start) / delta), 0)
  dt = inputs[0].dtype
  return [(Tensor.arange(n, dtype=dt if dt.is_float() else dtypes.int64, device=inputs[0].device) * delta + start).cast(dt)]

@onnx_op("OneHot", 9)
def one_hot(ctx, inputs, attrs):
  idx, depth, values = inputs
  d = int(scalar(ctx, depth))
  ax = attrs.get("axis", -1)
  ax = axis(ax, idx.ndim + 1, "OneHot")
  idx = idx.cast(dtypes.int64) if not idx.dtype.is_float() else idx.cast(dtypes.float64).trunc().cast(dtypes.int64)
  idx = (idx < 0).where(idx + d, idx).unsqueeze(ax)
  rng = Tensor.arange(d, dtype=dtypes.int64, device=idx.device).reshape([d if i == ax else 1 for i in range(idx.ndim)])
  off, on = values[0], values[1]
  return [(idx == rng).where(on, off)]

@onnx_op("ConstantOfShape", 9)
def constant_of_shape(ctx, inputs, attrs):
  value = attrs.get("value", np.zeros(1, np.float32)).reshape(-1)
  one = _from_numpy(np.asarray(value), ctx.device).reshape(())
  return [one.expand(*shape) if (shape := ints(ctx, inputs[0])) else one]

@onnx_op("Constant")
def constant(ctx, inputs, attrs):
  for key, v in attrs.items():
    if key == "value": arr = v
    elif key in ("value_float", "value_int"): arr = np.array(v, np.float32 if key == "value_float" else np.int64)
    elif key in ("value_floats", "value_ints"): arr = np.array(v, np.float32 if key == "value_floats" else np.int64)
    elif key in ("value_string", "value_strings"): return [np.array(v, dtype=object)]
    else: raise NotImplementedError(f"ONNX Constant: attribute {key!r} is not supported")
    if arr.dtype == object: return [arr]
    return [_from_numpy(arr, ctx.device)]
  raise ValueError("ONNX Constant: no value attribute")

def _from_numpy(arr: np.ndarray, device) -> Tensor:
  if arr.dtype.name == "bfloat16": return Tensor(np.ascontiguousarray(arr).view(np.uint16), device=device).bitcast(dtypes.bfloat16)
  return Tensor(np.ascontiguousarray(arr), device=device)

@onnx_op("EyeLike", 9)
def eye_like(ctx, inputs, attrs):
  x = inputs[0]
  dt = onnx_dtype(attrs["dtype"], "EyeLike") if "dtype" in attrs else x.dtype
  n, m = x.shape
  k = attrs.get("k", 0)
  r = Tensor.arange(n, dtype=dtypes.int64, device=x.device).reshape(n, 1)
  c = Tensor.arange(m, dtype=dtypes.int64, device=x.device).reshape(1, m)
  return [(c - r == k).cast(dt)]

@onnx_op("Trilu", 14)
def trilu(ctx, inputs, attrs):
  x = inputs[0]
  k = int(scalar(ctx, inputs[1])) if given(inputs, 1) is not None else 0
  if 0 in x.shape: return [x]
  return [x.triu(k) if attrs.get("upper", 1) else x.tril(k)]

def _shift(x: Tensor, ax: int, fill) -> Tensor:
  """x shifted one place along ax, `fill` entering at the start (an exclusive scan from an inclusive one)."""
  pairs = [(1, 0) if i == ax else (0, 0) for i in range(x.ndim)]
  return x.pad(pairs, value=fill).shrink(tuple((0, s) for s in x.shape))

def _cumulative(name: str, fn, fill):
  def op(ctx, inputs, attrs):
    x = inputs[0]
    ax = axis(int(scalar(ctx, inputs[1])), x.ndim, name)
    rev, excl = attrs.get("reverse", 0), attrs.get("exclusive", 0)
    y = x.flip(ax) if rev else x
    if excl: y = _shift(y, ax, fill)
    y = same_dtype(fn(y, ax), x)
    return [y.flip(ax) if rev else y]
  return op

onnx_op("CumSum", 11)(_cumulative("CumSum", lambda y, a: y.cumsum(a), 0))
onnx_op("CumProd", 26)(_cumulative("CumProd", lambda y, a: y.cumprod(a), 1))

# ---------------------------------------------------------------- data-dependent shapes

@onnx_op("NonZero", 9)
def nonzero(ctx, inputs, attrs):
  x = inputs[0]
  if x.ndim == 0: x = x.reshape(1)  # a 0-d input is indexed as a 1-element vector (NumPy's rule, the reference's)
  return [x.nonzero().cast(dtypes.int64).T.contiguous() if x.numel() else Tensor.zeros(x.ndim, 0, dtype=dtypes.int64, device=x.device)]

@onnx_op("Compress", 9)
def compress(ctx, inputs, attrs):
  x, cond = inputs
  keep = np.nonzero(np.asarray(ctx.const(cond)).reshape(-1))[0]
  if "axis" not in attrs:
    x, ax = x.reshape(-1), 0
  else: ax = axis(attrs["axis"], x.ndim, "Compress")
  keep = keep[keep < x.shape[ax]]
  return [x.index_select(ax, Tensor(keep.astype(np.int64), device=x.device))]

@onnx_op("TopK")
def topk_v1(ctx, inputs, attrs): return _topk(inputs[0], attrs["k"], attrs.get("axis", -1), True, True)

@onnx_op("TopK", 10)
def topk(ctx, inputs, attrs):
  return _topk(inputs[0], int(scalar(ctx, inputs[1])), attrs.get("axis", -1), bool(attrs.get("largest", 1)), bool(attrs.get("sorted", 1)))

def _topk(x: Tensor, k: int, ax: int, largest: bool, sort: bool) -> list:
  ax = axis(ax, x.ndim, "TopK")
  if not 0 <= k <= x.shape[ax]: raise ValueError(f"ONNX TopK: k={k} out of range for axis {ax} of {x.shape}")
  v, i = x.topk(k, dim=ax, largest=largest, sorted=True)
  return [v, i.cast(dtypes.int64)]

@onnx_op("Unique", 11)
def unique(ctx, inputs, attrs):
  # the outputs' shapes depend on the values: computed on the host from ctx.const
  x = inputs[0]
  a = np.asarray(ctx.const(x))
  if a.dtype.name == "bfloat16": a = a.astype(np.float32)  # exact; cast back below
  ax = attrs.get("axis")
  if ax is not None: ax = axis(ax, a.ndim, "Unique")
  vals, first, inverse, counts = np.unique(a if ax is not None else a.reshape(-1), return_index=True, return_inverse=True,
                                           return_counts=True, axis=ax)
  if not attrs.get("sorted", 1):  # the order of first occurrence
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order); rank[order] = np.arange(len(order))
    vals, first, counts, inverse = np.take(vals, order, axis=0 if ax is None else ax), first[order], counts[order], rank[inverse.reshape(-1)]
  dev = x.device
  return [Tensor(np.ascontiguousarray(vals), device=dev).cast(x.dtype), *(Tensor(v.reshape(-1).astype(np.int64), device=dev) for v in (first, inverse, counts))]

# ---------------------------------------------------------------- rearrangements

@onnx_op("DepthToSpace")
def depth_to_space(ctx, inputs, attrs):
  x, b = inputs[0], attrs["blocksize"]
  n, c, h, w = x.shape
  if attrs.get("mode", "DCR") == "DCR": y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
  else: y = x.reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
  return [y.reshape(n, c // (b * b), h * b, w * b)]

@onnx_op("SpaceToDepth")
def space_to_depth(ctx, inputs, attrs):
  x, b = inputs[0], attrs["blocksize"]
  n, c, h, w = x.shape
  y = x.reshape(n, c, h // b, b, w // b, b)
  y = y.permute(0, 3, 5, 1, 2, 4) if attrs.get("mode", "DCR") == "DCR" else y.permute(0, 1, 3, 5, 2, 4)
  return [y.reshape(n, c * b * b, h // b, w // b)]

@onnx_op("ReverseSequence", 10)
def reverse_sequence(ctx, inputs, attrs):
  x, lens = inputs
  ba, ta = attrs.get("batch_axis", 1), attrs.get("time_axis", 0)
  t = Tensor.arange(x.shape[ta], dtype=dtypes.int64, device=x.device)
  shape_t = [x.shape[ta] if i == ta else 1 for i in range(x.ndim)]
  shape_b = [x.shape[ba] if i == ba else 1 for i in range(x.ndim)]
  t, n = t.reshape(shape_t), lens.cast(dtypes.int64).reshape(shape_b)
  src = (t < n).where(n - 1 - t, t).expand(*x.shape)
  return [x.gather(ta, src)]

@onnx_op("CenterCropPad", 18)
def center_crop_pad(ctx, inputs, attrs):
  x, target = inputs[0], ints(ctx, inputs[1])
  axes = [axis(a, x.ndim, "CenterCropPad") for a in attrs.get("axes", range(x.ndim))]
  pairs = [(0, 0)] * x.ndim
  for a, want in zip(axes, target):
    d = want - x.shape[a]
    pairs[a] = (d // 2, d - d // 2) if d >= 0 else (-((-d) // 2), -((-d) - (-d) // 2))
  return [x.pad(pairs)]

@onnx_op("TensorScatter", 24)
def tensor_scatter(ctx, inputs, attrs):
  past, upd, pos = inputs[0], inputs[1], given(inputs, 2)
  ax = axis(attrs.get("axis", -2), past.ndim, "TensorScatter")
  mode, M, S = attrs.get("mode", "linear"), past.shape[ax], upd.shape[ax]
  if mode not in ("linear", "circular"): raise ValueError(f"ONNX TensorScatter: unknown mode {mode!r}")
  start = pos.cast(dtypes.int64) if pos is not None else Tensor.zeros(past.shape[0], dtype=dtypes.int64, device=past.device)
  idx = start.reshape([-1] + [1] * (upd.ndim - 1)) + Tensor.arange(S, dtype=dtypes.int64, device=past.device).reshape([S if i == ax else 1 for i in range(upd.ndim)])
  if mode == "circular": idx = idx % M
  return [past.scatter(ax, idx.expand(*upd.shape), upd)]
