"""The Kernel object: one kernel's lowered graph and the opts applied to it so far. Opts are applied one at a time; each
splits one range (an axis) into an outer and an inner part and gives one part a new kind. An opt names an axis of the
kernel as it is now: the outer part keeps the position, the new part comes right after it (docs/design/0006)."""
from __future__ import annotations
from dataclasses import dataclass
from enum import Enum, auto
from lucidgrad.helpers import prod
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.uop.pattern import UPat, PatternMatcher, graph_rewrite
from lucidgrad.uop.symbolic import symbolic
from lucidgrad.codegen.lower import lower_kernel, index_dtype, index_range

class OptOps(Enum):
  UPCAST = auto(); UNROLL = auto(); LOCAL = auto(); GROUP = auto(); GROUPTOP = auto(); THREAD = auto()
  PADTO = auto()  # grow the axis to a multiple of `amount`; the extra indices are guarded off
  SWAP = auto()   # exchange the nesting of two loops; `amount` names the other axis

@dataclass(frozen=True)
class Opt:
  op: OptOps
  axis: int       # position in the kernel's axes when the opt is applied
  amount: int
  def __repr__(self): return f"Opt({self.op.name}, axis={self.axis}, amount={self.amount})"

class KernelOptError(ValueError): pass

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
  return red.replace(src=(red.src[0], *loops)) if loops else red.src[0]

pm_kernel_simplify = symbolic + PatternMatcher([
  (UPat(Ops.RANGE, name="r"), lambda r: UOp.const(r.dtype, 0) if r.src[0].arg == 1 else None),
  (UPat(Ops.REDUCE, name="red"), _drop_folded_ranges),
])

def kernel_name(sink: UOp) -> str:
  rngs = kernel_ranges(sink)
  kind = "r" if any(r.arg[1] in (AxisType.REDUCE, AxisType.UNROLL) for r in rngs) else "E"
  return f"{kind}_" + "_".join(str(r.src[0].arg) for r in rngs) if rngs else f"{kind}_1"

# the kind an opt splits and the kind of the part it makes; `outer` opts give the new kind to the outer part
_SPLIT = {OptOps.UPCAST: (AxisType.LOOP, AxisType.UPCAST), OptOps.UNROLL: (AxisType.REDUCE, AxisType.UNROLL),
          OptOps.LOCAL: (AxisType.LOOP, AxisType.LOCAL)}

class Kernel:
  """A kernel lowered to ranges and index math, and the opts applied to it so far."""
  def __init__(self, ast: UOp, renderer):
    self.ast, self.renderer = ast, renderer
    self.idt = index_dtype(ast)
    self.sink = graph_rewrite(lower_kernel(ast, self.idt), pm_kernel_simplify, name="simplify")
    self.name = kernel_name(self.sink)
    self.applied: list[Opt] = []
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

  def apply_opt(self, opt: Opt) -> Kernel:
    """Apply one opt in place (and return self); an opt this kernel or its renderer cannot take raises KernelOptError
    and leaves the kernel as it was."""
    axes = self.axes
    if not 0 <= opt.axis < len(axes): raise KernelOptError(f"{opt}: the kernel has {len(axes)} axes")
    r = axes[opt.axis]
    if opt.op is OptOps.SWAP:
      if not 0 <= opt.amount < len(axes) or opt.amount == opt.axis: raise KernelOptError(f"{opt}: no other axis {opt.amount}")
      b = axes[opt.amount]
      if r.arg[1] is not AxisType.LOOP or b.arg[1] is not AxisType.LOOP: raise KernelOptError(f"{opt}: only LOOP axes swap")
      na, nb = index_range(r.src[0].arg, AxisType.LOOP, b.arg[0], r.dtype), index_range(b.src[0].arg, AxisType.LOOP, r.arg[0], b.dtype)
      self._set(self.sink.substitute({r: na, b: nb}))
    else:
      need, inner_kind = _SPLIT[opt.op]
      end = r.src[0].arg
      if r.arg[1] is not need: raise KernelOptError(f"{opt}: axis {opt.axis} is {r.arg[1].name}, not {need.name}")
      if opt.amount <= 1 or end % opt.amount: raise KernelOptError(f"{opt}: {end} is not divisible by {opt.amount}")
      if opt.op is OptOps.LOCAL and not self.renderer.has_local: raise KernelOptError(f"{opt}: {type(self.renderer).__name__} has no thread blocks")
      outer = index_range(end // opt.amount, need, r.arg[0] + (0,), r.dtype)
      inner = index_range(opt.amount, inner_kind, r.arg[0] + (1,), r.dtype)
      self._set(graph_rewrite(self.sink, pm_split_range, (r, outer, inner), top_down=True, name=f"apply {opt}"))
    self.applied.append(opt)
    return self

  def apply_opts(self, opts) -> Kernel:
    for o in opts: self.apply_opt(o)
    return self

def _split_in_reduce(ctx, red: UOp) -> UOp | None:
  r, outer, inner = ctx
  if r not in red.src[1:]: return None
  return red.replace(src=(red.src[0], *[x for s in red.src[1:] for x in ((outer, inner) if s is r else (s,))]))

# a split range is replaced by outer*amount+inner where it is used as a value, and by the pair where a REDUCE loops over it
pm_split_range = PatternMatcher([
  (UPat(Ops.REDUCE, name="red"), _split_in_reduce),
  (UPat(Ops.RANGE, name="x"), lambda ctx, x: ctx[1] * ctx[2].src[0].arg + ctx[2] if x is ctx[0] else None),
])
