"""An eager realize's launch and bind (docs/design/0036-launch-plan.md): a threaded CPU kernel goes to the C pool's
pool_run<n> entry with its buffers as arguments, a bound template launches through a plan worked out once from its
runners, and a plain template's output is owned and its values remembered without the general helpers. Each must
give what the general path gives: values against NumPy, every share run once, the counters, a fork's own pool, the
ownership and history of the result, and a remembered value that a write makes stale."""
import ctypes, os, numpy as np, pytest
from lucidgrad import Tensor, GlobalCounters
from lucidgrad.device import Device, buffer_of
from lucidgrad.schedule.cache import schedule_walk, cached_template
from lucidgrad.runtime import cpu
from forking import true_in_a_fork

rng = np.random.default_rng(36)
def arr(*shape, dtype=np.float32): return rng.standard_normal(shape).astype(dtype)
def template_of(t: Tensor):
  """The cached template an equal graph to t's (still lazy) would hit."""
  return cached_template(schedule_walk([t.uop]).key)

def _share_counter(nbufs: int):
  """A C function of `nbufs` int32 buffers that adds (share + 1) * (i + 1) to element `share` of buffer i, so a
  wrong, missing or repeated share, or a buffer passed in the wrong place, shows in the sums."""
  params = "".join(f"int* b{i}, " for i in range(nbufs))
  body = "".join(f"b{i}[core] += (core + 1) * {i + 1}; " for i in range(nbufs))
  src = f"void count({params}int core, int ncores) {{ {body}}}"
  with cpu._temp_file() as f: f.write(Device["CPU"].compiler.compile_cached(src))
  try: return ctypes.CDLL(f.name).count
  finally: os.unlink(f.name)

# ---- the pool's entries ----
@pytest.mark.parametrize("nbufs", [1, 3, cpu.MAX_POOL_ARGS])
def test_each_pool_entry_runs_every_share_once_on_its_buffers_in_order(nbufs):
  fxn, shares = _share_counter(nbufs), 7
  outs = [np.zeros(shares, np.int32) for _ in range(nbufs)]
  args = [ctypes.c_void_p(o.ctypes.data) for o in outs]
  assert cpu._c_pool() is not None and cpu._entries is not None and len(cpu._entries) == cpu.MAX_POOL_ARGS + 1
  for _ in range(3): cpu._entries[nbufs](ctypes.cast(fxn, ctypes.c_void_p), ctypes.c_int(shares), *args)
  for i, o in enumerate(outs): np.testing.assert_array_equal(o, 3 * (np.arange(shares) + 1) * (i + 1))

def test_a_threaded_kernel_is_launched_through_the_entry_and_matches_numpy():
  xn = arr(1 << 20)
  x = Tensor(xn).realize()
  (x * 2 + 1).realize()  # the miss: compiled, the pool started
  runner = template_of(x * 2 + 1).runners[0]
  assert runner.program.threads > 1 and runner.program.shares is not None and runner.program.shares.value == runner.program.threads
  calls, real = [], cpu._entries
  class Spy(list):  # the entries as they are, noting which one each launch took
    def __getitem__(self, n): calls.append(n); return real[n]
  cpu._entries = Spy(real)
  try: y = (x * 2 + 1).realize()
  finally: cpu._entries = real
  assert calls == [len(runner.slots)]
  np.testing.assert_allclose(y.numpy(), xn * 2 + 1, rtol=1e-6)

def test_without_started_entries_a_threaded_kernel_starts_the_pool_and_gets_them():
  xn = arr(1 << 20)
  x = Tensor(xn).realize()
  (x * 3).realize()
  saved_pool, saved_entries = list(cpu._cpool), cpu._entries
  cpu._forget_pool()  # as in a forked child: no pool here yet
  try:
    assert cpu._entries is None
    np.testing.assert_allclose((x * 3).realize().numpy(), xn * 3, rtol=1e-6)
    assert cpu._entries is not None and cpu._cpool and cpu._cpool[0] is not None and cpu._entries is cpu._cpool[0].entries
  finally: cpu._cpool[:], cpu._entries = saved_pool, saved_entries

