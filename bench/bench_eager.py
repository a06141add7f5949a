"""What building one eager op costs: the lazy graph a Tensor op makes (nodes, promotion, broadcasting, the Tensor), with
nothing realized, beside torch's and NumPy's whole eager op on the same small tensor in the same run.
  python bench/bench_eager.py             # every row
  python bench/bench_eager.py --reps 30   # more batches, steadier minimums on a busy machine
Each cell is the best over --reps batches of CPU time (time.process_time) per op, so other processes on the machine
move it less; an op's result is dropped, as an eager loop drops last iteration's graph. A row is one entry of CASES:
add one (with its own setup) to measure another kind of call, e.g. a call that also realizes."""
from __future__ import annotations
import argparse, os, platform, time
from dataclasses import dataclass
from typing import Callable
import numpy as np
from lucidgrad import Tensor, dtypes

@dataclass
class Case:
  name: str
  ops: int                                            # ops one lucidgrad call builds: its cell is per op
  lucid: Callable[[dict], Callable[[], object]]       # inputs -> the call to time
  torch: Callable[[dict], Callable[[], object]] | None = None
  numpy: Callable[[dict], Callable[[], object]] | None = None
  peer_ops: int | None = None                         # ops one peer call is, where it differs (exp is one op there)

def chain(x, n: int = 5):
  for _ in range(n): x = x * 1.01 + 0.5
  return x

CASES = [
  Case("x * 1.01 (Python scalar)", 1, lambda v: lambda: v["x"] * 1.01, lambda v: lambda: v["tx"] * 1.01, lambda v: lambda: v["nx"] * 1.01),
  Case("x + y (same shape)", 1, lambda v: lambda: v["x"] + v["y"], lambda v: lambda: v["tx"] + v["ty"], lambda v: lambda: v["nx"] + v["ny"]),
  Case("x + b (b broadcast, shape (4,))", 1, lambda v: lambda: v["x"] + v["b"], lambda v: lambda: v["tx"] + v["tb"], lambda v: lambda: v["nx"] + v["nb"]),
  Case("x < 0.5 (comparison)", 1, lambda v: lambda: v["x"] < 0.5, lambda v: lambda: v["tx"] < 0.5, lambda v: lambda: v["nx"] < 0.5),
  Case("-x", 1, lambda v: lambda: -v["x"], lambda v: lambda: -v["tx"], lambda v: lambda: -v["nx"]),
  Case("x.sqrt()", 1, lambda v: lambda: v["x"].sqrt(), lambda v: lambda: v["tx"].sqrt(), lambda v: lambda: np.sqrt(v["nx"])),
  Case("x.exp() (2 ops here: mul, exp2)", 2, lambda v: lambda: v["x"].exp(), lambda v: lambda: v["tx"].exp(), lambda v: lambda: np.exp(v["nx"]), 1),
  Case("x.relu()", 1, lambda v: lambda: v["x"].relu(), lambda v: lambda: v["tx"].relu(), lambda v: lambda: np.maximum(v["nx"], 0)),
  Case("x.cast(float16)", 1, lambda v: lambda: v["x"].cast(dtypes.float16), lambda v: lambda: v["tx"].half(), lambda v: lambda: v["nx"].astype(np.float16)),
  Case("10-op chain: x = x * 1.01 + 0.5, 5 times", 10, lambda v: lambda: chain(v["x"]), lambda v: lambda: chain(v["tx"]),
       lambda v: lambda: chain(v["nx"])),
]

def per_op(call: Callable[[], object], ops: int, reps: int, calls: int) -> float:
  """Best CPU seconds per op over `reps` batches of `calls` calls, after a warm-up batch."""
  for _ in range(calls): call()
  best = float("inf")
  for _ in range(reps):
    st = time.process_time()
    for _ in range(calls): call()
    best = min(best, (time.process_time() - st) / calls / ops)
  return best

def inputs(torch) -> dict:
  rng = np.random.default_rng(0)
  v = {"nx": rng.random((4, 4), dtype=np.float32), "ny": rng.random((4, 4), dtype=np.float32), "nb": rng.random(4, dtype=np.float32)}
  v.update(x=Tensor(v["nx"]).realize(), y=Tensor(v["ny"]).realize(), b=Tensor(v["nb"]).realize())
  if torch: v.update(tx=torch.from_numpy(v["nx"]), ty=torch.from_numpy(v["ny"]), tb=torch.from_numpy(v["nb"]))
  return v

def torch_or_none():
  try:
    import torch; torch.set_num_threads(1); return torch  # one small op: threads only add overhead
  except ImportError: return None

if __name__ == "__main__":
  ap = argparse.ArgumentParser()
  ap.add_argument("--reps", type=int, default=15, help="timed batches per cell (the best is shown)")
  ap.add_argument("--calls", type=int, default=300, help="calls per batch")
  args = ap.parse_args()
  torch = torch_or_none()
  print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, numpy {np.__version__}"
        + (f", torch {torch.__version__}" if torch else ", torch not installed"))
  print("# lucidgrad: building the op's graph only (nothing realized); torch and NumPy: the whole eager op. 4x4 float32, us per op.")
  v = inputs(torch)
  for case in CASES:
    ours = per_op(case.lucid(v), case.ops, args.reps, args.calls)
    cells = [f"{case.name:42s} lucidgrad {ours*1e6:7.2f} us/op"]
    for peer, make in (("torch", case.torch if torch else None), ("numpy", case.numpy)):
      if make is not None:
        theirs = per_op(make(v), case.peer_ops or case.ops, args.reps, args.calls)
        # the ratio is per call: a row's ops are one thing done, however many ops each side needs for it
        ratio = ours * case.ops / (theirs * (case.peer_ops or case.ops))
        cells.append(f"{peer} {theirs*1e6:6.2f} us/op ({ratio:5.2f}x per call)")
    print("  ".join(cells), flush=True)
