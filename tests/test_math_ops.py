"""The math mixin held to PyTorch (CPU): scans, sort/argsort/topk, einsum, norms, lerp, NaN handling, rounding, pow and
the activations; forward values and gradients, several dtypes, non-contiguous inputs, empty and one-element tensors,
and kernel-count caps for the scan and the sorting network."""
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lucidgrad import Tensor, dtypes, GlobalCounters

TORCH_DT = {dtypes.float16: torch.float16, dtypes.float32: torch.float32, dtypes.float64: torch.float64, dtypes.int8: torch.int8,
            dtypes.int32: torch.int32, dtypes.int64: torch.int64, dtypes.uint8: torch.uint8, dtypes.bool: torch.bool}
TOL = {dtypes.float16: (2e-3, 2e-3), dtypes.float32: (2e-5, 2e-6), dtypes.float64: (1e-10, 1e-12)}

def close(out, ref, dt=dtypes.float32, scale=1.0):
  ref = ref.detach().double().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
  out = out.numpy() if isinstance(out, Tensor) else np.asarray(out)
  assert out.shape == ref.shape, f"shape {out.shape}, expected {ref.shape}"
  if dt.is_float():
    rtol, atol = TOL[dt]
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=rtol * scale, atol=atol * scale, equal_nan=True)
  else: np.testing.assert_array_equal(out, ref)

def compare(fn, tfn, *xs, dt=dtypes.float32, pre=None, tpre=None, grad=True, scale=1.0, seed=0):
  """fn on lucidgrad tensors and tfn on torch tensors of the same values: outputs (a tuple: each one) and, for float
  inputs, the gradients of sum(out[0] * w) for random w. `pre`/`tpre` turn the leaves into non-contiguous views."""
  grad = grad and dt.is_float()
  ts = [Tensor(x, dtype=dt, requires_grad=grad) for x in xs]
  rs = [torch.tensor(x, dtype=TORCH_DT[dt], requires_grad=grad) for x in xs]
  out = fn(*[pre(t) if pre else t for t in ts])
  ref = tfn(*[tpre(r) if tpre else r for r in rs])
  outs, refs = (out, ref) if isinstance(out, tuple) else ((out,), (ref,))
  if grad:  # gradients before realizing: a realized tensor has no history
    w = np.random.default_rng(seed).standard_normal(refs[0].shape)
    (outs[0] * Tensor(w, dtype=outs[0].dtype)).sum().backward()
    (refs[0] * torch.tensor(w, dtype=refs[0].dtype)).sum().backward()
  for o, r in zip(outs, refs): close(o, r, o.dtype, scale)
  if grad:
    for t, r in zip(ts, rs): close(t.grad, r.grad, dt, scale)

def rand(shape, seed=0, scale=3.0): return np.random.default_rng(seed).standard_normal(shape) * scale

# ---------------------------------------------------------------- scans

@pytest.mark.parametrize("shape,dim,dt", [((4096,), 0, dtypes.float64), ((3, 5), 1, dtypes.float32), ((3, 5), -2, dtypes.float64),
                                          ((2, 70), -1, dtypes.float32), ((2, 3, 4), 1, dtypes.float16)], ids=str)
def test_cumsum(shape, dim, dt):
  compare(lambda t: t.cumsum(dim), lambda t: torch.cumsum(t, dim), rand(shape), dt=dt, scale=10 if dt == dtypes.float16 else 1)

def test_cumsum_of_4096_is_at_most_3_kernels():
  x = Tensor(rand(4096), dtype=dtypes.float32).realize()
  GlobalCounters.reset()
  out = x.cumsum(0).realize()
  assert GlobalCounters.kernel_count <= 3, GlobalCounters.kernel_count
  np.testing.assert_allclose(out.numpy(), np.cumsum(x.numpy().astype(np.float64)), rtol=1e-5, atol=1e-3)

