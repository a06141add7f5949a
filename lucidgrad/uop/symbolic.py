"""Simplification rules: constant folding with the target's semantics (C: ints wrap, division truncates), identities,
add-chain folding, div/mod by constants using value bounds, and comparisons decided by bounds. Knows nothing of tensors."""
from __future__ import annotations
import math
import numpy as np
from typing import Any
from lucidgrad.dtype import DType, dtypes, as_const, min_max, fma
from lucidgrad.uop.ops import UOp, Ops, GroupOp
from lucidgrad.uop.pattern import UPat, PatternMatcher

# ---- evaluating one op on Python values, with C semantics ----
def _idiv(a: int, b: int) -> int:
  if b == 0: return 0  # the renderers guard integer division by zero the same way
  q = abs(a) // abs(b)
  return q if (a >= 0) == (b >= 0) else -q

def _fdiv(a: float, b: float) -> float:
  if b != 0: return a / b
  return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)

def _safe(fn, *a) -> float:
  try: return fn(*a)
  except (OverflowError, ValueError): return math.nan

def _pow(a, b):
  try: r = a ** b
  except ZeroDivisionError: return math.inf
  except OverflowError: return math.inf
  return math.nan if isinstance(r, complex) else r

_PY_ALU: dict[Ops, Any] = {
  Ops.ADD: lambda a, b: a + b, Ops.SUB: lambda a, b: a - b, Ops.MUL: lambda a, b: a * b, Ops.FDIV: _fdiv, Ops.IDIV: _idiv,
  Ops.MOD: lambda a, b: _safe(math.fmod, a, b) if isinstance(a, float) else a - b * _idiv(a, b) if b != 0 else 0,  # 0, as the renderers guard it
  Ops.MAX: lambda a, b: b if (isinstance(b, float) and math.isnan(b)) else max(a, b),
  Ops.POW: _pow, Ops.CMPLT: lambda a, b: a < b, Ops.CMPNE: lambda a, b: a != b, Ops.CMPEQ: lambda a, b: a == b,
  Ops.AND: lambda a, b: a & b, Ops.OR: lambda a, b: a | b, Ops.XOR: lambda a, b: a ^ b,
  Ops.SHL: lambda a, b: a << b, Ops.SHR: lambda a, b: a >> b, Ops.NEG: lambda a: (not a) if isinstance(a, bool) else -a,
  Ops.EXP2: lambda a: _safe(lambda x: math.inf if x > 1024 else 2.0 ** x, a),
  Ops.LOG2: lambda a: -math.inf if a == 0 else math.nan if a < 0 or math.isnan(a) else math.log2(a),
  Ops.SIN: lambda a: _safe(math.sin, a), Ops.COS: lambda a: _safe(math.cos, a), Ops.SQRT: lambda a: math.nan if a < 0 else math.sqrt(a),
  Ops.RECIPROCAL: lambda a: _fdiv(1.0, a), Ops.TRUNC: lambda a: a if not math.isfinite(a) else float(math.trunc(a)),
  Ops.WHERE: lambda c, a, b: a if c else b,
}

def exec_alu(op: Ops, dtype: DType, vals: tuple) -> Any:
  """`op` applied to constants, rounded or wrapped to `dtype` as the compiled kernel would."""
  if op is Ops.CAST: return as_const(vals[0], dtype)
  if op is Ops.MULACC: return float(fma(*(np.array(v, dtype.scalar().np) for v in vals)))  # rounded once, in dtype
  if op in (Ops.SHL, Ops.SHR) and not 0 <= vals[1] < 8 * dtype.itemsize:  # as the renderers define it: all bits shifted out
    return as_const(0 if op is Ops.SHL or vals[0] >= 0 else -1, dtype.scalar())
  return as_const(_PY_ALU[op](*vals), dtype.scalar())

