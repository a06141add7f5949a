"""Lowering a kernel's tensor graph to index arithmetic: an INDEX(node, *idx, valid) is pushed down through the graph
by rules, one per op. Movement ops become index maps, a PAD becomes a guard on the index, a REDUCE_AXIS opens new
RANGEs, a GATHER reads its index and indexes its table with the value, and reaching a param becomes a LOAD through a
pointer INDEX."""
from __future__ import annotations
from lucidgrad.dtype import DType, dtypes, min_max
from lucidgrad.helpers import strides_for_shape
from lucidgrad.uop.ops import UOp, Ops, GroupOp, AxisType
from lucidgrad.uop.pattern import UPat, PatternMatcher, graph_rewrite, timed, VIZ

TRUE = UOp.const(dtypes.bool, True)

def index_range(end: int, kind: AxisType, rid: tuple, dt: DType) -> UOp:
  """A RANGE counting in the kernel's index dtype."""
  return UOp(Ops.RANGE, dt, (UOp.const(dt, end),), (rid, kind))

class LowerCtx:
  def __init__(self, first_rid: int, idt: DType):
    self.next_rid, self.idt = first_rid, idt
    # each reduce read at one index is lowered once: a softmax reads its row max at (i, 0) both in the sum and in the
    # output. Held here, the INDEX stays alive, so building it again (interned) finds it; the rewriter keeps no
    # memo of the steps between a node and what it finally becomes
    self.reduces: dict[UOp, UOp] = {}
  def new_range(self, end: int, kind: AxisType) -> UOp:
    r = index_range(end, kind, (self.next_rid,), self.idt)
    self.next_rid += 1
    return r

def index(node: UOp, idx, valid: UOp) -> UOp:
  """The value of tensor-level `node` at `idx` (one index per axis), for elements where `valid` holds."""
  return UOp(Ops.INDEX, node.dtype.base() if node.dtype.ptr else node.dtype, (node, *idx, valid))  # base() of a non-pointer is itself

def linear_index(idx, shape, dt: DType) -> UOp:
  terms = [i * st if st != 1 else i for i, s, st in zip(idx, shape, strides_for_shape(shape)) if s != 1]
  out = UOp.const(dt, 0)
  for t in terms: out = t if out.op is Ops.CONST and out.arg == 0 else out + t
  return out

def reshape_index(idx, new_shape, old_shape, dt: DType) -> list[UOp]:
  """Where an index is read it is in bounds (an out-of-bounds one is guarded off), so the outermost axis needs no mod."""
  lin = linear_index(idx, new_shape, dt)
  return [UOp.const(dt, 0) if s == 1 else lin // st if a == 0 else (lin // st) % s
          for a, (s, st) in enumerate(zip(old_shape, strides_for_shape(old_shape)))]

def _parts(x: UOp): return x.src[0], list(x.src[1:-1]), x.src[-1]

def lower_movement(ctx: LowerCtx, x: UOp, n: UOp) -> UOp:
  n, idx, valid = _parts(x)
  src, arg = n.src[0], n.arg
  match n.op:
    case Ops.RESHAPE:
      while src.op is Ops.RESHAPE: src = src.src[0]  # a chain of reshapes is one: no div/mod through the middle shape
      return index(src, reshape_index(idx, n.shape, src.shape, ctx.idt), valid)
    case Ops.PERMUTE:
      old = [None] * len(idx)
      for i, p in enumerate(arg): old[p] = idx[i]
      return index(src, old, valid)
    case Ops.EXPAND: return index(src, [UOp.const(ctx.idt, 0) if s == 1 else i for i, s in zip(idx, src.shape)], valid)
    case Ops.SHRINK: return index(src, [i + _offset(b, ctx.idt) if isinstance(b, UOp) or b else i for i, (b, _) in zip(idx, arg)], valid)
    case Ops.FLIP: return index(src, [(s - 1) - i if d in arg else i for d, (i, s) in enumerate(zip(idx, src.shape))], valid)
    case Ops.PAD:
      inside, new_idx = TRUE, []
      for i, (b, _), s in zip(idx, arg, src.shape):
        j = i - _offset(b, ctx.idt) if isinstance(b, UOp) or b else i
        if (b, _) != (0, 0): inside = inside & (j >= 0) & (j < s)
        new_idx.append(j)
      return inside.where(index(src, new_idx, valid & inside), UOp.const(x.dtype, 0))
  raise AssertionError(n.op)

def _offset(b, idt: DType):
  """A movement's offset in the kernel's index dtype: an int, or an expression of Variables (docs/design/0029)."""
  return b if not isinstance(b, UOp) or b.dtype == idt else b.cast(idt)

def lower_reduce(ctx: LowerCtx, x: UOp, n: UOp) -> UOp:
  if (done := ctx.reduces.get(x)) is not None: return done
  ctx.reduces[x] = out = _lower_reduce(ctx, x)
  return out

