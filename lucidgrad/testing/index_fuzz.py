"""Index math checked: random integer expressions shaped like what lowering builds, simplified with the kernel rules, and
proved to keep their value and to stay inside their vmin/vmax -- on every assignment of the ranges when there are few,
with z3 for any size. `python -m lucidgrad.testing.index_fuzz --n 10000 --seed 0 --z3` runs it and prints minimised repros.

Semantics are the C renderer's: `//` truncates toward zero, `%` takes the dividend's sign, both give 0 for a divisor of 0,
and ints wrap. An original expression means something only where no ALU node of it leaves its dtype (C calls signed
overflow undefined), so values are compared on those assignments only; the simplified one may wrap and must still agree.
Every node of both must lie within its bounds on every assignment, wrapped as it would be when run."""
from __future__ import annotations
import argparse, itertools, math, random, sys, time
from dataclasses import dataclass, field
import numpy as np
from lucidgrad.dtype import DType, dtypes, min_max
from lucidgrad.uop.ops import UOp, Ops, AxisType
from lucidgrad.uop.pattern import graph_rewrite
from lucidgrad.codegen.opt.kernel import pm_kernel_simplify

MAX_EXHAUSTIVE = 4096  # at most this many assignments of the ranges are evaluated one by one
MAX_FALLBACK = 2**20   # ... or this many where z3 gives up

def simplify(u: UOp) -> UOp:
  """What codegen does to a kernel's index math right after lowering."""
  return graph_rewrite(u, pm_kernel_simplify, name="simplify")

def ranges_of(u: UOp) -> list[UOp]: return sorted((n for n in u.toposort if n.op is Ops.RANGE), key=lambda r: r.arg[0])
def n_assignments(rngs: list[UOp]) -> int: return math.prod(r.src[0].arg for r in rngs)

# ---- sound intervals of raw (unwrapped) values, from the ops' meaning alone: they pick the evaluator's number type and
# tell z3 where wrapping cannot happen. Independent of UOp.vmin/vmax, which are what is being checked. ----
def _cdiv(a: int, b: int) -> int:
  if b == 0: return 0
  q = abs(a) // abs(b)
  return q if (a < 0) == (b < 0) else -q

def _raw_interval(u: UOp, val: dict[UOp, tuple[int, int]]) -> tuple[int, int]:
  iv = [val[s] for s in u.src]
  if u.op is Ops.CONST: return (int(u.arg), int(u.arg))
  if u.op is Ops.RANGE: return (0, u.src[0].arg - 1)
  if u.dtype.is_bool(): return (0, 1)
  if u.op is Ops.CAST: return iv[0]
  if u.op is Ops.WHERE: return (min(iv[1][0], iv[2][0]), max(iv[1][1], iv[2][1]))
  if u.op is Ops.NEG: return (-iv[0][1], -iv[0][0])
  if u.op in (Ops.ADD, Ops.SUB, Ops.MUL, Ops.MAX):
    f = {Ops.ADD: lambda a, b: a + b, Ops.SUB: lambda a, b: a - b, Ops.MUL: lambda a, b: a * b, Ops.MAX: max}[u.op]
    vals = [f(a, b) for a in iv[0] for b in iv[1]]
    return (min(vals), max(vals))
  (a0, a1), (b0, b1) = iv
  if u.op is Ops.IDIV:
    # trunc(a / b) is monotone in a for a fixed b, and in b on each side of 0; a divisor range holding 0 gives |q| <= |a|
    if b0 > 0 or b1 < 0: vals = [_cdiv(a, b) for a in (a0, a1) for b in (b0, b1)]; return (min(vals), max(vals))
    m = max(abs(a0), abs(a1)); return (-m, m)
  if u.op is Ops.MOD:
    big = max(abs(b0), abs(b1)) - 1  # |a % b| < |b|, with a's sign (and 0 when b is 0)
    return (max(min(a0, 0), -big) if big >= 0 else 0, min(max(a1, 0), big) if big >= 0 else 0)
  return min_max(u.dtype.scalar())  # bitwise ops of in-range values stay in range

def intervals(nodes: list[UOp]) -> tuple[dict[UOp, tuple[int, int]], dict[UOp, tuple[int, int]]]:
  """(raw, wrapped) intervals of every node in `nodes` (in toposort order)."""
  raw: dict[UOp, tuple[int, int]] = {}
  val: dict[UOp, tuple[int, int]] = {}
  for u in nodes:
    raw[u] = r = _raw_interval(u, val)
    lo, hi = min_max(u.dtype.scalar()) if u.dtype.is_int() else (0, 1)
    val[u] = r if lo <= r[0] and r[1] <= hi else (int(lo), int(hi))
  return raw, val

