"""ONNX random ops: RandomNormal/RandomUniform (and *Like), Bernoulli, Multinomial. Their values come from lucidgrad's
generator, so only shapes, dtypes and distributions match another runtime; a `seed` attribute reseeds the generator."""
from __future__ import annotations
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import onnx_dtype

def _seed(attrs) -> None:
  if "seed" in attrs: Tensor.manual_seed(int(attrs["seed"]))

def _normal(shape, attrs, dt, device) -> Tensor:
  _seed(attrs)
  return (Tensor.randn(*shape, dtype=dtypes.float32, device=device) * attrs.get("scale", 1.0) + attrs.get("mean", 0.0)).cast(dt)

def _uniform(shape, attrs, dt, device) -> Tensor:
  _seed(attrs)
  lo, hi = attrs.get("low", 0.0), attrs.get("high", 1.0)
  return (Tensor.rand(*shape, dtype=dtypes.float32, device=device) * (hi - lo) + lo).cast(dt)

@onnx_op("RandomNormal")
def random_normal(ctx, inputs, attrs): return [_normal(attrs["shape"], attrs, onnx_dtype(attrs.get("dtype", 1), "RandomNormal"), ctx.device)]

@onnx_op("RandomUniform")
def random_uniform(ctx, inputs, attrs): return [_uniform(attrs["shape"], attrs, onnx_dtype(attrs.get("dtype", 1), "RandomUniform"), ctx.device)]

@onnx_op("RandomNormalLike")
def random_normal_like(ctx, inputs, attrs):
  x = inputs[0]
  return [_normal(x.shape, attrs, onnx_dtype(attrs["dtype"], "RandomNormalLike") if "dtype" in attrs else x.dtype, x.device)]

@onnx_op("RandomUniformLike")
def random_uniform_like(ctx, inputs, attrs):
  x = inputs[0]
  return [_uniform(x.shape, attrs, onnx_dtype(attrs["dtype"], "RandomUniformLike") if "dtype" in attrs else x.dtype, x.device)]

@onnx_op("Bernoulli", 15)
def bernoulli(ctx, inputs, attrs):
  p = inputs[0]
  _seed(attrs)
  dt = onnx_dtype(attrs["dtype"], "Bernoulli") if "dtype" in attrs else p.dtype
  return [(Tensor.rand(*p.shape, dtype=dtypes.float32, device=p.device) < p.cast(dtypes.float32)).cast(dt)]

@onnx_op("Multinomial", 7)
def multinomial(ctx, inputs, attrs):
  logits = inputs[0]
  _seed(attrs)
  probs = logits.cast(dtypes.float32).softmax(-1)
  return [probs.multinomial(attrs.get("sample_size", 1), replacement=True).cast(onnx_dtype(attrs.get("dtype", 6), "Multinomial"))]
