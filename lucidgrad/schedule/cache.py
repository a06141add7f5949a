"""The schedule cache (docs/design/0009-schedule-cache.md): one walk writes a graph down with its storages as slots; a
schedule built once is kept as a template over those slots and bound to the storages of the next graph with that key."""
from __future__ import annotations
import weakref
from dataclasses import dataclass
from lucidgrad.dtype import DType
from lucidgrad.helpers import ContextVar
from lucidgrad.uop.ops import UOp, Ops, _arg_key, unbind, free_variables
import lucidgrad.uop.ops as ops_module
from lucidgrad.device import Buffer, buffer_of, register_buffer
import lucidgrad.schedule as schedule
from lucidgrad.schedule import ScheduleItem, STATEFUL, _stale, _strip_reshapes

_BUFFER, _RESHAPE, _CONTIGUOUS, _ASSIGN = Ops.BUFFER, Ops.RESHAPE, Ops.CONTIGUOUS, Ops.ASSIGN
_VARIABLE_BITS = ops_module._VAR_BIT | ops_module._BIND_BIT

@dataclass(slots=True)  # one per realize: its fields in slots, no dict made and freed with each
class GraphWalk:
  """A graph written down with its storages abstracted. `key` says everything its schedule depends on: the flags, and
  per node in walk order (op, dtype, arg, indices of its sources), a storage read as (dtype, its storage's slot, size,
  flags, device), a node with a computed value as its storage's slot and the view it is read through."""
  key: tuple
  index: dict[UOp, int]         # node -> its place in walk order (sources before users)
  storages: list[Buffer]        # by slot: the order the walk first met them
  reads: list[UOp]              # a BUFFER node of each storage (the first met), so a view of it can be built
  writes: list[UOp]             # the ASSIGN nodes to compute
  binds: dict                   # Variable name -> the value the graph binds it to (docs/design/0029)
  @property
  def nodes(self) -> list[UOp]: return list(self.index)  # walk order (the index's insertion order); cheaper built than cached_property's lock

_INT = {int}
def _arg(op: Ops, arg):
  """The node's arg as a key: 0.0 apart from -0.0, 1 from True, NaN equal to itself (the interning's own arg key),
  without building anything for the common args: ints, strings, floats other than zeros and NaN, tuples of ints."""
  if op is _CONTIGUOUS: return None  # its tag only keeps two such nodes apart, which the source indices already do
  t = type(arg)
  if arg is None or t is int or t is str: return arg
  if t is float: return arg if arg == arg and arg != 0 else _arg_key(arg)
  if t is tuple and set(map(type, arg)) == _INT: return arg
  return _structural(arg, _walk_binds) if ops_module.variables_made and _has_uop(arg) else _arg_key(arg)

def _has_uop(arg) -> bool: return isinstance(arg, UOp) or (isinstance(arg, tuple) and any(_has_uop(a) for a in arg))
class BindingConflict(ValueError):
  """One graph binds a Variable to two values: its kernels can launch with one."""

# the bindings the walk in progress met (name -> value): what its kernels launch with (docs/design/0029)
_walk_binds: dict[str, int] = {}
def _structural(arg, binds: dict[str, int]):
  """An arg naming expressions of Variables, keyed by the expressions with their Variables unbound (one schedule for
  every value: docs/design/0029); the values go into `binds`. A Variable named without a value raises."""
  if isinstance(arg, tuple): return tuple(_structural(a, binds) for a in arg)
  if not isinstance(arg, UOp): return _arg_key(arg)
  if (memo := arg.__dict__.get("_unbound_key")) is None:  # an expression is a fact of its node: worked out once
    if free := free_variables(arg):
      raise RuntimeError(f"Variable {free[0]!r} is used without a value: bind it where it is used (x[:, :v.bind(n)]), so the graph says which value it means")
    unbound, values = unbind(arg)
    memo = arg.__dict__["_unbound_key"] = (("uop", unbound.key), values)
  key, values = memo
  for name, value in values.items():
    if binds.setdefault(name, value) != value:
      raise BindingConflict(f"Variable {name!r} is bound to both {binds[name]} and {value} in one graph; a kernel reads one value")
  return key

class _Constants:
  """The structure of a graph of constants: its nodes in order as (op, dtype, arg, indices of its sources) -- flat, so
  a graph that shares its nodes is no bigger written down. Interned (`_Constants.of`): equal structures are one object,
  so a key holding one hashes and compares it by identity, at C speed (a key lookup meets one per scalar operand)."""
  __slots__ = ("nodes", "__weakref__")
  live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # nodes -> the one object (made once per constant graph)
  def __init__(self, nodes: tuple): self.nodes = nodes
  @staticmethod
  def of(nodes: tuple) -> _Constants:
    if (c := _Constants.live.get(nodes)) is None: c = _Constants.live[nodes] = _Constants(nodes)
    return c

