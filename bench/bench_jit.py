"""JIT replay overhead: a function of 10 small kernels, eager vs replayed, per call.
  python bench/bench_jit.py"""
import time
import numpy as np
from lucidgrad import Tensor, jit, GlobalCounters
from lucidgrad.helpers import slowest_compile_line

def ten_kernels(x: Tensor) -> Tensor:
  for _ in range(10): x = (x * 1.01 + 0.5).contiguous()   # contiguous: each step is its own kernel
  return x

def per_call(fn, x: Tensor, reps: int = 200) -> float:
  for _ in range(3): fn(x).realize()
  st = time.perf_counter()
  for _ in range(reps): fn(x).realize()
  return (time.perf_counter() - st) / reps

if __name__ == "__main__":
  x = Tensor(np.ones((16, 16), np.float32)).realize()
  GlobalCounters.reset(); ten_kernels(x).realize(); n = GlobalCounters.kernel_count
  eager, jitted = per_call(ten_kernels, x), per_call(jit(ten_kernels), x)
  GlobalCounters.reset(); t0 = GlobalCounters.time_sum_s
  jf = jit(ten_kernels)
  for _ in range(3): jf(x)
  GlobalCounters.reset(); jf(x); kernel_time = GlobalCounters.time_sum_s
  print(f"{n}-kernel function (16x16 f32): eager {eager*1e6:8.1f} us/call, jit replay {jitted*1e6:8.1f} us/call "
        f"({eager/jitted:.1f}x), of which kernels {kernel_time*1e6:.1f} us: replay overhead {(jitted-kernel_time)/n*1e6:.1f} us/kernel")
  print(slowest_compile_line())