def test_cumsum_of_ints_and_bools_is_int64():
  x = np.random.default_rng(1).integers(-100, 100, (3, 70)).astype(np.int32)
  compare(lambda t: t.cumsum(1), lambda t: torch.cumsum(t, 1), x, dt=dtypes.int32)
  out = Tensor(x > 0).cumsum(1)
  assert out.dtype == dtypes.int64
  np.testing.assert_array_equal(out.numpy(), np.cumsum(x > 0, 1))
  assert Tensor(x).cumsum(0, dtype=dtypes.float64).dtype == dtypes.float64

def test_cumsum_of_non_contiguous_inputs():
  compare(lambda t: t.T.cumsum(1), lambda t: torch.cumsum(t.T, 1), rand((5, 3)))
  compare(lambda t: t.flip(0)[::2].cumsum(0), lambda t: torch.cumsum(t.flip(0)[::2], 0), rand((9, 2)))

def test_scans_of_empty_and_one_element_tensors():
  for fn in (lambda t: t.cumsum(0), lambda t: t.cumprod(0), lambda t: t.cummax(0)[0], lambda t: t.cummax(0)[1]):
    assert fn(Tensor.zeros(0)).numpy().shape == (0,)
    assert fn(Tensor.zeros(2, 0)).numpy().shape == (2, 0)
    assert fn(Tensor.zeros(0, 70).T).numpy().shape == (70, 0)
  compare(lambda t: t.cumsum(0), lambda t: torch.cumsum(t, 0), np.array(2.5))
  compare(lambda t: t.cumprod(-1), lambda t: torch.cumprod(t, -1), np.array([[2.5]]))
  compare(lambda t: t.cummax(0), lambda t: tuple(torch.cummax(t, 0)), np.array(-1.5))

def test_cumsum_bad_dim():
  with pytest.raises(IndexError): Tensor.zeros(3).cumsum(1)

@pytest.mark.parametrize("shape,dim,dt", [((3, 6), 1, dtypes.float32), ((2, 100), -1, dtypes.float64)], ids=str)
def test_cumprod(shape, dim, dt):
  x = 1 + rand(shape, scale=0.05)
  x[0, 2] = 0.0  # gradients through a zero: the product reduce's derivative would divide by it
  x[1, 3] = x[1, 5] = 0.0
  compare(lambda t: t.cumprod(dim), lambda t: torch.cumprod(t, dim), x, dt=dt)

def test_cumprod_of_ints():
  x = np.random.default_rng(2).integers(-3, 4, (2, 40)).astype(np.int8)
  compare(lambda t: t.cumprod(1), lambda t: torch.cumprod(t, 1), x, dt=dtypes.int8)

@pytest.mark.parametrize("name", ["cummax", "cummin"])
def test_cummax_cummin_ties_and_nan(name):
  """The index is the last place the extreme was reached; NaN propagates, as in PyTorch."""
  x = np.random.default_rng(3).integers(-4, 5, (3, 70)).astype(np.float32)
  x[1, 10] = np.nan
  x[1, 40] = np.nan
  x[2, 5] = -np.inf
  compare(lambda t: getattr(t, name)(1), lambda t: tuple(getattr(torch, name)(t, 1)), x, grad=False)
  xi = np.random.default_rng(4).integers(-4, 5, (5, 3)).astype(np.int32)
  compare(lambda t: getattr(t, name)(0), lambda t: tuple(getattr(torch, name)(t, 0)), xi, dt=dtypes.int32)

def test_cummax_gradient():
  compare(lambda t: t.cummax(1), lambda t: tuple(torch.cummax(t, 1)), rand((3, 70)))
  compare(lambda t: t.T.cummin(0), lambda t: tuple(torch.cummin(t.T, 0)), rand((4, 5)))
  v, i = Tensor([True, False, True]).cummax(0)
  assert v.dtype == dtypes.bool and v.tolist() == [True, True, True] and i.tolist() == [0, 0, 2]

# ---------------------------------------------------------------- sort, argsort, topk

def special_row(seed=5):
  """Values with ties, infinities, NaN and a signed zero."""
  x = np.random.default_rng(seed).integers(-3, 4, (2, 13)).astype(np.float32)
  x[0, [2, 7]], x[0, 4], x[1, [0, 9]], x[1, 3], x[1, 11] = np.nan, np.inf, -np.inf, -0.0, np.nan
  return x

