"""Gradients of every differentiable Tensor op, held to PyTorch in float64 and to central finite differences of
lucidgrad's own forward; higher orders; and how backward, .grad, detach and realized graphs behave."""
import gc
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lucidgrad import Tensor, dtypes
from lucidgrad.uop.ops import _Interned

f64 = dtypes.float64

def T(a, requires_grad=True) -> Tensor: return Tensor(np.asarray(a, np.float64), dtype=f64, requires_grad=requires_grad)
def TT(a) -> torch.Tensor: return torch.tensor(np.asarray(a, np.float64), requires_grad=True)

def fd_directional(fn, xs, vs, h=1e-6) -> float:
  """d/dt fn(xs + t vs) at t = 0 by central differences, fn being a scalar function of float64 Tensors; lucidgrad's own
  forward is evaluated, so this holds a gradient to its forward and not to another library's definition."""
  def at(t): return fn(*[Tensor(x + t * v, dtype=f64) for x, v in zip(xs, vs)]).item()
  return (at(h) - at(-h)) / (2 * h)

def check_grad(fn, *xs, tfn=None, fd=True, rtol=1e-7, atol=1e-10, seed=0):
  """The gradient of sum(w * fn(xs)) for a random w, against torch.autograd.grad (tfn, default fn, on torch tensors) and,
  with fd, against finite differences along two random directions."""
  rng = np.random.default_rng(seed)
  xs = [np.asarray(x, np.float64) for x in xs]
  ts = [T(x) for x in xs]
  out = fn(*ts)
  w = rng.standard_normal(out.shape)
  grads = [g.numpy() for g in out.gradient(*ts, gradient=Tensor(w, dtype=f64))]
  tts = [TT(x) for x in xs]
  tout = (tfn or fn)(*tts)
  assert tuple(tout.shape) == out.shape, f"shape {out.shape}, torch gives {tuple(tout.shape)}"
  tgrads = torch.autograd.grad(tout, tts, torch.tensor(w))
  for i, (g, tg) in enumerate(zip(grads, tgrads)):
    assert g.shape == xs[i].shape and g.dtype == np.float64
    np.testing.assert_allclose(g, tg.numpy(), rtol=rtol, atol=atol, err_msg=f"gradient of input {i} against torch")
  if not fd: return
  for _ in range(2):
    vs = [rng.standard_normal(x.shape) for x in xs]
    num = fd_directional(lambda *a: (fn(*a) * Tensor(w, dtype=f64)).sum(), xs, vs)
    ana = sum(float((g * v).sum()) for g, v in zip(grads, vs))
    assert abs(num - ana) <= 1e-7 * max(1.0, abs(ana)), f"finite differences give {num}, the gradient {ana}"

_rng = np.random.default_rng(1)  # the tables below draw from it at import; each test draws from a fresh one (see below)
def rn(*shape): return _rng.standard_normal(shape)
def pos(*shape): return np.abs(_rng.standard_normal(shape)) + 0.5
def away(*shape):
  """Random values at least 0.1 from 0, -1 and 1, so that no kink of abs, relu, sign or clip is within reach of a difference step."""
  x = _rng.uniform(-2, 2, shape)
  for k in (-1, 0, 1): x = np.where(np.abs(x - k) < 0.1, k + 0.3, x)
  return x

A, B = rn(3, 4), rn(3, 4)

@pytest.fixture(autouse=True)
def fresh_rng():
  """Inputs drawn inside a test do not depend on which tests ran before it in the same worker."""
  global _rng
  saved, _rng = _rng, np.random.default_rng(2)
  yield
  _rng = saved

