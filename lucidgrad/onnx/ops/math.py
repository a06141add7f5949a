"""ONNX elementwise math and activations: unary and binary arithmetic, the variadic Max/Min/Sum/Mean, Clip, and the
activation functions, each keeping the input's dtype as ONNX does."""
from __future__ import annotations
import math
from functools import reduce
from lucidgrad import Tensor, dtypes
from lucidgrad.onnx.ops import onnx_op
from lucidgrad.onnx.ops.common import given, const_like, same_dtype

def _unary(name: str, fn, since: int = 1, float_only: bool = False):
  """Register fn(x) as the elementwise op `name`, result in x's dtype."""
  def op(ctx, inputs, attrs):
    x = inputs[0]
    if float_only and not x.dtype.is_float(): raise NotImplementedError(f"ONNX {name}: input dtype {x.dtype} (a float type is required)")
    return [same_dtype(fn(x), x)]
  onnx_op(name, since)(op)

for _name, _fn in {"Abs": Tensor.abs, "Neg": Tensor.neg, "Ceil": Tensor.ceil, "Floor": Tensor.floor, "Round": Tensor.round, "Sign": Tensor.sign,
                   "Relu": Tensor.relu}.items():
  _unary(_name, _fn)
for _name, _fn in {"Sqrt": Tensor.sqrt, "Exp": Tensor.exp, "Log": Tensor.log, "Sin": Tensor.sin, "Cos": Tensor.cos, "Tan": Tensor.tan,
                   "Asin": Tensor.asin, "Acos": Tensor.acos, "Atan": Tensor.atan, "Sinh": Tensor.sinh, "Cosh": Tensor.cosh,
                   "Asinh": Tensor.asinh, "Acosh": Tensor.acosh, "Atanh": Tensor.atanh, "Sigmoid": Tensor.sigmoid,
                   "Tanh": Tensor.tanh, "Reciprocal": Tensor.reciprocal, "Softsign": Tensor.softsign, "Mish": Tensor.mish,
                   "HardSwish": Tensor.hardswish}.items():
  _unary(_name, _fn, float_only=True)
_unary("Softplus", lambda x: x.softplus(), float_only=True)

@onnx_op("Identity")
def identity(ctx, inputs, attrs): return [inputs[0]]

def _binary(name: str, fn):
  def op(ctx, inputs, attrs):
    a, b = inputs
    return [same_dtype(fn(a, b), a)]
  onnx_op(name)(op)

_binary("Add", lambda a, b: a + b)
_binary("Sub", lambda a, b: a - b)
_binary("Mul", lambda a, b: a * b)

@onnx_op("Div")
def div(ctx, inputs, attrs):
  a, b = inputs
  return [same_dtype(a.div(b, rounding_mode="trunc") if a.dtype.is_int() else a / b, a)]

@onnx_op("Pow")
def pow_(ctx, inputs, attrs):
  a, b = inputs
  if a.dtype.is_int() and b.dtype.is_float(): return [(a.cast(b.dtype) ** b).cast(a.dtype)]
  return [same_dtype(a ** (b if b.dtype == a.dtype or a.dtype.is_float() else b.cast(a.dtype)), a)]

@onnx_op("Mod")
def mod(ctx, inputs, attrs):
  a, b = inputs
  if attrs.get("fmod", 0): return [same_dtype(a.fmod(b), a)]
  return [same_dtype(a.remainder(b), a)]

def _variadic(name: str, fn, mean: bool = False):
  def op(ctx, inputs, attrs):
    xs = [x for x in inputs if x is not None]
    out = reduce(fn, xs)
    return [same_dtype(out / len(xs) if mean else out, xs[0])]
  onnx_op(name)(op)

_variadic("Max", Tensor.maximum)
_variadic("Min", Tensor.minimum)
_variadic("Sum", lambda a, b: a + b)
_variadic("Mean", lambda a, b: a + b, mean=True)

@onnx_op("Clip")
def clip_v1(ctx, inputs, attrs):
  x = inputs[0]
  return [x.clip(attrs.get("min", -math.inf), attrs.get("max", math.inf))]

@onnx_op("Clip", 11)
def clip(ctx, inputs, attrs):
  x, lo, hi = inputs[0], given(inputs, 1), given(inputs, 2)
  if lo is not None: x = x.maximum(lo.cast(x.dtype))
  if hi is not None: x = x.minimum(hi.cast(x.dtype))
  return [x]

