"""Issue 12's math ops and torch's reduction names, held to PyTorch on the CPU (float64 torch as the reference for
float32 inputs): the inverse trigonometric and hyperbolic functions (within a few ulp over every exponent, torch's values
at the edges), atan2/hypot/copysign/logaddexp/fmod/remainder, logcumsumexp, all/any/amax/amin/aminmax,
isclose/allclose/equal, std_mean/var_mean, median/mode/kthvalue; max(dim)/min(dim) and the sorts as named tuples;
dim=/keepdim=/axis= on every reduction, scan and sort. Values, gradients, dtypes, non-contiguous inputs, empty and 0-d
tensors, and the errors."""
import math
import numpy as np
import pytest
import torch
from lucidgrad import Tensor, dtypes
from lucidgrad import return_types

F32, F64 = dtypes.float32, dtypes.float64
TDT = {dtypes.float32: torch.float32, dtypes.float64: torch.float64, dtypes.float16: torch.float16, dtypes.int32: torch.int32,
       dtypes.int64: torch.int64, dtypes.uint8: torch.uint8, dtypes.bool: torch.bool, dtypes.int8: torch.int8}
NP = {dtypes.float32: np.float32, dtypes.float64: np.float64}
rng = np.random.default_rng(12)

def tt(x, grad=False) -> torch.Tensor:
  """The torch reference of a NumPy array: float64 for floats."""
  x = np.asarray(x)
  return torch.tensor(x.astype(np.float64) if x.dtype.kind == "f" else x, requires_grad=grad)

def same(got, ref, rtol=0.0, atol=0.0, what="", signed=True):
  """Equal shapes and values within tolerance, NaN where the reference is NaN, and (`signed`) the sign of zeros and
  infinities."""
  got = got.numpy() if isinstance(got, Tensor) else np.asarray(got)
  ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
  assert got.shape == ref.shape, f"{what}: shape {got.shape}, torch gives {ref.shape}"
  if got.dtype.kind in "biu" or ref.dtype.kind in "biu": return np.testing.assert_array_equal(got, ref, err_msg=what)
  g, r = got.astype(np.float64), ref.astype(np.float64)
  np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)
  if not signed: return
  exact = (r == 0) | np.isinf(r)
  assert (np.signbit(g[exact]) == np.signbit(r[exact])).all(), f"{what}: the sign of a zero or an infinity differs"

def ulps(got: np.ndarray, ref: np.ndarray, npdt) -> float:
  """The largest |got - ref| in units of the last place of npdt at ref; 0 where both are NaN or equal (infinities)."""
  with np.errstate(all="ignore"):  # a float64 reference past float32's range rounds to inf
    r = ref.astype(npdt)
    ok = (got == r) | (np.isnan(got) & np.isnan(ref))
    spacing = np.maximum(np.spacing(np.abs(r)).astype(np.float64), np.finfo(npdt).smallest_subnormal)
    err = np.abs(got.astype(np.float64) - ref) / spacing
  return float(np.where(ok, 0.0, np.where(np.isfinite(err), err, np.inf)).max())

def exponents(npdt, lo: int, hi: int, per: int = 24) -> np.ndarray:
  """Random values of both signs in every binade 2^e, lo <= e < hi."""
  e = np.repeat(np.arange(lo, hi), per)
  return ((1 + rng.random(e.size)) * np.exp2(e.astype(np.float64)) * rng.choice([-1.0, 1.0], e.size)).astype(npdt)

def grads(fn, tfn, *arrays, w_seed=0, rtol=1e-5, atol=1e-6, dt=F32):
  """fn and tfn (on float64 torch) of the same inputs: outputs, then the gradients of sum(out * w) for a random w."""
  ts = [Tensor(a, dtype=dt, requires_grad=True) for a in arrays]
  rs = [tt(a, grad=True) for a in arrays]
  out, ref = fn(*ts), tfn(*rs)
  w = np.random.default_rng(w_seed).standard_normal(tuple(ref.shape))
  (out * Tensor(w, dtype=out.dtype)).sum().backward()
  (ref * torch.tensor(w)).sum().backward()
  same(out, ref, rtol, atol, "forward")
  for i, (t, r) in enumerate(zip(ts, rs)): same(t.grad, r.grad, rtol, atol, f"gradient of input {i}", signed=False)  # 0 * w: any sign

# ---------------------------------------------------------------- inverse trigonometric and hyperbolic functions

WIDE = lambda npdt: np.concatenate([exponents(npdt, -140 if npdt == np.float32 else -1020, 126 if npdt == np.float32 else 1020), rng.uniform(-4, 4, 2000)])
UNIT = lambda npdt: np.concatenate([rng.uniform(-1, 1, 2000), 1 - np.exp2(-rng.uniform(1, 24 if npdt == np.float32 else 53, 500)),
                                    np.abs(exponents(npdt, -140 if npdt == np.float32 else -1020, 0, 8))]) * rng.choice([-1.0, 1.0], 2500 + 8 * (140 if npdt == np.float32 else 1020))
