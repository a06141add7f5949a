"""The IR: the `Ops` enum and the `UOp` node -- immutable, hash-consed (equal UOps are the same object), with shape, dtype,
device and value bounds derived from the sources alone. Knows nothing of patterns or devices."""
from __future__ import annotations
from enum import Enum, auto
from functools import cached_property
import hashlib, struct, weakref, itertools
from typing import Any
from lucidgrad.dtype import DType, dtypes, as_const, min_max
from lucidgrad.helpers import prod, all_same

class Ops(Enum):
  # graph roots, constants and buffers
  SINK = auto(); DEVICE = auto(); BUFFER = auto(); CONST = auto()
  # movement: each has a simple index map and a simple derivative
  RESHAPE = auto(); PERMUTE = auto(); EXPAND = auto(); PAD = auto(); SHRINK = auto(); FLIP = auto()
  # reduction over tensor axes (arg = (alu op, axes)); its kernel-level form is REDUCE (src = value, *ranges)
  REDUCE_AXIS = auto(); REDUCE = auto()
  # realization markers; DETACH is an identity that gradients stop at
  CONTIGUOUS = auto(); COPY = auto(); ASSIGN = auto(); DETACH = auto()
  # unary ALU
  NEG = auto(); EXP2 = auto(); LOG2 = auto(); SIN = auto(); COS = auto(); SQRT = auto(); RECIPROCAL = auto(); TRUNC = auto()
  # binary ALU
  ADD = auto(); SUB = auto(); MUL = auto(); FDIV = auto(); IDIV = auto(); MOD = auto(); MAX = auto(); POW = auto()
  CMPLT = auto(); CMPNE = auto(); CMPEQ = auto(); AND = auto(); OR = auto(); XOR = auto(); SHL = auto(); SHR = auto()
  # ternary ALU; MULACC(a, b, c) is a*b + c rounded once, made only for a float sum's accumulator update (codegen/linearize.py)
  WHERE = auto(); MULACC = auto()
  CAST = auto(); BITCAST = auto()
  # kernel level
  DEFINE_GLOBAL = auto(); DEFINE_LOCAL = auto(); DEFINE_REG = auto(); SPECIAL = auto()
  RANGE = auto(); END = auto(); INDEX = auto(); LOAD = auto(); STORE = auto()
  VECTORIZE = auto(); GEP = auto(); BARRIER = auto(); WMMA = auto()
  # tensor level, last so the members above keep their numbers (an arg's repr carries them into structural keys, and so
  # into term order and the caches keyed by them). GATHER(x, index), arg = axis d: out[..., i, ...] = x[..., index[..., i,
  # ...], ...] along d; shape is the index's, which matches x's off d. The one op whose address is a value (docs/design/0014)
  GATHER = auto()
  # SCATTER(base, index, src), arg = (axis d, op): the base, then for each source element in order, out[..., index[...,
  # i, ...], ...] = out[...] op src[..., i, ...] (op ADD; None stores src: the last wins). Shape is the base's (docs/design/0017)
  SCATTER = auto()
  # VJP(value, *inputs), arg = (rule, params): value itself to everything but gradients, which reach the inputs through
  # the named rule (gradient.VJP_RULES) instead of through value's graph: a convolution's input gradient as one transposed
  # convolution, not the sum over overlapping windows its movement ops would give (docs/design/0020)
  VJP = auto()
  # DEFINE_VAR: an int variable, arg (name, min, max) (docs/design/0029). With no source it is index math (a symbolic
  # size or offset in a shape or a movement arg, and a kernel's scalar parameter); with a DEVICE source it is a
  # tensor-level scalar of shape () (a mask built from it), lowered to the plain one
  DEFINE_VAR = auto()
  # BIND(var, CONST n): Variable `var` with the value n, as a bound size or offset sits in a shape or a movement arg. The
  # value is part of the graph, so graphs built under two bindings are two graphs (a value remembered for one is never
  # read for the other); the scheduler's key and the kernels see the Variable alone (docs/design/0029)
  BIND = auto()
  # TAKE(x, index), arg = axis d: x's slices along d at the positions index holds, index of any shape (numpy's take, torch's
  # index_select and embedding): shape x.shape[:d] + index.shape + x.shape[d+1:]. One node where the GATHER it stands for
  # needs three (the index flattened, broadcast over x's other axes, the gather): the scheduler writes it as that GATHER
  # first (take_as_gather), so nothing past the tensor level meets it (docs/design/0038)
  TAKE = auto()
  # PREFETCH(INDEX): a hint that the address will be read soon (kernel level, C only; no value, never faults): the next
  # block's panel, fetched while the loops over the current one run (codegen/linearize.prefetch_next_block)
  PREFETCH = auto()
  # members are singletons: hashing by identity keeps the matcher's dict and set lookups off Enum's slow __hash__
  __hash__ = object.__hash__

class GroupOp:
  Unary = {Ops.NEG, Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.COS, Ops.SQRT, Ops.RECIPROCAL, Ops.TRUNC}
  Binary = {Ops.ADD, Ops.SUB, Ops.MUL, Ops.FDIV, Ops.IDIV, Ops.MOD, Ops.MAX, Ops.POW, Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ,
            Ops.AND, Ops.OR, Ops.XOR, Ops.SHL, Ops.SHR}
  Ternary = {Ops.WHERE, Ops.MULACC}
  ALU = Unary | Binary | Ternary
  Elementwise = ALU | {Ops.CAST, Ops.BITCAST}
  Commutative = {Ops.ADD, Ops.MUL, Ops.MAX, Ops.CMPNE, Ops.CMPEQ, Ops.AND, Ops.OR, Ops.XOR}
  Comparison = {Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ}
  Movement = {Ops.RESHAPE, Ops.PERMUTE, Ops.EXPAND, Ops.PAD, Ops.SHRINK, Ops.FLIP}
  Associative = {Ops.ADD, Ops.MUL, Ops.MAX, Ops.AND, Ops.OR, Ops.XOR}
  # ops that are f(0, ...) != 0 and so cannot run on padded-out elements without a guard
  Reduce = {Ops.ADD, Ops.MUL, Ops.MAX}

