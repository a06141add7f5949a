"""Codegen speed: the Python time to turn one kernel's graph into its program (lowering, opts, upcast expansion,
simplification, vectors, control flow, linearizing, rendering), which BEAM search pays for every candidate it builds.
  python bench/bench_codegen.py             # every row
  python bench/bench_codegen.py --passes    # and, per row, where the time goes by pass
  python bench/bench_codegen.py --reps 3    # fewer repeats (default 7)
Each row is the best of `reps` calls of get_program on the same kernel AST (the first call is shown too), in CPU time of
this process (time.process_time), so other jobs on a shared machine slow it less than they slow wall time. From the
second call on a kernel's lowering and first simplify are reused (codegen/lower.py keeps the last few), as they are for
every candidate BEAM builds of one kernel: the best is what a search pays per candidate, the first a cold build. The MNIST row
is the sum over every kernel one jitted training step of examples/mnist.py's model builds (its slowest kernels listed
with --passes). A pass is a named graph_rewrite or a function marked @timed; its time excludes passes nested in it."""
from __future__ import annotations
import argparse, gc, importlib.util, os, pathlib, platform, sys, time
import numpy as np
from lucidgrad import Tensor
from lucidgrad.device import Device
from lucidgrad.codegen import get_program
from lucidgrad.schedule import create_schedule
from lucidgrad.uop.ops import UOp
from lucidgrad.uop.pattern import RewriteStats
from lucidgrad.helpers import slowest_compile_line
HAS_PASSES = hasattr(RewriteStats, "passes")  # an older tree, measured for comparison, gives the rows only

ROOT = pathlib.Path(__file__).parent.parent
RENDERER = Device["CPU"].renderer

def kernels_of(*tensors: Tensor) -> list[UOp]:
  """The ASTs of the kernels that would compute `tensors` (their inputs realized first), in schedule order."""
  items, _, _ = create_schedule([t.uop for t in tensors])
  return [it.ast for it in items if it.kind == "kernel"]

def codegen_time(ast: UOp, reps: int) -> tuple[float, float, object]:
  """(best, first) seconds of CPU time for get_program(ast), and the program."""
  times = []
  for _ in range(reps):
    gc.collect()
    st = time.process_time(); spec = get_program(ast, RENDERER); times.append(time.process_time() - st)
  return min(times), times[0], spec

def pass_times(asts: list[UOp]) -> tuple[dict[str, list], float]:
  """Per-pass [calls, seconds, nodes visited] over one get_program of each AST, and the total seconds."""
  RewriteStats.reset()
  st = time.process_time()
  for ast in asts: get_program(ast, RENDERER)
  return dict(RewriteStats.passes), time.process_time() - st

def print_passes(asts: list[UOp], indent: str = "    "):
  passes, total = pass_times(asts)
  named = sum(p[1] for p in passes.values())
  for name, (calls, secs, visited) in sorted(passes.items(), key=lambda kv: -kv[1][1]):
    if secs * 1e3 >= 0.05:
      print(f"{indent}{name:36s} {secs*1e3:8.2f} ms {secs/total*100:5.1f}%  {calls:4d} calls" + (f" {visited:7d} nodes visited" if visited else ""))
  print(f"{indent}{'(not in a named pass)':36s} {(total-named)*1e3:8.2f} ms {(total-named)/total*100:5.1f}%  (choosing opts, rendering, glue)")

def row(label: str, asts: list[UOp], reps: int, passes: bool):
  for i, ast in enumerate(asts):
    best, first, spec = codegen_time(ast, reps)
    name = f"{label}" + (f" [{i}]" if len(asts) > 1 else "")
    print(f"{name:34s} {spec.name:26s} {best*1e3:8.2f} ms  (first {first*1e3:7.2f} ms, {len(spec.uops):4d} uops, opts {list(spec.opts)})", flush=True)
    if passes and HAS_PASSES: print_passes([ast])

# ---- the kernels ----
def rand(*shape, requires_grad=False) -> Tensor:
  return Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32), requires_grad=requires_grad).realize()

