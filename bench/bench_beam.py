"""BEAM search against the heuristic's opts and the peers, in one run:
  python bench/bench_beam.py            # 1024^3 matmul and the 64->64 3x3 conv (batch 32, 56x56, padding 1)
  python bench/bench_beam.py --quick    # smaller sizes
  python bench/bench_beam.py --more     # and a 1x1 conv, a 3-channel conv and a 512^3 matmul (the search is general)
Each row: the kernel's time with the default opts, with BEAM=2's (searched now, or read from the cache when a search
for it ran before -- IGNORE_BEAM_CACHE=1 searches again), the two timed in turns, and NumPy's / torch's on the same
inputs."""
from __future__ import annotations
import argparse, os, platform, time
import numpy as np
from lucidgrad import Tensor
from lucidgrad.helpers import Context
from lucidgrad.device import buffer_of
from lucidgrad.schedule import create_schedule
from lucidgrad.engine.realize import get_runner, run_schedule
from lucidgrad.helpers import slowest_compile_line

def best_of(fn, reps: int) -> float:
  times = []
  for _ in range(reps):
    st = time.perf_counter(); fn(); times.append(time.perf_counter() - st)
  return min(times)

def build(t: Tensor, beam: int, limit: float) -> tuple[object, list, float]:
  """(runner, buffers, search seconds) of the last kernel of `t`, built with BEAM=beam."""
  items = create_schedule([t.uop])[0]
  run_schedule(items[:-1])
  bufs = [buffer_of(b) for b in items[-1].bufs]
  st = time.perf_counter()
  with Context(BEAM=beam, BEAM_TIME_LIMIT=limit): runner = get_runner(bufs[0].device, items[-1].ast)
  return runner, bufs, time.perf_counter() - st

def row(name: str, flops: float, t: Tensor, peers: dict[str, float], reps: int, limit: float):
  (r_def, b_def, _), (r_beam, b_beam, searched) = build(t, 0, limit), build(t, 2, limit)
  r_def(b_def)
  out_def = b_def[0].numpy().copy()  # (the two may share buffers: the schedule is cached)
  r_beam(b_beam)
  # two summation orders of float32: differences scale with the outputs (a 256-channel 3x3 conv's sums reach ~200, and
  # an absolute 1e-4 flagged orders that both match float64 to 2e-6 of the largest)
  scale = float(np.abs(out_def).max()) or 1.0
  assert np.allclose(out_def, b_beam[0].numpy(), rtol=1e-4, atol=1e-5 * scale), f"{name}: BEAM's kernel gives another result than the default's"
  # timed in turns, so a load that comes and goes on a shared machine falls on both alike
  times: dict[str, list[float]] = {"default": [], "beam": []}
  for _ in range(reps):
    times["default"].append(r_def(b_def))
    times["beam"].append(r_beam(b_beam))
  t_def, t_beam = min(times["default"]), min(times["beam"])
  g = lambda s: flops / s / 1e9
  cells = [f"{name:30s} default {g(t_def):7.1f} GFLOP/s  BEAM=2 {g(t_beam):7.1f} GFLOP/s ({t_def/t_beam:4.2f}x default, search {searched:5.1f} s)"]
  cells += [f"{p} {g(s):7.1f} GFLOP/s (BEAM {s/t_beam:4.2f}x)" for p, s in peers.items()]
  print("  ".join(cells), flush=True)
  print(f"{'':30s} default opts {list(r_def.spec.opts)}\n{'':30s} BEAM opts    {list(r_beam.spec.opts)}", flush=True)

def torch_or_none():
  try:
    import torch; torch.set_num_threads(os.cpu_count() or 1); return torch
  except ImportError: return None

if __name__ == "__main__":
  ap = argparse.ArgumentParser()
  ap.add_argument("--quick", action="store_true")
  ap.add_argument("--more", action="store_true", help="three more shapes: the search must be general")
  ap.add_argument("--limit", type=float, default=240.0, help="seconds of search per kernel")
  args = ap.parse_args()
  torch, reps = torch_or_none(), 3 if args.quick else 5
  print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start, "
        f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch else ""))
  rng = np.random.default_rng(0)
  n = 256 if args.quick else 1024
  an, bn = rng.standard_normal((n, n)).astype(np.float32), rng.standard_normal((n, n)).astype(np.float32)
  peers = {"numpy": best_of(lambda: an @ bn, reps)}
  if torch: ta, tb = torch.from_numpy(an), torch.from_numpy(bn); peers["torch"] = best_of(lambda: ta @ tb, reps)
  row(f"matmul {n}^3 f32", 2 * n**3, Tensor(an).realize() @ Tensor(bn).realize(), peers, reps, args.limit)
  b, hw = (4, 28) if args.quick else (32, 56)
  xn, wn = rng.standard_normal((b, 64, hw, hw)).astype(np.float32), rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
  peers = {}
  if torch:
    tx, tw = torch.from_numpy(xn), torch.from_numpy(wn)
    peers["torch"] = best_of(lambda: torch.nn.functional.conv2d(tx, tw, padding=1), reps)
  row(f"conv 64->64 3x3 {b}x{hw}x{hw}", 2 * b * 64 * 64 * 9 * hw * hw, Tensor(xn).realize().conv2d(Tensor(wn).realize(), padding=1), peers, reps, args.limit)
  if args.more:
    for b, ci, co, hw, k in ((8, 256, 64, 14, 1), (16, 3, 32, 32, 3)):
      xn, wn = rng.standard_normal((b, ci, hw, hw)).astype(np.float32), rng.standard_normal((co, ci, k, k)).astype(np.float32)
      peers = {}
      if torch:
        tx, tw = torch.from_numpy(xn), torch.from_numpy(wn)
        peers["torch"] = best_of(lambda: torch.nn.functional.conv2d(tx, tw, padding=k // 2), reps)
      row(f"conv {ci}->{co} {k}x{k} {b}x{hw}x{hw}", 2 * b * ci * co * k * k * hw * hw,
          Tensor(xn).realize().conv2d(Tensor(wn).realize(), padding=k // 2), peers, reps, args.limit)
    an, bn = rng.standard_normal((512, 512)).astype(np.float32), rng.standard_normal((512, 512)).astype(np.float32)
    row("matmul 512^3 f32", 2 * 512**3, Tensor(an).realize() @ Tensor(bn).realize(), {"numpy": best_of(lambda: an @ bn, reps)}, reps, args.limit)
  print(slowest_compile_line())