# kernel-level ops: their nodes never have a tensor shape (UOp._shape answers None), so building one skips the question
_NO_SHAPE = frozenset({Ops.DEVICE, Ops.SINK, Ops.REDUCE, Ops.DEFINE_LOCAL, Ops.DEFINE_REG, Ops.SPECIAL, Ops.RANGE, Ops.END, Ops.PREFETCH,
                       Ops.INDEX, Ops.LOAD, Ops.STORE, Ops.VECTORIZE, Ops.GEP, Ops.BARRIER, Ops.WMMA})
# ops whose shape is their first source's
_SHAPE_OF_SRC0 = frozenset((GroupOp.Elementwise - {Ops.WHERE}) | {Ops.CONTIGUOUS, Ops.COPY, Ops.ASSIGN, Ops.DETACH, Ops.VJP})

# COPY: a loop of a staging copy (OptOps.STAGE), which is not a kernel axis: no opt acts on it
# ROW: the outer part of an output loop the threads of a block share (OptOps.ROW): a loop every one of them runs
AxisType = Enum("AxisType", ["LOOP", "REDUCE", "UPCAST", "UNROLL", "GLOBAL", "LOCAL", "THREAD", "GROUP", "TILE", "COPY", "ROW"])

def _arg_key(arg: Any) -> Any:
  """Hash-consing must tell 0.0 from -0.0, 1 from True and keep NaN equal to itself. A plain int stands for itself and
  a tuple of plain ints (a shape) is its own key: every other key is a tuple that starts with a type or a key, so no two
  args share one."""
  if type(arg) is int: return arg
  if type(arg) is tuple:
    if _INT_TYPE.issuperset(map(type, arg)): return arg
    # ints and bools (a BUFFER's arg) keyed here, without a call per element
    return tuple([a if (t := type(a)) is int else (bool, a) if t is bool else _arg_key(a) for a in arg])
  if isinstance(arg, float): return (float, struct.pack("d", arg))
  if isinstance(arg, tuple): return tuple(_arg_key(a) for a in arg)
  return (type(arg), arg)
_INT_TYPE = frozenset({int})

# key -> weak reference to the live node: a plain dict of weak references is a WeakValueDictionary without its per-call
# Python overhead, and hash-consing is the hottest path in codegen
_nodes: dict[tuple, _NodeRef] = {}

class _NodeRef(weakref.ref):
  """A weak reference to an interned node that knows the node's key, so its entry can go when the node dies."""
  __slots__ = ("key",)

def _forget(ref: _NodeRef, nodes=_nodes):
  # a dead node's entry goes, unless a new node took its key since (a callback can run late, in a gc pass): then it
  # is put back. One lookup in the usual case: the key hashes a DType, and nodes die by the thousand
  if (now := nodes.pop(ref.key, None)) is not ref and now is not None: nodes[ref.key] = now
  ref.key = None  # the key holds the node's sources, and this reference stays in their child lists (see _Interned)

class _Interned(type):
  cache = _nodes
  def __call__(cls, op: Ops, dtype: DType = dtypes.void, src: tuple = (), arg: Any = None):
    # the sources themselves are in the key (UOps hash and compare by identity): it keeps them no longer than the node
    # does, since its entry goes when the node dies, and saves building a tuple of ids for every node looked up
    if type(src) is not tuple: src = tuple(src)
    # _arg_key's answer for the common args (none, an int, a shape) without its call: most nodes built have one
    if arg is None or (t := type(arg)) is int: key = (op, dtype, src, arg)
    elif t is tuple:
      for a in arg:  # a loop with type() inline (3.11 specialises it) is ~twice as fast as issuperset(map(type, arg))
        if type(a) is not int:
          key = (op, dtype, src, _arg_key(arg))
          break
      else: key = (op, dtype, src, arg)
    else: key = (op, dtype, src, _arg_key(arg))
    if (ref := _nodes.get(key)) is not None and (ret := ref()) is not None: return ret
    ret = cls.__new__(cls)
    # UOp.__init__'s work, done here: one Python frame less per node built, and every eager op builds one
    ret.op, ret.dtype, ret.src, ret.arg = op, dtype, src, arg
    # shape and device are computed as the node is built (sources first), so even a very deep graph never recurses
    ret.shape = src[0].shape if op in _SHAPE_OF_SRC0 else arg if op in _SHAPE_IS_ARG else None if op in _NO_SHAPE else src[1].shape if op in _SHAPE_OF_SRC1 \
      else rule(ret) if (rule := _SHAPE_RULES.get(op)) is not None else None
    # one loop, no Ops.X lookups (slow on 3.11's EnumType)
    device, rg, ops_below = arg if op in _DEVICE_IN_ARG else None, False, _OP_BIT[op]
    for s in src:
      if device is None: device = s.device
      rg = rg or s.requires_grad
      ops_below |= s.ops_below
    # a movement whose arg names a Variable: its graph's values depend on the binding (docs/design/0029)
    if variables_made and op in _VAR_ARG_OPS and _has_uop(arg): ops_below |= _VAR_BIT
    ret.device = device
    # PyTorch's rule: a leaf BUFFER read carries the flag, DETACH clears it, every other node takes it from its sources
    ret.requires_grad = (op is _BUFFER and arg[3]) if op in _OWN_GRAD_FLAG else rg
    # the ops in this node's graph (itself included) as bits of _OP_BIT: a rewrite skips a graph none of its rules can match
    ret.ops_below = ops_below
    ret.children = ret.holders = None  # tensor-level users and Tensors whose value this is (weak; here and tensor.py)
    ret.stored = None  # where a realize stored this node's value (a buffer view; schedule.remember_value)
    ret._fixed_in = ()  # PatternMatchers that leave this node and everything under it as it is (uop/pattern.py)
    (ref := _NodeRef(ret, _forget)).key = key
    _nodes[key] = ref
    # tensor-level nodes link to their users weakly, so the values a write to a buffer would destroy can be found by
    # walking up from it (docs/design/0005); devices and constants are read by everything and never overwritten. The link
    # is the interning table's reference: its key (which holds the sources) is let go when the node dies (_forget), so
    # a source's list never keeps the source itself alive
    if device is not None:
      for s in src:
        if s.op not in _UNLINKED:
          if (users := s.children) is None: s.children = [ref]
          else:  # helpers.add_weak, inlined: dead links dropped whenever the list doubles
            users.append(ref)
            if (n := len(users)) >= 16 and n & (n - 1) == 0: users[:] = [r for r in users if r() is not None]
    return ret

