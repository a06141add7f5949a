"""The Kernel object: one kernel's lowered graph and the opts applied to it so far. Opts are applied one at a time; each
splits one range (an axis) into an outer and an inner part and gives one part a new kind. An opt names an axis of the
kernel as it is now: the outer part keeps the position, the new part comes right after it (docs/design/0006)."""
from __future__ import annotations
from dataclasses import replace
import itertools
from lucidgrad.dtype import dtypes
from lucidgrad.helpers import prod, THREADS
from lucidgrad.uop.ops import UOp, Ops, AxisType, _VAR_BIT
from lucidgrad.uop.pattern import UPat, PatternMatcher, graph_rewrite
from lucidgrad.uop.symbolic import symbolic, _terms, _n_ops
from lucidgrad.codegen.lower import lower_kernel, index_dtype, index_range, serial_ranges
from lucidgrad.codegen import OptOps, Opt, KernelOptError
from lucidgrad.codegen.opt.tensor_core import tc_plan, apply_tc, has_tc, stage_plan_tc, stage_tc
from lucidgrad.codegen.group import two_rounds


def kernel_ranges(sink: UOp) -> list[UOp]:
  """The kernel's RANGEs, outermost first (a staging copy's loops are not axes)."""
  return sorted((u for u in sink.toposort if u.op is Ops.RANGE and u.arg[1] is not AxisType.COPY), key=lambda r: r.arg[0])

def _drop_folded_ranges(red: UOp) -> UOp | None:
  """A reduce range folded to a constant (size 1) no longer loops; a reduce with no loops left is its value; a reduce
  over an empty range is its identity."""
  for r in red.src[1:]:  # the usual answer first, without building anything: every reduce of every rewrite asks
    if r.op is not Ops.RANGE or r.src[0].arg == 0: break
  else: return None
  if any(r.op is Ops.RANGE and r.src[0].arg == 0 for r in red.src[1:]):
    from lucidgrad.codegen.linearize import identity_element
    return UOp.const(red.dtype, identity_element(red.arg, red.dtype))
  loops = tuple(r for r in red.src[1:] if r.op is Ops.RANGE)
  # a reduce split whole over a group's threads loops no more, but still combines the threads' values (codegen/group.py)
  grouped = any(u.op is Ops.RANGE and u.arg[1] is AxisType.GROUP for u in red.src[0].toposort)
  return red.replace(src=(red.src[0], *loops)) if loops or grouped else red.src[0]

def conjuncts(b: UOp) -> set[UOp]:
  """The terms of a chain of boolean ANDs."""
  return conjuncts(b.src[0]) | conjuncts(b.src[1]) if b.op is Ops.AND and b.dtype.is_bool() else {b}

def _select_of_gated_load(g: UOp, ld: UOp, z: UOp) -> UOp | None:
  """`g ? load : 0` is the load when the load is gated by g (and maybe more): a gated-off load reads 0. A padded input
  lowers to this, and without the select each lane of an upcast stays a plain lane of one vector load."""
  if z.arg != 0 or str(z.arg).startswith("-") or not conjuncts(g) <= conjuncts(ld.src[0].src[2]): return None
  return ld

def _never_stored(st: UOp) -> bool: return st.op is Ops.STORE and (g := st.src[0].src[2]).op is Ops.CONST and not g.arg

GIVEN_RID = 1 << 22  # ids of the stand-in ranges index_given_gate narrows a range to (never sorted with kernel axes)

def _gate_clauses(valid: UOp) -> list[UOp]:
  out, stack = [], [valid]
  while stack:
    if (g := stack.pop()).op is Ops.AND and g.dtype == dtypes.bool: stack.extend(g.src)
    else: out.append(g)
  return out

def _range_bound(g: UOp) -> tuple[UOp, int, int] | None:
  """(range, lo, hi) a clause `r < c` or `not (r < c)` holds the range to, else None."""
  neg = g.op is Ops.XOR and g.src[1].op is Ops.CONST and g.src[1].arg is True
  if neg: g = g.src[0]
  if g.op is not Ops.CMPLT or g.src[0].op not in (Ops.RANGE, Ops.SPECIAL) or g.src[1].op is not Ops.CONST: return None
  r, c = g.src[0], g.src[1].arg
  return (r, c, r.vmax) if neg else (r, r.vmin, c - 1)

def index_given_gate(x: UOp) -> UOp | None:
  """A gated read's or write's index (and its gate's other clauses) simplified for the values its gate lets through:
  each range the gate bounds (`r >= 1`: a padded border) stands for a range of just those values while the symbolic
  rules run, and is put back after. A padded window read `((y-1)*112 + x-1) / 12544 % 64` (a max pool's gradient) then
  folds to the channel, which with y = 0 it could not: the flat index is negative there. The index is only used
  where the gate holds, so the simpler expression is as right there."""
  if len(x.src) != 3 or (valid := x.src[2]).op is Ops.CONST: return None
  clauses, bounds = _gate_clauses(valid), {}
  ranged = [_range_bound(g) for g in clauses]
  for r, lo, hi in filter(None, ranged):
    old = bounds.get(r, (r.vmin, r.vmax))
    bounds[r] = (max(old[0], lo), min(old[1], hi))
  bounds = {r: b for r, b in bounds.items() if b != (r.vmin, r.vmax) and b[0] <= b[1]}
  if not bounds: return None
  there, back = {}, {}
  for i, (r, (lo, hi)) in enumerate(bounds.items()):
    stand_in = index_range(hi - lo + 1, AxisType.LOOP, (GIVEN_RID, i), r.dtype)
    there[r], back[stand_in] = (stand_in + lo if lo else stand_in), (r - lo if lo else r)
  def given(u: UOp) -> UOp:
    # index arithmetic only: a load inside (a gather's index) runs whatever the gate says, so its own gated index must
    # keep the values the gate here lets through out of it
    if any(v.op in (Ops.LOAD, Ops.INDEX) for v in u.toposort): return u
    new = graph_rewrite(u.substitute(there), symbolic, name="index given its gate").substitute(back)
    return new if _n_ops(new) < _n_ops(u) else u
  idx = given(x.src[1])
  rest = [g if b is not None else given(g) for g, b in zip(clauses, ranged)]
  if idx is x.src[1] and all(a is b for a, b in zip(rest, clauses)): return None
  if any(g.op is Ops.CONST and not g.arg for g in rest): return x.replace(src=(x.src[0], idx, valid.const_like(False)))
  rest = [g for g in rest if g.op is not Ops.CONST] or [valid.const_like(True)]
  gate = rest[0]
  for g in rest[1:]: gate = gate.alu(Ops.AND, g)
  return x.replace(src=(x.src[0], idx, gate))

pm_index_given_gate = PatternMatcher([(UPat(Ops.INDEX, name="x"), index_given_gate)])