def test_a_forked_child_launches_threaded_kernels_on_a_pool_of_its_own():
  if not hasattr(os, "fork"): pytest.skip("no fork here")
  xn = arr(1 << 20)
  x = Tensor(xn).realize()
  np.testing.assert_allclose((x + 4).realize().numpy(), xn + 4, rtol=1e-6)
  parent = cpu._entries
  assert true_in_a_fork(lambda: cpu._entries is None and np.allclose((x + 4).realize().numpy(), xn + 4) and cpu._entries is not None
                        and cpu._entries is not parent)

# ---- the launch plan ----
def test_a_bound_templates_plan_counts_what_its_runners_would_and_is_made_once():
  xn = arr(6, 7)
  x = Tensor(xn).realize()
  x.exp().realize(x.sum(1))  # the miss (temporaries: no value of these nodes outlives the call)
  t = cached_template(schedule_walk([x.exp().uop, x.sum(1).uop]).key)
  GlobalCounters.reset()
  x.exp().realize(x.sum(1))
  plan = t.launches
  assert plan is not None and GlobalCounters.kernel_count == sum(r.is_kernel for r in t.runners) == plan[1]
  assert GlobalCounters.global_ops == sum(r.flops for r in t.runners) and GlobalCounters.global_mem == sum(r.mem_bytes for r in t.runners)
  # a CPU kernel's launch takes the refs of its program's slots, in their order
  for (run, refs, raws), r, rs in zip(plan[0], t.runners, t.items):
    assert raws and refs == tuple(rs[i] for i in r.slots) and run == r.run_raws
  x.exp().realize(x.sum(1))
  assert t.launches is plan
  a, b = x.exp(), x.sum(1)
  a.realize(b)
  np.testing.assert_allclose(a.numpy(), np.exp(xn), rtol=1e-5)
  np.testing.assert_allclose(b.numpy(), xn.sum(1), rtol=1e-5)

def test_a_runner_without_raw_launch_is_called_on_its_buffers():
  xn = arr(5)
  x = Tensor(xn).realize()
  (x * 5).realize()
  t = template_of(x * 5)
  seen = []
  class Plain:  # a runner of another device kind: called on Buffers, counted as a kernel
    is_kernel, flops, mem_bytes, name = 1, 11, 22, "plain"
    def __init__(self, inner): self.inner = inner
    def __call__(self, bufs):
      seen.append([type(b).__name__ for b in bufs])
      return self.inner(bufs)
  saved = list(t.runners)
  t.runners[0], t.launches = Plain(saved[0]), None
  try:
    GlobalCounters.reset()
    y = (x * 5).realize()
    assert seen == [["Buffer"] * len(t.items[0])] and (GlobalCounters.kernel_count, GlobalCounters.global_ops, GlobalCounters.global_mem) == (1, 11, 22)
  finally: t.runners[:], t.launches = saved, None
  np.testing.assert_allclose(y.numpy(), xn * 5, rtol=1e-6)

def test_an_error_in_a_planned_launch_reaches_the_caller_and_counts_only_what_ran():
  xn = arr(4, 3)
  x = Tensor(xn).realize()
  (x + 1).realize(x.max(axis=0))
  t = cached_template(schedule_walk([(x + 1).uop, x.max(axis=0).uop]).key)
  saved = list(t.runners)
  class Boom:
    is_kernel, flops, mem_bytes, name = 1, 0, 0, "boom"
    def __call__(self, bufs): raise ValueError("boom in a launch")
  t.runners[-1], t.launches = Boom(), None
  try:
    GlobalCounters.reset()
    with pytest.raises(ValueError, match="boom in a launch"): (x + 1).realize(x.max(axis=0))
    assert GlobalCounters.kernel_count == len(saved) - 1 and GlobalCounters.global_ops == sum(r.flops for r in saved[:-1])
  finally: t.runners[:], t.launches = saved, None
  a, b = x + 1, x.max(axis=0)
  a.realize(b)
  np.testing.assert_allclose(a.numpy(), xn + 1, rtol=1e-6)
  np.testing.assert_allclose(b.numpy(), xn.max(0), rtol=1e-6)

