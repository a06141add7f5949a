"""ONNX Resize (every mode, coordinate transform, nearest rounding, cubic, antialias, exclude_outside,
tf_crop_and_resize, axes, keep_aspect_ratio_policy) and Upsample.

Resize is separable: each resized axis is one gather of a few taps per output position and a weighted sum. The taps
and weights depend only on the shapes and attributes, so they are computed on the host as small NumPy tables."""
from __future__ import annotations
import math
import numpy as np
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import axis as norm_axis, given, ints

def _source_coords(mode: str, o: np.ndarray, scale: float, L: int, O: int, roi) -> np.ndarray:
  """Each output index's position in input coordinates."""
  out_f = scale * L
  if mode == "half_pixel": return (o + 0.5) / scale - 0.5
  if mode == "asymmetric": return o / scale
  if mode == "align_corners": return np.zeros_like(o) if out_f == 1 else o * (L - 1) / (out_f - 1)
  if mode == "pytorch_half_pixel": return np.full_like(o, -0.5) if out_f == 1 else (o + 0.5) / scale - 0.5
  if mode == "half_pixel_symmetric":
    return L / 2 * (1 - O / out_f) + (o + 0.5) / scale - 0.5
  if mode == "tf_crop_and_resize":
    start, end = roi
    x = np.full_like(o, (end - start) * (L - 1) / 2) if out_f == 1 else o * (end - start) * (L - 1) / (out_f - 1)
    return x + start * (L - 1)
  raise ValueError(f"ONNX Resize: unknown coordinate_transformation_mode {mode!r}")

def _cubic(d: np.ndarray, A: float) -> np.ndarray:
  """The cubic convolution kernel at distances d."""
  d = np.abs(d)
  near = ((A + 2) * d - (A + 3)) * d * d + 1
  far = ((A * d - 5 * A) * d + 8 * A) * d - 4 * A
  return np.where(d <= 1, near, np.where(d < 2, far, 0.0))

def _taps(attrs, mode: str, x: np.ndarray, scale: float, L: int) -> tuple[np.ndarray, np.ndarray]:
  """(indices, weights), each (O, n): the input positions each output reads and their weights."""
  base = np.ceil(x).astype(np.int64) - 1      # the left neighbour; an exact integer counts as the right one (ratio 1)
  ratio = x - base
  if mode == "nearest":
    nm = attrs.get("nearest_mode", "round_prefer_floor")
    right = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5, "floor": ratio == 1, "ceil": np.ones_like(ratio, bool)}
    if nm not in right: raise ValueError(f"ONNX Resize: unknown nearest_mode {nm!r}")
    pick = np.where(right[nm] | (ratio == 1), base + 1, base)
    return np.clip(pick, 0, L - 1)[:, None], np.ones((len(x), 1))
  s = min(scale, 1.0) if attrs.get("antialias", 0) else 1.0
  reach = 1 if mode == "linear" else 2
  first = math.floor(-reach / s) + 1           # the taps base+first .. base+1-first
  offs = np.arange(first, 2 - first)
  dist = (offs[None, :] - ratio[:, None]) * s
  if mode == "linear": w = np.clip(1 - np.abs(dist), 0, 1)
  elif mode == "cubic": w = _cubic(dist, attrs.get("cubic_coeff_a", -0.75))
  else: raise ValueError(f"ONNX Resize: unknown mode {mode!r}")
  idx = base[:, None] + offs[None, :]
  if attrs.get("exclude_outside", 0): w = np.where((idx < 0) | (idx >= L), 0.0, w)
  total = w.sum(1, keepdims=True)
  w = w / np.where(total == 0, 1.0, total)
  return np.clip(idx, 0, L - 1), w

