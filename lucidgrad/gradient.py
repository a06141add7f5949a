"""Reverse-mode derivatives on the lazy graph. Each differentiable op has one rule: given the gradient of its output,
the gradients of its sources (None where a source gets none). `compute_gradient` walks the graph backwards and sums
the contributions; the result is again a lazy graph, so gradients of gradients work the same way."""
from __future__ import annotations
import math
from typing import Callable
from lucidgrad.helpers import argsort
from lucidgrad.dtype import dtypes
from lucidgrad.uop.ops import UOp, Ops, GroupOp, take_as_gather
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
  """A scatter-add of the output gradient into zeros of the table's shape: one add per gathered element, in order
  (docs/design/0017). An index of one element along d (a row's class target) needs no adds: each table element compares
  its row with that one index, fused into the consumer. Half floats add up in float32 and round once, as _sum does."""
  x, ix, d = ret.src[0], ret.src[1], ret.arg
  n, shape = x.shape[d], ix.shape
  if shape[d] == 1:
    rows = UOp.positions(n, ix.device).cast(ix.dtype).reshape((1,) * d + (n,) + (1,) * (len(shape) - d - 1)).expand(x.shape)
    return ix.expand(x.shape).alu(Ops.CMPEQ, rows).where(g.expand(x.shape), g.const_like(0).expand(x.shape)), None
  wide = g.cast(dtypes.float32) if g.dtype in (dtypes.float16, dtypes.bfloat16) else g
  out = UOp.const(wide.dtype, 0, g.device).reshape((1,) * len(x.shape)).expand(x.shape).scatter(ix, wide, d)
  return (out.cast(g.dtype) if out.dtype != g.dtype else out), None

def _take_grad(g: UOp, ret: UOp) -> tuple:
  """A TAKE's gradient is its GATHER form's (take_as_gather): the table's, a scatter-add of g; the index gets none."""
  gathered = take_as_gather(ret)
  while gathered.op is Ops.RESHAPE: gathered = gathered.src[0]
  return _gather_grad(g.reshape(gathered.shape), gathered)

def _scatter_grad(g: UOp, ret: UOp) -> tuple:
  """Added (ADD): the base's gradient is g, the source's g read where it was added. Stored (None): the base's is g where
  nothing was stored, the source's g where it was stored and no later element along d overwrote it (the winner)."""
  (d, op), ix = ret.arg, ret.src[1]
  at_ix = g.shrink(tuple((0, i) if k != d else (0, s) for k, (i, s) in enumerate(zip(ix.shape, g.shape)))).gather(ix, d)
  if op is Ops.ADD: return g, None, at_ix
  if op is not None: raise NotImplementedError(f"no gradient for a SCATTER with {op}")
  pos = UOp.positions(ix.shape[d], ix.device).reshape((1,) * d + (ix.shape[d],) + (1,) * (len(ix.shape) - d - 1)).expand(ix.shape)
  last = UOp.const(dtypes.int32, -1, ix.device).reshape((1,) * len(g.shape)).expand(g.shape).scatter(ix, pos, d, None)
  stored = last.alu(Ops.CMPNE, last.const_like(-1))
  won = last.shrink(tuple((0, i) if k != d else (0, s) for k, (i, s) in enumerate(zip(ix.shape, g.shape)))).gather(ix, d).alu(Ops.CMPEQ, pos)
  return stored.where(g.const_like(0), g), None, won.where(at_ix, at_ix.const_like(0))

# VJP's rules by name: rule(g, ret) -> the gradients of ret.src[1:] (None where one gets none), given params ret.arg[1].
# Filled by the layers that build VJP nodes (tensor_nn.py: "conv")
VJP_RULES: dict[str, Callable[[UOp, UOp], tuple]] = {}

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
  (UPat(Ops.TAKE, name="ret"), lambda ctx, ret: _take_grad(ctx, ret)),
  (UPat(Ops.SCATTER, name="ret"), lambda ctx, ret: _scatter_grad(ctx, ret)),
  (UPat(Ops.VJP, name="ret"), lambda ctx, ret: (None, *VJP_RULES[ret.arg[0]](ctx, ret))),
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

