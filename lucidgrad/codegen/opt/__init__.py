"""Kernel optimisations as data: an `Opt` splits one RANGE of a kernel and gives the inner part a new kind.
UPCAST (an output axis) and UNROLL (a reduce axis) are expanded into straight-line code; LOCAL becomes a thread id on
GPU-style targets. `hand_coded_opts` picks a few by simple rules."""
from __future__ import annotations
from dataclasses import dataclass
from enum import Enum, auto
from lucidgrad.helpers import NOOPT, DEBUG, prod
from lucidgrad.uop.ops import UOp, Ops, AxisType, GroupOp
from lucidgrad.uop.pattern import UPat, PatternMatcher, graph_rewrite
from lucidgrad.codegen.lower import index_range

class OptOps(Enum):
  UPCAST = auto(); UNROLL = auto(); LOCAL = auto()
  SWAP = auto()   # exchange the nesting of two loops; `amount` names the other axis

@dataclass(frozen=True)
class Opt:
  op: OptOps
  axis: int       # position in kernel_ranges(sink)
  amount: int
  def __repr__(self): return f"Opt({self.op.name}, axis={self.axis}, amount={self.amount})"

class KernelOptError(ValueError): pass

def kernel_ranges(sink: UOp) -> list[UOp]:
  """The kernel's RANGEs, outermost first."""
  return sorted((u for u in sink.toposort if u.op is Ops.RANGE), key=lambda r: r.arg[0])

_KIND = {OptOps.UPCAST: (AxisType.LOOP, AxisType.UPCAST), OptOps.UNROLL: (AxisType.REDUCE, AxisType.UNROLL),
         OptOps.LOCAL: (AxisType.LOOP, AxisType.LOCAL)}