def _resize_axis(x: Tensor, ax: int, idx: np.ndarray, w: np.ndarray, extrapolate: np.ndarray | None, fill: float) -> Tensor:
  O, n = idx.shape
  if n == 1 or np.all((w == 0) | (w == 1)):  # one tap per output: a plain gather
    pick = idx[np.arange(O), w.argmax(1)]
    y = x.index_select(ax, Tensor(pick, device=x.device))
  else:
    g = x.index_select(ax, Tensor(idx.reshape(-1), device=x.device))
    g = g.reshape(*x.shape[:ax], O, n, *x.shape[ax + 1:])
    wt = Tensor(w.astype(np.float64 if x.dtype == dtypes.float64 else np.float32), device=x.device).reshape(O, n, *[1] * (x.ndim - ax - 1))
    y = (g * wt).sum(ax + 1)
  if extrapolate is not None and extrapolate.any():
    mask = Tensor(extrapolate, device=x.device).reshape(O, *[1] * (x.ndim - ax - 1))
    y = mask.where(Tensor(fill, dtype=y.dtype, device=x.device), y)
  return y

def resize(x: Tensor, attrs, scales: list[float] | None, sizes: list[int] | None, roi: list[float] | None, axes: list[int] | None) -> Tensor:
  """Resize x over `axes` (default all) to `sizes` or by `scales`, as ONNX Resize with attrs."""
  r = x.ndim
  axes = list(range(r)) if axes is None else [norm_axis(a, r, "Resize") for a in axes]
  mode, ctm = attrs.get("mode", "nearest"), attrs.get("coordinate_transformation_mode", "half_pixel")
  if sizes is not None:
    if len(sizes) != len(axes): raise ValueError(f"ONNX Resize: {len(sizes)} sizes for {len(axes)} axes")
    sc = [o / x.shape[a] for o, a in zip(sizes, axes)]
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
      if policy not in ("not_larger", "not_smaller"): raise ValueError(f"ONNX Resize: unknown keep_aspect_ratio_policy {policy!r}")
      s = min(sc) if policy == "not_larger" else max(sc)
      sc, sizes = [s] * len(axes), [int(s * x.shape[a] + 0.5) for a in axes]
  elif scales is not None:
    if len(scales) != len(axes): raise ValueError(f"ONNX Resize: {len(scales)} scales for {len(axes)} axes")
    sc, sizes = list(scales), [int(s * x.shape[a]) for s, a in zip(scales, axes)]
  else: raise ValueError("ONNX Resize: neither scales nor sizes given")
  if roi is not None and len(roi) == 2 * r and len(axes) != r: roi = [v for k in (0, r) for v in [roi[k + a] for a in axes]]
  y = x if x.dtype.is_float() else x.float()
  for k, (a, s, O) in enumerate(zip(axes, sc, sizes)):
    L = y.shape[a]
    box = (roi[k], roi[k + len(axes)]) if roi is not None and len(roi) else (0.0, 1.0)
    if math.isclose(s, 1.0) and O == L and (ctm != "tf_crop_and_resize" or box == (0.0, 1.0)): continue
    if O == 0: y = y.shrink(tuple((0, 0) if i == a else (0, d) for i, d in enumerate(y.shape))); continue
    xs = _source_coords(ctm, np.arange(O, dtype=np.float64), s, L, O, box)
    idx, w = _taps(attrs, mode, xs, s, L)
    outside = ((xs < 0) | (xs > L - 1)) if ctm == "tf_crop_and_resize" else None
    y = _resize_axis(y, a, idx, w, outside, attrs.get("extrapolation_value", 0.0))
  if y.dtype == x.dtype: return y
  if x.dtype.is_int():
    info = np.iinfo(x.dtype.np)
    y = y.round().clip(int(info.min), int(info.max))
  return y.cast(x.dtype)

def _host_list(ctx, t) -> list | None:
  if t is None: return None
  v = np.asarray(ctx.const(t)).reshape(-1)
  return v.tolist() if v.size else None

@onnx_op("Resize", 10)
def resize_v10(ctx, inputs, attrs):
  a = dict(attrs, coordinate_transformation_mode="asymmetric", nearest_mode="floor")
  return [resize(inputs[0], a, _host_list(ctx, inputs[1]), None, None, None)]

