"""Reverse-mode derivatives on the lazy graph. Each differentiable op has one rule: given the gradient of its output,
the gradients of its sources (None where a source gets none). `compute_gradient` walks the graph backwards and sums
the contributions; the result is again a lazy graph, so gradients of gradients work the same way."""
from __future__ import annotations
import math
from lucidgrad.helpers import argsort
from lucidgrad.dtype import dtypes
from lucidgrad.uop.ops import UOp, Ops, GroupOp
from lucidgrad.uop.pattern import UPat, PatternMatcher

def _c(like: UOp, v: float) -> UOp: return like.const_like(v)

def _sum(u: UOp, axes: tuple[int, ...]) -> UOp:
  """A sum over `axes`; half floats add up in float32 and round once, as the forward sum does (bfloat16 counts stop at 256)."""
  if u.dtype in (dtypes.float16, dtypes.bfloat16): return u.cast(dtypes.float32).reduce_axis(Ops.ADD, axes).cast(u.dtype)
  return u.reduce_axis(Ops.ADD, axes)

def _reduce_grad(g: UOp, ret: UOp) -> tuple:
  x = ret.src[0]
  op, axes = ret.arg
  if op is Ops.ADD: return (g.expand(x.shape),)
  if op is Ops.MAX:  # split evenly among the elements that reached the maximum
    hit = x.alu(Ops.CMPEQ, ret.expand(x.shape)).cast(g.dtype)
    count = _sum(hit, axes).expand(x.shape)
    return (hit.alu(Ops.MUL, g.expand(x.shape)).alu(Ops.FDIV, count),)
  if op is Ops.MUL:
    # the product of the others: ret / x with no zero; at a lone zero the product of the rest; 0 where two or more are 0.
    # With zeros set to 1 both cases are p / safe, kept where the zero count equals this element's own zero-ness. Exact to
    # first order everywhere; a second derivative taken through it misses the terms of the zeros (exact without zeros)
    zero = x.alu(Ops.CMPEQ, _c(x, 0))
    safe = zero.where(_c(x, 1), x)
    p, zeros = safe.reduce_axis(Ops.MUL, axes).expand(x.shape), zero.cast(x.dtype).reduce_axis(Ops.ADD, axes).expand(x.shape)
    others = zeros.alu(Ops.CMPEQ, zero.cast(x.dtype)).where(p.alu(Ops.FDIV, safe), _c(x, 0))
    return (g.expand(x.shape).alu(Ops.MUL, others),)
  raise NotImplementedError(f"no gradient for reduce {op}")

def _is_const(u: UOp) -> bool:
  """A constant seen through movement, negation or casts: -c is how minimum(x, c) reaches MAX."""
  while u.op in GroupOp.Movement or u.op in (Ops.NEG, Ops.CAST): u = u.src[0]
  return u.op is Ops.CONST

def _max_grad(g: UOp, a: UOp, b: UOp) -> tuple:
  """Ties split evenly, except against a constant, which takes the tie (relu at 0 gets 0, as in PyTorch)."""
  a_lt, b_lt, eq = a.alu(Ops.CMPLT, b), b.alu(Ops.CMPLT, a), a.alu(Ops.CMPEQ, b)
  if _is_const(b): return (a_lt | eq).where(_c(g, 0), g), None
  if _is_const(a): return None, (b_lt | eq).where(_c(g, 0), g)
  half = eq.where(g.alu(Ops.MUL, _c(g, 0.5)), g)
  return a_lt.where(_c(g, 0), half), b_lt.where(_c(g, 0), half)

def _pow_grad(g: UOp, ret: UOp, a: UOp, b: UOp) -> tuple:
  # d/da a^b = b a^(b-1), taken as 0 where b is 0 (as PyTorch does) so 0 * 0^-1 never appears
  da = b.alu(Ops.CMPEQ, _c(b, 0)).where(_c(g, 0), g.alu(Ops.MUL, b).alu(Ops.MUL, a.alu(Ops.POW, b.alu(Ops.SUB, _c(b, 1)))))
  # d/db a^b = a^b ln a, taken as 0 where a is 0 and b >= 0 (as PyTorch does) so 0 * -inf never appears
  full = g.alu(Ops.MUL, ret).alu(Ops.MUL, a.alu(Ops.LOG2).alu(Ops.MUL, _c(a, math.log(2))))
  db = a.alu(Ops.CMPEQ, _c(a, 0)).where(b.alu(Ops.CMPLT, _c(b, 0)).where(full, _c(g, 0)), full)
  return da, db

