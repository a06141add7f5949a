"""The eager realize's fast path (docs/design/0032-realize-fast-path.md): a plain template's hit remembers its values
without asking per entry, the run loop's plain branch, a CPU kernel launched from its raws, the index check's site
found only where it is used, a Buffer's one-frame death. Each must give what the general path gives: values against
NumPy, remembered values that a write makes stale, the counters, the errors."""
import os, numpy as np, pytest
from lucidgrad import Tensor, Context, GlobalCounters, jit
from lucidgrad.device import Device, buffer_of
from lucidgrad.helpers import prod
from lucidgrad.schedule.cache import schedule_walk, cached_template
from lucidgrad.engine.realize import CompiledRunner
import lucidgrad.tensor as lt
from forking import true_in_a_fork

rng = np.random.default_rng(18)
def arr(*shape, dtype=np.float32): return rng.standard_normal(shape).astype(dtype)
def _strip(u):
  while u.op.name == "RESHAPE": u = u.src[0]
  return u

def template_of(t: Tensor):
  """The cached template an equal graph to t's (still lazy) would hit."""
  return cached_template(schedule_walk([t.uop]).key)

# ---- the plain template ----
def test_an_eager_ops_template_is_plain_and_its_hit_remembers_each_value_in_the_new_storage():
  xn = arr(4, 5)
  x = Tensor(xn).realize()
  (x * 2 + 1).realize()  # the miss: a template kept
  y = x * 2 + 1
  t = template_of(y)
  assert t is not None and t.plain
  node = y.uop
  y.realize()
  np.testing.assert_allclose(y.numpy(), xn * 2 + 1, rtol=1e-6)
  # the node's value is remembered in the storage y now owns, read at its current version
  assert node.stored is not None and buffer_of(_strip(node.stored)) is y._storage and _strip(node.stored).arg[2] == y._storage.version

def test_a_template_that_writes_in_place_is_not_plain_and_the_write_is_seen():
  xn = arr(3, 3)
  x = Tensor(xn.copy()).realize()
  for k in range(3):
    x.assign(x * 2 + k)
    assert template_of(x) is None or not template_of(x).plain
    x.realize()
    xn = xn * 2 + k
    np.testing.assert_allclose(x.numpy(), xn, rtol=1e-6)

def test_a_plain_hit_over_an_input_written_since_reads_the_new_contents():
  xn = arr(6)
  x = Tensor(xn.copy()).realize()
  f = lambda: (x.exp() * 0.5).realize()
  a = f()
  x.assign(Tensor(xn + 1)).realize()  # a new version: the same graph's key holds only "current"
  b = f()
  np.testing.assert_allclose(a.numpy(), np.exp(xn) * 0.5, rtol=1e-6)
  np.testing.assert_allclose(b.numpy(), np.exp(xn + 1) * 0.5, rtol=1e-6)

def test_a_plain_hit_gives_every_target_of_a_multi_output_realize_its_own_value():
  an, bn = arr(2, 3), arr(2, 3)
  a, b = Tensor(an).realize(), Tensor(bn).realize()
  for _ in range(3):
    s, d = a + b, (a - b).relu()
    s.realize(d)
    np.testing.assert_allclose(s.numpy(), an + bn, rtol=1e-6)
    np.testing.assert_allclose(d.numpy(), np.maximum(an - bn, 0), rtol=1e-6)
    assert s._storage is not d._storage

def test_a_plain_hit_on_a_transposed_view_and_a_sliced_view():
  xn = arr(5, 4)
  x = Tensor(xn).realize()
  for _ in range(3):
    np.testing.assert_allclose((x.T * 3).realize().numpy(), xn.T * 3, rtol=1e-6)
    np.testing.assert_allclose((x[1:4, ::2] - 1).realize().numpy(), xn[1:4, ::2] - 1, rtol=1e-6)

