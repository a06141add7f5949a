"""The CPU benchmark suite of issue 10: each row times lucidgrad beside NumPy, torch eager and torch.compile in one run.
  python bench/bench_suite.py                          # every row at full size (many minutes: GPT-2 alone takes several)
  python bench/bench_suite.py --quick                  # small sizes, a smoke run
  python bench/bench_suite.py --only softmax,gpt2_forward --no-compile
A peer column says why it is missing when it cannot run (not installed, or the error it raised). Each cell is the
peer's figure and, in brackets, lucidgrad's speed over the peer's (above 1: lucidgrad is faster). Times are wall clock,
best of a few calls after a warm-up call (which compiles); lucidgrad's figure includes building and scheduling the graph.
Rows (full size; --quick shrinks every one):
  matmul           1024^3 and 2048^3 float32, GFLOP/s
  conv             conv2d batch 32, 64->64 channels, 56x56, 3x3, padding 1, GFLOP/s
  resnet18_forward ResNet-18 inference (running stats), batch 16, 3xRxR (R = --resnet-res, 224 unless given), s/call
  resnet18_train   its training step (batch statistics, cross entropy, SGD momentum 0.9), s/step
  mnist_example    PyTorch's MNIST example net's training step (dropout off in both), batch 128, Adam, s/step
  gpt2_forward     GPT-2 124M forward, 1x128 tokens, random weights (the same in both), s/call
  logits_matmul    GPT-2's logits alone: 128x768 @ 768x50257, GFLOP/s
  softmax          softmax over the last axis of 4096x4096, GB/s (one read, one write)
  layernorm        layer norm over the last axis of 4096x4096 (no affine), GB/s
  gelu             gelu(x*1.5+0.3), tanh form, over 16M float32, GB/s
  embedding        256 token rows of a 50257x768 table, us/call
  chain            the 10-op elementwise chain of bench_eager_realize.py on 4x4, us of CPU time per eager call
  mainjob          examples/mnist.py's Net and jitted training step (the README's main job) at batch 128, s/step
Models (bench/models.py) are checked once per run: torch twins get lucidgrad's weights, and outputs (logits; the losses
of the first two training steps, so gradients and the optimiser count) must agree to rtol 1e-3 of the largest value,
else the row fails; kernel rows are checked the same way against NumPy or torch. Each model row also prints its first
call in a new process with an empty CACHEDIR (codegen and C compiles included; its CPU time split into this process and
the C compiler), and lucidgrad's kernels per call; the two forward rows also the same call under @jit (its replay
builds no graph), beside torch eager's time.
A row that fails prints its error and the suite goes on; the exit status is 1 if any row failed."""
from __future__ import annotations
import argparse, json, math, os, pathlib, platform, resource, subprocess, sys, tempfile, time, traceback
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from lucidgrad import Tensor, GlobalCounters, jit  # noqa: E402
from lucidgrad.nn import train  # noqa: E402
from lucidgrad.nn.optim import SGD, Adam  # noqa: E402
from lucidgrad.nn.state import get_parameters  # noqa: E402
from models import ResNet18, GPT2, GPT2_124M, MnistExampleNet, torch_twin, copy_to_torch, assert_close  # noqa: E402
import bench_eager_realize, bench_train  # noqa: E402

# ---------------------------------------------------------------- sizes, peers, timing, printing

def sizes(quick: bool, resnet_res: int | None) -> dict:
  return dict(
    matmul=(128, 256) if quick else (1024, 2048), conv=(2, 64, 16) if quick else (32, 64, 56),
    resnet=(4, resnet_res or 64) if quick else (16, resnet_res or 224), mnist_batch=16 if quick else 128,
    gpt2=dict(layers=2, heads=2, dim=64, vocab=512, ctx=64) if quick else GPT2_124M, gpt2_tokens=16 if quick else 128,
    logits=(16, 64, 512) if quick else (128, 768, 50257), rows=256 if quick else 4096, gelu=2**16 if quick else 2**24,
    embedding=(16, 512, 64) if quick else (256, 50257, 768), reps=2 if quick else 5, model_reps=2 if quick else 3,
    gpt2_reps=2 if quick else 5, mainjob_steps=3 if quick else 20)

