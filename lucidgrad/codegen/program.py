"""The codegen pipeline: one kernel's AST and its opts -> a ProgramSpec (lower index -> symbolic -> opts -> expand ->
(threads) -> vectors -> control flow -> linearize -> render). Loaded on the first codegen of a process (codegen/__init__)."""
from __future__ import annotations
from lucidgrad.helpers import DEBUG, SPEC, SPLIT_RANGES, MATRIX_LOADS, PREFETCH_NEXT
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.uop.pattern import graph_rewrite, VIZ
from lucidgrad.dtype import dtypes
from lucidgrad.codegen import count_bytes, ProgramSpec, Opt, count_work
from lucidgrad.codegen.opt import Kernel, hand_coded_opts
from lucidgrad.codegen.opt.kernel import pm_kernel_simplify, pm_index_given_gate
from lucidgrad.codegen.opt.tensor_core import pm_fold_wmma, pair_matrix_loads
from lucidgrad.codegen.group import lower_group_reduces
from lucidgrad.codegen.expand import pm_expand_unroll, expand_upcast, ranges_to_threads, group_vectors
from lucidgrad.codegen.linearize import add_control_flow, linearize
from lucidgrad.codegen.transcendental import pm_transcendental
from lucidgrad.codegen.split import split_boxes, split_kernel

def get_program(ast: UOp, renderer, opts: list[Opt] | None = None) -> ProgramSpec:
  """The program for one kernel: with `opts` (applied in order), else with the heuristic's."""
  k = Kernel(ast, renderer)
  if opts is not None: return program_of(k.apply_opts(opts))
  # boxes of the output where every load gate is decided (docs/design/0016); GPU-style targets map output loops to
  # thread ids, one grid per program, so they keep the gates
  if SPLIT_RANGES and not renderer.has_local and len(boxes := split_boxes(k)) > 1 and \
     (split := split_kernel(k, boxes, lambda b, budget: hand_coded_opts(b, threads=False, budget=budget))) is not None:
    return program_of(split)
  return program_of(hand_coded_opts(k))

def program_of(k: Kernel) -> ProgramSpec:
  """Codegen after the opts: expand lanes, threads, vectors, control flow, linearize, render."""
  renderer, name, opts, idt = k.renderer, k.name, k.applied, k.idt
  if DEBUG >= 3: print(f"{name}: opts {opts}")
  # with VIZ the passes that are no graph_rewrite are recorded too, as their input and output (`shown`)
  shown = _shown if VIZ.value else lambda name, before, after: after
  if VIZ.value: _shown_opts(k)
  sink = graph_rewrite(k.sink, pm_kernel_simplify, name="simplify after opts")
  # before the lanes are copied: each copy is then plain arithmetic the vectorizer groups
  if not renderer.native_transcendentals: sink = graph_rewrite(sink, pm_transcendental, ctx=renderer, name="transcendentals")
  if renderer.has_local: sink = shown("group reduces", sink, lower_group_reduces(sink, renderer.global_max))
  sink = graph_rewrite(sink, pm_expand_unroll, ctx=renderer.has_local, name="expand unroll")
  sink = graph_rewrite(shown("expand upcast lanes", sink, expand_upcast(sink, renderer.vector_bytes, pm_kernel_simplify)), pm_kernel_simplify, name="expand upcast")
  if k.tc_tile is not None and k.tc_tile.staged and MATRIX_LOADS >= 2: sink = shown("pair matrix loads", sink, pair_matrix_loads(sink))
  gsize, lsize = [1], [1]
  if renderer.has_local:
    before = sink
    sink, gsize, lsize = ranges_to_threads(sink, renderer.global_max)
    shown("ranges to threads", before, sink)
  if renderer.vector_bytes:
    sink = shown("group vectors", sink, group_vectors(sink, renderer.vector_bytes, renderer.vector_alu, renderer.gated_vector_loads,
                                                      renderer.min_vector_bytes, renderer.strided_stores))  # and lanes doing one op -> one vector op
  # after the lanes are grouped into vectors (a lane's index folded alone would no longer be its neighbour's plus one)
  sink = graph_rewrite(sink, pm_index_given_gate, name="indices given their gates")
  sink = shown("control flow", sink, add_control_flow(sink, renderer.cache_bytes if renderer.prefetch and PREFETCH_NEXT else None))
  if sink.find(Ops.WMMA): sink = graph_rewrite(sink, pm_fold_wmma, name="accumulate in the tensor core")
  sink = graph_rewrite(sink, renderer.pre_render, name="pre render")  # after control flow: accumulator updates are ALU ops too
  if SPEC:
    from lucidgrad.uop.spec import check_kernel
    check_kernel(sink)
  uops = linearize(sink)
  shown("linearize", sink, UOp(Ops.SINK, dtypes.void, tuple(uops)))  # its output: the program's nodes in order, as one SINK's sources
  if DEBUG >= 5:
    for i, u in enumerate(uops): print(f"{i:4d} {u.op.name:14s} {str(u.dtype):22s} {[uops.index(s) for s in u.src if s in uops]} {u.arg if u.op is not Ops.CONST else u.arg}")
  src = renderer.render(name, uops)
  params = [u for u in uops if u.op is Ops.DEFINE_GLOBAL]
  return ProgramSpec(name, src, uops, gsize, lsize, count_work(k.unopted, idt), count_bytes(k.unopted, {p.arg[0] for p in params}), tuple(opts), k.threads,
                     tuple(sorted(p.arg[0] for p in params)), renderer.launch_local_bytes(uops),
                     tuple(sorted({u.arg[0] for u in uops if u.op is Ops.DEFINE_VAR})))

def _shown(name: str, before: UOp, after: UOp) -> UOp:
  """Records a pass that is no graph_rewrite (VIZ): its input and output graphs. Returns `after`."""
  from lucidgrad.viz.record import record_pass
  record_pass(name, before, after)
  return after

def _shown_opts(k: Kernel):
  """The opts as one pass (VIZ): the kernel as lowered, and as its opts left it, named by the opts in order."""
  from lucidgrad.viz.record import record_pass, opt_text
  record_pass(f"opts: {', '.join(opt_text(o) for o in k.applied) or 'none'}", k.unopted, k.sink)