@pytest.mark.parametrize("descending", [False, True])
def test_sort_is_stable_with_nan_inf_and_ties(descending):
  compare(lambda t: t.sort(-1, descending), lambda t: tuple(torch.sort(t, dim=-1, descending=descending, stable=True)),
          special_row(), grad=False)

def test_sort_gradients_and_other_dims():
  compare(lambda t: t.sort(0), lambda t: tuple(torch.sort(t, dim=0, stable=True)), rand((13, 2)))
  compare(lambda t: t.sort(1, descending=True), lambda t: tuple(torch.sort(t, dim=1, descending=True, stable=True)), rand((2, 13, 1)))
  compare(lambda t: t.argsort(-1), lambda t: torch.argsort(t, dim=-1, stable=True), special_row(), grad=False)

@pytest.mark.parametrize("dt", [dtypes.int32, dtypes.int8, dtypes.uint8, dtypes.bool, dtypes.int64, dtypes.float64], ids=str)
def test_sort_dtypes(dt):
  """Every dtype; the 64-bit ones (no room for an index in a 64-bit key) sort by counting."""
  rng = np.random.default_rng(6)
  x = (rng.random((3, 6)) < 0.5) if dt == dtypes.bool else rng.integers(0 if dt == dtypes.uint8 else -100, 100, (3, 6))
  if dt == dtypes.int64: x = x * 2**40
  if dt == dtypes.float64: x = special_row(7).astype(np.float64)
  for desc in (False, True) if dt in (dtypes.int32, dtypes.int64, dtypes.float64) else (False,):
    compare(lambda t: t.sort(-1, desc), lambda t: tuple(torch.sort(t, dim=-1, descending=desc, stable=True)), x, dt=dt)

def test_sort_of_float16_and_extreme_ints():
  compare(lambda t: t.sort(), lambda t: tuple(torch.sort(t, stable=True)), rand((2, 6)), dt=dtypes.float16)
  x = np.array([2**31 - 1, -2**31, 0, -1, 2**31 - 1, 5], np.int32)
  compare(lambda t: t.sort(), lambda t: tuple(torch.sort(t, stable=True)), x, dt=dtypes.int32)

def test_sort_of_empty_one_element_and_0d():
  v, i = Tensor.zeros(3, 0).sort()
  assert v.numpy().shape == (3, 0) and i.numpy().shape == (3, 0) and i.dtype == dtypes.int64
  for t in (Tensor.zeros(0, 5), Tensor.zeros(0, 5, dtype=dtypes.int64)):  # no rows
    assert all(o.numpy().shape == (0, 5) for o in t.sort()) and all(o.numpy().shape == (0, 2) for o in t.topk(2))
  compare(lambda t: t.sort(), lambda t: tuple(torch.sort(t)), np.array([[1.5], [-2.0]]))
  compare(lambda t: t.sort(), lambda t: tuple(torch.sort(t)), np.array(3.0))

@pytest.mark.parametrize("largest", [True, False])
def test_topk_of_64(largest):
  compare(lambda t: t.topk(8, largest=largest), lambda t: tuple(torch.topk(t, 8, largest=largest)), rand((4, 64)))

def test_topk_of_64_is_at_most_6_kernels():
  x = Tensor(rand((4, 64)), dtype=dtypes.float32).realize()
  GlobalCounters.reset()
  v, i = x.topk(8)
  v.realize(i)
  assert GlobalCounters.kernel_count <= 6, GlobalCounters.kernel_count

def test_topk_ties_take_the_lowest_index():
  x = special_row()
  for largest in (True, False):
    ref = torch.sort(torch.tensor(x), dim=-1, descending=largest, stable=True)
    v, i = Tensor(x).topk(5, largest=largest)
    close(v, ref.values[:, :5])
    close(i, ref.indices[:, :5], dtypes.int64)

