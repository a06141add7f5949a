"""Issue 13's decode speed work (docs/design/0033): a jitted step recomputes the lazy unpacking of quantised weights it
finds through a name instead of reading float32 copies, and the C renderer does narrow unsigned bit ops in int32 lanes."""
import ctypes
import numpy as np, pytest
from lucidgrad import Tensor, jit, dtypes, Device
from lucidgrad.schedule import create_schedule
from lucidgrad.engine.realize import run_schedule
from lucidgrad.codegen import get_program, Opt, OptOps
from lucidgrad.device import buffer_of

rng = np.random.default_rng(13)

def planes(rows: int, cols: int):
  """Q4_1-like planes of a (rows, cols) matrix: nibbles (blocks, 16) uint8, scales and mins (blocks, 1) float16."""
  blocks = rows * cols // 32
  q = rng.integers(0, 256, (blocks, 16), dtype=np.uint8)
  d = rng.uniform(0.01, 0.1, (blocks, 1)).astype(np.float16)
  m = rng.uniform(-0.5, 0.5, (blocks, 1)).astype(np.float16)
  return q, d, m

def dequant_np(q, d, m, rows, cols):
  vals = np.concatenate([q & 15, q >> 4], axis=1).astype(np.float64)
  return (vals * d.astype(np.float64) + m.astype(np.float64)).reshape(rows, cols)

def lazy_weight(q, d, m, rows, cols):
  """The lazy float32 dequantisation gguf_load builds: (q >> {0, 4}) & 15, times d, plus m."""
  qt = Tensor(q).realize()
  shifts = (Tensor.arange(2, dtype=dtypes.uint8) * 4).reshape(2, 1)
  nib = ((qt.unsqueeze(-2) >> shifts) & 15).reshape(-1, 32).cast(dtypes.float32)
  return (nib * Tensor(d).realize().cast(dtypes.float32) + Tensor(m).realize().cast(dtypes.float32)).reshape(rows, cols), qt

# ---- the JIT keeps an unpacking lazy ----
@pytest.mark.parametrize("verify", [False, True])
def test_a_jitted_matvec_reads_the_quantised_planes_not_a_float32_copy(verify):
  rows, cols = 48, 64
  q, d, m = planes(rows, cols)
  w, qt = lazy_weight(q, d, m, rows, cols)
  f = jit(lambda x: (x @ w.T).realize(), verify=verify)
  ref_w = dequant_np(q, d, m, rows, cols)
  for _ in range(4):
    x = rng.standard_normal((1, cols)).astype(np.float32)
    np.testing.assert_allclose(f(Tensor(x)).numpy(), x.astype(np.float64) @ ref_w.T, rtol=1e-5, atol=1e-5)
  assert w._value_view() is None, "the capture realized the unpacking"
  read = {id(b) for ei in f.items for b in ei.bufs}
  assert id(qt._buffer_view()) in read
  assert not any(b.size == rows * cols and b.dtype == dtypes.float32 for ei in f.items for b in ei.bufs)

def test_writing_the_planes_after_capture_captures_again_and_keeps_the_old_value():
  rows, cols = 16, 32
  q, d, m = planes(rows, cols)
  w, qt = lazy_weight(q, d, m, rows, cols)
  f = jit(lambda x: (x @ w.T).realize())
  x = rng.standard_normal((1, cols)).astype(np.float32)
  for _ in range(3): f(Tensor(x))
  first = f.items
  qt.assign(Tensor(np.zeros_like(q))).realize()  # w was built from the old nibbles: eager keeps reading those
  want = x.astype(np.float64) @ dequant_np(q, d, m, rows, cols).T
  np.testing.assert_allclose(f(Tensor(x)).numpy(), want, rtol=1e-5, atol=1e-5)
  assert f.items is not first, "the replay would have recomputed w from the new nibbles"
  np.testing.assert_allclose(f(Tensor(x)).numpy(), want, rtol=1e-5, atol=1e-5)

def test_an_unpacking_of_an_input_is_still_computed_before_the_capture():
  q0 = rng.integers(0, 256, 32, dtype=np.uint8)
  qt = Tensor(q0).realize()
  outside = (qt & 15).cast(dtypes.float32)   # an unpacking, but of a buffer the call swaps for each replay's input
  f = jit(lambda qq: (qq.cast(dtypes.float32) + outside).realize())
  f(qt)
  for _ in range(3):
    q = rng.integers(0, 256, 32, dtype=np.uint8)
    np.testing.assert_array_equal(f(Tensor(q)).numpy(), q.astype(np.float32) + (q0 & 15))

def test_a_lazy_reduce_found_through_a_name_is_computed_once_not_per_replay():
  w = Tensor(rng.standard_normal((8, 8)).astype(np.float32)).realize()
  total = (w.cast(dtypes.float16).cast(dtypes.float32)).sum()   # reads fewer bytes than... a reduce: not an unpacking
  f = jit(lambda x: (x + total).realize())
  for _ in range(3): f(Tensor([1.0]))
  assert total._value_view() is not None

# ---- the C renderer: narrow unsigned bit ops on widened lanes ----
def _program(t: Tensor):
  items, _, _ = create_schedule([t.uop])
  run_schedule(items[:-1])
  return get_program(items[-1].ast, Device["CPU"].renderer)