EXP_RANGE = lambda npdt: np.concatenate([exponents(npdt, -140 if npdt == np.float32 else -1020, 7), rng.uniform(-89.4, 89.4, 2000) if npdt == np.float32 else rng.uniform(-710, 710, 2000)])
UNARY = {  # name: (numpy reference, inputs)
  "atan": (np.arctan, WIDE), "asin": (np.arcsin, UNIT), "acos": (np.arccos, UNIT), "sinh": (np.sinh, EXP_RANGE), "cosh": (np.cosh, EXP_RANGE),
  "asinh": (np.arcsinh, WIDE), "acosh": (np.arccosh, lambda npdt: 1 + np.abs(WIDE(npdt))), "atanh": (np.arctanh, UNIT),
}
EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, math.inf, -math.inf, math.nan, 1e-30, -1e-30, 1e-45, 1e30, -1e30, 3.4e38, -3.4e38,
         88.0, 89.0, 89.5, -89.5, 1.0000001, 0.99999994, -0.99999994, 2.0**28, 2.0**29, 1e20]

@pytest.mark.parametrize("dt", [F32, F64], ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_within_a_few_ulp_over_every_exponent_and_torch_at_the_edges(name, dt):
  ref_fn, inputs = UNARY[name]
  npdt, n = NP[dt], len(EDGES)
  x = np.concatenate([np.array(EDGES, npdt), inputs(npdt).astype(npdt)])  # one kernel for both
  got = getattr(Tensor(x), name)().numpy()
  with np.errstate(all="ignore"): ref = ref_fn(x[n:].astype(np.float64))
  # measured: at most 2 ulp (atan, asin, acos, cosh), 3.6 (sinh, asinh, acosh, atanh); NumPy's float64 is itself ~1 ulp off
  assert ulps(got[n:], ref, npdt) <= 4
  same(got[:n], getattr(torch, name)(torch.tensor(x[:n])), rtol=4 * np.finfo(npdt).eps, what=f"{name} at the edges")

@pytest.mark.parametrize("name", list(UNARY))
def test_unary_gradients_are_torchs_formulas_at_the_poles_too(name):
  x = {"asin": rng.uniform(-0.99, 0.99, 20), "acos": rng.uniform(-0.99, 0.99, 20), "atanh": rng.uniform(-0.99, 0.99, 20),
       "acosh": 1.01 + rng.uniform(0, 5, 20)}.get(name, rng.uniform(-5, 5, 20))
  # and at the poles and infinities: inf, 0 or NaN as torch's formula gives them (a composite's own chain rule: 0 * inf)
  e = np.array([0.0, -0.0, 1.0, -1.0, 2.0, math.inf, -math.inf, math.nan, 30.0])
  grads(lambda t: getattr(t, name)(), lambda t: getattr(torch, name)(t), np.concatenate([x, e]).astype(np.float32))

def test_unary_dtypes_ints_promote_and_half_floats_round_once():
  i = np.array([[-3, 0, 1], [2, 5, 1]], np.int32)
  outs = [getattr(Tensor(i), name)() for name in UNARY]
  h = np.array([0.25, -0.5, 0.75, 0.999], np.float16)
  halves = [getattr(Tensor(h), name)() for name in ("asin", "atan", "atanh", "sinh")]
  Tensor.realize(*outs, *halves)  # one schedule: the kernels compile together
  for name, out in zip(UNARY, outs):
    assert out.dtype == F32, name
    same(out, getattr(torch, name)(torch.tensor(i)), rtol=3e-7, what=name)
  for name, out in zip(("asin", "atan", "atanh", "sinh"), halves):
    assert out.dtype == dtypes.float16
    same(out, getattr(torch, name)(torch.tensor(h)), what=name)  # float32 inside, one rounding: torch's value exactly

def test_unary_aliases_and_non_contiguous_inputs():
  x = rng.uniform(-0.9, 0.9, (4, 6)).astype(np.float32)
  t = Tensor(x).T[1:, ::2]  # a transposed, sliced view
  r = tt(x).T[1:, ::2]
  for ours, theirs in (("arcsin", "asin"), ("arccos", "acos"), ("arctan", "atan"), ("arcsinh", "asinh"), ("arctanh", "atanh")):
    same(getattr(t, ours)(), getattr(torch, theirs)(r), rtol=3e-7, what=ours)
  y = np.abs(x) + np.float32(1)  # acosh near 1 magnifies an input's rounding: the reference starts from the same float32s
  same(Tensor(y).arccosh(), torch.acosh(tt(y)), rtol=3e-7)
  same(Tensor(x).arctan2(Tensor(x.T.copy()).T), torch.atan2(tt(x), tt(x)), rtol=3e-7)
  assert Tensor.zeros(0, 3).asin().shape == (0, 3) and Tensor(0.5).acos().shape == ()

# ---------------------------------------------------------------- binary float math

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -2.0, 7.25, -7.25, math.inf, -math.inf, math.nan, 1e-30, -1e-30, 1e30, -1e30, 88.0], np.float64)
GRID = [a.ravel() for a in np.meshgrid(SPECIAL, SPECIAL)]
BINARY = ["atan2", "hypot", "copysign", "logaddexp", "logaddexp2", "remainder"]