def test_topk_shapes_and_errors():
  compare(lambda t: t.topk(3, dim=0), lambda t: tuple(torch.topk(t, 3, dim=0)), rand((13, 2)))
  compare(lambda t: t.topk(13), lambda t: tuple(torch.topk(t, 13)), rand((2, 13)))
  x = np.random.default_rng(8).integers(-50, 50, (2, 13)).astype(np.int32)
  ref = torch.sort(torch.tensor(x), dim=-1, descending=True, stable=True)
  v, i = Tensor(x).topk(5)
  close(v, ref.values[:, :5], dtypes.int32)
  close(i, ref.indices[:, :5], dtypes.int64)
  v, i = Tensor(rand((2, 5))).topk(0)
  assert v.numpy().shape == (2, 0) and i.numpy().shape == (2, 0)
  with pytest.raises(ValueError): Tensor.zeros(2, 5).topk(6)

# ---------------------------------------------------------------- einsum

EINSUM = [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]), ("ii", [(4, 4)]), ("ii->i", [(4, 4)]),
          ("i,j->ij", [(3,), (4,)]), ("ij,jk", [(3, 4), (4, 5)]), ("ij->ji", [(3, 4)]), ("ij->", [(3, 4)]), ("i,i", [(5,), (5,)]),
          ("...ij,...jk->...ik", [(2, 3, 4), (1, 4, 2)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]), ("iij->j", [(3, 3, 2)]),
          ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]), ("i...->...", [(3, 2, 2)]), ("ij,ij->i", [(3, 4), (3, 4)])]

@pytest.mark.parametrize("formula,shapes", EINSUM, ids=[f for f, _ in EINSUM])
def test_einsum(formula, shapes):
  xs = [rand(s, seed=i) for i, s in enumerate(shapes)]
  compare(lambda *ts: Tensor.einsum(formula, *ts), lambda *ts: torch.einsum(formula, *ts), *xs)

def test_einsum_dtypes_and_views():
  a, b = np.random.default_rng(9).integers(-5, 5, (2, 3, 4)).astype(np.int32)
  compare(lambda x, y: Tensor.einsum("ij,kj->ik", x, y), lambda x, y: torch.einsum("ij,kj->ik", x, y), a, b, dt=dtypes.int32)
  compare(lambda x, y: Tensor.einsum("ij,jk->ik", [x.T, y]), lambda x, y: torch.einsum("ij,jk->ik", x.T, y), rand((4, 3)), rand((4, 2)),
          dt=dtypes.float64)

def test_einsum_errors():
  a = Tensor.zeros(3, 4)
  with pytest.raises(ValueError): Tensor.einsum("ij,jk->ik", a, Tensor.zeros(5, 2))
  with pytest.raises(ValueError): Tensor.einsum("ijk->i", a)
  with pytest.raises(ValueError): Tensor.einsum("ij->iz", a)
  with pytest.raises(ValueError): Tensor.einsum("ij,jk->ik", a)
  with pytest.raises(ValueError): Tensor.einsum("ii->i", a)

# ---------------------------------------------------------------- norms

@pytest.mark.parametrize("ord,dim,keepdim", [(2, None, False), (2, 1, True), (1, 0, False), (math.inf, 1, False), (-math.inf, None, False),
                                             (0, 1, False), (3, (0, 1), True), (0.5, 1, False), (-1, 0, False)], ids=str)
def test_vector_norm(ord, dim, keepdim):
  x = rand((3, 4))
  x[0, 1] = 0.0
  grad = ord not in (0, 0.5, -1)  # 0 counts (no gradient); at a zero element the others have infinite derivatives
  compare(lambda t: t.vector_norm(ord, dim, keepdim), lambda t: torch.linalg.vector_norm(t, ord, dim, keepdim), x, grad=grad)
  if ord in (0.5, -1): compare(lambda t: t.vector_norm(ord, dim, keepdim), lambda t: torch.linalg.vector_norm(t, ord, dim, keepdim), rand((3, 4)))

def test_norm_of_zero_vector_has_zero_gradient():
  compare(lambda t: t.norm(dim=1), lambda t: torch.norm(t, dim=1), np.array([[0.0, 0.0], [3.0, 4.0]]))
  compare(lambda t: t.norm(1, dim=1), lambda t: torch.norm(t, 1, dim=1), np.array([[0.0, 0.0], [3.0, -4.0]]))

