"""The tensor-core kernels under named opt lists, side by side on the GPU: the heuristic's, and the same with one of its
block-tile choices changed (variants below), the heuristic's also with its fragments read element by element
(MATRIX_LOADS=0) and with B's fragments a read each (MATRIX_LOADS=1); device time by events (PROFILE=1), each output against the heuristic's and against torch's. On the device machine:
  PROFILE=1 python3 bench/bench_gpu_tc.py [--n 8192]"""
import argparse, os, sys
ALL = False
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lucidgrad import Tensor, dtypes
from lucidgrad.device import buffer_of
from lucidgrad.schedule import create_schedule
from lucidgrad.engine.realize import get_runner, run_schedule
from lucidgrad.codegen.opt import Opt, OptOps
from lucidgrad.helpers import Context

def variants(opts: list[Opt]) -> dict[str, list[Opt]]:
  """The heuristic's opts, and each of its choices for the block tile changed alone: the blocks' raster group (RASTER,
  docs/design/0026) other sizes or none, 2 x 2 warps where it took 2 x 4, 2 to 4 tile buffers (PIPE), and 8 k-steps a
  stage in 2 buffers."""
  out = {"heuristic": list(opts)}
  def changed(op: OptOps, amount: int | None, axis: int | None = None) -> list[Opt]:
    return [o for o in (Opt(o.op, o.axis, amount) if o.op is op and (axis is None or o.axis == axis) and amount else
                        None if o.op is op and amount is None else o for o in opts) if o is not None]
  for o in opts:
    if o.op is OptOps.RASTER:
      out["no RASTER"] = changed(OptOps.RASTER, None)
      out.update({f"RASTER {g}": changed(OptOps.RASTER, g) for g in (4, 8, 16) if g != o.amount})
    if o.op is OptOps.LOCAL and o.amount == 4:
      out["2 x 2 warps"] = changed(OptOps.LOCAL, 2, o.axis)
      out["2 x 2 warps, no RASTER"] = [x for x in out["2 x 2 warps"] if x.op is not OptOps.RASTER]  # the last session's heuristic
    if o.op is OptOps.PIPE:
      out.update({f"PIPE {b}": changed(OptOps.PIPE, b) for b in (2, 3, 4) if b != o.amount})
      out["8 k-steps a stage, PIPE 2"] = [Opt(x.op, x.axis, 8) if x.op is OptOps.UNROLL else x for x in changed(OptOps.PIPE, 2)]
  return out

def rows(name: str, flops: float, t: Tensor, ref: np.ndarray, torch_s: float | None):
  items = create_schedule([t.uop])[0]
  run_schedule(items[:-1])
  bufs = [buffer_of(b) for b in items[-1].bufs]
  base = get_runner(bufs[0].device, items[-1].ast)
  first = None
  matrix_levels = {2: "", 1: ", ldmatrix a fragment a read", 0: ", no ldmatrix"}
  for (label, opts), matrix in ((v, m) for v in variants(list(base.spec.opts)).items() for m in ((2, 1, 0) if v[0] == "heuristic" or ALL else (2,))):
    label = f"{label}{matrix_levels[matrix]}"
    if os.environ.get("ONLY") and os.environ["ONLY"] not in label: continue
    try:
      with Context(MATRIX_LOADS=matrix): r = get_runner(bufs[0].device, items[-1].ast, opts)
    except Exception as e:
      print(f"{name:28s} {label:36s} does not build: {type(e).__name__}: {str(e).splitlines()[0][:140]}", flush=True); continue
    r(bufs)
    out = bufs[0].numpy().astype(np.float64).reshape(ref.shape)
    first = out if first is None else first
    err = float(np.abs(out - ref).max() / np.abs(ref).max())
    secs = min(r(bufs) for _ in range(10))
    vs = f"  torch {flops / torch_s / 1e12:6.1f} ({torch_s / secs:4.2f}x)" if torch_s else ""
    print(f"{name:28s} {label:36s} {flops / secs / 1e12:7.1f} TFLOP/s  rel err vs torch {err:.1e}  same as heuristic: "
          f"{np.array_equal(out, first)}{vs}", flush=True)

def torch_seconds(torch, fn) -> float:
  """The least device time of 10 calls of `fn` (torch on the GPU), by events."""
  fn(); torch.cuda.synchronize()
  s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
  best = float("inf")
  for _ in range(10):
    s.record(); fn(); e.record(); e.synchronize(); best = min(best, s.elapsed_time(e) / 1e3)
  return best

if __name__ == "__main__":
  import torch
  ap = argparse.ArgumentParser(); ap.add_argument("--n", type=int, default=8192)
  ap.add_argument("--all", action="store_true", help="every variant also without ldmatrix, and bfloat16 too")
  args = ap.parse_args()
  ALL = args.all
  torch_time = lambda fn: torch_seconds(torch, fn)
  n = args.n
  for dt, tdt in ((dtypes.float16, torch.float16), (dtypes.bfloat16, torch.bfloat16))[:2 if ALL else 1]:
    a, b = torch.randn(n, n, device="cuda", dtype=tdt), torch.randn(n, n, device="cuda", dtype=tdt)
    ref = (a @ b).float().cpu().numpy().astype(np.float64)
    la, lb = (Tensor(x.float().cpu().numpy(), device="CUDA").cast(dt).realize() for x in (a, b))
    rows(f"matmul {n}^3 {dt.name}", 2 * n**3, la @ lb, ref, torch_time(lambda: a @ b))
  x, w = torch.randn(64, 128, 56, 56, device="cuda", dtype=torch.float16), torch.randn(128, 128, 3, 3, device="cuda", dtype=torch.float16)
  ref = torch.nn.functional.conv2d(x, w, padding=1).float().cpu().numpy().astype(np.float64)
  lx, lw = (Tensor(v.float().cpu().numpy(), device="CUDA").cast(dtypes.float16).realize() for v in (x, w))
  if ALL: rows("conv 3x3 64x128x56^2 f16", 2 * 64 * 128 * 128 * 9 * 56 * 56, lx.conv2d(lw, padding=1), ref,
       torch_time(lambda: torch.nn.functional.conv2d(x, w, padding=1)))