pm_kernel_simplify = symbolic + PatternMatcher([
  (UPat(Ops.RANGE, name="r"), lambda r: UOp.const(r.dtype, 0) if r.src[0].arg == 1 else None),
  (UPat(Ops.REDUCE, name="red"), _drop_folded_ranges),
  (UPat(Ops.WHERE, src=(UPat.var("g"), UPat(Ops.LOAD, src=(UPat(Ops.INDEX),), name="ld", allow_any_len=True), UPat.cvar("z"))), _select_of_gated_load),
  # a load whose gate folded to false (an upcast lane past a border) reads nothing: it is the 0 a gated-off load reads
  (UPat(Ops.LOAD, src=(UPat(Ops.INDEX, src=(UPat(), UPat(), UPat.cvar("g"))),), name="ld", allow_any_len=True),
   lambda ld, g: None if g.arg else UOp.const(ld.dtype, 0)),
  # a store whose guard folded to false (an upcast lane of a padded axis) writes nothing
  (UPat(Ops.SINK, name="s"), lambda s: s.replace(src=tuple(x for x in s.src if not _never_stored(x))) if any(map(_never_stored, s.src)) else None),
])

def rounds(groups: list[int]) -> int:
  """Arrays of partials a kernel's group reduces take: two where a group of that size combines in two rounds. (A group
  in a loop every thread runs takes two rounds too; the checks' 8 bytes a slot cover that for 4-byte values.)"""
  return 2 if any(two_rounds(n) for n in groups) else 1