# ---- add chains as {term: coefficient} + constant ----
def _terms(u: UOp, distribute: bool = False) -> tuple[dict[UOp, int], int]:
  """u as {term: coefficient} + constant. With `distribute`, a constant multiple of a sum is multiplied out too (what
  div/mod folding needs to see every coefficient; rebuilding a chain that way would cost ops). Remembered on the node
  (a chain's prefix is read again by every longer chain over it); callers must not change the dict."""
  if u.op is Ops.CONST: return {}, u.arg
  memo = "_terms_d" if distribute else "_terms"
  if (done := u.__dict__.get(memo)) is not None: return done
  if u.op in (Ops.ADD, Ops.SUB):
    (ta, ca), (tb, cb) = _terms(u.src[0], distribute), _terms(u.src[1], distribute)
    sign = 1 if u.op is Ops.ADD else -1
    out = dict(ta)
    for t, k in tb.items(): out[t] = out.get(t, 0) + sign * k
    ret = {t: k for t, k in out.items() if k != 0}, ca + sign * cb
  elif u.op is Ops.NEG and u.dtype.is_int():  # _build writes a lone subtracted term as NEG
    t, c = _terms(u.src[0], distribute)
    ret = {x: -k for x, k in t.items()}, -c
  elif u.op is Ops.MUL and u.src[1].op is Ops.CONST and (distribute or u.src[0].op not in (Ops.ADD, Ops.SUB)):
    t, c = _terms(u.src[0], distribute)
    ret = {x: k * u.src[1].arg for x, k in t.items()}, c * u.src[1].arg
  else: return {u: 1}, 0  # a term of its own; not remembered, as the node would then hold itself
  u.__dict__[memo] = ret
  return ret

# Ops members and dtype ranges looked up once: Ops.X is a slow attribute lookup on Python 3.11's EnumType, and the
# functions below run for every index node of every kernel
_CONST, _ADD, _SUB, _MUL, _NEG = Ops.CONST, Ops.ADD, Ops.SUB, Ops.MUL, Ops.NEG
_RANGES: dict[DType, tuple] = {}
def _range_of(dt: DType) -> tuple:
  if (r := _RANGES.get(dt)) is None: r = _RANGES[dt] = min_max(dt)
  return r

def _build(terms: dict[UOp, int], const: int, dt: DType) -> UOp:
  """Rebuild an add chain in canonical order: positive terms, then subtracted ones, then the constant.
  When every constant it writes fits `dt` (none wraps), _terms of each chain node it builds gives back its terms and
  so _build of those is the node itself: such nodes are marked canonical, and fold_add_chain leaves them at once."""
  return _build_sums(terms, (const,), dt)[0]

def _build_sums(terms: dict[UOp, int], consts, dt: DType) -> list[UOp]:
  """_build(terms, c, dt) for each c of `consts` (the lanes of an upcast index): the chain of terms they share is
  built once."""
  lo, hi = _range_of(dt)
  exact = True  # every constant written so far fits dt
  def const_node(v: int) -> UOp:
    nonlocal exact
    if type(v) is int and lo <= v <= hi and dt.count == 1: return UOp(_CONST, dt, (), v)  # what UOp.const makes of it
    exact = False
    return UOp.const(dt, v)
  def term(t: UOp, k: int) -> UOp: return t if k == 1 else UOp(_MUL, t.dtype, (t, const_node(k)))
  def mark(chain: list[UOp]):
    if exact:
      for n in chain: n.__dict__["_canonical"] = True
  order = sorted(terms, key=lambda t: t.key)
  pos, neg = [t for t in order if terms[t] > 0], [t for t in order if terms[t] < 0]
  if not pos and neg and len(consts) > 1: return [_build(terms, c, dt) for c in consts]  # a lone constant leads the chain
  chain: list[UOp] = []  # the ADD/SUB nodes built, each a canonical chain of the terms before it
  out: UOp | None = None
  for t in pos:
    if out is None: out = term(t, terms[t])
    else: chain.append(out := UOp(_ADD, out.dtype, (out, term(t, terms[t]))))
  const = consts[0]
  if out is None and const != 0 and neg: out, const = const_node(const), 0
  for t in neg:
    if out is None: out = UOp(_NEG, t.dtype, (term(t, -terms[t]),))
    else: chain.append(out := UOp(_SUB, out.dtype, (out, term(t, -terms[t]))))
  if out is None: return [UOp.const(dt, c) for c in consts]
  mark(chain)
  base, lanes = out, []
  for c in (const,) if len(consts) == 1 else consts:
    if c == 0: lanes.append(base); continue
    exact_terms = exact
    lanes.append(out := UOp(_ADD, base.dtype, (base, const_node(c))) if c > 0 else UOp(_SUB, base.dtype, (base, const_node(-c))))
    mark([out])
    exact = exact_terms
  return lanes

def _n_ops(u: UOp) -> int:
  """Nodes in u's graph but constants (free: written inline). Counted without u.toposort, which would be cached on
  every candidate chain a fold builds and throws away."""
  seen, stack, n = {u}, [u], 0
  while stack:
    x = stack.pop()
    if x.op is not _CONST: n += 1
    for s in x.src:
      if s not in seen: seen.add(s); stack.append(s)
  return n