ELEMENTWISE = {
  "add": (lambda a, b: a + b, None, [A, B]),
  "add_broadcast": (lambda a, b: a + b, None, [A, rn(4)]),
  "sub": (lambda a, b: a - b, None, [A, rn(3, 1)]),
  "rsub": (lambda a: 2.5 - a, None, [A]),
  "mul": (lambda a, b: a * b, None, [A, B]),
  "mul_broadcast": (lambda a, b: a * b, None, [rn(2, 1, 4), rn(3, 1)]),
  "div": (lambda a, b: a / b, None, [A, pos(3, 4)]),
  "rdiv": (lambda a: 3.0 / a, None, [pos(3, 4)]),
  "pow": (lambda a, b: a ** b, None, [pos(3, 4), B]),
  "pow_int": (lambda a: a ** 3, None, [A]),
  "pow_neg_int": (lambda a: a ** -2, None, [away(3, 4)]),
  "pow_half": (lambda a: a ** 0.5, None, [pos(3, 4)]),
  "rpow": (lambda a: 2.0 ** a, None, [A]),
  "neg": (lambda a: -a, None, [A]),
  "exp": (lambda a: a.exp(), None, [A]),
  "exp2": (lambda a: a.exp2(), None, [A]),
  "log": (lambda a: a.log(), None, [pos(3, 4)]),
  "log2": (lambda a: a.log2(), None, [pos(3, 4)]),
  "sqrt": (lambda a: a.sqrt(), None, [pos(3, 4)]),
  "rsqrt": (lambda a: a.rsqrt(), None, [pos(3, 4)]),
  "sin": (lambda a: a.sin(), None, [A * 3]),
  "cos": (lambda a: a.cos(), None, [A * 3]),
  "tan": (lambda a: a.tan(), None, [A * 0.5]),
  "abs": (lambda a: a.abs(), None, [away(3, 4)]),
  "sign": (lambda a: a.sign() * a, None, [away(3, 4)]),
  "reciprocal": (lambda a: a.reciprocal(), None, [away(3, 4)]),
  "relu": (lambda a: a.relu(), None, [away(3, 4)]),
  "sigmoid": (lambda a: a.sigmoid(), None, [A * 3]),
  "tanh": (lambda a: a.tanh(), None, [A * 2]),
  "gelu": (lambda a: a.gelu(), F.gelu, [A * 2]),
  "gelu_tanh": (lambda a: a.gelu(approximate="tanh"), lambda a: F.gelu(a, approximate="tanh"), [A * 2]),
  "silu": (lambda a: a.silu(), F.silu, [A * 3]),
  "maximum": (lambda a, b: a.maximum(b), None, [A, B]),
  "minimum": (lambda a, b: a.minimum(b), None, [A, B]),
  "maximum_scalar": (lambda a: a.maximum(0.5), lambda a: a.clamp(min=0.5), [away(3, 4)]),
  "where": (lambda a, b: (a > b).where(a * 2, b), lambda a, b: torch.where(a > b, a * 2, b), [A, B]),
  "where_broadcast": (lambda a, b: (a > 0).where(a, b), lambda a, b: torch.where(a > 0, a, b), [A, rn(4)]),
  "clip": (lambda a: a.clip(-1, 1), lambda a: a.clip(-1, 1), [away(3, 4)]),
  "clip_min_only": (lambda a: a.clip(-0.5), lambda a: a.clip(-0.5), [away(3, 4)]),
}

@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_gradient(name):
  fn, tfn, xs = ELEMENTWISE[name]
  check_grad(fn, *xs, tfn=tfn)

