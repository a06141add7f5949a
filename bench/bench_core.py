"""Core benchmarks, each row beside NumPy (and torch / tinygrad when installed) in the same run.
  python bench/bench_core.py            # all rows
  python bench/bench_core.py --quick    # smaller sizes, for a smoke run
lucidgrad's time is the kernel time of the best of several runs, on inputs realized beforehand; `wall` adds the
Python work of building, scheduling and launching the graph once kernels are cached."""
from __future__ import annotations
import argparse, math, time, platform, os
import numpy as np
from lucidgrad import Tensor, GlobalCounters
from lucidgrad.uop.ops import UOp
from lucidgrad.uop.pattern import graph_rewrite, RewriteStats
from lucidgrad.uop.symbolic import symbolic
from lucidgrad.helpers import slowest_compile_line

def best_of(fn, reps: int) -> float:
  times = []
  for _ in range(reps):
    st = time.perf_counter(); fn(); times.append(time.perf_counter() - st)
  return min(times)

def lucid_time(build, reps: int) -> tuple[float, float]:
  """(best kernel time, best wall time) of realizing build()."""
  build().realize()  # compile and warm up
  kts, walls = [], []
  for _ in range(reps):
    GlobalCounters.reset()
    st = time.perf_counter(); build().realize(); walls.append(time.perf_counter() - st)
    kts.append(GlobalCounters.time_sum_s)
  return min(kts), min(walls)

def peers():
  out = {}
  try:
    import torch; torch.set_num_threads(os.cpu_count() or 1); out["torch"] = torch
  except ImportError: pass
  return out

def row(name: str, unit: str, amount: float, lucid: tuple[float, float], others: dict[str, float]):
  kt, wall = lucid
  ours = amount / kt
  cells = [f"{name:34s} lucidgrad {ours:9.2f} {unit} (wall {amount/wall:9.2f})"]
  for peer, t in others.items(): cells.append(f"{peer} {amount/t:9.2f} {unit}  ratio {ours/(amount/t):5.2f}x")
  print("  ".join(cells), flush=True)

def bench_gelu(n: int, reps: int, tp):
  xn = np.random.default_rng(0).standard_normal(n).astype(np.float32)
  x = Tensor(xn).realize()
  k = math.sqrt(2 / math.pi)
  def np_gelu():
    y = xn * 1.5 + 0.3
    return 0.5 * y * (1 + np.tanh(k * (y + 0.044715 * y * y * y)))
  others = {"numpy": best_of(np_gelu, reps)}
  if "torch" in tp:
    t = tp["torch"].from_numpy(xn); others["torch"] = best_of(lambda: tp["torch"].nn.functional.gelu(t * 1.5 + 0.3, approximate="tanh"), reps)
  row(f"gelu(x*1.5+0.3) {n/2**20:.0f}M f32", "GB/s", 2 * n * 4 / 1e9, lucid_time(lambda: (x * 1.5 + 0.3).gelu(approximate="tanh"), reps), others)

def bench_unary(n: int, reps: int, tp):
  """exp, log, sin, cos, tanh over n float32: the transcendentals codegen writes as polynomials (docs/design/0015)."""
  xn = np.random.default_rng(0).standard_normal(n).astype(np.float32)
  pos = np.abs(xn) + np.float32(1e-3)
  x, xp = Tensor(xn).realize(), Tensor(pos).realize()
  for name, src, xs in (("exp", x, xn), ("log", xp, pos), ("sin", x, xn), ("cos", x, xn), ("tanh", x, xn)):
    others = {"numpy": best_of(lambda: getattr(np, name)(xs), reps)}
    if "torch" in tp:
      t = tp["torch"].from_numpy(xs); others["torch"] = best_of(lambda: getattr(tp["torch"], name)(t), reps)
    row(f"{name} {n/2**20:.0f}M f32", "GB/s", 2 * n * 4 / 1e9, lucid_time(lambda: getattr(src, name)(), reps), others)

def bench_sum(n: int, reps: int, tp):
  xn = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
  x = Tensor(xn).realize()
  others = {"numpy": best_of(lambda: xn.sum(axis=1), reps)}
  if "torch" in tp:
    t = tp["torch"].from_numpy(xn); others["torch"] = best_of(lambda: t.sum(dim=1), reps)
  row(f"sum(axis=-1) {n}x{n} f32", "GB/s", n * n * 4 / 1e9, lucid_time(lambda: x.sum(axis=1), reps), others)