@pytest.mark.parametrize("dt", [F32, F64], ids=str)
@pytest.mark.parametrize("name", BINARY + ["fmod"])
def test_binary_values_over_special_pairs_and_random(name, dt):
  npdt = NP[dt]
  a, b = [np.concatenate([g, rng.standard_normal(200) * 10]).astype(npdt) for g in GRID]
  got = getattr(Tensor(a), name)(Tensor(b))
  assert got.dtype == dt
  if name == "fmod":  # exact: C's and NumPy's (torch's float32 fmod is NaN where a / b overflows: 3.4e38 fmod 0.5)
    with np.errstate(all="ignore"): return same(got, np.fmod(a, b))
  # float64 torch of the same values, rounded to dt (remainder is exact there too, where torch's float32 gives NaN as fmod does)
  ref = getattr(torch, name)(tt(a), tt(b)).numpy().astype(npdt)
  eps = np.finfo(npdt).eps
  # logaddexp is a few ulp of its larger term, not of a result near 0 ((-0.5, -1): 30 ulp in float64): an absolute eps
  same(got, ref, rtol=4 * eps, atol=eps if "logaddexp" in name else 0, what=name)

@pytest.mark.parametrize("name", BINARY + ["fmod"])
def test_binary_gradients_broadcasting_and_non_contiguous(name):
  a = (rng.standard_normal((4, 3)) * 3).astype(np.float32)
  b = (rng.standard_normal((3,)) * 3 + 0.1).astype(np.float32)
  # a transposed view against a column: both operands broadcast
  grads(lambda x, y: getattr(x.T, name)(y.reshape(3, 1)), lambda x, y: getattr(torch, name)(x.T, y.reshape(3, 1)), a, b)

def test_binary_edge_gradients_match_torch():
  a = np.array([0.0, 0.0, 3.0, -0.0, 1.0, -2.0], np.float32)
  b = np.array([0.0, 2.0, 4.0, 1.0, -1.0, -2.0], np.float32)
  grads(lambda x, y: x.atan2(y), torch.atan2, a, b)           # 0 at the origin, as torch
  grads(lambda x, y: x.copysign(y), torch.copysign, a, b)     # 0 towards a at a == 0, and zeros towards b
  grads(lambda x, y: x.logaddexp(y), torch.logaddexp, a, b)
  grads(lambda x, y: x.hypot(y), torch.hypot, a[1:], b[1:])   # (torch's gradient at (0, 0) is 0 / 0, NaN: ours too)

def test_binary_dtypes_scalars_and_ints():
  i, j = np.array([7, -7, 5, 0], np.int32), np.array([2, 2, -3, 4], np.int32)
  for name in ("atan2", "copysign", "hypot", "logaddexp", "logaddexp2"):
    out = getattr(Tensor(i), name)(Tensor(j))
    assert out.dtype == F32, name  # ints become the default float (torch raises for hypot and logaddexp of ints)
    same(out, getattr(torch, name)(torch.tensor(i).float(), torch.tensor(j).float()), rtol=3e-7, what=name)
  for name in ("fmod", "remainder"):
    out = getattr(Tensor(i), name)(Tensor(j))
    assert out.dtype == dtypes.int32
    same(out, getattr(torch, name)(torch.tensor(i), torch.tensor(j)), what=name)
    same(getattr(Tensor(i), name)(2.5), getattr(torch, name)(torch.tensor(i), 2.5), rtol=3e-7, what=f"{name} by a float")
    same(getattr(Tensor(i.astype(np.uint8)), name)(3), getattr(torch, name)(torch.tensor(i.astype(np.uint8)), 3), what=f"uint8 {name}")
    # integer division by zero gives 0 in lucidgrad (docs/semantics.md); torch raises RuntimeError: ZeroDivisionError
    assert getattr(Tensor(i), name)(Tensor(np.zeros(4, np.int32))).tolist() == [0, 0, 0, 0]
  x = rng.standard_normal(5).astype(np.float32)
  same(Tensor(x).copysign(-2.0), torch.copysign(tt(x), -2.0), what="copysign by a scalar")
  same(Tensor(x).atan2(1), torch.atan2(tt(x), torch.tensor(1.0, dtype=torch.float64)), rtol=3e-7, what="atan2 by a scalar")
  h = Tensor(x, dtype=dtypes.float16)
  assert h.logaddexp(h).dtype == dtypes.float16 and h.hypot(Tensor(x)).dtype == F32
  for name in BINARY + ["fmod"]:  # empty tensors broadcast to empty results, as torch's
    assert getattr(Tensor.zeros(0, 3), name)(Tensor.ones(3)).shape == tuple(getattr(torch, name)(torch.zeros(0, 3), torch.ones(3)).shape)

