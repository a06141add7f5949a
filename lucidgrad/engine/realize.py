"""The execution layer: a schedule is lowered to ExecItems (a runner -- a compiled kernel or a copy -- and the buffers
it runs on), and `run_items` is the one loop that runs them: it counts, times, prints under DEBUG, records profiler
events and hands what it ran to an open JIT capture, whose replays run through it again. Programs come from
`build_program`, the engine's only call into codegen, behind a disk cache of whole programs (docs/design/0007)."""
from __future__ import annotations
import atexit, dataclasses, functools, json, operator, os, sys, threading, time, types, typing
from enum import Enum
from typing import TYPE_CHECKING
from lucidgrad.helpers import DEBUG, BEAM, IGNORE_BEAM_CACHE, PROFILE, DISABLE_COMPILER_CACHE, VERSION, ContextVar, GlobalCounters, cache_dir, content_hash, fmt_time, colored
from lucidgrad.device import Device, Buffer, Compiled, buffer_of
from lucidgrad.uop.ops import UOp, bound_values
from lucidgrad.uop.pattern import VIZ
from lucidgrad import viz

def var_value_named(name: str) -> int:
  if (v := bound_values.get(name)) is None: raise RuntimeError(f"Variable {name!r} has no value: bind one with .bind(n) before running a kernel that reads it")
  return v
from lucidgrad.engine import profile
if TYPE_CHECKING:
  from lucidgrad.schedule import ScheduleItem
  from lucidgrad.codegen import ProgramSpec
  from lucidgrad.codegen import Opt

# ---- runners: what the loop calls ----
class Runner:
  """Something the run loop calls on a list of buffers (bufs[0] is the one written); returns the device seconds it took."""
  kind = "kernel"
  def __init__(self, name: str, device: str, flops: int, mem_bytes: int):
    self.name, self.device, self.flops, self.mem_bytes = name, device, flops, mem_bytes
    self.dev: Compiled = Device[device]
    self.is_kernel = int(self.kind == "kernel")  # what it adds to GlobalCounters.kernel_count
  def __call__(self, bufs: list[Buffer]) -> float: raise NotImplementedError
  def __repr__(self): return f"<{type(self).__name__} {self.name} on {self.device}>"

_raw_of = operator.attrgetter("raw")  # map() over it gathers a kernel's raws without a comprehension's frame

class CompiledRunner(Runner):
  """A compiled kernel: its program launched on the buffers its spec's slots name (folding can drop params), with the
  spec's launch dims; the program times itself on its device (device.Compiled says how)."""
  def __init__(self, device: str, spec: ProgramSpec, program):
    super().__init__(spec.name, device, spec.flops, spec.mem_bytes)
    self.spec, self.program, self.slots = spec, program, spec.slots
    self.vars = spec.vars  # the Variables it reads: their values are the ones bound when it runs (docs/design/0029)
    # launch dims only where they are more than one block of one thread (a CPU kernel's): keyword arguments cost
    # ~0.3 us a call, and a program's defaults are that one thread
    trivial = all(d == 1 for d in (*spec.global_size, *(spec.local_size or ())))
    self.launch = None if trivial else {"global_size": spec.global_size, "local_size": spec.local_size}
    # a program that launches a list of raws itself (CPUProgram.run_raws) is handed them directly: one frame less
    # and no argument parsing on every eager kernel's launch
    self.run_raws = getattr(program, "run_raws", None) if trivial and not self.vars else None
  def __call__(self, bufs: list[Buffer]) -> float:
    if (run := self.run_raws) is not None: return run([*map(_raw_of, map(bufs.__getitem__, self.slots))])
    if self.vars: return self.program(*[bufs[i].raw for i in self.slots], **(self.launch or {}), vals=tuple(var_value_named(n) for n in self.vars))
    if self.launch is None: return self.program(*[bufs[i].raw for i in self.slots])
    # a GPU launch is waited for (and timed) only where its time is shown: DEBUG=2, PROFILE; else it is queued and the
    # run goes on (host devices finish every call anyway). GlobalCounters.time_sum_s then counts only timed launches
    return self.program(*[bufs[i].raw for i in self.slots], **self.launch, wait=DEBUG.value >= 2 or bool(PROFILE.value))

