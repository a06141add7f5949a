"""BEAM search over the opt space. The first step expands the heuristic's path: the kernel with no opts, each prefix of
the heuristic's opts and its choice; each later step tries every valid next opt of the `width` fastest kernels so far.
A step's candidates are rendered in worker processes; those whose op count could still beat the best time (at the
best rate any kernel of the search ran its ops) are compiled there; then all are timed one by one on the device with
the workers idle (gcc shares no core with a timing), fewest ops first, on fresh buffers with the caches flushed. A run
far slower than the best ends a candidate's timing. The search stops when a step finds nothing faster, or at the time
limit (checked while waiting on the workers and before each candidate is timed); then the fastest few and the
default are timed again in turns, and the fastest of that round is kept. Every
timed candidate's output is checked against the heuristic kernel's output, so a search never changes results. What it
finds is kept on disk, keyed by everything the result depends on, so a later process searches nothing
(docs/design/0012-beam-search-cost.md)."""
from __future__ import annotations
import functools, json, os, pathlib, sys, time
from dataclasses import dataclass
from concurrent.futures import ProcessPoolExecutor, TimeoutError as FutureTimeout, as_completed
import multiprocessing
import numpy as np
from lucidgrad.helpers import DEBUG, IGNORE_BEAM_CACHE, BEAM_TIME_LIMIT, cache_dir, progress
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.dtype import dtypes, f32_to_bf16_array
from lucidgrad.codegen.opt.kernel import Kernel, Opt, OptOps

BEAM_RUNS = 3                                             # timed runs per candidate; the best counts
SLOW_RUN = 2.0        # a run this many times the best kernel's time ends a candidate's timing: it is recorded that slow
PRUNE_MARGIN = 2.0    # a candidate is not timed when its ops at the best rate seen take this many times the best time
FLUSH_BYTES = 32 << 20                                    # written between runs: twice this machine's largest cache

class SearchStats:
  """What searches ran in this process: tests read these to prove a later process searched nothing."""
  searches = 0
  candidates = 0

def _cache_path(key: str) -> pathlib.Path: return cache_dir() / "beam" / f"{key}.json"

def load_cached(key: str) -> list[Opt] | None:
  """The opts a search found for this key, or None; a file that does not parse is a miss."""
  try: data = json.loads(_cache_path(key).read_text())
  except (OSError, ValueError): return None
  try: return [Opt(OptOps[op], axis, amount) for op, axis, amount in data["opts"]]
  except (KeyError, TypeError, ValueError): return None

def save_cached(key: str, opts: list[Opt], name: str, seconds: float):
  path = _cache_path(key)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".{os.getpid()}.tmp")
  tmp.write_text(json.dumps({"kernel": name, "opts": [[o.op.name, o.axis, o.amount] for o in opts], "seconds": seconds}))
  os.replace(tmp, path)  # atomic: concurrent searches of one kernel never leave half a file

# ---- building candidates in worker processes ----
# ops of a linear program that are no instruction when it runs (a RANGE counts its loop's compare and increment)
_FREE_OPS = {Ops.SINK, Ops.CONST, Ops.DEFINE_GLOBAL, Ops.DEFINE_LOCAL, Ops.DEFINE_REG, Ops.SPECIAL, Ops.END}

def executed_ops(uops: list[UOp], threads: int) -> float:
  """The ops one CPU thread runs, roughly: each op of the linear program once per trip of the loops around it (a vector
  op counts one, building a vector one per distinct lane), index math included (gcc folds some of it). A cost model
  for ordering and pruning candidates, not a prediction: the search calibrates it by the rates kernels ran at."""
  mult, stack, ops = 1, [], 0
  for u in uops:
    if u.op is Ops.RANGE:
      stack.append(mult)
      mult *= u.src[0].arg
      ops += mult
    elif u.op is Ops.END: mult = stack.pop()
    elif u.op is Ops.VECTORIZE: ops += mult * len(set(u.src))
    elif u.op not in _FREE_OPS: ops += mult
  return ops / max(threads, 1)