def _join_divmod(terms: dict[UOp, int], const: int) -> tuple[dict[UOp, int], int]:
  """`(x % c)*k + (x // c)*(c*k)` is `x*k` for every x (C's division truncates and its remainder keeps the sign of x,
  so x == (x // c)*c + x % c): a reshape's split axis read back whole (a max-pool's gradient, 2y+ky over y = 2*(y//2) +
  y%2) folds to the one index, and loads of one address become one load. Likewise, for x >= 0,
  `(x % c)*k + ((x // c) % m)*(c*k)` is `(x % (c*m))*k`: the bits of an index summed back (UOp.positions, every
  arange: x%2 + (x//2)%2*2 + (x//4)%2*4 + ... is x % 128, then x) join one digit at a time."""
  if not any(t.op is Ops.MOD for t in terms): return terms, const
  cur, copied, changed = terms, False, True  # `terms` is remembered on its node: copied before the first change
  while changed:
    changed = False
    for t, k in list(cur.items()):
      if t not in cur or t.op is not Ops.MOD or t.src[1].op is not _CONST: continue
      x, c = t.src
      q = UOp(Ops.IDIV, t.dtype, t.src)
      if cur.get(q) == k * c.arg: other, joined, kj = q, None, 0
      elif x.vmin >= 0 and c.arg > 0 and (other := next((u for u, ku in cur.items() if ku == k * c.arg and u.op is Ops.MOD and
                                                         u.src[1].op is _CONST and u.src[1].arg > 0 and u.src[0] is q), None)) is not None:
        joined, kj = UOp(Ops.MOD, t.dtype, (x, UOp.const(t.dtype, c.arg * other.src[1].arg))), k
      else: continue
      if not copied: cur, copied = dict(cur), True
      del cur[t], cur[other]
      if joined is None:  # x % c and x // c: x itself
        xt, xc = _terms(x)
        for y, ky in xt.items(): cur[y] = cur.get(y, 0) + k * ky
        const += k * xc
      else: cur[joined] = cur.get(joined, 0) + kj
      cur = {y: ky for y, ky in cur.items() if ky}
      changed = True
  return cur, const

def fold_add_chain(x: UOp) -> UOp | None:
  if not x.dtype.is_int() or "_canonical" in x.__dict__: return None
  terms, const = _join_divmod(*_terms(x))
  new = _build(terms, const, x.dtype)
  return new if new is not x and _n_ops(new) <= _n_ops(x) else None

def _sum_of(terms: dict[UOp, int], const: int, dt: DType) -> UOp: return _build(terms, const, dt)