class CopyRunner(Runner):
  """bufs[1] (on `src`) copied into bufs[0] (on `device`) by the destination's allocator, timed by its events."""
  kind = "copy"
  def __init__(self, device: str, src: str, nbytes: int): super().__init__(f"copy {src} -> {device}", device, 0, nbytes)
  def __call__(self, bufs: list[Buffer]) -> float:
    (dest, src), dev = bufs, self.dev
    st = dev.record_event()
    if self.mem_bytes: dest.allocator.transfer(dest.raw, src.raw, self.mem_bytes, src.allocator)
    return dev.event_seconds(st, dev.record_event())

@dataclasses.dataclass
class ExecItem:
  """One step of a run: `runner` called on `bufs`."""
  runner: Runner
  bufs: list[Buffer]

def lower_schedule(items: list[ScheduleItem]) -> list[ExecItem]:
  """The schedule's items with their buffers found and their kernels compiled (at most once per process). Every kernel
  not built yet has its program made in order and its compile started as soon as its source exists, so the C compiler
  runs beside the codegen of the kernels after it and beside other compiles (device.Compiler.start_compile); then each
  is waited for. Every compile started here has ended when this returns or raises (the first failure, in order)."""
  if PROFILE.value:
    st = time.perf_counter_ns()
    try: return _lower_schedule(items)
    finally: profile.add_host(f"lower {len(items)} items", "lower", st, time.perf_counter_ns())
  return _lower_schedule(items)

def _lower_schedule(items: list[ScheduleItem]) -> list[ExecItem]:
  bufs_of = [[buffer_of(b) for b in it.bufs] for it in items]
  started: list[CompiledRunner | _Build | None] = []
  try:
    alone = sum(it.kind != "copy" for it in items) == 1
    if VIZ.value:
      for it, bufs in zip(items, bufs_of): started.append(_start_viz(it, bufs, alone))
    else:
      for it, bufs in zip(items, bufs_of): started.append(None if it.kind == "copy" else _start_runner(bufs[0].device, it.ast, None, alone))
  finally:  # also when a codegen failed: the compiles already started are waited for
    runners, failed = [], None
    for it, bufs, got in zip(items, bufs_of, started):
      if isinstance(got, _Build):
        try: got = _finish_runner(got)
        except Exception as e: failed = failed or e
      runners.append(CopyRunner(bufs[0].device, bufs[1].device, bufs[0].nbytes) if it.kind == "copy" else got)
  if failed is not None: raise failed
  return [ExecItem(r, bufs) for r, bufs in zip(runners, bufs_of)]

def _start_viz(it: ScheduleItem, bufs: list[Buffer], alone: bool) -> CompiledRunner | _Build | None:
  """_start_runner inside a kernel group of the recording (VIZ), so codegen's passes nest under it; a kernel whose program
  was made before the recording began is built again (and the new program dropped) to show them."""
  device = bufs[0].device
  if it.kind == "copy":
    with viz.kernel_group(it.reason, device, bufs[1].device, bufs[0].nbytes): return None
  with viz.kernel_group(it.reason, device) as g:
    passes = GlobalCounters.codegen_passes
    got = _start_runner(device, it.ast, None, alone)
    if GlobalCounters.codegen_passes == passes and not viz.was_built(got.spec): build_program(it.ast, device)
    viz.kernel_built(g, got.spec, Device[device].renderer.has_local, GlobalCounters.codegen_passes > passes)
  return got

# ---- the loop ----
# the JIT's open captures (engine/jit.py), innermost last: run_items appends every item it runs to each of them (a
# jitted function called inside another's capture runs its kernels for both)
capturing: list[list[ExecItem]] = []