_UNLINKED = {Ops.DEVICE, Ops.CONST, Ops.DEFINE_VAR}
# as _SHAPE_RULES says, without a call: every realize reshapes its output, every gather and where is an eager op
_SHAPE_IS_ARG, _SHAPE_OF_SRC1 = frozenset({Ops.RESHAPE, Ops.EXPAND}), frozenset({Ops.GATHER, Ops.WHERE})
_VAR_ARG_OPS = frozenset({Ops.SHRINK, Ops.PAD, Ops.RESHAPE, Ops.EXPAND})
_DEVICE_IN_ARG, _OWN_GRAD_FLAG, _BUFFER = frozenset({Ops.DEVICE, Ops.COPY}), frozenset({Ops.BUFFER, Ops.DETACH}), Ops.BUFFER
_OP_BIT: dict[Ops, int] = {op: 1 << i for i, op in enumerate(Ops)}
# set in ops_below of every node whose value depends on a Variable's binding: a DEFINE_VAR below it, or a movement
# whose arg names one. Such a value is never remembered (schedule.remember_value): interned graphs are equal for every
# binding, so a value remembered under one would be read under the next
_VAR_BIT, _BIND_BIT = _OP_BIT[Ops.DEFINE_VAR], _OP_BIT[Ops.BIND]
def depends_on_variable(u: UOp) -> bool: return bool(u.ops_below & _VAR_BIT)
def _has_uop(arg) -> bool: return isinstance(arg, UOp) or (type(arg) is tuple and any(_has_uop(a) for a in arg))
_OP_NAMES: dict[Ops, str] = {op: op.name for op in Ops}  # Enum's .name is a slow descriptor on 3.11

# the shape of a node of each op that has one (UOp._shape); any other op's is None
_SHAPE_RULES: dict = {
  **{op: lambda u: u.src[0].shape for op in _SHAPE_OF_SRC0 | {Ops.FLIP}},
  Ops.BUFFER: lambda u: (u.arg[1],),
  Ops.DEFINE_GLOBAL: lambda u: (u.arg[1],) if isinstance(u.arg, tuple) else None,
  Ops.CONST: lambda u: () if u.src else None,
  Ops.DEFINE_VAR: lambda u: () if u.src else None,
  Ops.RESHAPE: lambda u: u.arg, Ops.EXPAND: lambda u: u.arg,
  Ops.PERMUTE: lambda u: tuple(u.src[0].shape[i] for i in u.arg),
  Ops.PAD: lambda u: tuple(s + b + a if type(s) is int and type(b) is int and type(a) is int else ssimplify(s + b + a) for s, (b, a) in zip(u.src[0].shape, u.arg)),
  Ops.SHRINK: lambda u: tuple(e - b if type(b) is int and type(e) is int else ssimplify(e - b) for b, e in u.arg),
  Ops.REDUCE_AXIS: lambda u: tuple(1 if i in u.arg[1] else s for i, s in enumerate(u.src[0].shape)),
  Ops.WHERE: lambda u: u.src[1].shape,
  Ops.GATHER: lambda u: u.src[1].shape,
  Ops.TAKE: lambda u: u.src[0].shape[:u.arg] + u.src[1].shape + u.src[0].shape[u.arg+1:],
  Ops.SCATTER: lambda u: u.src[0].shape,
}

_buffer_ids = itertools.count()
_device_nodes: dict[str, UOp] = {}  # the DEVICE node of each device named so far (a new storage's read names it)
_range_ids = itertools.count()

