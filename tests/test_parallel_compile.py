"""A schedule's kernels compile side by side (device.Compiler.start_compile, engine lower_schedule): the same values as
one compile at a time, compiles that really overlap, one compile for a source asked for twice, failures that name the
kernel and the compiler's message and leave no compiler running, and a cache that already holds some of the kernels."""
import os, subprocess, sys, threading, time, uuid
import numpy as np
import pytest
from lucidgrad import Tensor, Device, Context, GlobalCounters
from lucidgrad.runtime.cpu import CCompiler
from forking import true_in_a_fork

@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("CACHEDIR", str(tmp_path))
  return tmp_path

def fresh_graphs(scale: float):
  """Three tensors of three reduce kernels no other test builds (`scale` is in every AST), and their NumPy values."""
  xn = np.random.default_rng(0).standard_normal((33, 47)).astype(np.float32)
  x = Tensor(xn)
  outs = [(x * scale + 1).sum(axis=0), (x * scale).exp().max(axis=1), (x - scale).relu().mean()]
  refs = [(xn * scale + 1).sum(axis=0), np.exp(xn * scale).max(axis=1), np.maximum(xn - scale, 0).mean()]
  return outs, refs

def unique_scale() -> float: return 1.0 + (uuid.uuid4().int % 10**6) / 10**7

def test_compiles_of_one_schedule_overlap(empty_cache, monkeypatch):
  # each of the first two compiles waits at a barrier for the other: compiled one at a time, the first waits forever
  # (the barrier's timeout raises BrokenBarrierError, and the kernel's compile fails)
  barrier, compile = threading.Barrier(2, timeout=60), CCompiler.compile
  calls = []
  def meeting_compile(self, src):
    calls.append(src)
    if len(calls) <= 2: barrier.wait()
    return compile(self, src)
  monkeypatch.setattr(CCompiler, "compile", meeting_compile)
  outs, refs = fresh_graphs(unique_scale())
  with Context(COMPILE_JOBS=2): outs[0].realize(*outs[1:])
  assert len(calls) >= 3
  for o, r in zip(outs, refs): np.testing.assert_allclose(o.numpy(), r, rtol=1e-5, atol=1e-6)

def test_a_source_asked_for_twice_compiles_once(empty_cache):
  src = f"void twice_{uuid.uuid4().hex}(float* restrict a, int core, int ncores) {{ a[0] = 2.0f; }}\n"
  compiler, before = Device["CPU"].compiler, GlobalCounters.compiles
  with Context(COMPILE_JOBS=2):
    first, second = compiler.start_compile(src), compiler.start_compile(src)
    (lib1, secs1), (lib2, _) = first(), second()
  assert lib1 == lib2 and GlobalCounters.compiles == before + 1 and secs1 is not None

def child_pids() -> set[int]:
  """This process's children, from every thread's list in /proc."""
  pids = set()
  for task in os.listdir("/proc/self/task"):
    with open(f"/proc/self/task/{task}/children") as f: pids |= {int(p) for p in f.read().split()}
  return pids

@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs /proc to list child processes")
def test_a_failed_compile_names_the_kernel_and_the_error_and_leaves_no_compiler_running(empty_cache, monkeypatch):
  outs, refs = fresh_graphs(unique_scale())
  compile = CCompiler.compile
  def breaking_compile(self, src):  # every kernel's source gets a line the compiler rejects, naming the kernel
    return compile(self, src + f"\n#error broken on purpose: {src.split('void ', 1)[1].split('(', 1)[0]}\n")
  monkeypatch.setattr(CCompiler, "compile", breaking_compile)
  before = child_pids()  # a pool an earlier test of this worker started (BEAM's) lives on; only new children count
  with Context(COMPILE_JOBS=2), pytest.raises(RuntimeError) as err: outs[0].realize(*outs[1:])
  msg = str(err.value)
  name = msg.split("kernel ", 1)[1].split(" did not compile", 1)[0]
  assert name.startswith("r_") and f"broken on purpose: {name}" in msg   # the compiler's message, for that kernel
  assert child_pids() - before == set()   # every compiler process started has been waited for
  # with the compiler working again, the same graphs build and give the right values
  monkeypatch.setattr(CCompiler, "compile", compile)
  with Context(COMPILE_JOBS=2): outs[0].realize(*outs[1:])
  for o, r in zip(outs, refs): np.testing.assert_allclose(o.numpy(), r, rtol=1e-5, atol=1e-6)

