"""EXP2, LOG2, SIN, COS written as ALU ops (codegen/transcendental.py, docs/design/0015): within a few ulp of float64
NumPy over every exponent of float32 (and float64), exact at the special values, the same on CPU and the PYTHON
reference, and vector code in the kernel's C source."""
import re
import numpy as np, pytest
from lucidgrad import Tensor, dtypes
from lucidgrad.codegen import get_program
from lucidgrad.device import Device
from lucidgrad.schedule import create_schedule

DEVICES = ["CPU", "PYTHON"]
NP = {dtypes.float32: np.float32, dtypes.float64: np.float64}

def ulps(got: np.ndarray, ref: np.ndarray, dt) -> np.ndarray:
  """|got - ref| in units of the last place of dt at ref (ref in float64; subnormals count in the smallest spacing).
  NaN where ref is NaN counts 0, as does an exactly equal value (infinities, signed zeros: checked separately)."""
  r = ref.astype(dt)
  same = (got == r) | (np.isnan(got) & np.isnan(ref))
  spacing = np.maximum(np.spacing(np.abs(r)).astype(np.float64), np.finfo(dt).smallest_subnormal)
  with np.errstate(invalid="ignore", over="ignore"): err = np.abs(got.astype(np.float64) - ref) / spacing
  return np.where(same, 0.0, np.where(np.isfinite(err), err, np.inf))

def every_exponent(dt, rng, lo: int, hi: int, per: int = 64, signed: bool = True) -> np.ndarray:
  """`per` random values in each binade 2^e (lo <= e < hi), subnormals included where lo reaches them."""
  e = np.repeat(np.arange(lo, hi), per)
  x = (1 + rng.random(e.size)) * np.exp2(e.astype(np.float64))
  if signed: x = x * rng.choice([-1.0, 1.0], x.size)
  return x.astype(dt)

def run(fn, x: np.ndarray, device: str) -> np.ndarray: return fn(Tensor(x, device=device)).numpy()

SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan]

@pytest.fixture(params=[False, True], ids=["rewritten", "native"])
def f32_sin_cos(request, monkeypatch):
  """float32 SIN/COS as codegen writes them (the default) and as the renderer's own (native_float32_sin_cos: libm's
  sinf on CPU): both tested."""
  for dev in DEVICES: monkeypatch.setattr(Device[dev].renderer, "native_float32_sin_cos", request.param)
  return request.param

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64], ids=str)
def test_exp2_within_a_few_ulp_over_its_range(dt, device):
  rng, npdt = np.random.default_rng(0), NP[dt]
  lo, hi = (-151, 129) if dt == dtypes.float32 else (-1080, 1030)
  # dense over the whole range (results normal, subnormal, overflowing, underflowing), and small arguments by exponent
  x = np.concatenate([rng.uniform(lo, hi, 20000), every_exponent(npdt, rng, -30, 8), np.arange(lo, hi, 0.5),
                      [lo + 1.5, 127.99999, 128, 1023.9999, 1024, -149, -149.5, -150, -1074, -1074.5, -1075] + SPECIAL]).astype(npdt)
  got = run(Tensor.exp2, x, device)
  with np.errstate(over="ignore"): ref = np.exp2(x.astype(np.float64) if dt == dtypes.float32 else x)
  assert ulps(got, ref, npdt).max() <= 2
  assert got[-5:-3].tolist() == [1.0, 1.0] and got[-3] == np.inf and got[-2] == 0.0 and np.isnan(got[-1])

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64], ids=str)
def test_log2_within_a_few_ulp_over_every_exponent(dt, device):
  rng, npdt = np.random.default_rng(1), NP[dt]
  info = np.finfo(npdt)
  lo, hi = (-149, 128) if dt == dtypes.float32 else (-1074, 1024)
  x = np.concatenate([every_exponent(npdt, rng, lo, hi - 1, signed=False), 1 + rng.uniform(-0.4, 0.4, 5000),
                      [info.smallest_subnormal, info.tiny, info.max, 1.0, 2.0, 0.5, np.nextafter(npdt(1), npdt(2)), np.nextafter(npdt(1), npdt(0))]]).astype(npdt)
  got = run(Tensor.log2, x, device)
  assert ulps(got, np.log2(x.astype(np.float64) if dt == dtypes.float32 else x), npdt).max() <= 4  # measured: 2.9 (float32), 3 (float64)
  special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, -info.smallest_subnormal], npdt)
  got = run(Tensor.log2, special, device)
  assert got[:3].tolist() == [-np.inf, -np.inf, np.inf] and np.isnan(got[3:]).all()

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64], ids=str)
@pytest.mark.parametrize("fn,ref", [(Tensor.sin, np.sin), (Tensor.cos, np.cos)], ids=["sin", "cos"])
def test_sin_cos_within_a_few_ulp_below_1e7(fn, ref, dt, device, f32_sin_cos):
  rng, npdt = np.random.default_rng(2), NP[dt]
  # every exponent up to 2^23 (tiny arguments, where sin x = x, included), near multiples of pi/2, and a dense sweep
  x = np.concatenate([every_exponent(npdt, rng, -140 if dt == dtypes.float32 else -1060, 23),
                      np.arange(-2000, 2000) * (np.pi / 2) + rng.uniform(-1e-3, 1e-3, 4000), rng.uniform(-100, 100, 10000)]).astype(npdt)
  got = run(fn, x, device)
  assert ulps(got, ref(x.astype(np.float64) if dt == dtypes.float32 else x), npdt).max() <= (1 if dt == dtypes.float32 else 4)

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn,ref", [(Tensor.sin, np.sin), (Tensor.cos, np.cos)], ids=["sin", "cos"])
def test_float32_sin_cos_of_huge_arguments(fn, ref, device, f32_sin_cos):
  """Beyond 2^8 a float32 is reduced by Payne-Hanek: still within an ulp, up to the largest float32 (0.8 measured over
  every float32)."""
  rng = np.random.default_rng(3)
  x = np.concatenate([every_exponent(np.float32, rng, 8, 128), [np.finfo(np.float32).max, -1e30, 1e30, 2.0 ** 22, 2.0 ** 23 + 1,
                      256.0, np.nextafter(np.float32(256), np.float32(0)), np.nextafter(np.float32(256), np.float32(512)), -256.0]]).astype(np.float32)
  got = run(fn, x, device)
  assert ulps(got, ref(x.astype(np.float64)), np.float32).max() <= 1

