"""What a realize costs in Python, and whether it depends on tensors it has nothing to do with (it must not: a realize
walks its own graph and the values its writes would destroy, never every live tensor; docs/design/0005).
  python bench/bench_realize.py
Each row: an in-place update (assign + realize) and a plain realize of a small graph, median of many, with no other
tensors alive and with 8,000 unrelated lazy tensors alive; then a PyTorch in-place update for scale."""
import statistics, time
import numpy as np
from lucidgrad import Tensor
from lucidgrad.helpers import slowest_compile_line

def median_us(fn, reps: int = 300) -> float:
  for _ in range(20): fn()
  ts = []
  for _ in range(reps):
    st = time.perf_counter(); fn(); ts.append(time.perf_counter() - st)
  return statistics.median(ts) * 1e6

def cases():
  w = Tensor(np.ones((64, 64), np.float32)).realize()
  x = Tensor(np.ones((64, 64), np.float32)).realize()
  def assign_realize(): w.assign(w * 0.999 + 0.001).realize()
  def plain_realize(): ((x * 2 + 1).relu() @ x).realize()
  return {"assign + realize": assign_realize, "realize of a 4-op graph": plain_realize}

def unrelated(n: int) -> list[Tensor]:
  """n lazy tensors with graphs of a few nodes each, reading their own buffers (and one shared constant)."""
  bases = [Tensor(np.full((4,), i, np.float32)) for i in range(n // 4)]
  return [(b + k).exp() * 2 for b in bases for k in range(4)]

if __name__ == "__main__":
  results = {}
  for alive in (0, 8000):
    keep = unrelated(alive)
    for name, fn in cases().items(): results[(name, alive)] = median_us(fn)
    del keep
  try:
    import torch
    tw = torch.ones(64, 64)
    def torch_update():
      with torch.no_grad(): tw.mul_(0.999).add_(0.001)
    torch_us = median_us(torch_update)
  except ImportError: torch_us = None
  for name in cases():
    base, busy = results[(name, 0)], results[(name, 8000)]
    print(f"{name:26s} no other tensors {base:8.1f} us   8,000 unrelated lazy tensors alive {busy:8.1f} us   ratio {busy/base:5.2f}x")
  if torch_us is not None: print(f"{'torch in-place update':26s} {torch_us:8.1f} us (eager, for scale)")
  print(slowest_compile_line())
