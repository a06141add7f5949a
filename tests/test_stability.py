"""Numerics on purpose: sigmoid, tanh, softplus, logsigmoid, gelu, log_softmax, logsumexp and softmax, and their
gradients, stay finite and right at +-1e4 and +-inf (PyTorch's values where PyTorch is finite, the limits where it
gives NaN), in float16, float32 and float64."""
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lucidgrad import Tensor, dtypes

inf = math.inf
X = np.array([-inf, -1e4, -100.0, -20.0, -1.0, -1e-6, 0.0, 1e-6, 1.0, 20.0, 100.0, 1e4, inf])
TORCH_DT = {dtypes.float16: torch.float16, dtypes.float32: torch.float32, dtypes.float64: torch.float64}
TOL = {dtypes.float16: (2e-3, 1e-5), dtypes.float32: (2e-6, 1e-6), dtypes.float64: (1e-12, 1e-15)}  # float32 erf: 1.5e-7 absolute

def value_and_grad(fn, x: np.ndarray, dt, w: np.ndarray):
  t = Tensor(x, dtype=dt, requires_grad=True)
  out = fn(t)
  (out * Tensor(w, dtype=out.dtype)).sum().backward()
  return out.numpy().astype(np.float64), t.grad.numpy().astype(np.float64)

def torch_value_and_grad(fn, x: np.ndarray, dt, w: np.ndarray):
  t = torch.tensor(x, dtype=TORCH_DT[dt], requires_grad=True)
  out = fn(t)
  (out * torch.tensor(w, dtype=out.dtype)).sum().backward()
  return out.detach().double().numpy(), t.grad.double().numpy()

ACTS = {
  "sigmoid": (lambda t: t.sigmoid(), torch.sigmoid), "tanh": (lambda t: t.tanh(), torch.tanh),
  "softplus": (lambda t: t.softplus(), F.softplus), "softplus_beta": (lambda t: t.softplus(0.5, 8.0), lambda t: F.softplus(t, 0.5, 8.0)),
  "logsigmoid": (lambda t: t.logsigmoid(), F.logsigmoid), "gelu": (lambda t: t.gelu(), F.gelu),
  "gelu_tanh": (lambda t: t.gelu("tanh"), lambda t: F.gelu(t, approximate="tanh")),
  "elu": (lambda t: t.elu(), F.elu), "selu": (lambda t: t.selu(), F.selu), "celu": (lambda t: t.celu(0.5), lambda t: F.celu(t, 0.5)),
  "hardswish": (lambda t: t.hardswish(), F.hardswish), "hardsigmoid": (lambda t: t.hardsigmoid(), F.hardsigmoid),
}
# where PyTorch gives NaN (-inf * 0 or inf - inf), the limits: gelu(-inf) = 0 with slope 0, gelu'(inf) = 1
LIMITS = {("gelu", -inf): (0.0, 0.0), ("gelu", inf): (inf, 1.0), ("gelu_tanh", -inf): (0.0, 0.0), ("gelu_tanh", inf): (inf, 1.0),
          ("hardswish", -inf): (0.0, 0.0)}

@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64, dtypes.float16], ids=str)
def test_activation_at_extremes(name, dt):
  fn, tfn = ACTS[name]
  x = X.astype(dt.np)
  w = np.ones(len(X))
  out, grad = value_and_grad(fn, x, dt, w)
  ref, rgrad = torch_value_and_grad(tfn, x, dt, w)
  for i, v in enumerate(x.astype(np.float64)):
    if (name, v) in LIMITS: ref[i], rgrad[i] = LIMITS[(name, v)]
  assert np.isfinite(grad).all(), f"{name} gradient {grad} at {x}"
  assert not np.isnan(out).any(), f"{name} values {out} at {x}"
  rtol, atol = TOL[dt]
  np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol)
  # PyTorch's hardsigmoid backward multiplies by a float32 1/6, also in float64
  np.testing.assert_allclose(grad, rgrad, rtol=1e-7 if name == "hardsigmoid" and dt == dtypes.float64 else rtol, atol=atol)

