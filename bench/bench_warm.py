"""Warm starts: what a new process pays for work an earlier process already built kernels for. Each case runs in fresh
subprocesses: once with an empty cache folder (cold), then several times with the folder the cold run filled (warm).
  python bench/bench_warm.py            # Linear(128, 128) and the MNIST net's first jitted training step
  python bench/bench_warm.py --warm 10  # more warm runs (the best and the spread are printed)
The third row, binaries only, is a warm run without the program cache (its folder removed first): what a second
process cost before programs were kept, with every compiled binary on disk but codegen run again.
Columns: wall time of the case itself (after imports), its CPU time in this process (the part a busy machine does not
inflate; it leaves out the C compiler's), the import time, then the build counters of that process
(GlobalCounters: codegen passes, C compiles, programs read from the disk cache, schedules built), and where the case's
time went: scheduling, lowering (programs and binaries found or built, loaded), running the kernels. A schedule that
the in-process schedule cache already holds is neither built nor lowered again (docs/design/0009). Children keep Python's
compiled bytecode, as an installed package does (see os_env)."""
import argparse, atexit, json, os, pathlib, shutil, statistics, subprocess, sys, tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent

CHILD = r"""
import time, json
t0 = time.perf_counter()
import numpy as np
import lucidgrad
from lucidgrad import Tensor, GlobalCounters as G
import lucidgrad.tensor as T
t_import = time.perf_counter() - t0
spent = {"schedule": 0.0, "lower": 0.0, "run": 0.0}
def timed(mod, name, part):
  f = getattr(mod, name)
  def g(*a, **k):
    st = time.perf_counter()
    try: return f(*a, **k)
    finally: spent[part] += time.perf_counter() - st
  setattr(mod, name, g)
# the names realize_nodes calls (a schedule-cache hit builds no schedule and lowers nothing: docs/design/0009)
timed(T, "_create_schedule", "schedule"); timed(T, "lower_schedule", "lower"); timed(T, "run_items", "run")
CASE
print(json.dumps(dict(wall=wall, cpu=cpu, imp=t_import, passes=G.codegen_passes, compiles=G.compiles, hits=G.program_cache_hits,
                      schedules=G.schedules_built, slowest=G.slowest_compile, **spent)))
"""

CASES = {
  "Linear(128, 128)": """
from lucidgrad.nn import Linear
st, cst = time.perf_counter(), time.process_time()
Linear(128, 128)
wall, cpu = time.perf_counter() - st, time.process_time() - cst
""",
  "MNIST net, first jitted training step": """
import importlib.util
from lucidgrad.nn.optim import Adam
from lucidgrad.nn.state import get_parameters
spec = importlib.util.spec_from_file_location("example_mnist", "examples/mnist.py")
ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
rng = np.random.default_rng(0)
x, y = rng.random((128, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 128).astype(np.int32)
st, cst = time.perf_counter(), time.process_time()
model = ex.Net()
step = ex.make_train_step(model, Adam(get_parameters(model), lr=3e-3))
step(Tensor(x), Tensor(y)).numpy()
wall, cpu = time.perf_counter() - st, time.process_time() - cst
""",
}

def child(case: str, cachedir: str) -> dict:
  env = {**os_env(), "CACHEDIR": cachedir}
  r = subprocess.run([sys.executable, "-c", CHILD.replace("CASE", CASES[case])], cwd=ROOT, env=env, capture_output=True, text=True)
  if r.returncode != 0: raise SystemExit(f"{case} failed:\n{r.stderr}")
  return json.loads(r.stdout.strip().splitlines()[-1])

PYCACHE = tempfile.mkdtemp(prefix="lucidgrad-bench-pycache-")
atexit.register(shutil.rmtree, PYCACHE, ignore_errors=True)
def os_env() -> dict:
  """The children's environment: Python keeps compiled bytecode (in a folder of its own, not the repository), as an
  installed package has it; without it every child would compile lucidgrad's source again (PYTHONDONTWRITEBYTECODE=1
  costs codegen's first import ~40 ms), which is not a cost of a warm start."""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
  return {**env, "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": PYCACHE, "DEBUG": "0"}

def fill_pycache():
  subprocess.run([sys.executable, "-c", "import lucidgrad, lucidgrad.codegen, lucidgrad.runtime.cpu, lucidgrad.nn.optim, lucidgrad.engine.jit"],
                 cwd=ROOT, env=os_env(), check=True)

def row(label: str, r: dict, spread: str = "") -> str:
  return (f"  {label:5s} {r['wall']*1e3:9.1f} ms{spread:22s} cpu {r['cpu']*1e3:8.1f} ms  import {r['imp']*1e3:6.1f} ms | passes {r['passes']:4d}  compiles {r['compiles']:4d}  "
          f"hits {r['hits']:4d}  schedules {r['schedules']:3d} | schedule {r['schedule']*1e3:7.1f}  lower {r['lower']*1e3:7.1f}  run {r['run']*1e3:7.1f} ms")

if __name__ == "__main__":
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--warm", type=int, default=5, help="warm runs per case")
  args = ap.parse_args()
  print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; fresh processes; best of {args.warm} warm runs, spread = max - min")
  fill_pycache()
  for case in CASES:
    with tempfile.TemporaryDirectory() as d:
      cold = child(case, d)
      warm = [child(case, d) for _ in range(args.warm)]
      shutil.rmtree(pathlib.Path(d) / "programs")
      bins = child(case, d)
    best = min(warm, key=lambda r: r["wall"])  # the spread and median say how noisy the machine was
    ws = [r["wall"] for r in warm]
    print(case)
    print(row("cold", cold))
    print(row("warm", best, f" (+{(max(ws)-min(ws))*1e3:.1f}, med {statistics.median(ws)*1e3:.1f})"))
    print(row("bins", bins))
    if cold["slowest"][0]: print(f"  slowest kernel build (cold): {cold['slowest'][0]} in {cold['slowest'][1]:.2f} s")
