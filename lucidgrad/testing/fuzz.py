"""A differential fuzzer for silently wrong numbers: random tensor programs of up to 30 ops from the public Tensor API run
on lucidgrad and on references -- NumPy in float64 for values, torch in float64 for gradients -- and every output,
gradient, dtype and shape is compared. `python -m lucidgrad.testing.fuzz --n 1000 --seed 0` runs 1000 cases (case k has
seed 0 + k, and `--seed S --n 1` runs case S alone); each distinct mismatch or crash is shrunk (delta debugging) and printed
as a Python program to paste. `--ops +setitem,+inplace` adds in-place writes, `--avoid-known` steers around `KNOWN` bugs.

A program is a list of `Op`s (kind, argument values, parameters), built once and rendered per backend from the templates
in `SPECS`, so the code printed for a repro is exactly what ran. How a value is judged:
- Shadow runs estimate how far rounding may move it: torch in the program's own dtypes, and NumPy in float32 with every
  rounded op's output nudged by a few ulps (and by the error lucidgrad documents for erf). A float passes if it is within
  8x the larger shadow error plus a slack growing with the chain of rounded ops behind it, in the coarsest precision that
  chain had; NaN and inf must sit at the same places; ints and bools must be equal. Gradients likewise, against torch in
  float64, with torch runs in the program's dtypes, in float32 and in float64 with every gradient flowing into an op's
  argument nudged (a sum of gradients that cancels then shows its noise).
- An op whose result jumps (comparisons, floor, casts to int, argmax, ...) is only drawn where its inputs are exact (no
  rounding has touched them) or far from the jump, relative to the same error estimate; a kink (relu, max, abs, ties)
  near its inputs takes the outputs it reaches out of backward. The programs stay inside what NumPy, torch and C agree
  on: no int overflow or out-of-range shift, no float to int conversion out of range, magnitudes below 1e6.
- In-place writes (`x[i] = v`, `+=`, `assign`) follow NumPy/PyTorch: views taken before a write see it, other values
  keep what they had. A value whose view-ness differs between the three (a reshape NumPy had to copy, `contiguous()`)
  is not read after a write into its base. Programs with writes have no backward.
"""
from __future__ import annotations
import argparse, math, multiprocessing, re, sys, time, traceback, warnings
from dataclasses import dataclass, field
from typing import Any, Callable
import numpy as np
# the programs take .T of N-D tensors on purpose (NumPy's meaning: every axis reversed); torch's deprecation of that
# spelling, which Tensor.T repeats as a warning, is noise here
warnings.filterwarnings("ignore", message=r"Tensor\.T on a \d+-D tensor")

FLOATS, INTS = ("float16", "float32", "float64"), ("int8", "uint8", "int16", "int32", "int64")
EPS = {"float16": 2.0**-10, "float32": 2.0**-23, "float64": 2.0**-52}
SHADOW = {"float16": "float16", "float32": "float32", "float64": "float32"}  # the dtype the NumPy shadow computes in
INT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-2**15, 2**15 - 1), "int32": (-2**31, 2**31 - 1), "int64": (-2**62, 2**62)}
MAX_ABS = {"float16": 1e4, "float32": 1e6, "float64": 1e6}
SIZES, SIZE_P = (0, 1, 2, 3, 4, 5, 7), (0.03, 0.17, 0.2, 0.2, 0.17, 0.13, 0.1)  # few sizes: kernels repeat, their compiles are cached
BIG_SIZES = (8, 16, 32)  # --big: axes long enough for the vector and blocking opts (upcast by 4, unroll, 4x4 accumulators)
MAX_NUMEL = 1024

class Invalid(Exception):
  """The program leaves what the references can judge (a reference raised, a value near a jump, ...): it is dropped."""

class FuzzerBug(Exception):
  """The references disagree with each other where they should not: a mistake in this file (raised in strict mode)."""

# ---------------------------------------------------------------------------------------------------------------------
# NumPy and torch helpers with PyTorch's semantics, named R and P in the rendered programs
# ---------------------------------------------------------------------------------------------------------------------
class Ref:
  """NumPy versions of what NumPy lacks or does otherwise, with PyTorch's semantics. `R` computes floats in float64 (the
  reference); the shadow computes them in float32 (float16 stays float16). Ints are int64, bools bool."""
  def __init__(self, f64: bool = True): self.f64 = f64
  def dt(self, name: str):
    if name == "bool": return np.bool_
    if name in FLOATS: return np.float64 if self.f64 else np.dtype(SHADOW[name]).type
    return np.int64
  def arr(self, k: np.ndarray) -> np.ndarray: return k.astype(self.dt(k.dtype.name))
  def f(self, x) -> np.ndarray:
    """Ints and bools as the default float (what a float op does to them)."""
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(self.dt("float32"))
  def cast(self, x, name: str) -> np.ndarray:
    """Floats truncate toward 0, ints wrap to the target's width."""
    x = np.asarray(x)
    if name == "bool": return x != 0
    if name in FLOATS: return x.astype(self.dt(name))
    v = (np.trunc(x) if x.dtype.kind == "f" else x).astype(np.int64)
    if name == "int64": return v
    lo, hi = INT_RANGE[name]
    return (v - lo) % (hi - lo + 1) + lo
  def sigmoid(self, x): return 1 / (1 + np.exp(-x))
  def erf(self, x):
    x = np.asarray(x)
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()
  def gelu(self, x, approximate="none"):
    if approximate == "tanh": return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1 + self.erf(x / math.sqrt(2)))
  def silu(self, x): return x * self.sigmoid(x)
  def softplus(self, x, beta=1.0, threshold=20.0): return np.where(beta * x > threshold, x, np.log1p(np.exp(beta * x)) / beta)
  def elu(self, x, alpha=1.0): return np.where(x > 0, x, alpha * np.expm1(x))
  def celu(self, x, alpha=1.0): return np.where(x > 0, x, alpha * np.expm1(x / alpha))
  def selu(self, x): return 1.0507009873554804934193349852946 * self.elu(x, 1.6732632423543772848170429916717)
  def leaky_relu(self, x, slope=0.01): return np.where(x > 0, x, slope * x)
  def clip(self, x, lo=None, hi=None):
    if lo is not None: x = np.maximum(x, lo)
    return x if hi is None else np.minimum(x, hi)
  def softsign(self, x): return x / (1 + np.abs(x))
  def mish(self, x): return x * np.tanh(self.softplus(x))
  def logsigmoid(self, x): return np.where(x < 0, x - np.log1p(np.exp(x)), -np.log1p(np.exp(-x)))
  def hardsigmoid(self, x): return self.clip(x + 3, 0, 6) / 6
  def hardswish(self, x): return x * self.clip(x + 3, 0, 6) / 6
  def _axes(self, x, axis) -> tuple:
    return tuple(range(x.ndim)) if axis is None else tuple(a % max(x.ndim, 1) for a in (axis if isinstance(axis, tuple) else (axis,)))
  def softmax(self, x, axis):
    if x.shape[axis] == 0: return x.copy()
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)
  def log_softmax(self, x, axis):
    if x.shape[axis] == 0: return x.copy()
    m = x - np.max(x, axis=axis, keepdims=True)
    return m - np.log(np.sum(np.exp(m), axis=axis, keepdims=True))
  def logsumexp(self, x, axis=None, keepdim=False):
    axes = self._axes(x, axis)
    if any(x.shape[a] == 0 for a in axes): return np.full(np.sum(x, axis=axes, keepdims=keepdim).shape, -np.inf, x.dtype)
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isinf(m), 0, m)
    out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keepdim else np.squeeze(out, axis=axes)
  def pow(self, a, b):
    """PyTorch's int powers: a negative exponent gives 0 unless the base is 1 or -1."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind not in "iu" or b.dtype.kind not in "iu" or not np.any(b < 0): return a ** b
    neg = b < 0
    return np.where(neg, np.where(a == 1, 1, np.where(a == -1, 1 - 2 * (b % 2), 0)), a ** np.where(neg, 0, b))
  def var(self, x, axis=None, keepdim=False, correction=1):
    axes = self._axes(x, axis)
    n = math.prod(x.shape[a] for a in axes)
    sq = np.sum((x - (np.mean(x, axis=axes, keepdims=True) if n else 0)) ** 2, axis=axes, keepdims=keepdim)
    return sq / max(n - correction, 0) if n else sq * np.nan  # 0/0 is nan, s/0 inf: what torch gives
  def std(self, x, axis=None, keepdim=False, correction=1): return np.sqrt(self.var(x, axis, keepdim, correction))
  def argmax(self, x, axis=None, keepdim=False, fn=np.argmax):
    if axis is None:
      r = np.asarray(fn(x.reshape(-1)))
      return r.reshape((1,) * x.ndim) if keepdim else r
    return np.asarray(fn(x, axis=axis, keepdims=keepdim))
  def argmin(self, x, axis=None, keepdim=False): return self.argmax(x, axis, keepdim, np.argmin)
  def cummax(self, x, dim, fn=max):
    """(values, indices): the index is the last place the running maximum was reached; NaN propagates (torch.cummax)."""
    y = np.moveaxis(x, dim, -1)
    v, ix = np.empty_like(y), np.zeros(y.shape, np.int64)
    for pos in np.ndindex(*y.shape[:-1]):
      cur, ci = None, 0
      for k in range(y.shape[-1]):
        e = y[pos + (k,)]
        if cur is None or np.isnan(e) or (not np.isnan(cur) and fn(e, cur) == e): cur, ci = e, k
        v[pos + (k,)], ix[pos + (k,)] = cur, ci
    return np.moveaxis(v, -1, dim), np.moveaxis(ix, -1, dim)
  def cummin(self, x, dim): return self.cummax(x, dim, min)
  def sort(self, x, dim=-1, descending=False):
    """Stable, NaN the largest value: as lucidgrad's sort and torch's sort(stable=True)."""
    key = np.moveaxis(x.astype(np.float64) if x.dtype.kind != "f" else x, dim, -1)
    nan = np.isnan(key)
    k = np.where(nan, 0, -key if descending else key)
    ix = np.moveaxis(np.lexsort((k, ~nan if descending else nan), axis=-1), -1, dim) if x.ndim else np.zeros((), np.int64)
    return np.take_along_axis(x, ix, dim) if x.ndim else x.copy(), ix.astype(np.int64)
  def topk(self, x, k, dim=-1, largest=True):
    v, ix = self.sort(x, dim, largest)
    sl = tuple(slice(0, k) if a == dim % x.ndim else slice(None) for a in range(x.ndim))
    return v[sl], ix[sl]
  def vector_norm(self, x, ord=2, dim=None, keepdim=False):
    a, axes = np.abs(x), self._axes(x, dim)
    if ord == math.inf: return np.max(a, axis=axes, keepdims=keepdim)
    if ord == -math.inf: return np.min(a, axis=axes, keepdims=keepdim)
    if ord == 0: return np.sum(a != 0, axis=axes, keepdims=keepdim).astype(x.dtype)
    return np.sum(a ** ord, axis=axes, keepdims=keepdim) ** (1 / ord)
  def gather(self, x, dim, idx):
    sl = tuple(slice(None) if a == dim % x.ndim else slice(0, n) for a, n in enumerate(idx.shape))
    return np.take_along_axis(x[sl], idx.astype(np.int64), dim)
  def unfold(self, x, dim, size, step):
    w = np.lib.stride_tricks.sliding_window_view(x, size, axis=dim)
    return w[tuple(slice(None, None, step) if a == dim % x.ndim else slice(None) for a in range(x.ndim))]
  def pad(self, x, pads, mode="constant", value=0.0):
    """lucidgrad's pad: one (before, after) pair per axis; negative pads crop first."""
    if x.ndim == 0: return x.copy()
    x = x[tuple(slice(max(0, -b), n - max(0, -a)) for (b, a), n in zip(pads, x.shape))]
    pos = [(max(0, b), max(0, a)) for b, a in pads]
    if mode == "constant": return np.pad(x, pos, constant_values=value)
    return np.pad(x, pos, mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode])
  def conv(self, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """torch's conv1d/conv2d (cross-correlation) from windows of the padded input."""
    nd = w.ndim - 2
    st, pd, dl = (v if isinstance(v, tuple) else (v,) * nd for v in (stride, padding, dilation))
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pd])
    k = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(x, [d * (n - 1) + 1 for d, n in zip(dl, k)], axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in st) + tuple(slice(None, None, d) for d in dl)]
    N, C, O = x.shape[0], x.shape[1], w.shape[0]
    xg, wg = win.reshape(N, groups, C // groups, *win.shape[2:]), w.reshape(groups, O // groups, C // groups, *k)
    out = np.einsum("ngcxi,goci->ngox" if nd == 1 else "ngcxyij,gocij->ngoxy", xg, wg).reshape(N, O, *win.shape[2:2 + nd])
    return out if b is None else out + b.reshape((1, O) + (1,) * nd)
  def pool2d(self, x, k, stride, padding, op):
    """torch's max_pool2d / avg_pool2d (count_include_pad) on the last two axes."""
    fill = -np.inf if op == "max" else 0.0
    x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(padding, padding)] * 2, constant_values=fill)
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(-2, -1))[..., ::stride, ::stride, :, :]
    return np.max(win, axis=(-2, -1)) if op == "max" else np.mean(win, axis=(-2, -1))
  def layer_norm(self, x, shape, eps=1e-5):
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    return (x - np.mean(x, axis=axes, keepdims=True)) / np.sqrt(np.var(x, axis=axes, keepdims=True) + eps)
  def cross_entropy(self, x, t):
    ls = self.log_softmax(x, -1)
    return -np.mean(np.take_along_axis(ls, t.astype(np.int64)[..., None], -1))
  def sdpa(self, q, k, v, is_causal=False):
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if is_causal: s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    return self.softmax(s, -1) @ v
  def scatter_add(self, x, dim, idx, src):
    out = x.copy()
    ix = np.indices(idx.shape)
    ix[dim % x.ndim] = idx
    np.add.at(out, tuple(ix), src[tuple(slice(0, n) for n in idx.shape)])
    return out
  def one_hot(self, x, n): return (x[..., None] == np.arange(n)).astype(np.int64)
  def _split(self, x, idx: tuple) -> tuple[tuple, list]:
    """PyTorch's indexing rule: ints, slices and None first (a view); then the arrays on the axes they index."""
    items = _flat_items(idx)
    n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
    basic, adv, out = [], [], 0
    for i in items:
      if i is Ellipsis: basic.append(i); out += x.ndim - n_real
      elif i is None: basic.append(i); out += 1
      elif isinstance(i, np.ndarray): basic.append(slice(None)); adv.append((out, i)); out += 1
      else:
        basic.append(i)
        if isinstance(i, slice): out += 1
    return tuple(basic), adv
  def index(self, x, idx: tuple):
    basic, adv = self._split(x, idx)
    y = x[basic]
    if not adv: return y
    full = [slice(None)] * y.ndim
    for pos, a in adv: full[pos] = a
    return y[tuple(full)]
  def setindex(self, x, idx: tuple, v):
    basic, adv = self._split(x, idx)
    y = x[basic]
    full = [slice(None)] * y.ndim
    for pos, a in adv: full[pos] = a
    y[tuple(full)] = v

R = Ref(True)
_R32 = Ref(False)

_torch = None
def _t():
  """torch, imported on first use (it takes a second)."""
  global _torch
  if _torch is None:
    import torch
    torch.set_num_threads(1)
    _torch = torch
  return _torch