def test_binary_shapes_that_do_not_broadcast_raise():
  for name in BINARY + ["fmod"]:
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)|\(4,\).*\(2, 3\)"): getattr(Tensor.ones(2, 3), name)(Tensor.ones(4))

# ---------------------------------------------------------------- logcumsumexp

@pytest.mark.parametrize("shape,dim", [((5, 7), 1), ((5, 7), -2), ((3, 300), 1), ((2, 3, 4), 0)], ids=str)
def test_logcumsumexp_values_and_gradients(shape, dim):
  x = rng.standard_normal(shape).astype(np.float32) * 5
  grads(lambda t: t.logcumsumexp(dim), lambda t: torch.logcumsumexp(t, dim), x, rtol=2e-5, atol=1e-5)

def test_logcumsumexp_is_stable_for_large_and_spread_out_values():
  x = np.array([[-1000.0, 0.0, 1000.0, 1000.0, -5e4, 3e4], [88.0, 89.0, 90.0, -math.inf, 1e30, 1e30]], np.float32)
  same(Tensor(x).logcumsumexp(1), torch.logcumsumexp(tt(x), 1), rtol=3e-7)
  same(Tensor(x.T).T.logcumsumexp(-1), torch.logcumsumexp(tt(x), -1), rtol=3e-7)  # non-contiguous
  i = np.array([[1, 2, 3], [100, 0, -100]], np.int32)
  out = Tensor(i).logcumsumexp(1)
  assert out.dtype == F32  # torch raises for ints
  same(out, torch.logcumsumexp(tt(i).double(), 1), rtol=3e-7)
  assert Tensor.zeros(2, 0).logcumsumexp(1).shape == (2, 0)
  same(Tensor(2.0).logcumsumexp(0), torch.logcumsumexp(torch.tensor(2.0), 0))

# ---------------------------------------------------------------- all / any / amax / amin / aminmax

@pytest.mark.parametrize("dt", [F32, dtypes.int32, dtypes.bool, dtypes.uint8], ids=str)
def test_all_any_of_each_dtype_dims_and_empty(dt):
  x = rng.integers(0, 3, (3, 4, 5)) * (rng.random((3, 4, 5)) < 0.9)
  x = x.astype(np.float32) if dt == F32 else x.astype(np.int32) if dt == dtypes.int32 else x.astype(np.uint8) if dt == dtypes.uint8 else x > 0
  if dt == F32: x[0, 0, 0] = math.nan  # NaN is true
  t, r = Tensor(x), torch.tensor(x)
  for op in ("all", "any"):
    same(getattr(t, op)(), getattr(r, op)(), what=op)
    for dim, keepdim in ((1, False), (-1, True), ((0, 2), False), ((), False)):
      out = getattr(t, op)(dim, keepdim)
      assert out.dtype == (dtypes.uint8 if dt == dtypes.uint8 else dtypes.bool)  # uint8 stays uint8, as torch
      same(out, getattr(r, op)(dim, keepdim), what=f"{op}({dim}, keepdim={keepdim})")
    same(getattr(t.permute(2, 0, 1)[:, 1:], op)(dim=0), getattr(r.permute(2, 0, 1)[:, 1:], op)(dim=0), what=f"{op} of a view")
    e = np.zeros((2, 0, 3), x.dtype)
    same(getattr(Tensor(e), op)(1), getattr(torch.tensor(e), op)(1), what=f"{op} over an empty axis")
    same(getattr(Tensor(e), op)(), getattr(torch.tensor(e), op)(), what=f"{op} of nothing")

def test_amax_amin_tuples_ties_and_gradients():
  x = rng.integers(-2, 3, (3, 4, 5)).astype(np.float32)  # many ties: the gradient is shared among them, as torch
  for op in ("amax", "amin"):
    for dim, keepdim in ((1, False), ((-1, 0), True), ((), False)):
      kw = {} if dim is None else {"dim": dim}
      grads(lambda t: getattr(t, op)(keepdim=keepdim, **kw), lambda t: getattr(torch, op)(t, keepdim=keepdim, **kw), x)
  i = rng.integers(-100, 100, (4, 6)).astype(np.int32)
  same(Tensor(i).amax(1), torch.tensor(i).amax(1))
  same(Tensor(i).T.amin(0), torch.tensor(i).T.amin(0))
  same(Tensor(i > 0).amax(0), torch.tensor(i > 0).amax(0))
  with pytest.raises(ValueError, match=r"\(2, 0\)"): Tensor.zeros(2, 0).amax(1)
  same(Tensor.zeros(0, 3).amax(1), torch.zeros(0, 3).amax(1))  # an empty result over a non-empty axis, as torch

