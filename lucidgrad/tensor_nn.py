"""Neural-net functionals on the Tensor API: convolutions, pooling, normalisation, dropout, attention, losses, and
the random distributions and initialisers they need. A mixin of `Tensor`."""
from __future__ import annotations
import math, sys, warnings
from typing import TYPE_CHECKING, Sequence
import numpy as np
from lucidgrad.dtype import dtypes, min_max
from lucidgrad.helpers import prod
from lucidgrad.device import Device
from lucidgrad.tensor_shape import _wide_index
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.gradient import VJP_RULES

if TYPE_CHECKING: from lucidgrad.tensor import Tensor

# lucidgrad.tensor imports this module, so it is looked up when used: in sys.modules, by then (an import statement in a
# function costs ~0.35 us a call, and an eager op asks once or twice)
def _T(): return sys.modules["lucidgrad.tensor"].Tensor
def _lt(): return sys.modules["lucidgrad.tensor"]

def _tuple(v, n: int, name: str, fn: str) -> tuple[int, ...]:
  """An int or a sequence of n ints as a tuple of n ints."""
  t = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
  if len(t) != n or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in t):
    raise ValueError(f"{fn}: {name} must be an int or {n} ints, got {v!r}")
  return tuple(int(i) for i in t)

# A convolution sums over channels and the window. With the channels innermost in memory (NHWC for 2-d) that sum is a dot
# product along contiguous memory for both operands, as in x @ W.T: the kernel loads whole vectors of input and weight
# and blocks outputs in registers. From NCHW the only contiguous axis is a row of pixels, 7 or 14 wide in ResNet's deep
# layers, and the weight's output channels are a gather (measured 38 -> 106 GFLOP/s at 128 channels, 14x14; 113 -> 136
# at 64 channels, 56x56). The copies cost a read and a write of input and weight, padding included, so the conv reads no
# border gates. Below 8 channels (an image's 1 or 3) the channel sum is too short to vectorise: NCHW stays
# (docs/design/0020-channels-last-convolution.md).
CHANNELS_LAST_MIN = 8
# output channels (per group) a multiple of CO_VECTOR_MIN are a conv's vector on a CPU where its output rows are at
# least CO_VECTOR_MIN_WIDTH pixels: measured on AVX-512 (`python bench/bench_conv_forms.py`, its channel loop innermost),
# the outer-product form wins 1.2-2.3x at rows of 10-56, ties at 256 channels of 14, and loses 0.4-0.7x at rows of 4-8
# (ResNet's deepest layers), where a block of a row's few pixels reads a broadcast per FMA (docs/design/0020, addendum)
CO_VECTOR_MIN, CO_VECTOR_MIN_WIDTH = 8, 10
# a CPU conv whose output rows are too short for the outer-product block (under CO_VECTOR_MIN_WIDTH pixels) and that has
# IM2COL_MIN_OUT output channels or more is a matmul over an explicit im2col copy (docs/design/0040-explicit-im2col.md):
# the dot-product form blocks a row's few pixels, each input stream a row of channels 2 KB apart (ResNet-18's 7x7 layers
# ran at 42-51 GFLOP/s, the copy and product at 153-160 on AVX2; at rows of 14 the forms tie, at 28 the outer product
# wins, 154 against 123: `python bench/bench_conv_forms.py`). The copy writes K^2 x C floats per output pixel against
# 2 x Co FLOPs per float in the product, and is bounded in memory
IM2COL_MIN_OUT, IM2COL_MAX_BYTES = 128, 64 << 20

def _channels_last(x):
  """x (N, C, *spatial) stored as (N, *spatial, C), seen again as (N, C, *spatial)."""
  n = x.ndim - 2
  return x.permute(0, *range(2, 2 + n), 1).contiguous().permute(0, 1 + n, *range(1, 1 + n))