# ---- the plain template's output ----
def test_an_eager_result_owns_its_new_storage_and_a_second_tensor_of_the_node_reads_its_value():
  wn, ixn = arr(50, 8), np.array([3, 0, 49, 3], np.int32)
  w, ix = Tensor(wn).realize(), Tensor(ixn).realize()
  ix.embedding(w).realize()  # the miss
  e = ix.embedding(w)
  node = e.uop
  e.realize()
  buf = e._storage
  assert buf is not None and buf.owner() is e and e._uop.holders() is e and buffer_of(e._storage_node) is buf
  assert node.stored is not None and buffer_of(node.stored.src[0] if node.stored.op.name == "RESHAPE" else node.stored) is buf
  GlobalCounters.reset()
  f = ix.embedding(w)  # the same node: its value is remembered, nothing runs
  np.testing.assert_array_equal(f.numpy(), wn[ixn])
  assert GlobalCounters.kernel_count == 0
  np.testing.assert_array_equal(e.numpy(), wn[ixn])

def test_a_transposed_view_result_and_an_in_place_write_after_it():
  xn = arr(6, 4)
  x = Tensor(xn).realize()
  y = (x.T * 2).realize()  # a non-contiguous read
  z = (x.T * 2).realize()
  np.testing.assert_allclose(z.numpy(), xn.T * 2, rtol=1e-6)
  x[1:3] = Tensor(np.zeros((2, 4), np.float32))  # the inputs change: the values already computed do not
  np.testing.assert_allclose(y.numpy(), xn.T * 2, rtol=1e-6)
  np.testing.assert_allclose(z.numpy(), xn.T * 2, rtol=1e-6)
  want = xn.copy(); want[1:3] = 0
  np.testing.assert_allclose((x.T * 2).realize().numpy(), want.T * 2, rtol=1e-6)

def test_a_result_that_requires_grad_keeps_its_history_through_the_fast_take():
  xn = arr(3, 5)
  x = Tensor(xn, requires_grad=True)
  (x * x).sum().realize()
  y = x * x
  y.realize()
  assert y.requires_grad and not y.is_leaf
  y.sum().backward()
  np.testing.assert_allclose(x.grad.numpy(), 2 * xn, rtol=1e-6)

def test_an_empty_and_a_0d_eager_result():
  x = Tensor(np.zeros((0, 3), np.float32)).realize()
  for _ in range(2): assert (x + 1).realize().numpy().shape == (0, 3)
  s = Tensor(np.float32(2.5)).realize()
  for _ in range(2):
    out = (s * 4).realize()
    assert out.shape == () and out.dtype == s.dtype and out.item() == 10.0

# ---- interning keys of tuple args (a loop over the elements, not issuperset(map(type, arg))) ----
def test_an_interning_key_tells_int_tuples_from_ones_with_bools_floats_or_numpy_ints():
  from lucidgrad.uop.ops import UOp, Ops
  from lucidgrad.dtype import dtypes
  args = [(1, 4), (True, 4), (1.0, 4), (np.int64(1), 4), (0.0,), (-0.0,), (4, 1), ()]
  nodes = [UOp(Ops.SINK, dtypes.void, (), a) for a in args]
  assert len({id(n) for n in nodes}) == len(args)
  assert all(UOp(Ops.SINK, dtypes.void, (), a) is n for a, n in zip(args, nodes))
  # a new storage's read in a shape is made outside the table (docs/design/0038): the same reshape built again is a
  # twin, and then one node; a shape keyed with a bool is another
  buf, view = UOp.new_buffer_view("CPU", 12, dtypes.float32, (3, 4))
  assert view.src == (buf,) and view.shape == (3, 4) and buf.reshape((3, 4)) is not view and buf.reshape((3, 4)) is buf.reshape((3, 4))
  assert buf.reshape((True, 12)) is not buf.reshape((1, 12))