class Peers:
  """torch (eager, and torch.compile unless --no-compile) when installed; why not otherwise."""
  def __init__(self, use_compile: bool):
    try:
      import torch
      torch.set_num_threads(os.cpu_count() or 1)
      self.torch, self.why_not = torch, ""
    except ImportError as e: self.torch, self.why_not = None, f"not installed ({e})"
    self.use_compile = use_compile and self.torch is not None
  def compile(self, fn):
    return self.torch.compile(fn)

def best(fn, reps: int, warmup: int = 1, min_seconds: float = 0.3) -> float:
  """The fastest of at least `reps` runs, and of more while they have taken less than `min_seconds` in all (up to 200):
  a 7 ms kernel's five runs on a 2-core machine often all met a neighbour's burst of work."""
  for _ in range(warmup): fn()
  times: list[float] = []
  while len(times) < reps or (sum(times) < min_seconds and len(times) < 200):
    st = time.perf_counter(); fn(); times.append(time.perf_counter() - st)
  return min(times)

def short_error(e: BaseException) -> str:
  lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
  return f"{type(e).__name__}: {lines[-1][:160] if lines else ''}"

def measure(results: dict, peer: str, fn, *args, **kw):
  """results[peer] = fn(*args) in seconds, or the reason it failed (a string)."""
  try: results[peer] = fn(*args, **kw)
  except Exception as e: results[peer] = short_error(e)

def torch_peers(results: dict, peers: Peers, make_fn, reps: int, warmup: int = 1):
  """Time make_fn(torch) eagerly and under torch.compile into results (or say why not)."""
  if peers.torch is None:
    results["torch"] = peers.why_not
    return
  measure(results, "torch", lambda: best(make_fn(peers.torch, eager=True), reps, warmup))
  if peers.use_compile: measure(results, "torch.compile", lambda: best(make_fn(peers.torch, eager=False), reps, warmup))
  else: results["torch.compile"] = "off (--no-compile)"

def fmt_time(s: float) -> str:
  return f"{s:.2f} s" if s >= 1 else f"{s*1e3:.2f} ms" if s >= 1e-3 else f"{s*1e6:.1f} us"

def report(name: str, results: dict, work: float | None = None, unit: str = ""):
  """One line: lucidgrad's figure, then each peer's with lucidgrad's speed over it; work/unit turn times into rates."""
  fmt = (lambda t: f"{work / t:.2f} {unit}") if work else fmt_time
  ours = results.pop("lucidgrad")
  cells = [f"{name:44s} lucidgrad " + (fmt(ours) if isinstance(ours, float) else f"FAILED {ours}")]
  for peer, t in results.items():
    if not isinstance(t, float): cells.append(f"{peer}: {t}")
    else: cells.append(f"{peer} {fmt(t)}" + (f" ({t / ours:.2f}x)" if isinstance(ours, float) else ""))
  print(" | ".join(cells), flush=True)
  if not isinstance(ours, float): raise RuntimeError(f"lucidgrad failed: {ours}")

# ---------------------------------------------------------------- kernel rows

def row_matmul(cfg, peers):
  for n in cfg["matmul"]:
    rng = np.random.default_rng(0)
    an, bn = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    a, b = Tensor(an).realize(), Tensor(bn).realize()
    print(assert_close(f"matmul {n}^3 vs NumPy", (a @ b).numpy(), an @ bn))
    res = {}
    measure(res, "lucidgrad", lambda: best(lambda: (a @ b).realize(), cfg["reps"]))
    measure(res, "numpy", lambda: best(lambda: an @ bn, cfg["reps"]))
    torch_peers(res, peers, lambda torch, eager: (lambda ta, tb, f: lambda: f(ta, tb))(
      torch.from_numpy(an), torch.from_numpy(bn), torch.matmul if eager else peers.compile(torch.matmul)), cfg["reps"])
    report(f"matmul {n}x{n}x{n} f32", res, 2 * n**3 / 1e9, "GFLOP/s")