def test_a_kept_scalar_graph_that_gets_a_value_on_a_plain_hit_leaves_the_scalar_table():
  x = Tensor(arr(3)).realize()
  (x * 1.25).realize()
  key = next(k for k in lt._kept_graphs if len(k) == 5 and k[0] == 1.25 and k[3] == x.device and k[4] == (3,))
  const = lt._kept_graphs[key][1]
  t = Tensor(const)  # the kept constant graph itself realized: a value is remembered for it
  np.testing.assert_allclose(t.realize().numpy(), np.full(3, 1.25, np.float32))
  assert key not in lt._kept_graphs  # a kept node never carries a remembered value

def test_a_plain_hit_with_grad_keeps_the_history_and_differentiates():
  wn = arr(3, 3)
  for _ in range(3):
    w = Tensor(wn, requires_grad=True)
    y = (w * w).realize()
    y.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * wn, rtol=1e-6)

def test_empty_and_0d_results_on_a_hit():
  e, s = Tensor(np.zeros((0, 3), np.float32)).realize(), Tensor(np.float32(2.5)).realize()
  for _ in range(3):
    assert (e * 2).realize().numpy().shape == (0, 3)
    out = (s * 4 - 1).realize()
    assert out.shape == () and out.dtype == s.dtype and out.item() == 9.0

# ---- the run loop and the launch ----
def test_the_plain_run_loop_counts_what_it_runs():
  x = Tensor(arr(8, 8)).realize()
  (x + 1).realize()
  GlobalCounters.reset()
  y = (x + 1).realize()
  assert GlobalCounters.kernel_count == 1 and GlobalCounters.global_mem > 0 and GlobalCounters.time_sum_s > 0
  np.testing.assert_allclose(y.numpy(), x.numpy() + 1, rtol=1e-6)

def _softmax_ref(xn):
  e = np.exp(xn - xn.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)

def test_a_bound_template_runs_each_item_on_its_own_buffers_and_counts_them():
  # two targets of other shapes: two kernels, each on the buffers its refs name, run without ExecItems (the plain branch)
  xn = arr(5, 7)
  x = Tensor(xn).realize()
  (x * 2).realize(x.sum(0))  # the miss
  a, b = x * 2, x.sum(0)
  n = len(cached_template(schedule_walk([a.uop, b.uop]).key).items)
  GlobalCounters.reset()
  a.realize(b)
  assert n == 2 and GlobalCounters.kernel_count == n and GlobalCounters.time_sum_s > 0
  np.testing.assert_allclose(a.numpy(), xn * 2, rtol=1e-6)
  np.testing.assert_allclose(b.numpy(), xn.sum(0), rtol=1e-5)

def test_a_bound_template_under_the_profiler_records_each_kernel_it_runs():
  from lucidgrad.engine import profile
  xn = arr(3, 9)
  x = Tensor(xn).realize()
  x.softmax(-1).realize()
  runners = template_of(x.softmax(-1)).runners
  profile.take_events()
  with Context(PROFILE=1): y = x.softmax(-1).realize()  # a hit: the recording branch
  assert [e.name for e in profile.take_events()] == [r.name for r in runners]
  np.testing.assert_allclose(y.numpy(), _softmax_ref(xn), rtol=1e-5, atol=1e-7)

def test_a_failing_kernel_in_a_bound_template_still_counts_what_ran_before_it():
  xn = arr(4, 6)
  x = Tensor(xn).realize()
  (x * 2).realize(x.sum(0))
  t = cached_template(schedule_walk([(x * 2).uop, x.sum(0).uop]).key)
  runners, calls = list(t.runners), []
  class Boom:  # stands in for the last kernel: the ones before it ran and are counted, the error reaches the caller
    is_kernel, flops, mem_bytes, name = 1, 0, 0, "boom"
    def __call__(self, bufs): calls.append(len(bufs)); raise RuntimeError("boom")
  t.runners[-1], t.launches = Boom(), None  # the launch plan is worked out again from the runners
  try:
    GlobalCounters.reset()
    with pytest.raises(RuntimeError, match="boom"): (x * 2).realize(x.sum(0))
    assert GlobalCounters.kernel_count == len(runners) - 1 and calls == [len(t.items[-1])]
  finally: t.runners[:], t.launches = runners, None
  a, b = x * 2, x.sum(0)
  a.realize(b)
  np.testing.assert_allclose(a.numpy(), xn * 2, rtol=1e-6)
  np.testing.assert_allclose(b.numpy(), xn.sum(0), rtol=1e-5)

