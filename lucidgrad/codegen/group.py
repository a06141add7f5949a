"""GROUP and GROUPTOP: a reduce split over the threads of a block. Each thread reduces its share into a partial, stores
it in local memory at its own slot, and after a barrier every thread reduces the block's partials itself, so a later
use in the kernel (softmax's sum after its max) has the value in every thread; only thread 0 of the group stores it,
unless the store moves with the group's range (OptOps.ROW: the threads share the output row as well).

A large group combines in two rounds: with G = a * b slots, thread t first reduces the a slots t mod b, t mod b + b,
..., stores that at its slot of a second array, and after a second barrier every thread reduces slots 0..b-1 of it:
a + b reads a thread instead of G (256 threads: 32 instead of 256, which had cost more than the row itself)."""
from __future__ import annotations
from lucidgrad.dtype import dtypes
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.codegen.lower import index_range
from lucidgrad.codegen.expand import grid_loops

GROUP_RID = 1 << 20  # range ids of the loops over a group's slots: after every range lowering made

def _linear(rngs: list[UOp], dt) -> tuple[UOp, int]:
  """A slot per combination of `rngs`' values, and the number of slots."""
  idx, size = UOp.const(dt, 0), 1
  for r in reversed(rngs):
    idx, size = idx + r * size if size > 1 else idx + r, size * r.src[0].arg
  return idx, size

