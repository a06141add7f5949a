"""BEAM search over the opt space: from the kernel with no opts (and the heuristic's choice), each step tries every
valid next opt of the `width` fastest kernels so far; candidates are built and compiled in worker processes and timed
on the device on fresh buffers with the caches flushed; the search stops when a step finds nothing faster, or at the
time limit (checked before each candidate's result is awaited; the best found so far is kept). Every candidate's output is checked against the heuristic kernel's output, so a search never changes
results. What it finds is kept on disk, keyed by everything the result depends on, so a later process searches nothing."""
from __future__ import annotations
import functools, json, os, pathlib, sys, time
from concurrent.futures import ProcessPoolExecutor, TimeoutError as FutureTimeout
import multiprocessing
import numpy as np
from lucidgrad.helpers import DEBUG, IGNORE_BEAM_CACHE, BEAM_TIME_LIMIT, cache_dir, progress
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.codegen.opt.kernel import Kernel, Opt, OptOps

BEAM_RUNS = 3                                             # timed runs per candidate; the best counts
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
def _build(ast: UOp, device: str, opts: tuple[Opt, ...]):
  """(spec, binary) of the kernel with `opts`; runs in a worker process."""
  from lucidgrad.device import Device
  from lucidgrad.codegen import program_of
  dev = Device[device]
  spec = program_of(Kernel(ast, dev.renderer).apply_opts(opts))
  return spec, dev.compiler.compile_cached(spec.src)

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
    bufs.append(Buffer(device, n, dt).copyin(vals.astype(dt.np if dt.np is not None else np.float32)))
  return bufs

_flush = np.zeros(FLUSH_BYTES // 8)
def _flush_caches():
  _flush[:] += 1.0

def _time(prog, spec, bufs, out_init: np.ndarray) -> float:
  best = float("inf")
  for _ in range(BEAM_RUNS):
    bufs[0].copyin(out_init)  # a kernel may read what it writes (an in-place update): every run starts alike
    _flush_caches()
    best = min(best, prog(*[bufs[i].raw for i in spec.slots], global_size=spec.global_size, local_size=spec.local_size))
  return best

def _same(a: np.ndarray, b: np.ndarray, dt) -> bool:
  if not dt.is_float(): return np.array_equal(a, b)
  tol = 1e-2 if dt.itemsize <= 2 else 1e-4  # opts reorder sums, so the last bits may differ
  return bool(np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=tol, atol=tol, equal_nan=True))

def beam_search(ast: UOp, device: str, width: int, key: str) -> list[Opt]:
  """The fastest opts found for `ast` on `device`; from the disk cache when a search under `key` ran before. The
  caller's key names everything the result depends on: the kernel, device, renderer and its capabilities, compiler,
  codegen source and flags (BEAM's width and THREADS among them)."""
  from lucidgrad.device import Device
  from lucidgrad.codegen.opt import hand_coded_opts
  if not IGNORE_BEAM_CACHE and (hit := load_cached(key)) is not None: return hit
  SearchStats.searches += 1
  dev, st = Device[device], time.perf_counter()
  start = Kernel(ast, dev.renderer)
  bufs = _fresh_buffers(ast, device)
  out_init, out_dt = bufs[0].numpy(), bufs[0].dtype
  def run(kernels: list[Kernel], deadline: float | None = None) -> list[tuple[float, Kernel]]:
    """Times of the kernels that built and gave the reference output, up to the deadline: a candidate still building
    then is given up with all after it (a worker that is still compiling finishes in the background)."""
    futs = [_pool().submit(_build, ast, device, tuple(k.applied)) for k in kernels]
    out = []
    for i, (k, f) in enumerate(zip(kernels, futs)):
      try:
        if deadline is not None and time.perf_counter() >= deadline: raise FutureTimeout  # nor one built already is timed
        spec, lib = f.result(timeout=None if deadline is None else deadline - time.perf_counter())
      except FutureTimeout:
        for g in futs[i:]: g.cancel()
        if DEBUG >= 1: print(f"BEAM {start.name}: time limit with {len(kernels) - i} of {len(kernels)} candidates untimed", file=sys.stderr)
        break
      except Exception as e:  # a candidate that does not build is a bug, but not the user's: skip it and say so
        print(f"BEAM: {k.name} with {k.applied} failed to build: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
        continue
      prog = dev.program_cls(spec.name, lib, spec=spec)
      t = _time(prog, spec, bufs, out_init)
      if ref is not None and not _same(bufs[0].numpy(), ref, out_dt):
        print(f"BEAM: {k.name} with {k.applied} gives another result than the default opts; skipped", file=sys.stderr)
        continue
      SearchStats.candidates += 1
      out.append((t, k))
    return out
  ref = None
  default = hand_coded_opts(start.copy())
  (t_def, _), = run([default])
  ref = bufs[0].numpy()
  beam = sorted(run([start]) + [(t_def, default)], key=lambda x: x[0])[:width]
  best, seen = beam[0], {(k.sink, k.threads) for _, k in beam}
  bar = progress(desc=f"BEAM {start.name}", unit="kernel")
  deadline = st + float(BEAM_TIME_LIMIT.value)
  while time.perf_counter() < deadline:
    cands = []
    for _, k in beam:
      for o in k.valid_opts():
        nk = k.copy().apply_opt(o)
        if (nk.sink, nk.threads) not in seen:
          seen.add((nk.sink, nk.threads))
          cands.append(nk)
    if not cands: break
    timed = sorted(run(cands, deadline), key=lambda x: x[0])  # at the limit: what was timed of this step still counts
    bar.update(len(cands))
    bar.set_postfix(f"{best[0]*1e6:.1f} us {best[1].applied}")
    if not timed or timed[0][0] >= best[0]: break
    best, beam = timed[0], timed[:width]
  bar.close()
  opts = best[1].applied
  if DEBUG >= 1:
    print(f"BEAM {start.name}: {opts} in {best[0]*1e6:.1f} us (default {t_def*1e6:.1f} us), {len(seen)} kernels tried in "
          f"{time.perf_counter() - st:.1f} s")
  save_cached(key, opts, start.name, best[0])
  return opts