def test_aminmax_is_a_named_tuple_with_gradients():
  x = rng.integers(-2, 3, (4, 5)).astype(np.float32)
  out, ref = Tensor(x).aminmax(dim=1, keepdim=True), torch.aminmax(tt(x), dim=1, keepdim=True)
  assert isinstance(out, return_types.aminmax) and out._fields == ("min", "max")
  same(out.min, ref.min); same(out.max, ref.max)
  lo, hi = Tensor(x).aminmax()
  same(lo, torch.aminmax(tt(x)).min); same(hi, torch.aminmax(tt(x)).max)
  # torch's reference through amax/amin (the same gradient, ties shared evenly): aminmax has a derivative only from 2.13
  grads(lambda t: t.aminmax(dim=0).max * 2 + t.aminmax(dim=0).min, lambda t: torch.amax(t, dim=0) * 2 + torch.amin(t, dim=0), x)
  with pytest.raises(TypeError, match="aminmax.*dim"): Tensor(x).aminmax(dim=(0, 1))

# ---------------------------------------------------------------- max / min: torch's three forms

def test_max_min_with_dim_are_named_tuples_with_the_first_index_and_its_gradient():
  x = rng.integers(-2, 3, (4, 6)).astype(np.float32)
  x[2, 3] = x[3, 0] = math.nan  # the first NaN wins, as torch
  for op in ("max", "min"):
    for dim, keepdim in ((1, False), (0, True), (-1, True)):
      out, ref = getattr(Tensor(x), op)(dim, keepdim), getattr(tt(x), op)(dim, keepdim)
      assert isinstance(out, getattr(return_types, op)) and out._fields == ("values", "indices")
      same(out.values, ref.values, what=op); same(out.indices, ref.indices, what=op)
      assert out.indices.dtype == dtypes.int64
      values, indices = out  # unpacks like a tuple
      assert values is out[0] and indices is out[1]
    t = Tensor(x.T.copy()).T  # a non-contiguous view
    same(getattr(t, op)(dim=1).indices, getattr(tt(x), op)(dim=1).indices, what=f"{op} of a view")
  y = rng.integers(-2, 3, (3, 5)).astype(np.float32)  # ties: the gradient goes to the returned index alone
  for op in ("max", "min"):
    grads(lambda t: getattr(t, op)(1).values, lambda t: getattr(t, op)(1).values, y)
    grads(lambda t: getattr(t, op)(dim=0, keepdim=True)[0], lambda t: getattr(t, op)(dim=0, keepdim=True)[0], y)

def test_max_without_dim_with_a_tensor_and_with_axis():
  x = rng.integers(-2, 3, (3, 4, 5)).astype(np.float32)
  t, r = Tensor(x), tt(x)
  same(t.max(), r.max()); same(t.min(), r.min())
  grads(lambda a: a.max(), lambda a: a.max(), x)  # ties share it, as torch's max()
  y = rng.standard_normal((4, 5)).astype(np.float32)
  grads(lambda a, b: a.max(b), lambda a, b: a.max(b), x, y)  # elementwise maximum, broadcasting
  grads(lambda a, b: a.min(b), lambda a, b: a.min(b), x, y)
  # axis= (and a tuple of axes) reduce to a plain tensor, as tinygrad's max: no indices, ties share the gradient
  assert isinstance(t.max(axis=1), Tensor) and isinstance(t.min((0, 2)), Tensor)
  grads(lambda a: a.max(axis=(0, 2), keepdim=True), lambda a: a.amax((0, 2), keepdim=True), x)
  grads(lambda a: a.min(axis=-1), lambda a: a.amin(-1), x)
  same(Tensor(x > 0).max(axis=0), tt(x > 0).amax(0))

def test_max_min_of_ints_bools_0d_and_errors():
  i = rng.integers(-50, 50, (3, 7)).astype(np.int32)
  for op in ("max", "min"):
    for x in (i, i.astype(np.uint8), i > 0):
      out, ref = getattr(Tensor(x), op)(1), getattr(torch.tensor(x), op)(1)
      same(out.values, ref.values, what=f"{op} of {x.dtype}"); same(out.indices, ref.indices, what=f"{op} of {x.dtype}")
    out, ref = getattr(Tensor(3.5), op)(0), getattr(torch.tensor(3.5), op)(0)
    same(out.values, ref.values); same(out.indices, ref.indices)
    with pytest.raises(IndexError, match=r"axis 2 .*\(3, 7\)"): getattr(Tensor(i), op)(2)
    with pytest.raises(TypeError, match=r"both dim=1 and axis=0"): getattr(Tensor(i), op)(1, axis=0)
    with pytest.raises(ValueError, match=r"\(3, 0\)"): getattr(Tensor.zeros(3, 0), op)(1)
    with pytest.raises(TypeError, match="keepdim"): getattr(Tensor(i), op)(Tensor(i), keepdim=True)

