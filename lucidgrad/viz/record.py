"""The recorder behind VIZ: every graph rewrite as a pass of steps (rule, node, result, the whole graph after it), and
the groups they nest in, kept as plain data (docs/design/0031-rewrite-tracking.md; the format is /VIZFORMAT version 1).
Nodes are written to a table as they are recorded: the recording holds no UOp, so no buffer is kept alive by it."""
from __future__ import annotations
import functools, inspect, itertools, os, sys
from typing import Any, Callable
from lucidgrad.helpers import getenv
from lucidgrad.uop.ops import UOp, _OP_BIT
from lucidgrad.uop.pattern import UPat, PatternMatcher

# caps (docs/design/0031): steps stored per pass, steps stored in all, nodes in the table. A pass past the step caps keeps
# its before/after and counts what it did not store; once the node table is full, later passes are counted, not stored
MAX_PASS_STEPS = getenv("VIZ_MAX_PASS_STEPS", 1000)
MAX_STEPS = getenv("VIZ_MAX_STEPS", 200_000)
MAX_NODES = getenv("VIZ_MAX_NODES", 1_000_000)
TEXT_CHARS = 200  # a node's arg and a rule's pattern, as text, are cut to this
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # paths of our files are relative to this

def shorten(text: str, n: int = TEXT_CHARS) -> str: return text if len(text) <= n else text[:n - 3] + "..."

class Recording:
  """One recording: the node table, the groups (group 0 is the program), the passes, and what the caps left out."""
  _gens = itertools.count()
  def __init__(self):
    self.gen = next(Recording._gens)  # a node's uid is kept on the node with the recording it belongs to
    self.uids = itertools.count()
    self.nodes: dict[int, tuple] = {}  # uid -> (op, dtype, arg, src uids)
    self.groups: list[dict] = [{"id": 0, "parent": None, "kind": "program", "name": os.path.basename(sys.argv[0]) or "python",
                                "info": {"argv": list(sys.argv), "pid": os.getpid()}}]
    self.passes: list[dict] = []
    self.open: list[int] = []   # ids of the groups open now, innermost last
    self.steps = 0              # steps stored
    self.pass_steps_dropped = 0  # steps the step caps left out of stored passes
    self.passes_dropped = self.passes_dropped_steps = 0  # passes not stored once the node table was full, and their steps
    self.full = False
    self.built: dict[int, int] = {}  # id of a ProgramSpec -> the kernel group whose codegen built it

rec = Recording()

def reset():
  """Start a new, empty recording."""
  global rec
  rec = Recording()

def steps_left() -> int:
  """How many steps the next pass may store."""
  return 0 if rec.full else max(0, min(MAX_PASS_STEPS, MAX_STEPS - rec.steps))

# ---- groups ----
def open_group(kind: str, name: str, info: dict) -> dict | None:
  """A new group under the innermost open one, now open itself; None once the recording is full."""
  if rec.full: return None
  g = {"id": len(rec.groups), "parent": rec.open[-1] if rec.open else 0, "kind": kind, "name": name, "info": info}
  rec.groups.append(g)
  rec.open.append(g["id"])
  return g

def close_group(g: dict | None):
  if g is not None and rec.open and rec.open[-1] == g["id"]: rec.open.pop()
  elif g is not None and g["id"] in rec.open: rec.open.remove(g["id"])  # closed out of order (an exception): still closed

# ---- nodes ----
def dtype_text(dt) -> str: return str(dt).removeprefix("dtypes.")

def uid(u: UOp) -> int:
  """`u`'s uid in the table, writing it and the nodes below it that are not there yet."""
  gen = rec.gen
  if (t := u.__dict__.get("_viz")) is not None and t[0] == gen: return t[1]
  stack = [u]
  while stack:
    n = stack[-1]
    if (t := n.__dict__.get("_viz")) is not None and t[0] == gen: stack.pop(); continue
    if missing := [s for s in n.src if (t := s.__dict__.get("_viz")) is None or t[0] != gen]:
      stack.extend(missing)
      continue
    stack.pop()
    i = next(rec.uids)
    rec.nodes[i] = (n.op.name, dtype_text(n.dtype), shorten(repr(n.arg)), [s.__dict__["_viz"][1] for s in n.src])
    n.__dict__["_viz"] = (gen, i)
  return u.__dict__["_viz"][1]