def run_items(items: list[ExecItem], bind: dict[int, Buffer] | None = None) -> None:
  """Run `items` in order. `bind` maps id(buffer) -> the buffer to use in its place: how a JIT replay runs its capture
  on new inputs and outputs. Everything that runs is counted in GlobalCounters and, with PROFILE=1, in profile.events."""
  debug, prof, captures = DEBUG.value, PROFILE.value, capturing[:]
  kernels, ops, mem, secs = 0, 0, 0, 0.0  # added to GlobalCounters once: a replay's loop is its overhead
  if not (debug or prof or captures or bind):
    # the plain run (every eager realize): nothing to print, record, capture or swap, so only the counts per item
    try:
      for ei in items:
        r = ei.runner
        secs += r(ei.bufs)
        kernels, ops, mem = kernels + r.is_kernel, ops + r.flops, mem + r.mem_bytes
    finally:
      GlobalCounters.kernel_count += kernels
      GlobalCounters.global_ops += ops
      GlobalCounters.global_mem += mem
      GlobalCounters.time_sum_s += secs
    return
  try:
    for ei in items:
      r = ei.runner
      bufs = ei.bufs if bind is None else [bind.get(id(b), b) for b in ei.bufs]
      if prof: st = time.perf_counter_ns()
      et = r(bufs)
      kernels, ops, mem, secs = kernels + r.is_kernel, ops + r.flops, mem + r.mem_bytes, secs + et
      if captures:
        for c in captures: c.append(ei if bind is None else ExecItem(r, bufs))
      if prof:
        end = time.perf_counter_ns()
        profile.events.append(profile.ProfileEvent(r.kind, r.name, r.device, st / 1e9, et, r.flops, r.mem_bytes))
        args = {"device_us": et * 1e6, "flops": r.flops, "bytes": r.mem_bytes}
        profile.add_host(f"launch {r.name}" if r.kind == "kernel" else r.name, r.kind, st, end, args)
        profile.add_device(r.device, r.name, r.kind, end, et, args)
      if debug >= 2:
        print(f"{colored(f'*** {r.device:6s} {GlobalCounters.kernel_count + kernels:4d}', 'green')} {r.name:32s} "
              f"{fmt_time(et)}  {r.flops/max(et,1e-9)/1e9:8.2f} GFLOP/s  {r.mem_bytes/max(et,1e-9)/1e9:8.2f} GB/s")
      elif debug >= 1: print(f"*** {r.device} {r.name}")
  finally:
    GlobalCounters.kernel_count += kernels
    GlobalCounters.global_ops += ops
    GlobalCounters.global_mem += mem
    GlobalCounters.time_sum_s += secs
  if debug >= 1 and items:
    print(f"ran {len(items)} items: {GlobalCounters.kernel_count} kernels so far, {fmt_time(GlobalCounters.time_sum_s).strip()} kernel time, "
          f"{GlobalCounters.compiles} compiled")

def bound_launches(runners: list[Runner], refs: list[tuple[int, ...]]) -> tuple[list[tuple], int, int, int]:
  """How run_bound launches a template's items, worked out once per template: per item (the callable, the refs of the
  buffers it takes, whether it takes their raws), and the kernels, FLOPs and bytes of the whole run. A program that
  launches raws itself (CPUProgram.run_raws) is given the refs of its slots, so a launch is one call from the loop
  (no runner frame, no list of Buffers taken apart into raws); any other runner is called on its Buffers."""
  launches = [(r.run_raws, tuple(rs[i] for i in r.slots), True) if getattr(r, "run_raws", None) is not None else (r, rs, False)
              for r, rs in zip(runners, refs)]
  return launches, sum(r.is_kernel for r in runners), sum(r.flops for r in runners), sum(r.mem_bytes for r in runners)