@pytest.mark.parametrize("ord,dim", [(None, None), ("fro", (0, 1)), (math.inf, (0, 1)), (-math.inf, (1, 0)), (1, (0, 1)), (-1, (-1, -2)),
                                     (None, 1), (3, -1), (math.inf, None)], ids=str)
def test_linalg_norm(ord, dim):
  compare(lambda t: t.linalg_norm(ord, dim), lambda t: torch.linalg.norm(t, ord, dim), rand((3, 4)))
  compare(lambda t: t.linalg_norm(ord, dim, keepdim=True), lambda t: torch.linalg.norm(t, ord, dim, keepdim=True), rand((3, 4), seed=1),
          dt=dtypes.float64)

def test_norm_forms_and_errors():
  x = rand((2, 3, 4))
  compare(lambda t: t.norm(), lambda t: torch.norm(t), x)
  compare(lambda t: t.norm("fro", (1, 2)), lambda t: torch.norm(t, "fro", (1, 2)), x)
  compare(lambda t: t.norm(ord=3, dim=-1, keepdim=True), lambda t: torch.norm(t, 3, -1, keepdim=True), x)
  compare(lambda t: Tensor.linalg_norm(t.permute(2, 0, 1), dim=(0, 2)), lambda t: torch.linalg.norm(t.permute(2, 0, 1), dim=(0, 2)), x)
  with pytest.raises(NotImplementedError): Tensor(x).linalg_norm(2, (1, 2))
  with pytest.raises(NotImplementedError): Tensor(x).linalg_norm("nuc", (1, 2))
  with pytest.raises(ValueError): Tensor(x).linalg_norm(1)
  assert Tensor.zeros(0, 3).norm(dim=0).tolist() == [0.0, 0.0, 0.0]

# ---------------------------------------------------------------- elementwise math

@pytest.mark.parametrize("weight", [0.3, 0.8, "tensor"])
def test_lerp(weight):
  if weight == "tensor":
    compare(lambda a, b, w: a.lerp(b, w), lambda a, b, w: torch.lerp(a, b, w), rand((3, 4)), rand((3, 4), 1), np.random.default_rng(2).random((3, 4)))
  else: compare(lambda a, b: a.lerp(b, weight), lambda a, b: torch.lerp(a, b, weight), rand((3, 4)), rand((1, 4), 1))
  assert Tensor([1.0, 2.0]).lerp(Tensor([3.0, 7.0]), 1.0).tolist() == [3.0, 7.0]  # weight 1 gives `end` exactly

SPECIALS = np.array([0.0, -0.0, 1.5, -2.5, np.inf, -np.inf, np.nan, 1e30, -3e38, 65504.0, 70000.0])

@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64, dtypes.float16], ids=str)
def test_nan_inf_predicates_and_nan_to_num(dt):
  with np.errstate(over="ignore"): x = SPECIALS.astype(dt.np)
  for name in ("isnan", "isinf", "isfinite"): compare(lambda t: getattr(t, name)(), lambda t: getattr(torch, name)(t), x, dt=dt, grad=False)
  compare(lambda t: t.nan_to_num(), lambda t: torch.nan_to_num(t), x, dt=dt, grad=False)
  compare(lambda t: t.nan_to_num(1.0, 2.0, -3.0), lambda t: torch.nan_to_num(t, 1.0, 2.0, -3.0), x, dt=dt, grad=False)
  xi = np.array([1, -2, 3], np.int32)
  for name in ("isnan", "isinf", "isfinite", "nan_to_num"): compare(lambda t: getattr(t, name)(), lambda t: getattr(torch, name)(t), xi, dt=dtypes.int32)

def test_nan_to_num_gradient():
  compare(lambda t: t.nan_to_num(), lambda t: torch.nan_to_num(t), np.array([1.0, np.nan, np.inf, -2.0]))

