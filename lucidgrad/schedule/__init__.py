"""The scheduler: a tensor graph -> an ordered list of kernels and copies, with a memory plan.
It decides what gets a buffer, cuts the graph into kernels there, and orders them. Knows nothing of how kernels compile."""
from __future__ import annotations
import functools, weakref
from dataclasses import dataclass
from collections import defaultdict
from lucidgrad.dtype import dtypes
from lucidgrad.helpers import DEBUG
from lucidgrad.uop.ops import UOp, Ops, GroupOp, _OP_BIT, ssimplify, take_as_gather
import lucidgrad.uop.ops as ops_module
from lucidgrad.uop.pattern import UPat, PatternMatcher, graph_rewrite, graph_rewrite_map, VIZ
from lucidgrad.device import Buffer, Device, buffer_of
from lucidgrad.engine.profile import host_slice
from lucidgrad.schedule.cost import NESTED_REDUCE_MIN, REDUCE_PARTIALS, buffer_pays, epilogue_pays, kernel_full, lowered_size, reduce_once_pays, split_pays

@dataclass(frozen=True)
class ScheduleItem:
  """One step: a kernel (ast is SINK(STORE(param 0, value)) over params DEFINE_GLOBAL(slot, size)) or a copy.
  bufs[i] is the BUFFER UOp behind param i; bufs[0] is written."""
  kind: str                     # "kernel" | "copy"
  ast: UOp
  bufs: tuple[UOp, ...]
  reason: str = ""              # why its output has a buffer: the scheduler's decision that made it (docs/design/0030)

# ops and op sets read per node here (the realize path included), named once: an `Ops.X` look-up costs ~0.2 us on 3.11
# (EnumType defines __getattr__), a set difference more
_BUFFER, _RESHAPE, _REDUCE_AXIS, _EXPAND, _PAD, _CONST, _CONTIGUOUS, _ASSIGN, _COPY = (
  Ops.BUFFER, Ops.RESHAPE, Ops.REDUCE_AXIS, Ops.EXPAND, Ops.PAD, Ops.CONST, Ops.CONTIGUOUS, Ops.ASSIGN, Ops.COPY)
# the nodes a path records: each reads its source at other indices (a GATHER at the ones its index holds)
_PATH_OPS = GroupOp.Movement | {Ops.REDUCE_AXIS, Ops.GATHER}
_READS_OTHERS = GroupOp.Movement - {Ops.RESHAPE} | {Ops.GATHER, Ops.SCATTER}  # element i reads elements of its source other than i
_INDEX_ONLY = GroupOp.Movement - {Ops.PAD}                 # movements that lower to index math alone
_NO_KERNEL, _NO_BUFFER_NEEDED = frozenset({Ops.SINK, Ops.BUFFER, Ops.DEVICE}), frozenset({Ops.BUFFER, Ops.DEVICE})

def is_buffer_view(u: UOp) -> bool:
  """A BUFFER seen whole and in order (through any chain of reshapes): it needs no kernel to be read as this shape."""
  while u.op is _RESHAPE: u = u.src[0]
  return u.op is _BUFFER

# ---- values already computed, and reads bound to storages (docs/design/0005) ----
class StaleReadError(RuntimeError):
  """A value reads contents of a tensor that an in-place write has since replaced."""

# a node's remembered value -- a view of the storage version holding it -- is kept on the node (its `stored` slot), so
# it lives as long as the node and is found with one dict get; a value whose storage has moved on is not used
def remembered(u: UOp) -> UOp | None: return u.stored

def _strip_reshapes(u: UOp) -> UOp:
  while u.op is _RESHAPE: u = u.src[0]
  return u

def is_current(view: UOp) -> bool:
  """Is this versioned buffer view (BUFFER, or a reshape of one) the contents its storage holds now?"""
  b = _strip_reshapes(view)
  return buffer_of(b).version == b.arg[2]

def cached_value(u: UOp) -> UOp | None:
  """The current buffer view holding `u`'s value, if a realize computed it and no write has replaced it since."""
  return v if (v := u.stored) is not None and is_current(v) else None

# nodes with no storage, write or copy below them: a graph of constants, equal to any node of the same structure
STATEFUL = sum(_OP_BIT[op] for op in (Ops.BUFFER, Ops.ASSIGN, Ops.CONTIGUOUS, Ops.COPY))
# how many times a value was remembered for such a node: the schedule cache's walk skips over constant graphs that had
# no remembered value inside them the last time it looked, as long as this has not moved since (schedule/cache.py)
constant_values_remembered = 0

def is_broadcast_literal(u: UOp) -> bool:
  """A CONST seen through reshapes and expands: one literal in any kernel that reads it."""
  while u.op is _RESHAPE or u.op is Ops.EXPAND: u = u.src[0]
  return u.op is Ops.CONST

def substituted_value(u: UOp) -> UOp | None:
  """The buffer view a graph holding `u` reads instead of computing it: `u`'s remembered value, but never a broadcast
  literal's. Nodes are hash-consed, so a literal's node is shared by every graph that holds the same constant, and
  reading it from a buffer hides it from folding and from the opts: a realized, alive `Tensor.ones(1, dtype=int32)`
  made every later int32 arange load its step, and argmax over 1001 columns lose its vector opts (docs/design/0035).
  The value stays remembered for reads of that node itself (a view of a constant, a jit's outputs)."""
  return None if (v := cached_value(u)) is None or is_broadcast_literal(u) else v