# ---- in new processes, each with its own cache folder ----
PROGRAM = """
import sys, numpy as np
from lucidgrad import Tensor, GlobalCounters
sys.path.insert(0, {here!r})
from test_parallel_compile import fresh_graphs
outs, refs = fresh_graphs(1.25)
outs, refs = outs[:int(sys.argv[1])], refs[:int(sys.argv[1])]
outs[0].realize(*outs[1:])     # one schedule
for o, r in zip(outs, refs): np.testing.assert_allclose(o.numpy(), r, rtol=1e-5, atol=1e-6)
print(GlobalCounters.compiles, np.concatenate([o.numpy().ravel() for o in outs]).tobytes().hex())
"""

def run_program(cache, count: int, jobs: int) -> tuple[int, str]:
  """(compiles, the output bytes) of a new process realizing the first `count` of fresh_graphs(1.25) in one schedule."""
  code = PROGRAM.format(here=os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "CACHEDIR": str(cache), "COMPILE_JOBS": str(jobs)}
  r = subprocess.run([sys.executable, "-c", code, str(count)], env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  compiles, values = r.stdout.split()
  return int(compiles), values

def test_parallel_compiles_give_what_serial_compiles_give(tmp_path):
  serial, parallel = run_program(tmp_path / "serial", 3, jobs=1), run_program(tmp_path / "parallel", 3, jobs=2)
  assert serial == parallel and serial[0] >= 3

def test_a_cache_holding_some_kernels_compiles_only_the_others(tmp_path):
  alone = run_program(tmp_path / "all", 3, jobs=2)
  first = run_program(tmp_path / "some", 1, jobs=2)       # the cache now holds the first kernel
  rest = run_program(tmp_path / "some", 3, jobs=2)        # one schedule: one kernel read from the disk, the others compiled
  assert first[0] >= 1 and rest[0] == alone[0] - first[0] and rest[1] == alone[1]

@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_compiles_with_its_own_threads(empty_cache):
  # the parent's pool threads do not exist in a child, and the pool thinks its idle ones will take the jobs
  outs, _ = fresh_graphs(unique_scale())
  with Context(COMPILE_JOBS=2): outs[0].realize(*outs[1:])   # the parent's pool has its threads now
  outs, refs = fresh_graphs(unique_scale())
  def child() -> bool:  # a child left waiting is killed after 120 s: the test fails instead of hanging
    with Context(COMPILE_JOBS=2): outs[0].realize(*outs[1:])
    return all(np.allclose(o.numpy(), r, rtol=1e-5, atol=1e-6) for o, r in zip(outs, refs))
  assert true_in_a_fork(child)

# ---- several kernels in one compile (docs/design/0027) ----
class RecordingCompiler:
  """What `_compile_waiting` needs of a compiler that batches, recording each compile's sources; a source holding
  'bad' fails."""
  batches = True
  def __init__(self): self.batches_seen = []
  def compile_batch_timed(self, srcs):
    self.batches_seen.append(list(srcs))
    if any("bad" in s for s in srcs): raise RuntimeError("bad source in the batch")
    return [(f"lib of {len(srcs)}".encode(), 0.1)] * len(srcs)
  def compile_timed(self, src):
    self.batches_seen.append([src])
    if "bad" in src: raise RuntimeError(f"{src} does not compile")
    return (f"lib of {src}".encode(), 0.1)

def test_a_worker_batches_its_share_of_the_queue_with_distinct_names(monkeypatch):
  from concurrent.futures import Future
  from lucidgrad import device
  monkeypatch.setattr(device, "_waiting", [])
  c, other = RecordingCompiler(), RecordingCompiler()
  jobs = [(c, "s1", "E_1", Future()), (c, "s2", "E_1", Future()), (other, "o1", "E_9", Future()), (c, "s3", "E_2", Future()),
          (c, "s4", "E_3", Future())]
  device._waiting.extend(jobs)
  with Context(COMPILE_JOBS=2):
    device._compile_waiting()  # its share: 3 of the 5 queued; the second E_1 and the other compiler's kernel wait
    assert c.batches_seen == [["s1", "s3", "s4"]] and [j[1] for j in device._waiting] == ["s2", "o1"]
    device._compile_waiting(); device._compile_waiting(); device._compile_waiting()  # the last finds the queue empty
  assert c.batches_seen[1:] == [["s2"]] and other.batches_seen == [["o1"]] and not device._waiting
  assert [j[3].result() for j in jobs] == [(b"lib of 3", 0.1), (b"lib of s2", 0.1), (b"lib of o1", 0.1), (b"lib of 3", 0.1), (b"lib of 3", 0.1)]

def test_a_batch_that_fails_compiles_its_kernels_one_by_one_so_the_error_is_their_own(monkeypatch):
  from concurrent.futures import Future
  from lucidgrad import device
  monkeypatch.setattr(device, "_waiting", [])
  c = RecordingCompiler()
  jobs = [(c, "good1", "E_1", Future()), (c, "bad", "E_2", Future()), (c, "good2", "E_3", Future())]
  device._waiting.extend(jobs)
  with Context(COMPILE_JOBS=1): device._compile_waiting()
  assert c.batches_seen == [["good1", "bad", "good2"], ["good1"], ["bad"], ["good2"]]
  assert jobs[0][3].result() == (b"lib of good1", 0.1) and jobs[2][3].result() == (b"lib of good2", 0.1)
  with pytest.raises(RuntimeError, match="bad does not compile"): jobs[1][3].result()

def test_queued_kernels_compile_together_into_one_library_each_finds_its_function(empty_cache, monkeypatch):
  """A real schedule whose compiles queue up behind a slow first one: the rest compile as batches (the renderer's
  guarded helpers make concatenated kernels one file), every kernel's binary is on disk under its own hash (a batch's
  library linked, so stored once), and every value is NumPy's."""
  import lucidgrad.device as device_module
  batches, compile_batch, compile_one, held = [], CCompiler.compile_batch, CCompiler.compile, []
  def recording(self, srcs):
    batches.append(len(srcs))
    return compile_batch(self, srcs)
  def slow_first(self, src):
    # the first two compiles (one a worker) last until the other four kernels wait behind them, so the queue is there
    # whatever the machine's load: a worker then takes its share of it, two kernels, as one compile
    if len(held) < 2:
      held.append(src)
      deadline = time.monotonic() + 30
      while len(device_module._waiting) < 4 and time.monotonic() < deadline: time.sleep(0.005)
    return compile_one(self, src)
  monkeypatch.setattr(CCompiler, "compile_batch", recording)
  monkeypatch.setattr(CCompiler, "compile", slow_first)
  s = unique_scale()
  xn = np.random.default_rng(1).standard_normal((40, 24)).astype(np.float32)
  x = Tensor(xn)
  # float -> int casts and fused multiply-adds on vectors: kernels whose sources carry the renderer's helpers
  outs = [(x * s).cast("int32").sum(axis=1), (x * s + 1).sum(axis=0), Tensor(xn[:24, :]) @ (x.T * s), (x - s).exp().max(axis=1),
          (x * s).relu().mean(axis=0), (x * s).cast("int32").max(axis=0)]
  refs = [(xn * s).astype(np.int32).sum(axis=1), (xn * s + 1).sum(axis=0), xn[:24, :] @ (xn.T * s), np.exp(xn - s).max(axis=1),
          np.maximum(xn * s, 0).mean(axis=0), (xn * s).astype(np.int32).max(axis=0)]
  with Context(COMPILE_JOBS=2): outs[0].realize(*outs[1:])
  assert batches and max(batches) > 1, batches
  for o, r in zip(outs, refs): np.testing.assert_allclose(o.numpy(), r, rtol=1e-4, atol=1e-4)
  libs = list((empty_cache / "kernels").glob("*.bin"))
  assert len({f.stat().st_ino for f in libs}) < len(libs)  # members of a batch share one file