def test_the_debug_loop_still_prints_each_kernel(capsys):
  x = Tensor(arr(4)).realize()
  (x * 7).realize()
  with Context(DEBUG=2): (x * 7).realize()
  assert "GFLOP/s" in capsys.readouterr().out

def test_a_cpu_kernel_is_launched_from_its_raws_and_one_with_variables_is_not():
  x = Tensor(arr(16)).realize()
  y = (x * 3).realize()
  runners = [r for r in template_of(x * 3).runners if isinstance(r, CompiledRunner)]
  assert runners and all(r.run_raws is not None for r in runners if r.device == "CPU" and not r.vars)
  np.testing.assert_allclose(y.numpy(), x.numpy() * 3, rtol=1e-6)

def test_a_jit_capture_still_sees_every_kernel_of_the_plain_loop():
  xn = arr(4, 4)
  @jit
  def f(x): return (x * 2 + 1).relu()
  for k in range(4):
    out = f(Tensor(xn + k).realize())
    np.testing.assert_allclose(out.numpy(), np.maximum((xn + k) * 2 + 1, 0), rtol=1e-6)

def test_a_threaded_kernel_runs_on_the_pool_after_a_fork():
  if not hasattr(os, "fork"): pytest.skip("no fork here")
  x = Tensor(arr(1 << 20)).realize()
  want = x.numpy() * 2
  np.testing.assert_allclose((x * 2).realize().numpy(), want, rtol=1e-6)
  # the child: the parent's pool threads are not here; a threaded kernel must start its own
  assert true_in_a_fork(lambda: np.allclose((x * 2).realize().numpy(), want))

def test_the_c_pool_caller_takes_the_shares_a_busy_worker_has_not_claimed():
  """Shares are claimed one at a time by whichever thread gets there first (runtime/cpu.py): with the process held to
  one core, the worker cannot run beside the caller, so the caller takes every share itself instead of waiting for
  the worker's turn (before, share 1 was always the worker's). Each share still runs exactly once."""
  import ctypes, threading
  from lucidgrad.runtime import cpu
  if not hasattr(os, "sched_setaffinity") or not os.path.isdir("/proc/self/task"): pytest.skip("no thread affinity here")
  src = ("#define _GNU_SOURCE\n#include <unistd.h>\n#include <sys/syscall.h>\n"
         "void who(long* tid, int* runs, int core, int ncores) { tid[core] = syscall(SYS_gettid); runs[core] += 1; }")
  with cpu._temp_file() as f: f.write(Device["CPU"].compiler.compile_cached(src))
  fxn = ctypes.CDLL(f.name).who
  tids, runs = np.zeros(5, np.int64), np.zeros(5, np.int32)
  args = [ctypes.c_void_p(tids.ctypes.data), ctypes.c_void_p(runs.ctypes.data)]
  cpu._run_shared(fxn, ctypes.cast(fxn, ctypes.c_void_p), args, 5)  # the pool started
  before = {}
  for t in map(int, os.listdir("/proc/self/task")):  # every thread of the process (one may end while we look)
    try: before[t] = os.sched_getaffinity(t)
    except ProcessLookupError: pass
  one, alone = min(os.sched_getaffinity(0)), 0
  try:
    for t in before:
      try: os.sched_setaffinity(t, {one})
      except ProcessLookupError: pass
    for _ in range(200):
      runs[:] = 0
      cpu._run_shared(fxn, ctypes.cast(fxn, ctypes.c_void_p), args, 5)
      assert (runs == 1).all()
      alone += bool((tids == threading.get_native_id()).all())
  finally:
    for t, cpus in before.items():
      try: os.sched_setaffinity(t, cpus)
      except OSError: pass
  assert alone > 0

