"""float16 and bfloat16: arithmetic rounds once, sums, means and matmuls accumulate in float32 (checked on lengths where
accumulating in the half dtype visibly differs), and casts round to nearest even, held to exact bit-level references."""
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes

HALF = [dtypes.float16, dtypes.bfloat16]
N = 4096

def bf16_bits(x) -> np.ndarray:
  """float32 -> bfloat16 bits, round to nearest even, by integer arithmetic on the float32 bits (NaN handled by the caller)."""
  u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
  return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)

def bf16_to_f32(bits) -> np.ndarray: return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)

def round_to(x, dt) -> np.ndarray:
  """float64 values rounded once to `dt` (normal range), returned as float64: bfloat16 keeps 8 significant bits, ties to even."""
  x = np.asarray(x, np.float64)
  if dt == dtypes.float16: return x.astype(np.float16).astype(np.float64)
  m, e = np.frexp(x)
  return np.ldexp(np.round(m * 256), e - 8)

def ulp(x, dt) -> np.ndarray:
  """The spacing of `dt` at |x| (normal range)."""
  mant = 10 if dt == dtypes.float16 else 7
  return 2.0 ** (np.floor(np.log2(np.abs(x))) - mant)

def half_values(rng, shape, dt, lo=1.0, hi=2.0) -> np.ndarray:
  """Uniform values that `dt` holds exactly, as float64."""
  return round_to(rng.uniform(lo, hi, shape).astype(np.float32), dt)

def naive_sum(x, dt) -> float:
  """Left-to-right sum rounding after every addition, as accumulating in `dt` would."""
  acc = 0.0
  for v in np.asarray(x, np.float64).ravel(): acc = float(round_to(acc + v, dt))
  return acc

def assert_within_one_ulp(out, ref, dt):
  """out is ref (a float64 reference rounded once to dt), give or take the one ulp a different float32 summation order
  may cross a rounding boundary by."""
  out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
  assert (np.abs(out - ref) <= ulp(ref, dt)).all(), f"{out.ravel()[:4]} vs float32-accumulated {ref.ravel()[:4]}"

# ---------------------------------------------------------------- arithmetic

@pytest.mark.parametrize("dt", HALF, ids=str)
def test_basic_arithmetic_rounds_once(dt):
  """+ - * / and sqrt of half inputs are correctly rounded: done in float32 (wide enough for that) and rounded once."""
  rng = np.random.default_rng(0)
  a, b = half_values(rng, 512, dt, -4, 4), half_values(rng, 512, dt, 0.25, 4)
  ta, tb = Tensor(a.astype(np.float32), dtype=dt), Tensor(b.astype(np.float32), dtype=dt)
  outs = [ta + tb, ta - tb, ta * tb, ta / tb, tb.sqrt()]
  refs = [a + b, a - b, a * b, a / b, np.sqrt(b)]
  outs[0].realize(*outs[1:])
  for name, o, r in zip(["+", "-", "*", "/", "sqrt"], outs, refs):
    assert o.dtype == dt
    np.testing.assert_array_equal(o.numpy().astype(np.float64), round_to(r, dt), err_msg=name)

# ---------------------------------------------------------------- accumulation in float32

@pytest.mark.parametrize("dt", HALF, ids=str)
def test_sum_accumulates_in_float32(dt):
  rng = np.random.default_rng(1)
  x = half_values(rng, (3, N), dt)
  out = Tensor(x.astype(np.float32), dtype=dt).sum(1)
  assert out.dtype == dt
  ref = round_to(x.sum(1), dt)
  naive = np.array([naive_sum(r, dt) for r in x])
  assert (np.abs(naive - ref) > 4 * ulp(ref, dt)).all(), "the inputs must tell the two accumulations apart"
  assert_within_one_ulp(out.numpy(), ref, dt)
  assert_within_one_ulp(Tensor(x.astype(np.float32), dtype=dt).sum().numpy(), round_to(x.sum(), dt), dt)

@pytest.mark.parametrize("dt", HALF, ids=str)
def test_mean_accumulates_in_float32(dt):
  rng = np.random.default_rng(2)
  x = half_values(rng, (2, N), dt)
  out = Tensor(x.astype(np.float32), dtype=dt).permute(1, 0).mean(0)  # a non-contiguous read on the way
  assert out.dtype == dt
  ref = round_to(x.mean(1), dt)
  naive = np.array([round_to(naive_sum(r, dt) / N, dt) for r in x])
  assert (np.abs(naive - ref) > 4 * ulp(ref, dt)).all()
  assert_within_one_ulp(out.numpy(), ref, dt)

