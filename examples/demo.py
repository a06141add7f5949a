"""The main job for now: build a small graph lazily, run it as fused C kernels, and show what ran.
(The "Training" issue replaces this with MNIST.)"""
import numpy as np
from lucidgrad import Tensor, GlobalCounters, Context
from lucidgrad.helpers import slowest_compile_line

Tensor.manual_seed(0)
a = Tensor.randn(256, 256)
out = ((a @ a.T).relu() + 1).sum(axis=1)
with Context(DEBUG=max(1, int(__import__("os").environ.get("DEBUG", "1")))):
  vals = out.numpy()
an = a.numpy()
ref = (np.maximum(an @ an.T, 0) + 1).sum(axis=1)
print("first values:", vals[:4])
print(f"max relative error vs NumPy: {np.abs(vals - ref).max() / np.abs(ref).max():.2e}")
print(f"{GlobalCounters.kernel_count} kernels, {GlobalCounters.compiles} compiled in this process, "
      f"{GlobalCounters.global_ops/1e6:.1f} MFLOP in {GlobalCounters.time_sum_s*1e3:.2f} ms of kernel time")
print(slowest_compile_line())
