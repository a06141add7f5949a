"""Devices, the compile cache across processes, DEBUG output and Context, on real subprocesses where it matters."""
import os, subprocess, sys, numpy as np, pytest
from lucidgrad import Tensor, Device, Context, GlobalCounters, dtypes
from lucidgrad.helpers import DEBUG
from lucidgrad.device import Buffer
from forking import true_in_a_fork

DEMO = "from lucidgrad import Tensor; a=Tensor.randn(64,64); print(((a@a.T).relu()+1).sum(axis=1).numpy()[:4])"

def run(code: str, env: dict) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=300)

def test_second_process_compiles_nothing(tmp_path):
  env = {"CACHEDIR": str(tmp_path), "DEBUG": "1"}
  first, second = run(DEMO, env), run(DEMO, env)
  assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
  assert ", 0 compiled" not in first.stdout.splitlines()[-2]
  assert second.stdout.splitlines()[-2].endswith(", 0 compiled")
  assert first.stdout.splitlines()[-1] == second.stdout.splitlines()[-1]   # same values
  assert any(p.suffix == ".bin" for p in (tmp_path / "kernels").iterdir())

@pytest.mark.parametrize("level,expect", [(2, "GFLOP/s"), (4, "void r_"), (5, "RANGE")])
def test_debug_levels_print(tmp_path, level, expect):
  out = run(DEMO, {"CACHEDIR": str(tmp_path), "DEBUG": str(level)})
  assert out.returncode == 0 and expect in out.stdout

def test_context_sets_and_restores_flags():
  before = DEBUG.value
  with Context(DEBUG=3): assert DEBUG >= 3
  assert DEBUG.value == before
  with pytest.raises(KeyError, match="unknown flag"):
    with Context(NOT_A_FLAG=1): pass

def test_global_counters_count_and_reset():
  x = Tensor(np.ones((32, 32), np.float32)).realize()
  GlobalCounters.reset()
  (x * 2 + 1).sum().realize()
  assert GlobalCounters.kernel_count == 1 and GlobalCounters.global_mem >= 32 * 32 * 4 and GlobalCounters.global_ops >= 32 * 32
  GlobalCounters.reset()
  assert GlobalCounters.kernel_count == 0 and GlobalCounters.global_ops == 0

def test_device_names():
  assert Device.DEFAULT == "CPU" or os.environ.get("DEV")
  assert Device.canonicalize("cpu") == "CPU" and Device.canonicalize("cuda:1") == "CUDA:1" and Device.canonicalize("python:0") == "PYTHON"
  with pytest.raises(RuntimeError, match="unknown device 'TPU'"): Tensor([1.0], device="TPU")

def test_allocator_reuses_freed_memory():
  Device["CPU"].allocator
  b = Buffer("CPU", 1000, dtypes.float32).ensure_allocated()
  raw = b._raw
  b.deallocate()
  assert Buffer("CPU", 1000, dtypes.float32).ensure_allocated()._raw is raw

def test_cpu_buffers_start_on_a_cache_line():
  """A 32-byte vector load from 16-byte aligned memory (NumPy's) can span two cache lines: the CPU allocator aligns to 64."""
  bufs = [Buffer("CPU", n, dtypes.float32).ensure_allocated() for n in (1, 7, 1000, 1 << 20)]
  assert all(b.raw.ptr % 64 == 0 and b.raw.nbytes == b.nbytes for b in bufs)
  bufs[2].copyin(np.arange(1000, dtype=np.float32).data)
  assert bufs[2].numpy().tolist() == list(range(1000))

def test_cpu_threads_split_the_outer_loop_exactly():
  xn = np.random.default_rng(0).standard_normal((1031, 257)).astype(np.float32)   # sizes that do not divide evenly
  for threads in (1, 2, 3):
    with Context(THREADS=threads):
      np.testing.assert_allclose(Tensor(xn).exp().sum(axis=1).numpy(), np.exp(xn).sum(1), rtol=1e-5)

def test_to_moves_data_between_devices():
  x = Tensor([1.5, 2.5], device="CPU")
  y = x.to("PYTHON")
  assert y.device == "PYTHON" and y.tolist() == [1.5, 2.5]
  with pytest.raises(RuntimeError, match="different devices: CPU and PYTHON"): (x + y).realize()

def test_from_bytes_shares_writable_memory_and_copies_the_rest():
  src = bytearray(np.arange(6, dtype=np.float32).tobytes())
  t = Tensor.from_bytes(src, dtypes.float32, (2, 3))
  np.frombuffer(src, dtype=np.float32)[0] = 42   # no copy: the tensor sees the change
  np.testing.assert_array_equal(t.numpy(), np.array([[42, 1, 2], [3, 4, 5]], dtype=np.float32))
  t.assign(t + 1).realize()                      # and an in-place write lands in the source
  np.testing.assert_array_equal(np.frombuffer(src, dtype=np.float32), [43, 2, 3, 4, 5, 6])
  ro = bytes(np.arange(4, dtype=np.int16).tobytes())
  np.testing.assert_array_equal(Tensor.from_bytes(ro, dtypes.int16, (4,)).numpy(), [0, 1, 2, 3])
  with pytest.raises(ValueError, match="12 bytes"): Tensor.from_bytes(bytes(12), dtypes.float32, (2, 2))