def run_bound(template, bufs: list[Buffer]) -> None:
  """run_items on ExecItems of a schedule template's runners, each on the buffers its refs name in `bufs` (the template
  bound to one realize's buffers). The plain run builds no ExecItem and launches through bound_launches' plan, kept on
  the template (its `launches`; set it to None after changing its runners)."""
  if DEBUG.value or PROFILE.value or capturing:
    return run_items([ExecItem(r, [bufs[i] for i in rs]) for r, rs in zip(template.runners, template.items)])
  if (plan := template.launches) is None: plan = template.launches = bound_launches(template.runners, template.items)
  launches, kernels, ops, mem = plan
  secs, done, take = 0.0, 0, bufs.__getitem__
  try:
    for run, refs, raws in launches:
      secs += run(map(_raw_of, map(take, refs)) if raws else [*map(take, refs)])  # raws: gathered by run_raws itself
      done += 1
  except BaseException:  # only what ran is counted
    ran = template.runners[:done]
    kernels, ops, mem = sum(r.is_kernel for r in ran), sum(r.flops for r in ran), sum(r.mem_bytes for r in ran)
    raise
  finally:
    GlobalCounters.kernel_count += kernels
    GlobalCounters.global_ops += ops
    GlobalCounters.global_mem += mem
    GlobalCounters.time_sum_s += secs

def run_schedule(items: list[ScheduleItem]) -> None: run_items(lower_schedule(items))

# ---- compiled kernels, once per process ----
_runners: dict[tuple, CompiledRunner] = {}
# flags that only print, show, profile, check or graph JIT replays or say how many compiles run at once; any other flag (NOOPT, BEAM, THREADS -- the THREAD opt's
# amount --, SPEC, ...) may change or check the program codegen builds, so it is part of the key -- a flag added later is
# in it unless named here. BEAM_TIME_LIMIT and IGNORE_BEAM_CACHE bound or redo a search, and what a search found is kept
# for every later process whatever they were (a search run again overwrites it)
_NOT_CODEGEN_FLAGS = frozenset({"DEBUG", "VIZ", "DISABLE_COMPILER_CACHE", "PROFILE", "JIT_VERIFY", "JIT_GRAPH", "BEAM_TIME_LIMIT", "IGNORE_BEAM_CACHE",
                                "COMPILE_JOBS"})
def codegen_flags() -> tuple[tuple[str, typing.Any], ...]:
  return tuple((k, v.value) for k, v in sorted(ContextVar.registry.items()) if k not in _NOT_CODEGEN_FLAGS)

# the ASTs of recently run kernels, held so they stay interned: a schedule that builds the same kernel again gets the same
# node, found here by identity without hashing its graph (a node is equal only to itself, so the key is complete)
_recent: dict[tuple, CompiledRunner] = {}
RECENT_ASTS = 1024

def get_runner(device: str, ast: UOp, opts: list[Opt] | None = None) -> CompiledRunner:
  """The compiled program for `ast` on `device` under the current codegen flags, with `opts` (None: the ones codegen
  picks), built at most once per process."""
  got = _start_runner(device, ast, opts, alone=True)
  return got if isinstance(got, CompiledRunner) else _finish_runner(got)

@dataclasses.dataclass
class _Build:
  """A kernel whose program is made and whose binary may still be compiling: `binary()` waits for it."""
  keys: tuple[tuple, tuple]   # its keys in _recent and _runners
  device: str
  spec: ProgramSpec
  binary: typing.Callable[[], tuple[bytes, float | None]]
  codegen_s: float | None     # seconds of codegen, search left out (None: the program came from the disk)
  search_s: float             # seconds of BEAM search before it

_building: dict[tuple, _Build] = {}   # builds started and not finished, by their _runners key: one kernel twice is one build