# ---------------------------------------------------------------- isclose / allclose / equal

def test_isclose_matches_torch_at_infinities_nans_and_tolerances():
  a = np.array([1.0, 1.0, math.inf, math.inf, -math.inf, math.nan, math.nan, 0.0, 1e-9, 100.0], np.float32)
  b = np.array([1.0 + 1e-6, 1.1, math.inf, -math.inf, 1.0, math.nan, 1.0, 1e-9, 0.0, 100.001], np.float32)
  for kw in ({}, {"equal_nan": True}, {"rtol": 0.2, "atol": 0.0}, {"rtol": 0.0, "atol": 1e-8}):
    out = Tensor(a).isclose(Tensor(b), **kw)
    assert out.dtype == dtypes.bool
    same(out, torch.isclose(torch.tensor(a), torch.tensor(b), **kw), what=str(kw))
  i, j = np.array([1, 5, -3, 100], np.int32), np.array([1, 6, -2, 90], np.int32)
  same(Tensor(i).isclose(Tensor(j), rtol=0.2, atol=0), torch.isclose(torch.tensor(i), torch.tensor(j), rtol=0.2, atol=0))
  same(Tensor(i > 1).isclose(Tensor(j > 1)), torch.isclose(torch.tensor(i > 1), torch.tensor(j > 1)))
  same(Tensor(a[:4]).isclose(Tensor(a[:4]).reshape(4, 1)), torch.isclose(torch.tensor(a[:4]), torch.tensor(a[:4]).reshape(4, 1)))  # broadcasts
  # mixed dtypes promote (torch raises "Float did not match Double")
  same(Tensor(a).isclose(Tensor(b.astype(np.float64))), torch.isclose(tt(a), tt(b.astype(np.float32)).double()))
  with pytest.raises(ValueError, match="rtol"): Tensor(a).isclose(Tensor(b), rtol=-1)
  with pytest.raises(ValueError, match=r"\(10,\).*\(3,\)"): Tensor(a).isclose(Tensor.ones(3))

def test_allclose_and_equal_are_python_bools():
  x = rng.standard_normal((3, 4)).astype(np.float32)
  t = Tensor(x)
  for other in (x, x + 1e-7, x + 1e-3, x.T.copy().T):
    assert t.allclose(Tensor(other)) is torch.allclose(tt(x), tt(other))
    assert t.equal(Tensor(other)) is torch.equal(tt(x), tt(other))
  assert t.allclose(Tensor(x + 1e-3), atol=1e-2) is True
  assert t.equal(t[:2]) is False  # another shape: False, as torch.equal (no error)
  assert Tensor([1, 2]).equal(Tensor([1.0, 2.0])) is torch.equal(torch.tensor([1, 2]), torch.tensor([1.0, 2.0]))
  assert Tensor([math.nan]).equal(Tensor([math.nan])) is False and Tensor.zeros(0).equal(Tensor.zeros(0)) is True
  assert Tensor([math.nan]).allclose(Tensor([math.nan]), equal_nan=True) is True
  with pytest.raises(TypeError, match="equal: other must be a Tensor"): t.equal(x)

# ---------------------------------------------------------------- statistics

def test_std_mean_var_mean_corrections_and_torchs_positional_unbiased():
  x = rng.standard_normal((4, 5, 6)).astype(np.float32)
  for dim, kw in ((None, {}), (1, {"correction": 0}), ((0, 2), {"keepdim": True}), (-1, {"unbiased": False}), (2, {"correction": 2})):
    for op in ("std_mean", "var_mean"):
      out, ref = getattr(Tensor(x), op)(dim, **kw), getattr(torch, op)(tt(x), dim, **kw)
      assert isinstance(out, tuple) and len(out) == 2
      same(out[0], ref[0], rtol=1e-5, atol=1e-6, what=op); same(out[1], ref[1], rtol=1e-5, atol=1e-6, what=op)
  same(Tensor(x).var(1, False), tt(x).var(1, False), rtol=1e-5)  # var(dim, unbiased) positionally, as torch
  same(Tensor(x).std(0, True, True), tt(x).std(0, True, True), rtol=1e-5)
  grads(lambda t: t.std_mean(1)[0] + t.var_mean(1, correction=0)[1], lambda t: torch.std_mean(t, 1)[0] + torch.var_mean(t, 1, correction=0)[1], x[0])
  with pytest.raises(TypeError, match="unbiased or correction"): Tensor(x).var(1, True, correction=1)