X3 = rn(2, 3, 4)
MOVEMENT = {
  "reshape": (lambda a: a.reshape(4, 6), None, [X3]),
  "reshape_infer": (lambda a: a.reshape(-1, 2), None, [X3]),
  "permute": (lambda a: a.permute(2, 0, 1), None, [X3]),
  "transpose": (lambda a: a.transpose(0, 2), None, [X3]),
  "T": (lambda a: a.T, lambda a: a.permute(2, 1, 0), [X3]),
  "expand": (lambda a: a.expand(2, 3, 3, 4), None, [rn(3, 1, 4)]),
  "pad": (lambda a: a.pad(((1, 0), (0, 2), (2, 1))), lambda a: F.pad(a, (2, 1, 0, 2, 1, 0)), [X3]),
  "pad_flat_value": (lambda a: a.pad((1, 2), value=3.0), lambda a: F.pad(a, (1, 2), value=3.0), [X3]),
  "pad_negative": (lambda a: a.pad((-1, 2, 1, -1)), lambda a: F.pad(a, (-1, 2, 1, -1)), [X3]),
  "shrink": (lambda a: a.shrink(((1, 2), None, (1, 3))), lambda a: a[1:2, :, 1:3], [X3]),
  "flip": (lambda a: a.flip((0, 2)), lambda a: a.flip((0, 2)), [X3]),
  "squeeze": (lambda a: a.squeeze(), None, [rn(3, 1, 4, 1)]),
  "squeeze_dim": (lambda a: a.squeeze(1), None, [rn(3, 1, 4, 1)]),
  "unsqueeze": (lambda a: a.unsqueeze(-2), None, [X3]),
  "flatten": (lambda a: a.flatten(1), None, [X3]),
  "getitem_int_slice": (lambda a: a[1, :, 1:3], None, [X3]),
  "getitem_steps": (lambda a: a[:, ::2, 1::2], None, [rn(2, 5, 7)]),
  # torch refuses negative steps: the same elements through flip
  "getitem_negative_steps": (lambda a: a[::-1, 4:0:-2, ::-3], lambda a: a.flip(0)[:, 1:5].flip(1)[:, ::2].flip(2)[:, :, ::3], [rn(2, 5, 7)]),
  "getitem_none_ellipsis": (lambda a: a[None, ..., -1], None, [X3]),
  "cat": (lambda a, b, c: a.cat(b, c, dim=1), lambda a, b, c: torch.cat([a, b, c], dim=1), [rn(2, 1, 3), rn(2, 3, 3), rn(2, 2, 3)]),
  "cat_last": (lambda a, b: a.cat(b, dim=-1), lambda a, b: torch.cat([a, b], dim=-1), [rn(2, 3), rn(2, 4)]),
}

@pytest.mark.parametrize("name", MOVEMENT)
def test_movement_gradient(name):
  fn, tfn, xs = MOVEMENT[name]
  check_grad(fn, *xs, tfn=tfn)

Z = rn(3, 4)
Z[0, 1] = Z[2, 0] = Z[2, 3] = 0.0  # row 0 holds one zero, row 2 two
REDUCE = {
  "sum": (lambda a: a.sum(1), None, [X3], True),
  "sum_all": (lambda a: a.sum(), None, [X3], True),
  "sum_keepdim": (lambda a: a.sum((0, 2), keepdim=True), lambda a: a.sum((0, 2), keepdim=True), [X3], True),
  "max": (lambda a: a.amax(1), lambda a: a.amax(1), [X3], True),
  "max_dim_values": (lambda a: a.max(1).values, lambda a: a.max(1).values, [X3], True),
  "max_all": (lambda a: a.max(), lambda a: a.amax(), [X3], True),
  "min": (lambda a: a.amin(-1, keepdim=True), lambda a: a.amin(-1, keepdim=True), [X3], True),
  "min_axis": (lambda a: a.min(axis=(0, 2)), lambda a: a.amin((0, 2)), [X3], True),
  "mean": (lambda a: a.mean((0, 1)), lambda a: a.mean((0, 1)), [X3], True),
  "prod": (lambda a: a.prod(1), None, [X3], True),
  # gradients at zeros: finite differences see only the row with no zero well, so torch alone
  "prod_zeros": (lambda a: a.prod(1), None, [Z], False),
  "prod_zeros_all": (lambda a: a.prod(), None, [Z], False),
  "var": (lambda a: a.var(1), None, [X3], True),
  "var_correction0": (lambda a: a.var((0, 2), correction=0), lambda a: a.var((0, 2), correction=0), [X3], True),
  "std": (lambda a: a.std(), None, [X3], True),
  "softmax": (lambda a: a.softmax(-1), lambda a: a.softmax(-1), [X3 * 3], True),
  "softmax_axis0": (lambda a: a.softmax(0), lambda a: a.softmax(0), [X3 * 3], True),
  "log_softmax": (lambda a: a.log_softmax(1), lambda a: a.log_softmax(1), [X3 * 3], True),
  "logsumexp": (lambda a: a.logsumexp(-1), lambda a: a.logsumexp(-1), [X3 * 3], True),
  "logsumexp_all": (lambda a: a.logsumexp(), lambda a: a.logsumexp((0, 1, 2)), [X3 * 3], True),
}

@pytest.mark.parametrize("name", REDUCE)
def test_reduce_gradient(name):
  fn, tfn, xs, fd = REDUCE[name]
  check_grad(fn, *xs, tfn=tfn, fd=fd)