def fold_divmod(x: UOp, c: UOp, is_mod: bool) -> UOp | None:
  """x // c and x % c for x >= 0 and a constant c > 0: terms whose coefficients c divides leave the mod and are divided
  exactly; a remainder whose whole range falls in one multiple of a common factor g of c drops out."""
  d = c.arg
  if d <= 0 or x.vmin < 0 or not x.dtype.is_int(): return None
  if x.vmax < d: return x if is_mod else x.const_like(0)
  terms, const = _terms(x, distribute=True)
  dt = x.dtype
  # x == d * (sum(k // d * t) + const // d) + rest, rest = sum(k % d * t) + const % d: if rest lies in [0, d) it is the mod
  rest = _sum_of({t: k % d for t, k in terms.items() if k % d}, const % d, dt)
  if 0 <= rest.vmin and rest.vmax < d: return rest if is_mod else _sum_of({t: k // d for t, k in terms.items() if k // d}, const // d, dt)
  q = {t: k // d for t, k in terms.items() if k % d == 0}
  r = {t: k for t, k in terms.items() if k % d != 0}
  rem = _sum_of(r, const, dt)
  if q and rem.vmin // d == rem.vmax // d:
    k = rem.vmin // d
    return (rem - UOp.const(dt, k * d) if k else rem) if is_mod else _sum_of(q, k, dt)
  if q and rem.vmin >= 0:  # (q*d + r) // d == q + r // d and (q*d + r) % d == r % d for r >= 0
    return rem % c if is_mod else _sum_of(q, 0, dt) + rem // c
  # a common factor g of d and the large terms, with the small rest inside [0, g)
  for g in sorted({math.gcd(d, k) for k in terms.values()} - {1, d}, reverse=True):
    big = {t: k // g for t, k in terms.items() if k % g == 0}
    small = _sum_of({t: k for t, k in terms.items() if k % g != 0}, const, dt)
    if big and 0 <= small.vmin and small.vmax < g:
      scaled = _sum_of(big, 0, dt)
      return ((scaled % UOp.const(dt, d // g)) * UOp.const(dt, g) + small) if is_mod else scaled // UOp.const(dt, d // g)
  return None

def fold_const(x: UOp) -> UOp | None:
  for s in x.src:
    if s.op is not _CONST: return None
  if x.dtype.count > 1: return None
  return UOp.const(x.dtype, exec_alu(x.op, x.dtype, tuple(s.arg for s in x.src)))

_NO_BOUNDS_FOLD = frozenset({Ops.CONST, Ops.LOAD, Ops.DEFINE_GLOBAL, Ops.DEFINE_REG, Ops.INDEX})
def fold_by_bounds(x: UOp) -> UOp | None:
  """An integer or boolean node whose bounds meet is that constant."""
  if x.dtype.kind not in "iub" or x.dtype.count > 1 or x.dtype.ptr or x.op in _NO_BOUNDS_FOLD: return None
  return UOp.const(x.dtype, x.vmin) if x.vmin == x.vmax else None

def _cmp_const(n: UOp, x: UOp, c: UOp) -> UOp | None:
  """Move constants across an integer comparison: y + a != c -> y != c - a (also == and y - a: exact, as ints wrap);
  y + a < c -> y < c - a and y * k < c -> y < ceil(c / k) for k > 0, only where y + a (y * k) cannot wrap."""
  if not x.dtype.is_int() or x.op not in (Ops.ADD, Ops.SUB, Ops.MUL) or x.src[1].op is not Ops.CONST: return None
  y, a = x.src[0], x.src[1].arg
  t = c.arg - a if x.op is Ops.ADD else c.arg + a if x.op is Ops.SUB else -(-c.arg // a) if a > 0 else None
  if n.op is not Ops.CMPLT: return n.replace(src=(y, UOp.const(x.dtype, t))) if x.op is not Ops.MUL else None
  lo, hi = min_max(x.dtype)
  if t is None or not lo <= t <= hi or not all(lo <= _PY_ALU[x.op](v, a) <= hi for v in (y.vmin, y.vmax)): return None
  return y < UOp.const(x.dtype, t)

def _swap_const(n: UOp, x: UOp, c: UOp) -> UOp | None: return n.replace(src=(x, c)) if x.op is not _CONST else None

def _zero_one(w: UOp, m: UOp) -> UOp | None:
  if not (m.dtype.is_int() and w.dtype.is_int() and 0 <= m.vmin and m.vmax <= 1): return None
  return m if m.dtype == w.dtype else m.cast(w.dtype)

is_int = lambda u: u.dtype.is_int()
TRUE, FALSE = UOp.const(dtypes.bool, True), UOp.const(dtypes.bool, False)
_ALU_OPS = tuple(GroupOp.ALU)

symbolic = PatternMatcher([
  # constant folding; a node whose bounds meet is a constant
  (UPat(_ALU_OPS + (Ops.CAST,), name="x"), fold_const),
  (UPat(_ALU_OPS, name="x"), fold_by_bounds),
  # constants go right in commutative ops
  (UPat(tuple(GroupOp.Commutative), src=(UPat.cvar("c"), UPat.var("x")), name="n"), _swap_const),
  # identities
  # x + 0.0 is +0.0 when x is -0.0, so a float keeps it unless the zero is -0.0 (x - 0.0 is x + -0.0: always x)
  (UPat.var("x") + UPat.cvar("c"), lambda x, c: x if c.arg == 0 and (is_int(x) or math.copysign(1, c.arg) < 0) else None),
  (UPat.var("x") - UPat.cvar("c"), lambda x, c: x if c.arg == 0 and (is_int(x) or math.copysign(1, c.arg) > 0) else None),
  (UPat.var("x") * 1, lambda x: x),
  (UPat.var("x") * 0, lambda x: x.const_like(0) if not x.dtype.is_float() else None),
  (UPat.var("x") // 1, lambda x: x), (UPat.var("x") % 1, lambda x: x.const_like(0) if not x.dtype.is_float() else None),
  (UPat.var("x").alu(Ops.FDIV, UPat.cvar("c")), lambda x, c: x if c.arg == 1 else None),
  (UPat.var("x") - UPat.var("x"), lambda x: x.const_like(0) if not x.dtype.is_float() else None),
  (UPat.var("x").maximum(UPat.var("x")), lambda x: x),
  (UPat(Ops.NEG, src=(UPat(Ops.NEG, src=(UPat.var("x"),)),)), lambda x: x if not x.dtype.is_bool() else None),
  (UPat(Ops.MAX, src=(UPat.var("a"), UPat.var("b"))), lambda a, b: a if a.vmin >= b.vmax and a.dtype.is_int() else b if b.vmin >= a.vmax and a.dtype.is_int() else None),
  # boolean algebra
  (UPat(Ops.AND, src=[UPat.var("x"), UPat.const(dtypes.bool, True)]), lambda x: x),
  (UPat(Ops.AND, src=[UPat.var("x"), UPat.const(dtypes.bool, False)]), lambda x: x.const_like(False)),
  (UPat(Ops.OR, src=[UPat.var("x"), UPat.const(dtypes.bool, False)]), lambda x: x),
  (UPat(Ops.OR, src=[UPat.var("x"), UPat.const(dtypes.bool, True)]), lambda x: x.const_like(True)),
  (UPat(Ops.XOR, src=[UPat.var("x"), UPat.const(dtypes.bool, False)]), lambda x: x),
  (UPat((Ops.AND, Ops.OR), src=(UPat.var("x"), UPat.var("x"))), lambda x: x),
  (UPat(Ops.XOR, src=[UPat(Ops.XOR, src=[UPat.var("x"), UPat.const(dtypes.bool, True)]), UPat.const(dtypes.bool, True)]), lambda x: x),
  (UPat(Ops.WHERE, src=(UPat.var(), UPat.var("x"), UPat.var("x"))), lambda x: x),
  (UPat(Ops.WHERE, src=(UPat.cvar("c"), UPat.var("a"), UPat.var("b"))), lambda c, a, b: a if c.arg else b),
  # an int m that is 0 or 1, turned into a bool and back, is m (a padded constant's valid test: an arange's bits)
  (UPat(Ops.WHERE, src=(UPat(Ops.CMPLT, src=(UPat.var("m"), UPat.const(None, 1))), UPat.const(None, 0), UPat.const(None, 1)), name="w"), _zero_one),
  (UPat(Ops.WHERE, src=(UPat(Ops.XOR, src=[UPat(Ops.CMPLT, src=(UPat.var("m"), UPat.const(None, 1))), UPat.const(dtypes.bool, True)]),
                        UPat.const(None, 1), UPat.const(None, 0)), name="w"), _zero_one),
  (UPat(Ops.CMPLT, src=(UPat.var("x"), UPat.var("x"))), lambda x: UOp.const(dtypes.bool, False)),
  (UPat(Ops.CMPNE, src=(UPat.var("x"), UPat.var("x"))), lambda x: UOp.const(dtypes.bool, False) if not x.dtype.is_float() else None),
  # integer chains and division
  (UPat((Ops.ADD, Ops.SUB), dtype=[d for d in dtypes.all() if d.is_int()], name="x"), fold_add_chain),
  ((UPat.var("x") + UPat.cvar("a")) * UPat.cvar("b"), lambda x, a, b: x * b + UOp.const(x.dtype, a.arg * b.arg) if is_int(x) else None),
  ((UPat.var("x") * UPat.cvar("a")) * UPat.cvar("b"), lambda x, a, b: x * UOp.const(x.dtype, a.arg * b.arg) if is_int(x) else None),
  (UPat.var("x") // UPat.cvar("c"), lambda x, c: fold_divmod(x, c, False)),
  (UPat.var("x") % UPat.cvar("c"), lambda x, c: fold_divmod(x, c, True)),
  ((UPat.var("x") // UPat.cvar("a")) // UPat.cvar("b"),
   lambda x, a, b: x // UOp.const(x.dtype, a.arg * b.arg) if x.vmin >= 0 and a.arg > 0 and b.arg > 0 else None),
  ((UPat.var("x") % UPat.cvar("a")) % UPat.cvar("b"),
   lambda x, a, b: x % b if x.vmin >= 0 and b.arg > 0 and a.arg != 0 and a.arg % b.arg == 0 else None),  # x % 0 is 0, not x
  (UPat(tuple(GroupOp.Comparison), src=(UPat.var("x"), UPat.cvar("c")), name="n"), _cmp_const),
])