@pytest.mark.parametrize("device", DEVICES)
def test_float64_sin_cos_of_huge_arguments_stay_in_range(device):
  x = np.array([1e8, -3e15, 1e300, -1.7e308, 2.0 ** 60])
  for fn in (Tensor.sin, Tensor.cos):
    got = run(fn, x, device)
    assert np.isfinite(got).all() and (np.abs(got) <= 1).all()

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64], ids=str)
def test_sin_cos_special_values(dt, device, f32_sin_cos):
  x = np.array(SPECIAL, NP[dt])
  s, c = run(Tensor.sin, x, device), run(Tensor.cos, x, device)
  assert s[0] == 0 and not np.signbit(s[0]) and s[1] == 0 and np.signbit(s[1]) and np.isnan(s[2:]).all()
  assert c[:2].tolist() == [1.0, 1.0] and np.isnan(c[2:]).all()

@pytest.mark.parametrize("dt", [dtypes.float16, dtypes.bfloat16], ids=str)
def test_half_floats_compute_in_float32(dt):
  x = np.linspace(-8, 8, 101, dtype=np.float32)
  for fn, ref in ((Tensor.exp2, np.exp2), (Tensor.sin, np.sin), (Tensor.cos, np.cos)):
    got = fn(Tensor(x).cast(dt)).cast(dtypes.float32).numpy()
    want = ref(Tensor(x).cast(dt).cast(dtypes.float32).numpy().astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)

def test_cpu_and_python_device_agree_bit_for_bit():
  """One algorithm, the same ops, the same roundings: the reference interprets exactly what the CPU runs."""
  rng = np.random.default_rng(4)
  x = (rng.standard_normal(4096) * 30).astype(np.float32)
  for fn in (Tensor.exp2, Tensor.sin, Tensor.cos, lambda t: t.abs().log2()):
    assert np.array_equal(run(fn, x, "CPU"), run(fn, x, "PYTHON"), equal_nan=True)