class UOp(metaclass=_Interned):
  """One node: (op, dtype, src, arg). Never mutate one; build a new one with `replace`. `UOp(op, dtype, src, arg)` returns
  the live node with those fields if there is one; a new node's slots are filled in by the metaclass (_Interned)."""
  # the facts every node gets in slots (set several times faster than __dict__ entries, and every op builds nodes);
  # facts cached on first read (key, bounds, toposort, rewrite memos) go in __dict__. `stored` is a slot too: a realize's
  # walk asks it of every node it passes, and asking __dict__ makes one (~0.15 us a node, and as much again when it dies)
  __slots__ = ("op", "dtype", "src", "arg", "shape", "device", "requires_grad", "ops_below", "children", "holders", "stored",
               "_fixed_in", "__dict__", "__weakref__")
  def __repr__(self):
    if self.op is Ops.DEFINE_VAR and not self.src: return f"Variable({self.arg[0]!r}, {self.arg[1]}, {self.arg[2]})"
    if self.op is Ops.BIND: return f"{self.src[0]!r}.bind({self.src[1].arg})"
    if self.device is None and self.ops_below & (_VAR_BIT | _BIND_BIT) and all(u.op in _SIZE_OPS for u in self.toposort):
      return f"<size {sym_str(self)}>"  # a symbolic size in a shape: (1, 2, <size (sp=2+3)>, 4)
    return pretty(self)
  def __reduce__(self): return UOp, (self.op, self.dtype, self.src, self.arg)
  def replace(self, **kw) -> UOp:
    new = (kw.get("op", self.op), kw.get("dtype", self.dtype), kw.get("src", self.src), kw.get("arg", self.arg))
    return self if new == (self.op, self.dtype, self.src, self.arg) and all(a is b for a, b in zip(new[2], self.src)) else UOp(*new)

  # ---- derived facts ----
  @property
  def toposort(self) -> list[UOp]:
    """Every node this one depends on, sources before users, this one last. Iterative: graphs can be deep."""
    return [*self._below, self]
  @cached_property
  def _below(self) -> tuple[UOp, ...]:
    # cached without the node itself: a node whose cache held itself would be a reference cycle, freed only by the
    # garbage collector instead of the moment its last user lets go
    # depth first, sources left to right, each node after its sources: one iterator per open node
    out, seen, iters, nodes = [], {self}, [iter(self.src)], [self]
    while iters:
      for s in iters[-1]:
        if s not in seen:
          seen.add(s); iters.append(iter(s.src)); nodes.append(s)
          break
      else:
        iters.pop()
        if (n := nodes.pop()) is not self: out.append(n)
    return tuple(out)

  def find(self, *ops: Ops) -> list[UOp]:
    """The nodes of this graph whose op is one of `ops`, in toposort order; parts of the graph without one (see
    ops_below) are not walked."""
    want = sum(_OP_BIT[op] for op in ops)
    out, seen, iters, nodes = [], {self}, [iter(self.src)], [self]
    while iters:
      for s in iters[-1]:
        if s not in seen and s.ops_below & want:
          seen.add(s); iters.append(iter(s.src)); nodes.append(s)
          break
      else:
        iters.pop()
        if (n := nodes.pop()).op in ops: out.append(n)
    return out

  @cached_property
  def key(self) -> str:
    """A structural hash, equal across processes: used to order terms and to name compiled kernels. Filled in sources
    first without recursing (a deep graph), and only below nodes that have none yet (a new node over an old graph)."""
    stack = [self]
    while stack:
      n = stack[-1]
      if "key" in n.__dict__: stack.pop(); continue
      if missing := [s for s in n.src if "key" not in s.__dict__]: stack.extend(missing); continue
      stack.pop()
      # content_hash of (op name, dtype, arg, source keys), its parts joined here into one string
      text = "".join([f"{_OP_NAMES[n.op]}\0{n.dtype!r}\0{n.arg!r}\0", *[s.__dict__["key"] + "\0" for s in n.src]])
      n.__dict__["key"] = hashlib.sha256(text.encode()).hexdigest()[:24]
    return self.__dict__["key"]

  def _shape(self) -> tuple[int, ...] | None:
    """The tensor shape; None for kernel-level nodes. One dict look-up by op (a `match` on Ops.X names costs an enum
    attribute look-up per case on 3.11, and every movement node built asks)."""
    return rule(self) if (rule := _SHAPE_RULES.get(self.op)) is not None else None

  @property
  def size(self) -> int: return prod(self.shape) if self.shape is not None else 1

  @cached_property
  def base(self) -> UOp:
    """This node with movement ops peeled off."""
    return self.src[0].base if self.op in GroupOp.Movement else self

  @property
  def is_realized(self) -> bool: return self.base.op is Ops.BUFFER

  # ---- value bounds, used by symbolic rules ----
  # cached in __dict__ by hand: functools.cached_property takes a lock on every first read, and every new index node is read
  @property
  def vmin(self):
    if (b := self.__dict__.get("_bounds")) is None: b = self.__dict__["_bounds"] = _bounds(self)
    return b[0]
  @property
  def vmax(self):
    if (b := self.__dict__.get("_bounds")) is None: b = self.__dict__["_bounds"] = _bounds(self)
    return b[1]

  # ---- constructors ----
  @staticmethod
  def const(dtype: DType, value: Any, device: str | None = None) -> UOp:
    """A scalar constant; with a device it is a tensor-level constant of shape ()."""
    if dtype.count > 1: return UOp(Ops.VECTORIZE, dtype, tuple(UOp.const(dtype.scalar(), value) for _ in range(dtype.count)))
    return UOp(Ops.CONST, dtype, (UOp(Ops.DEVICE, arg=device),) if device is not None else (), as_const(value, dtype))
  def const_like(self, value: Any) -> UOp:
    """A constant of this node's dtype -- and, for a tensor-level node, its shape and device."""
    c = UOp.const(self.dtype, value, self.device if self.shape is not None else None)
    return c.reshape((1,)*len(self.shape)).expand(self.shape) if self.shape else c
  @staticmethod
  def new_buffer(device: str, size: int, dtype: DType) -> UOp:
    """A read of a new storage. BUFFER's arg is (uid, size, version, requires_grad): which contents of the storage the
    node means, and whether it is a leaf that gradients flow to (docs/design/0005)."""
    return UOp.new_buffer_view(device, size, dtype, (size,))[0]
  @staticmethod
  def new_buffer_view(device: str, size: int, dtype: DType, shape: tuple[int, ...]) -> tuple[UOp, UOp]:
    """A new storage of `size` elements: its BUFFER node (read at version 0, no leaf) and that read in `shape` (of
    `size` elements: a RESHAPE of it, or the node itself for (size,)) -- what a new tensor's value is. Its uid is new
    (uids come only from here), so neither node can be equal to a node made before: both are made with the facts
    _Interned.__call__ would derive given (not leaves), spelled out for the two nodes rather than in a helper, and
    neither goes into the interning table (docs/design/0038): every realize makes its output here, and an entry is a
    weak reference with a callback made, and a callback run when the node dies, for a lookup that almost never comes.
    A UOp() with the same fields later (a view rebuilt by a rewrite, `buf.reshape(shape)`) makes a twin: another
    node reading the same storage at the same version, which every reader of storages treats as this one (the walk
    keys storages by their Buffer, in-place writes find readers through the Buffer's BUFFER nodes and their child
    links, and a value is remembered on the node that computed it, never on a read)."""
    if (dev := _device_nodes.get(device)) is None: dev = _device_nodes[device] = UOp(Ops.DEVICE, arg=device)
    if type(size) is not int: size = int(size)  # keyed as UOp() keys a plain int (a NumPy int would key apart)
    uid, buf = next(_buffer_ids), UOp.__new__(UOp)
    buf.op, buf.dtype, buf.src, buf.arg, buf.shape, buf.device = _BUFFER, dtype, (dev,), (uid, size, 0, False), (size,), device
    buf.requires_grad, buf.ops_below, buf.children, buf.holders, buf.stored, buf._fixed_in = False, _BUFFER_BIT | dev.ops_below, None, None, None, ()
    if (shape := tuple(shape)) == buf.shape: return buf, buf
    view = UOp.__new__(UOp)
    view.op, view.dtype, view.src, view.arg, view.shape, view.device = _RESHAPE, dtype, (buf,), shape, shape, device
    view.requires_grad, view.ops_below, view.children, view.holders, view.stored, view._fixed_in = False, _RESHAPE_BIT | buf.ops_below, None, None, None, ()
    buf.children = [weakref.ref(view)]  # the child link UOp() would add (docs/design/0005)
    return buf, view
  def at_version(self, version: int, requires_grad: bool = False) -> UOp:
    """This BUFFER's storage read at `version`."""
    assert self.op is Ops.BUFFER, self.op
    return self.replace(arg=(self.arg[0], self.arg[1], version, requires_grad))
  @staticmethod
  def range(end: int, kind: AxisType = AxisType.LOOP, rid: int | None = None) -> UOp:
    return UOp(Ops.RANGE, dtypes.index, (UOp.const(dtypes.index, end),), (next(_range_ids) if rid is None else rid, kind))
  def alu(self, op: Ops, *src: UOp) -> UOp:
    dt = _BOOL if op in _COMPARISON else (src[-1].dtype if op is _WHERE else self.dtype)
    return intern_node(UOp, op, dt, (self,) + src)
  def cast(self, dtype: DType) -> UOp: return self if dtype == self.dtype else intern_node(UOp, _CAST, dtype, (self,))
  def bitcast(self, dtype: DType) -> UOp: return UOp(Ops.BITCAST, dtype, (self,))
  def where(self, a: UOp, b: UOp) -> UOp: return UOp(Ops.WHERE, a.dtype, (self, a, b))
  def sink(*srcs: UOp) -> UOp: return UOp(Ops.SINK, dtypes.void, srcs)
  def _mop(self, op: Ops, arg) -> UOp: return UOp(op, self.dtype, (self,), arg)
  # built directly (no _mop, no Ops.X look-up): every realize reshapes its output, every scalar operand expands
  def reshape(self, shape: tuple[int, ...]) -> UOp: return self if self.shape == (shape := tuple(shape)) else intern_node(UOp, _RESHAPE, self.dtype, (self,), shape)
  def expand(self, shape: tuple[int, ...]) -> UOp: return self if self.shape == (shape := tuple(shape)) else intern_node(UOp, _EXPAND, self.dtype, (self,), shape)
  def permute(self, order: tuple[int, ...]) -> UOp: return self if tuple(order) == tuple(range(len(order))) else self._mop(Ops.PERMUTE, tuple(order))
  def pad(self, arg: tuple[tuple[int, int], ...]) -> UOp: return self if all(p == (0, 0) for p in arg) else self._mop(Ops.PAD, tuple(arg))
  def shrink(self, arg: tuple[tuple[int, int], ...]) -> UOp:
    return self if all(a == (0, s) for a, s in zip(arg, self.shape)) else self._mop(Ops.SHRINK, tuple(arg))
  def flip(self, axes: tuple[int, ...]) -> UOp: return self if not axes else self._mop(Ops.FLIP, tuple(sorted(axes)))
  @staticmethod
  def positions(n: int, device: str) -> UOp:
    """int32 [0, 1, ..., n-1] built as a sum of bits: bit b of i is a padded constant seen through a reshape, so it
    costs no kernel of its own and fuses into whatever uses it."""
    if n == 0: return UOp.const(dtypes.int32, 0, device).reshape((1,)).expand((1,)).shrink(((0, 0),))
    bits = max(1, (n - 1).bit_length())
    size = 1 << bits
    one = UOp.const(dtypes.int32, 1, device).reshape((1,))
    total = None
    for b in range(bits):  # an axis of 2 holding [0, 2^b] between an outer and an inner axis
      pair = one.pad(((1, 0),)).alu(Ops.MUL, UOp.const(dtypes.int32, 1 << b, device).reshape((1,)).expand((2,)))
      outer, inner = size >> (b + 1), 1 << b
      term = pair.reshape((1, 2, 1)).expand((outer, 2, inner)).reshape((size,))
      total = term if total is None else total.alu(Ops.ADD, term)
    return total.shrink(((0, n),))
  def gather(self, index: UOp, axis: int) -> UOp:
    """Along `axis`, the elements of this node at the positions `index` (an int node of this node's ndim) holds."""
    return intern_node(UOp, _GATHER, self.dtype, (self, index), axis)
  def take(self, index: UOp, axis: int) -> UOp:
    """This node's slices along `axis` at the positions `index` (an int node of any shape) holds, in its shape."""
    return intern_node(UOp, _TAKE, self.dtype, (self, index), axis)
  def scatter(self, index: UOp, src: UOp, axis: int, op: Ops | None = Ops.ADD) -> UOp:
    """This node with each element of `src` combined by `op` (None: stored) into the position along `axis` that
    `index` (of src's shape) holds, in source order."""
    return UOp(Ops.SCATTER, self.dtype, (self, index, src), (axis, op))
  def reduce_axis(self, op: Ops, axes: tuple[int, ...]) -> UOp:
    return self if not axes else UOp(Ops.REDUCE_AXIS, self.dtype, (self,), (op, tuple(sorted(axes))))

  # ---- variables (docs/design/0029) ----
  def bind(self, value: int) -> UOp:
    """This Variable with `value` (min <= value <= max, else ValueError): use it where the size or offset goes
    (`x[:, :v.bind(n)]`, `f(x, v.bind(n))` for a jitted f). Expressions of it (`b + 1`) stay bound."""
    if self.op is not Ops.DEFINE_VAR or self.src: raise TypeError(f"bind: only a Variable can be bound, not a {self.op.name}")
    name, lo, hi = self.arg
    if isinstance(value, UOp) or not isinstance(value, (int, np_integer)) or isinstance(value, bool):
      raise TypeError(f"bind: Variable {name!r} takes an int, got {value!r}")
    if not lo <= value <= hi: raise ValueError(f"bind: Variable {name!r} takes values in [{lo}, {hi}], got {value}")
    bound_values[name] = int(value)  # what a JIT replay launches with (engine/jit.py sets it from its arguments too)
    return UOp(Ops.BIND, dtypes.int32, (self, UOp.const(dtypes.int32, int(value))))
  @property
  def val(self) -> int:
    """A bound Variable's value (a plain Variable: the value bound last, RuntimeError if none was)."""
    return self.src[1].arg if self.op is Ops.BIND else var_value(self)

  # ---- index arithmetic sugar (kernel level) ----
  def _const_of(self, x) -> UOp: return x if isinstance(x, UOp) else UOp.const(self.dtype, x)
  def __add__(self, x): return self.alu(Ops.ADD, self._const_of(x))
  def __radd__(self, x): return self._const_of(x).alu(Ops.ADD, self)
  def __sub__(self, x): return self.alu(Ops.SUB, self._const_of(x))
  def __rsub__(self, x): return self._const_of(x).alu(Ops.SUB, self)
  def __mul__(self, x): return self.alu(Ops.MUL, self._const_of(x))
  def __rmul__(self, x): return self._const_of(x).alu(Ops.MUL, self)
  def __floordiv__(self, x): return self.alu(Ops.IDIV, self._const_of(x))
  def __mod__(self, x): return self.alu(Ops.MOD, self._const_of(x))
  def __neg__(self): return self.alu(Ops.NEG)
  def __lt__(self, x): return self.alu(Ops.CMPLT, self._const_of(x))
  def __ge__(self, x): return self.alu(Ops.CMPLT, self._const_of(x)).alu(Ops.XOR, UOp.const(dtypes.bool, True))
  def __and__(self, x): return self.alu(Ops.AND, self._const_of(x))
  def __or__(self, x): return self.alu(Ops.OR, self._const_of(x))
  def ne(self, x): return self.alu(Ops.CMPNE, self._const_of(x))
  def eq(self, x): return self.alu(Ops.CMPEQ, self._const_of(x))
  def maximum(self, x): return self.alu(Ops.MAX, self._const_of(x))
  def substitute(self, mapping: dict[UOp, UOp]) -> UOp:
    """This graph with each key of `mapping` replaced by its value (values are taken as they are, not substituted
    into); every node above a replaced one is rebuilt, the rest is shared (and a graph without the keys' ops unvisited)."""
    rep, stack, key_ops = dict(mapping), [self], 0
    for k in mapping: key_ops |= _OP_BIT[k.op]
    while stack:
      if (n := stack[-1]) in rep: stack.pop(); continue
      if not n.ops_below & key_ops: rep[stack.pop()] = n; continue
      if missing := [s for s in n.src if s not in rep]: stack.extend(missing); continue
      new_src = tuple(map(rep.__getitem__, stack.pop().src))
      rep[n] = n if new_src == n.src else UOp(n.op, n.dtype, new_src, n.arg)  # == on UOps is identity
    return rep[self]