MATMUL = {
  "2d": ([3, 4], [4, 5]),
  "batched": ([2, 3, 4], [2, 4, 5]),
  "batch_broadcast": ([2, 1, 3, 4], [3, 4, 2]),
  "vec_mat": ([4], [4, 5]),
  "mat_vec": ([3, 4], [4]),
  "batched_vec": ([2, 3, 4], [4]),
  "dot": ([4], [4]),
}

@pytest.mark.parametrize("name", MATMUL)
def test_matmul_gradient(name):
  sa, sb = MATMUL[name]
  check_grad(lambda a, b: a @ b, rn(*sa), rn(*sb))

@pytest.mark.parametrize("via", [dtypes.float32, dtypes.float16, dtypes.bfloat16], ids=str)
def test_cast_between_floats_gradient(via):
  """The gradient goes back through the cast rounded to the narrow dtype, as torch's does (no finite differences: the
  forward is a staircase)."""
  tdt = {dtypes.float32: torch.float32, dtypes.float16: torch.float16, dtypes.bfloat16: torch.bfloat16}[via]
  check_grad(lambda a: a.cast(via).cast(f64) * 1.5, rn(3, 4), tfn=lambda a: a.to(tdt).double() * 1.5, fd=False, rtol=0, atol=0)
  check_grad(lambda a: (a.cast(via) * 3).cast(f64), rn(3, 4), tfn=lambda a: (a.to(tdt) * 3).double(), fd=False, rtol=0, atol=0)

F32_CASES = {
  "gelu": (lambda a: a.gelu(), F.gelu),  # float32 erf is a rational approximation (to 1.5e-7): its derivative is close
  "log_softmax": (lambda a: a.log_softmax(-1), lambda a: a.log_softmax(-1)),
  "matmul_tanh": (lambda a: (a @ a.T).tanh(), lambda a: (a @ a.T).tanh()),
}

@pytest.mark.parametrize("name", F32_CASES)
def test_float32_gradient_matches_torch(name):
  fn, tfn = F32_CASES[name]
  x0, w = (rn(3, 4) * 2).astype(np.float32), rn(3, 3 if name == "matmul_tanh" else 4).astype(np.float32)
  x, tx = Tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
  g, = fn(x).gradient(x, gradient=Tensor(w))
  tg, = torch.autograd.grad(tfn(tx), tx, torch.tensor(w))
  assert g.dtype == dtypes.float32
  np.testing.assert_allclose(g.numpy(), tg.numpy(), rtol=2e-5, atol=2e-6)

def test_cast_of_a_float32_leaf_gradient_is_float32():
  x = Tensor(rn(3).astype(np.float32), requires_grad=True)
  g, = (x.cast(f64) * 2).sum().gradient(x)
  assert g.dtype == dtypes.float32
  np.testing.assert_array_equal(g.numpy(), np.full(3, 2, np.float32))

# ---------------------------------------------------------------- ties, kinks and extremes

def test_max_and_min_ties_split_evenly_like_amax_and_pick_one_with_dim():
  x = [[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, 5.0, -1.0, -1.0]]
  check_grad(lambda a: a.amax(1), x, tfn=lambda a: a.amax(1), fd=False, rtol=0, atol=1e-15)
  check_grad(lambda a: a.min(axis=1), x, tfn=lambda a: a.amin(1), fd=False, rtol=0, atol=1e-15)
  check_grad(lambda a: a.max(), x, tfn=lambda a: a.amax(), fd=False, rtol=0, atol=1e-15)
  check_grad(lambda a: a.amin(0), x, tfn=lambda a: a.amin(0), fd=False, rtol=0, atol=1e-15)
  # max(dim) / min(dim) give the gradient to the index they return alone, as torch's
  check_grad(lambda a: a.max(1).values, x, tfn=lambda a: a.max(1).values, fd=False, rtol=0, atol=1e-15)
  check_grad(lambda a: a.min(0).values, x, tfn=lambda a: a.min(0).values, fd=False, rtol=0, atol=1e-15)

def test_maximum_minimum_ties_split_evenly_like_torch():
  a, b = [1.0, 2.0, -3.0, 0.0], [1.0, 1.0, -3.0, 0.5]
  check_grad(lambda x, y: x.maximum(y), a, b, tfn=torch.maximum, fd=False, rtol=0, atol=0)
  check_grad(lambda x, y: x.minimum(y), a, b, tfn=torch.minimum, fd=False, rtol=0, atol=0)

