"""Half-precision convolutions (and a Linear on a 3-d input) on the tensor cores, each kernel under two opt lists: the
heuristic's, which merges the reduce's loops and each operand's own output loops first (MERGE: an implicit GEMM,
docs/design/0026's fourteenth-session addendum), and the heuristic's tensor-core opts on the loops as they are (how
these kernels ran before). Device time by events (PROFILE=1), each output against torch's; then the whole op (its
layout copies included) beside torch's. On the device machine:
  PROFILE=1 python3 bench/bench_gpu_conv.py [--only NAME]"""
import argparse, os, sys
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lucidgrad import Tensor, dtypes
from lucidgrad.device import buffer_of, Device
from lucidgrad.helpers import Context, GlobalCounters
from lucidgrad.schedule import create_schedule
from lucidgrad.engine.realize import get_runner, run_schedule
from lucidgrad.codegen.opt import Kernel, _tensor_core, _tensor_core_tiles
from bench_gpu_tc import torch_seconds

# name: (input shape, weight shape, conv2d keyword arguments); None as the weight: a Linear, x @ w.T with w (out, in)
CASES = {
  "conv 3x3 64x128x56² 128->128": ((64, 128, 56, 56), (128, 128, 3, 3), dict(padding=1)),
  "conv 3x3 64x64x56² 64->64": ((64, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
  "conv 3x3 32x256x28² 256->256": ((32, 256, 28, 28), (256, 256, 3, 3), dict(padding=1)),
  "conv 3x3 32x512x14² 512->512": ((32, 512, 14, 14), (512, 512, 3, 3), dict(padding=1)),
  "conv 3x3 s2 64x128x56² 128->256": ((64, 128, 56, 56), (256, 128, 3, 3), dict(padding=1, stride=2)),
  "conv 1x1 64x256x56² 256->64": ((64, 256, 56, 56), (64, 256, 1, 1), {}),
  "conv 3x3 8x512x7² 512->512": ((8, 512, 7, 7), (512, 512, 3, 3), dict(padding=1)),
  "linear 8x128x768 -> 3072": ((8, 128, 768), (3072, 768), None),
}

def main():
  import torch
  ap = argparse.ArgumentParser(); ap.add_argument("--only", default="")
  args = ap.parse_args()
  for name, (xs, ws, kw) in CASES.items():
    if args.only not in name: continue
    x, w = torch.randn(*xs, device="cuda", dtype=torch.float16), torch.randn(*ws, device="cuda", dtype=torch.float16) / ws[1] ** 0.5
    tf = (lambda: x @ w.T) if kw is None else (lambda: torch.nn.functional.conv2d(x, w, **kw))
    ref = tf().double().cpu().numpy()
    flops = 2 * ref.size * int(np.prod(ws[1:]))
    lx, lw = (Tensor(v.float().cpu().numpy(), device="CUDA").cast(dtypes.float16).realize() for v in (x, w))
    lf = (lambda: lx @ lw.T) if kw is None else (lambda: lx.conv2d(lw, **kw))
    items = create_schedule([lf().uop])[0]
    run_schedule(items[:-1])
    bufs = [buffer_of(b) for b in items[-1].bufs]
    heuristic = get_runner(bufs[0].device, items[-1].ast)
    k = Kernel(items[-1].ast, Device[bufs[0].device].renderer)
    mn = _tensor_core(k)
    variants = {"merged (heuristic)": heuristic.spec.opts}
    if mn is not None: variants["loops as they are"] = _tensor_core_tiles(k, list(mn)).applied
    for label, opts in variants.items():
      try: r = get_runner(bufs[0].device, items[-1].ast, list(opts))
      except Exception as e:
        print(f"{name:34s} {label:20s} does not build: {type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True); continue
      r(bufs)
      out = bufs[0].numpy().astype(np.float64).reshape(ref.shape)
      err = float(np.abs(out - ref).max() / np.abs(ref).max())
      secs = min(r(bufs) for _ in range(10))
      print(f"{name:34s} {label:20s} {secs * 1e3:8.3f} ms {flops / secs / 1e12:7.1f} TFLOP/s  rel err vs torch {err:.1e}", flush=True)
    # the whole op, layout copies included, against torch's: the sum of its kernels' device times (bench_gpu.py's measure)
    lf().realize()
    with Context(PROFILE=1):
      before = GlobalCounters.time_sum_s
      for _ in range(10): lf().realize()
      best = (GlobalCounters.time_sum_s - before) / 10
    tt = torch_seconds(torch, tf)
    print(f"{name:34s} {'whole op':20s} {best * 1e3:8.3f} ms {flops / best / 1e12:7.1f} TFLOP/s  torch {tt * 1e3:.3f} ms "
          f"({flops / tt / 1e12:.1f}): {tt / best:.2f}x", flush=True)

if __name__ == "__main__": main()