# ---------------------------------------------------------------- median / mode / kthvalue

def test_median_along_a_dim_picks_torchs_index_even_with_ties():
  x = rng.integers(0, 3, (8, 7)).astype(np.float32)  # heavy ties: torch's index is the one a stable sort puts there
  x[1, 3] = x[1, 5] = x[6, 0] = math.nan  # a NaN makes the median NaN, at the first NaN
  for dim, keepdim in ((1, False), (0, True)):
    out, ref = Tensor(x).median(dim, keepdim), tt(x).median(dim, keepdim)
    assert isinstance(out, return_types.median)
    same(out.values, ref.values); same(out.indices, ref.indices)
  out, ref = Tensor(x.T.copy()).T.median(-1), tt(x).median(-1)  # a non-contiguous view
  same(out.values, ref.values); same(out.indices, ref.indices)
  grads(lambda t: t.median(1).values, lambda t: t.median(1).values, np.nan_to_num(x))
  i = rng.integers(-9, 9, (3, 6)).astype(np.int32)
  out, ref = Tensor(i).median(0), torch.tensor(i).median(0)
  same(out.values, ref.values); same(out.indices, ref.indices)

def test_median_of_everything_is_the_lower_median_with_its_gradient_shared():
  x = np.array([[1.0, 3.0, 3.0], [3.0, 2.0, 3.0]], np.float32)  # lower median 3, reached four times
  grads(lambda t: t.median(), lambda t: t.median(), x)
  for y in (rng.standard_normal(7), rng.standard_normal((2, 4)), np.array([1.0, math.nan, 2.0]), np.array(4.0)):
    same(Tensor(y.astype(np.float32)).median(), tt(y.astype(np.float32)).median())
  same(Tensor(np.array([4, 1, 9, 2], np.int64)).median(), torch.tensor([4, 1, 9, 2]).median())
  same(Tensor.zeros(0).median(), torch.zeros(0).median())  # NaN, as torch
  with pytest.raises(IndexError, match=r"\(2, 0\)"): Tensor.zeros(2, 0).median(1)

def test_mode_is_the_smallest_most_frequent_value_at_its_last_index():
  x = rng.integers(-2, 3, (20, 7)).astype(np.float32)
  for t, r, kw in ((Tensor(x), tt(x), {}), (Tensor(x), tt(x), {"dim": 0, "keepdim": True}), (Tensor(x.T.copy()).T, tt(x), {"dim": -2})):
    out, ref = t.mode(**kw), r.mode(**kw)
    assert isinstance(out, return_types.mode)
    same(out.values, ref.values)
    d = kw.get("dim", -1)
    idx = out.indices.numpy() if kw.get("keepdim") else np.expand_dims(out.indices.numpy(), d)
    last = np.where(x == (ref.values.numpy() if kw.get("keepdim") else np.expand_dims(ref.values.numpy(), d)),
                    np.arange(x.shape[d]).reshape((-1, 1) if d in (0, -2) else (1, -1)), -1).max(d, keepdims=True)
    # the last index of the mode value; torch's is that one on rows of up to 7, any of them (its sort is unstable) beyond
    np.testing.assert_array_equal(idx, last)
  i = rng.integers(0, 4, (6, 5)).astype(np.int32)
  out, ref = Tensor(i).mode(1), torch.tensor(i).mode(1)
  same(out.values, ref.values); same(out.indices, ref.indices)
  grads(lambda t: t.mode(1).values, lambda t: t.mode(1).values, x[:5])
  with pytest.raises(IndexError, match=r"\(2, 0\)"): Tensor.zeros(2, 0).mode()

def test_kthvalue_values_and_indices():
  x = rng.standard_normal((8, 7)).astype(np.float32)  # distinct values: the index is unambiguous
  for k, dim, keepdim in ((4, -1, False), (2, 0, True)):
    out, ref = Tensor(x).kthvalue(k, dim, keepdim), tt(x).kthvalue(k, dim, keepdim)
    same(out.values, ref.values); same(out.indices, ref.indices)
  grads(lambda t: t.kthvalue(4, 1).values, lambda t: t.kthvalue(4, 1).values, x)
  with pytest.raises(IndexError, match=r"k=8 .*size 7"): Tensor(x).kthvalue(8)

# ---------------------------------------------------------------- names: dim=, keepdim=, axis=, named tuples