def _start_runner(device: str, ast: UOp, opts: list[Opt] | None, alone: bool = False) -> CompiledRunner | _Build:
  """The runner built before, or a build of it with its compile started (`alone`: on this thread, nothing is built beside it)."""
  flags, want = codegen_flags(), None if opts is None else tuple(opts)
  if (r := _recent.get(recent_key := (device, ast, flags, want))) is not None: return r
  if (r := _runners.get(key := (device, ast.key, flags, want))) is not None or (r := _building.get(key)) is not None: return r
  dev = Device[device]
  passes, searched = GlobalCounters.codegen_passes, GlobalCounters.search_seconds
  t0 = time.perf_counter()
  spec = build_program(ast, device, opts)
  searched = GlobalCounters.search_seconds - searched  # a search is not the kept program's build
  t1 = time.perf_counter()
  codegen_s = t1 - t0 - searched if GlobalCounters.codegen_passes > passes else None
  if DEBUG >= 4: print(spec.src)
  b = _building[key] = _Build((recent_key, key), device, spec, dev.compiler.start_compile(spec.src, alone, spec.name), codegen_s, searched)
  if PROFILE.value:  # the same clock in ns: the compile here is a compile (alone, or a binary read from disk) or its start
    t0n, t1n = round(t0 * 1e9), round(t1 * 1e9)
    profile.add_host(f"codegen {spec.name}", "codegen", t0n, t1n, {"cached": codegen_s is None, "search_s": searched})
    profile.add_host(f"compile {spec.name}", "compile", t1n, time.perf_counter_ns(), {"queued": not alone})
  return b

def _finish_runner(b: _Build) -> CompiledRunner:
  """The runner of a started build, once its binary is there; the build is dropped whether or not its compile worked."""
  recent_key, key = b.keys
  if PROFILE.value: st = time.perf_counter_ns()
  try: lib, compile_s = b.binary()
  except RuntimeError as e: raise RuntimeError(f"kernel {b.spec.name} did not compile: {e}") from e
  finally: _building.pop(key, None)
  if PROFILE.value: profile.add_host(f"wait compile {b.spec.name}", "compile", st, time.perf_counter_ns(), {"compile_s": compile_s})
  if (r := _runners.get(key)) is None:  # a kernel asked for twice in one schedule is finished once
    spec = b.spec
    # a kernel's build time is what codegen and the C compiler spent on it; reading either from the disk costs nothing
    built = (b.codegen_s or 0.0) + (compile_s or 0.0)
    if built > GlobalCounters.slowest_compile[1]: GlobalCounters.slowest_compile = (spec.name, built)
    if DEBUG >= 3:
      print(f"{spec.name}: program {'cached' if b.codegen_s is None else f'by codegen in {b.codegen_s*1e3:.1f} ms'}, "
            f"{f'after a search of {b.search_s:.1f} s, ' if b.search_s else ''}"
            f"binary {'cached' if compile_s is None else f'compiled in {compile_s*1e3:.1f} ms'}, opts {list(spec.opts)}")
    r = _runners[key] = CompiledRunner(b.device, spec, Device[b.device].program_cls(spec.name, lib, spec=spec))
  _recent[recent_key] = r
  if len(_recent) > RECENT_ASTS: del _recent[next(iter(_recent))]
  return r

@atexit.register
def _report_slowest_compile():
  if DEBUG >= 1 and (slowest := GlobalCounters.slowest_compile)[0]:
    print(f"slowest kernel build: {slowest[0]} in {slowest[1]:.2f} s (codegen and C compiler; {GlobalCounters.codegen_passes} codegen passes "
          f"and {GlobalCounters.compiles} compiles in this process)", file=sys.stderr)

# ---- programs, once per machine: the disk cache in front of codegen ----
PROGRAM_CACHE_FORMAT = 1   # the layout of a cache file; a file of another format is a miss
# what a program depends on besides its AST, target and flags: the code that builds it, and the dtype tables and
# utilities that code reads
CODEGEN_SOURCES = ("uop", "codegen", "renderer", "schedule", "dtype.py", "helpers.py")

