"""Shared helpers for the op tests: random NumPy inputs of each dtype, the same values as a lucidgrad Tensor reached
through a non-contiguous view, and a comparison against a NumPy reference rounded to the result dtype. Also the run's
slowest kernel builds, in the terminal summary (gathered from every xdist worker)."""
import numpy as np
import pytest
from lucidgrad import Tensor, dtypes, GlobalCounters
from lucidgrad.device import Device

ALL = dtypes.all()
FLOATS = [dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64]
SINTS = [dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64]
UINTS = [dtypes.uint8, dtypes.uint16, dtypes.uint32, dtypes.uint64]
INTS = SINTS + UINTS
NUMERIC = INTS + FLOATS
# the emulator and the host, and the GPU where DEV names one (bench/gpu.sh runs the suite with DEV=CUDA)
DEVICES = list(dict.fromkeys(["CPU", "PYTHON", Device.DEFAULT]))
EPS = {dtypes.float16: 2.0**-10, dtypes.bfloat16: 2.0**-7, dtypes.float32: 2.0**-23, dtypes.float64: 2.0**-52}

@pytest.fixture
def rng(): return np.random.default_rng(0)

@pytest.fixture
def avx512_renderer(monkeypatch):
  """The CPU renderer as an AVX-512 host has it (64-byte vectors, 32 vector registers): for tests that check the
  heuristic's choice of block on the register file they were measured on. The heuristic is a function of these
  numbers only, so the choice is the same on any host; the kernels still build and run here (GCC and clang split a
  64-byte vector where the host's are narrower), and their values are checked."""
  r = Device["CPU"].renderer
  for name, v in (("vector_bytes", 64), ("upcast_width", 16), ("vector_registers", 32)): monkeypatch.setattr(r, name, v)
  return r

def rnd(seed, *shape, scale=1.0) -> np.ndarray:
  """Standard normal float32 values of `shape` (times `scale`) drawn from a generator seeded with `seed`."""
  return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)

# ---- the slowest kernel builds of the run (codegen + C compiler, GlobalCounters.slowest_compile), one line in the summary ----
# Builds in this process only: a program a test starts (examples, warm starts) reports its own under DEBUG=1. A kernel
# read from the disk cache costs nothing, so run with an empty $CACHEDIR to see what a cold CI run pays.
SHOWN_BUILDS = 10   # kept per process; the summary prints the slowest, and this many under -v
_builds: list[tuple[float, str, str]] = []   # (seconds, kernel, test id), slowest first

def _note_build(secs: float, name: str, where: str) -> None:
  _builds.append((secs, name, where))
  _builds.sort(reverse=True)
  del _builds[SHOWN_BUILDS:]

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  # each test starts from no slowest build, so what it builds is its own; the process's figure is restored after
  before, GlobalCounters.slowest_compile = GlobalCounters.slowest_compile, ("", 0.0)
  yield
  name, secs = GlobalCounters.slowest_compile
  if name: _note_build(secs, name, item.nodeid)
  GlobalCounters.slowest_compile = max(before, (name, secs), key=lambda b: b[1])

def pytest_sessionfinish(session):
  if hasattr(session.config, "workeroutput"): session.config.workeroutput["slowest_builds"] = _builds   # an xdist worker

@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):   # the xdist controller, as each worker finishes
  for secs, name, where in getattr(node, "workeroutput", {}).get("slowest_builds", []): _note_build(secs, name, where)

def pytest_terminal_summary(terminalreporter, config):
  if hasattr(config, "workeroutput") or not _builds: return
  (secs, name, where), *next_slowest = _builds
  terminalreporter.write_line(f"slowest kernel compile: {name} {secs:.2f} s ({where})")
  if config.option.verbose > 0:
    for secs, name, where in next_slowest: terminalreporter.write_line(f"  then {name} {secs:.2f} s ({where})")

@pytest.fixture
def no_kernels():
  """Asserts that the test body builds and runs no kernel."""
  before = GlobalCounters.kernel_count
  yield
  assert GlobalCounters.kernel_count == before, "a kernel ran"

def np_dtype(dt):
  """The NumPy dtype `Tensor.numpy()` returns for `dt` (bfloat16 comes back as float32)."""
  return np.dtype(np.float32) if dt == dtypes.bfloat16 else np.dtype(dt.np)

