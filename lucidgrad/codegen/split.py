"""Range splitting (docs/design/0016): a kernel whose loads are gated by comparisons affine in an output range is cut
into boxes of the output where every such comparison is decided, so each box loads only what it stores, with no gate.
Each box is its own Kernel (its own opts); the program runs the boxes one after another."""
from __future__ import annotations
from lucidgrad.helpers import prod, THREADS
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.uop.symbolic import _terms
from lucidgrad.codegen import Opt, OptOps, KernelOptError
from lucidgrad.codegen.opt import axis_of, estimated_work, expanded_ops, MIN_THREAD_WORK, LANE_OPS_BUDGET
from lucidgrad.uop.pattern import UPat, PatternMatcher, graph_rewrite
from lucidgrad.codegen.opt.kernel import Kernel, kernel_ranges, kernel_name, index_range, pm_kernel_simplify, stride_of

MAX_BOXES = 1024  # more boxes than this and the kernel keeps its gates: each box is a loop nest of source to compile

def _gate_compares(sink: UOp) -> list[UOp]:
  """The integer comparisons that gate loads, down to (not through) a loaded value."""
  out, seen = [], set()
  stack = [ld.src[0].src[2] for ld in sink.toposort if ld.op is Ops.LOAD and ld.src[0].op is Ops.INDEX and len(ld.src[0].src) == 3]
  while stack:
    if (u := stack.pop()) in seen or u.op is Ops.LOAD: continue
    seen.add(u)
    if u.op is Ops.CMPLT and u.src[0].dtype.is_int(): out.append(u)
    stack.extend(u.src)
  return out