def cancelling_pairs(dt) -> tuple[np.ndarray, np.ndarray]:
  """A row a and a column b of length N whose products pair up as (1+e) * 1.5 and 1 * -(1.5+e), e the ulp of 1: each
  pair adds e/2, the sum N e/4. A product rounded to `dt` makes the first 1.5+2e (a tie, to even), the sum N e/2.
  Every partial sum in any order is a multiple of e/2 below 2^13, so float32 accumulates it exactly in any order."""
  e = 2.0 ** (-10 if dt == dtypes.float16 else -7)
  return np.tile([1 + e, 1.0], N // 2), np.tile([1.5, -(1.5 + e)], N // 2)

@pytest.mark.parametrize("dt", HALF, ids=str)
def test_matmul_multiplies_and_accumulates_in_float32(dt):
  a, b = cancelling_pairs(dt)
  A = np.stack([a, -a, 2 * a])               # (3, N)
  B = np.stack([b, np.ones(N), -b], axis=1)  # (N, 3)
  out = Tensor(A.astype(np.float32), dtype=dt) @ Tensor(B.astype(np.float32), dtype=dt)
  assert out.dtype == dt and out.shape == (3, 3)
  np.testing.assert_array_equal(out.numpy().astype(np.float64), round_to(A @ B, dt))
  assert (A @ B)[0, 0] == N * (a[0] - 1) / 4 != round_to(np.sum(round_to(a * b, dt)), dt)

@pytest.mark.parametrize("dt", HALF, ids=str)
def test_matmul_of_long_rows_is_float32_accumulated(dt):
  rng = np.random.default_rng(3)
  A, B = half_values(rng, (2, 4, N), dt), half_values(rng, (N, 3), dt)
  out = (Tensor(A.astype(np.float32), dtype=dt) @ Tensor(B.astype(np.float32), dtype=dt)).numpy()
  ref = round_to(A @ B, dt)
  naive = naive_sum(A[0, 0] * B[:, 0], dt)  # every product is exact in float32, so this differs only by the accumulation
  assert abs(naive - ref[0, 0, 0]) > 4 * ulp(ref[0, 0, 0], dt)
  assert out.shape == (2, 4, 3)
  assert_within_one_ulp(out, ref, dt)

@pytest.mark.parametrize("dt", HALF, ids=str)
def test_vector_dot_is_float32_accumulated(dt):
  a, b = cancelling_pairs(dt)
  out = Tensor(a.astype(np.float32), dtype=dt) @ Tensor(b.astype(np.float32), dtype=dt)
  assert out.shape == () and out.dtype == dt
  assert out.item() == round_to(a @ b, dt) != 0

# ---------------------------------------------------------------- casts

def f32_test_bits(rng, tie_lows) -> np.ndarray:
  """float32 bit patterns: every value of the upper 16 bits with each low pattern in `tie_lows` (exact ties, one above,
  one below, ...), plus random bits; together they hold zeros, subnormals, the largest normals, infinities and NaNs."""
  hi = np.arange(1 << 16, dtype=np.uint32) << 16
  grid = (hi[:, None] | np.asarray(tie_lows, np.uint32)[None, :]).ravel()
  return np.concatenate([grid, rng.integers(0, 1 << 32, 50000, dtype=np.uint64).astype(np.uint32)])

def test_float32_to_bfloat16_rounds_to_nearest_even():
  bits = f32_test_bits(np.random.default_rng(4), [0, 1, 0x4000, 0x7FFF, 0x8000, 0x8001, 0xC000, 0xFFFF])
  f = bits.view(np.float32)
  out = Tensor(f).cast(dtypes.bfloat16).bitcast(dtypes.uint16).numpy()
  nan = np.isnan(f)
  np.testing.assert_array_equal(out[~nan], bf16_bits(f[~nan]))
  assert ((out[nan] & 0x7F80) == 0x7F80).all() and (out[nan] & 0x7F).all(), "NaN must stay NaN (not become inf)"
  # spot checks of the reference itself: ties go to even, the largest float32 rounds up to inf, subnormals round too
  cases = {0x3F808000: 0x3F80, 0x3F818000: 0x3F82, 0x3F808001: 0x3F81, 0x7F7FFFFF: 0x7F80, 0xFF7FFFFF: 0xFF80,
           0x00008000: 0x0000, 0x00018000: 0x0002, 0x80008001: 0x8001, 0x7F800000: 0x7F80, 0x80000000: 0x8000}
  for k, v in cases.items(): assert bf16_bits(np.array([k], np.uint32).view(np.float32))[0] == v, hex(k)

def test_float32_to_bfloat16_from_host_values_rounds_the_same():
  """Tensor(float32 values, dtype=bfloat16) rounds on the host: the same bits as the kernel's cast."""
  bits = f32_test_bits(np.random.default_rng(5), [0x8000])[::13]
  f = bits.view(np.float32)
  out = Tensor(f, dtype=dtypes.bfloat16).bitcast(dtypes.uint16).numpy()
  nan = np.isnan(f)
  np.testing.assert_array_equal(out[~nan], bf16_bits(f[~nan]))
  assert np.isnan(bf16_to_f32(out[nan])).all()

def test_float32_to_float16_matches_numpy():
  rng = np.random.default_rng(6)
  # float16 keeps 10 of float32's 23 mantissa bits: ties and their neighbours sit in the low 13 bits
  bits = f32_test_bits(rng, [0, 1, 0xFFF, 0x1000, 0x1001, 0x1FFF, 0x3000, 0x2000])
  special = np.array([65504, 65519.996, 65520, 65536, 2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0001, 3 * 2.0 ** -26, 2.0 ** -14,
                      2.0 ** -14 - 2.0 ** -25, np.inf, -np.inf, np.nan, -0.0, 1e-30], np.float32)
  f = np.concatenate([bits.view(np.float32), special, -special])
  out = Tensor(f).cast(dtypes.float16).numpy()
  with np.errstate(all="ignore"): ref = f.astype(np.float16)
  nan = np.isnan(f)
  np.testing.assert_array_equal(out[~nan].view(np.uint16), ref[~nan].view(np.uint16))
  assert np.isnan(out[nan]).all()

def test_float64_to_float16_rounds_once():
  """No double rounding through float32: values a hair off a float16 tie go the way the hair says."""
  rng = np.random.default_rng(7)
  ties = (rng.integers(1024, 2048, 4000) * 2 + 1) * 2.0 ** rng.integers(-24, 4, 4000)  # odd multiples of a half ulp
  f = np.concatenate([ties, ties * (1 + 2.0 ** -40), ties * (1 - 2.0 ** -40), rng.standard_normal(4000) * 100])
  out = Tensor(f, dtype=dtypes.float64).cast(dtypes.float16).numpy()
  np.testing.assert_array_equal(out.view(np.uint16), f.astype(np.float16).view(np.uint16))

@pytest.mark.parametrize("dt", HALF, ids=str)
def test_half_to_float32_is_exact_for_every_value(dt):
  bits = np.arange(1 << 16, dtype=np.uint16)
  out = Tensor(bits).bitcast(dt).cast(dtypes.float32).numpy()
  ref = bf16_to_f32(bits) if dt == dtypes.bfloat16 else bits.view(np.float16).astype(np.float32)
  nan = np.isnan(ref)
  np.testing.assert_array_equal(out[~nan].view(np.uint32), ref[~nan].view(np.uint32))
  assert np.isnan(out[nan]).all()

def test_float16_bfloat16_casts_round_once():
  bits = np.arange(1 << 16, dtype=np.uint16)
  to_bf = Tensor(bits).bitcast(dtypes.float16).cast(dtypes.bfloat16).bitcast(dtypes.uint16).numpy()
  f = bits.view(np.float16).astype(np.float32)
  nan = np.isnan(f)
  np.testing.assert_array_equal(to_bf[~nan], bf16_bits(f[~nan]))  # float16 -> float32 is exact, so one rounding
  to_h = Tensor(bits).bitcast(dtypes.bfloat16).cast(dtypes.float16).numpy()
  g = bf16_to_f32(bits)
  with np.errstate(all="ignore"): ref = g.astype(np.float16)
  nan = np.isnan(g)
  np.testing.assert_array_equal(to_h[~nan].view(np.uint16), ref[~nan].view(np.uint16))

@pytest.mark.parametrize("dt", [dtypes.float32, *HALF], ids=str)
def test_narrowing_cast_and_back_rounds_in_a_vectorised_kernel(dt):
  """float64 -> dt -> float64 inside one kernel over a row long enough to be vectorised must still round to dt."""
  x = np.random.default_rng(8).standard_normal((4, 16))
  out = Tensor(x, dtype=dtypes.float64).cast(dt).cast(dtypes.float64).numpy()
  ref = x.astype(np.float32).astype(np.float64) if dt == dtypes.float32 else \
        x.astype(np.float16).astype(np.float64) if dt == dtypes.float16 else bf16_to_f32(bf16_bits(x.astype(np.float32))).astype(np.float64)
  np.testing.assert_array_equal(out, ref)