def bf16_round(x) -> np.ndarray:
  """float32 values rounded to the nearest bfloat16 (ties to even), returned as float32."""
  x = np.asarray(x, dtype=np.float32)
  u = x.view(np.uint32).astype(np.uint64)
  r = (((u + 0x7fff + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
  return np.where(np.isnan(x), np.float32(np.nan), r)

def round_to(x, dt) -> np.ndarray:
  """Reference values (any float dtype) as `dt` holds them: bfloat16 goes through float32 and rounds to nearest even."""
  with np.errstate(all="ignore"):
    if dt == dtypes.bfloat16: return bf16_round(np.asarray(x).astype(np.float32))
    return np.asarray(x).astype(np_dtype(dt))

def rand_np(rng, shape, dt, kind="any") -> np.ndarray:
  """Random values of dtype `dt`. kind: 'any' (ints over their full range), 'small' (|x| < 10), 'pos' (> 0),
  'nonzero' (small, never 0)."""
  shape = tuple(shape)
  if dt == dtypes.bool: return rng.random(shape) < (1.0 if kind in ("pos", "nonzero") else 0.5)
  if dt.is_int():
    info = np.iinfo(dt.np)
    lo, hi = (int(info.min), int(info.max)) if kind == "any" else (0 if dt.is_unsigned() or kind == "pos" else -9, 9)
    x = rng.integers(lo, hi, size=shape, dtype=dt.np, endpoint=True)
    return np.where(x == 0, dt.np(1), x).astype(dt.np) if kind in ("pos", "nonzero") else x
  x = rng.standard_normal(shape) * 3
  if kind == "pos": x = np.abs(x) + 0.1
  if kind == "nonzero": x = np.where(np.abs(x) < 0.1, 0.5, x)
  return round_to(x, dt)

def pad_value(dt): return True if dt == dtypes.bool else 1.0 if dt.is_float() else 1

def make(x: np.ndarray, dt, layout: str = "contig", device: str | None = None, pad_with=0) -> tuple[Tensor, np.ndarray]:
  """A Tensor of dtype `dt` reached through `layout`, and the NumPy values it holds (== x, except that 'padded' holds
  `pad_with` on the borders of its first and last axes)."""
  x = np.asarray(x)
  def T(a): return Tensor(np.asarray(a, order="C"), dtype=dt, device=device)
  if layout == "contig" or x.ndim == 0: return T(x), x
  axes = tuple(range(x.ndim))
  if layout == "permuted":  # the buffer holds x transposed; the permute turns it back
    return T(x.transpose(axes[::-1])).permute(axes[::-1]), x
  if layout == "flipped": return T(np.flip(x)).flip(axes), x
  if layout == "sliced":  # every other element of a buffer twice as large, starting at 1
    big = np.zeros(tuple(2 * s + 1 for s in x.shape), dtype=x.dtype)
    sl = tuple(slice(1, 1 + 2 * s, 2) for s in x.shape)
    big[sl] = x
    return T(big)[sl], x
  if layout == "padded":
    pads = [(1, 1) if (i == 0 or i == x.ndim - 1) and s >= 3 else (0, 0) for i, s in enumerate(x.shape)]
    inner = x[tuple(slice(b, s - a) for (b, a), s in zip(pads, x.shape))]
    ref = np.pad(inner, pads, constant_values=pad_with)
    value = pad_with if dt != dtypes.bool else bool(pad_with)
    return T(inner).pad(tuple(pads), value=value), ref.astype(x.dtype)
  raise ValueError(layout)

def tol(dt, ulps: float = 1) -> float: return ulps * EPS.get(dt, 0)

def check(t: Tensor, ref, dtype=None, rtol: float = 0.0, atol: float = 0.0):
  """t's dtype is `dtype` (if given), its shape is ref's, and its values match ref (floats within the tolerances,
  NaN where ref is NaN; everything else exactly)."""
  if dtype is not None: assert t.dtype == dtype, f"dtype {t.dtype}, expected {dtype}"
  ref = np.asarray(ref)
  out = t.numpy()
  assert out.shape == ref.shape, f"shape {out.shape}, expected {ref.shape}"
  if dtype is not None: assert out.dtype == np_dtype(dtype), f"numpy() gave {out.dtype} for {dtype}"
  if out.dtype.kind == "f" or ref.dtype.kind == "f":
    np.testing.assert_allclose(out.astype(np.float64), ref.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True)
  else: np.testing.assert_array_equal(out, ref)
