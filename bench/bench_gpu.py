"""lucidgrad on CUDA beside torch on the same GPU, in one process (bench/gpu.sh runs it on the device machine):
  python bench/bench_gpu.py [--smoke] [--quick] [--only NAME]
--smoke: open the device, copy both ways, run an elementwise op, a reduce, a matmul and a gradient, each checked
against NumPy in float64; exits nonzero on a mismatch. Otherwise each row is checked against a float64 reference, then
timed on fresh random inputs (never zeros), the mean of 10 calls: lucidgrad's kernels by events around each launch,
torch's calls by CUDA events around 10 queued back to back. Then host wall-clock rows: a jitted chain of small kernels
replayed as a CUDA graph and launched one by one, and GPT-2's forward beside torch eager. Rows print as a table last."""
import argparse, sys
import numpy as np

def rel_err(out, ref) -> float:
  out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
  return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-300)) if np.isfinite(out).all() else float("inf")

def smoke() -> int:
  from lucidgrad import Tensor, Device, dtypes
  dev = Device["CUDA"]
  print(f"device {dev.name}: compiler {dev.compiler.key}")
  rng, bad = np.random.default_rng(0), 0
  def check(name, out, ref, tol=1e-6):
    nonlocal bad
    e = rel_err(out, ref)
    bad += not e <= tol
    print(f"  {'ok ' if e <= tol else 'BAD'} {name:36s} rel err {e:.2e} (tol {tol:.0e})")
  a, b = rng.standard_normal((257, 131)).astype(np.float32), rng.standard_normal((131, 77)).astype(np.float32)
  ta, tb = Tensor(a, device="CUDA"), Tensor(b, device="CUDA")
  check("copy in and out", ta.numpy(), a, 0)
  check("elementwise (a*2+1).exp()", (ta * 2 + 1).exp().numpy(), np.exp(a.astype(np.float64) * 2 + 1))
  check("row sum", ta.sum(axis=1).numpy(), a.astype(np.float64).sum(axis=1))
  check("column max", ta.max(axis=0).numpy(), a.max(axis=0), 0)
  check("matmul 257x131 @ 131x77", (ta @ tb).numpy(), a.astype(np.float64) @ b)
  check("half matmul", (ta.cast(dtypes.float16) @ tb.cast(dtypes.float16)).float().numpy(),
        a.astype(np.float16).astype(np.float64) @ b.astype(np.float16).astype(np.float64), 2e-3)
  # the tensor cores (OptOps.TC): sizes their 16 x 8 x 16 fragments divide, an epilogue, a conv
  c, d = rng.standard_normal((256, 192)).astype(np.float32), rng.standard_normal((192, 96)).astype(np.float32)
  for dt, npdt, tol in ((dtypes.float16, np.float16, 1e-3), (dtypes.bfloat16, None, 8e-3)):
    def rnd(x): return x.astype(npdt).astype(np.float64) if npdt else Tensor(x).cast(dt).float().numpy().astype(np.float64)
    tc_, td = Tensor(c, device="CUDA").cast(dt), Tensor(d, device="CUDA").cast(dt)
    check(f"tensor core {dt.name} matmul + relu", (tc_ @ td).relu().float().numpy(), np.maximum(rnd(c) @ rnd(d), 0), tol)
  x, k = rng.standard_normal((4, 32, 16, 16)).astype(np.float32), rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
  import torch
  ref = torch.nn.functional.conv2d(torch.tensor(x.astype(np.float16).astype(np.float64)), torch.tensor(k.astype(np.float16).astype(np.float64)), padding=1).numpy()
  check("tensor core float16 conv 3x3", Tensor(x, device="CUDA").half().conv2d(Tensor(k, device="CUDA").half(), padding=1).float().numpy(), ref, 1e-3)
  w = Tensor(b, device="CUDA", requires_grad=True)
  (ta @ w).square().sum().backward()
  check("gradient of sum((a@w)^2) by w", w.grad.numpy(), 2 * a.astype(np.float64).T @ (a.astype(np.float64) @ b))
  check("to CPU and back", ta.to("CPU").to("CUDA").numpy(), a, 0)
  print(f"smoke: {bad} mismatches")
  return bad