def remember_value(u: UOp, view: UOp, buf: Buffer | None = None):
  """`u`'s value is `view` (a buffer view; `buf` its storage, if the caller has it at hand)."""
  global constant_values_remembered
  # what a constant graph's walk entry depends on (schedule/cache.py); a literal's value is never substituted
  if not u.ops_below & STATEFUL and not is_broadcast_literal(u): constant_values_remembered += 1
  u.stored = view
  (cached := (buf or buffer_of(_strip_reshapes(view))).cached).append(weakref.ref(u))  # add_weak, inline (every realize)
  if (n := len(cached)) >= 16 and n & (n - 1) == 0: cached[:] = [r for r in cached if r() is not None]

def _stale(x: UOp, buf: Buffer) -> StaleReadError:
  where = f" (the write was built at {buf.wrote})" if buf.wrote else ""
  return StaleReadError(f"this value reads a {x.dtype.name} tensor of {x.arg[1]} elements as it was before an in-place write replaced it{where}; "
                        "realize the value before writing (or read a clone()), so the old contents are still there to read")

def bind_values(sink: UOp) -> tuple[dict[UOp, UOp], list[UOp]]:
  """Walk the graph down to storage reads and values already computed: check each read names its storage's current
  version (else StaleReadError), and return the computed values to read from their buffers instead (node -> buffer
  view), and the nodes walked. Only the path above a computed value is rebuilt, so binding costs one walk."""
  subs: dict[UOp, UOp] = {}
  walked, stack, seen = [], [sink], set()
  while stack:
    if (n := stack.pop()) in seen: continue
    seen.add(n); walked.append(n)
    # a computed value first: a read of old contents that a realize copied out before overwriting them is one
    if (v := substituted_value(n)) is not None: subs[n] = v
    elif n.op is _BUFFER:
      if n.arg[2] != -1 and (b := buffer_of(n)).version != n.arg[2]: raise _stale(n, b)
    else: stack.extend(n.src)
  return subs, walked

# ---- tensor-level simplification (its map is how tensors follow) ----
def _const_root(u: UOp) -> UOp: return u if u.op is Ops.CONST else _const_root(u.src[0])

def _gather_through(g: UOp) -> UOp | None:
  """A GATHER reads its table only where its index points, so it moves below elementwise ops (each source gathered: the
  ops run on the gathered elements only) and a broadcast along its axis (every position holds the one value): a
  log-softmax gathered at the targets is the logits gathered, minus the row's log-sum-exp, and needs no buffer."""
  t, ix, d = g.src[0], g.src[1], g.arg
  if t.op in GroupOp.Elementwise: return t.replace(src=tuple(s.gather(ix, d) for s in t.src))
  if t.op is Ops.EXPAND and t.src[0].shape[d] == 1: return t.src[0].expand(ix.shape)
  # views of elementwise work (as indexing makes them) are that work on views of its sources; a PAD is not (its zeros)
  chain, base = [], t
  while base.op in _INDEX_ONLY: chain, base = chain + [base], base.src[0]
  if not chain or base.op not in GroupOp.Elementwise: return None
  def viewed(s: UOp) -> UOp:
    for m in reversed(chain): s = UOp(m.op, s.dtype, (s,), m.arg)
    return s
  return base.replace(src=tuple(viewed(s) for s in base.src)).gather(ix, d)

