"""Patterns over UOps (`UPat`), a `PatternMatcher` that dispatches on the op, and `graph_rewrite`, which applies one to a
whole graph. Knows nothing of what any rule means."""
from __future__ import annotations
import inspect, itertools, time
from collections import defaultdict
from typing import Any, Callable, Iterable
from lucidgrad.dtype import DType
from lucidgrad.uop.ops import UOp, Ops, GroupOp
from lucidgrad.helpers import DEBUG, ContextVar

VIZ = ContextVar("VIZ", 0)

class UPat:
  """Matches a UOp by op, dtype, arg and sources. `src` as a tuple matches in order; as a list, in any order
  (commutative ops); None matches any sources. `name` binds the matched node for the rule's callback."""
  __slots__ = ("op", "dtype", "src", "arg", "name", "allow_any_len")
  def __init__(self, op: Ops | Iterable[Ops] | None = None, dtype: DType | Iterable[DType] | None = None,
               src: tuple | list | UPat | None = None, arg: Any = None, name: str | None = None, allow_any_len: bool = False):
    self.op = None if op is None else frozenset((op,) if isinstance(op, Ops) else op)
    self.dtype = None if dtype is None else frozenset((dtype,) if isinstance(dtype, DType) else dtype)
    self.src = (src,) if isinstance(src, UPat) else src
    self.arg, self.name, self.allow_any_len = arg, name, allow_any_len

  @staticmethod
  def var(name: str | None = None, dtype=None) -> UPat: return UPat(dtype=dtype, name=name)
  @staticmethod
  def cvar(name: str | None = None, dtype=None) -> UPat: return UPat(Ops.CONST, dtype=dtype, name=name)
  @staticmethod
  def const(dtype, value) -> UPat: return UPat(Ops.CONST, dtype=dtype, arg=value)

  def _bin(self, op: Ops, x, swap=False) -> UPat:
    other = x if isinstance(x, UPat) else UPat(Ops.CONST, arg=x)
    a, b = (other, self) if swap else (self, other)
    return UPat(op, src=[a, b] if op in GroupOp.Commutative else (a, b))
  def __add__(self, x): return self._bin(Ops.ADD, x)
  def __radd__(self, x): return self._bin(Ops.ADD, x, True)
  def __mul__(self, x): return self._bin(Ops.MUL, x)
  def __rmul__(self, x): return self._bin(Ops.MUL, x, True)
  def __sub__(self, x): return self._bin(Ops.SUB, x)
  def __floordiv__(self, x): return self._bin(Ops.IDIV, x)
  def __mod__(self, x): return self._bin(Ops.MOD, x)
  def __lt__(self, x): return self._bin(Ops.CMPLT, x)
  def __neg__(self): return UPat(Ops.NEG, src=(self,))
  def maximum(self, x): return self._bin(Ops.MAX, x)
  def ne(self, x): return self._bin(Ops.CMPNE, x)
  def alu(self, op: Ops, *src: UPat) -> UPat: return UPat(op, src=(self, *src))
  def __repr__(self): return f"UPat({'|'.join(o.name for o in self.op) if self.op else '*'}{', '+self.name if self.name else ''})"

  def match(self, u: UOp, store: dict[str, UOp]) -> list[dict[str, UOp]]:
    """Every way `u` matches, each as the bindings it makes on top of `store`."""
    if self.op is not None and u.op not in self.op: return []
    if self.dtype is not None and u.dtype not in self.dtype and u.dtype.scalar() not in self.dtype: return []
    if self.arg is not None and u.arg != self.arg: return []
    if self.name is not None:
      if (prev := store.get(self.name)) is None: store = {**store, self.name: u}
      elif prev is not u: return []
    return [store] if self.src is None else self._match_src(u, store)

  def _match_src(self, u: UOp, store: dict[str, UOp]) -> list[dict[str, UOp]]:
    pats = self.src
    if len(u.src) != len(pats) and not (self.allow_any_len and len(u.src) >= len(pats)): return []
    orders = itertools.permutations(pats) if isinstance(pats, list) else (pats,)
    out: list[dict[str, UOp]] = []
    for order in orders:
      stores = [store]
      for p, s in zip(order, u.src):
        stores = [m for st in stores for m in p.match(s, st)]
        if not stores: break
      out.extend(stores)
    return out

NOT_READY = object()  # a rule returns this to be retried after its siblings have been rewritten

class PatternMatcher:
  """An ordered list of (UPat, callback). `rewrite(u)` returns the first callback result that is not None; rules are
  looked up by the op of the node, so a rewrite only tries the rules that could match it."""
  def __init__(self, patterns: list[tuple[UPat, Callable]]):
    self.patterns = patterns
    self._by_op: dict[Ops, list] = defaultdict(list)
    self._any: list = []
    for pat, fn in patterns:
      entry = (pat, fn, "ctx" in inspect.signature(fn).parameters)
      if pat.op is None: self._any.append(entry)
      for op in pat.op or ():
        self._by_op[op].append(entry)
    # rules keyed on any op must still run in list order with the op-specific ones
    order = {id(p): i for i, (p, _) in enumerate(patterns)}
    self._table = {op: sorted(self._by_op[op] + self._any, key=lambda e: order[id(e[0])]) for op in Ops}
  def __add__(self, other: PatternMatcher) -> PatternMatcher: return PatternMatcher(self.patterns + other.patterns)
  def rewrite(self, u: UOp, ctx: Any = None) -> UOp | object | None:
    for pat, fn, wants_ctx in self._table[u.op]:
      for store in pat.match(u, {}):
        ret = fn(ctx=ctx, **store) if wants_ctx else fn(**store)
        if ret is not None and ret is not u:
          RewriteStats.rules_applied += 1
          return ret
    return None