def _lower_reduce(ctx: LowerCtx, x: UOp) -> UOp:
  n, idx, valid = _parts(x)
  op, axes = n.arg
  src = n.src[0]
  new_idx = list(idx)
  ranges = []
  for a in axes:
    new_idx[a] = ctx.new_range(src.shape[a], AxisType.REDUCE)
    ranges.append(new_idx[a])
  return UOp(Ops.REDUCE, x.dtype, (index(src, new_idx, valid), *ranges), op)

def lower_gather(ctx: LowerCtx, x: UOp, n: UOp) -> UOp:
  """The table read at the position the index holds: like a PAD, an index outside [0, size) is guarded off (0 is read;
  check_index raises at the next host read) and the address is clamped into the table as well, so it never points
  outside it, even unread, and its bounds -- the table's -- keep int32 index math where the table fits it."""
  n, idx, valid = _parts(x)
  table, d = n.src[0], n.arg
  inside, row = _loaded_row(n.src[1], idx, valid, table.shape[d], ctx.idt)
  # the read is gated by `valid` alone: its address is in the table whatever the index holds, and a select after it is
  # no branch in a row's inner loop (a gate there is one per vector, and C compilers at -O2 keep it in the loop)
  return inside.where(index(table, [*idx[:d], row, *idx[d+1:]], valid), UOp.const(x.dtype, 0))

def _loaded_row(where: UOp, idx, valid: UOp, size: int, idt: DType) -> tuple[UOp, UOp]:
  """(whether the index `where` holds at `idx` is in [0, size), that index clamped into [0, size) in `idt`)."""
  pos = index(where, idx, valid)  # the index's value here, in its own int dtype (a LOAD once lowered)
  inside = (pos >= 0) & (pos < size)
  # clamped in int32 where the table's axis fits it: the bounds of every step fit int32, whatever the index's dtype
  narrow = dtypes.int32 if size <= 2**31 else dtypes.int64
  row = pos.cast(narrow).maximum(0)
  return inside, ((size - 1) - ((size - 1) - row).maximum(0)).cast(idt)

def lower_scatter(out: UOp, value: UOp, idt: DType) -> UOp:
  """A SCATTER's adds (its base is `out` as the first kernel left it): loops over the index's shape, each a load, an add
  and a store at the output position with d replaced by the loaded index (op None: a store). An index outside [0, size)
  writes nothing (the gate; check_index raises at the next host read), and its address is clamped into the buffer, as
  a gather's is. Two source elements that differ along d may hit one address: the Kernel keeps that loop serial."""
  _, ix, src = value.src
  d, op = value.arg
  ranges = [index_range(s, AxisType.LOOP, (i,), idt) for i, s in enumerate(ix.shape)]
  inside, row = _loaded_row(ix, ranges, TRUE, value.shape[d], idt)
  target = UOp(Ops.INDEX, out.dtype, (out, linear_index([*ranges[:d], row, *ranges[d+1:]], value.shape, idt), inside))
  v = index(src, ranges, TRUE)
  # the read of the add waits for d's loop, as an accumulator's read does (linearize): where the address does not
  # move along d (an index that is one value repeated: x[i.expand(n)]) it would be hoisted out of the loop, and each
  # pass would add to the value read before it, the last add winning (fuzz seed 18143)
  if op is not None: v = UOp(Ops.LOAD, out.dtype.base(), (target, ranges[d])).alu(op, v)
  return UOp.sink(UOp(Ops.STORE, dtypes.void, (target, v)))

def lower_param(x: UOp, n: UOp) -> UOp:
  n, idx, valid = _parts(x)
  return UOp(Ops.LOAD, n.dtype.base(), (UOp(Ops.INDEX, n.dtype, (n, idx[0], valid)),))

def _value_index(op) -> UPat: return UPat(Ops.INDEX, src=(UPat(op, name="n"),), allow_any_len=True, name="x")

pm_lower_index = PatternMatcher([
  (_value_index(tuple(GroupOp.Movement)), lower_movement),
  (_value_index(Ops.REDUCE_AXIS), lower_reduce),
  (_value_index(Ops.GATHER), lower_gather),
  (_value_index(tuple(GroupOp.Elementwise)), lambda x, n: n.replace(src=tuple(index(s, x.src[1:-1], x.src[-1]) for s in n.src))),
  (_value_index(Ops.CONST), lambda x, n: UOp.const(n.dtype, n.arg)),
  # a tensor-level Variable is one value everywhere: the kernel's scalar parameter (docs/design/0029)
  (_value_index(Ops.DEFINE_VAR), lambda x, n: UOp(Ops.DEFINE_VAR, n.dtype, (), n.arg)),
  (_value_index(Ops.CONTIGUOUS), lambda x, n: index(n.src[0], x.src[1:-1], x.src[-1])),
  (_value_index(Ops.DEFINE_GLOBAL), lambda x, n: lower_param(x, n) if not x.dtype.ptr else None),
])

# the kernels lowered last, by (ast, index dtype): BEAM builds many programs of one kernel, each lowering it again; a
# few, not every AST the engine holds, so the lowered graphs (and the simplified ones graph_rewrite remembers on their
# roots) do not grow memory with the number of kernels a process runs
_lowered: dict[tuple[UOp, DType], UOp] = {}
LOWERED_KEPT = 16

