"""No leaks: thousands of JIT replays and of eager gradient-accumulation micro-steps keep the process's resident memory
flat after a warm-up (what grows without bound -- child links, cached values, version nodes, index-check sites --
would show here). Each runs in a fresh process, so what other tests left behind cannot move the numbers."""
import subprocess, sys, textwrap
import pytest

COMMON = """
import gc, numpy as np
from lucidgrad import Tensor, jit
from lucidgrad.nn import Linear
from lucidgrad.nn.optim import SGD
from lucidgrad.nn.state import get_parameters
def rss_bytes():
  with open("/proc/self/statm") as f: return int(f.read().split()[1]) * 4096
def growth(step, warmup, n):
  for i in range(warmup): step(i)
  gc.collect(); before = rss_bytes()
  for i in range(n): step(warmup + i)
  gc.collect(); return rss_bytes() - before
rng = np.random.default_rng(0)
layers = [Linear(8, 16), Linear(16, 4)]
opt = SGD(get_parameters(layers), lr=0.01, momentum=0.9)
xs = [Tensor(rng.standard_normal((4, 8)).astype(np.float32)).realize() for _ in range(8)]
ys = [Tensor(rng.integers(0, 4, 4)).realize() for _ in range(8)]
"""

JIT_REPLAYS = """
@jit
def step(x, y):
  opt.zero_grad()
  loss = layers[1](layers[0](x).relu()).cross_entropy(y)
  loss.backward(); opt.step()
  return loss.realize()
losses = []
def call(i):
  loss = step(xs[i % 8], ys[i % 8])
  if i % 1000 == 0: losses.append(loss.item())   # host reads between replays, as a training loop logs
print(growth(call, 1000, 10_000), losses[0], losses[-1])
"""

EAGER_MICRO_STEPS = """
params = get_parameters(layers)
def micro(i):
  loss = layers[1](layers[0](xs[i % 8]).relu()).cross_entropy(ys[i % 8]) / 4
  loss.backward()   # .grad accumulates lazily over four micro-steps, then one optimiser step
  if i % 4 == 3:
    opt.step(); opt.zero_grad()
    assert all(p.grad is None for p in params)
print(growth(micro, 400, 10_000), 0, 0)
"""

def run(body: str) -> tuple[int, float, float]:
  out = subprocess.run([sys.executable, "-c", textwrap.dedent(COMMON + body)], capture_output=True, text=True, timeout=1500)
  assert out.returncode == 0, out.stderr[-3000:]
  grew, first, last = out.stdout.split()
  return int(grew), float(first), float(last)

@pytest.mark.slow
def test_ten_thousand_jit_replays_keep_memory_flat():
  grew, first, last = run(JIT_REPLAYS)
  assert grew < 5 * 2**20, f"RSS grew {grew / 2**20:.1f} MB over 10,000 replays"
  assert last < first   # and it trained

@pytest.mark.slow
def test_ten_thousand_eager_accumulation_micro_steps_keep_memory_flat():
  grew, _, _ = run(EAGER_MICRO_STEPS)
  assert grew < 5 * 2**20, f"RSS grew {grew / 2**20:.1f} MB over 10,000 eager micro-steps"