def _codegen(ast: UOp, device: str, opts: tuple[Opt, ...]):
  """(spec, executed ops, seconds) of the kernel with `opts`; runs in a worker process."""
  from lucidgrad.device import Device
  from lucidgrad.codegen import program_of
  st = time.perf_counter()
  spec = program_of(Kernel(ast, Device[device].renderer).apply_opts(opts))
  return spec, executed_ops(spec.uops, spec.threads), time.perf_counter() - st

def _compile(device: str, src: str):
  """(binary, seconds) of a kernel's source; runs in a worker process."""
  from lucidgrad.device import Device
  st = time.perf_counter()
  return Device[device].compiler.compile_cached(src), time.perf_counter() - st

@functools.cache
def _pool() -> ProcessPoolExecutor:
  # spawn, not fork: a fork copies locks other threads hold (the CPU device asks the compiler for its version in a
  # background thread), and a worker forked at the wrong moment waited on one forever (seen in bench_beam)
  return ProcessPoolExecutor(max_workers=os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn"))

# ---- timing on the device ----
def _fresh_buffers(ast: UOp, device: str) -> list:
  """One buffer per param, inputs filled with small random values (kernels read memory only at range-derived
  addresses, so any contents are safe), the output with zeros."""
  from lucidgrad.device import Buffer
  params = sorted({u.arg: u for u in ast.toposort if u.op is Ops.DEFINE_GLOBAL}.values(), key=lambda u: u.arg[0])
  rng, bufs = np.random.default_rng(0), []
  for p in params:
    dt, n = p.dtype.base(), p.arg[1]
    vals = (rng.standard_normal(n) if dt.is_float() else rng.integers(0, 2 if dt.is_bool() else 8, n)) if p.arg[0] else np.zeros(n)
    # bfloat16 without ml_dtypes is held as its bits: the values rounded to those, not cast as integers
    vals = f32_to_bf16_array(vals) if dt == dtypes.bfloat16 and dt.np == np.uint16 else vals.astype(dt.np)
    bufs.append(Buffer(device, n, dt).copyin(vals))
  return bufs

_flush = np.zeros(FLUSH_BYTES // 8)
def _flush_caches():
  _flush[:] += 1.0

def _time(prog, spec, bufs, out_init: np.ndarray, give_up: float = float("inf"), runs: int = BEAM_RUNS) -> float:
  """The best of `runs` runs, or of fewer once a run is slower than `give_up` seconds and than the reset and flush
  before it: a run that costs less than those saves nothing by stopping, and a short kernel's runs vary the most (two
  threads waiting for cores on a loaded machine)."""
  best = float("inf")
  for _ in range(runs):
    st = time.perf_counter()
    bufs[0].copyin(out_init)  # a kernel may read what it writes (an in-place update): every run starts alike
    _flush_caches()
    setup = time.perf_counter() - st
    best = min(best, prog(*[bufs[i].raw for i in spec.slots], global_size=spec.global_size, local_size=spec.local_size))
    if best > max(give_up, setup): break
  return best

def _same(a: np.ndarray, b: np.ndarray, dt) -> bool:
  if not dt.is_float(): return np.array_equal(a, b)
  # opts reorder sums, so the last bits may differ: by up to ~eps * sqrt(terms) * the partial sums, which an output that
  # cancels to near 0 does not bound (a 3072-long dot product of N(0, 1) values: ~2e-4 off at an output of 0.01). So
  # the absolute slack scales with the largest output; a lost or doubled term is still ~1/tol times past it.
  tol = 1e-2 if dt.itemsize <= 2 else 1e-4
  a, b = a.astype(np.float64), b.astype(np.float64)
  scale = float(np.abs(b[np.isfinite(b)]).max(initial=1.0))
  return bool(np.allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True))

@dataclass
class _Step:
  """Where one step of a search spent its seconds, for DEBUG: waiting on the workers (and their own seconds of codegen
  and of the compiler), timing on the device."""
  n: int
  pruned: int = 0
  built: int = 0
  timed: int = 0
  cut: int = 0
  wait_s: float = 0.0
  codegen_s: float = 0.0
  compile_s: float = 0.0
  time_s: float = 0.0
  def __str__(self):
    return (f"{self.n} candidates: {self.pruned} not timed by their op count, {self.built} compiled; waited {self.wait_s:.1f} s on the "
            f"workers (codegen {self.codegen_s:.1f} s, compiler {self.compile_s:.1f} s); timed {self.timed} in {self.time_s:.1f} s "
            f"({self.cut} ran past {SLOW_RUN}x the best: timed once, unless shorter than a flush)")

def _results(futs: dict, until: float | None, what: str):
  """(key, result) of each future that finished by `until`, in the order they finish; the rest are cancelled (a worker
  still busy finishes in the background). A failed one is skipped with a message: a candidate that does not build is
  a bug, but not the user's."""
  try:
    for f in as_completed(futs, timeout=None if until is None else max(0.0, until - time.perf_counter())):
      try: yield futs[f], f.result()
      except Exception as e: print(f"BEAM: {futs[f].name} with {futs[f].applied} failed to {what}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
  except FutureTimeout:
    for f in futs: f.cancel()

def beam_search(ast: UOp, device: str, width: int, key: str) -> list[Opt]:
  """The fastest opts found for `ast` on `device`; from the disk cache when a search under `key` ran before. The
  caller's key names everything the result depends on: the kernel, device, renderer and its capabilities, compiler,
  codegen source and flags (BEAM's width and THREADS among them)."""
  from lucidgrad.device import Device
  from lucidgrad.codegen.opt import hand_coded_opts
  if not IGNORE_BEAM_CACHE and (hit := load_cached(key)) is not None: return hit
  SearchStats.searches += 1
  dev, st = Device[device], time.perf_counter()
  deadline = st + float(BEAM_TIME_LIMIT.value)
  start = Kernel(ast, dev.renderer)
  bufs = _fresh_buffers(ast, device)
  out_init, out_dt = bufs[0].numpy(), bufs[0].dtype
  fastest, rate = float("inf"), 0.0  # the best time so far, and the most ops per second any timed kernel ran
  timed_all: list[tuple[float, Kernel, object, object]] = []  # (time, kernel, program, spec) of every timed kernel
  def run(kernels: list[Kernel], until: float | None = deadline) -> list[tuple[float, Kernel]]:
    """Times of the kernels that built and gave the reference output, up to `until`. Each is rendered, then those whose
    op count could still win are compiled, then all are timed, fewest ops first, the workers idle."""
    nonlocal fastest, rate
    step, t0 = _Step(len(kernels)), time.perf_counter()
    def hopeless(ops: float) -> bool: return rate > 0 and ops / rate > PRUNE_MARGIN * fastest
    order = {k: i for i, k in enumerate(kernels)}
    rendered = {}
    for k, (spec, ops, secs) in _results({_pool().submit(_codegen, ast, device, tuple(k.applied)): k for k in kernels}, until, "build"):
      step.codegen_s += secs
      if hopeless(ops): step.pruned += 1
      else: rendered[k] = (spec, ops)
    built = []
    for k, (lib, secs) in _results({_pool().submit(_compile, device, spec.src): k for k, (spec, _) in rendered.items()}, until, "compile"):
      step.compile_s += secs
      built.append((rendered[k][1], order[k], k, rendered[k][0], lib))
    step.built, step.wait_s, t0 = len(built), time.perf_counter() - t0, time.perf_counter()
    out = []
    for i, (ops, _, k, spec, lib) in enumerate(sorted(built, key=lambda b: b[:2])):  # ties in the order they were made
      if until is not None and time.perf_counter() >= until:
        if DEBUG >= 1: print(f"BEAM {start.name}: time limit with {len(built) - i} of {len(kernels)} candidates untimed", file=sys.stderr)
        break
      if hopeless(ops):  # ordered by ops: the rest could not win either
        step.pruned += len(built) - i
        break
      prog = dev.program_cls(spec.name, lib, spec=spec)
      t = _time(prog, spec, bufs, out_init, SLOW_RUN * fastest)
      step.timed, step.cut = step.timed + 1, step.cut + (t > SLOW_RUN * fastest)
      if DEBUG >= 3: print(f"  {t*1e6:10.1f} us {ops:12.4g} ops {k.applied}", file=sys.stderr)
      if ref is not None and not _same(bufs[0].numpy(), ref, out_dt):
        print(f"BEAM: {k.name} with {k.applied} gives another result than the default opts; skipped", file=sys.stderr)
        continue
      SearchStats.candidates += 1
      fastest, rate = min(fastest, t), max(rate, ops / t)
      out.append((t, k))
      timed_all.append((t, k, prog, spec))
    step.time_s = time.perf_counter() - t0
    if DEBUG >= 2: print(f"BEAM {start.name}: {step}", file=sys.stderr)
    return out
  ref = None
  default = hand_coded_opts(start.copy())
  if not (timed_default := run([default], until=None)):
    raise RuntimeError(f"BEAM: the default kernel of {start.name} did not build or run in a search worker (the message above "
                       "says why); a worker that died at start-up is often a script without an `if __name__ == '__main__':` "
                       "guard, which the workers re-import")
  (t_def, _), = timed_default
  ref = bufs[0].numpy()
  # the first step expands the heuristic's path: every prefix of its opts (the kernel with no opts the first) and its
  # choice, each whether or not its own op count let it be timed
  seeds = [start.copy().apply_opts(default.applied[:i]) for i in range(len(default.applied))]
  best = min(run(seeds) + [(t_def, default)], key=lambda x: x[0])
  parents, seen = seeds + [default], {(k.sink, k.threads) for k in seeds + [default]}
  bar = progress(desc=f"BEAM {start.name}", unit="kernel")
  while time.perf_counter() < deadline:
    cands = []
    for k in parents:
      for o in k.valid_opts():
        nk = k.copy().apply_opt(o)
        if (nk.sink, nk.threads) not in seen:
          seen.add((nk.sink, nk.threads))
          cands.append(nk)
    if not cands: break
    timed = sorted(run(cands), key=lambda x: x[0])  # at the limit: what was timed of this step still counts
    bar.update(len(cands))
    bar.set_postfix(f"{best[0]*1e6:.1f} us {best[1].applied}")
    if not timed or timed[0][0] >= best[0]: break
    best, parents = timed[0], [k for _, k in timed[:width]]
  bar.close()
  # each kernel was timed once, in its own moment: on a machine whose load changes, a lucky moment can crown a kernel
  # slower than the default (seen: 0.77x). The fastest few and the default are timed again in turns, and the fastest
  # of that round is kept, so a search never returns a kernel it did not see beat the default side by side.
  finalists = sorted(timed_all, key=lambda x: x[0])[:width + 1]
  finalists += [x for x in timed_all if x[1] is default and all(f[1] is not default for f in finalists)]
  final = {id(k): float("inf") for _, k, _, _ in finalists}
  for _ in range(BEAM_RUNS):
    for _, k, prog, spec in finalists: final[id(k)] = min(final[id(k)], _time(prog, spec, bufs, out_init, runs=1))
  best = min(((final[id(k)], k) for _, k, _, _ in finalists), key=lambda x: x[0])
  opts = best[1].applied
  if DEBUG >= 1:
    print(f"BEAM {start.name}: {opts} in {best[0]*1e6:.1f} us (default {final[id(default)]*1e6:.1f} us, timed in turns with "
          f"{len(finalists) - 1} others), {len(seen)} kernels tried in {time.perf_counter() - st:.1f} s")
  save_cached(key, opts, start.name, best[0])
  return opts