def test_relu_at_exactly_zero_has_gradient_zero():
  check_grad(lambda x: x.relu(), [-1.0, 0.0, -0.0, 2.0], tfn=torch.relu, fd=False, rtol=0, atol=0)
  x = T([0.0, 1.0])
  x.relu().sum().backward()
  assert x.grad.numpy().tolist() == [0.0, 1.0]

def test_pow_at_zero_base_and_zero_exponent_like_torch():
  """0 * inf never reaches a gradient: d/da a^0 is 0, d/db 0^b is 0 for b >= 0."""
  check_grad(lambda a, b: a ** b, [0.0, 0.0, 0.0, 0.0, 2.0], [0.0, 1.0, 2.0, 0.5, 0.0], fd=False, rtol=1e-12, atol=0)
  check_grad(lambda a: a ** 0, [0.0, -1.0, 3.0], fd=False, rtol=0, atol=0)
  check_grad(lambda b: 0.0 ** b, [0.0, 1.0, 2.5], fd=False, rtol=0, atol=0)

def test_saturated_activations_have_finite_gradients():
  """e^800 overflows inside sigmoid; the gradient is still 0 there, not 0 * inf (at 40 torch's s(1-s) rounds to 0 where
  lucidgrad keeps e^-40, hence the atol)."""
  x = [-800.0, -40.0, 0.0, 40.0, 800.0]
  check_grad(lambda a: a.sigmoid(), x, tfn=torch.sigmoid, fd=False, atol=1e-16)
  check_grad(lambda a: a.tanh(), x, tfn=torch.tanh, fd=False, atol=1e-16)
  check_grad(lambda a: a.silu(), x, tfn=F.silu, fd=False, atol=1e-16)
  check_grad(lambda a: a.gelu(approximate="tanh"), x, tfn=lambda a: F.gelu(a, approximate="tanh"), fd=False, atol=1e-16)
  check_grad(lambda a: a.log_softmax(0), x, tfn=lambda a: a.log_softmax(0), fd=False)
  check_grad(lambda a: a.softmax(0), x, tfn=lambda a: a.softmax(0), fd=False)

def test_logsumexp_of_a_row_of_minus_inf_has_finite_gradient():
  x = [[-np.inf, -np.inf, 0.0], [1.0, 2.0, 3.0]]
  check_grad(lambda a: a.logsumexp(1), x, tfn=lambda a: a.logsumexp(1), fd=False)

# ---------------------------------------------------------------- higher orders

SECOND = {
  "tanh": (lambda a: a.tanh(), torch.tanh, rn(3, 4)),
  "sigmoid": (lambda a: a.sigmoid(), torch.sigmoid, rn(3, 4) * 2),
  "cube": (lambda a: a ** 3, lambda a: a ** 3, rn(3, 4)),
  "softmax": (lambda a: a.softmax(-1), lambda a: a.softmax(-1), rn(3, 4)),
}

