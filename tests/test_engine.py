"""The execution layer: schedules lowered to ExecItems, the one run loop (counters, profiler events, JIT captures),
copies between devices through the allocators, and the devices' timing and synchronize."""
import numpy as np, pytest
from lucidgrad import Tensor, Device, Context, GlobalCounters, jit
from lucidgrad.device import Buffer
from lucidgrad.dtype import dtypes
from lucidgrad.schedule import create_schedule
from lucidgrad.engine import profile
from lucidgrad.engine.realize import ExecItem, CompiledRunner, CopyRunner, lower_schedule, run_items
from lucidgrad.runtime.cpu import CPUAllocator
from lucidgrad.runtime.null import ModelClock

rng = np.random.default_rng(0)
def arr(*shape) -> np.ndarray: return rng.standard_normal(shape).astype(np.float32)

# ---- lowering and the loop ----
def test_a_schedule_lowers_to_compiled_and_copy_items_that_compute_the_value():
  a = Tensor(arr(4, 6)).realize()
  out = (a.to("PYTHON") * 3).sum(1)
  items = lower_schedule(create_schedule([out.uop])[0])
  assert [type(ei.runner) for ei in items] == [CopyRunner, CompiledRunner]
  copy, kernel = items
  assert copy.runner.name == "copy CPU -> PYTHON" and copy.runner.mem_bytes == 4 * 6 * 4 and copy.bufs[0].device == "PYTHON"
  assert kernel.runner.device == "PYTHON" and kernel.bufs[0].size == 4
  run_items(items)
  np.testing.assert_allclose(kernel.bufs[0].numpy(), (a.numpy() * 3).sum(1), rtol=1e-6)

def test_the_loop_counts_kernels_flops_bytes_and_time_and_not_copies_as_kernels():
  a = Tensor(arr(32, 32)).realize()
  items = lower_schedule(create_schedule([((a.to("PYTHON") + 1) * a.to("PYTHON")).uop])[0])
  kernels = [ei.runner for ei in items if ei.runner.kind == "kernel"]
  GlobalCounters.reset()
  run_items(items)
  assert GlobalCounters.kernel_count == len(kernels) == 1
  assert GlobalCounters.global_ops == sum(r.flops for r in kernels) >= 2 * 32 * 32
  assert GlobalCounters.global_mem == sum(ei.runner.mem_bytes for ei in items) >= 32 * 32 * 4 * 2
  assert GlobalCounters.time_sum_s > 0

def test_flops_count_each_op_once_per_element_it_computes():
  """A kernel's FLOPs: a matmul's multiply and add once per output and reduce step; what reads a reduce's result once
  per output. Two matmuls summed in one kernel are the two matmuls plus one add per output -- not the add (and the
  bias) counted again for every step of both loops, which once showed a ResNet block at 800 GFLOP/s."""
  a, w1, b, w2 = (Tensor(arr(*s)).realize() for s in ((16, 24), (24, 8), (16, 40), (40, 8)))
  out = (a @ w1) + (b @ w2) + 1.0
  items = lower_schedule(create_schedule([out.uop])[0])
  assert len(items) == 1
  assert items[0].runner.flops == 2 * 16 * 8 * (24 + 40) + 2 * 16 * 8

def test_bind_runs_the_same_items_on_other_buffers():
  a = Tensor(arr(8)).realize()
  items = lower_schedule(create_schedule([(a * 2 + 1).uop])[0])
  (ei,) = items
  other_in, other_out = Buffer("CPU", 8, dtypes.float32).copyin(x := arr(8)), Buffer("CPU", 8, dtypes.float32)
  run_items(items, {id(ei.bufs[0]): other_out, id(ei.bufs[1]): other_in})
  np.testing.assert_allclose(other_out.numpy(), x * 2 + 1, rtol=1e-6)

def test_a_failing_item_still_counts_what_ran_before_it():
  a = Tensor(arr(8)).realize()
  (ei,) = lower_schedule(create_schedule([(a * 5).uop])[0])
  class Broken(CopyRunner):
    def __call__(self, bufs): raise RuntimeError("device lost")
  GlobalCounters.reset()
  with pytest.raises(RuntimeError, match="device lost"): run_items([ei, ExecItem(Broken("CPU", "CPU", 32), ei.bufs[:2])])
  assert GlobalCounters.kernel_count == 1 and GlobalCounters.global_mem == ei.runner.mem_bytes

# ---- the JIT captures the loop's items and replays through it ----
def test_a_replay_counts_the_same_kernels_flops_and_bytes_as_the_eager_call():
  w = Tensor(arr(16, 16)).realize()
  @jit
  def f(x: Tensor) -> Tensor: return (x @ w).relu().sum(0)
  counts = []
  for _ in range(4):
    x = Tensor(arr(4, 16)).realize()
    GlobalCounters.reset()
    out = f(x)
    counts.append((GlobalCounters.kernel_count, GlobalCounters.global_ops, GlobalCounters.global_mem))
    np.testing.assert_allclose(out.numpy(), np.maximum(x.numpy() @ w.numpy(), 0).sum(0), rtol=1e-5, atol=1e-5)
  assert counts[0][0] > 0 and counts[0][1] > 0 and len(set(counts)) == 1, counts   # warm-up, capture and replays alike
  assert all(isinstance(ei, ExecItem) for ei in f.items)