def conv_weight_order(weight_shape: Sequence[int], groups: int, out_width: int, device: str) -> tuple[int, ...]:
  """The order of axes a conv stores its weight (Co, Cin/groups, *kernel) in before reading it, for output rows of
  `out_width` pixels on `device` (see _conv): the identity where it reads the weight as given. A weight already held in
  that order (`w.permute(order).contiguous().permute(inverse)`) is read with no copy: a runner packs a constant weight
  once that way."""
  n, Co, Cg = len(weight_shape) - 2, weight_shape[0], weight_shape[1]
  if (Co // groups) % CO_VECTOR_MIN == 0 and out_width >= CO_VECTOR_MIN_WIDTH and not Device[device].renderer.has_local:
    return (*range(2, 2 + n), 1, 0)  # (*kernel, Cin, Co): the output channels are the vector
  if Cg < CHANNELS_LAST_MIN: return tuple(range(n + 2))
  return (0, *range(2, 2 + n), 1)    # (Co, *kernel, Cin): input channels innermost, beside the input's

def _explicit_im2col(win, weight, groups: int, out_width: int) -> bool:
  """Whether a conv runs as a matmul over an explicit im2col copy: float32 on a CPU, one group, channels-last windows,
  output rows under CO_VECTOR_MIN_WIDTH pixels, IM2COL_MIN_OUT output channels or more, a copy of IM2COL_MAX_BYTES at most.
  Those are convs whose conv_weight_order is (Co, *kernel, Cin): the matmul reads the weight in it (a packed one in place)."""
  return (groups == 1 and win.dtype == weight.dtype == dtypes.float32 and weight.shape[1] >= CHANNELS_LAST_MIN and weight.shape[0] >= IM2COL_MIN_OUT
          and out_width < CO_VECTOR_MIN_WIDTH and win.numel() * 4 <= IM2COL_MAX_BYTES and not Device[win.device].renderer.has_local)

def _stored_in(w, order: tuple[int, ...]):
  """w kept in memory in `order`, seen again in its own; a weight that is one value broadcast has no order to keep (and
  left a broadcast, the conv's sum is seen to be the same for every output channel: computed once, schedule/)."""
  if order == tuple(range(len(order))) or _one_value(w.uop): return w
  return w.permute(*order).contiguous().permute(*sorted(range(len(order)), key=order.__getitem__))

def _one_value(u: UOp) -> bool:
  while u.op in (Ops.RESHAPE, Ops.EXPAND) and u.size != 1: u = u.src[0]
  return u.size == 1

def _stuffed(x, s: Sequence[int]):
  """x with s-1 zeros between neighbours along each of its last len(s) axes (length (l-1)*s + 1)."""
  if all(ss == 1 for ss in s): return x
  lead, L = x.shape[:-len(s)], x.shape[-len(s):]
  keep = [None] * len(lead)
  x = x.reshape(*lead, *[v for l in L for v in (l, 1)]).pad(((0, 0),) * len(lead) + tuple(v for ss in s for v in ((0, 0), (0, ss - 1))))
  return x.reshape(*lead, *[l * ss for l, ss in zip(L, s)]).shrink((*keep, *[(0, (l - 1) * ss + 1) for l, ss in zip(L, s)]))

def _conv_vjp(g: UOp, ret: UOp) -> tuple:
  """The gradients of a convolution's input and weight (ret = VJP(out, x, weight, window view of padded x)).
  The input's is one transposed convolution: g with s-1 zeros between neighbours, padded so each input element sees
  every output its windows reached, convolved with the flipped weight, channels in and out exchanged. Through the
  window view's movement ops it was a product per window element then a sum of overlapping windows: two kernels and an
  intermediate K^2 times the input (the MNIST net's conv2: 172 + 28 ms -> see docs/design/0020). The weight's is the
  forward's window view times g, summed over batch and output positions."""
  T = _T()
  _, x, w, win = ret.src
  s, pads, d, groups = ret.arg[1]
  g, w, win = T(g), T(w), T(win)
  n, (B, Co), O, L = len(s), g.shape[:2], g.shape[2:], x.shape[2:]
  Cg, K = w.shape[1], w.shape[2:]
  dw = (win * g.reshape(B, groups, Co // groups, 1, *O, *[1] * n)).sum(axis=(0, *range(4, 4 + n))).reshape(Co, Cg, *K)
  # (a pad is negative where the padding passes the kernel's reach: Tensor.pad then cuts)
  gs = _stuffed(g, s).pad(((0, 0), (0, 0), *[((kk - 1) * dd - a, l + a - (oo - 1) * ss - 1) for kk, dd, (a, _), l, oo, ss in zip(K, d, pads, L, O, s)]))
  wt = w.reshape(groups, Co // groups, Cg, *K).transpose(1, 2).reshape(groups * Cg, Co // groups, *K).flip(tuple(range(2, 2 + n)))
  dx = gs._conv(wt, None, 1, 0, d, groups, "conv")
  return dx.uop, dw.uop, None

def _max_pool_vjp(g: UOp, ret: UOp) -> tuple:
  """The input's gradient of a max pool (ret = VJP(out, x)): each window's gradient split evenly among the elements
  that reached its maximum, as the max reduce's own rule splits it. Through the window view's movement ops that was a
  sum over overlapping windows whose index is a divmod of padded repeats (ResNet's 3x3 stride-2 pool: 44 ms, 4x4 taps
  per element); here each padded input element reads its K taps directly: out and g/count, with s-1 zeros between
  neighbours and padded by (K-1)*d, seen through a stride-1 window view -- tap k' of element i is the window whose
  k-th element (k = K-1-k') i is, or a zero where there is none."""
  T = _T()
  out, x = T(ret.src[0]), T(ret.src[1])
  k, s, d, pads = ret.arg[1]
  n, g = len(k), T(g)
  xp = x.pad(((0, 0),) * (x.ndim - n) + pads, value=min_max(x.dtype)[0])
  axes = tuple(range(-n, 0))
  grow = lambda t: t.reshape(*t.shape, *[1] * n)
  count = (xp._windows(k, s, d) == grow(out)).sum(axes, dtype=g.dtype)
  def taps(t):  # (*lead, *Lp, *K): tap k' of padded element i
    up = _stuffed(t, s).pad(((0, 0),) * (t.ndim - n) + tuple(((kk - 1) * dd, lp - (o - 1) * ss - 1) for kk, dd, lp, o, ss in zip(k, d, xp.shape[-n:], out.shape[-n:], s)))
    return up._windows(k, (1,) * n, d)
  dxp = (grow(xp) == taps(out)).where(taps(g / count), 0).sum(axes)
  return (dxp.shrink((*[None] * (x.ndim - n), *[(a, a + l) for (a, _), l in zip(pads, x.shape[-n:])])).uop,)

def _max_unpool_vjp(g: UOp, ret: UOp) -> tuple:
  """The input's gradient of a max unpool (ret = VJP(out, x, flat index)): the output's gradient read at each index."""
  T = _T()
  _, x, idx = ret.src
  return T(g)._gather(ret.arg[1], T(idx)).reshape(x.shape).uop, None

def _interp_taps(n: int, out: int, scale_factor, mode: str, align_corners: bool, cnp) -> list[tuple[np.ndarray, np.ndarray | None]]:
  """The (input index, weight) taps of each of `out` outputs resized from n inputs, as torch computes them (its source
  coordinates in float32, or float64 for a float64 tensor): nearest reads one (no weight), linear two, cubic four
  (Keys' kernel, a = -0.75, indices clamped to the border)."""
  dst = np.arange(out, dtype=cnp)
  if align_corners and mode not in ("nearest", "nearest-exact"): scale = cnp(n - 1) / cnp(out - 1) if out > 1 else cnp(0)
  else: scale = cnp(1.0 / scale_factor) if scale_factor else cnp(n) / cnp(out)
  if mode in ("nearest", "nearest-exact"):
    return [(np.minimum(np.floor((dst + cnp(0.5) if mode == "nearest-exact" else dst) * scale), n - 1), None)]
  src = dst * scale if align_corners else (dst + cnp(0.5)) * scale - cnp(0.5)
  if mode != "bicubic":  # linear: a source left of the first centre reads it alone
    i0 = np.minimum(np.floor(np.maximum(src, 0)), n - 1)
    lam = np.clip(np.maximum(src, 0) - i0, 0, 1)
    return [(i0, 1 - lam), (np.minimum(i0 + 1, n - 1), lam)]
  i0 = np.floor(src)
  t, a = src - i0, cnp(-0.75)
  near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # the kernel at distance <= 1
  far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # and between 1 and 2
  return [(np.clip(i0 + k - 1, 0, n - 1), w) for k, w in enumerate((far(t + 1), near(t), near(1 - t), far(2 - t)))]

def _bce_vjp(g: UOp, ret: UOp) -> tuple:
  """The gradients of binary cross entropy (ret = VJP(loss, p, target)) as torch takes them: (p - t) / max(p (1 - p),
  1e-12) for p, so a saturated probability gets a large finite gradient where the clamped log's would be 0; and
  -logit(p) for the target (infinite at p = 0 or 1, as torch's)."""
  T = _T()
  g, p, t = T(g), T(ret.src[1]), T(ret.src[2])
  dp = g * (p - t) / (p * (1 - p)).maximum(1e-12)
  dt = g * ((1 - p).log() - p.log())
  return dp.cast(p.dtype).uop, dt.cast(t.dtype).uop

def _pads(padding, n: int, fn: str) -> list[tuple[int, int]]:
  """(before, after) for each of n spatial axes from an int, n ints (one per axis, as torch) or 2n ints (one per side,
  ordered as F.pad orders them: the last axis first, as tinygrad takes them); none negative."""
  if isinstance(padding, (tuple, list)) and len(padding) == 2 * n:
    p = _pos(_tuple(padding, 2 * n, "padding", fn), "padding", fn, zero_ok=True)
    return [(p[2 * i], p[2 * i + 1]) for i in reversed(range(n))]
  if isinstance(padding, (tuple, list)) and len(padding) != n:
    raise ValueError(f"{fn}: padding must be an int, a tuple of {n} (one per spatial axis) or of {2 * n} (one per side, last axis first), got {padding!r}")
  return [(p, p) for p in _pos(_tuple(padding, n, "padding", fn), "padding", fn, zero_ok=True)]

def _pos(t: tuple[int, ...], name: str, fn: str, zero_ok=False) -> tuple[int, ...]:
  if any(i < (0 if zero_ok else 1) for i in t): raise ValueError(f"{fn}: {name} must be {'>= 0' if zero_ok else 'positive'}, got {t}")
  return t

def _reduce_loss(loss: Tensor, reduction: str, fn: str) -> Tensor:
  if reduction == "none": return loss
  if reduction == "sum": return loss.sum()
  if reduction == "mean": return loss.mean()
  raise ValueError(f"{fn}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")

def _weighted_loss(loss: Tensor, weight: Tensor | None, reduction: str, shape: tuple, fn: str, by_weight: bool) -> Tensor:
  """loss times a weight of the input's shape, reduced; by_weight: 'mean' divides by the weights' sum, as torch's
  mse_loss and l1_loss do (its huber_loss takes the plain mean)."""
  if weight is None: return _reduce_loss(loss, reduction, fn)
  if weight.shape != shape: raise ValueError(f"{fn}: weight shape {weight.shape} must be the input's shape {shape}")
  loss = loss * weight
  if reduction == "mean" and by_weight: return loss.sum() / weight.sum().cast(loss.dtype)
  return _reduce_loss(loss, reduction, fn)

def _same_shape(x: Tensor, target: Tensor, fn: str):
  if target.shape != x.shape: raise ValueError(f"{fn}: target shape {target.shape} must be the input's shape {x.shape}")

def _fans(shape: tuple[int, ...], fn: str) -> tuple[int, int]:
  """(fan_in, fan_out) of a weight of shape (out, in, *kernel), as torch.nn.init counts them."""
  if len(shape) < 2: raise ValueError(f"{fn}: fan in and fan out need a shape of at least 2 dimensions, got {shape}")
  rf = prod(shape[2:])
  return shape[1] * rf, shape[0] * rf

def _gain(nonlinearity: str, a: float) -> float:
  """torch.nn.init.calculate_gain."""
  if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid"): return 1.0
  if nonlinearity == "tanh": return 5.0 / 3
  if nonlinearity == "relu": return math.sqrt(2.0)
  if nonlinearity == "leaky_relu": return math.sqrt(2.0 / (1 + a * a))
  if nonlinearity == "selu": return 0.75
  raise ValueError(f"unknown nonlinearity {nonlinearity!r}")

def _erfinv(x: Tensor) -> Tensor:
  """Inverse error function on (-1, 1), float32 precision: Giles' two-branch polynomial (2010)."""
  w = -((1 - x) * (1 + x)).log()
  lo, hi = w - 2.5, w.sqrt() - 3.0
  p_lo, p_hi = lo * 0 + 2.81022636e-08, hi * 0 - 0.000200214257
  for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941):
    p_lo = c + p_lo * lo
  for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682):
    p_hi = c + p_hi * hi
  return (w < 5.0).where(p_lo, p_hi) * x

def _rank(keys: Tensor) -> Tensor:
  """The position of each key (last axis) in ascending order, ties broken by index: a permutation of 0..n-1 per row,
  by counting smaller keys (n^2 compares, no sort)."""
  n = keys.shape[-1]
  i = _T().arange(n, dtype=dtypes.int32, device=keys.device)
  a, b = keys.unsqueeze(-1), keys.unsqueeze(-2)  # a: key i, b: key j
  before = (b < a) | ((b == a) & (i.reshape(1, n) < i.reshape(n, 1)))
  return before.cast(dtypes.int32).sum(-1, dtype=dtypes.int32)

def _unrank(rank: Tensor, k: int) -> Tensor:
  """For j < k: the index whose rank is j (the inverse permutation, first k entries), int32."""
  n = rank.shape[-1]
  i = _T().arange(n, dtype=dtypes.int32, device=rank.device)
  j = _T().arange(k, dtype=dtypes.int32, device=rank.device).reshape(k, 1)
  return ((rank.unsqueeze(-2) == j).where(i.reshape(1, n), 0)).sum(-1, dtype=dtypes.int32)

class NNMixin:
  # ---- windows: im2col by movement ops ----
  def _windows(self: Tensor, k: Sequence[int], s: Sequence[int], d: Sequence[int]) -> Tensor:
    """A view (*lead, *out, *k) of the last len(k) axes: element [..., o, j] is x[..., o*s + j*d]. No data moves: each
    axis is repeated, flattened and re-split one element longer per row, which shifts row j by j*d."""
    n = len(k)
    lead, L = self.shape[:-n], self.shape[-n:]
    o = [(l - dd * (kk - 1) - 1) // ss + 1 for l, kk, ss, dd in zip(L, k, s, d)]
    nl = len(lead)
    if all(ss == kk for ss, kk in zip(s, k)) and all(dd == 1 for dd in d):
      # windows that tile the input (a 2x2 pool of stride 2) are a reshape: no repeated reads, and a gradient with no sum
      x = self.shrink(tuple([None] * nl + [(0, oo * kk) for oo, kk in zip(o, k)])).reshape(*lead, *[v for oo, kk in zip(o, k) for v in (oo, kk)])
      return x.permute(*range(nl), *[nl + 2 * i for i in range(n)], *[nl + 2 * i + 1 for i in range(n)])
    reps = [math.ceil(kk * (l + dd) / l) for l, kk, dd in zip(L, k, d)]
    keep = [None] * len(lead)
    x = self.reshape(*lead, *[v for l in L for v in (1, l)]).expand(*lead, *[v for e, l in zip(reps, L) for v in (e, l)])
    x = x.reshape(*lead, *[e * l for e, l in zip(reps, L)]).shrink(tuple(keep + [(0, kk * (l + dd)) for kk, l, dd in zip(k, L, d)]))
    x = x.reshape(*lead, *[v for kk, l, dd in zip(k, L, d) for v in (kk, l + dd)])
    # the stride: keep (o-1)*s+1 of each row, pad it to o*s, split off the stride and keep its first element
    x = x.shrink(tuple(keep + [v for oo, ss in zip(o, s) for v in (None, (0, (oo - 1) * ss + 1))]))
    if any(ss > 1 for ss in s): x = x.pad(tuple(keep + [v for ss in s for v in (None, (0, ss - 1))]))
    x = x.reshape(*lead, *[v for kk, oo, ss in zip(k, o, s) for v in (kk, oo, ss)])
    x = x.shrink(tuple(keep + [v for _ in k for v in (None, None, (0, 1))])).reshape(*lead, *[v for kk, oo in zip(k, o) for v in (kk, oo)])
    return x.permute(*range(nl), *[nl + 2 * i + 1 for i in range(n)], *[nl + 2 * i for i in range(n)])

  # ---- convolution ----
  def conv(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """N-d convolution (cross-correlation, as torch), N from weight (Cout, Cin/groups, *kernel); a window view times the weight, summed: one kernel.
    padding: an int, N ints (one per axis), 2N ints (one per side, last axis first as F.pad), 'same' (stride 1; the odd
    element on the right, as torch) or 'valid'."""
    return self._conv(weight, bias, stride, padding, dilation, groups, "conv")
  def _conv(self: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int, _fn: str) -> Tensor:
    n = weight.ndim - 2
    if n < 1: raise ValueError(f"{_fn}: weight must have at least 3 dimensions (out_channels, in_channels/groups, *kernel), got shape {weight.shape}")
    if self.ndim == n + 1: return self.unsqueeze(0)._conv(weight, bias, stride, padding, dilation, groups, _fn).squeeze(0)
    if self.ndim != n + 2: raise ValueError(f"{_fn}: input must have {n + 1} (unbatched) or {n + 2} (batched) dimensions for a weight of shape {weight.shape}, got {self.shape}")
    B, C, L = self.shape[0], self.shape[1], self.shape[2:]
    Co, Cg, K = weight.shape[0], weight.shape[1], weight.shape[2:]
    if not isinstance(groups, int) or groups < 1: raise ValueError(f"{_fn}: groups must be a positive int, got {groups!r}")
    if C != Cg * groups:
      raise ValueError(f"{_fn}: input has {C} channels but the weight expects {Cg * groups} (weight.shape[1]={Cg} x groups={groups}); input {self.shape}, weight {weight.shape}")
    if Co % groups: raise ValueError(f"{_fn}: out_channels ({Co}) must be divisible by groups ({groups})")
    if bias is not None and bias.shape != (Co,): raise ValueError(f"{_fn}: bias must have shape ({Co},), got {bias.shape}")
    s, d = _pos(_tuple(stride, n, "stride", _fn), "stride", _fn), _pos(_tuple(dilation, n, "dilation", _fn), "dilation", _fn)
    if padding == "valid": pads = [(0, 0)] * n
    elif padding == "same":  # torch puts the odd element on the right
      if any(ss != 1 for ss in s): raise ValueError(f"{_fn}: padding='same' needs stride 1, got stride {s}")
      pads = [(dd * (kk - 1) // 2, dd * (kk - 1) - dd * (kk - 1) // 2) for kk, dd in zip(K, d)]
    elif isinstance(padding, str): raise ValueError(f"{_fn}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
    else: pads = _pads(padding, n, _fn)
    if any(l + a + b < dd * (kk - 1) + 1 for l, (a, b), kk, dd in zip(L, pads, K, d)):
      raise ValueError(f"{_fn}: the kernel {K} (dilation {d}) is larger than the padded input {tuple(l + a + b for l, (a, b) in zip(L, pads))}")
    x = self.pad(((0, 0), (0, 0), *pads)) if any(p != (0, 0) for p in pads) else self
    cl = Cg >= CHANNELS_LAST_MIN
    win = (_channels_last(x) if cl else x)._windows(K, s, d)  # (B, C, *out, *K)
    o = win.shape[2:2 + n]
    win = win.reshape(B, groups, 1, Cg, *o, *K)
    # where the target computes a block of outputs in vector registers (a CPU), the output channels are the vector:
    # the weight is stored with them innermost, each input element is broadcast over them and a row of pixels is the
    # block; elsewhere (GPU-style targets, too few channels for a vector, or rows too short for the block) the
    # weight's input channels are innermost, beside the input's
    order = conv_weight_order(weight.shape, groups, o[-1], self.device)
    if _explicit_im2col(win, weight, groups, o[-1]):
      # each output pixel's window, channels innermost, as one row of a (pixels, K^2 x C) matrix times the weight in
      # the order its rows are read (Co, *kernel, Cin), seen as (Co, K^2 x C): x @ W.T, the product every Linear takes;
      # its result (pixels, Co) a buffer of its own (an NCHW store fused into it splits its rows over the image axes:
      # 14 GFLOP/s), read as NCHW by what follows
      cols = win.reshape(B, C, *o, *K).permute(0, *range(2, 2 + 2 * n), 1).reshape(B * math.prod(o), math.prod(K) * C).contiguous()
      wm = _stored_in(weight, order).permute(*order).reshape(Co, math.prod(K) * C)
      out = (cols @ wm.T).contiguous().reshape(B, *o, Co).permute(0, n + 1, *range(1, n + 1))
    else:
      w = _stored_in(weight, order).reshape(1, groups, Co // groups, Cg, *[1] * n, *K)
      # half floats multiply in float32 (where a product of two is exact) and round once at the end, as matmul does
      half = win.dtype in (dtypes.float16, dtypes.bfloat16) and w.dtype == win.dtype
      out = ((win.cast(dtypes.float32) * w.cast(dtypes.float32)) if half else win * w).sum(axis=(3, *range(4 + n, 4 + 2 * n)))
      out = (out.cast(win.dtype) if half else out).reshape(B, Co, *o)
    if out.uop.requires_grad:  # gradients by the conv's own rule (_conv_vjp), the window view kept for the weight's
      out = _T()(UOp(Ops.VJP, out.dtype, (out.uop, self.uop, weight.uop, win.uop), ("conv", (s, tuple(pads), d, groups))))
    return out if bias is None else out + bias.reshape(1, Co, *[1] * n)
  def conv1d(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """torch.nn.functional.conv1d on this input: weight (Cout, Cin/groups, k); padding an int, (left, right), 'same' or 'valid'."""
    if weight.ndim != 3: raise ValueError(f"conv1d: weight must have 3 dimensions (out_channels, in_channels/groups, k), got shape {weight.shape}")
    return self._conv(weight, bias, stride, padding, dilation, groups, "conv1d")
  def conv2d(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """torch.nn.functional.conv2d on this input: weight (Cout, Cin/groups, kh, kw); padding an int, (ph, pw), 'same', 'valid' or
    (left, right, top, bottom) as F.pad orders sides."""
    if weight.ndim != 4: raise ValueError(f"conv2d: weight must have 4 dimensions (out_channels, in_channels/groups, kh, kw), got shape {weight.shape}")
    return self._conv(weight, bias, stride, padding, dilation, groups, "conv2d")
  def conv3d(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, groups: int = 1) -> Tensor:
    """torch.nn.functional.conv3d on this input: weight (Cout, Cin/groups, kd, kh, kw); padding an int, 3 ints, 'same', 'valid' or
    6 ints, one per side as F.pad orders them."""
    if weight.ndim != 5: raise ValueError(f"conv3d: weight must have 5 dimensions (out_channels, in_channels/groups, kd, kh, kw), got shape {weight.shape}")
    return self._conv(weight, bias, stride, padding, dilation, groups, "conv3d")

  def conv_transpose(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """N-d transposed convolution, weight (Cin, Cout/groups, *kernel): a convolution of the zero-stuffed input with the flipped, transposed weight.
    padding (cut off the output's sides): an int, N ints or 2N ints (one per side, last axis first as F.pad)."""
    return self._conv_transpose(weight, bias, stride, padding, output_padding, groups, dilation, "conv_transpose")
  def _conv_transpose(self: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, output_padding, groups: int, dilation, _fn: str) -> Tensor:
    n = weight.ndim - 2
    if n < 1: raise ValueError(f"{_fn}: weight must have at least 3 dimensions (in_channels, out_channels/groups, *kernel), got shape {weight.shape}")
    if self.ndim == n + 1: return self.unsqueeze(0)._conv_transpose(weight, bias, stride, padding, output_padding, groups, dilation, _fn).squeeze(0)
    if self.ndim != n + 2: raise ValueError(f"{_fn}: input must have {n + 1} (unbatched) or {n + 2} (batched) dimensions for a weight of shape {weight.shape}, got {self.shape}")
    C, L, Cg, K = self.shape[1], self.shape[2:], weight.shape[1], weight.shape[2:]
    if not isinstance(groups, int) or groups < 1: raise ValueError(f"{_fn}: groups must be a positive int, got {groups!r}")
    if C != weight.shape[0]: raise ValueError(f"{_fn}: input has {C} channels but the weight expects {weight.shape[0]} (weight.shape[0]); input {self.shape}, weight {weight.shape}")
    if C % groups: raise ValueError(f"{_fn}: in_channels ({C}) must be divisible by groups ({groups})")
    s, d = _pos(_tuple(stride, n, "stride", _fn), "stride", _fn), _pos(_tuple(dilation, n, "dilation", _fn), "dilation", _fn)
    if isinstance(padding, str): raise ValueError(f"{_fn}: padding must be an int or a tuple (no 'same' or 'valid' for a transposed convolution), got {padding!r}")
    p = _pads(padding, n, _fn)  # each side's padding cuts that much off the output's side
    op = _pos(_tuple(output_padding, n, "output_padding", _fn), "output_padding", _fn, zero_ok=True)
    if any(o >= max(ss, dd) for o, ss, dd in zip(op, s, d)): raise ValueError(f"{_fn}: output_padding {op} must be smaller than stride {s} or dilation {d}")
    out = [(l - 1) * ss - a - b + dd * (kk - 1) + oo + 1 for l, ss, (a, b), dd, kk, oo in zip(L, s, p, d, K, op)]
    if any(o < 1 for o in out): raise ValueError(f"{_fn}: the output would have size {tuple(out)}: padding {padding!r} is too large for input {self.shape}")
    x = _stuffed(self, s).pad(((0, 0), (0, 0), *[(dd * (kk - 1) - a, dd * (kk - 1) - b + oo) for dd, kk, (a, b), oo in zip(d, K, p, op)]))
    w = weight.reshape(groups, C // groups, Cg, *K).transpose(1, 2).reshape(groups * Cg, C // groups, *K).flip(tuple(range(2, 2 + n)))
    return x._conv(w, bias, 1, 0, d, groups, _fn)
  def conv_transpose1d(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """torch.nn.functional.conv_transpose1d on this input: weight (Cin, Cout/groups, k)."""
    if weight.ndim != 3: raise ValueError(f"conv_transpose1d: weight must have 3 dimensions, got shape {weight.shape}")
    return self._conv_transpose(weight, bias, stride, padding, output_padding, groups, dilation, "conv_transpose1d")
  def conv_transpose2d(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """torch.nn.functional.conv_transpose2d on this input: weight (Cin, Cout/groups, kh, kw)."""
    if weight.ndim != 4: raise ValueError(f"conv_transpose2d: weight must have 4 dimensions, got shape {weight.shape}")
    return self._conv_transpose(weight, bias, stride, padding, output_padding, groups, dilation, "conv_transpose2d")
  def conv_transpose3d(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """torch.nn.functional.conv_transpose3d on this input: weight (Cin, Cout/groups, kd, kh, kw)."""
    if weight.ndim != 5: raise ValueError(f"conv_transpose3d: weight must have 5 dimensions, got shape {weight.shape}")
    return self._conv_transpose(weight, bias, stride, padding, output_padding, groups, dilation, "conv_transpose3d")

  # ---- pooling ----
  def _pool_args(self: Tensor, n: int, kernel_size, stride, padding, dilation, ceil_mode: bool, fn: str):
    """Checked (k, s, d, pads, out, user pads): pads are (before, after) per axis, `after` grown so ceil_mode's last window fits."""
    if self.ndim not in (n + 1, n + 2): raise ValueError(f"{fn}: input must have {n + 1} or {n + 2} dimensions, got shape {self.shape}")
    k = _pos(_tuple(kernel_size, n, "kernel_size", fn), "kernel_size", fn)
    s = k if stride is None or stride == () or stride == [] else _pos(_tuple(stride, n, "stride", fn), "stride", fn)
    p = _pads(padding, n, fn)
    d = _pos(_tuple(dilation, n, "dilation", fn), "dilation", fn)
    if any(max(pp) > (dd * (kk - 1) + 1) // 2 for pp, kk, dd in zip(p, k, d)):
      raise ValueError(f"{fn}: padding {padding!r} must be at most half of the kernel size {k}")
    L, out, pads = self.shape[-n:], [], []
    for l, kk, ss, (a, b), dd in zip(L, k, s, p, d):
      span = l + a + b - dd * (kk - 1) - 1
      if span < 0: raise ValueError(f"{fn}: the kernel {k} (dilation {d}) is larger than the padded input {tuple(x + a + b for x, (a, b) in zip(L, p))}")
      o = (-(-span // ss) if ceil_mode else span // ss) + 1
      if ceil_mode and (o - 1) * ss >= l + a: o -= 1  # the last window must start inside the input or its left padding
      out.append(o); pads.append((a, max(b, (o - 1) * ss + dd * (kk - 1) + 1 - l - a)))
    return k, s, d, pads, out, p

  def _max_pool(self: Tensor, n: int, kernel_size, stride, padding, dilation, ceil_mode, return_indices, fn):
    k, s, d, pads, _, _ = self._pool_args(n, kernel_size, stride, padding, dilation, ceil_mode, fn)
    lead = [(0, 0)] * (self.ndim - n)
    win = self.pad((*lead, *pads), value=min_max(self.dtype)[0])._windows(k, s, d)
    axes = tuple(range(win.ndim - n, win.ndim))
    out = win.max(axis=axes)
    # the input's gradient by _max_pool_vjp, K taps per element, where windows overlap (or skip): windows that tile the
    # input are a reshape, whose gradient already reads each element's one window directly
    if out.uop.requires_grad and not (tuple(s) == tuple(k) and all(dd == 1 for dd in d)):
      out = _T()(UOp(Ops.VJP, out.dtype, (out.uop, self.uop), ("max_pool", (k, s, d, tuple(pads)))))
    if not return_indices: return out
    # the flat index (in each input plane) of the first maximum in each window, as torch's kernel finds it
    L = self.shape[-n:]
    idx = _T().arange(prod(L), dtype=dtypes.int32, device=self.device).reshape(L).pad(pads)._windows(k, s, d)
    first = (win == out.reshape(*out.shape, *[1] * n)).where(idx, prod(L)).min(axis=axes)
    return out, first.cast(dtypes.int64)
  def max_pool1d(self: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """torch.nn.functional.max_pool1d; with return_indices, also the flat index of each maximum in its input plane."""
    return self._max_pool(1, kernel_size, stride, padding, dilation, ceil_mode, return_indices, "max_pool1d")
  def max_pool2d(self: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """torch.nn.functional.max_pool2d; with return_indices, also the flat index (h*W+w) of each maximum in its input plane."""
    return self._max_pool(2, kernel_size, stride, padding, dilation, ceil_mode, return_indices, "max_pool2d")
  def max_pool3d(self: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """torch.nn.functional.max_pool3d; with return_indices, also the flat index of each maximum in its input volume."""
    return self._max_pool(3, kernel_size, stride, padding, dilation, ceil_mode, return_indices, "max_pool3d")

  def _max_unpool(self: Tensor, n: int, indices: Tensor, kernel_size, stride, padding, output_size, fn: str) -> Tensor:
    if self.ndim not in (n + 1, n + 2): raise ValueError(f"{fn}: input must have {n + 1} or {n + 2} dimensions, got shape {self.shape}")
    if not isinstance(indices, _T()) or indices.dtype.is_float() or indices.dtype == dtypes.bool:
      raise TypeError(f"{fn}: indices must be an integer Tensor (max_pool's return_indices), got {getattr(indices, 'dtype', type(indices).__name__)}")
    if indices.shape != self.shape: raise ValueError(f"{fn}: indices of shape {indices.shape} must have the input's shape {self.shape}")
    k = _pos(_tuple(kernel_size, n, "kernel_size", fn), "kernel_size", fn)
    s = k if stride is None or stride == () or stride == [] else _pos(_tuple(stride, n, "stride", fn), "stride", fn)
    L = self.shape[-n:]
    default = tuple((l - 1) * ss - a - b + kk for l, ss, (a, b), kk in zip(L, s, _pads(padding, n, fn), k))
    if output_size is None: O = default
    else:
      O = tuple(output_size)[-n:] if isinstance(output_size, (tuple, list)) and len(output_size) in (n, self.ndim) else None
      if O is None: raise ValueError(f"{fn}: output_size must have {n} (or {self.ndim}) sizes, got {output_size!r}")
      if any(not default[i] - s[i] < O[i] < default[i] + s[i] for i in range(n)):  # sizes a max pool of this input could have come from
        raise ValueError(f"{fn}: output_size {O} must be within a stride {s} of the default size {default}")
    lead, P = self.shape[:-n], prod(O)
    _lt().check_index(indices, 0, P, f"{fn} index")
    # each value stored at its flat index in the output plane: one SCATTER over the input, no compare with the output
    idx = _wide_index(indices).reshape(*lead, prod(L))
    out = _T().zeros(*lead, P, dtype=self.dtype, device=self.device)._scatter(len(lead), idx, self.reshape(*lead, prod(L)), None)
    if out.uop.requires_grad:  # the input's gradient is a gather at its index, as torch's (overlapping windows: each gets it)
      out = _T()(UOp(Ops.VJP, out.dtype, (out.uop, self.uop, idx.uop), ("max_unpool", len(lead))))
    return out.reshape(*lead, *O)
  def max_unpool1d(self: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """torch.nn.functional.max_unpool1d: each value put at its index (from max_pool1d's return_indices) in a zero output."""
    return self._max_unpool(1, indices, kernel_size, stride, padding, output_size, "max_unpool1d")
  def max_unpool2d(self: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """torch.nn.functional.max_unpool2d: each value put at its flat index h*W+w (from max_pool2d's return_indices) in a zero output."""
    return self._max_unpool(2, indices, kernel_size, stride, padding, output_size, "max_unpool2d")
  def max_unpool3d(self: Tensor, indices: Tensor, kernel_size, stride=None, padding=0, output_size=None) -> Tensor:
    """torch.nn.functional.max_unpool3d: each value put at its flat index (from max_pool3d's return_indices) in a zero output."""
    return self._max_unpool(3, indices, kernel_size, stride, padding, output_size, "max_unpool3d")

  def _avg_pool(self: Tensor, n: int, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, fn) -> Tensor:
    k, s, d, pads, out, user = self._pool_args(n, kernel_size, stride, padding, 1, ceil_mode, fn)
    x = self if self.dtype.is_float() else self.cast(dtypes.default_float)
    total = x.pad(((0, 0),) * (self.ndim - n) + tuple(pads))._windows(k, s, d).sum(tuple(range(-n, 0)))
    if divisor_override is not None: return total / divisor_override
    # the divisor depends on shapes only: count, per axis, what each window covers (user padding counts only with
    # count_include_pad; ceil_mode's extra padding never does), as torch does
    counts = []
    for l, kk, ss, (a, b), o in zip(self.shape[-n:], k, s, user, out):
      start = np.arange(o) * ss - a
      end = np.minimum(start + kk, l + b)
      counts.append(end - start if count_include_pad else np.minimum(end, l) - np.maximum(start, 0))
    div = counts[0]
    for c in counts[1:]: div = np.multiply.outer(div, c)
    return total / _T()(div.astype(np.float64), dtype=total.dtype, device=self.device)
  def avg_pool1d(self: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None) -> Tensor:
    """torch.nn.functional.avg_pool1d."""
    return self._avg_pool(1, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, "avg_pool1d")
  def avg_pool2d(self: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None) -> Tensor:
    """torch.nn.functional.avg_pool2d."""
    return self._avg_pool(2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, "avg_pool2d")
  def avg_pool3d(self: Tensor, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None) -> Tensor:
    """torch.nn.functional.avg_pool3d."""
    return self._avg_pool(3, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, "avg_pool3d")

  def _adaptive_avg_pool(self: Tensor, n: int, output_size, fn: str) -> Tensor:
    if self.ndim not in (n + 1, n + 2): raise ValueError(f"{fn}: input must have {n + 1} or {n + 2} dimensions, got shape {self.shape}")
    L = self.shape[-n:]
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * n
    if len(sizes) != n: raise ValueError(f"{fn}: output_size must be an int or {n} ints, got {output_size!r}")
    sizes = tuple(l if o is None else o for o, l in zip(sizes, L))
    if any(not isinstance(o, int) or o < 1 for o in sizes): raise ValueError(f"{fn}: output sizes must be positive ints, got {output_size!r}")
    x = self if self.dtype.is_float() else self.cast(dtypes.default_float)
    if all(l % o == 0 for l, o in zip(L, sizes)): return x._avg_pool(n, tuple(l // o for l, o in zip(L, sizes)), None, 0, False, True, None, fn)
    # uneven windows [floor(i*L/o), ceil((i+1)*L/o)): average along each axis with an (o, L) matrix
    for ax, (l, o) in enumerate(zip(L, sizes)):
      m = np.zeros((o, l))
      for i in range(o): m[i, (i * l) // o:-(-(i + 1) * l // o)] = 1 / (-(-(i + 1) * l // o) - (i * l) // o)
      a = x.ndim - n + ax
      x = (x.transpose(a, -1) @ _T()(m.T, dtype=x.dtype, device=x.device)).transpose(a, -1)
    return x
  def adaptive_avg_pool1d(self: Tensor, output_size) -> Tensor:
    """torch.nn.functional.adaptive_avg_pool1d."""
    return self._adaptive_avg_pool(1, output_size, "adaptive_avg_pool1d")
  def adaptive_avg_pool2d(self: Tensor, output_size) -> Tensor:
    """torch.nn.functional.adaptive_avg_pool2d (None in output_size keeps that axis)."""
    return self._adaptive_avg_pool(2, output_size, "adaptive_avg_pool2d")
  def adaptive_avg_pool3d(self: Tensor, output_size) -> Tensor:
    """torch.nn.functional.adaptive_avg_pool3d (None in output_size keeps that axis)."""
    return self._adaptive_avg_pool(3, output_size, "adaptive_avg_pool3d")

  # ---- interpolation ----
  def interpolate(self: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                  recompute_scale_factor: bool | None = None, antialias: bool = False) -> Tensor:
    """torch.nn.functional.interpolate of an (N, C, *spatial) tensor: 'nearest', 'nearest-exact', 'linear' / 'bilinear' /
    'bicubic' / 'trilinear' (1, 2, 2, 3 spatial axes; align_corners), 'area' (adaptive average pooling). A scale_factor
    gives the size floor(in * scale) and, unless recompute_scale_factor, maps outputs to inputs by 1/scale as torch does.
    Each axis in turn reads its few inputs per output by gathers (indices and weights computed on the host)."""
    spatial = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
    if mode not in ("nearest", "nearest-exact", "area", *spatial):
      raise ValueError(f"interpolate: mode must be 'nearest', 'nearest-exact', 'linear', 'bilinear', 'bicubic', 'trilinear' or 'area', got {mode!r}")
    ns = self.ndim - 2
    if ns < 1 or mode in spatial and ns != spatial[mode]:
      raise ValueError(f"interpolate: mode {mode!r} needs an input of shape (N, C, {', '.join(['*'] * spatial.get(mode, 1))}{'' if mode in spatial else ', ...'}), got {self.shape}")
    if align_corners is not None and mode not in spatial: raise ValueError(f"interpolate: align_corners only applies to 'linear', 'bilinear', 'bicubic' and 'trilinear', not {mode!r}")
    if antialias: raise NotImplementedError("interpolate: antialias=True is not supported")
    if (size is None) == (scale_factor is None): raise ValueError("interpolate: give exactly one of size and scale_factor")
    ins = self.shape[2:]
    if 0 in ins: raise ValueError(f"interpolate: the spatial sizes of the input must be positive, got shape {self.shape}")
    if size is not None:
      outs = tuple(size) if isinstance(size, (tuple, list)) else (size,) * ns
      scales: tuple = (None,) * ns
    else:
      scales = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * ns
      if len(scales) != ns or any(not isinstance(sc, (int, float)) or sc <= 0 for sc in scales):
        raise ValueError(f"interpolate: scale_factor must be a positive number or {ns} of them, got {scale_factor!r}")
      outs = tuple(math.floor(n * sc) for n, sc in zip(ins, scales))
      if recompute_scale_factor: scales = (None,) * ns
    if len(outs) != ns or any(not isinstance(o, (int, np.integer)) or o <= 0 for o in outs):
      raise ValueError(f"interpolate: output size {outs} does not fit input shape {self.shape} ({ns} positive sizes)")
    if mode not in ("nearest", "nearest-exact") and not self.dtype.is_float(): raise TypeError(f"interpolate: mode {mode!r} needs a float tensor, got {self.dtype}")
    if mode == "area": return self._adaptive_avg_pool(ns, tuple(int(o) for o in outs), "interpolate")
    def resize(x: Tensor) -> Tensor:
      for ax, (o, sc) in enumerate(zip(outs, scales)): x = x._interp_axis(ax + 2, int(o), sc, mode, bool(align_corners))
      return x
    # nearest moves values of any dtype; the weighted modes sum half floats in float32, as torch's kernels do
    return resize(self) if mode in ("nearest", "nearest-exact") else self._math(resize)
  resize = interpolate

  def _interp_axis(self: Tensor, ax: int, out: int, scale_factor, mode: str, align_corners: bool) -> Tensor:
    """Axis ax resized to `out`: each output the weighted sum of its taps, each tap a gather along ax."""
    n, T = self.shape[ax], _T()
    # torch copies when the size stays, whatever the scale, except nearest and bicubic given a scale (1.3 on 3 gives
    # x0 x0 x1 for nearest)
    if out == n and (scale_factor is None or mode in ("linear", "bilinear", "trilinear")): return self._new_value()
    along = lambda a, dt: T(a.reshape((1,) * ax + (out,) + (1,) * (self.ndim - ax - 1)), dtype=dt, device=self.device)
    res = None
    for i, w in _interp_taps(n, out, scale_factor, mode, align_corners, np.float64 if self.dtype == dtypes.float64 else np.float32):
      v = self._gather(ax, along(i, dtypes.int32).expand(*self.shape[:ax], out, *self.shape[ax + 1:]))
      v = v if w is None else v * along(w, self.dtype)
      res = v if res is None else res + v
    return res

  # ---- normalisation ----
  def _affine(self: Tensor, weight: Tensor | None, bias: Tensor | None, shape: tuple[int, ...]) -> Tensor:
    out = self if weight is None else self * weight.reshape(shape)
    return out if bias is None else out + bias.reshape(shape)
  def batch_norm(self: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None, bias: Tensor | None = None,
                 training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.batch_norm over every axis but 1; in training, running_mean/var (if given) are replaced by their updated, lazy values."""
    if self.ndim < 2: raise ValueError(f"batch_norm: input must have at least 2 dimensions (N, C, ...), got shape {self.shape}")
    C, shape = self.shape[1], (1, self.shape[1]) + (1,) * (self.ndim - 2)
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
      if t is not None and t.shape != (C,): raise ValueError(f"batch_norm: {name} must have shape ({C},), got {t.shape}")
    axes = (0, *range(2, self.ndim))
    if training:
      n = self.numel() // C
      if n <= 1: raise ValueError(f"batch_norm: training needs more than one value per channel, got input shape {self.shape}")
      mean = self.mean(axes)
      var = (self - mean.reshape(shape)).square().mean(axes)
      # the running statistics take no gradient; the unbiased variance, as torch keeps
      # in place, as torch does: a running stat that owns a buffer keeps it, so a jitted step updates the same memory
      if running_mean is not None: running_mean.assign((running_mean * (1 - momentum) + mean.detach() * momentum).cast(running_mean.dtype))
      if running_var is not None: running_var.assign((running_var * (1 - momentum) + var.detach() * (momentum * n / (n - 1))).cast(running_var.dtype))
    else:
      if running_mean is None or running_var is None: raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
      mean, var = running_mean, running_var
    out = (self - mean.reshape(shape)) * (var.reshape(shape) + eps).rsqrt()
    return out._affine(weight, bias, shape)
  def layer_norm(self: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.layer_norm over the trailing `normalized_shape` axes: three kernels (mean, variance, output)."""
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not ns or self.shape[self.ndim - len(ns):] != ns or len(ns) > self.ndim:
      raise ValueError(f"layer_norm: normalized_shape {ns} does not match the trailing axes of input shape {self.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
      if t is not None and t.shape != ns: raise ValueError(f"layer_norm: {name} must have shape {ns}, got {t.shape}")
    axes = tuple(range(-len(ns), 0))
    def norm(x: Tensor) -> Tensor:
      c = x - x.mean(axes, keepdim=True)
      return c * (c.square().mean(axes, keepdim=True) + eps).rsqrt()
    return self._math(norm)._affine(weight, bias, ns)
  def group_norm(self: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """torch.nn.functional.group_norm: channels (axis 1) split into num_groups, each normalised over its channels and the spatial axes."""
    if self.ndim < 2: raise ValueError(f"group_norm: input must have at least 2 dimensions (N, C, ...), got shape {self.shape}")
    N, C = self.shape[:2]
    if num_groups < 1 or C % num_groups: raise ValueError(f"group_norm: {C} channels cannot be split into {num_groups} groups")
    for name, t in (("weight", weight), ("bias", bias)):
      if t is not None and t.shape != (C,): raise ValueError(f"group_norm: {name} must have shape ({C},), got {t.shape}")
    out = self.reshape(N, num_groups, -1).layer_norm(self.numel() // (N * num_groups) if N else 1, eps=eps).reshape(self.shape)
    return out._affine(weight, bias, (1, C) + (1,) * (self.ndim - 2))
  def rms_norm(self: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    """torch.nn.functional.rms_norm: x / sqrt(mean(x^2) + eps) over the trailing axes; eps None is the dtype's machine epsilon."""
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not ns or self.shape[self.ndim - len(ns):] != ns or len(ns) > self.ndim:
      raise ValueError(f"rms_norm: normalized_shape {ns} does not match the trailing axes of input shape {self.shape}")
    if weight is not None and weight.shape != ns: raise ValueError(f"rms_norm: weight must have shape {ns}, got {weight.shape}")
    dt = self.dtype if self.dtype.is_float() else dtypes.default_float
    e = eps if eps is not None else 2.0 ** -7 if dt == dtypes.bfloat16 else float(np.finfo(dt.np).eps)
    axes = tuple(range(-len(ns), 0))
    return self._math(lambda x: x * (x.square().mean(axes, keepdim=True) + e).rsqrt())._affine(weight, None, ns)

  def normalize(self: Tensor, p: float = 2.0, dim=1, eps: float = 1e-12) -> Tensor:
    """torch.nn.functional.normalize: x / max(||x||_p, eps) along dim (an int or a tuple), so a zero vector stays zero."""
    return self / self.vector_norm(p, dim, True).maximum(eps)
  def softmin(self: Tensor, dim: int | None = None, dtype=None) -> Tensor:
    """torch.nn.functional.softmin: softmax(-x) along dim (cast to dtype first if given). dim None takes torch's legacy
    choice, with its warning: 0 for 0-, 1- and 3-d input, else 1."""
    if dim is None:
      warnings.warn("softmin: the implicit dim is deprecated; pass dim", UserWarning, stacklevel=2)
      dim = 0 if self.ndim in (0, 1, 3) else 1
    x = self if dtype is None else self.cast(dtype)
    return (-x).softmax(dim)

  def embedding(self: Tensor, weight: Tensor) -> Tensor:
    """torch.nn.functional.embedding: the rows of `weight` at these integer indices, shape (*self.shape, weight.shape[1]).
    Each index must be in [0, rows): checked (on the host where the indices are already computed there, else on the
    device), an IndexError at the next host read (CHECK_INDEX=0: off)."""
    # each node read once (a Tensor's facts are properties of its node), an owner's without the property's frame
    u = self._uop if self._base is None else self.uop
    wu = weight._uop if weight._base is None else weight.uop
    if u.dtype.is_float() or u.dtype == dtypes.bool: raise TypeError(f"embedding: the indices must be integers, got {u.dtype}")
    if len(wu.shape) != 2: raise ValueError(f"embedding: the weight must be 2-D (rows, dim), got shape {wu.shape}")
    if u.device != wu.device: raise RuntimeError(f"embedding: the indices are on {u.device}, the weight on {wu.device}; move one with .to()")
    lt = sys.modules["lucidgrad.tensor"]  # _lt(), its frame spared
    # checked once, for [0, rows) as torch does: no negative indices to wrap, so the rows are gathered as they are
    lt.check_index(self, 0, wu.shape[0], "embedding row")
    if wu.shape[0] == 0:  # an empty table: the general gather's zeros (every index is out of range, reported by its check)
      n, dim = math.prod(u.shape), wu.shape[1]
      return weight._gather(0, _wide_index(self).reshape(n, 1).expand(n, dim)).reshape(*u.shape, dim)
    # the table's rows as one TAKE node, built directly (not weight[self]'s general index, nor a Tensor per step: an eager
    # lookup's Python is most of its cost, and each node it builds and frees is ~1.5 us of it; docs/design/0038)
    return lt._value(wu.take(u if u.dtype.itemsize >= 4 else self.cast(dtypes.int32).uop, 0))
  def dropout(self: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (the identity when not training)."""
    if not 0 <= p <= 1: raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0: return self
    if p == 1: return self * 0
    keep = _T().rand(*self.shape, device=self.device) >= p
    return keep.where(self * (1 / (1 - p)), 0).cast(self.dtype)

  # ---- attention ----
  def scaled_dot_product_attention(self: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                   is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False) -> Tensor:
    """torch's attention on this query (..., L, E): softmax(q k^T * scale + mask) v; a bool mask keeps where True; a fully masked row gives 0."""
    q = self
    if q.ndim < 2 or key.ndim < 2 or value.ndim < 2: raise ValueError(f"scaled_dot_product_attention: query, key and value need at least 2 dimensions, got {q.shape}, {key.shape}, {value.shape}")
    if q.shape[-1] != key.shape[-1]: raise ValueError(f"scaled_dot_product_attention: query and key embed sizes differ: {q.shape} and {key.shape}")
    if key.shape[-2] != value.shape[-2]: raise ValueError(f"scaled_dot_product_attention: key and value lengths differ: {key.shape} and {value.shape}")
    if is_causal and attn_mask is not None: raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal, not both")
    if enable_gqa and q.ndim >= 3 and key.shape[-3] != q.shape[-3]:  # each key/value head serves a group of query heads
      hq, hk = q.shape[-3], key.shape[-3]
      if hq % hk: raise ValueError(f"scaled_dot_product_attention: {hq} query heads cannot share {hk} key/value heads")
      key, value = [t.unsqueeze(-3).expand(*t.shape[:-2], hq // hk, *t.shape[-2:]).reshape(*t.shape[:-3], hq, *t.shape[-2:]) for t in (key, value)]
    L, S = q.shape[-2], key.shape[-2]
    if is_causal:  # query i sees keys 0..i (aligned top-left, as torch); the mask's graph is kept between calls
      def causal() -> UOp:
        r = _T().arange(max(L, S), dtype=dtypes.int32, device=q.device)
        return (r[:S].reshape(1, S) <= r[:L].reshape(L, 1)).uop
      attn_mask = _T()(_lt()._kept(("causal", L, S, q.device), causal))
    def attend(q: Tensor) -> Tensor:
      scores = (q @ key.cast(q.dtype).transpose(-1, -2)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
      if attn_mask is not None: scores = attn_mask.where(scores, -math.inf) if attn_mask.dtype == dtypes.bool else scores + attn_mask.cast(q.dtype)
      m = scores.max(axis=-1, keepdim=True)
      e = (scores - (m == -math.inf).where(0, m)).exp()
      s = e.sum(-1, keepdim=True)
      return e / (s == 0).where(1, s)
    w = q._math(attend).cast(q.dtype)
    if dropout_p > 0: w = w.dropout(dropout_p)
    return w @ value.cast(w.dtype)

  # ---- losses ----
  def _nll(self: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int, reduction: str, label_smoothing: float, fn: str) -> Tensor:
    """Negative log-likelihood of log-probabilities `self` (N, C, d...) or (C,) at class indices, with torch's weighting and
    smoothing. The targets' log-probabilities are gathered (a log_softmax under them is computed at the targets only)."""
    if self.ndim == 1: return self.unsqueeze(0)._nll(target.reshape(1), weight, ignore_index, reduction, label_smoothing, fn).reshape(())
    C = self.shape[1]
    if target.dtype.is_float() or target.dtype == dtypes.bool:
      raise TypeError(f"{fn}: class-index targets must be integers, got {target.dtype} (probability targets need the input's shape {self.shape})")
    if target.shape != self.shape[:1] + self.shape[2:]: raise ValueError(f"{fn}: target shape {target.shape} does not match input shape {self.shape} (expected {self.shape[:1] + self.shape[2:]})")
    if weight is not None and weight.shape != (C,): raise ValueError(f"{fn}: weight must have shape ({C},), got {weight.shape}")
    _lt().check_index(target, 0, C, f"{fn} target class", ignore=ignore_index)
    valid = target != ignore_index
    # the target's log-probability and weight, read directly (GATHER); an ignored target reads class 0, masked off after
    t = valid.where(target, 0).unsqueeze(1)
    w_t = _T().ones(target.shape, dtype=self.dtype, device=self.device) if weight is None else weight.cast(self.dtype)[t.squeeze(1)]
    loss = -valid.where(self._gather(1, t).squeeze(1) * w_t, 0)
    if label_smoothing > 0:
      w = _T().ones(C, dtype=self.dtype, device=self.device) if weight is None else weight.cast(self.dtype)
      loss = loss * (1 - label_smoothing) - valid.where((self * w.reshape(C, *[1] * (self.ndim - 2))).sum(1), 0) * (label_smoothing / C)
    if reduction == "mean": return loss.sum() / valid.where(w_t, 0).sum()
    return _reduce_loss(loss, reduction, fn)
  def nll_loss(self: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """torch.nn.functional.nll_loss on log-probabilities (N, C, d...) and class indices (N, d...); 'mean' divides by the summed target weights."""
    return self._nll(target, weight, ignore_index, reduction, 0.0, "nll_loss")
  def cross_entropy(self: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean",
                    label_smoothing: float = 0.0) -> Tensor:
    """torch.nn.functional.cross_entropy on logits (N, C, d...) or (C,): integer class-index targets, or float class probabilities of the input's shape."""
    if not 0 <= label_smoothing <= 1: raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    logp = self.log_softmax(1 if self.ndim > 1 else 0)
    if not target.dtype.is_float(): return logp._nll(target, weight, ignore_index, reduction, label_smoothing, "cross_entropy")
    if target.shape != self.shape: raise ValueError(f"cross_entropy: probability targets must have the input's shape {self.shape}, got {target.shape}")
    C, ax = self.shape[1 if self.ndim > 1 else 0], 1 if self.ndim > 1 else 0
    if weight is not None and weight.shape != (C,): raise ValueError(f"cross_entropy: weight must have shape ({C},), got {weight.shape}")
    p = target.cast(logp.dtype)
    if label_smoothing > 0: p = p * (1 - label_smoothing) + label_smoothing / C
    if weight is not None: p = p * weight.cast(logp.dtype).reshape(C, *[1] * (self.ndim - ax - 1))
    loss = -(p * logp).sum(ax)
    if reduction == "mean": return loss.sum() / (loss.numel() or math.nan)
    return _reduce_loss(loss, reduction, "cross_entropy")
  def binary_cross_entropy(self: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """torch.nn.functional.binary_cross_entropy on probabilities; each log is clamped at -100, as torch does. weight
    broadcasts against the input."""
    _same_shape(self, target, "binary_cross_entropy")
    loss = -(target * self.log().maximum(-100) + (1 - target) * (1 - self).log().maximum(-100))
    if loss.uop.requires_grad:  # torch's gradients, not the clamped logs': finite where a probability is 0 or 1
      loss = _T()(UOp(Ops.VJP, loss.dtype, (loss.uop, self.uop, target.uop), ("bce", None)))
    return _reduce_loss(loss if weight is None else loss * weight, reduction, "binary_cross_entropy")
  def binary_cross_entropy_with_logits(self: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "mean",
                                       pos_weight: Tensor | None = None) -> Tensor:
    """torch.nn.functional.binary_cross_entropy_with_logits, stable for any logit: log(1+e^-x) is taken as max(-x,0) + log(1+e^-|x|).
    weight and pos_weight broadcast against the input (pos_weight (C,) weighs the positives of each class on the last axis)."""
    _same_shape(self, target, "binary_cross_entropy_with_logits")
    softplus_neg = (-self).maximum(0) + (1 + (-self.abs()).exp()).log()  # -log(sigmoid(x))
    lw = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
    loss = (1 - target) * self + lw * softplus_neg
    return _reduce_loss(loss if weight is None else loss * weight, reduction, "binary_cross_entropy_with_logits")
  def binary_crossentropy(self: Tensor, Y: Tensor, reduction: str = "mean") -> Tensor:
    """tinygrad's name for binary_cross_entropy (probabilities, each log clamped at -100)."""
    return self.binary_cross_entropy(Y, reduction=reduction)
  def binary_crossentropy_logits(self: Tensor, Y: Tensor, reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """tinygrad's name for binary_cross_entropy_with_logits."""
    return self.binary_cross_entropy_with_logits(Y, reduction=reduction, pos_weight=pos_weight)
  def sparse_categorical_crossentropy(self: Tensor, Y: Tensor, ignore_index: int = -1, label_smoothing: float = 0.0, reduction: str = "mean") -> Tensor:
    """tinygrad's cross entropy of logits (..., C), the classes on the LAST axis (torch's cross_entropy has them on axis 1),
    at integer class targets Y (...); targets equal to ignore_index (default -1) count for nothing, 'mean' averages the rest."""
    if Y.dtype.is_float() or Y.dtype == dtypes.bool: raise TypeError(f"sparse_categorical_crossentropy: Y must hold integer class indices, got {Y.dtype}")
    x = self if self.ndim < 2 else self.permute(0, self.ndim - 1, *range(1, self.ndim - 1))
    return x.cross_entropy(Y, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
  def mse_loss(self: Tensor, target: Tensor, reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """torch.nn.functional.mse_loss: (x - target)^2; with a weight of the input's shape, 'mean' is sum(w loss) / sum(w)."""
    return _weighted_loss((self - target).square(), weight, reduction, self.shape, "mse_loss", by_weight=True)
  def l1_loss(self: Tensor, target: Tensor, reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """torch.nn.functional.l1_loss: |x - target|; with a weight of the input's shape, 'mean' is sum(w loss) / sum(w)."""
    return _weighted_loss((self - target).abs(), weight, reduction, self.shape, "l1_loss", by_weight=True)
  def smooth_l1_loss(self: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """torch.nn.functional.smooth_l1_loss: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (beta 0 is l1)."""
    if beta < 0: raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    d = (self - target).abs()
    return _reduce_loss(d if beta == 0 else (d < beta).where(0.5 * d * d / beta, d - 0.5 * beta), reduction, "smooth_l1_loss")
  def huber_loss(self: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0, weight: Tensor | None = None) -> Tensor:
    """torch.nn.functional.huber_loss: 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta); a weight of the input's
    shape multiplies it ('mean' then stays the mean over elements, as torch's, unlike mse_loss and l1_loss)."""
    if delta <= 0: raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    d = (self - target).abs()
    return _weighted_loss((d < delta).where(0.5 * d * d, delta * (d - 0.5 * delta)), weight, reduction, self.shape, "huber_loss", by_weight=False)
  def kl_div(self: Tensor, target: Tensor, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """torch.nn.functional.kl_div of log-probabilities self from target: target (log target - self), 0 where target is 0; reduction may be 'batchmean'."""
    if log_target: loss = target.exp() * (target - self)
    else: loss = (target > 0).where(target * ((target > 0).where(target, 1).log() - self), (target == 0).where(0, math.nan))
    if reduction == "batchmean": return loss.sum() / (self.shape[0] if self.ndim else 1)
    if reduction not in ("none", "mean", "sum"): raise ValueError(f"kl_div: reduction must be 'none', 'batchmean', 'mean' or 'sum', got {reduction!r}")
    return _reduce_loss(loss, reduction, "kl_div")

  # ---- random ----
  @staticmethod
  def randperm(n: int, dtype=dtypes.int64, device: str | None = None) -> Tensor:
    """A random permutation of 0..n-1: the ranks of n random 32-bit keys (ties by position), counted in O(n^2) compares; no sort."""
    if not isinstance(n, int) or n < 0: raise ValueError(f"randperm: n must be a non-negative int, got {n!r}")
    T, dev = _T(), Device.canonicalize(device) or Device.DEFAULT
    if n <= 1: return T.zeros(n, dtype=dtype, device=dev)  # nothing to shuffle
    keys = T._random_bits(n, dev).contiguous()  # read n times: a buffer, never a recomputed Threefry
    return _unrank(_rank(keys), n).cast(dtype)
  def multinomial(self: Tensor, num_samples: int = 1, replacement: bool = False) -> Tensor:
    """Class indices sampled from the (unnormalised) weights in the last axis of this (C,) or (B, C) tensor, int64."""
    if self.ndim not in (1, 2): raise ValueError(f"multinomial: weights must have 1 or 2 dimensions, got shape {self.shape}")
    C = self.shape[-1]
    if num_samples < 1: raise ValueError(f"multinomial: num_samples must be positive, got {num_samples}")
    if not replacement and num_samples > C: raise ValueError(f"multinomial: cannot draw {num_samples} samples from {C} classes without replacement")
    T, p = _T(), self.cast(dtypes.float32).reshape(-1, C)
    u = T.rand(p.shape[0], num_samples if replacement else C, device=self.device)
    if replacement:  # inverse CDF: count the cumulative sums at or below u * total
      ci = T.arange(C, dtype=dtypes.int32, device=self.device)
      cdf = ((ci.reshape(1, C) <= ci.reshape(C, 1)).where(p.unsqueeze(1), 0)).sum(-1)  # (B, C)
      x = (cdf.unsqueeze(1) <= u.unsqueeze(-1) * cdf[:, C - 1:].unsqueeze(-1)).cast(dtypes.int32).sum(-1, dtype=dtypes.int32).minimum(C - 1)
    else:  # exponential race: the first num_samples to arrive, in order of arrival (zero weight never arrives)
      x = _unrank(_rank((p > 0).where(-(1 - u).log() / p, math.inf)), num_samples)
    return x.cast(dtypes.int64).reshape(*self.shape[:-1], num_samples)
  def bernoulli(self: Tensor, p: float | None = None) -> Tensor:
    """1 with probability p (or, when p is None, with the probability held in each element), else 0; in this tensor's dtype."""
    probs = self if p is None else p
    return (_T().rand(*self.shape, device=self.device) < probs).cast(self.dtype)

  # ---- initialisers (torch.nn.init) ----
  @staticmethod
  def kaiming_uniform(shape, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", dtype=None, device=None) -> Tensor:
    """U(-b, b) with b = gain * sqrt(3 / fan), as torch.nn.init.kaiming_uniform_."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if mode not in ("fan_in", "fan_out"): raise ValueError(f"kaiming_uniform: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = _fans(shape, "kaiming_uniform")[0 if mode == "fan_in" else 1]
    b = _gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return _T().uniform(*shape, low=-b, high=b, dtype=dtype, device=device)
  @staticmethod
  def kaiming_normal(shape, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", dtype=None, device=None) -> Tensor:
    """N(0, std^2) with std = gain / sqrt(fan), as torch.nn.init.kaiming_normal_."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if mode not in ("fan_in", "fan_out"): raise ValueError(f"kaiming_normal: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = _fans(shape, "kaiming_normal")[0 if mode == "fan_in" else 1]
    return _T().normal(*shape, std=_gain(nonlinearity, a) / math.sqrt(fan), dtype=dtype, device=device)
  @staticmethod
  def xavier_uniform(shape, gain: float = 1.0, dtype=None, device=None) -> Tensor:
    """U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)), as torch.nn.init.xavier_uniform_."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    b = gain * math.sqrt(6.0 / sum(_fans(shape, "xavier_uniform")))
    return _T().uniform(*shape, low=-b, high=b, dtype=dtype, device=device)
  @staticmethod
  def xavier_normal(shape, gain: float = 1.0, dtype=None, device=None) -> Tensor:
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)), as torch.nn.init.xavier_normal_."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    return _T().normal(*shape, std=gain * math.sqrt(2.0 / sum(_fans(shape, "xavier_normal"))), dtype=dtype, device=device)
  @staticmethod
  def trunc_normal(shape, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, dtype=None, device=None) -> Tensor:
    """N(mean, std^2) truncated to [a, b] (absolute bounds, as torch.nn.init.trunc_normal_), by the inverse CDF of a uniform."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not a < b: raise ValueError(f"trunc_normal: need a < b, got a={a} b={b}")
    if std <= 0: raise ValueError(f"trunc_normal: std must be positive, got {std}")
    cdf = lambda v: 0.5 * (1 + math.erf((v - mean) / (std * math.sqrt(2))))
    lo, hi = 2 * cdf(a) - 1, 2 * cdf(b) - 1
    u = _T().uniform(*shape, low=lo, high=hi, dtype=dtypes.float32, device=device).clip(-1 + 2 ** -24, 1 - 2 ** -24)
    return (_erfinv(u) * (std * math.sqrt(2)) + mean).clip(a, b).cast(dtype or dtypes.default_float).contiguous()

VJP_RULES["conv"] = _conv_vjp
VJP_RULES["max_pool"] = _max_pool_vjp
VJP_RULES["max_unpool"] = _max_unpool_vjp
VJP_RULES["bce"] = _bce_vjp