def max_lanes(renderer) -> int: return MAX_LANES * max(1, renderer.upcast_width // 8)

def lanes_of(sink: UOp, lane: dict[UOp, int]) -> int:
  """Copies expansion makes of the most-copied op of `sink` when each range in `lane` becomes that many lanes: the
  product over the lane ranges an op depends on (a reduce's value no longer depends on its own ranges)."""
  if not lane: return 1
  deps: dict[UOp, frozenset[UOp]] = {}
  most = 1
  for u in sink.toposort:
    d = frozenset((u,)) if u in lane else frozenset().union(*(deps[s] for s in u.src))
    most = max(most, prod(lane[r] for r in d))
    deps[u] = d - frozenset(u.src[1:]) if u.op is Ops.REDUCE else d
  return most

def kernel_name(sink: UOp) -> str:
  rngs = kernel_ranges(sink)
  kind = "r" if any(r.arg[1] in (AxisType.REDUCE, AxisType.UNROLL) for r in rngs) else "E"
  return f"{kind}_" + "_".join(str(r.src[0].arg) for r in rngs) if rngs else f"{kind}_1"

# the kind an opt splits and the kind of the part it makes; `outer` opts give the new kind to the outer part
_SPLIT = {OptOps.UPCAST: (AxisType.LOOP, AxisType.UPCAST), OptOps.UNROLL: (AxisType.REDUCE, AxisType.UNROLL),
          OptOps.LOCAL: (AxisType.LOOP, AxisType.LOCAL), OptOps.GROUP: (AxisType.REDUCE, AxisType.GROUP),
          OptOps.GROUPTOP: (AxisType.REDUCE, AxisType.GROUP)}
_NEW_PART_OUTER = {OptOps.GROUPTOP}  # the group's threads each take one contiguous chunk of the reduce
_SWAPS = (AxisType.LOOP, AxisType.TILE)  # kinds whose loops may nest in any order
_SHAPING = (OptOps.PADTO, OptOps.MERGE, OptOps.SWAP)  # opts that keep every axis whole: MERGE and TC may follow them

SPLIT_AMOUNTS = (2, 3, 4, 5, 6, 7, 8, 16)
THREAD_AMOUNTS = (2, 4, 8, 16)
# every split amount, so any register block is reachable on an axis it does not divide (6 rows of 1024: 12 AVX2
# accumulators for a 6x16 block, the most that leave registers for the operands)
PAD_AMOUNTS = (*SPLIT_AMOUNTS, 32)
TILE_AMOUNTS = (8, 16, 32, 64, 128, 256)
RASTER_AMOUNTS = (4, 8, 16)
RASTER_RID = 1 << 18  # the id of a rastered axis' inner part: after every output loop's (kernel axes count from 0)
MAX_LANES = 256                 # copies of the body UPCAST and UNROLL may make, per 8 lanes of the target's vectors
MAX_EXPANDED_NODES = 1 << 17    # lowered nodes times lanes: bounds the source (and the C compiler's time) an expansion makes

def merge_equal_reduces(sink: UOp) -> UOp:
  """One REDUCE for reduces that compute the same value over ranges of their own: a value read at two places that
  became one index once size-1 ranges folded (a softmax over a 1-long axis of a norm: its max and its numerator each
  summed the norm, one unrolled and one looped, and exp(v - max(v)) was 0.99988, not 1; fuzz seed 52538). Computed
  once, it rounds once."""
  def canon(red: UOp, order) -> UOp:
    # the reduce with its own ranges, taken in `order`, renamed by position; simplified again, as the order of a sum's
    # terms follows the ranges' ids (r0*3 + r1 against r1 + r0*3)
    return graph_rewrite(red.substitute({r: r.replace(arg=(("same", i), r.arg[1])) for i, r in enumerate(order)}), symbolic, name="canonical reduce")
  def shape(red: UOp) -> tuple: return (red.arg, red.dtype, tuple(sorted(r.src[0].arg for r in red.src[1:])))
  while True:
    reds = [u for u in sink.toposort if u.op is Ops.REDUCE]
    alike = [r for r in reds if sum(shape(r) == shape(x) for x in reds) > 1]  # most kernels: none, and no rewrite
    seen: dict[UOp, UOp] = {}
    for red in alike:
      # the same sum may list its ranges in another order: every order is tried (at most 4 ranges)
      forms = [canon(red, o) for o in (itertools.permutations(red.src[1:]) if len(red.src) <= 5 else [red.src[1:]])]
      if (first := next((seen[c] for c in forms if c in seen), None)) is not None: break
      seen[forms[0]] = red  # permutations() yields the ranges' own order first
    else: return sink
    sink = sink.substitute({red: first})

def end_masked_reduces(sink: UOp) -> UOp:
  """A reduce over a symbolic axis in max form reads `where(r < L, x, identity)`, L an expression of Variables
  (schedule/symbolic.py, docs/design/0029): its RANGE gets L as a second source, the bound its loop may stop at. The
  RANGE keeps its int size (sources[0]) for every opt, and the mask stays, so a pass or opt that rebuilds the range
  (a split, an unroll) drops the bound and loses only the shortcut, never a value; where the range reaches the
  renderer as it is, the loop runs to L."""
  swap: dict[UOp, UOp] = {}
  for red in sink.toposort:
    if red.op is not Ops.REDUCE or (w := red.src[0]).op is not Ops.WHERE or (c := w.src[0]).op is not Ops.CMPLT: continue
    r, bound = c.src
    if r.op is not Ops.RANGE or r not in red.src[1:] or len(r.src) != 1 or r in swap: continue
    if not bound.ops_below & _VAR_BIT or any(u.op not in _BOUND_OPS for u in bound.toposort) or bound.vmax > r.src[0].arg: continue
    swap[r] = r.replace(src=(r.src[0], bound.cast(r.dtype) if bound.dtype != r.dtype else bound))
  return sink.substitute(swap) if swap else sink
_BOUND_OPS = frozenset({Ops.DEFINE_VAR, Ops.CONST, Ops.ADD, Ops.SUB, Ops.MUL, Ops.CAST})

class Kernel:
  """A kernel lowered to ranges and index math, and the opts applied to it so far."""
  def __init__(self, ast: UOp, renderer):
    self.ast, self.renderer = ast, renderer
    self.idt = index_dtype(ast)
    self.sink = end_masked_reduces(merge_equal_reduces(graph_rewrite(lower_kernel(ast, self.idt), pm_kernel_simplify, name="simplify")))
    self.unopted = self.sink  # what the kernel computes, whatever opts do to how: its FLOPs are counted here
    self.name = kernel_name(self.sink)
    self.applied: list[Opt] = []
    self.threads = 1   # CPU threads the THREAD axis is split over
    self.tc_tile = None  # after OptOps.TC: the operands and where the fragments sit (tensor_core.TCTile), for STAGE
    self._axes: list[UOp] | None = None

  def copy(self) -> Kernel:
    k = object.__new__(Kernel)
    k.__dict__.update(self.__dict__, applied=list(self.applied))
    return k

  @property
  def axes(self) -> list[UOp]:
    """The kernel's ranges, outermost first; `axes[i].arg[1]` is axis i's kind."""
    if self._axes is None: self._axes = kernel_ranges(self.sink)
    return self._axes
  def kinds(self) -> list[AxisType]: return [r.arg[1] for r in self.axes]
  def sizes(self) -> list[int]: return [r.src[0].arg for r in self.axes]

  def _set(self, sink: UOp):
    self.sink, self._axes = sink, None

  def lanes(self, split: tuple[UOp, int] | None = None) -> int:
    """Copies expansion makes of the most-copied op: the product of the UPCAST and UNROLL axes it depends on (a
    reduce's value no longer depends on its own axes: a max and a sum over two unrolled axes each copy 8 ways, not 64).
    `split`: (axis range, amount) counts that range as a lane axis of that many lanes too (the opt being checked)."""
    lane = {r: r.src[0].arg for r in self.axes if r.arg[1] in (AxisType.UPCAST, AxisType.UNROLL)}
    if split is not None: lane[split[0]] = lane.get(split[0], 1) * split[1]
    return lanes_of(self.sink, lane)

  def check(self, opt: Opt) -> None:
    """Raise KernelOptError if this kernel or its renderer cannot take `opt` now; touches nothing."""
    axes, ren = self.axes, self.renderer
    def need(ok, why):
      if not ok: raise KernelOptError(f"{opt} on {self.name}: {why}")
    need(0 <= opt.axis < len(axes), f"the kernel has {len(axes)} axes")
    r = axes[opt.axis]
    kind, end = r.arg[1], r.src[0].arg
    # a scatter's loop over its scattered axis writes addresses that may repeat: it runs in order (docs/design/0017)
    need(opt.op not in (OptOps.THREAD, OptOps.UPCAST, OptOps.LOCAL) or r not in serial_ranges(self.sink),
         f"axis {opt.axis} is a scatter's serial loop: its iterations may write one address")
    # a block's staging copy is split over the threads and slots that exist when it is made: a later thread range
    # (LOCAL, GROUP), lane or padding would leave slots unfilled or filled twice with different values
    need(not (ren.has_local and opt.op is not OptOps.STAGE and staged_copies(self.sink)),
         "staging comes last on a GPU-style target: the block's copy is shared out among the threads it was made for")
    # a tensor core's lanes hold different elements of each operand: a group's partials or a tile would mix them
    need(not (opt.op in (OptOps.GROUP, OptOps.GROUPTOP, OptOps.ROW, OptOps.TILE) or (opt.op is OptOps.PADTO and kind is AxisType.REDUCE))
         or not has_tc(self.sink), f"the kernel runs on a tensor core: no {opt.op.name}{' of a reduce' if opt.op is OptOps.PADTO else ''} after TC")
    if opt.op is OptOps.TC:
      need(0 <= opt.amount < len(ren.tensor_cores), f"{type(ren).__name__} has {len(ren.tensor_cores)} tensor cores")
      need(kind is AxisType.REDUCE, f"axis {opt.axis} is {kind.name}, not REDUCE")
      # the lanes must be the block's fastest thread id, and every other split keeps m, n and k whole
      need(all(o.op in _SHAPING for o in self.applied) and not has_tc(self.sink), "TC comes first (after padding, merging and swapping)")
      need(not isinstance(plan := tc_plan(self.sink, r, ren.tensor_cores[opt.amount]), str), str(plan))
    elif opt.op is OptOps.MERGE:
      need(0 <= opt.amount < len(axes) and opt.amount != opt.axis, f"no other axis {opt.amount}")
      other = axes[opt.amount]
      need(kind is other.arg[1] and kind in (AxisType.LOOP, AxisType.REDUCE), f"only two LOOP or two REDUCE axes merge, not {kind.name} and {other.arg[1].name}")
      need(all(o.op in _SHAPING for o in self.applied), "MERGE comes first (after padding and swapping): later opts split the axes it joins")
      need(not ({r, other} & set(serial_ranges(self.sink))), "a scatter's serial loop keeps its own order")
      # one loop for both: every reduce that loops over one of them must loop over the other
      need(all((r in u.src[1:]) == (other in u.src[1:]) for u in self.sink.toposort if u.op is Ops.REDUCE), "a reduce loops over one axis and not the other")
    elif opt.op is OptOps.PIPE:
      need(self.tc_tile is not None, "only a tensor core's staged tiles are pipelined")
      need(kind is AxisType.REDUCE and r in self.tc_tile.where("k").toposort, f"axis {opt.axis} is not the tensor core's reduce loop")
      need(not self.tc_tile.staged and self.tc_tile.stages == 1, "PIPE comes before the operands are staged, once")
      need(opt.amount in (2, 3, 4), "2 to 4 buffers a tile (the fills in flight and the tile read)")
      need(end >= opt.amount, f"a loop of {end} steps fills fewer tiles ahead than {opt.amount} buffers hold")
    elif opt.op is OptOps.RASTER:
      need(ren.has_local, f"{type(ren).__name__} launches no blocks")
      need(kind is AxisType.LOOP and r not in serial_ranges(self.sink), f"axis {opt.axis} is {kind.name}, not an output LOOP")
      need(not any(x.arg[0][0] == RASTER_RID for x in axes), "the blocks are rastered already")
      need(opt.amount > 1 and end % opt.amount == 0, f"{end} does not split into groups of {opt.amount}")
    elif opt.op is OptOps.SWAP:
      need(0 <= opt.amount < len(axes) and opt.amount != opt.axis, f"no other axis {opt.amount}")
      other = axes[opt.amount].arg[1]
      # loops nest in any order; two reduce loops too (the sum's order, so its rounding, changes like a TILE's does);
      # two UPCAST axes swap their lane order: the innermost one's lanes are a vector's (codegen/expand.py)
      need((kind in _SWAPS and other in _SWAPS) or kind is other is AxisType.REDUCE or kind is other is AxisType.UPCAST,
           "only LOOP and TILE axes, two REDUCE or two UPCAST axes swap")
    elif opt.op is OptOps.THREAD:
      need(ren.has_cpu_threads, f"{type(ren).__name__} has no CPU threads")
      need(kind is AxisType.LOOP, f"axis {opt.axis} is {kind.name}, not LOOP")
      need(self.threads == 1, f"the kernel already runs on {self.threads} threads")
      need(2 <= opt.amount <= end, f"{opt.amount} threads for an axis of {end}")
    elif opt.op is OptOps.TILE:
      need(kind is AxisType.REDUCE, f"axis {opt.axis} is {kind.name}, not REDUCE")
      need(1 < opt.amount < end and end % opt.amount == 0, f"{end} does not split into blocks of {opt.amount}")
      need((why := _untileable(self.sink, r)) is None, str(why))
      need(AxisType.GROUP not in self.kinds(), "a group's threads would all carry the output")
    elif opt.op is OptOps.STAGE:
      need(ren.scratch_max > 0 or ren.has_local, f"{type(ren).__name__} has no scratch memory to stage in")
      # a block's threads fill its local memory together, once per step of a loop they all run: a reduce's
      if ren.has_local: need(kind is AxisType.REDUCE, f"axis {opt.axis} is {kind.name}: a block stages once per step of a reduce loop")
      else: need(kind in (AxisType.LOOP, AxisType.THREAD, AxisType.TILE), f"axis {opt.axis} is {kind.name}, not a loop")
      bufs = {u.arg[0]: u for u in self.sink.toposort if u.op is Ops.DEFINE_GLOBAL}
      need(opt.amount in bufs, f"the kernel has no buffer {opt.amount}")
      if self.tc_tile is not None:  # a tensor core's operand is staged whole, as a tile of its values (tensor_core.py)
        need(ren.has_local, f"{type(ren).__name__} has no local memory for a tensor core's tiles")
        need((operand := self._tc_operand(opt.amount)) is not None, f"buffer {opt.amount} is read by neither operand of the tensor core, or by both")
        need(not isinstance(plan := stage_plan_tc(self.sink, self.tc_tile, r, operand, ren.shared_max), str), str(plan))
        return
      need(not any(u.op is Ops.STORE and u.src[0].src[0] is bufs[opt.amount] for u in self.sink.toposort), f"buffer {opt.amount} is written by the kernel")
      need(not any(staged_buffer(c) is bufs[opt.amount] for c in staged_copies(self.sink)), f"buffer {opt.amount} is staged already")
      loads = stage_plan(self.sink, r, bufs[opt.amount], ren.has_local)
      need(not isinstance(loads, str), str(loads))
      need(len(loads) > 0, f"no read of buffer {opt.amount} moves with a loop inside axis {opt.axis}: staging would change nothing")
      size = scratch_bytes(self.sink) + sum(ld.dtype.itemsize * prod(s.src[0].arg for s in slots) for ld, slots in loads)
      if ren.has_local: size += self._group_partial_bytes()
      need(size <= (ren.shared_max if ren.has_local else ren.scratch_max), f"{size} bytes of scratch pass the renderer's {ren.shared_max if ren.has_local else ren.scratch_max}")
    elif opt.op is OptOps.ROW:
      need(ren.has_local, f"{type(ren).__name__} has no thread blocks")
      need(kind is AxisType.LOOP and r not in serial_ranges(self.sink), f"axis {opt.axis} is {kind.name}, not an output LOOP")
      need(opt.amount >= 1 and end % opt.amount == 0, f"{end} is not divisible by {opt.amount}")
      need(len(tied := row_reduces(self.sink, r)) > 0, f"no reduce of axis {opt.axis}'s extent is computed once per value of it")
      # group.py lowers every reduce whose value moves with a GROUP range it does not loop over as that group's
      # partials: a reduce that moves with the shared range through the output (a reversed cumsum beside a prod's
      # gradient) would be summed across the threads' columns. Such a kernel takes one thread a row
      need(opt.amount == 1 or not any(u.op is Ops.REDUCE and r in u.src[0].toposort for u in self.sink.toposort),
           f"a reduce moves with axis {opt.axis}: its threads would combine it")
      need(opt.amount == 1 or AxisType.GROUP not in self.kinds(), "the kernel has a group already")
      threads = prod(a.src[0].arg for a in axes if a.arg[1] in (AxisType.LOCAL, AxisType.GROUP)) * opt.amount
      need(threads <= ren.local_max, f"{threads} threads in a block pass the renderer's {ren.local_max}")
      # a slot per thread and upcast lane, in each round's array (codegen/group.py)
      size = threads * prod(a.src[0].arg for a in axes if a.arg[1] is AxisType.UPCAST) * 8 * len(tied) * rounds([opt.amount])
      need(size <= ren.shared_max, f"the reduces' partials ({size} bytes) pass the renderer's local memory")
    elif opt.op is OptOps.PADTO:
      need(kind in (AxisType.LOOP, AxisType.REDUCE), f"only LOOP and REDUCE axes pad, not {kind.name}")
      need(opt.amount > 1 and end % opt.amount != 0, f"{end} is already a multiple of {opt.amount}")
    else:
      want, new_kind = _SPLIT[opt.op]
      # a ROW's loop over the row is an output loop every thread runs: its lanes are output lanes (the row in registers)
      need(kind is want or (opt.op is OptOps.UPCAST and kind is AxisType.ROW), f"axis {opt.axis} is {kind.name}, not {want.name}")
      need(opt.amount > 1 and end % opt.amount == 0, f"{end} is not divisible by {opt.amount}")
      if new_kind in (AxisType.UPCAST, AxisType.UNROLL):
        # a copy is one loop nest per iteration of the loops outside it; lanes of one of them would each fill the scratch
        need(not any(r in c.toposort for c in staged_copies(self.sink)), f"a staging copy moves with axis {opt.axis}: its lanes would share one scratch")
        # a target of 16-float vectors blocks twice the lanes for the same registers' worth of work
        lanes, budget = self.lanes((r, opt.amount)), max_lanes(self.renderer)
        need(lanes <= budget, f"{lanes} lanes pass the budget of {budget}")
        need(len(self.sink.toposort) * lanes <= MAX_EXPANDED_NODES, "the expanded kernel would pass the source budget")
      if new_kind is AxisType.GROUP:
        # group.py combines across the group's threads every reduce whose value moves with the group's range and does
        # not loop over it: a reduce nested in this one that reads along it (a sum of logsumexps) holds a different
        # value in each thread, not a partial of one (DEV=PYTHON fuzz, seed 41871)
        need(not reduces_moving_with(self.sink, r), f"a reduce nested in the reduce over axis {opt.axis} reads along it: its threads' values are not partials of one sum")
      if new_kind in (AxisType.LOCAL, AxisType.GROUP):
        need(ren.has_local, f"{type(ren).__name__} has no thread blocks")
        threads = prod(a.src[0].arg for a in axes if a.arg[1] in (AxisType.LOCAL, AxisType.GROUP)) * opt.amount
        need(threads <= ren.local_max, f"{threads} threads in a block pass the renderer's {ren.local_max}")
      # a group reduce keeps a slot of local memory per thread and upcast lane, of its value's size: checked when the
      # group is made and when a LOCAL adds threads to a kernel that has one
      if new_kind is AxisType.GROUP or (new_kind is AxisType.LOCAL and AxisType.GROUP in self.kinds()):
        need(AxisType.TILE not in self.kinds(), "a group's threads would all carry the output")
        groups = [a.src[0].arg for a in axes if a.arg[1] is AxisType.GROUP] + ([opt.amount] if new_kind is AxisType.GROUP else [])
        size = threads * prod(a.src[0].arg for a in axes if a.arg[1] is AxisType.UPCAST) * rounds(groups) * \
          max((u.dtype.scalar().itemsize for u in self.sink.toposort if u.op is Ops.REDUCE), default=8) + scratch_bytes(self.sink)
        need(size <= ren.shared_max, f"{size} bytes of local memory for a group's partials and staged inputs pass the renderer's {ren.shared_max}")

  def _tc_operand(self, param: int) -> str | None:
    """The tensor core's operand ("a" or "b") that reads buffer `param`, if exactly one does."""
    def reads(x: UOp) -> bool: return any(u.op is Ops.DEFINE_GLOBAL and u.arg[0] == param for u in x.toposort)
    a, b = reads(self.tc_tile.plan.a), reads(self.tc_tile.plan.b)
    return ("a" if a else "b") if a != b else None

  def _group_partial_bytes(self) -> int:
    """Local memory a group's partials will take (codegen/group.py): a slot per thread and upcast lane, 8 bytes at most."""
    if AxisType.GROUP not in self.kinds(): return 0
    return prod(s for s, t in zip(self.sizes(), self.kinds()) if t in (AxisType.LOCAL, AxisType.GROUP, AxisType.UPCAST)) * 8 * \
      rounds([s for s, t in zip(self.sizes(), self.kinds()) if t is AxisType.GROUP])

  def apply_opt(self, opt: Opt) -> Kernel:
    """Apply one opt in place (and return self); an opt this kernel or its renderer cannot take raises KernelOptError
    and leaves the kernel as it was."""
    self.check(opt)
    r = self.axes[opt.axis]
    if opt.op is OptOps.SWAP:
      b = self.axes[opt.amount]
      na, nb = index_range(r.src[0].arg, r.arg[1], b.arg[0], r.dtype), index_range(b.src[0].arg, b.arg[1], r.arg[0], b.dtype)
      # one walk: substitute replaces all keys at once and never substitutes into a value (with equal sizes and kinds
      # `na` is `b` itself, and must not become `nb`)
      self._set(self.sink.substitute({r: na, b: nb}))
      if self.tc_tile is not None: self.tc_tile = self.tc_tile.substitute({r: na, b: nb})
    elif opt.op is OptOps.THREAD:
      # the axis keeps its size; thread `core` of `threads` runs its contiguous share (the renderer's bounds)
      self._set(self.sink.substitute({r: index_range(r.src[0].arg, AxisType.THREAD, r.arg[0], r.dtype)}))
      self.threads = opt.amount
    elif opt.op is OptOps.TILE: self._set(tile_reduce(self.sink, r, opt.amount))
    elif opt.op is OptOps.TC:
      tc = self.renderer.tensor_cores[opt.amount]
      sink, self.tc_tile = apply_tc(self.sink, tc_plan(self.sink, r, tc), tc)
      self._set(sink)
    elif opt.op is OptOps.ROW: self._set(share_row(self.sink, r, opt.amount))
    elif opt.op is OptOps.PIPE: self.tc_tile = replace(self.tc_tile, stages=opt.amount)
    elif opt.op is OptOps.MERGE: self._set(graph_rewrite(merge_ranges(self.sink, r, self.axes[opt.amount]), pm_kernel_simplify, name=f"apply {opt}"))
    elif opt.op is OptOps.RASTER:
      # the inner part's id sorts after every output loop's, so it becomes block id 0 (codegen/expand.py grid_loops):
      # blocks launched one after another walk `amount` values of this axis before the loops inside it move
      outer = index_range(r.src[0].arg // opt.amount, AxisType.LOOP, r.arg[0] + (0,), r.dtype)
      inner = index_range(opt.amount, AxisType.LOOP, (RASTER_RID,) + r.arg[0], r.dtype)
      self._set(graph_rewrite(self.sink, pm_split_range, (r, outer, inner), top_down=True, name=f"apply {opt}"))
      if self.tc_tile is not None: self.tc_tile = self.tc_tile.substitute({r: outer * opt.amount + inner})
    elif opt.op is OptOps.STAGE and self.tc_tile is not None:
      sink, self.tc_tile = stage_tc(self.sink, self.tc_tile, r, self._tc_operand(opt.amount), self.renderer.shared_max)
      self._set(sink)
    elif opt.op is OptOps.STAGE: self._set(stage_buffer(self.sink, r, opt.amount, self.renderer.has_local))
    elif opt.op is OptOps.PADTO:
      size = -(-r.src[0].arg // opt.amount) * opt.amount
      self._set(pad_range(self.sink, r, size))
      if self.tc_tile is not None: self.tc_tile = self.tc_tile.substitute({r: index_range(size, r.arg[1], r.arg[0], r.dtype)})
    else:
      new_kind, kind, rest = _SPLIT[opt.op][1], r.arg[1], r.src[0].arg // opt.amount
      if opt.op in _NEW_PART_OUTER: outer, inner = index_range(opt.amount, new_kind, r.arg[0] + (0,), r.dtype), index_range(rest, kind, r.arg[0] + (1,), r.dtype)
      else: outer, inner = index_range(rest, kind, r.arg[0] + (0,), r.dtype), index_range(opt.amount, new_kind, r.arg[0] + (1,), r.dtype)
      self._set(graph_rewrite(self.sink, pm_split_range, (r, outer, inner), top_down=True, name=f"apply {opt}"))
      if self.tc_tile is not None: self.tc_tile = self.tc_tile.substitute({r: outer * inner.src[0].arg + inner})
    self.applied.append(opt)
    return self

  def valid_opts(self) -> list[Opt]:
    """Every opt this kernel can take next: the one action list the heuristic and BEAM share."""
    out: list[Opt] = []
    axes = self.axes
    inputs = sorted({u.arg[0] for u in self.sink.toposort if u.op is Ops.DEFINE_GLOBAL} - {s.src[0].src[0].arg[0] for s in self.sink.src if s.op is Ops.STORE})
    for i, r in enumerate(axes):
      kind, end = r.arg[1], r.src[0].arg
      ops = {AxisType.LOOP: (OptOps.UPCAST, OptOps.LOCAL, OptOps.THREAD), AxisType.REDUCE: (OptOps.UNROLL, OptOps.GROUP, OptOps.GROUPTOP)}.get(kind, ())
      for op in ops:
        amounts = tuple(a for a in THREAD_AMOUNTS if a <= int(THREADS)) if op is OptOps.THREAD else SPLIT_AMOUNTS + ((end,) if end <= 32 and end not in SPLIT_AMOUNTS else ())
        out += [Opt(op, i, a) for a in amounts]
      # padding pays only where it wastes little: at most a quarter of the axis
      out += [Opt(OptOps.PADTO, i, a) for a in PAD_AMOUNTS if kind in (AxisType.LOOP, AxisType.REDUCE) and a < end and (-end) % a <= end // 4]
      out += [Opt(OptOps.TILE, i, a) for a in TILE_AMOUNTS if kind is AxisType.REDUCE and a < end]
      out += [Opt(OptOps.TC, i, j) for j in range(len(self.renderer.tensor_cores)) if kind is AxisType.REDUCE]
      out += [Opt(OptOps.PIPE, i, n) for n in (2, 3)] if kind is AxisType.REDUCE and self.tc_tile is not None else []
      out += [Opt(OptOps.RASTER, i, a) for a in RASTER_AMOUNTS if kind is AxisType.LOOP and self.renderer.has_local]
      out += [Opt(OptOps.SWAP, i, j) for j in range(i + 1, len(axes))]
      out += [Opt(OptOps.MERGE, i, j) for j, x in enumerate(axes) if j != i and kind in (AxisType.LOOP, AxisType.REDUCE) and x.arg[1] is kind]
      out += [Opt(OptOps.STAGE, i, p) for p in inputs]
    def ok(o: Opt) -> bool:
      try: self.check(o)
      except KernelOptError: return False
      return True
    return [o for o in out if ok(o)]

  def apply_opts(self, opts) -> Kernel:
    for o in opts: self.apply_opt(o)
    return self

STAGE_RID = 1 << 21  # ids of a staging copy's loops: after every kernel axis, apart from group.py's

def _copy_end(x: UOp) -> UOp | None:
  """The staging copy a scratch load waits for: the END of its loop nest, or on a GPU-style target the barrier after
  it (of its END, or of its stores where the block fills the scratch in one step). In a Kernel's graph a load of local
  memory that waits for a barrier is always a staged one: group.py adds its partials later, in codegen."""
  if x.op is Ops.BARRIER and len(x.src) == 1 and x.src[0].op is Ops.END: x = x.src[0]
  if x.op is Ops.BARRIER and x.src and all(s.op is Ops.STORE for s in x.src): return x
  return x if x.op is Ops.END else None

def staged_copies(sink: UOp) -> list[UOp]:
  """The copies STAGE made: the END of each copy's loop nest, which the loads of its scratch wait for."""
  return list(dict.fromkeys(e for u in sink.toposort if u.op is Ops.LOAD and len(u.src) == 2 and (e := _copy_end(u.src[1])) is not None))

def staged_buffer(copy: UOp) -> UOp:
  """The input buffer a staging copy reads (a tensor core's staged operand: the first it reads)."""
  return next(u.src[0].src[0] for u in copy.toposort if u.op is Ops.LOAD and u.src[0].op is Ops.INDEX and u.src[0].src[0].op is Ops.DEFINE_GLOBAL)

def scratch_bytes(sink: UOp) -> int: return sum(u.arg[1] * u.dtype.itemsize for u in sink.toposort if u.op is Ops.DEFINE_LOCAL)

_LANES = (AxisType.UPCAST, AxisType.UNROLL)

def stage_plan(sink: UOp, r: UOp, buf: UOp, block: bool = False) -> list[tuple[UOp, list[UOp]]] | str:
  """The loads of `buf` that staging at range `r` moves to scratch, each with its slot ranges: the ranges inside `r`
  (and every lane range: lanes are not loops, so they are inside every loop) that its index or gate moves with, in loop
  order with the lanes innermost, so the lanes of a vector load stay consecutive. The gate's ranges are slot ranges
  too, so the scratch holds the gated value and the gate is never needed again. A reason string if it cannot be staged.
  `block` (GPU-style): the scratch is the block's local memory, so the thread ranges (LOCAL, GROUP) are slot ranges as
  well, and the slots go in the order of the input's memory (the smallest stride innermost): the block's threads
  then fill it reading neighbouring addresses, and a thread's lanes read neighbouring slots."""
  out = []
  threads = (AxisType.LOCAL, AxisType.GROUP) if block else ()
  for ld in sink.toposort:
    if ld.op is not Ops.LOAD or ld.src[0].op is not Ops.INDEX or ld.src[0].src[0] is not buf: continue
    _, idx, gate = ld.src[0].src
    if any(u.op in (Ops.LOAD, Ops.REDUCE) for x in (idx, gate) for u in x.toposort): return "its index reads memory"
    rngs = {u for x in (idx, gate) for u in x.toposort if u.op is Ops.RANGE and (u.arg[1] in _LANES + threads or u.arg[0] > r.arg[0])}
    order = (lambda u: (-abs(stride_of(idx, u) or 0), u.arg[0])) if block else (lambda u: (u.arg[1] in _LANES, u.arg[0]))
    if any(u.src[0].arg > 1 for u in rngs): out.append((ld, sorted(rngs, key=order)))
  return out

def _slot(rngs: list[UOp], dt) -> UOp:
  """One slot per combination of `rngs`' values, the last fastest."""
  idx, size = rngs[-1], rngs[-1].src[0].arg
  for x in reversed(rngs[:-1]): idx, size = idx + x * size, size * x.src[0].arg
  return idx

def stage_buffer(sink: UOp, r: UOp, param: int, block: bool = False) -> UOp:
  """Each load of input `param` that moves with a loop inside `r` reads a scratch buffer (DEFINE_LOCAL) instead, which
  a loop nest of its own fills with the same values (the load with its slot ranges replaced by the copy's). The
  scratch loads take the copy's END as a source: linearize places the copy before them, in the innermost loop it
  depends on (inside `r` if it moves with `r`, else hoisted further out), so it runs once per iteration of that loop.
  `block` (GPU-style): the block's threads fill the scratch together (_block_fill), between two barriers."""
  buf = next(u for u in sink.toposort if u.op is Ops.DEFINE_GLOBAL and u.arg[0] == param)
  n, rep, true = len({u for u in sink.toposort if u.op is Ops.DEFINE_LOCAL}), {}, UOp.const(dtypes.bool, True)
  for ld, rngs in stage_plan(sink, r, buf, block):
    # a range of one value (the outer part of a split whole) is 0 in the copy; a copy loop of one would fold away
    slots, ones = [s for s in rngs if s.src[0].arg > 1], {s: s.const_like(0) for s in rngs if s.src[0].arg == 1}
    local = UOp(Ops.DEFINE_LOCAL, ld.src[0].dtype, (), (n, prod(s.src[0].arg for s in slots)))
    if block: done = _block_fill(sink, r, ld, slots, ones, local, n)
    else:
      copy = [index_range(s.src[0].arg, AxisType.COPY, (STAGE_RID + n, i), s.dtype) for i, s in enumerate(slots)]
      done = UOp(Ops.STORE, dtypes.void, (UOp(Ops.INDEX, local.dtype, (local, _slot(copy, r.dtype), true)), ld.substitute({**dict(zip(slots, copy)), **ones})))
      for c in reversed(copy): done = UOp(Ops.END, dtypes.void, (c, done))
    rep[ld] = UOp(Ops.LOAD, ld.dtype, (UOp(Ops.INDEX, local.dtype, (local, _slot(slots, r.dtype), true)), done))
    n += 1
  return sink.substitute(rep)

def _block_fill(sink: UOp, r: UOp, ld: UOp, slots: list[UOp], ones: dict, local: UOp, n: int) -> UOp:
  """The block's threads fill `local` together: thread t takes slots (c*T + t)*V + v for each step c of one COPY loop,
  V neighbouring slots a step (one vector where the input is contiguous there), each slot's ranges recovered from its
  number. A barrier before the fill (every thread done reading the previous step's scratch: a barrier with `r` as its
  source sits at the top of r's body) and one after it (the scratch loads wait for it)."""
  threads = sorted({u for u in sink.toposort if u.op is Ops.RANGE and u.arg[1] in (AxisType.LOCAL, AxisType.GROUP)}, key=lambda u: u.arg[0])
  dt, total = r.dtype, prod(s.src[0].arg for s in slots)
  tid, nthreads = UOp.const(dt, 0), 1
  for t in reversed(threads): tid, nthreads = tid + t * nthreads, nthreads * t.src[0].arg  # the last (threadIdx.x) fastest
  vec = next((v for v in (16 // ld.dtype.itemsize, 2, 1) if v >= 1 and slots[-1].src[0].arg % v == 0 and total % (nthreads * v) == 0), 1)
  steps = -(-total // (nthreads * vec))
  c = index_range(steps, AxisType.COPY, (STAGE_RID + n, 0), dt) if steps > 1 else UOp.const(dt, 0)  # a loop of one would fold
  before = UOp(Ops.BARRIER, dtypes.void, (r,))
  first = (c * nthreads + tid) * vec if vec > 1 else c * nthreads + tid
  vals, stride = {}, 1
  for s in reversed(slots):  # each slot range's value, from the slot's number (the last fastest, as _slot numbers them)
    vals[s] = (first // stride) % s.src[0].arg if stride > 1 else first % s.src[0].arg
    stride *= s.src[0].arg
  stores = []
  for v in range(vec):  # the v-th neighbour moves the innermost slot range only (its size is a multiple of vec)
    flat = first + v if v else first
    value = ld.substitute({**vals, slots[-1]: vals[slots[-1]] + v if v else vals[slots[-1]], **ones})
    value = value.replace(src=(value.src[0], before))  # read after every thread is done with the scratch's last contents
    gate = UOp.const(dtypes.bool, True) if steps * nthreads * vec == total else flat < total
    stores.append(UOp(Ops.STORE, dtypes.void, (UOp(Ops.INDEX, local.dtype, (local, flat, gate)), value)))
  return UOp(Ops.BARRIER, dtypes.void, (UOp(Ops.END, dtypes.void, (c, *stores)),) if steps > 1 else tuple(stores))

def pad_range(sink: UOp, r: UOp, size: int) -> UOp:
  """Grow range `r` to `size`: every store whose index moves with it is guarded by `r < old size`, and so is every load
  for a reduce range, which adds its identity there: the extra iterations write nothing and change no sum. A load in an
  extra iteration of an output (LOOP) range that strides its address reads at `r` clamped to the last index: its value
  is never stored."""
  from lucidgrad.codegen.linearize import identity_element
  nr = index_range(size, r.arg[1], r.arg[0], r.dtype)
  sink = sink.substitute({r: nr})
  inside = nr < r.src[0].arg
  # a load in an extra output index may read what the last index reads instead of nothing: its value reaches no store
  # (every store that moves with the range is guarded), and a clamped outer range is loop-invariant, where a gated load
  # is a branch in the innermost loop (the last rows of a 6-row block of a 1024-row matmul). The load's own gate (a
  # conv's padding) is clamped too: it must be the one that makes the clamped index safe. A range that moves the
  # address by one element keeps the gate: its lanes stay one vector load under one gate; clamped lanes are not consecutive.
  last = {nr: inside.where(nr, nr.const_like(r.src[0].arg - 1))}
  stored = {s.src[0] for s in sink.toposort if s.op is Ops.STORE}
  def clamps(x: UOp) -> bool: return r.arg[1] is AxisType.LOOP and x not in stored and _terms(x.src[1], True)[0].get(nr) != 1
  guards: dict[UOp, UOp] = {}
  for x in sink.toposort:  # sources first: an address holding a loaded index (a gather) takes that load guarded too
    if x.op is Ops.INDEX and x.dtype.ptr and nr in x.src[1].toposort:
      y = x.substitute(guards) if guards else x
      guards[x] = y.replace(src=(y.src[0], y.src[1].substitute(last), y.src[2].substitute(last)) if clamps(x) else (y.src[0], y.src[1], y.src[2] & inside))
  if guards: sink = sink.substitute(guards)
  reds = {red: red.replace(src=(inside.where(red.src[0], UOp.const(red.dtype, identity_element(red.arg, red.dtype))), *red.src[1:]))
          for red in sink.toposort if red.op is Ops.REDUCE and nr in red.src[1:]}
  return sink.substitute(reds) if reds else sink

def merge_ranges(sink: UOp, r: UOp, fast: UOp) -> UOp:
  """One loop for `r` and `fast` (MERGE): `r * size(fast) + fast`, in fast's place in the nest (its id: an output's
  contiguous axis stays its innermost). Each range is that loop's quotient or remainder where used as a value; a reduce
  over both loops over it once. A conv's window and channel loops so become one reduce loop, as long as a matmul's,
  and its images, rows and columns one pixel axis: a matmul whose operands are gathers (an implicit GEMM)."""
  n = fast.src[0].arg
  both = index_range(r.src[0].arg * n, r.arg[1], fast.arg[0], r.dtype)
  reds = {u: u.replace(src=(u.src[0], *[both if s is fast else s for s in u.src[1:] if s is not r])) for u in sink.toposort
          if u.op is Ops.REDUCE and r in u.src[1:]}
  # two walks: the reduces' loops first (they are not values), then every use of the two ranges as a value
  return (sink.substitute(reds) if reds else sink).substitute({r: both // n, fast: both % n})

def reduces_moving_with(sink: UOp, r: UOp) -> list[UOp]:
  """The reduces that do not loop over range `r` but whose value depends on it (nested in the reduce over `r`, reading
  along it): a reduce's value does not depend on the ranges it loops over."""
  moves: dict[UOp, bool] = {}
  for u in sink.toposort:
    moves[u] = u is r or (not (u.op is Ops.REDUCE and r in u.src[1:]) and any(moves[x] for x in u.src))
  return [u for u in sink.toposort if u.op is Ops.REDUCE and r not in u.src[1:] and moves[u]]

def stride_of(idx: UOp, r: UOp) -> int | None:
  """The coefficient of range r in an index that is a sum of range*const terms; None if r appears otherwise."""
  terms, _ = _terms(idx, distribute=True)  # (y+ky-1)*56: a window row multiplied out
  for t, k in terms.items():
    if t is r: return k
    if r in t.toposort: return None
  return 0

def row_reduces(sink: UOp, r: UOp) -> list[UOp]:
  """The reduce ranges a ROW on output range `r` ties to it: each the only range of a reduce that is computed once per
  row beside its use, as the scheduler keeps softmax's max and sum: of `r`'s extent, not depending on `r`, and walking
  the row itself -- it reads a buffer along its range with the stride the kernel reads that buffer with along `r`. So
  its value moves with the shared thread range and group.py combines the threads' partials; a reduce whose value does
  not move along its own range (var over axis 0 of a tensor of constants) would lose the other threads' share."""
  reduces = [u for u in sink.toposort if u.op is Ops.REDUCE]
  along_r = {(ld.src[0], st) for ld in sink.toposort if ld.op is Ops.INDEX and ld.src[0].op is Ops.DEFINE_GLOBAL
             and (st := stride_of(ld.src[1], r))}
  out = []
  for u in reduces:
    # one loop of the reduce's own (beside UNROLL lanes: a row read 4 floats a step pairs with an output UPCAST of 4)
    loops = [x for x in u.src[1:] if not (x.op is Ops.RANGE and x.arg[1] is AxisType.UNROLL)]
    if len(loops) != 1 or (x := loops[0]).op is not Ops.RANGE or x.arg[1] is not AxisType.REDUCE or x in out: continue
    if x.src[0].arg != r.src[0].arg or r in u.src[0].toposort: continue
    if any(ld.op is Ops.INDEX and ld.src[0].op is Ops.DEFINE_GLOBAL and (ld.src[0], stride_of(ld.src[1], x)) in along_r for ld in u.src[0].toposort):
      out.append(x)
  return out

def share_row(sink: UOp, r: UOp, amount: int) -> UOp:
  """ROW: output range `r` and the reduce ranges of its extent computed once per row (row_reduces) are split by
  `amount`, and their inner parts are one GROUP range: thread t of the block takes elements t, t + amount, ... of each
  reduce (the block combines the partials through local memory, codegen/group.py) and of the output row. The output's
  outer part is a ROW loop that every thread runs; a reduce's outer part stays its loop (docs/design/0023)."""
  if amount == 1: return sink.substitute({r: index_range(r.src[0].arg, AxisType.ROW, r.arg[0], r.dtype)})  # one thread: a loop
  shared = index_range(amount, AxisType.GROUP, r.arg[0] + (1,), r.dtype)
  n = r.src[0].arg // amount
  for x in row_reduces(sink, r):
    sink = graph_rewrite(sink, pm_split_range, (x, index_range(n, AxisType.REDUCE, x.arg[0] + (0,), x.dtype), shared), top_down=True, name="row reduce")
  return graph_rewrite(sink, pm_split_range, (r, index_range(n, AxisType.ROW, r.arg[0] + (0,), r.dtype), shared), top_down=True, name="row loop")

def _untileable(sink: UOp, r: UOp) -> str | None:
  """Why reduce range `r` cannot be tiled with the output as the running value, or None: the kernel must store one
  value, that value must be the reduce over `r` itself, and nothing else in the kernel may read the output."""
  stores = [s for s in sink.src if s.op is Ops.STORE]
  if len(stores) != 1 or len(sink.src) != 1: return "only a kernel with one store carries its reduce in the output"
  out, red = stores[0].src[0].src[0], stores[0].src[1]
  if red.op is not Ops.REDUCE or r not in red.src[1:]: return "the stored value is not the reduce over this axis"
  if any(u.op is Ops.INDEX and u.src[0] is out for u in red.toposort): return "the kernel reads its output"
  return None

def tile_reduce(sink: UOp, r: UOp, amount: int) -> UOp:
  """Split reduce range `r` into blocks of `amount`: a TILE range over the blocks nests outside every other loop (its
  id sorts first), the reduce keeps the inner part, and the output buffer holds the running value: each block adds its
  part to what the blocks before it stored (block 0 reads nothing: its gated load gives 0, or the identity)."""
  from lucidgrad.codegen.linearize import identity_element
  st = sink.src[0]
  (buf, idx, gate), red = st.src[0].src, st.src[1]
  block = index_range(r.src[0].arg // amount, AxisType.TILE, (-1,) + r.arg[0], r.dtype)
  inner = index_range(amount, AxisType.REDUCE, r.arg[0] + (1,), r.dtype)
  part = UOp(Ops.REDUCE, red.dtype, (red.src[0].substitute({r: block * amount + inner}),
                                     *[inner if s is r else s for s in red.src[1:]]), red.arg)
  later = block.ne(0)
  before = UOp(Ops.LOAD, red.dtype, (UOp(Ops.INDEX, buf.dtype, (buf, idx, gate & later)),))
  if identity_element(red.arg, red.dtype) != 0: before = later.where(before, UOp.const(red.dtype, identity_element(red.arg, red.dtype)))
  return UOp.sink(st.replace(src=(st.src[0], before.alu(red.arg, part))))

def _split_in_reduce(ctx, red: UOp) -> UOp | None:
  r, outer, inner = ctx
  if r not in red.src[1:]: return None
  # a GROUP part is not looped over: its threads each hold a partial (codegen/group.py)
  parts = tuple(x for x in (outer, inner) if x.arg[1] is not AxisType.GROUP)
  return red.replace(src=(red.src[0], *[x for s in red.src[1:] for x in (parts if s is r else (s,))]))

# a split range is replaced by outer*amount+inner where it is used as a value, and by the pair where a REDUCE loops over it
pm_split_range = PatternMatcher([
  (UPat(Ops.REDUCE, name="red"), _split_in_reduce),
  (UPat(Ops.RANGE, name="x"), lambda ctx, x: ctx[1] * ctx[2].src[0].arg + ctx[2] if x is ctx[0] else None),
])