# ---- rules: their pattern as text and where their function is ----
@functools.lru_cache(maxsize=4096)
def rule_text(pat: UPat) -> str:
  """The pattern as the UPat(...) call that would build it, cut to TEXT_CHARS."""
  def text(p: UPat) -> str:
    parts = ["|".join(sorted(o.name for o in p.op))] if p.op else []
    if p.dtype is not None: parts.append("dtype=" + "|".join(sorted(dtype_text(d) for d in p.dtype)))
    if p.arg is not None: parts.append(f"arg={p.arg!r}")
    if p.name is not None: parts.append(f"name={p.name!r}")
    if p.src is not None:
      inner = ", ".join(text(q) for q in p.src)
      parts.append(f"src=[{inner}]" if isinstance(p.src, list) else f"src=({inner}{',' if len(p.src) == 1 else ''})")
    if p.allow_any_len: parts.append("allow_any_len=True")
    return f"UPat({', '.join(parts)})"
  return shorten(text(pat))

def code_loc(code) -> tuple[str, str]:
  """(file:line, function name) of a code object; our files relative to the repository root."""
  path = os.path.abspath(code.co_filename)
  if path.startswith(ROOT + os.sep): path = os.path.relpath(path, ROOT).replace(os.sep, "/")
  return f"{path}:{code.co_firstlineno}", code.co_name

def fn_loc(fn: Callable) -> tuple[str, str]:
  """Where a rule's callback is defined: (file:line, name), through functools.partial, wraps and bound methods."""
  for _ in range(8):
    if isinstance(fn, functools.partial): fn = fn.func
    elif hasattr(fn, "__wrapped__"): fn = inspect.unwrap(fn)
    elif hasattr(fn, "__func__"): fn = fn.__func__
    else: break
  if (code := getattr(fn, "__code__", None)) is None: return "?", getattr(fn, "__name__", type(fn).__name__)
  return code_loc(code)

def caller_loc() -> tuple[str, str]:
  """(file:line, function) of the nearest caller outside pattern.py and this package: where a rewrite was asked for."""
  here = (os.path.join("lucidgrad", "uop", "pattern.py"), os.path.join("lucidgrad", "viz") + os.sep)
  f = sys._getframe(1)
  while f is not None and any(h in f.f_code.co_filename for h in here): f = f.f_back
  if f is None: return "?", "?"
  loc, name = code_loc(f.f_code)
  return f"{loc.rsplit(':', 1)[0]}:{f.f_lineno}", name

# ---- the graph after each step ----
def _propagate(root: UOp, done: dict[UOp, UOp], mask: int) -> UOp:
  """`root` with every node that an earlier step rewrote replaced by its result, to a fixed point: a result's own graph
  is looked through too, and a node rebuilt on rewritten sources is looked up again (the rewriter does the same:
  a result that reads a node rewritten before reads its rewrite). `mask`: the op bits of done's keys."""
  memo: dict[UOp, UOp] = {}
  busy: set[UOp] = set()
  def fix(x: UOp) -> UOp:
    if (y := memo.get(x)) is not None: return y
    if not x.ops_below & mask or x in busy: return x  # busy: a result that holds the node it replaced stays as it is
    busy.add(x)
    y, hops = x, 0
    while (nxt := done.get(y)) is not None and hops < 64: y, hops = nxt, hops + 1
    if y is not x: z = fix(y)
    else:
      src = [fix(s) for s in x.src]
      z = x if all(a is b for a, b in zip(src, x.src)) else UOp(x.op, x.dtype, tuple(src), x.arg)
      if z is not x and z in done: z = fix(z)
    busy.discard(x)
    memo[x] = z
    return z
  old = sys.getrecursionlimit()
  sys.setrecursionlimit(max(old, 200_000))  # graphs are deep; Python-to-Python calls use no C stack (3.11+)
  try: return fix(root)
  finally: sys.setrecursionlimit(old)

class _Graph:
  """A graph kept with each node's users, so that replacing one node rebuilds only the nodes above it: `refs` counts the
  edges into a node (the root has one more), `users` who they come from; a node no edge reaches any more leaves."""
  def __init__(self, root: UOp):
    self.root, self.refs, self.users = root, {}, {}
    self._ref(root, None)

  def _ref(self, u: UOp, user: UOp | None):
    stack = [(u, user)]
    while stack:
      x, p = stack.pop()
      if x not in self.refs:
        self.refs[x], self.users[x] = 0, {}
        stack.extend((s, x) for s in x.src)
      self.refs[x] += 1
      if p is not None: self.users[x][p] = self.users[x].get(p, 0) + 1

  def _unref(self, u: UOp, user: UOp | None):
    stack = [(u, user)]
    while stack:
      x, p = stack.pop()
      self.refs[x] -= 1
      if p is not None and (left := self.users[x][p] - 1): self.users[x][p] = left
      elif p is not None: del self.users[x][p]
      if not self.refs[x]:
        del self.refs[x], self.users[x]
        stack.extend((s, x) for s in x.src)

  def replace(self, m: UOp, r: UOp):
    """`m` replaced by `r` wherever it occurs (r's own graph taken as it is, as UOp.substitute does)."""
    above, stack = set(), [m]
    while stack:
      for p in self.users[stack.pop()]:
        if p not in above: above.add(p); stack.append(p)
    order, seen, walk = [], set(), [(self.root, False)]  # the nodes above m, sources first
    while walk:
      x, ready = walk.pop()
      if ready: order.append(x); continue
      if x in seen or x not in above: continue
      seen.add(x)
      walk.append((x, True))
      walk.extend((s, False) for s in x.src)
    new = {m: r}
    for x in order: new[x] = UOp(x.op, x.dtype, tuple([new.get(s, s) for s in x.src]), x.arg)
    root = new.get(self.root, self.root)
    self._ref(root, None)
    self._unref(self.root, None)
    self.root = root

