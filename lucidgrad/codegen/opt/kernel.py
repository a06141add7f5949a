"""The Kernel object: one kernel's lowered graph and the opts applied to it so far. Opts are applied one at a time; each
splits one range (an axis) into an outer and an inner part and gives one part a new kind. An opt names an axis of the
kernel as it is now: the outer part keeps the position, the new part comes right after it (docs/design/0006)."""
from __future__ import annotations
from lucidgrad.helpers import prod, THREADS
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.uop.pattern import UPat, PatternMatcher, graph_rewrite
from lucidgrad.uop.symbolic import symbolic
from lucidgrad.codegen.lower import lower_kernel, index_dtype, index_range
from lucidgrad.codegen import OptOps, Opt, KernelOptError


def kernel_ranges(sink: UOp) -> list[UOp]:
  """The kernel's RANGEs, outermost first."""
  return sorted((u for u in sink.toposort if u.op is Ops.RANGE), key=lambda r: r.arg[0])

def _drop_folded_ranges(red: UOp) -> UOp | None:
  """A reduce range folded to a constant (size 1) no longer loops; a reduce with no loops left is its value; a reduce
  over an empty range is its identity."""
  from lucidgrad.codegen.linearize import identity_element
  if any(r.op is Ops.RANGE and r.src[0].arg == 0 for r in red.src[1:]): return UOp.const(red.dtype, identity_element(red.arg, red.dtype))
  loops = tuple(r for r in red.src[1:] if r.op is Ops.RANGE)
  if len(loops) == len(red.src) - 1: return None
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

SPLIT_AMOUNTS = (2, 3, 4, 5, 7, 8, 16)
THREAD_AMOUNTS = (2, 4, 8, 16)
PAD_AMOUNTS = (4, 8, 16, 32)
TILE_AMOUNTS = (8, 16, 32, 64, 128, 256)
MAX_LANES = 256                 # copies of the body UPCAST and UNROLL may make
MAX_EXPANDED_NODES = 1 << 17    # lowered nodes times lanes: bounds the source (and the C compiler's time) an expansion makes