# a graph of constants (no storage, write or copy below it) keeps, in its root's __dict__ as "constant", (its key entry, or
# None while a node of it has a remembered value; the count of constant values remembered when that was found). Equal
# structures are one node (interning), so the structure says all there is to say about one; such graphs are typically
# alive between calls (the kernels' ASTs and the scalar-node table hold them), so the walk writes one down as one entry,
# without going below it

def _constant_entry(n: UOp) -> tuple | None:
  """The key entry of a constant graph, or None if some node of it has a computed value that bind_values would read
  (schedule.substituted_value: a broadcast literal's never is): the walk goes below it, and meets the parts without
  one as constant graphs of their own."""
  now = schedule.constant_values_remembered
  if (memo := n.__dict__.get("constant")) is not None and memo[1] == now: return memo[0]
  order = n.toposort
  clean: dict[UOp, bool] = {}
  for u in order: clean[u] = (u.stored is None or schedule.is_broadcast_literal(u)) and all(clean[s] for s in u.src)
  if not clean[n]:
    for u in order:  # one pass for all of them: the walk asks again for each node it goes below
      if not clean[u]: u.__dict__["constant"] = (None, now, None)
    return None
  index, binds = {u: i for i, u in enumerate(order)}, {}
  arg = lambda u: None if u.arg is None else _structural(u.arg, binds) if ops_module.variables_made and _has_uop(u.arg) else _arg_key(u.arg)
  entry = ("constant", _Constants.of(tuple((u.op, u.dtype, arg(u), *[index[s] for s in u.src]) for u in order)))
  n.__dict__["constant"] = (entry, now, binds)
  return entry

def _leaf_entry(s: UOp, slots: dict[Buffer, int], storages: list[Buffer], reads: list[UOp]) -> tuple | None:
  """The key entry of a node the walk does not go below -- a computed value (if still current), a storage read or one
  reshape of it -- its storage given the next slot if it has none yet; None for any other node (the walk goes below)."""
  if (v := s.stored) is not None and buffer_of(b := _strip_reshapes(v)).version == b.arg[2]:
    # a computed value is read from its buffer (bind_values): the key records that buffer and the view
    if (slot := slots.get(buf := buffer_of(b))) is None:
      slot = slots[buf] = len(storages); storages.append(buf); reads.append(b)
    shapes, u = [], v
    while u.op is _RESHAPE: shapes.append(u.arg); u = u.src[0]
    return (None, b.dtype, slot, b.arg[1], b.device, *shapes)
  # a storage read, or one reshape of it (a tensor's read of its storage: one entry for the two nodes, the reshape's
  # shape in it; the BUFFER node is then no node of the walk, and no becomes entry names one)
  if (op := s.op) is _BUFFER or (op is _RESHAPE and (b := s.src[0]).op is _BUFFER):
    if op is _BUFFER: b = s
    # buffer_of(b) without its frame where the node has its Buffer already (a live tensor's read has)
    buf, arg = b.__dict__.get("buffer") or buffer_of(b), b.arg
    if arg[2] != -1 and buf.version != arg[2]: raise _stale(b, buf)
    if (slot := slots.get(buf)) is None:
      slot = slots[buf] = len(storages); storages.append(buf); reads.append(b)
    return (op, b.dtype, slot, arg[1], arg[3], arg[2] == -1, b.device, s.shape)
  return None

