"""Codegen: one kernel's tensor graph -> an optimised linear program and its source text, in named passes:
lower index -> symbolic -> opts -> expand -> (threads) -> vectors -> control flow -> linearize -> render."""
from __future__ import annotations
from dataclasses import dataclass, field
from lucidgrad.dtype import dtypes
from lucidgrad.helpers import DEBUG, SPEC, prod
from lucidgrad.uop.ops import UOp, Ops, GroupOp
from lucidgrad.uop.pattern import graph_rewrite
from lucidgrad.codegen.opt import Opt, Kernel, hand_coded_opts
from lucidgrad.codegen.opt.kernel import pm_kernel_simplify
from lucidgrad.codegen.group import lower_group_reduces
from lucidgrad.codegen.expand import pm_expand_unroll, expand_upcast, ranges_to_threads, group_vectors
from lucidgrad.codegen.linearize import add_control_flow, linearize

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
    elif u.op in GroupOp.ALU and u.dtype.name != idt.name and not u.dtype.is_bool(): flops += mult * u.dtype.count  # by name: scalar() builds a DType
  return flops * threads

def get_program(ast: UOp, renderer, opts: list[Opt] | None = None) -> ProgramSpec:
  """The program for one kernel: with `opts` (applied in order), else with the heuristic's."""
  k = Kernel(ast, renderer)
  return program_of(hand_coded_opts(k) if opts is None else k.apply_opts(opts))

def program_of(k: Kernel) -> ProgramSpec:
  """Codegen after the opts: expand lanes, threads, vectors, control flow, linearize, render."""
  renderer, name, opts, idt = k.renderer, k.name, k.applied, k.idt
  if DEBUG >= 3: print(f"{name}: opts {opts}")
  sink = graph_rewrite(k.sink, pm_kernel_simplify, name="simplify after opts")
  sink = lower_group_reduces(sink)
  sink = graph_rewrite(sink, pm_expand_unroll, name="expand unroll")
  sink = graph_rewrite(expand_upcast(sink, renderer.vector_bytes), pm_kernel_simplify, name="expand upcast")
  gsize, lsize = [1], [1]
  if renderer.has_local: sink, gsize, lsize = ranges_to_threads(sink)
  if renderer.vector_bytes:
    sink = group_vectors(sink, renderer.vector_bytes, renderer.vector_alu)  # and lanes doing one op -> one vector op
  sink = add_control_flow(sink)
  sink = graph_rewrite(sink, renderer.pre_render, name="pre render")  # after control flow: accumulator updates are ALU ops too
  if SPEC:
    from lucidgrad.uop.spec import check_kernel
    check_kernel(sink)
  uops = linearize(sink)
  if DEBUG >= 5:
    for i, u in enumerate(uops): print(f"{i:4d} {u.op.name:14s} {str(u.dtype):22s} {[uops.index(s) for s in u.src if s in uops]} {u.arg if u.op is not Ops.CONST else u.arg}")
  src = renderer.render(name, uops)
  params = [u for u in uops if u.op is Ops.DEFINE_GLOBAL]
  mem = sum(p.arg[1] * p.dtype.itemsize for p in params)
  return ProgramSpec(name, src, uops, gsize, lsize, count_work(uops, gsize, lsize, idt), mem, tuple(opts), k.threads,
                     tuple(sorted(p.arg[0] for p in params)))