class TorchRef:
  """torch with the same helpers. mode 'actual': the program's own dtypes (PyTorch's answer, and a rounding sample);
  'f64': every float in float64 (the gradient reference); 'f32': every float in float32 (a rounding sample)."""
  def __init__(self, mode: str): self.mode = mode
  def dt(self, name: str):
    torch = _t()
    if name in FLOATS and self.mode != "actual": return torch.float64 if self.mode == "f64" else torch.float32
    return {"bool": torch.bool, "float16": torch.float16, "float32": torch.float32, "float64": torch.float64, "int8": torch.int8,
            "uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64}[name]
  def arr(self, k: np.ndarray, rg: bool = False):
    t = _t().tensor(k, dtype=self.dt(k.dtype.name))
    return t.requires_grad_() if rg else t
  def t(self, k: np.ndarray): return _t().from_numpy(np.ascontiguousarray(k))
  def f(self, x): return x if x.is_floating_point() else x.to(self.dt("float32"))
  def cast(self, x, name: str):
    if name == "bool": return x != 0
    if name in FLOATS or not x.is_floating_point(): return x.to(self.dt(name))
    return x.trunc().to(_t().int64).to(self.dt(name))
  def s(self, x, v):
    """A Python number as a 0-d tensor of the dtype `x op v` would have."""
    return _t().tensor(v, dtype=_t().result_type(x, v))
  def maximum(self, x, y): return _t().maximum(x, y if isinstance(y, _t().Tensor) else self.s(x, y))
  def minimum(self, x, y): return _t().minimum(x, y if isinstance(y, _t().Tensor) else self.s(x, y))
  def d(self, x): return x.detach() if isinstance(x, _t().Tensor) else x
  def _dims(self, x, axis): return tuple(range(x.ndim)) if axis is None else axis
  def sum(self, x, axis=None, keepdim=False): return x.sum(dim=self._dims(x, axis), keepdim=keepdim) if x.ndim else x.sum()
  def prod(self, x, axis=None, keepdim=False):
    if x.ndim == 0: return x.prod()
    axes = sorted({a % x.ndim for a in (self._dims(x, axis) if not isinstance(axis, int) else (axis,))}, reverse=True)
    for a in axes: x = x.prod(dim=a, keepdim=True)  # torch's prod takes one axis at a time
    return x if keepdim else x.squeeze(tuple(axes))
  def amax(self, x, axis=None, keepdim=False): return x.amax(dim=self._dims(x, axis), keepdim=keepdim) if x.ndim else x.clone()
  def amin(self, x, axis=None, keepdim=False): return x.amin(dim=self._dims(x, axis), keepdim=keepdim) if x.ndim else x.clone()
  def mean(self, x, axis=None, keepdim=False): return self.f(x).mean(dim=self._dims(x, axis), keepdim=keepdim) if x.ndim else self.f(x).clone()
  def var(self, x, axis=None, keepdim=False, correction=1): return _t().var(self.f(x), dim=axis, correction=correction, keepdim=keepdim)
  def std(self, x, axis=None, keepdim=False, correction=1): return _t().std(self.f(x), dim=axis, correction=correction, keepdim=keepdim)
  def argmax(self, x, axis=None, keepdim=False): return _t().argmax(x.to(_t().uint8) if x.dtype == _t().bool else x, dim=axis, keepdim=keepdim)
  def argmin(self, x, axis=None, keepdim=False): return _t().argmin(x.to(_t().uint8) if x.dtype == _t().bool else x, dim=axis, keepdim=keepdim)
  def logsumexp(self, x, axis=None, keepdim=False): return _t().logsumexp(self.f(x), dim=self._dims(x, axis), keepdim=keepdim)
  def sort(self, x, dim=-1, descending=False): return x.sort(dim=dim, descending=descending, stable=True)
  def topk(self, x, k, dim=-1, largest=True):
    v, i = self.sort(x, dim, largest)
    return v.narrow(dim, 0, k), i.narrow(dim, 0, k)
  def rev(self, x): return x.permute(*reversed(range(x.ndim)))
  def mm(self, a, b):
    dt = _t().promote_types(a.dtype, b.dtype)
    return a.to(dt) @ b.to(dt)
  def einsum(self, f, *xs):
    """In the operands' promoted dtype (torch gives int64 for ints it sums away, lucidgrad keeps their dtype, on purpose)."""
    dt = xs[0].dtype
    for x in xs[1:]: dt = _t().promote_types(dt, x.dtype)
    return _t().einsum(f, *[x.to(dt) for x in xs]).to(dt)
  def cat(self, xs, dim):
    dt = xs[0].dtype
    for x in xs[1:]: dt = _t().promote_types(dt, x.dtype)
    return _t().cat([x.to(dt) for x in xs], dim)
  def stack(self, xs, dim): return self.cat([x.unsqueeze(dim) for x in xs], dim)
  def conv(self, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    dt = _t().promote_types(x.dtype, w.dtype)
    f = _t().nn.functional.conv1d if w.ndim == 3 else _t().nn.functional.conv2d
    return f(x.to(dt), w.to(dt), None if b is None else b.to(dt), stride, padding, dilation, groups)
  def scatter_add(self, x, dim, idx, src): return x.scatter_add(dim, idx.long(), src.to(x.dtype))
  def gather(self, x, dim, idx): return _t().gather(x, dim, idx.long())
  def pad(self, x, pads, mode="constant", value=0.0):
    for a, (b, e) in enumerate(pads):  # crop the negative sides first
      if b < 0 or e < 0: x = x.narrow(a, max(0, -b), x.shape[a] - max(0, -b) - max(0, -e))
    pos = [(max(0, b), max(0, e)) for b, e in pads]
    if mode == "constant":
      flat = [v for p in reversed(pos) for v in p]
      return _t().nn.functional.pad(x, flat, value=value) if any(flat) else x.clone()
    for a, (b, e) in enumerate(pos):
      n = x.shape[a]
      src = np.pad(np.arange(n), (b, e), mode={"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode])
      x = x.index_select(a, _t().from_numpy(src))
    return x
  def _split(self, x, idx: tuple) -> tuple[tuple, list, list]:
    """(basic index with positive steps, the axes to flip after it, [(axis, index tensor)] to apply after that)."""
    items = _flat_items(idx)
    n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
    basic, flips, adv, out, dim = [], [], [], 0, 0
    for i in items:
      if i is Ellipsis: basic.append(i); out += x.ndim - n_real; dim += x.ndim - n_real
      elif i is None: basic.append(i); out += 1
      elif isinstance(i, np.ndarray): basic.append(slice(None)); adv.append((out, self.t(i))); out += 1; dim += 1
      elif isinstance(i, slice):
        start, stop, step = i.indices(x.shape[dim])
        if step < 0:
          cnt = len(range(start, stop, step))
          lo = start + step * (cnt - 1) if cnt else 0
          i = slice(lo, lo + (cnt - 1) * -step + 1 if cnt else lo, -step)
          flips.append(out)
        basic.append(i); out += 1; dim += 1
      else: basic.append(i); dim += 1
    return tuple(basic), flips, adv
  def index(self, x, idx: tuple):
    if not any(isinstance(i, slice) and (i.step or 1) < 0 for i in idx): return x[tuple(self.t(i) if isinstance(i, np.ndarray) else i for i in idx)]
    basic, flips, adv = self._split(x, idx)  # torch has no negative steps: index as PyTorch's rule says, in two steps
    y = x[basic].flip(flips)
    if not adv: return y
    full: list = [slice(None)] * y.ndim
    for pos, a in adv: full[pos] = a
    return y[tuple(full)]
  def setindex(self, x, idx: tuple, v):
    basic, flips, adv = self._split(x, idx)
    if not flips:
      x[tuple(self.t(i) if isinstance(i, np.ndarray) else i for i in idx)] = v
      return
    assert not adv, "the generator writes through negative steps only with basic indices"
    sub = x[basic]
    if isinstance(v, _t().Tensor): sub.copy_(v.expand(sub.shape).flip(flips))
    else: sub.fill_(v)

def _flat_items(idx: tuple) -> list:
  """Index items with a bool mask as the arrays of its True positions and a 0-d array as an int."""
  items: list = []
  for i in idx:
    if isinstance(i, np.ndarray) and i.dtype == np.bool_: items.extend(np.nonzero(i))
    else: items.append(int(i) if isinstance(i, np.ndarray) and i.ndim == 0 else i)
  return items

_P = {m: None for m in ("actual", "f64", "f32")}
def torch_ref(mode: str) -> TorchRef:
  if _P[mode] is None: _P[mode] = TorchRef(mode)
  return _P[mode]
# ---------------------------------------------------------------------------------------------------------------------
# Programs: a list of ops, each rendered per backend from one template ("lg" lucidgrad, "np" NumPy, "pt" torch)
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class Op:
  kind: str
  args: tuple[int, ...] = ()
  p: dict = field(default_factory=dict)

@dataclass
class Program:
  ops: list[Op]
  grad: bool = False  # backward through the outputs, against torch float64 gradients
  seed: int = 0
  @property
  def n_ops(self) -> int: return sum(1 for o in self.ops if o.kind != "input")

@dataclass(frozen=True)
class Spec:
  group: str
  lg: Any
  np: Any
  pt: Any                        # str.format templates ({0}.. the args, {a} all of them, {name} a param) or fn(args, p) -> str
  alias: str = "fresh"           # fresh | view | ambig (a view in some of the three only) | reshape (a view where NumPy made one)
  exact: bool = False            # no rounding: the result is exact where its float inputs are
  check: Callable | None = None  # c -> None, calls c.need(distance, margin) at jumps of the value, c.kink(...) at kinks
  diff: bool = True              # the gradient flows through
  stmt: bool = False             # the templates are statements (writes), not expressions
  writable: bool = True          # a write through this view reaches its base
  approx: Callable | None = None  # (input values, dtype) -> the absolute error lucidgrad documents for this op
  dapprox: Callable | None = None  # the same for its derivative

SPECS: dict[str, Spec] = {}
def spec(name: str, group: str, lg, np_, pt, **kw): SPECS[name] = Spec(group, lg, np_, pt, **kw)

PREFIX = {"lg": "v", "np": "n", "pt": "t"}

def lit(v, consts: dict, name: str) -> str:
  """Python source for a parameter; arrays become named constants."""
  if isinstance(v, np.ndarray):
    consts[name] = v
    return name
  if isinstance(v, float) and not math.isfinite(v): return "math.nan" if math.isnan(v) else "math.inf" if v > 0 else "-math.inf"
  if isinstance(v, tuple): return "(" + ", ".join(lit(x, consts, f"{name}_{k}") for k, x in enumerate(v)) + ("," if len(v) == 1 else "") + ")"
  if isinstance(v, list): return "[" + ", ".join(lit(x, consts, f"{name}_{k}") for k, x in enumerate(v)) + "]"
  return repr(v)

def _slice_src(s: slice, colon: bool) -> str:
  if not colon: return f"slice({s.start}, {s.stop}, {s.step})"
  out = f"{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}"
  return out + (f":{s.step}" if s.step is not None else "")

def render_index(idx: tuple, be: str, args: list[str], consts: dict, name: str, subscript: bool) -> str:
  """An index tuple as source: `a, 1:3, None` for a subscript, `(a, slice(1, 3, None), None,)` for R.index/P.index."""
  out = []
  for k, i in enumerate(idx):
    if isinstance(i, slice): out.append(_slice_src(i, subscript))
    elif i is Ellipsis: out.append("...")
    elif isinstance(i, tuple) and i[0] == "v": out.append(args[i[1]])
    elif isinstance(i, tuple):  # ("a", int array, as a Tensor) or ("m", bool mask)
      c = lit(i[1], consts, f"{name}_{k}")
      out.append(f"Tensor({c})" if be == "lg" and i[0] == "a" and i[2] else c)
    else: out.append(repr(i))
  if subscript: return ", ".join(out) if out else "()"
  return "(" + ", ".join(out) + ("," if len(out) == 1 else "") + ")"

def render(op: Op, i: int, be: str, consts: dict, names: list[str] | None = None) -> str:
  """The statement(s) computing value i on backend `be`, e.g. `v3 = v1.exp()`; constants go into `consts`. `names`: other
  names for the arguments."""
  s, pre = SPECS[op.kind], PREFIX[be]
  args = names or [f"{pre}{j}" for j in op.args]
  p = {k: (v if k == "idx" else lit(v, consts, f"k{i}" if k == "data" else f"k{i}_{k}")) for k, v in op.p.items()}
  if "idx" in op.p:
    adv = any(isinstance(x, tuple) for x in op.p["idx"])
    p["idx"] = render_index(op.p["idx"], be, args, consts, f"k{i}_idx", be == "lg" or (be == "np" and not adv))
    p["adv"] = adv
  tpl = getattr(s, be)
  body = tpl(args, p) if callable(tpl) else tpl.format(*args, a=", ".join(args), **p)
  return body.replace("{out}", f"{pre}{i}") if s.stmt else f"{pre}{i} = {body}"

# ---- checks: where a value jumps or a gradient kinks ----
def _near(x, pts) -> np.ndarray: return np.min(np.stack([np.abs(np.asarray(x, np.float64) - t) for t in pts]), axis=0)
def _cmp(c): c.need(np.abs(c.x(0) - c.x(1)), c.m(0) + c.m(1))
def _jump_at(*pts): return lambda c: c.need(_near(c.x(0), pts), c.m(0))
def _kink_at(*pts): return lambda c: c.kink(_near(c.x(0), pts), c.m(0))
def _pole_at(pt, zero_ok=True):
  """log, sqrt (the sign of 0 does not matter: zero_ok) or 1/x (it does)."""
  def check(c):
    c.need(np.abs(c.x(0) - pt), c.m(0), zero_ok=zero_ok)
    c.kink(np.abs(c.x(0) - pt), c.m(0))
  return check
def _int_jump(c): c.need(np.abs(c.x(0) - np.round(c.x(0))), c.m(0))
def _half_jump(c):
  x = c.x(0)
  c.need(np.abs(np.abs(x - np.floor(x)) - 0.5), c.m(0))
def _truthy(*js):
  def check(c):
    for j in js: c.need(np.abs(c.x(j)), c.m(j))
  return check
def _clip_kink(c):
  lo, hi = c.p.get("lo"), c.p.get("hi")
  c.kink(_near(c.x(0), [v for v in (lo, hi) if v is not None]), c.m(0))
def _gap(x: np.ndarray, axis) -> np.ndarray:
  """Per slice along `axis` (all when None): the distance between its largest value and the next."""
  y = x.reshape(-1) if axis is None else np.moveaxis(x, axis, -1)
  if y.shape[-1] < 2: return np.full(y.shape[:-1], np.inf)
  s = np.sort(y, axis=-1)
  return s[..., -1] - s[..., -2]
def _min_diff(x: np.ndarray, axis) -> np.ndarray:
  """Per slice along `axis`: the smallest distance between two of its values."""
  y = np.moveaxis(x, axis, -1) if x.ndim else x.reshape(1)
  if y.shape[-1] < 2: return np.full(y.shape[:-1], np.inf)
  return np.min(np.diff(np.sort(y, axis=-1), axis=-1), axis=-1)
def _margin_along(m, x: np.ndarray, axis):
  m = np.broadcast_to(np.asarray(m, np.float64), x.shape)
  if axis is None: return np.max(m) if m.size else 0.0
  return np.max(np.moveaxis(m, axis, -1), axis=-1) if m.shape[axis % m.ndim] else np.zeros(np.moveaxis(m, axis, -1).shape[:-1])
def _argmax_check(sign):
  def check(c):
    x, ax = sign * c.x(0), c.p.get("axis")
    c.need(_gap(x, ax), 2 * _margin_along(c.m(0), x, ax))
  return check
def _max_kink(sign):
  def check(c):
    x, axes = sign * c.x(0), c.p.get("axis")
    m = np.broadcast_to(np.asarray(c.m(0), np.float64), x.shape)
    if axes is None: x, m, axes = x.reshape(-1), m.reshape(-1), 0
    elif isinstance(axes, tuple): x, m, axes = _merge(x, axes), _merge(m, axes), -1
    if x.size: c.kink(_gap(x, axes), 2 * _margin_along(m, x, axes))
  return check
def _merge(x: np.ndarray, axes: tuple) -> np.ndarray:
  """x with `axes` moved last and flattened into one."""
  axes = tuple(a % x.ndim for a in axes)
  rest = [a for a in range(x.ndim) if a not in axes]
  y = np.transpose(x, rest + list(axes))
  return y.reshape(y.shape[:len(rest)] + (math.prod(y.shape[len(rest):]),))
def _ties(value_jump: bool):
  def check(c):
    x, d = c.x(0), c.p.get("dim", -1)
    if x.ndim == 0: return
    md, mg = _min_diff(x, d), 2 * _margin_along(c.m(0), x, d)
    if value_jump: c.need(md, mg)
    c.kink(md, mg)
  return check
def _div_check(c):
  c.nonzero(1)
  c.need(np.abs(c.x(1)), c.m(1), zero_ok=False)
def _mod_check(c):
  _div_check(c)
  a, b = c.x(0), c.x(1)
  q = a / b
  c.need(np.abs(q - np.round(q)) * np.abs(b), c.m(0) + c.m(1) * np.abs(q) + 1e-300)
def _pow_check(c):
  a, b = c.x(0), c.x(1)
  if c.is_scalar(1) and float(b) == int(b):  # an integer power: any base, but not 0 to a negative power
    if b < 0: c.nonzero(0); c.need(np.abs(a), c.m(0), zero_ok=False)
    return
  if c.is_scalar(0): return  # a positive number to a tensor power
  c.need(np.abs(a), c.m(0), zero_ok=False)  # a negative base gives NaN, a positive one a number: the sign must be sure
  if not c.is_scalar(1): c.positive(0)
  c.kink(np.abs(a), c.m(0))
def _norm_check(c):
  o = c.p["ord"]
  if o == 0: c.need(np.abs(c.x(0)), c.m(0))
  elif o in (1, math.inf, -math.inf) or o < 1: c.kink(np.abs(c.x(0)), c.m(0))
  if o in (math.inf, -math.inf): _max_kink(1)(c)
def _std_kink(c):
  out = np.asarray(c.out, np.float64)
  c.kink(np.abs(out), 1e-4 * (np.max(np.abs(c.x(0))) if c.x(0).size else 1.0) + 1e-30)
def _no_neg_inf(c):
  """lucidgrad gives gelu and hardswish their limit 0 at -inf; torch gives -inf * 0 = NaN. Not drawn."""
  if np.any(np.isneginf(c.x(0))): raise Invalid("-inf into gelu or hardswish")
def _tan_check(c): c.need(np.abs(np.cos(c.x(0))), 1e-2 + c.m(0))
def _cast_check(c):
  name, x = c.p["dtype"], c.x(0)
  if c.dtype(0) in FLOATS and name in INTS:
    fin = x[np.isfinite(x)] if x.ndim else x[None][np.isfinite(x[None])]
    lo, hi = INT_RANGE[name]
    if not np.all(np.isfinite(x)) or (fin.size and (np.min(np.trunc(fin)) < max(lo, -2**31) or np.max(np.trunc(fin)) > min(hi, 2**31 - 1))):
      raise Invalid("float to int out of range")
    _int_jump(c)
  if c.dtype(0) in FLOATS and name == "bool": _truthy(0)(c)

# ---- the ops ----
for _n in ("exp", "exp2", "expm1", "sin", "cos", "tanh"): spec(_n, "unary", f"{{0}}.{_n}()", f"np.{_n}(R.f({{0}}))", f"{{0}}.{_n}()")
for _n, _pole in (("log", 0), ("log2", 0), ("log10", 0), ("log1p", -1), ("sqrt", 0)):
  spec(_n, "unary", f"{{0}}.{_n}()", f"np.{_n}(R.f({{0}}))", f"{{0}}.{_n}()", check=_pole_at(_pole))
spec("rsqrt", "unary", "{0}.rsqrt()", "1 / np.sqrt(R.f({0}))", "{0}.rsqrt()", check=_pole_at(0, False))
spec("reciprocal", "unary", "{0}.reciprocal()", "1 / R.f({0})", "{0}.reciprocal()", check=_pole_at(0, False))
spec("tan", "unary", "{0}.tan()", "np.tan(R.f({0}))", "{0}.tan()", check=_tan_check)
spec("sigmoid", "unary", "{0}.sigmoid()", "R.sigmoid(R.f({0}))", "{0}.sigmoid()")
# erf's docstring says 1e-15 (float64 series) and 1.5e-7 (A&S 7.1.26 for other floats); measured on a grid: 4.1e-15 and 5.3e-7
_ERF_ERR = {"float64": 5e-15, "float32": 6e-7, "float16": 6e-7}
_DERF_ERR = {"float64": 1e-14, "float32": 2e-5, "float16": 2e-5}  # their derivatives (A&S: 8e-6 measured at 0)
spec("erf", "unary", "{0}.erf()", "R.erf(R.f({0}))", "{0}.erf()", approx=lambda x, dt: np.full(x.shape, _ERF_ERR[dt]),
     dapprox=lambda x, dt: np.full(x.shape, _DERF_ERR[dt]))
spec("square", "unary", "{0}.square()", "np.square({0})", "{0}.square()")
spec("neg", "unary", "-{0}", "-{0}", "-{0}", exact=True)
spec("abs", "unary", "{0}.abs()", "np.abs({0})", "{0}.abs()", exact=True, check=_kink_at(0))
spec("relu", "unary", "{0}.relu()", "np.maximum({0}, 0)", "{0}.relu()", exact=True, check=_kink_at(0))
spec("sign", "unary", "{0}.sign()", "np.sign({0})", "{0}.sign()", exact=True, check=_jump_at(0))
for _n in ("floor", "ceil", "trunc"): spec(_n, "unary", f"{{0}}.{_n}()", f"np.{_n}({{0}})", f"{{0}}.{_n}()", exact=True, check=_int_jump)
spec("round", "unary", "{0}.round()", "np.round({0})", "{0}.round()", exact=True, check=_half_jump)
spec("clip", "unary", "{0}.clip({lo}, {hi})", "R.clip({0}, {lo}, {hi})", "{0}.clamp({lo}, {hi})", exact=True, check=_clip_kink)
for _n in ("isnan", "isinf", "isfinite"): spec(_n, "unary", f"{{0}}.{_n}()", f"np.{_n}({{0}})", f"{{0}}.{_n}()", exact=True, diff=False)
spec("nan_to_num", "unary", "{0}.nan_to_num({nan}, {posinf}, {neginf})", "np.nan_to_num({0}, nan={nan}, posinf={posinf}, neginf={neginf})",
     "{0}.nan_to_num({nan}, {posinf}, {neginf})", exact=True)
spec("logical_not", "unary", "{0}.logical_not()", "np.logical_not({0})", "{0}.logical_not()", exact=True, check=_truthy(0), diff=False)
spec("bitwise_not", "unary", "~{0}", "~{0}", "~{0}", exact=True)
# activations (float inputs only)
spec("gelu", "activation", "{0}.gelu({approximate})", "R.gelu({0}, {approximate})", "F.gelu({0}, approximate={approximate})",
     check=_no_neg_inf, approx=lambda x, dt: 0.5 * np.abs(x) * _ERF_ERR[dt], dapprox=lambda x, dt: 0.5 * (1 + np.abs(x)) * _DERF_ERR[dt])
for _n in ("silu", "mish", "softsign", "logsigmoid", "selu"): spec(_n, "activation", f"{{0}}.{_n}()", f"R.{_n}({{0}})", f"F.{_n}({{0}})")
spec("softplus", "activation", "{0}.softplus({beta}, {threshold})", "R.softplus({0}, {beta}, {threshold})", "F.softplus({0}, {beta}, {threshold})")
spec("elu", "activation", "{0}.elu({alpha})", "R.elu({0}, {alpha})", "F.elu({0}, {alpha})", check=_kink_at(0))
spec("celu", "activation", "{0}.celu({alpha})", "R.celu({0}, {alpha})", "F.celu({0}, {alpha})", check=_kink_at(0))
spec("leaky_relu", "activation", "{0}.leaky_relu({slope})", "R.leaky_relu({0}, {slope})", "F.leaky_relu({0}, {slope})", check=_kink_at(0))
spec("relu6", "activation", "{0}.relu6()", "R.clip({0}, 0, 6)", "F.relu6({0})", exact=True, check=_kink_at(0, 6))
spec("hardtanh", "activation", "{0}.hardtanh({lo}, {hi})", "R.clip({0}, {lo}, {hi})", "F.hardtanh({0}, {lo}, {hi})", exact=True, check=_clip_kink)
# torch's own hardsigmoid/hardswish backward multiply by a float32 1/6 even in float64: their formulas instead
spec("hardsigmoid", "activation", "{0}.hardsigmoid()", "R.hardsigmoid({0})", "({0} + 3).clamp(0, 6) / 6", check=_kink_at(-3, 3))
spec("hardswish", "activation", "{0}.hardswish()", "R.hardswish({0})", "{0} * ({0} + 3).clamp(0, 6) / 6",
     check=lambda c: (_no_neg_inf(c), _kink_at(-3, 3)(c)))

def _binary(sym: str, detach: bool = False):
  """`a op b`, `a op 2.0` or `2.0 op a`: the same syntax in all three (torch's args detached where it has no gradient)."""
  def tpl(a, p):
    w = (lambda s: f"P.d({s})") if detach else (lambda s: s)
    if len(a) == 2: return f"{w(a[0])} {sym} {w(a[1])}"
    return f"{p['s']} {sym} {w(a[0])}" if p.get("rev") == "True" else f"{w(a[0])} {sym} {p['s']}"
  return tpl
def _call(fmt: str):
  """fn(a, b) with b a tensor or a number."""
  return lambda a, p: fmt.format(a[0], a[1] if len(a) == 2 else p["s"])
for _n, _s in (("add", "+"), ("sub", "-"), ("mul", "*")): spec(_n, "binary", _binary(_s), _binary(_s), _binary(_s))
spec("div", "binary", _binary("/"), _binary("/"), _binary("/"), check=_div_check)
spec("floor_divide", "binary", _binary("//"), _binary("//"), _binary("//", detach=True), check=_mod_check)
spec("mod", "binary", _binary("%"), _binary("%"), _binary("%"), check=_mod_check)
spec("pow", "binary", _binary("**"), lambda a, p: _call("R.pow({}, {})")(a, p) if p.get("rev") != "True" else f"R.pow({p['s']}, {a[0]})",
     _binary("**"), check=_pow_check)
for _n, _s in (("lt", "<"), ("gt", ">"), ("le", "<="), ("ge", ">="), ("eq", "=="), ("ne", "!=")):
  spec(_n, "binary", _binary(_s), _binary(_s), _binary(_s), exact=True, check=_cmp, diff=False)
def _shift_check(c):
  """C leaves shifts by a negative count or by the width or more undefined (NumPy and torch give 0 or -1): not drawn."""
  n = c.x(1)
  if np.any(n < 0) or np.any(n >= 8 * np.dtype(c.dt).itemsize): raise Invalid("a shift count out of range")
for _n, _s in (("bitwise_and", "&"), ("bitwise_or", "|"), ("bitwise_xor", "^"), ("lshift", "<<"), ("rshift", ">>")):
  spec(_n, "binary", _binary(_s), _binary(_s), _binary(_s), exact=True, check=_shift_check if _n.endswith("shift") else None)
for _n in ("maximum", "minimum"):
  spec(_n, "binary", _call(f"{{}}.{_n}({{}})"), _call(f"np.{_n}({{}}, {{}})"), _call(f"P.{_n}({{}}, {{}})"), exact=True,
       check=lambda c: c.kink(np.abs(c.x(0) - c.x(1)), c.m(0) + c.m(1)))
for _n in ("logical_and", "logical_or", "logical_xor"):
  spec(_n, "binary", f"{{0}}.{_n}({{1}})", f"np.{_n}({{0}}, {{1}})", f"{{0}}.{_n}({{1}})", exact=True, check=_truthy(0, 1), diff=False)
def _where(fmt: str):
  def tpl(a, p):
    if len(a) == 3: return fmt.format(*a)
    return fmt.format(a[0], p["s"], a[1]) if p.get("rev") == "True" else fmt.format(a[0], a[1], p["s"])
  return tpl
spec("where", "binary", _where("{}.where({}, {})"), _where("np.where({}, {}, {})"), _where("torch.where({}, {}, {})"), exact=True)
spec("lerp", "binary", "{0}.lerp({1}, {w})", "{0} + {w} * ({1} - {0})", "torch.lerp({0}, {1}, {w})")

# reductions and scans
for _n, _e in (("sum", False), ("prod", False), ("max", True), ("min", True)):
  _np = {"max": "max", "min": "min"}.get(_n, _n)
  # axis= (not dim): max/min then reduce to a plain tensor over any axes, where max(dim) is torch's (values, indices)
  spec(_n, "reduce", f"{{0}}.{_n}(axis={{axis}}, keepdim={{keepdim}})", f"np.{_np}({{0}}, axis={{axis}}, keepdims={{keepdim}})",
       f"P.{ {'max': 'amax', 'min': 'amin'}.get(_n, _n) }({{0}}, {{axis}}, {{keepdim}})", exact=_e,
       check=_max_kink(1 if _n == "max" else -1) if _e else None)
spec("mean", "reduce", "{0}.mean({axis}, keepdim={keepdim})", "np.mean(R.f({0}), axis={axis}, keepdims={keepdim})", "P.mean({0}, {axis}, {keepdim})")
spec("var", "reduce", "{0}.var({axis}, keepdim={keepdim}, correction={correction})", "R.var(R.f({0}), {axis}, {keepdim}, {correction})",
     "P.var({0}, {axis}, {keepdim}, {correction})")
spec("std", "reduce", "{0}.std({axis}, keepdim={keepdim}, correction={correction})", "R.std(R.f({0}), {axis}, {keepdim}, {correction})",
     "P.std({0}, {axis}, {keepdim}, {correction})", check=_std_kink)
spec("argmax", "reduce", "{0}.argmax({axis}, keepdim={keepdim})", "R.argmax({0}, {axis}, {keepdim})", "P.argmax({0}, {axis}, {keepdim})",
     exact=True, check=_argmax_check(1), diff=False)
spec("argmin", "reduce", "{0}.argmin({axis}, keepdim={keepdim})", "R.argmin({0}, {axis}, {keepdim})", "P.argmin({0}, {axis}, {keepdim})",
     exact=True, check=_argmax_check(-1), diff=False)
# the log of a sum of exps near 1 is rounded to an ulp of 1, as in torch: an absolute error, large beside a tiny result
# (a confident cross_entropy of 7e-12 is off by 2e-5 of itself in float64, torch's too)
_LOG_SUM_ERR = lambda x, dt: 4 * EPS[dt]
spec("logsumexp", "reduce", "{0}.logsumexp({axis}, keepdim={keepdim})", "R.logsumexp(R.f({0}), {axis}, {keepdim})",
     "P.logsumexp({0}, {axis}, {keepdim})", approx=_LOG_SUM_ERR)
spec("softmax", "reduce", "{0}.softmax({axis})", "R.softmax(R.f({0}), {axis})", "P.f({0}).softmax({axis})")
spec("log_softmax", "reduce", "{0}.log_softmax({axis})", "R.log_softmax(R.f({0}), {axis})", "P.f({0}).log_softmax({axis})", approx=_LOG_SUM_ERR)
for _n in ("cumsum", "cumprod"): spec(_n, "reduce", f"{{0}}.{_n}({{dim}})", f"np.{_n}({{0}}, axis={{dim}})", f"{{0}}.{_n}({{dim}})")
for _n in ("cummax", "cummin"):
  spec(_n, "reduce", f"{{0}}.{_n}({{dim}})[{{j}}]", f"R.{_n}({{0}}, {{dim}})[{{j}}]", f"{{0}}.{_n}({{dim}})[{{j}}]", exact=True,
       check=lambda c: _ties(c.p["j"] == 1)(c))
spec("sort", "reduce", "{0}.sort({dim}, {descending})[{j}]", "R.sort({0}, {dim}, {descending})[{j}]", "P.sort({0}, {dim}, {descending})[{j}]",
     exact=True, check=lambda c: _ties(c.p["j"] == 1)(c))
spec("argsort", "reduce", "{0}.argsort({dim}, {descending})", "R.sort({0}, {dim}, {descending})[1]", "P.sort({0}, {dim}, {descending})[1]",
     exact=True, check=_ties(True), diff=False)
spec("topk", "reduce", "{0}.topk({k}, {dim}, {largest})[{j}]", "R.topk({0}, {k}, {dim}, {largest})[{j}]", "P.topk({0}, {k}, {dim}, {largest})[{j}]",
     exact=True, check=lambda c: _ties(c.p["j"] == 1)(c))
spec("vector_norm", "reduce", "{0}.vector_norm({ord}, {dim}, {keepdim})", "R.vector_norm(R.f({0}), {ord}, {dim}, {keepdim})",
     "torch.linalg.vector_norm(P.f({0}), {ord}, {dim}, {keepdim})", check=_norm_check)

# movement: exact, and views or fresh values as in NumPy and PyTorch
spec("reshape", "movement", "{0}.reshape({shape})", "{0}.reshape({shape})", "{0}.reshape({shape})", alias="reshape", exact=True)
spec("permute", "movement", "{0}.permute({order})", "np.transpose({0}, {order})", "{0}.permute({order})", alias="view", exact=True)
spec("transpose", "movement", "{0}.transpose({d0}, {d1})", "np.swapaxes({0}, {d0}, {d1})", "{0}.transpose({d0}, {d1})", alias="view", exact=True)
spec("T", "movement", "{0}.T", "{0}.T", "P.rev({0})", alias="view", exact=True)
spec("expand", "movement", "{0}.expand({shape})", "np.broadcast_to({0}, {full})", "{0}.expand({shape})", alias="view", exact=True, writable=False)
spec("pad", "movement", "{0}.pad({pads}, mode={mode}, value={value})", "R.pad({0}, {pads}, {mode}, {value})", "P.pad({0}, {pads}, {mode}, {value})",
     exact=True)
spec("flip", "movement", "{0}.flip({axes})", "np.flip({0}, {axes}).copy()", "{0}.flip({axes})", exact=True)
spec("shrink", "movement", "{0}.shrink({arg})", "{0}[{sl}]", "{0}[{sl}]", alias="view", exact=True)
spec("squeeze", "movement", "{0}.squeeze({dim})", "{0}.reshape({out})", "{0}.reshape({out})", alias="reshape", exact=True)
spec("unsqueeze", "movement", "{0}.unsqueeze({dim})", "{0}.reshape({out})", "{0}.reshape({out})", alias="reshape", exact=True)
spec("flatten", "movement", "{0}.flatten({start}, {end})", "{0}.reshape({out})", "{0}.reshape({out})", alias="reshape", exact=True)
spec("unflatten", "movement", "{0}.unflatten({dim}, {sizes})", "{0}.reshape({out})", "{0}.reshape({out})", alias="reshape", exact=True)
spec("repeat", "movement", "{0}.repeat({sizes})", "np.tile({0}, {sizes})", "{0}.repeat({sizes})", exact=True)
spec("tile", "movement", "{0}.tile({dims})", "np.tile({0}, {dims})", "{0}.tile({dims})", exact=True)
spec("roll", "movement", "{0}.roll({shifts}, {dims})", "np.roll({0}, {shifts}, {dims})", "{0}.roll({shifts}, {dims})", exact=True)
for _n in ("tril", "triu"):
  spec(_n, "movement", f"{{0}}.{_n}({{diagonal}})", f"np.{_n}({{0}}, {{diagonal}})", f"{{0}}.{_n}({{diagonal}})", exact=True)
spec("split", "movement", "{0}.split({size}, {dim})[{j}]", "{0}[{sl}]", "{0}.split({size}, {dim})[{j}]", alias="view", exact=True)
spec("chunk", "movement", "{0}.chunk({chunks}, {dim})[{j}]", "{0}[{sl}]", "{0}.chunk({chunks}, {dim})[{j}]", alias="view", exact=True)
spec("unbind", "movement", "{0}.unbind({dim})[{j}]", "{0}[{sl}]", "{0}.unbind({dim})[{j}]", alias="view", exact=True)
spec("repeat_interleave", "movement", "{0}.repeat_interleave({repeats}, {dim})", "np.repeat({0}, {repeats}, axis={dim})",
     "{0}.repeat_interleave({repeats}, {dim})", exact=True)
spec("unfold", "movement", "{0}.unfold({dim}, {size}, {step})", "R.unfold({0}, {dim}, {size}, {step})", "{0}.unfold({dim}, {size}, {step})",
     alias="ambig", exact=True, writable=False)
spec("contiguous", "movement", "{0}.contiguous()", "{0}.copy()", "{0}.contiguous()", alias="ambig", exact=True)
spec("clone", "movement", "{0}.clone()", "{0}.copy()", "{0}.clone()", exact=True)
spec("detach", "movement", "{0}.detach()", "{0}", "{0}.detach()", alias="view", exact=True, diff=False)
spec("realize", "realize", "{0}.realize()", "{0}", "{0}", alias="view", exact=True)
spec("cast", "cast", lambda a, p: f"{a[0]}.{p['meth'][1:-1]}()" if p["meth"] != "None" else f"{a[0]}.cast(dtypes.{p['dtype'][1:-1]})",
     "R.cast({0}, {dtype})", "P.cast({0}, {dtype})", exact=True, check=_cast_check)

# indexing
spec("getitem", "index", "{0}[{idx}]", lambda a, p: f"R.index({a[0]}, {p['idx']})" if p["adv"] else f"{a[0]}[{p['idx']}]",
     "P.index({0}, {idx})", alias="index", exact=True)
spec("gather", "index", "{0}.gather({dim}, {1})", "R.gather({0}, {dim}, {1})", "P.gather({0}, {dim}, {1})", exact=True)
spec("index_select", "index", "{0}.index_select({dim}, {1})", "np.take({0}, {1}, axis={dim})", "{0}.index_select({dim}, {1})", exact=True)
spec("embedding", "index", "{1}.embedding({0})", "np.take({0}, {1}, axis=0)", "torch.nn.functional.embedding({1}, {0})", exact=True)
spec("masked_fill", "index", "{0}.masked_fill({1}, {s})", "np.where({1}, {s}, {0})", "{0}.masked_fill({1}, {s})", exact=True)
spec("cat", "cat", lambda a, p: f"{a[0]}.cat({', '.join(a[1:])}, dim={p['dim']})", "np.concatenate([{a}], axis={dim})", "P.cat([{a}], {dim})",
     exact=True)
spec("stack", "cat", lambda a, p: f"{a[0]}.stack({', '.join(a[1:])}, dim={p['dim']})", "np.stack([{a}], axis={dim})", "P.stack([{a}], {dim})",
     exact=True)
spec("matmul", "matmul", "{0} @ {1}", "{0} @ {1}", "P.mm({0}, {1})")
spec("einsum", "matmul", "Tensor.einsum({formula}, {a})", "np.einsum({formula}, {a})", "P.einsum({formula}, {a})")

# layers, losses, creation, scatter
def _conv(method: bool, fn: str = ""):
  def tpl(a, p):
    rest = f"{a[1]}, {a[2] if len(a) > 2 else None}, {p['stride']}, {p['padding']}, {p['dilation']}, {p['groups']}"
    return f"{a[0]}.conv{p['nd']}d({rest})" if method else f"{fn}({a[0]}, {rest})"
  return tpl
spec("conv", "nn", _conv(True), _conv(False, "R.conv"), _conv(False, "P.conv"))
spec("max_pool2d", "nn", "{0}.max_pool2d({k}, {stride}, {padding})", "R.pool2d({0}, {k}, {stride}, {padding}, 'max')",
     "F.max_pool2d({0}, {k}, {stride}, {padding})",
     exact=True, check=lambda c: c.kink(_min_diff(c.x(0).reshape(-1), 0) if c.x(0).size else np.inf, 2 * np.max(c.m(0), initial=0.0)))
spec("avg_pool2d", "nn", "{0}.avg_pool2d({k}, {stride}, {padding})", "R.pool2d({0}, {k}, {stride}, {padding}, 'avg')",
     "F.avg_pool2d({0}, {k}, {stride}, {padding})")
spec("layer_norm", "nn", "{0}.layer_norm({shape})", "R.layer_norm({0}, {shape})", "F.layer_norm({0}, {shape})")
spec("cross_entropy", "nn", "{0}.cross_entropy({1})", "R.cross_entropy({0}, {1})", "F.cross_entropy({0}, {1}.long())", approx=_LOG_SUM_ERR)
def _finite(c):
  """A row of -inf scores is 'fully masked' for lucidgrad's attention (0), NaN for torch's: inputs stay finite."""
  if not all(np.all(np.isfinite(c.x(j))) for j in range(len(c.opnds))): raise Invalid("attention of inf or NaN")
spec("sdpa", "nn", "{0}.scaled_dot_product_attention({1}, {2}, is_causal={causal})", "R.sdpa({0}, {1}, {2}, {causal})",
     "F.scaled_dot_product_attention({0}, {1}, {2}, is_causal={causal})", check=_finite)
spec("scatter_add", "index", "{0}.scatter_add({dim}, {1}, {2})", "R.scatter_add({0}, {dim}, {1}, {2})", "P.scatter_add({0}, {dim}, {1}, {2})")
spec("one_hot", "index", "{0}.one_hot({n})", "R.one_hot({0}, {n})", "F.one_hot({0}.long(), {n})", exact=True)
spec("arange", "creation", "Tensor.arange({start}, {stop}, {step})", "np.arange({start}, {stop}, {step})", "torch.arange({start}, {stop}, {step})",
     exact=True)
spec("linspace", "creation", "Tensor.linspace({start}, {end}, {steps})", "np.linspace({start}, {end}, {steps})",
     "torch.linspace({start}, {end}, {steps})")
spec("eye", "creation", "Tensor.eye({n}, {m})", "np.eye({n}, {m})", "torch.eye({n}, {m})", exact=True)
spec("full", "creation", "Tensor.full({shape}, {v})", "np.full({shape}, {v})", "torch.full({shape}, {v})", exact=True)
for _n in ("zeros_like", "ones_like"): spec(_n, "creation", f"{{0}}.{_n}()", f"np.{_n}({{0}})", f"torch.{_n}({{0}})", exact=True, diff=False)
spec("full_like", "creation", "{0}.full_like({v})", "np.full_like({0}, {v})", "torch.full_like({0}, {v})", exact=True, diff=False)

# writes: `{out}` is the written tensor itself; torch copies the value first, since it refuses overlapping memory
def _val(a, p, clone=False): return p["s"] if "s" in p else (f"{a[1]}.clone()" if clone else a[1])
spec("setitem", "setitem", lambda a, p: f"{a[0]}[{p['idx']}] = {_val(a, p)}\n{{out}} = {a[0]}",
     lambda a, p: (f"R.setindex({a[0]}, {p['idx']}, {_val(a, p)})" if p["adv"] else f"{a[0]}[{p['idx']}] = {_val(a, p)}") + f"\n{{out}} = {a[0]}",
     lambda a, p: f"P.setindex({a[0]}, {p['idx']}, {_val(a, p, True)})\n{{out}} = {a[0]}", alias="write", stmt=True, exact=True)
for _n, _s in (("iadd", "+="), ("isub", "-="), ("imul", "*="), ("idiv", "/=")):
  _w = lambda a, p, s=_s: f"{a[0]} {s} {_val(a, p)}\n{{out}} = {a[0]}"
  spec(_n, "inplace", _w, _w, lambda a, p, s=_s: f"{a[0]} {s} {_val(a, p, True)}\n{{out}} = {a[0]}", alias="write", stmt=True,
       check=_div_check if _n == "idiv" else None)
spec("assign", "inplace", "{0}.assign({1})\n{{out}} = {0}", "{0}[...] = {1}\n{{out}} = {0}", "{0}.copy_({1}.clone())\n{{out}} = {0}",
     alias="write", stmt=True, exact=True)
spec("input", "input", lambda a, p: f"Tensor({p['data']}, requires_grad=True)" if p["rg"] == "True" else f"Tensor({p['data']})",
     "R.arr({data})", "P.arr({data}, {rg})", exact=True)

# ---------------------------------------------------------------------------------------------------------------------
# The references: each op run on NumPy float64 (the values), NumPy float32 nudged and torch in the program's dtypes
# (two rounding samples; torch also says the dtype), with the checks that keep the program judgeable
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class Val:
  dtype: str
  shape: tuple
  exact: bool = True        # no rounding has touched it: lucidgrad must give exactly the reference
  depth: int = 0            # rounded ops in its longest chain
  prec: str = ""            # the coarsest float dtype that rounded anything in its history (float32 for a float64 cast of one)
  err: Any = 0.0            # per element: how far rounding may have moved it (in its dtype's units)
  grad: bool = False        # a gradient flows into it from an input that requires grad
  gok: bool = True          # that gradient is well defined (no kink or tie at the sampled points on its way)
  rgdep: bool = False       # depends on an input that requires grad
  fin: bool = True          # finite, and so was all it came from
  base: int = -1            # the value whose memory it is
  alias: str = "fresh"      # fresh | view | ambig
  writable: bool = True
  dead: bool = False        # an ambiguous view whose base was written: never read again
  used: bool = False
  error: str | None = None  # an op meant to raise: the exception NumPy raised

BINARY_SCALAR = {k for k, s in SPECS.items() if s.group == "binary"} | {"iadd", "isub", "imul", "idiv"}

class Ctx:
  """What a check sees: the operands' reference values and margins; it raises Invalid near a jump, notes kinks."""
  def __init__(self, an: Analysis, op: Op, ins: list[Val], out, dt: str):
    self.an, self.op, self.p, self.out, self.dt, self.gok = an, op, op.p, out, dt, True
    self.gradin = any(v.grad for v in ins)
    opnds: list = [(an.ref(j), v) for j, v in zip(op.args, ins)]
    if "s" in op.p and op.kind in BINARY_SCALAR: opnds.insert(0 if op.p.get("rev") else 1, (op.p["s"], None))
    self.opnds = opnds
  def x(self, j) -> np.ndarray: return np.asarray(self.opnds[j][0], np.float64)
  def is_scalar(self, j) -> bool: return self.opnds[j][1] is None
  def dtype(self, j) -> str: return "float64" if self.is_scalar(j) else self.opnds[j][1].dtype
  def m(self, j):
    v = self.opnds[j][1]
    return 0.0 if v is None else self.an.margin(v, self.opnds[j][0])
  def need(self, dist, margin, zero_ok=True):
    """The value jumps where dist is 0: an input not exact must stay further away than its margin."""
    dist = np.asarray(dist, np.float64)
    margin = np.broadcast_to(np.asarray(margin, np.float64), dist.shape)
    bad = (dist <= margin) & (margin > 0) if zero_ok else (dist <= margin) & ((margin > 0) | (dist == 0))
    if np.any(bad & ~np.isnan(dist)): raise Invalid(f"{self.op.kind}: an input is too near a jump")
  def kink(self, dist, margin):
    if self.gradin and np.any((np.asarray(dist) <= margin) & ~np.isnan(dist)): self.gok = False
  def nonzero(self, j):
    if np.any(self.x(j) == 0): raise Invalid(f"{self.op.kind}: a zero divisor")
  def positive(self, j):
    if np.any(~(self.x(j) > 0)): raise Invalid(f"{self.op.kind}: a base that is not positive")

def _scalars_exact(op: Op, dt: str) -> bool:
  """Float parameters that the result dtype holds exactly (else the result rounds them)."""
  vals = [op.p[k] for k in ("s", "lo", "hi", "value", "nan", "posinf", "neginf", "w") if isinstance(op.p.get(k), float)]
  return all(not math.isfinite(v) or float(np.dtype(dt).type(v)) == v for v in vals)

def _shares(a, b) -> bool:
  if isinstance(a, np.ndarray): return isinstance(b, np.ndarray) and np.may_share_memory(a, b)
  return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()

class Analysis:
  """Runs a program op by op on the references and keeps, per value, what the comparison needs (`Val`). `step` raises
  Invalid when an op leaves what the references can judge; then the program (or the candidate op) is dropped."""
  def __init__(self, grad: bool = False, strict: bool = False):
    torch = _t()
    self.vals: list[Val] = []
    self.ops: list[Op] = []
    self.grad, self.strict = grad, strict
    self.ns = {"np": {"np": np, "math": math, "R": R}, "b": {"np": np, "math": math, "R": _R32}, "b2": {"np": np, "math": math, "R": _R32},
               "pt": {"torch": torch, "F": torch.nn.functional, "math": math, "P": torch_ref("actual")}}
  def ref(self, i: int): return self.ns["np"][f"n{i}"]
  def tval(self, i: int): return self.ns["pt"][f"t{i}"]
  def margin(self, v: Val, ref) -> Any:
    """How far from a jump a value must be: 4x its rounding estimate plus a slack that grows with its chain."""
    if v.exact or v.dtype not in FLOATS: return 0.0
    r = np.abs(np.asarray(ref, np.float64))
    fin = np.isfinite(r)
    amax = float(np.max(r[fin])) if np.any(fin) else 0.0
    return np.where(fin, 4 * v.err + EPS[v.prec] * (16 + 4 * v.depth) * (r + 0.01 * amax), 0.0)
  def _err(self, i: int, v: Val) -> Any:
    if v.exact or v.dtype not in FLOATS: return 0.0
    r, a, b, b2 = (np.asarray(x, np.float64) for x in (self.ref(i), _np(self.tval(i)), self.ns["b"][f"n{i}"], self.ns["b2"][f"n{i}"]))
    with np.errstate(all="ignore"): e = np.maximum(np.abs(r - a), np.maximum(np.abs(r - b), np.abs(r - b2)) * (EPS[v.prec] / EPS[SHADOW[v.prec]]))
    return _smooth(np.where(np.isfinite(r), e, 0.0))

  def step(self, op: Op) -> Val:
    i, s = len(self.vals), SPECS[op.kind]
    ins = [self.vals[j] for j in op.args]
    if any(v.dead or v.error for v in ins): raise Invalid("reads a value it must not")
    if s.alias == "write": self._check_write(op, ins)
    consts: dict = {}
    code_np, code_pt = render(op, i, "np", consts), render(op, i, "pt", consts)
    for ns in self.ns.values(): ns.update(consts)
    torch = _t()
    with np.errstate(all="ignore"), warnings.catch_warnings():
      warnings.simplefilter("ignore")
      try:
        with torch.no_grad(): exec(_compiled(code_pt), self.ns["pt"])
      except Exception as e: raise Invalid(f"torch raised {type(e).__name__}: {e}") from None
      t = self.tval(i)
      if not isinstance(t, torch.Tensor) or str(t.dtype)[6:] not in FLOATS + INTS + ("bool",): raise Invalid("torch gave no tensor of a known dtype")
      dt = str(t.dtype)[6:]
      nudge = not s.exact and s.alias != "write"
      for be, ref in (("np", R), ("b", _R32), ("b2", _R32)):
        ns, code = self.ns[be], code_np
        if be != "np" and nudge:  # the shadows nudge a rounded op's float arguments too (a cancellation inside it then shows)
          rng = np.random.default_rng((i, be == "b2", 1))
          for k, j in enumerate(op.args):
            a = ns[f"n{j}"]
            ns[f"u{k}"] = np.asarray(a * (1 + rng.uniform(-4, 4, a.shape) * EPS["float32"]), a.dtype) if a.dtype.kind == "f" else a
          code = render(op, i, "np", {}, [f"u{k}" for k in range(len(op.args))])
        try: exec(_compiled(code), ns)
        except Exception as e:
          if self.strict: raise FuzzerBug(f"{op.kind}: NumPy raised {type(e).__name__}: {e} where torch did not\n{code_np}") from None
          raise Invalid(f"numpy raised {type(e).__name__}") from None
        x = self.ns[be][f"n{i}"]
        x = np.asarray(x) if not isinstance(x, np.ndarray) else x
        if x.dtype != ref.dt(dt): x = x.astype(ref.dt(dt))
        if be != "np" and nudge and dt in FLOATS:  # and every rounded result by a few ulps
          rng = np.random.default_rng((i, be == "b2"))
          x = np.asarray(x * (1 + rng.uniform(-4, 4, x.shape) * EPS[SHADOW[dt]]), dtype=x.dtype)
          if s.approx is not None:  # and by the error lucidgrad documents, in the shadow's units
            e = s.approx(np.asarray(self.ns["np"][f"n{op.args[0]}"], np.float64), dt) * (EPS[SHADOW[dt]] / EPS[dt])
            x = np.asarray(x + rng.choice([-1.0, 1.0], x.shape) * e, dtype=x.dtype)  # the whole error, so the estimate has it
        self.ns[be][f"n{i}"] = x
    ref = self.ref(i)
    if ref.shape != tuple(t.shape):
      if self.strict: raise FuzzerBug(f"{op.kind}: NumPy shape {ref.shape}, torch {tuple(t.shape)}\n{code_np}\n{code_pt}")
      raise Invalid("shapes differ")
    if ref.size > MAX_NUMEL: raise Invalid("too large")
    c = Ctx(self, op, ins, ref, dt)
    if s.check is not None:
      with np.errstate(all="ignore"): s.check(c)
    self._check_values(op, dt, ref, _np(t), (self.ns["b"][f"n{i}"], self.ns["b2"][f"n{i}"]), code_np, code_pt)
    v = self._val(op, s, ins, dt, ref, t, c)
    self.vals.append(v)
    self.ops.append(op)
    for j in op.args: self.vals[j].used = True
    if s.alias == "write": self._after_write(op, i, ins)
    v.err = self._err(i, v)
    return v

  def _check_write(self, op: Op, ins: list[Val]):
    tgt = ins[0]
    if self.grad: raise Invalid("no in-place writes in programs with gradients")
    if tgt.alias == "ambig" or not tgt.writable: raise Invalid("the target is not writable in all three")
    rank = lambda d: 0 if d == "bool" else 1 if d in INTS else 2
    if len(ins) > 1 and "s" not in op.p and op.kind in ("setitem", "assign") and rank(ins[1].dtype) > rank(tgt.dtype):
      raise Invalid("lucidgrad refuses values that a dtype cannot hold without loss")

  def _check_values(self, op: Op, dt: str, ref, a, bs: tuple, code_np, code_pt):
    if dt in FLOATS:
      r, *shadows = (np.asarray(x, np.float64) for x in (ref, a, *bs))
      for f in (np.isnan, np.isposinf, np.isneginf):
        if not all(np.array_equal(f(r), f(x)) for x in shadows): raise Invalid("NaN or inf where a shadow has none")
      if np.any(np.abs(r[np.isfinite(r)]) > MAX_ABS[dt]): raise Invalid("too large a value")
      return
    if dt != "bool":
      lo, hi = INT_RANGE[dt]
      if ref.size and (ref.min() < max(lo, -2**53) or ref.max() > min(hi, 2**53)): raise Invalid("int out of range")
    if not np.array_equal(np.asarray(ref), np.asarray(a).astype(ref.dtype)):
      if self.strict: raise FuzzerBug(f"{op.kind}: NumPy {ref!r} and torch {a!r} differ\n{code_np}\n{code_pt}")
      raise Invalid("ints from NumPy and torch differ")

  def _val(self, op: Op, s: Spec, ins: list[Val], dt: str, ref, t, c: Ctx) -> Val:
    i = len(self.vals)
    v = Val(dt, tuple(ref.shape), prec=dt if dt in FLOATS else "")
    if op.kind == "input":
      v.grad = v.rgdep = bool(op.p["rg"])
    else:
      fl = [w for w in ins if w.dtype in FLOATS]
      if dt in FLOATS:
        v.exact = s.exact and all(w.exact for w in fl) and _scalars_exact(op, dt)
        if op.kind == "cast" and v.exact:
          fin = np.isfinite(ref)
          v.exact = bool(np.array_equal(ref[fin], ref[fin].astype(dt).astype(np.float64)))
      v.depth = max((w.depth for w in ins), default=0) + (0 if v.exact or dt not in FLOATS else 1)
      if dt in FLOATS:
        precs = [w.prec for w in fl if not w.exact] + ([dt] if not s.exact or op.kind == "cast" else [])
        v.prec = max(precs, key=lambda d: EPS[d]) if precs and not v.exact else dt
      v.grad = dt in FLOATS and s.diff and any(w.grad for w in ins)
      v.rgdep = any(w.rgdep for w in ins)
      v.gok = all(w.gok for w in ins if w.grad) and c.gok
      v.fin = all(w.fin for w in ins) and (dt not in FLOATS or bool(np.all(np.isfinite(ref))))
    kind = s.alias
    if kind == "index":
      idx = op.p["idx"]
      # an int array makes a new value; a negative step a view torch cannot make (P.index copies)
      kind = "fresh" if any(isinstance(x, tuple) for x in idx) else \
             "ambig" if any(isinstance(x, slice) and (x.step or 1) < 0 for x in idx) else "view"
    if kind == "fresh" and op.args:  # a new value here may still be a view there (einsum('ij->ji', x) is x.T in NumPy and torch)
      j = next((j for j in op.args if _shares(ref, self.ref(j)) or _shares(t, self.tval(j))), None)
      if j is not None: v.base, v.alias, v.writable = self.vals[j].base, "ambig", False
    if kind == "write":
      tgt = ins[0]
      v.base, v.alias, v.writable = tgt.base, tgt.alias, tgt.writable
    elif kind in ("view", "reshape", "ambig"):
      src = ins[0]
      shared = _shares(ref, self.ref(op.args[0])) and _shares(t, self.tval(op.args[0]))  # NumPy and torch both made a view
      v.alias = "ambig" if kind == "ambig" or src.alias == "ambig" or not shared else "view"
      v.base, v.writable = src.base, s.writable and src.writable
    elif v.base < 0: v.base = i
    return v

  def _after_write(self, op: Op, i: int, ins: list[Val]):
    """Ambiguous views of the written memory die; the others (and the target) now hold the written values."""
    base, val = ins[0].base, (ins[1] if len(ins) > 1 else None)
    for k, w in enumerate(self.vals):
      if w.base != base or w.dead: continue
      if w.alias == "ambig": w.dead = True; continue
      if val is not None and w.dtype in FLOATS:
        w.exact, w.depth = w.exact and val.exact, max(w.depth, val.depth + 1)
        if not val.exact and val.prec: w.prec = max((w.prec, val.prec, w.dtype), key=lambda d: EPS[d])
      rounds = val is not None and val.dtype in FLOATS and w.dtype in FLOATS and EPS[val.dtype] < EPS[w.dtype]  # float64 into float32
      if (op.kind not in ("setitem", "assign") or rounds) and w.dtype in FLOATS:  # += and friends round, and so does a narrowing write
        w.exact, w.depth, w.prec = False, w.depth + 1, max((w.prec, w.dtype), key=lambda d: EPS[d])
      w.err = self._err(k, w)

  # ---- what the comparison needs at the end ----
  def sinks(self) -> list[int]:
    return [i for i, (v, o) in enumerate(zip(self.vals, self.ops)) if not v.used and not v.dead and not v.error and o.kind != "input"]
  def loss_sinks(self) -> list[int]: return [i for i in self.sinks() if self.vals[i].grad and self.vals[i].gok and self.vals[i].fin]
  def grad_inputs(self) -> list[int]: return [i for i, o in enumerate(self.ops) if o.kind == "input" and o.p["rg"]]

def _np(t) -> np.ndarray: return t.detach().cpu().numpy()

def _smooth(err):
  """An error sample per element, floored at a tenth of the array's largest: one sample can be small by luck where its
  neighbours, computed alike, show the noise. A sample that is NaN or inf (a nudged input took the reference through an
  overflow or a pole there) says nothing about that element, which takes the floor; it must not poison the floor of
  the others: a NaN max made every element's tolerance NaN, so all of them "differed" (fuzz seed 41372, erf then tanh,
  1e-6 apart)."""
  err = np.asarray(err, np.float64)
  if not err.size: return err
  fin = np.isfinite(err)
  floor = 0.1 * np.max(err[fin]) if fin.any() else 0.0
  return np.where(fin, np.maximum(err, floor), floor)

_CODE: dict[str, Any] = {}
def _compiled(src: str):
  if (c := _CODE.get(src)) is None:
    if len(_CODE) > 20000: _CODE.clear()
    c = _CODE[src] = compile(src, "<fuzz>", "exec")
  return c

def analyze(prog: Program, strict: bool = False) -> Analysis:
  """The program run on the references (raises Invalid if it cannot be judged)."""
  an = Analysis(prog.grad, strict)
  for op in prog.ops: an.step(op) if SPECS[op.kind].group != "errors" else an.step_error(op)
  return an

# ---- ops meant to raise: lucidgrad must raise the same kind of error as NumPy, while the graph is built ----
for _n, _lg, _np_, _pt in (("err_index", "{0}[{n}]", "{0}[{n}]", "{0}[{n}]"),
                           ("err_reshape", "{0}.reshape({shape})", "{0}.reshape({shape})", "{0}.reshape({shape})"),
                           ("err_broadcast", "{0} + {1}", "{0} + {1}", "{0} + {1}"), ("err_matmul", "{0} @ {1}", "{0} @ {1}", "P.mm({0}, {1})"),
                           ("err_bitwise", "{0} & {1}", "{0} & {1}", "{0} & {1}"),
                           ("err_permute", "{0}.permute({order})", "np.transpose({0}, {order})", "{0}.permute({order})"),
                           ("err_axis", "{0}.sum({axis})", "np.sum({0}, axis={axis})", "{0}.sum({axis})"),
                           ("err_expand", "{0}.expand({shape})", "np.broadcast_to({0}, {shape})", "{0}.expand({shape})"),
                           ("err_index_array", "{0}[{idx}]", "R.index({0}, {idx})", "P.index({0}, {idx})")):
  spec(_n, "errors", _lg, _np_, _pt)

def _error_kinds(e: BaseException) -> tuple:
  """The user-error classes of NumPy's exception that lucidgrad's must be one of (AxisError is both)."""
  return tuple(k for k in (IndexError, ValueError, TypeError) if isinstance(e, k)) or (type(e),)

def _step_error(self: Analysis, op: Op) -> Val:
  i = len(self.vals)
  if any(self.vals[j].dead or self.vals[j].error for j in op.args): raise Invalid("reads a value it must not")
  consts: dict = {}
  code_np, code_pt = render(op, i, "np", consts), render(op, i, "pt", consts)
  for ns in self.ns.values(): ns.update(consts)
  errs = []
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for be, code in (("np", code_np), ("pt", code_pt)):
      try: exec(_compiled(code), self.ns[be])
      except Exception as e: errs.append(e)
  if len(errs) != 2: raise Invalid("an op meant to raise did not")
  v = Val("bool", (), error=" or ".join(k.__name__ for k in _error_kinds(errs[0])))
  self.vals.append(v)
  self.ops.append(op)
  return v
Analysis.step_error = _step_error  # type: ignore[attr-defined]

# ---------------------------------------------------------------------------------------------------------------------
# Bugs found and not fixed yet: `avoid_known` steers the generator around them (the CI test does), and a run labels a
# failure of a program that has one. Each is also an xfail test in tests/test_fuzz.py; delete both when it is fixed.
# A predicate sees the analysis with op's value just computed (an.vals[-1]) and its arguments'.
# ---------------------------------------------------------------------------------------------------------------------
KNOWN: dict[str, tuple[str, Callable[[Analysis, Op], bool]]] = {
  "layer_norm_flat_grad": ("the gradient of layer_norm over rows with no variance (a size-1 normalized shape, a constant row) is "
                           "g*rstd - mean(g*rstd) with rstd = 1/sqrt(eps) ~ 316: summed with other gradients in another order, "
                           "its exact 0 becomes float32 noise of ~1 ulp of g*rstd (torch's analytic backward gives 0): "
                           "tensor_nn.py layer_norm is differentiated op by op",
                           lambda an, op: op.kind == "layer_norm" and math.prod(op.p["shape"] if isinstance(op.p["shape"], tuple) else (op.p["shape"],)) == 1),
}

def known_issues(an: Analysis, ops: list[Op], start: int = 0) -> set[str]:
  """The known bugs the ops from `start` on run into (their values must be in the analysis)."""
  found = set()
  for i in range(start, len(ops)):
    for name, (_, pred) in KNOWN.items():
      try:
        if pred(an, ops[i]): found.add(name)
      except Exception: pass
  return found

# ---------------------------------------------------------------------------------------------------------------------
# Generating programs
# ---------------------------------------------------------------------------------------------------------------------
GROUPS = ("unary", "activation", "binary", "reduce", "movement", "realize", "cast", "index", "cat", "matmul", "nn", "creation", "grad",
          "errors", "setitem", "inplace")
DEFAULT_GROUPS = frozenset(GROUPS)
WEIGHTS = {"unary": 3, "activation": 1.5, "binary": 4, "reduce": 3, "movement": 4, "realize": 0.4, "cast": 1, "index": 2.5, "cat": 1,
           "matmul": 1.2, "nn": 1.2, "creation": 0.5, "setitem": 2, "inplace": 1.5}
FLOAT_SCALARS = (0.5, 2.0, -1.5, 3.0, 0.25, -0.75, 1.0, 0.0)

def _bcast(*shapes) -> tuple | None:
  try: return tuple(np.broadcast_shapes(*shapes))
  except ValueError: return None

def rank(dt: str) -> int: return 0 if dt == "bool" else 1 if dt in INTS else 2

class Gen:
  """Grows one program an op at a time: propose, run on the references, keep it if they can judge it."""
  def __init__(self, seed: int, max_ops: int, groups: frozenset, strict: bool = False, avoid_known: bool = False, big: bool = False):
    self.rng, self.seed, self.groups, self.strict, self.avoid, self.big = np.random.default_rng(seed), seed, groups, strict, avoid_known, big
    r = self.rng.random()
    self.grad = "grad" in groups and r < 0.5
    self.mut = not self.grad and bool({"setitem", "inplace"} & groups) and r < 0.8
    self.an = Analysis(self.grad, strict)
    self.ops: list[Op] = []
    self.pending: list[Op] = []
    self.hot: set[int] = set()  # views of memory just written: reading them checks that they see the write
    self.target = int(self.rng.integers(1, max_ops + 1))
    kinds = [k for k, s in SPECS.items() if s.group in groups and s.group in WEIGHTS and (s.group not in ("setitem", "inplace") or self.mut)]
    w = np.array([WEIGHTS[SPECS[k].group] / sum(1 for q in kinds if SPECS[q].group == SPECS[k].group) for k in kinds])
    self.kinds, self.kind_p = kinds, w / w.sum()

  # ---- picking values ----
  def choice(self, seq): return seq[int(self.rng.integers(len(seq)))]
  def coin(self, p: float) -> bool: return bool(self.rng.random() < p)
  def live(self, ok=lambda v: True) -> list[int]:
    n = len(self.an.vals)
    return [i for i in range(n) if not self.an.vals[i].dead and not self.an.vals[i].error and ok(self.an.vals[i])]
  def pick(self, ok=lambda v: True) -> int | None:
    c = self.live(ok)
    if not c: return None
    if (hot := [i for i in c if i in self.hot]) and self.coin(0.5): return self.choice(hot)
    return c[-1] if self.coin(0.35) else c[int(self.rng.integers(len(c)))]
  def v(self, i: int) -> Val: return self.an.vals[i] if i < len(self.an.vals) else self._pending_val[i]
  def add(self, op: Op, val: Val | None = None) -> int:
    """Queue an op to run before the proposed one; its value's id (val: its dtype and shape, for the proposer)."""
    self.pending.append(op)
    i = len(self.an.vals) + len(self.pending) - 1
    if val is not None: self._pending_val[i] = val
    return i

  # ---- new inputs ----
  def size(self) -> int:
    return int(self.rng.choice(BIG_SIZES)) if self.big and self.coin(0.3) else int(self.rng.choice(SIZES, p=SIZE_P))
  def shape(self, ndim: int | None = None) -> tuple:
    nd = int(self.rng.choice([0, 1, 2, 3, 4], p=[0.07, 0.25, 0.35, 0.23, 0.1])) if ndim is None else ndim
    for _ in range(10):
      s = tuple(self.size() for _ in range(nd))
      if math.prod(s) <= (MAX_NUMEL if self.big else 256): return s
    return (2,) * nd
  def data(self, shape: tuple, dt: str, kind: str | None = None) -> np.ndarray:
    rng = self.rng
    if dt == "bool": return np.asarray(rng.random(shape) < 0.5)
    if dt in INTS:
      lo, hi = (0, 6) if dt == "uint8" else (-6, 7)
      return np.asarray(rng.integers(lo, hi, size=shape), dtype=dt)
    kind = kind or str(rng.choice(["normal", "pos", "wide", "ints", "special"], p=[0.55, 0.15, 0.12, 0.13, 0.05]))
    if kind == "pos": x = rng.uniform(0.1, 3, shape)
    elif kind == "wide": x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-2, 2, shape)
    elif kind == "ints": x = rng.integers(-4, 5, shape).astype(np.float64)
    else: x = rng.standard_normal(shape) * float(rng.choice([1.0, 3.0]))
    if kind == "special" and x.size:
      flat = x.reshape(-1)
      for _ in range(int(rng.integers(1, 3))): flat[int(rng.integers(flat.size))] = rng.choice([np.nan, np.inf, -np.inf, 0.0])
    return np.asarray(x, dtype=dt)
  def inp(self, shape: tuple, dt: str | None = None, kind: str | None = None) -> int:
    dt = dt or str(self.rng.choice(["float32", "float64", "int32", "int64", "bool"], p=[0.6, 0.24, 0.08, 0.04, 0.04]))
    rg = self.grad and dt in FLOATS and self.coin(0.85)
    return self.add(Op("input", (), {"data": self.data(tuple(shape), dt, kind), "rg": rg}), Val(dt, tuple(shape)))
  def float_dt(self, like: str | None = None) -> str:
    if like in FLOATS and self.coin(0.8): return like
    return str(self.rng.choice(["float32", "float64"], p=[0.7, 0.3]))
  def operand(self, shape: tuple, dts=("float32", "float64"), like: str | None = None, exact_shape: bool = False) -> int:
    """A tensor that broadcasts with `shape` (to `shape` itself when exact_shape): a live value, or a new input."""
    fits = lambda v: (b := _bcast(v.shape, shape)) is not None and math.prod(b) <= MAX_NUMEL
    ok = (lambda v: v.shape == shape) if exact_shape else fits
    if self.coin(0.4) and (c := self.live(lambda v: v.dtype in dts and ok(v) and (not exact_shape or _bcast(v.shape, shape) == shape))):
      return self.choice(c)
    s = list(shape)
    r = self.rng.random()
    if not exact_shape:
      if r < 0.25 and s: s[int(self.rng.integers(len(s)))] = 1
      elif r < 0.4 and s: s = s[int(self.rng.integers(1, len(s) + 1)):]
      elif r < 0.5 and math.prod(s) * 4 <= MAX_NUMEL: s = [int(self.rng.choice([2, 3]))] + s
      elif r < 0.6: s = [1 if n != 1 or self.coin(0.5) else self.size() for n in s]
    dt = like if like in dts and self.coin(0.75) else str(self.choice(list(dts)))
    return self.inp(tuple(s), dt)
  def scalar(self, dt: str, kind: str = "any"):
    if kind == "bool" or (dt == "bool" and self.coin(0.5)): return bool(self.coin(0.5))
    if dt == "uint8": return int(self.rng.integers(0, 4))  # a negative number would wrap to the uint8 tensor's dtype first
    if dt in INTS or dt == "bool" or kind == "int": return int(self.rng.integers(-3, 4))
    return float(self.choice(FLOAT_SCALARS)) if self.coin(0.8) else int(self.rng.integers(-3, 4))

  # ---- one step ----
  def attempt(self, kinds=None) -> bool:
    self.pending, self._pending_val = [], {}
    kind = str(self.rng.choice(self.kinds, p=self.kind_p)) if kinds is None else self.choice(kinds)
    try: op = PROPOSE[kind](self, kind)
    except Invalid: op = None
    if op is None: return False
    ops, snap, n0 = self.pending + [op], [_copy_val(v) for v in self.an.vals], len(self.an.ops)
    try:
      for o in ops: self.an.step(o) if SPECS[o.kind].group != "errors" else self.an.step_error(o)
      if self.avoid and known_issues(self.an, self.an.ops, n0): raise Invalid("a known bug")
    except Invalid:
      if any(SPECS[o.kind].alias == "write" for o in ops): self.an = analyze(Program(self.ops, self.grad, self.seed), self.strict)
      else: self.an.vals, self.an.ops = snap, self.an.ops[:n0]
      return False
    self.ops += ops
    if SPECS[op.kind].alias == "write":
      base = self.an.vals[-1].base
      self.hot = {i for i, v in enumerate(self.an.vals) if v.base == base and v.alias == "view" and not v.dead}
    return True

def _copy_val(v: Val) -> Val: return Val(**v.__dict__)

def generate(seed: int, max_ops: int = 30, groups: frozenset = DEFAULT_GROUPS, strict: bool = False,
             avoid_known: bool = False, big: bool = False) -> tuple[Program, Analysis]:
  """A random program of 1..max_ops ops (inputs not counted) and its analysis; avoid_known: none of the KNOWN bugs in it;
  big: some axes of 8, 16 or 32."""
  g = Gen(seed, max_ops, groups, strict, avoid_known, big)
  g._pending_val = {}
  for _ in range(int(g.rng.integers(1, 4))):
    g.pending = []
    g.inp(g.shape())
    g.an.step(g.pending[0])
    g.ops.append(g.pending[0])
  tries = 0
  while sum(1 for o in g.ops if o.kind != "input") < g.target and tries < 10 * g.target + 20:
    tries += 1
    g.attempt()
  if "errors" in groups and g.coin(0.06):
    for _ in range(10):
      if g.attempt([k for k, s in SPECS.items() if s.group == "errors"]): break
  return Program(g.ops, g.grad, seed), g.an

# ---- proposers: one op of a kind, on values the program has (or new inputs), with random parameters ----
PROPOSE: dict[str, Callable[[Gen, str], Op | None]] = {}
def proposer(*kinds):
  def deco(fn):
    for k in kinds: PROPOSE[k] = fn
    return fn
  return deco
NUM = lambda v: v.dtype != "bool"
FLT = lambda v: v.dtype in FLOATS

def _axis(g: Gen, nd: int, tuples: bool = True, none: bool = True):
  r = g.rng.random()
  if nd == 0: return None if none else 0
  if none and r < 0.2: return None
  if tuples and nd >= 2 and r < 0.5:
    k = int(g.rng.integers(1, nd + 1))
    return tuple(int(a) - (nd if g.coin(0.2) else 0) for a in g.rng.choice(nd, k, replace=False))
  a = int(g.rng.integers(nd))
  return a - nd if g.coin(0.25) else a

@proposer(*[k for k, s in SPECS.items() if s.group == "unary"])
def _p_unary(g: Gen, kind: str):
  ok = {"neg": NUM, "abs": NUM, "sign": NUM, "square": NUM, "floor": NUM, "ceil": NUM, "round": NUM, "trunc": NUM, "clip": NUM,
        "bitwise_not": lambda v: v.dtype not in FLOATS, "nan_to_num": FLT, "isnan": NUM, "isinf": NUM, "isfinite": NUM,
        "logical_not": lambda v: True}.get(kind, FLT if g.coin(0.9) else (lambda v: True))
  x = g.pick(ok)
  if x is None: return None
  p: dict = {}
  if kind == "clip":
    lo, hi = sorted(float(g.choice((-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0))) for _ in range(2))
    lo, hi = (lo, hi) if g.coin(0.6) else (None, hi) if g.coin(0.5) else (lo, None)
    if g.v(x).dtype in INTS and g.coin(0.5): lo, hi = (None if lo is None else int(lo)), (None if hi is None else int(hi))
    p = {"lo": lo, "hi": hi}
  if kind == "nan_to_num": p = {"nan": float(g.choice((0.0, 1.5))), "posinf": 100.0, "neginf": -100.0}
  return Op(kind, (x,), p)

@proposer(*[k for k, s in SPECS.items() if s.group == "activation"])
def _p_activation(g: Gen, kind: str):
  x = g.pick(FLT)
  if x is None: return None
  p = {"gelu": {"approximate": g.choice(("none", "tanh"))}, "softplus": {"beta": g.choice((1.0, 2.0, 0.5)), "threshold": g.choice((20.0, 3.0))},
       "elu": {"alpha": g.choice((1.0, 0.5))}, "celu": {"alpha": g.choice((1.0, 2.0))}, "leaky_relu": {"slope": g.choice((0.01, 0.2))},
       "hardtanh": {"lo": g.choice((-1.0, -2.0)), "hi": g.choice((1.0, 0.5))}}.get(kind, {})
  return Op(kind, (x,), p)

ARITH = ("add", "sub", "mul", "div", "floor_divide", "mod", "pow", "maximum", "minimum", "lerp")
@proposer(*[k for k, s in SPECS.items() if s.group == "binary" and k not in ("where", "lerp")])
def _p_binary(g: Gen, kind: str):
  bits, logical, cmp = kind.startswith("bitwise") or kind.endswith("shift"), kind.startswith("logical"), kind in ("lt", "gt", "le", "ge", "eq", "ne")
  ok = (lambda v: v.dtype in INTS if kind.endswith("shift") else v.dtype not in FLOATS) if bits else (lambda v: True) if logical or cmp else NUM
  a = g.pick(ok)
  if a is None: return None
  va = g.v(a)
  if not logical and g.coin(0.35):  # a Python number on one side
    s = int(g.rng.integers(0, 4)) if kind.endswith("shift") else g.scalar(va.dtype, "int" if bits else "any")
    if kind == "pow": s = g.choice((2, 3, 0.5, -1, 1.5, -2, 0, 2.0)) if va.dtype in FLOATS else g.choice((0, 1, 2, 3))
    rev = kind not in ("maximum", "minimum") and not kind.endswith("shift") and g.coin(0.3)
    if rev and kind == "pow": s = g.choice((2.0, 0.5, 3.0)) if va.dtype in FLOATS else 2
    return Op(kind, (a,), {"s": s, "rev": rev})
  dts = INTS[3:] + ("bool",) if bits else ("float32", "float64", "int32", "bool") if logical or cmp else ("float32", "float64", "int32")
  if kind.endswith("shift"): dts = ("int32", "int64")
  like = va.dtype if va.dtype in dts else None
  b = g.operand(va.shape, dts, like)
  if kind.endswith("shift") and b >= len(g.an.vals):  # shift amounts 0..3
    g.pending[-1].p["data"] = g.rng.integers(0, 4, size=g.pending[-1].p["data"].shape).astype(g.pending[-1].p["data"].dtype)
  return Op(kind, (b, a) if g.coin(0.3) else (a, b))

@proposer("where")
def _p_where(g: Gen, kind: str):
  x = g.pick(lambda v: True)
  if x is None: return None
  vx = g.v(x)
  c = g.pick(lambda v: v.dtype == "bool" and _bcast(v.shape, vx.shape) is not None and math.prod(_bcast(v.shape, vx.shape)) <= MAX_NUMEL)
  if c is None or g.coin(0.5):
    src = g.pick(lambda v: v.dtype != "bool" and _bcast(v.shape, vx.shape) is not None and math.prod(_bcast(v.shape, vx.shape)) <= MAX_NUMEL)
    if src is None: return None
    c = g.add(Op(g.choice(("gt", "lt", "ge")), (src,), {"s": g.scalar(g.v(src).dtype), "rev": False}), Val("bool", g.v(src).shape))
  if g.coin(0.4): return Op("where", (c, x), {"s": g.scalar(vx.dtype), "rev": g.coin(0.5)})
  y = g.operand(vx.shape, (vx.dtype, "float32", "float64", "int32"), vx.dtype)
  return Op("where", (c, x, y))

@proposer("lerp")
def _p_lerp(g: Gen, kind: str):
  a = g.pick(FLT)
  if a is None: return None
  return Op("lerp", (a, g.operand(g.v(a).shape, (g.v(a).dtype,))), {"w": g.choice((0.25, 0.5, 1.0, 0.0, 0.75))})

@proposer("sum", "prod", "mean", "max", "min", "var", "std", "logsumexp", "argmax", "argmin", "vector_norm")
def _p_reduce(g: Gen, kind: str):
  x = g.pick(FLT if kind in ("var", "std", "logsumexp", "vector_norm") and g.coin(0.9) else NUM if kind in ("var", "std") else lambda v: True)
  if x is None: return None
  nd = len(g.v(x).shape)
  axis = _axis(g, nd, tuples=kind not in ("argmax", "argmin"))
  if kind == "vector_norm": return Op(kind, (x,), {"ord": g.choice((2, 1, 3, math.inf, -math.inf, 0, 0.5)), "dim": axis, "keepdim": g.coin(0.4)})
  p = {"axis": axis, "keepdim": g.coin(0.4)}
  if kind in ("var", "std"): p["correction"] = g.choice((0, 1))
  return Op(kind, (x,), p)

@proposer("softmax", "log_softmax", "cumsum", "cumprod", "cummax", "cummin", "sort", "argsort", "topk")
def _p_scan(g: Gen, kind: str):
  x = g.pick(lambda v: len(v.shape) >= 1 and (v.dtype in FLOATS or (kind not in ("softmax", "log_softmax") and g.coin(0.3))))
  if x is None: return None
  nd = len(g.v(x).shape)
  d = _axis(g, nd, tuples=False, none=False)
  key = "axis" if kind in ("softmax", "log_softmax") else "dim"
  p: dict = {key: d}
  if kind in ("cummax", "cummin", "sort", "topk"): p["j"] = int(g.rng.integers(2))
  if kind in ("sort", "argsort"): p["descending"] = g.coin(0.5)
  if kind == "topk": p.update(k=int(g.rng.integers(0, g.v(x).shape[d] + 1)), largest=g.coin(0.6))
  return Op(kind, (x,), p)

def _factor(g: Gen, n: int, nd: int) -> list[int]:
  """A random shape of nd axes holding n elements."""
  if n == 0: return [0] + [g.size() or 1 for _ in range(nd - 1)] if nd else [0]
  dims = []
  for _ in range(max(nd, 1) - 1):
    ds = [d for d in range(1, n + 1) if n % d == 0]
    d = g.choice(ds)
    dims.append(d)
    n //= d
  dims.append(n)
  g.rng.shuffle(dims)
  return dims

@proposer(*[k for k, s in SPECS.items() if s.group in ("movement", "realize")])
def _p_movement(g: Gen, kind: str):
  need = {"permute": 1, "transpose": 1, "T": 0, "flip": 1, "squeeze": 0, "unbind": 1, "split": 1, "chunk": 1, "tril": 2, "triu": 2, "roll": 1,
          "unfold": 1, "repeat_interleave": 1, "unflatten": 1}.get(kind, 0)
  x = g.pick(lambda v: len(v.shape) >= need and not (kind == "realize" and (v.rgdep and g.grad)))
  if x is None: return None
  sh, nd, c, r = g.v(x).shape, len(g.v(x).shape), g.coin, g.rng
  n = math.prod(sh)
  if kind == "reshape":
    new = _factor(g, n, int(r.integers(0, 5)) if n == 1 else int(r.integers(1, 5)))
    if n and c(0.3): new[int(r.integers(len(new)))] = -1
    return Op(kind, (x,), {"shape": tuple(new)})
  if kind == "permute": return Op(kind, (x,), {"order": tuple(int(a) for a in r.permutation(nd))})
  if kind == "transpose": return Op(kind, (x,), {"d0": int(r.integers(-nd, nd)), "d1": int(r.integers(-nd, nd))})
  if kind == "expand":
    new = [(-1 if c(0.3) else s) if s != 1 else g.size() for s in sh]
    new = [g.choice((1, 2, 3)) for _ in range(int(r.integers(0, 3)) if n * 9 <= MAX_NUMEL else 0)] + new
    full = tuple(s if s != -1 else sh[k - (len(new) - nd)] for k, s in enumerate(new))
    return Op(kind, (x,), {"shape": tuple(new), "full": full}) if math.prod(full) <= MAX_NUMEL else None
  if kind == "pad":
    mode = g.choice(("constant",) * 5 + ("reflect", "replicate", "circular"))
    pads = []
    for s in sh:
      lim = {"constant": 3, "reflect": s - 1, "replicate": 3 if s else 0, "circular": s}[mode]
      b, a = (int(r.integers(0, lim + 1)) if lim > 0 else 0 for _ in range(2))
      if mode == "constant" and s >= 2 and c(0.15): b = -1
      pads.append((b, a))
    val = (g.scalar(g.v(x).dtype) if g.coin(0.8) else g.scalar("float32")) if mode == "constant" else 0.0
    return Op(kind, (x,), {"pads": tuple(pads), "mode": mode, "value": val})
  if kind == "flip": return Op(kind, (x,), {"axes": tuple(int(a) for a in r.choice(nd, int(r.integers(1, nd + 1)), replace=False))})
  if kind == "shrink":
    arg = tuple(None if c(0.3) else tuple(sorted(int(v) for v in r.integers(0, s + 1, 2))) for s in sh)
    return Op(kind, (x,), {"arg": arg, "sl": tuple(slice(None) if a is None else slice(*a) for a in arg)})
  if kind == "squeeze":
    ones = [k for k, s in enumerate(sh) if s == 1]
    dim = None if c(0.4) or not nd else (g.choice(ones) if ones and c(0.7) else int(r.integers(nd)))
    out = tuple(s for k, s in enumerate(sh) if not (s == 1 and (dim is None or k == dim)))
    return Op(kind, (x,), {"dim": dim, "out": out})
  if kind == "unsqueeze":
    d = int(r.integers(-nd - 1, nd + 1))
    dd = d % (nd + 1)
    return Op(kind, (x,), {"dim": d, "out": sh[:dd] + (1,) + sh[dd:]})
  if kind == "flatten":
    if nd == 0: return Op(kind, (x,), {"start": 0, "end": -1, "out": (1,)})
    s0 = int(r.integers(nd))
    e = int(r.integers(s0, nd))
    return Op(kind, (x,), {"start": s0, "end": e - nd if c(0.3) else e, "out": sh[:s0] + (math.prod(sh[s0:e + 1]),) + sh[e + 1:]})
  if kind == "unflatten":
    d = int(r.integers(nd))
    sizes = _factor(g, sh[d], int(r.integers(1, 4)))
    if sh[d] and c(0.3): sizes[int(r.integers(len(sizes)))] = -1
    full = tuple(sh[d] // -math.prod(sizes) if s == -1 else s for s in sizes) if -1 in sizes else tuple(sizes)
    return Op(kind, (x,), {"dim": d, "sizes": tuple(sizes), "out": sh[:d] + full + sh[d + 1:]})
  if kind in ("repeat", "tile"):
    k = nd + int(r.integers(0, 2)) if kind == "repeat" else int(r.integers(1, nd + 2))
    reps = tuple(int(r.choice([1, 1, 2, 3])) for _ in range(max(k, 1 if kind == "tile" else 0)))
    return Op(kind, (x,), {"sizes" if kind == "repeat" else "dims": reps}) if n * math.prod(reps) <= MAX_NUMEL else None
  if kind == "roll":
    if c(0.5): return Op(kind, (x,), {"shifts": int(r.integers(-4, 5)), "dims": int(r.integers(nd))})
    ds = tuple(int(a) for a in r.choice(nd, int(r.integers(1, nd + 1)), replace=False))
    return Op(kind, (x,), {"shifts": tuple(int(r.integers(-4, 5)) for _ in ds), "dims": ds})
  if kind in ("tril", "triu"): return Op(kind, (x,), {"diagonal": int(r.integers(-2, 3))})
  if kind in ("split", "chunk", "unbind"):
    d = int(r.integers(nd))
    m = sh[d]
    if m == 0: return None
    if kind == "unbind":
      j = int(r.integers(m))
      return Op(kind, (x,), {"dim": d, "j": j, "sl": tuple(j if k == d else slice(None) for k in range(nd))})
    size = int(r.integers(1, m + 1)) if kind == "split" else math.ceil(m / int(r.integers(1, m + 1)))
    j = int(r.integers(math.ceil(m / size)))
    sl = tuple(slice(j * size, min(m, (j + 1) * size)) if k == d else slice(None) for k in range(nd))
    p = {"size": size} if kind == "split" else {"chunks": math.ceil(m / size)}
    return Op(kind, (x,), {**p, "dim": d, "j": j, "sl": sl})
  if kind == "repeat_interleave":
    d = int(r.integers(nd))
    reps = int(r.integers(0, 4))
    return Op(kind, (x,), {"repeats": reps, "dim": d}) if n * reps <= MAX_NUMEL else None
  if kind == "unfold":
    d = int(r.integers(nd))
    if sh[d] == 0: return None
    return Op(kind, (x,), {"dim": d, "size": int(r.integers(1, sh[d] + 1)), "step": int(r.integers(1, 4))})
  return Op(kind, (x,))  # T, contiguous, clone, detach, realize

CASTS = ("float32", "float64", "float16", "int32", "int64", "int8", "uint8", "int16", "bool")
METHODS = {"float32": "float", "float64": "double", "float16": "half", "int32": "int", "int64": "long", "bool": "bool"}
@proposer("cast")
def _p_cast(g: Gen, kind: str):
  x = g.pick()
  if x is None: return None
  to = g.choice([d for d in CASTS if d != g.v(x).dtype])
  return Op(kind, (x,), {"dtype": to, "meth": METHODS.get(to) if g.coin(0.5) else None})

def _int_index_values(g: Gen, n: int, shape: tuple, unique: bool = False) -> np.ndarray:
  if unique: return g.rng.permutation(n)[:shape[0]] - (n if g.coin(0.3) else 0)
  return g.rng.integers(-n, n, size=shape) if n else np.zeros(shape, np.int64)

def _index(g: Gen, sh: tuple, write: bool) -> tuple | None:
  """A random index for shape sh: ints, slices (any step), None, Ellipsis, up to two int arrays (one for a write), a mask."""
  items: list = []
  n_adv, nd = 0, len(sh)
  for d, n in enumerate(sh):
    r = g.rng.random()
    if r < 0.15 and n: items.append(int(g.rng.integers(-n, n)))
    elif r < 0.6:
      step = int(g.choice((1, 1, 2, 3, -1, -2)))
      start, stop = (None if g.coin(0.4) else int(g.rng.integers(-n - 1, n + 2)) for _ in range(2))
      items.append(slice(start, stop, None if step == 1 and g.coin(0.5) else step))
    elif r < 0.78 and n_adv < (1 if write else 2) and n:
      k = int(g.rng.integers(0, 4)) if not write else int(g.rng.integers(1, n + 1))
      shape = (k,) if n_adv == 0 or g.coin(0.5) else (k, 1)
      if g.coin(0.12) and not write: items.append(("m", g.rng.random(n) < 0.5))
      else: items.append(("a", _int_index_values(g, n, shape, unique=write).astype(g.choice((np.int64, np.int32))), g.coin(0.5)))
      n_adv += 1
    else: items.append(slice(None))
  if write and n_adv: items = [slice(i.start, i.stop, abs(i.step)) if isinstance(i, slice) and i.step is not None else i for i in items]
  adv_pos = [k for k, i in enumerate(items) if isinstance(i, tuple)]
  for _ in range(int(g.rng.integers(0, 3)) if g.coin(0.3) else 0):  # Nones, never between two arrays
    p = int(g.rng.integers(0, len(items) + 1))
    if not (adv_pos and adv_pos[0] < p <= adv_pos[-1]): items.insert(p, None)
  while items and items[-1] == slice(None) and g.coin(0.6): items.pop()
  if g.coin(0.15) and nd:  # an Ellipsis for a run of full slices (or none)
    full = [k for k, i in enumerate(items) if i == slice(None)]
    k = g.choice(full) if full else len(items)
    items[k:k + (1 if full else 0)] = [Ellipsis]
  return tuple(items)

@proposer("getitem")
def _p_getitem(g: Gen, kind: str):
  x = g.pick()
  if x is None: return None
  sh = g.v(x).shape
  idx = _index(g, sh, False)
  if g.coin(0.25) and not any(isinstance(i, tuple) for i in idx):  # a computed int tensor as the index of one axis
    d = int(g.rng.integers(len(sh))) if sh else None
    if d is not None and sh[d]:
      cand = g.live(lambda v: v.dtype in ("int32", "int64") and len(v.shape) <= 2 and math.prod(v.shape) <= 16)
      cand = [i for i in cand if i < len(g.an.vals) and np.all((g.an.ref(i) >= -sh[d]) & (g.an.ref(i) < sh[d]))]
      if cand:
        idx = tuple(slice(None) for _ in range(d)) + (("v", 1),)
        return Op(kind, (x, g.choice(cand)), {"idx": idx})
  return Op(kind, (x,), {"idx": idx})

@proposer("gather", "index_select")
def _p_gather(g: Gen, kind: str):
  x = g.pick(lambda v: len(v.shape) >= 1)
  if x is None: return None
  sh = g.v(x).shape
  d = int(g.rng.integers(len(sh)))
  if kind == "index_select":
    m = int(g.rng.integers(0, 6))
    data = g.rng.integers(0, sh[d], size=(m,)) if sh[d] else np.zeros((0,), np.int64)
  else:
    shape = tuple(int(g.rng.integers(0, 5)) if k == d else int(g.rng.integers(0, s + 1)) for k, s in enumerate(sh))
    data = g.rng.integers(0, sh[d], size=shape) if sh[d] else np.zeros(tuple(0 if k == d else s for k, s in enumerate(shape)), np.int64)
  i = g.add(Op("input", (), {"data": data.astype(g.choice((np.int64, np.int32))), "rg": False}), Val("int64", data.shape))
  return Op(kind, (x, i), {"dim": d - len(sh) if g.coin(0.3) else d})

@proposer("embedding")
def _p_embedding(g: Gen, kind: str):
  """Rows of a float table at an int index of 0 to 2 axes (a TAKE node, docs/design/0038)."""
  x = g.pick(lambda v: len(v.shape) == 2 and v.shape[0] > 0 and v.dtype in FLOATS)
  if x is None: return None
  shape = tuple(int(g.rng.integers(0, 5)) for _ in range(int(g.rng.integers(0, 3))))
  data = g.rng.integers(0, g.v(x).shape[0], size=shape)
  i = g.add(Op("input", (), {"data": data.astype(g.choice((np.int64, np.int32))), "rg": False}), Val("int64", data.shape))
  return Op(kind, (x, i), {})

@proposer("masked_fill")
def _p_masked_fill(g: Gen, kind: str):
  x = g.pick()
  if x is None: return None
  vx = g.v(x)
  m = g.pick(lambda v: v.dtype == "bool" and _bcast(v.shape, vx.shape) == vx.shape)
  if m is None or g.coin(0.5):
    src = g.pick(lambda v: v.dtype != "bool" and _bcast(v.shape, vx.shape) == vx.shape)
    if src is None: return None
    m = g.add(Op("gt", (src,), {"s": g.scalar(g.v(src).dtype), "rev": False}), Val("bool", g.v(src).shape))
  return Op(kind, (x, m), {"s": g.scalar(vx.dtype)})

@proposer("cat", "stack")
def _p_cat(g: Gen, kind: str):
  x = g.pick(lambda v: len(v.shape) >= (1 if kind == "cat" else 0))
  if x is None: return None
  sh, dt = g.v(x).shape, g.v(x).dtype
  nd = len(sh)
  d = int(g.rng.integers(nd)) if kind == "cat" else int(g.rng.integers(nd + 1))
  args = [x]
  for _ in range(int(g.rng.integers(1, 3))):
    if kind == "cat":
      same = g.live(lambda v: len(v.shape) == nd and all(a == b for k, (a, b) in enumerate(zip(v.shape, sh)) if k != d))
      if same and g.coin(0.5): args.append(g.choice(same)); continue
      args.append(g.inp(sh[:d] + (g.size(),) + sh[d + 1:], dt if g.coin(0.7) else None))
    else:
      same = g.live(lambda v: v.shape == sh)
      args.append(g.choice(same) if same and g.coin(0.6) else g.inp(sh, dt if g.coin(0.7) else None))
  d = d - (nd + (kind == "stack")) if g.coin(0.3) else d
  total = sum(math.prod(g.v(a).shape) for a in args)
  return Op(kind, tuple(args), {"dim": d}) if total <= MAX_NUMEL else None

@proposer("matmul")
def _p_matmul(g: Gen, kind: str):
  a = g.pick(lambda v: len(v.shape) >= 1 and v.dtype != "bool")
  if a is None: return None
  sh, dt = g.v(a).shape, g.v(a).dtype
  k = sh[-1]
  r = g.rng.random()
  bs = (k,) if r < 0.2 else (k, g.size()) if r < 0.7 or len(sh) < 2 else tuple(1 if g.coin(0.3) else s for s in sh[:-2]) + (k, g.size())
  if len(sh) == 1 and r > 0.7: bs = (g.choice((1, 2, 3)), k, g.size())
  cand = g.live(lambda v: v.shape == bs and v.dtype != "bool")
  b = g.choice(cand) if cand and g.coin(0.4) else g.inp(bs, dt if dt in FLOATS and g.coin(0.8) else g.choice(("float32", "float64", "int32")))
  return Op(kind, (b, a) if False else (a, b))

EINSUM = {1: ("i,i->", "i,j->ij", "i->", "i,ij->j"), 2: ("ij->ji", "ij,jk->ik", "ij->", "ii->", "ij,ij->i", "ij->j", "ij,j->i"),
          3: ("bij,bjk->bik", "bij->bji", "...ij->...i", "bij->b")}
@proposer("einsum")
def _p_einsum(g: Gen, kind: str):
  a = g.pick(lambda v: 1 <= len(v.shape) <= 3 and v.dtype != "bool" and (len(v.shape) != 2 or True))
  if a is None: return None
  sh = g.v(a).shape
  f = g.choice([q for q in EINSUM[len(sh)] if q != "ii->" or sh[0] == sh[1]])
  ins, _ = f.split("->")
  terms = ins.split(",")
  sizes = dict(zip(terms[0].replace("...", ""), sh[-len(terms[0].replace("...", "")):])) if "..." in terms[0] else dict(zip(terms[0], sh))
  args = [a]
  for t in terms[1:]:
    shape = tuple(sizes.setdefault(ch, g.size() or 1) for ch in t)
    args.append(g.inp(shape, g.v(a).dtype if g.v(a).dtype in FLOATS else "float32"))
  return Op(kind, tuple(args), {"formula": f})

@proposer("conv")
def _p_conv(g: Gen, kind: str):
  x = g.pick(lambda v: len(v.shape) in (3, 4) and v.dtype in FLOATS and v.shape[1] > 0 and all(s > 0 for s in v.shape[2:]))
  if x is None: return None
  sh, r = g.v(x).shape, g.rng
  nd, C = len(sh) - 2, sh[1]
  groups = g.choice([d for d in (1, 2, 3, C) if C % d == 0])
  O = groups * int(r.integers(1, 3))
  stride, dilation = int(r.integers(1, 3)), int(r.integers(1, 3))
  padding = int(r.integers(0, 2))
  k = [int(r.integers(1, 4)) for _ in range(nd)]
  if any(dilation * (kk - 1) + 1 > s + 2 * padding for kk, s in zip(k, sh[2:])): return None
  args = [x, g.inp((O, C // groups, *k), g.v(x).dtype)] + ([g.inp((O,), g.v(x).dtype)] if g.coin(0.5) else [])
  return Op(kind, tuple(args), {"nd": nd, "stride": stride, "padding": padding, "dilation": dilation, "groups": groups})

@proposer("max_pool2d", "avg_pool2d")
def _p_pool(g: Gen, kind: str):
  x = g.pick(lambda v: len(v.shape) in (3, 4) and v.dtype in FLOATS and min(v.shape[-2:]) >= 1 and math.prod(v.shape) > 0)
  if x is None: return None
  k = int(g.rng.integers(1, min(3, *g.v(x).shape[-2:]) + 1))
  return Op(kind, (x,), {"k": k, "stride": int(g.rng.integers(1, 3)), "padding": int(g.rng.integers(0, k // 2 + 1))})

@proposer("layer_norm")
def _p_layer_norm(g: Gen, kind: str):
  x = g.pick(lambda v: len(v.shape) >= 1 and v.dtype in FLOATS and v.shape[-1] > 0)
  if x is None: return None
  sh = g.v(x).shape
  return Op(kind, (x,), {"shape": tuple(sh[len(sh) - int(g.rng.integers(1, min(2, len(sh)) + 1)):])})

@proposer("cross_entropy")
def _p_cross_entropy(g: Gen, kind: str):
  x = g.pick(lambda v: len(v.shape) == 2 and v.dtype in FLOATS and v.shape[0] > 0 and v.shape[1] > 0)
  if x is None: return None
  n, c = g.v(x).shape
  t = g.add(Op("input", (), {"data": g.rng.integers(0, c, size=(n,)).astype(np.int64), "rg": False}), Val("int64", (n,)))
  return Op(kind, (x, t))

@proposer("sdpa")
def _p_sdpa(g: Gen, kind: str):
  q = g.pick(lambda v: 2 <= len(v.shape) <= 4 and v.dtype in FLOATS and v.shape[-1] > 0)
  if q is None: return None
  sh, dt = g.v(q).shape, g.v(q).dtype
  s = g.size() or 1
  return Op(kind, (q, g.inp(sh[:-2] + (s, sh[-1]), dt), g.inp(sh[:-2] + (s, g.size() or 1), dt)), {"causal": g.coin(0.3)})

@proposer("scatter_add")
def _p_scatter_add(g: Gen, kind: str):
  x = g.pick(lambda v: len(v.shape) >= 1 and v.dtype != "bool" and all(s > 0 for s in v.shape))
  if x is None: return None
  sh = g.v(x).shape
  d = int(g.rng.integers(len(sh)))
  ishape = tuple(int(g.rng.integers(0, s + 1)) if k != d else int(g.rng.integers(0, 5)) for k, s in enumerate(sh))
  i = g.add(Op("input", (), {"data": g.rng.integers(0, sh[d], size=ishape).astype(np.int64), "rg": False}), Val("int64", ishape))
  src = g.inp(tuple(n + int(g.rng.integers(0, 2)) for n in ishape), g.v(x).dtype)
  return Op(kind, (x, i, src), {"dim": d})

@proposer("one_hot")
def _p_one_hot(g: Gen, kind: str):
  x = g.pick(lambda v: v.dtype in ("int32", "int64") and math.prod(v.shape) <= 64)
  if x is None or x >= len(g.an.vals): return None
  r = np.asarray(g.an.ref(x))
  if r.size and r.min() < 0: return None
  return Op(kind, (x,), {"n": int(r.max(initial=-1)) + 1 + int(g.rng.integers(0, 3))})

@proposer("arange", "linspace", "eye", "full", "zeros_like", "ones_like", "full_like")
def _p_creation(g: Gen, kind: str):
  r = g.rng
  if kind == "arange":
    if g.coin(0.5): return Op(kind, (), {"start": int(r.integers(-3, 3)), "stop": int(r.integers(-3, 8)), "step": g.choice((1, 2, -1, 3))})
    return Op(kind, (), {"start": g.choice((0.0, -1.5, 0.25)), "stop": g.choice((2.0, 3.5, -1.0)), "step": g.choice((0.5, 0.75, -0.5))})
  if kind == "linspace": return Op(kind, (), {"start": g.choice((0.0, -1.0, 2.5)), "end": g.choice((1.0, 3.0, -2.0)), "steps": int(r.integers(0, 8))})
  if kind == "eye": return Op(kind, (), {"n": g.size(), "m": g.size() if g.coin(0.5) else None})
  if kind == "full": return Op(kind, (), {"shape": g.shape(), "v": g.scalar(g.choice(("float32", "int64", "bool")))})
  x = g.pick()
  if x is None: return None
  return Op(kind, (x,), {"v": g.scalar(g.v(x).dtype)} if kind == "full_like" else {})

# ---- writes ----
def _view_of(g: Gen, x: int) -> int:
  """A view of x (a basic index, T, unsqueeze, detach, expand): queued before a write, so it must see the write."""
  vx, r = g.v(x), g.rng.random()
  if r < 0.4 and vx.shape:
    idx = tuple(slice(i.start, i.stop, abs(i.step)) if isinstance(i, slice) and i.step else i for i in _index(g, vx.shape, True)
                if not isinstance(i, tuple))
    try: shape = tuple(R.index(np.zeros(vx.shape), idx).shape)
    except Exception: return x
    return g.add(Op("getitem", (x,), {"idx": idx}), Val(vx.dtype, shape))
  if r < 0.55: return g.add(Op("T", (x,)), Val(vx.dtype, vx.shape[::-1]))
  if r < 0.7: return g.add(Op("unsqueeze", (x,), {"dim": 0, "out": (1,) + vx.shape}), Val(vx.dtype, (1,) + vx.shape))
  if r < 0.85: return g.add(Op("detach", (x,)), Val(vx.dtype, vx.shape))
  return g.add(Op("expand", (x,), {"shape": (2,) + vx.shape, "full": (2,) + vx.shape}), Val(vx.dtype, (2,) + vx.shape))

def _write_target(g: Gen, ok) -> int | None:
  """What to write into: a value (often one with views, or a view just taken of one); with a view of it queued first."""
  x = g.pick(lambda v: v.alias != "ambig" and v.writable and ok(v))
  if x is None or x >= len(g.an.vals): return None
  if g.coin(0.25) and (y := _view_of(g, x)) != x:  # write through a view: the base must see it
    if g.pending[-1].kind == "expand": g.pending.pop()  # not writable
    else: x = y
  if g.coin(0.5): _view_of(g, x)  # a view taken before the write, to be read after it
  return x

@proposer("setitem")
def _p_setitem(g: Gen, kind: str):
  x = _write_target(g, lambda v: True)
  if x is None: return None
  vx = g.v(x)
  if g.coin(0.15) and vx.shape:  # t[mask] = value
    m = g.add(Op(g.choice(("gt", "lt")), (x,), {"s": g.scalar(vx.dtype), "rev": False}), Val("bool", vx.shape))
    return Op(kind, (x, m), {"idx": (("v", 1),), "s": g.scalar(vx.dtype)})
  idx = _index(g, vx.shape, True)
  with np.errstate(all="ignore"):
    try: target = R.index(np.zeros(vx.shape), idx)
    except Exception: return None
  if g.coin(0.5): return Op(kind, (x,), {"idx": idx, "s": g.scalar(vx.dtype)})
  tshape = tuple(target.shape)
  if g.coin(0.3) and tshape: tshape = tshape[int(g.rng.integers(1, len(tshape) + 1)):]
  v = g.operand(tshape, tuple(d for d in ("bool", "int32", "int64", "float32", "float64") if rank(d) <= rank(vx.dtype)), vx.dtype, exact_shape=True)
  return Op(kind, (x, v), {"idx": idx})

@proposer("iadd", "isub", "imul", "idiv", "assign")
def _p_inplace(g: Gen, kind: str):
  x = _write_target(g, lambda v: v.dtype in FLOATS if kind == "idiv" else v.dtype != "bool" or kind == "assign")
  if x is None: return None
  vx = g.v(x)
  if kind != "assign" and g.coin(0.4): return Op(kind, (x,), {"s": g.scalar(vx.dtype) if vx.dtype in FLOATS else int(g.rng.integers(-3, 4))})
  dts = tuple(d for d in ("bool", "int32", "int64", "float32", "float64") if rank(d) <= rank(vx.dtype) and (d != "bool" or kind == "assign"))
  shape = vx.shape[int(g.rng.integers(0, len(vx.shape) + 1)):] if g.coin(0.3) else vx.shape
  return Op(kind, (x, g.operand(shape, dts, vx.dtype, exact_shape=True)))

# ---- ops meant to raise ----
@proposer(*[k for k, s in SPECS.items() if s.group == "errors"])
def _p_error(g: Gen, kind: str):
  x = g.pick(lambda v: (len(v.shape) >= 1 and math.prod(v.shape) > 0 or kind == "err_reshape") and (kind != "err_bitwise" or v.dtype in FLOATS))
  if x is None: return None
  sh = g.v(x).shape
  nd, r = len(sh), g.rng
  if kind == "err_index": return Op(kind, (x,), {"n": sh[0] if g.coin(0.5) else -sh[0] - 1})
  if kind == "err_reshape": return Op(kind, (x,), {"shape": (math.prod(sh) + 1,) if g.coin(0.5) else (-1, -1)})
  if kind == "err_broadcast":
    d = int(r.integers(nd))
    bad = sh[:d] + (sh[d] + 1 if sh[d] != 1 else 2,) + sh[d + 1:] if sh[d] != 1 else None
    return Op(kind, (x, g.inp(bad, "float32"))) if bad else None
  if kind == "err_matmul": return Op(kind, (x, g.inp((sh[-1] + 1, 2), "float32")))
  if kind == "err_bitwise": return Op(kind, (x, g.inp(sh, "int32"))) if g.v(x).dtype in FLOATS else None
  if kind == "err_permute": return Op(kind, (x,), {"order": (0,) * nd if nd > 1 else (0, 1)})
  if kind == "err_axis": return Op(kind, (x,), {"axis": nd if g.coin(0.5) else -nd - 1})
  if kind == "err_expand":
    d = next((k for k, s in enumerate(sh) if s > 1), None)
    return Op(kind, (x,), {"shape": sh[:d] + (sh[d] + 1,) + sh[d + 1:]}) if d is not None else None
  if kind == "err_index_array": return Op(kind, (x,), {"idx": (("a", np.array([0, sh[0]], np.int64), g.coin(0.5)),)})
  return None

# ---------------------------------------------------------------------------------------------------------------------
# Running lucidgrad and comparing
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class Mismatch:
  kind: str   # value | dtype | shape | grad | crash | error
  where: int  # the value (an input, for grad) it is about; -1 for the whole program
  msg: str
  sig: str    # what makes two mismatches the same bug: the minimiser keeps it while it shrinks
  got: Any = None
  want: Any = None

def weights(prog: Program, i: int, shape: tuple) -> np.ndarray:
  """The random weighting that reduces output i to a scalar for backward."""
  return np.random.default_rng([prog.seed & 0xFFFFFFFF, i]).standard_normal(shape)

def _sig_msg(e: BaseException) -> str: return re.sub(r"\d+", "N", str(e).split("\n")[0])[:60]

def _crash(i: int, what: str, e: BaseException) -> Mismatch:
  tb = traceback.extract_tb(e.__traceback__)
  ours = [f for f in tb if "lucidgrad/" in f.filename and "testing" not in f.filename]
  frame = f"{ours[-1].filename.split('lucidgrad/')[-1]}:{ours[-1].name}" if ours else "?"
  return Mismatch("crash", i, f"{what} raised {type(e).__name__}: {str(e)[:300]} (in {frame})", f"crash:{what}:{type(e).__name__}:{frame}")

def run_lucidgrad(prog: Program, an: Analysis) -> tuple[dict, dict, list[Mismatch]]:
  """Run the program on lucidgrad: (outputs by value, input gradients by value, mismatches of errors and crashes)."""
  from lucidgrad import Tensor, dtypes
  ns: dict = {"np": np, "math": math, "Tensor": Tensor, "dtypes": dtypes}
  bad: list[Mismatch] = []
  with np.errstate(all="ignore"):
    for i, op in enumerate(prog.ops):
      consts: dict = {}
      code = render(op, i, "lg", consts)
      ns.update(consts)
      if SPECS[op.kind].group == "errors":
        want = an.vals[i].error
        try:
          exec(_compiled(code), ns)
          ns[f"v{i}"].numpy()  # a host read: where an index checked on the device reports
          bad.append(Mismatch("error", i, f"{op.kind}: no error where NumPy raised {want}", f"error:{op.kind}:none"))
        except Exception as e:
          built = f"v{i}" in ns  # an index tensor's values are known only when it runs: it may raise then (ARCHITECTURE.md)
          if built and not (op.kind == "err_index_array" and op.p["idx"][0][2]):
            bad.append(Mismatch("error", i, f"{op.kind}: {type(e).__name__} raised when realized, not when built", f"error:{op.kind}:late"))
          elif not any(k.__name__ in want.split(" or ") for k in type(e).__mro__):
            bad.append(Mismatch("error", i, f"{op.kind}: {type(e).__name__}: {str(e)[:200]} where NumPy raised {want}",
                                f"error:{op.kind}:{type(e).__name__}"))
        continue
      try: exec(_compiled(code), ns)
      except Exception as e: return {}, {}, bad + [_crash(i, op.kind, e)]
    sinks, loss_sinks, rg = an.sinks(), an.loss_sinks() if prog.grad else [], an.grad_inputs() if prog.grad else []
    try:
      if loss_sinks:
        loss = None
        for s in loss_sinks:
          t = ns[f"v{s}"]
          term = (t * Tensor(weights(prog, s, t.shape).astype(t.dtype.name))).sum()
          loss = term if loss is None else loss + term
        loss.backward()
      outs = [ns[f"v{s}"] for s in sinks]
      grads = {j: ns[f"v{j}"].grad for j in rg} if loss_sinks else {}
      ts = list({id(t): t for t in outs + [g for g in grads.values() if g is not None]}.values())
      if ts: ts[0].realize(*ts[1:])
      vals = {s: (ns[f"v{s}"].dtype.name, ns[f"v{s}"].numpy()) for s in sinks}
      gvals = {j: (None if g is None else g.numpy()) for j, g in grads.items()}
    except Exception as e: return {}, {}, bad + [_crash(-1, "backward" if loss_sinks and "loss" in locals() and not grads else "realize", e)]
  return vals, gvals, bad

def torch_grads(prog: Program, an: Analysis, mode: str) -> dict[int, np.ndarray | None]:
  """d(sum of weighted outputs)/d(inputs) from torch: 'f64' every float in float64 (the reference); rounding samples:
  'actual' the program's dtypes, 'f32' float32 and 'f64p' float64, both with every rounded op's output and every gradient
  flowing into an op's argument nudged by a few ulps (so a cancelling sum of gradients shows the noise it has)."""
  torch = _t()
  P = torch_ref("f64" if mode == "f64p" else mode)
  nudge = EPS["float32"] if mode == "f32" else EPS["float64"] if mode == "f64p" else 0.0
  ns: dict = {"torch": torch, "F": torch.nn.functional, "math": math, "P": P}
  old = torch.get_default_dtype()
  torch.set_default_dtype(torch.float64 if mode in ("f64", "f64p") else torch.float32)
  try:
    with np.errstate(all="ignore"), warnings.catch_warnings():
      warnings.simplefilter("ignore")
      for i, op in enumerate(prog.ops):
        consts: dict = {}
        rng = np.random.default_rng(i)
        names = None
        if nudge:  # each argument through an alias whose incoming gradient is nudged (and its value too, for a rounded op)
          names = [f"u{k}" for k in range(len(op.args))]
          for k, j in enumerate(op.args):
            u = ns[f"t{j}"]
            if u.is_floating_point():
              d = torch.tensor(1 + rng.uniform(-4, 4, tuple(u.shape)) * nudge, dtype=u.dtype)
              if not SPECS[op.kind].exact and SPECS[op.kind].alias != "write": u = u * d
              elif u.requires_grad:
                u = u.view_as(u)
                u.register_hook(lambda g, d=d: g * d)
            ns[f"u{k}"] = u
        code = render(op, i, "pt", consts, names)
        ns.update(consts)
        exec(_compiled(code), ns)
        t = ns[f"t{i}"]
        s = SPECS[op.kind]
        if nudge and not s.exact and t.is_floating_point() and s.alias != "write":
          t = t * torch.tensor(1 + rng.uniform(-4, 4, tuple(t.shape)) * nudge, dtype=t.dtype)
          if mode == "f32" and s.dapprox is not None and t.requires_grad:  # a term worth 0 whose derivative is the documented error
            x, dt = ns[f"t{op.args[0]}"], an.vals[i].dtype
            e = s.dapprox(_np(x).astype(np.float64), dt) * (EPS["float32"] / EPS[dt])
            c = torch.tensor(rng.uniform(-1, 1, tuple(t.shape)) * e, dtype=t.dtype)
            t = t + (c * x - (c * x).detach())
          ns[f"t{i}"] = t
      loss = sum((ns[f"t{s}"] * torch.tensor(weights(prog, s, an.vals[s].shape), dtype=ns[f"t{s}"].dtype)).sum() for s in an.loss_sinks())
      rg = an.grad_inputs()
      gs = torch.autograd.grad(loss, [ns[f"t{j}"] for j in rg], allow_unused=True)
  finally: torch.set_default_dtype(old)
  return {j: None if g is None else _np(g) for j, g in zip(rg, gs)}

def _close(got: np.ndarray, want: np.ndarray, err, dt: str, depth: int, prec: str = "", atol: float = 0.0) -> tuple[bool, str]:
  """Equal ints/bools; floats within 8x the rounding estimate plus a slack growing with the chain, NaN/inf in place."""
  if dt not in FLOATS:
    ok = np.array_equal(got, want.astype(got.dtype) if dt == "bool" else want)
    return ok, "" if ok else f"{int(np.sum(got != want))} of {got.size} differ"
  g, w = got.astype(np.float64), want.astype(np.float64).astype(dt).astype(np.float64)
  for f, name in ((np.isnan, "NaN"), (np.isposinf, "inf"), (np.isneginf, "-inf")):
    if not np.array_equal(f(g), f(w)): return False, f"{name} at other places"
  fin = np.isfinite(w)
  if not np.any(fin): return True, ""
  amax = float(np.max(np.abs(w[fin])))
  tol = 8 * np.asarray(err, np.float64) + EPS[prec or dt] * (16 + 4 * depth) * (np.abs(w) + 0.01 * amax) + atol
  with np.errstate(all="ignore"): bad = fin & ~(np.abs(g - w) <= tol)
  if not np.any(bad): return True, ""
  k = int(np.argmax(np.where(bad, np.abs(g - w) / np.where(tol > 0, tol, 1e-300), -1)))
  t = np.broadcast_to(tol, g.shape).flat[k]
  return False, f"{int(np.sum(bad))} of {g.size} differ; worst at flat index {k}: {g.flat[k]!r} vs {w.flat[k]!r} (tolerance {t:.3g})"

def compare(prog: Program, an: Analysis, vals: dict, gvals: dict, grefs: tuple | None) -> list[Mismatch]:
  out = []
  for s, (dt, got) in vals.items():
    v, kind = an.vals[s], prog.ops[s].kind
    if dt != v.dtype: out.append(Mismatch("dtype", s, f"v{s} ({kind}) is {dt}, PyTorch gives {v.dtype}", f"dtype:{kind}:{dt}:{v.dtype}"))
    elif got.shape != v.shape: out.append(Mismatch("shape", s, f"v{s} ({kind}) has shape {got.shape}, expected {v.shape}", f"shape:{kind}"))
    else:
      ok, why = _close(got, np.asarray(an.ref(s)), an._err(s, v), v.dtype, v.depth, v.prec)
      if not ok: out.append(Mismatch("value", s, f"v{s} ({kind}, {v.dtype}{list(v.shape)}): {why}", "value", got, np.asarray(an.ref(s)).copy()))
  if grefs is None: return out
  ref, sa, sb, sp = grefs
  depth = 2 * max((an.vals[s].depth for s in an.loss_sinks()), default=0) + 4
  coarse = max((an.vals[s].prec for s in an.loss_sinks() if an.vals[s].prec), key=lambda d: EPS[d], default="float64")
  # gradients that cancel to 0 exactly in torch's formula may keep an ulp or so of the loss weights in lucidgrad's
  wmax = max((float(np.max(np.abs(weights(prog, s, an.vals[s].shape)), initial=0.0)) for s in an.loss_sinks()), default=0.0)
  for j, got in gvals.items():
    want, dt = ref[j], an.vals[j].dtype
    prec = max((dt, coarse), key=lambda d: EPS[d])
    if want is None or got is None:  # no gradient at all equals a zero one
      other = want if got is None else got
      if other is not None and np.any(other != 0):
        has = lambda g: "none" if g is None else "one"
        out.append(Mismatch("grad", j, f"grad of input v{j}: {has(got)} where torch has {has(want)}", "grad"))
      continue
    if got.shape != want.shape:
      out.append(Mismatch("grad", j, f"grad of input v{j} has shape {got.shape}, expected {want.shape}", "grad-shape"))
      continue
    with np.errstate(all="ignore"):
      ea = np.abs(want - sa[j]) if sa[j] is not None else 0.0
      eb = np.abs(want - sb[j]) * (EPS[prec] / EPS[SHADOW[prec]]) if sb[j] is not None else 0.0
      ep = np.abs(want - sp[j]) if sp[j] is not None else 0.0  # float64 noise, e.g. of a gradient sum that cancels
      err = _smooth(np.where(np.isfinite(want), np.maximum(np.maximum(ea, eb), ep), 0.0))
    ok, why = _close(got, want, err, dt, depth, prec, 4 * EPS[prec] * wmax)
    if not ok: out.append(Mismatch("grad", j, f"grad of input v{j} ({dt}{list(want.shape)}): {why}", "grad", got, want))
  return out

def check_program(prog: Program, an: Analysis | None = None) -> tuple[list[Mismatch], Analysis]:
  """Run one program on lucidgrad and compare: the mismatches (empty when all agree)."""
  an = an or analyze(prog)
  grefs = None
  if prog.grad and an.loss_sinks():
    try: grefs = tuple(torch_grads(prog, an, m) for m in ("f64", "actual", "f32", "f64p"))
    except Exception: grefs = None  # torch cannot differentiate it: the values are still compared
  vals, gvals, bad = run_lucidgrad(prog, an)
  if any(m.kind == "crash" for m in bad): return bad, an
  return bad + compare(prog, an, vals, gvals if grefs is not None else {}, grefs), an

# ---------------------------------------------------------------------------------------------------------------------
# Shrinking a failing program (delta debugging) and printing it as code
# ---------------------------------------------------------------------------------------------------------------------
def _cone(ops: list[Op], targets: list[int]) -> set[int]:
  """The ops the targets depend on: their arguments, and every write into memory one of them views."""
  base: list[int] = []
  for i, o in enumerate(ops): base.append(base[o.args[0]] if o.args and SPECS[o.kind].alias not in ("fresh",) else i)
  keep: set[int] = set()
  todo = list(targets)
  while True:
    while todo:
      i = todo.pop()
      if i not in keep: keep.add(i); todo.extend(ops[i].args)
    bases = {base[k] for k in keep}
    todo = [i for i, o in enumerate(ops) if i not in keep and SPECS[o.kind].alias == "write" and base[i] in bases]
    if not todo: return keep

def _rebuild(prog: Program, subst: dict[int, int], targets: list[int]) -> tuple[Program, list[int]] | None:
  """The program with uses of value k replaced by subst[k], cut down to what the targets need and renumbered."""
  def res(j: int) -> int:
    while j in subst: j = subst[j]
    return j
  ops = [Op(o.kind, tuple(res(a) for a in o.args), o.p) for o in prog.ops]
  tg = [res(t) for t in targets]
  if any(a >= i for i, o in enumerate(ops) for a in o.args): return None
  keep = sorted(_cone(ops, tg))
  if any(k in subst for k in keep): return None
  new = {old: n for n, old in enumerate(keep)}
  return Program([Op(ops[i].kind, tuple(new[a] for a in ops[i].args), ops[i].p) for i in keep], prog.grad, prog.seed), [new[t] for t in tg]

def _targets(prog: Program, an: Analysis, m: Mismatch) -> list[int]:
  if m.kind == "grad": return an.loss_sinks()
  if m.where >= 0: return [m.where]
  return an.sinks()

def minimise(prog: Program, m: Mismatch, budget_s: float = 90, max_calls: int = 250, log=None) -> tuple[Program, Mismatch]:
  """A smaller program failing the same way (same signature): ops bypassed (their uses take one of their arguments) or
  arguments replaced by earlier values, while the mismatch persists."""
  t0, calls = time.time(), [0]
  an = analyze(prog)
  allowed = known_issues(an, prog.ops)  # shrinking must not wander into another known bug
  def fails(p: Program) -> Mismatch | None:
    if calls[0] >= max_calls or time.time() - t0 > budget_s: return None
    calls[0] += 1
    try:
      a = analyze(p)
      if known_issues(a, p.ops) - allowed: return None
      bad, _ = check_program(p, a)
    except Exception: return None
    return next((b for b in bad if b.sig == m.sig), None)
  cur, tg, cm = prog, _targets(prog, an, m), m
  if (r := _rebuild(cur, {}, tg)) and r[0].n_ops < cur.n_ops and (f := fails(r[0])): (cur, tg), cm = r, f
  if cur.grad and m.kind != "grad" and (f := fails(Program(cur.ops, False, cur.seed))): cur, cm = Program(cur.ops, False, cur.seed), f
  improved = True
  while improved and calls[0] < max_calls and time.time() - t0 < budget_s:
    improved = False
    n = len(cur.ops)
    for chunk in (n // 2, n // 4, 2, 1):  # bypass chunks of ops, latest first
      if chunk < 1: continue
      for start in range(n - chunk, -1, -chunk):
        ids = [i for i in range(start, min(start + chunk, len(cur.ops))) if cur.ops[i].args]
        if not ids: continue
        for alt in range(max(len(cur.ops[i].args) for i in ids)):
          r = _rebuild(cur, {i: cur.ops[i].args[min(alt, len(cur.ops[i].args) - 1)] for i in ids}, tg)
          if r and r[0].n_ops < cur.n_ops and (f := fails(r[0])):
            (cur, tg), cm, improved = r, f, True
            break
        if improved: break
      if improved: break
    if improved: continue
    an = _safe_analyze(cur)
    if an is None: break
    for i in range(len(cur.ops) - 1, -1, -1):  # an argument replaced by an earlier value of its dtype and shape
      for pos, a in enumerate(cur.ops[i].args):
        for j in range(a):
          if an.vals[j].shape != an.vals[a].shape or an.vals[j].dtype != an.vals[a].dtype: continue
          ops = list(cur.ops)
          ops[i] = Op(ops[i].kind, tuple(j if q == pos else x for q, x in enumerate(ops[i].args)), ops[i].p)
          r = _rebuild(Program(ops, cur.grad, cur.seed), {}, tg)
          if r and len(r[0].ops) < len(cur.ops) and (f := fails(r[0])):
            (cur, tg), cm, improved = r, f, True
            break
        if improved: break
      if improved: break
  if log: log(f"  minimised in {calls[0]} runs, {time.time() - t0:.0f} s")
  return cur, cm

def _safe_analyze(p: Program) -> Analysis | None:
  try: return analyze(p)
  except Invalid: return None

def _array_src(a: np.ndarray) -> str:
  def fmt(x):
    if isinstance(x, list): return "[" + ", ".join(fmt(y) for y in x) + "]"
    if isinstance(x, float) and not math.isfinite(x): return "math.nan" if math.isnan(x) else "math.inf" if x > 0 else "-math.inf"
    return repr(x)
  return f"np.array({fmt(a.tolist())}, dtype=np.{a.dtype.name}).reshape({tuple(a.shape)})"

def repro(prog: Program, m: Mismatch, original_ops: int | None = None, seed: int | None = None, flags: str = "") -> str:
  """The program as Python to paste: lucidgrad, then the reference (NumPy float64, or torch float64 for gradients)."""
  an = analyze(prog)
  consts: dict = {}
  lg = [render(o, i, "lg", consts) for i, o in enumerate(prog.ops)]
  ref_np = [render(o, i, "np", consts) for i, o in enumerate(prog.ops)]
  head = [f"# lucidgrad fuzz case seed {prog.seed if seed is None else seed}: {original_ops if original_ops is not None else prog.n_ops} ops"
          f"{f', minimised to {prog.n_ops}' if original_ops is not None else ''}. {m.kind}: {m.msg}",
          f"# reproduce the case: python -m lucidgrad.testing.fuzz --seed {prog.seed} --n 1{flags}",
          "import math", "import numpy as np", "from lucidgrad import Tensor, dtypes"]
  out = head + [f"{k} = {_array_src(v)}" for k, v in consts.items()] + lg
  show = [m.where] if m.kind != "grad" and m.where >= 0 else an.sinks()
  if m.kind == "grad":
    ls = an.loss_sinks()
    out += [f"w{s} = {_array_src(weights(prog, s, an.vals[s].shape))}" for s in ls]
    out += ["loss = " + " + ".join(f"(v{s} * Tensor(w{s}.astype(v{s}.dtype.name))).sum()" for s in ls), "loss.backward()",
            f"print('lucidgrad:', v{m.where}.grad.numpy())", "", "# the reference: torch, every float in float64",
            "import torch", "from lucidgrad.testing.fuzz import torch_ref", "torch.set_default_dtype(torch.float64)",
            "P, F = torch_ref('f64'), torch.nn.functional"]
    out += [render(o, i, "pt", {}) for i, o in enumerate(prog.ops)]
    out += ["loss = " + " + ".join(f"(t{s} * torch.tensor(w{s})).sum()" for s in ls),
            f"print('torch:    ', torch.autograd.grad(loss, [t{m.where}])[0].numpy())"]
    return "\n".join(out)
  sinks = an.sinks()
  realize = [f"Tensor.realize({', '.join(f'v{s}' for s in sinks)})  # all outputs in one realize, as the fuzzer runs them"] if len(sinks) > 1 else []
  if m.kind in ("value", "dtype", "shape"):
    out += realize + [f"print('lucidgrad:', repr(v{s}.numpy()))" for s in show]
    out += ["", "# the reference: NumPy, every float in float64"] + (["from lucidgrad.testing.fuzz import R  # NumPy with PyTorch's semantics"]
                                                                   if any("R." in c for c in ref_np) else [])
    out += ref_np + [f"print('numpy:    ', repr(np.asarray(n{s}).astype(np.{an.vals[s].dtype})))  # in PyTorch's dtype" for s in show]
  elif m.kind in ("crash",):
    out += realize + [f"print(v{s}.numpy())" for s in show] + ["# lucidgrad raises; NumPy and torch compute it"]
  return "\n".join(out)

# ---------------------------------------------------------------------------------------------------------------------
# Running many cases
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class Report:
  cases: int = 0
  ops: int = 0
  grad_cases: int = 0
  covered: set = field(default_factory=set)
  failing: dict = field(default_factory=dict)  # key -> [count, first seed, minimised repro]
  mismatch_cases: int = 0
  crash_cases: int = 0
  fuzzer_errors: int = 0  # exceptions in this file, not in lucidgrad
  seconds: float = 0.0
  def merge(self, o: Report):
    self.cases, self.ops, self.grad_cases = self.cases + o.cases, self.ops + o.ops, self.grad_cases + o.grad_cases
    self.mismatch_cases, self.crash_cases, self.fuzzer_errors = self.mismatch_cases + o.mismatch_cases, self.crash_cases + o.crash_cases, \
      self.fuzzer_errors + o.fuzzer_errors
    self.covered |= o.covered
    for k, (c, s, code) in o.failing.items():
      if k in self.failing: self.failing[k][0] += c
      else: self.failing[k] = [c, s, code]
  def summary(self, groups: frozenset = DEFAULT_GROUPS) -> str:
    kinds = [k for k, s in SPECS.items() if s.group in groups and s.group != "input"]
    missing = sorted(set(kinds) - self.covered)
    lines = [f"fuzz: {self.cases} cases in {self.seconds:.0f} s, {self.ops} ops ({self.grad_cases} cases with backward); "
             f"ops covered: {len(self.covered & set(kinds))} of {len(kinds)} kinds" +
             (f" (never drawn: {', '.join(missing)})" if 0 < len(missing) <= 25 else ""),
             f"  mismatches: {self.mismatch_cases} cases, crashes: {self.crash_cases} cases, distinct: {len(self.failing)}"
             + (f"; errors in the fuzzer itself: {self.fuzzer_errors}" if self.fuzzer_errors else "")]
    lines += [f"    {n}x {key} (first: --seed {s} --n 1)" for key, (n, s, _) in sorted(self.failing.items(), key=lambda kv: -kv[1][0])]
    return "\n".join(lines)

def _key(prog: Program, an: Analysis, m: Mismatch) -> str:
  """What counts as the same failure in a run's summary: the op kind of the value (for gradients: of the first output)."""
  w = an.loss_sinks()[0] if m.kind == "grad" and an.loss_sinks() else m.where
  kind = prog.ops[w].kind if 0 <= w < len(prog.ops) else ""
  return m.sig if m.kind == "crash" else f"{m.kind}:{kind}" if m.kind in ("value", "grad") else m.sig

def _run_chunk(kw: dict) -> Report: return run(**kw, log=lambda s: print(s, flush=True))

def run(n: int, seed: int = 0, max_ops: int = 30, groups: frozenset = DEFAULT_GROUPS, minimise_budget: float = 90, log=print,
        verbose: bool = False, avoid_known: bool = False, big: bool = False, progress: int = 0, chunk: int = 0,
        seen: frozenset = frozenset(), first: int | None = None) -> Report:
  """Cases seed, seed+1, ..., seed+n-1 (case s reproduces alone with --seed s --n 1); each distinct failure is minimised
  and printed once. chunk: run every `chunk` cases in a fresh process (each compiled kernel stays loaded in the process that
  ran it, and a process has room for about 13,000: vm.max_map_count)."""
  if chunk and n > chunk:
    total, ctx, t0 = Report(), multiprocessing.get_context("spawn"), time.time()
    kw = dict(max_ops=max_ops, groups=groups, minimise_budget=minimise_budget, verbose=verbose, avoid_known=avoid_known, big=big,
              progress=progress, first=seed)
    for s0 in range(seed, seed + n, chunk):
      with ctx.Pool(1) as pool: part = pool.apply(_run_chunk, (dict(kw, n=min(chunk, seed + n - s0), seed=s0, seen=frozenset(total.failing)),))
      total.merge(part)
      if progress: log(f"-- {total.cases} of {n} cases in {time.time() - t0:.0f} s: {total.mismatch_cases} with mismatches, {total.crash_cases} with crashes")
    total.seconds = time.time() - t0
    return total
  first = seed if first is None else first
  rep, t0 = Report(), time.time()
  flags = (f" --max-ops {max_ops}" if max_ops != 30 else "") + (f" --ops {groups_spec(groups)}" if groups != DEFAULT_GROUPS else "") + \
          (" --big" if big else "") + (" --avoid-known" if avoid_known else "")
  for s in range(seed, seed + n):
    if progress and s > seed and (s - first) % progress == 0:  # a chunk's parent reports at each chunk's end
      log(f"-- {s - first} cases (this process: {rep.cases} in {time.time() - t0:.0f} s, {rep.mismatch_cases} with mismatches, "
          f"{rep.crash_cases} with crashes)")
    try:
      prog, an = generate(s, max_ops, groups, avoid_known=avoid_known, big=big)
      rep.cases += 1
      rep.ops += prog.n_ops
      rep.covered |= {o.kind for o in prog.ops if o.kind != "input"}
      rep.grad_cases += bool(prog.grad and an.loss_sinks())
      bad, _ = check_program(prog, an)
    except Invalid as e:
      if verbose: log(f"[seed {s}] not judgeable after all: {e}")
      continue
    except Exception:
      rep.fuzzer_errors += 1
      log(f"\n[seed {s}] error in the fuzzer itself (not a lucidgrad bug):\n{traceback.format_exc()}")
      continue
    if verbose: log(f"[seed {s}] {prog.n_ops} ops: {'ok' if not bad else ', '.join(m.kind for m in bad)}")
    if not bad: continue
    rep.crash_cases += any(m.kind == "crash" for m in bad)
    rep.mismatch_cases += any(m.kind != "crash" for m in bad)
    known = known_issues(an, prog.ops)
    for m in bad:
      key = _key(prog, an, m) + (f" (known: {', '.join(sorted(known))})" if known else "")
      if key in rep.failing or key in seen:
        rep.failing.setdefault(key, [0, s, ""])[0] += 1
        continue
      log(f"\n[seed {s}] {m.kind}: {m.msg}" + (f"\n  the program runs into known bugs: {', '.join(sorted(known))}" if known else ""))
      try: small, sm = minimise(prog, m, minimise_budget, log=log) if minimise_budget > 0 else (prog, m)
      except Exception: small, sm = prog, m
      try: code = repro(small, sm, prog.n_ops, s, flags)
      except Exception as e: code = f"# (could not print the program: {type(e).__name__}: {e})"
      if sm.got is not None:
        show = lambda a: np.array2string(np.asarray(a), threshold=40).replace("\n", "\n#   ")
        code += f"\n# lucidgrad: {show(sm.got)}\n# reference: {show(sm.want)}"
      log(code)
      rep.failing[key] = [1, s, code]
  rep.seconds = time.time() - t0
  return rep

def groups_spec(groups: frozenset) -> str:
  """The --ops argument that gives these groups."""
  return ",".join([f"+{g}" for g in sorted(groups - DEFAULT_GROUPS)] + [f"-{g}" for g in sorted(DEFAULT_GROUPS - groups)])

def parse_groups(spec: str | None) -> frozenset:
  """'+setitem,-errors' adds and removes groups from the default; 'unary,binary' names the groups to use."""
  if not spec: return DEFAULT_GROUPS
  items = [x.strip() for x in spec.split(",") if x.strip()]
  base = set(DEFAULT_GROUPS) if all(x[0] in "+-" for x in items) else set()
  for x in items:
    name = x.lstrip("+-")
    if name != "all" and name not in GROUPS: raise SystemExit(f"unknown op group {name!r}; groups: {', '.join(GROUPS)}, all")
    names = set(GROUPS) if name == "all" else {name}
    base = base - names if x[0] == "-" else base | names
  return frozenset(base)

def main(argv=None):
  ap = argparse.ArgumentParser(prog="python -m lucidgrad.testing.fuzz", description=__doc__.split("\n\n")[0])
  ap.add_argument("--n", type=int, default=100, help="number of cases")
  ap.add_argument("--seed", type=int, default=0, help="seed of the first case (case k uses seed + k; --big/--ops/--max-ops must match to repeat one)")
  ap.add_argument("--max-ops", type=int, default=30, help="ops per program at most (inputs not counted)")
  ap.add_argument("--ops", default=None, help=f"op groups: '+setitem,+inplace' adds to the default, '-errors' removes; groups: {', '.join(GROUPS)}")
  ap.add_argument("--minimise-budget", type=float, default=90, help="seconds to shrink each distinct failure (0: print it whole)")
  ap.add_argument("--verbose", action="store_true", help="a line per case")
  ap.add_argument("--avoid-known", action="store_true", help="draw no program that runs into a bug listed in KNOWN")
  ap.add_argument("--big", action="store_true", help="some axes of 8, 16 or 32 (slower: fewer kernels repeat)")
  ap.add_argument("--progress", type=int, default=0, help="a line every N cases")
  ap.add_argument("--chunk", type=int, default=250, help="cases per fresh process (0: all in this one)")
  args = ap.parse_args(argv)
  groups = parse_groups(args.ops)
  rep = run(args.n, args.seed, args.max_ops, groups, args.minimise_budget, log=lambda s: print(s, flush=True), verbose=args.verbose,
            avoid_known=args.avoid_known, big=args.big, progress=args.progress, chunk=args.chunk)
  print("\n" + rep.summary(groups), flush=True)
  return 1 if rep.failing else 0

if __name__ == "__main__": sys.exit(main())
