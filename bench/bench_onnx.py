"""ONNX's light model-zoo nets (shipped inside the `onnx` package: ResNet-50, DenseNet-121, SqueezeNet, ...) through
lucidgrad's runner beside onnxruntime (a bench extra: `pip install onnxruntime`) in the same run, on the same inputs.
  [THREADS=1] python bench/bench_onnx.py [--reps 5] [--only resnet50,squeezenet] [--no-jit] [--model file.onnx ...]
The light nets' weights are ConstantOfShape fills, not trained values; `--model` runs other files instead (a ResNet-50
with random weights exported from torch: bench/onnx_resnet50_export.py).
Per net: our first call with empty in-process caches (graph build, schedule, codegen, compiles; the disk cache of
compiled kernels is whatever $CACHEDIR holds), then --reps rounds of onnxruntime, our eager call and our @jit replay one
after another (so a burst of other work on a shared machine slows all three alike), each one's best; the
ratio onnxruntime time / ours (above 1: we are faster), and the largest difference from onnxruntime's output relative
to its largest value."""
from __future__ import annotations
import argparse, glob, os, time
import numpy as np
from lucidgrad import Tensor, jit
from lucidgrad.helpers import THREADS
from lucidgrad.onnx import OnnxRunner

def light_models() -> list[str]:
  import onnx
  return sorted(glob.glob(os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_*.onnx")))

def make_inputs(path: str) -> dict[str, np.ndarray]:
  """Random inputs of the graph's declared shapes (the nets' inputs are images; values in [0, 1))."""
  import onnxruntime as ort
  sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
  rng = np.random.default_rng(0)
  out = {}
  for i in sess.get_inputs():
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
    out[i.name] = rng.random(shape, dtype=np.float32)
  return out

def best_interleaved(fns: list, reps: int) -> list[float]:
  """Each function's best time over `reps` rounds, the functions run one after another in every round: on a shared
  machine a burst of other work then slows all of them alike instead of one whole series."""
  best = [float("inf")] * len(fns)
  for _ in range(reps):
    for i, fn in enumerate(fns):
      st = time.perf_counter(); fn(); best[i] = min(best[i], time.perf_counter() - st)
  return best

def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--reps", type=int, default=5)
  ap.add_argument("--only", default="", help="comma-separated names (resnet50, squeezenet, ...)")
  ap.add_argument("--no-jit", action="store_true")
  ap.add_argument("--model", nargs="*", default=[], help="ONNX files to run instead of the light nets")
  args = ap.parse_args()
  try:
    import onnxruntime as ort
  except ImportError: raise SystemExit("bench_onnx: onnxruntime is the peer: pip install onnxruntime")
  # both sides use THREADS (lucidgrad's env var, default every core) threads: THREADS=1 compares one core against one,
  # which a loaded machine slows alike (two threads each, onnxruntime's spinning pool loses far more to other jobs)
  ort_opts = ort.SessionOptions(); ort_opts.intra_op_num_threads = int(THREADS)
  print(f"{'net':16s} {'first call':>11s} {'eager':>10s} {'@jit':>10s} {'onnxruntime':>12s} {'ratio':>7s} {'rel diff':>9s}")
  for path in args.model or light_models():
    name = os.path.basename(path).removeprefix("light_").removesuffix(".onnx")
    if args.only and name not in args.only.split(","): continue
    feeds = make_inputs(path)
    sess = ort.InferenceSession(path, ort_opts, providers=["CPUExecutionProvider"])
    ref = sess.run(None, feeds)[0]
    try:
      st = time.perf_counter()
      model = OnnxRunner(path)
      xs = {k: Tensor(v).realize() for k, v in feeds.items()}
      out_name = next(iter(model(xs)))
      got = model(xs)[out_name].numpy()
      first = time.perf_counter() - st
      fns = [lambda: sess.run(None, feeds), lambda: model(xs)[out_name].realize()]
      if not args.no_jit:
        names = list(xs)
        step = jit(lambda *vals: model(dict(zip(names, vals)))[out_name].realize())
        for _ in range(3): step(*xs.values())
        fns.append(lambda: step(*xs.values()))
      t_ort, t_eager, t_jit = (best_interleaved(fns, args.reps) + [float("nan")])[:3]
    except Exception as e:
      print(f"{name:16s} fails: {type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True); continue
    diff = float(np.abs(got.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))
    ours = min(t_eager, t_jit) if t_jit == t_jit else t_eager
    print(f"{name:16s} {first:10.2f}s {t_eager*1e3:8.2f}ms {t_jit*1e3:8.2f}ms {t_ort*1e3:10.2f}ms {t_ort/ours:6.2f}x {diff:9.1e}", flush=True)

if __name__ == "__main__":
  main()
