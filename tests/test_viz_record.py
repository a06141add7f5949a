"""The VIZ recorder (lucidgrad/viz, docs/design/0031-rewrite-tracking.md): every graph rewrite recorded step by step in
groups, checked against the format the web view reads (VIZFORMAT version 1), against the source files its rules point
at, and by replaying each pass's steps on its input graph."""
import ast, functools, json, os, sys
import numpy as np
import pytest
from lucidgrad import Tensor, viz
from lucidgrad.helpers import Context, GlobalCounters
from lucidgrad.uop.ops import UOp, Ops
from lucidgrad.uop.pattern import UPat, PatternMatcher, graph_rewrite
from lucidgrad.nn import Conv2d, Linear
from lucidgrad.nn.optim import SGD
from lucidgrad.viz import record
from lucidgrad.engine import realize as engine
from lucidgrad.schedule import cache as schedule_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---- a schema check of VIZFORMAT.md, version 1 ----
def check_schema(d: dict):
  assert d["format"] == "lucidgrad-viz" and d["version"] == 1
  assert d["truncated"] is None or isinstance(d["truncated"], str)
  nodes = d["nodes"]
  for k, n in nodes.items():
    assert k.isdigit() and set(n) == {"op", "dtype", "arg", "src"}
    assert isinstance(n["op"], str) and isinstance(n["dtype"], str) and isinstance(n["arg"], str) and len(n["arg"]) <= 200
    assert all(isinstance(s, int) and str(s) in nodes for s in n["src"])
  groups = d["groups"]
  assert groups[0]["kind"] == "program" and groups[0]["parent"] is None
  for i, g in enumerate(groups):
    assert g["id"] == i and isinstance(g["name"], str) and isinstance(g["info"], dict)
    assert g["kind"] in ("program", "realize", "schedule", "kernel", "pass")
    if i: assert 0 <= g["parent"] < i and groups[g["parent"]]["kind"] != "pass"
  for p in d["passes"]:
    assert groups[p["group"]]["kind"] == "pass" and groups[p["group"]]["info"] == {}
    assert isinstance(p["name"], str) and isinstance(p["top_down"], bool) and isinstance(p["steps_dropped"], int)
    for k in ("before", "after"): assert str(p[k]) in nodes
    for s in p["steps"]:
      assert set(s) >= {"rule", "loc", "fn", "node", "result", "graph"}
      assert all(isinstance(s[k], str) for k in ("rule", "loc", "fn")) and len(s["rule"]) <= 200
      assert all(str(s[k]) in nodes for k in ("node", "result", "graph"))
  assert d["profile"] is None or "traceEvents" in d["profile"]
  json.loads(json.dumps(d))

# ---- graphs of the table ----
class Table:
  """The node table as structures: a graph is a uid; nodes are hash-consed by (op, dtype, arg, src) to find rebuilt ones."""
  def __init__(self, nodes: dict):
    self.nodes: dict[int, tuple] = {}
    self.by_key: dict[tuple, int] = {}
    self.canon_of: dict[int, int] = {}
    for k in sorted(nodes, key=int):  # a node is written after its sources
      n = nodes[k]
      self.canon_of[int(k)] = self.intern((n["op"], n["dtype"], n["arg"], tuple(self.canon_of[s] for s in n["src"])), int(k))
  def canon(self, u: int) -> int: return self.canon_of.get(u, u)
  def intern(self, key: tuple, uid: int | None = None) -> int:
    """The node of this structure (sources canonical): a recorded one, or one the replay made (a negative uid)."""
    if (u := self.by_key.get(key)) is None:
      u = self.by_key[key] = -len(self.nodes) - 1 if uid is None else uid
      self.nodes[u] = key
    return u
  def below(self, root: int) -> set[int]:
    out, stack = set(), [self.canon(root)]
    while stack:
      if (u := stack.pop()) not in out: out.add(u); stack.extend(self.nodes[u][3])
    return out
  def substitute(self, root: int, node: int, result: int) -> int:
    """root with `node` replaced by `result` wherever it occurs; every node above it rebuilt (a rebuilt node that comes
    out equal to `node` stays: replacing is one pass, as UOp.substitute)."""
    root = self.canon(root)
    memo: dict[int, int] = {}
    order, seen, stack = [], set(), [(root, False)]
    while stack:
      u, done = stack.pop()
      if done: order.append(u); continue
      if u in seen: continue
      seen.add(u); stack.append((u, True))
      if u != node: stack.extend((s, False) for s in self.nodes[u][3])
    for u in order:
      op, dt, arg, src = self.nodes[u]
      memo[u] = result if u == node else self.intern((op, dt, arg, tuple(memo[s] for s in src)))
    return memo[root]
  def same(self, a: int, b: int) -> bool: return self.canon(a) == self.canon(b)

