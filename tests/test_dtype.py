"""dtypes: PyTorch's promotion table (tensor with tensor, tensor with Python scalar), the dtype each op returns, the
default float, conversions to and from NumPy and Python values, and bfloat16 rounding."""
import math
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes
from lucidgrad.dtype import promote_types, result_type_scalar, as_const, min_max, f32_to_bf16, bf16_to_f32
from conftest import ALL, FLOATS, INTS, np_dtype, bf16_round, round_to, rand_np, check

D = {"b": dtypes.bool, "u8": dtypes.uint8, "u16": dtypes.uint16, "u32": dtypes.uint32, "u64": dtypes.uint64, "i8": dtypes.int8,
     "i16": dtypes.int16, "i32": dtypes.int32, "i64": dtypes.int64, "f16": dtypes.float16, "bf16": dtypes.bfloat16, "f32": dtypes.float32,
     "f64": dtypes.float64}

# torch.promote_types for the dtypes PyTorch fully supports, written out from its documented rules: a higher category
# (bool < integer < float) wins whatever its size; within a category the larger type wins; uint8 with a signed int
# needs the next signed int (int16 at least); float16 with bfloat16 gives float32.
TORCH_TABLE = """
      b    u8   i8   i16  i32  i64  f16  bf16 f32  f64
b     b    u8   i8   i16  i32  i64  f16  bf16 f32  f64
u8    u8   u8   i16  i16  i32  i64  f16  bf16 f32  f64
i8    i8   i16  i8   i16  i32  i64  f16  bf16 f32  f64
i16   i16  i16  i16  i16  i32  i64  f16  bf16 f32  f64
i32   i32  i32  i32  i32  i32  i64  f16  bf16 f32  f64
i64   i64  i64  i64  i64  i64  i64  f16  bf16 f32  f64
f16   f16  f16  f16  f16  f16  f16  f16  f32  f32  f64
bf16  bf16 bf16 bf16 bf16 bf16 bf16 f32  bf16 f32  f64
f32   f32  f32  f32  f32  f32  f32  f32  f32  f32  f64
f64   f64  f64  f64  f64  f64  f64  f64  f64  f64  f64
"""
# uint16/32/64: PyTorch promotes them only with themselves and with floats (a float wins); with other ints it raises.
# lucidgrad extends the same rules (the smallest dtype that holds both, as NumPy does) and raises only where no
# integer dtype holds both: uint64 with a signed int. 'x' marks that error.
UINT_TABLE = """
      b    u8   u16  u32  u64  i8   i16  i32  i64  f16  bf16 f32  f64
u16   u16  u16  u16  u32  u64  i32  i32  i32  i64  f16  bf16 f32  f64
u32   u32  u32  u32  u32  u64  i64  i64  i64  i64  f16  bf16 f32  f64
u64   u64  u64  u64  u64  u64  x    x    x    x    f16  bf16 f32  f64
"""

def parse(table):
  head, *rows = [r.split() for r in table.strip().splitlines()]
  return [(D[r[0]], D[c], None if v == "x" else D[v]) for r in rows for c, v in zip(head, r[1:])]

PAIRS = parse(TORCH_TABLE) + parse(UINT_TABLE)

@pytest.mark.parametrize("a,b,out", PAIRS, ids=str)
def test_promote_types_table(a, b, out):
  for x, y in ((a, b), (b, a)):  # promotion is symmetric
    if out is None:
      with pytest.raises(TypeError, match=f"{x.name}.*{y.name}|{y.name}.*{x.name}"): promote_types(x, y)
    else: assert promote_types(x, y) == out

def test_promotion_table_covers_every_pair():
  assert {(a, b) for a, b, _ in PAIRS} | {(b, a) for a, b, _ in PAIRS} == {(a, b) for a in ALL for b in ALL}