def apply_opts(sink: UOp, opts: list[Opt]) -> UOp:
  """Split each named range (size N) into an outer range of N/amount and an inner one of the opt's kind. Axes name
  positions in the kernel's ranges before any opt, so the order of `opts` does not matter."""
  rngs = kernel_ranges(sink)
  for opt in [o for o in opts if o.op is OptOps.SWAP]:
    if not (0 <= opt.axis < len(rngs) and 0 <= opt.amount < len(rngs)): raise KernelOptError(f"{opt}: the kernel has {len(rngs)} ranges")
    a, b = rngs[opt.axis], rngs[opt.amount]
    if a.arg[1] is not AxisType.LOOP or b.arg[1] is not AxisType.LOOP: raise KernelOptError(f"{opt}: only LOOP ranges swap")
    na, nb = index_range(a.src[0].arg, AxisType.LOOP, b.arg[0], a.dtype), index_range(b.src[0].arg, AxisType.LOOP, a.arg[0], b.dtype)
    sink = sink.substitute({a: na, b: nb})
    rngs[opt.axis], rngs[opt.amount] = na, nb
  for opt in [o for o in opts if o.op is not OptOps.SWAP]:
    if not 0 <= opt.axis < len(rngs): raise KernelOptError(f"{opt}: the kernel has {len(rngs)} ranges")
    if sum(o.axis == opt.axis for o in opts if o.op is not OptOps.SWAP) > 1: raise KernelOptError(f"{opt}: axis {opt.axis} is named twice")
    r = rngs[opt.axis]
    need, inner_kind = _KIND[opt.op]
    end = r.src[0].arg
    if r.arg[1] is not need: raise KernelOptError(f"{opt}: range {opt.axis} is {r.arg[1].name}, not {need.name}")
    if opt.amount <= 1 or end % opt.amount: raise KernelOptError(f"{opt}: {end} is not divisible by {opt.amount}")
    outer = index_range(end // opt.amount, need, r.arg[0] + (0,), r.dtype)
    inner = index_range(opt.amount, inner_kind, r.arg[0] + (1,), r.dtype)
    sink = graph_rewrite(sink, pm_split_range, (r, outer, inner), top_down=True, name=f"apply {opt}")
  return sink

def _split_in_reduce(ctx, red: UOp) -> UOp | None:
  r, outer, inner = ctx
  if r not in red.src[1:]: return None
  return red.replace(src=(red.src[0], *[x for s in red.src[1:] for x in ((outer, inner) if s is r else (s,))]))

# a split range is replaced by outer*amount+inner where it is used as a value, and by the pair where a REDUCE loops over it
pm_split_range = PatternMatcher([
  (UPat(Ops.REDUCE, name="red"), _split_in_reduce),
  (UPat(Ops.RANGE, name="x"), lambda ctx, x: ctx[1] * ctx[2].src[0].arg + ctx[2] if x is ctx[0] else None),
])

def _stride_of(idx: UOp, r: UOp) -> int | None:
  """The coefficient of range r in an index that is a sum of range*const terms; None if r appears otherwise."""
  from lucidgrad.uop.symbolic import _terms
  terms, _ = _terms(idx)
  for t, k in terms.items():
    if t is r: return k
    if r in t.toposort: return None
  return 0

# Each upcast or unrolled lane is its own copy of the kernel's value math in the source, and the C compiler's time
# grows faster than the source: lanes x value ops stays within this (a 128-lane matmul with a tanh backward behind it
# was 330 KB of C and 10 s of gcc; 2048 ops is ~80 KB, well under a second). docs/design/0008-kernel-cost-model.md
LANE_OPS_BUDGET = 2048

def value_ops(sink: UOp) -> int:
  """ALU ops on loaded values, the work every lane repeats (index math never reads a loaded value, and folds)."""
  on_values: set[UOp] = set()
  for u in sink.toposort:
    if u.op in (Ops.LOAD, Ops.REDUCE) or any(s in on_values for s in u.src): on_values.add(u)
  return sum(1 for u in on_values if u.op in GroupOp.ALU)

def within_lane_budget(sink: UOp, opts: list[Opt]) -> list[Opt]:
  """`opts` with the last-chosen upcasts and unrolls halved (dropped at 1) until lanes x value ops fits the budget."""
  ops, chosen, opts = value_ops(sink), opts, list(opts)
  def lanes(): return prod(o.amount for o in opts if o.op in (OptOps.UPCAST, OptOps.UNROLL))
  while lanes() > 1 and lanes() * ops > LANE_OPS_BUDGET:
    i = max(i for i, o in enumerate(opts) if o.op in (OptOps.UPCAST, OptOps.UNROLL))
    half = opts[i].amount // 2  # still divides the axis when it divides the amount
    opts[i:i + 1] = [Opt(opts[i].op, opts[i].axis, half)] if half > 1 and opts[i].amount % half == 0 else []
  if DEBUG >= 3 and opts != chosen: print(f"opts {chosen} -> {opts}: {lanes()} lanes x {ops} value ops within {LANE_OPS_BUDGET}")
  return opts

def hand_coded_opts(sink: UOp, renderer) -> list[Opt]:
  """Matmul-like kernels (some input does not move along an output axis, so a loaded value serves many outputs)
  upcast two output axes into a block of vector accumulators; other reduces unroll the reduce axis that loads walk
  contiguously, into a vector accumulator; elementwise kernels upcast the output axis that is contiguous in memory."""
  if NOOPT: return []
  rngs = kernel_ranges(sink)
  sizes = [r.src[0].arg for r in rngs]
  loads = [u.src[0] for u in sink.toposort if u.op is Ops.LOAD]
  stores = [u for u in sink.toposort if u.op is Ops.STORE]
  loop_axes = [i for i, r in enumerate(rngs) if r.arg[1] is AxisType.LOOP]
  reduce_axes = [i for i, r in enumerate(rngs) if r.arg[1] is AxisType.REDUCE]
  width = renderer.upcast_width
  out_idx = stores[0].src[0].src[1] if stores else None
  # matmul-likeness is judged on the loads inside the reduce: a bias added after it (stride 0 along the batch) reuses nothing
  red_rngs = {rngs[i] for i in reduce_axes}
  in_reduce = [l for l in loads if any(r in red_rngs for r in l.src[1].toposort)] or loads
  def strides(i): return [_stride_of(l.src[1], rngs[i]) for l in in_reduce]
  contig_out = [i for i in loop_axes if out_idx is not None and _stride_of(out_idx, rngs[i]) == 1]
  opts: list[Opt] = []
  if reduce_axes:
    reuse = [i for i in loop_axes if 0 in strides(i) and any(s != 0 for s in strides(i))]
    if reuse:
      # the first block axis: the contiguous output axis if its size splits well (a vector store), else the innermost
      # reuse axis that does (a conv's output channels when its width is 14)
      def split(i, amounts): return next((a for a in amounts if sizes[i] % a == 0), None)
      blocks = [(i, split(i, (2 * width, width, 4))) for i in contig_out if i in reuse] + [(i, split(i, (width, 4))) for i in reversed(reuse)]
      first, amount = next(((i, a) for i, a in blocks if a), (reuse[-1], None))
      if amount: opts.append(Opt(OptOps.UPCAST, first, amount))
      second = next((i for i in reversed(reuse) if i != first), None)
      if second is not None and (amount2 := next((a for a in (width, 4, 2) if sizes[second] % a == 0), None)):
        opts.append(Opt(OptOps.UPCAST, second, amount2))
        # when the input that stays still along `second` is far larger than the caches, loop `second` innermost so
        # each panel of that input is read from cache by every block of `second` (measured: 2x at 2048^3)
        still = [l for l in loads if _stride_of(l.src[1], rngs[second]) == 0]
        if second < first and still and max(l.src[0].arg[1] * l.src[0].dtype.itemsize for l in still) > (8 << 20):
          opts.append(Opt(OptOps.SWAP, second, first))
    else:
      red = next((i for i in reversed(reduce_axes) if 1 in strides(i)), reduce_axes[-1])
      if (amount := next((a for a in (width, 4) if sizes[red] % a == 0), None)): opts.append(Opt(OptOps.UNROLL, red, amount))
  elif contig_out:
    if (amount := next((a for a in (width, 4) if sizes[contig_out[0]] % a == 0), None)): opts.append(Opt(OptOps.UPCAST, contig_out[0], amount))
  opts = within_lane_budget(sink, opts)
  if renderer.has_threads:  # GPU-style: a block of 4 threads along a loop axis no other opt split
    used = {o.axis for o in opts} | {o.amount for o in opts if o.op is OptOps.SWAP}
    if (ax := next((i for i in reversed(loop_axes) if i not in used and sizes[i] % 4 == 0 and sizes[i] > 4), None)) is not None:
      opts.append(Opt(OptOps.LOCAL, ax, 4))
  if DEBUG >= 4: print(f"opts: {opts}")
  return opts
