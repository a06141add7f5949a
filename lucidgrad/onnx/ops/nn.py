"""ONNX neural-network ops: convolution and pooling (with ONNX's asymmetric pads, auto_pad, ceil_mode, dilations),
normalisations, Gemm/MatMul/Einsum, Softmax/LogSoftmax/Hardmax by version, Dropout, losses, MaxUnpool.

Pads are applied as an explicit Tensor.pad before a pad-free conv or pool, so any (begin, end) pair works."""
from __future__ import annotations
import math
import numpy as np
from lucidgrad import Tensor, dtypes
from lucidgrad.tensor_nn import conv_weight_order
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import axis, given, ints, scalar, const_like, same_dtype

# ---------------------------------------------------------------- windows, pads

def windows(x: Tensor, k: list[int], s: list[int], d: list[int]) -> Tensor:
  """A view (*lead, *out, *k) of x's last len(k) axes: element [..., o, j] is x[..., o*s + j*d]."""
  nl = x.ndim - len(k)
  for i, (kk, ss, dd) in enumerate(zip(k, s, d)):
    x = x.unfold(nl + i, (kk - 1) * dd + 1, ss)
    if dd > 1: x = x[(slice(None),) * (x.ndim - 1) + (slice(None, None, dd),)]
  return x

def _spatial_pads(attrs, L: list[int], k: list[int], s: list[int], d: list[int], op: str) -> list[tuple[int, int]]:
  """(begin, end) per spatial axis from auto_pad or pads."""
  n, auto = len(L), attrs.get("auto_pad", "NOTSET")
  if auto in ("SAME_UPPER", "SAME_LOWER"):
    pairs = []
    for l, kk, ss, dd in zip(L, k, s, d):
      total = max((-(-l // ss) - 1) * ss + (kk - 1) * dd + 1 - l, 0)
      small, big = total // 2, total - total // 2
      pairs.append((small, big) if auto == "SAME_UPPER" else (big, small))
    return pairs
  if auto == "VALID": return [(0, 0)] * n
  if auto != "NOTSET": raise ValueError(f"ONNX {op}: unknown auto_pad {auto!r}")
  p = list(attrs.get("pads", [0] * (2 * n)))
  return [(p[i], p[i + n]) for i in range(n)]

def _conv_args(attrs, n: int):
  return list(attrs.get("strides", [1] * n)), list(attrs.get("dilations", [1] * n))

# ---------------------------------------------------------------- convolution

@onnx_op("Conv")
def conv(ctx, inputs, attrs):
  x, w, b = inputs[0], inputs[1], given(inputs, 2)
  n = w.ndim - 2
  k = list(attrs.get("kernel_shape", w.shape[2:]))
  s, d = _conv_args(attrs, n)
  pairs = _spatial_pads(attrs, list(x.shape[2:]), k, s, d, "Conv")
  x = x.pad([(0, 0), (0, 0), *pairs]) if any(p != (0, 0) for p in pairs) else x
  groups = attrs.get("group", 1)
  # a constant weight is stored once in the order the conv reads it (else the conv copies it into that order per call)
  if ctx.is_constant(w) and w.ndim == x.ndim and w.ndim >= 3:
    width = (x.shape[-1] - d[-1] * (w.shape[-1] - 1) - 1) // s[-1] + 1
    order = conv_weight_order(w.shape, groups, width, w.device)
    if order != tuple(range(w.ndim)):
      inverse = tuple(sorted(range(w.ndim), key=order.__getitem__))
      w = ctx.packed(w, order, lambda w: w.permute(*order).contiguous()).permute(*inverse)
  return [x.conv(w, b, stride=s, padding=0, dilation=d, groups=groups)]

@onnx_op("ConvTranspose")
def conv_transpose(ctx, inputs, attrs):
  x, w, b = inputs[0], inputs[1], given(inputs, 2)
  n = w.ndim - 2
  k = list(attrs.get("kernel_shape", w.shape[2:]))
  s, d = _conv_args(attrs, n)
  op = list(attrs.get("output_padding", [0] * n))
  L = list(x.shape[2:])
  full = [(l - 1) * ss + (kk - 1) * dd + 1 + o for l, ss, kk, dd, o in zip(L, s, k, d, op)]
  if "output_shape" in attrs:
    want = list(attrs["output_shape"])[-n:]
    pairs = []
    for f, o in zip(full, want):
      total = f - o
      pairs.append((total // 2, total - total // 2) if attrs.get("auto_pad", "NOTSET") == "SAME_UPPER" else (total - total // 2, total // 2))
  elif attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
    pairs = []
    for l, f, ss in zip(L, full, s):
      total = f - l * ss
      pairs.append((total // 2, total - total // 2) if attrs["auto_pad"] == "SAME_UPPER" else (total - total // 2, total // 2))
  else: pairs = _spatial_pads({k_: v for k_, v in attrs.items() if k_ != "auto_pad"}, L, k, s, d, "ConvTranspose")
  y = x.conv_transpose(w, None, stride=s, padding=0, output_padding=0, groups=attrs.get("group", 1), dilation=d)
  # output_padding adds rows that no input reaches; pads crop from either end
  y = y.pad([(0, 0), (0, 0), *[(-a, o - e) for (a, e), o in zip(pairs, op)]])
  if b is not None: y = y + b.reshape(1, -1, *[1] * n)
  return [y]

# ---------------------------------------------------------------- pooling

def _pool_setup(x: Tensor, attrs, op: str):
  k = list(attrs["kernel_shape"])
  n = len(k)
  s = list(attrs.get("strides", [1] * n))
  d = list(attrs.get("dilations", [1] * n))
  L = list(x.shape[2:])
  pairs = _spatial_pads(attrs, L, k, s, d, op)
  out, extra = [], []
  for l, kk, ss, dd, (a, e) in zip(L, k, s, d, pairs):
    span = l + a + e - (kk - 1) * dd - 1
    o = (-(-span // ss) if attrs.get("ceil_mode", 0) else span // ss) + 1
    if attrs.get("ceil_mode", 0) and (o - 1) * ss >= l + a: o -= 1  # the last window starts inside the input or its left pad
    out.append(o); extra.append(max((o - 1) * ss + (kk - 1) * dd + 1 - (l + a + e), 0))
  return k, s, d, pairs, extra

def _pool_view(x: Tensor, k, s, d, pairs, extra, fill) -> Tensor:
  x = x.pad([(0, 0), (0, 0), *[(a, e + x_) for (a, e), x_ in zip(pairs, extra)]], value=fill)
  return windows(x, k, s, d)

@onnx_op("MaxPool")
def max_pool(ctx, inputs, attrs):
  x = inputs[0]
  k, s, d, pairs, extra = _pool_setup(x, attrs, "MaxPool")
  n = len(k)
  low = -math.inf if x.dtype.is_float() else int(np.iinfo(x.dtype.np).min)
  win = _pool_view(x, k, s, d, pairs, extra, low)
  red = tuple(range(x.ndim, x.ndim + n))
  y = win.amax(red)
  # Indices: the flat position (N, C, spatial..., row-major, or column-major for storage_order 1) of the first max
  L = list(x.shape[2:])
  pos = [Tensor.arange(l, dtype=dtypes.int64, device=x.device) for l in L]
  strides = [math.prod(L[i + 1:]) for i in range(n)] if not attrs.get("storage_order", 0) else [math.prod(L[:i]) for i in range(n)]
  flat = None
  for i, (p, st) in enumerate(zip(pos, strides)):
    p = p.reshape([L[i] if j == i else 1 for j in range(n)]) * st
    flat = p if flat is None else flat + p
  flat = flat.reshape(1, 1, *L).pad([(0, 0), (0, 0), *[(a, e + x_) for (a, e), x_ in zip(pairs, extra)]], value=-1)
  fw = windows(flat, k, s, d).expand(*win.shape)
  is_max = (win == y.reshape(*y.shape, *[1] * n))
  big = math.prod(L) + 1
  first = is_max.where(fw, const_like(fw, big)).reshape(*y.shape, -1).amin(-1)
  base = (Tensor.arange(x.shape[0] * x.shape[1], dtype=dtypes.int64, device=x.device) * math.prod(L)).reshape(x.shape[0], x.shape[1], *[1] * n)
  return [y, first + base]

@onnx_op("AveragePool")
def average_pool(ctx, inputs, attrs):
  x = inputs[0]
  k, s, d, pairs, extra = _pool_setup(x, attrs, "AveragePool")
  n = len(k)
  red = tuple(range(x.ndim, x.ndim + n))
  total = _pool_view(x, k, s, d, pairs, extra, 0).sum(red)
  if not any(extra) and (attrs.get("count_include_pad", 0) or all(p == (0, 0) for p in pairs)):
    return [total / math.prod(k)]  # every window is whole: the count is the kernel's size
  ones = Tensor.ones(1, 1, *x.shape[2:], dtype=x.dtype, device=x.device)
  if attrs.get("count_include_pad", 0): ones = ones.pad([(0, 0), (0, 0), *pairs], value=1); pairs = [(0, 0)] * n
  count = _pool_view(ones, k, s, d, pairs, extra, 0).sum(red)
  return [total / count]

@onnx_op("LpPool")
def lp_pool(ctx, inputs, attrs):
  x, p = inputs[0], attrs.get("p", 2)
  k, s, d, pairs, extra = _pool_setup(x, attrs, "LpPool")
  red = tuple(range(x.ndim, x.ndim + len(k)))
  return [(_pool_view(x.abs() ** p, k, s, d, pairs, extra, 0).sum(red)) ** (1 / p)]

def _global(fn):
  def op(ctx, inputs, attrs):
    x = inputs[0]
    return [fn(x, tuple(range(2, x.ndim)), attrs)]
  return op

onnx_op("GlobalAveragePool")(_global(lambda x, ax, a: x.mean(ax, keepdim=True)))
onnx_op("GlobalMaxPool")(_global(lambda x, ax, a: x.amax(ax, keepdim=True)))
onnx_op("GlobalLpPool", 2)(_global(lambda x, ax, a: (x.abs() ** a.get("p", 2)).sum(ax, keepdim=True) ** (1 / a.get("p", 2))))

@onnx_op("MaxUnpool", 9)
def max_unpool(ctx, inputs, attrs):
  x, idx, shape = inputs[0], inputs[1], given(inputs, 2)
  k = list(attrs["kernel_shape"]); n = len(k)
  s = list(attrs.get("strides", [1] * n))
  p = list(attrs.get("pads", [0] * 2 * n))
  out = [*x.shape[:2], *[(l - 1) * ss - (p[i] + p[i + n]) + kk for i, (l, ss, kk) in enumerate(zip(x.shape[2:], s, k))]]
  flat = Tensor.zeros(math.prod(out), dtype=x.dtype, device=x.device)
  y = flat.scatter(0, idx.reshape(-1).cast(dtypes.int64), x.reshape(-1)).reshape(out)
  # a larger output_shape: the indices still address the default shape, which is padded at the end (as the reference does)
  if shape is not None: y = y.pad([(0, w - o) for w, o in zip(ints(ctx, shape), out)])
  return [y]

# ---------------------------------------------------------------- normalisation

def _chan(t: Tensor, ndim: int) -> Tensor:
  """A per-channel (C,) parameter shaped to broadcast over (N, C, ...); a (C, ...) one (BatchNormalization's spatial=0) as is."""
  return t.reshape(1, -1, *[1] * (ndim - 2)) if t.ndim == 1 else t.unsqueeze(0)

@onnx_op("BatchNormalization")
def batch_norm(ctx, inputs, attrs):
  x, scale, bias, mean, var = inputs[:5]
  eps, mom = attrs.get("epsilon", 1e-5), attrs.get("momentum", 0.9)
  training = attrs.get("training_mode", 0) if ctx.opset >= 14 else 0
  if not training:
    y = (x - _chan(mean, x.ndim).cast(x.dtype)) / (_chan(var, x.ndim).cast(x.dtype) + eps).sqrt()
    return [y * _chan(scale, x.ndim).cast(x.dtype) + _chan(bias, x.ndim).cast(x.dtype)]
  ax = tuple(i for i in range(x.ndim) if i != 1)
  bm, bv = x.mean(ax), x.var(ax, correction=0)
  y = (x - _chan(bm, x.ndim)) / (_chan(bv, x.ndim) + eps).sqrt() * _chan(scale, x.ndim) + _chan(bias, x.ndim)
  return [y, mean * mom + bm.cast(mean.dtype) * (1 - mom), var * mom + bv.cast(var.dtype) * (1 - mom)]

@onnx_op("InstanceNormalization", 6)
def instance_norm(ctx, inputs, attrs):
  x, scale, bias = inputs
  ax = tuple(range(2, x.ndim))
  m, v = x.mean(ax, keepdim=True), x.var(ax, keepdim=True, correction=0)
  return [(x - m) / (v + attrs.get("epsilon", 1e-5)).sqrt() * _chan(scale, x.ndim) + _chan(bias, x.ndim)]

_STASH = {1: dtypes.float32, 11: dtypes.float64, 10: dtypes.float16, 16: dtypes.bfloat16}

@onnx_op("LayerNormalization", 17)
def layer_norm(ctx, inputs, attrs):
  x, scale, bias = inputs[0], inputs[1], given(inputs, 2)
  a = axis(attrs.get("axis", -1), x.ndim, "LayerNormalization")
  ax = tuple(range(a, x.ndim))
  xs = x.cast(_STASH.get(attrs.get("stash_type", 1), dtypes.float32))
  m = xs.mean(ax, keepdim=True)
  inv = ((xs - m) ** 2).mean(ax, keepdim=True).add(attrs.get("epsilon", 1e-5)).rsqrt()
  y = ((xs - m) * inv).cast(x.dtype) * scale
  if bias is not None: y = y + bias
  return [y, m, inv]

@onnx_op("RMSNormalization", 23)
def rms_norm(ctx, inputs, attrs):
  x, scale = inputs[0], inputs[1]
  a = axis(attrs.get("axis", -1), x.ndim, "RMSNormalization")
  ax = tuple(range(a, x.ndim))
  xs = x.cast(_STASH.get(attrs.get("stash_type", 1), dtypes.float32))
  inv = (xs * xs).mean(ax, keepdim=True).add(attrs.get("epsilon", 1e-5)).rsqrt()
  return [(xs * inv).cast(x.dtype) * scale]

def _group_norm(per_channel: bool):
  def op(ctx, inputs, attrs):
    x, scale, bias = inputs
    g, eps = attrs["num_groups"], attrs.get("epsilon", 1e-5)
    n, c = x.shape[:2]
    xs = x.cast(_STASH.get(attrs.get("stash_type", 1), dtypes.float32)) if per_channel else x
    xg = xs.reshape(n, g, -1)
    m, v = xg.mean(-1, keepdim=True), xg.var(-1, keepdim=True, correction=0)
    y = ((xg - m) / (v + eps).sqrt()).reshape(n, c, *x.shape[2:]).cast(x.dtype)
    if not per_channel: scale, bias = scale.reshape(g, 1).expand(g, c // g).reshape(c), bias.reshape(g, 1).expand(g, c // g).reshape(c)
    return [y * _chan(scale, x.ndim) + _chan(bias, x.ndim)]
  return op

onnx_op("GroupNormalization", 18)(_group_norm(False))
onnx_op("GroupNormalization", 21)(_group_norm(True))

@onnx_op("LRN")
def lrn(ctx, inputs, attrs):
  x = inputs[0]
  size, alpha, beta, bias = attrs["size"], attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0)
  lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
  sq = (x * x).pad([(0, 0), (lo, hi), *[(0, 0)] * (x.ndim - 2)])
  ssum = windows(sq.transpose(1, -1), [size], [1], [1]).sum(-1).transpose(1, -1)
  return [x / (bias + alpha / size * ssum) ** beta]

@onnx_op("LpNormalization")
def lp_normalization(ctx, inputs, attrs):
  x, p = inputs[0], attrs.get("p", 2)
  a = axis(attrs.get("axis", -1), x.ndim, "LpNormalization")
  norm = x.abs().sum(a, keepdim=True) if p == 1 else (x * x).sum(a, keepdim=True).sqrt()
  return [(norm == 0).where(Tensor.zeros_like(x), x / norm)]

@onnx_op("MeanVarianceNormalization", 9)
def mean_variance_normalization(ctx, inputs, attrs):
  x = inputs[0]
  ax = tuple(axis(a, x.ndim, "MeanVarianceNormalization") for a in attrs.get("axes", [0, 2, 3]))
  m = x.mean(ax, keepdim=True)
  return [(x - m) / ((x - m) ** 2).mean(ax, keepdim=True).sqrt()]

# ---------------------------------------------------------------- matrix products

@onnx_op("Gemm")
def gemm(ctx, inputs, attrs):
  a, b, c = inputs[0], inputs[1], given(inputs, 2)
  if attrs.get("transA", 0): a = a.T
  if attrs.get("transB", 0): b = b.T
  y = a @ b
  if (alpha := attrs.get("alpha", 1.0)) != 1.0: y = y * const_like(y, alpha)
  if c is not None: y = y + (c * const_like(c, attrs.get("beta", 1.0)) if attrs.get("beta", 1.0) != 1.0 else c)
  return [same_dtype(y, inputs[0])]

@onnx_op("MatMul")
def matmul(ctx, inputs, attrs): return [same_dtype(inputs[0] @ inputs[1], inputs[0])]

@onnx_op("MatMulInteger", 10)
def matmul_integer(ctx, inputs, attrs):
  a, b, az, bz = inputs[0], inputs[1], given(inputs, 2), given(inputs, 3)
  a = a.cast(dtypes.int32) - (az.cast(dtypes.int32) if az is not None else 0)
  bi = b.cast(dtypes.int32)
  if bz is not None: bi = bi - (bz.cast(dtypes.int32) if bz.ndim == 0 else bz.cast(dtypes.int32).reshape(*[1] * (bi.ndim - 1), -1))
  return [a @ bi]

@onnx_op("Einsum", 12)
def einsum(ctx, inputs, attrs):
  return [same_dtype(Tensor.einsum(attrs["equation"].replace(" ", ""), *inputs), inputs[0])]

# ---------------------------------------------------------------- softmax family

def _softmax_family(name: str, fn):
  def old(ctx, inputs, attrs):  # before opset 13: coerced to 2-D at axis
    x = inputs[0]
    a = axis(attrs.get("axis", 1), x.ndim, name)
    return [fn(x.reshape(math.prod(x.shape[:a]), -1), 1).reshape(x.shape)]
  def new(ctx, inputs, attrs):
    x = inputs[0]
    return [fn(x, axis(attrs.get("axis", -1), x.ndim, name))]
  onnx_op(name)(old); onnx_op(name, 13)(new)

def _hardmax(x: Tensor, a: int) -> Tensor:
  return (x.argmax(a, keepdim=True) == Tensor.arange(x.shape[a], device=x.device).reshape([-1 if i == a else 1 for i in range(x.ndim)])).cast(x.dtype)

_softmax_family("Softmax", lambda x, a: x.softmax(a))
_softmax_family("LogSoftmax", lambda x, a: x.log_softmax(a))
_softmax_family("Hardmax", _hardmax)

# ---------------------------------------------------------------- dropout and losses

@onnx_op("Dropout")
def dropout(ctx, inputs, attrs):
  x = inputs[0]
  if ctx.opset >= 12:
    ratio = scalar(ctx, r) if (r := given(inputs, 1)) is not None else 0.5
    training = bool(scalar(ctx, t)) if (t := given(inputs, 2)) is not None else False
  else: ratio, training = attrs.get("ratio", 0.5), False  # before opset 12 a runtime's Dropout is the identity (is_test is a training hint)
  if not training or ratio == 0: return [x, Tensor.ones(*x.shape, dtype=dtypes.bool, device=x.device)]
  if "seed" in attrs: Tensor.manual_seed(attrs["seed"])
  keep = Tensor.rand(*x.shape, device=x.device) >= ratio
  return [keep.where(x / const_like(x, 1 - ratio), Tensor.zeros_like(x)), keep]

def _nll(x: Tensor, target: Tensor, weight: Tensor | None, reduction: str, ignore: int | None, op: str) -> Tensor:
  c = x.shape[1]
  t = target.cast(dtypes.int64)
  valid = (t != ignore) if ignore is not None else None
  safe = valid.where(t, Tensor.zeros_like(t)) if valid is not None else t
  picked = -x.gather(1, safe.unsqueeze(1)).squeeze(1)
  w = weight.gather(0, safe.reshape(-1)).reshape(safe.shape) if weight is not None else Tensor.ones(*safe.shape, dtype=x.dtype, device=x.device)
  if valid is not None: w = valid.where(w, Tensor.zeros_like(w))
  loss = picked * w
  if reduction == "none": return loss
  if reduction == "sum": return loss.sum()
  if reduction == "mean": return loss.sum() / w.sum()
  raise ValueError(f"ONNX {op}: unknown reduction {reduction!r} (classes: {c})")

@onnx_op("NegativeLogLikelihoodLoss", 12)
def nll_loss(ctx, inputs, attrs):
  x, t, w = inputs[0], inputs[1], given(inputs, 2)
  return [_nll(x, t, w, attrs.get("reduction", "mean"), attrs.get("ignore_index"), "NegativeLogLikelihoodLoss")]

@onnx_op("SoftmaxCrossEntropyLoss", 12)
def softmax_cross_entropy(ctx, inputs, attrs):
  x, t, w = inputs[0], inputs[1], given(inputs, 2)
  lp = x.log_softmax(1)
  return [_nll(lp, t, w, attrs.get("reduction", "mean"), attrs.get("ignore_index"), "SoftmaxCrossEntropyLoss"), lp]

@onnx_op("CausalConvWithState", 27)
def causal_conv_with_state(ctx, inputs, attrs):
  x, w, b, past = inputs[0], inputs[1], given(inputs, 2), given(inputs, 3)
  act = attrs.get("activation", "none")
  if act not in ("none", "silu", "swish"): raise ValueError(f"ONNX CausalConvWithState: unknown activation {act!r}")
  if x.ndim != 3 or w.ndim != 3: raise ValueError(f"ONNX CausalConvWithState: input and weight must be rank 3, got {x.shape} and {w.shape}")
  n, c, _ = x.shape
  k = w.shape[2]
  # the past state (or zeros) stands before the input, so each output sees only the present and the past
  padded = Tensor.cat(past, x, dim=2) if past is not None else x.pad([(0, 0), (0, 0), (k - 1, 0)])
  y = padded.conv(w, b, groups=c)
  if act != "none": y = (y.float() * y.float().sigmoid()).cast(x.dtype)
  return [y, padded[:, :, padded.shape[2] - (k - 1):]]

@onnx_op("DeformConv", 19)
def deform_conv(ctx, inputs, attrs):
  x, w, offset, b, mask = inputs[0], inputs[1], inputs[2], given(inputs, 3), given(inputs, 4)
  if x.ndim != 4: raise NotImplementedError(f"ONNX DeformConv: only 2-D images are supported, got input {x.shape}")
  N, C, H, W = x.shape
  OC, kh, kw = w.shape[0], *attrs.get("kernel_shape", w.shape[2:])
  g, og = attrs.get("group", 1), attrs.get("offset_group", 1)
  sh, sw = attrs.get("strides", [1, 1]); dh, dw = attrs.get("dilations", [1, 1]); pt, pl = attrs.get("pads", [0, 0, 0, 0])[:2]
  oh, ow = offset.shape[2:]
  K = kh * kw
  off = offset.reshape(N, og, kh, kw, 2, oh, ow)
  m = mask.reshape(N, og, kh, kw, oh, ow) if mask is not None else None
  base_y = Tensor.arange(oh, dtype=x.dtype, device=x.device).reshape(oh, 1) * sh - pt
  base_x = Tensor.arange(ow, dtype=x.dtype, device=x.device).reshape(1, ow) * sw - pl
  flat_x = x.reshape(N, og, C // og, H * W)
  taps = []
  for i in range(kh):
    for j in range(kw):
      y, xx = base_y + i * dh + off[:, :, i, j, 0], base_x + j * dw + off[:, :, i, j, 1]   # (N, og, oh, ow)
      y0, x0 = y.floor(), xx.floor()
      sample = None
      for cy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for cx, wx in ((x0, 1 - (xx - x0)), (x0 + 1, xx - x0)):
          ok = (cy >= 0) & (cy <= H - 1) & (cx >= 0) & (cx <= W - 1)   # corners outside the image read 0
          idx = (cy.clip(0, H - 1) * W + cx.clip(0, W - 1)).cast(dtypes.int64).reshape(N, og, 1, oh * ow).expand(N, og, C // og, oh * ow)
          v = flat_x.gather(3, idx) * ok.where(wy * wx, Tensor.zeros_like(wy)).reshape(N, og, 1, oh * ow)
          sample = v if sample is None else sample + v
      if m is not None: sample = sample * m[:, :, i, j].reshape(N, og, 1, oh * ow)
      taps.append(sample.reshape(N, C, oh * ow))
  cols = Tensor.stack(*taps, dim=2).reshape(N, g, (C // g) * K, oh * ow)   # (N, g, C/g*K, P): channel-major, then tap
  out = Tensor.einsum("ngkp,gok->ngop", cols, w.reshape(g, OC // g, (C // g) * K)).reshape(N, OC, oh, ow)
  if b is not None: out = out + b.reshape(1, OC, 1, 1)
  return [out]