def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--smoke", action="store_true")
  ap.add_argument("--quick", action="store_true", help="small sizes")
  ap.add_argument("--only", default="", help="run only the device-time rows whose name contains this (e.g. conv)")
  args = ap.parse_args()
  if args.smoke: sys.exit(1 if smoke() else 0)
  import torch
  from lucidgrad import Tensor, Device, dtypes
  q = args.quick
  rows = []
  dev = Device["CUDA"]
  def lucid_seconds(fn, inputs, reps=10) -> float:
    """Device seconds per call: the sum of its kernels' times, each measured by events around its launch (PROFILE
    times every launch). An eager call's Python (~0.3 ms to build, look up and launch a small graph) is left out: it
    can outlast a short kernel and leave the GPU idle between calls -- the JIT rows below measure that part."""
    from lucidgrad.helpers import Context, GlobalCounters
    fn(*inputs[0]).realize(); dev.synchronize()  # builds and compiles
    with Context(PROFILE=1):
      before = GlobalCounters.time_sum_s
      for i in range(reps): fn(*inputs[i % len(inputs)]).realize()
      return (GlobalCounters.time_sum_s - before) / reps
  def torch_seconds(fn, inputs, reps=10) -> float:
    fn(*inputs[0]); torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for i in range(reps): fn(*inputs[i % len(inputs)])
    e.record(); e.synchronize()
    return s.elapsed_time(e) / 1e3 / reps
  def row(name, shape, lucid_fn, torch_fn, ref_fn, nbytes=None, flops=None, dtype="float32", tol=1e-5, compile_torch=False):
    """ref_fn takes float64 torch tensors on the GPU (a float64 reference of an 8192^3 matmul on the CPU takes minutes)."""
    if args.only not in name: return
    rng = np.random.default_rng(len(rows))
    tdt, ldt = getattr(torch, dtype), getattr(dtypes, dtype)
    # host values that the dtype holds exactly (rounded through torch), so the reference sees what the kernels see
    host = [torch.from_numpy(rng.standard_normal(s, dtype=np.float32)).to(tdt).float().numpy() for s in shape]
    # the row's own inputs; realized first, so no timed call can include their copy in
    t_in = [[Tensor(h, device="CUDA").cast(ldt).realize() for h in host]]
    out = lucid_fn(*t_in[0]).float().numpy()
    err = rel_err(out, ref_fn(*[torch.from_numpy(h).double().cuda() for h in host]).cpu().numpy())
    tt = [[torch.from_numpy(h).cuda().to(tdt) for h in host]]
    for k in range(2):  # fresh inputs per timed run (two more sets, made on the device)
      t_in.append([Tensor.randn(*s, device="CUDA").cast(ldt).realize() for s in shape])
      tt.append([torch.randn(*s, device="cuda").to(tdt) for s in shape])
    ls = lucid_seconds(lucid_fn, t_in)
    ts = torch_seconds(torch_fn, tt)
    tc = torch_seconds(torch.compile(torch_fn), tt) if compile_torch else None
    rate = (lambda s: f"{nbytes / s / 1e12:.2f} TB/s") if nbytes else (lambda s: f"{flops / s / 1e12:.1f} TFLOP/s")
    rows.append((name, f"{ls*1e3:.3f} ms ({rate(ls)})", f"{ts*1e3:.3f} ms ({rate(ts)})", f"{tc*1e3:.3f} ms ({rate(tc)})" if tc else "-",
                 f"{ts / ls:.2f}x" + (f" / {tc / ls:.2f}x" if tc else ""), f"{err:.1e}" + ("" if err <= tol else " BAD")))
    print(rows[-1], flush=True)
  n = 1 << (20 if q else 28)
  gelu_np = lambda x: 0.5 * (x*1.5+0.3) * (1 + torch.tanh(0.7978845608028654 * ((x*1.5+0.3) + 0.044715 * (x*1.5+0.3)**3)))
  row(f"gelu(x*1.5+0.3) {n} f32", [(n,)], lambda x: (x * 1.5 + 0.3).gelu(approximate="tanh"),
      lambda x: torch.nn.functional.gelu(x * 1.5 + 0.3, approximate="tanh"), gelu_np, nbytes=8 * n, compile_torch=True)
  row(f"copy x*1.5 {n} f32", [(n,)], lambda x: x * 1.5, lambda x: x * 1.5, lambda x: x * 1.5, nbytes=8 * n)
  s = 1024 if q else 16384
  row(f"row sum {s}x{s} f32", [(s, s)], lambda x: x.sum(axis=1), lambda x: x.sum(dim=1), lambda x: x.sum(dim=1), nbytes=4 * s * s + 4 * s)
  row(f"softmax {s}x{s} f32", [(s, s)], lambda x: x.softmax(axis=1), lambda x: x.softmax(dim=1), lambda x: x.softmax(dim=1), nbytes=8 * s * s, compile_torch=True)
  m = 512 if q else 4096
  row(f"matmul {m}^3 f32", [(m, m), (m, m)], lambda a, b: a @ b, lambda a, b: a @ b, lambda a, b: a @ b, flops=2 * m**3, tol=1e-5)
  h = 1024 if q else 8192
  for dt, tol in (("float16", 1e-3), ("bfloat16", 8e-3)):  # the tensor cores; METHOD.md's bounds for 16-bit outputs
    row(f"matmul {h}^3 {dt}", [(h, h), (h, h)], lambda a, b: a @ b, lambda a, b: a @ b, lambda a, b: a @ b, flops=2 * h**3, dtype=dt, tol=tol)
  cb = 4 if q else 64
  row(f"conv 3x3 {cb}x128x56x56 float16", [(cb, 128, 56, 56), (128, 128, 3, 3)], lambda x, w: x.conv2d(w, padding=1),
      lambda x, w: torch.nn.functional.conv2d(x, w, padding=1), lambda x, w: torch.nn.functional.conv2d(x, w, padding=1),
      flops=2 * cb * 128 * 128 * 9 * 56 * 56, dtype="float16", tol=1e-3)
  if not args.only: wall_rows(rows, q, torch)
  print("\n| workload | lucidgrad (device time: its kernels) | torch eager | torch.compile | torch time / ours | rel err vs float64 |")
  print("|---|---|---|---|---|---|")
  for r in rows: print("| " + " | ".join(r) + " |")