def _mod_grad(g: UOp, ret: UOp, a: UOp, b: UOp) -> tuple:
  # fmod(a, b) = a - n b, n the quotient rounded toward 0: d/da = 1, d/db = -n. n from the exact remainder, (a - ret) / b
  # rounded to the integer it is, since trunc(a / b) can be one too many (fmod(1, 0.1): n = 9, 1 / 0.1 = 10.0); a / b
  # where b = 0 (+-inf, NaN for 0 / 0), as torch takes it
  q = a.alu(Ops.SUB, ret).alu(Ops.FDIV, b)
  n = q.alu(Ops.CMPLT, _c(q, 0)).where(q.alu(Ops.SUB, _c(q, 0.5)), q.alu(Ops.ADD, _c(q, 0.5))).alu(Ops.TRUNC)
  n = b.alu(Ops.CMPEQ, _c(b, 0)).where(a.alu(Ops.FDIV, b), n)
  return g, g.alu(Ops.MUL, n).alu(Ops.NEG)

def _gather_grad(g: UOp, ret: UOp) -> tuple:
  """A scatter-add, written as a compare and a sum: table row r along d takes the sum of the output gradients whose index
  is r. O(output x rows), as the old forward was; a direct scatter-add is docs/design/0014's open item."""
  x, ix, d = ret.src[0], ret.src[1], ret.arg
  n, shape = x.shape[d], ix.shape
  wide = shape + (n,)
  rows = UOp.positions(n, ix.device).cast(ix.dtype).reshape((1,) * len(shape) + (n,)).expand(wide)
  hit = ix.reshape(shape + (1,)).expand(wide).alu(Ops.CMPEQ, rows)
  gw = g.reshape(shape + (1,)).expand(wide)
  picked = hit.where(gw, gw.const_like(0))
  summed = picked if shape[d] == 1 else _sum(picked, (d,))  # one index along d (a row's target) needs no reduce
  out = summed.reshape(shape[:d] + shape[d+1:] + (n,))
  return out.permute(tuple(range(d)) + (len(shape) - 1,) + tuple(range(d, len(shape) - 1))), None

def _unpad(g: UOp, ret: UOp) -> UOp: return g.shrink(tuple((b, b + s) for (b, _), s in zip(ret.arg, ret.src[0].shape)))