@pytest.mark.parametrize("a,b,out", [p for p in PAIRS if p[2] is not None], ids=str)
def test_tensor_ops_promote(a, b, out):
  x, y = Tensor.ones(2, dtype=a), Tensor.zeros(2, dtype=b)
  assert (x + y).dtype == (y + x).dtype == (x * y).dtype == y.maximum(x).dtype == x.minimum(y).dtype == out
  assert y.where(x, y).dtype == x.cat(y).dtype == (x @ y).dtype == out
  assert (x < y).dtype == (x == y).dtype == (x != y).dtype == (x >= y).dtype == dtypes.bool
  assert (x / y).dtype == (out if out.is_float() else dtypes.float32)
  if out != dtypes.bool: assert (x - y).dtype == (x // y).dtype == (x % y).dtype == (x ** y).dtype == out
  if not out.is_float(): assert (x & y).dtype == (x | y).dtype == (x ^ y).dtype == out

# realized, to see that both operands are converted before the op: small values every dtype holds
VALUE_PAIRS = [(D[a], D[b]) for a, b in [("b", "u8"), ("b", "i32"), ("b", "f16"), ("u8", "i8"), ("u8", "i16"), ("u8", "f32"), ("i8", "i64"),
               ("i8", "bf16"), ("i16", "f16"), ("i32", "f64"), ("i64", "f32"), ("f16", "bf16"), ("f16", "f64"), ("bf16", "f32"), ("u16", "i8"),
               ("u32", "i32"), ("u64", "u8"), ("u32", "f16"), ("b", "u64")]]

@pytest.mark.parametrize("a,b", VALUE_PAIRS, ids=str)
def test_mixed_dtype_values(a, b, rng):
  """Both operands are converted to the promoted dtype first (ints over their whole range), then added there."""
  x, y = rand_np(rng, (2, 5), a), rand_np(rng, (2, 5), b)
  out = promote_types(a, b)
  if out.is_float(): ref = round_to(round_to(x, out).astype(np.float64) + round_to(y, out).astype(np.float64), out)
  else: ref = x.astype(np_dtype(out)) + y.astype(np_dtype(out))
  check(Tensor(x, dtype=a) + Tensor(y, dtype=b), ref, out, rtol=2.0**-7 if out == dtypes.bfloat16 else 2.0**-10 if out.itemsize == 2 else 1e-7)

# tensor (op) Python scalar: the scalar decides only when it is of a higher category (bool < int < float), and then it
# gives the default dtype of its category
def scalar_expected(dt, s):
  if isinstance(s, bool) or dt.is_float(): return dt
  if isinstance(s, int): return dtypes.int64 if dt == dtypes.bool else dt
  return dtypes.float32

@pytest.mark.parametrize("dt", ALL, ids=str)
@pytest.mark.parametrize("s", [True, 3, -200, 2.5, 1e10], ids=repr)
def test_tensor_with_python_scalar(dt, s):
  out = scalar_expected(dt, s)
  assert result_type_scalar(dt, s) == out
  t = Tensor.ones(3, dtype=dt)
  for r in (t + s, s + t, t * s, s * t, t.maximum(s), t.where(t, s)): assert r.dtype == out
  if out != dtypes.bool: assert (t - s).dtype == (s - t).dtype == out
  assert (t < s).dtype == (s < t).dtype == (t == s).dtype == dtypes.bool
  assert (t / s).dtype == (s / t).dtype == (out if out.is_float() else dtypes.float32)
  if not out.is_float() and out != dtypes.bool: assert (t // s).dtype == (t % s).dtype == (t ** s).dtype == out

def test_numpy_scalars_act_like_python_scalars():
  t = Tensor.ones(2, dtype=dtypes.int16)
  assert (t + np.float64(2.5)).dtype == dtypes.float32 and (t + np.int64(7)).dtype == dtypes.int16

def test_examples_named_in_the_spec():
  i32, b = Tensor([1, 2], dtype=dtypes.int32), Tensor([True, False])
  assert (i32 + 1.5).dtype == dtypes.float32        # int tensor + float scalar -> default float
  assert (b + 1).dtype == dtypes.int64              # bool tensor + int scalar -> int64
  assert (i32 / i32).dtype == dtypes.float32        # int / int -> float
  assert i32.sum().dtype == dtypes.int64 and b.sum().dtype == dtypes.int64  # sum of ints -> int64
  check(i32 / Tensor([4, 4], dtype=dtypes.int32), np.array([0.25, 0.5], np.float32), dtypes.float32)
  check(b + 1, np.array([2, 1]), dtypes.int64)
  check(i32 + 1.5, np.array([2.5, 3.5], np.float32), dtypes.float32)

@pytest.fixture
def float64_default():
  old = Tensor.default_float
  Tensor.default_float = dtypes.float64
  yield
  Tensor.default_float = old

def test_default_float(float64_default):
  i = Tensor([1, 2], dtype=dtypes.int32)
  assert (i + 0.5).dtype == (i / i).dtype == i.exp().dtype == i.mean().dtype == dtypes.float64
  assert Tensor([1.5]).dtype == Tensor(2.5).dtype == Tensor.zeros(2).dtype == Tensor.rand(2).dtype == Tensor.arange(0.5, 2).dtype == dtypes.float64
  assert (Tensor([True]) + 2.5).dtype == dtypes.float64 and (Tensor.ones(2, dtype=dtypes.float16) + 2.5).dtype == dtypes.float16
  check(i / 3, np.array([1 / 3, 2 / 3]), dtypes.float64, rtol=1e-15)

@pytest.mark.parametrize("dt", ALL, ids=str)
def test_result_dtypes_of_ops(dt):
  t = Tensor.ones(2, 3, dtype=dt)
  fl = dt if dt.is_float() else dtypes.float32
  for f in (Tensor.exp, Tensor.log, Tensor.sqrt, Tensor.sin, Tensor.sigmoid, Tensor.tanh, Tensor.reciprocal, Tensor.gelu, Tensor.mean, Tensor.var,
            Tensor.softmax, Tensor.log_softmax, Tensor.logsumexp): assert f(t).dtype == fl, f.__name__
  for f in (Tensor.max, Tensor.min, Tensor.abs, Tensor.contiguous, Tensor.flatten, Tensor.floor, Tensor.round): assert f(t).dtype == dt, f.__name__
  acc = dt if dt.is_float() else dtypes.int64
  assert t.sum().dtype == t.sum(1).dtype == t.prod().dtype == acc
  assert t.argmax().dtype == t.argmin(0).dtype == dtypes.int64
  assert t.logical_not().dtype == t.logical_and(t).dtype == t.logical_or(True).dtype == t.logical_xor(t).dtype == dtypes.bool
  if dt != dtypes.bool: assert (-t).dtype == t.sign().dtype == t.relu().dtype == dt
  if dt != dtypes.bool: assert (t @ t.T).dtype == dt
  assert t.sum(dtype=dtypes.float64).dtype == dtypes.float64 and t.cast(dtypes.int8).dtype == dtypes.int8

def test_cast_accepts_names_numpy_dtypes_and_aliases():
  t = Tensor.ones(2)
  assert t.cast("float16").dtype == t.cast(np.float16).dtype == t.cast(dtypes.half).dtype == t.half().dtype == dtypes.float16
  assert t.float().dtype == dtypes.float32 and t.double().dtype == dtypes.float64 and t.int().dtype == dtypes.int32
  assert t.long().dtype == dtypes.int64 and t.bool().dtype == dtypes.bool and t.cast("bfloat16").dtype == dtypes.bfloat16
  assert Tensor([1, 2], dtype="uint8").dtype == Tensor([1, 2], dtype=np.uint8).dtype == dtypes.uint8

@pytest.mark.parametrize("dt", ALL, ids=str)
def test_dtype_facts(dt):
  assert dtypes.from_name(dt.name) == dt and dt.itemsize == (2 if dt == dtypes.bfloat16 else np.dtype(dt.np).itemsize)
  if dt != dtypes.bfloat16: assert dtypes.from_np(dt.np) == dt and np.dtype(dt.np).itemsize == dt.itemsize
  assert dt.is_float() == (dt in FLOATS) and dt.is_int() == (dt in INTS) and dt.is_bool() == (dt == dtypes.bool)
  lo, hi = min_max(dt)
  if dt.is_int(): assert (lo, hi) == (np.iinfo(dt.np).min, np.iinfo(dt.np).max)
  elif dt.is_float(): assert (lo, hi) == (-math.inf, math.inf)
  t = Tensor.empty(2, dtype=dt)
  assert t.element_size() == dt.itemsize and t.nbytes() == 2 * dt.itemsize

@pytest.mark.parametrize("x,dt,out", [(300, dtypes.int8, 44), (-1, dtypes.uint32, 2**32 - 1), (2**63, dtypes.int64, -2**63), (-129, dtypes.int8, 127),
                                      (70000, dtypes.uint16, 4464), (2.9, dtypes.int32, 2), (-2.9, dtypes.int32, -2),
                                      (1e6, dtypes.float16, math.inf), (0.1, dtypes.bfloat16, 0.10009765625), (1 + 2**-8, dtypes.bfloat16, 1.0),
                                      (0.1, dtypes.float32, float(np.float32(0.1))), (2, dtypes.bool, True), (0.0, dtypes.bool, False)], ids=str)
def test_constants_convert_like_casts(x, dt, out):
  """Python constants in a graph wrap (ints) and round (floats) to their dtype the way a cast does."""
  assert as_const(x, dt) == out and type(as_const(x, dt)) is type(out)

def test_bfloat16_rounding_helpers(rng):
  x = np.concatenate([rng.standard_normal(2000).astype(np.float32) * 10, np.float32([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 3.4e38, np.inf, -np.inf,
                                                                                    1e-40, 0.0, -0.0, 65504.0])])
  ref = bf16_round(x)
  assert [bf16_to_f32(f32_to_bf16(float(v))) for v in x] == ref.tolist()
  assert f32_to_bf16(float("nan")) == 0x7fc0 and math.isnan(bf16_to_f32(f32_to_bf16(float("nan"))))
  # through a tensor: from Python, from NumPy and by a cast inside a kernel
  check(Tensor(x.tolist(), dtype=dtypes.bfloat16), ref, dtypes.bfloat16)
  check(Tensor(x, dtype=dtypes.bfloat16), ref, dtypes.bfloat16)
  check(Tensor(x).cast(dtypes.bfloat16), ref, dtypes.bfloat16)

def test_bfloat16_arithmetic_rounds_each_result(rng):
  a, b = bf16_round(rng.standard_normal(64) * 4), bf16_round(rng.standard_normal(64) * 4)
  ta, tb = Tensor(a, dtype=dtypes.bfloat16), Tensor(b, dtype=dtypes.bfloat16)
  check(ta + tb, bf16_round(a + b), dtypes.bfloat16)
  check(ta * tb, bf16_round(a * b), dtypes.bfloat16)
  check(ta / tb, bf16_round(a / b), dtypes.bfloat16)
  check((ta * tb).sum(), bf16_round(np.float32(bf16_round(a * b).astype(np.float64).sum())), dtypes.bfloat16, rtol=2.0**-8)

def test_python_values_give_pytorch_dtypes():
  assert dtypes.from_py(True) == dtypes.bool and dtypes.from_py(1) == dtypes.int64 and dtypes.from_py(1.0) == dtypes.float32
  assert dtypes.from_py([1, 2.0]) == dtypes.float32 and dtypes.from_py([True, 1]) == dtypes.int64 and dtypes.from_py([[True], [False]]) == dtypes.bool
  assert dtypes.from_py(np.int8(3)) == dtypes.int8 and dtypes.from_py([]) == dtypes.float32
  assert Tensor.full((2,), 3).dtype == dtypes.int64 and Tensor.full((2,), 3.0).dtype == dtypes.float32 and Tensor.full((2,), True).dtype == dtypes.bool
  assert Tensor.arange(3).dtype == dtypes.int64 and Tensor.arange(3.0).dtype == dtypes.float32 and Tensor.eye(2).dtype == dtypes.float32