@functools.cache
def codegen_version() -> str:
  """lucidgrad's version and a hash of the source of CODEGEN_SOURCES, computed once per process: editing codegen
  never hands out a program the old code built."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  files = sorted(os.path.relpath(os.path.join(d, f), root) for name in CODEGEN_SOURCES if not name.endswith(".py")
                 for d, _, fs in os.walk(os.path.join(root, name)) for f in fs if f.endswith(".py"))
  files = sorted(files + [name for name in CODEGEN_SOURCES if name.endswith(".py")])
  parts = []
  for f in files:
    with open(os.path.join(root, f), "rb") as fh: parts += [f.replace(os.sep, "/"), fh.read()]
  return content_hash(VERSION, *parts)

def renderer_identity(renderer) -> str:
  """The renderer's class and its declared capabilities (its public data attributes), as text."""
  caps = [(k, v) for k in dir(renderer) if not k.startswith("_") and isinstance(v := getattr(renderer, k), (bool, int, float, str, tuple, frozenset))]
  return f"{type(renderer).__module__}.{type(renderer).__qualname__} {caps!r}"

def program_key(ast: UOp, device: str, opts: list[Opt] | None = None) -> str:
  """Everything the program codegen builds for `ast` on `device` depends on, hashed."""
  dev = Device[device]
  return content_hash(str(PROGRAM_CACHE_FORMAT), device.split(":")[0], renderer_identity(dev.renderer), dev.compiler.key, repr(codegen_flags()),
                      codegen_version(), ast.key, json.dumps(None if opts is None else _encode(list(opts))))

def build_program(ast: UOp, device: str, opts: list[Opt] | None = None) -> ProgramSpec:
  """The program for `ast` on `device`, with `opts` (None: the ones codegen picks). This is the engine's only call into
  codegen. Where the device's compiler keeps binaries on disk, whole programs are kept beside them by program_key, so
  a new process builds no kernel it has seen; not under $REPLAY_RECORD (process replay must see every kernel codegen
  builds), DISABLE_COMPILER_CACHE=1, or, for reading, DEBUG>=5 (the linear program it prints is not kept) or VIZ (its
  passes are recorded). A program read back has no `uops`."""
  dev = Device[device]
  replay = os.environ.get("REPLAY_RECORD")
  path = None
  if dev.compiler.disk_cached and not DISABLE_COMPILER_CACHE and not replay:
    key = program_key(ast, device, opts)
    path = os.path.join(cache_dir(), "programs", f"{key}.json")
    # with VIZ codegen runs for every kernel, so that its passes are recorded
    if DEBUG < 5 and not VIZ.value and not (BEAM >= 1 and IGNORE_BEAM_CACHE) and (spec := _load_program(path, key)) is not None:
      GlobalCounters.program_cache_hits += 1
      return spec
  from lucidgrad.codegen import get_program
  if DEBUG >= 3: print(ast)
  # with BEAM>=1 and no opts asked for, search picks them by timing candidates; the program it settles on is kept like
  # any other (BEAM's value is part of the key, through the codegen flags). The interpreter's times say nothing of a target
  if opts is None and BEAM >= 1 and dev.renderer.device != "PYTHON":
    from lucidgrad.codegen.opt.search import beam_search
    st = time.perf_counter()
    opts = beam_search(ast, device, int(BEAM), key=program_key(ast, device))
    GlobalCounters.search_seconds += time.perf_counter() - st
  spec = get_program(ast, dev.renderer, opts)
  GlobalCounters.codegen_passes += 1
  if replay:
    from lucidgrad.tools.replay import save
    save(device, ast, spec)
  if path is not None: _store_program(path, key, spec)
  return spec