def row_conv(cfg, peers):
  B, C, H = cfg["conv"]
  rng = np.random.default_rng(0)
  xn, wn = rng.standard_normal((B, C, H, H), np.float32), rng.standard_normal((C, C, 3, 3), np.float32) / 24
  x, w = Tensor(xn).realize(), Tensor(wn).realize()
  res = {}
  measure(res, "lucidgrad", lambda: best(lambda: x.conv2d(w, padding=1).realize(), cfg["reps"]))
  res["numpy"] = "no conv2d"
  if peers.torch is not None:
    torch = peers.torch
    print(assert_close("conv2d vs torch", x.conv2d(w, padding=1).numpy(), torch.nn.functional.conv2d(torch.from_numpy(xn), torch.from_numpy(wn), padding=1).numpy()))
  def make(torch, eager):
    f = lambda a, b: torch.nn.functional.conv2d(a, b, padding=1)
    f = f if eager else peers.compile(f)
    ta, tb = torch.from_numpy(xn), torch.from_numpy(wn)
    return lambda: f(ta, tb)
  torch_peers(res, peers, make, cfg["reps"])
  report(f"conv2d {B}x{C}x{H}x{H}, {C}->{C} 3x3 pad 1", res, 2 * B * C * H * H * C * 9 / 1e9, "GFLOP/s")

def row_logits_matmul(cfg, peers):
  M, K, N = cfg["logits"]
  rng = np.random.default_rng(0)
  an, bn = rng.standard_normal((M, K), np.float32), rng.standard_normal((N, K), np.float32)
  a, b = Tensor(an).realize(), Tensor(bn).realize()
  print(assert_close("logits matmul vs NumPy", (a @ b.T).numpy(), an @ bn.T))
  res = {}
  measure(res, "lucidgrad", lambda: best(lambda: (a @ b.T).realize(), cfg["reps"]))
  measure(res, "numpy", lambda: best(lambda: an @ bn.T, cfg["reps"]))
  def make(torch, eager):
    f = (lambda x, y: x @ y.T) if eager else peers.compile(lambda x, y: x @ y.T)
    ta, tb = torch.from_numpy(an), torch.from_numpy(bn)
    return lambda: f(ta, tb)
  torch_peers(res, peers, make, cfg["reps"])
  report(f"logits matmul {M}x{K} @ {K}x{N} (weight^T)", res, 2 * M * K * N / 1e9, "GFLOP/s")

def np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)

def np_layernorm(x, eps=1e-5):
  return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)

def np_gelu(x):
  y = x * 1.5 + 0.3
  return 0.5 * y * (1 + np.tanh(math.sqrt(2 / math.pi) * (y + 0.044715 * y ** 3)))

def memory_row(cfg, peers, name: str, xn: np.ndarray, ours, np_fn, torch_fn):
  """A row of one elementwise or row-wise op: bytes are one read and one write of x."""
  x = Tensor(xn).realize()
  print(assert_close(f"{name} vs NumPy (float64)", ours(x).numpy(), np_fn(xn.astype(np.float64))))
  res = {}
  measure(res, "lucidgrad", lambda: best(lambda: ours(x).realize(), cfg["reps"]))
  measure(res, "numpy", lambda: best(lambda: np_fn(xn), cfg["reps"]))
  def make(torch, eager):
    f, t = (lambda a: torch_fn(torch, a)), torch.from_numpy(xn)
    f = f if eager else peers.compile(f)
    return lambda: f(t)
  torch_peers(res, peers, make, cfg["reps"])
  report(f"{name} {'x'.join(map(str, xn.shape))} f32", res, 2 * xn.nbytes / 1e9, "GB/s")

def row_softmax(cfg, peers):
  n = cfg["rows"]
  memory_row(cfg, peers, "softmax(-1)", np.random.default_rng(0).standard_normal((n, n), np.float32), lambda x: x.softmax(-1), np_softmax,
             lambda torch, t: torch.softmax(t, -1))

def row_layernorm(cfg, peers):
  n = cfg["rows"]
  memory_row(cfg, peers, "layer_norm(-1)", np.random.default_rng(0).standard_normal((n, n), np.float32), lambda x: x.layer_norm((n,)), np_layernorm,
             lambda torch, t: torch.nn.functional.layer_norm(t, (n,)))

def row_gelu(cfg, peers):
  memory_row(cfg, peers, "gelu(x*1.5+0.3) tanh", np.random.default_rng(0).standard_normal(cfg["gelu"], np.float32),
             lambda x: (x * 1.5 + 0.3).gelu(approximate="tanh"), np_gelu,
             lambda torch, t: torch.nn.functional.gelu(t * 1.5 + 0.3, approximate="tanh"))