def toposort_of(*roots: UOp) -> list[UOp]:
  seen: dict[UOp, None] = {}
  for r in roots:
    for n in r.toposort: seen.setdefault(n, None)
  return list(seen)

# ---- evaluation on many assignments at once, with C semantics ----
def _np_idiv(a, b):
  zero = b == 0
  sb = np.where(zero, 1, b)
  q = np.abs(a) // np.abs(sb)
  return np.where(zero, 0, np.where((a < 0) != (sb < 0), -q, q))

def _wrap(v, dt: DType):
  lo, hi = min_max(dt)
  return (v - lo) % (hi - lo + 1) + lo

_NP_OPS = {
  Ops.ADD: lambda a, b: a + b, Ops.SUB: lambda a, b: a - b, Ops.MUL: lambda a, b: a * b, Ops.IDIV: _np_idiv,
  Ops.MOD: lambda a, b: np.where(b == 0, 0, a - b * _np_idiv(a, b)), Ops.MAX: lambda a, b: np.where(a > b, a, b),
  Ops.CMPLT: lambda a, b: a < b, Ops.CMPNE: lambda a, b: a != b, Ops.CMPEQ: lambda a, b: a == b,
  Ops.AND: lambda a, b: a & b, Ops.OR: lambda a, b: a | b, Ops.XOR: lambda a, b: a ^ b, Ops.WHERE: lambda c, a, b: np.where(c, a, b),
}

def evaluate(nodes: list[UOp], env: dict[UOp, np.ndarray], meaningful: set[UOp]) -> tuple[dict[UOp, np.ndarray], np.ndarray]:
  """The wrapped value of every node on every assignment in `env`, and a mask of the assignments where no node in
  `meaningful` leaves its dtype before wrapping."""
  raw_iv, _ = intervals(nodes)
  # int64 arrays hold every raw value exactly unless some interval says otherwise; then Python ints
  npdt = np.int64 if all(-2**63 < lo and hi < 2**63 for lo, hi in raw_iv.values()) else object
  n = len(next(iter(env.values()))) if env else 1
  vals: dict[UOp, np.ndarray] = {}
  ok = np.ones(n, dtype=np.bool_)
  for u in nodes:
    a = [vals[s] for s in u.src]
    if u.op is Ops.RANGE: v = env[u].astype(npdt) if u in env else np.zeros(n, npdt)
    elif u.op is Ops.CONST: v = np.full(n, u.arg, dtype=np.bool_ if u.dtype.is_bool() else npdt)
    elif u.op is Ops.NEG: v = ~a[0] if u.dtype.is_bool() else -a[0]
    elif u.op is Ops.CAST: v = (a[0] != 0) if u.dtype.is_bool() else a[0].astype(npdt)
    elif u.op in _NP_OPS: v = _NP_OPS[u.op](*a)
    else: raise NotImplementedError(f"index_fuzz evaluate: {u.op}")
    if u.dtype.is_int():
      v = np.asarray(v).astype(npdt)
      lo, hi = min_max(u.dtype.scalar())
      if not (lo <= raw_iv[u][0] and raw_iv[u][1] <= hi):
        if u in meaningful and u.op is not Ops.CAST: ok &= (v >= lo) & (v <= hi)  # a narrowing cast wraps by definition
        v = _wrap(v, u.dtype.scalar())
    vals[u] = np.asarray(v)
  return vals, ok

def all_assignments(rngs: list[UOp]) -> dict[UOp, np.ndarray]:
  grids = np.meshgrid(*[np.arange(r.src[0].arg, dtype=np.int64) for r in rngs], indexing="ij")
  return {r: g.reshape(-1) for r, g in zip(rngs, grids)}

def sampled_assignments(rngs: list[UOp], n: int, rng: random.Random) -> dict[UOp, np.ndarray]:
  """Every corner of the box of ranges, then random points."""
  ends = [r.src[0].arg for r in rngs]
  pts = list(itertools.product(*[sorted({0, e - 1}) for e in ends]))[:n]
  pts += [tuple(rng.randrange(e) for e in ends) for _ in range(n - len(pts))]
  return {r: np.array([p[i] for p in pts], dtype=np.int64) for i, r in enumerate(rngs)}

# ---- a failure ----
@dataclass
class Failure:
  kind: str                 # "value": the simplified expression differs; "bounds": a node leaves [vmin, vmax]; "checker": z3 and evaluation disagree
  expr: UOp
  simplified: UOp
  at: dict[tuple, int]      # range id -> its value in the counterexample
  want: object = None
  got: object = None
  node: UOp | None = None   # for "bounds": the node whose bounds do not hold
  how: str = ""             # "exhaustive", "sampled" or "z3"
  notes: list[str] = field(default_factory=list)

def _bounds_ok(u: UOp, v) -> np.ndarray:
  if u.dtype.is_bool(): return (v >= bool(u.vmin)) & (v <= bool(u.vmax))
  return (v >= u.vmin) & (v <= u.vmax)