def _store_program(path: str, key: str, spec: ProgramSpec):
  """Written whole or not at all (a unique temporary file, then an atomic rename): concurrent writers are safe."""
  try: text = json.dumps({"format": PROGRAM_CACHE_FORMAT, "key": key, "spec": spec_to_data(spec)})
  except TypeError as e:
    if DEBUG >= 3: print(f"program cache: {spec.name} is not kept ({e})")
    return
  tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"  # no other writer uses this name
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(tmp, "w") as f: f.write(text)
    os.replace(tmp, path)
  except OSError as e:  # a cache that cannot be written (read-only, full) only costs the next process a codegen pass
    if DEBUG >= 1: print(f"program cache: cannot write {path}: {e}")
    if os.path.exists(tmp): os.unlink(tmp)

def _load_program(path: str, key: str) -> ProgramSpec | None:
  """The program kept at `path`, or None if there is none or the file is not a whole, valid one written under `key`."""
  from lucidgrad.codegen import ProgramSpec
  try:
    with open(path, "rb") as f: data = json.loads(f.read())
  except FileNotFoundError: return None
  except (OSError, ValueError) as e:
    if DEBUG >= 1: print(f"program cache: {path} is unreadable ({type(e).__name__}), rebuilding it")
    return None
  try:
    if data["format"] != PROGRAM_CACHE_FORMAT or data["key"] != key: return None
    return spec_from_data(ProgramSpec, data["spec"])
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    if DEBUG >= 1: print(f"program cache: {path} is not a valid program ({type(e).__name__}: {e}), rebuilding it")
    return None

# ---- ProgramSpec <-> JSON data, generic over its fields and their type hints ----
def spec_to_data(spec) -> dict:
  """Every field but `uops` (the linear program: a graph, not data), as JSON values."""
  return {f.name: _encode(getattr(spec, f.name)) for f in dataclasses.fields(spec) if f.name != "uops"}

def spec_from_data(cls, data: dict):
  """The spec spec_to_data wrote; every value is checked against its field's type (ValueError if one is wrong)."""
  hints = _hints(cls)
  return cls(uops=[], **{f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name != "uops"})

@functools.cache
def _hints(cls) -> dict: return typing.get_type_hints(cls)

def _encode(v):
  """A dataclass (an Opt) becomes the list of its fields' values, an enum its name, a tuple a list."""
  if isinstance(v, Enum): return v.name
  if dataclasses.is_dataclass(v): return [_encode(getattr(v, f.name)) for f in dataclasses.fields(v)]
  if isinstance(v, (list, tuple)): return [_encode(x) for x in v]
  if v is None or isinstance(v, (bool, int, float, str)): return v
  raise TypeError(f"a {type(v).__name__} has no data form")

def _decode(tp, v):
  """The value of type `tp` that _encode turned into `v`."""
  if tp in (bool, int, str) and type(v) is tp: return v
  origin, args = typing.get_origin(tp), typing.get_args(tp)
  if origin in (typing.Union, types.UnionType):
    for a in args:
      try: return _decode(a, v)
      except ValueError: pass
    raise ValueError(f"{v!r} is none of {tp}")
  if origin in (list, tuple):
    if not isinstance(v, list): raise ValueError(f"{v!r} is not a list")
    if origin is tuple and args and args[-1] is not Ellipsis:
      if len(args) != len(v): raise ValueError(f"{v!r} does not have {len(args)} values")
      return tuple(_decode(a, x) for a, x in zip(args, v))
    return origin(_decode(args[0], x) for x in v) if args else origin(v)
  if tp is type(None) and v is None: return None
  if isinstance(tp, type) and issubclass(tp, Enum):
    if isinstance(v, str) and v in tp.__members__: return tp[v]
  elif dataclasses.is_dataclass(tp):
    fs = dataclasses.fields(tp)
    if isinstance(v, list) and len(v) == len(fs): return tp(*[_decode(_hints(tp)[f.name], x) for f, x in zip(fs, v)])
  elif tp is float and isinstance(v, (int, float)) and not isinstance(v, bool): return float(v)
  raise ValueError(f"{v!r} is not a {tp}")
