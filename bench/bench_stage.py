"""STAGE on the 1024^3 float32 matmul, beside NumPy in the same run (docs/design/0010-staging.md):
  python bench/bench_stage.py            # N=1024, 2 threads
  python bench/bench_stage.py --n 1040 --threads 1
Each opt list is timed with and without its STAGE, rounds interleaved so a busy machine disturbs every row alike; a row
is the best of `--rounds` x 5 runs. Every kernel's output is checked against NumPy in float64 first."""
from __future__ import annotations
import argparse, os, platform, time
import numpy as np
from lucidgrad import Tensor
from lucidgrad.schedule import create_schedule
from lucidgrad.engine.realize import run_schedule
from lucidgrad.device import buffer_of, Device
from lucidgrad.codegen import program_of
from lucidgrad.codegen.opt import Kernel, Opt, OptOps, hand_coded_opts

U, PAD, SW, ST, TH = OptOps.UPCAST, OptOps.PADTO, OptOps.SWAP, OptOps.STAGE, OptOps.THREAD
# register blocks of 16 columns by 8, 6 and 5 rows (16, 12 and 10 accumulator vectors), the column block outermost
BLOCKS = {"8x16": [Opt(U, 1, 16), Opt(U, 0, 8), Opt(SW, 0, 2)],
          "6x16": [Opt(U, 1, 16), Opt(PAD, 0, 6), Opt(U, 0, 6), Opt(SW, 0, 2)],
          "5x16": [Opt(U, 1, 16), Opt(PAD, 0, 5), Opt(U, 0, 5), Opt(SW, 0, 2)]}

if __name__ == "__main__":
  ap = argparse.ArgumentParser()
  ap.add_argument("--n", type=int, default=1024)
  ap.add_argument("--threads", type=int, default=2)
  ap.add_argument("--rounds", type=int, default=5)
  args = ap.parse_args()
  n = args.n
  rng = np.random.default_rng(0)
  an, bn = rng.standard_normal((n, n)).astype(np.float32), rng.standard_normal((n, n)).astype(np.float32)
  items = create_schedule([(Tensor(an).realize() @ Tensor(bn).realize()).uop])[0]
  run_schedule(items[:-1])
  bufs = [buffer_of(b) for b in items[-1].bufs]
  dev, ref = Device[bufs[0].device], an.astype(np.float64) @ bn.astype(np.float64)
  kernels = {"default": hand_coded_opts(Kernel(items[-1].ast, dev.renderer))}
  for name, block in BLOCKS.items():
    thread = [Opt(TH, 0, args.threads)] if args.threads > 1 else []
    kernels[name] = Kernel(items[-1].ast, dev.renderer).apply_opts(block + thread)
    kernels[name + " STAGE B"] = Kernel(items[-1].ast, dev.renderer).apply_opts(block + [Opt(ST, 0, 2)] + thread)
  progs = {}
  for name, k in kernels.items():
    spec = program_of(k)
    prog = dev.program_cls(spec.name, dev.compiler.compile_cached(spec.src), spec=spec)
    raw = [bufs[i].raw for i in spec.slots]
    prog(*raw)
    assert np.abs(bufs[0].numpy().reshape(n, n) - ref).max() < 1e-2 * n ** 0.5, name
    progs[name] = (prog, raw, k.applied)
  best = {name: float("inf") for name in [*progs, "numpy"]}
  for _ in range(args.rounds):
    for name, (prog, raw, _) in progs.items(): best[name] = min(best[name], *(prog(*raw) for _ in range(5)))
    for _ in range(5):
      st = time.perf_counter(); an @ bn; best["numpy"] = min(best["numpy"], time.perf_counter() - st)
  print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"matmul {n}^3 float32, {args.threads} thread(s) (NumPy: its own)")
  for name, t in best.items():
    opts = f"  {[(o.op.name, o.axis, o.amount) for o in progs[name][2]]}" if name in progs else ""
    print(f"{name:14s} {2 * n**3 / t / 1e9:7.1f} GFLOP/s  {best['numpy'] / t:5.2f}x numpy{opts}")
