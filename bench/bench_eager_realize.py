"""What an eager call costs when nothing about it is new: a 10-op elementwise chain on a 4x4 tensor, re-run eagerly.
  python bench/bench_eager_realize.py
Rows: the whole call (building the graph and realizing it) and the realize alone (graphs built beforehand, each on its
own input), in microseconds of this process's CPU time, best of several rounds; beside them torch's eager call and
NumPy's for scale, and the schedules built during the timed calls (0: every realize was a schedule-cache hit,
docs/design/0009). Then the first call in a new process with an empty cache folder: lucidgrad's own CPU time and the C
compiler's (child processes: the compiler runs and the two questions asked of it for the cache key), and wall time. The
new process finds the bytecode of every module it imports, as an installed package and Python have it (bench_warm.py
does the same): without it, compiling the source again costs ~25 ms that is no part of a first call. It runs NumPy's BLAS on one thread:
lucidgrad calls no BLAS, and OpenBLAS's worker threads spin for ~60 ms of CPU time after `import numpy`, which a
process-wide CPU clock would count as lucidgrad's (from 20 to 55 ms, by when the first call happens to start)."""
import json, os, subprocess, sys, tempfile, time, pathlib
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
OPS = 10

def chain(x):
  """OPS elementwise ops, alternating multiply and add, with constants that differ from op to op."""
  for i in range(OPS): x = x * (1.0 + 0.01 * i) if i % 2 == 0 else x + 0.5 * i
  return x

def best_us(fn, calls: int = 300, rounds: int = 7) -> float:
  for _ in range(20): fn()
  out = []
  for _ in range(rounds):
    st = time.process_time()
    for _ in range(calls): fn()
    out.append((time.process_time() - st) / calls * 1e6)
  return min(out)

COLD = """
import time, resource, json
import numpy as np
from lucidgrad import Tensor
import sys; sys.path.insert(0, "bench"); from bench_eager_realize import chain
x = Tensor(np.ones((4, 4), np.float32)).realize()   # a copy in: no kernel
ch = lambda: resource.getrusage(resource.RUSAGE_CHILDREN)
c0, st, wt = ch(), time.process_time(), time.perf_counter()
chain(x).numpy()
own, wall, c1 = time.process_time() - st, time.perf_counter() - wt, ch()
print(json.dumps(dict(own=own, wall=wall, cc=(c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime))))
"""

def cold() -> dict:
  with tempfile.TemporaryDirectory() as d, tempfile.TemporaryDirectory() as warm, tempfile.TemporaryDirectory() as pycache:
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "PYTHONPATH": str(ROOT), "DEBUG": "0",
           "PYTHONPYCACHEPREFIX": pycache, "OPENBLAS_NUM_THREADS": "1"}
    # the bytecode first, kept out of the repository: the same first call once in another process with a cache folder
    # of its own, so every module the call imports -- the standard library's too, which the prefix also redirects (a
    # compile's thread pool imports concurrent.futures: 30 ms compiled from source) -- has its bytecode
    subprocess.run([sys.executable, "-c", COLD], cwd=ROOT, env={**env, "CACHEDIR": warm}, check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-c", COLD], cwd=ROOT, env={**env, "CACHEDIR": d}, capture_output=True, text=True)
  if r.returncode != 0: raise SystemExit(r.stderr)
  return json.loads(r.stdout.strip().splitlines()[-1])

if __name__ == "__main__":
  from lucidgrad import Tensor, GlobalCounters
  x = Tensor(np.random.default_rng(0).random((4, 4), dtype=np.float32)).realize()
  before = GlobalCounters.schedules_built
  chain(x).realize()
  first_built = GlobalCounters.schedules_built - before
  before, calls = GlobalCounters.schedules_built, [0]
  def call():
    calls[0] += 1
    chain(x).realize()
  whole = best_us(call)
  # realize alone: graphs built beforehand over distinct inputs (equal graphs over one input would be one node, computed once)
  xs = [Tensor(np.random.default_rng(i).random((4, 4), dtype=np.float32)).realize() for i in range(300)]
  def realize_only() -> float:
    ys = [chain(t) for t in xs]
    st = time.process_time()
    for y in ys: y.realize()
    calls[0] += len(ys)
    return (time.process_time() - st) / len(ys) * 1e6
  alone = min(realize_only() for _ in range(7))
  built = GlobalCounters.schedules_built - before
  build = best_us(lambda: chain(x))
  a = np.random.default_rng(0).random((4, 4), dtype=np.float32)
  numpy_us = best_us(lambda: chain(a))
  print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; CPU time of this process, best of 7 rounds")
  print(f"{OPS}-op chain on 4x4, eager call   {whole:8.1f} us/call  (graph build {build:6.1f} us, realize alone {alone:6.1f} us)")
  print(f"  schedules built: {first_built} on the first call, {built} in the {calls[0]} calls after it")
  try:
    import torch
    t = torch.from_numpy(a.copy())
    print(f"  torch eager {best_us(lambda: chain(t)):8.1f} us/call   numpy {numpy_us:8.1f} us/call   (for scale)")
  except ImportError: print(f"  numpy {numpy_us:8.1f} us/call (torch not installed)")
  c = cold()
  print(f"first call, empty cache, new process: lucidgrad's own {c['own']*1e3:7.1f} ms CPU, C compiler {c['cc']*1e3:7.1f} ms CPU, wall {c['wall']*1e3:7.1f} ms")