def test_cpu_workers_run_every_share_and_raise_a_failed_one():
  from lucidgrad.runtime.cpu import _Workers
  import threading
  pool, seen, lock = _Workers(2), [], threading.Lock()
  def share(a, b, c, n):
    with lock: seen.append((a, b, c, n, threading.get_ident()))
  pool.run(share, [10, 20], 5)
  assert sorted(s[:4] for s in seen) == [(10, 20, c, 5) for c in range(5)]
  assert any(s[4] == threading.get_ident() and s[2] == 0 for s in seen)  # the caller runs the first share itself
  def fails(c, n):
    if c == 3: raise ValueError("share 3")
  with pytest.raises(ValueError, match="share 3"): pool.run(fails, [], 4)
  seen.clear(); pool.run(share, [1, 2], 3)  # the pool still works after a failure
  assert sorted(s[:4] for s in seen) == [(1, 2, c, 3) for c in range(3)]

def test_the_c_pool_runs_every_share_once_and_starts_again_in_a_forked_child():
  """Threaded CPU kernels run on a pool in C (runtime/cpu.py): each of n shares exactly once, whatever n is against the
  pool's threads, with every buffer argument passed; a process forked after the pool started starts its own (the
  parent's threads do not exist in the child); a kernel with more buffers than the pool passes runs on _Workers."""
  import ctypes
  from lucidgrad.runtime import cpu
  from lucidgrad.device import Device
  src = "\n".join(f"void count{n}({''.join(f'int* a{i}, ' for i in range(n))}int core, int ncores) {{ "
                  f"{' '.join(f'a{i}[core] += {i + 1};' for i in range(n))} }}" for n in (1, 3, cpu.MAX_POOL_ARGS + 1))
  with cpu._temp_file() as f: f.write(Device["CPU"].compiler.compile_cached(src))
  lib = ctypes.CDLL(f.name)
  def run(nargs: int, shares: int) -> np.ndarray:
    outs = [np.zeros(shares, np.int32) for _ in range(nargs)]
    fxn = getattr(lib, f"count{nargs}")
    cpu._run_shared(fxn, ctypes.cast(fxn, ctypes.c_void_p), [ctypes.c_void_p(o.ctypes.data) for o in outs], shares)
    return np.stack(outs)
  for nargs in (1, 3):
    for shares in (2, 3, 7):
      np.testing.assert_array_equal(run(nargs, shares), np.arange(1, nargs + 1)[:, None].repeat(shares, 1))
  assert cpu._cpool and cpu._cpool[0] is not None  # the C pool ran them
  many = cpu.MAX_POOL_ARGS + 1
  np.testing.assert_array_equal(run(many, 3), np.arange(1, many + 1)[:, None].repeat(3, 1))  # on _Workers
  # the child's shares run on a pool of its own
  assert true_in_a_fork(lambda: (run(3, 5) == np.arange(1, 4)[:, None]).all() and cpu._cpool[0].pid == os.getpid())

def test_threaded_kernels_from_two_python_threads_at_once():
  """The C pool's job is one global: ctypes lets go of the GIL during a kernel, so two Python threads (a data loader's
  prefetch beside a training step) can launch at once. They take turns; every value is right."""
  import threading
  from lucidgrad import Context
  rng = np.random.default_rng(5)
  xs = [rng.standard_normal((384, 257)).astype(np.float32) for _ in range(4)]
  want = [np.exp(x).sum(1) for x in xs]
  errors = []
  def work(i: int):
    try:
      for _ in range(25):
        np.testing.assert_allclose(Tensor(xs[i]).exp().sum(axis=1).numpy(), want[i], rtol=1e-5)
    except BaseException as e: errors.append(e)
  with Context(THREADS=2):
    Tensor(xs[0]).exp().sum(axis=1).numpy()  # compiled once, before the threads race
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
  assert not errors, errors[0]

def test_a_compiler_question_that_failed_in_its_thread_is_asked_again(monkeypatch):
  """Starting `cc --version` can fail for a moment (a CI worker's exec gave OSError EFAULT while other threads ran):
  `key` asks again instead of failing every kernel of the process; a second failure names the question."""
  from lucidgrad.runtime import cpu
  real, calls = cpu.compiler_version, []
  def flaky(cc):
    calls.append(cc)
    if len(calls) == 1: raise OSError(14, "Bad address")
    return real(cc)
  monkeypatch.setattr(cpu, "compiler_version", flaky)
  c = cpu.CCompiler()
  assert real(c.cc) in c.key and len(calls) == 2
  def broken(cc): raise OSError(14, "Bad address")
  monkeypatch.setattr(cpu, "compiler_version", broken)
  with pytest.raises(RuntimeError, match="could not ask .* for its version: .*Bad address"): cpu.CCompiler().key
