"""BEAM=2 on the GPU's tensor-core rows (issue 11: "with BEAM allowed"): each kernel built with BEAM=0 and BEAM=2, device time
by events (PROFILE=1), outputs compared. On the device machine: PROFILE=1 LIMIT=140 python3 bench/bench_gpu_beam.py"""
import sys, os
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_beam import build
from lucidgrad import Tensor, dtypes
limit = float(os.environ.get("LIMIT", "150"))
def row(name, flops, t):
  (r_def, b_def, _), (r_beam, b_beam, searched) = build(t, 0, limit), build(t, 2, limit)
  r_def(b_def); out_def = b_def[0].numpy().astype(np.float32).copy()
  r_beam(b_beam); out_beam = b_beam[0].numpy().astype(np.float32)
  err = float(np.abs(out_def - out_beam).max() / max(np.abs(out_def).max(), 1e-30))
  td = min(r_def(b_def) for _ in range(10)); tb = min(r_beam(b_beam) for _ in range(10))
  print(f"{name}: default {flops/td/1e12:6.1f} TFLOP/s  BEAM=2 {flops/tb/1e12:6.1f} TFLOP/s  (search {searched:.0f} s, max rel diff {err:.1e})", flush=True)
  print(f"   default {list(r_def.spec.opts)}\n   beam    {list(r_beam.spec.opts)}", flush=True)
if __name__ == "__main__":
  n = 8192
  R = lambda *s: Tensor.randn(*s, device="CUDA").cast(dtypes.float16).realize()
  row("matmul 8192^3 f16", 2 * n**3, R(n, n) @ R(n, n))
  x, w = R(64, 128, 56, 56), R(128, 128, 3, 3)
  row("conv 3x3 64x128x56^2 f16", 2 * 64 * 128 * 128 * 9 * 56 * 56, x.conv2d(w, padding=1))