@pytest.mark.parametrize("device", DEVICES)
def test_float32_tanh_within_two_ulp_and_exact_at_the_ends(device):
  """float32 tanh is a polynomial below |x| = 0.625 and 1 - 2 / (e^2|x| + 1) above (tensor.py): within 2 ulp of float64
  NumPy on both sides of the switch, over small arguments by exponent, and exact at the special values."""
  rng = np.random.default_rng(5)
  x = np.concatenate([rng.uniform(-12, 12, 40000), every_exponent(np.float32, rng, -140, 5),
                      np.linspace(0.6, 0.65, 5001), -np.linspace(0.6, 0.65, 501)]).astype(np.float32)
  if device == "PYTHON": x = x[::8]
  got = run(Tensor.tanh, x, device)
  assert ulps(got, np.tanh(x.astype(np.float64)), np.float32).max() <= 2
  ends = run(Tensor.tanh, np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 10.0, 1e30], np.float32), device)
  assert ends[:4].tolist() == [0.0, 0.0, 1.0, -1.0] and np.signbit(ends[1]) and not np.signbit(ends[0]) and np.isnan(ends[4])
  assert ends[5:].tolist() == [1.0, 1.0]

def _source(t: Tensor) -> str:
  """The C source of the last kernel computing t, built with the heuristic's opts."""
  items, _, _ = create_schedule([t.uop])
  return get_program(items[-1].ast, Device["CPU"].renderer).src

@pytest.mark.parametrize("build", [lambda x: (x * 1.5 + 0.3).gelu(approximate="tanh"), lambda x: x.exp(), lambda x: x.sin(), lambda x: x.log(),
                                   lambda x: x.sigmoid()], ids=["gelu", "exp", "sin", "log", "sigmoid"])
def test_kernel_has_no_libm_call_and_is_vector_code(build):
  src = _source(build(Tensor.rand(1 << 16)))
  body = src[src.index("void "):]
  for fn in ("exp2", "log2", "sin(", "cos(", "sinf", "cosf", "expf", "logf"): assert fn not in body, fn
  assert re.search(r"(float|int|uint)\d+x(2|4|8|16) alu", body)  # values computed in vectors...
  for scalar in (" float alu", " double alu", " _Bool alu"): assert scalar not in body, scalar  # ...none lane by lane (ints: index math)

def test_a_renderer_with_native_transcendentals_keeps_them():
  """The capability flag: a target whose own functions are fast and accurate opts out of the rewrite."""
  from lucidgrad.renderer.c import CRenderer
  class NativeC(CRenderer): native_transcendentals = True
  items, _, _ = create_schedule([Tensor.rand(64).exp2().uop])
  assert "exp2f(" in get_program(items[-1].ast, NativeC()).src
  assert "exp2f(" not in get_program(items[-1].ast, Device["CPU"].renderer).src

def test_native_float32_sin_cos_keeps_sinf_for_float32_only():
  """The flag keeps float32 sin/cos as the target's (sinf, cosf); float64 ones are rewritten regardless."""
  from lucidgrad.renderer.c import CRenderer
  class NativeSinC(CRenderer): native_float32_sin_cos = True
  def body(t: Tensor, renderer) -> str:
    items, _, _ = create_schedule([t.uop])
    src = get_program(items[-1].ast, renderer).src
    return src[src.index("void "):]
  for fn, name in ((Tensor.sin, "sinf("), (Tensor.cos, "cosf(")):
    assert name in body(fn(Tensor.rand(64)), NativeSinC())
    assert name not in body(fn(Tensor.rand(64)), Device["CPU"].renderer)
    assert name[:3] + "(" not in body(fn(Tensor.rand(64, dtype=dtypes.float64)), NativeSinC())

def test_a_polynomial_step_is_one_vector_fma():
  """exp2's polynomial (exp's, through it) is Horner's rule in fused multiply-adds (MULACC, one rounding as on every renderer and the
  reference), and a vectorised kernel keeps them vector fmas: scalar fmaf calls per lane ran softmax at 2.7 GB/s."""
  x = Tensor(np.linspace(-10, 10, 4096, dtype=np.float32)).realize()
  assert re.search(r"__fma_float32x\d+\(", src := _source(x.exp2())) and not re.search(r"\bfmaf\(", src), src
  np.testing.assert_allclose(x.exp2().numpy(), np.exp2(x.numpy().astype(np.float64)), rtol=4 * 2.0**-24)  # a few ulp