def _checked_nodes(nodes: list[UOp]) -> list[UOp]:
  return [u for u in nodes if (u.dtype.is_int() or u.dtype.is_bool()) and u.dtype.count == 1 and not u.dtype.ptr]

def check_points(expr: UOp, env: dict[UOp, np.ndarray], out: UOp | None = None, how: str = "exhaustive") -> Failure | None:
  """Compare `expr` with its simplified form, and every node with its bounds, on the assignments in `env`."""
  out = simplify(expr) if out is None else out
  if out.dtype != expr.dtype: return Failure("value", expr, out, {}, expr.dtype, out.dtype, how=how)
  nodes = toposort_of(expr, out)
  vals, ok = evaluate(nodes, env, set(expr.toposort))
  at = lambda i: {r.arg[0]: int(v[i]) for r, v in env.items()}
  bad = np.nonzero(ok & (vals[expr] != vals[out]))[0]
  if len(bad): return Failure("value", expr, out, at(bad[0]), vals[expr][bad[0]].item(), vals[out][bad[0]].item(), how=how)
  for u in _checked_nodes(nodes):
    bad = np.nonzero(~_bounds_ok(u, vals[u]))[0]
    if len(bad): return Failure("bounds", expr, out, at(bad[0]), (u.vmin, u.vmax), vals[u][bad[0]].item(), node=u, how=how)
  return None

# ---- z3: the same semantics as formulas over unbounded ints ----
def _z3_encode(nodes: list[UOp], meaningful: set[UOp]):
  """z3 terms for every node; facts: the ranges' bounds, each C division by a constant as a = d*q + r with r of a's sign
  and |r| < d, and no node in `meaningful` leaving its dtype."""
  import z3
  raw_iv, val_iv = intervals(nodes)
  ex: dict[UOp, object] = {}
  facts: list = []
  names: dict[UOp, object] = {}
  quotients: dict[tuple[int, int], tuple] = {}  # (id of the dividend's normal form, divisor) -> (the form, quotient)
  as_int = lambda x: z3.If(x, z3.IntVal(1), z3.IntVal(0)) if z3.is_bool(x) else x
  def cdiv(u: UOp, a, b, d: int | None):
    if d is None:  # by a variable: nonlinear, rare in index math
      ab = z3.If(b >= 0, b, -b)
      q = z3.If(a >= 0, a / ab, -((-a) / ab))
      return z3.If(b == 0, 0, z3.If(b > 0, q, -q))
    if d == 0: return z3.IntVal(0)
    # one quotient per (dividend, divisor) up to z3's normal form, so that `a + -1` and `a - 1` share it: proving that two
    # quotients of the same dividend are equal is the slow part of what z3 does with division
    a = z3.simplify(a, som=True)  # z3 interns terms: equal normal forms have one id (while one is alive: keep it)
    if (key := (a.get_id(), d)) not in quotients:
      q, r = z3.Int(f"q{len(quotients)}"), z3.Int(f"rem{len(quotients)}")
      facts.extend([a == abs(d) * q + r, z3.Implies(a >= 0, z3.And(0 <= r, r < abs(d))), z3.Implies(a < 0, z3.And(-abs(d) < r, r <= 0))])
      # the quotient's interval (trunc is monotone; `intervals` is checked against evaluation in tests) spares z3 a search
      alo, ahi = val_iv[u.src[0]]
      facts.extend([q >= _cdiv(alo, abs(d)), q <= _cdiv(ahi, abs(d))])
      quotients[key] = (a, q)
    q = quotients[key][1]
    return q if d > 0 else -q
  for u in nodes:
    a = [ex[s] for s in u.src]
    d = u.src[1].arg if len(u.src) == 2 and u.src[1].op is Ops.CONST and u.dtype.is_int() else None
    match u.op:
      case Ops.RANGE:
        v = names[u] = z3.Int(f"r{u.arg[0][0] if isinstance(u.arg[0], tuple) else u.arg[0]}")
        facts += [v >= 0, v < u.src[0].arg]
      case Ops.CONST: v = z3.BoolVal(bool(u.arg)) if u.dtype.is_bool() else z3.IntVal(int(u.arg))
      case Ops.ADD: v = a[0] + a[1]
      case Ops.SUB: v = a[0] - a[1]
      case Ops.MUL: v = a[0] * a[1]
      case Ops.IDIV: v = cdiv(u, a[0], a[1], d)
      case Ops.MOD:
        if d is None: v = z3.If(a[1] == 0, 0, a[0] - a[1] * cdiv(u, a[0], a[1], None))
        else: v = a[0] - d * cdiv(u, a[0], a[1], d) if d else z3.IntVal(0)
      case Ops.MAX: v = z3.If(a[0] > a[1], a[0], a[1])
      case Ops.NEG: v = z3.Not(a[0]) if u.dtype.is_bool() else -a[0]
      case Ops.CMPLT: v = as_int(a[0]) < as_int(a[1])
      case Ops.CMPNE: v = a[0] != a[1]
      case Ops.CMPEQ: v = a[0] == a[1]
      case Ops.AND | Ops.OR | Ops.XOR if u.dtype.is_bool(): v = {Ops.AND: z3.And, Ops.OR: z3.Or, Ops.XOR: z3.Xor}[u.op](a[0], a[1])
      case Ops.WHERE: v = z3.If(a[0], a[1], a[2])
      case Ops.CAST: v = (as_int(a[0]) != 0) if u.dtype.is_bool() else as_int(a[0])
      case _: raise NotImplementedError(f"index_fuzz z3: {u.op} {u.dtype}")
    if u.dtype.is_int():
      lo, hi = min_max(u.dtype.scalar())
      if not (lo <= raw_iv[u][0] and raw_iv[u][1] <= hi):
        if u in meaningful and u.op is not Ops.CAST: facts.append(z3.And(v >= lo, v <= hi))
        v = z3.If(z3.And(v >= lo, v <= hi), v, (v - lo) % (hi - lo + 1) + lo)  # z3's % by a positive constant is >= 0: a wrap
    ex[u] = v
  return ex, facts, names