@onnx_op("Resize", 11)
def resize_op(ctx, inputs, attrs):
  x = inputs[0]
  roi, scales, sizes = (_host_list(ctx, given(inputs, i)) for i in (1, 2, 3))
  if scales is not None and sizes is not None: raise ValueError("ONNX Resize: only one of scales and sizes may be given")
  return [resize(x, attrs, scales, [int(v) for v in sizes] if sizes is not None else None, roi, attrs.get("axes"))]

@onnx_op("Upsample", 7)
def upsample_v7(ctx, inputs, attrs):
  return [resize(inputs[0], dict(attrs, coordinate_transformation_mode="asymmetric", nearest_mode="floor"), list(attrs["scales"]), None, None, None)]

@onnx_op("Upsample", 9)
def upsample(ctx, inputs, attrs):
  return [resize(inputs[0], dict(attrs, coordinate_transformation_mode="asymmetric", nearest_mode="floor"), _host_list(ctx, inputs[1]), None, None, None)]

# ---------------------------------------------------------------- GridSample, AffineGrid, Col2Im

def _reflect(v: Tensor, lo: float, hi: float) -> Tensor:
  """v folded back into [lo, hi] by reflecting at the nearer border until it lands inside."""
  rng = hi - lo
  if rng <= 0: return Tensor.zeros_like(v) + lo
  def fold(d: Tensor, near: float, far: float) -> Tensor:
    n = (d / rng).trunc()
    r = d - n * rng
    return ((n % 2) == 0).where(near + r * (1 if near < far else -1), far - r * (1 if near < far else -1))
  below, above = fold(lo - v, lo, hi), fold(v - hi, hi, lo)
  return (v < lo).where(below, (v > hi).where(above, v))

_GS_MODES = {"bilinear": "linear", "bicubic": "cubic", "linear": "linear", "cubic": "cubic", "nearest": "nearest"}

@onnx_op("GridSample", 16)
def grid_sample(ctx, inputs, attrs):
  x, grid = inputs
  mode, pad = _GS_MODES.get(attrs.get("mode", "linear" if ctx.opset >= 20 else "bilinear")), attrs.get("padding_mode", "zeros")
  if mode is None: raise ValueError(f"ONNX GridSample: unknown mode {attrs.get('mode')!r}")
  if pad not in ("zeros", "border", "reflection"): raise ValueError(f"ONNX GridSample: unknown padding_mode {pad!r}")
  ac = bool(attrs.get("align_corners", 0))
  N, C, dims = x.shape[0], x.shape[1], list(x.shape[2:])
  nd, out = len(dims), list(grid.shape[1:-1])
  g = grid.cast(dtypes.float64) if x.dtype == dtypes.float64 else grid.cast(dtypes.float32)
  taps_per_dim = []   # per spatial dim: [(index Tensor, weight Tensor or None)]
  for i, L in enumerate(dims):
    v = g[..., nd - 1 - i]                                   # the grid lists x (the last axis) first
    v = (v + 1) / 2 * (L - 1) if ac else ((v + 1) * L - 1) / 2
    lo, hi = (0.0, L - 1.0) if ac else (-0.5, L - 0.5)
    if mode == "nearest": v = v.round()                     # half to even, as the reference's rint
    if pad == "border": v = v.clip(0, L - 1)
    elif pad == "reflection": v = _reflect(v, lo, hi)
    if mode == "nearest": base, offs, w = v.trunc(), [0], None
    else:
      base = v.floor()
      t = v - base
      offs = [0, 1] if mode == "linear" else [-1, 0, 1, 2]
      if mode == "linear": w = [1 - t, t]
      else:
        A = -0.75
        cub = lambda d: ((A + 2) * d - (A + 3)) * d * d + 1
        far = lambda d: ((A * d - 5 * A) * d + 8 * A) * d - 4 * A
        w = [far(t + 1), cub(t), cub(1 - t), far(2 - t)]
    taps = []
    for k, o in enumerate(offs):
      idx = base + o
      if pad == "zeros": valid, idx = (idx >= 0) & (idx <= L - 1), idx.clip(0, L - 1)
      elif pad == "border": valid, idx = None, idx.clip(0, L - 1)
      else: valid, idx = None, _reflect(idx, lo, hi).trunc().clip(0, L - 1)
      wk = w[k] if w is not None else None
      if valid is not None: wk = valid.where(wk if wk is not None else Tensor.ones_like(idx), Tensor.zeros_like(idx))
      taps.append((idx.cast(dtypes.int64), wk))
    taps_per_dim.append(taps)
  flat_x = x.reshape(N, C, math.prod(dims))
  M = math.prod(out)
  strides = [math.prod(dims[i + 1:]) for i in range(nd)]
  total = None
  def combine(i: int, flat, weight):
    nonlocal total
    if i == nd:
      vals = flat_x.gather(2, flat.reshape(N, 1, M).expand(N, C, M)).cast(g.dtype)
      term = vals * weight.reshape(N, 1, M) if weight is not None else vals
      total = term if total is None else total + term
      return
    for idx, w in taps_per_dim[i]:
      combine(i + 1, idx * strides[i] if flat is None else flat + idx * strides[i], w if weight is None else (weight * w if w is not None else weight))
  combine(0, None, None)
  return [total.reshape(N, C, *out).cast(x.dtype)]