def replay(t: Table, p: dict):
  """Each step's node -> result, substituted in the graph after the earlier steps, gives that step's graph (where the node
  is not in it, earlier results are first carried into what was rebuilt since: the rewriter reads a rewritten node's
  result without a rule); the last ends at the pass's output, and every step's graph holds its result."""
  g, done = t.canon(p["before"]), {}
  if p["top_down"]: g = p["before"]
  def fix(root: int, raw: int | None = None) -> int:
    """A node an earlier step rewrote is its result (looked through to a fixed point; `raw`'s result taken as it is);
    else it is rebuilt on its sources' fixed points, and looked up again."""
    memo: dict[int, int] = {}
    def f(u: int, depth: int = 0) -> int:
      assert depth < 10_000, "the steps' substitutions do not reach a fixed point"
      if (v := memo.get(u)) is not None: return v
      if u == raw: v = done[u]
      elif u in done: v = f(done[u], depth + 1)
      else:
        op, dt, arg, src = t.nodes[u]
        v = t.intern((op, dt, arg, tuple([f(x, depth + 1) for x in src])))
        if v != u and v in done: v = f(v, depth + 1)
      memo[u] = v
      return v
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 50_000))
    try: return f(t.canon(root))
    finally: sys.setrecursionlimit(old)
  for i, s in enumerate(p["steps"]):
    node, result = t.canon(s["node"]), t.canon(s["result"])
    if p["top_down"]:  # a top-down rewrite matches a node before its sources: each step's graph is `before` with every
      if node in done:  # node matched so far replaced by its result, from the top. A node matched again (reached on another
        assert t.same(s["graph"], g), f"{p['name']} step {i}: a node matched again changed the graph"  # path; with a
        continue  # ctx its answer may differ) keeps its first answer in the graph (docs/design/0031)
      done[node] = result
      g = fix(p["before"], node)
      assert t.same(g, s["graph"]), f"{p['name']} step {i}: its graph is not `before` with the steps so far applied from the top"
      assert result in t.below(s["graph"]), f"{p['name']} step {i}: its graph does not hold its result"
      continue
    if node not in t.below(g) and node in done:  # matched again (reached once more): the graph has its first answer
      assert t.same(s["graph"], g), f"{p['name']} step {i}: a node matched again changed the graph"
      continue
    if node not in t.below(g): g = fix(g)
    assert node in t.below(g), f"{p['name']} step {i}: its node {t.nodes[node][:3]} is not in the graph after the step before"
    g = t.substitute(g, node, result)
    assert t.same(g, s["graph"]), f"{p['name']} step {i}: its graph is not the graph before with its node replaced"
    assert result in t.below(s["graph"]), f"{p['name']} step {i}: its graph does not hold its result"
    done[node] = result
  if p["top_down"]: g = fix(p["before"])
  assert t.same(g, p["after"]) or t.same(fix(g), p["after"]), f"{p['name']}: replaying its steps does not end at its output"

@functools.lru_cache(maxsize=None)
def functions_in(path: str) -> list[tuple[str, int, int]]:
  """(name, first line with decorators, last line) of every function and lambda in a file."""
  tree = ast.parse(open(path).read())
  out = []
  for n in ast.walk(tree):
    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
      first = min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])])
      out.append((getattr(n, "name", "<lambda>"), first, n.end_lineno))
  return out

def check_loc(step: dict):
  """A step's loc is a real line of a real file, inside a function (or lambda) named as the step's fn says."""
  path, line = step["loc"].rsplit(":", 1)
  full = path if os.path.isabs(path) else os.path.join(ROOT, path)
  assert os.path.isfile(full), step
  assert 1 <= int(line) <= len(open(full).read().splitlines()), step
  assert any(name == step["fn"] and first <= int(line) <= last for name, first, last in functions_in(full)), step