@pytest.mark.parametrize("dt", [dtypes.uint8, dtypes.uint16])
def test_nibbles_of_narrow_unsigned_lanes_unpack_in_int32(dt):
  npdt = dt.np
  q = rng.integers(0, np.iinfo(npdt).max + 1, (64, 32), dtype=npdt)
  t = Tensor(q)
  out = ((t >> 4) & 15).cast(dtypes.float32) * 2 + (t & 15).cast(dtypes.float32) + ((t ^ 5) | 8).cast(dtypes.int32).cast(dtypes.float32)
  want = ((q >> 4) & 15).astype(np.float32) * 2 + (q & 15) + ((q ^ 5) | 8).astype(np.float32)
  src = _program(out).src
  np.testing.assert_array_equal(out.numpy(), want)
  narrow = "uint8x" if dt == dtypes.uint8 else "uint16x"
  assert "int32x" in src and not any(narrow in line and ">>" in line for line in src.splitlines()), "a narrow vector was shifted"

def test_widened_shifts_keep_out_of_range_amounts_and_views():
  q = rng.integers(0, 256, (16, 32), dtype=np.uint8)
  s = rng.integers(0, 12, (16, 32), dtype=np.uint8)   # amounts of 8 and more shift every bit of a byte out
  t = Tensor(q).T[1:]                                  # a non-contiguous view
  st = Tensor(s).T[1:]
  got = (t >> st).cast(dtypes.float32).numpy()
  want = np.where(s.T[1:] < 8, q.T[1:].astype(np.int64) >> np.minimum(s.T[1:], 7), 0).astype(np.float32)
  np.testing.assert_array_equal(got, want)
  assert got.dtype == np.float32

def test_widening_a_narrow_signed_or_shifted_left_value_is_left_alone():
  q = rng.integers(-128, 128, (8, 32), dtype=np.int8)
  t = Tensor(q)
  np.testing.assert_array_equal((t >> 2).cast(dtypes.float32).numpy(), (q >> 2).astype(np.float32))
  u = rng.integers(0, 256, (8, 32), dtype=np.uint8)
  # << wraps in 8 bits: widening first would keep the carried-out bits
  np.testing.assert_array_equal((Tensor(u) << 3).cast(dtypes.float32).numpy(), (u << 3).astype(np.uint8).astype(np.float32))

def test_empty_and_scalar_narrow_unpacks():
  assert (Tensor(np.zeros((0, 16), np.uint8)) & 15).cast(dtypes.float32).numpy().shape == (0, 16)
  assert ((Tensor(np.uint8(0xab)) >> 4).cast(dtypes.float32)).item() == 10.0

# ---- codegen: matvecs ----
def _item(t: Tensor):
  items, _, _ = create_schedule([t.uop])
  run_schedule(items[:-1])
  return items[-1]

def _run(item, opts=None):
  """The item's kernel output, built with `opts` (None: the heuristic's), and its program."""
  dev = Device["CPU"]
  spec = get_program(item.ast, dev.renderer, opts)
  bufs = [buffer_of(b) for b in item.bufs]
  prog = dev.program_cls(spec.name, dev.compiler.compile_cached(spec.src), spec=spec)
  for c in range(spec.threads): prog.fxn(*[bufs[i].raw.arg for i in spec.slots], ctypes.c_int(c), ctypes.c_int(spec.threads))
  return bufs[0].numpy().copy(), spec

def test_a_quantised_matvec_takes_whole_blocks_a_step_and_one_row_at_a_time():
  rows, cols = 96, 576
  q, d, m = planes(rows, cols)
  w, _ = lazy_weight(q, d, m, rows, cols)
  x = rng.standard_normal((1, cols)).astype(np.float32)
  got, spec = _run(_item(Tensor(x) @ w.T))
  unrolls = [o.amount for o in spec.opts if o.op is OptOps.UNROLL]
  lanes = Device["CPU"].renderer.upcast_width  # a vector's lanes, then the steps that make one 32-element block
  assert unrolls == [lanes, 32 // lanes] and not any(o.op is OptOps.UPCAST for o in spec.opts), spec.opts
  np.testing.assert_allclose(got.reshape(1, rows), x.astype(np.float64) @ dequant_np(q, d, m, rows, cols).T, rtol=1e-5, atol=1e-5)

def test_a_float32_matvec_of_a_sliced_view_takes_no_row_block():
  w = rng.standard_normal((300, 64)).astype(np.float32)
  x = rng.standard_normal((1, 64)).astype(np.float32)
  got, spec = _run(_item(Tensor(x) @ Tensor(w)[50:250].T))   # rows 50..249: a view at an offset
  assert not any(o.op is OptOps.UPCAST for o in spec.opts) and any(o.op is OptOps.UNROLL for o in spec.opts), spec.opts
  assert got.dtype == np.float32
  np.testing.assert_allclose(got.reshape(1, 200), x.astype(np.float64) @ w[50:250].astype(np.float64).T, rtol=1e-5, atol=1e-4)

@pytest.mark.parametrize("op", ["sum", "max"])
def test_two_unrolls_of_one_reduce_keep_one_vector_accumulator(op):
  a = rng.standard_normal((6, 640)).astype(np.float32) - (2 if op == "max" else 0)
  t = Tensor(a).sum(1) if op == "sum" else Tensor(a).amax(1)
  item = _item(t)
  got, spec = _run(item, [Opt(OptOps.UNROLL, 1, 16), Opt(OptOps.UNROLL, 1, 2)])
  ref = a.astype(np.float64).sum(1) if op == "sum" else a.max(1)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
  assert "float32x16 acc" in spec.src, "the 32 lanes were summed into a scalar accumulator"