def row_embedding(cfg, peers):
  T, V, D = cfg["embedding"]
  rng = np.random.default_rng(0)
  wn, idxn = rng.standard_normal((V, D), np.float32), rng.integers(0, V, T).astype(np.int32)
  w, idx = Tensor(wn).realize(), Tensor(idxn).realize()
  print(assert_close("embedding vs NumPy", idx.embedding(w).numpy(), wn[idxn]))
  res = {}
  measure(res, "lucidgrad", lambda: best(lambda: idx.embedding(w).realize(), cfg["reps"]))
  measure(res, "numpy", lambda: best(lambda: wn[idxn], cfg["reps"]))
  def make(torch, eager):
    f = torch.nn.functional.embedding if eager else peers.compile(torch.nn.functional.embedding)
    ti, tw = torch.from_numpy(idxn.astype(np.int64)), torch.from_numpy(wn)
    return lambda: f(ti, tw)
  torch_peers(res, peers, make, cfg["reps"])
  report(f"embedding {T} rows of {V}x{D}", res)

def row_chain(cfg, peers):
  """CPU time of one eager call of the chain (bench_eager_realize's measure), not wall time."""
  chain, best_us = bench_eager_realize.chain, bench_eager_realize.best_us
  an = np.random.default_rng(0).random((4, 4), dtype=np.float32)
  x = Tensor(an).realize()
  print(assert_close("10-op chain vs NumPy", chain(x).numpy(), chain(an.astype(np.float64))))
  calls, rounds = (50, 3) if cfg["quick"] else (300, 7)
  res = {}
  measure(res, "lucidgrad", lambda: best_us(lambda: chain(x).realize(), calls, rounds) / 1e6)
  measure(res, "numpy", lambda: best_us(lambda: chain(an), calls, rounds) / 1e6)
  if peers.torch is None: res["torch"] = peers.why_not
  else:
    t = peers.torch.from_numpy(an.copy())
    measure(res, "torch", lambda: best_us(lambda: chain(t), calls, rounds) / 1e6)
    if peers.use_compile:
      cchain = peers.compile(chain)
      measure(res, "torch.compile", lambda: best_us(lambda: cchain(t), calls, rounds) / 1e6)
    else: res["torch.compile"] = "off (--no-compile)"
  report(f"{bench_eager_realize.OPS}-op chain on 4x4, CPU time per call", res)

# ---------------------------------------------------------------- model rows
# Each model has a lucidgrad setup returning the model (state before any step) and a call that runs one forward or
# training step to a realized result; the first call in a fresh process (--cold ROW) times the same call.

def resnet_data(cfg):
  B, R = cfg["resnet"]
  rng = np.random.default_rng(0)
  return rng.standard_normal((B, 3, R, R), np.float32), rng.integers(0, 1000, B).astype(np.int32)

def train_step(model, opt, batch_statistics: bool):
  """lucidgrad's jitted training step (cross entropy), as examples/mnist.py builds it."""
  @jit
  def step(x: Tensor, y: Tensor) -> Tensor:
    with train(batch_statistics):
      opt.zero_grad()
      loss = model(x).cross_entropy(y)
      loss.backward()
      opt.step()
    return loss.realize()
  return step

def torch_train_step(torch, tmodel, make_opt, compiled: bool, peers):
  fwd, opt = peers.compile(tmodel) if compiled else tmodel, make_opt(tmodel.parameters())
  def step(x, y):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(fwd(x), y)
    loss.backward(); opt.step()
    return loss.detach()
  return step

def setup_resnet_forward(cfg):
  Tensor.manual_seed(0)
  model, (xn, _) = ResNet18().eval(), resnet_data(cfg)  # inference: the running stats
  x = Tensor(xn).realize()
  return model, lambda: model(x).realize()

def setup_resnet_train(cfg):
  Tensor.manual_seed(0)
  model, (xn, yn) = ResNet18(), resnet_data(cfg)
  step, x, y = train_step(model, SGD(get_parameters(model), lr=0.01, momentum=0.9), True), Tensor(xn).realize(), Tensor(yn).realize()
  return model, lambda: step(x, y)

