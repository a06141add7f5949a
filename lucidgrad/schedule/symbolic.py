"""Symbolic shapes in the scheduler (docs/design/0029): a graph whose shapes or movement args hold expressions of
Variables becomes one of fixed shapes -- each symbolic axis at its largest size, the elements past its bound length
"don't care" -- with the variable kept only where the values depend on it: a reduce over a symbolic axis masks the tail
with the reduce's identity, a PAD zeroes its source's tail first, and a shrink's or pad's symbolic offset stays in the
index math. Everything after this pass sees int sizes."""
from __future__ import annotations
import math
from lucidgrad.dtype import dtypes, min_max
from lucidgrad.helpers import prod
from lucidgrad.uop.ops import UOp, Ops, GroupOp, smax, ssimplify, shape_is_symbolic, depends_on_variable, unbind

def _has_var(x) -> bool:
  if isinstance(x, UOp): return True
  return isinstance(x, tuple) and any(_has_var(a) for a in x)

def is_symbolic_node(u: UOp) -> bool:
  """Does this node have a symbolic shape or a movement arg that names a Variable?"""
  return shape_is_symbolic(u.shape) or (u.op in GroupOp.Movement and _has_var(u.arg))

def graph_is_symbolic(sink: UOp) -> bool: return depends_on_variable(sink) and any(is_symbolic_node(u) for u in sink.toposort)

def max_shape(shape: tuple) -> tuple[int, ...]: return tuple(smax(s) for s in shape)

def tensor_int(x, device: str) -> UOp:
  """An int expression of Variables (or an int) as a tensor-level int32 scalar on `device`."""
  if not isinstance(x, UOp): return UOp.const(dtypes.int32, x, device)
  rep: dict[UOp, UOp] = {}
  for u in x.toposort:
    if u.op is Ops.DEFINE_VAR: rep[u] = UOp(Ops.DEFINE_VAR, dtypes.int32, (UOp(Ops.DEVICE, arg=device),), u.arg)
    elif u.op is Ops.BIND: rep[u] = rep[u.src[0]]  # the value is the kernel's parameter
    elif u.op is Ops.CONST: rep[u] = UOp.const(dtypes.int32, u.arg, device)
    else: rep[u] = UOp(u.op, dtypes.int32 if u.dtype != dtypes.bool else u.dtype, tuple(rep[s] for s in u.src), u.arg)
  return rep[x]

def _identity(op: Ops, dt) -> object:
  if op is Ops.ADD: return 0
  if op is Ops.MUL: return 1
  return -math.inf if dt.is_float() else min_max(dt)[0]

def mask_tail(x: UOp, axis: int, length, fill) -> UOp:
  """`x` (of a max-form shape) with the elements at or past `length` along `axis` replaced by `fill`."""
  shape, n = x.shape, x.shape[axis]
  pos = UOp.positions(n, x.device).reshape(tuple(n if a == axis else 1 for a in range(len(shape)))).expand(shape)
  inside = pos.alu(Ops.CMPLT, tensor_int(length, x.device).reshape((1,) * len(shape)).expand(shape))
  return inside.where(x, x.const_like(fill))

def symbolic_reshape_ok(old: tuple, new: tuple) -> bool:
  """A reshape keeps a symbolic axis whole: both shapes have the same symbolic sizes in the same order, and the int
  sizes between them multiply to the same counts (in max form each symbolic axis is its maximum, so this is the same
  reshape of ints, and the elements past a bound length stay on their own rows)."""
  def groups(shape):
    out, cur = [], []
    for s in shape:
      if isinstance(s, UOp): out.append(prod(cur)); out.append(s); cur = []
      else: cur.append(s)
    return out + [prod(cur)]
  return groups(old) == groups(new) if len(groups(old)) == len(groups(new)) else False

def to_max_form(sink: UOp, cached_value) -> dict[UOp, UOp]:
  """Every node of `sink`'s graph (down to storages and values computed already) -> its max-form node. A symbolic node
  with a computed value reads it (its buffer holds the max form). Raises ValueError where a symbolic size cannot be
  given a fixed one without changing a value."""
  mf: dict[UOp, UOp] = {}
  stack = [(sink, False)]
  while stack:
    n, done = stack.pop()
    if n in mf: continue
    if not done:
      if n.op is Ops.BUFFER or n.op is Ops.DEVICE: mf[n] = n; continue
      if (v := cached_value(n)) is not None:
        mf[n] = v if shape_is_symbolic(n.shape) else n
        continue
      stack.append((n, True))
      stack.extend((s, False) for s in n.src if s not in mf)
      continue
    ns = tuple(mf[s] for s in n.src)
    if not is_symbolic_node(n) and all(a is b for a, b in zip(ns, n.src)) and not any(shape_is_symbolic(s.shape) for s in n.src):
      mf[n] = n
      continue
    mf[n] = _max_form(n, ns)
  return mf

def _max_form(n: UOp, ns: tuple) -> UOp:
  src_shape = n.src[0].shape if n.src else None
  out_max = max_shape(n.shape) if n.shape is not None else None
  match n.op:
    case Ops.SHRINK:
      arg = []
      for (b, e), size, s in zip(n.arg, n.shape, ns[0].shape):
        m = smax(size)
        if smax(b) + m > s:
          raise ValueError(f"shrink {n.arg}: the range ({b}, {e}) can reach past the axis of {s} (a start of up to {smax(b)} and a length of up "
                           f"to {m}); give the Variables tighter bounds")
        arg.append((ub, ub + m) if isinstance(ub := unbind(b)[0], UOp) or isinstance(size, UOp) else (b, e))
      return ns[0].shrink(tuple(arg))
    case Ops.PAD:
      x, arg = ns[0], []
      for a, ((b, after), s_old) in enumerate(zip(n.arg, src_shape)):
        if isinstance(s_old, UOp): x = mask_tail(x, a, s_old, 0)  # the zeros a pad reads past the bound length
        ms, mo = x.shape[a], out_max[a]
        b = unbind(b)[0]
        rest = ssimplify(mo - ms - b)
        if (rest.vmin if isinstance(rest, UOp) else rest) < 0:
          raise ValueError(f"pad {n.arg}: the padded axis has no fixed largest size ({n.shape[a]}); give the Variables tighter bounds")
        arg.append((b, rest))
      return x.pad(tuple(arg))
    case Ops.RESHAPE:
      if not symbolic_reshape_ok(src_shape, n.shape):
        raise ValueError(f"reshape {src_shape} -> {n.shape}: a symbolic axis must stay whole (the same symbolic sizes in the same order, "
                         "the other sizes between them multiplying to the same counts)")
      return ns[0].reshape(out_max)
    case Ops.EXPAND: return ns[0].expand(out_max)
    case Ops.FLIP:
      if any(isinstance(src_shape[a], UOp) for a in n.arg): raise ValueError(f"flip of a symbolic axis of shape {src_shape} is not supported")
      return n.replace(src=ns)
    case Ops.REDUCE_AXIS:
      op, axes = n.arg
      x = ns[0]
      for a in axes:
        if isinstance(src_shape[a], UOp): x = mask_tail(x, a, src_shape[a], _identity(op, x.dtype))
      return x.reduce_axis(op, axes)
    case Ops.GATHER | Ops.SCATTER | Ops.TAKE:
      raise ValueError(f"{n.op.name.lower()} over a symbolic shape {n.shape} is not supported: index a fixed-size tensor")
  return n.replace(src=ns)