class _TopDown:
  """The graph a top-down rewrite has made after some steps: `before` with each node a step matched replaced by its
  result (and that result's graph walked the same way), nodes above rebuilt. A top-down rewrite matches a node before
  its sources are rewritten, so a step's node is a node of `before` (or of an earlier result), not of the graph after
  the step before. The step's own result is shown as it was returned; results of earlier steps are carried into it from
the next step on. Each node's value is kept with the nodes that used it, so a step recomputes only those above it."""
  def __init__(self, before: UOp):
    self.before, self.done, self.memo, self.users, self.raw = before, {}, {}, {}, None
    self.root = self.value(before)

  def value(self, x: UOp) -> UOp:
    """x's node in the graph: a node a step matched is its result's value; any other is rebuilt on its sources' values,
    and if that rebuilt node was matched by a step (the rewriter matches a node again once its sources changed), its
    result's value. A result that holds the node it replaced is left as it is there (`active`: a cycle)."""
    memo, done, users, active = self.memo, self.done, self.users, set()
    def use(d: UOp, n: UOp) -> UOp:
      if (us := users.get(d)) is None: users[d] = {n}
      else: us.add(n)
      return memo.get(d, d)
    stack = [x]
    while stack:
      n = stack[-1]
      if n in memo: stack.pop(); continue
      if (d := done.get(n)) is not None:
        if n is self.raw: val = d  # this step's result as it returned it; earlier results are carried into it next step
        elif d not in memo and d not in active: active.add(n); stack.append(d); continue
        else: val = use(d, n)
      else:
        if missing := [s for s in n.src if s not in memo and s not in active]:
          active.add(n); stack.extend(missing); continue
        src = [use(s, n) for s in n.src]
        z = n if all(a is b for a, b in zip(src, n.src)) else UOp(n.op, n.dtype, tuple(src), n.arg)
        if z is not n and z in done:
          if z not in memo and z not in active: active.add(n); stack.append(z); continue
          val = use(z, n)
        else: val = z
      stack.pop()
      active.discard(n)
      memo[n] = val
    return memo[x]

  def step(self, m: UOp, r: UOp) -> UOp:
    if m in self.done or r is m: return self.root
    self.done[m] = r
    stale, stack = set(), [m] if self.raw is None else [m, self.raw]  # their values, and all computed from them, change
    self.raw = m
    while stack:
      if (n := stack.pop()) not in stale:
        stale.add(n)
        stack.extend(self.users.get(n, ()))
    for n in stale:
      self.memo.pop(n, None)
      self.users.pop(n, None)  # who used it is found again as they are recomputed
    self.root = self.value(self.before)
    return self.root

def step_graphs(before: UOp, pairs: list[tuple[UOp, UOp]], top_down: bool = False) -> list[UOp]:
  """The whole graph after each step (node, result): the graph after the step before with this step's node replaced by
  its result wherever it occurs. Where the node is not in that graph -- it was rebuilt since on sources that earlier
  steps rewrote, which the rewriter does without a rule -- the earlier results are carried into the graph first.
  Replaying the pairs this way from `before` ends at the rewrite's output (tests/test_viz_record.py checks it)."""
  if top_down:
    td = _TopDown(before)
    return [td.step(m, r) for m, r in pairs]
  done: dict[UOp, UOp] = {}
  g, mask, out = _Graph(before), 0, []
  for m, r in pairs:
    if m not in g.refs and m in done:  # matched again where it was reached once more; the graph has its first answer
      out.append(g.root)
      continue
    if m not in g.refs: g = _Graph(_propagate(g.root, done, mask))
    if m in g.refs: g.replace(m, r)
    done[m], mask = r, mask | _OP_BIT[m.op]
    out.append(g.root)
  return out

