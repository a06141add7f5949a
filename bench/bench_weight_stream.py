"""Products that stream their weights from memory: x (128 x K) @ W.T for GPT-2's four block shapes and its logits, as
an inference forward runs them -- each weight read once per call, from DRAM (docs/design/0039). Three ways, each
through the default heuristic, in one process:
  copied    PACK_WEIGHTS=0: the kernel copies W's transposed 32-column panel into scratch per column block (STAGE)
  panels    W kept as 32-column panels (tensor._weight_panels), read in place; PREFETCH_NEXT=0
  +prefetch the same, the next panel fetched while the row blocks run over this one (the default)
Hot: the product run again at once (its weight in cache). Cold: the product after 256 MB of other writes, so it
reads its weight from memory as a model's forward does (and finds the caches full of dirty lines, as a forward leaves
them). The three alternate, ROUNDS times; the medians of kernel time (GlobalCounters) and their GFLOP/s. The outputs
are checked against NumPy. The machine's noise is large: compare within a row.
  python bench/bench_weight_stream.py [K,N ...]"""
import sys, statistics
import numpy as np
from lucidgrad import Tensor, GlobalCounters
from lucidgrad.helpers import Context

M, ROUNDS, FLUSH_BYTES = 128, 9, 256 << 20
WAYS = {"copied": dict(PACK_WEIGHTS=0), "panels": dict(PREFETCH_NEXT=0), "+prefetch": dict()}

def kernel_s(f) -> float:
  t0 = GlobalCounters.time_sum_s
  f().realize()
  return GlobalCounters.time_sum_s - t0

def row(K: int, N: int, rng, flush: np.ndarray):
  w = Tensor(wn := rng.standard_normal((N, K), dtype=np.float32)).realize()
  x = Tensor(xn := rng.standard_normal((M, K), dtype=np.float32)).realize()
  ref = xn.astype(np.float64) @ wn.T.astype(np.float64)
  product = lambda: x @ w.T
  times = {name: ([], []) for name in WAYS}
  for name, flags in WAYS.items():
    with Context(**flags):
      for _ in range(2):  # the second read of the weight makes its panels
        err = float(np.abs(product().numpy() - ref).max() / np.abs(ref).max())
        if err > 1e-5: raise SystemExit(f"{name} {K}x{N}: max error {err:.1e} of max |ref|")
  for _ in range(ROUNDS):
    for name, flags in WAYS.items():
      with Context(**flags):
        flush += 1.0
        cold = kernel_s(product)
        times[name][0].append(kernel_s(product))
        times[name][1].append(cold)
  gflop = 2 * M * K * N / 1e9
  cells = []
  for name, (hot, cold) in times.items():
    h, c = statistics.median(hot), statistics.median(cold)
    cells.append(f"{name} {h * 1e3:6.3f} / {c * 1e3:6.3f} ms ({gflop / h:4.0f} / {gflop / c:4.0f})")
  print(f"K {K:5d} N {N:5d}  " + " | ".join(cells), flush=True)

if __name__ == "__main__":
  shapes = [tuple(map(int, s.split(","))) for s in sys.argv[1:]] or [(768, 2304), (768, 768), (768, 3072), (3072, 768), (768, 50257)]
  rng = np.random.default_rng(0)
  print(f"x ({M} x K) @ W.T, W (N x K) float32: hot / cold kernel ms (GFLOP/s), medians of {ROUNDS}")
  flush = np.zeros(FLUSH_BYTES // 4, np.float32)
  for K, N in shapes: row(K, N, rng, flush)
