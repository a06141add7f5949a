"""Low-level silent wrongness: C kernels agree with the PYTHON reference (and torch where it defines a result) on
overflow, shifts, INT_MIN / -1 and out-of-range casts; index math widens to 64 bits when a kernel needs it; one Device
object per device; runner and compile caches keyed by everything that changes the program."""
import json, math, os, re, subprocess, sys
import numpy as np, pytest, torch
from lucidgrad import Tensor, Device, Context, dtypes
from lucidgrad.schedule import create_schedule
from lucidgrad.codegen import get_program
from lucidgrad.dtype import as_const

SINTS = [dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64]
INTS = SINTS + [dtypes.uint8, dtypes.uint16, dtypes.uint32, dtypes.uint64]
TORCH = {dtypes.int8: torch.int8, dtypes.int16: torch.int16, dtypes.int32: torch.int32, dtypes.int64: torch.int64, dtypes.uint8: torch.uint8}

def wrap(v: int, dt) -> int:
  bits = 8 * dt.itemsize
  v &= (1 << bits) - 1
  return v - (1 << bits) if not dt.is_unsigned() and v >= 1 << (bits - 1) else v

def on(dev, *arrays): return [Tensor(a, device=dev) for a in arrays]

# ---- 1. C semantics agree with the reference ----
@pytest.mark.parametrize("n", [1, 64], ids=["scalar", "vector"])
def test_int32_overflow_wraps_like_reference(n):
  for dev in ("CPU", "PYTHON"):
    x = Tensor([2**31 - 1] * n, dtype=dtypes.int32, device=dev)
    assert ((x + 1) > x).numpy().tolist() == [False] * n, dev
    assert (x + 1).numpy().tolist() == [-2**31] * n, dev
    assert (x * 2).numpy().tolist() == [-2] * n, dev
    assert (-(x + 1)).numpy().tolist() == [-2**31] * n, dev
    assert ((x + 1) - 1).numpy().tolist() == [2**31 - 1] * n, dev
  t = torch.tensor([2**31 - 1], dtype=torch.int32)
  assert ((t + 1) > t).tolist() == [False]

@pytest.mark.parametrize("dt", INTS, ids=str)
@pytest.mark.parametrize("n", [7, 64], ids=["scalar", "vector"])  # 64 elements are upcast into vector code
def test_shift_by_any_amount_matches_reference(dt, n):
  """Amounts outside [0, bits) give 0 for << and the sign fill for >> (torch's and NumPy's result); C leaves them
  undefined, x86 masks them."""
  bits, info = 8 * dt.itemsize, np.iinfo(dt.np)
  x = np.random.default_rng(0).integers(info.min, info.max, n, endpoint=True, dtype=dt.np)
  amounts = [0, 1, bits - 1, bits, bits + 1, 2 * bits] + ([-1, -bits, -bits - 3] if not dt.is_unsigned() else [])
  s = np.resize(np.array(amounts, dtype=dt.np), n)
  with np.errstate(all="ignore"): want_l, want_r = np.left_shift(x, s), np.right_shift(x, s)
  if dt in TORCH:
    tx, ts = torch.from_numpy(x), torch.from_numpy(s)
    assert np.array_equal((tx << ts).numpy(), want_l) and np.array_equal((tx >> ts).numpy(), want_r)
  for dev in ("CPU", "PYTHON"):
    a, b = on(dev, x, s)
    np.testing.assert_array_equal((a << b).numpy(), want_l, err_msg=f"{dev} <<")
    np.testing.assert_array_equal((a >> b).numpy(), want_r, err_msg=f"{dev} >>")
    for k in (3, bits - 1):  # a constant amount renders as a plain shift
      np.testing.assert_array_equal((a << k).numpy(), np.left_shift(x, dt.np(k)), err_msg=f"{dev} << {k}")
      np.testing.assert_array_equal((a >> k).numpy(), np.right_shift(x, dt.np(k)), err_msg=f"{dev} >> {k}")