# ---- passes ----
def _add_pass(name: str, top_down: bool, before: UOp, after: UOp, steps: list[tuple], dropped: int, rewrite: bool):
  """steps: (rule text, loc, fn name, node, result, graph) each, UOps still; written to the table here."""
  g = open_group("pass", name, {})
  close_group(g)
  assert g is not None
  rec.passes.append({"group": g["id"], "name": name, "top_down": top_down, "before": uid(before), "after": uid(after),
                     "steps": [{"rule": rule, "loc": loc, "fn": fn, "node": uid(n), "result": uid(r), "graph": uid(gr)}
                               for rule, loc, fn, n, r, gr in steps],
                     "steps_dropped": dropped, "rewrite": rewrite})
  rec.steps += len(steps)
  rec.pass_steps_dropped += dropped
  if len(rec.nodes) >= MAX_NODES: rec.full = True

def _dropped(steps: int) -> bool:
  if not rec.full: return False
  rec.passes_dropped += 1
  rec.passes_dropped_steps += steps
  return True

def record_rewrite(name: str, top_down: bool, pm: PatternMatcher, before: UOp, after: UOp, raw: list[tuple], dropped: int,
                   replace: dict[UOp, UOp] | None):
  """A graph_rewrite that ran with VIZ: raw holds (compiled rule, node, result) per rule applied, in order; `dropped`
  more were not kept (the caps). A seed of `replace` that the graph holds is a step of its own, first."""
  if _dropped(len(raw) + dropped): return
  index = {rule: i for i, rule in pm._table.compiled.items()}
  pairs, meta = [], []
  if replace:
    below = set(before.toposort)
    loc, fn = caller_loc()
    for k, v in replace.items():
      if k in below and k is not v: pairs.append((k, v)); meta.append(("replace (a substitution given to graph_rewrite)", loc, fn))
  for rule, n, r in raw:
    pat, cb = pm.patterns[index[rule]]
    pairs.append((n, r)); meta.append((rule_text(pat), *fn_loc(cb)))
  keep = max(0, min(len(pairs), steps_left()))
  dropped += len(pairs) - keep
  pairs, meta = pairs[:keep], meta[:keep]
  graphs = step_graphs(before, pairs, top_down)
  _add_pass(name, top_down, before, after, [(*m, n, r, g) for m, (n, r), g in zip(meta, pairs, graphs)], dropped, True)

def record_pass(name: str, before: UOp, after: UOp, steps: list[tuple[str, Callable, UOp, UOp, UOp]] = ()):
  """A pass that is no graph_rewrite (scheduling decisions, expansion, linearize, ...): its input and output graphs, and
  any steps as (rule text, the function that made the decision, node, result, graph)."""
  if _dropped(len(steps)): return
  keep = min(len(steps), steps_left())
  _add_pass(name, False, before, after, [(text, *fn_loc(fn), n, r, g) for text, fn, n, r, g in steps[:keep]], len(steps) - keep, False)

# ---- kernels ----
def opt_text(o) -> str: return f"{o.op.name} axis={o.axis} amount={o.amount}"

def kernel_info(spec, reason: str, device: str, has_local: bool) -> dict[str, Any]:
  """A kernel group's info from its ProgramSpec (VIZFORMAT.md)."""
  return {"reason": reason, "device": device, "kind": "kernel", "source": spec.src, "opts": [opt_text(o) for o in spec.opts],
          "global": [int(x) for x in spec.global_size], "local": [int(x) for x in spec.local_size] if has_local else None,
          "flops": int(spec.flops), "bytes": int(spec.mem_bytes), "threads": int(spec.threads)}

def note_build(g: dict | None, spec) -> None:
  """Kernel group `g` ran codegen for `spec`, or (a spec built before) points at the group that did."""
  if g is None: return
  if (first := rec.built.get(id(spec))) is None: rec.built[id(spec)] = g["id"]
  else: g["info"]["codegen"] = f"built earlier in this recording: group {first}"

def truncation() -> str | None:
  """The banner text: what the caps left out, or None."""
  parts = []
  if rec.passes_dropped:
    parts.append(f"recording stopped at {len(rec.nodes)} nodes (cap VIZ_MAX_NODES={MAX_NODES}): {rec.passes_dropped} later passes "
                 f"({rec.passes_dropped_steps} steps) and their groups are missing")
  if rec.pass_steps_dropped:
    parts.append(f"{rec.pass_steps_dropped} steps of {sum(1 for p in rec.passes if p['steps_dropped'])} passes were not stored (caps: "
                 f"{MAX_PASS_STEPS} steps a pass, VIZ_MAX_PASS_STEPS; {MAX_STEPS} in all, VIZ_MAX_STEPS): those passes show "
                 "their first steps, then the output")
  return "; ".join(parts) or None
