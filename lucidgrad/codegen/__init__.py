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

def count_work(uops: list[UOp], global_size: list[int], local_size: list[int], idt=dtypes.index) -> int:
  """FLOPs of one launch: each ALU op counted once per loop trip and per thread; index math (in `idt`) is not."""
  threads, mult, stack, flops = prod(global_size) * prod(local_size), 1, [], 0
  for u in uops:
    if u.op is Ops.RANGE: stack.append(mult); mult *= u.src[0].arg
    elif u.op is Ops.END: mult = stack.pop()
    elif u.op in GroupOp.ALU and u.dtype.name != idt.name and not u.dtype.is_bool():  # by name: scalar() builds a DType
      flops += mult * u.dtype.count * (2 if u.op is Ops.MULACC else 1)  # a multiply and an add, as before fusing
  return flops * threads

def __getattr__(name: str):
  """get_program and program_of come from codegen/program.py, imported on first use with every pass it runs."""
  if name in ("get_program", "program_of"):
    from lucidgrad.codegen import program
    return getattr(program, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