def check_z3(expr: UOp, out: UOp | None = None, timeout_ms: int = 2000) -> Failure | None | str:
  """None if z3 proves `expr` == its simplified form wherever `expr` has a C meaning and every node within its bounds
  everywhere; a Failure with z3's counterexample otherwise; "unknown" if z3 gave up."""
  import z3
  out = simplify(expr) if out is None else out
  if out.dtype != expr.dtype: return Failure("value", expr, out, {}, expr.dtype, out.dtype, how="z3")
  nodes = toposort_of(expr, out)
  ex, facts, names = _z3_encode(nodes, set(expr.toposort))
  s = z3.Solver()
  s.set("timeout", timeout_ms)
  s.add(*facts)
  # the value first, then all bounds at once, then (if that one is not refuted quickly) each node's bounds on its own:
  # or-ing the value with the bounds, or the bounds of a whole graph, can be far slower to decide than its parts.
  # Bounds that contain the node's interval are sound already: the intervals are exact-integer arithmetic of another
  # hand, checked against evaluation in tests; z3 is asked where the two disagree.
  _, val_iv = intervals(nodes)
  bounds: list[tuple[UOp, object]] = []
  for u in _checked_nodes(nodes):
    if u.op is Ops.CONST or (u.vmin, u.vmax) == min_max(u.dtype.scalar()): continue  # a wrapped value is always in its dtype
    if u.vmin <= val_iv[u][0] and val_iv[u][1] <= u.vmax: continue
    if u.dtype.is_bool(): bounds.append((u, z3.Not(ex[u]) if u.vmin else ex[u] if not u.vmax else z3.BoolVal(False)))
    else: bounds.append((u, z3.Or(ex[u] < u.vmin, ex[u] > u.vmax)))
  def ask(q, ms: int, keep_model: bool = True):
    s.push(); s.add(q); s.set("timeout", ms)
    if (res := s.check()) != z3.sat or not keep_model: s.pop()
    return res
  node: UOp | None = None
  if (res := ask(ex[expr] != ex[out], timeout_ms) if expr is not out else z3.unsat) != z3.sat:
    unknown = res != z3.unsat
    if not bounds or ask(z3.Or(*[b for _, b in bounds]), min(timeout_ms, 500), False) == z3.unsat: return "unknown" if unknown else None
    deadline = time.perf_counter() + timeout_ms / 1000  # one budget for all the nodes
    for node, q in bounds:
      if (left := int((deadline - time.perf_counter()) * 1000)) <= 0: return "unknown"
      if (res := ask(q, left)) == z3.sat: break
      unknown |= res != z3.unsat
    else: return "unknown" if unknown else None
  m = s.model()
  at = {r.arg[0]: m.eval(v, model_completion=True).as_long() for r, v in names.items()}
  zval = lambda u: z3.is_true(m.eval(ex[u], model_completion=True)) if u.dtype.is_bool() else m.eval(ex[u], model_completion=True).as_long()
  if node is None: f = Failure("value", expr, out, at, zval(expr), zval(out), how="z3")
  else: f = Failure("bounds", expr, out, at, (node.vmin, node.vmax), zval(node), node=node, how="z3")
  # the counterexample must reproduce in the evaluator, or the two encodings of C semantics disagree
  env = {r: np.array([at[r.arg[0]]], dtype=np.int64) for r in ranges_of(expr) + ranges_of(out)}
  if check_points(expr, env, out, how="z3") is None: f.kind, f.notes = "checker", ["z3's counterexample does not reproduce in the evaluator"]
  return f

