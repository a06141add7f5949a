"""Patterns over UOps (`UPat`), a `PatternMatcher` that dispatches on the op, and `graph_rewrite`, which applies one to a
whole graph. Knows nothing of what any rule means."""
from __future__ import annotations
import functools, inspect, itertools, time
from collections import defaultdict
from typing import Any, Callable, Iterable
from lucidgrad.dtype import DType
from lucidgrad.uop.ops import UOp, Ops, GroupOp, _OP_BIT
from lucidgrad.helpers import DEBUG, ContextVar

VIZ = ContextVar("VIZ", 0)

class UPat:
  """Matches a UOp by op, dtype, arg and sources. `src` as a tuple matches in order; as a list, in any order
  (commutative ops); None matches any sources. `name` binds the matched node for the rule's callback."""
  __slots__ = ("op", "dtype", "src", "arg", "name", "allow_any_len", "early")
  def __init__(self, op: Ops | Iterable[Ops] | None = None, dtype: DType | Iterable[DType] | None = None,
               src: tuple | list | UPat | None = None, arg: Any = None, name: str | None = None, allow_any_len: bool = False):
    self.op = None if op is None else frozenset((op,) if isinstance(op, Ops) else op)
    self.dtype = None if dtype is None else frozenset((dtype,) if isinstance(dtype, DType) else dtype)
    self.src = (src,) if isinstance(src, UPat) else src
    self.arg, self.name, self.allow_any_len = arg, name, allow_any_len
    # ops that must be among a node's direct sources for it to match: a matcher skips the pattern without matching when
    # one is missing (most symbolic rules need a CONST source, and most nodes have none)
    self.early = frozenset(next(iter(p.op)) for p in self.src or () if p.op is not None and len(p.op) == 1)

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
    if self.dtype is not None and u.dtype not in self.dtype and (u.dtype.count == 1 and not u.dtype.ptr or u.dtype.scalar() not in self.dtype): return []
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

def _interpreted_rule(pat: UPat, fn: Callable, wants_ctx: bool) -> Callable:
  def rule(u: UOp, ctx: Any):
    for store in pat.match(u, {}):
      ret = fn(ctx=ctx, **store) if wants_ctx else fn(**store)
      if ret is not None and ret is not u: return ret
    return None
  return rule

def compile_rule(pat: UPat, fn: Callable, wants_ctx: bool, max_paths: int = 64) -> Callable:
  """`rule(u, ctx)`: fn's first answer that is not None (nor u) over the ways `u` matches `pat`, in the order
  `pat.match` lists them -- as straight Python code: each check inline, each order of a commutative source list
  unrolled, names bound to source expressions, fn called as soon as a match is found. `u`'s op is taken as matching:
  the matcher dispatches on it. A pattern with more than `max_paths` orders, or a name that is no identifier, is
  matched by `UPat.match` instead."""
  consts: dict[str, Any] = {"fn": fn}
  def const(v: Any) -> str:
    consts[name := f"k{len(consts)}"] = v
    return name
  lines, paths = ["def rule(u, ctx):"], 0
  def emit(todo: list[tuple[UPat, str]], bound: dict[str, str], depth: int):
    nonlocal paths
    if not todo:
      paths += 1
      args = [f"{n}={x}" for n, x in bound.items()] + (["ctx=ctx"] if wants_ctx else [])
      lines.append(f"{'  ' * depth}ret = fn({', '.join(args)})")
      lines.append(f"{'  ' * depth}if ret is not None and ret is not u: return ret")
      return
    (p, x), rest = todo[0], todo[1:]
    conds, bound = [], dict(bound)
    if p.op is not None and x != "u": conds.append(f"{x}.op is {const(next(iter(p.op)))}" if len(p.op) == 1 else f"{x}.op in {const(p.op)}")
    if p.dtype is not None:
      d = const(p.dtype)
      conds.append(f"({x}.dtype in {d} or ({x}.dtype.count != 1 or {x}.dtype.ptr) and {x}.dtype.scalar() in {d})")
    if p.arg is not None: conds.append(f"not ({x}.arg != {const(p.arg)})")
    if p.name is not None:
      if p.name in bound: conds.append(f"{x} is {bound[p.name]}")
      else: bound[p.name] = x
    if p.src is not None: conds.append(f"len({x}.src) {'>=' if p.allow_any_len else '=='} {len(p.src)}")
    if conds:
      lines.append(f"{'  ' * depth}if {' and '.join(conds)}:")
      depth += 1
    if p.src is None: return emit(rest, bound, depth)
    for order in itertools.permutations(p.src) if isinstance(p.src, list) else (tuple(p.src),):
      emit([(q, f"{x}.src[{i}]") for i, q in enumerate(order)] + rest, bound, depth)
  emit([(pat, "u")], {}, 1)
  def names(p: UPat) -> list[str]: return ([p.name] if p.name is not None else []) + [n for q in p.src or () for n in names(q)]
  if paths > max_paths or not all(n.isidentifier() for n in names(pat)): return _interpreted_rule(pat, fn, wants_ctx)
  lines.append("  return None")
  exec("\n".join(lines), consts)
  return consts["rule"]