def lower_kernel(ast: UOp, idt: DType = dtypes.index) -> UOp:
  """SINK(STORE(param, value)) at tensor level -> a kernel-level SINK of STOREs over RANGEs, with index math in `idt`."""
  # with VIZ every lowering runs, so that its passes are recorded
  if (out := None if VIZ.value else _lowered.pop((ast, idt), None)) is None: out = _lower_kernel(ast, idt)
  _lowered[(ast, idt)] = out  # most recent last
  if len(_lowered) > LOWERED_KEPT: del _lowered[next(iter(_lowered))]
  return out

def _lower_kernel(ast: UOp, idt: DType) -> UOp:
  store = ast.src[0]
  out, value = store.src
  if value.op is Ops.SCATTER: return graph_rewrite(lower_scatter(out, value, idt), pm_lower_index, LowerCtx(len(value.src[1].shape), idt), top_down=True, name="lower index")
  ranges = [index_range(s, AxisType.LOOP, (i,), idt) for i, s in enumerate(value.shape)]
  if out.op is Ops.DEFINE_GLOBAL: target = UOp(Ops.INDEX, out.dtype, (out, linear_index(ranges, value.shape, idt), TRUE))
  else:  # a region of the buffer (schedule._region_write): its address is the view's, lowered as a read's would be
    target = graph_rewrite(index(out, ranges, TRUE), pm_lower_index, LowerCtx(len(ranges), idt), top_down=True, name="lower store view").src[0]
  sink = UOp.sink(UOp(Ops.STORE, dtypes.void, (target, index(value, ranges, TRUE))))
  return graph_rewrite(sink, pm_lower_index, LowerCtx(len(ranges), idt), top_down=True, name="lower index")

def index_fits_int32(sink: UOp) -> bool:
  """Whether every index value of a kernel lowered with int64 indexes -- loop bounds, counters, addresses, the operands
  of its guards -- fits int32, by value bounds. These are the nodes under its RANGEs and pointer INDEXes, down to a
  LOAD: a gather's loaded index is data in its own dtype (compared as it is, then clamped), and the INDEX it is loaded
  through is a root of its own. A node whose bounds are unknown spans all of int64, so it does not fit."""
  lo, hi = min_max(dtypes.int32)
  stack = [s for u in sink.toposort if u.op is Ops.INDEX for s in u.src[1:]] + [u for u in sink.toposort if u.op is Ops.RANGE]
  seen: set[UOp] = set()
  while stack:
    if (n := stack.pop()) in seen or n.op is Ops.LOAD: continue
    seen.add(n)
    if n.dtype.is_int() and not (lo <= n.vmin and n.vmax <= hi): return False
    stack.extend(n.src)
  return True

def serial_ranges(sink: UOp) -> frozenset[UOp]:
  """The ranges that must run in order, one iteration at a time: those a store through an address holding a loaded
  value (a scatter) moves with, other than the ranges its address names directly. Two iterations along such a
  range may write one address, so splitting it over threads or vector lanes would lose an add or pick another winner;
  run in order, the writes into one address come in source order (docs/design/0017). A range its gate names is still
  serial: PADTO gates the range it pads, and BEAM once upcast a scatter's padded token loop. A reduce's value in the
  address is data as a load's is: the ranges under it do not name the address (cummax's gradient scatters each
  position's g to the argmax of its running window; ties send several positions to one index, and with the position
  loop upcast, 8 lanes read-added-wrote it together and lost all but one add -- seen on AVX2). Remembered on the sink."""
  if (out := sink.__dict__.get("_serial_ranges")) is None:
    found: set[UOp] = set()
    def below(roots: tuple) -> tuple[set[UOp], bool]:  # the nodes down to the loads, and whether any load was met
      seen, stack, loaded = set(), list(roots), False
      while stack:
        if (n := stack.pop()) in seen: continue
        seen.add(n)
        if n.op in (Ops.LOAD, Ops.REDUCE): loaded = True
        else: stack.extend(n.src)
      return seen, loaded
    for st in sink.toposort:
      if st.op is not Ops.STORE or st.src[0].op is not Ops.INDEX: continue
      named, loaded = below(st.src[0].src[1:2])
      if loaded or below(st.src[0].src[2:])[1]: found |= {u for u in st.toposort if u.op is Ops.RANGE and u not in named}
    out = sink.__dict__["_serial_ranges"] = frozenset(found)
  return out

@timed("index_dtype")
def index_dtype(ast: UOp) -> DType:
  """int32 index math while every index value fits it (faster, and what small kernels always get); int64 otherwise,
  so a kernel over 2**31 or more elements, or one whose addresses pass 2**31, never wraps. Decided on the kernel
  lowered with int64 indexes, where loop bounds and strides are exact and bounds cannot wrap. Remembered on the AST (a
  fact of it alone), so a kernel built again is lowered once, not twice."""
  if (idt := ast.__dict__.get("_index_dtype")) is None:
    idt = ast.__dict__["_index_dtype"] = dtypes.index if index_fits_int32(lower_kernel(ast, dtypes.int64)) else dtypes.int64
  return idt