ALIASED = {  # op: call with the axis passed as a keyword `kw`
  "sum": lambda t, **kw: t.sum(keepdim=True, **kw), "prod": lambda t, **kw: t.prod(**kw), "mean": lambda t, **kw: t.mean(keepdim=True, **kw),
  "var": lambda t, **kw: t.var(**kw), "std": lambda t, **kw: t.std(keepdim=True, **kw), "argmax": lambda t, **kw: t.argmax(**kw),
  "argmin": lambda t, **kw: t.argmin(keepdim=True, **kw), "logsumexp": lambda t, **kw: t.logsumexp(**kw), "softmax": lambda t, **kw: t.softmax(**kw),
  "log_softmax": lambda t, **kw: t.log_softmax(**kw), "cumsum": lambda t, **kw: t.cumsum(**kw), "cumprod": lambda t, **kw: t.cumprod(**kw),
  "logcumsumexp": lambda t, **kw: t.logcumsumexp(**kw), "cummax": lambda t, **kw: t.cummax(**kw).values, "cummin": lambda t, **kw: t.cummin(**kw).indices,
  "sort": lambda t, **kw: t.sort(**kw).indices, "argsort": lambda t, **kw: t.argsort(descending=True, **kw), "topk": lambda t, **kw: t.topk(2, **kw).values,
  "all": lambda t, **kw: t.all(**kw), "any": lambda t, **kw: t.any(keepdim=True, **kw), "amax": lambda t, **kw: t.amax(**kw),
  "amin": lambda t, **kw: t.amin(**kw), "median": lambda t, **kw: t.median(**kw).values, "mode": lambda t, **kw: t.mode(**kw).indices,
  "kthvalue": lambda t, **kw: t.kthvalue(2, **kw).values, "vector_norm": lambda t, **kw: t.vector_norm(1, **kw), "norm": lambda t, **kw: t.norm(**kw),
  "std_mean": lambda t, **kw: t.std_mean(**kw)[0], "var_mean": lambda t, **kw: t.var_mean(**kw)[1], "aminmax": lambda t, **kw: t.aminmax(**kw).max,
  "max": lambda t, **kw: t.max(**kw) if "axis" in kw else t.max(**kw).values, "min": lambda t, **kw: t.min(**kw) if "axis" in kw else t.min(**kw).values,
}

@pytest.mark.parametrize("op", list(ALIASED))
def test_dim_and_axis_name_the_same_axis_and_not_both(op):
  x = rng.integers(-3, 4, (3, 4)).astype(np.float32) / 2
  fn = ALIASED[op]
  t = torch.tensor(x.astype(np.float64))
  ref = {"softmax": lambda: t.softmax(-2), "log_softmax": lambda: t.log_softmax(-2), "vector_norm": lambda: torch.linalg.vector_norm(t, 1, -2),
         "norm": lambda: t.norm(dim=-2), "topk": lambda: t.topk(2, -2).values, "argsort": lambda: t.argsort(dim=-2, descending=True, stable=True),
         "sort": lambda: t.sort(dim=-2, stable=True).indices, "kthvalue": lambda: t.kthvalue(2, -2).values, "std_mean": lambda: torch.std_mean(t, -2)[0],
         "var_mean": lambda: torch.var_mean(t, -2)[1], "aminmax": lambda: torch.aminmax(t, dim=-2).max, "logcumsumexp": lambda: torch.logcumsumexp(t, -2),
         }.get(op, lambda: fn(t, dim=-2) if op not in ("max", "min") else getattr(t, op)(dim=-2).values)()
  same(fn(Tensor(x), dim=-2), ref, rtol=1e-6, atol=1e-6, what=f"{op}(dim=-2)")
  same(fn(Tensor(x), axis=-2), ref, rtol=1e-6, atol=1e-6, what=f"{op}(axis=-2)")
  with pytest.raises(TypeError, match=rf"{op}: got both dim=0 and axis=1"): fn(Tensor(x), dim=0, axis=1)
  with pytest.raises(IndexError, match=r"axis 2 is out of range .*\(3, 4\)"): fn(Tensor(x), dim=2)

def test_sorts_and_scans_return_named_tuples_that_unpack():
  x = rng.standard_normal((3, 5)).astype(np.float32)
  t, r = Tensor(x), tt(x)
  for name, out, ref in (("sort", t.sort(), r.sort()), ("topk", t.topk(3, dim=0), r.topk(3, dim=0)), ("cummax", t.cummax(1), r.cummax(1)),
                         ("cummin", t.cummin(dim=0), r.cummin(dim=0))):
    assert isinstance(out, getattr(return_types, name)) and isinstance(out, tuple) and out._fields == ("values", "indices")
    v, i = out
    same(v, ref.values, what=name); same(i, ref.indices, what=name)
    assert repr(out).startswith(f"lucidgrad.return_types.{name}(values=")
  assert return_types.max(1, 2) == (1, 2) and return_types.aminmax(min=1, max=2).max == 2

def test_cummax_cummin_give_each_gradient_to_its_index_as_torch():
  x = rng.integers(-2, 3, (3, 9)).astype(np.float32)  # ties: torch adds each running value's gradient at its index
  grads(lambda t: t.cummax(1).values, lambda t: t.cummax(1).values, x)
  grads(lambda t: t.T.cummin(0).values, lambda t: t.T.cummin(0).values, x)