pm_gradient = PatternMatcher([
  (UPat(Ops.ADD, name="ret"), lambda ctx, ret: (ctx, ctx)),
  (UPat(Ops.SUB, name="ret"), lambda ctx, ret: (ctx, ctx.alu(Ops.NEG))),
  (UPat(Ops.MUL, name="ret"), lambda ctx, ret: (ctx.alu(Ops.MUL, ret.src[1]), ctx.alu(Ops.MUL, ret.src[0]))),
  (UPat(Ops.FDIV, name="ret"), lambda ctx, ret: (ctx.alu(Ops.FDIV, ret.src[1]), ctx.alu(Ops.NEG).alu(Ops.MUL, ret).alu(Ops.FDIV, ret.src[1]))),
  (UPat(Ops.NEG, name="ret"), lambda ctx, ret: (ctx.alu(Ops.NEG),)),
  # a zero gradient stays zero where 2^x overflowed: sigmoid(-800) = 1/(1+inf) has gradient 0, not 0 * inf
  (UPat(Ops.EXP2, name="ret"), lambda ctx, ret: (ctx.alu(Ops.CMPEQ, _c(ctx, 0)).where(ctx, ctx.alu(Ops.MUL, ret).alu(Ops.MUL, _c(ret, math.log(2)))),)),
  (UPat(Ops.LOG2, name="ret"), lambda ctx, ret: (ctx.alu(Ops.FDIV, ret.src[0].alu(Ops.MUL, _c(ret, math.log(2)))),)),
  (UPat(Ops.SIN, name="ret"), lambda ctx, ret: (ctx.alu(Ops.MUL, ret.src[0].alu(Ops.COS)),)),
  (UPat(Ops.COS, name="ret"), lambda ctx, ret: (ctx.alu(Ops.MUL, ret.src[0].alu(Ops.SIN)).alu(Ops.NEG),)),
  (UPat(Ops.SQRT, name="ret"), lambda ctx, ret: (ctx.alu(Ops.FDIV, ret.alu(Ops.MUL, _c(ret, 2))),)),
  (UPat(Ops.RECIPROCAL, name="ret"), lambda ctx, ret: (ctx.alu(Ops.NEG).alu(Ops.MUL, ret).alu(Ops.MUL, ret),)),
  (UPat(Ops.TRUNC, name="ret"), lambda ctx, ret: (_c(ctx, 0),)),
  (UPat(Ops.MAX, name="ret"), lambda ctx, ret: _max_grad(ctx, *ret.src)),
  (UPat(Ops.POW, name="ret"), lambda ctx, ret: _pow_grad(ctx, ret, *ret.src)),
  (UPat(Ops.MOD, name="ret"), lambda ctx, ret: _mod_grad(ctx, ret, *ret.src)),
  (UPat(Ops.WHERE, name="ret"), lambda ctx, ret: (None, ret.src[0].where(ctx, _c(ctx, 0)), ret.src[0].where(_c(ctx, 0), ctx))),
  (UPat(Ops.CAST, name="ret"), lambda ctx, ret: (ctx.cast(ret.src[0].dtype),) if ret.src[0].dtype.is_float() else (None,)),
  (UPat((Ops.CONTIGUOUS,), name="ret"), lambda ctx, ret: (ctx,)),
  # a pending in-place write: the gradient goes to the value written (a parameter's value is detached), not the old one
  (UPat(Ops.ASSIGN, name="ret"), lambda ctx, ret: (None, ctx)),
  (UPat(Ops.COPY, name="ret"), lambda ctx, ret: (UOp(Ops.COPY, ctx.dtype, (ctx,), ret.src[0].device),)),
  (UPat(Ops.REDUCE_AXIS, name="ret"), lambda ctx, ret: _reduce_grad(ctx, ret)),
  (UPat(Ops.GATHER, name="ret"), lambda ctx, ret: _gather_grad(ctx, ret)),
  # movement ops: each moves the gradient back the way it came
  (UPat(Ops.RESHAPE, name="ret"), lambda ctx, ret: (ctx.reshape(ret.src[0].shape),)),
  (UPat(Ops.PERMUTE, name="ret"), lambda ctx, ret: (ctx.permute(tuple(argsort(ret.arg))),)),
  (UPat(Ops.EXPAND, name="ret"), lambda ctx, ret: (_sum(ctx, tuple(i for i, (s, n) in enumerate(zip(ret.src[0].shape, ret.shape)) if s != n)),)),
  (UPat(Ops.PAD, name="ret"), lambda ctx, ret: (_unpad(ctx, ret),)),
  (UPat(Ops.SHRINK, name="ret"), lambda ctx, ret: (ctx.pad(tuple((b, s - e) for (b, e), s in zip(ret.arg, ret.src[0].shape))),)),
  (UPat(Ops.FLIP, name="ret"), lambda ctx, ret: (ctx.flip(ret.arg),)),
])

NO_GRADIENT = {Ops.DETACH, Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ, Ops.AND, Ops.OR, Ops.XOR, Ops.SHL, Ops.SHR, Ops.IDIV, Ops.BITCAST,
               Ops.CONST, Ops.BUFFER, Ops.DEVICE}

def compute_gradient(root: UOp, root_grad: UOp, targets: set[UOp]) -> dict[UOp, UOp]:
  """d root / d t for every t in `targets` that root depends on, as lazy graphs (root_grad is d loss / d root)."""
  nodes = root.toposort
  # only nodes on a path to a target need a gradient
  leads: dict[UOp, bool] = {}
  for n in nodes: leads[n] = n in targets or any(leads[s] for s in n.src)
  grads: dict[UOp, UOp] = {root: root_grad}
  for n in reversed(nodes):
    if (g := grads.get(n)) is None or not leads[n] or n.op in NO_GRADIENT or n.dtype.is_int() or n.dtype.is_bool(): continue
    if not n.src: continue
    src_grads = pm_gradient.rewrite(n, ctx=g)
    if src_grads is None: raise NotImplementedError(f"no derivative rule for {n.op}")
    for s, sg in zip(n.src, src_grads):
      if sg is None or not leads[s] or not s.dtype.is_float(): continue
      grads[s] = sg if s not in grads else grads[s].alu(Ops.ADD, sg)
  return {t: grads[t] for t in targets if t in grads}