def check(expr: UOp, use_z3: bool = False, rng: random.Random | None = None, timeout_ms: int = 2000) -> tuple[Failure | None, str]:
  """Check one expression; returns (failure or None, how: '+'-joined parts of 'exhaustive', 'sampled', 'z3', 'unknown').
  With z3, a small expression is also evaluated exhaustively (a disagreement is a checker failure); where z3 gives up,
  evaluation takes over: exhaustive up to MAX_FALLBACK assignments, sampled beyond."""
  out = simplify(expr)
  rngs = sorted(set(ranges_of(expr)) | set(ranges_of(out)), key=lambda r: r.arg[0])
  n = n_assignments(rngs)
  pts = check_points(expr, all_assignments(rngs), out) if n <= MAX_EXHAUSTIVE else None
  if use_z3:
    z = check_z3(expr, out, timeout_ms)
    if not isinstance(z, str):
      if n <= MAX_EXHAUSTIVE and (pts is None) != (z is None):
        f = pts or z
        assert f is not None
        f.kind, f.notes = "checker", [f"exhaustive says {'ok' if pts is None else pts.kind}, z3 says {'ok' if z is None else z.kind}"]
        return f, "z3+exhaustive"
      return z, "z3+exhaustive" if n <= MAX_EXHAUSTIVE else "z3"
  prefix = "unknown+" if use_z3 else ""
  if n <= MAX_EXHAUSTIVE: return pts, prefix + "exhaustive"
  if use_z3 and n <= MAX_FALLBACK: return check_points(expr, all_assignments(rngs), out), prefix + "exhaustive"
  return check_points(expr, sampled_assignments(rngs, MAX_EXHAUSTIVE, rng or random.Random(0)), out, how="sampled"), prefix + "sampled"

# ---- minimising a failure ----
def _size(u: UOp) -> tuple[int, int]:
  return (len(u.toposort), sum(abs(int(n.arg)) if n.op is Ops.CONST else n.src[0].arg if n.op is Ops.RANGE else 0 for n in u.toposort))