def _takes_ctx(fn: Callable) -> bool:
  """Whether the callback has a `ctx` parameter: read off its code object (inspect.signature costs ~20 us a rule at
  import), unless it wraps or binds another function, which only inspect sees through."""
  if (code := getattr(fn, "__code__", None)) is None or hasattr(fn, "__wrapped__"): return "ctx" in inspect.signature(fn).parameters
  return "ctx" in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]

class _RuleTable(dict):
  """A matcher's op -> [(rule, early)] in list order (rules on any op among the op-specific ones), each op's entry made
  the first time a node of that op is looked up, compiling the rules it needs then: a process compiles only the rules
  of the ops it meets (all of codegen's cost ~15 ms of a first call). It holds no reference to its matcher (a cycle
  would outlive the matchers made per call)."""
  def __init__(self, patterns: list[tuple[UPat, Callable]], wants_ctx: list[bool]):
    super().__init__()
    self.patterns, self.wants_ctx = patterns, wants_ctx
    self.compiled: dict[int, Callable] = {}  # rule index -> compile_rule's function
  def __missing__(self, op: Ops) -> list[tuple[Callable, frozenset]]:
    out = []
    for i, (pat, fn) in enumerate(self.patterns):
      if pat.op is not None and op not in pat.op: continue
      if (rule := self.compiled.get(i)) is None: rule = self.compiled[i] = compile_rule(pat, fn, self.wants_ctx[i])
      out.append((rule, pat.early))
    self[op] = out
    return out

class PatternMatcher:
  """An ordered list of (UPat, callback). `rewrite(u)` returns the first callback result that is not None; rules are
  looked up by the op of the node, so a rewrite only tries the rules that could match it.
  A rule must be a function of the node it is given (and ctx): graph_rewrite remembers which nodes no rule of a
  matcher rewrites, and skips them (and everything under them) the next time, in any graph."""
  def __init__(self, patterns: list[tuple[UPat, Callable]]):
    self.patterns = patterns
    wants_ctx = [_takes_ctx(fn) for _, fn in patterns]
    self._table = _RuleTable(patterns, wants_ctx)
    # the ops some rule is tried on, as UOp.ops_below bits: a graph with none of them is left as it is, unvisited
    ops = set(Ops) if any(p.op is None for p, _ in patterns) else set().union(*[p.op for p, _ in patterns])
    self.op_mask = sum(_OP_BIT[op] for op in ops)
    # without ctx a rule's answer depends on the node alone, so a node it left alone stays left alone (see bottom_up)
    self.remembers = not any(wants_ctx)
  def __add__(self, other: PatternMatcher) -> PatternMatcher:
    both = PatternMatcher(self.patterns + other.patterns)  # sharing the rules either part compiled already
    both._table.compiled.update({**self._table.compiled, **{i + len(self.patterns): r for i, r in other._table.compiled.items()}})
    return both
  def rewrite(self, u: UOp, ctx: Any = None) -> UOp | object | None:
    src_ops = None
    for rule, early in self._table[u.op]:
      if early:
        if src_ops is None: src_ops = {s.op for s in u.src}
        if not early <= src_ops: continue
      if (ret := rule(u, ctx)) is not None:
        RewriteStats.rules_applied += 1
        return ret
    return None

class RewriteStats:
  """Counters over every graph_rewrite, and the time spent in each named pass (`timed`): `passes[name]` is
  [calls, seconds, nodes visited], seconds of this process's CPU time (on a shared machine other jobs inflate wall time);
  both exclude passes nested inside (a graph_rewrite inside an @timed function, say)."""
  rules_applied = 0
  nodes_visited = 0
  passes: dict[str, list] = defaultdict(lambda: [0, 0.0, 0])
  _nested: list[list] = []  # [seconds, nodes visited] of passes nested in the ones running, one entry per running pass
  @staticmethod
  def reset():
    RewriteStats.rules_applied = RewriteStats.nodes_visited = 0
    RewriteStats.passes.clear()