def check_recording(d: dict, replay_cost: int | None = None) -> Table:
  """The schema, every step's loc, and the replay of every rewrite pass that stored all its steps -- or, with
  `replay_cost`, of those whose steps times graph size is at most that (a replay here costs a graph walk per step):
  then at least 95% of them."""
  check_schema(d)
  t = Table(d["nodes"])
  passes = [p for p in d["passes"] if p["rewrite"] and p["steps"] and not p["steps_dropped"]]
  replayed = 0
  for p in d["passes"]:
    for s in p["steps"]: check_loc(s)
  for p in passes:
    if replay_cost is None or len(p["steps"]) * len(t.below(p["before"])) <= replay_cost: replay(t, p); replayed += 1
  assert replayed >= 0.95 * len(passes), (replayed, len(passes))
  return t

@pytest.fixture
def recording():
  """VIZ on for the test, a fresh recording, and no kernel built before it (so codegen runs for each)."""
  viz.reset()
  engine._runners.clear(); engine._recent.clear()
  schedule_cache_clear()
  with Context(VIZ=1): yield
  viz.reset()

def schedule_cache_clear():
  for name in ("_templates", "templates", "_cache"):
    if isinstance(c := getattr(schedule_cache, name, None), dict): c.clear()

def kernel_groups(d: dict) -> list[dict]: return [g for g in d["groups"] if g["kind"] == "kernel"]

def test_small_realize_is_recorded_and_replays(recording):
  a = Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
  out = ((a * 2 + 1).relu() @ a.T).sum(1)
  GlobalCounters.reset()
  got = out.numpy()
  x = np.arange(12, dtype=np.float32).reshape(3, 4)
  np.testing.assert_allclose(got, (np.maximum(x * 2 + 1, 0) @ x.T).sum(1), rtol=1e-6)
  d = viz.data()
  check_recording(d)
  kinds = [g["kind"] for g in d["groups"]]
  assert kinds.count("realize") == 1 and kinds.count("schedule") == 1
  ks = kernel_groups(d)
  assert len(ks) == GlobalCounters.kernel_count >= 1
  for k in ks:
    info = k["info"]
    assert info["reason"] and info["device"] == "CPU" and "void" in info["source"] and isinstance(info["opts"], list)
    assert info["flops"] > 0 and info["bytes"] > 0 and info["global"]
    # codegen ran inside the group: its passes (and a rule applied in them) are under it
    mine = [p for p in d["passes"] if d["groups"][p["group"]]["parent"] == k["id"]]
    assert {"simplify", "linearize"} <= {p["name"] for p in mine} and any(p["steps"] for p in mine)
  sched = next(g for g in d["groups"] if g["kind"] == "schedule")
  points = next(p for p in d["passes"] if p["name"] == "realize points" and d["groups"][p["group"]]["parent"] == sched["id"])
  assert points["steps"] and all(s["rule"].startswith("a buffer: ") for s in points["steps"])

def tiny_net():
  np.random.seed(0)
  c, fc = Conv2d(1, 4, 3, padding=1), Linear(4 * 4 * 4, 10)
  opt = SGD([c.weight, c.bias, fc.weight, fc.bias], lr=0.1)
  def step(x, y):
    opt.zero_grad()
    loss = fc(c(x).relu().max_pool2d(2).flatten(1)).cross_entropy(y)
    loss.backward()
    opt.step()
    return loss.item()
  return step