@pytest.mark.parametrize("name", SECOND)
def test_second_order_gradient(name):
  """d/dx (v . d(w . f(x))/dx): a gradient of a gradient, through Tensor.gradient twice."""
  fn, tfn, x0 = SECOND[name]
  w, v = rn(*x0.shape), rn(*x0.shape)
  x = T(x0)
  g, = (fn(x) * Tensor(w)).sum().gradient(x)
  gg, = (g * Tensor(v)).sum().gradient(x)
  tx = TT(x0)
  tg, = torch.autograd.grad((tfn(tx) * torch.tensor(w)).sum(), tx, create_graph=True)
  tgg, = torch.autograd.grad((tg * torch.tensor(v)).sum(), tx)
  np.testing.assert_allclose(g.numpy(), tg.detach().numpy(), rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(gg.numpy(), tgg.numpy(), rtol=1e-8, atol=1e-12)

def test_third_order_gradient_of_tanh():
  x0 = rn(6)
  x, tx = T(x0), TT(x0)
  g1, = x.tanh().sum().gradient(x)
  g2, = g1.sum().gradient(x)
  g3, = g2.sum().gradient(x)
  t1, = torch.autograd.grad(torch.tanh(tx).sum(), tx, create_graph=True)
  t2, = torch.autograd.grad(t1.sum(), tx, create_graph=True)
  t3, = torch.autograd.grad(t2.sum(), tx)
  np.testing.assert_allclose(g3.numpy(), t3.numpy(), rtol=1e-8, atol=1e-12)
  t = np.tanh(x0)  # tanh''' = -2 (1 - t^2) (1 - 3 t^2)
  np.testing.assert_allclose(g3.numpy(), -2 * (1 - t * t) * (1 - 3 * t * t), rtol=1e-8, atol=1e-12)

# ---------------------------------------------------------------- backward, .grad, detach

def mlp_loss(w1, b1, w2, x):
  return ((x @ w1 + b1).tanh() @ w2).square().mean()

def mlp_params():
  return T(rn(4, 8)), T(rn(8)), T(rn(8, 1))

def test_gradient_and_backward_agree():
  w1, b1, w2 = mlp_params()
  x = T(rn(5, 4), requires_grad=False)
  loss = mlp_loss(w1, b1, w2, x)
  grads = loss.gradient(w1, b1, w2)
  assert all(p.grad is None for p in (w1, b1, w2)), "gradient() must leave .grad alone"
  loss.backward()
  tp = [TT(p.numpy()) for p in (w1, b1, w2)]
  tg = torch.autograd.grad(mlp_loss(*tp, torch.tensor(x.numpy())), tp)
  for p, g, t in zip((w1, b1, w2), grads, tg):
    np.testing.assert_array_equal(p.grad.numpy(), g.numpy())
    np.testing.assert_allclose(g.numpy(), t.numpy(), rtol=1e-9, atol=1e-14)

def test_grad_accumulates_across_backward_calls():
  x = T([1.0, 2.0, 3.0])
  (x * x).sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])
  (x * x).sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), [4.0, 8.0, 12.0])
  x.sin().sum().backward()
  np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0, 12.0] + np.cos([1.0, 2.0, 3.0]), rtol=1e-15)

def test_backward_with_a_gradient_for_a_non_scalar():
  x = T([1.0, 2.0])
  (x * 3).backward(gradient=Tensor([1.0, -2.0], dtype=f64))
  np.testing.assert_array_equal(x.grad.numpy(), [3.0, -6.0])
  with pytest.raises(RuntimeError, match="gradient="):
    (x * 3).backward()

def test_backward_fills_only_leaves_that_require_grad():
  x, y = T([1.0, 2.0]), T([3.0, 4.0], requires_grad=False)
  (x * y).sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])
  assert y.grad is None

def test_detach_stops_gradients():
  x = T([1.0, 2.0, 3.0])
  g, = (x * x.detach()).sum().gradient(x)  # only the first factor carries history
  np.testing.assert_array_equal(g.numpy(), [1.0, 2.0, 3.0])
  with pytest.raises(RuntimeError):
    (x.detach() * 2).sum().gradient(x)
  with pytest.raises(RuntimeError, match="detach"):
    (x.detach() * 2).sum().backward()
  assert x.grad is None

def test_a_detached_update_realized_is_a_fresh_leaf():
  """The plain training step: new parameters computed from the old through detach, realized, marked again; a graph
  that reads them is differentiable (detach cuts the history that realizing would lose)."""
  w = T([1.0, -2.0])
  x = Tensor([[1.0, 2.0], [3.0, 4.0]], dtype=f64)
  for _ in range(3):
    (x @ w).square().sum().backward()
    w = (w.detach() - 0.01 * w.grad).realize().requires_grad_()
  g, = (x @ w).square().sum().gradient(w)
  assert np.isfinite(g.numpy()).all()

def test_requires_grad_on_int_and_bool_tensors_raises_type_error():
  with pytest.raises(TypeError):
    Tensor([1, 2, 3]).requires_grad_()
  with pytest.raises(TypeError):
    Tensor([1, 2, 3], dtype=dtypes.int8, requires_grad=True)
  with pytest.raises(TypeError):
    Tensor([True, False], requires_grad=True)