# ---- variables and symbolic sizes (docs/design/0029) ----
try: from numpy import integer as np_integer
except ImportError: np_integer = int  # type: ignore

# name -> the value bound to the variable of that name now: kernels read it when they run, so rebinding never changes
# a graph, a schedule or a kernel
bound_values: dict[str, int] = {}
variables_made = False  # no graph can be symbolic before the first Variable: the scheduler skips looking

def Variable(name: str, vmin: int, vmax: int) -> UOp:
  """An int variable with values in [vmin, vmax], usable as a tensor dimension and in shrink/pad/reshape bounds
  (`v + 1` is an expression of it). Bind a value with `v.bind(n)`; a kernel is compiled once for the whole range."""
  if not isinstance(name, str) or not name.isidentifier(): raise ValueError(f"Variable: the name must be an identifier, got {name!r}")
  if not all(isinstance(x, (int, np_integer)) and not isinstance(x, bool) for x in (vmin, vmax)) or not 0 <= vmin <= vmax:
    raise ValueError(f"Variable {name!r}: needs ints 0 <= min <= max, got min={vmin!r} max={vmax!r}")
  global variables_made
  variables_made = True
  return UOp(Ops.DEFINE_VAR, dtypes.int32, (), (name, int(vmin), int(vmax)))

def var_value(v: UOp) -> int:
  if (got := bound_values.get(v.arg[0])) is None:
    raise RuntimeError(f"Variable {v.arg[0]!r} has no value: bind one with .bind(n) before realizing a tensor that uses it")
  return got