def test_the_named_limits():
  """The values the issue names, exactly."""
  def at(fn, v):
    out, g = value_and_grad(fn, np.array([v], np.float32), dtypes.float32, np.ones(1))
    return out[0], g[0]
  assert at(lambda t: t.sigmoid(), -inf) == (0.0, 0.0) and at(lambda t: t.sigmoid(), inf) == (1.0, 0.0)
  assert at(lambda t: t.logsigmoid(), -1e4) == (-1e4, 1.0)
  assert at(lambda t: t.softplus(), 1e4) == (1e4, 1.0)
  assert at(lambda t: t.tanh(), inf) == (1.0, 0.0) and at(lambda t: t.tanh(), -inf) == (-1.0, 0.0)
  assert at(lambda t: t.logsigmoid(), 1e4)[1] == 0.0 and at(lambda t: t.softplus(), -1e4) == (0.0, 0.0)

def test_small_inputs_keep_their_precision():
  """Near 0, tanh(x) ~ x and softplus(-20) ~ 2e-9 keep their relative precision (no 1 - e^-2x or log(1 + tiny))."""
  x = np.array([1e-8, -3e-7, 1e-30, -20.0, -50.0], np.float32)
  for fn, tfn in [(lambda t: t.tanh(), torch.tanh), (lambda t: t.softplus(), F.softplus), (lambda t: t.sigmoid(), torch.sigmoid),
                  (lambda t: t.logsigmoid(), F.logsigmoid), (lambda t: t.elu(), F.elu)]:
    np.testing.assert_allclose(fn(Tensor(x)).numpy(), tfn(torch.tensor(x)).numpy(), rtol=2e-6, atol=0)

ROWS = np.array([[1e4, 0.0, -1e4], [-inf, 0.0, 1.0], [-1e4, -1e4, -inf], [-inf, -inf, 2.0], [1e4, 1e4, 1e4]])

@pytest.mark.parametrize("name", ["log_softmax", "softmax", "logsumexp"])
@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64, dtypes.float16], ids=str)
def test_softmax_family_at_extremes(name, dt):
  fn = {"log_softmax": lambda t: t.log_softmax(-1), "softmax": lambda t: t.softmax(-1), "logsumexp": lambda t: t.logsumexp(-1)}[name]
  tfn = {"log_softmax": lambda t: torch.log_softmax(t, -1), "softmax": lambda t: torch.softmax(t, -1),
         "logsumexp": lambda t: torch.logsumexp(t, -1)}[name]
  x = ROWS.astype(dt.np)
  w = np.random.default_rng(0).standard_normal(ROWS.shape if name != "logsumexp" else ROWS.shape[:1])
  out, grad = value_and_grad(fn, x, dt, w)
  ref, rgrad = torch_value_and_grad(tfn, x, dt, w)
  if name == "logsumexp":  # the exact gradient, softmax: PyTorch's exp(x - logsumexp) inherits the rounding of the result
    e = np.exp(x.astype(np.float64) - x.astype(np.float64).max(-1, keepdims=True))
    rgrad = w[:, None] * e / e.sum(-1, keepdims=True)
  assert np.isfinite(grad).all(), grad
  rtol, atol = TOL[dt]
  np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol)
  np.testing.assert_allclose(grad, rgrad, rtol=rtol, atol=atol * 10)

def test_softmax_family_with_inf_rows():
  """+inf entries: logsumexp is inf; a row of -inf: logsumexp -inf, log_softmax NaN (as PyTorch)."""
  x = np.array([[inf, 0.0, 1.0], [-inf, -inf, -inf]], np.float32)
  np.testing.assert_array_equal(Tensor(x).logsumexp(-1).numpy(), [inf, -inf])
  assert np.isnan(Tensor(x).log_softmax(-1).numpy()[1]).all()
  np.testing.assert_array_equal(Tensor(x[:1]).logsumexp(None).numpy(), inf)