def schedule_walk(targets: list[UOp]) -> GraphWalk:
  """One walk of the graph of `targets` down to storage reads and computed values (the walk bind_values makes, in a
  fixed order: depth first, sources left to right): checks every read names its storage's current version (else
  StaleReadError) and writes the graph down as a key. Two graphs with equal keys differ only in which storages they
  read, read them with the same aliasing, and have the same computed values, so they get the same schedule."""
  if len(targets) == 1 and (walk := _walk_one_op(targets[0])) is not None: return walk
  index: dict[UOp, int] = {}
  entries: list[tuple] = []
  slots: dict[Buffer, int] = {}  # storage -> slot (a Buffer hashes and compares by identity: no id() call per read)
  storages: list[Buffer] = []
  reads: list[UOp] = []
  writes: list[UOp] = []
  _walk_binds.clear()

  # depth first with one iterator per open node (sources left to right); a node is written down after its sources
  # the targets are the sources of an open root that is no node (a SINK would be one more node to build per realize)
  open_nodes: list = [None]
  iters, source_index, now = [iter(targets)], index.__getitem__, schedule.constant_values_remembered
  while iters:
    for s in iters[-1]:
      if s in index: continue
      if not s.ops_below & STATEFUL:
        # a constant graph: its entry as remembered on it (see _constant_entry, which always leaves one), if that still holds
        if (m := s.__dict__.get("constant")) is None or m[1] != now:
          _constant_entry(s)
          m = s.__dict__["constant"]
        if (entry := m[0]) is not None:
          if m[2]:  # the bindings under a constant graph (a mask padded by a bound offset)
            for name, value in m[2].items():
              if _walk_binds.setdefault(name, value) != value: raise BindingConflict(f"Variable {name!r} is bound to both {_walk_binds[name]} and {value} in one graph")
          index[s] = len(index)
          entries.append(entry)
          continue
      # a node the walk does not go below (_leaf_entry); most nodes are none, which two attribute reads say without a call
      if (((op := s.op) is not _BUFFER and op is not _RESHAPE and s.stored is None)
          or (entry := _leaf_entry(s, slots, storages, reads)) is None):
        open_nodes.append(s); iters.append(iter(s.src))
        break
      index[s] = len(index)
      entries.append(entry)
    else:
      iters.pop()
      if (n := open_nodes.pop()) is None:
        entries.append(("targets", index[targets[0]]) if len(targets) == 1 else ("targets", *map(source_index, targets)))
        break
      # the arg as a key: None, ints and tuples of ints (a CONTIGUOUS's tag aside) as they are, the rest by _arg (a
      # call fewer for most nodes: an ALU op's none, a movement's shape)
      op, src, a = n.op, n.src, n.arg
      if a is not None and (op is _CONTIGUOUS or (t := type(a)) is not int):
        if op is _CONTIGUOUS or t is not tuple: a = _arg(op, a)
        else:
          for x in a:  # type() inline in a loop: ~twice as fast as issuperset(map(type, a)) on a shape
            if type(x) is not int:
              a = _arg(op, a)
              break
      # spelled out for one and two sources (most nodes): a starred map costs several times as much
      entries.append((op, n.dtype, a, index[src[0]]) if len(src) == 1 else (op, n.dtype, a, index[src[0]], index[src[1]]) if len(src) == 2
                     else (op, n.dtype, a, *map(source_index, src)))
      if op is _ASSIGN: writes.append(n)
      index[n] = len(index)
  # every flag: the runners a template keeps depend on the codegen flags (the registry only grows, so a value's position names it)
  flags = memo[0] if (memo := ContextVar._all)[1] == ContextVar.changes else ContextVar.all_values()  # all_values(), inline
  return GraphWalk((flags, tuple(entries)), index, storages, reads, writes, dict(_walk_binds) if _walk_binds else {})

def _walk_one_op(n: UOp) -> GraphWalk | None:
  """schedule_walk([n]) for one op over values it does not walk below -- storage reads, computed values, constant
  graphs -- which is what an eager op on computed tensors is; None for any other graph (its sources are walked first:
  a deeper graph costs a look at them). The same entries in the same order as the general walk, written flat: its
  stack of iterators is a third of the walk's cost for such a graph (tests/test_schedule_cache.py holds the two equal)."""
  # a constant graph is one entry of its own, and a Variable's binding is collected by the general walk
  if not n.ops_below & STATEFUL or (ops_module.variables_made and n.ops_below & _VARIABLE_BITS): return None
  index: dict[UOp, int] = {}
  entries: list[tuple] = []
  slots: dict[Buffer, int] = {}
  storages: list[Buffer] = []
  reads: list[UOp] = []
  for s in (src := n.src):
    if s in index: continue
    if not s.ops_below & STATEFUL:  # a constant graph, as the general walk writes one down
      if (m := s.__dict__.get("constant")) is None or m[1] != schedule.constant_values_remembered:
        _constant_entry(s)
        m = s.__dict__["constant"]
      if (entry := m[0]) is None or m[2]: return None  # some node of it has a value, or it binds a Variable
    elif (entry := _leaf_entry(s, slots, storages, reads)) is None: return None  # a source to walk below
    index[s] = len(index)
    entries.append(entry)
  if (op := n.op) is _ASSIGN or not src or n.stored is not None or op is _BUFFER or (op is _RESHAPE and src[0].op is _BUFFER): return None
  if (a := n.arg) is not None and (op is _CONTIGUOUS or (t := type(a)) is not int):
    if op is _CONTIGUOUS or t is not tuple: a = _arg(op, a)
    else:
      for x in a:
        if type(x) is not int:
          a = _arg(op, a)
          break
  entries.append((op, n.dtype, a, index[src[0]]) if len(src) == 1 else (op, n.dtype, a, index[src[0]], index[src[1]]) if len(src) == 2
                 else (op, n.dtype, a, *map(index.__getitem__, src)))
  index[n] = i = len(index)
  entries.append(("targets", i))
  flags = memo[0] if (memo := ContextVar._all)[1] == ContextVar.changes else ContextVar.all_values()
  return GraphWalk((flags, tuple(entries)), index, storages, reads, [], {})