def is_symbolic(x) -> bool: return isinstance(x, UOp)
def shape_is_symbolic(shape) -> bool: return shape is not None and any(type(s) is not int for s in shape)

def ssimplify(x):
  """An int expression simplified: a plain int where it folds to a constant, else the simplified UOp."""
  if not isinstance(x, UOp): return x
  from lucidgrad.uop.pattern import graph_rewrite
  from lucidgrad.uop.symbolic import symbolic
  x = graph_rewrite(x, symbolic, name="symbolic size")
  return x.arg if x.op is Ops.CONST else x

def smax(x) -> int:
  """The largest value a size can take: itself for an int, its bound for an expression of variables."""
  return x if not isinstance(x, UOp) else int(x.vmax)

def smin(x) -> int: return x if not isinstance(x, UOp) else int(x.vmin)

_SIZE_OPS = frozenset({Ops.DEFINE_VAR, Ops.BIND, Ops.CONST} | GroupOp.ALU)
_SYM_INFIX = {Ops.ADD: "+", Ops.SUB: "-", Ops.MUL: "*", Ops.IDIV: "//", Ops.MOD: "%"}
def sym_str(x) -> str:
  """A size, a shape or an int expression of Variables as short text: `(2, v+1)`."""
  if isinstance(x, tuple): return "(" + ", ".join(sym_str(s) for s in x) + ("," if len(x) == 1 else "") + ")"
  if not isinstance(x, UOp): return str(x)
  if x.op is Ops.DEFINE_VAR: return x.arg[0]
  if x.op is Ops.BIND: return f"{x.src[0].arg[0]}={x.src[1].arg}"
  if x.op is Ops.CONST: return str(x.arg)
  if x.op in _SYM_INFIX: return f"({sym_str(x.src[0])}{_SYM_INFIX[x.op]}{sym_str(x.src[1])})"
  return f"{x.op.name.lower()}({', '.join(sym_str(s) for s in x.src)})"

