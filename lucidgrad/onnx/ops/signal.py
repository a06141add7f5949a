"""ONNX signal ops: DFT (forward, inverse, one-sided, irfft), STFT, the Hann/Hamming/Blackman windows and
MelWeightMatrix. A DFT is two matmuls with cos/sin tables built on the device from arange."""
from __future__ import annotations
import math
import numpy as np
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import axis as norm_axis, given, onnx_dtype, scalar

def _tables(n_in: int, n_out: int, n: int, sign: float, dt, device) -> tuple[Tensor, Tensor]:
  """cos and sign*sin of 2*pi*t*k/n, (n_in, n_out): the phase reduced mod n in integers first, for accuracy."""
  t, k = Tensor.arange(n_in, dtype=dtypes.int64, device=device).reshape(n_in, 1), Tensor.arange(n_out, dtype=dtypes.int64, device=device).reshape(1, n_out)
  ang = ((t * k) % n).cast(dtypes.float64) * (2 * math.pi / n)
  return ang.cos().cast(dt), (ang.sin() * sign).cast(dt)

def _fit(x: Tensor, n: int) -> Tensor:
  """x's last axis truncated or zero-padded to n."""
  L = x.shape[-1]
  return x[..., :n] if L >= n else x.pad([(0, 0)] * (x.ndim - 1) + [(0, n - L)])

def dft(x: Tensor, n: int | None, ax: int, inverse: bool, onesided: bool) -> Tensor:
  """ONNX DFT of x (..., signal..., 1 or 2) along ax; the result's last axis is (real, imag), or (real,) for irfft."""
  ax = norm_axis(ax, x.ndim - 1, "DFT")
  re = x[..., 0].movedim(ax, -1)
  im = x[..., 1].movedim(ax, -1) if x.shape[-1] == 2 else None
  if n is None: n = 2 * (re.shape[-1] - 1) if inverse and onesided else re.shape[-1]
  dt = x.dtype
  if inverse and onesided:  # irfft: the Hermitian half gives a real signal of length n
    m = n // 2 + 1
    re, im = _fit(re, m), (_fit(im, m) if im is not None else None)
    c, s = _tables(m, n, n, 1.0, dt, x.device)
    w = Tensor(np.array([1.0] + [2.0] * (m - 1 - (n % 2 == 0)) + ([1.0] if n % 2 == 0 else []), dtype=dt.np), device=x.device).reshape(m, 1)
    out = re @ (c * w) - (im @ (s * w) if im is not None else 0)
    return (out / n).movedim(-1, ax).unsqueeze(-1)
  re, im = _fit(re, n), (_fit(im, n) if im is not None else None)
  n_out = n // 2 + 1 if onesided and not inverse else n
  c, s = _tables(n, n_out, n, 1.0 if inverse else -1.0, dt, x.device)
  out_re = re @ c - (im @ s if im is not None else 0)
  out_im = re @ s + (im @ c if im is not None else 0)
  if inverse: out_re, out_im = out_re / n, out_im / n
  return Tensor.stack(out_re.movedim(-1, ax), out_im.movedim(-1, ax), dim=-1)

@onnx_op("DFT", 17)
def dft_v17(ctx, inputs, attrs):
  n = int(scalar(ctx, t)) if (t := given(inputs, 1)) is not None else None
  return [dft(inputs[0], n, attrs.get("axis", 1), bool(attrs.get("inverse", 0)), bool(attrs.get("onesided", 0)))]

@onnx_op("DFT", 20)
def dft_v20(ctx, inputs, attrs):
  n = int(scalar(ctx, t)) if (t := given(inputs, 1)) is not None else None
  ax = int(scalar(ctx, t)) if (t := given(inputs, 2)) is not None else -2
  x = inputs[0]
  return [dft(x, n, ax if ax >= 0 else ax + x.ndim, bool(attrs.get("inverse", 0)), bool(attrs.get("onesided", 0)))]

@onnx_op("STFT", 17)
def stft(ctx, inputs, attrs):
  x, step, window, length = inputs[0], int(scalar(ctx, inputs[1])), given(inputs, 2), given(inputs, 3)
  fl = int(scalar(ctx, length)) if length is not None else window.shape[0]
  frames = x.unfold(1, fl, step)                          # (B, frames, c, fl)
  frames = frames.movedim(2, -1)                          # (B, frames, fl, c)
  if window is not None: frames = frames * window.cast(x.dtype).reshape(fl, 1)
  return [dft(frames, fl, 2, False, bool(attrs.get("onesided", 1)))]

def _window(name: str, fn):
  def op(ctx, inputs, attrs):
    size = int(scalar(ctx, inputs[0]))
    n = size if attrs.get("periodic", 1) else size - 1
    k = Tensor.arange(size, dtype=dtypes.float64, device=ctx.device) * (2 * math.pi / n)
    return [fn(k).cast(onnx_dtype(attrs.get("output_datatype", 1), name))]
  onnx_op(name, 17)(op)

_window("HannWindow", lambda k: 0.5 - 0.5 * k.cos())
_window("HammingWindow", lambda k: 25 / 46 - 21 / 46 * k.cos())
_window("BlackmanWindow", lambda k: 0.42 - 0.5 * k.cos() + 0.08 * (2 * k).cos())

@onnx_op("MelWeightMatrix", 17)
def mel_weight_matrix(ctx, inputs, attrs):
  # a table of a few scalars (no tensor data): built on the host like a constant
  bins, n, rate = (int(scalar(ctx, t)) for t in inputs[:3])
  lo, hi = (float(scalar(ctx, t)) for t in inputs[3:5])
  mel = lambda f: 2595 * math.log10(1 + f / 700)
  step = (mel(hi) - mel(lo)) / (bins + 2)
  edges = [int(((n + 1) * (700 * (10 ** ((mel(lo) + i * step) / 2595) - 1))) // rate) for i in range(bins + 2)]
  out = np.zeros((n // 2 + 1, bins))
  for i in range(bins):
    left, mid, right = edges[i:i + 3]
    if mid == left: out[mid, i] = 1
    else: out[left:mid + 1, i] = (np.arange(left, mid + 1) - left) / (mid - left)
    if right > mid: out[mid:right, i] = (right - np.arange(mid, right)) / (right - mid)
  dt = onnx_dtype(attrs.get("output_datatype", 1), "MelWeightMatrix")
  return [Tensor(out, device=ctx.device).cast(dt)]