def two_rounds(n: int) -> tuple[int, int] | None:
  """(a, b) with a * b = n and a + b least, where two rounds of reads (a, then b) save three quarters of one round's n
  reads -- worth a second barrier and array; None where they do not (small or prime groups)."""
  a = max(d for d in range(1, int(n ** 0.5) + 1) if n % d == 0)
  return (a, n // a) if a + n // a <= n // 4 else None

def _moves_with(u: UOp, g: UOp) -> bool:
  """Does `u` depend on range `g` other than through local memory (a group reduce already lowered)?"""
  stack, seen = [u], set()
  while stack:
    if (n := stack.pop()) is g: return True
    if n in seen or n.op is Ops.BARRIER: continue
    seen.add(n)
    stack.extend(n.src)
  return False

def _moves_along(u: UOp) -> set[UOp]:
  """The ranges u's value moves with: an inner reduce's own loops are closed inside it, and a value read back from
  local memory (after a BARRIER) is a group's, already combined."""
  memo: dict[UOp, frozenset] = {}
  for n in u.toposort:
    if n.op is Ops.RANGE: memo[n] = frozenset((n,))
    elif n.op is Ops.BARRIER: memo[n] = frozenset()
    elif n.op is Ops.REDUCE: memo[n] = memo[n.src[0]] - frozenset(n.src[1:])
    else: memo[n] = frozenset().union(*(memo[x] for x in n.src))
  return set(memo[u])

def lower_group_reduces(sink: UOp, global_max: tuple[int, ...] = (2**31 - 1, 65535, 65535)) -> UOp:
  """Every REDUCE whose value moves with a GROUP range it does not loop over becomes partial -> local store -> barrier
  -> a reduce over the group's slots. Innermost first: a group reduce inside another is lowered before the outer one."""
  # numbered after the kernel's staged inputs (OptOps.STAGE): two DEFINE_LOCALs of one number, size and dtype would be
  # one node, one array
  n_local, partials = len({u for u in sink.toposort if u.op is Ops.DEFINE_LOCAL}), set()
  groups = sorted({r for r in sink.toposort if r.op is Ops.RANGE and r.arg[1] is AxisType.GROUP}, key=lambda r: r.arg[0])
  if not groups: return sink
  threads = sorted({r for r in sink.toposort if r.op is Ops.RANGE and r.arg[1] in (AxisType.LOCAL, AxisType.GROUP)}, key=lambda r: r.arg[0])
  grid = set(grid_loops(sink, global_max))  # the output loops that become block ids; the rest are loops every thread runs
  # each lowering removes one reduce that moves with a group; rebuilt users that still move with one are lowered in
  # turn, so the kernel's reduces bound the rounds -- more would be a cycle, which must fail, not hang
  for _ in range(4 * len(sink.find(Ops.REDUCE)) + 4):
    # innermost first: the graph lists sources before their users
    red = next((u for u in sink.toposort if u.op is Ops.REDUCE and u not in partials and any(g not in u.src[1:] and _moves_with(u.src[0], g) for g in groups)), None)
    if red is None: break
    partials.add(red)  # it stays in the graph, as the value each thread stores
    dt = red.src[1].dtype if len(red.src) > 1 else threads[0].dtype
    mine = [g for g in groups if _moves_with(red.src[0], g)]
    # one slot per thread of the block, and per upcast lane the partial moves with (each lane is its own value)
    lanes = sorted({r for r in red.toposort if r.op is Ops.RANGE and r.arg[1] is AxisType.UPCAST}, key=lambda r: r.arg[0])
    slot, size = _linear(threads + lanes, dt)
    def through_local(value: UOp, extents: list[int], read) -> UOp:
      """Each thread stores `value` at its slot; after a barrier it reduces the slots read(*loops) names, over new
      loops of `extents` (one per group range they stand for)."""
      nonlocal n_local
      local = UOp(Ops.DEFINE_LOCAL, red.dtype.as_ptr(), (), (n_local, size))
      n_local += 1
      store = UOp(Ops.STORE, dtypes.void, (UOp(Ops.INDEX, red.dtype.as_ptr(), (local, slot, UOp.const(dtypes.bool, True))), value))
      # (an extent of 1 is slot 0, not a loop: a reduce over a range of one lost its upcast lanes but the first)
      loops = [index_range(n, AxisType.REDUCE, (GROUP_RID + n_local,) + g.arg[0], g.dtype) if n > 1 else UOp.const(g.dtype, 0)
               for n, g in zip(extents, mine)]
      load = UOp(Ops.LOAD, red.dtype, (UOp(Ops.INDEX, red.dtype.as_ptr(), (local, read(*loops), UOp.const(dtypes.bool, True))),
                                       UOp(Ops.BARRIER, dtypes.void, (store,))))
      ranges = [x for x in loops if x.op is Ops.RANGE]
      return UOp(Ops.REDUCE, red.dtype, (load, *ranges), red.arg) if ranges else load
    partial = red if len(red.src) > 1 else red.src[0]  # a reduce with no loops left: each thread holds one value
    # a reduce that moves with a loop every thread runs (an output axis past the grid's limit, an outer reduce's loop):
    # one round's next partials would overwrite slots a slower thread is still reading. Two rounds cannot: each array
    # is rewritten only after the other round's barrier, which every thread passes after its reads. Such a reduce
    # takes two rounds even where they save no reads (b = 1)
    looped = any(r.arg[1] in (AxisType.LOOP, AxisType.ROW, AxisType.TILE, AxisType.REDUCE) and r not in grid
                 for r in _moves_along(red.src[0]) - set(red.src[1:]))
    if len(mine) == 1 and ((ab := two_rounds((g := mine[0]).src[0].arg)) is not None or looped):
      a, b = ab if ab is not None else (g.src[0].arg, 1)
      firsts = through_local(partial, [a], lambda j: slot.substitute({g: j * b + g % b}))
      partials.add(firsts)  # it moves with g (thread t's sum is slot t mod b's), and is lowered here, not again
      total = through_local(firsts, [b], lambda p: slot.substitute({g: p}))
    else:  # each thread reads every slot of its group: the group ranges become loops of a new reduce
      total = through_local(partial, [g.src[0].arg for g in mine], lambda *loops: slot.substitute(dict(zip(mine, loops))))
    sink = sink.substitute({red: total})
  else: raise RuntimeError(f"group reduces: no end lowering the partials of {len(partials)} reduces (a reduce keeps moving with a group range)")
  # the value is in every thread of a group; one of them writes it -- unless the store moves with the group's range
  # (a ROW: the threads share the output row too, each writing its own elements)
  def gated(s: UOp) -> UOp:
    first = UOp.const(dtypes.bool, True)
    for g in groups:
      if not _moves_with(s.src[0], g): first = first & g.eq(0)
    return s.replace(src=(s.src[0].replace(src=(*s.src[0].src[:2], s.src[0].src[2] & first)), *s.src[1:]))
  return UOp.sink(*[gated(s) if s.op is Ops.STORE else s for s in sink.src])

def local_bytes(sink: UOp) -> int:
  return sum(u.arg[1] * u.dtype.itemsize for u in sink.toposort if u.op is Ops.DEFINE_LOCAL)
