"""From a graph to a straight list: REDUCEs become an accumulator (DEFINE_REG), an update inside their loops (ASSIGN)
and a read after them; every effect is wrapped in END of the ranges it runs in; then the graph is listed so each loop
holds exactly the work that depends on it, and work that does not is hoisted out. Loops form a tree."""
from __future__ import annotations
import sys
from collections import defaultdict
from lucidgrad.dtype import dtypes, min_max
from lucidgrad.uop.ops import UOp, Ops, _OP_BIT
from lucidgrad.uop.pattern import timed

_REDUCE_BIT = _OP_BIT[Ops.REDUCE]

def identity_element(op: Ops, dt):
  if op is Ops.ADD: return 0
  if op is Ops.MUL: return 1
  if op is Ops.MAX: return min_max(dt)[0]
  raise ValueError(f"no identity for reduce op {op}")

_FMA_DTYPES = (dtypes.float32, dtypes.float64)

def accumulate(op: Ops, running: UOp, value: UOp) -> UOp:
  """The accumulator's update, `running op value`. A float sum of products rounds once per step: acc + x*y becomes
  MULACC(x, y, acc), vector lanes included (a VECTORIZE of products, where the target has no vector arithmetic).
  Nothing else is fused and no sum is reordered: an add the user wrote keeps its two roundings (docs/design/0013).
  A vector value into a scalar accumulator (an unroll's lanes chained, codegen/expand.py) folds in lane by lane."""
  if value.dtype.count > 1 and running.dtype.count == 1:
    for i in range(value.dtype.count): running = accumulate(op, running, _lane(value, i))
    return running
  if op is Ops.ADD and running.dtype.scalar() in _FMA_DTYPES:
    if value.op is Ops.MUL: return UOp(Ops.MULACC, running.dtype, (*value.src, running))
    if value.op is Ops.VECTORIZE and all(s.op is Ops.MUL for s in value.src):
      x, y = (UOp(Ops.VECTORIZE, value.dtype, tuple(s.src[i] for s in value.src)) for i in (0, 1))
      return UOp(Ops.MULACC, running.dtype, (x, y, running))
  return running.alu(op, value)

def _lane(v: UOp, i: int) -> UOp:
  """Lane i of vector value v, looking through VECTORIZE and lane-wise arithmetic (a vectorizer's vector multiply of an
  unroll's products stays a product per lane, so each lane still becomes a multiply-add)."""
  if v.op is Ops.VECTORIZE: return v.src[i]
  if v.op in (Ops.MUL, Ops.ADD) and all(s.dtype.count == v.dtype.count for s in v.src):
    return UOp(v.op, v.dtype.scalar(), tuple(_lane(s, i) for s in v.src), v.arg)
  return UOp(Ops.GEP, v.dtype.scalar(), (v,), i)

def range_sets(sink: UOp, memo: dict[UOp, frozenset[UOp]] | None = None) -> dict[UOp, frozenset[UOp]]:
  """The open RANGEs each node runs inside: those it depends on, minus the ones an END has closed. A node's set depends
  on its graph alone, so `memo` (the answer of an earlier call, which this one extends) spares walking old nodes again."""
  out: dict[UOp, frozenset[UOp]] = {} if memo is None else memo
  for u in (sink.toposort if memo is None else _new_nodes(sink, out)):
    s = _NO_RANGES
    for x in u.src:  # most sources share one set: union only what is new
      if (t := out[x]) is not s and not t <= s: s = t if s is _NO_RANGES else s | t
    if u.op is Ops.RANGE: s = s | {u}
    elif u.op is Ops.END: s = s - {u.src[0]}
    out[u] = s
  return out

_NO_RANGES: frozenset = frozenset()