def _split_reduce(r: UOp) -> UOp | None:
  """A reduce to one value (a sum of 16M elements) as REDUCE_PARTIALS partial reduces of blocks of its outer reduced
  axis into a buffer, then a reduce of those: the first kernel has an output loop the CPU threads share
  (docs/design/0018). Not where the axis has no divisor up to REDUCE_PARTIALS (a prime length), or it does not pay."""
  x, (op, axes) = r.src[0], r.arg
  if r.size != 1 or (a := next((a for a in axes if x.shape[a] > 1), None)) is None or not split_pays(x): return None
  n = x.shape[a]
  if (parts := next((d for d in range(min(REDUCE_PARTIALS, n // 2), 1, -1) if n % d == 0), None)) is None: return None
  blocks = x.reshape(x.shape[:a] + (parts, n // parts) + x.shape[a+1:])
  partial = UOp(Ops.CONTIGUOUS, x.dtype, (blocks.reduce_axis(op, tuple(b + 1 if b >= a else b for b in axes)),))
  partial.__dict__["split_partials"] = True  # no user's contiguous(): its realize reason says so
  return partial.reduce_axis(op, (a,)).reshape(r.shape)

_VIEWS_OF_ONE = frozenset({Ops.RESHAPE, Ops.EXPAND, Ops.PERMUTE, Ops.SHRINK, Ops.FLIP})
def _one_element(u: UOp) -> UOp | None:
  """The one-element value (a constant, a buffer of one) that `u` is a view of, if it is one: the same everywhere."""
  while u.size != 1 and u.op in _VIEWS_OF_ONE: u = u.src[0]
  return u if u.size == 1 else None

def _invariant_axes(u: UOp, memo: dict[UOp, frozenset[int]]) -> frozenset[int]:
  """The axes of size > 1 along which `u`'s value cannot change: it views one element (a constant), or elementwise work whose
  every source is broadcast (an EXPAND from size 1) or invariant along them. Walks elementwise ops and EXPANDs only."""
  if (hit := memo.get(u)) is not None: return hit
  every = frozenset(a for a, s in enumerate(u.shape) if s > 1)
  if _one_element(u) is not None: inv = every
  elif u.op is _EXPAND and len(u.src[0].shape) == len(u.shape):
    inv = every & (_invariant_axes(u.src[0], memo) | {a for a, s in enumerate(u.src[0].shape) if s == 1})
  elif u.op in GroupOp.Elementwise and u.src:
    inv = every
    for s in u.src:
      if not (inv := inv & _invariant_axes(s, memo)): break
  else: inv = frozenset()
  memo[u] = inv
  return inv

def _narrowed(u: UOp, axes: frozenset[int], memo: dict[UOp, UOp]) -> UOp:
  """`u` computed at index 0 of `axes` only (where it is invariant along them): the same ops on narrowed sources."""
  if (hit := memo.get(u)) is not None: return hit
  shape = tuple(1 if a in axes else s for a, s in enumerate(u.shape))
  if (one := _one_element(u)) is not None: out = one.reshape((1,) * len(shape)).expand(shape)
  elif u.op is _EXPAND:
    src = u.src[0]
    out = (src if all(src.shape[a] == 1 for a in axes) else _narrowed(src, frozenset(a for a in axes if src.shape[a] > 1), memo)).expand(shape)
  else: out = u.replace(src=tuple(_narrowed(s, axes, memo) for s in u.src))
  memo[u] = out
  return out

def _reduce_once(r: UOp) -> UOp | None:
  """A reduce whose input does not change along some kept axis (every read there broadcast: a conv whose weight is
  one constant, a matmul with a row of ones) is computed once along it and broadcast: every output there is the same
  sum of the same values, so it rounds the same, and the work shrinks by the axis' length. Where the work saved pays
  for the buffer the broadcast result may need (schedule/cost.py)."""
  x, (op, axes) = r.src[0], r.arg
  if x.size == 0 or not (inv := frozenset(a for a in _invariant_axes(x, {}) if a not in axes)): return None
  once = _narrowed(x, inv, {}).reduce_axis(op, axes)
  return once.expand(r.shape) if reduce_once_pays(once, r.size // once.size) else None

pm_tensor_simplify = PatternMatcher([
  (UPat(Ops.REDUCE_AXIS, name="r"), _reduce_once),
  (UPat(Ops.REDUCE_AXIS, name="r"), _split_reduce),
  (UPat(Ops.TAKE, name="t"), take_as_gather),
  (UPat(Ops.GATHER, name="g"), _gather_through),
  (UPat(Ops.RESHAPE, src=(UPat(Ops.RESHAPE, name="x"),), name="r"), lambda r, x: x.src[0].reshape(r.arg)),
  (UPat(Ops.EXPAND, src=(UPat(Ops.EXPAND, name="x"),), name="e"), lambda e, x: x.src[0].expand(e.arg)),
  (UPat(Ops.PERMUTE, src=(UPat(Ops.PERMUTE, name="x"),), name="p"), lambda p, x: x.src[0].permute(tuple(x.arg[i] for i in p.arg))),
  # a movement of a constant is that constant in the new shape
  (UPat(tuple(GroupOp.Movement), name="m"),
   lambda m: _const_root(m).reshape((1,)*len(m.shape)).expand(m.shape) if is_broadcast_literal(m.src[0]) and m.op is not Ops.PAD
   and (m.op is not Ops.EXPAND or m.src[0].op is not Ops.RESHAPE) else None),
  (UPat(Ops.CONTIGUOUS, src=(UPat(name="x"),)), lambda x: x if is_buffer_view(x) else None),
  (UPat(Ops.DETACH, src=(UPat(name="x"),)), lambda x: x),
  (UPat(Ops.VJP, name="v"), lambda v: v.src[0]),  # its inputs matter to gradients only
])

# ---- what gets a buffer ----
# why a node gets a buffer, in words: the value of each realize point (docs/design/0030-realize-reasons.md); the
# cost-model reasons are _why_a_buffer's and schedule/cost.py's own words
WHY_TARGET = "a realize target (realize(), numpy(), item(), a value read)"
WHY_DESTROYED = "a live value an in-place write in this schedule destroys, computed first"
WHY_CONTIGUOUS = "contiguous()"
WHY_PARTIALS = "partial reduces of a reduce to one value, split so threads share it"
WHY_ASSIGN = "an assign: written in place into its target's buffer"
WHY_ASSIGN_MOVED = "an assign's value that reads other elements of its target: computed before the write"
WHY_GATHER_TABLE = "a gather's table: read at loaded addresses, so it must be in memory"
WHY_SCATTER_BASE, WHY_SCATTER_ADDS = "a scatter: its base, filled first", "a scatter: its adds into the base"
WHY_OVERWRITTEN_READ = "a target that reads a storage this schedule overwrites: copied out before the write"
WHY_OLD_CONTENTS = "old contents of a storage written in place, read by a kernel that also reads the new: computed before the write"
WHY_REDUCE_EXPANDED = "a reduce read through an EXPAND (fused, it would be computed again for every element reading it)"
WHY_NESTED_REDUCE = "a big reduce inside another reduce (one reduce per kernel)"
WHY_EPILOGUE = "a contraction under a costly epilogue (the epilogue runs as its own elementwise kernel)"
def why_copy(n: UOp) -> str: return f"a copy to {n.device}"
def why_copy_source(n: UOp) -> str: return f"the source of a copy to {n.device}"

def _unreshaped(t: UOp) -> UOp:
  """A target that is a reshape of a realization marker needs no kernel of its own: the marker's buffer, reshaped."""
  return inner if (inner := _strip_reshapes(t)).op in (Ops.CONTIGUOUS, Ops.ASSIGN, Ops.COPY) else t

def _reads_moved(value: UOp, target: UOp) -> bool:
  """Does `value` read `target`'s storage through a movement other than a reshape, on any path (so some element reads
  another's old value)? Nodes with buffers of their own (another ASSIGN, CONTIGUOUS, COPY) are computed before and cut
  the path."""
  buf, stack, seen = buffer_of(target), [(value, False)], set()
  while stack:
    u, moved = stack.pop()
    if (u, moved) in seen: continue
    seen.add((u, moved))
    if u.op is Ops.BUFFER:
      if moved and buffer_of(u) is buf: return True
      continue
    if u is not value and u.op in (Ops.ASSIGN, Ops.CONTIGUOUS, Ops.COPY): continue
    stack.extend((s, moved or u.op in _READS_OTHERS) for s in u.src)
  return False

class _Paths:
  """The ways a kernel's root reaches a node, told apart by the movement and reduce nodes passed on the way (interned:
  equal paths are one id). Lowering builds one INDEX per path, so a node's paths are its copies in the lowered kernel.
  Each path knows whether it passed an EXPAND, the innermost reduce it runs in, how many times it evaluates each
  element of the node (an EXPAND inside a reduce reads one element for every step of the loop it broadcasts along, and
  a PAD computes its source for the padding too: the guard stops the loads, the value is selected after), and `row`:
  while the path keeps the root's loop nest (docs/design/0018-row-reductions-in-one-kernel.md), the first axis not
  indexed by the root's own loop for it, else None.
  The root's loops nest in axis order and a reduce's loops sit inside the loops its value depends on, so along a path
  of elementwise ops, reduces of trailing axes and EXPANDs that broadcast only trailing axes (`_row_step`), a reduce
  whose kept axes all come before `row` depends on outer loops only: codegen computes it once per row, before the
  inner loops that read it, and every such path lowers it to one node (its index: the root's loops, then zeros)."""
  ROOT, EVERY_AXIS = 0, 1 << 30
  def __init__(self):
    self.ids: dict[tuple[int, UOp], int] = {}
    # (expanded, enclosing reduce, evaluations, row)
    self.info: list[tuple[bool, UOp | None, float, int | None]] = [(False, None, 1, _Paths.EVERY_AXIS)]
  def through(self, path: int, n: UOp) -> int:
    """The path to `n`'s sources, extended by `n`."""
    if n.op not in _PATH_OPS: return path
    if (p := self.ids.get((path, n))) is None:
      expanded, encl, evals, row = self.info[path]
      row = _row_step(n, row)
      # on a GPU-style target a row is the last axis alone: a block's threads share it (OptOps.ROW), and every other
      # output axis is a grid dimension, whose blocks would each compute the reduce again
      if row is not None and row < _Paths.EVERY_AXIS and row != len(n.shape) - 1 and _loops_are_threads(n.device): row = None
      if n.op is _EXPAND and row is None: expanded, evals = True, evals * (n.size // max(n.src[0].size, 1) if encl is not None else 1)
      if n.op is _PAD: evals *= n.size / max(n.src[0].size, 1)
      if n.op is _REDUCE_AXIS: encl = n
      p = self.ids[(path, n)] = len(self.info)
      self.info.append((expanded, encl, evals, row))
    return p

def _row_step(n: UOp, row: int | None) -> int | None:
  """`row` (see _Paths) past `n`: a reduce of trailing axes moves it to its first axis; an EXPAND that broadcasts
  trailing axes only, of a value kept along some axes before `row`, leaves it; anything else leaves the root's nest."""
  if row is None: return None
  shape = n.src[0].shape
  if n.op is _REDUCE_AXIS:
    first = min(n.arg[1])
    return min(row, first) if all(a in n.arg[1] for a in range(first, len(shape)) if shape[a] > 1) else None
  if n.op is _EXPAND and len(shape) == len(n.shape):
    kept = [a for a, s in enumerate(shape) if s > 1]
    broadcast = [a for a, (s, o) in enumerate(zip(shape, n.shape)) if s == 1 and o > 1]
    if kept and broadcast and max(kept) < min(broadcast) and max(kept) < row: return row
  return None

def _computed_per_row(n: UOp, reach: dict[UOp, set[int]], paths: _Paths) -> bool:
  """Whether reduce `n`, read through EXPANDs, is still computed once per element by one kernel: every path to it
  keeps the root's loop nest with `n` kept along outer axes only (see _Paths). On a GPU-style target the row is the
  last axis only, which the block's threads share (docs/design/0023)."""
  if len(reach) != 1: return False
  return all((row := paths.info[p][3]) is not None and all(a < row for a, s in enumerate(n.shape) if s > 1) for p in next(iter(reach.values())))

@functools.cache
def _loops_are_threads(device) -> bool:
  return not isinstance(device, str) or bool(getattr(Device[device].renderer, "has_local", True))

def _kernel_srcs(n: UOp, realize: dict) -> tuple[UOp, ...]:
  """The sources a node's kernel computes: an ASSIGN computes its value (its target is the buffer written), a COPY
  nothing (what it copies has a buffer of its own)."""
  if n in realize and n.op is _ASSIGN: return (n.src[1],)
  if n in realize and n.op is _COPY: return ()
  return n.src

def _why_a_buffer(n: UOp, reach: dict[UOp, set[int]], paths: _Paths, realize: dict, lowered: dict[UOp, int]) -> str | None:
  """Why `n`, which the kernels in `reach` (root -> paths from it) would compute fused, gets a buffer; None if it does not."""
  info = [paths.info[p][:3] for ps in reach.values() for p in ps]
  if n.op is _REDUCE_AXIS and _computed_per_row(n, reach, paths): info = info[:1]  # its paths lower to one node
  elif n.op is _REDUCE_AXIS:
    # lowered more than once, a reduce is computed again per copy, each with its own opts and so its own rounding:
    # `x == x.max(0)` over an axis of size 1 compared two copies of a sum that differed
    if any(expanded for expanded, _, _ in info): return WHY_REDUCE_EXPANDED
    if len(info) > 1: return f"a reduce read by {len(info)} kernels or index paths (fused, each would compute it again)"
    if any(encl is not None for _, encl, _ in info) and n.size >= NESTED_REDUCE_MIN: return WHY_NESTED_REDUCE
  if n.op is _REDUCE_AXIS and epilogue_pays(n, max(lowered[r] for r in reach)): return WHY_EPILOGUE
  evaluations = sum(evals for _, _, evals in info)
  if (pays := buffer_pays(n, evaluations, realize))[0]:
    return f"cost model: {pays[1]}+ ops per element, computed {evaluations:.3g} times over if fused, cost more than a buffer"
  if (n.op in GroupOp.ALU or n.op is _REDUCE_AXIS) and (why := kernel_full(n, reach, lowered, realize)): return f"a cut to bound a kernel's size: {why}"
  return None

def _under_views(u: UOp) -> UOp:
  while u.op in GroupOp.Movement: u = u.src[0]
  return u

def find_realize_points(sink: UOp, user_targets: int | None = None) -> dict[UOp, str]:
  """Targets, CONTIGUOUS, COPY (and what it copies), ASSIGN (and a value that reads other elements of its target),
  the value under a GATHER's table views, a SCATTER (written by two kernels: the base, then the adds);
  then, from the top of the graph down, every node whose fusing the cost model rejects: a reduce that would be
  computed more than once (or a big one nested in another), elementwise work whose repeats cost more than a buffer,
  and a node past which its kernel would lower to more than MAX_KERNEL_NODES nodes (docs/design/0001, 0008).
  Each maps to why it gets a buffer, in words (docs/design/0030): the targets past the first `user_targets` (all of
  them if None) are values realize_nodes adds because an in-place write would destroy them. Where several reasons
  hold, the op's own (CONTIGUOUS, ASSIGN, COPY, SCATTER) wins over a target's; otherwise the first found."""
  realize: dict[UOp, str] = {}
  for i, t in enumerate(sink.src):
    if not is_buffer_view(t) and (u := _unreshaped(t)) not in realize:
      realize[u] = WHY_TARGET if user_targets is None or i < user_targets else WHY_DESTROYED
  for n in sink.toposort:
    if n.op is _CONTIGUOUS: realize[n] = WHY_PARTIALS if n.__dict__.get("split_partials") else WHY_CONTIGUOUS
    if n.op is _ASSIGN:
      realize[n] = WHY_ASSIGN
      # writing in place is safe only if every element reads just its own old value; else compute into a scratch first
      if _reads_moved(n.src[1], n.src[0].base): realize[n.src[1]] = WHY_ASSIGN_MOVED
    if n.op is _COPY:
      realize[n] = why_copy(n)
      if not is_buffer_view(n.src[0]): realize[n.src[0]] = why_copy_source(n)
    # a gather's table is read through its loaded index, so it must be in memory: a value computed under its views
    # gets a buffer (else each output would recompute it at an address codegen cannot see; docs/design/0014)
    if n.op is Ops.GATHER and (table := _under_views(n.src[0])).op not in (_BUFFER, _CONST): realize[table] = WHY_GATHER_TABLE
    # a scatter adds into memory a first kernel filled, at addresses its loaded index holds (docs/design/0017)
    if n.op is Ops.SCATTER: realize[n] = WHY_SCATTER_BASE
  # each node after all its users, so the kernels that would compute it (and along which paths) are all known
  paths = _Paths()
  reaches: dict[UOp, dict[UOp, set[int]]] = defaultdict(lambda: defaultdict(set))  # node -> kernel root -> paths
  lowered: dict[UOp, int] = defaultdict(int)  # kernel root -> value nodes its kernel lowers to, so far
  for n in reversed(sink.toposort):
    if n.op in _NO_KERNEL: continue
    reach = reaches.pop(n, {})
    if n not in realize and reach and (why := _why_a_buffer(n, reach, paths, realize, lowered)):
      realize[n] = why
      if DEBUG >= 3: print(f"schedule: a buffer for {n.op.name} {n.shape}: {why}")
    if n in realize: reach = {n: {_Paths.ROOT}}
    # a movement becomes index math on the way down (a PAD also a select) and a constant is one node for every path
    if n.op not in _INDEX_ONLY and n.op is not _CONST:
      for r, ps in reach.items(): lowered[r] += len(ps) * lowered_size(n)
    for s in _kernel_srcs(n, realize):
      if s in realize or s.op in _NO_BUFFER_NEEDED: continue
      for r, ps in reach.items(): reaches[s][r].update(paths.through(p, n) for p in ps)
  return realize

def _old_and_new_apart(order: list[UOp], realize: dict[UOp, str]):
  """A kernel cannot read one storage both as it was and as an in-place write of this schedule leaves it -- directly,
  or through another kernel's buffer computed from the new contents: it could run neither before the write nor after
  it. The largest parts of such a kernel that read the storage's old contents and nothing written get buffers of their
  own (added to `realize`), which run before the write (order_items). `order`: the graph's nodes, sources first. (A
  value a live tensor holds is found earlier, by realize_nodes; this finds the ones only a node of the graph holds.
  Fuzz seeds 13663 and 13289: x.cos() or x.erf() taken before x is assigned, then combined with x or its sort.)"""
  assigned = {id(buffer_of(r.src[0].base)) for r in realize if r.op is _ASSIGN}
  if not assigned: return
  newer: dict[UOp, frozenset] = {}  # realize point -> the assigned storages its buffer's contents come from as written
  for root in [n for n in order if n in realize]:
    if root.op is _COPY:
      newer[root] = newer.get(root.src[0], frozenset())
      continue
    old: dict[UOp, frozenset] = {}  # the assigned storages each node of root's kernel reads as they were
    new: dict[UOp, frozenset] = {}  # and as this schedule's writes leave them
    values = root.src if root.op is Ops.SCATTER else _kernel_srcs(root, realize) if root.op in (_ASSIGN, _CONTIGUOUS) else (root,)
    stack, nodes = [(n, False) for n in values], []
    while stack:  # the kernel's nodes, sources first, not below storages or other kernels' buffers
      n, done = stack.pop()
      if n in old: continue
      if n.op is _BUFFER: old[n], new[n] = frozenset({id(buffer_of(n))} & assigned), frozenset()
      elif n in realize and n is not root:
        old[n], new[n] = frozenset(), newer.get(n, frozenset()) | ({id(buffer_of(n.src[0].base))} if n.op is _ASSIGN else frozenset())
      elif done:
        old[n], new[n] = frozenset().union(*(old[x] for x in n.src)), frozenset().union(*(new[x] for x in n.src))
        nodes.append(n)
      else: stack += [(n, True)] + [(x, False) for x in n.src if x not in old]
    newer[root] = frozenset().union(*(new[v] for v in values))
    for n in nodes:
      if not old[n] & new[n]: continue
      for x in n.src:  # a source that reads a storage old that n also reads new, and reads nothing written itself
        if x.op is not _BUFFER and x not in realize and old[x] & new[n] and not new[x]: realize[x], newer[x] = WHY_OLD_CONTENTS, frozenset()

def _show_realize_points(sink: UOp, realize: dict[UOp, str]):
  """The decisions of what gets a buffer, as a pass of the recording (VIZ): a step per realize point, in graph order,
  whose rule is its reason; the graph itself is not changed by them."""
  from lucidgrad.viz.record import record_pass
  where = {WHY_OVERWRITTEN_READ: _create_fixed_schedule, WHY_OLD_CONTENTS: _old_and_new_apart}  # decided after find_realize_points
  record_pass("realize points", sink, sink, [(f"a buffer: {realize[n]}", where.get(realize[n], find_realize_points), n, n, sink)
                                             for n in sink.toposort if n in realize])

# ---- cutting kernels ----
class _KernelCtx:
  def __init__(self, root: UOp, buffers: dict[UOp, UOp]):
    self.root, self.buffers, self.params, self.bufs = root, buffers, {}, []
    self.reads_old: set[UOp] = set()   # existing buffers read as they were before this schedule
    self.reads_new: set[int] = set()   # storages read as an in-place write of this schedule leaves them
  def param(self, buf: UOp) -> UOp:
    # one param per storage: two reads of one storage (nodes that differ in version or requires-grad flag) are one buffer
    if (key := id(buffer_of(buf))) not in self.params:
      self.params[key] = UOp(Ops.DEFINE_GLOBAL, buf.dtype.as_ptr(), (), (len(self.bufs), buf.arg[1]))
      self.bufs.append(buf)
    return self.params[key]

def _to_param(ctx: _KernelCtx, x: UOp) -> UOp | None:
  if x.op is _BUFFER:
    ctx.reads_old.add(x)
    return ctx.param(x)
  if x is not ctx.root and (b := ctx.buffers.get(x)) is not None:
    if x.op is _ASSIGN: ctx.reads_new.add(id(buffer_of(b)))
    return ctx.param(b).reshape(x.shape)
  return None
pm_params = PatternMatcher([(UPat(name="x"), _to_param)])

def _kernel(root: UOp, buffers: dict[UOp, UOp], scatter_adds: bool = False, reason: str = "") -> tuple[ScheduleItem, set[UOp]]:
  """One kernel writing `root`'s buffer, and the existing buffers it reads as they were. A SCATTER is two: its base
  stored, then (`scatter_adds`) a kernel over the index whose SCATTER's base is the buffer itself, as the first left it."""
  ctx = _KernelCtx(root, buffers)
  out = ctx.param(buffers[root])
  value = root.src[0] if root.op in (Ops.CONTIGUOUS, Ops.SCATTER) else root.src[1] if root.op is Ops.ASSIGN else root
  if root.op is Ops.ASSIGN and (region := _region_write(root)) is not None:
    value, box = region
    out = out.reshape(root.shape).shrink(box)
  if scatter_adds:
    ix, src = graph_rewrite(UOp.sink(*root.src[1:]), pm_params, ctx, top_down=True, name="kernel params").src
    value = root.replace(src=(out.reshape(root.shape), ix, src))
  else: value = graph_rewrite(value, pm_params, ctx, top_down=True, name="kernel params")
  if (both := [x for x in ctx.reads_old if id(buffer_of(x)) in ctx.reads_new]):
    # one kernel reads a storage at one address both before and after a write in this schedule: it cannot run on
    # either side of the write. Until such a read is given a kernel of its own, this raises rather than read one twice.
    raise StaleReadError(f"one kernel would read a {both[0].dtype.name} tensor of {both[0].arg[1]} elements both as it was before an in-place "
                         "write and as the write leaves it; realize the value that reads the old contents before writing (or realize "
                         "the two separately)")
  return ScheduleItem("kernel", UOp.sink(UOp(Ops.STORE, dtypes.void, (out, value))), tuple(ctx.bufs), reason), ctx.reads_old

def _is_true_region(m: UOp) -> UOp | None:
  """A bool mask that is True on a box and False elsewhere (what a write through a slice builds): its PAD."""
  if m.op is not Ops.PAD: return None
  c = m.src[0]
  while c.op in (Ops.EXPAND, Ops.RESHAPE): c = c.src[0]
  return m if c.op is Ops.CONST and c.arg is True else None

def _region_write(root: UOp) -> tuple[UOp, tuple] | None:
  """An ASSIGN of `where(box, pad(v), own old value)` -- a write through a slice of a tensor into its base -- as the
  value `v` stored into that box of the buffer alone, (v, the box as shrink args): the other elements keep what they
  hold, so the kernel loops over the box, not the whole buffer (one row of a KV cache a decode step, docs/design/0029)."""
  target, value = root.src
  if value.op is not Ops.WHERE or (mask := _is_true_region(value.src[0])) is None: return None
  new, old = value.src[1], value.src[2]
  if new.op is not Ops.PAD or new.arg != mask.arg or _strip_reshapes(old) is not _strip_reshapes(target) or old.shape != target.shape: return None
  if not is_buffer_view(old): return None
  return new.src[0], tuple((b, ssimplify(b + s)) for (b, _), s in zip(new.arg, new.src[0].shape))

def order_items(items: list[ScheduleItem], reads_old: list[set[UOp]]) -> list[ScheduleItem]:
  """Dependency order: an item runs after the items that write what it reads, and an item that reads a buffer's old
  value runs before the ASSIGN that overwrites it. Items that write one buffer (a SCATTER's base, then its adds) run in
  the order they were made. Ties keep the graph's order."""
  sid = lambda b: id(buffer_of(b))  # storages by identity, whichever version or flag a node names
  writers: dict[int, list[int]] = defaultdict(list)
  for i, it in enumerate(items): writers[sid(it.bufs[0])].append(i)
  old = [{sid(b) for b in r} for r in reads_old]
  deps: list[set[int]] = [set() for _ in items]
  for j, it in enumerate(items):
    deps[j].update(i for i in writers[sid(it.bufs[0])] if i < j)
    for b in it.bufs[1:]:
      if sid(b) not in old[j]: deps[j].update(i for i in writers.get(sid(b), ()) if i != j)
    for b in old[j]:
      for i in writers.get(b, ()):
        if i != j: deps[i].add(j)
  order: list[int] = []
  done: set[int] = set()
  while len(order) < len(items):
    ready = next((j for j in range(len(items)) if j not in done and deps[j] <= done), None)
    if ready is None: raise RuntimeError("schedule: a kernel needs both the old and the new value of an assigned buffer")
    order.append(ready); done.add(ready)
  return [items[j] for j in order]

def memory_plan(items: list[ScheduleItem], scratch: set[UOp]) -> list[ScheduleItem]:
  """Scratch buffers whose last use has passed are handed to later scratch buffers of the same size and dtype."""
  last_use = {b: i for i, it in enumerate(items) for b in it.bufs if b in scratch}
  free: dict[tuple, list[UOp]] = defaultdict(list)
  assigned: dict[UOp, UOp] = {}
  for i, it in enumerate(items):
    for b in it.bufs:
      if b in scratch and b not in assigned:
        key = (b.device, b.dtype, b.arg[1])
        assigned[b] = free[key].pop() if free[key] else b
    for b in set(it.bufs):
      if b in scratch and last_use[b] == i: free[(b.device, b.dtype, b.arg[1])].append(assigned[b])
  if DEBUG >= 3 and (saved := sum(1 for k, v in assigned.items() if k is not v)): print(f"memory plan: {saved} scratch buffers reused")
  return [ScheduleItem(it.kind, it.ast, tuple(assigned.get(b, b) for b in it.bufs), it.reason) for it in items]

def create_schedule(targets: list[UOp], user_targets: int | None = None) -> tuple[list[ScheduleItem], dict[UOp, UOp], list[Buffer]]:
  """The kernels and copies that compute `targets`, in order; the map from each target (and each CONTIGUOUS, COPY or
  ASSIGN node) to a view of the storage that holds it after they run; and the storages written in place.
  Values already computed are read from their buffers, and a read of a version that was overwritten raises.
  Each item's `reason` says why its output has a buffer; targets past the first `user_targets` are values an in-place
  write would destroy, computed first (realize_nodes adds them)."""
  return _create_schedule(targets, user_targets)[:3]

@host_slice("schedule", "schedule")  # a profiler slice (engine/profile.py); a flag check when off
def _create_schedule(targets: list[UOp], user_targets: int | None = None) -> tuple[list[ScheduleItem], dict[UOp, UOp], list[Buffer], set[UOp]]:
  """create_schedule's result and the BUFFER nodes of the new storages it made. A graph with symbolic shapes is first
  given fixed ones (schedule/symbolic.py, docs/design/0029); its nodes become views of max-form buffers."""
  if not VIZ.value: return _schedule(targets, user_targets)
  from lucidgrad import viz
  with viz.group("schedule", f"schedule {len(targets)} targets") as g:
    out = _schedule(targets, user_targets)
    g.set(items=len(out[0]), kernels=sum(it.kind == "kernel" for it in out[0]))
    return out

def _schedule(targets: list[UOp], user_targets: int | None = None) -> tuple[list[ScheduleItem], dict[UOp, UOp], list[Buffer], set[UOp]]:
  if ops_module.variables_made:
    from lucidgrad.schedule.symbolic import graph_is_symbolic, to_max_form
    if graph_is_symbolic(sink := UOp.sink(*targets)):
      mf = to_max_form(sink, substituted_value)
      items, becomes_m, written, new = _create_fixed_schedule(list(mf[sink].src), user_targets)
      return items, {o: becomes_m[m] for o, m in mf.items() if m in becomes_m}, written, new
  return _create_fixed_schedule(targets, user_targets)

def _create_fixed_schedule(targets: list[UOp], user_targets: int | None = None) -> tuple[list[ScheduleItem], dict[UOp, UOp], list[Buffer], set[UOp]]:
  sink = UOp.sink(*targets)
  subs, walked = bind_values(sink)
  bound = graph_rewrite_map(sink, PatternMatcher([]), replace=subs, name="bind values", visited_only=True) if subs else {}
  bsink = bound.get(sink, sink)
  simplified = graph_rewrite_map(bsink, pm_tensor_simplify, name="tensor simplify")
  ssink = simplified[bsink]
  realize = find_realize_points(ssink, user_targets)
  # a target that is only a read of a storage this schedule overwrites (a clone taken before the write, a value that
  # simplified to the buffer) is copied out first: after the write the storage holds something else
  overwritten = {id(buffer_of(r.src[0].base)) for r in realize if r.op is Ops.ASSIGN}
  for t in ssink.src:
    if is_buffer_view(t) and id(buffer_of(_strip_reshapes(t))) in overwritten: realize[t] = WHY_OVERWRITTEN_READ
  _old_and_new_apart(ssink.toposort, realize)
  if VIZ.value: _show_realize_points(ssink, realize)
  # an ASSIGN writes into its target's buffer; everything else gets a new one
  buffers = {r: r.src[0].base if r.op is Ops.ASSIGN else UOp.new_buffer(r.device, r.size, r.dtype) for r in realize}
  items: list[ScheduleItem] = []
  reads_old: list[set[UOp]] = []
  for r in ssink.toposort:
    if r not in realize or r.size == 0: continue
    if r.op is Ops.COPY:
      src = buffers.get(r.src[0]) or r.src[0].base
      items.append(ScheduleItem("copy", r, (buffers[r], src), realize[r]))
      reads_old.append({src} if r.src[0] not in buffers and src.op is Ops.BUFFER else set())  # a plain read, not a value made here
    else:
      for part in ((False, True) if r.op is Ops.SCATTER and r.src[1].size else (False,)):  # an empty index adds nothing
        item, old = _kernel(r, buffers, part, WHY_SCATTER_ADDS if part else realize[r])
        items.append(item); reads_old.append(old)
  items = order_items(items, reads_old)
  visible = set(ssink.src) | {r for r in realize if r.op in (Ops.CONTIGUOUS, Ops.COPY, Ops.ASSIGN)}
  items = memory_plan(items, {buffers[r] for r in realize if r not in visible})
  if VIZ.value:  # the cut: every kernel's AST (and copy) of the schedule, in run order, under one SINK
    from lucidgrad.viz.record import record_pass
    record_pass("kernels", ssink, UOp.sink(*[it.ast for it in items]))
  becomes: dict[UOp, UOp] = {}
  target_set = set(targets)
  for old in walked:
    if (new := simplified.get(bound.get(old, old))) is None: continue
    if (inner := _unreshaped(new)) in buffers and inner in visible: becomes[old] = buffers[inner].reshape(new.shape)
    elif is_buffer_view(new) and old.op is not Ops.BUFFER:
      # a node that simplifies to a read of a storage gets an entry as a target (whose tensor may take the storage), or
      # where it read another storage. A movement that simplifies back to its own storage's read (a Linear's W.T.T,
      # every forward) gets none: it would be a view of an old storage to remember per call, which keeps a cached
      # schedule off its plain path (docs/design/0032); likewise a read that stays a read of its storage
      if old in target_set or (is_buffer_view(old) and buffer_of(_strip_reshapes(old)) is not buffer_of(_strip_reshapes(new))): becomes[old] = new
  written = list(dict.fromkeys(buffer_of(buffers[r]) for r in realize if r.op is Ops.ASSIGN and r.size))
  if DEBUG >= 3: print(f"schedule: {len(items)} items for {len(targets)} targets, {len(realize)} realize points")
  return items, becomes, written, {b for r, b in buffers.items() if r.op is not Ops.ASSIGN}