def bench_embedding(rows: int, dim: int, tokens: int, reps: int, tp):
  """A lookup of `tokens` rows of a rows x dim float32 table (GPT-2's wte): moves tokens x dim x 4 bytes, whatever the table."""
  rng = np.random.default_rng(0)
  wn, ixn = rng.standard_normal((rows, dim)).astype(np.float32), rng.integers(0, rows, tokens).astype(np.int32)
  w, ix = Tensor(wn).realize(), Tensor(ixn).realize()
  others = {"numpy": best_of(lambda: wn[ixn], reps)}
  if "torch" in tp:
    tw, tix = tp["torch"].from_numpy(wn), tp["torch"].from_numpy(ixn.astype(np.int64))
    others["torch"] = best_of(lambda: tp["torch"].nn.functional.embedding(tix, tw), reps)
  row(f"embedding {tokens} of {rows}x{dim} f32", "GB/s", 2 * tokens * dim * 4 / 1e9, lucid_time(lambda: ix.embedding(w), reps), others)

def bench_embedding_backward(rows: int, dim: int, tokens: int, reps: int, tp):
  """Forward and backward of a lookup of `tokens` rows (a dense gradient, as torch's default): the gradient is the table
  written once (zeros) plus one add per token row (docs/design/0017). GB/s counts that: the table once, the rows read and
  added, the forward's rows."""
  rng = np.random.default_rng(0)
  wn, ixn, gn = rng.standard_normal((rows, dim)).astype(np.float32), rng.integers(0, rows, tokens).astype(np.int32), rng.standard_normal((tokens, dim)).astype(np.float32)
  w, ix, g = Tensor(wn, requires_grad=True).realize(), Tensor(ixn).realize(), Tensor(gn).realize()
  def step():
    w.grad = None
    (ix.embedding(w) * g).sum().backward()
    return w.grad
  amount = (rows * dim + 5 * tokens * dim) * 4 / 1e9
  others = {}
  if "torch" in tp:
    torch = tp["torch"]
    tw, tix, tg = torch.from_numpy(wn).requires_grad_(), torch.from_numpy(ixn.astype(np.int64)), torch.from_numpy(gn)
    def torch_step():
      tw.grad = None
      (torch.nn.functional.embedding(tix, tw) * tg).sum().backward()
    others["torch"] = best_of(torch_step, reps)
  got = step().numpy()
  ref = np.zeros_like(wn); np.add.at(ref, ixn, gn)
  assert np.array_equal(got, ref), "embedding gradient differs from np.add.at"
  row(f"embedding fwd+bwd {tokens} of {rows}x{dim}", "GB/s", amount, lucid_time(step, reps), others)

def bench_matmul(n: int, reps: int, tp):
  rng = np.random.default_rng(0)
  an, bn = rng.standard_normal((n, n)).astype(np.float32), rng.standard_normal((n, n)).astype(np.float32)
  a, b = Tensor(an).realize(), Tensor(bn).realize()
  others = {"numpy": best_of(lambda: an @ bn, reps)}
  if "torch" in tp:
    ta, tb = tp["torch"].from_numpy(an), tp["torch"].from_numpy(bn); others["torch"] = best_of(lambda: ta @ tb, reps)
  row(f"matmul {n}x{n}x{n} f32", "GFLOP/s", 2 * n**3 / 1e9, lucid_time(lambda: a @ b, reps), others)

def bench_rewrite(depth: int):
  """Rewrites per second of the symbolic rules on a large index graph: sums of range*const terms under div/mod."""
  rngs = [UOp.range(64, rid=(i,)) for i in range(8)]
  exprs = []
  for k in range(depth):
    lin = rngs[0]
    for i, r in enumerate(rngs[1:]): lin = lin * (k % 7 + 2) + r + (i + k) % 5
    exprs.append(((lin * 4 + 3) // 4) % (64 + k) + (lin - lin) * k)
  sink = UOp.sink(*exprs)
  nodes = len(sink.toposort)
  before, st = RewriteStats.rules_applied, time.perf_counter()
  graph_rewrite(sink, symbolic)
  dt = time.perf_counter() - st
  print(f"{'pattern matcher (symbolic)':34s} {nodes} nodes, {RewriteStats.rules_applied - before} rewrites in {dt*1e3:.1f} ms: "
        f"{(RewriteStats.rules_applied - before)/dt:,.0f} rewrites/s, {nodes/dt:,.0f} nodes/s", flush=True)

if __name__ == "__main__":
  ap = argparse.ArgumentParser()
  ap.add_argument("--quick", action="store_true")
  args = ap.parse_args()
  q = args.quick
  tp = peers()
  print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}"
        + (f", torch {tp['torch'].__version__}" if "torch" in tp else ", torch not installed"))
  bench_gelu(2**20 if q else 2**24, 3 if q else 5, tp)
  bench_unary(2**20 if q else 2**24, 3 if q else 5, tp)
  bench_sum(1024 if q else 4096, 3 if q else 5, tp)
  bench_embedding(50257, 768, 256, 5 if q else 20, tp)
  bench_embedding_backward(50257, 768, 256, 5 if q else 10, tp)
  bench_matmul(256 if q else 1024, 2 if q else 3, tp)
  if not q: bench_matmul(2048, 2, tp)
  bench_rewrite(50 if q else 400)
  print(slowest_compile_line())