@dataclass
class ScheduleTemplate:
  """A schedule over the slots of the walk it was built from: buffer refs below len(storages) are the walk's storages,
  the rest the new buffers (device, size, dtype) in `new`, made afresh for each run. `runners` (one per item, the
  engine's) are filled in by whoever lowers it, once: equal keys mean equal kernels and equal codegen flags."""
  n_storages: int
  items: list[tuple[int, ...]]                  # each item's buffers (bufs[0] is written), as refs
  new: list[tuple[str, int, DType, tuple | None]]  # device, size, dtype, the shape a node is read in (None: scratch, no node names it)
  becomes: list[tuple[int, int, tuple[int, ...]]]  # walk index of a node, ref of the storage holding it, the view's shape
  written: list[int]                            # refs of the storages written in place
  reasons: tuple[str, ...] = ()                 # each item's realize reason (ScheduleItem.reason), so a hit can say it too
  runners: list | None = None
  launches: tuple | None = None                 # how the engine launches the runners (engine.realize.bound_launches), once
  # writes no storage in place, and every becomes entry is a value computed into a new buffer of the run (read at its
  # first version): realize_nodes remembers them without asking per entry what this says (docs/design/0032)
  plain: bool = False

  def bind(self, walk: GraphWalk) -> tuple[list[Buffer], dict[UOp, UOp], list[Buffer]]:
    """The buffers for this run (by ref), and what create_schedule would have returned for `walk`: node -> a view of the
    storage holding it, and the storages written in place."""
    bufs, reads, shaped = list(walk.storages), list(walk.reads), {}
    for device, size, dtype, shape in self.new:
      bufs.append(buf := Buffer(device, size, dtype))
      if shape is None: reads.append(None); continue  # scratch: nothing names it
      # the BUFFER node and its read in the shape it becomes, made together (neither can be an interning hit)
      node, shaped[len(reads)] = UOp.new_buffer_view(device, size, dtype, shape)
      register_buffer(node, buf); reads.append(node)
    nodes, becomes = list(walk.index), {}  # walk order; a loop, not a comprehension (its frame, every realize)
    for i, r, shape in self.becomes: becomes[nodes[i]] = v if (v := shaped.get(r)) is not None and v.shape == shape else reads[r].reshape(shape)
    return bufs, becomes, [bufs[r] for r in w] if (w := self.written) else []

class _NotATemplate(Exception): pass

def make_template(walk: GraphWalk, items: list[ScheduleItem], becomes: dict[UOp, UOp], written: list[Buffer],
                  new_nodes: set[UOp]) -> ScheduleTemplate | None:
  """create_schedule's result for `walk`'s graph written over its slots, or None if some part of it is not a storage
  of the walk, a new buffer or a node of the walk (then it is run uncached)."""
  refs: dict[int, int] = {id(b): i for i, b in enumerate(walk.storages)}
  new: list[list] = []
  def ref(node: UOp) -> int:
    buf = buffer_of(node)
    if (r := refs.get(id(buf))) is not None: return r
    if node not in new_nodes: raise _NotATemplate(f"a storage outside the graph ({node.arg})")
    refs[id(buf)] = r = walk_len + len(new)
    new.append([buf.device, buf.size, buf.dtype, None])
    return r
  walk_len = len(walk.storages)
  try:
    item_refs = [tuple(ref(b) for b in it.bufs) for it in items]
    views = []
    for old, view in becomes.items():
      if (i := walk.index.get(old)) is None: raise _NotATemplate(f"a {old.op.name} outside the walk")
      b = _strip_reshapes(view)
      r = ref(b)
      if r < walk_len and (walk.reads[r].dtype, walk.reads[r].arg[1]) != (b.dtype, b.arg[1]): raise _NotATemplate("a storage read as two dtypes")
      if r >= walk_len and new[r - walk_len][3] is None: new[r - walk_len][3] = view.shape
      views.append((i, r, view.shape))
    wrote = [refs[id(b)] for b in written]
  except (_NotATemplate, KeyError): return None
  plain = not wrote and all(r >= walk_len for _, r, _ in views)
  return ScheduleTemplate(walk_len, item_refs, [tuple(x) for x in new], views, wrote, tuple(it.reason for it in items), plain=plain)

# key -> template, oldest first; bounded (a hot entry pushed out costs one schedule to put back), and holding no node of
# the graphs it came from
SCHEDULE_CACHE_SIZE = 512
templates: dict[tuple, ScheduleTemplate] = {}

def cached_template(key: tuple) -> ScheduleTemplate | None: return templates.get(key)

def keep_template(key: tuple, t: ScheduleTemplate):
  templates[key] = t
  while len(templates) > SCHEDULE_CACHE_SIZE: del templates[next(iter(templates))]
