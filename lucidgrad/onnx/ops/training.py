"""The optimiser ops of the ai.onnx.preview.training domain: Adagrad, Momentum (standard and Nesterov) and Adam, each
updating n tensors at once (inputs R, T, then the n X's, the n G's and the n states)."""
from __future__ import annotations
from lucidgrad.onnx.ops import onnx_op

_DOMAIN = "ai.onnx.preview.training"

def _groups(inputs, k: int) -> list[list]:
  n = (len(inputs) - 2) // k
  return [inputs[2 + i * n:2 + (i + 1) * n] for i in range(k)]

@onnx_op("Adagrad", 1, _DOMAIN)
def adagrad(ctx, inputs, attrs):
  r, t = inputs[0], inputs[1]
  xs, gs, hs = _groups(inputs, 3)
  lr = r / (t.cast(r.dtype) * attrs.get("decay_factor", 0.0) + 1)
  new_x, new_h = [], []
  for x, g, h in zip(xs, gs, hs):
    g = g + x * attrs.get("norm_coefficient", 0.0)
    h2 = h + g * g
    new_x.append(x - lr * g / (h2.sqrt() + attrs.get("epsilon", 0.0))); new_h.append(h2)
  return new_x + new_h

@onnx_op("Momentum", 1, _DOMAIN)
def momentum(ctx, inputs, attrs):
  r, t = inputs[0], inputs[1]
  xs, gs, vs = _groups(inputs, 3)
  alpha, beta, mode = attrs["alpha"], attrs["beta"], attrs["mode"]
  b = (t > 0).where(t.cast(r.dtype) * 0 + beta, t.cast(r.dtype) * 0 + 1)
  new_x, new_v = [], []
  for x, g, v in zip(xs, gs, vs):
    g = g + x * attrs["norm_coefficient"]
    v2 = v * alpha + b * g
    new_x.append(x - r * (v2 if mode == "standard" else g + v2 * alpha)); new_v.append(v2)
  return new_x + new_v

@onnx_op("Adam", 1, _DOMAIN)
def adam(ctx, inputs, attrs):
  r, t = inputs[0], inputs[1]
  xs, gs, vs, hs = _groups(inputs, 4)
  alpha, beta, eps = attrs.get("alpha", 0.9), attrs.get("beta", 0.999), attrs.get("epsilon", 1e-6)
  tf = t.cast(r.dtype)
  lr = (t > 0).where(r * (1 - beta ** tf).sqrt() / (1 - alpha ** tf), r)
  new_x, new_v, new_h = [], [], []
  for x, g, v, h in zip(xs, gs, vs, hs):
    g = g + x * attrs.get("norm_coefficient", 0.0)
    v2, h2 = v * alpha + g * (1 - alpha), h * beta + g * g * (1 - beta)
    x2 = x - lr * v2 / (h2.sqrt() + eps)
    new_x.append(x2 * (1 - attrs.get("norm_coefficient_post", 0.0))); new_v.append(v2); new_h.append(h2)
  return new_x + new_v + new_h
