"""Products that stream their weights from memory: x (128 x K) @ W.T for GPT-2's four block shapes and its logits, the
way an inference forward runs them -- each weight read once per call, from DRAM (docs/design/0039). Two layouts of the
same weights, both through the default heuristic:
  plain   W (N, K) as a Linear holds it: the kernel copies a transposed 32-column panel (STAGE) per block of outputs
  packed  W kept as 32-column panels (N/32, K, 32), contiguous: the kernel reads each panel as it is, no copy
Hot: one weight product repeated, best of 5 (its weight in the caches). Cold: each product after 256 MB of other
writes, the median of 9, so it reads its weight from memory as a model's forward does (and finds the caches full of
dirty lines, as a forward leaves them). Kernel time (GlobalCounters) and GFLOP/s; both layouts' outputs are checked
against NumPy. The machine's noise is large: compare the two layouts within a row, and run it more than once.
  python bench/bench_weight_stream.py [K,N ...]"""
import sys
import numpy as np
from lucidgrad import Tensor, GlobalCounters

M, PANEL, FLUSH_BYTES = 128, 32, 256 << 20  # rows (tokens); the panel's columns (two 16-lane vectors); bytes written between cold runs

def packed_panels(w: Tensor) -> Tensor:
  """W (N, K) as panels (ceil(N/32), K, 32): panel p holds columns 32p..32p+31 of W.T, zero past N."""
  N, K = w.shape
  P = -(-N // PANEL)
  return w.pad(((0, P * PANEL - N), (0, 0))).reshape(P, PANEL, K).permute(0, 2, 1).contiguous()

def product_packed(x: Tensor, p: Tensor, N: int) -> Tensor:
  P, K, _ = p.shape
  return (x.reshape(M, 1, K, 1) * p.reshape(1, P, K, PANEL)).sum(2).reshape(M, P * PANEL)[:, :N]

def kernel_ms(run, flush: np.ndarray | None) -> float:
  times = []
  for _ in range(9 if flush is not None else 5):
    if flush is not None: flush += 1.0
    t0 = GlobalCounters.time_sum_s
    run().realize()
    times.append(GlobalCounters.time_sum_s - t0)
  return (float(np.median(times)) if flush is not None else min(times)) * 1e3

def row(K: int, N: int, rng, flush: np.ndarray):
  w = Tensor(wn := rng.standard_normal((N, K), dtype=np.float32)).realize()
  p = packed_panels(w).realize()
  x = Tensor(xn := rng.standard_normal((M, K), dtype=np.float32)).realize()
  ref = xn.astype(np.float64) @ wn.T.astype(np.float64)
  plain, packed = (lambda: x @ w.T), (lambda: product_packed(x, p, N))
  for name, f in (("plain", plain), ("packed", packed)):
    err = float(np.abs(f().numpy() - ref).max() / np.abs(ref).max())
    if err > 1e-5: raise SystemExit(f"{name} {K}x{N}: max error {err:.1e} of max |ref|")
  gflop = 2 * M * K * N / 1e9
  cells = []
  for name, f in (("plain", plain), ("packed", packed)):
    hot, cold = kernel_ms(f, None), kernel_ms(f, flush)
    cells.append(f"{name} hot {hot:6.3f} ms ({gflop / hot * 1e3:4.0f}) cold {cold:6.3f} ms ({gflop / cold * 1e3:4.0f})")
  print(f"K {K:5d} N {N:5d}  " + " | ".join(cells), flush=True)

if __name__ == "__main__":
  shapes = [tuple(map(int, s.split(","))) for s in sys.argv[1:]] or [(768, 2304), (768, 768), (768, 3072), (3072, 768), (768, 50257)]
  rng = np.random.default_rng(0)
  print(f"x ({M} x K) @ W.T, W (N x K) float32; GFLOP/s in parentheses")
  flush = np.zeros(FLUSH_BYTES // 4, np.float32)
  for K, N in shapes: row(K, N, rng, flush)