class timed:
  """`with timed("linearize"):` adds the block's time to RewriteStats.passes under that name (see RewriteStats);
  `@timed("linearize")` does the same for every call of a function."""
  __slots__ = ("name", "start", "visited")
  def __init__(self, name: str): self.name = name
  def __call__(self, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def run(*args, **kwargs):
      with timed(self.name): return fn(*args, **kwargs)
    return run
  def __enter__(self):
    self.start, self.visited = time.process_time(), RewriteStats.nodes_visited
    RewriteStats._nested.append([0.0, 0])
    return self
  def __exit__(self, *exc):
    took, visited = time.process_time() - self.start, RewriteStats.nodes_visited - self.visited
    nested = RewriteStats._nested.pop()
    if RewriteStats._nested: RewriteStats._nested[-1][0] += took; RewriteStats._nested[-1][1] += visited
    entry = RewriteStats.passes[self.name]
    entry[0] += 1; entry[1] += took - nested[0]; entry[2] += visited - nested[1]
    return False

class _Rewriter:
  def __init__(self, pm: PatternMatcher, ctx: Any, replace: dict[UOp, UOp] | None):
    self.pm, self.ctx, self.rep = pm, ctx, dict(replace or {})
    self.retries: dict[UOp, int] = defaultdict(int)
    # a result of this matcher is marked as its fixed point, and a marked node is not visited again; seeds from
    # `replace` are not fixed points, so a rewrite with seeds neither marks nor skips
    self.memo = pm if pm.remembers and ctx is None and not replace else None
    # a graph holding no op that a rule is tried on is its own rewrite -- unless a seed from `replace` is inside it
    self.op_mask = pm.op_mask if not replace else -1

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
    """Sources first, then the node (with rewritten sources), until no rule matches it. A node this matcher has left
    alone before is its own rewrite, and so is everything under it: it is not visited (the `_fixed_in` marks)."""
    rep, pm, ctx, memo, table, op_mask = self.rep, self.pm, self.ctx, self.memo, self.pm._table, self.op_mask
    stack: list[tuple] = [(root, 0, None)]
    push, pop, visited = stack.append, stack.pop, 0
    while stack:
      n, stage, extra = pop()
      if stage == 0:
        if n in rep: continue
        if not n.ops_below & op_mask or (memo is not None and memo in n._fixed_in): rep[n] = n; continue
        visited += 1
        push((n, 1, None))
        for s in reversed(n.src):
          if s not in rep: push((s, 0, None))
        continue
      if stage == 2:  # n became extra; if extra is still NOT_READY, n stays missing and its user retries it
        if extra in rep: rep[n] = rep[extra]
        continue
      if n in rep: continue
      try: new_src = tuple(map(rep.__getitem__, n.src))
      except KeyError:
        self._retry_missing(n, stack, (n, 1, None), 1)
        continue
      new = n if new_src == n.src else UOp(n.op, n.dtype, new_src, n.arg)  # == on UOps is identity
      r = pm.rewrite(new, ctx) if table[new.op] else None
      if r is NOT_READY: continue
      if r is None:
        rep[n] = rep[new] = new
        if memo is not None: new._fixed_in += (memo,)
      else: stack.extend([(n, 2, r), (r, 0, None)])
    RewriteStats.nodes_visited += visited
    if root not in rep: raise RuntimeError("graph_rewrite: the root stayed NOT_READY")
    return rep[root]

  def top_down(self, root: UOp) -> UOp:
    """The node first, until no rule matches it; then its sources; then the node again if its sources changed."""
    rep, pm, ctx, op_mask = self.rep, self.pm, self.ctx, self.op_mask
    stack: list[tuple] = [(root, 0, None)]
    push, pop, visited = stack.append, stack.pop, 0
    while stack:
      n, stage, extra = pop()
      if stage == 2:  # as in bottom_up
        if extra in rep: rep[n] = rep[extra]
        continue
      if n in rep: continue
      if stage == 0:
        if not n.ops_below & op_mask: rep[n] = n; continue
        visited += 1
        m = n
        while (r := pm.rewrite(m, ctx)) is not None and r is not NOT_READY:
          if r in rep: m = rep[r]; break
          m = r
        if m in rep: rep[n] = rep[m]; continue
        push((n, 3 if r is NOT_READY else 1, m))
        for s in reversed(m.src):
          if s not in rep: push((s, 0, None))
        continue
      m = extra
      try: new_src = tuple(map(rep.__getitem__, m.src))
      except KeyError:
        self._retry_missing(m, stack, (n, stage, m), 0)
        continue
      if new_src != m.src: stack.extend([(n, 2, new := UOp(m.op, m.dtype, new_src, m.arg)), (new, 0, None)])  # != on UOps is identity
      elif stage == 1: rep[n] = rep[m] = m
      # stage 3: m answered NOT_READY and nothing under it changed, so it stays missing and its user retries it
    RewriteStats.nodes_visited += visited
    if root not in rep: raise RuntimeError("graph_rewrite: the root stayed NOT_READY")
    return rep[root]

class _RecordingMatcher:
  """Stands in for a matcher inside a rewriter that records (VIZ): the same rules tried in the same order as
  PatternMatcher.rewrite, and each answer kept as a step (rule, node, result), the first `limit` of them. The matcher's
  own rewrite -- the hot path -- has no check of VIZ at all."""
  def __init__(self, pm: PatternMatcher, limit: int):
    self._table, self.steps, self.limit, self.dropped = pm._table, [], limit, 0
  def rewrite(self, u: UOp, ctx: Any = None) -> UOp | object | None:
    src_ops = None
    for rule, early in self._table[u.op]:
      if early:
        if src_ops is None: src_ops = {s.op for s in u.src}
        if not early <= src_ops: continue
      if (ret := rule(u, ctx)) is not None:
        RewriteStats.rules_applied += 1
        if ret is not NOT_READY:
          if len(self.steps) < self.limit: self.steps.append((rule, u, ret))
          else: self.dropped += 1
        return ret
    return None

class _RecordingRewriter(_Rewriter):
  """A _Rewriter whose matcher records every rule it applies (`self.pm.steps`); the `_fixed_in` marks stay the real
  matcher's (self.memo), so what it skips is what a plain rewrite skips."""
  def __init__(self, pm: PatternMatcher, ctx: Any, replace: dict[UOp, UOp] | None, limit: int):
    super().__init__(pm, ctx, replace)
    self.matcher, self.pm = pm, _RecordingMatcher(pm, limit)

def _run(sink: UOp, pm: PatternMatcher, ctx, top_down: bool, name: str | None, replace, viz=False) -> _Rewriter:
  # with VIZ a rewriter that records, chosen here once per rewrite: the loops and PatternMatcher.rewrite stay as they are
  rw = _RecordingRewriter(pm, ctx, replace, _viz().steps_left()) if viz else _Rewriter(pm, ctx, replace)
  before = RewriteStats.rules_applied
  with timed(name or "graph_rewrite") as t:
    out = rw.top_down(sink) if top_down else rw.bottom_up(sink)
  if DEBUG >= 6: print(f"rewrite {name or 'graph_rewrite'}: {len(sink.toposort)} -> {len(out.toposort)} nodes, "
                       f"{RewriteStats.rules_applied-before} rules applied in {(time.process_time()-t.start)*1e3:.2f} ms")
  return rw

def _viz():
  """The recorder (lucidgrad/viz/record.py), imported only once VIZ is on."""
  from lucidgrad.viz import record
  return record

def _record(rw: _Rewriter, sink: UOp, name: str | None, top_down: bool, replace: dict[UOp, UOp] | None):
  assert isinstance(rw, _RecordingRewriter)
  _viz().record_rewrite(name or "graph_rewrite", top_down, rw.matcher, sink, rw.rep[sink], rw.pm.steps, rw.pm.dropped, replace)

def graph_rewrite(sink: UOp, pm: PatternMatcher, ctx: Any = None, top_down: bool = False, name: str | None = None,
                  replace: dict[UOp, UOp] | None = None) -> UOp:
  """The graph with `pm` applied everywhere until nothing matches. `replace` seeds fixed substitutions.
  A bottom-up rewrite by a matcher whose rules depend on the node alone is remembered on the root (`_rewritten`), so
  a graph rewritten again (a kernel's lowered graph, simplified for every program BEAM builds of it) costs nothing."""
  if VIZ.value:  # every rewrite runs and is recorded: no memo read or kept
    _record(rw := _run(sink, pm, ctx, top_down, name, replace, True), sink, name, top_down, replace)
    return rw.rep[sink]
  memo = None if ctx is not None or replace or top_down or not pm.remembers else sink.__dict__.get("_rewritten")
  if memo is not None and (out := memo.get(pm)) is not None: return out
  rw = _run(sink, pm, ctx, top_down, name, replace)
  if rw.memo is not None and not top_down and rw.rep[sink] is not sink: sink.__dict__.setdefault("_rewritten", {})[pm] = rw.rep[sink]
  return rw.rep[sink]

def graph_rewrite_map(sink: UOp, pm: PatternMatcher, ctx: Any = None, top_down: bool = False, name: str | None = None,
                      replace: dict[UOp, UOp] | None = None, visited_only: bool = False) -> dict[UOp, UOp]:
  """Like graph_rewrite, but returns old -> new for every node of the input graph, so holders of old nodes can follow.
  visited_only: only for the nodes the rewrite reached (a top-down rewrite never reaches below a node it replaced)."""
  rw = _run(sink, pm, ctx, top_down, name, replace, viz := bool(VIZ.value))
  if visited_only: out = rw.rep
  else:
    # a top-down rewrite never visits the sources of a node it replaced: rewrite those on their own
    rest = rw.top_down if top_down else rw.bottom_up
    out = {n: rw.rep[n] if n in rw.rep else rest(n) for n in sink.toposort}
  if viz: _record(rw, sink, name, top_down, replace)
  return out
