"""Kernels whose ranges split at pad boundaries (docs/design/0016): cat of 200 pieces, a pad of 1024x1024 by 1, the
64->64 3x3 conv (batch 32, 56x56, pad 1). Prints best-of-n kernel time (GlobalCounters), kernels per call and
GB/s or GFLOP/s. Run under another tree's PYTHONPATH to compare:  PYTHONPATH=. python bench/bench_split.py"""
import sys
import numpy as np
from lucidgrad import Tensor, GlobalCounters

def best(fn, reps):
  fn()  # compile and fill the caches
  out = []
  for _ in range(reps):
    k0, t0 = GlobalCounters.kernel_count, GlobalCounters.time_sum_s
    fn()
    out.append((GlobalCounters.time_sum_s - t0, GlobalCounters.kernel_count - k0))
  return min(out)

rng = np.random.default_rng(0)
which = sys.argv[1:] or ["cat", "pad", "conv"]
if "cat" in which:
  ts = [Tensor(rng.standard_normal(4096).astype(np.float32)).realize() for _ in range(200)]
  t, n = best(lambda: Tensor.cat(*ts).realize(), 10)
  print(f"cat 200x4096      {t*1e3:8.3f} ms  {n} kernels  {2*200*4096*4/t/1e9:7.2f} GB/s")
if "pad" in which:
  x = Tensor(rng.standard_normal((1024, 1024)).astype(np.float32)).realize()
  t, n = best(lambda: x.pad(((1, 1), (1, 1))).realize(), 20)
  print(f"pad 1024^2 by 1   {t*1e3:8.3f} ms  {n} kernels  {(1024*1024+1026*1026)*4/t/1e9:7.2f} GB/s")
if "conv" in which:
  x = Tensor(rng.standard_normal((32, 64, 56, 56)).astype(np.float32)).realize()
  w = Tensor(rng.standard_normal((64, 64, 3, 3)).astype(np.float32)).realize()
  t, n = best(lambda: x.conv2d(w, padding=1).realize(), 5)
  print(f"conv 64->64 3x3   {t*1e3:8.3f} ms  {n} kernels  {2*32*64*56*56*64*9/t/1e9:7.2f} GFLOP/s")