def _new_nodes(sink: UOp, known: dict) -> list[UOp]:
  """The nodes of sink's graph that `known` lacks, sources first (the graph under a known node is known)."""
  out, stack = [], [sink]
  while stack:
    if (u := stack[-1]) in known: stack.pop(); continue
    if missing := [x for x in u.src if x not in known]: stack.extend(missing); continue
    known[stack.pop()] = _NO_RANGES  # a placeholder, so a node reached twice is listed once; range_sets sets it
    out.append(u)
  return out

def _close(effects: list[UOp], memo: dict[UOp, frozenset[UOp]] | None = None) -> list[UOp]:
  """Wrap effects in ENDs of the ranges they run in, innermost first, so effects in one loop share its END."""
  memo = {} if memo is None else memo
  while True:
    rs = range_sets(UOp.sink(*effects), memo)
    live = frozenset().union(*(rs[e] for e in effects))
    if not live: return effects
    r = max(live, key=lambda r: r.arg[0])
    effects = [e for e in effects if r not in rs[e]] + [UOp(Ops.END, dtypes.void, (r, *[e for e in effects if r in rs[e]]))]

def prefetch_next_block(members: list[UOp], outer: tuple[UOp, ...], loops: tuple[UOp, ...], memo: dict, cache_bytes: int) -> list[UOp]:
  """PREFETCHes for a reduce group's loop body: each global vector load the reduce loops step through that moves with
  an outer loop O but stays still along a loop nested inside O (a weight panel that every row block of a product reads
  again) reads its block from memory once, on the first pass of the inner loop, and from cache after. Its address at
  O + 1 -- the next block, which the same thread takes next (a THREAD loop's share is a run of consecutive blocks) --
  is fetched while the passes over this one run (docs/design/0039). Only from a buffer larger than the thread's cache
  (`cache_bytes`): a smaller one's next block is most likely in cache already, and the hints would only cost issue
  slots. A hint past the buffer's end never faults."""
  inner_of = {r: [m for m in outer if m.arg[0] > r.arg[0] and m.src[0].op is Ops.CONST and m.src[0].arg > 1] for r in outer}
  out: dict[UOp, None] = {}
  for red in members:
    for x in red.src[0].toposort:
      # vector loads: a scalar load (a broadcast) reads a line over many steps, and a hint a step would be mostly waste
      if x.op is not Ops.LOAD or x.dtype.count == 1 or (idx := x.src[0]).op is not Ops.INDEX or (g := idx.src[0]).op is not Ops.DEFINE_GLOBAL: continue
      if g.arg[1] * g.dtype.base().itemsize <= cache_bytes: continue
      rs = range_sets(x, memo)[x]
      if not any(r in rs for r in loops) or not (moving := [r for r in outer if r in rs]): continue
      o = min(moving, key=lambda r: r.arg[0])
      if not any(m not in rs for m in inner_of[o]): continue
      nxt = idx.src[1].substitute({o: o + o.const_like(1)})
      out[UOp(Ops.PREFETCH, dtypes.void, (UOp(Ops.INDEX, idx.dtype, (idx.src[0], nxt, *idx.src[2:])),))] = None
  return list(out)