# ---- the index check's site ----
def test_a_good_host_checked_index_registers_no_site():
  w, ix = Tensor(arr(10, 3)).realize(), Tensor(np.array([1, 9, 0], np.int32)).realize()
  before = len(lt._site_info)
  for _ in range(3): np.testing.assert_array_equal(ix.embedding(w).numpy(), w.numpy()[[1, 9, 0]])
  assert len(lt._site_info) == before

def test_a_bad_host_checked_index_raises_naming_the_op_the_value_and_this_line():
  w, ix = Tensor(arr(10, 3)).realize(), Tensor(np.array([1, 12, 0], np.int32)).realize()
  with pytest.raises(IndexError, match=r"embedding row: index 12 is out of range for size 10.*test_realize_fastpath.py"):
    ix.embedding(w).numpy()
  neg = Tensor(np.array([-3], np.int32)).realize()
  with pytest.raises(IndexError, match=r"index -3 is out of range for size 10"):
    neg.embedding(w).numpy()

def test_of_two_bad_indices_the_op_built_first_is_reported():
  w = Tensor(arr(5, 2)).realize()
  good, bad_a, bad_b = (Tensor(np.array(v, np.int32)).realize() for v in ([1], [7], [9]))
  good.embedding(w).realize()  # a good check first: no site for it
  a = bad_a.embedding(w)  # built first among the bad ones
  b = w[bad_b]
  with pytest.raises(IndexError, match=r"index 7 "): (a + 0).numpy()
  del b

def test_a_lazy_index_is_checked_on_the_device():
  w = Tensor(arr(6, 2)).realize()
  ix = Tensor(np.array([0, 2], np.int32)).realize() * 3  # lazy: no values on the host to read
  with pytest.raises(IndexError, match=r"index 6 is out of range for size 6"): ix.embedding(w).numpy()

def test_an_index_written_through_numpy_is_checked_again():
  w = Tensor(arr(4, 2)).realize()
  ix = Tensor(np.array([0, 1], np.int32)).realize()
  ix.embedding(w).realize()
  shared = np.asarray(ix, copy=False)  # shared out: a write here counts no version, so no memo may be trusted
  shared[1] = 9
  with pytest.raises(IndexError, match=r"index 9 is out of range for size 4"): ix.embedding(w).numpy()

# ---- embedding's own checks, after reading its inputs once ----
@pytest.mark.parametrize("ix, weight, err, msg", [
  (np.array([0.5], np.float32), (3, 2), TypeError, r"embedding: the indices must be integers, got dtypes.float"),
  (np.array([True]), (3, 2), TypeError, r"the indices must be integers"),
  (np.array([0], np.int32), (6,), ValueError, r"embedding: the weight must be 2-D \(rows, dim\), got shape \(6,\)"),
])
def test_embedding_rejects_bad_inputs_by_name(ix, weight, err, msg):
  with pytest.raises(err, match=msg): Tensor(ix).embedding(Tensor(arr(*weight)))

def test_embedding_of_a_transposed_int64_index_and_an_int8_one():
  w = Tensor(arr(7, 3)).realize()
  ixn = np.array([[0, 6, 2], [1, 1, 5]], np.int64)
  got = Tensor(ixn).realize().T.embedding(w).numpy()
  np.testing.assert_array_equal(got, w.numpy()[ixn.T])
  small = Tensor(np.array([3, 0], np.int8)).realize()
  out = small.embedding(w)
  assert out.dtype == w.dtype and out.shape == (2, 3)
  np.testing.assert_array_equal(out.numpy(), w.numpy()[[3, 0]])

# ---- the walk's key and the interning shortcuts ----
def test_a_contiguous_tag_stays_out_of_the_key_so_a_repeated_contiguous_hits():
  x = Tensor(arr(3, 4)).realize()
  k1 = schedule_walk([(x * 2).contiguous().uop]).key
  k2 = schedule_walk([(x * 2).contiguous().uop]).key
  assert k1 == k2  # the tags differ (each CONTIGUOUS is its own node), the keys do not

