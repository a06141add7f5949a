"""No leaks: thousands of JIT replays and of eager gradient-accumulation micro-steps keep the process's resident memory
flat after a warm-up (what grows without bound -- child links, cached values, version nodes, index-check sites --
would show here)."""
import gc
import numpy as np, pytest
from lucidgrad import Tensor, jit
from lucidgrad.nn import Linear
from lucidgrad.nn.optim import SGD
from lucidgrad.nn.state import get_parameters

def rss_bytes() -> int:
  with open("/proc/self/statm") as f: return int(f.read().split()[1]) * 4096

def growth(step, warmup: int, n: int) -> int:
  """Resident bytes gained over n calls of step, after warmup calls (collecting garbage at both ends)."""
  for i in range(warmup): step(i)
  gc.collect()
  before = rss_bytes()
  for i in range(n): step(warmup + i)
  gc.collect()
  return rss_bytes() - before

def model_and_data(seed: int):
  rng = np.random.default_rng(seed)
  layers = [Linear(8, 16), Linear(16, 4)]
  xs = [Tensor(rng.standard_normal((4, 8)).astype(np.float32)).realize() for _ in range(8)]
  ys = [Tensor(rng.integers(0, 4, 4)).realize() for _ in range(8)]
  return layers, SGD(get_parameters(layers), lr=0.01, momentum=0.9), xs, ys

@pytest.mark.slow
def test_ten_thousand_jit_replays_keep_memory_flat():
  layers, opt, xs, ys = model_and_data(0)
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
  grew = growth(call, 500, 10_000)
  assert grew < 5 * 2**20, f"RSS grew {grew / 2**20:.1f} MB over 10,000 replays"
  assert np.isfinite(losses).all() and losses[-1] < losses[0]

@pytest.mark.slow
def test_ten_thousand_eager_accumulation_micro_steps_keep_memory_flat():
  layers, opt, xs, ys = model_and_data(1)
  params = get_parameters(layers)
  def micro(i):
    loss = layers[1](layers[0](xs[i % 8]).relu()).cross_entropy(ys[i % 8]) / 4
    loss.backward()   # .grad accumulates lazily over four micro-steps, then one optimiser step
    if i % 4 == 3:
      opt.step(); opt.zero_grad()
      assert all(p.grad is None for p in params)
  grew = growth(micro, 400, 10_000)
  assert grew < 5 * 2**20, f"RSS grew {grew / 2**20:.1f} MB over 10,000 eager micro-steps"