def test_a_jitted_function_called_inside_another_ones_capture_is_captured_too():
  w = Tensor(arr(4, 4)).realize()
  @jit
  def inner(x: Tensor) -> Tensor: return (x @ w).relu().realize()
  @jit
  def outer(x: Tensor) -> Tensor: return (inner(x) * 2 + 1).realize()
  inner(Tensor(arr(3, 4))); inner(Tensor(arr(3, 4))); inner(Tensor(arr(3, 4)))  # inner replays inside outer's capture
  for _ in range(5):
    x = arr(3, 4)
    np.testing.assert_allclose(outer(Tensor(x)).numpy(), np.maximum(x @ w.numpy(), 0) * 2 + 1, rtol=1e-5, atol=1e-6)
  @jit
  def inner2(x: Tensor) -> Tensor: return (x @ w).exp().realize()
  @jit
  def outer2(x: Tensor) -> Tensor: return (inner2(x) - 1).realize()   # inner2 warms up and captures inside outer2
  for _ in range(5):
    x = arr(3, 4)
    np.testing.assert_allclose(outer2(Tensor(x)).numpy(), np.exp(x @ w.numpy()) - 1, rtol=1e-5, atol=1e-5)

# ---- profiler events ----
def test_profile_records_one_event_per_kernel_and_copy_eager_and_replayed():
  a = Tensor(arr(16)).realize()
  profile.take_events()
  with Context(PROFILE=1):
    items = lower_schedule(create_schedule([(a.to("PYTHON") * 2).uop])[0])
    run_items(items)
    ev = profile.take_events()
    assert [(e.kind, e.name, e.device, e.flops, e.mem_bytes) for e in ev] == \
           [(ei.runner.kind, ei.runner.name, ei.runner.device, ei.runner.flops, ei.runner.mem_bytes) for ei in items]
    assert ev[0].kind == "copy" and ev[0].name == "copy CPU -> PYTHON" and ev[1].kind == "kernel"
    assert all(e.duration > 0 for e in ev) and ev[0].start <= ev[1].start
    @jit
    def f(x: Tensor) -> Tensor: return (x + 1).exp()
    for _ in range(3): f(Tensor(arr(16)))
    profile.take_events()
    f(Tensor(arr(16)))
    assert [e.name for e in profile.take_events()] == [ei.runner.name for ei in f.items] and f.items
  (a * 3).realize()
  assert profile.take_events() == []   # PROFILE=0 records nothing

def test_null_events_and_durations_are_its_model():
  a = Tensor.ones(256, 256, device="NULL").contiguous().realize()
  (ei,) = lower_schedule(create_schedule([(a * 2).uop])[0])
  profile.take_events()
  with Context(PROFILE=1): run_items([ei])
  (e,) = profile.take_events()
  r = ei.runner
  assert e.device == "NULL" and e.duration == pytest.approx(r.mem_bytes / ModelClock.BANDWIDTH + r.flops / ModelClock.FLOP_RATE)
  dev = Device["NULL"]
  st = dev.record_event()
  Buffer("NULL", 1000, dtypes.uint8).allocator.transfer(None, None, 1000, dev.allocator)
  assert dev.event_seconds(st, dev.record_event()) == pytest.approx(1000 / ModelClock.BANDWIDTH)

# ---- devices: events, synchronize, transfers ----
def test_cpu_events_time_work_and_synchronize_returns():
  dev = Device["CPU"]
  st = dev.record_event()
  np.linalg.svd(rng.standard_normal((64, 64)))
  assert dev.event_seconds(st, dev.record_event()) > 0
  assert dev.synchronize() is None

@pytest.mark.parametrize("src,dest", [("CPU", "PYTHON"), ("PYTHON", "CPU"), ("CPU", "CPU")])
def test_copies_between_devices_keep_every_byte(src, dest):
  x = rng.integers(0, 2**32, size=37, dtype=np.uint32)
  np.testing.assert_array_equal(Tensor(x, device=src).to(dest).numpy(), x)
  y = arr(5, 3)
  np.testing.assert_array_equal((Tensor(y, device=src).to(dest) + 0).numpy(), y)

def test_transfer_goes_through_the_host_when_neither_side_shows_its_memory():
  class Opaque(CPUAllocator):
    def host_view(self, raw): return None
  x = rng.integers(0, 256, size=100, dtype=np.uint8)
  a, b = Opaque(), Opaque()
  src, dest = a.alloc(100), b.alloc(100)
  a.copyin(src, memoryview(x))
  b.transfer(dest, src, 100, a)
  np.testing.assert_array_equal(np.asarray(dest)[:100], x)
  dest2 = CPUAllocator().alloc(100)
  CPUAllocator().transfer(dest2, src, 60, a)   # only nbytes move
  np.testing.assert_array_equal(np.asarray(dest2)[:60], x[:60])