class RewriteStats:
  rules_applied = 0
  nodes_visited = 0

# every graph_rewrite, recorded for the web view when VIZ is on: (name, input sink, output sink)
tracked_rewrites: list[tuple[str, UOp, UOp]] = []

class _Rewriter:
  def __init__(self, pm: PatternMatcher, ctx: Any, replace: dict[UOp, UOp] | None):
    self.pm, self.ctx, self.rep = pm, ctx, dict(replace or {})
    self.retries: dict[UOp, int] = defaultdict(int)

  def _retry_missing(self, n: UOp, stack: list, stage_entry: tuple, retry_stage: int) -> bool:
    """Sources left NOT_READY are tried again (at `retry_stage`) now that their siblings are done, then `n`."""
    missing = [s for s in n.src if s not in self.rep]
    if not missing: return False
    self.retries[n] += 1
    if self.retries[n] > 64: raise RuntimeError(f"graph_rewrite: a rule kept answering NOT_READY for sources of {n.op}")
    stack.append(stage_entry)
    stack.extend((s, retry_stage, None) for s in missing)
    return True

  def bottom_up(self, root: UOp) -> UOp:
    """Sources first, then the node (with rewritten sources), until no rule matches it."""
    rep, stack = self.rep, [(root, 0, None)]
    while stack:
      n, stage, extra = stack.pop()
      if stage == 2:  # n became extra; if extra is still NOT_READY, n stays missing and its user retries it
        if extra in rep: rep[n] = rep[extra]
        continue
      if n in rep: continue
      RewriteStats.nodes_visited += 1
      if stage == 0:
        stack.append((n, 1, None))
        stack.extend((s, 0, None) for s in reversed(n.src) if s not in rep)
        continue
      if self._retry_missing(n, stack, (n, 1, None), 1): continue
      new = n.replace(src=tuple(rep[s] for s in n.src))
      r = self.pm.rewrite(new, self.ctx)
      if r is NOT_READY: continue
      if r is None: rep[n] = rep[new] = new
      else: stack.extend([(n, 2, r), (r, 0, None)])
    if root not in rep: raise RuntimeError("graph_rewrite: the root stayed NOT_READY")
    return rep[root]

  def top_down(self, root: UOp) -> UOp:
    """The node first, until no rule matches it; then its sources; then the node again if its sources changed."""
    rep, stack = self.rep, [(root, 0, None)]
    while stack:
      n, stage, extra = stack.pop()
      if stage == 2:  # as in bottom_up
        if extra in rep: rep[n] = rep[extra]
        continue
      if n in rep: continue
      RewriteStats.nodes_visited += 1
      if stage == 0:
        m = n
        while (r := self.pm.rewrite(m, self.ctx)) is not None and r is not NOT_READY:
          if r in rep: m = rep[r]; break
          m = r
        if m in rep: rep[n] = rep[m]; continue
        stack.append((n, 3 if r is NOT_READY else 1, m))
        stack.extend((s, 0, None) for s in reversed(m.src) if s not in rep)
        continue
      m = extra
      if self._retry_missing(m, stack, (n, stage, m), 0): continue
      new = m.replace(src=tuple(rep[s] for s in m.src))
      if new is not m: stack.extend([(n, 2, new), (new, 0, None)])
      elif stage == 1: rep[n] = rep[m] = m
      # stage 3: m answered NOT_READY and nothing under it changed, so it stays missing and its user retries it
    if root not in rep: raise RuntimeError("graph_rewrite: the root stayed NOT_READY")
    return rep[root]

def _run(sink: UOp, pm: PatternMatcher, ctx, top_down: bool, name: str | None, replace) -> _Rewriter:
  rw = _Rewriter(pm, ctx, replace)
  st, before = time.perf_counter(), RewriteStats.rules_applied
  out = rw.top_down(sink) if top_down else rw.bottom_up(sink)
  if DEBUG >= 6: print(f"rewrite {name or 'graph_rewrite'}: {len(sink.toposort)} -> {len(out.toposort)} nodes, "
                       f"{RewriteStats.rules_applied-before} rules applied in {(time.perf_counter()-st)*1e3:.2f} ms")
  if VIZ and name != "substitute": tracked_rewrites.append((name or "graph_rewrite", sink, out))
  return rw

def graph_rewrite(sink: UOp, pm: PatternMatcher, ctx: Any = None, top_down: bool = False, name: str | None = None,
                  replace: dict[UOp, UOp] | None = None) -> UOp:
  """The graph with `pm` applied everywhere until nothing matches. `replace` seeds fixed substitutions."""
  rw = _run(sink, pm, ctx, top_down, name, replace)
  return rw.rep[sink]

def graph_rewrite_map(sink: UOp, pm: PatternMatcher, ctx: Any = None, top_down: bool = False, name: str | None = None,
                      replace: dict[UOp, UOp] | None = None, visited_only: bool = False) -> dict[UOp, UOp]:
  """Like graph_rewrite, but returns old -> new for every node of the input graph, so holders of old nodes can follow.
  visited_only: only for the nodes the rewrite reached (a top-down rewrite never reaches below a node it replaced)."""
  rw = _run(sink, pm, ctx, top_down, name, replace)
  if visited_only: return rw.rep
  # a top-down rewrite never visits the sources of a node it replaced: rewrite those on their own
  rest = rw.top_down if top_down else rw.bottom_up
  return {n: rw.rep[n] if n in rw.rep else rest(n) for n in sink.toposort}