def test_rounding_matches_torch():
  x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.7, 0.3, 1.7, -3.2, 7.0, np.inf, -np.inf, np.nan])
  for name in ("floor", "ceil", "round", "trunc"): compare(lambda t: getattr(t, name)(), lambda t: getattr(torch, name)(t), x)

@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64], ids=str)
def test_erf(dt):
  # an odd size: the codegen upcasts elementwise kernels whose size divides by 2 or 4, which makes the 140-term
  # float64 series (and its derivative) several times slower to compile
  x = np.concatenate([rand(21, scale=2), [0.0, 6.5, -7.0, 1e-8]])
  compare(lambda t: t.erf(), lambda t: torch.erf(t), x, dt=dt, scale=100 if dt == dtypes.float32 else 1e5)

def test_log1p_expm1():
  x = np.concatenate([rand(12), [1e-9, -1e-9, 1e-20, -0.5, 30.0, -30.0]])
  compare(lambda t: t.log1p(), lambda t: torch.log1p(t), np.abs(x) - 0.4)
  compare(lambda t: t.expm1(), lambda t: torch.expm1(t), x, dt=dtypes.float64)
  compare(lambda t: t.expm1(), lambda t: torch.expm1(t), x)

# ---------------------------------------------------------------- pow

def test_pow_negative_bases_and_zero():
  a = np.array([-2.0, -2.0, -8.0, 0.0, 0.0, 0.0, -1.5, 3.0, -0.5, 2.0])
  b = np.array([3.0, 2.0, 1 / 3, 0.0, 2.0, -1.0, -2.0, 0.5, 0.5, -3.0])
  compare(lambda x, y: x ** y, lambda x, y: x ** y, a, b, grad=False)
  # gradients where PyTorch's are finite: 0 ** 0 has zero gradients; negative bases to integer powers
  keep = [0, 1, 3, 4, 6, 7]
  compare(lambda x, y: x ** y, lambda x, y: x ** y, a[keep], b[keep])
  compare(lambda x: x ** 3, lambda x: x ** 3, np.array([-2.0, 0.0, 1.5]))
  compare(lambda x: 2.0 ** x, lambda x: 2.0 ** x, np.array([-2.0, 0.0, 1.5]))

@pytest.mark.parametrize("e", [1, 2, 3, 1.0, 2.0, 3.0])
def test_small_integer_powers_are_exact_as_torch_makes_them(e):
  """x ** 1, 2, 3 are x, x*x, x*x*x on every device, bit for bit as torch's (a pow instruction may be an ulp off: a
  GPU's float64 3.0 ** 1 gave 2.9999999999999996), special values and gradients included."""
  a = np.array([3.0, -2.5, 0.1, -0.0, 0.0, 1e300, -np.inf, np.inf, np.nan, 7.000000000000001])
  x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
  y, ty = x ** e, t ** e
  np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
  assert np.array_equal(np.signbit(y.numpy()), np.signbit(ty.detach().numpy()))
  y.sum().backward(); ty.sum().backward()
  np.testing.assert_array_equal(x.grad.numpy()[:6], t.grad.numpy()[:6])  # finite bases: the same gradient
  b = Tensor(np.arange(6.0).reshape(2, 3))
  z = b ** e
  b.assign(b + 1).realize()                       # a new tensor, as torch's: not a view of its base
  np.testing.assert_array_equal(z.numpy(), np.arange(6.0).reshape(2, 3) ** e)

def test_pow_of_ints():
  a, b = np.array([-3, -2, 0, 1, -1, 5, 2], np.int32), np.array([3, -1, 0, -2, -3, 2, 10], np.int32)
  compare(lambda x, y: x ** y, lambda x, y: x ** y, a, b, dt=dtypes.int32)
  out = Tensor(a) ** 0.5
  assert out.dtype == dtypes.float32
  close(out, torch.tensor(a) ** 0.5)
  close(Tensor(a) ** 2, torch.tensor(a) ** 2, dtypes.int32)

# ---------------------------------------------------------------- activations