@pytest.mark.slow
def test_training_step_every_kernel_has_a_group(recording):
  with Context(VIZ=0):  # the parameters' random init is not what this records
    step = tiny_net()
    x, y = Tensor(np.random.randn(8, 1, 8, 8).astype(np.float32)), Tensor(np.random.randint(0, 10, 8))
    x.realize(), y.realize()
  GlobalCounters.reset()
  losses = [step(x, y) for _ in range(2)]
  assert all(np.isfinite(losses)) and losses[1] < losses[0]
  d = viz.data()
  t = check_recording(d, replay_cost=200_000)
  ks = kernel_groups(d)
  assert len([k for k in ks if k["info"]["kind"] == "kernel"]) == GlobalCounters.kernel_count
  for k in ks:
    info = k["info"]
    assert info["reason"], k
    if info["kind"] == "kernel": assert info["source"] and isinstance(info["opts"], list) and "flops" in info and "bytes" in info
  # the second step reuses the first's schedules: its realizes say so, and their kernels point at the group that built them
  hits = [g for g in d["groups"] if g["kind"] == "realize" and g["info"].get("schedule") == "schedule cache hit"]
  assert hits
  assert all("codegen" in k["info"] for k in ks if d["groups"][k["parent"]] in hits and k["info"]["kind"] == "kernel")
  assert sum(len(p["steps"]) for p in d["passes"]) > 100 and len(t.nodes) > 100
  assert d["truncated"] is None

def test_rule_steps_name_the_rule_and_its_line(recording):
  def fold_double_neg(x): return x
  pm = PatternMatcher([(UPat(Ops.NEG, src=(UPat(Ops.NEG, name="x"),)), lambda x: x.src[0]),
                       (UPat(Ops.ADD, src=[UPat.var("a"), UPat.cvar("z")]), lambda a, z: a if z.arg == 0 else None),
                       (UPat(Ops.MUL, name="m"), lambda m: None), (UPat(Ops.SQRT, src=(UPat.var("x"),)), fold_double_neg)])
  v = UOp(Ops.DEFINE_VAR, Tensor([1.0]).uop.dtype, (), ("v", 0, 9))
  zero = UOp(Ops.CONST, v.dtype, (), 0.0)
  g = UOp.sink((-(-v)) + zero, UOp(Ops.SQRT, v.dtype, (v + zero,)))
  out = graph_rewrite(g, pm, name="my pass")
  assert out is UOp.sink(v, v)
  d = viz.data()
  check_recording(d)
  p = next(p for p in d["passes"] if p["name"] == "my pass")
  fns = [s["fn"] for s in p["steps"]]
  assert "<lambda>" in fns and "fold_double_neg" in fns and len(p["steps"]) == 4
  neg = next(s for s in p["steps"] if "NEG" in s["rule"])
  assert neg["rule"].startswith("UPat(NEG, src=(UPat(NEG, name='x'),))")
  assert neg["loc"].startswith("tests/test_viz_record.py:") and "name=\"x\"" in open(__file__).read().splitlines()[int(neg["loc"].rsplit(":", 1)[1]) - 1]

def test_caps_truncate_and_say_so(recording, monkeypatch):
  monkeypatch.setattr(record, "MAX_PASS_STEPS", 3)
  a = Tensor(np.arange(6, dtype=np.float32))
  (a * 3 + 2).exp().sum().numpy()
  d = viz.data()
  check_recording(d)  # a pass with dropped steps is not replayed, but still matches the format
  cut = [p for p in d["passes"] if p["steps_dropped"]]
  assert cut and all(len(p["steps"]) == 3 for p in cut)
  assert d["truncated"] and "VIZ_MAX_PASS_STEPS" in d["truncated"]
  # the node cap: once reached, later passes are counted, not stored
  viz.reset()
  monkeypatch.setattr(record, "MAX_NODES", 50)
  (a * 5 - 1).sin().sum().numpy()
  d = viz.data()
  check_schema(d)
  assert "VIZ_MAX_NODES" in d["truncated"] and record.rec.passes_dropped > 0 and len(d["nodes"]) < 50 + 2000

def test_nothing_is_recorded_with_viz_off():
  viz.reset()
  with Context(VIZ=0):
    a = Tensor(np.arange(5, dtype=np.float32))
    np.testing.assert_allclose((a * 7 + 1).numpy(), np.arange(5) * 7 + 1)
  d = viz.data()
  assert d["passes"] == [] and d["nodes"] == {} and len(d["groups"]) == 1 and d["truncated"] is None
  check_schema(d)

def test_save_writes_the_recording(recording, tmp_path):
  Tensor(np.ones(3, np.float32)).add(1).numpy()
  path = viz.save(str(tmp_path / "v.json"))
  with open(path) as f: d = json.load(f)
  check_schema(d)
  assert d["passes"]