def test_args_that_differ_only_by_bool_or_float_zero_are_keyed_apart():
  # the interning key and the walk's entry take a plain int or a tuple of ints as they are: a bool or -0.0 is not one
  from lucidgrad.uop.ops import UOp, Ops
  b = (Tensor(arr(4)).realize() * 2).uop
  r1, r2 = UOp(Ops.RESHAPE, b.dtype, (b,), (4, 1)), UOp(Ops.RESHAPE, b.dtype, (b,), (4, True))
  assert r1 is not r2 and r1.shape == (4, 1) and r2.shape == (4, True)
  assert schedule_walk([r1]).key != schedule_walk([r2]).key
  c1, c2 = UOp.const(b.dtype, 0.0, "CPU"), UOp.const(b.dtype, -0.0, "CPU")
  assert c1 is not c2
  x = Tensor(np.array([-1.0, 2.0], np.float32)).realize()
  np.testing.assert_array_equal(np.signbit((x * 0.0).numpy()), [True, False])
  np.testing.assert_array_equal(np.signbit((x * -0.0).numpy()), [False, True])

def test_gather_and_where_shapes_are_their_index_and_branch_shapes():
  w, ix = Tensor(arr(10, 3)).realize(), Tensor(np.array([[1, 9], [0, 4]], np.int32)).realize()
  g = w.uop.gather(ix.uop.reshape((2, 2, 1)).expand((2, 2, 3)).reshape((4, 3)), 0)
  assert g.shape == (4, 3)
  m = (Tensor(arr(2, 3)) > 0).uop
  assert m.where(Tensor(arr(2, 3)).uop, Tensor(arr(2, 3)).uop).shape == (2, 3)
  out = ix.embedding(w)
  assert out.shape == (2, 2, 3)
  np.testing.assert_array_equal(out.numpy(), w.numpy()[ix.numpy()])

def test_a_stale_read_and_a_remembered_value_are_still_found_by_the_inline_walk():
  from lucidgrad.schedule import StaleReadError
  xn = arr(5)
  x = Tensor(xn.copy()).realize()
  u = (x * 2).uop  # reads x's version 0, held by no tensor (so nothing computes it before the write)
  x.assign(Tensor(xn + 1)).realize()
  with pytest.raises(StaleReadError, match="in-place write"): lt.realize_nodes([u])
  z = (x * 3)
  z.realize()
  w = z + 1  # z's node has a remembered value: the walk writes it down as a read of its storage
  np.testing.assert_allclose(w.numpy(), (xn + 1) * 3 + 1, rtol=1e-6)

# ---- helpers and the Buffer's death ----
def test_prod_folds_left_from_start_as_before():
  assert prod(()) == 1 and prod((2, 3, 4)) == 24 and prod((2, 3), start=5) == 30 and prod([1.5, 2]) == 3.0

def test_a_dead_outputs_memory_goes_back_to_the_free_list():
  x = Tensor(arr(37)).realize()
  y = (x + 2).realize()
  buf = y._storage
  raw, cache = buf._raw, Device[buf.device].allocator.cache[buf.nbytes]
  del y, buf
  assert any(r is raw for r in cache)
  z = (x + 2).realize()  # the next output takes that memory: same values, no stale ones
  np.testing.assert_allclose(z.numpy(), x.numpy() + 2, rtol=1e-6)

def test_a_linear_forward_takes_the_plain_path():
  """x @ W.T reads W through W.T.T, which simplifies back to W's storage: a node that is no target gets no entry for
  that (it would be a value remembered every call, a view of an old storage), so the cached schedule stays plain."""
  from lucidgrad.nn import Linear
  from lucidgrad.schedule.cache import schedule_walk, templates
  lin, xn = Linear(4, 3), arr(2, 4)
  x = Tensor(xn).realize()
  want = xn @ lin.weight.numpy().T + lin.bias.numpy()
  for _ in range(2): np.testing.assert_allclose(lin(x).numpy(), want, rtol=1e-5, atol=1e-6)
  y = lin(x)
  walk = schedule_walk([y.uop])
  assert templates[walk.key].plain and len(templates[walk.key].becomes) == 1
  np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-6)