def wall_seconds(fn, sync, reps: int) -> float:
  """Host wall time per call, calls back to back, waited for at the end: what a user's loop sees, Python included."""
  import time
  fn(); fn(); sync()
  st = time.perf_counter()
  for _ in range(reps): fn()
  sync()
  return (time.perf_counter() - st) / reps

def wall_rows(rows, quick: bool, torch):
  """Rows timed on the host clock, where Python's share is the point: a jitted step's replay as one CUDA graph
  against its kernels launched one by one (the overhead per kernel), and GPT-2's forward beside torch eager's."""
  import os, sys
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from lucidgrad import Tensor, Device, jit
  from lucidgrad.engine import jit as jit_mod
  dev = Device["CUDA"]
  n_kernels = 64
  def chain(x):
    for _ in range(n_kernels - 1): x = (x * 1.0001 + 0.5).realize()
    return x * 2
  x = Tensor.randn(1024, device="CUDA").realize()
  times = {}
  for graph in (1, 0):
    jit_mod.JIT_GRAPH.value = graph
    f = jit(chain)
    times[graph] = wall_seconds(lambda: f(x), dev.synchronize, 50)
    assert (f.graph is not False) == bool(graph) and len(f.items) == n_kernels, (f.graph, len(f.items))
  jit_mod.JIT_GRAPH.value = 1
  rows.append((f"jit replay, {n_kernels} small kernels: wall per kernel", f"{times[1] / n_kernels * 1e6:.1f} us (CUDA graph)",
               f"{times[0] / n_kernels * 1e6:.1f} us (launched one by one)", "-", f"{times[0] / times[1]:.2f}x", "-"))
  print(rows[-1], flush=True)
  from models import GPT2, GPT2_124M, torch_twin, copy_to_torch
  cfg = dict(layers=2, heads=2, dim=64, vocab=512, ctx=64) if quick else GPT2_124M
  os.environ["DEV"] = "CUDA"  # the model's weights are made on the default device
  Tensor.manual_seed(0)
  model = GPT2(**cfg)
  tok_np = np.random.default_rng(0).integers(0, cfg["vocab"], (1, 16 if quick else 128)).astype(np.int32)
  tok = Tensor(tok_np, device="CUDA").realize()
  tmodel = copy_to_torch(model, torch_twin("gpt2", **cfg)).cuda().eval()
  ttok = torch.from_numpy(tok_np.astype(np.int64)).cuda()
  torch.set_default_device("cuda")  # the twin makes its positions with torch.arange
  with torch.no_grad(): ref = tmodel(ttok).float().cpu().numpy()
  fwd = jit(lambda t: model(t))
  fwd(tok).realize(); fwd(tok).realize()  # warm-up, then the capture
  err = rel_err(fwd(tok).numpy(), ref)
  eager = wall_seconds(lambda: model(tok).realize(), dev.synchronize, 10)
  jitted = wall_seconds(lambda: fwd(tok), dev.synchronize, 20)
  with torch.no_grad(): ts = wall_seconds(lambda: tmodel(ttok), torch.cuda.synchronize, 20)
  rows.append((f"GPT-2 {'tiny' if quick else '124M'} forward 1x{tok_np.shape[1]} (wall)", f"{jitted*1e3:.2f} ms jit / {eager*1e3:.1f} ms eager",
               f"{ts*1e3:.2f} ms", "-", f"{ts / jitted:.2f}x (jit)", f"{err:.1e}" + ("" if err <= 1e-4 else " BAD")))
  print(rows[-1], flush=True)
  os.environ.pop("DEV")
  torch.set_default_device("cpu")

if __name__ == "__main__": main()
