"""Codegen: one kernel's tensor graph -> an optimised linear program and its source text, in named passes:
lower index -> symbolic -> opts -> expand -> (threads) -> vectors -> control flow -> linearize -> render."""
from __future__ import annotations
from dataclasses import dataclass, field
from enum import Enum, auto
from lucidgrad.dtype import dtypes
from lucidgrad.helpers import prod
from lucidgrad.uop.ops import UOp, Ops, GroupOp

# What a program is and the opts it was built with live here, and the passes load on the first codegen: a process
# whose programs all come from the disk cache (docs/design/0007) never imports them (~20 ms of a warm start).
class OptOps(Enum):
  UPCAST = auto(); UNROLL = auto(); LOCAL = auto(); GROUP = auto(); GROUPTOP = auto(); THREAD = auto()
  PADTO = auto()  # grow the axis to a multiple of `amount`; the extra indices are guarded off
  SWAP = auto()   # exchange the nesting of two loops; `amount` names the other axis
  TILE = auto()   # split a reduce into blocks of `amount` and loop over the blocks outside the output loops
  STAGE = auto()  # copy what the loops inside axis `axis` read of input buffer `amount` into a scratch buffer, once per iteration
  ROW = auto()    # GPU-style: `amount` threads of a block share output loop `axis` and every reduce of its extent computed once per row
  TC = auto()     # reduce axis `axis` on the renderer's tensor core number `amount`: a warp's matrix multiply (docs/design/0024)
  PIPE = auto()   # after TC, before STAGE: the operands' tiles for reduce loop `axis` in `amount` buffers, each step's fill overlapping the last step's mma
  RASTER = auto() # GPU-style: `amount` neighbouring iterations of output loop `axis` become the fastest block id (blocks launched together share tiles in L2)
  MERGE = auto()  # before TC: axis `axis` joins axis `amount` as its slow part, one loop in `amount`'s place (a conv's window and channel loops as one reduce)

@dataclass(frozen=True)
class Opt:
  op: OptOps
  axis: int       # position in the kernel's axes when the opt is applied
  amount: int
  def __repr__(self): return f"Opt({self.op.name}, axis={self.axis}, amount={self.amount})"

class KernelOptError(ValueError): pass

@dataclass
class ProgramSpec:
  name: str
  src: str
  uops: list[UOp]
  global_size: list[int] = field(default_factory=lambda: [1])
  local_size: list[int] = field(default_factory=lambda: [1])
  flops: int = 0
  mem_bytes: int = 0
  opts: tuple[Opt, ...] = ()
  threads: int = 1        # CPU threads it runs on, each taking its share of the THREAD axis (`core` of `ncores`)
  slots: tuple[int, ...] = ()  # the params the program still reads or writes, in order; folding can drop inputs
  launch_local_bytes: int = 0  # local memory each launch must ask for (CUDA: past the 48 KiB a block declares statically)
  vars: tuple[str, ...] = ()   # the Variables it reads, by name: passed after the buffers, their values bound at launch (docs/design/0029)

def count_work(sink: UOp, idt=dtypes.index) -> int:
  """FLOPs of a kernel as written, before its opts: each value op (not index math, not a comparison) once per
  combination of the ranges it depends on; a REDUCE is one op per element it takes in. Opts change what runs --
  padding adds iterations whose results are never stored, hoisting runs an op fewer times, a fused multiply-add is
  one instruction -- but not the work, so GFLOP/s figures compare across opts and with other libraries."""
  ranges: dict[UOp, frozenset[UOp]] = {}
  flops = 0
  for u in sink.toposort:
    deps = frozenset((u,)) if u.op is Ops.RANGE else frozenset().union(*(ranges[s] for s in u.src))
    if (u.op in GroupOp.ALU or u.op is Ops.REDUCE) and u.dtype.name != idt.name and not u.dtype.is_bool():
      flops += prod(r.src[0].arg for r in deps) * u.dtype.count
    # a reduce's value is one per iteration of the loops outside it: what reads it runs once per those, not per its own
    ranges[u] = deps - frozenset(u.src[1:]) if u.op is Ops.REDUCE else deps
  return flops

def count_bytes(sink: UOp, kept: set[int] | None = None) -> int:
  """Bytes a kernel moves, as written: each buffer once, or less where its accesses cannot reach all of it -- an access
  touches at most one element per combination of the ranges its index depends on (a gather of 256 rows from a
  50257-row table moves 256 rows, not the table). `kept`: the params the program still has (folding can drop some)."""
  reach: dict[int, int] = {}
  params = {}
  for u in sink.toposort:
    if u.op is Ops.INDEX and u.src[0].op is Ops.DEFINE_GLOBAL and (kept is None or u.src[0].arg[0] in kept):
      p = params[u.src[0].arg[0]] = u.src[0]
      reach[p.arg[0]] = reach.get(p.arg[0], 0) + prod(r.src[0].arg for r in u.src[1].toposort if r.op is Ops.RANGE)
  return sum(min(p.arg[1], reach[i]) * p.dtype.itemsize for i, p in params.items())

def __getattr__(name: str):
  """get_program and program_of come from codegen/program.py, imported on first use with every pass it runs."""
  if name in ("get_program", "program_of"):
    from lucidgrad.codegen import program
    return getattr(program, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