def _cuts(cmp: UOp, r: UOp) -> tuple[int, ...]:
  """Where `a < b` changes from decided to undecided along range r: with a - b = k*r + rest (rest not reading r), the
  comparison holds for every value of the other ranges below one cut and for none past the other (k > 0; mirrored for
  k < 0). No cut where a - b is not affine in r."""
  (ta, ca), (tb, cb) = _terms(cmp.src[0]), _terms(cmp.src[1])
  terms = dict(ta)
  for t, c in tb.items(): terms[t] = terms.get(t, 0) - c
  k = terms.pop(r, 0)
  # a comparison that also reads a reduce range (a conv's window over its padded input) is decided only in boxes whose
  # sizes break the output's upcast (56 -> 54 wide: measured 2x slower), so it keeps its gate
  if k == 0 or any(u is r or (u.op is Ops.RANGE and u.arg[1] is AxisType.REDUCE) for t in terms for u in t.toposort): return ()
  lo = hi = ca - cb
  for t, c in terms.items():
    a, b = c * t.vmin, c * t.vmax
    lo, hi = lo + min(a, b), hi + max(a, b)
  # k*r + bound < 0 flips at r = -bound/k: from the first r where it fails (k > 0) or holds (k < 0)
  return tuple(-(b // k) if k > 0 else (-b) // k + 1 for b in (hi, lo))

def split_boxes(k: Kernel) -> list[Kernel]:
  """Unopted kernel `k` cut at every cut of its load gates into boxes of its output, each a Kernel of its own whose
  gates folded; [k] where nothing splits. Cut in halves, each half simplified before it is cut again, so a cat of N
  pieces simplifies its graph of N picks O(N log N) times, not once per box."""
  # the boxes run in one program whose graph does not order one box's load after another box's store: a kernel that
  # reads a buffer it stores into stays whole unless each element is read only where it is stored (an in-place
  # update: the same index, no loaded value in it). A scatter adding into its output (a gather's gradient whose indices
  # repeat) read the sum in its second box before the first box had added to it (fuzz seed 9433: a lost term)
  stores: dict[UOp, set[UOp]] = {}
  for u in k.sink.toposort:
    if u.op is Ops.STORE: stores.setdefault(u.src[0].src[0], set()).add(u.src[0].src[1])
  def races(ld: UOp) -> bool:
    idx = ld.src[0]
    return idx.src[0] in stores and (idx.src[1] not in stores[idx.src[0]] or any(x.op is Ops.LOAD for x in idx.toposort))
  if any(u.op is Ops.LOAD and races(u) for u in k.sink.toposort): return [k]
  ranges = {r.arg[0][0]: r for r in kernel_ranges(k.sink) if r.arg[1] is AxisType.LOOP and len(r.arg[0]) == 1}
  # each axis as far as its loop runs: a scatter's loop runs over its updates, not over the output it adds into (a
  # (3, 4) gradient scattered into a (3, 8) one was cut as 8 wide and read its 4 indices out of bounds)
  extents = [ranges[a].src[0].arg if a in ranges else s for a, s in enumerate(k.ast.src[0].src[1].shape)]
  cuts: list[set[int]] = [set() for _ in extents]
  for cmp in _gate_compares(k.sink):
    for axis, r in ranges.items(): cuts[axis].update(c for c in _cuts(cmp, r) if 0 < c < extents[axis])
  for axis, c in _peels(k, ranges, extents): cuts[axis].add(c)
  if not 1 < prod(len(c) + 1 for c in cuts) <= MAX_BOXES: return [k]
  def halves(sink: UOp, box: tuple[tuple[int, int], ...]) -> list[Kernel]:
    for axis, (lo, hi) in enumerate(box):
      if inner := sorted(c for c in cuts[axis] if lo < c < hi):
        mid = inner[len(inner) // 2]
        return halves(_narrow(sink, axis, lo, lo, mid), box[:axis] + ((lo, mid),) + box[axis+1:]) + \
               halves(_narrow(sink, axis, lo, mid, hi), box[:axis] + ((mid, hi),) + box[axis+1:])
    part = k.copy()
    part._set(sink)
    part.unopted, part.name = sink, kernel_name(sink)
    return [part]
  boxes = halves(k.sink, tuple((0, s) for s in extents))
  # a box with no loop stores at a constant address, and codegen groups neighbouring scalar stores into one vector
  # store: lanes from two boxes' reduces would then share a vector whose lanes read two different reduce loops
  if any(map(_reduce_without_loop, boxes)): return [k]
  # each box is a copy of the body, less what its gates fold away, and compile time grows with the copies: the boxes
  # together may hold a program's budget of ops (or the unsplit body's, if larger). A fuzzed kernel of 3x4x7 outputs cut
  # into dozens of boxes of its whole expression took 1.7 s to compile against 0.5 s unsplit; a cat's boxes are a load each
  whole = max(LANE_OPS_BUDGET, expanded_ops(k.sink, {}, k.idt))
  return [k] if sum(expanded_ops(b.sink, {}, b.idt) for b in boxes) > whole else boxes

PEEL_BLOCKS = 4  # a peeled axis keeps at least this many blocks of two vectors in its body

def _peels(k: Kernel, ranges: dict[int, UOp], extents: list[int]) -> list[tuple[int, int]]:
  """Where a reduce's output axis that its stores walk contiguously is not a whole number of blocks of two vectors (the
  widest block the opts give a row of outputs: GPT-2's 50257 logits), the cut after the last whole block: the body
  then takes the vector layouts (the outer-product block needs whole vectors; padded, its lanes fragment: 53 against
  ~200 GFLOP/s) and the rest, a few columns, is a box of its own."""
  if not k.renderer.vector_bytes or not any(u.op is Ops.REDUCE for u in k.sink.toposort): return []
  out = []
  for st in (u for u in k.sink.src if u.op is Ops.STORE):
    block = 2 * k.renderer.vector_bytes // st.src[1].dtype.itemsize
    for axis, r in ranges.items():
      if stride_of(st.src[0].src[1], r) == 1 and (n := extents[axis]) >= PEEL_BLOCKS * block and n % block: out.append((axis, n - n % block))
  return out

def _reduce_without_loop(b: Kernel) -> bool:
  return all(a.arg[1] is not AxisType.LOOP for a in b.axes) and any(u.op is Ops.REDUCE for u in b.sink.toposort)

def _narrow(sink: UOp, axis: int, at: int, lo: int, hi: int) -> UOp:
  """`sink`, whose output axis `axis` counts from element `at`, over elements lo..hi of that axis only, simplified."""
  r = next(u for u in sink.toposort if u.op is Ops.RANGE and u.arg == ((axis,), AxisType.LOOP))
  nr = index_range(hi - lo, AxisType.LOOP, (axis,), r.dtype)
  sink = graph_rewrite(sink.substitute({r: nr + (lo - at) if lo != at else nr}), pm_decided_picks, top_down=True, name="decided picks")
  return graph_rewrite(sink, pm_kernel_simplify, name="split range")

# a pick whose condition the box decides, taken from the top down: the branch not taken is never visited (a cat's chain
# of N picks would otherwise be simplified whole in every box)
pm_decided_picks = PatternMatcher([
  (UPat(Ops.WHERE, name="w"), lambda w: None if w.src[0].vmin != w.src[0].vmax else w.src[1] if w.src[0].vmin else w.src[2]),
])

def _renumber(sink: UOp, box: int, first_local: int) -> UOp:
  """Box `box`'s ranges under ids of their own, (box, *id), so boxes' loops never merge; its scratch buffers numbered
  from `first_local`."""
  sub = {r: index_range(r.src[0].arg, r.arg[1], (box, *r.arg[0]), r.dtype) for r in sink.toposort if r.op is Ops.RANGE}
  locs = sorted({u for u in sink.toposort if u.op is Ops.DEFINE_LOCAL}, key=lambda u: u.arg[0])
  sub.update({u: u.replace(arg=(first_local + i, *u.arg[1:])) for i, u in enumerate(locs)})
  return sink.substitute(sub)

_REDUCE_SIDE = (AxisType.REDUCE, AxisType.UNROLL, AxisType.GROUP, AxisType.TILE)

def _reduce_loops(box: Kernel) -> list[tuple]:
  return [(r.arg, r.src[0].arg) for r in box.axes if r.arg[1] is AxisType.REDUCE]

def _reduce_plan(box: Kernel, applied: list[Opt]) -> list[tuple]:
  """The opts of `applied` that decide the order a reduce sums in (those on the reduce's axes: unroll, tile, pad, the
  order of its loops), each with its axes named by range id and kind, as they replay on `box` unopted."""
  k, plan = box.copy(), []
  for o in applied:
    a = k.axes[o.axis]
    b = k.axes[o.amount] if o.op is OptOps.SWAP else None
    # (a STAGE copies an input and sums nothing: a remainder box need not stage what the largest box stages)
    if o.op is not OptOps.STAGE and (a.arg[1] in _REDUCE_SIDE or (b is not None and b.arg[1] in _REDUCE_SIDE)):
      plan.append((o.op, a.arg, b.arg if b is not None else o.amount))
    k.apply_opt(o)
  return plan

def _follow(box: Kernel, opted: Kernel, plan: list[tuple]) -> Kernel | None:
  """`box` (unopted; `opted` is it with its own opts) summing in the order of `plan`. Where its own opts differ only by
  a cache tile the largest box took (its own footprint fit the cache), they keep their block and take the tile too;
  else it gets the reduce opts of `plan` alone (its output axes no block: it is the small box); None where those
  name an axis only the largest box has (a swap with its output lanes)."""
  tiles = [t for t in plan if t[0] is OptOps.TILE]
  if [t for t in plan if t[0] is not OptOps.TILE] == _reduce_plan(box, opted.applied):
    k = opted.copy()
    try:
      for _, ident, amount in tiles: k.apply_opt(Opt(OptOps.TILE, _find(k, ident), amount))
      if _reduce_plan(box, k.applied) == plan: return k
    except KernelOptError: pass
  k = box.copy()
  try:
    for op, ident, amount in plan: k.apply_opt(Opt(op, _find(k, ident), _find(k, amount) if op is OptOps.SWAP else amount))
  except KernelOptError: return None
  return k

def _find(k: Kernel, ident: tuple) -> int:
  """axis_of, raising KernelOptError where the kernel has no such axis (the plan swapped in an output axis's lanes)."""
  try: return axis_of(k, ident)
  except StopIteration: raise KernelOptError(f"no axis {ident} in {k.name}") from None

def split_kernel(k: Kernel, boxes: list[Kernel], opts_of) -> Kernel | None:
  """One Kernel whose sink stores every box in turn, each given `opts_of(box, budget)`: the lane budget of one program
  (LANE_OPS_BUDGET, what bounds its source and its compile) shared by the boxes in proportion to their ops. On CPU
  threads, each box's outermost loop is split over the same threads (a box without a loop would run on every thread,
  so then the program keeps one); the FLOPs counted are the whole kernel's, as written (`k.unopted`). None where the
  boxes cannot all sum their reduce in one order (the kernel then runs whole, with its gates)."""
  ops = [max(1, expanded_ops(b.sink, {}, b.idt)) for b in boxes]
  unopted = [b.copy() for b in boxes]  # opts_of applies its opts in place
  parts = [opts_of(b, LANE_OPS_BUDGET * n // sum(ops)) for b, n in zip(boxes, ops)]
  # every box sums its reduce in the order of the largest's: outputs that compute the same formula on the same inputs
  # round the same whichever box holds them (a peeled tail of 8 logits of 1000 was tiled differently and its sums
  # moved by an ulp: ONNX's light nets then softmaxed constant logits of ~1e19 unevenly)
  main = max(range(len(boxes)), key=ops.__getitem__)
  loops = _reduce_loops(unopted[main])
  plan = _reduce_plan(unopted[main], parts[main].applied) if loops else []
  for i, (b, p) in enumerate(zip(unopted, parts)):
    # (boxes that run other reduces, a cat of several, compute other formulas: theirs is their own)
    if loops and i != main and _reduce_loops(b) == loops and _reduce_plan(b, p.applied) != plan:
      if (follower := _follow(b, p, plan)) is None: return None
      parts[i] = follower
  ren, threads = k.renderer, 1
  if ren.has_cpu_threads and THREADS > 1 and sum(estimated_work(p) for p in parts) >= MIN_THREAD_WORK:
    axes = [next((i for i, r in enumerate(p.axes) if r.arg[1] is AxisType.LOOP and r.src[0].arg > 1), None) for p in parts]
    if all(a is not None for a in axes):
      threads = int(THREADS)
      for p, a in zip(parts, axes): p.apply_opt(Opt(OptOps.THREAD, a, min(threads, p.sizes()[a])))
  stores, n_local = [], 0
  for i, p in enumerate(parts):
    # linearize closes the loops of the highest id first and lists them last to first: boxes in memory order
    stores.extend(_renumber(p.sink, len(parts) - 1 - i, n_local).src)
    n_local += len({u for u in p.sink.toposort if u.op is Ops.DEFINE_LOCAL})
  out = k.copy()
  out._set(UOp.sink(*stores))
  out.applied = [o for p in parts for o in p.applied]
  out.threads = threads
  return out
