"""BEAM=2 on the GPU's tensor-core rows (issue 11: "with BEAM allowed"): each kernel built with BEAM=0 and BEAM=2, device time
by events (PROFILE=1), outputs compared, beside torch's TFLOP/s for the same op in the same process (CUDA events around
10 calls queued back to back). On the device machine: PROFILE=1 LIMIT=140 python3 bench/bench_gpu_beam.py [--only NAME]
The conv row times the conv kernel alone (its layout copies are not searched; bench_gpu.py times the whole op)."""
import argparse, sys, os
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_beam import build
from lucidgrad import Tensor, dtypes
limit = float(os.environ.get("LIMIT", "150"))

def torch_s(fn) -> float:
  import torch
  fn(); torch.cuda.synchronize()
  s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
  s.record()
  for _ in range(10): fn()
  e.record(); torch.cuda.synchronize()
  return s.elapsed_time(e) / 10 / 1e3

def row(name, flops, t, peer_s):
  (r_def, b_def, _), (r_beam, b_beam, searched) = build(t, 0, limit), build(t, 2, limit)
  r_def(b_def); out_def = b_def[0].numpy().astype(np.float32).copy()
  r_beam(b_beam); out_beam = b_beam[0].numpy().astype(np.float32)
  err = float(np.abs(out_def - out_beam).max() / max(np.abs(out_def).max(), 1e-30))
  td = min(r_def(b_def) for _ in range(10)); tb = min(r_beam(b_beam) for _ in range(10))
  tt = min(peer_s() for _ in range(3))
  print(f"{name}: default {flops/td/1e12:6.1f} TFLOP/s ({tt/td:.2f}x torch)  BEAM=2 {flops/tb/1e12:6.1f} TFLOP/s ({tt/tb:.2f}x torch)  "
        f"torch {flops/tt/1e12:6.1f} TFLOP/s  (search {searched:.0f} s, max rel diff {err:.1e})", flush=True)
  print(f"   default {list(r_def.spec.opts)}\n   beam    {list(r_beam.spec.opts)}", flush=True)

if __name__ == "__main__":
  import torch
  ap = argparse.ArgumentParser(); ap.add_argument("--only", default="")
  only = ap.parse_args().only
  n = 8192
  for dt, tdt in ((dtypes.float16, torch.float16), (dtypes.bfloat16, torch.bfloat16)):
    if only not in f"matmul {dt.name}": continue
    R = lambda *s: Tensor.randn(*s, device="CUDA").cast(dt).realize()
    ta, tb = torch.randn(n, n, device="cuda", dtype=tdt), torch.randn(n, n, device="cuda", dtype=tdt)
    row(f"matmul 8192^3 {dt.name}", 2 * n**3, R(n, n) @ R(n, n), lambda: torch_s(lambda: ta @ tb))
  if only in "conv float16":
    R = lambda *s: Tensor.randn(*s, device="CUDA").cast(dtypes.float16).realize()
    x, w = R(64, 128, 56, 56), R(128, 128, 3, 3)
    tx, tw = torch.randn(64, 128, 56, 56, device="cuda", dtype=torch.float16), torch.randn(128, 128, 3, 3, device="cuda", dtype=torch.float16)
    row("conv 3x3 64x128x56^2 float16 (kernel alone)", 2 * 64 * 128 * 128 * 9 * 56 * 56, x.conv2d(w, padding=1),
        lambda: torch_s(lambda: torch.nn.functional.conv2d(tx, tw, padding=1)))