def _act(name: str, fn, defaults: dict, since: int = 1):
  """Register an activation fn(x, **attrs), its attributes' defaults given."""
  def op(ctx, inputs, attrs):
    x = inputs[0]
    return [same_dtype(fn(x, **(defaults | {k: v for k, v in attrs.items() if k in defaults})), x)]
  onnx_op(name, since)(op)

def _c(x: Tensor, v: float) -> Tensor: return const_like(x, v)

_act("Elu", lambda x, alpha: (x > 0).where(x, _c(x, alpha) * (x.exp() - 1)), {"alpha": 1.0})
_act("Selu", lambda x, alpha, gamma: _c(x, gamma) * (x > 0).where(x, _c(x, alpha) * (x.exp() - 1)),
     {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875})
_act("Celu", lambda x, alpha: x.relu() + (_c(x, 0) .minimum(_c(x, alpha) * ((x / _c(x, alpha)).exp() - 1))), {"alpha": 1.0})
_act("LeakyRelu", lambda x, alpha: (x >= 0).where(x, x * _c(x, alpha)), {"alpha": 0.01})
_act("ThresholdedRelu", lambda x, alpha: (x > _c(x, alpha)).where(x, _c(x, 0)), {"alpha": 1.0})
_act("HardSigmoid", lambda x, alpha, beta: (x * _c(x, alpha) + _c(x, beta)).clip(0, 1), {"alpha": 0.2, "beta": 0.5})
_act("Shrink", lambda x, lambd, bias: (x < _c(x, -lambd)).where(x + _c(x, bias), (x > _c(x, lambd)).where(x - _c(x, bias), _c(x, 0))),
     {"lambd": 0.5, "bias": 0.0})
_act("Swish", lambda x, alpha: x * (x * _c(x, alpha)).sigmoid(), {"alpha": 1.0}, since=24)

@onnx_op("Gelu", 20)
def gelu(ctx, inputs, attrs):
  x = inputs[0]
  return [x.gelu(approximate=attrs.get("approximate", "none"))]

@onnx_op("PRelu")
def prelu(ctx, inputs, attrs):
  x, slope = inputs
  # before opset 7 a slope of one value per channel applies along axis 1 (NCHW), not numpy-broadcast from the last axis
  if ctx.opset < 7 and slope.ndim == 1 and x.ndim >= 2 and slope.shape[0] == x.shape[1] != 1:
    slope = slope.reshape((x.shape[1],) + (1,) * (x.ndim - 2))
  return [(x >= 0).where(x, x * slope.cast(x.dtype))]

@onnx_op("Erf")  # integer inputs are allowed too: computed in float, cast back
def erf(ctx, inputs, attrs):
  x = inputs[0]
  return [same_dtype((x if x.dtype.is_float() else x.float()).erf(), x)]

@onnx_op("SwiGLU", 28)
def swiglu(ctx, inputs, attrs):
  a, b = inputs
  if a.shape != b.shape: raise ValueError(f"ONNX SwiGLU: A {a.shape} and B {b.shape} must have one shape")
  return [a * (a * attrs.get("alpha", 1.0)).sigmoid() * b]

@onnx_op("Det", 11)
def det(ctx, inputs, attrs):
  # Gaussian elimination with partial pivoting, unrolled over the (static) matrix size, in float64
  x = inputs[0]
  n = x.shape[-1]
  if x.ndim < 2 or x.shape[-2] != n: raise ValueError(f"ONNX Det: input must be (..., n, n), got {x.shape}")
  a, d = x.cast(dtypes.float64), None
  for k in range(n):
    col = a[..., k:, k].abs()
    p = col.argmax(-1, keepdim=True) + k                                    # the pivot row
    rows = Tensor.arange(n, device=x.device)
    perm = (rows == k).where(p, (rows == p).where(Tensor.full_like(p, k), rows))  # swap rows k and p
    a = a.gather(-2, perm.unsqueeze(-1).expand(*a.shape))
    sign = (p.squeeze(-1) == k).where(Tensor.ones(*a.shape[:-2], dtype=dtypes.float64, device=x.device), -1.0)
    piv = a[..., k, k]
    d = sign * piv if d is None else d * sign * piv
    safe = (piv == 0).where(Tensor.ones_like(piv), piv)
    factor = (a[..., :, k] / safe.unsqueeze(-1)) * (rows > k)
    a = a - factor.unsqueeze(-1) * a[..., k:k + 1, :]
  return [d.cast(x.dtype)]
