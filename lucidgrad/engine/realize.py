"""Runs a schedule: each kernel is compiled once per process (and once per machine, through the disk cache), then
launched on its buffers; copies move bytes between devices. Prints what ran under DEBUG."""
from __future__ import annotations
import os, time
from dataclasses import dataclass
from lucidgrad.helpers import DEBUG, BEAM, GlobalCounters, fmt_time, colored
from lucidgrad.device import Device, Buffer, buffer_of
from lucidgrad.uop.ops import UOp
from lucidgrad.schedule import ScheduleItem

@dataclass
class CompiledRunner:
  device: str
  spec: object
  program: object
  def __call__(self, bufs: list[Buffer]) -> float:
    return self.program(*[bufs[i].raw for i in self.spec.slots], global_size=self.spec.global_size, local_size=self.spec.local_size)

_runners: dict[tuple, CompiledRunner] = {}
# flags that only print, show or pick the thread count at run time; any other flag (NOOPT, BEAM, SPEC, ...) may change
# or check the program codegen builds, so it is part of the key -- a flag added later is in it unless named here
_NOT_CODEGEN_FLAGS = frozenset({"DEBUG", "VIZ", "DISABLE_COMPILER_CACHE"})

# the ASTs of recently run kernels, held so they stay interned: a schedule that builds the same kernel again gets the same
# node, found here by identity without hashing its graph (a node is equal only to itself, so the key is complete)
_recent: dict[tuple, CompiledRunner] = {}
RECENT_ASTS = 1024

def get_runner(device: str, ast: UOp) -> CompiledRunner:
  """The compiled program for `ast` on `device` under the current codegen flags, built at most once per process."""
  from lucidgrad.helpers import ContextVar
  flags = tuple((k, v.value) for k, v in sorted(ContextVar.registry.items()) if k not in _NOT_CODEGEN_FLAGS)
  if (r := _recent.get((device, ast, flags))) is not None: return r
  key = (device, ast.key, flags)
  if (r := _runners.get(key)) is None:
    from lucidgrad.codegen import get_program
    dev = Device[device]
    st = time.perf_counter()
    if DEBUG >= 3: print(ast)
    opts = None
    if BEAM >= 1 and dev.renderer.device != "PYTHON":  # the interpreter's times say nothing about a real target
      from lucidgrad.codegen.opt.search import beam_search
      opts = beam_search(ast, device, int(BEAM))
    spec = get_program(ast, dev.renderer, opts)
    if DEBUG >= 4: print(spec.src)
    if os.environ.get("REPLAY_RECORD"):
      from lucidgrad.tools.replay import save
      save(device, ast, spec)
    lib = dev.compiler.compile_cached(spec.src)
    r = _runners[key] = CompiledRunner(device, spec, dev.program_cls(spec.name, lib, spec=spec))
    if DEBUG >= 3: print(f"codegen+compile {spec.name} in {(time.perf_counter()-st)*1e3:.1f} ms, opts {list(spec.opts)}")
  _recent[(device, ast, flags)] = r
  if len(_recent) > RECENT_ASTS: del _recent[next(iter(_recent))]
  return r

def run_copy(dest: Buffer, src: Buffer) -> float:
  st = time.perf_counter()
  dest.copyin(src.numpy().view("uint8") if src.nbytes else b"")
  return time.perf_counter() - st

def run_schedule(items: list[ScheduleItem]):
  from lucidgrad.engine.jit import record
  for it in items:
    bufs = [buffer_of(b) for b in it.bufs]
    if it.kind == "copy":
      run, name, flops, mem = (lambda bs: run_copy(bs[0], bs[1])), f"copy {bufs[1].device} -> {bufs[0].device}", 0, bufs[0].nbytes
    else:
      runner = get_runner(bufs[0].device, it.ast)
      run, name, flops, mem = runner, runner.spec.name, runner.spec.flops, runner.spec.mem_bytes
      GlobalCounters.kernel_count += 1
    et = run(bufs)
    record(run, bufs, name)
    GlobalCounters.global_ops += flops
    GlobalCounters.global_mem += mem
    GlobalCounters.time_sum_s += et
    if DEBUG >= 2:
      print(f"{colored(f'*** {bufs[0].device:6s} {GlobalCounters.kernel_count:4d}', 'green')} {name:32s} "
            f"{fmt_time(et)}  {flops/max(et,1e-9)/1e9:8.2f} GFLOP/s  {mem/max(et,1e-9)/1e9:8.2f} GB/s")
    elif DEBUG >= 1: print(f"*** {bufs[0].device} {name}")
  if DEBUG >= 1 and items:
    print(f"ran {len(items)} items: {GlobalCounters.kernel_count} kernels so far, {fmt_time(GlobalCounters.time_sum_s).strip()} kernel time, "
          f"{GlobalCounters.compiles} compiled")