def test_left_shift_of_negative_wraps():
  x, s = np.array([-1, -3, -2**30, -2**31, -5], np.int32), np.array([31, 4, 2, 1, 0], np.int32)
  want = (torch.from_numpy(x) << torch.from_numpy(s)).numpy()
  assert want.tolist() == [wrap(int(a) << int(b), dtypes.int32) for a, b in zip(x, s)]
  for dev in ("CPU", "PYTHON"):
    a, b = on(dev, x, s)
    np.testing.assert_array_equal((a << b).numpy(), want, err_msg=dev)

_DIV_CASE = """
import json, sys, numpy as np
from lucidgrad import Tensor, dtypes
out = {}
for name in ("int8", "int16", "int32", "int64"):
  dt = getattr(dtypes, name); lo = int(np.iinfo(dt.np).min)
  a = Tensor(np.array([lo, lo, lo, 7, -7, lo, 5], dt.np), device=sys.argv[1]); b = Tensor(np.array([-1, 1, 2, -1, -1, 0, 0], dt.np), device=sys.argv[1])
  out[name] = [a.div(b, rounding_mode="trunc").numpy().tolist(), (a // b).numpy().tolist(), (a % b).numpy().tolist()]
print(json.dumps(out))
"""

def test_int_min_divided_by_minus_one_wraps_and_does_not_trap():
  """INT_MIN / -1 overflows: x86's idiv traps (SIGFPE kills the process). It wraps to INT_MIN, and INT_MIN % -1 is 0,
  as in the PYTHON reference and the constant folder; a division by 0 gives 0 (the renderers' existing rule)."""
  got = {}
  for dev in ("CPU", "PYTHON"):  # a trap kills the process, so it runs in its own
    r = subprocess.run([sys.executable, "-c", _DIV_CASE, dev], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{dev}: exit {r.returncode}\n{r.stderr[-2000:]}"
    got[dev] = json.loads(r.stdout.splitlines()[-1])
  assert got["CPU"] == got["PYTHON"]
  for name, (trunc, floor, mod) in got["CPU"].items():
    dt, lo = getattr(dtypes, name), -2**(8 * getattr(dtypes, name).itemsize - 1)
    a, b = [lo, lo, lo, 7, -7, lo, 5], [-1, 1, 2, -1, -1, 0, 0]
    assert trunc == [0 if y == 0 else wrap(abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1), dt) for x, y in zip(a, b)]
    assert floor == [0 if y == 0 else wrap(x // y, dt) for x, y in zip(a, b)]
    assert mod == [0 if y == 0 else x % y for x, y in zip(a, b)]
  assert (torch.tensor([-2**31], dtype=torch.int32) % -1).tolist() == [0]  # torch defines % (its // traps too)

FLOAT_VALUES = [3e9, -3e9, 1e20, -1e20, math.nan, math.inf, -math.inf, -1.0, 300.0, -2.5, 2.0**63, -2.0**63, 2.0**64 + 2.0**12, 1.5e19,
                -0.7, 2.0**31, -2.0**31 - 1.5, 65504.0, -129.9, 4294967295.0, 1e300]

def cast_reference(v: float, dt) -> int:
  """lucidgrad's float -> int: NaN and +-inf give 0; otherwise truncate toward zero and wrap modulo 2**bits."""
  return 0 if not math.isfinite(v) else wrap(int(v), dt)

@pytest.mark.parametrize("src", [dtypes.float64, dtypes.float32, dtypes.float16], ids=str)
@pytest.mark.parametrize("n", [len(FLOAT_VALUES), 64], ids=["scalar", "vector"])  # 64 elements are upcast: float32 lanes convert as vectors
def test_float_to_int_cast_out_of_range_is_defined(src, n):
  vals = np.resize(np.array(FLOAT_VALUES, dtype=np.float64), n)
  with np.errstate(all="ignore"): vals = vals.astype(src.np).astype(np.float64)  # the values src can hold
  for dt in INTS:
    want = [cast_reference(float(v), dt) for v in vals]
    for dev in ("CPU", "PYTHON"):
      got = Tensor(vals.astype(src.np), device=dev).cast(dt).numpy().tolist()
      assert got == want, f"{dev} {src} -> {dt}: {[(float(v), g, w) for v, g, w in zip(vals, got, want) if g != w]}"
    assert [as_const(float(v), dt) for v in vals] == want, f"constant folder {src} -> {dt}"
    if dt in TORCH:  # torch leaves out-of-range casts undefined; in range it truncates, and -1.0 -> uint8 wraps
      inr = [i for i, v in enumerate(vals) if math.isfinite(v) and (np.iinfo(dt.np).min <= v <= np.iinfo(dt.np).max or (dt == dtypes.uint8 and -128 < v < 0))]
      assert torch.from_numpy(vals[inr]).to(TORCH[dt]).tolist() == [want[i] for i in inr]

# ---- 2. index math widens to int64 when a kernel needs it ----
def kernel_src(t: Tensor, device="NULL") -> str:
  items = create_schedule([t.uop])[0]
  return get_program([i for i in items if i.kind == "kernel"][-1].ast, Device[device].renderer).src

def index_types(src: str) -> set[str]:
  """The C types of a kernel's loop counters."""
  return set(re.findall(r"for \(((?:long long)|int|\w+) ridx", src))

@pytest.mark.parametrize("n", [2**31 + 8, 2**32 + 16])
def test_huge_kernel_uses_64bit_index(n):
  t = Tensor.empty(n, dtype=dtypes.uint8, device="NULL") + 1
  for flags in ({}, {"NOOPT": 1}):
    with Context(**flags): src = kernel_src(t)
    assert index_types(src) == {"long long"}, src
    if flags: assert str(n) in src, src  # the loop bound, not its int32 wrap
  t.realize()  # the whole pipeline on NULL: nothing allocated, nothing run

def test_index_expression_beyond_int32_uses_64bit_index():
  """Each loop fits int32, but the address r0*65537+r1 does not."""
  src = kernel_src(Tensor.empty(65537, 65537, dtype=dtypes.uint8, device="NULL").T + 1)
  assert index_types(src) == {"long long"}, src
  src = kernel_src(Tensor.empty(2**32 + 16, dtype=dtypes.uint8, device="NULL")[-1024:] + 1)  # a small loop far into a big buffer
  assert index_types(src) == {"long long"}, src

def test_small_kernel_keeps_32bit_index():
  assert index_types(kernel_src(Tensor.empty(2**20, dtype=dtypes.uint8, device="NULL") + 1)) == {"int"}
  assert index_types(kernel_src(Tensor.empty(2**32 + 16, dtype=dtypes.uint8, device="NULL")[:1024] + 1)) == {"int"}  # only its start is read
  assert index_types(kernel_src(Tensor.empty(2**30, 2, dtype=dtypes.uint8, device="NULL").sum(axis=1))) == {"int"}

def test_huge_kernel_passes_spec():
  with Context(SPEC=1): (Tensor.empty(2**32 + 16, dtype=dtypes.uint8, device="NULL") + 1).realize()

def _mem_available() -> int:
  try:
    with open("/proc/meminfo") as f: return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
  except (OSError, StopIteration): return 0

@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LUCIDGRAD_BIG_TESTS") or _mem_available() < 12 * 2**30,
                    reason="set LUCIDGRAD_BIG_TESTS=1 (needs ~5 GB free): runs a 2**31+8 element kernel on the CPU")
def test_huge_kernel_runs_on_cpu():
  n = 2**31 + 8
  x = Tensor.full((n,), 3, dtype=dtypes.uint8).contiguous().realize()
  y = (x + 1).realize()
  del x
  assert y[-16:].numpy().tolist() == [4] * 16 and y[:4].numpy().tolist() == [4] * 4

# ---- 3. one object per device ----
def test_device_spellings_are_one_object():
  assert Device["cpu"] is Device["CPU"] is Device["CPU:0"] is Device["cpu:0"]
  assert Device["null"] is Device["NULL"]

# ---- 4. the runner cache is keyed by the flags codegen reads ----
def test_runner_cache_keys_on_codegen_flags():
  from lucidgrad.engine.realize import get_runner
  a = Tensor.rand(64, 64).realize()
  items = create_schedule([(a * 2 + 1).uop])[0]
  ast = [i for i in items if i.kind == "kernel"][-1].ast
  opt = get_runner("CPU", ast)
  with Context(NOOPT=1): noopt = get_runner("CPU", ast)
  assert opt.spec.opts and not noopt.spec.opts, (opt.spec.opts, noopt.spec.opts)
  assert opt.spec.src != noopt.spec.src
  with Context(NOOPT=1): assert get_runner("CPU", ast) is noopt
  assert get_runner("CPU", ast) is opt
  with Context(DEBUG=0): assert get_runner("CPU", ast) is opt  # flags that do not change the program share it

# ---- 5. the compile cache key names the compiler's version and the machine ----
def test_index_math_renders_plainly_and_data_math_wraps():
  """Only ops whose operands' bounds allow an overflow are computed in unsigned: index math keeps plain int
  arithmetic, which GCC optimises (with -fwrapv everywhere a conv's backward ran 2.6x slower)."""
  from lucidgrad.schedule import create_schedule
  from lucidgrad.codegen import get_program
  a, b = Tensor.ones(64, 64).contiguous().realize(), Tensor.ones(64, 64, dtype=dtypes.int32).contiguous().realize()
  for t, wraps in (((a @ a.T).sum(0), False), (b * 3 + b, True)):
    src = get_program(create_schedule([t.uop])[0][-1].ast, Device["CPU"].renderer).src
    src = src[src.rindex("\nvoid "):]  # the kernel, not the prelude's helpers
    assert ("(unsigned int)" in src or "(uint32x" in src) == wraps, src

def test_compile_cache_key_has_compiler_version_and_arch(monkeypatch):
  from lucidgrad.runtime import cpu
  src = "void k(void) {}"
  monkeypatch.setattr(cpu, "compiler_version", lambda cc: "cc 12.2.0")
  old = cpu.CCompiler()
  monkeypatch.setattr(cpu, "compiler_version", lambda cc: "cc 13.1.0")
  new = cpu.CCompiler()
  assert old.cache_path(src) != new.cache_path(src)
  monkeypatch.undo()
  c = cpu.CCompiler()
  arch = cpu.native_arch(c.cc)
  assert arch and "native" not in arch and arch in c.key, (arch, c.key)
  assert cpu.compiler_version(c.cc) in c.key

@pytest.mark.parametrize("dt", [dtypes.int8, dtypes.int32, dtypes.uint16, dtypes.int64], ids=str)
def test_constant_shifts_fold_like_the_kernels(dt):
  """Both sides constant: the constant folder gives what the kernels give (it raised on a negative amount)."""
  bits = 8 * dt.itemsize
  for v in (5, -5) if not dt.is_unsigned() else (5,):
    for k in (-1, 0, 3, bits - 1, bits, bits + 7):
      folded = (Tensor.full((2,), v, dtype=dt) << k).numpy(), (Tensor.full((2,), v, dtype=dt) >> k).numpy()
      x, s = on("CPU", np.full(2, v, dt.np), np.full(2, k, dt.np) if k >= 0 or not dt.is_unsigned() else np.full(2, k % 2**bits, dt.np))
      np.testing.assert_array_equal(folded[0], (x << s).numpy(), err_msg=f"{v} << {k}")
      np.testing.assert_array_equal(folded[1], (x >> s).numpy(), err_msg=f"{v} >> {k}")
