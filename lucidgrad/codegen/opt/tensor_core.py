"""OptOps.TC: a matmul-shaped reduce computed by a warp's tensor core (docs/design/0024). The opt finds the reduce's
two operands and its output axes m and n, and rewrites the kernel: each warp holds 16 x 8 outputs as fragments, its
32 lanes one LOCAL range, the reduce a sum of WMMA ops over K / 16 steps, and whatever used the reduce a copy per
accumulator element."""
from __future__ import annotations
from dataclasses import dataclass
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.uop.pattern import UPat, PatternMatcher
from lucidgrad.codegen.lower import index_range, serial_ranges

TC_RID = 1 << 19  # the lane range's id: after every kernel axis, so it is the block's fastest thread id (threadIdx.x)

@dataclass(frozen=True)
class TCPlan:
  red: UOp      # the reduce the tensor core computes
  m: UOp        # output range along A's rows
  n: UOp        # output range along B's columns
  k: UOp        # the reduce range
  a: UOp        # A's element at (m, k), in the core's input dtype
  b: UOp        # B's element at (k, n)

def _ranges(x: UOp) -> set[UOp]: return {u for u in x.toposort if u.op is Ops.RANGE}

def tc_plan(sink: UOp, k: UOp, tc) -> TCPlan | str:
  """How tensor core `tc` computes the reduce over range `k`, or why it cannot."""
  reds = [u for u in sink.toposort if u.op is Ops.REDUCE and k in u.src[1:]]
  if len(reds) != 1: return f"{len(reds)} reduces loop over the axis, not one"
  red = reds[0]
  if red.arg is not Ops.ADD or red.dtype != tc.dtype_acc: return f"the reduce is not a {tc.dtype_acc} sum"
  if (body := red.src[0]).op is not Ops.MUL: return "the reduce does not sum products"
  if not all(x.op is Ops.CAST and x.src[0].dtype == tc.dtype_in for x in body.src): return f"the products are not of {tc.dtype_in} values"
  ops = [x.src[0] for x in body.src]
  deps = [_ranges(x) for x in ops]
  if not all(k in d for d in deps): return "an operand does not move with the reduce axis"
  serial = serial_ranges(sink)
  loops = [r for r in sink.toposort if r.op is Ops.RANGE and r.arg[1] is AxisType.LOOP and r not in serial]
  own = [[r for r in loops if r in deps[j] and r not in deps[1 - j]] for j in (0, 1)]
  if not own[0] or not own[1]: return "each operand needs an output axis the other does not move with"
  # n: the innermost output axis one operand alone moves with, so a C fragment's pairs of columns are neighbours
  n, bj = max(((r, j) for j in (0, 1) for r in own[j]), key=lambda c: c[0].arg[0])
  m = max(own[1 - bj], key=lambda r: r.arg[0])
  (M, N, K), sizes = tc.dims, (m.src[0].arg, n.src[0].arg, k.src[0].arg)
  if any(s % d for s, d in zip(sizes, (M, N, K))): return f"axes of {sizes} (m, n, k) do not divide into the core's {tc.dims}"
  return TCPlan(red, m, n, k, ops[1 - bj], ops[bj])

def apply_tc(sink: UOp, plan: TCPlan, tc) -> UOp:
  (M, N, K), (ea, eb, ec), dt = tc.dims, tc.elements, plan.k.dtype
  m_o, n_o = (index_range(r.src[0].arg // d, AxisType.LOOP, r.arg[0] + (0,), dt) for r, d in ((plan.m, M), (plan.n, N)))
  k_o = index_range(plan.k.src[0].arg // K, AxisType.REDUCE, plan.k.arg[0] + (0,), dt)
  lane = index_range(tc.threads, AxisType.LOCAL, (TC_RID,), dt)
  def fragment(x: UOp, layout, count: int, rows: tuple, cols: tuple) -> UOp:
    """x at each element this lane holds: (range, its outer part, the core's size) for the rows and the columns."""
    def at(i):
      r, c = layout(lane, i)
      return x.substitute({rows[0]: rows[1] * rows[2] + r, cols[0]: cols[1] * cols[2] + c})
    return UOp(Ops.VECTORIZE, tc.dtype_in.vec(count), tuple(at(i) for i in range(count)))
  a = fragment(plan.a, tc.a, ea, (plan.m, m_o, M), (plan.k, k_o, K))
  b = fragment(plan.b, tc.b, eb, (plan.k, k_o, K), (plan.n, n_o, N))
  acc = tc.dtype_acc.vec(ec)
  zero = UOp(Ops.VECTORIZE, acc, tuple(UOp.const(tc.dtype_acc, 0.0) for _ in range(ec)))
  red = UOp(Ops.REDUCE, acc, (UOp(Ops.WMMA, acc, (a, b, zero), tc), *[k_o if r is plan.k else r for r in plan.red.src[1:]]), Ops.ADD)
  out: list[UOp] = []
  for i in range(ec):  # what used the reduce, once per accumulator element, at that element's row and column
    r, c = tc.c(lane, i)
    out += sink.substitute({plan.red: UOp(Ops.GEP, tc.dtype_acc, (red,), i), plan.m: m_o * M + r, plan.n: n_o * N + c}).src
  return UOp.sink(*dict.fromkeys(out))

def has_tc(sink: UOp) -> bool: return any(u.op is Ops.WMMA for u in sink.toposort)

def _zero(x: UOp) -> bool: return x.op is Ops.VECTORIZE and all(s.op is Ops.CONST and s.arg == 0 for s in x.src)

def fold_into_wmma(add: UOp) -> UOp | None:
  """x + WMMA(a, b, c) is WMMA(a, b, x + c): the accumulator becomes the instruction's C operand, and an unrolled k's
  sum of WMMAs a chain of them (run after control flow, where a reduce's update is `acc + value`)."""
  for x, w in (add.src, add.src[::-1]):
    if w.op is Ops.WMMA:
      a, b, c = w.src
      return w.replace(src=(a, b, x if _zero(c) else x + c))
  return None

pm_fold_wmma = PatternMatcher([(UPat(Ops.ADD, name="add"), fold_into_wmma)])