@timed("add_control_flow")
def add_control_flow(sink: UOp, prefetch: int | None = None) -> UOp:
  """REDUCEs become accumulators, innermost first; REDUCEs over the same loops (the lanes of an upcast) share the
  loops. Then the stores are wrapped in the ENDs of their ranges. Given `prefetch` (a target that has the hint: the
  bytes of a thread's cache), a reduce loop also fetches the next outer block of what it streams (prefetch_next_block)."""
  n_acc, memo = 0, {}  # memo: range sets, shared by every question asked below (see range_sets)
  while reds := sink.find(Ops.REDUCE):
    groups: dict[tuple, list[UOp]] = defaultdict(list)
    for red in reds: groups[tuple(sorted(red.src[1:], key=lambda r: r.arg[0]))].append(red)
    # a group is lowered once none of its members holds an inner REDUCE, so one loop serves all of them
    ready = {k: v for k, v in groups.items() if not any(red.src[0].ops_below & _REDUCE_BIT for red in v)}
    if not ready: raise RuntimeError("add_control_flow: reduces nest in a cycle")
    rep: dict[UOp, UOp] = {}
    for loops, members in ready.items():
      accs, updates = [], []
      # every member's accumulator starts inside all the ranges any member runs in: they share one loop nest, so a
      # lane that does not depend on an outer range (a padded lane of an upcast) must still restart with it, or it
      # sums over that range's iterations too (an index_select of a padded tensor gave 2, 3, ... 7 instead of 1)
      outer = tuple(sorted(frozenset().union(*(range_sets(red, memo)[red] for red in members)) - set(loops), key=lambda r: r.arg[0]))
      for red in members:
        acc = UOp(Ops.DEFINE_REG, red.dtype, outer, (n_acc, identity_element(red.arg, red.dtype)))
        n_acc += 1
        accs.append(acc)
        # the running value is read inside the loops, so the update is never hoisted out of them
        running = UOp(Ops.LOAD, red.dtype, (acc, *loops))
        updates.append(UOp(Ops.ASSIGN, red.dtype, (acc, accumulate(red.arg, running, red.src[0]), *loops)))
      end: tuple[UOp, ...] = tuple(updates) + (tuple(prefetch_next_block(members, outer, loops, memo, prefetch)) if prefetch is not None else ())
      for r in reversed(loops): end = (UOp(Ops.END, dtypes.void, (r, *end)),)
      for red, acc in zip(members, accs): rep[red] = UOp(Ops.LOAD, red.dtype, (acc, end[0]))
    sink = sink.substitute(rep)
  return UOp.sink(*_close(list(sink.src), memo))

@timed("linearize")
def linearize(sink: UOp) -> list[UOp]:
  """The nodes of `sink` in execution order. A RANGE opens its loop and its END closes it; a node goes in the
  innermost loop it depends on, and is placed as soon as every range it needs is open (hoisting the rest)."""
  rngs = range_sets(sink)
  out: list[UOp] = []
  done: set[UOp] = set()
  open_: set[UOp] = set()
  def place(n: UOp):
    if n in done: return
    if n.op is Ops.END: return place_loop(n)
    for s in n.src: place(s)
    out.append(n)
    done.add(n)
  def loads_first(nodes):
    """A scope's reads of global memory before its other work: a thread's loads are all in flight at once (two float4
    lanes of an elementwise kernel: the second load is not queued behind the first lane's math and store)."""
    for x in nodes:
      if x.op is Ops.LOAD and x.src[0].op is Ops.INDEX and x.src[0].src[0].op is Ops.DEFINE_GLOBAL and rngs[x] <= open_: place(x)
  def place_loop(end: UOp):
    r = end.src[0]
    body = [x for x in end.toposort if x not in done and x is not end and x is not r and x.op is not Ops.RANGE]
    for x in body:
      if r not in rngs[x] and rngs[x] <= open_: place(x)
    for s in r.src: place(s)  # its end (and a Variable's bound on it: codegen/opt/kernel.end_masked_reduces)
    out.append(r); done.add(r); open_.add(r)
    loads_first(body)
    # tensor-core ops step by step of their accumulator chains: the first op of every chain, then the second, ...
    # (a chain's next op waits out the last one's latency; in chain order, warps stalled on it: ncu, H100, 8192^3
    # float16, "wait" the first stall reason)
    depth: dict[UOp, int] = {}
    for x in body:
      if x.op is Ops.WMMA: depth[x] = depth[x.src[2]] + 1 if x.src[2] in depth else 0
    for x in sorted(depth, key=depth.__getitem__):
      if rngs[x] <= open_: place(x)
    for x in body:
      if rngs[x] <= open_: place(x)
    open_.remove(r)
    out.append(end); done.add(end)
  old = sys.getrecursionlimit()
  sys.setrecursionlimit(max(old, 20000))
  try:
    loads_first(sink.toposort)
    place(sink)
  finally: sys.setrecursionlimit(old)
  return out