@pytest.mark.parametrize("how", ["realize", "numpy", "item"])
def test_realizing_never_takes_away_the_graph(how):
  """print(loss.item()); loss.backward(): realizing a value keeps the graph that differentiation needs."""
  x = T([1.0, 2.0])
  y = (x * x).sum() if how == "item" else x * x
  getattr(y, how)()
  loss = y.sum() * 3
  loss.backward()
  np.testing.assert_array_equal(x.grad.numpy(), [6.0, 12.0])
  np.testing.assert_array_equal(loss.gradient(x)[0].numpy(), [6.0, 12.0])

def test_realized_leaf_is_fine():
  x = T([1.0, 2.0]).realize()
  x.numpy()
  (x * x).sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])

def test_half_gradient_of_a_broadcast_adds_up_in_float32():
  """4096 ones summed in bfloat16 stop at 256; the gradient of a broadcast bias must add them in float32."""
  for dt in (dtypes.bfloat16, dtypes.float16):
    b = Tensor([0.5], dtype=dt, requires_grad=True)
    g, = (Tensor.zeros(4096, dtype=dt) + b).sum().gradient(b)
    assert g.dtype == dt and g.numpy().tolist() == [4096.0], dt
    g, = (Tensor.zeros(4096, dtype=dt) + b).max().gradient(b)  # a tie of 4096: counted in float32 too
    assert g.numpy().tolist() == [1.0], dt

@pytest.fixture
def frozen_heap():
  """Moves everything alive now (torch's many objects too) out of the collector's sight, so each gc.collect() is quick."""
  gc.collect()
  gc.freeze()
  yield
  gc.unfreeze()

def collect_all():
  """Collect until nothing more is freed: what is left is reachable, so counting it finds leaks and not gc's timing."""
  while gc.collect(): pass

def training_step(w1, b1, w2, xs):
  mlp_loss(w1, b1, w2, Tensor(xs)).backward()
  w1.grad.realize(b1.grad, w2.grad)
  w1.grad = b1.grad = w2.grad = None

def test_training_does_not_keep_uops_alive(frozen_heap):
  """Graphs built and differentiated in a loop are freed: the weak cache of live UOps stays bounded."""
  params, xs = [Tensor(p.numpy().astype(np.float32), requires_grad=True) for p in mlp_params()], rn(16, 4).astype(np.float32)
  sizes = {}
  for i in range(50):
    training_step(*params, xs)
    if i in (9, 29, 49):
      collect_all()
      sizes[i] = len(_Interned.cache)
  assert sizes[49] <= sizes[9] and sizes[29] <= sizes[9], f"live UOps grew: {sizes}"

def test_one_gc_pass_frees_a_dead_training_step(frozen_heap):
  """A finished step's graph is garbage as a whole, so one collection frees all of it; were each pass to free one layer
  of it, dead graphs (and the buffers they hold) would pile up between the rare full collections of a long run."""
  params, xs = [Tensor(p.numpy().astype(np.float32), requires_grad=True) for p in mlp_params()], rn(16, 4).astype(np.float32)
  training_step(*params, xs)
  collect_all()
  before = len(_Interned.cache)
  training_step(*params, xs)
  gc.collect()
  assert len(_Interned.cache) == before, f"{len(_Interned.cache) - before} UOps of a dead graph outlived one gc.collect()"

def test_conv2d_second_order_matches_torch():
  """d/dw of sum(d loss/dx): the gradient of a conv2d input-gradient, against torch with create_graph=True."""

  rng = np.random.default_rng(3)
  xn, wn = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
  x, w = Tensor(xn, requires_grad=True), Tensor(wn, requires_grad=True)
  gx, = (x.conv2d(w, padding=1).tanh()).sum().gradient(x)
  gw, = (gx * gx).sum().gradient(w)
  tx, tw = torch.tensor(xn, requires_grad=True), torch.tensor(wn, requires_grad=True)
  tgx, = torch.autograd.grad(torch.nn.functional.conv2d(tx, tw, padding=1).tanh().sum(), tx, create_graph=True)
  tgw, = torch.autograd.grad((tgx * tgx).sum(), tw)
  np.testing.assert_allclose(gx.numpy(), tgx.detach().numpy(), rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(gw.numpy(), tgw.numpy(), rtol=1e-8, atol=1e-8)