def mnist_data(cfg):
  rng = np.random.default_rng(0)
  B = cfg["mnist_batch"]
  return rng.random((B, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, B).astype(np.int32)

def setup_mnist_example(cfg):
  Tensor.manual_seed(0)
  model, (xn, yn) = MnistExampleNet(), mnist_data(cfg)
  step, x, y = train_step(model, Adam(get_parameters(model), lr=1e-3), False), Tensor(xn).realize(), Tensor(yn).realize()
  return model, lambda: step(x, y)

def gpt2_tokens(cfg):
  return np.random.default_rng(0).integers(0, cfg["gpt2"]["vocab"], (1, cfg["gpt2_tokens"])).astype(np.int32)

def setup_gpt2(cfg):
  Tensor.manual_seed(0)
  model, tok = GPT2(**cfg["gpt2"]), Tensor(gpt2_tokens(cfg)).realize()
  return model, lambda: model(tok).realize()

def setup_mainjob(cfg):
  ex = bench_train.load_example("mnist")
  Tensor.manual_seed(0)
  model, (xn, yn) = ex.Net(), mnist_data(cfg)
  step, x, y = ex.make_train_step(model, Adam(get_parameters(model), lr=1e-3)), Tensor(xn).realize(), Tensor(yn).realize()
  return model, lambda: step(x, y)

SETUPS = {"resnet18_forward": setup_resnet_forward, "resnet18_train": setup_resnet_train, "mnist_example": setup_mnist_example,
          "gpt2_forward": setup_gpt2, "mainjob": setup_mainjob}

def cpu_seconds(who) -> float:
  r = resource.getrusage(who)
  return r.ru_utime + r.ru_stime

def cold_child(row: str, cfg) -> dict:
  """The first call's wall time, its C compiles, and the CPU time it took in this process (codegen, scheduling, the
  kernels' threads) and in the C compiler's processes."""
  _, call = SETUPS[row](cfg)
  compiles, own, cc = GlobalCounters.compiles, cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
  st = time.perf_counter(); call()
  return dict(s=time.perf_counter() - st, compiles=GlobalCounters.compiles - compiles, own_cpu=cpu_seconds(resource.RUSAGE_SELF) - own,
              cc_cpu=cpu_seconds(resource.RUSAGE_CHILDREN) - cc)

def cold_line(row: str, args) -> str:
  """The first call of the row's model in a new process with an empty kernel cache."""
  flags = (["--quick"] if args.quick else []) + ([f"--resnet-res={args.resnet_res}"] if args.resnet_res else [])
  with tempfile.TemporaryDirectory() as cache:
    r = subprocess.run([sys.executable, __file__, "--cold", row, *flags], env={**os.environ, "CACHEDIR": cache, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, cwd=ROOT)
  if r.returncode != 0: return f"  first call, empty cache: FAILED {(r.stderr.strip().splitlines() or ['?'])[-1]}"
  c = json.loads(r.stdout.strip().splitlines()[-1])
  return (f"  first call, empty cache, new process: lucidgrad {c['s']:.2f} s ({c['compiles']} C compiles; CPU: {c['own_cpu']:.2f} s "
          f"own, {c['cc_cpu']:.2f} s C compiler)")

def model_row(name: str, row: str, cfg, args, peers, check, torch_call, reps: int, jitted: bool = False):
  """Warm-up (compiles) and the agreement check, the timed calls, then the cold first call in a child process.
  check(model_before, call) prints the agreement line and needs the model before the first call changes it;
  torch_call(torch, eager) gives the peer's call. `jitted`: the same call under @jit too (a forward: the replay skips
  building the graph and walking it for the schedule cache, what a served model's every call would), beside torch
  eager's time from the line above."""
  model, call = SETUPS[row](cfg)
  check(model, call)
  call()  # warm-up again: what a second read keeps (a weight's panels, docs/design/0039) is made before the timed calls
  res = {}
  GlobalCounters.reset()
  calls = 0
  def counted():
    nonlocal calls
    calls += 1
    return call()
  measure(res, "lucidgrad", lambda: best(counted, reps, warmup=0))  # `best` may run more than `reps` calls
  kernels, kernel_s = GlobalCounters.kernel_count / max(calls, 1), GlobalCounters.time_sum_s / max(calls, 1)
  res["numpy"] = "no model"
  torch_peers(res, peers, torch_call, reps)
  torch_s = res.get("torch")
  report(name, res)
  print(f"  lucidgrad per call: {kernels:.0f} kernels, {fmt_time(kernel_s)} in kernels")
  if jitted:
    jcall = jit(call)
    for _ in range(3): jcall()  # the warm-up call, the capture, a first replay
    t = best(jcall, reps, warmup=0)
    print(f"  lucidgrad @jit: {fmt_time(t)}" + (f" (torch eager {fmt_time(torch_s)}: {torch_s / t:.2f}x)" if isinstance(torch_s, float) else ""), flush=True)
  print(cold_line(row, args), flush=True)

def twin(peers, name, model, **kw):
  return copy_to_torch(model, torch_twin(name, **kw)) if peers.torch is not None else None

def forward_check(peers, name, inputs, **kw):
  def check(model, call):
    tm = twin(peers, name, model, **kw)
    ours = call().numpy()
    if tm is None: print(f"  no agreement check: torch {peers.why_not}"); return
    with peers.torch.inference_mode(): print(assert_close(f"{name} output vs torch", ours, tm.eval()(peers.torch.from_numpy(inputs)).numpy()))
  return check

def train_check(peers, name, xn, yn, make_opt, **kw):
  """The losses of the first two steps (the second sees the first's update) against torch's."""
  def check(model, call):
    tm = twin(peers, name, model, **kw)
    ours = np.array([call().item(), call().item()])
    if tm is None: print(f"  no agreement check: torch {peers.why_not}"); return
    torch = peers.torch
    step = torch_train_step(torch, tm.train(), make_opt, False, peers)
    x, y = torch.from_numpy(xn), torch.from_numpy(yn).long()
    print(assert_close(f"{name} losses of steps 1 and 2 vs torch", ours, np.array([step(x, y).item(), step(x, y).item()])))
  return check

def forward_peer(name, inputs, long=False, **kw):
  def make(torch, eager, peers):
    tm = torch_twin(name, **kw).eval()
    f, x = tm if eager else peers.compile(tm), torch.from_numpy(inputs.astype(np.int64) if long else inputs)
    def call():
      with torch.inference_mode(): return f(x)
    return call
  return make

def train_peer(name, xn, yn, make_opt, **kw):
  def make(torch, eager, peers):
    step = torch_train_step(torch, torch_twin(name, **kw).train(), make_opt, not eager, peers)
    x, y = torch.from_numpy(xn), torch.from_numpy(yn).long()
    return lambda: step(x, y)
  return make

def row_resnet18_forward(cfg, args, peers):
  xn, _ = resnet_data(cfg)
  peer = forward_peer("resnet18", xn)
  model_row(f"ResNet-18 forward, batch {xn.shape[0]}, 3x{xn.shape[2]}x{xn.shape[3]}", "resnet18_forward", cfg, args, peers,
            forward_check(peers, "resnet18", xn), lambda torch, eager: peer(torch, eager, peers), cfg["model_reps"], jitted=True)

def row_resnet18_train(cfg, args, peers):
  xn, yn = resnet_data(cfg)
  sgd = lambda params: peers.torch.optim.SGD(params, lr=0.01, momentum=0.9)
  peer = train_peer("resnet18", xn, yn, sgd)
  model_row(f"ResNet-18 train step (SGD), batch {xn.shape[0]}, 3x{xn.shape[2]}x{xn.shape[3]}", "resnet18_train", cfg, args, peers,
            train_check(peers, "resnet18", xn, yn, sgd), lambda torch, eager: peer(torch, eager, peers), cfg["model_reps"])

def row_mnist_example(cfg, args, peers):
  xn, yn = mnist_data(cfg)
  adam = lambda params: peers.torch.optim.Adam(params, lr=1e-3)
  peer = train_peer("mnist_example", xn, yn, adam)
  model_row(f"PyTorch MNIST example net train step (Adam), batch {xn.shape[0]}", "mnist_example", cfg, args, peers,
            train_check(peers, "mnist_example", xn, yn, adam), lambda torch, eager: peer(torch, eager, peers), cfg["model_reps"])

def row_gpt2_forward(cfg, args, peers):
  tok, g = gpt2_tokens(cfg), cfg["gpt2"]
  peer = forward_peer("gpt2", tok, long=True, **g)
  model_row(f"GPT-2 forward ({g['layers']} layers, width {g['dim']}), 1x{tok.shape[1]} tokens", "gpt2_forward", cfg, args, peers,
            forward_check(peers, "gpt2", tok.astype(np.int64), **g), lambda torch, eager: peer(torch, eager, peers), cfg["gpt2_reps"], jitted=True)

def row_mainjob(cfg, args, peers):
  """examples/mnist.py's Net and jitted step, timed as bench_train.py does, beside bench_train's torch twin of the Net."""
  steps = cfg["mainjob_steps"]
  rng = np.random.default_rng(0)
  B = cfg["mnist_batch"]
  xs, ys = [rng.random((B, 1, 28, 28), dtype=np.float32) for _ in range(steps + 3)], [rng.integers(0, 10, B).astype(np.int32) for _ in range(steps + 3)]
  res = {}
  measure(res, "lucidgrad", lambda: bench_train.lucid_mnist(xs, ys)[0])
  res["numpy"] = "no model"
  if peers.torch is None: res["torch"] = peers.why_not
  else: measure(res, "torch", bench_train.torch_mnist, peers.torch, xs, ys)
  res["torch.compile"] = "not run (the row is examples/mnist.py's own training step)"
  report(f"README main job (examples/mnist.py Net), batch {B}, per step", res)
  print(cold_line("mainjob", args), flush=True)

KERNEL_ROWS = {"matmul": row_matmul, "conv": row_conv, "logits_matmul": row_logits_matmul, "softmax": row_softmax, "layernorm": row_layernorm,
               "gelu": row_gelu, "embedding": row_embedding, "chain": row_chain}
MODEL_ROWS = {"resnet18_forward": row_resnet18_forward, "resnet18_train": row_resnet18_train, "mnist_example": row_mnist_example,
              "gpt2_forward": row_gpt2_forward, "mainjob": row_mainjob}
ORDER = ["matmul", "conv", "resnet18_forward", "resnet18_train", "mnist_example", "gpt2_forward", "logits_matmul", "softmax", "layernorm",
         "gelu", "embedding", "chain", "mainjob"]

if __name__ == "__main__":
  ap = argparse.ArgumentParser(description="issue 10's benchmark suite (see the module docstring)")
  ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
  ap.add_argument("--only", default="", help=f"comma-separated rows of: {','.join(ORDER)}")
  ap.add_argument("--no-compile", action="store_true", help="leave torch.compile out (its compiles take minutes on 2 cores)")
  ap.add_argument("--resnet-res", type=int, default=0, help="ResNet-18 input resolution (224 full, 64 quick)")
  ap.add_argument("--cold", default="", help=argparse.SUPPRESS)  # the child of cold_line: one model's first call
  args = ap.parse_args()
  cfg = {**sizes(args.quick, args.resnet_res or None), "quick": args.quick}
  if args.cold:
    print(json.dumps(cold_child(args.cold, cfg)))
    sys.exit()
  rows = [r.strip() for r in args.only.split(",") if r.strip()] or ORDER
  if unknown := [r for r in rows if r not in ORDER]: ap.error(f"unknown rows {unknown}; rows are {ORDER}")
  peers = Peers(not args.no_compile)
  try:
    import tinygrad  # noqa: F401
    tiny = "tinygrad installed: no column yet"
  except ImportError: tiny = "tinygrad not installed"
  print(f"# {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; numpy {np.__version__}; "
        + (f"torch {peers.torch.__version__}" if peers.torch else f"torch {peers.why_not}") + f"; {tiny}; {'quick' if args.quick else 'full'} sizes")
  print("# each peer cell: its figure (lucidgrad's speed / its speed)", flush=True)
  failed = []
  for r in rows:
    st = time.perf_counter()
    try:
      if r in KERNEL_ROWS: KERNEL_ROWS[r](cfg, peers)
      else: MODEL_ROWS[r](cfg, args, peers)
    except Exception as e:
      failed.append(r)
      print(f"{r}: FAILED {short_error(e)}\n" + "".join(traceback.format_exception(e)[-3:]), flush=True)
    print(f"  ({r}: {time.perf_counter() - st:.0f} s for the row)", flush=True)
  print(f"# {len(rows) - len(failed)} of {len(rows)} rows ran" + (f"; failed: {', '.join(failed)}" if failed else ""))
  sys.exit(1 if failed else 0)