@onnx_op("AffineGrid", 20)
def affine_grid(ctx, inputs, attrs):
  theta, size = inputs[0], ints(ctx, inputs[1])
  ac = bool(attrs.get("align_corners", 0))
  N, dims = size[0], size[2:]
  dt = theta.dtype
  def coords(L: int) -> Tensor:
    k = Tensor.arange(L, dtype=dtypes.float64, device=theta.device)
    return (k * (2 / (L - 1)) - 1 if L > 1 else k * 0) if ac else (k * 2 + 1) / L - 1
  nd = len(dims)
  axes_c = [coords(L).reshape([L if j == i else 1 for j in range(nd)]).expand(*dims) for i, L in enumerate(dims)]
  # the homogeneous point (x, y[, z], 1): x runs along the last spatial axis
  pts = Tensor.stack(*axes_c[::-1], Tensor.ones(*dims, dtype=dtypes.float64, device=theta.device), dim=-1).reshape(-1, nd + 1)
  out = pts.cast(dt) @ theta.transpose(1, 2)     # (N, P, nd)
  return [out.reshape(N, *dims, nd)]

@onnx_op("Col2Im", 18)
def col2im(ctx, inputs, attrs):
  x, img, blk = inputs[0], ints(ctx, inputs[1]), ints(ctx, inputs[2])
  nd = len(img)
  d = list(attrs.get("dilations", [1] * nd)); s = list(attrs.get("strides", [1] * nd)); p = list(attrs.get("pads", [0] * 2 * nd))
  padded = [img[i] + p[i] + p[i + nd] for i in range(nd)]
  counts = [(padded[i] - d[i] * (blk[i] - 1) - 1) // s[i] + 1 for i in range(nd)]
  # the padded image position each (block element, column) adds into: a table from the shapes alone
  kpos = np.stack(np.meshgrid(*[np.arange(b) for b in blk], indexing="ij"), -1).reshape(-1, nd)
  cpos = np.stack(np.meshgrid(*[np.arange(c) for c in counts], indexing="ij"), -1).reshape(-1, nd)
  pos = cpos[None, :, :] * np.array(s) + kpos[:, None, :] * np.array(d)
  flat = (pos * np.array([math.prod(padded[i + 1:]) for i in range(nd)])).sum(-1).reshape(-1)
  N, C = x.shape[0], x.shape[1] // math.prod(blk)
  vals = x.reshape(N, C, -1)
  idx = Tensor(flat.astype(np.int64), device=x.device).reshape(1, 1, -1).expand(*vals.shape)
  out = Tensor.zeros(N, C, math.prod(padded), dtype=x.dtype, device=x.device).scatter_reduce(2, idx, vals, "sum")
  out = out.reshape(N, C, *padded)
  return [out.shrink(((0, N), (0, C), *[(p[i], p[i] + img[i]) for i in range(nd)]))]

# ---------------------------------------------------------------- NonMaxSuppression

def _corners(b: np.ndarray, center: bool) -> np.ndarray:
  """Boxes as (y1, x1, y2, x2) with y1<=y2, x1<=x2."""
  if center:
    xc, yc, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], -1)
  return np.stack([np.minimum(b[..., 0], b[..., 2]), np.minimum(b[..., 1], b[..., 3]), np.maximum(b[..., 0], b[..., 2]), np.maximum(b[..., 1], b[..., 3])], -1)