def unbind(x) -> tuple:
  """(`x` with each bound Variable replaced by the Variable, {name: value} of the bindings it held)."""
  if not isinstance(x, UOp) or not x.ops_below & _BIND_BIT: return x, {}
  binds = [b for b in x.toposort if b.op is Ops.BIND]
  return x.substitute({b: b.src[0] for b in binds}), {b.src[0].arg[0]: b.src[1].arg for b in binds}

def free_variables(x) -> list[str]:
  """The names of the Variables `x` names without a value (not under a BIND)."""
  if not isinstance(x, UOp): return []
  bound = x.substitute({b: b.src[1] for b in x.toposort if b.op is Ops.BIND}) if x.ops_below & _BIND_BIT else x
  return sorted({u.arg[0] for u in bound.toposort if u.op is Ops.DEFINE_VAR})

def sint_value(x) -> int:
  """A size's value: bound Variables at their values, plain ones at the value bound last."""
  if not isinstance(x, UOp): return int(x)
  x = x.substitute({b: b.src[1] for b in x.toposort if b.op is Ops.BIND})
  got = ssimplify(x.substitute({v: UOp.const(v.dtype, var_value(v)) for v in x.toposort if v.op is Ops.DEFINE_VAR}))
  assert isinstance(got, int), f"the size {got} did not fold to an int"
  return got

# UOp(op, dtype, src, arg) for the hottest callers (an eager op's node): the metaclass's __call__ called directly, as
# intern_node(UOp, op, dtype, src, arg), skips type.__call__'s dispatch to it (an argument tuple: ~0.15 of a node's ~2 us)
intern_node = _Interned.__call__

def take_as_gather(t: UOp) -> UOp:
  """A TAKE as the GATHER it stands for: the index flattened to its m positions, placed on axis d and broadcast over
  the table's other axes, gathered, and the m positions shaped back into the index's shape."""
  x, ix, d = t.src[0], t.src[1], t.arg
  m = prod(ix.shape)
  index = ix.reshape((1,) * d + (m,) + (1,) * (len(x.shape) - d - 1)).expand(x.shape[:d] + (m,) + x.shape[d+1:])
  return x.gather(index, d).reshape(t.shape)

# ---- bounds ----
# Ops members and dtype ranges looked up once: Ops.X is a slow attribute lookup on Python 3.11's EnumType, and bounds are
# read for every new index node
_CONST, _RANGE, _SPECIAL, _VECTORIZE, _CAST, _NEG, _WHERE = Ops.CONST, Ops.RANGE, Ops.SPECIAL, Ops.VECTORIZE, Ops.CAST, Ops.NEG, Ops.WHERE
_RESHAPE, _EXPAND, _DEFINE_VAR, _BIND, _GATHER, _TAKE = Ops.RESHAPE, Ops.EXPAND, Ops.DEFINE_VAR, Ops.BIND, Ops.GATHER, Ops.TAKE
_BUFFER_BIT, _RESHAPE_BIT = _OP_BIT[Ops.BUFFER], _OP_BIT[Ops.RESHAPE]
_ADD, _SUB, _MUL, _MAX, _IDIV, _MOD = Ops.ADD, Ops.SUB, Ops.MUL, Ops.MAX, Ops.IDIV, Ops.MOD
_CMPLT, _CMPNE, _CMPEQ, _AND, _OR, _XOR, _SHR = Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ, Ops.AND, Ops.OR, Ops.XOR, Ops.SHR
_BINARY, _COMPARISON, _BOOL = frozenset(GroupOp.Binary), frozenset(GroupOp.Comparison), dtypes.bool
_RANGES: dict[DType, tuple] = {}
# tensor-level ops that move or keep values without changing any: a node's values are its source's (a PAD adds zeros)
_SAME_VALUES = frozenset({Ops.RESHAPE, Ops.EXPAND, Ops.PERMUTE, Ops.SHRINK, Ops.FLIP, Ops.CONTIGUOUS, Ops.DETACH})

