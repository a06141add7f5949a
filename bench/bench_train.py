"""Training benchmarks, beside torch on the CPU (and tinygrad when installed) in the same run:
  python bench/bench_train.py             # MNIST CNN training steps/s at batch 128 (jitted), JIT replay overhead
  python bench/bench_train.py --steps 20  # fewer timed steps
The model is examples/mnist.py's Net (the same layers in torch); inputs are random images, so the rows measure speed
only. Times are wall clock per step after warm-up (steps 1 and 2 compile and capture). A last row times the first
training step of the 32-step recurrent net tests/test_bounded_kernels.py trains, compiles included, in a fresh process
with an empty kernel cache: what a long unrolled graph costs before its first result."""
from __future__ import annotations
import argparse, importlib.util, os, pathlib, subprocess, sys, tempfile, time
import numpy as np
from lucidgrad import Tensor, GlobalCounters
from lucidgrad.nn.optim import Adam
from lucidgrad.nn.state import get_parameters
from lucidgrad.helpers import slowest_compile_line

ROOT = pathlib.Path(__file__).parent.parent
def load_example(name: str):
  spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
  return mod

def per_step(step, batches, warmup: int = 3) -> float:
  for x, y in batches[:warmup]: step(x, y)
  st = time.perf_counter()
  for x, y in batches[warmup:]: out = step(x, y)
  float(out.item() if hasattr(out, "item") else out)
  return (time.perf_counter() - st) / (len(batches) - warmup)

def lucid_mnist(xs, ys) -> tuple[float, float]:
  ex = load_example("mnist")
  model = ex.Net()
  step = ex.make_train_step(model, Adam(get_parameters(model), lr=1e-3))
  batches = [(Tensor(x), Tensor(y)) for x, y in zip(xs, ys)]
  dt = per_step(step, batches)
  GlobalCounters.reset(); step(*batches[0]).item()
  return dt, GlobalCounters.kernel_count

def torch_mnist(torch, xs, ys) -> float:
  nn = torch.nn
  model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  def step(x, y):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward(); opt.step()
    return loss.detach()
  return per_step(step, [(torch.tensor(x), torch.tensor(y).long()) for x, y in zip(xs, ys)])

def rnn_first_step() -> str:
  """The row for the first step (forward, backward, Adam) of tests/test_bounded_kernels.py's Elman RNN unrolled over
  32 steps; run it in a fresh process with an empty $CACHEDIR, so every kernel is built."""
  spec = importlib.util.spec_from_file_location("bounded_kernels", ROOT / "tests" / "test_bounded_kernels.py")
  t = importlib.util.module_from_spec(spec); spec.loader.exec_module(t)
  Tensor.manual_seed(0)
  rng = np.random.default_rng(0)
  model = t.ElmanRNN()
  params = model.params()
  Tensor.realize(*params)   # the initialisation's kernels are not the step's
  x, y = Tensor(rng.standard_normal((t.BATCH, t.T, t.N_IN)).astype(np.float32)), Tensor(rng.integers(0, t.N_OUT, t.BATCH).astype(np.int32))
  opt = Adam(params, lr=1e-2)
  compiles, GlobalCounters.slowest_compile = GlobalCounters.compiles, ("", 0.0)
  st = time.perf_counter()
  loss = model(x).cross_entropy(y)
  loss.backward()
  Tensor.realize(loss, *[p.grad for p in params])
  opt.step()
  Tensor.realize(*params)
  dt = time.perf_counter() - st
  name, secs = GlobalCounters.slowest_compile
  return f"{'RNN 32 steps first training step':34s} {dt:6.1f} s (compiles {GlobalCounters.compiles - compiles}, slowest {name} {secs:.2f} s)"

def ten_kernels(x):
  for _ in range(10): x = (x * 1.01 + 0.5).contiguous()   # contiguous: each step is its own kernel
  return x

def jit_overhead() -> tuple[float, float, float]:
  """(eager us/call, replay us/call, replay overhead us/kernel) of a 10-kernel function on 16x16 float32."""
  from lucidgrad import jit
  x = Tensor(np.ones((16, 16), np.float32)).realize()
  def per_call(fn, reps=300):
    for _ in range(3): fn(x).realize()
    st = time.perf_counter()
    for _ in range(reps): fn(x).realize()
    return (time.perf_counter() - st) / reps
  jf = jit(ten_kernels)
  eager, replay = per_call(ten_kernels), per_call(jf)
  GlobalCounters.reset(); jf(x); kernel_time = GlobalCounters.time_sum_s
  return eager * 1e6, replay * 1e6, (replay - kernel_time) / 10 * 1e6

if __name__ == "__main__":
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=40)
  ap.add_argument("--rnn-first-step", action="store_true", help="print only the RNN row (run in a fresh process and cache)")
  args = ap.parse_args()
  if args.rnn_first_step: print(rnn_first_step()); sys.exit()
  rng = np.random.default_rng(0)
  n = args.steps + 3
  xs = [rng.random((128, 1, 28, 28), dtype=np.float32) for _ in range(n)]
  ys = [rng.integers(0, 10, 128).astype(np.int32) for _ in range(n)]
  print(f"{os.cpu_count()} cores; wall clock per step after warm-up, {args.steps} steps")
  dt, kernels = lucid_mnist(xs, ys)
  cells = [f"{'MNIST CNN train step, batch 128':34s} lucidgrad (jit) {1/dt:7.2f} steps/s ({kernels} kernels/step)"]
  try:
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    tdt = torch_mnist(torch, xs, ys)
    cells.append(f"torch {1/tdt:7.2f} steps/s  ratio lucidgrad/torch {tdt/dt:5.2f}x")
  except ImportError: cells.append("torch not installed")
  try:
    import tinygrad  # noqa: F401
    cells.append("tinygrad installed: no row yet")
  except ImportError: pass
  print("  ".join(cells))
  eager, replay, per_kernel = jit_overhead()
  cells = [f"{'JIT replay, 10-kernel function':34s} lucidgrad eager {eager:8.1f} us/call, replay {replay:7.1f} us/call "
           f"({per_kernel:.1f} us/kernel of overhead)"]
  try:
    import torch
    t = torch.ones(16, 16)
    def tfn(x):
      for _ in range(10): x = x * 1.01 + 0.5
      return x
    for _ in range(10): tfn(t)
    st = time.perf_counter()
    for _ in range(1000): tfn(t)
    tus = (time.perf_counter() - st) / 1000 * 1e6
    cells.append(f"torch eager {tus:7.1f} us/call (20 ops)  ratio replay/torch {replay/tus:5.2f}x")
  except ImportError: pass
  print("  ".join(cells))
  with tempfile.TemporaryDirectory() as cache:
    r = subprocess.run([sys.executable, __file__, "--rnn-first-step"], env={**os.environ, "CACHEDIR": cache}, capture_output=True, text=True)
    print(r.stdout.strip() if r.returncode == 0 else f"RNN 32 steps first training step failed:\n{r.stderr}")
  print(slowest_compile_line())