@onnx_op("NonMaxSuppression", 10)
def non_max_suppression(ctx, inputs, attrs):
  # greedy and data-dependent in its output's length: run on the host over the boxes' and scores' values
  boxes, scores = np.asarray(ctx.const(inputs[0]), np.float64), np.asarray(ctx.const(inputs[1]), np.float64)
  opt = lambda i, d: float(np.asarray(ctx.const(t)).reshape(-1)[0]) if (t := given(inputs, i)) is not None and np.asarray(ctx.const(t)).size else d
  limit, iou_max, min_score = int(opt(2, 0)), opt(3, 0.0), opt(4, None)
  box = _corners(boxes, bool(attrs.get("center_point_box", 0)))
  area = (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])
  picked = []
  for b in range(scores.shape[0]):
    for c in range(scores.shape[1]):
      s = scores[b, c]
      order = [i for i in sorted(range(len(s)), key=lambda i: (-s[i], i)) if min_score is None or s[i] > min_score]
      kept: list[int] = []
      for i in order:
        if len(kept) >= limit: break
        y1, x1 = np.maximum(box[b, i, :2], box[b, kept, :2]).T if kept else (None, None)
        if kept:
          y2, x2 = np.minimum(box[b, i, 2:], box[b, kept, 2:]).T
          inter = np.clip(y2 - y1, 0, None) * np.clip(x2 - x1, 0, None)
          union = area[b, i] + area[b, kept] - inter
          iou = np.where((inter > 0) & (area[b, i] > 0) & (area[b, kept] > 0) & (union > 0), inter / np.where(union > 0, union, 1), 0)
          if (iou > iou_max).any(): continue
        kept.append(i)
      picked += [(b, c, i) for i in kept]
  return [Tensor(np.array(picked, dtype=np.int64).reshape(-1, 3), device=inputs[0].device)]

# ---------------------------------------------------------------- RoiAlign