def _bounds(u: UOp) -> tuple:
  """Smallest and largest value `u` can take; exact for constants, conservative otherwise."""
  dt = u.dtype if u.dtype.count == 1 and not u.dtype.ptr else u.dtype.scalar()
  if (full := _RANGES.get(dt)) is None: full = _RANGES[dt] = min_max(dt)
  op = u.op
  if op is _CONST: return (u.arg, u.arg)
  if op is _RANGE: return (0, u.src[0].vmax - 1)
  if op is _SPECIAL: return (0, u.arg[1] - 1)
  if op is _DEFINE_VAR: return (u.arg[1], u.arg[2])
  if op is _BIND: return (u.src[0].vmin, u.src[0].vmax)  # index math holds for every value, as the kernel does
  if op is _VECTORIZE and u.src: return (min(s.vmin for s in u.src), max(s.vmax for s in u.src))
  if op is _CAST and u.src[0].dtype.scalar() != dtypes.void:
    lo, hi = u.src[0].vmin, u.src[0].vmax
    return (lo, hi) if full[0] <= lo and hi <= full[1] and not (dt.is_int() and isinstance(lo, float)) else full
  if dt.kind not in "iub" or len(u.src) == 0: return full
  s = u.src
  if op in _BINARY and len(s) == 2:
    (a0, a1), (b0, b1) = (s[0].vmin, s[0].vmax), (s[1].vmin, s[1].vmax)
    out: tuple | None = None
    if op is _ADD: out = (a0 + b0, a1 + b1)
    elif op is _SUB: out = (a0 - b1, a1 - b0)
    elif op is _MUL: vals = [a0 * b0, a0 * b1, a1 * b0, a1 * b1]; out = (min(vals), max(vals))
    elif op is _MAX: out = (max(a0, b0), max(a1, b1))
    elif op is _IDIV:
      if b0 > 0:  # C division truncates toward zero; in ints, as a / b in floats is inexact past 2**53
        vals = [abs(a) // b * (1 if a >= 0 else -1) for a in (a0, a1) for b in (b0, b1)]; out = (min(vals), max(vals))
    elif op is _MOD:
      if b0 > 0: out = (0, min(a1, b1 - 1)) if a0 >= 0 else (max(a0, -(b1 - 1)), min(a1, b1 - 1) if a1 > 0 else 0)
    elif op is _CMPLT: out = (bool(a1 < b0), bool(a0 < b1))
    elif op is _CMPNE: out = (bool(a1 < b0 or b1 < a0), not (a0 == a1 == b0 == b1))
    elif op is _CMPEQ: out = (a0 == a1 == b0 == b1, not (a1 < b0 or b1 < a0))
    elif op is _AND and dt.is_bool(): out = (bool(a0 and b0), bool(a1 and b1))
    elif op is _OR and dt.is_bool(): out = (bool(a0 or b0), bool(a1 or b1))
    elif op is _AND and a0 >= 0 and b0 >= 0: out = (0, min(a1, b1))
    # XOR and OR of non-negative ints set no bit above the wider one's highest (a swizzled tile's index)
    elif op in (_XOR, _OR) and not dt.is_bool() and a0 >= 0 and b0 >= 0: out = (0, (1 << max(a1, b1).bit_length()) - 1)
    elif op is _SHR and a0 >= 0 and b0 >= 0: out = (a0 >> min(b1, 63), a1 >> b0)
    if out is not None and full[0] <= out[0] and out[1] <= full[1]: return out
    return full
  if op is _NEG and not dt.is_unsigned():
    out = (-s[0].vmax, -s[0].vmin) if not dt.is_bool() else full
    return out if full[0] <= out[0] and out[1] <= full[1] else full
  if op is _WHERE: return (min(s[1].vmin, s[2].vmin), max(s[1].vmax, s[2].vmax))
  if op in _SAME_VALUES: return (s[0].vmin, s[0].vmax)
  if op is Ops.PAD: return (min(s[0].vmin, 0), max(s[0].vmax, 0))
  return full

# ---- printing ----
def pretty(u: UOp, max_nodes: int = 60) -> str:
  """A readable listing of a graph: one line per node, shared nodes named once."""
  nodes = u.toposort
  if len(nodes) > max_nodes: return f"<UOp {u.op.name} {u.dtype} arg={u.arg} ({len(nodes)} nodes)>"
  names = {n: f"x{i}" for i, n in enumerate(nodes)}
  lines = []
  for n in nodes:
    sh = f" shape={n.shape}" if n.shape is not None and n.op is not Ops.CONST else ""
    lines.append(f"{names[n]} = {n.op.name}({', '.join(names[s] for s in n.src)}) {n.dtype}{sh}" + (f" arg={n.arg}" if n.arg is not None else ""))
  return "\n".join(lines)

def is_const(u: UOp, value: Any = None) -> bool:
  return u.op is Ops.CONST and (value is None or u.arg == value)

def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
  """NumPy broadcasting of shapes; raises ValueError naming the shapes."""
  if len(shapes) == 2:  # an elementwise op's two operands (most calls): one pass, no lists
    a, b = shapes
    if len(a) < len(b): a = (1,) * (len(b) - len(a)) + tuple(a)
    elif len(b) < len(a): b = (1,) * (len(a) - len(b)) + tuple(b)
    out2 = tuple([x if y == 1 or x == y else y if x == 1 else -1 for x, y in zip(a, b)])
    if -1 not in out2: return out2
  n = max(len(s) for s in shapes)
  padded = [(1,) * (n - len(s)) + tuple(s) for s in shapes]
  out = []
  for dims in zip(*padded):
    big = [d for d in dims if d != 1]
    if big and not all_same(big): raise ValueError(f"shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be broadcast together: "
                                                   "each axis, counted from the last, must be equal or 1 (unsqueeze() adds an axis of 1)")
    out.append(big[0] if big else 1)
  return tuple(out)