class Kernel:
  """A kernel lowered to ranges and index math, and the opts applied to it so far."""
  def __init__(self, ast: UOp, renderer):
    self.ast, self.renderer = ast, renderer
    self.idt = index_dtype(ast)
    self.sink = graph_rewrite(lower_kernel(ast, self.idt), pm_kernel_simplify, name="simplify")
    self.name = kernel_name(self.sink)
    self.applied: list[Opt] = []
    self.threads = 1   # CPU threads the THREAD axis is split over
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

  def lanes(self) -> int:
    """Copies of the kernel body expansion makes: the product of the UPCAST and UNROLL axes."""
    return prod(r.src[0].arg for r in self.axes if r.arg[1] in (AxisType.UPCAST, AxisType.UNROLL))

  def check(self, opt: Opt) -> None:
    """Raise KernelOptError if this kernel or its renderer cannot take `opt` now; touches nothing."""
    axes, ren = self.axes, self.renderer
    def need(ok, why):
      if not ok: raise KernelOptError(f"{opt} on {self.name}: {why}")
    need(0 <= opt.axis < len(axes), f"the kernel has {len(axes)} axes")
    r = axes[opt.axis]
    kind, end = r.arg[1], r.src[0].arg
    if opt.op is OptOps.SWAP:
      need(0 <= opt.amount < len(axes) and opt.amount != opt.axis, f"no other axis {opt.amount}")
      need(kind in _SWAPS and axes[opt.amount].arg[1] in _SWAPS, "only LOOP and TILE axes swap")
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
    elif opt.op is OptOps.PADTO:
      need(kind in (AxisType.LOOP, AxisType.REDUCE), f"only LOOP and REDUCE axes pad, not {kind.name}")
      need(opt.amount > 1 and end % opt.amount != 0, f"{end} is already a multiple of {opt.amount}")
    else:
      want, new_kind = _SPLIT[opt.op]
      need(kind is want, f"axis {opt.axis} is {kind.name}, not {want.name}")
      need(opt.amount > 1 and end % opt.amount == 0, f"{end} is not divisible by {opt.amount}")
      if new_kind in (AxisType.UPCAST, AxisType.UNROLL):
        need(self.lanes() * opt.amount <= MAX_LANES, f"{self.lanes() * opt.amount} lanes pass the budget of {MAX_LANES}")
        need(len(self.sink.toposort) * self.lanes() * opt.amount <= MAX_EXPANDED_NODES, "the expanded kernel would pass the source budget")
      if new_kind in (AxisType.LOCAL, AxisType.GROUP):
        need(ren.has_local, f"{type(ren).__name__} has no thread blocks")
        threads = prod(a.src[0].arg for a in axes if a.arg[1] in (AxisType.LOCAL, AxisType.GROUP)) * opt.amount
        need(threads <= ren.local_max, f"{threads} threads in a block pass the renderer's {ren.local_max}")
      if new_kind is AxisType.GROUP:  # a slot of local memory per thread and upcast lane, for each group reduce (8-byte values at most)
        need(AxisType.TILE not in self.kinds(), "a group's threads would all carry the output")
        need(threads * self.lanes() * 8 <= ren.shared_max, f"{threads * self.lanes() * 8} bytes of local memory pass the renderer's {ren.shared_max}")

  def apply_opt(self, opt: Opt) -> Kernel:
    """Apply one opt in place (and return self); an opt this kernel or its renderer cannot take raises KernelOptError
    and leaves the kernel as it was."""
    self.check(opt)
    r = self.axes[opt.axis]
    if opt.op is OptOps.SWAP:
      b = self.axes[opt.amount]
      na, nb = index_range(r.src[0].arg, r.arg[1], b.arg[0], r.dtype), index_range(b.src[0].arg, b.arg[1], r.arg[0], b.dtype)
      # through a placeholder: with equal sizes and kinds `na` is `b` itself, and one substitution would turn both into `nb`
      tmp = index_range(r.src[0].arg, r.arg[1], (-2,), r.dtype)
      self._set(self.sink.substitute({r: tmp}).substitute({b: nb}).substitute({tmp: na}))
    elif opt.op is OptOps.THREAD:
      # the axis keeps its size; thread `core` of `threads` runs its contiguous share (the renderer's bounds)
      self._set(self.sink.substitute({r: index_range(r.src[0].arg, AxisType.THREAD, r.arg[0], r.dtype)}))
      self.threads = opt.amount
    elif opt.op is OptOps.TILE: self._set(tile_reduce(self.sink, r, opt.amount))
    elif opt.op is OptOps.PADTO: self._set(pad_range(self.sink, r, -(-r.src[0].arg // opt.amount) * opt.amount))
    else:
      want, new_kind = _SPLIT[opt.op]
      rest = r.src[0].arg // opt.amount
      if opt.op in _NEW_PART_OUTER: outer, inner = index_range(opt.amount, new_kind, r.arg[0] + (0,), r.dtype), index_range(rest, want, r.arg[0] + (1,), r.dtype)
      else: outer, inner = index_range(rest, want, r.arg[0] + (0,), r.dtype), index_range(opt.amount, new_kind, r.arg[0] + (1,), r.dtype)
      self._set(graph_rewrite(self.sink, pm_split_range, (r, outer, inner), top_down=True, name=f"apply {opt}"))
    self.applied.append(opt)
    return self

  def valid_opts(self) -> list[Opt]:
    """Every opt this kernel can take next: the one action list the heuristic and BEAM share."""
    out: list[Opt] = []
    axes = self.axes
    for i, r in enumerate(axes):
      kind, end = r.arg[1], r.src[0].arg
      ops = {AxisType.LOOP: (OptOps.UPCAST, OptOps.LOCAL, OptOps.THREAD), AxisType.REDUCE: (OptOps.UNROLL, OptOps.GROUP, OptOps.GROUPTOP)}.get(kind, ())
      for op in ops:
        amounts = tuple(a for a in THREAD_AMOUNTS if a <= int(THREADS)) if op is OptOps.THREAD else SPLIT_AMOUNTS + ((end,) if end <= 32 and end not in SPLIT_AMOUNTS else ())
        out += [Opt(op, i, a) for a in amounts]
      # padding pays only where it wastes little: at most a quarter of the axis
      out += [Opt(OptOps.PADTO, i, a) for a in PAD_AMOUNTS if kind in (AxisType.LOOP, AxisType.REDUCE) and a < end and (-end) % a <= end // 4]
      out += [Opt(OptOps.TILE, i, a) for a in TILE_AMOUNTS if kind is AxisType.REDUCE and a < end]
      out += [Opt(OptOps.SWAP, i, j) for j in range(i + 1, len(axes))]
    def ok(o: Opt) -> bool:
      try: self.check(o)
      except KernelOptError: return False
      return True
    return [o for o in out if ok(o)]

  def apply_opts(self, opts) -> Kernel:
    for o in opts: self.apply_opt(o)
    return self

def pad_range(sink: UOp, r: UOp, size: int) -> UOp:
  """Grow range `r` to `size`: every memory access whose index moves with it is guarded by `r < old size`, and a
  reduce over it adds its identity there, so the extra iterations read nothing, write nothing and change no sum."""
  from lucidgrad.codegen.linearize import identity_element
  nr = index_range(size, r.arg[1], r.arg[0], r.dtype)
  sink = sink.substitute({r: nr})
  inside = nr < r.src[0].arg
  guards = {x: x.replace(src=(x.src[0], x.src[1], x.src[2] & inside)) for x in sink.toposort
            if x.op is Ops.INDEX and x.dtype.ptr and nr in x.src[1].toposort}
  if guards: sink = sink.substitute(guards)
  reds = {red: red.replace(src=(inside.where(red.src[0], UOp.const(red.dtype, identity_element(red.arg, red.dtype))), *red.src[1:]))
          for red in sink.toposort if red.op is Ops.REDUCE and nr in red.src[1:]}
  return sink.substitute(reds) if reds else sink

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