def _roi_samples(rois: np.ndarray, H: int, W: int, oh: int, ow: int, scale: float, ratio: int, half_pixel: bool):
  """Per roi and output cell, the bilinear corners (flat y*W+x) and weights of every sample, padded to one count with
  weight 0: (idx, weight) of shape (R, oh, ow, S, 4), and `real` (R, S) marking the samples that exist."""
  per_roi = []
  for x1, y1, x2, y2 in rois.astype(np.float64):
    off = 0.5 if half_pixel else 0.0
    sx, sy, ex, ey = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
    rw, rh = ex - sx, ey - sy
    if not half_pixel: rw, rh = max(rw, 1.0), max(rh, 1.0)
    bh, bw = rh / oh, rw / ow
    gh, gw = (ratio, ratio) if ratio > 0 else (int(np.ceil(rh / oh)), int(np.ceil(rw / ow)))
    ys = sy + np.arange(oh)[:, None] * bh + (np.arange(gh)[None, :] + 0.5) * bh / max(gh, 1)   # (oh, gh)
    xs = sx + np.arange(ow)[:, None] * bw + (np.arange(gw)[None, :] + 0.5) * bw / max(gw, 1)   # (ow, gw)
    def axis_taps(v, L):
      out = (v < -1.0) | (v > L)
      v = np.maximum(v, 0)
      lo = np.floor(v).astype(np.int64)
      edge = lo >= L - 1
      lo = np.where(edge, L - 1, lo); hi = np.where(edge, L - 1, lo + 1); v = np.where(edge, lo, v)
      frac = v - lo
      return lo, hi, 1 - frac, frac, out
    ylo, yhi, yhw, ylw, yout = axis_taps(ys, H)
    xlo, xhi, xhw, xlw, xout = axis_taps(xs, W)
    # (oh, ow, gh, gw, 4): corners (lo,lo) (lo,hi) (hi,lo) (hi,hi)
    Y = lambda a: a[:, None, :, None]
    X = lambda a: a[None, :, None, :]
    idx = np.stack([Y(ylo) * W + X(xlo), Y(ylo) * W + X(xhi), Y(yhi) * W + X(xlo), Y(yhi) * W + X(xhi)], -1)
    w = np.stack([Y(yhw) * X(xhw), Y(yhw) * X(xlw), Y(ylw) * X(xhw), Y(ylw) * X(xlw)], -1)
    w = np.where((Y(yout) | X(xout))[..., None], 0.0, w)
    per_roi.append((idx.reshape(oh, ow, gh * gw, 4), w.reshape(oh, ow, gh * gw, 4)))
  S = max([i.shape[2] for i, _ in per_roi] + [1])
  idx = np.zeros((len(per_roi), oh, ow, S, 4), np.int64); w = np.zeros(idx.shape); real = np.zeros((len(per_roi), S), bool)
  for r, (i, ww) in enumerate(per_roi):
    idx[r, :, :, :i.shape[2]], w[r, :, :, :i.shape[2]], real[r, :i.shape[2]] = i, ww, True
  return idx, w, real

@onnx_op("RoiAlign", 10)
def roi_align(ctx, inputs, attrs):
  # the sample grid depends on the rois' values: its positions and weights are computed on the host, the image stays on the device
  x, rois, batch = inputs
  N, C, H, W = x.shape
  oh, ow = attrs.get("output_height", 1), attrs.get("output_width", 1)
  half = attrs.get("coordinate_transformation_mode", "half_pixel" if ctx.opset >= 16 else "output_half_pixel") == "half_pixel"
  idx, w, real = _roi_samples(np.asarray(ctx.const(rois)), H, W, oh, ow, attrs.get("spatial_scale", 1.0), attrs.get("sampling_ratio", 0), half)
  b = np.asarray(ctx.const(batch)).astype(np.int64).reshape(-1, 1, 1, 1, 1)
  R, S = idx.shape[0], idx.shape[3]
  flat = Tensor((idx + b * H * W).reshape(-1), device=x.device)
  vals = x.permute(0, 2, 3, 1).reshape(N * H * W, C).index_select(0, flat).reshape(R, oh, ow, S, 4, C)
  weighted = vals * Tensor(w.astype(x.dtype.np if x.dtype != dtypes.bfloat16 else np.float32), device=x.device).cast(x.dtype).reshape(R, oh, ow, S, 4, 1)
  if attrs.get("mode", "avg") == "avg":
    out = weighted.sum((3, 4)) / Tensor(np.maximum(real.sum(1), 1).astype(np.float32), device=x.device).cast(x.dtype).reshape(R, 1, 1, 1)
  else:  # the largest weighted corner of each sample, then the largest sample (the reference's definition)
    per_sample = weighted.amax(4)
    mask = Tensor(real, device=x.device).reshape(R, 1, 1, S, 1)
    out = mask.where(per_sample, Tensor(-np.inf, dtype=x.dtype, device=x.device)).amax(3)
  return [out.permute(0, 3, 1, 2)]