def matmul_kernels() -> list[UOp]:
  a, b = rand(512, 512), rand(512, 512)
  return kernels_of(a @ b)

def conv_kernels() -> tuple[list[UOp], list[UOp]]:
  """A 64->64 3x3 conv, batch 32 at 56x56, padding 1: the forward kernel(s), and those of its input and weight gradients."""
  x, w = rand(32, 64, 56, 56, requires_grad=True), rand(64, 64, 3, 3, requires_grad=True)
  out = x.conv2d(w, padding=1)
  fwd = kernels_of(out)
  out.backward(rand(*out.shape))
  return fwd, kernels_of(x.grad, w.grad)

def softmax_kernels() -> list[UOp]: return kernels_of(rand(1024, 1024).softmax(-1))

def elementwise_kernels() -> list[UOp]:
  """Ten elementwise ops in one kernel."""
  x, y = rand(1 << 20), rand(1 << 20)
  z = ((((x * 1.5 + y).exp2() - 0.5) * y).sqrt() + x).maximum(y) * 0.25 - 1.0
  return kernels_of(z)

def mnist_step_kernels() -> list[UOp]:
  """Every kernel one jitted training step of examples/mnist.py's Net (batch 128, Adam) schedules, captured from the
  scheduler as the step runs (the first call of a jitted function runs eagerly)."""
  spec = importlib.util.spec_from_file_location("example_mnist", ROOT / "examples" / "mnist.py")
  ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
  from lucidgrad.nn.optim import Adam
  from lucidgrad.nn.state import get_parameters
  Tensor.manual_seed(0)
  model = ex.Net()
  step = ex.make_train_step(model, Adam(get_parameters(model), lr=1e-3))
  rng = np.random.default_rng(0)
  x, y = Tensor(rng.standard_normal((128, 1, 28, 28)).astype(np.float32)), Tensor(rng.integers(0, 10, 128).astype(np.int32))
  seen: dict[UOp, None] = {}
  import lucidgrad.tensor as realize_site  # realize_nodes schedules a miss of the schedule cache through this name
  real = realize_site._create_schedule
  def capture(targets):
    out = real(targets)
    seen.update((it.ast, None) for it in out[0] if it.kind == "kernel")
    return out
  realize_site._create_schedule = capture
  try: step(x, y).item()
  finally: realize_site._create_schedule = real
  return list(seen)

if __name__ == "__main__":
  ap = argparse.ArgumentParser()
  ap.add_argument("--reps", type=int, default=7)
  ap.add_argument("--passes", action="store_true", help="print where each row's time goes, by pass")
  args = ap.parse_args()
  print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {sys.version.split()[0]}; "
        f"lucidgrad from {pathlib.Path(sys.modules['lucidgrad'].__file__).parent.parent}")
  row("matmul 512x512x512", matmul_kernels(), args.reps, args.passes)
  fwd, bwd = conv_kernels()
  row("conv 64->64 3x3 b32 56x56 fwd", fwd, args.reps, args.passes)
  row("conv 64->64 3x3 b32 56x56 bwd", bwd, args.reps, args.passes)
  row("softmax 1024x1024", softmax_kernels(), args.reps, args.passes)
  row("10-op elementwise 1M", elementwise_kernels(), args.reps, args.passes)
  asts = mnist_step_kernels()
  results = [codegen_time(ast, args.reps) for ast in asts]
  total = sum(best for best, _, _ in results)
  print(f"{'MNIST train step, all kernels':34s} {len(asts):3d} kernels {'':17s} {total*1e3:8.2f} ms  "
        f"(first {sum(f for _, f, _ in results)*1e3:7.2f} ms; slowest {max(b for b, _, _ in results)*1e3:.2f} ms)", flush=True)
  if args.passes and HAS_PASSES:
    print_passes(asts)
    print("    slowest kernels:")
    for best, _, spec in sorted(results, key=lambda r: -r[0])[:5]: print(f"      {spec.name:30s} {best*1e3:8.2f} ms  opts {list(spec.opts)}")
  print(slowest_compile_line())