ACTS = {
  "softplus": (lambda t: t.softplus(), F.softplus), "softplus_beta": (lambda t: t.softplus(2.0, 5.0), lambda t: F.softplus(t, 2.0, 5.0)),
  "logsigmoid": (lambda t: t.logsigmoid(), F.logsigmoid), "mish": (lambda t: t.mish(), F.mish),
  "hardswish": (lambda t: t.hardswish(), F.hardswish), "hardsigmoid": (lambda t: t.hardsigmoid(), F.hardsigmoid),
  "elu": (lambda t: t.elu(), F.elu), "elu_alpha": (lambda t: t.elu(0.5), lambda t: F.elu(t, 0.5)), "selu": (lambda t: t.selu(), F.selu),
  "leaky_relu": (lambda t: t.leaky_relu(), F.leaky_relu), "leaky_relu_slope": (lambda t: t.leaky_relu(0.2), lambda t: F.leaky_relu(t, 0.2)),
  "hardtanh": (lambda t: t.hardtanh(), F.hardtanh), "hardtanh_range": (lambda t: t.hardtanh(-2.0, 0.5), lambda t: F.hardtanh(t, -2.0, 0.5)),
  "celu": (lambda t: t.celu(), F.celu), "celu_alpha": (lambda t: t.celu(2.0), lambda t: F.celu(t, 2.0)),
  "relu6": (lambda t: t.relu6(), F.relu6), "softsign": (lambda t: t.softsign(), F.softsign),
  "sigmoid": (lambda t: t.sigmoid(), torch.sigmoid), "tanh": (lambda t: t.tanh(), torch.tanh), "gelu": (lambda t: t.gelu(), F.gelu),
  "gelu_tanh": (lambda t: t.gelu("tanh"), lambda t: F.gelu(t, approximate="tanh")),
}
# the corners where PyTorch picks a one-sided derivative, and points around them
KINKS = np.array([-6.0, -3.0, -2.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 1.0, 2.5, 3.0, 5.0, 6.0, 7.0, 21.0, -21.0])

@pytest.mark.parametrize("name,dt", [(n, d) for n in ACTS for d in (dtypes.float32, dtypes.float64) if (n, d) != ("gelu", dtypes.float64)], ids=str)
def test_activation(name, dt):  # float64 gelu is float64 erf, tested alone (its series makes big kernels)
  fn, tfn = ACTS[name]
  # PyTorch's hardsigmoid backward multiplies by a float32 1/6, also in float64
  compare(fn, tfn, np.concatenate([rand(25, scale=4), KINKS]), dt=dt, scale=1e3 if name == "hardsigmoid" and dt == dtypes.float64 else 1)

@pytest.mark.parametrize("name", ["softplus", "elu", "hardswish", "gelu", "tanh"])
def test_activation_float16_and_views(name):
  fn, tfn = ACTS[name]
  compare(fn, lambda t: tfn(t.float()).half(), rand((3, 4)), dt=dtypes.float16)
  compare(lambda t: fn(t.T[::2]), lambda t: tfn(t.T[::2]), rand((3, 4)))

def test_activations_of_empty_tensors():
  for name, (fn, _) in ACTS.items(): assert fn(Tensor.zeros(0, 3)).numpy().shape == (0, 3), name

# ---------------------------------------------------------------- cosine similarity

@pytest.mark.parametrize("s1,s2,dim", [((4, 5), (4, 5), 1), ((1, 5), (4, 5), 1), ((2, 3, 4), (2, 3, 4), -1), ((3,), (3,), 0)], ids=str)
def test_cosine_similarity(s1, s2, dim):
  compare(lambda a, b: a.cosine_similarity(b, dim), lambda a, b: F.cosine_similarity(a, b, dim), rand(s1), rand(s2, 1))

def test_cosine_similarity_of_tiny_vectors_uses_eps():
  a, b = np.array([[0.0, 0.0, 0.0], [1e-12, 0.0, 0.0]]), np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
  compare(lambda x, y: Tensor.cosine_similarity(x, y), lambda x, y: F.cosine_similarity(x, y), a, b, grad=False)
  compare(lambda x, y: x.cosine_similarity(y, eps=0.1), lambda x, y: F.cosine_similarity(x, y, eps=0.1), a * 0.01, b, grad=False)