def _smaller_consts(v: int) -> list[int]:
  out = [0, 1, -1, v // 2, v - 1 if v > 0 else v + 1, -v]
  return [x for x in dict.fromkeys(out) if abs(x) < abs(v) or (x == -v and v < 0)]

def _candidates(u: UOp):
  """Expressions a step simpler than `u`: a node replaced by one of its sources or a constant, a constant shrunk, a
  range made shorter."""
  yield from (n for n in reversed(u.toposort[:-1]) if n.op not in (Ops.CONST, Ops.RANGE))  # a part that fails on its own
  for n in u.toposort:
    if n.op is Ops.CONST:
      if n.dtype.is_int(): yield from (u.substitute({n: UOp.const(n.dtype, x)}) for x in _smaller_consts(int(n.arg)))
      continue
    if n.op is Ops.RANGE:
      end = n.src[0].arg
      for e in dict.fromkeys([2, end // 2, end - 1]):
        if 1 <= e < end: yield u.substitute({n: n.replace(src=(UOp.const(n.dtype, e),))})
      continue
    for s in n.src:
      if s.dtype == n.dtype and n is not u: yield u.substitute({n: s})
    if n is not u:
      for x in ((False, True) if n.dtype.is_bool() else (0, 1)): yield u.substitute({n: UOp.const(n.dtype, x)})

def minimise(f: Failure, use_z3: bool, max_checks: int = 1000) -> Failure:
  """Greedily replace parts of the failing expression while it still fails the same way."""
  best, checks = f, 0
  def fails(cand: UOp) -> Failure | None:
    try: g, _ = check(cand, use_z3=use_z3 or n_assignments(ranges_of(cand)) > MAX_EXHAUSTIVE)
    except NotImplementedError: return None
    return g if g is not None and g.kind == f.kind else None
  if f.kind == "bounds" and f.node is not None and f.node is not f.expr and (g := fails(f.node)):  # the node alone may do
    best = g
  improved = True
  while improved and checks < max_checks:
    improved = False
    for cand in _candidates(best.expr):
      if _size(cand) >= _size(best.expr) or cand.op is Ops.CONST: continue
      checks += 1
      if (g := fails(cand)) is not None:
        best, improved = g, True
        break
      if checks >= max_checks: break
  return best

# ---- printing a repro ----
_LEFT_CONST = {dtypes.int32: "K", dtypes.int64: "K64"}
_INFIX = {Ops.ADD: "+", Ops.SUB: "-", Ops.MUL: "*", Ops.IDIV: "//", Ops.MOD: "%", Ops.CMPLT: "<", Ops.AND: "&", Ops.OR: "|"}

def show(u: UOp, left: bool = True) -> str:
  """`u` as Python that rebuilds it, given the names `repro` defines."""
  if u.op is Ops.CONST:
    if u.dtype.is_bool(): return "TRUE" if u.arg else "FALSE"
    return str(u.arg) if not left else f"{_LEFT_CONST.get(u.dtype, 'K')}({u.arg})"
  if u.op is Ops.RANGE: return f"r{u.arg[0][0] if isinstance(u.arg[0], tuple) else u.arg[0]}"
  s = u.src
  if u.op is Ops.XOR and s[0].op is Ops.CMPLT and s[1].op is Ops.CONST and s[1].arg is True: return f"({show(s[0].src[0])} >= {show(s[0].src[1], False)})"
  if u.op in _INFIX: return f"({show(s[0])} {_INFIX[u.op]} {show(s[1], s[1].dtype != s[0].dtype)})"
  if u.op is Ops.NEG: return f"(-{show(s[0])})"
  if u.op is Ops.CMPNE: return f"{show(s[0])}.ne({show(s[1], False)})"
  if u.op is Ops.CMPEQ: return f"{show(s[0])}.eq({show(s[1], False)})"
  if u.op is Ops.MAX: return f"{show(s[0])}.maximum({show(s[1], False)})"
  if u.op is Ops.WHERE: return f"{show(s[0])}.where({show(s[1])}, {show(s[2])})"
  if u.op is Ops.CAST: return f"{show(s[0])}.cast({u.dtype!r})"
  return f"{show(s[0])}.alu(Ops.{u.op.name}, {', '.join(show(x) for x in s[1:])})"

def repro(f: Failure) -> str:
  rngs = sorted(set(ranges_of(f.expr)) | set(ranges_of(f.simplified)), key=lambda r: r.arg[0])
  at = ", ".join(f"{show(r)}={f.at.get(r.arg[0], '?')}" for r in rngs) or "(no ranges)"
  lines = [f"{f.kind.upper()} mismatch (found by {f.how})" + (f": {'; '.join(f.notes)}" if f.notes else ""),
           "  from lucidgrad.uop.ops import UOp, Ops, AxisType; from lucidgrad.dtype import dtypes",
           "  K, K64 = lambda v: UOp.const(dtypes.int32, v), lambda v: UOp.const(dtypes.int64, v)",
           "  TRUE, FALSE = UOp.const(dtypes.bool, True), UOp.const(dtypes.bool, False)",
           *[f"  {show(r)} = UOp.range({r.src[0].arg}, rid={r.arg[0]!r})" if r.dtype == dtypes.index else
             f"  {show(r)} = UOp(Ops.RANGE, {r.dtype!r}, ({_LEFT_CONST[r.dtype]}({r.src[0].arg}),), {r.arg!r})".replace("<AxisType.LOOP: 1>", "AxisType.LOOP")
             for r in rngs],
           f"  before = {show(f.expr)}", f"  after  = {show(f.simplified)}"]
  if isinstance(f.want, DType): lines.append(f"  the dtype changed from {f.want!r} to {f.got!r}")
  elif f.kind == "bounds":
    assert f.node is not None
    lines += [f"  at {at}:", f"    node {show(f.node)} is {f.got}, outside its bounds vmin..vmax = {f.want[0]}..{f.want[1]}"]
  else: lines += [f"  at {at}:", f"    before = {f.want}, after = {f.got}"]
  return "\n".join(lines)

# ---- random expressions shaped like lowering's ----
SMALL_ENDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16]
LARGE_ENDS = [17, 32, 64, 100, 127, 128, 256, 1000, 1024, 4096, 65536, 2**20]

class IndexGen:
  """Random index expressions: linear combinations of ranges by strides, reshape chains `(lin // S) % T`, pad guards,
  flips and shrinks, conv windows, with comparisons, AND/OR, WHERE, MAX, NEG, negative constants and casts to int64."""
  def __init__(self, seed: int): self.rng = random.Random(seed)

  def ranges(self, small: bool, dt: DType) -> list[UOp]:
    r = self.rng
    while True:
      ends = [r.choice(SMALL_ENDS) if small or r.random() < 0.5 else r.choice(LARGE_ENDS) for _ in range(r.choice([1, 2, 2, 3, 3, 4]))]
      if math.prod(ends) <= (MAX_EXHAUSTIVE if small else 2**31 - 1):
        return [UOp(Ops.RANGE, dt, (UOp.const(dt, e),), ((k,), AxisType.LOOP)) for k, e in enumerate(ends)]

  def expr(self, small: bool = False) -> UOp:
    r = self.rng
    dt = dtypes.int64 if r.random() < 0.15 else dtypes.index
    # an int64 expression counts either on int64 ranges (a kernel past 2**31 elements) or on int32 ones cast up
    self.rngs = self.ranges(small, dt if r.random() < 0.5 else dtypes.index)
    self.ends = [x.src[0].arg for x in self.rngs]
    self.strides = [math.prod(self.ends[i + 1:]) for i in range(len(self.ends))]
    return self.bool_expr(3, dt) if r.random() < 0.12 else self.int_expr(4, dt)

  # pieces
  def const(self, dt: DType, v: int) -> UOp: return UOp.const(dt, v)
  def leaf(self, dt: DType) -> UOp: return self.rng.choice(self.rngs).cast(dt)
  def coef(self, dt: DType) -> int:
    r, p = self.rng, self.rng.random()
    # int64 index math exists for buffers past 2**31 elements: values past 2**53 are where float shortcuts go wrong
    if dt == dtypes.int64 and p < 0.3: return r.choice([2**33, 3**25, -2**40, 2**52 + 1, 2**55 + 3, 10**17 + 7])
    if p < 0.35: return r.choice(self.strides + self.ends)
    if p < 0.7: return r.randint(-4, 12)
    if p < 0.9: return r.choice([16, 32, 64, 128, 256, 1024, 4096, -16, -64])
    return r.choice([65536, 3 * 10**5, 2**20] + ([2**33, 3**25, -2**40, 2**52 + 1] if dt == dtypes.int64 else []))
  def divisor(self, x: UOp) -> int:
    r, p = self.rng, self.rng.random()
    consts = [abs(int(n.arg)) for n in x.toposort if n.op is Ops.CONST and n.dtype.is_int() and n.arg not in (0,)]
    if p < 0.3 and consts: return r.choice(consts)
    if p < 0.5: return r.choice(self.strides + self.ends)
    if p < 0.8: return r.randint(1, 12)
    if p < 0.92: return r.choice([16, 32, 64, 256, 1024, 4096, 65536])
    if p < 0.96: return -r.randint(1, 7)  # lowering never divides by a negative, but constant folding must match C
    if p < 0.97: return 0  # nor by 0, which the renderers define as giving 0: a rule must not assume otherwise
    return r.choice([2**16 + 1, 2**20, 3 * 10**6, 2**30] + ([2**33, 2**50 + 3] if x.dtype == dtypes.int64 else []))
  def linear(self, dt: DType) -> UOp:
    """sum(range * stride) + offset, as an index into a (possibly permuted, shrunk or padded) buffer."""
    r = self.rng
    picks = r.sample(range(len(self.rngs)), r.randint(1, len(self.rngs)))
    out: UOp | None = None
    for i in picks:
      t = self.leaf(dt)
      if r.random() < 0.2: t = (self.ends[i] - 1) - t  # a flip
      k = self.strides[i] if r.random() < 0.6 else self.coef(dt)
      t = t if k == 1 else t * k
      out = t if out is None else out + t
    assert out is not None
    if r.random() < 0.5: out = out + r.choice([-3, -2, -1, 1, 2, 5, self.rng.choice(self.strides)])
    return out

  def int_expr(self, depth: int, dt: DType) -> UOp:
    r = self.rng
    if depth <= 0 or r.random() < 0.1: return self.leaf(dt) if r.random() < 0.8 else self.const(dt, self.coef(dt))
    kind = r.choices(["linear", "add", "sub", "mulc", "mulv", "div", "mod", "reshape", "conv", "pad", "max", "neg", "where", "cast"],
                     [6, 3, 2, 3, 0.5, 4, 4, 5, 2, 2, 1.5, 1, 2, 1])[0]
    sub = lambda: self.int_expr(depth - 1, dt)
    match kind:
      case "linear": return self.linear(dt)
      case "add": return sub() + sub()
      case "sub": return sub() - sub() if r.random() < 0.7 else sub() - self.const(dt, r.randint(-8, 8))
      case "mulc": return sub() * self.coef(dt)
      case "mulv": return sub() * self.leaf(dt)
      case "div": x = sub(); return x // self.divisor(x)
      case "mod": x = sub(); return x % self.divisor(x)
      case "reshape":
        # an index through a reshape: the outer axis with no mod, inner axes (lin // st) % s; sometimes two deep
        x = self.linear(dt) if r.random() < 0.6 else sub()
        st = self.divisor(x) if r.random() < 0.5 else r.choice(self.strides)
        out = x // st if r.random() < 0.3 else (x // st) % max(1, self.divisor(x))
        if r.random() < 0.3: out = (out * r.choice([st, max(1, abs(self.divisor(x)))]) + x % st) // r.choice([st, 2, 4]) % r.randint(1, 16)
        return out
      case "conv":
        # ((stride*y + ky - pad) * W + x) // W % H: a conv's window read back through the input's shape
        y, ky, xx = self.leaf(dt), self.leaf(dt), self.leaf(dt)
        W, H, s, p = r.choice(self.ends + [4, 7, 28]), r.choice(self.ends + [3, 5, 28]), r.choice([1, 1, 2, 3]), r.choice([0, 0, 1, 2])
        row = (y * s if s != 1 else y) + ky
        row = row - p if p else row
        lin = row * W + xx
        return lin // W % H if r.random() < 0.7 else lin % W
      case "pad":
        x = sub()
        b, s = r.randint(0, 3), r.choice(self.ends + [2, 5, 16])
        j = x - b if b else x
        guard = (j >= 0) & (j < s) if r.random() < 0.8 else (j < s)
        return guard.where(self.reshape_of(j, dt), self.const(dt, 0))
      case "max": return sub().maximum(sub() if r.random() < 0.5 else self.const(dt, r.randint(-4, 4)))
      case "neg": return -sub()
      case "where": return self.bool_expr(depth - 1, dt).where(sub(), sub())
      case "cast": return self.int_expr(depth - 1, dtypes.index).cast(dt) if dt == dtypes.int64 else sub().cast(dtypes.int64).cast(dt)
    raise AssertionError(kind)

  def reshape_of(self, j: UOp, dt: DType) -> UOp:
    r = self.rng
    if r.random() < 0.5: return j
    st = r.choice([2, 3, 4, 8] + self.ends)
    return (j // st) % r.randint(1, 8) if r.random() < 0.5 else j % st

  def bool_expr(self, depth: int, dt: DType) -> UOp:
    r = self.rng
    x = self.int_expr(depth - 1, dt)
    k = r.choice(["lt", "ge", "ne", "eq", "lt2"])
    c = self.const(dt, r.choice([0, 1, -1, r.randint(-5, 20), r.choice(self.ends), r.choice(self.strides)]))
    out = {"lt": lambda: x < c, "ge": lambda: x >= c, "ne": lambda: x.ne(c), "eq": lambda: x.eq(c), "lt2": lambda: x < self.int_expr(depth - 1, dt)}[k]()
    if depth > 1 and r.random() < 0.35:
      other = self.bool_expr(depth - 1, dt)
      out = r.choice([out & other, out | other, out.alu(Ops.XOR, other)])
    if r.random() < 0.05: out = out.alu(Ops.NEG)
    return out

# ---- the command ----
def run(n: int, seed: int, use_z3: bool, timeout_ms: int = 2000, small: bool = False, out=sys.stdout, max_print: int = 20) -> dict:
  """Check n random expressions; print a summary and a minimised repro for each distinct failure. Returns the counts."""
  gen, rng = IndexGen(seed), random.Random(seed)
  counts = {"checked": 0, "exhaustive": 0, "sampled": 0, "z3": 0, "unknown": 0, "mismatches": 0, "value": 0, "bounds": 0, "checker": 0}
  failures: list[Failure] = []
  st = time.perf_counter()
  for _ in range(n):
    e = gen.expr(small)
    f, how = check(e, use_z3, rng, timeout_ms)
    counts["checked"] += 1
    for part in how.split("+"): counts[part] += 1
    if f is not None:
      counts["mismatches"] += 1; counts[f.kind] += 1
      failures.append(f)
  counts["seconds"] = round(time.perf_counter() - st, 1)
  seen: set[str] = set()
  for f in failures[:max_print * 4]:
    m = minimise(f, use_z3)
    text = repro(m)
    key = text.split("\n  at")[0]
    if key in seen: continue
    seen.add(key)
    if len(seen) <= max_print: print(text, file=out)
  counts["distinct"] = len(seen)
  print(f"index_fuzz seed={seed}: {counts['checked']} expressions checked: {counts['z3']} proved or refuted by z3, "
        f"{counts['exhaustive']} evaluated on every assignment, {counts['sampled']} on {MAX_EXHAUSTIVE} sampled ones only; "
        f"z3 gave up on {counts['unknown']}; {counts['mismatches']} mismatches ({counts['value']} value, "
        f"{counts['bounds']} bounds, {counts['checker']} checker; {len(seen)} distinct after minimising) in {counts['seconds']} s", file=out)
  return counts

if __name__ == "__main__":
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--n", type=int, default=1000, help="how many random expressions")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--z3", action="store_true", help="prove every expression with z3 (small ones are evaluated exhaustively too)")
  ap.add_argument("--small", action="store_true", help="only expressions whose ranges have at most 4096 assignments")
  ap.add_argument("--timeout-ms", type=int, default=2000, help="z3's limit per query")
  a = ap.parse_args()
  sys.exit(1 if run(a.n, a.seed, a.z3, a.timeout_ms, a.small)["mismatches"] else 0)
